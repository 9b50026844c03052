//! Networks, service discovery, published ports and volumes with real containers
//! (needs root, cgroups, overlayfs, nftables).
//!
//! Everything happens in a throwaway network namespace: `main` moves the whole
//! process into a new one before any thread exists, so bridges, veths, routes
//! and nftables rules never touch the host's, even when a test fails. An
//! "uplink" veth gives that namespace an address of its own (10.213.250.1, "the
//! host's address") and a peer namespace at 10.213.250.2 plays the internet.
//!
//! Like container_run.rs this has its own `main` (`harness = false`): the runtime
//! helper is this binary re-executed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oci_spec::image::ImageConfiguration;
use rcompose_runtime::container::config::{ContainerConfig, Mount, MountKind, Propagation};
use rcompose_runtime::container::helper;
use rcompose_runtime::container::lifecycle::{ContainerOutput, CreateOptions, Runtime};
use rcompose_runtime::container::rootfs::{mount_points, RootfsSource};
use rcompose_runtime::logs::{LogOptions, LogReader, ReadOptions};
use rcompose_runtime::network::dns::{DnsRecord, DnsRegistry, DnsServer, DnsServerConfig};
use rcompose_runtime::network::manager::{
    IpamRequest, NetworkManager, NetworkOptions, PublishRequest,
};
use rcompose_runtime::network::netns::NetnsHandle;
use rcompose_runtime::network::ports::Protocol;
use rcompose_runtime::network::sandbox::{self, NetworkAttachment, Sandbox, SandboxRequest};
use rcompose_runtime::volume::VolumeStore;

type TestResult = Result<(), String>;
type TestFn = fn(&mut Fixture) -> TestResult;

const HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 213, 250, 1);
const INTERNET_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 213, 250, 2);
const INTERNET_PORT: u16 = 7000;

fn main() {
    helper::maybe_run();
    if !rustix::process::geteuid().is_root() {
        println!("network_run: skipped, networking needs root");
        return;
    }
    // The image first: fetching busybox needs the host's network.
    let work = tempfile::Builder::new()
        .prefix("rcompose-net-test")
        .tempdir()
        .unwrap_or_else(|err| panic!("creating a temp dir: {err}"));
    let image = match test_image(work.path()) {
        Ok(dir) => dir,
        Err(reason) => {
            println!("network_run: skipped, no test image: {reason}");
            return;
        }
    };
    if let Err(err) = enter_throwaway_netns() {
        println!("network_run: skipped, cannot create a network namespace: {err}");
        return;
    }
    let state_root = work.path().join("state");
    let mut fixture = match Fixture::new(&state_root, image) {
        Ok(fixture) => fixture,
        Err(err) => panic!("setting up: {err}"),
    };
    let tests: &[(&str, TestFn)] = &[
        (
            "services_reach_each_other_by_name",
            services_reach_each_other_by_name,
        ),
        (
            "replicas_all_answer_the_service_name",
            replicas_all_answer_the_service_name,
        ),
        (
            "separate_networks_are_isolated",
            separate_networks_are_isolated,
        ),
        ("egress_is_masqueraded", egress_is_masqueraded),
        (
            "internal_network_has_no_way_out",
            internal_network_has_no_way_out,
        ),
        ("published_ports_answer", published_ports_answer),
        (
            "taken_port_is_refused_before_anything",
            taken_port_is_refused_before_anything,
        ),
        ("named_volume_keeps_data", named_volume_keeps_data),
        (
            "new_named_volume_holds_the_image_files",
            new_named_volume_holds_the_image_files,
        ),
        (
            "read_only_bind_refuses_writes",
            read_only_bind_refuses_writes,
        ),
        ("teardown_leaves_nothing", teardown_leaves_nothing),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        let result = test(&mut fixture);
        fixture.remove_all_containers();
        match result {
            Ok(()) => println!("test {name} ... ok"),
            Err(err) => {
                failed += 1;
                println!("test {name} ... FAILED: {err}");
            }
        }
    }
    fixture.remove_all_networks();
    let cgroup_parent = fixture.cgroup_parent.clone();
    drop(fixture);
    remove_cgroup_parent(&cgroup_parent);
    // The namespace directory is a bind mount of its own; the last one out removes it.
    match rcompose_runtime::network::netns::release_netns_dir(&state_root) {
        Ok(true) => {}
        Ok(false) => {
            failed += 1;
            println!(
                "cleanup: network namespace files are left in {}",
                state_root.display()
            );
        }
        Err(err) => {
            failed += 1;
            println!("cleanup: {err}");
        }
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some(point) = mount_points(&mountinfo).find(|p| Path::new(p).starts_with(work.path())) {
        failed += 1;
        println!("cleanup: still mounted: {point}");
    }
    drop(work);
    println!(
        "network_run: {} passed, {failed} failed",
        tests.len() - failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------
// Tests

fn services_reach_each_other_by_name(f: &mut Fixture) -> TestResult {
    f.network("front", "10.213.10.0/24", false)?;
    f.container(
        "web-1",
        &[("front", &["web"])],
        &[],
        "nc -ll -p 80 -e echo tcp-ok & exec /udp_tool serve 9000",
    )?;
    f.container(
        "client-1",
        &[("front", &["client"])],
        &[],
        "sleep 0.3; nc -w 2 web 80 </dev/null; \
         ip=$(nslookup web | awk '/^Address: / {print $2}' | tail -1); \
         /udp_tool send $ip 9000 ping; sleep 30",
    )?;
    f.wait_for_log("client-1", "udp-ok:ping")?;
    let client = f.log("client-1")?;
    if !client.contains("tcp-ok") {
        return Err(format!("no TCP answer from web by name: {client:?}"));
    }
    let server = f.log("web-1")?;
    if !server.contains("received \"ping\"") {
        return Err(format!("the UDP datagram did not reach web: {server:?}"));
    }
    Ok(())
}

fn replicas_all_answer_the_service_name(f: &mut Fixture) -> TestResult {
    f.network("front", "10.213.10.0/24", false)?;
    for replica in ["api-1", "api-2"] {
        f.container(replica, &[("front", &["api"])], &[], "sleep 30")?;
    }
    f.container("asker-1", &[("front", &[])], &[], "nslookup api; sleep 30")?;
    f.wait_for_log("asker-1", "Address")?;
    let answers: Vec<String> = f
        .log("asker-1")?
        .lines()
        .filter_map(|l| l.strip_prefix("Address: "))
        .map(str::to_string)
        .collect();
    let mut want: Vec<String> = ["api-1", "api-2"]
        .iter()
        .map(|c| f.address(c, "front").map(|a| a.to_string()))
        .collect::<Result<_, _>>()?;
    let mut got: Vec<String> = answers
        .into_iter()
        .filter(|a| a.starts_with("10.213.10."))
        .collect();
    got.sort();
    want.sort();
    check_eq(&got, &want, "addresses of the api service")
}

fn separate_networks_are_isolated(f: &mut Fixture) -> TestResult {
    f.network("front", "10.213.10.0/24", false)?;
    f.network("back", "10.213.11.0/24", false)?;
    f.container(
        "db-1",
        &[("back", &["db"])],
        &[],
        "nc -ll -p 5432 -e echo db-ok",
    )?;
    let db = f.address("db-1", "back")?;
    let script = format!(
        "sleep 0.3; nc -w 1 {db} 5432 </dev/null 2>/dev/null && echo reached || echo unreachable; \
         nslookup db >/dev/null 2>&1 && echo resolved || echo unresolved; sleep 30"
    );
    f.container("outsider-1", &[("front", &[])], &[], &script)?;
    f.wait_for_log("outsider-1", "resolved")?;
    let log = f.log("outsider-1")?;
    check_eq(
        &log.as_str(),
        &"unreachable\nunresolved\n",
        "a container on another network",
    )
}

fn egress_is_masqueraded(f: &mut Fixture) -> TestResult {
    f.network("front", "10.213.10.0/24", false)?;
    let script = format!("nc -w 2 {INTERNET_ADDRESS} {INTERNET_PORT} </dev/null; sleep 30");
    f.container("browser-1", &[("front", &[])], &[], &script)?;
    f.wait_for_log("browser-1", "from ")?;
    let log = f.log("browser-1")?;
    // The internet sees the host's address, not the container's.
    check_eq(
        &log.trim(),
        &format!("from {HOST_ADDRESS}").as_str(),
        "what the internet saw",
    )
}

fn internal_network_has_no_way_out(f: &mut Fixture) -> TestResult {
    f.network("private", "10.213.12.0/24", true)?;
    let script = format!(
        "ip route | grep -q default && echo has-default || echo no-default; \
         nc -w 1 {INTERNET_ADDRESS} {INTERNET_PORT} </dev/null >/dev/null 2>&1 \
           && echo escaped || echo contained; sleep 30"
    );
    f.container("vault-1", &[("private", &[])], &[], &script)?;
    f.wait_for_log("vault-1", "contained")
        .or_else(|_| f.wait_for_log("vault-1", "escaped"))?;
    check_eq(
        &f.log("vault-1")?.as_str(),
        &"no-default\ncontained\n",
        "an internal network's container",
    )
}

fn published_ports_answer(f: &mut Fixture) -> TestResult {
    f.network("front", "10.213.10.0/24", false)?;
    let ports = [
        publish(Ipv4Addr::UNSPECIFIED, 18080, 80),
        publish(Ipv4Addr::UNSPECIFIED, 0, 80),
        publish(Ipv4Addr::LOCALHOST, 18081, 80),
    ];
    // The site also reaches itself through its own published port (hairpin).
    let script = format!(
        "nc -ll -p 80 -e echo site-ok & sleep 0.5; \
         echo self: $(nc -w 2 {HOST_ADDRESS} 18080 </dev/null); wait"
    );
    f.container("site-1", &[("front", &["site"])], &ports, &script)?;
    let visitor =
        format!("sleep 0.5; echo visitor: $(nc -w 2 {HOST_ADDRESS} 18080 </dev/null); sleep 30");
    f.container("visitor-1", &[("front", &[])], &[], &visitor)?;
    f.wait_for_log("visitor-1", "visitor: site-ok")?;
    f.wait_for_log("site-1", "self: site-ok")?;
    let ephemeral = f
        .sandboxes
        .get("site-1")
        .and_then(|(s, _)| s.reservations.get(1))
        .map(|r| r.port())
        .ok_or("no reservation for the ephemeral port")?;
    if ephemeral == 0 {
        return Err("the ephemeral port was not reported".into());
    }
    for (address, port) in [
        (Ipv4Addr::LOCALHOST, 18080),
        (HOST_ADDRESS, 18080),
        (Ipv4Addr::LOCALHOST, ephemeral),
        (Ipv4Addr::LOCALHOST, 18081),
    ] {
        let answer = eventually(|| tcp_read(SocketAddrV4::new(address, port)))?;
        check_eq(&answer.as_str(), &"site-ok\n", &format!("{address}:{port}"))?;
    }
    // Published on 127.0.0.1 only: not on the host's other address.
    if tcp_read(SocketAddrV4::new(HOST_ADDRESS, 18081)).is_ok() {
        return Err("a port published on 127.0.0.1 answered on the host address".into());
    }
    Ok(())
}

fn taken_port_is_refused_before_anything(f: &mut Fixture) -> TestResult {
    f.network("front", "10.213.10.0/24", false)?;
    let squatter = TcpListener::bind("0.0.0.0:18090").map_err(|e| e.to_string())?;
    let result = f.container(
        "late-1",
        &[("front", &[])],
        &[publish(Ipv4Addr::UNSPECIFIED, 18090, 80)],
        "sleep 30",
    );
    drop(squatter);
    match result {
        Err(err) if err.contains("18090") && err.contains("in use") => {}
        other => return Err(format!("publishing a taken port: {other:?}")),
    }
    // Nothing of the container was left: no endpoint, no namespace.
    let record = f.manager.inspect("front").map_err(|e| e.to_string())?;
    check_eq(&record.endpoints.len(), &0, "endpoints left on the network")?;
    if f.state_root.join("netns/late-1").exists() {
        return Err("the container's network namespace was left".into());
    }
    Ok(())
}

fn named_volume_keeps_data(f: &mut Fixture) -> TestResult {
    f.network("front", "10.213.10.0/24", false)?;
    f.volume("keep")?;
    let mount = f.volume_mount("keep", "/data", "writer-1")?;
    f.container_with(
        "writer-1",
        &[("front", &[])],
        &[],
        "echo kept > /data/file; sleep 30",
        vec![mount],
    )?;
    f.wait_for_path("keep", "file")?;
    f.remove_container("writer-1")?;
    let mount = f.volume_mount("keep", "/data", "reader-1")?;
    f.container_with(
        "reader-1",
        &[("front", &[])],
        &[],
        "cat /data/file; sleep 30",
        vec![mount],
    )?;
    f.wait_for_log("reader-1", "kept")?;
    Ok(())
}

fn new_named_volume_holds_the_image_files(f: &mut Fixture) -> TestResult {
    f.network("front", "10.213.10.0/24", false)?;
    f.volume("etc-copy")?;
    let source = f
        .volumes
        .attach("etc-copy", "peek-1")
        .map_err(|e| e.to_string())?;
    f.volumes
        .seed_from_image("etc-copy", &f.image, "/etc")
        .map_err(|e| e.to_string())?;
    let mount = bind(&source, "/mnt/etc", false);
    f.container_with(
        "peek-1",
        &[("front", &[])],
        &[],
        "cat /mnt/etc/marker; sleep 30",
        vec![mount],
    )?;
    f.wait_for_log("peek-1", "from-the-image")?;
    f.attached.push(("etc-copy".into(), "peek-1".into()));
    Ok(())
}

fn read_only_bind_refuses_writes(f: &mut Fixture) -> TestResult {
    f.network("front", "10.213.10.0/24", false)?;
    let dir = f.state_root.join("ro-source");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    f.container_with(
        "ro-1",
        &[("front", &[])],
        &[],
        "echo x > /ro/file 2>/dev/null && echo written || echo refused; sleep 30",
        vec![bind(&dir, "/ro", true)],
    )?;
    f.wait_for_log("ro-1", "refused")
        .map_err(|_| format!("log: {:?}", f.log("ro-1")))?;
    if dir.join("file").exists() {
        return Err("the write went through".into());
    }
    Ok(())
}

fn teardown_leaves_nothing(f: &mut Fixture) -> TestResult {
    f.network("front", "10.213.10.0/24", false)?;
    f.network("back", "10.213.11.0/24", false)?;
    f.container(
        "busy-1",
        &[("front", &["busy"]), ("back", &[])],
        &[publish(Ipv4Addr::UNSPECIFIED, 18095, 80)],
        "sleep 30",
    )?;
    f.remove_all_containers();
    f.remove_all_networks();
    let links = run_output(Command::new("ip").args(["-o", "link", "show"]))?;
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    check_eq(&names, &vec!["lo", "uplink0"], "links left")?;
    let routes = run_output(Command::new("ip").args(["route", "show"]))?;
    if routes.contains("10.213.10.") || routes.contains("10.213.11.") {
        return Err(format!("routes left: {routes}"));
    }
    let ruleset = run_output(Command::new("nft").args(["list", "ruleset"]))?;
    if ruleset.contains("10.213.1") || ruleset.contains("rc-") || ruleset.contains("18095") {
        return Err(format!("firewall rules left: {ruleset}"));
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let containers = f.state_root.join("containers");
    if let Some(point) = mount_points(&mountinfo).find(|p| Path::new(p).starts_with(&containers)) {
        return Err(format!("still mounted: {point}"));
    }
    let netns_dir = f.state_root.join("netns");
    let left: Vec<String> = fs::read_dir(&netns_dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "internet")
                .collect()
        })
        .unwrap_or_default();
    check_eq(&left, &Vec::<String>::new(), "network namespaces left")
}

// ---------------------------------------------------------------------------------
// Fixture

struct Fixture {
    state_root: PathBuf,
    image: PathBuf,
    runtime: Runtime,
    manager: NetworkManager,
    volumes: VolumeStore,
    registry: Arc<DnsRegistry>,
    dns_runtime: tokio::runtime::Runtime,
    dns_servers: BTreeMap<String, DnsServer>,
    /// Running containers: their sandbox and networks.
    sandboxes: BTreeMap<String, (Sandbox, Vec<String>)>,
    /// (volume, container) pairs to detach.
    attached: Vec<(String, String)>,
    cgroup_parent: String,
    _internet: Internet,
}

impl Fixture {
    fn new(state_root: &Path, image: PathBuf) -> Result<Fixture, String> {
        fs::create_dir_all(state_root).map_err(|e| e.to_string())?;
        let internet = Internet::start(state_root)?;
        let dns_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Fixture {
            state_root: state_root.to_path_buf(),
            image,
            runtime: Runtime::new(Path::new("/proc/self/exe"), state_root),
            manager: NetworkManager::open(state_root).map_err(|e| e.to_string())?,
            volumes: VolumeStore::open(state_root).map_err(|e| e.to_string())?,
            registry: Arc::new(DnsRegistry::new()),
            dns_runtime,
            dns_servers: BTreeMap::new(),
            sandboxes: BTreeMap::new(),
            attached: Vec::new(),
            cgroup_parent: format!("/rcompose-nettest-{}", std::process::id()),
            _internet: internet,
        })
    }

    /// Creates a network (once) with its DNS server on the gateway.
    fn network(&mut self, name: &str, subnet: &str, internal: bool) -> TestResult {
        if self.dns_servers.contains_key(name) {
            return Ok(());
        }
        let record = self
            .manager
            .create(&NetworkOptions {
                name: name.to_string(),
                internal,
                ipam: Some(IpamRequest {
                    subnet: subnet.parse().map_err(|e| format!("{e}"))?,
                    gateway: None,
                    ip_range: None,
                }),
                ..NetworkOptions::default()
            })
            .map_err(|e| e.to_string())?;
        let server = DnsServer::start(
            DnsServerConfig::new(name, record.gateway, Vec::new()),
            self.registry.clone(),
            self.dns_runtime.handle(),
        )
        .map_err(|e| e.to_string())?;
        self.dns_servers.insert(name.to_string(), server);
        Ok(())
    }

    fn volume(&mut self, name: &str) -> TestResult {
        self.volumes
            .create(name, &BTreeMap::new(), &BTreeMap::new())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn volume_mount(
        &mut self,
        volume: &str,
        target: &str,
        container: &str,
    ) -> Result<Mount, String> {
        let source = self
            .volumes
            .attach(volume, container)
            .map_err(|e| e.to_string())?;
        self.attached
            .push((volume.to_string(), container.to_string()));
        Ok(bind(&source, target, false))
    }

    fn container(
        &mut self,
        id: &str,
        networks: &[(&str, &[&str])],
        ports: &[PublishRequest],
        script: &str,
    ) -> TestResult {
        self.container_with(id, networks, ports, script, Vec::new())
    }

    /// Networking first (sandbox, DNS records), then the container.
    fn container_with(
        &mut self,
        id: &str,
        networks: &[(&str, &[&str])],
        ports: &[PublishRequest],
        script: &str,
        mounts: Vec<Mount>,
    ) -> TestResult {
        let files_dir = self.state_root.join("hostfiles").join(id);
        fs::create_dir_all(&files_dir).map_err(|e| e.to_string())?;
        let request = SandboxRequest {
            container_id: id.to_string(),
            container_name: id.to_string(),
            hostname: id.to_string(),
            files_dir,
            networks: networks
                .iter()
                .map(|(network, aliases)| NetworkAttachment {
                    network: network.to_string(),
                    aliases: aliases.iter().map(|a| a.to_string()).collect(),
                    ipv4_address: None,
                })
                .collect(),
            ports: ports.to_vec(),
            ..SandboxRequest::default()
        };
        let sandbox = sandbox::setup(&self.manager, &request).map_err(|e| e.to_string())?;
        for (network, endpoint) in &sandbox.endpoints {
            let record = DnsRecord {
                container_id: id.to_string(),
                ipv4: endpoint.ipv4,
                name: id.to_string(),
                aliases: endpoint.aliases.clone(),
            };
            self.registry
                .add(network, record)
                .map_err(|e| e.to_string())?;
        }
        self.registry
            .set_resolver_options(id, sandbox.resolver.clone());
        let mut config = ContainerConfig {
            hostname: Some(id.to_string()),
            command: Some(vec!["sh".into(), "-c".into(), script.to_string()]),
            ..ContainerConfig::default()
        };
        config.namespaces.network =
            rcompose_runtime::container::config::NamespaceMode::Join(sandbox.netns_path().into());
        config.mounts = sandbox.mounts.clone();
        config.mounts.extend(mounts);
        let names: Vec<String> = networks.iter().map(|(n, _)| n.to_string()).collect();
        self.sandboxes.insert(id.to_string(), (sandbox, names));
        let image = ImageConfiguration::default();
        let cgroups_path = format!("{}/{id}", self.cgroup_parent);
        self.runtime
            .create(CreateOptions {
                id,
                rootfs: RootfsSource::Layers(vec![self.image.clone()]),
                image: &image,
                config: &config,
                image_name: "nettest",
                cgroups_path: &cgroups_path,
                stdin: None,
                output: ContainerOutput::Log(LogOptions::default()),
            })
            .map_err(|e| e.to_string())?;
        self.runtime.start(id).map_err(|e| e.to_string())
    }

    fn address(&self, id: &str, network: &str) -> Result<Ipv4Addr, String> {
        self.sandboxes
            .get(id)
            .and_then(|(s, _)| s.endpoints.iter().find(|(n, _)| n == network))
            .map(|(_, e)| e.ipv4)
            .ok_or_else(|| format!("{id} is not on {network}"))
    }

    fn log(&self, id: &str) -> Result<String, String> {
        let reader = LogReader::open(self.runtime.log_path(id), &ReadOptions::default())
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        for record in reader {
            let record = record.map_err(|e| e.to_string())?;
            text.push_str(&String::from_utf8_lossy(&record.line));
        }
        Ok(text)
    }

    fn wait_for_log(&self, id: &str, needle: &str) -> TestResult {
        eventually(|| {
            let log = self.log(id)?;
            if log.contains(needle) {
                Ok(())
            } else {
                Err(format!("{id}: waiting for {needle:?} in {log:?}"))
            }
        })
    }

    fn wait_for_path(&self, volume: &str, file: &str) -> TestResult {
        let path = self
            .volumes
            .mount_point(volume)
            .map_err(|e| e.to_string())?
            .join(file);
        eventually(|| {
            if path.exists() {
                Ok(())
            } else {
                Err(format!("{} never appeared", path.display()))
            }
        })
    }

    fn remove_container(&mut self, id: &str) -> TestResult {
        let mut errors = Vec::new();
        if let Err(err) = self.runtime.delete(id, true) {
            errors.push(err.to_string());
        }
        if let Some((sandbox, networks)) = self.sandboxes.remove(id) {
            drop(sandbox);
            if let Err(err) = sandbox::teardown(&self.manager, id, &networks) {
                errors.push(err.to_string());
            }
        }
        self.registry.remove_container(id);
        let mut still = Vec::new();
        for (volume, container) in self.attached.drain(..) {
            if container == id {
                if let Err(err) = self.volumes.detach(&volume, &container) {
                    errors.push(err.to_string());
                }
            } else {
                still.push((volume, container));
            }
        }
        self.attached = still;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    fn remove_all_containers(&mut self) {
        let ids: Vec<String> = self.sandboxes.keys().cloned().collect();
        for id in ids {
            if let Err(err) = self.remove_container(&id) {
                println!("cleanup of {id}: {err}");
            }
        }
        let pending: Vec<(String, String)> = self.attached.drain(..).collect();
        for (volume, container) in pending {
            let _ = self.volumes.detach(&volume, &container);
        }
    }

    fn remove_all_networks(&mut self) {
        let names: Vec<String> = self.dns_servers.keys().cloned().collect();
        for name in names {
            if let Some(server) = self.dns_servers.remove(&name) {
                server.stop();
            }
            self.registry.remove_network(&name);
            if let Err(err) = self.manager.remove(&name) {
                println!("cleanup of network {name}: {err}");
            }
        }
    }
}

/// A namespace at 10.213.250.2 behind the uplink, with a TCP server that tells
/// each client the address it came from.
struct Internet {
    netns: PathBuf,
}

impl Internet {
    fn start(state_root: &Path) -> Result<Internet, String> {
        let handle = NetnsHandle::create(state_root, "internet").map_err(|e| e.to_string())?;
        let netns = handle.path().to_path_buf();
        run(Command::new("ip").args([
            "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
        ]))?;
        run(Command::new("ip")
            .args(["link", "set", "uplink1", "netns"])
            .arg(&netns))?;
        run(Command::new("ip").args(["addr", "add", "10.213.250.1/24", "dev", "uplink0"]))?;
        run(Command::new("ip").args(["link", "set", "uplink0", "up"]))?;
        let inside = |args: &[&str]| {
            let mut command = Command::new("nsenter");
            command.arg(format!("--net={}", netns.display())).args(args);
            run(&mut command)
        };
        inside(&["ip", "addr", "add", "10.213.250.2/24", "dev", "uplink1"])?;
        inside(&["ip", "link", "set", "uplink1", "up"])?;
        let listener = handle
            .run(|| TcpListener::bind(SocketAddrV4::new(INTERNET_ADDRESS, INTERNET_PORT)))
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let peer = stream.peer_addr().map(|a| a.ip().to_string());
                let mut stream = stream;
                let _ = writeln!(stream, "from {}", peer.unwrap_or_default());
            }
        });
        Ok(Internet { netns })
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", "uplink0"]).status();
        let _ = rcompose_runtime::network::netns::delete_netns(&self.netns);
    }
}

// ---------------------------------------------------------------------------------
// Helpers

fn enter_throwaway_netns() -> Result<(), String> {
    // The process is single-threaded here, so every thread and child started later
    // (the helper, the monitors, `ip`, `nft`) lives in the new namespace too.
    // SAFETY: only the network namespace is unshared; no other thread exists.
    #[allow(unsafe_code)]
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
        .map_err(|e| e.to_string())?;
    run(Command::new("ip").args(["link", "set", "lo", "up"]))
}

fn publish(host_ip: Ipv4Addr, host_port: u16, container_port: u16) -> PublishRequest {
    PublishRequest {
        host_ip,
        host_port,
        container_port,
        protocol: Protocol::Tcp,
    }
}

fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        target: target.to_string(),
        read_only,
        kind: MountKind::Bind {
            source: source.to_path_buf(),
            propagation: Propagation::Rprivate,
            non_recursive: false,
        },
    }
}

fn tcp_read(address: SocketAddrV4) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&address.into(), Duration::from_secs(1))
        .map_err(|e| format!("{address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("{address}: {e}"))?;
    if text.is_empty() {
        return Err(format!("{address}: empty answer"));
    }
    Ok(text)
}

/// Retries `check` for up to 10 s (containers start asynchronously).
fn eventually<T>(mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() >= deadline => return Err(err),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn check_eq<T: PartialEq + std::fmt::Debug>(got: &T, want: &T, what: &str) -> TestResult {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

fn run(command: &mut Command) -> TestResult {
    run_output(command).map(|_| ())
}

fn run_output(command: &mut Command) -> Result<String, String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{command:?}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn remove_cgroup_parent(parent: &str) {
    let relative = parent.trim_start_matches('/');
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        for entry in entries.flatten() {
            let _ = fs::remove_dir(entry.path().join(relative));
        }
    }
    let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(relative));
}

/// busybox (Debian's busybox-static, one symlink per applet), a marker file in
/// /etc, and the UDP tool built from tests/programs/udp_tool.rs as a static binary.
fn test_image(work: &Path) -> Result<PathBuf, String> {
    let download = work.join("deb");
    fs::create_dir_all(&download).map_err(|e| e.to_string())?;
    run(Command::new("apt-get")
        .args(["download", "-q", "busybox-static"])
        .current_dir(&download))?;
    let deb = fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download left no .deb")?;
    let unpacked = work.join("unpacked");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    let root = work.join("image");
    for dir in ["bin", "dev", "etc", "proc", "sys", "tmp", "root", "mnt"] {
        fs::create_dir_all(root.join(dir)).map_err(|e| e.to_string())?;
    }
    let busybox = unpacked.join("bin/busybox");
    fs::copy(&busybox, root.join("bin/busybox")).map_err(|e| e.to_string())?;
    let list = run_output(Command::new(&busybox).arg("--list"))?;
    for applet in list.lines().filter(|a| *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
    }
    for (path, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        ("etc/marker", "from-the-image\n"),
    ] {
        fs::write(root.join(path), text).map_err(|e| e.to_string())?;
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/udp_tool.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    run(Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(root.join("udp_tool"))
        .arg(source))?;
    Ok(root)
}
