//! `rcompose ps`: the project's containers as `docker compose ps` lists them, read from
//! the embedded engine's on-disk state (no supervisor needed).
//!
//! Also home of what `logs`, `exec` and `port` share: finding the project (loaded from
//! its Compose files, or only its `-p` name), opening the engine and describing a
//! container ([`ContainerSummary`]).

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::common::ListFormat;
use super::GlobalOptions;
use crate::backend::native::record::TeardownRecord;
use crate::backend::native::NativeEngine;
use crate::orchestrator::labels::Labels;
use crate::orchestrator::plan::{ContainerState, ObservedContainer};
use crate::project::loader::{self, LoadSettings};
use crate::ui;

/// `--status` values Compose accepts.
const STATUSES: [&str; 7] = [
    "paused",
    "restarting",
    "removing",
    "running",
    "dead",
    "created",
    "exited",
];

/// Docker truncates COMMAND to this many characters unless `--no-trunc`.
const COMMAND_WIDTH: usize = 20;

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all stopped containers
    #[arg(short, long)]
    all: bool,
    /// Only display IDs
    #[arg(short, long)]
    quiet: bool,
    /// Display services
    #[arg(long)]
    services: bool,
    /// Filter services by status (paused, restarting, removing, running, dead, created, exited)
    #[arg(long = "status", value_name = "STATUS")]
    statuses: Vec<String>,
    /// Filter services by a property (supported filters: status)
    #[arg(long, value_name = "KEY=VAL")]
    filter: Option<String>,
    /// Format the output
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    #[arg(value_name = "SERVICE")]
    service_names: Vec<String>,
}

/// The project a command works on: its name, and its services when its Compose files
/// could be loaded.
pub(super) struct ProjectScope {
    pub name: String,
    pub services: Option<Vec<String>>,
}

impl ProjectScope {
    /// Loads the project; without Compose files, `-p NAME` alone names it (as Compose
    /// lets `ps`, `logs`, `exec` and `port` work from a name).
    pub fn find(global: &GlobalOptions) -> anyhow::Result<ProjectScope> {
        let loaded = global
            .project_inputs()
            .and_then(|inputs| Ok(loader::load(&inputs, &LoadSettings::default())?));
        match (loaded, &global.project_name) {
            (Ok(loaded), _) => Ok(ProjectScope {
                name: loaded.project.name.clone(),
                services: Some(loaded.project.services.keys().cloned().collect()),
            }),
            (Err(_), Some(name)) => Ok(ProjectScope {
                name: name.clone(),
                services: None,
            }),
            (Err(err), None) => Err(err),
        }
    }

    /// Compose's error for a service the project does not declare.
    pub fn check_services(&self, requested: &[String]) -> anyhow::Result<()> {
        let Some(known) = &self.services else {
            return Ok(());
        };
        match requested.iter().find(|name| !known.contains(name)) {
            Some(unknown) => bail!("no such service: {unknown}"),
            None => Ok(()),
        }
    }
}

/// The engine of the global `--root`.
pub(super) fn open_engine(global: &GlobalOptions) -> anyhow::Result<NativeEngine> {
    let program = std::env::current_exe().context("finding the rcompose binary")?;
    NativeEngine::open(&global.root, &program)
        .with_context(|| format!("opening the state root {}", global.root.display()))
}

/// A published port, as Compose's `Publishers`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Publisher {
    pub target_port: u16,
    pub url: String,
    pub published_port: u16,
    pub protocol: String,
}

/// What `ps` shows of one container.
#[derive(Debug, Clone)]
pub(super) struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub project: String,
    pub service: String,
    pub number: Option<u32>,
    pub image: String,
    /// The process's arguments, joined with spaces as Docker shows them.
    pub command: String,
    pub created: SystemTime,
    pub state: ContainerState,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    /// `starting`, `healthy` or `unhealthy`, from the supervisor's health file.
    pub health: Option<String>,
    pub publishers: Vec<Publisher>,
    pub networks: Vec<String>,
    pub labels: Labels,
}

impl ContainerSummary {
    /// Made by `rcompose run`.
    pub fn is_oneoff(&self) -> bool {
        self.labels
            .get(crate::orchestrator::labels::ONEOFF)
            .is_some_and(|v| v != crate::orchestrator::labels::ONEOFF_FALSE)
    }
}

/// Every container of `project` (all states), sorted by name.
pub(super) fn summaries(
    engine: &NativeEngine,
    root: &Path,
    project: &str,
) -> anyhow::Result<Vec<ContainerSummary>> {
    let observed = engine
        .list(project)
        .with_context(|| format!("listing the containers of project {project}"))?;
    let mut list: Vec<ContainerSummary> = observed
        .into_iter()
        .filter_map(|container| summarize(engine, root, project, container))
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(list)
}

/// `None` when the container was removed while we looked.
fn summarize(
    engine: &NativeEngine,
    root: &Path,
    project: &str,
    container: ObservedContainer,
) -> Option<ContainerSummary> {
    let runtime = engine.runtime();
    let record = runtime.inspect(&container.id).ok()?;
    let state = runtime.state(&container.id).ok();
    let networks = TeardownRecord::load(root, &container.id)
        .ok()
        .flatten()
        .map(|r| r.networks)
        .unwrap_or_default();
    let live = matches!(
        container.state,
        ContainerState::Running | ContainerState::Paused
    );
    // Docker lists no ports for a container that is not running.
    let publishers = if live {
        publishers(engine, &container.id, &networks)
    } else {
        Vec::new()
    };
    Some(ContainerSummary {
        command: process_command(&runtime.container_dir(&container.id)),
        health: read_health(root, project, &container.id),
        image: record.image,
        created: record.created_at,
        started_at: state.as_ref().and_then(|s| s.started_at),
        finished_at: state.as_ref().and_then(|s| s.finished_at),
        id: container.id,
        name: container.name,
        project: project.to_owned(),
        service: container.service,
        number: container.number,
        state: container.state,
        publishers,
        networks,
        labels: container.labels,
    })
}

/// The published ports of the container's endpoints on `networks`.
fn publishers(engine: &NativeEngine, id: &str, networks: &[String]) -> Vec<Publisher> {
    let mut found: Vec<Publisher> = networks
        .iter()
        .filter_map(|network| engine.network_manager().inspect(network).ok())
        .filter_map(|record| record.endpoints.get(id).cloned())
        .flat_map(|endpoint| endpoint.ports)
        .map(|forward| Publisher {
            target_port: forward.container_port,
            url: forward.host_ip.to_string(),
            published_port: forward.host_port,
            protocol: forward.protocol.as_str().to_owned(),
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The container's process arguments from its OCI bundle, as Docker's COMMAND.
fn process_command(container_dir: &Path) -> String {
    let Ok(bytes) = fs::read(container_dir.join("config.json")) else {
        return String::new();
    };
    let Ok(spec) = serde_json::from_slice::<Value>(&bytes) else {
        return String::new();
    };
    spec["process"]["args"]
        .as_array()
        .map(|args| {
            args.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The health status the supervisor wrote (`<root>/compose/<project>/health/<id>.json`,
/// Docker's `State.Health`), lowercased; `None` without a healthcheck.
pub(super) fn read_health(root: &Path, project: &str, id: &str) -> Option<String> {
    let path = crate::supervisor::health_file(root, project, id);
    let health: Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    health["Status"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
}

pub fn run(global: &GlobalOptions, args: &PsArgs) -> anyhow::Result<u8> {
    let mut statuses = args.statuses.clone();
    if let Some(filter) = &args.filter {
        statuses.push(status_filter(filter)?);
    }
    check_statuses(&statuses)?;
    let scope = ProjectScope::find(global)?;
    scope.check_services(&args.service_names)?;
    let engine = open_engine(global)?;
    let containers: Vec<ContainerSummary> = summaries(&engine, &global.root, &scope.name)?
        .into_iter()
        .filter(|c| args.service_names.is_empty() || args.service_names.contains(&c.service))
        // As Compose: one-off (`run`) containers only with `--all`.
        .filter(|c| args.all || !c.is_oneoff())
        .filter(|c| selected(c, args.all, &statuses))
        .collect();
    let now = SystemTime::now();
    let text = if args.quiet {
        containers.iter().map(|c| format!("{}\n", c.id)).collect()
    } else if args.services {
        services_text(&containers)
    } else {
        match args.format {
            ListFormat::Table => table(&containers, !args.no_trunc, now),
            ListFormat::Json => json_lines(&containers, !args.no_trunc, now),
        }
    };
    print!("{text}");
    Ok(0)
}

/// `--filter status=X`: the only filter Compose knows.
fn status_filter(filter: &str) -> anyhow::Result<String> {
    let Some((key, value)) = filter.split_once('=') else {
        bail!("arguments to --filter should be in form KEY=VAL");
    };
    match key {
        "status" => Ok(value.to_owned()),
        other => bail!("unknown filter {other}"),
    }
}

fn check_statuses(statuses: &[String]) -> anyhow::Result<()> {
    match statuses.iter().find(|s| !STATUSES.contains(&s.as_str())) {
        Some(bad) => bail!(
            "invalid status {bad:?}: expected one of {}",
            STATUSES.join(", ")
        ),
        None => Ok(()),
    }
}

/// Running containers only, unless `-a` or a status is asked for.
fn selected(container: &ContainerSummary, all: bool, statuses: &[String]) -> bool {
    if !statuses.is_empty() {
        return statuses.iter().any(|s| s == container.state.as_str());
    }
    all || matches!(
        container.state,
        ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
    )
}

/// `--services`: each service once, in listing order.
fn services_text(containers: &[ContainerSummary]) -> String {
    let mut services: Vec<&str> = Vec::new();
    for container in containers {
        if !services.contains(&container.service.as_str()) {
            services.push(&container.service);
        }
    }
    services.iter().map(|s| format!("{s}\n")).collect()
}

fn table(containers: &[ContainerSummary], truncate: bool, now: SystemTime) -> String {
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.image.clone(),
                quoted_command(&c.command, truncate),
                c.service.clone(),
                running_for(c.created, now),
                status_text(c, now),
                ports_text(&c.publishers),
            ]
        })
        .collect();
    ui::table::render(
        &[
            "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS",
        ],
        &rows,
    )
}

/// One JSON object per line, with the fields of `docker compose ps --format json`.
fn json_lines(containers: &[ContainerSummary], truncate: bool, now: SystemTime) -> String {
    containers
        .iter()
        .map(|c| format!("{}\n", json_object(c, truncate, now)))
        .collect()
}

fn json_object(c: &ContainerSummary, truncate: bool, now: SystemTime) -> Value {
    let exit_code = match c.state {
        ContainerState::Exited { exit_code } => exit_code,
        _ => 0,
    };
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let publishers: Vec<Value> = c
        .publishers
        .iter()
        .map(|p| {
            json!({
                "URL": p.url,
                "TargetPort": p.target_port,
                "PublishedPort": p.published_port,
                "Protocol": p.protocol,
            })
        })
        .collect();
    json!({
        "Command": quoted_command(&c.command, truncate),
        "CreatedAt": go_time(c.created),
        "ExitCode": exit_code,
        "Health": c.health.clone().unwrap_or_default(),
        "ID": c.id,
        "Image": c.image,
        "Labels": labels.join(","),
        "LocalVolumes": "0",
        "Mounts": "",
        "Name": c.name,
        "Names": c.name,
        "Networks": c.networks.join(","),
        "Ports": ports_text(&c.publishers),
        "Project": c.project,
        "Publishers": publishers,
        "RunningFor": running_for(c.created, now),
        "Service": c.service,
        "Size": "0B",
        "State": c.state.as_str(),
        "Status": status_text(c, now),
    })
}

/// Go's `time.Time.String()` in UTC, as Compose's `CreatedAt`.
fn go_time(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%Y-%m-%d %H:%M:%S +0000 UTC")
        .to_string()
}

/// Docker's COMMAND cell: cut to 20 characters with an ellipsis, then quoted.
fn quoted_command(command: &str, truncate: bool) -> String {
    let shown = if truncate && command.chars().count() > COMMAND_WIDTH {
        let mut cut: String = command.chars().take(COMMAND_WIDTH - 1).collect();
        cut.push('…');
        cut
    } else {
        command.to_owned()
    };
    serde_json::to_string(&shown).unwrap_or_default()
}

/// CREATED: "5 seconds ago".
fn running_for(created: SystemTime, now: SystemTime) -> String {
    format!("{} ago", human_duration(elapsed(created, now)))
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or_default()
}

/// Docker's STATUS: "Up 5 seconds (healthy)", "Exited (3) 2 minutes ago", "Created".
fn status_text(c: &ContainerSummary, now: SystemTime) -> String {
    match c.state {
        ContainerState::Created => "Created".to_owned(),
        ContainerState::Dead => "Dead".to_owned(),
        ContainerState::Running | ContainerState::Paused | ContainerState::Restarting => {
            let up = human_duration(c.started_at.map_or(Duration::ZERO, |s| elapsed(s, now)));
            if c.state == ContainerState::Paused {
                return format!("Up {up} (Paused)");
            }
            match c.health.as_deref() {
                Some("starting") => format!("Up {up} (health: starting)"),
                Some(health) => format!("Up {up} ({health})"),
                None => format!("Up {up}"),
            }
        }
        ContainerState::Exited { exit_code } => match c.finished_at {
            Some(finished) => format!(
                "Exited ({exit_code}) {} ago",
                human_duration(elapsed(finished, now))
            ),
            None => format!("Exited ({exit_code})"),
        },
    }
}

/// Docker's human-readable duration (go-units `HumanDuration`).
pub(super) fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    // Hours round to the nearest, as Docker does.
    let hours = (seconds + 1800) / 3600;
    match () {
        _ if seconds < 1 => "Less than a second".to_owned(),
        _ if seconds == 1 => "1 second".to_owned(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// Docker's PORTS cell: ports published on the same number grouped into ranges
/// (`0.0.0.0:8000-8001->8000-8001/tcp`), then the other mappings
/// (`127.0.0.1:8080->80/tcp`), ordered by container port.
pub(super) fn ports_text(publishers: &[Publisher]) -> String {
    let mut sorted = publishers.to_vec();
    sorted.sort();
    // (address/protocol, first, last), in the order the keys first appear.
    let mut groups: Vec<(String, String, u16, u16)> = Vec::new();
    let mut done = Vec::new();
    let mut mappings = Vec::new();
    for p in &sorted {
        if p.published_port != p.target_port {
            mappings.push(format!(
                "{}:{}->{}/{}",
                p.url, p.published_port, p.target_port, p.protocol
            ));
            continue;
        }
        let current = p.target_port;
        match groups
            .iter_mut()
            .find(|(url, protocol, _, _)| *url == p.url && *protocol == p.protocol)
        {
            Some(group) if group.3.checked_add(1) == Some(current) => group.3 = current,
            Some(group) => {
                done.push(port_group(group));
                *group = (p.url.clone(), p.protocol.clone(), current, current);
            }
            None => groups.push((p.url.clone(), p.protocol.clone(), current, current)),
        }
    }
    done.extend(groups.iter().map(port_group));
    done.extend(mappings);
    done.join(", ")
}

fn port_group((url, protocol, first, last): &(String, String, u16, u16)) -> String {
    let range = if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    };
    format!("{url}:{range}->{range}/{protocol}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::from_secs(1_704_110_400);

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(seconds)
    }

    fn publisher(url: &str, published: u16, target: u16, protocol: &str) -> Publisher {
        Publisher {
            target_port: target,
            url: url.into(),
            published_port: published,
            protocol: protocol.into(),
        }
    }

    fn summary(state: ContainerState) -> ContainerSummary {
        ContainerSummary {
            id: "demo-web-1".into(),
            name: "demo-web-1".into(),
            project: "demo".into(),
            service: "web".into(),
            number: Some(1),
            image: "busybox".into(),
            command: "sleep 300".into(),
            created: at(0),
            state,
            started_at: Some(at(10)),
            finished_at: Some(at(20)),
            health: None,
            publishers: vec![publisher("0.0.0.0", 18080, 80, "tcp")],
            networks: vec!["demo_default".into()],
            labels: Labels::new(),
        }
    }

    #[test]
    fn durations_read_like_docker() {
        let d = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(d(1)), "1 second");
        assert_eq!(human_duration(d(5)), "5 seconds");
        assert_eq!(human_duration(d(59)), "59 seconds");
        assert_eq!(human_duration(d(60)), "About a minute");
        assert_eq!(human_duration(d(119)), "About a minute");
        assert_eq!(human_duration(d(120)), "2 minutes");
        assert_eq!(human_duration(d(3599)), "59 minutes");
        assert_eq!(human_duration(d(3600)), "About an hour");
        assert_eq!(human_duration(d(5400)), "2 hours");
        assert_eq!(human_duration(d(47 * 3600)), "47 hours");
        assert_eq!(human_duration(d(3 * 86400)), "3 days");
        assert_eq!(human_duration(d(20 * 86400)), "2 weeks");
        assert_eq!(human_duration(d(90 * 86400)), "3 months");
        assert_eq!(human_duration(d(3 * 365 * 86400)), "3 years");
    }

    #[test]
    fn status_column() {
        let now = at(15);
        let mut c = summary(ContainerState::Running);
        assert_eq!(status_text(&c, now), "Up 5 seconds");
        c.health = Some("healthy".into());
        assert_eq!(status_text(&c, now), "Up 5 seconds (healthy)");
        c.health = Some("starting".into());
        assert_eq!(status_text(&c, now), "Up 5 seconds (health: starting)");
        c.state = ContainerState::Paused;
        assert_eq!(status_text(&c, now), "Up 5 seconds (Paused)");
        let exited = summary(ContainerState::Exited { exit_code: 3 });
        assert_eq!(status_text(&exited, at(140)), "Exited (3) 2 minutes ago");
        assert_eq!(
            status_text(&summary(ContainerState::Created), now),
            "Created"
        );
    }

    #[test]
    fn command_is_quoted_and_cut_at_twenty_characters() {
        assert_eq!(quoted_command("sleep 300", true), "\"sleep 300\"");
        assert_eq!(
            quoted_command("sh -c 'echo hello; sleep 1000'", true),
            "\"sh -c 'echo hello; …\""
        );
        assert_eq!(
            quoted_command("sh -c 'echo \"hi\"; sleep 1000'", false),
            "\"sh -c 'echo \\\"hi\\\"; sleep 1000'\""
        );
        assert_eq!(
            quoted_command(&"x".repeat(20), true),
            format!("\"{}\"", "x".repeat(20))
        );
    }

    #[test]
    fn ports_group_like_docker() {
        let ports = [
            publisher("127.0.0.1", 8080, 80, "tcp"),
            publisher("0.0.0.0", 9001, 9001, "tcp"),
            publisher("0.0.0.0", 9000, 9000, "tcp"),
            publisher("0.0.0.0", 53, 53, "udp"),
            publisher("0.0.0.0", 9003, 9003, "tcp"),
        ];
        assert_eq!(
            ports_text(&ports),
            // As Docker: a range closed by a gap comes first, open ones follow in the
            // order they began, then the mappings to another port.
            "0.0.0.0:9000-9001->9000-9001/tcp, 0.0.0.0:53->53/udp, 0.0.0.0:9003->9003/tcp, 127.0.0.1:8080->80/tcp"
        );
        assert_eq!(ports_text(&[]), "");
    }

    #[test]
    fn table_has_compose_columns() {
        let out = table(&[summary(ContainerState::Running)], true, at(15));
        let mut lines = out.lines();
        let header = lines.next().unwrap();
        let columns: Vec<&str> = header.split_whitespace().collect();
        assert_eq!(
            columns,
            ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"]
        );
        let row = lines.next().unwrap();
        assert!(row.starts_with("demo-web-1   busybox   \"sleep 300\"   web       15 seconds ago   Up 5 seconds   0.0.0.0:18080->80/tcp"), "{row}");
    }

    #[test]
    fn json_has_compose_fields() {
        let c = summary(ContainerState::Exited { exit_code: 3 });
        let value = json_object(&c, true, at(80));
        assert_eq!(value["Name"], "demo-web-1");
        assert_eq!(value["State"], "exited");
        assert_eq!(value["ExitCode"], 3);
        assert_eq!(value["Status"], "Exited (3) About a minute ago");
        assert_eq!(value["Publishers"][0]["PublishedPort"], 18080);
        assert_eq!(value["CreatedAt"], "2024-01-01 12:00:00 +0000 UTC");
    }

    #[test]
    fn filters_and_statuses() {
        assert_eq!(status_filter("status=exited").unwrap(), "exited");
        assert_eq!(
            status_filter("status").unwrap_err().to_string(),
            "arguments to --filter should be in form KEY=VAL"
        );
        assert_eq!(
            status_filter("name=web").unwrap_err().to_string(),
            "unknown filter name"
        );
        assert!(check_statuses(&["running".into(), "exited".into()]).is_ok());
        assert!(check_statuses(&["up".into()])
            .unwrap_err()
            .to_string()
            .starts_with("invalid status \"up\""));
        let exited = summary(ContainerState::Exited { exit_code: 0 });
        assert!(!selected(&exited, false, &[]));
        assert!(selected(&exited, true, &[]));
        assert!(selected(&exited, false, &["exited".into()]));
        assert!(!selected(
            &summary(ContainerState::Running),
            true,
            &["exited".into()]
        ));
    }

    #[test]
    fn health_file_is_read_when_present() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(read_health(root.path(), "demo", "demo-web-1"), None);
        let path = crate::supervisor::health_file(root.path(), "demo", "demo-web-1");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, r#"{"Status":"healthy","FailingStreak":0,"Log":[]}"#).unwrap();
        assert_eq!(
            read_health(root.path(), "demo", "demo-web-1").as_deref(),
            Some("healthy")
        );
    }
}
