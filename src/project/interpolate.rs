//! Load stage `interpolate`: `${VAR}` substitution in every string scalar of a Compose
//! document, with the syntax and quirks of Docker Compose v2.
//!
//! Supported forms: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?message}`, `${VAR?message}`, `${VAR:+replacement}`, `${VAR+replacement}` and
//! `$$` for a literal `$`. Defaults, messages and replacements are themselves templates,
//! so `${A:-${B:-x}}` nests. A `$` followed by anything that cannot start one of these
//! forms (a space, a digit, the end of the string) is kept as a literal `$`, while a `${`
//! that does not open a valid form is an error.

use serde_yaml::Value;
use thiserror::Error;

/// How deep defaults may nest (`${A:-${B:-${C:-...}}}`); it keeps recursion bounded on
/// hostile input while leaving far more room than any real file uses.
pub const MAX_NESTING: usize = 64;

/// The result of substituting one template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Substituted {
    /// The template with every variable replaced.
    pub value: String,
    /// Variables read through `$VAR` or `${VAR}` while unset (they became ""), in the
    /// order first seen, without duplicates.
    pub unset: Vec<String>,
}

/// Why a template could not be substituted. `path` is the key path of the YAML value
/// (such as `services.web.image`) when the error comes from [`interpolate_value`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InterpolateError {
    /// The template holds a `${` that opens no valid form.
    #[error(
        "invalid interpolation format{}: {template:?}. You may need to escape any $ with another $",
        for_path(path)
    )]
    InvalidFormat {
        path: Option<String>,
        template: String,
    },
    /// A `${VAR:?message}` or `${VAR?message}` found its variable missing.
    #[error(
        "{}required variable {variable} is missing a value{}",
        while_at(path),
        reason_suffix(reason)
    )]
    RequiredVariable {
        path: Option<String>,
        variable: String,
        reason: String,
    },
    /// Defaults nest deeper than [`MAX_NESTING`].
    #[error("invalid interpolation format{}: defaults nest more than {MAX_NESTING} levels deep in {template:?}", for_path(path))]
    NestingTooDeep {
        path: Option<String>,
        template: String,
    },
}

impl InterpolateError {
    /// The key path the error was found at, when known.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::InvalidFormat { path, .. }
            | Self::RequiredVariable { path, .. }
            | Self::NestingTooDeep { path, .. } => path.as_deref(),
        }
    }

    fn at_path(mut self, key_path: &str) -> Self {
        match &mut self {
            Self::InvalidFormat { path, .. }
            | Self::RequiredVariable { path, .. }
            | Self::NestingTooDeep { path, .. } => *path = Some(key_path.to_owned()),
        }
        self
    }
}

fn for_path(path: &Option<String>) -> String {
    path.as_ref()
        .map(|p| format!(" for {p}"))
        .unwrap_or_default()
}

fn while_at(path: &Option<String>) -> String {
    path.as_ref()
        .map(|p| format!("error while interpolating {p}: "))
        .unwrap_or_default()
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// The warning Docker Compose prints for a variable read while unset.
pub fn unset_warning(name: &str) -> String {
    format!("The {name:?} variable is not set. Defaulting to a blank string.")
}

/// Substitutes every variable of `template`, reading values through `lookup`
/// (`None` means unset, which differs from set to "").
pub fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Substituted, InterpolateError> {
    let mut substituter = Substituter {
        lookup,
        unset: Vec::new(),
    };
    match substituter.expand(template, 0) {
        Ok(value) => Ok(Substituted {
            value,
            unset: substituter.unset,
        }),
        Err(failure) => Err(failure.into_error(template)),
    }
}

/// Substitutes every string scalar in `value` (mapping values, sequence items and
/// tagged values; never mapping keys) in place. Strings stay strings even when they
/// now read as numbers: the typed decode converts them later.
///
/// Returns one warning per distinct variable read while unset.
pub fn interpolate_value(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, InterpolateError> {
    let mut unset = Vec::new();
    let mut path = Vec::new();
    interpolate_node(value, lookup, &mut path, &mut unset)?;
    Ok(unset.iter().map(|name| unset_warning(name)).collect())
}

fn interpolate_node(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    path: &mut Vec<String>,
    unset: &mut Vec<String>,
) -> Result<(), InterpolateError> {
    match value {
        Value::String(text) => {
            let substituted = substitute(text, lookup).map_err(|e| e.at_path(&path.join(".")))?;
            for name in substituted.unset {
                push_unique(unset, name);
            }
            *text = substituted.value;
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                path.push(index.to_string());
                let result = interpolate_node(item, lookup, path, unset);
                path.pop();
                result?;
            }
        }
        Value::Mapping(mapping) => {
            for (key, item) in mapping.iter_mut() {
                path.push(key_segment(key));
                let result = interpolate_node(item, lookup, path, unset);
                path.pop();
                result?;
            }
        }
        Value::Tagged(tagged) => interpolate_node(&mut tagged.value, lookup, path, unset)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// A mapping key as a path segment; keys are strings once the `yaml` stage ran, the
/// other arms only keep paths readable if it did not.
fn key_segment(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".to_owned(),
        _ => "?".to_owned(),
    }
}

fn push_unique(names: &mut Vec<String>, name: String) {
    if !names.contains(&name) {
        names.push(name);
    }
}

/// An error found while expanding, before it knows which template it belongs to.
enum Failure {
    Invalid,
    Required { variable: String, reason: String },
    TooDeep,
}

impl Failure {
    fn into_error(self, template: &str) -> InterpolateError {
        match self {
            Failure::Invalid => InterpolateError::InvalidFormat {
                path: None,
                template: template.to_owned(),
            },
            Failure::Required { variable, reason } => InterpolateError::RequiredVariable {
                path: None,
                variable,
                reason,
            },
            Failure::TooDeep => InterpolateError::NestingTooDeep {
                path: None,
                template: template.to_owned(),
            },
        }
    }
}

/// What a `$` at some position starts.
enum Token {
    /// `$$`: a literal `$`.
    Escaped,
    /// `$NAME`, ending before `end`.
    Named { end: usize },
    /// `${NAME}`, ending before `end`.
    Braced { name_end: usize, end: usize },
    /// `${NAME<op>...}`: `end` is one past the last `}` on the line, as the greedy
    /// pattern of Compose reads it; the expansion itself stops at the first balanced `}`.
    WithOperator {
        name_end: usize,
        op: Operator,
        end: usize,
    },
    /// `${` not followed by a valid form.
    Invalid,
    /// A `$` that starts nothing; it is kept as is.
    Literal,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Operator {
    /// `:-`: default when unset or empty.
    DefaultUnlessNonEmpty,
    /// `-`: default when unset.
    DefaultUnlessSet,
    /// `:+`: replacement when set and non-empty.
    ReplaceIfNonEmpty,
    /// `+`: replacement when set.
    ReplaceIfSet,
    /// `:?`: error when unset or empty.
    RequireNonEmpty,
    /// `?`: error when unset.
    RequireSet,
}

impl Operator {
    /// How many bytes the operator takes in the template.
    fn len(self) -> usize {
        match self {
            Operator::DefaultUnlessSet | Operator::ReplaceIfSet | Operator::RequireSet => 1,
            _ => 2,
        }
    }

    /// The operator starting at `bytes[at..]`, with its length.
    fn parse(bytes: &[u8], at: usize) -> Option<(Operator, usize)> {
        let first = *bytes.get(at)?;
        let (colon, symbol) = if first == b':' {
            (true, *bytes.get(at + 1)?)
        } else {
            (false, first)
        };
        let op = match (colon, symbol) {
            (true, b'-') => Operator::DefaultUnlessNonEmpty,
            (false, b'-') => Operator::DefaultUnlessSet,
            (true, b'+') => Operator::ReplaceIfNonEmpty,
            (false, b'+') => Operator::ReplaceIfSet,
            (true, b'?') => Operator::RequireNonEmpty,
            (false, b'?') => Operator::RequireSet,
            _ => return None,
        };
        Some((op, if colon { 2 } else { 1 }))
    }
}

struct Substituter<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    unset: Vec<String>,
}

impl Substituter<'_> {
    fn expand(&mut self, template: &str, depth: usize) -> Result<String, Failure> {
        if depth > MAX_NESTING {
            return Err(Failure::TooDeep);
        }
        let mut out = String::with_capacity(template.len());
        let mut pos = 0;
        while let Some(offset) = template.get(pos..).and_then(|rest| rest.find('$')) {
            let dollar = pos + offset;
            out.push_str(template.get(pos..dollar).unwrap_or_default());
            pos = match classify(template, dollar) {
                Token::Escaped => {
                    out.push('$');
                    dollar + 2
                }
                Token::Literal => {
                    out.push('$');
                    dollar + 1
                }
                Token::Invalid => return Err(Failure::Invalid),
                Token::Named { end } => {
                    out.push_str(&self.read(slice(template, dollar + 1, end)));
                    end
                }
                Token::Braced { name_end, end } => {
                    out.push_str(&self.read(slice(template, dollar + 2, name_end)));
                    end
                }
                Token::WithOperator { name_end, op, end } => {
                    let matched = slice(template, dollar, end);
                    let (value, consumed) =
                        self.apply_operator(matched, name_end - dollar, op, depth)?;
                    out.push_str(&value);
                    dollar + consumed
                }
            };
        }
        out.push_str(template.get(pos..).unwrap_or_default());
        Ok(out)
    }

    /// Expands one `${NAME<op>arg}` whose text starts `matched`; returns the value and
    /// how many bytes of `matched` it used. Like Compose, the argument ends at the first
    /// balanced `}` and the argument is expanded before the variable is looked at.
    fn apply_operator(
        &mut self,
        matched: &str,
        name_end: usize,
        op: Operator,
        depth: usize,
    ) -> Result<(String, usize), Failure> {
        let consumed = first_balanced_close(matched).map_or(matched.len(), |close| close + 1);
        let name = slice(matched, 2, name_end);
        let raw_argument = slice(matched, name_end + op.len(), consumed.saturating_sub(1));
        let argument = self.expand(raw_argument, depth + 1)?;
        let current = (self.lookup)(name);
        let value = match (op, current) {
            (Operator::DefaultUnlessNonEmpty, Some(v)) if !v.is_empty() => v,
            (Operator::DefaultUnlessNonEmpty, _) => argument,
            (Operator::DefaultUnlessSet, Some(v)) => v,
            (Operator::DefaultUnlessSet, None) => argument,
            (Operator::ReplaceIfNonEmpty, Some(v)) if v.is_empty() => v,
            (Operator::ReplaceIfNonEmpty, Some(_)) => argument,
            (Operator::ReplaceIfSet, Some(_)) => argument,
            (Operator::ReplaceIfNonEmpty | Operator::ReplaceIfSet, None) => String::new(),
            (Operator::RequireNonEmpty, Some(v)) if !v.is_empty() => v,
            (Operator::RequireSet, Some(v)) => v,
            (Operator::RequireNonEmpty | Operator::RequireSet, _) => {
                return Err(Failure::Required {
                    variable: name.to_owned(),
                    reason: argument,
                })
            }
        };
        Ok((value, consumed))
    }

    /// A plain `$NAME`/`${NAME}` read: unset becomes "" and is recorded.
    fn read(&mut self, name: &str) -> String {
        match (self.lookup)(name) {
            Some(value) => value,
            None => {
                push_unique(&mut self.unset, name.to_owned());
                String::new()
            }
        }
    }
}

/// A variable a template refers to, as `config --variables` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// `${NAME?...}` / `${NAME:?...}`: loading fails without it.
    pub required: bool,
    /// The unexpanded default of `${NAME-...}` / `${NAME:-...}`.
    pub default: Option<String>,
    /// The unexpanded replacement of `${NAME+...}` / `${NAME:+...}`.
    pub alternate: Option<String>,
}

/// Every variable the string scalars of a YAML tree refer to, first mention first; a
/// name mentioned several times is listed once, with what its mentions say merged.
pub fn variables_in_value(value: &Value) -> Vec<Variable> {
    let mut found = Vec::new();
    walk_strings(value, &mut |text| collect_variables(text, 0, &mut found));
    found
}

fn walk_strings(value: &Value, f: &mut dyn FnMut(&str)) {
    match value {
        Value::String(text) => f(text),
        Value::Sequence(items) => items.iter().for_each(|item| walk_strings(item, f)),
        Value::Mapping(map) => map.values().for_each(|item| walk_strings(item, f)),
        Value::Tagged(tagged) => walk_strings(&tagged.value, f),
        _ => {}
    }
}

fn collect_variables(template: &str, depth: usize, found: &mut Vec<Variable>) {
    if depth > MAX_NESTING {
        return;
    }
    let mut pos = 0;
    while let Some(offset) = template.get(pos..).and_then(|rest| rest.find('$')) {
        let dollar = pos + offset;
        let mut mention = |name: &str, op: Option<Operator>, argument: &str| {
            let variable = Variable {
                name: name.to_owned(),
                required: matches!(op, Some(Operator::RequireNonEmpty | Operator::RequireSet)),
                default: matches!(
                    op,
                    Some(Operator::DefaultUnlessNonEmpty | Operator::DefaultUnlessSet)
                )
                .then(|| argument.to_owned()),
                alternate: matches!(
                    op,
                    Some(Operator::ReplaceIfNonEmpty | Operator::ReplaceIfSet)
                )
                .then(|| argument.to_owned()),
            };
            match found.iter_mut().find(|v| v.name == variable.name) {
                Some(known) => {
                    known.required |= variable.required;
                    known.default = known.default.take().or(variable.default);
                    known.alternate = known.alternate.take().or(variable.alternate);
                }
                None => found.push(variable),
            }
        };
        pos = match classify(template, dollar) {
            Token::Escaped => dollar + 2,
            Token::Literal => dollar + 1,
            Token::Invalid => return,
            Token::Named { end } => {
                mention(slice(template, dollar + 1, end), None, "");
                end
            }
            Token::Braced { name_end, end } => {
                mention(slice(template, dollar + 2, name_end), None, "");
                end
            }
            Token::WithOperator { name_end, op, end } => {
                let matched = slice(template, dollar, end);
                let consumed =
                    first_balanced_close(matched).map_or(matched.len(), |close| close + 1);
                let name_end = name_end - dollar;
                let argument = slice(matched, name_end + op.len(), consumed.saturating_sub(1));
                mention(slice(matched, 2, name_end), Some(op), argument);
                collect_variables(argument, depth + 1, found);
                dollar + consumed
            }
        };
    }
}

/// `text[start..end]`, or "" when the range is not valid (it always is for the
/// ASCII-delimited ranges this module computes).
fn slice(text: &str, start: usize, end: usize) -> &str {
    text.get(start..end).unwrap_or_default()
}

fn is_name_start(byte: u8) -> bool {
    byte == b'_' || byte.is_ascii_alphabetic()
}

fn is_name_char(byte: u8) -> bool {
    byte == b'_' || byte.is_ascii_alphanumeric()
}

/// End of the variable name starting at `start`, if one starts there.
fn name_end(bytes: &[u8], start: usize) -> Option<usize> {
    if !bytes.get(start).copied().is_some_and(is_name_start) {
        return None;
    }
    let length = bytes
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| is_name_char(**b))
        .count();
    Some(start + length)
}

/// Reads what the `$` at `dollar` starts, the way Compose's pattern
/// `\$(?:\$|name|\{(?:name(?::?[-+?].*)?\}|))` does (`.` stops at a newline).
fn classify(template: &str, dollar: usize) -> Token {
    let bytes = template.as_bytes();
    match bytes.get(dollar + 1) {
        Some(b'$') => Token::Escaped,
        Some(b'{') => classify_braced(bytes, dollar),
        Some(_) => match name_end(bytes, dollar + 1) {
            Some(end) => Token::Named { end },
            None => Token::Literal,
        },
        None => Token::Literal,
    }
}

fn classify_braced(bytes: &[u8], dollar: usize) -> Token {
    let Some(name_end) = name_end(bytes, dollar + 2) else {
        return Token::Invalid;
    };
    if bytes.get(name_end) == Some(&b'}') {
        return Token::Braced {
            name_end,
            end: name_end + 1,
        };
    }
    let Some((op, op_len)) = Operator::parse(bytes, name_end) else {
        return Token::Invalid;
    };
    let argument_start = name_end + op_len;
    let line = bytes.get(argument_start..).unwrap_or_default();
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    match line.iter().rposition(|b| *b == b'}') {
        Some(close) => Token::WithOperator {
            name_end,
            op,
            end: argument_start + close + 1,
        },
        None => Token::Invalid,
    }
}

/// Index of the `}` closing the `${` at the start of `matched`, counting every `{` as an
/// opener and stepping over the byte after it, exactly as Compose does; `None` when the
/// braces never balance, in which case the whole match is the expression.
fn first_balanced_close(matched: &str) -> Option<usize> {
    let bytes = matched.as_bytes();
    let mut open = 0usize;
    let mut index = 0;
    while let Some(byte) = bytes.get(index) {
        match byte {
            b'}' => {
                open = open.saturating_sub(1);
                if open == 0 {
                    return Some(index);
                }
            }
            b'{' => {
                open += 1;
                index += 1;
            }
            _ => {}
        }
        index += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const ENV: &[(&str, &str)] = &[
        ("FOO", "first"),
        ("BAR", ""),
        ("TAG", "1.27"),
        ("PORT", "8080"),
        ("lower_case", "ok"),
    ];

    fn sub(template: &str) -> Result<String, InterpolateError> {
        substitute(template, &env(ENV)).map(|s| s.value)
    }

    #[test]
    fn substitutes_the_documented_forms() {
        let cases: &[(&str, &str)] = &[
            ("plain text", "plain text"),
            ("$FOO", "first"),
            ("${FOO}", "first"),
            ("nginx:${TAG}", "nginx:1.27"),
            ("$FOO-$TAG", "first-1.27"),
            ("${FOO}bar", "firstbar"),
            ("$FOObar", ""),
            ("${lower_case}", "ok"),
            ("${UNSET:-default}", "default"),
            ("${BAR:-default}", "default"),
            ("${FOO:-default}", "first"),
            ("${UNSET-default}", "default"),
            ("${BAR-default}", ""),
            ("${FOO-default}", "first"),
            ("${FOO:+replacement}", "replacement"),
            ("${BAR:+replacement}", ""),
            ("${UNSET:+replacement}", ""),
            ("${FOO+replacement}", "replacement"),
            ("${BAR+replacement}", "replacement"),
            ("${UNSET+replacement}", ""),
            ("${FOO:?must be set}", "first"),
            ("${BAR?must be set}", ""),
            ("${UNSET:-}", ""),
            ("${UNSET:-a b c}", "a b c"),
            ("${UNSET:-x-y}", "x-y"),
            ("${UNSET-x:-y}", "x:-y"),
            ("${UNSET:-${FOO}}", "first"),
            ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
            ("${UNSET:-$FOO}", "first"),
            ("${FOO:+${TAG}-suffix}", "1.27-suffix"),
            ("${UNSET:-x} and ${FOO}", "x and first"),
            ("${UNSET:-x}}", "x}"),
            ("${UNSET:-{}}", "{}"),
            ("${UNSET:-{a}}", "{a}"),
            ("${UNSET:-x}${TAG:-y}", "x1.27"),
            ("$$", "$"),
            ("$$FOO", "$FOO"),
            ("$${FOO}", "${FOO}"),
            ("$$$FOO", "$first"),
            ("price: 5$", "price: 5$"),
            ("$ alone", "$ alone"),
            ("$1", "$1"),
            ("a$-b", "a$-b"),
            ("${PORT}:80", "8080:80"),
            ("ünïcode ${FOO} ✓", "ünïcode first ✓"),
        ];
        for (template, expected) in cases {
            assert_eq!(
                sub(template).as_deref(),
                Ok(*expected),
                "template {template:?}"
            );
        }
    }

    #[test]
    fn invalid_forms_are_errors() {
        for template in [
            "${",
            "${}",
            "${1abc}",
            "${FOO",
            "${FOO:-x",
            "${ FOO}",
            "${FOO BAR}",
            "${FOO:x}",
            "${FOO:-a\n}",
            "ok ${",
            "${UNSET:-${}}",
        ] {
            let err = sub(template).expect_err(template);
            assert!(
                matches!(err, InterpolateError::InvalidFormat { .. }),
                "{template:?} gave {err:?}"
            );
        }
        assert_eq!(
            sub("${").unwrap_err().to_string(),
            "invalid interpolation format: \"${\". You may need to escape any $ with another $"
        );
    }

    #[test]
    fn required_variables_report_their_message() {
        let cases: &[(&str, &str)] = &[
            (
                "${DB:?set it in .env}",
                "required variable DB is missing a value: set it in .env",
            ),
            (
                "${BAR:?empty is not enough}",
                "required variable BAR is missing a value: empty is not enough",
            ),
            ("${DB?}", "required variable DB is missing a value"),
            (
                "${DB:?need ${FOO}}",
                "required variable DB is missing a value: need first",
            ),
        ];
        for (template, message) in cases {
            assert_eq!(sub(template).unwrap_err().to_string(), *message);
        }
    }

    #[test]
    fn unset_variables_are_listed_once_in_order() {
        let result = substitute("$B ${A} $B ${C:-x} $FOO", &env(ENV)).unwrap();
        assert_eq!(result.value, "   x first");
        assert_eq!(result.unset, vec!["B".to_owned(), "A".to_owned()]);
        // Compose expands a default before it looks at the variable, so a variable in
        // an unused default still counts as read.
        let result = substitute("${FOO:-$MISSING}", &env(ENV)).unwrap();
        assert_eq!(result.value, "first");
        assert_eq!(result.unset, vec!["MISSING".to_owned()]);
    }

    #[test]
    fn deep_nesting_fails_instead_of_overflowing() {
        let template = format!("{}x{}", "${A:-".repeat(10_000), "}".repeat(10_000));
        let err = sub(&template).unwrap_err();
        assert!(
            matches!(err, InterpolateError::NestingTooDeep { .. }),
            "{err:?}"
        );
        let fine = format!("{}x{}", "${A:-".repeat(10), "}".repeat(10));
        assert_eq!(sub(&fine).unwrap(), "x");
    }

    #[test]
    fn many_defaults_on_one_line_stay_flat() {
        let template = "${UNSET:-a}".repeat(5_000);
        assert_eq!(sub(&template).unwrap(), "a".repeat(5_000));
    }

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn interpolates_string_values_across_the_tree() {
        let mut doc = yaml(
            "services:\n  web:\n    image: nginx:${TAG}\n    ports: ['${PORT}:80', 443]\n    \
             environment:\n      $FOO: ${FOO}\n    labels: !reset\n      a: $FOO\n    \
             replicas: 2\n    read_only: ${FLAG:-true}\n",
        );
        let warnings = interpolate_value(&mut doc, &env(ENV)).unwrap();
        assert!(warnings.is_empty());
        let expected = yaml(
            "services:\n  web:\n    image: nginx:1.27\n    ports: ['8080:80', 443]\n    \
             environment:\n      $FOO: first\n    labels: !reset\n      a: first\n    \
             replicas: 2\n    read_only: 'true'\n",
        );
        assert_eq!(doc, expected);
        // Substituted numbers stay strings for the typed decode to convert.
        assert_eq!(
            doc["services"]["web"]["ports"][0],
            Value::String("8080:80".into())
        );
        assert_eq!(
            doc["services"]["web"]["read_only"],
            Value::String("true".into())
        );
    }

    #[test]
    fn warns_once_per_unset_variable() {
        let mut doc = yaml("a: $MISSING\nb: ['${MISSING}', $OTHER]\nc: ${DEFAULTED:-x}\n");
        let warnings = interpolate_value(&mut doc, &env(ENV)).unwrap();
        assert_eq!(
            warnings,
            vec![
                "The \"MISSING\" variable is not set. Defaulting to a blank string.".to_owned(),
                "The \"OTHER\" variable is not set. Defaulting to a blank string.".to_owned(),
            ]
        );
        assert_eq!(doc["a"], Value::String(String::new()));
    }

    #[test]
    fn lists_variables_with_their_defaults() {
        let doc =
            yaml("a: ${A:-x}-$B\nb: [\"${C:?need C}\", \"${D:+alt} $$E ${A}\"]\nc: ${F:-${G}}");
        let names: Vec<(String, bool, Option<String>, Option<String>)> = variables_in_value(&doc)
            .into_iter()
            .map(|v| (v.name, v.required, v.default, v.alternate))
            .collect();
        assert_eq!(
            names,
            vec![
                ("A".into(), false, Some("x".into()), None),
                ("B".into(), false, None, None),
                ("C".into(), true, None, None),
                ("D".into(), false, None, Some("alt".into())),
                ("F".into(), false, Some("${G}".into()), None),
                ("G".into(), false, None, None),
            ]
        );
    }

    #[test]
    fn errors_name_the_key_path() {
        let mut doc = yaml("services:\n  web:\n    image: \"${\"\n");
        let err = interpolate_value(&mut doc, &env(ENV)).unwrap_err();
        assert_eq!(err.path(), Some("services.web.image"));
        assert_eq!(
            err.to_string(),
            "invalid interpolation format for services.web.image: \"${\". \
             You may need to escape any $ with another $"
        );

        let mut doc = yaml("services:\n  web:\n    environment:\n      A: ${DB:?set it in .env}\n");
        let err = interpolate_value(&mut doc, &env(ENV)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error while interpolating services.web.environment.A: \
             required variable DB is missing a value: set it in .env"
        );

        let mut doc = yaml("services:\n  web:\n    ports:\n      - 80\n      - ${P:?}\n");
        let err = interpolate_value(&mut doc, &env(ENV)).unwrap_err();
        assert_eq!(err.path(), Some("services.web.ports.1"));
    }
}
