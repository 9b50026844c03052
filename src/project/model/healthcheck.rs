//! `services.*.healthcheck`.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::extensions::Extensions;
use super::units::{is_false, lenient, schema, Duration};

/// How the engine probes a service's health.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct HealthCheckConfig {
    /// The probe, e.g. `["CMD-SHELL", "curl -f localhost"]` or `["NONE"]`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient::string_list"
    )]
    #[schemars(schema_with = "test_schema")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_u64"
    )]
    #[schemars(schema_with = "schema::number_or_string")]
    pub retries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub disable: bool,
    #[serde(flatten)]
    pub extensions: Extensions,
}

fn test_schema(generator: &mut SchemaGenerator) -> Schema {
    schema::string_or_list(generator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_durations_and_retries() {
        let h: HealthCheckConfig = serde_yaml::from_str(
            "test: [CMD, true]\ninterval: 1m30s\ntimeout: 10s\nretries: '3'\nstart_period: 500ms\n",
        )
        .unwrap();
        assert_eq!(h.test, ["CMD", "true"]);
        assert_eq!(h.interval, Some(Duration::from_secs(90)));
        assert_eq!(h.retries, Some(3));
        let out = serde_yaml::to_string(&h).unwrap();
        assert!(out.contains("interval: 1m30s"), "{out}");
        assert!(out.contains("start_period: 500ms"), "{out}");
    }

    #[test]
    fn bad_duration_is_an_error() {
        let err = serde_yaml::from_str::<HealthCheckConfig>("interval: soon\n").unwrap_err();
        assert!(
            err.to_string().contains("invalid duration \"soon\""),
            "{err}"
        );
    }
}
