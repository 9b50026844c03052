//! Pull images from and push them to registries speaking the OCI distribution API
//! (Docker Hub, `docker-registry`, GHCR, ...).
//!
//! [`RegistryClient`] knows how to reach a registry (mirrors, plain HTTP, credentials,
//! tokens); [`pull()`] and [`push()`] move one image between a registry and the
//! [`Store`](super::store::Store), reporting [`ProgressEvent`]s per layer.
//!
//! Built on `reqwest` (rustls, system CA roots) and `oci-spec`'s manifest types rather
//! than `oci-client`: pulls write straight into the store's blob directory with resumable
//! range requests, and credentials come from Docker's own config and helpers, which
//! that crate leaves to the caller.

mod auth;
mod client;
mod config;
mod download;
mod error;
mod manifest;
mod progress;
mod pull;
mod push;

pub use auth::{credentials_for, docker_config_dir, Credentials};
pub use client::RegistryClient;
pub use config::{Endpoint, RegistryConfig, CONFIG_FILE, INSECURE_ENV, MIRRORS_ENV};
pub use error::{MirrorFailure, RegistryError};
pub use manifest::Platform;
pub use progress::{Progress, ProgressEvent, ProgressStatus};
pub use pull::{pull, PullOptions, PullOutcome};
pub use push::{push, PushOutcome};
