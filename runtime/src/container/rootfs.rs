//! A container's root filesystem: either a plain directory used as is, or an
//! overlayfs of image layer directories with a per-container writable layer.
//!
//! The overlay lives under the container's own directory:
//! `<container_dir>/upper` (the writes), `<container_dir>/work` (overlayfs scratch,
//! must be on the same filesystem as `upper`) and `<container_dir>/merged` (the mount
//! point, which becomes the spec's `root.path`). It is mounted in the host mount
//! namespace before the container is created, so the container's init pivots into it.
//!
//! With a user namespace, the image must show its files owned by the container's
//! ids, not the host's: each layer is bind-mounted idmapped (see `idmap`) under
//! `<container_dir>/lower/<n>` and the overlay is stacked on those, with `upper`
//! owned by the container root's host ids, so writes land there as e.g. uid 100000.
//! The overlay holds its own references to its layers, so the idmapped binds are
//! detached again as soon as it is mounted. A plain directory rootfs is bind-mounted
//! idmapped at `merged` instead.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::config::{UserNamespace, UserNamespaceError};
use super::idmap::{idmapped_bind, user_namespace_fd, IdmapError};

/// Where a container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootfsSource {
    /// An existing directory, used directly (writes go to it).
    Dir(PathBuf),
    /// Image layer directories, top layer first (as `Store::layer_dirs` returns them).
    Layers(Vec<PathBuf>),
}

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("rootfs directory {0} does not exist or is not a directory")]
    MissingDir(PathBuf),
    #[error("an overlay rootfs needs at least one layer directory")]
    NoLayers,
    #[error("layer directory {0} contains ':' or ',', which overlayfs options cannot carry")]
    UnsupportedLayerPath(PathBuf),
    #[error("overlay mount options are {len} bytes, over the kernel's limit of {max}: too many or too long layer paths")]
    OptionsTooLong { len: usize, max: usize },
    #[error("{0}")]
    UserNamespace(#[from] UserNamespaceError),
    #[error("rootfs for a user namespace: {0}")]
    Idmap(#[from] IdmapError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The mount data of `mount(2)` is limited to one page.
const MAX_MOUNT_DATA: usize = 4095;

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The overlay mount point of a container.
pub fn merged_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("merged")
}

/// Where the idmapped layer binds of a user-namespaced overlay are attached.
fn lower_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("lower")
}

/// Makes the root filesystem ready and returns the path to use as `root.path`.
/// With `user_namespace`, the files appear owned through its mappings (the
/// container must then run with the same mappings).
pub fn prepare(
    source: &RootfsSource,
    container_dir: &Path,
    user_namespace: Option<&UserNamespace>,
) -> Result<PathBuf, RootfsError> {
    match (source, user_namespace) {
        (RootfsSource::Dir(dir), None) => {
            if !dir.is_dir() {
                return Err(RootfsError::MissingDir(dir.clone()));
            }
            fs::canonicalize(dir).map_err(io_error("resolving", dir))
        }
        (RootfsSource::Dir(dir), Some(userns)) => mount_idmapped_dir(dir, container_dir, userns),
        (RootfsSource::Layers(layers), None) => mount_overlay(layers, container_dir),
        (RootfsSource::Layers(layers), Some(userns)) => {
            mount_idmapped_overlay(layers, container_dir, userns)
        }
    }
}

/// Mounts `layers` (top first) under `container_dir/merged`, with a fresh writable
/// layer. An overlay left mounted by an earlier attempt is reused.
pub fn mount_overlay(layers: &[PathBuf], container_dir: &Path) -> Result<PathBuf, RootfsError> {
    let options = overlay_options(layers, container_dir)?;
    let merged = create_overlay_dirs(container_dir)?;
    if is_mounted(&merged)? {
        return Ok(merged);
    }
    mount_overlay_with(&options, &merged)?;
    Ok(merged)
}

/// [`mount_overlay`] for a container in `userns`: the layers are seen through
/// idmapped binds and the writable layer belongs to the container's root.
pub fn mount_idmapped_overlay(
    layers: &[PathBuf],
    container_dir: &Path,
    userns: &UserNamespace,
) -> Result<PathBuf, RootfsError> {
    userns.validate()?;
    // Checks the layers and their paths before anything is mounted.
    overlay_options(layers, container_dir)?;
    let merged = create_overlay_dirs(container_dir)?;
    chown_to_container_root(&container_dir.join("upper"), userns)?;
    if is_mounted(&merged)? {
        return Ok(merged);
    }
    let userns_fd = user_namespace_fd(userns)?;
    let lower_root = lower_dir(container_dir);
    let mut lowers = Vec::with_capacity(layers.len());
    let mut result = Ok(());
    for (index, layer) in layers.iter().enumerate() {
        let lower = lower_root.join(index.to_string());
        result = fs::create_dir_all(&lower)
            .map_err(io_error("creating", &lower))
            .and_then(|()| Ok(idmapped_bind(layer, &lower, userns_fd.as_fd())?));
        if result.is_err() {
            break;
        }
        lowers.push(lower);
    }
    let result = result
        .and_then(|()| overlay_options(&lowers, container_dir))
        .and_then(|options| mount_overlay_with(&options, &merged));
    // The overlay keeps its own references to the layers: the binds can go now,
    // and they must go on failure.
    let cleanup = remove_lower_binds(container_dir);
    result?;
    cleanup?;
    Ok(merged)
}

/// Bind-mounts `dir` idmapped through `userns` at `container_dir/merged`.
fn mount_idmapped_dir(
    dir: &Path,
    container_dir: &Path,
    userns: &UserNamespace,
) -> Result<PathBuf, RootfsError> {
    userns.validate()?;
    if !dir.is_dir() {
        return Err(RootfsError::MissingDir(dir.to_path_buf()));
    }
    let merged = merged_dir(container_dir);
    fs::create_dir_all(&merged).map_err(io_error("creating", &merged))?;
    if !is_mounted(&merged)? {
        let userns_fd = user_namespace_fd(userns)?;
        idmapped_bind(dir, &merged, userns_fd.as_fd())?;
    }
    Ok(merged)
}

/// The container root's host ids own `dir`, so that root inside can write there.
fn chown_to_container_root(dir: &Path, userns: &UserNamespace) -> Result<(), RootfsError> {
    let (uid, gid) = userns
        .host_uid(0)
        .zip(userns.host_gid(0))
        .ok_or(UserNamespaceError::RootNotMapped)?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(io_error("changing the owner of", dir))
}

/// `upper`, `work` and `merged` under `container_dir`; returns `merged`.
fn create_overlay_dirs(container_dir: &Path) -> Result<PathBuf, RootfsError> {
    let merged = merged_dir(container_dir);
    for dir in [
        container_dir.join("upper"),
        container_dir.join("work"),
        merged.clone(),
    ] {
        fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
    }
    Ok(merged)
}

fn mount_overlay_with(options: &str, merged: &Path) -> Result<(), RootfsError> {
    forget_volatile_mark(merged)?;
    let data = std::ffi::CString::new(options).map_err(|_| RootfsError::NoLayers)?;
    mount(
        "overlay",
        merged,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )
    .map_err(|err| RootfsError::Io {
        action: "mounting overlay at",
        path: merged.to_path_buf(),
        source: err.into(),
    })
}

/// A `volatile` overlay leaves `work/work/incompat/volatile` behind, and the kernel
/// refuses to mount that upper layer again until it is gone (the layer may miss
/// writes if the machine crashed). Mounting again happens only when the mount
/// vanished, after a reboot: the container starts on its layer as it is, as a
/// container without `volatile` would after a crash.
fn forget_volatile_mark(merged: &Path) -> Result<(), RootfsError> {
    let Some(container_dir) = merged.parent() else {
        return Ok(());
    };
    let mark = container_dir.join("work/work/incompat/volatile");
    match fs::remove_dir_all(&mark) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(io_error("removing", &mark)(err)),
        _ => Ok(()),
    }
}

/// `lowerdir=…,upperdir=…,workdir=…,volatile` for `layers` (top first).
fn overlay_options(layers: &[PathBuf], container_dir: &Path) -> Result<String, RootfsError> {
    if layers.is_empty() {
        return Err(RootfsError::NoLayers);
    }
    let mut lower = Vec::with_capacity(layers.len());
    for layer in layers {
        if !layer.is_dir() {
            return Err(RootfsError::MissingDir(layer.clone()));
        }
        lower.push(option_path(layer)?);
    }
    // `volatile`: the writable layer is never synced. Unmounting a synced overlay
    // flushes the host file system's journal, about 5 ms per container that `down`
    // pays in series; a container's writable layer is disposable state.
    let options = format!(
        "lowerdir={},upperdir={},workdir={},volatile",
        lower.join(":"),
        option_path(&container_dir.join("upper"))?,
        option_path(&container_dir.join("work"))?,
    );
    if options.len() > MAX_MOUNT_DATA {
        return Err(RootfsError::OptionsTooLong {
            len: options.len(),
            max: MAX_MOUNT_DATA,
        });
    }
    Ok(options)
}

/// A path as overlayfs options can carry it: ':' separates lower dirs and ','
/// separates options, and NUL cannot pass at all.
fn option_path(path: &Path) -> Result<String, RootfsError> {
    let text = path
        .to_str()
        .filter(|t| !t.contains([':', ',', '\0']))
        .ok_or_else(|| RootfsError::UnsupportedLayerPath(path.to_path_buf()))?;
    Ok(text.to_string())
}

/// Unmounts the overlay or idmapped bind (if mounted) and removes the writable
/// layer. Safe to call any number of times, and on a container that never had an
/// overlay.
pub fn teardown(container_dir: &Path) -> Result<(), RootfsError> {
    let merged = merged_dir(container_dir);
    detach_if_mounted(&merged)?;
    remove_lower_binds(container_dir)?;
    // `merged` may have been a bind of the caller's own rootfs dir: only ever
    // remove it empty, never recursively.
    remove_empty_dir_if_present(&merged)?;
    for name in ["upper", "work"] {
        remove_dir_if_present(&container_dir.join(name))?;
    }
    Ok(())
}

/// Detaches and removes the idmapped layer binds under `container_dir/lower`.
fn remove_lower_binds(container_dir: &Path) -> Result<(), RootfsError> {
    let lower_root = lower_dir(container_dir);
    let entries = match fs::read_dir(&lower_root) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error("reading", &lower_root)(err)),
    };
    for entry in entries {
        let lower = entry.map_err(io_error("reading", &lower_root))?.path();
        detach_if_mounted(&lower)?;
        remove_empty_dir_if_present(&lower)?;
    }
    remove_empty_dir_if_present(&lower_root)
}

fn detach_if_mounted(path: &Path) -> Result<(), RootfsError> {
    if is_mounted(path)? {
        // Lazy: a process still holding a file open must not make delete fail.
        unmount(path, UnmountFlags::DETACH).map_err(|err| RootfsError::Io {
            action: "unmounting",
            path: path.to_path_buf(),
            source: err.into(),
        })?;
    }
    Ok(())
}

fn remove_dir_if_present(dir: &Path) -> Result<(), RootfsError> {
    match fs::remove_dir_all(dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(io_error("removing", dir)(err)),
        _ => Ok(()),
    }
}

fn remove_empty_dir_if_present(dir: &Path) -> Result<(), RootfsError> {
    match fs::remove_dir(dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(io_error("removing", dir)(err)),
        _ => Ok(()),
    }
}

/// Whether `path` is a mount point in this mount namespace, from `/proc/self/mountinfo`.
pub fn is_mounted(path: &Path) -> Result<bool, RootfsError> {
    let mountinfo = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(mountinfo).map_err(io_error("reading", mountinfo))?;
    let mounted = mount_points(&text).any(|point| Path::new(&point) == path);
    Ok(mounted)
}

/// The mount points of a mountinfo text (field 5), with the kernel's octal escapes
/// (`\040` for a space…) decoded.
pub fn mount_points(mountinfo: &str) -> impl Iterator<Item = String> + '_ {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
}

fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes.get(i) == Some(&b'\\'))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.extend(bytes.get(i));
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_list_layers_top_first_then_upper_and_work() {
        let tmp = tempfile::tempdir().unwrap();
        let (top, base) = (tmp.path().join("top"), tmp.path().join("base"));
        fs::create_dir_all(&top).unwrap();
        fs::create_dir_all(&base).unwrap();
        let ctr = tmp.path().join("ctr");
        let options = overlay_options(&[top.clone(), base.clone()], &ctr).unwrap();
        assert_eq!(
            options,
            format!(
                "lowerdir={}:{},upperdir={}/upper,workdir={}/work,volatile",
                top.display(),
                base.display(),
                ctr.display(),
                ctr.display()
            )
        );
    }

    #[test]
    fn rejects_paths_overlayfs_cannot_express() {
        let tmp = tempfile::tempdir().unwrap();
        let odd = tmp.path().join("a:b");
        fs::create_dir_all(&odd).unwrap();
        let err = overlay_options(&[odd], tmp.path()).unwrap_err();
        assert!(matches!(err, RootfsError::UnsupportedLayerPath(_)), "{err}");
        assert!(err.to_string().contains("a:b"));
    }

    #[test]
    fn rejects_no_layers_and_missing_layers() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            overlay_options(&[], tmp.path()),
            Err(RootfsError::NoLayers)
        ));
        let missing = tmp.path().join("gone");
        let err = overlay_options(std::slice::from_ref(&missing), tmp.path()).unwrap_err();
        assert!(err.to_string().contains(&missing.display().to_string()));
    }

    #[test]
    fn rejects_options_over_one_page() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("x".repeat(200));
        fs::create_dir_all(&layer).unwrap();
        let layers = vec![layer; 30];
        assert!(matches!(
            overlay_options(&layers, tmp.path()),
            Err(RootfsError::OptionsTooLong { .. })
        ));
    }

    #[test]
    fn dir_source_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = RootfsSource::Dir(tmp.path().join("nope"));
        assert!(matches!(
            prepare(&missing, tmp.path(), None),
            Err(RootfsError::MissingDir(_))
        ));
        let present = RootfsSource::Dir(tmp.path().to_path_buf());
        assert_eq!(
            prepare(&present, tmp.path(), None).unwrap(),
            fs::canonicalize(tmp.path()).unwrap()
        );
    }

    #[test]
    fn teardown_is_idempotent_without_a_mount() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("upper/etc")).unwrap();
        fs::create_dir_all(tmp.path().join("merged")).unwrap();
        teardown(tmp.path()).unwrap();
        assert!(!tmp.path().join("upper").exists());
        assert!(!tmp.path().join("merged").exists());
        teardown(tmp.path()).unwrap();
    }

    #[test]
    fn an_overlay_whose_mount_vanished_mounts_again_with_its_files() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("layer");
        fs::create_dir_all(&layer).unwrap();
        fs::write(layer.join("image-file"), "from the image").unwrap();
        let ctr = tmp.path().join("ctr");
        let merged = mount_overlay(std::slice::from_ref(&layer), &ctr).unwrap();
        fs::write(merged.join("written"), "by the container").unwrap();
        // As after a reboot: the mount is gone, the layers stay.
        unmount(&merged, UnmountFlags::DETACH).unwrap();
        let merged = mount_overlay(std::slice::from_ref(&layer), &ctr).unwrap();
        let files = (
            fs::read_to_string(merged.join("image-file")).unwrap(),
            fs::read_to_string(merged.join("written")).unwrap(),
        );
        teardown(&ctr).unwrap();
        assert_eq!(files.0, "from the image");
        assert_eq!(files.1, "by the container");
        assert!(mounts_under(tmp.path()).is_empty());
    }

    #[test]
    fn mountinfo_points_are_unescaped() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /proc rw - proc proc rw\n";
        let points: Vec<_> = mount_points(text).collect();
        assert_eq!(points, vec!["/mnt/with space", "/proc"]);
    }

    fn remap() -> UserNamespace {
        UserNamespace::remap_root(100_000, 100_000, 65_536)
    }

    fn mounts_under(dir: &Path) -> Vec<String> {
        let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
        mount_points(&text)
            .filter(|p| Path::new(p).starts_with(dir))
            .collect()
    }

    #[test]
    fn idmapped_overlay_shows_image_root_as_container_root() {
        use std::os::unix::fs::MetadataExt;
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("layer");
        fs::create_dir_all(layer.join("etc")).unwrap();
        fs::write(layer.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        let ctr = tmp.path().join("ctr");
        let source = RootfsSource::Layers(vec![layer.clone()]);
        let merged = prepare(&source, &ctr, Some(&remap())).unwrap();
        let owner = fs::metadata(merged.join("etc/passwd")).map(|m| m.uid());
        let upper_owner = fs::metadata(ctr.join("upper")).map(|m| (m.uid(), m.gid()));
        let mounted = mounts_under(&ctr);
        let lower_left = ctr.join("lower").exists();
        teardown(&ctr).unwrap();
        assert_eq!(owner.unwrap(), 100_000);
        assert_eq!(upper_owner.unwrap(), (100_000, 100_000));
        // Only the overlay: the idmapped layer binds were detached once it was up.
        assert_eq!(mounted, vec![merged.display().to_string()]);
        assert!(!lower_left);
        assert!(mounts_under(&ctr).is_empty());
        assert!(!ctr.join("upper").exists() && !merged.exists());
        assert_eq!(fs::metadata(layer.join("etc/passwd")).unwrap().uid(), 0);
    }

    #[test]
    fn idmapped_dir_teardown_keeps_the_directory_contents() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rootfs");
        fs::create_dir_all(dir.join("etc")).unwrap();
        let ctr = tmp.path().join("ctr");
        let merged = prepare(&RootfsSource::Dir(dir.clone()), &ctr, Some(&remap())).unwrap();
        assert!(merged.join("etc").is_dir());
        teardown(&ctr).unwrap();
        assert!(mounts_under(&ctr).is_empty());
        assert!(
            dir.join("etc").is_dir(),
            "teardown removed the rootfs dir's files"
        );
    }

    #[test]
    fn invalid_mappings_fail_before_anything_is_made() {
        let tmp = tempfile::tempdir().unwrap();
        let ctr = tmp.path().join("ctr");
        let source = RootfsSource::Layers(vec![tmp.path().to_path_buf()]);
        let err = prepare(&source, &ctr, Some(&UserNamespace::default())).unwrap_err();
        assert!(matches!(err, RootfsError::UserNamespace(_)), "{err}");
        assert!(!ctr.exists());
    }
}
