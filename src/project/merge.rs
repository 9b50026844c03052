//! Load stage `merge`: the multi-file override rules of Compose v2.
//!
//! Both sides are one Compose document each, already interpolated and in canonical (long)
//! syntax. The rules follow compose-go's `override` package: mappings merge recursively,
//! scalars from the override win, sequences append, and a few paths have their own rule
//! (see [`rule_for`]). Appended sequences are then de-duplicated the way compose-go's
//! "unicity" pass does it: entries that name the same thing (a volume target, a published
//! port...) collapse into the later one, kept at the earlier one's position.
//!
//! `!reset` in the override removes the key from the result; `!override` replaces the base
//! value whole. [`merge`] never leaves those tags in its result. [`merge_service`] (used by
//! `extends`) keeps the override's tags in its result so the later file-level [`merge`] can
//! still apply them to earlier files, as compose-go does; [`resolve_tags`] removes them from
//! a file that is not merged over anything.

use std::collections::HashMap;

use serde_yaml::{Mapping, Value};

/// Why two Compose documents could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The override gives a value whose type cannot be merged into the base value.
    #[error(
        "`{path}`: cannot merge a {overlay} from the override into a {base} from the earlier \
         definition; use the same type, or tag the value `!override` to replace it"
    )]
    TypeMismatch {
        path: String,
        base: &'static str,
        overlay: &'static str,
    },
    /// A document or service that must be a mapping is something else.
    #[error("`{path}` must be a mapping, found a {found}")]
    NotAMapping { path: String, found: &'static str },
    /// A sequence entry lacks the field that identifies it across files.
    #[error("`{path}`: {what} has no `{field}`; add it so overrides can match this entry")]
    MissingKey {
        path: String,
        what: &'static str,
        field: &'static str,
    },
}

/// Merges `overlay` (a later `-f` file) over `base` (the earlier files, already merged).
pub fn merge(base: Value, overlay: Value) -> Result<Value, MergeError> {
    let mut base = base;
    resolve_tags(&mut base);
    let base = document_mapping(base, "(base document)")?;
    let overlay = document_mapping(overlay, "(override document)")?;
    let ctx = Ctx { keep_tags: false };
    let mut path = Vec::new();
    merge_mappings(base, overlay, &mut path, ctx, ChildMerge::Recurse).map(Value::Mapping)
}

/// Merges one service definition over a base service (for `extends`).
///
/// `path` names the service for rules and messages, e.g. `services.web`. `!reset` and
/// `!override` tags of `overlay` stay in the result (see the module docs).
pub fn merge_service(base: &Value, overlay: &Value, path: &str) -> Result<Value, MergeError> {
    let mut base = base.clone();
    resolve_tags(&mut base);
    let ctx = Ctx { keep_tags: true };
    let name = path.strip_prefix("services.").unwrap_or(path);
    let mut segments = vec!["services".to_string(), name.to_string()];
    let overlay = match overlay {
        Value::Null => return Ok(base),
        Value::Mapping(m) => m.clone(),
        other => return Err(not_a_mapping(&segments, other)),
    };
    match base {
        Value::Null => Ok(Value::Mapping(overlay)),
        Value::Mapping(base) => {
            merge_mappings(base, overlay, &mut segments, ctx, ChildMerge::Recurse)
                .map(Value::Mapping)
        }
        other => Err(not_a_mapping(&segments, &other)),
    }
}

/// Applies `!reset` / `!override` for a file that is not merged over anything: keys tagged
/// `!reset` are dropped and `!override` values lose their tag. Other tags are left alone.
pub fn resolve_tags(doc: &mut Value) {
    match doc {
        Value::Mapping(map) => {
            map.retain(|_, v| !is_tagged(v, RESET));
            for value in map.values_mut() {
                untag_override(value);
                resolve_tags(value);
            }
        }
        Value::Sequence(seq) => {
            seq.retain(|v| !is_tagged(v, RESET));
            for value in seq.iter_mut() {
                untag_override(value);
                resolve_tags(value);
            }
        }
        Value::Tagged(tagged) if tagged.tag == OVERRIDE => {
            untag_override(doc);
            resolve_tags(doc);
        }
        _ => {}
    }
}

const RESET: &str = "reset";
const OVERRIDE: &str = "override";

/// Settings that hold for a whole merge.
#[derive(Clone, Copy)]
struct Ctx {
    /// Keep the override's `!reset`/`!override` markers in the result (for `extends`).
    keep_tags: bool,
}

/// How the values under keys present on both sides combine.
#[derive(Clone, Copy)]
enum ChildMerge {
    /// Apply the merge rules recursively.
    Recurse,
    /// The override's value wins, even `null` (it unsets an environment variable, a label...).
    Replace,
}

/// The merge rule of one path in the document.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// The override replaces the base, even with `null`.
    Replace,
    /// Key/value attribute (environment, labels...): merged by key, override wins.
    KeyValue,
    /// Sequence appended, then de-duplicated by the given identity.
    Unique(Indexer),
    /// Like `Unique`, but a single string counts as a one-entry list.
    StringList(Option<Indexer>),
    /// `extra_hosts`: override entries already in the base are not repeated.
    ExtraHosts,
    /// Mapping of names that may be written as a list of names (depends_on, networks).
    NamedMapping(NamedDefault),
    /// `logging`: options merge only when the driver is unchanged.
    Logging,
    /// `build`: a string is a context path.
    Build,
    /// `networks.*.ipam.config`: entries merged by subnet.
    IpamConfig,
    /// Mappings recurse, sequences append, scalars are replaced.
    Generic,
}

/// The value a name gets when a named mapping is written as a list of names.
#[derive(Clone, Copy, Debug, PartialEq)]
enum NamedDefault {
    Null,
    DependsOn,
}

/// What identifies a sequence entry when de-duplicating.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Indexer {
    /// The text before `=` (or the whole value).
    KeyValue,
    /// A mount's `target`.
    Volume,
    /// A device's `target` (its `source` when the target is implied).
    Device,
    /// `host_ip:published:target/protocol`.
    Port,
    /// The exposed port as text.
    Expose,
    /// An env file's `path`.
    EnvFile,
    /// A secret or config's `target`, else `<default dir>/<source>`.
    Mount(&'static str),
}

/// Path patterns with their rule; `*` matches any one segment.
const RULES: &[(&str, Rule)] = &[
    ("services.*.command", Rule::Replace),
    ("services.*.entrypoint", Rule::Replace),
    ("services.*.healthcheck.test", Rule::Replace),
    ("services.*.ulimits.*", Rule::Replace),
    ("services.*.environment", Rule::KeyValue),
    ("services.*.labels", Rule::KeyValue),
    ("services.*.annotations", Rule::KeyValue),
    ("services.*.sysctls", Rule::KeyValue),
    ("services.*.build.args", Rule::KeyValue),
    ("services.*.build.labels", Rule::KeyValue),
    ("services.*.build.additional_contexts", Rule::KeyValue),
    ("services.*.deploy.labels", Rule::KeyValue),
    ("networks.*.labels", Rule::KeyValue),
    ("volumes.*.labels", Rule::KeyValue),
    ("services.*.dns", Rule::StringList(Some(Indexer::KeyValue))),
    (
        "services.*.dns_opt",
        Rule::StringList(Some(Indexer::KeyValue)),
    ),
    (
        "services.*.dns_search",
        Rule::StringList(Some(Indexer::KeyValue)),
    ),
    (
        "services.*.tmpfs",
        Rule::StringList(Some(Indexer::KeyValue)),
    ),
    (
        "services.*.env_file",
        Rule::StringList(Some(Indexer::EnvFile)),
    ),
    ("services.*.label_file", Rule::StringList(None)),
    ("services.*.extra_hosts", Rule::ExtraHosts),
    ("services.*.build.extra_hosts", Rule::ExtraHosts),
    (
        "services.*.depends_on",
        Rule::NamedMapping(NamedDefault::DependsOn),
    ),
    (
        "services.*.networks",
        Rule::NamedMapping(NamedDefault::Null),
    ),
    ("services.*.models", Rule::NamedMapping(NamedDefault::Null)),
    ("services.*.logging", Rule::Logging),
    ("services.*.build", Rule::Build),
    ("networks.*.ipam.config", Rule::IpamConfig),
    ("services.*.ports", Rule::Unique(Indexer::Port)),
    ("services.*.volumes", Rule::Unique(Indexer::Volume)),
    ("services.*.devices", Rule::Unique(Indexer::Device)),
    ("services.*.expose", Rule::Unique(Indexer::Expose)),
    (
        "services.*.secrets",
        Rule::Unique(Indexer::Mount("/run/secrets")),
    ),
    ("services.*.configs", Rule::Unique(Indexer::Mount(""))),
    ("services.*.cap_add", Rule::Unique(Indexer::KeyValue)),
    ("services.*.cap_drop", Rule::Unique(Indexer::KeyValue)),
    ("services.*.profiles", Rule::Unique(Indexer::KeyValue)),
    ("services.*.links", Rule::Unique(Indexer::KeyValue)),
    ("services.*.build.tags", Rule::Unique(Indexer::KeyValue)),
    (
        "services.*.build.platforms",
        Rule::Unique(Indexer::KeyValue),
    ),
    (
        "services.*.networks.*.aliases",
        Rule::Unique(Indexer::KeyValue),
    ),
    (
        "services.*.networks.*.link_local_ips",
        Rule::Unique(Indexer::KeyValue),
    ),
];

/// The rule for a path such as `["services", "web", "ports"]`.
fn rule_for(path: &[String]) -> Rule {
    RULES
        .iter()
        .find(|(pattern, _)| path_matches(path, pattern))
        .map_or(Rule::Generic, |(_, rule)| *rule)
}

fn path_matches(path: &[String], pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('.').collect();
    parts.len() == path.len()
        && parts
            .iter()
            .zip(path)
            .all(|(want, got)| *want == "*" || want == got)
}

fn display_path(path: &[String]) -> String {
    if path.is_empty() {
        "(top level)".to_string()
    } else {
        path.join(".")
    }
}

fn document_mapping(doc: Value, what: &str) -> Result<Mapping, MergeError> {
    match doc {
        Value::Null => Ok(Mapping::new()),
        Value::Mapping(m) => Ok(m),
        Value::Tagged(t) => document_mapping(t.value, what),
        other => Err(MergeError::NotAMapping {
            path: what.to_string(),
            found: kind(&other),
        }),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "sequence",
        Value::Mapping(_) => "mapping",
        Value::Tagged(t) => kind(&t.value),
    }
}

fn not_a_mapping(path: &[String], found: &Value) -> MergeError {
    MergeError::NotAMapping {
        path: display_path(path),
        found: kind(found),
    }
}

fn mismatch(path: &[String], base: &Value, overlay: &Value) -> MergeError {
    MergeError::TypeMismatch {
        path: display_path(path),
        base: kind(base),
        overlay: kind(overlay),
    }
}

fn is_tagged(value: &Value, tag: &str) -> bool {
    matches!(value, Value::Tagged(t) if t.tag == tag)
}

/// Replaces an `!override`-tagged value by its content.
fn untag_override(value: &mut Value) {
    if let Value::Tagged(tagged) = value {
        if tagged.tag == OVERRIDE {
            let inner = std::mem::take(&mut tagged.value);
            *value = inner;
        }
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => scalar_text(other).unwrap_or_else(|| "?".to_string()),
    }
}

/// A scalar as Compose prints it in `KEY=VALUE` form; `None` for non-scalars.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        Value::Tagged(t) => scalar_text(&t.value),
        Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// An override value placed where the base has nothing: its tags are resolved unless the
/// caller keeps them.
fn fresh(mut value: Value, ctx: Ctx) -> Value {
    if !ctx.keep_tags {
        resolve_tags(&mut value);
    }
    value
}

/// The override's sequence entries: `!reset` entries are dropped, others taken fresh.
fn fresh_items(items: Vec<Value>, ctx: Ctx) -> Vec<Value> {
    items
        .into_iter()
        .filter(|v| !is_tagged(v, RESET))
        .map(|mut v| {
            untag_override(&mut v);
            fresh(v, ctx)
        })
        .collect()
}

/// Merges two mappings key by key, honouring `!reset` / `!override` on override values.
fn merge_mappings(
    base: Mapping,
    overlay: Mapping,
    path: &mut Vec<String>,
    ctx: Ctx,
    children: ChildMerge,
) -> Result<Mapping, MergeError> {
    let mut result = base;
    for (key, value) in overlay {
        if is_tagged(&value, RESET) {
            if ctx.keep_tags {
                result.insert(key, value);
            } else {
                result.remove(&key);
            }
            continue;
        }
        if is_tagged(&value, OVERRIDE) {
            let replacement = if ctx.keep_tags {
                value
            } else {
                fresh(value, ctx)
            };
            result.insert(key, replacement);
            continue;
        }
        let Some(slot) = result.get_mut(&key) else {
            result.insert(key, fresh(value, ctx));
            continue;
        };
        match children {
            ChildMerge::Replace => *slot = fresh(value, ctx),
            ChildMerge::Recurse => {
                let existing = std::mem::take(slot);
                path.push(key_text(&key));
                let merged = merge_value(existing, value, path, ctx);
                path.pop();
                *slot = merged?;
            }
        }
    }
    Ok(result)
}

/// Merges one value of the override over the base value at `path`.
fn merge_value(
    base: Value,
    overlay: Value,
    path: &mut Vec<String>,
    ctx: Ctx,
) -> Result<Value, MergeError> {
    let rule = rule_for(path);
    if matches!(overlay, Value::Null) {
        // An override of `null` leaves the base alone, except where the override replaces.
        return Ok(if rule == Rule::Replace {
            Value::Null
        } else {
            normalize_base(base, rule)
        });
    }
    if matches!(base, Value::Null) {
        return merge_into_null(overlay, rule, path, ctx);
    }
    match rule {
        Rule::Replace => Ok(fresh(overlay, ctx)),
        Rule::KeyValue => merge_key_values(base, overlay, path, ctx),
        Rule::Unique(indexer) => merge_unique(base, overlay, Some(indexer), path, ctx),
        Rule::StringList(indexer) => merge_unique(
            string_as_list(base),
            string_as_list(overlay),
            indexer,
            path,
            ctx,
        ),
        Rule::ExtraHosts => merge_extra_hosts(base, overlay, path, ctx),
        Rule::NamedMapping(default) => merge_named(base, overlay, default, path, ctx),
        Rule::Logging => merge_logging(base, overlay, path, ctx),
        Rule::Build => merge_generic(build_mapping(base), build_mapping(overlay), path, ctx),
        Rule::IpamConfig => merge_ipam_config(base, overlay, path, ctx),
        Rule::Generic => merge_generic(base, overlay, path, ctx),
    }
}

/// The base value kept under an override of `null`, in the shape its rule produces.
fn normalize_base(base: Value, rule: Rule) -> Value {
    match (rule, base) {
        (Rule::NamedMapping(default), Value::Sequence(names)) => {
            Value::Mapping(names_to_mapping(names, default))
        }
        (_, base) => base,
    }
}

/// The override value where the base has `null`: taken as is, in its rule's shape.
fn merge_into_null(
    overlay: Value,
    rule: Rule,
    path: &[String],
    ctx: Ctx,
) -> Result<Value, MergeError> {
    let value = fresh(overlay, ctx);
    Ok(match (rule, value) {
        (Rule::NamedMapping(default), Value::Sequence(names)) => {
            Value::Mapping(names_to_mapping(names, default))
        }
        (Rule::Build, value) => build_mapping(value),
        (Rule::KeyValue, value) => Value::Mapping(key_value_mapping(value, path)?),
        (_, value) => value,
    })
}

/// Mappings recurse, sequences append, anything else is replaced by the override.
fn merge_generic(
    base: Value,
    overlay: Value,
    path: &mut Vec<String>,
    ctx: Ctx,
) -> Result<Value, MergeError> {
    match (base, overlay) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            merge_mappings(b, o, path, ctx, ChildMerge::Recurse).map(Value::Mapping)
        }
        (Value::Sequence(b), Value::Sequence(o)) => {
            Ok(Value::Sequence(append_distinct(b, fresh_items(o, ctx))))
        }
        (base @ (Value::Mapping(_) | Value::Sequence(_)), overlay) => {
            Err(mismatch(path, &base, &overlay))
        }
        (_, overlay) => Ok(fresh(overlay, ctx)),
    }
}

/// Appends the entries of `extra` that are not strictly identical to one already present.
fn append_distinct(mut items: Vec<Value>, extra: Vec<Value>) -> Vec<Value> {
    for value in extra {
        if !items.contains(&value) {
            items.push(value);
        }
    }
    items
}

/// Environment-like attributes: both sides as mappings, the override's entries win.
fn merge_key_values(
    base: Value,
    overlay: Value,
    path: &mut Vec<String>,
    ctx: Ctx,
) -> Result<Value, MergeError> {
    let base = key_value_mapping(base, path)?;
    let overlay = key_value_mapping(overlay, path)?;
    merge_mappings(base, overlay, path, ctx, ChildMerge::Replace).map(Value::Mapping)
}

/// A key/value attribute as a mapping; accepts the `KEY=VALUE` list form too.
fn key_value_mapping(value: Value, path: &[String]) -> Result<Mapping, MergeError> {
    match value {
        Value::Mapping(m) => Ok(m),
        Value::Null => Ok(Mapping::new()),
        Value::String(s) => Ok(entries_to_mapping(vec![Value::String(s)], path)?),
        Value::Sequence(items) => entries_to_mapping(items, path),
        other => Err(MergeError::TypeMismatch {
            path: display_path(path),
            base: "mapping",
            overlay: kind(&other),
        }),
    }
}

fn entries_to_mapping(items: Vec<Value>, path: &[String]) -> Result<Mapping, MergeError> {
    let mut map = Mapping::new();
    for item in items {
        let text = scalar_text(&item).ok_or_else(|| MergeError::TypeMismatch {
            path: display_path(path),
            base: "mapping",
            overlay: "sequence of non-text entries",
        })?;
        match text.split_once('=') {
            Some((k, v)) => map.insert(Value::from(k), Value::from(v)),
            None => map.insert(Value::from(text), Value::Null),
        };
    }
    Ok(map)
}

fn string_as_list(value: Value) -> Value {
    match value {
        Value::String(s) => Value::Sequence(vec![Value::String(s)]),
        other => other,
    }
}

/// Appends the override's entries, then keeps one entry per identity (the later one, at
/// the earlier one's position).
fn merge_unique(
    base: Value,
    overlay: Value,
    indexer: Option<Indexer>,
    path: &mut Vec<String>,
    ctx: Ctx,
) -> Result<Value, MergeError> {
    let (base, overlay) = match (base, overlay) {
        (Value::Sequence(b), Value::Sequence(o)) => (b, o),
        (b, o) => return merge_generic(b, o, path, ctx),
    };
    let mut items = base;
    items.extend(fresh_items(overlay, ctx));
    let items = match indexer {
        Some(indexer) => keep_last_per_identity(items, indexer, path)?,
        None => append_distinct(Vec::new(), items),
    };
    Ok(Value::Sequence(items))
}

fn keep_last_per_identity(
    items: Vec<Value>,
    indexer: Indexer,
    path: &[String],
) -> Result<Vec<Value>, MergeError> {
    let mut result: Vec<Value> = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let identity = identity_of(&item, indexer, path, index)?;
        match seen.get(&identity).and_then(|&at| result.get_mut(at)) {
            Some(slot) => *slot = item,
            None => {
                seen.insert(identity, result.len());
                result.push(item);
            }
        }
    }
    Ok(result)
}

fn identity_of(
    item: &Value,
    indexer: Indexer,
    path: &[String],
    index: usize,
) -> Result<String, MergeError> {
    let missing = |what: &'static str, field: &'static str| MergeError::MissingKey {
        path: format!("{}.{index}", display_path(path)),
        what,
        field,
    };
    let field = |name: &str| item.get(name).and_then(scalar_text);
    let identity = match (indexer, item) {
        (Indexer::KeyValue, _) => match scalar_text(item) {
            Some(text) => text.split('=').next().unwrap_or_default().to_string(),
            None => fallback_identity(item),
        },
        (Indexer::Expose, _) => scalar_text(item).unwrap_or_else(|| fallback_identity(item)),
        (Indexer::Volume, Value::Mapping(_)) => {
            field("target").ok_or_else(|| missing("the volume", "target"))?
        }
        (Indexer::Volume, Value::String(s)) => short_mount_target(s),
        (Indexer::Device, Value::Mapping(_)) => field("target")
            .or_else(|| field("source"))
            .ok_or_else(|| missing("the device", "target"))?,
        (Indexer::Device, Value::String(s)) => short_mount_target(s),
        (Indexer::Port, Value::Mapping(_)) => {
            let target = field("target").ok_or_else(|| missing("the port", "target"))?;
            let host = field("host_ip").unwrap_or_else(|| "0.0.0.0".to_string());
            let published = field("published").unwrap_or_default();
            let protocol = field("protocol").unwrap_or_else(|| "tcp".to_string());
            format!("{host}:{published}:{target}/{protocol}")
        }
        (Indexer::EnvFile, Value::Mapping(_)) => {
            field("path").ok_or_else(|| missing("the env file", "path"))?
        }
        (Indexer::Mount(default_dir), Value::Mapping(_)) => match field("target") {
            Some(target) => target,
            None => format!("{default_dir}/{}", field("source").unwrap_or_default()),
        },
        (Indexer::Mount(default_dir), Value::String(s)) => format!("{default_dir}/{s}"),
        (_, other) => scalar_text(other).unwrap_or_else(|| fallback_identity(other)),
    };
    Ok(identity)
}

/// The container path of a `SOURCE:TARGET[:MODE]` string (the whole string if alone).
fn short_mount_target(spec: &str) -> String {
    let mut parts = spec.split(':');
    let first = parts.next().unwrap_or_default();
    parts.next().unwrap_or(first).to_string()
}

/// Entries with no natural identity are only collapsed when strictly identical.
fn fallback_identity(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_default()
}

/// `extra_hosts`: a host may map to several addresses, so entries add up; only entries the
/// base already has are not repeated.
fn merge_extra_hosts(
    base: Value,
    overlay: Value,
    path: &[String],
    ctx: Ctx,
) -> Result<Value, MergeError> {
    let overlay = fresh(overlay, ctx);
    match (base, overlay) {
        (Value::Mapping(b), Value::Mapping(o)) => Ok(Value::Mapping(merge_host_mappings(b, o))),
        (b, o) => {
            let mut hosts = host_entries(b, path)?;
            for entry in host_entries(o, path)? {
                if !hosts.contains(&entry) {
                    hosts.push(entry);
                }
            }
            Ok(Value::Sequence(hosts))
        }
    }
}

fn merge_host_mappings(base: Mapping, overlay: Mapping) -> Mapping {
    let mut result = base;
    for (host, addresses) in overlay {
        let Some(slot) = result.get_mut(&host) else {
            result.insert(host, addresses);
            continue;
        };
        let mut all = address_list(std::mem::take(slot));
        for address in address_list(addresses) {
            if !all.contains(&address) {
                all.push(address);
            }
        }
        *slot = match all.len() {
            1 => all.pop().unwrap_or_default(),
            _ => Value::Sequence(all),
        };
    }
    result
}

fn address_list(value: Value) -> Vec<Value> {
    match value {
        Value::Sequence(items) => items,
        Value::Null => Vec::new(),
        single => vec![single],
    }
}

/// `extra_hosts` entries as `host=address` strings (list entries are kept as written).
fn host_entries(value: Value, path: &[String]) -> Result<Vec<Value>, MergeError> {
    match value {
        Value::Sequence(items) => Ok(items),
        Value::String(s) => Ok(vec![Value::String(s)]),
        Value::Null => Ok(Vec::new()),
        Value::Mapping(map) => Ok(map
            .into_iter()
            .flat_map(|(host, addresses)| {
                let host = key_text(&host);
                address_list(addresses).into_iter().map(move |a| {
                    Value::String(format!("{host}={}", scalar_text(&a).unwrap_or_default()))
                })
            })
            .collect()),
        other => Err(MergeError::TypeMismatch {
            path: display_path(path),
            base: "sequence",
            overlay: kind(&other),
        }),
    }
}

/// depends_on / networks / models: a list of names becomes a mapping, then entries merge.
fn merge_named(
    base: Value,
    overlay: Value,
    default: NamedDefault,
    path: &mut Vec<String>,
    ctx: Ctx,
) -> Result<Value, MergeError> {
    let as_mapping = |value: Value| match value {
        Value::Sequence(names) => Value::Mapping(names_to_mapping(names, default)),
        other => other,
    };
    merge_generic(as_mapping(base), as_mapping(overlay), path, ctx)
}

fn names_to_mapping(names: Vec<Value>, default: NamedDefault) -> Mapping {
    names
        .into_iter()
        .map(|name| (name, named_default(default)))
        .collect()
}

fn named_default(default: NamedDefault) -> Value {
    match default {
        NamedDefault::Null => Value::Null,
        NamedDefault::DependsOn => {
            let mut entry = Mapping::new();
            entry.insert("condition".into(), "service_started".into());
            entry.insert("required".into(), true.into());
            Value::Mapping(entry)
        }
    }
}

/// Driver options only make sense for their driver: a new driver replaces the whole block.
fn merge_logging(
    base: Value,
    overlay: Value,
    path: &mut Vec<String>,
    ctx: Ctx,
) -> Result<Value, MergeError> {
    let driver = |v: &Value| v.get("driver").cloned();
    let (base_driver, overlay_driver) = (driver(&base), driver(&overlay));
    let same_driver = match (&base_driver, &overlay_driver) {
        (Some(b), Some(o)) => b == o,
        _ => true,
    };
    if same_driver || !matches!(base, Value::Mapping(_)) {
        merge_generic(base, overlay, path, ctx)
    } else {
        Ok(fresh(overlay, ctx))
    }
}

fn build_mapping(value: Value) -> Value {
    match value {
        Value::String(context) => {
            let mut map = Mapping::new();
            map.insert("context".into(), Value::String(context));
            Value::Mapping(map)
        }
        other => other,
    }
}

/// IPAM pools are identified by their subnet: an override pool for a known subnet merges
/// into it, a pool for a new subnet is added.
fn merge_ipam_config(
    base: Value,
    overlay: Value,
    path: &mut Vec<String>,
    ctx: Ctx,
) -> Result<Value, MergeError> {
    let (mut pools, overlay) = match (base, overlay) {
        (Value::Sequence(b), Value::Sequence(o)) => (b, o),
        (b, o) => return merge_generic(b, o, path, ctx),
    };
    for pool in fresh_items(overlay, ctx) {
        let subnet = pool.get("subnet").cloned();
        let known = pools
            .iter()
            .position(|p| p.get("subnet").cloned() == subnet);
        match known.and_then(|at| pools.get_mut(at).map(|slot| (at, slot))) {
            Some((at, slot)) => {
                let existing = std::mem::take(slot);
                path.push(at.to_string());
                let merged = merge_generic(existing, pool, path, ctx);
                path.pop();
                *slot = merged?;
            }
            None => pools.push(pool),
        }
    }
    Ok(Value::Sequence(pools))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml::value::{Tag, TaggedValue};

    fn tagged(tag: &str, value: Value) -> Value {
        Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        }))
    }

    fn y(text: &str) -> Value {
        serde_yaml::from_str(text).expect("test YAML parses")
    }

    fn assert_merge(base: &str, overlay: &str, want: &str) {
        let got = merge(y(base), y(overlay)).expect("merge succeeds");
        assert_eq!(
            got,
            y(want),
            "\ngot:\n{}",
            serde_yaml::to_string(&got).unwrap()
        );
    }

    #[test]
    fn scalars_from_later_files_win() {
        let first = merge(
            y("services: {test: {image: foo, scale: 1}}"),
            y("services: {test: {image: bar}}"),
        )
        .unwrap();
        let second = merge(first, y("services: {test: {scale: 2}}")).unwrap();
        assert_eq!(second, y("services: {test: {image: bar, scale: 2}}"));
    }

    #[test]
    fn command_entrypoint_and_healthcheck_test_are_replaced() {
        assert_merge(
            "services: {web: {command: [a, b], entrypoint: [sh, -c], healthcheck: {test: [CMD, x], interval: 5s}}}",
            "services: {web: {command: [c], entrypoint: [bash], healthcheck: {test: [CMD, y]}}}",
            "services: {web: {command: [c], entrypoint: [bash], healthcheck: {test: [CMD, y], interval: 5s}}}",
        );
    }

    #[test]
    fn environment_merges_by_key_and_null_unsets() {
        assert_merge(
            "services: {web: {environment: {A: '1', B: '2', C: '3'}}}",
            "services: {web: {environment: {B: '20', C: null, D: '4'}}}",
            "services: {web: {environment: {A: '1', B: '20', C: null, D: '4'}}}",
        );
    }

    #[test]
    fn key_value_attributes_accept_the_list_form() {
        assert_merge(
            "services: {test: {build: {context: ., args: {FOO: BAR}}}}",
            "services: {test: {build: {args: [QIX=ZOT, NIL]}}}",
            "services: {test: {build: {context: ., args: {FOO: BAR, QIX: ZOT, NIL: null}}}}",
        );
    }

    #[test]
    fn labels_annotations_sysctls_merge_by_key() {
        assert_merge(
            "services: {web: {labels: {a: '1'}, annotations: {x: '1'}, sysctls: {net.core.somaxconn: 1024}}}",
            "services: {web: {labels: {a: '2', b: '3'}, annotations: {y: '2'}, sysctls: {net.core.somaxconn: 2048}}}",
            "services: {web: {labels: {a: '2', b: '3'}, annotations: {x: '1', y: '2'}, sysctls: {net.core.somaxconn: 2048}}}",
        );
    }

    #[test]
    fn build_args_numbers_are_replaced() {
        assert_merge(
            "services: {test: {build: {context: ., args: {FOO: 1}}}}",
            "services: {test: {build: {context: ., args: {FOO: 3}}}}",
            "services: {test: {build: {context: ., args: {FOO: 3}}}}",
        );
    }

    #[test]
    fn build_string_is_a_context() {
        assert_merge(
            "services: {test: {build: ./app}}",
            "services: {test: {build: {target: prod, tags: ['a:1']}}}",
            "services: {test: {build: {context: ./app, target: prod, tags: ['a:1']}}}",
        );
    }

    #[test]
    fn build_tags_and_platforms_are_unique() {
        assert_merge(
            "services: {test: {build: {context: ., tags: ['myimage:mytag'], platforms: [linux/amd64]}}}",
            "services: {test: {build: {tags: ['myimage:mytag', 'other:tag'], platforms: [linux/arm64, linux/amd64]}}}",
            "services: {test: {build: {context: ., tags: ['myimage:mytag', 'other:tag'], platforms: [linux/amd64, linux/arm64]}}}",
        );
    }

    #[test]
    fn ports_append_and_collapse_identical_bindings() {
        assert_merge(
            r#"
services:
  web:
    ports:
      - {target: 80, published: "8080", protocol: tcp}
      - {target: 443, published: "8443", protocol: tcp}
"#,
            r#"
services:
  web:
    ports:
      - {target: 80, published: "8080", protocol: tcp, mode: host}
      - {target: 9000, published: "9000", protocol: tcp}
"#,
            r#"
services:
  web:
    ports:
      - {target: 80, published: "8080", protocol: tcp, mode: host}
      - {target: 443, published: "8443", protocol: tcp}
      - {target: 9000, published: "9000", protocol: tcp}
"#,
        );
    }

    #[test]
    fn ports_differing_in_protocol_or_host_are_kept() {
        assert_merge(
            "services: {web: {ports: [{target: 53, published: '53', protocol: tcp}]}}",
            "services: {web: {ports: [{target: 53, published: '53', protocol: udp}, {target: 53, published: '53', host_ip: 127.0.0.1}]}}",
            "services: {web: {ports: [{target: 53, published: '53', protocol: tcp}, {target: 53, published: '53', protocol: udp}, {target: 53, published: '53', host_ip: 127.0.0.1}]}}",
        );
    }

    #[test]
    fn volumes_are_unique_by_target() {
        assert_merge(
            r#"
services:
  web:
    volumes:
      - {type: volume, source: data, target: /data}
      - {type: bind, source: ./src, target: /src}
"#,
            r#"
services:
  web:
    volumes:
      - {type: bind, source: ./other, target: /data, read_only: true}
      - {type: tmpfs, target: /tmp}
"#,
            r#"
services:
  web:
    volumes:
      - {type: bind, source: ./other, target: /data, read_only: true}
      - {type: bind, source: ./src, target: /src}
      - {type: tmpfs, target: /tmp}
"#,
        );
    }

    #[test]
    fn volume_without_target_is_an_error_naming_the_entry() {
        let err = merge(
            y("services: {web: {volumes: [{type: volume, source: a, target: /a}]}}"),
            y("services: {web: {volumes: [{type: volume, source: b}]}}"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            MergeError::MissingKey {
                path: "services.web.volumes.1".into(),
                what: "the volume",
                field: "target"
            }
        );
        assert!(err.to_string().contains("services.web.volumes.1"));
    }

    #[test]
    fn devices_are_unique_by_target() {
        assert_merge(
            r#"
services:
  test:
    devices:
      - {source: /dev/sda, target: /dev/sda, permissions: rwm}
      - {source: /dev/sdb, target: /dev/sdb, permissions: rwm}
"#,
            r#"
services:
  test:
    devices:
      - {source: /dev/nvme0n1p1, target: /dev/sda, permissions: rwm}
      - {source: /dev/sde, target: /dev/sde, permissions: rwm}
"#,
            r#"
services:
  test:
    devices:
      - {source: /dev/nvme0n1p1, target: /dev/sda, permissions: rwm}
      - {source: /dev/sdb, target: /dev/sdb, permissions: rwm}
      - {source: /dev/sde, target: /dev/sde, permissions: rwm}
"#,
        );
    }

    #[test]
    fn secrets_and_configs_are_unique_by_target_or_source() {
        assert_merge(
            r#"
services:
  web:
    secrets: [{source: db_pass}, {source: api, target: /etc/api}]
    configs: [{source: nginx, target: /etc/nginx.conf}]
"#,
            r#"
services:
  web:
    secrets: [{source: db_pass, mode: 0400}, {source: api2, target: /etc/api}]
    configs: [{source: nginx2, target: /etc/nginx.conf}, {source: extra}]
"#,
            r#"
services:
  web:
    secrets: [{source: db_pass, mode: 0400}, {source: api2, target: /etc/api}]
    configs: [{source: nginx2, target: /etc/nginx.conf}, {source: extra}]
"#,
        );
    }

    #[test]
    fn secret_with_default_target_matches_explicit_default_path() {
        assert_merge(
            "services: {web: {secrets: [{source: s}]}}",
            "services: {web: {secrets: [{source: other, target: /run/secrets/s}]}}",
            "services: {web: {secrets: [{source: other, target: /run/secrets/s}]}}",
        );
    }

    #[test]
    fn env_files_append_and_are_unique_by_path() {
        assert_merge(
            "services: {test: {env_file: [{path: foo.env, required: true}]}}",
            "services: {test: {env_file: [{path: bar.env, required: true}, {path: foo.env, required: false}]}}",
            "services: {test: {env_file: [{path: foo.env, required: false}, {path: bar.env, required: true}]}}",
        );
    }

    #[test]
    fn string_lists_accept_a_single_string() {
        assert_merge(
            "services: {test: {dns: 8.8.8.8, dns_search: example.com, tmpfs: /run, label_file: a.labels}}",
            "services: {test: {dns: [8.8.8.8, 9.9.9.9], dns_search: [other.com], tmpfs: [/tmp], label_file: [b.labels, a.labels]}}",
            "services: {test: {dns: [8.8.8.8, 9.9.9.9], dns_search: [example.com, other.com], tmpfs: [/run, /tmp], label_file: [a.labels, b.labels]}}",
        );
    }

    #[test]
    fn sequences_append_without_identical_duplicates() {
        assert_merge(
            "services: {test: {image: foo, cap_add: [NET_ADMIN], security_opt: [a], volumes: [{type: volume, source: data, target: /data}]}}",
            "services: {test: {cap_add: [NET_ADMIN, SYS_PTRACE], security_opt: [a, b], volumes: [{type: volume, source: data, target: /data}]}}",
            "services: {test: {image: foo, cap_add: [NET_ADMIN, SYS_PTRACE], security_opt: [a, b], volumes: [{type: volume, source: data, target: /data}]}}",
        );
    }

    #[test]
    fn merging_the_same_override_twice_is_idempotent() {
        let base = y("services: {test: {dns: [8.8.8.8], env_file: [{path: common.env}], extra_hosts: ['host1=127.0.0.1'], ports: [{target: 80, published: '80'}]}}");
        let overlay = y("services: {test: {dns: [9.9.9.9], env_file: [{path: common.env}, {path: test.env}], extra_hosts: ['host1=127.0.0.1', 'host2=127.0.0.2'], ports: [{target: 80, published: '80'}]}}");
        let once = merge(base, overlay.clone()).unwrap();
        let twice = merge(once.clone(), overlay).unwrap();
        assert_eq!(once, twice);
    }

    #[test]
    fn extra_hosts_lists_add_new_entries_only() {
        assert_merge(
            "services: {test: {image: foo, extra_hosts: [example.com=1.2.3.4]}}",
            "services: {test: {extra_hosts: [localhost=127.0.0.1, example.com=1.2.3.4, example.com=4.3.2.1]}}",
            "services: {test: {image: foo, extra_hosts: [example.com=1.2.3.4, localhost=127.0.0.1, example.com=4.3.2.1]}}",
        );
    }

    #[test]
    fn extra_hosts_mappings_collect_addresses_per_host() {
        assert_merge(
            "services: {test: {extra_hosts: {example.com: 1.2.3.4}}}",
            "services: {test: {extra_hosts: {localhost: 127.0.0.1, example.com: [1.2.3.4, 4.3.2.1]}}}",
            "services: {test: {extra_hosts: {example.com: [1.2.3.4, 4.3.2.1], localhost: 127.0.0.1}}}",
        );
    }

    #[test]
    fn extra_hosts_mixed_forms_become_a_list() {
        assert_merge(
            "services: {test: {extra_hosts: {example.com: 1.2.3.4}}}",
            "services: {test: {extra_hosts: [localhost=127.0.0.1, example.com=1.2.3.4]}}",
            "services: {test: {extra_hosts: [example.com=1.2.3.4, localhost=127.0.0.1]}}",
        );
    }

    #[test]
    fn service_networks_merge_by_name_with_unique_aliases() {
        assert_merge(
            r#"
services:
  test:
    networks:
      network1: {aliases: [alias1, alias2], link_local_ips: [57.123.22.11, 57.123.22.13]}
      network2: {aliases: [alias1, alias3]}
"#,
            r#"
services:
  test:
    networks:
      network1: {aliases: [alias3, alias1], link_local_ips: [57.123.22.12, 57.123.22.13]}
      front: null
"#,
            r#"
services:
  test:
    networks:
      network1: {aliases: [alias1, alias2, alias3], link_local_ips: [57.123.22.11, 57.123.22.13, 57.123.22.12]}
      network2: {aliases: [alias1, alias3]}
      front: null
"#,
        );
    }

    #[test]
    fn named_mappings_accept_lists_and_null() {
        assert_merge(
            "services: {test: {image: foo, networks: [front, back], depends_on: [db]}}",
            "services: {test: {networks: null, depends_on: null}}",
            "services: {test: {image: foo, networks: {front: null, back: null}, depends_on: {db: {condition: service_started, required: true}}}}",
        );
        assert_merge(
            "services: {test: {networks: null, depends_on: null}}",
            "services: {test: {networks: [runtime], depends_on: [runtime]}}",
            "services: {test: {networks: {runtime: null}, depends_on: {runtime: {condition: service_started, required: true}}}}",
        );
    }

    #[test]
    fn depends_on_entries_merge() {
        assert_merge(
            "services: {web: {depends_on: {db: {condition: service_started, required: true}}}}",
            "services: {web: {depends_on: {db: {condition: service_healthy}, cache: {condition: service_started, required: false}}}}",
            "services: {web: {depends_on: {db: {condition: service_healthy, required: true}, cache: {condition: service_started, required: false}}}}",
        );
    }

    #[test]
    fn logging_with_same_driver_merges_options() {
        assert_merge(
            "services: {test: {image: foo, logging: {driver: syslog, options: {syslog-address: 'tcp://192.168.0.42:123'}}}}",
            "services: {test: {logging: {driver: syslog, options: {syslog-address: 'tcp://127.0.0.1:123'}}}}",
            "services: {test: {image: foo, logging: {driver: syslog, options: {syslog-address: 'tcp://127.0.0.1:123'}}}}",
        );
    }

    #[test]
    fn logging_with_another_driver_replaces_everything() {
        assert_merge(
            "services: {test: {logging: {driver: local, options: {max-size: 10m}}}}",
            "services: {test: {logging: {driver: syslog, options: {syslog-address: 'tcp://127.0.0.1:123'}}}}",
            "services: {test: {logging: {driver: syslog, options: {syslog-address: 'tcp://127.0.0.1:123'}}}}",
        );
    }

    #[test]
    fn logging_without_driver_merges_options() {
        assert_merge(
            "services: {test: {logging: {options: {max-size: 10m}}}}",
            "services: {test: {logging: {options: {max-file: 3}}}}",
            "services: {test: {logging: {options: {max-size: 10m, max-file: 3}}}}",
        );
    }

    #[test]
    fn ulimits_entries_are_replaced_whole() {
        assert_merge(
            "services: {test: {ulimits: {nofile: {soft: 20000, hard: 40000}, nproc: 65535, locks: {soft: 20000, hard: 40000}, core: 0}}}",
            "services: {test: {ulimits: {nofile: {soft: 10000, hard: 40000}, nproc: {soft: 65535}, locks: {hard: 65535}}}}",
            "services: {test: {ulimits: {nofile: {soft: 10000, hard: 40000}, nproc: {soft: 65535}, locks: {hard: 65535}, core: 0}}}",
        );
    }

    #[test]
    fn deploy_merges_recursively() {
        assert_merge(
            "services: {web: {deploy: {replicas: 2, labels: {a: '1'}, resources: {limits: {cpus: '0.5', memory: 50M}}}}}",
            "services: {web: {deploy: {labels: {b: '2'}, resources: {limits: {memory: 100M}}}}}",
            "services: {web: {deploy: {replicas: 2, labels: {a: '1', b: '2'}, resources: {limits: {cpus: '0.5', memory: 100M}}}}}",
        );
    }

    #[test]
    fn top_level_resources_merge() {
        assert_merge(
            "networks: {front: {driver: bridge, labels: {a: '1'}}}\nvolumes: {data: {driver: local}}\nsecrets: {s: {file: ./a}}\nname: one",
            "networks: {front: {driver_opts: {mtu: '1400'}, labels: {b: '2'}}, back: {}}\nvolumes: {data: {external: true}}\nsecrets: {s: {file: ./b}}\nname: two",
            "networks: {front: {driver: bridge, labels: {a: '1', b: '2'}, driver_opts: {mtu: '1400'}}, back: {}}\nvolumes: {data: {driver: local, external: true}}\nsecrets: {s: {file: ./b}}\nname: two",
        );
    }

    #[test]
    fn ipam_pools_merge_by_subnet() {
        assert_merge(
            "networks: {n: {ipam: {driver: default, config: [{subnet: 10.0.0.0/24, gateway: 10.0.0.1}, {subnet: 10.1.0.0/24}]}}}",
            "networks: {n: {ipam: {config: [{subnet: 10.0.0.0/24, ip_range: 10.0.0.0/25}, {subnet: 10.2.0.0/24}]}}}",
            "networks: {n: {ipam: {driver: default, config: [{subnet: 10.0.0.0/24, gateway: 10.0.0.1, ip_range: 10.0.0.0/25}, {subnet: 10.1.0.0/24}, {subnet: 10.2.0.0/24}]}}}",
        );
    }

    #[test]
    fn extension_keys_merge_recursively() {
        assert_merge(
            "x-common: {a: 1, b: [1]}\nservices: {web: {x-meta: {a: 1}}}",
            "x-common: {b: [2], c: 3}\nservices: {web: {x-meta: {b: 2}}}",
            "x-common: {a: 1, b: [1, 2], c: 3}\nservices: {web: {x-meta: {a: 1, b: 2}}}",
        );
    }

    #[test]
    fn null_override_keeps_the_base_value() {
        assert_merge(
            "services: {web: {image: nginx, ports: [{target: 80}]}}",
            "services: {web: {image: null, ports: null}}",
            "services: {web: {image: nginx, ports: [{target: 80}]}}",
        );
    }

    #[test]
    fn null_command_override_clears_the_command() {
        assert_merge(
            "services: {web: {command: [a]}}",
            "services: {web: {command: null}}",
            "services: {web: {command: null}}",
        );
    }

    #[test]
    fn new_services_are_added() {
        assert_merge(
            "services: {web: {image: a}}",
            "services: {db: {image: b}}",
            "services: {web: {image: a}, db: {image: b}}",
        );
    }

    #[test]
    fn type_clash_names_the_key_path() {
        let err = merge(
            y("services: {web: {security_opt: [a]}}"),
            y("services: {web: {security_opt: {a: b}}}"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            MergeError::TypeMismatch {
                path: "services.web.security_opt".into(),
                base: "sequence",
                overlay: "mapping"
            }
        );
        let err = merge(
            y("services: {web: {deploy: {}}}"),
            y("services: {web: {deploy: 3}}"),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("`services.web.deploy`"),
            "{err}"
        );
    }

    #[test]
    fn non_mapping_documents_are_rejected() {
        let err = merge(y("[1, 2]"), y("services: {}")).unwrap_err();
        assert!(matches!(err, MergeError::NotAMapping { .. }), "{err}");
        assert_eq!(merge(Value::Null, y("name: x")).unwrap(), y("name: x"));
    }

    #[test]
    fn reset_removes_the_key() {
        assert_merge(
            "services: {web: {image: a, ports: [{target: 80}], environment: {A: '1', B: '2'}}}",
            "services: {web: {ports: !reset [], environment: {A: !reset null}}}",
            "services: {web: {image: a, environment: {B: '2'}}}",
        );
    }

    #[test]
    fn reset_of_a_whole_service() {
        assert_merge(
            "services: {web: {image: a}, db: {image: b}}",
            "services: {db: !reset null}",
            "services: {web: {image: a}}",
        );
    }

    #[test]
    fn override_replaces_without_merging() {
        assert_merge(
            "services: {web: {ports: [{target: 80}], environment: {A: '1'}, deploy: {replicas: 2, labels: {a: b}}}}",
            "services: {web: {ports: !override [{target: 81}], environment: !override {B: '2'}, deploy: !override {labels: {c: d}}}}",
            "services: {web: {ports: [{target: 81}], environment: {B: '2'}, deploy: {labels: {c: d}}}}",
        );
    }

    #[test]
    fn tags_never_survive_a_file_merge() {
        let got = merge(
            y("services: {web: {image: a}}"),
            y("services: {db: {image: b, ports: !reset [], labels: !override {a: b}}, web: {cap_add: [!override X, !reset Y]}}"),
        )
        .unwrap();
        assert_eq!(
            got,
            y("services: {web: {image: a, cap_add: [X]}, db: {image: b, labels: {a: b}}}")
        );
    }

    #[test]
    fn resolve_tags_cleans_a_single_file() {
        let mut doc = y("services: {web: {image: a, ports: !reset [], labels: !override {a: b}, dns: [!reset x, y]}}");
        resolve_tags(&mut doc);
        assert_eq!(
            doc,
            y("services: {web: {image: a, labels: {a: b}, dns: [y]}}")
        );
    }

    #[test]
    fn merge_service_merges_and_keeps_override_markers() {
        let base = y("{image: base, ports: [{target: 80}], environment: {A: '1'}, command: [a]}");
        let service =
            y("{ports: [{target: 81}], environment: {B: '2'}, command: [b], labels: !reset {}}");
        let got = merge_service(&base, &service, "services.web").unwrap();
        let mut want = y("{image: base, ports: [{target: 80}, {target: 81}], environment: {A: '1', B: '2'}, command: [b]}");
        if let Value::Mapping(m) = &mut want {
            m.insert(
                "labels".into(),
                tagged(RESET, Value::Mapping(Mapping::new())),
            );
        }
        assert_eq!(got, want);
        // The kept marker is applied to earlier files, then dropped, by the file-level merge.
        let mut services = Mapping::new();
        services.insert("web".into(), got);
        let mut doc = Mapping::new();
        doc.insert("services".into(), Value::Mapping(services));
        let merged = merge(
            y("services: {web: {image: old, labels: {x: y}}}"),
            Value::Mapping(doc),
        )
        .unwrap();
        assert_eq!(
            merged,
            y("services: {web: {image: base, ports: [{target: 80}, {target: 81}], environment: {A: '1', B: '2'}, command: [b]}}")
        );
    }

    #[test]
    fn merge_service_type_clash_names_the_service() {
        let err =
            merge_service(&y("{volumes: []}"), &y("{volumes: {}}"), "services.web").unwrap_err();
        assert!(err.to_string().contains("services.web.volumes"), "{err}");
        let err = merge_service(&y("{image: a}"), &y("[x]"), "services.web").unwrap_err();
        assert!(matches!(err, MergeError::NotAMapping { .. }));
    }

    #[test]
    fn rules_match_whole_paths_only() {
        let path = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            rule_for(&path("services.web.ports")),
            Rule::Unique(Indexer::Port)
        );
        assert_eq!(rule_for(&path("services.web.ports.0")), Rule::Generic);
        assert_eq!(rule_for(&path("x-services.web.command")), Rule::Generic);
    }
}
