//! The native engine and the project supervisor end to end (needs root, cgroups,
//! overlayfs, nftables): a project loaded from YAML by the real loader, its network
//! created, its containers created and started, the supervisor started for it (DNS,
//! port reservations, restart policies): the client reaches the web service by name,
//! the published port answers on 127.0.0.1, an `on-failure:2` service is restarted
//! twice, a supervisor killed with SIGKILL is replaced without loss; then everything
//! removed, the supervisor gone by itself, and nothing left.
//!
//! As runtime/tests/network_run.rs: busybox is fetched first (that needs the host's
//! network), then the whole process moves into a throwaway network namespace before
//! any thread exists, so bridges, veths and nftables rules never touch the host's. Its
//! own `main` (`harness = false`): the runtime helper is this binary re-executed.

mod kernel_support;
use kernel_support::{check_eq, run_output, Suite};

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcompose::backend::native::{CreatedContainer, NativeEngine};
use rcompose::orchestrator::labels::{ContainerLabels, ProjectLabels};
use rcompose::orchestrator::plan::ContainerState;
use rcompose::project::discover::{ConfigSource, Environment, ProjectInputs};
use rcompose::project::loader::{load, LoadSettings};
use rcompose::project::model::Project;
use rcompose_runtime::container::helper;
use rcompose_runtime::container::lifecycle::ExecOptions;
use rcompose_runtime::container::rootfs::mount_points;
use rcompose_runtime::logs::{LogReader, ReadOptions};

const PROJECT: &str = "nativee2e";

const COMPOSE: &str = r#"
services:
  web:
    image: busybox
    command: ["nc", "-ll", "-p", "80", "-e", "echo", "hi"]
    ports: ["18080:80"]
    healthcheck:
      test: ["CMD-SHELL", "nc -w 1 127.0.0.1 80 </dev/null | grep -q hi"]
      interval: 1s
      start_interval: 200ms
      start_period: 5s
  client:
    image: busybox
    dns: [127.0.0.2]
    command:
      - sh
      - -c
      - "for i in $$(seq 50); do nc web 80 </dev/null && break; sleep 0.2; done; sleep 30"
  flaky:
    image: busybox
    command: ["sh", "-c", "echo run; exit 3"]
    restart: on-failure:2
"#;

const CONTAINERS: [&str; 3] = ["nativee2e-client-1", "nativee2e-web-1", "nativee2e-flaky-1"];

fn main() {
    helper::maybe_run();
    rcompose::supervisor::maybe_run();
    let Some(suite) = Suite::enter("native") else {
        return;
    };
    let passed = suite.run("up_and_down_leaves_nothing", |root, _| up_and_down(root));
    suite.finish(passed);
}

fn up_and_down(root: &Path) -> Result<(), String> {
    let project = load_project()?;
    let mut engine =
        NativeEngine::open(root, Path::new("/proc/self/exe")).map_err(|e| e.to_string())?;
    engine
        .check_project(&project, &[])
        .map_err(|e| e.to_string())?;
    let networks = engine
        .ensure_networks(&project)
        .map_err(|e| e.to_string())?;
    engine.ensure_volumes(&project).map_err(|e| e.to_string())?;
    let names: Vec<&str> = networks.iter().map(|n| n.name.as_str()).collect();
    check_eq(&names, &vec!["nativee2e_default"], "networks")?;

    let outcome = run_all(&mut engine, &project, root);
    let mut errors: Vec<String> = outcome.err().into_iter().collect();
    for id in CONTAINERS {
        let _ = engine.stop(id, Some(Duration::from_secs(1)));
        if let Err(err) = engine.remove(id) {
            errors.push(err.to_string());
        }
    }
    for network in &networks {
        if let Err(err) = engine.remove_network(&network.name) {
            errors.push(err.to_string());
        }
    }
    // With no container left, the supervisor removes its directory and exits.
    rcompose::supervisor::reload_if_running(root, PROJECT);
    if let Err(err) = eventually(|| match supervisor_pids()?.as_slice() {
        [] if !root.join("projects").join(PROJECT).exists() => Ok(()),
        pids => Err(format!("the supervisor is still there: {pids:?}")),
    }) {
        errors.push(err);
        for pid in supervisor_pids().unwrap_or_default() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    }
    if errors.is_empty() {
        errors.extend(leftovers(&engine, root).err());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn run_all(engine: &mut NativeEngine, project: &Project, root: &Path) -> Result<(), String> {
    // As `up` does: the supervisor runs before any container starts, so the first DNS
    // query of each is answered.
    rcompose::supervisor::ensure_running(root, project).map_err(|e| e.to_string())?;
    let mut created: Vec<CreatedContainer> = Vec::new();
    for service in ["web", "client", "flaky"] {
        let container = create(engine, project, service)?;
        engine.start(&container.id).map_err(|e| e.to_string())?;
        created.push(container);
    }
    // As `up` ends: the supervisor serves DNS, holds the ports, restarts per policy.
    rcompose::supervisor::ensure_running(root, project).map_err(|e| e.to_string())?;
    let web = &created[0];
    check_eq(
        &web.id.as_str(),
        &"nativee2e-web-1",
        "the web container's id",
    )?;
    check_eq(&web.reservations.len(), &1, "web's port reservations")?;
    let aliases = &web.endpoints[0].1.aliases;
    check_eq(aliases, &vec!["web".to_string()], "web's aliases")?;

    eventually(|| {
        let log = log_text(engine, "nativee2e-client-1")?;
        if log.contains("hi") {
            Ok(())
        } else {
            Err(format!("the client's log has no answer from web: {log:?}"))
        }
    })?;
    let answer = eventually(|| tcp_read("127.0.0.1:18080".parse().expect("an address")))?;
    check_eq(&answer.as_str(), &"hi\n", "127.0.0.1:18080")?;
    web_becomes_healthy(root)?;
    own_dns_server_answers_other_names(engine)?;
    flaky_is_restarted_twice(engine)?;
    supervisor_survives_sigkill(engine, project, root)?;

    let mut observed: Vec<(String, String, ContainerState)> = engine
        .list(PROJECT)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|c| c.service != "flaky")
        .map(|c| (c.name, c.service, c.state))
        .collect();
    observed.sort_by(|a, b| a.0.cmp(&b.0));
    check_eq(
        &observed,
        &vec![
            (
                "nativee2e-client-1".into(),
                "client".into(),
                ContainerState::Running,
            ),
            (
                "nativee2e-web-1".into(),
                "web".into(),
                ContainerState::Running,
            ),
        ],
        "the project's containers",
    )?;
    check_eq(
        &engine
            .list("otherproject")
            .map_err(|e| e.to_string())?
            .len(),
        &0,
        "another project's containers",
    )?;
    // The check now finds the names in use by this project, which is no problem, and
    // the port held by web's own container, which is not counted.
    engine
        .check_project(project, &[])
        .map_err(|e| format!("checking a running project: {e}"))?;
    let status = engine
        .stop("nativee2e-web-1", Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    if status.is_none() {
        return Err("stopping web reported it was not running".into());
    }
    let states: Vec<ContainerState> = engine
        .list(PROJECT)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|c| c.service == "web")
        .map(|c| c.state)
        .collect();
    if !matches!(states.as_slice(), [ContainerState::Exited { .. }]) {
        return Err(format!("web after stop: {states:?}"));
    }
    Ok(())
}

/// The supervisor runs web's healthcheck and writes Docker's `State.Health`.
fn web_becomes_healthy(root: &Path) -> Result<(), String> {
    let path = root
        .join("projects")
        .join(PROJECT)
        .join("health/nativee2e-web-1.json");
    eventually(|| {
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let health: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if health["Status"] == "healthy" {
            Ok(())
        } else {
            Err(format!("web's health: {text}"))
        }
    })
}

/// The client's `dns: [127.0.0.2]`: names the project does not know are forwarded
/// to that server (a fake one here, answering every A query with 192.0.2.77), not
/// to the host's resolvers.
fn own_dns_server_answers_other_names(engine: &NativeEngine) -> Result<(), String> {
    let upstream =
        std::net::UdpSocket::bind("127.0.0.2:53").map_err(|e| format!("127.0.0.2:53: {e}"))?;
    upstream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut buffer = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok((len, peer)) = upstream.recv_from(&mut buffer) {
                    if let Some(reply) = fake_a_answer(&buffer[..len], [192, 0, 2, 77]) {
                        let _ = upstream.send_to(&reply, peer);
                    }
                }
            }
        });
        // One failed lookup takes nslookup's whole timeout: room for a few on a busy
        // machine.
        let answer = eventually_within(Duration::from_secs(45), || {
            let text = exec_output(engine, "nativee2e-client-1", &["nslookup", "probe.example"])?;
            if text.contains("192.0.2.77") {
                Ok(())
            } else {
                Err(format!("nslookup probe.example: {text:?}"))
            }
        });
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        answer
    })
}

/// A DNS reply to `query`: one A record for its question when it asks for A,
/// no records otherwise.
fn fake_a_answer(query: &[u8], address: [u8; 4]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += usize::from(*query.get(end)?) + 1;
    }
    let question = query.get(12..end + 5)?;
    let asks_a = question.get(question.len() - 4..question.len() - 2)? == [0, 1];
    let mut reply = header.to_vec();
    reply[2] = 0x81; // response, recursion desired
    reply[3] = 0x80; // recursion available, no error
    reply[4..12].copy_from_slice(&[0, 1, 0, u8::from(asks_a), 0, 0, 0, 0]);
    reply.extend_from_slice(question);
    if asks_a {
        // The question's name (pointer), A, IN, TTL 60, 4 bytes of address.
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&address);
    }
    Some(reply)
}

/// What `args` prints in the container.
fn exec_output(engine: &NativeEngine, id: &str, args: &[&str]) -> Result<String, String> {
    let (out_r, out_w) = rustix::pipe::pipe().map_err(|e| e.to_string())?;
    let session = engine
        .runtime()
        .exec(
            id,
            ExecOptions {
                args: args.iter().map(|a| a.to_string()).collect(),
                stdout: Some(out_w),
                ..ExecOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    let _ = fs::File::from(out_r).read_to_string(&mut text);
    let _ = session.wait();
    Ok(text)
}

/// `restart: on-failure:2` on a command that exits 3: three runs, then it stays down.
fn flaky_is_restarted_twice(engine: &NativeEngine) -> Result<(), String> {
    let id = "nativee2e-flaky-1";
    eventually(|| {
        let runs = log_text(engine, id)?.matches("run\n").count();
        let state = engine.runtime().state(id).map_err(|e| e.to_string())?;
        if runs == 3 && state.exit.map(|e| e.code) == Some(3) {
            Ok(())
        } else {
            Err(format!("flaky: {runs} runs, {state:?}"))
        }
    })?;
    // The policy gave up: no fourth run comes.
    std::thread::sleep(Duration::from_millis(500));
    let runs = log_text(engine, id)?.matches("run\n").count();
    check_eq(&runs, &3, "runs of the on-failure:2 service")
}

/// A supervisor killed with SIGKILL: the next `ensure_running` starts another, and
/// service names resolve again.
fn supervisor_survives_sigkill(
    engine: &NativeEngine,
    project: &Project,
    root: &Path,
) -> Result<(), String> {
    for pid in supervisor_pids()? {
        run_output(Command::new("kill").args(["-9", &pid]))?;
    }
    eventually(|| match supervisor_pids()?.as_slice() {
        [] => Ok(()),
        pids => Err(format!("killed supervisor still there: {pids:?}")),
    })?;
    rcompose::supervisor::ensure_running(root, project).map_err(|e| e.to_string())?;
    let web = engine
        .network_manager()
        .inspect("nativee2e_default")
        .map_err(|e| e.to_string())?
        .endpoints
        .get("nativee2e-web-1")
        .map(|e| e.ipv4.to_string())
        .ok_or("web has no endpoint")?;
    eventually(|| {
        let text = exec_output(engine, "nativee2e-client-1", &["nslookup", "web"])?;
        if text.contains(&web) {
            Ok(())
        } else {
            Err(format!("nslookup web after the restart: {text:?}"))
        }
    })
}

/// Pids of this project's supervisors.
fn supervisor_pids() -> Result<Vec<String>, String> {
    let output = Command::new("pgrep")
        .args(["-f", &format!("__rcompose-supervisor .* {PROJECT}$")])
        .output()
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

fn create(
    engine: &mut NativeEngine,
    project: &Project,
    service: &str,
) -> Result<CreatedContainer, String> {
    let project_labels = ProjectLabels {
        name: project.name.clone(),
        working_dir: "/tmp".into(),
        ..ProjectLabels::default()
    };
    let definition = &project.services[service];
    let labels =
        ContainerLabels::replica(&project_labels, service, definition, "test-hash", 1).build();
    engine
        .create_container(project, service, 1, &labels)
        .map_err(|e| e.to_string())
}

/// Nothing of the project is left: containers, compose records, namespaces, links,
/// firewall rules, mounts, the project's cgroup.
fn leftovers(engine: &NativeEngine, root: &Path) -> Result<(), String> {
    let containers = engine.runtime().list().map_err(|e| e.to_string())?;
    check_eq(&containers, &Vec::<String>::new(), "containers left")?;
    check_eq(
        &dir_names(&root.join("compose")),
        &Vec::new(),
        "compose records left",
    )?;
    check_eq(
        &dir_names(&root.join("netns")),
        &Vec::new(),
        "network namespaces left",
    )?;
    let links = run_output(Command::new("ip").args(["-o", "link", "show"]))?;
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    check_eq(&names, &vec!["lo"], "links left")?;
    let ruleset = run_output(Command::new("nft").args(["list", "ruleset"]))?;
    if ruleset.contains("rc-") || ruleset.contains("18080") {
        return Err(format!("firewall rules left: {ruleset}"));
    }
    // (`NetworkManager::list` would read the IPAM file next to the records as one.)
    if engine
        .network_manager()
        .inspect("nativee2e_default")
        .is_ok()
    {
        return Err("the network record is left".into());
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let containers_dir = root.join("containers");
    if let Some(point) =
        mount_points(&mountinfo).find(|p| Path::new(p).starts_with(&containers_dir))
    {
        return Err(format!("still mounted: {point}"));
    }
    let cgroup = Path::new("/sys/fs/cgroup/rcompose").join(PROJECT);
    if cgroup.exists() {
        return Err(format!("the project's cgroup {} is left", cgroup.display()));
    }
    Ok(())
}

fn dir_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default()
}

fn load_project() -> Result<Project, String> {
    let inputs = ProjectInputs {
        files: vec![ConfigSource::Inline {
            name: "compose.yaml".into(),
            content: COMPOSE.into(),
        }],
        project_directory: PathBuf::from("/tmp"),
        explicit_name: Some(PROJECT.into()),
        profiles: Vec::new(),
        environment: Environment::new(),
        shell_environment: Environment::new(),
        env_files: Vec::new(),
    };
    load(&inputs, &LoadSettings::default())
        .map(|loaded| loaded.project)
        .map_err(|e| e.to_string())
}

fn log_text(engine: &NativeEngine, id: &str) -> Result<String, String> {
    let reader = LogReader::open(engine.runtime().log_path(id), &ReadOptions::default())
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    for record in reader {
        let record = record.map_err(|e| e.to_string())?;
        text.push_str(&String::from_utf8_lossy(&record.line));
    }
    Ok(text)
}

fn tcp_read(address: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))
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

/// Retries `check` for up to 15 s (containers start asynchronously).
fn eventually<T>(check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    eventually_within(Duration::from_secs(15), check)
}

fn eventually_within<T>(
    limit: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() >= deadline => return Err(err),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
