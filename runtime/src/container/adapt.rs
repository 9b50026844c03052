//! The spec as libcontainer 0.7 needs it: where it differs from runc, the spec
//! rcompose builds (runc's reading of the OCI spec) is rewritten here before
//! libcontainer sees it, and what it would only trip over inside the container's
//! init is refused up front.

use std::fs;
use std::path::Path;

use oci_spec::runtime::{Mount, MountBuilder, Process, Spec};

/// Rewrites what libcontainer 0.7 does differently from runc.
///
/// - `noNewPrivileges: false` must become absent: libcontainer tests the field for
///   presence, not value, so `Some(false)` makes it load the seccomp filter after
///   dropping CAP_SYS_ADMIN, where loading fails ("failed to load seccomp context").
///   Absent means false in the OCI spec, so nothing changes for the container.
/// - On cgroup v1 hosts libcontainer mounts the controllers read-write whatever the
///   `cgroup` mount's `ro` says, which would let a container raise its own limits.
///   A read-only `cgroup` mount becomes a tmpfs plus read-only binds of the
///   container's own cgroup dirs (they exist before the init sets up mounts).
pub(crate) fn adapt_spec(mut spec: Spec) -> Result<Spec, String> {
    if let Some(process) = spec.process() {
        spec.set_process(Some(without_false_no_new_privileges(process.clone())));
    }
    if !host_has_unified_cgroups() {
        let cgroups_path = spec_cgroups_path(&spec);
        let controllers = v1_controllers(Path::new(CGROUP_ROOT));
        let mounts = spec.mounts().clone().unwrap_or_default();
        let mounts = read_only_v1_cgroup_mounts(mounts, &controllers, &cgroups_path)
            .map_err(|e| format!("adapting the cgroup mount: {e}"))?;
        spec.set_mounts(Some(mounts));
    }
    Ok(spec)
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Whether `/sys/fs/cgroup` is a cgroup2 mount (unified hierarchy only).
fn host_has_unified_cgroups() -> bool {
    const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
    rustix::fs::statfs(CGROUP_ROOT)
        .is_ok_and(|fs| u64::try_from(fs.f_type).is_ok_and(|t| t == CGROUP2_SUPER_MAGIC))
}

/// The v1 controller hierarchies libcontainer creates the container's cgroup in:
/// real dirs only (co-mount symlinks such as `cpu,cpuacct` point at them), without
/// the cgroup2 `unified` and the `name=systemd` hierarchies.
fn v1_controllers(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "unified" && name != "systemd")
        .collect();
    names.sort();
    names
}

pub(crate) fn spec_cgroups_path(spec: &Spec) -> String {
    spec.linux()
        .as_ref()
        .and_then(|linux| linux.cgroups_path().clone())
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Replaces a read-only `cgroup` mount by a tmpfs and one read-only bind per v1
/// controller; a writable one (privileged) is left alone.
fn read_only_v1_cgroup_mounts(
    mounts: Vec<Mount>,
    controllers: &[String],
    cgroups_path: &str,
) -> Result<Vec<Mount>, oci_spec::OciSpecError> {
    let mut out = Vec::with_capacity(mounts.len() + controllers.len() + 1);
    for mount in mounts {
        let is_cgroup = mount.typ().as_deref() == Some("cgroup");
        let read_only = mount
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|opt| opt == "ro"));
        if !(is_cgroup && read_only) {
            out.push(mount);
            continue;
        }
        let dest = mount.destination().clone();
        out.push(
            MountBuilder::default()
                .destination(&dest)
                .typ("tmpfs")
                .source("tmpfs")
                .options(strings(&[
                    "nosuid", "noexec", "nodev", "mode=755", "size=64k",
                ]))
                .build()?,
        );
        for controller in controllers {
            let source = Path::new(CGROUP_ROOT)
                .join(controller)
                .join(cgroups_path.trim_start_matches('/'));
            out.push(
                MountBuilder::default()
                    .destination(dest.join(controller))
                    .typ("bind")
                    .source(source)
                    .options(strings(&["rbind", "ro", "nosuid", "noexec", "nodev"]))
                    .build()?,
            );
        }
    }
    Ok(out)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Checks what libcontainer would otherwise trip over inside the init, where the
/// error can only surface as a broken channel.
pub(crate) fn validate_spec(id: &str, spec: &Spec) -> Result<(), String> {
    let has_args = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .is_some_and(|args| !args.is_empty());
    if !has_args {
        return Err(format!("create {id}: the spec has no process.args"));
    }
    let has_cgroups_path = spec
        .linux()
        .as_ref()
        .is_some_and(|linux| linux.cgroups_path().is_some());
    if !has_cgroups_path {
        return Err(format!(
            "create {id}: the spec has no linux.cgroupsPath (libcontainer would pick a systemd name)"
        ));
    }
    Ok(())
}

/// `noNewPrivileges: false` as absent (see [`adapt_spec`]); also for exec'd processes.
pub(crate) fn without_false_no_new_privileges(mut process: Process) -> Process {
    if process.no_new_privileges() == Some(false) {
        process.set_no_new_privileges(None);
    }
    process
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_new_privileges_false_is_sent_as_absent() {
        let mut spec = Spec::default();
        if let Some(process) = spec.process_mut() {
            process.set_no_new_privileges(Some(false));
        }
        let adapted = adapt_spec(spec).unwrap();
        let nnp = adapted
            .process()
            .as_ref()
            .and_then(|p| p.no_new_privileges());
        assert_eq!(nnp, None);

        let mut spec = Spec::default();
        if let Some(process) = spec.process_mut() {
            process.set_no_new_privileges(Some(true));
        }
        let adapted = adapt_spec(spec).unwrap();
        let nnp = adapted
            .process()
            .as_ref()
            .and_then(|p| p.no_new_privileges());
        assert_eq!(nnp, Some(true));
    }

    fn cgroup_mount(options: &[&str]) -> Mount {
        MountBuilder::default()
            .destination("/sys/fs/cgroup")
            .typ("cgroup")
            .source("cgroup")
            .options(strings(options))
            .build()
            .unwrap()
    }

    #[test]
    fn read_only_cgroup_mount_becomes_read_only_binds_of_own_cgroup() {
        let proc_mount = MountBuilder::default()
            .destination("/proc")
            .typ("proc")
            .build()
            .unwrap();
        let mounts = vec![proc_mount, cgroup_mount(&["ro", "nosuid"])];
        let controllers = strings(&["memory", "pids"]);
        let out = read_only_v1_cgroup_mounts(mounts, &controllers, "/rcompose/p/web").unwrap();
        let summary: Vec<_> = out
            .iter()
            .map(|m| {
                (
                    m.destination().display().to_string(),
                    m.typ().clone().unwrap_or_default(),
                    m.source().as_ref().map(|s| s.display().to_string()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/proc".into(), "proc".into(), None),
                (
                    "/sys/fs/cgroup".into(),
                    "tmpfs".into(),
                    Some("tmpfs".into())
                ),
                (
                    "/sys/fs/cgroup/memory".into(),
                    "bind".into(),
                    Some("/sys/fs/cgroup/memory/rcompose/p/web".into())
                ),
                (
                    "/sys/fs/cgroup/pids".into(),
                    "bind".into(),
                    Some("/sys/fs/cgroup/pids/rcompose/p/web".into())
                ),
            ]
        );
        assert!(out.iter().skip(2).all(|m| m
            .options()
            .as_ref()
            .is_some_and(|o| o.contains(&"ro".to_string()))));
    }

    #[test]
    fn writable_cgroup_mount_of_privileged_containers_is_kept() {
        let mounts = vec![cgroup_mount(&["nosuid"])];
        let out = read_only_v1_cgroup_mounts(mounts.clone(), &strings(&["pids"]), "/x").unwrap();
        assert_eq!(out, mounts);
    }

    #[test]
    fn v1_controllers_skip_links_unified_and_systemd() {
        let tmp = tempfile::tempdir().unwrap();
        for dir in ["cpu", "memory", "unified", "systemd"] {
            fs::create_dir(tmp.path().join(dir)).unwrap();
        }
        std::os::unix::fs::symlink("cpu", tmp.path().join("cpuacct")).unwrap();
        assert_eq!(v1_controllers(tmp.path()), strings(&["cpu", "memory"]));
    }

    #[test]
    fn spec_without_args_or_cgroups_path_is_refused() {
        let mut spec = Spec::default();
        assert!(validate_spec("c", &spec)
            .unwrap_err()
            .contains("cgroupsPath"));
        if let Some(process) = spec.process_mut() {
            process.set_args(Some(vec![]));
        }
        assert!(validate_spec("c", &spec)
            .unwrap_err()
            .contains("process.args"));
    }
}
