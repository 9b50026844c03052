//! The project's networks and volumes as the embedded engine makes them: their engine
//! names (`<project>_<key>` or `name:`), labels and options, read from the model.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use rcompose_runtime::network::ipam::Subnet;
use rcompose_runtime::network::manager::{IpamRequest, NetworkOptions};

use super::NativeError;
use crate::orchestrator::labels::ProjectLabels;
use crate::project::model::{NetworkConfig, Project, VolumeConfig};

/// Docker's bridge driver option for the MTU.
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// A network of the project: one that must exist, or one to create.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkPlan {
    External { key: String, name: String },
    Managed(NetworkOptions),
}

/// A volume of the project: one that must exist, or one to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumePlan {
    External {
        key: String,
        name: String,
    },
    Managed {
        name: String,
        driver_opts: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    },
}

/// The engine name of a top-level resource: `name:` (the loader fills it in), else
/// `<project>_<key>` as Compose names it.
pub fn engine_name(project: &str, key: &str, declared_name: &str) -> String {
    if declared_name.is_empty() {
        format!("{project}_{key}")
    } else {
        declared_name.to_owned()
    }
}

/// The engine name of the project network `key`, whether declared or not.
pub fn network_name(project: &Project, key: &str) -> String {
    let declared = project.networks.get(key).map_or("", |n| n.name.as_str());
    engine_name(&project.name, key, declared)
}

fn project_labels(project: &Project) -> ProjectLabels {
    ProjectLabels {
        name: project.name.clone(),
        ..ProjectLabels::default()
    }
}

/// Every network of the project, in declaration order.
pub fn network_plans(project: &Project) -> Result<Vec<NetworkPlan>, NativeError> {
    project
        .networks
        .iter()
        .map(|(key, network)| network_plan(project, key, network))
        .collect()
}

fn network_plan(
    project: &Project,
    key: &str,
    network: &NetworkConfig,
) -> Result<NetworkPlan, NativeError> {
    let name = engine_name(&project.name, key, &network.name);
    if network.external {
        return Ok(NetworkPlan::External {
            key: key.to_owned(),
            name,
        });
    }
    let invalid = |field: &str, message: String| NativeError::InvalidNetwork {
        network: key.to_owned(),
        key: field.to_owned(),
        message,
    };
    if !matches!(network.driver.as_str(), "" | "bridge") {
        return Err(invalid(
            "driver",
            format!(
                "driver {:?} is not supported by the embedded engine: use bridge (or run on Docker)",
                network.driver
            ),
        ));
    }
    if network.enable_ipv6 == Some(true) {
        return Err(invalid(
            "enable_ipv6",
            "IPv6 networks are not supported by the embedded engine".into(),
        ));
    }
    if !matches!(network.ipam.driver.as_str(), "" | "default") {
        return Err(invalid(
            "ipam.driver",
            format!(
                "IPAM driver {:?} is not supported: the embedded engine has only the default",
                network.ipam.driver
            ),
        ));
    }
    let mtu = match network.driver_opts.get(MTU_OPTION) {
        None => None,
        Some(text) => Some(text.trim().parse::<u32>().map_err(|_| {
            invalid(
                &format!("driver_opts.{MTU_OPTION}"),
                format!("{text:?} is not an MTU: give a number of bytes such as 1450"),
            )
        })?),
    };
    let ipam = match network.ipam.config.first() {
        None => None,
        Some(pool) => ipam_request(key, &pool.subnet, &pool.gateway, &pool.ip_range)?,
    };
    let own = network.labels.iter().map(|(k, v)| (k.clone(), v.clone()));
    Ok(NetworkPlan::Managed(NetworkOptions {
        name,
        driver: Some("bridge".to_owned()),
        internal: network.internal,
        labels: project_labels(project).network(key, own),
        mtu,
        ipam,
    }))
}

fn ipam_request(
    network: &str,
    subnet: &str,
    gateway: &str,
    ip_range: &str,
) -> Result<Option<IpamRequest>, NativeError> {
    let invalid = |field: &str, message: String| NativeError::InvalidNetwork {
        network: network.to_owned(),
        key: format!("ipam.config.0.{field}"),
        message,
    };
    if subnet.is_empty() {
        if !gateway.is_empty() || !ip_range.is_empty() {
            return Err(invalid(
                "subnet",
                "a gateway or ip_range needs the subnet it belongs to".into(),
            ));
        }
        return Ok(None);
    }
    let parse_subnet = |field: &str, text: &str| {
        text.parse::<Subnet>().map_err(|err| {
            invalid(
                field,
                format!("{err} (the embedded engine supports IPv4 subnets only)"),
            )
        })
    };
    let subnet = parse_subnet("subnet", subnet)?;
    let gateway = match gateway {
        "" => None,
        text => Some(
            text.parse::<Ipv4Addr>()
                .map_err(|_| invalid("gateway", format!("{text:?} is not an IPv4 address")))?,
        ),
    };
    let ip_range = match ip_range {
        "" => None,
        text => Some(parse_subnet("ip_range", text)?),
    };
    Ok(Some(IpamRequest {
        subnet,
        gateway,
        ip_range,
    }))
}

/// Every volume of the project, in declaration order.
pub fn volume_plans(project: &Project) -> Result<Vec<VolumePlan>, NativeError> {
    project
        .volumes
        .iter()
        .map(|(key, volume)| volume_plan(project, key, volume))
        .collect()
}

fn volume_plan(
    project: &Project,
    key: &str,
    volume: &VolumeConfig,
) -> Result<VolumePlan, NativeError> {
    let name = engine_name(&project.name, key, &volume.name);
    if volume.external {
        return Ok(VolumePlan::External {
            key: key.to_owned(),
            name,
        });
    }
    if !matches!(volume.driver.as_str(), "" | "local") {
        return Err(NativeError::InvalidVolume {
            volume: key.to_owned(),
            key: "driver".to_owned(),
            message: format!(
                "driver {:?} is not supported by the embedded engine: use local",
                volume.driver
            ),
        });
    }
    let own = volume.labels.iter().map(|(k, v)| (k.clone(), v.clone()));
    Ok(VolumePlan::Managed {
        name,
        driver_opts: volume
            .driver_opts
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        labels: project_labels(project).volume(key, own),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::project;
    use super::*;
    use crate::orchestrator::labels;

    #[test]
    fn the_implicit_default_network_is_named_for_the_project() {
        let p = project("services:\n  web:\n    image: busybox\n");
        let plans = network_plans(&p).unwrap();
        let [NetworkPlan::Managed(options)] = plans.as_slice() else {
            panic!("one managed network expected: {plans:?}");
        };
        assert_eq!(options.name, "demo_default");
        assert_eq!(options.labels[labels::PROJECT], "demo");
        assert_eq!(options.labels[labels::NETWORK], "default");
        assert!(!options.internal);
        assert_eq!((options.mtu, options.ipam), (None, None));
        assert_eq!(network_name(&p, "default"), "demo_default");
    }

    #[test]
    fn network_options_come_from_the_model() {
        let p = project(
            "services:\n  web:\n    image: busybox\n    networks: [back, shared]\nnetworks:\n  back:\n    name: backend\n    internal: true\n    labels: {team: db, com.docker.compose.project: other}\n    driver_opts: {com.docker.network.driver.mtu: '1450'}\n    ipam:\n      config:\n        - subnet: 10.213.20.0/24\n          gateway: 10.213.20.254\n          ip_range: 10.213.20.128/25\n  shared:\n    external: true\n    name: corp\n",
        );
        let plans = network_plans(&p).unwrap();
        let NetworkPlan::Managed(back) = &plans[0] else {
            panic!("back is managed: {plans:?}");
        };
        assert_eq!(back.name, "backend");
        assert!(back.internal);
        assert_eq!(back.mtu, Some(1450));
        let ipam = back.ipam.expect("an IPAM request");
        assert_eq!(ipam.subnet.to_string(), "10.213.20.0/24");
        assert_eq!(ipam.gateway, Some(Ipv4Addr::new(10, 213, 20, 254)));
        assert_eq!(
            ipam.ip_range.map(|r| r.to_string()).as_deref(),
            Some("10.213.20.128/25")
        );
        assert_eq!(back.labels["team"], "db");
        // The project's label cannot be hidden by the network's own.
        assert_eq!(back.labels[labels::PROJECT], "demo");
        assert_eq!(
            plans[1],
            NetworkPlan::External {
                key: "shared".into(),
                name: "corp".into()
            }
        );
    }

    #[test]
    fn network_errors_name_the_network_and_key() {
        let err = |body: &str| {
            let p = project(&format!(
                "services:\n  web:\n    image: busybox\n    networks: [n]\nnetworks:\n  n:\n{body}"
            ));
            network_plans(&p).unwrap_err().to_string()
        };
        assert_eq!(
            err("    driver: overlay\n"),
            "network n: driver: driver \"overlay\" is not supported by the embedded engine: use bridge (or run on Docker)"
        );
        assert_eq!(
            err("    driver_opts: {com.docker.network.driver.mtu: big}\n"),
            "network n: driver_opts.com.docker.network.driver.mtu: \"big\" is not an MTU: give a number of bytes such as 1450"
        );
        assert!(err("    ipam:\n      config: [{subnet: 'fd00::/64'}]\n")
            .starts_with("network n: ipam.config.0.subnet: "));
        assert_eq!(
            err("    ipam:\n      config: [{subnet: 10.1.0.0/16, gateway: nope}]\n"),
            "network n: ipam.config.0.gateway: \"nope\" is not an IPv4 address"
        );
        assert_eq!(
            err("    enable_ipv6: true\n"),
            "network n: enable_ipv6: IPv6 networks are not supported by the embedded engine"
        );
    }

    #[test]
    fn volumes_are_named_labelled_and_keep_their_options() {
        let p = project(
            "services:\n  web:\n    image: busybox\n    volumes: [data:/data, cache:/cache, old:/old]\nvolumes:\n  data:\n    driver_opts: {type: tmpfs, device: tmpfs, o: size=1m}\n    labels: [tier=hot]\n  cache:\n    name: shared-cache\n  old:\n    external: true\n",
        );
        let plans = volume_plans(&p).unwrap();
        let VolumePlan::Managed {
            name,
            driver_opts,
            labels: own,
        } = &plans[0]
        else {
            panic!("data is managed: {plans:?}");
        };
        assert_eq!(name, "demo_data");
        assert_eq!(driver_opts["type"], "tmpfs");
        assert_eq!(driver_opts["o"], "size=1m");
        assert_eq!(own["tier"], "hot");
        assert_eq!(own[labels::VOLUME], "data");
        assert_eq!(own[labels::PROJECT], "demo");
        assert!(matches!(&plans[1], VolumePlan::Managed { name, .. } if name == "shared-cache"));
        assert_eq!(
            plans[2],
            VolumePlan::External {
                key: "old".into(),
                name: "old".into()
            }
        );
        let p = project("services: {}\nvolumes:\n  x:\n    driver: rexray\n");
        assert_eq!(
            volume_plans(&p).unwrap_err().to_string(),
            "volume x: driver: driver \"rexray\" is not supported by the embedded engine: use local"
        );
    }
}
