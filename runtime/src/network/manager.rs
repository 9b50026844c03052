//! Networks as a user sees them: create a bridge network (IPAM + bridge +
//! firewall), connect a container's namespace to it (address, veth, routes,
//! published ports), and take it all down again.
//!
//! Each network is a JSON record under `<state_root>/networks/<name>.network.json`,
//! holding its bridge, subnet and one endpoint per connected container, so any
//! process (a new supervisor, `network ls`) sees the same state. Changes are
//! made under one lock file. Every kernel object lives in the calling thread's
//! network namespace (the host's, or a test's throwaway one).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::dns::DnsRecord;
use super::firewall::{Firewall, FirewallError, NetworkRules};
use super::ipam::{Ipam, IpamError, Subnet};
use super::link::{self, Attachment, BridgeConfig, ContainerInterface, LinkError};
use super::netns::{NetnsError, NetnsHandle};
use super::ports::{PortError, PortForward, PortReservation, Protocol};
use crate::lock::{lock_file, LockGuard, LockKind};

const NETWORKS_DIR: &str = "networks";
const LOCK_FILE: &str = "networks.lock";
/// Records share their directory with IPAM's `ipam.json`; their own suffix keeps a
/// network named `ipam` from overwriting it and `list` from reading it as a network.
const RECORD_SUFFIX: &str = ".network.json";

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("invalid network name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit")]
    InvalidName(String),
    #[error("network {name}: driver {driver:?} is not supported by the embedded engine (only \"bridge\")")]
    UnsupportedDriver { name: String, driver: String },
    #[error("network {name} exists with a different configuration ({what}); remove it first")]
    Conflict { name: String, what: String },
    #[error("network {name} has active endpoints ({containers}); remove those containers first")]
    InUse { name: String, containers: String },
    #[error("network {name}: container {container} is already connected")]
    AlreadyConnected { name: String, container: String },
    #[error("network {name}: {source}")]
    Ipam {
        name: String,
        #[source]
        source: IpamError,
    },
    #[error("network {name}: {source}")]
    Link {
        name: String,
        #[source]
        source: LinkError,
    },
    #[error("network {name}: {source}")]
    Firewall {
        name: String,
        #[source]
        source: FirewallError,
    },
    #[error("network {name}: {source}")]
    Port {
        name: String,
        #[source]
        source: PortError,
    },
    #[error("container {container}: network namespace: {source}")]
    Netns {
        container: String,
        #[source]
        source: NetnsError,
    },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Teardown went on past each failure; these are all of them.
    #[error("{}", .0.join("; "))]
    Teardown(Vec<String>),
}

/// What to create (Compose's `networks.<name>`, already named for the project).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkOptions {
    pub name: String,
    /// `None` or `bridge`.
    pub driver: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// `driver_opts` `com.docker.network.driver.mtu`.
    pub mtu: Option<u32>,
    /// `ipam.config[0]`; `None` picks a free subnet from the pool.
    pub ipam: Option<IpamRequest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpamRequest {
    pub subnet: Subnet,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Subnet>,
}

/// A network as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    pub id: String,
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub ip_range: Option<Subnet>,
    pub internal: bool,
    pub mtu: u32,
    pub labels: BTreeMap<String, String>,
    pub created: SystemTime,
    /// By container id.
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// A container's connection to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub container_id: String,
    pub container_name: String,
    /// Other names it answers to on this network (service name, aliases, hostname).
    pub aliases: Vec<String>,
    pub ipv4: Ipv4Addr,
    pub mac: String,
    /// Its interface inside the container (`eth0`, ...).
    pub ifname: String,
    /// The host side of its veth pair.
    pub host_ifname: String,
    /// Published ports forwarded to this endpoint.
    pub ports: Vec<PortForward>,
}

/// How to connect a container.
#[derive(Debug, Clone, Default)]
pub struct EndpointRequest {
    pub container_id: String,
    pub container_name: String,
    pub aliases: Vec<String>,
    /// Compose's `ipv4_address`; `None` takes the next free one.
    pub ipv4_address: Option<Ipv4Addr>,
    /// `eth0` for the first network, `eth1` for the next...
    pub ifname: String,
    /// Whether this network gives the container its default route (ignored for
    /// internal networks, which never do).
    pub default_route: bool,
}

/// A published port as Compose writes it (one port; ranges are expanded by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishRequest {
    /// `0.0.0.0` = every address.
    pub host_ip: Ipv4Addr,
    /// 0 = an ephemeral port.
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// The networks of one state root.
pub struct NetworkManager {
    state_root: PathBuf,
    dir: PathBuf,
    ipam: Ipam,
    firewall: Firewall,
}

impl NetworkManager {
    pub fn open(state_root: &Path) -> Result<NetworkManager, NetworkError> {
        let dir = state_root.join(NETWORKS_DIR);
        fs::create_dir_all(&dir).map_err(|source| io_error("creating", &dir, source))?;
        Ok(NetworkManager {
            state_root: state_root.to_path_buf(),
            dir,
            ipam: Ipam::open(state_root),
            firewall: Firewall::new(state_root),
        })
    }

    /// Creates the network, or returns it when it exists with the same settings.
    pub fn create(&self, options: &NetworkOptions) -> Result<NetworkRecord, NetworkError> {
        validate_options(options)?;
        let _lock = self.lock()?;
        if let Some(existing) = self.load(&options.name)? {
            check_same(&existing, options)?;
            return Ok(existing);
        }
        let id = crate::random::random_hex_id()
            .map_err(|source| io_error("reading", Path::new("/dev/urandom"), source))?;
        let name = options.name.clone();
        let allocation = match options.ipam {
            Some(request) => {
                self.ipam
                    .reserve_subnet(&id, request.subnet, request.gateway, request.ip_range)
            }
            None => self.ipam.allocate_subnet(&id),
        }
        .map_err(|source| NetworkError::Ipam {
            name: name.clone(),
            source,
        })?;
        let record = NetworkRecord {
            name: name.clone(),
            bridge: link::bridge_name(&id),
            id,
            subnet: allocation.subnet,
            gateway: allocation.gateway,
            ip_range: allocation.ip_range,
            internal: options.internal,
            mtu: options.mtu.unwrap_or(link::DEFAULT_MTU),
            labels: options.labels.clone(),
            created: SystemTime::now(),
            endpoints: BTreeMap::new(),
        };
        if let Err(err) = self.build(&record) {
            // Undo what was made; the error that stopped us is the one to report.
            let _ = self.teardown(&record);
            return Err(err);
        }
        self.save(&record)?;
        Ok(record)
    }

    /// The bridge with its gateway address, and the firewall rules.
    fn build(&self, record: &NetworkRecord) -> Result<(), NetworkError> {
        let name = &record.name;
        link::create_bridge(&BridgeConfig {
            name: record.bridge.clone(),
            mtu: record.mtu,
            gateway: record.gateway,
            prefix_len: record.subnet.prefix(),
        })
        .map_err(|source| NetworkError::Link {
            name: name.clone(),
            source,
        })?;
        self.firewall
            .add_network(&rules_of(record))
            .map_err(|source| NetworkError::Firewall {
                name: name.clone(),
                source,
            })
    }

    pub fn inspect(&self, name: &str) -> Result<NetworkRecord, NetworkError> {
        validate_name(name)?;
        self.load(name)?
            .ok_or_else(|| NetworkError::NotFound(name.to_string()))
    }

    /// Every network, by name.
    pub fn list(&self) -> Result<Vec<NetworkRecord>, NetworkError> {
        let entries =
            fs::read_dir(&self.dir).map_err(|source| io_error("listing", &self.dir, source))?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                file.strip_suffix(RECORD_SUFFIX).map(str::to_string)
            })
            .filter(|name| validate_name(name).is_ok())
            .collect();
        names.sort();
        let mut records = Vec::with_capacity(names.len());
        for name in names {
            if let Some(record) = self.load(&name)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Removes a network without endpoints: firewall rules, bridge, subnet, record.
    pub fn remove(&self, name: &str) -> Result<(), NetworkError> {
        let _lock = self.lock()?;
        let record = self.inspect(name)?;
        if !record.endpoints.is_empty() {
            let containers: Vec<&str> = record.endpoints.keys().map(String::as_str).collect();
            return Err(NetworkError::InUse {
                name: name.to_string(),
                containers: containers.join(", "),
            });
        }
        let mut errors = self.teardown(&record);
        let path = self.record_path(name);
        if let Err(err) = fs::remove_file(&path) {
            if err.kind() != io::ErrorKind::NotFound {
                errors.push(io_error("removing", &path, err).to_string());
            }
        }
        teardown_result(errors)
    }

    /// Undoes `build` and the subnet allocation, going past every failure.
    fn teardown(&self, record: &NetworkRecord) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(err) = self.firewall.remove_network(&record.bridge) {
            errors.push(format!("network {}: {err}", record.name));
        }
        if let Err(err) = link::delete_link(&record.bridge) {
            errors.push(format!("network {}: {err}", record.name));
        }
        if let Err(err) = self.ipam.release_subnet(&record.id) {
            errors.push(format!("network {}: {err}", record.name));
        }
        errors
    }

    /// A new network namespace for a container, `<state_root>/netns/<id>`, to pass as
    /// `NamespaceMode::Join` and to [`NetworkManager::connect`].
    pub fn create_sandbox(&self, container_id: &str) -> Result<NetnsHandle, NetworkError> {
        NetnsHandle::create(&self.state_root, container_id).map_err(|source| NetworkError::Netns {
            container: container_id.to_string(),
            source,
        })
    }

    /// Removes a container's namespace (fine if already gone); with the last one, the
    /// bind mount of the `netns` directory goes too, so the state root can be deleted.
    pub fn remove_sandbox(&self, container_id: &str) -> Result<(), NetworkError> {
        let error = |source| NetworkError::Netns {
            container: container_id.to_string(),
            source,
        };
        super::netns::delete_named_netns(&self.state_root, container_id).map_err(error)?;
        super::netns::release_netns_dir(&self.state_root)
            .map(drop)
            .map_err(error)
    }

    /// Connects a container's namespace: an address from the network's range (or
    /// the requested one), a veth pair with its `ifname` inside, the default route
    /// when asked.
    pub fn connect(
        &self,
        network: &str,
        sandbox: &NetnsHandle,
        request: &EndpointRequest,
    ) -> Result<Endpoint, NetworkError> {
        let _lock = self.lock()?;
        let mut record = self.inspect(network)?;
        let id = &request.container_id;
        if record.endpoints.contains_key(id) {
            return Err(NetworkError::AlreadyConnected {
                name: network.to_string(),
                container: id.clone(),
            });
        }
        let ipam_error = |source| NetworkError::Ipam {
            name: network.to_string(),
            source,
        };
        let ipv4 = match request.ipv4_address {
            Some(address) => self
                .ipam
                .reserve_address(&record.id, address, id)
                .map(|()| address),
            None => self.ipam.allocate_address(&record.id, id),
        }
        .map_err(ipam_error)?;
        let host_ifname = link::host_veth_name(&format!("{}/{id}", record.id));
        let mac = link::mac_from_ipv4(ipv4);
        let attached = link::attach_container(&Attachment {
            bridge: &record.bridge,
            host_ifname: &host_ifname,
            netns: sandbox,
            interface: ContainerInterface {
                ifname: request.ifname.clone(),
                address: ipv4,
                prefix_len: record.subnet.prefix(),
                mtu: record.mtu,
                default_gateway: (request.default_route && !record.internal)
                    .then_some(record.gateway),
                mac: Some(mac),
            },
        });
        if let Err(source) = attached {
            let _ = self.ipam.release_address(&record.id, ipv4);
            return Err(NetworkError::Link {
                name: network.to_string(),
                source,
            });
        }
        let endpoint = Endpoint {
            container_id: id.clone(),
            container_name: request.container_name.clone(),
            aliases: request.aliases.clone(),
            ipv4,
            mac: mac_string(mac),
            ifname: request.ifname.clone(),
            host_ifname,
            ports: Vec::new(),
        };
        record.endpoints.insert(id.clone(), endpoint.clone());
        self.save(&record)?;
        Ok(endpoint)
    }

    /// Publishes ports of a connected container: reserves each host port (found
    /// taken → an error naming its owner, before any rule is added) and forwards
    /// it in the kernel. The reservations hold the ports; keep them while the
    /// container runs.
    pub fn publish(
        &self,
        network: &str,
        container_id: &str,
        requests: &[PublishRequest],
    ) -> Result<Vec<PortReservation>, NetworkError> {
        let port_error = |source| NetworkError::Port {
            name: network.to_string(),
            source,
        };
        let reservations = requests
            .iter()
            .map(|r| super::ports::reserve(r.host_ip, r.host_port, r.protocol))
            .collect::<Result<Vec<_>, _>>()
            .map_err(port_error)?;
        let _lock = self.lock()?;
        let mut record = self.inspect(network)?;
        let endpoint = record.endpoints.get_mut(container_id).ok_or_else(|| {
            NetworkError::NotFound(format!("{network} (endpoint of {container_id})"))
        })?;
        let forwards: Vec<PortForward> = reservations
            .iter()
            .zip(requests)
            .map(|(reservation, request)| {
                reservation.forward_to(endpoint.ipv4, request.container_port)
            })
            .collect();
        self.firewall
            .add_port_forwards(&forwards)
            .map_err(|source| NetworkError::Firewall {
                name: network.to_string(),
                source,
            })?;
        endpoint.ports.extend(forwards);
        self.save(&record)?;
        Ok(reservations)
    }

    /// Disconnects a container: its forwarded ports, its veth and its address.
    /// Goes past each failure and reports them all.
    ///
    /// The kernel work (deleting a veth waits for an RCU grace period, tens of
    /// milliseconds) is done outside the networks lock, so that a project's
    /// containers are torn down in parallel; only the record update is locked.
    pub fn disconnect(&self, network: &str, container_id: &str) -> Result<(), NetworkError> {
        let Some(endpoint) = self.inspect(network)?.endpoints.remove(container_id) else {
            return Ok(());
        };
        let mut errors = Vec::new();
        if !endpoint.ports.is_empty() {
            if let Err(err) = self.firewall.remove_port_forwards(&endpoint.ports) {
                errors.push(format!("network {network}: {err}"));
            }
        }
        // Already gone is fine (a concurrent disconnect of the same container).
        if let Err(err) = link::delete_link(&endpoint.host_ifname) {
            errors.push(format!("network {network}: {err}"));
        }
        // The address is released only once its interface is gone: a new container
        // given it must not meet the old MAC on the bridge.
        let _lock = self.lock()?;
        let mut record = self.inspect(network)?;
        if record.endpoints.remove(container_id).is_some() {
            if let Err(err) = self.ipam.release_holder(&record.id, container_id) {
                errors.push(format!("network {network}: {err}"));
            }
            if let Err(err) = self.save(&record) {
                errors.push(err.to_string());
            }
        }
        teardown_result(errors)
    }

    /// The DNS records of every endpoint, by network name.
    pub fn dns_records(&self) -> Result<Vec<(String, DnsRecord)>, NetworkError> {
        Ok(self
            .list()?
            .into_iter()
            .flat_map(|record| {
                let network = record.name.clone();
                record.endpoints.into_values().map(move |e| {
                    let dns = DnsRecord {
                        container_id: e.container_id,
                        ipv4: e.ipv4,
                        name: e.container_name,
                        aliases: e.aliases,
                    };
                    (network.clone(), dns)
                })
            })
            .collect())
    }

    fn lock(&self) -> Result<LockGuard, NetworkError> {
        let path = self.dir.join(LOCK_FILE);
        lock_file(&path, LockKind::Exclusive).map_err(|source| io_error("locking", &path, source))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{RECORD_SUFFIX}"))
    }

    fn load(&self, name: &str) -> Result<Option<NetworkRecord>, NetworkError> {
        let path = self.record_path(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io_error("reading", &path, io::Error::other(e))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io_error("reading", &path, source)),
        }
    }

    fn save(&self, record: &NetworkRecord) -> Result<(), NetworkError> {
        let path = self.record_path(&record.name);
        crate::atomic_file::replace_json(&path, record, 0o600)
            .map_err(|source| io_error("writing", &path, source))
    }
}

fn rules_of(record: &NetworkRecord) -> NetworkRules {
    NetworkRules {
        bridge: record.bridge.clone(),
        subnet: record.subnet.network(),
        prefix_len: record.subnet.prefix(),
        internal: record.internal,
    }
}

fn validate_options(options: &NetworkOptions) -> Result<(), NetworkError> {
    validate_name(&options.name)?;
    match options.driver.as_deref() {
        None | Some("bridge") => Ok(()),
        Some(driver) => Err(NetworkError::UnsupportedDriver {
            name: options.name.clone(),
            driver: driver.to_string(),
        }),
    }
}

/// Docker's rule for network names, which also makes them safe file names.
fn validate_name(name: &str) -> Result<(), NetworkError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && name.len() <= 128 {
        Ok(())
    } else {
        Err(NetworkError::InvalidName(name.to_string()))
    }
}

/// An existing network is reused only when the request asks for nothing else.
fn check_same(existing: &NetworkRecord, options: &NetworkOptions) -> Result<(), NetworkError> {
    let conflict = |what: String| NetworkError::Conflict {
        name: existing.name.clone(),
        what,
    };
    if existing.internal != options.internal {
        return Err(conflict(format!("internal: {}", existing.internal)));
    }
    if let Some(request) = options.ipam {
        if request.subnet != existing.subnet {
            return Err(conflict(format!("subnet {}", existing.subnet)));
        }
    }
    if let Some(mtu) = options.mtu {
        if mtu != existing.mtu {
            return Err(conflict(format!("mtu {}", existing.mtu)));
        }
    }
    Ok(())
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn teardown_result(errors: Vec<String>) -> Result<(), NetworkError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(NetworkError::Teardown(errors))
    }
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> NetworkError {
    NetworkError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["demo_default", "a", "web.net-1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a/b", "../x", "a b", &"n".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_bridge_driver_is_accepted() {
        let options = NetworkOptions {
            name: "n".into(),
            driver: Some("overlay".into()),
            ..NetworkOptions::default()
        };
        let err = validate_options(&options).unwrap_err();
        assert_eq!(
            err.to_string(),
            "network n: driver \"overlay\" is not supported by the embedded engine (only \"bridge\")"
        );
    }

    #[test]
    fn a_different_configuration_is_a_conflict() {
        let record = NetworkRecord {
            name: "n".into(),
            id: "x".into(),
            bridge: "rc-x".into(),
            subnet: "10.213.9.0/24".parse().unwrap(),
            gateway: "10.213.9.1".parse().unwrap(),
            ip_range: None,
            internal: false,
            mtu: 1500,
            labels: BTreeMap::new(),
            created: SystemTime::UNIX_EPOCH,
            endpoints: BTreeMap::new(),
        };
        let same = NetworkOptions {
            name: "n".into(),
            ..NetworkOptions::default()
        };
        assert!(check_same(&record, &same).is_ok());
        let internal = NetworkOptions {
            internal: true,
            ..same.clone()
        };
        let err = check_same(&record, &internal).unwrap_err();
        assert!(err
            .to_string()
            .contains("different configuration (internal: false)"));
    }

    #[test]
    fn unknown_networks_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let manager = NetworkManager::open(tmp.path()).unwrap();
        assert_eq!(
            manager.inspect("ghost").unwrap_err().to_string(),
            "network ghost not found"
        );
        assert!(manager.list().unwrap().is_empty());
    }

    #[test]
    fn ipams_state_file_is_not_a_network() {
        let tmp = tempfile::tempdir().unwrap();
        let manager = NetworkManager::open(tmp.path()).unwrap();
        manager.ipam.allocate_subnet("x").unwrap();
        assert!(manager.ipam.state_path().exists());
        assert!(manager.list().unwrap().is_empty());
        assert_ne!(manager.record_path("ipam"), manager.ipam.state_path());
    }

    #[test]
    fn macs_print_like_ip_link() {
        assert_eq!(mac_string([0x02, 0x42, 10, 213, 9, 2]), "02:42:0a:d5:09:02");
    }
}
