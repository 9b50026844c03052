//! `services.*.ports` entries in their long form.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::extensions::Extensions;
use super::units::{is_zero_u32, lenient, schema};

/// One published port: `{mode: ingress, target: 80, published: "8080", protocol: tcp}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServicePortConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    #[serde(
        default,
        skip_serializing_if = "is_zero_u32",
        deserialize_with = "lenient::u32"
    )]
    #[schemars(schema_with = "schema::integer_or_string")]
    pub target: u32,
    /// The host port or range (`"8080"`, `"8000-8010"`); a string as Compose prints it.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "lenient::string"
    )]
    #[schemars(schema_with = "schema::string_or_number")]
    pub published: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app_protocol: String,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// What a user may write under `ports`: numbers, short strings or long mappings.
pub fn ports_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<ServicePortConfig>();
    json_schema!({
        "type": "array",
        "items": {"oneOf": [{"type": "number"}, {"type": "string"}, long]}
    })
}

/// What a user may write under `expose`.
pub fn expose_schema(generator: &mut SchemaGenerator) -> Schema {
    schema::list_of_string_or_number(generator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_long_form_with_numeric_strings() {
        let p: ServicePortConfig =
            serde_yaml::from_str("target: '80'\npublished: 8080\nprotocol: udp\nmode: host\n")
                .unwrap();
        assert_eq!(p.target, 80);
        assert_eq!(p.published, "8080");
        assert_eq!(p.protocol, "udp");
    }

    #[test]
    fn prints_published_as_string_in_compose_order() {
        let p = ServicePortConfig {
            mode: "ingress".into(),
            target: 80,
            published: "8080".into(),
            protocol: "tcp".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_yaml::to_string(&p).unwrap(),
            "mode: ingress\ntarget: 80\npublished: '8080'\nprotocol: tcp\n"
        );
    }

    #[test]
    fn rejects_bad_target() {
        let err = serde_yaml::from_str::<ServicePortConfig>("target: abc\n").unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
