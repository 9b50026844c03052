//! Top-level `secrets`/`configs` and a service's references to them.

use std::fmt;

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_yaml::Value;

use super::extensions::Extensions;
use super::network::{external_schema, options_schema};
use super::units::{describe, is_false, lenient, schema};

/// A secret or config: its content comes from a file, an environment variable or inline.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct FileObjectConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub environment: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content: String,
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
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template_driver: String,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A top-level secret.
pub type SecretConfig = FileObjectConfig;
/// A top-level config.
pub type ConfigObjConfig = FileObjectConfig;

/// A service's use of a secret or config (`{source, target, uid, gid, mode}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct FileReferenceConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "lenient::string"
    )]
    pub uid: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "lenient::string"
    )]
    pub gid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A service's use of a secret.
pub type ServiceSecretConfig = FileReferenceConfig;
/// A service's use of a config.
pub type ServiceConfigObjConfig = FileReferenceConfig;

/// Unix permission bits; a YAML number is taken as is, a string is read as octal
/// (`"0440"`), and it prints as an octal string as Compose does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileMode(pub u32);

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0{:o}", self.0)
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let parsed = match &value {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => u32::from_str_radix(s.trim(), 8).ok(),
            _ => None,
        };
        parsed.map(FileMode).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid file mode {}: expected an octal string such as \"0440\" or a number",
                describe(&value)
            ))
        })
    }
}

impl JsonSchema for FileMode {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FileMode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["number", "string"]})
    }
}

/// What a user may write under `services.*.secrets`/`configs`: names or mappings.
pub fn file_references_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<FileReferenceConfig>();
    json_schema!({
        "type": "array",
        "items": {"oneOf": [{"type": "string"}, long]}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_reads_octal_strings_and_prints_octal() {
        let r: FileReferenceConfig =
            serde_yaml::from_str("source: db\ntarget: /run/secrets/db\nuid: 1000\nmode: '0440'\n")
                .unwrap();
        assert_eq!(r.mode, Some(FileMode(0o440)));
        assert_eq!(r.uid, "1000");
        let out = serde_yaml::to_string(&r).unwrap();
        assert!(out.contains("mode: '0440'"), "{out}");
    }

    #[test]
    fn bad_mode_is_an_error() {
        let err = serde_yaml::from_str::<FileReferenceConfig>("mode: rwx\n").unwrap_err();
        assert!(
            err.to_string().contains("invalid file mode \"rwx\""),
            "{err}"
        );
    }
}
