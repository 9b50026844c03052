//! One replica of a Compose service → the embedded runtime's [`ContainerConfig`].
//!
//! The mapping follows what Docker Compose v2 sends the Docker Engine for the same
//! service (`getCreateConfigs`, `getDeployResources`, `buildContainerVolumes`):
//! `deploy.resources` limits override the top-level keys, unresolved environment
//! entries are passed as a bare `KEY`, bind mounts written without `bind:` options
//! create their missing source as the legacy `Binds` API did. What the Engine would
//! refuse when creating the container is refused here, before anything exists, with
//! the service and key named. Keys the embedded engine cannot honour are ignored with
//! a warning, as long as ignoring them does not change what the container sees.
//!
//! Not part of a container's config, so not translated here: networks, ports,
//! `dns*`, `extra_hosts`, `links`, `mac_address` (the network module), healthchecks,
//! restart policies, hooks and `depends_on` (the orchestrator). `network_mode`'s
//! namespace is set here (`host`, `service:`/`container:`); attaching networks, which
//! replaces the private network namespace with the one the network module made, is not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use rcompose_runtime::container::config::{
    ContainerConfig, DeviceMapping, Mount, MountKind, NamespaceMode, Namespaces, Propagation,
    Resources, Ulimit, UserNamespace,
};
use rcompose_runtime::container::spec::{linux_resources, SpecError};
use thiserror::Error;

use crate::project::model::mount::{
    VOLUME_TYPE_BIND, VOLUME_TYPE_CLUSTER, VOLUME_TYPE_IMAGE, VOLUME_TYPE_NPIPE, VOLUME_TYPE_TMPFS,
    VOLUME_TYPE_VOLUME,
};
use crate::project::model::{
    FileObjectConfig, FileReferenceConfig, Project, Service, ServiceVolumeConfig,
};

/// Another container a service shares a namespace or volumes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer<'a> {
    /// `service:NAME`: one of the project's services (Compose uses its first container).
    Service(&'a str),
    /// `container:NAME`: any container, by name or id.
    Container(&'a str),
}

/// A volume a mount needs the data directory of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeRequest<'a> {
    /// The volume's engine name (`myproject_data`, or the `name:` it was given);
    /// `None` for an anonymous volume, which belongs to this replica's container.
    pub name: Option<&'a str>,
    /// Where it is mounted, which also identifies an anonymous volume across a
    /// recreation (Compose hands the old container's anonymous volumes on).
    pub target: &'a str,
    pub replica: u32,
    /// `volume.nocopy`: do not seed a new volume from the image's content.
    pub nocopy: bool,
}

/// Resolves a volume to the host directory to bind-mount.
pub type VolumeResolver<'a> = &'a dyn Fn(&VolumeRequest<'_>) -> Result<PathBuf, String>;
/// The pid of a running peer container, whose namespaces are joined.
pub type PidResolver<'a> = &'a dyn Fn(Peer<'_>) -> Result<u32, String>;
/// The mounts of a peer container, for `volumes_from`.
pub type MountsResolver<'a> = &'a dyn Fn(Peer<'_>) -> Result<Vec<Mount>, String>;

/// What the translation needs from outside the Compose model.
pub struct TranslateContext<'a> {
    /// Labels the orchestrator sets (`com.docker.compose.*`); they win over the service's.
    pub labels: &'a BTreeMap<String, String>,
    /// The project directory: relative seccomp profile paths are read from there.
    pub project_dir: &'a Path,
    /// Host path of the init binary that `init: true` runs as PID 1.
    pub init_binary: Option<&'a Path>,
    /// The engine's user namespace remapping, if any; `userns_mode: host` opts out.
    pub user_namespace: Option<&'a UserNamespace>,
    /// The image's `VOLUME`s: each one no mount covers gets an anonymous volume, as
    /// the Docker Engine creates them.
    pub image_volumes: &'a [String],
    pub volume_path: VolumeResolver<'a>,
    pub peer_pid: PidResolver<'a>,
    pub peer_mounts: MountsResolver<'a>,
}

impl<'a> TranslateContext<'a> {
    /// A context whose resolvers all fail: enough for services that use no volume,
    /// shared namespace or `volumes_from`; set the fields that are needed.
    pub fn new(labels: &'a BTreeMap<String, String>, project_dir: &'a Path) -> Self {
        TranslateContext {
            labels,
            project_dir,
            init_binary: None,
            user_namespace: None,
            image_volumes: &[],
            volume_path: &no_volume_store,
            peer_pid: &no_peer_pid,
            peer_mounts: &no_peer_mounts,
        }
    }
}

fn no_volume_store(_: &VolumeRequest<'_>) -> Result<PathBuf, String> {
    Err("no volume store is available".to_owned())
}

fn no_peer_pid(_: Peer<'_>) -> Result<u32, String> {
    Err("no running containers are known".to_owned())
}

fn no_peer_mounts(_: Peer<'_>) -> Result<Vec<Mount>, String> {
    Err("no running containers are known".to_owned())
}

/// The container config and what the caller must act on besides creating it.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub config: ContainerConfig,
    /// Keys that were ignored, one sentence each, naming the service.
    pub warnings: Vec<String>,
    /// Host paths bind-mounted into the container, for the plan's checks.
    pub bind_sources: Vec<BindSource>,
    /// Secrets and configs not backed by a host file: the engine writes them and
    /// mounts them at their targets before the container starts (Compose copies them
    /// in); see `backend::native::injected`.
    pub injected_files: Vec<InjectedFile>,
}

/// A bind mount's host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindSource {
    pub path: PathBuf,
    /// Created as a directory when missing (Docker's behaviour for short syntax and
    /// long syntax without `bind:` options, or `create_host_path: true`); otherwise
    /// a missing path is an error.
    pub create: bool,
    /// The Compose key it comes from (`volumes.0`, `secrets.token`), for messages.
    pub key: String,
}

/// A file to put into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFile {
    /// `secrets.NAME` or `configs.NAME`.
    pub key: String,
    /// Absolute path in the container.
    pub target: String,
    /// The inline `content:`, or the value of the `environment:` variable.
    pub content: String,
    pub uid: Option<String>,
    pub gid: Option<String>,
    /// Permission bits; Compose's default is 0444.
    pub mode: Option<u32>,
}

/// The content of a secret or config that has no host file: its inline `content:`, or
/// the value of its `environment:` variable in the project's environment. `None` for
/// a file-backed one; an error names the variable when it is not set.
pub fn injected_content(
    project: &Project,
    declared: &FileObjectConfig,
) -> std::result::Result<Option<String>, String> {
    if !declared.environment.is_empty() {
        return match project.environment.get(&declared.environment) {
            Some(value) => Ok(Some(value.clone())),
            None => Err(format!(
                "environment variable {:?} is not set (the content comes from it)",
                declared.environment
            )),
        };
    }
    Ok((!declared.content.is_empty()).then(|| declared.content.clone()))
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TranslateError {
    /// A value Docker would refuse when creating the container.
    #[error("service {service}: {key}: {message}")]
    Invalid {
        service: String,
        key: String,
        message: String,
    },
    /// A key the embedded engine cannot honour, which cannot be ignored without
    /// changing what the container sees.
    #[error("service {service}: {key}: {message}")]
    Unsupported {
        service: String,
        key: String,
        message: String,
    },
    /// A resolver could not supply a volume, a peer's namespace or its mounts.
    #[error("service {service}: {key}: {message}")]
    Unresolved {
        service: String,
        key: String,
        message: String,
    },
}

type Result<T, E = TranslateError> = std::result::Result<T, E>;

/// Translates replica `replica` (1-based, as `com.docker.compose.container-number`)
/// of `service`, named `service_name` in `project`.
pub fn container_config(
    project: &Project,
    service_name: &str,
    service: &Service,
    replica: u32,
    context: &TranslateContext<'_>,
) -> Result<Translation> {
    let mut translator = Translator {
        project,
        name: service_name,
        service,
        replica,
        context,
        warnings: Vec::new(),
        bind_sources: Vec::new(),
        injected_files: Vec::new(),
    };
    let config = translator.translate()?;
    Ok(Translation {
        config,
        warnings: translator.warnings,
        bind_sources: translator.bind_sources,
        injected_files: translator.injected_files,
    })
}

struct Translator<'a> {
    project: &'a Project,
    name: &'a str,
    service: &'a Service,
    replica: u32,
    context: &'a TranslateContext<'a>,
    warnings: Vec<String>,
    bind_sources: Vec<BindSource>,
    injected_files: Vec<InjectedFile>,
}

/// Where each resource value came from, so that an error names the key the user wrote.
struct ResourceKeys {
    memory: &'static str,
    memory_reservation: &'static str,
    cpus: &'static str,
}

impl Translator<'_> {
    fn translate(&mut self) -> Result<ContainerConfig> {
        let mut config = ContainerConfig::default();
        self.process(&mut config)?;
        self.security(&mut config)?;
        config.resources = self.resources()?;
        config.ulimits = self.ulimits()?;
        config.sysctls = self.sysctls();
        config.devices = self.devices()?;
        config.namespaces = self.namespaces()?;
        config.user_namespace = self.user_namespace()?;
        config.tmpfs = self.tmpfs()?;
        config.mounts = self.mounts(&config.tmpfs)?;
        self.check_conflicts(&config)?;
        self.warn_about_ignored_keys();
        Ok(config)
    }

    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> TranslateError {
        TranslateError::Invalid {
            service: self.name.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn unsupported(&self, key: impl Into<String>, message: impl Into<String>) -> TranslateError {
        TranslateError::Unsupported {
            service: self.name.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn unresolved(&self, key: impl Into<String>, message: impl Into<String>) -> TranslateError {
        TranslateError::Unresolved {
            service: self.name.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn ignored(&mut self, key: &str) {
        let warning = format!(
            "service {}: {key} is not supported by the embedded engine and is ignored",
            self.name
        );
        self.warnings.push(warning);
    }

    // --- the process -------------------------------------------------------------

    fn process(&mut self, config: &mut ContainerConfig) -> Result<()> {
        let s = self.service;
        // `Some([])` (from `entrypoint: ""` or `[]`) clears the image's ENTRYPOINT,
        // which is what the runtime's `Some(vec![])` means too.
        config.entrypoint = s.entrypoint.clone();
        config.command = s.command.clone();
        config.env = environment(s);
        config.user = non_empty(&s.user);
        if !s.working_dir.is_empty() && !s.working_dir.starts_with('/') {
            return Err(self.invalid(
                "working_dir",
                format!("{:?} is not an absolute path", s.working_dir),
            ));
        }
        config.working_dir = non_empty(&s.working_dir);
        // No default hostname: the caller uses the container id's prefix, as Docker does.
        config.hostname = non_empty(&s.hostname);
        config.domainname = non_empty(&s.domainname);
        config.init = s.init.unwrap_or(false);
        config.init_binary = self.context.init_binary.map(Path::to_path_buf);
        config.tty = s.tty;
        config.stdin_open = s.stdin_open;
        if !s.stop_signal.is_empty() && !is_signal(&s.stop_signal) {
            return Err(self.invalid(
                "stop_signal",
                format!(
                    "invalid signal {:?}: use a name such as SIGTERM or a number",
                    s.stop_signal
                ),
            ));
        }
        config.stop_signal = non_empty(&s.stop_signal);
        config.stop_grace_period = s.stop_grace_period.map(|d| d.as_std());
        config.labels = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(self.context.labels.clone())
            .collect();
        config.group_add = s.group_add.clone();
        Ok(())
    }

    fn security(&mut self, config: &mut ContainerConfig) -> Result<()> {
        let s = self.service;
        config.read_only = s.read_only;
        config.privileged = s.privileged;
        config.cap_add = s.cap_add.clone();
        config.cap_drop = s.cap_drop.clone();
        config.security_opt = s
            .security_opt
            .iter()
            .map(|opt| self.security_opt(opt))
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// Docker's format check, and a relative seccomp profile read from the project
    /// directory as Compose reads it.
    fn security_opt(&self, opt: &str) -> Result<String> {
        if opt == "no-new-privileges" || opt == "systempaths=unconfined" {
            return Ok(opt.to_owned());
        }
        let Some((key, value)) = opt.split_once('=').or_else(|| opt.split_once(':')) else {
            return Err(self.invalid(
                "security_opt",
                format!("invalid security option {opt:?}: expected KEY=VALUE"),
            ));
        };
        let inline_profile = value.trim_start().starts_with('{');
        if key == "seccomp" && !inline_profile && !matches!(value, "unconfined" | "builtin" | "") {
            let path = self.context.project_dir.join(value);
            return Ok(format!("seccomp={}", path.display()));
        }
        Ok(opt.to_owned())
    }

    // --- resources ---------------------------------------------------------------

    fn resources(&mut self) -> Result<Resources> {
        let s = self.service;
        let mut keys = ResourceKeys {
            memory: "mem_limit",
            memory_reservation: "mem_reservation",
            cpus: "cpus",
        };
        let shm_size = match s.shm_size.0 {
            0 => None,
            n => Some(u64::try_from(n).map_err(|_| {
                self.invalid(
                    "shm_size",
                    format!("{n} is negative: give a size such as 64m"),
                )
            })?),
        };
        if !(-1000..=1000).contains(&s.oom_score_adj) {
            return Err(self.invalid(
                "oom_score_adj",
                format!(
                    "{} is out of range: it must be between -1000 and 1000",
                    s.oom_score_adj
                ),
            ));
        }
        let mut resources = Resources {
            memory: s.mem_limit.0,
            memory_swap: s.memswap_limit.0,
            memory_reservation: s.mem_reservation.0,
            cpus: decimal_f64(s.cpus),
            cpu_shares: s.cpu_shares,
            cpu_quota: s.cpu_quota,
            cpu_period: s.cpu_period,
            cpuset: non_empty(&s.cpuset),
            cpuset_mems: None,
            pids_limit: (s.pids_limit != 0).then_some(s.pids_limit),
            shm_size,
            oom_score_adj: s.oom_score_adj as i32,
            oom_kill_disable: s.oom_kill_disable,
        };
        self.apply_deploy_resources(&mut resources, &mut keys);
        linux_resources(&resources).map_err(|err| self.resource_error(err, &keys))?;
        Ok(resources)
    }

    /// `deploy.resources` wins over the top-level keys where it sets a value; CPU
    /// reservations are a Swarm notion and are ignored, as Compose does.
    fn apply_deploy_resources(&mut self, resources: &mut Resources, keys: &mut ResourceKeys) {
        let Some(deploy) = &self.service.deploy else {
            return;
        };
        if let Some(limits) = &deploy.resources.limits {
            if limits.memory.0 != 0 {
                resources.memory = limits.memory.0;
                keys.memory = "deploy.resources.limits.memory";
            }
            if limits.cpus != 0.0 {
                resources.cpus = decimal_f64(limits.cpus);
                keys.cpus = "deploy.resources.limits.cpus";
            }
            if limits.pids > 0 {
                resources.pids_limit = Some(limits.pids);
            }
            if !limits.devices.is_empty() {
                self.ignored("deploy.resources.limits.devices");
            }
            if !limits.generic_resources.is_empty() {
                self.ignored("deploy.resources.limits.generic_resources");
            }
        }
        if let Some(reservations) = &deploy.resources.reservations {
            if reservations.memory.0 != 0 {
                resources.memory_reservation = reservations.memory.0;
                keys.memory_reservation = "deploy.resources.reservations.memory";
            }
            if !reservations.devices.is_empty() {
                self.ignored("deploy.resources.reservations.devices");
            }
            if !reservations.generic_resources.is_empty() {
                self.ignored("deploy.resources.reservations.generic_resources");
            }
        }
    }

    /// The runtime's own resource check, with the Compose key the value came from.
    fn resource_error(&self, err: SpecError, keys: &ResourceKeys) -> TranslateError {
        match err {
            SpecError::Resources { field, message } => {
                let key = match field {
                    "memory" => keys.memory,
                    "memory_swap" => "memswap_limit",
                    "memory_reservation" => keys.memory_reservation,
                    "cpus" => keys.cpus,
                    other => other,
                };
                self.invalid(key, message)
            }
            other => self.invalid("resources", other.to_string()),
        }
    }

    fn ulimits(&self) -> Result<Vec<Ulimit>> {
        self.service
            .ulimits
            .iter()
            .map(|(name, limit)| {
                let key = format!("ulimits.{name}");
                if !ULIMIT_NAMES.contains(&name.as_str()) {
                    return Err(self.invalid(
                        key,
                        format!(
                            "unknown limit {name:?}: use one of {}",
                            ULIMIT_NAMES.join(", ")
                        ),
                    ));
                }
                // A single number sets both; `soft`/`hard` override it, as Compose reads them.
                let soft = if limit.soft != 0 {
                    limit.soft
                } else {
                    limit.single
                };
                let hard = if limit.hard != 0 {
                    limit.hard
                } else {
                    limit.single
                };
                if rlimit(soft) > rlimit(hard) {
                    return Err(self.invalid(
                        key,
                        format!("soft limit {soft} is above the hard limit {hard}"),
                    ));
                }
                Ok(Ulimit {
                    name: name.clone(),
                    soft,
                    hard,
                })
            })
            .collect()
    }

    fn sysctls(&self) -> BTreeMap<String, String> {
        self.service
            .sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn devices(&mut self) -> Result<Vec<DeviceMapping>> {
        let mut devices = Vec::new();
        for device in &self.service.devices {
            if device.source == device.target && is_cdi_name(&device.source) {
                self.ignored(&format!("devices: the CDI device {}", device.source));
                continue;
            }
            if device.source.is_empty() {
                return Err(self.invalid("devices", "a device needs a source path on the host"));
            }
            if !device.permissions.is_empty()
                && !device.permissions.chars().all(|c| "rwm".contains(c))
            {
                return Err(self.invalid(
                    "devices",
                    format!(
                        "invalid permissions {:?} for {}: use a combination of r, w and m",
                        device.permissions, device.source
                    ),
                ));
            }
            devices.push(DeviceMapping {
                path_on_host: PathBuf::from(&device.source),
                path_in_container: (!device.target.is_empty())
                    .then(|| PathBuf::from(&device.target)),
                cgroup_permissions: non_empty(&device.permissions),
            });
        }
        Ok(devices)
    }

    // --- namespaces --------------------------------------------------------------

    fn namespaces(&mut self) -> Result<Namespaces> {
        let s = self.service;
        Ok(Namespaces {
            network: self.network_namespace()?,
            pid: match s.pid.as_str() {
                "" => NamespaceMode::Private,
                "host" => NamespaceMode::Host,
                mode => self.joined_namespace("pid", mode, "pid")?,
            },
            ipc: match s.ipc.as_str() {
                "" | "private" | "shareable" => NamespaceMode::Private,
                "host" => NamespaceMode::Host,
                "none" => {
                    self.ignored(
                        "ipc: none (the container gets a private IPC namespace with /dev/shm)",
                    );
                    NamespaceMode::Private
                }
                mode => self.joined_namespace("ipc", mode, "ipc")?,
            },
            uts: match s.uts.as_str() {
                "" => NamespaceMode::Private,
                "host" => NamespaceMode::Host,
                other => {
                    return Err(self.invalid(
                        "uts",
                        format!("invalid UTS mode {other:?}: the only value is host"),
                    ))
                }
            },
            cgroup: match s.cgroup.as_str() {
                "" | "private" => NamespaceMode::Private,
                "host" => NamespaceMode::Host,
                other => {
                    return Err(self.invalid(
                        "cgroup",
                        format!("invalid cgroup namespace mode {other:?}: use host or private"),
                    ))
                }
            },
        })
    }

    /// `host` and shared modes; bridge and named networks keep a private namespace
    /// that the network module replaces with the one it wires up.
    fn network_namespace(&self) -> Result<NamespaceMode> {
        match self.service.network_mode.as_str() {
            "host" => Ok(NamespaceMode::Host),
            mode if mode.starts_with("service:") || mode.starts_with("container:") => {
                self.joined_namespace("network_mode", mode, "net")
            }
            _ => Ok(NamespaceMode::Private),
        }
    }

    /// `service:NAME` or `container:NAME`: the peer's namespace, through its pid.
    fn joined_namespace(&self, key: &str, mode: &str, kind: &str) -> Result<NamespaceMode> {
        let peer = match mode.split_once(':') {
            Some(("service", name)) if !name.is_empty() => Peer::Service(name),
            Some(("container", name)) if !name.is_empty() => Peer::Container(name),
            _ => {
                return Err(self.invalid(
                    key,
                    format!("invalid mode {mode:?}: use host, service:NAME or container:NAME"),
                ))
            }
        };
        let pid = (self.context.peer_pid)(peer)
            .map_err(|why| self.unresolved(key, format!("cannot join {mode}: {why}")))?;
        Ok(NamespaceMode::Join(PathBuf::from(format!(
            "/proc/{pid}/ns/{kind}"
        ))))
    }

    fn user_namespace(&self) -> Result<Option<UserNamespace>> {
        match self.service.userns_mode.as_str() {
            "" => Ok(self.context.user_namespace.cloned()),
            "host" => Ok(None),
            other => Err(self.invalid(
                "userns_mode",
                format!("invalid user namespace mode {other:?}: the only value is host"),
            )),
        }
    }

    // --- filesystems -------------------------------------------------------------

    /// `tmpfs: /run` or `/run:size=64m,mode=1777`, as `docker run --tmpfs`.
    fn tmpfs(&self) -> Result<BTreeMap<String, String>> {
        let mut tmpfs = BTreeMap::new();
        for entry in &self.service.tmpfs {
            let (target, options) = entry.split_once(':').unwrap_or((entry, ""));
            if !target.starts_with('/') {
                return Err(self.invalid(
                    "tmpfs",
                    format!("{target:?} is not an absolute path in the container"),
                ));
            }
            tmpfs.insert(target.to_owned(), options.to_owned());
        }
        Ok(tmpfs)
    }

    /// `volumes`, then secrets and configs (unless a volume took their target), then
    /// `volumes_from` (where no own mount took the target), then the image's `VOLUME`s
    /// nothing else mounts, as Docker layers them.
    fn mounts(&mut self, tmpfs: &BTreeMap<String, String>) -> Result<Vec<Mount>> {
        let mut mounts: Vec<Mount> = Vec::new();
        for (index, volume) in self.service.volumes.iter().enumerate() {
            let key = format!("volumes.{index}");
            let mount = self.volume_mount(&key, volume)?;
            if mounts.iter().any(|m| m.target == mount.target) || tmpfs.contains_key(&mount.target)
            {
                return Err(self.invalid(key, format!("duplicate mount point {}", mount.target)));
            }
            mounts.push(mount);
        }
        // A volume keeps its target against a secret, a secret against a config.
        let mut taken: BTreeSet<String> = mounts.iter().map(|m| m.target.clone()).collect();
        for file in self.file_mounts()? {
            if taken.insert(file.target().to_owned()) {
                match file {
                    FileMount::Bind(mount) => mounts.push(mount),
                    FileMount::Injected(injected) => self.injected_files.push(injected),
                }
            }
        }
        for inherited in self.volumes_from()? {
            let target_taken = mounts.iter().any(|m| m.target == inherited.target)
                || tmpfs.contains_key(&inherited.target);
            if !target_taken {
                mounts.push(inherited);
            }
        }
        for target in self.context.image_volumes.iter().map(|t| clean_target(t)) {
            let target_taken =
                mounts.iter().any(|m| m.target == target) || tmpfs.contains_key(&target);
            if !target_taken {
                mounts.push(self.image_volume(&target)?);
            }
        }
        Ok(mounts)
    }

    /// An anonymous volume at an image's `VOLUME` path, seeded from the image like any
    /// new volume (the WordPress image's `/var/www/html`, owned by `www-data`).
    fn image_volume(&self, target: &str) -> Result<Mount> {
        let request = VolumeRequest {
            name: None,
            target,
            replica: self.replica,
            nocopy: false,
        };
        let source = (self.context.volume_path)(&request).map_err(|why| {
            self.unresolved(
                "image",
                format!("anonymous volume for the image's VOLUME {target}: {why}"),
            )
        })?;
        Ok(Mount {
            target: target.to_owned(),
            read_only: false,
            kind: MountKind::Bind {
                source,
                propagation: Propagation::default(),
                non_recursive: false,
            },
        })
    }

    fn volume_mount(&mut self, key: &str, volume: &ServiceVolumeConfig) -> Result<Mount> {
        if !volume.target.starts_with('/') {
            return Err(self.invalid(
                key,
                format!(
                    "mount target {:?} is not an absolute path in the container",
                    volume.target
                ),
            ));
        }
        let kind = match volume.kind.as_str() {
            VOLUME_TYPE_BIND => self.bind_mount(key, volume)?,
            VOLUME_TYPE_VOLUME => self.volume_bind(key, volume)?,
            VOLUME_TYPE_TMPFS => self.tmpfs_mount(key, volume)?,
            kind @ (VOLUME_TYPE_NPIPE | VOLUME_TYPE_CLUSTER | VOLUME_TYPE_IMAGE) => {
                return Err(self.unsupported(
                    key,
                    format!(
                        "mounts of type {kind} are not supported by the embedded engine ({})",
                        volume.target
                    ),
                ))
            }
            other => {
                return Err(self.invalid(
                    key,
                    format!("unknown mount type {other:?}: use bind, volume or tmpfs"),
                ))
            }
        };
        Ok(Mount {
            target: volume.target.clone(),
            read_only: volume.read_only,
            kind,
        })
    }

    fn bind_mount(&mut self, key: &str, volume: &ServiceVolumeConfig) -> Result<MountKind> {
        // The loader made relative sources absolute against the project directory.
        if !volume.source.starts_with('/') {
            return Err(self.invalid(
                key,
                format!(
                    "bind source {:?} for {} is not an absolute host path",
                    volume.source, volume.target
                ),
            ));
        }
        let options = volume.bind.clone().unwrap_or_default();
        let propagation = match options.propagation.as_str() {
            "" => Propagation::default(),
            text => parse_propagation(text).ok_or_else(|| {
                self.invalid(
                    format!("{key}.bind.propagation"),
                    format!("invalid propagation {text:?}: use one of private, rprivate, shared, rshared, slave, rslave"),
                )
            })?,
        };
        let non_recursive = match options.recursive.as_str() {
            "" | "enabled" => false,
            "disabled" => true,
            "writable" | "readonly" => {
                self.ignored(&format!("{key}.bind.recursive: {}", options.recursive));
                false
            }
            other => {
                return Err(self.invalid(
                    format!("{key}.bind.recursive"),
                    format!("invalid value {other:?}: use enabled, disabled, writable or readonly"),
                ))
            }
        };
        if !options.selinux.is_empty() {
            self.ignored(&format!("{key}.bind.selinux"));
        }
        self.bind_sources.push(BindSource {
            path: PathBuf::from(&volume.source),
            // Without `bind:` options Compose uses the legacy API, which creates the path.
            create: volume.bind.as_ref().is_none_or(|b| b.create_host_path),
            key: key.to_owned(),
        });
        Ok(MountKind::Bind {
            source: PathBuf::from(&volume.source),
            propagation,
            non_recursive,
        })
    }

    /// A named or anonymous volume: its data directory, bind-mounted.
    fn volume_bind(&mut self, key: &str, volume: &ServiceVolumeConfig) -> Result<MountKind> {
        let name = match volume.source.as_str() {
            "" => None,
            source => Some(
                self.project
                    .volumes
                    .get(source)
                    .map(|declared| declared.name.as_str())
                    .filter(|name| !name.is_empty())
                    .unwrap_or(source),
            ),
        };
        let options = volume.volume.clone().unwrap_or_default();
        let request = VolumeRequest {
            name,
            target: &volume.target,
            replica: self.replica,
            nocopy: options.nocopy,
        };
        let mut source = (self.context.volume_path)(&request).map_err(|why| {
            let what = name.map_or_else(
                || "anonymous volume".to_owned(),
                |n| format!("volume {n:?}"),
            );
            self.unresolved(key, format!("{what} for {}: {why}", volume.target))
        })?;
        if !options.subpath.is_empty() {
            if !is_inner_relative_path(&options.subpath) {
                return Err(self.invalid(
                    format!("{key}.volume.subpath"),
                    format!(
                        "{:?} must be a relative path that stays inside the volume",
                        options.subpath
                    ),
                ));
            }
            source.push(&options.subpath);
        }
        Ok(MountKind::Bind {
            source,
            propagation: Propagation::default(),
            non_recursive: false,
        })
    }

    fn tmpfs_mount(&self, key: &str, volume: &ServiceVolumeConfig) -> Result<MountKind> {
        let options = volume.tmpfs.clone().unwrap_or_default();
        let size = match options.size.0 {
            0 => None,
            n => Some(u64::try_from(n).map_err(|_| {
                self.invalid(
                    format!("{key}.tmpfs.size"),
                    format!("{n} is negative: give a size such as 64m"),
                )
            })?),
        };
        // Compose passes the number on as the mode bits, as written.
        let mode = (options.mode != 0).then_some(options.mode);
        Ok(MountKind::Tmpfs { size, mode })
    }

    /// Secrets and configs: those backed by a file become read-only bind mounts of it,
    /// the others files to write. One per target: the last of a kind, secrets over configs.
    fn file_mounts(&mut self) -> Result<Vec<FileMount>> {
        let mut secrets = Vec::new();
        for reference in &self.service.secrets {
            let target = file_target(&reference.target, &reference.source, "/run/secrets/");
            let declared = self.project.secrets.get(&reference.source);
            let mount = self.file_mount("secrets", reference, declared, target)?;
            replace_or_push_file(&mut secrets, mount);
        }
        let mut configs = Vec::new();
        for reference in &self.service.configs {
            let target = file_target(&reference.target, &reference.source, "/");
            let declared = self.project.configs.get(&reference.source);
            let mount = self.file_mount("configs", reference, declared, target)?;
            replace_or_push_file(&mut configs, mount);
        }
        for config in configs {
            if !secrets.iter().any(|s| s.target() == config.target()) {
                secrets.push(config);
            }
        }
        Ok(secrets)
    }

    fn file_mount(
        &mut self,
        kind: &str,
        reference: &FileReferenceConfig,
        declared: Option<&FileObjectConfig>,
        target: String,
    ) -> Result<FileMount> {
        let key = format!("{kind}.{}", reference.source);
        let Some(declared) = declared else {
            return Err(self.invalid(
                key,
                format!(
                    "refers to undefined {} {:?}",
                    kind.trim_end_matches('s'),
                    reference.source
                ),
            ));
        };
        if declared.external {
            return Err(self.unsupported(
                key,
                "external secrets and configs need a Swarm cluster; use file, environment or content",
            ));
        }
        if !declared.driver.is_empty() || !declared.template_driver.is_empty() {
            return Err(self.unsupported(key, "driver and template_driver need a Swarm cluster"));
        }
        let inline = injected_content(self.project, declared).map_err(|e| self.invalid(&key, e))?;
        if let Some(content) = inline {
            return Ok(FileMount::Injected(InjectedFile {
                key,
                target,
                content,
                uid: non_empty(&reference.uid),
                gid: non_empty(&reference.gid),
                mode: reference.mode.map(|m| m.0),
            }));
        }
        if !reference.uid.is_empty() || !reference.gid.is_empty() || reference.mode.is_some() {
            self.ignored(&format!(
                "{key}: uid, gid and mode of a file-backed {}",
                kind.trim_end_matches('s')
            ));
        }
        self.bind_sources.push(BindSource {
            path: PathBuf::from(&declared.file),
            create: false,
            key,
        });
        Ok(FileMount::Bind(Mount {
            target,
            read_only: true,
            kind: MountKind::Bind {
                source: PathBuf::from(&declared.file),
                propagation: Propagation::default(),
                non_recursive: false,
            },
        }))
    }

    /// `volumes_from: [NAME[:ro|rw]]` or `container:NAME[:ro|rw]`: the peer's bind
    /// and volume mounts (a tmpfs cannot be shared); `ro` makes them all read-only,
    /// `rw` keeps each one's own mode.
    fn volumes_from(&self) -> Result<Vec<Mount>> {
        let mut inherited = Vec::new();
        for entry in &self.service.volumes_from {
            let (peer, mode) = match entry.strip_prefix("container:") {
                Some(rest) => {
                    let (name, mode) = split_mode(rest);
                    (Peer::Container(name), mode)
                }
                None => {
                    let (name, mode) = split_mode(entry);
                    (Peer::Service(name), mode)
                }
            };
            let read_only = match mode {
                None | Some("rw") => false,
                Some("ro") => true,
                Some(other) => {
                    return Err(self.invalid(
                        "volumes_from",
                        format!("invalid mode {other:?} in {entry:?}: use ro or rw"),
                    ))
                }
            };
            let mounts = (self.context.peer_mounts)(peer).map_err(|why| {
                self.unresolved(
                    "volumes_from",
                    format!("cannot read the mounts of {entry}: {why}"),
                )
            })?;
            inherited.extend(
                mounts
                    .into_iter()
                    .filter(|m| matches!(m.kind, MountKind::Bind { .. }))
                    .map(|m| Mount {
                        read_only: m.read_only || read_only,
                        ..m
                    }),
            );
        }
        Ok(inherited)
    }

    // --- checks and warnings -----------------------------------------------------

    /// Combinations the Docker Engine refuses.
    fn check_conflicts(&self, config: &ContainerConfig) -> Result<()> {
        if config.hostname.is_some() && config.namespaces.uts == NamespaceMode::Host {
            return Err(self.invalid(
                "hostname",
                "conflicting options: a hostname cannot be set with uts: host",
            ));
        }
        let shares_network = self.service.network_mode.starts_with("service:")
            || self.service.network_mode.starts_with("container:");
        if config.hostname.is_some() && shares_network {
            return Err(self.invalid(
                "hostname",
                format!(
                    "conflicting options: a hostname cannot be set with network_mode: {}",
                    self.service.network_mode
                ),
            ));
        }
        if !matches!(self.service.isolation.as_str(), "" | "default") {
            return Err(self.invalid(
                "isolation",
                format!(
                    "invalid isolation {:?}: Linux only supports default",
                    self.service.isolation
                ),
            ));
        }
        Ok(())
    }

    fn warn_about_ignored_keys(&mut self) {
        let s = self.service;
        let ignored: Vec<(&str, bool)> = vec![
            ("runtime", !s.runtime.is_empty()),
            ("blkio_config", s.blkio_config.is_some()),
            ("cpu_count", s.cpu_count != 0),
            ("cpu_percent", s.cpu_percent != 0.0),
            ("cpu_rt_period", s.cpu_rt_period != 0),
            ("cpu_rt_runtime", s.cpu_rt_runtime != 0),
            ("mem_swappiness", s.mem_swappiness.0 != 0),
            ("storage_opt", !s.storage_opt.is_empty()),
            ("cgroup_parent", !s.cgroup_parent.is_empty()),
            ("device_cgroup_rules", !s.device_cgroup_rules.is_empty()),
            ("gpus", !s.gpus.is_empty()),
            ("credential_spec", s.credential_spec.is_some()),
            ("annotations", !s.annotations.is_empty()),
            ("use_api_socket", s.use_api_socket),
            (
                "volume_driver",
                !matches!(s.volume_driver.as_str(), "" | "local"),
            ),
            (
                "logging.driver",
                s.logging
                    .as_ref()
                    .is_some_and(|l| !matches!(l.driver.as_str(), "" | "json-file")),
            ),
        ];
        for (key, used) in ignored {
            if used {
                self.ignored(key);
            }
        }
        if let Some(warning) = platform_mismatch(&s.platform) {
            self.warnings
                .push(format!("service {}: {warning}", self.name));
        }
    }
}

/// Docker's ulimit names.
const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Signal names Linux knows, without the `SIG` prefix.
const SIGNAL_NAMES: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// Docker's `ParseSignal`: a number, or a name with or without `SIG`, any case;
/// real-time signals as `RTMIN+n`/`RTMAX-n`.
fn is_signal(text: &str) -> bool {
    if let Ok(number) = text.parse::<u32>() {
        return (1..=64).contains(&number);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNAL_NAMES.contains(&name) {
        return true;
    }
    let offset = name
        .strip_prefix("RTMIN+")
        .or_else(|| name.strip_prefix("RTMAX-"));
    offset
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| (1..=15).contains(&n))
}

/// `KEY=VALUE`; an entry left without a value (not found in the project's
/// environment) is a bare `KEY`, as Compose sends it: the image's value is dropped.
fn environment(service: &Service) -> Vec<String> {
    service
        .environment
        .iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key}={value}"),
            None => key.clone(),
        })
        .collect()
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// The model keeps CPU counts as `f32`; going through their shortest decimal
/// spelling keeps `1.1` from becoming `1.100000023841858`.
fn decimal_f64(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

/// -1 is unlimited, so it sorts above every limit.
fn rlimit(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// A CDI device name: `vendor.com/class=name`.
fn is_cdi_name(name: &str) -> bool {
    match name.split_once('=') {
        Some((kind, device)) => !device.is_empty() && !kind.starts_with('/') && kind.contains('/'),
        None => false,
    }
}

fn parse_propagation(text: &str) -> Option<Propagation> {
    Some(match text {
        "private" => Propagation::Private,
        "rprivate" => Propagation::Rprivate,
        "shared" => Propagation::Shared,
        "rshared" => Propagation::Rshared,
        "slave" => Propagation::Slave,
        "rslave" => Propagation::Rslave,
        _ => return None,
    })
}

/// A relative path with no `..`, so that joining it cannot leave its base.
fn is_inner_relative_path(path: &str) -> bool {
    Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// A secret's or config's path in the container: its `target`, under `base` when
/// relative, or `base` + its name.
fn file_target(target: &str, source: &str, base: &str) -> String {
    match target {
        "" => format!("{base}{source}"),
        t if t.starts_with('/') => t.to_owned(),
        t => format!("{base}{t}"),
    }
}

/// Within secrets, and within configs, Compose keys mounts by target: the last wins.
/// A secret or config: a host file to bind, or content to write.
enum FileMount {
    Bind(Mount),
    Injected(InjectedFile),
}

impl FileMount {
    fn target(&self) -> &str {
        match self {
            FileMount::Bind(mount) => &mount.target,
            FileMount::Injected(file) => &file.target,
        }
    }
}

/// Adds `file`, replacing an earlier one at the same target.
fn replace_or_push_file(files: &mut Vec<FileMount>, file: FileMount) {
    match files.iter_mut().find(|f| f.target() == file.target()) {
        Some(existing) => *existing = file,
        None => files.push(file),
    }
}

/// An image `VOLUME` path as a clean absolute path (`/data/`, `data` and `/a/./data`
/// are all `/data`), as Docker compares it with the other mount points.
fn clean_target(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `name:ro` → (`name`, `Some("ro")`).
fn split_mode(entry: &str) -> (&str, Option<&str>) {
    match entry.split_once(':') {
        Some((name, mode)) => (name, Some(mode)),
        None => (entry, None),
    }
}

/// The host's platform as an image platform (`linux/amd64`).
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A warning when `platform` names another OS or CPU architecture than the host's:
/// the embedded engine runs images natively, without emulation.
fn platform_mismatch(platform: &str) -> Option<String> {
    if platform.is_empty() {
        return None;
    }
    let mut parts = platform.split('/');
    let first = parts.next().unwrap_or_default().to_ascii_lowercase();
    let (os, arch) = match parts.next() {
        Some(arch) => (first, arch.to_ascii_lowercase()),
        None if first == "linux" => return None,
        None => ("linux".to_owned(), first),
    };
    let arch = match arch.as_str() {
        "x86_64" | "x86-64" => "amd64".to_owned(),
        "aarch64" => "arm64".to_owned(),
        _ => arch,
    };
    let host = host_architecture();
    (os != "linux" || arch != host).then(|| {
        format!("platform {platform} does not match the host (linux/{host}); the embedded engine runs images natively and cannot emulate it")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::time::Duration;

    use crate::project::discover::{ConfigSource, Environment, ProjectInputs};
    use crate::project::loader::{load, LoadSettings};

    const PROJECT_DIR: &str = "/srv/app";

    /// A project as the real loader makes it, with `SET_BY_SHELL=shell` in the environment.
    fn project(yaml: &str) -> Project {
        let mut environment = Environment::new();
        environment.insert("SET_BY_SHELL".into(), "shell".into());
        let inputs = ProjectInputs {
            files: vec![ConfigSource::Inline {
                name: "compose.yaml".into(),
                content: yaml.into(),
            }],
            project_directory: PathBuf::from(PROJECT_DIR),
            explicit_name: Some("demo".into()),
            profiles: Vec::new(),
            environment: environment.clone(),
            shell_environment: environment,
            env_files: Vec::new(),
        };
        match load(&inputs, &LoadSettings::default()) {
            Ok(loaded) => loaded.project,
            Err(err) => panic!("test project does not load: {err}"),
        }
    }

    fn volume_dir(request: &VolumeRequest<'_>) -> Result<PathBuf, String> {
        let name = match request.name {
            Some(name) => name.to_owned(),
            None => format!(
                "anon-{}{}",
                request.replica,
                request.target.replace('/', "-")
            ),
        };
        Ok(Path::new("/var/lib/rcompose/volumes")
            .join(name)
            .join("_data"))
    }

    fn peer_pid(peer: Peer<'_>) -> Result<u32, String> {
        match peer {
            Peer::Service("db") => Ok(4242),
            Peer::Container("legacy") => Ok(77),
            other => Err(format!("{other:?} is not running")),
        }
    }

    fn peer_mounts(peer: Peer<'_>) -> Result<Vec<Mount>, String> {
        match peer {
            Peer::Service("data") => Ok(vec![
                bind("/data", "/var/lib/rcompose/volumes/demo_store/_data", false),
                bind("/config", "/srv/app/config", true),
                Mount {
                    target: "/scratch".into(),
                    read_only: false,
                    kind: MountKind::Tmpfs {
                        size: None,
                        mode: None,
                    },
                },
            ]),
            other => Err(format!("{other:?} is not running")),
        }
    }

    fn bind(target: &str, source: &str, read_only: bool) -> Mount {
        Mount {
            target: target.into(),
            read_only,
            kind: MountKind::Bind {
                source: source.into(),
                propagation: Propagation::Rprivate,
                non_recursive: false,
            },
        }
    }

    /// What a test changes in the context the other tests share.
    #[derive(Default)]
    struct Overrides<'a> {
        volume_path: Option<VolumeResolver<'a>>,
        user_namespace: Option<&'a UserNamespace>,
        init_binary: Option<&'a Path>,
        image_volumes: &'a [String],
    }

    fn translate_with(yaml: &str, replica: u32, overrides: Overrides<'_>) -> Result<Translation> {
        translate_project(&project(yaml), replica, overrides)
    }

    fn translate_project(
        project: &Project,
        replica: u32,
        overrides: Overrides<'_>,
    ) -> Result<Translation> {
        let labels = BTreeMap::from([
            ("com.docker.compose.project".to_owned(), "demo".to_owned()),
            ("com.docker.compose.service".to_owned(), "web".to_owned()),
        ]);
        let mut context = TranslateContext::new(&labels, Path::new(PROJECT_DIR));
        context.volume_path = overrides.volume_path.unwrap_or(&volume_dir);
        context.peer_pid = &peer_pid;
        context.peer_mounts = &peer_mounts;
        context.user_namespace = overrides.user_namespace;
        context.init_binary = overrides.init_binary;
        context.image_volumes = overrides.image_volumes;
        container_config(project, "web", &project.services["web"], replica, &context)
    }

    fn translate(yaml: &str) -> Result<Translation> {
        translate_with(yaml, 1, Overrides::default())
    }

    fn web(body: &str) -> String {
        format!("services:\n  web:\n    image: busybox\n{body}")
    }

    fn config(body: &str) -> ContainerConfig {
        match translate(&web(body)) {
            Ok(t) => t.config,
            Err(err) => panic!("translation failed: {err}"),
        }
    }

    fn error(body: &str) -> String {
        match translate(&web(body)) {
            Ok(t) => panic!("expected an error, got {:?}", t.config),
            Err(err) => err.to_string(),
        }
    }

    fn warnings(body: &str) -> Vec<String> {
        match translate(&web(body)) {
            Ok(t) => t.warnings,
            Err(err) => panic!("translation failed: {err}"),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_bare_service_keeps_the_image_defaults() {
        let c = config("");
        assert_eq!(c.entrypoint, None);
        assert_eq!(c.command, None);
        assert_eq!(c.user, None);
        assert_eq!(c.working_dir, None);
        assert_eq!(c.hostname, None);
        assert_eq!(c.namespaces, Namespaces::default());
        assert_eq!(c.resources, Resources::default());
        assert!(c.mounts.is_empty());
        assert_eq!(c.labels["com.docker.compose.service"], "web");
    }

    #[test]
    fn command_and_entrypoint_as_string_or_list() {
        let c = config("    entrypoint: /docker-entrypoint.sh --verbose\n    command: [\"sh\", \"-c\", \"echo $$HOME\"]\n");
        assert_eq!(
            c.entrypoint,
            Some(strings(&["/docker-entrypoint.sh", "--verbose"]))
        );
        assert_eq!(c.command, Some(strings(&["sh", "-c", "echo $HOME"])));
        // `entrypoint: ""` clears the image's ENTRYPOINT; its CMD still applies.
        assert_eq!(config("    entrypoint: \"\"\n").entrypoint, Some(vec![]));
        assert_eq!(config("    entrypoint: []\n").entrypoint, Some(vec![]));
        assert_eq!(config("    command: []\n").command, Some(vec![]));
    }

    #[test]
    fn environment_entries_in_order_with_unresolved_ones_bare() {
        let c = config("    environment:\n      - DEBUG=1\n      - SET_BY_SHELL\n      - NOT_SET_ANYWHERE\n      - EMPTY=\n");
        assert_eq!(
            c.env,
            strings(&[
                "DEBUG=1",
                "SET_BY_SHELL=shell",
                "NOT_SET_ANYWHERE",
                "EMPTY="
            ])
        );
    }

    #[test]
    fn process_settings() {
        let c = config(
            "    user: \"1000:1000\"\n    working_dir: /app\n    hostname: api\n    domainname: example.com\n    init: true\n    tty: true\n    stdin_open: true\n    stop_signal: SIGQUIT\n    stop_grace_period: 1m30s\n    group_add: [audio, \"42\"]\n",
        );
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        assert_eq!(c.hostname.as_deref(), Some("api"));
        assert_eq!(c.domainname.as_deref(), Some("example.com"));
        assert!(c.init && c.tty && c.stdin_open);
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.stop_grace_period, Some(Duration::from_secs(90)));
        assert_eq!(c.group_add, strings(&["audio", "42"]));
    }

    #[test]
    fn init_gets_the_engine_init_binary() {
        let t = translate_with(
            &web("    init: true\n"),
            1,
            Overrides {
                init_binary: Some(Path::new("/usr/libexec/rcompose/init")),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert!(t.config.init);
        assert_eq!(
            t.config.init_binary.as_deref(),
            Some(Path::new("/usr/libexec/rcompose/init"))
        );
    }

    #[test]
    fn bad_process_values_name_service_and_key() {
        assert_eq!(
            error("    working_dir: app\n"),
            "service web: working_dir: \"app\" is not an absolute path"
        );
        assert!(config("    stop_signal: \"9\"\n").stop_signal.is_some());
        assert!(config("    stop_signal: rtmin+3\n").stop_signal.is_some());
        assert_eq!(
            error("    stop_signal: SIGNOPE\n"),
            "service web: stop_signal: invalid signal \"SIGNOPE\": use a name such as SIGTERM or a number"
        );
    }

    #[test]
    fn orchestrator_labels_win_over_service_labels() {
        let c = config("    labels:\n      com.example.tier: front\n      com.docker.compose.project: spoofed\n");
        assert_eq!(c.labels["com.example.tier"], "front");
        assert_eq!(c.labels["com.docker.compose.project"], "demo");
    }

    #[test]
    fn security_settings() {
        let c = config(
            "    read_only: true\n    privileged: true\n    cap_add: [NET_ADMIN]\n    cap_drop: [ALL]\n    security_opt:\n      - no-new-privileges:true\n      - seccomp:profiles/strict.json\n      - apparmor=unconfined\n      - seccomp=unconfined\n      - 'seccomp={\"defaultAction\": \"SCMP_ACT_ALLOW\"}'\n",
        );
        assert!(c.read_only && c.privileged);
        assert_eq!(c.cap_add, strings(&["NET_ADMIN"]));
        assert_eq!(c.cap_drop, strings(&["ALL"]));
        assert_eq!(
            c.security_opt,
            strings(&[
                "no-new-privileges:true",
                "seccomp=/srv/app/profiles/strict.json",
                "apparmor=unconfined",
                "seccomp=unconfined",
                "seccomp={\"defaultAction\": \"SCMP_ACT_ALLOW\"}",
            ])
        );
        assert_eq!(
            error("    security_opt: [label]\n"),
            "service web: security_opt: invalid security option \"label\": expected KEY=VALUE"
        );
    }

    #[test]
    fn top_level_resources() {
        let c = config(
            "    mem_limit: 512m\n    memswap_limit: 1g\n    mem_reservation: 256m\n    cpus: 1.1\n    cpu_shares: 512\n    cpuset: 0-1\n    pids_limit: 100\n    shm_size: 128m\n    oom_score_adj: -500\n    oom_kill_disable: true\n",
        );
        let r = &c.resources;
        assert_eq!(r.memory, 512 << 20);
        assert_eq!(r.memory_swap, 1 << 30);
        assert_eq!(r.memory_reservation, 256 << 20);
        assert_eq!(r.cpus, 1.1);
        assert_eq!(r.cpu_shares, 512);
        assert_eq!(r.cpuset.as_deref(), Some("0-1"));
        assert_eq!(r.pids_limit, Some(100));
        assert_eq!(r.shm_size, Some(128 << 20));
        assert_eq!(r.oom_score_adj, -500);
        assert!(r.oom_kill_disable);
        let quota = config("    cpu_quota: 50000\n    cpu_period: 100000\n");
        assert_eq!(
            (quota.resources.cpu_quota, quota.resources.cpu_period),
            (50000, 100000)
        );
        assert_eq!(
            config("    memswap_limit: -1\n    mem_limit: 64m\n")
                .resources
                .memory_swap,
            -1
        );
    }

    #[test]
    fn deploy_limits_and_reservations_fill_the_resources() {
        // The loader refuses distinct values for the same limit in both places, so
        // deploy's values simply win where it sets them.
        let c = config(
            "    cpus: 2\n    deploy:\n      resources:\n        limits: {memory: 256m, pids: 50}\n        reservations: {memory: 128m, cpus: '0.25'}\n",
        );
        assert_eq!(c.resources.memory, 256 << 20);
        assert_eq!(c.resources.cpus, 2.0);
        assert_eq!(c.resources.pids_limit, Some(50));
        assert_eq!(c.resources.memory_reservation, 128 << 20);
        let limits = config("    deploy:\n      resources:\n        limits: {cpus: '0.5'}\n");
        assert_eq!(limits.resources.cpus, 0.5);
    }

    #[test]
    fn deploy_limits_override_top_level_keys_in_a_model_built_by_hand() {
        let mut project = project(&web(
            "    mem_limit: 1g\n    deploy:\n      resources:\n        limits: {memory: 1g}\n",
        ));
        let web = project.services.get_mut("web").expect("web is declared");
        if let Some(limits) = web
            .deploy
            .as_mut()
            .and_then(|d| d.resources.limits.as_mut())
        {
            limits.memory = crate::project::model::UnitBytes(1 << 20);
        }
        let err = translate_project(&project, 1, Overrides::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service web: deploy.resources.limits.memory: minimum memory limit allowed is 6MB"
        );
    }

    #[test]
    fn resource_errors_name_the_key_the_user_wrote() {
        assert_eq!(
            error("    mem_limit: 1m\n"),
            "service web: mem_limit: minimum memory limit allowed is 6MB"
        );
        assert_eq!(
            error("    deploy:\n      resources:\n        limits: {memory: 1m}\n"),
            "service web: deploy.resources.limits.memory: minimum memory limit allowed is 6MB"
        );
        assert!(error("    memswap_limit: 1g\n").starts_with("service web: memswap_limit: "));
        assert!(error("    mem_limit: 64m\n    mem_reservation: 128m\n")
            .starts_with("service web: mem_reservation: "));
        assert!(error("    cpus: 1\n    cpu_period: 100000\n")
            .starts_with("service web: cpus: conflicting options"));
        assert_eq!(
            error("    oom_score_adj: 1001\n"),
            "service web: oom_score_adj: 1001 is out of range: it must be between -1000 and 1000"
        );
    }

    #[test]
    fn ulimits_single_or_soft_hard() {
        let c = config("    ulimits:\n      nproc: 65535\n      nofile: {soft: 20000, hard: 40000}\n      memlock: -1\n");
        let by_name: BTreeMap<_, _> = c
            .ulimits
            .iter()
            .map(|u| (u.name.as_str(), (u.soft, u.hard)))
            .collect();
        assert_eq!(by_name["nproc"], (65535, 65535));
        assert_eq!(by_name["nofile"], (20000, 40000));
        assert_eq!(by_name["memlock"], (-1, -1));
        // The loader refuses soft > hard already; a model built another way is checked too.
        let mut project = project(&web(
            "    ulimits:\n      nofile: {soft: 1024, hard: 1024}\n",
        ));
        if let Some(nofile) = project
            .services
            .get_mut("web")
            .and_then(|w| w.ulimits.get_mut("nofile"))
        {
            nofile.soft = 4096;
        }
        assert_eq!(
            translate_project(&project, 1, Overrides::default())
                .unwrap_err()
                .to_string(),
            "service web: ulimits.nofile: soft limit 4096 is above the hard limit 1024"
        );
        assert!(error("    ulimits:\n      files: 10\n").starts_with(
            "service web: ulimits.files: unknown limit \"files\": use one of core, cpu"
        ));
    }

    #[test]
    fn sysctls_and_tmpfs_entries() {
        let c = config("    sysctls:\n      - net.core.somaxconn=1024\n    tmpfs:\n      - /run\n      - /tmp:size=64m,mode=1777\n");
        assert_eq!(c.sysctls["net.core.somaxconn"], "1024");
        assert_eq!(c.tmpfs["/run"], "");
        assert_eq!(c.tmpfs["/tmp"], "size=64m,mode=1777");
        assert_eq!(config("    tmpfs: /cache\n").tmpfs["/cache"], "");
        assert_eq!(
            error("    tmpfs: [cache]\n"),
            "service web: tmpfs: \"cache\" is not an absolute path in the container"
        );
    }

    #[test]
    fn devices_short_and_long_syntax() {
        let c = config("    devices:\n      - /dev/fuse\n      - /dev/ttyUSB0:/dev/ttyS0:rw\n      - vendor.com/gpu=all\n");
        assert_eq!(c.devices.len(), 2);
        assert_eq!(c.devices[0].path_on_host, PathBuf::from("/dev/fuse"));
        assert_eq!(c.devices[0].cgroup_permissions.as_deref(), Some("rwm"));
        assert_eq!(
            c.devices[1].path_in_container.as_deref(),
            Some(Path::new("/dev/ttyS0"))
        );
        assert_eq!(c.devices[1].cgroup_permissions.as_deref(), Some("rw"));
        assert_eq!(
            warnings("    devices: [vendor.com/gpu=all]\n"),
            ["service web: devices: the CDI device vendor.com/gpu=all is not supported by the embedded engine and is ignored"]
        );
        assert_eq!(
            error("    devices: [\"/dev/fuse:/dev/fuse:rwx\"]\n"),
            "service web: devices: invalid permissions \"rwx\" for /dev/fuse: use a combination of r, w and m"
        );
    }

    #[test]
    fn namespaces_host_private_and_shared() {
        let c = config("    pid: host\n    ipc: host\n    uts: host\n    cgroup: host\n    network_mode: host\n");
        assert_eq!(
            c.namespaces,
            Namespaces {
                network: NamespaceMode::Host,
                pid: NamespaceMode::Host,
                ipc: NamespaceMode::Host,
                uts: NamespaceMode::Host,
                cgroup: NamespaceMode::Host,
            }
        );
        let yaml = "services:\n  db:\n    image: postgres\n  web:\n    image: busybox\n    pid: service:db\n    ipc: container:legacy\n    network_mode: service:db\n    cgroup: private\n";
        let shared = translate(yaml).unwrap().config.namespaces;
        assert_eq!(shared.pid, NamespaceMode::Join("/proc/4242/ns/pid".into()));
        assert_eq!(shared.ipc, NamespaceMode::Join("/proc/77/ns/ipc".into()));
        assert_eq!(
            shared.network,
            NamespaceMode::Join("/proc/4242/ns/net".into())
        );
        assert_eq!(shared.cgroup, NamespaceMode::Private);
        assert_eq!(
            config("    network_mode: bridge\n").namespaces.network,
            NamespaceMode::Private
        );
    }

    #[test]
    fn namespace_errors() {
        assert_eq!(
            error("    ipc: container:gone\n"),
            "service web: ipc: cannot join container:gone: Container(\"gone\") is not running"
        );
        assert_eq!(
            error("    uts: private\n"),
            "service web: uts: invalid UTS mode \"private\": the only value is host"
        );
        assert_eq!(
            error("    pid: shareable\n"),
            "service web: pid: invalid mode \"shareable\": use host, service:NAME or container:NAME"
        );
        assert_eq!(
            error("    uts: host\n    hostname: api\n"),
            "service web: hostname: conflicting options: a hostname cannot be set with uts: host"
        );
        assert!(
            error("    network_mode: container:legacy\n    hostname: api\n")
                .starts_with("service web: hostname: conflicting options")
        );
    }

    #[test]
    fn userns_mode_host_opts_out_of_remapping() {
        let remap = UserNamespace::remap_root(100_000, 100_000, 65_536);
        let remapped = translate_with(
            &web(""),
            1,
            Overrides {
                user_namespace: Some(&remap),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(remapped.config.user_namespace.as_ref(), Some(&remap));
        let host = translate_with(
            &web("    userns_mode: host\n"),
            1,
            Overrides {
                user_namespace: Some(&remap),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(host.config.user_namespace, None);
        assert!(
            error("    userns_mode: keep-id\n").starts_with("service web: userns_mode: invalid")
        );
    }

    #[test]
    fn bind_mounts_short_and_long_syntax() {
        let t = translate(&web(
            "    volumes:\n      - ./src:/app/src:ro\n      - type: bind\n        source: /var/run/app.sock\n        target: /run/app.sock\n        bind: {propagation: rslave, recursive: disabled}\n      - type: bind\n        source: ./cache\n        target: /cache\n",
        ))
        .unwrap();
        let mounts = &t.config.mounts;
        assert_eq!(mounts[0], bind("/app/src", "/srv/app/src", true));
        assert_eq!(
            mounts[1].kind,
            MountKind::Bind {
                source: "/var/run/app.sock".into(),
                propagation: Propagation::Rslave,
                non_recursive: true
            }
        );
        // Short syntax and long syntax without `bind:` create a missing source; an
        // explicit `bind:` without create_host_path does not.
        let creates: Vec<_> = t
            .bind_sources
            .iter()
            .map(|b| (b.path.to_str().unwrap_or(""), b.create))
            .collect();
        assert_eq!(
            creates,
            [
                ("/srv/app/src", true),
                ("/var/run/app.sock", false),
                ("/srv/app/cache", true)
            ]
        );
        assert_eq!(t.bind_sources[1].key, "volumes.1");
    }

    #[test]
    fn bind_mount_errors_and_warnings() {
        assert_eq!(
            error("    volumes:\n      - {type: bind, source: /x, target: /x, bind: {propagation: sideways}}\n"),
            "service web: volumes.0.bind.propagation: invalid propagation \"sideways\": use one of private, rprivate, shared, rshared, slave, rslave"
        );
        assert_eq!(
            warnings("    volumes: [\"./src:/src:z\"]\n"),
            ["service web: volumes.0.bind.selinux is not supported by the embedded engine and is ignored"]
        );
        assert_eq!(
            error("    volumes: [\"./a:/data\", \"./b:/data\"]\n"),
            "service web: volumes.1: duplicate mount point /data"
        );
        assert_eq!(
            error("    tmpfs: [/data]\n    volumes: [\"./a:/data\"]\n"),
            "service web: volumes.0: duplicate mount point /data"
        );
    }

    #[test]
    fn named_and_anonymous_volumes_use_the_volume_store() {
        let calls = RefCell::new(Vec::new());
        let record = |request: &VolumeRequest<'_>| {
            calls.borrow_mut().push((
                request.name.map(str::to_owned),
                request.nocopy,
                request.replica,
            ));
            volume_dir(request)
        };
        let yaml = web("    volumes:\n      - db-data:/var/lib/db\n      - /var/cache/app\n      - type: volume\n        source: shared\n        target: /shared\n        read_only: true\n        volume: {nocopy: true, subpath: sub/dir}\nvolumes:\n  db-data: {}\n  shared: {name: company-shared, external: true}\n");
        let t = translate_with(
            &yaml,
            2,
            Overrides {
                volume_path: Some(&record),
                ..Overrides::default()
            },
        )
        .unwrap();
        let mounts = &t.config.mounts;
        assert_eq!(
            mounts[0],
            bind(
                "/var/lib/db",
                "/var/lib/rcompose/volumes/demo_db-data/_data",
                false
            )
        );
        assert_eq!(
            mounts[1],
            bind(
                "/var/cache/app",
                "/var/lib/rcompose/volumes/anon-2-var-cache-app/_data",
                false
            )
        );
        assert_eq!(
            mounts[2],
            bind(
                "/shared",
                "/var/lib/rcompose/volumes/company-shared/_data/sub/dir",
                true
            )
        );
        assert_eq!(
            calls.into_inner(),
            [
                (Some("demo_db-data".to_owned()), false, 2),
                (None, false, 2),
                (Some("company-shared".to_owned()), true, 2)
            ]
        );
        // Volumes are not host paths the plan has to check.
        assert!(t.bind_sources.is_empty());
    }

    #[test]
    fn image_volumes_nothing_mounts_get_anonymous_volumes() {
        // The wordpress image declares /var/www/html, the mariadb one /var/lib/mysql.
        let image_volumes = strings(&["/var/www/html/", "/var/lib/mysql", "/tmp/cache", "logs"]);
        let t = translate_with(
            &web("    volumes: [\"db_data:/var/lib/mysql\"]\n    tmpfs: [/tmp/cache]\nvolumes:\n  db_data: {}\n"),
            1,
            Overrides {
                image_volumes: &image_volumes,
                ..Overrides::default()
            },
        )
        .unwrap();
        // The service's own volume and tmpfs win; the others are anonymous volumes at
        // clean absolute paths.
        assert_eq!(
            t.config.mounts,
            [
                bind(
                    "/var/lib/mysql",
                    "/var/lib/rcompose/volumes/demo_db_data/_data",
                    false
                ),
                bind(
                    "/var/www/html",
                    "/var/lib/rcompose/volumes/anon-1-var-www-html/_data",
                    false
                ),
                bind(
                    "/logs",
                    "/var/lib/rcompose/volumes/anon-1-logs/_data",
                    false
                ),
            ]
        );
    }

    #[test]
    fn an_image_volume_without_a_volume_store_names_the_service() {
        let image_volumes = strings(&["/var/www/html"]);
        let err = translate_with(
            &web(""),
            1,
            Overrides {
                volume_path: Some(&no_volume_store),
                image_volumes: &image_volumes,
                ..Overrides::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("service web: image:"), "{err}");
        assert!(err.contains("VOLUME /var/www/html"), "{err}");
    }

    #[test]
    fn image_volume_paths_are_cleaned() {
        assert_eq!(clean_target("/a/./b//c/"), "/a/b/c");
        assert_eq!(clean_target("data"), "/data");
        assert_eq!(clean_target("/a/../b"), "/b");
        assert_eq!(clean_target("/"), "/");
    }

    #[test]
    fn volume_errors() {
        let no_store = translate_with(
            &web("    volumes: [\"data:/data\"]\nvolumes:\n  data: {}\n"),
            1,
            Overrides {
                volume_path: Some(&no_volume_store),
                ..Overrides::default()
            },
        );
        assert_eq!(
            no_store.unwrap_err().to_string(),
            "service web: volumes.0: volume \"demo_data\" for /data: no volume store is available"
        );
        assert_eq!(
            error("    volumes:\n      - {type: volume, source: data, target: /d, volume: {subpath: ../etc}}\nvolumes:\n  data: {}\n"),
            "service web: volumes.0.volume.subpath: \"../etc\" must be a relative path that stays inside the volume"
        );
        assert_eq!(
            error("    volumes:\n      - {type: image, source: alpine, target: /img}\n"),
            "service web: volumes.0: mounts of type image are not supported by the embedded engine (/img)"
        );
    }

    #[test]
    fn tmpfs_mounts_with_size_and_mode() {
        let c = config("    volumes:\n      - type: tmpfs\n        target: /run/cache\n        tmpfs: {size: 64m, mode: 1777}\n      - {type: tmpfs, target: /scratch}\n");
        assert_eq!(
            c.mounts[0].kind,
            MountKind::Tmpfs {
                size: Some(64 << 20),
                mode: Some(1777)
            }
        );
        assert_eq!(
            c.mounts[1].kind,
            MountKind::Tmpfs {
                size: None,
                mode: None
            }
        );
    }

    #[test]
    fn file_secrets_and_configs_are_read_only_binds() {
        let t = translate(&web(
            "    secrets:\n      - db_password\n      - source: cert\n        target: tls.pem\n        mode: 0400\n    configs:\n      - nginx_conf\n      - source: app_conf\n        target: /etc/app.conf\n      - source: inline\n        target: /etc/inline.conf\n        mode: \"0440\"\n      - source: from_env\nsecrets:\n  db_password: {file: ./secrets/db.txt}\n  cert: {file: /etc/ssl/cert.pem}\nconfigs:\n  nginx_conf: {file: ./nginx.conf}\n  app_conf: {file: ./app.conf}\n  inline: {content: \"key=value\"}\n  from_env: {environment: SET_BY_SHELL}\n",
        ))
        .unwrap();
        let targets: Vec<_> = t
            .config
            .mounts
            .iter()
            .map(|m| (m.target.as_str(), m.read_only))
            .collect();
        assert_eq!(
            targets,
            [
                ("/run/secrets/db_password", true),
                ("/run/secrets/tls.pem", true),
                ("/nginx_conf", true),
                ("/etc/app.conf", true),
            ]
        );
        assert_eq!(
            t.config.mounts[0],
            bind("/run/secrets/db_password", "/srv/app/secrets/db.txt", true)
        );
        assert!(t.bind_sources.iter().all(|b| !b.create));
        assert_eq!(
            t.injected_files,
            [
                InjectedFile {
                    key: "configs.inline".into(),
                    target: "/etc/inline.conf".into(),
                    content: "key=value".into(),
                    uid: None,
                    gid: None,
                    mode: Some(0o440),
                },
                InjectedFile {
                    key: "configs.from_env".into(),
                    target: "/from_env".into(),
                    content: "shell".into(),
                    uid: None,
                    gid: None,
                    mode: None,
                },
            ]
        );
        assert_eq!(
            t.warnings,
            ["service web: secrets.cert: uid, gid and mode of a file-backed secret is not supported by the embedded engine and is ignored"]
        );
    }

    #[test]
    fn an_unset_environment_variable_behind_a_secret_is_an_error() {
        assert_eq!(
            error("    secrets: [token]\nsecrets:\n  token: {environment: NOT_SET_ANYWHERE}\n"),
            "service web: secrets.token: environment variable \"NOT_SET_ANYWHERE\" is not set (the content comes from it)"
        );
    }

    #[test]
    fn a_volume_takes_precedence_over_a_secret_at_the_same_target() {
        let c = config("    volumes: [\"./local-token:/run/secrets/token\"]\n    secrets: [token]\nsecrets:\n  token: {file: ./token}\n");
        assert_eq!(c.mounts.len(), 1);
        assert_eq!(
            c.mounts[0],
            bind("/run/secrets/token", "/srv/app/local-token", false)
        );
    }

    #[test]
    fn the_last_of_two_configs_at_one_target_wins_and_a_secret_beats_them() {
        let c = config("    configs:\n      - {source: a, target: /etc/app.conf}\n      - {source: b, target: /etc/app.conf}\nconfigs:\n  a: {file: ./a.conf}\n  b: {file: ./b.conf}\n");
        assert_eq!(c.mounts, [bind("/etc/app.conf", "/srv/app/b.conf", true)]);
        let c = config("    secrets: [{source: s, target: /etc/app.conf}]\n    configs: [{source: a, target: /etc/app.conf}]\nsecrets:\n  s: {file: ./s.conf}\nconfigs:\n  a: {file: ./a.conf}\n");
        assert_eq!(c.mounts, [bind("/etc/app.conf", "/srv/app/s.conf", true)]);
        // The same with content to write: a secret's (environment) content beats a config's file,
        // a file-backed secret beats a config's content, a volume beats them all.
        let t = translate(&web("    secrets: [{source: s, target: /etc/app.conf}]\n    configs: [{source: a, target: /etc/app.conf}]\nsecrets:\n  s: {environment: SET_BY_SHELL}\nconfigs:\n  a: {file: ./a.conf}\n")).unwrap();
        assert!(t.config.mounts.is_empty(), "{:?}", t.config.mounts);
        assert_eq!(t.injected_files.len(), 1);
        assert_eq!(t.injected_files[0].content, "shell");
        let t = translate(&web("    secrets: [{source: s, target: /etc/app.conf}]\n    configs: [{source: a, target: /etc/app.conf}]\nsecrets:\n  s: {file: ./s.conf}\nconfigs:\n  a: {content: from-config}\n")).unwrap();
        assert_eq!(
            t.config.mounts,
            [bind("/etc/app.conf", "/srv/app/s.conf", true)]
        );
        assert!(t.injected_files.is_empty());
        let t = translate(&web("    volumes: [\"./mine:/etc/app.conf\"]\n    configs: [{source: a, target: /etc/app.conf}]\nconfigs:\n  a: {content: from-config}\n")).unwrap();
        assert_eq!(
            t.config.mounts,
            [bind("/etc/app.conf", "/srv/app/mine", false)]
        );
        assert!(t.injected_files.is_empty());
    }

    #[test]
    fn external_secrets_are_refused() {
        assert_eq!(
            error("    secrets: [token]\nsecrets:\n  token: {external: true}\n"),
            "service web: secrets.token: external secrets and configs need a Swarm cluster; use file, environment or content"
        );
    }

    #[test]
    fn volumes_from_copies_the_peer_mounts() {
        let yaml = "services:\n  data:\n    image: busybox\n  web:\n    image: busybox\n    volumes: [\"./own-config:/config\"]\n    volumes_from: [\"data:ro\"]\n";
        let c = translate(yaml).unwrap().config;
        // Its own /config wins; the peer's tmpfs is not shared; `ro` applies to the rest.
        assert_eq!(
            c.mounts,
            [
                bind("/config", "/srv/app/own-config", false),
                bind("/data", "/var/lib/rcompose/volumes/demo_store/_data", true),
            ]
        );
        let rw = "services:\n  data:\n    image: busybox\n  web:\n    image: busybox\n    volumes_from: [data]\n";
        let c = translate(rw).unwrap().config;
        assert!(!c.mounts[0].read_only);
        assert_eq!(c.mounts[1], bind("/config", "/srv/app/config", true));
    }

    #[test]
    fn volumes_from_errors() {
        let bad_mode = "services:\n  data:\n    image: busybox\n  web:\n    image: busybox\n    volumes_from: [\"data:rx\"]\n";
        assert_eq!(
            translate(bad_mode).unwrap_err().to_string(),
            "service web: volumes_from: invalid mode \"rx\" in \"data:rx\": use ro or rw"
        );
        assert_eq!(
            error("    volumes_from: [\"container:gone\"]\n"),
            "service web: volumes_from: cannot read the mounts of container:gone: Container(\"gone\") is not running"
        );
    }

    #[test]
    fn unsupported_keys_are_ignored_with_a_warning() {
        let w = warnings(
            "    runtime: runsc\n    blkio_config: {weight: 300}\n    cpu_rt_runtime: 400\n    mem_swappiness: 60\n    storage_opt: {size: 20G}\n    logging: {driver: syslog}\n",
        );
        let keys = [
            "runtime",
            "blkio_config",
            "cpu_rt_runtime",
            "mem_swappiness",
            "storage_opt",
            "logging.driver",
        ];
        assert_eq!(w.len(), keys.len(), "{w:?}");
        for (warning, key) in w.iter().zip(keys) {
            assert_eq!(
                warning,
                &format!(
                    "service web: {key} is not supported by the embedded engine and is ignored"
                )
            );
        }
        assert!(
            warnings("    logging: {driver: json-file, options: {max-size: 10m}}\n").is_empty()
        );
    }

    #[test]
    fn isolation_other_than_default_fails_as_on_docker() {
        assert!(warnings("    isolation: default\n").is_empty());
        assert_eq!(
            error("    isolation: hyperv\n"),
            "service web: isolation: invalid isolation \"hyperv\": Linux only supports default"
        );
    }

    #[test]
    fn a_foreign_platform_is_a_warning() {
        let host = host_architecture();
        assert!(warnings(&format!("    platform: linux/{host}\n")).is_empty());
        let other = if host == "amd64" { "arm64" } else { "amd64" };
        let w = warnings(&format!("    platform: linux/{other}\n"));
        assert_eq!(
            w,
            [format!("service web: platform linux/{other} does not match the host (linux/{host}); the embedded engine runs images natively and cannot emulate it")]
        );
        assert_eq!(platform_mismatch("linux"), None);
        assert!(platform_mismatch("windows/amd64").is_some());
    }
}
