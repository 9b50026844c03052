//! Scalar types with Compose's own spelling: durations (`1m30s`), byte sizes (`512m`),
//! and lenient decoders that accept the strings interpolation leaves behind
//! (`"8080"`, `"yes"`) wherever Compose accepts them.

use std::fmt;

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_yaml::Value;

/// Nanoseconds in each unit a Compose duration may use (the `str2duration` set).
const DURATION_UNITS: &[(&str, f64)] = &[
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("μs", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("m", 60e9),
    ("h", 3600e9),
    ("d", 86400e9),
    ("w", 604800e9),
];

/// A length of time, kept in nanoseconds like Go's `time.Duration`, and printed the
/// way Compose prints it (`1m30s`, `500ms`, `2h30m0s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub i64);

impl Duration {
    pub fn from_secs(secs: i64) -> Self {
        Duration(secs.saturating_mul(1_000_000_000))
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    /// The duration as a std `Duration`; negative durations clamp to zero.
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(u64::try_from(self.0).unwrap_or(0))
    }

    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }

    /// Parses `1h30m`, `1.5s`, `500ms`, `2d`, `0`; a bare number other than 0 is an error
    /// because its unit would be a guess.
    pub fn parse(input: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid duration {input:?}: {why}");
        let (negative, mut rest) = match input.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, input.strip_prefix('+').unwrap_or(input)),
        };
        if rest == "0" {
            return Ok(Duration(0));
        }
        if rest.is_empty() {
            return Err(invalid("empty value"));
        }
        let mut total = 0f64;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let (number, after) = rest.split_at(number_len);
            let value: f64 = number.parse().map_err(|_| invalid("expected a number"))?;
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_len);
            if unit.is_empty() {
                return Err(invalid("missing unit (use ns, us, ms, s, m, h, d or w)"));
            }
            let scale = DURATION_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(|| invalid(&format!("unknown unit {unit:?}")))?;
            total += value * scale;
            rest = next;
        }
        if total > i64::MAX as f64 {
            return Err(invalid("too large"));
        }
        let nanos = total.round() as i64;
        Ok(Duration(if negative { -nanos } else { nanos }))
    }
}

impl fmt::Display for Duration {
    /// Go's `time.Duration.String()` layout, which `docker compose config` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let nanos = self.0.unsigned_abs();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < 1_000_000_000 {
            let (scale, unit) = match nanos {
                n if n < 1_000 => (1, "ns"),
                n if n < 1_000_000 => (1_000, "µs"),
                _ => (1_000_000, "ms"),
            };
            return write!(f, "{sign}{}{unit}", decimal(nanos, scale));
        }
        let hours = nanos / 3_600_000_000_000;
        let minutes = (nanos / 60_000_000_000) % 60;
        let seconds = decimal(nanos % 60_000_000_000, 1_000_000_000);
        match (hours, minutes) {
            (0, 0) => write!(f, "{sign}{seconds}s"),
            (0, m) => write!(f, "{sign}{m}m{seconds}s"),
            (h, m) => write!(f, "{sign}{h}h{m}m{seconds}s"),
        }
    }
}

/// `value / scale` written with the fraction's trailing zeros dropped.
fn decimal(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = scale.to_string().len() - 1;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let text = scalar_text(&value).ok_or_else(|| {
            de::Error::custom("invalid duration: expected a string such as \"10s\"")
        })?;
        Duration::parse(&text).map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[-+]?(0|([0-9]+(\\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h|d|w))+)$",
            "description": "A duration such as 10s, 1m30s or 500ms."
        })
    }
}

/// A size in bytes (`mem_limit`, `shm_size`...), written as a number or with a binary
/// unit (`512m`, `1g`, `2kb`) and printed as a decimal string as Compose does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnitBytes(pub i64);

impl UnitBytes {
    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }

    /// Parses the docker `RAMInBytes` forms: digits with an optional fraction, an optional
    /// space, then an optional `k/m/g/t/p` (binary multiples), optional `i`, optional `b`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let invalid = || {
            format!("invalid byte size {input:?}: expected a number with an optional unit b, k, m, g, t or p")
        };
        let text = input.trim();
        if let Ok(n) = text.parse::<i64>() {
            return Ok(UnitBytes(n));
        }
        let number_len = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let suffix = suffix
            .strip_prefix(' ')
            .unwrap_or(suffix)
            .to_ascii_lowercase();
        let (multiplier, rest) = match suffix.chars().next() {
            Some('k') => (1u64 << 10, &suffix[1..]),
            Some('m') => (1u64 << 20, &suffix[1..]),
            Some('g') => (1u64 << 30, &suffix[1..]),
            Some('t') => (1u64 << 40, &suffix[1..]),
            Some('p') => (1u64 << 50, &suffix[1..]),
            _ => (1, suffix.as_str()),
        };
        let rest = rest.strip_prefix('i').unwrap_or(rest);
        if !(rest.is_empty() || rest == "b") {
            return Err(invalid());
        }
        let bytes = value * multiplier as f64;
        if bytes > i64::MAX as f64 {
            return Err(invalid());
        }
        Ok(UnitBytes(bytes as i64))
    }
}

impl fmt::Display for UnitBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for UnitBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UnitBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map(UnitBytes)
                .ok_or_else(|| de::Error::custom(format!("invalid byte size {n}"))),
            Value::String(s) => UnitBytes::parse(&s).map_err(de::Error::custom),
            other => Err(de::Error::custom(format!(
                "invalid byte size {}: expected a number or a string such as \"512m\"",
                describe(&other)
            ))),
        }
    }
}

impl JsonSchema for UnitBytes {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UnitBytes".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "integer"],
            "description": "A size in bytes, as a number or with a unit such as 512m or 1g."
        })
    }
}

/// The text of a scalar the way Go's `fmt.Sprint` would print it; `None` for
/// mappings, sequences and tagged values.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A short description of a value for error messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a sequence".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// Compose's boolean spellings (YAML 1.1 style), used for interpolated strings.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

/// Helpers for `skip_serializing_if`, mirroring Go's `omitempty`.
pub fn is_false(value: &bool) -> bool {
    !*value
}
pub fn is_zero_i64(value: &i64) -> bool {
    *value == 0
}
pub fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}
pub fn is_zero_u32(value: &u32) -> bool {
    *value == 0
}
pub fn is_zero_u16(value: &u16) -> bool {
    *value == 0
}
pub fn is_zero_f32(value: &f32) -> bool {
    *value == 0.0
}
pub fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Decoders for `deserialize_with` that accept what Compose accepts after interpolation:
/// numbers written as strings, booleans written as `"yes"`/`"on"`, scalars where
/// strings are expected, and the list forms of mappings.
pub mod lenient {
    use super::*;

    fn convert<'de, D, T>(d: D, what: &str, f: impl Fn(&Value) -> Option<T>) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
    {
        let value = Value::deserialize(d)?;
        f(&value).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid type: expected {what}, got {}",
                describe(&value)
            ))
        })
    }

    fn to_bool(value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => parse_bool(s),
            _ => None,
        }
    }

    fn to_i64(value: &Value) -> Option<i64> {
        match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn to_f64(value: &Value) -> Option<f64> {
        match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        convert(d, "a boolean", to_bool)
    }

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        convert(d, "a boolean", |v| match v {
            Value::Null => Some(None),
            other => to_bool(other).map(Some),
        })
    }

    pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        convert(d, "an integer", to_i64)
    }

    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        convert(d, "an integer", |v| match v {
            Value::Null => Some(None),
            other => to_i64(other).map(Some),
        })
    }

    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        convert(d, "a non-negative integer", |v| {
            to_i64(v).and_then(|n| u64::try_from(n).ok())
        })
    }

    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        convert(d, "a non-negative integer", |v| match v {
            Value::Null => Some(None),
            other => to_i64(other).and_then(|n| u64::try_from(n).ok()).map(Some),
        })
    }

    pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        convert(d, "a non-negative integer", |v| {
            to_i64(v).and_then(|n| u32::try_from(n).ok())
        })
    }

    pub fn u16<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        convert(d, "an integer between 0 and 65535", |v| {
            to_i64(v).and_then(|n| u16::try_from(n).ok())
        })
    }

    pub fn f32<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        convert(d, "a number", |v| to_f64(v).map(|f| f as f32))
    }

    /// Any scalar as text (`published: 8080` → `"8080"`); null becomes empty.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        convert(d, "a string", |v| match v {
            Value::Null => Some(String::new()),
            other => scalar_text(other),
        })
    }

    /// A string or a list of scalars (`dns: 8.8.8.8` or `dns: [8.8.8.8]`).
    pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        convert(d, "a string or a list of strings", |v| match v {
            Value::Null => Some(Vec::new()),
            Value::Sequence(items) => items.iter().map(scalar_text).collect(),
            other => scalar_text(other).map(|s| vec![s]),
        })
    }

    /// A string mapping (labels, sysctls, driver options): values may be any scalar
    /// (null is the empty string); the `KEY=VALUE` list form is accepted too.
    pub fn string_map<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<IndexMap<String, String>, D::Error> {
        let entries = convert(d, "a mapping or a list of KEY=VALUE strings", |v| {
            key_values(v, '=')
        })?;
        Ok(entries
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect())
    }

    /// A mapping whose values may be unset (`environment`, `build.args`): null or a bare
    /// `KEY` in list form stays `None`, while `KEY=` is the empty string.
    pub fn opt_string_map<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<IndexMap<String, Option<String>>, D::Error> {
        convert(d, "a mapping or a list of KEY=VALUE strings", |v| {
            key_values(v, '=')
        })
    }

    /// Entries of a mapping, or of a list of `KEY<sep>VALUE` strings.
    pub fn key_values(value: &Value, sep: char) -> Option<IndexMap<String, Option<String>>> {
        match value {
            Value::Null => Some(IndexMap::new()),
            Value::Mapping(map) => map
                .iter()
                .map(|(k, v)| {
                    let key = scalar_text(k)?;
                    let val = match v {
                        Value::Null => None,
                        other => Some(scalar_text(other)?),
                    };
                    Some((key, val))
                })
                .collect(),
            Value::Sequence(items) => items
                .iter()
                .map(|item| {
                    let text = scalar_text(item)?;
                    Some(match text.split_once(sep) {
                        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                        None => (text, None),
                    })
                })
                .collect(),
            _ => None,
        }
    }
}

/// Schemas for fields whose written form is wider than their decoded type.
pub mod schema {
    use super::*;

    pub fn bool_or_string(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["boolean", "string"]})
    }
    pub fn integer_or_string(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["integer", "string"]})
    }
    pub fn number_or_string(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["number", "string"]})
    }
    pub fn string_or_number(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "number"]})
    }
    pub fn string_or_list(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}}
            ]
        })
    }
    pub fn list_of_string_or_number(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "array", "items": {"type": ["string", "number"]}})
    }
    /// Compose's `list_or_dict`: a mapping of scalars, or a list of `KEY=VALUE`.
    pub fn list_or_dict(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                {
                    "type": "object",
                    "patternProperties": {
                        ".+": {"type": ["string", "number", "boolean", "null"]}
                    },
                    "additionalProperties": false
                },
                {"type": "array", "items": {"type": "string"}, "uniqueItems": true}
            ]
        })
    }
    /// A command: a shell string, an exec-form list, or null.
    pub fn command(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                {"type": "null"},
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}}
            ]
        })
    }
}

/// Maps print with sorted keys, as `docker compose config` prints them (Go maps have no
/// order); the model itself keeps file order for everything else.
pub fn sorted<S, V>(map: &IndexMap<String, V>, serializer: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    V: Serialize,
{
    use serde::ser::SerializeMap;
    let mut entries: Vec<(&String, &V)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = serializer.serialize_map(Some(entries.len()))?;
    for (key, value) in entries {
        out.serialize_entry(key, value)?;
    }
    out.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration((s * 1e9) as i64)
    }

    #[test]
    fn durations_parse_compose_spellings() {
        assert_eq!(Duration::parse("10s"), Ok(secs(10.0)));
        assert_eq!(Duration::parse("1m30s"), Ok(secs(90.0)));
        assert_eq!(Duration::parse("1.5s"), Ok(secs(1.5)));
        assert_eq!(Duration::parse("500ms"), Ok(secs(0.5)));
        assert_eq!(Duration::parse("1h"), Ok(secs(3600.0)));
        assert_eq!(Duration::parse("2h30m"), Ok(secs(9000.0)));
        assert_eq!(Duration::parse("1d"), Ok(secs(86400.0)));
        assert_eq!(Duration::parse("0"), Ok(Duration(0)));
        assert_eq!(Duration::parse("-5s"), Ok(secs(-5.0)));
    }

    #[test]
    fn bad_durations_quote_the_value() {
        for bad in ["", "10", "abc", "10x", "1.2.3s", "s"] {
            let err = Duration::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(secs(90.0).to_string(), "1m30s");
        assert_eq!(secs(10.0).to_string(), "10s");
        assert_eq!(secs(1.5).to_string(), "1.5s");
        assert_eq!(secs(0.5).to_string(), "500ms");
        assert_eq!(secs(3600.0).to_string(), "1h0m0s");
        assert_eq!(secs(9000.0).to_string(), "2h30m0s");
        assert_eq!(Duration(0).to_string(), "0s");
        assert_eq!(Duration(1500).to_string(), "1.5µs");
        assert_eq!(Duration(42).to_string(), "42ns");
        assert_eq!(secs(-5.0).to_string(), "-5s");
    }

    #[test]
    fn byte_sizes_parse_docker_units() {
        assert_eq!(UnitBytes::parse("1024"), Ok(UnitBytes(1024)));
        assert_eq!(UnitBytes::parse("512m"), Ok(UnitBytes(512 << 20)));
        assert_eq!(UnitBytes::parse("1g"), Ok(UnitBytes(1 << 30)));
        assert_eq!(UnitBytes::parse("1GB"), Ok(UnitBytes(1 << 30)));
        assert_eq!(UnitBytes::parse("2kb"), Ok(UnitBytes(2048)));
        assert_eq!(UnitBytes::parse("1.5k"), Ok(UnitBytes(1536)));
        assert_eq!(UnitBytes::parse("64 MiB"), Ok(UnitBytes(64 << 20)));
        assert_eq!(UnitBytes::parse("-1"), Ok(UnitBytes(-1)));
    }

    #[test]
    fn bad_byte_sizes_quote_the_value() {
        for bad in ["", "abc", "12q", "1gg", "m"] {
            let err = UnitBytes::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn byte_sizes_serialize_as_decimal_strings() {
        let yaml = serde_yaml::to_string(&UnitBytes(536870912)).unwrap();
        assert_eq!(yaml.trim(), "'536870912'");
        assert_eq!(serde_json::to_string(&UnitBytes(1024)).unwrap(), "\"1024\"");
        let back: UnitBytes = serde_yaml::from_str("'536870912'").unwrap();
        assert_eq!(back, UnitBytes(536870912));
        let from_number: UnitBytes = serde_yaml::from_str("2048").unwrap();
        assert_eq!(from_number, UnitBytes(2048));
    }

    #[test]
    fn booleans_accept_compose_spellings() {
        for t in ["yes", "on", "true", "Y", "TRUE"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["no", "off", "false", "N"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }
}
