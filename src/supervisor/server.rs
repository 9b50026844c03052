//! The running supervisor: a tokio runtime serving the project's socket, one DNS
//! server per project network, the published ports' reservations, and a watcher per
//! container that applies its restart policy.
//!
//! On every `reload` it looks at the disk again (containers through the native
//! engine, networks through their records) and converges its own state onto it;
//! when the project has no container left it exits.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rcompose_runtime::container::lifecycle::{LifecycleError, Runtime};
use rcompose_runtime::container::status::{ContainerState as ContainerRuntimeState, ExitStatus};
use rcompose_runtime::network::dns::{DnsRegistry, DnsServer, DnsServerConfig, ResolverOptions};
use rcompose_runtime::network::hostfiles::{
    read_host_file, upstreams_from_resolv_conf, HOST_RESOLV_CONF,
};
use rcompose_runtime::network::manager::NetworkRecord;
use rcompose_runtime::network::ports::{self, PortReservation, Protocol};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Notify};

use super::policies::ServicePolicies;
use super::prober::ExecProber;
use super::restarts;
use super::{io_error, project_dir, Reply, Request, SupervisorError, SOCKET};
use crate::backend::native::NativeEngine;
use crate::orchestrator::health::{run_health_loop, HealthMonitor, HealthSpec, TokioClock};
use crate::orchestrator::labels;
use crate::orchestrator::plan::ContainerState;
use crate::orchestrator::restart::{Decision, Exit, RestartManager};
use rcompose_runtime::atomic_file::replace_json;

/// How long a published port that is still held by someone else (the `up` that
/// created its container, until it exits) is retried.
const PORT_RETRY: Duration = Duration::from_secs(30);

/// How long a new supervisor waits for its project to show a container or a network
/// before an empty project makes it exit.
const EMPTY_GRACE: Duration = Duration::from_secs(60);

/// A published host port: address, port, protocol.
type PortKey = (Ipv4Addr, u16, Protocol);

/// A container of the project as a reload sees it.
struct Seen {
    service: String,
    running: bool,
    /// Its own DNS servers and search domains (Compose `dns`, `dns_search`).
    resolver: Option<ResolverOptions>,
    /// Its process exists, or it exited and no supervisor has applied its policy to
    /// that exit yet (it may have exited before any supervisor ran).
    needs_watcher: bool,
}

struct Supervisor {
    root: PathBuf,
    project: String,
    dir: PathBuf,
    program: PathBuf,
    registry: Arc<DnsRegistry>,
    state: Mutex<State>,
    /// Signalled when the supervisor should exit.
    done: Notify,
    /// Signalled when the disk should be looked at again (a container exited or
    /// restarted, a network record changed, a command asked).
    recheck: Notify,
    /// Reloads asked for so far, and (through the watch) the last one served: a
    /// burst of requests is served by one reload that starts after all of them.
    reloads_requested: AtomicU64,
    reloads_done: watch::Sender<u64>,
    /// Set when it exits because the project has no container left.
    emptied: std::sync::atomic::AtomicBool,
    /// Set once a reload found a container or a network of the project.
    saw_project: std::sync::atomic::AtomicBool,
    started: std::time::Instant,
}

#[derive(Default)]
struct State {
    dns: BTreeMap<String, DnsServer>,
    reservations: BTreeMap<PortKey, PortReservation>,
    watched: BTreeSet<String>,
    health_checked: BTreeSet<String>,
    /// Containers whose resolver options the DNS registry holds.
    resolved: BTreeSet<String>,
}

pub(super) fn run(root: &Path, project: &str) -> Result<(), SupervisorError> {
    let dir = project_dir(root, project);
    fs::create_dir_all(&dir).map_err(|source| io_error(project, "creating", &dir, source))?;
    let lock_path = dir.join("supervisor.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| io_error(project, "opening", &lock_path, source))?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        // Another supervisor serves this project.
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Blocking work here is short (reloads, starts, health probes); idle threads
        // go soon, as each keeps its own allocator pages.
        .max_blocking_threads(32)
        .thread_keep_alive(Duration::from_secs(1))
        .enable_all()
        .build()
        .map_err(|source| io_error(project, "starting the async runtime for", &dir, source))?;
    let program = std::env::current_exe()
        .map_err(|source| io_error(project, "locating", Path::new("/proc/self/exe"), source))?;
    let supervisor = Arc::new(Supervisor {
        root: root.to_path_buf(),
        project: project.to_string(),
        dir: dir.clone(),
        program,
        registry: Arc::new(DnsRegistry::new()),
        state: Mutex::new(State::default()),
        done: Notify::new(),
        recheck: Notify::new(),
        reloads_requested: AtomicU64::new(0),
        reloads_done: watch::channel(0).0,
        emptied: std::sync::atomic::AtomicBool::new(false),
        saw_project: std::sync::atomic::AtomicBool::new(false),
        started: std::time::Instant::now(),
    });
    let result = runtime.block_on(supervisor.clone().serve());
    // Its tasks (health probes writing files, port retries) end before the cleanup.
    runtime.shutdown_timeout(Duration::from_secs(2));
    // The socket goes before the lock: a new supervisor may start at once.
    let _ = fs::remove_file(dir.join(SOCKET));
    if supervisor.emptied.load(std::sync::atomic::Ordering::SeqCst) {
        // Nothing of the project is left: neither is its directory.
        if let Err(err) = fs::remove_dir_all(&dir) {
            eprintln!("removing {}: {err}", dir.display());
        }
    }
    drop(lock);
    result
}

impl Supervisor {
    async fn serve(self: Arc<Self>) -> Result<(), SupervisorError> {
        let socket = self.dir.join(SOCKET);
        let _ = fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .map_err(|source| io_error(&self.project, "listening on", &socket, source))?;
        fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))
            .map_err(|source| io_error(&self.project, "securing", &socket, source))?;
        eprintln!(
            "supervisor of {} started (pid {})",
            self.project,
            std::process::id()
        );
        // A container's DNS record must exist before it starts: reload whenever a
        // network record changes (a container connected or disconnected).
        let _watcher = self.watch_networks();
        tokio::spawn(self.clone().reload_when_asked());
        tokio::spawn(self.clone().reload_after_grace());
        self.reload_and_wait().await;
        loop {
            tokio::select! {
                () = self.done.notified() => break,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(self.clone().answer(stream));
                    }
                }
            }
        }
        eprintln!("supervisor of {} exits", self.project);
        Ok(())
    }

    /// Asks for a reload on every change in `<root>/networks` (inotify).
    fn watch_networks(self: &Arc<Self>) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher;
        let this = self.clone();
        let handle = tokio::runtime::Handle::current();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Only changes count: the reload's own reads of the records
                // (access events) must not ask for another reload.
                let changed = event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_)));
                if changed {
                    let this = this.clone();
                    handle.spawn(async move { this.request_reload() });
                }
            })
            .map_err(|err| eprintln!("watching the network records: {err}"))
            .ok()?;
        let dir = self.root.join("networks");
        let _ = fs::create_dir_all(&dir);
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|err| eprintln!("watching {}: {err}", dir.display()))
            .ok()?;
        Some(watcher)
    }

    async fn answer(self: Arc<Self>, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply = match serde_json::from_str::<Request>(&line) {
                Ok(Request::Reload) => {
                    self.reload_and_wait().await;
                    Reply {
                        ok: true,
                        message: String::new(),
                    }
                }
                Ok(Request::Stop) => {
                    self.done.notify_one();
                    Reply {
                        ok: true,
                        message: String::new(),
                    }
                }
                Err(err) => Reply {
                    ok: false,
                    message: format!("bad request: {err}"),
                },
            };
            let Ok(mut text) = serde_json::to_string(&reply) else {
                return;
            };
            text.push('\n');
            if write.write_all(text.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// Asks for a reload, served soon by `reload_when_asked`; its number.
    fn request_reload(&self) -> u64 {
        let number = self.reloads_requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.recheck.notify_one();
        number
    }

    /// Returns once a reload that started after this call has finished.
    async fn reload_and_wait(&self) {
        let mut done = self.reloads_done.subscribe();
        let number = self.request_reload();
        let _ = done.wait_for(|served| *served >= number).await;
    }

    /// Serves reload requests one at a time: requests that arrive during a reload
    /// are all served by the next one.
    async fn reload_when_asked(self: Arc<Self>) {
        loop {
            self.recheck.notified().await;
            let number = self.reloads_requested.load(Ordering::SeqCst);
            self.clone().reload().await;
            self.reloads_done.send_replace(number);
        }
    }

    /// Looks once more when the start-up grace ends, so a supervisor whose project
    /// never got anything (an `up` that failed) does not stay.
    async fn reload_after_grace(self: Arc<Self>) {
        tokio::time::sleep(EMPTY_GRACE).await;
        self.request_reload();
    }

    /// Converges DNS, ports and watchers onto what is on disk; exits when the
    /// project has no container left.
    async fn reload(self: Arc<Self>) {
        let this = self.clone();
        let seen = tokio::task::spawn_blocking(move || this.look()).await;
        let (containers, networks) = match seen {
            Ok(Ok(seen)) => seen,
            Ok(Err(err)) => {
                eprintln!("reload: {err}");
                return;
            }
            Err(err) => {
                eprintln!("reload: {err}");
                return;
            }
        };
        // The project is gone when neither containers nor networks are left (during
        // `up` the networks come first, the containers after).
        if containers.is_empty() && networks.is_empty() {
            // `up` starts the supervisor before it makes anything, so the first query
            // of the first container is answered; a project without networks
            // (`network_mode: host` or `none` only) shows nothing until its containers
            // are made. A new supervisor that never saw its project waits a while,
            // unless its directory (its state root) is gone.
            let new = !self.saw_project.load(std::sync::atomic::Ordering::SeqCst)
                && self.started.elapsed() < EMPTY_GRACE
                && self.dir.exists();
            if new {
                return;
            }
            self.emptied
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.done.notify_one();
            return;
        }
        self.saw_project
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.serve_dns(&networks, &containers);
        self.reserve_ports(&networks, &containers);
        let policies = ServicePolicies::load(&self.dir).unwrap_or_default();
        for (id, seen) in containers {
            if seen.running {
                if let Some(spec) = policies.health(&seen.service) {
                    let new = self
                        .state
                        .lock()
                        .map(|mut s| s.health_checked.insert(id.clone()))
                        .unwrap_or(false);
                    if new {
                        tokio::spawn(self.clone().check_health(id.clone(), spec));
                    }
                }
            }
            if !seen.needs_watcher {
                continue;
            }
            let new = self
                .state
                .lock()
                .map(|mut s| s.watched.insert(id.clone()))
                .unwrap_or(false);
            if new {
                tokio::spawn(self.clone().watch(id, seen.service));
            }
        }
    }

    /// The project's containers and its networks.
    #[allow(clippy::type_complexity)]
    fn look(&self) -> Result<(BTreeMap<String, Seen>, Vec<NetworkRecord>), String> {
        // Its directory gone means its state root was deleted: there is nothing left
        // to serve, and opening the engine would make the root's directories again.
        if !self.dir.exists() {
            return Ok((BTreeMap::new(), Vec::new()));
        }
        let engine = NativeEngine::open(&self.root, &self.program).map_err(|e| e.to_string())?;
        let containers = engine
            .list(&self.project)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|c| {
                let exited = matches!(
                    c.state,
                    ContainerState::Exited { .. } | ContainerState::Dead
                );
                let seen = Seen {
                    running: c.state == ContainerState::Running,
                    resolver: engine.resolver_options(&c.id),
                    // A one-off (`run`) container has no restart policy, as Compose
                    // gives it none: nothing to watch.
                    needs_watcher: !c.oneoff
                        && (!exited || !self.exit_handled(engine.runtime(), &c.id)),
                    service: c.service,
                };
                (c.id, seen)
            })
            .collect();
        let networks = engine
            .network_manager()
            .list()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|n| n.labels.get(labels::PROJECT).map(String::as_str) == Some(&self.project))
            .collect();
        Ok((containers, networks))
    }

    /// One DNS server per network on its gateway; the registry rebuilt from the
    /// networks' endpoints.
    fn serve_dns(&self, networks: &[NetworkRecord], containers: &BTreeMap<String, Seen>) {
        let upstreams = read_host_file(Path::new(HOST_RESOLV_CONF))
            .map(|text| upstreams_from_resolv_conf(&text))
            .unwrap_or_default();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let names: BTreeSet<&str> = networks.iter().map(|n| n.name.as_str()).collect();
        state.dns.retain(|name, _| names.contains(name.as_str()));
        for network in networks {
            self.registry.remove_network(&network.name);
            for endpoint in network.endpoints.values() {
                let record = rcompose_runtime::network::dns::DnsRecord {
                    container_id: endpoint.container_id.clone(),
                    ipv4: endpoint.ipv4,
                    name: endpoint.container_name.clone(),
                    aliases: endpoint.aliases.clone(),
                };
                if let Err(err) = self.registry.add(&network.name, record) {
                    eprintln!("dns {}: {err}", network.name);
                }
            }
            if state.dns.contains_key(&network.name) {
                continue;
            }
            let config = DnsServerConfig::new(&network.name, network.gateway, upstreams.clone());
            match DnsServer::start(
                config,
                self.registry.clone(),
                &tokio::runtime::Handle::current(),
            ) {
                Ok(server) => {
                    state.dns.insert(network.name.clone(), server);
                }
                Err(err) => eprintln!("dns {}: {err}", network.name),
            }
        }
        // Each container's own `dns` servers and search domains; forgotten with it.
        let with_options: BTreeSet<String> = containers
            .iter()
            .filter_map(|(id, seen)| {
                let options = seen.resolver.clone()?;
                self.registry.set_resolver_options(id, options);
                Some(id.clone())
            })
            .collect();
        for gone in state.resolved.difference(&with_options) {
            self.registry
                .set_resolver_options(gone, ResolverOptions::default());
        }
        state.resolved = with_options;
    }

    /// Holds every published port of the project's containers; a port still held
    /// by the `up` that published it is retried until that process lets go.
    fn reserve_ports(
        self: &Arc<Self>,
        networks: &[NetworkRecord],
        containers: &BTreeMap<String, Seen>,
    ) {
        let wanted: BTreeSet<PortKey> = networks
            .iter()
            .flat_map(|n| n.endpoints.values())
            .filter(|e| containers.contains_key(&e.container_id))
            .flat_map(|e| e.ports.iter())
            .map(|p| (p.host_ip, p.host_port, p.protocol))
            .collect();
        let missing: Vec<PortKey> = match self.state.lock() {
            Ok(mut state) => {
                state.reservations.retain(|key, _| wanted.contains(key));
                wanted
                    .into_iter()
                    .filter(|key| !state.reservations.contains_key(key))
                    .collect()
            }
            Err(_) => return,
        };
        for key in missing {
            tokio::spawn(self.clone().reserve_port(key));
        }
    }

    async fn reserve_port(self: Arc<Self>, key: PortKey) {
        let deadline = tokio::time::Instant::now() + PORT_RETRY;
        loop {
            match ports::reserve(key.0, key.1, key.2) {
                Ok(reservation) => {
                    if let Ok(mut state) = self.state.lock() {
                        state.reservations.insert(key, reservation);
                    }
                    return;
                }
                Err(err) if tokio::time::Instant::now() >= deadline => {
                    eprintln!("port {}:{}/{}: {err}", key.0, key.1, key.2);
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Waits for the container to exit and applies its restart policy, until the
    /// policy gives up, the user stopped it, or it is removed.
    async fn watch(self: Arc<Self>, id: String, service: String) {
        let policy = ServicePolicies::load(&self.dir)
            .map(|p| p.restart_policy(&service))
            .unwrap_or_default();
        let runtime = Runtime::new(&self.program, &self.root);
        // A supervisor replacing a killed one resumes the count and the back-off.
        let created_at = runtime.inspect(&id).map(|record| record.created_at).ok();
        let saved = created_at
            .map(|created| restarts::load(&self.dir, &id, created))
            .unwrap_or_default();
        let mut manager = RestartManager::resume(policy, saved);
        loop {
            let (status, state) = match wait_for_exit(&runtime, &id).await {
                Ok(done) => done,
                Err(_) => break, // removed, or unreadable: nothing left to watch
            };
            let ran_for = match (state.started_at, state.finished_at) {
                (Some(start), Some(end)) => end.duration_since(start).unwrap_or_default(),
                _ => Duration::ZERO,
            };
            let exit = Exit {
                code: status.code,
                ran_for,
                stopped_by_user: self.stopped_by_user(&id),
                at: SystemTime::now(),
            };
            let decision = manager.decide(&exit);
            if let Some(created) = created_at {
                if let Err(err) = restarts::save(&self.dir, &id, created, manager.state()) {
                    eprintln!("recording the restarts of {id}: {err}");
                }
            }
            match decision {
                Decision::GiveUp => {
                    self.mark_handled(&id, state.finished_at);
                    break;
                }
                Decision::Restart { after } => {
                    tokio::time::sleep(after).await;
                    if self.stopped_by_user(&id) {
                        break;
                    }
                    if let Err(err) = self.start(&id).await {
                        eprintln!("restarting {id}: {err}");
                        break;
                    }
                    eprintln!("restarted {id} (exit code {})", status.code);
                    // Its healthcheck starts again with the new process.
                    self.request_reload();
                }
            }
        }
        if let Ok(mut state) = self.state.lock() {
            state.watched.remove(&id);
        }
        // Its removal may have been the last: have the server look again.
        self.request_reload();
    }

    /// Runs the container's healthcheck while it runs, writing its state (Docker's
    /// `State.Health`) to `health/<id>.json` for `ps` and `depends_on: service_healthy`.
    async fn check_health(self: Arc<Self>, id: String, spec: HealthSpec) {
        let runtime = Runtime::new(&self.program, &self.root);
        let state_id = id.clone();
        let started = tokio::task::spawn_blocking(move || runtime.state(&state_id))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|s| s.started_at)
            .unwrap_or_else(SystemTime::now);
        let path = super::health_file(&self.root, &self.project, &id);
        let dir = self.dir.join("health");
        let mut monitor = HealthMonitor::new(spec, started);
        let prober = ExecProber {
            root: self.root.clone(),
            program: self.program.clone(),
            container: id.clone(),
        };
        run_health_loop(&prober, &mut monitor, &TokioClock::new(), |update| {
            let written =
                fs::create_dir_all(&dir).and_then(|()| replace_json(&path, update.state, 0o600));
            if let Err(err) = written {
                eprintln!("health of {id}: {err}");
            }
            if update.changed() {
                eprintln!("{id} is {:?}", update.state.status);
            }
        })
        .await;
        if let Ok(mut state) = self.state.lock() {
            state.health_checked.remove(&id);
        }
    }

    async fn start(&self, id: &str) -> Result<(), String> {
        let root = self.root.clone();
        let program = self.program.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            let engine = NativeEngine::open(&root, &program).map_err(|e| e.to_string())?;
            engine.start(&id).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Whether the container's last exit had its policy applied (see `mark_handled`).
    fn exit_handled(&self, runtime: &Runtime, id: &str) -> bool {
        let finished = runtime.state(id).ok().and_then(|s| s.finished_at);
        let handled = fs::read_to_string(self.dir.join("handled").join(id)).ok();
        matches!((finished, handled), (Some(f), Some(h)) if h == stamp(f))
    }

    /// Records that the policy of the exit that finished at `finished` is applied.
    fn mark_handled(&self, id: &str, finished: Option<SystemTime>) {
        let dir = self.dir.join("handled");
        if let Some(finished) = finished {
            let written =
                fs::create_dir_all(&dir).and_then(|()| fs::write(dir.join(id), stamp(finished)));
            if let Err(err) = written {
                eprintln!("recording the exit of {id}: {err}");
            }
        }
    }

    fn stopped_by_user(&self, id: &str) -> bool {
        self.dir.join("stopped").join(id).exists()
    }
}

/// Waits for the container's process to exit, on the event loop rather than on a
/// thread of its own (a project may have hundreds of containers); its exit status and
/// final state.
async fn wait_for_exit(
    runtime: &Runtime,
    id: &str,
) -> Result<(ExitStatus, ContainerRuntimeState), LifecycleError> {
    let status = match runtime.begin_wait(id)? {
        Some(pending) => pending.exited(runtime).await?,
        None => runtime.wait(id)?,
    };
    Ok((status, runtime.state(id)?))
}

/// A time as recorded in a `handled` marker.
fn stamp(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", since.as_secs(), since.subsec_nanos())
}
