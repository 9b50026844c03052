//! The `--since`/`--until`/`--tail` values as the Docker CLI reads them, and the
//! timestamps printed with `--timestamps`.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone, Utc};

use super::LogsError;

const TIME_FORMS: &str = "use an RFC 3339 time such as 2024-01-01T12:00:00Z, a date such as \
     2024-01-01, a Unix timestamp such as 1704110400, or a duration such as 10m or 1h30m";

/// Reads a `--since`/`--until` value the way `docker logs` does: a Go duration
/// (`10m`, `1h30m`, `1.5s`) counts back from `now`; an RFC 3339 time with `Z` or an
/// offset; a date or a time without zone (local time); or a Unix timestamp with an
/// optional fraction (`1704110400.5`).
pub fn parse_time_bound(
    flag: &'static str,
    value: &str,
    now: SystemTime,
) -> Result<SystemTime, LogsError> {
    let invalid = |reason: String| LogsError::InvalidFlag {
        flag,
        value: value.to_string(),
        reason,
    };
    let value = value.trim();
    // The CLI reads a bare "0" as the Unix epoch, not as a zero duration.
    if value != "0" {
        if let Some(duration) = parse_go_duration(value) {
            return Ok(shift_back(now, duration));
        }
    }
    if value.contains('-') {
        return parse_calendar_time(value).ok_or_else(|| invalid(TIME_FORMS.to_string()));
    }
    parse_unix_timestamp(value).ok_or_else(|| invalid(TIME_FORMS.to_string()))
}

/// Reads `--tail`: `all` or a number of lines per container.
pub fn parse_tail(value: &str) -> Result<Option<usize>, LogsError> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| LogsError::InvalidFlag {
        flag: "--tail",
        value: value.to_string(),
        reason: "use a number of lines such as 100, or all".to_string(),
    })
}

/// A signed duration: positive counts back from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SignedDuration {
    negative: bool,
    length: Duration,
}

fn shift_back(now: SystemTime, by: SignedDuration) -> SystemTime {
    if by.negative {
        now.checked_add(by.length).unwrap_or(now)
    } else {
        now.checked_sub(by.length)
            .filter(|time| *time >= UNIX_EPOCH)
            .unwrap_or(UNIX_EPOCH)
    }
}

/// Go's `time.ParseDuration`: an optional sign, then one or more `<number><unit>`
/// with units `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`; `0` alone is allowed.
fn parse_go_duration(text: &str) -> Option<SignedDuration> {
    let (negative, mut rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(SignedDuration {
            negative,
            length: Duration::ZERO,
        });
    }
    if rest.is_empty() {
        return None;
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        total_nanos = total_nanos.checked_add(component_nanos(number, unit)?)?;
        rest = after;
    }
    let seconds = u64::try_from(total_nanos / 1_000_000_000).ok()?;
    let nanos = (total_nanos % 1_000_000_000) as u32;
    Some(SignedDuration {
        negative,
        length: Duration::new(seconds, nanos),
    })
}

/// Nanoseconds of one `<number><unit>` piece such as `1.5h`.
fn component_nanos(number: &str, unit: &str) -> Option<u128> {
    let unit_nanos: u128 = match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole.checked_mul(unit_nanos)?;
    // Exact decimal arithmetic on the fraction, as Go does (to nanosecond precision).
    let mut scale = unit_nanos;
    for digit in fraction.bytes() {
        if !digit.is_ascii_digit() {
            return None;
        }
        scale /= 10;
        nanos += u128::from(digit - b'0') * scale;
    }
    Some(nanos)
}

/// `2024-01-01T12:00:00.5Z`, `2024-01-01T12:00+02:00`, `2024-01-01T12`, `2024-01-01`:
/// the zone is `Z` or `±HH:MM`, or missing for local time.
fn parse_calendar_time(text: &str) -> Option<SystemTime> {
    let (body, zone) = split_zone(text);
    let naive = parse_naive_time(body)?;
    let time: DateTime<Utc> = match zone {
        Some(offset) => offset.from_local_datetime(&naive).single()?.to_utc(),
        // The earlier of the two readings of a time repeated by a DST change.
        None => Local.from_local_datetime(&naive).earliest()?.to_utc(),
    };
    Some(SystemTime::from(time))
}

/// Splits a trailing `Z` or `±HH:MM` zone off a calendar time.
fn split_zone(text: &str) -> (&str, Option<FixedOffset>) {
    if let Some(body) = text.strip_suffix(['Z', 'z']) {
        return (body, FixedOffset::east_opt(0));
    }
    // The date's own dashes sit in its first ten characters.
    let sign_at = text
        .char_indices()
        .skip(10)
        .find(|(_, c)| *c == '+' || *c == '-')
        .map(|(at, _)| at);
    let Some(at) = sign_at else {
        return (text, None);
    };
    let (body, zone) = text.split_at(at);
    match parse_offset(zone) {
        Some(offset) => (body, Some(offset)),
        // Not a zone: leave it in the body so that parsing fails.
        None => (text, None),
    }
}

fn parse_offset(zone: &str) -> Option<FixedOffset> {
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = zone.get(1..)?.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let seconds = hours.parse::<i32>().ok()? * 3600 + minutes.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * seconds)
}

/// A date, or a date and time down to the hour, minute, second or fraction.
fn parse_naive_time(body: &str) -> Option<NaiveDateTime> {
    let (date, clock) = body.split_once('T').unwrap_or((body, "00"));
    let clock = match clock.matches(':').count() {
        0 => format!("{clock}:00:00"),
        1 => format!("{clock}:00"),
        _ => clock.to_string(),
    };
    NaiveDateTime::parse_from_str(&format!("{date}T{clock}"), "%Y-%m-%dT%H:%M:%S%.f").ok()
}

/// `1704110400` or `1704110400.123` (seconds since the epoch).
fn parse_unix_timestamp(text: &str) -> Option<SystemTime> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: u64 = seconds.parse().ok()?;
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = format!("{fraction:0<9}").parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// Writes record times as dockerd does for `docker logs -t`: UTC with exactly nine
/// fractional digits (`2024-01-01T12:00:00.000000001Z`). The date and clock are
/// formatted once per second, which keeps `-t` cheap on large logs.
#[derive(Debug, Default)]
pub(super) struct TimestampWriter {
    second: Option<i64>,
    up_to_seconds: String,
}

impl TimestampWriter {
    pub(super) fn write(&mut self, out: &mut impl Write, time: SystemTime) -> io::Result<()> {
        let utc = DateTime::<Utc>::from(time);
        let second = utc.timestamp();
        if self.second != Some(second) {
            self.second = Some(second);
            self.up_to_seconds = utc.format("%Y-%m-%dT%H:%M:%S").to_string();
        }
        write!(
            out,
            "{}.{:09}Z",
            self.up_to_seconds,
            utc.timestamp_subsec_nanos()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: u64 = 1_704_110_400; // 2024-01-01T12:00:00Z

    fn at(seconds: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(seconds, nanos)
    }

    fn since(value: &str) -> Result<SystemTime, LogsError> {
        parse_time_bound("--since", value, at(NOON, 0))
    }

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(since("10m").unwrap(), at(NOON - 600, 0));
        assert_eq!(since("1h30m").unwrap(), at(NOON - 5400, 0));
        assert_eq!(since("1.5s").unwrap(), at(NOON - 2, 500_000_000));
        assert_eq!(since("250ms").unwrap(), at(NOON - 1, 750_000_000));
        assert_eq!(since("2h45m10.5s").unwrap(), at(NOON - 9911, 500_000_000));
        assert_eq!(since("3µs").unwrap(), at(NOON - 1, 999_997_000));
        assert_eq!(
            since("-1m").unwrap(),
            at(NOON + 60, 0),
            "negative looks ahead"
        );
        assert_eq!(since("0s").unwrap(), at(NOON, 0));
        assert_eq!(
            since("1000000h").unwrap(),
            UNIX_EPOCH,
            "clamped at the epoch"
        );
    }

    #[test]
    fn calendar_times_with_and_without_zone() {
        assert_eq!(since("2024-01-01T12:00:00Z").unwrap(), at(NOON, 0));
        assert_eq!(
            since("2024-01-01T12:00:00.123456789Z").unwrap(),
            at(NOON, 123_456_789)
        );
        assert_eq!(since("2024-01-01T14:00:00+02:00").unwrap(), at(NOON, 0));
        assert_eq!(since("2024-01-01T10:30-01:30").unwrap(), at(NOON, 0));
        assert_eq!(since("2024-01-01T12Z").unwrap(), at(NOON, 0));
        assert_eq!(since("2024-01-01Z").unwrap(), at(NOON - 12 * 3600, 0));
        // Without a zone the time is local, as in the Docker CLI.
        let local_noon = Local
            .with_ymd_and_hms(2024, 1, 1, 12, 0, 0)
            .earliest()
            .unwrap();
        assert_eq!(
            since("2024-01-01T12:00:00").unwrap(),
            SystemTime::from(local_noon)
        );
        assert_eq!(
            since("2024-01-01").unwrap(),
            SystemTime::from(local_noon - chrono::Duration::hours(12))
        );
    }

    #[test]
    fn unix_timestamps() {
        assert_eq!(since("1704110400").unwrap(), at(NOON, 0));
        assert_eq!(since("1704110400.25").unwrap(), at(NOON, 250_000_000));
        assert_eq!(since("0").unwrap(), UNIX_EPOCH);
    }

    #[test]
    fn bad_values_name_the_flag_and_the_accepted_forms() {
        for bad in [
            "",
            "yesterday",
            "10x",
            "2024-13-01",
            "2024-01-01T25:00:00Z",
            "1.2.3",
            "m",
            "2024-01-01T12:00:00+2",
        ] {
            let err = parse_time_bound("--until", bad, at(NOON, 0))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--until") && err.contains("10m") && err.contains(&format!("{bad:?}")),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn tail_is_a_count_or_all() {
        assert_eq!(parse_tail("all").unwrap(), None);
        assert_eq!(parse_tail("0").unwrap(), Some(0));
        assert_eq!(parse_tail("25").unwrap(), Some(25));
        let err = parse_tail("-3").unwrap_err().to_string();
        assert!(err.contains("--tail") && err.contains("\"-3\""), "{err}");
    }

    #[test]
    fn timestamps_have_nine_fraction_digits_in_utc() {
        let mut writer = TimestampWriter::default();
        let mut out = Vec::new();
        for time in [at(NOON, 1), at(NOON, 120_000_000), at(NOON + 61, 0)] {
            writer.write(&mut out, time).unwrap();
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2024-01-01T12:00:00.000000001Z 2024-01-01T12:00:00.120000000Z \
             2024-01-01T12:01:01.000000000Z "
        );
    }
}
