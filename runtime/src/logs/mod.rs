//! Container logs in Docker's `json-file` format.
//!
//! The files are byte-compatible with what dockerd writes under
//! `/var/lib/docker/containers/<id>/<id>-json.log`: one JSON object per line,
//! lines longer than 16 KiB split into partial records, rotation by size into
//! `path.1`, `path.2`, ... (optionally gzip-compressed).
//!
//! - [`LogWriter`] turns raw stdout/stderr bytes into records and rotates files.
//! - [`LogReader`] iterates the records of all files, oldest first, with `tail`,
//!   `since` and `until`.
//! - [`LogFollower`] returns the records appended since its last call and keeps
//!   going across rotations; the caller decides when to call it (e.g. on inotify).

mod files;
mod format;
mod reader;
mod writer;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use reader::{LogFollower, LogReader};
pub use writer::LogWriter;

/// Lines longer than this many bytes are split into partial records, as dockerd does.
pub const PARTIAL_LINE_SIZE: usize = 16 * 1024;

/// Which output of the container a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The value of the record's `stream` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub stream: Stream,
    pub time: SystemTime,
    /// The text as the container wrote it: ends with `\n` unless this is a partial
    /// record (a piece of a line longer than 16 KiB, or an unterminated last line).
    pub line: Vec<u8>,
}

impl LogRecord {
    /// True for a piece of a longer line; the following records complete it.
    pub fn is_partial(&self) -> bool {
        !self.line.ends_with(b"\n")
    }
}

/// Rotation settings: the json-file driver's `max-size`, `max-file` and `compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogOptions {
    /// Rotate once the current file holds at least this many bytes; `None` never rotates.
    pub max_size: Option<u64>,
    /// How many files to keep, the current one included.
    pub max_file: u32,
    /// Gzip rotated files (`path.1.gz`, ...).
    pub compress: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_size: None,
            max_file: 1,
            compress: false,
        }
    }
}

impl LogOptions {
    /// Builds options from json-file driver options (Compose `logging.options`,
    /// `docker run --log-opt`): `max-size`, `max-file`, `compress`. Options that only
    /// add attributes (`labels`, `env`, `tag`, ...) are accepted and ignored here.
    pub fn from_driver_options<'a, I>(options: I) -> Result<Self, LogError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut parsed = LogOptions::default();
        for (key, value) in options {
            match key {
                "max-size" => parsed.max_size = Some(parse_size(value)?),
                "max-file" => parsed.max_file = parse_max_file(value)?,
                "compress" => parsed.compress = parse_go_bool("compress", value)?,
                "labels" | "labels-regex" | "env" | "env-regex" | "tag" => {}
                other => {
                    return Err(LogError::UnknownOption {
                        key: other.to_string(),
                    })
                }
            }
        }
        parsed.validate()?;
        Ok(parsed)
    }

    /// Checks the combinations dockerd refuses.
    pub fn validate(&self) -> Result<(), LogError> {
        if self.max_size == Some(0) {
            return Err(LogError::InvalidOption {
                key: "max-size",
                reason: "max-size must be a positive number".into(),
            });
        }
        if self.max_file < 1 {
            return Err(LogError::InvalidOption {
                key: "max-file",
                reason: "max-file cannot be less than 1".into(),
            });
        }
        if self.compress && (self.max_file < 2 || self.max_size.is_none()) {
            return Err(LogError::InvalidOption {
                key: "compress",
                reason:
                    "compress cannot be true when max-file is less than 2 or max-size is not set"
                        .into(),
            });
        }
        Ok(())
    }
}

fn parse_max_file(value: &str) -> Result<u32, LogError> {
    let count: i64 = value.trim().parse().map_err(|_| LogError::InvalidOption {
        key: "max-file",
        reason: format!("{value:?} is not a whole number"),
    })?;
    u32::try_from(count)
        .ok()
        .filter(|count| *count >= 1)
        .ok_or_else(|| LogError::InvalidOption {
            key: "max-file",
            reason: "max-file cannot be less than 1".into(),
        })
}

/// Go's `strconv.ParseBool`, which dockerd uses for `compress`.
fn parse_go_bool(key: &'static str, value: &str) -> Result<bool, LogError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(LogError::InvalidOption {
            key,
            reason: format!("{value:?} is not a boolean (use true or false)"),
        }),
    }
}

/// Parses a size the way dockerd reads `max-size` (go-units `FromHumanSize`):
/// a decimal number, an optional space, then an optional unit `b`, `k`, `m`, `g`,
/// `t` or `p` (powers of 1000, case-insensitive) optionally followed by `b` or `ib`.
/// `10m` is 10 000 000 bytes; `1.5k` is 1500.
pub fn parse_size(text: &str) -> Result<u64, LogError> {
    let invalid = |reason: &str| LogError::InvalidOption {
        key: "max-size",
        reason: format!("invalid size {text:?}: {reason}"),
    };
    let number_end = text
        .rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
        .ok_or_else(|| invalid("expected a number such as 10m"))?;
    let (number, suffix) = text.split_at(number_end + 1);
    let number = number.strip_suffix(' ').unwrap_or(number);
    let value: f64 = number
        .parse()
        .map_err(|_| invalid("expected a number such as 10m"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(invalid("the size cannot be negative"));
    }
    let multiplier =
        size_multiplier(suffix).ok_or_else(|| invalid("unknown unit (use b, k, m, g, t or p)"))?;
    // go-units truncates toward zero after multiplying; so do we.
    Ok((value * multiplier as f64) as u64)
}

fn size_multiplier(suffix: &str) -> Option<u64> {
    let suffix = suffix.to_ascii_lowercase();
    let mut chars = suffix.chars();
    let Some(unit) = chars.next() else {
        return Some(1);
    };
    let rest = chars.as_str();
    if unit == 'b' {
        return rest.is_empty().then_some(1);
    }
    let exponent = match unit {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        _ => return None,
    };
    matches!(rest, "" | "b" | "ib").then(|| 1000u64.pow(exponent))
}

/// What to read: the json-file driver's `tail`, `since` and `until`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only the last N records of all files (`None`: all). As in dockerd, the
    /// `since`/`until` filters apply to those N records afterwards.
    pub tail: Option<usize>,
    /// Skip records older than this.
    pub since: Option<SystemTime>,
    /// Stop at the first record newer than this.
    pub until: Option<SystemTime>,
}

/// Errors of the log writer and reader.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid log option {key}: {reason}")]
    InvalidOption { key: &'static str, reason: String },
    #[error("unknown log option {key:?} for the json-file log driver (known: max-size, max-file, compress, labels, labels-regex, env, env-regex, tag)")]
    UnknownOption { key: String },
    #[error(
        "log timestamp {time:?} is outside the years 1970 to 9999 that json-file logs can hold"
    )]
    TimeOutOfRange { time: SystemTime },
    #[error("{}: record at byte {offset}{}: {reason}", path.display(), if *.compressed { " (uncompressed)" } else { "" })]
    Decode {
        path: PathBuf,
        offset: u64,
        compressed: bool,
        reason: String,
    },
    #[error("the log files of {} kept rotating while being opened; try again", path.display())]
    Unstable { path: PathBuf },
}

impl LogError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        LogError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_decimal_units_like_dockerd() {
        assert_eq!(parse_size("10m").unwrap(), 10_000_000);
        assert_eq!(parse_size("1g").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("500k").unwrap(), 500_000);
        assert_eq!(parse_size("500K").unwrap(), 500_000);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert_eq!(parse_size("2MiB").unwrap(), 2_000_000);
        assert_eq!(parse_size("1.5k").unwrap(), 1500);
        assert_eq!(parse_size("1 k").unwrap(), 1000);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("123b").unwrap(), 123);
    }

    #[test]
    fn bad_sizes_are_rejected_with_the_option_name() {
        for bad in ["", "m", "10x", "10mbb", "10bb", "-5m", "ten"] {
            let err = parse_size(bad).unwrap_err().to_string();
            assert!(err.contains("max-size"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn driver_options_follow_dockerd_validation() {
        let options =
            LogOptions::from_driver_options([("max-size", "10m"), ("max-file", "3")]).unwrap();
        assert_eq!(
            options,
            LogOptions {
                max_size: Some(10_000_000),
                max_file: 3,
                compress: false
            }
        );
        let err = LogOptions::from_driver_options([("compress", "true")]).unwrap_err();
        assert!(err.to_string().contains("compress cannot be true"), "{err}");
        let err = LogOptions::from_driver_options([("max-file", "0")]).unwrap_err();
        assert!(err.to_string().contains("max-file cannot be less than 1"));
        let err = LogOptions::from_driver_options([("max-size", "0")]).unwrap_err();
        assert!(err.to_string().contains("positive"));
        let err = LogOptions::from_driver_options([("max-buffer-size", "1m")]).unwrap_err();
        assert!(err.to_string().contains("\"max-buffer-size\""));
        let compressed = LogOptions::from_driver_options([
            ("max-size", "1k"),
            ("max-file", "2"),
            ("compress", "T"),
            ("tag", "{{.Name}}"),
        ])
        .unwrap();
        assert!(compressed.compress);
    }
}
