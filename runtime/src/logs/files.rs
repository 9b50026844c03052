//! The set of files behind one log: `path` (current), `path.1`, `path.2`, ...
//! each possibly gzipped (`path.N.gz`), and the byte-level helpers to read them.

use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use flate2::read::GzDecoder;

use super::format::decode_record;
use super::{LogError, LogRecord};

/// How often opening the files is retried when a rotation changes them meanwhile.
const OPEN_ATTEMPTS: usize = 50;
/// Longest line read when comparing the first records of two files; dockerd's
/// records stay far below this (16 KiB of text, at most 6 bytes per input byte).
const FINGERPRINT_LIMIT: u64 = 1 << 20;
/// Block size of the backward scan that finds where the last N lines begin.
const TAIL_SCAN_BLOCK: u64 = 64 * 1024;

/// Identity of a file independent of its name, to notice renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(super) fn of(meta: &Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    pub(super) fn of_file(file: &File, path: &Path) -> Result<Self, LogError> {
        file.metadata()
            .map(|meta| FileId::of(&meta))
            .map_err(|e| LogError::io("inspect", path, e))
    }
}

/// One file of the log; `index` 0 is the current file, N is `path.N[.gz]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Part {
    pub(super) index: u32,
    pub(super) path: PathBuf,
    pub(super) compressed: bool,
}

/// An opened part with the identity and length it had when opened.
#[derive(Debug)]
pub(super) struct OpenPart {
    pub(super) part: Part,
    pub(super) file: File,
    pub(super) id: FileId,
    pub(super) len: u64,
}

/// Names of rotated files `path.N` / `path.N.gz`, keyed by N ascending (newest
/// first). When both forms exist (compression in progress) the plain one wins, as
/// it is complete and the gzip may not be yet.
fn rotated_parts(path: &Path) -> Result<Vec<Part>, LogError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let Some(base) = path.file_name().and_then(|name| name.to_str()) else {
        return Ok(Vec::new());
    };
    let entries = std::fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))?;
    let mut parts: Vec<Part> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some((index, compressed)) = name.to_str().and_then(|n| rotated_index(base, n)) else {
            continue;
        };
        parts.push(Part {
            index,
            path: entry.path(),
            compressed,
        });
    }
    parts.sort_by_key(|part| (part.index, part.compressed));
    parts.dedup_by_key(|part| part.index);
    Ok(parts)
}

/// `base.N` → (N, false), `base.N.gz` → (N, true); N ≥ 1.
fn rotated_index(base: &str, name: &str) -> Option<(u32, bool)> {
    let suffix = name.strip_prefix(base)?.strip_prefix('.')?;
    let (digits, compressed) = match suffix.strip_suffix(".gz") {
        Some(digits) => (digits, true),
        None => (suffix, false),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u32 = digits.parse().ok()?;
    (index >= 1).then_some((index, compressed))
}

/// Every part with the identity its name currently points to; the current file
/// first when it exists.
fn survey(path: &Path) -> Result<Vec<(Part, FileId)>, LogError> {
    let current = Part {
        index: 0,
        path: path.to_path_buf(),
        compressed: false,
    };
    let mut surveyed = Vec::new();
    for part in std::iter::once(current).chain(rotated_parts(path)?) {
        match std::fs::metadata(&part.path) {
            Ok(meta) => surveyed.push((part, FileId::of(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("inspect", &part.path, e)),
        }
    }
    Ok(surveyed)
}

/// Opens every part (current first) such that no rotation happened in between:
/// the names must point to the same files before and after opening.
pub(super) fn open_parts(path: &Path) -> Result<Vec<OpenPart>, LogError> {
    for _ in 0..OPEN_ATTEMPTS {
        let before = survey(path)?;
        // The writer briefly links the current file as `path.1` before replacing it.
        if has_duplicate_ids(&before) {
            continue;
        }
        if let Some(opened) = try_open_survey(&before)? {
            if survey(path)? == before {
                return Ok(opened);
            }
        }
    }
    Err(LogError::Unstable {
        path: path.to_path_buf(),
    })
}

fn has_duplicate_ids(surveyed: &[(Part, FileId)]) -> bool {
    surveyed
        .iter()
        .enumerate()
        .any(|(i, (_, id))| surveyed.iter().skip(i + 1).any(|(_, other)| other == id))
}

/// `None` when a file vanished or changed between survey and open.
fn try_open_survey(surveyed: &[(Part, FileId)]) -> Result<Option<Vec<OpenPart>>, LogError> {
    let mut opened = Vec::with_capacity(surveyed.len());
    for (part, expected) in surveyed {
        let file = match File::open(&part.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogError::io("open", &part.path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| LogError::io("inspect", &part.path, e))?;
        if FileId::of(&meta) != *expected {
            return Ok(None);
        }
        opened.push(OpenPart {
            part: part.clone(),
            id: *expected,
            len: meta.len(),
            file,
        });
    }
    Ok(Some(opened))
}

/// Reads `file` from `pos` up to `end` with positional reads, so clones of the
/// same descriptor never disturb each other.
pub(super) struct RangeReader {
    file: File,
    pos: u64,
    end: u64,
}

impl RangeReader {
    pub(super) fn new(file: File, pos: u64, end: u64) -> Self {
        RangeReader { file, pos, end }
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let Some(window) = buf.get_mut(..want) else {
            return Ok(0);
        };
        if window.is_empty() {
            return Ok(0);
        }
        let read = self.file.read_at(window, self.pos)?;
        self.pos += read as u64;
        Ok(read)
    }
}

/// Decompressed (or plain) content of a whole part, from the start.
pub(super) fn whole_content(part: &OpenPart) -> Result<Box<dyn BufRead + Send>, LogError> {
    let file = part
        .file
        .try_clone()
        .map_err(|e| LogError::io("reopen", &part.part.path, e))?;
    let range = RangeReader::new(file, 0, part.len);
    Ok(if part.part.compressed {
        Box::new(BufReader::new(GzDecoder::new(range)))
    } else {
        Box::new(BufReader::new(range))
    })
}

/// The `lastTime` dockerd stores in the gzip header of a rotated file, if any.
pub(super) fn gzip_last_time(part: &OpenPart) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Extra {
        #[serde(rename = "lastTime")]
        last_time: String,
    }
    let file = part.file.try_clone().ok()?;
    let mut decoder = GzDecoder::new(RangeReader::new(file, 0, part.len));
    // The header is parsed on the first read at the latest.
    let mut probe = [0u8; 1];
    let _ = decoder.read(&mut probe);
    let extra: Extra = serde_json::from_slice(decoder.header()?.extra()?).ok()?;
    humantime::parse_rfc3339(&extra.last_time).ok()
}

/// Reads the next complete line (without its `\n`) and how many bytes it took.
/// An unterminated trailing fragment is left alone: the writer is still on it.
pub(super) fn next_complete_line(
    reader: &mut dyn BufRead,
    line: &mut Vec<u8>,
) -> io::Result<Option<u64>> {
    line.clear();
    let read = reader.read_until(b'\n', line)?;
    if read == 0 || line.last() != Some(&b'\n') {
        return Ok(None);
    }
    line.pop();
    Ok(Some(read as u64))
}

/// Decodes the complete lines of `reader` into `out`; `offset` is where `reader`
/// starts in the file, for error messages. Returns the bytes consumed.
pub(super) fn decode_lines(
    reader: &mut dyn BufRead,
    part: &Part,
    offset: u64,
    out: &mut VecDeque<Result<LogRecord, LogError>>,
) -> Result<u64, LogError> {
    let mut consumed = 0;
    let mut line = Vec::new();
    while let Some(taken) =
        next_complete_line(reader, &mut line).map_err(|e| LogError::io("read", &part.path, e))?
    {
        out.push_back(decode_record(&line).map_err(|reason| LogError::Decode {
            path: part.path.clone(),
            offset: offset + consumed,
            compressed: part.compressed,
            reason,
        }));
        consumed += taken;
    }
    Ok(consumed)
}

/// The first line of a part, to recognise a file after it was renamed or
/// compressed. `None` for an empty file.
pub(super) fn first_line(part: &OpenPart) -> Option<Vec<u8>> {
    let content = whole_content(part).ok()?;
    let mut limited = BufReader::new(content.take(FINGERPRINT_LIMIT));
    let mut line = Vec::new();
    next_complete_line(&mut limited, &mut line).ok()??;
    Some(line)
}

/// End of the last complete line at or before `len`: a reader stops there so
/// it never decodes a record the writer is still appending.
pub(super) fn complete_end(file: &File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut block = vec![0u8; TAIL_SCAN_BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(TAIL_SCAN_BLOCK);
        let chunk = read_exact_at(file, &mut block, start, end)?;
        if let Some(pos) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Where the last `wanted` lines of `[0, end)` start, and how many lines that is
/// (fewer when the file is shorter). `end` must be a line boundary.
pub(super) fn tail_start(file: &File, end: u64, wanted: usize) -> io::Result<(u64, usize)> {
    // The newline ending the last line counts too, so look for wanted + 1.
    let mut newlines = 0usize;
    let mut block = vec![0u8; TAIL_SCAN_BLOCK as usize];
    let mut upper = end;
    while upper > 0 {
        let start = upper.saturating_sub(TAIL_SCAN_BLOCK);
        let chunk = read_exact_at(file, &mut block, start, upper)?;
        for (pos, byte) in chunk.iter().enumerate().rev() {
            if *byte == b'\n' {
                newlines += 1;
                if newlines == wanted + 1 {
                    return Ok((start + pos as u64 + 1, wanted));
                }
            }
        }
        upper = start;
    }
    Ok((0, newlines))
}

/// Number of complete lines in a part (used for gzipped parts, which cannot be
/// scanned backwards).
pub(super) fn count_lines(part: &OpenPart) -> Result<usize, LogError> {
    let mut content = whole_content(part)?;
    let mut lines = 0;
    loop {
        let buf = content
            .fill_buf()
            .map_err(|e| LogError::io("read", &part.part.path, e))?;
        if buf.is_empty() {
            return Ok(lines);
        }
        lines += buf.iter().filter(|b| **b == b'\n').count();
        let used = buf.len();
        content.consume(used);
    }
}

fn read_exact_at<'a>(
    file: &File,
    block: &'a mut [u8],
    start: u64,
    end: u64,
) -> io::Result<&'a [u8]> {
    let len = usize::try_from(end - start)
        .unwrap_or(usize::MAX)
        .min(block.len());
    let chunk = block.get_mut(..len).unwrap_or_default();
    file.read_exact_at(chunk, start)?;
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotated_names_are_recognised() {
        assert_eq!(
            rotated_index("c-json.log", "c-json.log.1"),
            Some((1, false))
        );
        assert_eq!(
            rotated_index("c-json.log", "c-json.log.12.gz"),
            Some((12, true))
        );
        assert_eq!(rotated_index("c-json.log", "c-json.log"), None);
        assert_eq!(rotated_index("c-json.log", "c-json.log.0"), None);
        assert_eq!(rotated_index("c-json.log", "c-json.log.1.gz.tmp"), None);
        assert_eq!(rotated_index("c-json.log", "c-json.log.rotating"), None);
        assert_eq!(rotated_index("c-json.log", "c-json.logx.1"), None);
    }

    #[test]
    fn tail_and_complete_end_find_line_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        file.write_all(b"a\nbb\nccc\npartial").unwrap();
        let file = File::open(&path).unwrap();
        let end = complete_end(&file, 16).unwrap();
        assert_eq!(end, 9);
        assert_eq!(tail_start(&file, end, 2).unwrap(), (2, 2));
        assert_eq!(tail_start(&file, end, 3).unwrap(), (0, 3));
        assert_eq!(tail_start(&file, end, 10).unwrap(), (0, 3));
        assert_eq!(tail_start(&file, end, 0).unwrap(), (9, 0));
        assert_eq!(complete_end(&file, 1).unwrap(), 0);
    }
}
