//! A YAML writer that prints documents the way Docker Compose v2 does (Go's yaml.v3 with
//! two-space indentation): block style, sequences indented under their key, strings quoted
//! only when a plain scalar would read back as something else, `|-` blocks for multi-line
//! text. serde_yaml's emitter differs on each of these points.

use std::fmt::Write;

use serde_json::Value;

/// Renders a JSON-shaped value (what the model serializes to) as a YAML document.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_sequence(&mut out, items, 0),
        scalar => {
            out.push_str(&inline(scalar, 0));
            out.push('\n');
        }
    }
    out
}

fn write_mapping(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        pad(out, indent);
        out.push_str(&scalar_string(key));
        out.push(':');
        write_nested(out, value, indent + 2);
    }
}

fn write_sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first key shares the dash's line, as yaml.v3 prints it.
                let mut nested = String::new();
                write_mapping(&mut nested, map, indent + 2);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_sequence(out, inner, indent + 2);
            }
            scalar => {
                out.push(' ');
                out.push_str(&inline(scalar, indent + 2));
                out.push('\n');
            }
        }
    }
}

/// The value after `key:` — on the same line for scalars and empty collections.
fn write_nested(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_mapping(out, map, indent);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_sequence(out, items, indent);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar, indent));
            out.push('\n');
        }
    }
}

fn inline(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.contains('\n') && literal_block_ok(s) => literal_block(s, indent),
        Value::String(s) => scalar_string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// `|-` keeps text verbatim when it has no trailing newline and no leading or trailing
/// spaces on a line that the block form would lose.
fn literal_block_ok(s: &str) -> bool {
    !s.ends_with('\n')
        && !s.starts_with(' ')
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        && !s.lines().any(|l| l.ends_with(' '))
}

fn literal_block(s: &str, indent: usize) -> String {
    let mut out = String::from("|-");
    for line in s.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(&mut out, indent);
            out.push_str(line);
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A string as a plain scalar when YAML would read it back as the same string, otherwise
/// double-quoted.
pub fn scalar_string(s: &str) -> String {
    if needs_quotes(s) {
        quoted(s)
    } else {
        s.to_string()
    }
}

fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || s.trim() != s {
        return true;
    }
    let lower = s.to_ascii_lowercase();
    let special = [
        "null", "~", "true", "false", "yes", "no", "on", "off", "y", "n", ".nan", ".inf", "-.inf",
        "+.inf",
    ];
    if special.contains(&lower.as_str()) || looks_numeric(s) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // `-x`, `:x` and `?x` are plain when followed by a non-space; the others never are.
        let safe_indicator = matches!(first, '-' | '?' | ':')
            && s.chars().nth(1).is_some_and(|c| !c.is_whitespace())
            && s != "---";
        if !safe_indicator {
            return true;
        }
    }
    s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control() || c == '\u{feff}')
}

/// Anything a YAML 1.1 or 1.2 reader might take for a number or a date: integers and
/// floats (with `_` separators), base-2/8/16 integers, sexagesimal `1:30`, `2024-01-31`.
fn looks_numeric(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let first = body.bytes().next();
    if !first.is_some_and(|b| b.is_ascii_digit() || b == b'.') {
        return false;
    }
    let plain = body.replace('_', "");
    let radix = |prefix: [&str; 2], radix: u32| {
        prefix
            .iter()
            .find_map(|p| plain.strip_prefix(p))
            .is_some_and(|digits| !digits.is_empty() && u64::from_str_radix(digits, radix).is_ok())
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let sexagesimal = body.contains(':') && body.split(':').all(all_digits);
    let date = body.len() >= 8
        && body.split('-').count() == 3
        && body
            .split(['-', 'T', ' ', ':', '.'])
            .take(3)
            .all(all_digits);
    plain.parse::<f64>().is_ok()
        || radix(["0x", "0X"], 16)
        || radix(["0o", "0O"], 8)
        || radix(["0b", "0B"], 2)
        || sexagesimal
        || date
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_compose_style_blocks() {
        let value = json!({
            "name": "app",
            "services": {
                "web": {
                    "command": ["echo", "hi there"],
                    "networks": {"default": null},
                    "ports": [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}],
                    "volumes": [],
                    "labels": {}
                }
            }
        });
        let expected = "\
name: app
services:
  web:
    command:
      - echo
      - hi there
    networks:
      default: null
    ports:
      - mode: ingress
        target: 80
        published: \"8080\"
        protocol: tcp
    volumes: []
    labels: {}
";
        assert_eq!(to_string(&value), expected);
    }

    #[test]
    fn quotes_what_would_change_meaning() {
        for s in [
            "",
            "true",
            "No",
            "8080",
            "1.5",
            "0x1F",
            "-1",
            "a: b",
            "#c",
            "*x",
            " x",
            "x:",
            "null",
            "12:30",
            "1e3",
            "1_000",
            "2024-01-31",
            ".5",
            "0o17",
        ] {
            assert!(scalar_string(s).starts_with('"'), "{s} should be quoted");
        }
        for s in [
            "abc",
            "nginx:latest",
            "/var/lib",
            "-c",
            "--flag=x",
            "a b",
            "http://x:80/y",
            "x-1",
            "127.0.0.1",
            "10m",
            "nginx:1.25",
            "80/tcp",
            "0.0.0.0:80",
        ] {
            assert_eq!(scalar_string(s), s, "{s} should be plain");
        }
    }

    #[test]
    fn every_output_reads_back_the_same() {
        let value = json!({
            "a": "line one\nline two",
            "b": "trailing\n",
            "c": ["x", {"k": "v", "n": [1, 2]}, [], {}],
            "d": "tab\there \"q\" \\",
            "e": "- not a list",
            "f": "?", "g": ":", "h": "-", "i": "---", "j": "@x", "k": "%x"
        });
        let text = to_string(&value);
        let back: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, value, "{text}");
    }
}
