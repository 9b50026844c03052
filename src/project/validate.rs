//! Consistency checks on the normalized model: references between services and resources,
//! mutually exclusive keys, values the engine could not act on, dependency cycles.
//!
//! Every problem is collected, not just the first, so one run shows the user all of them.
//! Each is worded `<key path>: <what is wrong>: <how to fix it>`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::model::{
    DeviceRequest, FileObjectConfig, NetworkConfig, Project, Service, ServiceNetworkConfig,
};
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
const HEALTHCHECK_KINDS: [&str; 3] = ["CMD", "CMD-SHELL", "NONE"];
const WATCH_ACTIONS: [&str; 5] = ["sync", "rebuild", "restart", "sync+restart", "sync+exec"];

pub fn validate(project: &Project) -> Result<(), ValidateError> {
    let mut problems = Vec::new();
    for (name, service) in &project.services {
        ServiceCheck {
            project,
            name,
            service,
            problems: &mut problems,
        }
        .run();
    }
    let dependencies_resolve = project.services.values().all(|service| {
        service.depends_on.iter().all(|(target, dependency)| {
            !dependency.required || project.services.contains_key(target)
        })
    });
    check_container_names(project, &mut problems);
    check_networks(project, &mut problems);
    check_volumes(project, &mut problems);
    check_secrets(project, &mut problems);
    check_configs(project, &mut problems);
    // Undefined dependencies are reported above with their key; what the graph adds is cycles.
    if dependencies_resolve {
        if let Err(err) = dependency_graph(project) {
            problems.push(err.to_string());
        }
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

const UNDEFINED_SERVICE: &str = "refers to undefined service";

/// The checks of one service, each reporting under `services.<name>.<key>`.
struct ServiceCheck<'a> {
    project: &'a Project,
    name: &'a str,
    service: &'a Service,
    problems: &'a mut Vec<String>,
}

impl ServiceCheck<'_> {
    fn run(&mut self) {
        self.check_image_or_build();
        self.check_build();
        self.check_networks();
        self.check_healthcheck();
        self.check_dependencies();
        self.check_namespaces();
        self.check_volumes_from();
        self.check_mounts();
        self.check_file_references();
        self.check_models();
        self.check_ports();
        self.check_duplicated_settings();
        self.check_policies();
        self.check_ulimits();
        self.check_develop();
        self.check_device_requests();
    }

    fn report(&mut self, key: &str, message: String) {
        self.problems
            .push(format!("services.{}.{key}: {message}", self.name));
    }

    fn check_image_or_build(&mut self) {
        if self.service.image.is_empty() && self.service.build.is_none() {
            self.report(
                "image",
                "the service has neither an image nor a build context: set `image` or `build`"
                    .into(),
            );
        }
    }

    fn check_build(&mut self) {
        let Some(build) = &self.service.build else {
            return;
        };
        if !build.dockerfile.is_empty() && !build.dockerfile_inline.is_empty() {
            self.report(
                "build",
                "`dockerfile` and `dockerfile_inline` are mutually exclusive: remove one of them"
                    .into(),
            );
        }
        let platform = &self.service.platform;
        if !platform.is_empty()
            && !build.platforms.is_empty()
            && !build.platforms.contains(platform)
        {
            self.report(
                "platform",
                format!(
                    "{platform:?} is not one of build.platforms ({}): add it to `build.platforms` or change `platform`",
                    build.platforms.join(", ")
                ),
            );
        }
        for secret in &build.secrets {
            if !self.project.secrets.contains_key(&secret.source) {
                self.report(
                    "build.secrets",
                    format!(
                        "refers to undefined secret {:?}: declare it under the top-level `secrets`",
                        secret.source
                    ),
                );
            }
        }
    }

    fn check_networks(&mut self) {
        if !self.service.network_mode.is_empty() && !self.service.networks.is_empty() {
            self.report(
                "network_mode",
                "`network_mode` and `networks` are mutually exclusive: remove one of them".into(),
            );
        }
        for (network, attachment) in &self.service.networks {
            let Some(declared) = self.project.networks.get(network) else {
                self.report(
                    "networks",
                    format!("refers to undefined network {network:?}: declare it under the top-level `networks`"),
                );
                continue;
            };
            if let Some(attachment) = attachment {
                self.check_fixed_addresses(network, declared, attachment);
            }
        }
    }

    /// A fixed address must parse and, when the network declares subnets of its family,
    /// lie inside one of them: the engine refuses the container otherwise.
    fn check_fixed_addresses(
        &mut self,
        network: &str,
        declared: &NetworkConfig,
        attachment: &ServiceNetworkConfig,
    ) {
        for (key, address, family) in [
            ("ipv4_address", &attachment.ipv4_address, IpFamily::V4),
            ("ipv6_address", &attachment.ipv6_address, IpFamily::V6),
        ] {
            if address.is_empty() {
                continue;
            }
            let at = format!("networks.{network}.{key}");
            let Some(ip) = family.parse(address) else {
                self.report(
                    &at,
                    format!(
                        "invalid {} address {address:?}: use an address such as {}",
                        family.label(),
                        family.example()
                    ),
                );
                continue;
            };
            if declared.external {
                continue;
            }
            let subnets: Vec<&str> = declared
                .ipam
                .config
                .iter()
                .map(|pool| pool.subnet.as_str())
                .filter(|subnet| Subnet::parse(subnet).is_some_and(|s| s.family() == family))
                .collect();
            let inside = subnets
                .iter()
                .filter_map(|subnet| Subnet::parse(subnet))
                .any(|subnet| subnet.contains(ip));
            if !subnets.is_empty() && !inside {
                self.report(
                    &at,
                    format!(
                        "{address} is outside the subnets of network {network:?} ({}): pick an address inside them",
                        subnets.join(", ")
                    ),
                );
            }
        }
    }

    fn check_healthcheck(&mut self) {
        let Some(first) = self
            .service
            .healthcheck
            .as_ref()
            .and_then(|h| h.test.first())
        else {
            return;
        };
        if !HEALTHCHECK_KINDS.contains(&first.as_str()) {
            self.report(
                "healthcheck.test",
                format!(
                    "must start with \"CMD\", \"CMD-SHELL\" or \"NONE\", not {first:?}: write [\"CMD\", {first:?}, ...] or give the command as a single string"
                ),
            );
        }
    }

    fn check_dependencies(&mut self) {
        for (dependency, config) in &self.service.depends_on {
            let at = format!("depends_on.{dependency}");
            if config.required
                && !self.project.services.contains_key(dependency)
                && !self.reported_elsewhere(dependency)
            {
                self.report(
                    &at,
                    format!("{UNDEFINED_SERVICE} {dependency:?}: declare it under `services` or mark the dependency `required: false`"),
                );
            }
            if !DEPENDENCY_CONDITIONS.contains(&config.condition.as_str()) {
                self.report(
                    &format!("{at}.condition"),
                    format!(
                        "invalid condition {:?}: use one of {}",
                        config.condition,
                        DEPENDENCY_CONDITIONS.join(", ")
                    ),
                );
            }
        }
    }

    /// Dependencies implied by a namespace or `volumes_from` are reported at that key.
    fn reported_elsewhere(&self, dependency: &str) -> bool {
        let service = self.service;
        let namespaces = [
            &service.network_mode,
            &service.ipc,
            &service.pid,
            &service.uts,
            &service.cgroup,
        ];
        namespaces
            .iter()
            .any(|mode| mode.strip_prefix("service:") == Some(dependency))
            || service
                .volumes_from
                .iter()
                .any(|source| source.split(':').next() == Some(dependency))
    }

    fn check_namespaces(&mut self) {
        let service = self.service;
        for (key, mode) in [
            ("network_mode", &service.network_mode),
            ("ipc", &service.ipc),
            ("pid", &service.pid),
            ("uts", &service.uts),
            ("cgroup", &service.cgroup),
        ] {
            if let Some(target) = mode.strip_prefix("service:") {
                if !self.project.services.contains_key(target) {
                    self.report(
                        key,
                        format!("{UNDEFINED_SERVICE} {target:?}: declare it under `services`"),
                    );
                }
            }
        }
    }

    fn check_volumes_from(&mut self) {
        for source in &self.service.volumes_from {
            if source.starts_with("container:") {
                continue;
            }
            let target = source.split(':').next().unwrap_or_default();
            if !self.project.services.contains_key(target) {
                self.report(
                    "volumes_from",
                    format!("{UNDEFINED_SERVICE} {target:?}: declare it under `services`, or write `container:{target}` for a container"),
                );
            }
        }
    }

    fn check_mounts(&mut self) {
        for (index, mount) in self.service.volumes.iter().enumerate() {
            let at = format!("volumes.{index}");
            if !MOUNT_TYPES.contains(&mount.kind.as_str()) {
                self.report(
                    &format!("{at}.type"),
                    format!(
                        "invalid mount type {:?}: use one of {}",
                        mount.kind,
                        MOUNT_TYPES.join(", ")
                    ),
                );
            }
            if mount.target.is_empty() && mount.kind != "npipe" {
                self.report(
                    &format!("{at}.target"),
                    "a mount needs a target path inside the container".into(),
                );
            }
            if mount.kind == "volume"
                && !mount.source.is_empty()
                && !self.project.volumes.contains_key(&mount.source)
            {
                self.report(
                    &at,
                    format!(
                        "refers to undefined volume {:?}: declare it under the top-level `volumes`",
                        mount.source
                    ),
                );
            }
            if mount.kind == "bind" && mount.source.is_empty() {
                self.report(
                    &format!("{at}.source"),
                    "a bind mount needs a source path on the host".into(),
                );
            }
        }
    }

    fn check_file_references(&mut self) {
        for secret in &self.service.secrets {
            if !self.project.secrets.contains_key(&secret.source) {
                self.report(
                    "secrets",
                    format!(
                        "refers to undefined secret {:?}: declare it under the top-level `secrets`",
                        secret.source
                    ),
                );
            }
        }
        for config in &self.service.configs {
            if !self.project.configs.contains_key(&config.source) {
                self.report(
                    "configs",
                    format!(
                        "refers to undefined config {:?}: declare it under the top-level `configs`",
                        config.source
                    ),
                );
            }
        }
    }

    fn check_models(&mut self) {
        for model in self.service.models.keys() {
            if !self.project.models.contains_key(model) {
                self.report(
                    "models",
                    format!("refers to undefined model {model:?}: declare it under the top-level `models`"),
                );
            }
        }
    }

    fn check_ports(&mut self) {
        for (index, port) in self.service.ports.iter().enumerate() {
            let at = format!("ports.{index}");
            if port.target == 0 || port.target > 65535 {
                self.report(
                    &format!("{at}.target"),
                    format!("invalid container port {}: use 1-65535", port.target),
                );
            }
            if !published_port_ok(&port.published) {
                self.report(
                    &format!("{at}.published"),
                    format!(
                        "invalid published port {:?}: use a port 1-65535 or a range like 8000-8010",
                        port.published
                    ),
                );
            }
            if !port.host_ip.is_empty() && port.host_ip.parse::<IpAddr>().is_err() {
                self.report(
                    &format!("{at}.host_ip"),
                    format!(
                        "invalid IP address {:?}: use an address such as 127.0.0.1 or ::1",
                        port.host_ip
                    ),
                );
            }
        }
    }

    /// Attributes that exist both on the service and under `deploy` must agree.
    fn check_duplicated_settings(&mut self) {
        let service = self.service;
        let Some(deploy) = &service.deploy else {
            return;
        };
        if let (Some(scale), Some(replicas)) = (service.scale, deploy.replicas) {
            if scale != replicas {
                self.report_distinct("scale", &scale, "deploy.replicas", &replicas);
            }
        }
        if let Some(limits) = &deploy.resources.limits {
            if service.cpus != 0.0 && limits.cpus != 0.0 && service.cpus != limits.cpus {
                self.report_distinct(
                    "cpus",
                    &service.cpus,
                    "deploy.resources.limits.cpus",
                    &limits.cpus,
                );
            }
            let (mem, limit) = (&service.mem_limit, &limits.memory);
            if !mem.is_zero() && !limit.is_zero() && mem != limit {
                self.report_distinct("mem_limit", mem, "deploy.resources.limits.memory", limit);
            }
            if service.pids_limit != 0 && limits.pids != 0 && service.pids_limit != limits.pids {
                self.report_distinct(
                    "pids_limit",
                    &service.pids_limit,
                    "deploy.resources.limits.pids",
                    &limits.pids,
                );
            }
        }
        if let Some(reservations) = &deploy.resources.reservations {
            let (mem, reserved) = (&service.mem_reservation, &reservations.memory);
            if !mem.is_zero() && !reserved.is_zero() && mem != reserved {
                self.report_distinct(
                    "mem_reservation",
                    mem,
                    "deploy.resources.reservations.memory",
                    reserved,
                );
            }
        }
    }

    fn report_distinct(
        &mut self,
        key: &str,
        value: &dyn fmt::Display,
        other: &str,
        other_value: &dyn fmt::Display,
    ) {
        self.report(
            key,
            format!("can't set distinct values on '{key}' ({value}) and '{other}' ({other_value}): remove one of them or make them equal"),
        );
    }

    fn check_policies(&mut self) {
        let service = self.service;
        if !restart_ok(&service.restart) {
            self.report(
                "restart",
                format!("invalid restart policy {:?}: use no, always, on-failure[:max-retries] or unless-stopped", service.restart),
            );
        }
        if !pull_policy_ok(&service.pull_policy) {
            self.report(
                "pull_policy",
                format!("invalid pull policy {:?}: use always, never, missing, build, daily, weekly or every_<duration>", service.pull_policy),
            );
        }
    }

    fn check_ulimits(&mut self) {
        for (name, limit) in &self.service.ulimits {
            if limit.single == 0 && limit.soft > limit.hard {
                self.report(
                    &format!("ulimits.{name}"),
                    format!(
                        "soft limit {} is greater than hard limit {}: lower `soft` or raise `hard`",
                        limit.soft, limit.hard
                    ),
                );
            }
        }
    }

    fn check_develop(&mut self) {
        let Some(develop) = &self.service.develop else {
            return;
        };
        for (index, trigger) in develop.watch.iter().enumerate() {
            let at = format!("develop.watch.{index}");
            if trigger.path.is_empty() {
                self.report(
                    &format!("{at}.path"),
                    "value can't be blank: set the host path to watch".into(),
                );
            }
            if !WATCH_ACTIONS.contains(&trigger.action.as_str()) {
                self.report(
                    &format!("{at}.action"),
                    format!(
                        "invalid action {:?}: use one of {}",
                        trigger.action,
                        WATCH_ACTIONS.join(", ")
                    ),
                );
            } else if trigger.action != "rebuild" && trigger.target.is_empty() {
                self.report(
                    &format!("{at}.target"),
                    format!(
                        "target is required for the {:?} action: set the path inside the container",
                        trigger.action
                    ),
                );
            }
        }
    }

    fn check_device_requests(&mut self) {
        let service = self.service;
        let reserved = service
            .deploy
            .as_ref()
            .and_then(|d| d.resources.reservations.as_ref())
            .map(|r| r.devices.as_slice())
            .unwrap_or_default();
        for (key, requests) in [
            ("gpus", service.gpus.as_slice()),
            ("deploy.resources.reservations.devices", reserved),
        ] {
            for (index, request) in requests.iter().enumerate() {
                if counts_and_names_devices(request) {
                    self.report(
                        &format!("{key}.{index}"),
                        "\"count\" and \"device_ids\" are mutually exclusive: keep one of them"
                            .into(),
                    );
                }
            }
        }
    }
}

fn counts_and_names_devices(request: &DeviceRequest) -> bool {
    !request.count.is_unset() && !request.device_ids.is_empty()
}

fn published_port_ok(published: &str) -> bool {
    if published.is_empty() {
        return true;
    }
    let port = |p: &str| p.parse::<u32>().ok().filter(|n| *n <= 65535);
    match published.split_once('-') {
        Some((start, end)) => matches!((port(start), port(end)), (Some(s), Some(e)) if s <= e),
        None => port(published).is_some(),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    fn parse(self, address: &str) -> Option<IpAddr> {
        match self {
            IpFamily::V4 => address.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            IpFamily::V6 => address.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        }
    }

    fn label(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }

    fn example(self) -> &'static str {
        match self {
            IpFamily::V4 => "172.16.238.10",
            IpFamily::V6 => "2001:db8::10",
        }
    }
}

/// A subnet in CIDR notation (`172.28.0.0/16`, `2001:db8::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subnet {
    network: IpAddr,
    prefix: u32,
}

impl Subnet {
    fn parse(text: &str) -> Option<Subnet> {
        let (address, prefix) = text.split_once('/')?;
        let network: IpAddr = address.parse().ok()?;
        let prefix: u32 = prefix.parse().ok()?;
        let bits = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (prefix <= bits).then_some(Subnet { network, prefix })
    }

    fn family(&self) -> IpFamily {
        match self.network {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let masked = |bits: u128, width: u32| {
            let host_bits = width - self.prefix;
            bits.checked_shr(host_bits).unwrap_or(0)
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), 32) == masked(u32::from(ip).into(), 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128) == masked(u128::from(ip), 128)
            }
            _ => false,
        }
    }
}

/// Compose's replica count: `scale` first, then `deploy.replicas`, else one.
fn replicas(service: &Service) -> i64 {
    service
        .scale
        .or_else(|| service.deploy.as_ref().and_then(|d| d.replicas))
        .unwrap_or(1)
}

fn check_container_names(project: &Project, problems: &mut Vec<String>) {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (name, service) in &project.services {
        let container_name = service.container_name.as_str();
        if container_name.is_empty() {
            continue;
        }
        if replicas(service) > 1 {
            problems.push(format!("services.{name}.container_name: {container_name:?} can't be used with more than one replica, as container names must be unique: remove `container_name` or run one replica"));
        }
        if let Some((other, _)) = seen.iter().find(|(_, c)| *c == container_name) {
            problems.push(format!(
                "services.{name}.container_name: {container_name:?} is already used by service {other:?}: container names must be unique, rename one of them"
            ));
        }
        seen.push((name, container_name));
    }
}

fn external_conflict(kind: &str, name: &str, key: &str) -> String {
    format!("{kind}.{name}: conflicting parameters \"external\" and {key:?} specified: an external {} is created elsewhere, remove {key:?}", kind.trim_end_matches('s'))
}

fn check_networks(project: &Project, problems: &mut Vec<String>) {
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
                    problems.push(external_conflict("networks", name, key));
                }
            }
        }
        for (index, pool) in network.ipam.config.iter().enumerate() {
            if !pool.subnet.is_empty() && Subnet::parse(&pool.subnet).is_none() {
                problems.push(format!(
                    "networks.{name}.ipam.config.{index}.subnet: invalid subnet {:?}: use CIDR notation such as 172.28.0.0/16",
                    pool.subnet
                ));
            }
        }
    }
}

fn check_volumes(project: &Project, problems: &mut Vec<String>) {
    for (name, volume) in &project.volumes {
        if !volume.external {
            continue;
        }
        for (key, present) in [
            ("driver", !volume.driver.is_empty()),
            ("driver_opts", !volume.driver_opts.is_empty()),
            ("labels", !volume.labels.is_empty()),
        ] {
            if present {
                problems.push(external_conflict("volumes", name, key));
            }
        }
    }
}

/// Which of `file`, `environment` and `content` a secret or config sets.
fn content_sources(item: &FileObjectConfig) -> Vec<&'static str> {
    [
        ("file", !item.file.is_empty()),
        ("environment", !item.environment.is_empty()),
        ("content", !item.content.is_empty()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect()
}

fn check_secrets(project: &Project, problems: &mut Vec<String>) {
    for (name, secret) in &project.secrets {
        let sources = content_sources(secret);
        if secret.external {
            if let Some(key) = sources.first() {
                problems.push(external_conflict("secrets", name, key));
            }
        } else if sources.contains(&"content") {
            problems.push(format!("secrets.{name}: `content` is only supported for configs: put the value in a file or an environment variable and use `file` or `environment`"));
        } else if sources.is_empty() {
            problems.push(format!(
                "secrets.{name}: must declare either `file` or `environment`: set one of them, or `external: true`"
            ));
        } else if sources.len() > 1 {
            problems.push(format!(
                "secrets.{name}: `file` and `environment` are mutually exclusive: keep one of them"
            ));
        }
    }
}

fn check_configs(project: &Project, problems: &mut Vec<String>) {
    for (name, config) in &project.configs {
        let sources = content_sources(config);
        if config.external {
            if let Some(key) = sources.first() {
                problems.push(external_conflict("configs", name, key));
            }
        } else if sources.len() > 1 {
            problems.push(format!(
                "configs.{name}: {} are mutually exclusive: keep one of them",
                sources
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        } else if sources.is_empty() && config.driver.is_empty() {
            // A custom driver may provide the content its own way.
            problems.push(format!(
                "configs.{name}: must declare one of `file`, `environment` or `content`: set one of them, or `external: true`"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::model::from_value;

    fn project(yaml: &str) -> Project {
        from_value(serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    fn problems(yaml: &str) -> Vec<String> {
        match validate(&project(yaml)) {
            Ok(()) => Vec::new(),
            Err(err) => err.problems,
        }
    }

    /// The single problem a project has.
    fn problem(yaml: &str) -> String {
        let found = problems(yaml);
        assert_eq!(found.len(), 1, "{found:#?}");
        found.into_iter().next().unwrap_or_default()
    }

    fn web(body: &str) -> String {
        format!("services:\n  web:\n{body}")
    }

    #[test]
    fn a_consistent_project_passes() {
        assert_eq!(
            problems(
                "services:\n  web:\n    image: nginx\n    depends_on: {db: {condition: service_healthy}}\n    networks: {front: {ipv4_address: 172.28.0.10}}\n    secrets: [{source: token}]\n  db: {image: postgres}\nnetworks:\n  front: {ipam: {config: [{subnet: 172.28.0.0/16}]}}\nsecrets:\n  token: {file: ./token}\n"
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn all_problems_are_reported_together() {
        let err = validate(&project(
            "services:\n  a: {}\n  b: {image: x, secrets: [{source: s}], configs: [{source: c}]}\n",
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "services.a.image: the service has neither an image nor a build context: set `image` or `build`\n\
             services.b.secrets: refers to undefined secret \"s\": declare it under the top-level `secrets`\n\
             services.b.configs: refers to undefined config \"c\": declare it under the top-level `configs`"
        );
    }

    #[test]
    fn dockerfile_and_inline_dockerfile_are_exclusive() {
        assert_eq!(
            problem(&web("    build: {context: ., dockerfile: Dockerfile, dockerfile_inline: FROM alpine}\n")),
            "services.web.build: `dockerfile` and `dockerfile_inline` are mutually exclusive: remove one of them"
        );
    }

    #[test]
    fn platform_must_be_one_of_the_build_platforms() {
        assert_eq!(
            problem(&web("    platform: linux/arm64\n    build: {context: ., platforms: [linux/amd64]}\n")),
            "services.web.platform: \"linux/arm64\" is not one of build.platforms (linux/amd64): add it to `build.platforms` or change `platform`"
        );
        assert!(problems(&web(
            "    platform: linux/amd64\n    build: {context: ., platforms: [linux/amd64, linux/arm64]}\n"
        ))
        .is_empty());
    }

    #[test]
    fn build_secrets_must_be_declared() {
        assert_eq!(
            problem(&web("    build: {context: ., secrets: [{source: npmrc}]}\n")),
            "services.web.build.secrets: refers to undefined secret \"npmrc\": declare it under the top-level `secrets`"
        );
    }

    #[test]
    fn network_mode_and_networks_are_exclusive() {
        assert_eq!(
            problem("services:\n  web: {image: x, network_mode: host, networks: {front: null}}\nnetworks:\n  front: {}\n"),
            "services.web.network_mode: `network_mode` and `networks` are mutually exclusive: remove one of them"
        );
    }

    #[test]
    fn networks_must_be_declared() {
        assert_eq!(
            problem(&web("    image: x\n    networks: {back: null}\n")),
            "services.web.networks: refers to undefined network \"back\": declare it under the top-level `networks`"
        );
    }

    #[test]
    fn fixed_address_must_be_inside_the_network_subnets() {
        let yaml = "services:\n  web:\n    image: x\n    networks:\n      front: {ipv4_address: 10.0.0.5, ipv6_address: '2001:db8::5'}\nnetworks:\n  front:\n    enable_ipv6: true\n    ipam:\n      config: [{subnet: 172.28.0.0/16}, {subnet: 172.29.0.0/24}, {subnet: '2001:db8::/64'}]\n";
        assert_eq!(
            problem(yaml),
            "services.web.networks.front.ipv4_address: 10.0.0.5 is outside the subnets of network \"front\" (172.28.0.0/16, 172.29.0.0/24): pick an address inside them"
        );
        let inside = yaml.replace("10.0.0.5", "172.29.0.200");
        assert!(problems(&inside).is_empty());
    }

    #[test]
    fn fixed_address_must_parse() {
        assert_eq!(
            problem("services:\n  web:\n    image: x\n    networks: {front: {ipv4_address: 300.1.1.1}}\nnetworks:\n  front: {}\n"),
            "services.web.networks.front.ipv4_address: invalid IPv4 address \"300.1.1.1\": use an address such as 172.16.238.10"
        );
    }

    #[test]
    fn fixed_address_on_external_or_subnetless_network_is_left_to_the_engine() {
        assert!(problems("services:\n  web:\n    image: x\n    networks: {ext: {ipv4_address: 10.1.2.3}, plain: {ipv4_address: 10.1.2.4}}\nnetworks:\n  ext: {external: true}\n  plain: {}\n").is_empty());
    }

    #[test]
    fn invalid_subnet_is_reported() {
        assert_eq!(
            problem("services: {}\nnetworks:\n  front: {ipam: {config: [{subnet: 172.28.0.0/40}]}}\n"),
            "networks.front.ipam.config.0.subnet: invalid subnet \"172.28.0.0/40\": use CIDR notation such as 172.28.0.0/16"
        );
    }

    #[test]
    fn subnet_contains_follows_the_prefix() {
        let subnet = Subnet::parse("192.168.4.0/22").unwrap();
        assert!(subnet.contains("192.168.7.255".parse().unwrap()));
        assert!(!subnet.contains("192.168.8.0".parse().unwrap()));
        assert!(!subnet.contains("::1".parse().unwrap()));
        assert!(Subnet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Subnet::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        assert_eq!(Subnet::parse("10.0.0.0"), None);
    }

    #[test]
    fn healthcheck_test_must_name_its_kind() {
        assert_eq!(
            problem(&web("    image: x\n    healthcheck: {test: [curl, -f, http://localhost]}\n")),
            "services.web.healthcheck.test: must start with \"CMD\", \"CMD-SHELL\" or \"NONE\", not \"curl\": write [\"CMD\", \"curl\", ...] or give the command as a single string"
        );
        for ok in ["[CMD, true]", "[CMD-SHELL, 'exit 0']", "[NONE]"] {
            assert!(
                problems(&web(&format!(
                    "    image: x\n    healthcheck: {{test: {ok}}}\n"
                )))
                .is_empty(),
                "{ok}"
            );
        }
        // Compose accepts `disable` next to `test`: disabling wins when the container runs.
        assert!(problems(&web(
            "    image: x\n    healthcheck: {test: [CMD, true], disable: true}\n"
        ))
        .is_empty());
    }

    #[test]
    fn dependencies_must_be_declared_unless_optional() {
        assert_eq!(
            problem(&web("    image: x\n    depends_on: {db: {condition: service_started}}\n")),
            "services.web.depends_on.db: refers to undefined service \"db\": declare it under `services` or mark the dependency `required: false`"
        );
        assert!(problems(&web(
            "    image: x\n    depends_on: {db: {condition: service_started, required: false}}\n"
        ))
        .is_empty());
    }

    #[test]
    fn dependency_condition_must_be_known() {
        assert_eq!(
            problem("services:\n  web: {image: x, depends_on: {db: {condition: service_ready}}}\n  db: {image: x}\n"),
            "services.web.depends_on.db.condition: invalid condition \"service_ready\": use one of service_started, service_healthy, service_completed_successfully"
        );
    }

    #[test]
    fn dependency_cycles_are_reported_with_their_path() {
        assert_eq!(
            problem("services:\n  a: {image: x, depends_on: {b: {condition: service_started}}}\n  b: {image: x, depends_on: {a: {condition: service_started}}}\n"),
            "dependency cycle detected: a -> b -> a"
        );
    }

    #[test]
    fn namespace_services_must_be_declared_once() {
        // normalize turns `service:vpn` into a dependency too; it is reported once, here.
        assert_eq!(
            problem(&web("    image: x\n    network_mode: 'service:vpn'\n    depends_on: {vpn: {condition: service_started, restart: true}}\n")),
            "services.web.network_mode: refers to undefined service \"vpn\": declare it under `services`"
        );
        assert_eq!(
            problem(&web("    image: x\n    pid: 'service:other'\n")),
            "services.web.pid: refers to undefined service \"other\": declare it under `services`"
        );
    }

    #[test]
    fn volumes_from_services_must_be_declared() {
        assert_eq!(
            problem(&web("    image: x\n    volumes_from: ['data:ro', 'container:legacy']\n")),
            "services.web.volumes_from: refers to undefined service \"data\": declare it under `services`, or write `container:data` for a container"
        );
    }

    #[test]
    fn mounts_need_known_types_targets_sources_and_volumes() {
        let found = problems(&web(
            "    image: x\n    volumes:\n      - {type: disk, target: /a}\n      - {type: volume, source: data}\n      - {type: bind, target: /b}\n      - {type: volume, source: cache, target: /c}\n      - {type: volume, target: /anonymous}\n",
        ));
        assert_eq!(
            found,
            [
                "services.web.volumes.0.type: invalid mount type \"disk\": use one of bind, volume, tmpfs, npipe, cluster, image",
                "services.web.volumes.1.target: a mount needs a target path inside the container",
                "services.web.volumes.1: refers to undefined volume \"data\": declare it under the top-level `volumes`",
                "services.web.volumes.2.source: a bind mount needs a source path on the host",
                "services.web.volumes.3: refers to undefined volume \"cache\": declare it under the top-level `volumes`",
            ]
        );
    }

    #[test]
    fn models_must_be_declared() {
        assert_eq!(
            problem(&web("    image: x\n    models: {llm: {endpoint_var: AI_URL}}\n")),
            "services.web.models: refers to undefined model \"llm\": declare it under the top-level `models`"
        );
    }

    #[test]
    fn ports_need_valid_numbers_ranges_and_addresses() {
        let found = problems(&web(
            "    image: x\n    ports:\n      - {target: 0}\n      - {target: 80, published: '70000'}\n      - {target: 80, published: '8010-8000'}\n      - {target: 80, published: '8000-8010'}\n      - {target: 80, host_ip: localhost}\n      - {target: 80, host_ip: '::1'}\n",
        ));
        assert_eq!(
            found,
            [
                "services.web.ports.0.target: invalid container port 0: use 1-65535",
                "services.web.ports.1.published: invalid published port \"70000\": use a port 1-65535 or a range like 8000-8010",
                "services.web.ports.2.published: invalid published port \"8010-8000\": use a port 1-65535 or a range like 8000-8010",
                "services.web.ports.4.host_ip: invalid IP address \"localhost\": use an address such as 127.0.0.1 or ::1",
            ]
        );
    }

    #[test]
    fn scale_and_replicas_must_agree() {
        assert_eq!(
            problem(&web("    image: x\n    scale: 3\n    deploy: {replicas: 2}\n")),
            "services.web.scale: can't set distinct values on 'scale' (3) and 'deploy.replicas' (2): remove one of them or make them equal"
        );
        assert!(problems(&web(
            "    image: x\n    scale: 2\n    deploy: {replicas: 2}\n"
        ))
        .is_empty());
    }

    #[test]
    fn resource_limits_and_deploy_resources_must_agree() {
        let found = problems(&web(
            "    image: x\n    cpus: 1.5\n    mem_limit: 1g\n    mem_reservation: 256m\n    pids_limit: 10\n    deploy:\n      resources:\n        limits: {cpus: '0.5', memory: 512m, pids: 20}\n        reservations: {memory: 128m}\n",
        ));
        assert_eq!(
            found,
            [
                "services.web.cpus: can't set distinct values on 'cpus' (1.5) and 'deploy.resources.limits.cpus' (0.5): remove one of them or make them equal",
                "services.web.mem_limit: can't set distinct values on 'mem_limit' (1073741824) and 'deploy.resources.limits.memory' (536870912): remove one of them or make them equal",
                "services.web.pids_limit: can't set distinct values on 'pids_limit' (10) and 'deploy.resources.limits.pids' (20): remove one of them or make them equal",
                "services.web.mem_reservation: can't set distinct values on 'mem_reservation' (268435456) and 'deploy.resources.reservations.memory' (134217728): remove one of them or make them equal",
            ]
        );
        // Set in one place only: nothing to disagree about.
        assert!(problems(&web(
            "    image: x\n    mem_limit: 1g\n    deploy: {resources: {limits: {cpus: '0.5'}}}\n"
        ))
        .is_empty());
    }

    #[test]
    fn restart_and_pull_policies_must_be_known() {
        let found = problems(&web(
            "    image: x\n    restart: sometimes\n    pull_policy: hourly\n",
        ));
        assert_eq!(
            found,
            [
                "services.web.restart: invalid restart policy \"sometimes\": use no, always, on-failure[:max-retries] or unless-stopped",
                "services.web.pull_policy: invalid pull policy \"hourly\": use always, never, missing, build, daily, weekly or every_<duration>",
            ]
        );
        assert!(problems(&web(
            "    image: x\n    restart: 'on-failure:3'\n    pull_policy: every_12h\n"
        ))
        .is_empty());
    }

    #[test]
    fn ulimit_soft_must_not_exceed_hard() {
        assert_eq!(
            problem(&web("    image: x\n    ulimits: {nproc: 65535, nofile: {soft: 40000, hard: 20000}}\n")),
            "services.web.ulimits.nofile: soft limit 40000 is greater than hard limit 20000: lower `soft` or raise `hard`"
        );
    }

    #[test]
    fn watch_rules_need_a_path_a_known_action_and_a_target() {
        let found = problems(&web(
            "    image: x\n    develop:\n      watch:\n        - {path: '', action: rebuild}\n        - {path: ./src, action: sync}\n        - {path: ./src, action: copy, target: /src}\n        - {path: ./src, action: sync+restart, target: /src}\n",
        ));
        assert_eq!(
            found,
            [
                "services.web.develop.watch.0.path: value can't be blank: set the host path to watch",
                "services.web.develop.watch.1.target: target is required for the \"sync\" action: set the path inside the container",
                "services.web.develop.watch.2.action: invalid action \"copy\": use one of sync, rebuild, restart, sync+restart, sync+exec",
            ]
        );
    }

    #[test]
    fn device_requests_take_a_count_or_ids_not_both() {
        let found = problems(&web(
            "    image: x\n    gpus: [{count: 1, device_ids: ['0']}]\n    deploy:\n      resources:\n        reservations:\n          devices: [{count: all, device_ids: ['1'], capabilities: [gpu]}]\n",
        ));
        assert_eq!(
            found,
            [
                "services.web.gpus.0: \"count\" and \"device_ids\" are mutually exclusive: keep one of them",
                "services.web.deploy.resources.reservations.devices.0: \"count\" and \"device_ids\" are mutually exclusive: keep one of them",
            ]
        );
    }

    #[test]
    fn container_names_must_be_unique() {
        let found = problems(
            "services:\n  a: {image: x, container_name: app}\n  b: {image: x, container_name: app}\n  c: {image: x, container_name: many, scale: 2}\n  d: {image: x, container_name: also, deploy: {replicas: 3}}\n",
        );
        assert_eq!(
            found,
            [
                "services.b.container_name: \"app\" is already used by service \"a\": container names must be unique, rename one of them",
                "services.c.container_name: \"many\" can't be used with more than one replica, as container names must be unique: remove `container_name` or run one replica",
                "services.d.container_name: \"also\" can't be used with more than one replica, as container names must be unique: remove `container_name` or run one replica",
            ]
        );
    }

    #[test]
    fn external_resources_take_no_creation_settings() {
        let found = problems(
            "services: {}\nnetworks:\n  front: {external: true, driver: overlay}\nvolumes:\n  data: {external: true, labels: {a: b}}\n  named: {external: true, name: real}\nsecrets:\n  s: {external: true, file: ./s}\nconfigs:\n  c: {external: true, content: x}\n",
        );
        assert_eq!(
            found,
            [
                "networks.front: conflicting parameters \"external\" and \"driver\" specified: an external network is created elsewhere, remove \"driver\"",
                "volumes.data: conflicting parameters \"external\" and \"labels\" specified: an external volume is created elsewhere, remove \"labels\"",
                "secrets.s: conflicting parameters \"external\" and \"file\" specified: an external secret is created elsewhere, remove \"file\"",
                "configs.c: conflicting parameters \"external\" and \"content\" specified: an external config is created elsewhere, remove \"content\"",
            ]
        );
    }

    #[test]
    fn secrets_come_from_a_file_or_the_environment() {
        let found = problems(
            "services: {}\nsecrets:\n  none: {}\n  both: {file: ./a, environment: A}\n  inline: {content: x}\n  ok: {environment: TOKEN}\n",
        );
        assert_eq!(
            found,
            [
                "secrets.none: must declare either `file` or `environment`: set one of them, or `external: true`",
                "secrets.both: `file` and `environment` are mutually exclusive: keep one of them",
                "secrets.inline: `content` is only supported for configs: put the value in a file or an environment variable and use `file` or `environment`",
            ]
        );
    }

    #[test]
    fn configs_come_from_one_source_or_a_driver() {
        let found = problems(
            "services: {}\nconfigs:\n  none: {}\n  two: {file: ./a, content: x}\n  driven: {driver: vault}\n  inline: {content: x}\n",
        );
        assert_eq!(
            found,
            [
                "configs.none: must declare one of `file`, `environment` or `content`: set one of them, or `external: true`",
                "configs.two: `file` and `content` are mutually exclusive: keep one of them",
            ]
        );
    }
}
