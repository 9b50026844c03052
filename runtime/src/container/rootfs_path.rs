//! Paths inside a container's root filesystem, resolved from the host: symlinks are
//! followed as if the rootfs were `/` (absolute targets restart at the rootfs, `..`
//! never climbs above it), so an image can never point a lookup at a host file.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Linux's own limit on symlinks followed in one lookup.
pub const MAX_SYMLINKS: usize = 40;

/// Where a path led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Relative to the rootfs and free of symlinks; it may not exist.
    InRootfs(PathBuf),
    /// The lookup entered one of the given mount targets at this relative path and
    /// stopped there (what lies below comes from the mount, not from the image).
    UnderMount(PathBuf),
}

#[derive(Debug)]
pub enum ResolveError {
    /// More than [`MAX_SYMLINKS`] links: a loop.
    SymlinkLoop,
    Io(io::Error),
}

/// Resolves `path` (as the container sees it) under `rootfs`, stopping at any of
/// `mounts` (relative, already resolved targets).
pub fn resolve_in_rootfs(
    rootfs: &Path,
    path: &Path,
    mounts: &[PathBuf],
) -> Result<Resolved, ResolveError> {
    let mut pending = steps_of(path);
    pending.reverse(); // a stack: the next step is last
    let mut resolved = PathBuf::new();
    let mut links_followed = 0;
    while let Some(step) = pending.pop() {
        let name = match step {
            Step::Parent => {
                resolved.pop();
                continue;
            }
            Step::Name(name) => name,
        };
        let candidate = resolved.join(&name);
        if mounts.iter().any(|m| candidate.starts_with(m)) {
            return Ok(Resolved::UnderMount(candidate));
        }
        let host = rootfs.join(&candidate);
        let is_link = fs::symlink_metadata(&host).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            resolved = candidate;
            continue;
        }
        links_followed += 1;
        if links_followed > MAX_SYMLINKS {
            return Err(ResolveError::SymlinkLoop);
        }
        let target = fs::read_link(&host).map_err(ResolveError::Io)?;
        if target.is_absolute() {
            resolved = PathBuf::new();
        }
        pending.extend(steps_of(&target).into_iter().rev());
    }
    Ok(Resolved::InRootfs(resolved))
}

/// One step of a path still to resolve.
pub(crate) enum Step {
    Parent,
    Name(OsString),
}

/// `path`'s components as steps (`.` and the root dropped).
pub(crate) fn steps_of(path: &Path) -> Vec<Step> {
    path.components()
        .filter_map(|c| match c {
            Component::ParentDir => Some(Step::Parent),
            Component::Normal(name) => Some(Step::Name(name.to_os_string())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_resolve_inside_the_rootfs_only() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        symlink("/usr/bin", root.path().join("bin")).unwrap();
        symlink("../../../../etc/shadow", root.path().join("usr/bin/escape")).unwrap();
        let resolved = resolve_in_rootfs(root.path(), Path::new("/bin/sh"), &[]).unwrap();
        assert_eq!(resolved, Resolved::InRootfs("usr/bin/sh".into()));
        let resolved = resolve_in_rootfs(root.path(), Path::new("/bin/escape"), &[]).unwrap();
        assert_eq!(resolved, Resolved::InRootfs("etc/shadow".into()));
    }

    #[test]
    fn loops_are_errors_and_mounts_stop_the_lookup() {
        let root = tempfile::tempdir().unwrap();
        symlink("b", root.path().join("a")).unwrap();
        symlink("a", root.path().join("b")).unwrap();
        let err = resolve_in_rootfs(root.path(), Path::new("/a"), &[]).unwrap_err();
        assert!(matches!(err, ResolveError::SymlinkLoop));
        let resolved =
            resolve_in_rootfs(root.path(), Path::new("/data/x"), &["data".into()]).unwrap();
        assert_eq!(resolved, Resolved::UnderMount("data".into()));
    }
}
