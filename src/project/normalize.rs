//! Normalization: the implicit parts of a Compose model made explicit, as Compose v2 does
//! before printing or running a project.
//!
//! - services without `networks` or `network_mode` join the implicit `default` network,
//!   which is declared when some service uses it;
//! - resources get their engine names (`<project>_<key>`; external ones keep their key);
//! - `build` gets its default context and Dockerfile;
//! - `env_file` is read and folded under `environment` (`environment` wins), and
//!   `label_file` under `labels`; variables listed without a value take the project's;
//! - links, `volumes_from` and `service:` namespaces become `depends_on` entries.

use std::path::Path;

use indexmap::IndexMap;

use super::discover::Environment;
use super::dotenv;
use super::model::{Project, Service, ServiceDependency};

#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error("services.{service}.env_file: env file {path} not found: create it or mark it `required: false`")]
    MissingEnvFile { service: String, path: String },
    #[error("services.{service}.env_file: {path}: {message}")]
    EnvFile {
        service: String,
        path: String,
        message: String,
    },
    #[error("services.{service}.label_file: {path}: {message}")]
    LabelFile {
        service: String,
        path: String,
        message: String,
    },
}

pub struct Options<'a> {
    pub project_directory: &'a Path,
    /// Variables for `environment` entries given without a value.
    pub environment: &'a Environment,
    /// Fold `env_file` into `environment` (off for `config --no-env-resolution`).
    pub resolve_env_files: bool,
}

pub fn normalize(project: &mut Project, options: &Options) -> Result<(), NormalizeError> {
    let mut uses_default_network = false;
    for (name, service) in project.services.iter_mut() {
        if service.networks.is_empty() && service.network_mode.is_empty() {
            service.networks.insert("default".into(), None);
        }
        uses_default_network |= service.networks.contains_key("default");
        if service.pull_policy == "if_not_present" {
            service.pull_policy = "missing".into();
        }
        if let Some(build) = service.build.as_mut() {
            if build.context.is_empty() {
                build.context = options.project_directory.to_string_lossy().into_owned();
            }
            if build.dockerfile.is_empty() && build.dockerfile_inline.is_empty() {
                build.dockerfile = "Dockerfile".into();
            }
            resolve_unset(&mut build.args, options.environment);
        }
        if options.resolve_env_files {
            fold_env_files(name, service, options.environment)?;
        }
        resolve_unset(&mut service.environment, options.environment);
        fold_label_files(name, service)?;
        add_implicit_dependencies(service);
    }
    if uses_default_network && !project.networks.contains_key("default") {
        project
            .networks
            .insert("default".into(), Default::default());
    }
    name_resources(project);
    Ok(())
}

/// `FOO` listed without a value takes the project environment's `FOO`, if any.
fn resolve_unset(map: &mut IndexMap<String, Option<String>>, environment: &Environment) {
    for (key, value) in map.iter_mut() {
        if value.is_none() {
            if let Some(found) = environment.get(key) {
                *value = Some(found.clone());
            }
        }
    }
}

fn fold_env_files(
    name: &str,
    service: &mut Service,
    environment: &Environment,
) -> Result<(), NormalizeError> {
    if service.env_file.is_empty() {
        return Ok(());
    }
    let mut from_files: IndexMap<String, Option<String>> = IndexMap::new();
    for env_file in std::mem::take(&mut service.env_file) {
        let path = Path::new(&env_file.path);
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if env_file.required {
                    return Err(NormalizeError::MissingEnvFile {
                        service: name.into(),
                        path: env_file.path.clone(),
                    });
                }
                continue;
            }
            Err(err) => {
                return Err(NormalizeError::EnvFile {
                    service: name.into(),
                    path: env_file.path.clone(),
                    message: err.to_string(),
                })
            }
        };
        // Values in one env file may refer to earlier ones and to the project environment.
        let lookup = |var: &str| {
            from_files
                .get(var)
                .cloned()
                .flatten()
                .or_else(|| environment.get(var).cloned())
        };
        let parsed = if env_file.format == "raw" {
            dotenv::parse_raw(&text)
        } else {
            dotenv::parse(&text, &lookup)
        }
        .map_err(|e| NormalizeError::EnvFile {
            service: name.into(),
            path: env_file.path.clone(),
            message: e.to_string(),
        })?;
        for (key, value) in parsed {
            from_files.insert(key, Some(value));
        }
    }
    for (key, value) in std::mem::take(&mut service.environment) {
        from_files.insert(key, value);
    }
    service.environment = from_files;
    Ok(())
}

fn fold_label_files(name: &str, service: &mut Service) -> Result<(), NormalizeError> {
    if service.label_file.is_empty() {
        return Ok(());
    }
    let mut labels = IndexMap::new();
    for path in std::mem::take(&mut service.label_file) {
        let error = |message: String| NormalizeError::LabelFile {
            service: name.into(),
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| error(e.to_string()))?;
        let parsed = dotenv::parse_raw(&text).map_err(|e| error(e.to_string()))?;
        labels.extend(parsed);
    }
    labels.extend(std::mem::take(&mut service.labels));
    service.labels = labels;
    Ok(())
}

/// Services that a service reaches through links, `volumes_from` or a `service:`
/// namespace must start first; Compose records that as `depends_on`.
fn add_implicit_dependencies(service: &mut Service) {
    let mut implied: Vec<(String, bool)> = Vec::new();
    for link in &service.links {
        let target = link.split(':').next().unwrap_or(link);
        implied.push((target.to_string(), true));
    }
    for mode in [
        &service.network_mode,
        &service.ipc,
        &service.pid,
        &service.uts,
        &service.cgroup,
    ] {
        if let Some(target) = mode.strip_prefix("service:") {
            implied.push((target.to_string(), true));
        }
    }
    for source in &service.volumes_from {
        if !source.starts_with("container:") {
            let target = source.split(':').next().unwrap_or(source);
            implied.push((target.to_string(), false));
        }
    }
    for (target, restart) in implied {
        service
            .depends_on
            .entry(target)
            .or_insert_with(|| ServiceDependency {
                condition: "service_started".into(),
                restart,
                required: true,
                ..Default::default()
            });
    }
}

/// Engine names: `<project>_<key>` unless set, the bare key for external resources.
fn name_resources(project: &mut Project) {
    let project_name = project.name.clone();
    let engine_name = |key: &str, external: bool| {
        if external {
            key.to_string()
        } else {
            format!("{project_name}_{key}")
        }
    };
    for (key, network) in project.networks.iter_mut() {
        if network.name.is_empty() {
            network.name = engine_name(key, network.external);
        }
    }
    for (key, volume) in project.volumes.iter_mut() {
        if volume.name.is_empty() {
            volume.name = engine_name(key, volume.external);
        }
    }
    for items in [&mut project.secrets, &mut project.configs] {
        for (key, item) in items.iter_mut() {
            if item.name.is_empty() {
                item.name = engine_name(key, item.external);
            }
        }
    }
}
