//! Secrets and configs without a host file (`content:`, or `environment:`): written
//! into the container's compose directory and bind-mounted read-only at their targets.
//!
//! Docker Compose copies them into the container's filesystem before it starts; a
//! read-only bind of a private host file gives the process the same path, content,
//! owner and mode, as a file-backed secret has, and keeps the content out of the
//! container's writable layer.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcompose_runtime::atomic_file;
use rcompose_runtime::container::config::{Mount, MountKind, Propagation, UserNamespace};
use thiserror::Error;

use crate::backend::translate::InjectedFile;

/// Compose's mode for a secret or config that gives none.
const DEFAULT_MODE: u32 = 0o444;
/// Under the container's compose directory; only root may look inside.
const DIR_NAME: &str = "injected";

#[derive(Debug, Error)]
pub enum InjectedError {
    #[error("{key}: {field} {value:?} must be a numeric id")]
    NotNumeric {
        key: String,
        field: &'static str,
        value: String,
    },
    #[error("{key}: {field} {id} is outside the container's user namespace")]
    Unmapped {
        key: String,
        field: &'static str,
        id: u32,
    },
    #[error("{key}: writing {}: {source}", path.display())]
    Write {
        key: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// Writes each file (owner and mode as the reference asks, ids mapped into the user
/// namespace if there is one) under `compose_dir` and returns its read-only bind.
pub fn write_injected_files(
    compose_dir: &Path,
    files: &[InjectedFile],
    user_namespace: Option<&UserNamespace>,
) -> Result<Vec<Mount>, InjectedError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let dir = compose_dir.join(DIR_NAME);
    let write_error = |key: &str, path: &Path, source| InjectedError::Write {
        key: key.to_owned(),
        path: path.to_owned(),
        source,
    };
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&dir)
        .map_err(|e| write_error(&files[0].key, &dir, e))?;
    let mut mounts = Vec::with_capacity(files.len());
    for (index, file) in files.iter().enumerate() {
        let uid = host_id(
            file,
            "uid",
            file.uid.as_deref(),
            user_namespace,
            |ns, id| ns.host_uid(id),
        )?;
        let gid = host_id(
            file,
            "gid",
            file.gid.as_deref(),
            user_namespace,
            |ns, id| ns.host_gid(id),
        )?;
        // Numbered, not named after the target: any target is a valid file name then.
        let path = dir.join(index.to_string());
        let mode = file.mode.unwrap_or(DEFAULT_MODE) & 0o7777;
        atomic_file::replace(&path, file.content.as_bytes(), 0o600)
            .and_then(|()| std::os::unix::fs::chown(&path, Some(uid), Some(gid)))
            // After chown, which clears set-id bits.
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(mode)))
            .map_err(|e| write_error(&file.key, &path, e))?;
        mounts.push(Mount {
            target: file.target.clone(),
            read_only: true,
            kind: MountKind::Bind {
                source: path,
                propagation: Propagation::Rprivate,
                non_recursive: true,
            },
        });
    }
    Ok(mounts)
}

/// The host id that stands for the reference's `uid`/`gid` (root when not given).
fn host_id(
    file: &InjectedFile,
    field: &'static str,
    value: Option<&str>,
    user_namespace: Option<&UserNamespace>,
    to_host: impl Fn(&UserNamespace, u32) -> Option<u32>,
) -> Result<u32, InjectedError> {
    let id = match value {
        None => 0,
        Some(text) => text.trim().parse().map_err(|_| InjectedError::NotNumeric {
            key: file.key.clone(),
            field,
            value: text.to_owned(),
        })?,
    };
    match user_namespace {
        None => Ok(id),
        Some(ns) => to_host(ns, id).ok_or_else(|| InjectedError::Unmapped {
            key: file.key.clone(),
            field,
            id,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn file(target: &str, content: &str) -> InjectedFile {
        InjectedFile {
            key: "secrets.token".into(),
            target: target.into(),
            content: content.into(),
            uid: None,
            gid: None,
            mode: None,
        }
    }

    fn source(mount: &Mount) -> &Path {
        match &mount.kind {
            MountKind::Bind { source, .. } => source,
            other => panic!("not a bind: {other:?}"),
        }
    }

    #[test]
    fn files_are_written_with_compose_modes_and_bound_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut owned = file("/etc/app.conf", "key=value\n");
        owned.mode = Some(0o440);
        let mounts = write_injected_files(
            dir.path(),
            &[file("/run/secrets/token", "s3cret"), owned],
            None,
        )
        .unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].target, "/run/secrets/token");
        assert!(mounts.iter().all(|m| m.read_only));
        assert_eq!(fs::read_to_string(source(&mounts[0])).unwrap(), "s3cret");
        assert_eq!(
            fs::read_to_string(source(&mounts[1])).unwrap(),
            "key=value\n"
        );
        let mode = |m: &Mount| fs::metadata(source(m)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&mounts[0]), 0o444);
        assert_eq!(mode(&mounts[1]), 0o440);
        let private = fs::metadata(dir.path().join(DIR_NAME)).unwrap();
        assert_eq!(private.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn owners_are_numeric_and_mapped_into_the_user_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let mut owned = file("/run/secrets/token", "x");
        owned.uid = Some("1000".into());
        owned.gid = Some("1001".into());
        let remap = UserNamespace::remap_root(100_000, 200_000, 65_536);
        let mounts = write_injected_files(dir.path(), &[owned.clone()], Some(&remap));
        if rustix::process::geteuid().is_root() {
            let meta = fs::metadata(source(&mounts.unwrap()[0])).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (101_000, 201_001));
        }
        owned.uid = Some("www-data".into());
        let err = write_injected_files(dir.path(), &[owned.clone()], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secrets.token: uid \"www-data\" must be a numeric id"
        );
        owned.uid = Some("70000".into());
        let err = write_injected_files(dir.path(), &[owned], Some(&remap)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secrets.token: uid 70000 is outside the container's user namespace"
        );
    }
}
