//! `rcompose kill`: a signal (SIGKILL unless `-s`) to the project's running containers,
//! as `docker compose kill` sends it.
//!
//! As Docker's daemon does, a kill counts as a stop by the user, whatever the signal:
//! restart policies leave the container alone until it is started again. A paused
//! container is thawed for a signal meant to end it (SIGKILL, or its stop signal, or
//! any signal when it has none), so that it acts on it; another signal waits, pending,
//! until it is unpaused. After SIGKILL the command waits until the container has exited.

use anyhow::Context;
use rcompose_runtime::container::lifecycle::Runtime;

use super::containers::{container_event, fail_on, is_declared, is_up, of_services, open_project};
use super::up::ProjectContext;
use super::GlobalOptions;
use crate::backend::native::signal::signal_number;
use crate::orchestrator::plan::{ContainerState, ObservedContainer};

const SIGKILL: i32 = 9;

#[derive(Debug, Clone, clap::Args)]
pub struct KillArgs {
    /// Also kill the containers of services not defined in the Compose file (Compose's
    /// name for it)
    #[arg(long)]
    pub remove_orphans: bool,
    /// SIGNAL to send to the container (a name like SIGTERM or HUP, or a number)
    #[arg(short, long, default_value = "SIGKILL")]
    pub signal: String,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub fn run(global: &GlobalOptions, args: &KillArgs) -> anyhow::Result<u8> {
    let signal = parse_signal(&args.signal)?;
    let context = open_project(global, &args.services)?;
    let observed = context.engine.list(&context.project.name)?;
    let targets: Vec<&ObservedContainer> = of_services(&observed, &args.services)
        .into_iter()
        .filter(|c| is_up(&c.state) && (args.remove_orphans || is_declared(&context, &c.service)))
        .collect();
    if targets.is_empty() {
        eprintln!("No container to kill");
        return Ok(0);
    }
    let progress = context.progress();
    let mut errors = Vec::new();
    for container in targets {
        progress(container_event(&container.name, "Killing"));
        match kill_one(&context, container, signal) {
            Ok(()) => progress(container_event(&container.name, "Killed")),
            Err(err) => {
                progress(container_event(&container.name, "Error"));
                errors.push(format!("container {}: {err:#}", container.name));
            }
        }
    }
    context.display.finish();
    fail_on("kill", errors)?;
    Ok(0)
}

/// A signal name (`SIGHUP`, `hup`) or number, as `docker kill -s` takes it.
fn parse_signal(text: &str) -> anyhow::Result<i32> {
    signal_number(text).with_context(|| {
        format!("invalid signal {text:?}: use a name like SIGTERM or HUP, or a number from 1 to 64")
    })
}

fn kill_one(
    context: &ProjectContext,
    container: &ObservedContainer,
    signal: i32,
) -> anyhow::Result<()> {
    crate::supervisor::mark_stopped_by_user(&context.root, &context.project.name, &container.id)
        .context("telling the project's supervisor")?;
    context.engine.with_engine(|engine| {
        let runtime = engine.runtime();
        let paused = container.state == ContainerState::Paused;
        let thaw = paused && thaws(runtime, &container.id, signal);
        if thaw {
            // Thawed first, as the runtime's stop does: a frozen process cannot act on
            // the signal.
            runtime.resume(&container.id)?;
        }
        runtime.kill(&container.id, signal, false)?;
        if paused && !thaw {
            // Docker leaves it paused, the signal pending. The runtime forgets the
            // pause on a kill (the cgroup stays frozen): record it again.
            runtime.pause(&container.id)?;
        }
        if signal == SIGKILL {
            runtime.wait(&container.id)?;
        }
        Ok(())
    })
}

/// Whether Docker thaws a paused container after `signal`: when the signal is meant to
/// end it.
fn thaws(runtime: &Runtime, id: &str, signal: i32) -> bool {
    let stop_signal = runtime
        .inspect(id)
        .ok()
        .and_then(|record| record.config.stop_signal);
    ends_the_container(signal, stop_signal.as_deref())
}

fn ends_the_container(signal: i32, stop_signal: Option<&str>) -> bool {
    match stop_signal.and_then(signal_number) {
        Some(stop) => signal == SIGKILL || signal == stop,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("hup").unwrap(), 1);
        assert_eq!(parse_signal("15").unwrap(), 15);
        assert_eq!(
            parse_signal("SIGNOPE").unwrap_err().to_string(),
            "invalid signal \"SIGNOPE\": use a name like SIGTERM or HUP, or a number from 1 to 64"
        );
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn a_paused_container_is_thawed_for_the_signals_that_end_it() {
        assert!(ends_the_container(9, None));
        assert!(ends_the_container(1, None));
        assert!(ends_the_container(9, Some("SIGUSR1")));
        assert!(ends_the_container(10, Some("SIGUSR1")));
        assert!(!ends_the_container(15, Some("SIGUSR1")));
    }
}
