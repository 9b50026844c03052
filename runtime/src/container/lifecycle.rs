//! The typed API over the helper and the monitors: create, start, stop, kill,
//! pause, resume, wait, exec, state, delete.
//!
//! Layout under the runtime's state root:
//! - `containers/<id>/`: the bundle (`config.json`), `monitor.json` (how to
//!   recreate the monitor on a restart), the overlay dirs (`upper`, `work`,
//!   `merged`), the json-file log `<id>-json.log`, `exit.json` after a run,
//!   `monitor.sock` while a monitor serves the container; removed by delete;
//! - `run/<id>/`: libcontainer's own state while a process exists.
//!
//! Everything but create and restart talks to the container's monitor directly,
//! so any process (a new supervisor after a crash, a CLI command) can operate on
//! a container, and calls for different containers can run in parallel.
//!
//! The root filesystem is prepared here, in the caller's process (mounting is
//! thread-safe and the host mount namespace is shared), because `build_spec` needs
//! it to resolve the user from the image's `/etc/passwd`.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{BoxBuilder, Process, Spec};
use thiserror::Error;

use super::config::ContainerConfig;
use super::helper::{HelperClient, HelperError, Reply, Request};
use super::init::{install_init, InitError};
use super::monitor::{self, MonitorConfig, MonitorReply, MonitorRequest, Output};
use super::rootfs::{self, RootfsError, RootfsSource};
use super::spec::{build_spec, SpecError};
use super::stats::{read_processes, read_stats, ContainerStats, StatsError};
use super::status::{ContainerState, ExitRecord, ExitStatus, State};
use super::user::{resolve_user, UserError};
use super::wire::{self, WireError};
use crate::logs::LogOptions;

/// The file in a container's directory that tells how to recreate its monitor.
const MONITOR_CONFIG: &str = "monitor.json";
/// The file in a container's directory that records what it was created from.
const CONTAINER_RECORD: &str = "container.json";

/// What a container was created from, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// The image as the caller named it (e.g. `docker.io/library/busybox:latest`).
    pub image: String,
    pub config: ContainerConfig,
    pub created_at: std::time::SystemTime,
    pub cgroups_path: String,
}

#[derive(Debug, Error)]
pub enum LifecycleError {
    #[error("invalid container id {0:?}: use 1 to 64 characters from [A-Za-z0-9_.+-], not starting with '.'")]
    InvalidId(String),
    #[error("container {0} already exists (delete it first)")]
    Exists(String),
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is running: stop it first, or force the removal")]
    StillRunning(String),
    #[error("container {id}: rootfs: {source}")]
    Rootfs {
        id: String,
        #[source]
        source: RootfsError,
    },
    #[error("container {id}: {source}")]
    Spec {
        id: String,
        #[source]
        source: SpecError,
    },
    #[error("exec in {id}: {source}")]
    ExecUser {
        id: String,
        #[source]
        source: UserError,
    },
    #[error("exec in {id}: {reason}")]
    ExecOptions { id: String, reason: String },
    #[error(transparent)]
    Helper(#[from] HelperError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error("container {id}: stats: {source}")]
    Stats {
        id: String,
        #[source]
        source: StatsError,
    },
    #[error("container {id}: listing its processes: {source}")]
    Processes {
        id: String,
        #[source]
        source: StatsError,
    },
    #[error("container {id}: {action}: {source}")]
    Io {
        id: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("container {id}: talking to its monitor: {reason}")]
    Monitor { id: String, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error("container helper answered {request} with an unexpected reply: {reply}")]
    UnexpectedReply {
        request: &'static str,
        reply: String,
    },
}

/// Where the container's stdout and stderr go.
#[derive(Debug)]
pub enum ContainerOutput {
    /// Docker's json-file log in the container's directory (see
    /// [`Runtime::log_path`]), written by its monitor, kept across restarts.
    Log(LogOptions),
    /// The caller's descriptors; `None` is `/dev/null`. The read end of a pipe
    /// reaches EOF when the container's processes have all exited; drain it while
    /// it runs (a pipe holds 64 KiB). Such a container cannot be restarted.
    Direct {
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    },
    /// For a container with `tty`: the caller takes its terminal with
    /// [`Runtime::terminal`] before starting it and relays it (`docker run -it`);
    /// nothing is logged, and it cannot be restarted.
    Terminal,
}

impl Default for ContainerOutput {
    fn default() -> Self {
        ContainerOutput::Log(LogOptions::default())
    }
}

/// What to create.
pub struct CreateOptions<'a> {
    pub id: &'a str,
    pub rootfs: RootfsSource,
    pub image: &'a ImageConfiguration,
    pub config: &'a ContainerConfig,
    /// The image's name, recorded for `inspect` (the runtime does not resolve it).
    pub image_name: &'a str,
    /// Absolute cgroup path, e.g. `/rcompose/<project>/<id>`.
    pub cgroups_path: &'a str,
    /// `None` is `/dev/null`.
    pub stdin: Option<OwnedFd>,
    pub output: ContainerOutput,
}

/// A process to run in a running container (`docker exec`).
#[derive(Debug, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    /// `KEY=VALUE` entries added to (or replacing those of) the container's.
    pub env: Vec<String>,
    /// `user[:group]`; `None` runs as the container's user.
    pub user: Option<String>,
    /// Absolute; `None` uses the container's working directory.
    pub working_dir: Option<String>,
    /// Run on a new pseudo-terminal, whose master comes back in [`ExecSession`].
    pub tty: bool,
    /// Rows and columns of the terminal.
    pub console_size: Option<(u32, u32)>,
    /// Without a tty: the process's streams, `None` being `/dev/null`.
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// A started exec'd process.
pub struct ExecSession {
    pub pid: i32,
    /// With a tty: the terminal's master side (write input, read output).
    pub pty_master: Option<OwnedFd>,
    id: String,
    connection: OwnedFd,
}

impl ExecSession {
    /// Blocks until the process exits; its exit code (128 + signal when killed).
    pub fn wait(self) -> Result<i32, LifecycleError> {
        match receive(&self.id, self.connection.as_fd())? {
            MonitorReply::Exited { status } => Ok(status.code),
            other => Err(unexpected_monitor_reply(&self.id, &other)),
        }
    }
}

/// A wait already sent to a container's monitor. Its descriptor turns readable when
/// the container has exited, so an event loop can wait for many containers without a
/// thread each; [`PendingWait::finish`] then takes the exit status without blocking.
pub struct PendingWait {
    id: String,
    connection: OwnedFd,
}

impl AsFd for PendingWait {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.connection.as_fd()
    }
}

impl PendingWait {
    /// How the container ended (blocks until then when called before the descriptor
    /// is readable).
    pub fn finish(self, runtime: &Runtime) -> Result<ExitStatus, LifecycleError> {
        match wire::recv_message::<MonitorReply>(self.connection.as_fd()) {
            Ok(Some((MonitorReply::Exited { status }, _))) => Ok(status),
            Ok(Some((MonitorReply::Error { message }, _))) => Err(LifecycleError::Refused(message)),
            Ok(Some((other, _))) => Err(unexpected_monitor_reply(&self.id, &other)),
            // The monitor left without answering: its exit record tells.
            Ok(None) => runtime.last_exit(&self.id),
            Err(e) => Err(monitor_error(&self.id, e)),
        }
    }

    /// [`PendingWait::finish`] on a tokio event loop: waits for the answer without
    /// holding a thread.
    pub async fn exited(self, runtime: &Runtime) -> Result<ExitStatus, LifecycleError> {
        let PendingWait { id, connection } = self;
        let io = |source| LifecycleError::Io {
            id: id.clone(),
            action: "waiting for its exit",
            source,
        };
        // Tokio has no packet-socket type; its stream type serves to learn readiness
        // safely, the packet itself is read as everywhere else.
        let socket = std::os::unix::net::UnixStream::from(connection);
        socket.set_nonblocking(true).map_err(io)?;
        let socket = tokio::net::UnixStream::from_std(socket).map_err(io)?;
        socket.readable().await.map_err(io)?;
        let socket = socket.into_std().map_err(io)?;
        socket.set_nonblocking(false).map_err(io)?;
        PendingWait {
            id: id.clone(),
            connection: OwnedFd::from(socket),
        }
        .finish(runtime)
    }
}

/// Runs containers. Holds no per-container state: every fact lives on disk or
/// in the containers' monitors.
pub struct Runtime {
    program: PathBuf,
    /// The helper, started on the first create; creates from several threads run
    /// side by side through it. Replaced when it died.
    helper: Mutex<Option<Arc<HelperClient>>>,
    state_root: PathBuf,
    /// The built-in init, installed under the state root on first need.
    init_binary: OnceLock<PathBuf>,
}

impl Runtime {
    /// A runtime keeping state under `state_root`. `program` is a binary whose
    /// `main` calls `helper::maybe_run()` first; it is started as the helper on
    /// the first create.
    pub fn new(program: &Path, state_root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            program: program.to_path_buf(),
            helper: Mutex::new(None),
            state_root: state_root.into(),
            init_binary: OnceLock::new(),
        }
    }

    /// The path of the built-in init (`init: true`), installed on first use.
    pub fn init_binary(&self) -> Result<PathBuf, LifecycleError> {
        if let Some(path) = self.init_binary.get() {
            return Ok(path.clone());
        }
        // Installing is idempotent (content-addressed): racing threads agree.
        let path = install_init(&self.state_root.join("bin"))?;
        Ok(self.init_binary.get_or_init(|| path).clone())
    }

    /// The directory holding a container's bundle, overlay and log.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state_root.join("containers").join(id)
    }

    /// The container's json-file log (with `ContainerOutput::Log`).
    pub fn log_path(&self, id: &str) -> PathBuf {
        monitor::log_path(&self.container_dir(id), id)
    }

    /// The ids of every container under the state root, sorted.
    pub fn list(&self) -> Result<Vec<String>, LifecycleError> {
        let dir = self.state_root.join("containers");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(LifecycleError::Io {
                    id: String::new(),
                    action: "listing containers",
                    source,
                })
            }
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|id| validate_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// `runc create`: prepares the rootfs, builds the spec and creates the container,
    /// whose process waits for [`Runtime::start`]. Returns the init's host pid.
    pub fn create(&self, options: CreateOptions<'_>) -> Result<i32, LifecycleError> {
        let id = options.id;
        validate_id(id)?;
        let container_dir = self.container_dir(id);
        // Checked before anything is made, so the cleanup of a failed create can never
        // touch another container's files.
        if container_dir.exists() {
            return Err(LifecycleError::Exists(id.to_string()));
        }
        let user_namespace = options.config.user_namespace.as_ref();
        let root =
            rootfs::prepare(&options.rootfs, &container_dir, user_namespace).map_err(|source| {
                LifecycleError::Rootfs {
                    id: id.to_string(),
                    source,
                }
            })?;
        let result = self.create_on_rootfs(options, &root, &container_dir);
        if result.is_err() {
            // Leave nothing mounted or half-made behind a failed create.
            let _ = rootfs::teardown(&container_dir);
            let _ = fs::remove_dir_all(&container_dir);
        }
        result
    }

    fn create_on_rootfs(
        &self,
        options: CreateOptions<'_>,
        root: &Path,
        container_dir: &Path,
    ) -> Result<i32, LifecycleError> {
        let id = options.id;
        let mut container_config = options.config.clone();
        if container_config.init && container_config.init_binary.is_none() {
            container_config.init_binary = Some(self.init_binary()?);
        }
        let spec = build_spec(options.image, &container_config, root, options.cgroups_path)
            .map_err(|source| LifecycleError::Spec {
                id: id.to_string(),
                source,
            })?;
        fs::create_dir_all(container_dir).map_err(|source| io_error(id, "creating", source))?;
        let (output, direct) = match options.output {
            ContainerOutput::Log(log) => (Output::Log { options: log }, None),
            ContainerOutput::Direct { stdout, stderr } => (
                Output::Direct,
                Some([or_dev_null(stdout, true)?, or_dev_null(stderr, true)?]),
            ),
            ContainerOutput::Terminal => (Output::Terminal, None),
        };
        let config = MonitorConfig {
            id: id.to_string(),
            container_dir: container_dir.to_path_buf(),
            state_root: self.libcontainer_root(),
            cgroups_path: options.cgroups_path.to_string(),
            output,
            tty: options.config.tty,
        };
        save_monitor_config(&config)?;
        let record = ContainerRecord {
            id: id.to_string(),
            image: options.image_name.to_string(),
            config: container_config,
            created_at: std::time::SystemTime::now(),
            cgroups_path: options.cgroups_path.to_string(),
        };
        write_json(id, &container_dir.join(CONTAINER_RECORD), &record)?;
        let stdin = or_dev_null(options.stdin, false)?;
        let mut fds = vec![stdin.as_fd()];
        fds.extend(direct.iter().flatten().map(|fd| fd.as_fd()));
        self.spawn_monitor(config, Some(spec), &fds)
    }

    fn libcontainer_root(&self) -> PathBuf {
        self.state_root.join("run")
    }

    fn spawn_monitor(
        &self,
        config: MonitorConfig,
        spec: Option<Spec>,
        fds: &[BorrowedFd<'_>],
    ) -> Result<i32, LifecycleError> {
        let request = Request::Create {
            config,
            spec: spec.map(Box::new),
        };
        let helper = self.helper()?;
        let reply = helper.call(&request, fds);
        if matches!(reply, Err(HelperError::Gone | HelperError::Socket(_))) {
            // Dead: dropped (and reaped) once no call uses it; the next starts another.
            let mut current = self.helper.lock().unwrap_or_else(|e| e.into_inner());
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &helper)) {
                *current = None;
            }
        }
        match reply {
            Ok(Reply::Created { pid, .. }) => Ok(pid),
            Ok(other) => Err(LifecycleError::UnexpectedReply {
                request: "create",
                reply: format!("{other:?}"),
            }),
            Err(HelperError::Remote(message)) => Err(LifecycleError::Refused(message)),
            Err(err) => Err(err.into()),
        }
    }

    fn helper(&self) -> Result<Arc<HelperClient>, LifecycleError> {
        let mut current = self.helper.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(helper) = current.as_ref() {
            return Ok(helper.clone());
        }
        let helper = Arc::new(HelperClient::spawn(&self.program)?);
        *current = Some(helper.clone());
        Ok(helper)
    }

    /// Runs the container's process. A stopped container starts again (a new
    /// process on the same filesystem, log and configuration), as `docker start`.
    pub fn start(&self, id: &str) -> Result<(), LifecycleError> {
        validate_id(id)?;
        if self.connect(id)?.is_none() {
            self.recreate(id)?;
        }
        self.expect_done(id, &MonitorRequest::Start)
    }

    /// The pty master of a container created with [`ContainerOutput::Terminal`]: read
    /// its output and write its input there. Take it before `start`, or the first
    /// output waits for a reader.
    pub fn terminal(&self, id: &str) -> Result<OwnedFd, LifecycleError> {
        validate_id(id)?;
        let Some(connection) = self.connect(id)? else {
            return Err(LifecycleError::NotRunning(id.to_string()));
        };
        wire::send_message(connection.as_fd(), &MonitorRequest::Terminal, &[])
            .map_err(|e| monitor_error(id, WireError::Io(e)))?;
        match wire::recv_message::<MonitorReply>(connection.as_fd()) {
            Ok(Some((MonitorReply::Done, mut fds))) => fds
                .pop()
                .ok_or_else(|| unexpected_monitor_reply(id, &MonitorReply::Done)),
            Ok(Some((MonitorReply::Error { message }, _))) => Err(LifecycleError::Refused(message)),
            Ok(Some((other, _))) => Err(unexpected_monitor_reply(id, &other)),
            Ok(None) => Err(LifecycleError::NotRunning(id.to_string())),
            Err(e) => Err(monitor_error(id, e)),
        }
    }

    /// A new process for a stopped container.
    fn recreate(&self, id: &str) -> Result<(), LifecycleError> {
        let container_dir = self.container_dir(id);
        if !container_dir.exists() {
            return Err(LifecycleError::NotFound(id.to_string()));
        }
        let config = load_monitor_config(id, &container_dir)?;
        if !matches!(config.output, Output::Log { .. }) {
            return Err(LifecycleError::Refused(format!(
                "start {id}: its output went to its creator's descriptors, which are gone; \
                 only containers that log can be started again"
            )));
        }
        // Leftovers of a monitor that died abruptly would block the new one.
        remove_libcontainer_state(&self.libcontainer_root(), id);
        ExitRecord::remove(&container_dir)
            .map_err(|source| io_error(id, "removing the last exit record", source))?;
        let stdin = or_dev_null(None, false)?;
        self.spawn_monitor(config, None, &[stdin.as_fd()])?;
        Ok(())
    }

    /// Blocks until the container's main process has exited and its output is
    /// written; at once for a stopped container.
    pub fn wait(&self, id: &str) -> Result<ExitStatus, LifecycleError> {
        match self.begin_wait(id)? {
            Some(pending) => pending.finish(self),
            None => self.last_exit(id),
        }
    }

    /// Starts a [`Runtime::wait`] without blocking; `None` when the container has no
    /// process now (then `wait` answers at once).
    pub fn begin_wait(&self, id: &str) -> Result<Option<PendingWait>, LifecycleError> {
        let Some(connection) = self.connect(id)? else {
            return Ok(None);
        };
        match wire::send_message(connection.as_fd(), &MonitorRequest::Wait, &[]) {
            Ok(()) => Ok(Some(PendingWait {
                id: id.to_string(),
                connection,
            })),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()) => Ok(None),
            Err(e) => Err(monitor_error(id, WireError::Io(e))),
        }
    }

    /// `docker stop`: `signal` (Docker's default is SIGTERM) to the main process,
    /// SIGKILL to every process after `grace`; returns how it ended.
    pub fn stop(
        &self,
        id: &str,
        signal: i32,
        grace: Duration,
    ) -> Result<ExitStatus, LifecycleError> {
        let request = MonitorRequest::Stop {
            signal,
            grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        };
        match self.call(id, &request, &[])? {
            Some(MonitorReply::Exited { status }) => Ok(status),
            Some(other) => Err(unexpected_monitor_reply(id, &other)),
            None => self.last_exit(id),
        }
    }

    /// Sends `signal` to the main process, or to every process of the container.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), LifecycleError> {
        self.expect_done(id, &MonitorRequest::Kill { signal, all })
    }

    /// Freezes every process of the container (cgroup freezer).
    pub fn pause(&self, id: &str) -> Result<(), LifecycleError> {
        self.expect_done(id, &MonitorRequest::Pause)
    }

    pub fn resume(&self, id: &str) -> Result<(), LifecycleError> {
        self.expect_done(id, &MonitorRequest::Resume)
    }

    pub fn state(&self, id: &str) -> Result<ContainerState, LifecycleError> {
        match self.call(id, &MonitorRequest::State, &[])? {
            Some(MonitorReply::State { state }) => Ok(state),
            Some(other) => Err(unexpected_monitor_reply(id, &other)),
            None => {
                let record = self.exit_record(id)?;
                Ok(ContainerState {
                    id: id.to_string(),
                    state: State::Stopped,
                    pid: None,
                    started_at: record.as_ref().and_then(|r| r.started_at),
                    finished_at: record.as_ref().map(|r| r.finished_at),
                    exit: record.map(|r| r.status),
                })
            }
        }
    }

    /// What the container was created from.
    pub fn inspect(&self, id: &str) -> Result<ContainerRecord, LifecycleError> {
        validate_id(id)?;
        let path = self.container_dir(id).join(CONTAINER_RECORD);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LifecycleError::NotFound(id.to_string()))
            }
            Err(source) => return Err(io_error(id, "reading container.json", source)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| io_error(id, "reading container.json", io::Error::other(e)))
    }

    /// CPU, memory and pids figures of a running container, from its cgroups.
    pub fn stats(&self, id: &str) -> Result<ContainerStats, LifecycleError> {
        validate_id(id)?;
        let config = load_monitor_config(id, &self.container_dir(id))
            .map_err(|_| LifecycleError::NotFound(id.to_string()))?;
        if self.connect(id)?.is_none() {
            return Err(LifecycleError::NotRunning(id.to_string()));
        }
        read_stats(&config.cgroups_path).map_err(|source| LifecycleError::Stats {
            id: id.to_string(),
            source,
        })
    }

    /// The host pids of the container's processes (exec'd ones included), ascending,
    /// from its cgroup: what `docker top` lists. A paused container has processes too.
    pub fn processes(&self, id: &str) -> Result<Vec<i32>, LifecycleError> {
        validate_id(id)?;
        let config = load_monitor_config(id, &self.container_dir(id))
            .map_err(|_| LifecycleError::NotFound(id.to_string()))?;
        if self.connect(id)?.is_none() {
            return Err(LifecycleError::NotRunning(id.to_string()));
        }
        read_processes(&config.cgroups_path).map_err(|source| LifecycleError::Processes {
            id: id.to_string(),
            source,
        })
    }

    /// Starts a process in the running container.
    pub fn exec(&self, id: &str, options: ExecOptions) -> Result<ExecSession, LifecycleError> {
        let process = self.exec_process(id, &options)?;
        let streams = if options.tty {
            Vec::new()
        } else {
            vec![
                or_dev_null(options.stdin, false)?,
                or_dev_null(options.stdout, true)?,
                or_dev_null(options.stderr, true)?,
            ]
        };
        let fds: Vec<BorrowedFd<'_>> = streams.iter().map(|fd| fd.as_fd()).collect();
        let request = MonitorRequest::Exec {
            process: Box::new(process),
        };
        let Some(connection) = self.connect(id)? else {
            return Err(LifecycleError::NotRunning(id.to_string()));
        };
        wire::send_message(connection.as_fd(), &request, &fds)
            .map_err(|e| monitor_error(id, WireError::Io(e)))?;
        drop(streams);
        let (reply, mut received) = wire::recv_message::<MonitorReply>(connection.as_fd())
            .map_err(|e| monitor_error(id, e))?
            .ok_or_else(|| LifecycleError::NotRunning(id.to_string()))?;
        match reply {
            MonitorReply::ExecStarted { pid } => Ok(ExecSession {
                pid,
                pty_master: received.pop(),
                id: id.to_string(),
                connection,
            }),
            MonitorReply::Error { message } => Err(LifecycleError::Refused(message)),
            other => Err(unexpected_monitor_reply(id, &other)),
        }
    }

    /// The exec'd process: the container's own, with the options applied as
    /// `docker exec` applies them.
    fn exec_process(&self, id: &str, options: &ExecOptions) -> Result<Process, LifecycleError> {
        let exec_error = |reason: String| LifecycleError::ExecOptions {
            id: id.to_string(),
            reason,
        };
        if options.args.is_empty() {
            return Err(exec_error("no command given".into()));
        }
        let bundle = self.container_dir(id).join("config.json");
        let spec = Spec::load(&bundle).map_err(|_| LifecycleError::NotFound(id.to_string()))?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(options.args.clone()));
        let mut env = process.env().clone().unwrap_or_default();
        if options.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        process.set_env(Some(merge_env(env, &options.env)));
        if let Some(dir) = &options.working_dir {
            if !dir.starts_with('/') {
                return Err(exec_error(format!(
                    "the working directory {dir:?} is not an absolute path"
                )));
            }
            process.set_cwd(PathBuf::from(dir));
        }
        if let Some(user) = options.user.as_deref().filter(|u| !u.is_empty()) {
            let rootfs = spec
                .root()
                .as_ref()
                .map(|r| r.path().clone())
                .unwrap_or_default();
            let resolved =
                resolve_user(&rootfs, user, &[]).map_err(|source| LifecycleError::ExecUser {
                    id: id.to_string(),
                    source,
                })?;
            let mut spec_user = process.user().clone();
            spec_user.set_uid(resolved.uid);
            spec_user.set_gid(resolved.gid);
            spec_user.set_additional_gids(Some(resolved.additional_gids));
            process.set_user(spec_user);
        }
        process.set_terminal(Some(options.tty));
        process.set_console_size(match (options.tty, options.console_size) {
            (true, Some((rows, cols))) => Some(
                BoxBuilder::default()
                    .height(u64::from(rows))
                    .width(u64::from(cols))
                    .build()
                    .map_err(|e| exec_error(e.to_string()))?,
            ),
            _ => None,
        });
        Ok(process)
    }

    /// Removes the container: its process (with `force`, else it must be
    /// stopped), cgroups, libcontainer state, overlay, log and directory.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), LifecycleError> {
        validate_id(id)?;
        let container_dir = self.container_dir(id);
        if !container_dir.exists() {
            return Err(LifecycleError::NotFound(id.to_string()));
        }
        if self.connect(id)?.is_some() {
            if !force {
                let state = self.state(id)?;
                if state.state != State::Stopped {
                    return Err(LifecycleError::StillRunning(id.to_string()));
                }
            }
            self.stop(id, 9, Duration::ZERO)?;
        }
        remove_libcontainer_state(&self.libcontainer_root(), id);
        rootfs::teardown(&container_dir).map_err(|source| LifecycleError::Rootfs {
            id: id.to_string(),
            source,
        })?;
        match fs::remove_dir_all(&container_dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_error(id, "removing its directory", e))
            }
            _ => Ok(()),
        }
    }

    fn last_exit(&self, id: &str) -> Result<ExitStatus, LifecycleError> {
        match self.exit_record(id)? {
            Some(record) => Ok(record.status),
            None => Err(LifecycleError::NotRunning(id.to_string())),
        }
    }

    fn exit_record(&self, id: &str) -> Result<Option<ExitRecord>, LifecycleError> {
        let container_dir = self.container_dir(id);
        if !container_dir.exists() {
            return Err(LifecycleError::NotFound(id.to_string()));
        }
        ExitRecord::load(&container_dir)
            .map_err(|source| io_error(id, "reading its exit record", source))
    }

    /// A connection to the container's monitor; `None` when it has none (the
    /// container is stopped).
    fn connect(&self, id: &str) -> Result<Option<OwnedFd>, LifecycleError> {
        validate_id(id)?;
        let socket = self.container_dir(id).join(monitor::SOCKET);
        match wire::connect(&socket) {
            Ok(fd) => Ok(Some(fd)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                if self.container_dir(id).exists() {
                    Ok(None)
                } else {
                    Err(LifecycleError::NotFound(id.to_string()))
                }
            }
            Err(e) => Err(monitor_error(id, WireError::Io(e))),
        }
    }

    /// One request to the container's monitor; `None` when it has none, or when it
    /// left without answering (the container stopped meanwhile).
    fn call(
        &self,
        id: &str,
        request: &MonitorRequest,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Option<MonitorReply>, LifecycleError> {
        let Some(connection) = self.connect(id)? else {
            return Ok(None);
        };
        if let Err(e) = wire::send_message(connection.as_fd(), request, fds) {
            return if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()) {
                Ok(None)
            } else {
                Err(monitor_error(id, WireError::Io(e)))
            };
        }
        match wire::recv_message::<MonitorReply>(connection.as_fd()) {
            Ok(Some((MonitorReply::Error { message }, _))) => Err(LifecycleError::Refused(message)),
            Ok(Some((reply, _))) => Ok(Some(reply)),
            Ok(None) => Ok(None),
            Err(e) => Err(monitor_error(id, e)),
        }
    }

    fn expect_done(&self, id: &str, request: &MonitorRequest) -> Result<(), LifecycleError> {
        match self.call(id, request, &[])? {
            Some(MonitorReply::Done) => Ok(()),
            Some(other) => Err(unexpected_monitor_reply(id, &other)),
            None => Err(LifecycleError::NotRunning(id.to_string())),
        }
    }
}

fn receive(id: &str, connection: BorrowedFd<'_>) -> Result<MonitorReply, LifecycleError> {
    match wire::recv_message::<MonitorReply>(connection) {
        Ok(Some((MonitorReply::Error { message }, _))) => Err(LifecycleError::Refused(message)),
        Ok(Some((reply, _))) => Ok(reply),
        Ok(None) => Err(LifecycleError::Monitor {
            id: id.to_string(),
            reason: "it closed the connection".into(),
        }),
        Err(e) => Err(monitor_error(id, e)),
    }
}

/// Docker's exec environment: the container's, with the given entries replacing
/// those of the same name or appended.
fn merge_env(mut env: Vec<String>, overrides: &[String]) -> Vec<String> {
    for entry in overrides {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(existing) => existing.clone_from(entry),
            None => env.push(entry.clone()),
        }
    }
    env
}

/// libcontainer's state of a container whose process is gone (its monitor
/// removes it; this is for a monitor that died abruptly).
fn remove_libcontainer_state(libcontainer_root: &Path, id: &str) {
    let dir = libcontainer_root.join(id);
    if !dir.exists() {
        return;
    }
    if let Ok(mut container) = libcontainer::container::Container::load(dir.clone()) {
        let _ = container.delete(true);
    }
    let _ = fs::remove_dir_all(dir);
}

fn save_monitor_config(config: &MonitorConfig) -> Result<(), LifecycleError> {
    write_json(
        &config.id,
        &config.container_dir.join(MONITOR_CONFIG),
        config,
    )
}

fn write_json(id: &str, path: &Path, value: &impl serde::Serialize) -> Result<(), LifecycleError> {
    crate::atomic_file::replace_json(path, value, 0o600)
        .map_err(|source| io_error(id, "writing its records", source))
}

fn load_monitor_config(id: &str, container_dir: &Path) -> Result<MonitorConfig, LifecycleError> {
    let bytes = fs::read(container_dir.join(MONITOR_CONFIG))
        .map_err(|source| io_error(id, "reading monitor.json", source))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| io_error(id, "reading monitor.json", io::Error::other(e)))
}

fn or_dev_null(fd: Option<OwnedFd>, write: bool) -> Result<OwnedFd, LifecycleError> {
    match fd {
        Some(fd) => Ok(fd),
        None => File::options()
            .read(!write)
            .write(write)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|source| io_error("", "opening /dev/null", source)),
    }
}

fn io_error(id: &str, action: &'static str, source: io::Error) -> LifecycleError {
    LifecycleError::Io {
        id: id.to_string(),
        action,
        source,
    }
}

fn monitor_error(id: &str, err: WireError) -> LifecycleError {
    LifecycleError::Monitor {
        id: id.to_string(),
        reason: err.to_string(),
    }
}

fn unexpected_monitor_reply(id: &str, reply: &MonitorReply) -> LifecycleError {
    LifecycleError::Monitor {
        id: id.to_string(),
        reason: format!("unexpected reply {reply:?}"),
    }
}

/// libcontainer's id rule plus a length cap (the id names directories and cgroups).
fn validate_id(id: &str) -> Result<(), LifecycleError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.+-".contains(c);
    let ok = !id.is_empty() && id.len() <= 64 && !id.starts_with('.') && id.chars().all(allowed);
    if ok {
        Ok(())
    } else {
        Err(LifecycleError::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_libcontainer_rules() {
        for good in ["web-1", "proj_web.1", "a+b", "A9"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            let err = validate_id(bad).unwrap_err();
            assert!(err.to_string().contains("invalid container id"), "{bad}");
        }
    }

    #[test]
    fn create_refuses_an_existing_container_and_leaves_it_alone() {
        let tmp = tempfile::tempdir().unwrap();
        // The helper is never started: the check comes first.
        let runtime = Runtime::new(Path::new("/bin/false"), tmp.path());
        let existing = runtime.container_dir("web");
        fs::create_dir_all(existing.join("upper")).unwrap();
        let image = ImageConfiguration::default();
        let config = ContainerConfig::default();
        let err = runtime
            .create(CreateOptions {
                id: "web",
                rootfs: RootfsSource::Dir(tmp.path().to_path_buf()),
                image: &image,
                config: &config,
                image_name: "busybox",
                cgroups_path: "/rcompose/test/web",
                stdin: None,
                output: ContainerOutput::default(),
            })
            .unwrap_err();
        assert!(matches!(err, LifecycleError::Exists(_)), "{err}");
        assert!(err.to_string().contains("web already exists"));
        assert!(existing.join("upper").exists());
    }

    #[test]
    fn unknown_containers_are_reported_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(Path::new("/bin/false"), tmp.path());
        for err in [
            runtime.state("ghost").unwrap_err(),
            runtime.wait("ghost").unwrap_err(),
            runtime.kill("ghost", 15, false).unwrap_err(),
            runtime.delete("ghost", true).unwrap_err(),
            runtime.start("ghost").unwrap_err(),
        ] {
            assert_eq!(err.to_string(), "no such container: ghost");
        }
    }

    #[test]
    fn a_stopped_container_reads_its_state_from_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(Path::new("/bin/false"), tmp.path());
        let dir = runtime.container_dir("done");
        fs::create_dir_all(&dir).unwrap();
        let state = runtime.state("done").unwrap();
        assert_eq!((state.state, state.exit), (State::Stopped, None));
        let record = ExitRecord {
            status: ExitStatus {
                code: 3,
                oom_kills: 0,
            },
            started_at: None,
            finished_at: std::time::SystemTime::now(),
        };
        record.save(&dir).unwrap();
        assert_eq!(runtime.wait("done").unwrap().code, 3);
        assert_eq!(runtime.state("done").unwrap().exit, Some(record.status));
        let err = runtime.kill("done", 9, true).unwrap_err();
        assert_eq!(err.to_string(), "container done is not running");
        assert_eq!(runtime.list().unwrap(), vec!["done".to_string()]);
    }

    #[test]
    fn exec_environment_overrides_by_name() {
        let env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let merged = merge_env(env, &["A=2".into(), "B=3".into()]);
        assert_eq!(merged, vec!["PATH=/bin", "A=2", "B=3"]);
    }
}
