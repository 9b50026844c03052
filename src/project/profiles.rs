//! Profiles: services that declare `profiles` run only when one of them is active.
//!
//! Active profiles come from `--profile`/`COMPOSE_PROFILES`; `*` activates all. A service
//! named on the command line activates its own profiles, as Compose does, so
//! `rcompose up debug-tools` works without `--profile debug`.

use indexmap::IndexMap;

use super::model::{Project, Service};
use super::validate::dependency_graph;

#[derive(Debug, thiserror::Error)]
pub enum ProfilesError {
    #[error("no such service: {0}")]
    NoSuchService(String),
    #[error("{0}")]
    Graph(String),
    #[error("service {service:?} depends on service {dependency:?}, which is disabled: enable one of its profiles ({profiles}) with --profile or COMPOSE_PROFILES")]
    DependsOnDisabled {
        service: String,
        dependency: String,
        profiles: String,
    },
}

/// The project with only the enabled services, and the names of the others.
#[derive(Debug)]
pub struct Selection {
    pub project: Project,
    pub disabled: IndexMap<String, Service>,
}

pub fn apply(
    mut project: Project,
    active: &[String],
    targeted: &[String],
) -> Result<Selection, ProfilesError> {
    let mut active: Vec<String> = active.to_vec();
    for name in targeted {
        let service = project
            .services
            .get(name)
            .ok_or_else(|| ProfilesError::NoSuchService(name.clone()))?;
        active.extend(service.profiles.iter().cloned());
    }
    let all = active.iter().any(|p| p == "*");
    let is_enabled = |profiles: &[String]| {
        profiles.is_empty() || all || profiles.iter().any(|p| active.contains(p))
    };

    let (enabled, disabled): (Vec<_>, Vec<_>) = std::mem::take(&mut project.services)
        .into_iter()
        .partition(|(_, service)| is_enabled(&service.profiles));
    project.services = enabled.into_iter().collect();

    for (name, service) in project.services.iter_mut() {
        let mut dropped = Vec::new();
        for (dependency, condition) in &service.depends_on {
            let Some((_, target)) = disabled.iter().find(|(n, _)| n == dependency) else {
                continue;
            };
            if condition.required {
                return Err(ProfilesError::DependsOnDisabled {
                    service: name.clone(),
                    dependency: dependency.clone(),
                    profiles: target.profiles.join(", "),
                });
            }
            dropped.push(dependency.clone());
        }
        for dependency in dropped {
            service.depends_on.shift_remove(&dependency);
        }
    }
    Ok(Selection {
        project,
        disabled: disabled.into_iter().collect(),
    })
}

/// Every profile named by any service, enabled or not, sorted.
pub fn all_profiles<'a>(services: impl IntoIterator<Item = &'a Service>) -> Vec<String> {
    let mut profiles: Vec<String> = services
        .into_iter()
        .flat_map(|s| s.profiles.iter().cloned())
        .collect();
    profiles.sort();
    profiles.dedup();
    profiles
}

/// Keeps only the named services and what they depend on (`config web`, `up web`).
pub fn select(mut project: Project, names: &[String]) -> Result<Project, ProfilesError> {
    for name in names {
        if !project.services.contains_key(name) {
            return Err(ProfilesError::NoSuchService(name.clone()));
        }
    }
    let graph = dependency_graph(&project).map_err(|e| ProfilesError::Graph(e.to_string()))?;
    let selected: Vec<&str> = names.iter().map(String::as_str).collect();
    let keep: Vec<String> = graph
        .with_dependencies(&selected)
        .into_iter()
        .map(String::from)
        .collect();
    project.services.retain(|name, _| keep.contains(name));
    Ok(project)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::model;

    fn project(yaml: &str) -> Project {
        model::from_value(serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    const FILE: &str = r#"
name: p
services:
  web: {image: web}
  debug: {image: busybox, profiles: [debug]}
  ops: {image: busybox, profiles: [ops, debug]}
"#;

    fn names(selection: &Selection) -> Vec<&str> {
        selection
            .project
            .services
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn services_without_profiles_always_run() {
        let selection = apply(project(FILE), &[], &[]).unwrap();
        assert_eq!(names(&selection), ["web"]);
        assert_eq!(
            selection.disabled.keys().collect::<Vec<_>>(),
            ["debug", "ops"]
        );
    }

    #[test]
    fn active_profiles_and_star_enable_services() {
        let selection = apply(project(FILE), &["ops".into()], &[]).unwrap();
        assert_eq!(names(&selection), ["web", "ops"]);
        let selection = apply(project(FILE), &["*".into()], &[]).unwrap();
        assert_eq!(names(&selection), ["web", "debug", "ops"]);
    }

    #[test]
    fn targeted_service_enables_its_profiles() {
        let selection = apply(project(FILE), &[], &["debug".into()]).unwrap();
        assert_eq!(names(&selection), ["web", "debug", "ops"]);
        let err = apply(project(FILE), &[], &["nope".into()]).unwrap_err();
        assert_eq!(err.to_string(), "no such service: nope");
    }

    #[test]
    fn dependency_on_a_disabled_service() {
        let required = r#"
name: p
services:
  web: {image: web, depends_on: {db: {condition: service_started, required: true}}}
  db: {image: db, profiles: [data]}
"#;
        let err = apply(project(required), &[], &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("enable one of its profiles (data)"),
            "{err}"
        );
        let optional = required.replace("required: true", "required: false");
        let selection = apply(project(&optional), &[], &[]).unwrap();
        assert!(selection.project.services["web"].depends_on.is_empty());
    }
}
