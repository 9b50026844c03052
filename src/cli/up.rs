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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indexmap::IndexMap;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use super::pull::{pull_before_up, PullFlag, UpPull};
use super::{GlobalOptions, Progress};
use crate::backend::native::resources::{self, NetworkPlan, VolumePlan};
use crate::backend::native::NativeEngine;
use crate::orchestrator::converge::{
    self, parallel_limit, ContainerEngine, ConvergeOptions, ProgressEvent, ResourceKind,
    ServiceContainer, SharedNative,
};
use crate::orchestrator::health::HealthStatus;
use crate::orchestrator::labels::ProjectLabels;
use crate::orchestrator::plan::{self, ContainerState, UpOptions};
use crate::project::discover::{ConfigSource, ProjectInputs};
use crate::project::loader::{self, LoadSettings, Loaded};
use crate::project::model::Project;
use crate::ui::logs::{LogFollow, LogSource, LogStyle, LogsOptions};
use crate::ui::progress::{ProgressDisplay, ProgressMode};

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
    /// Stop all containers if any container exited with failure; its exit code is
    /// returned
    #[arg(long, conflicts_with_all = ["detach", "abort_on_container_exit"])]
    pub abort_on_container_failure: bool,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't prefix the log lines with the container name
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Show timestamps in the logs
    #[arg(long)]
    pub timestamps: bool,
    /// Wait for services to be running|healthy. Implies detached mode.
    #[arg(long, conflicts_with_all = ["abort_on_container_exit", "abort_on_container_failure", "exit_code_from"])]
    pub wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy
    #[arg(long, value_name = "SECONDS")]
    pub wait_timeout: Option<u64>,
    /// Restrict attaching to the specified services (repeatable)
    #[arg(long, value_name = "SERVICE", conflicts_with = "no_attach")]
    pub attach: Vec<String>,
    /// Do not attach (stream logs) to the specified services (repeatable)
    #[arg(long, value_name = "SERVICE")]
    pub no_attach: Vec<String>,
    /// Recreate anonymous volumes instead of retrieving data from the previous containers
    #[arg(short = 'V', long)]
    pub renew_anon_volumes: bool,
    /// Pull image before running ("always"|"missing"|"never"; default: each
    /// service's pull_policy)
    #[arg(long, value_enum, value_name = "POLICY")]
    pub pull: Option<PullFlag>,
    /// Pull without printing progress information
    #[arg(long)]
    pub quiet_pull: bool,
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
    /// Pull image before running ("always"|"missing"|"never"; default: each
    /// service's pull_policy)
    #[arg(long, value_enum, value_name = "POLICY")]
    pub pull: Option<PullFlag>,
    /// Pull without printing progress information
    #[arg(long)]
    pub quiet_pull: bool,
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
    pub display: Arc<ProgressDisplay>,
    pub parallel: usize,
}

/// Loads the project as Compose's service commands do (the named services enable
/// their profiles), printing the loader's warnings.
pub(super) fn load_targeted(inputs: &ProjectInputs, services: &[String]) -> anyhow::Result<Loaded> {
    let settings = LoadSettings {
        targeted_services: services.to_vec(),
        ..LoadSettings::default()
    };
    let loaded = loader::load(inputs, &settings)?;
    for warning in &loaded.warnings {
        eprintln!("WARN[0000] {warning}");
    }
    Ok(loaded)
}

impl ProjectContext {
    pub fn open(global: &GlobalOptions, services: &[String]) -> anyhow::Result<ProjectContext> {
        let inputs = global.project_inputs()?;
        let loaded = load_targeted(&inputs, services)?;
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
            engine: SharedNative::new(engine, &global.root),
            root: global.root.clone(),
            display: Arc::new(ProgressDisplay::new(progress_mode(global.progress))),
            parallel: parallel_limit(global.parallel, env_limit.as_deref()),
        })
    }

    /// Shows progress on stderr as `--progress` asks.
    pub fn progress(&self) -> impl Fn(ProgressEvent) + Sync {
        let display = Arc::clone(&self.display);
        move |event: ProgressEvent| display.event(event)
    }
}

/// `--progress` as a display mode: `auto` (and `tty`) draw in place only on a terminal.
pub(super) fn progress_mode(progress: Progress) -> ProgressMode {
    let requested = match progress {
        Progress::Auto => None,
        Progress::Tty => Some(ProgressMode::Tty),
        Progress::Plain => Some(ProgressMode::Plain),
        Progress::Json => Some(ProgressMode::Json),
        Progress::Quiet => Some(ProgressMode::Quiet),
    };
    ProgressMode::choose(requested, console::Term::stderr().is_term())
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
    // `--wait` returns once the services are up: it implies `-d`.
    let attached = !args.detach && !args.wait && !args.no_start;
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
    for (flag, services) in [("--attach", &args.attach), ("--no-attach", &args.no_attach)] {
        if let Some(unknown) = services
            .iter()
            .find(|s| !context.project.services.contains_key(*s))
        {
            bail!("{flag} {unknown}: no such service: {unknown}");
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
    let converge_options = ConvergeOptions {
        parallel: context.parallel,
        timeout,
        renew_anonymous_volumes: args.renew_anon_volumes,
    };
    let pull = UpPull {
        forced: args.pull.map(PullFlag::policy),
        quiet: args.quiet_pull,
    };
    let containers = converge_project(global, &context, &options, &scale, converge_options, pull)?;
    if args.wait && !args.no_start {
        let limit = args.wait_timeout.map(Duration::from_secs);
        wait_until_ready(&context, &containers, limit)?;
    }
    // The tty display ends here: the logs, if any, come next.
    context.display.finish();
    if !attached {
        return Ok(0);
    }
    let abort = args.abort_on_container_exit || args.exit_code_from.is_some();
    let attach = Attach {
        style: LogStyle::for_stdout(args.no_color, args.no_log_prefix, args.timestamps),
        abort,
        abort_on_failure: args.abort_on_container_failure,
        exit_code_from: args.exit_code_from.clone(),
        timeout,
        logs_of: attached_services(&context.project, &args.attach, &args.no_attach),
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
    let converge_options = ConvergeOptions {
        parallel: context.parallel,
        timeout: None,
        renew_anonymous_volumes: false,
    };
    let pull = UpPull {
        forced: args.pull.map(PullFlag::policy),
        quiet: args.quiet_pull,
    };
    converge_project(
        global,
        &context,
        &options,
        &parse_scale(&args.scale)?,
        converge_options,
        pull,
    )?;
    Ok(0)
}

/// Plan, pull, check, networks and volumes, converge, then the supervisor's turn.
fn converge_project(
    global: &GlobalOptions,
    context: &ProjectContext,
    options: &UpOptions,
    scale: &IndexMap<String, u32>,
    converge_options: ConvergeOptions,
    pull: UpPull,
) -> anyhow::Result<Vec<ServiceContainer>> {
    converge_project_without(
        global,
        context,
        options,
        scale,
        converge_options,
        pull,
        None,
    )
}

/// [`converge_project`], with `left_out` (`run`'s service, which gets a one-off
/// container instead) taken out of the plan: its dependencies are converged alone.
pub(super) fn converge_project_without(
    global: &GlobalOptions,
    context: &ProjectContext,
    options: &UpOptions,
    scale: &IndexMap<String, u32>,
    converge_options: ConvergeOptions,
    pull: UpPull,
    left_out: Option<&str>,
) -> anyhow::Result<Vec<ServiceContainer>> {
    let project = &context.project;
    let desired = plan::desired_services(project, scale)?;
    let observed = context.engine.list(&project.name)?;
    let mut plan = plan::plan(&project.name, &desired, &observed, options)?;
    plan.services
        .retain(|s| Some(s.service.as_str()) != left_out);
    let planned: Vec<String> = plan.services.iter().map(|s| s.service.clone()).collect();
    // An empty list means every service to both; `run` without dependencies has none.
    if !planned.is_empty() || left_out.is_none() {
        // Before the check, which refuses a missing image; nothing is created yet.
        pull_before_up(global, project, &planned, pull, &context.display)?;
        context
            .engine
            .with_engine(|engine| engine.check_project(project, &planned))?;
    }
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
        converge_options,
        &progress,
    )?;
    for warning in &outcome.warnings {
        context.display.message(&format!("WARN[0000] {warning}"));
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

/// What `up --wait` makes of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Readiness {
    /// Done waiting; the status to show (`Healthy`, or `Exited` for a one-shot).
    Ready(&'static str),
    /// Not yet; what it is doing meanwhile.
    Pending(&'static str),
    /// `up --wait` fails with this.
    Failed(String),
}

/// As Compose's `up --wait`: a container is ready when running (healthy, when it has a
/// healthcheck); a one-shot that exited 0 is done, one that exited otherwise or
/// turned unhealthy fails the wait.
fn readiness(
    name: &str,
    state: &ContainerState,
    has_healthcheck: bool,
    health: Option<HealthStatus>,
) -> Readiness {
    match state {
        ContainerState::Exited { exit_code: 0 } => Readiness::Ready("Exited"),
        ContainerState::Exited { exit_code } => {
            Readiness::Failed(format!("container {name} exited ({exit_code})"))
        }
        ContainerState::Dead => Readiness::Failed(format!("container {name} is dead")),
        ContainerState::Running if !has_healthcheck => Readiness::Ready("Healthy"),
        ContainerState::Running => match health {
            Some(HealthStatus::Healthy) => Readiness::Ready("Healthy"),
            Some(HealthStatus::Unhealthy) => {
                Readiness::Failed(format!("container {name} is unhealthy"))
            }
            Some(HealthStatus::Starting) | None => Readiness::Pending("starting"),
        },
        other => Readiness::Pending(other.as_str()),
    }
}

/// `up --wait`: polls the started containers until every one is ready, one fails, or
/// `limit` has passed.
fn wait_until_ready(
    context: &ProjectContext,
    containers: &[ServiceContainer],
    limit: Option<Duration>,
) -> anyhow::Result<()> {
    let project = &context.project;
    let policies = crate::supervisor::ServicePolicies::from_project(project)?;
    let progress = context.progress();
    let deadline = limit.map(|limit| Instant::now() + limit);
    let mut waiting: Vec<&ServiceContainer> = containers.iter().collect();
    for container in &waiting {
        progress(event(ResourceKind::Container, &container.id, "Waiting"));
    }
    loop {
        let observed = context.engine.list(&project.name)?;
        let mut still = Vec::new();
        for container in waiting {
            let verdict = match observed.iter().find(|c| c.id == container.id) {
                None => Readiness::Failed(format!("container {} is gone", container.id)),
                Some(found) => readiness(
                    &found.name,
                    &found.state,
                    policies.health(&container.service).is_some(),
                    crate::supervisor::read_health(&context.root, &project.name, &container.id)
                        .map(|h| h.status),
                ),
            };
            match verdict {
                Readiness::Ready(status) => {
                    progress(event(ResourceKind::Container, &container.id, status));
                }
                Readiness::Pending(doing) => still.push((container, doing)),
                Readiness::Failed(reason) => {
                    progress(event(ResourceKind::Container, &container.id, "Error"));
                    bail!("{reason}");
                }
            }
        }
        let Some(&(first, doing)) = still.first() else {
            return Ok(());
        };
        if let (Some(deadline), Some(limit)) = (deadline, limit) {
            if Instant::now() >= deadline {
                bail!(
                    "application not ready after {}s: container {} is still {doing}",
                    limit.as_secs(),
                    first.id
                );
            }
        }
        waiting = still.into_iter().map(|(c, _)| c).collect();
        std::thread::sleep(Duration::from_millis(100));
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
    /// `--abort-on-container-failure`: abort only on a non-zero exit.
    abort_on_failure: bool,
    exit_code_from: Option<String>,
    timeout: Option<Duration>,
    /// `--attach`/`--no-attach`: the services whose logs are shown.
    logs_of: Vec<String>,
}

/// The services attached `up` shows the logs of: those of `--attach`, else every
/// service but those of `--no-attach`.
fn attached_services(project: &Project, attach: &[String], no_attach: &[String]) -> Vec<String> {
    if !attach.is_empty() {
        return attach.to_vec();
    }
    project
        .services
        .keys()
        .filter(|s| !no_attach.contains(s))
        .cloned()
        .collect()
}

/// The containers attached `up` waits for: those it shows the logs of, as Compose
/// watches only its attached services (all of them when none is attached).
fn watched_containers<'a>(
    containers: &'a [ServiceContainer],
    logs_of: &[String],
) -> Vec<&'a ServiceContainer> {
    let attached: Vec<&ServiceContainer> = containers
        .iter()
        .filter(|c| logs_of.contains(&c.service))
        .collect();
    if attached.is_empty() {
        containers.iter().collect()
    } else {
        attached
    }
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
    let watched = watched_containers(containers, &attach.logs_of);
    let sources: Vec<LogSource> = containers
        .iter()
        .filter(|c| attach.logs_of.contains(&c.service))
        .map(|c| LogSource::new(display_name(project, &c.id), context.engine.log_path(&c.id)))
        .collect();
    let options = LogsOptions {
        style: attach.style,
        ..LogsOptions::default()
    };
    let (follow, handle) = LogFollow::new(sources, &options, std::io::stdout(), |err| {
        eprintln!("WARN[0000] {err}")
    })?;
    let remaining = AtomicUsize::new(watched.len());
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
    if watched.is_empty() {
        handle.stop();
    }
    let result = std::thread::scope(|scope| {
        let follower = scope.spawn(move || follow.run());
        for container in watched {
            let (handle, remaining, exit_code, aborted, stop_all) =
                (&handle, &remaining, &exit_code, &aborted, &stop_all);
            let name = display_name(project, &container.id);
            scope.spawn(move || {
                let code = engine.wait_exit(&container.id).unwrap_or(-1);
                handle.status(name, format!("exited with code {code}"));
                let failed = code != 0;
                let wanted = attach
                    .exit_code_from
                    .as_ref()
                    .is_none_or(|service| *service == container.service)
                    && (failed || !attach.abort_on_failure);
                if wanted {
                    let mut slot = exit_code.lock().unwrap_or_else(|e| e.into_inner());
                    slot.get_or_insert(code);
                }
                let ends_run = attach.abort || (attach.abort_on_failure && failed);
                if ends_run && !aborted.swap(true, Ordering::SeqCst) {
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
        Some(code) if attach.abort || attach.abort_on_failure => {
            Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
        }
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
    fn wait_readiness_follows_compose() {
        let running = ContainerState::Running;
        assert_eq!(
            readiness("demo-web-1", &running, false, None),
            Readiness::Ready("Healthy")
        );
        assert_eq!(
            readiness("demo-web-1", &running, true, None),
            Readiness::Pending("starting")
        );
        assert_eq!(
            readiness("demo-web-1", &running, true, Some(HealthStatus::Starting)),
            Readiness::Pending("starting")
        );
        assert_eq!(
            readiness("demo-web-1", &running, true, Some(HealthStatus::Healthy)),
            Readiness::Ready("Healthy")
        );
        assert_eq!(
            readiness("demo-web-1", &running, true, Some(HealthStatus::Unhealthy)),
            Readiness::Failed("container demo-web-1 is unhealthy".into())
        );
        // A one-shot that completed does not fail the wait; one that failed does.
        assert_eq!(
            readiness(
                "demo-init-1",
                &ContainerState::Exited { exit_code: 0 },
                false,
                None
            ),
            Readiness::Ready("Exited")
        );
        assert_eq!(
            readiness(
                "demo-init-1",
                &ContainerState::Exited { exit_code: 2 },
                true,
                None
            ),
            Readiness::Failed("container demo-init-1 exited (2)".into())
        );
        assert_eq!(
            readiness("demo-web-1", &ContainerState::Restarting, false, None),
            Readiness::Pending("restarting")
        );
    }

    fn container(service: &str, id: &str) -> ServiceContainer {
        ServiceContainer {
            service: service.into(),
            id: id.into(),
            touched: true,
        }
    }

    #[test]
    fn attach_and_no_attach_choose_the_logs_and_the_watched_containers() {
        let project = crate::backend::native::tests::project(
            "services:\n  web: {image: busybox}\n  db: {image: busybox}\n  cache: {image: busybox}\n",
        );
        let all = attached_services(&project, &[], &[]);
        assert_eq!(all.len(), 3);
        assert_eq!(
            attached_services(&project, &["web".into()], &[]),
            vec!["web".to_string()]
        );
        let mut without_db = attached_services(&project, &[], &["db".into()]);
        without_db.sort();
        assert_eq!(without_db, vec!["cache".to_string(), "web".to_string()]);

        let containers = [
            container("db", "demo-db-1"),
            container("web", "demo-web-1"),
            container("web", "demo-web-2"),
        ];
        let watched: Vec<&str> = watched_containers(&containers, &["web".into()])
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(watched, ["demo-web-1", "demo-web-2"]);
        // Nothing attached: `up` still ends when the containers have all exited.
        assert_eq!(watched_containers(&containers, &[]).len(), 3);
    }

    #[test]
    fn log_prefixes_drop_the_project_name() {
        assert_eq!(display_name("demo", "demo-web-1"), "web-1");
        assert_eq!(display_name("demo", "the-db"), "the-db");
        assert_eq!(display_name("demo", "demonstration-1"), "demonstration-1");
    }
}
