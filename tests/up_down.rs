//! `rcompose up`/`down`/`create`/`start`/`stop`/`restart` end to end on the native engine
//! (needs root, cgroups, overlayfs, nftables), running the real binary.
//!
//! As tests/native_engine.rs: busybox is fetched first (that needs the host's network),
//! then the whole process moves into a throwaway network namespace before any thread
//! exists; every `rcompose` started from here inherits it, so bridges, veths and
//! nftables rules never touch the host's. Its own `main` (`harness = false`).
//! Service names do not resolve without the supervisor: nothing here depends on DNS.

mod kernel_support;
use kernel_support::{check_eq, nothing_mounted_under, run_output, states_of, Suite, TestFn};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcompose::backend::native::NativeEngine;
use rcompose::orchestrator::plan::ContainerState;
use rcompose_runtime::container::helper;

const PROJECT: &str = "updown";

fn compose(mode: &str) -> String {
    format!(
        r#"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo web up $$MODE; exec sleep 300"]
    environment:
      MODE: {mode}
    depends_on:
      db:
        condition: service_started
      init:
        condition: service_completed_successfully
  db:
    image: busybox
    command: ["sh", "-c", "echo db up; exec sleep 300"]
    volumes: [data:/data]
  init:
    image: busybox
    command: ["sh", "-c", "sleep 0.5; echo init done"]
volumes:
  data: {{}}
"#
    )
}

const ATTACHED: &str = r#"
services:
  a:
    image: busybox
    command: ["sh", "-c", "echo hello from a"]
  b:
    image: busybox
    command: ["sh", "-c", "sleep 0.3; echo hello from b; exit 3"]
"#;

fn main() {
    helper::maybe_run();
    let Some(suite) = Suite::enter("updown") else {
        return;
    };
    let tests: &[(&str, TestFn)] = &[
        (
            "up_converges_scales_stops_and_down_leaves_nothing",
            detached_lifecycle,
        ),
        (
            "attached_up_prints_logs_and_returns_the_exit_code",
            attached_up,
        ),
        (
            "abort_on_container_failure_stops_the_rest",
            abort_on_failure,
        ),
        ("ctrl_c_stops_an_attached_up_gracefully", interrupted_up),
        ("a_failed_check_creates_nothing", failed_check),
        (
            "up_wait_returns_when_healthy_and_one_shots_are_done",
            wait_until_healthy,
        ),
        (
            "up_wait_fails_on_a_failed_or_unhealthy_container",
            wait_fails,
        ),
        ("up_wait_timeout_fails_clearly", wait_times_out),
        ("attach_and_no_attach_choose_the_logs", attach_flags),
        (
            "renew_anon_volumes_drops_the_data_kept_otherwise",
            renew_anonymous_volumes,
        ),
        ("progress_json_prints_one_event_per_line", progress_json),
        (
            "image_volumes_and_stop_signal_apply_as_in_docker",
            image_volumes_and_stop_signal,
        ),
        (
            "secrets_and_configs_with_content_are_in_the_container",
            injected_secrets_and_configs,
        ),
        (
            "a_host_network_project_gets_dockers_open_files_limit",
            open_files_limit,
        ),
        ("create_then_start_from_another_command", create_then_start),
    ];
    suite.run_all(tests);
}

/// `rcompose --root ROOT -p PROJECT ARGS...` in `dir`.
fn rcompose(root: &Path, dir: &Path, project: &str, args: &[&str]) -> Result<Output, String> {
    rcompose_progress(root, dir, project, "plain", args)
}

/// The same with `--progress MODE`.
fn rcompose_progress(
    root: &Path,
    dir: &Path,
    project: &str,
    mode: &str,
    args: &[&str],
) -> Result<Output, String> {
    Command::new(env!("CARGO_BIN_EXE_rcompose"))
        .arg("--root")
        .arg(root)
        .args(["-p", project, "--progress", mode])
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("running rcompose {args:?}: {e}"))
}

/// Runs `project`'s `ARGS`, then `down -v -t 1` whatever happened; the run's exit code
/// and stderr (down must succeed).
fn run_then_down(
    root: &Path,
    dir: &Path,
    project: &str,
    args: &[&str],
) -> Result<(Option<i32>, String, String), String> {
    let output = rcompose(root, dir, project, args)?;
    let down = rcompose(root, dir, project, &["down", "-v", "-t", "1"])?;
    if !down.status.success() {
        return Err(format!(
            "{project}: down: {}",
            String::from_utf8_lossy(&down.stderr)
        ));
    }
    Ok((
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// `down -v -t 1` of `project` after a test's steps, whatever they gave: their error
/// first, else down's.
fn down_after<T>(
    root: &Path,
    dir: &Path,
    project: &str,
    steps: Result<T, String>,
) -> Result<T, String> {
    let down = rcompose(root, dir, project, &["down", "-v", "-t", "1"])?;
    let value = steps?;
    if down.status.success() {
        Ok(value)
    } else {
        Err(format!(
            "{project}: down: {}",
            String::from_utf8_lossy(&down.stderr)
        ))
    }
}

/// Runs and insists on success; returns stderr (the progress lines).
fn ok(root: &Path, dir: &Path, args: &[&str]) -> Result<String, String> {
    let output = rcompose(root, dir, PROJECT, args)?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stderr)
    } else {
        Err(format!("rcompose {args:?}: {}: {stderr}", output.status))
    }
}

fn has_line(stderr: &str, line: &str) -> Result<(), String> {
    if stderr.lines().any(|l| l == line) {
        Ok(())
    } else {
        Err(format!("no line {line:?} in:\n{stderr}"))
    }
}

fn line_index(stderr: &str, line: &str) -> Result<usize, String> {
    stderr
        .lines()
        .position(|l| l == line)
        .ok_or_else(|| format!("no line {line:?} in:\n{stderr}"))
}

fn states(root: &Path) -> Result<Vec<(String, ContainerState)>, String> {
    states_of(root, PROJECT)
}

fn running_names(root: &Path) -> Result<Vec<String>, String> {
    Ok(states(root)?
        .into_iter()
        .filter(|(_, s)| *s == ContainerState::Running)
        .map(|(n, _)| n)
        .collect())
}

fn detached_lifecycle(root: &Path, dir: &Path) -> Result<(), String> {
    let result = converge_scale_stop_start(root, dir);
    // Whatever happened, take the project down and check nothing is left.
    let down = ok(root, dir, &["down", "-v", "-t", "1"]);
    result?;
    let down = down?;
    has_line(&down, " Container updown-web-1  Removed")?;
    has_line(&down, " Network updown_default  Removed")?;
    has_line(&down, " Volume updown_data  Removed")?;
    if line_index(&down, " Container updown-web-1  Removed")?
        > line_index(&down, " Container updown-db-1  Stopping")?
    {
        return Err(format!("db was stopped before web was removed:\n{down}"));
    }
    leftovers(root)
}

fn converge_scale_stop_start(root: &Path, dir: &Path) -> Result<(), String> {
    fs::write(dir.join("compose.yaml"), compose("one")).map_err(|e| e.to_string())?;
    let first = ok(root, dir, &["up", "-d"])?;
    has_line(&first, " Network updown_default  Created")?;
    has_line(&first, " Volume updown_data  Created")?;
    // web waits for db to be started and for init to have exited 0.
    let web_created = line_index(&first, " Container updown-web-1  Creating")?;
    if web_created < line_index(&first, " Container updown-db-1  Started")?
        || web_created < line_index(&first, " Container updown-init-1  Exited")?
    {
        return Err(format!("web was created before its dependencies:\n{first}"));
    }
    check_eq(
        &running_names(root)?,
        &vec!["updown-db-1".to_string(), "updown-web-1".to_string()],
        "running after up",
    )?;
    let states = states(root)?;
    check_eq(
        &states
            .iter()
            .find(|(n, _)| n == "updown-init-1")
            .map(|(_, s)| *s),
        &Some(ContainerState::Exited { exit_code: 0 }),
        "init after up",
    )?;

    // Unchanged: nothing is recreated.
    let again = ok(root, dir, &["up", "-d"])?;
    has_line(&again, " Container updown-web-1  Running")?;
    has_line(&again, " Container updown-db-1  Running")?;
    if again.contains("Recreate") || again.contains("Creating") {
        return Err(format!("an unchanged project was recreated:\n{again}"));
    }

    // Only the changed service is recreated.
    fs::write(dir.join("compose.yaml"), compose("two")).map_err(|e| e.to_string())?;
    let changed = ok(root, dir, &["up", "-d"])?;
    has_line(&changed, " Container updown-web-1  Recreated")?;
    has_line(&changed, " Container updown-db-1  Running")?;
    if changed.contains("updown-db-1  Recreate") {
        return Err(format!("db was recreated:\n{changed}"));
    }

    let scaled = ok(root, dir, &["up", "-d", "--scale", "web=2"])?;
    has_line(&scaled, " Container updown-web-2  Started")?;
    has_line(&scaled, " Container updown-web-1  Running")?;
    check_eq(
        &running_names(root)?,
        &vec![
            "updown-db-1".into(),
            "updown-web-1".into(),
            "updown-web-2".into(),
        ],
        "running after --scale web=2",
    )?;
    let unscaled = ok(root, dir, &["up", "-d", "--scale", "web=1"])?;
    has_line(&unscaled, " Container updown-web-2  Removed")?;
    check_eq(
        &running_names(root)?,
        &vec!["updown-db-1".to_string(), "updown-web-1".to_string()],
        "running after --scale web=1",
    )?;

    let stopped = ok(root, dir, &["stop", "-t", "1"])?;
    has_line(&stopped, " Container updown-web-1  Stopped")?;
    check_eq(&running_names(root)?, &Vec::new(), "running after stop")?;
    ok(root, dir, &["start", "db"])?;
    check_eq(
        &running_names(root)?,
        &vec!["updown-db-1".to_string()],
        "running after start db",
    )?;
    let restarted = ok(root, dir, &["restart", "-t", "1"])?;
    has_line(&restarted, " Container updown-web-1  Started")?;
    // As Compose's, `restart` starts the one-shot init again too; it may still run.
    let mut running = running_names(root)?;
    running.retain(|name| name != "updown-init-1");
    check_eq(
        &running,
        &vec!["updown-db-1".to_string(), "updown-web-1".to_string()],
        "running after restart",
    )?;
    Ok(())
}

fn attached_up(root: &Path, dir: &Path) -> Result<(), String> {
    fs::write(dir.join("compose.yaml"), ATTACHED).map_err(|e| e.to_string())?;
    let output = rcompose(root, dir, "attached", &["up", "--exit-code-from", "b"])?;
    let down = rcompose(root, dir, "attached", &["down"])?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    check_eq(
        &output.status.code(),
        &Some(3),
        &format!("exit code of `up --exit-code-from b` ({stderr})"),
    )?;
    for line in ["b-1  | hello from b", "b-1 exited with code 3"] {
        if !stdout.lines().any(|l| l.trim_end() == line) {
            return Err(format!("no line {line:?} in stdout:\n{stdout}"));
        }
    }
    if !down.status.success() {
        return Err(format!("down: {}", String::from_utf8_lossy(&down.stderr)));
    }
    Ok(())
}

const ONE_FAILS: &str = r#"
services:
  fine:
    image: busybox
    command: ["sh", "-c", "echo fine"]
  failing:
    image: busybox
    command: ["sh", "-c", "sleep 0.5; echo failing; exit 4"]
  server:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
"#;

/// `--abort-on-container-failure`: a container exiting 0 ends nothing; the first
/// non-zero exit stops the others and is `up`'s exit code.
fn abort_on_failure(root: &Path, dir: &Path) -> Result<(), String> {
    fs::write(dir.join("compose.yaml"), ONE_FAILS).map_err(|e| e.to_string())?;
    let output = rcompose(
        root,
        dir,
        "abortfail",
        &["up", "--abort-on-container-failure", "-t", "5"],
    )?;
    let still_running: Vec<String> = states_of(root, "abortfail")?
        .into_iter()
        .filter(|(_, state)| *state == ContainerState::Running)
        .map(|(name, _)| name)
        .collect();
    let down = rcompose(root, dir, "abortfail", &["down", "-t", "0"])?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    check_eq(
        &output.status.code(),
        &Some(4),
        &format!("exit code of `up --abort-on-container-failure` ({stderr})"),
    )?;
    for line in ["fine-1 exited with code 0", "failing-1 exited with code 4"] {
        if !stdout.lines().any(|l| l.trim_end() == line) {
            return Err(format!("no line {line:?} in stdout:\n{stdout}"));
        }
    }
    if !still_running.is_empty() {
        return Err(format!("still running after the abort: {still_running:?}"));
    }
    if !down.status.success() {
        return Err(format!("down: {}", String::from_utf8_lossy(&down.stderr)));
    }
    Ok(())
}

const LONG_RUNNING: &str = r#"
services:
  svc:
    image: busybox
    command: ["sh", "-c", "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done"]
"#;

/// SIGINT (Ctrl-C) to an attached `up`: its containers are stopped with SIGTERM, it
/// prints their last lines and exits 0.
fn interrupted_up(root: &Path, dir: &Path) -> Result<(), String> {
    fs::write(dir.join("compose.yaml"), LONG_RUNNING).map_err(|e| e.to_string())?;
    let result = interrupt_when_ready(root, dir);
    let down = rcompose(root, dir, "interrupted", &["down", "-t", "1"])?;
    let (code, stdout) = result?;
    if !down.status.success() {
        return Err(format!("down: {}", String::from_utf8_lossy(&down.stderr)));
    }
    check_eq(
        &code,
        &Some(0),
        &format!("exit code after Ctrl-C ({stdout})"),
    )?;
    for line in ["svc-1  | ready", "svc-1  | bye", "svc-1 exited with code 0"] {
        if !stdout.lines().any(|l| l.trim_end() == line) {
            return Err(format!("no line {line:?} in stdout:\n{stdout}"));
        }
    }
    Ok(())
}

fn interrupt_when_ready(root: &Path, dir: &Path) -> Result<(Option<i32>, String), String> {
    let child = Command::new(env!("CARGO_BIN_EXE_rcompose"))
        .arg("--root")
        .arg(root)
        .args(["-p", "interrupted", "--progress", "plain", "up", "-t", "5"])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("running rcompose up: {e}"))?;
    let log = root.join("containers/interrupted-svc-1/interrupted-svc-1-json.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !fs::read_to_string(&log).is_ok_and(|l| l.contains("ready")) {
        if std::time::Instant::now() > deadline {
            let _ = run_output(Command::new("kill").args(["-KILL", &child.id().to_string()]));
            let output = child.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!(
                "svc never said ready: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    run_output(Command::new("kill").args(["-INT", &child.id().to_string()]))?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok((
        output.status.code(),
        format!(
            "{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

const BROKEN: &str = r#"
services:
  good:
    image: busybox
    command: ["sleep", "30"]
  bad:
    image: nosuch:1
  worse:
    image: nosuch:2
"#;

/// Every problem is reported at once, and nothing (not even the network) is made.
fn failed_check(root: &Path, dir: &Path) -> Result<(), String> {
    fs::write(dir.join("compose.yaml"), BROKEN).map_err(|e| e.to_string())?;
    let output = rcompose(root, dir, "broken", &["up", "-d"])?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    check_eq(&output.status.code(), &Some(1), "exit code of a failed up")?;
    // Missing images are pulled first (no registry answers here): both failures
    // are named, and nothing is made.
    for problem in [
        "service bad: pulling image nosuch:1 failed",
        "service worse: pulling image nosuch:2 failed",
    ] {
        if !stderr.lines().any(|l| l.starts_with(problem)) {
            return Err(format!("no line {problem:?} in:\n{stderr}"));
        }
    }
    let engine =
        NativeEngine::open(root, Path::new("/proc/self/exe")).map_err(|e| e.to_string())?;
    if engine.network_manager().inspect("broken_default").is_ok() {
        return Err("a network was created by a failed up".into());
    }
    check_eq(
        &engine.list("broken").map_err(|e| e.to_string())?.len(),
        &0,
        "containers made by a failed up",
    )
}

/// Nothing of the project is left: containers, compose records, namespaces, links,
/// volumes, mounts.
fn leftovers(root: &Path) -> Result<(), String> {
    let engine =
        NativeEngine::open(root, Path::new("/proc/self/exe")).map_err(|e| e.to_string())?;
    check_eq(
        &engine.runtime().list().map_err(|e| e.to_string())?,
        &Vec::<String>::new(),
        "containers left",
    )?;
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
    if engine.network_manager().inspect("updown_default").is_ok() {
        return Err("the network is left".into());
    }
    if engine.volume_store().inspect("updown_data").is_ok() {
        return Err("the volume is left".into());
    }
    let links = run_output(Command::new("ip").args(["-o", "link", "show"]))?;
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    check_eq(&names, &vec!["lo"], "links left")?;
    // The netns directory's own bind mount included: `rm -rf` of the root works.
    nothing_mounted_under(root)
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

const WAIT_OK: &str = r#"
services:
  web:
    image: busybox
    command: ["sleep", "300"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 300ms
  init:
    image: busybox
    command: ["sh", "-c", "sleep 0.3; echo done"]
  plain:
    image: busybox
    command: ["sleep", "300"]
    depends_on:
      init:
        condition: service_completed_successfully
"#;

/// `up --wait`: back once web is healthy, plain running and init exited 0 (it has, as
/// plain waited for it); it is detached, and every container is left as it should be.
fn wait_until_healthy(root: &Path, dir: &Path) -> Result<(), String> {
    fs::write(dir.join("compose.yaml"), WAIT_OK).map_err(|e| e.to_string())?;
    let project = "waitok";
    let output = rcompose(
        root,
        dir,
        project,
        &["up", "--wait", "--wait-timeout", "60"],
    );
    let engine =
        NativeEngine::open(root, Path::new("/proc/self/exe")).map_err(|e| e.to_string())?;
    let mut seen: Vec<(String, ContainerState)> = engine
        .list(project)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|c| (c.name, c.state))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let health = rcompose::supervisor::read_health(root, project, "waitok-web-1");
    let down = rcompose(root, dir, project, &["down", "-t", "1"])?;
    let output = output?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    check_eq(
        &output.status.code(),
        &Some(0),
        &format!("exit code of up --wait ({stderr})"),
    )?;
    has_line(&stderr, " Container waitok-web-1  Healthy")?;
    has_line(&stderr, " Container waitok-plain-1  Healthy")?;
    has_line(&stderr, " Container waitok-init-1  Exited")?;
    check_eq(
        &health.map(|h| h.status),
        &Some(rcompose::orchestrator::health::HealthStatus::Healthy),
        "web's health when up --wait returned",
    )?;
    check_eq(
        &seen,
        &vec![
            (
                "waitok-init-1".into(),
                ContainerState::Exited { exit_code: 0 },
            ),
            ("waitok-plain-1".into(), ContainerState::Running),
            ("waitok-web-1".into(), ContainerState::Running),
        ],
        "containers after up --wait",
    )?;
    if !down.status.success() {
        return Err(format!("down: {}", String::from_utf8_lossy(&down.stderr)));
    }
    Ok(())
}

const WAIT_EXIT: &str = r#"
services:
  bad:
    image: busybox
    command: ["sh", "-c", "exit 3"]
"#;

const WAIT_UNHEALTHY: &str = r#"
services:
  sick:
    image: busybox
    command: ["sleep", "300"]
    healthcheck:
      test: ["CMD", "false"]
      interval: 200ms
      retries: 1
"#;

/// A container that exits non-zero, or turns unhealthy, fails `up --wait` by name.
fn wait_fails(root: &Path, dir: &Path) -> Result<(), String> {
    for (project, yaml, reason) in [
        ("waitexit", WAIT_EXIT, "container waitexit-bad-1 exited (3)"),
        (
            "waitsick",
            WAIT_UNHEALTHY,
            "container waitsick-sick-1 is unhealthy",
        ),
    ] {
        fs::write(dir.join("compose.yaml"), yaml).map_err(|e| e.to_string())?;
        let (code, _, stderr) = run_then_down(
            root,
            dir,
            project,
            &["up", "--wait", "--wait-timeout", "60"],
        )?;
        check_eq(&code, &Some(1), &format!("{project}: exit code ({stderr})"))?;
        has_line(&stderr, reason)?;
    }
    Ok(())
}

const WAIT_SLOW: &str = r#"
services:
  slow:
    image: busybox
    command: ["sleep", "300"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1m
"#;

/// A healthcheck that has not passed when `--wait-timeout` is over fails the wait.
fn wait_times_out(root: &Path, dir: &Path) -> Result<(), String> {
    fs::write(dir.join("compose.yaml"), WAIT_SLOW).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let (code, _, stderr) = run_then_down(
        root,
        dir,
        "waitslow",
        &["up", "--wait", "--wait-timeout", "1"],
    )?;
    let took = started.elapsed();
    check_eq(&code, &Some(1), &format!("exit code ({stderr})"))?;
    has_line(
        &stderr,
        "application not ready after 1s: container waitslow-slow-1 is still starting",
    )?;
    if took > std::time::Duration::from_secs(20) {
        return Err(format!("the wait took {took:?}"));
    }
    Ok(())
}

const TWO_TALKERS: &str = r#"
services:
  a:
    image: busybox
    command: ["sh", "-c", "echo hello from a"]
  b:
    image: busybox
    command: ["sh", "-c", "echo hello from b"]
"#;

/// `--no-attach b` shows a's logs only; `--attach b` b's only.
fn attach_flags(root: &Path, dir: &Path) -> Result<(), String> {
    fs::write(dir.join("compose.yaml"), TWO_TALKERS).map_err(|e| e.to_string())?;
    for (flag, shown, hidden) in [("--no-attach", "a", "b"), ("--attach", "b", "a")] {
        let (code, stdout, stderr) = run_then_down(root, dir, "talkers", &["up", flag, "b"])?;
        check_eq(
            &code,
            &Some(0),
            &format!("up {flag} b: exit code ({stderr})"),
        )?;
        let line = format!("{shown}-1  | hello from {shown}");
        if !stdout.lines().any(|l| l.trim_end() == line) {
            return Err(format!("up {flag} b: no line {line:?} in:\n{stdout}"));
        }
        if stdout.contains(&format!("hello from {hidden}")) {
            return Err(format!("up {flag} b: {hidden}'s logs shown:\n{stdout}"));
        }
    }
    Ok(())
}

const ANONYMOUS: &str = r#"
services:
  svc:
    image: busybox
    command: ["sleep", "300"]
    volumes: ["/data"]
"#;

/// The project's anonymous volumes: name and mount point.
fn anonymous_volumes(root: &Path, project: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let engine =
        NativeEngine::open(root, Path::new("/proc/self/exe")).map_err(|e| e.to_string())?;
    let filter = rcompose_runtime::volume::VolumeFilter {
        labels: vec![rcompose_runtime::volume::LabelFilter::parse(
            &format!("com.docker.compose.project={project}"),
            false,
        )],
        ..Default::default()
    };
    Ok(engine
        .volume_store()
        .list(&filter)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|v| v.is_anonymous())
        .map(|v| (v.name, v.mountpoint))
        .collect())
}

/// A recreated container keeps its anonymous volume's data; with `-V` it gets a new,
/// empty one and the old one is removed.
fn renew_anonymous_volumes(root: &Path, dir: &Path) -> Result<(), String> {
    fs::write(dir.join("compose.yaml"), ANONYMOUS).map_err(|e| e.to_string())?;
    down_after(
        root,
        dir,
        "anon",
        recreate_with_and_without_renew(root, dir),
    )?;
    check_eq(
        &anonymous_volumes(root, "anon")?,
        &Vec::new(),
        "anonymous volumes after down -v",
    )
}

fn recreate_with_and_without_renew(root: &Path, dir: &Path) -> Result<(), String> {
    let up = |args: &[&str]| -> Result<(), String> {
        let output = rcompose(root, dir, "anon", args)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    up(&["up", "-d"])?;
    let first = anonymous_volumes(root, "anon")?;
    let [(name, mountpoint)] = first.as_slice() else {
        return Err(format!("anonymous volumes after up: {first:?}"));
    };
    fs::write(mountpoint.join("kept"), "data").map_err(|e| e.to_string())?;

    up(&["up", "-d", "--force-recreate", "-t", "1"])?;
    let kept = anonymous_volumes(root, "anon")?;
    check_eq(
        &kept.iter().map(|v| v.0.clone()).collect::<Vec<_>>(),
        &vec![name.clone()],
        "anonymous volumes after a recreate",
    )?;
    if !mountpoint.join("kept").exists() {
        return Err("the recreated container's volume lost its data".into());
    }

    up(&["up", "-d", "--force-recreate", "-V", "-t", "1"])?;
    let renewed = anonymous_volumes(root, "anon")?;
    let [(new_name, new_mountpoint)] = renewed.as_slice() else {
        return Err(format!("anonymous volumes after -V: {renewed:?}"));
    };
    if new_name == name || new_mountpoint.join("kept").exists() {
        return Err(format!("-V kept the old volume {name}"));
    }
    Ok(())
}

const IMAGE_DEFAULTS: &str = r#"
services:
  app:
    image: imagedefaults
    command:
      - sh
      - -c
      - trap 'echo caught USR1; exit 0' USR1; echo ready; while :; do sleep 0.1; done
"#;

/// An image's `VOLUME` becomes an anonymous volume, kept over a recreate and removed
/// by `down -v`; its `STOPSIGNAL` is what `stop` sends (the stand-in WordPress image
/// needs both: `/var/www/html` and Apache's graceful SIGWINCH).
fn image_volumes_and_stop_signal(root: &Path, dir: &Path) -> Result<(), String> {
    let rootfs = dir
        .parent()
        .ok_or("the test directory has no parent")?
        .join("rootfs.tar");
    run_output(
        Command::new(env!("CARGO_BIN_EXE_rcompose"))
            .arg("--root")
            .arg(root)
            .args(["image", "import"])
            .arg(&rootfs)
            .args(["imagedefaults:latest", "--change", "ENV PATH=/bin"])
            .args(["--change", "VOLUME /data", "--change", "STOPSIGNAL SIGUSR1"]),
    )?;
    fs::write(dir.join("compose.yaml"), IMAGE_DEFAULTS).map_err(|e| e.to_string())?;
    down_after(root, dir, "imgdefaults", image_defaults_applied(root, dir))?;
    check_eq(
        &anonymous_volumes(root, "imgdefaults")?,
        &Vec::new(),
        "anonymous volumes after down -v",
    )
}

fn image_defaults_applied(root: &Path, dir: &Path) -> Result<(), String> {
    let run = |args: &[&str]| -> Result<String, String> {
        let output = rcompose(root, dir, "imgdefaults", args)?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(format!("{args:?}: {stderr}"))
        }
    };
    run(&["up", "-d"])?;
    let first = anonymous_volumes(root, "imgdefaults")?;
    let [(name, mountpoint)] = first.as_slice() else {
        return Err(format!(
            "anonymous volumes for the image's VOLUME: {first:?}"
        ));
    };
    fs::write(mountpoint.join("kept"), "data").map_err(|e| e.to_string())?;
    run(&["up", "-d", "--force-recreate", "-t", "1"])?;
    let kept = anonymous_volumes(root, "imgdefaults")?;
    check_eq(
        &kept.iter().map(|v| v.0.clone()).collect::<Vec<_>>(),
        &vec![name.clone()],
        "the image's anonymous volume after a recreate",
    )?;
    let seen = run(&["exec", "app", "cat", "/data/kept"])?;
    check_eq(
        &seen.as_str(),
        &"data",
        "/data/kept in the recreated container",
    )?;

    // SIGUSR1 is trapped and ends the process at once; SIGTERM would be ignored by
    // the shell as PID 1 and the stop would wait for its 5 s timeout.
    let started = std::time::Instant::now();
    run(&["stop", "-t", "5"])?;
    let took = started.elapsed();
    if took >= std::time::Duration::from_secs(4) {
        return Err(format!(
            "stop took {took:?}: the image's STOPSIGNAL was not sent"
        ));
    }
    let logs = run(&["logs", "--no-color", "--no-log-prefix"])?;
    if !logs.lines().any(|l| l == "caught USR1") {
        return Err(format!("no \"caught USR1\" in the logs:\n{logs}"));
    }
    Ok(())
}

const CREATED: &str = r#"
services:
  app:
    image: busybox
    command: ["sh", "-c", "echo started once; exec sleep 300"]
"#;

/// `create` makes containers that outlive the command (Docker's "Created", no process);
/// `start`, another process, runs them; `up` then finds them running.
fn create_then_start(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "created";
    fs::write(dir.join("compose.yaml"), CREATED).map_err(|e| e.to_string())?;
    let result = (|| -> Result<(), String> {
        let run = |args: &[&str]| -> Result<Output, String> {
            let output = rcompose(root, dir, project, args)?;
            if output.status.success() {
                Ok(output)
            } else {
                Err(format!(
                    "{args:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        };
        run(&["create"])?;
        check_eq(
            &states_of(root, project)?,
            &vec![("created-app-1".to_string(), ContainerState::Created)],
            "containers after create",
        )?;
        run(&["start"])?;
        check_eq(
            &states_of(root, project)?,
            &vec![("created-app-1".to_string(), ContainerState::Running)],
            "containers after start",
        )?;
        let up = String::from_utf8_lossy(&run(&["up", "-d"])?.stderr).into_owned();
        has_line(&up, " Container created-app-1  Running")?;
        let logs =
            String::from_utf8_lossy(&run(&["logs", "--no-color", "--no-log-prefix"])?.stdout)
                .into_owned();
        check_eq(
            &logs.as_str(),
            &"started once\n",
            "logs after create, start and up",
        )
    })();
    down_after(root, dir, project, result)
}

const NO_NETWORK: &str = r#"
services:
  app:
    image: busybox
    command: ["sleep", "300"]
    network_mode: none
"#;

/// A project without networks comes up (its supervisor waits for the containers), and
/// the container's open-files limit is Docker's (soft = hard = 1048576 where this
/// machine lets a process raise it), not the lower soft limit of the shell that ran `up`.
fn open_files_limit(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "nofile";
    fs::write(dir.join("compose.yaml"), NO_NETWORK).map_err(|e| e.to_string())?;
    let result = (|| -> Result<(), String> {
        run_output(
            Command::new("prlimit")
                .arg("--nofile=1024:")
                .arg(env!("CARGO_BIN_EXE_rcompose"))
                .arg("--root")
                .arg(root)
                .args(["-p", project, "--progress", "plain", "up", "-d"])
                .current_dir(dir),
        )?;
        let output = rcompose(
            root,
            dir,
            project,
            &["exec", "-T", "app", "sh", "-c", "ulimit -n; ulimit -Hn"],
        )?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let limits: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        let [soft, hard] = limits[..] else {
            return Err(format!("ulimit -n; ulimit -Hn printed {text:?}"));
        };
        check_eq(
            &soft,
            &hard,
            "soft and hard open-files limits in the container",
        )?;
        let own_hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .maximum
            .unwrap_or(u64::MAX);
        let nr_open: u64 = fs::read_to_string("/proc/sys/fs/nr_open")
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e| format!("fs.nr_open: {e}"))?;
        let docker = (1u64 << 20).min(nr_open);
        let may_raise = prlimit_can_raise_to(docker);
        let want = if may_raise {
            docker
        } else {
            docker.min(own_hard)
        };
        check_eq(&hard, &want, "open-files limit in the container")
    })();
    down_after(root, dir, project, result)
}

/// Whether a child of this process may raise its hard open-files limit to `limit`.
fn prlimit_can_raise_to(limit: u64) -> bool {
    Command::new("prlimit")
        .arg(format!("--nofile={limit}:{limit}"))
        .arg("true")
        .output()
        .is_ok_and(|o| o.status.success())
}

const INJECTED: &str = r#"
services:
  app:
    image: busybox
    command: ["sleep", "300"]
    secrets:
      - source: token
        uid: "1000"
        gid: "1001"
        mode: 0400
    configs:
      - source: greeting
        target: /etc/greeting.conf
      - token_config
secrets:
  token:
    environment: RC_TEST_TOKEN
configs:
  greeting:
    content: |
      hello ${GREETING_NAME:-world}
  token_config:
    environment: RC_TEST_TOKEN
"#;

/// Secrets and configs without a file (`environment:` from the project's `.env`,
/// inline `content:`) are in the container with their owner and mode; `config` does not
/// print the secret's value; an unset variable fails `up` before anything is made.
fn injected_secrets_and_configs(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "injected";
    fs::write(dir.join("compose.yaml"), INJECTED).map_err(|e| e.to_string())?;
    fs::write(dir.join(".env"), "RC_TEST_TOKEN=s3cret-value\n").map_err(|e| e.to_string())?;
    let run = |args: &[&str]| -> Result<String, String> {
        let output = rcompose(root, dir, project, args)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(format!("{args:?}: {stderr}"))
        }
    };
    let printed = run(&["config"])?;
    if printed.contains("s3cret-value") {
        return Err(format!("config prints the secret's value:\n{printed}"));
    }
    let checks = || -> Result<(), String> {
        run(&["up", "-d"])?;
        let seen = |args: &[&str]| -> Result<String, String> {
            let mut full = vec!["exec", "-T", "app"];
            full.extend_from_slice(args);
            run(&full)
        };
        check_eq(
            &seen(&["cat", "/run/secrets/token"])?,
            &"s3cret-value".to_string(),
            "/run/secrets/token",
        )?;
        check_eq(
            &seen(&["stat", "-c", "%u %g %a", "/run/secrets/token"])?,
            &"1000 1001 400\n".to_string(),
            "owner and mode of /run/secrets/token",
        )?;
        check_eq(
            &seen(&["cat", "/etc/greeting.conf"])?,
            &"hello world\n".to_string(),
            "/etc/greeting.conf",
        )?;
        check_eq(
            &seen(&["stat", "-c", "%u %g %a", "/etc/greeting.conf"])?,
            &"0 0 444\n".to_string(),
            "owner and mode of /etc/greeting.conf",
        )?;
        check_eq(
            &seen(&["cat", "/token_config"])?,
            &"s3cret-value".to_string(),
            "/token_config",
        )?;
        // Read-only, as a file-backed secret.
        if seen(&["sh", "-c", "echo x > /run/secrets/token"]).is_ok() {
            return Err("/run/secrets/token is writable".into());
        }
        Ok(())
    };
    down_after(root, dir, project, checks())?;

    fs::write(dir.join(".env"), "").map_err(|e| e.to_string())?;
    let output = rcompose(root, dir, project, &["up", "-d"])?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    check_eq(
        &output.status.code(),
        &Some(1),
        "exit code without RC_TEST_TOKEN",
    )?;
    let problem = "service app: secrets.token: environment variable \"RC_TEST_TOKEN\" is not set";
    if !stderr.contains(problem) {
        return Err(format!("no {problem:?} in:\n{stderr}"));
    }
    check_eq(
        &states_of(root, project)?,
        &Vec::new(),
        "containers made without RC_TEST_TOKEN",
    )
}

const JSON_PROJECT: &str = r#"
services:
  svc:
    image: rmitest
    command: ["sleep", "300"]
"#;

/// `--progress json`: every progress line is a JSON event; `down --rmi all` removes
/// the image the services use, but not while another project's container uses it.
fn progress_json(root: &Path, dir: &Path) -> Result<(), String> {
    let tag = rcompose(root, dir, "jsonp", &["image", "tag", "busybox", "rmitest"])?;
    if !tag.status.success() {
        return Err(format!("tag: {}", String::from_utf8_lossy(&tag.stderr)));
    }
    fs::write(dir.join("compose.yaml"), JSON_PROJECT).map_err(|e| e.to_string())?;
    let up = rcompose_progress(root, dir, "jsonp", "json", &["up", "-d"])?;
    let other = rcompose(root, dir, "jsonq", &["up", "-d"])?;
    let down = rcompose_progress(
        root,
        dir,
        "jsonp",
        "json",
        &["down", "-t", "1", "--rmi", "all"],
    )?;
    let other_down = rcompose(root, dir, "jsonq", &["down", "-t", "1", "--rmi", "all"])?;
    let image_left = rcompose(root, dir, "jsonq", &["image", "inspect", "rmitest"])?;
    let busybox_left = rcompose(root, dir, "jsonq", &["image", "inspect", "busybox"])?;
    for (what, output) in [("up", &up), ("other up", &other), ("down", &down)] {
        if !output.status.success() {
            return Err(format!(
                "{what}: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    let events = |output: &Output| -> Result<Vec<serde_json::Value>, String> {
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("{l:?} is no JSON: {e}")))
            .collect()
    };
    let has = |events: &[serde_json::Value], id: &str, status: &str, text: &str| {
        let want = serde_json::json!({"id": id, "status": status, "text": text});
        if events.contains(&want) {
            Ok(())
        } else {
            Err(format!("no event {want} in {events:?}"))
        }
    };
    let up_events = events(&up)?;
    has(&up_events, "Network jsonp_default", "Done", "Created")?;
    has(&up_events, "Container jsonp-svc-1", "Working", "Starting")?;
    has(&up_events, "Container jsonp-svc-1", "Done", "Started")?;
    let down_events = events(&down)?;
    has(&down_events, "Container jsonp-svc-1", "Done", "Removed")?;
    has(
        &down_events,
        "Image rmitest",
        "Warning",
        "Resource is still in use",
    )?;
    let other_stderr = String::from_utf8_lossy(&other_down.stderr).into_owned();
    has_line(&other_stderr, " Image rmitest  Removed")?;
    if image_left.status.success() {
        return Err("down --rmi all left the image".into());
    }
    if !busybox_left.status.success() {
        return Err("down --rmi all removed busybox, which rmitest only shared".into());
    }
    Ok(())
}
