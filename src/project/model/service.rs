//! A service and the small types only services use.

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_yaml::Value;

use super::build::{build_schema, BuildConfig};
use super::deploy::{gpus_schema, DeployConfig, DeviceRequest};
use super::develop::{DevelopConfig, ServiceHook};
use super::extensions::Extensions;
use super::healthcheck::HealthCheckConfig;
use super::mount::{volumes_schema, ServiceVolumeConfig};
use super::network::{options_schema, service_networks_schema, ServiceNetworkConfig};
use super::port::{expose_schema, ports_schema, ServicePortConfig};
use super::secret::{file_references_schema, ServiceConfigObjConfig, ServiceSecretConfig};
use super::units::{
    describe, is_false, is_zero_f32, is_zero_i64, is_zero_u16, lenient, scalar_text, schema,
    Duration, UnitBytes,
};

/// One service: every attribute of the Compose Specification, in the order
/// `docker compose config` prints them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::string_map"
    )]
    #[schemars(schema_with = "schema::list_or_dict")]
    #[serde(serialize_with = "super::units::sorted")]
    pub annotations: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub attach: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "build_schema")]
    pub build: Option<BuildConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub develop: Option<DevelopConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blkio_config: Option<BlkioConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cgroup_parent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cgroup: String,
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub cpu_count: i64,
    #[serde(
        default,
        skip_serializing_if = "is_zero_f32",
        deserialize_with = "lenient::f32"
    )]
    #[schemars(schema_with = "schema::number_or_string")]
    pub cpu_percent: f32,
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub cpu_period: i64,
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub cpu_quota: i64,
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub cpu_rt_period: i64,
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub cpu_rt_runtime: i64,
    #[serde(
        default,
        skip_serializing_if = "is_zero_f32",
        deserialize_with = "lenient::f32"
    )]
    #[schemars(schema_with = "schema::number_or_string")]
    pub cpus: f32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpuset: String,
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub cpu_shares: i64,
    /// `None` when unset; `Some([])` when explicitly cleared, which overrides the image.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "command_de"
    )]
    #[schemars(schema_with = "schema::command")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "file_references_schema")]
    pub configs: Vec<ServiceConfigObjConfig>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_spec: Option<CredentialSpecConfig>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(schema_with = "depends_on_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub depends_on: IndexMap<String, ServiceDependency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "devices_schema")]
    pub devices: Vec<DeviceMapping>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    #[schemars(schema_with = "schema::string_or_list")]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    #[schemars(schema_with = "schema::string_or_list")]
    pub dns_search: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domainname: String,
    /// `None` when unset; `Some([])` when explicitly cleared, which overrides the image.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "command_de"
    )]
    #[schemars(schema_with = "schema::command")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ServiceProviderConfig>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::opt_string_map"
    )]
    #[schemars(schema_with = "env_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub environment: IndexMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "env_file_schema")]
    pub env_file: Vec<EnvFile>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    #[schemars(schema_with = "expose_schema")]
    pub expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "extends_schema")]
    pub extends: Option<ExtendsConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_links: Vec<String>,
    #[serde(default, skip_serializing_if = "HostsList::is_empty")]
    pub extra_hosts: HostsList,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    #[schemars(schema_with = "schema::list_of_string_or_number")]
    pub group_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "gpus_schema")]
    pub gpus: Vec<DeviceRequest>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthCheckConfig>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipc: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub isolation: String,
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
    #[schemars(schema_with = "schema::string_or_list")]
    pub label_file: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingConfig>,
    #[serde(default, skip_serializing_if = "UnitBytes::is_zero")]
    pub mem_limit: UnitBytes,
    #[serde(default, skip_serializing_if = "UnitBytes::is_zero")]
    pub mem_reservation: UnitBytes,
    #[serde(default, skip_serializing_if = "UnitBytes::is_zero")]
    pub memswap_limit: UnitBytes,
    #[serde(default, skip_serializing_if = "UnitBytes::is_zero")]
    pub mem_swappiness: UnitBytes,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(schema_with = "service_models_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub models: IndexMap<String, Option<ServiceModelConfig>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_mode: String,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(schema_with = "service_networks_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub networks: IndexMap<String, Option<ServiceNetworkConfig>>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub oom_kill_disable: bool,
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub oom_score_adj: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pid: String,
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub pids_limit: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "ports_schema")]
    pub ports: Vec<ServicePortConfig>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pull_policy: String,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub restart: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub scale: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "file_references_schema")]
    pub secrets: Vec<ServiceSecretConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(default, skip_serializing_if = "UnitBytes::is_zero")]
    pub shm_size: UnitBytes,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub stdin_open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::string_map"
    )]
    #[schemars(schema_with = "options_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub storage_opt: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::string_map"
    )]
    #[schemars(schema_with = "schema::list_or_dict")]
    #[serde(serialize_with = "super::units::sorted")]
    pub sysctls: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    #[schemars(schema_with = "schema::string_or_list")]
    pub tmpfs: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(schema_with = "ulimits_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub ulimits: IndexMap<String, UlimitsConfig>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub use_api_socket: bool,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "lenient::string"
    )]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub userns_mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uts: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub volume_driver: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "volumes_schema")]
    pub volumes: Vec<ServiceVolumeConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_start: Vec<ServiceHook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_stop: Vec<ServiceHook>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Block IO weights and throttles.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BlkioConfig {
    #[serde(
        default,
        skip_serializing_if = "is_zero_u16",
        deserialize_with = "lenient::u16"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub weight: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<WeightDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<ThrottleDevice>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A device and its relative IO weight.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct WeightDevice {
    #[serde(default)]
    pub path: String,
    #[serde(default, deserialize_with = "lenient::u16")]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub weight: u16,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A device and its IO rate limit.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ThrottleDevice {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub rate: UnitBytes,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A host device mapped into the containers (`/dev/sda:/dev/xvda:rwm`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct DeviceMapping {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub permissions: String,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Where the containers' logs go.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LoggingConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::string_map"
    )]
    #[schemars(schema_with = "options_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub options: IndexMap<String, String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Windows credential spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CredentialSpecConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry: String,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A service run by an external provider plugin instead of a container.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceProviderConfig {
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Options may repeat, so each holds a list of values.
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "multi_options_de"
    )]
    #[schemars(schema_with = "multi_options_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub options: IndexMap<String, Vec<String>>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// The service this one extends.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendsConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
}

/// How a service waits for one of its dependencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceDependency {
    /// `service_started`, `service_healthy` or `service_completed_successfully`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub restart: bool,
    #[serde(default = "default_true", deserialize_with = "lenient::bool")]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub required: bool,
    #[serde(flatten)]
    pub extensions: Extensions,
}

impl Default for ServiceDependency {
    fn default() -> Self {
        ServiceDependency {
            condition: CONDITION_STARTED.to_owned(),
            restart: false,
            required: true,
            extensions: Extensions::default(),
        }
    }
}

pub const CONDITION_STARTED: &str = "service_started";
pub const CONDITION_HEALTHY: &str = "service_healthy";
pub const CONDITION_COMPLETED_SUCCESSFULLY: &str = "service_completed_successfully";

fn default_true() -> bool {
    true
}

/// A file of environment variables for the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvFile {
    #[serde(default)]
    pub path: String,
    #[serde(default = "default_true", deserialize_with = "lenient::bool")]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub format: String,
}

impl Default for EnvFile {
    fn default() -> Self {
        EnvFile {
            path: String::new(),
            required: true,
            format: String::new(),
        }
    }
}

/// How a service reaches one of the project's models.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceModelConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint_var: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model_var: String,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A resource limit: a single value, or soft and hard limits.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UlimitsConfig {
    pub single: i64,
    pub soft: i64,
    pub hard: i64,
    pub extensions: Extensions,
}

impl Serialize for UlimitsConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.single != 0 {
            return serializer.serialize_i64(self.single);
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("soft", &self.soft)?;
        map.serialize_entry("hard", &self.hard)?;
        for (k, v) in self.extensions.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for UlimitsConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        ulimit_from_value(&value).map_err(de::Error::custom)
    }
}

fn ulimit_from_value(value: &Value) -> Result<UlimitsConfig, String> {
    let as_int = |v: &Value, what: &str| -> Result<i64, String> {
        match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("invalid ulimit {what} {}: expected an integer", describe(v)))
    };
    let Value::Mapping(map) = value else {
        return Ok(UlimitsConfig {
            single: as_int(value, "value")?,
            ..Default::default()
        });
    };
    let mut limit = UlimitsConfig::default();
    let mut rejected = Vec::new();
    for (key, v) in map {
        match key.as_str().unwrap_or_default() {
            "soft" => limit.soft = as_int(v, "soft")?,
            "hard" => limit.hard = as_int(v, "hard")?,
            "single" => limit.single = as_int(v, "value")?,
            k if k.starts_with("x-") => {
                limit.extensions.insert(k.to_owned(), v.clone());
            }
            _ => rejected.push(scalar_text(key).unwrap_or_else(|| describe(key))),
        }
    }
    if !rejected.is_empty() {
        return Err(super::extensions::additional_properties_message(&rejected));
    }
    Ok(limit)
}

/// Extra `/etc/hosts` entries: host name to one or more addresses. Printed as the
/// sorted `host=ip` list Compose prints; read from that list (`=` or `:`), or a mapping.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostsList(pub IndexMap<String, Vec<String>>);

impl HostsList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries as `host<sep>ip` strings, sorted.
    pub fn as_list(&self, sep: &str) -> Vec<String> {
        let mut list: Vec<String> = self
            .0
            .iter()
            .flat_map(|(host, ips)| ips.iter().map(move |ip| format!("{host}{sep}{ip}")))
            .collect();
        list.sort();
        list
    }

    fn from_value(value: &Value) -> Result<Self, String> {
        let mut hosts: IndexMap<String, Vec<String>> = IndexMap::new();
        match value {
            Value::Null => {}
            Value::Mapping(map) => {
                for (k, v) in map {
                    let host = scalar_text(k).unwrap_or_default();
                    let ips = match v {
                        Value::Null => vec![String::new()],
                        Value::Sequence(items) => items.iter().filter_map(scalar_text).collect(),
                        other => vec![scalar_text(other).unwrap_or_default()],
                    };
                    hosts.entry(host).or_default().extend(ips);
                }
            }
            Value::Sequence(items) => {
                for item in items {
                    let text = scalar_text(item).unwrap_or_default();
                    let (host, ips) = text
                        .split_once('=')
                        .or_else(|| text.split_once(':'))
                        .ok_or_else(|| format!("invalid additional host, missing IP: {text}"))?;
                    hosts
                        .entry(host.to_owned())
                        .or_default()
                        .extend(ips.split(',').map(str::to_owned));
                }
            }
            other => {
                return Err(format!(
                    "invalid extra_hosts {}: expected a list or a mapping",
                    describe(other)
                ))
            }
        }
        for (host, ips) in hosts.iter_mut() {
            if host.is_empty() || host.contains([':', '=']) {
                return Err(format!("bad host name '{host}'"));
            }
            for ip in ips.iter_mut() {
                if ip.len() > 2 && ip.starts_with('[') && ip.ends_with(']') {
                    *ip = ip[1..ip.len() - 1].to_owned();
                }
            }
        }
        Ok(HostsList(hosts))
    }
}

impl Serialize for HostsList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let list = self.as_list("=");
        let mut seq = serializer.serialize_seq(Some(list.len()))?;
        for entry in &list {
            seq.serialize_element(entry)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for HostsList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        HostsList::from_value(&value).map_err(de::Error::custom)
    }
}

impl JsonSchema for HostsList {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HostsList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                {
                    "type": "object",
                    "patternProperties": {
                        ".+": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
                    },
                    "additionalProperties": false
                },
                {"type": "array", "items": {"type": "string"}, "uniqueItems": true}
            ]
        })
    }
}

/// `command`/`entrypoint`: a shell string (split like a POSIX shell), a list, or null.
pub fn command_de<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => shell_words::split(&s)
            .map(Some)
            .map_err(|e| de::Error::custom(format!("invalid command {s:?}: {e}"))),
        Value::Sequence(items) => items
            .iter()
            .map(|item| {
                scalar_text(item).ok_or_else(|| {
                    de::Error::custom(format!(
                        "invalid command argument {}: expected a string",
                        describe(item)
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(de::Error::custom(format!(
            "invalid command {}: expected a string or a list of strings",
            describe(&other)
        ))),
    }
}

fn multi_options_de<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<IndexMap<String, Vec<String>>, D::Error> {
    let value = Value::deserialize(d)?;
    let Value::Mapping(map) = &value else {
        if value.is_null() {
            return Ok(IndexMap::new());
        }
        return Err(de::Error::custom(format!(
            "invalid options {}: expected a mapping",
            describe(&value)
        )));
    };
    map.iter()
        .map(|(k, v)| {
            let key = scalar_text(k).unwrap_or_default();
            let values = match v {
                Value::Sequence(items) => items.iter().filter_map(scalar_text).collect(),
                Value::Null => Vec::new(),
                other => scalar_text(other).into_iter().collect(),
            };
            Ok((key, values))
        })
        .collect()
}

fn multi_options_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {
            "oneOf": [
                {"type": ["string", "number", "boolean"]},
                {"type": "array", "items": {"type": ["string", "number", "boolean"]}}
            ]
        }
    })
}

/// What a user may write under `environment`.
pub fn env_schema(generator: &mut SchemaGenerator) -> Schema {
    schema::list_or_dict(generator)
}

/// What a user may write under `ulimits`: numbers or `{soft, hard}`.
pub fn ulimits_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "patternProperties": {
            "^[a-z]+$": {
                "oneOf": [
                    {"type": ["integer", "string"]},
                    {
                        "type": "object",
                        "properties": {
                            "hard": {"type": ["integer", "string"]},
                            "soft": {"type": ["integer", "string"]}
                        },
                        "required": ["soft", "hard"],
                        "patternProperties": {"^x-": {}},
                        "additionalProperties": false
                    }
                ]
            }
        }
    })
}

fn depends_on_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<ServiceDependency>();
    json_schema!({
        "oneOf": [
            {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
            {"type": "object", "additionalProperties": long}
        ]
    })
}

fn env_file_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<EnvFile>();
    json_schema!({
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"oneOf": [{"type": "string"}, long]}}
        ]
    })
}

fn extends_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<ExtendsConfig>();
    json_schema!({"oneOf": [{"type": "string"}, long]})
}

fn devices_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<DeviceMapping>();
    json_schema!({"type": "array", "items": {"oneOf": [{"type": "string"}, long]}})
}

fn service_models_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<ServiceModelConfig>();
    json_schema!({
        "oneOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "additionalProperties": {"oneOf": [long, {"type": "null"}]}}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_read_single_and_soft_hard() {
        let u: IndexMap<String, UlimitsConfig> =
            serde_yaml::from_str("nproc: 65535\nnofile: {soft: 20000, hard: '40000'}\n").unwrap();
        assert_eq!(u["nproc"].single, 65535);
        assert_eq!((u["nofile"].soft, u["nofile"].hard), (20000, 40000));
        assert_eq!(
            serde_yaml::to_string(&u).unwrap(),
            "nproc: 65535\nnofile:\n  soft: 20000\n  hard: 40000\n"
        );
    }

    #[test]
    fn ulimit_unknown_key_is_rejected() {
        let err = serde_yaml::from_str::<UlimitsConfig>("{soft: 1, hrad: 2}").unwrap_err();
        assert!(
            err.to_string()
                .contains("additional properties 'hrad' not allowed"),
            "{err}"
        );
    }

    #[test]
    fn extra_hosts_read_lists_and_mappings() {
        let h: HostsList =
            serde_yaml::from_str("[\"somehost=162.242.195.82\", \"otherhost:[::1]\"]").unwrap();
        assert_eq!(h.as_list("="), ["otherhost=::1", "somehost=162.242.195.82"]);
        let m: HostsList = serde_yaml::from_str("{a: 1.2.3.4, b: [5.6.7.8, 9.9.9.9]}").unwrap();
        assert_eq!(m.0["b"], ["5.6.7.8", "9.9.9.9"]);
        let err = serde_yaml::from_str::<HostsList>("[\"nohost\"]").unwrap_err();
        assert!(err.to_string().contains("missing IP: nohost"), "{err}");
    }

    #[test]
    fn env_file_defaults_to_required() {
        let e: EnvFile = serde_yaml::from_str("path: ./a.env\n").unwrap();
        assert!(e.required);
        assert_eq!(
            serde_yaml::to_string(&e).unwrap(),
            "path: ./a.env\nrequired: true\n"
        );
        let err = serde_yaml::from_str::<EnvFile>("path: a\nrequird: false\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `requird`"), "{err}");
    }

    #[test]
    fn command_string_is_shell_split_and_empty_list_kept() {
        #[derive(Deserialize)]
        struct C {
            #[serde(default, deserialize_with = "command_de")]
            command: Option<Vec<String>>,
        }
        let c: C = serde_yaml::from_str("command: sh -c 'echo \"a b\"'\n").unwrap();
        assert_eq!(
            c.command,
            Some(vec!["sh".into(), "-c".into(), "echo \"a b\"".into()])
        );
        let empty: C = serde_yaml::from_str("command: []\n").unwrap();
        assert_eq!(empty.command, Some(vec![]));
        let unset: C = serde_yaml::from_str("{}").unwrap();
        assert_eq!(unset.command, None);
        assert!(serde_yaml::from_str::<C>("command: \"echo 'x\"\n").is_err());
    }
}
