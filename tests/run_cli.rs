//! `rcompose run` end to end on the native engine (needs root, cgroups, overlayfs,
//! nftables), running the real binary in a throwaway network namespace, as
//! tests/up_down.rs does. Its own `main` (`harness = false`).

mod kernel_support;
use kernel_support::{check_eq, run_output, Suite, TestFn};

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcompose::backend::native::NativeEngine;
use rcompose::orchestrator::plan::ContainerState;
use rcompose_runtime::container::helper;
use rcompose_runtime::volume::VolumeFilter;

const APP: &str = r#"
services:
  app:
    image: busybox
    command: ["sleep", "300"]
    restart: always
    volumes: ["/scratch"]
"#;

const WITH_DEPS: &str = r#"
services:
  app:
    image: busybox
    command: ["sleep", "300"]
    depends_on:
      db:
        condition: service_started
      init:
        condition: service_completed_successfully
  db:
    image: busybox
    command: ["sleep", "300"]
  init:
    image: busybox
    command: ["sh", "-c", "sleep 0.5; echo init done"]
"#;

const WEB: &str = r#"
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "8080", "-h", "/"]
    ports: ["127.0.0.1:18093:8080"]
"#;

fn main() {
    helper::maybe_run();
    let Some(suite) = Suite::enter("run") else {
        return;
    };
    let tests: &[(&str, TestFn)] = &[
        (
            "run_returns_the_exit_code_and_rm_leaves_nothing",
            exit_code_and_rm,
        ),
        ("env_workdir_user_entrypoint_apply", flags_apply),
        ("stdin_is_piped_in", stdin_piped),
        (
            "ps_hides_and_up_ignores_the_oneoff_and_down_removes_it",
            ps_up_down,
        ),
        ("dependencies_start_first_and_resolve_by_name", dependencies),
        ("no_deps_starts_nothing_else", no_deps),
        ("service_ports_publishes_only_when_asked", service_ports),
        (
            "unknown_service_is_refused_before_anything",
            unknown_service,
        ),
        ("a_terminal_gives_the_container_its_own_tty", terminal),
        ("ctrl_c_is_forwarded_to_the_container", ctrl_c),
    ];
    suite.run_all(tests);
}

fn command(root: &Path, dir: &Path, project: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rcompose"));
    command
        .arg("--root")
        .arg(root)
        .args(["-p", project, "--progress", "plain"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

fn rcompose(root: &Path, dir: &Path, project: &str, args: &[&str]) -> Result<Output, String> {
    command(root, dir, project, args)
        .output()
        .map_err(|e| format!("running rcompose {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs and insists on success; returns stdout.
fn ok(root: &Path, dir: &Path, project: &str, args: &[&str]) -> Result<String, String> {
    let output = rcompose(root, dir, project, args)?;
    if output.status.success() {
        Ok(text(&output.stdout))
    } else {
        Err(format!(
            "rcompose {args:?}: {}: {}",
            output.status,
            text(&output.stderr)
        ))
    }
}

fn write_compose(dir: &Path, yaml: &str) -> Result<(), String> {
    fs::write(dir.join("compose.yaml"), yaml).map_err(|e| e.to_string())
}

fn engine(root: &Path) -> Result<NativeEngine, String> {
    NativeEngine::open(root, Path::new("/proc/self/exe")).map_err(|e| e.to_string())
}

/// (name, state, one-off) of the project's containers, by name.
fn containers(root: &Path, project: &str) -> Result<Vec<(String, ContainerState, bool)>, String> {
    let mut list: Vec<_> = engine(root)?
        .list(project)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|c| (c.name, c.state, c.oneoff))
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(list)
}

fn volumes_of(root: &Path, project: &str) -> Result<Vec<String>, String> {
    Ok(engine(root)?
        .volume_store()
        .list(&VolumeFilter::default())
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|v| {
            v.labels
                .get("com.docker.compose.project")
                .map(String::as_str)
                == Some(project)
        })
        .map(|v| v.name)
        .collect())
}

/// `down -v -t 1`, then nothing of the project may be left.
fn down_leaves_nothing(root: &Path, dir: &Path, project: &str) -> Result<(), String> {
    ok(root, dir, project, &["down", "-v", "-t", "1"])?;
    check_eq(
        &containers(root, project)?,
        &Vec::new(),
        "containers after down",
    )?;
    check_eq(
        &volumes_of(root, project)?,
        &Vec::new(),
        "volumes after down",
    )?;
    if engine(root)?
        .network_manager()
        .inspect(&format!("{project}_default"))
        .is_ok()
    {
        return Err(format!("network {project}_default is left after down"));
    }
    Ok(())
}

/// Runs `test`, then takes the project down whatever happened.
fn with_down(
    root: &Path,
    dir: &Path,
    project: &str,
    test: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let result = test();
    let down = down_leaves_nothing(root, dir, project);
    result.and(down)
}

fn is_oneoff_name(name: &str, project: &str, service: &str) -> bool {
    name.strip_prefix(&format!("{project}-{service}-run-"))
        .is_some_and(|slug| slug.len() == 12 && slug.chars().all(|c| c.is_ascii_hexdigit()))
}

fn exit_code_and_rm(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "runexit";
    write_compose(dir, APP)?;
    with_down(root, dir, project, || {
        let output = rcompose(
            root,
            dir,
            project,
            &[
                "run",
                "--rm",
                "app",
                "sh",
                "-c",
                "echo out; echo err >&2; echo data > /scratch/f; exit 7",
            ],
        )?;
        check_eq(&output.status.code(), &Some(7), "exit code of run")?;
        check_eq(&text(&output.stdout), &"out\n".to_string(), "stdout of run")?;
        let stderr = text(&output.stderr);
        if !stderr.lines().any(|l| l == "err") {
            return Err(format!("no line \"err\" on stderr:\n{stderr}"));
        }
        // --rm: neither the container nor its anonymous volume is left.
        check_eq(&containers(root, project)?, &Vec::new(), "after run --rm")?;
        check_eq(
            &volumes_of(root, project)?,
            &Vec::new(),
            "volumes after --rm",
        )?;

        // Without --rm the one-off stays, exited, with its restart policy dropped.
        let kept = rcompose(root, dir, project, &["run", "app", "sh", "-c", "exit 3"])?;
        check_eq(&kept.status.code(), &Some(3), "exit code of the kept run")?;
        std::thread::sleep(Duration::from_secs(2));
        let list = containers(root, project)?;
        match list.as_slice() {
            [(name, ContainerState::Exited { exit_code: 3 }, true)]
                if is_oneoff_name(name, project, "app") =>
            {
                Ok(())
            }
            other => Err(format!("expected one exited one-off, found {other:?}")),
        }
    })
}

fn flags_apply(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "runflags";
    write_compose(dir, APP)?;
    with_down(root, dir, project, || {
        let output = command(
            root,
            dir,
            project,
            &[
                "run",
                "--rm",
                "-T",
                "-e",
                "FOO=bar",
                "-e",
                "FROM_HOST",
                "-w",
                "/tmp",
                "-u",
                "1234:5678",
                "--entrypoint",
                "sh -c",
                "app",
                "echo $FOO $FROM_HOST; pwd; id -u; id -g",
            ],
        )
        .env("FROM_HOST", "host-value")
        .output()
        .map_err(|e| e.to_string())?;
        check_eq(
            &text(&output.stdout),
            &"bar host-value\n/tmp\n1234\n5678\n".to_string(),
            &format!("output of run (stderr: {})", text(&output.stderr)),
        )?;
        check_eq(&output.status.code(), &Some(0), "exit code")
    })
}

fn stdin_piped(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "runstdin";
    write_compose(dir, APP)?;
    with_down(root, dir, project, || {
        let mut child = command(root, dir, project, &["run", "--rm", "-T", "app", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin.write_all(b"hi\n").map_err(|e| e.to_string())?;
        drop(stdin);
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        check_eq(
            &text(&output.stdout),
            &"hi\n".to_string(),
            &format!("cat's output (stderr: {})", text(&output.stderr)),
        )?;
        check_eq(&output.status.code(), &Some(0), "exit code")
    })
}

fn ps_up_down(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "runps";
    write_compose(dir, APP)?;
    let result = (|| {
        let printed = ok(root, dir, project, &["run", "-d", "app"])?;
        let oneoff = printed.trim().to_string();
        if !is_oneoff_name(&oneoff, project, "app") {
            return Err(format!("run -d printed {printed:?}, not a one-off name"));
        }
        let up = rcompose(root, dir, project, &["up", "-d"])?;
        let up_err = text(&up.stderr);
        if !up.status.success()
            || !up_err
                .lines()
                .any(|l| l == " Container runps-app-1  Started")
        {
            return Err(format!("up did not start its own replica:\n{up_err}"));
        }
        let running: Vec<String> = containers(root, project)?
            .into_iter()
            .filter(|(_, s, _)| *s == ContainerState::Running)
            .map(|(n, _, _)| n)
            .collect();
        check_eq(
            &running,
            &vec!["runps-app-1".to_string(), oneoff.clone()],
            "running after run -d and up -d",
        )?;
        let ps = ok(root, dir, project, &["ps", "-q"])?;
        check_eq(&ps, &"runps-app-1\n".to_string(), "ps without -a")?;
        let all = ok(root, dir, project, &["ps", "-a", "-q"])?;
        check_eq(
            &all,
            &format!("runps-app-1\n{oneoff}\n"),
            "ps -a lists the one-off",
        )?;
        // A second up leaves both alone.
        let again = rcompose(root, dir, project, &["up", "-d"])?;
        let again_err = text(&again.stderr);
        if again_err.contains(&oneoff) || again_err.contains("Creating") {
            return Err(format!("up touched the one-off:\n{again_err}"));
        }
        Ok(())
    })();
    // `down` (not --remove-orphans) must take the running one-off too.
    let down = down_leaves_nothing(root, dir, project);
    result.and(down)
}

fn dependencies(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "rundeps";
    write_compose(dir, WITH_DEPS)?;
    with_down(root, dir, project, || {
        let output = rcompose(
            root,
            dir,
            project,
            &["run", "--rm", "-T", "app", "nslookup", "db"],
        )?;
        let stdout = text(&output.stdout);
        let stderr = text(&output.stderr);
        check_eq(
            &output.status.code(),
            &Some(0),
            &format!("nslookup db from the one-off:\n{stdout}\n{stderr}"),
        )?;
        let db_address = engine(root)?
            .network_manager()
            .inspect("rundeps_default")
            .map_err(|e| e.to_string())?
            .endpoints
            .get("rundeps-db-1")
            .map(|e| e.ipv4.to_string())
            .ok_or("db has no endpoint")?;
        if !stdout.contains(&db_address) {
            return Err(format!("db ({db_address}) not resolved:\n{stdout}"));
        }
        let list = containers(root, project)?;
        check_eq(
            &list,
            &vec![
                ("rundeps-db-1".to_string(), ContainerState::Running, false),
                (
                    "rundeps-init-1".to_string(),
                    ContainerState::Exited { exit_code: 0 },
                    false,
                ),
            ],
            "dependencies after run",
        )
    })
}

fn no_deps(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "runnodeps";
    write_compose(dir, WITH_DEPS)?;
    with_down(root, dir, project, || {
        let output = rcompose(root, dir, project, &["run", "--no-deps", "app", "true"])?;
        check_eq(&output.status.code(), &Some(0), "exit code")?;
        let list = containers(root, project)?;
        match list.as_slice() {
            [(name, _, true)] if is_oneoff_name(name, project, "app") => Ok(()),
            other => Err(format!("expected the one-off alone, found {other:?}")),
        }
    })
}

fn connects(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
}

/// Waits until the one-off's httpd answers inside the container.
fn wait_listening(root: &Path, id: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = engine(root)?.runtime().exec(
            id,
            rcompose_runtime::container::lifecycle::ExecOptions {
                // Port 8080 (0x1F90) bound, as the kernel lists it (httpd may
                // take IPv6's any address).
                args: vec![
                    "grep".into(),
                    "-q".into(),
                    ":1F90 ".into(),
                    "/proc/net/tcp".into(),
                    "/proc/net/tcp6".into(),
                ],
                ..Default::default()
            },
        );
        if probe.is_ok_and(|session| session.wait().is_ok_and(|code| code == 0)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{id}: httpd never listened"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn service_ports(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "runports";
    write_compose(dir, WEB)?;
    with_down(root, dir, project, || {
        let quiet = ok(root, dir, project, &["run", "-d", "web"])?;
        wait_listening(root, quiet.trim())?;
        if connects(18093) {
            return Err("without --service-ports the port is published".into());
        }
        ok(root, dir, project, &["down", "-t", "1"])?;
        let published = ok(root, dir, project, &["run", "-d", "--service-ports", "web"])?;
        wait_listening(root, published.trim())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !connects(18093) {
            if Instant::now() > deadline {
                return Err("with --service-ports 127.0.0.1:18093 does not answer".into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    })
}

fn unknown_service(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "rununknown";
    write_compose(dir, APP)?;
    let output = rcompose(root, dir, project, &["run", "--rm", "nosuch", "true"])?;
    check_eq(&output.status.code(), &Some(1), "exit code")?;
    let stderr = text(&output.stderr);
    if !stderr.contains("no such service: nosuch") {
        return Err(format!("unexpected error:\n{stderr}"));
    }
    check_eq(&containers(root, project)?, &Vec::new(), "containers")?;
    if engine(root)?
        .network_manager()
        .inspect("rununknown_default")
        .is_ok()
    {
        return Err("a network was made for an unknown service".into());
    }
    let build = rcompose(root, dir, project, &["run", "--build", "app", "true"])?;
    check_eq(&build.status.code(), &Some(1), "run --build")?;
    if !text(&build.stderr).contains("building images is not supported yet") {
        return Err(format!("run --build: {}", text(&build.stderr)));
    }
    Ok(())
}

/// SIGINT (Ctrl-C) to `rcompose run` reaches the container's process.
fn ctrl_c(root: &Path, dir: &Path) -> Result<(), String> {
    let project = "runctrlc";
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    write_compose(dir, APP)?;
    with_down(root, dir, project, || {
        let script = "trap 'echo got INT; exit 5' INT; echo ready; while :; do sleep 0.1; done";
        let mut child = command(
            root,
            dir,
            project,
            &["run", "--rm", "-T", "app", "sh", "-c", script],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut first = String::new();
        stdout.read_line(&mut first).map_err(|e| e.to_string())?;
        if first != "ready\n" {
            let _ = run_output(Command::new("kill").args(["-KILL", &child.id().to_string()]));
            return Err(format!("the container did not say ready: {first:?}"));
        }
        run_output(Command::new("kill").args(["-INT", &child.id().to_string()]))?;
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).map_err(|e| e.to_string())?;
        let status = child.wait().map_err(|e| e.to_string())?;
        check_eq(&rest, &"got INT\n".to_string(), "output after Ctrl-C")?;
        check_eq(&status.code(), &Some(5), "exit code after Ctrl-C")?;
        check_eq(&containers(root, project)?, &Vec::new(), "after run --rm")
    })
}

/// On a terminal (a pseudo-terminal here, 33 rows by 101 columns), the one-off gets a
/// terminal of its own, as `docker compose run` gives one: `tty` names it, it has our
/// size, Ctrl-C typed goes through it to the foreground command (the shell lives on),
/// and the exit code is the shell's.
fn terminal(root: &Path, dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    fs::write(dir.join("compose.yaml"), APP).map_err(|e| e.to_string())?;
    with_down(root, dir, "tty", || run_on_a_terminal(root, dir))
}

fn run_on_a_terminal(root: &Path, dir: &Path) -> Result<(), String> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    use std::os::fd::OwnedFd;
    use std::sync::{Arc, Mutex};

    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .map_err(|e| format!("openpt: {e}"))?;
    grantpt(&master)
        .and_then(|()| unlockpt(&master))
        .map_err(|e| e.to_string())?;
    let name = ptsname(&master, Vec::new()).map_err(|e| e.to_string())?;
    // Without CLOEXEC on purpose: rcompose inherits it as a stray descriptor, as from
    // a careless parent, and must not hand it to the daemons it starts (the terminal
    // would never see its end).
    let slave: OwnedFd = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("opening the terminal: {e}"))?;
    let size = rustix::termios::Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, size).map_err(|e| e.to_string())?;
    let clone = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(|e| e.to_string());
    let mut child = command(root, dir, "tty", &["run", "--rm", "app", "sh"])
        .stdin(clone(&slave)?)
        .stdout(clone(&slave)?)
        .stderr(clone(&slave)?)
        .spawn()
        .map_err(|e| format!("running rcompose run: {e}"))?;
    drop(slave);
    let output = Arc::new(Mutex::new(Vec::new()));
    let (closed_tx, closed) = std::sync::mpsc::channel();
    {
        let output = output.clone();
        let mut from = fs::File::from(master.try_clone().map_err(|e| e.to_string())?);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // EIO once every holder of the terminal's other side is gone.
            while let Ok(n) = std::io::Read::read(&mut from, &mut buffer) {
                if n == 0 {
                    break;
                }
                output
                    .lock()
                    .map(|mut o| o.extend_from_slice(&buffer[..n]))
                    .ok();
            }
            let _ = closed_tx.send(());
        });
    }
    let mut to = fs::File::from(master);
    let seen = || {
        String::from_utf8_lossy(&output.lock().map(|o| o.clone()).unwrap_or_default()).into_owned()
    };
    let wait_for = |pattern: &str| -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !seen().contains(pattern) {
            if Instant::now() > deadline {
                return Err(format!("no {pattern:?} on the terminal:\n{}", seen()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    };
    let steps = (|| -> Result<(), String> {
        let mut type_in = |text: &[u8]| to.write_all(text).map_err(|e| e.to_string());
        type_in(b"tty; stty size; echo marker-$((40+2))\n")?;
        wait_for("marker-42")?;
        let text = seen();
        if !text.contains("/dev/pts/0") || !text.contains("33 101") {
            return Err(format!("tty and size in the container:\n{text}"));
        }
        type_in(b"sleep 30; echo sleep-$((1+1))-ended\n")?;
        std::thread::sleep(Duration::from_millis(500));
        type_in(b"\x03")?;
        type_in(b"echo alive-$((2+2)); exit 5\n")?;
        wait_for("alive-4")?;
        if seen().contains("sleep-2-ended") {
            return Err(format!("Ctrl-C did not interrupt the sleep:\n{}", seen()));
        }
        Ok(())
    })();
    let status = wait_child(&mut child, Duration::from_secs(30));
    let released = closed.recv_timeout(Duration::from_secs(10));
    steps?;
    check_eq(&status?, &Some(5), "exit code of run on a terminal")?;
    released.map_err(|_| {
        "the terminal is still held open after rcompose exited (by a process it started)"
            .to_string()
    })
}

/// The child's exit code, killing it when it outlives `limit`.
fn wait_child(child: &mut std::process::Child, limit: Duration) -> Result<Option<i32>, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.code());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("rcompose run still running after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
