//! `rcompose port SERVICE PRIVATE_PORT`: the host address a container port is
//! published on, from the network records of the embedded engine.

use anyhow::bail;
use clap::ValueEnum;

use super::ps::{open_engine, summaries, ContainerSummary, ProjectScope, Publisher};
use super::GlobalOptions;
use crate::orchestrator::plan::ContainerState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct PortArgs {
    /// tcp or udp
    #[arg(long, value_enum, default_value_t = Protocol::Tcp)]
    protocol: Protocol,
    /// Index of the container if service has multiple replicas
    #[arg(long, default_value_t = 1)]
    index: u32,
    #[arg(value_name = "SERVICE")]
    service: String,
    #[arg(value_name = "PRIVATE_PORT")]
    private_port: u16,
}

pub fn run(global: &GlobalOptions, args: &PortArgs) -> anyhow::Result<u8> {
    let scope = ProjectScope::find(global)?;
    scope.check_services(std::slice::from_ref(&args.service))?;
    let engine = open_engine(global)?;
    let containers = summaries(&engine, &global.root, &scope.name)?;
    let container = replica(&containers, &args.service, args.index)?;
    let (address, port) = published(container, args.private_port, args.protocol)?;
    println!("{address}:{port}");
    Ok(0)
}

/// Replica `index` of `service` among the running containers.
fn replica<'a>(
    containers: &'a [ContainerSummary],
    service: &str,
    index: u32,
) -> anyhow::Result<&'a ContainerSummary> {
    match containers.iter().find(|c| {
        c.service == service && c.number == Some(index) && c.state == ContainerState::Running
    }) {
        Some(container) => Ok(container),
        None => bail!("no container found for {service}-{index}"),
    }
}

/// The host address and port of `private_port/protocol`, or Compose's error listing
/// what the container does publish.
fn published(
    container: &ContainerSummary,
    private_port: u16,
    protocol: Protocol,
) -> anyhow::Result<(String, u16)> {
    let wanted = |p: &&Publisher| p.target_port == private_port && p.protocol == protocol.as_str();
    if let Some(found) = container.publishers.iter().find(wanted) {
        return Ok((found.url.clone(), found.published_port));
    }
    let known: Vec<String> = container
        .publishers
        .iter()
        .map(|p| format!("{}/{}", p.published_port, p.protocol))
        .collect();
    bail!(
        "no port {private_port}/{} for container {}: {}",
        protocol.as_str(),
        container.name,
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::orchestrator::labels::Labels;

    fn web(number: u32, state: ContainerState) -> ContainerSummary {
        ContainerSummary {
            id: format!("demo-web-{number}"),
            name: format!("demo-web-{number}"),
            project: "demo".into(),
            service: "web".into(),
            number: Some(number),
            image: "busybox".into(),
            command: String::new(),
            created: SystemTime::UNIX_EPOCH,
            state,
            started_at: None,
            finished_at: None,
            health: None,
            publishers: vec![Publisher {
                target_port: 80,
                url: "0.0.0.0".into(),
                published_port: 18080,
                protocol: "tcp".into(),
            }],
            networks: Vec::new(),
            labels: Labels::new(),
        }
    }

    #[test]
    fn finds_the_published_address() {
        let containers = [web(1, ContainerState::Running)];
        let container = replica(&containers, "web", 1).unwrap();
        assert_eq!(
            published(container, 80, Protocol::Tcp).unwrap(),
            ("0.0.0.0".to_string(), 18080)
        );
    }

    #[test]
    fn errors_name_the_replica_and_the_ports() {
        let containers = [
            web(1, ContainerState::Running),
            web(2, ContainerState::Exited { exit_code: 0 }),
        ];
        assert_eq!(
            replica(&containers, "web", 2).unwrap_err().to_string(),
            "no container found for web-2"
        );
        assert_eq!(
            replica(&containers, "db", 1).unwrap_err().to_string(),
            "no container found for db-1"
        );
        let container = replica(&containers, "web", 1).unwrap();
        assert_eq!(
            published(container, 80, Protocol::Udp)
                .unwrap_err()
                .to_string(),
            "no port 80/udp for container demo-web-1: 18080/tcp"
        );
    }
}
