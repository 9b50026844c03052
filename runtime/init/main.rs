//! rcompose's init for `init: true` (Docker's `--init`), mounted at `/sbin/docker-init`.
//!
//! Usage: `docker-init -- CMD [ARGS...]`. It starts CMD as its only direct child and then,
//! as PID 1 of the container, does the two jobs a shell or an application usually doesn't:
//! it reaps every exited process that ends up as its child (orphans are reparented to PID 1)
//! and it forwards the signals it receives to CMD. It exits when CMD exits, with CMD's exit
//! code, or 128 + the signal number if CMD was killed. The semantics follow tini's.
//!
//! The binary is bind-mounted into arbitrary images, so it must not depend on anything in
//! them: `runtime/build.rs` compiles this file by itself with `rustc` into a static
//! executable linked against glibc's `libc.a`. It is `no_std` because linking Rust's `std`
//! statically would make it twice as large (about 1.2 MB instead of 0.7 MB); the few libc
//! calls it needs are declared below.

#![no_std]
#![no_main]

use core::ffi::{c_char, c_int, CStr};
use core::ptr;

// Signal numbers and flags below are the generic Linux ones.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "x86",
    target_arch = "arm",
    target_arch = "s390x",
    target_arch = "powerpc64",
    target_arch = "loongarch64"
)))]
compile_error!(
    "rcompose-init uses the generic Linux signal numbers; check them for this architecture"
);

/// glibc's `sigset_t`: 1024 bits on every Linux architecture.
#[repr(C)]
struct SigSet {
    bits: [u64; 16],
}

type SigHandler = usize;

#[link(name = "c")]
#[link(name = "gcc_eh")]
#[link(name = "gcc")]
extern "C" {
    fn __errno_location() -> *mut c_int;
    fn strerror(errnum: c_int) -> *const c_char;
    fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
    fn getpid() -> c_int;
    fn prctl(option: c_int, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> c_int;
    fn fork() -> c_int;
    fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int;
    fn _exit(status: c_int) -> !;
    fn abort() -> !;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigfillset(set: *mut SigSet) -> c_int;
    fn sigdelset(set: *mut SigSet, signum: c_int) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwaitinfo(set: *const SigSet, info: *mut u8) -> c_int;
    fn signal(signum: c_int, handler: SigHandler) -> SigHandler;
}

const SIG_DFL: SigHandler = 0;
const SIG_SETMASK: c_int = 2;
const SIGKILL: c_int = 9;
const SIGSTOP: c_int = 19;
const SIGCHLD: c_int = 17;
/// glibc's `_NSIG`: signals are 1..=64.
const NSIG: c_int = 65;
/// Signals raised by a fault in this process. Blocking them would turn a crash of the init
/// into a hang, so they keep their default action (tini does the same).
const FAULT_SIGNALS: [c_int; 7] = [
    4,  // SIGILL
    5,  // SIGTRAP
    6,  // SIGABRT
    7,  // SIGBUS
    8,  // SIGFPE
    11, // SIGSEGV
    31, // SIGSYS
];

const EPERM: c_int = 1;
const EINTR: c_int = 4;
const ENOEXEC: c_int = 8;
const ECHILD: c_int = 10;
const EACCES: c_int = 13;
const WNOHANG: c_int = 1;
const PR_SET_CHILD_SUBREAPER: c_int = 36;

/// Exit codes, as Docker and shells use them.
const EXIT_USAGE: c_int = 2;
const EXIT_INIT_FAILED: c_int = 1;
const EXIT_NOT_EXECUTABLE: c_int = 126;
const EXIT_NOT_FOUND: c_int = 127;

const USAGE: &[u8] = b"usage: docker-init -- CMD [ARGS...]\n\
runs CMD as its child, forwards signals to it, reaps zombies and exits with CMD's status\n";

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort takes no arguments and never returns.
    unsafe { abort() }
}

/// The precompiled `core` refers to the unwinding personality routine; with
/// `panic = "abort"` nothing unwinds, so it is never called. Only unoptimized builds keep
/// the reference, and this lets them link too.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

#[no_mangle]
pub extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    match command_start(argc, argv) {
        Ok(command) => run(command),
        Err(message) => {
            report(&[b"docker-init: ", message, b"\n"]);
            report(&[USAGE]);
            EXIT_USAGE
        }
    }
}

/// Where CMD starts in `argv`: after the program name and an optional `--`. What follows
/// is a NULL-terminated array, exactly what `execvp` takes.
fn command_start(
    argc: c_int,
    argv: *const *const c_char,
) -> Result<*const *const c_char, &'static [u8]> {
    let argc = usize::try_from(argc).unwrap_or(0);
    let mut index = 1;
    if let Some(first) = arg(argc, argv, index) {
        if first.to_bytes() == b"--" {
            index += 1;
        } else if first.to_bytes().starts_with(b"-") {
            return Err(b"options are not supported");
        }
    }
    if arg(argc, argv, index).is_none() {
        return Err(b"no command given");
    }
    // SAFETY: index < argc (checked by `arg` above), so this stays inside argv.
    Ok(unsafe { argv.add(index) })
}

/// `argv[index]`, if it exists.
fn arg<'a>(argc: usize, argv: *const *const c_char, index: usize) -> Option<&'a CStr> {
    if argv.is_null() || index >= argc {
        return None;
    }
    // SAFETY: the C runtime passes argc valid pointers in argv, each a NUL-terminated
    // string that lives as long as the process.
    unsafe {
        let item = *argv.add(index);
        (!item.is_null()).then(|| CStr::from_ptr(item))
    }
}

fn run(command: *const *const c_char) -> c_int {
    become_subreaper_unless_pid1();
    // An inherited SIG_IGN for SIGCHLD would make the kernel reap children by itself,
    // and CMD's exit status would be lost.
    // SAFETY: SIG_DFL is a valid disposition for SIGCHLD.
    unsafe { signal(SIGCHLD, SIG_DFL) };

    let mut waited = blocked_signals();
    // Blocked before fork, so that no signal meant for CMD is lost while it starts.
    // SAFETY: both pointers are valid sigsets (the old one may be null).
    if unsafe { sigprocmask(SIG_SETMASK, &waited, ptr::null_mut()) } != 0 {
        return fail(b"blocking signals");
    }
    // SAFETY: the process is single-threaded, so the child may run any code.
    match unsafe { fork() } {
        -1 => fail(b"fork"),
        0 => exec_command(command),
        child => supervise(child, &mut waited),
    }
}

/// Outside a container (the init is not PID 1) orphans would go to the host's init, so
/// claim them, as tini's `-s` does. Best effort: a kernel without it still runs CMD.
fn become_subreaper_unless_pid1() {
    // SAFETY: getpid and prctl(PR_SET_CHILD_SUBREAPER) take plain integers.
    unsafe {
        if getpid() != 1 {
            prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
    }
}

/// Every signal that can be caught, except the fault signals.
fn blocked_signals() -> SigSet {
    let mut set = SigSet { bits: [0; 16] };
    // SAFETY: set is a valid sigset; the signal numbers are in range.
    unsafe {
        sigfillset(&mut set);
        for signal in FAULT_SIGNALS {
            sigdelset(&mut set, signal);
        }
    }
    set
}

/// The child: give CMD a clean signal state and exec it; never returns.
fn exec_command(command: *const *const c_char) -> ! {
    reset_signals();
    // SAFETY: command is a non-empty, NULL-terminated slice of argv (see command_start).
    unsafe { execvp(*command, command) };
    let error = errno();
    let name = {
        // SAFETY: command[0] is a valid, non-null C string (see command_start).
        unsafe { CStr::from_ptr(*command) }
    };
    report(&[
        b"docker-init: exec ",
        name.to_bytes(),
        b": ",
        error_text(error),
        b"\n",
    ]);
    let code = match error {
        EACCES | EPERM | ENOEXEC => EXIT_NOT_EXECUTABLE,
        _ => EXIT_NOT_FOUND,
    };
    // SAFETY: _exit ends the forked child without running the parent's exit handlers.
    unsafe { _exit(code) }
}

/// An empty signal mask and the default action for every signal, whatever the init
/// (or whoever started it) had.
fn reset_signals() {
    let mut empty = SigSet { bits: [0; 16] };
    // SAFETY: empty is a valid sigset; signal() rejects numbers it cannot change
    // (SIGKILL, SIGSTOP, glibc's internal ones) with an error that is harmless here.
    unsafe {
        sigemptyset(&mut empty);
        sigprocmask(SIG_SETMASK, &empty, ptr::null_mut());
        for signal_number in 1..NSIG {
            if signal_number != SIGKILL && signal_number != SIGSTOP {
                signal(signal_number, SIG_DFL);
            }
        }
    }
}

/// PID 1's loop: wait for a signal; forward it to CMD, or reap on SIGCHLD; return CMD's
/// exit code once it is reaped.
fn supervise(child: c_int, waited: &mut SigSet) -> c_int {
    loop {
        // SAFETY: waited is a valid sigset; a null siginfo pointer is allowed.
        let signal_number = unsafe { sigwaitinfo(waited, ptr::null_mut()) };
        if signal_number < 0 {
            if errno() == EINTR {
                continue;
            }
            return fail(b"waiting for signals");
        }
        if signal_number != SIGCHLD {
            // SAFETY: kill takes plain integers. If CMD is already gone there is nobody
            // to tell, and the SIGCHLD that follows ends the loop.
            unsafe { kill(child, signal_number) };
        }
        if let Some(code) = reap_children(child) {
            return code;
        }
    }
}

/// Reap every child that has exited (CMD and adopted orphans alike); CMD's exit code if it
/// was among them.
fn reap_children(child: c_int) -> Option<c_int> {
    let mut child_code = None;
    loop {
        let mut status: c_int = 0;
        // SAFETY: status is a valid out-pointer.
        let pid = unsafe { waitpid(-1, &mut status, WNOHANG) };
        if pid > 0 {
            if pid == child {
                child_code = Some(exit_code(status));
            }
            continue;
        }
        let error = if pid < 0 { errno() } else { 0 };
        if error == EINTR {
            continue;
        }
        // 0: children remain but none has exited; ECHILD: no children at all.
        if error != 0 && error != ECHILD {
            report(&[b"docker-init: reaping children: ", error_text(error), b"\n"]);
        }
        return child_code;
    }
}

/// The shell convention: the exit status, or 128 + the signal that killed the process.
fn exit_code(status: c_int) -> c_int {
    let signal_number = status & 0x7f;
    if signal_number == 0 {
        (status >> 8) & 0xff
    } else {
        128 + signal_number
    }
}

fn fail(action: &[u8]) -> c_int {
    report(&[b"docker-init: ", action, b": ", error_text(errno()), b"\n"]);
    EXIT_INIT_FAILED
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno, valid for its lifetime.
    unsafe { *__errno_location() }
}

fn error_text(error: c_int) -> &'static [u8] {
    // SAFETY: strerror returns a NUL-terminated string; the init is single-threaded and
    // calls it only right before printing, so the buffer is not reused meanwhile.
    unsafe {
        let text = strerror(error);
        if text.is_null() {
            b"unknown error"
        } else {
            CStr::from_ptr(text).to_bytes()
        }
    }
}

/// Write the parts to stderr, as a best effort: there is nothing to do if that fails.
fn report(parts: &[&[u8]]) {
    for part in parts {
        let mut rest: &[u8] = part;
        while !rest.is_empty() {
            // SAFETY: rest points at rest.len() readable bytes.
            let written = unsafe { write(2, rest.as_ptr(), rest.len()) };
            if written < 0 && errno() == EINTR {
                continue;
            }
            match usize::try_from(written) {
                Ok(count) if count > 0 => rest = rest.get(count..).unwrap_or_default(),
                _ => return,
            }
        }
    }
}
