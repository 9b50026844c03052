//! rcompose-runtime: a Linux container runtime library.
//!
//! It knows nothing of Compose: `image` holds image references, the content-addressed
//! store, layer unpacking and archive import/export. Containers, networks and volumes
//! build on it.
#![deny(unsafe_code)]

pub mod atomic_file;
pub mod container;
pub mod image;
mod lock;
pub mod logs;
pub mod network;
mod random;
pub mod volume;
