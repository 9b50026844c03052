//! `rcompose start`, `stop` and `restart` on the project's existing containers.
//! (`create` is `up --no-start`: see [`super::up::run_create`].)

use std::time::Duration;

use anyhow::bail;

use super::up::ProjectContext;
use super::GlobalOptions;
use crate::orchestrator::converge::{self, ConvergeOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StopArgs {
    /// Specify a shutdown timeout in seconds
    #[arg(short, long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// The project, with the named services checked to exist.
fn open(global: &GlobalOptions, services: &[String]) -> anyhow::Result<ProjectContext> {
    let context = ProjectContext::open(global, services)?;
    if let Some(unknown) = services
        .iter()
        .find(|s| !context.project.services.contains_key(*s))
    {
        bail!("no such service: {unknown}");
    }
    Ok(context)
}

pub fn run_start(global: &GlobalOptions, args: &StartArgs) -> anyhow::Result<u8> {
    let context = open(global, &args.services)?;
    let observed = context.engine.list(&context.project.name)?;
    if observed.is_empty() {
        bail!(
            "project {}: no containers to start: run `rcompose up` first",
            context.project.name
        );
    }
    // As Compose: a named service must have been created.
    if let Some(service) = args
        .services
        .iter()
        .find(|s| !observed.iter().any(|c| c.service == **s))
    {
        bail!("service {service:?} has no container to start");
    }
    let progress = context.progress();
    converge::start_containers(
        &context.engine,
        &context.project,
        &observed,
        &args.services,
        &progress,
    )?;
    converge::after_converge(&context.root, &context.project)?;
    Ok(0)
}

pub fn run_stop(global: &GlobalOptions, args: &StopArgs) -> anyhow::Result<u8> {
    let context = open(global, &args.services)?;
    stop(&context, args)?;
    Ok(0)
}

fn stop(context: &ProjectContext, args: &StopArgs) -> anyhow::Result<()> {
    let observed = context.engine.list(&context.project.name)?;
    let progress = context.progress();
    converge::stop_containers(
        &context.engine,
        &context.project,
        &observed,
        &args.services,
        ConvergeOptions {
            parallel: context.parallel,
            timeout: args.timeout.map(Duration::from_secs),
            renew_anonymous_volumes: false,
        },
        &progress,
    )?;
    Ok(())
}

/// `restart`: stop (dependents first), then start (dependencies first).
pub fn run_restart(global: &GlobalOptions, args: &StopArgs) -> anyhow::Result<u8> {
    let context = open(global, &args.services)?;
    stop(&context, args)?;
    let observed = context.engine.list(&context.project.name)?;
    let progress = context.progress();
    converge::start_containers(
        &context.engine,
        &context.project,
        &observed,
        &args.services,
        &progress,
    )?;
    converge::after_converge(&context.root, &context.project)?;
    Ok(0)
}
