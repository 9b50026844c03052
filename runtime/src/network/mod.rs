//! Networking for containers: network namespaces and links (`netns`, `link`),
//! address management (`ipam`), NAT, isolation and published ports (`firewall`,
//! `ports`), service discovery and the files a container resolves names with
//! (`dns`, `hostfiles`).

pub mod firewall;
pub mod ports;
