//! Seeding a new volume with the image's content at the mount point, as Docker does
//! when a container first mounts an empty volume (unless `nocopy`).
//!
//! The copy keeps regular files, directories, symlinks (copied, never followed), hard
//! links (as links), FIFOs and device nodes, owners, modes (setuid, setgid and sticky
//! included), access and modification times and extended attributes where the target
//! filesystem takes them. The volume's root gets the image directory's owner and mode,
//! so a `chown`ed data directory in the image stays usable in the volume.
//!
//! The mount target is resolved inside the rootfs as the container would see it
//! (`openat2` with `RESOLVE_IN_ROOT`): a symlink such as `/var/run -> /run` works, and
//! no symlink can lead out of the rootfs. Below it everything is opened relative to a
//! directory descriptor with `O_NOFOLLOW`.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use thiserror::Error;

/// Why the image's content could not be copied into a volume.
#[derive(Debug, Error)]
pub enum SeedError {
    #[error("cannot open the image's {target} in {}: {source}", rootfs.display())]
    OpenSource {
        rootfs: PathBuf,
        target: String,
        source: io::Error,
    },
    #[error("cannot open the volume directory {}: {source}", path.display())]
    OpenVolume { path: PathBuf, source: io::Error },
    #[error("cannot copy {path} from the image into the volume: {source}")]
    Copy { path: String, source: io::Error },
}

/// What seeding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedOutcome {
    /// The image's content was copied: this many entries (the root not counted).
    Copied { entries: u64 },
    /// The volume already holds data; Docker copies into empty volumes only.
    VolumeNotEmpty,
    /// The image has no directory at the mount point: nothing to copy.
    NothingInImage,
}

/// Copies the directory at `mount_target` (a path inside the container) of `rootfs`
/// into the volume directory `volume_dir` if that is empty.
pub fn copy_image_content(
    rootfs: &Path,
    mount_target: &str,
    volume_dir: &Path,
) -> Result<SeedOutcome, SeedError> {
    let open_volume = |source| SeedError::OpenVolume {
        path: volume_dir.to_path_buf(),
        source,
    };
    let dst = open_dir(rustix::fs::CWD, volume_dir).map_err(open_volume)?;
    if !is_empty(&dst).map_err(open_volume)? {
        return Ok(SeedOutcome::VolumeNotEmpty);
    }
    let Some(src) = open_in_root(rootfs, mount_target)? else {
        return Ok(SeedOutcome::NothingInImage);
    };
    let mut copier = Copier {
        dst_root: &dst,
        links: HashMap::new(),
        entries: 0,
    };
    let root_stat = rustix::fs::fstat(&src).map_err(|e| copy_error("/", e.into()))?;
    copier
        .copy_dir_content(&src, &dst, Path::new(""))
        .map_err(|(path, source)| copy_error(&path, source))?;
    apply_metadata(&src, &dst, &root_stat).map_err(|e| copy_error("/", e))?;
    Ok(SeedOutcome::Copied {
        entries: copier.entries,
    })
}

fn copy_error(path: &str, source: io::Error) -> SeedError {
    SeedError::Copy {
        path: path.to_string(),
        source,
    }
}

/// Opens `target` as a directory, resolving it as if `rootfs` were `/`; `None` when the
/// image has nothing (or no directory) there.
fn open_in_root(rootfs: &Path, target: &str) -> Result<Option<OwnedFd>, SeedError> {
    let open_error = |source: io::Error| SeedError::OpenSource {
        rootfs: rootfs.to_path_buf(),
        target: target.to_string(),
        source,
    };
    let root = open_dir(rustix::fs::CWD, rootfs).map_err(open_error)?;
    let relative = target.trim_start_matches('/');
    let relative = if relative.is_empty() { "." } else { relative };
    match rustix::fs::openat2(
        &root,
        relative,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
        Err(errno) => Err(open_error(errno.into())),
    }
}

fn open_dir<Fd: AsFd, P: rustix::path::Arg>(dir: Fd, path: P) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn is_empty(dir: &OwnedFd) -> io::Result<bool> {
    for entry in Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A failed entry: its path inside the copied tree, and why.
type EntryError = (String, io::Error);

struct Copier<'a> {
    dst_root: &'a OwnedFd,
    /// Files with several links already copied: (dev, inode) → path in the volume.
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
}

impl Copier<'_> {
    fn copy_dir_content(
        &mut self,
        src: &OwnedFd,
        dst: &OwnedFd,
        relative: &Path,
    ) -> Result<(), EntryError> {
        let failed = |path: &Path, e: io::Error| (format!("/{}", path.display()), e);
        let entries = Dir::read_from(src).map_err(|e| failed(relative, e.into()))?;
        for entry in entries {
            let entry = entry.map_err(|e| failed(relative, e.into()))?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let name = name.to_owned();
            let path = relative.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            self.copy_entry(src, dst, &name, &path)
                .map_err(|e| match e {
                    Nested::Here(e) => failed(&path, e),
                    Nested::Below(inner) => inner,
                })?;
            self.entries += 1;
        }
        Ok(())
    }

    fn copy_entry(
        &mut self,
        src_dir: &OwnedFd,
        dst_dir: &OwnedFd,
        name: &std::ffi::CStr,
        path: &Path,
    ) -> Result<(), Nested> {
        let stat = rustix::fs::statat(src_dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Nested::Here(e.into()))?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind != FileType::Directory && stat.st_nlink > 1 {
            let key = (stat.st_dev, stat.st_ino);
            if let Some(first) = self.links.get(&key) {
                rustix::fs::linkat(self.dst_root, first, dst_dir, name, AtFlags::empty())
                    .map_err(|e| Nested::Here(e.into()))?;
                return Ok(());
            }
            self.links.insert(key, path.to_path_buf());
        }
        match kind {
            FileType::Directory => self.copy_dir(src_dir, dst_dir, name, path, &stat),
            FileType::RegularFile => copy_file(src_dir, dst_dir, name, &stat).map_err(Nested::Here),
            FileType::Symlink => copy_symlink(src_dir, dst_dir, name, &stat).map_err(Nested::Here),
            FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                copy_node(dst_dir, name, kind, &stat).map_err(Nested::Here)
            }
            // Sockets belong to a running process; an image never needs them copied.
            _ => Ok(()),
        }
    }

    fn copy_dir(
        &mut self,
        src_dir: &OwnedFd,
        dst_dir: &OwnedFd,
        name: &std::ffi::CStr,
        path: &Path,
        stat: &Stat,
    ) -> Result<(), Nested> {
        let here = |e: Errno| Nested::Here(e.into());
        // Private until its content and final mode are in place.
        rustix::fs::mkdirat(dst_dir, name, Mode::from_raw_mode(0o700)).map_err(here)?;
        let src = open_dir(src_dir, name).map_err(Nested::Here)?;
        let dst = open_dir(dst_dir, name).map_err(Nested::Here)?;
        self.copy_dir_content(&src, &dst, path)
            .map_err(Nested::Below)?;
        apply_metadata(&src, &dst, stat).map_err(Nested::Here)
    }
}

/// An error in this entry, or one already located further down the tree.
enum Nested {
    Here(io::Error),
    Below(EntryError),
}

fn copy_file(
    src_dir: &OwnedFd,
    dst_dir: &OwnedFd,
    name: &std::ffi::CStr,
    stat: &Stat,
) -> io::Result<()> {
    let src = rustix::fs::openat(
        src_dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let dst = rustix::fs::openat(
        dst_dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut reader = File::from(src);
    let mut writer = File::from(dst);
    // std::io::copy uses copy_file_range between files, so large files copy in-kernel.
    io::copy(&mut reader, &mut writer)?;
    apply_metadata(&reader, &writer, stat)
}

fn copy_symlink(
    src_dir: &OwnedFd,
    dst_dir: &OwnedFd,
    name: &std::ffi::CStr,
    stat: &Stat,
) -> io::Result<()> {
    let target = rustix::fs::readlinkat(src_dir, name, Vec::new())?;
    rustix::fs::symlinkat(target.as_c_str(), dst_dir, name)?;
    chown_at(dst_dir, name, stat)?;
    rustix::fs::utimensat(dst_dir, name, &timestamps(stat), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

fn copy_node(
    dst_dir: &OwnedFd,
    name: &std::ffi::CStr,
    kind: FileType,
    stat: &Stat,
) -> io::Result<()> {
    rustix::fs::mknodat(
        dst_dir,
        name,
        kind,
        Mode::from_raw_mode(0o600),
        stat.st_rdev,
    )?;
    chown_at(dst_dir, name, stat)?;
    rustix::fs::chmodat(
        dst_dir,
        name,
        Mode::from_raw_mode(stat.st_mode & 0o7777),
        AtFlags::empty(),
    )?;
    rustix::fs::utimensat(dst_dir, name, &timestamps(stat), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Owner, then mode (a chown clears setuid/setgid), then xattrs, then times (last, as
/// everything before touches ctime and directories' mtime).
fn apply_metadata<S: AsFd, D: AsFd>(src: S, dst: D, stat: &Stat) -> io::Result<()> {
    let current = rustix::fs::fstat(&dst)?;
    if current.st_uid != stat.st_uid || current.st_gid != stat.st_gid {
        rustix::fs::fchown(
            &dst,
            Some(Uid::from_raw(stat.st_uid)),
            Some(Gid::from_raw(stat.st_gid)),
        )?;
    }
    rustix::fs::fchmod(&dst, Mode::from_raw_mode(stat.st_mode & 0o7777))?;
    copy_xattrs(src.as_fd(), dst.as_fd())?;
    rustix::fs::futimens(&dst, &timestamps(stat))?;
    Ok(())
}

fn chown_at(dir: &OwnedFd, name: &std::ffi::CStr, stat: &Stat) -> io::Result<()> {
    let current = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if current.st_uid != stat.st_uid || current.st_gid != stat.st_gid {
        rustix::fs::chownat(
            dir,
            name,
            Some(Uid::from_raw(stat.st_uid)),
            Some(Gid::from_raw(stat.st_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}

fn timestamps(stat: &Stat) -> Timestamps {
    Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: stat.st_atime,
            tv_nsec: stat.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: stat.st_mtime,
            tv_nsec: stat.st_mtime_nsec as _,
        },
    }
}

/// Copies every extended attribute the target filesystem accepts; the others (a
/// `user.*` attribute on an old tmpfs, a `security.*` one without the privilege) are
/// left out, as Docker's copy does.
fn copy_xattrs(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    let names = match read_xattr_names(src) {
        Ok(names) => names,
        Err(Errno::OPNOTSUPP) => return Ok(()),
        Err(errno) => return Err(errno.into()),
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let value = match read_xattr(src, name) {
            Ok(value) => value,
            // Removed meanwhile, or unreadable to us: nothing to copy.
            Err(Errno::NODATA | Errno::PERM | Errno::ACCESS) => continue,
            Err(errno) => return Err(errno.into()),
        };
        match rustix::fs::fsetxattr(dst, name, &value, XattrFlags::empty()) {
            Ok(()) | Err(Errno::OPNOTSUPP | Errno::PERM | Errno::ACCESS) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

fn read_xattr_names(fd: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    loop {
        let size = rustix::fs::flistxattr_query(fd)?;
        let mut buf = vec![0u8; size];
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            // Grew between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(errno) => return Err(errno),
        }
    }
}

fn read_xattr(fd: BorrowedFd<'_>, name: &[u8]) -> Result<Vec<u8>, Errno> {
    loop {
        let size = rustix::fs::fgetxattr_query(fd, name)?;
        let mut buf = vec![0u8; size];
        match rustix::fs::fgetxattr(fd, name, &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(errno) => return Err(errno),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// An image rootfs with a data directory holding every kind of entry.
    fn sample_rootfs() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("var/lib/app");
        std::fs::create_dir_all(data.join("sub/deeper")).unwrap();
        std::fs::write(data.join("config"), b"key=value\n").unwrap();
        std::fs::write(data.join("sub/deeper/file"), b"deep").unwrap();
        std::fs::hard_link(data.join("config"), data.join("config.link")).unwrap();
        std::os::unix::fs::symlink("../config", data.join("sub/rel-link")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", data.join("abs-link")).unwrap();
        std::fs::write(data.join("tool"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(data.join("tool"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        std::fs::create_dir(data.join("tmp")).unwrap();
        std::fs::set_permissions(data.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            data.join("pipe"),
            Mode::from_raw_mode(0o640),
        )
        .unwrap();
        let old = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_600_000_000,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1_600_000_000,
                tv_nsec: 500,
            },
        };
        rustix::fs::utimensat(rustix::fs::CWD, data.join("config"), &old, AtFlags::empty())
            .unwrap();
        // /var/run -> /run style absolute link in the path to the mount point.
        std::fs::create_dir_all(root.path().join("srv")).unwrap();
        std::os::unix::fs::symlink("/var/lib/app", root.path().join("srv/app")).unwrap();
        root
    }

    #[test]
    fn copies_files_links_modes_and_times() {
        let rootfs = sample_rootfs();
        let volume = tempfile::tempdir().unwrap();
        let outcome = copy_image_content(rootfs.path(), "/var/lib/app", volume.path()).unwrap();
        assert_eq!(outcome, SeedOutcome::Copied { entries: 10 });
        let v = volume.path();
        assert_eq!(std::fs::read(v.join("sub/deeper/file")).unwrap(), b"deep");
        let config = std::fs::metadata(v.join("config")).unwrap();
        let link = std::fs::metadata(v.join("config.link")).unwrap();
        assert_eq!(config.ino(), link.ino(), "hard link kept as a link");
        assert_eq!(config.nlink(), 2);
        assert_eq!((config.mtime(), config.mtime_nsec()), (1_600_000_000, 500));
        assert_eq!(
            std::fs::read_link(v.join("abs-link")).unwrap(),
            Path::new("/etc/shadow"),
            "symlinks are copied, not followed"
        );
        assert_eq!(
            std::fs::read_link(v.join("sub/rel-link")).unwrap(),
            Path::new("../config")
        );
        let mode = |p: &str| std::fs::symlink_metadata(v.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("tool"), 0o4755);
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode("pipe"), 0o640);
        assert!(std::fs::symlink_metadata(v.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo_like());
    }

    trait FifoLike {
        fn is_fifo_like(&self) -> bool;
    }
    impl FifoLike for std::fs::FileType {
        fn is_fifo_like(&self) -> bool {
            std::os::unix::fs::FileTypeExt::is_fifo(self)
        }
    }

    #[test]
    fn the_volume_root_takes_the_image_directory_mode() {
        let rootfs = sample_rootfs();
        std::fs::set_permissions(
            rootfs.path().join("var/lib/app"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        let volume = tempfile::tempdir().unwrap();
        copy_image_content(rootfs.path(), "/var/lib/app", volume.path()).unwrap();
        let mode = std::fs::metadata(volume.path()).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o750);
    }

    #[test]
    fn a_volume_with_data_is_left_alone() {
        let rootfs = sample_rootfs();
        let volume = tempfile::tempdir().unwrap();
        std::fs::write(volume.path().join("mine"), b"keep").unwrap();
        let outcome = copy_image_content(rootfs.path(), "/var/lib/app", volume.path()).unwrap();
        assert_eq!(outcome, SeedOutcome::VolumeNotEmpty);
        assert!(!volume.path().join("config").exists());
    }

    #[test]
    fn missing_or_non_directory_targets_copy_nothing() {
        let rootfs = sample_rootfs();
        let volume = tempfile::tempdir().unwrap();
        for target in ["/nope", "/var/lib/app/config"] {
            let outcome = copy_image_content(rootfs.path(), target, volume.path()).unwrap();
            assert_eq!(outcome, SeedOutcome::NothingInImage, "{target}");
        }
    }

    #[test]
    fn symlinks_on_the_way_resolve_inside_the_rootfs() {
        let rootfs = sample_rootfs();
        // An absolute link to a host directory must land in the rootfs, not on the host.
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("host-secret"), b"x").unwrap();
        std::os::unix::fs::symlink(host.path(), rootfs.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../../..", rootfs.path().join("srv/up")).unwrap();
        let volume = tempfile::tempdir().unwrap();
        let outcome = copy_image_content(rootfs.path(), "/escape", volume.path()).unwrap();
        assert_eq!(outcome, SeedOutcome::NothingInImage);
        let outcome = copy_image_content(rootfs.path(), "/srv/up/var/lib/app", volume.path());
        assert_eq!(outcome.unwrap(), SeedOutcome::Copied { entries: 10 });
        let other = tempfile::tempdir().unwrap();
        let outcome = copy_image_content(rootfs.path(), "/srv/app", other.path()).unwrap();
        assert_eq!(outcome, SeedOutcome::Copied { entries: 10 });
        assert!(other.path().join("config").exists());
    }

    #[test]
    fn a_missing_volume_directory_is_named() {
        let rootfs = sample_rootfs();
        let err = copy_image_content(rootfs.path(), "/var/lib/app", Path::new("/nonexistent/v"))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/v"), "{err}");
    }

    #[test]
    fn owners_and_xattrs_are_kept() {
        if !is_root() {
            eprintln!("skipped: copying owners and trusted xattrs needs root");
            return;
        }
        let rootfs = sample_rootfs();
        let data = rootfs.path().join("var/lib/app");
        rustix::fs::chown(&data, Some(Uid::from_raw(999)), Some(Gid::from_raw(998))).unwrap();
        rustix::fs::chown(
            data.join("config"),
            Some(Uid::from_raw(1000)),
            Some(Gid::from_raw(1001)),
        )
        .unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            data.join("abs-link"),
            Some(Uid::from_raw(1002)),
            Some(Gid::from_raw(1003)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        // chown cleared setuid: set it again, the copy must keep both.
        rustix::fs::chown(data.join("tool"), Some(Uid::from_raw(1000)), None).unwrap();
        std::fs::set_permissions(data.join("tool"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        rustix::fs::setxattr(
            data.join("config"),
            "trusted.rcompose-test",
            b"hello",
            XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::setxattr(
            data.join("sub"),
            "user.rcompose-test",
            b"dir",
            XattrFlags::empty(),
        )
        .unwrap();
        let volume = tempfile::tempdir().unwrap();
        copy_image_content(rootfs.path(), "/var/lib/app", volume.path()).unwrap();
        let v = volume.path();
        let owner = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(
            owner(v),
            (999, 998),
            "volume root takes the image dir's owner"
        );
        assert_eq!(owner(&v.join("config")), (1000, 1001));
        assert_eq!(owner(&v.join("abs-link")), (1002, 1003));
        let tool = std::fs::metadata(v.join("tool")).unwrap();
        assert_eq!((tool.uid(), tool.mode() & 0o7777), (1000, 0o4755));
        let mut buf = [0u8; 16];
        let len =
            rustix::fs::getxattr(v.join("config"), "trusted.rcompose-test", &mut buf[..]).unwrap();
        assert_eq!(&buf[..len], b"hello");
        let len = rustix::fs::getxattr(v.join("sub"), "user.rcompose-test", &mut buf[..]).unwrap();
        assert_eq!(&buf[..len], b"dir");
    }
}
