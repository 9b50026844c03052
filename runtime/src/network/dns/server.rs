//! One network's DNS listener (UDP and TCP on the same address and port), running in a
//! tokio runtime, and the forwarding of non-local names to upstream resolvers.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::answer::{self, Decision, Transport};
use super::registry::DnsRegistry;
use super::DnsError;

/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// How long one upstream gets to answer before the next is tried. Clients retry after
/// 5 s (resolv.conf's default), so two upstreams still answer within one client try.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Queries being answered at once per server; more are dropped (the client retries), so a
/// flood of queries to a dead upstream cannot exhaust memory.
const MAX_IN_FLIGHT: usize = 1024;
/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest DNS message (TCP length prefix) and our UDP receive buffer.
const MAX_MESSAGE: usize = 65_535;
/// Attempts at finding a port free for both UDP and TCP when the port is 0 (tests).
const EPHEMERAL_PORT_ATTEMPTS: usize = 16;

/// Where and how one network's server listens and forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsServerConfig {
    /// The network's name in the registry.
    pub network: String,
    /// The network's gateway address and port 53 in production; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Resolvers for names that are not local, unless the asking container has its own
    /// (see [`super::ResolverOptions`]). Empty: such names get SERVFAIL.
    pub upstreams: Vec<SocketAddr>,
    /// Time each upstream gets to answer.
    pub upstream_timeout: Duration,
}

impl DnsServerConfig {
    /// A server for `network` on `gateway:53` forwarding to `upstreams`.
    pub fn new(network: &str, gateway: Ipv4Addr, upstreams: Vec<SocketAddr>) -> Self {
        Self {
            network: network.to_string(),
            listen: SocketAddr::from((gateway, DNS_PORT)),
            upstreams,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
        }
    }
}

/// A running DNS server; it stops (and frees its address) when stopped or dropped.
#[derive(Debug)]
pub struct DnsServer {
    network: String,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

/// What the serving tasks share.
struct Context {
    network: String,
    listen: SocketAddr,
    registry: Arc<DnsRegistry>,
    upstreams: Vec<SocketAddr>,
    upstream_timeout: Duration,
    in_flight: Arc<Semaphore>,
}

impl DnsServer {
    /// Binds UDP and TCP on `config.listen` and serves on `runtime` (which must have IO
    /// and timers enabled). Callable from sync or async code.
    pub fn start(
        config: DnsServerConfig,
        registry: Arc<DnsRegistry>,
        runtime: &Handle,
    ) -> Result<Self, DnsError> {
        let (udp, tcp) = bind_both(config.listen)?;
        let local_addr = udp.local_addr().map_err(|source| DnsError::Bind {
            addr: config.listen,
            source,
        })?;
        let runtime_error = |source| DnsError::Runtime {
            network: config.network.clone(),
            source,
        };
        // Registering sockets with tokio needs the runtime's context.
        let _entered = runtime.enter();
        let udp = UdpSocket::from_std(udp).map_err(runtime_error)?;
        let tcp = TcpListener::from_std(tcp).map_err(runtime_error)?;
        let context = Arc::new(Context {
            network: config.network.clone(),
            listen: local_addr,
            registry,
            upstreams: config.upstreams,
            upstream_timeout: config.upstream_timeout,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        });
        let tasks = vec![
            runtime.spawn(serve_udp(Arc::new(udp), Arc::clone(&context))),
            runtime.spawn(serve_tcp(tcp, context)),
        ];
        Ok(Self {
            network: config.network,
            local_addr,
            tasks,
        })
    }

    /// The address actually listened on (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    /// Stops serving; the sockets close once the runtime has dropped the tasks.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Non-blocking std sockets for UDP and TCP on the same address and port.
fn bind_both(addr: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), DnsError> {
    let attempts = if addr.port() == 0 {
        EPHEMERAL_PORT_ATTEMPTS
    } else {
        1
    };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = std::net::UdpSocket::bind(addr).map_err(|error| bind_error(addr, error))?;
        let port = udp
            .local_addr()
            .map_err(|error| bind_error(addr, error))?
            .port();
        match std::net::TcpListener::bind(SocketAddr::new(addr.ip(), port)) {
            Ok(tcp) => {
                for result in [udp.set_nonblocking(true), tcp.set_nonblocking(true)] {
                    result.map_err(|error| bind_error(addr, error))?;
                }
                return Ok((udp, tcp));
            }
            // With an ephemeral UDP port, TCP's twin may be taken: try another port.
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
            Err(error) => return Err(bind_error(addr, error)),
        }
    }
    let error = last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse));
    Err(bind_error(addr, error))
}

fn bind_error(addr: SocketAddr, source: io::Error) -> DnsError {
    match source.kind() {
        io::ErrorKind::AddrNotAvailable => DnsError::AddressNotAvailable { addr },
        io::ErrorKind::AddrInUse => DnsError::AddressInUse { addr },
        io::ErrorKind::PermissionDenied => DnsError::PermissionDenied { addr },
        _ => DnsError::Bind { addr, source },
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, context: Arc<Context>) {
    let mut buffer = vec![0u8; MAX_MESSAGE];
    loop {
        let (len, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            // ICMP errors from earlier replies (ECONNREFUSED...) surface here: not fatal.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&context.in_flight).try_acquire_owned() else {
            continue; // overloaded: drop, the client retries
        };
        let query = buffer.get(..len).unwrap_or_default().to_vec();
        let (socket, context) = (Arc::clone(&socket), Arc::clone(&context));
        tokio::spawn(async move {
            if let Some(reply) = context.respond(&query, peer, Transport::Udp).await {
                // A client that went away is not our problem.
                let _ = socket.send_to(&reply, peer).await;
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, context: Arc<Context>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors or an aborted handshake: wait a little and go on.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&context.in_flight).try_acquire_owned() else {
            continue; // overloaded: dropping the stream closes it
        };
        let context = Arc::clone(&context);
        tokio::spawn(async move {
            serve_tcp_connection(stream, peer, &context).await;
            drop(permit);
        });
    }
}

/// Answers length-prefixed queries on one connection until the client closes or idles.
async fn serve_tcp_connection(mut stream: TcpStream, peer: SocketAddr, context: &Context) {
    loop {
        let Ok(Ok(query)) = timeout(TCP_IDLE_TIMEOUT, read_framed(&mut stream)).await else {
            return;
        };
        let Some(reply) = context.respond(&query, peer, Transport::Tcp).await else {
            continue;
        };
        if write_framed(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

async fn read_framed(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut message = vec![0u8; usize::from(len)];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

async fn write_framed(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len =
        u16::try_from(message.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

impl Context {
    /// The reply to `query` from `peer`, if it deserves one.
    async fn respond(
        &self,
        query: &[u8],
        peer: SocketAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        match answer::decide(&self.registry, &self.network, peer.ip(), query, transport) {
            Decision::Reply(reply) => Some(reply),
            Decision::Ignore => None,
            Decision::Forward(parsed) => match self.forward(query, peer, transport).await {
                Some(reply) => Some(reply),
                None => Some(answer::server_failure(&parsed)),
            },
        }
    }

    /// The first upstream answer to `query`, trying the asker's upstreams (or ours) in order.
    async fn forward(
        &self,
        query: &[u8],
        peer: SocketAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let upstreams = self
            .registry
            .upstreams_for(peer.ip())
            .unwrap_or_else(|| self.upstreams.clone());
        // Forwarding to ourselves would only loop until the timeout.
        for upstream in upstreams
            .into_iter()
            .filter(|upstream| *upstream != self.listen)
        {
            let attempt = async {
                match transport {
                    Transport::Udp => forward_udp(query, upstream).await,
                    Transport::Tcp => forward_tcp(query, upstream).await,
                }
            };
            if let Ok(Ok(reply)) = timeout(self.upstream_timeout, attempt).await {
                return Some(reply);
            }
        }
        None
    }
}

/// Sends the query from a fresh socket (a fresh random source port) and waits for the
/// reply carrying the query's id; a connected socket only accepts the upstream's packets.
async fn forward_udp(query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let socket = UdpSocket::bind(unspecified_like(upstream)).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buffer = vec![0u8; MAX_MESSAGE];
    loop {
        let len = socket.recv(&mut buffer).await?;
        let reply = buffer.get(..len).unwrap_or_default();
        if reply.len() >= 2 && reply.get(..2) == query.get(..2) {
            return Ok(reply.to_vec());
        }
    }
}

async fn forward_tcp(query: &[u8], upstream: SocketAddr) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    write_framed(&mut stream, query).await?;
    read_framed(&mut stream).await
}

fn unspecified_like(upstream: SocketAddr) -> SocketAddr {
    match upstream {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Mutex;
    use std::time::Instant;

    use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, PTR};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use tokio::net::TcpSocket;
    use tokio::runtime::Runtime;

    use super::*;
    use crate::network::dns::{DnsRecord, ResolverOptions};

    const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
    const WEB_1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
    const DB: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
    const WEB_2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
    const APP_FRONT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
    const APP_BACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);
    const STRANGER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

    fn runtime() -> Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// front: web-1, web-2 (service "web"), app; back: db, app.
    fn registry() -> Arc<DnsRegistry> {
        let registry = DnsRegistry::new();
        let entries = [
            ("front", "w1", WEB_1, "proj-web-1", "web"),
            ("front", "w2", WEB_2, "proj-web-2", "web"),
            ("back", "db", DB, "proj-db-1", "db"),
            ("front", "app", APP_FRONT, "proj-app-1", "app"),
            ("back", "app", APP_BACK, "proj-app-1", "app"),
        ];
        for (network, id, ipv4, name, alias) in entries {
            let record = DnsRecord {
                container_id: id.to_string(),
                ipv4,
                name: name.to_string(),
                aliases: vec![alias.to_string()],
            };
            registry.add(network, record).unwrap();
        }
        Arc::new(registry)
    }

    /// A resolver on loopback that answers `outside.test` with `answer` and anything
    /// else with NXDOMAIN, over UDP and TCP, remembering the names it was asked.
    struct FakeUpstream {
        addr: SocketAddr,
        asked: Arc<Mutex<Vec<String>>>,
    }

    impl FakeUpstream {
        fn start(runtime: &Runtime, answer: Ipv4Addr) -> Self {
            let (udp, tcp) = bind_both(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
            let addr = udp.local_addr().unwrap();
            let asked = Arc::new(Mutex::new(Vec::new()));
            let _entered = runtime.enter();
            let udp = UdpSocket::from_std(udp).unwrap();
            let tcp = TcpListener::from_std(tcp).unwrap();
            let seen = Arc::clone(&asked);
            runtime.spawn(async move {
                let mut buffer = vec![0u8; MAX_MESSAGE];
                while let Ok((len, peer)) = udp.recv_from(&mut buffer).await {
                    let reply = Self::reply(&buffer[..len], answer, &seen);
                    let _ = udp.send_to(&reply, peer).await;
                }
            });
            let seen = Arc::clone(&asked);
            runtime.spawn(async move {
                while let Ok((mut stream, _)) = tcp.accept().await {
                    let seen = Arc::clone(&seen);
                    tokio::spawn(async move {
                        while let Ok(query) = read_framed(&mut stream).await {
                            let reply = Self::reply(&query, answer, &seen);
                            let _ = write_framed(&mut stream, &reply).await;
                        }
                    });
                }
            });
            Self { addr, asked }
        }

        fn reply(query: &[u8], answer: Ipv4Addr, asked: &Mutex<Vec<String>>) -> Vec<u8> {
            let query = Message::from_vec(query).unwrap();
            let name = query.queries()[0].name().clone();
            asked.lock().unwrap().push(name.to_ascii());
            let mut reply = Message::new();
            reply
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .add_queries(query.queries().iter().cloned());
            if name.to_ascii() == "outside.test." {
                reply.add_answer(Record::from_rdata(name, 30, RData::A(A(answer))));
            } else {
                reply.set_response_code(ResponseCode::NXDomain);
            }
            reply.to_vec().unwrap()
        }

        fn asked(&self) -> Vec<String> {
            self.asked.lock().unwrap().clone()
        }
    }

    fn start_server(
        runtime: &Runtime,
        registry: Arc<DnsRegistry>,
        upstreams: Vec<SocketAddr>,
    ) -> DnsServer {
        let config = DnsServerConfig {
            network: "front".to_string(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            upstreams,
            upstream_timeout: Duration::from_millis(300),
        };
        DnsServer::start(config, registry, runtime.handle()).unwrap()
    }

    fn question(name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::new();
        message
            .set_id(rand_id())
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message.to_vec().unwrap()
    }

    fn rand_id() -> u16 {
        // Distinct ids per query are enough here; no need for real randomness.
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(7);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks over UDP from the source address `from`.
    async fn ask_udp(from: Ipv4Addr, server: SocketAddr, name: &str, kind: RecordType) -> Message {
        let socket = UdpSocket::bind((from, 0)).await.unwrap();
        let query = question(name, kind);
        socket.send_to(&query, server).await.unwrap();
        let mut buffer = vec![0u8; MAX_MESSAGE];
        let (len, _) = timeout(CLIENT_TIMEOUT, socket.recv_from(&mut buffer))
            .await
            .expect("the server answers over UDP")
            .unwrap();
        let reply = Message::from_vec(&buffer[..len]).unwrap();
        assert_eq!(reply.id(), u16::from_be_bytes([query[0], query[1]]));
        reply
    }

    /// Asks over TCP from the source address `from`.
    async fn ask_tcp(from: Ipv4Addr, server: SocketAddr, name: &str, kind: RecordType) -> Message {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        let mut stream = socket.connect(server).await.unwrap();
        write_framed(&mut stream, &question(name, kind))
            .await
            .unwrap();
        let reply = timeout(CLIENT_TIMEOUT, read_framed(&mut stream))
            .await
            .expect("the server answers over TCP")
            .unwrap();
        Message::from_vec(&reply).unwrap()
    }

    fn addresses(reply: &Message) -> Vec<Ipv4Addr> {
        let mut addresses: Vec<Ipv4Addr> = reply
            .answers()
            .iter()
            .filter_map(|record| match record.data() {
                RData::A(A(ip)) => Some(*ip),
                _ => None,
            })
            .collect();
        addresses.sort();
        addresses
    }

    #[test]
    fn names_resolve_only_between_containers_sharing_a_network() {
        let runtime = runtime();
        let upstream = FakeUpstream::start(&runtime, Ipv4Addr::new(192, 0, 2, 10));
        let server = start_server(&runtime, registry(), vec![upstream.addr]);
        let at = server.local_addr();
        runtime.block_on(async {
            let web = ask_udp(WEB_1, at, "web", RecordType::A).await;
            assert_eq!(web.response_code(), ResponseCode::NoError);
            assert_eq!(addresses(&web), [WEB_1, WEB_2], "every replica");
            assert!(web.answers().iter().all(|record| record.ttl() == 600));

            // web-1 is not on "back": db is not local for it, so it went upstream.
            let db = ask_udp(WEB_1, at, "db", RecordType::A).await;
            assert_eq!(db.response_code(), ResponseCode::NXDomain);
            assert_eq!(upstream.asked(), ["db."]);

            // app is on both networks and gets db, over TCP too.
            let db = ask_tcp(APP_FRONT, at, "db", RecordType::A).await;
            assert_eq!(addresses(&db), [DB]);
            let db = ask_udp(APP_FRONT, at, "proj-db-1.back", RecordType::A).await;
            assert_eq!(addresses(&db), [DB]);

            // An unknown source sees no container names.
            let web = ask_udp(STRANGER, at, "web", RecordType::A).await;
            assert_eq!(web.response_code(), ResponseCode::NXDomain);
            assert!(web.answers().is_empty());
        });
    }

    #[test]
    fn lookups_ignore_case_and_the_root_dot_and_rotate_replicas() {
        let runtime = runtime();
        let server = start_server(&runtime, registry(), Vec::new());
        let at = server.local_addr();
        runtime.block_on(async {
            for name in ["WEB", "Web.", "PROJ-web-2"] {
                let reply = ask_udp(APP_FRONT, at, name, RecordType::A).await;
                assert!(!reply.answers().is_empty(), "{name}");
                assert_eq!(
                    reply.answers()[0].name().to_ascii().trim_end_matches('.'),
                    name.trim_end_matches('.')
                );
            }
            let first = ask_udp(APP_FRONT, at, "web", RecordType::A).await;
            let second = ask_udp(APP_FRONT, at, "web", RecordType::A).await;
            assert_ne!(first.answers()[0], second.answers()[0], "the order rotates");
        });
    }

    #[test]
    fn aaaa_of_a_local_name_is_empty_and_ptr_gives_the_container_name() {
        let runtime = runtime();
        let server = start_server(&runtime, registry(), Vec::new());
        let at = server.local_addr();
        runtime.block_on(async {
            let aaaa = ask_udp(WEB_1, at, "web", RecordType::AAAA).await;
            assert_eq!(aaaa.response_code(), ResponseCode::NoError);
            assert!(aaaa.answers().is_empty());

            let ptr = ask_tcp(WEB_1, at, "4.0.0.127.in-addr.arpa.", RecordType::PTR).await;
            let names: Vec<String> = ptr
                .answers()
                .iter()
                .filter_map(|record| match record.data() {
                    RData::PTR(PTR(name)) => Some(name.to_ascii()),
                    _ => None,
                })
                .collect();
            assert_eq!(names, ["proj-web-2.front."]);
        });
    }

    #[test]
    fn other_names_are_forwarded_over_the_askers_transport() {
        let runtime = runtime();
        let host_resolver = FakeUpstream::start(&runtime, Ipv4Addr::new(192, 0, 2, 10));
        let own_resolver = FakeUpstream::start(&runtime, Ipv4Addr::new(192, 0, 2, 20));
        let registry = registry();
        let server = start_server(&runtime, Arc::clone(&registry), vec![host_resolver.addr]);
        let at = server.local_addr();
        runtime.block_on(async {
            let udp = ask_udp(WEB_1, at, "outside.test", RecordType::A).await;
            assert_eq!(addresses(&udp), [Ipv4Addr::new(192, 0, 2, 10)]);
            let tcp = ask_tcp(STRANGER, at, "outside.test", RecordType::A).await;
            assert_eq!(addresses(&tcp), [Ipv4Addr::new(192, 0, 2, 10)]);
            assert_eq!(host_resolver.asked().len(), 2);

            // A container with its own `dns` servers is forwarded there instead.
            let options = ResolverOptions {
                upstreams: vec![own_resolver.addr],
                search_domains: Vec::new(),
            };
            registry.set_resolver_options("w1", options);
            let own = ask_udp(WEB_1, at, "outside.test", RecordType::A).await;
            assert_eq!(addresses(&own), [Ipv4Addr::new(192, 0, 2, 20)]);
            assert_eq!(
                host_resolver.asked().len(),
                2,
                "the host's resolver was not asked"
            );
        });
    }

    #[test]
    fn a_silent_or_missing_upstream_gives_servfail_after_the_timeout() {
        let runtime = runtime();
        // Bound but never read: queries to it go unanswered.
        let silent = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let server = start_server(&runtime, registry(), vec![silent.local_addr().unwrap()]);
        let at = server.local_addr();
        runtime.block_on(async {
            let started = Instant::now();
            let reply = ask_udp(WEB_1, at, "outside.test", RecordType::A).await;
            let waited = started.elapsed();
            assert_eq!(reply.response_code(), ResponseCode::ServFail);
            assert_eq!(reply.queries().len(), 1);
            assert!(waited >= Duration::from_millis(250), "waited {waited:?}");
            assert!(waited < Duration::from_secs(3), "waited {waited:?}");
            // Nothing listens on TCP there: SERVFAIL as well, without waiting.
            let reply = ask_tcp(WEB_1, at, "outside.test", RecordType::A).await;
            assert_eq!(reply.response_code(), ResponseCode::ServFail);
        });
        let server = start_server(&runtime, registry(), Vec::new());
        let at = server.local_addr();
        runtime.block_on(async {
            let reply = ask_udp(WEB_1, at, "outside.test", RecordType::A).await;
            assert_eq!(
                reply.response_code(),
                ResponseCode::ServFail,
                "no upstream at all"
            );
        });
    }

    #[test]
    fn registry_changes_apply_to_the_next_query() {
        let runtime = runtime();
        let registry = registry();
        let server = start_server(&runtime, Arc::clone(&registry), Vec::new());
        let at = server.local_addr();
        runtime.block_on(async {
            assert!(registry.remove("front", "w2"));
            assert_eq!(
                addresses(&ask_udp(APP_FRONT, at, "web", RecordType::A).await),
                [WEB_1]
            );
            let record = DnsRecord {
                container_id: "w3".to_string(),
                ipv4: Ipv4Addr::new(127, 0, 0, 7),
                name: "proj-web-3".to_string(),
                aliases: vec!["web".to_string()],
            };
            registry.add("front", record).unwrap();
            assert_eq!(
                addresses(&ask_tcp(APP_FRONT, at, "web", RecordType::A).await),
                [WEB_1, Ipv4Addr::new(127, 0, 0, 7)]
            );
            registry.remove_container("app");
            let reply = ask_udp(APP_FRONT, at, "web", RecordType::A).await;
            assert_eq!(
                reply.response_code(),
                ResponseCode::ServFail,
                "app is unknown now: forwarded, no upstream"
            );
        });
    }

    #[test]
    fn binding_errors_say_what_is_wrong() {
        let runtime = runtime();
        // 192.0.2.1 (TEST-NET-1) is on no interface of this machine.
        let config = DnsServerConfig::new("front", Ipv4Addr::new(192, 0, 2, 1), Vec::new());
        let error = DnsServer::start(config, registry(), runtime.handle()).unwrap_err();
        assert!(
            matches!(error, DnsError::AddressNotAvailable { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("192.0.2.1:53"), "{error}");
        assert!(
            error.to_string().contains("not assigned to any interface"),
            "{error}"
        );

        let first = start_server(&runtime, registry(), Vec::new());
        let mut config = DnsServerConfig::new("front", Ipv4Addr::LOCALHOST, Vec::new());
        config.listen = first.local_addr();
        let error = DnsServer::start(config.clone(), registry(), runtime.handle()).unwrap_err();
        assert!(matches!(error, DnsError::AddressInUse { .. }), "{error:?}");

        // Stopping frees the address for a new server.
        first.stop();
        runtime.block_on(tokio::task::yield_now());
        let again = DnsServer::start(config, registry(), runtime.handle()).unwrap();
        assert_eq!(again.network(), "front");
    }

    #[test]
    fn source_addresses_in_ipv6_form_are_understood() {
        let registry = registry();
        let mapped = IpAddr::V6(WEB_1.to_ipv6_mapped());
        assert_eq!(
            registry.resolve_a(mapped, "front", "proj-web-2"),
            Some(vec![WEB_2])
        );
    }
}
