//! `rcompose down`: stops and removes the project's containers (dependents first),
//! then its networks, and with `-v` its volumes; never external resources. Goes past
//! every failure and reports them all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::bail;

use super::up::ProjectContext;
use super::GlobalOptions;
use crate::orchestrator::converge::{self, ConvergeOptions, ProgressEvent};
use crate::orchestrator::plan::{self, DownOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    /// Remove named volumes declared in the "volumes" section of the Compose file and
    /// anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Specify a shutdown timeout in seconds
    #[arg(short, long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

pub fn run(global: &GlobalOptions, args: &DownArgs) -> anyhow::Result<u8> {
    let context = ProjectContext::open(global, &[])?;
    let project = &context.project;
    let observed = context.engine.list(&project.name)?;
    let options = DownOptions {
        volumes: args.volumes,
        remove_orphans: args.remove_orphans,
    };
    let mut down_plan = plan::plan_down(project, &observed, options)?;
    // Services switched off by profiles are no orphans: their containers go too.
    for removal in &mut down_plan.containers {
        if context.inactive_services.contains(&removal.service) {
            removal.orphan = false;
        }
    }
    if !down_plan.orphans_left.is_empty() {
        let names: Vec<&str> = down_plan
            .orphans_left
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        eprintln!(
            "WARN[0000] Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            names.join(", ")
        );
    }
    let removed_any = AtomicBool::new(false);
    let print = context.progress();
    let progress = |event: ProgressEvent| {
        if event.status == "Removed" {
            removed_any.store(true, Ordering::Relaxed);
        }
        print(event);
    };
    let errors = converge::down(
        &context.engine,
        project,
        &down_plan,
        ConvergeOptions {
            parallel: context.parallel,
            timeout: args.timeout.map(Duration::from_secs),
        },
        &progress,
    );
    // With no container left, the project's supervisor cleans up and exits.
    crate::supervisor::reload_if_running(&global.root, &project.name);
    if errors.is_empty() && !removed_any.load(Ordering::Relaxed) {
        eprintln!(
            "WARN[0000] No resource found to remove for project {:?}.",
            project.name
        );
    }
    if !errors.is_empty() {
        bail!(
            "down left the project incomplete:\n  - {}",
            errors.join("\n  - ")
        );
    }
    Ok(0)
}
