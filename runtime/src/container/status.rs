//! What a container's state looks like from outside: its lifecycle state, how its
//! last run ended, and the `exit.json` record a monitor leaves behind.

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The file in a container's directory that records how its last run ended.
pub const EXIT_FILE: &str = "exit.json";

/// How a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, or 128 + signal number when a signal killed it (as Docker shows).
    pub code: i32,
    /// The cgroup's `oom_kill` counter when the process exited.
    pub oom_kills: u64,
}

impl ExitStatus {
    /// Docker's `OOMKilled`: the kernel OOM killer killed a process of the container.
    pub fn oom_killed(&self) -> bool {
        self.oom_kills > 0
    }
}

/// The lifecycle state of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its process exists and waits for `start`.
    Created,
    Running,
    Paused,
    /// Never started, or its process has exited (see `exit`).
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub state: State,
    /// The main process's host pid while it exists.
    pub pid: Option<i32>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// How the last run ended.
    pub exit: Option<ExitStatus>,
}

/// The content of `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub status: ExitStatus,
    pub started_at: Option<SystemTime>,
    pub finished_at: SystemTime,
}

impl ExitRecord {
    /// Reads `exit.json` of `container_dir`; `None` when the container never ended.
    pub fn load(container_dir: &Path) -> io::Result<Option<ExitRecord>> {
        match fs::read(container_dir.join(EXIT_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::other(format!("{EXIT_FILE}: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `exit.json` atomically: a reader sees the old record or the new one.
    pub fn save(&self, container_dir: &Path) -> io::Result<()> {
        let body = serde_json::to_vec(self).map_err(io::Error::other)?;
        crate::atomic_file::replace_durably(&container_dir.join(EXIT_FILE), &body, 0o600)
    }

    /// Forgets the last run (before the container starts again).
    pub fn remove(container_dir: &Path) -> io::Result<()> {
        match fs::remove_file(container_dir.join(EXIT_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_reports_oom_like_docker() {
        let killed = ExitStatus {
            code: 137,
            oom_kills: 1,
        };
        assert!(killed.oom_killed());
        let plain = ExitStatus {
            code: 137,
            oom_kills: 0,
        };
        assert!(!plain.oom_killed());
    }

    #[test]
    fn exit_record_round_trips_and_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(ExitRecord::load(tmp.path()).unwrap(), None);
        let record = ExitRecord {
            status: ExitStatus {
                code: 3,
                oom_kills: 0,
            },
            started_at: Some(SystemTime::UNIX_EPOCH),
            finished_at: SystemTime::now(),
        };
        record.save(tmp.path()).unwrap();
        assert_eq!(ExitRecord::load(tmp.path()).unwrap(), Some(record));
        ExitRecord::remove(tmp.path()).unwrap();
        ExitRecord::remove(tmp.path()).unwrap();
        assert_eq!(ExitRecord::load(tmp.path()).unwrap(), None);
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(EXIT_FILE), b"{oops").unwrap();
        let err = ExitRecord::load(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("exit.json"), "{err}");
    }
}
