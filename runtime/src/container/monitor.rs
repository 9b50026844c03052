//! The monitor: one small process per container, from create until its main
//! process has exited (the role of conmon or a containerd shim).
//!
//! Why a process per container: the container's processes must outlive whoever
//! asked for them. A supervisor killed with SIGKILL must lose nothing: the
//! container keeps running, its output keeps reaching its log, its exit code is
//! still collected, and the next supervisor picks it up. So the monitor, not the
//! supervisor, is the parent of the container's init and of every exec'd process,
//! holds the read ends of their output pipes and writes the json-file log.
//!
//! The helper forks a monitor per create (fork is cheap there: the helper is small
//! and single-threaded, so libcontainer's own clones stay safe in the monitor).
//! The monitor detaches into its own session, creates the container through
//! libcontainer, reports the result to the helper on a pipe, then serves
//! requests on `monitor.sock` in the container's directory, one JSON message per
//! `SOCK_SEQPACKET` packet (see `wire`). When the main process has exited and its
//! output is drained, it removes libcontainer's state and cgroups, writes
//! `exit.json`, answers the waiters and exits; the container directory (overlay,
//! log) stays for a restart or a delete.

use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::Process;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::process::{pidfd_open, waitid, Pid, PidfdFlags, WaitId, WaitIdOptions};
use serde::{Deserialize, Serialize};

use super::adapt::without_false_no_new_privileges;
use super::process::reset_signal_dispositions;
use super::stats::read_oom_kills;
use super::status::{ContainerState, ExitRecord, ExitStatus, State};
use super::wire::{self, send_message};
use crate::logs::{LogOptions, LogWriter, Stream};

/// The monitor's socket, in the container's directory.
pub const SOCKET: &str = "monitor.sock";
/// Where the monitor writes its own diagnostics (and libcontainer's errors).
pub const MONITOR_LOG: &str = "monitor.log";
/// The console socket libcontainer hands a pty master to.
const CONSOLE_SOCKET: &str = "console.sock";
/// How long output may keep flowing after the main process exited (a daemon that
/// escaped the pid namespace could hold the pipes forever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
const READ_CHUNK: usize = 64 * 1024;

/// The json-file log of container `id`.
pub fn log_path(container_dir: &Path, id: &str) -> PathBuf {
    container_dir.join(format!("{id}-json.log"))
}

/// Everything a monitor needs to (re)create its container; the bundle's
/// `config.json` is written before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    pub id: String,
    /// The bundle: `config.json`, overlay dirs, the log and the sockets.
    pub container_dir: PathBuf,
    /// libcontainer's state root.
    pub state_root: PathBuf,
    pub cgroups_path: String,
    pub output: Output,
    pub tty: bool,
}

/// Where the container's stdout and stderr go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Output {
    /// Into the json-file log in the container's directory, written by the monitor.
    Log { options: LogOptions },
    /// Into two descriptors the caller passed (no tty).
    Direct,
    /// With a tty: the caller takes the terminal's master side
    /// ([`MonitorRequest::Terminal`]) and relays it itself; nothing is logged.
    Terminal,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MonitorRequest {
    Start,
    /// Answered when the main process has exited and its output is written.
    Wait,
    State,
    Kill {
        signal: i32,
        all: bool,
    },
    /// `signal` to the main process, SIGKILL to all after `grace_ms`; answered
    /// like `Wait`.
    Stop {
        signal: i32,
        grace_ms: u64,
    },
    Pause,
    Resume,
    /// For [`Output::Terminal`]: the reply (`Done`) carries the pty master.
    Terminal,
    /// Runs `process` in the container. Without a terminal the request carries the
    /// process's stdin, stdout and stderr; with one, the reply carries the pty
    /// master. A second reply, `Exited`, comes when the process ends.
    Exec {
        process: Box<Process>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum MonitorReply {
    Done,
    State { state: ContainerState },
    Exited { status: ExitStatus },
    ExecStarted { pid: i32 },
    Error { message: String },
}

/// What a new monitor tells the helper.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    Created { pid: i32 },
    Failed { message: String },
}

/// What the helper hands a freshly forked monitor.
pub(crate) struct Launch {
    pub config: MonitorConfig,
    pub stdin: OwnedFd,
    /// stdout and stderr for `Output::Direct`.
    pub direct: Option<[OwnedFd; 2]>,
    /// A packet socket to the helper: one `Report`.
    pub report: OwnedFd,
    /// Read end of a pipe whose write end only the helper holds: it hangs up when
    /// the helper (and so the caller that created this container) is gone.
    pub helper_alive: OwnedFd,
}

/// The monitor's whole life; returns its exit code.
pub(crate) fn run(launch: Launch) -> i32 {
    let Launch {
        config,
        stdin,
        direct,
        report,
        helper_alive,
    } = launch;
    let created = detach(&config.container_dir)
        .map_err(|e| format!("create {}: starting its monitor: {e}", config.id))
        .and_then(|()| Monitor::create(config, stdin, direct, helper_alive));
    match created {
        Err(message) => {
            eprintln!("{message}");
            send_report(&report, &Report::Failed { message });
            1
        }
        Ok(mut monitor) => {
            send_report(&report, &Report::Created { pid: monitor.pid });
            drop(report);
            monitor.serve();
            0
        }
    }
}

fn send_report(report: &OwnedFd, value: &Report) {
    if let Err(err) = send_message(report.as_fd(), value, &[]) {
        eprintln!("sending the create report: {err}");
    }
}

/// Leaves the caller's session and terminal, works in the container directory
/// (short relative socket paths) and writes diagnostics to `monitor.log`.
fn detach(container_dir: &Path) -> io::Result<()> {
    let _ = rustix::process::setsid();
    // Docker's containers start with umask 022 whatever the daemon's is.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::chdir(container_dir)?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(MONITOR_LOG)?;
    rustix::stdio::dup2_stderr(&log)?;
    reset_signal_dispositions()
}

/// One source of output: a pipe end or the pty master.
struct OutputPipe {
    fd: OwnedFd,
    stream: Stream,
}

/// An exec'd process and the connection that waits for its exit.
struct ExecProcess {
    pid: i32,
    pidfd: OwnedFd,
    client: OwnedFd,
}

/// Who is ready after a poll.
#[derive(Clone, Copy)]
enum Source {
    Listener,
    HelperAlive,
    Init,
    Output(usize),
    Exec(usize),
    Client(usize),
}

struct Monitor {
    config: MonitorConfig,
    container: Container,
    pid: i32,
    listener: OwnedFd,
    clients: Vec<OwnedFd>,
    /// Connections waiting for the main process to end (`Wait`, `Stop`).
    waiters: Vec<OwnedFd>,
    init_pidfd: Option<OwnedFd>,
    exit: Option<ExitStatus>,
    started_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
    outputs: Vec<OutputPipe>,
    log: Option<LogWriter>,
    execs: Vec<ExecProcess>,
    /// Watched until the container starts; a hang-up before then removes it.
    helper_alive: Option<OwnedFd>,
    /// The pty master of an [`Output::Terminal`] container.
    terminal: Option<OwnedFd>,
    kill_deadline: Option<Instant>,
    drain_deadline: Option<Instant>,
    exec_counter: u64,
    /// Children nobody waits for are left (an exec that failed to start leaves
    /// libcontainer's intermediate and init processes): reap them on a timer, or the
    /// container's pid namespace can never end.
    strays: bool,
}

impl Monitor {
    fn create(
        config: MonitorConfig,
        stdin: OwnedFd,
        direct: Option<[OwnedFd; 2]>,
        helper_alive: OwnedFd,
    ) -> Result<Monitor, String> {
        let id = config.id.clone();
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("create {id}: {what}: {e}");
        let listener =
            wire::listen(Path::new(SOCKET)).map_err(|e| fail("binding the monitor socket", &e))?;
        fs::set_permissions(SOCKET, fs::Permissions::from_mode(0o600))
            .map_err(|e| fail("securing the monitor socket", &e))?;
        let log = match &config.output {
            Output::Log { options } => Some(
                LogWriter::open(log_path(&config.container_dir, &id), *options)
                    .map_err(|e| fail("opening the log", &e))?,
            ),
            Output::Direct | Output::Terminal => None,
        };
        if (config.output == Output::Terminal) != config.tty {
            return Err(format!(
                "create {id}: a terminal for the caller needs a container with a tty, and only that"
            ));
        }
        let built = if config.tty {
            build_with_terminal(&config, stdin)
        } else {
            build_with_pipes(&config, stdin, direct)
        };
        let (container, mut outputs) = built.inspect_err(|_| {
            let _ = fs::remove_file(SOCKET);
        })?;
        // The caller reads the terminal: the monitor keeps the master only to hand it
        // out (and so that the container is not hung up when the caller goes away).
        let terminal = if config.output == Output::Terminal {
            outputs.pop().map(|pipe| pipe.fd)
        } else {
            None
        };
        let pid = container.pid().map(|p| p.as_raw()).unwrap_or_default();
        // The init is our child and waits before exec until start, so the pid is valid.
        let init_pidfd = Pid::from_raw(pid)
            .ok_or_else(|| format!("create {id}: libcontainer reported no pid"))
            .and_then(|p| pidfd_open(p, PidfdFlags::empty()).map_err(|e| fail("pidfd_open", &e)))
            .inspect_err(|_| {
                remove_failed_container(&config);
                let _ = fs::remove_file(SOCKET);
            })?;
        Ok(Monitor {
            config,
            container,
            pid,
            listener,
            clients: Vec::new(),
            waiters: Vec::new(),
            init_pidfd: Some(init_pidfd),
            exit: None,
            started_at: None,
            finished_at: None,
            outputs,
            log,
            execs: Vec::new(),
            helper_alive: Some(helper_alive),
            terminal,
            kill_deadline: None,
            drain_deadline: None,
            exec_counter: 0,
            strays: false,
        })
    }

    /// Serves until the main process has exited and everything is written.
    fn serve(&mut self) {
        loop {
            if self.exit.is_some() && self.drained() {
                self.finish();
                return;
            }
            let ready = match self.poll_once() {
                Ok(ready) => ready,
                Err(err) => {
                    eprintln!("monitor {}: poll: {err}", self.config.id);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            self.handle_deadlines();
            self.reap_strays();
            // Highest index first, so removing one keeps the others' indexes valid.
            for source in ready.into_iter().rev() {
                if let Err(err) = self.handle(source) {
                    eprintln!("monitor {}: {err}", self.config.id);
                }
                if self.abandoned() {
                    return;
                }
            }
        }
    }

    /// Output closed and exec'd processes reaped, or the drain timeout passed.
    fn drained(&self) -> bool {
        let quiet = self.outputs.is_empty() && self.execs.is_empty();
        quiet || self.drain_deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn poll_once(&self) -> io::Result<Vec<Source>> {
        let mut sources = vec![Source::Listener];
        let mut fds = vec![PollFd::new(&self.listener, PollFlags::IN)];
        if let Some(fd) = &self.helper_alive {
            sources.push(Source::HelperAlive);
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        if let Some(fd) = &self.init_pidfd {
            sources.push(Source::Init);
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        for (i, output) in self.outputs.iter().enumerate() {
            sources.push(Source::Output(i));
            fds.push(PollFd::new(&output.fd, PollFlags::IN));
        }
        for (i, exec) in self.execs.iter().enumerate() {
            sources.push(Source::Exec(i));
            fds.push(PollFd::new(&exec.pidfd, PollFlags::IN));
        }
        for (i, client) in self.clients.iter().enumerate() {
            sources.push(Source::Client(i));
            fds.push(PollFd::new(client, PollFlags::IN));
        }
        let timeout = self.next_deadline().map(|deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            Timespec {
                tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: left.subsec_nanos().into(),
            }
        });
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(sources
            .into_iter()
            .zip(fds.iter())
            .filter(|(_, fd)| !fd.revents().is_empty())
            .map(|(source, _)| source)
            .collect())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let stray_check = self
            .strays
            .then(|| Instant::now() + Duration::from_millis(200));
        [self.kill_deadline, self.drain_deadline, stray_check]
            .into_iter()
            .flatten()
            .min()
    }

    /// Reaps children that are neither the container's init nor a tracked exec'd
    /// process; remembers whether some are still running.
    fn reap_strays(&mut self) {
        let own = std::process::id();
        let Ok(text) = fs::read_to_string(format!("/proc/self/task/{own}/children")) else {
            return;
        };
        let tracked: Vec<i32> = std::iter::once(self.pid)
            .chain(self.execs.iter().map(|e| e.pid))
            .collect();
        let mut running = false;
        for child in text
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if tracked.contains(&child) {
                continue;
            }
            let Some(pid) = Pid::from_raw(child) else {
                continue;
            };
            match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
                Ok(Some(_)) => {}
                Ok(None) => running = true,
                Err(_) => {}
            }
        }
        self.strays = running;
    }

    fn handle_deadlines(&mut self) {
        if self.kill_deadline.is_some_and(|d| Instant::now() >= d) {
            self.kill_deadline = None;
            if self.exit.is_none() {
                if let Err(err) = self.kill_all_now() {
                    eprintln!(
                        "monitor {}: SIGKILL after the grace period: {err}",
                        self.config.id
                    );
                }
            }
        }
    }

    /// The caller went away before starting the container (see `helper_hung_up`).
    fn abandoned(&self) -> bool {
        self.helper_alive.is_none() && self.started_at.is_none() && self.exit.is_some()
    }

    fn handle(&mut self, source: Source) -> Result<(), String> {
        match source {
            Source::Listener => {
                let client = wire::accept(self.listener.as_fd()).map_err(|e| e.to_string())?;
                self.clients.push(client);
            }
            Source::HelperAlive => self.helper_hung_up(),
            Source::Init => self.reap_init(),
            Source::Output(i) => self.read_output(i),
            Source::Exec(i) => self.reap_exec(i),
            Source::Client(i) => self.serve_client(i),
        }
        Ok(())
    }

    /// The helper exited before the container was started. Its process would wait
    /// for the start forever, holding its cgroups: it goes. A container that logs
    /// stays as created, with no process (as Docker's created containers are:
    /// `rcompose create`, then `start` from another command makes a new monitor); one
    /// whose output went to its creator's descriptors can never start: it is removed.
    fn helper_hung_up(&mut self) {
        self.helper_alive = None;
        if self.started_at.is_some() || self.exit.is_some() {
            return;
        }
        let keep = matches!(self.config.output, Output::Log { .. });
        eprintln!(
            "monitor {}: its creator went away before starting it; {}",
            self.config.id,
            if keep {
                "it stays created, without a process"
            } else {
                "removing it"
            }
        );
        let _ = self.container.delete(true);
        if let Some(pidfd) = self.init_pidfd.take() {
            let _ = wait_pidfd(&pidfd);
        }
        // Ends `serve` without an exit record: never started, it has no exit.
        self.exit = Some(ExitStatus {
            code: 137,
            oom_kills: 0,
        });
        let _ = fs::remove_file(SOCKET);
        if keep {
            // Its filesystem stays as a stopped container's does.
            return;
        }
        let dir = self.config.container_dir.clone();
        if let Err(err) = super::rootfs::teardown(&dir) {
            eprintln!("monitor {}: {err}", self.config.id);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    fn reap_init(&mut self) {
        let Some(pidfd) = self.init_pidfd.take() else {
            return;
        };
        let code = wait_pidfd(&pidfd).unwrap_or_else(|err| {
            eprintln!("monitor {}: reaping the init: {err}", self.config.id);
            -1
        });
        self.exit = Some(ExitStatus {
            code,
            oom_kills: read_oom_kills(&self.config.cgroups_path),
        });
        self.finished_at = Some(SystemTime::now());
        self.drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
    }

    fn read_output(&mut self, index: usize) {
        let Some(output) = self.outputs.get(index) else {
            return;
        };
        let mut buffer = vec![0u8; READ_CHUNK];
        let read = loop {
            match rustix::io::read(&output.fd, &mut buffer) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other,
            }
        };
        match read {
            Ok(0) | Err(rustix::io::Errno::IO) => {
                // EOF; a pty master reports EIO once every slave end is closed.
                self.outputs.remove(index);
            }
            Err(rustix::io::Errno::AGAIN) => {}
            Err(err) => {
                eprintln!("monitor {}: reading output: {err}", self.config.id);
                self.outputs.remove(index);
            }
            Ok(n) => {
                let stream = output.stream;
                if let (Some(log), Some(bytes)) = (self.log.as_mut(), buffer.get(..n)) {
                    if let Err(err) = log.write(stream, bytes, SystemTime::now()) {
                        eprintln!("monitor {}: writing the log: {err}", self.config.id);
                    }
                }
            }
        }
    }

    fn reap_exec(&mut self, index: usize) {
        if index >= self.execs.len() {
            return;
        }
        let exec = self.execs.remove(index);
        let code = wait_pidfd(&exec.pidfd).unwrap_or(-1);
        let status = ExitStatus { code, oom_kills: 0 };
        let _ = send_message(exec.client.as_fd(), &MonitorReply::Exited { status }, &[]);
    }

    fn serve_client(&mut self, index: usize) {
        let Some(client) = self.clients.get(index) else {
            return;
        };
        let received = wire::recv_message::<MonitorRequest>(client.as_fd());
        let (request, fds) = match received {
            Ok(Some(message)) => message,
            Ok(None) => {
                self.clients.remove(index);
                return;
            }
            Err(err) => {
                let message = format!("bad request: {err}");
                let _ = send_message(client.as_fd(), &MonitorReply::Error { message }, &[]);
                self.clients.remove(index);
                return;
            }
        };
        let reply = match request {
            MonitorRequest::Wait => return self.wait(index),
            MonitorRequest::Stop { signal, grace_ms } => match self.stop(signal, grace_ms) {
                Ok(()) => return self.wait(index),
                Err(message) => Err(message),
            },
            MonitorRequest::Exec { process } => return self.exec(index, *process, fds),
            MonitorRequest::Start => self.start(),
            MonitorRequest::State => Ok(MonitorReply::State {
                state: self.state(),
            }),
            MonitorRequest::Kill { signal, all } => self.kill(signal, all),
            MonitorRequest::Pause => self.pause(),
            MonitorRequest::Resume => self.resume(),
            MonitorRequest::Terminal => match &self.terminal {
                Some(master) => {
                    if let Some(client) = self.clients.get(index) {
                        let _ =
                            send_message(client.as_fd(), &MonitorReply::Done, &[master.as_fd()]);
                    }
                    return;
                }
                None => Err(format!(
                    "terminal {}: the container has no terminal for its caller",
                    self.config.id
                )),
            },
        };
        let reply = reply.unwrap_or_else(|message| MonitorReply::Error { message });
        if let Some(client) = self.clients.get(index) {
            let _ = send_message(client.as_fd(), &reply, &[]);
        }
    }

    fn start(&mut self) -> Result<MonitorReply, String> {
        let id = &self.config.id;
        if self.started_at.is_some() {
            return Err(format!("start {id}: the container is already started"));
        }
        if self.exit.is_some() {
            return Err(format!("start {id}: the container's process has exited"));
        }
        self.container
            .start()
            .map_err(|e| format!("start {id}: {e}"))?;
        self.started_at = Some(SystemTime::now());
        self.helper_alive = None;
        Ok(MonitorReply::Done)
    }

    /// Moves client `index` to the waiters; the reply comes at exit.
    fn wait(&mut self, index: usize) {
        if index < self.clients.len() {
            let client = self.clients.remove(index);
            self.waiters.push(client);
        }
    }

    /// Sends the stop signal and arms the SIGKILL deadline; the caller waits.
    fn stop(&mut self, signal: i32, grace_ms: u64) -> Result<(), String> {
        if self.exit.is_none() {
            let signal = Signal::try_from(signal).map_err(|e| format!("stop: {e}"))?;
            // A frozen process cannot act on a signal: thaw it first, as Docker does.
            let _ = self.container.refresh_status();
            if self.container.status() == ContainerStatus::Paused {
                let _ = self.container.resume();
            }
            if let Err(err) = self.container.kill(signal, false) {
                eprintln!("monitor {}: stop signal: {err}", self.config.id);
            }
            let deadline = Instant::now() + Duration::from_millis(grace_ms);
            self.kill_deadline = Some(self.kill_deadline.map_or(deadline, |d| d.min(deadline)));
            if grace_ms == 0 {
                self.handle_deadlines();
            }
        }
        Ok(())
    }

    fn kill_all_now(&mut self) -> Result<(), String> {
        let _ = self.container.refresh_status();
        if self.container.status() == ContainerStatus::Paused {
            let _ = self.container.resume();
        }
        self.container
            .kill(Signal::try_from(9).map_err(|e| e.to_string())?, true)
            .map_err(|e| e.to_string())
    }

    fn kill(&mut self, signal: i32, all: bool) -> Result<MonitorReply, String> {
        let id = &self.config.id;
        if self.exit.is_some() {
            return Err(format!("kill {id}: the container is not running"));
        }
        let signal = Signal::try_from(signal).map_err(|e| format!("kill {id}: {e}"))?;
        self.container
            .kill(signal, all)
            .map_err(|e| format!("kill {id}: {e}"))?;
        Ok(MonitorReply::Done)
    }

    fn pause(&mut self) -> Result<MonitorReply, String> {
        self.require_running("pause")?;
        let id = &self.config.id;
        self.container
            .pause()
            .map_err(|e| format!("pause {id}: {e}"))?;
        Ok(MonitorReply::Done)
    }

    fn resume(&mut self) -> Result<MonitorReply, String> {
        let id = &self.config.id;
        let _ = self.container.refresh_status();
        if self.container.status() != ContainerStatus::Paused {
            return Err(format!("unpause {id}: the container is not paused"));
        }
        self.container
            .resume()
            .map_err(|e| format!("unpause {id}: {e}"))?;
        Ok(MonitorReply::Done)
    }

    fn require_running(&mut self, what: &str) -> Result<(), String> {
        let state = self.state().state;
        if state == State::Running {
            Ok(())
        } else {
            Err(format!(
                "{what} {}: the container is not running (it is {})",
                self.config.id,
                state_name(state)
            ))
        }
    }

    fn state(&mut self) -> ContainerState {
        let state = if self.exit.is_some() {
            State::Stopped
        } else {
            let _ = self.container.refresh_status();
            match self.container.status() {
                ContainerStatus::Creating | ContainerStatus::Created => State::Created,
                ContainerStatus::Running => State::Running,
                ContainerStatus::Paused => State::Paused,
                ContainerStatus::Stopped => State::Stopped,
            }
        };
        ContainerState {
            id: self.config.id.clone(),
            state,
            pid: self.exit.is_none().then_some(self.pid),
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit: self.exit,
        }
    }

    fn exec(&mut self, index: usize, process: Process, fds: Vec<OwnedFd>) {
        let result = self.start_exec(process, fds);
        if index >= self.clients.len() {
            return;
        }
        let client = self.clients.remove(index);
        match result {
            Err(message) => {
                // libcontainer's processes of the failed exec may still be exiting.
                self.strays = true;
                let _ = send_message(client.as_fd(), &MonitorReply::Error { message }, &[]);
            }
            Ok((pid, pidfd, master)) => {
                let reply = MonitorReply::ExecStarted { pid };
                let fds: Vec<BorrowedFd<'_>> = master.iter().map(|m| m.as_fd()).collect();
                let _ = send_message(client.as_fd(), &reply, &fds);
                self.execs.push(ExecProcess { pid, pidfd, client });
            }
        }
    }

    /// Starts an exec'd process; returns its pid, pidfd and (with a tty) pty master.
    fn start_exec(
        &mut self,
        process: Process,
        fds: Vec<OwnedFd>,
    ) -> Result<(i32, OwnedFd, Option<OwnedFd>), String> {
        let id = self.config.id.clone();
        self.require_running("exec")?;
        let terminal = process.terminal().unwrap_or(false);
        self.exec_counter += 1;
        let process_file = PathBuf::from(format!("exec-{}.json", self.exec_counter));
        let process_path = self.config.container_dir.join(&process_file);
        let body = serde_json::to_vec(&without_false_no_new_privileges(process))
            .map_err(|e| format!("exec {id}: {e}"))?;
        fs::write(&process_file, body)
            .map_err(|e| format!("exec {id}: writing the process: {e}"))?;
        let result = self.build_exec(&process_path, terminal, fds);
        let _ = fs::remove_file(&process_file);
        let (pid, master) = result?;
        let pidfd = Pid::from_raw(pid)
            .ok_or_else(|| format!("exec {id}: libcontainer reported no pid"))
            .and_then(|p| {
                pidfd_open(p, PidfdFlags::empty()).map_err(|e| format!("exec {id}: {e}"))
            })?;
        Ok((pid, pidfd, master))
    }

    fn build_exec(
        &self,
        process_path: &Path,
        terminal: bool,
        fds: Vec<OwnedFd>,
    ) -> Result<(i32, Option<OwnedFd>), String> {
        let id = &self.config.id;
        let fail = |e: libcontainer::error::LibcontainerError| format!("exec {id}: {e}");
        let mut builder = ContainerBuilder::new(id.clone(), SyscallType::default())
            .with_root_path(&self.config.state_root)
            .map_err(fail)?;
        let console = if terminal {
            let (listener, path) = console_listener(&self.config.container_dir)
                .map_err(|e| format!("exec {id}: console socket: {e}"))?;
            builder = builder.with_console_socket(Some(path));
            Some(listener)
        } else {
            let [stdin, stdout, stderr]: [OwnedFd; 3] = fds
                .try_into()
                .map_err(|v: Vec<_>| format!("exec {id}: expected 3 stdio fds, got {}", v.len()))?;
            builder = builder
                .with_stdin(stdin)
                .with_stdout(stdout)
                .with_stderr(stderr);
            None
        };
        let built = builder
            .as_tenant()
            .with_process(Some(process_path))
            .with_detach(true)
            .build();
        let _ = fs::remove_file(CONSOLE_SOCKET);
        let pid = built.map_err(fail)?.as_raw();
        let master = match console {
            Some(listener) => {
                Some(receive_pty_master(&listener).map_err(|e| format!("exec {id}: tty: {e}"))?)
            }
            None => None,
        };
        Ok((pid, master))
    }

    /// The main process has exited and its output is written: clean up, record,
    /// answer, leave.
    fn finish(&mut self) {
        let id = self.config.id.clone();
        if let Some(log) = self.log.take() {
            if let Err(err) = log.close() {
                eprintln!("monitor {id}: closing the log: {err}");
            }
        }
        // Its cgroups and state go now; the container directory stays.
        let _ = self.container.refresh_status();
        if let Err(err) = self.container.delete(true) {
            eprintln!("monitor {id}: removing the finished container's cgroups: {err}");
        }
        let status = self.exit.unwrap_or(ExitStatus {
            code: -1,
            oom_kills: 0,
        });
        let record = ExitRecord {
            status,
            started_at: self.started_at,
            finished_at: self.finished_at.unwrap_or_else(SystemTime::now),
        };
        if let Err(err) = record.save(&self.config.container_dir) {
            eprintln!("monitor {id}: writing exit.json: {err}");
        }
        // Unlinked before answering, so a client that got its answer never
        // reaches a monitor that is leaving.
        let _ = fs::remove_file(SOCKET);
        for waiter in self.waiters.drain(..) {
            let _ = send_message(waiter.as_fd(), &MonitorReply::Exited { status }, &[]);
        }
        for exec in self.execs.drain(..) {
            let message = format!("exec {id}: the container stopped");
            let _ = send_message(exec.client.as_fd(), &MonitorReply::Error { message }, &[]);
        }
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Created => "created",
        State::Running => "running",
        State::Paused => "paused",
        State::Stopped => "stopped",
    }
}

/// The container with its output on pipes (or on the caller's descriptors).
fn build_with_pipes(
    config: &MonitorConfig,
    stdin: OwnedFd,
    direct: Option<[OwnedFd; 2]>,
) -> Result<(Container, Vec<OutputPipe>), String> {
    let id = &config.id;
    let (stdout, stderr, outputs) = match direct {
        Some([stdout, stderr]) => (stdout, stderr, Vec::new()),
        None => {
            let pipe = || {
                rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(|e| format!("create {id}: output pipe: {e}"))
            };
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let outputs = vec![
                OutputPipe {
                    fd: out_r,
                    stream: Stream::Stdout,
                },
                OutputPipe {
                    fd: err_r,
                    stream: Stream::Stderr,
                },
            ];
            (out_w, err_w, outputs)
        }
    };
    let builder = init_builder(config)?
        .with_stdin(stdin)
        .with_stdout(stdout)
        .with_stderr(stderr);
    let container = build_init(config, builder)?;
    Ok((container, outputs))
}

/// The container on a pseudo-terminal: libcontainer hands the master over a
/// console socket; its output is the container's stdout.
fn build_with_terminal(
    config: &MonitorConfig,
    _stdin: OwnedFd,
) -> Result<(Container, Vec<OutputPipe>), String> {
    let id = &config.id;
    let (listener, path) = console_listener(&config.container_dir)
        .map_err(|e| format!("create {id}: console socket: {e}"))?;
    let builder = init_builder(config)?.with_console_socket(Some(path));
    let built = build_init(config, builder);
    let _ = fs::remove_file(CONSOLE_SOCKET);
    let container = built?;
    let master = receive_pty_master(&listener).map_err(|e| {
        remove_failed_container(config);
        format!("create {id}: tty: {e}")
    })?;
    let outputs = vec![OutputPipe {
        fd: master,
        stream: Stream::Stdout,
    }];
    Ok((container, outputs))
}

fn init_builder(config: &MonitorConfig) -> Result<ContainerBuilder, String> {
    ContainerBuilder::new(config.id.clone(), SyscallType::default())
        .with_root_path(&config.state_root)
        .map_err(|e| format!("create {}: {e}", config.id))
}

/// `runc create`: returns once the init waits to exec the process.
fn build_init(config: &MonitorConfig, builder: ContainerBuilder) -> Result<Container, String> {
    let id = &config.id;
    builder
        .validate_id()
        .map_err(|e| format!("create {id}: {e}"))?
        .as_init(&config.container_dir)
        // Its default is the systemd cgroup driver, which this crate is built without.
        .with_systemd(false)
        // Only affects the terminal check: a tty needs a console socket when detached.
        .with_detach(true)
        .build()
        .map_err(|e| {
            remove_failed_container(config);
            format!("create {id}: {e} (details in {MONITOR_LOG})")
        })
}

/// Best effort after a failed create: libcontainer may leave its state dir and
/// cgroups behind.
fn remove_failed_container(config: &MonitorConfig) {
    let dir = config.state_root.join(&config.id);
    if let Ok(mut container) = Container::load(dir.clone()) {
        let _ = container.delete(true);
    }
    let _ = fs::remove_dir_all(dir);
}

/// A listener for libcontainer's console socket, bound by a relative name (the
/// monitor works in the container directory) and named absolutely for
/// libcontainer, which links to it from its own state directory.
fn console_listener(container_dir: &Path) -> io::Result<(UnixListener, PathBuf)> {
    let _ = fs::remove_file(CONSOLE_SOCKET);
    let listener = UnixListener::bind(CONSOLE_SOCKET)?;
    Ok((listener, container_dir.join(CONSOLE_SOCKET)))
}

/// Accepts libcontainer's connection and takes the pty master it sends.
fn receive_pty_master(listener: &UnixListener) -> io::Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let (stream, _) = listener.accept()?;
    stream.set_nonblocking(false)?;
    let mut name = [0u8; 256];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    recvmsg(
        &stream,
        &mut [io::IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    control
        .drain()
        .find_map(|message| match message {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .ok_or_else(|| io::Error::other("no pty master was sent"))
}

/// Reaps a child through its pidfd: its exit code, or 128 + signal as a shell shows it.
pub(crate) fn wait_pidfd(pidfd: &OwnedFd) -> io::Result<i32> {
    let status = loop {
        match waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    let status = status.ok_or_else(|| io::Error::other("waitid returned no status"))?;
    Ok(match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json() {
        let request = MonitorRequest::Stop {
            signal: 15,
            grace_ms: 10_000,
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(json, r#"{"op":"stop","signal":15,"grace_ms":10000}"#);
        let back: MonitorRequest = serde_json::from_str(&json).unwrap();
        assert!(matches!(
            back,
            MonitorRequest::Stop {
                signal: 15,
                grace_ms: 10_000
            }
        ));
    }

    #[test]
    fn log_file_is_named_like_dockers() {
        assert_eq!(
            log_path(Path::new("/r/containers/web-1"), "web-1"),
            Path::new("/r/containers/web-1/web-1-json.log")
        );
    }
}
