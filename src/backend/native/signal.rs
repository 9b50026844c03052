//! Signal names as `stop_signal` writes them (`SIGTERM`, `TERM`, `15`), as Linux numbers.

/// Linux's numbering (x86, arm and most architectures).
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// The number of a signal name or number; `None` when it is neither.
pub fn signal_number(text: &str) -> Option<i32> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i32>() {
        return (1..=SIGRTMAX).contains(&number).then_some(number);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, number)) = SIGNALS.iter().find(|(n, _)| *n == name) {
        return Some(*number);
    }
    realtime(name)
}

/// `RTMIN`, `RTMIN+3`, `RTMAX-1`.
fn realtime(name: &str) -> Option<i32> {
    let (base, rest) = if let Some(rest) = name.strip_prefix("RTMIN") {
        (SIGRTMIN, rest)
    } else {
        (SIGRTMAX, name.strip_prefix("RTMAX")?)
    };
    let number = match rest {
        "" => base,
        _ => {
            let (sign, offset) = rest.split_at(1);
            let offset: i32 = offset.parse().ok()?;
            match sign {
                "+" => base + offset,
                "-" => base - offset,
                _ => return None,
            }
        }
    };
    (SIGRTMIN..=SIGRTMAX).contains(&number).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_or_without_sig_and_numbers() {
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("quit"), Some(3));
        assert_eq!(signal_number("SIGUSR1"), Some(10));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGRTMIN+2"), Some(36));
        assert_eq!(signal_number("RTMAX"), Some(64));
        for bad in ["", "SIGNOPE", "0", "65", "RTMIN+40", "RTMIN*2"] {
            assert_eq!(signal_number(bad), None, "{bad}");
        }
    }
}
