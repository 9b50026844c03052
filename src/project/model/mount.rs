//! `services.*.volumes` entries in their long form.

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::extensions::Extensions;
use super::units::{is_false, is_zero_u32, lenient, schema, UnitBytes};

pub const VOLUME_TYPE_BIND: &str = "bind";
pub const VOLUME_TYPE_VOLUME: &str = "volume";
pub const VOLUME_TYPE_TMPFS: &str = "tmpfs";
pub const VOLUME_TYPE_NPIPE: &str = "npipe";
pub const VOLUME_TYPE_CLUSTER: &str = "cluster";
pub const VOLUME_TYPE_IMAGE: &str = "image";

/// A mount into the service's containers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceVolumeConfig {
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub consistency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<ServiceVolumeBind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<ServiceVolumeVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<ServiceVolumeTmpfs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ServiceVolumeImage>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Options of a bind mount.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceVolumeBind {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selinux: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub propagation: String,
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub create_host_path: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recursive: String,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Options of a named or anonymous volume mount.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceVolumeVolume {
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
        skip_serializing_if = "is_false",
        deserialize_with = "lenient::bool"
    )]
    #[schemars(schema_with = "schema::bool_or_string")]
    pub nocopy: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subpath: String,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Options of a tmpfs mount.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceVolumeTmpfs {
    #[serde(default, skip_serializing_if = "UnitBytes::is_zero")]
    pub size: UnitBytes,
    #[serde(
        default,
        skip_serializing_if = "is_zero_u32",
        deserialize_with = "lenient::u32"
    )]
    #[schemars(schema_with = "schema::number_or_string")]
    pub mode: u32,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Options of an image mount.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceVolumeImage {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subpath: String,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// What a user may write under `services.*.volumes`.
pub fn volumes_schema(generator: &mut SchemaGenerator) -> Schema {
    let long = generator.subschema_for::<ServiceVolumeConfig>();
    json_schema!({
        "type": "array",
        "items": {"oneOf": [{"type": "string"}, long]}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_mount_prints_empty_volume_options() {
        let m = ServiceVolumeConfig {
            kind: VOLUME_TYPE_VOLUME.into(),
            source: "data".into(),
            target: "/data".into(),
            volume: Some(ServiceVolumeVolume::default()),
            ..Default::default()
        };
        assert_eq!(
            serde_yaml::to_string(&m).unwrap(),
            "type: volume\nsource: data\ntarget: /data\nvolume: {}\n"
        );
    }

    #[test]
    fn decodes_bind_and_tmpfs_options() {
        let m: ServiceVolumeConfig = serde_yaml::from_str(
            "type: bind\nsource: ./src\ntarget: /src\nread_only: 'true'\nbind: {create_host_path: true, propagation: rshared}\n",
        )
        .unwrap();
        assert!(m.read_only);
        assert_eq!(m.bind.as_ref().map(|b| b.create_host_path), Some(true));
        let t: ServiceVolumeConfig =
            serde_yaml::from_str("type: tmpfs\ntarget: /tmp\ntmpfs: {size: 64m, mode: 1777}\n")
                .unwrap();
        let tmpfs = t.tmpfs.unwrap_or_default();
        assert_eq!(tmpfs.size, UnitBytes(64 << 20));
        assert_eq!(tmpfs.mode, 1777);
    }

    #[test]
    fn rejects_unknown_mount_keys() {
        let err =
            serde_yaml::from_str::<ServiceVolumeConfig>("type: bind\nsorce: x\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("additional properties 'sorce' not allowed"),
            "{err}"
        );
    }
}
