//! The single-threaded helper process that forks a monitor per container.
//!
//! Why a separate process: libcontainer clones its intermediate process with a raw
//! `clone3` and then runs ordinary Rust code (allocation, serde) in the child. If the
//! caller has other threads, a lock one of them held at clone time (malloc's, for
//! one) stays locked forever in the child, and container creation hangs. It also
//! changes process-wide state of its caller (dumpable flag, cwd). So the
//! multi-threaded supervisor never calls it; it starts this helper with fork+exec
//! of its own binary and a hidden argument, which gives a fresh, single-threaded
//! image, and the helper forks one monitor per container (see `monitor`), which
//! makes the libcontainer calls and outlives both.
//!
//! Wiring: the binary's `main` calls [`maybe_run`] before anything else (before any
//! runtime or thread starts). The supervisor calls [`HelperClient::spawn`] with the
//! path of that binary (`/proc/self/exe` in rcompose). The two talk over a
//! `SOCK_SEQPACKET` socketpair passed as the helper's stdin (see `wire`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use oci_spec::runtime::Spec;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::adapt::{adapt_spec, validate_spec};
use super::monitor::{self, Launch, MonitorConfig, Output, Report};
use super::process::{close_descriptors_except, fork_child};
use super::wire::{recv_message, send_message, WireError};

/// The hidden first argument that turns the binary into the helper.
pub const HELPER_ARG: &str = "__rcompose-runtime-helper";

#[derive(Debug, Error)]
pub enum HelperError {
    #[error("starting the container helper {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("container helper socket: {0}")]
    Socket(#[source] io::Error),
    #[error("the container helper exited (its socket closed)")]
    Gone,
    #[error("container helper protocol: {0}")]
    Protocol(String),
    #[error("{0}")]
    Remote(String),
}

impl From<WireError> for HelperError {
    fn from(err: WireError) -> Self {
        match err {
            WireError::Io(e) => HelperError::Socket(e),
            WireError::Protocol(message) => HelperError::Protocol(message),
        }
    }
}

/// A request to the helper.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Forks a monitor that creates the container and serves it. Carries the
    /// container's stdin, plus stdout and stderr for `Output::Direct`. Without a
    /// spec, the bundle's `config.json` is reused (a restart).
    Create {
        config: MonitorConfig,
        spec: Option<Box<Spec>>,
    },
    /// Adds a connection: carries the helper's end of a new socket pair.
    Connect,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Created { pid: i32, monitor_pid: i32 },
    Connected,
    Error { message: String },
}

// ---------------------------------------------------------------------------------
// Supervisor side

/// A handle on a helper process, usable from many threads at once: each call
/// takes a connection of its own, and the helper serves every connection while the
/// monitors it forked create their containers. One helper (not one per thread)
/// keeps the monitors sharing its memory pages.
pub struct HelperClient {
    /// Only for asking for more connections; closing it makes the helper exit.
    primary: Mutex<OwnedFd>,
    /// Connections not in use (one request at a time on each).
    idle: Mutex<Vec<OwnedFd>>,
    child: Mutex<Child>,
}

impl HelperClient {
    /// Starts `program HELPER_ARG`; `program` must call [`maybe_run`] first thing in
    /// `main`. The helper's stderr is inherited (it only writes there on fatal errors).
    pub fn spawn(program: &Path) -> Result<HelperClient, HelperError> {
        let spawn_error = |source| HelperError::Spawn {
            program: program.to_path_buf(),
            source,
        };
        let (ours, theirs) = packet_pair().map_err(spawn_error)?;
        let child = Command::new(program)
            .arg(HELPER_ARG)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            // Out of the terminal's foreground group: Ctrl-C is the supervisor's to
            // handle, never a reason for the helper to die mid-create.
            .process_group(0)
            // The helper and its monitors live long and do little: with mimalloc
            // (rcompose's allocator) committing arenas eagerly, each would keep
            // hundreds of KiB it never uses. Other allocators ignore this.
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
            .spawn()
            .map_err(spawn_error)?;
        Ok(HelperClient {
            primary: Mutex::new(ours),
            idle: Mutex::new(Vec::new()),
            child: Mutex::new(child),
        })
    }

    /// The helper's process id.
    pub fn pid(&self) -> u32 {
        lock(&self.child).id()
    }

    /// Sends `request` with `fds` and returns the helper's reply; a `Reply::Error`
    /// becomes `HelperError::Remote`.
    pub fn call(&self, request: &Request, fds: &[BorrowedFd<'_>]) -> Result<Reply, HelperError> {
        let idle = lock(&self.idle).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.connect()?,
        };
        let reply = exchange(connection.as_fd(), request, fds);
        // A connection in an unknown state is not reused.
        if matches!(reply, Ok(_) | Err(HelperError::Remote(_))) {
            lock(&self.idle).push(connection);
        }
        reply
    }

    /// A new connection, asked for on the primary one.
    fn connect(&self) -> Result<OwnedFd, HelperError> {
        let (ours, theirs) = packet_pair().map_err(HelperError::Socket)?;
        let primary = lock(&self.primary);
        match exchange(primary.as_fd(), &Request::Connect, &[theirs.as_fd()])? {
            Reply::Connected => Ok(ours),
            other => Err(HelperError::Protocol(format!(
                "connect answered with {other:?}"
            ))),
        }
    }
}

impl Drop for HelperClient {
    fn drop(&mut self) {
        // Closing the primary socket tells the helper to exit; reap it so no zombie
        // is left.
        let _ = rustix::net::shutdown(&*lock(&self.primary), rustix::net::Shutdown::Both);
        let _ = lock(&self.child).wait();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn packet_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

/// One request and its reply on one connection.
fn exchange(
    connection: BorrowedFd<'_>,
    request: &Request,
    fds: &[BorrowedFd<'_>],
) -> Result<Reply, HelperError> {
    send_message(connection, request, fds).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()) {
            HelperError::Gone
        } else {
            HelperError::Socket(e)
        }
    })?;
    match recv_message::<Reply>(connection)? {
        None => Err(HelperError::Gone),
        Some((Reply::Error { message }, _)) => Err(HelperError::Remote(message)),
        Some((reply, _)) => Ok(reply),
    }
}

// ---------------------------------------------------------------------------------
// Helper side

/// Call at the very start of `main`, before any thread exists. When the process was
/// started as the helper, this serves requests until the supervisor closes the
/// socket and then exits the process; otherwise it returns at once.
pub fn maybe_run() {
    if std::env::args_os().nth(1).as_deref() != Some(std::ffi::OsStr::new(HELPER_ARG)) {
        return;
    }
    // Signals its caller blocked must not stay blocked here (nor in the monitors).
    if let Err(err) = super::process::unblock_all_signals() {
        eprintln!("rcompose container helper: {err}");
    }
    // Descriptors its caller leaked to it (a terminal, a CI runner's pipe) would stay
    // open in every monitor for as long as its container runs, and whoever waits for
    // their end would wait that long. It needs only 0 (its socket), 1 and 2.
    if let Err(err) = close_descriptors_except(&[]) {
        eprintln!("rcompose container helper: closing inherited descriptors: {err}");
    }
    let code = match run_helper() {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("rcompose container helper: {err}");
            1
        }
    };
    std::process::exit(code);
}

/// Takes the socket off fd 0 (so no container can inherit it through stdin) and
/// serves it.
fn run_helper() -> Result<(), HelperError> {
    let socket = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(HelperError::Socket)?;
    let devnull = fs::File::open("/dev/null").map_err(HelperError::Socket)?;
    rustix::stdio::dup2_stdin(&devnull).map_err(|e| HelperError::Socket(e.into()))?;
    let (alive_read, alive_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| HelperError::Socket(e.into()))?;
    let mut helper = Helper {
        alive_read,
        _alive_write: alive_write,
        monitors: Vec::new(),
        connections: BTreeMap::from([(PRIMARY, socket)]),
        pending: BTreeMap::new(),
        next_connection: PRIMARY + 1,
    };
    helper.serve();
    Ok(())
}

/// The connection the helper was started with.
const PRIMARY: u64 = 0;

struct Helper {
    /// Given to every monitor: it hangs up when this process exits, because only
    /// this process holds the write end.
    alive_read: OwnedFd,
    _alive_write: OwnedFd,
    /// pidfds of the monitors that reported, to reap them when they exit.
    monitors: Vec<OwnedFd>,
    connections: BTreeMap<u64, OwnedFd>,
    /// The create in progress on a connection: its monitor is making the container.
    pending: BTreeMap<u64, PendingCreate>,
    next_connection: u64,
}

/// A forked monitor that has not reported yet.
struct PendingCreate {
    id: String,
    container_dir: PathBuf,
    monitor_pid: i32,
    pidfd: OwnedFd,
    /// A packet socket, not a pipe: the container's init is cloned before the
    /// report is sent and holds a copy of the monitor's end until it execs, so the
    /// helper cannot wait for EOF; it takes one message instead.
    report: OwnedFd,
}

/// What one poll found.
#[derive(Default)]
struct Ready {
    requests: Vec<u64>,
    reports: Vec<u64>,
}

impl Helper {
    /// Serves until the primary connection closes. Started containers keep running
    /// under their monitors; unstarted ones see `alive_read` hang up.
    fn serve(&mut self) {
        loop {
            let ready = match self.poll_once() {
                Ok(ready) => ready,
                Err(err) => {
                    eprintln!("rcompose container helper: {err}");
                    return;
                }
            };
            for connection in ready.reports {
                self.finish_create(connection);
            }
            for connection in ready.requests {
                self.answer(connection);
            }
            if !self.connections.contains_key(&PRIMARY) {
                return;
            }
        }
    }

    /// Waits for a request on an idle connection or a report of a pending create,
    /// and reaps monitors that exited meanwhile.
    fn poll_once(&mut self) -> Result<Ready, HelperError> {
        let idle: Vec<u64> = self
            .connections
            .keys()
            .filter(|id| !self.pending.contains_key(id))
            .copied()
            .collect();
        let pending: Vec<u64> = self.pending.keys().copied().collect();
        let mut fds: Vec<PollFd<'_>> = idle
            .iter()
            .filter_map(|id| self.connections.get(id))
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        for create in self.pending.values() {
            fds.push(PollFd::new(&create.report, PollFlags::IN));
            fds.push(PollFd::new(&create.pidfd, PollFlags::IN));
        }
        fds.extend(
            self.monitors
                .iter()
                .map(|fd| PollFd::new(fd, PollFlags::IN)),
        );
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(Ready::default()),
            Err(e) => return Err(HelperError::Socket(e.into())),
        }
        let fired: Vec<bool> = fds.iter().map(|fd| !fd.revents().is_empty()).collect();
        drop(fds);
        let (requests, rest) = fired.split_at(idle.len().min(fired.len()));
        let (creates, exited) = rest.split_at((pending.len() * 2).min(rest.len()));
        let ready = Ready {
            requests: zip_fired(&idle, requests.iter().copied()),
            reports: zip_fired(
                &pending,
                creates
                    .chunks(2)
                    .map(|pair| pair.iter().any(|fired| *fired)),
            ),
        };
        let mut exited = exited.iter();
        self.monitors.retain(|pidfd| {
            let gone = exited.next().copied().unwrap_or(false);
            if gone {
                let _ = monitor::wait_pidfd(pidfd);
            }
            !gone
        });
        Ok(ready)
    }

    /// Takes one request from `connection` and starts serving it.
    fn answer(&mut self, connection: u64) {
        let Some(socket) = self.connections.get(&connection) else {
            return;
        };
        let (request, fds) = match recv_message::<Request>(socket.as_fd()) {
            Ok(Some(message)) => message,
            // Closed, or unreadable: the caller is gone.
            Ok(None) | Err(_) => {
                self.connections.remove(&connection);
                return;
            }
        };
        match request {
            Request::Create { config, spec } => match self.start_create(config, spec, fds) {
                Ok(pending) => {
                    self.pending.insert(connection, pending);
                }
                Err(message) => self.reply(connection, &Reply::Error { message }),
            },
            Request::Connect => {
                let reply = match <[OwnedFd; 1]>::try_from(fds) {
                    Ok([socket]) => {
                        self.connections.insert(self.next_connection, socket);
                        self.next_connection += 1;
                        Reply::Connected
                    }
                    Err(_) => Reply::Error {
                        message: "connect: expected one socket".to_string(),
                    },
                };
                self.reply(connection, &reply);
            }
        }
    }

    fn reply(&mut self, connection: u64, reply: &Reply) {
        let sent = self
            .connections
            .get(&connection)
            .map(|socket| send_message(socket.as_fd(), reply, &[]));
        if !matches!(sent, Some(Ok(()))) {
            self.connections.remove(&connection);
        }
    }

    /// Prepares the bundle and forks the monitor, which creates the container and
    /// reports; the helper serves other connections meanwhile.
    fn start_create(
        &mut self,
        config: MonitorConfig,
        spec: Option<Box<Spec>>,
        fds: Vec<OwnedFd>,
    ) -> Result<PendingCreate, String> {
        let id = config.id.clone();
        let container_dir = config.container_dir.clone();
        let bundle = container_dir.join("config.json");
        let spec = match spec {
            Some(spec) => {
                let spec = adapt_spec(*spec)?;
                validate_spec(&id, &spec)?;
                // libcontainer only reads a bundle's config.json; there is no API taking a Spec.
                spec.save(&bundle)
                    .map_err(|e| format!("create {id}: writing {}: {e}", bundle.display()))?;
                spec
            }
            None => Spec::load(&bundle)
                .map_err(|e| format!("create {id}: reading {}: {e}", bundle.display()))?,
        };
        precompile_seccomp(&spec);
        fs::create_dir_all(&config.state_root)
            .map_err(|e| format!("create {id}: creating {}: {e}", config.state_root.display()))?;
        let (stdin, direct) = split_stdio(&id, &config.output, fds)?;
        let (report_read, report_write) =
            packet_pair().map_err(|e| format!("create {id}: report socket: {e}"))?;
        let helper_alive = self
            .alive_read
            .try_clone()
            .map_err(|e| format!("create {id}: {e}"))?;
        let mut keep = vec![
            stdin.as_raw_fd(),
            report_write.as_raw_fd(),
            helper_alive.as_raw_fd(),
        ];
        keep.extend(direct.iter().flatten().map(|fd| fd.as_raw_fd()));
        let launch = Launch {
            config,
            stdin,
            direct,
            report: report_write,
            helper_alive,
        };
        let monitor_pid = fork_child(move || {
            // Nothing of the helper's (its callers' sockets, other monitors'
            // pidfds and reports, the alive pipe's write end) may stay open in the
            // monitor.
            if close_descriptors_except(&keep).is_err() {
                return 1;
            }
            monitor::run(launch)
        })
        .map_err(|e| format!("create {id}: forking its monitor: {e}"))?;
        let Some(pidfd) =
            Pid::from_raw(monitor_pid).and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok())
        else {
            return Err(format!("create {id}: its monitor vanished at once"));
        };
        Ok(PendingCreate {
            id,
            container_dir,
            monitor_pid,
            pidfd,
            report: report_read,
        })
    }

    /// The monitor of the create on `connection` reported (or died): answer.
    fn finish_create(&mut self, connection: u64) {
        let Some(create) = self.pending.remove(&connection) else {
            return;
        };
        let report = take_report(create.report.as_fd());
        self.monitors.push(create.pidfd);
        let reply = match report {
            Some(Report::Created { pid }) => Reply::Created {
                pid,
                monitor_pid: create.monitor_pid,
            },
            Some(Report::Failed { message }) => Reply::Error { message },
            None => Reply::Error {
                message: format!(
                    "create {}: its monitor died before reporting (see {} in {})",
                    create.id,
                    monitor::MONITOR_LOG,
                    create.container_dir.display()
                ),
            },
        };
        self.reply(connection, &reply);
    }
}

/// The ids whose poll entry fired.
fn zip_fired(ids: &[u64], fired: impl Iterator<Item = bool>) -> Vec<u64> {
    ids.iter()
        .zip(fired)
        .filter(|(_, fired)| *fired)
        .map(|(id, _)| *id)
        .collect()
}

/// The monitor's report, once its socket or its pidfd fired: `None` when it
/// exited without one.
fn take_report(report: BorrowedFd<'_>) -> Option<Report> {
    let mut fds = [PollFd::from_borrowed_fd(report, PollFlags::IN)];
    let now = rustix::event::Timespec::default();
    if !matches!(poll(&mut fds, Some(&now)), Ok(ready) if ready > 0) {
        return None;
    }
    recv_message::<Report>(report)
        .ok()
        .flatten()
        .map(|(r, _)| r)
}

/// Compiles the container's seccomp profile here, once per profile for the
/// helper's life: the monitor forked next and the container's init cloned from it
/// inherit the compiled program and load it, instead of running libseccomp for
/// every container (about 7 ms with Docker's profile). A failure is left for the
/// init to report, with its own compile.
fn precompile_seccomp(spec: &Spec) {
    if let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        let _ = libcontainer::seccomp::precompile(seccomp);
    }
}

/// stdin, and stdout + stderr when the caller passes its own.
fn split_stdio(
    id: &str,
    output: &Output,
    fds: Vec<OwnedFd>,
) -> Result<(OwnedFd, Option<[OwnedFd; 2]>), String> {
    let count = fds.len();
    let mut fds = fds.into_iter();
    let wrong = || format!("create {id}: wrong number of stdio fds ({count})");
    let stdin = fds.next().ok_or_else(wrong)?;
    let direct = match output {
        Output::Direct => Some([fds.next().ok_or_else(wrong)?, fds.next().ok_or_else(wrong)?]),
        Output::Log { .. } | Output::Terminal => None,
    };
    if fds.next().is_some() {
        return Err(wrong());
    }
    Ok((stdin, direct))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devnull() -> OwnedFd {
        fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn stdio_count_must_match_the_output_mode() {
        let log = Output::Log {
            options: Default::default(),
        };
        assert!(split_stdio("c", &log, vec![devnull()]).unwrap().1.is_none());
        assert!(split_stdio("c", &log, vec![devnull(), devnull()]).is_err());
        let (_, direct) =
            split_stdio("c", &Output::Direct, vec![devnull(), devnull(), devnull()]).unwrap();
        assert!(direct.is_some());
        let err = split_stdio("c", &Output::Direct, vec![devnull()]).unwrap_err();
        assert!(err.contains("wrong number of stdio fds (1)"), "{err}");
    }
}
