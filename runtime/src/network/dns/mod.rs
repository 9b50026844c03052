//! Service discovery: an embedded DNS server per network, listening on the network's
//! gateway address, that answers the names of the containers which share a network with
//! the asking container and forwards every other name to upstream resolvers.
//!
//! - [`DnsRegistry`] holds the records of every network (shared through an `Arc`); adding
//!   or removing a record takes effect on the very next query.
//! - [`DnsServer`] is one network's UDP + TCP listener; it runs in a tokio runtime (the
//!   supervisor's) and stops when dropped.
//!
//! Scoping follows Docker: the asking container is identified by the source address of the
//! query, and it sees the containers of every network it is attached to. A query from an
//! address the registry does not know sees no container names at all.
//!
//! Wiring: one `Arc<DnsRegistry>` per runtime; per network, once its bridge has the
//! gateway address, `DnsServer::start(DnsServerConfig::new(net, gateway, host_upstreams),
//! registry, &handle)`; per connected container, `registry.add(net, DnsRecord {..})` and
//! `registry.set_resolver_options(id, resolv_conf.resolver_options())` (see
//! `hostfiles::resolv_conf`); `registry.remove(net, id)` on disconnect,
//! `registry.remove_container(id)` on removal, drop the server and
//! `registry.remove_network(net)` when the network goes.

mod answer;
mod registry;
mod server;

use std::io;
use std::net::SocketAddr;

pub use registry::{DnsRecord, DnsRegistry, ResolverOptions};
pub use server::{DnsServer, DnsServerConfig, DEFAULT_UPSTREAM_TIMEOUT, DNS_PORT};

/// Time to live of the answers for container names, as Docker's embedded server gives.
pub const LOCAL_TTL: u32 = 600;

/// Errors of the DNS registry and server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(
        "cannot serve DNS on {addr}: that address is not assigned to any interface; \
         create the network's bridge with its gateway address before starting its DNS server"
    )]
    AddressNotAvailable { addr: SocketAddr },
    #[error(
        "cannot serve DNS on {addr}: the port is already in use by another program \
         (is a local resolver such as dnsmasq listening on that address?)"
    )]
    AddressInUse { addr: SocketAddr },
    #[error(
        "cannot serve DNS on {addr}: permission denied (ports below 1024 need root \
         or CAP_NET_BIND_SERVICE)"
    )]
    PermissionDenied { addr: SocketAddr },
    #[error("cannot serve DNS on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("the DNS server for network {network:?} needs a tokio runtime with IO and timers enabled: {source}")]
    Runtime {
        network: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid DNS name {name:?} for container {container_id:?}: {reason}")]
    InvalidName {
        container_id: String,
        name: String,
        reason: &'static str,
    },
    #[error("invalid DNS record: {0}")]
    InvalidRecord(&'static str),
}
