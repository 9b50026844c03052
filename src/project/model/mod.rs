//! The typed canonical Compose model.
//!
//! These types hold a project after the `canonical` stage has turned every short syntax
//! into its long form. Field order and omitted empty fields follow `docker compose
//! config`, so serializing a [`Project`] with `serde_yaml`/`serde_json` prints what
//! Docker Compose prints. Decoding is strict (unknown keys other than `x-*` are errors)
//! but accepts the strings interpolation produces (`"8080"`, `"yes"`).

pub mod ai_model;
pub mod build;
pub mod deploy;
pub mod develop;
pub mod extensions;
pub mod healthcheck;
pub mod mount;
pub mod network;
pub mod port;
pub mod secret;
pub mod service;
pub mod units;
pub mod volume;

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

pub use ai_model::ModelConfig;
pub use build::{BuildConfig, SshConfig, SshKey};
pub use deploy::{
    DeployConfig, DeviceCount, DeviceRequest, DiscreteGenericResource, GenericResource, Placement,
    PlacementPreferences, Resource, Resources, RestartPolicy, UpdateConfig,
};
pub use develop::{DevelopConfig, ServiceHook, Trigger};
pub use extensions::Extensions;
pub use healthcheck::HealthCheckConfig;
pub use mount::{
    ServiceVolumeBind, ServiceVolumeConfig, ServiceVolumeImage, ServiceVolumeTmpfs,
    ServiceVolumeVolume,
};
pub use network::{IpamConfig, IpamPool, NetworkConfig, ServiceNetworkConfig};
pub use port::ServicePortConfig;
pub use secret::{
    ConfigObjConfig, FileMode, FileObjectConfig, FileReferenceConfig, SecretConfig,
    ServiceConfigObjConfig, ServiceSecretConfig,
};
pub use service::{
    BlkioConfig, CredentialSpecConfig, DeviceMapping, EnvFile, ExtendsConfig, HostsList,
    LoggingConfig, Service, ServiceDependency, ServiceModelConfig, ServiceProviderConfig,
    ThrottleDevice, UlimitsConfig, WeightDevice,
};
pub use units::{Duration, UnitBytes};
pub use volume::VolumeConfig;

/// Where the published JSON Schema says it lives.
pub const SCHEMA_ID: &str = "https://rcompose.dev/schema/compose-spec.json";

/// A whole Compose project.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "Compose Specification",
    description = "The Compose file is a YAML file defining a multi-containers based application."
)]
pub struct Project {
    /// Obsolete; accepted and ignored, as Docker Compose does.
    #[serde(default, skip_serializing)]
    #[schemars(schema_with = "version_schema")]
    pub version: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Other Compose files to include, as parsed (the `include` stage resolves them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "include_schema")]
    pub include: Vec<IncludeConfig>,
    #[serde(default)]
    #[serde(serialize_with = "units::sorted")]
    pub services: IndexMap<String, Service>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "nullable_entries"
    )]
    #[schemars(schema_with = "nullable_networks_schema")]
    #[serde(serialize_with = "units::sorted")]
    pub networks: IndexMap<String, NetworkConfig>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "nullable_entries"
    )]
    #[schemars(schema_with = "nullable_volumes_schema")]
    #[serde(serialize_with = "units::sorted")]
    pub volumes: IndexMap<String, VolumeConfig>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "nullable_entries"
    )]
    #[serde(serialize_with = "units::sorted")]
    pub secrets: IndexMap<String, SecretConfig>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "nullable_entries"
    )]
    #[serde(serialize_with = "units::sorted")]
    pub configs: IndexMap<String, ConfigObjConfig>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "nullable_entries"
    )]
    #[serde(serialize_with = "units::sorted")]
    pub models: IndexMap<String, ModelConfig>,
    #[serde(flatten)]
    pub extensions: Extensions,
    /// The variables the project was loaded with (process environment over env files),
    /// as compose-go keeps them: secrets and configs with `environment:` read their
    /// content from here when a container is made. Never printed.
    #[serde(skip)]
    #[schemars(skip)]
    pub environment: IndexMap<String, String>,
}

/// One `include` entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncludeConfig {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "units::lenient::string_list"
    )]
    #[schemars(schema_with = "units::schema::string_or_list")]
    pub path: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project_directory: String,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "units::lenient::string_list"
    )]
    #[schemars(schema_with = "units::schema::string_or_list")]
    pub env_file: Vec<String>,
}

/// Why a document does not decode into the model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// A value has the wrong shape; `path` is compose-style (`services.web.ports.0`).
    #[error("{}", render_decode_error(.path, .message))]
    Decode { path: String, message: String },
}

fn render_decode_error(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// Decodes a canonical document into a [`Project`], naming the key path of any error.
pub fn from_value(value: serde_yaml::Value) -> Result<Project, ModelError> {
    // Tracking the key path slows every decode down; it is only needed to explain an
    // error, so decode plainly first and again with tracking when that fails.
    if let Ok(project) = Project::deserialize(&value) {
        return Ok(project);
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut segments = compose_path(err.path());
        let inner = err.inner().to_string();
        let message = match unknown_field(&inner) {
            Some(field) => {
                // serde reports an unknown key at the key itself; Compose at its parent.
                if segments.last().map(String::as_str) == Some(field) {
                    segments.pop();
                }
                extensions::additional_properties_message(&[field.to_owned()])
            }
            None => inner,
        };
        ModelError::Decode {
            path: segments.join("."),
            message,
        }
    })
}

/// `services.web.ports[0].target` as Compose writes it: `services.web.ports.0.target`.
fn compose_path(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// The key named by serde's "unknown field" error, which Compose words differently.
fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field)
}

/// The JSON Schema of what a user may write in a Compose file, for editors.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::SchemaGenerator::default().into_root_schema_for::<Project>();
    schema.insert("$id".to_owned(), SCHEMA_ID.into());
    schema.insert("title".to_owned(), "Compose Specification".into());
    let mut value = schema.to_value();
    forbid_unknown_keys(&mut value);
    value
}

/// Objects that allow `x-*` keys allow nothing else. schemars drops
/// `additionalProperties: false` when it flattens [`Extensions`], so it is put back here.
fn forbid_unknown_keys(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(obj) => {
            let allows_extensions = obj
                .get("patternProperties")
                .and_then(|p| p.get("^x-"))
                .is_some();
            if allows_extensions && !obj.contains_key("additionalProperties") {
                obj.insert("additionalProperties".to_owned(), false.into());
            }
            obj.values_mut().for_each(forbid_unknown_keys);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(forbid_unknown_keys),
        _ => {}
    }
}

/// Top-level resource maps allow `name:` with no body; that means all defaults.
fn nullable_entries<'de, D, T>(deserializer: D) -> Result<IndexMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    struct EntriesVisitor<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for EntriesVisitor<T> {
        type Value = IndexMap<String, T>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a mapping")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(IndexMap::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries = IndexMap::new();
            while let Some(key) = map.next_key::<String>()? {
                let value = map.next_value::<Option<T>>()?;
                entries.insert(key, value.unwrap_or_default());
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_map(EntriesVisitor(std::marker::PhantomData))
}

fn version_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "deprecated": true, "description": "Obsolete; ignored."})
}

fn include_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<IncludeConfig>();
    json_schema!({"type": "array", "items": {"oneOf": [{"type": "string"}, long]}})
}

fn nullable_networks_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<NetworkConfig>();
    json_schema!({"type": "object", "additionalProperties": {"oneOf": [long, {"type": "null"}]}})
}

fn nullable_volumes_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<VolumeConfig>();
    json_schema!({"type": "object", "additionalProperties": {"oneOf": [long, {"type": "null"}]}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> Result<Project, ModelError> {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).expect("test YAML parses");
        from_value(value)
    }

    /// A service using every key, in canonical (long) form.
    const EVERY_KEY: &str = r#"
name: demo
services:
  web:
    profiles: [debug]
    annotations: {com.example.a: "1"}
    attach: false
    build: {context: ., dockerfile: Dockerfile}
    develop: {watch: [{path: ./src, action: sync, target: /src}]}
    blkio_config:
      weight: 300
      weight_device: [{path: /dev/sda, weight: 400}]
      device_read_bps: [{path: /dev/sda, rate: 12mb}]
      device_read_iops: [{path: /dev/sda, rate: 120}]
      device_write_bps: [{path: /dev/sda, rate: 1024k}]
      device_write_iops: [{path: /dev/sda, rate: 30}]
    cap_add: [ALL]
    cap_drop: [NET_ADMIN]
    cgroup_parent: m-executor-abcd
    cgroup: host
    cpu_count: 2
    cpu_percent: 50
    cpu_period: 100000
    cpu_quota: 50000
    cpu_rt_period: "11000"
    cpu_rt_runtime: 11000
    cpus: 1.5
    cpuset: 0-3
    cpu_shares: 512
    command: [bundle, exec, thin]
    configs: [{source: my_config, target: /etc/my_config, mode: 0440}]
    container_name: my-web
    credential_spec: {config: my_credential_spec}
    depends_on:
      db: {condition: service_healthy, restart: true, required: true}
    deploy: {mode: replicated, replicas: 2}
    device_cgroup_rules: ["c 1:3 mr"]
    devices: [{source: /dev/ttyUSB0, target: /dev/ttyUSB0, permissions: rwm}]
    dns: [8.8.8.8]
    dns_opt: [use-vc]
    dns_search: [example.com]
    domainname: foo.com
    entrypoint: [/entrypoint.sh]
    environment: {RACK_ENV: development, SHOW: "true", UNSET: null}
    env_file: [{path: ./common.env, required: false}]
    expose: ["3000", "8000"]
    external_links: [redis_1]
    extra_hosts: [somehost=162.242.195.82]
    group_add: [mail, "42"]
    gpus: [{driver: nvidia, count: all}]
    hostname: web
    healthcheck: {test: [CMD, curl, -f, http://localhost], interval: 1m30s, timeout: 10s, retries: 3}
    image: nginx:latest
    init: true
    ipc: shareable
    isolation: default
    labels: {com.example.description: Accounting webapp}
    label_file: [./app.labels]
    links: [db:database]
    logging: {driver: syslog, options: {syslog-address: "tcp://192.168.0.42:123"}}
    mem_limit: 1g
    mem_reservation: 512m
    memswap_limit: -1
    mem_swappiness: 60
    mac_address: 02:42:ac:11:65:43
    models: {llm: {endpoint_var: AI_URL}}
    network_mode: bridge
    networks: {front: {aliases: [alias1], ipv4_address: 172.16.238.10, priority: 1000}, back: null}
    oom_kill_disable: true
    oom_score_adj: 500
    pid: host
    pids_limit: 10
    platform: linux/amd64
    ports: [{mode: ingress, target: 80, published: "8080", protocol: tcp}]
    privileged: true
    pull_policy: always
    read_only: true
    restart: unless-stopped
    runtime: runc
    scale: 2
    secrets: [{source: server-certificate, target: /run/secrets/cert}]
    security_opt: [label:user:USER]
    shm_size: 64m
    stdin_open: true
    stop_grace_period: 1m30s
    stop_signal: SIGUSR1
    storage_opt: {size: 20G}
    sysctls: {net.core.somaxconn: 1024}
    tmpfs: [/run]
    tty: true
    ulimits: {nproc: 65535, nofile: {soft: 20000, hard: 40000}}
    use_api_socket: true
    user: postgresql
    userns_mode: host
    uts: host
    volume_driver: mydriver
    volumes: [{type: volume, source: db-data, target: /data, volume: {nocopy: true}}]
    volumes_from: [other:ro]
    working_dir: /code
    post_start: [{command: [./start.sh], user: root}]
    pre_stop: [{command: [./stop.sh]}]
    provider: {type: awesomecloud, options: {type: mysql, size: 256}}
    x-custom: {a: 1}
  db:
    image: postgres
networks:
  front: {driver: bridge}
  back: {}
volumes:
  db-data: {}
secrets:
  server-certificate: {file: ./server.cert}
configs:
  my_config: {file: ./my_config.txt}
models:
  llm: {model: ai/smollm2}
x-top: true
"#;

    #[test]
    fn decodes_every_service_key() {
        let project = decode(EVERY_KEY).expect("every key decodes");
        let web = &project.services["web"];
        assert_eq!(web.cpu_rt_period, 11000);
        assert_eq!(web.cpus, 1.5);
        assert_eq!(web.attach, Some(false));
        assert_eq!(
            web.command.as_deref(),
            Some(&["bundle".to_owned(), "exec".to_owned(), "thin".to_owned()][..])
        );
        assert_eq!(web.depends_on["db"].condition, "service_healthy");
        assert_eq!(web.environment["UNSET"], None);
        assert_eq!(web.environment["SHOW"].as_deref(), Some("true"));
        assert!(!web.env_file[0].required);
        assert_eq!(web.expose, ["3000", "8000"]);
        assert_eq!(web.group_add, ["mail", "42"]);
        assert_eq!(web.gpus[0].count, DeviceCount::ALL);
        assert_eq!(web.mem_limit, UnitBytes(1 << 30));
        assert_eq!(web.memswap_limit, UnitBytes(-1));
        assert_eq!(web.networks["back"], None);
        assert_eq!(
            web.networks["front"].as_ref().map(|n| n.priority),
            Some(1000)
        );
        assert_eq!(web.ports[0].published, "8080");
        assert_eq!(web.scale, Some(2));
        assert_eq!(web.stop_grace_period, Some(Duration::from_secs(90)));
        assert_eq!(web.sysctls["net.core.somaxconn"], "1024");
        assert_eq!(web.ulimits["nofile"].hard, 40000);
        assert!(web.use_api_socket);
        assert_eq!(
            web.provider.as_ref().map(|p| p.options["size"].clone()),
            Some(vec!["256".to_owned()])
        );
        assert!(web.extensions.contains_key("x-custom"));
        assert_eq!(project.models["llm"].model, "ai/smollm2");
        assert!(project.extensions.contains_key("x-top"));
    }

    #[test]
    fn config_output_round_trips() {
        let project = decode(EVERY_KEY).expect("every key decodes");
        let yaml = serde_yaml::to_string(&project).expect("serializes");
        let again = decode(&yaml).expect("printed output decodes");
        assert_eq!(project, again);
        let json = serde_json::to_string(&project).expect("serializes as JSON");
        let from_json: Project = serde_json::from_str(&json).expect("JSON decodes");
        assert_eq!(project, from_json);
    }

    #[test]
    fn prints_like_docker_compose_config() {
        let project = decode(
            "services:\n  web:\n    image: nginx\n    ports: [{target: 80, published: 8080, protocol: tcp, mode: ingress}]\n    networks: {default: null}\n    shm_size: 512m\n    stop_grace_period: 90s\n",
        )
        .expect("decodes");
        let yaml = serde_yaml::to_string(&project).expect("serializes");
        assert_eq!(
            yaml,
            "services:\n  web:\n    image: nginx\n    networks:\n      default: null\n    ports:\n    - mode: ingress\n      target: 80\n      published: '8080'\n      protocol: tcp\n    shm_size: '536870912'\n    stop_grace_period: 1m30s\n"
        );
    }

    #[test]
    fn null_top_level_resources_are_defaults() {
        let project =
            decode("services: {}\nvolumes:\n  data:\nnetworks:\n  front: null\n").expect("decodes");
        assert_eq!(project.volumes["data"], VolumeConfig::default());
        assert_eq!(project.networks["front"], NetworkConfig::default());
    }

    #[test]
    fn unknown_service_key_names_its_path() {
        let err = decode("services:\n  web:\n    imgae: nginx\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "services.web: additional properties 'imgae' not allowed"
        );
        let err = decode("services:\n  web:\n    image: a\n    foo: 1\n    bar: 2\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "services.web: additional properties 'foo', 'bar' not allowed"
        );
        let err = decode("servics: {}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "additional properties 'servics' not allowed"
        );
    }

    #[test]
    fn bad_values_name_their_path() {
        let err = decode("services:\n  web:\n    ports: [{target: abc}]\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("services.web.ports.0.target: invalid type"),
            "{err}"
        );
        let err = decode("services:\n  web:\n    stop_grace_period: 10\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("services.web.stop_grace_period: invalid duration \"10\""),
            "{err}"
        );
        let err = decode("services:\n  web:\n    mem_limit: lots\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("services.web.mem_limit: invalid byte size \"lots\""),
            "{err}"
        );
        let err = decode("services:\n  web:\n    privileged: maybe\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("services.web.privileged: invalid type: expected a boolean"),
            "{err}"
        );
    }

    #[test]
    fn strict_structs_use_compose_wording_too() {
        let err = decode("services:\n  web:\n    extends: {service: a, fil: b}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "services.web.extends: additional properties 'fil' not allowed"
        );
    }

    #[test]
    fn interpolated_strings_decode_as_numbers_and_booleans() {
        let project = decode(
            "services:\n  web:\n    tty: 'yes'\n    read_only: 'off'\n    cpus: '0.5'\n    pids_limit: '-1'\n    scale: '3'\n",
        )
        .expect("decodes");
        let web = &project.services["web"];
        assert!(web.tty);
        assert!(!web.read_only);
        assert_eq!(web.cpus, 0.5);
        assert_eq!(web.pids_limit, -1);
        assert_eq!(web.scale, Some(3));
    }

    #[test]
    fn schema_describes_short_syntax_and_extensions() {
        let schema = json_schema();
        assert_eq!(schema["$id"], SCHEMA_ID);
        assert_eq!(schema["title"], "Compose Specification");
        assert_eq!(schema["patternProperties"]["^x-"], serde_json::json!({}));
        assert_eq!(schema["additionalProperties"], false);
        let service = &schema["$defs"]["Service"];
        assert_eq!(service["additionalProperties"], false);
        assert!(service["patternProperties"].get("^x-").is_some());
        let ports = service["properties"]["ports"]["items"]["oneOf"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(ports.iter().any(|s| s["type"] == "string"), "{ports:?}");
        let command = service["properties"]["command"]["oneOf"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(command.iter().any(|s| s["type"] == "string"));
        assert!(service["properties"]["depends_on"]["oneOf"].is_array());
        assert!(service["properties"]["build"]["oneOf"].is_array());
        assert_eq!(
            schema["$defs"]["ExtendsConfig"]["additionalProperties"],
            false
        );
    }
}
