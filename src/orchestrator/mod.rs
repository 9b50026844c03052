//! The orchestrator: reconciles the Compose model with the containers a backend
//! runs (`labels`, `plan`) and keeps them so (`health`, `restart`).

pub mod converge;
pub mod health;
pub mod labels;
pub mod plan;
pub mod pull;
pub mod restart;
