//! Networking for containers: network namespaces and links (`netns`, `link`),
//! address management (`ipam`), NAT, isolation and published ports (`firewall`,
//! `ports`), service discovery and the files a container resolves names with
//! (`dns`, `hostfiles`); `manager` puts them together as networks a user names,
//! `sandbox` as everything networking gives one container.

pub mod dns;
pub mod firewall;
pub mod hostfiles;
pub mod ipam;
pub mod link;
pub mod manager;
pub mod netns;
pub mod ports;
pub mod sandbox;
