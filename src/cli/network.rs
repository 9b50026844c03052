//! `rcompose network ...` on the embedded engine's networks, as `docker network` drives
//! Docker's: create, ls, inspect, rm, prune. The state root is the global `--root`;
//! bridges and firewall rules are made in this process's network namespace.
//!
//! Networks are named by name, full id or a unique id prefix, as Docker allows, so
//! `rcompose network rm $(rcompose network ls -q)` works. `-f` is the global `--file`,
//! so force is `--force` only (as for `volume rm`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Subcommand;
use rcompose_runtime::network::ipam::Subnet;
use rcompose_runtime::network::link::DEFAULT_MTU;
use rcompose_runtime::network::manager::{
    Endpoint, IpamRequest, NetworkError, NetworkManager, NetworkOptions, NetworkRecord,
};
use rcompose_runtime::volume::LabelFilter;
use sha2::{Digest, Sha256};

use super::common::{
    confirm, key_values, label_filter, parse_bool_filter, split_filter, ListFormat,
};
use super::{GlobalOptions, EXIT_FAILURE};
use crate::ui;

/// The one driver option the embedded bridge driver takes.
const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// The smallest MTU IPv4 allows (RFC 791) and the largest a link takes.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;
/// Every network here is a local bridge.
const DRIVER: &str = "bridge";
const SCOPE: &str = "local";
/// `NETWORK ID` shows the id cut to this length, as Docker's `stringid.TruncateID`.
const SHORT_ID_LEN: usize = 12;
/// The last second `humantime` (RFC 3339) can print: 9999-12-31T23:59:59Z.
const LAST_PRINTABLE_SECOND: u64 = 253_402_300_799;

const PRUNE_WARNING: &str = "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ";

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on networks, as JSON
    Inspect {
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
    /// Remove networks; a network with connected containers is never removed
    #[command(alias = "remove")]
    Rm {
        /// Do not fail on networks that do not exist
        #[arg(long)]
        force: bool,
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
    /// Remove all networks no container is connected to
    Prune {
        /// Do not prompt for confirmation
        #[arg(long)]
        force: bool,
        /// Filter values (label=KEY[=VALUE], label!=KEY[=VALUE], until=24h|TIMESTAMP)
        #[arg(long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
    },
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct CreateArgs {
    #[arg(value_name = "NETWORK")]
    name: String,
    /// Driver to manage the network (only "bridge")
    #[arg(short, long, default_value = DRIVER)]
    driver: String,
    /// Driver options (com.docker.network.driver.mtu=N), repeatable
    #[arg(short, long = "opt", value_name = "KEY=VALUE")]
    opts: Vec<String>,
    /// Metadata for the network, repeatable
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Subnet in CIDR format (default: a free one from the address pools)
    #[arg(long, value_name = "CIDR")]
    subnet: Option<String>,
    /// Gateway address of the subnet (default: its first address)
    #[arg(long, value_name = "IP")]
    gateway: Option<String>,
    /// Allocate container addresses from this part of the subnet
    #[arg(long = "ip-range", value_name = "CIDR")]
    ip_range: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only display network IDs
    #[arg(short, long)]
    quiet: bool,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Do not truncate the output
    #[arg(long)]
    no_trunc: bool,
    /// Filter values (label=..., label!=..., name=..., id=..., driver=..., scope=...,
    /// type=custom|builtin, dangling=true|false)
    #[arg(long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
}

/// Mistakes in what was asked, named as Docker names them.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetworkCliError {
    #[error("No such network: {0}")]
    NoSuchNetwork(String),
    #[error("network {reference} is ambiguous ({count} matches found based on ID prefix)")]
    Ambiguous { reference: String, count: usize },
    #[error("network with name {0} already exists")]
    AlreadyExists(String),
    #[error("error while removing network: network {name} has active endpoints ({endpoints})")]
    ActiveEndpoints { name: String, endpoints: String },
    #[error("network {network}: invalid --{flag} {value:?}: {reason}")]
    InvalidAddress {
        network: String,
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("network {network}: every ip-range or gateway must have a corresponding subnet")]
    MissingSubnet { network: String },
    #[error("network {network}: driver option {key:?} is not supported by the embedded bridge driver (only {MTU_OPTION})")]
    UnsupportedOption { network: String, key: String },
    #[error("network {network}: invalid {MTU_OPTION} {value:?}: expected a whole number from 68 to 65535")]
    InvalidMtu { network: String, value: String },
}

pub fn run(global: &GlobalOptions, command: &NetworkCommand) -> anyhow::Result<u8> {
    let manager = NetworkManager::open(&global.root)
        .with_context(|| format!("opening the network store under {}", global.root.display()))?;
    match command {
        NetworkCommand::Create(args) => create(&manager, args),
        NetworkCommand::Ls(args) => list(&manager, args),
        NetworkCommand::Inspect { names } => inspect(&manager, names),
        NetworkCommand::Rm { force, names } => remove(&manager, names, *force),
        NetworkCommand::Prune { force, filters } => prune(&manager, *force, filters),
    }
}

// ---------------------------------------------------------------------------------
// create

fn create(manager: &NetworkManager, args: &CreateArgs) -> anyhow::Result<u8> {
    let options = network_options(args)?;
    // The manager reuses an identical network (what `up` wants); a user creating
    // one by hand is told it exists, as by Docker.
    match manager.inspect(&options.name) {
        Ok(_) => return Err(NetworkCliError::AlreadyExists(options.name).into()),
        Err(NetworkError::NotFound(_) | NetworkError::InvalidName(_)) => {}
        Err(err) => return Err(err.into()),
    }
    let record = manager.create(&options)?;
    println!("{}", record.id);
    Ok(0)
}

/// The manager's request from `network create`'s flags.
fn network_options(args: &CreateArgs) -> anyhow::Result<NetworkOptions> {
    let network = &args.name;
    let mut options = NetworkOptions {
        name: network.clone(),
        driver: Some(args.driver.clone()),
        internal: args.internal,
        labels: key_values(&args.labels, "label")?,
        mtu: None,
        ipam: ipam_request(args)?,
    };
    for (key, value) in key_values(&args.opts, "option")? {
        if key != MTU_OPTION {
            return Err(NetworkCliError::UnsupportedOption {
                network: network.clone(),
                key,
            }
            .into());
        }
        options.mtu = Some(parse_mtu(network, &value)?);
    }
    Ok(options)
}

fn parse_mtu(network: &str, value: &str) -> Result<u32, NetworkCliError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|mtu| MTU_RANGE.contains(mtu))
        .ok_or_else(|| NetworkCliError::InvalidMtu {
            network: network.to_string(),
            value: value.to_string(),
        })
}

/// `--subnet`, `--gateway`, `--ip-range`; whether the last two lie inside the
/// subnet is the address manager's check.
fn ipam_request(args: &CreateArgs) -> Result<Option<IpamRequest>, NetworkCliError> {
    let network = &args.name;
    let Some(subnet) = &args.subnet else {
        if args.gateway.is_some() || args.ip_range.is_some() {
            return Err(NetworkCliError::MissingSubnet {
                network: network.clone(),
            });
        }
        return Ok(None);
    };
    let invalid =
        |flag: &'static str, value: &str, reason: String| NetworkCliError::InvalidAddress {
            network: network.clone(),
            flag,
            value: value.to_string(),
            reason,
        };
    let subnet: Subnet =
        subnet
            .parse()
            .map_err(|e: rcompose_runtime::network::ipam::SubnetParseError| {
                invalid("subnet", subnet, e.to_string())
            })?;
    let gateway = match &args.gateway {
        Some(text) => Some(
            text.parse::<Ipv4Addr>()
                .map_err(|e| invalid("gateway", text, e.to_string()))?,
        ),
        None => None,
    };
    let ip_range = match &args.ip_range {
        Some(text) => Some(
            text.parse::<Subnet>()
                .map_err(|e| invalid("ip-range", text, e.to_string()))?,
        ),
        None => None,
    };
    Ok(Some(IpamRequest {
        subnet,
        gateway,
        ip_range,
    }))
}

// ---------------------------------------------------------------------------------
// ls

/// Docker's `network ls --filter` terms: different keys must all match, several
/// values of one key (but `label`) are alternatives.
#[derive(Debug, Default)]
struct ListFilter {
    labels: Vec<LabelFilter>,
    names: Vec<String>,
    ids: Vec<String>,
    drivers: Vec<String>,
    scopes: Vec<String>,
    /// `type=custom` → true, `type=builtin` → false; every network here is custom.
    custom: Vec<bool>,
    /// `Some(true)`: networks no container is connected to.
    dangling: Option<bool>,
}

impl ListFilter {
    fn parse(terms: &[String]) -> anyhow::Result<ListFilter> {
        let mut filter = ListFilter::default();
        for term in terms {
            let (key, value) = split_filter(term)?;
            if let Some(label) = label_filter(key, value) {
                filter.labels.push(label);
                continue;
            }
            match key {
                "name" => filter.names.push(value.to_string()),
                "id" => filter.ids.push(value.to_string()),
                "driver" => filter.drivers.push(value.to_string()),
                "scope" => filter.scopes.push(value.to_string()),
                "type" => filter.custom.push(match value {
                    "custom" => true,
                    "builtin" => false,
                    _ => bail!("invalid filter {term:?}: expected custom or builtin"),
                }),
                "dangling" => filter.dangling = Some(parse_bool_filter(term, value)?),
                _ => bail!("invalid filter '{key}'"),
            }
        }
        Ok(filter)
    }

    fn matches(&self, record: &NetworkRecord) -> bool {
        let any = |values: &[String], test: &dyn Fn(&str) -> bool| {
            values.is_empty() || values.iter().any(|v| test(v))
        };
        self.labels.iter().all(|f| f.matches(&record.labels))
            && any(&self.names, &|part| record.name.contains(part))
            && any(&self.ids, &|part| record.id.contains(part))
            && any(&self.drivers, &|driver| driver == DRIVER)
            && any(&self.scopes, &|scope| scope == SCOPE)
            && (self.custom.is_empty() || self.custom.contains(&true))
            && self
                .dangling
                .is_none_or(|dangling| dangling == record.endpoints.is_empty())
    }
}

fn list(manager: &NetworkManager, args: &ListArgs) -> anyhow::Result<u8> {
    let filter = ListFilter::parse(&args.filters)?;
    let records: Vec<NetworkRecord> = manager
        .list()?
        .into_iter()
        .filter(|record| filter.matches(record))
        .collect();
    let truncate = !args.no_trunc;
    let mut out = String::new();
    if args.quiet {
        for record in &records {
            out.push_str(display_id(&record.id, truncate));
            out.push('\n');
        }
    } else if args.format == ListFormat::Json {
        for record in &records {
            out.push_str(&list_json(record, truncate).to_string());
            out.push('\n');
        }
    } else {
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|record| list_row(record, truncate))
            .collect();
        out = ui::table::render(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows);
    }
    print!("{out}");
    Ok(0)
}

fn display_id(id: &str, truncate: bool) -> &str {
    match id.get(..SHORT_ID_LEN) {
        Some(short) if truncate => short,
        _ => id,
    }
}

fn list_row(record: &NetworkRecord, truncate: bool) -> Vec<String> {
    vec![
        display_id(&record.id, truncate).to_string(),
        record.name.clone(),
        DRIVER.to_string(),
        SCOPE.to_string(),
    ]
}

/// One line of `docker network ls --format json` (keys sorted, values strings).
fn list_json(record: &NetworkRecord, truncate: bool) -> serde_json::Value {
    let labels: Vec<String> = record
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    serde_json::json!({
        "CreatedAt": go_time_string(record.created),
        "Driver": DRIVER,
        "ID": display_id(&record.id, truncate),
        "IPv4": "true",
        "IPv6": "false",
        "Internal": record.internal.to_string(),
        "Labels": labels.join(","),
        "Name": record.name,
        "Scope": SCOPE,
    })
}

// ---------------------------------------------------------------------------------
// inspect

/// The network a user means: exact name, then full id, then a unique id prefix.
fn find<'a>(
    records: &'a [NetworkRecord],
    reference: &str,
) -> Result<&'a NetworkRecord, NetworkCliError> {
    if let Some(record) = records
        .iter()
        .find(|r| r.name == reference || r.id == reference)
    {
        return Ok(record);
    }
    let by_prefix: Vec<&NetworkRecord> = records
        .iter()
        .filter(|r| !reference.is_empty() && r.id.starts_with(reference))
        .collect();
    match by_prefix.as_slice() {
        [record] => Ok(record),
        [] => Err(NetworkCliError::NoSuchNetwork(reference.to_string())),
        many => Err(NetworkCliError::Ambiguous {
            reference: reference.to_string(),
            count: many.len(),
        }),
    }
}

/// Prints what was found; each missing network is an error line and exit code 1.
fn inspect(manager: &NetworkManager, references: &[String]) -> anyhow::Result<u8> {
    let records = manager.list()?;
    let mut found = Vec::new();
    let mut code = 0;
    for reference in references {
        match find(&records, reference) {
            Ok(record) => found.push(inspect_json(record)),
            Err(err) => {
                eprintln!("Error: {err}");
                code = EXIT_FAILURE;
            }
        }
    }
    if !found.is_empty() || code == 0 {
        println!("{}", serde_json::to_string_pretty(&found)?);
    }
    Ok(code)
}

/// `docker network inspect`'s document for one network.
fn inspect_json(record: &NetworkRecord) -> serde_json::Value {
    let mut ipam_config = serde_json::Map::new();
    ipam_config.insert("Subnet".into(), record.subnet.to_string().into());
    if let Some(range) = record.ip_range {
        ipam_config.insert("IPRange".into(), range.to_string().into());
    }
    ipam_config.insert("Gateway".into(), record.gateway.to_string().into());
    let containers: serde_json::Map<String, serde_json::Value> = record
        .endpoints
        .iter()
        .map(|(id, endpoint)| (id.clone(), container_json(record, endpoint)))
        .collect();
    serde_json::json!({
        "Name": record.name,
        "Id": record.id,
        "Created": rfc3339_nano(record.created),
        "Scope": SCOPE,
        "Driver": DRIVER,
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [ipam_config],
        },
        "Internal": record.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": containers,
        "Options": driver_options(record),
        "Labels": record.labels,
    })
}

/// One entry of `Containers`: the address with the subnet's prefix, as Docker shows it.
fn container_json(record: &NetworkRecord, endpoint: &Endpoint) -> serde_json::Value {
    serde_json::json!({
        "Name": endpoint.container_name,
        "EndpointID": endpoint_id(&record.id, &endpoint.container_id),
        "MacAddress": endpoint.mac,
        "IPv4Address": format!("{}/{}", endpoint.ipv4, record.subnet.prefix()),
        "IPv6Address": "",
    })
}

/// Endpoints have no id of their own here; this one is stable for a container on a
/// network, 64 hex digits like Docker's, so tools that key on it keep working.
fn endpoint_id(network_id: &str, container_id: &str) -> String {
    let digest = Sha256::digest(format!("{network_id}/{container_id}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The driver options as `-o` gives them; only a non-default MTU is worth showing.
fn driver_options(record: &NetworkRecord) -> BTreeMap<&'static str, String> {
    let mut options = BTreeMap::new();
    if record.mtu != DEFAULT_MTU {
        options.insert(MTU_OPTION, record.mtu.to_string());
    }
    options
}

// ---------------------------------------------------------------------------------
// rm

/// Removes each network in turn; failures are reported and the rest still go.
fn remove(manager: &NetworkManager, references: &[String], force: bool) -> anyhow::Result<u8> {
    let records = manager.list()?;
    let mut code = 0;
    for reference in references {
        match remove_one(manager, &records, reference) {
            Ok(()) => println!("{reference}"),
            Err(err) if force && is_not_found(&err) => {}
            Err(err) => {
                eprintln!("Error: {err:#}");
                code = EXIT_FAILURE;
            }
        }
    }
    Ok(code)
}

fn remove_one(
    manager: &NetworkManager,
    records: &[NetworkRecord],
    reference: &str,
) -> anyhow::Result<()> {
    let record = find(records, reference)?;
    if !record.endpoints.is_empty() {
        return Err(active_endpoints(record).into());
    }
    match manager.remove(&record.name) {
        Ok(()) => Ok(()),
        // Gone or connected since we listed (or named twice on this command line).
        Err(NetworkError::NotFound(_)) => {
            Err(NetworkCliError::NoSuchNetwork(reference.to_string()).into())
        }
        Err(NetworkError::InUse { name, containers }) => Err(NetworkCliError::ActiveEndpoints {
            name,
            endpoints: containers,
        }
        .into()),
        Err(err) => Err(err.into()),
    }
}

/// Docker's refusal, naming each connected container as `name:"web-1" id:"…"`.
fn active_endpoints(record: &NetworkRecord) -> NetworkCliError {
    let endpoints: Vec<String> = record
        .endpoints
        .values()
        .map(|e| {
            format!(
                "name:{:?} id:{:?}",
                e.container_name,
                display_id(&e.container_id, true)
            )
        })
        .collect();
    NetworkCliError::ActiveEndpoints {
        name: record.name.clone(),
        endpoints: endpoints.join(", "),
    }
}

fn is_not_found(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<NetworkCliError>(),
        Some(NetworkCliError::NoSuchNetwork(_))
    )
}

// ---------------------------------------------------------------------------------
// prune

/// Which unused networks `prune` takes: every label term must match, and with
/// `until` only those created before that time.
#[derive(Debug, Default)]
struct PruneFilter {
    labels: Vec<LabelFilter>,
    until: Option<SystemTime>,
}

impl PruneFilter {
    fn parse(terms: &[String], now: SystemTime) -> anyhow::Result<PruneFilter> {
        let mut filter = PruneFilter::default();
        for term in terms {
            let (key, value) = split_filter(term)?;
            if let Some(label) = label_filter(key, value) {
                filter.labels.push(label);
            } else if key == "until" {
                filter.until = Some(parse_until(value, now).with_context(|| {
                    format!("invalid filter {term:?}: expected a duration (24h), a Unix time or an RFC 3339 time")
                })?);
            } else {
                bail!("invalid filter '{key}'");
            }
        }
        Ok(filter)
    }

    fn selects(&self, record: &NetworkRecord) -> bool {
        record.endpoints.is_empty()
            && self.labels.iter().all(|f| f.matches(&record.labels))
            && self.until.is_none_or(|until| record.created < until)
    }
}

/// Docker's `until`: a duration back from now, Unix seconds, or a date and time.
fn parse_until(value: &str, now: SystemTime) -> anyhow::Result<SystemTime> {
    if let Ok(seconds) = value.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Ok(UNIX_EPOCH + Duration::from_secs_f64(seconds.min(1e12)));
        }
    }
    if let Ok(time) = humantime::parse_rfc3339_weak(value) {
        return Ok(time);
    }
    let ago = humantime::parse_duration(value)?;
    Ok(now.checked_sub(ago).unwrap_or(UNIX_EPOCH))
}

fn prune(manager: &NetworkManager, force: bool, filters: &[String]) -> anyhow::Result<u8> {
    let filter = PruneFilter::parse(filters, SystemTime::now())?;
    if !force && !confirm(PRUNE_WARNING)? {
        return Ok(0);
    }
    let mut removed = Vec::new();
    let mut code = 0;
    for record in manager.list()? {
        if !filter.selects(&record) {
            continue;
        }
        match manager.remove(&record.name) {
            Ok(()) => removed.push(record.name),
            // Connected or removed by someone else since we listed: not ours to prune.
            Err(NetworkError::InUse { .. } | NetworkError::NotFound(_)) => {}
            Err(err) => {
                eprintln!("Error: {err}");
                code = EXIT_FAILURE;
            }
        }
    }
    print!("{}", prune_report(&removed));
    Ok(code)
}

/// Docker prints nothing when nothing was removed.
fn prune_report(removed: &[String]) -> String {
    if removed.is_empty() {
        return String::new();
    }
    let mut out = String::from("Deleted Networks:\n");
    for name in removed {
        out.push_str(name);
        out.push('\n');
    }
    out.push('\n');
    out
}

// ---------------------------------------------------------------------------------
// time

/// RFC 3339 with nanoseconds, trailing zeros dropped (Go's `RFC3339Nano`), in UTC.
fn rfc3339_nano(time: SystemTime) -> String {
    let text = humantime::format_rfc3339_nanos(printable(time)).to_string();
    match text.strip_suffix('Z') {
        Some(body) => format!("{}Z", trim_fraction(body)),
        None => text,
    }
}

/// Go's `time.Time.String()` in UTC, which `ls --format json` shows as `CreatedAt`.
fn go_time_string(time: SystemTime) -> String {
    let text = rfc3339_nano(time);
    let body = text.strip_suffix('Z').unwrap_or(&text);
    format!("{} +0000 UTC", body.replacen('T', " ", 1))
}

fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// Times from a record on disk may be anything; never let one past year 9999 panic.
fn printable(time: SystemTime) -> SystemTime {
    let last = UNIX_EPOCH + Duration::from_secs(LAST_PRINTABLE_SECOND);
    time.min(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const ID: &str = "3f5e0c8d1a2b4c6d8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";

    fn record(name: &str, id: &str) -> NetworkRecord {
        NetworkRecord {
            name: name.into(),
            id: id.into(),
            bridge: format!("rc-{}", &id[..8]),
            subnet: "10.213.9.0/24".parse().unwrap(),
            gateway: "10.213.9.1".parse().unwrap(),
            ip_range: None,
            internal: false,
            mtu: DEFAULT_MTU,
            labels: BTreeMap::new(),
            created: UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000),
            endpoints: BTreeMap::new(),
        }
    }

    fn endpoint(id: &str, name: &str) -> Endpoint {
        Endpoint {
            container_id: id.into(),
            container_name: name.into(),
            aliases: vec!["web".into()],
            ipv4: "10.213.9.2".parse().unwrap(),
            mac: "02:42:0a:d5:09:02".into(),
            ifname: "eth0".into(),
            host_ifname: "rcv-1".into(),
            ports: Vec::new(),
        }
    }

    fn connected(mut network: NetworkRecord, container_id: &str, name: &str) -> NetworkRecord {
        network
            .endpoints
            .insert(container_id.into(), endpoint(container_id, name));
        network
    }

    /// `network create` as a user types it.
    fn create_args(args: &[&str]) -> CreateArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: CreateArgs,
        }
        Wrapper::try_parse_from(std::iter::once("create").chain(args.iter().copied()))
            .unwrap()
            .args
    }

    fn strings(terms: &[&str]) -> Vec<String> {
        terms.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn ls_rows_show_the_short_id_bridge_and_local() {
        let table = ui::table::render(
            &["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
            &[list_row(&record("demo_default", ID), true)],
        );
        assert_eq!(
            table,
            "NETWORK ID     NAME           DRIVER   SCOPE\n\
             3f5e0c8d1a2b   demo_default   bridge   local\n"
        );
        assert_eq!(list_row(&record("n", ID), false)[0], ID);
    }

    #[test]
    fn ls_json_has_dockers_keys_as_strings() {
        let mut network = record("demo_default", ID);
        network.internal = true;
        network.labels = [
            ("com.docker.compose.project".into(), "demo".into()),
            ("tier".into(), "web".into()),
        ]
        .into();
        let line = list_json(&network, true).to_string();
        assert_eq!(
            line,
            r#"{"CreatedAt":"2023-11-14 22:13:20.12 +0000 UTC","Driver":"bridge","ID":"3f5e0c8d1a2b","IPv4":"true","IPv6":"false","Internal":"true","Labels":"com.docker.compose.project=demo,tier=web","Name":"demo_default","Scope":"local"}"#
        );
    }

    #[test]
    fn inspect_shows_ipam_containers_options_and_labels() {
        let mut network = connected(record("demo_default", ID), "c0ffee", "demo-web-1");
        network.ip_range = Some("10.213.9.128/25".parse().unwrap());
        network.mtu = 1400;
        network.labels = [("tier".into(), "web".into())].into();
        let doc = inspect_json(&network);
        assert_eq!(doc["Name"], "demo_default");
        assert_eq!(doc["Id"], ID);
        assert_eq!(doc["Created"], "2023-11-14T22:13:20.12Z");
        assert_eq!(doc["Scope"], "local");
        assert_eq!(doc["Driver"], "bridge");
        assert_eq!(doc["Internal"], false);
        assert_eq!(
            doc["IPAM"]["Config"],
            serde_json::json!([{
                "Subnet": "10.213.9.0/24",
                "IPRange": "10.213.9.128/25",
                "Gateway": "10.213.9.1",
            }])
        );
        let container = &doc["Containers"]["c0ffee"];
        assert_eq!(container["Name"], "demo-web-1");
        assert_eq!(container["IPv4Address"], "10.213.9.2/24");
        assert_eq!(container["MacAddress"], "02:42:0a:d5:09:02");
        let endpoint_id = container["EndpointID"].as_str().unwrap();
        assert_eq!(endpoint_id.len(), 64);
        assert_eq!(
            endpoint_id,
            inspect_json(&network)["Containers"]["c0ffee"]["EndpointID"]
        );
        assert_eq!(
            doc["Options"],
            serde_json::json!({"com.docker.network.driver.mtu": "1400"})
        );
        assert_eq!(doc["Labels"], serde_json::json!({"tier": "web"}));
    }

    #[test]
    fn inspect_of_a_plain_network_has_empty_maps_and_no_range() {
        let doc = inspect_json(&record("n", ID));
        assert_eq!(
            doc["IPAM"]["Config"],
            serde_json::json!([{"Subnet": "10.213.9.0/24", "Gateway": "10.213.9.1"}])
        );
        assert_eq!(doc["Containers"], serde_json::json!({}));
        assert_eq!(doc["Options"], serde_json::json!({}));
        assert_eq!(doc["Labels"], serde_json::json!({}));
    }

    #[test]
    fn networks_are_found_by_name_id_or_unique_prefix() {
        let other = "3f5e99999999aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let records = vec![record("front", ID), record("back", other)];
        assert_eq!(find(&records, "front").unwrap().id, ID);
        assert_eq!(find(&records, other).unwrap().name, "back");
        assert_eq!(find(&records, "3f5e0c").unwrap().name, "front");
        assert_eq!(
            find(&records, "3f5e").unwrap_err().to_string(),
            "network 3f5e is ambiguous (2 matches found based on ID prefix)"
        );
        assert_eq!(
            find(&records, "ghost").unwrap_err().to_string(),
            "No such network: ghost"
        );
        assert!(find(&records, "").is_err());
    }

    #[test]
    fn a_network_in_use_is_refused_with_dockers_words() {
        let network = connected(record("demo_default", ID), ID, "demo-db-1");
        assert_eq!(
            active_endpoints(&network).to_string(),
            "error while removing network: network demo_default has active endpoints (name:\"demo-db-1\" id:\"3f5e0c8d1a2b\")"
        );
    }

    #[test]
    fn create_flags_become_the_managers_request() {
        let args = create_args(&[
            "--subnet",
            "10.99.0.0/16",
            "--gateway",
            "10.99.0.254",
            "--ip-range",
            "10.99.1.0/24",
            "--internal",
            "--label",
            "tier=web",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "front",
        ]);
        let options = network_options(&args).unwrap();
        assert_eq!(options.name, "front");
        assert_eq!(options.driver.as_deref(), Some("bridge"));
        assert!(options.internal);
        assert_eq!(options.labels["tier"], "web");
        assert_eq!(options.mtu, Some(1400));
        let ipam = options.ipam.unwrap();
        assert_eq!(ipam.subnet.to_string(), "10.99.0.0/16");
        assert_eq!(ipam.gateway, Some(Ipv4Addr::new(10, 99, 0, 254)));
        assert_eq!(ipam.ip_range.unwrap().to_string(), "10.99.1.0/24");

        let plain = network_options(&create_args(&["back"])).unwrap();
        assert_eq!(plain.ipam, None);
        assert_eq!(plain.mtu, None);
        assert!(!plain.internal);
    }

    #[test]
    fn bad_create_flags_name_the_network_and_the_flag() {
        let error = |args: &[&str]| network_options(&create_args(args)).unwrap_err().to_string();
        assert_eq!(
            error(&["--gateway", "10.0.0.1", "n"]),
            "network n: every ip-range or gateway must have a corresponding subnet"
        );
        let subnet = error(&["--subnet", "10.0.0.0", "n"]);
        assert!(
            subnet.starts_with("network n: invalid --subnet \"10.0.0.0\""),
            "{subnet}"
        );
        let gateway = error(&["--subnet", "10.0.0.0/24", "--gateway", "x", "n"]);
        assert!(
            gateway.starts_with("network n: invalid --gateway \"x\""),
            "{gateway}"
        );
        assert_eq!(
            error(&["-o", "com.docker.network.bridge.name=br0", "n"]),
            "network n: driver option \"com.docker.network.bridge.name\" is not supported by the embedded bridge driver (only com.docker.network.driver.mtu)"
        );
        assert_eq!(
            error(&["-o", "com.docker.network.driver.mtu=20", "n"]),
            "network n: invalid com.docker.network.driver.mtu \"20\": expected a whole number from 68 to 65535"
        );
        assert!(error(&["-o", "mtu", "n"]).contains("expected KEY=VALUE"));
    }

    #[test]
    fn list_filters_combine_like_dockers() {
        let mut labelled = record("demo_default", ID);
        labelled.labels = [("com.docker.compose.project".into(), "demo".into())].into();
        let used = connected(
            record("demo_back", &ID.replace('3', "4")),
            "c1",
            "demo-db-1",
        );
        let matches = |terms: &[&str], network: &NetworkRecord| {
            ListFilter::parse(&strings(terms)).unwrap().matches(network)
        };
        assert!(matches(
            &["label=com.docker.compose.project=demo"],
            &labelled
        ));
        assert!(!matches(
            &["label=com.docker.compose.project=other"],
            &labelled
        ));
        assert!(!matches(&["label!=com.docker.compose.project"], &labelled));
        assert!(matches(&["name=other", "name=default"], &labelled));
        assert!(!matches(&["name=default", "driver=macvlan"], &labelled));
        assert!(matches(
            &["driver=bridge", "scope=local", "type=custom"],
            &labelled
        ));
        assert!(!matches(&["type=builtin"], &labelled));
        assert!(matches(&["id=3f5e0c"], &labelled));
        assert!(matches(&["dangling=true"], &labelled));
        assert!(!matches(&["dangling=true"], &used));
        assert!(matches(&["dangling=false"], &used));

        let error = |terms: &[&str]| ListFilter::parse(&strings(terms)).unwrap_err().to_string();
        assert_eq!(error(&["colour=red"]), "invalid filter 'colour'");
        assert!(error(&["type=overlay"]).contains("expected custom or builtin"));
        assert!(error(&["dangling=maybe"]).contains("expected true or false"));
        assert!(error(&["name"]).starts_with("bad format of filter"));
    }

    #[test]
    fn prune_takes_unused_networks_matching_labels_and_age() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_086_400); // a day after `record`
        let mut old = record("old", ID);
        old.labels = [("keep".into(), "no".into())].into();
        let used = connected(record("used", ID), "c1", "web-1");
        let selects = |terms: &[&str], network: &NetworkRecord| {
            PruneFilter::parse(&strings(terms), now)
                .unwrap()
                .selects(network)
        };
        assert!(selects(&[], &old));
        assert!(!selects(&[], &used));
        assert!(selects(&["label=keep=no"], &old));
        assert!(!selects(&["label!=keep"], &old));
        assert!(selects(&["until=1h"], &old));
        assert!(!selects(&["until=48h"], &old));
        assert!(selects(&["until=2023-11-15T00:00:00Z"], &old));
        assert!(!selects(&["until=1699999999"], &old));

        let error = |terms: &[&str]| {
            PruneFilter::parse(&strings(terms), now)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(error(&["dangling=true"]), "invalid filter 'dangling'");
        assert!(error(&["until=soon"]).starts_with("invalid filter \"until=soon\""));
    }

    #[test]
    fn prune_report_reads_like_dockers() {
        assert_eq!(prune_report(&[]), "");
        assert_eq!(
            prune_report(&["a".into(), "b".into()]),
            "Deleted Networks:\na\nb\n\n"
        );
    }

    #[test]
    fn times_print_like_go_and_never_panic() {
        let whole = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339_nano(whole), "2023-11-14T22:13:20Z");
        assert_eq!(go_time_string(whole), "2023-11-14 22:13:20 +0000 UTC");
        let far = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1000);
        assert_eq!(rfc3339_nano(far), "9999-12-31T23:59:59Z");
    }
}
