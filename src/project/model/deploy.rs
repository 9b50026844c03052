//! `services.*.deploy`, and the device requests shared with `gpus`.

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::extensions::Extensions;
use super::units::{
    describe, is_default, is_zero_f32, is_zero_i64, is_zero_u64, lenient, schema, Duration,
    UnitBytes,
};

/// Deployment and resource settings of a service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct DeployConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub replicas: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::string_map"
    )]
    #[schemars(schema_with = "schema::list_or_dict")]
    #[serde(serialize_with = "super::units::sorted")]
    pub labels: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub placement: Placement,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint_mode: String,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// How updates or rollbacks roll out.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct UpdateConfig {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_u64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub parallelism: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "is_zero_f32",
        deserialize_with = "lenient::f32"
    )]
    #[schemars(schema_with = "schema::number_or_string")]
    pub max_failure_ratio: f32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub order: String,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Resource limits and reservations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Resource>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// One set of resource amounts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Resource {
    #[serde(
        default,
        skip_serializing_if = "is_zero_f32",
        deserialize_with = "lenient::f32"
    )]
    #[schemars(schema_with = "schema::number_or_string")]
    pub cpus: f32,
    #[serde(default, skip_serializing_if = "UnitBytes::is_zero")]
    pub memory: UnitBytes,
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub pids: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRequest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResource>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A user-defined resource (`{discrete_resource_spec: {kind: SSD, value: 3}}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct GenericResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discrete_resource_spec: Option<DiscreteGenericResource>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A countable user-defined resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct DiscreteGenericResource {
    #[serde(default)]
    pub kind: String,
    #[serde(default, deserialize_with = "lenient::i64")]
    #[schemars(schema_with = "schema::number_or_string")]
    pub value: i64,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// When and how often containers restart (swarm-style).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RestartPolicy {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_u64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub max_attempts: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Placement constraints.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreferences>,
    #[serde(
        default,
        skip_serializing_if = "is_zero_u64",
        deserialize_with = "lenient::u64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub max_replicas_per_node: u64,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A placement preference.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PlacementPreferences {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spread: String,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A request for devices such as GPUs (`deploy.resources.reservations.devices`, `gpus`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct DeviceRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "DeviceCount::is_unset")]
    pub count: DeviceCount,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::string_map"
    )]
    #[schemars(schema_with = "schema::list_or_dict")]
    #[serde(serialize_with = "super::units::sorted")]
    pub options: IndexMap<String, String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// How many devices to request; `all` is stored and printed as -1, as Compose does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DeviceCount(pub i64);

impl DeviceCount {
    pub const ALL: DeviceCount = DeviceCount(-1);

    pub fn is_unset(&self) -> bool {
        self.0 == 0
    }
}

impl<'de> Deserialize<'de> for DeviceCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let parsed = match &value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) if s.eq_ignore_ascii_case("all") => Some(-1),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        parsed.map(DeviceCount).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid value {}, the only value allowed is 'all' or a number",
                describe(&value)
            ))
        })
    }
}

impl JsonSchema for DeviceCount {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DeviceCount".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"oneOf": [{"type": "string", "enum": ["all"]}, {"type": ["integer", "string"]}]})
    }
}

/// What a user may write under `services.*.gpus`: `all` or a list of requests.
pub fn gpus_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<DeviceRequest>();
    json_schema!({
        "oneOf": [
            {"type": "string", "enum": ["all"]},
            {"type": "array", "items": long}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_resources_and_policies() {
        let d: DeployConfig = serde_yaml::from_str(
            "replicas: '2'\nresources:\n  limits: {cpus: '0.5', memory: 512m, pids: 100}\n  reservations:\n    devices: [{capabilities: [gpu], count: all}]\nrestart_policy: {condition: on-failure, delay: 5s, max_attempts: 3}\nupdate_config: {parallelism: 2, delay: 10s, order: start-first}\nplacement: {constraints: [node.role==manager]}\n",
        )
        .unwrap();
        assert_eq!(d.replicas, Some(2));
        let limits = d.resources.limits.clone().unwrap_or_default();
        assert_eq!(limits.cpus, 0.5);
        assert_eq!(limits.memory, UnitBytes(512 << 20));
        let devices = d.resources.reservations.clone().unwrap_or_default().devices;
        assert_eq!(devices[0].count, DeviceCount::ALL);
        assert_eq!(
            d.restart_policy.clone().unwrap_or_default().max_attempts,
            Some(3)
        );
        let out = serde_yaml::to_string(&d).unwrap();
        assert!(out.contains("memory: '536870912'"), "{out}");
        assert!(out.contains("count: -1"), "{out}");
    }

    #[test]
    fn bad_device_count_is_an_error() {
        let err = serde_yaml::from_str::<DeviceRequest>("count: many\n").unwrap_err();
        assert!(err.to_string().contains("'all' or a number"), "{err}");
    }
}
