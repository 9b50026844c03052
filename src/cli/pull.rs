//! `rcompose pull [SERVICE...]`, and the pull step of `up`/`create`: which images the
//! policies ask for ([`crate::orchestrator::pull`]), pulled several at once, with
//! Compose's progress (`Image busybox:1 Pulling` ... `Pulled`, layer lines in plain
//! mode unless quiet).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{bail, Context};
use clap::ValueEnum;
use rcompose_runtime::image::reference::Reference;
use rcompose_runtime::image::registry::{
    ProgressEvent as LayerEvent, ProgressStatus, RegistryClient,
};
use rcompose_runtime::image::store::Store;

use super::image::open_store;
use super::GlobalOptions;
use crate::graph::{Dependency, ServiceGraph};
use crate::orchestrator::converge::{parallel_limit, ProgressEvent, ResourceKind};
use crate::orchestrator::pull::{
    pull_all, select_pulls, LocalImages, PullError, PullJob, PullPolicy, PullPurpose, PullRecord,
    PullReporter, PullSelection,
};
use crate::project::model::Project;
use crate::ui::progress::{ProgressDisplay, ProgressMode};

#[derive(Debug, Clone, clap::Args)]
pub struct PullArgs {
    /// Pull without printing progress information
    #[arg(short, long)]
    pub quiet: bool,
    /// Pull what it can and ignore images with pull failures
    #[arg(long)]
    pub ignore_pull_failures: bool,
    /// Also pull services declared as dependencies
    #[arg(long)]
    pub include_deps: bool,
    /// Apply pull policy ("missing"|"always")
    #[arg(long, value_enum)]
    pub policy: Option<PullCommandPolicy>,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullCommandPolicy {
    Missing,
    Always,
}

/// `up --pull` / `create --pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullFlag {
    Always,
    Missing,
    Never,
}

impl PullFlag {
    pub fn policy(self) -> PullPolicy {
        match self {
            PullFlag::Always => PullPolicy::Always,
            PullFlag::Missing => PullPolicy::Missing,
            PullFlag::Never => PullPolicy::Never,
        }
    }
}

/// How `up` pulls: `--pull` and `--quiet-pull`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpPull {
    pub forced: Option<PullPolicy>,
    pub quiet: bool,
}

pub fn run(global: &GlobalOptions, args: &PullArgs) -> anyhow::Result<u8> {
    let project = super::up::load_targeted(&global.project_inputs()?, &args.services)?.project;
    let services = services_to_pull(&project, &args.services, args.include_deps)?;
    let store = open_store(global)?;
    let forced = args.policy.map(|policy| match policy {
        PullCommandPolicy::Missing => PullPolicy::Missing,
        PullCommandPolicy::Always => PullPolicy::Always,
    });
    let mode = if args.quiet {
        ProgressMode::Quiet
    } else {
        super::up::progress_mode(global.progress)
    };
    let display = Arc::new(ProgressDisplay::new(mode));
    let selection = select(
        &project,
        &store,
        &services,
        PullPurpose::PullCommand,
        forced,
    )?;
    // Lines of their own (not resources: no JSON event of Compose's shape fits).
    if matches!(mode, ProgressMode::Plain | ProgressMode::Tty) {
        for (service, reason) in &selection.skipped {
            display.message(&format!(" Service {service}  {}", reason.as_str()));
        }
    }
    let failures = pull_selected(global, &store, &selection, &display, args.quiet)?;
    display.finish();
    if failures.is_empty() {
        return Ok(0);
    }
    if args.ignore_pull_failures {
        for failure in &failures {
            eprintln!("WARN[0000] {failure}");
        }
        return Ok(0);
    }
    bail!("{}", failures.join("\n"))
}

/// The pull step of `up` and `create`, for the services about to be created: pulls
/// what the policies (or `--pull`) ask for; any failure of an image that cannot be
/// built fails the command before anything is created.
pub fn pull_before_up(
    global: &GlobalOptions,
    project: &Project,
    services: &[String],
    pull: UpPull,
    display: &Arc<ProgressDisplay>,
) -> anyhow::Result<()> {
    let store = open_store(global)?;
    let selection = select(project, &store, services, PullPurpose::Up, pull.forced)?;
    let failures = pull_selected(global, &store, &selection, display, pull.quiet)?;
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{}", failures.join("\n"))
    }
}

/// The named services (all when none is), with `--include-deps` their dependencies.
pub fn services_to_pull(
    project: &Project,
    named: &[String],
    include_deps: bool,
) -> anyhow::Result<Vec<String>> {
    if let Some(unknown) = named.iter().find(|s| !project.services.contains_key(*s)) {
        bail!("no such service: {unknown}");
    }
    if named.is_empty() || !include_deps {
        return Ok(named.to_vec());
    }
    let graph = ServiceGraph::new(project.services.iter().map(|(name, service)| {
        (
            name.as_str(),
            service
                .depends_on
                .keys()
                .map(|dependency| Dependency::optional(dependency.as_str())),
        )
    }))?;
    let selected: Vec<&str> = named.iter().map(String::as_str).collect();
    Ok(graph
        .with_dependencies(&selected)
        .into_iter()
        .map(str::to_owned)
        .collect())
}

fn select(
    project: &Project,
    store: &Store,
    services: &[String],
    purpose: PullPurpose,
    forced: Option<PullPolicy>,
) -> anyhow::Result<PullSelection> {
    let record = PullRecord::load(store.root())?;
    let present = |reference: &Reference| {
        store
            .resolve_reference(reference)
            .map(|image| image.is_some())
            .map_err(|err| err.to_string())
    };
    let local = LocalImages {
        present: &present,
        record: &record,
        now: SystemTime::now(),
    };
    Ok(select_pulls(project, services, purpose, forced, &local)?)
}

/// Pulls the selection; the messages of the failures that matter (a buildable
/// image's failure is a warning, as Compose would build it).
fn pull_selected(
    global: &GlobalOptions,
    store: &Store,
    selection: &PullSelection,
    display: &Arc<ProgressDisplay>,
    quiet: bool,
) -> anyhow::Result<Vec<String>> {
    if selection.jobs.is_empty() {
        return Ok(Vec::new());
    }
    let client =
        RegistryClient::from_state_root(&global.root).context("reading the registry settings")?;
    let mut record = PullRecord::load(store.root())?;
    let env_limit = std::env::var("COMPOSE_PARALLEL_LIMIT").ok();
    let parallel = parallel_limit(global.parallel, env_limit.as_deref());
    let reporter = Arc::new(DisplayReporter::new(Arc::clone(display), quiet));
    let results = pull_all(
        &client,
        store,
        &selection.jobs,
        parallel,
        reporter,
        &mut record,
    )?;
    let mut failures = Vec::new();
    for (job, result) in selection.jobs.iter().zip(results) {
        match result {
            Ok(_) => {}
            Err(err) if job.buildable => display.message(&format!(
                "WARN[0000] {}; it must be built: rcompose cannot build images yet",
                error_text(&err)
            )),
            Err(err) => failures.push(error_text(&err)),
        }
    }
    Ok(failures)
}

/// The error with each cause a message does not already say, as the CLI prints
/// errors.
fn error_text(err: &PullError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Sends pull progress to the command's display: the image's status as a Compose
/// event, layer state changes as plain lines (plain mode, not quiet).
struct DisplayReporter {
    display: Arc<ProgressDisplay>,
    layers: bool,
    /// Last status shown per (image, layer), to print changes only.
    shown: Mutex<HashMap<(String, String), String>>,
}

impl DisplayReporter {
    fn new(display: Arc<ProgressDisplay>, quiet: bool) -> DisplayReporter {
        let layers = !quiet && display.mode() == ProgressMode::Plain;
        DisplayReporter {
            display,
            layers,
            shown: Mutex::new(HashMap::new()),
        }
    }
}

impl PullReporter for DisplayReporter {
    fn image(&self, job: &PullJob, status: &str) {
        self.display.event(ProgressEvent {
            kind: ResourceKind::Image,
            name: job.image.clone(),
            status: status.to_owned(),
        });
    }

    fn layer(&self, job: &PullJob, event: LayerEvent) {
        if !self.layers {
            return;
        }
        if let Some(line) = layer_line(&self.shown, &job.image, &event) {
            self.display.message(&line);
        }
    }
}

/// ` 3f4d90098f5b Downloading`, once per change of a layer's state; nothing for the
/// tag being resolved (the image's own `Pulling` says it).
fn layer_line(
    shown: &Mutex<HashMap<(String, String), String>>,
    image: &str,
    event: &LayerEvent,
) -> Option<String> {
    if matches!(event.status, ProgressStatus::Resolving) {
        return None;
    }
    let status = event.status.to_string();
    let mut shown = shown.lock().unwrap_or_else(|e| e.into_inner());
    let key = (image.to_owned(), event.id.clone());
    if shown.get(&key) == Some(&status) {
        return None;
    }
    shown.insert(key, status.clone());
    Some(format!(" {} {status}", event.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_deps_adds_the_dependencies_of_the_named_services() {
        let project = crate::backend::native::tests::project(
            "services:\n  web: {image: w, depends_on: [api]}\n  api: {image: a, depends_on: [db]}\n  db: {image: d}\n  other: {image: o}\n",
        );
        assert_eq!(
            services_to_pull(&project, &["web".into()], false).unwrap(),
            ["web"]
        );
        assert_eq!(
            services_to_pull(&project, &["web".into()], true).unwrap(),
            ["db", "api", "web"]
        );
        assert!(services_to_pull(&project, &[], true).unwrap().is_empty());
        assert_eq!(
            services_to_pull(&project, &["nope".into()], false)
                .unwrap_err()
                .to_string(),
            "no such service: nope"
        );
    }

    #[test]
    fn layer_lines_show_each_state_change_once() {
        let shown = Mutex::new(HashMap::new());
        let event = |status| LayerEvent {
            id: "3f4d90098f5b".into(),
            status,
        };
        assert_eq!(
            layer_line(&shown, "a:1", &event(ProgressStatus::Resolving)),
            None
        );
        assert_eq!(
            layer_line(&shown, "a:1", &event(ProgressStatus::Waiting)).as_deref(),
            Some(" 3f4d90098f5b Pulling fs layer")
        );
        let downloading = |current| ProgressStatus::Downloading { current, total: 9 };
        assert!(layer_line(&shown, "a:1", &event(downloading(1))).is_some());
        assert_eq!(layer_line(&shown, "a:1", &event(downloading(5))), None);
        // The same layer in another image is another line.
        assert!(layer_line(&shown, "b:1", &event(downloading(5))).is_some());
        assert_eq!(
            layer_line(&shown, "a:1", &event(ProgressStatus::PullComplete)).as_deref(),
            Some(" 3f4d90098f5b Pull complete")
        );
    }

    #[test]
    fn pull_flags_map_to_policies() {
        assert_eq!(PullFlag::Never.policy(), PullPolicy::Never);
        assert_eq!(PullFlag::Always.policy(), PullPolicy::Always);
        assert_eq!(PullFlag::Missing.policy(), PullPolicy::Missing);
    }
}
