//! `rcompose logs [SERVICE...]`: the json-file logs of the project's containers,
//! merged by time under `web-1  | ` prefixes, as `docker compose logs` prints them.
//!
//! With `-f` the logs are followed with inotify: a restarted container keeps writing
//! the same file, and a replica created meanwhile is picked up by watching the
//! runtime's `containers` directory (the new container's own directory is watched
//! until its record says whose it is).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::SystemTime;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use rcompose_runtime::container::lifecycle::Runtime;
use rcompose_runtime::logs::ReadOptions;

use super::ps::{open_engine, ProjectScope};
use super::GlobalOptions;
use crate::orchestrator::labels::{self, ContainerIdentity, Labels};
use crate::ui::logs::{
    parse_tail, parse_time_bound, print_logs, FollowHandle, LogFollow, LogSource, LogStyle,
    LogsError, LogsOptions,
};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end of the logs for each container
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    /// Produce monochrome output
    #[arg(long)]
    no_color: bool,
    /// Don't print prefix in logs
    #[arg(long)]
    no_log_prefix: bool,
    /// Index of the container if service has multiple replicas
    #[arg(long)]
    index: Option<u32>,
    #[arg(value_name = "SERVICE")]
    services: Vec<String>,
}

/// Which containers' logs to show.
#[derive(Debug, Clone)]
struct Selection {
    project: String,
    services: Vec<String>,
    index: Option<u32>,
}

impl Selection {
    /// Whether a container with these labels is shown: the project's, not one-off,
    /// of a selected service and replica.
    fn matches(&self, id: &str, container_labels: &Labels) -> bool {
        if labels::project_of(container_labels) != Some(self.project.as_str()) {
            return false;
        }
        let Ok(identity) = ContainerIdentity::from_labels(id, container_labels) else {
            return false;
        };
        !identity.oneoff
            && (self.services.is_empty() || self.services.contains(&identity.service))
            && self
                .index
                .is_none_or(|index| identity.number == Some(index))
    }

    /// The container's log under Compose's prefix: its name without `<project>-`.
    fn source(&self, runtime: &Runtime, id: &str) -> LogSource {
        LogSource::new(display_name(&self.project, id), runtime.log_path(id))
    }
}

/// `web-1` for `demo-web-1`; a `container_name` is shown whole.
fn display_name(project: &str, name: &str) -> String {
    name.strip_prefix(project)
        .and_then(|rest| rest.strip_prefix('-'))
        .unwrap_or(name)
        .to_owned()
}

pub fn run(global: &GlobalOptions, args: &LogsArgs) -> anyhow::Result<u8> {
    let options = logs_options(args, SystemTime::now())?;
    let scope = ProjectScope::find(global)?;
    scope.check_services(&args.services)?;
    let selection = Selection {
        project: scope.name.clone(),
        services: args.services.clone(),
        index: args.index,
    };
    let engine = open_engine(global)?;
    let runtime = engine.runtime();
    let sources = current_sources(runtime, &selection)?;
    let result = if args.follow {
        follow(global, sources, &options, selection)
    } else {
        let stdout = std::io::stdout().lock();
        print_logs(&sources, &options, stdout, |e| eprintln!("{e}")).map(|_| ())
    };
    match result {
        // `logs | head` is not an error.
        Err(LogsError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e.into()),
        Ok(()) => Ok(0),
    }
}

fn logs_options(args: &LogsArgs, now: SystemTime) -> anyhow::Result<LogsOptions> {
    let bound = |flag, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| parse_time_bound(flag, v, now))
            .transpose()
    };
    Ok(LogsOptions {
        style: LogStyle::for_stdout(args.no_color, args.no_log_prefix, args.timestamps),
        read: ReadOptions {
            tail: parse_tail(&args.tail)?,
            since: bound("--since", &args.since)?,
            until: bound("--until", &args.until)?,
        },
    })
}

/// The selected containers' logs, by container name.
fn current_sources(runtime: &Runtime, selection: &Selection) -> anyhow::Result<Vec<LogSource>> {
    let ids = runtime.list().context("listing containers")?;
    Ok(ids
        .iter()
        .filter(|id| {
            runtime
                .inspect(id)
                .is_ok_and(|record| selection.matches(id, &record.config.labels))
        })
        .map(|id| selection.source(runtime, id))
        .collect())
}

/// Prints and follows until killed (or `--until` has passed), adding new replicas.
fn follow(
    global: &GlobalOptions,
    sources: Vec<LogSource>,
    options: &LogsOptions,
    selection: Selection,
) -> Result<(), LogsError> {
    let stdout = std::io::stdout();
    let (follow, handle) = LogFollow::new(sources, options, stdout, |e| eprintln!("{e}"))?;
    let root = global.root.clone();
    let watcher_handle = handle.clone();
    std::thread::spawn(move || {
        if let Err(err) = watch_new_containers(&root, &selection, &watcher_handle) {
            eprintln!("new containers will not be followed: {err}");
        }
    });
    let summary = follow.run();
    drop(handle);
    summary.map(|_| ())
}

/// Adds the log of every selected container created from now on, until the follow
/// ends. A new directory under `<root>/containers` is watched until the container's
/// record appears in it.
fn watch_new_containers(
    root: &Path,
    selection: &Selection,
    handle: &FollowHandle,
) -> anyhow::Result<()> {
    let program = std::env::current_exe()?;
    let runtime = Runtime::new(&program, root);
    let containers_dir = root.join("containers");
    std::fs::create_dir_all(&containers_dir)?;
    let (sender, events) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = sender.send(event);
    })?;
    watcher.watch(&containers_dir, RecursiveMode::NonRecursive)?;
    let known: HashSet<String> = runtime.list()?.into_iter().collect();
    let mut pending: HashSet<PathBuf> = HashSet::new();
    for event in events {
        let Ok(event) = event else { continue };
        for path in event.paths {
            let is_new_container = path.parent() == Some(containers_dir.as_path())
                && path.is_dir()
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|id| !known.contains(id));
            if is_new_container && pending.insert(path.clone()) {
                // Until its record is written; gone directories simply never match.
                let _ = watcher.watch(&path, RecursiveMode::NonRecursive);
            }
        }
        let identified: Vec<PathBuf> = pending
            .iter()
            .filter(|dir| identify(&runtime, dir, selection, handle))
            .cloned()
            .collect();
        for dir in identified {
            let _ = watcher.unwatch(&dir);
            pending.remove(&dir);
        }
    }
    Ok(())
}

/// Whether the container in `dir` has its record yet; a selected one is followed.
fn identify(runtime: &Runtime, dir: &Path, selection: &Selection, handle: &FollowHandle) -> bool {
    let Some(id) = dir.file_name().and_then(|n| n.to_str()) else {
        return true;
    };
    match runtime.inspect(id) {
        Ok(record) => {
            if selection.matches(id, &record.config.labels) {
                handle.add_source(selection.source(runtime, id));
            }
            true
        }
        Err(_) => !dir.exists(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn labels(project: &str, service: &str, number: &str, oneoff: &str) -> Labels {
        [
            (labels::PROJECT, project),
            (labels::SERVICE, service),
            (labels::CONTAINER_NUMBER, number),
            (labels::ONEOFF, oneoff),
            (labels::CONFIG_HASH, "h"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn prefixes_drop_the_project_name() {
        assert_eq!(display_name("demo", "demo-web-1"), "web-1");
        assert_eq!(display_name("demo", "the-db"), "the-db");
        assert_eq!(display_name("demo", "demonic-1"), "demonic-1");
    }

    #[test]
    fn selection_by_project_service_and_index() {
        let all = Selection {
            project: "demo".into(),
            services: Vec::new(),
            index: None,
        };
        assert!(all.matches("demo-web-1", &labels("demo", "web", "1", "False")));
        assert!(!all.matches("other-web-1", &labels("other", "web", "1", "False")));
        assert!(!all.matches("demo-web-run-1", &labels("demo", "web", "-1", "True")));
        let second_web = Selection {
            services: vec!["web".into()],
            index: Some(2),
            ..all
        };
        assert!(second_web.matches("demo-web-2", &labels("demo", "web", "2", "False")));
        assert!(!second_web.matches("demo-web-1", &labels("demo", "web", "1", "False")));
        assert!(!second_web.matches("demo-db-2", &labels("demo", "db", "2", "False")));
    }

    #[test]
    fn flags_become_read_options() {
        let args = LogsArgs {
            follow: false,
            tail: "5".into(),
            since: Some("10m".into()),
            until: None,
            timestamps: true,
            no_color: true,
            no_log_prefix: true,
            index: None,
            services: Vec::new(),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let options = logs_options(&args, now).unwrap();
        assert_eq!(options.read.tail, Some(5));
        assert_eq!(options.read.since, Some(now - Duration::from_secs(600)));
        assert!(options.style.timestamps && !options.style.prefix && !options.style.color);
        let bad = LogsArgs {
            tail: "lots".into(),
            ..args
        };
        assert!(logs_options(&bad, now)
            .unwrap_err()
            .to_string()
            .starts_with("invalid --tail value \"lots\""));
    }
}
