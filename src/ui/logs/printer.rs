//! Writing log lines with Compose's prefixes and colours, and joining the pieces of
//! lines longer than 16 KiB.

use std::io::{self, BufWriter, Write};
use std::time::SystemTime;

use console::Style;
use rcompose_runtime::logs::{LogRecord, Stream, PARTIAL_LINE_SIZE};

use super::time::TimestampWriter;
use super::{LogStyle, LogsError};

/// Compose's colour rotation: five colours, then the same five in bold.
fn rotation_style(index: usize) -> Style {
    let base = Style::new().force_styling(true);
    let colored = match index % 5 {
        0 => base.cyan(),
        1 => base.yellow(),
        2 => base.green(),
        3 => base.magenta(),
        _ => base.blue(),
    };
    if index % 10 >= 5 {
        colored.bold()
    } else {
        colored
    }
}

/// One name that log lines are printed under, e.g. `web-1`.
#[derive(Debug)]
struct Presenter {
    name: String,
    style: Option<Style>,
    /// `name` padded to the common width, then ` | `, coloured.
    prefix: Vec<u8>,
}

/// A complete line of one container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    pub(super) time: SystemTime,
    /// Without its line feed.
    pub(super) text: Vec<u8>,
}

/// Prints lines under prefixes padded to the longest name, as Compose does.
pub(super) struct Printer<W: Write> {
    out: BufWriter<W>,
    style: LogStyle,
    presenters: Vec<Presenter>,
    colors_used: usize,
    timestamps: TimestampWriter,
    lines: u64,
}

impl<W: Write> Printer<W> {
    pub(super) fn new(out: W, style: LogStyle) -> Self {
        Printer {
            out: BufWriter::with_capacity(64 * 1024, out),
            style,
            presenters: Vec::new(),
            colors_used: 0,
            timestamps: TimestampWriter::default(),
            lines: 0,
        }
    }

    /// The presenter for `name`, created with the next colour if new. Every prefix
    /// is padded again when a longer name arrives (a replica added while following).
    pub(super) fn presenter(&mut self, name: &str) -> usize {
        if let Some(index) = self.presenters.iter().position(|p| p.name == name) {
            return index;
        }
        let style = self.style.color.then(|| {
            self.colors_used += 1;
            rotation_style(self.colors_used - 1)
        });
        self.presenters.push(Presenter {
            name: name.to_string(),
            style,
            prefix: Vec::new(),
        });
        self.pad_prefixes();
        self.presenters.len() - 1
    }

    fn pad_prefixes(&mut self) {
        if !self.style.prefix {
            return;
        }
        let width = self
            .presenters
            .iter()
            .map(|p| p.name.chars().count())
            .max()
            .unwrap_or(0)
            + 1;
        for presenter in &mut self.presenters {
            let plain = format!("{:<width$} | ", presenter.name);
            presenter.prefix = match &presenter.style {
                Some(style) => style.apply_to(plain).to_string().into_bytes(),
                None => plain.into_bytes(),
            };
        }
    }

    /// Writes `line` under presenter `who` (from [`Printer::presenter`]).
    pub(super) fn print(&mut self, who: usize, line: &Line) -> Result<(), LogsError> {
        self.write_line(who, line).map_err(LogsError::Write)?;
        self.lines += 1;
        Ok(())
    }

    fn write_line(&mut self, who: usize, line: &Line) -> io::Result<()> {
        if let Some(presenter) = self.presenters.get(who) {
            self.out.write_all(&presenter.prefix)?;
        }
        if self.style.timestamps {
            self.timestamps.write(&mut self.out, line.time)?;
            self.out.write_all(b" ")?;
        }
        self.out.write_all(&line.text)?;
        self.out.write_all(b"\n")
    }

    /// A line about the container itself (`web-1 exited with code 0`), in its colour.
    pub(super) fn status(&mut self, name: &str, message: &str) -> Result<(), LogsError> {
        let who = self.presenter(name);
        let text = format!("{name} {message}");
        let styled = match &self.presenters[who].style {
            Some(style) => style.apply_to(text).to_string(),
            None => text,
        };
        writeln!(self.out, "{styled}").map_err(LogsError::Write)
    }

    pub(super) fn flush(&mut self) -> Result<(), LogsError> {
        self.out.flush().map_err(LogsError::Write)
    }

    /// Lines printed so far (status lines not counted).
    pub(super) fn lines(&self) -> u64 {
        self.lines
    }
}

/// Joins the partial records of one container back into lines, per stream.
///
/// The writer cuts a line into 16 KiB partial records, and writes whatever is left
/// unterminated when the container's output closes as one shorter partial record.
/// So a full-size partial waits for the rest of its line, and a shorter one ends it.
#[derive(Debug, Default)]
pub(super) struct LineJoiner {
    stdout: Option<Line>,
    stderr: Option<Line>,
}

impl LineJoiner {
    /// The line `record` completes, if any; its time is that of its first piece.
    pub(super) fn push(&mut self, record: LogRecord) -> Option<Line> {
        let expects_more = record.line.len() >= PARTIAL_LINE_SIZE && record.is_partial();
        let mut text = record.line;
        if text.last() == Some(&b'\n') {
            text.pop();
        }
        let slot = match record.stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let line = match slot.take() {
            Some(mut started) => {
                started.text.extend_from_slice(&text);
                started
            }
            None => Line {
                time: record.time,
                text,
            },
        };
        if expects_more {
            *slot = Some(line);
            None
        } else {
            Some(line)
        }
    }

    /// Lines still waiting for their end (the log ended inside them), oldest first.
    pub(super) fn take_unfinished(&mut self) -> Vec<Line> {
        let mut lines: Vec<Line> = [self.stdout.take(), self.stderr.take()]
            .into_iter()
            .flatten()
            .collect();
        lines.sort_by_key(|line| line.time);
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(second: u64) -> SystemTime {
        UNIX_EPOCH + Duration::new(1_704_110_400 + second, 0)
    }

    fn line(second: u64, text: &str) -> Line {
        Line {
            time: at(second),
            text: text.as_bytes().to_vec(),
        }
    }

    fn printed(style: LogStyle, run: impl FnOnce(&mut Printer<&mut Vec<u8>>)) -> String {
        let mut out = Vec::new();
        let mut printer = Printer::new(&mut out, style);
        run(&mut printer);
        printer.flush().unwrap();
        drop(printer);
        String::from_utf8(out).unwrap()
    }

    const PLAIN: LogStyle = LogStyle {
        color: false,
        prefix: true,
        timestamps: false,
    };

    #[test]
    fn prefixes_are_padded_to_the_longest_name() {
        let out = printed(PLAIN, |p| {
            let web = p.presenter("web-1");
            let db = p.presenter("database-1");
            p.print(web, &line(0, "hello")).unwrap();
            p.print(db, &line(1, "ready")).unwrap();
        });
        assert_eq!(out, "web-1       | hello\ndatabase-1  | ready\n");
    }

    #[test]
    fn a_longer_name_added_later_widens_every_prefix() {
        let out = printed(PLAIN, |p| {
            let web = p.presenter("web-1");
            p.print(web, &line(0, "one")).unwrap();
            let worker = p.presenter("worker-10");
            assert_eq!(p.presenter("web-1"), web, "names are registered once");
            p.print(web, &line(1, "two")).unwrap();
            p.print(worker, &line(2, "three")).unwrap();
        });
        assert_eq!(out, "web-1  | one\nweb-1      | two\nworker-10  | three\n");
    }

    #[test]
    fn colours_follow_composes_rotation_and_only_the_prefix_is_coloured() {
        let style = LogStyle {
            color: true,
            ..PLAIN
        };
        let out = printed(style, |p| {
            let names: Vec<String> = (1..=6).map(|n| format!("s-{n}")).collect();
            for name in &names {
                let who = p.presenter(name);
                p.print(who, &line(0, "x")).unwrap();
            }
        });
        let lines: Vec<&str> = out.lines().collect();
        // cyan, yellow, green, magenta, blue, then bold cyan.
        assert_eq!(lines[0], "\u{1b}[36ms-1  | \u{1b}[0mx");
        assert_eq!(lines[1], "\u{1b}[33ms-2  | \u{1b}[0mx");
        assert_eq!(lines[2], "\u{1b}[32ms-3  | \u{1b}[0mx");
        assert_eq!(lines[3], "\u{1b}[35ms-4  | \u{1b}[0mx");
        assert_eq!(lines[4], "\u{1b}[34ms-5  | \u{1b}[0mx");
        assert_eq!(lines[5], "\u{1b}[36m\u{1b}[1ms-6  | \u{1b}[0mx");
    }

    #[test]
    fn without_colour_there_are_no_escape_codes() {
        let out = printed(PLAIN, |p| {
            let who = p.presenter("web-1");
            p.print(who, &line(0, "x")).unwrap();
            p.status("web-1", "exited with code 0").unwrap();
        });
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert_eq!(out, "web-1  | x\nweb-1 exited with code 0\n");
    }

    #[test]
    fn no_prefix_and_timestamps() {
        let style = LogStyle {
            color: true,
            prefix: false,
            timestamps: true,
        };
        let out = printed(style, |p| {
            let who = p.presenter("web-1");
            p.print(
                who,
                &Line {
                    time: at(0) + Duration::from_nanos(42),
                    text: b"hi".to_vec(),
                },
            )
            .unwrap();
        });
        assert_eq!(out, "2024-01-01T12:00:00.000000042Z hi\n");
    }

    fn record(stream: Stream, second: u64, text: &[u8]) -> LogRecord {
        LogRecord {
            stream,
            time: at(second),
            line: text.to_vec(),
        }
    }

    #[test]
    fn full_partials_wait_for_the_rest_of_their_line_per_stream() {
        let mut joiner = LineJoiner::default();
        let chunk = vec![b'a'; PARTIAL_LINE_SIZE];
        assert_eq!(joiner.push(record(Stream::Stdout, 1, &chunk)), None);
        // The other stream is independent.
        assert_eq!(
            joiner.push(record(Stream::Stderr, 2, b"err\n")),
            Some(line(2, "err"))
        );
        let joined = joiner.push(record(Stream::Stdout, 3, b"end\n")).unwrap();
        assert_eq!(joined.time, at(1), "the line keeps its first piece's time");
        assert_eq!(joined.text.len(), PARTIAL_LINE_SIZE + 3);
        assert!(joined.text.ends_with(b"aend"));
        // A short partial is an unterminated last line: nothing follows it.
        assert_eq!(
            joiner.push(record(Stream::Stdout, 4, b"no newline")),
            Some(line(4, "no newline"))
        );
        assert!(joiner.take_unfinished().is_empty());
        assert_eq!(joiner.push(record(Stream::Stderr, 5, &chunk)), None);
        let unfinished = joiner.take_unfinished();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].text, chunk);
    }
}
