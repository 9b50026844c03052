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

use oci_spec::image::ImageConfiguration;
use std::os::unix::fs::MetadataExt;

use rcompose_runtime::container::config::{
    ContainerConfig, Mount, MountKind, NamespaceMode, Propagation, Resources, UserNamespace,
    DEFAULT_REMAP_SIZE,
};
use rcompose_runtime::container::helper::{self, ExitStatus, State};
use rcompose_runtime::container::lifecycle::{ContainerStdio, CreateOptions, Runtime};
use rcompose_runtime::container::rootfs::{mount_points, RootfsSource};

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
    let runtime = Runtime::new(Path::new("/proc/self/exe"), &state_root)
        .unwrap_or_else(|err| panic!("starting the helper: {err}"));
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
        Err(err) if err.to_string().contains("still running") => {}
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

/// A caller that exits between create and start leaves nothing behind: its helper removes
/// the container, which would otherwise wait for its start forever.
fn unstarted_containers_go_with_their_caller(f: &mut Fixture) -> TestResult {
    let short_lived = Runtime::new(Path::new("/proc/self/exe"), &f.state_root)
        .map_err(|e| format!("starting a second helper: {e}"))?;
    let original = std::mem::replace(&mut f.runtime, short_lived);
    let id = f.next_id();
    let (stdio, _out, _err) = piped_stdio()?;
    let created = f.create(&id, &["true"], config(), true, stdio);
    // Dropping the runtime closes the helper's socket and waits for the helper to exit.
    drop(std::mem::replace(&mut f.runtime, original));
    created?;
    f.check_clean(&id)
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

/// stdout and stderr pipes, with threads draining the read ends.
fn piped_stdio() -> Result<(ContainerStdio, Reader, Reader), String> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdio = ContainerStdio {
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

impl Fixture {
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
        stdio: ContainerStdio,
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
        stdio: ContainerStdio,
    ) -> Result<i32, String> {
        let cgroups_path = self.cgroups_path(id);
        let image = ImageConfiguration::default();
        self.runtime
            .create(CreateOptions {
                id,
                rootfs,
                image: &image,
                config: &cfg,
                cgroups_path: &cgroups_path,
                stdio,
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
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
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
