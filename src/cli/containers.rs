//! What the commands acting on a project's existing containers (`rm`, `kill`, `pause`,
//! `unpause`) share: the project with its named services checked, and the choice of
//! its containers by service.

use anyhow::bail;

use super::up::ProjectContext;
use super::GlobalOptions;
use crate::orchestrator::converge::{ProgressEvent, ResourceKind};
use crate::orchestrator::plan::{ContainerState, ObservedContainer};

/// The project loaded from its Compose files, with `services` checked to exist.
pub(super) fn open_project(
    global: &GlobalOptions,
    services: &[String],
) -> anyhow::Result<ProjectContext> {
    let context = ProjectContext::open(global, services)?;
    if let Some(unknown) = services
        .iter()
        .find(|s| !context.project.services.contains_key(*s))
    {
        bail!("no such service: {unknown}");
    }
    Ok(context)
}

/// Whether `service` belongs to the project: declared, even if a profile switches it
/// off (its containers are no orphans, as `down` sees them).
pub(super) fn is_declared(context: &ProjectContext, service: &str) -> bool {
    context.project.services.contains_key(service)
        || context.inactive_services.iter().any(|s| s == service)
}

/// The containers of `services` (all when empty), sorted by name.
pub(super) fn of_services<'a>(
    observed: &'a [ObservedContainer],
    services: &[String],
) -> Vec<&'a ObservedContainer> {
    let mut chosen: Vec<&ObservedContainer> = observed
        .iter()
        .filter(|c| services.is_empty() || services.contains(&c.service))
        .collect();
    chosen.sort_by(|a, b| a.name.cmp(&b.name));
    chosen
}

/// Running as Docker lists them without `--all`: paused containers are running too.
pub(super) fn is_up(state: &ContainerState) -> bool {
    matches!(
        state,
        ContainerState::Running | ContainerState::Paused | ContainerState::Restarting
    )
}

/// A progress line about a container.
pub(super) fn container_event(name: &str, status: &str) -> ProgressEvent {
    ProgressEvent {
        kind: ResourceKind::Container,
        name: name.to_owned(),
        status: status.to_owned(),
    }
}

/// Fails with every per-container error, one a line, after `what` ("kill").
pub(super) fn fail_on(what: &str, errors: Vec<String>) -> anyhow::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    bail!("{what} failed:\n  - {}", errors.join("\n  - "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::labels::{self, Labels};

    fn container(name: &str, service: &str, state: ContainerState) -> ObservedContainer {
        let labels: Labels = [
            (labels::PROJECT, "demo"),
            (labels::SERVICE, service),
            (labels::CONTAINER_NUMBER, "1"),
            (labels::ONEOFF, "False"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        ObservedContainer::from_labels(name, name, state, labels).unwrap()
    }

    #[test]
    fn containers_are_chosen_by_service_and_sorted() {
        let observed = [
            container("demo-web-2", "web", ContainerState::Running),
            container("demo-db-1", "db", ContainerState::Running),
            container("demo-web-1", "web", ContainerState::Paused),
        ];
        let names = |chosen: Vec<&ObservedContainer>| -> Vec<String> {
            chosen.iter().map(|c| c.name.clone()).collect()
        };
        assert_eq!(
            names(of_services(&observed, &[])),
            ["demo-db-1", "demo-web-1", "demo-web-2"]
        );
        assert_eq!(
            names(of_services(&observed, &["web".into()])),
            ["demo-web-1", "demo-web-2"]
        );
        assert!(is_up(&ContainerState::Paused));
        assert!(!is_up(&ContainerState::Exited { exit_code: 0 }));
        assert!(!is_up(&ContainerState::Created));
    }

    #[test]
    fn failures_are_listed_one_a_line() {
        assert!(fail_on("kill", Vec::new()).is_ok());
        let err = fail_on("kill", vec!["a: x".into(), "b: y".into()]).unwrap_err();
        assert_eq!(err.to_string(), "kill failed:\n  - a: x\n  - b: y");
    }
}
