//! The few process-level calls the helper and the monitors need that have no safe
//! wrapper: `fork`, resetting signal dispositions, closing inherited descriptors.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{fork, ForkResult};

/// Forks; the child runs `child` and exits with its code, never returning into
/// the caller's code (so no destructor of the parent's state runs twice).
/// Returns the child's pid in the parent.
///
/// Only call this from a single-threaded process (the helper): a lock another
/// thread held at fork time would stay locked forever in the child.
pub fn fork_child(child: impl FnOnce() -> i32) -> io::Result<i32> {
    // SAFETY: the helper is single-threaded (it is a fresh exec of the binary that
    // starts no thread), so the child can run arbitrary code, allocation included.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(child.as_raw()),
        ForkResult::Child => {
            let code = child();
            std::process::exit(code)
        }
    }
}

/// Restores the default action of every signal. Ignored signals survive `execve`,
/// and the processes between the supervisor and a container ignore some (the
/// Rust runtime ignores SIGPIPE, for one): without this every container process
/// would start with them ignored (`yes | head -1` would never end).
pub fn reset_signal_dispositions() -> io::Result<()> {
    unblock_all_signals()?;
    // SAFETY: SIG_DFL installs no handler, so no Rust code can run in a signal context.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map_err(io::Error::from)?;
    // The raw system call: glibc refuses to touch the two real-time signals it
    // reserves (32 and 33), and a parent may have left those ignored too.
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for number in 1..=64 {
        if number != libc::SIGKILL && number != libc::SIGSTOP {
            // SAFETY: `default` is a valid kernel sigaction that installs no handler;
            // numbers the kernel refuses just fail with EINVAL.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    number,
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                )
            };
        }
    }
    Ok(())
}

/// Empties the signal mask. A blocked signal stays blocked across fork and exec:
/// a caller that blocks SIGINT/SIGTERM to wait for them (an attached `up`) would
/// otherwise hand that mask to the helper and every container, which could then only
/// be stopped with SIGKILL.
pub fn unblock_all_signals() -> io::Result<()> {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(io::Error::from)
}

/// The kernel's `struct sigaction` (not glibc's), as `rt_sigaction` takes it.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Closes every descriptor of this process except stdio and `keep`: a forked
/// child inherits all of the parent's, and a monitor must not hold the
/// supervisor's socket or other containers' pipes open.
pub fn close_descriptors_except(keep: &[RawFd]) -> io::Result<()> {
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open {
        // The directory handle used for the listing is already closed; EBADF is fine.
        if fd > 2 && !keep.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
    Ok(())
}
