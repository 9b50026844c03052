//! nftables rules for bridge networks and published ports.
//!
//! Every runtime state root owns one table, `ip rcompose_<hash of the state root>`, so two
//! runtimes (or two tests) never touch each other's rules, and teardown deletes only
//! objects of that table. The table holds fixed base chains that dispatch through maps
//! keyed by interface name, plus three small chains per network:
//!
//! ```text
//! forward     (filter)  iifname vmap @fwd_in  -> in_<bridge>   traffic leaving a bridge
//!                       oifname vmap @fwd_out -> out_<bridge>  traffic entering a bridge
//! prerouting  (dstnat)  fib daddr type local jump published    from outside and containers
//! output      (dstnat)  fib daddr type local jump published    from the host (127.0.0.1 too)
//! published             dnat via @ports_one_* (host_ip . proto . port) or @ports_any_* (proto . port)
//! postrouting (srcnat)  127.0.0.0/8 into a bridge: masquerade  (route_localnet needs it)
//!                       DNATed bridge-to-bridge traffic: masquerade (hairpin)
//!                       iifname vmap @nat_from -> nat_<bridge> egress masquerade
//! ```
//!
//! Per network: `in_<bridge>` accepts traffic staying on the bridge, accepts published-port
//! traffic (`ct status dnat`), drops traffic towards another of our bridges (isolation) and
//! accepts the rest (egress); `out_<bridge>` accepts replies and published-port traffic and
//! drops anything else. An internal network accepts only traffic within its bridge and has
//! no masquerade. Adding is idempotent (one atomic `nft` batch that replaces the network's
//! objects); removing deletes only what exists and collects every error.
//!
//! Hosts where dockerd set the iptables `FORWARD` policy to DROP would drop our forwarded
//! traffic in their own base chain (an accept in our table cannot overrule a drop there),
//! so, like netavark, we then add `-i <bridge>` / `-o <bridge>` ACCEPT rules to that chain
//! with the `iptables` tool (a rule written by `nft` would break iptables-nft's own
//! parsing of the table), tagged with our table name, and delete them at teardown.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::lock::{lock_file, LockGuard, LockKind};

use super::ports::{PortForward, Protocol};

const FAMILY: &str = "ip";
const SET_BRIDGES: &str = "bridges";
const MAP_FWD_IN: &str = "fwd_in";
const MAP_FWD_OUT: &str = "fwd_out";
const MAP_NAT_FROM: &str = "nat_from";
const MAP_NAT_TO: &str = "nat_to";
/// Published ports on every host address: `proto . port` to the container's address
/// and to its port. Two maps with one value each, because nft 1.0.6 crashes on a JSON
/// `dnat` whose map yields an `address . port` concatenation.
const PORTS_ANY: PortMaps = PortMaps {
    addr: "ports_any_addr",
    port: "ports_any_port",
};
/// Published ports on one host address: `host_ip . proto . port`.
const PORTS_ONE: PortMaps = PortMaps {
    addr: "ports_one_addr",
    port: "ports_one_port",
};

#[derive(Debug, Clone, Copy)]
struct PortMaps {
    addr: &'static str,
    port: &'static str,
}
const CHAIN_PUBLISHED: &str = "published";
/// IFNAMSIZ minus the terminating NUL.
const MAX_IFNAME: usize = 15;

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("invalid bridge name {0:?}: use 1 to 15 characters from A-Z a-z 0-9 _ . -")]
    InvalidBridgeName(String),
    #[error("invalid subnet {addr}/{prefix_len}: the prefix length must be 0 to 32")]
    InvalidPrefix { addr: Ipv4Addr, prefix_len: u8 },
    #[error("invalid published port {host_ip}:{host_port}->{container_ip}:{container_port}/{protocol}: ports must not be 0 (reserve the host port first)")]
    InvalidForward {
        host_ip: Ipv4Addr,
        host_port: u16,
        container_ip: Ipv4Addr,
        container_port: u16,
        protocol: Protocol,
    },
    #[error("bridge {0} does not exist in this network namespace: create it before adding its firewall rules")]
    MissingBridge(String),
    #[error("cannot run {tool}: {source} (is the {package} package installed?)")]
    Spawn {
        tool: String,
        package: &'static str,
        source: io::Error,
    },
    #[error("{tool} failed to {action}: {stderr}")]
    Command {
        tool: String,
        action: String,
        stderr: String,
    },
    #[error("cannot read the nftables listing of table {table}: {reason}")]
    Listing { table: String, reason: String },
    #[error("cannot set {path}: {source}")]
    Sysctl { path: PathBuf, source: io::Error },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
}

/// Every error met while tearing down; teardown never stops at the first one.
#[derive(Debug, thiserror::Error)]
#[error("firewall teardown failed ({} error(s)): {}", .0.len(), join_errors(.0))]
pub struct TeardownErrors(pub Vec<FirewallError>);

fn join_errors(errors: &[FirewallError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the firewall needs to know about a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    /// The Linux bridge of the network (`rc-<hash>`).
    pub bridge: String,
    /// The network's IPv4 subnet (host bits are ignored).
    pub subnet: Ipv4Addr,
    pub prefix_len: u8,
    /// `internal: true`: nothing is forwarded in or out, only within the bridge.
    pub internal: bool,
}

/// The firewall of one runtime state root.
#[derive(Debug, Clone)]
pub struct Firewall {
    table: String,
    lock_path: PathBuf,
}

impl Firewall {
    /// The firewall of the runtime rooted at `state_root`. Touches nothing until used;
    /// the lock file lives at `<state_root>/networks/firewall.lock`.
    pub fn new(state_root: &Path) -> Firewall {
        Firewall {
            table: table_name_for(state_root),
            lock_path: state_root.join("networks").join("firewall.lock"),
        }
    }

    /// The nftables table (family `ip`) holding this state root's rules.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Installs (or replaces) the rules of a network whose bridge already exists in the
    /// calling thread's network namespace. Also turns on IPv4 forwarding and the bridge's
    /// `route_localnet` (published ports on 127.0.0.1).
    pub fn add_network(&self, net: &NetworkRules) -> Result<(), FirewallError> {
        validate_bridge(&net.bridge)?;
        if net.prefix_len > 32 {
            return Err(FirewallError::InvalidPrefix {
                addr: net.subnet,
                prefix_len: net.prefix_len,
            });
        }
        let _lock = self.lock()?;
        enable_forwarding(&net.bridge)?;
        let state = self.list_table()?.unwrap_or_default();
        let mut commands = skeleton(&self.table);
        if net.internal {
            commands.extend(delete_nat_commands(&self.table, &state, &net.bridge));
        }
        commands.extend(add_network_commands(&self.table, net));
        self.nft_apply(
            &commands,
            &format!("add the rules of bridge {}", net.bridge),
        )?;
        if forward_policy_is_drop()? {
            self.accept_in_iptables_forward(&net.bridge)?;
        }
        Ok(())
    }

    /// Removes a network's rules and its iptables FORWARD exceptions; deletes the whole
    /// table once no network and no published port is left. Missing objects are fine.
    pub fn remove_network(&self, bridge: &str) -> Result<(), TeardownErrors> {
        validate_bridge(bridge).map_err(|e| TeardownErrors(vec![e]))?;
        let _lock = self.lock().map_err(|e| TeardownErrors(vec![e]))?;
        let mut errors = self.remove_iptables_forward(Some(bridge));
        match self.list_table() {
            Ok(Some(mut state)) => {
                let commands = delete_network_commands(&self.table, &state, bridge);
                errors.extend(
                    self.nft_apply_each(&commands, &format!("remove the rules of bridge {bridge}")),
                );
                state.forget_network(bridge);
                errors.extend(self.delete_table_if_unused(&state));
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
        into_result(errors)
    }

    /// Forwards published ports to containers (DNAT). An existing entry for the same
    /// host address, port and protocol is replaced.
    pub fn add_port_forwards(&self, forwards: &[PortForward]) -> Result<(), FirewallError> {
        forwards.iter().try_for_each(validate_forward)?;
        let _lock = self.lock()?;
        let state = self.list_table()?.unwrap_or_default();
        let mut commands = skeleton(&self.table);
        for forward in forwards {
            let entry = ForwardEntry::of(forward);
            for (map, value) in entry.values() {
                match state.element_data(map, &entry.key) {
                    Some(existing) if *existing == value => continue,
                    Some(_) => commands.push(element_command(
                        "delete",
                        &self.table,
                        map,
                        entry.key.clone(),
                    )),
                    None => {}
                }
                let elem = json!([entry.key.clone(), value]);
                commands.push(element_command("add", &self.table, map, elem));
            }
        }
        self.nft_apply(&commands, "add published ports")
    }

    /// Stops forwarding published ports. Entries that are gone, or that now point at
    /// another container, are left alone.
    pub fn remove_port_forwards(&self, forwards: &[PortForward]) -> Result<(), TeardownErrors> {
        let _lock = self.lock().map_err(|e| TeardownErrors(vec![e]))?;
        let mut state = match self.list_table() {
            Ok(Some(state)) => state,
            Ok(None) => return Ok(()),
            Err(e) => return Err(TeardownErrors(vec![e])),
        };
        let mut commands = Vec::new();
        for forward in forwards {
            let entry = ForwardEntry::of(forward);
            let values = entry.values();
            if values
                .iter()
                .all(|(map, value)| state.element_data(map, &entry.key) == Some(value))
            {
                for (map, _) in values {
                    let key = entry.key.clone();
                    commands.push(element_command("delete", &self.table, map, key));
                    state.forget_element(map, &entry.key);
                }
            }
        }
        let mut errors = self.nft_apply_each(&commands, "remove published ports");
        errors.extend(self.delete_table_if_unused(&state));
        into_result(errors)
    }

    /// Deletes the whole table and every iptables FORWARD exception of this state root.
    pub fn remove_all(&self) -> Result<(), TeardownErrors> {
        let _lock = self.lock().map_err(|e| TeardownErrors(vec![e]))?;
        let mut errors = self.remove_iptables_forward(None);
        match self.list_table() {
            Ok(Some(_)) => {
                let delete = json!({"delete": {"table": table_ref(&self.table)}});
                if let Err(e) = self.nft_apply(&[delete], "delete the table") {
                    errors.push(e);
                }
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
        into_result(errors)
    }

    fn delete_table_if_unused(&self, state: &TableState) -> Vec<FirewallError> {
        if !state.is_unused() {
            return Vec::new();
        }
        let delete = json!({"delete": {"table": table_ref(&self.table)}});
        self.nft_apply(&[delete], "delete the empty table")
            .err()
            .into_iter()
            .collect()
    }

    /// Serialises changes to this state root's table across threads and processes.
    fn lock(&self) -> Result<LockGuard, FirewallError> {
        let lock_err = |source| FirewallError::Lock {
            path: self.lock_path.clone(),
            source,
        };
        if let Some(dir) = self.lock_path.parent() {
            fs::create_dir_all(dir).map_err(lock_err)?;
        }
        lock_file(&self.lock_path, LockKind::Exclusive).map_err(lock_err)
    }

    /// The table's sets, maps and chains, or `None` when the table does not exist.
    fn list_table(&self) -> Result<Option<TableState>, FirewallError> {
        let output = run_tool(
            "nft",
            &["-j", "list", "table", FAMILY, &self.table],
            None,
            "list the table",
        );
        match output {
            Ok(stdout) => {
                TableState::parse(&stdout)
                    .map(Some)
                    .map_err(|reason| FirewallError::Listing {
                        table: self.table.clone(),
                        reason,
                    })
            }
            Err(FirewallError::Command { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Applies all commands as one atomic transaction.
    fn nft_apply(&self, commands: &[Value], action: &str) -> Result<(), FirewallError> {
        if commands.is_empty() {
            return Ok(());
        }
        let body = json!({ "nftables": commands }).to_string();
        run_tool("nft", &["-j", "-f", "-"], Some(&body), action).map(drop)
    }

    /// Applies the commands atomically or, if that fails, one by one so that every
    /// command that can succeed does, and returns the errors of the others.
    fn nft_apply_each(&self, commands: &[Value], action: &str) -> Vec<FirewallError> {
        match self.nft_apply(commands, action) {
            Ok(()) => Vec::new(),
            Err(_) => commands
                .iter()
                .filter_map(|command| self.nft_apply(std::slice::from_ref(command), action).err())
                .collect(),
        }
    }

    /// The iptables FORWARD rules (without `-A FORWARD`) letting a bridge's traffic pass.
    fn iptables_accept_rules(&self, bridge: &str) -> [Vec<String>; 2] {
        ["-i", "-o"].map(|dir| {
            [
                dir,
                bridge,
                "-m",
                "comment",
                "--comment",
                &self.table,
                "-j",
                "ACCEPT",
            ]
            .map(String::from)
            .to_vec()
        })
    }

    fn accept_in_iptables_forward(&self, bridge: &str) -> Result<(), FirewallError> {
        let listing = iptables_forward_listing()?.unwrap_or_default();
        for rule in self.iptables_accept_rules(bridge) {
            if listing.contains(&iptables_listing_line(&rule)) {
                continue;
            }
            let mut args = vec!["-w", "-I", "FORWARD"];
            args.extend(rule.iter().map(String::as_str));
            run_tool(
                "iptables",
                &args,
                None,
                "accept the bridge's traffic in FORWARD",
            )?;
        }
        Ok(())
    }

    /// Deletes our FORWARD exceptions: those of `bridge`, or all of ours for `None`.
    fn remove_iptables_forward(&self, bridge: Option<&str>) -> Vec<FirewallError> {
        let listing = match iptables_forward_listing() {
            Ok(Some(listing)) => listing,
            Ok(None) => return Vec::new(),
            Err(e) => return vec![e],
        };
        let ours: Vec<Vec<String>> = match bridge {
            Some(bridge) => self.iptables_accept_rules(bridge).to_vec(),
            None => {
                // Each bridge has two lines; list its rules once.
                let bridges: BTreeSet<String> = listing
                    .iter()
                    .filter_map(|line| parse_our_iptables_line(line, &self.table))
                    .collect();
                bridges
                    .iter()
                    .flat_map(|bridge| self.iptables_accept_rules(bridge))
                    .collect()
            }
        };
        let mut errors = Vec::new();
        for rule in ours {
            if !listing.contains(&iptables_listing_line(&rule)) {
                continue;
            }
            let mut args = vec!["-w", "-D", "FORWARD"];
            args.extend(rule.iter().map(String::as_str));
            if let Err(e) = run_tool("iptables", &args, None, "remove a FORWARD exception") {
                errors.push(e);
            }
        }
        errors
    }
}

fn into_result(errors: Vec<FirewallError>) -> Result<(), TeardownErrors> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(TeardownErrors(errors))
    }
}

/// `rcompose_` and 12 hex digits of the state root's SHA-256.
fn table_name_for(state_root: &Path) -> String {
    let digest = Sha256::digest(state_root.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("rcompose_{hex}")
}

fn validate_bridge(name: &str) -> Result<(), FirewallError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty()
        || name.len() > MAX_IFNAME
        || !name.chars().all(valid_char)
        || name == "."
        || name == ".."
    {
        return Err(FirewallError::InvalidBridgeName(name.to_string()));
    }
    Ok(())
}

fn validate_forward(forward: &PortForward) -> Result<(), FirewallError> {
    if forward.host_port == 0 || forward.container_port == 0 {
        return Err(FirewallError::InvalidForward {
            host_ip: forward.host_ip,
            host_port: forward.host_port,
            container_ip: forward.container_ip,
            container_port: forward.container_port,
            protocol: forward.protocol,
        });
    }
    Ok(())
}

/// IPv4 forwarding for the namespace (as dockerd does) and `route_localnet` on the
/// bridge, without which the kernel drops 127.0.0.1-sourced packets routed to it.
fn enable_forwarding(bridge: &str) -> Result<(), FirewallError> {
    let conf = Path::new("/proc/sys/net/ipv4/conf").join(bridge);
    if !conf.exists() {
        return Err(FirewallError::MissingBridge(bridge.to_string()));
    }
    write_sysctl(Path::new("/proc/sys/net/ipv4/ip_forward"))?;
    write_sysctl(&conf.join("route_localnet"))
}

/// Sets a boolean sysctl to 1 unless it already is (a write needs privileges).
fn write_sysctl(path: &Path) -> Result<(), FirewallError> {
    let err = |source| FirewallError::Sysctl {
        path: path.to_path_buf(),
        source,
    };
    if fs::read_to_string(path).map_err(err)?.trim() == "1" {
        return Ok(());
    }
    fs::write(path, "1").map_err(err)
}

// ---- nftables JSON -------------------------------------------------------------------

fn table_ref(table: &str) -> Value {
    json!({"family": FAMILY, "name": table})
}

fn chain_ref(table: &str, chain: &str) -> Value {
    json!({"family": FAMILY, "table": table, "name": chain})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn test(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn verdict(name: &str) -> Value {
    json!({ name: null })
}

fn rule(table: &str, chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": FAMILY, "table": table, "chain": chain, "expr": expr}}})
}

fn element_command(op: &str, table: &str, set: &str, elem: Value) -> Value {
    json!({ op: {"element": {"family": FAMILY, "table": table, "name": set, "elem": [elem]}}})
}

fn base_chain(table: &str, name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {"family": FAMILY, "table": table, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"}}})
}

fn jump_to(chain: String) -> Value {
    json!({"jump": {"target": chain}})
}

fn chain_in(bridge: &str) -> String {
    format!("in_{bridge}")
}

fn chain_out(bridge: &str) -> String {
    format!("out_{bridge}")
}

fn chain_nat(bridge: &str) -> String {
    format!("nat_{bridge}")
}

/// The table, its sets and maps and its base chains with their fixed rules. Every
/// command is idempotent (`add` of an existing object is a no-op, base chains are
/// flushed before their rules are written again), so it heads every batch.
fn skeleton(table: &str) -> Vec<Value> {
    let set = |name: &str| json!({"add": {"set": {"family": FAMILY, "table": table, "name": name, "type": "ifname"}}});
    let map = |name: &str, key: Value, data: Value| json!({"add": {"map": {"family": FAMILY, "table": table, "name": name, "type": key, "map": data}}});
    let dnat_via = |key: Vec<Value>, maps: PortMaps| {
        let lookup =
            |map: &str| json!({"map": {"key": {"concat": key.clone()}, "data": format!("@{map}")}});
        json!({"dnat": {"family": FAMILY, "addr": lookup(maps.addr), "port": lookup(maps.port)}})
    };
    let daddr = json!({"payload": {"protocol": "ip", "field": "daddr"}});
    let saddr = json!({"payload": {"protocol": "ip", "field": "saddr"}});
    let l4proto = meta("l4proto");
    let dport = json!({"payload": {"protocol": "th", "field": "dport"}});
    let daddr_is_local = test(
        "==",
        json!({"fib": {"result": "type", "flags": ["daddr"]}}),
        json!("local"),
    );
    let bridges = json!(format!("@{SET_BRIDGES}"));
    let any_key = json!(["inet_proto", "inet_service"]);
    let one_key = json!(["ipv4_addr", "inet_proto", "inet_service"]);
    let vmap =
        |key: &str, map: &str| json!({"vmap": {"key": meta(key), "data": format!("@{map}")}});

    let mut commands = vec![
        json!({"add": {"table": table_ref(table)}}),
        set(SET_BRIDGES),
        map(MAP_FWD_IN, json!("ifname"), json!("verdict")),
        map(MAP_FWD_OUT, json!("ifname"), json!("verdict")),
        map(MAP_NAT_FROM, json!("ifname"), json!("verdict")),
        map(MAP_NAT_TO, json!("ifname"), json!("verdict")),
        map(PORTS_ANY.addr, any_key.clone(), json!("ipv4_addr")),
        map(PORTS_ANY.port, any_key, json!("inet_service")),
        map(PORTS_ONE.addr, one_key.clone(), json!("ipv4_addr")),
        map(PORTS_ONE.port, one_key, json!("inet_service")),
        json!({"add": {"chain": chain_ref(table, CHAIN_PUBLISHED)}}),
        base_chain(table, "forward", "filter", "forward", 0),
        base_chain(table, "prerouting", "nat", "prerouting", -100),
        base_chain(table, "output", "nat", "output", -100),
        base_chain(table, "postrouting", "nat", "postrouting", 100),
    ];
    for chain in [
        CHAIN_PUBLISHED,
        "forward",
        "prerouting",
        "output",
        "postrouting",
    ] {
        commands.push(json!({"flush": {"chain": chain_ref(table, chain)}}));
    }
    commands.extend([
        rule(table, "forward", vec![vmap("iifname", MAP_FWD_IN)]),
        rule(table, "forward", vec![vmap("oifname", MAP_FWD_OUT)]),
        rule(
            table,
            CHAIN_PUBLISHED,
            vec![dnat_via(
                vec![daddr, l4proto.clone(), dport.clone()],
                PORTS_ONE,
            )],
        ),
        rule(
            table,
            CHAIN_PUBLISHED,
            vec![dnat_via(vec![l4proto, dport], PORTS_ANY)],
        ),
        rule(
            table,
            "prerouting",
            vec![daddr_is_local.clone(), jump_to(CHAIN_PUBLISHED.into())],
        ),
        rule(
            table,
            "output",
            vec![daddr_is_local, jump_to(CHAIN_PUBLISHED.into())],
        ),
        // Host-originated 127.0.0.1 traffic DNATed into a bridge: the container must
        // answer to an address it can route back to.
        rule(
            table,
            "postrouting",
            vec![
                test("==", meta("oifname"), bridges),
                test(
                    "==",
                    saddr,
                    json!({"prefix": {"addr": "127.0.0.0", "len": 8}}),
                ),
                verdict("masquerade"),
            ],
        ),
        rule(table, "postrouting", vec![vmap("iifname", MAP_NAT_FROM)]),
        // By output interface too: with br_netfilter loaded, DNATed traffic between two
        // ports of one bridge is bridged and its postrouting hook has no input interface.
        rule(table, "postrouting", vec![vmap("oifname", MAP_NAT_TO)]),
    ]);
    commands
}

/// The network's chains (emptied and written again) and map entries; `add` of an
/// existing entry is a no-op, so nothing moves when the network is added again.
fn add_network_commands(table: &str, net: &NetworkRules) -> Vec<Value> {
    let bridge = net.bridge.as_str();
    let on_bridge = |key: &str| test("==", meta(key), json!(bridge));
    let is_dnat = test("in", json!({"ct": {"key": "status"}}), json!("dnat"));
    let (chain_in, chain_out, chain_nat) = (chain_in(bridge), chain_out(bridge), chain_nat(bridge));

    let add_empty_chain = |chain: &str| {
        [
            json!({"add": {"chain": chain_ref(table, chain)}}),
            json!({"flush": {"chain": chain_ref(table, chain)}}),
        ]
    };
    let mut commands: Vec<Value> = [&chain_in, &chain_out]
        .into_iter()
        .flat_map(|chain| add_empty_chain(chain))
        .collect();
    commands.extend([rule(
        table,
        &chain_in,
        vec![on_bridge("oifname"), verdict("accept")],
    )]);
    if net.internal {
        commands.extend([
            rule(table, &chain_in, vec![verdict("drop")]),
            rule(table, &chain_out, vec![verdict("drop")]),
        ]);
    } else {
        let to_our_bridge = test("==", meta("oifname"), json!(format!("@{SET_BRIDGES}")));
        let reply = test(
            "in",
            json!({"ct": {"key": "state"}}),
            json!(["established", "related"]),
        );
        let subnet =
            json!({"prefix": {"addr": network_address(net).to_string(), "len": net.prefix_len}});
        let saddr = json!({"payload": {"protocol": "ip", "field": "saddr"}});
        commands.extend([
            rule(table, &chain_in, vec![is_dnat.clone(), verdict("accept")]),
            rule(table, &chain_in, vec![to_our_bridge, verdict("drop")]),
            rule(table, &chain_in, vec![verdict("accept")]),
            rule(table, &chain_out, vec![reply, verdict("accept")]),
            rule(table, &chain_out, vec![is_dnat.clone(), verdict("accept")]),
            rule(table, &chain_out, vec![verdict("drop")]),
        ]);
        commands.extend(add_empty_chain(&chain_nat));
        commands.extend([
            // Egress.
            rule(
                table,
                &chain_nat,
                vec![
                    test("==", saddr.clone(), subnet.clone()),
                    test("!=", meta("oifname"), json!(bridge)),
                    verdict("masquerade"),
                ],
            ),
            // Hairpin: a container reaching a published port (its own or a neighbour's)
            // through a host address must see the answer come back through the host.
            rule(
                table,
                &chain_nat,
                vec![test("==", saddr, subnet), is_dnat, verdict("masquerade")],
            ),
            element_command(
                "add",
                table,
                MAP_NAT_FROM,
                json!([bridge, jump_to(chain_nat.clone())]),
            ),
            element_command(
                "add",
                table,
                MAP_NAT_TO,
                json!([bridge, jump_to(chain_nat)]),
            ),
        ]);
    }
    commands.extend([
        element_command("add", table, SET_BRIDGES, json!(bridge)),
        element_command("add", table, MAP_FWD_IN, json!([bridge, jump_to(chain_in)])),
        element_command(
            "add",
            table,
            MAP_FWD_OUT,
            json!([bridge, jump_to(chain_out)]),
        ),
    ]);
    commands
}

fn network_address(net: &NetworkRules) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(net.prefix_len))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(net.subnet) & mask)
}

/// Deletes whatever the table holds for `bridge`: map entries first, since a chain
/// that a map entry jumps to cannot be deleted.
fn delete_network_commands(table: &str, state: &TableState, bridge: &str) -> Vec<Value> {
    let key = json!(bridge);
    let mut commands: Vec<Value> = [
        MAP_NAT_FROM,
        MAP_NAT_TO,
        MAP_FWD_IN,
        MAP_FWD_OUT,
        SET_BRIDGES,
    ]
    .into_iter()
    .filter(|set| state.element_data(set, &key).is_some())
    .map(|set| element_command("delete", table, set, key.clone()))
    .collect();
    for chain in [chain_in(bridge), chain_out(bridge), chain_nat(bridge)] {
        if state.chains.contains(&chain) {
            commands.push(json!({"delete": {"chain": chain_ref(table, &chain)}}));
        }
    }
    commands
}

/// Deletes a network's masquerade (when it becomes internal).
fn delete_nat_commands(table: &str, state: &TableState, bridge: &str) -> Vec<Value> {
    let key = json!(bridge);
    let mut commands: Vec<Value> = [MAP_NAT_FROM, MAP_NAT_TO]
        .into_iter()
        .filter(|map| state.element_data(map, &key).is_some())
        .map(|map| element_command("delete", table, map, key.clone()))
        .collect();
    let chain = chain_nat(bridge);
    if state.chains.contains(&chain) {
        commands.push(json!({"delete": {"chain": chain_ref(table, &chain)}}));
    }
    commands
}

/// A published port's DNAT entries: one key, looked up in an address map and a port map.
struct ForwardEntry {
    maps: PortMaps,
    key: Value,
    container_ip: Value,
    container_port: Value,
}

impl ForwardEntry {
    fn of(forward: &PortForward) -> ForwardEntry {
        let proto = forward.protocol.as_str();
        let (maps, key) = if forward.host_ip.is_unspecified() {
            (PORTS_ANY, json!({"concat": [proto, forward.host_port]}))
        } else {
            let host_ip = forward.host_ip.to_string();
            (
                PORTS_ONE,
                json!({"concat": [host_ip, proto, forward.host_port]}),
            )
        };
        ForwardEntry {
            maps,
            key,
            container_ip: json!(forward.container_ip.to_string()),
            container_port: json!(forward.container_port),
        }
    }

    fn values(&self) -> [(&'static str, Value); 2] {
        [
            (self.maps.addr, self.container_ip.clone()),
            (self.maps.port, self.container_port.clone()),
        ]
    }
}

/// What `nft -j list table` shows: chain names and each set's or map's elements
/// (for a map, `[key, value]` pairs).
#[derive(Debug, Default)]
struct TableState {
    chains: BTreeSet<String>,
    elements: BTreeMap<String, Vec<Value>>,
}

impl TableState {
    fn parse(listing: &str) -> Result<TableState, String> {
        let root: Value = serde_json::from_str(listing).map_err(|e| e.to_string())?;
        let objects = root
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or("no \"nftables\" array")?;
        let mut state = TableState::default();
        for object in objects {
            if let Some(name) = object.pointer("/chain/name").and_then(Value::as_str) {
                state.chains.insert(name.to_string());
            }
            let set = object.get("set").or_else(|| object.get("map"));
            if let Some(name) = set.and_then(|s| s.get("name")).and_then(Value::as_str) {
                let elems = set
                    .and_then(|s| s.get("elem"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                state.elements.insert(name.to_string(), elems);
            }
        }
        Ok(state)
    }

    /// For a map, the value stored under `key`; for a set, the element itself.
    fn element_data(&self, set: &str, key: &Value) -> Option<&Value> {
        self.elements
            .get(set)?
            .iter()
            .find_map(|elem| match elem.as_array() {
                Some(pair) if pair.first() == Some(key) => pair.get(1),
                _ if elem == key => Some(elem),
                _ => None,
            })
    }

    fn forget_element(&mut self, set: &str, key: &Value) {
        if let Some(elems) = self.elements.get_mut(set) {
            elems
                .retain(|elem| elem != key && elem.as_array().and_then(|p| p.first()) != Some(key));
        }
    }

    fn forget_network(&mut self, bridge: &str) {
        let key = json!(bridge);
        for set in [
            MAP_NAT_FROM,
            MAP_NAT_TO,
            MAP_FWD_IN,
            MAP_FWD_OUT,
            SET_BRIDGES,
        ] {
            self.forget_element(set, &key);
        }
    }

    /// No network and no published port left.
    fn is_unused(&self) -> bool {
        [SET_BRIDGES, PORTS_ANY.addr, PORTS_ONE.addr]
            .iter()
            .all(|set| self.elements.get(*set).is_none_or(Vec::is_empty))
    }
}

// ---- iptables FORWARD workaround -------------------------------------------------------

/// Whether the iptables FORWARD chain drops by default (dockerd sets this). Listing does
/// not create the filter table, so hosts without one stay untouched.
fn forward_policy_is_drop() -> Result<bool, FirewallError> {
    Ok(iptables_forward_listing()?
        .unwrap_or_default()
        .iter()
        .any(|line| line == "-P FORWARD DROP"))
}

/// `iptables -S FORWARD`, or `None` when iptables is not installed.
fn iptables_forward_listing() -> Result<Option<Vec<String>>, FirewallError> {
    match run_tool(
        "iptables",
        &["-w", "-S", "FORWARD"],
        None,
        "list the FORWARD chain",
    ) {
        Ok(stdout) => Ok(Some(stdout.lines().map(|l| unquoted(l.trim())).collect())),
        Err(FirewallError::Spawn { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// How `iptables -S` prints one of our rules, without the quotes it puts around some
/// comments (compare with [`unquoted`] listing lines).
fn iptables_listing_line(rule: &[String]) -> String {
    format!("-A FORWARD {}", rule.join(" "))
}

fn unquoted(line: &str) -> String {
    line.replace('"', "")
}

/// The bridge of a FORWARD line that is one of our exceptions for `table`.
fn parse_our_iptables_line(line: &str, table: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["-A", "FORWARD", "-i" | "-o", bridge, "-m", "comment", "--comment", comment, "-j", "ACCEPT"]
            if *comment == table =>
        {
            Some((*bridge).to_string())
        }
        _ => None,
    }
}

// ---- running tools ---------------------------------------------------------------------

/// Finds a tool in PATH or the sbin directories (which a non-login PATH may lack).
fn tool_path(tool: &str) -> PathBuf {
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_dirs)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(tool))
}

/// Runs a tool (with `stdin` fed if given) and returns its stdout, or its stderr as
/// the error.
fn run_tool(
    tool: &str,
    args: &[&str],
    stdin: Option<&str>,
    action: &str,
) -> Result<String, FirewallError> {
    let package = if tool == "nft" {
        "nftables"
    } else {
        "iptables"
    };
    let spawn_err = |source| FirewallError::Spawn {
        tool: tool.to_string(),
        package,
        source,
    };
    let mut child = Command::new(tool_path(tool))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // nft reads all of stdin before it answers, so writing first cannot deadlock.
        pipe.write_all(input.as_bytes()).map_err(spawn_err)?;
    }
    let output = child.wait_with_output().map_err(spawn_err)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(FirewallError::Command {
            tool: tool.to_string(),
            action: action.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(bridge: &str, internal: bool) -> NetworkRules {
        NetworkRules {
            bridge: bridge.into(),
            subnet: Ipv4Addr::new(10, 213, 7, 9),
            prefix_len: 24,
            internal,
        }
    }

    #[test]
    fn table_name_depends_on_the_state_root_only() {
        let a = Firewall::new(Path::new("/var/lib/rcompose"));
        let b = Firewall::new(Path::new("/tmp/other"));
        assert_eq!(
            a.table_name(),
            Firewall::new(Path::new("/var/lib/rcompose")).table_name()
        );
        assert_ne!(a.table_name(), b.table_name());
        assert!(a.table_name().starts_with("rcompose_"));
        assert_eq!(a.table_name().len(), "rcompose_".len() + 12);
    }

    #[test]
    fn bridge_names_are_checked() {
        for good in ["rc-0123456789ab", "br0", "a.b_c-d"] {
            assert!(validate_bridge(good).is_ok(), "{good}");
        }
        for bad in ["", "rc-0123456789abc", "a b", "x;drop", "..", "é"] {
            let err = validate_bridge(bad).unwrap_err();
            assert!(
                err.to_string().contains("invalid bridge name"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn zero_ports_are_refused() {
        let forward = PortForward {
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 0,
            protocol: Protocol::Tcp,
            container_ip: Ipv4Addr::new(10, 213, 7, 2),
            container_port: 80,
        };
        let err = validate_forward(&forward).unwrap_err();
        assert!(
            err.to_string().contains("reserve the host port first"),
            "{err}"
        );
    }

    #[test]
    fn network_address_masks_host_bits() {
        assert_eq!(
            network_address(&net("b", false)),
            Ipv4Addr::new(10, 213, 7, 0)
        );
        let mut all = net("b", false);
        all.prefix_len = 0;
        assert_eq!(network_address(&all), Ipv4Addr::UNSPECIFIED);
        all.prefix_len = 32;
        assert_eq!(network_address(&all), Ipv4Addr::new(10, 213, 7, 9));
    }

    #[test]
    fn internal_network_has_no_masquerade_and_drops_both_ways() {
        let commands = add_network_commands("t", &net("rc-int", true));
        let text = serde_json::to_string(&commands).unwrap();
        assert!(!text.contains("masquerade"));
        assert!(!text.contains(MAP_NAT_FROM));
        let rules_of = |chain: &str| -> Vec<&Value> {
            commands
                .iter()
                .filter(|c| c.pointer("/add/rule/chain") == Some(&json!(chain)))
                .collect()
        };
        assert_eq!(rules_of("in_rc-int").len(), 2);
        assert_eq!(rules_of("out_rc-int").len(), 1);
        assert_eq!(
            rules_of("out_rc-int")[0].pointer("/add/rule/expr/0"),
            Some(&json!({"drop": null}))
        );
    }

    #[test]
    fn external_network_masquerades_its_subnet_leaving_other_interfaces() {
        let commands = add_network_commands("t", &net("rc-ext", false));
        let nat = commands
            .iter()
            .find(|c| c.pointer("/add/rule/chain") == Some(&json!("nat_rc-ext")))
            .expect("nat rule");
        let expr = nat.pointer("/add/rule/expr").unwrap();
        assert_eq!(
            expr[0]["match"]["right"],
            json!({"prefix": {"addr": "10.213.7.0", "len": 24}})
        );
        assert_eq!(expr[1]["match"]["op"], json!("!="));
        assert_eq!(expr[2], json!({"masquerade": null}));
    }

    fn listing(addrs: &str, ports: &str) -> TableState {
        TableState::parse(&format!(
            r#"{{"nftables": [{{"metainfo": {{"version": "1.0.6"}}}},
            {{"table": {{"family": "ip", "name": "t", "handle": 1}}}},
            {{"set": {{"family": "ip", "name": "bridges", "table": "t", "type": "ifname", "elem": ["rc-a"]}}}},
            {{"map": {{"family": "ip", "name": "fwd_in", "table": "t", "type": "ifname", "map": "verdict",
               "elem": [["rc-a", {{"jump": {{"target": "in_rc-a"}}}}]]}}}},
            {{"map": {{"family": "ip", "name": "ports_any_addr", "table": "t", "type": ["inet_proto", "inet_service"],
               "map": "ipv4_addr"{addrs}}}}},
            {{"map": {{"family": "ip", "name": "ports_any_port", "table": "t", "type": ["inet_proto", "inet_service"],
               "map": "inet_service"{ports}}}}},
            {{"chain": {{"family": "ip", "table": "t", "name": "in_rc-a", "handle": 3}}}}]}}"#
        ))
        .expect("listing parses")
    }

    #[test]
    fn listing_is_parsed_into_chains_and_elements() {
        let state = listing(
            r#", "elem": [[{"concat": ["tcp", 8080]}, "10.213.7.2"]]"#,
            r#", "elem": [[{"concat": ["tcp", 8080]}, 80]]"#,
        );
        assert!(state.chains.contains("in_rc-a"));
        assert_eq!(
            state.element_data(SET_BRIDGES, &json!("rc-a")),
            Some(&json!("rc-a"))
        );
        assert_eq!(
            state.element_data(MAP_FWD_IN, &json!("rc-a")),
            Some(&json!({"jump": {"target": "in_rc-a"}}))
        );
        let forward = PortForward {
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 8080,
            protocol: Protocol::Tcp,
            container_ip: Ipv4Addr::new(10, 213, 7, 2),
            container_port: 80,
        };
        let entry = ForwardEntry::of(&forward);
        for (map, value) in entry.values() {
            assert_eq!(state.element_data(map, &entry.key), Some(&value));
        }
        assert!(!state.is_unused());
        assert!(TableState::parse("not json").is_err());
        assert!(TableState::parse("{}").is_err());
    }

    #[test]
    fn removal_deletes_only_what_exists_entries_before_chains() {
        let mut state = listing("", "");
        let commands = delete_network_commands("t", &state, "rc-a");
        let ops: Vec<String> = commands
            .iter()
            .map(|c| {
                let (op, body) = c.as_object().unwrap().iter().next().unwrap();
                let (kind, obj) = body.as_object().unwrap().iter().next().unwrap();
                format!("{op} {kind} {}", obj["name"].as_str().unwrap())
            })
            .collect();
        assert_eq!(
            ops,
            [
                "delete element fwd_in",
                "delete element bridges",
                "delete chain in_rc-a"
            ]
        );
        assert!(delete_network_commands("t", &state, "rc-b").is_empty());
        state.forget_network("rc-a");
        assert!(state.is_unused());
    }

    #[test]
    fn iptables_lines_round_trip() {
        let fw = Firewall::new(Path::new("/x"));
        let [inbound, outbound] = fw.iptables_accept_rules("rc-a");
        let line = iptables_listing_line(&inbound);
        assert_eq!(
            line,
            format!(
                "-A FORWARD -i rc-a -m comment --comment {} -j ACCEPT",
                fw.table_name()
            )
        );
        assert_eq!(
            parse_our_iptables_line(&line, fw.table_name()),
            Some("rc-a".to_string())
        );
        assert_eq!(
            parse_our_iptables_line(&iptables_listing_line(&outbound), fw.table_name()),
            Some("rc-a".to_string())
        );
        assert_eq!(parse_our_iptables_line(&line, "rcompose_other"), None);
        assert_eq!(
            parse_our_iptables_line("-A FORWARD -j DOCKER-USER", fw.table_name()),
            None
        );
    }

    #[test]
    fn teardown_errors_list_every_error() {
        let errors = TeardownErrors(vec![
            FirewallError::MissingBridge("rc-a".into()),
            FirewallError::InvalidBridgeName("".into()),
        ]);
        let text = errors.to_string();
        assert!(
            text.starts_with("firewall teardown failed (2 error(s)): bridge rc-a does not exist"),
            "{text}"
        );
        assert!(text.contains("; invalid bridge name \"\""), "{text}");
    }
}
