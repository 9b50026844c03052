//! The project supervisor: the one long-lived process per project on the native
//! engine. Containers do not depend on it (each has its own monitor, which keeps
//! its processes, log and exit code); it adds what needs someone awake: the DNS
//! servers of the project's networks, the reservations of its published host ports,
//! and restart policies.
//!
//! It lives in `<root>/projects/<project>/`: `supervisor.lock` (held while it runs),
//! `supervisor.sock` (0600; one JSON request per line: `reload`, `stop`),
//! `supervisor.log`, `services.json` (what it needs of the Compose model, written by
//! `up`), and `stopped/<container>` markers for containers a user stopped, which a
//! restart policy must leave alone. Everything it knows is on disk, so a supervisor
//! killed with SIGKILL is replaced by the next command without loss. When the project
//! has no container left, it removes that directory and exits.

mod policies;
mod prober;
mod restarts;
mod server;

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use policies::{ServicePolicies, ServicePolicy};

use crate::project::model::Project;

/// The hidden first argument that turns the binary into a project's supervisor.
pub const SUPERVISOR_ARG: &str = "__rcompose-supervisor";

const SOCKET: &str = "supervisor.sock";
const LOG: &str = "supervisor.log";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum SupervisorError {
    #[error("project {project}: {action} {}: {source}", path.display())]
    Io {
        project: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("project {project}: the supervisor did not start within {seconds} s (see {})", log.display())]
    NotStarted {
        project: String,
        seconds: u64,
        log: PathBuf,
    },
    #[error("project {project}: the supervisor answered: {message}")]
    Refused { project: String, message: String },
    #[error(transparent)]
    Policies(#[from] policies::PolicyError),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    /// Look at the project's containers and networks again.
    Reload,
    /// Exit now (containers keep running).
    Stop,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    message: String,
}

/// The project's directory under the state root.
pub fn project_dir(root: &Path, project: &str) -> PathBuf {
    root.join("projects").join(project)
}

/// Where the supervisor writes a container's health (Docker's `State.Health` JSON).
pub fn health_file(root: &Path, project: &str, container: &str) -> PathBuf {
    project_dir(root, project)
        .join("health")
        .join(format!("{container}.json"))
}

/// A container's last health state, when it has a healthcheck that has run.
pub fn read_health(
    root: &Path,
    project: &str,
    container: &str,
) -> Option<crate::orchestrator::health::HealthState> {
    let bytes = fs::read(health_file(root, project, container)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Call at the start of `main`, after the runtime helper's `maybe_run`: when the
/// process was started as a supervisor, this runs it and exits.
pub fn maybe_run() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).map(|a| a.as_os_str()) != Some(std::ffi::OsStr::new(SUPERVISOR_ARG)) {
        return;
    }
    let (Some(root), Some(project)) = (args.get(2), args.get(3)) else {
        eprintln!("usage: {SUPERVISOR_ARG} ROOT PROJECT");
        std::process::exit(2);
    };
    let project = project.to_string_lossy().into_owned();
    // Its starter may have blocked signals (an attached `up` waiting for Ctrl-C); the
    // mask would reach every container it restarts.
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    // A descriptor its starter leaked (a terminal, a CI runner's pipe) would be held
    // for the project's whole life, and whoever waits for its end would wait that long.
    if let Err(err) = rcompose_runtime::container::close_descriptors_except(&[]) {
        eprintln!("rcompose supervisor of {project}: closing inherited descriptors: {err}");
    }
    let code = match server::run(Path::new(root), &project) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("rcompose supervisor of {project}: {err}");
            1
        }
    };
    std::process::exit(code);
}

/// Records what the supervisor needs of `project` and makes sure a supervisor runs
/// for it and has seen the latest containers: asks a running one to reload, or starts
/// one in the background (its own process group, output to `supervisor.log`).
pub fn ensure_running(root: &Path, project: &Project) -> Result<(), SupervisorError> {
    let name = project.name.as_str();
    let dir = project_dir(root, name);
    fs::create_dir_all(&dir).map_err(|source| io_error(name, "creating", &dir, source))?;
    ServicePolicies::from_project(project)?.save(&dir)?;
    if request(root, name, &Request::Reload).is_ok() {
        return Ok(());
    }
    spawn(root, name, &dir)?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match request(root, name, &Request::Reload) {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => {
                return Err(SupervisorError::NotStarted {
                    project: name.to_string(),
                    seconds: STARTUP_TIMEOUT.as_secs(),
                    log: dir.join(LOG),
                })
            }
        }
    }
}

/// Asks a running supervisor to look again (after `down`, `stop`, ...); fine when
/// none runs.
pub fn reload_if_running(root: &Path, project: &str) {
    let _ = request(root, project, &Request::Reload);
}

/// Tells the project's supervisor to exit (containers keep running).
pub fn stop(root: &Path, project: &str) {
    let _ = request(root, project, &Request::Stop);
}

/// Marks a container as stopped by its user (`stop`, `down`, Ctrl-C): restart
/// policies leave it alone until it is started again.
pub fn mark_stopped_by_user(root: &Path, project: &str, container: &str) -> io::Result<()> {
    let dir = project_dir(root, project).join("stopped");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(container), b"")
}

/// Clears the mark when the user starts the container again, and its restart
/// count.
pub fn clear_stopped_by_user(root: &Path, project: &str, container: &str) -> io::Result<()> {
    let dir = project_dir(root, project);
    match fs::remove_file(dir.join("stopped").join(container)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    restarts::forget(&dir, container)
}

fn spawn(root: &Path, project: &str, dir: &Path) -> Result<(), SupervisorError> {
    let log_path = dir.join(LOG);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| io_error(project, "opening", &log_path, source))?;
    let err_log = log
        .try_clone()
        .map_err(|source| io_error(project, "opening", &log_path, source))?;
    let program = std::env::current_exe()
        .map_err(|source| io_error(project, "locating", Path::new("/proc/self/exe"), source))?;
    Command::new(program)
        .arg(SUPERVISOR_ARG)
        .arg(root)
        .arg(project)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        // Out of the terminal's process group: Ctrl-C in the shell is not for it.
        .process_group(0)
        // Long-lived and small: mimalloc's eager arena commit would double its memory.
        .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
        .spawn()
        .map(drop)
        .map_err(|source| io_error(project, "starting the supervisor for", dir, source))
}

/// One request on the supervisor's socket.
fn request(root: &Path, project: &str, request: &Request) -> Result<(), SupervisorError> {
    let socket = project_dir(root, project).join(SOCKET);
    let io = |source| io_error(project, "talking to the supervisor at", &socket, source);
    let stream = UnixStream::connect(&socket).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let mut line = serde_json::to_string(request).map_err(|e| io(io::Error::other(e)))?;
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    let reply: Reply = serde_json::from_str(&answer).map_err(|e| io(io::Error::other(e)))?;
    if reply.ok {
        Ok(())
    } else {
        Err(SupervisorError::Refused {
            project: project.to_string(),
            message: reply.message,
        })
    }
}

fn io_error(
    project: &str,
    action: &'static str,
    path: &Path,
    source: io::Error,
) -> SupervisorError {
    SupervisorError::Io {
        project: project.to_string(),
        action,
        path: path.to_path_buf(),
        source,
    }
}
