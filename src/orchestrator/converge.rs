//! Carrying out `up`, `down`, `start`, `stop` and `restart`: the plans of
//! [`super::plan`] executed on a [`ContainerEngine`], along the dependency graph.
//!
//! `up` runs one thread per planned service. A service's thread waits until every
//! dependency it has in the plan is done and its `depends_on` condition holds
//! (`service_started`: the dependency's containers were started;
//! `service_completed_successfully`: they exited 0), then carries out its actions,
//! each engine call holding a permit of a semaphore sized by `--parallel`. A failed
//! service fails its dependents (unless the dependency is `required: false`), and the
//! other services go on: every failure is reported at the end, as Compose does.
//!
//! `down` and `stop` go the other way: waves of the graph in reverse, the containers of
//! one wave stopped concurrently, so that a dependent is always gone before what it
//! depends on.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rcompose_runtime::container::lifecycle::Runtime;
use rcompose_runtime::network::manager::NetworkError;
use rcompose_runtime::volume::VolumeError;

use super::labels::{ContainerLabels, Labels, ProjectLabels};
use super::plan::{
    Action, ContainerRef, ContainerRemoval, ContainerState, DesiredService, DownPlan,
    ObservedContainer, Plan, ServicePlan,
};
use crate::backend::native::record::TeardownRecord;
use crate::backend::native::{NativeEngine, NativeError};
use crate::graph::{Dependency, GraphError, ServiceGraph};
use crate::orchestrator::health::HealthStatus;
use crate::project::model::Project;

/// An engine call's error, whatever the engine.
pub type EngineError = Box<dyn std::error::Error + Send + Sync>;
pub type EngineResult<T> = Result<T, EngineError>;

/// What converging needs of a container engine. Every method may be called from
/// several threads at once.
pub trait ContainerEngine: Sync {
    /// Creates replica `number` of `service` with `labels`; returns its id.
    fn create(
        &self,
        project: &Project,
        service: &str,
        number: u32,
        labels: &Labels,
    ) -> EngineResult<String>;
    fn start(&self, id: &str) -> EngineResult<()>;
    /// Stops a running container (a stopped one is fine).
    fn stop(&self, id: &str, timeout: Option<Duration>) -> EngineResult<()>;
    /// SIGKILL to a running container.
    fn kill(&self, id: &str) -> EngineResult<()>;
    /// Removes the container, and with `anonymous_volumes` its anonymous volumes.
    fn remove(&self, id: &str, anonymous_volumes: bool) -> EngineResult<()>;
    /// Blocks until the container has exited; its exit code.
    fn wait_exit(&self, id: &str) -> EngineResult<i32>;
    /// Blocks until the container's healthcheck passes; an error when it turns
    /// unhealthy, the container exits, or it has no healthcheck.
    fn wait_healthy(&self, project: &Project, id: &str) -> EngineResult<()>;
    /// Removes a network; `Ok(false)` when it does not exist.
    fn remove_network(&self, name: &str) -> EngineResult<bool>;
    /// Removes a volume; `Ok(false)` when it does not exist.
    fn remove_volume(&self, name: &str) -> EngineResult<bool>;
}

#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("{}", .0.join("\n"))]
    Failed(Vec<String>),
}

/// What is being reported on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Network,
    Volume,
    Container,
    Image,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Network => "Network",
            Self::Volume => "Volume",
            Self::Container => "Container",
            Self::Image => "Image",
        }
    }
}

/// One progress line: ` Container demo-web-1  Started`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    pub kind: ResourceKind,
    pub name: String,
    pub status: String,
}

impl std::fmt::Display for ProgressEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, " {} {}  {}", self.kind.as_str(), self.name, self.status)
    }
}

/// Where progress goes: the CLI prints it to stderr (or drops it with
/// `--progress quiet`), tests collect it.
pub type Progress<'a> = &'a (dyn Fn(ProgressEvent) + Sync);

fn report(progress: Progress<'_>, kind: ResourceKind, name: &str, status: &str) {
    progress(ProgressEvent {
        kind,
        name: name.to_owned(),
        status: status.to_owned(),
    });
}

/// How to carry out a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvergeOptions {
    /// At most this many engine calls at once (at least 1).
    pub parallel: usize,
    /// `-t`: the stop timeout, else each container's own.
    pub timeout: Option<Duration>,
    /// `up -V`: a recreated container gets new anonymous volumes (the old ones are
    /// removed with the container) instead of taking over the replaced one's.
    pub renew_anonymous_volumes: bool,
}

/// A container of a converged service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceContainer {
    pub service: String,
    pub id: String,
    /// Whether this `up` created, started or restarted it (attached `up` follows
    /// their logs from the beginning).
    pub touched: bool,
}

/// What `up` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvergeOutcome {
    /// The containers of the converged services, dependencies first.
    pub containers: Vec<ServiceContainer>,
    pub warnings: Vec<String>,
}

/// `--parallel` (or `COMPOSE_PARALLEL_LIMIT`) as a permit count: -1 or 0 mean
/// "unlimited", which on a small machine is still bounded by the CPU count times 4.
pub fn parallel_limit(flag: i64, env: Option<&str>) -> usize {
    let unlimited = std::thread::available_parallelism()
        .map(|n| n.get() * 4)
        .unwrap_or(8)
        .max(2);
    let value = if flag > 0 {
        flag
    } else {
        env.and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(-1)
    };
    if value > 0 {
        usize::try_from(value).unwrap_or(unlimited)
    } else {
        unlimited
    }
}

/// A counting semaphore over std primitives.
struct Semaphore {
    permits: Mutex<usize>,
    freed: Condvar,
}

struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    fn new(permits: usize) -> Self {
        Self {
            permits: Mutex::new(permits.max(1)),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut permits = self.permits.lock().unwrap_or_else(|e| e.into_inner());
        while *permits == 0 {
            permits = self.freed.wait(permits).unwrap_or_else(|e| e.into_inner());
        }
        *permits -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut permits = self.0.permits.lock().unwrap_or_else(|e| e.into_inner());
        *permits += 1;
        self.0.freed.notify_one();
    }
}

/// A service's progress through `up`, shared between the service threads.
#[derive(Debug, Clone)]
enum ServiceStatus {
    Pending,
    /// Converged; the ids of its containers.
    Done(Vec<String>),
    Failed,
}

struct Board {
    status: Mutex<HashMap<String, ServiceStatus>>,
    changed: Condvar,
}

impl Board {
    fn set(&self, service: &str, status: ServiceStatus) {
        let mut map = self.status.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(service.to_owned(), status);
        self.changed.notify_all();
    }

    /// Blocks until `service` is no longer pending.
    fn settled(&self, service: &str) -> ServiceStatus {
        let mut map = self.status.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match map.get(service) {
                Some(ServiceStatus::Pending) => {
                    map = self.changed.wait(map).unwrap_or_else(|e| e.into_inner());
                }
                Some(status) => return status.clone(),
                None => return ServiceStatus::Done(Vec::new()),
            }
        }
    }
}

/// Everything the service threads share.
struct Run<'a, E: ContainerEngine> {
    engine: &'a E,
    project: &'a Project,
    project_labels: &'a ProjectLabels,
    desired: &'a [DesiredService],
    plan: &'a Plan,
    options: ConvergeOptions,
    progress: Progress<'a>,
    permits: Semaphore,
    board: Board,
    errors: Mutex<Vec<String>>,
    warnings: Mutex<Vec<String>>,
    containers: Mutex<HashMap<String, Vec<ServiceContainer>>>,
}

/// Carries out `plan` (made from `desired` for `project`): orphans first when they are
/// to be removed, then every service once its dependencies allow.
pub fn converge<E: ContainerEngine>(
    engine: &E,
    project: &Project,
    project_labels: &ProjectLabels,
    desired: &[DesiredService],
    plan: &Plan,
    options: ConvergeOptions,
    progress: Progress<'_>,
) -> Result<ConvergeOutcome, ConvergeError> {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    if plan.remove_orphans {
        for orphan in &plan.orphans {
            if let Err(err) = stop_and_remove(engine, orphan, false, options.timeout, progress) {
                errors.push(err);
            }
        }
    } else if let Some(warning) = plan.orphan_warning() {
        warnings.push(warning);
    }
    let run = Run {
        engine,
        project,
        project_labels,
        desired,
        plan,
        options,
        progress,
        permits: Semaphore::new(options.parallel),
        board: Board {
            status: Mutex::new(
                plan.services
                    .iter()
                    .map(|s| (s.service.clone(), ServiceStatus::Pending))
                    .collect(),
            ),
            changed: Condvar::new(),
        },
        errors: Mutex::new(errors),
        warnings: Mutex::new(warnings),
        containers: Mutex::new(HashMap::new()),
    };
    std::thread::scope(|scope| {
        for service_plan in &plan.services {
            let run = &run;
            scope.spawn(move || run.service(service_plan));
        }
    });
    let errors = run.errors.into_inner().unwrap_or_else(|e| e.into_inner());
    if !errors.is_empty() {
        return Err(ConvergeError::Failed(errors));
    }
    let mut by_service = run
        .containers
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let containers = plan
        .services
        .iter()
        .flat_map(|s| by_service.remove(&s.service).unwrap_or_default())
        .collect();
    Ok(ConvergeOutcome {
        containers,
        warnings: run.warnings.into_inner().unwrap_or_else(|e| e.into_inner()),
    })
}

impl<E: ContainerEngine> Run<'_, E> {
    fn service(&self, service_plan: &ServicePlan) {
        let name = service_plan.service.as_str();
        let outcome = self
            .dependencies_ready(name)
            .and_then(|()| self.carry_out(service_plan));
        match outcome {
            Ok(containers) => {
                let ids = containers.iter().map(|c| c.id.clone()).collect();
                self.lock_containers().insert(name.to_owned(), containers);
                self.board.set(name, ServiceStatus::Done(ids));
            }
            Err(errors) => {
                self.errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(errors);
                self.board.set(name, ServiceStatus::Failed);
            }
        }
    }

    fn lock_containers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<ServiceContainer>>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn warn(&self, warning: String) {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(warning);
    }

    /// Waits for every dependency of `service` in the plan and checks its condition.
    fn dependencies_ready(&self, service: &str) -> Result<(), Vec<String>> {
        let Some(definition) = self.project.services.get(service) else {
            return Ok(());
        };
        for (dependency, entry) in &definition.depends_on {
            let planned = self.plan.service(dependency).is_some();
            if !planned {
                let known = self.desired.iter().any(|d| d.name == *dependency);
                if !known && !entry.required {
                    self.warn(format!(
                        "service {service}: optional dependency {dependency} is not part of the project: skipped"
                    ));
                }
                // Not converged by this `up` (`--no-deps`): taken as it is.
                continue;
            }
            let ids = match self.board.settled(dependency) {
                ServiceStatus::Done(ids) => ids,
                _ if !entry.required => {
                    self.warn(format!(
                        "service {service}: optional dependency {dependency} failed to start: going on without it"
                    ));
                    continue;
                }
                _ => {
                    return Err(vec![format!(
                        "service {service}: dependency {dependency} failed to start"
                    )])
                }
            };
            if !self.plan.start {
                continue;
            }
            self.condition_holds(service, dependency, &entry.condition, &ids)
                .map_err(|e| vec![e])?;
        }
        Ok(())
    }

    fn condition_holds(
        &self,
        service: &str,
        dependency: &str,
        condition: &str,
        ids: &[String],
    ) -> Result<(), String> {
        dependency_condition(
            self.engine,
            self.project,
            self.progress,
            service,
            dependency,
            condition,
            ids,
        )
    }

    /// The service's actions in order; stops at its first failure.
    fn carry_out(&self, service_plan: &ServicePlan) -> Result<Vec<ServiceContainer>, Vec<String>> {
        let service = service_plan.service.as_str();
        let mut containers = Vec::new();
        for action in &service_plan.actions {
            let outcome = self.action(service, action).map_err(|e| vec![e])?;
            if let Some((id, touched)) = outcome {
                containers.push(ServiceContainer {
                    service: service.to_owned(),
                    id,
                    touched,
                });
            }
        }
        Ok(containers)
    }

    /// One action; the container it leaves (and whether it was touched), if any.
    fn action(&self, service: &str, action: &Action) -> Result<Option<(String, bool)>, String> {
        let progress = self.progress;
        let timeout = self.options.timeout;
        match action {
            Action::Create { number, name } => {
                let id = self.create(service, *number, name, None)?;
                self.start_if_wanted(&id)?;
                Ok(Some((id, true)))
            }
            Action::Recreate {
                container,
                number,
                name,
                ..
            } => {
                report(
                    progress,
                    ResourceKind::Container,
                    &container.name,
                    "Recreate",
                );
                {
                    let _permit = self.permits.acquire();
                    self.engine
                        .stop(&container.id, timeout)
                        .and_then(|()| {
                            self.engine
                                .remove(&container.id, self.options.renew_anonymous_volumes)
                        })
                        .map_err(|e| {
                            format!("service {service}: recreating {}: {e}", container.name)
                        })?;
                }
                let id = self.create(service, *number, name, Some(&container.id))?;
                report(progress, ResourceKind::Container, name, "Recreated");
                self.start_if_wanted(&id)?;
                Ok(Some((id, true)))
            }
            Action::Start { container } => {
                self.start_if_wanted(&container.id)?;
                Ok(Some((container.id.clone(), true)))
            }
            Action::Restart { container, .. } => {
                report(
                    progress,
                    ResourceKind::Container,
                    &container.name,
                    "Restarting",
                );
                let _permit = self.permits.acquire();
                self.engine
                    .stop(&container.id, timeout)
                    .and_then(|()| self.engine.start(&container.id))
                    .map_err(|e| {
                        format!("service {service}: restarting {}: {e}", container.name)
                    })?;
                report(
                    progress,
                    ResourceKind::Container,
                    &container.name,
                    "Started",
                );
                Ok(Some((container.id.clone(), true)))
            }
            Action::Remove { container } => {
                let _permit = self.permits.acquire();
                stop_and_remove(self.engine, container, false, timeout, progress)?;
                Ok(None)
            }
            Action::Keep { container } => {
                let status = if self.plan.start {
                    "Running"
                } else {
                    "Created"
                };
                report(progress, ResourceKind::Container, &container.name, status);
                Ok(Some((container.id.clone(), false)))
            }
        }
    }

    fn create(
        &self,
        service: &str,
        number: u32,
        name: &str,
        replaces: Option<&str>,
    ) -> Result<String, String> {
        let definition = self
            .project
            .services
            .get(service)
            .ok_or_else(|| format!("no such service: {service}"))?;
        let hash = self
            .desired
            .iter()
            .find(|d| d.name == service)
            .map(|d| d.config_hash.as_str())
            .unwrap_or_default();
        let mut labels =
            ContainerLabels::replica(self.project_labels, service, definition, hash, number);
        if let Some(old) = replaces {
            labels = labels.replaces(old);
        }
        if replaces.is_none() {
            report(self.progress, ResourceKind::Container, name, "Creating");
        }
        let _permit = self.permits.acquire();
        let id = self
            .engine
            .create(self.project, service, number, &labels.build())
            .map_err(|e| format!("service {service}: creating {name}: {e}"))?;
        if replaces.is_none() {
            report(self.progress, ResourceKind::Container, name, "Created");
        }
        Ok(id)
    }

    fn start_if_wanted(&self, id: &str) -> Result<(), String> {
        if !self.plan.start {
            return Ok(());
        }
        report(self.progress, ResourceKind::Container, id, "Starting");
        let _permit = self.permits.acquire();
        self.engine
            .start(id)
            .map_err(|e| format!("container {id}: starting: {e}"))?;
        report(self.progress, ResourceKind::Container, id, "Started");
        Ok(())
    }
}

/// Waits until `service`'s `depends_on.<dependency>` condition holds for the
/// dependency's containers `ids` (`up` between services, `run` before its one-off).
pub fn dependency_condition<E: ContainerEngine>(
    engine: &E,
    project: &Project,
    progress: Progress<'_>,
    service: &str,
    dependency: &str,
    condition: &str,
    ids: &[String],
) -> Result<(), String> {
    match condition {
        "" | "service_started" => Ok(()),
        "service_completed_successfully" => {
            for id in ids {
                report(progress, ResourceKind::Container, id, "Waiting");
                let code = engine
                    .wait_exit(id)
                    .map_err(|e| format!("service {service}: waiting for {id}: {e}"))?;
                if code != 0 {
                    return Err(format!(
                        "service {service}: depends_on.{dependency}: service {dependency} didn't complete successfully: exit {code}"
                    ));
                }
                report(progress, ResourceKind::Container, id, "Exited");
            }
            Ok(())
        }
        "service_healthy" => {
            for id in ids {
                report(progress, ResourceKind::Container, id, "Waiting");
                engine
                    .wait_healthy(project, id)
                    .map_err(|e| format!("service {service}: depends_on.{dependency}: {e}"))?;
                report(progress, ResourceKind::Container, id, "Healthy");
            }
            Ok(())
        }
        other => Err(format!(
            "service {service}: depends_on.{dependency}: unknown condition {other:?}"
        )),
    }
}

fn stop_and_remove<E: ContainerEngine>(
    engine: &E,
    container: &ContainerRef,
    anonymous_volumes: bool,
    timeout: Option<Duration>,
    progress: Progress<'_>,
) -> Result<(), String> {
    let name = container.name.as_str();
    report(progress, ResourceKind::Container, name, "Stopping");
    let stopped = engine.stop(&container.id, timeout);
    // A container that cannot be stopped is still removed (by force).
    if stopped.is_ok() {
        report(progress, ResourceKind::Container, name, "Stopped");
    }
    report(progress, ResourceKind::Container, name, "Removing");
    engine
        .remove(&container.id, anonymous_volumes)
        .map_err(|e| format!("container {name}: removing: {e}"))?;
    report(progress, ResourceKind::Container, name, "Removed");
    Ok(())
}

/// The project's dependency graph (absent optional dependencies dropped).
fn project_graph(project: &Project) -> Result<ServiceGraph, GraphError> {
    ServiceGraph::new(project.services.iter().map(|(name, service)| {
        (
            name.as_str(),
            service
                .depends_on
                .keys()
                .map(|dependency| Dependency::optional(dependency.as_str())),
        )
    }))
}

/// Services in stop waves: dependents before their dependencies; services the graph
/// does not know (orphans) last.
fn stop_waves(project: &Project, services: &[&str]) -> Result<Vec<Vec<String>>, GraphError> {
    let graph = project_graph(project)?;
    let mut waves: Vec<Vec<String>> = graph
        .levels()
        .into_iter()
        .rev()
        .map(|wave| {
            wave.into_iter()
                .filter(|s| services.contains(s))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|wave| !wave.is_empty())
        .collect();
    let unknown: Vec<String> = services
        .iter()
        .filter(|s| !project.services.contains_key(**s))
        .map(|s| (*s).to_owned())
        .collect();
    if !unknown.is_empty() {
        waves.push(unknown);
    }
    Ok(waves)
}

/// Runs `work` on every item of `items` with at most `parallel` at once; the errors.
fn for_each_bounded<T: Sync>(
    items: &[T],
    parallel: usize,
    work: impl Fn(&T) -> Result<(), String> + Sync,
) -> Vec<String> {
    let permits = Semaphore::new(parallel);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for item in items {
            let (permits, errors, work) = (&permits, &errors, &work);
            scope.spawn(move || {
                let _permit = permits.acquire();
                if let Err(err) = work(item) {
                    errors.lock().unwrap_or_else(|e| e.into_inner()).push(err);
                }
            });
        }
    });
    errors.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Carries out `down`: containers by reverse dependency waves, then networks, then
/// volumes. Goes past every failure; returns them all.
pub fn down<E: ContainerEngine>(
    engine: &E,
    project: &Project,
    plan: &DownPlan,
    options: ConvergeOptions,
    progress: Progress<'_>,
) -> Vec<String> {
    let services: Vec<&str> = plan.containers.iter().map(|c| c.service.as_str()).collect();
    let waves = match stop_waves(project, &services) {
        Ok(waves) => waves,
        Err(err) => return vec![err.to_string()],
    };
    let mut errors = Vec::new();
    for wave in waves {
        let removals: Vec<&ContainerRemoval> = plan
            .containers
            .iter()
            .filter(|c| wave.contains(&c.service))
            .collect();
        errors.extend(for_each_bounded(&removals, options.parallel, |removal| {
            stop_and_remove(
                engine,
                &removal.container,
                removal.anonymous_volumes,
                options.timeout,
                progress,
            )
        }));
    }
    for network in &plan.networks {
        report(progress, ResourceKind::Network, &network.name, "Removing");
        match engine.remove_network(&network.name) {
            Ok(true) => report(progress, ResourceKind::Network, &network.name, "Removed"),
            Ok(false) => {}
            Err(err) => errors.push(format!("network {}: removing: {err}", network.name)),
        }
    }
    for volume in &plan.volumes {
        report(progress, ResourceKind::Volume, &volume.name, "Removing");
        match engine.remove_volume(&volume.name) {
            Ok(true) => report(progress, ResourceKind::Volume, &volume.name, "Removed"),
            Ok(false) => {}
            Err(err) => errors.push(format!("volume {}: removing: {err}", volume.name)),
        }
    }
    errors
}

/// The project's service containers of `services` (all when empty); one-off ones left out.
fn selected<'a>(
    observed: &'a [ObservedContainer],
    services: &[String],
) -> Vec<&'a ObservedContainer> {
    observed
        .iter()
        .filter(|c| !c.oneoff && (services.is_empty() || services.contains(&c.service)))
        .collect()
}

/// `start`: the stopped containers of `services` (all when empty), dependencies first.
pub fn start_containers<E: ContainerEngine>(
    engine: &E,
    project: &Project,
    observed: &[ObservedContainer],
    services: &[String],
    progress: Progress<'_>,
) -> Result<(), ConvergeError> {
    let graph = project_graph(project)?;
    let chosen = selected(observed, services);
    let mut errors = Vec::new();
    for service in graph.start_order() {
        let mut of_service: Vec<&&ObservedContainer> =
            chosen.iter().filter(|c| c.service == service).collect();
        of_service.sort_by_key(|c| c.number);
        for container in of_service {
            if container.state == ContainerState::Running {
                continue;
            }
            report(
                progress,
                ResourceKind::Container,
                &container.name,
                "Starting",
            );
            match engine.start(&container.id) {
                Ok(()) => report(
                    progress,
                    ResourceKind::Container,
                    &container.name,
                    "Started",
                ),
                Err(err) => errors.push(format!("container {}: starting: {err}", container.name)),
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConvergeError::Failed(errors))
    }
}

/// `stop`: the running containers of `services` (all when empty), dependents first.
pub fn stop_containers<E: ContainerEngine>(
    engine: &E,
    project: &Project,
    observed: &[ObservedContainer],
    services: &[String],
    options: ConvergeOptions,
    progress: Progress<'_>,
) -> Result<(), ConvergeError> {
    let chosen = selected(observed, services);
    let names: Vec<&str> = chosen.iter().map(|c| c.service.as_str()).collect();
    let mut errors = Vec::new();
    for wave in stop_waves(project, &names)? {
        // A paused container is stopped too (the engine thaws it first), as Docker does.
        let running: Vec<&&ObservedContainer> = chosen
            .iter()
            .filter(|c| {
                wave.contains(&c.service)
                    && matches!(c.state, ContainerState::Running | ContainerState::Paused)
            })
            .collect();
        errors.extend(for_each_bounded(&running, options.parallel, |container| {
            report(
                progress,
                ResourceKind::Container,
                &container.name,
                "Stopping",
            );
            engine
                .stop(&container.id, options.timeout)
                .map_err(|e| format!("container {}: stopping: {e}", container.name))?;
            report(
                progress,
                ResourceKind::Container,
                &container.name,
                "Stopped",
            );
            Ok(())
        }));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConvergeError::Failed(errors))
    }
}

/// `rm`: removes `containers` (stopped ones: the caller chose them), at most
/// `parallel` at once, with their anonymous volumes when `anonymous_volumes`. Goes past
/// every failure; returns them all.
pub fn remove_containers<E: ContainerEngine>(
    engine: &E,
    containers: &[&ObservedContainer],
    anonymous_volumes: bool,
    parallel: usize,
    progress: Progress<'_>,
) -> Vec<String> {
    for_each_bounded(containers, parallel, |container| {
        let name = container.name.as_str();
        report(progress, ResourceKind::Container, name, "Removing");
        engine
            .remove(&container.id, anonymous_volumes)
            .map_err(|e| format!("container {name}: removing: {e}"))?;
        report(progress, ResourceKind::Container, name, "Removed");
        Ok(())
    })
}

/// Called by `up`, `start` and `restart` once the containers are started: the project
/// supervisor (DNS for the project's networks, published-port reservations, restart
/// policies and healthchecks) runs and has seen them.
pub fn after_converge(root: &Path, project: &Project) -> Result<(), ConvergeError> {
    crate::supervisor::ensure_running(root, project)
        .map_err(|e| ConvergeError::Failed(vec![e.to_string()]))
}

/// [`ContainerEngine`] over the native engine, shared by the converge threads: every
/// call may run concurrently (the runtime gives each create a helper of its own; the
/// network and volume records have their own file locks).
pub struct SharedNative {
    engine: NativeEngine,
    root: std::path::PathBuf,
}

impl SharedNative {
    pub fn new(engine: NativeEngine, root: &Path) -> Self {
        Self {
            engine,
            root: root.to_path_buf(),
        }
    }

    fn read(&self) -> &NativeEngine {
        &self.engine
    }

    /// Lists the project's containers.
    pub fn list(&self, project: &str) -> Result<Vec<ObservedContainer>, NativeError> {
        self.read().list(project)
    }

    /// The engine itself, for what converging does not cover (checks, networks).
    pub fn with_engine<T>(&self, f: impl FnOnce(&NativeEngine) -> T) -> T {
        f(self.read())
    }

    /// The container's json-file log.
    pub fn log_path(&self, id: &str) -> std::path::PathBuf {
        self.engine.runtime().log_path(id)
    }

    /// The Compose project a container belongs to, from its labels.
    fn project_of(&self, id: &str) -> Option<String> {
        let record = self.engine.runtime().inspect(id).ok()?;
        record
            .config
            .labels
            .get(crate::orchestrator::labels::PROJECT)
            .cloned()
    }

    /// Every stop and kill through here is its user's: the supervisor's restart
    /// policy must not bring the container back.
    fn mark_stopped(&self, id: &str) -> EngineResult<()> {
        if let Some(project) = self.project_of(id) {
            crate::supervisor::mark_stopped_by_user(&self.root, &project, id)?;
        }
        Ok(())
    }
}

impl ContainerEngine for SharedNative {
    fn create(
        &self,
        project: &Project,
        service: &str,
        number: u32,
        labels: &Labels,
    ) -> EngineResult<String> {
        // Concurrent: the runtime gives each create a helper of its own.
        let created = self
            .read()
            .create_container(project, service, number, labels)?;
        Ok(created.id)
    }

    fn start(&self, id: &str) -> EngineResult<()> {
        // Started by its user: restart policies apply to it again.
        if let Some(project) = self.project_of(id) {
            crate::supervisor::clear_stopped_by_user(&self.root, &project, id)?;
        }
        Ok(self.read().start(id)?)
    }

    fn stop(&self, id: &str, timeout: Option<Duration>) -> EngineResult<()> {
        self.mark_stopped(id)?;
        self.read().stop(id, timeout)?;
        Ok(())
    }

    fn kill(&self, id: &str) -> EngineResult<()> {
        self.mark_stopped(id)?;
        Ok(self.engine.runtime().kill(id, 9, true)?)
    }

    fn remove(&self, id: &str, anonymous_volumes: bool) -> EngineResult<()> {
        let engine = self.read();
        let anonymous: Vec<String> = if anonymous_volumes {
            anonymous_volumes_of(engine.runtime(), id)
        } else {
            Vec::new()
        };
        engine.remove(id)?;
        for volume in anonymous {
            match engine.volume_store().remove(&volume, false) {
                Ok(_) | Err(VolumeError::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    fn wait_exit(&self, id: &str) -> EngineResult<i32> {
        Ok(self.engine.runtime().wait(id)?.code)
    }

    /// The supervisor runs the healthchecks: start it (or have it look again), then
    /// watch the state it writes.
    fn wait_healthy(&self, project: &Project, id: &str) -> EngineResult<()> {
        crate::supervisor::ensure_running(&self.root, project)?;
        let service = self
            .engine
            .runtime()
            .inspect(id)?
            .config
            .labels
            .get(crate::orchestrator::labels::SERVICE)
            .cloned()
            .unwrap_or_default();
        let has_check = crate::supervisor::ServicePolicies::from_project(project)?
            .health(&service)
            .is_some();
        if !has_check {
            return Err(format!("container {id} has no healthcheck").into());
        }
        loop {
            let health = crate::supervisor::read_health(&self.root, &project.name, id);
            match health.map(|h| h.status) {
                Some(HealthStatus::Healthy) => return Ok(()),
                Some(HealthStatus::Unhealthy) => {
                    return Err(
                        format!("dependency failed to start: container {id} is unhealthy").into(),
                    )
                }
                _ => {}
            }
            if self.engine.runtime().state(id)?.state
                == rcompose_runtime::container::status::State::Stopped
            {
                return Err(format!("dependency failed to start: container {id} exited").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn remove_network(&self, name: &str) -> EngineResult<bool> {
        match self.read().network_manager().remove(name) {
            Ok(()) => Ok(true),
            Err(NetworkError::NotFound(_)) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    fn remove_volume(&self, name: &str) -> EngineResult<bool> {
        match self.read().volume_store().remove(name, false) {
            Ok(_) => Ok(true),
            Err(VolumeError::NotFound { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

/// The anonymous volumes recorded for container `id` (its state root is the runtime's).
fn anonymous_volumes_of(runtime: &Runtime, id: &str) -> Vec<String> {
    // `<root>/containers/<id>` → `<root>`.
    let Some(root) = runtime
        .container_dir(id)
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
    else {
        return Vec::new();
    };
    match TeardownRecord::load(&root, id) {
        Ok(Some(record)) => record
            .volumes
            .into_iter()
            .filter(|v| v.anonymous)
            .map(|v| v.name)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::backend::native::tests::project;
    use crate::orchestrator::plan::{self, DownOptions, UpOptions};

    /// Records every call; containers exit with the code set for their service.
    #[derive(Default)]
    struct FakeEngine {
        calls: Mutex<Vec<String>>,
        exit_codes: HashMap<String, i32>,
        failing_creates: HashSet<String>,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl FakeEngine {
        fn record(&self, call: String) {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            self.calls.lock().unwrap().push(call);
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }

        fn position(&self, call: &str) -> usize {
            let calls = self.calls();
            calls
                .iter()
                .position(|c| c == call)
                .unwrap_or_else(|| panic!("{call:?} was not called: {calls:?}"))
        }
    }

    impl ContainerEngine for FakeEngine {
        fn create(
            &self,
            project: &Project,
            service: &str,
            number: u32,
            labels: &Labels,
        ) -> EngineResult<String> {
            assert_eq!(labels[crate::orchestrator::labels::SERVICE], service);
            if self.failing_creates.contains(service) {
                return Err(format!("image of {service} not found").into());
            }
            let id = format!("{}-{service}-{number}", project.name);
            self.record(format!("create {id}"));
            Ok(id)
        }
        fn start(&self, id: &str) -> EngineResult<()> {
            self.record(format!("start {id}"));
            Ok(())
        }
        fn stop(&self, id: &str, _timeout: Option<Duration>) -> EngineResult<()> {
            self.record(format!("stop {id}"));
            Ok(())
        }
        fn kill(&self, id: &str) -> EngineResult<()> {
            self.record(format!("kill {id}"));
            Ok(())
        }
        fn remove(&self, id: &str, anonymous_volumes: bool) -> EngineResult<()> {
            self.record(format!("remove {id} {anonymous_volumes}"));
            Ok(())
        }
        fn wait_exit(&self, id: &str) -> EngineResult<i32> {
            self.record(format!("wait {id}"));
            let service = id.split('-').nth(1).unwrap_or_default();
            Ok(self.exit_codes.get(service).copied().unwrap_or(0))
        }
        /// Healthy unless the service exits non-zero in `exit_codes` (then unhealthy).
        fn wait_healthy(&self, _project: &Project, id: &str) -> EngineResult<()> {
            self.record(format!("wait healthy {id}"));
            let service = id.split('-').nth(1).unwrap_or_default();
            match self.exit_codes.get(service) {
                Some(code) if *code != 0 => {
                    Err(format!("dependency failed to start: container {id} is unhealthy").into())
                }
                _ => Ok(()),
            }
        }
        fn remove_network(&self, name: &str) -> EngineResult<bool> {
            self.record(format!("remove network {name}"));
            Ok(name != "demo_gone")
        }
        fn remove_volume(&self, name: &str) -> EngineResult<bool> {
            self.record(format!("remove volume {name}"));
            Ok(true)
        }
    }

    const OPTIONS: ConvergeOptions = ConvergeOptions {
        parallel: 4,
        timeout: None,
        renew_anonymous_volumes: false,
    };

    fn up(
        engine: &FakeEngine,
        yaml: &str,
        parallel: usize,
    ) -> (Result<ConvergeOutcome, ConvergeError>, Vec<String>) {
        let project = project(yaml);
        let desired = plan::desired_services(&project, &IndexMap::new()).unwrap();
        let plan = plan::plan("demo", &desired, &[], &UpOptions::default()).unwrap();
        let labels = ProjectLabels {
            name: "demo".into(),
            ..ProjectLabels::default()
        };
        let lines = Mutex::new(Vec::new());
        let progress = |event: ProgressEvent| lines.lock().unwrap().push(event.to_string());
        let options = ConvergeOptions {
            parallel,
            ..OPTIONS
        };
        let result = converge(
            engine, &project, &labels, &desired, &plan, options, &progress,
        );
        (result, lines.into_inner().unwrap())
    }

    use indexmap::IndexMap;

    const WEB_ON_DB: &str =
        "services:\n  web:\n    image: busybox\n    depends_on: [db]\n  db:\n    image: busybox\n";

    #[test]
    fn dependencies_are_started_before_their_dependents() {
        let engine = FakeEngine::default();
        let (result, lines) = up(&engine, WEB_ON_DB, 4);
        let outcome = result.unwrap();
        assert!(engine.position("start demo-db-1") < engine.position("create demo-web-1"));
        let ids: Vec<&str> = outcome.containers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["demo-db-1", "demo-web-1"]);
        assert!(
            lines.contains(&" Container demo-web-1  Started".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&" Container demo-db-1  Created".to_string()),
            "{lines:?}"
        );
    }

    const INIT: &str = "services:\n  web:\n    image: busybox\n    depends_on:\n      init: {condition: service_completed_successfully}\n  init:\n    image: busybox\n  other:\n    image: busybox\n";

    #[test]
    fn a_one_shot_dependency_must_exit_zero_first() {
        let engine = FakeEngine::default();
        let (result, lines) = up(&engine, INIT, 4);
        result.unwrap();
        assert!(engine.position("wait demo-init-1") < engine.position("create demo-web-1"));
        assert!(
            lines.contains(&" Container demo-init-1  Exited".to_string()),
            "{lines:?}"
        );

        let engine = FakeEngine {
            exit_codes: HashMap::from([("init".to_string(), 3)]),
            ..FakeEngine::default()
        };
        let (result, _) = up(&engine, INIT, 4);
        let err = result.unwrap_err().to_string();
        assert_eq!(
            err,
            "service web: depends_on.init: service init didn't complete successfully: exit 3"
        );
        assert!(!engine.calls().iter().any(|c| c.contains("web")));
        // An independent service is started all the same.
        engine.position("start demo-other-1");
    }

    #[test]
    fn every_failure_is_reported_and_dependents_of_a_failure_are_not_created() {
        let engine = FakeEngine {
            failing_creates: HashSet::from(["db".to_string(), "cache".to_string()]),
            ..FakeEngine::default()
        };
        let yaml = format!("{WEB_ON_DB}  cache:\n    image: busybox\n  ok:\n    image: busybox\n");
        let (result, _) = up(&engine, &yaml, 4);
        let ConvergeError::Failed(mut errors) = result.unwrap_err() else {
            panic!("a failure expected");
        };
        errors.sort();
        assert_eq!(
            errors,
            [
                "service cache: creating demo-cache-1: image of cache not found",
                "service db: creating demo-db-1: image of db not found",
                "service web: dependency db failed to start",
            ]
        );
        engine.position("start demo-ok-1");
        assert!(!engine.calls().iter().any(|c| c.contains("web")));
    }

    #[test]
    fn an_optional_dependency_that_fails_only_warns() {
        let engine = FakeEngine {
            failing_creates: HashSet::from(["db".to_string()]),
            ..FakeEngine::default()
        };
        let yaml = "services:\n  web:\n    image: busybox\n    depends_on:\n      db: {condition: service_started, required: false}\n  db:\n    image: busybox\n";
        let (result, _) = up(&engine, yaml, 4);
        let ConvergeError::Failed(errors) = result.unwrap_err() else {
            panic!("db's own failure is reported");
        };
        assert_eq!(
            errors,
            ["service db: creating demo-db-1: image of db not found"]
        );
        engine.position("start demo-web-1");
    }

    #[test]
    fn service_healthy_waits_for_the_dependency_and_fails_when_unhealthy() {
        let yaml = "services:\n  web:\n    image: busybox\n    depends_on:\n      db: {condition: service_healthy}\n  db:\n    image: busybox\n";
        let engine = FakeEngine::default();
        let (result, _) = up(&engine, yaml, 4);
        result.unwrap();
        let calls = engine.calls();
        let waited = calls
            .iter()
            .position(|c| c == "wait healthy demo-db-1")
            .unwrap();
        let web = calls
            .iter()
            .position(|c| c.starts_with("create demo-web"))
            .unwrap();
        assert!(waited < web, "{calls:?}");

        let engine = FakeEngine {
            exit_codes: [("db".to_string(), 1)].into_iter().collect(),
            ..FakeEngine::default()
        };
        let (result, _) = up(&engine, yaml, 4);
        assert_eq!(
            result.unwrap_err().to_string(),
            "service web: depends_on.db: dependency failed to start: container demo-db-1 is unhealthy"
        );
    }

    #[test]
    fn parallelism_is_bounded() {
        let yaml: String = std::iter::once("services:\n".to_string())
            .chain((0..6).map(|i| format!("  s{i}:\n    image: busybox\n")))
            .collect();
        let engine = FakeEngine::default();
        up(&engine, &yaml, 1).0.unwrap();
        assert_eq!(engine.most_in_flight.load(Ordering::SeqCst), 1);
        assert_eq!(engine.calls().len(), 12);
        let engine = FakeEngine::default();
        up(&engine, &yaml, 6).0.unwrap();
        assert!(engine.most_in_flight.load(Ordering::SeqCst) > 1);
    }

    #[test]
    fn parallel_limit_reads_the_flag_then_the_environment() {
        assert_eq!(parallel_limit(3, Some("7")), 3);
        assert_eq!(parallel_limit(-1, Some("7")), 7);
        assert!(parallel_limit(-1, Some("junk")) >= 2);
        assert!(parallel_limit(0, None) >= 2);
    }

    fn observed(name: &str, service: &str, state: ContainerState) -> ObservedContainer {
        let labels: Labels = [
            (crate::orchestrator::labels::PROJECT, "demo"),
            (crate::orchestrator::labels::SERVICE, service),
            (crate::orchestrator::labels::CONTAINER_NUMBER, "1"),
            (crate::orchestrator::labels::CONFIG_HASH, "h"),
            (crate::orchestrator::labels::ONEOFF, "False"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        ObservedContainer::from_labels(name, name, state, labels).unwrap()
    }

    #[test]
    fn a_recreated_container_keeps_its_anonymous_volumes_unless_renewed() {
        let project = project("services:\n  web: {image: busybox}\n");
        let desired = plan::desired_services(&project, &IndexMap::new()).unwrap();
        // Its config hash is not the service's: it is recreated.
        let observed = [observed("demo-web-1", "web", ContainerState::Running)];
        let plan = plan::plan("demo", &desired, &observed, &UpOptions::default()).unwrap();
        let labels = ProjectLabels {
            name: "demo".into(),
            ..ProjectLabels::default()
        };
        for renew in [false, true] {
            let engine = FakeEngine::default();
            let options = ConvergeOptions {
                renew_anonymous_volumes: renew,
                ..OPTIONS
            };
            converge(
                &engine,
                &project,
                &labels,
                &desired,
                &plan,
                options,
                &|_| {},
            )
            .unwrap();
            assert!(
                engine
                    .calls()
                    .contains(&format!("remove demo-web-1 {renew}")),
                "-V {renew}: {:?}",
                engine.calls()
            );
        }
    }

    #[test]
    fn down_removes_dependents_first_then_networks_and_volumes() {
        let project = project(&format!(
            "{WEB_ON_DB}networks:\n  default: {{}}\n  gone: {{}}\n  ext: {{external: true}}\nvolumes:\n  data: {{}}\n"
        ));
        let containers = [
            observed("demo-db-1", "db", ContainerState::Running),
            observed("demo-web-1", "web", ContainerState::Running),
        ];
        let options = DownOptions {
            volumes: true,
            remove_orphans: false,
        };
        let down_plan = plan::plan_down(&project, &containers, options).unwrap();
        let engine = FakeEngine::default();
        let lines = Mutex::new(Vec::new());
        let progress = |event: ProgressEvent| lines.lock().unwrap().push(event.to_string());
        let errors = down(&engine, &project, &down_plan, OPTIONS, &progress);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(engine.position("remove demo-web-1 true") < engine.position("stop demo-db-1"));
        assert!(
            engine.position("remove demo-db-1 true")
                < engine.position("remove network demo_default")
        );
        engine.position("remove volume demo_data");
        assert!(!engine.calls().iter().any(|c| c.contains("ext")));
        let lines = lines.into_inner().unwrap();
        assert!(
            lines.contains(&" Network demo_default  Removed".to_string()),
            "{lines:?}"
        );
        assert!(
            !lines.contains(&" Network demo_gone  Removed".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&" Container demo-web-1  Stopped".to_string()),
            "{lines:?}"
        );
    }

    #[test]
    fn stop_and_start_follow_the_graph_and_skip_what_is_already_so() {
        let project = project(WEB_ON_DB);
        let containers = [
            observed("demo-db-1", "db", ContainerState::Running),
            observed("demo-web-1", "web", ContainerState::Running),
        ];
        let engine = FakeEngine::default();
        let quiet = |_: ProgressEvent| {};
        stop_containers(&engine, &project, &containers, &[], OPTIONS, &quiet).unwrap();
        assert_eq!(engine.calls(), ["stop demo-web-1", "stop demo-db-1"]);

        let stopped = [
            observed("demo-db-1", "db", ContainerState::Exited { exit_code: 0 }),
            observed("demo-web-1", "web", ContainerState::Exited { exit_code: 0 }),
        ];
        let engine = FakeEngine::default();
        start_containers(&engine, &project, &stopped, &[], &quiet).unwrap();
        assert_eq!(engine.calls(), ["start demo-db-1", "start demo-web-1"]);
        let engine = FakeEngine::default();
        start_containers(&engine, &project, &containers, &[], &quiet).unwrap();
        assert!(engine.calls().is_empty());
        stop_containers(
            &engine,
            &project,
            &stopped,
            &["web".into()],
            OPTIONS,
            &quiet,
        )
        .unwrap();
        assert!(engine.calls().is_empty());
    }

    #[test]
    fn a_paused_container_is_stopped() {
        let project = project(WEB_ON_DB);
        let containers = [
            observed("demo-db-1", "db", ContainerState::Paused),
            observed("demo-web-1", "web", ContainerState::Exited { exit_code: 0 }),
        ];
        let engine = FakeEngine::default();
        stop_containers(&engine, &project, &containers, &[], OPTIONS, &|_| {}).unwrap();
        assert_eq!(engine.calls(), ["stop demo-db-1"]);
    }

    #[test]
    fn rm_removes_each_container_and_reports_it() {
        let containers = [
            observed("demo-db-1", "db", ContainerState::Exited { exit_code: 0 }),
            observed("demo-web-1", "web", ContainerState::Created),
        ];
        let chosen: Vec<&ObservedContainer> = containers.iter().collect();
        let engine = FakeEngine::default();
        let lines = Mutex::new(Vec::new());
        let progress = |event: ProgressEvent| lines.lock().unwrap().push(event.to_string());
        let errors = remove_containers(&engine, &chosen, true, 1, &progress);
        assert!(errors.is_empty(), "{errors:?}");
        let mut calls = engine.calls();
        calls.sort();
        assert_eq!(calls, ["remove demo-db-1 true", "remove demo-web-1 true"]);
        let lines = lines.into_inner().unwrap();
        assert!(lines.contains(&" Container demo-web-1  Removed".to_string()));
        assert_eq!(lines.len(), 4, "{lines:?}");
    }
}
