//! Output for people: YAML in Compose's style, tables.

pub mod table;
pub mod yaml;
