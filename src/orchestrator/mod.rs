//! The orchestrator: reconciles the Compose model with the containers a backend runs.

pub mod labels;
pub mod plan;
