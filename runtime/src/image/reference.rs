//! Image references, parsed and normalized the way the Docker CLI does it.
//!
//! `ubuntu` becomes `docker.io/library/ubuntu:latest`, `user/app` becomes
//! `docker.io/user/app:latest`, and a first path component that looks like a host
//! (it contains `.` or `:`, or is `localhost`) is kept as the registry domain.
//! A reference may carry a tag, a digest, or both; only a bare name gets `:latest`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// Registry domain of Docker Hub, as references spell it once normalized.
const DOCKER_HUB: &str = "docker.io";
/// The historical Docker Hub domain, rewritten to [`DOCKER_HUB`].
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
/// Namespace of Docker Hub's official images (`ubuntu` is `library/ubuntu`).
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// Longest repository path (without the domain) a registry accepts.
const MAX_PATH_LEN: usize = 255;
/// Longest tag: one leading word character plus up to 127 more.
const MAX_TAG_LEN: usize = 128;
/// Shortest hex part the reference grammar accepts in a digest (128 bits).
const MIN_DIGEST_HEX_IN_REFERENCE: usize = 32;

/// Why a string is not a usable image reference (worded as Docker words it).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    UppercaseName(String),
    #[error("invalid reference format: repository name must be lowercase")]
    Uppercase,
    #[error("repository name must not be more than {MAX_PATH_LEN} characters")]
    NameTooLong,
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexIdentifier(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// Why a string is not a valid content digest (worded as Docker words it).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DigestError {
    #[error("invalid checksum digest format")]
    InvalidFormat,
    #[error("invalid checksum digest length")]
    InvalidLength,
    #[error("unsupported digest algorithm")]
    Unsupported,
}

/// Hash algorithms a digest may name (the ones Docker registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Number of lowercase hex characters in a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha384 => 96,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha384" => Some(Algorithm::Sha384),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated content digest such as `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        let hash = Sha256::digest(data);
        let hex = hash.iter().map(|byte| format!("{byte:02x}")).collect();
        Digest {
            algorithm: Algorithm::Sha256,
            hex,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded hash, lowercase hex.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let (name, hex) = s.split_once(':').ok_or(DigestError::InvalidFormat)?;
        if name.is_empty() || hex.is_empty() {
            return Err(DigestError::InvalidFormat);
        }
        let Some(algorithm) = Algorithm::from_name(name) else {
            // A well-formed digest of an algorithm we don't know is "unsupported";
            // anything else is simply malformed.
            return Err(if is_generic_digest(name, hex) {
                DigestError::Unsupported
            } else {
                DigestError::InvalidFormat
            });
        };
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::InvalidLength);
        }
        if !hex.bytes().all(is_lower_hex) {
            return Err(DigestError::InvalidFormat);
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A normalized image reference: registry domain, repository path, tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses `s` as `docker pull` would: fills in Docker Hub, `library/` and
    /// `:latest` where the user left them out.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if is_hex_identifier(s) {
            return Err(ReferenceError::HexIdentifier(s.to_owned()));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote = remainder.split(':').next().unwrap_or_default();
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::UppercaseName(remote.to_owned()));
        }
        let mut reference = parse_qualified(&domain, &remainder)?;
        if reference.tag.is_none() && reference.digest.is_none() {
            reference.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(reference)
    }

    /// Registry host (and port), e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path within the registry, e.g. `library/ubuntu`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Full repository name, e.g. `docker.io/library/ubuntu`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short form `docker images` shows, e.g. `ubuntu:latest` or `user/app:1`.
    pub fn familiar(&self) -> String {
        let name = if self.domain == DOCKER_HUB {
            familiar_hub_path(&self.path).to_owned()
        } else {
            self.repository()
        };
        format!("{name}{}", self.suffix())
    }

    /// `:tag`, `@digest` or both, as appended to a name.
    fn suffix(&self) -> String {
        let mut suffix = String::new();
        if let Some(tag) = &self.tag {
            suffix.push(':');
            suffix.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            suffix.push('@');
            suffix.push_str(&digest.to_string());
        }
        suffix
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.repository(), self.suffix())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

/// Docker Hub paths drop `library/` for official images (but not nested ones).
fn familiar_hub_path(path: &str) -> &str {
    match path.strip_prefix(OFFICIAL_PREFIX) {
        Some(rest) if !rest.contains('/') => rest,
        _ => path,
    }
}

/// Splits off the registry domain when the first component looks like a host;
/// otherwise the reference lives on Docker Hub.
fn split_docker_domain(s: &str) -> (String, String) {
    let Some((first, rest)) = s.split_once('/') else {
        // A single component ("ubuntu", "ubuntu:22.04") is always an official image.
        return (DOCKER_HUB.to_owned(), format!("{OFFICIAL_PREFIX}{s}"));
    };
    let (domain, remainder) = if first == LEGACY_DOCKER_HUB {
        (DOCKER_HUB, rest)
    } else if first == "localhost"
        || first.contains(['.', ':'])
        // Namespaces are lowercase, so an uppercase first component must be a host.
        || first.to_lowercase() != first
    {
        (first, rest)
    } else {
        (DOCKER_HUB, s)
    };
    let remainder = if domain == DOCKER_HUB && !remainder.contains('/') {
        format!("{OFFICIAL_PREFIX}{remainder}")
    } else {
        remainder.to_owned()
    };
    (domain.to_owned(), remainder)
}

/// Parses `remainder` (`path[:tag][@digest]`) under an already split `domain`.
fn parse_qualified(domain: &str, remainder: &str) -> Result<Reference, ReferenceError> {
    let Some(parts) = match_grammar(domain, remainder) else {
        let lower_domain = domain.to_lowercase();
        let lower_remainder = remainder.to_lowercase();
        let only_case_is_wrong = (lower_domain != domain || lower_remainder != remainder)
            && match_grammar(&lower_domain, &lower_remainder).is_some();
        return Err(if only_case_is_wrong {
            ReferenceError::Uppercase
        } else {
            ReferenceError::InvalidFormat
        });
    };
    if parts.path.len() > MAX_PATH_LEN {
        return Err(ReferenceError::NameTooLong);
    }
    let digest = parts.digest.map(str::parse).transpose()?;
    Ok(Reference {
        domain: domain.to_owned(),
        path: parts.path.to_owned(),
        tag: parts.tag.map(str::to_owned),
        digest,
    })
}

/// The pieces of a reference that matched the grammar, digest not yet validated.
struct GrammarParts<'a> {
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// Checks the reference grammar: `domain/path-component(/path-component)*[:tag][@digest]`.
fn match_grammar<'a>(domain: &str, remainder: &'a str) -> Option<GrammarParts<'a>> {
    if !is_domain_and_port(domain) {
        return None;
    }
    // Neither the path nor the tag may contain '@', and the path has no ':'.
    let (named, digest) = match remainder.split_once('@') {
        Some((named, digest)) => (named, Some(digest)),
        None => (remainder, None),
    };
    let (path, tag) = match named.split_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (named, None),
    };
    let path_ok = path.split('/').all(is_path_component);
    let tag_ok = tag.is_none_or(is_tag);
    let digest_ok = digest.is_none_or(is_reference_digest);
    (path_ok && tag_ok && digest_ok).then_some(GrammarParts { path, tag, digest })
}

/// `alnum+ (separator alnum+)*` where a separator is `.`, `_`, `__` or a run of `-`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let mut pos = skip_while(bytes, 0, is_lower_alnum);
    if pos == 0 {
        return false;
    }
    while pos < bytes.len() {
        let separator_end = match bytes.get(pos) {
            Some(b'.') => pos + 1,
            Some(b'_') if bytes.get(pos + 1) == Some(&b'_') => pos + 2,
            Some(b'_') => pos + 1,
            Some(b'-') => skip_while(bytes, pos, |b| b == b'-'),
            _ => return false,
        };
        let alnum_end = skip_while(bytes, separator_end, is_lower_alnum);
        if alnum_end == separator_end {
            return false;
        }
        pos = alnum_end;
    }
    true
}

/// A host name, IPv4 address or bracketed IPv6 address, with an optional numeric port.
fn is_domain_and_port(domain: &str) -> bool {
    let (host, port) = split_host_port(domain);
    let port_ok =
        port.is_none_or(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    port_ok && (is_ipv6_host(host) || host.split('.').all(is_domain_component))
}

/// `[v6]:port` or `host:port`; the port is `None` when there is no colon after the host.
fn split_host_port(domain: &str) -> (&str, Option<&str>) {
    if domain.starts_with('[') {
        let host_end = domain.find(']').map_or(domain.len(), |end| end + 1);
        let (host, rest) = domain.split_at_checked(host_end).unwrap_or((domain, ""));
        return match rest.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            // Anything else after the bracket (or a missing bracket) fails as an empty port.
            None if rest.is_empty() => (host, None),
            None => (host, Some("")),
        };
    }
    match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    }
}

fn is_ipv6_host(host: &str) -> bool {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|inner| {
            !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
        })
}

/// A DNS-like label: letters, digits and inner dashes.
fn is_domain_component(label: &str) -> bool {
    !label.is_empty()
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `[\w][\w.-]{0,127}`
fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    bytes.first().is_some_and(|&b| is_word(b))
        && bytes.len() <= MAX_TAG_LEN
        && bytes.iter().all(|&b| is_word(b) || b == b'.' || b == b'-')
}

/// The digest shape the reference grammar accepts; the digest itself is validated after.
fn is_reference_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|component| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok
        && hex.len() >= MIN_DIGEST_HEX_IN_REFERENCE
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Digest syntax for algorithms we don't know: `alg(sep alg)*:encoded`.
fn is_generic_digest(algorithm: &str, encoded: &str) -> bool {
    let algorithm_ok = algorithm
        .split(['.', '+', '_', '-'])
        .all(|component| !component.is_empty() && component.bytes().all(is_lower_alnum));
    let encoded_ok = encoded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-');
    algorithm_ok && encoded_ok
}

/// 64 lowercase hex characters: an image ID, which is not a repository name.
fn is_hex_identifier(s: &str) -> bool {
    s.len() == Algorithm::Sha256.hex_len() && s.bytes().all(is_lower_hex)
}

fn skip_while(bytes: &[u8], from: usize, keep: impl Fn(u8) -> bool) -> usize {
    let run = bytes
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|&&b| keep(b))
        .count();
    from + run
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn sha256(hex: &str) -> String {
        format!("sha256:{hex}")
    }

    #[test]
    fn normalizes_like_docker() {
        let digest = sha256(HEX64);
        let cases: Vec<(String, String)> = vec![
            ("ubuntu".into(), "docker.io/library/ubuntu:latest".into()),
            (
                "ubuntu:22.04".into(),
                "docker.io/library/ubuntu:22.04".into(),
            ),
            ("user/app".into(), "docker.io/user/app:latest".into()),
            (
                "docker.io/ubuntu".into(),
                "docker.io/library/ubuntu:latest".into(),
            ),
            (
                "index.docker.io/user/app:1".into(),
                "docker.io/user/app:1".into(),
            ),
            (
                "index.docker.io/redis".into(),
                "docker.io/library/redis:latest".into(),
            ),
            ("localhost/app".into(), "localhost/app:latest".into()),
            (
                "localhost:5000/hello:0.1".into(),
                "localhost:5000/hello:0.1".into(),
            ),
            ("foo:5000".into(), "docker.io/library/foo:5000".into()),
            (
                "example.com/a/b/c".into(),
                "example.com/a/b/c:latest".into(),
            ),
            ("[::1]:5000/app".into(), "[::1]:5000/app:latest".into()),
            (
                "127.0.0.1:5000/app".into(),
                "127.0.0.1:5000/app:latest".into(),
            ),
            ("Example.COM/app".into(), "Example.COM/app:latest".into()),
            (
                "a__b/c--d/e.f_g:T_a.g-1".into(),
                "docker.io/a__b/c--d/e.f_g:T_a.g-1".into(),
            ),
            (
                format!("registry.example.com/a/b@{digest}"),
                format!("registry.example.com/a/b@{digest}"),
            ),
            (
                format!("redis:7@{digest}"),
                format!("docker.io/library/redis:7@{digest}"),
            ),
        ];
        for (input, expected) in cases {
            let parsed = Reference::parse(&input)
                .unwrap_or_else(|e| panic!("{input} should parse, got {e}"));
            assert_eq!(parsed.to_string(), expected, "input {input}");
        }
    }

    #[test]
    fn exposes_parts() {
        let reference = Reference::parse(&format!("localhost:5000/team/app:v1@{}", sha256(HEX64)))
            .expect("valid reference");
        assert_eq!(reference.domain(), "localhost:5000");
        assert_eq!(reference.path(), "team/app");
        assert_eq!(reference.tag(), Some("v1"));
        assert_eq!(
            reference.digest().map(Digest::hex),
            Some(HEX64),
            "digest kept next to the tag"
        );
        assert_eq!(reference.repository(), "localhost:5000/team/app");

        let digest_only =
            Reference::parse(&format!("app@{}", sha256(HEX64))).expect("valid reference");
        assert_eq!(
            digest_only.tag(),
            None,
            "a digest suppresses the default tag"
        );
    }

    #[test]
    fn familiar_form_matches_docker_images() {
        let cases = [
            ("ubuntu", "ubuntu:latest"),
            ("docker.io/library/ubuntu:22.04", "ubuntu:22.04"),
            ("user/app", "user/app:latest"),
            ("docker.io/library/nested/app", "library/nested/app:latest"),
            ("localhost:5000/hello:0.1", "localhost:5000/hello:0.1"),
            ("quay.io/org/app:1", "quay.io/org/app:1"),
        ];
        for (input, expected) in cases {
            let parsed = Reference::parse(input).expect("valid reference");
            assert_eq!(parsed.familiar(), expected, "input {input}");
        }
    }

    #[test]
    fn rejects_bad_references_with_docker_wording() {
        let too_long_path = format!("docker.io/{}", "a".repeat(256));
        let too_long_tag = format!("app:{}", "t".repeat(129));
        let cases: Vec<(String, ReferenceError)> = vec![
            ("".into(), ReferenceError::InvalidFormat),
            (
                "Ubuntu".into(),
                ReferenceError::UppercaseName("library/Ubuntu".into()),
            ),
            (
                "user/App:1".into(),
                ReferenceError::UppercaseName("user/App".into()),
            ),
            (
                "example.com/App".into(),
                ReferenceError::UppercaseName("App".into()),
            ),
            ("app:".into(), ReferenceError::InvalidFormat),
            ("app:-tag".into(), ReferenceError::InvalidFormat),
            (too_long_tag, ReferenceError::InvalidFormat),
            (too_long_path, ReferenceError::NameTooLong),
            ("a..b".into(), ReferenceError::InvalidFormat),
            ("a___b".into(), ReferenceError::InvalidFormat),
            ("-app".into(), ReferenceError::InvalidFormat),
            ("app-".into(), ReferenceError::InvalidFormat),
            ("user//app".into(), ReferenceError::InvalidFormat),
            ("app/".into(), ReferenceError::InvalidFormat),
            ("host:port/app".into(), ReferenceError::InvalidFormat),
            ("-host.com/app".into(), ReferenceError::InvalidFormat),
            ("[::1/app".into(), ReferenceError::InvalidFormat),
            ("[::1]x/app".into(), ReferenceError::InvalidFormat),
            ("[]:5000/app".into(), ReferenceError::InvalidFormat),
            ("host:/app".into(), ReferenceError::InvalidFormat),
            ("with space".into(), ReferenceError::InvalidFormat),
            ("app@sha256:abc".into(), ReferenceError::InvalidFormat),
            (HEX64.into(), ReferenceError::HexIdentifier(HEX64.into())),
            (
                format!("app@sha256:{}", &HEX64[..40]),
                ReferenceError::Digest(DigestError::InvalidLength),
            ),
            (
                format!("app@sha256:{}", HEX64.to_uppercase()),
                ReferenceError::Digest(DigestError::InvalidFormat),
            ),
            (
                format!("app@md5:{}", &HEX64[..32]),
                ReferenceError::Digest(DigestError::Unsupported),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Reference::parse(&input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn odd_input_is_an_error_never_a_panic() {
        let long_digest = format!("app@sha256:{}", "é".repeat(32));
        let inputs = [
            "ünïcode",
            "app:täg",
            "日本/app",
            "host.com/日本",
            "a@",
            "@",
            ":",
            "/",
            ":tag",
            "@sha256:",
            "app@",
            "app:tag@",
            "[",
            "]",
            "[::1]",
            "[::1]:",
            "a:b:c",
            "\0",
            "\n",
            long_digest.as_str(),
        ];
        for input in inputs {
            let err = Reference::parse(input).expect_err(input);
            assert!(
                err.to_string().contains("invalid") || err.to_string().contains("digest"),
                "{input:?}: {err}"
            );
        }
    }

    #[test]
    fn error_messages_read_like_docker() {
        let uppercase = Reference::parse("Ubuntu").expect_err("uppercase rejected");
        assert_eq!(
            uppercase.to_string(),
            "invalid reference format: repository name (library/Ubuntu) must be lowercase"
        );
        assert_eq!(
            ReferenceError::Uppercase.to_string(),
            "invalid reference format: repository name must be lowercase"
        );
        let bad = Reference::parse("a b").expect_err("space rejected");
        assert_eq!(bad.to_string(), "invalid reference format");
    }

    #[test]
    fn tag_of_exactly_128_chars_is_accepted() {
        let tag = "t".repeat(128);
        let parsed = Reference::parse(&format!("app:{tag}")).expect("128-char tag is valid");
        assert_eq!(parsed.tag(), Some(tag.as_str()));
    }

    #[test]
    fn digests_parse_and_validate() {
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let ok = [sha256(HEX64), sha512, format!("sha384:{}", "c".repeat(96))];
        for text in ok {
            let digest: Digest = text.parse().expect("valid digest");
            assert_eq!(digest.to_string(), text);
        }
        let bad = [
            ("sha256", DigestError::InvalidFormat),
            ("sha256:", DigestError::InvalidFormat),
            (":abc", DigestError::InvalidFormat),
            ("sha256:abc", DigestError::InvalidLength),
            ("sha512:abcd", DigestError::InvalidLength),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                DigestError::Unsupported,
            ),
            ("SHA256:abc", DigestError::InvalidFormat),
        ];
        for (text, expected) in bad {
            assert_eq!(text.parse::<Digest>(), Err(expected), "input {text}");
        }
        let upper = format!("sha256:{}", HEX64.to_uppercase());
        assert_eq!(upper.parse::<Digest>(), Err(DigestError::InvalidFormat));
    }

    #[test]
    fn sha256_of_known_input() {
        let digest = Digest::sha256_of(b"");
        assert_eq!(
            digest.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let json = serde_json::to_string(&digest).expect("serializes");
        let back: Digest = serde_json::from_str(&json).expect("round-trips");
        assert_eq!(back, digest);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
