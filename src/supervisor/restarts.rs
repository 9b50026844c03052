//! Each container's restart count and back-off, kept on disk in
//! `restarts/<container>.json` so that a supervisor replacing a killed one carries
//! on: an `on-failure:3` container gets three restarts in all, not three per
//! supervisor. The record names the container's creation time, so a container
//! recreated under the same name starts from zero.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rcompose_runtime::atomic_file::replace_json;
use serde::{Deserialize, Serialize};

use crate::orchestrator::restart::RestartState;

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    created_at: SystemTime,
    state: RestartState,
}

fn path(project_dir: &Path, container: &str) -> PathBuf {
    project_dir
        .join("restarts")
        .join(format!("{container}.json"))
}

/// The saved state of this very container (created at `created_at`); a fresh one
/// when there is none, it is unreadable, or it was an earlier container's.
pub(super) fn load(project_dir: &Path, container: &str, created_at: SystemTime) -> RestartState {
    fs::read(path(project_dir, container))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Saved>(&bytes).ok())
        .filter(|saved| saved.created_at == created_at)
        .map(|saved| saved.state)
        .unwrap_or_default()
}

pub(super) fn save(
    project_dir: &Path,
    container: &str,
    created_at: SystemTime,
    state: &RestartState,
) -> io::Result<()> {
    let path = path(project_dir, container);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let saved = Saved {
        created_at,
        state: state.clone(),
    };
    replace_json(&path, &saved, 0o600)
}

/// Forgets the count (a user's start gives a fresh one, as `docker start` does).
pub(super) fn forget(project_dir: &Path, container: &str) -> io::Result<()> {
    match fs::remove_file(path(project_dir, container)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_saved_count_is_resumed_only_by_the_same_container() {
        let dir = tempfile::tempdir().unwrap();
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(
            load(dir.path(), "demo-web-1", created),
            RestartState::default()
        );
        let state = RestartState {
            restart_count: 2,
            last_delay: Duration::from_millis(200),
            recent_restarts: Vec::new(),
        };
        save(dir.path(), "demo-web-1", created, &state).unwrap();
        assert_eq!(load(dir.path(), "demo-web-1", created), state);
        // Recreated under the same name: a new container, a new count.
        let recreated = created + Duration::from_secs(5);
        assert_eq!(
            load(dir.path(), "demo-web-1", recreated),
            RestartState::default()
        );
        forget(dir.path(), "demo-web-1").unwrap();
        assert_eq!(
            load(dir.path(), "demo-web-1", created),
            RestartState::default()
        );
        forget(dir.path(), "demo-web-1").unwrap();
    }
}
