//! The service configuration hash (`com.docker.compose.config-hash`).
//!
//! Compose leaves out what does not change the running container — build settings, pull
//! policy, replica count, dependencies and profiles — so that editing them never recreates
//! a service. Same idea here: sha256 over the JSON of what remains.

use sha2::{Digest, Sha256};

use super::model::Service;

pub fn service_hash(service: &Service) -> Result<String, serde_json::Error> {
    let mut relevant = service.clone();
    relevant.build = None;
    relevant.pull_policy = String::new();
    relevant.scale = None;
    if let Some(deploy) = relevant.deploy.as_mut() {
        deploy.replicas = None;
        // A `deploy` that only set the replica count says nothing else either.
        if *deploy == Default::default() {
            relevant.deploy = None;
        }
    }
    relevant.depends_on = Default::default();
    relevant.profiles = Default::default();
    let bytes = serde_json::to_vec(&relevant)?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::model;

    fn service(extra: &str) -> Service {
        let yaml = format!("name: p\nservices:\n  a:\n    image: busybox\n{extra}");
        let project = model::from_value(serde_yaml::from_str(&yaml).unwrap()).unwrap();
        project.services["a"].clone()
    }

    #[test]
    fn hash_ignores_build_scale_dependencies_and_profiles_only() {
        let base = service_hash(&service("")).unwrap();
        assert_eq!(base.len(), 64);
        let ignored = "    build: {context: .}\n    pull_policy: always\n    scale: 3\n    profiles: [x]\n    depends_on: {b: {condition: service_started, required: false}}\n    deploy: {replicas: 3}\n";
        assert_eq!(service_hash(&service(ignored)).unwrap(), base);
        assert_ne!(
            service_hash(&service("    command: [sleep, \"1\"]\n")).unwrap(),
            base
        );
        assert_ne!(
            service_hash(&service(
                "    deploy: {resources: {limits: {memory: 1g}}}\n"
            ))
            .unwrap(),
            base
        );
    }
}
