//! What removing a container needs besides the runtime's own records: the networks its
//! sandbox joined and the volumes it attached, kept in `<root>/compose/<id>/` (with its
//! resolv.conf, hosts and hostname) so that any process can remove it later.

use rcompose_runtime::atomic_file::replace_json;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file in a container's compose directory.
const RECORD_FILE: &str = "container.json";

/// A container's teardown record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeardownRecord {
    pub id: String,
    pub project: String,
    pub service: String,
    /// Whether a network namespace was made for it (not with host or shared modes).
    pub sandbox: bool,
    /// Engine names of the networks it joined, in order.
    pub networks: Vec<String>,
    /// Volumes it attached.
    pub volumes: Vec<AttachedVolume>,
    /// The container's cgroup, whose empty project parent is removed with it.
    pub cgroups_path: String,
    /// Its Compose `dns` servers and `dns_search` domains, which the project's DNS
    /// servers apply to its queries (names not known locally go to these servers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_upstreams: Vec<SocketAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedVolume {
    pub name: String,
    /// Where it is mounted in the container.
    pub target: String,
    pub anonymous: bool,
    /// `volume.nocopy`: not seeded from the image.
    pub nocopy: bool,
}

/// `<root>/compose/<id>`.
pub fn record_dir(root: &Path, id: &str) -> PathBuf {
    root.join("compose").join(id)
}

impl TeardownRecord {
    pub fn save(&self, root: &Path) -> io::Result<()> {
        let dir = record_dir(root, &self.id);
        fs::create_dir_all(&dir)?;
        replace_json(&dir.join(RECORD_FILE), self, 0o600)
    }

    /// `None` when the container has no record (not made by this engine, or removed).
    pub fn load(root: &Path, id: &str) -> io::Result<Option<TeardownRecord>> {
        match fs::read(record_dir(root, id).join(RECORD_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the record and the host files next to it; fine if already gone.
    pub fn remove(root: &Path, id: &str) -> io::Result<()> {
        match fs::remove_dir_all(record_dir(root, id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_round_trip_and_removal() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            TeardownRecord::load(root.path(), "demo-web-1").unwrap(),
            None
        );
        let record = TeardownRecord {
            id: "demo-web-1".into(),
            project: "demo".into(),
            service: "web".into(),
            sandbox: true,
            networks: vec!["demo_default".into(), "demo_back".into()],
            volumes: vec![AttachedVolume {
                name: "demo_data".into(),
                target: "/data".into(),
                anonymous: false,
                nocopy: false,
            }],
            cgroups_path: "/rcompose/demo/demo-web-1".into(),
            dns_upstreams: vec!["192.0.2.53:53".parse().unwrap()],
            dns_search: vec!["corp.example".into()],
        };
        record.save(root.path()).unwrap();
        let loaded = TeardownRecord::load(root.path(), "demo-web-1").unwrap();
        assert_eq!(loaded, Some(record));
        TeardownRecord::remove(root.path(), "demo-web-1").unwrap();
        TeardownRecord::remove(root.path(), "demo-web-1").unwrap();
        assert!(!record_dir(root.path(), "demo-web-1").exists());
    }
}
