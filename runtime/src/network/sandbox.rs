//! A container's network sandbox: its network namespace connected to its
//! networks, its published ports, and the `/etc/resolv.conf`, `/etc/hosts` and
//! `/etc/hostname` it resolves names with — everything networking gives a
//! container, set up before it is created and taken down after it is deleted.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use super::dns::ResolverOptions;
use super::hostfiles::{
    self, ContainerHostFiles, DnsSettings, ExtraHost, HostsBase, HostsSettings, ResolverMode,
};
use super::manager::{Endpoint, EndpointRequest, NetworkError, NetworkManager, PublishRequest};
use super::netns::NetnsHandle;
use super::ports::PortReservation;
use crate::container::config::{Mount, MountKind, Propagation};

/// One network to connect, in order (the first gives the default route and DNS).
#[derive(Debug, Clone, Default)]
pub struct NetworkAttachment {
    pub network: String,
    /// Names besides the container's own (service name, Compose `aliases`).
    pub aliases: Vec<String>,
    pub ipv4_address: Option<Ipv4Addr>,
}

/// What a container asks of networking.
#[derive(Debug, Clone, Default)]
pub struct SandboxRequest {
    pub container_id: String,
    pub container_name: String,
    pub hostname: String,
    pub domainname: Option<String>,
    /// Where the host files are written (the container's directory).
    pub files_dir: PathBuf,
    pub networks: Vec<NetworkAttachment>,
    /// Published ports, forwarded to the container's address on its first network.
    pub ports: Vec<PublishRequest>,
    pub dns: DnsSettings,
    pub extra_hosts: Vec<ExtraHost>,
}

/// A set-up sandbox.
pub struct Sandbox {
    pub netns: NetnsHandle,
    /// (network name, endpoint), in the request's order.
    pub endpoints: Vec<(String, Endpoint)>,
    /// Bind mounts of the host files, for `ContainerConfig.mounts`.
    pub mounts: Vec<Mount>,
    /// The container's own upstreams and search domains, for the DNS registry.
    pub resolver: ResolverOptions,
    /// Hold these while the container runs: they keep its published host ports.
    pub reservations: Vec<PortReservation>,
}

impl Sandbox {
    /// The path to pass as `NamespaceMode::Join`.
    pub fn netns_path(&self) -> &Path {
        self.netns.path()
    }
}

/// Sets the sandbox up; on failure undoes what it made and returns the first error.
pub fn setup(manager: &NetworkManager, request: &SandboxRequest) -> Result<Sandbox, NetworkError> {
    let netns = manager.create_sandbox(&request.container_id)?;
    match connect_all(manager, &netns, request) {
        Ok(parts) => Ok(Sandbox {
            netns,
            endpoints: parts.endpoints,
            mounts: parts.mounts,
            resolver: parts.resolver,
            reservations: parts.reservations,
        }),
        Err(err) => {
            let networks: Vec<String> =
                request.networks.iter().map(|a| a.network.clone()).collect();
            let _ = teardown(manager, &request.container_id, &networks);
            Err(err)
        }
    }
}

/// What `connect_all` makes; `setup` adds the namespace.
struct Connected {
    endpoints: Vec<(String, Endpoint)>,
    mounts: Vec<Mount>,
    resolver: ResolverOptions,
    reservations: Vec<PortReservation>,
}

fn connect_all(
    manager: &NetworkManager,
    netns: &NetnsHandle,
    request: &SandboxRequest,
) -> Result<Connected, NetworkError> {
    let mut endpoints = Vec::with_capacity(request.networks.len());
    for (index, attachment) in request.networks.iter().enumerate() {
        let endpoint = manager.connect(
            &attachment.network,
            netns,
            &EndpointRequest {
                container_id: request.container_id.clone(),
                container_name: request.container_name.clone(),
                aliases: attachment.aliases.clone(),
                ipv4_address: attachment.ipv4_address,
                ifname: format!("eth{index}"),
                default_route: index == 0,
            },
        )?;
        endpoints.push((attachment.network.clone(), endpoint));
    }
    let reservations = match (request.ports.is_empty(), request.networks.first()) {
        (false, Some(first)) => {
            manager.publish(&first.network, &request.container_id, &request.ports)?
        }
        _ => Vec::new(),
    };
    let first_gateway = match request.networks.first() {
        Some(first) => Some(manager.inspect(&first.network)?.gateway),
        None => None,
    };
    let (mounts, resolver) = write_host_files(request, &endpoints, first_gateway)?;
    Ok(Connected {
        endpoints,
        mounts,
        resolver,
        reservations,
    })
}

/// resolv.conf points at the first network's DNS server (its gateway); hosts maps
/// the container's addresses to its hostname.
fn write_host_files(
    request: &SandboxRequest,
    endpoints: &[(String, Endpoint)],
    gateway: Option<Ipv4Addr>,
) -> Result<(Vec<Mount>, ResolverOptions), NetworkError> {
    let files_error = |e: hostfiles::HostFilesError| NetworkError::Io {
        action: "writing the host files into",
        path: request.files_dir.clone(),
        source: std::io::Error::other(e.to_string()),
    };
    let host_resolv =
        hostfiles::read_host_file(Path::new(hostfiles::HOST_RESOLV_CONF)).map_err(files_error)?;
    let mode = match gateway {
        Some(nameserver) => ResolverMode::Embedded { nameserver },
        None => ResolverMode::Private,
    };
    let resolv = hostfiles::resolv_conf(&host_resolv, mode, &request.dns).map_err(files_error)?;
    let hosts = hostfiles::hosts(&HostsSettings {
        base: HostsBase::Default,
        hostname: request.hostname.clone(),
        domainname: request.domainname.clone(),
        addresses: endpoints.iter().map(|(_, e)| IpAddr::V4(e.ipv4)).collect(),
        extra_hosts: request.extra_hosts.clone(),
        host_gateway: gateway.map(IpAddr::V4),
    })
    .map_err(files_error)?;
    let files = ContainerHostFiles {
        resolv_conf: resolv.contents.clone(),
        hosts,
        hostname: hostfiles::hostname_file(&request.hostname).map_err(files_error)?,
    };
    let paths = hostfiles::write_host_files(&request.files_dir, &files).map_err(files_error)?;
    let bind = |source: PathBuf, target: &str| Mount {
        target: target.to_string(),
        read_only: false,
        kind: MountKind::Bind {
            source,
            propagation: Propagation::Rprivate,
            non_recursive: true,
        },
    };
    let mounts = vec![
        bind(paths.resolv_conf, "/etc/resolv.conf"),
        bind(paths.hosts, "/etc/hosts"),
        bind(paths.hostname, "/etc/hostname"),
    ];
    Ok((mounts, resolv.resolver_options()))
}

/// Disconnects the container from `networks` and removes its namespace, going
/// past each failure and reporting them all.
pub fn teardown(
    manager: &NetworkManager,
    container_id: &str,
    networks: &[String],
) -> Result<(), NetworkError> {
    let mut errors = Vec::new();
    for network in networks {
        match manager.disconnect(network, container_id) {
            Ok(()) | Err(NetworkError::NotFound(_)) => {}
            Err(NetworkError::Teardown(more)) => errors.extend(more),
            Err(err) => errors.push(err.to_string()),
        }
    }
    if let Err(err) = manager.remove_sandbox(container_id) {
        errors.push(err.to_string());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(NetworkError::Teardown(errors))
    }
}
