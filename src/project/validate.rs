//! Consistency checks on the normalized model: references between services and resources,
//! mutually exclusive keys, values the engine could not act on, dependency cycles.
//!
//! Every problem is collected, not just the first, so one run shows the user all of them.

use std::fmt;

use super::model::{Project, Service};
use crate::graph::{Dependency, ServiceGraph};

/// All the problems found, one per line.
#[derive(Debug, PartialEq)]
pub struct ValidateError {
    pub problems: Vec<String>,
}

impl fmt::Display for ValidateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.problems.join("\n"))
    }
}

impl std::error::Error for ValidateError {}

const DEPENDENCY_CONDITIONS: [&str; 3] = [
    "service_started",
    "service_healthy",
    "service_completed_successfully",
];
const MOUNT_TYPES: [&str; 6] = ["bind", "volume", "tmpfs", "npipe", "cluster", "image"];

pub fn validate(project: &Project) -> Result<(), ValidateError> {
    let mut problems = Vec::new();
    for (name, service) in &project.services {
        check_service(project, name, service, &mut problems);
    }
    check_container_names(project, &mut problems);
    check_resources(project, &mut problems);
    if let Err(err) = dependency_graph(project) {
        problems.push(err.to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ValidateError { problems })
    }
}

/// The dependency graph of the project's services (required dependencies on missing
/// services are errors, optional ones are dropped).
pub fn dependency_graph(project: &Project) -> Result<ServiceGraph, crate::graph::GraphError> {
    ServiceGraph::new(project.services.iter().map(|(name, service)| {
        let dependencies = service
            .depends_on
            .iter()
            .map(|(dep, condition)| Dependency {
                service: dep.as_str(),
                required: condition.required,
            });
        (name.as_str(), dependencies)
    }))
}

fn check_service(project: &Project, name: &str, service: &Service, problems: &mut Vec<String>) {
    let mut problem =
        |key: &str, message: String| problems.push(format!("services.{name}.{key}: {message}"));

    if service.image.is_empty() && service.build.is_none() {
        problem(
            "image",
            "the service has neither an image nor a build context: set `image` or `build`".into(),
        );
    }
    if !service.network_mode.is_empty() && !service.networks.is_empty() {
        problem(
            "network_mode",
            "`network_mode` and `networks` are mutually exclusive: remove one of them".into(),
        );
    }
    for network in service.networks.keys() {
        if !project.networks.contains_key(network) {
            problem("networks", format!("refers to undefined network {network:?}: declare it under the top-level `networks`"));
        }
    }
    for (dependency, condition) in &service.depends_on {
        if !DEPENDENCY_CONDITIONS.contains(&condition.condition.as_str()) {
            problem(
                &format!("depends_on.{dependency}.condition"),
                format!(
                    "invalid condition {:?}: use one of {}",
                    condition.condition,
                    DEPENDENCY_CONDITIONS.join(", ")
                ),
            );
        }
    }
    for (key, mode) in [
        ("network_mode", &service.network_mode),
        ("ipc", &service.ipc),
        ("pid", &service.pid),
        ("uts", &service.uts),
        ("cgroup", &service.cgroup),
    ] {
        if let Some(target) = mode.strip_prefix("service:") {
            if !project.services.contains_key(target) {
                problem(key, format!("refers to undefined service {target:?}"));
            }
        }
    }
    for source in &service.volumes_from {
        if source.starts_with("container:") {
            continue;
        }
        let target = source.split(':').next().unwrap_or_default();
        if !project.services.contains_key(target) {
            problem(
                "volumes_from",
                format!("refers to undefined service {target:?}"),
            );
        }
    }
    for (index, mount) in service.volumes.iter().enumerate() {
        if !MOUNT_TYPES.contains(&mount.kind.as_str()) {
            problem(
                &format!("volumes.{index}.type"),
                format!(
                    "invalid mount type {:?}: use one of {}",
                    mount.kind,
                    MOUNT_TYPES.join(", ")
                ),
            );
        }
        if mount.target.is_empty() && mount.kind != "npipe" {
            problem(
                &format!("volumes.{index}.target"),
                "a mount needs a target path inside the container".into(),
            );
        }
        if mount.kind == "volume"
            && !mount.source.is_empty()
            && !project.volumes.contains_key(&mount.source)
        {
            problem(
                &format!("volumes.{index}"),
                format!(
                    "refers to undefined volume {:?}: declare it under the top-level `volumes`",
                    mount.source
                ),
            );
        }
        if mount.kind == "bind" && mount.source.is_empty() {
            problem(
                &format!("volumes.{index}.source"),
                "a bind mount needs a source path on the host".into(),
            );
        }
    }
    for secret in &service.secrets {
        if !project.secrets.contains_key(&secret.source) {
            problem(
                "secrets",
                format!(
                    "refers to undefined secret {:?}: declare it under the top-level `secrets`",
                    secret.source
                ),
            );
        }
    }
    if let Some(build) = &service.build {
        for secret in &build.secrets {
            if !project.secrets.contains_key(&secret.source) {
                problem(
                    "build.secrets",
                    format!("refers to undefined secret {:?}", secret.source),
                );
            }
        }
    }
    for config in &service.configs {
        if !project.configs.contains_key(&config.source) {
            problem(
                "configs",
                format!(
                    "refers to undefined config {:?}: declare it under the top-level `configs`",
                    config.source
                ),
            );
        }
    }
    for (index, port) in service.ports.iter().enumerate() {
        if port.target == 0 || port.target > 65535 {
            problem(
                &format!("ports.{index}.target"),
                format!("invalid container port {}: use 1-65535", port.target),
            );
        }
        if !published_port_ok(&port.published) {
            problem(
                &format!("ports.{index}.published"),
                format!(
                    "invalid published port {:?}: use a port 1-65535 or a range like 8000-8010",
                    port.published
                ),
            );
        }
    }
    if let (Some(scale), Some(replicas)) = (
        service.scale,
        service.deploy.as_ref().and_then(|d| d.replicas),
    ) {
        if scale != replicas {
            problem("scale", format!("can't set distinct values on 'scale' ({scale}) and 'deploy.replicas' ({replicas})"));
        }
    }
    if !restart_ok(&service.restart) {
        problem("restart", format!("invalid restart policy {:?}: use no, always, on-failure[:max-retries] or unless-stopped", service.restart));
    }
    if !pull_policy_ok(&service.pull_policy) {
        problem("pull_policy", format!("invalid pull policy {:?}: use always, never, missing, build, daily, weekly or every_<duration>", service.pull_policy));
    }
}

fn published_port_ok(published: &str) -> bool {
    if published.is_empty() {
        return true;
    }
    let valid = |p: &str| p.parse::<u32>().is_ok_and(|n| n <= 65535);
    match published.split_once('-') {
        Some((start, end)) => {
            valid(start) && valid(end) && start.parse::<u32>().ok() <= end.parse::<u32>().ok()
        }
        None => valid(published),
    }
}

fn restart_ok(restart: &str) -> bool {
    match restart.split_once(':') {
        Some(("on-failure", count)) => count.parse::<u32>().is_ok(),
        Some(_) => false,
        None => matches!(
            restart,
            "" | "no" | "always" | "on-failure" | "unless-stopped"
        ),
    }
}

fn pull_policy_ok(policy: &str) -> bool {
    match policy.strip_prefix("every_") {
        Some(interval) => super::model::Duration::parse(interval).is_ok(),
        None => matches!(
            policy,
            "" | "always"
                | "never"
                | "missing"
                | "if_not_present"
                | "build"
                | "daily"
                | "weekly"
                | "refresh"
        ),
    }
}

fn check_container_names(project: &Project, problems: &mut Vec<String>) {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (name, service) in &project.services {
        if service.container_name.is_empty() {
            continue;
        }
        let replicas = service
            .deploy
            .as_ref()
            .and_then(|d| d.replicas)
            .or(service.scale)
            .unwrap_or(1);
        if replicas > 1 {
            problems.push(format!("services.{name}.container_name: {:?} can't be used with more than one replica, as container names must be unique", service.container_name));
        }
        if let Some((other, _)) = seen.iter().find(|(_, c)| *c == service.container_name) {
            problems.push(format!(
                "services.{name}.container_name: {:?} is already used by service {other:?}",
                service.container_name
            ));
        }
        seen.push((name, &service.container_name));
    }
}

fn check_resources(project: &Project, problems: &mut Vec<String>) {
    for (name, network) in &project.networks {
        if network.external {
            let set = [
                ("driver", !network.driver.is_empty()),
                ("driver_opts", !network.driver_opts.is_empty()),
                ("ipam", network.ipam != Default::default()),
                ("internal", network.internal),
                ("attachable", network.attachable),
            ];
            for (key, present) in set {
                if present {
                    problems.push(format!("networks.{name}: conflicting parameters \"external\" and {key:?} specified: an external network is created elsewhere"));
                }
            }
        }
    }
    for (name, volume) in &project.volumes {
        if volume.external {
            for (key, present) in [
                ("driver", !volume.driver.is_empty()),
                ("driver_opts", !volume.driver_opts.is_empty()),
            ] {
                if present {
                    problems.push(format!("volumes.{name}: conflicting parameters \"external\" and {key:?} specified: an external volume is created elsewhere"));
                }
            }
        }
    }
    for (kind, items) in [("secrets", &project.secrets), ("configs", &project.configs)] {
        for (name, item) in items {
            let sources = [
                !item.file.is_empty(),
                !item.environment.is_empty(),
                !item.content.is_empty(),
            ];
            let count = sources.iter().filter(|s| **s).count();
            if item.external {
                if count > 0 {
                    problems.push(format!("{kind}.{name}: conflicting parameters \"external\" and a source (file, environment or content) specified"));
                }
            } else if count == 0 {
                problems.push(format!("{kind}.{name}: must declare one of `file`, `environment` or `content` (or `external: true`)"));
            } else if count > 1 {
                problems.push(format!(
                    "{kind}.{name}: declare only one of `file`, `environment` or `content`"
                ));
            }
        }
    }
}
