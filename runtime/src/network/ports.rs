//! Published ports: reserving a host port before anything starts, and the forwarding
//! entries the firewall turns into DNAT rules.
//!
//! A published port is forwarded in the kernel (see `firewall`), not by a userland
//! proxy, so nothing ever accepts on the host port. Docker (with `userland-proxy=false`)
//! still holds a bound socket on it, and so do we: while the reservation lives no other
//! program can take the port, and a port that is already taken is reported before any
//! container starts, with the program that holds it when it can be found.
//!
//! Only IPv4 is handled: `host_ip` `0.0.0.0` means every IPv4 address of the host.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The lowercase name Docker and nftables use (`tcp`, `udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = PortError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(PortError::UnsupportedProtocol(s.to_string())),
        }
    }
}

/// Who holds a port we could not bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortOwner {
    /// A process with a descriptor on the socket (its `comm` name and pid).
    Process { name: String, pid: u32 },
    /// No process could be found (another network namespace, a kernel socket, a race).
    Unknown,
}

impl fmt::Display for PortOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortOwner::Process { name, pid } => write!(f, "{name} (pid {pid})"),
            PortOwner::Unknown => f.write_str("another program"),
        }
    }
}

/// `port 8080/tcp` or, for a single host address, `port 127.0.0.1:8080/tcp`.
fn port_label(host_ip: Ipv4Addr, port: u16, proto: Protocol) -> String {
    if host_ip.is_unspecified() {
        format!("port {port}/{proto}")
    } else {
        format!("port {host_ip}:{port}/{proto}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("{} is already in use by {owner}; stop that program or publish another port", port_label(*.host_ip, *.port, *.proto))]
    InUse {
        host_ip: Ipv4Addr,
        port: u16,
        proto: Protocol,
        owner: PortOwner,
    },
    #[error("cannot publish {}: {host_ip} is not an address of this host; use 0.0.0.0 or one of the host's addresses", port_label(*.host_ip, *.port, *.proto))]
    AddressNotAvailable {
        host_ip: Ipv4Addr,
        port: u16,
        proto: Protocol,
    },
    #[error("cannot publish {}: ports below 1024 need root or CAP_NET_BIND_SERVICE", port_label(*.host_ip, *.port, *.proto))]
    PermissionDenied {
        host_ip: Ipv4Addr,
        port: u16,
        proto: Protocol,
    },
    #[error("cannot reserve {}: {source}", port_label(*.host_ip, *.port, *.proto))]
    Io {
        host_ip: Ipv4Addr,
        port: u16,
        proto: Protocol,
        source: io::Error,
    },
    #[error("unsupported protocol {0:?}: published ports are tcp or udp")]
    UnsupportedProtocol(String),
}

/// One published port as the firewall forwards it: traffic to `host_ip:host_port`
/// (any local IPv4 address when `host_ip` is `0.0.0.0`) goes to
/// `container_ip:container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortForward {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub protocol: Protocol,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

#[derive(Debug)]
enum ReservedSocket {
    // Bound and listening so nobody else can listen there; never accepted from, since
    // the kernel's DNAT sends the port's traffic to the container before it gets here.
    Tcp(#[allow(dead_code)] TcpListener),
    Udp(#[allow(dead_code)] UdpSocket),
}

/// A host port held for a published port. Dropping it frees the port.
#[derive(Debug)]
pub struct PortReservation {
    host_ip: Ipv4Addr,
    port: u16,
    proto: Protocol,
    _socket: ReservedSocket,
}

impl PortReservation {
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The reserved port: the one asked for, or the one the kernel picked for port 0.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    /// The forwarding entry that sends this port to a container.
    pub fn forward_to(&self, container_ip: Ipv4Addr, container_port: u16) -> PortForward {
        PortForward {
            host_ip: self.host_ip,
            host_port: self.port,
            protocol: self.proto,
            container_ip,
            container_port,
        }
    }
}

/// Takes `host_ip:port/proto` on the host (in the calling thread's network namespace).
/// Port 0 picks a free ephemeral port; read it back with [`PortReservation::port`].
pub fn reserve(
    host_ip: Ipv4Addr,
    port: u16,
    proto: Protocol,
) -> Result<PortReservation, PortError> {
    let addr = SocketAddrV4::new(host_ip, port);
    let bound = match proto {
        Protocol::Tcp => TcpListener::bind(addr)
            .and_then(|l| Ok((l.local_addr()?.port(), ReservedSocket::Tcp(l)))),
        Protocol::Udp => {
            UdpSocket::bind(addr).and_then(|s| Ok((s.local_addr()?.port(), ReservedSocket::Udp(s))))
        }
    };
    match bound {
        Ok((port, socket)) => Ok(PortReservation {
            host_ip,
            port,
            proto,
            _socket: socket,
        }),
        Err(err) => Err(bind_error(host_ip, port, proto, err)),
    }
}

fn bind_error(host_ip: Ipv4Addr, port: u16, proto: Protocol, err: io::Error) -> PortError {
    match err.raw_os_error() {
        Some(libc::EADDRINUSE) => PortError::InUse {
            host_ip,
            port,
            proto,
            owner: find_owner(Path::new("/proc"), host_ip, port, proto),
        },
        Some(libc::EADDRNOTAVAIL) => PortError::AddressNotAvailable {
            host_ip,
            port,
            proto,
        },
        Some(libc::EACCES) => PortError::PermissionDenied {
            host_ip,
            port,
            proto,
        },
        _ => PortError::Io {
            host_ip,
            port,
            proto,
            source: err,
        },
    }
}

/// The process holding a socket on `port` whose address overlaps `host_ip`, looked up
/// in the calling thread's network namespace (`thread-self`, since only this thread
/// may have entered another one).
pub(crate) fn find_owner(
    proc_root: &Path,
    host_ip: Ipv4Addr,
    port: u16,
    proto: Protocol,
) -> PortOwner {
    let net = proc_root.join("thread-self/net");
    let inodes = socket_inodes(&net, host_ip, port, proto);
    process_with_socket(proc_root, &inodes).unwrap_or(PortOwner::Unknown)
}

/// A row of /proc/net/{tcp,udp}{,6}.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SocketEntry {
    addr: IpAddr,
    port: u16,
    state: u8,
    inode: u64,
}

const TCP_LISTEN: u8 = 0x0A;

/// Inodes of the sockets on `port` that conflict with `host_ip`; for TCP the
/// listeners come first, as they are the usual holders.
fn socket_inodes(net_dir: &Path, host_ip: Ipv4Addr, port: u16, proto: Protocol) -> Vec<u64> {
    let mut entries: Vec<SocketEntry> = [proto.as_str().to_string(), format!("{proto}6")]
        .iter()
        .filter_map(|file| fs::read_to_string(net_dir.join(file)).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(parse_socket_line)
                .collect::<Vec<_>>()
        })
        .filter(|e| e.port == port && e.inode != 0 && overlaps(e.addr, host_ip))
        .collect();
    if proto == Protocol::Tcp {
        entries.sort_by_key(|e| e.state != TCP_LISTEN);
    }
    entries.into_iter().map(|e| e.inode).collect()
}

/// Whether a socket bound to `addr` keeps us from binding `host_ip` on the same port.
fn overlaps(addr: IpAddr, host_ip: Ipv4Addr) -> bool {
    let addr_v4 = match addr {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) if v6.is_unspecified() => return true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    match addr_v4 {
        Some(v4) => v4.is_unspecified() || host_ip.is_unspecified() || v4 == host_ip,
        None => false,
    }
}

/// Parses `sl local_address rem_address st ... uid timeout inode`.
fn parse_socket_line(line: &str) -> Option<SocketEntry> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (addr_hex, port_hex) = fields.get(1)?.split_once(':')?;
    Some(SocketEntry {
        addr: parse_hex_addr(addr_hex)?,
        port: u16::from_str_radix(port_hex, 16).ok()?,
        state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// The kernel prints each 32-bit word of the address in host byte order.
fn parse_hex_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let text = hex.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(text, 16).ok()?.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// The lowest pid with a descriptor on one of `inodes` (the first inode that has one).
fn process_with_socket(proc_root: &Path, inodes: &[u64]) -> Option<PortOwner> {
    if inodes.is_empty() {
        return None;
    }
    let mut pids: Vec<u32> = fs::read_dir(proc_root)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for inode in inodes {
        let target = format!("socket:[{inode}]");
        let holder = pids
            .iter()
            .find(|pid| process_has_link(proc_root, **pid, &target));
        if let Some(&pid) = holder {
            let name = fs::read_to_string(proc_root.join(format!("{pid}/comm")))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            let name = if name.is_empty() {
                "a process".to_string()
            } else {
                name
            };
            return Some(PortOwner::Process { name, pid });
        }
    }
    None
}

fn process_has_link(proc_root: &Path, pid: u32, target: &str) -> bool {
    let Ok(fds) = fs::read_dir(proc_root.join(format!("{pid}/fd"))) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .any(|link| link.as_os_str() == target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn protocol_parses_docker_spellings_and_rejects_others() {
        assert_eq!("tcp".parse::<Protocol>().unwrap(), Protocol::Tcp);
        assert_eq!("UDP".parse::<Protocol>().unwrap(), Protocol::Udp);
        let err = "sctp".parse::<Protocol>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported protocol \"sctp\": published ports are tcp or udp"
        );
    }

    #[test]
    fn ephemeral_port_is_reported_and_held() {
        let held = reserve(Ipv4Addr::LOCALHOST, 0, Protocol::Tcp).unwrap();
        assert_ne!(held.port(), 0);
        // While held, nobody else can listen there.
        let again = TcpListener::bind((Ipv4Addr::LOCALHOST, held.port()));
        assert!(again.is_err(), "port {} was not held", held.port());
        let port = held.port();
        drop(held);
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
    }

    #[test]
    fn udp_reservation_blocks_other_binds() {
        let held = reserve(Ipv4Addr::LOCALHOST, 0, Protocol::Udp).unwrap();
        assert!(UdpSocket::bind((Ipv4Addr::LOCALHOST, held.port())).is_err());
        let forward = held.forward_to(Ipv4Addr::new(10, 213, 0, 2), 53);
        assert_eq!(forward.host_port, held.port());
        assert_eq!(forward.protocol, Protocol::Udp);
        assert_eq!(forward.container_port, 53);
    }

    #[test]
    fn taken_port_names_this_process_as_owner() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = reserve(Ipv4Addr::UNSPECIFIED, port, Protocol::Tcp).unwrap_err();
        let PortError::InUse { owner, .. } = &err else {
            panic!("expected InUse, got {err}");
        };
        assert_eq!(
            owner,
            &PortOwner::Process {
                name: fs::read_to_string("/proc/self/comm")
                    .unwrap()
                    .trim()
                    .to_string(),
                pid: std::process::id(),
            }
        );
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("port {port}/tcp is already in use by ")),
            "{text}"
        );
        assert!(
            text.contains(&format!("(pid {})", std::process::id())),
            "{text}"
        );
    }

    #[test]
    fn foreign_address_is_refused_with_advice() {
        // 192.0.2.0/24 is TEST-NET-1: never an address of this host.
        let err = reserve(Ipv4Addr::new(192, 0, 2, 1), 0, Protocol::Tcp).unwrap_err();
        assert!(
            matches!(err, PortError::AddressNotAvailable { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("is not an address of this host"));
    }

    #[test]
    fn parses_proc_net_rows_for_v4_and_v6() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_socket_line(v4),
            Some(SocketEntry {
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 8080,
                state: TCP_LISTEN,
                inode: 4242,
            })
        );
        let v6 = "   1: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 77 2 0000000000000000 0";
        let entry = parse_socket_line(v6).unwrap();
        assert_eq!(entry.addr, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!((entry.port, entry.inode), (53, 77));
        assert_eq!(parse_socket_line("garbage"), None);
        assert_eq!(
            parse_socket_line("  sl  local_address rem_address   st"),
            None
        );
    }

    #[test]
    fn wildcard_and_equal_addresses_overlap_others_do_not() {
        let lo = Ipv4Addr::LOCALHOST;
        let any = Ipv4Addr::UNSPECIFIED;
        assert!(overlaps(IpAddr::V4(any), lo));
        assert!(overlaps(IpAddr::V4(lo), any));
        assert!(overlaps(IpAddr::V4(lo), lo));
        assert!(!overlaps(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), lo));
        assert!(overlaps(IpAddr::V6(Ipv6Addr::UNSPECIFIED), lo));
        assert!(overlaps(IpAddr::V6(lo.to_ipv6_mapped()), lo));
        assert!(!overlaps(IpAddr::V6(Ipv6Addr::LOCALHOST), lo));
    }

    #[test]
    fn owner_is_found_in_a_fake_proc_tree() {
        let root = tempfile::tempdir().unwrap();
        let net = root.path().join("thread-self/net");
        fs::create_dir_all(&net).unwrap();
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        // A connected socket on the port first, then the listener: the listener wins.
        fs::write(
            net.join("tcp"),
            format!("{header}   0: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 11 1\n   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 22 1\n"),
        )
        .unwrap();
        for (pid, inode, comm) in [(300, 22, "nginx\n"), (100, 99, "sshd\n")] {
            let fd = root.path().join(format!("{pid}/fd"));
            fs::create_dir_all(&fd).unwrap();
            symlink(format!("socket:[{inode}]"), fd.join("3")).unwrap();
            fs::write(root.path().join(format!("{pid}/comm")), comm).unwrap();
        }
        let owner = find_owner(root.path(), Ipv4Addr::UNSPECIFIED, 8080, Protocol::Tcp);
        assert_eq!(
            owner,
            PortOwner::Process {
                name: "nginx".into(),
                pid: 300
            }
        );
        assert_eq!(
            find_owner(root.path(), Ipv4Addr::UNSPECIFIED, 9090, Protocol::Tcp),
            PortOwner::Unknown
        );
        assert_eq!(PortOwner::Unknown.to_string(), "another program");
    }

    #[test]
    fn in_use_message_names_the_address_when_one_is_given() {
        let err = PortError::InUse {
            host_ip: Ipv4Addr::LOCALHOST,
            port: 8080,
            proto: Protocol::Udp,
            owner: PortOwner::Process {
                name: "dnsmasq".into(),
                pid: 12,
            },
        };
        assert_eq!(
            err.to_string(),
            "port 127.0.0.1:8080/udp is already in use by dnsmasq (pid 12); stop that program or publish another port"
        );
    }
}
