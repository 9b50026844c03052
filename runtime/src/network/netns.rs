//! Persistent, named network namespaces and running code inside them.
//!
//! A namespace lives as long as something refers to it; like `ip netns add`, we keep each
//! one alive by bind-mounting its nsfs file onto `<state_root>/netns/<name>`. That file is
//! what containers join (`NamespaceMode::Join(path)`) and what `in_netns` enters.
//!
//! Namespace switches are per thread (`setns`/`unshare` with `CLONE_NEWNET` only affect
//! the calling thread), so every switch happens on a short-lived thread this module
//! spawns and joins: the caller's threads never change namespace, and a thread that has
//! switched never goes back to a pool.
#![allow(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::mount::{
    mount_bind, mount_bind_recursive, mount_change, unmount, MountPropagationFlags, UnmountFlags,
};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType, UnshareFlags};

use crate::lock::{lock_file, LockGuard, LockKind};

/// Directory under the state root that holds the namespace files.
const NETNS_DIR: &str = "netns";
/// The calling thread's own network namespace; a thread is the right granularity.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";
/// Lock file (under the state root) for creating namespaces and releasing their directory.
const LOCK_FILE: &str = "netns.lock";
/// `statfs` type of the namespace file system (linux/magic.h).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Errors from creating, entering and deleting network namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("invalid network namespace name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("network namespace file {} already exists; delete it first or pick another name", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("network namespace {} does not exist", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot {op} for network namespace {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot bring the loopback device up in the new network namespace {}: {reason}", path.display())]
    Loopback { path: PathBuf, reason: String },
    #[error("the thread working in network namespace {} panicked", path.display())]
    ThreadPanicked { path: PathBuf },
}

impl NetnsError {
    fn io(op: &'static str, path: &Path, source: impl Into<io::Error>) -> Self {
        NetnsError::Io {
            op,
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
}

/// An open, persistent network namespace file (`<state_root>/netns/<name>` or any
/// bind-mounted nsfs file). The open descriptor keeps referring to the namespace even
/// if the file is unmounted meanwhile.
#[derive(Debug)]
pub struct NetnsHandle {
    path: PathBuf,
    file: File,
}

/// Where the namespace named `name` lives under `state_root`.
pub fn netns_path(state_root: &Path, name: &str) -> PathBuf {
    state_root.join(NETNS_DIR).join(name)
}

impl NetnsHandle {
    /// Creates a new network namespace, pins it at `<state_root>/netns/<name>` and brings
    /// its `lo` up. Fails with `AlreadyExists` if a namespace is mounted there already;
    /// a plain file left over from before a reboot is reused.
    pub fn create(state_root: &Path, name: &str) -> Result<Self, NetnsError> {
        validate_name(name)?;
        let dir = state_root.join(NETNS_DIR);
        fs::create_dir_all(&dir)
            .map_err(|err| NetnsError::io("create the directory", &dir, err))?;
        let _lock = lock_netns_dir(state_root)?;
        ensure_shared_mount_dir(&dir)?;
        let path = dir.join(name);
        claim_file(&path)?;
        let pinned = pin_new_namespace(&path).and_then(|()| Self::open(&path));
        if pinned.is_err() {
            // Leave nothing half-made behind: the file is ours, we just claimed it.
            let _ = delete_netns(&path);
        }
        pinned
    }

    /// Opens an existing namespace file (ours, `/run/netns/x`, `/proc/<pid>/ns/net`).
    pub fn open(path: &Path) -> Result<Self, NetnsError> {
        let file = File::open(path).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => NetnsError::NotFound {
                path: path.to_path_buf(),
            },
            _ => NetnsError::io("open the file", path, err),
        })?;
        Ok(NetnsHandle {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The namespace file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A descriptor for the namespace, e.g. for `IFLA_NET_NS_FD`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Runs `f` on a dedicated thread that has entered this namespace, and returns its
    /// result. Netlink sockets and `/proc/sys/net` files opened by `f` belong to it.
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        run_in(&self.path, self.file.as_fd(), f)
    }
}

/// Runs `f` inside the network namespace file at `path` on a dedicated thread.
pub fn in_netns<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    NetnsHandle::open(path)?.run(f)
}

/// Unmounts and removes a namespace file. Already gone (or never mounted) is fine.
/// The namespace itself disappears once no process and no descriptor refers to it.
pub fn delete_netns(path: &Path) -> Result<(), NetnsError> {
    match unmount(path, UnmountFlags::DETACH) {
        // EINVAL: not a mount point (any more); ENOENT: no file at all.
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(errno) => return Err(NetnsError::io("unmount the file", path, errno)),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(NetnsError::io("remove the file", path, err)),
    }
}

/// Deletes `<state_root>/netns/<name>`; see [`delete_netns`].
pub fn delete_named_netns(state_root: &Path, name: &str) -> Result<(), NetnsError> {
    validate_name(name)?;
    delete_netns(&netns_path(state_root, name))
}

/// Undoes the bind mount that `create` puts on `<state_root>/netns` once no namespace
/// file is left in it, so a state root can be removed without leaving a mount behind.
/// Returns false (and changes nothing) while namespace files remain.
pub fn release_netns_dir(state_root: &Path) -> Result<bool, NetnsError> {
    let dir = state_root.join(NETNS_DIR);
    if !dir.exists() {
        return Ok(true);
    }
    let _lock = lock_netns_dir(state_root)?;
    let mut entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(err) => return Err(NetnsError::io("list the directory", &dir, err)),
    };
    if entries.next().is_some() {
        return Ok(false);
    }
    match unmount(&dir, UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(true),
        Err(errno) => Err(NetnsError::io("unmount the directory", &dir, errno)),
    }
}

/// The identity (device, inode) of the namespace the calling thread is in; equal
/// identities mean the same namespace.
pub fn current_netns_id() -> Result<(u64, u64), NetnsError> {
    let path = Path::new(THREAD_NETNS);
    let meta = fs::metadata(path).map_err(|err| NetnsError::io("read", path, err))?;
    Ok(namespace_id(&meta))
}

/// The identity of the namespace behind a namespace file.
pub fn netns_id(path: &Path) -> Result<(u64, u64), NetnsError> {
    let meta = fs::metadata(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => NetnsError::NotFound {
            path: path.to_path_buf(),
        },
        _ => NetnsError::io("read", path, err),
    })?;
    Ok(namespace_id(&meta))
}

fn namespace_id(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Names become file names and appear in error messages: keep them to one plain path
/// component.
fn validate_name(name: &str) -> Result<(), NetnsError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it is a relative path component")
    } else if name.contains('/') || name.contains('\0') {
        Some("it contains '/' or a NUL byte")
    } else if name.len() > 255 {
        Some("it is longer than 255 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetnsError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Makes the directory a shared mount point, as iproute2 does for /run/netns: the
/// namespace mounts below it then propagate to (and get unmounted from) mount
/// namespaces copied from ours, instead of lingering there and pinning namespaces.
fn ensure_shared_mount_dir(dir: &Path) -> Result<(), NetnsError> {
    let shared = MountPropagationFlags::SHARED | MountPropagationFlags::REC;
    match mount_change(dir, shared) {
        Ok(()) => return Ok(()),
        // Not a mount point yet: make it one by binding it onto itself.
        Err(rustix::io::Errno::INVAL) => {}
        Err(errno) => {
            return Err(NetnsError::io(
                "make the directory a shared mount",
                dir,
                errno,
            ))
        }
    }
    mount_bind_recursive(dir, dir)
        .map_err(|errno| NetnsError::io("bind-mount the directory onto itself", dir, errno))?;
    mount_change(dir, shared)
        .map_err(|errno| NetnsError::io("make the directory a shared mount", dir, errno))
}

/// Creates the (empty) file a namespace gets mounted on. A file that is already there
/// but holds no namespace is left over from before a reboot (the mounts are gone, the
/// files stay): it is taken over rather than refused.
fn claim_file(path: &Path) -> Result<(), NetnsError> {
    let created = OpenOptions::new().write(true).create_new(true).open(path);
    match created {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            if holds_a_namespace(path)? {
                Err(NetnsError::AlreadyExists {
                    path: path.to_path_buf(),
                })
            } else {
                Ok(())
            }
        }
        Err(err) => Err(NetnsError::io("create the file", path, err)),
    }
}

/// Whether a namespace (nsfs) is mounted on `path`.
fn holds_a_namespace(path: &Path) -> Result<bool, NetnsError> {
    let stat = rustix::fs::statfs(path)
        .map_err(|errno| NetnsError::io("check the file system of", path, errno))?;
    Ok(stat.f_type as i64 == NSFS_MAGIC)
}

/// Serialises creating namespaces and releasing the directory within one state root,
/// across threads and processes; the lock goes with the returned guard.
fn lock_netns_dir(state_root: &Path) -> Result<LockGuard, NetnsError> {
    let path = state_root.join(LOCK_FILE);
    lock_file(&path, LockKind::Exclusive).map_err(|err| NetnsError::io("lock", &path, err))
}

/// On a throwaway thread: move into a brand-new network namespace, bind its nsfs file
/// onto `path` so it outlives the thread, and bring `lo` up while we are in there.
fn pin_new_namespace(path: &Path) -> Result<(), NetnsError> {
    let joined = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<(), NetnsError> {
                // SAFETY: unshare(CLONE_NEWNET) only gives this thread a new network
                // namespace; it does not unshare the descriptor table (the hazard that
                // makes rustix mark unshare unsafe), and this thread ends right after.
                unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }.map_err(
                    |errno| NetnsError::io("unshare a new network namespace", path, errno),
                )?;
                mount_bind(THREAD_NETNS, path)
                    .map_err(|errno| NetnsError::io("bind-mount the new namespace", path, errno))?;
                super::link::set_link_up("lo").map_err(|err| NetnsError::Loopback {
                    path: path.to_path_buf(),
                    reason: err.to_string(),
                })
            })
            .join()
    });
    joined.unwrap_or_else(|_| {
        Err(NetnsError::ThreadPanicked {
            path: path.to_path_buf(),
        })
    })
}

fn run_in<T, F>(path: &Path, fd: BorrowedFd<'_>, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let joined = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<T, NetnsError> {
                move_into_link_name_space(fd, Some(LinkNameSpaceType::Network))
                    .map_err(|errno| NetnsError::io("enter (setns)", path, errno))?;
                Ok(f())
            })
            .join()
    });
    joined.unwrap_or_else(|_| {
        Err(NetnsError::ThreadPanicked {
            path: path.to_path_buf(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::link;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    fn skip_unless_root(test: &str) -> bool {
        if is_root() {
            return false;
        }
        println!("{test}: skipped, needs root to create network namespaces");
        true
    }

    /// Whether `path` is a mount point in our mount namespace.
    fn is_mounted(path: &Path) -> bool {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
        let wanted = path.to_string_lossy();
        mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .any(|mount_point| mount_point == wanted)
    }

    fn mounts_under(root: &Path) -> usize {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
        let prefix = root.to_string_lossy();
        mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|mount_point| mount_point.starts_with(prefix.as_ref()))
            .count()
    }

    #[test]
    fn bad_names_are_refused_before_touching_anything() {
        let root = tempfile::tempdir().expect("tempdir");
        for name in ["", ".", "..", "a/b", "../escape"] {
            let err = NetnsHandle::create(root.path(), name).expect_err(name);
            assert!(
                matches!(err, NetnsError::InvalidName { .. }),
                "{name:?}: {err}"
            );
            assert!(err.to_string().contains("invalid network namespace name"));
        }
        assert!(!root.path().join(NETNS_DIR).exists());
    }

    #[test]
    fn opening_a_missing_namespace_says_so() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = netns_path(root.path(), "nope");
        let err = in_netns(&path, || ()).expect_err("missing netns");
        assert!(matches!(err, NetnsError::NotFound { .. }));
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn deleting_what_is_not_there_is_fine() {
        let root = tempfile::tempdir().expect("tempdir");
        delete_named_netns(root.path(), "never-created").expect("delete missing");
        assert!(release_netns_dir(root.path()).expect("release missing dir"));
    }

    #[test]
    fn create_enter_and_delete_a_namespace() {
        if skip_unless_root("create_enter_and_delete_a_namespace") {
            return;
        }
        let root = tempfile::tempdir().expect("tempdir");
        let ours = current_netns_id().expect("own netns");

        let ns = NetnsHandle::create(root.path(), "rc-test-a").expect("create");
        assert_eq!(ns.path(), netns_path(root.path(), "rc-test-a"));
        assert!(is_mounted(ns.path()), "namespace file is a mount point");
        // Creating it switched no thread of ours.
        assert_eq!(current_netns_id().expect("own netns"), ours);

        let inside = ns.run(current_netns_id).expect("run").expect("id inside");
        assert_ne!(inside, ours, "the closure ran in another namespace");
        assert_eq!(inside, netns_id(ns.path()).expect("file id"));
        // Running code inside switched no thread of ours either.
        assert_eq!(current_netns_id().expect("own netns"), ours);

        let links = in_netns(ns.path(), link::list_links)
            .expect("enter")
            .expect("list links");
        let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["lo"], "a new namespace holds only lo");
        assert!(links.iter().all(|l| l.up), "lo is up: {links:?}");

        drop(ns);
        delete_named_netns(root.path(), "rc-test-a").expect("delete");
        delete_named_netns(root.path(), "rc-test-a").expect("delete again");
        assert!(!netns_path(root.path(), "rc-test-a").exists());
        assert!(release_netns_dir(root.path()).expect("release"));
        assert_eq!(mounts_under(root.path()), 0, "no mount left");
    }

    #[test]
    fn a_second_create_with_the_same_name_is_refused() {
        if skip_unless_root("a_second_create_with_the_same_name_is_refused") {
            return;
        }
        let root = tempfile::tempdir().expect("tempdir");
        let first = NetnsHandle::create(root.path(), "dup").expect("create");
        let err = NetnsHandle::create(root.path(), "dup").expect_err("second create");
        assert!(matches!(err, NetnsError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("already exists"), "{err}");
        // The refused create did not break the first namespace.
        assert!(is_mounted(first.path()));
        // The directory is still in use, so it stays mounted.
        assert!(!release_netns_dir(root.path()).expect("release busy dir"));
        delete_netns(first.path()).expect("delete");
        assert!(release_netns_dir(root.path()).expect("release"));
        assert_eq!(mounts_under(root.path()), 0);
    }

    #[test]
    fn a_file_left_over_from_a_reboot_is_taken_over() {
        if skip_unless_root("a_file_left_over_from_a_reboot_is_taken_over") {
            return;
        }
        let root = tempfile::tempdir().expect("tempdir");
        let path = netns_path(root.path(), "stale");
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, "").expect("stale file");
        let ns = NetnsHandle::create(root.path(), "stale").expect("take over");
        assert!(is_mounted(ns.path()));
        assert_ne!(
            netns_id(ns.path()).expect("id"),
            current_netns_id().expect("own id")
        );
        delete_netns(ns.path()).expect("delete");
        assert!(release_netns_dir(root.path()).expect("release"));
        assert_eq!(mounts_under(root.path()), 0);
    }

    #[test]
    fn a_panic_inside_becomes_an_error() {
        if skip_unless_root("a_panic_inside_becomes_an_error") {
            return;
        }
        let root = tempfile::tempdir().expect("tempdir");
        let ns = NetnsHandle::create(root.path(), "panics").expect("create");
        let err = ns
            .run::<(), _>(|| panic!("deliberate test panic"))
            .expect_err("panic is reported");
        assert!(matches!(err, NetnsError::ThreadPanicked { .. }), "{err}");
        delete_netns(ns.path()).expect("delete");
        release_netns_dir(root.path()).expect("release");
    }
}
