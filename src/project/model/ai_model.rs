//! Top-level `models` (AI models served to services).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extensions::Extensions;
use super::units::{is_zero_i64, lenient, schema};

/// A model the project runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ModelConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub context_size: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_flags: Vec<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_model() {
        let m: ModelConfig =
            serde_yaml::from_str("model: ai/smollm2\ncontext_size: '4096'\nruntime_flags: [--a]\n")
                .unwrap();
        assert_eq!(m.context_size, 4096);
        assert_eq!(m.model, "ai/smollm2");
    }
}
