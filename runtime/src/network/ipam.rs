//! IPv4 address management: which subnet each network gets and which address each
//! container gets inside it.
//!
//! State lives in `<state_root>/networks/ipam.json` and every read-modify-write happens
//! under an exclusive `flock` on `<state_root>/networks/ipam.lock`, so supervisors of
//! different projects (separate processes) and separate [`Ipam`] values in one process
//! allocate safely from the same state root. The lock is IPAM's own (not the networks
//! directory's general lock) so a caller holding another lock never deadlocks with it.
//!
//! Subnets come from an ordered list of address pools, like Docker's
//! `default-address-pools`: the first candidate that overlaps neither another network
//! nor a route of the current network namespace wins. Addresses are handed out
//! sequentially with wrap-around, so a just-released address is not reused at once
//! (a peer may still hold it in its ARP cache or a conntrack entry), as Docker does.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::lock::{lock_file, LockGuard, LockKind};

/// Directory under the state root that holds network state.
const NETWORKS_DIR: &str = "networks";
const STATE_FILE: &str = "ipam.json";
const LOCK_FILE: &str = "ipam.lock";
const STATE_VERSION: u32 = 1;
/// The routing table of the calling thread's network namespace (`/proc/net` follows the
/// main thread's namespace, which is wrong for a thread that has `setns`'d).
const KERNEL_ROUTE_TABLE: &str = "/proc/thread-self/net/route";
/// A network needs a network address, a gateway, at least one container address and a
/// broadcast address.
const SMALLEST_NETWORK_PREFIX: u8 = 30;

/// Why a subnet in CIDR notation was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubnetParseError {
    #[error("invalid subnet {input:?}: expected CIDR notation such as 10.0.0.0/24")]
    MissingPrefix { input: String },
    #[error("invalid subnet {input:?}: {address:?} is not an IPv4 address")]
    BadAddress { input: String, address: String },
    #[error("invalid subnet {input:?}: the prefix length must be a number from 0 to 32")]
    BadPrefix { input: String },
    #[error("invalid subnet {given}: it has host bits set, it should be {canonical}")]
    HostBitsSet { given: String, canonical: Subnet },
}

/// Everything IPAM can refuse or fail at.
#[derive(Debug, Error)]
pub enum IpamError {
    #[error(transparent)]
    InvalidSubnet(#[from] SubnetParseError),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "the IPAM state file {path} is corrupt ({reason}); it was left untouched: repair it \
         or move it aside (every network will then need to be recreated)"
    )]
    CorruptState { path: PathBuf, reason: String },
    #[error("cannot read the routing table {path}: line {line}: {reason}")]
    RouteTable {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "invalid address pool {base} with size /{size}: the size must be between /{} and /{SMALLEST_NETWORK_PREFIX}",
        base.prefix
    )]
    InvalidPool { base: Subnet, size: u8 },
    #[error("a network id must not be empty")]
    EmptyNetworkId,
    #[error("an address holder (container or endpoint name) must not be empty")]
    EmptyHolder,
    #[error(
        "no free subnet left in the address pools ({pools}): every candidate overlaps \
         another network or a host route; remove unused networks or give this network an \
         explicit subnet"
    )]
    PoolsExhausted { pools: String },
    #[error(
        "subnet {subnet} is too small for a network: it needs at least a /{SMALLEST_NETWORK_PREFIX} \
         (network address, gateway, one container, broadcast)"
    )]
    SubnetTooSmall { subnet: Subnet },
    #[error("subnet {requested} overlaps subnet {existing} of network {network}")]
    SubnetOverlap {
        requested: Subnet,
        existing: Subnet,
        network: String,
    },
    #[error(
        "network {network} already has subnet {existing}; release it before reserving {requested}"
    )]
    NetworkAlreadyAllocated {
        network: String,
        existing: Subnet,
        requested: Subnet,
    },
    #[error("gateway {gateway} is outside subnet {subnet}")]
    GatewayOutsideSubnet { gateway: Ipv4Addr, subnet: Subnet },
    #[error("gateway {gateway} cannot be the {role} of subnet {subnet}")]
    GatewayNotUsable {
        gateway: Ipv4Addr,
        role: &'static str,
        subnet: Subnet,
    },
    #[error("ip_range {range} is not inside subnet {subnet}")]
    RangeOutsideSubnet { range: Subnet, subnet: Subnet },
    #[error("network {network} has no subnet allocated")]
    UnknownNetwork { network: String },
    #[error("address {address} is outside subnet {subnet} of network {network}")]
    AddressOutsideSubnet {
        address: Ipv4Addr,
        subnet: Subnet,
        network: String,
    },
    #[error(
        "address {address} is the {role} of network {network} and cannot be given to a container"
    )]
    AddressReserved {
        address: Ipv4Addr,
        role: &'static str,
        network: String,
    },
    #[error("address {address} in network {network} is already in use by {holder}")]
    AddressInUse {
        address: Ipv4Addr,
        network: String,
        holder: String,
    },
    #[error(
        "no free address left in network {network} (range {range}, {in_use} addresses in \
         use): remove containers from it or use a larger subnet or ip_range"
    )]
    AddressesExhausted {
        network: String,
        range: Subnet,
        in_use: usize,
    },
}

/// An IPv4 subnet in canonical form (no host bits set), written `10.0.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// The netmask of a prefix length as an integer (`/24` → `0xffff_ff00`).
fn mask_bits(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

impl Subnet {
    /// A subnet from its network address; fails if `prefix` > 32 or host bits are set.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Self, SubnetParseError> {
        let given = format!("{network}/{prefix}");
        if prefix > 32 {
            return Err(SubnetParseError::BadPrefix { input: given });
        }
        let canonical = Self::containing(network, prefix);
        if canonical.network != network {
            return Err(SubnetParseError::HostBitsSet { given, canonical });
        }
        Ok(canonical)
    }

    /// The subnet of length `prefix` (clamped to 32) that contains `address`.
    pub fn containing(address: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        Subnet {
            network: Ipv4Addr::from(u32::from(address) & mask_bits(prefix)),
            prefix,
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_bits(self.prefix))
    }

    /// The last address of the subnet.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first_bits() | !mask_bits(self.prefix))
    }

    /// How many addresses the subnet spans, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The first address after the network address (Docker's default gateway).
    pub fn first_host(&self) -> Option<Ipv4Addr> {
        (self.prefix < 31).then(|| Ipv4Addr::from(self.first_bits() + 1))
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask_bits(self.prefix) == self.first_bits()
    }

    /// Whether every address of `other` is in `self`.
    pub fn contains_subnet(&self, other: &Subnet) -> bool {
        other.prefix >= self.prefix && self.contains(other.network)
    }

    /// Whether the two subnets share at least one address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains_subnet(other) || other.contains_subnet(self)
    }

    fn first_bits(&self) -> u32 {
        u32::from(self.network)
    }

    fn last_bits(&self) -> u32 {
        u32::from(self.broadcast())
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = SubnetParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (address, prefix) =
            input
                .trim()
                .split_once('/')
                .ok_or_else(|| SubnetParseError::MissingPrefix {
                    input: input.to_owned(),
                })?;
        let network: Ipv4Addr = address.parse().map_err(|_| SubnetParseError::BadAddress {
            input: input.to_owned(),
            address: address.to_owned(),
        })?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(|| {
            SubnetParseError::BadPrefix {
                input: input.to_owned(),
            }
        })?;
        Subnet::new(network, prefix)
    }
}

impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A range of subnets to carve networks from: `base` split into subnets of `/size`
/// (Docker's `default-address-pools` entry).
/// Built only through [`AddressPool::new`], which validates the sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    base: Subnet,
    size: u8,
}

impl AddressPool {
    /// Fails unless `base.prefix() <= size <= 30`.
    pub fn new(base: Subnet, size: u8) -> Result<Self, IpamError> {
        if size < base.prefix || size > SMALLEST_NETWORK_PREFIX {
            return Err(IpamError::InvalidPool { base, size });
        }
        Ok(AddressPool { base, size })
    }

    pub fn base(&self) -> Subnet {
        self.base
    }

    pub fn size(&self) -> u8 {
        self.size
    }

    /// Every subnet of the pool, in address order.
    fn candidates(&self) -> impl Iterator<Item = Subnet> + '_ {
        let step = 1u64 << (32 - u32::from(self.size));
        let first = u64::from(self.base.first_bits());
        let count = self.base.size() / step;
        (0..count).filter_map(move |i| {
            let start = u32::try_from(first + i * step).ok()?;
            Some(Subnet::containing(Ipv4Addr::from(start), self.size))
        })
    }
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in /{}s", self.base, self.size)
    }
}

/// The pools used unless the caller configures others: Docker's defaults minus
/// 172.17.0.0/16, which Docker's own `docker0` takes on hosts that also run dockerd.
/// So networks get 172.18.0.0/16, 172.19.0.0/16, ... 172.31.0.0/16, then /20s of
/// 192.168.0.0/16, the same subnets Compose users see with Docker.
pub fn default_pools() -> Vec<AddressPool> {
    [
        (Ipv4Addr::new(172, 18, 0, 0), 15, 16),
        (Ipv4Addr::new(172, 20, 0, 0), 14, 16),
        (Ipv4Addr::new(172, 24, 0, 0), 14, 16),
        (Ipv4Addr::new(172, 28, 0, 0), 14, 16),
        (Ipv4Addr::new(192, 168, 0, 0), 16, 20),
    ]
    .into_iter()
    .map(|(network, prefix, size)| AddressPool {
        base: Subnet { network, prefix },
        size,
    })
    .collect()
}

/// Where the host's routes come from when picking a subnet from the pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRoutes {
    /// The main routing table of the calling thread's network namespace, read from
    /// `/proc/thread-self/net/route` at each allocation.
    Kernel,
    /// A file in `/proc/net/route` format.
    File(PathBuf),
    /// A fixed list of routed subnets.
    Fixed(Vec<Subnet>),
}

impl HostRoutes {
    /// The routed destinations, the default route excluded (it overlaps everything).
    fn load(&self) -> Result<Vec<Subnet>, IpamError> {
        let path = match self {
            HostRoutes::Fixed(routes) => return Ok(routes.clone()),
            HostRoutes::Kernel => Path::new(KERNEL_ROUTE_TABLE),
            HostRoutes::File(path) => path.as_path(),
        };
        let text = fs::read_to_string(path).map_err(|source| IpamError::Io {
            action: "read the routing table",
            path: path.to_owned(),
            source,
        })?;
        parse_route_table(&text).map_err(|(line, reason)| IpamError::RouteTable {
            path: path.to_owned(),
            line,
            reason,
        })
    }
}

/// Parses `/proc/net/route`: a header line, then one route per line with the
/// destination and mask as 8 hex digits printed from the kernel's network-order value
/// read as a native integer. Returns the non-default destinations, or the 1-based line
/// number and reason of the first malformed line.
pub fn parse_route_table(text: &str) -> Result<Vec<Subnet>, (usize, String)> {
    let mut routes = Vec::new();
    for (index, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let line_number = index + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(destination), Some(mask)) = (fields.get(1), fields.get(7)) else {
            return Err((
                line_number,
                format!("expected 11 fields, got {}", fields.len()),
            ));
        };
        let destination = parse_route_address(destination).map_err(|e| (line_number, e))?;
        let mask = u32::from(parse_route_address(mask).map_err(|e| (line_number, e))?);
        let prefix = mask.leading_ones();
        if mask.count_ones() != prefix {
            return Err((line_number, format!("mask {mask:#010x} is not contiguous")));
        }
        if prefix == 0 {
            continue;
        }
        // Prefix is at most 32 here, so the cast is lossless.
        routes.push(Subnet::containing(destination, prefix as u8));
    }
    Ok(routes)
}

fn parse_route_address(hex: &str) -> Result<Ipv4Addr, String> {
    if hex.len() != 8 {
        return Err(format!("{hex:?} is not 8 hex digits"));
    }
    let value = u32::from_str_radix(hex, 16).map_err(|_| format!("{hex:?} is not 8 hex digits"))?;
    Ok(Ipv4Addr::from(value.to_ne_bytes()))
}

/// How an [`Ipam`] picks subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamOptions {
    /// Tried in order; see [`default_pools`].
    pub pools: Vec<AddressPool>,
    pub host_routes: HostRoutes,
}

impl Default for IpamOptions {
    fn default() -> Self {
        IpamOptions {
            pools: default_pools(),
            host_routes: HostRoutes::Kernel,
        }
    }
}

/// What a network got: its subnet, its gateway and where container addresses come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetAllocation {
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// Dynamic addresses come from here (the whole subnet when absent).
    pub ip_range: Option<Subnet>,
}

/// One network's record in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NetworkState {
    #[serde(flatten)]
    allocation: SubnetAllocation,
    /// Container addresses and who holds them.
    #[serde(default)]
    addresses: BTreeMap<Ipv4Addr, String>,
    /// The last dynamically allocated address; the next search starts after it.
    #[serde(default)]
    last_allocated: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IpamState {
    version: u32,
    #[serde(default)]
    networks: BTreeMap<String, NetworkState>,
}

impl Default for IpamState {
    fn default() -> Self {
        IpamState {
            version: STATE_VERSION,
            networks: BTreeMap::new(),
        }
    }
}

/// Subnet and address allocation backed by `<state_root>/networks/ipam.json`.
///
/// Each call locks, reads, updates and atomically rewrites the state file, so any
/// number of `Ipam` values (in any number of processes) can share a state root.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    options: IpamOptions,
}

impl Ipam {
    /// IPAM with Docker-like default pools, avoiding the current namespace's routes.
    pub fn open(state_root: &Path) -> Self {
        Self::with_options(state_root, IpamOptions::default())
    }

    pub fn with_options(state_root: &Path, options: IpamOptions) -> Self {
        Ipam {
            dir: state_root.join(NETWORKS_DIR),
            options,
        }
    }

    /// Path of the state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Gives `network_id` the first pool subnet that overlaps no other network and no
    /// host route, with the first host address as gateway. Idempotent: a network that
    /// already has a subnet gets its existing allocation back.
    pub fn allocate_subnet(&self, network_id: &str) -> Result<SubnetAllocation, IpamError> {
        check_network_id(network_id)?;
        self.update(|state| {
            if let Some(existing) = state.networks.get(network_id) {
                return Ok(existing.allocation);
            }
            let routes = self.options.host_routes.load()?;
            let subnet = self
                .options
                .pools
                .iter()
                .flat_map(AddressPool::candidates)
                .find(|candidate| {
                    !routes.iter().any(|route| route.overlaps(candidate))
                        && overlapping_network(state, candidate).is_none()
                })
                .ok_or_else(|| IpamError::PoolsExhausted {
                    pools: describe_pools(&self.options.pools),
                })?;
            let allocation = default_allocation(subnet)?;
            insert_network(state, network_id, allocation);
            Ok(allocation)
        })
    }

    /// Gives `network_id` exactly `subnet` (a user's `ipam.config`), with `gateway`
    /// (default: first host address) and an optional `ip_range` for dynamic addresses.
    /// Host routes are not checked: an explicit subnet is the user's decision, as in
    /// Docker. Reserving the same thing again returns the existing allocation.
    pub fn reserve_subnet(
        &self,
        network_id: &str,
        subnet: Subnet,
        gateway: Option<Ipv4Addr>,
        ip_range: Option<Subnet>,
    ) -> Result<SubnetAllocation, IpamError> {
        check_network_id(network_id)?;
        let mut allocation = default_allocation(subnet)?;
        if let Some(gateway) = gateway {
            check_gateway(subnet, gateway)?;
            allocation.gateway = gateway;
        }
        if let Some(range) = ip_range {
            if !subnet.contains_subnet(&range) {
                return Err(IpamError::RangeOutsideSubnet { range, subnet });
            }
            allocation.ip_range = Some(range);
        }
        self.update(|state| {
            if let Some(existing) = state.networks.get(network_id) {
                if existing.allocation == allocation {
                    return Ok(allocation);
                }
                return Err(IpamError::NetworkAlreadyAllocated {
                    network: network_id.to_owned(),
                    existing: existing.allocation.subnet,
                    requested: subnet,
                });
            }
            if let Some((network, existing)) = overlapping_network(state, &subnet) {
                return Err(IpamError::SubnetOverlap {
                    requested: subnet,
                    existing,
                    network: network.to_owned(),
                });
            }
            insert_network(state, network_id, allocation);
            Ok(allocation)
        })
    }

    /// Forgets the network's subnet and every address in it. Returns whether the
    /// network had a subnet (releasing twice is not an error, for teardown).
    pub fn release_subnet(&self, network_id: &str) -> Result<bool, IpamError> {
        self.update(|state| Ok(state.networks.remove(network_id).is_some()))
    }

    /// The network's allocation, if it has one.
    pub fn allocation(&self, network_id: &str) -> Result<Option<SubnetAllocation>, IpamError> {
        let state = self.read()?;
        Ok(state.networks.get(network_id).map(|n| n.allocation))
    }

    /// The container addresses of a network and their holders.
    pub fn addresses(&self, network_id: &str) -> Result<BTreeMap<Ipv4Addr, String>, IpamError> {
        let state = self.read()?;
        let network = find_network(&state, network_id)?;
        Ok(network.addresses.clone())
    }

    /// Gives `holder` (a container or endpoint name) the next free address after the
    /// last one handed out, wrapping around, from the network's `ip_range` or subnet;
    /// the network and broadcast addresses and the gateway are never handed out.
    /// Idempotent: a holder that already has an address in the network gets it back.
    pub fn allocate_address(&self, network_id: &str, holder: &str) -> Result<Ipv4Addr, IpamError> {
        check_holder(holder)?;
        self.update(|state| {
            let network = find_network_mut(state, network_id)?;
            if let Some(address) = address_of(network, holder) {
                return Ok(address);
            }
            let address = next_free_address(network).ok_or_else(|| {
                let range = network.allocation.ip_range;
                IpamError::AddressesExhausted {
                    network: network_id.to_owned(),
                    range: range.unwrap_or(network.allocation.subnet),
                    in_use: network.addresses.len(),
                }
            })?;
            network.addresses.insert(address, holder.to_owned());
            network.last_allocated = Some(address);
            Ok(address)
        })
    }

    /// Gives `holder` exactly `address` (a static `ipv4_address`), which may lie outside
    /// the `ip_range` but must be a usable address of the subnet that nobody else holds.
    pub fn reserve_address(
        &self,
        network_id: &str,
        address: Ipv4Addr,
        holder: &str,
    ) -> Result<(), IpamError> {
        check_holder(holder)?;
        self.update(|state| {
            let network = find_network_mut(state, network_id)?;
            let allocation = network.allocation;
            if !allocation.subnet.contains(address) {
                return Err(IpamError::AddressOutsideSubnet {
                    address,
                    subnet: allocation.subnet,
                    network: network_id.to_owned(),
                });
            }
            if let Some(role) = reserved_role(&allocation, address) {
                return Err(IpamError::AddressReserved {
                    address,
                    role,
                    network: network_id.to_owned(),
                });
            }
            match network.addresses.get(&address) {
                Some(current) if current == holder => Ok(()),
                Some(current) => Err(IpamError::AddressInUse {
                    address,
                    network: network_id.to_owned(),
                    holder: current.clone(),
                }),
                None => {
                    network.addresses.insert(address, holder.to_owned());
                    Ok(())
                }
            }
        })
    }

    /// Frees one address. Returns whether it was held; an unknown network or a free
    /// address is not an error, so teardown can release twice.
    pub fn release_address(&self, network_id: &str, address: Ipv4Addr) -> Result<bool, IpamError> {
        self.update(|state| {
            Ok(state
                .networks
                .get_mut(network_id)
                .is_some_and(|network| network.addresses.remove(&address).is_some()))
        })
    }

    /// Frees every address `holder` has in the network and returns them.
    pub fn release_holder(
        &self,
        network_id: &str,
        holder: &str,
    ) -> Result<Vec<Ipv4Addr>, IpamError> {
        self.update(|state| {
            let Some(network) = state.networks.get_mut(network_id) else {
                return Ok(Vec::new());
            };
            let freed: Vec<Ipv4Addr> = network
                .addresses
                .iter()
                .filter(|(_, h)| h.as_str() == holder)
                .map(|(address, _)| *address)
                .collect();
            for address in &freed {
                network.addresses.remove(address);
            }
            Ok(freed)
        })
    }

    /// Runs `change` on the state under the exclusive lock and saves the result if
    /// `change` succeeded (a failed change leaves the file as it was).
    fn update<T>(
        &self,
        change: impl FnOnce(&mut IpamState) -> Result<T, IpamError>,
    ) -> Result<T, IpamError> {
        let _guard = self.lock(LockKind::Exclusive)?;
        let mut state = self.load()?;
        let before = state.clone();
        let result = change(&mut state)?;
        if state != before {
            self.save(&state)?;
        }
        Ok(result)
    }

    fn read(&self) -> Result<IpamState, IpamError> {
        let _guard = self.lock(LockKind::Shared)?;
        self.load()
    }

    fn lock(&self, kind: LockKind) -> Result<LockGuard, IpamError> {
        fs::create_dir_all(&self.dir).map_err(|source| IpamError::Io {
            action: "create the directory",
            path: self.dir.clone(),
            source,
        })?;
        let path = self.dir.join(LOCK_FILE);
        lock_file(&path, kind).map_err(|source| IpamError::Io {
            action: "lock",
            path,
            source,
        })
    }

    /// The state; a missing file is an empty state, a corrupt one an error.
    fn load(&self) -> Result<IpamState, IpamError> {
        let path = self.state_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(IpamState::default()),
            Err(source) => {
                return Err(IpamError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        let state: IpamState =
            serde_json::from_slice(&bytes).map_err(|e| IpamError::CorruptState {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if state.version != STATE_VERSION {
            return Err(IpamError::CorruptState {
                path,
                reason: format!(
                    "format version {} is not the supported version {STATE_VERSION}",
                    state.version
                ),
            });
        }
        Ok(state)
    }

    /// Writes a temp file next to the state file, syncs it and renames it into place,
    /// so readers see the old or the new state, never a partial one.
    fn save(&self, state: &IpamState) -> Result<(), IpamError> {
        let path = self.state_path();
        let io_error = |action: &'static str| {
            let path = path.clone();
            move |source| IpamError::Io {
                action,
                path,
                source,
            }
        };
        let json = serde_json::to_vec_pretty(state).map_err(|e| io_error("encode")(e.into()))?;
        crate::atomic_file::replace_durably(&path, &json, 0o600).map_err(io_error("write"))
    }
}

fn check_network_id(network_id: &str) -> Result<(), IpamError> {
    if network_id.trim().is_empty() {
        return Err(IpamError::EmptyNetworkId);
    }
    Ok(())
}

fn check_holder(holder: &str) -> Result<(), IpamError> {
    if holder.trim().is_empty() {
        return Err(IpamError::EmptyHolder);
    }
    Ok(())
}

/// The allocation of `subnet` with Docker's default gateway (first host address).
fn default_allocation(subnet: Subnet) -> Result<SubnetAllocation, IpamError> {
    if subnet.prefix > SMALLEST_NETWORK_PREFIX {
        return Err(IpamError::SubnetTooSmall { subnet });
    }
    let gateway = subnet
        .first_host()
        .ok_or(IpamError::SubnetTooSmall { subnet })?;
    Ok(SubnetAllocation {
        subnet,
        gateway,
        ip_range: None,
    })
}

fn check_gateway(subnet: Subnet, gateway: Ipv4Addr) -> Result<(), IpamError> {
    if !subnet.contains(gateway) {
        return Err(IpamError::GatewayOutsideSubnet { gateway, subnet });
    }
    let role = if gateway == subnet.network {
        Some("network address")
    } else if gateway == subnet.broadcast() {
        Some("broadcast address")
    } else {
        None
    };
    match role {
        Some(role) => Err(IpamError::GatewayNotUsable {
            gateway,
            role,
            subnet,
        }),
        None => Ok(()),
    }
}

/// Why `address` of the subnet can never be a container's, if it can't.
fn reserved_role(allocation: &SubnetAllocation, address: Ipv4Addr) -> Option<&'static str> {
    if address == allocation.subnet.network {
        Some("network address")
    } else if address == allocation.subnet.broadcast() {
        Some("broadcast address")
    } else if address == allocation.gateway {
        Some("gateway")
    } else {
        None
    }
}

fn overlapping_network<'a>(state: &'a IpamState, subnet: &Subnet) -> Option<(&'a str, Subnet)> {
    state.networks.iter().find_map(|(id, network)| {
        let existing = network.allocation.subnet;
        existing.overlaps(subnet).then_some((id.as_str(), existing))
    })
}

fn insert_network(state: &mut IpamState, network_id: &str, allocation: SubnetAllocation) {
    state.networks.insert(
        network_id.to_owned(),
        NetworkState {
            allocation,
            addresses: BTreeMap::new(),
            last_allocated: None,
        },
    );
}

fn describe_pools(pools: &[AddressPool]) -> String {
    if pools.is_empty() {
        return "none configured".to_owned();
    }
    pools
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn find_network<'a>(state: &'a IpamState, network_id: &str) -> Result<&'a NetworkState, IpamError> {
    state
        .networks
        .get(network_id)
        .ok_or_else(|| IpamError::UnknownNetwork {
            network: network_id.to_owned(),
        })
}

fn find_network_mut<'a>(
    state: &'a mut IpamState,
    network_id: &str,
) -> Result<&'a mut NetworkState, IpamError> {
    state
        .networks
        .get_mut(network_id)
        .ok_or_else(|| IpamError::UnknownNetwork {
            network: network_id.to_owned(),
        })
}

fn address_of(network: &NetworkState, holder: &str) -> Option<Ipv4Addr> {
    network
        .addresses
        .iter()
        .find_map(|(address, h)| (h == holder).then_some(*address))
}

/// The first free dynamic address after `last_allocated`, wrapping around to the
/// start of the range once.
fn next_free_address(network: &NetworkState) -> Option<Ipv4Addr> {
    let (low, high) = dynamic_bounds(&network.allocation)?;
    let start = match network.last_allocated.map(u32::from) {
        Some(last) if last >= low && last < high => last + 1,
        _ => low,
    };
    let is_taken = |bits: u32| {
        let address = Ipv4Addr::from(bits);
        address == network.allocation.gateway || network.addresses.contains_key(&address)
    };
    first_free(start, high, is_taken)
        .or_else(|| first_free(low, start.saturating_sub(1), is_taken))
        .map(Ipv4Addr::from)
}

/// The first address in `from..=to` that is not taken. Runs in time proportional to
/// the number of taken addresses, since every step skips one of them.
fn first_free(from: u32, to: u32, is_taken: impl Fn(u32) -> bool) -> Option<u32> {
    (from..=to).find(|bits| !is_taken(*bits))
}

/// The lowest and highest address containers may get dynamically: the `ip_range` (or
/// the subnet) without the subnet's network and broadcast addresses.
fn dynamic_bounds(allocation: &SubnetAllocation) -> Option<(u32, u32)> {
    let subnet = allocation.subnet;
    let range = allocation.ip_range.unwrap_or(subnet);
    let low = range.first_bits().max(subnet.first_bits().checked_add(1)?);
    let high = range.last_bits().min(subnet.last_bits().checked_sub(1)?);
    (low <= high).then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn subnet(text: &str) -> Subnet {
        text.parse().expect("valid subnet in test")
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().expect("valid address in test")
    }

    /// An IPAM on a fresh state root that sees only the given host routes.
    fn ipam_with(routes: &[&str], pools: Vec<AddressPool>) -> (tempfile::TempDir, Ipam) {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = IpamOptions {
            pools,
            host_routes: HostRoutes::Fixed(routes.iter().map(|r| subnet(r)).collect()),
        };
        let ipam = Ipam::with_options(dir.path(), options);
        (dir, ipam)
    }

    fn default_ipam() -> (tempfile::TempDir, Ipam) {
        ipam_with(&[], default_pools())
    }

    /// An IPAM holding one network `net` with the given subnet.
    fn ipam_with_network(cidr: &str, ip_range: Option<&str>) -> (tempfile::TempDir, Ipam) {
        let (dir, ipam) = default_ipam();
        ipam.reserve_subnet("net", subnet(cidr), None, ip_range.map(subnet))
            .expect("reserve");
        (dir, ipam)
    }

    #[test]
    fn subnet_parses_and_displays_in_cidr_notation() {
        let parsed = subnet("10.0.0.0/24");
        assert_eq!(parsed.network(), ip("10.0.0.0"));
        assert_eq!(parsed.prefix(), 24);
        assert_eq!(parsed.to_string(), "10.0.0.0/24");
        assert_eq!(subnet(" 0.0.0.0/0 ").to_string(), "0.0.0.0/0");
        assert_eq!(subnet("10.1.2.3/32").to_string(), "10.1.2.3/32");
    }

    #[test]
    fn subnet_parse_errors_say_what_is_wrong() {
        let err = |text: &str| text.parse::<Subnet>().expect_err(text).to_string();
        assert_eq!(
            err("10.0.0.0"),
            "invalid subnet \"10.0.0.0\": expected CIDR notation such as 10.0.0.0/24"
        );
        assert!(err("10.0.0/24").contains("\"10.0.0\" is not an IPv4 address"));
        assert!(err("10.0.0.0/33").contains("prefix length must be a number from 0 to 32"));
        assert!(err("10.0.0.0/x").contains("prefix length"));
        assert_eq!(
            err("10.0.0.1/24"),
            "invalid subnet 10.0.0.1/24: it has host bits set, it should be 10.0.0.0/24"
        );
        assert!(Subnet::new(ip("10.0.0.0"), 40).is_err());
    }

    #[test]
    fn subnet_geometry_helpers() {
        let net = subnet("172.18.0.0/16");
        assert_eq!(net.netmask(), ip("255.255.0.0"));
        assert_eq!(net.broadcast(), ip("172.18.255.255"));
        assert_eq!(net.size(), 65536);
        assert_eq!(net.first_host(), Some(ip("172.18.0.1")));
        assert!(net.contains(ip("172.18.200.3")));
        assert!(!net.contains(ip("172.19.0.0")));
        assert_eq!(subnet("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(subnet("0.0.0.0/0").broadcast(), ip("255.255.255.255"));
        assert_eq!(subnet("10.0.0.4/31").first_host(), None);
        assert_eq!(
            Subnet::containing(ip("192.168.17.9"), 20),
            subnet("192.168.16.0/20")
        );
    }

    #[test]
    fn subnet_overlap_and_containment() {
        let big = subnet("10.213.0.0/16");
        let inner = subnet("10.213.5.0/24");
        let other = subnet("10.214.0.0/16");
        assert!(big.contains_subnet(&inner));
        assert!(!inner.contains_subnet(&big));
        assert!(big.overlaps(&inner) && inner.overlaps(&big));
        assert!(!big.overlaps(&other));
        assert!(subnet("0.0.0.0/0").overlaps(&other));
        assert!(!subnet("10.213.5.0/25").overlaps(&subnet("10.213.5.128/25")));
    }

    #[test]
    fn subnet_serializes_as_a_string() {
        let json = serde_json::to_string(&subnet("192.168.16.0/20")).expect("encode");
        assert_eq!(json, "\"192.168.16.0/20\"");
        let back: Subnet = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, subnet("192.168.16.0/20"));
        let bad = serde_json::from_str::<Subnet>("\"192.168.16.1/20\"").expect_err("host bits");
        assert!(bad.to_string().contains("should be 192.168.16.0/20"));
    }

    #[test]
    fn default_pools_follow_docker_from_172_18() {
        let all: Vec<Subnet> = default_pools()
            .iter()
            .flat_map(AddressPool::candidates)
            .collect();
        assert_eq!(all.len(), 14 + 16);
        assert_eq!(all.first(), Some(&subnet("172.18.0.0/16")));
        assert_eq!(all.get(13), Some(&subnet("172.31.0.0/16")));
        assert_eq!(all.get(14), Some(&subnet("192.168.0.0/20")));
        assert_eq!(all.last(), Some(&subnet("192.168.240.0/20")));
    }

    #[test]
    fn address_pool_rejects_sizes_it_cannot_split_into() {
        let err = AddressPool::new(subnet("10.0.0.0/16"), 8).expect_err("larger than base");
        assert_eq!(
            err.to_string(),
            "invalid address pool 10.0.0.0/16 with size /8: the size must be between /16 and /30"
        );
        assert!(AddressPool::new(subnet("10.0.0.0/16"), 31).is_err());
        let pool = AddressPool::new(subnet("10.0.0.0/16"), 16).expect("one subnet");
        assert_eq!(pool.candidates().count(), 1);
        let whole = AddressPool::new(subnet("0.0.0.0/0"), 2).expect("quarters");
        assert_eq!(whole.candidates().last(), Some(subnet("192.0.0.0/2")));
    }

    // /proc/net/route prints the network-order value as a native integer.
    #[cfg(target_endian = "little")]
    #[test]
    fn route_table_is_parsed_without_the_default_route() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
            docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            \n\
            tun0\t0102D50A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n";
        let routes = parse_route_table(table).expect("parse");
        assert_eq!(
            routes,
            vec![
                subnet("192.168.0.0/24"),
                subnet("172.17.0.0/16"),
                subnet("10.213.2.1/32")
            ]
        );
    }

    #[test]
    fn malformed_route_table_lines_are_reported_by_number() {
        let header =
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n";
        let short = format!("{header}eth0\t0000A8C0\n");
        assert_eq!(
            parse_route_table(&short).expect_err("short"),
            (2, "expected 11 fields, got 2".to_owned())
        );
        let bad_hex = format!("{header}eth0\tZZ00A8C0\t0\t1\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        assert_eq!(parse_route_table(&bad_hex).expect_err("hex").0, 2);
        let holes = format!("{header}eth0\t0000A8C0\t0\t1\t0\t0\t0\tFF00FFFF\t0\t0\t0\n");
        assert!(parse_route_table(&holes)
            .expect_err("mask")
            .1
            .contains("not contiguous"));

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("route");
        fs::write(&path, short).expect("write");
        let err = HostRoutes::File(path.clone()).load().expect_err("bad file");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read the routing table {}: line 2: expected 11 fields, got 2",
                path.display()
            )
        );
    }

    #[test]
    fn kernel_route_table_of_this_thread_is_readable() {
        let routes = HostRoutes::Kernel
            .load()
            .expect("read /proc/thread-self/net/route");
        assert!(routes.iter().all(|route| route.prefix() > 0));
    }

    #[test]
    fn subnets_come_from_the_pools_in_order_with_the_first_host_as_gateway() {
        let (_dir, ipam) = default_ipam();
        let first = ipam.allocate_subnet("a").expect("first");
        assert_eq!(
            first,
            SubnetAllocation {
                subnet: subnet("172.18.0.0/16"),
                gateway: ip("172.18.0.1"),
                ip_range: None,
            }
        );
        let second = ipam.allocate_subnet("b").expect("second");
        assert_eq!(second.subnet, subnet("172.19.0.0/16"));
        // Asking again for the same network returns what it has.
        assert_eq!(ipam.allocate_subnet("a").expect("again"), first);
        assert_eq!(ipam.allocation("b").expect("read"), Some(second));
        assert_eq!(ipam.allocation("zzz").expect("read"), None);
    }

    #[test]
    fn subnets_overlapping_host_routes_or_other_networks_are_skipped() {
        // 172.18/16 is routed, a /24 inside 172.19 is routed, and 172.20/16 is taken by
        // a user-given subnet; the next free one is 172.21/16.
        let (_dir, ipam) = ipam_with(&["172.18.0.0/16", "172.19.3.0/24"], default_pools());
        ipam.reserve_subnet("user", subnet("172.20.128.0/17"), None, None)
            .expect("reserve");
        let allocation = ipam.allocate_subnet("auto").expect("allocate");
        assert_eq!(allocation.subnet, subnet("172.21.0.0/16"));
        // A route that covers a whole pool sends allocation to the next pool.
        let (_dir, ipam) = ipam_with(&["172.16.0.0/12"], default_pools());
        assert_eq!(
            ipam.allocate_subnet("x").expect("allocate").subnet,
            subnet("192.168.0.0/20")
        );
    }

    #[test]
    fn a_released_subnet_can_be_allocated_again() {
        let (_dir, ipam) = default_ipam();
        ipam.allocate_subnet("a").expect("a");
        ipam.allocate_subnet("b").expect("b");
        assert!(ipam.release_subnet("a").expect("release"));
        assert!(!ipam.release_subnet("a").expect("release twice"));
        assert_eq!(
            ipam.allocate_subnet("c").expect("c").subnet,
            subnet("172.18.0.0/16")
        );
    }

    #[test]
    fn exhausted_pools_are_a_clear_error() {
        let pools = vec![AddressPool::new(subnet("10.213.0.0/23"), 24).expect("pool")];
        let (_dir, ipam) = ipam_with(&["10.213.1.0/24"], pools);
        assert_eq!(
            ipam.allocate_subnet("a").expect("a").subnet,
            subnet("10.213.0.0/24")
        );
        let err = ipam.allocate_subnet("b").expect_err("exhausted");
        assert_eq!(
            err.to_string(),
            "no free subnet left in the address pools (10.213.0.0/23 in /24s): every candidate \
             overlaps another network or a host route; remove unused networks or give this \
             network an explicit subnet"
        );
        let (_dir, ipam) = ipam_with(&[], Vec::new());
        assert!(ipam
            .allocate_subnet("a")
            .expect_err("no pools")
            .to_string()
            .contains("(none configured)"));
    }

    #[test]
    fn reserve_subnet_takes_the_users_gateway_and_range() {
        let (_dir, ipam) = default_ipam();
        let allocation = ipam
            .reserve_subnet(
                "net",
                subnet("172.28.0.0/16"),
                Some(ip("172.28.5.254")),
                Some(subnet("172.28.5.0/24")),
            )
            .expect("reserve");
        assert_eq!(allocation.gateway, ip("172.28.5.254"));
        assert_eq!(allocation.ip_range, Some(subnet("172.28.5.0/24")));
        // The same request again is accepted; a different one is refused.
        assert_eq!(
            ipam.reserve_subnet(
                "net",
                subnet("172.28.0.0/16"),
                Some(ip("172.28.5.254")),
                Some(subnet("172.28.5.0/24")),
            )
            .expect("same again"),
            allocation
        );
        let err = ipam
            .reserve_subnet("net", subnet("10.213.0.0/24"), None, None)
            .expect_err("other subnet");
        assert_eq!(
            err.to_string(),
            "network net already has subnet 172.28.0.0/16; release it before reserving 10.213.0.0/24"
        );
    }

    #[test]
    fn reserve_subnet_names_the_network_it_overlaps() {
        let (_dir, ipam) = default_ipam();
        ipam.reserve_subnet("proj_backend", subnet("10.213.0.0/16"), None, None)
            .expect("first");
        let err = ipam
            .reserve_subnet("proj_front", subnet("10.213.9.0/24"), None, None)
            .expect_err("overlap");
        assert_eq!(
            err.to_string(),
            "subnet 10.213.9.0/24 overlaps subnet 10.213.0.0/16 of network proj_backend"
        );
        assert_eq!(ipam.allocation("proj_front").expect("read"), None);
    }

    #[test]
    fn reserve_subnet_validates_gateway_range_and_size() {
        let (_dir, ipam) = default_ipam();
        let net = subnet("10.213.1.0/24");
        let err = |gateway: Option<&str>, range: Option<&str>| {
            ipam.reserve_subnet("n", net, gateway.map(ip), range.map(subnet))
                .expect_err("invalid")
                .to_string()
        };
        assert_eq!(
            err(Some("10.213.2.1"), None),
            "gateway 10.213.2.1 is outside subnet 10.213.1.0/24"
        );
        assert_eq!(
            err(Some("10.213.1.0"), None),
            "gateway 10.213.1.0 cannot be the network address of subnet 10.213.1.0/24"
        );
        assert_eq!(
            err(Some("10.213.1.255"), None),
            "gateway 10.213.1.255 cannot be the broadcast address of subnet 10.213.1.0/24"
        );
        assert_eq!(
            err(None, Some("10.213.0.0/23")),
            "ip_range 10.213.0.0/23 is not inside subnet 10.213.1.0/24"
        );
        let small = ipam
            .reserve_subnet("n", subnet("10.213.1.0/31"), None, None)
            .expect_err("too small");
        assert!(small
            .to_string()
            .starts_with("subnet 10.213.1.0/31 is too small"));
        assert!(matches!(
            ipam.reserve_subnet(" ", net, None, None),
            Err(IpamError::EmptyNetworkId)
        ));
        assert!(!ipam.state_path().exists(), "nothing was recorded");
    }

    #[test]
    fn addresses_are_sequential_and_skip_the_gateway() {
        let (_dir, ipam) = ipam_with_network("10.213.1.0/24", None);
        assert_eq!(
            ipam.allocate_address("net", "c1").expect("c1"),
            ip("10.213.1.2")
        );
        assert_eq!(
            ipam.allocate_address("net", "c2").expect("c2"),
            ip("10.213.1.3")
        );
        // A holder asking again keeps its address.
        assert_eq!(
            ipam.allocate_address("net", "c1").expect("again"),
            ip("10.213.1.2")
        );
        let held = ipam.addresses("net").expect("list");
        assert_eq!(held.get(&ip("10.213.1.2")).map(String::as_str), Some("c1"));
        assert_eq!(held.len(), 2);
    }

    #[test]
    fn a_released_address_is_not_reused_at_once() {
        let (_dir, ipam) = ipam_with_network("10.213.1.0/24", None);
        let first = ipam.allocate_address("net", "c1").expect("c1");
        ipam.allocate_address("net", "c2").expect("c2");
        assert!(ipam.release_address("net", first).expect("release"));
        assert!(!ipam.release_address("net", first).expect("release twice"));
        assert!(!ipam
            .release_address("gone", first)
            .expect("unknown network"));
        assert_eq!(
            ipam.allocate_address("net", "c3").expect("c3"),
            ip("10.213.1.4")
        );
    }

    #[test]
    fn allocation_wraps_around_and_reports_exhaustion() {
        // .0 network, .1 gateway, .2-.6 containers, .7 broadcast.
        let (_dir, ipam) = ipam_with_network("10.213.1.0/29", None);
        let all: Vec<Ipv4Addr> = (0..5)
            .map(|i| {
                ipam.allocate_address("net", &format!("c{i}"))
                    .expect("alloc")
            })
            .collect();
        assert_eq!(all.first(), Some(&ip("10.213.1.2")));
        assert_eq!(all.last(), Some(&ip("10.213.1.6")));
        let err = ipam.allocate_address("net", "extra").expect_err("full");
        assert_eq!(
            err.to_string(),
            "no free address left in network net (range 10.213.1.0/29, 5 addresses in use): \
             remove containers from it or use a larger subnet or ip_range"
        );
        ipam.release_address("net", ip("10.213.1.3"))
            .expect("release");
        ipam.release_address("net", ip("10.213.1.5"))
            .expect("release");
        // The last handed out was .6, so the search wraps to the start of the range.
        assert_eq!(
            ipam.allocate_address("net", "x").expect("x"),
            ip("10.213.1.3")
        );
        assert_eq!(
            ipam.allocate_address("net", "y").expect("y"),
            ip("10.213.1.5")
        );
    }

    #[test]
    fn dynamic_addresses_stay_in_the_ip_range_and_static_ones_may_not() {
        let (_dir, ipam) = ipam_with_network("10.213.0.0/16", Some("10.213.5.0/30"));
        // The range's own first address is usable: only the subnet's are reserved.
        assert_eq!(
            ipam.allocate_address("net", "a").expect("a"),
            ip("10.213.5.0")
        );
        ipam.reserve_address("net", ip("10.213.9.9"), "static")
            .expect("static outside the range");
        for name in ["b", "c", "d"] {
            ipam.allocate_address("net", name).expect("in range");
        }
        let err = ipam.allocate_address("net", "e").expect_err("range full");
        assert!(err
            .to_string()
            .contains("(range 10.213.5.0/30, 5 addresses in use)"));
        // A range at the start of the subnet never yields the network address or gateway.
        let (_dir, ipam) = ipam_with_network("10.213.0.0/16", Some("10.213.0.0/24"));
        assert_eq!(
            ipam.allocate_address("net", "a").expect("a"),
            ip("10.213.0.2")
        );
    }

    #[test]
    fn static_addresses_are_reserved_exactly_or_refused_with_the_reason() {
        let (_dir, ipam) = ipam_with_network("10.213.1.0/24", None);
        ipam.reserve_address("net", ip("10.213.1.50"), "db")
            .expect("static");
        ipam.reserve_address("net", ip("10.213.1.50"), "db")
            .expect("same holder again");
        let err = |address: &str| {
            ipam.reserve_address("net", ip(address), "web")
                .expect_err(address)
                .to_string()
        };
        assert_eq!(
            err("10.213.1.50"),
            "address 10.213.1.50 in network net is already in use by db"
        );
        assert_eq!(
            err("10.213.2.5"),
            "address 10.213.2.5 is outside subnet 10.213.1.0/24 of network net"
        );
        assert_eq!(
            err("10.213.1.1"),
            "address 10.213.1.1 is the gateway of network net and cannot be given to a container"
        );
        assert!(err("10.213.1.0").contains("is the network address"));
        assert!(err("10.213.1.255").contains("is the broadcast address"));
        // Dynamic allocation steps around the static address.
        ipam.reserve_address("net", ip("10.213.1.2"), "pinned")
            .expect("static");
        assert_eq!(
            ipam.allocate_address("net", "c").expect("c"),
            ip("10.213.1.3")
        );
    }

    #[test]
    fn address_calls_on_unknown_networks_or_without_holder_fail() {
        let (_dir, ipam) = default_ipam();
        assert_eq!(
            ipam.allocate_address("nope", "c")
                .expect_err("unknown")
                .to_string(),
            "network nope has no subnet allocated"
        );
        assert!(ipam.reserve_address("nope", ip("10.0.0.2"), "c").is_err());
        assert!(ipam.addresses("nope").is_err());
        assert!(matches!(
            ipam.allocate_address("nope", ""),
            Err(IpamError::EmptyHolder)
        ));
        assert_eq!(
            ipam.release_holder("nope", "c").expect("idempotent"),
            Vec::<Ipv4Addr>::new()
        );
    }

    #[test]
    fn release_holder_frees_every_address_of_a_container() {
        let (_dir, ipam) = ipam_with_network("10.213.1.0/24", None);
        ipam.allocate_address("net", "web").expect("dynamic");
        ipam.reserve_address("net", ip("10.213.1.77"), "web")
            .expect("static");
        ipam.allocate_address("net", "db").expect("db");
        let freed = ipam.release_holder("net", "web").expect("release");
        assert_eq!(freed, vec![ip("10.213.1.2"), ip("10.213.1.77")]);
        let left: Vec<String> = ipam.addresses("net").expect("list").into_values().collect();
        assert_eq!(left, vec!["db".to_owned()]);
    }

    #[test]
    fn state_survives_reopening_and_a_missing_file_is_empty() {
        let (dir, ipam) = default_ipam();
        assert_eq!(ipam.allocation("a").expect("empty state"), None);
        ipam.allocate_subnet("a").expect("a");
        ipam.allocate_address("a", "c1").expect("c1");
        assert_eq!(ipam.state_path(), dir.path().join("networks/ipam.json"));

        let reopened = Ipam::with_options(
            dir.path(),
            IpamOptions {
                pools: default_pools(),
                host_routes: HostRoutes::Fixed(Vec::new()),
            },
        );
        assert_eq!(
            reopened.allocation("a").expect("read").map(|a| a.subnet),
            Some(subnet("172.18.0.0/16"))
        );
        // The sequence carries on where the other instance left it.
        assert_eq!(
            reopened.allocate_address("a", "c2").expect("c2"),
            ip("172.18.0.3")
        );
        let text = fs::read_to_string(reopened.state_path()).expect("state file");
        assert!(text.contains("\"subnet\": \"172.18.0.0/16\""), "{text}");
        assert!(text.contains("\"172.18.0.2\": \"c1\""), "{text}");
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("networks"))
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it_and_is_left_untouched() {
        let (dir, ipam) = default_ipam();
        fs::create_dir_all(dir.path().join("networks")).expect("dir");
        let path = ipam.state_path();
        fs::write(&path, "{\"version\": 1, \"networks\": {").expect("write");
        let err = ipam.allocate_subnet("a").expect_err("corrupt");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "the IPAM state file {} is corrupt (",
                path.display()
            )),
            "{message}"
        );
        assert!(message.contains("left untouched"), "{message}");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "{\"version\": 1, \"networks\": {"
        );
        assert!(
            ipam.release_subnet("a").is_err(),
            "teardown does not wipe it either"
        );

        fs::write(&path, "{\"version\": 7}").expect("write");
        let err = ipam.allocation("a").expect_err("future version");
        assert!(err
            .to_string()
            .contains("format version 7 is not the supported version 1"));
    }

    #[test]
    fn separate_instances_in_parallel_threads_get_distinct_addresses() {
        let (dir, ipam) = ipam_with_network("10.213.0.0/22", None);
        let state_root = dir.path().to_owned();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let root = state_root.clone();
                std::thread::spawn(move || {
                    // Each thread has its own Ipam and so its own lock descriptor.
                    let own = Ipam::with_options(&root, IpamOptions::default());
                    (0..25)
                        .map(|i| {
                            own.allocate_address("net", &format!("t{t}-c{i}"))
                                .expect("allocate")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for thread in threads {
            all.extend(thread.join().expect("thread"));
        }
        let distinct: BTreeSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 100, "duplicates in {all:?}");
        assert_eq!(ipam.addresses("net").expect("list").len(), 100);
    }

    #[test]
    fn separate_instances_in_parallel_threads_get_distinct_subnets() {
        let (dir, _ipam) = default_ipam();
        let root = dir.path().to_owned();
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let own = Ipam::with_options(
                        &root,
                        IpamOptions {
                            pools: default_pools(),
                            host_routes: HostRoutes::Fixed(Vec::new()),
                        },
                    );
                    (0..4)
                        .map(|i| {
                            own.allocate_subnet(&format!("n{t}-{i}"))
                                .expect("subnet")
                                .subnet
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for thread in threads {
            all.extend(thread.join().expect("thread"));
        }
        for (i, a) in all.iter().enumerate() {
            for b in all.iter().skip(i + 1) {
                assert!(!a.overlaps(b), "{a} and {b} were both handed out");
            }
        }
        assert_eq!(all.len(), 24);
    }

    fn run_ip(args: &[&str]) {
        let status = std::process::Command::new("ip")
            .args(args)
            .status()
            .expect("run ip");
        assert!(status.success(), "ip {args:?} failed");
    }

    /// Creates a bridge with an address (the kernel adds its route) in a fresh network
    /// namespace of a throwaway thread; children forked from the thread inherit it, so
    /// `ip` works there and the host never sees the link. Subnet allocation must step
    /// around that route. (A bridge, because the dummy driver is not on every kernel.)
    #[test]
    #[allow(unsafe_code)]
    fn kernel_routes_of_the_current_namespace_are_avoided() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root to create a network namespace");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_owned();
        let allocated = std::thread::spawn(move || {
            // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only this thread,
            // which we own and which ends with the test.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", io::Error::last_os_error());
            run_ip(&["link", "add", "rcipamtest0", "type", "bridge"]);
            run_ip(&["addr", "add", "10.213.6.1/24", "dev", "rcipamtest0"]);
            run_ip(&["link", "set", "rcipamtest0", "up"]);
            let pools = vec![AddressPool::new(subnet("10.213.6.0/23"), 24).expect("pool")];
            let ipam = Ipam::with_options(
                &root,
                IpamOptions {
                    pools,
                    host_routes: HostRoutes::Kernel,
                },
            );
            ipam.allocate_subnet("n").expect("allocate").subnet
        })
        .join()
        .expect("namespace thread");
        assert_eq!(allocated, subnet("10.213.7.0/24"));
        let host_routes = HostRoutes::Kernel.load().expect("host routes");
        assert!(
            !host_routes.contains(&subnet("10.213.6.0/24")),
            "the test route leaked into the host namespace"
        );
    }
}
