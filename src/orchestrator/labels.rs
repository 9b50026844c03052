//! The `com.docker.compose.*` labels, as Docker Compose v2 writes them.
//!
//! Labels are how a project finds its resources again: every container, network and
//! volume rcompose creates carries them, and `ps`, `down` and the next `up` read them
//! back instead of keeping a registry of their own. Writing exactly what Compose writes
//! lets tools that know Compose (and Compose itself, on the Docker backend) recognise
//! rcompose's containers.

use std::collections::BTreeMap;

use crate::project::model::Service;

/// The project a resource belongs to.
pub const PROJECT: &str = "com.docker.compose.project";
/// The service a container runs.
pub const SERVICE: &str = "com.docker.compose.service";
/// The service's configuration hash when the container was created.
pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
/// The replica number: `1` for `<project>-<service>-1`; `-1` on one-off containers.
pub const CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
/// The key of a volume in the project's top-level `volumes`.
pub const VOLUME: &str = "com.docker.compose.volume";
/// The key of a network in the project's top-level `networks`.
pub const NETWORK: &str = "com.docker.compose.network";
/// The absolute project directory.
pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
/// The absolute paths of the Compose files, comma separated.
pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
/// The absolute paths of the `--env-file` files, comma separated; absent when none.
pub const ENVIRONMENT_FILE: &str = "com.docker.compose.project.environment_file";
/// `True` on containers made by `run`, `False` on service containers.
pub const ONEOFF: &str = "com.docker.compose.oneoff";
/// The unique slug of a one-off container.
pub const SLUG: &str = "com.docker.compose.slug";
/// The digest of the image the container was created from.
pub const IMAGE_DIGEST: &str = "com.docker.compose.image";
/// The service's `depends_on`, as `service:condition:restart` entries, comma separated.
pub const DEPENDS_ON: &str = "com.docker.compose.depends_on";
/// The version of the tool that created the resource.
pub const VERSION: &str = "com.docker.compose.version";
/// The builder that produced a built image.
pub const IMAGE_BUILDER: &str = "com.docker.compose.image.builder";
/// On a container created to replace another: the replaced container's id.
pub const REPLACE: &str = "com.docker.compose.replace";

/// The value of [`ONEOFF`] on containers made by `run`.
pub const ONEOFF_TRUE: &str = "True";
/// The value of [`ONEOFF`] on service containers.
pub const ONEOFF_FALSE: &str = "False";
/// The [`CONTAINER_NUMBER`] Compose gives one-off containers.
pub const ONEOFF_NUMBER: &str = "-1";

/// The version written in [`VERSION`] labels.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A resource's labels; sorted so that printing and comparing them is stable.
pub type Labels = BTreeMap<String, String>;

/// Why the labels of an observed container do not say which replica it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("container {container:?} has no {label} label: it was not created by Compose")]
    Missing {
        container: String,
        label: &'static str,
    },
    #[error(
        "container {container:?} of service {service:?} has an invalid {label} label {value:?}: expected a replica number from 1"
    )]
    InvalidNumber {
        container: String,
        service: String,
        label: &'static str,
        value: String,
    },
}

/// What the project contributes to the labels of each of its resources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProjectLabels {
    /// The project name.
    pub name: String,
    /// The absolute project directory.
    pub working_dir: String,
    /// The absolute paths of the Compose files, in the order they were given.
    pub config_files: Vec<String>,
    /// The absolute paths of the `--env-file` files; empty when none was given.
    pub environment_files: Vec<String>,
}

impl ProjectLabels {
    /// The labels of a project network; `key` is its name under top-level `networks`.
    /// The network's own `labels` come first so that they cannot hide the project's.
    pub fn network(&self, key: &str, own: impl IntoIterator<Item = (String, String)>) -> Labels {
        self.resource(NETWORK, key, own)
    }

    /// The labels of a project volume; `key` is its name under top-level `volumes`.
    pub fn volume(&self, key: &str, own: impl IntoIterator<Item = (String, String)>) -> Labels {
        self.resource(VOLUME, key, own)
    }

    fn resource(
        &self,
        kind_label: &str,
        key: &str,
        own: impl IntoIterator<Item = (String, String)>,
    ) -> Labels {
        let mut labels: Labels = own.into_iter().collect();
        labels.insert(kind_label.to_owned(), key.to_owned());
        labels.insert(PROJECT.to_owned(), self.name.clone());
        labels.insert(VERSION.to_owned(), TOOL_VERSION.to_owned());
        labels
    }
}

/// The labels of one container of a service, built as Compose builds them: the service's
/// own `labels`, overridden by the Compose labels.
#[derive(Debug, Clone)]
pub struct ContainerLabels<'a> {
    project: &'a ProjectLabels,
    service_name: &'a str,
    service: &'a Service,
    config_hash: &'a str,
    number: Option<u32>,
    slug: Option<&'a str>,
    image_digest: Option<&'a str>,
    replaces: Option<&'a str>,
}

impl<'a> ContainerLabels<'a> {
    /// Replica `number` of `service_name`, created with configuration hash `config_hash`.
    pub fn replica(
        project: &'a ProjectLabels,
        service_name: &'a str,
        service: &'a Service,
        config_hash: &'a str,
        number: u32,
    ) -> Self {
        Self {
            project,
            service_name,
            service,
            config_hash,
            number: Some(number),
            slug: None,
            image_digest: None,
            replaces: None,
        }
    }

    /// A one-off container of `service_name` (`rcompose run`), told apart by `slug`.
    pub fn oneoff(
        project: &'a ProjectLabels,
        service_name: &'a str,
        service: &'a Service,
        config_hash: &'a str,
        slug: &'a str,
    ) -> Self {
        Self {
            project,
            service_name,
            service,
            config_hash,
            number: None,
            slug: Some(slug),
            image_digest: None,
            replaces: None,
        }
    }

    /// Records the digest of the image; a later `up` recreates the container when the
    /// service's image resolves to another digest.
    pub fn image_digest(mut self, digest: &'a str) -> Self {
        self.image_digest = Some(digest);
        self
    }

    /// Marks the container as the replacement of container `id` (a recreate).
    pub fn replaces(mut self, id: &'a str) -> Self {
        self.replaces = Some(id);
        self
    }

    /// The complete label set.
    pub fn build(&self) -> Labels {
        let mut labels: Labels = self
            .service
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut set = |key: &str, value: String| {
            labels.insert(key.to_owned(), value);
        };
        set(PROJECT, self.project.name.clone());
        set(SERVICE, self.service_name.to_owned());
        set(VERSION, TOOL_VERSION.to_owned());
        set(WORKING_DIR, self.project.working_dir.clone());
        set(CONFIG_FILES, self.project.config_files.join(","));
        if !self.project.environment_files.is_empty() {
            set(ENVIRONMENT_FILE, self.project.environment_files.join(","));
        }
        set(CONFIG_HASH, self.config_hash.to_owned());
        set(DEPENDS_ON, depends_on_value(self.service));
        match (self.number, self.slug) {
            (Some(number), _) => {
                set(CONTAINER_NUMBER, number.to_string());
                set(ONEOFF, ONEOFF_FALSE.to_owned());
            }
            (None, slug) => {
                set(CONTAINER_NUMBER, ONEOFF_NUMBER.to_owned());
                set(ONEOFF, ONEOFF_TRUE.to_owned());
                if let Some(slug) = slug {
                    set(SLUG, slug.to_owned());
                }
            }
        }
        if let Some(digest) = self.image_digest {
            set(IMAGE_DIGEST, digest.to_owned());
        }
        if let Some(id) = self.replaces {
            set(REPLACE, id.to_owned());
        }
        labels
    }
}

/// `db:service_healthy:true,cache:service_started:false`, in declaration order.
fn depends_on_value(service: &Service) -> String {
    service
        .depends_on
        .iter()
        .map(|(name, dep)| {
            let condition = if dep.condition.is_empty() {
                "service_started"
            } else {
                dep.condition.as_str()
            };
            format!("{name}:{condition}:{}", dep.restart)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Who an observed container is, as its labels tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerIdentity {
    pub project: String,
    pub service: String,
    /// The replica number; `None` on one-off containers, which have none.
    pub number: Option<u32>,
    /// Empty when the label is missing, which makes the container look changed.
    pub config_hash: String,
    pub oneoff: bool,
}

impl ContainerIdentity {
    /// Reads the identity of container `container` (its name, for error messages).
    ///
    /// Project and service labels are required. A service container needs a replica
    /// number from 1; a one-off container's number is ignored. Like Compose, a container
    /// is one-off unless its [`ONEOFF`] label is absent or `False`.
    pub fn from_labels(container: &str, labels: &Labels) -> Result<Self, LabelError> {
        let required = |label: &'static str| {
            labels
                .get(label)
                .cloned()
                .ok_or_else(|| LabelError::Missing {
                    container: container.to_owned(),
                    label,
                })
        };
        let project = required(PROJECT)?;
        let service = required(SERVICE)?;
        let oneoff = labels
            .get(ONEOFF)
            .is_some_and(|value| value != ONEOFF_FALSE);
        let number = if oneoff {
            labels
                .get(CONTAINER_NUMBER)
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n > 0)
        } else {
            Some(replica_number(container, &service, labels)?)
        };
        Ok(Self {
            project,
            service,
            number,
            config_hash: labels.get(CONFIG_HASH).cloned().unwrap_or_default(),
            oneoff,
        })
    }
}

fn replica_number(container: &str, service: &str, labels: &Labels) -> Result<u32, LabelError> {
    let value = labels
        .get(CONTAINER_NUMBER)
        .ok_or_else(|| LabelError::Missing {
            container: container.to_owned(),
            label: CONTAINER_NUMBER,
        })?;
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| LabelError::InvalidNumber {
            container: container.to_owned(),
            service: service.to_owned(),
            label: CONTAINER_NUMBER,
            value: value.clone(),
        })
}

/// The project a resource belongs to, if it carries the project label.
pub fn project_of(labels: &Labels) -> Option<&str> {
    labels.get(PROJECT).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::model;

    fn service(yaml: &str) -> Service {
        let doc = format!("services:\n  web:\n{yaml}");
        let project = model::from_value(serde_yaml::from_str(&doc).unwrap()).unwrap();
        project.services["web"].clone()
    }

    fn project() -> ProjectLabels {
        ProjectLabels {
            name: "demo".into(),
            working_dir: "/src/demo".into(),
            config_files: vec![
                "/src/demo/compose.yaml".into(),
                "/src/demo/compose.override.yaml".into(),
            ],
            environment_files: vec![],
        }
    }

    #[test]
    fn replica_labels_are_the_ones_compose_writes() {
        let web = service(
            "    image: nginx\n    depends_on:\n      db: {condition: service_healthy, restart: true}\n      cache: {condition: service_started}\n",
        );
        let project = project();
        let labels = ContainerLabels::replica(&project, "web", &web, "abc123", 2).build();
        let expected: Labels = [
            (PROJECT, "demo"),
            (SERVICE, "web"),
            (CONTAINER_NUMBER, "2"),
            (ONEOFF, "False"),
            (CONFIG_HASH, "abc123"),
            (WORKING_DIR, "/src/demo"),
            (
                CONFIG_FILES,
                "/src/demo/compose.yaml,/src/demo/compose.override.yaml",
            ),
            (
                DEPENDS_ON,
                "db:service_healthy:true,cache:service_started:false",
            ),
            (VERSION, TOOL_VERSION),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(labels, expected);
    }

    #[test]
    fn compose_labels_override_user_labels_and_options_are_added() {
        let web = service(
            "    image: nginx\n    labels: {com.docker.compose.project: fake, com.example.team: web}\n",
        );
        let mut project = project();
        project.environment_files = vec!["/src/demo/.env.prod".into()];
        let labels = ContainerLabels::replica(&project, "web", &web, "h", 1)
            .image_digest("sha256:feed")
            .replaces("0123abcd")
            .build();
        assert_eq!(labels[PROJECT], "demo");
        assert_eq!(labels["com.example.team"], "web");
        assert_eq!(labels[ENVIRONMENT_FILE], "/src/demo/.env.prod");
        assert_eq!(labels[IMAGE_DIGEST], "sha256:feed");
        assert_eq!(labels[REPLACE], "0123abcd");
        assert_eq!(labels[DEPENDS_ON], "");
    }

    #[test]
    fn oneoff_labels_carry_slug_and_no_replica_number() {
        let web = service("    image: nginx\n");
        let project = project();
        let labels = ContainerLabels::oneoff(&project, "web", &web, "h", "f00d").build();
        assert_eq!(labels[ONEOFF], "True");
        assert_eq!(labels[CONTAINER_NUMBER], "-1");
        assert_eq!(labels[SLUG], "f00d");
        let identity = ContainerIdentity::from_labels("demo-web-run-f00d", &labels).unwrap();
        assert!(identity.oneoff);
        assert_eq!(identity.number, None);
    }

    #[test]
    fn identity_reads_back_what_was_written() {
        let web = service("    image: nginx\n");
        let project = project();
        let labels = ContainerLabels::replica(&project, "web", &web, "cafe", 3).build();
        let identity = ContainerIdentity::from_labels("demo-web-3", &labels).unwrap();
        assert_eq!(
            identity,
            ContainerIdentity {
                project: "demo".into(),
                service: "web".into(),
                number: Some(3),
                config_hash: "cafe".into(),
                oneoff: false,
            }
        );
        assert_eq!(project_of(&labels), Some("demo"));
    }

    #[test]
    fn containers_without_oneoff_label_are_service_containers() {
        let labels: Labels = [(PROJECT, "demo"), (SERVICE, "db"), (CONTAINER_NUMBER, "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let identity = ContainerIdentity::from_labels("demo-db-1", &labels).unwrap();
        assert!(!identity.oneoff);
        assert_eq!(identity.config_hash, "");
    }

    #[test]
    fn broken_labels_name_the_container_and_label() {
        let mut labels: Labels = [(PROJECT, "demo"), (SERVICE, "db")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let err = ContainerIdentity::from_labels("demo-db-1", &labels).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container \"demo-db-1\" has no com.docker.compose.container-number label: it was not created by Compose"
        );
        labels.insert(CONTAINER_NUMBER.into(), "0".into());
        let err = ContainerIdentity::from_labels("demo-db-1", &labels).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container \"demo-db-1\" of service \"db\" has an invalid com.docker.compose.container-number label \"0\": expected a replica number from 1"
        );
        labels.remove(SERVICE);
        let err = ContainerIdentity::from_labels("x", &labels).unwrap_err();
        assert!(matches!(err, LabelError::Missing { label: SERVICE, .. }));
    }

    #[test]
    fn network_and_volume_labels_name_their_key() {
        let project = project();
        let labels = project.network("front", [("com.example".to_owned(), "1".to_owned())]);
        assert_eq!(labels[NETWORK], "front");
        assert_eq!(labels[PROJECT], "demo");
        assert_eq!(labels["com.example"], "1");
        let labels = project.volume("data", []);
        assert_eq!(labels[VOLUME], "data");
        assert_eq!(labels[VERSION], TOOL_VERSION);
        assert!(!labels.contains_key(NETWORK));
    }
}
