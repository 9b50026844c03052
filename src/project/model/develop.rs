//! `services.*.develop` (watch mode) and lifecycle hooks.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extensions::Extensions;
use super::service::{command_de, env_schema};
use super::units::{is_false, lenient, schema};

/// Development-time settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct DevelopConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<Trigger>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// One watched path and what to do when it changes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Trigger {
    #[serde(default)]
    pub path: String,
    /// `sync`, `rebuild`, `restart`, `sync+restart` or `sync+exec`.
    #[serde(default)]
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ServiceHook>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    #[schemars(schema_with = "schema::string_or_list")]
    pub include: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    #[schemars(schema_with = "schema::string_or_list")]
    pub ignore: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub initial_sync: bool,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A command run inside a container at a lifecycle event (`post_start`, `pre_stop`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceHook {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "command_de"
    )]
    #[schemars(schema_with = "schema::command")]
    pub command: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "lenient::string"
    )]
    pub user: String,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::opt_string_map"
    )]
    #[schemars(schema_with = "env_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub environment: IndexMap<String, Option<String>>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_watch_triggers() {
        let d: DevelopConfig = serde_yaml::from_str(
            "watch:\n  - path: ./src\n    action: sync\n    target: /app\n    ignore: [node_modules]\n  - path: package.json\n    action: rebuild\n",
        )
        .unwrap();
        assert_eq!(d.watch.len(), 2);
        assert_eq!(d.watch[0].target, "/app");
        assert_eq!(d.watch[1].action, "rebuild");
    }

    #[test]
    fn hook_command_string_is_shell_split() {
        let h: ServiceHook =
            serde_yaml::from_str("command: echo 'hello world'\nuser: root\n").unwrap();
        assert_eq!(
            h.command,
            Some(vec!["echo".to_owned(), "hello world".to_owned()])
        );
    }
}
