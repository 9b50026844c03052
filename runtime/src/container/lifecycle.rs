//! A small typed API over the helper: create, start, wait, kill, delete, state.
//!
//! Layout under the runtime's state root:
//! - `containers/<id>/`: the bundle (`config.json`) and the overlay dirs
//!   (`upper`, `work`, `merged`); removed by delete;
//! - `run/<id>/`: libcontainer's own state (`state.json`, `notify.sock`).
//!
//! The root filesystem is prepared here, in the caller's process (mounting is
//! thread-safe and the host mount namespace is shared), because `build_spec` needs
//! it to resolve the user from the image's `/etc/passwd`. Everything libcontainer
//! does happens in the helper.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use thiserror::Error;

use super::config::ContainerConfig;
use super::helper::{ContainerState, ExitStatus, HelperClient, HelperError, Reply, Request};
use super::rootfs::{self, RootfsError, RootfsSource};
use super::spec::{build_spec, SpecError};

#[derive(Debug, Error)]
pub enum LifecycleError {
    #[error("invalid container id {0:?}: use 1 to 64 characters from [A-Za-z0-9_.+-], not starting with '.'")]
    InvalidId(String),
    #[error("container {0} already exists (delete it first)")]
    Exists(String),
    #[error("container {id}: rootfs: {source}")]
    Rootfs {
        id: String,
        #[source]
        source: RootfsError,
    },
    #[error("container {id}: {source}")]
    Spec {
        id: String,
        #[source]
        source: SpecError,
    },
    #[error(transparent)]
    Helper(#[from] HelperError),
    #[error("opening /dev/null for the container's stdio: {0}")]
    DevNull(#[source] io::Error),
    #[error("container helper answered {request} with an unexpected reply: {reply}")]
    UnexpectedReply {
        request: &'static str,
        reply: String,
    },
}

/// The container's standard streams. `None` connects that stream to `/dev/null`.
/// The runtime keeps no copy: the read ends the caller holds reach EOF when the
/// container's processes have all exited. Drain them while it runs (a pipe holds
/// 64 KiB).
#[derive(Debug, Default)]
pub struct ContainerStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// What to create.
pub struct CreateOptions<'a> {
    pub id: &'a str,
    pub rootfs: RootfsSource,
    pub image: &'a ImageConfiguration,
    pub config: &'a ContainerConfig,
    /// Absolute cgroup path, e.g. `/rcompose/<project>/<id>`.
    pub cgroups_path: &'a str,
    pub stdio: ContainerStdio,
}

/// Runs containers through one helper process.
pub struct Runtime {
    helper: HelperClient,
    state_root: PathBuf,
}

impl Runtime {
    /// Starts a helper from `program` (a binary whose `main` calls
    /// `helper::maybe_run()` first) and keeps state under `state_root`.
    pub fn new(program: &Path, state_root: impl Into<PathBuf>) -> Result<Runtime, LifecycleError> {
        Ok(Runtime {
            helper: HelperClient::spawn(program)?,
            state_root: state_root.into(),
        })
    }

    /// The directory holding a container's bundle and overlay.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state_root.join("containers").join(id)
    }

    /// `runc create`: prepares the rootfs, builds the spec and creates the container,
    /// whose process waits for [`Runtime::start`]. Returns the init's host pid.
    pub fn create(&mut self, options: CreateOptions<'_>) -> Result<i32, LifecycleError> {
        let id = options.id;
        validate_id(id)?;
        let container_dir = self.container_dir(id);
        // Checked before anything is made, so the cleanup of a failed create can never
        // touch another container's files.
        if container_dir.exists() {
            return Err(LifecycleError::Exists(id.to_string()));
        }
        let user_namespace = options.config.user_namespace.as_ref();
        let root =
            rootfs::prepare(&options.rootfs, &container_dir, user_namespace).map_err(|source| {
                LifecycleError::Rootfs {
                    id: id.to_string(),
                    source,
                }
            })?;
        let result = self.create_on_rootfs(&options, &root, &container_dir);
        if result.is_err() {
            // Leave nothing mounted or half-made behind a failed create.
            let _ = rootfs::teardown(&container_dir);
            let _ = std::fs::remove_dir_all(&container_dir);
        }
        result
    }

    fn create_on_rootfs(
        &mut self,
        options: &CreateOptions<'_>,
        root: &Path,
        container_dir: &Path,
    ) -> Result<i32, LifecycleError> {
        let id = options.id;
        let spec = build_spec(options.image, options.config, root, options.cgroups_path).map_err(
            |source| LifecycleError::Spec {
                id: id.to_string(),
                source,
            },
        )?;
        std::fs::create_dir_all(container_dir).map_err(|source| LifecycleError::Rootfs {
            id: id.to_string(),
            source: RootfsError::Io {
                action: "creating",
                path: container_dir.to_path_buf(),
                source,
            },
        })?;
        let stdio = stdio_fds(&options.stdio)?;
        let request = Request::Create {
            id: id.to_string(),
            container_dir: container_dir.to_path_buf(),
            state_root: self.state_root.join("run"),
            spec: Box::new(spec),
        };
        let fds = [stdio[0].as_fd(), stdio[1].as_fd(), stdio[2].as_fd()];
        match self.helper.call(&request, &fds)? {
            Reply::Created { pid } => Ok(pid),
            other => Err(unexpected("create", &other)),
        }
    }

    /// Runs the container's process.
    pub fn start(&mut self, id: &str) -> Result<(), LifecycleError> {
        self.expect_done("start", Request::Start { id: id.into() })
    }

    /// Blocks until the container's main process has exited.
    pub fn wait(&mut self, id: &str) -> Result<ExitStatus, LifecycleError> {
        match self.helper.call(&Request::Wait { id: id.into() }, &[])? {
            Reply::Exited { status } => Ok(status),
            other => Err(unexpected("wait", &other)),
        }
    }

    /// Sends `signal` to the main process, or to every process of the container.
    pub fn kill(&mut self, id: &str, signal: i32, all: bool) -> Result<(), LifecycleError> {
        let request = Request::Kill {
            id: id.into(),
            signal,
            all,
        };
        self.expect_done("kill", request)
    }

    /// Removes the container: cgroups, libcontainer state, overlay and directory.
    /// `force` kills it first if it still runs.
    pub fn delete(&mut self, id: &str, force: bool) -> Result<(), LifecycleError> {
        let request = Request::Delete {
            id: id.into(),
            force,
        };
        self.expect_done("delete", request)
    }

    pub fn state(&mut self, id: &str) -> Result<ContainerState, LifecycleError> {
        match self.helper.call(&Request::State { id: id.into() }, &[])? {
            Reply::State { state } => Ok(state),
            other => Err(unexpected("state", &other)),
        }
    }

    fn expect_done(&mut self, name: &'static str, request: Request) -> Result<(), LifecycleError> {
        match self.helper.call(&request, &[])? {
            Reply::Done => Ok(()),
            other => Err(unexpected(name, &other)),
        }
    }
}

fn unexpected(request: &'static str, reply: &Reply) -> LifecycleError {
    LifecycleError::UnexpectedReply {
        request,
        reply: format!("{reply:?}"),
    }
}

/// The three fds to send, `/dev/null` for the missing ones: a container without an
/// explicit stdin would otherwise inherit the helper's.
fn stdio_fds(stdio: &ContainerStdio) -> Result<[OwnedFd; 3], LifecycleError> {
    let pick = |fd: &Option<OwnedFd>, write: bool| -> Result<OwnedFd, LifecycleError> {
        match fd {
            Some(fd) => fd.try_clone().map_err(LifecycleError::DevNull),
            None => File::options()
                .read(!write)
                .write(write)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(LifecycleError::DevNull),
        }
    };
    Ok([
        pick(&stdio.stdin, false)?,
        pick(&stdio.stdout, true)?,
        pick(&stdio.stderr, true)?,
    ])
}

/// libcontainer's id rule plus a length cap (the id names directories and cgroups).
fn validate_id(id: &str) -> Result<(), LifecycleError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.+-".contains(c);
    let ok = !id.is_empty() && id.len() <= 64 && !id.starts_with('.') && id.chars().all(allowed);
    if ok {
        Ok(())
    } else {
        Err(LifecycleError::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_libcontainer_rules() {
        for good in ["web-1", "proj_web.1", "a+b", "A9"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            let err = validate_id(bad).unwrap_err();
            assert!(err.to_string().contains("invalid container id"), "{bad}");
        }
    }

    #[test]
    fn create_refuses_an_existing_container_and_leaves_it_alone() {
        let tmp = tempfile::tempdir().unwrap();
        // The helper is never contacted: the check comes first.
        let mut runtime = Runtime::new(Path::new("/bin/true"), tmp.path()).unwrap();
        let existing = runtime.container_dir("web");
        std::fs::create_dir_all(existing.join("upper")).unwrap();
        let image = ImageConfiguration::default();
        let config = ContainerConfig::default();
        let err = runtime
            .create(CreateOptions {
                id: "web",
                rootfs: RootfsSource::Dir(tmp.path().to_path_buf()),
                image: &image,
                config: &config,
                cgroups_path: "/rcompose/test/web",
                stdio: ContainerStdio::default(),
            })
            .unwrap_err();
        assert!(matches!(err, LifecycleError::Exists(_)), "{err}");
        assert!(err.to_string().contains("web already exists"));
        assert!(existing.join("upper").exists());
    }

    #[test]
    fn missing_stdio_becomes_dev_null() {
        let fds = stdio_fds(&ContainerStdio::default()).unwrap();
        for fd in &fds {
            let target = std::fs::read_link(format!("/proc/self/fd/{}", {
                use std::os::fd::AsRawFd;
                fd.as_raw_fd()
            }))
            .unwrap();
            assert_eq!(target, Path::new("/dev/null"));
        }
    }
}
