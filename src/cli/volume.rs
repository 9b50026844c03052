//! `rcompose volume ...` on the embedded engine's volumes, as `docker volume` drives
//! Docker's (create, ls, inspect, rm, prune), and `rcompose volumes`, Compose's listing
//! of the current project's volumes. The state root is the global `--root`.
//!
//! `-f` is the global `--file`, so force is `--force` only (as for `image rm`).

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::Subcommand;
use rcompose_runtime::volume::{LabelFilter, Volume, VolumeFilter, VolumeStore};

use super::common::{
    confirm, key_values, label_filter, parse_bool_filter, split_filter, ListFormat,
};
use super::{GlobalOptions, EXIT_FAILURE};
use crate::project::loader::{self, LoadSettings};
use crate::ui;
use crate::ui::size::human_size;

/// Compose's project label: `ls -p NAME` and `rcompose volumes` select on it.
const PROJECT_LABEL: &str = "com.docker.compose.project";

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create {
        #[arg(value_name = "VOLUME")]
        name: Option<String>,
        /// Volume driver (only "local")
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Driver options (type, device, o), repeatable
        #[arg(short, long = "opt", value_name = "KEY=VALUE")]
        opts: Vec<String>,
        /// Metadata for the volume, repeatable
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// List volumes (all of them; only the project's with -p NAME)
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on volumes, as JSON
    Inspect {
        #[arg(required = true, value_name = "VOLUME")]
        names: Vec<String>,
    },
    /// Remove volumes; a volume in use by a container is never removed
    #[command(alias = "remove")]
    Rm {
        /// Do not fail on volumes that do not exist
        #[arg(long)]
        force: bool,
        #[arg(required = true, value_name = "VOLUME")]
        names: Vec<String>,
    },
    /// Remove unused volumes: anonymous ones, or all unused with --all
    Prune {
        /// Remove all unused volumes, not just anonymous ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(long)]
        force: bool,
        /// Filter values (label=KEY[=VALUE], label!=KEY[=VALUE], all=true)
        #[arg(long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Filter values (label=..., label!=..., dangling=true|false, name=..., driver=...)
    #[arg(long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
}

pub fn run(global: &GlobalOptions, command: &VolumeCommand) -> anyhow::Result<u8> {
    let store = open_store(global)?;
    match command {
        VolumeCommand::Create {
            name,
            driver,
            opts,
            labels,
        } => create(&store, name.as_deref(), driver, opts, labels),
        VolumeCommand::Ls(args) => {
            let mut filter = parse_list_filters(&args.filters)?;
            if let Some(project) = &global.project_name {
                filter.labels.push(project_label(project));
            }
            list(&store, &filter, args)
        }
        VolumeCommand::Inspect { names } => inspect(&store, names),
        VolumeCommand::Rm { force, names } => remove(&store, names, *force),
        VolumeCommand::Prune {
            all,
            force,
            filters,
        } => prune(&store, *all, *force, filters),
    }
}

/// `rcompose volumes`: the volumes labelled with the current project's name.
pub fn run_project(global: &GlobalOptions, args: &ListArgs) -> anyhow::Result<u8> {
    let inputs = global.project_inputs()?;
    let loaded = loader::load(&inputs, &LoadSettings::default())?;
    let store = open_store(global)?;
    let mut filter = parse_list_filters(&args.filters)?;
    filter.labels.push(project_label(&loaded.project.name));
    list(&store, &filter, args)
}

fn open_store(global: &GlobalOptions) -> anyhow::Result<VolumeStore> {
    VolumeStore::open(&global.root)
        .with_context(|| format!("opening the volume store under {}", global.root.display()))
}

fn project_label(project: &str) -> LabelFilter {
    LabelFilter::parse(&format!("{PROJECT_LABEL}={project}"), false)
}

fn create(
    store: &VolumeStore,
    name: Option<&str>,
    driver: &str,
    opts: &[String],
    labels: &[String],
) -> anyhow::Result<u8> {
    let opts = key_values(opts, "option")?;
    let labels = key_values(labels, "label")?;
    let volume = match name {
        Some(name) => {
            rcompose_runtime::volume::validate_driver(name, driver)?;
            store.create(name, &opts, &labels)?.volume
        }
        None if opts.is_empty() => store.create_anonymous(&labels)?,
        None => bail!("driver options need a volume name: rcompose volume create [OPTIONS] VOLUME"),
    };
    println!("{}", volume.name);
    Ok(0)
}

/// Docker's `--filter` terms for `volume ls`.
fn parse_list_filters(filters: &[String]) -> anyhow::Result<VolumeFilter> {
    let mut filter = VolumeFilter::default();
    for term in filters {
        let (key, value) = split_filter(term)?;
        if let Some(label) = label_filter(key, value) {
            filter.labels.push(label);
            continue;
        }
        match key {
            "dangling" => filter.dangling = Some(parse_bool_filter(term, value)?),
            "name" => filter.name = Some(value.to_string()),
            "driver" => filter.driver = Some(value.to_string()),
            _ => bail!("invalid filter '{key}'"),
        }
    }
    Ok(filter)
}

fn list(store: &VolumeStore, filter: &VolumeFilter, args: &ListArgs) -> anyhow::Result<u8> {
    let volumes = store.list(filter)?;
    let mut out = String::new();
    if args.quiet {
        for volume in &volumes {
            out.push_str(&volume.name);
            out.push('\n');
        }
    } else if args.format == ListFormat::Json {
        for volume in &volumes {
            out.push_str(&list_json(volume).to_string());
            out.push('\n');
        }
    } else {
        let rows: Vec<Vec<String>> = volumes
            .iter()
            .map(|v| vec![v.driver.clone(), v.name.clone()])
            .collect();
        out = ui::table::render(&["DRIVER", "VOLUME NAME"], &rows);
    }
    print!("{out}");
    Ok(0)
}

/// One line of `docker volume ls --format json`.
fn list_json(volume: &Volume) -> serde_json::Value {
    let labels: Vec<String> = volume
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    serde_json::json!({
        "Availability": "N/A",
        "Driver": volume.driver,
        "Group": "N/A",
        "Labels": labels.join(","),
        "Links": "N/A",
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Scope": "local",
        "Size": "N/A",
        "Status": "N/A",
    })
}

/// `docker volume inspect`'s document for one volume.
fn inspect_json(volume: &Volume) -> serde_json::Value {
    let or_null = |map: &BTreeMap<String, String>| {
        if map.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(map)
        }
    };
    serde_json::json!({
        "CreatedAt": volume.created,
        "Driver": volume.driver,
        "Labels": or_null(&volume.labels),
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Options": or_null(&volume.driver_opts),
        "Scope": "local",
    })
}

/// Prints what was found; each missing volume is an error line and exit code 1.
fn inspect(store: &VolumeStore, names: &[String]) -> anyhow::Result<u8> {
    let mut found = Vec::new();
    let mut code = 0;
    for name in names {
        match store.inspect(name) {
            Ok(volume) => found.push(inspect_json(&volume)),
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

/// Removes each volume in turn; failures are reported and the rest still go.
fn remove(store: &VolumeStore, names: &[String], force: bool) -> anyhow::Result<u8> {
    let mut code = 0;
    for name in names {
        match store.remove(name, force) {
            Ok(_) => println!("{name}"),
            Err(err) => {
                eprintln!("Error: {err}");
                code = EXIT_FAILURE;
            }
        }
    }
    Ok(code)
}

fn prune(store: &VolumeStore, all: bool, force: bool, filters: &[String]) -> anyhow::Result<u8> {
    let mut filter = VolumeFilter::default();
    let mut all = all;
    for term in filters {
        let (key, value) = split_filter(term)?;
        if let Some(label) = label_filter(key, value) {
            filter.labels.push(label);
            continue;
        }
        match key {
            "all" => all = parse_bool_filter(term, value)?,
            _ => bail!("invalid filter '{key}'"),
        }
    }
    let what = if all {
        "all local volumes"
    } else {
        "anonymous local volumes"
    };
    if !force && !confirm(&format!(
        "WARNING! This will remove {what} not used by at least one container.\nAre you sure you want to continue? [y/N] "
    ))? {
        return Ok(0);
    }
    let report = store.prune(&filter, all)?;
    if !report.removed.is_empty() {
        println!("Deleted Volumes:");
        for name in &report.removed {
            println!("{name}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(report.reclaimed_bytes)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_filters_parse_like_docker() {
        let filter = parse_list_filters(&[
            "label=com.docker.compose.project=demo".into(),
            "label!=tier".into(),
            "dangling=true".into(),
            "name=data".into(),
        ])
        .unwrap();
        assert_eq!(filter.labels.len(), 2);
        assert_eq!(filter.labels[0].value.as_deref(), Some("demo"));
        assert!(filter.labels[1].negate);
        assert_eq!(filter.dangling, Some(true));
        assert_eq!(filter.name.as_deref(), Some("data"));
        let err = parse_list_filters(&["colour=red".into()]).unwrap_err();
        assert_eq!(err.to_string(), "invalid filter 'colour'");
        assert!(parse_list_filters(&["dangling=maybe".into()]).is_err());
        assert!(parse_list_filters(&["label".into()]).is_err());
    }
}
