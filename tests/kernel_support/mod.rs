//! Helpers of the end-to-end tests that run real containers as root inside a throwaway
//! network namespace (native_engine, up_down, ps_logs, pull_cli, wordpress_example).
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcompose::backend::native::NativeEngine;
use rcompose::orchestrator::plan::ContainerState;
use rcompose_runtime::container::rootfs::mount_points;
use rcompose_runtime::image::import::import;
use rcompose_runtime::image::reference::Reference;
use rcompose_runtime::image::store::Store;

pub fn check_eq<T: PartialEq + std::fmt::Debug>(
    got: &T,
    want: &T,
    what: &str,
) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

pub fn release_netns_dir(root: &Path) -> Result<(), String> {
    match rcompose_runtime::network::netns::release_netns_dir(root) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "network namespace files are left in {}",
            root.display()
        )),
        Err(err) => Err(err.to_string()),
    }
}

pub fn nothing_mounted_under(dir: &Path) -> Result<(), String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let left = mount_points(&mountinfo).find(|p| Path::new(p).starts_with(dir));
    match left {
        Some(point) => Err(format!("still mounted: {point}")),
        None => Ok(()),
    }
}

/// Moves this process into a new network namespace with its loopback up, so bridges,
/// veths and nftables rules of the containers it starts never touch the host's. Call
/// it while the process has a single thread: the children started later inherit it.
pub fn enter_throwaway_netns() -> Result<(), String> {
    // SAFETY: only the network namespace is unshared; the caller has no other thread.
    #[allow(unsafe_code)]
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
        .map_err(|e| e.to_string())?;
    let status = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .map_err(|e| format!("running ip: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ip link set lo up: {status}"))
    }
}

/// The containers of `project` in the state root, by name, with their states.
pub fn states_of(root: &Path, project: &str) -> Result<Vec<(String, ContainerState)>, String> {
    let engine =
        NativeEngine::open(root, Path::new("/proc/self/exe")).map_err(|e| e.to_string())?;
    let mut states: Vec<(String, ContainerState)> = engine
        .list(project)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|c| (c.name, c.state))
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(states)
}

/// Debian's busybox-static as a one-layer image `busybox:latest` in `<root>/images`,
/// imported as `rcompose image import` does (`ENV PATH=/bin`). Needs the host's
/// network (apt-get download): call it before entering a throwaway namespace. Returns
/// the rootfs tar (`<work>/rootfs.tar`), for tests that import it again.
pub fn import_busybox(work: &Path, root: &Path) -> Result<PathBuf, String> {
    let download = work.join("deb");
    fs::create_dir_all(&download).map_err(|e| e.to_string())?;
    run_output(
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
    run_output(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    let busybox = unpacked.join("bin/busybox");
    let applets = run_output(Command::new(&busybox).arg("--list"))?;
    let tar_path = work.join("rootfs.tar");
    write_busybox_rootfs(&tar_path, &busybox, &applets)
        .map_err(|e| format!("building the rootfs tar: {e}"))?;
    let store = Store::open(root.join("images")).map_err(|e| e.to_string())?;
    let reference = Reference::parse("busybox:latest").map_err(|e| e.to_string())?;
    let tar = fs::File::open(&tar_path).map_err(|e| e.to_string())?;
    import(
        &store,
        std::io::BufReader::new(tar),
        Some(&reference),
        &["ENV PATH=/bin".to_string()],
    )
    .map_err(|e| e.to_string())?;
    Ok(tar_path)
}

/// A root-owned rootfs: busybox with a link per applet, `/etc/passwd` and `/etc/group`
/// for root, and the usual top directories.
fn write_busybox_rootfs(path: &Path, busybox: &Path, applets: &str) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(fs::File::create(path)?);
    for dir in ["bin", "dev", "etc", "proc", "sys", "root"] {
        let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut header, dir, std::io::empty())?;
    }
    // World-writable as on any Linux, so `exec -u 1000 -w /tmp` can use it.
    let mut header = tar_header(tar::EntryType::Directory, 0o1777, 0);
    tar.append_data(&mut header, "tmp", std::io::empty())?;
    let mut add_file = |path: &str, data: &[u8], mode: u32| {
        let mut header = tar_header(tar::EntryType::Regular, mode, data.len() as u64);
        tar.append_data(&mut header, path, data)
    };
    add_file("bin/busybox", &fs::read(busybox)?, 0o755)?;
    add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    add_file("etc/group", b"root:x:0:\n", 0o644)?;
    for applet in applets.lines().filter(|a| *a != "busybox") {
        let mut header = tar_header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")?;
    }
    tar.finish()
}

/// A root-owned entry.
fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

/// The command's stdout when it succeeds; its status and stderr when it fails.
pub fn run_output(command: &mut Command) -> Result<String, String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{command:?}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// One end-to-end test: given the state root and a directory of its own.
pub type TestFn = fn(&Path, &Path) -> Result<(), String>;

/// An end-to-end suite as root: a temp dir with a state root holding busybox, the
/// process in a throwaway network namespace, one directory per test, and at the end
/// nothing of it may stay mounted.
pub struct Suite {
    name: &'static str,
    work: tempfile::TempDir,
    pub root: PathBuf,
}

impl Suite {
    /// Sets the suite up, or says why it is skipped (not root, no namespaces) and
    /// gives `None`. Call it first in `main`, after the helpers' `maybe_run`, while
    /// the process has one thread. A busybox that cannot be fetched fails it.
    pub fn enter(name: &'static str) -> Option<Suite> {
        if !is_root() {
            println!("{name}: skipped, needs root");
            return None;
        }
        let work = tempfile::Builder::new()
            .prefix(&format!("rcompose-{name}-test"))
            .tempdir()
            .unwrap_or_else(|err| panic!("creating a temp dir: {err}"));
        let root = work.path().join("root");
        // apt-get needs the host's network: before the namespace.
        if let Err(reason) = import_busybox(work.path(), &root) {
            println!("test import_busybox ... FAILED: {reason}");
            std::process::exit(1);
        }
        if let Err(err) = enter_throwaway_netns() {
            println!("{name}: skipped, cannot create a network namespace: {err}");
            return None;
        }
        Some(Suite { name, work, root })
    }

    /// Runs one test with the state root and a fresh directory of its own; prints
    /// its result and tells whether it passed.
    pub fn run(
        &self,
        test_name: &str,
        test: impl FnOnce(&Path, &Path) -> Result<(), String>,
    ) -> bool {
        let dir = self.work.path().join(test_name);
        let result = fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| test(&self.root, &dir));
        match result {
            Ok(()) => {
                println!("test {test_name} ... ok");
                true
            }
            Err(err) => {
                println!("test {test_name} ... FAILED: {err}");
                false
            }
        }
    }

    /// Runs every test in turn, then [`Suite::finish`].
    pub fn run_all(self, tests: &[(&str, TestFn)]) -> ! {
        let mut all_passed = true;
        for (name, test) in tests {
            all_passed &= self.run(name, test);
        }
        self.finish(all_passed)
    }

    /// Checks that nothing is left mounted, removes the temp dir and exits: 1 when a
    /// test (or the cleanup) failed.
    pub fn finish(self, all_passed: bool) -> ! {
        let cleanup =
            release_netns_dir(&self.root).and_then(|()| nothing_mounted_under(self.work.path()));
        let name = self.name;
        drop(self.work);
        let mut passed = all_passed;
        if let Err(err) = cleanup {
            println!("test cleanup ... FAILED: {err}");
            passed = false;
        }
        if !passed {
            println!("{name}: FAILED");
        }
        std::process::exit(if passed { 0 } else { 1 });
    }
}
