//! `rcompose run [OPTIONS] SERVICE [COMMAND] [ARGS...]`: a one-off container of a
//! service, as `docker compose run` makes it.
//!
//! The one-off is the service with the command line's changes applied (command,
//! entrypoint, environment, ports only with `--service-ports` or `-p`, no restart
//! policy), named `<project>-<service>-run-<12 hex>` and labelled
//! `com.docker.compose.oneoff=True`, so that `up` never takes it for a replica. Its
//! dependencies are converged first, as `up` would, and their `depends_on`
//! conditions awaited.
//!
//! Attached, the container's stdout and stderr are this process's own descriptors
//! (nothing is copied, nothing is prefixed) and its stdin ours when `-i` (the
//! default); signals we get are forwarded to it, as Compose forwards them, and a
//! second Ctrl-C kills it. On a terminal it gets a terminal of its own, as with
//! `docker run -it`: its controlling terminal inside the container, relayed to ours
//! (in raw mode, so Ctrl-C reaches its foreground process through its terminal). The
//! exit code is the container's.

use std::io::{self, IsTerminal};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};
use indexmap::IndexMap;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;

use super::exec::{environment, exit_code, own_stream, relay_pty, terminal_size};
use super::pull::{pull_before_up, PullFlag, UpPull};
use super::up::{converge_project_without, ProjectContext};
use super::GlobalOptions;
use crate::backend::native::ContainerStreams;
use crate::orchestrator::converge::{self, ContainerEngine, ConvergeOptions, ServiceContainer};
use crate::orchestrator::labels::ContainerLabels;
use crate::orchestrator::plan::UpOptions;
use crate::project::hash::service_hash;
use crate::project::model::mount::VOLUME_TYPE_BIND;
use crate::project::model::{Project, Service, ServicePortConfig, ServiceVolumeConfig};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run container in background and print its name
    #[arg(short, long)]
    detach: bool,
    /// Set environment variables (repeatable)
    #[arg(short, long = "env", value_name = "KEY[=VAL]")]
    env: Vec<String>,
    /// Add or override a label (repeatable)
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Automatically remove the container (and its anonymous volumes) when it exits
    #[arg(long, conflicts_with = "detach")]
    rm: bool,
    /// Disable pseudo-TTY allocation (default: a TTY when stdin is a terminal)
    #[arg(short = 'T', long = "no-TTY")]
    no_tty: bool,
    /// Keep STDIN open even if not attached (`-i=false` gives the container none)
    #[arg(
        short,
        long,
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    interactive: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Run as specified username or uid
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Override the entrypoint of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Don't start linked services
    #[arg(long)]
    no_deps: bool,
    /// Bind mount a volume (repeatable, short syntax)
    #[arg(short, long = "volume", value_name = "VOLUME")]
    volume: Vec<String>,
    /// Publish a container's port(s) to the host (repeatable). Long form only: `-p` is
    /// the global project name here.
    #[arg(
        long = "publish",
        value_name = "PORT",
        conflicts_with = "service_ports"
    )]
    publish: Vec<String>,
    /// Run command with the service's ports enabled and mapped to the host
    #[arg(long)]
    service_ports: bool,
    /// Use the service's network aliases in the network(s) the container connects to
    #[arg(long)]
    use_aliases: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    remove_orphans: bool,
    /// Pull image before running ("always"|"missing"|"never")
    #[arg(long, value_enum, value_name = "POLICY")]
    pull: Option<PullFlag>,
    /// Pull without printing progress information
    #[arg(long)]
    quiet_pull: bool,
    /// Build image before starting container (not supported yet)
    #[arg(long)]
    build: bool,
    /// The service, then the command and its arguments (everything after the service
    /// is the command's, options included)
    #[arg(
        value_name = "SERVICE [COMMAND] [ARGS...]",
        required = true,
        trailing_var_arg = true
    )]
    args: Vec<String>,
}

impl RunArgs {
    fn service(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }

    fn command(&self) -> &[String] {
        self.args.get(1..).unwrap_or_default()
    }
}

/// How the one-off's streams are connected, decided from the flags and our stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attachment {
    /// `-d`: json-file log, no stdin.
    Detached,
    /// Our own descriptors; stdin only with `-i`.
    Pipes { stdin: bool },
    /// A pseudo-terminal of ours, relayed.
    Terminal,
}

impl Attachment {
    fn choose(detach: bool, no_tty: bool, interactive: bool, stdin_is_terminal: bool) -> Self {
        if detach {
            Attachment::Detached
        } else if !no_tty && interactive && stdin_is_terminal {
            Attachment::Terminal
        } else {
            Attachment::Pipes { stdin: interactive }
        }
    }
}

pub fn run(global: &GlobalOptions, args: &RunArgs) -> anyhow::Result<u8> {
    if args.build {
        bail!("run --build: building images is not supported yet: build the image elsewhere and load it with `rcompose image load`");
    }
    let service_name = args.service().to_owned();
    let attachment = Attachment::choose(
        args.detach,
        args.no_tty,
        args.interactive,
        io::stdin().is_terminal(),
    );
    if attachment != Attachment::Detached {
        // Before any thread exists, so that only the signal thread takes them.
        interrupt_signals().thread_block()?;
    }
    let context = ProjectContext::open(global, std::slice::from_ref(&service_name))?;
    let Some(service) = context.project.services.get(&service_name) else {
        bail!("no such service: {service_name}");
    };
    let name = match &args.name {
        Some(name) => name.clone(),
        None => oneoff_name(&context.project.name, &service_name, &new_slug()?),
    };
    let oneoff_service = oneoff_service(service, args, &name, &context.project, attachment)?;
    let mut oneoff_project = context.project.clone();
    oneoff_project
        .services
        .insert(service_name.clone(), oneoff_service.clone());

    let pull = UpPull {
        forced: args.pull.map(PullFlag::policy),
        quiet: args.quiet_pull,
    };
    // The one-off's image and everything it needs, before anything is made.
    pull_before_up(
        global,
        &context.project,
        std::slice::from_ref(&service_name),
        pull,
        &context.display,
    )?;
    context.engine.with_engine(|engine| {
        engine.check_project(&oneoff_project, std::slice::from_ref(&service_name))
    })?;
    let dependencies = start_dependencies(global, &context, &service_name, args, pull)?;
    if !args.no_deps {
        await_conditions(&context, &service_name, service, &dependencies)?;
    }
    context.display.finish();

    let slug = name.rsplit('-').next().unwrap_or_default().to_owned();
    let hash = service_hash(&oneoff_service)
        .with_context(|| format!("service {service_name}: computing its configuration hash"))?;
    let labels = ContainerLabels::oneoff(
        &context.labels,
        &service_name,
        &oneoff_service,
        &hash,
        &slug,
    )
    .build();
    let streams = streams_for(attachment, args.use_aliases)?;
    let created = context
        .engine
        .with_engine(|engine| {
            engine.create_container_with(&oneoff_project, &service_name, 1, &labels, streams)
        })
        .with_context(|| {
            format!("service {service_name}: creating the one-off container {name}")
        })?;
    for warning in &created.warnings {
        eprintln!("WARN[0000] {warning}");
    }
    let id = created.id;
    let terminal = if attachment == Attachment::Terminal {
        Some(take_terminal(&context, &id)?)
    } else {
        None
    };
    // The supervisor serves the project's DNS to it from its first query.
    converge::after_converge(&context.root, &context.project)?;
    context
        .engine
        .start(&id)
        .map_err(|e| anyhow::anyhow!("container {id}: starting: {e}"))?;
    if attachment == Attachment::Detached {
        println!("{id}");
        return Ok(0);
    }
    let code = attached(&context, &id, terminal);
    if args.rm {
        remove_oneoff(&context, &id)?;
    }
    Ok(exit_code(code?))
}

/// `<project>-<service>-run-<12 hex>`, as Compose names one-off containers.
fn oneoff_name(project: &str, service: &str, slug: &str) -> String {
    let short: String = slug.chars().take(12).collect();
    format!("{project}-{service}-run-{short}")
}

/// 32 random hex digits (Compose's slug is Docker's 64-digit random id; its first
/// 12 name the container).
fn new_slug() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the one-off container's name")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The service as the one-off runs it: the command line's changes, one replica named
/// `name`, no restart policy, ports only when asked for.
fn oneoff_service(
    service: &Service,
    args: &RunArgs,
    name: &str,
    project: &Project,
    attachment: Attachment,
) -> anyhow::Result<Service> {
    let mut oneoff = service.clone();
    let service_name = args.service();
    oneoff.container_name = name.to_owned();
    oneoff.scale = Some(1);
    oneoff.restart = String::new();
    if let Some(deploy) = oneoff.deploy.as_mut() {
        deploy.restart_policy = None;
        deploy.replicas = None;
    }
    // A terminal of its own exactly when ours is relayed to it.
    oneoff.tty = attachment == Attachment::Terminal;
    oneoff.stdin_open = attachment != Attachment::Detached && args.interactive;
    if attachment == Attachment::Terminal && !oneoff.environment.contains_key("TERM") {
        oneoff
            .environment
            .insert("TERM".into(), Some("xterm".into()));
    }
    if let Some(entrypoint) = &args.entrypoint {
        let words = shell_words::split(entrypoint)
            .with_context(|| format!("--entrypoint {entrypoint:?}: unbalanced quotes"))?;
        oneoff.entrypoint = Some(words);
        // As Compose: a new entrypoint drops the service's command.
        oneoff.command = Some(Vec::new());
    }
    if !args.command().is_empty() {
        oneoff.command = Some(args.command().to_vec());
    }
    if let Some(user) = &args.user {
        oneoff.user = user.clone();
    }
    if let Some(workdir) = &args.workdir {
        oneoff.working_dir = workdir.clone();
    }
    let lookup = |key: &str| {
        project
            .environment
            .get(key)
            .cloned()
            .or_else(|| std::env::var(key).ok())
    };
    for entry in environment(&args.env, lookup) {
        if let Some((key, value)) = entry.split_once('=') {
            oneoff.environment.insert(key.into(), Some(value.into()));
        }
    }
    for label in &args.label {
        match label.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                oneoff.labels.insert(key.into(), value.into());
            }
            _ => bail!("invalid --label {label:?}: a label must be set as KEY=VALUE"),
        }
    }
    let (volumes, ports) = short_syntax(service_name, &args.volume, &args.publish)?;
    oneoff.volumes.extend(volumes);
    if !args.publish.is_empty() {
        oneoff.ports = ports;
    } else if !args.service_ports {
        oneoff.ports.clear();
    }
    Ok(oneoff)
}

/// `-v` and `-p` entries in their long form, read as the Compose file's short syntax
/// is; relative bind sources are taken from the current directory, as Compose does.
fn short_syntax(
    service: &str,
    volumes: &[String],
    ports: &[String],
) -> anyhow::Result<(Vec<ServiceVolumeConfig>, Vec<ServicePortConfig>)> {
    if volumes.is_empty() && ports.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let entry = |items: &[String]| {
        serde_yaml::Value::Sequence(items.iter().map(|i| i.as_str().into()).collect())
    };
    let mut definition = serde_yaml::Mapping::new();
    definition.insert("image".into(), "run".into());
    definition.insert("volumes".into(), entry(volumes));
    definition.insert("ports".into(), entry(ports));
    let mut services = serde_yaml::Mapping::new();
    services.insert(service.into(), definition.into());
    let mut document = serde_yaml::Mapping::new();
    document.insert("name".into(), "run".into());
    document.insert("services".into(), services.into());
    let mut document = serde_yaml::Value::Mapping(document);
    crate::project::canonical::canonicalize(&mut document)
        .map_err(|e| anyhow::anyhow!("run -v/-p: {e}"))?;
    let parsed = crate::project::model::from_value(document)
        .map_err(|e| anyhow::anyhow!("run -v/-p: {e}"))?;
    let mut parsed = parsed
        .services
        .into_iter()
        .next()
        .map(|(_, s)| s)
        .context("run -v/-p: no service parsed")?;
    let cwd = std::env::current_dir().context("finding the current directory")?;
    for volume in &mut parsed.volumes {
        if volume.kind == VOLUME_TYPE_BIND && !Path::new(&volume.source).is_absolute() {
            volume.source = cwd.join(&volume.source).display().to_string();
        }
    }
    Ok((parsed.volumes, parsed.ports))
}

/// Converges the service's dependencies (none with `--no-deps`) and the project's
/// networks and volumes, as `up SERVICE` would, leaving the service itself out.
fn start_dependencies(
    global: &GlobalOptions,
    context: &ProjectContext,
    service: &str,
    args: &RunArgs,
    pull: UpPull,
) -> anyhow::Result<Vec<ServiceContainer>> {
    let options = UpOptions {
        services: vec![service.to_owned()],
        no_deps: args.no_deps,
        remove_orphans: args.remove_orphans,
        inactive_services: context.inactive_services.clone(),
        ..UpOptions::default()
    };
    let converge_options = ConvergeOptions {
        parallel: context.parallel,
        timeout: None,
        renew_anonymous_volumes: false,
    };
    converge_project_without(
        global,
        context,
        &options,
        &IndexMap::new(),
        converge_options,
        pull,
        Some(service),
    )
}

/// The service's own `depends_on` conditions, on its dependencies' containers.
fn await_conditions(
    context: &ProjectContext,
    service_name: &str,
    service: &Service,
    dependencies: &[ServiceContainer],
) -> anyhow::Result<()> {
    let progress = context.progress();
    for (dependency, entry) in &service.depends_on {
        let ids: Vec<String> = dependencies
            .iter()
            .filter(|c| c.service == *dependency)
            .map(|c| c.id.clone())
            .collect();
        if ids.is_empty() {
            // Not part of the project (an optional dependency): nothing to wait for.
            continue;
        }
        let held = converge::dependency_condition(
            &context.engine,
            &context.project,
            &progress,
            service_name,
            dependency,
            &entry.condition,
            &ids,
        );
        if let Err(err) = held {
            if entry.required {
                bail!("{err}");
            }
            eprintln!("WARN[0000] {err}: going on without it (required: false)");
        }
    }
    Ok(())
}

/// The streams to create the container with.
fn streams_for(attachment: Attachment, use_aliases: bool) -> anyhow::Result<ContainerStreams> {
    let mut streams = ContainerStreams {
        network_aliases: use_aliases,
        ..ContainerStreams::default()
    };
    match attachment {
        Attachment::Detached => {}
        Attachment::Pipes { stdin } => {
            if stdin {
                streams.stdin = Some(own_stream(io::stdin().as_fd())?);
            }
            streams.direct = Some((
                own_stream(io::stdout().as_fd())?,
                own_stream(io::stderr().as_fd())?,
            ));
        }
        Attachment::Terminal => streams.terminal = true,
    }
    Ok(streams)
}

/// The master side of the created container's terminal, sized as ours.
fn take_terminal(context: &ProjectContext, id: &str) -> anyhow::Result<OwnedFd> {
    let master = context
        .engine
        .with_engine(|engine| engine.runtime().terminal(id))
        .with_context(|| format!("container {id}: taking its terminal"))?;
    if let Some((rows, cols)) = terminal_size() {
        let size = rustix::termios::Winsize {
            ws_row: u16::try_from(rows).unwrap_or(u16::MAX),
            ws_col: u16::try_from(cols).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let _ = rustix::termios::tcsetwinsize(&master, size);
    }
    Ok(master)
}

fn interrupt_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.add(Signal::SIGQUIT);
    set
}

/// Until the container exits: its terminal relayed (if any) and our signals
/// forwarded to it. Its exit code.
fn attached(context: &ProjectContext, id: &str, terminal: Option<OwnedFd>) -> anyhow::Result<i32> {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let forwarder = scope.spawn(|| forward_signals(context, id, &done));
        // Raw: Ctrl-C and the like go through the container's own terminal.
        let relayed = terminal.map(|master| relay_pty(master, false));
        let code = context
            .engine
            .wait_exit(id)
            .map_err(|e| anyhow::anyhow!("container {id}: waiting for its exit: {e}"));
        // The signal thread sits in `sigwait`: one more signal lets it see the end.
        done.store(true, Ordering::SeqCst);
        let _ = kill(Pid::this(), Signal::SIGTERM);
        let _ = forwarder.join();
        relayed.transpose()?;
        code
    })
}

/// Each signal goes to the container's main process, as Compose forwards them; a
/// second Ctrl-C kills it (a process 1 ignores the signals it has no handler for).
fn forward_signals(context: &ProjectContext, id: &str, done: &AtomicBool) {
    let set = interrupt_signals();
    let mut interrupts = 0;
    while let Ok(signal) = set.wait() {
        if done.load(Ordering::SeqCst) {
            return;
        }
        if signal == Signal::SIGINT {
            interrupts += 1;
        }
        let result = if interrupts > 1 {
            context.engine.kill(id)
        } else {
            context
                .engine
                .with_engine(|engine| engine.runtime().kill(id, signal as i32, false))
                .map_err(Into::into)
        };
        if let Err(err) = result {
            eprintln!("container {id}: forwarding {signal}: {err}");
        }
    }
}

/// `--rm`: the container and its anonymous volumes; the supervisor forgets it.
fn remove_oneoff(context: &ProjectContext, id: &str) -> anyhow::Result<()> {
    context
        .engine
        .remove(id, true)
        .map_err(|e| anyhow::anyhow!("container {id}: removing: {e}"))?;
    crate::supervisor::reload_if_running(&context.root, &context.project.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(line: &[&str]) -> RunArgs {
        let mut argv = vec!["run"];
        argv.extend_from_slice(line);
        Wrapper::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn everything_after_the_service_is_the_command() {
        let args = parse(&["--rm", "-e", "A=1", "web", "ls", "-la", "-e", "--rm"]);
        assert!(args.rm);
        assert_eq!(args.env, ["A=1"]);
        assert_eq!(args.service(), "web");
        assert_eq!(args.command(), ["ls", "-la", "-e", "--rm"]);
        assert!(args.interactive);
        let args = parse(&["-i=false", "web"]);
        assert!(!args.interactive, "{:?}", args.args);
        assert!(!parse(&["--interactive=false", "web"]).interactive);
        assert!(args.command().is_empty());
    }

    #[test]
    fn incompatible_flags_are_refused() {
        let both = ["run", "--service-ports", "--publish", "80:80", "web"];
        assert!(Wrapper::try_parse_from(both).is_err());
        assert!(Wrapper::try_parse_from(["run", "-d", "--rm", "web"]).is_err());
        assert!(Wrapper::try_parse_from(["run"]).is_err());
    }

    #[test]
    fn a_terminal_only_for_an_attached_interactive_run_on_one() {
        assert_eq!(
            Attachment::choose(false, false, true, true),
            Attachment::Terminal
        );
        assert_eq!(
            Attachment::choose(false, true, true, true),
            Attachment::Pipes { stdin: true }
        );
        assert_eq!(
            Attachment::choose(false, false, true, false),
            Attachment::Pipes { stdin: true }
        );
        assert_eq!(
            Attachment::choose(false, false, false, true),
            Attachment::Pipes { stdin: false }
        );
        assert_eq!(
            Attachment::choose(true, false, true, true),
            Attachment::Detached
        );
    }

    #[test]
    fn oneoff_names_follow_compose() {
        let slug = new_slug().unwrap();
        assert_eq!(slug.len(), 32);
        assert_eq!(
            oneoff_name("demo", "web", &slug),
            format!("demo-web-run-{}", &slug[..12])
        );
    }

    #[test]
    fn the_command_line_changes_the_service() {
        let project = crate::backend::native::tests::project(
            "services:\n  web:\n    image: busybox\n    command: [serve]\n    restart: always\n    ports: ['8080:80']\n    environment: {KEEP: '1', OVER: old}\n",
        );
        let web = &project.services["web"];
        let args = parse(&[
            "-e",
            "OVER=new",
            "-e",
            "RUN_CLI_UNSET_VARIABLE",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "-l",
            "team=ops",
            "-v",
            "./data:/data:ro",
            "web",
            "echo",
            "hi",
        ]);
        let oneoff =
            oneoff_service(web, &args, "demo-web-run-1", &project, Attachment::Detached).unwrap();
        assert_eq!(oneoff.container_name, "demo-web-run-1");
        assert_eq!(oneoff.restart, "");
        assert!(oneoff.ports.is_empty(), "ports only with --service-ports");
        assert_eq!(oneoff.command, Some(vec!["echo".into(), "hi".into()]));
        assert_eq!(oneoff.environment["OVER"], Some("new".into()));
        assert_eq!(oneoff.environment["KEEP"], Some("1".into()));
        assert!(!oneoff.environment.contains_key("RUN_CLI_UNSET_VARIABLE"));
        assert_eq!(oneoff.user, "nobody");
        assert_eq!(oneoff.working_dir, "/tmp");
        assert_eq!(oneoff.labels["team"], "ops");
        let bind = oneoff.volumes.last().unwrap();
        assert!(Path::new(&bind.source).is_absolute());
        assert!(bind.source.ends_with("/data"));
        assert_eq!(bind.target, "/data");
        assert!(bind.read_only);

        let args = parse(&["--service-ports", "--entrypoint", "sh -c", "web"]);
        let oneoff = oneoff_service(web, &args, "x", &project, Attachment::Detached).unwrap();
        assert_eq!(oneoff.ports, web.ports);
        assert_eq!(oneoff.entrypoint, Some(vec!["sh".into(), "-c".into()]));
        assert_eq!(oneoff.command, Some(vec![]));

        let args = parse(&["--publish", "127.0.0.1:9000:90", "web"]);
        let oneoff = oneoff_service(web, &args, "x", &project, Attachment::Detached).unwrap();
        assert_eq!(oneoff.ports.len(), 1);
        assert_eq!(oneoff.ports[0].target, 90);

        let args = parse(&["-l", "novalue", "web"]);
        let err = oneoff_service(web, &args, "x", &project, Attachment::Detached).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --label \"novalue\": a label must be set as KEY=VALUE"
        );
    }
}
