//! The log multiplexer of `rcompose logs` and attached `rcompose up`: the json-file
//! logs of several containers printed as `docker compose` prints them.
//!
//! One line per record, under a prefix `web-1  | ` padded to the longest name and
//! coloured from Compose's rotation; `--no-log-prefix`, `--timestamps`, `--tail`,
//! `--since` and `--until`. [`print_logs`] prints the logs as they are, merged by
//! time; [`LogFollow`] does the same and then follows the files with inotify, across
//! rotations, taking new sources (new replicas) while it runs.
//!
//! ```no_run
//! # use rcompose::ui::logs::*;
//! let sources = vec![LogSource::new("web-1", "/var/lib/rcompose/c/web/web-json.log")];
//! let options = LogsOptions {
//!     style: LogStyle::for_stdout(false, false, false),
//!     ..LogsOptions::default()
//! };
//! print_logs(&sources, &options, std::io::stdout().lock(), |e| eprintln!("WARN {e}"))?;
//! # Ok::<(), LogsError>(())
//! ```

mod follow;
mod merge;
mod printer;
mod time;

use std::io::Write;
use std::path::PathBuf;

use rcompose_runtime::logs::{LogError, ReadOptions};

pub use follow::{FollowHandle, FollowSummary, LogFollow};
pub use time::{parse_tail, parse_time_bound};

use merge::{print_merged, SnapshotSource};
use printer::Printer;

/// A container's log: the name printed in its prefix (`web-1`) and its json-file log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSource {
    pub display_name: String,
    /// The current file; rotated files (`path.1`, `path.2.gz`, ...) sit beside it.
    pub path: PathBuf,
}

impl LogSource {
    pub fn new(display_name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        LogSource {
            display_name: display_name.into(),
            path: path.into(),
        }
    }
}

/// How lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStyle {
    /// Colour the prefixes (Compose's rotation, one colour per name).
    pub color: bool,
    /// Print `name  | ` before each line (off with `--no-log-prefix`).
    pub prefix: bool,
    /// Print each record's time before its text (`--timestamps`).
    pub timestamps: bool,
}

impl Default for LogStyle {
    fn default() -> Self {
        LogStyle {
            color: false,
            prefix: true,
            timestamps: false,
        }
    }
}

impl LogStyle {
    /// The style for standard output from the command's flags. Colour follows
    /// `--ansi` as the CLI applied it to the console crate (`never`, `always`, or
    /// under `auto` only on a terminal, honouring `NO_COLOR`/`CLICOLOR`), unless
    /// `--no-color`.
    pub fn for_stdout(no_color: bool, no_log_prefix: bool, timestamps: bool) -> Self {
        LogStyle {
            color: !no_color && console::colors_enabled(),
            prefix: !no_log_prefix,
            timestamps,
        }
    }
}

/// What to print and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogsOptions {
    pub style: LogStyle,
    /// `tail` (per container), `since` and `until`; see [`parse_tail`] and
    /// [`parse_time_bound`] for the flags' values.
    pub read: ReadOptions,
}

/// Errors of the log multiplexer.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("cannot read the logs of {name}: {source}")]
    Read {
        name: String,
        #[source]
        source: LogError,
    },
    #[error("cannot watch {} for the logs of {name}: {source}", dir.display())]
    Watch {
        name: String,
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot watch log files: {0}")]
    Watcher(#[source] notify::Error),
    #[error("cannot write the logs: {0}")]
    Write(#[source] std::io::Error),
    #[error("invalid {flag} value {value:?}: {reason}")]
    InvalidFlag {
        flag: &'static str,
        value: String,
        reason: String,
    },
}

/// Prints the logs of `sources` as they are now, merged by time, and returns the
/// number of lines printed. A container whose log file does not exist yet has no
/// lines; a record that cannot be read goes to `on_problem` and is skipped.
pub fn print_logs<W: Write>(
    sources: &[LogSource],
    options: &LogsOptions,
    out: W,
    mut on_problem: impl FnMut(LogsError),
) -> Result<u64, LogsError> {
    let mut printer = Printer::new(out, options.style);
    let mut snapshot = open_snapshot(sources, &options.read, &mut printer)?;
    print_merged(&mut snapshot, &mut printer, true, &mut on_problem)?;
    printer.flush()?;
    Ok(printer.lines())
}

/// Opens every source and registers its name, in the order given (which sets the
/// colours and breaks ties between lines of the same time).
fn open_snapshot<W: Write>(
    sources: &[LogSource],
    read: &ReadOptions,
    printer: &mut Printer<W>,
) -> Result<Vec<SnapshotSource>, LogsError> {
    sources
        .iter()
        .map(|source| {
            let who = printer.presenter(&source.display_name);
            SnapshotSource::open(who, &source.display_name, &source.path, read)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcompose_runtime::logs::{LogOptions, LogWriter, Stream, PARTIAL_LINE_SIZE};
    use std::path::Path;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    const NOON: u64 = 1_704_110_400; // 2024-01-01T12:00:00Z

    fn at(second: u64) -> SystemTime {
        UNIX_EPOCH + Duration::new(NOON + second, 0)
    }

    /// Writes `(second, text)` records to a new log at `dir/name-json.log`.
    fn log_file(dir: &Path, name: &str, lines: &[(u64, &str)]) -> LogSource {
        let path = dir.join(format!("{name}-json.log"));
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        for (second, text) in lines {
            writer
                .write(Stream::Stdout, format!("{text}\n").as_bytes(), at(*second))
                .unwrap();
        }
        writer.close().unwrap();
        LogSource::new(name, path)
    }

    fn plain() -> LogsOptions {
        LogsOptions::default()
    }

    fn print(sources: &[LogSource], options: &LogsOptions) -> String {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        print_logs(sources, options, &mut out, |e| problems.push(e.to_string())).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        String::from_utf8(out).unwrap()
    }

    fn two_services(dir: &Path) -> Vec<LogSource> {
        vec![
            log_file(
                dir,
                "web-1",
                &[(1, "web one"), (4, "web four"), (5, "web five")],
            ),
            log_file(
                dir,
                "db-1",
                &[(2, "db two"), (3, "db three"), (5, "db five")],
            ),
        ]
    }

    #[test]
    fn lines_of_all_containers_are_merged_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let out = print(&two_services(dir.path()), &plain());
        assert_eq!(
            out,
            "web-1  | web one\n\
             db-1   | db two\n\
             db-1   | db three\n\
             web-1  | web four\n\
             web-1  | web five\n\
             db-1   | db five\n"
        );
    }

    #[test]
    fn tail_applies_per_container() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = plain();
        options.read.tail = Some(1);
        assert_eq!(
            print(&two_services(dir.path()), &options),
            "web-1  | web five\ndb-1   | db five\n"
        );
        options.read.tail = Some(0);
        assert_eq!(print(&two_services(dir.path()), &options), "");
    }

    #[test]
    fn since_and_until_select_a_window_for_every_container() {
        let dir = tempfile::tempdir().unwrap();
        let now = at(10);
        let mut options = plain();
        // `--since 7s` is second 3; `--until` second 4 (inclusive, as dockerd).
        options.read.since = Some(parse_time_bound("--since", "7s", now).unwrap());
        options.read.until =
            Some(parse_time_bound("--until", "2024-01-01T12:00:04Z", now).unwrap());
        assert_eq!(
            print(&two_services(dir.path()), &options),
            "db-1   | db three\nweb-1  | web four\n"
        );
    }

    #[test]
    fn timestamps_and_no_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let options = LogsOptions {
            style: LogStyle {
                color: false,
                prefix: false,
                timestamps: true,
            },
            ..plain()
        };
        let sources = [log_file(dir.path(), "web-1", &[(1, "hello")])];
        assert_eq!(
            print(&sources, &options),
            "2024-01-01T12:00:01.000000000Z hello\n"
        );
    }

    #[test]
    fn colour_is_on_the_prefix_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let sources = two_services(dir.path());
        let coloured = LogsOptions {
            style: LogStyle {
                color: true,
                ..LogStyle::default()
            },
            ..plain()
        };
        let out = print(&sources, &coloured);
        let first = out.lines().next().unwrap();
        assert_eq!(first, "\u{1b}[36mweb-1  | \u{1b}[0mweb one");
        assert!(
            out.contains("\u{1b}[33mdb-1   | \u{1b}[0mdb two"),
            "{out:?}"
        );
        assert!(!print(&sources, &plain()).contains('\u{1b}'));
        let no_color = LogStyle::for_stdout(true, false, false);
        assert!(!no_color.color);
    }

    #[test]
    fn long_lines_split_by_the_writer_are_printed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        let long = "x".repeat(PARTIAL_LINE_SIZE * 2 + 10);
        writer
            .write(Stream::Stdout, format!("{long}\n").as_bytes(), at(1))
            .unwrap();
        writer.write(Stream::Stderr, b"short\n", at(2)).unwrap();
        writer.write(Stream::Stdout, b"no newline", at(3)).unwrap();
        writer.close().unwrap();
        let out = print(&[LogSource::new("big-1", path)], &plain());
        assert_eq!(
            out,
            format!("big-1  | {long}\nbig-1  | short\nbig-1  | no newline\n")
        );
    }

    #[test]
    fn a_missing_log_has_no_lines_and_a_bad_record_is_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let good = log_file(dir.path(), "web-1", &[(1, "one")]);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&good.path)
            .unwrap();
        file.write_all(b"not json\n").unwrap();
        let never_started = LogSource::new("db-1", dir.path().join("db-json.log"));
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let lines = print_logs(&[good, never_started], &plain(), &mut out, |e| {
            problems.push(e.to_string())
        })
        .unwrap();
        assert_eq!(lines, 1);
        assert_eq!(String::from_utf8(out).unwrap(), "web-1  | one\n");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("cannot read the logs of web-1: ")
                && problems[0].contains("web-1-json.log"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_closed_output_is_an_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let err = print_logs(&two_services(dir.path()), &plain(), Closed, |_| {}).unwrap_err();
        assert!(matches!(&err, LogsError::Write(e) if e.kind() == std::io::ErrorKind::BrokenPipe));
        assert!(err.to_string().starts_with("cannot write the logs"));
    }

    /// The issue's goal: a 200,000-line log printed in under 0.2 s (release build).
    /// Debug builds are several times slower, so this only guards against gross
    /// regressions; run with `--nocapture` to see the figure.
    #[test]
    fn prints_200_000_lines_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        let mut chunk = Vec::new();
        for n in 0..200_000u32 {
            chunk.extend_from_slice(format!("GET /index.html 200 request {n}\n").as_bytes());
            if n % 1000 == 999 {
                writer
                    .write(Stream::Stdout, &chunk, at(u64::from(n)))
                    .unwrap();
                chunk.clear();
            }
        }
        writer.close().unwrap();
        let sources = [LogSource::new("app-1", path)];
        let mut out = Vec::with_capacity(16 << 20);
        let started = Instant::now();
        let lines = print_logs(&sources, &plain(), &mut out, |e| panic!("{e}")).unwrap();
        let elapsed = started.elapsed();
        println!("printed {lines} lines in {elapsed:?}");
        assert_eq!(lines, 200_000);
        assert!(out.ends_with(b"app-1  | GET /index.html 200 request 199999\n"));
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
}
