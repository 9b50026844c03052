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
    }
    relevant.depends_on = Default::default();
    relevant.profiles = Default::default();
    let bytes = serde_json::to_vec(&relevant)?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}
