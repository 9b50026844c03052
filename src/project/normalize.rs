//! Normalization: the implicit parts of a Compose model made explicit, as Compose v2 does
//! before printing or running a project.
//!
//! - services without `networks` or `network_mode` join the implicit `default` network,
//!   which is declared when some service uses it (provider services join nothing);
//! - resources get their engine names (`<project>_<key>`; external ones keep their key);
//! - `build` gets its default context and Dockerfile; build args listed without a value
//!   take the project's, and are dropped when it has none;
//! - `environment` entries without a value take the project's; `env_file` is read and
//!   folded under `environment` (`environment` wins), and `label_file` under `labels`;
//! - service secrets get their default target `/run/secrets/<source>`, device requests
//!   without `count` or `device_ids` ask for all devices, mount targets are cleaned;
//! - `scale` is copied to `deploy.replicas` when `deploy` is set without replicas;
//! - a `local` volume bound to a host directory (`o: bind`) gets an absolute `device`;
//! - links, `volumes_from` and `service:` namespaces become `depends_on` entries.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::discover::Environment;
use super::dotenv;
use super::model::{
    DeviceCount, DeviceRequest, EnvFile, Project, Service, ServiceDependency, VolumeConfig,
};
use super::paths;

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
    #[error("services.{service}.label_file: label file {path} not found: create it or remove it from `label_file`")]
    MissingLabelFile { service: String, path: String },
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
    attach_default_network(project);
    for (name, service) in project.services.iter_mut() {
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
            resolve_build_args(&mut build.args, options.environment);
        }
        resolve_unset(&mut service.environment, options.environment);
        if options.resolve_env_files {
            fold_env_files(name, service, options.environment)?;
        }
        fold_label_files(name, service)?;
        apply_service_defaults(service);
        add_implicit_dependencies(service);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    for volume in project.volumes.values_mut() {
        absolutize_bind_device(volume, options.project_directory, home.as_deref());
    }
    name_resources(project);
    Ok(())
}

/// Services that name no network join `default`; the network is declared only when used.
/// Provider services run outside the engine and join nothing.
fn attach_default_network(project: &mut Project) {
    let mut uses_default_network = false;
    for service in project.services.values_mut() {
        if service.provider.is_some() || !service.network_mode.is_empty() {
            continue;
        }
        if service.networks.is_empty() {
            service.networks.insert("default".into(), None);
        }
        uses_default_network |= service.networks.contains_key("default");
    }
    if uses_default_network && !project.networks.contains_key("default") {
        project
            .networks
            .insert("default".into(), Default::default());
    }
}

/// `FOO` listed without a value takes the project environment's `FOO`, if any; otherwise
/// it stays unset, so the container inherits nothing for it.
fn resolve_unset(map: &mut IndexMap<String, Option<String>>, environment: &Environment) {
    for (key, value) in map.iter_mut() {
        if value.is_none() {
            if let Some(found) = environment.get(key) {
                *value = Some(found.clone());
            }
        }
    }
}

/// Build args without a value take the project's; an arg nobody sets is left out, so the
/// Dockerfile's own default applies.
fn resolve_build_args(args: &mut IndexMap<String, Option<String>>, environment: &Environment) {
    resolve_unset(args, environment);
    args.retain(|_, value| value.is_some());
}

/// Reads the service's env files in order (later files win) and lays `environment` over
/// them. A value in an env file may refer to variables of earlier lines and files, then to
/// the project environment, then to the service's own `environment`.
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
        let Some(text) = read_env_file(name, &env_file)? else {
            continue;
        };
        let lookup = |var: &str| {
            from_files
                .get(var)
                .cloned()
                .flatten()
                .or_else(|| environment.get(var).cloned())
                .or_else(|| service.environment.get(var).cloned().flatten())
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

/// The text of one env file; `None` for a missing file marked `required: false`.
fn read_env_file(name: &str, env_file: &EnvFile) -> Result<Option<String>, NormalizeError> {
    match std::fs::read_to_string(&env_file.path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if env_file.required {
                Err(NormalizeError::MissingEnvFile {
                    service: name.into(),
                    path: env_file.path.clone(),
                })
            } else {
                Ok(None)
            }
        }
        Err(err) => Err(NormalizeError::EnvFile {
            service: name.into(),
            path: env_file.path.clone(),
            message: err.to_string(),
        }),
    }
}

/// Label files use the env file syntax; a value may refer to labels read before it (not
/// to the environment), and `labels` wins over every file.
fn fold_label_files(name: &str, service: &mut Service) -> Result<(), NormalizeError> {
    if service.label_file.is_empty() {
        return Ok(());
    }
    let mut labels: IndexMap<String, String> = IndexMap::new();
    for path in std::mem::take(&mut service.label_file) {
        let error = |message: String| NormalizeError::LabelFile {
            service: name.into(),
            path: path.clone(),
            message,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(NormalizeError::MissingLabelFile {
                    service: name.into(),
                    path: path.clone(),
                })
            }
            Err(err) => return Err(error(err.to_string())),
        };
        let lookup = |var: &str| labels.get(var).cloned();
        let parsed = dotenv::parse(&text, &lookup).map_err(|e| error(e.to_string()))?;
        labels.extend(parsed);
    }
    labels.extend(std::mem::take(&mut service.labels));
    service.labels = labels;
    Ok(())
}

/// Defaults Compose prints for attributes the user left out.
fn apply_service_defaults(service: &mut Service) {
    for secret in &mut service.secrets {
        if secret.target.is_empty() && !secret.source.is_empty() {
            secret.target = format!("/run/secrets/{}", secret.source);
        }
    }
    service.gpus.iter_mut().for_each(default_device_count);
    if let Some(deploy) = service.deploy.as_mut() {
        if let Some(reservations) = deploy.resources.reservations.as_mut() {
            reservations
                .devices
                .iter_mut()
                .for_each(default_device_count);
        }
        // `scale` is the short way to say `deploy.replicas`; a conflict is validate's job.
        if deploy.replicas.is_none() {
            deploy.replicas = service.scale;
        }
    }
    for mount in &mut service.volumes {
        if !mount.target.is_empty() {
            mount.target = clean_container_path(&mount.target);
        }
    }
}

/// A device request naming neither a count nor device ids asks for every device.
fn default_device_count(request: &mut DeviceRequest) {
    if request.count.is_unset() && request.device_ids.is_empty() {
        request.count = DeviceCount::ALL;
    }
}

/// Lexical cleanup of a POSIX container path (`/data/./x/../y/` → `/data/y`), as Go's
/// `path.Clean` does; a container path never depends on the host's separator.
fn clean_container_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// A `local` volume with `o: bind` is a bind mount of `device`, which Compose resolves
/// against the project directory like any other host path.
fn absolutize_bind_device(volume: &mut VolumeConfig, base: &Path, home: Option<&Path>) {
    if volume.driver != "local" || volume.driver_opts.get("o").map(String::as_str) != Some("bind") {
        return;
    }
    if let Some(device) = volume.driver_opts.get_mut("device") {
        if !device.is_empty() {
            *device = paths::absolute(device, base, home);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::model::from_value;

    fn project(yaml: &str) -> Project {
        let mut project = from_value(serde_yaml::from_str(yaml).unwrap()).unwrap();
        if project.name.is_empty() {
            project.name = "demo".into();
        }
        project
    }

    fn env(pairs: &[(&str, &str)]) -> Environment {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn normalized_with(yaml: &str, environment: &Environment, dir: &Path) -> Project {
        let mut project = project(yaml);
        let options = Options {
            project_directory: dir,
            environment,
            resolve_env_files: true,
        };
        normalize(&mut project, &options).unwrap();
        project
    }

    fn normalized(yaml: &str) -> Project {
        normalized_with(yaml, &Environment::new(), Path::new("/proj"))
    }

    fn normalize_err(yaml: &str, dir: &Path) -> String {
        let mut project = project(yaml);
        let environment = Environment::new();
        let options = Options {
            project_directory: dir,
            environment: &environment,
            resolve_env_files: true,
        };
        normalize(&mut project, &options).unwrap_err().to_string()
    }

    /// A map printed in key order, as `config` prints it.
    fn as_yaml<V: Clone + serde::Serialize>(map: &IndexMap<String, V>) -> String {
        let sorted: std::collections::BTreeMap<String, V> = map.clone().into_iter().collect();
        serde_yaml::to_string(&sorted).unwrap()
    }

    #[test]
    fn services_without_networks_join_the_declared_default_network() {
        let p = normalized("services:\n  web: {image: nginx}\n");
        assert_eq!(p.services["web"].networks.get("default"), Some(&None));
        assert_eq!(p.networks["default"].name, "demo_default");
    }

    #[test]
    fn default_network_is_not_declared_when_nobody_uses_it() {
        let p = normalized(
            "services:\n  web: {image: nginx, networks: {front: null}}\n  host: {image: x, network_mode: host}\nnetworks:\n  front: {}\n",
        );
        assert!(!p.networks.contains_key("default"));
        assert!(p.services["host"].networks.is_empty());
        assert_eq!(p.networks["front"].name, "demo_front");
    }

    #[test]
    fn an_explicit_default_network_keeps_its_settings() {
        let p = normalized(
            "services:\n  web: {image: nginx}\nnetworks:\n  default: {name: shared, external: true}\n",
        );
        assert_eq!(p.networks["default"].name, "shared");
        assert!(p.networks["default"].external);
    }

    #[test]
    fn provider_services_join_no_network() {
        let p = normalized("services:\n  db:\n    provider: {type: awesomecloud}\n");
        assert!(p.services["db"].networks.is_empty());
        assert!(!p.networks.contains_key("default"));
    }

    #[test]
    fn resources_are_named_after_the_project_unless_external_or_named() {
        let p = normalized(
            "services: {}\nvolumes:\n  data: {}\n  old: {external: true}\n  fixed: {name: exact}\nsecrets:\n  token: {file: /t}\n  ext: {external: true}\nconfigs:\n  conf: {content: x}\n",
        );
        assert_eq!(p.volumes["data"].name, "demo_data");
        assert_eq!(p.volumes["old"].name, "old");
        assert_eq!(p.volumes["fixed"].name, "exact");
        assert_eq!(p.secrets["token"].name, "demo_token");
        assert_eq!(p.secrets["ext"].name, "ext");
        assert_eq!(p.configs["conf"].name, "demo_conf");
    }

    #[test]
    fn pull_policy_if_not_present_becomes_missing() {
        let p = normalized("services:\n  web: {image: nginx, pull_policy: if_not_present}\n");
        assert_eq!(p.services["web"].pull_policy, "missing");
    }

    #[test]
    fn build_gets_default_context_and_dockerfile() {
        let p = normalized("services:\n  web:\n    build: {}\n  inline:\n    build: {context: /src, dockerfile_inline: FROM alpine}\n");
        let build = p.services["web"].build.as_ref().unwrap();
        assert_eq!(
            (build.context.as_str(), build.dockerfile.as_str()),
            ("/proj", "Dockerfile")
        );
        let inline = p.services["inline"].build.as_ref().unwrap();
        assert_eq!(inline.dockerfile, "");
    }

    #[test]
    fn build_args_without_value_take_the_environment_or_are_dropped() {
        let p = normalized_with(
            "services:\n  web:\n    build: {context: ., args: {VERSION: null, UNSET: null, FIXED: '1'}}\n",
            &env(&[("VERSION", "2.0")]),
            Path::new("/proj"),
        );
        let args = &p.services["web"].build.as_ref().unwrap().args;
        assert_eq!(as_yaml(args), "FIXED: '1'\nVERSION: '2.0'\n",);
    }

    #[test]
    fn environment_without_value_takes_the_project_environment_or_stays_unset() {
        let p = normalized_with(
            "services:\n  web:\n    image: x\n    environment: {FOO: null, BAR: null, EMPTY: ''}\n",
            &env(&[("FOO", "from-env")]),
            Path::new("/proj"),
        );
        let environment = &p.services["web"].environment;
        assert_eq!(environment["FOO"].as_deref(), Some("from-env"));
        assert_eq!(environment["BAR"], None);
        assert_eq!(environment["EMPTY"].as_deref(), Some(""));
    }

    #[test]
    fn env_files_are_folded_under_environment_which_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let first = tmp.path().join("a.env");
        let second = tmp.path().join("b.env");
        std::fs::write(&first, "A=1\nSHARED=from-a\nOVER=file\n").unwrap();
        std::fs::write(&second, "SHARED=from-b\nREF=${A}-${PROJ}-${SVC}\n").unwrap();
        let yaml = format!(
            "services:\n  web:\n    image: x\n    env_file: [{{path: {}}}, {{path: {}}}]\n    environment: {{OVER: yaml, SVC: svc}}\n",
            first.display(),
            second.display()
        );
        let p = normalized_with(&yaml, &env(&[("PROJ", "proj")]), tmp.path());
        let web = &p.services["web"];
        assert!(web.env_file.is_empty());
        assert_eq!(
            as_yaml(&web.environment),
            "A: '1'\nOVER: yaml\nREF: 1-proj-svc\nSHARED: from-b\nSVC: svc\n"
        );
    }

    #[test]
    fn raw_env_files_keep_values_verbatim() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("raw.env");
        std::fs::write(&file, "QUOTED=\"a b\"\nDOLLAR=${NOT_EXPANDED}\n").unwrap();
        let yaml = format!(
            "services:\n  web:\n    image: x\n    env_file: [{{path: {}, format: raw}}]\n",
            file.display()
        );
        let p = normalized_with(&yaml, &Environment::new(), tmp.path());
        let environment = &p.services["web"].environment;
        assert_eq!(environment["QUOTED"].as_deref(), Some("\"a b\""));
        assert_eq!(environment["DOLLAR"].as_deref(), Some("${NOT_EXPANDED}"));
    }

    #[test]
    fn optional_missing_env_file_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let yaml = format!(
            "services:\n  web:\n    image: x\n    env_file: [{{path: {}/nope.env, required: false}}]\n    environment: {{A: '1'}}\n",
            tmp.path().display()
        );
        let p = normalized_with(&yaml, &Environment::new(), tmp.path());
        assert_eq!(as_yaml(&p.services["web"].environment), "A: '1'\n");
    }

    #[test]
    fn required_missing_env_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("web.env");
        let err = normalize_err(
            &format!(
                "services:\n  web:\n    image: x\n    env_file: [{{path: {}}}]\n",
                path.display()
            ),
            tmp.path(),
        );
        assert_eq!(
            err,
            format!("services.web.env_file: env file {} not found: create it or mark it `required: false`", path.display())
        );
    }

    #[test]
    fn malformed_env_file_names_the_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("bad.env");
        std::fs::write(&path, "OK=1\nBAD KEY=2\n").unwrap();
        let err = normalize_err(
            &format!(
                "services:\n  web:\n    image: x\n    env_file: [{{path: {}}}]\n",
                path.display()
            ),
            tmp.path(),
        );
        assert!(
            err.starts_with(&format!(
                "services.web.env_file: {}: line 2:",
                path.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn env_files_are_kept_when_env_resolution_is_off() {
        let mut p =
            project("services:\n  web:\n    image: x\n    env_file: [{path: /missing.env}]\n");
        let environment = Environment::new();
        let options = Options {
            project_directory: Path::new("/proj"),
            environment: &environment,
            resolve_env_files: false,
        };
        normalize(&mut p, &options).unwrap();
        assert_eq!(p.services["web"].env_file[0].path, "/missing.env");
    }

    #[test]
    fn label_files_are_folded_under_labels_which_win() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("app.labels");
        std::fs::write(&file, "# labels\ncom_example_team=core\ncom.example.tier=\"back end\"\ncom_example_ref=${com_example_team}\n").unwrap();
        let yaml = format!(
            "services:\n  web:\n    image: x\n    label_file: [{}]\n    labels: {{com.example.tier: front}}\n",
            file.display()
        );
        let p = normalized_with(&yaml, &Environment::new(), tmp.path());
        let web = &p.services["web"];
        assert!(web.label_file.is_empty());
        assert_eq!(
            as_yaml(&web.labels),
            "com.example.tier: front\ncom_example_ref: core\ncom_example_team: core\n"
        );
    }

    #[test]
    fn missing_label_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("app.labels");
        let err = normalize_err(
            &format!(
                "services:\n  web:\n    image: x\n    label_file: [{}]\n",
                path.display()
            ),
            tmp.path(),
        );
        assert_eq!(
            err,
            format!("services.web.label_file: label file {} not found: create it or remove it from `label_file`", path.display())
        );
    }

    #[test]
    fn service_secrets_get_their_default_target() {
        let p = normalized(
            "services:\n  web:\n    image: x\n    secrets: [{source: token}, {source: cert, target: /etc/cert}]\n    configs: [{source: conf}]\nsecrets:\n  token: {file: /t}\n  cert: {file: /c}\nconfigs:\n  conf: {file: /f}\n",
        );
        let web = &p.services["web"];
        assert_eq!(web.secrets[0].target, "/run/secrets/token");
        assert_eq!(web.secrets[1].target, "/etc/cert");
        // Compose prints no default target for configs.
        assert_eq!(web.configs[0].target, "");
    }

    #[test]
    fn device_requests_without_count_or_ids_ask_for_all() {
        let p = normalized(
            "services:\n  web:\n    image: x\n    gpus: [{driver: nvidia}, {device_ids: ['0']}, {count: 2}]\n    deploy:\n      resources:\n        reservations:\n          devices: [{capabilities: [gpu]}]\n",
        );
        let web = &p.services["web"];
        let counts: Vec<i64> = web.gpus.iter().map(|g| g.count.0).collect();
        assert_eq!(counts, [-1, 0, 2]);
        let deploy = web.deploy.as_ref().unwrap();
        let devices = &deploy.resources.reservations.as_ref().unwrap().devices;
        assert_eq!(devices[0].count, DeviceCount::ALL);
    }

    #[test]
    fn scale_fills_deploy_replicas_when_deploy_is_set() {
        let p = normalized(
            "services:\n  web: {image: x, scale: 3, deploy: {mode: replicated}}\n  api: {image: x, scale: 2}\n  both: {image: x, scale: 2, deploy: {replicas: 4}}\n",
        );
        assert_eq!(p.services["web"].deploy.as_ref().unwrap().replicas, Some(3));
        assert!(p.services["api"].deploy.is_none());
        assert_eq!(
            p.services["both"].deploy.as_ref().unwrap().replicas,
            Some(4)
        );
    }

    #[test]
    fn mount_targets_are_cleaned() {
        let p = normalized(
            "services:\n  web:\n    image: x\n    volumes: [{type: tmpfs, target: /data/./cache/../tmp/}, {type: volume, target: //run}]\n",
        );
        let targets: Vec<&str> = p.services["web"]
            .volumes
            .iter()
            .map(|v| v.target.as_str())
            .collect();
        assert_eq!(targets, ["/data/tmp", "/run"]);
    }

    #[test]
    fn clean_container_path_follows_go_path_clean() {
        for (input, expected) in [
            ("/a/b/../c", "/a/c"),
            ("/../x", "/x"),
            ("a/../../b", "../b"),
            ("./", "."),
            ("/", "/"),
            ("c:/x", "c:/x"),
        ] {
            assert_eq!(clean_container_path(input), expected, "{input}");
        }
    }

    #[test]
    fn local_bind_volume_device_is_made_absolute() {
        let p = normalized(
            "services: {}\nvolumes:\n  src:\n    driver: local\n    driver_opts: {type: none, o: bind, device: ./data}\n  nfs:\n    driver: local\n    driver_opts: {type: nfs, o: 'addr=10.0.0.1', device: ':/export'}\n",
        );
        assert_eq!(p.volumes["src"].driver_opts["device"], "/proj/data");
        assert_eq!(p.volumes["nfs"].driver_opts["device"], ":/export");
    }

    #[test]
    fn links_volumes_from_and_namespaces_become_dependencies() {
        let p = normalized(
            "services:\n  web:\n    image: x\n    links: ['db:database', cache]\n    volumes_from: ['data:ro', 'container:legacy']\n    network_mode: 'service:vpn'\n    ipc: 'service:shm'\n    depends_on: {db: {condition: service_healthy}}\n  db: {image: x}\n  cache: {image: x}\n  data: {image: x}\n  vpn: {image: x}\n  shm: {image: x}\n",
        );
        let deps = &p.services["web"].depends_on;
        assert_eq!(
            as_yaml(deps),
            "cache:\n  condition: service_started\n  restart: true\n  required: true\ndata:\n  condition: service_started\n  required: true\ndb:\n  condition: service_healthy\n  required: true\nshm:\n  condition: service_started\n  restart: true\n  required: true\nvpn:\n  condition: service_started\n  restart: true\n  required: true\n"
        );
        assert!(!deps.contains_key("legacy"));
        assert!(p.services["web"].networks.is_empty());
    }
}
