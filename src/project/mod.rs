//! The Compose project: the load pipeline, one stage per module, and the canonical model.
//!
//! Stages, in the order the loader runs them:
//! `discover` (files, project name, environment) → `yaml` (documents, anchors, merge keys,
//! `!reset`/`!override` tags) → `interpolate` (with `dotenv` for `.env`/`env_file`) →
//! `canonical` (short syntax to long syntax) → `extends` → `merge` (multi-file override
//! rules) → `include` → `profiles` → `model` (typed decode) → `normalize` → `validate`.

pub mod canonical;
pub mod discover;
pub mod dotenv;
pub mod extends;
pub mod hash;
pub mod include;
pub mod interpolate;
pub mod loader;
pub mod merge;
pub mod model;
pub mod normalize;
pub mod paths;
pub mod profiles;
pub mod render;
pub mod validate;
pub mod yaml;
