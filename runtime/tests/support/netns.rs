//! Throwaway network namespaces for tests and benches that need real links.
//!
//! A namespace is made by a short-lived thread that `unshare`s its network namespace
//! and keeps a descriptor to it; code runs in it on threads that `setns` into it, so
//! the calling thread never changes namespace and nothing is created in the host's
//! namespace. Processes spawned from such a thread (`ip`, `nft`, ...) inherit it. The
//! namespace disappears when the descriptor and every socket in it are closed.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;

pub struct Netns {
    fd: OwnedFd,
}

impl Netns {
    /// A new, empty network namespace with `lo` up.
    pub fn new() -> io::Result<Netns> {
        let fd = std::thread::spawn(|| -> io::Result<OwnedFd> {
            // SAFETY: unshare(CLONE_NEWNET) takes no pointers and moves only this
            // short-lived thread into a new network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(File::open("/proc/thread-self/ns/net")?.into())
        })
        .join()
        .map_err(|_| io::Error::other("the unshare thread panicked"))??;
        let netns = Netns { fd };
        netns.sh("ip link set lo up");
        Ok(netns)
    }

    /// A path other processes (`ip link set X netns PATH`) can open the namespace by.
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }

    fn enter(fd: &OwnedFd) {
        // SAFETY: `fd` is an open network-namespace descriptor; setns changes only the
        // calling thread, which was spawned for this purpose.
        if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            panic!("setns: {}", io::Error::last_os_error());
        }
    }

    /// Runs `f` on a thread inside the namespace and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                Self::enter(&self.fd);
                f()
            });
            match handle.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Runs a shell command inside the namespace; panics with its output on failure.
    pub fn sh(&self, script: &str) -> String {
        self.run(|| {
            let output = Command::new("sh")
                .args(["-c", script])
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .output()
                .expect("spawn sh");
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(
                output.status.success(),
                "`{script}` failed: {}{stdout}",
                String::from_utf8_lossy(&output.stderr)
            );
            stdout
        })
    }
}
