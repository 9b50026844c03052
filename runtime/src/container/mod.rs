//! Containers: the engine-level description of a container (`config`) and its
//! translation into an OCI runtime spec with Docker's semantics (`spec`, `user`,
//! `security`), and running it: the rootfs overlay (`rootfs`), the single-threaded
//! process that makes every libcontainer call (`helper`) and a typed API over it
//! (`lifecycle`).

pub mod config;
pub mod helper;
pub mod idmap;
pub mod lifecycle;
pub mod rootfs;
pub mod security;
pub mod spec;
pub mod user;
