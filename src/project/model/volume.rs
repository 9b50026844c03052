//! Top-level `volumes`.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extensions::Extensions;
use super::network::{external_schema, options_schema};
use super::units::{is_false, lenient, schema};

/// A named volume the project uses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct VolumeConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::string_map"
    )]
    #[schemars(schema_with = "options_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub driver_opts: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "external_schema")]
    pub external: bool,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::string_map"
    )]
    #[schemars(schema_with = "schema::list_or_dict")]
    #[serde(serialize_with = "super::units::sorted")]
    pub labels: IndexMap<String, String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_driver_options_as_strings() {
        let v: VolumeConfig =
            serde_yaml::from_str("driver: local\ndriver_opts: {size: 10, o: bind}\n").unwrap();
        assert_eq!(v.driver_opts.get("size").map(String::as_str), Some("10"));
    }
}
