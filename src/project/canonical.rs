//! Load stage `canonical`: rewrites every short syntax of a Compose document into its
//! long syntax, so later stages (merge, extends, model) see one shape per attribute.
//!
//! Runs on each file's document after interpolation and before merging. Values may
//! carry `!reset`/`!override` tags; the rewrite looks through them and keeps the tag.

use super::yaml::untagged;
use serde_yaml::{Mapping, Sequence, Value};

use crate::project::model::units::{describe, scalar_text};

/// Why a short syntax could not be rewritten; each names the key path and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CanonicalError {
    #[error("{path}: invalid port {spec:?}: {reason}")]
    InvalidPort {
        path: String,
        spec: String,
        reason: String,
    },
    #[error("{path}: invalid volume {spec:?}: {reason}")]
    InvalidVolume {
        path: String,
        spec: String,
        reason: String,
    },
    #[error("{path}: invalid command {value:?}: {reason}")]
    InvalidCommand {
        path: String,
        value: String,
        reason: String,
    },
    #[error("{path}: confusing device mapping {spec:?}, please use long syntax")]
    InvalidDevice { path: String, spec: String },
    #[error("{path}: invalid ssh key {spec:?}, expected default or id=path")]
    InvalidSshKey { path: String, spec: String },
    #[error("{path}: invalid additional host {spec:?}, missing IP")]
    InvalidHost { path: String, spec: String },
    #[error("{path}: invalid type: got {found}, expected {expected}")]
    InvalidType {
        path: String,
        found: String,
        expected: &'static str,
    },
    #[error(
        "{path}: the ports of this file expand to more than {limit} port mappings; \
         publish smaller port ranges"
    )]
    TooManyPorts { path: String, limit: usize },
}

type Result<T> = std::result::Result<T, CanonicalError>;

/// The most port mappings the `ports` of one file may expand to. A range such as
/// `1-65535:1-65535` becomes one mapping per port, so a few bytes (or one alias reused by
/// many services) could otherwise ask for millions of mappings, each carried through
/// every later stage and printed. One full range, or the usual media ranges for several
/// services, still fits.
pub const MAX_PORT_MAPPINGS: usize = 65_536;

/// Rewrites `doc` (one Compose document) into long syntax in place, with a port budget
/// of its own.
pub fn canonicalize(doc: &mut Value) -> Result<()> {
    canonicalize_with(doc, &mut PortBudget::default())
}

/// Rewrites `doc` into long syntax, taking its port mappings from `port_budget`; the
/// documents of one file should share one budget so that splitting a file into many
/// documents does not multiply what it may expand to.
pub fn canonicalize_with(doc: &mut Value, port_budget: &mut PortBudget) -> Result<()> {
    let Some(top) = untagged(doc).as_mapping_mut() else {
        return Ok(());
    };
    for (key, value) in top.iter_mut() {
        let Some(key) = key.as_str() else { continue };
        match key {
            "services" => for_each_entry(value, "services", |service, path| {
                canonicalize_service(service, path, port_budget)
            })?,
            "networks" | "volumes" | "secrets" | "configs" => {
                for_each_entry(value, key, canonicalize_resource)?
            }
            "models" => for_each_entry(value, key, |v, _| {
                null_to_empty_mapping(v);
                Ok(())
            })?,
            "include" => canonicalize_include(value)?,
            _ => {}
        }
    }
    Ok(())
}

fn invalid_type(path: &str, value: &Value, expected: &'static str) -> CanonicalError {
    CanonicalError::InvalidType {
        path: path.to_owned(),
        found: describe(value),
        expected,
    }
}

/// Applies `f` to each value of a mapping, with the entry's path.
fn for_each_entry(
    value: &mut Value,
    path: &str,
    mut f: impl FnMut(&mut Value, &str) -> Result<()>,
) -> Result<()> {
    let Some(map) = untagged(value).as_mapping_mut() else {
        return Ok(());
    };
    for (key, entry) in map.iter_mut() {
        let name = scalar_text(key).unwrap_or_default();
        f(entry, &format!("{path}.{name}"))?;
    }
    Ok(())
}

/// Applies `f` to each item of a sequence, with the item's path.
fn for_each_item(
    value: &mut Value,
    path: &str,
    mut f: impl FnMut(&mut Value, &str) -> Result<()>,
) -> Result<()> {
    let Some(items) = untagged(value).as_sequence_mut() else {
        return Ok(());
    };
    for (index, item) in items.iter_mut().enumerate() {
        f(item, &format!("{path}.{index}"))?;
    }
    Ok(())
}

fn null_to_empty_mapping(value: &mut Value) {
    let inner = untagged(value);
    if inner.is_null() {
        *inner = Value::Mapping(Mapping::new());
    }
}

fn mapping_of(entries: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Mapping(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// Sets `key` to `default` when a mapping lacks it.
fn set_default(map: &mut Mapping, key: &str, default: Value) {
    if !map.contains_key(key) {
        map.insert(Value::from(key), default);
    }
}

// ---------------------------------------------------------------------------
// Top-level resources and include

/// `name:` with no body means defaults; `external: {name: x}` is the deprecated
/// spelling of `external: true` plus `name: x`.
fn canonicalize_resource(value: &mut Value, path: &str) -> Result<()> {
    null_to_empty_mapping(value);
    let Some(map) = untagged(value).as_mapping_mut() else {
        return Ok(());
    };
    let legacy_name = match map.get_mut("external").map(untagged) {
        Some(Value::Mapping(external)) => {
            let name = external.get("name").cloned();
            map.insert(Value::from("external"), Value::Bool(true));
            name
        }
        _ => None,
    };
    if let Some(name) = legacy_name {
        map.insert(Value::from("name"), name);
    }
    if let Some(labels) = map.get_mut("labels") {
        list_to_mapping(labels, &format!("{path}.labels"), MissingValue::Empty)?;
    }
    Ok(())
}

/// `include: [a.yaml]` → `include: [{path: [a.yaml]}]`.
fn canonicalize_include(value: &mut Value) -> Result<()> {
    for_each_item(value, "include", |item, path| {
        let inner = untagged(item);
        if let Value::String(s) = inner {
            *inner = mapping_of([("path", Value::Sequence(vec![Value::from(s.clone())]))]);
            return Ok(());
        }
        let Some(map) = inner.as_mapping_mut() else {
            return Err(invalid_type(path, inner, "a path or a mapping"));
        };
        for key in ["path", "env_file"] {
            if let Some(v) = map.get_mut(key) {
                string_to_list(v);
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Services

fn canonicalize_service(value: &mut Value, path: &str, ports: &mut PortBudget) -> Result<()> {
    let Some(service) = untagged(value).as_mapping_mut() else {
        return Ok(());
    };
    for (key, value) in service.iter_mut() {
        let Some(key) = key.as_str() else { continue };
        let at = format!("{path}.{key}");
        if key == "ports" {
            canonicalize_ports(value, &at, ports)?;
        } else {
            canonicalize_service_key(key, value, &at)?;
        }
    }
    Ok(())
}

fn canonicalize_service_key(key: &str, value: &mut Value, path: &str) -> Result<()> {
    match key {
        "build" => canonicalize_build(value, path),
        "command" | "entrypoint" => split_command(value, path),
        "configs" | "secrets" => for_each_item(value, path, file_reference),
        "depends_on" => canonicalize_depends_on(value, path),
        "devices" => for_each_item(value, path, device_mapping),
        "dns" | "dns_search" | "tmpfs" | "label_file" => {
            string_to_list(value);
            Ok(())
        }
        "env_file" => canonicalize_env_file(value, path),
        "environment" => list_to_mapping(value, path, MissingValue::Null),
        "annotations" | "labels" | "sysctls" => list_to_mapping(value, path, MissingValue::Empty),
        "expose" => {
            numbers_to_strings(value);
            Ok(())
        }
        "extends" => {
            scalar_to_mapping(value, "service");
            Ok(())
        }
        "extra_hosts" => canonicalize_extra_hosts(value, path),
        "gpus" => canonicalize_gpus(value),
        "healthcheck" => canonicalize_healthcheck(value, path),
        "networks" | "models" => {
            list_to_null_mapping(value);
            Ok(())
        }
        "volumes" => for_each_item(value, path, volume_mount),
        "deploy" => canonicalize_deploy(value, path),
        "develop" => canonicalize_develop(value, path),
        "post_start" | "pre_stop" => for_each_item(value, path, canonicalize_hook),
        _ => Ok(()),
    }
}

/// `build: ./dir` → `build: {context: ./dir}`, with context defaulting to `.`.
fn canonicalize_build(value: &mut Value, path: &str) -> Result<()> {
    scalar_to_mapping(value, "context");
    let Some(build) = untagged(value).as_mapping_mut() else {
        return Ok(());
    };
    set_default(build, "context", Value::from("."));
    for (key, v) in build.iter_mut() {
        let Some(key) = key.as_str() else { continue };
        let at = format!("{path}.{key}");
        match key {
            "args" => list_to_mapping(v, &at, MissingValue::Null)?,
            "labels" | "additional_contexts" => list_to_mapping(v, &at, MissingValue::Empty)?,
            "extra_hosts" => canonicalize_extra_hosts(v, &at)?,
            "secrets" => for_each_item(v, &at, file_reference)?,
            "ssh" => canonicalize_ssh(v, &at)?,
            "cache_from" | "cache_to" | "tags" | "platforms" | "no_cache_filter" => {
                string_to_list(v)
            }
            _ => {}
        }
    }
    Ok(())
}

/// `ssh: [default, id=path]` → `ssh: {default: null, id: path}`.
fn canonicalize_ssh(value: &mut Value, path: &str) -> Result<()> {
    string_to_list(value);
    let inner = untagged(value);
    let Some(items) = inner.as_sequence() else {
        return Ok(());
    };
    let mut map = Mapping::new();
    for (index, item) in items.iter().enumerate() {
        let text = scalar_text(item).unwrap_or_default();
        match text.split_once('=') {
            Some((id, key_path)) => map.insert(Value::from(id), Value::from(key_path)),
            None if text == "default" => map.insert(Value::from(text), Value::Null),
            None => {
                return Err(CanonicalError::InvalidSshKey {
                    path: format!("{path}.{index}"),
                    spec: text,
                })
            }
        };
    }
    *inner = Value::Mapping(map);
    Ok(())
}

/// A string command is split like a POSIX shell would: `echo "a b"` → `[echo, a b]`.
fn split_command(value: &mut Value, path: &str) -> Result<()> {
    let inner = untagged(value);
    if let Value::String(s) = inner {
        let words = shell_words::split(s).map_err(|e| CanonicalError::InvalidCommand {
            path: path.to_owned(),
            value: s.clone(),
            reason: e.to_string(),
        })?;
        *inner = Value::Sequence(words.into_iter().map(Value::from).collect());
    }
    Ok(())
}

/// Secrets and configs: `- name` → `- {source: name}`.
fn file_reference(item: &mut Value, _path: &str) -> Result<()> {
    scalar_to_mapping(item, "source");
    Ok(())
}

/// `depends_on: [db]` → `{db: {condition: service_started, required: true}}`, and the
/// same defaults for mapping entries that omit them.
fn canonicalize_depends_on(value: &mut Value, path: &str) -> Result<()> {
    let inner = untagged(value);
    if let Value::Sequence(items) = inner {
        let mut map = Mapping::new();
        for item in items.iter() {
            map.insert(item.clone(), Value::Mapping(Mapping::new()));
        }
        *inner = Value::Mapping(map);
    }
    if inner.is_null() {
        return Ok(());
    }
    let Some(map) = inner.as_mapping_mut() else {
        return Err(invalid_type(path, inner, "a list or a mapping of services"));
    };
    for (name, dependency) in map.iter_mut() {
        null_to_empty_mapping(dependency);
        let at = format!("{path}.{}", scalar_text(name).unwrap_or_default());
        let dependency = untagged(dependency);
        let Some(dependency) = dependency.as_mapping_mut() else {
            return Err(invalid_type(&at, dependency, "a mapping"));
        };
        set_default(dependency, "condition", Value::from("service_started"));
        set_default(dependency, "required", Value::Bool(true));
    }
    Ok(())
}

/// `/dev/a:/dev/b:rw` → `{source: /dev/a, target: /dev/b, permissions: rw}`.
fn device_mapping(item: &mut Value, path: &str) -> Result<()> {
    let inner = untagged(item);
    let Value::String(spec) = inner else {
        return Ok(());
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, permissions) = match parts.as_slice() {
        [s] => (*s, *s, "rwm"),
        [s, t] => (*s, *t, "rwm"),
        [s, t, p] => (*s, *t, *p),
        _ => {
            return Err(CanonicalError::InvalidDevice {
                path: path.to_owned(),
                spec: spec.clone(),
            })
        }
    };
    *inner = mapping_of([
        ("source", Value::from(source)),
        ("target", Value::from(target)),
        ("permissions", Value::from(permissions)),
    ]);
    Ok(())
}

/// `env_file: a.env` → `[{path: a.env, required: true}]`.
fn canonicalize_env_file(value: &mut Value, path: &str) -> Result<()> {
    string_to_list(value);
    let inner = untagged(value);
    if inner.is_null() {
        return Ok(());
    }
    if !inner.is_sequence() {
        return Err(invalid_type(path, inner, "a path or a list of paths"));
    }
    for_each_item(inner, path, |item, at| {
        scalar_to_mapping(item, "path");
        let entry = untagged(item);
        let Some(map) = entry.as_mapping_mut() else {
            return Err(invalid_type(at, entry, "a path or a mapping"));
        };
        set_default(map, "required", Value::Bool(true));
        Ok(())
    })
}

/// `extra_hosts: ["h=1.2.3.4", "h:5.6.7.8"]` → `{h: [1.2.3.4, 5.6.7.8]}`; a host with
/// one address maps to a plain string.
fn canonicalize_extra_hosts(value: &mut Value, path: &str) -> Result<()> {
    let inner = untagged(value);
    let Some(items) = inner.as_sequence() else {
        return Ok(());
    };
    let mut hosts: indexmap::IndexMap<String, Vec<String>> = indexmap::IndexMap::new();
    for (index, item) in items.iter().enumerate() {
        let text = scalar_text(item).unwrap_or_default();
        let (host, ips) = text
            .split_once('=')
            .or_else(|| text.split_once(':'))
            .ok_or_else(|| CanonicalError::InvalidHost {
                path: format!("{path}.{index}"),
                spec: text.clone(),
            })?;
        hosts
            .entry(host.to_owned())
            .or_default()
            .extend(ips.split(',').map(str::to_owned));
    }
    let map = hosts
        .into_iter()
        .map(|(host, mut ips)| {
            let value = match ips.len() {
                1 => Value::from(ips.remove(0)),
                _ => Value::Sequence(ips.into_iter().map(Value::from).collect()),
            };
            (Value::from(host), value)
        })
        .collect();
    *inner = Value::Mapping(map);
    Ok(())
}

/// `gpus: all` → `[{count: all}]`.
fn canonicalize_gpus(value: &mut Value) -> Result<()> {
    let inner = untagged(value);
    if inner.is_string() {
        *inner = Value::Sequence(vec![mapping_of([("count", Value::from("all"))])]);
    }
    Ok(())
}

/// `test: curl -f x` → `test: [CMD-SHELL, curl -f x]`.
fn canonicalize_healthcheck(value: &mut Value, _path: &str) -> Result<()> {
    let Some(check) = untagged(value).as_mapping_mut() else {
        return Ok(());
    };
    if let Some(test) = check.get_mut("test") {
        let test = untagged(test);
        if let Value::String(s) = test {
            *test = Value::Sequence(vec![Value::from("CMD-SHELL"), Value::from(s.clone())]);
        }
    }
    Ok(())
}

fn canonicalize_deploy(value: &mut Value, path: &str) -> Result<()> {
    let Some(deploy) = untagged(value).as_mapping_mut() else {
        return Ok(());
    };
    if let Some(labels) = deploy.get_mut("labels") {
        list_to_mapping(labels, &format!("{path}.labels"), MissingValue::Empty)?;
    }
    Ok(())
}

/// A watch rule listing several paths becomes one rule per path.
fn canonicalize_develop(value: &mut Value, path: &str) -> Result<()> {
    let Some(develop) = untagged(value).as_mapping_mut() else {
        return Ok(());
    };
    let Some(watch) = develop.get_mut("watch").map(untagged) else {
        return Ok(());
    };
    let Some(rules) = watch.as_sequence_mut() else {
        return Ok(());
    };
    let mut expanded = Sequence::new();
    for rule in rules.drain(..) {
        expanded.extend(split_watch_paths(rule));
    }
    *rules = expanded;
    for_each_item(watch, &format!("{path}.watch"), |rule, at| {
        if let Some(exec) = untagged(rule)
            .as_mapping_mut()
            .and_then(|r| r.get_mut("exec"))
        {
            canonicalize_hook(exec, &format!("{at}.exec"))?;
        }
        Ok(())
    })
}

fn split_watch_paths(rule: Value) -> Vec<Value> {
    let paths = match rule.as_mapping().and_then(|r| r.get("path")) {
        Some(Value::Sequence(paths)) => paths.clone(),
        _ => return vec![rule],
    };
    paths
        .into_iter()
        .map(|p| {
            let mut copy = rule.clone();
            if let Some(map) = copy.as_mapping_mut() {
                map.insert(Value::from("path"), p);
            }
            copy
        })
        .collect()
}

fn canonicalize_hook(value: &mut Value, path: &str) -> Result<()> {
    let Some(hook) = untagged(value).as_mapping_mut() else {
        return Ok(());
    };
    if let Some(command) = hook.get_mut("command") {
        split_command(command, &format!("{path}.command"))?;
    }
    if let Some(environment) = hook.get_mut("environment") {
        list_to_mapping(
            environment,
            &format!("{path}.environment"),
            MissingValue::Null,
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Generic short forms

/// What a bare `KEY` (no `=`) means in a list-form mapping.
#[derive(Clone, Copy)]
enum MissingValue {
    /// Unset (environment, build args): resolved later from the environment.
    Null,
    /// The empty string (labels, sysctls...).
    Empty,
}

/// `[A=1, B]` → `{A: "1", B: null}` (or `B: ""`).
fn list_to_mapping(value: &mut Value, path: &str, missing: MissingValue) -> Result<()> {
    let inner = untagged(value);
    let Some(items) = inner.as_sequence() else {
        return Ok(());
    };
    let mut map = Mapping::new();
    for (index, item) in items.iter().enumerate() {
        let text = scalar_text(item)
            .ok_or_else(|| invalid_type(&format!("{path}.{index}"), item, "a KEY=VALUE string"))?;
        let (key, val) = match (text.split_once('='), missing) {
            (Some((k, v)), _) => (k.to_owned(), Value::from(v)),
            (None, MissingValue::Null) => (text, Value::Null),
            (None, MissingValue::Empty) => (text, Value::from("")),
        };
        map.insert(Value::from(key), val);
    }
    *inner = Value::Mapping(map);
    Ok(())
}

/// `[a, b]` → `{a: null, b: null}` (service networks and models).
fn list_to_null_mapping(value: &mut Value) {
    let inner = untagged(value);
    if let Value::Sequence(items) = inner {
        let map = items
            .iter()
            .map(|item| (item.clone(), Value::Null))
            .collect();
        *inner = Value::Mapping(map);
    }
}

/// `x` → `[x]`.
fn string_to_list(value: &mut Value) {
    let inner = untagged(value);
    if inner.is_string() {
        *inner = Value::Sequence(vec![inner.clone()]);
    }
}

/// `x` → `{key: x}`.
fn scalar_to_mapping(value: &mut Value, key: &'static str) {
    let inner = untagged(value);
    if inner.is_string() {
        *inner = mapping_of([(key, inner.clone())]);
    }
}

/// `[3000, "8000"]` → `["3000", "8000"]`.
fn numbers_to_strings(value: &mut Value) {
    if let Some(items) = untagged(value).as_sequence_mut() {
        for item in items.iter_mut() {
            if let Value::Number(n) = item {
                *item = Value::from(n.to_string());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Ports

/// How many more port mappings may be expanded from short port entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBudget {
    left: usize,
    limit: usize,
}

impl Default for PortBudget {
    /// A budget of [`MAX_PORT_MAPPINGS`].
    fn default() -> Self {
        PortBudget::new(MAX_PORT_MAPPINGS)
    }
}

impl PortBudget {
    pub fn new(limit: usize) -> Self {
        PortBudget { left: limit, limit }
    }

    /// Takes `count` mappings for the entry at `path`, before they are built.
    fn take(&mut self, count: usize, path: &str) -> Result<()> {
        self.left = self
            .left
            .checked_sub(count)
            .ok_or_else(|| CanonicalError::TooManyPorts {
                path: path.to_owned(),
                limit: self.limit,
            })?;
        Ok(())
    }
}

/// Expands each port entry; one short entry with a range yields one entry per port.
fn canonicalize_ports(value: &mut Value, path: &str, budget: &mut PortBudget) -> Result<()> {
    let inner = untagged(value);
    if inner.is_null() {
        return Ok(());
    }
    let Some(items) = inner.as_sequence_mut() else {
        return Err(invalid_type(path, inner, "a list of ports"));
    };
    let mut expanded = Sequence::new();
    for (index, item) in items.drain(..).enumerate() {
        let at = format!("{path}.{index}");
        match item {
            Value::Number(n) => {
                budget.take(1, &at)?;
                expanded.push(mapping_of([
                    ("mode", Value::from("ingress")),
                    ("target", Value::Number(n)),
                    ("protocol", Value::from("tcp")),
                ]));
            }
            Value::String(spec) => {
                let parsed =
                    PortSpec::parse(&spec).map_err(|reason| CanonicalError::InvalidPort {
                        path: at.clone(),
                        spec: spec.clone(),
                        reason,
                    })?;
                budget.take(parsed.len(), &at)?;
                expanded.extend(parsed.expand().into_iter().map(PortMapping::into_value));
            }
            Value::Mapping(mut map) => {
                budget.take(1, &at)?;
                set_default(&mut map, "mode", Value::from("ingress"));
                set_default(&mut map, "protocol", Value::from("tcp"));
                expanded.push(Value::Mapping(map));
            }
            other => {
                return Err(invalid_type(
                    &at,
                    &other,
                    "a port number, string or mapping",
                ))
            }
        }
    }
    *items = expanded;
    Ok(())
}

/// One container port and how it is published.
#[derive(Debug, Clone, PartialEq)]
struct PortMapping {
    host_ip: String,
    target: u16,
    published: String,
    protocol: String,
}

impl PortMapping {
    fn into_value(self) -> Value {
        let mut map = Mapping::new();
        map.insert("mode".into(), "ingress".into());
        if !self.host_ip.is_empty() {
            map.insert("host_ip".into(), self.host_ip.into());
        }
        map.insert("target".into(), u64::from(self.target).into());
        if !self.published.is_empty() {
            map.insert("published".into(), self.published.into());
        }
        map.insert("protocol".into(), self.protocol.into());
        Value::Mapping(map)
    }
}

/// A parsed short port entry, before its ranges are expanded.
#[derive(Debug, Clone, PartialEq)]
struct PortSpec {
    host_ip: String,
    host: Option<(u16, u16)>,
    container: (u16, u16),
    protocol: String,
}

impl PortSpec {
    /// Parses `[ip:][host[-host]:]container[-container][/proto]` the way Docker does.
    fn parse(spec: &str) -> std::result::Result<Self, String> {
        let (ip, host, container) = split_port_parts(spec);
        let (container, protocol) = match container.split_once('/') {
            Some((port, proto)) => (port, proto.to_ascii_lowercase()),
            None => (container, "tcp".to_owned()),
        };
        let ip = ip
            .strip_prefix('[')
            .and_then(|i| i.strip_suffix(']'))
            .unwrap_or(ip);
        if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("invalid IP address: {ip}"));
        }
        if container.is_empty() {
            return Err("no port specified".to_owned());
        }
        let (start, end) = parse_port_range(container)
            .map_err(|e| format!("invalid containerPort: {container}: {e}"))?;
        let host_range = match host {
            "" => None,
            h => Some(parse_port_range(h).map_err(|e| format!("invalid hostPort: {h}: {e}"))?),
        };
        if let Some((host_start, host_end)) = host_range {
            if end - start != host_end - host_start && end != start {
                return Err(format!(
                    "invalid ranges specified for container and host Ports: {container} and {host}"
                ));
            }
        }
        if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!("invalid proto: {protocol}"));
        }
        Ok(PortSpec {
            host_ip: ip.to_owned(),
            host: host_range,
            container: (start, end),
            protocol,
        })
    }

    /// How many mappings [`PortSpec::expand`] yields: one per container port.
    fn len(&self) -> usize {
        let (start, end) = self.container;
        usize::from(end - start) + 1
    }

    /// One mapping per container port, in Docker's order.
    fn expand(self) -> Vec<PortMapping> {
        let (start, end) = self.container;
        let mut ports: Vec<PortMapping> = (start..=end)
            .map(|target| PortMapping {
                host_ip: self.host_ip.clone(),
                target,
                published: published_for(target - start, start == end, self.host),
                protocol: self.protocol.clone(),
            })
            .collect();
        // Docker keys ports by their "port/proto" text and Compose emits them in that
        // order; the protocol is the same for all, so the port's text decides.
        ports.sort_by_cached_key(|p| p.target.to_string());
        ports
    }
}

/// The host side for the `offset`-th container port: the matching host port, or the
/// whole host range when a single container port is published on a range.
fn published_for(offset: u16, single_target: bool, host: Option<(u16, u16)>) -> String {
    match host {
        None => String::new(),
        Some((start, end)) if single_target && start != end => format!("{start}-{end}"),
        Some((start, _)) => start.saturating_add(offset).to_string(),
    }
}

/// `ip:host:container`, where the IP itself may contain colons (`[::1]`, `::1`).
fn split_port_parts(spec: &str) -> (&str, &str, &str) {
    let Some((rest, container)) = spec.rsplit_once(':') else {
        return ("", "", spec);
    };
    match rest.rsplit_once(':') {
        Some((ip, host)) => (ip, host, container),
        None => ("", rest, container),
    }
}

fn parse_port_range(text: &str) -> std::result::Result<(u16, u16), String> {
    let parse = |p: &str| p.parse::<u16>().map_err(|_| format!("invalid port {p:?}"));
    match text.split_once('-') {
        Some((start, end)) => {
            let (start, end) = (parse(start)?, parse(end)?);
            if end < start {
                return Err(format!("invalid range {text:?}"));
            }
            Ok((start, end))
        }
        None => {
            let port = parse(text)?;
            Ok((port, port))
        }
    }
}

// ---------------------------------------------------------------------------
// Volumes

/// A parsed `source:target:options` mount spec.
#[derive(Debug, Default, PartialEq)]
struct VolumeSpec {
    source: String,
    target: String,
    read_only: bool,
    consistency: String,
    selinux: String,
    propagation: String,
    nocopy: bool,
}

fn volume_mount(item: &mut Value, path: &str) -> Result<()> {
    let inner = untagged(item);
    let Value::String(spec) = inner else {
        return Ok(());
    };
    let parsed = parse_volume_spec(spec).map_err(|reason| CanonicalError::InvalidVolume {
        path: path.to_owned(),
        spec: spec.clone(),
        reason,
    })?;
    *inner = volume_spec_to_value(parsed);
    Ok(())
}

/// Splits on `:` outside `${...}`, as Compose does; Windows drive letters are not
/// recognised.
fn parse_volume_spec(spec: &str) -> std::result::Result<VolumeSpec, String> {
    let mut volume = VolumeSpec::default();
    if spec.is_empty() {
        return Err("empty volume spec".to_owned());
    }
    if spec.len() <= 2 {
        volume.target = spec.to_owned();
        return Ok(volume);
    }
    let sections = split_outside_braces(spec);
    let count = sections.len();
    for (index, section) in sections.into_iter().enumerate() {
        if section.is_empty() {
            return Err("empty section between colons".to_owned());
        }
        let last = index + 1 == count;
        if volume.source.is_empty() && last && index == 0 {
            volume.target = section;
        } else if volume.source.is_empty() && index == 0 {
            volume.source = section;
        } else if volume.target.is_empty() {
            volume.target = section;
        } else if !last {
            return Err("too many colons".to_owned());
        } else {
            apply_volume_options(&mut volume, &section);
        }
    }
    volume.target = clean_path(&volume.target);
    Ok(volume)
}

fn split_outside_braces(spec: &str) -> Vec<String> {
    let mut sections = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek() == Some(&'{') => {
                depth += 1;
                current.push(c);
            }
            '}' if depth > 0 => {
                depth -= 1;
                current.push(c);
            }
            ':' if depth == 0 => sections.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    sections.push(current);
    sections
}

fn apply_volume_options(volume: &mut VolumeSpec, options: &str) {
    for option in options.split(',') {
        match option {
            "ro" => volume.read_only = true,
            "rw" => volume.read_only = false,
            "nocopy" => volume.nocopy = true,
            "z" | "Z" => volume.selinux = option.to_owned(),
            "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave" => {
                volume.propagation = option.to_owned()
            }
            "consistent" | "cached" | "delegated" => volume.consistency = option.to_owned(),
            // Compose ignores options it does not know.
            _ => {}
        }
    }
}

/// Sources starting with `.`, `/` or `~` are host paths; anything else names a volume.
fn is_host_path(source: &str) -> bool {
    source.starts_with(['.', '/', '~'])
}

fn volume_spec_to_value(spec: VolumeSpec) -> Value {
    let bind = is_host_path(&spec.source);
    let mut map = Mapping::new();
    map.insert("type".into(), if bind { "bind" } else { "volume" }.into());
    if !spec.source.is_empty() {
        map.insert("source".into(), spec.source.into());
    }
    map.insert("target".into(), spec.target.into());
    if spec.read_only {
        map.insert("read_only".into(), true.into());
    }
    if !spec.consistency.is_empty() {
        map.insert("consistency".into(), spec.consistency.into());
    }
    if bind {
        let mut options = Mapping::new();
        if !spec.selinux.is_empty() {
            options.insert("selinux".into(), spec.selinux.into());
        }
        if !spec.propagation.is_empty() {
            options.insert("propagation".into(), spec.propagation.into());
        }
        options.insert("create_host_path".into(), true.into());
        map.insert("bind".into(), Value::Mapping(options));
    }
    if !bind || spec.nocopy {
        let mut options = Mapping::new();
        if spec.nocopy {
            options.insert("nocopy".into(), true.into());
        }
        map.insert("volume".into(), Value::Mapping(options));
    }
    Value::Mapping(map)
}

/// Lexical cleanup of a container path, like Go's `path.Clean`.
fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return String::new();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::model;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).expect("test YAML parses")
    }

    /// Canonicalizes one service written as YAML and returns the service mapping.
    fn service(text: &str) -> Value {
        let mut doc = yaml(&format!("services:\n  web:\n{}", indent(text)));
        canonicalize(&mut doc).expect("canonicalizes");
        doc["services"]["web"].clone()
    }

    fn service_err(text: &str) -> String {
        let mut doc = yaml(&format!("services:\n  web:\n{}", indent(text)));
        canonicalize(&mut doc).expect_err("should fail").to_string()
    }

    fn indent(text: &str) -> String {
        text.lines().map(|l| format!("    {l}\n")).collect()
    }

    #[test]
    fn short_syntax_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("ports: [80]", "ports", "[{mode: ingress, target: 80, protocol: tcp}]"),
            ("ports: ['80']", "ports", "[{mode: ingress, target: 80, protocol: tcp}]"),
            ("ports: ['8080:80']", "ports", "[{mode: ingress, target: 80, published: '8080', protocol: tcp}]"),
            (
                "ports: ['127.0.0.1:8080:80/udp']",
                "ports",
                "[{mode: ingress, host_ip: 127.0.0.1, target: 80, published: '8080', protocol: udp}]",
            ),
            (
                "ports: ['[::1]:80:80']",
                "ports",
                "[{mode: ingress, host_ip: '::1', target: 80, published: '80', protocol: tcp}]",
            ),
            (
                "ports: ['127.0.0.1::80']",
                "ports",
                "[{mode: ingress, host_ip: 127.0.0.1, target: 80, protocol: tcp}]",
            ),
            (
                "ports: ['8000-8010:80']",
                "ports",
                "[{mode: ingress, target: 80, published: '8000-8010', protocol: tcp}]",
            ),
            (
                "ports: ['8000-8001:80-81']",
                "ports",
                "[{mode: ingress, target: 80, published: '8000', protocol: tcp}, {mode: ingress, target: 81, published: '8001', protocol: tcp}]",
            ),
            ("ports: [{target: 80}]", "ports", "[{target: 80, mode: ingress, protocol: tcp}]"),
            ("volumes: [data:/data]", "volumes", "[{type: volume, source: data, target: /data, volume: {}}]"),
            ("volumes: ['/data']", "volumes", "[{type: volume, target: /data, volume: {}}]"),
            (
                "volumes: ['./src:/src:ro,z']",
                "volumes",
                "[{type: bind, source: ./src, target: /src, read_only: true, bind: {selinux: z, create_host_path: true}}]",
            ),
            (
                "volumes: ['/abs:/in/../x:rshared,cached']",
                "volumes",
                "[{type: bind, source: /abs, target: /x, consistency: cached, bind: {propagation: rshared, create_host_path: true}}]",
            ),
            (
                "volumes: ['~/cfg:/cfg']",
                "volumes",
                "[{type: bind, source: ~/cfg, target: /cfg, bind: {create_host_path: true}}]",
            ),
            (
                "volumes: ['data:/data:nocopy']",
                "volumes",
                "[{type: volume, source: data, target: /data, volume: {nocopy: true}}]",
            ),
            (
                "volumes: ['${SRC:-./a}:/a']",
                "volumes",
                "[{type: volume, source: '${SRC:-./a}', target: /a, volume: {}}]",
            ),
            ("depends_on: [db]", "depends_on", "{db: {condition: service_started, required: true}}"),
            (
                "depends_on: {db: {condition: service_healthy}}",
                "depends_on",
                "{db: {condition: service_healthy, required: true}}",
            ),
            ("environment: [A=1, B, C=]", "environment", "{A: '1', B: null, C: ''}"),
            ("labels: [a=b, c]", "labels", "{a: b, c: ''}"),
            ("annotations: [a=b]", "annotations", "{a: b}"),
            ("sysctls: [net.core.somaxconn=1024]", "sysctls", "{net.core.somaxconn: '1024'}"),
            ("extra_hosts: ['a=1.2.3.4', 'b:::1', 'a=5.6.7.8']", "extra_hosts", "{a: [1.2.3.4, 5.6.7.8], b: '::1'}"),
            ("env_file: a.env", "env_file", "[{path: a.env, required: true}]"),
            ("env_file: [a.env, {path: b.env, required: false}]", "env_file", "[{path: a.env, required: true}, {path: b.env, required: false}]"),
            ("command: echo \"hello world\" 'x y'", "command", "[echo, hello world, x y]"),
            ("entrypoint: /bin/sh -c", "entrypoint", "[/bin/sh, -c]"),
            ("command: [a, b]", "command", "[a, b]"),
            ("healthcheck: {test: curl -f http://x}", "healthcheck", "{test: [CMD-SHELL, curl -f http://x]}"),
            ("build: ./app", "build", "{context: ./app}"),
            ("build: {dockerfile: D, args: [A=1, B]}", "build", "{dockerfile: D, args: {A: '1', B: null}, context: .}"),
            ("build: {context: ., ssh: [default, k=/p]}", "build", "{context: ., ssh: {default: null, k: /p}}"),
            ("extends: base", "extends", "{service: base}"),
            ("networks: [front, back]", "networks", "{front: null, back: null}"),
            ("models: [llm]", "models", "{llm: null}"),
            ("secrets: [token]", "secrets", "[{source: token}]"),
            ("configs: [cfg, {source: b, target: /b}]", "configs", "[{source: cfg}, {source: b, target: /b}]"),
            ("devices: ['/dev/a:/dev/b:r', '/dev/c:/dev/d', /dev/e]", "devices", "[{source: /dev/a, target: /dev/b, permissions: r}, {source: /dev/c, target: /dev/d, permissions: rwm}, {source: /dev/e, target: /dev/e, permissions: rwm}]"),
            ("dns: 8.8.8.8", "dns", "[8.8.8.8]"),
            ("dns_search: example.com", "dns_search", "[example.com]"),
            ("tmpfs: /run", "tmpfs", "[/run]"),
            ("label_file: ./l", "label_file", "[./l]"),
            ("expose: [3000, '8000']", "expose", "['3000', '8000']"),
            ("gpus: all", "gpus", "[{count: all}]"),
            ("deploy: {labels: [a=b]}", "deploy", "{labels: {a: b}}"),
            ("post_start: [{command: ./x.sh a, environment: [A=1]}]", "post_start", "[{command: [./x.sh, a], environment: {A: '1'}}]"),
            (
                "develop: {watch: [{path: [a, b], action: sync, target: /t}]}",
                "develop",
                "{watch: [{path: a, action: sync, target: /t}, {path: b, action: sync, target: /t}]}",
            ),
        ];
        for (input, key, expected) in cases {
            let got = &service(input)[*key];
            assert_eq!(got, &yaml(expected), "input: {input}");
        }
    }

    #[test]
    fn port_ranges_expand_in_docker_order() {
        let ports = &service("ports: ['98-101']")["ports"];
        let targets: Vec<u64> = ports
            .as_sequence()
            .map(|s| s.iter().filter_map(|p| p["target"].as_u64()).collect())
            .unwrap_or_default();
        assert_eq!(targets, [100, 101, 98, 99]);
    }

    #[test]
    fn port_ranges_are_capped_per_document() {
        // Every port may be published once...
        let all = service("ports: ['1-65535:1-65535/udp', 80]");
        assert_eq!(all["ports"].as_sequence().map(Vec::len), Some(65_536));
        // ...but a file cannot ask for more, whether in one service or spread by aliases.
        assert_eq!(
            service_err("ports: ['1-65535:1-65535', 80, 443]"),
            "services.web.ports.2: the ports of this file expand to more than 65536 port \
             mappings; publish smaller port ranges"
        );
        let mut doc = yaml(
            "x-p: &p ['10000-39999:10000-39999/udp']\nservices: {a: {ports: *p}, b: {ports: *p}, c: {ports: *p}}",
        );
        let err = canonicalize(&mut doc).expect_err("three large ranges are too many");
        assert!(err
            .to_string()
            .starts_with("services.c.ports.0: the ports of this file"));
    }

    #[test]
    fn documents_of_one_file_share_the_port_budget() {
        let mut budget = PortBudget::new(10);
        let mut first = yaml("services: {web: {ports: ['8000-8007:80-87']}}");
        canonicalize_with(&mut first, &mut budget).expect("8 mappings fit in 10");
        let mut second = yaml("services: {web: {ports: [90, '91-92']}}");
        let err = canonicalize_with(&mut second, &mut budget).expect_err("11 do not");
        assert_eq!(
            err.to_string(),
            "services.web.ports.1: the ports of this file expand to more than 10 port \
             mappings; publish smaller port ranges"
        );
    }

    #[test]
    fn bad_short_syntax_names_path_and_value() {
        assert_eq!(
            service_err("ports: ['80:abc']"),
            "services.web.ports.0: invalid port \"80:abc\": invalid containerPort: abc: invalid port \"abc\""
        );
        assert!(service_err("ports: ['1.2.3:80:80']")
            .starts_with("services.web.ports.0: invalid port \"1.2.3:80:80\": invalid IP address"));
        assert!(service_err("ports: ['80/xyz']").contains("invalid proto: xyz"));
        assert!(service_err("ports: ['8000-8002:80-81']").contains("invalid ranges"));
        assert_eq!(
            service_err("volumes: ['a:b:c:d']"),
            "services.web.volumes.0: invalid volume \"a:b:c:d\": too many colons"
        );
        assert!(service_err("volumes: ['a::b']").contains("empty section between colons"));
        assert!(service_err("command: \"echo 'x\"")
            .starts_with("services.web.command: invalid command"));
        assert!(service_err("devices: ['a:b:c:d']")
            .starts_with("services.web.devices.0: confusing device mapping"));
        assert!(service_err("extra_hosts: [nohost]")
            .starts_with("services.web.extra_hosts.0: invalid additional host \"nohost\""));
        assert!(service_err("build: {ssh: [nope]}")
            .starts_with("services.web.build.ssh.0: invalid ssh key \"nope\""));
        assert!(service_err("env_file: 3").starts_with("services.web.env_file: invalid type"));
    }

    #[test]
    fn tags_are_kept_and_looked_through() {
        let web = service("ports: !override ['8080:80']\nenvironment: !reset []\n");
        let Value::Tagged(ports) = &web["ports"] else {
            panic!("tag lost: {web:?}")
        };
        assert_eq!(ports.tag, "!override");
        assert_eq!(ports.value[0]["published"], Value::from("8080"));
        assert!(matches!(&web["environment"], Value::Tagged(t) if t.value == yaml("{}")));
    }

    #[test]
    fn top_level_resources_and_include() {
        let mut doc = yaml(
            "services: {}\nvolumes:\n  data:\n  old:\n    external: {name: legacy}\nnetworks:\n  front:\n    labels: [a=b]\nsecrets:\n  s: {external: true}\ninclude:\n  - other.yaml\n  - {path: x.yaml, env_file: x.env}\n",
        );
        canonicalize(&mut doc).expect("canonicalizes");
        assert_eq!(doc["volumes"]["data"], yaml("{}"));
        assert_eq!(
            doc["volumes"]["old"],
            yaml("{external: true, name: legacy}")
        );
        assert_eq!(doc["networks"]["front"]["labels"], yaml("{a: b}"));
        assert_eq!(doc["secrets"]["s"], yaml("{external: true}"));
        assert_eq!(
            doc["include"],
            yaml("[{path: [other.yaml]}, {path: [x.yaml], env_file: [x.env]}]")
        );
    }

    const SHORT_PROJECT: &str = r#"
name: demo
services:
  web:
    build: ./web
    image: demo/web
    command: npm start --port 3000
    ports: ["8080:80", "127.0.0.1:9000-9001:9000-9001/udp", 3000]
    volumes: ["./src:/src:ro", "data:/data", "/cache"]
    depends_on: [db]
    environment: [NODE_ENV=production, TOKEN]
    env_file: .env
    labels: [tier=front]
    networks: [front]
    secrets: [token]
    extra_hosts: ["host.docker.internal=host-gateway"]
    healthcheck: {test: curl -f http://localhost, interval: 30s}
    dns: 1.1.1.1
    expose: [4000]
    devices: ["/dev/fuse"]
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    x-note: kept
  db:
    image: postgres
    networks:
      front:
        aliases: [database]
volumes:
  data:
networks:
  front:
secrets:
  token: {file: ./token.txt}
"#;

    #[test]
    fn short_project_round_trips_through_config_output() {
        let mut doc = yaml(SHORT_PROJECT);
        canonicalize(&mut doc).expect("canonicalizes");
        let project = model::from_value(doc).expect("canonical form decodes");
        let printed = serde_yaml::to_string(&project).expect("serializes");
        let mut again = yaml(&printed);
        canonicalize(&mut again).expect("printed output canonicalizes");
        let reparsed = model::from_value(again).expect("printed output decodes");
        assert_eq!(project, reparsed);

        let web = &project.services["web"];
        assert_eq!(web.ports.len(), 4);
        assert_eq!(web.ports[1].published, "9000");
        assert_eq!(web.command.as_deref().map(<[String]>::len), Some(4));
        assert_eq!(
            web.volumes[0].bind.as_ref().map(|b| b.create_host_path),
            Some(true)
        );
        assert_eq!(web.volumes[2].target, "/cache");
        assert_eq!(web.environment["TOKEN"], None);
        assert_eq!(
            web.extra_hosts.as_list("="),
            ["host.docker.internal=host-gateway"]
        );
        assert_eq!(
            web.healthcheck.as_ref().map(|h| h.test.clone()),
            Some(vec![
                "CMD-SHELL".to_owned(),
                "curl -f http://localhost".to_owned()
            ])
        );
        assert_eq!(project.volumes["data"], model::VolumeConfig::default());
    }

    #[test]
    fn volume_paths_are_cleaned_like_go() {
        assert_eq!(clean_path("/a/b/../c/./d/"), "/a/c/d");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(clean_path("./"), ".");
    }
}
