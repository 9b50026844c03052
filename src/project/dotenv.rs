//! `.env` and `env_file` parsing, with the rules of Docker Compose v2's dotenv parser.
//!
//! Statements are `KEY=value` (or `KEY: value`), optionally prefixed by `export`.
//! Unquoted values run to the end of the line, lose a trailing ` # comment` and
//! surrounding spaces; single-quoted values are literal; double-quoted values may span
//! lines and understand shell escapes (`\n`, `\t`, `\\`, `\"`, `\$`, `\0NNN`, ...).
//! Unquoted and double-quoted values expand `${VAR}` forms (see [`interpolate`]),
//! reading keys defined earlier in the same file first, then the caller's lookup.
//! A line holding only `KEY` takes its value from the lookup, and is skipped when the
//! lookup has none.
//!
//! [`parse_raw`] reads the `format: raw` flavour: `KEY=VALUE` lines taken verbatim.

use indexmap::IndexMap;
use thiserror::Error;

use super::interpolate::{self, InterpolateError};

/// Why an env file could not be read; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DotenvError {
    #[error("line {line}: unexpected character {character:?} in variable name {statement:?}")]
    UnexpectedCharacter {
        line: usize,
        character: char,
        statement: String,
    },
    #[error("line {line}: key cannot contain a space: {key:?}")]
    KeyWithSpace { line: usize, key: String },
    #[error("line {line}: missing variable name before the value")]
    MissingName { line: usize },
    #[error("line {line}: unterminated quoted value {value}")]
    UnterminatedQuote { line: usize, value: String },
    #[error("line {line}: {source}")]
    Interpolation {
        line: usize,
        #[source]
        source: InterpolateError,
    },
}

impl DotenvError {
    /// The 1-based line of the statement at fault.
    pub fn line(&self) -> usize {
        match self {
            Self::UnexpectedCharacter { line, .. }
            | Self::KeyWithSpace { line, .. }
            | Self::MissingName { line }
            | Self::UnterminatedQuote { line, .. }
            | Self::Interpolation { line, .. } => *line,
        }
    }
}

/// Parses a dotenv file; `lookup` answers bare `KEY` lines and variables that the file
/// itself did not define earlier.
pub fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, DotenvError> {
    let mut parser = Parser {
        line: 1,
        lookup,
        out: IndexMap::new(),
    };
    let mut rest = strip_bom(text);
    loop {
        rest = parser.skip_to_statement(rest);
        if rest.is_empty() {
            break;
        }
        rest = parser.statement(rest)?;
    }
    Ok(parser.out)
}

/// Parses an `env_file` with `format: raw`: `KEY=VALUE` per line, the value verbatim.
/// Bare `KEY` lines are skipped (there is nothing to look them up in).
pub fn parse_raw(text: &str) -> Result<IndexMap<String, String>, DotenvError> {
    parse_raw_with_lookup(text, &|_| None)
}

/// [`parse_raw`] where bare `KEY` lines take their value from `lookup`, as
/// `docker run --env-file` does.
pub fn parse_raw_with_lookup(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, DotenvError> {
    let mut out = IndexMap::new();
    for (index, raw_line) in strip_bom(text).split('\n').enumerate() {
        let line = index + 1;
        let content = raw_line.strip_suffix('\r').unwrap_or(raw_line).trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let (name, value) = match content.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (content, None),
        };
        if name.is_empty() {
            return Err(DotenvError::MissingName { line });
        }
        if name.contains([' ', '\t']) {
            return Err(DotenvError::KeyWithSpace {
                line,
                key: name.to_owned(),
            });
        }
        match value.map(str::to_owned).or_else(|| lookup(name)) {
            Some(value) => {
                out.insert(name.to_owned(), value);
            }
            None => continue,
        }
    }
    Ok(out)
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Blanks that may sit around keys and values: whitespace except the line break.
fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

fn is_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')
}

fn first_line(text: &str) -> &str {
    text.split('\n').next().unwrap_or_default()
}

struct Parser<'a> {
    /// Line of the next unread character.
    line: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    out: IndexMap<String, String>,
}

/// Where a statement's key ends.
struct KeyEnd<'t> {
    key: &'t str,
    /// The text after the `=`/`:` (or after the line break of a bare key).
    rest: &'t str,
    /// A bare `KEY` line: the value comes from the lookup.
    inherited: bool,
}

impl Parser<'_> {
    /// Skips blank space and comment lines, counting line breaks.
    fn skip_to_statement<'t>(&mut self, mut text: &'t str) -> &'t str {
        loop {
            let start = text
                .find(|c: char| !c.is_whitespace())
                .unwrap_or(text.len());
            self.line += text.get(..start).unwrap_or_default().matches('\n').count();
            text = text.get(start..).unwrap_or_default();
            if !text.starts_with('#') {
                return text;
            }
            // Keep the line break: the next round counts it.
            text = text
                .find('\n')
                .and_then(|at| text.get(at..))
                .unwrap_or_default();
        }
    }

    fn statement<'t>(&mut self, text: &'t str) -> Result<&'t str, DotenvError> {
        let line = self.line;
        let KeyEnd {
            key,
            rest,
            inherited,
        } = self.locate_key(text)?;
        let key = key.trim_end();
        if key.is_empty() {
            return Err(DotenvError::MissingName { line });
        }
        if key.contains(char::is_whitespace) {
            return Err(DotenvError::KeyWithSpace {
                line,
                key: key.to_owned(),
            });
        }
        if inherited {
            self.line += 1;
            if let Some(value) = (self.lookup)(key) {
                self.out.insert(key.to_owned(), value);
            }
            return Ok(rest);
        }
        let (value, rest) = self.value(rest.trim_start_matches(is_blank), line)?;
        self.out.insert(key.to_owned(), value);
        Ok(rest)
    }

    fn locate_key<'t>(&self, text: &'t str) -> Result<KeyEnd<'t>, DotenvError> {
        let text = strip_export(text);
        for (at, c) in text.char_indices() {
            if is_blank(c) || is_key_char(c) {
                continue;
            }
            if matches!(c, '=' | ':' | '\n') {
                return Ok(KeyEnd {
                    key: text.get(..at).unwrap_or_default(),
                    rest: text.get(at + 1..).unwrap_or_default(),
                    inherited: c == '\n',
                });
            }
            return Err(DotenvError::UnexpectedCharacter {
                line: self.line,
                character: c,
                statement: first_line(text).trim_end().to_owned(),
            });
        }
        // A bare key on the last line, without a line break.
        Ok(KeyEnd {
            key: text,
            rest: "",
            inherited: true,
        })
    }

    /// Reads the value starting `text`; `line` is where its statement began.
    fn value<'t>(&mut self, text: &'t str, line: usize) -> Result<(String, &'t str), DotenvError> {
        let quote = match text.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => return self.unquoted_value(text, line),
        };
        let Some((raw, rest, breaks)) = quoted_content(text, quote) else {
            return Err(DotenvError::UnterminatedQuote {
                line,
                value: first_line(text).trim_end().to_owned(),
            });
        };
        self.line += breaks;
        if quote == '\'' {
            return Ok((raw, rest));
        }
        let value = self.expand(&expand_escapes(&raw), line)?;
        Ok((value, rest))
    }

    fn unquoted_value<'t>(
        &mut self,
        text: &'t str,
        line: usize,
    ) -> Result<(String, &'t str), DotenvError> {
        let (content, rest) = text.split_once('\n').unwrap_or((text, ""));
        self.line += 1;
        // A comment starts at ` #`; a `#` glued to the value is part of it.
        let content = content
            .split_once(" #")
            .map_or(content, |(before, _)| before);
        let value = self.expand(content.trim_end(), line)?;
        Ok((value, rest))
    }

    /// Expands variables, reading keys of this file first, then the lookup.
    fn expand(&self, template: &str, line: usize) -> Result<String, DotenvError> {
        let lookup = |name: &str| self.out.get(name).cloned().or_else(|| (self.lookup)(name));
        interpolate::substitute(template, &lookup)
            .map(|s| s.value)
            .map_err(|source| DotenvError::Interpolation { line, source })
    }
}

/// Drops a leading `export` keyword followed by blanks.
fn strip_export(text: &str) -> &str {
    match text.strip_prefix("export") {
        Some(rest) if rest.starts_with(is_blank) => rest.trim_start_matches(is_blank),
        _ => text,
    }
}

/// The text between the opening `quote` at the start of `text` and its closing match,
/// with `\<quote>` unescaped and every other backslash pair kept; also the text after
/// the closing quote and the line breaks inside. `None` when the quote never closes.
fn quoted_content(text: &str, quote: char) -> Option<(String, &str, usize)> {
    let mut content = String::new();
    let mut breaks = 0;
    let mut escaped = false;
    for (at, c) in text.char_indices().skip(1) {
        if c == '\n' {
            breaks += 1;
        }
        if escaped {
            escaped = false;
            if c != quote {
                content.push('\\');
            }
            content.push(c);
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == quote {
            return Some((content, text.get(at + 1..).unwrap_or_default(), breaks));
        } else {
            content.push(c);
        }
    }
    None
}

/// Applies the shell escapes double quotes understand. `\$` becomes `$$` so that
/// variable expansion then leaves a literal `$`. Unknown escapes stay as written.
fn expand_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let simple = match chars.peek() {
            Some('a') => Some("\u{7}"),
            Some('b') => Some("\u{8}"),
            Some('f') => Some("\u{c}"),
            Some('n') => Some("\n"),
            Some('r') => Some("\r"),
            Some('t') => Some("\t"),
            Some('v') => Some("\u{b}"),
            Some('$') => Some("$$"),
            Some('"') => Some("\""),
            Some('\\') => Some("\\"),
            _ => None,
        };
        if let Some(replacement) = simple {
            chars.next();
            out.push_str(replacement);
        } else if chars.peek() == Some(&'0') {
            chars.next();
            let mut digits = String::new();
            while digits.len() < 3 {
                match chars.peek() {
                    Some(d) if d.is_ascii_digit() => {
                        digits.push(*d);
                        chars.next();
                    }
                    _ => break,
                }
            }
            out.push_str(&octal_escape(&digits));
        } else {
            out.push('\\');
        }
    }
    out
}

/// `\0NNN` is the octal byte NNN; anything shorter or out of range stays as `\NNN`
/// (the `0` dropped), as Compose leaves it.
fn octal_escape(digits: &str) -> String {
    let value = (digits.len() == 3)
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .filter(|v| *v <= 0o377)
        .and_then(char::from_u32);
    match value {
        Some(c) => c.to_string(),
        None => format!("\\{digits}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn shell(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".to_owned()),
            "EMPTY" => Some(String::new()),
            "SHARED" => Some("from-shell".to_owned()),
            _ => None,
        }
    }

    fn parsed(text: &str) -> Vec<(String, String)> {
        parse(text, &shell)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .into_iter()
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_single_statements() {
        let cases: &[(&str, &str, &str)] = &[
            ("FOO=bar", "FOO", "bar"),
            ("FOO =bar", "FOO", "bar"),
            ("FOO= bar", "FOO", "bar"),
            ("FOO = bar  ", "FOO", "bar"),
            ("  FOO=bar", "FOO", "bar"),
            ("\tFOO=bar", "FOO", "bar"),
            ("FOO=", "FOO", ""),
            ("FOO=\"\"", "FOO", ""),
            ("FOO: bar", "FOO", "bar"),
            ("FOO: a=b", "FOO", "a=b"),
            ("FOO=1:B", "FOO", "1:B"),
            ("FOO=foobar=", "FOO", "foobar="),
            ("export FOO=2", "FOO", "2"),
            ("export\tFOO=2", "FOO", "2"),
            ("export exportFoo=2", "exportFoo", "2"),
            ("exportFOO=2", "exportFOO", "2"),
            ("export_FOO =2", "export_FOO", "2"),
            ("FOO.BAR=x", "FOO.BAR", "x"),
            ("VAR-WITH-DASHES=x", "VAR-WITH-DASHES", "x"),
            ("ARR[0]=x", "ARR[0]", "x"),
            ("ÜBER=x", "ÜBER", "x"),
            ("FOO='bar'", "FOO", "bar"),
            ("FOO=\"bar\"", "FOO", "bar"),
            ("FOO=\"'d'\"", "FOO", "'d'"),
            ("FOO='\"d\"'", "FOO", "\"d\""),
            ("FOO=bar # comment", "FOO", "bar"),
            ("FOO=bar #", "FOO", "bar"),
            ("FOO=123#not-a-comment", "FOO", "123#not-a-comment"),
            ("FOO=\"bar#baz\" # comment", "FOO", "bar#baz"),
            ("FOO='bar#baz'#", "FOO", "bar#baz"),
            ("FOO=a\\tb", "FOO", "a\\tb"),
            ("FOO=\"a\\tb\"", "FOO", "a\tb"),
            ("FOO='a\\tb'", "FOO", "a\\tb"),
            ("FOO=\"bar\\nbaz\"", "FOO", "bar\nbaz"),
            ("FOO=\"escaped\\\"bar\"", "FOO", "escaped\"bar"),
            ("FOO=\"\\\"quoted\\\"\"", "FOO", "\"quoted\""),
            ("FOO=\"trailing\\\\\"", "FOO", "trailing\\"),
            ("FOO='it\\'s'", "FOO", "it's"),
            ("FOO='C:\\path'", "FOO", "C:\\path"),
            ("FOO=\"bar\\n\\ b\\az\"", "FOO", "bar\n\\ b\u{7}z"),
            (
                "KEY=\"Z\\aZ\\bZ\\fZ\\nZ\\rZ\\tZ\\vZ\\\\Z\\0123Z\"",
                "KEY",
                "Z\u{7}Z\u{8}Z\u{c}Z\nZ\rZ\tZ\u{b}Z\\ZSZ",
            ),
            ("KEY=\"\\x07\"", "KEY", "\\x07"),
            ("KEY=\"\\u12e4\"", "KEY", "\\u12e4"),
            ("KEY=\"\\c\"", "KEY", "\\c"),
            ("KEY=\"\\012\"", "KEY", "\\12"),
            ("KEY=\"\\0\"", "KEY", "\\"),
            ("KEY=\"\\0400\"", "KEY", "\\400"),
            ("FOO=x\r\n", "FOO", "x"),
        ];
        for (line, key, value) in cases {
            assert_eq!(parsed(line), pairs(&[(*key, *value)]), "{line:?}");
        }
    }

    #[test]
    fn parses_a_whole_file() {
        let text = "\u{feff}# database settings\n\nexport DB_HOST=db\nDB_PORT=5432 # default\n\
                    \n   # indented comment\nGREETING=\"hello\nworld\"\nPATH_LIKE='/a:$HOME'\n\
                    HOME\nUNKNOWN_INHERITED\nEMPTY\nLAST=end";
        assert_eq!(
            parsed(text),
            pairs(&[
                ("DB_HOST", "db"),
                ("DB_PORT", "5432"),
                ("GREETING", "hello\nworld"),
                ("PATH_LIKE", "/a:$HOME"),
                ("HOME", "/home/me"),
                ("EMPTY", ""),
                ("LAST", "end"),
            ])
        );
        assert_eq!(parsed("HOME"), pairs(&[("HOME", "/home/me")]));
        assert!(parsed("").is_empty());
        assert!(parsed("\n\r\n\t \n# only comments\n").is_empty());
    }

    #[test]
    fn expands_variables_from_the_file_then_the_lookup() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("FOO=test\nBAR=$FOO", &[("FOO", "test"), ("BAR", "test")]),
            (
                "FOO=test\nBAR=${FOO}bar",
                &[("FOO", "test"), ("BAR", "testbar")],
            ),
            ("BAR=$NOPE", &[("BAR", "")]),
            (
                "FOO=test\nBAR=\"quote $FOO\"",
                &[("FOO", "test"), ("BAR", "quote test")],
            ),
            ("BAR='quote $FOO'", &[("BAR", "quote $FOO")]),
            ("FOO=\"foo\\$BAR\"", &[("FOO", "foo$BAR")]),
            ("FOO=\"foo\\${BAR}\"", &[("FOO", "foo${BAR}")]),
            ("FOO=$$x", &[("FOO", "$x")]),
            ("DIR=$HOME/app", &[("DIR", "/home/me/app")]),
            ("A=${NOPE:-fallback}", &[("A", "fallback")]),
            ("A=${EMPTY-kept}", &[("A", "")]),
            ("A=1\nB=${A:+set}", &[("A", "1"), ("B", "set")]),
            (
                "SHARED=file\nB=$SHARED",
                &[("SHARED", "file"), ("B", "file")],
            ),
            ("B=$A\nA=late", &[("B", ""), ("A", "late")]),
            ("A=1\nA=2\nB=$A", &[("A", "2"), ("B", "2")]),
        ];
        for (text, expected) in cases {
            assert_eq!(parsed(text), pairs(expected), "{text:?}");
        }
    }

    #[test]
    fn reports_errors_with_their_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "lol$wut",
                1,
                "unexpected character '$' in variable name \"lol$wut\"",
            ),
            ("A=1\n\n# c\nBAD KEY=2", 4, "key cannot contain a space"),
            ("A=1\nKEY=\"value", 2, "unterminated quoted value \"value"),
            ("KEY='value\\'", 1, "unterminated quoted value"),
            ("KEY=\"value'", 1, "unterminated quoted value"),
            ("KEY='", 1, "unterminated quoted value"),
            ("A=\"multi\nline\"\nB=${", 3, "invalid interpolation format"),
            (
                "A=${NEED:?please set NEED}",
                1,
                "required variable NEED is missing a value: please set NEED",
            ),
            ("=value", 1, "missing variable name"),
            ("A=1\nfoo;bar=1", 2, "unexpected character ';'"),
        ];
        for (text, line, message) in cases {
            let e = parse(text, &no_env).expect_err(text);
            assert_eq!(e.line(), *line, "{text:?}: {e}");
            assert!(e.to_string().contains(message), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
        }
    }

    #[test]
    fn raw_format_takes_values_verbatim() {
        let text = "\u{feff}# comment\nA=\"quoted\" # not a comment\nB=$HOME\n  C=  spaced  \r\nD=\nE==x\n\nHOME\nNOPE\n";
        let raw: Vec<_> = parse_raw(text).unwrap().into_iter().collect();
        assert_eq!(
            raw,
            pairs(&[
                ("A", "\"quoted\" # not a comment"),
                ("B", "$HOME"),
                ("C", "  spaced  "),
                ("D", ""),
                ("E", "=x"),
            ])
        );
        let looked_up: Vec<_> = parse_raw_with_lookup(text, &shell)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            looked_up.last(),
            Some(&("HOME".to_owned(), "/home/me".to_owned()))
        );
    }

    #[test]
    fn raw_format_rejects_bad_names() {
        let e = parse_raw("A=1\nBAD KEY=2\n").unwrap_err();
        assert_eq!(e.line(), 2);
        assert!(e.to_string().contains("key cannot contain a space"), "{e}");
        let e = parse_raw("A=1\n\n=2\n").unwrap_err();
        assert_eq!(e.line(), 3);
        assert!(matches!(e, DotenvError::MissingName { .. }));
    }
}
