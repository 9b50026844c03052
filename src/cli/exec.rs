//! `rcompose exec SERVICE COMMAND [ARGS...]`: runs a command in a running replica,
//! as `docker compose exec` does, and exits with the command's exit code.
//!
//! On a terminal the command gets a pseudo-terminal (unless `-T`): ours is put in raw
//! mode and restored on exit, its size is given to the exec, and bytes are relayed both
//! ways. Without one, the command is handed this process's own stdin, stdout and
//! stderr, so nothing is copied.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{bail, Context};
use rcompose_runtime::container::lifecycle::{ExecOptions, ExecSession, LifecycleError};
use rustix::termios::{self, OptionalActions, Termios};

use super::ps::{open_engine, summaries, ContainerSummary, ProjectScope};
use super::GlobalOptions;
use crate::orchestrator::plan::ContainerState;

/// Docker's exit code when the command cannot be found.
const EXIT_NOT_FOUND: u8 = 127;
/// Docker's exit code when the command exists but cannot be run.
const EXIT_CANNOT_RUN: u8 = 126;

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Detached mode: Run command in the background
    #[arg(short, long)]
    detach: bool,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VAL")]
    env: Vec<String>,
    /// Disable pseudo-TTY allocation. By default a TTY is allocated when stdin is a terminal
    #[arg(short = 'T', long = "no-TTY")]
    no_tty: bool,
    /// Run the command as this user
    #[arg(short, long)]
    user: Option<String>,
    /// Path to workdir directory for this command
    #[arg(short, long)]
    workdir: Option<String>,
    /// Index of the container if service has multiple replicas
    #[arg(long, default_value_t = 1)]
    index: u32,
    #[arg(value_name = "SERVICE")]
    service: String,
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

pub fn run(global: &GlobalOptions, args: &ExecArgs) -> anyhow::Result<u8> {
    let scope = ProjectScope::find(global)?;
    scope.check_services(std::slice::from_ref(&args.service))?;
    let engine = open_engine(global)?;
    let containers = summaries(&engine, &global.root, &scope.name)?;
    let target = running_replica(&containers, &args.service, args.index)?;
    let tty = !args.no_tty && !args.detach && io::stdin().is_terminal();
    let mut options = ExecOptions {
        args: args.command.clone(),
        env: environment(&args.env, |key| std::env::var(key).ok()),
        user: args.user.clone(),
        working_dir: args.workdir.clone(),
        tty,
        ..ExecOptions::default()
    };
    if tty {
        options.console_size = terminal_size();
    } else if !args.detach {
        options.stdin = Some(own_stream(io::stdin().as_fd())?);
        options.stdout = Some(own_stream(io::stdout().as_fd())?);
        options.stderr = Some(own_stream(io::stderr().as_fd())?);
    }
    let session = match engine.runtime().exec(&target.id, options) {
        Ok(session) => session,
        Err(err) => return start_failure(&err),
    };
    if args.detach {
        return Ok(0);
    }
    let code = if tty {
        relay_terminal(session)?
    } else {
        session.wait().context("waiting for the command")?
    };
    Ok(exit_code(code))
}

/// Replica `index` of `service`, which must be running (Compose's message otherwise).
fn running_replica<'a>(
    containers: &'a [ContainerSummary],
    service: &str,
    index: u32,
) -> anyhow::Result<&'a ContainerSummary> {
    match containers.iter().find(|c| {
        c.service == service && c.number == Some(index) && c.state == ContainerState::Running
    }) {
        Some(container) => Ok(container),
        None => bail!("service {service:?} is not running container #{index}"),
    }
}

/// `-e KEY=VAL` as given; a bare `-e KEY` takes KEY from our environment and is
/// dropped when unset, as Docker does.
pub(super) fn environment(
    entries: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    entries
        .iter()
        .filter_map(|entry| {
            if entry.contains('=') {
                Some(entry.clone())
            } else {
                lookup(entry).map(|value| format!("{entry}={value}"))
            }
        })
        .collect()
}

pub(super) fn own_stream(fd: std::os::fd::BorrowedFd<'_>) -> anyhow::Result<OwnedFd> {
    fd.try_clone_to_owned()
        .context("duplicating a standard stream for the command")
}

/// Rows and columns of our terminal, if stdout is one.
pub(super) fn terminal_size() -> Option<(u32, u32)> {
    let size = termios::tcgetwinsize(io::stdout().as_fd()).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((u32::from(size.ws_row), u32::from(size.ws_col)))
}

/// The command could not be started: Docker's 127 when it does not exist, 126 else.
fn start_failure(err: &LifecycleError) -> anyhow::Result<u8> {
    let message = err.to_string();
    eprintln!("{message}");
    let lowered = message.to_ascii_lowercase();
    if lowered.contains("not found") || lowered.contains("no such file") {
        Ok(EXIT_NOT_FOUND)
    } else {
        Ok(EXIT_CANNOT_RUN)
    }
}

/// The exit status of a process (0..=255; anything else is a failure).
pub(super) fn exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(1)
}

/// Puts our terminal back as it was, however we leave.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// With `keep_signals`, Ctrl-C and Ctrl-\ still signal us (`run` forwards them
    /// to a container whose terminal is not its controlling one).
    fn enter(keep_signals: bool) -> io::Result<RawMode> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        if keep_signals {
            raw.local_modes |= termios::LocalModes::ISIG;
        }
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// Relays our terminal and the exec's pty until the command ends; its exit code.
fn relay_terminal(mut session: ExecSession) -> anyhow::Result<i32> {
    let master = session
        .pty_master
        .take()
        .context("the runtime gave no terminal for the command")?;
    relay_pty(master, false)?;
    session.wait().context("waiting for the command")
}

/// Relays our terminal (put in raw mode meanwhile) and a pty's master until every
/// process on the pty's side has closed it.
pub(super) fn relay_pty(master: OwnedFd, keep_signals: bool) -> anyhow::Result<()> {
    let mut to_command = File::from(master.try_clone().context("duplicating the terminal")?);
    let mut from_command = File::from(master);
    let raw = RawMode::enter(keep_signals).context("putting the terminal in raw mode")?;
    // Input is copied on its own thread: it blocks in read until the user types, and
    // dies with the process once the command has ended.
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut to_command);
    });
    copy_output(&mut from_command, &mut io::stdout().lock());
    drop(raw);
    Ok(())
}

/// Copies the pty's output until it closes (EIO once the command's side is gone).
fn copy_output(from: &mut File, to: &mut impl Write) {
    let mut buffer = [0u8; 8192];
    loop {
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if to
                    .write_all(&buffer[..n])
                    .and_then(|()| to.flush())
                    .is_err()
                {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::orchestrator::labels::Labels;

    fn replica(number: u32, state: ContainerState) -> ContainerSummary {
        ContainerSummary {
            id: format!("demo-web-{number}"),
            name: format!("demo-web-{number}"),
            project: "demo".into(),
            service: "web".into(),
            number: Some(number),
            image: "busybox".into(),
            command: String::new(),
            created: SystemTime::UNIX_EPOCH,
            state,
            started_at: None,
            finished_at: None,
            health: None,
            publishers: Vec::new(),
            networks: Vec::new(),
            labels: Labels::new(),
        }
    }

    #[test]
    fn only_a_running_replica_is_a_target() {
        let containers = [
            replica(1, ContainerState::Running),
            replica(2, ContainerState::Exited { exit_code: 0 }),
        ];
        assert_eq!(
            running_replica(&containers, "web", 1).unwrap().id,
            "demo-web-1"
        );
        assert_eq!(
            running_replica(&containers, "web", 2)
                .unwrap_err()
                .to_string(),
            "service \"web\" is not running container #2"
        );
        assert_eq!(
            running_replica(&containers, "db", 1)
                .unwrap_err()
                .to_string(),
            "service \"db\" is not running container #1"
        );
    }

    #[test]
    fn bare_env_names_come_from_our_environment() {
        let lookup = |key: &str| (key == "HOME").then(|| "/root".to_string());
        assert_eq!(
            environment(
                &["A=1".into(), "HOME".into(), "UNSET".into(), "B=".into()],
                lookup
            ),
            ["A=1", "HOME=/root", "B="]
        );
    }

    #[test]
    fn start_failures_map_to_docker_codes() {
        let missing =
            LifecycleError::Refused("exec demo-web-1: executable file not found in $PATH".into());
        assert_eq!(start_failure(&missing).unwrap(), EXIT_NOT_FOUND);
        let denied = LifecycleError::Refused("exec demo-web-1: permission denied".into());
        assert_eq!(start_failure(&denied).unwrap(), EXIT_CANNOT_RUN);
        assert_eq!(exit_code(3), 3);
        assert_eq!(exit_code(137), 137);
        assert_eq!(exit_code(-1), 1);
    }

    #[test]
    fn the_pty_output_is_copied_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"hello\r\n").unwrap();
        let mut out = Vec::new();
        copy_output(&mut File::open(&path).unwrap(), &mut out);
        assert_eq!(out, b"hello\r\n");
    }
}
