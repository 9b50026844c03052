//! The single-threaded helper process that makes every libcontainer call.
//!
//! Why a separate process: libcontainer clones its intermediate process with a raw
//! `clone3` and then runs ordinary Rust code (allocation, serde) in the child. If the
//! caller has other threads, a lock one of them held at clone time (malloc's, for
//! one) stays locked forever in the child, and container creation hangs. It also
//! changes process-wide state of its caller (dumpable flag, oom_score_adj, cwd). So
//! the multi-threaded supervisor never calls it; it starts this helper with
//! fork+exec of its own binary and a hidden argument, which gives a fresh,
//! single-threaded image without any `unsafe` fork in this crate.
//!
//! Wiring: the binary's `main` calls [`maybe_run`] before anything else (before any
//! runtime or thread starts). The supervisor calls [`HelperClient::spawn`] with the
//! path of that binary (`/proc/self/exe` in rcompose). The two talk over a
//! `SOCK_SEQPACKET` socketpair passed as the helper's stdin: one JSON message per
//! packet, the container's stdio fds attached to a create request with SCM_RIGHTS.
//!
//! Container inits are children of the helper, so the helper holds a pidfd for each,
//! polls them together with the socket, reaps them as they exit and records the exit
//! code and the cgroup's OOM-kill count (which must be read before delete removes
//! the cgroup).

use std::collections::HashMap;
use std::fs;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::{Mount, MountBuilder, Spec};
use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{
    recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage,
    RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType,
};
use rustix::process::{pidfd_open, waitid, Pid, PidfdFlags, WaitId, WaitIdOptions};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::rootfs;

/// The hidden first argument that turns the binary into the helper.
pub const HELPER_ARG: &str = "__rcompose-runtime-helper";

/// Largest message on the helper socket (a spec with the seccomp profile is ~40 KiB).
const MAX_MESSAGE: usize = 1 << 20;

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

/// How a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, or 128 + signal number when a signal killed it (as Docker shows).
    pub code: i32,
    /// The cgroup's `oom_kill` counter when the process exited.
    pub oom_kills: u64,
}

impl ExitStatus {
    /// Docker's `OOMKilled`: the kernel OOM killer killed a process of the container.
    pub fn oom_killed(&self) -> bool {
        self.oom_kills > 0
    }
}

/// The lifecycle state of a container as the helper sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub state: State,
    pub pid: Option<i32>,
    /// Set once the main process has exited and been reaped.
    pub exit: Option<ExitStatus>,
}

/// A request to the helper. `Create` carries three fds (stdin, stdout, stderr).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Create {
        id: String,
        /// The bundle: config.json is written here; holds the overlay dirs too.
        container_dir: PathBuf,
        /// libcontainer's state root (`<root>/<id>/state.json`).
        state_root: PathBuf,
        spec: Box<Spec>,
    },
    Start {
        id: String,
    },
    /// Answered when the main process has exited (at once if it already has).
    Wait {
        id: String,
    },
    Kill {
        id: String,
        signal: i32,
        all: bool,
    },
    /// Removes the container (cgroups, state), unmounts its overlay and removes its
    /// directory. `force` kills a container that is still running.
    Delete {
        id: String,
        force: bool,
    },
    State {
        id: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Created { pid: i32 },
    Done,
    Exited { status: ExitStatus },
    State { state: ContainerState },
    Error { message: String },
}

// ---------------------------------------------------------------------------------
// Wire format

fn send_message(
    socket: BorrowedFd<'_>,
    value: &impl Serialize,
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many fds for one message"));
    }
    let sent = sendmsg(
        socket,
        &[IoSlice::new(&body)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if sent != body.len() {
        return Err(io::Error::other("short write on a packet socket"));
    }
    Ok(())
}

/// One message and its fds; `None` when the peer closed the socket.
fn recv_message<T: for<'de> Deserialize<'de>>(
    socket: BorrowedFd<'_>,
) -> Result<Option<(T, Vec<OwnedFd>)>, HelperError> {
    let mut body = vec![0u8; MAX_MESSAGE];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = loop {
        match recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut body)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other.map_err(|e| HelperError::Socket(e.into()))?,
        }
    };
    let fds = received_fds(&mut control);
    if received.bytes == 0 {
        return Ok(None);
    }
    if received.flags.contains(ReturnFlags::TRUNC) || received.flags.contains(ReturnFlags::CTRUNC) {
        return Err(HelperError::Protocol("message truncated".into()));
    }
    let body = body.get(..received.bytes).unwrap_or_default();
    let value = serde_json::from_slice(body).map_err(|e| HelperError::Protocol(e.to_string()))?;
    Ok(Some((value, fds)))
}

fn received_fds(control: &mut RecvAncillaryBuffer<'_>) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    fds
}

// ---------------------------------------------------------------------------------
// Supervisor side

/// The supervisor's handle on a helper process. One request at a time: each call
/// blocks until its reply (a `wait` until the container exits).
pub struct HelperClient {
    socket: OwnedFd,
    child: Child,
}

impl HelperClient {
    /// Starts `program HELPER_ARG`; `program` must call [`maybe_run`] first thing in
    /// `main`. The helper's stderr is inherited (it only writes there on fatal errors).
    pub fn spawn(program: &Path) -> Result<HelperClient, HelperError> {
        let spawn_error = |source| HelperError::Spawn {
            program: program.to_path_buf(),
            source,
        };
        let (ours, theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| spawn_error(e.into()))?;
        let child = Command::new(program)
            .arg(HELPER_ARG)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .spawn()
            .map_err(spawn_error)?;
        Ok(HelperClient {
            socket: ours,
            child,
        })
    }

    /// The helper's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `request` with `fds` and returns the helper's reply; a `Reply::Error`
    /// becomes `HelperError::Remote`.
    pub fn call(
        &mut self,
        request: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Reply, HelperError> {
        send_message(self.socket.as_fd(), request, fds).map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()) {
                HelperError::Gone
            } else {
                HelperError::Socket(e)
            }
        })?;
        match recv_message::<Reply>(self.socket.as_fd())? {
            None => Err(HelperError::Gone),
            Some((Reply::Error { message }, _)) => Err(HelperError::Remote(message)),
            Some((reply, _)) => Ok(reply),
        }
    }
}

impl Drop for HelperClient {
    fn drop(&mut self) {
        // Closing the socket tells the helper to exit; reap it so no zombie is left.
        let _ = rustix::net::shutdown(&self.socket, rustix::net::Shutdown::Both);
        let _ = self.child.wait();
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
    Helper::default().serve(socket.as_fd())
}

struct Entry {
    container: Container,
    container_dir: PathBuf,
    cgroups_path: String,
    /// Open until the main process is reaped.
    pidfd: Option<OwnedFd>,
    exit: Option<ExitStatus>,
    /// A `Wait` request is pending for this container.
    waiting: bool,
}

#[derive(Default)]
struct Helper {
    containers: HashMap<String, Entry>,
}

impl Helper {
    fn serve(&mut self, socket: BorrowedFd<'_>) -> Result<(), HelperError> {
        loop {
            let (socket_ready, exited) = self.poll_once(socket)?;
            for id in exited {
                self.reap(&id, socket)?;
            }
            if socket_ready {
                let Some((request, fds)) = recv_message::<Request>(socket)? else {
                    self.remove_unstarted();
                    return Ok(());
                };
                if let Some(reply) = self.handle(request, fds) {
                    send_message(socket, &reply, &[]).map_err(HelperError::Socket)?;
                }
            }
        }
    }

    /// The caller is gone. A container it created but never started would wait for its
    /// start forever, holding its cgroups: remove it. Started containers keep running,
    /// for a new supervisor to adopt.
    fn remove_unstarted(&mut self) {
        let unstarted: Vec<String> = self
            .containers
            .iter_mut()
            .filter_map(|(id, entry)| {
                let _ = entry.container.refresh_status();
                (entry.container.status() == ContainerStatus::Created).then(|| id.clone())
            })
            .collect();
        for id in unstarted {
            if let Err(err) = self.delete(&id, true) {
                eprintln!("rcompose container helper: {err}");
            }
        }
    }

    /// Waits for the socket or any container's pidfd; returns whether the socket is
    /// readable (or closed) and which containers exited.
    fn poll_once(&self, socket: BorrowedFd<'_>) -> Result<(bool, Vec<String>), HelperError> {
        let watched: Vec<(&String, &OwnedFd)> = self
            .containers
            .iter()
            .filter_map(|(id, entry)| entry.pidfd.as_ref().map(|fd| (id, fd)))
            .collect();
        let mut fds = vec![PollFd::from_borrowed_fd(socket, PollFlags::IN)];
        fds.extend(
            watched
                .iter()
                .map(|(_, fd)| PollFd::new(*fd, PollFlags::IN)),
        );
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok((false, Vec::new())),
            Err(e) => return Err(HelperError::Socket(e.into())),
        }
        let ready = |fd: &PollFd<'_>| !fd.revents().is_empty();
        let socket_ready = fds.first().is_some_and(ready);
        let exited = watched
            .iter()
            .zip(fds.iter().skip(1))
            .filter(|(_, fd)| ready(fd))
            .map(|((id, _), _)| (*id).clone())
            .collect();
        Ok((socket_ready, exited))
    }

    /// Collects the exit status of `id`'s main process and answers a pending wait.
    fn reap(&mut self, id: &str, socket: BorrowedFd<'_>) -> Result<(), HelperError> {
        let Some(entry) = self.containers.get_mut(id) else {
            return Ok(());
        };
        let Some(pidfd) = entry.pidfd.take() else {
            return Ok(());
        };
        let status = match wait_pidfd(&pidfd) {
            Ok(code) => ExitStatus {
                code,
                oom_kills: read_oom_kills(&entry.cgroups_path),
            },
            Err(err) => {
                eprintln!("rcompose container helper: reaping {id}: {err}");
                ExitStatus {
                    code: -1,
                    oom_kills: 0,
                }
            }
        };
        entry.exit = Some(status);
        if std::mem::take(&mut entry.waiting) {
            send_message(socket, &Reply::Exited { status }, &[]).map_err(HelperError::Socket)?;
        }
        Ok(())
    }

    /// `None` means the reply is deferred (a wait on a running container).
    fn handle(&mut self, request: Request, fds: Vec<OwnedFd>) -> Option<Reply> {
        let result = match request {
            Request::Create {
                id,
                container_dir,
                state_root,
                spec,
            } => match adapt_spec(*spec) {
                Ok(spec) => self.create(id, container_dir, &state_root, spec, fds),
                Err(message) => Err(message),
            },
            Request::Start { id } => self.start(&id),
            Request::Wait { id } => return self.wait(&id),
            Request::Kill { id, signal, all } => self.kill(&id, signal, all),
            Request::Delete { id, force } => self.delete(&id, force),
            Request::State { id } => self.state(&id),
        };
        Some(result.unwrap_or_else(|message| Reply::Error { message }))
    }

    fn entry(&mut self, id: &str) -> Result<&mut Entry, String> {
        self.containers
            .get_mut(id)
            .ok_or_else(|| format!("no such container: {id}"))
    }

    fn create(
        &mut self,
        id: String,
        container_dir: PathBuf,
        state_root: &Path,
        spec: Spec,
        fds: Vec<OwnedFd>,
    ) -> Result<Reply, String> {
        if self.containers.contains_key(&id) {
            return Err(format!("container {id} already exists"));
        }
        let [stdin, stdout, stderr]: [OwnedFd; 3] =
            fds.try_into().map_err(|fds: Vec<OwnedFd>| {
                format!("create {id}: expected 3 stdio fds, got {}", fds.len())
            })?;
        validate_spec(&id, &spec)?;
        let cgroups_path = spec_cgroups_path(&spec);
        fs::create_dir_all(state_root)
            .map_err(|e| format!("create {id}: creating {}: {e}", state_root.display()))?;
        // libcontainer only reads a bundle's config.json; there is no API taking a Spec.
        let config = container_dir.join("config.json");
        spec.save(&config)
            .map_err(|e| format!("create {id}: writing {}: {e}", config.display()))?;
        let container = build_container(&id, &container_dir, state_root, [stdin, stdout, stderr])
            .inspect_err(|_| remove_failed_container(&id, state_root))?;
        let pid = container.pid().map(|p| p.as_raw()).unwrap_or_default();
        // The init is our child and blocks before exec until start, so the pid is valid.
        let pidfd = Pid::from_raw(pid)
            .ok_or_else(|| format!("create {id}: libcontainer reported no pid"))
            .and_then(|p| {
                pidfd_open(p, PidfdFlags::empty())
                    .map_err(|e| format!("create {id}: pidfd_open: {e}"))
            })?;
        self.containers.insert(
            id,
            Entry {
                container,
                container_dir,
                cgroups_path,
                pidfd: Some(pidfd),
                exit: None,
                waiting: false,
            },
        );
        Ok(Reply::Created { pid })
    }

    fn start(&mut self, id: &str) -> Result<Reply, String> {
        let entry = self.entry(id)?;
        entry
            .container
            .start()
            .map_err(|e| format!("start {id}: {e}"))?;
        Ok(Reply::Done)
    }

    fn wait(&mut self, id: &str) -> Option<Reply> {
        match self.entry(id) {
            Err(message) => Some(Reply::Error { message }),
            Ok(entry) => match entry.exit {
                Some(status) => Some(Reply::Exited { status }),
                None if entry.waiting => Some(Reply::Error {
                    message: format!("wait {id}: a wait is already pending"),
                }),
                None => {
                    entry.waiting = true;
                    None
                }
            },
        }
    }

    fn kill(&mut self, id: &str, signal: i32, all: bool) -> Result<Reply, String> {
        let signal = Signal::try_from(signal).map_err(|e| format!("kill {id}: {e}"))?;
        let entry = self.entry(id)?;
        if entry.exit.is_some() {
            return Err(format!("kill {id}: the container is not running"));
        }
        entry
            .container
            .kill(signal, all)
            .map_err(|e| format!("kill {id}: {e}"))?;
        Ok(Reply::Done)
    }

    fn delete(&mut self, id: &str, force: bool) -> Result<Reply, String> {
        let entry = self.entry(id)?;
        if entry.exit.is_none() && !force {
            return Err(format!(
                "delete {id}: the container is still running (stop it, or force)"
            ));
        }
        let _ = entry.container.refresh_status();
        entry
            .container
            .delete(force)
            .map_err(|e| format!("delete {id}: {e}"))?;
        let container_dir = entry.container_dir.clone();
        let pidfd = entry.pidfd.take();
        self.containers.remove(id);
        // A forced delete killed the init; reap it so it is not left a zombie.
        if let Some(pidfd) = pidfd {
            let _ = wait_pidfd(&pidfd);
        }
        rootfs::teardown(&container_dir).map_err(|e| format!("delete {id}: {e}"))?;
        remove_container_dir(&container_dir).map_err(|e| format!("delete {id}: {e}"))?;
        Ok(Reply::Done)
    }

    fn state(&mut self, id: &str) -> Result<Reply, String> {
        let entry = self.entry(id)?;
        let _ = entry.container.refresh_status();
        let state = ContainerState {
            id: id.to_string(),
            state: state_of(entry.container.status()),
            pid: entry.container.pid().map(|p| p.as_raw()),
            exit: entry.exit,
        };
        Ok(Reply::State { state })
    }
}

/// Rewrites what libcontainer 0.7 does differently from runc.
///
/// - `noNewPrivileges: false` must become absent: libcontainer tests the field for
///   presence, not value, so `Some(false)` makes it load the seccomp filter after
///   dropping CAP_SYS_ADMIN, where loading fails ("failed to load seccomp context").
///   Absent means false in the OCI spec, so nothing changes for the container.
/// - On cgroup v1 hosts libcontainer mounts the controllers read-write whatever the
///   `cgroup` mount's `ro` says, which would let a container raise its own limits.
///   A read-only `cgroup` mount becomes a tmpfs plus read-only binds of the
///   container's own cgroup dirs (they exist before the init sets up mounts).
fn adapt_spec(mut spec: Spec) -> Result<Spec, String> {
    if let Some(process) = spec.process_mut() {
        if process.no_new_privileges() == Some(false) {
            process.set_no_new_privileges(None);
        }
    }
    if !host_has_unified_cgroups() {
        let cgroups_path = spec_cgroups_path(&spec);
        let controllers = v1_controllers(Path::new(CGROUP_ROOT));
        let mounts = spec.mounts().clone().unwrap_or_default();
        let mounts = read_only_v1_cgroup_mounts(mounts, &controllers, &cgroups_path)
            .map_err(|e| format!("adapting the cgroup mount: {e}"))?;
        spec.set_mounts(Some(mounts));
    }
    Ok(spec)
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Whether `/sys/fs/cgroup` is a cgroup2 mount (unified hierarchy only).
fn host_has_unified_cgroups() -> bool {
    const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
    rustix::fs::statfs(CGROUP_ROOT)
        .is_ok_and(|fs| u64::try_from(fs.f_type).is_ok_and(|t| t == CGROUP2_SUPER_MAGIC))
}

/// The v1 controller hierarchies libcontainer creates the container's cgroup in:
/// real dirs only (co-mount symlinks such as `cpu,cpuacct` point at them), without
/// the cgroup2 `unified` and the `name=systemd` hierarchies.
fn v1_controllers(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "unified" && name != "systemd")
        .collect();
    names.sort();
    names
}

fn spec_cgroups_path(spec: &Spec) -> String {
    spec.linux()
        .as_ref()
        .and_then(|linux| linux.cgroups_path().clone())
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Replaces a read-only `cgroup` mount by a tmpfs and one read-only bind per v1
/// controller; a writable one (privileged) is left alone.
fn read_only_v1_cgroup_mounts(
    mounts: Vec<Mount>,
    controllers: &[String],
    cgroups_path: &str,
) -> Result<Vec<Mount>, oci_spec::OciSpecError> {
    let mut out = Vec::with_capacity(mounts.len() + controllers.len() + 1);
    for mount in mounts {
        let is_cgroup = mount.typ().as_deref() == Some("cgroup");
        let read_only = mount
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|opt| opt == "ro"));
        if !(is_cgroup && read_only) {
            out.push(mount);
            continue;
        }
        let dest = mount.destination().clone();
        out.push(
            MountBuilder::default()
                .destination(&dest)
                .typ("tmpfs")
                .source("tmpfs")
                .options(strings(&[
                    "nosuid", "noexec", "nodev", "mode=755", "size=64k",
                ]))
                .build()?,
        );
        for controller in controllers {
            let source = Path::new(CGROUP_ROOT)
                .join(controller)
                .join(cgroups_path.trim_start_matches('/'));
            out.push(
                MountBuilder::default()
                    .destination(dest.join(controller))
                    .typ("bind")
                    .source(source)
                    .options(strings(&["rbind", "ro", "nosuid", "noexec", "nodev"]))
                    .build()?,
            );
        }
    }
    Ok(out)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Checks what libcontainer would otherwise trip over inside the init, where the
/// error can only surface as a broken channel.
fn validate_spec(id: &str, spec: &Spec) -> Result<(), String> {
    let has_args = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .is_some_and(|args| !args.is_empty());
    if !has_args {
        return Err(format!("create {id}: the spec has no process.args"));
    }
    let has_cgroups_path = spec
        .linux()
        .as_ref()
        .is_some_and(|linux| linux.cgroups_path().is_some());
    if !has_cgroups_path {
        return Err(format!(
            "create {id}: the spec has no linux.cgroupsPath (libcontainer would pick a systemd name)"
        ));
    }
    Ok(())
}

/// `runc create`: returns once the init waits to exec the process.
fn build_container(
    id: &str,
    bundle: &Path,
    state_root: &Path,
    [stdin, stdout, stderr]: [OwnedFd; 3],
) -> Result<Container, String> {
    let fail = |e: libcontainer::error::LibcontainerError| format!("create {id}: {e}");
    ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(state_root)
        .map_err(fail)?
        .with_stdin(stdin)
        .with_stdout(stdout)
        .with_stderr(stderr)
        .validate_id()
        .map_err(fail)?
        .as_init(bundle)
        // Its default is the systemd cgroup driver, which this crate is built without.
        .with_systemd(false)
        // Only affects the terminal check: a tty needs a console socket when detached.
        .with_detach(true)
        .build()
        .map_err(fail)
}

/// Best effort after a failed create: libcontainer may leave its state dir and
/// cgroups behind.
fn remove_failed_container(id: &str, state_root: &Path) {
    if let Ok(mut container) = Container::load(state_root.join(id)) {
        let _ = container.delete(true);
    }
    let _ = fs::remove_dir_all(state_root.join(id));
}

fn remove_container_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("removing {}: {e}", dir.display()),
        )),
        _ => Ok(()),
    }
}

fn state_of(status: ContainerStatus) -> State {
    match status {
        ContainerStatus::Creating => State::Creating,
        ContainerStatus::Created => State::Created,
        ContainerStatus::Running => State::Running,
        ContainerStatus::Paused => State::Paused,
        ContainerStatus::Stopped => State::Stopped,
    }
}

/// Reaps a child through its pidfd: its exit code, or 128 + signal as a shell shows it.
fn wait_pidfd(pidfd: &OwnedFd) -> io::Result<i32> {
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

/// The `oom_kill` counter of a container's memory cgroup: cgroup v1's
/// `memory.oom_control`, or v2's `memory.events`. 0 when neither can be read.
pub fn read_oom_kills(cgroups_path: &str) -> u64 {
    let relative = cgroups_path.trim_start_matches('/');
    let candidates = [
        Path::new("/sys/fs/cgroup/memory")
            .join(relative)
            .join("memory.oom_control"),
        Path::new("/sys/fs/cgroup")
            .join(relative)
            .join("memory.events"),
    ];
    candidates
        .iter()
        .find_map(|path| fs::read_to_string(path).ok())
        .and_then(|text| oom_kill_count(&text))
        .unwrap_or(0)
}

/// The `oom_kill N` line of a cgroup memory file.
fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_count_reads_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(oom_kill_count(v1), Some(2));
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v2), Some(1));
        assert_eq!(oom_kill_count("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn exit_status_reports_oom_like_docker() {
        let killed = ExitStatus {
            code: 137,
            oom_kills: 1,
        };
        assert!(killed.oom_killed());
        assert!(!ExitStatus {
            code: 137,
            oom_kills: 0
        }
        .oom_killed());
    }

    #[test]
    fn no_new_privileges_false_is_sent_as_absent() {
        let mut spec = Spec::default();
        if let Some(process) = spec.process_mut() {
            process.set_no_new_privileges(Some(false));
        }
        let adapted = adapt_spec(spec).unwrap();
        let nnp = adapted
            .process()
            .as_ref()
            .and_then(|p| p.no_new_privileges());
        assert_eq!(nnp, None);

        let mut spec = Spec::default();
        if let Some(process) = spec.process_mut() {
            process.set_no_new_privileges(Some(true));
        }
        let adapted = adapt_spec(spec).unwrap();
        let nnp = adapted
            .process()
            .as_ref()
            .and_then(|p| p.no_new_privileges());
        assert_eq!(nnp, Some(true));
    }

    fn cgroup_mount(options: &[&str]) -> Mount {
        MountBuilder::default()
            .destination("/sys/fs/cgroup")
            .typ("cgroup")
            .source("cgroup")
            .options(strings(options))
            .build()
            .unwrap()
    }

    #[test]
    fn read_only_cgroup_mount_becomes_read_only_binds_of_own_cgroup() {
        let proc_mount = MountBuilder::default()
            .destination("/proc")
            .typ("proc")
            .build()
            .unwrap();
        let mounts = vec![proc_mount, cgroup_mount(&["ro", "nosuid"])];
        let controllers = strings(&["memory", "pids"]);
        let out = read_only_v1_cgroup_mounts(mounts, &controllers, "/rcompose/p/web").unwrap();
        let summary: Vec<_> = out
            .iter()
            .map(|m| {
                (
                    m.destination().display().to_string(),
                    m.typ().clone().unwrap_or_default(),
                    m.source().as_ref().map(|s| s.display().to_string()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/proc".into(), "proc".into(), None),
                (
                    "/sys/fs/cgroup".into(),
                    "tmpfs".into(),
                    Some("tmpfs".into())
                ),
                (
                    "/sys/fs/cgroup/memory".into(),
                    "bind".into(),
                    Some("/sys/fs/cgroup/memory/rcompose/p/web".into())
                ),
                (
                    "/sys/fs/cgroup/pids".into(),
                    "bind".into(),
                    Some("/sys/fs/cgroup/pids/rcompose/p/web".into())
                ),
            ]
        );
        assert!(out.iter().skip(2).all(|m| m
            .options()
            .as_ref()
            .is_some_and(|o| o.contains(&"ro".to_string()))));
    }

    #[test]
    fn writable_cgroup_mount_of_privileged_containers_is_kept() {
        let mounts = vec![cgroup_mount(&["nosuid"])];
        let out = read_only_v1_cgroup_mounts(mounts.clone(), &strings(&["pids"]), "/x").unwrap();
        assert_eq!(out, mounts);
    }

    #[test]
    fn v1_controllers_skip_links_unified_and_systemd() {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["cpu", "memory", "unified", "systemd"] {
            fs::create_dir(tmp.path().join(dir)).unwrap();
        }
        std::os::unix::fs::symlink("cpu", tmp.path().join("cpuacct")).unwrap();
        assert_eq!(v1_controllers(tmp.path()), strings(&["cpu", "memory"]));
    }

    #[test]
    fn spec_without_args_or_cgroups_path_is_refused() {
        let mut spec = Spec::default();
        assert!(validate_spec("c", &spec)
            .unwrap_err()
            .contains("cgroupsPath"));
        if let Some(process) = spec.process_mut() {
            process.set_args(Some(vec![]));
        }
        assert!(validate_spec("c", &spec)
            .unwrap_err()
            .contains("process.args"));
    }

    #[test]
    fn requests_and_fds_cross_the_socket() {
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let devnull = fs::File::open("/dev/null").unwrap();
        let request = Request::Kill {
            id: "web-1".into(),
            signal: 15,
            all: true,
        };
        send_message(a.as_fd(), &request, &[devnull.as_fd()]).unwrap();
        let (got, fds) = recv_message::<Request>(b.as_fd()).unwrap().unwrap();
        assert!(matches!(got, Request::Kill { ref id, signal: 15, all: true } if id == "web-1"));
        assert_eq!(fds.len(), 1);
        drop(a);
        assert!(recv_message::<Request>(b.as_fd()).unwrap().is_none());
    }
}
