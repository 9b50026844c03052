//! `rcompose ps`, `logs`, `exec` and `port` end to end on the native engine (needs
//! root, cgroups, overlayfs, nftables): two services' containers are created and
//! started in-process with `NativeEngine` (as `up` will), then the real binary is run
//! against the same state root and its output checked as a Compose user would.
//!
//! Structured as tests/native_engine.rs: busybox is fetched first, then the process
//! moves into a throwaway network namespace before any thread exists (the binaries it
//! runs inherit it). Its own `main` (`harness = false`): the runtime helper is this
//! binary re-executed.

mod kernel_support;
use kernel_support::{check_eq, Suite};

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rcompose::backend::native::NativeEngine;
use rcompose::orchestrator::labels::{ContainerLabels, ProjectLabels};
use rcompose::orchestrator::plan::ContainerState;
use rcompose::project::discover::{ConfigSource, Environment, ProjectInputs};
use rcompose::project::loader::{load, LoadSettings};
use rcompose::project::model::Project;
use rcompose_runtime::container::helper;

const PROJECT: &str = "pslogs";
const CONTAINERS: [&str; 3] = ["pslogs-job-1", "pslogs-job-2", "pslogs-web-1"];

/// `web` prints three lines, then one more each time /tmp/go appears (made with
/// `exec`), so `logs -f` has a line written while it follows. `job` exits with 3.
const COMPOSE: &str = r#"
services:
  web:
    image: busybox
    command:
      - sh
      - -c
      - "echo web one; echo web two; echo web three; while sleep 0.2; do if [ -f /tmp/go ]; then rm /tmp/go; echo later line; fi; done"
    ports: ["18081:80"]
  job:
    image: busybox
    command: ["sh", "-c", "echo job done; exit 3"]
    network_mode: none
"#;

fn main() {
    helper::maybe_run();
    let Some(suite) = Suite::enter("pslogs") else {
        return;
    };
    let root = suite.root.clone();
    let mut results = Vec::new();
    suite.run("project_setup", |_, dir| {
        let compose_file = dir.join("compose.yaml");
        fs::write(&compose_file, COMPOSE).map_err(|e| e.to_string())?;
        let cli = Cli {
            root: root.clone(),
            compose_file,
        };
        results = with_project(&root, &cli);
        Ok(())
    });
    let mut all_passed = true;
    for (name, result) in results {
        all_passed &= suite.run(name, |_, _| result);
    }
    suite.finish(all_passed);
}

type TestResult = (&'static str, Result<(), String>);

/// Creates and starts the project, runs every check, removes it all.
fn with_project(root: &Path, cli: &Cli) -> Vec<TestResult> {
    let mut engine = match NativeEngine::open(root, Path::new("/proc/self/exe")) {
        Ok(engine) => engine,
        Err(err) => return vec![("open_engine", Err(err.to_string()))],
    };
    let project = match load_project() {
        Ok(project) => project,
        Err(err) => return vec![("load_project", Err(err))],
    };
    let started = start_project(&mut engine, &project);
    let mut results = Vec::new();
    if started.is_ok() {
        results.extend(checks(cli));
        results.push((
            "logs_follow_picks_up_a_new_replica",
            logs_follow_new_replica(cli, &mut engine, &project),
        ));
    }
    results.insert(0, ("start_project", started));
    results.push(("teardown", bounded_teardown(engine)));
    results
}

/// Removes the containers and the network, giving up after 30 s rather than hanging
/// the test (see `exec_errors`).
fn bounded_teardown(engine: NativeEngine) -> Result<(), String> {
    let (sender, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let mut errors = Vec::new();
        for id in CONTAINERS {
            let _ = engine.stop(id, Some(Duration::from_secs(1)));
            if let Err(err) = engine.remove(id) {
                errors.push(err.to_string());
            }
        }
        if let Err(err) = engine.remove_network("pslogs_default") {
            errors.push(err.to_string());
        }
        let _ = sender.send(errors);
    });
    match outcome.recv_timeout(Duration::from_secs(30)) {
        Ok(errors) if errors.is_empty() => Ok(()),
        Ok(errors) => Err(errors.join("; ")),
        Err(_) => Err("stopping and removing the containers did not finish in 30 s".into()),
    }
}

fn checks(cli: &Cli) -> Vec<TestResult> {
    vec![
        ("ps_lists_running_containers_as_a_table", ps_table(cli)),
        ("ps_all_shows_the_exit_code", ps_all(cli)),
        (
            "ps_json_quiet_services_and_filters",
            ps_json_and_filters(cli),
        ),
        ("logs_prefixes_tail_and_timestamps", logs_snapshot(cli)),
        ("logs_follow_prints_later_lines", logs_follow(cli)),
        ("exec_returns_the_exit_code_and_output", exec_output(cli)),
        ("exec_env_user_workdir", exec_options(cli)),
        ("exec_errors", exec_errors(cli)),
        ("exec_on_a_terminal_gets_a_tty", exec_tty(cli)),
        ("port_prints_the_published_address", port(cli)),
    ]
}

fn start_project(engine: &mut NativeEngine, project: &Project) -> Result<(), String> {
    engine.ensure_networks(project).map_err(|e| e.to_string())?;
    for service in ["web", "job"] {
        start_replica(engine, project, service, 1)?;
    }
    // The job has exited and web has written its first lines.
    eventually(|| {
        let states: Vec<(String, ContainerState)> = engine
            .list(PROJECT)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|c| (c.service, c.state))
            .collect();
        let job_done = states
            .iter()
            .any(|(s, state)| s == "job" && *state == ContainerState::Exited { exit_code: 3 });
        if !job_done {
            return Err(format!("job has not exited with 3: {states:?}"));
        }
        let log = fs::read_to_string(engine.runtime().log_path("pslogs-web-1"))
            .map_err(|e| e.to_string())?;
        if log.contains("web three") {
            Ok(())
        } else {
            Err(format!("web's log so far: {log:?}"))
        }
    })
}

/// Creates and starts replica `number` of `service`, as `up` would.
fn start_replica(
    engine: &mut NativeEngine,
    project: &Project,
    service: &str,
    number: u32,
) -> Result<(), String> {
    let project_labels = ProjectLabels {
        name: project.name.clone(),
        working_dir: "/tmp".into(),
        ..ProjectLabels::default()
    };
    let definition = &project.services[service];
    let labels =
        ContainerLabels::replica(&project_labels, service, definition, "test-hash", number).build();
    let created = engine
        .create_container(project, service, number, &labels)
        .map_err(|e| e.to_string())?;
    engine.start(&created.id).map_err(|e| e.to_string())
}

/// `logs --follow` of the whole project shows a replica created after it began.
fn logs_follow_new_replica(
    cli: &Cli,
    engine: &mut NativeEngine,
    project: &Project,
) -> Result<(), String> {
    let (mut child, lines) = follow_lines(cli, &["logs", "-f", "--no-color", "--tail", "0"])?;
    let result = (|| {
        // Let the follow start watching before the replica appears.
        std::thread::sleep(Duration::from_millis(500));
        start_replica(engine, project, "job", 2)?;
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the new replica's output was not printed".to_string())?;
        check_eq(
            &line.as_str(),
            &"job-2  | job done",
            "the new replica's line",
        )
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Spawns rcompose with `args` and sends each line of its stdout to the receiver.
fn follow_lines(
    cli: &Cli,
    args: &[&str],
) -> Result<(std::process::Child, mpsc::Receiver<String>), String> {
    let mut child = cli
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, lines))
}

fn ps_table(cli: &Cli) -> Result<(), String> {
    let out = cli.success(&["ps"])?;
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    check_eq(
        &header,
        &vec![
            "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS",
        ],
        "ps header",
    )?;
    let rows: Vec<&str> = lines.collect();
    check_eq(&rows.len(), &1, "running containers listed")?;
    let web = rows[0];
    for part in [
        "pslogs-web-1",
        "busybox",
        "\"sh -c echo web one;…\"",
        " web ",
        "ago",
        "Up ",
        "0.0.0.0:18081->80/tcp",
    ] {
        if !web.contains(part) {
            return Err(format!("the web row lacks {part:?}: {web:?}"));
        }
    }
    let untruncated = cli.success(&["ps", "--no-trunc"])?;
    if !untruncated.contains("\"sh -c echo web one; echo web two;") {
        return Err(format!("--no-trunc cut the command: {untruncated}"));
    }
    Ok(())
}

fn ps_all(cli: &Cli) -> Result<(), String> {
    let out = cli.success(&["ps", "-a"])?;
    let job = out
        .lines()
        .find(|l| l.starts_with("pslogs-job-1"))
        .ok_or_else(|| format!("no job row: {out}"))?;
    if !job.contains("Exited (3) ") || !job.ends_with("ago") {
        return Err(format!("job row: {job:?}"));
    }
    check_eq(&out.lines().count(), &3, "ps -a lines")
}

fn ps_json_and_filters(cli: &Cli) -> Result<(), String> {
    let out = cli.success(&["ps", "-a", "--format", "json"])?;
    let objects: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{e}: {l}")))
        .collect::<Result<_, _>>()?;
    check_eq(&objects.len(), &2, "JSON lines")?;
    let (job, web) = (&objects[0], &objects[1]);
    check_eq(&job["Name"], &"pslogs-job-1".into(), "job Name")?;
    check_eq(&job["State"], &"exited".into(), "job State")?;
    check_eq(&job["ExitCode"], &3.into(), "job ExitCode")?;
    check_eq(&web["Service"], &"web".into(), "web Service")?;
    check_eq(&web["State"], &"running".into(), "web State")?;
    check_eq(&web["Project"], &PROJECT.into(), "web Project")?;
    check_eq(
        &web["Publishers"][0]["PublishedPort"],
        &18081.into(),
        "web PublishedPort",
    )?;
    check_eq(
        &web["Publishers"][0]["TargetPort"],
        &80.into(),
        "web TargetPort",
    )?;

    check_eq(
        &cli.success(&["ps", "-q"])?,
        &"pslogs-web-1\n".into(),
        "ps -q",
    )?;
    check_eq(
        &cli.success(&["ps", "-a", "--services"])?,
        &"job\nweb\n".into(),
        "ps -a --services",
    )?;
    check_eq(
        &cli.success(&["ps", "-q", "--status", "exited"])?,
        &"pslogs-job-1\n".into(),
        "ps --status exited",
    )?;
    check_eq(
        &cli.success(&["ps", "-q", "--filter", "status=running"])?,
        &"pslogs-web-1\n".into(),
        "ps --filter status=running",
    )?;
    check_eq(
        &cli.success(&["ps", "-q", "-a", "job"])?,
        &"pslogs-job-1\n".into(),
        "ps job",
    )?;
    cli.failure(&["ps", "nosuch"], 1, "no such service: nosuch")?;
    cli.failure(&["ps", "--filter", "name=x"], 1, "unknown filter name")
}

fn logs_snapshot(cli: &Cli) -> Result<(), String> {
    let out = cli.success(&["logs", "--no-color"])?;
    for line in [
        "web-1  | web one",
        "web-1  | web two",
        "web-1  | web three",
        "job-1  | job done",
    ] {
        if !out.lines().any(|l| l == line) {
            return Err(format!("logs lack {line:?}: {out}"));
        }
    }
    check_eq(
        &cli.success(&["logs", "--no-color", "--tail", "1", "web"])?,
        &"web-1  | web three\n".into(),
        "logs --tail 1 web",
    )?;
    check_eq(
        &cli.success(&["logs", "--no-log-prefix", "job"])?,
        &"job done\n".into(),
        "logs --no-log-prefix job",
    )?;
    let stamped = cli.success(&["logs", "-t", "--no-log-prefix", "job"])?;
    let (stamp, text) = stamped
        .trim_end()
        .split_once(' ')
        .ok_or_else(|| format!("logs -t: {stamped:?}"))?;
    let stamp_ok = stamp.len() == 30 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T';
    if !stamp_ok || text != "job done" {
        return Err(format!("logs -t: {stamped:?}"));
    }
    check_eq(
        &cli.success(&["logs", "--no-color", "--index", "2", "web"])?,
        &String::new(),
        "logs --index 2 web",
    )?;
    cli.failure(&["logs", "nosuch"], 1, "no such service: nosuch")
}

fn logs_follow(cli: &Cli) -> Result<(), String> {
    let (mut child, lines) = follow_lines(
        cli,
        &["logs", "--follow", "--no-color", "--tail", "1", "web"],
    )?;
    let result = (|| {
        let first = lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "logs --follow printed nothing".to_string())?;
        check_eq(
            &first.as_str(),
            &"web-1  | web three",
            "first followed line",
        )?;
        cli.success(&["exec", "-T", "web", "touch", "/tmp/go"])?;
        let later = lines
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "no line written later was printed".to_string())?;
        check_eq(&later.as_str(), &"web-1  | later line", "the later line")?;
        match child.try_wait() {
            Ok(None) => Ok(()),
            other => Err(format!("logs --follow ended by itself: {other:?}")),
        }
    })();
    let _ = child.kill();
    let status = child.wait().map_err(|e| e.to_string())?;
    result?;
    if status.success() {
        return Err("logs --follow exited 0 although killed".into());
    }
    Ok(())
}

fn exec_output(cli: &Cli) -> Result<(), String> {
    let output = cli.run(&[
        "exec",
        "-T",
        "web",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 5",
    ])?;
    check_eq(&output.status.code(), &Some(5), "exec exit code")?;
    check_eq(&text(&output.stdout).as_str(), &"out\n", "exec stdout")?;
    check_eq(&text(&output.stderr).as_str(), &"err\n", "exec stderr")?;
    // Stdin is the command's too.
    let mut child = cli
        .command(&["exec", "-T", "web", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, b"piped in\n").map_err(|e| e.to_string())?;
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    check_eq(&text(&output.stdout).as_str(), &"piped in\n", "exec cat")
}

fn exec_options(cli: &Cli) -> Result<(), String> {
    let out = cli.success(&[
        "exec",
        "-T",
        "-e",
        "GREETING=hello there",
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "web",
        "sh",
        "-c",
        "echo \"$GREETING\" $(id -u) $(id -g) $(pwd)",
    ])?;
    check_eq(
        &out.as_str(),
        &"hello there 1000 1000 /tmp\n",
        "exec -e -u -w",
    )
}

/// Under `script` (our stdin a terminal) exec allocates a tty by default, relays its
/// output and returns the command's exit code; `-T` gives the command none.
fn exec_tty(cli: &Cli) -> Result<(), String> {
    let under_terminal = |exec_args: &str| -> Result<Output, String> {
        let line = format!(
            "{} --root {} -f {} -p {PROJECT} exec {exec_args}",
            env!("CARGO_BIN_EXE_rcompose"),
            cli.root.display(),
            cli.compose_file.display()
        );
        Command::new("script")
            .args(["-qefc", &line, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("script: {e}"))
    };
    let output = under_terminal("web sh -c 'tty; exit 4'")?;
    let out = text(&output.stdout);
    check_eq(&output.status.code(), &Some(4), "exit code through the tty")?;
    if !out.contains("/dev/pts/") {
        return Err(format!("the command has no tty: {out:?}"));
    }
    let output = under_terminal("-T web tty")?;
    let out = text(&output.stdout);
    if !out.contains("not a tty") {
        return Err(format!("-T still gave a tty: {out:?}"));
    }
    Ok(())
}

fn exec_errors(cli: &Cli) -> Result<(), String> {
    // A failed exec leaves libcontainer's processes for the monitor to reap; the
    // teardown at the end would hang if it did not (the container's init waits for
    // them when its pid namespace ends).
    let output = cli.run(&["exec", "-T", "web", "nosuchcommand"])?;
    check_eq(
        &output.status.code(),
        &Some(127),
        "exec of a missing command",
    )?;
    cli.failure(
        &["exec", "-T", "job", "true"],
        1,
        "service \"job\" is not running container #1",
    )?;
    cli.failure(
        &["exec", "-T", "--index", "2", "web", "true"],
        1,
        "service \"web\" is not running container #2",
    )?;
    cli.failure(
        &["exec", "-T", "nosuch", "true"],
        1,
        "no such service: nosuch",
    )
}

fn port(cli: &Cli) -> Result<(), String> {
    check_eq(
        &cli.success(&["port", "web", "80"])?,
        &"0.0.0.0:18081\n".into(),
        "port web 80",
    )?;
    cli.failure(
        &["port", "web", "81"],
        1,
        "no port 81/tcp for container pslogs-web-1: 18081/tcp",
    )?;
    cli.failure(
        &["port", "--protocol", "udp", "web", "80"],
        1,
        "no port 80/udp for container pslogs-web-1: 18081/tcp",
    )?;
    cli.failure(&["port", "job", "80"], 1, "no container found for job-1")
}

/// The rcompose binary against the test's root and Compose file.
struct Cli {
    root: PathBuf,
    compose_file: PathBuf,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rcompose"));
        command
            .arg("--root")
            .arg(&self.root)
            .arg("-f")
            .arg(&self.compose_file)
            .arg("-p")
            .arg(PROJECT)
            .args(args)
            .stdin(Stdio::null())
            .env_remove("RCOMPOSE_ROOT");
        command
    }

    /// Runs with a 30 s limit.
    fn run(&self, args: &[&str]) -> Result<Output, String> {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("rcompose {args:?}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("rcompose {args:?} did not finish in 30 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().map_err(|e| e.to_string())
    }

    fn success(&self, args: &[&str]) -> Result<String, String> {
        let output = self.run(args)?;
        if output.status.success() {
            Ok(text(&output.stdout))
        } else {
            Err(format!(
                "rcompose {args:?}: {}: {}",
                output.status,
                text(&output.stderr).trim()
            ))
        }
    }

    fn failure(&self, args: &[&str], code: i32, message: &str) -> Result<(), String> {
        let output = self.run(args)?;
        check_eq(
            &output.status.code(),
            &Some(code),
            &format!("exit code of {args:?}"),
        )?;
        check_eq(
            &text(&output.stderr).trim_end(),
            &message,
            &format!("error of {args:?}"),
        )
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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

/// Retries `check` for up to 15 s (containers start asynchronously).
fn eventually<T>(mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() >= deadline => return Err(err),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
