//! Orchestration: turning the Compose model into running containers and keeping them so.
pub mod health;
pub mod restart;
