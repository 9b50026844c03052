//! rcompose: a Compose-style multi-container orchestrator.
//!
//! The library holds everything that knows Compose: the project model and its load
//! pipeline (`project`), the service dependency graph (`graph`) and the command line
//! (`cli`). The binary in `main.rs` is a thin edge around [`cli::run`].
#![deny(unsafe_code)]

pub mod backend;
pub mod cli;
pub mod graph;
pub mod orchestrator;
pub mod project;
pub mod supervisor;
pub mod ui;
