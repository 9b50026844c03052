//! Containers: the engine-level description of a container (`config`) and its
//! translation into an OCI runtime spec with Docker's semantics (`spec`, `user`,
//! `security`).

pub mod config;
pub mod security;
pub mod spec;
pub mod user;
