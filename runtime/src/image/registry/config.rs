//! Where to reach a registry: mirrors for Docker Hub and registries allowed over plain
//! HTTP, from `<state root>/registries.json` and the environment.
//!
//! ```json
//! {"mirrors": ["http://127.0.0.1:5000"], "insecure": ["registry.lan:5000"]}
//! ```
//!
//! `RCOMPOSE_REGISTRY_MIRRORS` and `RCOMPOSE_INSECURE_REGISTRIES` (comma-separated) add
//! to the file. As with Docker, mirrors only serve Docker Hub, and `localhost`, `127.*`
//! and `::1` registries may always use HTTP.

use std::fs;
use std::io;
use std::path::Path;

use serde::Deserialize;

use super::RegistryError;

/// The file in the state root.
pub const CONFIG_FILE: &str = "registries.json";
pub const MIRRORS_ENV: &str = "RCOMPOSE_REGISTRY_MIRRORS";
pub const INSECURE_ENV: &str = "RCOMPOSE_INSECURE_REGISTRIES";
/// The domain references to Docker Hub are normalized to.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's API actually answers.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    mirrors: Vec<String>,
    #[serde(default)]
    insecure: Vec<String>,
}

/// Mirrors and insecure registries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Base URLs (`http://host:port` or `https://host`) tried before Docker Hub.
    pub mirrors: Vec<String>,
    /// Hosts (`host` or `host:port`) reachable over plain HTTP.
    pub insecure: Vec<String>,
}

/// One place to send requests for a registry domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host[:port]` or `http://...`, without a trailing slash.
    pub base: String,
    /// When the HTTPS attempt fails to connect, plain HTTP is tried.
    pub http_fallback: bool,
    pub is_mirror: bool,
}

impl RegistryConfig {
    /// Reads `<root>/registries.json` (absent is fine) and the environment.
    pub fn load(state_root: &Path) -> Result<RegistryConfig, RegistryError> {
        let path = state_root.join(CONFIG_FILE);
        let mut config = read_config_file(&path)?;
        config.mirrors.extend(env_list(MIRRORS_ENV));
        config.insecure.extend(env_list(INSECURE_ENV));
        for mirror in &config.mirrors {
            if !(mirror.starts_with("http://") || mirror.starts_with("https://")) {
                return Err(RegistryError::Config {
                    path: path.clone(),
                    reason: format!(
                        "mirror {mirror:?} must be a URL starting with http:// or https://"
                    ),
                });
            }
        }
        Ok(config)
    }

    /// The endpoints to try for `domain`, in order: mirrors first for Docker Hub,
    /// then the registry itself.
    pub fn endpoints(&self, domain: &str) -> Vec<Endpoint> {
        let mut endpoints = Vec::new();
        if domain == DOCKER_HUB {
            endpoints.extend(self.mirrors.iter().map(|mirror| Endpoint {
                base: mirror.trim_end_matches('/').to_owned(),
                http_fallback: false,
                is_mirror: true,
            }));
        }
        let host = if domain == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            domain
        };
        endpoints.push(Endpoint {
            base: format!("https://{host}"),
            http_fallback: self.is_insecure(domain),
            is_mirror: false,
        });
        endpoints
    }

    /// Whether `domain` may be reached over plain HTTP.
    pub fn is_insecure(&self, domain: &str) -> bool {
        is_loopback_host(domain) || self.insecure.iter().any(|entry| entry == domain)
    }
}

fn read_config_file(path: &Path) -> Result<RegistryConfig, RegistryError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(RegistryConfig::default()),
        Err(err) => {
            return Err(RegistryError::Config {
                path: path.to_path_buf(),
                reason: err.to_string(),
            })
        }
    };
    let file: ConfigFile = serde_json::from_str(&text).map_err(|err| RegistryError::Config {
        path: path.to_path_buf(),
        reason: err.to_string(),
    })?;
    Ok(RegistryConfig {
        mirrors: file.mirrors,
        insecure: file.insecure,
    })
}

fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .map(|value| split_list(&value))
        .unwrap_or_default()
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback_host(domain: &str) -> bool {
    let host = match domain.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => domain.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_tries_mirrors_first_then_its_api_host() {
        let config = RegistryConfig {
            mirrors: vec!["http://127.0.0.1:5000/".into()],
            insecure: vec![],
        };
        let endpoints = config.endpoints("docker.io");
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0].base, "http://127.0.0.1:5000");
        assert!(endpoints[0].is_mirror);
        assert_eq!(endpoints[1].base, "https://registry-1.docker.io");
        assert!(!endpoints[1].http_fallback);
    }

    #[test]
    fn mirrors_do_not_serve_other_registries() {
        let config = RegistryConfig {
            mirrors: vec!["http://mirror".into()],
            insecure: vec![],
        };
        let endpoints = config.endpoints("ghcr.io");
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].base, "https://ghcr.io");
    }

    #[test]
    fn loopback_and_listed_registries_may_use_http() {
        let config = RegistryConfig {
            mirrors: vec![],
            insecure: vec!["registry.lan:5000".into()],
        };
        assert!(config.is_insecure("localhost:5000"));
        assert!(config.is_insecure("127.0.0.1:5000"));
        assert!(config.is_insecure("[::1]:5000"));
        assert!(config.is_insecure("registry.lan:5000"));
        assert!(!config.is_insecure("registry.lan"));
        assert!(!config.is_insecure("docker.io"));
        assert!(config.endpoints("localhost:5000")[0].http_fallback);
    }

    #[test]
    fn the_config_file_is_read_and_bad_mirrors_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join(CONFIG_FILE),
            r#"{"mirrors": ["http://m:5000"], "insecure": ["r:1"]}"#,
        )
        .expect("write");
        let config = read_config_file(&dir.path().join(CONFIG_FILE)).expect("load");
        assert_eq!(config.mirrors, vec!["http://m:5000"]);
        assert_eq!(config.insecure, vec!["r:1"]);

        fs::write(dir.path().join(CONFIG_FILE), r#"{"mirrors": ["m:5000"]}"#).expect("write");
        let err = RegistryConfig::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("registries.json") && err.contains("m:5000"),
            "{err}"
        );

        fs::write(dir.path().join(CONFIG_FILE), r#"{"mirror": []}"#).expect("write");
        let err = RegistryConfig::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn environment_lists_are_comma_separated() {
        assert_eq!(split_list(" a, b,,c "), vec!["a", "b", "c"]);
        assert!(split_list("").is_empty());
    }
}
