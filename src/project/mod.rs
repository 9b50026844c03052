//! The Compose project: the load pipeline, one stage per module, and the canonical model.
//!
//! Stages, in the order the loader (`loader.rs`) runs them: `discover` (files, project
//! name, environment); then for each file `yaml` (documents, anchors, merge keys,
//! `!reset`/`!override` tags) → `interpolate` → `canonical` (short syntax to long syntax) →
//! `extends` → `include`; then `merge` (multi-file override rules) → `paths` → `model`
//! (typed decode) → `profiles` → `normalize` (with `dotenv` for `env_file`) → `validate`.
//! `render` prints the result as `docker compose config` does; `hash` is the config hash.

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
