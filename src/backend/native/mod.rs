//! The native engine: a Compose project's networks, volumes and containers on the
//! embedded runtime (`rcompose-runtime`), for one state root (the global `--root`).
//!
//! Layout under the root: `images/` (the image store, as `rcompose image` opens it),
//! `containers/`, `run/`, `networks/`, `netns/`, `volumes/` (the runtime's), and
//! `compose/<id>/` (this engine's: what removing a container needs, see [`record`],
//! and the container's resolv.conf, hosts and hostname).
//!
//! The engine is synchronous and holds no per-container state in memory: every fact is
//! on disk, so another process (a restarted supervisor, `down` from a shell) can
//! operate on what an earlier one made. It does not serve DNS or restart containers:
//! [`CreatedContainer`] carries what the supervisor needs for that.

mod injected;
pub mod ports;
pub mod record;
pub mod resources;
pub mod signal;

use std::cell::RefCell;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rcompose_runtime::container::config::{Mount, MountKind, NamespaceMode, Propagation, Ulimit};
use rcompose_runtime::container::lifecycle::{
    ContainerOutput, CreateOptions, LifecycleError, Runtime,
};
use rcompose_runtime::container::rootfs::{merged_dir, RootfsSource};
use rcompose_runtime::container::status::{ExitStatus, State};
use rcompose_runtime::image::store::{Image, Store, StoreError};
use rcompose_runtime::logs::LogOptions;
use rcompose_runtime::network::dns::{DnsRecord, ResolverOptions};
use rcompose_runtime::network::hostfiles::{
    self, ContainerHostFiles, DnsSettings, ExtraHost, HostsBase, HostsSettings, ResolverMode,
};
use rcompose_runtime::network::manager::{
    Endpoint, NetworkError, NetworkManager, NetworkRecord, PublishRequest,
};
use rcompose_runtime::network::ports::PortReservation;
use rcompose_runtime::network::sandbox::{self, NetworkAttachment, SandboxRequest};
use rcompose_runtime::volume::{VolumeError, VolumeStore};
use thiserror::Error;

use self::record::{record_dir, AttachedVolume, TeardownRecord};
use self::resources::{NetworkPlan, VolumePlan};
use crate::backend::translate::{
    container_config, injected_content, Peer, TranslateContext, TranslateError, VolumeRequest,
};
use crate::orchestrator::labels::{self, Labels};
use crate::orchestrator::plan::{ContainerState, ObservedContainer};
use crate::project::model::mount::VOLUME_TYPE_BIND;
use crate::project::model::{Project, Service};

/// Docker's stop timeout when neither the caller nor `stop_grace_period` gives one.
const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// SIGTERM, Docker's default stop signal.
const DEFAULT_STOP_SIGNAL: i32 = 15;
/// On an anonymous volume: the container it was made for and where it is mounted,
/// so that the container's replacement takes it over.
pub const ANONYMOUS_CONTAINER_LABEL: &str = "io.rcompose.anonymous.container";
pub const ANONYMOUS_TARGET_LABEL: &str = "io.rcompose.anonymous.target";

#[derive(Debug, Error)]
pub enum NativeError {
    #[error("no such service: {0}")]
    UnknownService(String),
    #[error("service {service}: image {image} not found; pull it or load it")]
    ImageNotFound { service: String, image: String },
    #[error("service {service}: no image given (building images is not supported yet)")]
    NoImage { service: String },
    #[error("service {service}: image {image}: {source}")]
    Image {
        service: String,
        image: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("service {service}: {key}: {message}")]
    InvalidPort {
        service: String,
        key: String,
        message: String,
    },
    #[error("service {service}: ports: every port of {range} is taken")]
    PortRangeTaken { service: String, range: String },
    #[error("service {service}: {source}")]
    Injected {
        service: String,
        source: injected::InjectedError,
    },
    #[error("service {service}: {key}: {message}")]
    InvalidKey {
        service: String,
        key: String,
        message: String,
    },
    #[error("network {network}: {key}: {message}")]
    InvalidNetwork {
        network: String,
        key: String,
        message: String,
    },
    #[error("volume {volume}: {key}: {message}")]
    InvalidVolume {
        volume: String,
        key: String,
        message: String,
    },
    #[error("network {key} declared as external, but network {name} could not be found: create it first")]
    ExternalNetworkMissing { key: String, name: String },
    #[error(
        "volume {key} declared as external, but volume {name} could not be found: create it first"
    )]
    ExternalVolumeMissing { key: String, name: String },
    #[error("container name {name} is already in use{owner}: remove that container or choose another name")]
    NameInUse { name: String, owner: String },
    #[error(transparent)]
    Translate(#[from] Box<TranslateError>),
    #[error(transparent)]
    Network(#[from] Box<NetworkError>),
    #[error(transparent)]
    Volume(#[from] Box<VolumeError>),
    #[error("service {service}: container {container}: networking: {source}")]
    Sandbox {
        service: String,
        container: String,
        #[source]
        source: Box<NetworkError>,
    },
    #[error(transparent)]
    Lifecycle(#[from] Box<LifecycleError>),
    #[error("container {container}: {action}: {source}")]
    Io {
        container: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("container {id}: {source}")]
    Labels {
        id: String,
        #[source]
        source: labels::LabelError,
    },
    #[error("the project cannot be started:{}", bullet_list(.0))]
    Check(Vec<String>),
    #[error("removing {container}:{}", bullet_list(.errors))]
    Teardown {
        container: String,
        errors: Vec<String>,
    },
}

/// `?` on the runtime's errors, which are boxed to keep `NativeError` small.
macro_rules! boxed_from {
    ($($source:ty => $variant:ident),*) => {$(
        impl From<$source> for NativeError {
            fn from(err: $source) -> Self {
                NativeError::$variant(Box::new(err))
            }
        }
    )*};
}

boxed_from!(
    TranslateError => Translate,
    NetworkError => Network,
    VolumeError => Volume,
    LifecycleError => Lifecycle
);

fn bullet_list(items: &[String]) -> String {
    items.iter().map(|item| format!("\n  - {item}")).collect()
}

/// A created (not yet started) container and what the supervisor needs to serve it.
pub struct CreatedContainer {
    /// The runtime id, which is also the container name.
    pub id: String,
    /// The host pid of its init, waiting for `start`.
    pub pid: i32,
    /// (network engine name, endpoint) in the order it joined them.
    pub endpoints: Vec<(String, Endpoint)>,
    /// Its upstreams and search domains for the embedded DNS servers (none without a
    /// network of the project).
    pub resolver: Option<ResolverOptions>,
    /// Keep these while the container lives: they hold its published host ports.
    pub reservations: Vec<PortReservation>,
    /// Keys that were ignored, one sentence each.
    pub warnings: Vec<String>,
}

impl CreatedContainer {
    /// What the DNS registry answers for this container, by network.
    pub fn dns_records(&self) -> Vec<(String, DnsRecord)> {
        self.endpoints
            .iter()
            .map(|(network, endpoint)| {
                let record = DnsRecord {
                    container_id: self.id.clone(),
                    ipv4: endpoint.ipv4,
                    name: endpoint.container_name.clone(),
                    aliases: endpoint.aliases.clone(),
                };
                (network.clone(), record)
            })
            .collect()
    }
}

/// A container's standard streams and network aliases: a replica's are the defaults
/// (stdin `/dev/null`, output to its json-file log, the service's aliases); a one-off
/// container of `rcompose run` may differ in each.
#[derive(Debug)]
pub struct ContainerStreams {
    /// `None` is `/dev/null`.
    pub stdin: Option<OwnedFd>,
    /// `Some((stdout, stderr))`: straight to these descriptors (an attached `run`),
    /// with no log; `None`: the json-file log.
    pub direct: Option<(OwnedFd, OwnedFd)>,
    /// The container's own terminal (the service has `tty`), taken by the caller with
    /// `Runtime::terminal` before the start (`run` on a terminal); no log.
    pub terminal: bool,
    /// The service name and `aliases` on each network (`run` without `--use-aliases`
    /// has none, so that service names never resolve to a one-off).
    pub network_aliases: bool,
}

impl Default for ContainerStreams {
    fn default() -> Self {
        Self {
            stdin: None,
            direct: None,
            terminal: false,
            network_aliases: true,
        }
    }
}

/// The runtime objects of one state root.
pub struct NativeEngine {
    root: PathBuf,
    runtime: Runtime,
    images: Store,
    networks: NetworkManager,
    volumes: VolumeStore,
}

/// How a container is networked, from `network_mode`.
enum Networking {
    /// Its own namespace joined to these networks (none: `network_mode: none`).
    Sandbox(Vec<NetworkAttachment>),
    Host,
    /// `service:`/`container:`: the peer's namespace, set by the translation.
    Shared,
}

impl NativeEngine {
    /// Opens the state root. `program` is the binary started as the container helper:
    /// its `main` must call `rcompose_runtime::container::helper::maybe_run()` first.
    pub fn open(root: &Path, program: &Path) -> Result<NativeEngine, NativeError> {
        let images_dir = root.join("images");
        let images = Store::open(&images_dir).map_err(|source| NativeError::Image {
            service: String::new(),
            image: images_dir.display().to_string(),
            source: Box::new(source),
        })?;
        Ok(NativeEngine {
            root: root.to_path_buf(),
            runtime: Runtime::new(program, root),
            images,
            networks: NetworkManager::open(root)?,
            volumes: VolumeStore::open(root)?,
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn runtime_mut(&mut self) -> &mut Runtime {
        &mut self.runtime
    }

    pub fn network_manager(&self) -> &NetworkManager {
        &self.networks
    }

    pub fn volume_store(&self) -> &VolumeStore {
        &self.volumes
    }

    pub fn image_store(&self) -> &Store {
        &self.images
    }

    /// Creates the project's networks (or finds them unchanged); external ones must
    /// exist. Returns their records in declaration order.
    pub fn ensure_networks(&self, project: &Project) -> Result<Vec<NetworkRecord>, NativeError> {
        let mut records = Vec::new();
        for plan in resources::network_plans(project)? {
            let record = match plan {
                NetworkPlan::External { key, name } => self
                    .existing_network(&key, &name)?
                    .ok_or(NativeError::ExternalNetworkMissing { key, name })?,
                NetworkPlan::Managed(options) => self.networks.create(&options)?,
            };
            records.push(record);
        }
        Ok(records)
    }

    fn existing_network(
        &self,
        _key: &str,
        name: &str,
    ) -> Result<Option<NetworkRecord>, NativeError> {
        match self.networks.inspect(name) {
            Ok(record) => Ok(Some(record)),
            Err(NetworkError::NotFound(_) | NetworkError::InvalidName(_)) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Creates the project's named volumes (or finds them unchanged); external ones
    /// must exist. Returns their engine names in declaration order.
    pub fn ensure_volumes(&self, project: &Project) -> Result<Vec<String>, NativeError> {
        let mut names = Vec::new();
        for plan in resources::volume_plans(project)? {
            match plan {
                VolumePlan::External { key, name } => match self.volumes.inspect(&name) {
                    Ok(_) => names.push(name),
                    Err(VolumeError::NotFound { .. }) => {
                        return Err(NativeError::ExternalVolumeMissing { key, name })
                    }
                    Err(err) => return Err(err.into()),
                },
                VolumePlan::Managed {
                    name,
                    driver_opts,
                    labels,
                } => {
                    self.volumes.create(&name, &driver_opts, &labels)?;
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    /// Removes a network without endpoints.
    pub fn remove_network(&self, name: &str) -> Result<(), NativeError> {
        Ok(self.networks.remove(name)?)
    }

    /// Removes a volume no container uses.
    pub fn remove_volume(&self, name: &str) -> Result<(), NativeError> {
        self.volumes.remove(name, false)?;
        Ok(())
    }

    /// Creates replica `number` of `service`, with `labels` (the Compose labels the
    /// orchestrator computed). Nothing of it is left behind when this fails.
    pub fn create_container(
        &self,
        project: &Project,
        service_name: &str,
        number: u32,
        labels: &Labels,
    ) -> Result<CreatedContainer, NativeError> {
        self.create_container_with(
            project,
            service_name,
            number,
            labels,
            ContainerStreams::default(),
        )
    }

    /// [`NativeEngine::create_container`] with other streams or without aliases
    /// (`rcompose run`, whose service carries the one-off's `container_name`).
    pub fn create_container_with(
        &self,
        project: &Project,
        service_name: &str,
        number: u32,
        labels: &Labels,
        streams: ContainerStreams,
    ) -> Result<CreatedContainer, NativeError> {
        let service = project
            .services
            .get(service_name)
            .ok_or_else(|| NativeError::UnknownService(service_name.to_owned()))?;
        let id = container_name(project, service_name, service, number);
        if self.runtime.container_dir(&id).exists() {
            return Err(NativeError::NameInUse {
                owner: self.owner_of(&id),
                name: id,
            });
        }
        let init_binary = match service.init {
            Some(true) => Some(self.runtime.init_binary()?),
            _ => None,
        };
        let mut record = TeardownRecord {
            id: id.clone(),
            project: project.name.clone(),
            service: service_name.to_owned(),
            cgroups_path: format!("/rcompose/{}/{id}", project.name),
            ..TeardownRecord::default()
        };
        let result = self.create_parts(
            project,
            service_name,
            service,
            number,
            labels,
            init_binary.as_deref(),
            &mut record,
            streams,
        );
        if result.is_err() {
            // What was made is in the record; the error that stopped us is the one to report.
            let _ = self.runtime.delete(&id, true);
            let _ = self.teardown(&record);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn create_parts(
        &self,
        project: &Project,
        service_name: &str,
        service: &Service,
        number: u32,
        labels: &Labels,
        init_binary: Option<&Path>,
        record: &mut TeardownRecord,
        streams: ContainerStreams,
    ) -> Result<CreatedContainer, NativeError> {
        let id = record.id.clone();
        let image = self.image(service_name, service)?;
        let store_error = |source| NativeError::Image {
            service: service_name.to_owned(),
            image: service.image.clone(),
            source: Box::new(source),
        };
        let image_config = self.images.config(&image).map_err(store_error)?;
        let layers = self.images.layer_dirs(&image).map_err(store_error)?;
        let networking = networking(project, service_name, service, streams.network_aliases)?;
        let dns = dns_settings(service_name, service)?;
        let extra_hosts = extra_hosts(service_name, service)?;
        let (log_options, mut warnings) = log_options(service_name, service)?;
        let bindings = ports::port_bindings(service_name, &service.ports)?;
        let dir = record_dir(&self.root, &id);
        fs::create_dir_all(&dir).map_err(|source| NativeError::Io {
            container: id.clone(),
            action: "creating its compose directory",
            source,
        })?;
        if let Networking::Sandbox(attachments) = &networking {
            record.sandbox = true;
            record.networks = attachments.iter().map(|a| a.network.clone()).collect();
        }
        self.save_record(record)?;

        let defaults = ImageDefaults::read(&self.images, &image).map_err(store_error)?;
        let translation = self.translate(
            project,
            service_name,
            service,
            number,
            labels,
            init_binary,
            &defaults.volumes,
            record,
        );
        self.save_record(record)?;
        let translation = translation?;
        warnings.extend(translation.warnings);
        let mut config = translation.config;
        if config.stop_signal.is_none() {
            config.stop_signal = defaults.stop_signal;
        }
        add_default_open_files_limit(&mut config.ulimits);

        let mut endpoints = Vec::new();
        let mut resolver = None;
        let mut reservations = Vec::new();
        let engine_mounts = match &networking {
            Networking::Sandbox(attachments) => {
                let hostname = config.hostname.clone().unwrap_or_else(|| id.clone());
                config.hostname = Some(hostname.clone());
                let publish = if attachments.is_empty() {
                    if !bindings.is_empty() {
                        warnings.push(format!(
                            "service {service_name}: ports are not published with network_mode: none"
                        ));
                    }
                    Vec::new()
                } else {
                    bindings
                        .iter()
                        .map(|b| ports::choose_host_port(service_name, b))
                        .collect::<Result<Vec<PublishRequest>, _>>()?
                };
                let request = SandboxRequest {
                    container_id: id.clone(),
                    container_name: id.clone(),
                    hostname,
                    domainname: config.domainname.clone(),
                    files_dir: dir.clone(),
                    networks: attachments.clone(),
                    ports: publish,
                    dns,
                    extra_hosts,
                };
                let made = sandbox::setup(&self.networks, &request).map_err(|source| {
                    NativeError::Sandbox {
                        service: service_name.to_owned(),
                        container: id.clone(),
                        source: Box::new(source),
                    }
                })?;
                config.namespaces.network = NamespaceMode::Join(made.netns_path().to_path_buf());
                if !attachments.is_empty() {
                    record.dns_upstreams = made.resolver.upstreams.clone();
                    record.dns_search = made.resolver.search_domains.clone();
                    self.save_record(record)?;
                    resolver = Some(made.resolver.clone());
                }
                endpoints = made.endpoints;
                reservations = made.reservations;
                made.mounts
            }
            Networking::Host => {
                if !bindings.is_empty() {
                    warnings.push(format!(
                        "service {service_name}: published ports are discarded with network_mode: host"
                    ));
                }
                let hostname = host_hostname();
                if config.namespaces.uts != NamespaceMode::Host && config.hostname.is_none() {
                    config.hostname = Some(hostname.clone());
                }
                host_mode_files(
                    &id,
                    &dir,
                    &hostname,
                    config.domainname.clone(),
                    &dns,
                    extra_hosts,
                )?
            }
            Networking::Shared => Vec::new(),
        };
        // A file the user mounts over /etc/hosts (or the others) wins over the engine's.
        let mut mounts: Vec<Mount> = engine_mounts
            .into_iter()
            .filter(|m| !config.mounts.iter().any(|own| own.target == m.target))
            .collect();
        // As for file-backed secrets, a volume at the same target wins.
        let injected = injected::write_injected_files(
            &dir,
            &translation.injected_files,
            config.user_namespace.as_ref(),
        )
        .map_err(|source| NativeError::Injected {
            service: service_name.to_owned(),
            source,
        })?;
        let injected: Vec<Mount> = injected
            .into_iter()
            .filter(|m| !config.mounts.iter().any(|own| own.target == m.target))
            .collect();
        mounts.append(&mut config.mounts);
        mounts.extend(injected);
        config.mounts = mounts;

        let pid = self.runtime.create(CreateOptions {
            id: &id,
            rootfs: RootfsSource::Layers(layers),
            image: &image_config,
            config: &config,
            image_name: &service.image,
            cgroups_path: &record.cgroups_path,
            stdin: streams.stdin,
            output: match streams.direct {
                _ if streams.terminal => ContainerOutput::Terminal,
                Some((stdout, stderr)) => ContainerOutput::Direct {
                    stdout: Some(stdout),
                    stderr: Some(stderr),
                },
                None => ContainerOutput::Log(log_options),
            },
        })?;
        self.seed_volumes(record)?;
        Ok(CreatedContainer {
            id,
            pid,
            endpoints,
            resolver,
            reservations,
            warnings,
        })
    }

    /// The translation, with volumes attached (recorded in `record` as they are) and
    /// peers looked up among the running containers.
    #[allow(clippy::too_many_arguments)]
    fn translate(
        &self,
        project: &Project,
        service_name: &str,
        service: &Service,
        number: u32,
        labels: &Labels,
        init_binary: Option<&Path>,
        image_volumes: &[String],
        record: &mut TeardownRecord,
    ) -> Result<crate::backend::translate::Translation, NativeError> {
        let attached: RefCell<Vec<AttachedVolume>> = RefCell::new(Vec::new());
        let anonymous_labels: Labels = [
            (labels::PROJECT.to_owned(), project.name.clone()),
            (labels::SERVICE.to_owned(), service_name.to_owned()),
        ]
        .into();
        let recreation = labels.contains_key(labels::REPLACE);
        let volume_path = |request: &VolumeRequest<'_>| -> Result<PathBuf, String> {
            let (name, anonymous) = match request.name {
                Some(name) => (name.to_owned(), false),
                None => {
                    let name = self
                        .anonymous_volume(&anonymous_labels, &record.id, request.target, recreation)
                        .map_err(|e| e.to_string())?;
                    (name, true)
                }
            };
            attached.borrow_mut().push(AttachedVolume {
                name: name.clone(),
                target: request.target.to_owned(),
                anonymous,
                nocopy: request.nocopy,
            });
            self.volumes
                .attach(&name, &record.id)
                .map_err(|e| e.to_string())
        };
        let peer_pid = |peer: Peer<'_>| -> Result<u32, String> {
            let id = self.peer_id(&project.name, peer)?;
            let state = self.runtime.state(&id).map_err(|e| e.to_string())?;
            match (state.state, state.pid) {
                (State::Running | State::Paused | State::Created, Some(pid)) => {
                    u32::try_from(pid).map_err(|_| format!("container {id} has no process"))
                }
                _ => Err(format!("container {id} is not running")),
            }
        };
        let peer_mounts = |peer: Peer<'_>| -> Result<Vec<Mount>, String> {
            let id = self.peer_id(&project.name, peer)?;
            let inspected = self.runtime.inspect(&id).map_err(|e| e.to_string())?;
            Ok(inspected.config.mounts)
        };
        let project_dir = labels
            .get(labels::WORKING_DIR)
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        let mut context = TranslateContext::new(labels, &project_dir);
        context.init_binary = init_binary;
        context.image_volumes = image_volumes;
        context.volume_path = &volume_path;
        context.peer_pid = &peer_pid;
        context.peer_mounts = &peer_mounts;
        let translation = container_config(project, service_name, service, number, &context);
        record.volumes = attached.into_inner();
        Ok(translation?)
    }

    /// The anonymous volume for `target` in container `id`. A recreated container takes
    /// over the one its predecessor (same name) left unattached, data and all, as
    /// Compose does; `up -V` removed that one with the old container, so a new one is
    /// made. The volume is labelled with the container and target to be found again.
    fn anonymous_volume(
        &self,
        base_labels: &Labels,
        id: &str,
        target: &str,
        recreation: bool,
    ) -> Result<String, VolumeError> {
        let mut labels = base_labels.clone();
        labels.insert(ANONYMOUS_CONTAINER_LABEL.to_owned(), id.to_owned());
        labels.insert(ANONYMOUS_TARGET_LABEL.to_owned(), target.to_owned());
        if recreation {
            let filter = rcompose_runtime::volume::VolumeFilter {
                labels: labels
                    .iter()
                    .map(|(key, value)| rcompose_runtime::volume::LabelFilter {
                        key: key.clone(),
                        value: Some(value.clone()),
                        negate: false,
                    })
                    .collect(),
                dangling: Some(true),
                ..Default::default()
            };
            if let Some(previous) = self.volumes.list(&filter)?.into_iter().next() {
                return Ok(previous.name);
            }
        }
        Ok(self.volumes.create_anonymous(&labels)?.name)
    }

    /// The id of a `service:` peer (its first running replica) or `container:` peer.
    fn peer_id(&self, project: &str, peer: Peer<'_>) -> Result<String, String> {
        match peer {
            Peer::Container(name) => Ok(name.to_owned()),
            Peer::Service(service) => {
                let containers = self.list(project).map_err(|e| e.to_string())?;
                containers
                    .into_iter()
                    .filter(|c| c.service == service && !c.oneoff)
                    .filter(|c| c.state == ContainerState::Running)
                    .min_by_key(|c| c.number)
                    .map(|c| c.id)
                    .ok_or_else(|| format!("service {service} has no running container"))
            }
        }
    }

    /// Docker copies the image's content at a new volume's mount point into it. The
    /// container's overlay is mounted on the host from create on and its processes
    /// have not started, so its `merged` directory shows exactly the image's files;
    /// the volume is already bind-mounted in the container, and what is copied into
    /// `_data` now appears there.
    fn seed_volumes(&self, record: &TeardownRecord) -> Result<(), NativeError> {
        let merged = merged_dir(&self.runtime.container_dir(&record.id));
        for volume in record.volumes.iter().filter(|v| !v.nocopy) {
            self.volumes
                .seed_from_image(&volume.name, &merged, &volume.target)?;
        }
        Ok(())
    }

    fn save_record(&self, record: &TeardownRecord) -> Result<(), NativeError> {
        record.save(&self.root).map_err(|source| NativeError::Io {
            container: record.id.clone(),
            action: "writing its teardown record",
            source,
        })
    }

    /// The service's image in the store.
    fn image(&self, service_name: &str, service: &Service) -> Result<Image, NativeError> {
        if service.image.is_empty() {
            return Err(NativeError::NoImage {
                service: service_name.to_owned(),
            });
        }
        let store_error = |source| NativeError::Image {
            service: service_name.to_owned(),
            image: service.image.clone(),
            source: Box::new(source),
        };
        match self.images.resolve(&service.image) {
            Ok(image) => Ok(image),
            Err(StoreError::ImageNotFound(_)) => Err(NativeError::ImageNotFound {
                service: service_name.to_owned(),
                image: service.image.clone(),
            }),
            Err(err) => Err(store_error(err)),
        }
    }

    /// What the project's DNS servers apply to the container's queries (its
    /// `dns` and `dns_search`); `None` when it set neither or is not ours.
    pub fn resolver_options(&self, id: &str) -> Option<ResolverOptions> {
        let record = TeardownRecord::load(&self.root, id).ok().flatten()?;
        if record.dns_upstreams.is_empty() && record.dns_search.is_empty() {
            return None;
        }
        Some(ResolverOptions {
            upstreams: record.dns_upstreams,
            search_domains: record.dns_search,
        })
    }

    /// Runs a created (or stopped) container.
    pub fn start(&self, id: &str) -> Result<(), NativeError> {
        Ok(self.runtime.start(id)?)
    }

    /// Stops the container with its `stop_signal`, then SIGKILL after `timeout` (or
    /// its `stop_grace_period`, or 10 s). A container that is not running is fine:
    /// `None`.
    pub fn stop(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<ExitStatus>, NativeError> {
        let config = self.runtime.inspect(id)?.config;
        let signal = config
            .stop_signal
            .as_deref()
            .and_then(signal::signal_number)
            .unwrap_or(DEFAULT_STOP_SIGNAL);
        let grace = timeout
            .or(config.stop_grace_period)
            .unwrap_or(DEFAULT_STOP_GRACE);
        match self.runtime.stop(id, signal, grace) {
            Ok(status) => Ok(Some(status)),
            Err(LifecycleError::NotRunning(_)) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Removes the container whatever its state: its process, its filesystem, its
    /// network sandbox, its volume attachments (anonymous volumes are kept, as
    /// `docker rm` without `-v` keeps them) and its records. Goes past each failure and
    /// reports them all; a container that is already gone is not an error.
    pub fn remove(&self, id: &str) -> Result<(), NativeError> {
        let mut errors = Vec::new();
        match self.runtime.delete(id, true) {
            Ok(()) | Err(LifecycleError::NotFound(_)) => {}
            Err(err) => errors.push(err.to_string()),
        }
        match TeardownRecord::load(&self.root, id) {
            Ok(Some(record)) => errors.extend(self.teardown(&record)),
            Ok(None) => {}
            Err(err) => errors.push(format!("reading its teardown record: {err}")),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(NativeError::Teardown {
                container: id.to_owned(),
                errors,
            })
        }
    }

    /// Undoes what the record lists (not the runtime container), past every failure.
    fn teardown(&self, record: &TeardownRecord) -> Vec<String> {
        let mut errors = Vec::new();
        if record.sandbox {
            match sandbox::teardown(&self.networks, &record.id, &record.networks) {
                Ok(()) => {}
                Err(NetworkError::Teardown(more)) => errors.extend(more),
                Err(err) => errors.push(err.to_string()),
            }
        }
        for volume in &record.volumes {
            match self.volumes.detach(&volume.name, &record.id) {
                Ok(()) | Err(VolumeError::NotFound { .. }) => {}
                Err(err) => errors.push(err.to_string()),
            }
        }
        remove_empty_cgroup_parent(&record.cgroups_path);
        if let Err(err) = TeardownRecord::remove(&self.root, &record.id) {
            errors.push(format!("removing its teardown record: {err}"));
        }
        errors
    }

    /// The project's containers, by id.
    pub fn list(&self, project: &str) -> Result<Vec<ObservedContainer>, NativeError> {
        let mut observed = Vec::new();
        for id in self.runtime.list()? {
            // A container removed meanwhile is simply not listed.
            let inspected = match self.runtime.inspect(&id) {
                Ok(inspected) => inspected,
                Err(LifecycleError::NotFound(_)) => continue,
                Err(err) => return Err(err.into()),
            };
            let container_labels = inspected.config.labels;
            if labels::project_of(&container_labels) != Some(project) {
                continue;
            }
            let state = match self.runtime.state(&id) {
                Ok(state) => observed_state(state.state, state.exit),
                Err(LifecycleError::NotFound(_)) => continue,
                Err(err) => return Err(err.into()),
            };
            let container = ObservedContainer::from_labels(&id, &id, state, container_labels)
                .map_err(|source| NativeError::Labels {
                    id: id.clone(),
                    source,
                })?;
            observed.push(container);
        }
        Ok(observed)
    }

    /// Every problem that would stop `services` (all when empty) from being created,
    /// found before anything is made: unknown services, missing images, bind sources
    /// that are missing and may not be created, host ports taken (by another program
    /// or by two services), container names in use by other containers, invalid or
    /// missing networks and volumes. Services with a running container are assumed to
    /// hold their own ports.
    pub fn check_project(&self, project: &Project, services: &[String]) -> Result<(), NativeError> {
        let problems = self.project_problems(project, services);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(NativeError::Check(problems))
        }
    }

    fn project_problems(&self, project: &Project, services: &[String]) -> Vec<String> {
        let mut problems = Vec::new();
        self.resource_problems(project, &mut problems);
        let running: Vec<ObservedContainer> = match self.list(&project.name) {
            Ok(containers) => containers,
            Err(err) => {
                problems.push(err.to_string());
                Vec::new()
            }
        };
        let names: Vec<&String> = if services.is_empty() {
            project.services.keys().collect()
        } else {
            services.iter().collect()
        };
        // Held until every service is checked, so two services asking for one port clash.
        let mut held_ports = Vec::new();
        for name in names {
            let Some(service) = project.services.get(name) else {
                problems.push(NativeError::UnknownService(name.clone()).to_string());
                continue;
            };
            if let Err(err) = self.image(name, service) {
                problems.push(err.to_string());
            }
            problems.extend(bind_source_problems(name, service));
            problems.extend(injected_content_problems(project, name, service));
            problems.extend(self.name_problems(project, name, service));
            let has_running = running
                .iter()
                .any(|c| &c.service == name && !c.oneoff && c.state == ContainerState::Running);
            if has_running {
                continue;
            }
            match ports::port_bindings(name, &service.ports) {
                Ok(bindings) => {
                    for probed in bindings.iter().filter_map(|b| ports::probe(name, b)) {
                        match probed {
                            Ok(reservation) => held_ports.push(reservation),
                            Err(problem) => problems.push(problem),
                        }
                    }
                }
                Err(err) => problems.push(err.to_string()),
            }
        }
        problems
    }

    fn resource_problems(&self, project: &Project, problems: &mut Vec<String>) {
        match resources::network_plans(project) {
            Ok(plans) => {
                for plan in plans {
                    if let NetworkPlan::External { key, name } = plan {
                        match self.existing_network(&key, &name) {
                            Ok(Some(_)) => {}
                            Ok(None) => problems.push(
                                NativeError::ExternalNetworkMissing { key, name }.to_string(),
                            ),
                            Err(err) => problems.push(err.to_string()),
                        }
                    }
                }
            }
            Err(err) => problems.push(err.to_string()),
        }
        match resources::volume_plans(project) {
            Ok(plans) => {
                for plan in plans {
                    if let VolumePlan::External { key, name } = plan {
                        if self.volumes.inspect(&name).is_err() {
                            problems
                                .push(NativeError::ExternalVolumeMissing { key, name }.to_string());
                        }
                    }
                }
            }
            Err(err) => problems.push(err.to_string()),
        }
    }

    /// Names taken by containers that are not this service's replicas.
    fn name_problems(&self, project: &Project, name: &str, service: &Service) -> Vec<String> {
        let replicas = replica_count(service);
        if !service.container_name.is_empty() && replicas > 1 {
            return vec![format!(
                "service {name}: container_name {} is set, so the service cannot have {replicas} replicas",
                service.container_name
            )];
        }
        let mut problems = Vec::new();
        for number in 1..=replicas {
            let id = container_name(project, name, service, number);
            if !self.runtime.container_dir(&id).exists() {
                continue;
            }
            let ours = self.runtime.inspect(&id).is_ok_and(|inspected| {
                let l = &inspected.config.labels;
                labels::project_of(l) == Some(project.name.as_str())
                    && l.get(labels::SERVICE).map(String::as_str) == Some(name)
            });
            if !ours {
                problems.push(format!(
                    "service {name}: {}",
                    NativeError::NameInUse {
                        owner: self.owner_of(&id),
                        name: id,
                    }
                ));
            }
        }
        problems
    }

    /// ` by a container of project P` / ` by a container not made by Compose`.
    fn owner_of(&self, id: &str) -> String {
        match self.runtime.inspect(id) {
            Ok(inspected) => match labels::project_of(&inspected.config.labels) {
                Some(project) => format!(" by a container of project {project}"),
                None => " by a container not made by Compose".to_owned(),
            },
            Err(_) => String::new(),
        }
    }
}

/// `container_name`, else `<project>-<service>-<number>` as Compose names replicas.
pub fn container_name(
    project: &Project,
    service_name: &str,
    service: &Service,
    number: u32,
) -> String {
    if service.container_name.is_empty() {
        format!("{}-{service_name}-{number}", project.name)
    } else {
        service.container_name.clone()
    }
}

/// `scale`, else `deploy.replicas`, else 1 (negative counts as 0).
fn replica_count(service: &Service) -> u32 {
    let wanted = service
        .scale
        .or_else(|| service.deploy.as_ref().and_then(|d| d.replicas))
        .unwrap_or(1);
    u32::try_from(wanted.max(0)).unwrap_or(u32::MAX)
}

/// What Compose calls a container's state, from the runtime's.
fn observed_state(state: State, exit: Option<ExitStatus>) -> ContainerState {
    match (state, exit) {
        (State::Created, _) => ContainerState::Created,
        (State::Running, _) => ContainerState::Running,
        (State::Paused, _) => ContainerState::Paused,
        (State::Stopped, Some(status)) => ContainerState::Exited {
            exit_code: status.code,
        },
        // Stopped without ever having run: still "created" to Docker.
        (State::Stopped, None) => ContainerState::Created,
    }
}

/// The networks of a service in the order Compose connects them: by `priority`
/// (highest first), then by name.
fn network_attachments(
    project: &Project,
    service_name: &str,
    service: &Service,
    with_aliases: bool,
) -> Result<Vec<NetworkAttachment>, NativeError> {
    let mut keyed: Vec<(&String, i64)> = service
        .networks
        .iter()
        .map(|(key, config)| (key, config.as_ref().map_or(0, |c| c.priority)))
        .collect();
    keyed.sort_by(|(a, pa), (b, pb)| pb.cmp(pa).then_with(|| a.cmp(b)));
    keyed
        .into_iter()
        .map(|(key, _)| {
            let config = service.networks[key.as_str()].clone().unwrap_or_default();
            let mut aliases = Vec::new();
            if with_aliases {
                aliases.push(service_name.to_owned());
                aliases.extend(
                    config
                        .aliases
                        .iter()
                        .filter(|a| *a != service_name)
                        .cloned(),
                );
            }
            let ipv4_address = match config.ipv4_address.as_str() {
                "" => None,
                text => Some(
                    text.parse::<Ipv4Addr>()
                        .map_err(|_| NativeError::InvalidKey {
                            service: service_name.to_owned(),
                            key: format!("networks.{key}.ipv4_address"),
                            message: format!("{text:?} is not an IPv4 address"),
                        })?,
                ),
            };
            Ok(NetworkAttachment {
                network: resources::network_name(project, key),
                aliases,
                ipv4_address,
            })
        })
        .collect()
}

fn networking(
    project: &Project,
    service_name: &str,
    service: &Service,
    with_aliases: bool,
) -> Result<Networking, NativeError> {
    match service.network_mode.as_str() {
        "" => Ok(Networking::Sandbox(network_attachments(
            project,
            service_name,
            service,
            with_aliases,
        )?)),
        "none" => Ok(Networking::Sandbox(Vec::new())),
        "host" => Ok(Networking::Host),
        mode if mode.starts_with("service:") || mode.starts_with("container:") => {
            Ok(Networking::Shared)
        }
        other => Err(NativeError::InvalidKey {
            service: service_name.to_owned(),
            key: "network_mode".to_owned(),
            message: format!(
                "{other:?} is not supported by the embedded engine: use the project's networks, host, none, service:NAME or container:NAME"
            ),
        }),
    }
}

fn dns_settings(service_name: &str, service: &Service) -> Result<DnsSettings, NativeError> {
    let dns = service
        .dns
        .iter()
        .map(|text| {
            text.parse::<IpAddr>().map_err(|_| NativeError::InvalidKey {
                service: service_name.to_owned(),
                key: "dns".to_owned(),
                message: format!("{text:?} is not an IP address"),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(DnsSettings {
        dns,
        dns_search: service.dns_search.clone(),
        dns_opt: service.dns_opt.clone(),
    })
}

fn extra_hosts(service_name: &str, service: &Service) -> Result<Vec<ExtraHost>, NativeError> {
    service
        .extra_hosts
        .as_list("=")
        .iter()
        .map(|entry| {
            ExtraHost::from_str(entry).map_err(|err| NativeError::InvalidKey {
                service: service_name.to_owned(),
                key: "extra_hosts".to_owned(),
                message: err.to_string(),
            })
        })
        .collect()
}

/// The json-file options; another driver keeps the engine's json-file log (so `logs`
/// still works), with a warning.
fn log_options(
    service_name: &str,
    service: &Service,
) -> Result<(LogOptions, Vec<String>), NativeError> {
    let Some(logging) = &service.logging else {
        return Ok((LogOptions::default(), Vec::new()));
    };
    match logging.driver.as_str() {
        "" | "json-file" => {
            let options = logging
                .options
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()));
            let parsed = LogOptions::from_driver_options(options).map_err(|err| {
                NativeError::InvalidKey {
                    service: service_name.to_owned(),
                    key: "logging.options".to_owned(),
                    message: err.to_string(),
                }
            })?;
            Ok((parsed, Vec::new()))
        }
        other => Ok((
            LogOptions::default(),
            vec![format!(
                "service {service_name}: logging.driver {other:?} is not supported by the embedded engine, which writes json-file logs"
            )],
        )),
    }
}

/// Bind sources that are missing and may not be created, or cannot be.
fn bind_source_problems(service_name: &str, service: &Service) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, volume) in service.volumes.iter().enumerate() {
        if volume.kind != VOLUME_TYPE_BIND || !volume.source.starts_with('/') {
            continue;
        }
        let source = Path::new(&volume.source);
        if source.exists() {
            continue;
        }
        let create = volume.bind.as_ref().is_none_or(|b| b.create_host_path);
        let key = format!("service {service_name}: volumes.{index}");
        if !create {
            problems.push(format!(
                "{key}: bind source {} does not exist (create it, or set bind.create_host_path: true)",
                source.display()
            ));
        } else if let Some(blocker) = uncreatable_because(source) {
            problems.push(format!(
                "{key}: bind source {} cannot be created: {blocker}",
                source.display()
            ));
        }
    }
    problems
}

/// Why `create_dir_all(path)` would fail: an ancestor that is not a directory.
fn uncreatable_because(path: &Path) -> Option<String> {
    let ancestor = path.ancestors().skip(1).find(|a| a.exists())?;
    (!ancestor.is_dir()).then(|| format!("{} is not a directory", ancestor.display()))
}

/// The host's hostname (a host-networked container shows it, as on Docker).
fn host_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// `network_mode: host`: the host's resolv.conf and hosts (with the service's `dns*`
/// and `extra_hosts`) and its hostname, written into the compose directory.
fn host_mode_files(
    id: &str,
    dir: &Path,
    hostname: &str,
    domainname: Option<String>,
    dns: &DnsSettings,
    extra_hosts: Vec<ExtraHost>,
) -> Result<Vec<Mount>, NativeError> {
    let io_error = |message: String| NativeError::Io {
        container: id.to_owned(),
        action: "writing its host files",
        source: io::Error::other(message),
    };
    let host_resolv = hostfiles::read_host_file(Path::new(hostfiles::HOST_RESOLV_CONF))
        .map_err(|e| io_error(e.to_string()))?;
    let host_hosts = fs::read_to_string("/etc/hosts").unwrap_or_default();
    let resolv = hostfiles::resolv_conf(&host_resolv, ResolverMode::Host, dns)
        .map_err(|e| io_error(e.to_string()))?;
    let hosts = hostfiles::hosts(&HostsSettings {
        base: HostsBase::Host(host_hosts),
        hostname: hostname.to_owned(),
        domainname,
        addresses: Vec::new(),
        extra_hosts,
        host_gateway: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    })
    .map_err(|e| io_error(e.to_string()))?;
    let files = ContainerHostFiles {
        resolv_conf: resolv.contents,
        hosts,
        hostname: hostfiles::hostname_file(hostname).map_err(|e| io_error(e.to_string()))?,
    };
    let paths = hostfiles::write_host_files(dir, &files).map_err(|e| io_error(e.to_string()))?;
    Ok(vec![
        file_bind(paths.resolv_conf, "/etc/resolv.conf"),
        file_bind(paths.hosts, "/etc/hosts"),
        file_bind(paths.hostname, "/etc/hostname"),
    ])
}

/// Docker's containers get dockerd's open-files limit, 1048576 (its systemd unit's
/// `LimitNOFILE`), not the limit of whoever ran the command: servers that size their
/// connection or file tables from it (nginx, Elasticsearch) expect that. A service's own
/// `ulimits.nofile` wins. The kernel's `fs.nr_open` caps it, and so does this process's
/// hard limit when it may not raise it (no CAP_SYS_RESOURCE, as in some sandboxes).
fn add_default_open_files_limit(ulimits: &mut Vec<Ulimit>) {
    const DOCKER_NOFILE: u64 = 1 << 20;
    if ulimits.iter().any(|u| u.name == "nofile") {
        return;
    }
    let nr_open = fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(DOCKER_NOFILE);
    let mut limit = DOCKER_NOFILE.min(nr_open);
    if !may_raise_limits() {
        let own = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        limit = limit.min(own.maximum.unwrap_or(u64::MAX));
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    ulimits.push(Ulimit {
        name: "nofile".to_owned(),
        soft: limit,
        hard: limit,
    });
}

/// Whether this process has CAP_SYS_RESOURCE (needed to raise a hard limit).
fn may_raise_limits() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|effective| effective & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Secrets and configs whose `environment:` variable is not set.
fn injected_content_problems(project: &Project, name: &str, service: &Service) -> Vec<String> {
    let secrets = service
        .secrets
        .iter()
        .map(|r| ("secrets", r, project.secrets.get(&r.source)));
    let configs = service
        .configs
        .iter()
        .map(|r| ("configs", r, project.configs.get(&r.source)));
    secrets
        .chain(configs)
        .filter_map(|(kind, reference, declared)| {
            let message = injected_content(project, declared?).err()?;
            Some(format!(
                "service {name}: {kind}.{}: {message}",
                reference.source
            ))
        })
        .collect()
}

fn file_bind(source: PathBuf, target: &str) -> Mount {
    Mount {
        target: target.to_owned(),
        read_only: false,
        kind: MountKind::Bind {
            source,
            propagation: Propagation::Rprivate,
            non_recursive: true,
        },
    }
}

/// The project's cgroup (`/rcompose/<project>`) once its last container is gone; a
/// parent still in use refuses, which is fine.
fn remove_empty_cgroup_parent(cgroups_path: &str) {
    let Some(parent) = Path::new(cgroups_path.trim_start_matches('/')).parent() else {
        return;
    };
    if parent.as_os_str().is_empty() {
        return;
    }
    let hierarchy = Path::new("/sys/fs/cgroup");
    let _ = fs::remove_dir(hierarchy.join(parent));
    // cgroup v1: one directory per controller.
    if let Ok(controllers) = fs::read_dir(hierarchy) {
        for controller in controllers.flatten() {
            let _ = fs::remove_dir(controller.path().join(parent));
        }
    }
}

/// What the Docker Engine takes from the image's config at create time that the
/// runtime does not read from it: the `VOLUME`s (anonymous volumes) and the
/// `STOPSIGNAL` (`stop` reads the container's own config, so it is copied there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ImageDefaults {
    volumes: Vec<String>,
    stop_signal: Option<String>,
}

impl ImageDefaults {
    fn read(store: &Store, image: &Image) -> Result<ImageDefaults, StoreError> {
        let config = store.config(image)?;
        let Some(config) = config.config() else {
            return Ok(ImageDefaults::default());
        };
        Ok(ImageDefaults {
            volumes: config.volumes().clone().unwrap_or_default(),
            stop_signal: config.stop_signal().clone().filter(|s| !s.is_empty()),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::project::discover::{ConfigSource, Environment, ProjectInputs};
    use crate::project::loader::{load, LoadSettings};

    /// A project named `demo` as the real loader makes it.
    pub(crate) fn project(yaml: &str) -> Project {
        let inputs = ProjectInputs {
            files: vec![ConfigSource::Inline {
                name: "compose.yaml".into(),
                content: yaml.into(),
            }],
            project_directory: PathBuf::from("/srv/app"),
            explicit_name: Some("demo".into()),
            profiles: Vec::new(),
            environment: Environment::new(),
            shell_environment: Environment::new(),
            env_files: Vec::new(),
        };
        match load(&inputs, &LoadSettings::default()) {
            Ok(loaded) => loaded.project,
            Err(err) => panic!("test project does not load: {err}"),
        }
    }
}

#[cfg(test)]
mod engine_tests {
    use super::tests::project;
    use super::*;

    fn engine(root: &Path) -> NativeEngine {
        NativeEngine::open(root, Path::new("/bin/false")).expect("opening a fresh root")
    }

    /// An image imported into `store` with these `--change`s, as the stand-in images are.
    fn imported(store: &Store, name: &str, changes: &[&str]) -> Image {
        let mut empty_rootfs = tar::Builder::new(Vec::new());
        empty_rootfs
            .append_dir("etc", "/")
            .expect("appending a directory");
        let bytes = empty_rootfs.into_inner().expect("finishing the tarball");
        let reference = name.parse().expect("a valid reference");
        let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        rcompose_runtime::image::import::import(store, &bytes[..], Some(&reference), &changes)
            .expect("importing the image");
        store.resolve(name).expect("the imported image")
    }

    #[test]
    fn the_image_gives_its_volumes_and_stop_signal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let wordpress = imported(
            &store,
            "wordpress:latest",
            &[
                "VOLUME /var/www/html",
                "STOPSIGNAL SIGWINCH",
                "CMD [\"apache2-foreground\"]",
            ],
        );
        assert_eq!(
            ImageDefaults::read(&store, &wordpress).unwrap(),
            ImageDefaults {
                volumes: vec!["/var/www/html".to_owned()],
                stop_signal: Some("SIGWINCH".to_owned()),
            }
        );
        let plain = imported(&store, "plain:1", &["CMD [\"sh\"]"]);
        assert_eq!(
            ImageDefaults::read(&store, &plain).unwrap(),
            ImageDefaults::default()
        );
    }

    #[test]
    fn a_replacement_takes_over_its_predecessors_anonymous_volume() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let labels: Labels = [(labels::PROJECT.to_owned(), "demo".to_owned())].into();
        let volume = |target: &str, recreation: bool| {
            engine
                .anonymous_volume(&labels, "demo-web-1", target, recreation)
                .unwrap()
        };
        let first = volume("/data", false);
        // Recreated: the unattached volume of the same container and target is reused.
        assert_eq!(volume("/data", true), first);
        assert_ne!(volume("/cache", true), first);
        // Created anew (no predecessor): a volume of its own, as Compose makes.
        let fresh = volume("/data", false);
        assert_ne!(fresh, first);
        // A volume attached to a container is never taken over.
        engine.volume_store().attach(&first, "demo-web-1").unwrap();
        engine.volume_store().attach(&fresh, "demo-web-1").unwrap();
        let taken = [first, fresh];
        assert!(!taken.contains(&volume("/data", true)));
    }

    #[test]
    fn replicas_are_named_like_compose() {
        let p = project(
            "services:\n  web:\n    image: busybox\n  db:\n    image: busybox\n    container_name: the-db\n",
        );
        assert_eq!(
            container_name(&p, "web", &p.services["web"], 2),
            "demo-web-2"
        );
        assert_eq!(container_name(&p, "db", &p.services["db"], 1), "the-db");
    }

    #[test]
    fn networks_join_by_priority_then_name_with_the_service_alias() {
        let p = project(
            "services:\n  web:\n    image: busybox\n    networks:\n      zeta: {}\n      alpha:\n        aliases: [site]\n        ipv4_address: 10.213.30.5\n      back:\n        priority: 10\nnetworks:\n  zeta: {}\n  alpha:\n    ipam: {config: [{subnet: 10.213.30.0/24}]}\n  back: {name: backend}\n",
        );
        let attachments = network_attachments(&p, "web", &p.services["web"], true).unwrap();
        let names: Vec<&str> = attachments.iter().map(|a| a.network.as_str()).collect();
        assert_eq!(names, ["backend", "demo_alpha", "demo_zeta"]);
        assert_eq!(attachments[1].aliases, ["web", "site"]);
        assert_eq!(
            attachments[1].ipv4_address,
            Some(Ipv4Addr::new(10, 213, 30, 5))
        );
        assert_eq!(attachments[0].aliases, ["web"]);
        // A one-off container (`run` without `--use-aliases`) answers to no alias.
        let oneoff = network_attachments(&p, "web", &p.services["web"], false).unwrap();
        assert!(oneoff.iter().all(|a| a.aliases.is_empty()));
        assert_eq!(oneoff[1].ipv4_address, attachments[1].ipv4_address);
    }

    #[test]
    fn network_modes() {
        let p = project(
            "services:\n  a:\n    image: busybox\n    network_mode: none\n  b:\n    image: busybox\n    network_mode: host\n  c:\n    image: busybox\n    network_mode: service:a\n  d:\n    image: busybox\n    network_mode: bridge\n",
        );
        let mode = |name: &str| networking(&p, name, &p.services[name], true);
        assert!(matches!(mode("a"), Ok(Networking::Sandbox(n)) if n.is_empty()));
        assert!(matches!(mode("b"), Ok(Networking::Host)));
        assert!(matches!(mode("c"), Ok(Networking::Shared)));
        let err = mode("d").err().expect("bridge is Docker's own network");
        assert!(err
            .to_string()
            .starts_with("service d: network_mode: \"bridge\" is not supported"));
    }

    #[test]
    fn dns_extra_hosts_and_logging_options() {
        let p = project(
            "services:\n  web:\n    image: busybox\n    dns: [1.1.1.1]\n    dns_search: [corp]\n    extra_hosts: ['db=10.0.0.9', 'gw=host-gateway']\n    logging:\n      driver: json-file\n      options: {max-size: 1m, max-file: '3'}\n  bad:\n    image: busybox\n    dns: [resolver]\n    logging:\n      options: {max-size: huge}\n  other:\n    image: busybox\n    logging: {driver: syslog}\n",
        );
        let web = &p.services["web"];
        let dns = dns_settings("web", web).unwrap();
        assert_eq!(dns.dns, vec![IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1))]);
        assert_eq!(dns.dns_search, ["corp"]);
        let hosts = extra_hosts("web", web).unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].hostname, "db");
        let (options, warnings) = log_options("web", web).unwrap();
        assert_eq!((options.max_size, options.max_file), (Some(1_000_000), 3));
        assert!(warnings.is_empty());

        let bad = &p.services["bad"];
        assert_eq!(
            dns_settings("bad", bad).unwrap_err().to_string(),
            "service bad: dns: \"resolver\" is not an IP address"
        );
        assert!(log_options("bad", bad)
            .unwrap_err()
            .to_string()
            .starts_with("service bad: logging.options: "));
        let (_, warnings) = log_options("other", &p.services["other"]).unwrap();
        assert_eq!(
            warnings,
            ["service other: logging.driver \"syslog\" is not supported by the embedded engine, which writes json-file logs"]
        );
    }

    #[test]
    fn runtime_states_read_as_compose_states() {
        let exited = ExitStatus {
            code: 3,
            oom_kills: 0,
        };
        assert_eq!(
            observed_state(State::Stopped, Some(exited)),
            ContainerState::Exited { exit_code: 3 }
        );
        assert_eq!(
            observed_state(State::Stopped, None),
            ContainerState::Created
        );
        assert_eq!(
            observed_state(State::Running, None),
            ContainerState::Running
        );
    }

    #[test]
    fn check_reports_every_problem_at_once() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("missing");
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = squatter.local_addr().unwrap().port();
        let yaml = format!(
            "services:\n  web:\n    image: nosuch:1\n    ports: ['127.0.0.1:{port}:80']\n    volumes:\n      - type: bind\n        source: {}\n        target: /data\n        bind: {{create_host_path: false}}\n      - {}/file/below:/below\n    networks: [shared]\n  api:\n    image: nosuch:1\nnetworks:\n  shared: {{external: true, name: corp}}\nvolumes:\n  keep: {{external: true}}\n",
            missing.display(),
            root.path().display(),
        );
        fs::write(root.path().join("file"), "not a directory").unwrap();
        let p = project(&yaml);
        let engine = engine(root.path());
        let err = engine
            .check_project(&p, &["web".into(), "api".into(), "ghost".into()])
            .unwrap_err();
        let NativeError::Check(problems) = &err else {
            panic!("a check error expected: {err}");
        };
        let expected_starts = [
            "network shared declared as external, but network corp could not be found",
            "volume keep declared as external, but volume keep could not be found",
            "service web: image nosuch:1 not found; pull it or load it",
            &format!("service web: volumes.0: bind source {} does not exist", missing.display()),
            &format!("service web: volumes.1: bind source {}/file/below cannot be created: {}/file is not a directory", root.path().display(), root.path().display()),
            "service web: ports: ",
            "service api: image nosuch:1 not found",
            "no such service: ghost",
        ];
        assert_eq!(problems.len(), expected_starts.len(), "{problems:#?}");
        for (problem, start) in problems.iter().zip(expected_starts) {
            assert!(
                problem.starts_with(start),
                "{problem:?} should start with {start:?}"
            );
        }
        assert!(problems[5].contains(&port.to_string()), "{}", problems[5]);
        assert!(err
            .to_string()
            .starts_with("the project cannot be started:\n  - network shared"));
    }

    #[test]
    fn two_services_on_one_host_port_clash_in_the_check() {
        let root = tempfile::tempdir().unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let p = project(&format!(
            "services:\n  a:\n    image: x\n    ports: ['127.0.0.1:{port}:80']\n  b:\n    image: x\n    ports: ['127.0.0.1:{port}:80']\n"
        ));
        let NativeError::Check(problems) = engine(root.path()).check_project(&p, &[]).unwrap_err()
        else {
            panic!("a check error expected");
        };
        let port_problems: Vec<&String> =
            problems.iter().filter(|p| p.contains("ports:")).collect();
        assert_eq!(port_problems.len(), 1, "{problems:#?}");
        assert!(port_problems[0].starts_with("service b: ports: "));
    }

    #[test]
    fn a_missing_image_fails_the_create_and_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let p = project("services:\n  web:\n    image: busybox\n");
        let engine = engine(root.path());
        let err = engine
            .create_container(&p, "web", 1, &Labels::new())
            .err()
            .expect("no image in an empty store");
        assert_eq!(
            err.to_string(),
            "service web: image busybox not found; pull it or load it"
        );
        assert!(!record_dir(root.path(), "demo-web-1").exists());
        assert!(!engine.runtime().container_dir("demo-web-1").exists());
        let err = engine
            .create_container(&p, "nope", 1, &Labels::new())
            .err()
            .expect("unknown service");
        assert_eq!(err.to_string(), "no such service: nope");
    }

    #[test]
    fn a_name_taken_by_another_container_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let p = project("services:\n  web:\n    image: busybox\n");
        let engine = engine(root.path());
        fs::create_dir_all(engine.runtime().container_dir("demo-web-1")).unwrap();
        let err = engine
            .create_container(&p, "web", 1, &Labels::new())
            .err()
            .expect("the name is taken");
        assert_eq!(
            err.to_string(),
            "container name demo-web-1 is already in use: remove that container or choose another name"
        );
        // The other container is left alone.
        assert!(engine.runtime().container_dir("demo-web-1").exists());
        assert!(engine.list("demo").unwrap().is_empty());
    }

    #[test]
    fn external_resources_must_exist_and_volumes_are_created_once() {
        let root = tempfile::tempdir().unwrap();
        let engine = engine(root.path());
        let p = project(
            "services:\n  web:\n    image: busybox\n    network_mode: none\n    volumes: [data:/data, old:/old]\nvolumes:\n  data: {}\n  old: {external: true}\n",
        );
        assert_eq!(
            engine.ensure_volumes(&p).unwrap_err().to_string(),
            "volume old declared as external, but volume old could not be found: create it first"
        );
        engine
            .volume_store()
            .create("old", &Default::default(), &Default::default())
            .unwrap();
        assert_eq!(engine.ensure_volumes(&p).unwrap(), ["demo_data", "old"]);
        assert_eq!(engine.ensure_volumes(&p).unwrap(), ["demo_data", "old"]);
        let data = engine.volume_store().inspect("demo_data").unwrap();
        assert_eq!(data.labels[labels::VOLUME], "data");
        engine.remove_volume("demo_data").unwrap();
        let p = project(
            "services:\n  web:\n    image: busybox\n    networks: [ext]\nnetworks:\n  ext: {external: true, name: corp-net}\n",
        );
        assert_eq!(
            engine.ensure_networks(&p).unwrap_err().to_string(),
            "network ext declared as external, but network corp-net could not be found: create it first"
        );
    }
}
