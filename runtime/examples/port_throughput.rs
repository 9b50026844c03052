//! TCP throughput through a published port on 127.0.0.1 against the container's own
//! address, in throwaway network namespaces (needs root). Used by `bench/ports.sh`.
//!
//! A "host" namespace gets a bridge with the firewall's rules and a "container"
//! namespace on a veth; a sink in the container reads and discards. The client, in the
//! host namespace, streams for a few seconds to `10.213.250.2:5001` (direct) and to
//! `127.0.0.1:15001` (published, DNAT in the output hook), alternating, and reports the
//! median of each.
//!
//! Usage: port_throughput [SECONDS_PER_RUN] [ROUNDS]   (defaults 3 and 5)

#[path = "../tests/support/netns.rs"]
mod netns;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netns::Netns;
use rcompose_runtime::network::firewall::{Firewall, NetworkRules};
use rcompose_runtime::network::ports::{reserve, Protocol};

const CONTAINER: Ipv4Addr = Ipv4Addr::new(10, 213, 250, 2);
const SINK_PORT: u16 = 5001;
const PUBLISHED_PORT: u16 = 15001;
const CHUNK: usize = 256 * 1024;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    if !rustix::process::geteuid().is_root() {
        return Err("port_throughput needs root (network namespaces, nftables)".into());
    }

    let host = Netns::new()?;
    let container = Netns::new()?;
    host.sh(&format!(
        "ip link add rc-bench type bridge && ip addr add 10.213.250.1/24 dev rc-bench && ip link set rc-bench up && \
         ip link add rcvbench type veth peer name eth0 netns {} && ip link set rcvbench master rc-bench up",
        container.path()
    ));
    container.sh(&format!(
        "ip addr add {CONTAINER}/24 dev eth0 && ip link set eth0 up && ip route add default via 10.213.250.1"
    ));
    let state = tempfile::tempdir()?;
    let firewall = Firewall::new(state.path());
    let network = NetworkRules {
        bridge: "rc-bench".into(),
        subnet: Ipv4Addr::new(10, 213, 250, 0),
        prefix_len: 24,
        internal: false,
    };
    host.run(|| firewall.add_network(&network))?;
    let reservation = host.run(|| reserve(Ipv4Addr::UNSPECIFIED, PUBLISHED_PORT, Protocol::Tcp))?;
    host.run(|| firewall.add_port_forwards(&[reservation.forward_to(CONTAINER, SINK_PORT)]))?;

    let sink = container.run(|| TcpListener::bind((CONTAINER, SINK_PORT)))?;
    std::thread::spawn(move || serve_sink(sink));

    let direct: SocketAddr = (CONTAINER, SINK_PORT).into();
    let published: SocketAddr = (Ipv4Addr::LOCALHOST, PUBLISHED_PORT).into();
    let duration = Duration::from_secs(seconds);
    // One unmeasured run of each warms up ARP, conntrack and the CPU frequency.
    host.run(|| stream(direct, Duration::from_millis(500)))?;
    host.run(|| stream(published, Duration::from_millis(500)))?;
    let (mut direct_runs, mut published_runs) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let d = host.run(|| stream(direct, duration))?;
        let p = host.run(|| stream(published, duration))?;
        println!("round {round}: direct {d:.2} GB/s, published 127.0.0.1 {p:.2} GB/s");
        direct_runs.push(d);
        published_runs.push(p);
    }
    let (d, p) = (median(&mut direct_runs), median(&mut published_runs));
    println!("median: direct {CONTAINER}:{SINK_PORT} {d:.2} GB/s");
    println!("median: published 127.0.0.1:{PUBLISHED_PORT} {p:.2} GB/s");
    println!("ratio: {:.1} %", 100.0 * p / d);

    drop(reservation);
    host.run(|| firewall.remove_all())?;
    Ok(())
}

/// Reads each connection to its end, then answers with the byte count.
fn serve_sink(listener: TcpListener) {
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut conn = conn;
            let mut buf = vec![0u8; CHUNK];
            let mut total: u64 = 0;
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            let _ = conn.write_all(&total.to_be_bytes());
        });
    }
}

/// Streams to `addr` for `duration`; GB/s counted from what the sink received, timed
/// until its answer arrives.
fn stream(addr: SocketAddr, duration: Duration) -> Result<f64> {
    let buf = vec![0x5au8; CHUNK];
    let mut conn = TcpStream::connect(addr)?;
    let start = Instant::now();
    while start.elapsed() < duration {
        conn.write_all(&buf)?;
    }
    conn.shutdown(Shutdown::Write)?;
    let mut answer = [0u8; 8];
    conn.read_exact(&mut answer)?;
    let received = u64::from_be_bytes(answer);
    Ok(received as f64 / start.elapsed().as_secs_f64() / 1e9)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
