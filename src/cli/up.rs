//! `rcompose up` and `rcompose create` on the embedded engine: plan, check, make the
//! networks and volumes, converge the services along the dependency graph, then (without
//! `-d`) follow the started containers' logs until they have all exited or Ctrl-C.
//!
//! Ctrl-C is taken with `nix`'s `sigwait` on a thread of its own (SIGINT/SIGTERM
//! blocked from the start, in every thread), which needs no `unsafe` and no handler
//! crate: the first stops the containers gracefully (exit 0), a second kills them. A
//! Ctrl-C while converging waits, pending, until the containers are up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use indexmap::IndexMap;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use super::{GlobalOptions, Progress};
use crate::backend::native::resources::{self, NetworkPlan, VolumePlan};
use crate::backend::native::NativeEngine;
use crate::orchestrator::converge::{
    self, parallel_limit, ContainerEngine, ConvergeOptions, ProgressEvent, ResourceKind,
    ServiceContainer, SharedNative,
};
use crate::orchestrator::labels::ProjectLabels;
use crate::orchestrator::plan::{self, UpOptions};
use crate::project::discover::ConfigSource;
use crate::project::loader::{self, LoadSettings};
use crate::project::model::Project;
use crate::ui::logs::{LogFollow, LogSource, LogStyle, LogsOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Detached mode: run containers in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long)]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long)]
    pub no_recreate: bool,
    /// Don't start linked services
    #[arg(long)]
    pub no_deps: bool,
    /// Don't start the services after creating them
    #[arg(long)]
    pub no_start: bool,
    /// Scale SERVICE to NUM instances (overrides `scale` in the Compose file)
    #[arg(long = "scale", value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Shutdown timeout in seconds (when stopping or recreating containers)
    #[arg(short, long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Stop all containers if any container was stopped
    #[arg(long, conflicts_with = "detach")]
    pub abort_on_container_exit: bool,
    /// Return the exit code of the selected service container (implies
    /// --abort-on-container-exit)
    #[arg(long, value_name = "SERVICE", conflicts_with = "detach")]
    pub exit_code_from: Option<String>,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't prefix the log lines with the container name
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Show timestamps in the logs
    #[arg(long)]
    pub timestamps: bool,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long)]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long)]
    pub no_recreate: bool,
    /// Scale SERVICE to NUM instances
    #[arg(long = "scale", value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// A loaded project and the engine it runs on, as every project command needs them.
pub struct ProjectContext {
    pub project: Project,
    pub labels: ProjectLabels,
    pub inactive_services: Vec<String>,
    pub engine: SharedNative,
    pub root: PathBuf,
    pub quiet: bool,
    pub parallel: usize,
}

impl ProjectContext {
    pub fn open(global: &GlobalOptions, services: &[String]) -> anyhow::Result<ProjectContext> {
        let inputs = global.project_inputs()?;
        let settings = LoadSettings {
            targeted_services: services.to_vec(),
            ..LoadSettings::default()
        };
        let loaded = loader::load(&inputs, &settings)?;
        for warning in &loaded.warnings {
            eprintln!("WARN[0000] {warning}");
        }
        let labels = ProjectLabels {
            name: loaded.project.name.clone(),
            working_dir: inputs.project_directory.display().to_string(),
            config_files: inputs
                .files
                .iter()
                .filter_map(|f| match f {
                    ConfigSource::Path(path) => Some(path.display().to_string()),
                    _ => None,
                })
                .collect(),
            environment_files: inputs
                .env_files
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        };
        let program = Path::new("/proc/self/exe");
        let engine = NativeEngine::open(&global.root, program)
            .with_context(|| format!("opening the state root {}", global.root.display()))?;
        let env_limit = std::env::var("COMPOSE_PARALLEL_LIMIT").ok();
        Ok(ProjectContext {
            inactive_services: loaded.disabled_services.keys().cloned().collect(),
            project: loaded.project,
            labels,
            engine: SharedNative::new(engine, &global.root, program),
            root: global.root.clone(),
            quiet: global.progress == Progress::Quiet,
            parallel: parallel_limit(global.parallel, env_limit.as_deref()),
        })
    }

    /// Prints progress lines to stderr unless `--progress quiet`.
    pub fn progress(&self) -> impl Fn(ProgressEvent) + Sync {
        let quiet = self.quiet;
        move |event: ProgressEvent| {
            if !quiet {
                eprintln!("{event}");
            }
        }
    }
}

/// `--scale SERVICE=NUM` flags.
pub fn parse_scale(flags: &[String]) -> anyhow::Result<IndexMap<String, u32>> {
    flags
        .iter()
        .map(|flag| match flag.split_once('=') {
            Some((service, count)) if !service.is_empty() => count
                .trim()
                .parse::<u32>()
                .map(|n| (service.to_owned(), n))
                .with_context(|| {
                    format!("invalid --scale {flag:?}: the count must be a number from 0")
                }),
            _ => bail!("invalid --scale {flag:?}: expected SERVICE=NUM"),
        })
        .collect()
}

pub fn run(global: &GlobalOptions, args: &UpArgs) -> anyhow::Result<u8> {
    if let Some(service) = &args.exit_code_from {
        if !args.services.is_empty() && !args.services.contains(service) {
            bail!("--exit-code-from {service}: the service is not among those started");
        }
    }
    let attached = !args.detach && !args.no_start;
    if attached {
        // Before any thread exists, so that every thread inherits it and Ctrl-C waits,
        // pending, for the signal thread of the log follow. The processes started from
        // here (runtime helper, container monitors, supervisor) clear their mask.
        interrupt_signals().thread_block()?;
    }
    let context = ProjectContext::open(global, &args.services)?;
    if let Some(service) = &args.exit_code_from {
        if !context.project.services.contains_key(service) {
            bail!("--exit-code-from {service}: no such service: {service}");
        }
    }
    let options = UpOptions {
        services: args.services.clone(),
        no_deps: args.no_deps,
        force_recreate: args.force_recreate,
        no_recreate: args.no_recreate,
        always_recreate_deps: false,
        remove_orphans: args.remove_orphans,
        no_start: args.no_start,
        inactive_services: context.inactive_services.clone(),
    };
    let scale = parse_scale(&args.scale)?;
    let timeout = args.timeout.map(Duration::from_secs);
    let containers = converge_project(&context, &options, &scale, timeout)?;
    if !attached {
        return Ok(0);
    }
    let abort = args.abort_on_container_exit || args.exit_code_from.is_some();
    let attach = Attach {
        style: LogStyle::for_stdout(args.no_color, args.no_log_prefix, args.timestamps),
        abort,
        exit_code_from: args.exit_code_from.clone(),
        timeout,
    };
    follow_until_done(&context, &containers, &attach)
}

pub fn run_create(global: &GlobalOptions, args: &CreateArgs) -> anyhow::Result<u8> {
    let context = ProjectContext::open(global, &args.services)?;
    let options = UpOptions {
        services: args.services.clone(),
        force_recreate: args.force_recreate,
        no_recreate: args.no_recreate,
        remove_orphans: args.remove_orphans,
        no_start: true,
        inactive_services: context.inactive_services.clone(),
        ..UpOptions::default()
    };
    converge_project(&context, &options, &parse_scale(&args.scale)?, None)?;
    Ok(0)
}

/// Plan, check, networks and volumes, converge, then the supervisor's turn.
fn converge_project(
    context: &ProjectContext,
    options: &UpOptions,
    scale: &IndexMap<String, u32>,
    timeout: Option<Duration>,
) -> anyhow::Result<Vec<ServiceContainer>> {
    let project = &context.project;
    let desired = plan::desired_services(project, scale)?;
    let observed = context.engine.list(&project.name)?;
    let plan = plan::plan(&project.name, &desired, &observed, options)?;
    let planned: Vec<String> = plan.services.iter().map(|s| s.service.clone()).collect();
    context
        .engine
        .with_engine(|engine| engine.check_project(project, &planned))?;
    let progress = context.progress();
    ensure_resources(context, &progress)?;
    if !options.no_start {
        // Before any container starts: its DNS server must answer from the first query
        // (the supervisor adds each container's record as soon as it is connected).
        converge::after_converge(&context.root, project)?;
    }
    let outcome = converge::converge(
        &context.engine,
        project,
        &context.labels,
        &desired,
        &plan,
        ConvergeOptions {
            parallel: context.parallel,
            timeout,
        },
        &progress,
    )?;
    for warning in &outcome.warnings {
        eprintln!("WARN[0000] {warning}");
    }
    if !options.no_start {
        converge::after_converge(&context.root, project)?;
    }
    Ok(outcome.containers)
}

/// Creates the project's networks and volumes, printing `Created` for new ones.
fn ensure_resources(
    context: &ProjectContext,
    progress: &(dyn Fn(ProgressEvent) + Sync),
) -> anyhow::Result<()> {
    let project = &context.project;
    context.engine.with_engine(|engine| -> anyhow::Result<()> {
        let new_networks: Vec<String> = resources::network_plans(project)?
            .into_iter()
            .filter_map(|plan| match plan {
                NetworkPlan::Managed(options) => Some(options.name),
                NetworkPlan::External { .. } => None,
            })
            .filter(|name| engine.network_manager().inspect(name).is_err())
            .collect();
        let new_volumes: Vec<String> = resources::volume_plans(project)?
            .into_iter()
            .filter_map(|plan| match plan {
                VolumePlan::Managed { name, .. } => Some(name),
                VolumePlan::External { .. } => None,
            })
            .filter(|name| engine.volume_store().inspect(name).is_err())
            .collect();
        engine.ensure_networks(project)?;
        for name in new_networks {
            progress(event(ResourceKind::Network, &name, "Created"));
        }
        engine.ensure_volumes(project)?;
        for name in new_volumes {
            progress(event(ResourceKind::Volume, &name, "Created"));
        }
        Ok(())
    })
}

fn event(kind: ResourceKind, name: &str, status: &str) -> ProgressEvent {
    ProgressEvent {
        kind,
        name: name.to_owned(),
        status: status.to_owned(),
    }
}

fn interrupt_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// Attached `up`'s flags.
struct Attach {
    style: LogStyle,
    abort: bool,
    exit_code_from: Option<String>,
    timeout: Option<Duration>,
}

/// The name in a log prefix: the container name without `<project>-`, as Compose shows it.
pub fn display_name(project: &str, id: &str) -> String {
    id.strip_prefix(project)
        .and_then(|rest| rest.strip_prefix('-'))
        .unwrap_or(id)
        .to_owned()
}

/// Follows the containers' logs until all have exited (or, with `abort`, one has), or
/// Ctrl-C stopped them. The exit code: 0, or `--exit-code-from`'s container's.
fn follow_until_done(
    context: &ProjectContext,
    containers: &[ServiceContainer],
    attach: &Attach,
) -> anyhow::Result<u8> {
    // Already blocked since `run` began (a no-op then); only the signal thread takes
    // Ctrl-C.
    interrupt_signals().thread_block()?;
    let project = context.project.name.as_str();
    let sources: Vec<LogSource> = containers
        .iter()
        .map(|c| LogSource::new(display_name(project, &c.id), context.engine.log_path(&c.id)))
        .collect();
    let options = LogsOptions {
        style: attach.style,
        ..LogsOptions::default()
    };
    let (follow, handle) = LogFollow::new(sources, &options, std::io::stdout(), |err| {
        eprintln!("WARN[0000] {err}")
    })?;
    let remaining = AtomicUsize::new(containers.len());
    let exit_code: Mutex<Option<i32>> = Mutex::new(None);
    let aborted = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let engine = &context.engine;
    let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
    // All at once: a container ignoring SIGTERM costs its timeout, not the sum.
    let stop_all = |kill: bool| {
        std::thread::scope(|scope| {
            for id in &ids {
                scope.spawn(move || {
                    let _ = if kill {
                        engine.kill(id)
                    } else {
                        engine.stop(id, attach.timeout)
                    };
                });
            }
        });
    };
    if containers.is_empty() {
        handle.stop();
    }
    let result = std::thread::scope(|scope| {
        let follower = scope.spawn(move || follow.run());
        for container in containers {
            let (handle, remaining, exit_code, aborted, stop_all) =
                (&handle, &remaining, &exit_code, &aborted, &stop_all);
            let name = display_name(project, &container.id);
            scope.spawn(move || {
                let code = engine.wait_exit(&container.id).unwrap_or(-1);
                handle.status(name, format!("exited with code {code}"));
                let wanted = attach
                    .exit_code_from
                    .as_ref()
                    .is_none_or(|service| *service == container.service);
                if wanted {
                    let mut slot = exit_code.lock().unwrap_or_else(|e| e.into_inner());
                    slot.get_or_insert(code);
                }
                if attach.abort && !aborted.swap(true, Ordering::SeqCst) {
                    eprintln!("Aborting on container exit...");
                    stop_all(false);
                }
                if remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                    handle.stop();
                }
            });
        }
        let (done, stop_all) = (&done, &stop_all);
        let waiter = scope.spawn(move || wait_for_interrupts(scope, done, stop_all));
        let summary = follower.join();
        // The signal thread sits in `sigwait`: one more signal, to the process, lets
        // it see that the follow is over.
        done.store(true, Ordering::SeqCst);
        let _ = kill(Pid::this(), Signal::SIGTERM);
        let _ = waiter.join();
        summary
    });
    match result {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => return Err(err.into()),
        Err(_) => bail!("the log follower stopped unexpectedly"),
    }
    let code = exit_code.into_inner().unwrap_or_else(|e| e.into_inner());
    // `--exit-code-from`: that service's code; `--abort-on-container-exit`: the code of
    // the container that ended the run, as Compose returns them.
    match code {
        Some(code) if attach.abort => Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
        _ => Ok(0),
    }
}

/// Ctrl-C (or SIGTERM): the first stops the containers gracefully, the next kill them.
fn wait_for_interrupts<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    done: &AtomicBool,
    stop_all: &'scope (dyn Fn(bool) + Sync),
) {
    let set = interrupt_signals();
    let mut presses = 0;
    while set.wait().is_ok() && !done.load(Ordering::SeqCst) {
        presses += 1;
        if presses == 1 {
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            // On its own thread, so that a second Ctrl-C is heard while it waits.
            scope.spawn(move || stop_all(false));
        } else {
            stop_all(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_flags_are_service_equals_count() {
        let scale = parse_scale(&["web=3".into(), "db=0".into()]).unwrap();
        assert_eq!(scale["web"], 3);
        assert_eq!(scale["db"], 0);
        assert_eq!(
            parse_scale(&["web".into()]).unwrap_err().to_string(),
            "invalid --scale \"web\": expected SERVICE=NUM"
        );
        assert_eq!(
            parse_scale(&["web=-1".into()]).unwrap_err().to_string(),
            "invalid --scale \"web=-1\": the count must be a number from 0"
        );
    }

    #[test]
    fn log_prefixes_drop_the_project_name() {
        assert_eq!(display_name("demo", "demo-web-1"), "web-1");
        assert_eq!(display_name("demo", "the-db"), "the-db");
        assert_eq!(display_name("demo", "demonstration-1"), "demonstration-1");
    }
}
