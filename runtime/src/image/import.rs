//! `docker import`: a root filesystem tarball (plain, gzip or zstd) becomes a
//! one-layer image, its config shaped by Dockerfile-style `--change` instructions.

use std::io::Read;
use std::time::SystemTime;

use serde_json::{json, Map, Value};
use thiserror::Error;

use super::reference::Reference;
use super::store::{decompress, ImageId, Store, StoreError};

/// The only OS images are imported for.
pub const HOST_OS: &str = "linux";
/// Instructions `--change` accepts.
const ALLOWED: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL";
/// Dockerfile instructions that exist but make no sense as a config change.
const BUILD_ONLY: &[&str] = &[
    "ADD",
    "ARG",
    "COPY",
    "FROM",
    "HEALTHCHECK",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
];

/// Why an import failed.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid --change {change:?}: {reason}")]
    Change { change: String, reason: String },
    #[error("cannot read the rootfs tarball: {0}")]
    Read(String),
}

/// The architecture name images use for this machine (Go's GOARCH spelling).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Imports `reader` as a one-layer image, applies `changes` to its config and tags it
/// with `reference` when given.
pub fn import(
    store: &Store,
    reader: impl Read,
    reference: Option<&Reference>,
    changes: &[String],
) -> Result<ImageId, ImportError> {
    // Checked before anything is stored, so a typo costs nothing.
    let changes = changes
        .iter()
        .map(|text| Change::parse(text))
        .collect::<Result<Vec<_>, _>>()?;
    let _session = store.write_session()?;
    let plain = decompress(reader).map_err(|err| ImportError::Read(err.to_string()))?;
    let diff_id = store.put_blob(plain, None)?;
    let chain = store.ensure_layer(&diff_id, &diff_id, None)?;
    let created = rfc3339_now();
    let mut container_config = Map::new();
    for change in &changes {
        change.apply(&mut container_config);
    }
    let config = json!({
        "architecture": host_architecture(),
        "os": HOST_OS,
        "created": created,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": created, "created_by": "", "comment": "Imported from -"}],
    });
    let bytes = serde_json::to_vec(&config).map_err(|err| ImportError::Read(err.to_string()))?;
    let config_digest = store.put_blob_bytes(&bytes)?;
    let id = store.add_image(&config_digest, None, &[chain])?;
    if let Some(reference) = reference {
        store.tag(reference, &id)?;
    }
    Ok(id)
}

/// One parsed `--change` instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    Env(Vec<(String, String)>),
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    User(String),
    Workdir(String),
    Volume(Vec<String>),
    StopSignal(String),
}

impl Change {
    fn parse(text: &str) -> Result<Change, ImportError> {
        let fail = |reason: String| ImportError::Change {
            change: text.to_owned(),
            reason,
        };
        let trimmed = text.trim();
        let (keyword, rest) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        let instruction = keyword.to_ascii_uppercase();
        let rest = rest.trim();
        if instruction.is_empty() {
            return Err(fail(format!("empty instruction (allowed: {ALLOWED})")));
        }
        if rest.is_empty() && ALLOWED.split(", ").any(|known| known == instruction) {
            return Err(fail(format!("{instruction} needs an argument")));
        }
        match instruction.as_str() {
            "CMD" => Ok(Change::Cmd(command_form(rest))),
            "ENTRYPOINT" => Ok(Change::Entrypoint(command_form(rest))),
            "ENV" => key_values(rest).map(Change::Env).map_err(fail),
            "LABEL" => key_values(rest).map(Change::Label).map_err(fail),
            "EXPOSE" => exposed_ports(rest).map(Change::Expose).map_err(fail),
            "USER" => single_word(rest, "USER").map(Change::User).map_err(fail),
            "WORKDIR" => Ok(Change::Workdir(rest.to_owned())),
            "VOLUME" => volumes(rest).map(Change::Volume).map_err(fail),
            "STOPSIGNAL" => stop_signal(rest).map(Change::StopSignal).map_err(fail),
            known if BUILD_ONLY.contains(&known) => Err(fail(format!(
                "{known} is not a valid change command (allowed: {ALLOWED})"
            ))),
            other => Err(fail(format!(
                "unknown instruction {other} (allowed: {ALLOWED})"
            ))),
        }
    }

    /// Applies the change to a Docker-style container config object.
    fn apply(&self, config: &mut Map<String, Value>) {
        match self {
            Change::Cmd(args) => {
                config.insert("Cmd".into(), json!(args));
            }
            Change::Entrypoint(args) => {
                config.insert("Entrypoint".into(), json!(args));
            }
            Change::Env(pairs) => set_env(config, pairs),
            Change::Label(pairs) => extend_object(
                config,
                "Labels",
                pairs.iter().map(|(key, value)| (key.clone(), json!(value))),
            ),
            Change::Expose(ports) => extend_object(
                config,
                "ExposedPorts",
                ports.iter().map(|port| (port.clone(), json!({}))),
            ),
            Change::User(user) => {
                config.insert("User".into(), json!(user));
            }
            Change::Workdir(dir) => {
                let current = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/");
                let joined = join_workdir(current, dir);
                config.insert("WorkingDir".into(), json!(joined));
            }
            Change::Volume(paths) => extend_object(
                config,
                "Volumes",
                paths.iter().map(|path| (path.clone(), json!({}))),
            ),
            Change::StopSignal(signal) => {
                config.insert("StopSignal".into(), json!(signal));
            }
        }
    }
}

/// `["a", "b"]` (exec form) as given; anything else runs through `/bin/sh -c`.
fn command_form(rest: &str) -> Vec<String> {
    match json_string_array(rest) {
        Some(args) => args,
        None => vec!["/bin/sh".into(), "-c".into(), rest.to_owned()],
    }
}

fn json_string_array(text: &str) -> Option<Vec<String>> {
    if !text.starts_with('[') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// `k=v k2="v 2"`, or the legacy single pair `k value with spaces`.
fn key_values(rest: &str) -> Result<Vec<(String, String)>, String> {
    let words = split_words(rest)?;
    let is_pairs = words.first().is_some_and(|word| word.contains('='));
    if !is_pairs {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{rest:?} needs a value: use KEY=VALUE or KEY VALUE"))?;
        let value = split_words(value.trim())?.join(" ");
        return Ok(vec![(key.to_owned(), value)]);
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(format!("{word:?} has an empty name")),
            Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
            None => Err(format!("{word:?} is not of the form KEY=VALUE")),
        })
        .collect()
}

/// Ports such as `80`, `53/udp` or `8000-8002/tcp`, expanded to one key per port.
fn exposed_ports(rest: &str) -> Result<Vec<String>, String> {
    let mut ports = Vec::new();
    for word in split_words(rest)? {
        let (range, protocol) = word.split_once('/').unwrap_or((&word, "tcp"));
        let protocol = protocol.to_ascii_lowercase();
        if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!(
                "invalid protocol {protocol:?} in port {word:?} (use tcp, udp or sctp)"
            ));
        }
        let (low, high) = range.split_once('-').unwrap_or((range, range));
        let (low, high) = (port_number(low, &word)?, port_number(high, &word)?);
        if low > high {
            return Err(format!("invalid port range {word:?}: start is above end"));
        }
        ports.extend((low..=high).map(|port| format!("{port}/{protocol}")));
    }
    Ok(ports)
}

fn port_number(text: &str, word: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!(
            "invalid port {word:?}: ports are numbers from 1 to 65535"
        )),
    }
}

fn volumes(rest: &str) -> Result<Vec<String>, String> {
    let paths = match json_string_array(rest) {
        Some(paths) => paths,
        None => split_words(rest)?,
    };
    if paths.iter().any(|path| path.trim().is_empty()) {
        return Err("VOLUME paths cannot be empty".to_owned());
    }
    Ok(paths)
}

fn single_word(rest: &str, instruction: &str) -> Result<String, String> {
    let words = split_words(rest)?;
    match words.as_slice() {
        [word] => Ok(word.clone()),
        _ => Err(format!("{instruction} takes exactly one argument")),
    }
}

/// A signal name (`SIGTERM`, `TERM`, `SIGRTMIN+3`) or number.
fn stop_signal(rest: &str) -> Result<String, String> {
    let signal = single_word(rest, "STOPSIGNAL")?;
    let valid = signal.parse::<u8>().is_ok_and(|n| n > 0)
        || signal
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'+' || b == b'-');
    if valid {
        Ok(signal)
    } else {
        Err(format!("invalid signal {signal:?}"))
    }
}

/// Splits on unquoted whitespace; `"..."` (with `\` escapes) and `'...'` group.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(current.take()),
            '\\' => {
                let escaped = chars.next().unwrap_or('\\');
                current.get_or_insert_with(String::new).push(escaped);
            }
            '"' | '\'' => {
                let word = current.get_or_insert_with(String::new);
                read_quoted(&mut chars, c, word)
                    .ok_or_else(|| format!("unterminated {c} quote in {text:?}"))?;
            }
            c => current.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(current);
    Ok(words)
}

/// Appends a quoted section up to its closing `quote`; `None` if it never closes.
fn read_quoted(chars: &mut std::str::Chars<'_>, quote: char, word: &mut String) -> Option<()> {
    loop {
        match chars.next()? {
            c if c == quote => return Some(()),
            '\\' if quote == '"' => word.push(chars.next()?),
            c => word.push(c),
        }
    }
}

fn set_env(config: &mut Map<String, Value>, pairs: &[(String, String)]) {
    let mut list = match config.remove("Env") {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    for (key, value) in pairs {
        let entry = json!(format!("{key}={value}"));
        let prefix = format!("{key}=");
        match list
            .iter_mut()
            .find(|item| item.as_str().is_some_and(|text| text.starts_with(&prefix)))
        {
            Some(existing) => *existing = entry,
            None => list.push(entry),
        }
    }
    config.insert("Env".into(), Value::Array(list));
}

/// Adds entries to the Go-style map (`{"key": {}}` or `{"key": "value"}`) under `name`.
fn extend_object(
    config: &mut Map<String, Value>,
    name: &str,
    entries: impl IntoIterator<Item = (String, Value)>,
) {
    let mut object = match config.remove(name) {
        Some(Value::Object(object)) => object,
        _ => Map::new(),
    };
    object.extend(entries);
    config.insert(name.into(), Value::Object(object));
}

/// WORKDIR relative to the previous one, cleaned of `.` and `..`.
fn join_workdir(current: &str, dir: &str) -> String {
    let combined = if dir.starts_with('/') {
        dir.to_owned()
    } else {
        format!("{current}/{dir}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in combined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The current time as RFC 3339 in UTC with nanoseconds, as image configs record it.
fn rfc3339_now() -> String {
    format_rfc3339(SystemTime::now())
}

fn format_rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::reference::Digest;
    use crate::image::store::test_support::temp_store as store;
    use crate::image::store::test_support::{gzip, LayerBuilder};

    fn rootfs() -> Vec<u8> {
        LayerBuilder::new()
            .dir("bin")
            .file("bin/hello", b"#!/bin/sh\necho hello\n")
            .dir("etc")
            .file("etc/hostname", b"imported\n")
            .build()
    }

    fn changes(list: &[&str]) -> Vec<String> {
        list.iter().map(|change| (*change).to_owned()).collect()
    }

    fn container_config(store: &Store, id: &ImageId) -> Value {
        let bytes = store.read_small_blob(id.digest()).expect("config blob");
        let config: Value = serde_json::from_slice(&bytes).expect("json");
        config["config"].clone()
    }

    #[test]
    fn plain_gzip_and_zstd_tarballs_become_one_layer_images() {
        let (_dir, store) = store();
        let tar = rootfs();
        let zstd = zstd::encode_all(&tar[..], 3).expect("zstd");
        for (name, bytes) in [("plain", tar.clone()), ("gzip", gzip(&tar)), ("zstd", zstd)] {
            let reference = Reference::parse(&format!("imported:{name}")).expect("ref");
            let id = import(&store, &bytes[..], Some(&reference), &[]).expect("import");
            let image = store.resolve(&format!("imported:{name}")).expect("tagged");
            assert_eq!(image.id, id);
            assert_eq!(image.layers.len(), 1);
            let dirs = store.layer_dirs(&image).expect("dirs");
            assert!(dirs[0].join("bin/hello").is_file(), "{name}");
            let config = store.config(&image).expect("config");
            assert_eq!(config.os().to_string(), "linux");
            assert_eq!(config.architecture().to_string(), host_architecture());
            assert_eq!(
                config.rootfs().diff_ids(),
                &[Digest::sha256_of(&tar).to_string()]
            );
            assert!(config
                .created()
                .as_deref()
                .is_some_and(|t| t.ends_with('Z')));
        }
    }

    #[test]
    fn changes_shape_the_config_like_docker_import() {
        let (_dir, store) = store();
        let list = changes(&[
            r#"CMD ["/bin/hello", "--loud"]"#,
            "ENTRYPOINT /bin/sh -c 'exec \"$0\"'",
            "ENV PATH=/usr/bin:/bin GREETING=\"hello world\"",
            "env LEGACY some value",
            "ENV GREETING=hi",
            "EXPOSE 80 53/udp 8000-8002",
            r#"LABEL org.example.title="My app" version=1"#,
            "USER nobody",
            "WORKDIR /srv",
            "WORKDIR app/../data",
            r#"VOLUME ["/var/lib/data"]"#,
            "VOLUME /cache /logs",
            "STOPSIGNAL SIGINT",
        ]);
        let id = import(&store, &rootfs()[..], None, &list).expect("import");
        let config = container_config(&store, &id);
        assert_eq!(config["Cmd"], json!(["/bin/hello", "--loud"]));
        assert_eq!(
            config["Entrypoint"],
            json!(["/bin/sh", "-c", "/bin/sh -c 'exec \"$0\"'"])
        );
        assert_eq!(
            config["Env"],
            json!(["PATH=/usr/bin:/bin", "GREETING=hi", "LEGACY=some value"])
        );
        let ports: Vec<&String> = config["ExposedPorts"]
            .as_object()
            .expect("ports")
            .keys()
            .collect();
        for port in ["80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"] {
            assert!(ports.iter().any(|p| *p == port), "{port} in {ports:?}");
        }
        assert_eq!(config["Labels"]["org.example.title"], json!("My app"));
        assert_eq!(config["Labels"]["version"], json!("1"));
        assert_eq!(config["User"], json!("nobody"));
        assert_eq!(config["WorkingDir"], json!("/srv/data"));
        let volumes = config["Volumes"].as_object().expect("volumes");
        assert_eq!(volumes.len(), 3);
        assert_eq!(config["StopSignal"], json!("SIGINT"));
        // The typed view agrees.
        let image = store.image(&id).expect("image");
        let typed = store.config(&image).expect("config");
        let typed = typed.config().clone().expect("container config");
        assert_eq!(typed.user().as_deref(), Some("nobody"));
    }

    #[test]
    fn unknown_and_build_only_instructions_are_refused_before_storing() {
        let (_dir, store) = store();
        let err = import(&store, &rootfs()[..], None, &changes(&["FROB x"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid --change \"FROB x\": unknown instruction FROB (allowed: {ALLOWED})")
        );
        let err = import(&store, &rootfs()[..], None, &changes(&["RUN make"])).unwrap_err();
        assert!(
            err.to_string()
                .contains("RUN is not a valid change command"),
            "{err}"
        );
        assert!(store.list().expect("list").is_empty());
    }

    #[test]
    fn malformed_arguments_are_explained() {
        let cases = [
            ("CMD", "CMD needs an argument"),
            ("EXPOSE 70000", "ports are numbers from 1 to 65535"),
            ("EXPOSE 80/quic", "invalid protocol"),
            ("EXPOSE 90-80", "start is above end"),
            ("ENV A=1 B", "is not of the form KEY=VALUE"),
            ("ENV ONLYKEY", "needs a value"),
            ("LABEL a=\"open", "unterminated \" quote"),
            ("USER a b", "USER takes exactly one argument"),
            ("STOPSIGNAL sig%", "invalid signal"),
        ];
        for (change, expected) in cases {
            let err = Change::parse(change).unwrap_err();
            assert!(err.to_string().contains(expected), "{change}: {err}");
        }
    }

    #[test]
    fn a_tarball_that_is_not_a_tar_is_an_error_and_tags_nothing() {
        let (_dir, store) = store();
        let reference = Reference::parse("broken").expect("ref");
        let err = import(
            &store,
            &b"this is not a tarball at all"[..],
            Some(&reference),
            &[],
        );
        assert!(err.is_err());
        assert!(store.tags().expect("tags").is_empty());
    }

    #[test]
    fn words_split_with_quotes_and_escapes() {
        assert_eq!(
            split_words(r#"a "b c" 'd e' f\ g k="v w""#).expect("split"),
            ["a", "b c", "d e", "f g", "k=v w"]
        );
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        let at = |secs, nanos| std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
        assert_eq!(format_rfc3339(at(0, 0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_rfc3339(at(1_709_210_096, 5)),
            "2024-02-29T12:34:56.000000005Z"
        );
    }
}
