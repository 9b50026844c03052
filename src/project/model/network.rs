//! Top-level `networks` and a service's attachment to them.

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::extensions::Extensions;
use super::units::{is_default, is_false, is_zero_i64, lenient, schema};

/// A network the project uses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NetworkConfig {
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
    #[serde(default, skip_serializing_if = "is_default")]
    pub ipam: IpamConfig,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "external_schema")]
    pub external: bool,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub internal: bool,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub attachable: bool,
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
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub enable_ipv4: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub enable_ipv6: Option<bool>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// IP address management of a network.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct IpamConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
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

/// One address pool of a network.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct IpamPool {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "lenient::string_map"
    )]
    #[schemars(schema_with = "options_schema")]
    #[serde(serialize_with = "super::units::sorted")]
    pub aux_addresses: IndexMap<String, String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// How a service joins one network.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceNetworkConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
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
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub gw_priority: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipv4_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipv6_address: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "lenient::i64"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub priority: i64,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A mapping of option names to scalar values.
pub fn options_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {"type": ["string", "number", "null"]}
    })
}

/// `external: true`, or the deprecated `external: {name: x}`.
pub fn external_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "oneOf": [
            {"type": ["boolean", "string"]},
            {
                "type": "object",
                "properties": {"name": {"type": "string", "deprecated": true}},
                "patternProperties": {"^x-": {}},
                "additionalProperties": false
            }
        ]
    })
}

/// What a user may write under `services.*.networks`: a list of names or a mapping.
pub fn service_networks_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<ServiceNetworkConfig>();
    json_schema!({
        "oneOf": [
            {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
            {"type": "object", "additionalProperties": {"oneOf": [long, {"type": "null"}]}}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_network_with_ipam() {
        let n: NetworkConfig = serde_yaml::from_str(
            "driver: bridge\nipam:\n  config:\n    - subnet: 172.28.0.0/16\n      aux_addresses: {host1: 172.28.1.5}\nenable_ipv6: 'yes'\nlabels: [a=b]\n",
        )
        .unwrap();
        assert_eq!(n.ipam.config[0].subnet, "172.28.0.0/16");
        assert_eq!(n.enable_ipv6, Some(true));
        assert_eq!(n.labels.get("a").map(String::as_str), Some("b"));
    }

    #[test]
    fn empty_ipam_is_not_printed() {
        let n = NetworkConfig {
            external: true,
            name: "front".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_yaml::to_string(&n).unwrap(),
            "name: front\nexternal: true\n"
        );
    }
}
