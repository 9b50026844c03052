//! A container's root filesystem: either a plain directory used as is, or an
//! overlayfs of image layer directories with a per-container writable layer.
//!
//! The overlay lives under the container's own directory:
//! `<container_dir>/upper` (the writes), `<container_dir>/work` (overlayfs scratch,
//! must be on the same filesystem as `upper`) and `<container_dir>/merged` (the mount
//! point, which becomes the spec's `root.path`). It is mounted in the host mount
//! namespace before the container is created, so the container's init pivots into it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};
use serde::{Deserialize, Serialize};
use thiserror::Error;

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

/// Makes the root filesystem ready and returns the path to use as `root.path`.
pub fn prepare(source: &RootfsSource, container_dir: &Path) -> Result<PathBuf, RootfsError> {
    match source {
        RootfsSource::Dir(dir) => {
            if !dir.is_dir() {
                return Err(RootfsError::MissingDir(dir.clone()));
            }
            fs::canonicalize(dir).map_err(io_error("resolving", dir))
        }
        RootfsSource::Layers(layers) => mount_overlay(layers, container_dir),
    }
}

/// Mounts `layers` (top first) under `container_dir/merged`, with a fresh writable
/// layer. An overlay left mounted by an earlier attempt is reused.
pub fn mount_overlay(layers: &[PathBuf], container_dir: &Path) -> Result<PathBuf, RootfsError> {
    let options = overlay_options(layers, container_dir)?;
    let merged = merged_dir(container_dir);
    for dir in [
        container_dir.join("upper"),
        container_dir.join("work"),
        merged.clone(),
    ] {
        fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
    }
    if is_mounted(&merged)? {
        return Ok(merged);
    }
    let data = std::ffi::CString::new(options).map_err(|_| RootfsError::NoLayers)?;
    mount(
        "overlay",
        &merged,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )
    .map_err(|err| RootfsError::Io {
        action: "mounting overlay at",
        path: merged.clone(),
        source: err.into(),
    })?;
    Ok(merged)
}

/// `lowerdir=…,upperdir=…,workdir=…` for `layers` (top first).
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
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
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

/// Unmounts the overlay (if mounted) and removes the writable layer. Safe to call
/// any number of times, and on a container that never had an overlay.
pub fn teardown(container_dir: &Path) -> Result<(), RootfsError> {
    let merged = merged_dir(container_dir);
    if is_mounted(&merged)? {
        // Lazy: a process still holding a file open must not make delete fail.
        unmount(&merged, UnmountFlags::DETACH).map_err(|err| RootfsError::Io {
            action: "unmounting",
            path: merged.clone(),
            source: err.into(),
        })?;
    }
    for name in ["merged", "upper", "work"] {
        remove_dir_if_present(&container_dir.join(name))?;
    }
    Ok(())
}

fn remove_dir_if_present(dir: &Path) -> Result<(), RootfsError> {
    match fs::remove_dir_all(dir) {
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
                "lowerdir={}:{},upperdir={}/upper,workdir={}/work",
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
            prepare(&missing, tmp.path()),
            Err(RootfsError::MissingDir(_))
        ));
        let present = RootfsSource::Dir(tmp.path().to_path_buf());
        assert_eq!(
            prepare(&present, tmp.path()).unwrap(),
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
    fn mountinfo_points_are_unescaped() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /proc rw - proc proc rw\n";
        let points: Vec<_> = mount_points(text).collect();
        assert_eq!(points, vec!["/mnt/with space", "/proc"]);
    }
}
