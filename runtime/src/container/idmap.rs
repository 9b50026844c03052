//! Idmapped mounts: a directory mounted so that its files appear with their owners
//! shifted through a user namespace's id mappings (`mount_setattr(2)` with
//! `MOUNT_ATTR_IDMAP`, Linux 5.12+).
//!
//! The container's rootfs needs them: image files are owned by host root (0), which
//! a remapped container sees as `nobody`. Seen through an idmapped mount with the
//! container's own mappings, on-disk uid 0 appears as the container root's host
//! uid (e.g. 100000), i.e. as root inside the container.
//!
//! The kernel wants the mappings as a user namespace fd. There is no syscall that
//! makes one from a map, so a short-lived child process unshares a user namespace,
//! we write its maps and keep `/proc/<pid>/ns/user` open; the namespace lives on as
//! long as that fd (and the mounts made with it) do.

#![allow(unsafe_code)]

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{move_mount, open_tree, MoveMountFlags, OpenTreeFlags};
use thiserror::Error;

use super::config::{IdMapping, UserNamespace};

#[derive(Debug, Error)]
pub enum IdmapError {
    #[error("creating a user namespace for the id mappings: {0}")]
    Unshare(#[source] io::Error),
    #[error("writing {path}: {source} (are the mappings valid for this host?)")]
    WriteMap {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{action} {path}: {source}")]
    Mount {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("idmapping the mount of {path}: {source}; the kernel (5.12+) or the filesystem under it does not support idmapped mounts")]
    Unsupported {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `MOUNT_ATTR_IDMAP` from `<linux/mount.h>` (not in the libc crate).
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` from `<linux/mount.h>` (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Makes a user namespace with `mappings` and returns an fd referring to it.
pub fn user_namespace_fd(mappings: &UserNamespace) -> Result<OwnedFd, IdmapError> {
    let child = ParkedChild::spawn()?;
    write_map(child.pid, "uid_map", &mappings.uid_mappings)?;
    write_map(child.pid, "gid_map", &mappings.gid_mappings)?;
    let ns_path = format!("/proc/{}/ns/user", child.pid);
    let fd = fs::File::open(&ns_path).map_err(|source| IdmapError::WriteMap {
        path: ns_path.into(),
        source,
    })?;
    Ok(fd.into())
}

/// The text of a uid_map/gid_map: one `inside outside count` line per mapping.
fn map_text(mappings: &[IdMapping]) -> String {
    mappings
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

fn write_map(pid: libc::pid_t, file: &str, mappings: &[IdMapping]) -> Result<(), IdmapError> {
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    // The whole map must arrive in a single write.
    fs::write(&path, map_text(mappings)).map_err(|source| IdmapError::WriteMap { path, source })
}

/// Mounts `source` at `target` (an existing directory) with file owners shifted
/// through the user namespace `userns`. Not recursive: mounts under `source` are
/// not carried over.
pub fn idmapped_bind(
    source: &Path,
    target: &Path,
    userns: BorrowedFd<'_>,
) -> Result<(), IdmapError> {
    let mount_error = |action| {
        move |err: rustix::io::Errno| IdmapError::Mount {
            action,
            path: source.to_path_buf(),
            source: err.into(),
        }
    };
    let tree = open_tree(
        CWD,
        source,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(mount_error("cloning the mount of"))?;
    set_idmap(tree.as_fd(), userns).map_err(|source_err| IdmapError::Unsupported {
        path: source.to_path_buf(),
        source: source_err,
    })?;
    move_mount(
        tree.as_fd(),
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|err| IdmapError::Mount {
        action: "attaching the idmapped mount at",
        path: target.to_path_buf(),
        source: err.into(),
    })
}

/// `mount_setattr(tree, "", AT_EMPTY_PATH, {MOUNT_ATTR_IDMAP, userns})`.
fn set_idmap(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    let userns_fd = u64::try_from(userns.as_raw_fd())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd,
    };
    // SAFETY: the path is a NUL-terminated empty string, `attr` is a live
    // `struct mount_attr` whose size is passed along, and both fds are borrowed
    // for the duration of the call. The kernel only reads from the pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A child process that has unshared a user namespace and waits, so the parent
/// can write its maps and open its namespace file. Dropping it releases and
/// reaps the child.
struct ParkedChild {
    pid: libc::pid_t,
    /// Closing this (our end of the hold pipe) lets the child exit.
    hold: Option<OwnedFd>,
}

impl ParkedChild {
    fn spawn() -> Result<ParkedChild, IdmapError> {
        let pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|err| IdmapError::Unshare(err.into()))
        };
        let (ready_r, ready_w) = pipe()?;
        let (hold_r, hold_w) = pipe()?;
        // SAFETY: the caller may have other threads, so the child only makes raw,
        // async-signal-safe syscalls (unshare, write, close, read, _exit) on fds
        // and values prepared before the fork, and never returns into Rust code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(IdmapError::Unshare(io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: as above; this function does not return.
            unsafe { park_in_new_user_namespace(&ready_w, &hold_r, &hold_w) }
        }
        drop(ready_w);
        drop(hold_r);
        let child = ParkedChild {
            pid,
            hold: Some(hold_w),
        };
        // The child reports 0 once it is in its new namespace, or the errno.
        let mut status = [0u8; 4];
        let read = rustix::io::read(&ready_r, &mut status)
            .map_err(|err| IdmapError::Unshare(err.into()))?;
        let errno = i32::from_ne_bytes(status);
        if read != status.len() {
            return Err(IdmapError::Unshare(io::Error::other(
                "the child process exited before reporting",
            )));
        }
        if errno != 0 {
            return Err(IdmapError::Unshare(io::Error::from_raw_os_error(errno)));
        }
        Ok(child)
    }
}

/// The child's side: unshare, report, wait for the parent to close the hold pipe.
///
/// # Safety
/// Only to be called in a freshly forked child; it never returns.
unsafe fn park_in_new_user_namespace(ready: &OwnedFd, hold_r: &OwnedFd, hold_w: &OwnedFd) -> ! {
    // SAFETY: plain syscalls on fds owned by this process; buffers are local.
    unsafe {
        libc::close(hold_w.as_raw_fd());
        let errno = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
            0
        } else {
            *libc::__errno_location()
        };
        let bytes = errno.to_ne_bytes();
        libc::write(ready.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
        let mut byte = 0u8;
        // Returns 0 (EOF) once the parent is done, or fails if it died.
        libc::read(hold_r.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
        libc::_exit(0)
    }
}

impl Drop for ParkedChild {
    fn drop(&mut self) {
        drop(self.hold.take());
        let mut status = 0;
        // Closing the hold pipe is not enough when other threads fork meanwhile: their
        // children inherit our end of it (CLOEXEC acts on exec only), and two parked
        // children would keep each other waiting forever. It has nothing left to do.
        // SAFETY: signals and waits for our own child, whose pid we hold; `status` is
        // local.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            while libc::waitpid(self.pid, &mut status, 0) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::config::DEFAULT_REMAP_SIZE;
    use std::os::unix::fs::MetadataExt;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn map_text_has_one_line_per_mapping() {
        let mappings = [
            IdMapping {
                container_id: 0,
                host_id: 100_000,
                size: 1000,
            },
            IdMapping {
                container_id: 1000,
                host_id: 1000,
                size: 1,
            },
        ];
        assert_eq!(map_text(&mappings), "0 100000 1000\n1000 1000 1\n");
    }

    #[test]
    fn namespace_fd_carries_the_mappings() {
        if !is_root() {
            return;
        }
        let userns = UserNamespace::remap_root(100_000, 100_000, DEFAULT_REMAP_SIZE);
        let fd = user_namespace_fd(&userns).unwrap();
        // A process that joins it sees the maps; here the fd's inode is enough:
        // it is a user namespace other than ours.
        let ours = fs::metadata("/proc/self/ns/user").unwrap().ino();
        let theirs = rustix::fs::fstat(&fd).unwrap().st_ino;
        assert_ne!(ours, theirs);
    }

    #[test]
    fn bad_mappings_are_reported_by_the_kernel() {
        if !is_root() {
            return;
        }
        let overlapping = UserNamespace {
            uid_mappings: vec![
                IdMapping {
                    container_id: 0,
                    host_id: 100_000,
                    size: 10,
                },
                IdMapping {
                    container_id: 5,
                    host_id: 200_000,
                    size: 10,
                },
            ],
            gid_mappings: vec![],
        };
        let err = user_namespace_fd(&overlapping).unwrap_err();
        assert!(err.to_string().contains("uid_map"), "{err}");
    }

    #[test]
    fn idmapped_bind_shows_root_files_as_the_mapped_owner() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (source, target) = (tmp.path().join("src"), tmp.path().join("dst"));
        fs::create_dir_all(&source).unwrap();
        fs::create_dir_all(&target).unwrap();
        fs::write(source.join("f"), "x").unwrap();
        let userns = UserNamespace::remap_root(100_000, 200_000, DEFAULT_REMAP_SIZE);
        let fd = user_namespace_fd(&userns).unwrap();
        idmapped_bind(&source, &target, fd.as_fd()).unwrap();
        let seen = fs::metadata(target.join("f"));
        let created = fs::write(target.join("g"), "y");
        let on_disk = fs::metadata(source.join("g"));
        rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH).unwrap();
        let seen = seen.unwrap();
        assert_eq!((seen.uid(), seen.gid()), (100_000, 200_000));
        // Host root cannot write through the mount: its uid 0 is not in the mapping.
        assert!(created.is_err(), "host root created a file: {on_disk:?}");
    }

    #[test]
    fn missing_source_is_named_in_the_error() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let fd = user_namespace_fd(&UserNamespace::remap_root(100_000, 100_000, 10)).unwrap();
        let missing = tmp.path().join("gone");
        let err = idmapped_bind(&missing, tmp.path(), fd.as_fd()).unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
    }
}
