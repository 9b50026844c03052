//! Appends json-file records and rotates the files, as dockerd's json-file driver.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use flate2::{Compression, GzBuilder};

use super::format::{encode_record, format_time};
use super::{LogError, LogOptions, Stream, PARTIAL_LINE_SIZE};

/// dockerd creates log files readable by the group only.
const LOG_FILE_MODE: u32 = 0o640;

/// Bytes of one stream not yet written as a record.
#[derive(Debug, Default)]
struct PendingLine {
    bytes: Vec<u8>,
    /// Time of the first partial record of the current line; the rest of the
    /// line's records reuse it, as dockerd does.
    partial_time: Option<SystemTime>,
    /// Time of the last write, stamped on an unterminated line flushed at close.
    last_write: Option<SystemTime>,
}

/// Writes a container's output to `path` in Docker's json-file format.
///
/// Not synchronised: give each container one writer and call it from one place.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    options: LogOptions,
    file: File,
    size: u64,
    stdout: PendingLine,
    stderr: PendingLine,
    /// Timestamp of the last record in the current file, for the gzip header.
    last_record_time: Option<SystemTime>,
    record: Vec<u8>,
    closed: bool,
}

impl LogWriter {
    /// Opens (or creates) `path` for appending; existing records are kept.
    pub fn open(path: impl AsRef<Path>, options: LogOptions) -> Result<Self, LogError> {
        options.validate()?;
        let path = path.as_ref().to_path_buf();
        let file = open_append(&path)?;
        let size = file
            .metadata()
            .map_err(|e| LogError::io("inspect", &path, e))?
            .len();
        Ok(LogWriter {
            path,
            options,
            file,
            size,
            stdout: PendingLine::default(),
            stderr: PendingLine::default(),
            last_record_time: None,
            record: Vec::new(),
            closed: false,
        })
    }

    /// The current log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds output of `stream` read at `time`. Complete lines become records at
    /// once; a line reaching 16 KiB without a newline is written in 16 KiB
    /// partial records; the rest waits for more bytes or [`LogWriter::close`].
    pub fn write(
        &mut self,
        stream: Stream,
        bytes: &[u8],
        time: SystemTime,
    ) -> Result<(), LogError> {
        format_time(time).ok_or(LogError::TimeOutOfRange { time })?;
        let pending = self.pending_mut(stream);
        pending.bytes.extend_from_slice(bytes);
        pending.last_write = Some(time);
        self.emit_ready_records(stream, time)
    }

    /// Writes unterminated lines as partial records and closes the file.
    pub fn close(mut self) -> Result<(), LogError> {
        self.closed = true;
        self.flush_unterminated()
    }

    fn pending_mut(&mut self, stream: Stream) -> &mut PendingLine {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    /// Writes every complete line and every full 16 KiB chunk of `stream`.
    fn emit_ready_records(&mut self, stream: Stream, now: SystemTime) -> Result<(), LogError> {
        loop {
            let pending = self.pending_mut(stream);
            let window = pending.bytes.len().min(PARTIAL_LINE_SIZE);
            let newline = pending
                .bytes
                .get(..window)
                .and_then(|head| head.iter().position(|b| *b == b'\n'));
            let (take, time) = match newline {
                Some(at) => (at + 1, pending.partial_time.take().unwrap_or(now)),
                None if pending.bytes.len() >= PARTIAL_LINE_SIZE => {
                    (PARTIAL_LINE_SIZE, *pending.partial_time.get_or_insert(now))
                }
                None => return Ok(()),
            };
            let text: Vec<u8> = pending.bytes.drain(..take).collect();
            self.append_record(stream, &text, time)?;
        }
    }

    fn flush_unterminated(&mut self) -> Result<(), LogError> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = self.pending_mut(stream);
            if pending.bytes.is_empty() {
                continue;
            }
            let text = std::mem::take(&mut pending.bytes);
            let time = pending
                .partial_time
                .take()
                .or(pending.last_write)
                .unwrap_or_else(SystemTime::now);
            self.append_record(stream, &text, time)?;
        }
        Ok(())
    }

    /// One record, in one `write` so that readers never see half of it.
    fn append_record(
        &mut self,
        stream: Stream,
        text: &[u8],
        time: SystemTime,
    ) -> Result<(), LogError> {
        if self.options.max_size.is_some_and(|max| self.size >= max) {
            self.rotate()?;
        }
        self.record.clear();
        encode_record(&mut self.record, stream, text, time)
            .ok_or(LogError::TimeOutOfRange { time })?;
        self.file
            .write_all(&self.record)
            .map_err(|e| LogError::io("write", &self.path, e))?;
        self.size += self.record.len() as u64;
        self.last_record_time = Some(time);
        Ok(())
    }

    /// `path` → `path.1` → ... → `path.{max_file-1}`, oldest dropped. Each step is
    /// a rename and the fresh current file replaces `path` by rename, so `path`
    /// always exists and a reader never sees a half-written file.
    fn rotate(&mut self) -> Result<(), LogError> {
        let keep = self.options.max_file;
        if keep >= 2 {
            self.shift_rotated_files(keep)?;
        }
        let fresh_path = sibling(&self.path, ".rotating");
        let fresh = create_fresh(&fresh_path)?;
        if keep >= 2 {
            let first = sibling(&self.path, ".1");
            remove_if_exists(&first)?;
            std::fs::hard_link(&self.path, &first)
                .map_err(|e| LogError::io("link the rotated log to", &first, e))?;
        }
        std::fs::rename(&fresh_path, &self.path)
            .map_err(|e| LogError::io("replace", &self.path, e))?;
        self.file = fresh;
        self.size = 0;
        let last_time = self.last_record_time.take();
        if self.options.compress && keep >= 2 {
            compress_rotated(&sibling(&self.path, ".1"), last_time)?;
        }
        Ok(())
    }

    fn shift_rotated_files(&self, keep: u32) -> Result<(), LogError> {
        for suffix in ["", ".gz"] {
            remove_if_exists(&sibling(&self.path, &format!(".{}{suffix}", keep - 1)))?;
        }
        for index in (2..keep).rev() {
            for suffix in ["", ".gz"] {
                let from = sibling(&self.path, &format!(".{}{suffix}", index - 1));
                let to = sibling(&self.path, &format!(".{index}{suffix}"));
                match std::fs::rename(&from, &to) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(LogError::io("rotate", &from, e)),
                }
            }
        }
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if !self.closed {
            // Best effort: an error here has nobody to go to; `close` reports it.
            let _ = self.flush_unterminated();
        }
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)
        .map_err(|e| LogError::io("open the log file", path, e))
}

fn create_fresh(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(LOG_FILE_MODE)
        .open(path)
        .map_err(|e| LogError::io("create", path, e))
}

fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io("remove", path, e)),
    }
}

/// `path` → `path.gz` with dockerd's `{"lastTime":...}` gzip header extra. The
/// gzip is written under a temporary name and renamed into place before the
/// plain file goes, so one complete copy always exists.
fn compress_rotated(path: &Path, last_time: Option<SystemTime>) -> Result<(), LogError> {
    let gz_path = sibling(path, ".gz");
    let tmp_path = sibling(path, ".gz.tmp");
    let mut source = File::open(path).map_err(|e| LogError::io("open", path, e))?;
    let target = create_fresh(&tmp_path)?;
    let mut builder = GzBuilder::new();
    if let Some(extra) = last_time.and_then(format_time) {
        builder = builder.extra(format!("{{\"lastTime\":\"{extra}\"}}"));
    }
    let mut encoder = builder.write(target, Compression::default());
    io::copy(&mut source, &mut encoder).map_err(|e| LogError::io("compress", path, e))?;
    encoder
        .finish()
        .and_then(|file| file.sync_all())
        .map_err(|e| LogError::io("compress", path, e))?;
    std::fs::rename(&tmp_path, &gz_path).map_err(|e| LogError::io("rename", &tmp_path, e))?;
    remove_if_exists(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, UNIX_EPOCH};

    const NOON: u64 = 1_704_110_400; // 2024-01-01T12:00:00Z

    fn at(nanos: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOON) + Duration::from_nanos(nanos)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn lines_become_dockerd_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        writer.write(Stream::Stdout, b"hello\nwor", at(1)).unwrap();
        writer.write(Stream::Stderr, b"oops\n", at(2)).unwrap();
        writer
            .write(Stream::Stdout, b"ld\n\ntail", at(123_456_789))
            .unwrap();
        writer.close().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            concat!(
                "{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T12:00:00.000000001Z\"}\n",
                "{\"log\":\"oops\\n\",\"stream\":\"stderr\",\"time\":\"2024-01-01T12:00:00.000000002Z\"}\n",
                "{\"log\":\"world\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T12:00:00.123456789Z\"}\n",
                "{\"log\":\"\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T12:00:00.123456789Z\"}\n",
                "{\"log\":\"tail\",\"stream\":\"stdout\",\"time\":\"2024-01-01T12:00:00.123456789Z\"}\n",
            )
        );
    }

    #[test]
    fn long_lines_split_at_16_kib_with_the_first_partial_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        let mut line = vec![b'x'; PARTIAL_LINE_SIZE * 2 + 10];
        line.push(b'\n');
        let (first, second) = line.split_at(100);
        writer.write(Stream::Stdout, first, at(1)).unwrap();
        writer.write(Stream::Stdout, second, at(2)).unwrap();
        // A line of exactly 16 KiB: one partial record, then the newline alone.
        let mut exact = vec![b'y'; PARTIAL_LINE_SIZE];
        exact.push(b'\n');
        writer.write(Stream::Stderr, &exact, at(3)).unwrap();
        writer.close().unwrap();

        let records = lines(&path);
        let x16k = "x".repeat(PARTIAL_LINE_SIZE);
        let y16k = "y".repeat(PARTIAL_LINE_SIZE);
        let t = |n: u32| format!("2024-01-01T12:00:00.00000000{n}Z");
        assert_eq!(
            records,
            vec![
                format!(r#"{{"log":"{x16k}","stream":"stdout","time":"{}"}}"#, t(2)),
                format!(r#"{{"log":"{x16k}","stream":"stdout","time":"{}"}}"#, t(2)),
                format!(
                    r#"{{"log":"xxxxxxxxxx\n","stream":"stdout","time":"{}"}}"#,
                    t(2)
                ),
                format!(r#"{{"log":"{y16k}","stream":"stderr","time":"{}"}}"#, t(3)),
                format!(r#"{{"log":"\n","stream":"stderr","time":"{}"}}"#, t(3)),
            ]
        );
    }

    #[test]
    fn rotation_keeps_max_file_files_and_the_newest_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let options = LogOptions {
            max_size: Some(200),
            max_file: 3,
            compress: false,
        };
        let mut writer = LogWriter::open(&path, options).unwrap();
        for n in 0..20 {
            writer
                .write(Stream::Stdout, format!("line {n:02}\n").as_bytes(), at(n))
                .unwrap();
        }
        writer.close().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["c-json.log", "c-json.log.1", "c-json.log.2"]);
        // The three files hold the newest records, oldest file first, in order.
        let all: Vec<String> = [".2", ".1", ""]
            .iter()
            .flat_map(|suffix| lines(&sibling(&path, suffix)))
            .collect();
        let first = 20 - all.len();
        assert!(all.len() >= 6, "{all:?}");
        for (offset, record) in all.iter().enumerate() {
            let expected = format!("line {:02}", first + offset);
            assert!(record.contains(&expected), "{expected} in {record}");
        }
        assert!(std::fs::metadata(&path).unwrap().len() < 300);
    }

    #[test]
    fn max_file_one_starts_over_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let options = LogOptions {
            max_size: Some(100),
            max_file: 1,
            compress: false,
        };
        let mut writer = LogWriter::open(&path, options).unwrap();
        for n in 0..5 {
            writer
                .write(Stream::Stdout, format!("line {n}\n").as_bytes(), at(n))
                .unwrap();
        }
        writer.close().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let left = lines(&path);
        // Two records fill 100 bytes: 0 1 | 2 3 | 4.
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left.concat().contains("line 4"));
    }

    #[test]
    fn compressed_rotation_writes_gzip_with_last_time_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let options = LogOptions {
            max_size: Some(100),
            max_file: 3,
            compress: true,
        };
        let mut writer = LogWriter::open(&path, options).unwrap();
        // Two records fill 100 bytes: .2.gz = 0 1, .1.gz = 2 3, current = 4 5.
        for n in 0..6 {
            writer
                .write(Stream::Stderr, format!("line {n}\n").as_bytes(), at(n))
                .unwrap();
        }
        writer.close().unwrap();
        let gz = sibling(&path, ".1.gz");
        let mut decoder = flate2::read::GzDecoder::new(File::open(&gz).unwrap());
        let mut text = String::new();
        decoder.read_to_string(&mut text).unwrap();
        assert!(text.starts_with(r#"{"log":"line 2\n""#), "{text}");
        assert!(
            text.contains("line 3") && !text.contains("line 4"),
            "{text}"
        );
        let extra = decoder.header().unwrap().extra().unwrap();
        assert_eq!(
            std::str::from_utf8(extra).unwrap(),
            r#"{"lastTime":"2024-01-01T12:00:00.000000003Z"}"#
        );
        assert!(sibling(&path, ".2.gz").exists());
        assert!(!sibling(&path, ".1").exists());
    }

    #[test]
    fn reopening_appends_and_bad_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        LogWriter::open(&path, LogOptions::default())
            .unwrap()
            .write(Stream::Stdout, b"one\n", at(1))
            .unwrap();
        let mut writer = LogWriter::open(&path, LogOptions::default()).unwrap();
        writer.write(Stream::Stdout, b"two\n", at(2)).unwrap();
        let err = writer
            .write(Stream::Stdout, b"x\n", UNIX_EPOCH - Duration::from_secs(1))
            .unwrap_err();
        assert!(err.to_string().contains("1970"), "{err}");
        drop(writer);
        assert_eq!(lines(&path).len(), 2);

        let bad = LogOptions {
            max_size: Some(0),
            ..LogOptions::default()
        };
        assert!(LogWriter::open(dir.path().join("other"), bad).is_err());
        let err =
            LogWriter::open(dir.path().join("missing/dir/log"), LogOptions::default()).unwrap_err();
        assert!(err.to_string().contains("missing/dir/log"), "{err}");
    }
}
