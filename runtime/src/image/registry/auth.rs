//! Credentials and the registry's authentication challenges.
//!
//! Credentials come from Docker's client config (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): a per-registry helper in `credHelpers`, else the default
//! `credsStore` helper (`docker-credential-<name> get`), else the base64 `auth` of the
//! `auths` entry. Docker Hub's entry is keyed `https://index.docker.io/v1/`.
//!
//! A registry answers `/v2/` with 401 and a `WWW-Authenticate` challenge: `Basic`
//! (send the credentials with every request) or `Bearer` (get a token from the realm
//! for the repository's scope, anonymously or with the credentials, and send that).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use super::config::DOCKER_HUB;
use super::RegistryError;

/// The key Docker stores Docker Hub credentials under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// Set instead of a user name when the secret is an identity token.
const IDENTITY_TOKEN_USER: &str = "<token>";

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Docker's client config directory: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn docker_config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker"))
}

/// The credentials Docker's client config holds for `domain`, if any.
pub fn credentials_for(
    config_dir: Option<&Path>,
    domain: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let Some(dir) = config_dir else {
        return Ok(None);
    };
    let path = dir.join("config.json");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(config_error(&path, err.to_string())),
    };
    let config: DockerConfig =
        serde_json::from_str(&text).map_err(|err| config_error(&path, err.to_string()))?;
    let key = server_key(domain);
    let helper = config
        .cred_helpers
        .get(&key)
        .or(config.cred_helpers.get(domain))
        .or(config.creds_store.as_ref());
    if let Some(helper) = helper.filter(|helper| !helper.is_empty()) {
        if let Some(credentials) = run_helper(helper, &key)? {
            return Ok(Some(credentials));
        }
    }
    let entry = config
        .auths
        .iter()
        .find(|(name, _)| normalize_key(name) == normalize_key(&key))
        .map(|(_, entry)| entry);
    entry
        .map(|entry| decode_entry(entry, &path, &key))
        .transpose()
        .map(Option::flatten)
}

fn config_error(path: &Path, reason: String) -> RegistryError {
    RegistryError::Config {
        path: path.to_path_buf(),
        reason,
    }
}

/// The name Docker looks credentials up by.
fn server_key(domain: &str) -> String {
    if domain == DOCKER_HUB {
        DOCKER_HUB_KEY.to_owned()
    } else {
        domain.to_owned()
    }
}

/// `https://host/v1/` and `host` name the same registry in `auths`.
fn normalize_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn decode_entry(
    entry: &AuthEntry,
    path: &Path,
    key: &str,
) -> Result<Option<Credentials>, RegistryError> {
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    let Some(auth) = entry.auth.as_deref().filter(|auth| !auth.is_empty()) else {
        return Ok(None);
    };
    let bad = |reason: &str| config_error(path, format!("auths.{key:?}.auth {reason}"));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad("is not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| bad("is not UTF-8"))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| bad("is not base64 of user:password"))?;
    Ok(Some(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    }))
}

/// Runs `docker-credential-<helper> get` with the server on standard input. A helper
/// that has nothing for this server is not an error.
fn run_helper(helper: &str, server: &str) -> Result<Option<Credentials>, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let fail = |reason: String| RegistryError::CredentialHelper {
        helper: program.clone(),
        server: server.to_owned(),
        reason,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| fail(format!("cannot run it: {err}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|err| fail(err.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|err| fail(err.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(fail(format!("{} {}", stdout.trim(), stderr.trim())));
    }
    let answer: HelperAnswer =
        serde_json::from_str(&stdout).map_err(|err| fail(format!("unreadable answer: {err}")))?;
    if answer.username == IDENTITY_TOKEN_USER {
        // OAuth identity tokens need Docker Hub's refresh flow, which this client lacks.
        return Err(fail(
            "it returned an identity token; use a user name and password or access token"
                .to_owned(),
        ));
    }
    Ok(Some(Credentials {
        username: answer.username,
        password: answer.secret,
    }))
}

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value; `None` for schemes this client lacks.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(params);
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
            })
        }
        _ => None,
    }
}

/// `key="value",key2=value2` into a map; commas inside quotes are kept.
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, remaining)) => (value, remaining),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.insert(key, value.to_owned());
        rest = remaining.trim_start_matches(',').trim();
    }
    params
}

/// The token endpoint's answer: Docker Hub says `token`, OAuth servers `access_token`.
#[derive(Debug, Deserialize)]
pub struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl TokenAnswer {
    pub fn into_token(self) -> Option<String> {
        self.token
            .filter(|token| !token.is_empty())
            .or(self.access_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(dir: &Path, json: &str) {
        fs::write(dir.join("config.json"), json).expect("write config");
    }

    #[test]
    fn auths_entries_give_basic_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        // "alice:s3cr:et" — a password may contain ':'.
        write_config(
            dir.path(),
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcjpldA=="},
                          "http://localhost:5000": {"auth": "Ym9iOnB3"}}}"#,
        );
        let hub = credentials_for(Some(dir.path()), "docker.io")
            .expect("read")
            .expect("hub credentials");
        assert_eq!(hub.username, "alice");
        assert_eq!(hub.password, "s3cr:et");
        let local = credentials_for(Some(dir.path()), "localhost:5000")
            .expect("read")
            .expect("local credentials");
        assert_eq!(local.username, "bob");
        assert!(credentials_for(Some(dir.path()), "ghcr.io")
            .expect("read")
            .is_none());
    }

    #[test]
    fn missing_config_means_anonymous_and_bad_config_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(credentials_for(Some(dir.path()), "docker.io")
            .expect("no file")
            .is_none());
        write_config(dir.path(), r#"{"auths": {"r.io": {"auth": "%%%"}}}"#);
        let err = credentials_for(Some(dir.path()), "r.io")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("not base64"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_helper_is_reported_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_config(dir.path(), r#"{"credHelpers": {"r.io": "nonexistent-rc"}}"#);
        let err = credentials_for(Some(dir.path()), "r.io")
            .unwrap_err()
            .to_string();
        assert!(err.contains("docker-credential-nonexistent-rc"), "{err}");
        assert!(err.contains("r.io"), "{err}");
    }

    #[test]
    fn challenges_are_parsed() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn quoted_parameters_keep_their_commas() {
        let params = parse_params(r#"realm="a,b", scope="repository:x:pull,push""#);
        assert_eq!(params["realm"], "a,b");
        assert_eq!(params["scope"], "repository:x:pull,push");
    }

    #[test]
    fn credentials_never_print_the_password() {
        let credentials = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
