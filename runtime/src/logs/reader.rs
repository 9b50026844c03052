//! Reading json-file logs: a snapshot of all files ([`LogReader`]) and the
//! records appended afterwards ([`LogFollower`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::files::{
    complete_end, count_lines, decode_lines, first_line, gzip_last_time, next_complete_line,
    open_parts, tail_start, whole_content, FileId, OpenPart, Part, RangeReader,
};
use super::format::decode_record;
use super::{LogError, LogRecord, ReadOptions};

/// What `since`/`until` say about one record.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Skip,
    Stop,
}

#[derive(Debug, Clone, Copy, Default)]
struct TimeFilter {
    since: Option<SystemTime>,
    until: Option<SystemTime>,
}

impl TimeFilter {
    fn from_options(options: &ReadOptions) -> Self {
        TimeFilter {
            since: options.since,
            until: options.until,
        }
    }

    fn verdict(&self, time: SystemTime) -> Verdict {
        if self.until.is_some_and(|until| time > until) {
            Verdict::Stop
        } else if self.since.is_some_and(|since| time < since) {
            Verdict::Skip
        } else {
            Verdict::Keep
        }
    }
}

/// Part of one file still to be read by a [`LogReader`].
struct Source {
    part: Part,
    content: Box<dyn BufRead + Send>,
    /// Position of `content` in the (uncompressed) file, for error messages.
    offset: u64,
    /// Lines to pass over first (tail of a gzipped file).
    skip_lines: usize,
}

/// Where the snapshot of the current file ends; a follower starts there.
#[derive(Debug)]
struct FollowStart {
    file: File,
    id: FileId,
    offset: u64,
}

/// The records of a log's files as they were when opened, oldest first.
///
/// Yields `Err` for a line that is not a json-file record and goes on with the
/// next one. Rotations after [`LogReader::open`] do not disturb it: the files
/// stay open and the current file is read only up to its length at that time.
pub struct LogReader {
    path: PathBuf,
    sources: VecDeque<Source>,
    filter: TimeFilter,
    stopped: bool,
    follow_start: FollowStart,
    line: Vec<u8>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("path", &self.path)
            .field("sources_left", &self.sources.len())
            .field("stopped", &self.stopped)
            .finish()
    }
}

impl LogReader {
    /// Opens the log whose current file is `path` (rotated files next to it).
    pub fn open(path: impl AsRef<Path>, options: &ReadOptions) -> Result<Self, LogError> {
        let path = path.as_ref().to_path_buf();
        let parts = open_parts(&path)?;
        let current = parts
            .first()
            .filter(|part| part.part.index == 0)
            .ok_or_else(|| LogError::io("open", &path, io::Error::from(io::ErrorKind::NotFound)))?;
        let current_end =
            complete_end(&current.file, current.len).map_err(|e| LogError::io("read", &path, e))?;
        let follow_start = FollowStart {
            file: current
                .file
                .try_clone()
                .map_err(|e| LogError::io("reopen", &path, e))?,
            id: current.id,
            offset: current_end,
        };
        let sources = plan_sources(&parts, current_end, options)?;
        Ok(LogReader {
            path,
            sources,
            filter: TimeFilter::from_options(options),
            stopped: false,
            follow_start,
            line: Vec::new(),
        })
    }

    /// A follower that continues exactly after the last record of this snapshot,
    /// with the same `since`/`until`.
    pub fn follower(&self) -> Result<LogFollower, LogError> {
        let file = self
            .follow_start
            .file
            .try_clone()
            .map_err(|e| LogError::io("reopen", &self.path, e))?;
        Ok(LogFollower::starting_at(
            self.path.clone(),
            file,
            self.follow_start.id,
            self.follow_start.offset,
            self.filter,
        ))
    }

    fn next_line(&mut self) -> Option<Result<(Part, u64), LogError>> {
        loop {
            let source = self.sources.front_mut()?;
            match next_complete_line(&mut *source.content, &mut self.line) {
                Err(e) => {
                    let path = source.part.path.clone();
                    self.sources.pop_front();
                    return Some(Err(LogError::io("read", &path, e)));
                }
                Ok(None) => {
                    self.sources.pop_front();
                }
                Ok(Some(taken)) => {
                    let offset = source.offset;
                    source.offset += taken;
                    if source.skip_lines > 0 {
                        source.skip_lines -= 1;
                        continue;
                    }
                    return Some(Ok((source.part.clone(), offset)));
                }
            }
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<LogRecord, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.stopped {
            let (part, offset) = match self.next_line()? {
                Ok(found) => found,
                Err(e) => return Some(Err(e)),
            };
            let record = match decode_record(&self.line) {
                Ok(record) => record,
                Err(reason) => {
                    return Some(Err(LogError::Decode {
                        path: part.path,
                        offset,
                        compressed: part.compressed,
                        reason,
                    }))
                }
            };
            match self.filter.verdict(record.time) {
                Verdict::Keep => return Some(Ok(record)),
                Verdict::Skip => {}
                Verdict::Stop => self.stopped = true,
            }
        }
        None
    }
}

/// Which byte ranges of which files to read, oldest first. With `tail`, only
/// the files (and the part of the oldest of them) holding the last N lines.
fn plan_sources(
    parts: &[OpenPart],
    current_end: u64,
    options: &ReadOptions,
) -> Result<VecDeque<Source>, LogError> {
    let mut remaining = options.tail.unwrap_or(usize::MAX);
    let mut planned = VecDeque::new();
    for part in parts {
        if remaining == 0 {
            break;
        }
        if is_before_since(part, options.since) {
            continue;
        }
        let end = if part.part.index == 0 {
            current_end
        } else {
            part.len
        };
        let source = if part.part.compressed {
            gzip_source(part, &mut remaining, options.tail.is_some())?
        } else {
            plain_source(part, end, &mut remaining, options.tail.is_some())?
        };
        planned.push_front(source);
    }
    Ok(planned)
}

/// dockerd's shortcut: a gzipped file whose header says its last record is
/// older than `since` need not be opened.
fn is_before_since(part: &OpenPart, since: Option<SystemTime>) -> bool {
    match since {
        Some(since) if part.part.compressed => gzip_last_time(part).is_some_and(|t| t < since),
        _ => false,
    }
}

fn plain_source(
    part: &OpenPart,
    end: u64,
    remaining: &mut usize,
    tailing: bool,
) -> Result<Source, LogError> {
    let path = &part.part.path;
    let start = if tailing {
        let (start, lines) =
            tail_start(&part.file, end, *remaining).map_err(|e| LogError::io("read", path, e))?;
        *remaining -= lines;
        start
    } else {
        0
    };
    let file = part
        .file
        .try_clone()
        .map_err(|e| LogError::io("reopen", path, e))?;
    Ok(Source {
        part: part.part.clone(),
        content: Box::new(BufReader::new(RangeReader::new(file, start, end))),
        offset: start,
        skip_lines: 0,
    })
}

fn gzip_source(part: &OpenPart, remaining: &mut usize, tailing: bool) -> Result<Source, LogError> {
    let skip_lines = if tailing {
        let lines = count_lines(part)?;
        let taken = lines.min(*remaining);
        *remaining -= taken;
        lines - taken
    } else {
        0
    };
    Ok(Source {
        part: part.part.clone(),
        content: whole_content(part)?,
        offset: 0,
        skip_lines,
    })
}

/// Yields the records appended to a log since the last call, across rotations.
///
/// Call it when the log may have grown (for instance on an inotify event for the
/// log's directory): `next()` returns `None` once it has caught up, and new
/// records again after the writer appended more. It holds the current file
/// open, so a rotation never loses the rest of that file; the files rotated in
/// between are found by identity (inode, or first record once gzipped).
/// Records past `until` end it for good ([`LogFollower::is_finished`]).
pub struct LogFollower {
    path: PathBuf,
    file: File,
    id: FileId,
    offset: u64,
    filter: TimeFilter,
    finished: bool,
    queue: VecDeque<Result<LogRecord, LogError>>,
}

impl std::fmt::Debug for LogFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFollower")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("finished", &self.finished)
            .finish()
    }
}

impl LogFollower {
    /// Follows `path` from its current end (`docker logs -f --tail 0`).
    /// `tail` in `options` is ignored; `since`/`until` apply.
    pub fn open_at_end(path: impl AsRef<Path>, options: &ReadOptions) -> Result<Self, LogError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| LogError::io("open", &path, e))?;
        let id = FileId::of_file(&file, &path)?;
        let len = file
            .metadata()
            .map_err(|e| LogError::io("inspect", &path, e))?
            .len();
        let offset = complete_end(&file, len).map_err(|e| LogError::io("read", &path, e))?;
        Ok(Self::starting_at(
            path,
            file,
            id,
            offset,
            TimeFilter::from_options(options),
        ))
    }

    fn starting_at(path: PathBuf, file: File, id: FileId, offset: u64, filter: TimeFilter) -> Self {
        LogFollower {
            path,
            file,
            id,
            offset,
            filter,
            finished: false,
            queue: VecDeque::new(),
        }
    }

    /// True once a record newer than `until` was seen: nothing more will come.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// All records available now; on the first error the records after it stay
    /// queued for the next call.
    pub fn read_new(&mut self) -> Result<Vec<LogRecord>, LogError> {
        let mut records = Vec::new();
        for item in self.by_ref() {
            records.push(item?);
        }
        Ok(records)
    }

    /// Reads everything new into the queue: the rest of the current file, then
    /// any files rotated since, then the new current file.
    fn refill(&mut self) -> Result<(), LogError> {
        loop {
            let Some((newest, newest_id)) = self.replacement_file()? else {
                return self.drain_current();
            };
            // The old file is complete once another file took its name.
            self.drain_current()?;
            self.read_files_rotated_between(&newest, newest_id)?;
            self.file = newest;
            self.id = newest_id;
            self.offset = 0;
        }
    }

    /// The file now at `path` if it is not the one being read.
    fn replacement_file(&self) -> Result<Option<(File, FileId)>, LogError> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            // Mid-rotation by a writer that unlinks first: not replaced yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogError::io("open", &self.path, e)),
        };
        let id = FileId::of_file(&file, &self.path)?;
        Ok((id != self.id).then_some((file, id)))
    }

    fn drain_current(&mut self) -> Result<(), LogError> {
        let len = self
            .file
            .metadata()
            .map_err(|e| LogError::io("inspect", &self.path, e))?
            .len();
        if len < self.offset {
            // Truncated in place: start over from its beginning.
            self.offset = 0;
        }
        let file = self
            .file
            .try_clone()
            .map_err(|e| LogError::io("reopen", &self.path, e))?;
        let mut content = BufReader::new(RangeReader::new(file, self.offset, len));
        let part = Part {
            index: 0,
            path: self.path.clone(),
            compressed: false,
        };
        let mut decoded = VecDeque::new();
        let consumed = decode_lines(&mut content, &part, self.offset, &mut decoded)?;
        self.offset += consumed;
        self.queue.append(&mut decoded);
        Ok(())
    }

    /// Reads, oldest first, the rotated files newer than the one just finished
    /// and older than `newest` (more than one rotation since the last call).
    fn read_files_rotated_between(
        &mut self,
        newest: &File,
        newest_id: FileId,
    ) -> Result<(), LogError> {
        let parts = open_parts(&self.path)?;
        let ours = self.as_open_part(&self.file, self.id)?;
        let newest = self.as_open_part(newest, newest_id)?;
        let (our_first, newest_first) = (first_line(&ours), first_line(&newest));
        let mut seen_newest = parts
            .first()
            .is_some_and(|part| part.part.index == 0 && part.id == newest_id);
        let mut between = Vec::new();
        for part in parts.iter().filter(|part| part.part.index > 0) {
            if !seen_newest {
                seen_newest = is_same_file(part, newest_id, &newest_first);
                continue;
            }
            if is_same_file(part, self.id, &our_first) {
                break;
            }
            between.push(part);
        }
        for part in between.into_iter().rev() {
            let mut content = whole_content(part)?;
            let mut decoded = VecDeque::new();
            decode_lines(&mut content, &part.part, 0, &mut decoded)?;
            self.queue.append(&mut decoded);
        }
        Ok(())
    }

    fn as_open_part(&self, file: &File, id: FileId) -> Result<OpenPart, LogError> {
        let reopen = |e| LogError::io("reopen", &self.path, e);
        let len = file.metadata().map_err(reopen)?.len();
        Ok(OpenPart {
            part: Part {
                index: 0,
                path: self.path.clone(),
                compressed: false,
            },
            file: file.try_clone().map_err(reopen)?,
            id,
            len,
        })
    }
}

/// A plain file is recognised by inode; a gzipped copy by its first record.
fn is_same_file(part: &OpenPart, id: FileId, first: &Option<Vec<u8>>) -> bool {
    if part.part.compressed {
        first.is_some() && first_line(part) == *first
    } else {
        part.id == id
    }
}

impl Iterator for LogFollower {
    type Item = Result<LogRecord, LogError>;

    /// The next new record, or `None` when caught up (call again later).
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.finished {
                return None;
            }
            if self.queue.is_empty() {
                if let Err(e) = self.refill() {
                    return Some(Err(e));
                }
            }
            let record = match self.queue.pop_front()? {
                Ok(record) => record,
                Err(e) => return Some(Err(e)),
            };
            match self.filter.verdict(record.time) {
                Verdict::Keep => return Some(Ok(record)),
                Verdict::Skip => {}
                Verdict::Stop => {
                    self.finished = true;
                    self.queue.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogOptions, LogWriter, Stream};
    use std::io::Write;
    use std::sync::mpsc;
    use std::time::{Duration, UNIX_EPOCH};

    const NOON: u64 = 1_704_110_400; // 2024-01-01T12:00:00Z

    fn at(second: u64) -> SystemTime {
        UNIX_EPOCH + Duration::new(NOON + second, 1)
    }

    fn rotating(max_size: u64, max_file: u32, compress: bool) -> LogOptions {
        LogOptions {
            max_size: Some(max_size),
            max_file,
            compress,
        }
    }

    /// Writes "line N\n" for each N at second N.
    fn write_lines(writer: &mut LogWriter, range: std::ops::Range<u64>) {
        for n in range {
            let stream = if n % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            writer
                .write(stream, format!("line {n}\n").as_bytes(), at(n))
                .unwrap();
        }
    }

    fn texts(records: impl IntoIterator<Item = Result<LogRecord, LogError>>) -> Vec<String> {
        records
            .into_iter()
            .map(|r| String::from_utf8(r.unwrap().line).unwrap())
            .collect()
    }

    fn expected(range: std::ops::Range<u64>) -> Vec<String> {
        range.map(|n| format!("line {n}\n")).collect()
    }

    fn read(path: &Path, options: ReadOptions) -> Vec<String> {
        texts(LogReader::open(path, &options).unwrap())
    }

    #[test]
    fn reads_all_rotated_files_oldest_first() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c-json.log");
            let mut writer = LogWriter::open(&path, rotating(300, 5, compress)).unwrap();
            // Four records per file: 0-3 4-7 8-11 12-15.
            write_lines(&mut writer, 0..16);
            let oldest = if compress { "log.3.gz" } else { "log.3" };
            assert!(path.with_extension(oldest).exists());
            let records: Vec<LogRecord> = LogReader::open(&path, &ReadOptions::default())
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(
                texts(records.iter().cloned().map(Ok)),
                expected(0..16),
                "compress={compress}"
            );
            assert_eq!(records[3].stream, Stream::Stderr);
            assert_eq!(records[3].time, at(3));
        }
    }

    #[test]
    fn tail_spans_rotated_files() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c-json.log");
            // Four records per file: the last 6 lines cross a rotation.
            let mut writer = LogWriter::open(&path, rotating(300, 10, compress)).unwrap();
            write_lines(&mut writer, 0..14);
            let tail = |n| {
                read(
                    &path,
                    ReadOptions {
                        tail: Some(n),
                        ..ReadOptions::default()
                    },
                )
            };
            assert_eq!(tail(6), expected(8..14), "compress={compress}");
            assert_eq!(tail(1), expected(13..14));
            assert_eq!(tail(0), Vec::<String>::new());
            assert_eq!(tail(100), expected(0..14));
        }
    }

    #[test]
    fn since_and_until_select_a_time_window() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c-json.log");
            let mut writer = LogWriter::open(&path, rotating(300, 10, compress)).unwrap();
            write_lines(&mut writer, 0..14);
            let window = ReadOptions {
                since: Some(at(3)),
                until: Some(at(9)),
                tail: None,
            };
            assert_eq!(read(&path, window), expected(3..10), "compress={compress}");
            // As in dockerd, tail picks the last lines first, then the window applies.
            let tail_then_since = ReadOptions {
                tail: Some(4),
                since: Some(at(12)),
                until: None,
            };
            assert_eq!(read(&path, tail_then_since), expected(12..14));
        }
    }

    #[test]
    fn partial_records_read_back_as_pieces_of_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        let long = vec![b'z'; crate::logs::PARTIAL_LINE_SIZE + 3];
        writer.write(Stream::Stdout, &long, at(1)).unwrap();
        writer
            .write(Stream::Stdout, b"\nunterminated", at(2))
            .unwrap();
        writer.close().unwrap();
        let records: Vec<LogRecord> = LogReader::open(&path, &ReadOptions::default())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let partial: Vec<bool> = records.iter().map(LogRecord::is_partial).collect();
        assert_eq!(partial, [true, false, true]);
        let joined: Vec<u8> = records.iter().flat_map(|r| r.line.clone()).collect();
        let mut original = long.clone();
        original.extend_from_slice(b"\nunterminated");
        assert_eq!(joined, original);
        assert_eq!(
            records[1].time,
            at(1),
            "the line keeps its first partial's time"
        );
    }

    #[test]
    fn a_bad_line_is_reported_with_its_file_and_offset_and_reading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        write_lines(&mut writer, 0..1);
        let good_len = std::fs::metadata(&path).unwrap().len();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"garbage\n").unwrap();
        write_lines(&mut writer, 1..2);
        let results: Vec<_> = LogReader::open(&path, &ReadOptions::default())
            .unwrap()
            .collect();
        assert_eq!(results.len(), 3);
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(
            err.contains("c-json.log") && err.contains(&format!("byte {good_len}")),
            "{err}"
        );
        assert!(results[2].is_ok());
        let missing =
            LogReader::open(dir.path().join("nope.log"), &ReadOptions::default()).unwrap_err();
        assert!(missing.to_string().contains("nope.log"), "{missing}");
    }

    #[test]
    fn reader_ignores_a_record_still_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        write_lines(&mut writer, 0..2);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(br#"{"log":"half"#).unwrap();
        let reader = LogReader::open(&path, &ReadOptions::default()).unwrap();
        let mut follower = reader.follower().unwrap();
        assert_eq!(texts(reader), expected(0..2));
        assert!(follower.read_new().unwrap().is_empty());
        file.write_all(b"\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T12:00:05Z\"}\n")
            .unwrap();
        let rest = follower.read_new().unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].line, b"half\n");
    }

    #[test]
    fn follower_continues_across_rotations() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c-json.log");
            let mut writer = LogWriter::open(&path, rotating(300, 20, compress)).unwrap();
            write_lines(&mut writer, 0..3);
            let reader = LogReader::open(&path, &ReadOptions::default()).unwrap();
            let mut follower = reader.follower().unwrap();
            assert_eq!(texts(reader), expected(0..3));

            // One rotation between calls.
            write_lines(&mut writer, 3..6);
            assert_eq!(
                texts(follower.read_new().unwrap().into_iter().map(Ok)),
                expected(3..6)
            );
            // Several rotations between calls: the files in between are read too.
            write_lines(&mut writer, 6..30);
            assert_eq!(
                texts(follower.read_new().unwrap().into_iter().map(Ok)),
                expected(6..30),
                "compress={compress}"
            );
            assert!(follower.read_new().unwrap().is_empty());
            assert!(!follower.is_finished());
        }
    }

    #[test]
    fn follower_from_the_end_with_until_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut writer = LogWriter::open(&path, rotating(300, 1, false)).unwrap();
        write_lines(&mut writer, 0..3);
        let options = ReadOptions {
            until: Some(at(6)),
            ..ReadOptions::default()
        };
        let mut follower = LogFollower::open_at_end(&path, &options).unwrap();
        assert!(follower.read_new().unwrap().is_empty());
        // max-file 1 replaces the file; the follower finishes the old one first.
        write_lines(&mut writer, 3..6);
        assert_eq!(
            texts(follower.read_new().unwrap().into_iter().map(Ok)),
            expected(3..6)
        );
        assert!(!follower.is_finished());
        write_lines(&mut writer, 6..10);
        assert_eq!(
            texts(follower.read_new().unwrap().into_iter().map(Ok)),
            expected(6..7)
        );
        assert!(follower.is_finished());
        assert!(follower.read_new().unwrap().is_empty());
    }

    #[test]
    fn follower_starts_over_when_the_file_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        write_lines(&mut writer, 0..3);
        let mut follower = LogFollower::open_at_end(&path, &ReadOptions::default()).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        write_lines(&mut writer, 3..4);
        assert_eq!(
            texts(follower.read_new().unwrap().into_iter().map(Ok)),
            expected(3..4)
        );
    }

    /// A writer thread appends and rotates while this thread reads a snapshot
    /// and then follows; every record arrives exactly once and in order. The
    /// writer signals after each write (standing in for inotify).
    #[test]
    fn concurrent_writer_and_follower_lose_and_repeat_nothing() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c-json.log");
            let total = 400u64;
            let mut writer = LogWriter::open(&path, rotating(1000, 100, compress)).unwrap();
            write_lines(&mut writer, 0..20);
            let (wrote, woken) = mpsc::channel::<()>();
            let producer = std::thread::spawn(move || {
                for n in 20..total {
                    write_lines(&mut writer, n..n + 1);
                    if wrote.send(()).is_err() {
                        break;
                    }
                }
                writer.close().unwrap();
            });
            let reader = LogReader::open(&path, &ReadOptions::default()).unwrap();
            let mut follower = reader.follower().unwrap();
            let mut seen = texts(reader);
            while woken.recv().is_ok() {
                seen.extend(texts(follower.by_ref()));
            }
            producer.join().unwrap();
            seen.extend(texts(follower.by_ref()));
            assert_eq!(seen, expected(0..total), "compress={compress}");
        }
    }

    #[test]
    fn snapshots_taken_during_writes_are_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut writer = LogWriter::open(&path, rotating(500, 1000, false)).unwrap();
        write_lines(&mut writer, 0..1);
        let producer = std::thread::spawn(move || {
            write_lines(&mut writer, 1..300);
        });
        let mut snapshots = 0;
        while !producer.is_finished() {
            let lines = read(&path, ReadOptions::default());
            assert_eq!(lines, expected(0..lines.len() as u64));
            snapshots += 1;
        }
        producer.join().unwrap();
        assert!(snapshots > 0);
        assert_eq!(read(&path, ReadOptions::default()), expected(0..300));
    }
}
