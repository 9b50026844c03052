//! `rcompose pause` and `unpause`: freeze and thaw every process of the project's
//! service containers (cgroup freezer), as `docker compose pause`/`unpause` do. `ps`
//! shows a frozen container as `paused`; `stop`, `kill` and `down` thaw it first.

use super::containers::{container_event, fail_on, is_declared, is_up, of_services, open_project};
use super::GlobalOptions;
use crate::orchestrator::plan::{ContainerState, ObservedContainer};

#[derive(Debug, Clone, clap::Args)]
pub struct PauseArgs {
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// Which way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freeze {
    Pause,
    Unpause,
}

impl Freeze {
    fn command(self) -> &'static str {
        match self {
            Freeze::Pause => "pause",
            Freeze::Unpause => "unpause",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Freeze::Pause => "Paused",
            Freeze::Unpause => "Unpaused",
        }
    }

    /// Docker's refusal for a container already as asked, else `None`.
    fn refusal(self, container: &ObservedContainer) -> Option<String> {
        match (self, &container.state) {
            (Freeze::Pause, ContainerState::Paused) => {
                Some(format!("container {} is already paused", container.name))
            }
            (Freeze::Unpause, state) if *state != ContainerState::Paused => {
                Some(format!("container {} is not paused", container.name))
            }
            _ => None,
        }
    }
}

pub fn run_pause(global: &GlobalOptions, args: &PauseArgs) -> anyhow::Result<u8> {
    freeze_all(global, args, Freeze::Pause)
}

pub fn run_unpause(global: &GlobalOptions, args: &PauseArgs) -> anyhow::Result<u8> {
    freeze_all(global, args, Freeze::Unpause)
}

/// The running (or paused) service containers of the named services, one-off ones
/// left out as Compose leaves them; nothing to do is no error.
fn freeze_all(global: &GlobalOptions, args: &PauseArgs, way: Freeze) -> anyhow::Result<u8> {
    let context = open_project(global, &args.services)?;
    let observed = context.engine.list(&context.project.name)?;
    let targets: Vec<&ObservedContainer> = of_services(&observed, &args.services)
        .into_iter()
        .filter(|c| !c.oneoff && is_up(&c.state) && is_declared(&context, &c.service))
        .collect();
    let progress = context.progress();
    let mut errors = Vec::new();
    for container in targets {
        if let Some(refusal) = way.refusal(container) {
            errors.push(refusal);
            continue;
        }
        let done = context.engine.with_engine(|engine| match way {
            Freeze::Pause => engine.runtime().pause(&container.id),
            Freeze::Unpause => engine.runtime().resume(&container.id),
        });
        match done {
            Ok(()) => progress(container_event(&container.name, way.done())),
            Err(err) => errors.push(format!("container {}: {err}", container.name)),
        }
    }
    context.display.finish();
    fail_on(way.command(), errors)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::labels::{self, Labels};

    fn container(state: ContainerState) -> ObservedContainer {
        let labels: Labels = [
            (labels::PROJECT, "demo"),
            (labels::SERVICE, "web"),
            (labels::CONTAINER_NUMBER, "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        ObservedContainer::from_labels("demo-web-1", "demo-web-1", state, labels).unwrap()
    }

    #[test]
    fn pausing_twice_or_unpausing_a_running_container_is_refused() {
        let running = container(ContainerState::Running);
        let paused = container(ContainerState::Paused);
        assert_eq!(Freeze::Pause.refusal(&running), None);
        assert_eq!(
            Freeze::Pause.refusal(&paused).as_deref(),
            Some("container demo-web-1 is already paused")
        );
        assert_eq!(Freeze::Unpause.refusal(&paused), None);
        assert_eq!(
            Freeze::Unpause.refusal(&running).as_deref(),
            Some("container demo-web-1 is not paused")
        );
        assert_eq!(Freeze::Unpause.done(), "Unpaused");
    }
}
