//! The service dependency graph: which service must start before which.
//!
//! Services are nodes; every `depends_on` entry is an edge from a service to the service it
//! depends on. The graph knows names only, so the loader (to reject cycles and undefined
//! services) and the orchestrator (to order start, stop and parallel waves) share it without
//! depending on the model types.
//!
//! Every answer is deterministic: whenever the edges leave a choice, services come in the
//! order they were declared.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;
use petgraph::Direction;

/// One `depends_on` entry of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependency<'a> {
    /// The service depended on.
    pub service: &'a str,
    /// `required: false` lets the dependency be absent, e.g. disabled by a profile.
    pub required: bool,
}

impl<'a> Dependency<'a> {
    /// A dependency that must exist (the Compose default).
    pub fn required(service: &'a str) -> Self {
        Self {
            service,
            required: true,
        }
    }

    /// A dependency that is dropped when the service is not in the project.
    pub fn optional(service: &'a str) -> Self {
        Self {
            service,
            required: false,
        }
    }
}

/// Why a set of services does not form a usable dependency graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// `path` starts and ends at the same service and follows `depends_on` edges.
    #[error("dependency cycle detected: {}", .path.join(" -> "))]
    Cycle { path: Vec<String> },
    #[error("service {service:?} depends on undefined service {dependency:?}")]
    UnknownDependency { service: String, dependency: String },
    #[error("service {service:?} is declared more than once")]
    DuplicateService { service: String },
}

/// Node ids are declaration positions, so ordering by id is ordering by declaration.
type NodeId = usize;

/// An acyclic `depends_on` graph over a project's services.
#[derive(Debug, Clone)]
pub struct ServiceGraph {
    /// Service names in declaration order; a name's position is its node id.
    names: Vec<String>,
    ids: HashMap<String, NodeId>,
    /// Edge `a -> b` means `a` depends on `b`.
    graph: DiGraphMap<NodeId, ()>,
    /// Start order, computed once since construction must sort anyway to find cycles.
    order: Vec<NodeId>,
}

impl ServiceGraph {
    /// Builds the graph from `(name, dependencies)` pairs in declaration order.
    ///
    /// A dependency on a service that is not in the list is an error when required and is
    /// dropped when not. Undefined services are reported before cycles.
    pub fn new<'a, I, D>(services: I) -> Result<Self, GraphError>
    where
        I: IntoIterator<Item = (&'a str, D)>,
        D: IntoIterator<Item = Dependency<'a>>,
    {
        let mut names = Vec::new();
        let mut ids = HashMap::new();
        let mut declared_deps = Vec::new();
        for (name, deps) in services {
            if ids.insert(name.to_owned(), names.len()).is_some() {
                return Err(GraphError::DuplicateService {
                    service: name.to_owned(),
                });
            }
            names.push(name.to_owned());
            declared_deps.push(deps.into_iter().collect::<Vec<_>>());
        }

        let graph = build_edges(&names, &ids, &declared_deps)?;
        let order = topological_order(&graph, names.len()).ok_or_else(|| GraphError::Cycle {
            path: shortest_cycle(&graph)
                .into_iter()
                .filter_map(|id| names.get(id).cloned())
                .collect(),
        })?;
        Ok(Self {
            names,
            ids,
            graph,
            order,
        })
    }

    /// Services with their dependencies first; ties keep declaration order.
    pub fn start_order(&self) -> Vec<&str> {
        self.names_of(self.order.iter().copied())
    }

    /// Services with their dependents first: the reverse of [`Self::start_order`].
    pub fn stop_order(&self) -> Vec<&str> {
        self.names_of(self.order.iter().rev().copied())
    }

    /// Waves of services that can start in parallel: every service sits one wave after its
    /// latest dependency. Each wave keeps declaration order.
    pub fn levels(&self) -> Vec<Vec<&str>> {
        let mut level_of = vec![0usize; self.names.len()];
        let mut waves: Vec<Vec<NodeId>> = Vec::new();
        for &id in &self.order {
            // Start order guarantees every dependency's level is already final.
            let level = self
                .graph
                .neighbors_directed(id, Direction::Outgoing)
                .filter_map(|dep| level_of.get(dep).map(|l| l + 1))
                .max()
                .unwrap_or(0);
            if let Some(slot) = level_of.get_mut(id) {
                *slot = level;
            }
            if waves.len() <= level {
                waves.resize_with(level + 1, Vec::new);
            }
            if let Some(wave) = waves.get_mut(level) {
                wave.push(id);
            }
        }
        waves
            .into_iter()
            .map(|mut wave| {
                wave.sort_unstable();
                self.names_of(wave)
            })
            .collect()
    }

    /// The services `service` depends on directly, in declaration order. Empty for an
    /// unknown service.
    pub fn dependencies_of(&self, service: &str) -> Vec<&str> {
        self.direct_neighbors(service, Direction::Outgoing)
    }

    /// The services depending directly on `service`, in declaration order. Empty for an
    /// unknown service.
    pub fn dependents_of(&self, service: &str) -> Vec<&str> {
        self.direct_neighbors(service, Direction::Incoming)
    }

    /// `selected` plus everything they depend on, transitively, in start order (what
    /// `up web` must start). Unknown names are ignored; the caller validates them.
    pub fn with_dependencies(&self, selected: &[&str]) -> Vec<&str> {
        self.closure_in_start_order(selected, Direction::Outgoing)
    }

    /// `selected` plus everything depending on them, transitively, in start order (what
    /// `stop db` must stop; reverse it to stop). Unknown names are ignored.
    pub fn with_dependents(&self, selected: &[&str]) -> Vec<&str> {
        self.closure_in_start_order(selected, Direction::Incoming)
    }

    fn names_of(&self, ids: impl IntoIterator<Item = NodeId>) -> Vec<&str> {
        ids.into_iter()
            .filter_map(|id| self.names.get(id).map(String::as_str))
            .collect()
    }

    fn direct_neighbors(&self, service: &str, direction: Direction) -> Vec<&str> {
        let Some(&id) = self.ids.get(service) else {
            return Vec::new();
        };
        let mut neighbors: Vec<NodeId> = self.graph.neighbors_directed(id, direction).collect();
        neighbors.sort_unstable();
        self.names_of(neighbors)
    }

    fn closure_in_start_order(&self, selected: &[&str], direction: Direction) -> Vec<&str> {
        let mut reached = vec![false; self.names.len()];
        let mut stack: Vec<NodeId> = selected
            .iter()
            .filter_map(|name| self.ids.get(*name).copied())
            .collect();
        while let Some(id) = stack.pop() {
            match reached.get_mut(id) {
                Some(seen) if !*seen => *seen = true,
                _ => continue,
            }
            stack.extend(self.graph.neighbors_directed(id, direction));
        }
        let in_closure = |id: &NodeId| reached.get(*id).copied().unwrap_or(false);
        self.names_of(self.order.iter().copied().filter(in_closure))
    }
}

/// Adds one node per service and one edge per dependency that exists.
fn build_edges(
    names: &[String],
    ids: &HashMap<String, NodeId>,
    declared_deps: &[Vec<Dependency<'_>>],
) -> Result<DiGraphMap<NodeId, ()>, GraphError> {
    let edge_count = declared_deps.iter().map(Vec::len).sum();
    let mut graph = DiGraphMap::with_capacity(names.len(), edge_count);
    for id in 0..names.len() {
        graph.add_node(id);
    }
    for ((from, name), deps) in names.iter().enumerate().zip(declared_deps) {
        for dep in deps {
            match ids.get(dep.service) {
                Some(&to) => {
                    graph.add_edge(from, to, ());
                }
                None if dep.required => {
                    return Err(GraphError::UnknownDependency {
                        service: name.clone(),
                        dependency: dep.service.to_owned(),
                    })
                }
                None => {}
            }
        }
    }
    Ok(graph)
}

/// Kahn's algorithm, always taking the earliest-declared ready service, so the result is
/// the declaration-order-preferring topological order. `None` when a cycle blocks it.
fn topological_order(graph: &DiGraphMap<NodeId, ()>, node_count: usize) -> Option<Vec<NodeId>> {
    let mut unmet: Vec<usize> = (0..node_count)
        .map(|id| graph.neighbors_directed(id, Direction::Outgoing).count())
        .collect();
    let mut ready: BinaryHeap<Reverse<NodeId>> = unmet
        .iter()
        .enumerate()
        .filter(|(_, &count)| count == 0)
        .map(|(id, _)| Reverse(id))
        .collect();
    let mut order = Vec::with_capacity(node_count);
    while let Some(Reverse(id)) = ready.pop() {
        order.push(id);
        for dependent in graph.neighbors_directed(id, Direction::Incoming) {
            if let Some(count) = unmet.get_mut(dependent) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    ready.push(Reverse(dependent));
                }
            }
        }
    }
    (order.len() == node_count).then_some(order)
}

/// The shortest cycle of a graph known to have one, as node ids starting and ending at the
/// same node. Among equally short cycles the one through the earliest-declared service
/// wins, and the path starts there, so the error message is stable run to run.
fn shortest_cycle(graph: &DiGraphMap<NodeId, ()>) -> Vec<NodeId> {
    let component_of = component_ids(graph);
    let mut best: Option<Vec<NodeId>> = None;
    let mut starts: Vec<NodeId> = graph.nodes().collect();
    starts.sort_unstable();
    for start in starts {
        let limit = best.as_ref().map_or(usize::MAX, Vec::len);
        if let Some(cycle) = shortest_cycle_through(graph, &component_of, start, limit) {
            best = Some(cycle);
        }
    }
    best.unwrap_or_default()
}

/// Maps each node to its strongly connected component: cycles never leave one.
fn component_ids(graph: &DiGraphMap<NodeId, ()>) -> HashMap<NodeId, usize> {
    tarjan_scc(graph)
        .into_iter()
        .enumerate()
        .flat_map(|(component, members)| members.into_iter().map(move |id| (id, component)))
        .collect()
}

/// Breadth-first search from `start` back to itself within its component. Only returns a
/// cycle whose path (both ends counted) is shorter than `limit`.
fn shortest_cycle_through(
    graph: &DiGraphMap<NodeId, ()>,
    component_of: &HashMap<NodeId, usize>,
    start: NodeId,
    limit: usize,
) -> Option<Vec<NodeId>> {
    let component = component_of.get(&start);
    let mut parent: HashMap<NodeId, NodeId> = HashMap::new();
    let mut depth: HashMap<NodeId, usize> = HashMap::from([(start, 0)]);
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let node_depth = depth.get(&node).copied().unwrap_or(0);
        // A cycle closing after this node has node_depth + 2 path entries.
        if node_depth + 2 >= limit {
            return None;
        }
        let mut next: Vec<NodeId> = graph
            .neighbors_directed(node, Direction::Outgoing)
            .filter(|n| component_of.get(n) == component)
            .collect();
        next.sort_unstable();
        for neighbor in next {
            if neighbor == start {
                return Some(path_back_to(&parent, start, node));
            }
            if let Entry::Vacant(unseen) = depth.entry(neighbor) {
                unseen.insert(node_depth + 1);
                parent.insert(neighbor, node);
                queue.push_back(neighbor);
            }
        }
    }
    None
}

/// Rebuilds `start -> ... -> last -> start` from BFS parent links.
fn path_back_to(parent: &HashMap<NodeId, NodeId>, start: NodeId, last: NodeId) -> Vec<NodeId> {
    let mut path = vec![start];
    let mut node = last;
    while node != start {
        path.push(node);
        match parent.get(&node) {
            Some(&up) => node = up,
            None => break,
        }
    }
    path.push(start);
    // Collected as start, last, ..., first-step, start: the middle runs backwards.
    let end = path.len() - 1;
    path[1..end].reverse();
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a graph from `("svc", &["dep", ...])` with every dependency required.
    fn graph(services: &[(&'static str, &[&'static str])]) -> Result<ServiceGraph, GraphError> {
        ServiceGraph::new(services.iter().map(|(name, deps)| {
            (
                *name,
                deps.iter()
                    .map(|d| Dependency::required(d))
                    .collect::<Vec<_>>(),
            )
        }))
    }

    fn cycle_message(services: &[(&'static str, &[&'static str])]) -> String {
        match graph(services) {
            Err(err @ GraphError::Cycle { .. }) => err.to_string(),
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn no_dependencies_keep_declaration_order() {
        let g = graph(&[("web", &[]), ("db", &[]), ("cache", &[])]).unwrap();
        assert_eq!(g.start_order(), ["web", "db", "cache"]);
        assert_eq!(g.stop_order(), ["cache", "db", "web"]);
        assert_eq!(g.levels(), vec![vec!["web", "db", "cache"]]);
    }

    #[test]
    fn empty_project_has_empty_orders() {
        let g = graph(&[]).unwrap();
        assert!(g.start_order().is_empty());
        assert!(g.stop_order().is_empty());
        assert!(g.levels().is_empty());
    }

    #[test]
    fn dependency_declared_later_starts_first() {
        let g = graph(&[("web", &["db"]), ("db", &[])]).unwrap();
        assert_eq!(g.start_order(), ["db", "web"]);
        assert_eq!(g.stop_order(), ["web", "db"]);
    }

    #[test]
    fn chain_starts_from_its_end() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["d"]), ("d", &[])]).unwrap();
        assert_eq!(g.start_order(), ["d", "c", "b", "a"]);
        assert_eq!(g.levels(), vec![vec!["d"], vec!["c"], vec!["b"], vec!["a"]]);
    }

    #[test]
    fn diamond_orders_and_levels() {
        let g = graph(&[
            ("app", &["api", "worker"]),
            ("api", &["db"]),
            ("worker", &["db"]),
            ("db", &[]),
        ])
        .unwrap();
        assert_eq!(g.start_order(), ["db", "api", "worker", "app"]);
        assert_eq!(g.stop_order(), ["app", "worker", "api", "db"]);
        assert_eq!(
            g.levels(),
            vec![vec!["db"], vec!["api", "worker"], vec!["app"]]
        );
        assert_eq!(g.dependencies_of("app"), ["api", "worker"]);
        assert_eq!(g.dependents_of("db"), ["api", "worker"]);
    }

    #[test]
    fn ties_prefer_the_earliest_declared_ready_service() {
        // `web` waits for `db`; `proxy` is free and declared after `web`, before `db`.
        let g = graph(&[("web", &["db"]), ("proxy", &[]), ("db", &[])]).unwrap();
        assert_eq!(g.start_order(), ["proxy", "db", "web"]);
        assert_eq!(g.levels(), vec![vec!["proxy", "db"], vec!["web"]]);
    }

    #[test]
    fn levels_place_a_service_after_its_latest_dependency() {
        let g = graph(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("d", &["a", "c"]),
            ("e", &["a"]),
        ])
        .unwrap();
        assert_eq!(
            g.levels(),
            vec![vec!["a"], vec!["b", "e"], vec!["c"], vec!["d"]]
        );
    }

    #[test]
    fn every_dependency_starts_before_its_dependent() {
        let g = graph(&[
            ("f", &["e", "b"]),
            ("e", &["d"]),
            ("d", &["a"]),
            ("c", &["a", "b"]),
            ("b", &[]),
            ("a", &["b"]),
        ])
        .unwrap();
        let order = g.start_order();
        let position = |s: &str| order.iter().position(|o| *o == s).unwrap();
        for service in ["a", "b", "c", "d", "e", "f"] {
            for dep in g.dependencies_of(service) {
                assert!(position(dep) < position(service), "{dep} before {service}");
            }
        }
    }

    #[test]
    fn repeated_dependency_counts_once() {
        let g = graph(&[("web", &["db", "db"]), ("db", &[])]).unwrap();
        assert_eq!(g.dependencies_of("web"), ["db"]);
        assert_eq!(g.start_order(), ["db", "web"]);
    }

    #[test]
    fn direct_neighbours_are_in_declaration_order_and_unknown_is_empty() {
        let g = graph(&[("a", &[]), ("b", &[]), ("web", &["b", "a"])]).unwrap();
        assert_eq!(g.dependencies_of("web"), ["a", "b"]);
        assert_eq!(g.dependents_of("a"), ["web"]);
        assert!(g.dependencies_of("a").is_empty());
        assert!(g.dependencies_of("nope").is_empty());
        assert!(g.dependents_of("nope").is_empty());
    }

    #[test]
    fn with_dependencies_is_the_transitive_closure_in_start_order() {
        let g = graph(&[
            ("web", &["api"]),
            ("api", &["db", "cache"]),
            ("db", &[]),
            ("cache", &[]),
            ("admin", &["db"]),
        ])
        .unwrap();
        assert_eq!(g.with_dependencies(&["web"]), ["db", "cache", "api", "web"]);
        assert_eq!(g.with_dependencies(&["admin"]), ["db", "admin"]);
        assert_eq!(
            g.with_dependencies(&["cache", "admin"]),
            ["db", "cache", "admin"]
        );
        assert_eq!(g.with_dependencies(&["db", "db"]), ["db"]);
        assert!(g.with_dependencies(&[]).is_empty());
        assert_eq!(g.with_dependencies(&["ghost", "db"]), ["db"]);
    }

    #[test]
    fn with_dependents_is_the_reverse_closure_in_start_order() {
        let g = graph(&[
            ("web", &["api"]),
            ("api", &["db", "cache"]),
            ("db", &[]),
            ("cache", &[]),
            ("admin", &["db"]),
        ])
        .unwrap();
        assert_eq!(g.with_dependents(&["db"]), ["db", "api", "web", "admin"]);
        assert_eq!(g.with_dependents(&["cache"]), ["cache", "api", "web"]);
        assert_eq!(g.with_dependents(&["web"]), ["web"]);
        assert!(g.with_dependents(&["ghost"]).is_empty());
    }

    #[test]
    fn missing_required_dependency_is_an_error() {
        let err = graph(&[("web", &["db"])]).unwrap_err();
        assert_eq!(
            err,
            GraphError::UnknownDependency {
                service: "web".into(),
                dependency: "db".into()
            }
        );
        assert_eq!(
            err.to_string(),
            r#"service "web" depends on undefined service "db""#
        );
    }

    #[test]
    fn missing_optional_dependency_is_dropped() {
        let g = ServiceGraph::new([
            (
                "web",
                vec![Dependency::optional("db"), Dependency::required("cache")],
            ),
            ("cache", vec![]),
        ])
        .unwrap();
        assert_eq!(g.dependencies_of("web"), ["cache"]);
        assert_eq!(g.start_order(), ["cache", "web"]);
    }

    #[test]
    fn present_optional_dependency_still_orders_startup() {
        let g =
            ServiceGraph::new([("web", vec![Dependency::optional("db")]), ("db", vec![])]).unwrap();
        assert_eq!(g.start_order(), ["db", "web"]);
    }

    #[test]
    fn undefined_service_is_reported_before_a_cycle() {
        let err = graph(&[("a", &["b"]), ("b", &["a", "ghost"])]).unwrap_err();
        assert!(matches!(err, GraphError::UnknownDependency { .. }), "{err}");
    }

    #[test]
    fn duplicate_service_is_an_error() {
        let err = graph(&[("web", &[]), ("web", &[])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"service "web" is declared more than once"#
        );
    }

    #[test]
    fn self_dependency_is_a_cycle_of_one() {
        assert_eq!(
            cycle_message(&[("web", &[]), ("a", &["a"])]),
            "dependency cycle detected: a -> a"
        );
    }

    #[test]
    fn cycle_of_two() {
        assert_eq!(
            cycle_message(&[("web", &["db"]), ("db", &["web"])]),
            "dependency cycle detected: web -> db -> web"
        );
    }

    #[test]
    fn cycle_of_three_follows_dependency_direction() {
        assert_eq!(
            cycle_message(&[("s1", &["s2"]), ("s2", &["s3"]), ("s3", &["s1"])]),
            "dependency cycle detected: s1 -> s2 -> s3 -> s1"
        );
    }

    #[test]
    fn cycle_path_starts_at_the_earliest_declared_member() {
        assert_eq!(
            cycle_message(&[("s3", &["s1"]), ("s1", &["s2"]), ("s2", &["s3"])]),
            "dependency cycle detected: s3 -> s1 -> s2 -> s3"
        );
    }

    #[test]
    fn smallest_cycle_is_reported() {
        // A 3-cycle a -> b -> c -> a and a 2-cycle c <-> d; the 2-cycle wins.
        assert_eq!(
            cycle_message(&[
                ("a", &["b"]),
                ("b", &["c"]),
                ("c", &["a", "d"]),
                ("d", &["c"]),
            ]),
            "dependency cycle detected: c -> d -> c"
        );
    }

    #[test]
    fn self_loop_beats_a_longer_cycle_declared_first() {
        assert_eq!(
            cycle_message(&[("a", &["b"]), ("b", &["a"]), ("z", &["z"])]),
            "dependency cycle detected: z -> z"
        );
    }

    #[test]
    fn equal_cycles_report_the_earliest_declared_one() {
        assert_eq!(
            cycle_message(&[("x", &["y"]), ("y", &["x"]), ("a", &["b"]), ("b", &["a"]),]),
            "dependency cycle detected: x -> y -> x"
        );
    }

    #[test]
    fn cycle_behind_an_acyclic_service_is_found() {
        let err = graph(&[("web", &["api"]), ("api", &["db"]), ("db", &["api"])]).unwrap_err();
        assert_eq!(
            err,
            GraphError::Cycle {
                path: vec!["api".into(), "db".into(), "api".into()]
            }
        );
    }

    #[test]
    fn cycle_report_is_deterministic() {
        let services: &[(&str, &[&str])] = &[
            ("a", &["b", "c"]),
            ("b", &["d"]),
            ("c", &["d"]),
            ("d", &["a"]),
        ];
        let first = cycle_message(services);
        assert_eq!(first, "dependency cycle detected: a -> b -> d -> a");
        for _ in 0..20 {
            assert_eq!(cycle_message(services), first);
        }
    }

    #[test]
    fn orders_are_deterministic_across_builds() {
        let services: &[(&str, &[&str])] = &[
            ("w1", &["db"]),
            ("w2", &["db", "mq"]),
            ("mq", &[]),
            ("db", &[]),
            ("w3", &["mq"]),
        ];
        let first = graph(services).unwrap();
        assert_eq!(first.start_order(), ["mq", "db", "w1", "w2", "w3"]);
        for _ in 0..20 {
            let again = graph(services).unwrap();
            assert_eq!(again.start_order(), first.start_order());
            assert_eq!(again.levels(), first.levels());
        }
    }

    #[test]
    fn large_project_orders_quickly_and_correctly() {
        let names: Vec<String> = (0..5000).map(|i| format!("svc{i}")).collect();
        let services = names.iter().enumerate().map(|(i, name)| {
            let deps: Vec<Dependency<'_>> = [i / 2, i / 3]
                .into_iter()
                .filter(|&d| d < i)
                .filter_map(|d| names.get(d))
                .map(|d| Dependency::required(d))
                .collect();
            (name.as_str(), deps)
        });
        let g = ServiceGraph::new(services).unwrap();
        let order = g.start_order();
        assert_eq!(order.len(), 5000);
        assert_eq!(order.first(), Some(&"svc0"));
        assert_eq!(g.stop_order().last(), Some(&"svc0"));
    }
}
