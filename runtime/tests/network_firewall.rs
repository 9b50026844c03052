//! The firewall and published ports against the real kernel (needs root).
//!
//! Every test builds its own topology with `ip` inside throwaway network namespaces
//! (see `support/netns.rs`): a "host" namespace with our bridges and an uplink, one
//! namespace per "container" (veth `eth0` on a bridge), and an "outside" namespace on
//! the uplink that plays the internet. Nothing is created in the real host namespace,
//! and no traffic leaves these links. Subnets come from 10.213.0.0/16 (bridges) and
//! 172.31.0.0/16 (uplink).

#[path = "support/netns.rs"]
mod netns;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netns::Netns;
use rcompose_runtime::network::firewall::{Firewall, NetworkRules};
use rcompose_runtime::network::ports::{reserve, PortError, PortOwner, Protocol};

const UPLINK_HOST: Ipv4Addr = Ipv4Addr::new(172, 31, 77, 1);
const UPLINK_OUTSIDE: Ipv4Addr = Ipv4Addr::new(172, 31, 77, 2);
const REACHABLE: Duration = Duration::from_secs(3);
const UNREACHABLE: Duration = Duration::from_millis(800);

fn is_root() -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        println!("skipped: the firewall tests need root (network namespaces, nftables)");
    }
    root
}

/// A host namespace with an uplink to an "outside" namespace, and the firewall of a
/// fresh state root.
struct Lab {
    host: Netns,
    outside: Netns,
    firewall: Firewall,
    _state: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let host = Netns::new().expect("host netns");
        let outside = Netns::new().expect("outside netns");
        host.sh(&format!(
            "ip link add uplink type veth peer name eth0 netns {} && ip addr add {UPLINK_HOST}/24 dev uplink && ip link set uplink up",
            outside.path()
        ));
        outside.sh(&format!(
            "ip addr add {UPLINK_OUTSIDE}/24 dev eth0 && ip link set eth0 up && ip route add default via {UPLINK_HOST}"
        ));
        let state = tempfile::tempdir().expect("state dir");
        let firewall = Firewall::new(state.path());
        Lab {
            host,
            outside,
            firewall,
            _state: state,
        }
    }

    /// A bridge `name` with gateway `10.213.<net>.1/24` and its firewall rules.
    fn network(&self, name: &str, net: u8, internal: bool) {
        self.host.sh(&format!(
            "ip link add {name} type bridge && ip addr add 10.213.{net}.1/24 dev {name} && ip link set {name} up"
        ));
        let rules = NetworkRules {
            bridge: name.into(),
            subnet: Ipv4Addr::new(10, 213, net, 0),
            prefix_len: 24,
            internal,
        };
        self.host
            .run(|| self.firewall.add_network(&rules))
            .expect("add network");
    }

    /// A container namespace on `bridge` at `10.213.<net>.<host>`. Its bridge port is in
    /// hairpin mode, as the link code must set it (Docker does with userland-proxy=false):
    /// when br_netfilter is loaded, a container reaching its own published port is
    /// bridged back out of the port it came in through.
    fn container(&self, bridge: &str, net: u8, host: u8) -> Netns {
        let container = Netns::new().expect("container netns");
        let veth = format!("rcv{net}x{host}");
        self.host.sh(&format!(
            "ip link add {veth} type veth peer name eth0 netns {} && ip link set {veth} master {bridge} up && ip link set {veth} type bridge_slave hairpin on",
            container.path()
        ));
        container.sh(&format!(
            "ip addr add 10.213.{net}.{host}/24 dev eth0 && ip link set eth0 up && ip route add default via 10.213.{net}.1"
        ));
        container
    }

    fn tables(&self) -> String {
        self.host.sh("nft list tables")
    }
}

/// A TCP server in `netns` that answers each connection with `<name> sees <peer ip>`.
fn serve_tcp(netns: &Netns, addr: &str, name: &'static str) {
    let addr: SocketAddr = addr.parse().expect("server address");
    let listener = netns.run(|| TcpListener::bind(addr)).expect("bind server");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let peer = stream
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let _ = writeln!(stream, "{name} sees {peer}");
        }
    });
}

/// A UDP server in `netns` that sends every datagram back.
fn serve_udp_echo(netns: &Netns, addr: &str) {
    let addr: SocketAddr = addr.parse().expect("server address");
    let socket = netns
        .run(|| UdpSocket::bind(addr))
        .expect("bind udp server");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((len, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(buf.get(..len).unwrap_or_default(), peer);
        }
    });
}

/// Connects from `netns` and returns the server's line, or the error.
fn ask(netns: &Netns, addr: &str, timeout: Duration) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    netns.run(|| {
        let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| e.to_string())?;
        Ok(answer.trim().to_string())
    })
}

fn udp_echo(netns: &Netns, addr: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    netns.run(|| {
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        socket
            .set_read_timeout(Some(REACHABLE))
            .map_err(|e| e.to_string())?;
        socket.send_to(payload, addr).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let (len, _) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf.get(..len).unwrap_or_default().to_vec())
    })
}

#[test]
fn published_tcp_port_answers_on_loopback_host_address_outside_and_hairpin() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.network("rc-pub", 1, false);
    let web = lab.container("rc-pub", 1, 2);
    serve_tcp(&web, "10.213.1.2:80", "web");
    let reservation = lab
        .host
        .run(|| reserve(Ipv4Addr::UNSPECIFIED, 8080, Protocol::Tcp))
        .expect("reserve 8080");
    let forward = reservation.forward_to(Ipv4Addr::new(10, 213, 1, 2), 80);
    lab.host
        .run(|| lab.firewall.add_port_forwards(&[forward]))
        .expect("publish");

    // From the host on 127.0.0.1: masqueraded to the bridge's address.
    assert_eq!(
        ask(&lab.host, "127.0.0.1:8080", REACHABLE).unwrap(),
        "web sees 10.213.1.1"
    );
    // From the host on its own non-loopback address.
    assert!(ask(&lab.host, &format!("{UPLINK_HOST}:8080"), REACHABLE)
        .unwrap()
        .starts_with("web sees"));
    // From outside: the client's own address is kept.
    assert_eq!(
        ask(&lab.outside, &format!("{UPLINK_HOST}:8080"), REACHABLE).unwrap(),
        format!("web sees {UPLINK_OUTSIDE}")
    );
    // Hairpin: the container reaches its own published port through the host address.
    assert_eq!(
        ask(&web, &format!("{UPLINK_HOST}:8080"), REACHABLE).unwrap(),
        "web sees 10.213.1.1"
    );
    // Egress is masqueraded behind the uplink address.
    serve_tcp(&lab.outside, &format!("{UPLINK_OUTSIDE}:9000"), "internet");
    assert_eq!(
        ask(&web, &format!("{UPLINK_OUTSIDE}:9000"), REACHABLE).unwrap(),
        format!("internet sees {UPLINK_HOST}")
    );
    // The outside cannot reach the container's address directly, only published ports.
    assert!(ask(&lab.outside, "10.213.1.2:80", UNREACHABLE).is_err());

    lab.host
        .run(|| lab.firewall.remove_port_forwards(&[forward]))
        .expect("unpublish");
    // The reservation still holds the port but nothing forwards it any more.
    assert!(ask(&lab.host, "127.0.0.1:8080", UNREACHABLE).is_err());
    drop(reservation);
    lab.host
        .run(|| lab.firewall.remove_network("rc-pub"))
        .expect("remove network");
    assert_eq!(lab.tables(), "", "teardown left a table");
}

#[test]
fn hairpin_works_with_and_without_br_netfilter() {
    if !is_root() {
        return;
    }
    for call_iptables in ["0", "1"] {
        let lab = Lab::new();
        let knob = "/proc/sys/net/bridge/bridge-nf-call-iptables";
        let has_knob = lab.host.run(|| std::fs::write(knob, call_iptables).is_ok());
        if !has_knob {
            println!("br_netfilter is not loaded: only the routed hairpin path is tested");
        }
        lab.network("rc-hp", 12, false);
        let web = lab.container("rc-hp", 12, 2);
        let peer = lab.container("rc-hp", 12, 3);
        serve_tcp(&web, "10.213.12.2:80", "web");
        let reservation = lab
            .host
            .run(|| reserve(Ipv4Addr::UNSPECIFIED, 8083, Protocol::Tcp))
            .expect("reserve");
        lab.host
            .run(|| {
                lab.firewall
                    .add_port_forwards(&[reservation.forward_to(Ipv4Addr::new(10, 213, 12, 2), 80)])
            })
            .expect("publish");
        for (who, netns) in [("itself", &web), ("its neighbour", &peer)] {
            assert_eq!(
                ask(netns, &format!("{UPLINK_HOST}:8083"), REACHABLE),
                Ok("web sees 10.213.12.1".to_string()),
                "{who}, bridge-nf-call-iptables={call_iptables}"
            );
        }
    }
}

#[test]
fn udp_echo_through_published_port() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.network("rc-udp", 2, false);
    let dns = lab.container("rc-udp", 2, 2);
    serve_udp_echo(&dns, "10.213.2.2:53");
    let reservation = lab
        .host
        .run(|| reserve(Ipv4Addr::UNSPECIFIED, 5353, Protocol::Udp))
        .expect("reserve 5353/udp");
    lab.host
        .run(|| {
            lab.firewall
                .add_port_forwards(&[reservation.forward_to(Ipv4Addr::new(10, 213, 2, 2), 53)])
        })
        .expect("publish");
    assert_eq!(
        udp_echo(&lab.host, "127.0.0.1:5353", b"ping-lo").unwrap(),
        b"ping-lo"
    );
    assert_eq!(
        udp_echo(&lab.outside, &format!("{UPLINK_HOST}:5353"), b"ping-out").unwrap(),
        b"ping-out"
    );
}

#[test]
fn ephemeral_port_is_reported_and_limited_to_its_host_ip() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.network("rc-eph", 3, false);
    let web = lab.container("rc-eph", 3, 2);
    serve_tcp(&web, "10.213.3.2:80", "web");
    let reservation = lab
        .host
        .run(|| reserve(Ipv4Addr::LOCALHOST, 0, Protocol::Tcp))
        .expect("reserve an ephemeral port");
    let port = reservation.port();
    assert_ne!(port, 0, "the picked port is reported");
    lab.host
        .run(|| {
            lab.firewall
                .add_port_forwards(&[reservation.forward_to(Ipv4Addr::new(10, 213, 3, 2), 80)])
        })
        .expect("publish");
    assert_eq!(
        ask(&lab.host, &format!("127.0.0.1:{port}"), REACHABLE).unwrap(),
        "web sees 10.213.3.1"
    );
    // Published on 127.0.0.1 only: the host's other addresses do not forward it.
    assert!(ask(&lab.outside, &format!("{UPLINK_HOST}:{port}"), UNREACHABLE).is_err());
}

#[test]
fn taken_port_is_refused_naming_its_owner() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    let mut holder = lab
        .host
        .run(|| {
            Command::new("busybox")
                .args(["nc", "-l", "-p", "8081"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
        })
        .expect("start busybox nc (busybox-static)");
    let deadline = Instant::now() + REACHABLE;
    let err = loop {
        match lab
            .host
            .run(|| reserve(Ipv4Addr::UNSPECIFIED, 8081, Protocol::Tcp))
        {
            Err(err) => break err,
            Ok(reservation) if Instant::now() < deadline => {
                // nc is not listening yet.
                drop(reservation);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(_) => panic!("busybox nc never took port 8081"),
        }
    };
    let _ = holder.kill();
    let _ = holder.wait();
    let PortError::InUse { owner, .. } = &err else {
        panic!("expected InUse, got {err}");
    };
    assert_eq!(
        owner,
        &PortOwner::Process {
            name: "busybox".into(),
            pid: holder.id()
        }
    );
    assert!(
        err.to_string().starts_with(&format!(
            "port 8081/tcp is already in use by busybox (pid {})",
            holder.id()
        )),
        "{err}"
    );
}

#[test]
fn two_networks_cannot_reach_each_other() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.network("rc-a", 4, false);
    lab.network("rc-b", 5, false);
    let a = lab.container("rc-a", 4, 2);
    let b = lab.container("rc-b", 5, 2);
    serve_tcp(&a, "10.213.4.2:80", "a");
    serve_tcp(&b, "10.213.5.2:80", "b");
    assert!(
        ask(&a, "10.213.5.2:80", UNREACHABLE).is_err(),
        "a reached b"
    );
    assert!(
        ask(&b, "10.213.4.2:80", UNREACHABLE).is_err(),
        "b reached a"
    );
    // The host reaches both, and both still have egress.
    assert_eq!(
        ask(&lab.host, "10.213.4.2:80", REACHABLE).unwrap(),
        "a sees 10.213.4.1"
    );
    assert_eq!(
        ask(&lab.host, "10.213.5.2:80", REACHABLE).unwrap(),
        "b sees 10.213.5.1"
    );
    serve_tcp(&lab.outside, &format!("{UPLINK_OUTSIDE}:9000"), "internet");
    assert!(ask(&a, &format!("{UPLINK_OUTSIDE}:9000"), REACHABLE).is_ok());
    // A published port is public: a container on another network may use it through
    // a host address, like any other client.
    let reservation = lab
        .host
        .run(|| reserve(Ipv4Addr::UNSPECIFIED, 8082, Protocol::Tcp))
        .expect("reserve");
    lab.host
        .run(|| {
            lab.firewall
                .add_port_forwards(&[reservation.forward_to(Ipv4Addr::new(10, 213, 5, 2), 80)])
        })
        .expect("publish");
    assert!(ask(&a, &format!("{UPLINK_HOST}:8082"), REACHABLE)
        .unwrap()
        .starts_with("b sees"));
}

#[test]
fn internal_network_has_no_egress_and_no_ingress() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.network("rc-int", 6, true);
    let one = lab.container("rc-int", 6, 2);
    let two = lab.container("rc-int", 6, 3);
    serve_tcp(&one, "10.213.6.2:80", "one");
    serve_tcp(&lab.outside, &format!("{UPLINK_OUTSIDE}:9000"), "internet");
    assert!(
        ask(&one, &format!("{UPLINK_OUTSIDE}:9000"), UNREACHABLE).is_err(),
        "internal network reached the internet"
    );
    assert!(
        ask(&lab.outside, "10.213.6.2:80", UNREACHABLE).is_err(),
        "the internet reached an internal container"
    );
    // Within the network and from the host, everything works.
    assert_eq!(
        ask(&two, "10.213.6.2:80", REACHABLE).unwrap(),
        "one sees 10.213.6.3"
    );
    assert_eq!(
        ask(&lab.host, "10.213.6.2:80", REACHABLE).unwrap(),
        "one sees 10.213.6.1"
    );
}

#[test]
fn forward_drop_policy_is_worked_around_and_restored() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    // What dockerd does on start.
    lab.host.sh("iptables -w -P FORWARD DROP");
    let before = lab.host.sh("iptables -w -S FORWARD");
    lab.network("rc-drop", 7, false);
    let web = lab.container("rc-drop", 7, 2);
    serve_tcp(&lab.outside, &format!("{UPLINK_OUTSIDE}:9000"), "internet");
    assert_eq!(
        ask(&web, &format!("{UPLINK_OUTSIDE}:9000"), REACHABLE).unwrap(),
        format!("internet sees {UPLINK_HOST}")
    );
    let during = lab.host.sh("iptables -w -S FORWARD");
    assert_eq!(
        during.matches(lab.firewall.table_name()).count(),
        2,
        "{during}"
    );
    // Control: without the exceptions the DROP policy wins.
    lab.host.sh(&format!(
        "iptables -w -D FORWARD -i rc-drop -m comment --comment {0} -j ACCEPT && iptables -w -D FORWARD -o rc-drop -m comment --comment {0} -j ACCEPT",
        lab.firewall.table_name()
    ));
    assert!(ask(&web, &format!("{UPLINK_OUTSIDE}:9000"), UNREACHABLE).is_err());
    // Adding again restores them, and does not duplicate them.
    lab.host
        .run(|| {
            lab.firewall.add_network(&NetworkRules {
                bridge: "rc-drop".into(),
                subnet: Ipv4Addr::new(10, 213, 7, 0),
                prefix_len: 24,
                internal: false,
            })
        })
        .expect("add again");
    assert_eq!(lab.host.sh("iptables -w -S FORWARD"), during);
    assert!(ask(&web, &format!("{UPLINK_OUTSIDE}:9000"), REACHABLE).is_ok());
    lab.network_again("rc-drop", 7, false);
    assert_eq!(lab.host.sh("iptables -w -S FORWARD"), during);

    lab.host
        .run(|| lab.firewall.remove_network("rc-drop"))
        .expect("remove");
    assert_eq!(lab.host.sh("iptables -w -S FORWARD"), before);
    assert!(ask(&web, &format!("{UPLINK_OUTSIDE}:9000"), UNREACHABLE).is_err());
    assert!(!lab.tables().contains("rcompose_"), "{}", lab.tables());
}

#[test]
fn adding_is_idempotent_and_teardown_leaves_nothing() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.network("rc-idem", 8, false);
    lab.network("rc-idem2", 9, true);
    let reservation = lab
        .host
        .run(|| reserve(Ipv4Addr::LOCALHOST, 0, Protocol::Udp))
        .expect("reserve");
    let forward = reservation.forward_to(Ipv4Addr::new(10, 213, 8, 2), 53);
    let table = format!("nft list table ip {}", lab.firewall.table_name());
    lab.host
        .run(|| lab.firewall.add_port_forwards(&[forward]))
        .expect("publish");
    let once = lab.host.sh(&table);
    lab.network_again("rc-idem", 8, false);
    lab.host
        .run(|| lab.firewall.add_port_forwards(&[forward]))
        .expect("publish again");
    assert_eq!(lab.host.sh(&table), once);

    // Switching the network to internal replaces its rules.
    lab.network_again("rc-idem", 8, true);
    let internal = lab.host.sh(&table);
    assert!(!internal.contains("chain nat_rc-idem "), "{internal}");
    assert!(
        !internal.contains("\"rc-idem\" : jump nat_rc-idem"),
        "{internal}"
    );

    for _ in 0..2 {
        lab.host
            .run(|| lab.firewall.remove_port_forwards(&[forward]))
            .expect("unpublish");
        lab.host
            .run(|| lab.firewall.remove_network("rc-idem"))
            .expect("remove");
    }
    assert!(
        lab.tables().contains(lab.firewall.table_name()),
        "rc-idem2 still needs the table"
    );
    lab.host
        .run(|| lab.firewall.remove_network("rc-idem2"))
        .expect("remove");
    assert_eq!(lab.host.sh("nft list ruleset"), "");
    lab.host
        .run(|| lab.firewall.remove_all())
        .expect("remove_all on nothing");
}

#[test]
fn remove_all_deletes_the_table_and_iptables_exceptions() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.host.sh("iptables -w -P FORWARD DROP");
    lab.network("rc-all", 10, false);
    lab.network("rc-all2", 11, false);
    assert_eq!(
        lab.host
            .sh("iptables -w -S FORWARD")
            .matches(lab.firewall.table_name())
            .count(),
        4
    );
    lab.host
        .run(|| lab.firewall.remove_all())
        .expect("remove_all");
    assert_eq!(lab.host.sh("iptables -w -S FORWARD"), "-P FORWARD DROP\n");
    assert!(!lab.tables().contains("rcompose_"));
}

impl Lab {
    fn network_again(&self, name: &str, net: u8, internal: bool) {
        let rules = NetworkRules {
            bridge: name.into(),
            subnet: Ipv4Addr::new(10, 213, net, 0),
            prefix_len: 24,
            internal,
        };
        self.host
            .run(|| self.firewall.add_network(&rules))
            .expect("add network again");
    }
}
