//! What the engine's management commands (`volume`, `network`) share: `KEY=VALUE`
//! options, Docker's `--filter` terms, the prune prompt and the list formats.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};
use clap::ValueEnum;
use rcompose_runtime::volume::LabelFilter;

/// `ls --format`: Docker's table, or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// `--opt`/`--label` pairs; `what` names the flag in errors ("option", "label").
pub fn key_values(pairs: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            // Docker takes a bare label as an empty value.
            None if what == "label" && !pair.is_empty() => Ok((pair.clone(), String::new())),
            _ => bail!("invalid {what} {pair:?}: expected KEY=VALUE"),
        })
        .collect()
}

/// Splits a `--filter` term into its key and value.
pub fn split_filter(term: &str) -> anyhow::Result<(&str, &str)> {
    term.split_once('=')
        .with_context(|| format!("bad format of filter (expected name=value): {term}"))
}

pub fn parse_bool_filter(term: &str, value: &str) -> anyhow::Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("invalid filter {term:?}: expected true or false"),
    }
}

/// The `label=...` and `label!=...` terms; `None` for any other key.
pub fn label_filter(key: &str, value: &str) -> Option<LabelFilter> {
    match key {
        "label" => Some(LabelFilter::parse(value, false)),
        "label!" => Some(LabelFilter::parse(value, true)),
        _ => None,
    }
}

/// Asks on stderr, reads one line of stdin; only "y"/"yes" agree.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    let mut stderr = std::io::stderr();
    write!(stderr, "{question}")?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !std::io::stdin().is_terminal() {
        eprintln!();
    }
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_need_a_key() {
        assert!(key_values(&["=x".into()], "option").is_err());
        assert!(key_values(&["type".into()], "option").is_err());
        let labels = key_values(&["a=b=c".into(), "flag".into()], "label").unwrap();
        assert_eq!(labels["a"], "b=c");
        assert_eq!(labels["flag"], "");
    }

    #[test]
    fn filter_terms_split_at_the_first_equals_sign() {
        assert_eq!(split_filter("label=a=b").unwrap(), ("label", "a=b"));
        assert_eq!(split_filter("label!=a").unwrap(), ("label!", "a"));
        assert_eq!(
            split_filter("dangling").unwrap_err().to_string(),
            "bad format of filter (expected name=value): dangling"
        );
    }

    #[test]
    fn label_terms_and_booleans() {
        let negated = label_filter("label!", "tier=web").unwrap();
        assert!(negated.negate);
        assert_eq!(negated.key, "tier");
        assert_eq!(negated.value.as_deref(), Some("web"));
        assert!(label_filter("name", "x").is_none());
        assert!(parse_bool_filter("dangling=1", "1").unwrap());
        assert!(!parse_bool_filter("dangling=FALSE", "FALSE").unwrap());
        assert!(parse_bool_filter("dangling=maybe", "maybe").is_err());
    }
}
