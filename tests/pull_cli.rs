//! `pull_policy`, `up --pull`, `rcompose pull` and `rcompose push` end to end: the real
//! binary against Debian's docker-registry on 127.0.0.1, used as Docker Hub's mirror
//! through `RCOMPOSE_REGISTRY_MIRRORS` (there is no internet here).
//!
//! A busybox image is built and pushed as `docker.io/library/bbtest:1` (the mirror's
//! `library/bbtest:1`), then removed locally, so `image: bbtest:1` must be pulled.
//! Containers run as root inside a throwaway network namespace entered before any
//! thread exists; its own `main` (`harness = false`).

mod common;
mod kernel_support;
#[path = "../runtime/tests/support/local_registry.rs"]
mod local_registry;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::RootfsTar;
use kernel_support::{
    check_eq, enter_throwaway_netns, is_root, nothing_mounted_under, release_netns_dir,
};
use local_registry::{install_tools, start_registry, LocalRegistry, BUSYBOX};
use rcompose::backend::native::NativeEngine;
use rcompose_runtime::container::helper;

const PROJECT: &str = "pullcli";
const IMAGE: &str = "bbtest:1";

/// What every test gets: the state root, its own directory, the registry.
struct Env<'a> {
    root: PathBuf,
    dir: PathBuf,
    registry: &'a LocalRegistry,
}

type TestFn = fn(&Env<'_>) -> Result<(), String>;

fn main() {
    helper::maybe_run();
    if !is_root() {
        println!("pull_cli: skipped, needs root");
        return;
    }
    // apt-get needs the host's network: before the namespace.
    install_tools();
    if let Err(err) = enter_throwaway_netns() {
        println!("pull_cli: skipped, cannot create a network namespace: {err}");
        return;
    }
    let registry = start_registry(None);
    let work = tempfile::Builder::new()
        .prefix("rcompose-pull-test")
        .tempdir()
        .unwrap_or_else(|err| panic!("creating a temp dir: {err}"));
    let root = work.path().join("root");
    if let Err(err) = publish_busybox(work.path(), &root, &registry) {
        println!("test publish_busybox ... FAILED: {err}");
        std::process::exit(1);
    }
    let tests: [(&str, TestFn); 6] = [
        ("up_pulls_a_missing_image_then_uses_it", up_pulls_missing),
        (
            "pull_policy_never_without_the_image_creates_nothing",
            never_creates_nothing,
        ),
        ("pull_policy_always_pulls_on_every_up", always_pulls_again),
        (
            "a_failed_pull_fails_up_before_anything_is_created",
            failed_pull_fails_up,
        ),
        (
            "pull_ignore_pull_failures_pulls_the_rest",
            pull_command_failures,
        ),
        (
            "push_then_pull_round_trips_a_service_image",
            push_round_trip,
        ),
    ];
    let mut failed = false;
    for (name, test) in tests {
        let dir = work.path().join(name);
        let env = Env {
            root: root.clone(),
            dir: dir.clone(),
            registry: &registry,
        };
        let result = fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| test(&env));
        // Whatever happened, the project goes down before the next test.
        let _ = rcompose(&env, &["down", "-v", "-t", "1"]);
        match result {
            Ok(()) => println!("test {name} ... ok"),
            Err(err) => {
                println!("test {name} ... FAILED: {err}");
                failed = true;
            }
        }
    }
    drop(registry);
    let cleanup = release_netns_dir(&root).and_then(|()| nothing_mounted_under(work.path()));
    drop(work);
    if let Err(err) = cleanup {
        println!("test cleanup ... FAILED: {err}");
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
}

/// `rcompose --root ROOT -p pullcli --progress plain ARGS...` in the test's directory,
/// with the registry as Docker Hub's mirror.
fn rcompose(env: &Env<'_>, args: &[&str]) -> Result<Output, String> {
    run_rcompose(&env.root, &env.dir, env.registry, args)
}

fn run_rcompose(
    root: &Path,
    dir: &Path,
    registry: &LocalRegistry,
    args: &[&str],
) -> Result<Output, String> {
    Command::new(env!("CARGO_BIN_EXE_rcompose"))
        .arg("--root")
        .arg(root)
        .args(["-p", PROJECT, "--progress", "plain"])
        .args(args)
        .current_dir(dir)
        .env(
            "RCOMPOSE_REGISTRY_MIRRORS",
            format!("http://{}", registry.host()),
        )
        .output()
        .map_err(|e| format!("running rcompose {args:?}: {e}"))
}

/// Runs and insists on success; returns stderr (the progress lines).
fn ok(env: &Env<'_>, args: &[&str]) -> Result<String, String> {
    let output = rcompose(env, args)?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stderr)
    } else {
        Err(format!("rcompose {args:?}: {}: {stderr}", output.status))
    }
}

/// Runs and insists on exit code 1; returns stderr.
fn fails(env: &Env<'_>, args: &[&str]) -> Result<String, String> {
    let output = rcompose(env, args)?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    match output.status.code() {
        Some(1) if !stderr.contains("panicked") => Ok(stderr),
        _ => Err(format!(
            "rcompose {args:?}: {}, expected exit 1: {stderr}",
            output.status
        )),
    }
}

fn write_compose(env: &Env<'_>, yaml: &str) -> Result<(), String> {
    fs::write(env.dir.join("compose.yaml"), yaml).map_err(|e| e.to_string())
}

fn has_line(text: &str, line: &str) -> Result<(), String> {
    if text.lines().any(|l| l == line) {
        Ok(())
    } else {
        Err(format!("no line {line:?} in:\n{text}"))
    }
}

fn lacks(text: &str, part: &str) -> Result<(), String> {
    if text.contains(part) {
        Err(format!("unexpected {part:?} in:\n{text}"))
    } else {
        Ok(())
    }
}

fn contains(text: &str, part: &str) -> Result<(), String> {
    if text.contains(part) {
        Ok(())
    } else {
        Err(format!("no {part:?} in:\n{text}"))
    }
}

fn line_index(text: &str, line: &str) -> Result<usize, String> {
    text.lines()
        .position(|l| l == line)
        .ok_or_else(|| format!("no line {line:?} in:\n{text}"))
}

/// The project's containers as `name state`.
fn containers(root: &Path) -> Result<Vec<String>, String> {
    let engine =
        NativeEngine::open(root, Path::new("/proc/self/exe")).map_err(|e| e.to_string())?;
    let mut found: Vec<String> = engine
        .list(PROJECT)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|c| format!("{} {}", c.name, c.state.as_str()))
        .collect();
    found.sort();
    Ok(found)
}

fn image_present(env: &Env<'_>, image: &str) -> Result<bool, String> {
    Ok(rcompose(env, &["image", "inspect", image])?
        .status
        .success())
}

fn remove_image(env: &Env<'_>, image: &str) -> Result<(), String> {
    if image_present(env, image)? {
        ok(env, &["image", "rm", image]).map(|_| ())
    } else {
        Ok(())
    }
}

/// Imports a static busybox as `<registry>/library/bbtest:1`, pushes it (the mirror's
/// name for `docker.io/library/bbtest:1`) and removes it locally.
fn publish_busybox(work: &Path, root: &Path, registry: &LocalRegistry) -> Result<(), String> {
    let busybox = fs::read(BUSYBOX).map_err(|e| format!("reading {BUSYBOX}: {e}"))?;
    let mut tar = RootfsTar::new()
        .file("bin/busybox", &busybox, 0o755)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .file("etc/group", b"root:x:0:\n", 0o644);
    for dir in ["dev", "proc", "sys", "tmp", "root"] {
        tar = tar.file(&format!("{dir}/.keep"), b"", 0o644);
    }
    for applet in ["sh", "sleep", "echo", "cat"] {
        tar = tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    let tar_path = work.join("rootfs.tar");
    fs::write(&tar_path, tar.build()).map_err(|e| e.to_string())?;
    let name = format!("{}/library/bbtest:1", registry.host());
    let tar_arg = tar_path.display().to_string();
    let steps: [&[&str]; 3] = [
        &[
            "image",
            "import",
            &tar_arg,
            &name,
            "--change",
            "ENV PATH=/bin",
        ],
        &["image", "push", &name],
        &["image", "rm", &name],
    ];
    for args in steps {
        let output = run_rcompose(root, work, registry, args)?;
        if !output.status.success() {
            return Err(format!(
                "rcompose {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(())
}

fn service_yaml(image: &str, policy: Option<&str>) -> String {
    let policy = policy
        .map(|p| format!("    pull_policy: {p}\n"))
        .unwrap_or_default();
    format!("services:\n  app:\n    image: {image}\n    command: [sleep, '300']\n{policy}")
}

fn up_pulls_missing(env: &Env<'_>) -> Result<(), String> {
    remove_image(env, IMAGE)?;
    write_compose(env, &service_yaml(IMAGE, None))?;
    let first = ok(env, &["up", "-d"])?;
    let pulling = line_index(&first, " Image bbtest:1  Pulling")?;
    let pulled = line_index(&first, " Image bbtest:1  Pulled")?;
    let created = line_index(&first, " Container pullcli-app-1  Created")?;
    if !(pulling < pulled && pulled < created) {
        return Err(format!("pulled after the container was created:\n{first}"));
    }
    check_eq(
        &containers(&env.root)?,
        &vec!["pullcli-app-1 running".to_string()],
        "containers after up",
    )?;
    let record = fs::read_to_string(env.root.join("images/pulled.json"))
        .map_err(|e| format!("images/pulled.json: {e}"))?;
    contains(&record, "\"docker.io/library/bbtest:1\"")?;
    // Present now: the default policy (missing) does not pull again.
    let second = ok(env, &["up", "-d"])?;
    lacks(&second, "Pulling")
}

fn never_creates_nothing(env: &Env<'_>) -> Result<(), String> {
    remove_image(env, IMAGE)?;
    write_compose(env, &service_yaml(IMAGE, Some("never")))?;
    let err = fails(env, &["up", "-d"])?;
    contains(&err, "service app: image bbtest:1 not found")?;
    lacks(&err, "Pulling")?;
    lacks(&err, "Created")?;
    check_eq(
        &containers(&env.root)?,
        &Vec::new(),
        "containers after the failed up",
    )?;
    // `--pull missing` overrides the service's `never`.
    let up = ok(env, &["up", "-d", "--pull", "missing"])?;
    has_line(&up, " Image bbtest:1  Pulled")
}

fn always_pulls_again(env: &Env<'_>) -> Result<(), String> {
    write_compose(env, &service_yaml(IMAGE, Some("always")))?;
    ok(env, &["pull", "-q"])?;
    for _ in 0..2 {
        let up = ok(env, &["up", "-d"])?;
        has_line(&up, " Image bbtest:1  Pulling")?;
        has_line(&up, " Image bbtest:1  Pulled")?;
    }
    // `--quiet-pull` keeps the image's lines and drops the layers'.
    let quiet = ok(env, &["up", "-d", "--quiet-pull"])?;
    has_line(&quiet, " Image bbtest:1  Pulled")?;
    lacks(&quiet, "Already exists")?;
    let loud = ok(env, &["up", "-d"])?;
    contains(&loud, "Already exists")?;
    // `--pull never` overrides `always`.
    let never = ok(env, &["up", "-d", "--pull", "never"])?;
    lacks(&never, "Pulling")
}

fn failed_pull_fails_up(env: &Env<'_>) -> Result<(), String> {
    write_compose(
        env,
        "services:\n  app:\n    image: bbtest:1\n    command: [sleep, '300']\n  ghost:\n    image: nosuch:1\n",
    )?;
    let err = fails(env, &["up", "-d"])?;
    // The registry's reason follows (here: the mirror lacks it, and docker.io itself
    // cannot be reached from this machine).
    contains(&err, "service ghost: pulling image nosuch:1 failed: ")?;
    contains(&err, "docker.io/library/nosuch:1")?;
    // Why the mirror did not serve it is said too, not only docker.io's failure.
    contains(
        &err,
        &format!(
            "mirror http://{} was tried first: manifest 1 for docker.io/library/nosuch:1 not found",
            env.registry.host()
        ),
    )?;
    has_line(&err, " Image nosuch:1  Error")?;
    lacks(&err, "Created")?;
    check_eq(
        &containers(&env.root)?,
        &Vec::new(),
        "containers after the failed up",
    )
}

fn pull_command_failures(env: &Env<'_>) -> Result<(), String> {
    remove_image(env, IMAGE)?;
    write_compose(
        env,
        "services:\n  app: {image: 'bbtest:1', depends_on: [ghost]}\n  ghost: {image: 'nosuch:1'}\n  spared: {image: 'other:1', pull_policy: never}\n",
    )?;
    let ignored = ok(env, &["pull", "--ignore-pull-failures"])?;
    contains(&ignored, "service ghost: pulling image nosuch:1 failed:")?;
    has_line(&ignored, " Image bbtest:1  Pulled")?;
    has_line(&ignored, " Service spared  Skipped")?;
    if !image_present(env, IMAGE)? {
        return Err("bbtest:1 was not pulled".into());
    }
    let err = fails(env, &["pull"])?;
    contains(&err, "service ghost: pulling image nosuch:1 failed:")?;
    // Only the named service, unless its dependencies are asked for too.
    let app = ok(env, &["pull", "app"])?;
    lacks(&app, "nosuch")?;
    let err = fails(env, &["pull", "--include-deps", "app"])?;
    contains(&err, "nosuch:1")?;
    // `--policy missing` leaves the present image alone.
    let missing = ok(env, &["pull", "--policy", "missing", "app"])?;
    lacks(&missing, "Pulling")
}

fn push_round_trip(env: &Env<'_>) -> Result<(), String> {
    let image = format!("{}/roundtrip/app:2", env.registry.host());
    write_compose(env, &service_yaml(&image, None))?;
    if !image_present(env, IMAGE)? {
        ok(env, &["image", "pull", "-q", IMAGE])?;
    }
    ok(env, &["image", "tag", IMAGE, &image])?;
    let pushed = ok(env, &["push"])?;
    has_line(&pushed, &format!(" Image {image}  Pushed"))?;
    ok(env, &["image", "rm", &image])?;
    let pulled = ok(env, &["pull"])?;
    has_line(&pulled, &format!(" Image {image}  Pulled"))?;
    let id = |name: &str| -> Result<String, String> {
        let output = rcompose(env, &["image", "inspect", name])?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.lines()
            .find(|l| l.contains("\"Id\""))
            .map(str::to_owned)
            .ok_or_else(|| format!("no Id for {name}: {text}"))
    };
    if id(&image)? != id(IMAGE)? {
        return Err("the pulled image differs from the pushed one".into());
    }
    // A service whose image is not in the store: the push names service and image.
    write_compose(env, &service_yaml("127.0.0.1:1/absent:1", None))?;
    let err = fails(env, &["push"])?;
    contains(
        &err,
        "service app: pushing image 127.0.0.1:1/absent:1 failed",
    )?;
    ok(env, &["push", "--ignore-push-failures"]).map(|_| ())
}
