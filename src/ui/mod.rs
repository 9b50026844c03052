//! Output for people: YAML in Compose's style, tables, container logs.

pub mod logs;
pub mod progress;
pub mod size;
pub mod table;
pub mod yaml;
