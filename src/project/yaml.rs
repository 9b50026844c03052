//! Load stage `yaml`: the text of one Compose file becomes its YAML documents.
//!
//! Each document is built by one pass over serde_yaml's event stream with a visitor
//! that, while it builds the tree:
//! - resolves anchors and aliases (serde_yaml replays them) under a node budget, so an
//!   alias bomb fails fast with bounded memory instead of expanding;
//! - applies `<<` merge keys bottom-up, so chained merges work;
//! - turns scalar mapping keys into strings and rejects null, complex and duplicate keys;
//! - keeps `!reset` and `!override` as [`Value::Tagged`] for the merge stage and rejects
//!   every other local tag.
//!
//! Doing the checks in the visitor lets every error carry the line of the offending node.

use std::collections::HashSet;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Number, Value};
use thiserror::Error;

/// The largest Compose file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;

/// Nodes a file may expand to on top of its own size in bytes (a file without aliases
/// never has more nodes than bytes); aliases get this much room to repeat content.
pub const ALIAS_EXPANSION_ALLOWANCE: usize = 500_000;

/// The tags the merge stage understands.
pub const ALLOWED_TAGS: [&str; 2] = ["reset", "override"];

const MERGE_KEY: &str = "<<";

/// What went wrong; see [`YamlError`] for where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum YamlErrorKind {
    #[error("the file is {size} bytes, more than the {limit} bytes a Compose file may have")]
    FileTooLarge { size: usize, limit: usize },
    #[error("tabs are not allowed for indentation; indent with spaces")]
    TabIndentation,
    #[error("bad indentation: {detail}; check that keys of the same mapping line up")]
    BadIndentation { detail: String },
    #[error("a quoted string is never closed (missing closing quote)")]
    UnclosedQuote,
    #[error("invalid YAML: {detail}")]
    Syntax { detail: String },
    #[error("duplicate key {key:?}{}", in_path(path))]
    DuplicateKey { key: String, path: String },
    #[error(
        "mapping keys must be strings, numbers or booleans, found {found}{}",
        in_path(path)
    )]
    InvalidKey { found: &'static str, path: String },
    #[error(
        "unknown tag !{tag}{}; only !reset and !override are supported",
        in_path(path)
    )]
    UnknownTag { tag: String, path: String },
    #[error(
        "the merge key << expects a mapping or a list of mappings, found {found}{}",
        in_path(path)
    )]
    InvalidMerge { found: &'static str, path: String },
    #[error("a Compose file must be a mapping at the top level, found {found}")]
    TopLevelNotMapping { found: &'static str },
    #[error("excessive aliasing: anchors and aliases expand to more than {limit} nodes")]
    ExcessiveAliasing { limit: usize },
    #[error("an alias refers to an anchor that is not defined before it")]
    UnknownAnchor,
    #[error("nesting is too deep (more than 128 levels)")]
    TooDeep,
}

fn in_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" in {path}")
    }
}

/// A YAML error with its 1-based position when known.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct YamlError {
    pub kind: YamlErrorKind,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: {}", self.kind),
            (Some(line), None) => write!(f, "line {line}: {}", self.kind),
            _ => write!(f, "{}", self.kind),
        }
    }
}

impl YamlError {
    fn without_position(kind: YamlErrorKind) -> Self {
        Self {
            kind,
            line: None,
            column: None,
        }
    }

    /// 1-based line of the problem, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// 1-based column of the problem, when known.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// The message without the position.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

/// The value under any `!reset`/`!override` tags: they wrap values until the merge stage
/// removes them, and the stages before it look through them.
pub fn untagged(value: &mut Value) -> &mut Value {
    match value {
        Value::Tagged(tagged) => untagged(&mut tagged.value),
        other => other,
    }
}

/// Parses every document of `text` in order, skipping empty ones.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, YamlError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(YamlError::without_position(YamlErrorKind::FileTooLarge {
            size: text.len(),
            limit: MAX_FILE_BYTES,
        }));
    }
    let mut state = State::new(text.len().saturating_add(ALIAS_EXPANSION_ALLOWANCE));
    let mut documents = Vec::new();
    // serde_yaml keeps yielding the same error after a failure: stop at the first one.
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Builder::top_level(&mut state)
            .deserialize(document)
            .map_err(|err| convert_error(err, &mut state, text))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// Shared by every visitor of one file.
struct State {
    nodes: usize,
    node_limit: usize,
    /// Key path of the node being built, for messages.
    path: Vec<String>,
    /// The structured reason behind the last custom serde error.
    failure: Option<YamlErrorKind>,
}

impl State {
    fn new(node_limit: usize) -> Self {
        Self {
            nodes: 0,
            node_limit,
            path: Vec::new(),
            failure: None,
        }
    }

    fn path(&self) -> String {
        self.path.join(".")
    }

    /// Records `kind` and returns the serde error that carries it out (serde_yaml adds
    /// the position of the node being read).
    fn fail<E: de::Error>(&mut self, kind: YamlErrorKind) -> E {
        let message = kind.to_string();
        self.failure = Some(kind);
        E::custom(message)
    }

    fn count_node<E: de::Error>(&mut self) -> Result<(), E> {
        self.nodes += 1;
        if self.nodes > self.node_limit {
            let limit = self.node_limit;
            return Err(self.fail(YamlErrorKind::ExcessiveAliasing { limit }));
        }
        Ok(())
    }
}

fn convert_error(err: serde_yaml::Error, state: &mut State, text: &str) -> YamlError {
    let location = err.location();
    let mut line = location.as_ref().map(|l| l.line());
    let mut column = location.as_ref().map(|l| l.column());
    let kind = match state.failure.take() {
        Some(kind) => kind,
        None => classify_serde_error(&err.to_string(), line, column, text, state.node_limit),
    };
    if let YamlErrorKind::UnclosedQuote = kind {
        // Point at the opening quote rather than at the end of the file.
        if let Some((l, c)) = quote_start(&err.to_string()) {
            line = Some(l);
            column = Some(c);
        }
    }
    if matches!(kind, YamlErrorKind::TabIndentation) {
        column = None;
    }
    YamlError { kind, line, column }
}

fn classify_serde_error(
    message: &str,
    line: Option<usize>,
    column: Option<usize>,
    text: &str,
    node_limit: usize,
) -> YamlErrorKind {
    if message.starts_with("recursion limit exceeded") {
        return YamlErrorKind::TooDeep;
    }
    if message.starts_with("repetition limit exceeded") {
        return YamlErrorKind::ExcessiveAliasing { limit: node_limit };
    }
    if message.starts_with("unknown anchor") {
        return YamlErrorKind::UnknownAnchor;
    }
    if line.is_some_and(|l| indented_with_tab(text, l)) {
        return YamlErrorKind::TabIndentation;
    }
    if message.contains("while scanning a quoted scalar") {
        return YamlErrorKind::UnclosedQuote;
    }
    let detail = strip_position(message, line, column);
    let indentation_problems = [
        "did not find expected key",
        "mapping values are not allowed in this context",
        "did not find expected '-' indicator",
        "block sequence entries are not allowed in this context",
    ];
    if indentation_problems.iter().any(|p| message.starts_with(p)) {
        YamlErrorKind::BadIndentation { detail }
    } else {
        YamlErrorKind::Syntax { detail }
    }
}

/// Whether the leading whitespace of 1-based `line` holds a tab.
fn indented_with_tab(text: &str, line: usize) -> bool {
    text.lines().nth(line.saturating_sub(1)).is_some_and(|l| {
        l.chars()
            .take_while(|c| c.is_whitespace())
            .any(|c| c == '\t')
    })
}

/// libyaml repeats the problem position in its message; the error carries it already.
fn strip_position(message: &str, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => message.replacen(&format!(" at line {l} column {c}"), "", 1),
        _ => message.to_owned(),
    }
}

/// The `line L column C` libyaml gives for the start of an unclosed quoted scalar.
fn quote_start(message: &str) -> Option<(usize, usize)> {
    let (_, after) = message.split_once("while scanning a quoted scalar at line ")?;
    let (line, rest) = after.split_once(" column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.parse().ok()?, column.parse().ok()?))
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Builds one node (and everything below it) as a [`Value`].
struct Builder<'s> {
    state: &'s mut State,
    /// The document root, which must be a mapping (or empty).
    top_level: bool,
}

impl<'s> Builder<'s> {
    fn top_level(state: &'s mut State) -> Self {
        Self {
            state,
            top_level: true,
        }
    }

    fn child(state: &mut State) -> Builder<'_> {
        Builder {
            state,
            top_level: false,
        }
    }

    /// A finished non-mapping node: fine anywhere but at the top.
    fn finish<E: de::Error>(self, value: Value) -> Result<Value, E> {
        self.state.count_node()?;
        if self.top_level && !value.is_null() {
            let found = describe(&value);
            return Err(self.state.fail(YamlErrorKind::TopLevelNotMapping { found }));
        }
        Ok(value)
    }
}

impl<'de> DeserializeSeed<'de> for Builder<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Builder<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.finish(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.finish(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.finish(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.finish(Value::Number(v.into()))
    }

    // Integers past 64 bits become floats, as Compose's YAML library reads them.
    #[allow(clippy::cast_precision_loss)]
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        self.finish(Value::Number((v as f64).into()))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        self.finish(Value::Number((v as f64).into()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.finish(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.finish(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.finish(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.finish(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.state.count_node()?;
        if self.top_level {
            let found = "a sequence";
            return Err(self.state.fail(YamlErrorKind::TopLevelNotMapping { found }));
        }
        let mut items = Vec::new();
        loop {
            self.state.path.push(items.len().to_string());
            let item = seq.next_element_seed(Builder::child(self.state));
            self.state.path.pop();
            match item? {
                Some(item) => items.push(item),
                None => break,
            }
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.state.count_node()?;
        let mut entries = Mapping::new();
        while let Some(key) = map.next_key_seed(KeySeed {
            state: self.state,
            seen: &entries,
        })? {
            self.state.path.push(key.clone());
            let value = map.next_value_seed(Builder::child(self.state));
            self.state.path.pop();
            entries.insert(Value::String(key), value?);
        }
        apply_merge_key(entries, self.state).map(Value::Mapping)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, content) = data.variant::<String>()?;
        if !ALLOWED_TAGS.contains(&tag.as_str()) {
            let path = self.state.path();
            return Err(self.state.fail(YamlErrorKind::UnknownTag { tag, path }));
        }
        let value = content.newtype_variant_seed(Builder::child(self.state))?;
        self.finish(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

/// Replaces a `<<` entry by the entries of the mapping(s) it names, at its position.
/// Keys written in the mapping win over merged ones, and earlier mappings of a merge
/// list win over later ones (YAML merge-key spec).
fn apply_merge_key<E: de::Error>(entries: Mapping, state: &mut State) -> Result<Mapping, E> {
    if !entries.contains_key(MERGE_KEY) {
        return Ok(entries);
    }
    let explicit: HashSet<Value> = entries
        .keys()
        .filter(|k| k.as_str() != Some(MERGE_KEY))
        .cloned()
        .collect();
    let mut merged = Mapping::with_capacity(entries.len());
    for (key, value) in entries {
        if key.as_str() != Some(MERGE_KEY) {
            merged.insert(key, value);
            continue;
        }
        for source in merge_sources(value, state)? {
            for (k, v) in source {
                if !explicit.contains(&k) && !merged.contains_key(&k) {
                    merged.insert(k, v);
                }
            }
        }
    }
    Ok(merged)
}

fn merge_sources<E: de::Error>(value: Value, state: &mut State) -> Result<Vec<Mapping>, E> {
    let invalid = |found: &'static str, state: &mut State| {
        let path = state.path();
        state.fail(YamlErrorKind::InvalidMerge { found, path })
    };
    match value {
        Value::Mapping(mapping) => Ok(vec![mapping]),
        Value::Sequence(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Mapping(mapping) => Ok(mapping),
                other => Err(invalid(describe(&other), state)),
            })
            .collect(),
        other => Err(invalid(describe(&other), state)),
    }
}

/// Reads a mapping key as a string, refusing null, complex and duplicate keys.
struct KeySeed<'s, 'm> {
    state: &'s mut State,
    seen: &'m Mapping,
}

impl KeySeed<'_, '_> {
    fn accept<E: de::Error>(self, key: String) -> Result<String, E> {
        self.state.count_node()?;
        if self.seen.contains_key(key.as_str()) {
            let path = self.state.path();
            return Err(self.state.fail(YamlErrorKind::DuplicateKey { key, path }));
        }
        Ok(key)
    }

    fn reject<E: de::Error>(self, found: &'static str) -> E {
        let path = self.state.path();
        self.state.fail(YamlErrorKind::InvalidKey { found, path })
    }
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.accept(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.accept(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.accept(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.accept(Number::from(v).to_string())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<String, E> {
        self.accept(v.to_string())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<String, E> {
        self.accept(v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.accept(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.accept(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(self.reject("a null key"))
    }

    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Err(self.reject("a null key"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<String, A::Error> {
        Err(self.reject("a sequence"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<String, A::Error> {
        Err(self.reject("a mapping"))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, _data: A) -> Result<String, A::Error> {
        Err(self.reject("a tagged value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(text: &str) -> Vec<Value> {
        parse_documents(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn one(text: &str) -> Value {
        let mut all = docs(text);
        assert_eq!(all.len(), 1, "{text:?}");
        all.remove(0)
    }

    fn err(text: &str) -> YamlError {
        parse_documents(text).expect_err(text)
    }

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn reads_every_document_in_order_and_skips_empty_ones() {
        assert!(docs("").is_empty());
        assert!(docs("# only a comment\n").is_empty());
        assert!(docs("---\n---\n").is_empty());
        let all = docs("services: {a: {}}\n---\n---\nservices: {b: {}}\n...\n");
        assert_eq!(
            all,
            vec![yaml("services: {a: {}}"), yaml("services: {b: {}}")]
        );
    }

    #[test]
    fn plain_documents_read_as_serde_yaml_reads_them() {
        let text = "services:\n  web:\n    image: \"nginx:1.27\"\n    ports: [80, '443', 8080.5]\n    \
                    hex: 0x1F\n    nan: .nan\n    neg: -12\n    \
                    flag: true\n    none: ~\n    empty:\n    ? bare\n    text: |\n      line one\n      \
                    \tline two\n    folded: >-\n      a\n      b\n    quoted: 'it''s'\n    \
                    str: !!str 0123\n    ünï: ✓\n";
        assert_eq!(one(text), yaml(text));
        // Past 64 bits serde_yaml gives up; read such integers as floats instead.
        let big = one("big: 99999999999999999999999\n99999999999999999999999: key\n");
        assert_eq!(big["big"], Value::Number(1e23.into()));
        assert!(big.get("99999999999999999999999").is_some());
    }

    #[test]
    fn resolves_anchors_and_aliases() {
        let doc =
            one("x-img: &img nginx:1.27\nservices:\n  a: {image: *img}\n  b: {image: *img}\n");
        assert_eq!(
            doc["services"]["a"]["image"],
            Value::String("nginx:1.27".into())
        );
        assert_eq!(
            doc["services"]["b"]["image"],
            Value::String("nginx:1.27".into())
        );
    }

    #[test]
    fn applies_merge_keys_everywhere() {
        let cases: &[(&str, &str)] = &[
            // Single alias; explicit keys win.
            (
                "base: &b {image: a, restart: always}\nweb:\n  <<: *b\n  image: mine\n",
                "base: {image: a, restart: always}\nweb: {image: mine, restart: always}\n",
            ),
            // Explicit keys win even when written before the merge.
            (
                "base: &b {image: a}\nweb:\n  image: mine\n  <<: *b\n",
                "base: {image: a}\nweb: {image: mine}\n",
            ),
            // A list: earlier mappings win over later ones.
            (
                "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n",
                "a: {x: 1}\nb: {x: 2, y: 2}\nc: {x: 1, y: 2}\n",
            ),
            // Deep in the tree and chained through another merge.
            (
                "x-base: &base {restart: always}\nx-mid: &mid\n  <<: *base\n  init: true\n\
                 services:\n  web:\n    deploy:\n      <<: *mid\n      replicas: 2\n",
                "x-base: {restart: always}\nx-mid: {restart: always, init: true}\n\
                 services: {web: {deploy: {restart: always, init: true, replicas: 2}}}\n",
            ),
            // Inline mapping and merge inside a sequence item.
            (
                "list:\n  - <<: {a: 1}\n    b: 2\n",
                "list: [{a: 1, b: 2}]\n",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(one(input), yaml(expected), "{input}");
        }
        // Merged keys take the place of `<<`.
        let doc = one("b: &b {m: 1}\nc:\n  first: 0\n  <<: *b\n  last: 2\n");
        let keys: Vec<_> = doc["c"].as_mapping().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            vec![Value::from("first"), Value::from("m"), Value::from("last")]
        );
    }

    #[test]
    fn invalid_merge_values_are_errors() {
        for input in [
            "a:\n  <<: 5\n",
            "a:\n  <<: [{x: 1}, [1]]\n",
            "a:\n  <<: ~\n",
        ] {
            let e = err(input);
            assert!(
                matches!(e.kind, YamlErrorKind::InvalidMerge { .. }),
                "{input}: {e}"
            );
            assert!(e.to_string().contains("in a"), "{e}");
            assert_eq!(e.line(), Some(2), "{input}");
        }
    }

    #[test]
    fn keeps_reset_and_override_tags() {
        let doc = one(
            "services:\n  web:\n    ports: !reset []\n    environment: !override\n      A: 1\n",
        );
        let Value::Tagged(ports) = &doc["services"]["web"]["ports"] else {
            panic!("ports lost its tag: {doc:?}");
        };
        assert!(ports.tag == "!reset");
        assert_eq!(ports.value, Value::Sequence(vec![]));
        let Value::Tagged(env) = &doc["services"]["web"]["environment"] else {
            panic!("environment lost its tag");
        };
        assert!(env.tag == "override");
        assert_eq!(env.value, yaml("A: 1"));
        // Core-schema tags are plain YAML, not custom tags.
        assert_eq!(one("a: !!str 12\n")["a"], Value::String("12".into()));
    }

    #[test]
    fn unknown_tags_are_errors_naming_the_tag() {
        let e = err("services:\n  web:\n    image: !secret x\n");
        assert_eq!(
            e.kind,
            YamlErrorKind::UnknownTag {
                tag: "secret".into(),
                path: "services.web.image".into()
            }
        );
        assert!(e.to_string().contains("!secret"), "{e}");
        assert_eq!(e.line(), Some(3));
    }

    #[test]
    fn scalar_keys_become_strings() {
        let doc = one("8080: a\ntrue: b\n1.5: c\n-3: d\nname: e\n");
        let keys: Vec<_> = doc.as_mapping().unwrap().keys().cloned().collect();
        let expected: Vec<Value> = ["8080", "true", "1.5", "-3", "name"]
            .map(Value::from)
            .to_vec();
        assert_eq!(keys, expected);
    }

    #[test]
    fn null_complex_and_duplicate_keys_are_errors() {
        let cases: &[(&str, usize)] = &[
            ("a: 1\n~: 2\n", 2),
            ("a:\n  ? [x]\n  : 2\n", 2),
            ("a:\n  ? {x: 1}\n  : 2\n", 2),
            ("a:\n  !reset k: 2\n", 2),
        ];
        for (input, line) in cases {
            let e = err(input);
            assert!(
                matches!(e.kind, YamlErrorKind::InvalidKey { .. }),
                "{input}: {e}"
            );
            assert_eq!(e.line(), Some(*line), "{input}");
        }
        let e = err("services:\n  web:\n    image: a\n    ports: []\n    image: b\n");
        assert_eq!(e.line(), Some(5));
        assert!(e.to_string().contains("duplicate key \"image\""), "{e}");
        assert!(e.to_string().contains("services.web"), "{e}");
        // Keys that only collide once they are strings collide too.
        let e = err("1: a\n\"1\": b\n");
        assert!(e.to_string().contains("duplicate key \"1\""), "{e}");
    }

    #[test]
    fn the_top_level_must_be_a_mapping() {
        for (input, found) in [
            ("- a\n- b\n", "a sequence"),
            ("hello\n", "a string"),
            ("!reset {}\n", "a tagged value"),
        ] {
            let e = err(input);
            assert_eq!(
                e.kind,
                YamlErrorKind::TopLevelNotMapping { found },
                "{input}"
            );
            assert_eq!(e.line(), Some(1));
        }
        let e = err("a: 1\n---\n- 2\n");
        assert_eq!(e.line(), Some(3));
    }

    #[test]
    fn tabs_in_indentation_are_reported_as_such() {
        let e = err("services:\n  web:\n\timage: nginx\n");
        assert_eq!(e.kind, YamlErrorKind::TabIndentation);
        assert_eq!(e.line(), Some(3));
        assert!(
            e.to_string()
                .contains("tabs are not allowed for indentation"),
            "{e}"
        );
        assert!(e.to_string().contains("line 3"), "{e}");
    }

    #[test]
    fn bad_indentation_is_reported_with_its_line() {
        let e = err("services:\n  web:\n    image: x\n   ports: []\n");
        assert!(
            matches!(e.kind, YamlErrorKind::BadIndentation { .. }),
            "{e}"
        );
        assert_eq!(e.line(), Some(4));
        let e = err("services:\n  web:\n  image: x\n    ports: []\n");
        assert!(
            matches!(e.kind, YamlErrorKind::BadIndentation { .. }),
            "{e}"
        );
        assert_eq!(e.line(), Some(4));
    }

    #[test]
    fn unclosed_quotes_point_at_the_opening_quote() {
        for input in ["a: 1\nb: \"abc\nc: 1\n", "a: 1\nb: 'abc\nc: 1\n"] {
            let e = err(input);
            assert_eq!(e.kind, YamlErrorKind::UnclosedQuote, "{input}");
            assert_eq!((e.line(), e.column()), (Some(2), Some(4)), "{input}");
        }
    }

    #[test]
    fn other_syntax_errors_keep_the_parser_detail() {
        let e = err("a: [1, 2\nb: 3\n");
        assert!(matches!(e.kind, YamlErrorKind::Syntax { .. }), "{e}");
        assert!(e.line().is_some());
        let e = err("a: *nowhere\n");
        assert_eq!(e.kind, YamlErrorKind::UnknownAnchor);
        assert_eq!(e.line(), Some(1));
    }

    #[test]
    fn billion_laughs_fails_fast() {
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for level in 1..10 {
            let prev = (b'a' + level - 1) as char;
            let this = (b'a' + level) as char;
            let refs = vec![format!("*{prev}"); 9].join(",");
            bomb.push_str(&format!("{this}: &{this} [{refs}]\n"));
        }
        let e = err(&bomb);
        assert!(e.to_string().contains("excessive aliasing"), "{e}");
    }

    #[test]
    fn wide_alias_expansion_fails_on_the_node_budget() {
        // Few aliases, each replaying a wide anchor: serde_yaml's own repetition check
        // counts jumps, not nodes, so this is caught by the node budget.
        let wide = vec!["x"; 2_000].join(",");
        let refs = vec!["*a"; 2_000].join(",");
        let text = format!("a: &a [{wide}]\nb: &b [{refs}]\nc: [*b, *b, *b]\n");
        let start = std::time::Instant::now();
        let e = err(&text);
        assert!(e.to_string().contains("excessive aliasing"), "{e}");
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn too_deep_nesting_is_an_error() {
        let text = format!("a: {}{}\n", "[".repeat(300), "]".repeat(300));
        let e = err(&text);
        assert_eq!(e.kind, YamlErrorKind::TooDeep);
        assert_eq!(e.line(), Some(1));
        let fine = format!("a: {}{}\n", "[".repeat(50), "]".repeat(50));
        assert_eq!(docs(&fine).len(), 1);
    }

    #[test]
    fn oversized_files_are_refused_before_parsing() {
        let text = "#".repeat(MAX_FILE_BYTES + 1);
        let e = err(&text);
        assert!(matches!(e.kind, YamlErrorKind::FileTooLarge { .. }), "{e}");
        assert_eq!(e.line(), None);
    }
}
