//! `services.*.build`.

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use serde_yaml::Value;

use super::extensions::Extensions;
use super::secret::{file_references_schema, ServiceSecretConfig};
use super::service::{ulimits_schema, HostsList, UlimitsConfig};
use super::units::{describe, is_false, lenient, schema, UnitBytes};

/// How to build a service's image.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BuildConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dockerfile: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dockerfile_inline: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::opt_string_map"
    )]
    #[schemars(schema_with = "schema::list_or_dict")]
    #[serde(serialize_with = "super::units::sorted")]
    pub args: IndexMap<String, Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "lenient::string"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub provenance: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "lenient::string"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub sbom: String,
    #[serde(default, skip_serializing_if = "SshConfig::is_empty")]
    pub ssh: SshConfig,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::string_map"
    )]
    #[schemars(schema_with = "schema::list_or_dict")]
    #[serde(serialize_with = "super::units::sorted")]
    pub labels: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    pub cache_from: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    pub cache_to: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub no_cache: bool,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    #[schemars(schema_with = "schema::string_or_list")]
    pub no_cache_filter: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::string_map"
    )]
    #[schemars(schema_with = "schema::list_or_dict")]
    #[serde(serialize_with = "super::units::sorted")]
    pub additional_contexts: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub pull: bool,
    #[serde(default, skip_serializing_if = "HostsList::is_empty")]
    pub extra_hosts: HostsList,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub isolation: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "file_references_schema")]
    pub secrets: Vec<ServiceSecretConfig>,
    #[serde(default, skip_serializing_if = "UnitBytes::is_zero")]
    pub shm_size: UnitBytes,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(schema_with = "ulimits_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub ulimits: IndexMap<String, UlimitsConfig>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    pub platforms: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub privileged: bool,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// One SSH agent socket or key made available to the build (`default`, `id=path`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SshKey {
    pub id: String,
    pub path: String,
}

/// The build's SSH keys; printed as `id` / `id=path` strings, read from that list or
/// from an `{id: path}` mapping.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SshConfig(pub Vec<SshKey>);

impl SshConfig {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for SshConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for key in &self.0 {
            if key.path.is_empty() {
                seq.serialize_element(&key.id)?;
            } else {
                seq.serialize_element(&format!("{}={}", key.id, key.path))?;
            }
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for SshConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let invalid = || {
            de::Error::custom(format!(
                "invalid ssh config {}: expected a list of id[=path] or a mapping",
                describe(&value)
            ))
        };
        let entries = lenient::key_values(&value, '=').ok_or_else(invalid)?;
        Ok(SshConfig(
            entries
                .into_iter()
                .map(|(id, path)| SshKey {
                    id,
                    path: path.unwrap_or_default(),
                })
                .collect(),
        ))
    }
}

impl JsonSchema for SshConfig {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SshConfig".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        schema::list_or_dict(generator)
    }
}

/// What a user may write under `build`: a context path or a mapping.
pub fn build_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<BuildConfig>();
    json_schema!({"oneOf": [{"type": "string"}, long]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_build_key() {
        let b: BuildConfig = serde_yaml::from_str(
            r#"
context: ./app
dockerfile: Dockerfile.dev
dockerfile_inline: FROM alpine
entitlements: [network.host]
args: {VERSION: 1.2, EMPTY: '', UNSET: null}
provenance: true
sbom: 'false'
ssh: [default, key=/home/me/.ssh/id]
labels: {a: b}
cache_from: [type=local,src=/tmp]
cache_to: [type=local,dest=/tmp]
no_cache: true
no_cache_filter: stage
additional_contexts: {base: docker-image://alpine}
pull: 'yes'
extra_hosts: ["host=1.2.3.4"]
isolation: default
network: host
target: prod
secrets: [{source: token}]
shm_size: 1g
tags: [app:latest]
ulimits: {nofile: {soft: 1024, hard: 2048}}
platforms: [linux/amd64]
privileged: true
x-extra: 1
"#,
        )
        .unwrap();
        assert_eq!(b.args.get("VERSION"), Some(&Some("1.2".to_owned())));
        assert_eq!(b.args.get("UNSET"), Some(&None));
        assert_eq!(b.provenance, "true");
        assert_eq!(
            b.ssh.0[1],
            SshKey {
                id: "key".into(),
                path: "/home/me/.ssh/id".into()
            }
        );
        assert_eq!(b.no_cache_filter, ["stage"]);
        assert!(b.pull);
        assert_eq!(b.shm_size, UnitBytes(1 << 30));
        assert_eq!(b.ulimits.get("nofile").map(|u| u.hard), Some(2048));
        assert!(b.extensions.contains_key("x-extra"));
    }

    #[test]
    fn ssh_prints_as_strings() {
        let ssh = SshConfig(vec![
            SshKey {
                id: "default".into(),
                path: String::new(),
            },
            SshKey {
                id: "k".into(),
                path: "/p".into(),
            },
        ]);
        assert_eq!(serde_yaml::to_string(&ssh).unwrap(), "- default\n- k=/p\n");
    }
}
