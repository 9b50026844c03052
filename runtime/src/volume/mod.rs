//! Volumes: data that outlives containers, kept by the local driver as Docker keeps it.
//!
//! ```text
//! <state_root>/volumes/
//!   lock                 flock serialising create/remove/attach/detach/prune
//!   <name>/
//!     volume.json        name, driver "local", driver_opts, labels, created, users
//!     _data/             the content; a container bind-mounts this directory
//!     seed.lock          held while the image's content is copied in
//! ```
//!
//! A volume whose `driver_opts` name a filesystem (`type`/`device`/`o`: tmpfs, a bind of
//! a host path, NFS, ...) has that mounted on `_data` when its first user attaches and
//! unmounted when its last user detaches, like dockerd's local driver; a container's
//! bind source is `_data` either way. `users` lists the containers that have the volume
//! attached, so a volume in use is never removed or pruned.
//!
//! Records are written under a temp name and renamed; a volume directory appears (or
//! goes) with one rename, so a crash never leaves a half-made volume visible.

pub mod options;
pub mod seed;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::lock::{lock_file, LockGuard, LockKind};
pub use options::{MountError, OptionsError};
pub use seed::{SeedError, SeedOutcome};

/// The only driver there is.
pub const LOCAL_DRIVER: &str = "local";
/// Label Docker (23+) puts on anonymous volumes; `prune` without `all` removes only these.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

const VOLUMES_DIR: &str = "volumes";
const DATA_DIR: &str = "_data";
const RECORD_FILE: &str = "volume.json";
const STORE_LOCK: &str = "lock";
const SEED_LOCK: &str = "seed.lock";
/// Entries that are not (yet, or any more) volumes start with this; names cannot.
use crate::atomic_file::TEMP_PREFIX;
/// Largest volume.json read; a real one is a few hundred bytes.
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Why a volume operation failed. Every variant names the volume (or the path).
#[derive(Debug, Error)]
pub enum VolumeError {
    #[error("{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName { name: String },
    #[error("no such volume: {name}")]
    NotFound { name: String },
    #[error("remove {name}: volume is in use - [{}]", users.join(", "))]
    InUse { name: String, users: Vec<String> },
    #[error("volume {name:?} exists but doesn't match the requested configuration ({detail}); remove it (its data will be lost) to recreate it, or declare it external")]
    Conflict { name: String, detail: String },
    #[error("volume {name:?}: driver {driver:?} is not supported: only \"local\" is")]
    UnsupportedDriver { name: String, driver: String },
    #[error("volume {name:?}: {source}")]
    Options { name: String, source: OptionsError },
    #[error("volume {name:?}: {source}")]
    Mount { name: String, source: MountError },
    #[error("volume {name:?}: cannot unmount {}: {source}", path.display())]
    Unmount {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("volume {name:?}: {source}")]
    Seed { name: String, source: SeedError },
    #[error("volume store: cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("volume store: {} is damaged ({source}); remove the volume directory to drop it", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, VolumeError>;

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// A volume as recorded in its `volume.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    pub created: String,
    /// Containers that have the volume attached, in attach order.
    #[serde(default)]
    pub users: Vec<String>,
    /// `<state_root>/volumes/<name>/_data`; not stored, filled in when read.
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

impl Volume {
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    pub fn in_use(&self) -> bool {
        !self.users.is_empty()
    }
}

/// The result of [`VolumeStore::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub volume: Volume,
    /// False when an identical volume already existed (it is returned unchanged; its
    /// labels are not compared, so a caller can warn like Compose does).
    pub new: bool,
}

/// One `label` filter term: `key`, `key=value`, or their negations (`label!=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    pub value: Option<String>,
    pub negate: bool,
}

impl LabelFilter {
    /// Parses `key` or `key=value`, as `--filter label=...` gives them.
    pub fn parse(text: &str, negate: bool) -> LabelFilter {
        let (key, value) = match text.split_once('=') {
            Some((key, value)) => (key.to_string(), Some(value.to_string())),
            None => (text.to_string(), None),
        };
        LabelFilter { key, value, negate }
    }

    /// Whether a label set passes this term (a `label!=` term passes what lacks the label).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let found = match (labels.get(&self.key), &self.value) {
            (Some(have), Some(want)) => have == want,
            (Some(_), None) => true,
            (None, _) => false,
        };
        found != self.negate
    }
}

/// Which volumes `list` and `prune` consider; every term must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeFilter {
    pub labels: Vec<LabelFilter>,
    /// `Some(true)`: unused volumes only; `Some(false)`: used ones only.
    pub dangling: Option<bool>,
    /// Substring of the name, as Docker's `name` filter.
    pub name: Option<String>,
    pub driver: Option<String>,
}

impl VolumeFilter {
    pub fn matches(&self, volume: &Volume) -> bool {
        self.labels.iter().all(|f| f.matches(&volume.labels))
            && self.dangling.is_none_or(|d| d != volume.in_use())
            && self
                .name
                .as_ref()
                .is_none_or(|part| volume.name.contains(part.as_str()))
            && self.driver.as_ref().is_none_or(|d| *d == volume.driver)
    }
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub removed: Vec<String>,
    /// Bytes of the removed volumes' content.
    pub reclaimed_bytes: u64,
}

/// Checks a volume name as Docker does: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest: Vec<char> = chars.collect();
    let rest_ok = !rest.is_empty()
        && rest
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(VolumeError::InvalidName {
            name: name.to_string(),
        })
    }
}

/// Refuses drivers other than `local`, naming the volume.
pub fn validate_driver(name: &str, driver: &str) -> Result<()> {
    if driver.is_empty() || driver == LOCAL_DRIVER {
        Ok(())
    } else {
        Err(VolumeError::UnsupportedDriver {
            name: name.to_string(),
            driver: driver.to_string(),
        })
    }
}

/// The volumes under one state root.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
}

impl VolumeStore {
    /// Opens (creating if needed) `<state_root>/volumes`.
    pub fn open(state_root: &Path) -> Result<VolumeStore> {
        let dir = state_root.join(VOLUMES_DIR);
        // 0701 as dockerd: other users may traverse to a bind source, never list names.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o701)
            .create(&dir)
            .map_err(io_error("create", &dir))?;
        Ok(VolumeStore { dir })
    }

    /// Where volumes live (`<state_root>/volumes`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a named volume, or returns the existing one when its driver options are
    /// the same; different options are a [`VolumeError::Conflict`].
    pub fn create(
        &self,
        name: &str,
        driver_opts: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> Result<Created> {
        validate_name(name)?;
        options::parse(driver_opts).map_err(|source| VolumeError::Options {
            name: name.to_string(),
            source,
        })?;
        let _lock = self.lock()?;
        if let Some(existing) = self.read(name)? {
            check_same_options(&existing, driver_opts)?;
            return Ok(Created {
                volume: existing,
                new: false,
            });
        }
        let volume = Volume {
            name: name.to_string(),
            driver: LOCAL_DRIVER.to_string(),
            driver_opts: driver_opts.clone(),
            labels: labels.clone(),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            users: Vec::new(),
            mountpoint: self.data_dir(name),
        };
        self.write_new(&volume)?;
        Ok(Created { volume, new: true })
    }

    /// Creates an anonymous volume: a random 64-hex name and the anonymous label.
    pub fn create_anonymous(&self, labels: &BTreeMap<String, String>) -> Result<Volume> {
        let mut labels = labels.clone();
        labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
        let name =
            crate::random::random_hex_id().map_err(io_error("read", Path::new("/dev/urandom")))?;
        Ok(self.create(&name, &BTreeMap::new(), &labels)?.volume)
    }

    pub fn inspect(&self, name: &str) -> Result<Volume> {
        validate_name(name).map_err(|_| not_found(name))?;
        self.read(name)?.ok_or_else(|| not_found(name))
    }

    /// The volume's `_data` directory: the bind source for its containers.
    pub fn mount_point(&self, name: &str) -> Result<PathBuf> {
        Ok(self.inspect(name)?.mountpoint)
    }

    /// Volumes matching `filter`, sorted by name.
    pub fn list(&self, filter: &VolumeFilter) -> Result<Vec<Volume>> {
        let mut volumes = Vec::new();
        for name in self.names()? {
            // A volume removed since the directory was read is simply not listed.
            if let Some(volume) = self.read(&name)? {
                if filter.matches(&volume) {
                    volumes.push(volume);
                }
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Removes a volume and its content. Refused while a container uses it; with
    /// `force`, a missing volume is not an error (Docker's `volume rm -f`). Returns
    /// whether a volume was removed.
    pub fn remove(&self, name: &str, force: bool) -> Result<bool> {
        let _lock = self.lock()?;
        let volume = match validate_name(name).ok().map(|()| self.read(name)) {
            Some(Ok(Some(volume))) => volume,
            Some(Err(err)) => return Err(err),
            _ if force => return Ok(false),
            _ => return Err(not_found(name)),
        };
        if volume.in_use() {
            return Err(VolumeError::InUse {
                name: volume.name,
                users: volume.users,
            });
        }
        self.delete(&volume)?;
        Ok(true)
    }

    /// Removes unused volumes that match `filter`: anonymous ones only unless `all`.
    pub fn prune(&self, filter: &VolumeFilter, all: bool) -> Result<PruneReport> {
        let _lock = self.lock()?;
        self.remove_leftovers();
        let mut report = PruneReport::default();
        for volume in self.list(filter)? {
            if volume.in_use() || !(all || volume.is_anonymous()) {
                continue;
            }
            let size = self.usage(&volume);
            self.delete(&volume)?;
            report.reclaimed_bytes += size;
            report.removed.push(volume.name);
        }
        Ok(report)
    }

    /// Records `container` as a user and returns the bind source (`_data`). The first
    /// user mounts the volume's `driver_opts` filesystem there. Attaching twice is a
    /// no-op.
    pub fn attach(&self, name: &str, container: &str) -> Result<PathBuf> {
        let _lock = self.lock()?;
        let mut volume = self.read_existing(name)?;
        if volume.users.iter().any(|u| u == container) {
            return Ok(volume.mountpoint);
        }
        if volume.users.is_empty() {
            self.mount_driver_opts(&volume)?;
        }
        volume.users.push(container.to_string());
        if let Err(err) = self.write_record(&volume) {
            if volume.users.len() == 1 {
                let _ = self.unmount_driver_opts(&volume);
            }
            return Err(err);
        }
        Ok(volume.mountpoint)
    }

    /// Drops `container` from the users; the last one out unmounts the `driver_opts`
    /// filesystem. Detaching a container that is not a user is a no-op.
    pub fn detach(&self, name: &str, container: &str) -> Result<()> {
        let _lock = self.lock()?;
        let mut volume = self.read_existing(name)?;
        let before = volume.users.len();
        volume.users.retain(|u| u != container);
        if volume.users.len() == before {
            return Ok(());
        }
        self.write_record(&volume)?;
        if volume.users.is_empty() {
            self.unmount_driver_opts(&volume)?;
        }
        Ok(())
    }

    /// Copies the image's content at `mount_target` (inside `rootfs`) into the volume
    /// if the volume is empty, as Docker does on a container's first use; callers skip
    /// this for `nocopy`. Attach first, so a `driver_opts` volume is mounted and the
    /// copy lands on it.
    pub fn seed_from_image(
        &self,
        name: &str,
        rootfs: &Path,
        mount_target: &str,
    ) -> Result<SeedOutcome> {
        let volume = self.inspect(name)?;
        let lock_path = self.dir.join(name).join(SEED_LOCK);
        // Two containers starting together must not both copy into the empty volume.
        let _seeding =
            lock_file(&lock_path, LockKind::Exclusive).map_err(io_error("lock", &lock_path))?;
        seed::copy_image_content(rootfs, mount_target, &volume.mountpoint).map_err(|source| {
            VolumeError::Seed {
                name: name.to_string(),
                source,
            }
        })
    }

    fn lock(&self) -> Result<LockGuard> {
        let path = self.dir.join(STORE_LOCK);
        lock_file(&path, LockKind::Exclusive).map_err(io_error("lock", &path))
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(DATA_DIR)
    }

    fn names(&self) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.dir).map_err(io_error("read", &self.dir))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("read", &self.dir))?;
            if let Some(name) = entry.file_name().to_str() {
                if validate_name(name).is_ok() && entry.path().is_dir() {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    /// The record of `name` (already validated), or `None` if there is no such volume.
    fn read(&self, name: &str) -> Result<Option<Volume>> {
        let path = self.dir.join(name).join(RECORD_FILE);
        let mut text = Vec::new();
        match fs::File::open(&path) {
            Ok(file) => file
                .take(MAX_RECORD_BYTES)
                .read_to_end(&mut text)
                .map_err(io_error("read", &path))?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_error("read", &path)(err)),
        };
        let mut volume: Volume = serde_json::from_slice(&text)
            .map_err(|source| VolumeError::Corrupt { path, source })?;
        volume.mountpoint = self.data_dir(name);
        Ok(Some(volume))
    }

    fn read_existing(&self, name: &str) -> Result<Volume> {
        validate_name(name).map_err(|_| not_found(name))?;
        self.read(name)?.ok_or_else(|| not_found(name))
    }

    /// Lays the volume out under a temp name, then renames it into place.
    fn write_new(&self, volume: &Volume) -> Result<()> {
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(&self.dir)
            .map_err(io_error("create a directory in", &self.dir))?;
        let data = temp.path().join(DATA_DIR);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&data)
            .map_err(io_error("create", &data))?;
        write_json(&temp.path().join(RECORD_FILE), volume)?;
        set_mode(temp.path(), 0o755)?;
        let target = self.dir.join(&volume.name);
        fs::rename(temp.path(), &target).map_err(io_error("create", &target))?;
        // Renamed away: nothing left for the TempDir guard to delete.
        let _ = temp.keep();
        Ok(())
    }

    fn write_record(&self, volume: &Volume) -> Result<()> {
        write_json(&self.dir.join(&volume.name).join(RECORD_FILE), volume)
    }

    /// Renames the volume out of sight, then deletes it. A `driver_opts` mount left on
    /// `_data` is detached first, so a bound host directory is never emptied.
    fn delete(&self, volume: &Volume) -> Result<()> {
        self.unmount_driver_opts(volume)?;
        let path = self.dir.join(&volume.name);
        let suffix =
            crate::random::random_hex_id().map_err(io_error("read", Path::new("/dev/urandom")))?;
        let doomed = self.dir.join(format!(
            "{TEMP_PREFIX}rm-{}-{}",
            volume.name,
            suffix.get(..12).unwrap_or(&suffix)
        ));
        fs::rename(&path, &doomed).map_err(io_error("remove", &path))?;
        fs::remove_dir_all(&doomed).map_err(io_error("remove", &doomed))
    }

    /// Deletes `.tmp-` entries: under the store lock nothing is being created or
    /// removed, so these are what a crash left behind.
    fn remove_leftovers(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let is_temp = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
            if is_temp && entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    fn mount_driver_opts(&self, volume: &Volume) -> Result<()> {
        let Some(mount) = self.parsed_options(volume)? else {
            return Ok(());
        };
        // Already mounted (a user list lost in a crash): use it as it is.
        if options::is_mount_root(&volume.mountpoint).unwrap_or(false) {
            return Ok(());
        }
        mount
            .mount(&volume.mountpoint)
            .map_err(|source| VolumeError::Mount {
                name: volume.name.clone(),
                source,
            })
    }

    fn unmount_driver_opts(&self, volume: &Volume) -> Result<()> {
        if self.parsed_options(volume)?.is_none() {
            return Ok(());
        }
        let unmount_error = |source| VolumeError::Unmount {
            name: volume.name.clone(),
            path: volume.mountpoint.clone(),
            source,
        };
        // Mounts stack: detach until nothing is mounted on `_data` any more.
        while options::is_mount_root(&volume.mountpoint).map_err(unmount_error)? {
            options::unmount(&volume.mountpoint).map_err(unmount_error)?;
        }
        Ok(())
    }

    fn parsed_options(&self, volume: &Volume) -> Result<Option<options::LocalMount>> {
        options::parse(&volume.driver_opts).map_err(|source| VolumeError::Options {
            name: volume.name.clone(),
            source,
        })
    }

    /// Bytes of content in the volume (apparent sizes), without crossing into mounts.
    fn usage(&self, volume: &Volume) -> u64 {
        fn walk(path: &Path, dev: u64) -> u64 {
            let Ok(entries) = fs::read_dir(path) else {
                return 0;
            };
            entries
                .flatten()
                .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
                .map(|(path, meta)| match meta.is_dir() {
                    true if meta.dev() == dev => walk(&path, dev),
                    true => 0,
                    false => meta.len(),
                })
                .sum()
        }
        match fs::symlink_metadata(&volume.mountpoint) {
            Ok(meta) => walk(&volume.mountpoint, meta.dev()),
            Err(_) => 0,
        }
    }
}

fn not_found(name: &str) -> VolumeError {
    VolumeError::NotFound {
        name: name.to_string(),
    }
}

/// Compose recreates a volume only when asked; silently using one with other driver
/// options would mount the wrong thing.
fn check_same_options(existing: &Volume, wanted: &BTreeMap<String, String>) -> Result<()> {
    if &existing.driver_opts == wanted {
        return Ok(());
    }
    let keys: std::collections::BTreeSet<&String> =
        existing.driver_opts.keys().chain(wanted.keys()).collect();
    let differences: Vec<String> = keys
        .into_iter()
        .filter(|k| existing.driver_opts.get(*k) != wanted.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.map_or("unset".to_string(), |v| format!("{v:?}"));
            format!(
                "driver_opts.{k}: {} exists, {} requested",
                show(existing.driver_opts.get(k)),
                show(wanted.get(k))
            )
        })
        .collect();
    Err(VolumeError::Conflict {
        name: existing.name.clone(),
        detail: differences.join("; "),
    })
}

fn write_json(path: &Path, volume: &Volume) -> Result<()> {
    let text = serde_json::to_vec_pretty(volume).map_err(|source| VolumeError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    crate::atomic_file::replace_durably(path, &text, 0o644).map_err(io_error("write", path))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_error("chmod", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn store() -> (tempfile::TempDir, VolumeStore) {
        let root = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(root.path()).unwrap();
        (root, store)
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn names_follow_docker_rules() {
        for good in ["ab", "db-data", "my_vol.1", "0x", "A-"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "-ab", ".ab", "_ab", "a/b", "../etc", "a b", "vé"] {
            let err = validate_name(bad).unwrap_err();
            assert!(
                err.to_string()
                    .contains("invalid characters for a local volume name"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn create_lays_out_the_volume_and_inspect_reads_it_back() {
        let (root, store) = store();
        let labels = map(&[
            ("com.docker.compose.project", "demo"),
            ("com.docker.compose.volume", "data"),
        ]);
        let created = store
            .create("demo_data", &BTreeMap::new(), &labels)
            .unwrap();
        assert!(created.new);
        let volume = created.volume;
        assert_eq!(volume.driver, "local");
        assert_eq!(
            volume.mountpoint,
            root.path().join("volumes/demo_data/_data")
        );
        assert!(volume.mountpoint.is_dir());
        assert!(volume.created.ends_with('Z'), "{}", volume.created);
        assert_eq!(store.inspect("demo_data").unwrap(), volume);
        assert_eq!(store.mount_point("demo_data").unwrap(), volume.mountpoint);
        let record: serde_json::Value = serde_json::from_slice(
            &fs::read(root.path().join("volumes/demo_data/volume.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(record["labels"]["com.docker.compose.volume"], "data");
        assert!(record.get("mountpoint").is_none());
        // No temp entries left next to it.
        let entries: Vec<_> = fs::read_dir(store.dir()).unwrap().flatten().collect();
        assert_eq!(entries.len(), 2, "{entries:?}"); // demo_data and lock
    }

    #[test]
    fn creating_again_is_idempotent_but_other_options_conflict() {
        let (_root, store) = store();
        let opts = map(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")]);
        assert!(store.create("cache", &opts, &BTreeMap::new()).unwrap().new);
        let again = store
            .create("cache", &opts, &map(&[("other", "label")]))
            .unwrap();
        assert!(!again.new);
        assert!(
            again.volume.labels.is_empty(),
            "existing volume returned as is"
        );
        let other = map(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=2m")]);
        let err = store.create("cache", &other, &BTreeMap::new()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, VolumeError::Conflict { .. }), "{text}");
        assert!(text.contains("\"cache\""), "{text}");
        assert!(
            text.contains("driver_opts.o: \"size=1m\" exists, \"size=2m\" requested"),
            "{text}"
        );
    }

    #[test]
    fn bad_driver_options_and_drivers_name_the_volume() {
        let (_root, store) = store();
        let err = store
            .create("vol", &map(&[("typ", "tmpfs")]), &BTreeMap::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "volume \"vol\": invalid option: \"typ\" (the local driver takes type, device and o)"
        );
        assert!(store.list(&VolumeFilter::default()).unwrap().is_empty());
        let err = validate_driver("vol", "rexray").unwrap_err();
        assert!(
            err.to_string().contains("\"rexray\" is not supported"),
            "{err}"
        );
        assert!(validate_driver("vol", "local").is_ok());
    }

    #[test]
    fn missing_volumes_are_named() {
        let (_root, store) = store();
        assert_eq!(
            store.inspect("nope").unwrap_err().to_string(),
            "no such volume: nope"
        );
        assert!(matches!(
            store.inspect("../../etc"),
            Err(VolumeError::NotFound { .. })
        ));
        assert!(matches!(
            store.remove("nope", false),
            Err(VolumeError::NotFound { .. })
        ));
        assert!(!store.remove("nope", true).unwrap());
        assert!(matches!(
            store.attach("nope", "c1"),
            Err(VolumeError::NotFound { .. })
        ));
    }

    #[test]
    fn a_volume_in_use_is_not_removed_until_its_users_detach() {
        let (_root, store) = store();
        store
            .create("data", &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        let source = store.attach("data", "c1").unwrap();
        assert_eq!(source, store.mount_point("data").unwrap());
        store.attach("data", "c2").unwrap();
        store.attach("data", "c1").unwrap();
        assert_eq!(store.inspect("data").unwrap().users, ["c1", "c2"]);
        let err = store.remove("data", true).unwrap_err();
        assert_eq!(err.to_string(), "remove data: volume is in use - [c1, c2]");
        store.detach("data", "c1").unwrap();
        store.detach("data", "c1").unwrap();
        assert!(store.remove("data", false).is_err());
        store.detach("data", "c2").unwrap();
        fs::write(store.mount_point("data").unwrap().join("f"), b"x").unwrap();
        assert!(store.remove("data", false).unwrap());
        assert!(!store.dir().join("data").exists());
    }

    #[test]
    fn anonymous_volumes_get_random_names_and_the_label() {
        let (_root, store) = store();
        let one = store.create_anonymous(&map(&[("p", "1")])).unwrap();
        let two = store.create_anonymous(&BTreeMap::new()).unwrap();
        assert_eq!(one.name.len(), 64);
        assert!(one.name.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(one.name, two.name);
        assert!(one.is_anonymous() && one.labels["p"] == "1");
    }

    #[test]
    fn prune_removes_unused_anonymous_volumes_or_all_unused_ones() {
        let (_root, store) = store();
        let project = map(&[("com.docker.compose.project", "demo")]);
        store.create("named", &BTreeMap::new(), &project).unwrap();
        store
            .create("other", &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        let anon = store.create_anonymous(&project).unwrap();
        let busy = store.create_anonymous(&project).unwrap();
        store.attach(&busy.name, "c1").unwrap();
        fs::write(anon.mountpoint.join("blob"), vec![0u8; 1234]).unwrap();

        let report = store.prune(&VolumeFilter::default(), false).unwrap();
        assert_eq!(report.removed, std::slice::from_ref(&anon.name));
        assert_eq!(report.reclaimed_bytes, 1234);

        let demo_only = VolumeFilter {
            labels: vec![LabelFilter::parse("com.docker.compose.project=demo", false)],
            ..VolumeFilter::default()
        };
        let report = store.prune(&demo_only, true).unwrap();
        assert_eq!(report.removed, ["named"]);
        let left: Vec<String> = store
            .list(&VolumeFilter::default())
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        let mut expected = vec![busy.name.clone(), "other".to_string()];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn prune_clears_what_a_crash_left_behind() {
        let (_root, store) = store();
        fs::create_dir_all(store.dir().join(".tmp-rm-old/_data")).unwrap();
        store.prune(&VolumeFilter::default(), true).unwrap();
        assert!(!store.dir().join(".tmp-rm-old").exists());
    }

    #[test]
    fn list_filters_by_label_name_and_use() {
        let (_root, store) = store();
        store
            .create(
                "web_data",
                &BTreeMap::new(),
                &map(&[("project", "web"), ("tier", "db")]),
            )
            .unwrap();
        store
            .create("api_data", &BTreeMap::new(), &map(&[("project", "api")]))
            .unwrap();
        store.attach("api_data", "c1").unwrap();
        let names = |filter: VolumeFilter| -> Vec<String> {
            store
                .list(&filter)
                .unwrap()
                .into_iter()
                .map(|v| v.name)
                .collect()
        };
        let label = |text: &str, negate| VolumeFilter {
            labels: vec![LabelFilter::parse(text, negate)],
            ..VolumeFilter::default()
        };
        assert_eq!(names(VolumeFilter::default()), ["api_data", "web_data"]);
        assert_eq!(names(label("project=web", false)), ["web_data"]);
        assert_eq!(names(label("tier", false)), ["web_data"]);
        assert_eq!(names(label("tier", true)), ["api_data"]);
        assert_eq!(names(label("project=web", true)), ["api_data"]);
        let dangling = VolumeFilter {
            dangling: Some(true),
            ..VolumeFilter::default()
        };
        assert_eq!(names(dangling), ["web_data"]);
        let by_name = VolumeFilter {
            name: Some("api".into()),
            ..VolumeFilter::default()
        };
        assert_eq!(names(by_name), ["api_data"]);
        let other_driver = VolumeFilter {
            driver: Some("nfs-plugin".into()),
            ..VolumeFilter::default()
        };
        assert!(names(other_driver).is_empty());
    }

    #[test]
    fn concurrent_creates_make_one_volume() {
        let (_root, store) = store();
        let results: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        store
                            .create("shared", &BTreeMap::new(), &BTreeMap::new())
                            .unwrap()
                            .new
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|new| **new).count(), 1);
        assert_eq!(store.list(&VolumeFilter::default()).unwrap().len(), 1);
    }

    #[test]
    fn a_damaged_record_is_reported_with_its_path() {
        let (_root, store) = store();
        store
            .create("data", &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        let record = store.dir().join("data/volume.json");
        fs::write(&record, b"{not json").unwrap();
        let err = store.inspect("data").unwrap_err();
        assert!(
            err.to_string().contains(&record.display().to_string()),
            "{err}"
        );
        assert!(store.list(&VolumeFilter::default()).is_err());
    }

    #[test]
    fn seeding_copies_into_an_empty_volume_once() {
        let (_root, store) = store();
        let rootfs = tempfile::tempdir().unwrap();
        fs::create_dir_all(rootfs.path().join("data/sub")).unwrap();
        fs::write(rootfs.path().join("data/sub/seed"), b"from image").unwrap();
        store
            .create("seeded", &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        let outcome = store
            .seed_from_image("seeded", rootfs.path(), "/data")
            .unwrap();
        assert_eq!(outcome, SeedOutcome::Copied { entries: 2 });
        let data = store.mount_point("seeded").unwrap();
        assert_eq!(fs::read(data.join("sub/seed")).unwrap(), b"from image");
        let again = store
            .seed_from_image("seeded", rootfs.path(), "/data")
            .unwrap();
        assert_eq!(again, SeedOutcome::VolumeNotEmpty);
        assert!(matches!(
            store.seed_from_image("missing", rootfs.path(), "/data"),
            Err(VolumeError::NotFound { .. })
        ));
    }

    /// Unmounts whatever a failed test left on a volume, so nothing outlives the test.
    struct MountCleanup(PathBuf);
    impl Drop for MountCleanup {
        fn drop(&mut self) {
            while options::is_mount_root(&self.0).unwrap_or(false) {
                if options::unmount(&self.0).is_err() {
                    break;
                }
            }
        }
    }

    fn mounted_fs_type(path: &Path) -> i64 {
        rustix::fs::statfs(path).unwrap().f_type as i64
    }

    const TMPFS_MAGIC: i64 = 0x0102_1994;

    #[test]
    fn tmpfs_options_mount_on_first_attach_and_unmount_after_last_detach() {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs volume needs root");
            return;
        }
        let (_root, store) = store();
        let opts = map(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=1m,uid=1000,mode=0750"),
        ]);
        let data = store
            .create("scratch", &opts, &BTreeMap::new())
            .unwrap()
            .volume
            .mountpoint;
        let _cleanup = MountCleanup(data.clone());
        let before = mounted_fs_type(&data);
        assert_eq!(store.attach("scratch", "c1").unwrap(), data);
        assert!(options::is_mount_root(&data).unwrap());
        assert_eq!(mounted_fs_type(&data), TMPFS_MAGIC);
        let stat = rustix::fs::statfs(&data).unwrap();
        assert_eq!(stat.f_blocks * stat.f_bsize as u64, 1 << 20);
        let meta = fs::metadata(&data).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (1000, 0o750));
        fs::write(data.join("in-tmpfs"), b"x").unwrap();

        store.attach("scratch", "c2").unwrap();
        store.detach("scratch", "c1").unwrap();
        assert!(data.join("in-tmpfs").exists(), "still mounted for c2");
        store.detach("scratch", "c2").unwrap();
        assert!(!options::is_mount_root(&data).unwrap());
        assert_eq!(mounted_fs_type(&data), before);
        assert!(!data.join("in-tmpfs").exists());
    }

    #[test]
    fn bind_options_bind_a_host_path_and_removal_leaves_it_alone() {
        if !is_root() {
            eprintln!("skipped: bind-mounting a host path needs root");
            return;
        }
        let (_root, store) = store();
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("host-file"), b"host").unwrap();
        let device = host.path().to_string_lossy().into_owned();
        let opts = map(&[("type", "none"), ("device", &device), ("o", "bind,ro")]);
        let data = store
            .create("hostdir", &opts, &BTreeMap::new())
            .unwrap()
            .volume
            .mountpoint;
        let _cleanup = MountCleanup(data.clone());
        store.attach("hostdir", "c1").unwrap();
        assert_eq!(fs::read(data.join("host-file")).unwrap(), b"host");
        let err = fs::write(data.join("new"), b"x").unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EROFS),
            "o: ro holds on a bind"
        );
        store.detach("hostdir", "c1").unwrap();
        assert!(!data.join("host-file").exists());
        // Even if the mount were still there, removal must never empty the host dir.
        store.attach("hostdir", "c2").unwrap();
        let mut volume = store.inspect("hostdir").unwrap();
        volume.users.clear();
        store.write_record(&volume).unwrap();
        assert!(store.remove("hostdir", false).unwrap());
        assert_eq!(fs::read(host.path().join("host-file")).unwrap(), b"host");
    }

    #[test]
    fn mount_failures_name_the_volume_and_the_option() {
        if !is_root() {
            eprintln!("skipped: mount errors need root to reach the kernel");
            return;
        }
        let (_root, store) = store();
        let bad_o = map(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=lots")]);
        store.create("badsize", &bad_o, &BTreeMap::new()).unwrap();
        let err = store.attach("badsize", "c1").unwrap_err().to_string();
        assert!(
            err.starts_with("volume \"badsize\": failed to mount local volume"),
            "{err}"
        );
        assert!(err.contains("check option \"o\" (\"size=lots\")"), "{err}");
        assert!(store.inspect("badsize").unwrap().users.is_empty());

        let missing = map(&[
            ("type", "none"),
            ("device", "/nonexistent/rc-vol"),
            ("o", "bind"),
        ]);
        store.create("nodev", &missing, &BTreeMap::new()).unwrap();
        let err = store.attach("nodev", "c1").unwrap_err().to_string();
        assert!(
            err.contains(
                "the host path \"/nonexistent/rc-vol\" (option \"device\") does not exist"
            ),
            "{err}"
        );

        let no_fs = map(&[("type", "rcompose-nofs"), ("device", "x")]);
        store.create("nofs", &no_fs, &BTreeMap::new()).unwrap();
        let err = store.attach("nofs", "c1").unwrap_err().to_string();
        assert!(
            err.contains("filesystem type \"rcompose-nofs\" (option \"type\")"),
            "{err}"
        );
    }
}
