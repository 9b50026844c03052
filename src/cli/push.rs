//! `rcompose push [SERVICE...]`: pushes each service's image to its registry.
//!
//! Compose pushes only the images of services with a `build` section; rcompose cannot
//! build, so every service naming an image pushes it (each image once).

use std::sync::Arc;

use anyhow::{bail, Context};
use rcompose_runtime::image::reference::Reference;
use rcompose_runtime::image::registry::{self, Progress as LayerProgress, RegistryClient};
use rcompose_runtime::image::store::Store;

use super::GlobalOptions;
use crate::orchestrator::converge::{ProgressEvent, ResourceKind};
use crate::orchestrator::pull::PullError;
use crate::project::loader::{self, LoadSettings};
use crate::project::model::Project;
use crate::ui::progress::{ProgressDisplay, ProgressMode};

#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// Push what it can and ignore images with push failures
    #[arg(long)]
    pub ignore_push_failures: bool,
    /// Push without printing progress information
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// One image to push and the first service naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PushJob {
    service: String,
    image: String,
    reference: Reference,
}

pub fn run(global: &GlobalOptions, args: &PushArgs) -> anyhow::Result<u8> {
    let inputs = global.project_inputs()?;
    let settings = LoadSettings {
        targeted_services: args.services.clone(),
        ..LoadSettings::default()
    };
    let loaded = loader::load(&inputs, &settings)?;
    for warning in &loaded.warnings {
        eprintln!("WARN[0000] {warning}");
    }
    let jobs = push_jobs(&loaded.project, &args.services)?;
    let store = super::image::open_store(global)?;
    let client =
        RegistryClient::from_state_root(&global.root).context("reading the registry settings")?;
    let mode = if args.quiet {
        ProgressMode::Quiet
    } else {
        super::up::progress_mode(global.progress)
    };
    let display = Arc::new(ProgressDisplay::new(mode));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut failures = Vec::new();
    for job in &jobs {
        if let Err(err) = runtime.block_on(push_one(&client, &store, job, &display)) {
            failures.push(err.to_string());
        }
    }
    display.finish();
    if failures.is_empty() {
        return Ok(0);
    }
    if args.ignore_push_failures {
        for failure in &failures {
            eprintln!("WARN[0000] {failure}");
        }
        return Ok(0);
    }
    bail!("{}", failures.join("\n"))
}

/// The images of the named services (all when none is), each once, in project order.
fn push_jobs(project: &Project, named: &[String]) -> anyhow::Result<Vec<PushJob>> {
    if let Some(unknown) = named.iter().find(|s| !project.services.contains_key(*s)) {
        bail!("no such service: {unknown}");
    }
    let mut jobs: Vec<PushJob> = Vec::new();
    for (name, service) in &project.services {
        if service.image.is_empty() || !(named.is_empty() || named.contains(name)) {
            continue;
        }
        let reference =
            Reference::parse(&service.image).map_err(|source| PullError::Reference {
                service: name.clone(),
                image: service.image.clone(),
                source,
            })?;
        if jobs.iter().all(|job| job.reference != reference) {
            jobs.push(PushJob {
                service: name.clone(),
                image: service.image.clone(),
                reference,
            });
        }
    }
    Ok(jobs)
}

async fn push_one(
    client: &RegistryClient,
    store: &Store,
    job: &PushJob,
    display: &ProgressDisplay,
) -> Result<(), PullError> {
    let report = |status: &str| {
        display.event(ProgressEvent {
            kind: ResourceKind::Image,
            name: job.image.clone(),
            status: status.to_owned(),
        })
    };
    report("Pushing");
    match registry::push(client, store, &job.reference, &LayerProgress::none()).await {
        Ok(_) => {
            report("Pushed");
            Ok(())
        }
        Err(source) => {
            report("Error");
            Err(PullError::Push {
                service: job.service.clone(),
                image: job.image.clone(),
                source: Box::new(source),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_image_is_pushed_once_and_services_without_one_are_skipped() {
        let project = crate::backend::native::tests::project(
            "services:\n  web: {image: 'registry.lan/app:1'}\n  worker: {image: 'registry.lan/app:1'}\n  built: {build: .}\n  db: {image: 'registry.lan/db:2'}\n",
        );
        let jobs = push_jobs(&project, &[]).unwrap();
        let names: Vec<(&str, &str)> = jobs
            .iter()
            .map(|j| (j.service.as_str(), j.image.as_str()))
            .collect();
        assert_eq!(
            names,
            [("web", "registry.lan/app:1"), ("db", "registry.lan/db:2")]
        );
        let only_db = push_jobs(&project, &["db".into()]).unwrap();
        assert_eq!(only_db.len(), 1);
        assert_eq!(
            push_jobs(&project, &["nope".into()])
                .unwrap_err()
                .to_string(),
            "no such service: nope"
        );
    }

    #[test]
    fn a_push_of_an_image_not_in_the_store_names_service_and_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("images")).unwrap();
        let client = RegistryClient::from_state_root(dir.path()).unwrap();
        let job = PushJob {
            service: "web".into(),
            image: "127.0.0.1:9/app:1".into(),
            reference: Reference::parse("127.0.0.1:9/app:1").unwrap(),
        };
        let display = ProgressDisplay::new(ProgressMode::Quiet);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = runtime
            .block_on(push_one(&client, &store, &job, &display))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("service web: pushing image 127.0.0.1:9/app:1 failed: "),
            "{err}"
        );
    }
}
