//! The records the embedded DNS servers answer from, for every network, and each
//! container's resolver options (its own upstreams and search domains).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::DnsError;

/// Longest DNS name (RFC 1035) and label.
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// One container's entry on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// The container the record belongs to; also how the asker of a query is identified.
    pub container_id: String,
    /// The container's address on this network.
    pub ipv4: Ipv4Addr,
    /// The container's name: answered for A queries and given back for PTR queries.
    pub name: String,
    /// Other names answered for A queries: the service name (shared by every replica),
    /// network aliases, the hostname.
    pub aliases: Vec<String>,
}

/// What a container's own resolver configuration says (Compose `dns`, `dns_search`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolverOptions {
    /// Servers that names not known locally are forwarded to for this container; empty
    /// means the server's defaults (the host's resolvers).
    pub upstreams: Vec<SocketAddr>,
    /// Search domains of the container: `web.<domain>` is answered like `web`.
    pub search_domains: Vec<String>,
}

/// A record as stored: names normalised (lower case, no trailing dot), deduplicated.
#[derive(Debug, Clone)]
struct Entry {
    record: DnsRecord,
    names: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct State {
    networks: BTreeMap<String, Vec<Entry>>,
    resolvers: HashMap<String, ResolverOptions>,
}

/// The shared registry of DNS records; cheap to query, safe to share between the
/// servers of all networks (`Arc<DnsRegistry>`). Changes apply to the next query.
#[derive(Debug, Default)]
pub struct DnsRegistry {
    state: RwLock<State>,
    /// Rotates the order of multi-address answers so replicas share the load.
    rotation: AtomicUsize,
}

/// The containers a query comes from and the networks they can see.
struct Asker<'a> {
    container_ids: BTreeSet<&'a str>,
    /// Networks in lookup order: the one the query arrived on first.
    networks: Vec<&'a str>,
}

impl DnsRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `record` to `network`, replacing the container's previous record there.
    pub fn add(&self, network: &str, record: DnsRecord) -> Result<(), DnsError> {
        if network.trim().is_empty() {
            return Err(DnsError::InvalidRecord("the network name is empty"));
        }
        if record.container_id.trim().is_empty() {
            return Err(DnsError::InvalidRecord("the container id is empty"));
        }
        let names = normalized_names(&record)?;
        let mut state = self.write();
        let entries = state.networks.entry(network.to_string()).or_default();
        entries.retain(|entry| entry.record.container_id != record.container_id);
        entries.push(Entry { record, names });
        Ok(())
    }

    /// Removes the container's record from `network`; tells whether there was one.
    pub fn remove(&self, network: &str, container_id: &str) -> bool {
        let mut state = self.write();
        let Some(entries) = state.networks.get_mut(network) else {
            return false;
        };
        let before = entries.len();
        entries.retain(|entry| entry.record.container_id != container_id);
        let removed = entries.len() != before;
        if entries.is_empty() {
            state.networks.remove(network);
        }
        removed
    }

    /// Removes the container from every network and forgets its resolver options;
    /// returns how many records were removed.
    pub fn remove_container(&self, container_id: &str) -> usize {
        let mut state = self.write();
        state.resolvers.remove(container_id);
        let mut removed = 0;
        for entries in state.networks.values_mut() {
            let before = entries.len();
            entries.retain(|entry| entry.record.container_id != container_id);
            removed += before - entries.len();
        }
        state.networks.retain(|_, entries| !entries.is_empty());
        removed
    }

    /// Removes every record of `network`; tells whether it had any.
    pub fn remove_network(&self, network: &str) -> bool {
        self.write().networks.remove(network).is_some()
    }

    /// Sets the container's own upstreams and search domains (replacing earlier ones).
    pub fn set_resolver_options(&self, container_id: &str, options: ResolverOptions) {
        let options = ResolverOptions {
            upstreams: options.upstreams,
            search_domains: options
                .search_domains
                .iter()
                .map(|domain| normalize(domain))
                .filter(|domain| !domain.is_empty())
                .collect(),
        };
        let mut state = self.write();
        if options == ResolverOptions::default() {
            // Nothing of its own: the server's defaults apply; no entry to keep.
            state.resolvers.remove(container_id);
        } else {
            state.resolvers.insert(container_id.to_string(), options);
        }
    }

    /// The records of `network`, in the order they were added.
    pub fn records(&self, network: &str) -> Vec<DnsRecord> {
        self.read()
            .networks
            .get(network)
            .map(|entries| entries.iter().map(|entry| entry.record.clone()).collect())
            .unwrap_or_default()
    }

    /// Addresses for `name` as seen by the container at `asker` (query received on the
    /// server of network `via`): `None` when the name is not a local one for this asker.
    /// Addresses come from the first network (the query's own first) that knows the name,
    /// rotated on every call.
    pub(crate) fn resolve_a(&self, asker: IpAddr, via: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        let state = self.read();
        let asker = state.asker(asker, via)?;
        let name = normalize(name);
        let search = state.search_domains(&asker);
        let mut addresses = candidates(&name, &search)
            .into_iter()
            .find_map(|(label, network)| state.addresses_of(&asker, &label, network.as_deref()))?;
        let len = addresses.len();
        addresses.rotate_left(self.rotation.fetch_add(1, Ordering::Relaxed) % len);
        Some(addresses)
    }

    /// Fully qualified names (`<container name>.<network>`) for `ip` as seen by the asker:
    /// `None` when no container the asker can see has that address.
    pub(crate) fn resolve_ptr(
        &self,
        asker: IpAddr,
        via: &str,
        ip: Ipv4Addr,
    ) -> Option<Vec<String>> {
        let state = self.read();
        let asker = state.asker(asker, via)?;
        let names: Vec<String> = asker
            .networks
            .iter()
            .flat_map(|network| {
                state
                    .entries(network)
                    .filter(move |entry| entry.record.ipv4 == ip)
                    .map(move |entry| format!("{}.{network}", normalize(&entry.record.name)))
            })
            .collect();
        (!names.is_empty()).then_some(names)
    }

    /// The asker's own upstreams, if it has any.
    pub(crate) fn upstreams_for(&self, asker: IpAddr) -> Option<Vec<SocketAddr>> {
        let state = self.read();
        let asker = state.asker(asker, "")?;
        asker
            .container_ids
            .iter()
            .filter_map(|id| state.resolvers.get(*id))
            .find(|options| !options.upstreams.is_empty())
            .map(|options| options.upstreams.clone())
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated (every
        // update is a single map operation), so a poisoned lock is still usable.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn entries<'a>(&'a self, network: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.networks.get(network).into_iter().flatten()
    }

    /// Identifies the containers that own `source` and the networks they are on.
    fn asker(&self, source: IpAddr, via: &str) -> Option<Asker<'_>> {
        let source = match source {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => ip.to_ipv4_mapped()?,
        };
        let container_ids: BTreeSet<&str> = self
            .networks
            .values()
            .flatten()
            .filter(|entry| entry.record.ipv4 == source)
            .map(|entry| entry.record.container_id.as_str())
            .collect();
        if container_ids.is_empty() {
            return None;
        }
        let mut networks: Vec<&str> = self
            .networks
            .iter()
            .filter(|(_, entries)| {
                entries
                    .iter()
                    .any(|entry| container_ids.contains(entry.record.container_id.as_str()))
            })
            .map(|(network, _)| network.as_str())
            .collect();
        if let Some(position) = networks.iter().position(|network| *network == via) {
            networks[..=position].rotate_right(1);
        }
        Some(Asker {
            container_ids,
            networks,
        })
    }

    fn search_domains(&self, asker: &Asker<'_>) -> Vec<String> {
        asker
            .container_ids
            .iter()
            .filter_map(|id| self.resolvers.get(*id))
            .flat_map(|options| options.search_domains.iter().cloned())
            .collect()
    }

    /// Addresses of `label` on the first of the asker's networks that has it (only on
    /// `network` when the query named one), deduplicated in insertion order.
    fn addresses_of(
        &self,
        asker: &Asker<'_>,
        label: &str,
        network: Option<&str>,
    ) -> Option<Vec<Ipv4Addr>> {
        asker
            .networks
            .iter()
            .filter(|candidate| network.is_none_or(|wanted| wanted == **candidate))
            .find_map(|candidate| {
                let mut addresses: Vec<Ipv4Addr> = Vec::new();
                for entry in self
                    .entries(candidate)
                    .filter(|entry| entry.names.contains(label))
                {
                    if !addresses.contains(&entry.record.ipv4) {
                        addresses.push(entry.record.ipv4);
                    }
                }
                (!addresses.is_empty()).then_some(addresses)
            })
    }
}

/// Lower case, surrounding blanks and the trailing root dot removed.
pub(crate) fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The (name, network) pairs a query name may mean, most specific first: the name
/// itself on any network; `name.network` as Docker allows (`web.myproject_default`);
/// `label.<search domain>` for a single label (what a resolver sends after applying
/// the container's search list).
fn candidates(name: &str, search_domains: &[String]) -> Vec<(String, Option<String>)> {
    let mut candidates = vec![(name.to_string(), None)];
    for (index, _) in name.match_indices('.') {
        let (label, network) = (&name[..index], &name[index + 1..]);
        candidates.push((label.to_string(), Some(network.to_string())));
    }
    for domain in search_domains {
        if let Some(label) = name
            .strip_suffix(domain.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
        {
            if !label.is_empty() && !label.contains('.') {
                candidates.push((label.to_string(), None));
            }
        }
    }
    candidates
}

fn normalized_names(record: &DnsRecord) -> Result<BTreeSet<String>, DnsError> {
    std::iter::once(&record.name)
        .chain(&record.aliases)
        .map(|name| {
            let normalized = normalize(name);
            validate_name(&normalized).map_err(|reason| DnsError::InvalidName {
                container_id: record.container_id.clone(),
                name: name.clone(),
                reason,
            })?;
            Ok(normalized)
        })
        .collect()
}

/// DNS names we can answer: letters, digits, `-`, `_`, dots between non-empty labels.
fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("a DNS name has at most 253 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("only letters, digits, '-', '_' and '.' are allowed");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("a name cannot start with a dot or contain two dots in a row");
        }
        if label.len() > MAX_LABEL_LEN {
            return Err("each dot-separated part has at most 63 characters");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, ip: [u8; 4], name: &str, aliases: &[&str]) -> DnsRecord {
        DnsRecord {
            container_id: id.to_string(),
            ipv4: Ipv4Addr::from(ip),
            name: name.to_string(),
            aliases: aliases.iter().map(|alias| alias.to_string()).collect(),
        }
    }

    fn ip(octets: [u8; 4]) -> IpAddr {
        IpAddr::from(octets)
    }

    /// front: web-1 (10.213.1.2), web-2 (10.213.1.3); back: db (10.213.2.2);
    /// app is on both (10.213.1.4 and 10.213.2.3).
    fn sample() -> DnsRegistry {
        let registry = DnsRegistry::new();
        let add = |network: &str, record: DnsRecord| registry.add(network, record).unwrap();
        add(
            "front",
            record("w1", [10, 213, 1, 2], "proj-web-1", &["web"]),
        );
        add(
            "front",
            record("w2", [10, 213, 1, 3], "proj-web-2", &["web"]),
        );
        add(
            "back",
            record("db", [10, 213, 2, 2], "proj-db-1", &["db", "database"]),
        );
        add(
            "front",
            record("app", [10, 213, 1, 4], "proj-app-1", &["app"]),
        );
        add(
            "back",
            record("app", [10, 213, 2, 3], "proj-app-1", &["app"]),
        );
        registry
    }

    fn sorted(mut addresses: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
        addresses.sort();
        addresses
    }

    #[test]
    fn names_resolve_only_for_containers_sharing_a_network() {
        let registry = sample();
        let web1 = ip([10, 213, 1, 2]);
        assert_eq!(
            registry.resolve_a(web1, "front", "proj-web-2"),
            Some(vec![Ipv4Addr::new(10, 213, 1, 3)])
        );
        assert_eq!(registry.resolve_a(web1, "front", "db"), None);
        // app is on both networks and sees db, from either of its addresses.
        let db = Some(vec![Ipv4Addr::new(10, 213, 2, 2)]);
        assert_eq!(registry.resolve_a(ip([10, 213, 1, 4]), "front", "db"), db);
        assert_eq!(
            registry.resolve_a(ip([10, 213, 2, 3]), "back", "database"),
            db
        );
        // An address nobody owns sees nothing local.
        assert_eq!(
            registry.resolve_a(ip([10, 213, 1, 99]), "front", "web"),
            None
        );
    }

    #[test]
    fn a_service_name_gives_every_replica_in_rotating_order() {
        let registry = sample();
        let asker = ip([10, 213, 1, 4]);
        let first = registry.resolve_a(asker, "front", "web").unwrap();
        let second = registry.resolve_a(asker, "front", "web").unwrap();
        let both = vec![Ipv4Addr::new(10, 213, 1, 2), Ipv4Addr::new(10, 213, 1, 3)];
        assert_eq!(sorted(first.clone()), both);
        assert_eq!(sorted(second.clone()), both);
        assert_ne!(first[0], second[0], "consecutive answers rotate the order");
    }

    #[test]
    fn names_match_case_insensitively_with_or_without_the_root_dot() {
        let registry = sample();
        let asker = ip([10, 213, 1, 2]);
        let expected = Some(vec![Ipv4Addr::new(10, 213, 1, 4)]);
        assert_eq!(registry.resolve_a(asker, "front", "APP"), expected);
        assert_eq!(registry.resolve_a(asker, "front", "Proj-App-1."), expected);
    }

    #[test]
    fn name_dot_network_and_search_domains_resolve() {
        let registry = sample();
        let app = ip([10, 213, 1, 4]);
        assert_eq!(
            registry.resolve_a(app, "front", "db.back"),
            Some(vec![Ipv4Addr::new(10, 213, 2, 2)])
        );
        // A network qualifier only works for networks the asker is on.
        assert_eq!(
            registry.resolve_a(ip([10, 213, 1, 2]), "front", "app.back"),
            None,
            "web-1 is not on back"
        );
        assert_eq!(registry.resolve_a(app, "front", "db.corp.example"), None);
        registry.set_resolver_options(
            "app",
            ResolverOptions {
                upstreams: Vec::new(),
                search_domains: vec!["Corp.Example.".to_string()],
            },
        );
        assert_eq!(
            registry.resolve_a(app, "front", "db.corp.example"),
            Some(vec![Ipv4Addr::new(10, 213, 2, 2)])
        );
        // Only single labels are taken from a search-domain name.
        assert_eq!(registry.resolve_a(app, "front", "x.db.corp.example"), None);
    }

    #[test]
    fn the_network_a_query_arrives_on_is_searched_first() {
        let registry = sample();
        // app is "app" on both networks: the answer is the address on the query's network.
        let app_on_back = ip([10, 213, 2, 3]);
        assert_eq!(
            registry.resolve_a(app_on_back, "back", "app"),
            Some(vec![Ipv4Addr::new(10, 213, 2, 3)])
        );
        assert_eq!(
            registry.resolve_a(app_on_back, "front", "app"),
            Some(vec![Ipv4Addr::new(10, 213, 1, 4)])
        );
    }

    #[test]
    fn removal_takes_effect_at_once() {
        let registry = sample();
        let asker = ip([10, 213, 1, 4]);
        assert!(registry.remove("front", "w2"));
        assert!(!registry.remove("front", "w2"), "already gone");
        assert_eq!(
            registry.resolve_a(asker, "front", "web"),
            Some(vec![Ipv4Addr::new(10, 213, 1, 2)])
        );
        assert_eq!(registry.remove_container("app"), 2);
        assert_eq!(
            registry.resolve_a(asker, "front", "web"),
            None,
            "app's address is unknown now"
        );
        assert!(registry.remove_network("back"));
        assert!(registry.records("back").is_empty());
    }

    #[test]
    fn adding_a_container_again_replaces_its_record() {
        let registry = sample();
        registry
            .add(
                "front",
                record("w1", [10, 213, 1, 9], "proj-web-1", &["web"]),
            )
            .unwrap();
        let addresses: Vec<Ipv4Addr> = registry.records("front").iter().map(|r| r.ipv4).collect();
        assert!(addresses.contains(&Ipv4Addr::new(10, 213, 1, 9)));
        assert!(!addresses.contains(&Ipv4Addr::new(10, 213, 1, 2)));
    }

    #[test]
    fn ptr_gives_the_container_name_qualified_by_network() {
        let registry = sample();
        let asker = ip([10, 213, 1, 2]);
        assert_eq!(
            registry.resolve_ptr(asker, "front", Ipv4Addr::new(10, 213, 1, 3)),
            Some(vec!["proj-web-2.front".to_string()])
        );
        assert_eq!(
            registry.resolve_ptr(asker, "front", Ipv4Addr::new(10, 213, 2, 2)),
            None
        );
    }

    #[test]
    fn upstreams_come_from_the_askers_options() {
        let registry = sample();
        let upstream: SocketAddr = "192.0.2.53:53".parse().unwrap();
        assert_eq!(registry.upstreams_for(ip([10, 213, 2, 2])), None);
        registry.set_resolver_options(
            "db",
            ResolverOptions {
                upstreams: vec![upstream],
                search_domains: Vec::new(),
            },
        );
        assert_eq!(
            registry.upstreams_for(ip([10, 213, 2, 2])),
            Some(vec![upstream])
        );
        assert_eq!(registry.upstreams_for(ip([10, 213, 1, 2])), None);
    }

    #[test]
    fn invalid_records_are_refused_with_the_reason() {
        let registry = DnsRegistry::new();
        let error = registry
            .add("front", record("c1", [10, 213, 1, 2], "bad name", &[]))
            .unwrap_err();
        assert!(
            error.to_string().contains("only letters, digits"),
            "{error}"
        );
        let error = registry
            .add("front", record("c1", [10, 213, 1, 2], "ok", &["a..b"]))
            .unwrap_err();
        assert!(error.to_string().contains("two dots"), "{error}");
        let long = "x".repeat(64);
        assert!(registry
            .add("front", record("c1", [10, 213, 1, 2], &long, &[]))
            .is_err());
        assert!(registry
            .add("", record("c1", [10, 213, 1, 2], "ok", &[]))
            .is_err());
        assert!(registry
            .add("front", record(" ", [10, 213, 1, 2], "ok", &[]))
            .is_err());
        assert!(registry.records("front").is_empty(), "nothing was added");
    }
}
