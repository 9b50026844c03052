//! HTTP(S) access to one repository of a registry: the `/v2/` ping that tells the
//! scheme and the authentication challenge, tokens, and error mapping.

use std::collections::HashMap;
use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};

use super::auth::{self, Challenge, Credentials, TokenAnswer};
use super::config::{Endpoint, RegistryConfig};
use super::error::{registry_detail, RegistryError};
use crate::image::reference::Reference;

const USER_AGENT: &str = concat!("rcompose/", env!("CARGO_PKG_VERSION"));
/// Connecting is quick or broken; bodies may legitimately take long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Most bytes of an error body read for its message.
const MAX_ERROR_BODY: usize = 8 << 10;

/// Reaches registries: mirrors, plain HTTP where allowed, credentials from Docker's
/// config. Cheap to clone; share one for a whole `pull` of many images.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: RegistryConfig,
    docker_config_dir: Option<PathBuf>,
    /// Endpoint base → what its `/v2/` answered.
    pings: tokio::sync::Mutex<HashMap<String, Ping>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Ping {
    /// The base URL that answered, scheme included.
    base: String,
    challenge: Option<Challenge>,
}

/// What a repository session may do; decides the token's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Pull,
    Push,
}

impl Access {
    fn scope_actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "push",
        }
    }
}

impl RegistryClient {
    /// A client with these mirrors and insecure registries, reading credentials from
    /// Docker's client config in `docker_config_dir` (none: anonymous only).
    pub fn new(
        config: RegistryConfig,
        docker_config_dir: Option<PathBuf>,
    ) -> Result<RegistryClient, RegistryError> {
        // reqwest follows redirects and drops Authorization when one leaves the
        // registry's host, as blob redirects to storage servers require.
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|err| RegistryError::Config {
                path: PathBuf::from("<tls setup>"),
                reason: err.to_string(),
            })?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                config,
                docker_config_dir,
                pings: tokio::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The client the CLI uses: `<state root>/registries.json`, the environment and
    /// `$DOCKER_CONFIG` (or `~/.docker`).
    pub fn from_state_root(state_root: &Path) -> Result<RegistryClient, RegistryError> {
        RegistryClient::new(RegistryConfig::load(state_root)?, auth::docker_config_dir())
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// Opens `reference`'s repository at `endpoint`: pings it and prepares the
    /// credentials or token its challenge asks for.
    pub(crate) async fn repository(
        &self,
        reference: &Reference,
        endpoint: &Endpoint,
        access: Access,
    ) -> Result<Repository, RegistryError> {
        let registry = if endpoint.is_mirror {
            endpoint.base.clone()
        } else {
            reference.domain().to_owned()
        };
        let names = Names {
            reference: reference.to_string(),
            registry: registry.clone(),
        };
        let ping = self.ping(endpoint, &names).await?;
        let credentials_key = if endpoint.is_mirror {
            host_of(&endpoint.base).to_owned()
        } else {
            reference.domain().to_owned()
        };
        let credentials = match ping.challenge {
            None => None,
            Some(_) => {
                let dir = self.inner.docker_config_dir.clone();
                tokio::task::spawn_blocking(move || {
                    auth::credentials_for(dir.as_deref(), &credentials_key)
                })
                .await
                .map_err(|err| RegistryError::Local {
                    reference: names.reference.clone(),
                    action: "look up credentials",
                    detail: err.to_string(),
                })??
            }
        };
        Ok(Repository {
            client: self.clone(),
            base: ping.base,
            path: reference.path().to_owned(),
            names,
            access,
            challenge: ping.challenge,
            credentials,
            token: Arc::new(Mutex::new(None)),
        })
    }

    /// `GET /v2/`, once per endpoint: HTTPS first, plain HTTP when allowed and HTTPS
    /// could not connect.
    async fn ping(&self, endpoint: &Endpoint, names: &Names) -> Result<Ping, RegistryError> {
        let mut pings = self.inner.pings.lock().await;
        if let Some(ping) = pings.get(&endpoint.base) {
            return Ok(ping.clone());
        }
        let ping = match self.ping_base(&endpoint.base, names).await {
            Err(
                RegistryError::Tls { .. }
                | RegistryError::ConnectionRefused { .. }
                | RegistryError::Network { .. },
            ) if endpoint.http_fallback => {
                let plain = endpoint.base.replacen("https://", "http://", 1);
                self.ping_base(&plain, names).await?
            }
            other => other?,
        };
        pings.insert(endpoint.base.clone(), ping.clone());
        Ok(ping)
    }

    async fn ping_base(&self, base: &str, names: &Names) -> Result<Ping, RegistryError> {
        let url = format!("{base}/v2/");
        let response = self
            .inner
            .http
            .get(&url)
            .send()
            .await
            .map_err(|err| names.network_error(&err, &url))?;
        match response.status() {
            status if status.is_success() => Ok(Ping {
                base: base.to_owned(),
                challenge: None,
            }),
            StatusCode::UNAUTHORIZED => {
                let challenge = response
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|value| value.to_str().ok())
                    .and_then(auth::parse_challenge)
                    // A 401 without a usable challenge: credentials are the only hope.
                    .unwrap_or(Challenge::Basic);
                Ok(Ping {
                    base: base.to_owned(),
                    challenge: Some(challenge),
                })
            }
            _ => Err(names
                .status_error(response, "the API version check", "pull", false)
                .await),
        }
    }
}

/// Host part of a URL, for credential lookup.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}

/// The names errors carry.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub reference: String,
    pub registry: String,
}

impl Names {
    /// Explains a request that got no HTTP answer.
    pub(crate) fn network_error(&self, err: &reqwest::Error, url: &str) -> RegistryError {
        let chain = error_chain(err);
        let refused = is_connection_refused(err) || chain.contains("Connection refused");
        let lowered = chain.to_ascii_lowercase();
        if refused {
            RegistryError::ConnectionRefused {
                reference: self.reference.clone(),
                registry: self.registry.clone(),
                url: url.to_owned(),
            }
        } else if ["certificate", "tls", "handshake", "invalidcontenttype"]
            .iter()
            .any(|word| lowered.contains(word))
        {
            RegistryError::Tls {
                reference: self.reference.clone(),
                registry: self.registry.clone(),
                detail: chain,
            }
        } else {
            RegistryError::Network {
                reference: self.reference.clone(),
                registry: self.registry.clone(),
                url: url.to_owned(),
                detail: chain,
            }
        }
    }

    /// Explains an HTTP error status for `what`.
    pub(crate) async fn status_error(
        &self,
        response: Response,
        what: &str,
        action: &'static str,
        had_credentials: bool,
    ) -> RegistryError {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(retry_after_text);
        let body = read_error_body(response).await;
        let detail = registry_detail(&body);
        let reference = self.reference.clone();
        let registry = self.registry.clone();
        match status {
            StatusCode::UNAUTHORIZED => RegistryError::Unauthorized {
                action,
                reference,
                registry,
                detail: if had_credentials {
                    format!("rejected the credentials given{detail}")
                } else {
                    "no credentials were found for it".to_owned()
                },
            },
            StatusCode::FORBIDDEN => RegistryError::Denied {
                action,
                reference,
                registry,
                detail,
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                what: what.to_owned(),
                reference,
                registry,
                detail,
            },
            StatusCode::TOO_MANY_REQUESTS => RegistryError::RateLimited {
                reference,
                registry,
                retry_after,
            },
            _ => RegistryError::Status {
                what: what.to_owned(),
                reference,
                registry,
                status: status.as_u16(),
                detail,
            },
        }
    }
}

fn is_connection_refused(err: &reqwest::Error) -> bool {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// `Retry-After` is seconds or an HTTP date.
fn retry_after_text(value: &str) -> String {
    match value.trim().parse::<u64>() {
        Ok(seconds) => format!("{seconds} seconds"),
        Err(_) => value.trim().to_owned(),
    }
}

async fn read_error_body(mut response: Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// An error with its causes, `a: b: c`, as the user needs them for network trouble.
fn error_chain(err: &reqwest::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// One repository at one endpoint, authenticated for one [`Access`].
#[derive(Clone)]
pub(crate) struct Repository {
    client: RegistryClient,
    base: String,
    path: String,
    pub(crate) names: Names,
    access: Access,
    challenge: Option<Challenge>,
    credentials: Option<Credentials>,
    /// Bearer token for this repository's scope, fetched on first use.
    token: Arc<Mutex<Option<String>>>,
}

impl Repository {
    /// `<base>/v2/<repository>/<suffix>`.
    pub(crate) fn url(&self, suffix: &str) -> String {
        format!("{}/v2/{}/{suffix}", self.base, self.path)
    }

    /// Resolves an upload `Location`, which may be relative to the registry.
    pub(crate) fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}/{}", self.base, location.trim_start_matches('/'))
        }
    }

    /// Sends the request `build` makes, authenticated. An expired token (401) is
    /// renewed once and the request rebuilt and sent again.
    pub(crate) async fn send(
        &self,
        url: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let http = &self.client.inner.http;
        let response = self.authorize(build(http), false).await?;
        let response = response
            .send()
            .await
            .map_err(|err| self.names.network_error(&err, url))?;
        if response.status() != StatusCode::UNAUTHORIZED
            || !matches!(self.challenge, Some(Challenge::Bearer { .. }))
        {
            return Ok(response);
        }
        let retry = self.authorize(build(http), true).await?;
        retry
            .send()
            .await
            .map_err(|err| self.names.network_error(&err, url))
    }

    /// Maps an unsuccessful response to an error about `what`.
    pub(crate) async fn check(
        &self,
        response: Response,
        what: &str,
    ) -> Result<Response, RegistryError> {
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self
            .names
            .status_error(
                response,
                what,
                self.access.verb(),
                self.credentials.is_some(),
            )
            .await)
    }

    async fn authorize(
        &self,
        request: RequestBuilder,
        renew: bool,
    ) -> Result<RequestBuilder, RegistryError> {
        match &self.challenge {
            None => Ok(request),
            Some(Challenge::Basic) => Ok(match &self.credentials {
                Some(credentials) => {
                    request.basic_auth(&credentials.username, Some(&credentials.password))
                }
                None => request,
            }),
            Some(Challenge::Bearer { realm, service }) => {
                let cached = self.token.lock().ok().and_then(|token| token.clone());
                let token = match cached {
                    Some(token) if !renew => token,
                    _ => {
                        let token = self.fetch_token(realm, service.as_deref()).await?;
                        if let Ok(mut slot) = self.token.lock() {
                            *slot = Some(token.clone());
                        }
                        token
                    }
                };
                Ok(request.bearer_auth(token))
            }
        }
    }

    /// Asks the challenge's realm for a token for this repository's scope.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
    ) -> Result<String, RegistryError> {
        let scope = format!("repository:{}:{}", self.path, self.access.scope_actions());
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.client.inner.http.get(realm).query(&query);
        if let Some(credentials) = &self.credentials {
            request = request.basic_auth(&credentials.username, Some(&credentials.password));
        }
        let response = request
            .send()
            .await
            .map_err(|err| self.names.network_error(&err, realm))?;
        let response = self.check(response, "the authentication token").await?;
        let body = response
            .bytes()
            .await
            .map_err(|err| self.names.network_error(&err, realm))?;
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|err| RegistryError::Status {
                what: "the authentication token".to_owned(),
                reference: self.names.reference.clone(),
                registry: self.names.registry.clone(),
                status: 200,
                detail: format!(": unreadable answer: {err}"),
            })?;
        answer.into_token().ok_or_else(|| RegistryError::Status {
            what: "the authentication token".to_owned(),
            reference: self.names.reference.clone(),
            registry: self.names.registry.clone(),
            status: 200,
            detail: ": the answer holds no token".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_taken_from_urls() {
        assert_eq!(host_of("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(host_of("https://mirror.lan/path"), "mirror.lan");
    }

    #[test]
    fn retry_after_reads_seconds_or_dates() {
        assert_eq!(retry_after_text("30"), "30 seconds");
        assert_eq!(
            retry_after_text("Wed, 21 Oct 2015 07:28:00 GMT"),
            "Wed, 21 Oct 2015 07:28:00 GMT"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_as_connection_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let client = RegistryClient::new(RegistryConfig::default(), None).expect("client");
        let reference = Reference::parse(&format!("127.0.0.1:{port}/app:1")).expect("ref");
        let endpoint = &client.config().endpoints(reference.domain())[0];
        let err = client
            .repository(&reference, endpoint, Access::Pull)
            .await
            .err()
            .expect("nothing listens");
        let text = err.to_string();
        assert!(
            matches!(err, RegistryError::ConnectionRefused { .. }),
            "{text}"
        );
        assert!(text.contains(&format!("127.0.0.1:{port}/app:1")), "{text}");
    }
}
