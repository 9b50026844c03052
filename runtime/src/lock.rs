//! Advisory file locks (`flock`) that serialise store updates across threads and
//! processes. A lock is held for as long as its guard lives; closing the file (on drop,
//! or when a process dies) releases it, so a killed process never leaves a stale lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

/// Whether other holders may share the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockKind {
    Shared,
    Exclusive,
}

/// A held `flock`; released when dropped.
#[derive(Debug)]
pub(crate) struct LockGuard {
    // Kept open only to hold the lock: the kernel drops the lock with the descriptor.
    _file: File,
}

/// The lock file, created if missing; its content is never used.
fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

/// Blocks until the lock on `path` (created if missing) is held in the given mode.
/// Each call opens its own descriptor, so two threads of one process exclude each
/// other just as two processes do.
pub(crate) fn lock_file(path: &Path, kind: LockKind) -> io::Result<LockGuard> {
    let file = open_lock_file(path)?;
    let operation = match kind {
        LockKind::Shared => FlockOperation::LockShared,
        LockKind::Exclusive => FlockOperation::LockExclusive,
    };
    flock(&file, operation)?;
    Ok(LockGuard { _file: file })
}

/// Takes the lock only if nobody holds it in a conflicting mode right now.
#[cfg(test)]
pub(crate) fn try_lock_file(path: &Path, kind: LockKind) -> io::Result<Option<LockGuard>> {
    let file = open_lock_file(path)?;
    let operation = match kind {
        LockKind::Shared => FlockOperation::NonBlockingLockShared,
        LockKind::Exclusive => FlockOperation::NonBlockingLockExclusive,
    };
    match flock(&file, operation) {
        Ok(()) => Ok(Some(LockGuard { _file: file })),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(errno) => Err(errno.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_lock_excludes_other_descriptors_until_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        let held = lock_file(&path, LockKind::Exclusive).expect("first lock");
        assert!(try_lock_file(&path, LockKind::Exclusive)
            .expect("try lock")
            .is_none());
        assert!(try_lock_file(&path, LockKind::Shared)
            .expect("try lock")
            .is_none());
        drop(held);
        assert!(try_lock_file(&path, LockKind::Exclusive)
            .expect("try lock")
            .is_some());
    }

    #[test]
    fn shared_locks_coexist_but_block_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        let _first = lock_file(&path, LockKind::Shared).expect("shared");
        let second = try_lock_file(&path, LockKind::Shared).expect("try shared");
        assert!(second.is_some());
        assert!(try_lock_file(&path, LockKind::Exclusive)
            .expect("try exclusive")
            .is_none());
    }
}
