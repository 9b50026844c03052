//! Bridges, veth pairs, addresses, routes and interface sysctls, over rtnetlink.
//!
//! Every function acts in the network namespace of the calling thread (a netlink socket
//! belongs to the namespace it was opened in). To act inside a container's namespace,
//! call them through [`NetnsHandle::run`]/[`in_netns`](super::netns::in_netns), or use
//! [`attach_container`], which does the namespace switching itself.
//!
//! The calls are synchronous: one short-lived `NETLINK_ROUTE` socket per operation, each
//! request acknowledged by the kernel before we return.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    BridgeStpState, InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::Socket;
use sha2::{Digest, Sha256};

use super::netns::{NetnsError, NetnsHandle};

/// Docker's default MTU for bridge networks.
pub const DEFAULT_MTU: u32 = 1500;
/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_LINK_NAME_LEN: usize = 15;
/// Large enough for any single netlink datagram the kernel sends us (dumps are split
/// into datagrams of at most 32 KiB).
const RECV_BUFFER_SIZE: usize = 64 * 1024;

/// Errors from netlink and interface sysctls; each names the link and the operation.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid prefix length /{prefix_len} for {address}: IPv4 allows 0 to 32")]
    InvalidPrefix { address: Ipv4Addr, prefix_len: u8 },
    #[error("invalid sysctl key {key:?}: expected one plain name such as \"route_localnet\"")]
    InvalidSysctlKey { key: String },
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot create bridge {name}: an interface with this name already exists (another network uses it, or a previous run left it behind: `ip link delete {name}` removes it)")]
    BridgeExists { name: String },
    #[error("cannot create veth {host} with peer {peer}: an interface with one of these names already exists (on the host or in the target namespace)")]
    VethExists { host: String, peer: String },
    #[error("address {address}/{prefix_len} is already assigned to {link}")]
    AddressExists {
        link: String,
        address: Ipv4Addr,
        prefix_len: u8,
    },
    #[error("cannot add a default route via {gateway} on {link}: the namespace already has one (only one of a container's networks can provide the default route)")]
    DefaultRouteExists { link: String, gateway: Ipv4Addr },
    #[error("no interface named {name}")]
    NotFound { name: String },
    #[error("cannot {op} {link}: {source}")]
    Netlink {
        op: &'static str,
        link: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot {op} {}: {source}", path.display())]
    Sysctl {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("{error}; removing the half-made veth {link} failed too: {cleanup}")]
    Rollback {
        link: String,
        error: Box<LinkError>,
        cleanup: Box<LinkError>,
    },
}

/// One network interface, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// `bridge`, `veth`, ...; `None` for devices without a kind (lo, physical NICs).
    pub kind: Option<String>,
    /// Index of the bridge this interface is attached to.
    pub controller: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

/// One IPv4 address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// Index of the interface that holds it.
    pub index: u32,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

/// One IPv4 route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `0.0.0.0` with prefix 0 for the default route.
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Index of the outgoing interface.
    pub oif: Option<u32>,
}

impl Route {
    pub fn is_default(&self) -> bool {
        self.prefix_len == 0
    }
}

/// A network's bridge: its name, MTU and the gateway address it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    pub name: String,
    pub mtu: u32,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
}

/// Connects one container namespace to a bridge.
#[derive(Debug)]
pub struct Attachment<'a> {
    /// Bridge (in the calling thread's namespace) the host side joins.
    pub bridge: &'a str,
    /// Host-side veth name, e.g. from [`host_veth_name`].
    pub host_ifname: &'a str,
    /// The container's namespace; the peer is created directly in it.
    pub netns: &'a NetnsHandle,
    /// Interface as the container sees it.
    pub interface: ContainerInterface,
}

/// The container side of an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInterface {
    /// `eth0`, `eth1`, ...
    pub ifname: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub mtu: u32,
    /// Default route via this gateway. `None` for internal networks and for every
    /// network of a container but the one that provides its default route.
    pub default_gateway: Option<Ipv4Addr>,
    /// MAC address; `None` keeps the kernel's random one. See [`mac_from_ipv4`].
    pub mac: Option<[u8; 6]>,
}

/// Which IP version's per-interface sysctls to touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

/// Bridge name for a network: `rc-` and 12 hex digits of the key's SHA-256.
pub fn bridge_name(key: &str) -> String {
    format!("rc-{}", short_hash(key))
}

/// Host-side veth name for a container interface: `rcv` and 12 hex digits of the key's
/// SHA-256 (use a key unique per container and interface, e.g. `<id>/eth0`).
pub fn host_veth_name(key: &str) -> String {
    format!("rcv{}", short_hash(key))
}

fn short_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Docker's MAC for a container address: `02:42` (locally administered) then the four
/// bytes of the IPv4 address, so the same IP always gets the same MAC.
pub fn mac_from_ipv4(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x42, a, b, c, d]
}

/// Checks a name the way the kernel's `dev_valid_name` does, so mistakes surface with
/// the name instead of a bare EINVAL.
pub fn validate_link_name(name: &str) -> Result<(), LinkError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_LINK_NAME_LEN {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("it is a relative path component")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        Some("it contains '/', ':', a NUL byte or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LinkError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn validate_prefix(address: Ipv4Addr, prefix_len: u8) -> Result<(), LinkError> {
    if prefix_len > 32 {
        return Err(LinkError::InvalidPrefix {
            address,
            prefix_len,
        });
    }
    Ok(())
}

/// Creates a bridge without STP, with the given MTU, brings it up and gives it the
/// gateway address. An existing bridge of that name is refused with `BridgeExists`.
/// If giving it its address fails, the new bridge is removed again.
pub fn create_bridge(config: &BridgeConfig) -> Result<Link, LinkError> {
    validate_link_name(&config.name)?;
    validate_prefix(config.gateway, config.prefix_len)?;
    let mut message = LinkMessage::default();
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message.attributes = vec![
        LinkAttribute::IfName(config.name.clone()),
        LinkAttribute::Mtu(config.mtu),
        // A MAC of its own, as Docker gives its bridges: without one the bridge takes
        // the lowest of its ports' and changes it as containers come and go, and the
        // containers' ARP entries for the gateway then point at a MAC the bridge no
        // longer answers to (DNS and egress lost for up to a minute).
        LinkAttribute::Address(mac_from_ipv4(config.gateway).to_vec()),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::StpState(
                BridgeStpState::Disabled,
            )])),
        ]),
    ];
    let create = NLM_F_CREATE | NLM_F_EXCL;
    Rtnl::open()?
        .request(RouteNetlinkMessage::NewLink(message), create)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::EEXIST) => LinkError::BridgeExists {
                name: config.name.clone(),
            },
            _ => netlink_error("create bridge", &config.name, err),
        })?;
    let configured = add_address(&config.name, config.gateway, config.prefix_len)
        .and_then(|()| find_link(&config.name));
    match configured {
        Ok(link) => Ok(link),
        Err(error) => Err(with_cleanup(error, &config.name)),
    }
}

/// Deletes an interface (a bridge, or a veth together with its peer). Returns whether it
/// existed; an interface that is already gone is not an error.
pub fn delete_link(name: &str) -> Result<bool, LinkError> {
    validate_link_name(name)?;
    let message = link_message_named(name);
    match Rtnl::open()?.request(RouteNetlinkMessage::DelLink(message), 0) {
        Ok(_) => Ok(true),
        Err(err) if err.raw_os_error() == Some(libc::ENODEV) => Ok(false),
        Err(err) => Err(netlink_error("delete interface", name, err)),
    }
}

/// Creates a veth pair: `host_ifname` here, attached to `bridge` and up; its peer
/// `interface.ifname` created directly inside `netns` (so `eth0` never exists on the
/// host), with the interface's MTU and MAC. Returns the host side.
pub fn create_veth(
    host_ifname: &str,
    bridge: &str,
    netns: &NetnsHandle,
    interface: &ContainerInterface,
) -> Result<Link, LinkError> {
    validate_link_name(host_ifname)?;
    validate_link_name(&interface.ifname)?;
    let bridge_index = find_link(bridge)?.index;

    let mut peer = link_message_named(&interface.ifname);
    peer.attributes.push(LinkAttribute::Mtu(interface.mtu));
    peer.attributes
        .push(LinkAttribute::NetNsFd(netns.fd().as_raw_fd()));
    if let Some(mac) = interface.mac {
        peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }

    let mut host = link_message_named(host_ifname);
    host.header.flags = LinkFlags::Up;
    host.header.change_mask = LinkFlags::Up;
    host.attributes.extend([
        LinkAttribute::Mtu(interface.mtu),
        LinkAttribute::Controller(bridge_index),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]),
    ]);
    Rtnl::open()?
        .request(
            RouteNetlinkMessage::NewLink(host),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(|err| match err.raw_os_error() {
            Some(libc::EEXIST) => LinkError::VethExists {
                host: host_ifname.to_owned(),
                peer: interface.ifname.clone(),
            },
            _ => netlink_error("create veth pair", host_ifname, err),
        })?;
    // A container reaching its own published port is DNATed back to the port it
    // came from; a bridge drops that unless the port is in hairpin mode.
    set_hairpin(host_ifname).map_err(|error| with_cleanup(error, host_ifname))?;
    find_link(host_ifname)
}

/// Puts a bridge port in hairpin mode, as `ip link set X type bridge_slave hairpin on`
/// does: a RTM_NEWLINK on the existing link (RTM_SETLINK ignores IFLA_LINKINFO) with
/// kind `bridge_slave` and the port attribute.
pub fn set_hairpin(name: &str) -> Result<(), LinkError> {
    validate_link_name(name)?;
    let mut message = LinkMessage::default();
    message.header.index = find_link(name)?.index;
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Other("bridge_slave".into())),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            true,
        )])),
    ]));
    Rtnl::open()?
        .request(RouteNetlinkMessage::NewLink(message), 0)
        .map(drop)
        .map_err(|err| not_found_or(name, "turn on hairpin mode of bridge port", err))
}

/// Inside the calling thread's namespace (the container's): gives `interface.ifname`
/// its address and MTU, brings it up, and adds the default route if there is a gateway.
/// The subnet route comes with the address.
pub fn configure_container_interface(interface: &ContainerInterface) -> Result<(), LinkError> {
    let name = interface.ifname.as_str();
    set_link_mtu(name, interface.mtu)?;
    add_address(name, interface.address, interface.prefix_len)?;
    set_link_up(name)?;
    if let Some(gateway) = interface.default_gateway {
        add_default_route(name, gateway)?;
    }
    Ok(())
}

/// Connects a container namespace to a bridge: veth pair (peer created inside the
/// namespace), host side on the bridge and up, then the container side configured from
/// inside. On failure the pair is removed again. Returns the host-side link.
pub fn attach_container(attachment: &Attachment<'_>) -> Result<Link, LinkError> {
    let host = create_veth(
        attachment.host_ifname,
        attachment.bridge,
        attachment.netns,
        &attachment.interface,
    )?;
    let configured = attachment
        .netns
        .run(|| configure_container_interface(&attachment.interface))
        .map_err(LinkError::from)
        .and_then(|inner| inner);
    match configured {
        Ok(()) => Ok(host),
        Err(error) => Err(with_cleanup(error, attachment.host_ifname)),
    }
}

/// Removes the link made by a failed setup and folds any cleanup failure into the error.
fn with_cleanup(error: LinkError, link: &str) -> LinkError {
    match delete_link(link) {
        Ok(_) => error,
        Err(cleanup) => LinkError::Rollback {
            link: link.to_owned(),
            error: Box::new(error),
            cleanup: Box::new(cleanup),
        },
    }
}

/// Brings an interface up.
pub fn set_link_up(name: &str) -> Result<(), LinkError> {
    validate_link_name(name)?;
    let mut message = link_message_named(name);
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    set_link(name, message, "bring up interface")
}

/// Sets an interface's MTU.
pub fn set_link_mtu(name: &str, mtu: u32) -> Result<(), LinkError> {
    validate_link_name(name)?;
    let mut message = link_message_named(name);
    message.attributes.push(LinkAttribute::Mtu(mtu));
    set_link(name, message, "set the MTU of interface")
}

fn set_link(name: &str, message: LinkMessage, op: &'static str) -> Result<(), LinkError> {
    Rtnl::open()?
        .request(RouteNetlinkMessage::SetLink(message), 0)
        .map(drop)
        .map_err(|err| not_found_or(name, op, err))
}

/// Adds an IPv4 address (with its broadcast address, as `ip addr add ... brd +` does).
pub fn add_address(name: &str, address: Ipv4Addr, prefix_len: u8) -> Result<(), LinkError> {
    validate_prefix(address, prefix_len)?;
    let index = find_link(name)?.index;
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = prefix_len;
    message.header.scope = AddressScope::Universe;
    message.header.index = index;
    message.attributes = vec![
        AddressAttribute::Local(address.into()),
        AddressAttribute::Address(address.into()),
    ];
    if let Some(broadcast) = broadcast_address(address, prefix_len) {
        message
            .attributes
            .push(AddressAttribute::Broadcast(broadcast));
    }
    Rtnl::open()?
        .request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::EEXIST) => LinkError::AddressExists {
                link: name.to_owned(),
                address,
                prefix_len,
            },
            _ => netlink_error("add an address to", name, err),
        })
}

/// The subnet's broadcast address; /31 and /32 have none.
fn broadcast_address(address: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Addr> {
    if prefix_len >= 31 {
        return None;
    }
    let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    Some(Ipv4Addr::from(u32::from(address) | host_bits))
}

/// Adds the default route via `gateway` out of interface `name` (main table).
pub fn add_default_route(name: &str, gateway: Ipv4Addr) -> Result<(), LinkError> {
    let index = find_link(name)?.index;
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = 0;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Boot;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message.attributes = vec![
        RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
        RouteAttribute::Oif(index),
    ];
    Rtnl::open()?
        .request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::EEXIST) => LinkError::DefaultRouteExists {
                link: name.to_owned(),
                gateway,
            },
            _ => netlink_error("add the default route on", name, err),
        })
}

/// The interface called `name`, or `NotFound`.
pub fn find_link(name: &str) -> Result<Link, LinkError> {
    validate_link_name(name)?;
    let message = link_message_named(name);
    let replies = Rtnl::open()?
        .request(RouteNetlinkMessage::GetLink(message), 0)
        .map_err(|err| not_found_or(name, "look up interface", err))?;
    replies
        .into_iter()
        .find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(link_from_message(&link)),
            _ => None,
        })
        .ok_or_else(|| LinkError::NotFound {
            name: name.to_owned(),
        })
}

/// Every interface in the calling thread's namespace.
pub fn list_links() -> Result<Vec<Link>, LinkError> {
    let replies = Rtnl::open()?
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .map_err(|err| netlink_error("list", "interfaces", err))?;
    Ok(replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(link_from_message(link)),
            _ => None,
        })
        .collect())
}

/// Every IPv4 address in the calling thread's namespace.
pub fn list_addresses() -> Result<Vec<Address>, LinkError> {
    let mut request = AddressMessage::default();
    request.header.family = AddressFamily::Inet;
    let replies = Rtnl::open()?
        .dump(RouteNetlinkMessage::GetAddress(request))
        .map_err(|err| netlink_error("list", "IPv4 addresses", err))?;
    Ok(replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewAddress(message) => address_from_message(message),
            _ => None,
        })
        .collect())
}

/// Every IPv4 unicast route of the main table in the calling thread's namespace.
pub fn list_routes() -> Result<Vec<Route>, LinkError> {
    let mut request = RouteMessage::default();
    request.header.address_family = AddressFamily::Inet;
    let replies = Rtnl::open()?
        .dump(RouteNetlinkMessage::GetRoute(request))
        .map_err(|err| netlink_error("list", "IPv4 routes", err))?;
    Ok(replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewRoute(message) => route_from_message(message),
            _ => None,
        })
        .collect())
}

fn link_from_message(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        kind: None,
        controller: None,
        mac: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Controller(index) => link.controller = Some(*index),
            LinkAttribute::Address(bytes) => link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            LinkAttribute::LinkInfo(infos) => {
                link.kind = infos.iter().find_map(|info| match info {
                    LinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    link
}

fn address_from_message(message: &AddressMessage) -> Option<Address> {
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on
    // point-to-point links, so prefer the former.
    let pick = |want_local: bool| {
        message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                AddressAttribute::Local(std::net::IpAddr::V4(ip)) if want_local => Some(*ip),
                AddressAttribute::Address(std::net::IpAddr::V4(ip)) if !want_local => Some(*ip),
                _ => None,
            })
    };
    let address = pick(true).or_else(|| pick(false))?;
    Some(Address {
        index: message.header.index,
        address,
        prefix_len: message.header.prefix_len,
    })
}

fn route_from_message(message: &RouteMessage) -> Option<Route> {
    let header = &message.header;
    let main_table = header.table == RouteHeader::RT_TABLE_MAIN;
    if header.address_family != AddressFamily::Inet
        || header.kind != RouteType::Unicast
        || !main_table
    {
        return None;
    }
    let mut route = Route {
        destination: Ipv4Addr::UNSPECIFIED,
        prefix_len: header.destination_prefix_length,
        gateway: None,
        oif: None,
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => route.destination = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => route.gateway = Some(*ip),
            RouteAttribute::Oif(index) => route.oif = Some(*index),
            _ => {}
        }
    }
    Some(route)
}

/// Writes `value` to `/proc/sys/net/<ipv4|ipv6>/conf/<ifname>/<key>` of the calling
/// thread's namespace, e.g. `route_localnet` = `1` on a bridge.
pub fn set_interface_sysctl(
    version: IpVersion,
    ifname: &str,
    key: &str,
    value: &str,
) -> Result<(), LinkError> {
    let path = interface_sysctl_path(version, ifname, key)?;
    write_sysctl(&path, value)
}

/// Reads `/proc/sys/net/<ipv4|ipv6>/conf/<ifname>/<key>` (trimmed).
pub fn interface_sysctl(version: IpVersion, ifname: &str, key: &str) -> Result<String, LinkError> {
    let path = interface_sysctl_path(version, ifname, key)?;
    read_sysctl(&path)
}

/// Turns on IPv4 forwarding in the calling thread's namespace (needed for egress from
/// containers); returns whether it was off before.
pub fn ensure_ip_forwarding() -> Result<bool, LinkError> {
    let path = Path::new("/proc/sys/net/ipv4/ip_forward");
    if read_sysctl(path)? == "1" {
        return Ok(false);
    }
    write_sysctl(path, "1")?;
    Ok(true)
}

fn interface_sysctl_path(
    version: IpVersion,
    ifname: &str,
    key: &str,
) -> Result<PathBuf, LinkError> {
    validate_link_name(ifname)?;
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !plain {
        return Err(LinkError::InvalidSysctlKey {
            key: key.to_owned(),
        });
    }
    let family = match version {
        IpVersion::V4 => "ipv4",
        IpVersion::V6 => "ipv6",
    };
    Ok(Path::new("/proc/sys/net")
        .join(family)
        .join("conf")
        .join(ifname)
        .join(key))
}

fn read_sysctl(path: &Path) -> Result<String, LinkError> {
    fs::read_to_string(path)
        .map(|value| value.trim().to_owned())
        .map_err(|source| LinkError::Sysctl {
            op: "read sysctl",
            path: path.to_path_buf(),
            source,
        })
}

fn write_sysctl(path: &Path, value: &str) -> Result<(), LinkError> {
    fs::write(path, value).map_err(|source| LinkError::Sysctl {
        op: "write sysctl",
        path: path.to_path_buf(),
        source,
    })
}

fn link_message_named(name: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_owned()));
    message
}

fn netlink_error(op: &'static str, link: &str, source: io::Error) -> LinkError {
    LinkError::Netlink {
        op,
        link: link.to_owned(),
        source,
    }
}

/// ENODEV from a request that names a device means there is no such device.
fn not_found_or(name: &str, op: &'static str, err: io::Error) -> LinkError {
    match err.raw_os_error() {
        Some(libc::ENODEV) => LinkError::NotFound {
            name: name.to_owned(),
        },
        _ => netlink_error(op, name, err),
    }
}

/// A `NETLINK_ROUTE` socket of the calling thread's namespace.
struct Rtnl {
    socket: Socket,
    sequence: u32,
}

impl Rtnl {
    fn open() -> Result<Self, LinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(LinkError::Socket)?;
        socket.bind_auto().map_err(LinkError::Socket)?;
        Ok(Rtnl {
            socket,
            sequence: 0,
        })
    }

    /// Sends a request and waits for the kernel's acknowledgement; returns any
    /// messages that came before it (the reply to a GET).
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_ACK | flags)
    }

    /// Sends a dump request and collects every reply up to NLMSG_DONE.
    fn dump(&mut self, message: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_DUMP)
    }

    fn exchange(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut packet = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(message),
        );
        packet.header.flags = flags;
        packet.header.sequence_number = sequence;
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        self.collect_replies(sequence)
    }

    fn collect_replies(&self, sequence: u32) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut replies = Vec::new();
        let mut buffer = Vec::with_capacity(RECV_BUFFER_SIZE);
        loop {
            buffer.clear();
            let size = self.socket.recv(&mut buffer, libc::MSG_TRUNC)?;
            if size > buffer.len() {
                return Err(io::Error::other(format!(
                    "netlink reply of {size} bytes does not fit the {RECV_BUFFER_SIZE}-byte buffer"
                )));
            }
            for packet in parse_datagram(&buffer)? {
                if packet.header.sequence_number != sequence {
                    continue; // a late reply to an earlier request
                }
                match packet.payload {
                    NetlinkPayload::InnerMessage(message) => replies.push(message),
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(replies),
                            Some(_) => Err(error.to_io()),
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Splits one datagram into its netlink messages.
fn parse_datagram(datagram: &[u8]) -> io::Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
    let mut messages = Vec::new();
    let mut offset = 0;
    while let Some(rest) = datagram.get(offset..).filter(|rest| !rest.is_empty()) {
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
            .map_err(|err| io::Error::other(format!("malformed netlink reply: {err}")))?;
        let length = message.header.length as usize;
        if length == 0 {
            break;
        }
        // Messages start on 4-byte boundaries.
        offset += (length + 3) & !3;
        messages.push(message);
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::netns::{delete_netns, netns_path, release_netns_dir};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn generated_names_fit_ifnamsiz_and_differ_per_key() {
        let bridge = bridge_name("project_default");
        assert!(bridge.starts_with("rc-") && bridge.len() == MAX_LINK_NAME_LEN);
        assert_eq!(bridge, bridge_name("project_default"), "stable");
        let eth0_a = host_veth_name("container-a/eth0");
        let eth0_b = host_veth_name("container-b/eth0");
        assert!(eth0_a.starts_with("rcv") && eth0_a.len() == MAX_LINK_NAME_LEN);
        assert_ne!(eth0_a, eth0_b);
        validate_link_name(&bridge).expect("bridge name is valid");
        validate_link_name(&eth0_a).expect("veth name is valid");
    }

    #[test]
    fn mac_follows_docker_scheme() {
        assert_eq!(
            mac_from_ipv4(Ipv4Addr::new(172, 18, 0, 2)),
            [0x02, 0x42, 0xac, 0x12, 0x00, 0x02]
        );
    }

    #[test]
    fn link_names_are_checked_like_the_kernel_does() {
        for good in ["eth0", "rc-0123456789ab", "a.b-c_d"] {
            validate_link_name(good).expect(good);
        }
        for bad in ["", ".", "..", "has space", "a/b", "a:b", "sixteen-chars-xx"] {
            let err = validate_link_name(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid interface name"), "{err}");
        }
    }

    #[test]
    fn bad_input_is_refused_before_any_netlink_call() {
        let config = BridgeConfig {
            name: "way-too-long-bridge".into(),
            mtu: DEFAULT_MTU,
            gateway: Ipv4Addr::new(10, 213, 0, 1),
            prefix_len: 24,
        };
        assert!(matches!(
            create_bridge(&config),
            Err(LinkError::InvalidName { .. })
        ));
        let config = BridgeConfig {
            name: "rc-ok".into(),
            prefix_len: 33,
            ..config
        };
        let err = create_bridge(&config).expect_err("prefix 33");
        assert!(matches!(err, LinkError::InvalidPrefix { .. }), "{err}");
        assert!(err.to_string().contains("/33"), "{err}");
    }

    #[test]
    fn broadcast_is_the_last_address_of_the_subnet() {
        let ip = Ipv4Addr::new(10, 213, 7, 1);
        assert_eq!(
            broadcast_address(ip, 24),
            Some(Ipv4Addr::new(10, 213, 7, 255))
        );
        assert_eq!(
            broadcast_address(ip, 16),
            Some(Ipv4Addr::new(10, 213, 255, 255))
        );
        assert_eq!(broadcast_address(ip, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(broadcast_address(ip, 31), None);
        assert_eq!(broadcast_address(ip, 32), None);
    }

    #[test]
    fn sysctl_keys_cannot_escape_the_interface_directory() {
        for key in ["", "../ip_forward", "a/b", "route localnet"] {
            let err = interface_sysctl_path(IpVersion::V4, "eth0", key).expect_err(key);
            assert!(matches!(err, LinkError::InvalidSysctlKey { .. }), "{err}");
        }
        assert!(interface_sysctl_path(IpVersion::V4, "../x", "forwarding").is_err());
        assert_eq!(
            interface_sysctl_path(IpVersion::V6, "rc-x", "disable_ipv6").expect("valid"),
            Path::new("/proc/sys/net/ipv6/conf/rc-x/disable_ipv6")
        );
    }

    #[test]
    fn malformed_netlink_replies_are_errors_not_panics() {
        assert!(parse_datagram(&[]).expect("empty").is_empty());
        assert!(parse_datagram(&[1, 2, 3]).is_err());
        // A header that claims more bytes than the datagram holds.
        let mut lying = vec![0u8; 16];
        lying[0] = 200;
        assert!(parse_datagram(&lying).is_err());
    }

    /// A throwaway "host" namespace and a state root; everything a test creates lives in
    /// it, and dropping it removes every namespace file and mount.
    struct Sandbox {
        root: tempfile::TempDir,
        host: NetnsHandle,
    }

    impl Sandbox {
        fn new(test: &str) -> Option<Self> {
            if !rustix::process::geteuid().is_root() {
                println!("{test}: skipped, needs root to create network namespaces");
                return None;
            }
            let root = tempfile::tempdir().expect("tempdir");
            let host = NetnsHandle::create(root.path(), "host").expect("host netns");
            Some(Sandbox { root, host })
        }

        fn container(&self, name: &str) -> NetnsHandle {
            // Created from inside the sandbox so a leak could only be in there.
            self.host
                .run(|| NetnsHandle::create(self.root.path(), name))
                .expect("enter host")
                .expect("container netns")
        }

        fn in_host<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
            self.host.run(f).expect("enter host netns")
        }
    }

    impl Drop for Sandbox {
        fn drop(&mut self) {
            let dir = self.root.path().join("netns");
            if let Ok(entries) = fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let _ = delete_netns(&entry.path());
                }
            }
            let _ = release_netns_dir(self.root.path());
        }
    }

    fn mounts_under(root: &Path) -> usize {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let prefix = root.to_string_lossy();
        mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|mount_point| mount_point.starts_with(prefix.as_ref()))
            .count()
    }

    fn interface(address: [u8; 4], gateway: Option<[u8; 4]>, mtu: u32) -> ContainerInterface {
        let address = Ipv4Addr::from(address);
        ContainerInterface {
            ifname: "eth0".into(),
            address,
            prefix_len: 24,
            mtu,
            default_gateway: gateway.map(Ipv4Addr::from),
            mac: Some(mac_from_ipv4(address)),
        }
    }

    fn bridge(name: &str, gateway: [u8; 4], mtu: u32) -> BridgeConfig {
        BridgeConfig {
            name: name.into(),
            mtu,
            gateway: Ipv4Addr::from(gateway),
            prefix_len: 24,
        }
    }

    /// `busybox ping` through `nsenter`, as an operator would check; `None` when the
    /// tools are missing.
    fn ping_from(netns: &Path, target: Ipv4Addr) -> Option<bool> {
        let status = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["busybox", "ping", "-c1", "-W1", &target.to_string()])
            .output()
            .ok()?;
        Some(status.status.success())
    }

    #[test]
    fn two_containers_on_a_bridge_reach_each_other_and_the_gateway() {
        let Some(sandbox) = Sandbox::new("two_containers_on_a_bridge") else {
            return;
        };
        let bridge_cfg = bridge("rc-test-br", [10, 213, 7, 1], 1400);
        let gateway = bridge_cfg.gateway;
        // Timed: container namespace, bridge, one container attachment.
        let started = Instant::now();
        let c1 = sandbox.container("c1");
        let netns_done = started.elapsed();
        let veth1 = host_veth_name("c1/eth0");
        let veth2 = host_veth_name("c2/eth0");
        let if1 = interface([10, 213, 7, 2], Some([10, 213, 7, 1]), 1400);
        let if2 = interface([10, 213, 7, 3], Some([10, 213, 7, 1]), 1400);

        let (br, host1, bridge_done) = sandbox.in_host(|| {
            let br = create_bridge(&bridge_cfg).expect("create bridge");
            let bridge_done = started.elapsed();
            let host1 = attach_container(&Attachment {
                bridge: &bridge_cfg.name,
                host_ifname: &veth1,
                netns: &c1,
                interface: if1.clone(),
            })
            .expect("attach c1");
            (br, host1, bridge_done)
        });
        let total = started.elapsed();
        println!(
            "netns {netns_done:?}, + bridge {:?}, + attachment {:?}: total {total:?}",
            bridge_done - netns_done,
            total - bridge_done
        );
        // The container side is a hairpin port (a container reaching its own published
        // port is sent back the way it came).
        let details = sandbox.in_host(|| {
            std::process::Command::new("ip")
                .args(["-d", "link", "show", &veth1])
                .output()
                .expect("ip -d link show")
        });
        let details = String::from_utf8_lossy(&details.stdout).into_owned();
        assert!(details.contains("hairpin on"), "{details}");
        let c2 = sandbox.container("c2");
        let host2 = sandbox.in_host(|| {
            attach_container(&Attachment {
                bridge: &bridge_cfg.name,
                host_ifname: &veth2,
                netns: &c2,
                interface: if2.clone(),
            })
            .expect("attach c2 with the same eth0 name")
        });

        // Host side: bridge up with its MTU, both veths up on it, no eth0 on the host.
        let host_links = sandbox.in_host(list_links).expect("host links");
        let find = |name: &str| host_links.iter().find(|l| l.name == name).cloned();
        let br_now = find(&bridge_cfg.name).expect("bridge listed");
        assert_eq!(
            (br_now.kind.as_deref(), br_now.mtu, br_now.up),
            (Some("bridge"), 1400, true)
        );
        // Its own MAC, kept while ports come and go (else the containers' ARP entries
        // for the gateway go stale whenever the lowest port MAC changes).
        assert_eq!(br_now.mac, Some(mac_from_ipv4(gateway)), "bridge MAC");
        for (host, name) in [(&host1, &veth1), (&host2, &veth2)] {
            let listed = find(name).expect("host veth listed");
            assert_eq!(listed.controller, Some(br.index), "{name} on the bridge");
            assert_eq!((listed.mtu, listed.up), (1400, true), "{name}");
            assert_eq!(listed.kind.as_deref(), Some("veth"));
            assert_eq!(host.index, listed.index);
        }
        assert!(find("eth0").is_none(), "eth0 never appears on the host");
        let host_addrs = sandbox.in_host(list_addresses).expect("host addresses");
        assert!(host_addrs.contains(&Address {
            index: br.index,
            address: gateway,
            prefix_len: 24
        }));

        // Container side: eth0 with address, MTU, MAC, default and subnet routes.
        let (links, addrs, routes) = c1
            .run(|| (list_links(), list_addresses(), list_routes()))
            .expect("enter c1");
        let links = links.expect("c1 links");
        let eth0 = links.iter().find(|l| l.name == "eth0").expect("eth0 in c1");
        assert_eq!((eth0.mtu, eth0.up), (1400, true));
        assert_eq!(eth0.mac, Some([0x02, 0x42, 10, 213, 7, 2]));
        assert!(addrs.expect("c1 addresses").contains(&Address {
            index: eth0.index,
            address: if1.address,
            prefix_len: 24
        }));
        let routes = routes.expect("c1 routes");
        assert!(
            routes.contains(&Route {
                destination: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gateway: Some(gateway),
                oif: Some(eth0.index)
            }),
            "{routes:?}"
        );
        assert!(routes
            .iter()
            .any(|r| r.destination == Ipv4Addr::new(10, 213, 7, 0) && r.prefix_len == 24));

        // Traffic: TCP from c1 to c2, and ping to c2 and to the gateway.
        let listener = c2
            .run(|| TcpListener::bind((if2.address, 0)))
            .expect("enter c2")
            .expect("listen in c2");
        let target = listener.local_addr().expect("listener address");
        let connected = c1
            .run(|| TcpStream::connect_timeout(&target, Duration::from_secs(2)))
            .expect("enter c1");
        assert!(connected.is_ok(), "c1 reaches c2 over TCP: {connected:?}");
        let (_, peer) = listener.accept().expect("accept");
        assert_eq!(peer.ip(), std::net::IpAddr::V4(if1.address));
        // The listener only exists in c2: the host's own namespace cannot see it.
        let not_here = TcpStream::connect_timeout(
            &SocketAddr::new(target.ip(), target.port()),
            Duration::from_millis(200),
        );
        assert!(
            not_here.is_err(),
            "c2's address is not reachable from the real host"
        );
        match (
            ping_from(c1.path(), if2.address),
            ping_from(c1.path(), gateway),
        ) {
            (Some(to_peer), Some(to_gateway)) => {
                assert!(to_peer, "ping c1 -> c2");
                assert!(to_gateway, "ping c1 -> gateway");
            }
            _ => println!("ping check skipped: nsenter or busybox is missing"),
        }

        // A second bridge of the same name gets the clear error.
        let err = sandbox
            .in_host(|| create_bridge(&bridge_cfg))
            .expect_err("duplicate bridge");
        assert!(matches!(err, LinkError::BridgeExists { .. }), "{err}");
        assert!(err.to_string().contains("rc-test-br"), "{err}");
        // And a second veth of the same name too, without touching the first one.
        let err = sandbox
            .in_host(|| {
                attach_container(&Attachment {
                    bridge: &bridge_cfg.name,
                    host_ifname: &veth1,
                    netns: &c2,
                    interface: ContainerInterface {
                        ifname: "eth1".into(),
                        ..if2.clone()
                    },
                })
            })
            .expect_err("duplicate veth");
        assert!(matches!(err, LinkError::VethExists { .. }), "{err}");
        assert!(sandbox.in_host(|| find_link(&veth1)).is_ok());

        // Interface sysctls and forwarding, in the sandbox's namespace.
        sandbox.in_host(|| {
            set_interface_sysctl(IpVersion::V4, &bridge_cfg.name, "route_localnet", "1")
                .expect("set route_localnet");
            assert_eq!(
                interface_sysctl(IpVersion::V4, &bridge_cfg.name, "route_localnet")
                    .expect("read back"),
                "1"
            );
            // New namespaces may inherit forwarding from the real host, so turn it off
            // first. This is the sandbox's /proc/sys (the bridge's directory above only
            // exists there), so the real host's setting is untouched.
            fs::write("/proc/sys/net/ipv4/ip_forward", "0").expect("turn off");
            assert!(ensure_ip_forwarding().expect("turn on"), "it was off");
            assert!(!ensure_ip_forwarding().expect("already on"));
        });
        let real_host_forwarding =
            fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read ip_forward");
        println!("real host ip_forward stays {}", real_host_forwarding.trim());

        // Teardown: links, then namespaces; deleting twice is fine.
        sandbox.in_host(|| {
            assert!(delete_link(&veth1).expect("delete veth1"));
            assert!(!delete_link(&veth1).expect("veth1 already gone"));
            assert!(delete_link(&veth2).expect("delete veth2"));
            assert!(delete_link(&bridge_cfg.name).expect("delete bridge"));
        });
        let c1_links = c1.run(list_links).expect("enter c1").expect("links");
        assert_eq!(c1_links.len(), 1, "only lo is left in c1: {c1_links:?}");
        let remaining = sandbox.in_host(list_links).expect("host links");
        let names: Vec<&str> = remaining.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["lo"],
            "nothing of ours is left in the host namespace"
        );
        for ns in [c1, c2] {
            delete_netns(ns.path()).expect("delete container netns");
            assert!(!ns.path().exists());
        }
        let root = sandbox.root.path().to_path_buf();
        // The open handle keeps the namespace alive but does not pin the file.
        delete_netns(&netns_path(&root, "host")).expect("delete host netns");
        assert!(release_netns_dir(&root).expect("release netns dir"));
        assert_eq!(mounts_under(&root), 0, "no mount is left");
        assert_eq!(fs::read_dir(root.join("netns")).expect("dir").count(), 0);
    }

    #[test]
    fn internal_network_gets_no_default_route() {
        let Some(sandbox) = Sandbox::new("internal_network_gets_no_default_route") else {
            return;
        };
        let bridge_cfg = bridge("rc-internal", [10, 213, 8, 1], DEFAULT_MTU);
        let c = sandbox.container("internal");
        sandbox.in_host(|| {
            create_bridge(&bridge_cfg).expect("bridge");
            attach_container(&Attachment {
                bridge: &bridge_cfg.name,
                host_ifname: &host_veth_name("internal/eth0"),
                netns: &c,
                interface: interface([10, 213, 8, 2], None, DEFAULT_MTU),
            })
            .expect("attach");
        });
        let routes = c.run(list_routes).expect("enter").expect("routes");
        assert!(!routes.iter().any(Route::is_default), "{routes:?}");
        assert!(routes
            .iter()
            .any(|r| r.destination == Ipv4Addr::new(10, 213, 8, 0) && r.prefix_len == 24));
        let eth0 = c.run(|| find_link("eth0")).expect("enter").expect("eth0");
        assert_eq!(eth0.mtu, DEFAULT_MTU);
    }

    #[test]
    fn a_failed_attachment_leaves_no_veth_behind() {
        let Some(sandbox) = Sandbox::new("a_failed_attachment_leaves_no_veth_behind") else {
            return;
        };
        let bridge_cfg = bridge("rc-rollback", [10, 213, 9, 1], DEFAULT_MTU);
        let c = sandbox.container("rollback");
        let veth = host_veth_name("rollback/eth0");
        sandbox.in_host(|| {
            create_bridge(&bridge_cfg).expect("bridge");
            let missing_bridge = attach_container(&Attachment {
                bridge: "rc-nope",
                host_ifname: &veth,
                netns: &c,
                interface: interface([10, 213, 9, 2], None, DEFAULT_MTU),
            })
            .expect_err("no such bridge");
            assert!(
                matches!(missing_bridge, LinkError::NotFound { ref name } if name == "rc-nope")
            );
            // The veth is created, then configuring it inside fails: it must go again.
            let bad_prefix = attach_container(&Attachment {
                bridge: &bridge_cfg.name,
                host_ifname: &veth,
                netns: &c,
                interface: ContainerInterface {
                    prefix_len: 40,
                    ..interface([10, 213, 9, 2], None, DEFAULT_MTU)
                },
            })
            .expect_err("bad prefix");
            assert!(
                matches!(bad_prefix, LinkError::InvalidPrefix { .. }),
                "{bad_prefix}"
            );
            assert!(matches!(find_link(&veth), Err(LinkError::NotFound { .. })));
        });
        let links = c.run(list_links).expect("enter").expect("links");
        assert!(links.iter().all(|l| l.name != "eth0"), "{links:?}");
    }
}
