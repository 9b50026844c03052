//! `rcompose rm`, `kill`, `pause`, `unpause`, `top`, `images` and `ls` end to end on the
//! native engine (needs root, cgroups, overlayfs, nftables), running the real binary.
//!
//! As tests/up_down.rs: busybox is imported first (that needs the host's network), then
//! the whole process moves into a throwaway network namespace before any thread exists,
//! so every `rcompose` started from here inherits it. Its own `main` (`harness = false`).

mod kernel_support;
use kernel_support::{check_eq, states_of, Suite, TestFn};

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcompose::backend::native::NativeEngine;
use rcompose::orchestrator::labels::{ContainerLabels, ProjectLabels};
use rcompose::orchestrator::plan::ContainerState;
use rcompose::project::discover::{ConfigSource, Environment, ProjectInputs};
use rcompose::project::loader::{load, LoadSettings};
use rcompose_runtime::container::helper;

const PROJECT: &str = "cmds";

/// `web` restarts always (a kill must not bring it back) and has an anonymous volume
/// (`rm -v` takes it along). Both shells (PID 1, which only gets the signals it
/// handles) end on their stop signal at once; `db` exits 3 on SIGHUP.
const COMPOSE: &str = r#"
services:
  web:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]
    restart: always
    volumes: ["/data"]
    depends_on: [db]
  db:
    image: busybox
    command: ["sh", "-c", "trap 'exit 3' HUP; trap 'exit 0' USR1; sleep 301 & wait"]
    stop_signal: SIGUSR1
"#;

fn main() {
    helper::maybe_run();
    let Some(suite) = Suite::enter("commands") else {
        return;
    };
    let tests: &[(&str, TestFn)] = &[
        ("ls_lists_projects_with_their_states_and_files", ls),
        ("top_shows_each_containers_processes", top),
        ("images_lists_the_containers_images", images),
        ("pause_and_unpause_freeze_and_stop_still_works", pause),
        ("kill_sends_the_signal_and_is_a_stop_by_the_user", kill),
        ("rm_removes_stopped_containers_after_asking", rm),
    ];
    let mut all_passed = true;
    for (name, test) in tests {
        all_passed &= suite.run(name, |root, dir| {
            fs::write(dir.join("compose.yaml"), COMPOSE).map_err(|e| e.to_string())?;
            run_with_project(root, dir, *test)
        });
    }
    suite.finish(all_passed);
}

/// `up -d`, the test, then `down -v` whatever happened, and nothing may be left.
fn run_with_project(root: &Path, dir: &Path, test: TestFn) -> Result<(), String> {
    ok(root, dir, &["up", "-d"])?;
    let result = test(root, dir);
    let down = ok(root, dir, &["down", "-v", "-t", "1"]);
    result?;
    down?;
    check_eq(&states(root)?, &Vec::new(), "containers left after down")
}

/// `rcompose --root ROOT -p cmds --progress plain ARGS...` in `dir`, stdin empty.
fn rcompose(root: &Path, dir: &Path, args: &[&str]) -> Result<Output, String> {
    rcompose_with_input(root, dir, args, "")
}

fn rcompose_with_input(
    root: &Path,
    dir: &Path,
    args: &[&str],
    input: &str,
) -> Result<Output, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rcompose"))
        .arg("--root")
        .arg(root)
        .args(["-p", PROJECT, "--progress", "plain"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running rcompose {args:?}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("rcompose {args:?}: writing its input: {e}"))?;
    }
    child
        .wait_with_output()
        .map_err(|e| format!("rcompose {args:?}: {e}"))
}

/// Runs and insists on success; (stdout, stderr).
fn ok(root: &Path, dir: &Path, args: &[&str]) -> Result<(String, String), String> {
    let output = rcompose(root, dir, args)?;
    let (stdout, stderr) = texts(&output);
    if output.status.success() {
        Ok((stdout, stderr))
    } else {
        Err(format!(
            "rcompose {args:?}: {}: {stdout}{stderr}",
            output.status
        ))
    }
}

/// Runs and insists on exit code 1 with `message` in stderr.
fn fails(root: &Path, dir: &Path, args: &[&str], message: &str) -> Result<(), String> {
    let output = rcompose(root, dir, args)?;
    let (_, stderr) = texts(&output);
    if output.status.code() != Some(1) || !stderr.contains(message) {
        return Err(format!(
            "rcompose {args:?}: want exit 1 with {message:?}, got {}: {stderr}",
            output.status
        ));
    }
    Ok(())
}

fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn has_line(text: &str, line: &str) -> Result<(), String> {
    if text.lines().any(|l| l == line) {
        Ok(())
    } else {
        Err(format!("no line {line:?} in:\n{text}"))
    }
}

/// The words of each line, for tables whose column widths vary.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn states(root: &Path) -> Result<Vec<(String, ContainerState)>, String> {
    states_of(root, PROJECT)
}

fn state_of(root: &Path, name: &str) -> Result<Option<ContainerState>, String> {
    Ok(states(root)?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s))
}

fn engine(root: &Path) -> Result<NativeEngine, String> {
    NativeEngine::open(root, Path::new("/proc/self/exe")).map_err(|e| e.to_string())
}

/// Waits up to 10 s for `name` to be in `state`.
fn wait_for_state(root: &Path, name: &str, state: ContainerState) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = state_of(root, name)?;
        if now == Some(state) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{name} is {now:?}, not {state:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn compose_file(dir: &Path) -> Result<PathBuf, String> {
    fs::canonicalize(dir.join("compose.yaml")).map_err(|e| e.to_string())
}

fn ls(root: &Path, dir: &Path) -> Result<(), String> {
    let file = compose_file(dir)?.display().to_string();
    let (out, _) = ok(root, dir, &["ls"])?;
    check_eq(
        &rows(&out),
        &vec![
            vec![
                "NAME".into(),
                "STATUS".into(),
                "CONFIG".into(),
                "FILES".into(),
            ],
            vec![PROJECT.into(), "running(2)".into(), file.clone()],
        ],
        "ls",
    )?;
    check_eq(
        &ok(root, dir, &["ls", "-q"])?.0,
        &format!("{PROJECT}\n"),
        "ls -q",
    )?;
    let (json, _) = ok(
        root,
        dir,
        &["ls", "--format", "json", "--filter", "name=md"],
    )?;
    let parsed: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    check_eq(
        &parsed,
        &serde_json::json!([{"Name": PROJECT, "Status": "running(2)", "ConfigFiles": file}]),
        "ls --format json",
    )?;
    check_eq(
        &ok(root, dir, &["ls", "--filter", "name=nothing-like-it"])?.0,
        &"NAME   STATUS   CONFIG FILES\n".to_string(),
        "ls --filter name= matching nothing",
    )?;
    fails(
        root,
        dir,
        &["ls", "--filter", "status=running"],
        "invalid filter 'status'",
    )?;
    fails(
        root,
        dir,
        &["ls", "--filter", "name"],
        "expected name=value",
    )?;
    // Stopped projects only with -a, with every state counted.
    ok(root, dir, &["stop", "-t", "1", "db", "web"])?;
    check_eq(
        &ok(root, dir, &["ls", "-q"])?.0,
        &String::new(),
        "ls -q of a stopped project",
    )?;
    let (all, _) = ok(root, dir, &["ls", "-a"])?;
    check_eq(
        &rows(&all)[1],
        &vec![PROJECT.into(), "exited(2)".into(), file],
        "ls -a",
    )
}

fn top(root: &Path, dir: &Path) -> Result<(), String> {
    let (out, _) = ok(root, dir, &["top"])?;
    let lines = rows(&out);
    let titles: Vec<String> = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        .map(String::from)
        .to_vec();
    // Containers by name, each: its name, the titles, its two processes, a blank line.
    check_eq(&lines.len(), &10, &format!("top lines in:\n{out}"))?;
    check_eq(&lines[0], &vec!["cmds-db-1".to_string()], "first container")?;
    check_eq(&lines[1], &titles, "titles")?;
    check_eq(
        &lines[5],
        &vec!["cmds-web-1".to_string()],
        "second container",
    )?;
    check_eq(&lines[6], &titles, "titles")?;
    let (shell, sleep) = (&lines[7], &lines[8]);
    for process in [shell, sleep] {
        check_eq(&process[0], &"root".to_string(), "UID")?;
        check_eq(&process[5], &"?".to_string(), "TTY")?;
        if process[6].len() != 8 || process[6].matches(':').count() != 2 {
            return Err(format!("TIME of {process:?}"));
        }
    }
    check_eq(
        &shell[7..9].to_vec(),
        &vec!["sh".to_string(), "-c".into()],
        "CMD",
    )?;
    check_eq(
        &sleep[7..].to_vec(),
        &vec!["sleep".to_string(), "300".into()],
        "CMD",
    )?;
    check_eq(&sleep[2], &shell[1], "the sleep's PPID is the shell's PID")?;
    let pid: i32 = sleep[1].parse().map_err(|_| format!("PID in {sleep:?}"))?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).map_err(|e| e.to_string())?;
    check_eq(&comm.trim(), &"sleep", "PIDs are the host's")?;
    let (only_db, _) = ok(root, dir, &["top", "db"])?;
    check_eq(&rows(&only_db)[0], &vec!["cmds-db-1".to_string()], "top db")?;
    check_eq(&rows(&only_db).len(), &5, "top db lines")?;
    fails(root, dir, &["top", "nosuch"], "no such service: nosuch")?;
    // Stopped containers have no processes to show.
    ok(root, dir, &["stop", "-t", "1"])?;
    check_eq(
        &ok(root, dir, &["top"])?.0,
        &String::new(),
        "top of a stopped project",
    )
}

fn images(root: &Path, dir: &Path) -> Result<(), String> {
    let (out, _) = ok(root, dir, &["images"])?;
    let lines = rows(&out);
    check_eq(
        &lines[0],
        &[
            "CONTAINER",
            "REPOSITORY",
            "TAG",
            "PLATFORM",
            "IMAGE",
            "ID",
            "SIZE",
            "CREATED",
        ]
        .map(String::from)
        .to_vec(),
        "images header",
    )?;
    check_eq(&lines.len(), &3, &format!("images rows in:\n{out}"))?;
    let db = &lines[1];
    check_eq(
        &db[..3].to_vec(),
        &vec!["cmds-db-1".to_string(), "busybox".into(), "latest".into()],
        "db row",
    )?;
    check_eq(&db[4].len(), &12, "short image ID")?;
    if !db[5].ends_with("MB") && !db[5].ends_with("kB") {
        return Err(format!("size {:?} is not human-readable", db[5]));
    }
    let (ids, _) = ok(root, dir, &["images", "-q"])?;
    check_eq(
        &ids.lines().count(),
        &1,
        "images -q lists the shared image once",
    )?;
    check_eq(&ids.trim().len(), &64, "images -q prints full IDs")?;
    if !ids.starts_with(&db[4]) {
        return Err(format!("images -q {ids:?} is not the table's {:?}", db[4]));
    }
    let (json, _) = ok(root, dir, &["images", "--format", "json", "web"])?;
    let parsed: serde_json::Value = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    check_eq(
        &parsed[0]["ContainerName"],
        &serde_json::json!("cmds-web-1"),
        "json container",
    )?;
    check_eq(
        &parsed[0]["Repository"],
        &serde_json::json!("busybox"),
        "json repository",
    )?;
    check_eq(
        &parsed[0]["ID"],
        &serde_json::json!(format!("sha256:{}", ids.trim())),
        "json ID",
    )?;
    check_eq(&parsed.as_array().map(Vec::len), &Some(1), "images web")?;
    fails(root, dir, &["images", "nosuch"], "no such service: nosuch")
}

fn pause(root: &Path, dir: &Path) -> Result<(), String> {
    let (_, progress) = ok(root, dir, &["pause", "web"])?;
    has_line(&progress, " Container cmds-web-1  Paused")?;
    check_eq(
        &state_of(root, "cmds-web-1")?,
        &Some(ContainerState::Paused),
        "web",
    )?;
    check_eq(
        &state_of(root, "cmds-db-1")?,
        &Some(ContainerState::Running),
        "db",
    )?;
    let (ps, _) = ok(root, dir, &["ps", "--format", "json", "web"])?;
    let web: serde_json::Value = serde_json::from_str(ps.trim()).map_err(|e| e.to_string())?;
    check_eq(&web["State"], &serde_json::json!("paused"), "ps State")?;
    let status = web["Status"].as_str().unwrap_or_default().to_owned();
    if !status.ends_with("(Paused)") {
        return Err(format!("ps Status {status:?}"));
    }
    // A frozen container still has its processes.
    check_eq(
        &rows(&ok(root, dir, &["top", "web"])?.0).len(),
        &5,
        "top of a paused container",
    )?;
    fails(
        root,
        dir,
        &["pause", "web"],
        "container cmds-web-1 is already paused",
    )?;
    fails(
        root,
        dir,
        &["unpause", "db"],
        "container cmds-db-1 is not paused",
    )?;
    fails(root, dir, &["pause", "nosuch"], "no such service: nosuch")?;
    // As Docker's, unpausing a container that is not paused is refused; the others
    // are unpaused all the same.
    let output = rcompose(root, dir, &["unpause"])?;
    let (_, progress) = texts(&output);
    check_eq(
        &output.status.code(),
        &Some(1),
        "unpause with db not paused",
    )?;
    has_line(&progress, " Container cmds-web-1  Unpaused")?;
    has_line(&progress, "  - container cmds-db-1 is not paused")?;
    check_eq(
        &state_of(root, "cmds-web-1")?,
        &Some(ContainerState::Running),
        "unpaused web",
    )?;
    ok(root, dir, &["pause", "web"])?;
    has_line(
        &ok(root, dir, &["unpause", "web"])?.1,
        " Container cmds-web-1  Unpaused",
    )?;
    // Paused containers stop, promptly (thawed, then their stop signal).
    ok(root, dir, &["pause"])?;
    let started = Instant::now();
    let (_, progress) = ok(root, dir, &["stop", "-t", "5"])?;
    has_line(&progress, " Container cmds-web-1  Stopped")?;
    has_line(&progress, " Container cmds-db-1  Stopped")?;
    if started.elapsed() > Duration::from_secs(4) {
        return Err(format!(
            "stop of a paused project took {:?}",
            started.elapsed()
        ));
    }
    for name in ["cmds-db-1", "cmds-web-1"] {
        if !matches!(state_of(root, name)?, Some(ContainerState::Exited { .. })) {
            return Err(format!("{name} is not exited after stop"));
        }
    }
    // Nothing running: nothing to do.
    check_eq(
        &ok(root, dir, &["pause"])?.1,
        &String::new(),
        "pause with nothing running",
    )?;
    // And a paused project goes down (run_with_project's `down`).
    ok(root, dir, &["start"])?;
    ok(root, dir, &["pause", "db"]).map(drop)
}

fn kill(root: &Path, dir: &Path) -> Result<(), String> {
    fails(
        root,
        dir,
        &["kill", "-s", "SIGNOPE"],
        "invalid signal \"SIGNOPE\"",
    )?;
    fails(root, dir, &["kill", "nosuch"], "no such service: nosuch")?;
    // A signal by name, without waiting. To a paused container, a signal that is not
    // its stop signal waits, pending, until it is unpaused (as Docker has it).
    ok(root, dir, &["pause", "db"])?;
    let (_, progress) = ok(root, dir, &["kill", "-s", "HUP", "db"])?;
    has_line(&progress, " Container cmds-db-1  Killed")?;
    std::thread::sleep(Duration::from_millis(500));
    check_eq(
        &state_of(root, "cmds-db-1")?,
        &Some(ContainerState::Paused),
        "db killed paused",
    )?;
    ok(root, dir, &["unpause", "db"])?;
    wait_for_state(root, "cmds-db-1", ContainerState::Exited { exit_code: 3 })?;
    check_eq(
        &state_of(root, "cmds-web-1")?,
        &Some(ContainerState::Running),
        "web",
    )?;
    // SIGKILL by default, even to a paused container, which it waits for; `restart:
    // always` does not bring it back (a kill is a stop by the user, as Docker has it).
    ok(root, dir, &["pause", "web"])?;
    let (_, progress) = ok(root, dir, &["kill"])?;
    has_line(&progress, " Container cmds-web-1  Killing")?;
    has_line(&progress, " Container cmds-web-1  Killed")?;
    check_eq(
        &state_of(root, "cmds-web-1")?,
        &Some(ContainerState::Exited { exit_code: 137 }),
        "web after kill",
    )?;
    std::thread::sleep(Duration::from_secs(2));
    check_eq(
        &state_of(root, "cmds-web-1")?,
        &Some(ContainerState::Exited { exit_code: 137 }),
        "web 2 s after kill (restart: always)",
    )?;
    let (_, nothing) = ok(root, dir, &["kill"])?;
    has_line(&nothing, "No container to kill")?;
    // `start` makes restart policies apply again.
    ok(root, dir, &["start"])?;
    wait_for_state(root, "cmds-web-1", ContainerState::Running)?;
    ok(root, dir, &["kill", "-s", "9", "web"])?;
    check_eq(
        &state_of(root, "cmds-web-1")?,
        &Some(ContainerState::Exited { exit_code: 137 }),
        "web after kill -s 9",
    )
}

fn rm(root: &Path, dir: &Path) -> Result<(), String> {
    // Its creator stays until it is removed: a container never started goes with it.
    let (creator, oneoff) = create_oneoff(root, dir)?;
    fails(root, dir, &["rm", "nosuch"], "no such service: nosuch")?;
    // Only stopped containers are removed: here the one-off one, never started.
    let (out, err) = ok(root, dir, &["rm", "-f"])?;
    check_eq(
        &out,
        &format!("Going to remove {oneoff}\n"),
        &format!("rm -f ({err})"),
    )?;
    check_eq(&state_of(root, &oneoff)?, &None, "the one-off container")?;
    drop(creator);
    let (_, nothing) = ok(root, dir, &["rm", "-f"])?;
    has_line(&nothing, "No stopped containers")?;
    ok(root, dir, &["stop", "-t", "1"])?;
    // Without -f it asks; anything but y/yes keeps them.
    let output = rcompose_with_input(root, dir, &["rm"], "n\n")?;
    let (_, asked) = texts(&output);
    if !output.status.success()
        || !asked.contains("Going to remove cmds-db-1, cmds-web-1\nAre you sure? [yN] ")
    {
        return Err(format!("rm answered n: {}: {asked}", output.status));
    }
    check_eq(
        &states(root)?.len(),
        &2,
        "containers kept after answering n",
    )?;
    let anonymous_before = anonymous_volumes(root)?;
    check_eq(&anonymous_before.len(), &1, "web's anonymous volume")?;
    let output = rcompose_with_input(root, dir, &["rm", "web"], "y\n")?;
    let (_, removed) = texts(&output);
    has_line(&removed, " Container cmds-web-1  Removed")?;
    check_eq(&state_of(root, "cmds-web-1")?, &None, "web after rm")?;
    check_eq(
        &anonymous_volumes(root)?,
        &anonymous_before,
        "rm without -v keeps the volume",
    )?;
    // -s stops first; -v takes the anonymous volumes along.
    for volume in &anonymous_before {
        ok(root, dir, &["volume", "rm", volume])?;
    }
    ok(root, dir, &["up", "-d"])?;
    check_eq(
        &anonymous_volumes(root)?.len(),
        &1,
        "web's new anonymous volume",
    )?;
    let (out, progress) = ok(root, dir, &["rm", "-s", "-f", "-v"])?;
    has_line(&progress, " Container cmds-web-1  Stopped")?;
    has_line(&progress, " Container cmds-db-1  Removed")?;
    check_eq(
        &out,
        &"Going to remove cmds-db-1, cmds-web-1\n".to_string(),
        "rm -s -f -v",
    )?;
    check_eq(&states(root)?, &Vec::new(), "containers after rm -s")?;
    check_eq(
        &anonymous_volumes(root)?,
        &Vec::new(),
        "rm -v removes the anonymous volume",
    )
}

/// A one-off container of `db` (as `rcompose run` makes them), created, not started;
/// with the engine that created it.
fn create_oneoff(root: &Path, dir: &Path) -> Result<(NativeEngine, String), String> {
    let inputs = ProjectInputs {
        files: vec![ConfigSource::Inline {
            name: "compose.yaml".into(),
            content: COMPOSE.into(),
        }],
        project_directory: dir.to_path_buf(),
        explicit_name: Some(PROJECT.into()),
        profiles: Vec::new(),
        environment: Environment::new(),
        shell_environment: Environment::new(),
        env_files: Vec::new(),
    };
    let project = load(&inputs, &LoadSettings::default())
        .map_err(|e| e.to_string())?
        .project;
    let project_labels = ProjectLabels {
        name: PROJECT.into(),
        working_dir: dir.display().to_string(),
        ..ProjectLabels::default()
    };
    let labels = ContainerLabels::oneoff(
        &project_labels,
        "db",
        &project.services["db"],
        "h",
        "0123456789ab",
    )
    .build();
    let creator = engine(root)?;
    let created = creator
        .create_container(&project, "db", 99, &labels)
        .map_err(|e| e.to_string())?;
    Ok((creator, created.id))
}

/// The anonymous volumes under the state root (named by a 64-hex-digit ID).
fn anonymous_volumes(root: &Path) -> Result<Vec<String>, String> {
    let (out, _) = ok(root, root, &["volume", "ls", "-q"])?;
    Ok(out
        .lines()
        .filter(|name| name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_owned)
        .collect())
}
