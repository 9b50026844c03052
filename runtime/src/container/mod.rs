//! Containers: the engine-level description of a container (`config`) and its
//! translation into an OCI runtime spec with Docker's semantics (`spec`, `user`,
//! `security`, `executable`, `adapt` for libcontainer's reading of it), and
//! running it: the rootfs overlay (`rootfs`, `idmap` for user namespaces), the
//! single-threaded helper that forks one monitor per container (`helper`,
//! `process`), the monitor that owns the container's processes and log
//! (`monitor`), their message format (`wire`), a typed API over them
//! (`lifecycle`, `status`), the built-in init (`init`) and cgroup figures
//! (`stats`).

mod adapt;
pub mod config;
pub mod executable;
pub mod helper;
pub mod idmap;
pub mod init;
pub mod lifecycle;
pub mod monitor;
mod process;
pub mod rootfs;
mod rootfs_path;
pub mod security;
pub mod spec;
pub mod stats;
pub mod status;
pub mod user;
mod wire;

pub use process::close_descriptors_except;
