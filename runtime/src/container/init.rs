//! The init binary for `init: true` (Docker's `--init`, tini in Docker).
//!
//! `build.rs` compiles `init/main.rs` into a static executable and this module embeds it.
//! [`install_init`] writes it to a host directory under a content-addressed name, so
//! `ContainerConfig::init_binary` can point at it and `spec` can bind-mount it at
//! `/sbin/docker-init`. Different rcompose versions sharing a directory each get their own
//! file, and a file never changes once written.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// The static init executable built by `build.rs`.
static INIT_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rcompose-init"));

/// Prefix of the installed file's name; a sha256 prefix of its content follows.
pub const INIT_FILE_PREFIX: &str = "rcompose-init-";

/// Hex digits of the sha256 kept in the name: 64 bits tell versions apart.
const HASH_HEX_LEN: usize = 16;

/// The mode the container needs: anyone may execute it, only root may change it.
const INIT_MODE: u32 = 0o755;

#[derive(Debug, Error)]
pub enum InitError {
    #[error("creating the directory {path} for the init binary: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("writing the init binary into {dir}: {source}")]
    Write { dir: PathBuf, source: io::Error },
    #[error("installing the init binary as {path}: {source}")]
    Rename { path: PathBuf, source: io::Error },
}

/// Write the init binary into `dir` (created if missing) unless an intact copy is already
/// there, and return its path: `dir/rcompose-init-<sha256 prefix>`, mode 0755.
///
/// Safe to call concurrently, from threads or processes: each caller writes its own
/// temporary file and renames it into place, so the name only ever holds a complete
/// binary. A damaged or modified file under the name is replaced.
pub fn install_init(dir: &Path) -> Result<PathBuf, InitError> {
    let path = dir.join(init_file_name());
    if is_intact(&path) {
        return Ok(path);
    }
    fs::create_dir_all(dir).map_err(|source| InitError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let temp = write_temp_copy(dir).map_err(|source| InitError::Write {
        dir: dir.to_path_buf(),
        source,
    })?;
    temp.persist(&path).map_err(|err| InitError::Rename {
        path: path.clone(),
        source: err.error,
    })?;
    Ok(path)
}

/// `rcompose-init-<first 16 hex digits of the binary's sha256>`.
pub fn init_file_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let digest = Sha256::digest(INIT_BINARY);
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        format!(
            "{INIT_FILE_PREFIX}{}",
            hex.get(..HASH_HEX_LEN).unwrap_or(&hex)
        )
    })
}

/// A regular file (not a symlink) with the right mode and exactly the embedded bytes.
fn is_intact(path: &Path) -> bool {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return false;
    };
    if !metadata.is_file()
        || metadata.permissions().mode() & 0o7777 != INIT_MODE
        || metadata.len() != INIT_BINARY.len() as u64
    {
        return false;
    }
    let mut content = Vec::with_capacity(INIT_BINARY.len());
    fs::File::open(path)
        .and_then(|mut file| file.read_to_end(&mut content))
        .is_ok_and(|_| content == INIT_BINARY)
}

/// A complete, synced, executable copy under a temporary name in `dir`, already closed:
/// exec fails with ETXTBSY while any process holds the file open for writing.
fn write_temp_copy(dir: &Path) -> io::Result<tempfile::TempPath> {
    let mut temp = tempfile::Builder::new()
        .prefix(".rcompose-init-")
        .tempfile_in(dir)?;
    temp.write_all(INIT_BINARY)?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(INIT_MODE))?;
    temp.as_file().sync_all()?;
    Ok(temp.into_temp_path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::{kill_process, Pid, Signal};
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::time::{Duration, Instant};

    const PT_INTERP: u32 = 3;

    fn installed() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = install_init(dir.path()).unwrap();
        (dir, path)
    }

    /// The init's exit status and stderr for `init -- args...`.
    fn run_init(args: &[&str]) -> (ExitStatus, String) {
        let (_dir, init) = installed();
        let child = spawn(
            Command::new(&init)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let output = child.wait_with_output().unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Starts `init -- sh -c script` with stdout piped; returns it and the first line the
    /// script prints (it prints once its traps are set).
    fn start_init_script(init: &Path, script: &str) -> (Child, String) {
        let mut child = spawn(
            Command::new(init)
                .args(["--", "sh", "-c", script])
                .stdout(Stdio::piped()),
        );
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        (child, line.trim().to_string())
    }

    /// Spawns, retrying ETXTBSY: while a test thread writes an init binary, a process
    /// forked by another thread holds that write fd until it execs, and exec of the
    /// binary fails meanwhile.
    fn spawn(command: &mut Command) -> Child {
        let mut attempts = 0;
        loop {
            match command.spawn() {
                Err(err) if err.kind() == io::ErrorKind::ExecutableFileBusy && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                result => return result.unwrap(),
            }
        }
    }

    fn send(pid: u32, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
        kill_process(pid, signal).unwrap();
    }

    /// Parent pid and state letter of a process, from /proc/PID/stat; None once it is gone.
    fn parent_and_state(pid: i32) -> Option<(i32, char)> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name in parentheses may contain spaces; the fields after it don't.
        let after_name = stat.get(stat.rfind(')')? + 1..)?;
        let mut fields = after_name.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let parent = fields.next()?.parse().ok()?;
        Some((parent, state))
    }

    fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn exit_code_of_the_command_is_passed_through() {
        let (status, _) = run_init(&["--", "sh", "-c", "exit 7"]);
        assert_eq!(status.code(), Some(7));
        let (status, _) = run_init(&["--", "true"]);
        assert_eq!(status.code(), Some(0));
    }

    #[test]
    fn command_killed_by_a_signal_gives_128_plus_signal() {
        let (status, _) = run_init(&["--", "sh", "-c", "kill -KILL $$"]);
        assert_eq!(status.code(), Some(128 + 9));
    }

    #[test]
    fn signals_are_forwarded_to_the_command() {
        let (_dir, init) = installed();
        let cases = [
            (Signal::TERM, "TERM", 3),
            (Signal::INT, "INT", 4),
            (Signal::HUP, "HUP", 5),
            (Signal::USR1, "USR1", 6),
        ];
        for (signal, name, code) in cases {
            // Bounded, so that a lost signal fails the test (exit 99) instead of hanging it.
            let script = format!(
                "trap 'exit {code}' {name}; echo ready; \
                 i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; exit 99"
            );
            let (mut child, line) = start_init_script(&init, &script);
            assert_eq!(line, "ready");
            send(child.id(), signal);
            let status = child.wait().unwrap();
            assert_eq!(status.code(), Some(code), "after SIG{name}");
        }
    }

    #[test]
    fn untrapped_sigterm_kills_the_command_and_the_init_reports_it() {
        let (_dir, init) = installed();
        let (mut child, line) = start_init_script(&init, "echo ready; exec sleep 10");
        assert_eq!(line, "ready");
        send(child.id(), Signal::TERM);
        assert_eq!(child.wait().unwrap().code(), Some(128 + 15));
    }

    #[test]
    fn orphans_are_adopted_and_reaped() {
        let (_dir, init) = installed();
        // The subshell starts a background sleep and exits at once, so the sleep is
        // orphaned and reparented to the init (a subreaper when it is not PID 1).
        let (mut child, line) = start_init_script(&init, "(sleep 1 & echo $!); exec sleep 10");
        let orphan: i32 = line.parse().unwrap();
        let init_pid = i32::try_from(child.id()).unwrap();

        wait_until("the orphan is the init's child", || {
            parent_and_state(orphan).is_some_and(|(parent, _)| parent == init_pid)
        });
        // Unreaped, it would stay a zombie (state Z) under the init forever.
        wait_until("the orphan is reaped", || {
            parent_and_state(orphan).is_none()
        });

        send(child.id(), Signal::TERM);
        assert_eq!(child.wait().unwrap().code(), Some(128 + 15));
    }

    #[test]
    fn missing_command_exits_127_with_a_message() {
        let (status, stderr) = run_init(&["--", "/nonexistent/command"]);
        assert_eq!(status.code(), Some(127));
        assert!(
            stderr.contains("docker-init: exec /nonexistent/command: No such file or directory"),
            "{stderr}"
        );
        let (status, stderr) = run_init(&["--", "rcompose-no-such-command"]);
        assert_eq!(status.code(), Some(127));
        assert!(stderr.contains("exec rcompose-no-such-command"), "{stderr}");
    }

    #[test]
    fn non_executable_command_exits_126() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
        let (status, stderr) = run_init(&["--", script.to_str().unwrap()]);
        assert_eq!(status.code(), Some(126));
        assert!(stderr.contains("Permission denied"), "{stderr}");
    }

    #[test]
    fn no_command_is_a_usage_error() {
        for args in [&[][..], &["--"][..], &["-s", "--", "true"][..]] {
            let (status, stderr) = run_init(args);
            assert_eq!(status.code(), Some(2), "{args:?}");
            assert!(stderr.contains("usage: docker-init -- CMD"), "{stderr}");
        }
    }

    #[test]
    fn command_without_double_dash_runs_too() {
        let (status, _) = run_init(&["sh", "-c", "exit 4"]);
        assert_eq!(status.code(), Some(4));
    }

    #[test]
    fn install_is_content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let first = install_init(dir.path()).unwrap();
        let second = install_init(dir.path()).unwrap();
        assert_eq!(first, second);

        let hex: String = Sha256::digest(INIT_BINARY)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let name = first.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, format!("rcompose-init-{}", &hex[..16]));
        assert_eq!(fs::read(&first).unwrap(), INIT_BINARY);
        let mode = fs::metadata(&first).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
        // Only the binary is left behind: no temporary files.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn install_keeps_an_intact_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = install_init(dir.path()).unwrap();
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before = inode(&path);
        install_init(dir.path()).unwrap();
        assert_eq!(inode(&path), before);
    }

    #[test]
    fn install_replaces_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(init_file_name());
        fs::write(&path, b"truncated").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(install_init(dir.path()).unwrap(), path);
        assert_eq!(fs::read(&path).unwrap(), INIT_BINARY);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        install_init(dir.path()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
    }

    #[test]
    fn install_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let path = install_init(&nested).unwrap();
        assert!(path.starts_with(&nested));
        assert!(is_intact(&path));
    }

    #[test]
    fn concurrent_installs_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| install_init(dir.path()).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(paths.iter().all(|p| p == &paths[0]));
        assert!(is_intact(&paths[0]));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn install_into_a_file_path_fails_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"").unwrap();
        let err = install_init(&file).unwrap_err();
        assert!(matches!(err, InitError::CreateDir { .. }), "{err:?}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    #[test]
    #[cfg(all(target_pointer_width = "64", target_endian = "little"))]
    fn binary_is_small_and_statically_linked() {
        assert!(
            INIT_BINARY.len() < 1024 * 1024,
            "{} bytes",
            INIT_BINARY.len()
        );
        let headers = program_header_types(INIT_BINARY);
        assert!(!headers.is_empty(), "no program headers");
        assert!(
            !headers.contains(&PT_INTERP),
            "has a dynamic loader (PT_INTERP)"
        );
    }

    /// `p_type` of every program header of a 64-bit little-endian ELF file.
    fn program_header_types(elf: &[u8]) -> Vec<u32> {
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf[4], 2, "not a 64-bit ELF");
        assert_eq!(elf[5], 1, "not little-endian");
        let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
        let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
        let entry_size = u16_at(0x36);
        let count = u16_at(0x38);
        (0..count)
            .map(|i| {
                let at = phoff + i * entry_size;
                u32::from_le_bytes(elf[at..at + 4].try_into().unwrap())
            })
            .collect()
    }
}
