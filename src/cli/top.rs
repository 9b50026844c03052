//! `rcompose top`: the processes of each running container of the project, as
//! `docker compose top` prints them: the container's name, then a table with the
//! columns of `ps -ef` (what `docker top` runs by default): UID PID PPID C STIME TTY
//! TIME CMD, pids as the host sees them.
//!
//! The pids come from the container's cgroup ([`Runtime::processes`]); the columns are
//! read from `/proc/<pid>/{stat,status,cmdline}` and computed as procps' `ps` does.
//!
//! [`Runtime::processes`]: rcompose_runtime::container::lifecycle::Runtime::processes

use std::collections::HashMap;
use std::fs;
use std::time::SystemTime;

use anyhow::Context;
use chrono::{DateTime, Datelike, Local, TimeZone};

use super::ps::{open_engine, ProjectScope};
use super::GlobalOptions;
use crate::orchestrator::plan::ContainerState;
use crate::ui;

/// USER_HZ: the unit of `/proc/<pid>/stat`'s times, 100 on every Linux architecture.
const CLOCK_TICKS: u64 = 100;

const TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

#[derive(Debug, Clone, clap::Args)]
pub struct TopArgs {
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub fn run(global: &GlobalOptions, args: &TopArgs) -> anyhow::Result<u8> {
    let scope = ProjectScope::find(global)?;
    scope.check_services(&args.services)?;
    let engine = open_engine(global)?;
    let mut containers = engine
        .list(&scope.name)
        .with_context(|| format!("listing the containers of project {}", scope.name))?;
    containers.retain(|c| {
        !c.oneoff
            && matches!(c.state, ContainerState::Running | ContainerState::Paused)
            && (args.services.is_empty() || args.services.contains(&c.service))
    });
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let host = Host::read()?;
    let mut out = String::new();
    for container in &containers {
        // A container that stopped meanwhile has no processes to show.
        let Ok(pids) = engine.runtime().processes(&container.id) else {
            continue;
        };
        let rows: Vec<Vec<String>> = pids
            .into_iter()
            .filter_map(|pid| host.process_row(pid))
            .collect();
        out.push_str(&container.name);
        out.push('\n');
        out.push_str(&ui::table::render(&TITLES, &rows));
        out.push('\n');
    }
    print!("{out}");
    Ok(0)
}

/// What every row needs from the host: boot time, the time now, user names.
struct Host {
    boot_time: u64,
    now: u64,
    users: HashMap<u32, String>,
}

impl Host {
    fn read() -> anyhow::Result<Host> {
        let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let boot_time = boot_time(&stat).context("/proc/stat has no btime line")?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        // Without /etc/passwd, ps shows numbers: so do we.
        let users = fs::read_to_string("/etc/passwd")
            .map(|text| user_names(&text))
            .unwrap_or_default();
        Ok(Host {
            boot_time,
            now,
            users,
        })
    }

    /// The `ps -ef` row of `pid`; `None` when it exited while we read it.
    fn process_row(&self, pid: i32) -> Option<Vec<String>> {
        let dir = format!("/proc/{pid}");
        let stat = parse_stat(&fs::read_to_string(format!("{dir}/stat")).ok()?)?;
        let euid = effective_uid(&fs::read_to_string(format!("{dir}/status")).ok()?)?;
        let cmdline = fs::read(format!("{dir}/cmdline")).ok()?;
        let started = self.boot_time + stat.start_ticks / CLOCK_TICKS;
        let cpu_ticks = stat.utime + stat.stime;
        Some(vec![
            self.users
                .get(&euid)
                .cloned()
                .unwrap_or_else(|| euid.to_string()),
            pid.to_string(),
            stat.ppid.to_string(),
            cpu_percent(cpu_ticks, self.now.saturating_sub(started)).to_string(),
            start_time(started, self.now),
            tty_name(stat.tty_nr),
            cpu_time(cpu_ticks),
            command(&cmdline, &stat.comm),
        ])
    }
}

/// The fields of `/proc/<pid>/stat` that `ps -ef` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    comm: String,
    ppid: i32,
    tty_nr: u32,
    utime: u64,
    stime: u64,
    start_ticks: u64,
}

/// `pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
/// cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime …`;
/// `comm` may hold spaces and parentheses, so the fields start after the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // Numbered from `state`, field 3 of proc(5).
    let field = |n: usize| fields.get(n - 3).copied();
    Some(Stat {
        comm,
        ppid: field(4)?.parse().ok()?,
        tty_nr: field(7)?.parse().ok()?,
        utime: field(14)?.parse().ok()?,
        stime: field(15)?.parse().ok()?,
        start_ticks: field(22)?.parse().ok()?,
    })
}

/// The effective uid: the second number of the `Uid:` line of `/proc/<pid>/status`.
fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// uid → name from an `/etc/passwd`; the first name of a uid wins, as getpwuid's.
fn user_names(passwd: &str) -> HashMap<u32, String> {
    let mut users = HashMap::new();
    for line in passwd.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(uid) = uid.parse::<u32>() {
            users.entry(uid).or_insert_with(|| name.to_owned());
        }
    }
    users
}

/// `C`: CPU time over the process's lifetime, in percent, at most 99 (procps).
fn cpu_percent(cpu_ticks: u64, lifetime_seconds: u64) -> u64 {
    if lifetime_seconds == 0 {
        return 0;
    }
    (cpu_ticks * 100 / CLOCK_TICKS / lifetime_seconds).min(99)
}

/// `STIME`: `HH:MM` when the process started today, `MonDD` this year, else the year;
/// in local time, as ps prints it.
fn start_time(started: u64, now: u64) -> String {
    let local = |seconds: u64| -> Option<DateTime<Local>> {
        Local
            .timestamp_opt(i64::try_from(seconds).ok()?, 0)
            .single()
    };
    let (Some(started), Some(now)) = (local(started), local(now)) else {
        return "?".to_owned();
    };
    let format = if started.year() != now.year() {
        "%Y"
    } else if started.ordinal() != now.ordinal() {
        "%b%d"
    } else {
        "%H:%M"
    };
    started.format(format).to_string()
}

/// `TIME`: cumulated CPU time as `[DD-]HH:MM:SS`.
fn cpu_time(cpu_ticks: u64) -> String {
    let seconds = cpu_ticks / CLOCK_TICKS;
    let (days, hours, minutes, seconds) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if days > 0 {
        format!("{days}-{hours:02}:{minutes:02}:{seconds:02}")
    } else {
        format!("{hours:02}:{minutes:02}:{seconds:02}")
    }
}

/// `TTY`: the controlling terminal from the `tty_nr` device number; `?` for none.
fn tty_name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".to_owned(),
        // Unix98 pseudo-terminals take majors 136 to 143.
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        _ => "?".to_owned(),
    }
}

/// `CMD`: the arguments joined by spaces; `[comm]` for a process without any (a
/// kernel thread or a zombie), as ps shows it.
fn command(cmdline: &[u8], comm: &str) -> String {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    if args.is_empty() {
        format!("[{comm}]")
    } else {
        args.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (sleep (x)) S 4200 4242 4242 34816 4242 4194560 120 0 0 0 \
        150 60 0 0 20 0 1 0 987654 1630208 191 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(
            stat,
            Stat {
                comm: "sleep (x)".into(),
                ppid: 4200,
                tty_nr: 34816,
                utime: 150,
                stime: 60,
                start_ticks: 987654,
            }
        );
        assert_eq!(parse_stat("4242 (sleep) S"), None);
    }

    #[test]
    fn users_and_uids() {
        assert_eq!(
            effective_uid("Name:\tsleep\nUid:\t1000\t33\t33\t33\nGid:\t0\t0\t0\t0\n"),
            Some(33)
        );
        let users = user_names("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\ntoor:x:0:0::/:/bin/sh\nbroken\n");
        assert_eq!(users[&0], "root");
        assert_eq!(users[&33], "www-data");
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn columns_read_like_ps() {
        assert_eq!(cpu_percent(210, 0), 0);
        assert_eq!(cpu_percent(210, 10), 21);
        assert_eq!(cpu_percent(100_000, 10), 99);
        assert_eq!(cpu_time(210), "00:00:02");
        assert_eq!(cpu_time(100 * (86_400 + 3661)), "1-01:01:01");
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name(34816), "pts/0");
        assert_eq!(tty_name((136 << 8) | 3), "pts/3");
        assert_eq!(tty_name((4 << 8) | 1), "tty1");
        assert_eq!(command(b"sleep\x00300\x00", "sleep"), "sleep 300");
        assert_eq!(command(b"", "kworker/0:1"), "[kworker/0:1]");
    }

    #[test]
    fn start_time_shortens_with_age() {
        let now = Local::now().timestamp() as u64;
        let today = start_time(now, now);
        assert_eq!(today.len(), 5, "{today}");
        assert_eq!(today.as_bytes()[2], b':');
        let long_ago = start_time(now - 400 * 86_400, now);
        assert_eq!(long_ago.len(), 4, "{long_ago}");
        assert!(long_ago.parse::<u32>().is_ok(), "{long_ago}");
    }
}
