//! One json-file record: encoding exactly as dockerd writes it, and decoding.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{LogRecord, Stream};

/// First second of the year 10000: Go refuses to marshal times from there on.
const YEAR_10000: Duration = Duration::from_secs(253_402_300_800);

/// Appends `{"log":...,"stream":...,"time":...}\n` to `out`.
///
/// Returns `None` when `time` cannot be written (before 1970 or after 9999).
pub(super) fn encode_record(
    out: &mut Vec<u8>,
    stream: Stream,
    text: &[u8],
    time: SystemTime,
) -> Option<()> {
    let time = format_time(time)?;
    out.push(b'{');
    // dockerd leaves out an empty `log` field.
    if !text.is_empty() {
        out.extend_from_slice(b"\"log\":");
        push_json_string(out, text);
        out.push(b',');
    }
    out.extend_from_slice(b"\"stream\":");
    push_json_string(out, stream.as_str().as_bytes());
    out.extend_from_slice(b",\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\"}\n");
    Some(())
}

/// Go's `time.RFC3339Nano` in UTC: up to nine fractional digits, trailing zeros
/// (and a bare dot) dropped, as in `2024-01-01T12:00:00.1234Z`.
pub(super) fn format_time(time: SystemTime) -> Option<String> {
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    if since_epoch >= YEAR_10000 {
        return None;
    }
    // Always "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ".
    let full = humantime::format_rfc3339_nanos(time).to_string();
    let without_zone = full.strip_suffix('Z')?;
    let trimmed = without_zone.trim_end_matches('0').trim_end_matches('.');
    Some(format!("{trimmed}Z"))
}

/// Writes `bytes` as a JSON string the way dockerd's json-file encoder does:
/// `<`, `>`, `&` and control characters as `\u00XX` (except `\n`, `\r`),
/// U+2028/U+2029 escaped, and each byte of invalid UTF-8 replaced by `\ufffd`.
pub(super) fn push_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                push_escaped_str(out, valid);
                rest = &[];
            }
            Err(error) => {
                let (valid, after) = rest.split_at(error.valid_up_to());
                push_escaped_str(out, std::str::from_utf8(valid).unwrap_or_default());
                // Go decodes a bad sequence one byte at a time: one U+FFFD per byte.
                out.extend_from_slice(br"\ufffd");
                rest = after.get(1..).unwrap_or_default();
            }
        }
    }
    out.push(b'"');
}

fn push_escaped_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut copied_up_to = 0;
    for (index, ch) in text.char_indices() {
        let escape: Option<[u8; 6]> = match ch {
            '"' | '\\' | '\n' | '\r' => None,
            '\u{2028}' => Some(*br"\u2028"),
            '\u{2029}' => Some(*br"\u2029"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let byte = ch as u8;
                Some([
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ])
            }
            _ => continue,
        };
        out.extend_from_slice(bytes.get(copied_up_to..index).unwrap_or_default());
        match (escape, ch) {
            (Some(sequence), _) => out.extend_from_slice(&sequence),
            (None, '\n') => out.extend_from_slice(br"\n"),
            (None, '\r') => out.extend_from_slice(br"\r"),
            (None, quote_or_backslash) => {
                out.push(b'\\');
                out.push(quote_or_backslash as u8);
            }
        }
        copied_up_to = index + ch.len_utf8();
    }
    out.extend_from_slice(bytes.get(copied_up_to..).unwrap_or_default());
}

#[derive(Deserialize)]
struct RawRecord {
    #[serde(default)]
    log: String,
    #[serde(default)]
    stream: String,
    time: String,
}

/// Decodes one line of a json-file log (without its trailing newline).
pub(super) fn decode_record(line: &[u8]) -> Result<LogRecord, String> {
    let raw: RawRecord = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let stream = Stream::parse(&raw.stream).ok_or_else(|| {
        format!(
            "unknown stream {:?} (expected stdout or stderr)",
            raw.stream
        )
    })?;
    let time =
        humantime::parse_rfc3339(&raw.time).map_err(|e| format!("bad time {:?}: {e}", raw.time))?;
    Ok(LogRecord {
        stream,
        time,
        line: raw.log.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    // 2024-01-01T12:00:00Z
    const NOON: u64 = 1_704_110_400;

    fn encoded(stream: Stream, text: &[u8], time: SystemTime) -> String {
        let mut out = Vec::new();
        encode_record(&mut out, stream, text, time).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_line_matches_dockerd_bytes() {
        assert_eq!(
            encoded(Stream::Stdout, b"hello world\n", at(NOON, 123_456_789)),
            "{\"log\":\"hello world\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T12:00:00.123456789Z\"}\n"
        );
    }

    #[test]
    fn html_quotes_and_controls_are_escaped_like_dockerd() {
        let text = b"<b>\"a\" & 'b'</b>\\ \t\x01\x1b[0m\x7f\r\n";
        assert_eq!(
            encoded(Stream::Stderr, text, at(NOON, 5)),
            concat!(
                r#"{"log":"\u003cb\u003e\"a\" \u0026 'b'\u003c/b\u003e\\ \u0009\u0001\u001b[0m"#,
                "\x7f",
                r#"\r\n","stream":"stderr","time":"2024-01-01T12:00:00.000000005Z"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn invalid_utf8_becomes_one_replacement_per_byte() {
        // A truncated 3-byte sequence is two bad bytes for Go, so two U+FFFD.
        let text = b"a\xe2\x82b\xffc\xe2\x82\xac\n";
        assert_eq!(
            encoded(Stream::Stdout, text, at(NOON, 1)),
            "{\"log\":\"a\\ufffd\\ufffdb\\ufffdc\u{20ac}\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T12:00:00.000000001Z\"}\n"
        );
        let mut out = Vec::new();
        push_json_string(&mut out, b"\xe2\x82");
        assert_eq!(out, br#""\ufffd\ufffd""#);
    }

    #[test]
    fn line_separators_are_escaped_other_unicode_is_kept() {
        let mut out = Vec::new();
        push_json_string(&mut out, "é\u{2028}x\u{2029}😀\u{fffd}".as_bytes());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"é\\u2028x\\u2029😀\u{fffd}\""
        );
    }

    #[test]
    fn time_uses_go_rfc3339nano_trimming() {
        assert_eq!(
            format_time(at(NOON, 123_456_789)).unwrap(),
            "2024-01-01T12:00:00.123456789Z"
        );
        assert_eq!(
            format_time(at(NOON, 120_000_000)).unwrap(),
            "2024-01-01T12:00:00.12Z"
        );
        assert_eq!(format_time(at(NOON, 0)).unwrap(), "2024-01-01T12:00:00Z");
        assert!(format_time(UNIX_EPOCH - Duration::from_secs(1)).is_none());
        assert!(format_time(UNIX_EPOCH + YEAR_10000).is_none());
    }

    #[test]
    fn decoding_reads_what_dockerd_writes() {
        let line = br#"{"log":"\u003chi\u003e\u0009\ufffd\n","stream":"stderr","attrs":{"tag":"web"},"time":"2024-01-01T12:00:00.5Z"}"#;
        let record = decode_record(line).unwrap();
        assert_eq!(record.stream, Stream::Stderr);
        assert_eq!(record.time, at(NOON, 500_000_000));
        assert_eq!(record.line, "<hi>\t\u{fffd}\n".as_bytes());
        assert!(!record.is_partial());
    }

    #[test]
    fn round_trip_keeps_text_and_time() {
        let time = at(NOON + 7, 987_654_321);
        let text = "partial <&> ü".as_bytes();
        let encoded = encoded(Stream::Stdout, text, time);
        let record = decode_record(encoded.trim_end().as_bytes()).unwrap();
        assert_eq!(record.line, text);
        assert_eq!(record.time, time);
        assert!(record.is_partial());
    }

    #[test]
    fn bad_records_say_what_is_wrong() {
        assert!(decode_record(b"not json").is_err());
        let err = decode_record(br#"{"log":"x\n","stream":"stdin","time":"2024-01-01T12:00:00Z"}"#)
            .unwrap_err();
        assert!(err.contains("stdin"), "{err}");
        let err =
            decode_record(br#"{"log":"x\n","stream":"stdout","time":"yesterday"}"#).unwrap_err();
        assert!(err.contains("yesterday"), "{err}");
    }
}
