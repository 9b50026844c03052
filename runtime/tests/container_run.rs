//! Runs real containers through the helper (needs root, cgroups and overlayfs).
//!
//! This test has its own `main` (`harness = false` in Cargo.toml) because it starts
//! the helper exactly as the rcompose binary will: `main` calls
//! `helper::maybe_run()` first, and the runtime spawns `/proc/self/exe` with the
//! hidden argument. libtest's harness would start threads and parse the hidden
//! argument as a test filter before our code could run.
//!
//! The rootfs is busybox from Debian's `busybox-static` package, fetched with
//! `apt-get download`; the test is skipped with a message if that fails.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Instant;

use std::os::unix::fs::MetadataExt;

use oci_spec::image::ImageConfiguration;
use rcompose_runtime::container::config::{
    ContainerConfig, Mount, MountKind, NamespaceMode, Propagation, Resources, UserNamespace,
    DEFAULT_REMAP_SIZE,
};
use rcompose_runtime::container::helper;
use rcompose_runtime::container::lifecycle::{
    ContainerOutput, CreateOptions, ExecOptions, Runtime,
};
use rcompose_runtime::container::rootfs::{mount_points, RootfsSource};
use rcompose_runtime::container::status::{ExitStatus, State};
use rcompose_runtime::logs::{LogOptions, LogReader, ReadOptions, Stream};

type TestResult = Result<(), String>;
type TestFn = fn(&mut Fixture) -> TestResult;

struct Fixture {
    runtime: Runtime,
    state_root: PathBuf,
    busybox: PathBuf,
    /// Parent cgroup of every test container, removed at the end.
    cgroup_parent: String,
    counter: usize,
}

/// What a finished container left: exit status and its output.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn main() {
    helper::maybe_run();
    if !rustix::process::geteuid().is_root() {
        println!("container_run: skipped, running containers needs root");
        return;
    }
    let work = match tempfile::Builder::new()
        .prefix("rcompose-ctr-test")
        .tempdir()
    {
        Ok(dir) => dir,
        Err(err) => panic!("creating a temp dir: {err}"),
    };
    let busybox = match busybox_rootfs(work.path()) {
        Ok(dir) => dir,
        Err(reason) => {
            println!("container_run: skipped, no busybox rootfs: {reason}");
            return;
        }
    };
    let state_root = work.path().join("state");
    let runtime = Runtime::new(Path::new("/proc/self/exe"), &state_root);
    let mut fixture = Fixture {
        runtime,
        state_root,
        busybox,
        cgroup_parent: format!("/rcompose-test-{}", std::process::id()),
        counter: 0,
    };
    let tests: &[(&str, TestFn)] = &[
        ("echo_reaches_stdout", echo_reaches_stdout),
        ("exit_code_is_reported", exit_code_is_reported),
        ("hostname_is_configured", hostname_is_configured),
        ("process_is_pid_1", process_is_pid_1),
        ("plain_dir_rootfs_works", plain_dir_rootfs_works),
        ("overlay_writes_stay_in_upper", overlay_writes_stay_in_upper),
        ("upper_layer_wins", upper_layer_wins),
        (
            "stdin_pipe_reaches_the_process",
            stdin_pipe_reaches_the_process,
        ),
        ("states_and_kill", states_and_kill),
        (
            "force_delete_of_running_container",
            force_delete_of_running_container,
        ),
        ("duplicate_id_is_refused", duplicate_id_is_refused),
        (
            "unstarted_containers_go_with_their_caller",
            unstarted_containers_go_with_their_caller,
        ),
        ("memory_limit_oom_kills", memory_limit_oom_kills),
        ("seccomp_filter_is_loaded", seccomp_filter_is_loaded),
        ("cgroup_limits_are_read_only", cgroup_limits_are_read_only),
        (
            "bad_command_fails_create_cleanly",
            bad_command_fails_create_cleanly,
        ),
        (
            "logs_hold_exactly_what_was_printed",
            logs_hold_exactly_what_was_printed,
        ),
        ("exec_without_tty", exec_without_tty),
        ("exec_with_tty", exec_with_tty),
        (
            "exec_in_a_stopped_container_is_refused",
            exec_in_a_stopped_container_is_refused,
        ),
        ("stop_escalates_to_sigkill", stop_escalates_to_sigkill),
        ("stop_lets_a_handler_finish", stop_lets_a_handler_finish),
        ("pause_and_resume", pause_and_resume),
        (
            "restart_keeps_filesystem_and_log",
            restart_keeps_filesystem_and_log,
        ),
        (
            "containers_outlive_their_caller",
            containers_outlive_their_caller,
        ),
        (
            "sigpipe_has_its_default_action",
            sigpipe_has_its_default_action,
        ),
        (
            "command_not_found_fails_create_cleanly",
            command_not_found_fails_create_cleanly,
        ),
        ("userns_root_is_remapped", userns_root_is_remapped),
        (
            "userns_root_writes_land_as_host_range",
            userns_root_writes_land_as_host_range,
        ),
        (
            "userns_plain_dir_rootfs_is_idmapped",
            userns_plain_dir_rootfs_is_idmapped,
        ),
        (
            "userns_joined_namespace_is_refused_before_create",
            userns_joined_namespace_is_refused_before_create,
        ),
        ("init_reaps_and_forwards", init_reaps_and_forwards),
        (
            "pids_limit_holds_and_stats_see_it",
            pids_limit_holds_and_stats_see_it,
        ),
        ("timing_true_median_of_50", timing_true_median_of_50),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        match test(&mut fixture) {
            Ok(()) => println!("test {name} ... ok"),
            Err(err) => {
                failed += 1;
                println!("test {name} ... FAILED: {err}");
            }
        }
    }
    remove_cgroup_parent(&fixture.cgroup_parent);
    drop(fixture);
    drop(work);
    println!(
        "container_run: {} passed, {failed} failed",
        tests.len() - failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------
// Tests

fn echo_reaches_stdout(f: &mut Fixture) -> TestResult {
    let run = f.run(&["echo", "hello"], config(), true)?;
    check_eq(&run.stdout.as_str(), &"hello\n", "stdout")?;
    check_eq(&run.status.code, &0, "exit code")
}

fn exit_code_is_reported(f: &mut Fixture) -> TestResult {
    let run = f.run(&["sh", "-c", "echo oops >&2; exit 3"], config(), true)?;
    check_eq(&run.stderr.as_str(), &"oops\n", "stderr")?;
    check_eq(&run.status.code, &3, "exit code")
}

fn hostname_is_configured(f: &mut Fixture) -> TestResult {
    let mut cfg = config();
    cfg.hostname = Some("web-host".into());
    let run = f.run(&["hostname"], cfg, true)?;
    check_eq(&run.stdout.as_str(), &"web-host\n", "hostname")
}

fn process_is_pid_1(f: &mut Fixture) -> TestResult {
    let run = f.run(&["sh", "-c", "echo $$"], config(), true)?;
    check_eq(&run.stdout.as_str(), &"1\n", "pid")
}

fn plain_dir_rootfs_works(f: &mut Fixture) -> TestResult {
    let run = f.run(&["cat", "/etc/hostname-marker"], config(), false)?;
    check_eq(
        &run.stdout.as_str(),
        &"busybox\n",
        "file from the rootfs dir",
    )
}

fn overlay_writes_stay_in_upper(f: &mut Fixture) -> TestResult {
    let run = f.run(
        &[
            "sh",
            "-c",
            "echo x > /tmp/written && rm /etc/hostname-marker && ls /tmp",
        ],
        config(),
        true,
    )?;
    check_eq(&run.stdout.as_str(), &"written\n", "ls /tmp")?;
    check_eq(&run.status.code, &0, "exit code")?;
    if f.busybox.join("tmp/written").exists() || !f.busybox.join("etc/hostname-marker").exists() {
        return Err("the container's writes reached the lower (image) dir".into());
    }
    Ok(())
}

fn upper_layer_wins(f: &mut Fixture) -> TestResult {
    let top = f.busybox.with_file_name("top-layer");
    fs::create_dir_all(top.join("etc")).map_err(|e| e.to_string())?;
    fs::write(top.join("etc/hostname-marker"), "top\n").map_err(|e| e.to_string())?;
    fs::write(top.join("etc/only-in-top"), "yes\n").map_err(|e| e.to_string())?;
    let id = f.next_id();
    let (stdio, out, _err) = piped_stdio()?;
    let mut cfg = config();
    cfg.command = Some(vec![
        "cat".into(),
        "/etc/hostname-marker".into(),
        "/etc/only-in-top".into(),
    ]);
    let rootfs = RootfsSource::Layers(vec![top, f.busybox.clone()]);
    f.create_on(&id, rootfs, cfg, stdio)?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    let status = f.runtime.wait(&id).map_err(|e| e.to_string())?;
    f.delete_and_check_clean(&id)?;
    check_eq(&status.code, &0, "exit code")?;
    let stdout = out.join().map_err(|_| "reader thread panicked")?;
    check_eq(
        &stdout.as_str(),
        &"top\nyes\n",
        "files of a two-layer rootfs",
    )
}

fn stdin_pipe_reaches_the_process(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    let (in_r, in_w) = pipe()?;
    let (mut stdio, out, _err) = piped_stdio()?;
    stdio.stdin = Some(in_r);
    f.create(&id, &["cat"], config(), true, stdio)?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        let mut writer = fs::File::from(in_w);
        writer.write_all(b"ping\n").map_err(|e| e.to_string())?;
    }
    let status = f.runtime.wait(&id).map_err(|e| e.to_string())?;
    f.delete_and_check_clean(&id)?;
    check_eq(&status.code, &0, "exit code")?;
    let stdout = out.join().map_err(|_| "reader thread panicked")?;
    check_eq(&stdout.as_str(), &"ping\n", "stdout of cat")
}

fn states_and_kill(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    let (stdio, _out, _err) = piped_stdio()?;
    let pid = f.create(&id, &["sleep", "30"], config(), true, stdio)?;
    let state = f.runtime.state(&id).map_err(|e| e.to_string())?;
    check_eq(&state.state, &State::Created, "state after create")?;
    check_eq(&state.pid, &Some(pid), "pid")?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    let state = f.runtime.state(&id).map_err(|e| e.to_string())?;
    check_eq(&state.state, &State::Running, "state after start")?;
    f.runtime.kill(&id, 9, false).map_err(|e| e.to_string())?;
    let status = f.runtime.wait(&id).map_err(|e| e.to_string())?;
    check_eq(&status.code, &137, "exit code after SIGKILL")?;
    let state = f.runtime.state(&id).map_err(|e| e.to_string())?;
    check_eq(&state.state, &State::Stopped, "state after exit")?;
    check_eq(&state.exit, &Some(status), "recorded exit")?;
    if f.runtime.kill(&id, 9, false).is_ok() {
        return Err("kill of an exited container succeeded".into());
    }
    f.delete_and_check_clean(&id)
}

fn force_delete_of_running_container(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    let (stdio, _out, _err) = piped_stdio()?;
    f.create(&id, &["sleep", "30"], config(), true, stdio)?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    match f.runtime.delete(&id, false) {
        Err(err) if err.to_string().contains("is running") => {}
        other => return Err(format!("delete without force: {other:?}")),
    }
    f.runtime.delete(&id, true).map_err(|e| e.to_string())?;
    f.check_clean(&id)?;
    if f.runtime.state(&id).is_ok() {
        return Err("state of a deleted container still answered".into());
    }
    Ok(())
}

fn duplicate_id_is_refused(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    let (stdio, _out, _err) = piped_stdio()?;
    f.create(&id, &["true"], config(), true, stdio)?;
    let (stdio, _out2, _err2) = piped_stdio()?;
    match f.create(&id, &["true"], config(), true, stdio) {
        Err(err) if err.contains("already exists") => {}
        other => return Err(format!("second create with the same id: {other:?}")),
    }
    // The first container is untouched: it still starts and runs.
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    let status = f.runtime.wait(&id).map_err(|e| e.to_string())?;
    check_eq(&status.code, &0, "exit code of the first container")?;
    f.delete_and_check_clean(&id)
}

/// A caller that exits between create and start leaves nothing behind: the
/// container's monitor removes it, as it would otherwise wait for its start forever.
fn unstarted_containers_go_with_their_caller(f: &mut Fixture) -> TestResult {
    let short_lived = Runtime::new(Path::new("/proc/self/exe"), &f.state_root);
    let original = std::mem::replace(&mut f.runtime, short_lived);
    let id = f.next_id();
    let (stdio, _out, _err) = piped_stdio()?;
    let created = f.create(&id, &["true"], config(), true, stdio);
    // Dropping the runtime closes the helper's socket and waits for the helper to
    // exit; the monitor notices and removes the container.
    drop(std::mem::replace(&mut f.runtime, original));
    created?;
    eventually(|| f.check_clean(&id))
}

fn memory_limit_oom_kills(f: &mut Fixture) -> TestResult {
    let mut cfg = config();
    cfg.resources = Resources {
        memory: 32 << 20,
        memory_swap: 32 << 20,
        ..Resources::default()
    };
    let run = f.run(
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        cfg,
        true,
    )?;
    check_eq(&run.status.code, &137, "exit code of the memory hog")?;
    if !run.status.oom_killed() {
        return Err(format!("OOM not reported: {:?}", run.status));
    }
    let mut small = config();
    small.resources.memory = 32 << 20;
    small.resources.memory_swap = 32 << 20;
    let run = f.run(
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=1"],
        small,
        true,
    )?;
    check_eq(&run.status.code, &0, "exit code within the limit")?;
    check_eq(
        &run.status.oom_killed(),
        &false,
        "oom_killed within the limit",
    )
}

fn seccomp_filter_is_loaded(f: &mut Fixture) -> TestResult {
    let run = f.run(&["grep", "^Seccomp:", "/proc/self/status"], config(), true)?;
    check_eq(&run.stdout.as_str(), &"Seccomp:\t2\n", "seccomp mode")?;
    let mut cfg = config();
    cfg.security_opt = vec!["seccomp=unconfined".into()];
    let run = f.run(&["grep", "^Seccomp:", "/proc/self/status"], cfg, true)?;
    check_eq(
        &run.stdout.as_str(),
        &"Seccomp:\t0\n",
        "seccomp mode when unconfined",
    )
}

/// A container reads its own limits but cannot raise them (cgroup v1 hosts go
/// through the helper's read-only bind workaround).
fn cgroup_limits_are_read_only(f: &mut Fixture) -> TestResult {
    let mut cfg = config();
    cfg.resources.memory = 32 << 20;
    cfg.resources.memory_swap = 32 << 20;
    cfg.resources.pids_limit = Some(20);
    let script = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "cat /sys/fs/cgroup/memory.max; echo 100 > /sys/fs/cgroup/pids.max || echo refused"
    } else {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; echo 100 > /sys/fs/cgroup/pids/pids.max || echo refused"
    };
    let run = f.run(&["sh", "-c", script], cfg, true)?;
    check_eq(
        &run.stdout.as_str(),
        &"33554432\nrefused\n",
        "limits seen inside",
    )
}

fn bad_command_fails_create_cleanly(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    let mut cfg = config();
    cfg.working_dir = Some("relative".into());
    let (stdio, _out, _err) = piped_stdio()?;
    match f.create(&id, &["true"], cfg, true, stdio) {
        Err(err) if err.contains("working_dir") && err.contains(&id) => {}
        other => return Err(format!("create with a relative working_dir: {other:?}")),
    }
    f.check_clean(&id)
}

fn logs_hold_exactly_what_was_printed(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    let script = "echo out-1; echo err-1 >&2; echo out-2; printf no-newline";
    f.create_logged(&id, &["sh", "-c", script], config())?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    let status = f.runtime.wait(&id).map_err(|e| e.to_string())?;
    check_eq(&status.code, &0, "exit code")?;
    let mut records = f.log_records(&id)?;
    // The two streams are separate pipes: only the order within each is defined.
    records.sort_by_key(|(stream, _)| *stream == Stream::Stderr);
    let want = vec![
        (Stream::Stdout, "out-1\n".to_string()),
        (Stream::Stdout, "out-2\n".to_string()),
        (Stream::Stdout, "no-newline".to_string()),
        (Stream::Stderr, "err-1\n".to_string()),
    ];
    check_eq(&records, &want, "log records")?;
    let record = f.runtime.inspect(&id).map_err(|e| e.to_string())?;
    check_eq(&record.image.as_str(), &"busybox", "recorded image")?;
    check_eq(
        &record.config.hostname.as_deref(),
        &Some("ctr"),
        "recorded config",
    )?;
    f.delete_and_check_clean(&id)
}

fn exec_without_tty(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    let mut cfg = config();
    cfg.env = vec!["FROM_CONTAINER=1".into(), "OVERRIDDEN=old".into()];
    f.create_logged(&id, &["sleep", "30"], cfg)?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    let (out_r, out_w) = pipe()?;
    let out = drain(out_r);
    let session = f
        .runtime
        .exec(
            &id,
            ExecOptions {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo $FROM_CONTAINER $OVERRIDDEN; id -u; pwd; exit 5".into(),
                ],
                env: vec!["OVERRIDDEN=new".into()],
                user: Some("nobody".into()),
                working_dir: Some("/tmp".into()),
                stdout: Some(out_w),
                ..ExecOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
    let code = session.wait().map_err(|e| e.to_string())?;
    let stdout = out.join().map_err(|_| "reader thread panicked")?;
    f.runtime.delete(&id, true).map_err(|e| e.to_string())?;
    f.check_clean(&id)?;
    check_eq(&code, &5, "exec exit code")?;
    check_eq(&stdout.as_str(), &"1 new\n65534\n/tmp\n", "exec output")
}

fn exec_with_tty(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    f.create_logged(&id, &["sleep", "30"], config())?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    let session = f
        .runtime
        .exec(
            &id,
            ExecOptions {
                args: vec!["sh".into(), "-c".into(), "tty; echo $TERM; exit 4".into()],
                tty: true,
                console_size: Some((24, 80)),
                ..ExecOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
    let master = session
        .pty_master
        .as_ref()
        .ok_or("no pty master came back")?
        .try_clone()
        .map_err(|e| e.to_string())?;
    // The master reports EIO once the process (the only slave holder) is gone.
    let mut output = Vec::new();
    let _ = fs::File::from(master).read_to_end(&mut output);
    let code = session.wait().map_err(|e| e.to_string())?;
    f.runtime.delete(&id, true).map_err(|e| e.to_string())?;
    f.check_clean(&id)?;
    check_eq(&code, &4, "exec exit code")?;
    let output = String::from_utf8_lossy(&output);
    if !output.starts_with("/dev/pts/") || !output.contains("xterm\r\n") {
        return Err(format!("tty output: {output:?}"));
    }
    Ok(())
}

/// A command the image lacks is refused at create with Docker's words, and nothing of
/// the container is left: no overlay, no state, no cgroup.
fn command_not_found_fails_create_cleanly(f: &mut Fixture) -> TestResult {
    let cases = [
        (
            "no-such-command",
            r#"exec: "no-such-command": executable file not found in $PATH"#,
        ),
        (
            "/bin/no-such-file",
            r#"exec: "/bin/no-such-file": stat /bin/no-such-file: no such file or directory"#,
        ),
        ("/etc/passwd", r#"exec: "/etc/passwd": permission denied"#),
    ];
    for (command, want) in cases {
        let id = f.next_id();
        let (stdio, _out, _err) = piped_stdio()?;
        match f.create(&id, &[command], config(), true, stdio) {
            Err(err) if err.contains(want) && err.contains(&id) => {}
            other => return Err(format!("create running {command:?}: {other:?}")),
        }
        f.check_clean(&id)?;
    }
    Ok(())
}

fn exec_in_a_stopped_container_is_refused(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    f.create_logged(&id, &["true"], config())?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    f.runtime.wait(&id).map_err(|e| e.to_string())?;
    let options = ExecOptions {
        args: vec!["true".into()],
        ..ExecOptions::default()
    };
    match f.runtime.exec(&id, options) {
        Err(err) if err.to_string().contains("is not running") => {}
        Err(err) => return Err(format!("exec in a stopped container: {err}")),
        Ok(_) => return Err("exec in a stopped container started".into()),
    }
    f.delete_and_check_clean(&id)
}

/// PID 1 without a handler ignores SIGTERM: stop must fall back to SIGKILL.
fn stop_escalates_to_sigkill(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    f.create_logged(&id, &["sleep", "30"], config())?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    let grace = std::time::Duration::from_millis(300);
    let started = Instant::now();
    let status = f.runtime.stop(&id, 15, grace).map_err(|e| e.to_string())?;
    let took = started.elapsed();
    check_eq(&status.code, &137, "exit code after the grace period")?;
    if took < grace {
        return Err(format!(
            "SIGKILL came after {took:?}, before the grace period"
        ));
    }
    f.delete_and_check_clean(&id)
}

fn stop_lets_a_handler_finish(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    let script = "trap 'echo bye; exit 3' TERM; echo ready; while true; do sleep 0.05; done";
    f.create_logged(&id, &["sh", "-c", script], config())?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    // The trap must be installed before the signal comes.
    eventually(|| {
        let records = f.log_records(&id)?;
        if records.iter().any(|(_, line)| line == "ready\n") {
            Ok(())
        } else {
            Err("the script never became ready".into())
        }
    })?;
    let grace = std::time::Duration::from_secs(20);
    let status = f.runtime.stop(&id, 15, grace).map_err(|e| e.to_string())?;
    check_eq(&status.code, &3, "exit code of the trap")?;
    let records = f.log_records(&id)?;
    if !records.iter().any(|(_, line)| line == "bye\n") {
        return Err(format!("the handler's output is missing: {records:?}"));
    }
    f.delete_and_check_clean(&id)
}

fn pause_and_resume(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    f.create_logged(&id, &["sleep", "30"], config())?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    f.runtime.pause(&id).map_err(|e| e.to_string())?;
    let state = f.runtime.state(&id).map_err(|e| e.to_string())?;
    check_eq(&state.state, &State::Paused, "state after pause")?;
    let freezer = cgroup_dirs(&f.cgroups_path(&id))
        .into_iter()
        .map(|d| d.join("freezer.state"))
        .find(|p| p.exists());
    if let Some(path) = freezer {
        let text = fs::read_to_string(&path).map_err(|e| e.to_string())?;
        check_eq(&text.trim(), &"FROZEN", "freezer.state")?;
    }
    f.runtime.resume(&id).map_err(|e| e.to_string())?;
    let state = f.runtime.state(&id).map_err(|e| e.to_string())?;
    check_eq(&state.state, &State::Running, "state after resume")?;
    // Stopping a paused container works too (it is thawed first).
    f.runtime.pause(&id).map_err(|e| e.to_string())?;
    let status = f
        .runtime
        .stop(&id, 15, std::time::Duration::from_millis(100))
        .map_err(|e| e.to_string())?;
    check_eq(
        &status.code,
        &137,
        "exit code of a stopped paused container",
    )?;
    f.delete_and_check_clean(&id)
}

fn restart_keeps_filesystem_and_log(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    let script = "echo run >> /runs; wc -l < /runs";
    f.create_logged(&id, &["sh", "-c", script], config())?;
    for _ in 0..2 {
        f.runtime.start(&id).map_err(|e| e.to_string())?;
        let status = f.runtime.wait(&id).map_err(|e| e.to_string())?;
        check_eq(&status.code, &0, "exit code")?;
    }
    let lines: Vec<String> = f
        .log_records(&id)?
        .into_iter()
        .map(|(_, line)| line.trim().to_string())
        .collect();
    check_eq(
        &lines,
        &vec!["1".to_string(), "2".to_string()],
        "log of two runs",
    )?;
    f.delete_and_check_clean(&id)
}

/// The caller's death loses nothing: a new runtime (a new supervisor) finds the
/// container running, its log complete and its exit code.
fn containers_outlive_their_caller(f: &mut Fixture) -> TestResult {
    let first = Runtime::new(Path::new("/proc/self/exe"), &f.state_root);
    let original = std::mem::replace(&mut f.runtime, first);
    let id = f.next_id();
    let script = "echo early; sleep 0.5; echo late; exit 7";
    let created = f
        .create_logged(&id, &["sh", "-c", script], config())
        .and_then(|_| f.runtime.start(&id).map_err(|e| e.to_string()));
    drop(std::mem::replace(&mut f.runtime, original));
    created?;
    let state = f.runtime.state(&id).map_err(|e| e.to_string())?;
    check_eq(&state.state, &State::Running, "state seen by a new runtime")?;
    let status = f.runtime.wait(&id).map_err(|e| e.to_string())?;
    check_eq(&status.code, &7, "exit code collected by the new runtime")?;
    let lines: Vec<String> = f.log_records(&id)?.into_iter().map(|(_, l)| l).collect();
    check_eq(&lines, &vec!["early\n".into(), "late\n".into()], "log")?;
    f.delete_and_check_clean(&id)
}

/// Rust ignores SIGPIPE in its own processes; containers must not inherit that.
fn sigpipe_has_its_default_action(f: &mut Fixture) -> TestResult {
    let run = f.run(&["grep", "^SigIgn:", "/proc/self/status"], config(), true)?;
    check_eq(
        &run.stdout.as_str(),
        &"SigIgn:\t0000000000000000\n",
        "ignored signals",
    )
}

/// The host range container root is mapped to in the user namespace tests.
const REMAP_HOST_ID: u32 = 100_000;

fn userns_config() -> ContainerConfig {
    ContainerConfig {
        user_namespace: Some(UserNamespace::remap_root(
            REMAP_HOST_ID,
            REMAP_HOST_ID,
            DEFAULT_REMAP_SIZE,
        )),
        ..config()
    }
}

/// Lines with their runs of blanks squeezed (uid_map pads its columns).
fn squeezed_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn userns_root_is_remapped(f: &mut Fixture) -> TestResult {
    let script = "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; stat -c %u:%g /etc/passwd /; ls /dev/null";
    let run = f.run(&["sh", "-c", script], userns_config(), true)?;
    check_eq(&run.stderr.as_str(), &"", "stderr")?;
    let map = format!("0 {REMAP_HOST_ID} {DEFAULT_REMAP_SIZE}");
    check_eq(
        &squeezed_lines(&run.stdout),
        &["0", "0", &map, &map, "0:0", "0:0", "/dev/null"]
            .map(String::from)
            .to_vec(),
        "ids, maps and image file owners inside",
    )?;
    check_eq(&run.status.code, &0, "exit code")
}

/// Root inside writes to the image's /etc and to /tmp; the files land in the
/// upper dir as the host range's first id; a host-root-owned bind mount refuses it.
fn userns_root_writes_land_as_host_range(f: &mut Fixture) -> TestResult {
    let host_dir = f.busybox.with_file_name("userns-host-owned");
    fs::create_dir_all(&host_dir).map_err(|e| e.to_string())?;
    let mut cfg = userns_config();
    cfg.mounts = vec![Mount {
        target: "/host".into(),
        read_only: false,
        kind: MountKind::Bind {
            source: host_dir.clone(),
            propagation: Propagation::Rprivate,
            non_recursive: false,
        },
    }];
    cfg.command = Some(
        [
            "sh",
            "-c",
            "echo a > /etc/added && echo b > /tmp/t && echo ok; echo c > /host/f || echo refused",
        ]
        .map(String::from)
        .to_vec(),
    );
    let id = f.next_id();
    let (stdio, out, err) = piped_stdio()?;
    f.create_on(
        &id,
        RootfsSource::Layers(vec![f.busybox.clone()]),
        cfg,
        stdio,
    )?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    let status = f.runtime.wait(&id).map_err(|e| e.to_string())?;
    let upper = f.runtime.container_dir(&id).join("upper");
    let owners: Vec<_> = ["etc/added", "tmp/t"]
        .iter()
        .map(|p| fs::metadata(upper.join(p)).map(|m| (m.uid(), m.gid())))
        .collect();
    f.delete_and_check_clean(&id)?;
    let join = |r: Reader| r.join().map_err(|_| "reader thread panicked".to_string());
    check_eq(
        &join(err)?.as_str(),
        &"sh: can't create /host/f: Permission denied\n",
        "stderr",
    )?;
    check_eq(&join(out)?.as_str(), &"ok\nrefused\n", "stdout")?;
    check_eq(&status.code, &0, "exit code")?;
    for owner in owners {
        let owner = owner.map_err(|e| format!("file missing in the upper dir: {e}"))?;
        check_eq(&owner, &(REMAP_HOST_ID, REMAP_HOST_ID), "owner on the host")?;
    }
    if host_dir.join("f").exists() {
        return Err("container root wrote into a host-root-owned bind mount".into());
    }
    if f.busybox.join("etc/added").exists() {
        return Err("the container's write reached the image dir".into());
    }
    Ok(())
}

fn userns_plain_dir_rootfs_is_idmapped(f: &mut Fixture) -> TestResult {
    let run = f.run(
        &["sh", "-c", "id -u; stat -c %u /etc/hostname-marker"],
        userns_config(),
        false,
    )?;
    check_eq(&run.stdout.as_str(), &"0\n0\n", "uid and file owner inside")?;
    check_eq(&run.status.code, &0, "exit code")
}

/// libcontainer 0.7 would enter the other container's network namespace from
/// inside the new user namespace, which the kernel refuses; the spec refuses first.
fn userns_joined_namespace_is_refused_before_create(f: &mut Fixture) -> TestResult {
    let other = f.next_id();
    let (stdio, _out, _err) = piped_stdio()?;
    let pid = f.create(&other, &["sleep", "30"], config(), true, stdio)?;
    let mut cfg = userns_config();
    cfg.namespaces.network = NamespaceMode::Join(format!("/proc/{pid}/ns/net").into());
    let id = f.next_id();
    let (stdio, _out, _err) = piped_stdio()?;
    let created = f.create(&id, &["true"], cfg, true, stdio);
    f.runtime.delete(&other, true).map_err(|e| e.to_string())?;
    match created {
        Err(err) if err.contains("cannot join the network namespace") => {}
        other => {
            return Err(format!(
                "create joining another container's netns: {other:?}"
            ))
        }
    }
    f.check_clean(&id)?;
    f.check_clean(&other)
}

/// `init: true`: PID 1 is the built-in init, the command runs as its child, an
/// orphan is reaped, and a stop's SIGTERM reaches the command (no grace-period
/// SIGKILL needed, unlike a bare PID 1 without a handler).
fn init_reaps_and_forwards(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    let mut cfg = config();
    cfg.init = true;
    let script = "sh -c 'sleep 0.1 &' ; sleep 0.3; \
        echo pid1=$(cat /proc/1/comm) me=$$ zombies=$(grep -l '^State:.Z' /proc/[0-9]*/status | wc -l); \
        exec sleep 30";
    f.create_logged(&id, &["sh", "-c", script], cfg)?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    eventually(|| {
        let lines: Vec<String> = f.log_records(&id)?.into_iter().map(|(_, l)| l).collect();
        match lines.first() {
            Some(line) if line.starts_with("pid1=") => Ok(()),
            _ => Err(format!("no report yet: {lines:?}")),
        }
    })?;
    let lines: Vec<String> = f.log_records(&id)?.into_iter().map(|(_, l)| l).collect();
    let status = f
        .runtime
        .stop(&id, 15, std::time::Duration::from_secs(20))
        .map_err(|e| e.to_string())?;
    f.delete_and_check_clean(&id)?;
    let report = lines.first().map(String::as_str).unwrap_or_default();
    if !report.starts_with("pid1=rcompose-init") && !report.starts_with("pid1=docker-init") {
        return Err(format!("PID 1 is not the init: {report:?}"));
    }
    if report.contains("me=1 ") {
        return Err(format!("the command runs as PID 1: {report:?}"));
    }
    if !report.ends_with("zombies=0\n") {
        return Err(format!("an orphan was not reaped: {report:?}"));
    }
    check_eq(&status.code, &143, "exit code after a forwarded SIGTERM")
}

/// With `pids_limit: 8`, forks beyond the limit fail inside the container, and
/// the stats read from its cgroups show the limit and the live processes.
fn pids_limit_holds_and_stats_see_it(f: &mut Fixture) -> TestResult {
    let id = f.next_id();
    let mut cfg = config();
    cfg.resources.pids_limit = Some(8);
    f.create_logged(&id, &["sleep", "30"], cfg)?;
    f.runtime.start(&id).map_err(|e| e.to_string())?;
    let (err_r, err_w) = pipe()?;
    let stderr = drain(err_r);
    let session = f
        .runtime
        .exec(
            &id,
            ExecOptions {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    // The sleeps must not hold the stderr pipe open.
                    "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 30 2>/dev/null & done; echo all-forked"
                        .into(),
                ],
                stderr: Some(err_w),
                ..ExecOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
    let code = session.wait().map_err(|e| e.to_string())?;
    let stderr = stderr.join().map_err(|_| "reader thread panicked")?;
    let stats = f.runtime.stats(&id).map_err(|e| e.to_string())?;
    f.runtime.delete(&id, true).map_err(|e| e.to_string())?;
    f.check_clean(&id)?;
    check_eq(&stats.pids_limit, &Some(8), "pids limit in stats")?;
    if code == 0 || !stderr.contains("fork") {
        return Err(format!(
            "forks beyond the limit did not fail: exit {code}, {stderr:?}"
        ));
    }
    if !(2..=8).contains(&stats.pids_current) {
        return Err(format!("processes in the cgroup: {}", stats.pids_current));
    }
    if stats.memory_usage == 0 {
        return Err("stats show no memory use".into());
    }
    Ok(())
}

fn timing_true_median_of_50(f: &mut Fixture) -> TestResult {
    for overlay in [true, false] {
        let mut times = Vec::with_capacity(50);
        for _ in 0..50 {
            let started = Instant::now();
            let run = f.run(&["/bin/true"], config(), overlay)?;
            times.push(started.elapsed());
            check_eq(&run.status.code, &0, "exit code of /bin/true")?;
        }
        times.sort();
        let pick = |i: usize| times.get(i).copied().unwrap_or_default();
        println!(
            "timing: create+start+wait+delete of /bin/true ({}), 50 runs: min {:?}, median {:?}, max {:?}",
            if overlay { "overlay rootfs" } else { "plain dir rootfs" },
            pick(0),
            pick(25),
            pick(49)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Helpers

fn config() -> ContainerConfig {
    ContainerConfig {
        hostname: Some("ctr".into()),
        ..ContainerConfig::default()
    }
}

fn check_eq<T: PartialEq + std::fmt::Debug>(got: &T, want: &T, what: &str) -> TestResult {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

type Reader = JoinHandle<String>;

/// The container's streams; `None` is /dev/null.
#[derive(Default)]
struct TestStdio {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// stdout and stderr pipes, with threads draining the read ends.
fn piped_stdio() -> Result<(TestStdio, Reader, Reader), String> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdio = TestStdio {
        stdin: None,
        stdout: Some(out_w),
        stderr: Some(err_w),
    };
    Ok((stdio, drain(out_r), drain(err_r)))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

fn drain(fd: OwnedFd) -> Reader {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = fs::File::from(fd).read_to_string(&mut text);
        text
    })
}

/// Retries `check` for up to 5 s (for what another process does asynchronously).
fn eventually(mut check: impl FnMut() -> TestResult) -> TestResult {
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(err) if Instant::now() >= deadline => return Err(err),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

impl Fixture {
    /// Creates a container whose output goes to its json-file log.
    fn create_logged(
        &mut self,
        id: &str,
        command: &[&str],
        mut cfg: ContainerConfig,
    ) -> Result<i32, String> {
        cfg.command = Some(command.iter().map(|s| s.to_string()).collect());
        let cgroups_path = self.cgroups_path(id);
        let image = ImageConfiguration::default();
        self.runtime
            .create(CreateOptions {
                id,
                rootfs: RootfsSource::Layers(vec![self.busybox.clone()]),
                image: &image,
                config: &cfg,
                image_name: "busybox",
                cgroups_path: &cgroups_path,
                stdin: None,
                output: ContainerOutput::Log(LogOptions::default()),
            })
            .map_err(|e| e.to_string())
    }

    /// The container's log as (stream, line) pairs.
    fn log_records(&self, id: &str) -> Result<Vec<(Stream, String)>, String> {
        let reader = LogReader::open(self.runtime.log_path(id), &ReadOptions::default())
            .map_err(|e| e.to_string())?;
        reader
            .map(|record| {
                record
                    .map(|r| (r.stream, String::from_utf8_lossy(&r.line).into_owned()))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("t{}-{}", std::process::id(), self.counter)
    }

    fn cgroups_path(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }

    fn create(
        &mut self,
        id: &str,
        command: &[&str],
        mut cfg: ContainerConfig,
        overlay: bool,
        stdio: TestStdio,
    ) -> Result<i32, String> {
        cfg.command = Some(command.iter().map(|s| s.to_string()).collect());
        let rootfs = if overlay {
            RootfsSource::Layers(vec![self.busybox.clone()])
        } else {
            RootfsSource::Dir(self.busybox.clone())
        };
        self.create_on(id, rootfs, cfg, stdio)
    }

    fn create_on(
        &mut self,
        id: &str,
        rootfs: RootfsSource,
        cfg: ContainerConfig,
        stdio: TestStdio,
    ) -> Result<i32, String> {
        let cgroups_path = self.cgroups_path(id);
        let image = ImageConfiguration::default();
        self.runtime
            .create(CreateOptions {
                id,
                rootfs,
                image: &image,
                config: &cfg,
                image_name: "busybox",
                cgroups_path: &cgroups_path,
                stdin: stdio.stdin,
                output: ContainerOutput::Direct {
                    stdout: stdio.stdout,
                    stderr: stdio.stderr,
                },
            })
            .map_err(|e| e.to_string())
    }

    /// create, start, wait, delete; checks that nothing is left behind.
    fn run(
        &mut self,
        command: &[&str],
        cfg: ContainerConfig,
        overlay: bool,
    ) -> Result<Run, String> {
        let id = self.next_id();
        let (stdio, out, err) = piped_stdio()?;
        self.create(&id, command, cfg, overlay, stdio)?;
        self.runtime.start(&id).map_err(|e| e.to_string())?;
        let status = self.runtime.wait(&id).map_err(|e| e.to_string())?;
        self.delete_and_check_clean(&id)?;
        let join = |r: Reader| r.join().map_err(|_| "reader thread panicked".to_string());
        Ok(Run {
            status,
            stdout: join(out)?,
            stderr: join(err)?,
        })
    }

    fn delete_and_check_clean(&mut self, id: &str) -> TestResult {
        self.runtime.delete(id, false).map_err(|e| e.to_string())?;
        self.check_clean(id)
    }

    /// No mount under the container's dir, no dir, no libcontainer state, no cgroup.
    fn check_clean(&self, id: &str) -> TestResult {
        let container_dir = self.runtime.container_dir(id);
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        if let Some(point) =
            mount_points(&mountinfo).find(|p| Path::new(p).starts_with(&container_dir))
        {
            return Err(format!("still mounted after delete: {point}"));
        }
        for leftover in [container_dir, self.state_root.join("run").join(id)] {
            if leftover.exists() {
                return Err(format!("left behind after delete: {}", leftover.display()));
            }
        }
        let cgroups = cgroup_dirs(&self.cgroups_path(id));
        if let Some(dir) = cgroups.iter().find(|d| d.exists()) {
            return Err(format!(
                "cgroup left behind after delete: {}",
                dir.display()
            ));
        }
        Ok(())
    }
}

/// `path` in every cgroup hierarchy (v1 controllers and the v2 root).
fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let relative = path.trim_start_matches('/');
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(relative)];
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(entries.flatten().map(|e| e.path().join(relative)));
    }
    dirs
}

fn remove_cgroup_parent(parent: &str) {
    for dir in cgroup_dirs(parent) {
        let _ = fs::remove_dir(dir);
    }
}

/// Unpacks Debian's `busybox-static` into `work/busybox` with an applet symlink
/// for each command, and a few files the tests look at.
fn busybox_rootfs(work: &Path) -> Result<PathBuf, String> {
    let download = work.join("deb");
    fs::create_dir_all(&download).map_err(|e| e.to_string())?;
    run_host(
        Command::new("apt-get")
            .args(["download", "-q", "busybox-static"])
            .current_dir(&download),
    )?;
    let deb = fs::read_dir(&download)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or("apt-get download left no .deb")?;
    let unpacked = work.join("unpacked");
    run_host(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    let busybox = unpacked.join("bin/busybox");
    let root = work.join("busybox");
    for dir in ["bin", "dev", "etc", "proc", "sys", "tmp", "root"] {
        fs::create_dir_all(root.join(dir)).map_err(|e| e.to_string())?;
    }
    fs::copy(&busybox, root.join("bin/busybox")).map_err(|e| e.to_string())?;
    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(|e| format!("busybox --list: {e}"))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hostname-marker", "busybox\n"),
    ];
    for (path, text) in files {
        fs::write(root.join(path), text).map_err(|e| e.to_string())?;
    }
    Ok(root)
}

fn run_host(command: &mut Command) -> TestResult {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
