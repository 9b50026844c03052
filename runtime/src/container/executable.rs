//! Finding the container's program in its root filesystem before the container is
//! created.
//!
//! runc and libcontainer look `argv[0]` up inside the container just before the
//! exec, so a command missing from the image is only noticed by the container's
//! init, where libcontainer reports a generic failure. At create time the rootfs is
//! already a directory on the host, so the same lookup is done here first and fails
//! with Docker's words (`exec: "foo": executable file not found in $PATH`) before
//! anything is started.
//!
//! Paths are resolved as the container will see them: symlinks are followed inside
//! the rootfs (an absolute target restarts at the rootfs, `..` never climbs above
//! it), never onto the host.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use thiserror::Error;

use super::rootfs_path::{self, steps_of, ResolveError, Resolved, Step};
use super::spec::{DEFAULT_PATH_ENV, INIT_PATH};

/// Linux's own limit on symlinks followed while resolving one path (MAXSYMLINKS).

#[derive(Debug, Error)]
pub enum ExecutableError {
    #[error("exec: {command:?}: executable file not found in $PATH")]
    CommandNotFound { command: String, path_var: String },
    #[error("exec: {command:?}: stat {path}: no such file or directory")]
    NotFound { command: String, path: String },
    #[error("exec: {command:?}: permission denied: {path} is not a file with an execute bit (chmod +x it in the image)")]
    NotExecutable { command: String, path: String },
    #[error("exec: {command:?}: {path} is a directory")]
    IsDirectory { command: String, path: String },
    #[error("exec: {command:?}: resolving {path} in the container's root filesystem: too many levels of symbolic links")]
    SymlinkLoop { command: String, path: String },
    #[error("exec: {command:?}: reading {path} in the container's root filesystem: {source}")]
    Io {
        command: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("no command to run: the container's process has no arguments")]
    NoCommand,
}

/// Where the lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executable {
    /// An executable regular file at this path inside the container.
    Found(PathBuf),
    /// The lookup reached this path, which lies under a mount the spec adds
    /// (volume, bind, tmpfs, the init binary…): its content is only known once
    /// mounted, so it was not checked.
    UnderMount(PathBuf),
}

/// Checks the program `spec`'s process will run, in `rootfs` (the host directory
/// that becomes `/`). With `init`, the process is `docker-init -- CMD…` and CMD is
/// checked: the init binary itself is a bind mount.
pub fn check_process_executable(
    spec: &Spec,
    rootfs: &Path,
    init: bool,
) -> Result<Executable, ExecutableError> {
    let process = spec.process().as_ref();
    let args = process
        .and_then(|p| p.args().as_deref())
        .unwrap_or_default();
    let command = user_command(args, init).ok_or(ExecutableError::NoCommand)?;
    let env = process.and_then(|p| p.env().as_deref()).unwrap_or_default();
    let cwd = process.map_or(Path::new("/"), |p| p.cwd().as_path());
    let mount_targets: Vec<PathBuf> = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().clone())
        .collect();
    find_executable(rootfs, command, &path_var(env), cwd, &mount_targets)
}

/// `argv[0]`, or with `init` the first argument after `INIT_PATH --`.
fn user_command(args: &[String], init: bool) -> Option<&str> {
    let wrapped = init
        && args.first().is_some_and(|a| a == INIT_PATH)
        && args.get(1).is_some_and(|a| a == "--");
    args.get(if wrapped { 2 } else { 0 }).map(String::as_str)
}

/// The process's `PATH` (the last entry wins, as when the runtime sets the variables
/// one by one), or Docker's default when it has none.
fn path_var(env: &[String]) -> String {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH_ENV)
        .to_string()
}

/// Finds `command` as the runtime will at exec (Go's `exec.LookPath` in runc): a
/// name containing `/` is that path, relative to `cwd`; any other name is searched
/// in the directories of `path_var` in order, skipping candidates that are missing,
/// directories or not executable. An empty `PATH` entry means `cwd`.
///
/// `mount_targets` are the container paths the spec mounts over the rootfs. When the
/// lookup reaches one of them, the answer depends on the mount's content, so it is
/// not checked ([`Executable::UnderMount`]).
pub fn find_executable(
    rootfs: &Path,
    command: &str,
    path_var: &str,
    cwd: &Path,
    mount_targets: &[PathBuf],
) -> Result<Executable, ExecutableError> {
    let mounts = resolve_mount_targets(rootfs, mount_targets);
    if command.contains('/') {
        let path = Path::new("/").join(cwd).join(command);
        return check_candidate(rootfs, &path, &mounts)
            .map_err(|problem| problem.into_error(command, &path));
    }
    let mut under_mount = None;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new("/").join(cwd).join(dir).join(command);
        match check_candidate(rootfs, &candidate, &mounts) {
            Ok(found @ Executable::Found(_)) => return Ok(found),
            Ok(mounted @ Executable::UnderMount(_)) => {
                under_mount.get_or_insert(mounted);
            }
            // Like LookPath: a candidate that cannot be run is skipped.
            Err(_) => {}
        }
    }
    under_mount.ok_or_else(|| ExecutableError::CommandNotFound {
        command: command.to_string(),
        path_var: path_var.to_string(),
    })
}

/// Why one candidate path cannot be run.
#[derive(Debug)]
enum Problem {
    NotFound,
    NotExecutable,
    IsDirectory,
    SymlinkLoop,
    Io(io::Error),
}

impl Problem {
    fn into_error(self, command: &str, path: &Path) -> ExecutableError {
        let command = command.to_string();
        let path = clean_display(path);
        match self {
            Problem::NotFound => ExecutableError::NotFound { command, path },
            Problem::NotExecutable => ExecutableError::NotExecutable { command, path },
            Problem::IsDirectory => ExecutableError::IsDirectory { command, path },
            Problem::SymlinkLoop => ExecutableError::SymlinkLoop { command, path },
            Problem::Io(source) => ExecutableError::Io {
                command,
                path,
                source,
            },
        }
    }
}

/// `path` as the container sees it, lexically cleaned (`/app/./run.sh` → `/app/run.sh`).
fn clean_display(path: &Path) -> String {
    let mut clean = PathBuf::from("/");
    for step in steps_of(path) {
        match step {
            Step::Parent => {
                clean.pop();
            }
            Step::Name(name) => clean.push(name),
        }
    }
    clean.display().to_string()
}

/// Resolves `path` (a container path) and checks it is an executable regular file.
fn check_candidate(rootfs: &Path, path: &Path, mounts: &[PathBuf]) -> Result<Executable, Problem> {
    let relative = match resolve_in_rootfs(rootfs, path, mounts)? {
        Resolved::InRootfs(relative) => relative,
        Resolved::UnderMount(relative) => {
            return Ok(Executable::UnderMount(Path::new("/").join(relative)))
        }
    };
    // Every symlink is resolved already, so this never leaves the rootfs.
    let metadata = fs::symlink_metadata(rootfs.join(&relative)).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Problem::NotFound,
        _ => Problem::Io(e),
    })?;
    if metadata.is_dir() {
        return Err(Problem::IsDirectory);
    }
    // execve refuses anything but a regular file with an execute bit (root included).
    if !metadata.is_file() || metadata.permissions().mode() & 0o111 == 0 {
        return Err(Problem::NotExecutable);
    }
    Ok(Executable::Found(Path::new("/").join(relative)))
}

/// Follows `path` through the rootfs as if `rootfs` were `/`, stopping as soon as
/// it reaches one of `mounts` (relative, resolved targets).
fn resolve_in_rootfs(rootfs: &Path, path: &Path, mounts: &[PathBuf]) -> Result<Resolved, Problem> {
    rootfs_path::resolve_in_rootfs(rootfs, path, mounts).map_err(|e| match e {
        ResolveError::SymlinkLoop => Problem::SymlinkLoop,
        ResolveError::Io(e) => Problem::Io(e),
    })
}

/// Mount targets as paths relative to the rootfs root, with their own symlinks
/// resolved (the runtime resolves a mount's destination inside the rootfs too).
fn resolve_mount_targets(rootfs: &Path, targets: &[PathBuf]) -> Vec<PathBuf> {
    targets
        .iter()
        .map(|target| match resolve_in_rootfs(rootfs, target, &[]) {
            Ok(Resolved::InRootfs(relative)) => relative,
            // A target that cannot be resolved is compared as written.
            _ => PathBuf::from(clean_display(target).trim_start_matches('/')),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Mount, Process};
    use std::os::unix::fs::symlink;

    /// A rootfs with a few programs, data files and symlinks:
    /// - `/bin/busybox` (0755) and `/bin/sh` → `busybox`;
    /// - `/usr/bin/tool` and `/usr/local/bin/tool` (both 0755);
    /// - `/usr/local/bin/data` (0644) and `/usr/bin/data` (0755);
    /// - `/usr/sbin/daemon` (0700) and `/sbin` → `usr/sbin`;
    /// - `/app/run.sh` (0755), `/app/notes.txt` (0644), `/etc/passwd` (0644).
    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["bin", "usr/bin", "usr/local/bin", "usr/sbin", "app", "etc"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        for (path, mode) in [
            ("bin/busybox", 0o755),
            ("usr/bin/tool", 0o755),
            ("usr/local/bin/tool", 0o755),
            ("usr/local/bin/data", 0o644),
            ("usr/bin/data", 0o755),
            ("usr/sbin/daemon", 0o700),
            ("app/run.sh", 0o755),
            ("app/notes.txt", 0o644),
            ("etc/passwd", 0o644),
        ] {
            write_file(root, path, mode);
        }
        symlink("busybox", root.join("bin/sh")).unwrap();
        symlink("usr/sbin", root.join("sbin")).unwrap();
        dir
    }

    fn write_file(root: &Path, path: &str, mode: u32) {
        let host = root.join(path);
        fs::write(&host, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&host, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn find(
        root: &Path,
        command: &str,
        path_var: &str,
        cwd: &str,
    ) -> Result<Executable, ExecutableError> {
        find_executable(root, command, path_var, Path::new(cwd), &[])
    }

    fn found(path: &str) -> Executable {
        Executable::Found(PathBuf::from(path))
    }

    #[test]
    fn names_are_searched_in_path_order() {
        let dir = rootfs();
        let root = dir.path();
        assert_eq!(
            find(root, "tool", DEFAULT_PATH_ENV, "/").unwrap(),
            found("/usr/local/bin/tool")
        );
        assert_eq!(
            find(root, "tool", "/usr/bin:/usr/local/bin", "/").unwrap(),
            found("/usr/bin/tool")
        );
        // A file without an execute bit earlier in PATH is skipped, as LookPath does.
        assert_eq!(
            find(root, "data", DEFAULT_PATH_ENV, "/").unwrap(),
            found("/usr/bin/data")
        );
        // Only the owner's execute bit is enough: the check is for any execute bit.
        assert_eq!(
            find(root, "daemon", "/sbin", "/").unwrap(),
            found("/usr/sbin/daemon")
        );
    }

    #[test]
    fn a_missing_name_reads_like_docker() {
        let dir = rootfs();
        let err = find(dir.path(), "foo", DEFAULT_PATH_ENV, "/").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"exec: "foo": executable file not found in $PATH"#
        );
        assert!(matches!(
            err,
            ExecutableError::CommandNotFound { ref path_var, .. } if path_var == DEFAULT_PATH_ENV
        ));
        // The process's PATH is used, not the default: sh is not in /opt/bin.
        assert!(matches!(
            find(dir.path(), "sh", "/opt/bin", "/"),
            Err(ExecutableError::CommandNotFound { .. })
        ));
        // A directory or a data file of that name does not count.
        assert!(matches!(
            find(dir.path(), "bin", "/", "/"),
            Err(ExecutableError::CommandNotFound { .. })
        ));
        assert!(matches!(
            find(dir.path(), "passwd", "/etc", "/"),
            Err(ExecutableError::CommandNotFound { .. })
        ));
        assert!(matches!(
            find(dir.path(), "", DEFAULT_PATH_ENV, "/"),
            Err(ExecutableError::CommandNotFound { .. })
        ));
    }

    #[test]
    fn absolute_paths_are_checked_as_given() {
        let dir = rootfs();
        let root = dir.path();
        assert_eq!(
            find(root, "/bin/sh", "", "/app").unwrap(),
            found("/bin/busybox")
        );
        let err = find(root, "/bin/nope", DEFAULT_PATH_ENV, "/").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"exec: "/bin/nope": stat /bin/nope: no such file or directory"#
        );
        let err = find(root, "/etc/passwd", DEFAULT_PATH_ENV, "/").unwrap_err();
        assert!(matches!(err, ExecutableError::NotExecutable { .. }));
        assert!(err
            .to_string()
            .starts_with(r#"exec: "/etc/passwd": permission denied"#));
        let err = find(root, "/usr/bin", DEFAULT_PATH_ENV, "/").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"exec: "/usr/bin": /usr/bin is a directory"#
        );
        // A path through a regular file is simply not there.
        assert!(matches!(
            find(root, "/etc/passwd/x", DEFAULT_PATH_ENV, "/"),
            Err(ExecutableError::NotFound { .. })
        ));
    }

    #[test]
    fn relative_paths_start_at_the_working_dir() {
        let dir = rootfs();
        let root = dir.path();
        assert_eq!(
            find(root, "./run.sh", "", "/app").unwrap(),
            found("/app/run.sh")
        );
        assert_eq!(
            find(root, "app/run.sh", "", "/").unwrap(),
            found("/app/run.sh")
        );
        assert_eq!(
            find(root, "../bin/sh", "", "/app").unwrap(),
            found("/bin/busybox")
        );
        let err = find(root, "./run.sh", DEFAULT_PATH_ENV, "/").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"exec: "./run.sh": stat /run.sh: no such file or directory"#
        );
        assert!(matches!(
            find(root, "./notes.txt", "", "/app"),
            Err(ExecutableError::NotExecutable { .. })
        ));
        // An empty PATH entry is the working dir.
        assert_eq!(
            find(root, "run.sh", "/nothing:", "/app").unwrap(),
            found("/app/run.sh")
        );
    }

    #[test]
    fn symlink_chains_resolve_inside_the_rootfs() {
        let dir = rootfs();
        let root = dir.path();
        // Absolute target → relative target → file.
        symlink("/bin/sh", root.join("usr/bin/shell")).unwrap();
        assert_eq!(
            find(root, "shell", "/usr/bin", "/").unwrap(),
            found("/bin/busybox")
        );
        // A PATH directory reached through a symlinked directory.
        symlink("/usr/local/bin", root.join("opt")).unwrap();
        assert_eq!(
            find(root, "tool", "/opt", "/").unwrap(),
            found("/usr/local/bin/tool")
        );
    }

    #[test]
    fn symlinks_never_lead_onto_the_host() {
        let outside = tempfile::tempdir().unwrap();
        write_file(outside.path(), "host-tool", 0o755);
        let host_tool = outside.path().join("host-tool");
        let dir = rootfs();
        let root = dir.path();
        // An absolute target naming a host path is a path inside the rootfs.
        symlink(&host_tool, root.join("bin/abs-escape")).unwrap();
        // A relative target climbing far above the root stops at the root.
        let climb = format!("{}{}", "../".repeat(20), host_tool.display());
        symlink(&climb, root.join("bin/rel-escape")).unwrap();
        for name in ["/bin/abs-escape", "/bin/rel-escape"] {
            assert!(
                matches!(
                    find(root, name, DEFAULT_PATH_ENV, "/"),
                    Err(ExecutableError::NotFound { .. })
                ),
                "{name} was followed onto the host"
            );
        }
        // `..` above the root stays at the root: /../../bin/sh is /bin/sh.
        symlink("../../../../bin/sh", root.join("usr/bin/up")).unwrap();
        assert_eq!(
            find(root, "up", "/usr/bin", "/").unwrap(),
            found("/bin/busybox")
        );
    }

    #[test]
    fn symlink_loops_are_bounded() {
        let dir = rootfs();
        let root = dir.path();
        symlink("b", root.join("bin/a")).unwrap();
        symlink("/bin/a", root.join("bin/b")).unwrap();
        let err = find(root, "/bin/a", DEFAULT_PATH_ENV, "/").unwrap_err();
        assert!(matches!(err, ExecutableError::SymlinkLoop { .. }));
        assert!(err
            .to_string()
            .contains("too many levels of symbolic links"));
        // In a PATH search the looping candidate is skipped like any unusable one.
        assert!(matches!(
            find(root, "a", "/bin", "/"),
            Err(ExecutableError::CommandNotFound { .. })
        ));
        // A self-link too.
        symlink("self", root.join("bin/self")).unwrap();
        assert!(matches!(
            find(root, "/bin/self", "", "/"),
            Err(ExecutableError::SymlinkLoop { .. })
        ));
    }

    #[test]
    fn paths_under_mounts_are_not_checked() {
        let dir = rootfs();
        let root = dir.path();
        let mounts = [PathBuf::from("/data"), PathBuf::from("/srv/")];
        let under = |command: &str, path_var: &str| {
            find_executable(root, command, path_var, Path::new("/"), &mounts)
        };
        assert_eq!(
            under("/data/bin/app", "").unwrap(),
            Executable::UnderMount(PathBuf::from("/data"))
        );
        assert_eq!(
            under("app", "/data/bin:/usr/bin").unwrap(),
            Executable::UnderMount(PathBuf::from("/data"))
        );
        // Found in the rootfs before reaching the mount.
        assert_eq!(
            under("tool", "/usr/bin:/data/bin").unwrap(),
            found("/usr/bin/tool")
        );
        // A symlink in the image pointing into a volume.
        symlink("/srv/app/start", root.join("usr/bin/start")).unwrap();
        assert!(matches!(
            under("start", "/usr/bin"),
            Ok(Executable::UnderMount(_))
        ));
        // A mount target reached through a symlink of the image: /opt/srv → /srv.
        fs::create_dir_all(root.join("opt")).unwrap();
        symlink("/srv", root.join("opt/srv")).unwrap();
        assert!(matches!(
            under("/opt/srv/x", ""),
            Ok(Executable::UnderMount(_))
        ));
        // Without the mounts these are missing.
        assert!(matches!(
            find(root, "/data/bin/app", "", "/"),
            Err(ExecutableError::NotFound { .. })
        ));
        // A mount path that is only a prefix of a name does not count.
        assert!(matches!(
            under("/database/app", ""),
            Err(ExecutableError::NotFound { .. })
        ));
    }

    fn spec(args: &[&str], env: &[&str], cwd: &str, mounts: &[&str]) -> Spec {
        let mut process = Process::default();
        process.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        process.set_env(Some(env.iter().map(|e| e.to_string()).collect()));
        process.set_cwd(PathBuf::from(cwd));
        let mounts = mounts
            .iter()
            .map(|target| {
                let mut mount = Mount::default();
                mount.set_destination(PathBuf::from(target));
                mount
            })
            .collect();
        let mut spec = Spec::default();
        spec.set_process(Some(process));
        spec.set_mounts(Some(mounts));
        spec
    }

    #[test]
    fn the_spec_process_is_checked_with_its_env_cwd_and_mounts() {
        let dir = rootfs();
        let root = dir.path();
        let check = |spec: &Spec, init: bool| check_process_executable(spec, root, init);
        assert_eq!(
            check(
                &spec(&["sh", "-c", "true"], &["PATH=/bin"], "/", &[]),
                false
            )
            .unwrap(),
            found("/bin/busybox")
        );
        // The last PATH wins.
        assert!(matches!(
            check(
                &spec(&["sh"], &["PATH=/bin", "PATH=/usr/bin"], "/", &[]),
                false
            ),
            Err(ExecutableError::CommandNotFound { .. })
        ));
        // No PATH at all: Docker's default.
        assert_eq!(
            check(&spec(&["tool"], &["HOME=/"], "/", &[]), false).unwrap(),
            found("/usr/local/bin/tool")
        );
        assert_eq!(
            check(&spec(&["./run.sh"], &[], "/app", &[]), false).unwrap(),
            found("/app/run.sh")
        );
        assert!(matches!(
            check(&spec(&[], &[], "/", &[]), false),
            Err(ExecutableError::NoCommand)
        ));
    }

    #[test]
    fn with_init_the_user_command_is_checked() {
        let dir = rootfs();
        let root = dir.path();
        // The init binary is a bind mount absent from the rootfs.
        let ok = spec(&[INIT_PATH, "--", "tool", "x"], &[], "/", &[INIT_PATH]);
        assert_eq!(
            check_process_executable(&ok, root, true).unwrap(),
            found("/usr/local/bin/tool")
        );
        let missing = spec(&[INIT_PATH, "--", "foo"], &[], "/", &[INIT_PATH]);
        let err = check_process_executable(&missing, root, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"exec: "foo": executable file not found in $PATH"#
        );
        // Without init, a command that happens to be the init path is under its mount.
        let plain = spec(&[INIT_PATH], &[], "/", &[INIT_PATH]);
        assert!(matches!(
            check_process_executable(&plain, root, false),
            Ok(Executable::UnderMount(_))
        ));
    }
}
