//! `rcompose rm`: removes the project's stopped containers (one-off ones included), as
//! `docker compose rm` does: it names them and asks first unless `-f`; `-s` stops the
//! running ones before, `-v` takes their anonymous volumes along.

use super::common::confirm;
use super::containers::{fail_on, is_declared, is_up, of_services, open_project};
use super::up::ProjectContext;
use super::GlobalOptions;
use crate::orchestrator::converge::{self, ConvergeOptions};
use crate::orchestrator::plan::ObservedContainer;

#[derive(Debug, Clone, clap::Args)]
pub struct RemoveArgs {
    /// Don't ask to confirm removal
    #[arg(short, long)]
    pub force: bool,
    /// Stop the containers, if required, before removing
    #[arg(short, long)]
    pub stop: bool,
    /// Remove any anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    /// Deprecated - no effect
    #[arg(short, long, hide = true)]
    pub all: bool,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub fn run(global: &GlobalOptions, args: &RemoveArgs) -> anyhow::Result<u8> {
    let context = open_project(global, &args.services)?;
    if args.stop {
        stop_first(&context, &args.services)?;
    }
    let observed = context.engine.list(&context.project.name)?;
    let stopped = stopped_containers(&context, &observed, &args.services);
    if stopped.is_empty() {
        eprintln!("No stopped containers");
        return Ok(0);
    }
    let names: Vec<&str> = stopped.iter().map(|c| c.name.as_str()).collect();
    let message = format!("Going to remove {}", names.join(", "));
    if args.force {
        println!("{message}");
    } else if !confirm(&format!("{message}\nAre you sure? [yN] "))? {
        return Ok(0);
    }
    let progress = context.progress();
    let errors = converge::remove_containers(
        &context.engine,
        &stopped,
        args.volumes,
        context.parallel,
        &progress,
    );
    context.display.finish();
    // The supervisor forgets the removed containers (and exits with the last one).
    crate::supervisor::reload_if_running(&global.root, &context.project.name);
    fail_on("rm", errors)?;
    Ok(0)
}

/// `-s`: the running service containers of `services` are stopped, dependents first.
fn stop_first(context: &ProjectContext, services: &[String]) -> anyhow::Result<()> {
    let observed = context.engine.list(&context.project.name)?;
    let progress = context.progress();
    converge::stop_containers(
        &context.engine,
        &context.project,
        &observed,
        services,
        ConvergeOptions {
            parallel: context.parallel,
            timeout: None,
            renew_anonymous_volumes: false,
        },
        &progress,
    )?;
    Ok(())
}

/// The project's containers of `services` that are not running (created, exited,
/// dead), one-off ones included; containers of services the project does not declare
/// are left alone, as Compose leaves them.
fn stopped_containers<'a>(
    context: &ProjectContext,
    observed: &'a [ObservedContainer],
    services: &[String],
) -> Vec<&'a ObservedContainer> {
    of_services(observed, services)
        .into_iter()
        .filter(|c| is_declared(context, &c.service) && !is_up(&c.state))
        .collect()
}
