//! The reconciliation planner: what `up` and `down` must do to get from the containers
//! that exist to the project the Compose files describe.
//!
//! Planning is pure: it reads the desired services and the containers a backend listed,
//! and returns ordered actions without touching anything, so every decision can be tested
//! and printed before it is carried out. The rules are Docker Compose v2's:
//!
//! - Replica `n` of a service is named `<project>-<service>-<n>`, or `container_name`
//!   (which limits the service to one replica).
//! - A container whose config-hash label differs from the service's hash is recreated;
//!   an unchanged stopped one is started again; an unchanged running one is left alone.
//! - Scaling down removes outdated containers first, then the highest numbers; scaling up
//!   creates the lowest free numbers (Compose counts on from the highest; filling gaps
//!   keeps `--index` and names dense, and gives the same names when there is no gap).
//! - Containers of services no longer in the project are orphans: reported, and removed
//!   only with `--remove-orphans`. One-off (`run`) containers are never converged; stopped
//!   ones count as orphans, as in Compose.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use indexmap::IndexMap;

use super::labels::{ContainerIdentity, LabelError, Labels};
use crate::graph::{Dependency, GraphError, ServiceGraph};
use crate::project::hash::service_hash;
use crate::project::model::{Project, Service};

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{first} and {second} are incompatible: use one of them")]
    IncompatibleFlags {
        first: &'static str,
        second: &'static str,
    },
    #[error("no such service: {service}")]
    NoSuchService { service: String },
    #[error(
        "services.{service}.container_name: {container_name:?} can't be used with {replicas} replicas, as container names must be unique: remove `container_name` or run one replica"
    )]
    ContainerNameWithReplicas {
        service: String,
        container_name: String,
        replicas: u32,
    },
    #[error("services.{service}.{key}: invalid replica count {value}: use a number from 0")]
    InvalidReplicas {
        service: String,
        key: &'static str,
        value: i64,
    },
    #[error("services.{service}: cannot compute the configuration hash: {message}")]
    Hash { service: String, message: String },
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// A container's state as the backend reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    /// Waiting for its restart policy to start it again.
    Restarting,
    Exited {
        exit_code: i32,
    },
    /// Failed to stop or be removed; it cannot be started again.
    Dead,
}

impl ContainerState {
    /// The word Docker uses for the state (`docker ps`'s `State` column).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Exited { .. } => "exited",
            Self::Dead => "dead",
        }
    }

    fn is_stopped(&self) -> bool {
        matches!(self, Self::Exited { .. } | Self::Dead)
    }
}

/// A container of the project, as the backend lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub service: String,
    /// The replica number; `None` on one-off containers.
    pub number: Option<u32>,
    pub config_hash: String,
    pub state: ContainerState,
    pub oneoff: bool,
    pub labels: Labels,
}

impl ObservedContainer {
    /// Builds the observation from the container's labels (see [`ContainerIdentity`]).
    pub fn from_labels(
        id: &str,
        name: &str,
        state: ContainerState,
        labels: Labels,
    ) -> Result<Self, LabelError> {
        let identity = ContainerIdentity::from_labels(name, &labels)?;
        Ok(Self {
            id: id.to_owned(),
            name: name.to_owned(),
            service: identity.service,
            number: identity.number,
            config_hash: identity.config_hash,
            state,
            oneoff: identity.oneoff,
            labels,
        })
    }

    fn reference(&self) -> ContainerRef {
        ContainerRef {
            id: self.id.clone(),
            name: self.name.clone(),
        }
    }

    fn image_digest(&self) -> Option<&str> {
        self.labels
            .get(super::labels::IMAGE_DIGEST)
            .map(String::as_str)
    }
}

/// An existing container an action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    pub id: String,
    pub name: String,
}

/// What `up` wants of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    pub name: String,
    /// `--scale`, else `scale`, else `deploy.replicas`, else 1.
    pub replicas: u32,
    /// [`service_hash`] of the service; containers with another hash are outdated.
    pub config_hash: String,
    /// The explicit `container_name`; only valid with at most one replica.
    pub container_name: Option<String>,
    /// The digest the service's image resolves to, when known; a container labelled with
    /// another digest is recreated. `None` skips the comparison.
    pub image_digest: Option<String>,
    /// Every `depends_on` entry.
    pub depends_on: Vec<String>,
    /// The `depends_on` entries with `restart: true`: recreating one of them restarts
    /// this service's running containers.
    pub restarts_with: Vec<String>,
    /// Services whose container this one joins (`network_mode`, `ipc`, `pid`:
    /// `service:X`, `volumes_from`); recreating them forces recreating this one, whose
    /// reference to the old container would be stale.
    pub shares_with: Vec<String>,
}

impl DesiredService {
    /// The desired state of `service`, with `scale` (the `--scale` flag) overriding the
    /// replica count of the file.
    pub fn from_service(
        name: &str,
        service: &Service,
        scale: Option<u32>,
    ) -> Result<Self, PlanError> {
        let replicas = match scale {
            Some(replicas) => replicas,
            None => configured_replicas(name, service)?,
        };
        let container_name =
            (!service.container_name.is_empty()).then(|| service.container_name.clone());
        check_container_name(name, container_name.as_deref(), replicas)?;
        let config_hash = service_hash(service).map_err(|err| PlanError::Hash {
            service: name.to_owned(),
            message: err.to_string(),
        })?;
        Ok(Self {
            name: name.to_owned(),
            replicas,
            config_hash,
            container_name,
            image_digest: None,
            depends_on: service.depends_on.keys().cloned().collect(),
            restarts_with: service
                .depends_on
                .iter()
                .filter(|(_, dependency)| dependency.restart)
                .map(|(dependency, _)| dependency.clone())
                .collect(),
            shares_with: shared_services(service),
        })
    }

    /// The name of replica `number`.
    pub fn container_name(&self, project: &str, number: u32) -> String {
        match &self.container_name {
            Some(name) => name.clone(),
            None => format!("{project}-{}-{number}", self.name),
        }
    }
}

/// The desired state of every service of `project`, in declaration order; `scale` holds
/// the `--scale SERVICE=N` overrides.
pub fn desired_services(
    project: &Project,
    scale: &IndexMap<String, u32>,
) -> Result<Vec<DesiredService>, PlanError> {
    if let Some(unknown) = scale
        .keys()
        .find(|name| !project.services.contains_key(*name))
    {
        return Err(PlanError::NoSuchService {
            service: unknown.clone(),
        });
    }
    project
        .services
        .iter()
        .map(|(name, service)| {
            DesiredService::from_service(name, service, scale.get(name).copied())
        })
        .collect()
}

/// Compose reads `scale` first, then `deploy.replicas`.
fn configured_replicas(name: &str, service: &Service) -> Result<u32, PlanError> {
    let (key, value) = match (
        service.scale,
        service.deploy.as_ref().and_then(|d| d.replicas),
    ) {
        (Some(scale), _) => ("scale", scale),
        (None, Some(replicas)) => ("deploy.replicas", replicas),
        (None, None) => return Ok(1),
    };
    u32::try_from(value).map_err(|_| PlanError::InvalidReplicas {
        service: name.to_owned(),
        key,
        value,
    })
}

fn check_container_name(
    service: &str,
    container_name: Option<&str>,
    replicas: u32,
) -> Result<(), PlanError> {
    match container_name {
        Some(container_name) if replicas > 1 => Err(PlanError::ContainerNameWithReplicas {
            service: service.to_owned(),
            container_name: container_name.to_owned(),
            replicas,
        }),
        _ => Ok(()),
    }
}

/// The services named by `service:X` namespace modes and by `volumes_from`.
fn shared_services(service: &Service) -> Vec<String> {
    let modes = [&service.network_mode, &service.ipc, &service.pid]
        .into_iter()
        .filter_map(|mode| mode.strip_prefix("service:"));
    let volumes_from = service
        .volumes_from
        .iter()
        .filter(|source| !source.starts_with("container:"))
        .filter_map(|source| source.split(':').next());
    let mut shared: Vec<String> = Vec::new();
    for name in modes.chain(volumes_from) {
        if !name.is_empty() && !shared.iter().any(|s| s == name) {
            shared.push(name.to_owned());
        }
    }
    shared
}

/// `up`'s flags that change the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpOptions {
    /// `up SERVICE...`; empty means every service.
    pub services: Vec<String>,
    /// `--no-deps`: leave the selected services' dependencies alone.
    pub no_deps: bool,
    /// `--force-recreate`: recreate the selected services' containers even if unchanged.
    pub force_recreate: bool,
    /// `--no-recreate`: never recreate an existing container.
    pub no_recreate: bool,
    /// `--always-recreate-deps`: recreate the dependencies pulled in by the selection.
    pub always_recreate_deps: bool,
    /// `--remove-orphans`.
    pub remove_orphans: bool,
    /// `--no-start` (`create`): create containers but start none.
    pub no_start: bool,
    /// Services of the Compose files that are not active (profiles): their containers
    /// are neither converged nor orphans.
    pub inactive_services: Vec<String>,
}

/// Why an existing container is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecreateReason {
    /// Its config-hash label differs from the service's.
    ConfigChanged,
    /// Its image label names another digest than the service's image.
    ImageChanged,
    /// `--force-recreate` or `--always-recreate-deps`.
    Forced,
    /// It joins a container of this service, which is being recreated.
    SharesWith(String),
    /// A dead container cannot be started again.
    Dead,
}

impl fmt::Display for RecreateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConfigChanged => f.write_str("configuration changed"),
            Self::ImageChanged => f.write_str("image changed"),
            Self::Forced => f.write_str("forced"),
            Self::SharesWith(service) => write!(f, "{service} recreated"),
            Self::Dead => f.write_str("dead"),
        }
    }
}

/// One step of converging a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create replica `number` named `name` (then start it unless `--no-start`).
    Create { number: u32, name: String },
    /// Replace `container` by a new replica `number` named `name`, keeping its volumes.
    Recreate {
        container: ContainerRef,
        number: u32,
        name: String,
        reason: RecreateReason,
    },
    /// Start a stopped container that is up to date.
    Start { container: ContainerRef },
    /// Stop and start a running container because `dependency`, which it depends on
    /// with `restart: true`, is recreated; stop it before the dependency is replaced.
    Restart {
        container: ContainerRef,
        dependency: String,
    },
    /// Stop and remove the container (scale down, or a duplicate replica number).
    Remove { container: ContainerRef },
    /// Nothing to do.
    Keep { container: ContainerRef },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create { name, .. } => write!(f, "create {name}"),
            Self::Recreate {
                container,
                name,
                reason,
                ..
            } if *name != container.name => {
                write!(f, "recreate {} as {name} ({reason})", container.name)
            }
            Self::Recreate {
                container, reason, ..
            } => write!(f, "recreate {} ({reason})", container.name),
            Self::Start { container } => write!(f, "start {}", container.name),
            Self::Restart {
                container,
                dependency,
            } => write!(f, "restart {} ({dependency} recreated)", container.name),
            Self::Remove { container } => write!(f, "remove {}", container.name),
            Self::Keep { container } => write!(f, "keep {}", container.name),
        }
    }
}

/// The actions for one service, in the order to carry them out: removals, then the
/// existing replicas by number, then the new ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    pub service: String,
    pub actions: Vec<Action>,
}

/// What `up` (or `create`) must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub project: String,
    /// The services to converge, dependencies first.
    pub services: Vec<ServicePlan>,
    /// Containers of services no longer in the project, and stopped one-off containers.
    pub orphans: Vec<ContainerRef>,
    /// Whether the orphans are to be removed (before converging the services).
    pub remove_orphans: bool,
    /// Whether containers are started after being created (false with `--no-start`).
    pub start: bool,
}

impl Plan {
    /// Compose's warning when orphans are found and left in place.
    pub fn orphan_warning(&self) -> Option<String> {
        if self.remove_orphans || self.orphans.is_empty() {
            return None;
        }
        let names: Vec<&str> = self.orphans.iter().map(|c| c.name.as_str()).collect();
        Some(format!(
            "Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            names.join(", ")
        ))
    }

    /// The actions of `service`, if it is converged.
    pub fn service(&self, service: &str) -> Option<&ServicePlan> {
        self.services.iter().find(|s| s.service == service)
    }
}

/// One line per action: `web: recreate demo-web-1 (configuration changed)`.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.remove_orphans {
            "remove"
        } else {
            "found"
        };
        for orphan in &self.orphans {
            writeln!(f, "orphan: {verb} {}", orphan.name)?;
        }
        for service in &self.services {
            for action in &service.actions {
                writeln!(f, "{}: {action}", service.service)?;
            }
        }
        Ok(())
    }
}

/// When to replace an existing container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecreatePolicy {
    /// When it is outdated (the default).
    Diverged,
    /// Always.
    Force,
    /// Never.
    Never,
}

/// Plans `up` for `project_name`: converges the selected services (and, unless
/// `no_deps`, their dependencies) from `observed` to `desired`.
pub fn plan(
    project_name: &str,
    desired: &[DesiredService],
    observed: &[ObservedContainer],
    options: &UpOptions,
) -> Result<Plan, PlanError> {
    check_flags(options)?;
    for service in desired {
        check_container_name(
            &service.name,
            service.container_name.as_deref(),
            service.replicas,
        )?;
    }
    let graph = dependency_graph(desired)?;
    let explicit = selected_services(desired, options)?;
    let targets: Vec<&str> = if options.services.is_empty() || options.no_deps {
        explicit.clone()
    } else {
        graph.with_dependencies(&explicit)
    };

    let mut recreated: HashSet<String> = HashSet::new();
    let mut services = Vec::new();
    for name in graph.start_order() {
        let Some(service) = desired.iter().find(|s| s.name == name) else {
            continue;
        };
        if !targets.contains(&name) {
            continue;
        }
        let policy = recreate_policy(options, explicit.contains(&name));
        let containers: Vec<&ObservedContainer> = observed
            .iter()
            .filter(|c| !c.oneoff && c.service == name)
            .collect();
        let context = ServiceContext {
            project: project_name,
            service,
            policy,
            start: !options.no_start,
            recreated: &recreated,
        };
        let service_plan = context.plan(&containers);
        if service_plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Recreate { .. }))
        {
            recreated.insert(name.to_owned());
        }
        services.push(service_plan);
    }

    Ok(Plan {
        project: project_name.to_owned(),
        services,
        orphans: orphans(desired, &options.inactive_services, observed),
        remove_orphans: options.remove_orphans,
        start: !options.no_start,
    })
}

fn check_flags(options: &UpOptions) -> Result<(), PlanError> {
    if options.force_recreate && options.no_recreate {
        return Err(PlanError::IncompatibleFlags {
            first: "--force-recreate",
            second: "--no-recreate",
        });
    }
    if options.always_recreate_deps && options.no_recreate {
        return Err(PlanError::IncompatibleFlags {
            first: "--always-recreate-deps",
            second: "--no-recreate",
        });
    }
    Ok(())
}

/// `depends_on` entries outside `desired` (disabled, or not required) are dropped: the
/// loader has already rejected the invalid ones.
fn dependency_graph(desired: &[DesiredService]) -> Result<ServiceGraph, GraphError> {
    ServiceGraph::new(desired.iter().map(|service| {
        (
            service.name.as_str(),
            service
                .depends_on
                .iter()
                .map(|dependency| Dependency::optional(dependency.as_str())),
        )
    }))
}

/// The services named on the command line, or every service.
fn selected_services<'a>(
    desired: &'a [DesiredService],
    options: &'a UpOptions,
) -> Result<Vec<&'a str>, PlanError> {
    if options.services.is_empty() {
        return Ok(desired.iter().map(|s| s.name.as_str()).collect());
    }
    options
        .services
        .iter()
        .map(|name| {
            if desired.iter().any(|s| s.name == *name) {
                Ok(name.as_str())
            } else {
                Err(PlanError::NoSuchService {
                    service: name.clone(),
                })
            }
        })
        .collect()
}

/// Selected services follow `--force-recreate`; dependencies pulled in by the selection
/// follow `--always-recreate-deps`; `--no-recreate` applies to all.
fn recreate_policy(options: &UpOptions, explicitly_selected: bool) -> RecreatePolicy {
    let forced = if explicitly_selected {
        options.force_recreate
    } else {
        options.always_recreate_deps
    };
    if options.no_recreate {
        RecreatePolicy::Never
    } else if forced {
        RecreatePolicy::Force
    } else {
        RecreatePolicy::Diverged
    }
}

/// Containers whose service the project does not define, and stopped one-off containers.
fn orphans(
    desired: &[DesiredService],
    inactive: &[String],
    observed: &[ObservedContainer],
) -> Vec<ContainerRef> {
    let known: HashSet<&str> = desired
        .iter()
        .map(|s| s.name.as_str())
        .chain(inactive.iter().map(String::as_str))
        .collect();
    let mut orphans: Vec<ContainerRef> = observed
        .iter()
        .filter(|c| is_orphan(c, &known))
        .map(ObservedContainer::reference)
        .collect();
    orphans.sort_by(|a, b| a.name.cmp(&b.name));
    orphans
}

fn is_orphan(container: &ObservedContainer, known_services: &HashSet<&str>) -> bool {
    if container.oneoff {
        container.state.is_stopped()
    } else {
        !known_services.contains(container.service.as_str())
    }
}

/// Everything needed to plan one service.
struct ServiceContext<'a> {
    project: &'a str,
    service: &'a DesiredService,
    policy: RecreatePolicy,
    start: bool,
    /// Services already planned with at least one recreated container.
    recreated: &'a HashSet<String>,
}

impl ServiceContext<'_> {
    fn plan(&self, containers: &[&ObservedContainer]) -> ServicePlan {
        let (kept, mut removed) = self.split_kept_and_removed(containers);
        // Highest numbers go first, as a scale down reads best.
        removed.sort_by(|a, b| b.number.cmp(&a.number).then(a.name.cmp(&b.name)));
        let mut actions: Vec<Action> = removed
            .iter()
            .map(|c| Action::Remove {
                container: c.reference(),
            })
            .collect();
        actions.extend(
            kept.iter()
                .map(|(c, number)| self.existing_action(c, *number)),
        );
        let used: BTreeSet<u32> = kept.iter().map(|(_, number)| *number).collect();
        let missing = (self.service.replicas as usize).saturating_sub(kept.len());
        actions.extend(
            lowest_free_numbers(&used, missing).map(|number| Action::Create {
                number,
                name: self.service.container_name(self.project, number),
            }),
        );
        ServicePlan {
            service: self.service.name.clone(),
            actions,
        }
    }

    /// Up to `replicas` containers are kept, up-to-date and low numbers first, each with
    /// its number; the rest, and containers whose number another already holds (left
    /// over from an interrupted recreate), are removed.
    fn split_kept_and_removed<'c>(
        &self,
        containers: &[&'c ObservedContainer],
    ) -> (
        Vec<(&'c ObservedContainer, u32)>,
        Vec<&'c ObservedContainer>,
    ) {
        let mut ranked: Vec<(&ObservedContainer, bool)> = containers
            .iter()
            .map(|c| (*c, self.recreate_reason(c).is_some()))
            .collect();
        ranked.sort_by(|(a, a_outdated), (b, b_outdated)| {
            a_outdated
                .cmp(b_outdated)
                .then(
                    a.number
                        .unwrap_or(u32::MAX)
                        .cmp(&b.number.unwrap_or(u32::MAX)),
                )
                .then(a.name.cmp(&b.name))
        });
        let mut taken = BTreeSet::new();
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for (container, _) in ranked {
            match container.number {
                Some(number)
                    if kept.len() < self.service.replicas as usize && taken.insert(number) =>
                {
                    kept.push((container, number));
                }
                _ => removed.push(container),
            }
        }
        kept.sort_by_key(|(_, number)| *number);
        (kept, removed)
    }

    fn existing_action(&self, container: &ObservedContainer, number: u32) -> Action {
        if let Some(reason) = self.recreate_reason(container) {
            return Action::Recreate {
                container: container.reference(),
                number,
                name: self.service.container_name(self.project, number),
                reason,
            };
        }
        let reference = container.reference();
        match container.state {
            ContainerState::Created | ContainerState::Exited { .. } if self.start => {
                Action::Start {
                    container: reference,
                }
            }
            ContainerState::Running | ContainerState::Restarting if self.start => {
                match self.recreated_restart_dependency() {
                    Some(dependency) => Action::Restart {
                        container: reference,
                        dependency: dependency.to_owned(),
                    },
                    None => Action::Keep {
                        container: reference,
                    },
                }
            }
            _ => Action::Keep {
                container: reference,
            },
        }
    }

    /// Why `container` must be replaced under the policy, if it must.
    fn recreate_reason(&self, container: &ObservedContainer) -> Option<RecreateReason> {
        match self.policy {
            RecreatePolicy::Never => None,
            RecreatePolicy::Force => Some(RecreateReason::Forced),
            RecreatePolicy::Diverged => self.divergence(container),
        }
    }

    fn divergence(&self, container: &ObservedContainer) -> Option<RecreateReason> {
        if container.config_hash != self.service.config_hash {
            return Some(RecreateReason::ConfigChanged);
        }
        if let Some(digest) = &self.service.image_digest {
            if container.image_digest() != Some(digest.as_str()) {
                return Some(RecreateReason::ImageChanged);
            }
        }
        if let Some(parent) = self
            .service
            .shares_with
            .iter()
            .find(|parent| self.recreated.contains(*parent))
        {
            return Some(RecreateReason::SharesWith(parent.clone()));
        }
        (container.state == ContainerState::Dead).then_some(RecreateReason::Dead)
    }

    fn recreated_restart_dependency(&self) -> Option<&str> {
        self.service
            .restarts_with
            .iter()
            .find(|dependency| self.recreated.contains(*dependency))
            .map(String::as_str)
    }
}

/// The `count` smallest numbers from 1 that are not in `used`.
fn lowest_free_numbers(used: &BTreeSet<u32>, count: usize) -> impl Iterator<Item = u32> + '_ {
    (1..=u32::MAX).filter(|n| !used.contains(n)).take(count)
}

/// `down`'s flags that change the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownOptions {
    /// `-v`: remove named volumes and the containers' anonymous volumes.
    pub volumes: bool,
    /// `--remove-orphans`: also remove the containers of services the project no
    /// longer defines.
    pub remove_orphans: bool,
}

/// A container `down` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRemoval {
    pub container: ContainerRef,
    pub service: String,
    /// Remove its anonymous volumes too (`-v`; never for orphans, as in Compose).
    pub anonymous_volumes: bool,
    pub orphan: bool,
}

/// A project network or volume, by its key in the Compose file and its engine name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRef {
    pub key: String,
    pub name: String,
}

/// What `down` must remove, in order: containers (dependents before their dependencies,
/// then orphans), then networks, then volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownPlan {
    pub project: String,
    pub containers: Vec<ContainerRemoval>,
    /// Orphans left in place (without `--remove-orphans`).
    pub orphans_left: Vec<ContainerRef>,
    pub networks: Vec<ResourceRef>,
    pub volumes: Vec<ResourceRef>,
}

impl DownPlan {
    /// Compose warns when there is nothing to remove at all.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }
}

/// One line per removal: `remove container demo-web-1`.
impl fmt::Display for DownPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for removal in &self.containers {
            let kind = if removal.orphan {
                "orphan"
            } else {
                "container"
            };
            write!(f, "remove {kind} {}", removal.container.name)?;
            if removal.anonymous_volumes {
                f.write_str(" with anonymous volumes")?;
            }
            writeln!(f)?;
        }
        for orphan in &self.orphans_left {
            writeln!(f, "keep orphan {}", orphan.name)?;
        }
        for network in &self.networks {
            writeln!(f, "remove network {}", network.name)?;
        }
        for volume in &self.volumes {
            writeln!(f, "remove volume {}", volume.name)?;
        }
        Ok(())
    }
}

/// Plans `down` for `project`, whose containers the backend listed as `observed`.
///
/// Load the project with every profile enabled, so that containers of services behind a
/// profile are removed with the rest rather than taken for orphans. External networks
/// and volumes are never removed.
pub fn plan_down(
    project: &Project,
    observed: &[ObservedContainer],
    options: DownOptions,
) -> Result<DownPlan, PlanError> {
    let graph = ServiceGraph::new(project.services.iter().map(|(name, service)| {
        (
            name.as_str(),
            service
                .depends_on
                .keys()
                .map(|dependency| Dependency::optional(dependency.as_str())),
        )
    }))?;
    let mut containers = Vec::new();
    for service in graph.stop_order() {
        let mut of_service: Vec<&ObservedContainer> = observed
            .iter()
            // One-off (`run`) containers go with their service, as in Compose v1:
            // Compose v2 leaves them to `--remove-orphans`, and then cannot remove the
            // networks and volumes they hold (docker/compose#10806).
            .filter(|c| c.service == service)
            .collect();
        of_service.sort_by(|a, b| a.number.cmp(&b.number).then(a.name.cmp(&b.name)));
        containers.extend(of_service.into_iter().map(|c| ContainerRemoval {
            container: c.reference(),
            service: c.service.clone(),
            anonymous_volumes: options.volumes,
            orphan: false,
        }));
    }

    let known: HashSet<&str> = project.services.keys().map(String::as_str).collect();
    let mut found_orphans: Vec<&ObservedContainer> = observed
        .iter()
        .filter(|c| !known.contains(c.service.as_str()) && is_orphan(c, &known))
        .collect();
    found_orphans.sort_by(|a, b| a.name.cmp(&b.name));
    let mut orphans_left = Vec::new();
    for orphan in found_orphans {
        if options.remove_orphans {
            containers.push(ContainerRemoval {
                container: orphan.reference(),
                service: orphan.service.clone(),
                anonymous_volumes: false,
                orphan: true,
            });
        } else {
            orphans_left.push(orphan.reference());
        }
    }

    let networks = project
        .networks
        .iter()
        .filter(|(_, network)| !network.external)
        .map(|(key, network)| resource(&project.name, key, &network.name))
        .collect();
    let volumes = if options.volumes {
        project
            .volumes
            .iter()
            .filter(|(_, volume)| !volume.external)
            .map(|(key, volume)| resource(&project.name, key, &volume.name))
            .collect()
    } else {
        Vec::new()
    };
    Ok(DownPlan {
        project: project.name.clone(),
        containers,
        orphans_left,
        networks,
        volumes,
    })
}

/// Normalization names every resource; an unnamed one gets Compose's `<project>_<key>`.
fn resource(project: &str, key: &str, name: &str) -> ResourceRef {
    let name = if name.is_empty() {
        format!("{project}_{key}")
    } else {
        name.to_owned()
    };
    ResourceRef {
        key: key.to_owned(),
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::labels::{ContainerLabels, ProjectLabels};
    use crate::project::model;

    fn project(services: &str) -> Project {
        let yaml = format!("name: demo\nservices:\n{services}");
        model::from_value(serde_yaml::from_str(&yaml).unwrap()).unwrap()
    }

    fn desired(services: &str) -> Vec<DesiredService> {
        desired_services(&project(services), &IndexMap::new()).unwrap()
    }

    const WEB_AND_DB: &str = "  db: {image: postgres}\n  web:\n    image: nginx\n    depends_on: {db: {condition: service_started}}\n";

    fn observed(service: &DesiredService, number: u32, state: ContainerState) -> ObservedContainer {
        let name = service.container_name("demo", number);
        ObservedContainer {
            id: format!("id-{name}"),
            name,
            service: service.name.clone(),
            number: Some(number),
            config_hash: service.config_hash.clone(),
            state,
            oneoff: false,
            labels: Labels::new(),
        }
    }

    fn find<'a>(desired: &'a [DesiredService], name: &str) -> &'a DesiredService {
        desired.iter().find(|s| s.name == name).unwrap()
    }

    /// What the backend lists after carrying out `plan` for `desired`.
    fn carry_out(
        plan: &Plan,
        desired: &[DesiredService],
        before: &[ObservedContainer],
    ) -> Vec<ObservedContainer> {
        let state = if plan.start {
            ContainerState::Running
        } else {
            ContainerState::Created
        };
        let mut after: Vec<ObservedContainer> = before
            .iter()
            .filter(|c| !(plan.remove_orphans && plan.orphans.iter().any(|o| o.id == c.id)))
            .cloned()
            .collect();
        for service_plan in &plan.services {
            let service = find(desired, &service_plan.service);
            for action in &service_plan.actions {
                match action {
                    Action::Create { number, .. } => after.push(observed(service, *number, state)),
                    Action::Recreate {
                        container, number, ..
                    } => {
                        after.retain(|c| c.id != container.id);
                        after.push(observed(service, *number, state));
                    }
                    Action::Remove { container } => after.retain(|c| c.id != container.id),
                    Action::Start { container } | Action::Restart { container, .. } => {
                        for c in after.iter_mut().filter(|c| c.id == container.id) {
                            c.state = ContainerState::Running;
                        }
                    }
                    Action::Keep { .. } => {}
                }
            }
        }
        after
    }

    fn up(
        desired: &[DesiredService],
        observed: &[ObservedContainer],
        options: &UpOptions,
    ) -> String {
        plan("demo", desired, observed, options)
            .unwrap()
            .to_string()
    }

    #[test]
    fn first_up_creates_every_replica_dependencies_first() {
        let desired = desired("  web:\n    image: nginx\n    scale: 2\n    depends_on: {db: {condition: service_healthy}}\n  db: {image: postgres}\n");
        assert_eq!(
            up(&desired, &[], &UpOptions::default()),
            "db: create demo-db-1\nweb: create demo-web-1\nweb: create demo-web-2\n"
        );
    }

    #[test]
    fn up_twice_with_nothing_changed_keeps_everything() {
        let desired = desired(WEB_AND_DB);
        let first = plan("demo", &desired, &[], &UpOptions::default()).unwrap();
        let running = carry_out(&first, &desired, &[]);
        let again = desired_services(&project(WEB_AND_DB), &IndexMap::new()).unwrap();
        assert_eq!(
            up(&again, &running, &UpOptions::default()),
            "db: keep demo-db-1\nweb: keep demo-web-1\n"
        );
    }

    #[test]
    fn changing_one_service_recreates_only_it() {
        let before = desired(WEB_AND_DB);
        let running: Vec<_> = before
            .iter()
            .map(|s| observed(s, 1, ContainerState::Running))
            .collect();
        let changed = desired(&format!(
            "{WEB_AND_DB}    command: [nginx, -g, daemon off;]\n"
        ));
        let plan = plan("demo", &changed, &running, &UpOptions::default()).unwrap();
        assert_eq!(
            plan.to_string(),
            "db: keep demo-db-1\nweb: recreate demo-web-1 (configuration changed)\n"
        );
        assert_eq!(
            plan.service("web").unwrap().actions[0],
            Action::Recreate {
                container: ContainerRef {
                    id: "id-demo-web-1".into(),
                    name: "demo-web-1".into()
                },
                number: 1,
                name: "demo-web-1".into(),
                reason: RecreateReason::ConfigChanged,
            }
        );
    }

    #[test]
    fn scale_is_not_part_of_the_hash_so_scaling_recreates_nothing() {
        let one = desired("  web: {image: nginx}\n");
        let three = desired("  web: {image: nginx, scale: 3}\n");
        let running = vec![observed(&one[0], 1, ContainerState::Running)];
        assert_eq!(
            up(&three, &running, &UpOptions::default()),
            "web: keep demo-web-1\nweb: create demo-web-2\nweb: create demo-web-3\n"
        );
    }

    #[test]
    fn stopped_unchanged_containers_are_started_again() {
        let desired = desired("  web: {image: nginx, scale: 3}\n");
        let web = &desired[0];
        let containers = vec![
            observed(web, 1, ContainerState::Exited { exit_code: 137 }),
            observed(web, 2, ContainerState::Created),
            observed(web, 3, ContainerState::Paused),
        ];
        assert_eq!(
            up(&desired, &containers, &UpOptions::default()),
            "web: start demo-web-1\nweb: start demo-web-2\nweb: keep demo-web-3\n"
        );
    }

    #[test]
    fn no_start_creates_without_starting_anything() {
        let desired = desired("  web: {image: nginx, scale: 2}\n");
        let containers = vec![observed(
            &desired[0],
            1,
            ContainerState::Exited { exit_code: 0 },
        )];
        let options = UpOptions {
            no_start: true,
            ..UpOptions::default()
        };
        let plan = plan("demo", &desired, &containers, &options).unwrap();
        assert!(!plan.start);
        assert_eq!(
            plan.to_string(),
            "web: keep demo-web-1\nweb: create demo-web-2\n"
        );
    }

    #[test]
    fn scale_down_removes_the_highest_numbers_first() {
        let three = desired("  web: {image: nginx, scale: 3}\n");
        let containers: Vec<_> = (1..=3)
            .map(|n| observed(&three[0], n, ContainerState::Running))
            .collect();
        let one = desired("  web: {image: nginx, scale: 1}\n");
        assert_eq!(
            up(&one, &containers, &UpOptions::default()),
            "web: remove demo-web-3\nweb: remove demo-web-2\nweb: keep demo-web-1\n"
        );
        let none = desired("  web: {image: nginx, scale: 0}\n");
        assert_eq!(
            up(&none, &containers, &UpOptions::default()),
            "web: remove demo-web-3\nweb: remove demo-web-2\nweb: remove demo-web-1\n"
        );
    }

    #[test]
    fn scale_down_removes_outdated_containers_before_up_to_date_ones() {
        let desired = desired("  web: {image: nginx, scale: 2}\n");
        let mut containers: Vec<_> = (1..=3)
            .map(|n| observed(&desired[0], n, ContainerState::Running))
            .collect();
        containers[0].config_hash = "old".into();
        assert_eq!(
            up(&desired, &containers, &UpOptions::default()),
            "web: remove demo-web-1\nweb: keep demo-web-2\nweb: keep demo-web-3\n"
        );
    }

    #[test]
    fn scale_up_creates_the_lowest_free_numbers() {
        let desired = desired("  web: {image: nginx, scale: 3}\n");
        let web = &desired[0];
        let one = vec![observed(web, 1, ContainerState::Running)];
        assert_eq!(
            up(&desired, &one, &UpOptions::default()),
            "web: keep demo-web-1\nweb: create demo-web-2\nweb: create demo-web-3\n"
        );
        let with_gap = vec![
            observed(web, 1, ContainerState::Running),
            observed(web, 3, ContainerState::Running),
        ];
        let plan = plan("demo", &desired, &with_gap, &UpOptions::default()).unwrap();
        assert_eq!(
            plan.service("web").unwrap().actions.last(),
            Some(&Action::Create {
                number: 2,
                name: "demo-web-2".into()
            })
        );
    }

    #[test]
    fn scale_flag_overrides_the_file_and_must_name_a_service() {
        let project = project("  web: {image: nginx, scale: 2}\n  db: {image: postgres}\n");
        let scale: IndexMap<String, u32> = [("web".to_owned(), 5)].into_iter().collect();
        let desired = desired_services(&project, &scale).unwrap();
        assert_eq!(find(&desired, "web").replicas, 5);
        assert_eq!(find(&desired, "db").replicas, 1);
        let scale: IndexMap<String, u32> = [("wbe".to_owned(), 2)].into_iter().collect();
        assert_eq!(
            desired_services(&project, &scale).unwrap_err().to_string(),
            "no such service: wbe"
        );
    }

    #[test]
    fn replicas_come_from_scale_then_deploy_and_must_not_be_negative() {
        let desired = desired("  a: {image: x, deploy: {replicas: 4}}\n  b: {image: x}\n");
        assert_eq!(find(&desired, "a").replicas, 4);
        assert_eq!(find(&desired, "b").replicas, 1);
        let err = desired_services(&project("  a: {image: x, scale: -1}\n"), &IndexMap::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "services.a.scale: invalid replica count -1: use a number from 0"
        );
    }

    #[test]
    fn container_name_is_used_and_forbids_more_than_one_replica() {
        let project = project("  db: {image: postgres, container_name: my-db}\n");
        let desired = desired_services(&project, &IndexMap::new()).unwrap();
        assert_eq!(
            up(&desired, &[], &UpOptions::default()),
            "db: create my-db\n"
        );

        let scale: IndexMap<String, u32> = [("db".to_owned(), 2)].into_iter().collect();
        let err = desired_services(&project, &scale).unwrap_err();
        assert_eq!(
            err.to_string(),
            "services.db.container_name: \"my-db\" can't be used with 2 replicas, as container names must be unique: remove `container_name` or run one replica"
        );
        let mut by_hand = desired;
        by_hand[0].replicas = 2;
        assert!(matches!(
            plan("demo", &by_hand, &[], &UpOptions::default()),
            Err(PlanError::ContainerNameWithReplicas { ref service, .. }) if service == "db"
        ));
    }

    #[test]
    fn giving_a_service_a_container_name_recreates_it_under_that_name() {
        let before = desired("  db: {image: postgres}\n");
        let running = vec![observed(&before[0], 1, ContainerState::Running)];
        let named = desired("  db: {image: postgres, container_name: my-db}\n");
        assert_eq!(
            up(&named, &running, &UpOptions::default()),
            "db: recreate demo-db-1 as my-db (configuration changed)\n"
        );
    }

    #[test]
    fn orphans_are_reported_and_removed_only_when_asked() {
        let desired = desired("  web: {image: nginx}\n");
        let web = &desired[0];
        let mut gone = observed(web, 1, ContainerState::Running);
        gone.service = "worker".into();
        gone.name = "demo-worker-1".into();
        gone.id = "id-worker".into();
        let mut profiled = gone.clone();
        profiled.service = "debug".into();
        profiled.name = "demo-debug-1".into();
        profiled.id = "id-debug".into();
        let containers = vec![observed(web, 1, ContainerState::Running), gone, profiled];
        let options = UpOptions {
            inactive_services: vec!["debug".into()],
            ..UpOptions::default()
        };

        let kept = plan("demo", &desired, &containers, &options).unwrap();
        assert_eq!(
            kept.to_string(),
            "orphan: found demo-worker-1\nweb: keep demo-web-1\n"
        );
        assert_eq!(
            kept.orphan_warning().unwrap(),
            "Found orphan containers (demo-worker-1) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up."
        );

        let options = UpOptions {
            remove_orphans: true,
            ..options
        };
        let removed = plan("demo", &desired, &containers, &options).unwrap();
        assert_eq!(
            removed.to_string(),
            "orphan: remove demo-worker-1\nweb: keep demo-web-1\n"
        );
        assert_eq!(removed.orphan_warning(), None);
    }

    #[test]
    fn oneoff_containers_are_never_converged() {
        let desired = desired("  web: {image: nginx}\n");
        let web = &desired[0];
        let mut running_run = observed(web, 1, ContainerState::Running);
        running_run.oneoff = true;
        running_run.number = None;
        running_run.config_hash = "old".into();
        running_run.name = "demo-web-run-1a2b".into();
        running_run.id = "run-1".into();
        let mut finished_run = running_run.clone();
        finished_run.state = ContainerState::Exited { exit_code: 0 };
        finished_run.name = "demo-web-run-3c4d".into();
        finished_run.id = "run-2".into();
        let containers = vec![running_run, finished_run];
        // A running `run` container is not a replica: web still needs one, and it stays.
        assert_eq!(
            up(&desired, &containers, &UpOptions::default()),
            "orphan: found demo-web-run-3c4d\nweb: create demo-web-1\n"
        );
    }

    #[test]
    fn no_recreate_keeps_changed_containers() {
        let before = desired("  web: {image: nginx, scale: 2}\n");
        let containers = vec![
            observed(&before[0], 1, ContainerState::Running),
            observed(&before[0], 2, ContainerState::Exited { exit_code: 1 }),
        ];
        let changed = desired("  web: {image: nginx:2, scale: 2}\n");
        let options = UpOptions {
            no_recreate: true,
            ..UpOptions::default()
        };
        assert_eq!(
            up(&changed, &containers, &options),
            "web: keep demo-web-1\nweb: start demo-web-2\n"
        );
    }

    #[test]
    fn force_recreate_recreates_selected_services_and_deps_only_when_asked() {
        let desired = desired(WEB_AND_DB);
        let containers: Vec<_> = desired
            .iter()
            .map(|s| observed(s, 1, ContainerState::Running))
            .collect();
        let all = UpOptions {
            force_recreate: true,
            ..UpOptions::default()
        };
        assert_eq!(
            up(&desired, &containers, &all),
            "db: recreate demo-db-1 (forced)\nweb: recreate demo-web-1 (forced)\n"
        );
        let web_only = UpOptions {
            services: vec!["web".into()],
            ..all.clone()
        };
        assert_eq!(
            up(&desired, &containers, &web_only),
            "db: keep demo-db-1\nweb: recreate demo-web-1 (forced)\n"
        );
        let with_deps = UpOptions {
            always_recreate_deps: true,
            ..web_only
        };
        assert_eq!(
            up(&desired, &containers, &with_deps),
            "db: recreate demo-db-1 (forced)\nweb: recreate demo-web-1 (forced)\n"
        );
    }

    #[test]
    fn conflicting_recreate_flags_are_rejected() {
        let desired = desired(WEB_AND_DB);
        let options = UpOptions {
            force_recreate: true,
            no_recreate: true,
            ..UpOptions::default()
        };
        assert_eq!(
            plan("demo", &desired, &[], &options)
                .unwrap_err()
                .to_string(),
            "--force-recreate and --no-recreate are incompatible: use one of them"
        );
        let options = UpOptions {
            always_recreate_deps: true,
            no_recreate: true,
            ..UpOptions::default()
        };
        assert!(plan("demo", &desired, &[], &options).is_err());
    }

    #[test]
    fn selected_services_bring_their_dependencies_unless_no_deps() {
        let desired = desired(&format!("{WEB_AND_DB}  cache: {{image: redis}}\n"));
        let selected = UpOptions {
            services: vec!["web".into()],
            ..UpOptions::default()
        };
        assert_eq!(
            up(&desired, &[], &selected),
            "db: create demo-db-1\nweb: create demo-web-1\n"
        );
        let no_deps = UpOptions {
            no_deps: true,
            ..selected
        };
        assert_eq!(up(&desired, &[], &no_deps), "web: create demo-web-1\n");

        // Services left out of the selection are neither converged nor orphans.
        let cache = observed(
            find(&desired, "cache"),
            1,
            ContainerState::Exited { exit_code: 0 },
        );
        let plan = plan("demo", &desired, &[cache], &no_deps).unwrap();
        assert_eq!(plan.to_string(), "web: create demo-web-1\n");

        let unknown = UpOptions {
            services: vec!["wbe".into()],
            ..UpOptions::default()
        };
        assert_eq!(
            super::plan("demo", &desired, &[], &unknown)
                .unwrap_err()
                .to_string(),
            "no such service: wbe"
        );
    }

    #[test]
    fn recreating_a_namespace_parent_recreates_the_services_joining_it() {
        let services = "  vpn: {image: vpn}\n  app:\n    image: app\n    network_mode: service:vpn\n    depends_on: {vpn: {condition: service_started}}\n  other:\n    image: other\n    depends_on: {vpn: {condition: service_started}}\n";
        let before = desired(services);
        let containers: Vec<_> = before
            .iter()
            .map(|s| observed(s, 1, ContainerState::Running))
            .collect();
        let after = desired(&services.replace("image: vpn", "image: vpn:2"));
        assert_eq!(
            up(&after, &containers, &UpOptions::default()),
            "vpn: recreate demo-vpn-1 (configuration changed)\napp: recreate demo-app-1 (vpn recreated)\nother: keep demo-other-1\n"
        );
        assert_eq!(find(&after, "app").shares_with, ["vpn"]);
    }

    #[test]
    fn dependents_with_restart_true_are_restarted_when_a_dependency_is_recreated() {
        let services = "  db: {image: postgres}\n  web:\n    image: nginx\n    depends_on: {db: {condition: service_healthy, restart: true}}\n  worker:\n    image: w\n    depends_on: {db: {condition: service_started}}\n";
        let before = desired(services);
        let containers: Vec<_> = before
            .iter()
            .map(|s| observed(s, 1, ContainerState::Running))
            .collect();
        let after = desired(&services.replace("image: postgres", "image: postgres:17"));
        assert_eq!(
            up(&after, &containers, &UpOptions::default()),
            "db: recreate demo-db-1 (configuration changed)\nweb: restart demo-web-1 (db recreated)\nworker: keep demo-worker-1\n"
        );
        // Unchanged db: nothing restarts.
        assert_eq!(
            up(&before, &containers, &UpOptions::default()),
            "db: keep demo-db-1\nweb: keep demo-web-1\nworker: keep demo-worker-1\n"
        );
    }

    #[test]
    fn dead_and_image_changed_containers_are_recreated() {
        let mut desired = desired("  web: {image: nginx, scale: 2}\n");
        desired[0].image_digest = Some("sha256:new".into());
        let mut one = observed(&desired[0], 1, ContainerState::Dead);
        one.labels.insert(
            crate::orchestrator::labels::IMAGE_DIGEST.into(),
            "sha256:new".into(),
        );
        let mut two = observed(&desired[0], 2, ContainerState::Running);
        two.labels.insert(
            crate::orchestrator::labels::IMAGE_DIGEST.into(),
            "sha256:old".into(),
        );
        assert_eq!(
            up(&desired, &[one, two], &UpOptions::default()),
            "web: recreate demo-web-1 (dead)\nweb: recreate demo-web-2 (image changed)\n"
        );
    }

    #[test]
    fn a_replica_number_held_twice_is_removed_once() {
        let desired = desired("  web: {image: nginx, scale: 2}\n");
        let first = observed(&desired[0], 1, ContainerState::Running);
        let mut leftover = first.clone();
        leftover.id = "id-leftover".into();
        leftover.name = "0123456789ab_demo-web-1".into();
        leftover.config_hash = "old".into();
        assert_eq!(
            up(&desired, &[leftover, first], &UpOptions::default()),
            "web: remove 0123456789ab_demo-web-1\nweb: keep demo-web-1\nweb: create demo-web-2\n"
        );
    }

    #[test]
    fn observed_containers_are_read_from_the_labels_rcompose_writes() {
        let project = project("  web: {image: nginx}\n");
        let web = &project.services["web"];
        let labels_of_project = ProjectLabels {
            name: "demo".into(),
            ..ProjectLabels::default()
        };
        let desired = DesiredService::from_service("web", web, None).unwrap();
        let labels =
            ContainerLabels::replica(&labels_of_project, "web", web, &desired.config_hash, 1)
                .build();
        let container =
            ObservedContainer::from_labels("c0ffee", "demo-web-1", ContainerState::Running, labels)
                .unwrap();
        assert_eq!(container.number, Some(1));
        assert!(!container.oneoff);
        assert_eq!(
            up(&[desired], &[container], &UpOptions::default()),
            "web: keep demo-web-1\n"
        );
    }

    const DOWN_PROJECT: &str = "  proxy:\n    image: nginx\n    depends_on: {web: {condition: service_started}}\n  web:\n    image: app\n    scale: 2\n    depends_on: {db: {condition: service_started}}\n  db: {image: postgres}\nnetworks:\n  default: {}\n  shared: {name: shared-net, external: true}\nvolumes:\n  data: {}\n  cache: {name: my-cache}\n  backups: {external: true}\n";

    fn down_containers(desired: &[DesiredService]) -> Vec<ObservedContainer> {
        let mut containers: Vec<_> = desired
            .iter()
            .flat_map(|s| (1..=s.replicas).map(move |n| observed(s, n, ContainerState::Running)))
            .collect();
        let mut orphan = containers[0].clone();
        orphan.service = "old".into();
        orphan.name = "demo-old-1".into();
        orphan.id = "id-old".into();
        let mut run = containers[0].clone();
        run.oneoff = true;
        run.number = None;
        run.service = "db".into();
        run.name = "demo-db-run-1".into();
        run.id = "id-run".into();
        containers.extend([orphan, run]);
        containers
    }

    #[test]
    fn down_removes_dependents_first_then_networks_and_keeps_volumes() {
        let project = project(DOWN_PROJECT);
        let desired = desired_services(&project, &IndexMap::new()).unwrap();
        let plan = plan_down(&project, &down_containers(&desired), DownOptions::default()).unwrap();
        assert_eq!(
            plan.to_string(),
            "remove container demo-proxy-1\nremove container demo-web-1\nremove container demo-web-2\nremove container demo-db-run-1\nremove container demo-db-1\nkeep orphan demo-old-1\nremove network demo_default\n"
        );
        assert!(!plan.is_empty());
    }

    #[test]
    fn down_with_volumes_and_orphans_removes_everything_the_project_owns() {
        let project = project(DOWN_PROJECT);
        let desired = desired_services(&project, &IndexMap::new()).unwrap();
        let options = DownOptions {
            volumes: true,
            remove_orphans: true,
        };
        let plan = plan_down(&project, &down_containers(&desired), options).unwrap();
        assert_eq!(
            plan.to_string(),
            "remove container demo-proxy-1 with anonymous volumes\nremove container demo-web-1 with anonymous volumes\nremove container demo-web-2 with anonymous volumes\nremove container demo-db-run-1 with anonymous volumes\nremove container demo-db-1 with anonymous volumes\nremove orphan demo-old-1\nremove network demo_default\nremove volume demo_data\nremove volume my-cache\n"
        );
        assert_eq!(
            plan.volumes[1],
            ResourceRef {
                key: "cache".into(),
                name: "my-cache".into()
            }
        );
    }

    #[test]
    fn down_with_nothing_to_remove_is_empty() {
        let project = project("  web: {image: nginx}\nnetworks:\n  ext: {external: true}\n");
        let plan = plan_down(&project, &[], DownOptions::default()).unwrap();
        assert!(plan.is_empty());
        assert_eq!(plan.to_string(), "");
    }
}
