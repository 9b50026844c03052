//! `rcompose down`: stops and removes the project's containers (dependents first),
//! then its networks, and with `-v` its volumes; never external resources. Goes past
//! every failure and reports them all. With `--rmi`, the services' images go last.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::bail;
use rcompose_runtime::image::store::{ImageId, Store, StoreError};

use super::up::ProjectContext;
use super::GlobalOptions;
use crate::backend::native::NativeEngine;
use crate::orchestrator::converge::{self, ConvergeOptions, Progress, ProgressEvent, ResourceKind};
use crate::orchestrator::plan::{self, DownOptions};
use crate::project::model::Project;

#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    /// Remove named volumes declared in the "volumes" section of the Compose file and
    /// anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Specify a shutdown timeout in seconds
    #[arg(short, long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Remove images used by services: "local" removes only images that don't have a
    /// custom tag ("image" field), "all" every image used by a service
    #[arg(long, value_enum, value_name = "TYPE")]
    pub rmi: Option<RemoveImages>,
}

/// `down --rmi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RemoveImages {
    Local,
    All,
}

/// The images `down --rmi` removes, by the name the project knows them by: a service
/// without `image:` uses (once built) the one Compose names `<project>-<service>`;
/// with `all`, the images named by `image:` too. Each once, in service order.
fn images_to_remove(project: &Project, which: RemoveImages) -> Vec<String> {
    let mut images: Vec<String> = Vec::new();
    for (name, service) in &project.services {
        let image = if service.image.is_empty() {
            format!("{}-{name}", project.name)
        } else if which == RemoveImages::All {
            service.image.clone()
        } else {
            continue;
        };
        if !images.contains(&image) {
            images.push(image);
        }
    }
    images
}

/// The images of every container left on the engine (any project's): never removed.
fn images_in_use(engine: &NativeEngine) -> anyhow::Result<HashSet<ImageId>> {
    let runtime = engine.runtime();
    let mut used = HashSet::new();
    for id in runtime.list()? {
        // A container removed meanwhile uses nothing.
        let Ok(record) = runtime.inspect(&id) else {
            continue;
        };
        if let Ok(image) = engine.image_store().resolve(&record.image) {
            used.insert(image.id);
        }
    }
    Ok(used)
}

/// Removes `images` from the store; one still used by a container is kept (with a
/// warning, as Compose does), one that is not there is skipped. Returns the failures.
fn remove_images(
    store: &Store,
    images: &[String],
    in_use: &HashSet<ImageId>,
    progress: Progress<'_>,
) -> Vec<String> {
    let report = |name: &str, status: &str| {
        progress(ProgressEvent {
            kind: ResourceKind::Image,
            name: name.to_owned(),
            status: status.to_owned(),
        })
    };
    let mut errors = Vec::new();
    for name in images {
        let image = match store.resolve(name) {
            Ok(image) => image,
            Err(StoreError::ImageNotFound(_)) => continue,
            Err(err) => {
                errors.push(format!("image {name}: {err}"));
                continue;
            }
        };
        if in_use.contains(&image.id) {
            report(name, "Resource is still in use");
            continue;
        }
        report(name, "Removing");
        match store.remove(name, false) {
            Ok(_) => report(name, "Removed"),
            Err(err) => errors.push(format!("image {name}: removing: {err}")),
        }
    }
    errors
}

pub fn run(global: &GlobalOptions, args: &DownArgs) -> anyhow::Result<u8> {
    let context = ProjectContext::open(global, &[])?;
    let project = &context.project;
    let observed = context.engine.list(&project.name)?;
    let options = DownOptions {
        volumes: args.volumes,
        remove_orphans: args.remove_orphans,
    };
    let mut down_plan = plan::plan_down(project, &observed, options)?;
    // Services switched off by profiles are no orphans: their containers go too.
    for removal in &mut down_plan.containers {
        if context.inactive_services.contains(&removal.service) {
            removal.orphan = false;
        }
    }
    if !down_plan.orphans_left.is_empty() {
        let names: Vec<&str> = down_plan
            .orphans_left
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        eprintln!(
            "WARN[0000] Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            names.join(", ")
        );
    }
    let removed_any = AtomicBool::new(false);
    let print = context.progress();
    let progress = |event: ProgressEvent| {
        if event.status == "Removed" {
            removed_any.store(true, Ordering::Relaxed);
        }
        print(event);
    };
    let mut errors = converge::down(
        &context.engine,
        project,
        &down_plan,
        ConvergeOptions {
            parallel: context.parallel,
            timeout: args.timeout.map(Duration::from_secs),
            renew_anonymous_volumes: false,
        },
        &progress,
    );
    if let Some(which) = args.rmi {
        let images = images_to_remove(project, which);
        let removed = context.engine.with_engine(|engine| {
            images_in_use(engine)
                .map(|in_use| remove_images(engine.image_store(), &images, &in_use, &progress))
        });
        match removed {
            Ok(more) => errors.extend(more),
            Err(err) => errors.push(format!("listing the images in use: {err}")),
        }
    }
    // With no container left, the project's supervisor cleans up and exits.
    crate::supervisor::reload_if_running(&global.root, &project.name);
    if errors.is_empty() && !removed_any.load(Ordering::Relaxed) {
        eprintln!(
            "WARN[0000] No resource found to remove for project {:?}.",
            project.name
        );
    }
    if !errors.is_empty() {
        bail!(
            "down left the project incomplete:\n  - {}",
            errors.join("\n  - ")
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rcompose_runtime::image::reference::Reference;

    use super::*;
    use crate::backend::native::tests::project;

    #[test]
    fn local_is_the_images_compose_named_and_all_adds_the_tagged_ones() {
        let project = project(
            "name: demo\nservices:\n  app: {build: .}\n  web: {image: busybox}\n  db: {image: busybox}\n",
        );
        assert_eq!(
            images_to_remove(&project, RemoveImages::Local),
            vec!["demo-app".to_string()]
        );
        assert_eq!(
            images_to_remove(&project, RemoveImages::All),
            vec!["demo-app".to_string(), "busybox".to_string()]
        );
    }

    /// An empty one-layer image tagged `name`.
    fn empty_image(store: &Store, name: &str) -> ImageId {
        let reference = Reference::parse(name).unwrap();
        let empty_tar = vec![0u8; 1024];
        rcompose_runtime::image::import::import(store, &empty_tar[..], Some(&reference), &[])
            .unwrap()
    }

    #[test]
    fn images_are_removed_unless_a_container_uses_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        empty_image(&store, "demo-app");
        let used = empty_image(&store, "busybox:latest");
        let lines = Mutex::new(Vec::new());
        let progress = |event: ProgressEvent| lines.lock().unwrap().push(event.to_string());
        let images = ["demo-app".to_string(), "busybox".into(), "gone".into()];
        let errors = remove_images(&store, &images, &HashSet::from([used]), &progress);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            lines.into_inner().unwrap(),
            [
                " Image demo-app  Removing",
                " Image demo-app  Removed",
                " Image busybox  Resource is still in use",
            ]
        );
        assert!(store.resolve("demo-app").is_err());
        assert!(store.resolve("busybox").is_ok());
    }
}
