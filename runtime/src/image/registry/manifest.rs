//! Manifests as registries serve them: Docker schema 2 and OCI image manifests, and
//! Docker manifest lists and OCI indexes, from which one platform's manifest is chosen.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::client::Repository;
use super::error::RegistryError;
use crate::image::import::{host_architecture, HOST_OS};
use crate::image::reference::Digest;
use crate::image::store::MAX_JSON_BYTES;

pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Schema 1 manifests (signed JSON) were retired by Docker; such images must be rebuilt.
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";
/// Every manifest type this client reads, for the `Accept` header.
pub(crate) const ACCEPTED: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor: what a manifest says about a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image manifest (Docker schema 2 or OCI).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A manifest list or OCI index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub(crate) enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

/// Raw manifest bytes as received, with their type and digest.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// An image platform: `linux/amd64`, `linux/arm64/v8`, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// This machine's platform, the default choice from a manifest list.
    pub fn host() -> Platform {
        Platform {
            os: HOST_OS.to_owned(),
            architecture: host_architecture().to_owned(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]` as `--platform` takes it.
    pub fn parse(text: &str) -> Result<Platform, RegistryError> {
        let invalid = || RegistryError::InvalidPlatform {
            given: text.to_owned(),
        };
        let parts: Vec<&str> = text.trim().split('/').collect();
        if parts.iter().any(|part| part.is_empty()) {
            return Err(invalid());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: None,
            }),
            [os, arch, variant] => Ok(Platform {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: Some(variant.to_ascii_lowercase()),
            }),
            _ => Err(invalid()),
        }
    }

    /// Whether a manifest list entry for `candidate` serves this platform. Without a
    /// variant any variant does; arm64's only variant, v8, may also be left unsaid.
    fn accepts(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        match (&self.variant, &candidate.variant) {
            (None, _) => true,
            (Some(wanted), Some(offered)) => wanted == offered,
            (Some(wanted), None) => self.architecture == "arm64" && wanted == "v8",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Parses a fetched manifest by its media type (the header, else its own field).
pub(crate) fn parse_manifest(
    fetched: &Fetched,
    reference: &str,
) -> Result<Manifest, RegistryError> {
    let bad = |reason: String| RegistryError::BadManifest {
        reference: reference.to_owned(),
        reason,
    };
    let declared = serde_json::from_slice::<serde_json::Value>(&fetched.bytes)
        .map_err(|err| bad(format!("not JSON: {err}")))?;
    let media_type = match fetched.media_type.split(';').next().map(str::trim) {
        Some(header) if !header.is_empty() && header != "application/json" => header.to_owned(),
        _ => declared
            .get("mediaType")
            .and_then(|value| value.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                if declared.get("manifests").is_some() {
                    OCI_INDEX.to_owned()
                } else {
                    OCI_MANIFEST.to_owned()
                }
            }),
    };
    match media_type.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => serde_json::from_value(declared)
            .map(Manifest::Image)
            .map_err(|err| bad(err.to_string())),
        DOCKER_MANIFEST_LIST | OCI_INDEX => serde_json::from_value(declared)
            .map(Manifest::Index)
            .map_err(|err| bad(err.to_string())),
        other if other.starts_with(DOCKER_SCHEMA1) => Err(bad(
            "it is a Docker schema 1 manifest, which is no longer supported; push the image again with a current Docker".to_owned(),
        )),
        other => Err(bad(format!("unsupported media type {other}"))),
    }
}

/// The entry of `index` for `wanted`.
pub(crate) fn select_platform<'i>(
    index: &'i ImageIndex,
    wanted: &Platform,
    reference: &str,
) -> Result<&'i Descriptor, RegistryError> {
    let offered = || {
        index
            .manifests
            .iter()
            .filter_map(|entry| entry.platform.as_ref())
    };
    let matching = |entry: &&Descriptor| {
        entry
            .platform
            .as_ref()
            .is_some_and(|platform| wanted.accepts(platform))
    };
    // An exact variant match beats "any variant".
    let exact = index
        .manifests
        .iter()
        .filter(matching)
        .find(|entry| entry.platform.as_ref().map(|p| &p.variant) == Some(&wanted.variant));
    exact
        .or_else(|| index.manifests.iter().find(matching))
        .ok_or_else(|| RegistryError::NoMatchingPlatform {
            reference: reference.to_owned(),
            wanted: wanted.to_string(),
            available: offered()
                .filter(|platform| platform.os != "unknown")
                .map(Platform::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// `GET /v2/<name>/manifests/<tag or digest>`, checked against the digest when the
/// reference is one.
pub(crate) async fn fetch_manifest(
    repo: &Repository,
    tag_or_digest: &str,
    expected: Option<&Digest>,
) -> Result<Fetched, RegistryError> {
    let url = repo.url(&format!("manifests/{tag_or_digest}"));
    let what = format!("manifest {tag_or_digest}");
    let response = repo
        .send(&url, |http| {
            http.get(&url).header(reqwest::header::ACCEPT, ACCEPTED)
        })
        .await?;
    let response = repo.check(response, &what).await?;
    let media_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = read_limited(response, &what, repo).await?;
    let digest = Digest::sha256_of(&bytes);
    if let Some(expected) = expected {
        if *expected != digest {
            return Err(RegistryError::DigestMismatch {
                what,
                reference: repo.names.reference.clone(),
                expected: expected.clone(),
                actual: digest,
            });
        }
    }
    Ok(Fetched {
        bytes,
        media_type,
        digest,
    })
}

/// Reads a JSON document's body, refusing anything larger than the store accepts.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    what: &str,
    repo: &Repository,
) -> Result<Vec<u8>, RegistryError> {
    let mut bytes = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|err| RegistryError::Interrupted {
                what: what.to_owned(),
                reference: repo.names.reference.clone(),
                detail: err.to_string(),
            })?;
        let Some(chunk) = chunk else {
            return Ok(bytes);
        };
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_JSON_BYTES {
            return Err(RegistryError::TooLarge {
                what: what.to_owned(),
                reference: repo.names.reference.clone(),
                expected: MAX_JSON_BYTES,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(json: &str, media_type: &str) -> Fetched {
        Fetched {
            bytes: json.as_bytes().to_vec(),
            media_type: media_type.to_owned(),
            digest: Digest::sha256_of(json.as_bytes()),
        }
    }

    fn index_with(platforms: &[&str]) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: platforms
                .iter()
                .map(|platform| Descriptor {
                    media_type: OCI_MANIFEST.into(),
                    digest: Digest::sha256_of(platform.as_bytes()),
                    size: 1,
                    platform: Some(Platform::parse(platform).expect("platform")),
                    annotations: None,
                })
                .collect(),
        }
    }

    #[test]
    fn platforms_parse_and_print() {
        let platform = Platform::parse("linux/arm64/v8").expect("parse");
        assert_eq!(platform.variant.as_deref(), Some("v8"));
        assert_eq!(platform.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("Linux/AMD64").expect("parse").to_string(),
            "linux/amd64"
        );
        for bad in ["linux", "linux/", "a/b/c/d", ""] {
            let err = Platform::parse(bad).unwrap_err().to_string();
            assert!(err.contains("os/arch"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_wanted_platform_is_chosen_from_an_index() {
        let index = index_with(&[
            "linux/amd64",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm64/v8",
        ]);
        let pick = |wanted: &str| {
            select_platform(&index, &Platform::parse(wanted).expect("platform"), "x")
                .map(|entry| entry.platform.clone().expect("platform").to_string())
        };
        assert_eq!(pick("linux/amd64").expect("amd64"), "linux/amd64");
        assert_eq!(pick("linux/arm/v7").expect("v7"), "linux/arm/v7");
        assert_eq!(pick("linux/arm64").expect("arm64"), "linux/arm64/v8");
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/arm/v7"),
            "{err}"
        );
    }

    #[test]
    fn arm64_v8_matches_an_entry_without_variant() {
        let index = index_with(&["linux/arm64"]);
        let wanted = Platform::parse("linux/arm64/v8").expect("platform");
        assert!(select_platform(&index, &wanted, "x").is_ok());
    }

    #[test]
    fn manifests_are_told_apart_by_media_type() {
        let digest = Digest::sha256_of(b"c");
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"x","digest":"{digest}","size":1}},"layers":[]}}"#
        );
        assert!(matches!(
            parse_manifest(&fetched(&image, DOCKER_MANIFEST), "r").expect("parse"),
            Manifest::Image(_)
        ));
        // No header: the document's own mediaType decides.
        assert!(matches!(
            parse_manifest(&fetched(&image, ""), "r").expect("parse"),
            Manifest::Image(_)
        ));
        let index = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest(&fetched(index, "application/json"), "r").expect("parse"),
            Manifest::Index(_)
        ));
        let err = parse_manifest(
            &fetched(
                "{}",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            ),
            "busybox:old",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("busybox:old") && err.contains("schema 1"),
            "{err}"
        );
    }
}
