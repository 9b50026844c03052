//! What the supervisor needs of the Compose model, per service: its restart policy.
//! `up` writes it as `services.json` in the project's directory, so a supervisor
//! started later (or after a crash) knows it without the project's files.

use rcompose_runtime::atomic_file::replace_json;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::orchestrator::health::{HealthError, HealthSpec};
use crate::orchestrator::restart::{RestartError, RestartPolicy};
use crate::project::model::Project;

const FILE: &str = "services.json";

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error(transparent)]
    Restart(#[from] RestartError),
    #[error(transparent)]
    Health(#[from] HealthError),
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServicePolicy {
    pub restart: RestartPolicy,
    /// `None`: no healthcheck (none given, `disable`, or `test: ["NONE"]`).
    #[serde(default)]
    pub health: Option<HealthSpec>,
}

/// By service name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServicePolicies {
    pub services: BTreeMap<String, ServicePolicy>,
}

impl ServicePolicies {
    pub fn from_project(project: &Project) -> Result<ServicePolicies, PolicyError> {
        let mut services = BTreeMap::new();
        for (name, service) in &project.services {
            let restart = RestartPolicy::for_service(name, service)?;
            // The image's HEALTHCHECK is not read yet: the service's own is used.
            let health = HealthSpec::resolve(name, service.healthcheck.as_ref(), None)?;
            services.insert(name.clone(), ServicePolicy { restart, health });
        }
        Ok(ServicePolicies { services })
    }

    /// Reads `services.json` of the project's directory; none yet is an empty set.
    pub fn load(dir: &Path) -> Result<ServicePolicies, PolicyError> {
        let path = dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PolicyError::Io {
                action: "reading",
                path,
                source: io::Error::other(e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ServicePolicies::default()),
            Err(source) => Err(PolicyError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }

    /// Writes `services.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), PolicyError> {
        let path = dir.join(FILE);
        replace_json(&path, self, 0o600).map_err(|source| PolicyError::Io {
            action: "writing",
            path: path.clone(),
            source,
        })
    }

    pub fn health(&self, service: &str) -> Option<HealthSpec> {
        self.services.get(service).and_then(|s| s.health.clone())
    }

    pub fn restart_policy(&self, service: &str) -> RestartPolicy {
        self.services
            .get(service)
            .map(|s| s.restart.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::native::tests::project;
    use crate::orchestrator::restart::RestartCondition;

    #[test]
    fn policies_come_from_the_model_and_survive_a_round_trip() {
        let project = project(
            "services:\n  db:\n    image: busybox\n    restart: always\n  job:\n    image: busybox\n",
        );
        let policies = ServicePolicies::from_project(&project).unwrap();
        assert_eq!(
            policies.restart_policy("db").condition,
            RestartCondition::Always
        );
        assert_eq!(
            policies.restart_policy("job").condition,
            RestartCondition::No
        );
        assert_eq!(
            policies.restart_policy("unknown").condition,
            RestartCondition::No
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ServicePolicies::load(dir.path()).unwrap(),
            ServicePolicies::default()
        );
        policies.save(dir.path()).unwrap();
        assert_eq!(ServicePolicies::load(dir.path()).unwrap(), policies);
    }
}
