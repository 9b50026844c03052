//! Registry errors, worded for the person who typed the image name.

use std::path::PathBuf;

use thiserror::Error;

use crate::image::reference::Digest;
use crate::image::store::StoreError;

/// Why a pull or push failed. Every variant names the image or the registry.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("registry settings {}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error("credential helper {helper} failed for {server}: {reason}")]
    CredentialHelper {
        helper: String,
        server: String,
        reason: String,
    },
    #[error("{action} access denied for {reference}: {registry} requires authentication and {detail} (401 Unauthorized); set credentials with `docker login {registry}` or in $DOCKER_CONFIG/config.json")]
    Unauthorized {
        action: &'static str,
        reference: String,
        registry: String,
        detail: String,
    },
    #[error("{action} access denied for {reference}: {registry} refused these credentials for this repository (403 Forbidden){detail}")]
    Denied {
        action: &'static str,
        reference: String,
        registry: String,
        detail: String,
    },
    #[error("{what} for {reference} not found: no such image or tag on {registry}{detail}")]
    NotFound {
        what: String,
        reference: String,
        registry: String,
        detail: String,
    },
    #[error("{registry} is rate limiting requests for {reference} (429 Too Many Requests){}; wait and retry, or log in for a higher limit", retry_after.as_ref().map(|after| format!(", retry after {after}")).unwrap_or_default())]
    RateLimited {
        reference: String,
        registry: String,
        retry_after: Option<String>,
    },
    #[error("TLS connection to {registry} failed for {reference}: {detail} (a registry without a valid certificate must be listed as insecure in {config} or ${env})", config = super::CONFIG_FILE, env = super::INSECURE_ENV)]
    Tls {
        reference: String,
        registry: String,
        detail: String,
    },
    #[error("cannot connect to {registry} for {reference}: connection refused at {url} (is the registry running?)")]
    ConnectionRefused {
        reference: String,
        registry: String,
        url: String,
    },
    #[error("cannot reach {registry} for {reference} at {url}: {detail}")]
    Network {
        reference: String,
        registry: String,
        url: String,
        detail: String,
    },
    #[error("{registry} answered {status} for {what} of {reference}{detail}")]
    Status {
        what: String,
        reference: String,
        registry: String,
        status: u16,
        detail: String,
    },
    #[error("download of {what} for {reference} was interrupted: {detail}")]
    Interrupted {
        what: String,
        reference: String,
        detail: String,
    },
    #[error("{what} of {reference} does not match its digest: expected {expected}, got {actual}; the registry or a proxy served corrupt data")]
    DigestMismatch {
        what: String,
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{what} of {reference} is larger than the {expected} bytes its manifest gives")]
    TooLarge {
        what: String,
        reference: String,
        expected: u64,
    },
    #[error("manifest of {reference} is invalid: {reason}")]
    BadManifest { reference: String, reason: String },
    #[error("no matching manifest for {wanted} in the manifest list of {reference} (it has: {available})")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("invalid platform {given:?}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8")]
    InvalidPlatform { given: String },
    #[error("An image does not exist locally with the tag: {0}")]
    NotLocal(String),
    #[error("image store, for {reference}: {source}")]
    Store {
        reference: String,
        source: StoreError,
    },
    #[error("{error}; {}", mirrors.iter().map(|m| format!("mirror {} was tried first: {}", m.mirror, m.error)).collect::<Vec<_>>().join("; "))]
    AfterMirrors {
        error: Box<RegistryError>,
        mirrors: Vec<MirrorFailure>,
    },
    #[error("{reference}: cannot {action}: {detail}")]
    Local {
        reference: String,
        action: &'static str,
        detail: String,
    },
}

/// Why a mirror did not serve an image (reported when no endpoint did).
#[derive(Debug)]
pub struct MirrorFailure {
    pub mirror: String,
    pub error: Box<RegistryError>,
}

impl RegistryError {
    /// Errors a retry of the same request may cure.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            RegistryError::Interrupted { .. } | RegistryError::Network { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// `{"errors":[{"code":..,"message":..}]}` from a registry, as ": message" for errors.
pub(crate) fn registry_detail(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let text = match serde_json::from_str::<Body>(body) {
        Ok(parsed) => parsed
            .errors
            .iter()
            .map(
                |entry| match (entry.code.is_empty(), entry.message.is_empty()) {
                    (false, false) => format!("{}: {}", entry.code, entry.message),
                    (true, _) => entry.message.clone(),
                    (false, true) => entry.code.clone(),
                },
            )
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => body.chars().filter(|c| !c.is_control()).take(200).collect(),
    };
    if text.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", text.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_bodies_become_short_details() {
        assert_eq!(
            registry_detail(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#
            ),
            ": MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(registry_detail(""), "");
        assert_eq!(
            registry_detail("404 page not found\n"),
            ": 404 page not found"
        );
    }

    #[test]
    fn messages_name_the_image_and_what_to_do() {
        let err = RegistryError::Unauthorized {
            action: "pull",
            reference: "localhost:5000/app:1".into(),
            registry: "localhost:5000".into(),
            detail: "no credentials were found".into(),
        };
        let text = err.to_string();
        assert!(
            text.contains("localhost:5000/app:1") && text.contains("401"),
            "{text}"
        );
        assert!(text.contains("docker login localhost:5000"), "{text}");
        let limited = RegistryError::RateLimited {
            reference: "docker.io/library/busybox:latest".into(),
            registry: "docker.io".into(),
            retry_after: Some("60 seconds".into()),
        };
        assert!(limited.to_string().contains("retry after 60 seconds"));
    }
}
