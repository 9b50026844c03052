//! `rcompose ls`: the Compose projects of this state root, as `docker compose ls` lists
//! them: those with a running container (all with `-a`), each with its containers'
//! states counted ("exited(1), running(2)") and the Compose files its containers were
//! created from.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use serde_json::json;

use super::common::{split_filter, ListFormat};
use super::containers::is_up;
use super::ps::open_engine;
use super::GlobalOptions;
use crate::backend::native::NativeEngine;
use crate::orchestrator::labels;
use crate::orchestrator::plan::ObservedContainer;
use crate::ui;

#[derive(Debug, Clone, clap::Args)]
pub struct LsArgs {
    /// Show all stopped Compose projects
    #[arg(short, long)]
    pub all: bool,
    /// Only display project names
    #[arg(short, long)]
    pub quiet: bool,
    /// Format the output
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Filter output based on conditions provided (name=TEXT: names containing TEXT)
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
}

/// One line of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stack {
    name: String,
    status: String,
    config_files: String,
}

pub fn run(global: &GlobalOptions, args: &LsArgs) -> anyhow::Result<u8> {
    let names = name_filters(&args.filters)?;
    let engine = open_engine(global)?;
    let stacks: Vec<Stack> = stacks(&engine, args.all)?
        .into_iter()
        .filter(|stack| names.is_empty() || names.iter().any(|n| stack.name.contains(n)))
        .collect();
    let text = if args.quiet {
        stacks.iter().map(|s| format!("{}\n", s.name)).collect()
    } else {
        match args.format {
            ListFormat::Table => table(&stacks),
            ListFormat::Json => format!("{}\n", json_array(&stacks)),
        }
    };
    print!("{text}");
    Ok(0)
}

/// The values of the `name=` filters, the only ones Compose accepts.
fn name_filters(filters: &[String]) -> anyhow::Result<Vec<String>> {
    filters
        .iter()
        .map(|term| match split_filter(term)? {
            ("name", value) => Ok(value.to_owned()),
            (key, _) => bail!("invalid filter '{key}': `ls` filters by name only (name=TEXT)"),
        })
        .collect()
}

/// The projects with containers under the state root, by name.
fn stacks(engine: &NativeEngine, all: bool) -> anyhow::Result<Vec<Stack>> {
    let mut stacks = Vec::new();
    for project in project_names(engine)? {
        let containers: Vec<ObservedContainer> = engine
            .list(&project)
            .with_context(|| format!("listing the containers of project {project}"))?
            .into_iter()
            .filter(|c| all || is_up(&c.state))
            .collect();
        if containers.is_empty() {
            continue;
        }
        stacks.push(Stack {
            status: combined_status(&containers),
            config_files: config_files(&containers),
            name: project,
        });
    }
    Ok(stacks)
}

/// Every project named by a container's label, sorted.
fn project_names(engine: &NativeEngine) -> anyhow::Result<Vec<String>> {
    let runtime = engine.runtime();
    let mut names: Vec<String> = runtime
        .list()
        .context("listing the containers")?
        .iter()
        // A container removed meanwhile belongs to no project.
        .filter_map(|id| runtime.inspect(id).ok())
        .filter_map(|record| labels::project_of(&record.config.labels).map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// "exited(1), running(2)": each state with its count, states sorted.
fn combined_status(containers: &[ObservedContainer]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for container in containers {
        *counts.entry(container.state.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(state, count)| format!("{state}({count})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Compose files of the containers' labels, each once, in the order found.
fn config_files(containers: &[ObservedContainer]) -> String {
    let mut files: Vec<&str> = Vec::new();
    for container in containers {
        let Some(label) = container.labels.get(labels::CONFIG_FILES) else {
            continue;
        };
        for file in label.split(',').filter(|f| !f.is_empty()) {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    files.join(",")
}

fn table(stacks: &[Stack]) -> String {
    let rows: Vec<Vec<String>> = stacks
        .iter()
        .map(|s| vec![s.name.clone(), s.status.clone(), s.config_files.clone()])
        .collect();
    ui::table::render(&["NAME", "STATUS", "CONFIG FILES"], &rows)
}

fn json_array(stacks: &[Stack]) -> serde_json::Value {
    stacks
        .iter()
        .map(|s| json!({"Name": s.name, "Status": s.status, "ConfigFiles": s.config_files}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::labels::Labels;
    use crate::orchestrator::plan::ContainerState;

    fn container(name: &str, state: ContainerState, files: &str) -> ObservedContainer {
        let labels: Labels = [
            (labels::PROJECT, "demo"),
            (labels::SERVICE, "web"),
            (labels::CONTAINER_NUMBER, "1"),
            (labels::CONFIG_FILES, files),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        ObservedContainer::from_labels(name, name, state, labels).unwrap()
    }

    #[test]
    fn status_counts_each_state_in_order() {
        let containers = [
            container("a", ContainerState::Running, "/p/compose.yaml"),
            container(
                "b",
                ContainerState::Exited { exit_code: 1 },
                "/p/compose.yaml",
            ),
            container(
                "c",
                ContainerState::Running,
                "/p/compose.yaml,/p/override.yaml",
            ),
            container("d", ContainerState::Paused, "/p/compose.yaml"),
        ];
        assert_eq!(
            combined_status(&containers),
            "exited(1), paused(1), running(2)"
        );
        assert_eq!(
            config_files(&containers),
            "/p/compose.yaml,/p/override.yaml"
        );
    }

    #[test]
    fn only_name_filters_are_accepted() {
        assert_eq!(
            name_filters(&["name=web".into()]).unwrap(),
            vec!["web".to_string()]
        );
        assert_eq!(
            name_filters(&["status=running".into()])
                .unwrap_err()
                .to_string(),
            "invalid filter 'status': `ls` filters by name only (name=TEXT)"
        );
        assert!(name_filters(&["name".into()]).is_err());
    }

    #[test]
    fn table_and_json() {
        let stacks = [Stack {
            name: "demo".into(),
            status: "running(2)".into(),
            config_files: "/p/compose.yaml".into(),
        }];
        assert_eq!(
            table(&stacks),
            "NAME   STATUS       CONFIG FILES\ndemo   running(2)   /p/compose.yaml\n"
        );
        assert_eq!(
            json_array(&stacks).to_string(),
            r#"[{"Name":"demo","Status":"running(2)","ConfigFiles":"/p/compose.yaml"}]"#
        );
        assert_eq!(json_array(&[]).to_string(), "[]");
    }
}
