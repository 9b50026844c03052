//! A service's `ports` (already one entry per container port, as the loader expands
//! short-syntax ranges) → what the network module publishes.
//!
//! What is left to interpret here is the host side: an empty `published` asks for an
//! ephemeral port, a range (`8000-8010` for one container port) for the first free
//! port in it, as Docker picks it.

use std::net::Ipv4Addr;

use rcompose_runtime::network::manager::PublishRequest;
use rcompose_runtime::network::ports::{self, PortReservation, Protocol};

use super::NativeError;
use crate::project::model::ServicePortConfig;

/// One published container port, before a host port is chosen from its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortBinding {
    pub host_ip: Ipv4Addr,
    /// First and last acceptable host port; `(0, 0)` is an ephemeral port.
    pub host_ports: (u16, u16),
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortBinding {
    /// One fixed host port (not a range, not ephemeral).
    pub fn fixed_port(&self) -> Option<u16> {
        let (first, last) = self.host_ports;
        (first != 0 && first == last).then_some(first)
    }
}

/// The service's published ports, in Compose order; `service` names it in errors.
pub fn port_bindings(
    service: &str,
    ports: &[ServicePortConfig],
) -> Result<Vec<PortBinding>, NativeError> {
    ports
        .iter()
        .enumerate()
        .map(|(index, port)| port_binding(service, index, port))
        .collect()
}

fn port_binding(
    service: &str,
    index: usize,
    port: &ServicePortConfig,
) -> Result<PortBinding, NativeError> {
    let invalid = |message: String| NativeError::InvalidPort {
        service: service.to_owned(),
        key: format!("ports.{index}"),
        message,
    };
    let container_port = u16::try_from(port.target)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| invalid(format!("invalid container port {}", port.target)))?;
    let protocol = match port.protocol.to_ascii_lowercase().as_str() {
        "" | "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => {
            return Err(invalid(format!(
                "protocol {other:?} is not supported by the embedded engine (tcp or udp)"
            )))
        }
    };
    let host_ip = match port.host_ip.as_str() {
        "" => Ipv4Addr::UNSPECIFIED,
        text => text.parse().map_err(|_| {
            invalid(format!(
                "host_ip {text:?} is not an IPv4 address (the embedded engine publishes on IPv4 only)"
            ))
        })?,
    };
    let host_ports = host_port_range(&port.published).map_err(invalid)?;
    Ok(PortBinding {
        host_ip,
        host_ports,
        container_port,
        protocol,
    })
}

/// `""` → ephemeral, `"8080"`, `"8000-8010"`.
fn host_port_range(published: &str) -> Result<(u16, u16), String> {
    let parse = |text: &str| {
        text.trim()
            .parse::<u16>()
            .map_err(|_| format!("invalid published port {published:?}"))
    };
    match published.split_once('-') {
        _ if published.is_empty() => Ok((0, 0)),
        Some((first, last)) => {
            let (first, last) = (parse(first)?, parse(last)?);
            if first == 0 || last < first {
                return Err(format!("invalid published port range {published:?}"));
            }
            Ok((first, last))
        }
        None => {
            let port = parse(published)?;
            Ok((port, port))
        }
    }
}

/// The request for the network module: a fixed or ephemeral port as it is, the first
/// free port of a range (probed by binding it; the network module binds it again).
pub fn choose_host_port(
    service: &str,
    binding: &PortBinding,
) -> Result<PublishRequest, NativeError> {
    let (first, last) = binding.host_ports;
    let host_port = if first == last {
        first
    } else {
        (first..=last)
            .find(|port| ports::reserve(binding.host_ip, *port, binding.protocol).is_ok())
            .ok_or_else(|| NativeError::PortRangeTaken {
                service: service.to_owned(),
                range: format!("{}:{first}-{last}/{}", binding.host_ip, binding.protocol),
            })?
    };
    Ok(PublishRequest {
        host_ip: binding.host_ip,
        host_port,
        container_port: binding.container_port,
        protocol: binding.protocol,
    })
}

/// Takes the binding's fixed host port for as long as the reservation lives: `None`
/// for ports chosen later (ephemeral or ranges), a message naming the port when taken.
pub fn probe(service: &str, binding: &PortBinding) -> Option<Result<PortReservation, String>> {
    let port = binding.fixed_port()?;
    Some(
        ports::reserve(binding.host_ip, port, binding.protocol)
            .map_err(|err| format!("service {service}: ports: {err}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(host_ip: &str, published: &str, target: u32, protocol: &str) -> ServicePortConfig {
        ServicePortConfig {
            host_ip: host_ip.into(),
            published: published.into(),
            target,
            protocol: protocol.into(),
            mode: "ingress".into(),
            ..Default::default()
        }
    }

    #[test]
    fn fixed_ephemeral_and_ranged_host_ports() {
        let bindings = port_bindings(
            "web",
            &[
                port("", "8080", 80, "tcp"),
                port("127.0.0.1", "", 443, "tcp"),
                port("", "9000-9005", 53, "udp"),
            ],
        )
        .unwrap();
        assert_eq!(
            bindings,
            vec![
                PortBinding {
                    host_ip: Ipv4Addr::UNSPECIFIED,
                    host_ports: (8080, 8080),
                    container_port: 80,
                    protocol: Protocol::Tcp,
                },
                PortBinding {
                    host_ip: Ipv4Addr::LOCALHOST,
                    host_ports: (0, 0),
                    container_port: 443,
                    protocol: Protocol::Tcp,
                },
                PortBinding {
                    host_ip: Ipv4Addr::UNSPECIFIED,
                    host_ports: (9000, 9005),
                    container_port: 53,
                    protocol: Protocol::Udp,
                },
            ]
        );
        assert_eq!(bindings[0].fixed_port(), Some(8080));
        assert_eq!(bindings[1].fixed_port(), None);
        assert_eq!(bindings[2].fixed_port(), None);
    }

    #[test]
    fn short_syntax_ranges_from_the_loader_publish_each_port() {
        let yaml =
            "services:\n  web:\n    image: busybox\n    ports: ['127.0.0.1:8000-8001:80-81/udp']\n";
        let project = super::super::tests::project(yaml);
        let bindings = port_bindings("web", &project.services["web"].ports).unwrap();
        let pairs: Vec<(u16, u16)> = bindings
            .iter()
            .map(|b| (b.host_ports.0, b.container_port))
            .collect();
        assert_eq!(pairs, vec![(8000, 80), (8001, 81)]);
        assert!(bindings
            .iter()
            .all(|b| b.protocol == Protocol::Udp && b.host_ip == Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn errors_name_the_service_and_the_entry() {
        let cases = [
            (
                port("", "80", 80, "sctp"),
                "service web: ports.0: protocol \"sctp\" is not supported by the embedded engine (tcp or udp)",
            ),
            (
                port("::1", "80", 80, "tcp"),
                "service web: ports.0: host_ip \"::1\" is not an IPv4 address (the embedded engine publishes on IPv4 only)",
            ),
            (
                port("", "90-80", 80, "tcp"),
                "service web: ports.0: invalid published port range \"90-80\"",
            ),
            (
                port("", "http", 80, "tcp"),
                "service web: ports.0: invalid published port \"http\"",
            ),
            (
                port("", "80", 70000, "tcp"),
                "service web: ports.0: invalid container port 70000",
            ),
        ];
        for (entry, message) in cases {
            let err = port_bindings("web", &[entry]).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn a_range_takes_its_first_free_port() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap().port();
        let Some(next) = busy.checked_add(1) else {
            return;
        };
        let binding = PortBinding {
            host_ip: Ipv4Addr::LOCALHOST,
            host_ports: (busy, next),
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        // The next port may be someone else's too; then the range is all taken.
        match choose_host_port("web", &binding) {
            Ok(request) => assert_eq!(request.host_port, next),
            Err(err) => assert!(err.to_string().contains("every port of")),
        }
        let single = PortBinding {
            host_ports: (busy, busy),
            ..binding
        };
        let probed = probe("web", &single).expect("a fixed port is probed");
        let Err(message) = probed else {
            panic!("the port is taken");
        };
        assert!(message.starts_with("service web: ports: "), "{message}");
        assert!(message.contains(&busy.to_string()), "{message}");
    }
}
