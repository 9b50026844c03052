//! The OCI runtime spec of a container, built the way Docker builds it
//! (moby's `oci/defaults.go` + `daemon/oci_linux.go`).
//!
//! Pure apart from reading `/etc/passwd` and `/etc/group` in the rootfs, a
//! `seccomp=PATH` profile, the host's kernel version (for the seccomp profile) and
//! the host device nodes named in `devices`.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capabilities, Capability, Linux, LinuxCapabilities, LinuxCpu, LinuxDevice, LinuxDeviceCgroup,
    LinuxDeviceType, LinuxIdMapping, LinuxIdMappingBuilder, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, Mount as OciMount, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};
use thiserror::Error;

use super::config::{
    ContainerConfig, DeviceMapping, IdMapping, Mount, MountKind, NamespaceMode, Namespaces,
    Propagation, Resources, Ulimit, UserNamespace, UserNamespaceError, DEFAULT_SHM_SIZE,
};
use super::executable::{check_process_executable, ExecutableError};
use super::security::{
    container_capabilities, default_seccomp, parse_security_opts, seccomp_from_profile, Platform,
    SeccompChoice, SecurityError, SecurityOptions,
};
use super::user::{resolve_user, UserError};

/// Docker's default `PATH` for Linux containers.
pub const DEFAULT_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where Docker mounts its init binary for `--init`.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Paths Docker hides from containers.
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only in containers.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker rejects memory limits below this (6 MiB).
const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// The CFS period Docker uses for `cpus`, in microseconds.
const CPU_PERIOD_FOR_CPUS: u64 = 100_000;

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("no command specified: the image has no ENTRYPOINT or CMD and none is configured")]
    NoCommand,
    #[error("working_dir {0:?} is invalid: it needs to be an absolute path")]
    RelativeWorkingDir(String),
    #[error("{0}")]
    User(#[from] UserError),
    #[error("{0}")]
    Security(#[from] SecurityError),
    #[error("init: true needs an init binary, and none is configured")]
    MissingInitBinary,
    #[error("resources.{field}: {message}")]
    Resources {
        field: &'static str,
        message: String,
    },
    #[error("ulimits.{name}: {message}")]
    Ulimit { name: String, message: String },
    #[error("tmpfs {target}: invalid option {option:?}")]
    TmpfsOption { target: String, option: String },
    #[error("mount target {0:?} must be an absolute path")]
    RelativeMountTarget(String),
    #[error("building the OCI spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
    #[error("{0}")]
    Executable(#[from] ExecutableError),
    #[error("devices: error gathering device information while adding custom device {path:?}: {message}")]
    Device { path: String, message: String },
    #[error("{0}")]
    InvalidUserNamespace(#[from] UserNamespaceError),
    #[error("user_namespace: {0}")]
    UserNamespace(String),
}

fn resources_error(field: &'static str, message: impl Into<String>) -> SpecError {
    SpecError::Resources {
        field,
        message: message.into(),
    }
}

/// Builds the spec for `config` on top of `image`, for the host platform.
pub fn build_spec(
    image: &ImageConfiguration,
    config: &ContainerConfig,
    rootfs: &Path,
    cgroups_path: &str,
) -> Result<Spec, SpecError> {
    build_spec_for_platform(image, config, rootfs, cgroups_path, &Platform::host())
}

/// [`build_spec`] with an explicit platform for the seccomp conversion.
pub fn build_spec_for_platform(
    image: &ImageConfiguration,
    config: &ContainerConfig,
    rootfs: &Path,
    cgroups_path: &str,
    platform: &Platform,
) -> Result<Spec, SpecError> {
    let image_config = image.config().clone().unwrap_or_default();
    let security = parse_security_opts(&config.security_opt)?;
    let caps = container_capabilities(&config.cap_add, &config.cap_drop, config.privileged)?;

    let mut args = resolve_args(
        image_config.entrypoint().as_deref(),
        image_config.cmd().as_deref(),
        config.entrypoint.as_deref(),
        config.command.as_deref(),
    )?;
    if config.init {
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }

    let user_spec = config
        .user
        .clone()
        .filter(|u| !u.is_empty())
        .or_else(|| image_config.user().clone())
        .unwrap_or_default();
    let exec_user = resolve_user(rootfs, &user_spec, &config.group_add)?;

    let hostname = config.hostname.clone().unwrap_or_default();
    let mut env = container_env(
        image_config.env().as_deref().unwrap_or_default(),
        &config.env,
        &hostname,
        config.tty,
    );
    if !env.iter().any(|e| env_key(e) == "HOME") {
        env.push(format!("HOME={}", exec_user.home));
    }

    let cwd = working_dir(
        config.working_dir.as_deref(),
        image_config.working_dir().as_deref(),
    )?;

    let mut user = User::default();
    user.set_uid(exec_user.uid);
    user.set_gid(exec_user.gid);
    user.set_additional_gids(Some(exec_user.additional_gids));

    let mut process = Process::default();
    process.set_terminal(Some(config.tty));
    process.set_user(user);
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_capabilities(Some(capability_sets(&caps)));
    process.set_rlimits(rlimits(&config.ulimits)?);
    process.set_no_new_privileges(Some(security.no_new_privileges));
    process.set_oom_score_adj(Some(config.resources.oom_score_adj));

    let mut root = Root::default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(config.read_only));

    let mut spec = Spec::default();
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_hostname(match config.namespaces.uts {
        NamespaceMode::Host => None,
        _ => Some(hostname),
    });
    spec.set_domainname(
        config
            .domainname
            .clone()
            .filter(|d| !d.is_empty() && config.namespaces.uts != NamespaceMode::Host),
    );
    spec.set_annotations(None);
    let (mounts, rootfs_propagation) = container_mounts(config)?;
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux_section(
        config,
        &security,
        &caps,
        cgroups_path,
        rootfs_propagation,
        platform,
    )?));
    // Docker only finds a missing command when the container starts; the rootfs is
    // already here, so say it now, before anything is created.
    check_process_executable(&spec, rootfs, config.init)?;
    apply_user_namespace(&mut spec, config)?;
    Ok(spec)
}

/// Puts the container in a user namespace of its own when `config.user_namespace`
/// asks for one (Docker's userns-remap): the namespace, its id maps, and what must
/// change with it. The rootfs must be prepared with the same mappings.
///
/// Refused like Docker refuses them: privileged, and the host's network or PID
/// namespace; also the host IPC namespace (its mqueue cannot be mounted from a
/// child user namespace) and joined namespaces: libcontainer 0.7 enters them after
/// creating the user namespace, and a namespace owned by another user namespace
/// cannot be joined from there. The network is then set up in the container's own
/// namespace (`/proc/<pid>/ns/net`) between create and start.
/// libcontainer itself bind-mounts device nodes instead of mknod in a user namespace.
fn apply_user_namespace(spec: &mut Spec, config: &ContainerConfig) -> Result<(), SpecError> {
    let Some(userns) = &config.user_namespace else {
        return Ok(());
    };
    userns.validate()?;
    check_user_namespace_conflicts(config)?;
    if let Some(process) = spec.process() {
        check_process_ids_mapped(process.user(), userns)?;
    }
    if let Some(mounts) = spec.mounts_mut() {
        for mount in mounts.iter_mut() {
            drop_unmapped_devpts_gid(mount, userns);
        }
    }
    let linux = spec.linux_mut().get_or_insert_with(Linux::default);
    // Docker's default "0 2147483647" names gids the namespace does not map, which
    // the kernel refuses; like Docker, drop it unless it was asked for.
    if !config.sysctls.contains_key(PING_GROUP_RANGE) {
        if let Some(sysctls) = linux.sysctl_mut() {
            sysctls.remove(PING_GROUP_RANGE);
        }
    }
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut user = LinuxNamespace::default();
    user.set_typ(LinuxNamespaceType::User);
    namespaces.insert(0, user);
    linux.set_namespaces(Some(namespaces));
    linux.set_uid_mappings(Some(oci_id_mappings(&userns.uid_mappings)?));
    linux.set_gid_mappings(Some(oci_id_mappings(&userns.gid_mappings)?));
    Ok(())
}

const PING_GROUP_RANGE: &str = "net.ipv4.ping_group_range";

fn check_user_namespace_conflicts(config: &ContainerConfig) -> Result<(), SpecError> {
    let conflict = |message: String| Err(SpecError::UserNamespace(message));
    if config.privileged {
        return conflict("privileged mode is incompatible with user namespaces; run privileged containers without one".into());
    }
    let modes = &config.namespaces;
    let kinds = [
        ("network", &modes.network),
        ("PID", &modes.pid),
        ("IPC", &modes.ipc),
        ("UTS", &modes.uts),
        ("cgroup", &modes.cgroup),
    ];
    for (kind, mode) in kinds {
        match mode {
            NamespaceMode::Host if matches!(kind, "network" | "PID" | "IPC") => {
                return conflict(format!(
                    "cannot share the host's {kind} namespace when user namespaces are enabled"
                ));
            }
            NamespaceMode::Join(path) => {
                return conflict(format!(
                    "cannot join the {kind} namespace {} from a new user namespace; leave it private (set the network up in /proc/<pid>/ns/net after create)",
                    path.display()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The process must run as ids that exist inside the namespace: the kernel
/// refuses to switch to unmapped ones.
fn check_process_ids_mapped(user: &User, userns: &UserNamespace) -> Result<(), SpecError> {
    if userns.host_uid(user.uid()).is_none() {
        return Err(SpecError::UserNamespace(format!(
            "the container user's uid {} is not mapped by the user namespace",
            user.uid()
        )));
    }
    let gids = std::iter::once(user.gid()).chain(user.additional_gids().iter().flatten().copied());
    for gid in gids {
        if userns.host_gid(gid).is_none() {
            return Err(SpecError::UserNamespace(format!(
                "the container user's group {gid} is not mapped by the user namespace"
            )));
        }
    }
    Ok(())
}

/// devpts' `gid=5` (tty) is only valid when gid 5 is mapped; without it the
/// kernel's default (the mounter's gid) applies, as runc's rootless specs do.
fn drop_unmapped_devpts_gid(mount: &mut OciMount, userns: &UserNamespace) {
    if mount.typ().as_deref() != Some("devpts") {
        return;
    }
    if let Some(options) = mount.options_mut() {
        options.retain(|option| {
            option
                .strip_prefix("gid=")
                .and_then(|gid| gid.parse().ok())
                .is_none_or(|gid| userns.host_gid(gid).is_some())
        });
    }
}

fn oci_id_mappings(mappings: &[IdMapping]) -> Result<Vec<LinuxIdMapping>, SpecError> {
    mappings
        .iter()
        .map(|m| {
            Ok(LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.size)
                .build()?)
        })
        .collect()
}

/// Docker's ENTRYPOINT/CMD rules (`daemon/commit.go` merge + create):
/// a configured entrypoint replaces the image's, and the image CMD is only used when
/// no entrypoint was configured (or it was configured empty) and no command was
/// given. An entrypoint of `[""]` clears it.
pub fn resolve_args(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint: Option<&[String]>,
    command: Option<&[String]>,
) -> Result<Vec<String>, SpecError> {
    let mut cmd: Vec<String> = command.unwrap_or_default().to_vec();
    let mut entry: Vec<String> = match entrypoint {
        Some(given) => given.to_vec(),
        None => image_entrypoint.unwrap_or_default().to_vec(),
    };
    let entrypoint_given_nonempty = entrypoint.is_some_and(|e| !e.is_empty());
    if !entrypoint_given_nonempty && cmd.is_empty() {
        cmd = image_cmd.unwrap_or_default().to_vec();
    }
    if entry.len() == 1 && entry.first().is_some_and(|e| e.is_empty()) {
        entry.clear();
    }
    entry.extend(cmd);
    if entry.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(entry)
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(key, _)| key)
}

/// The process environment as Docker builds it: PATH, HOSTNAME and (with a tty)
/// TERM=xterm first; then the configured variables merged with the image's (the
/// configured ones win), each replacing a default of the same name in place or
/// being appended. A bare `KEY` removes that variable.
pub fn container_env(
    image_env: &[String],
    env: &[String],
    hostname: &str,
    tty: bool,
) -> Vec<String> {
    // Docker's merge: the configured env, then image entries whose key it lacks.
    let mut merged: Vec<&String> = env.iter().collect();
    merged.extend(
        image_env
            .iter()
            .filter(|img| !env.iter().any(|e| env_key(e) == env_key(img))),
    );

    let mut result: Vec<Option<String>> = vec![
        Some(format!("PATH={DEFAULT_PATH_ENV}")),
        Some(format!("HOSTNAME={hostname}")),
    ];
    if tty {
        result.push(Some("TERM=xterm".to_string()));
    }
    let defaults: Vec<String> = result
        .iter()
        .flatten()
        .map(|e| env_key(e).to_string())
        .collect();

    for entry in merged {
        // Only the defaults are replaced in place; repeated keys are appended, as
        // Docker's ReplaceOrAppendEnvValues does.
        let slot = defaults
            .iter()
            .position(|k| k == env_key(entry))
            .and_then(|i| result.get_mut(i));
        match (entry.contains('='), slot) {
            (true, Some(slot)) => *slot = Some(entry.clone()),
            (true, None) => result.push(Some(entry.clone())),
            (false, Some(slot)) => *slot = None,
            (false, None) => {}
        }
    }
    result.into_iter().flatten().collect()
}

fn working_dir(configured: Option<&str>, image: Option<&str>) -> Result<String, SpecError> {
    let dir = configured
        .filter(|d| !d.is_empty())
        .or(image.filter(|d| !d.is_empty()))
        .unwrap_or("/");
    if !dir.starts_with('/') {
        return Err(SpecError::RelativeWorkingDir(dir.to_string()));
    }
    Ok(clean_path(dir))
}

/// Lexically cleans an absolute path (`/a/./b/../c/` → `/a/c`).
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(name) => parts.push(name.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

fn capability_sets(caps: &[String]) -> LinuxCapabilities {
    let set: Capabilities = caps
        .iter()
        .filter_map(|c| {
            serde_json::from_value::<Capability>(serde_json::Value::String(c.clone())).ok()
        })
        .collect();
    let mut sets = LinuxCapabilities::default();
    sets.set_bounding(Some(set.clone()));
    sets.set_effective(Some(set.clone()));
    sets.set_permitted(Some(set));
    // Docker leaves the inheritable and ambient sets empty.
    sets.set_inheritable(None);
    sets.set_ambient(None);
    sets
}

/// Docker's ulimit names (go-units).
fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    Some(match name {
        "core" => PosixRlimitType::RlimitCore,
        "cpu" => PosixRlimitType::RlimitCpu,
        "data" => PosixRlimitType::RlimitData,
        "fsize" => PosixRlimitType::RlimitFsize,
        "locks" => PosixRlimitType::RlimitLocks,
        "memlock" => PosixRlimitType::RlimitMemlock,
        "msgqueue" => PosixRlimitType::RlimitMsgqueue,
        "nice" => PosixRlimitType::RlimitNice,
        "nofile" => PosixRlimitType::RlimitNofile,
        "nproc" => PosixRlimitType::RlimitNproc,
        "rss" => PosixRlimitType::RlimitRss,
        "rtprio" => PosixRlimitType::RlimitRtprio,
        "rttime" => PosixRlimitType::RlimitRttime,
        "sigpending" => PosixRlimitType::RlimitSigpending,
        "stack" => PosixRlimitType::RlimitStack,
        _ => return None,
    })
}

fn rlimit_value(ulimit: &Ulimit, value: i64) -> Result<u64, SpecError> {
    match value {
        -1 => Ok(u64::MAX),
        v => u64::try_from(v).map_err(|_| SpecError::Ulimit {
            name: ulimit.name.clone(),
            message: format!("{v} is not a valid limit (use -1 for unlimited)"),
        }),
    }
}

/// Docker leaves rlimits out unless ulimits are configured (the process then
/// inherits the runtime's).
fn rlimits(ulimits: &[Ulimit]) -> Result<Option<Vec<PosixRlimit>>, SpecError> {
    if ulimits.is_empty() {
        return Ok(None);
    }
    let mut limits = Vec::with_capacity(ulimits.len());
    for ulimit in ulimits {
        let typ =
            rlimit_type(&ulimit.name.to_ascii_lowercase()).ok_or_else(|| SpecError::Ulimit {
                name: ulimit.name.clone(),
                message: format!("invalid ulimit type: {}", ulimit.name),
            })?;
        let soft = rlimit_value(ulimit, ulimit.soft)?;
        let hard = rlimit_value(ulimit, ulimit.hard)?;
        if soft > hard {
            return Err(SpecError::Ulimit {
                name: ulimit.name.clone(),
                message: format!(
                    "soft limit must be less than or equal to hard limit: {} > {}",
                    ulimit.soft, ulimit.hard
                ),
            });
        }
        let limit = PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft)
            .hard(hard)
            .build()?;
        limits.push(limit);
    }
    Ok(Some(limits))
}

fn oci_mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> OciMount {
    let mut mount = OciMount::default();
    mount.set_destination(PathBuf::from(destination));
    mount.set_typ(Some(typ.to_string()));
    mount.set_source(Some(PathBuf::from(source)));
    mount.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    mount
}

/// Docker's default mounts, in its order; `/dev/shm` gets `size=<shm_size>`.
pub fn default_mounts(shm_size: u64) -> Vec<OciMount> {
    let shm_size_option = format!("size={shm_size}");
    vec![
        oci_mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        oci_mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        oci_mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        oci_mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        oci_mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        oci_mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        oci_mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size_option],
        ),
    ]
}

/// A user mount before conversion: where it goes and its OCI form.
struct UserMount {
    destination: String,
    mount: OciMount,
    propagation: Option<Propagation>,
}

/// All mounts in Docker's order: the defaults not shadowed by a user mount (a user
/// `/dev` shadows every `/dev/…` default), then the user mounts sorted by depth.
/// Also returns the rootfs propagation that shared/slave bind mounts need.
fn container_mounts(
    config: &ContainerConfig,
) -> Result<(Vec<OciMount>, Option<String>), SpecError> {
    let mut user_mounts = tmpfs_map_mounts(config)?;
    for mount in &config.mounts {
        user_mounts.push(user_mount(mount)?);
    }
    if config.namespaces.ipc == NamespaceMode::Host {
        user_mounts.push(user_mount(&Mount {
            target: "/dev/shm".into(),
            read_only: false,
            kind: MountKind::Bind {
                source: "/dev/shm".into(),
                propagation: Propagation::Rprivate,
                non_recursive: false,
            },
        })?);
    }
    user_mounts.sort_by_key(|m| m.destination.split('/').count());

    let shadowed = |dest: &str| {
        user_mounts.iter().any(|u| {
            u.destination == dest || (u.destination == "/dev" && dest.starts_with("/dev/"))
        })
    };
    let mut defaults: Vec<OciMount> =
        default_mounts(config.resources.shm_size.unwrap_or(DEFAULT_SHM_SIZE))
            .into_iter()
            .filter(|m| !shadowed(&m.destination().to_string_lossy()))
            .collect();
    if config.init {
        let binary = config
            .init_binary
            .as_ref()
            .ok_or(SpecError::MissingInitBinary)?;
        defaults.push(oci_mount(
            INIT_PATH,
            "bind",
            &binary.to_string_lossy(),
            &["bind", "ro"],
        ));
    }
    adjust_default_mounts(&mut defaults, config);

    let propagation = rootfs_propagation(user_mounts.iter().filter_map(|m| m.propagation));
    let mut mounts = defaults;
    mounts.extend(user_mounts.into_iter().map(|m| m.mount));
    Ok((mounts, propagation))
}

/// Read-only rootfs makes the defaults read-only too, except the ones a process
/// must write; privileged makes `/sys` and the cgroup mount writable.
fn adjust_default_mounts(defaults: &mut [OciMount], config: &ContainerConfig) {
    const ALWAYS_WRITABLE: [&str; 5] = ["/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"];
    for mount in defaults.iter_mut() {
        let dest = mount.destination().to_string_lossy().into_owned();
        let mut options = mount.options().clone().unwrap_or_default();
        if config.read_only
            && !ALWAYS_WRITABLE.contains(&dest.as_str())
            && !options.iter().any(|o| o == "ro")
        {
            options.push("ro".to_string());
        }
        let is_cgroup = mount.typ().as_deref() == Some("cgroup");
        if config.privileged && (dest == "/sys" || is_cgroup) {
            options.retain(|o| o != "ro");
        }
        mount.set_options(Some(options));
    }
}

/// Shared bind mounts need a shared rootfs; slave ones at least `rslave`.
fn rootfs_propagation(propagations: impl Iterator<Item = Propagation>) -> Option<String> {
    let mut result: Option<&str> = None;
    for p in propagations {
        match p {
            Propagation::Shared | Propagation::Rshared => result = Some("shared"),
            Propagation::Slave | Propagation::Rslave if result.is_none() => result = Some("rslave"),
            _ => {}
        }
    }
    result.map(str::to_string)
}

fn check_target(target: &str) -> Result<String, SpecError> {
    if !target.starts_with('/') {
        return Err(SpecError::RelativeMountTarget(target.to_string()));
    }
    Ok(clean_path(target))
}

/// `tmpfs: {dest: "size=…,mode=…"}` entries, as `docker run --tmpfs`.
fn tmpfs_map_mounts(config: &ContainerConfig) -> Result<Vec<UserMount>, SpecError> {
    config
        .tmpfs
        .iter()
        .map(|(target, data)| {
            let destination = check_target(target)?;
            let mount = tmpfs_mount(&destination, data)?;
            Ok(UserMount {
                destination,
                mount,
                propagation: None,
            })
        })
        .collect()
}

fn tmpfs_mount(destination: &str, data: &str) -> Result<OciMount, SpecError> {
    let mut options: Vec<String> = ["noexec", "nosuid", "nodev", "rprivate"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    options.extend(
        data.split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string),
    );
    let merged = merge_tmpfs_options(&options).map_err(|option| SpecError::TmpfsOption {
        target: destination.to_string(),
        option,
    })?;
    let refs: Vec<&str> = merged.iter().map(String::as_str).collect();
    Ok(oci_mount(destination, "tmpfs", "tmpfs", &refs))
}

/// The group of mutually exclusive mount flags an option belongs to.
fn flag_group(option: &str) -> Option<&'static str> {
    Some(match option {
        "ro" | "rw" => "rdonly",
        "suid" | "nosuid" => "nosuid",
        "dev" | "nodev" => "nodev",
        "exec" | "noexec" => "noexec",
        "sync" | "async" => "sync",
        "dirsync" => "dirsync",
        "remount" => "remount",
        "mand" | "nomand" => "mand",
        "atime" | "noatime" => "noatime",
        "diratime" | "nodiratime" => "nodiratime",
        "relatime" | "norelatime" => "relatime",
        "strictatime" | "nostrictatime" => "strictatime",
        "bind" | "rbind" | "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
        | "unbindable" | "runbindable" => "propagation",
        _ => return None,
    })
}

/// Docker's `MergeTmpfsOptions`: the last of each flag group and each `key=value`
/// wins, keeping the order of the survivors. Returns the offending option on error.
fn merge_tmpfs_options(options: &[String]) -> Result<Vec<String>, String> {
    const DATA_KEYS: [&str; 7] = [
        "size",
        "mode",
        "uid",
        "gid",
        "nr_inodes",
        "nr_blocks",
        "mpol",
    ];
    let mut seen: Vec<String> = Vec::new();
    let mut merged: Vec<String> = Vec::new();
    for option in options.iter().rev() {
        if option == "defaults" {
            continue;
        }
        let key = match flag_group(option) {
            Some(group) => group.to_string(),
            None => match option.split_once('=') {
                Some((key, _)) if DATA_KEYS.contains(&key) => format!("data:{key}"),
                _ => return Err(option.clone()),
            },
        };
        if !seen.contains(&key) {
            seen.push(key);
            merged.push(option.clone());
        }
    }
    merged.reverse();
    Ok(merged)
}

/// Docker's tmpfs size: the largest of g/m/k that divides the byte count.
fn tmpfs_size_option(size: u64) -> String {
    for (suffix, divisor) in [("g", 1u64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if size % divisor == 0 {
            return format!("size={}{suffix}", size / divisor);
        }
    }
    format!("size={size}")
}

fn user_mount(mount: &Mount) -> Result<UserMount, SpecError> {
    let destination = check_target(&mount.target)?;
    match &mount.kind {
        MountKind::Tmpfs { size, mode } => {
            let mut data = Vec::new();
            if mount.read_only {
                data.push("ro".to_string());
            }
            if let Some(mode) = mode.filter(|m| *m != 0) {
                data.push(format!("mode={mode:o}"));
            }
            if let Some(size) = size.filter(|s| *s != 0) {
                data.push(tmpfs_size_option(size));
            }
            Ok(UserMount {
                mount: tmpfs_mount(&destination, &data.join(","))?,
                destination,
                propagation: None,
            })
        }
        MountKind::Bind {
            source,
            propagation,
            non_recursive,
        } => {
            let mut options = vec![if *non_recursive { "bind" } else { "rbind" }];
            if mount.read_only {
                options.push("ro");
            }
            options.push(propagation.as_str());
            Ok(UserMount {
                mount: oci_mount(&destination, "bind", &source.to_string_lossy(), &options),
                destination,
                propagation: Some(*propagation),
            })
        }
    }
}

fn namespace(typ: LinuxNamespaceType, mode: &NamespaceMode) -> Option<LinuxNamespace> {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    match mode {
        NamespaceMode::Host => return None,
        NamespaceMode::Private => ns.set_path(None),
        NamespaceMode::Join(path) => ns.set_path(Some(path.clone())),
    };
    Some(ns)
}

/// Docker's order: mount, network, uts, pid, ipc, then cgroup.
fn namespaces(modes: &Namespaces) -> Vec<LinuxNamespace> {
    [
        namespace(LinuxNamespaceType::Mount, &NamespaceMode::Private),
        namespace(LinuxNamespaceType::Network, &modes.network),
        namespace(LinuxNamespaceType::Uts, &modes.uts),
        namespace(LinuxNamespaceType::Pid, &modes.pid),
        namespace(LinuxNamespaceType::Ipc, &modes.ipc),
        namespace(LinuxNamespaceType::Cgroup, &modes.cgroup),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn linux_section(
    config: &ContainerConfig,
    security: &SecurityOptions,
    caps: &[String],
    cgroups_path: &str,
    rootfs_propagation: Option<String>,
    platform: &Platform,
) -> Result<Linux, SpecError> {
    let (devices, device_rules) = devices_and_rules(config)?;
    let mut resources = linux_resources(&config.resources)?;
    resources.set_devices(Some(device_rules));

    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces(&config.namespaces)));
    linux.set_cgroups_path(Some(PathBuf::from(cgroups_path)));
    linux.set_resources(Some(resources));
    linux.set_devices(Some(devices));
    linux.set_sysctl(Some(sysctls(config)));
    linux.set_rootfs_propagation(rootfs_propagation);
    let confined_paths = !config.privileged && !security.unconfined_system_paths;
    linux.set_masked_paths(confined_paths.then(|| DEFAULT_MASKED_PATHS.map(String::from).to_vec()));
    linux.set_readonly_paths(
        confined_paths.then(|| DEFAULT_READONLY_PATHS.map(String::from).to_vec()),
    );
    linux.set_seccomp(seccomp(config, security, caps, platform)?);
    Ok(linux)
}

fn seccomp(
    config: &ContainerConfig,
    security: &SecurityOptions,
    caps: &[String],
    platform: &Platform,
) -> Result<Option<oci_spec::runtime::LinuxSeccomp>, SpecError> {
    if config.privileged {
        return Ok(None);
    }
    Ok(match &security.seccomp {
        SeccompChoice::Unconfined => None,
        SeccompChoice::Default => Some(default_seccomp(caps, platform)?),
        SeccompChoice::Profile(json) => seccomp_from_profile(json, caps, platform)?,
    })
}

/// Docker sets these for containers with a network namespace of their own, so
/// that unprivileged processes can ping and bind low ports; configured sysctls win.
fn sysctls(config: &ContainerConfig) -> HashMap<String, String> {
    let mut sysctls = HashMap::new();
    if config.namespaces.network != NamespaceMode::Host {
        sysctls.insert(
            "net.ipv4.ping_group_range".to_string(),
            "0 2147483647".to_string(),
        );
        sysctls.insert(
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "0".to_string(),
        );
    }
    sysctls.extend(config.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())));
    sysctls
}

fn device_rule(
    allow: bool,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(allow);
    rule.set_typ(major.map(|_| LinuxDeviceType::C));
    rule.set_major(major);
    rule.set_minor(minor);
    rule.set_access(Some(access.to_string()));
    rule
}

/// Docker's device cgroup rules: deny all, then allow the standard nodes
/// (zero, null, urandom, random, tty, console) and deny fuse. The runtime adds
/// its own allowances for ptmx, the pty slaves and mknod.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    vec![
        device_rule(false, None, None, "rwm"),
        device_rule(true, Some(1), Some(5), "rwm"),
        device_rule(true, Some(1), Some(3), "rwm"),
        device_rule(true, Some(1), Some(9), "rwm"),
        device_rule(true, Some(1), Some(8), "rwm"),
        device_rule(true, Some(5), Some(0), "rwm"),
        device_rule(true, Some(5), Some(1), "rwm"),
        device_rule(false, Some(10), Some(229), "rwm"),
    ]
}

/// The extra device nodes and the cgroup rules. Privileged containers may use
/// every device. The default nodes (null, zero, full, random, urandom, tty, and
/// ptmx from devpts) are created by the runtime, as the OCI spec requires.
fn devices_and_rules(
    config: &ContainerConfig,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut devices = Vec::new();
    let mut rules = if config.privileged {
        let mut allow_all = LinuxDeviceCgroup::default();
        allow_all.set_allow(true);
        allow_all.set_access(Some("rwm".to_string()));
        vec![allow_all]
    } else {
        default_device_rules()
    };
    for mapping in &config.devices {
        let permissions = mapping
            .cgroup_permissions
            .clone()
            .unwrap_or_else(|| "rwm".to_string());
        check_device_permissions(mapping, &permissions)?;
        for device in devices_from_path(mapping)? {
            if !config.privileged {
                let mut rule = LinuxDeviceCgroup::from(&device);
                rule.set_access(Some(permissions.clone()));
                rules.push(rule);
            }
            devices.push(device);
        }
    }
    Ok((devices, rules))
}

fn device_error(mapping: &DeviceMapping, message: impl Into<String>) -> SpecError {
    SpecError::Device {
        path: mapping.path_on_host.display().to_string(),
        message: message.into(),
    }
}

fn check_device_permissions(mapping: &DeviceMapping, permissions: &str) -> Result<(), SpecError> {
    if permissions.is_empty() || !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(device_error(
            mapping,
            format!("invalid cgroup permissions {permissions:?}: use a combination of r, w and m"),
        ));
    }
    Ok(())
}

/// A device node, or every node under a directory, from the host.
fn devices_from_path(mapping: &DeviceMapping) -> Result<Vec<LinuxDevice>, SpecError> {
    let host = &mapping.path_on_host;
    let target = mapping
        .path_in_container
        .clone()
        .unwrap_or_else(|| host.clone());
    let meta = fs::metadata(host).map_err(|e| device_error(mapping, e.to_string()))?;
    if meta.is_dir() {
        let mut found = Vec::new();
        collect_dir_devices(mapping, host, &target, &mut found)?;
        return Ok(found);
    }
    host_device(host, &target)
        .map(|d| vec![d])
        .ok_or_else(|| device_error(mapping, "not a device node"))
}

fn collect_dir_devices(
    mapping: &DeviceMapping,
    host_dir: &Path,
    target_dir: &Path,
    found: &mut Vec<LinuxDevice>,
) -> Result<(), SpecError> {
    let entries = fs::read_dir(host_dir).map_err(|e| device_error(mapping, e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| device_error(mapping, e.to_string()))?;
        let host = entry.path();
        let target = target_dir.join(entry.file_name());
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            collect_dir_devices(mapping, &host, &target, found)?;
        } else if let Some(device) = host_device(&host, &target) {
            found.push(device);
        }
    }
    Ok(())
}

/// `None` when `host` is not a character or block device.
fn host_device(host: &Path, target: &Path) -> Option<LinuxDevice> {
    let meta = fs::metadata(host).ok()?;
    let file_type = meta.file_type();
    let typ = if file_type.is_char_device() {
        LinuxDeviceType::C
    } else if file_type.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let mut device = LinuxDevice::default();
    device.set_path(target.to_path_buf());
    device.set_typ(typ);
    device.set_major(i64::from(rustix::fs::major(meta.rdev())));
    device.set_minor(i64::from(rustix::fs::minor(meta.rdev())));
    device.set_file_mode(Some(meta.mode() & 0o7777));
    device.set_uid(Some(meta.uid()));
    device.set_gid(Some(meta.gid()));
    Some(device)
}

/// Memory, CPU and pids limits, validated and converted as Docker does.
pub fn linux_resources(resources: &Resources) -> Result<LinuxResources, SpecError> {
    let mut linux = LinuxResources::default();
    linux.set_memory(Some(memory_limits(resources)?));
    linux.set_cpu(Some(cpu_limits(resources)?));
    linux.set_pids(resources.pids_limit.map(|limit| {
        let mut pids = LinuxPids::default();
        pids.set_limit(if limit <= 0 { -1 } else { limit });
        pids
    }));
    Ok(linux)
}

fn memory_limits(r: &Resources) -> Result<LinuxMemory, SpecError> {
    if r.memory != 0 && r.memory < MIN_MEMORY {
        return Err(resources_error(
            "memory",
            "minimum memory limit allowed is 6MB",
        ));
    }
    if r.memory_swap < -1 {
        return Err(resources_error(
            "memory_swap",
            "must be -1 (unlimited), 0 or a size",
        ));
    }
    if r.memory == 0 && r.memory_swap > 0 {
        return Err(resources_error(
            "memory_swap",
            "you should always set the memory limit when using a memory+swap limit",
        ));
    }
    if r.memory > 0 && r.memory_swap > 0 && r.memory_swap < r.memory {
        return Err(resources_error(
            "memory_swap",
            "minimum memory+swap limit should be larger than the memory limit",
        ));
    }
    if r.memory_reservation < 0 {
        return Err(resources_error(
            "memory_reservation",
            "must not be negative",
        ));
    }
    if r.memory > 0 && r.memory_reservation > 0 && r.memory < r.memory_reservation {
        return Err(resources_error(
            "memory_reservation",
            "the memory limit can not be less than the memory reservation",
        ));
    }

    let mut memory = LinuxMemory::default();
    memory.set_limit((r.memory > 0).then_some(r.memory));
    memory.set_reservation((r.memory_reservation > 0).then_some(r.memory_reservation));
    // Docker: swap defaults to twice the memory; -1 is unlimited.
    let swap = match (r.memory, r.memory_swap) {
        (m, 0) if m > 0 => Some(m.saturating_mul(2)),
        (_, s) if s > 0 || s == -1 => Some(s),
        _ => None,
    };
    memory.set_swap(swap);
    memory.set_disable_oom_killer(Some(r.oom_kill_disable));
    Ok(memory)
}

fn cpu_limits(r: &Resources) -> Result<LinuxCpu, SpecError> {
    if r.cpu_shares < 0 {
        return Err(resources_error("cpu_shares", "shares: invalid argument"));
    }
    if !r.cpus.is_finite() || r.cpus < 0.0 {
        return Err(resources_error(
            "cpus",
            "must be a number of CPUs, 0 or more",
        ));
    }
    let nano_cpus = (r.cpus * 1e9).round() as i64;
    if nano_cpus > 0 && r.cpu_period > 0 {
        return Err(resources_error(
            "cpus",
            "conflicting options: cpus and cpu_period cannot both be set",
        ));
    }
    if nano_cpus > 0 && r.cpu_quota > 0 {
        return Err(resources_error(
            "cpus",
            "conflicting options: cpus and cpu_quota cannot both be set",
        ));
    }
    if r.cpu_period != 0 && !(1000..=1_000_000).contains(&r.cpu_period) {
        return Err(resources_error(
            "cpu_period",
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ));
    }
    if r.cpu_quota > 0 && r.cpu_quota < 1000 {
        return Err(resources_error(
            "cpu_quota",
            "CPU cfs quota can not be less than 1ms (i.e. 1000)",
        ));
    }

    let mut cpu = LinuxCpu::default();
    // Docker writes 0 shares too; runtimes ignore 0, so it is left out.
    cpu.set_shares(u64::try_from(r.cpu_shares).ok().filter(|s| *s > 0));
    cpu.set_cpus(r.cpuset.clone().filter(|s| !s.is_empty()));
    cpu.set_mems(r.cpuset_mems.clone().filter(|s| !s.is_empty()));
    if nano_cpus > 0 {
        let quota = nano_cpus.saturating_mul(CPU_PERIOD_FOR_CPUS as i64) / 1_000_000_000;
        cpu.set_period(Some(CPU_PERIOD_FOR_CPUS));
        cpu.set_quota(Some(quota));
    }
    if r.cpu_period != 0 {
        cpu.set_period(u64::try_from(r.cpu_period).ok());
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
    }
    Ok(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::config::DeviceMapping;
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};
    use oci_spec::runtime::{LinuxSeccompAction, PosixRlimitType};
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn platform() -> Platform {
        Platform {
            arch: "amd64".into(),
            kernel: (6, 1),
        }
    }

    fn image(entrypoint: &[&str], cmd: &[&str], env: &[&str]) -> ImageConfiguration {
        let mut config = ConfigBuilder::default().env(strings(env));
        if !entrypoint.is_empty() {
            config = config.entrypoint(strings(entrypoint));
        }
        if !cmd.is_empty() {
            config = config.cmd(strings(cmd));
        }
        ImageConfigurationBuilder::default()
            .config(config.build().unwrap())
            .build()
            .unwrap()
    }

    fn busybox() -> ImageConfiguration {
        image(
            &[],
            &["sh"],
            &["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        )
    }

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nvideo:x:44:app\napp:x:1000:\n",
        )
        .unwrap();
        // The programs the tests' images run: build_spec looks for them.
        for program in ["bin/sh", "usr/bin/run"] {
            let path = dir.path().join(program);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    fn build(image: &ImageConfiguration, config: &ContainerConfig) -> Result<Spec, SpecError> {
        let dir = rootfs();
        build_spec_for_platform(image, config, dir.path(), "/rcompose/p/c1", &platform())
    }

    fn process(spec: &Spec) -> &Process {
        spec.process().as_ref().unwrap()
    }

    fn linux(spec: &Spec) -> &Linux {
        spec.linux().as_ref().unwrap()
    }

    fn mount<'a>(spec: &'a Spec, dest: &str) -> Option<&'a OciMount> {
        spec.mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == Path::new(dest))
    }

    fn options(spec: &Spec, dest: &str) -> Vec<String> {
        mount(spec, dest)
            .unwrap()
            .options()
            .clone()
            .unwrap_or_default()
    }

    fn cap_names(spec: &Spec) -> Vec<String> {
        let caps = process(spec).capabilities().as_ref().unwrap();
        let mut names: Vec<String> = caps
            .bounding()
            .iter()
            .flatten()
            .map(|c| {
                serde_json::to_value(c)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        names.sort();
        assert_eq!(caps.bounding(), caps.effective());
        assert_eq!(caps.bounding(), caps.permitted());
        names
    }

    fn args(
        image_entrypoint: &[&str],
        image_cmd: &[&str],
        entrypoint: Option<&[&str]>,
        command: Option<&[&str]>,
    ) -> Result<Vec<String>, SpecError> {
        let ie = strings(image_entrypoint);
        let ic = strings(image_cmd);
        let e = entrypoint.map(strings);
        let c = command.map(strings);
        resolve_args(
            (!ie.is_empty()).then_some(ie.as_slice()),
            (!ic.is_empty()).then_some(ic.as_slice()),
            e.as_deref(),
            c.as_deref(),
        )
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker_rules() {
        let ep = &["/entry.sh"][..];
        let cmd = &["serve", "--port", "80"][..];
        // Image only.
        assert_eq!(
            args(ep, cmd, None, None).unwrap(),
            strings(&["/entry.sh", "serve", "--port", "80"])
        );
        // A command replaces CMD and keeps the image ENTRYPOINT.
        assert_eq!(
            args(ep, cmd, None, Some(&["migrate"])).unwrap(),
            strings(&["/entry.sh", "migrate"])
        );
        // An entrypoint drops the image CMD…
        assert_eq!(
            args(ep, cmd, Some(&["/bin/sh", "-c"]), None).unwrap(),
            strings(&["/bin/sh", "-c"])
        );
        // …unless a command is given too.
        assert_eq!(
            args(ep, cmd, Some(&["/bin/sh", "-c"]), Some(&["echo hi"])).unwrap(),
            strings(&["/bin/sh", "-c", "echo hi"])
        );
        // An empty command list means "not given".
        assert_eq!(args(&[], cmd, None, Some(&[])).unwrap(), strings(cmd));
        // An empty entrypoint list clears it but keeps the image CMD (Docker's merge).
        assert_eq!(args(ep, cmd, Some(&[]), None).unwrap(), strings(cmd));
        // `--entrypoint ""` clears it and drops the image CMD.
        assert!(matches!(
            args(ep, cmd, Some(&[""]), None),
            Err(SpecError::NoCommand)
        ));
        assert_eq!(
            args(ep, cmd, Some(&[""]), Some(&["ls"])).unwrap(),
            strings(&["ls"])
        );
        // Nothing at all.
        let err = args(&[], &[], None, None).unwrap_err();
        assert!(err.to_string().starts_with("no command specified"));
    }

    #[test]
    fn env_merging() {
        let image_env = strings(&[
            "PATH=/opt/bin:/usr/bin",
            "LANG=C.UTF-8",
            "DEBUG=0",
            "GONE=1",
        ]);
        let env = strings(&["DEBUG=1", "EXTRA=x", "GONE", "HOSTNAME=custom"]);
        assert_eq!(
            container_env(&image_env, &env, "abc123", true),
            strings(&[
                "PATH=/opt/bin:/usr/bin",
                "HOSTNAME=custom",
                "TERM=xterm",
                "DEBUG=1",
                "EXTRA=x",
                "LANG=C.UTF-8",
            ])
        );
        assert_eq!(
            container_env(&[], &strings(&["PATH"]), "h", false),
            strings(&["HOSTNAME=h"])
        );
    }

    #[test]
    fn default_container_matches_docker() {
        let config = ContainerConfig {
            hostname: Some("0123456789ab".into()),
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        let p = process(&spec);
        assert_eq!(p.args().as_deref(), Some(&strings(&["sh"])[..]));
        assert_eq!(
            p.env().as_deref(),
            Some(
                &strings(&[
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOSTNAME=0123456789ab",
                    "HOME=/root",
                ])[..]
            )
        );
        assert_eq!(p.cwd(), Path::new("/"));
        assert_eq!(p.terminal(), Some(false));
        assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[0u32][..]));
        assert_eq!(p.no_new_privileges(), Some(false));
        assert_eq!(p.oom_score_adj(), Some(0));
        assert!(p.rlimits().is_none());
        let mut expected_caps = strings(&super::super::security::DEFAULT_CAPABILITIES);
        expected_caps.sort();
        assert_eq!(cap_names(&spec), expected_caps);
        assert!(process(&spec)
            .capabilities()
            .as_ref()
            .unwrap()
            .inheritable()
            .is_none());

        assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));

        let destinations: Vec<String> = spec
            .mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            destinations,
            strings(&[
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm"
            ])
        );
        assert_eq!(
            options(&spec, "/dev/shm"),
            strings(&["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"])
        );
        assert!(options(&spec, "/sys").contains(&"ro".to_string()));

        let l = linux(&spec);
        let ns: Vec<LinuxNamespaceType> =
            l.namespaces().iter().flatten().map(|n| n.typ()).collect();
        assert_eq!(
            ns,
            vec![
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Uts,
                LinuxNamespaceType::Pid,
                LinuxNamespaceType::Ipc,
                LinuxNamespaceType::Cgroup,
            ]
        );
        assert_eq!(
            l.cgroups_path().as_deref(),
            Some(Path::new("/rcompose/p/c1"))
        );
        assert_eq!(
            l.masked_paths().as_deref(),
            Some(&DEFAULT_MASKED_PATHS.map(String::from)[..])
        );
        assert_eq!(
            l.readonly_paths().as_deref(),
            Some(&DEFAULT_READONLY_PATHS.map(String::from)[..])
        );
        let rules: Vec<String> = l
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .iter()
            .flatten()
            .map(|r| format!("{} {r}", if r.allow() { "allow" } else { "deny" }))
            .collect();
        assert_eq!(
            rules,
            strings(&[
                "deny a *:* rwm",
                "allow c 1:5 rwm",
                "allow c 1:3 rwm",
                "allow c 1:9 rwm",
                "allow c 1:8 rwm",
                "allow c 5:0 rwm",
                "allow c 5:1 rwm",
                "deny c 10:229 rwm",
            ])
        );
        assert_eq!(l.devices().as_deref(), Some(&[][..]));
        let sysctl = l.sysctl().as_ref().unwrap();
        assert_eq!(sysctl["net.ipv4.ping_group_range"], "0 2147483647");
        assert_eq!(sysctl["net.ipv4.ip_unprivileged_port_start"], "0");
        let seccomp = l.seccomp().as_ref().unwrap();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
    }

    #[test]
    fn user_workdir_tty_and_hostname_from_config() {
        let img = ImageConfigurationBuilder::default()
            .config(
                ConfigBuilder::default()
                    .user("app".to_string())
                    .working_dir("/srv".to_string())
                    .cmd(strings(&["run"]))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let spec = build(&img, &ContainerConfig::default()).unwrap();
        let p = process(&spec);
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        assert_eq!(
            p.user().additional_gids().as_deref(),
            Some(&[1000u32, 44][..])
        );
        assert!(p
            .env()
            .as_ref()
            .unwrap()
            .contains(&"HOME=/home/app".to_string()));
        assert_eq!(p.cwd(), Path::new("/srv"));

        let config = ContainerConfig {
            user: Some("0:video".into()),
            group_add: strings(&["app", "5000"]),
            working_dir: Some("/work/./sub/../dir/".into()),
            tty: true,
            env: strings(&["HOME=/custom"]),
            ..ContainerConfig::default()
        };
        let spec = build(&img, &config).unwrap();
        let p = process(&spec);
        assert_eq!((p.user().uid(), p.user().gid()), (0, 44));
        assert_eq!(
            p.user().additional_gids().as_deref(),
            Some(&[44u32, 1000, 5000][..])
        );
        assert_eq!(p.cwd(), Path::new("/work/dir"));
        assert_eq!(p.terminal(), Some(true));
        let env = p.env().as_ref().unwrap();
        assert!(env.contains(&"TERM=xterm".to_string()));
        assert!(env.contains(&"HOME=/custom".to_string()));
        assert!(!env.contains(&"HOME=/root".to_string()));

        let bad_user = ContainerConfig {
            user: Some("nobody2".into()),
            ..ContainerConfig::default()
        };
        let err = build(&img, &bad_user).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"user "nobody2": unable to find user nobody2: no matching entries in the image's /etc/passwd"#
        );
        let relative = ContainerConfig {
            working_dir: Some("app".into()),
            ..ContainerConfig::default()
        };
        assert!(matches!(
            build(&img, &relative),
            Err(SpecError::RelativeWorkingDir(_))
        ));
    }

    #[test]
    fn capabilities_add_and_drop() {
        let config = ContainerConfig {
            cap_add: strings(&["NET_ADMIN", "cap_sys_time"]),
            cap_drop: strings(&["MKNOD", "net_raw"]),
            ..ContainerConfig::default()
        };
        let names = cap_names(&build(&busybox(), &config).unwrap());
        assert!(names.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(names.contains(&"CAP_SYS_TIME".to_string()));
        assert!(!names.contains(&"CAP_MKNOD".to_string()));
        assert!(!names.contains(&"CAP_NET_RAW".to_string()));
        assert_eq!(names.len(), 14);

        let config = ContainerConfig {
            cap_drop: strings(&["ALL"]),
            cap_add: strings(&["chown"]),
            ..ContainerConfig::default()
        };
        assert_eq!(
            cap_names(&build(&busybox(), &config).unwrap()),
            strings(&["CAP_CHOWN"])
        );

        let config = ContainerConfig {
            cap_add: strings(&["SYS_ADMIN"]),
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        // The seccomp profile follows the capabilities: mount is allowed with SYS_ADMIN.
        let seccomp = linux(&spec).seccomp().as_ref().unwrap();
        assert!(seccomp
            .syscalls()
            .iter()
            .flatten()
            .any(|s| s.names().contains(&"mount".to_string())));

        let bad = ContainerConfig {
            cap_add: strings(&["WINGS"]),
            ..ContainerConfig::default()
        };
        assert_eq!(
            build(&busybox(), &bad).unwrap_err().to_string(),
            "unknown capability: \"CAP_WINGS\""
        );
    }

    #[test]
    fn privileged_container() {
        let config = ContainerConfig {
            privileged: true,
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        assert_eq!(
            cap_names(&spec).len(),
            super::super::security::ALL_CAPABILITIES.len()
        );
        let l = linux(&spec);
        assert!(l.masked_paths().is_none());
        assert!(l.readonly_paths().is_none());
        assert!(l.seccomp().is_none());
        assert!(!options(&spec, "/sys").contains(&"ro".to_string()));
        assert!(!options(&spec, "/sys/fs/cgroup").contains(&"ro".to_string()));
        let rules = l.resources().as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow());
        assert_eq!(rules[0].to_string(), "a *:* rwm");
    }

    #[test]
    fn read_only_rootfs() {
        let config = ContainerConfig {
            read_only: true,
            tmpfs: BTreeMap::from([("/tmp".to_string(), String::new())]),
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert!(options(&spec, "/sys/fs/cgroup").contains(&"ro".to_string()));
        for writable in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/tmp",
        ] {
            assert!(
                !options(&spec, writable).contains(&"ro".to_string()),
                "{writable}"
            );
        }
    }

    #[test]
    fn security_opts_in_spec() {
        let config = ContainerConfig {
            security_opt: strings(&["no-new-privileges:true", "seccomp=unconfined"]),
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        assert_eq!(process(&spec).no_new_privileges(), Some(true));
        assert!(linux(&spec).seccomp().is_none());

        let config = ContainerConfig {
            security_opt: strings(&["systempaths=unconfined"]),
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        assert!(linux(&spec).masked_paths().is_none());
        assert!(linux(&spec).seccomp().is_some());
    }

    fn resources(r: Resources) -> Result<LinuxResources, SpecError> {
        linux_resources(&r)
    }

    #[test]
    fn resources_conversion() {
        let out = resources(Resources {
            memory: 512 << 20,
            memory_reservation: 256 << 20,
            cpus: 1.5,
            cpu_shares: 512,
            cpuset: Some("0-1".into()),
            pids_limit: Some(100),
            ..Resources::default()
        })
        .unwrap();
        let memory = out.memory().unwrap();
        assert_eq!(memory.limit(), Some(512 << 20));
        assert_eq!(memory.swap(), Some(1024 << 20));
        assert_eq!(memory.reservation(), Some(256 << 20));
        let cpu = out.cpu().clone().unwrap();
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.quota(), Some(150_000));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert_eq!(out.pids().unwrap().limit(), 100);

        let out = resources(Resources {
            memory: 64 << 20,
            memory_swap: -1,
            cpus: 0.5,
            pids_limit: Some(0),
            ..Resources::default()
        })
        .unwrap();
        assert_eq!(out.memory().unwrap().swap(), Some(-1));
        assert_eq!(out.cpu().clone().unwrap().quota(), Some(50_000));
        assert_eq!(out.pids().unwrap().limit(), -1);

        let out = resources(Resources {
            cpu_quota: 20_000,
            cpu_period: 50_000,
            ..Resources::default()
        })
        .unwrap();
        let cpu = out.cpu().clone().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(20_000), Some(50_000)));
        assert!(out.pids().is_none());
        assert_eq!(out.memory().unwrap().limit(), None);
    }

    #[test]
    fn invalid_resources_are_rejected() {
        let cases = [
            (
                Resources {
                    memory: 1 << 20,
                    ..Resources::default()
                },
                "resources.memory",
            ),
            (
                Resources {
                    memory_swap: 1 << 30,
                    ..Resources::default()
                },
                "resources.memory_swap",
            ),
            (
                Resources {
                    memory: 512 << 20,
                    memory_swap: 256 << 20,
                    ..Resources::default()
                },
                "resources.memory_swap",
            ),
            (
                Resources {
                    memory: 64 << 20,
                    memory_reservation: 128 << 20,
                    ..Resources::default()
                },
                "resources.memory_reservation",
            ),
            (
                Resources {
                    cpus: 1.0,
                    cpu_quota: 50_000,
                    ..Resources::default()
                },
                "resources.cpus",
            ),
            (
                Resources {
                    cpus: -1.0,
                    ..Resources::default()
                },
                "resources.cpus",
            ),
            (
                Resources {
                    cpu_period: 10,
                    ..Resources::default()
                },
                "resources.cpu_period",
            ),
            (
                Resources {
                    cpu_quota: 10,
                    ..Resources::default()
                },
                "resources.cpu_quota",
            ),
            (
                Resources {
                    cpu_shares: -2,
                    ..Resources::default()
                },
                "resources.cpu_shares",
            ),
        ];
        for (r, prefix) in cases {
            let err = resources(r.clone()).unwrap_err().to_string();
            assert!(err.starts_with(prefix), "{r:?}: {err}");
        }
    }

    #[test]
    fn ulimits_become_rlimits() {
        let config = ContainerConfig {
            ulimits: vec![
                Ulimit {
                    name: "nofile".into(),
                    soft: 1024,
                    hard: 65536,
                },
                Ulimit {
                    name: "core".into(),
                    soft: -1,
                    hard: -1,
                },
            ],
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        let limits = process(&spec).rlimits().clone().unwrap();
        assert_eq!(limits[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!((limits[0].soft(), limits[0].hard()), (1024, 65536));
        assert_eq!(limits[1].typ(), PosixRlimitType::RlimitCore);
        assert_eq!((limits[1].soft(), limits[1].hard()), (u64::MAX, u64::MAX));

        let bad = [
            Ulimit {
                name: "as".into(),
                soft: 1,
                hard: 1,
            },
            Ulimit {
                name: "nofile".into(),
                soft: 10,
                hard: 5,
            },
            Ulimit {
                name: "nproc".into(),
                soft: -5,
                hard: 5,
            },
        ];
        for ulimit in bad {
            let config = ContainerConfig {
                ulimits: vec![ulimit.clone()],
                ..ContainerConfig::default()
            };
            let err = build(&busybox(), &config).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("ulimits.{}", ulimit.name)),
                "{err}"
            );
        }
    }

    #[test]
    fn tmpfs_and_bind_mounts() {
        let config = ContainerConfig {
            tmpfs: BTreeMap::from([("/run".to_string(), "size=64m,exec,mode=1777".to_string())]),
            mounts: vec![
                Mount {
                    target: "/data/cache".into(),
                    read_only: false,
                    kind: MountKind::Tmpfs {
                        size: Some(128 << 20),
                        mode: Some(0o700),
                    },
                },
                Mount {
                    target: "/data".into(),
                    read_only: true,
                    kind: MountKind::Bind {
                        source: "/srv/data".into(),
                        propagation: Propagation::Rslave,
                        non_recursive: false,
                    },
                },
                Mount {
                    target: "/dev/shm".into(),
                    read_only: false,
                    kind: MountKind::Tmpfs {
                        size: None,
                        mode: None,
                    },
                },
            ],
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        assert_eq!(
            options(&spec, "/run"),
            strings(&[
                "nosuid",
                "nodev",
                "rprivate",
                "size=64m",
                "exec",
                "mode=1777"
            ])
        );
        assert_eq!(
            options(&spec, "/data/cache"),
            strings(&[
                "noexec",
                "nosuid",
                "nodev",
                "rprivate",
                "mode=700",
                "size=128m"
            ])
        );
        assert_eq!(options(&spec, "/data"), strings(&["rbind", "ro", "rslave"]));
        assert_eq!(
            mount(&spec, "/data").unwrap().typ().as_deref(),
            Some("bind")
        );
        // The user's /dev/shm replaces the default one.
        assert_eq!(
            mount(&spec, "/dev/shm").unwrap().source().as_deref(),
            Some(Path::new("tmpfs"))
        );
        assert_eq!(linux(&spec).rootfs_propagation().as_deref(), Some("rslave"));
        // Shallower targets come first; equal depths keep their order.
        let user: Vec<String> = spec
            .mounts()
            .iter()
            .flatten()
            .skip(6)
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(user, strings(&["/run", "/data", "/data/cache", "/dev/shm"]));

        let bad = ContainerConfig {
            tmpfs: BTreeMap::from([("/run".to_string(), "bogus".to_string())]),
            ..ContainerConfig::default()
        };
        assert!(matches!(
            build(&busybox(), &bad),
            Err(SpecError::TmpfsOption { .. })
        ));
        let relative = ContainerConfig {
            tmpfs: BTreeMap::from([("run".to_string(), String::new())]),
            ..ContainerConfig::default()
        };
        assert!(matches!(
            build(&busybox(), &relative),
            Err(SpecError::RelativeMountTarget(_))
        ));
    }

    #[test]
    fn shm_size_is_configurable() {
        let config = ContainerConfig {
            resources: Resources {
                shm_size: Some(256 << 20),
                ..Resources::default()
            },
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        assert!(options(&spec, "/dev/shm").contains(&"size=268435456".to_string()));
    }

    #[test]
    fn init_wraps_the_command() {
        let config = ContainerConfig {
            init: true,
            init_binary: Some("/usr/libexec/rcompose-init".into()),
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        assert_eq!(
            process(&spec).args().as_deref(),
            Some(&strings(&[INIT_PATH, "--", "sh"])[..])
        );
        let init = mount(&spec, INIT_PATH).unwrap();
        assert_eq!(
            init.source().as_deref(),
            Some(Path::new("/usr/libexec/rcompose-init"))
        );
        assert_eq!(
            init.options().as_deref(),
            Some(&strings(&["bind", "ro"])[..])
        );

        let missing = ContainerConfig {
            init: true,
            ..ContainerConfig::default()
        };
        assert!(matches!(
            build(&busybox(), &missing),
            Err(SpecError::MissingInitBinary)
        ));
    }

    #[test]
    fn namespaces_can_be_joined_or_shared_with_the_host() {
        let config = ContainerConfig {
            hostname: Some("web".into()),
            namespaces: Namespaces {
                network: NamespaceMode::Join("/run/rcompose/netns/c1".into()),
                uts: NamespaceMode::Host,
                ipc: NamespaceMode::Host,
                ..Namespaces::default()
            },
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        let ns = linux(&spec).namespaces().clone().unwrap();
        let net = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(
            net.path().as_deref(),
            Some(Path::new("/run/rcompose/netns/c1"))
        );
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Uts));
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Ipc));
        assert_eq!(spec.hostname(), &None);
        assert_eq!(options(&spec, "/dev/shm"), strings(&["rbind", "rprivate"]));

        let host_net = ContainerConfig {
            namespaces: Namespaces {
                network: NamespaceMode::Host,
                ..Namespaces::default()
            },
            sysctls: BTreeMap::from([("net.core.somaxconn".to_string(), "1024".to_string())]),
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &host_net).unwrap();
        let sysctl = linux(&spec).sysctl().clone().unwrap();
        assert_eq!(sysctl.len(), 1);
        assert_eq!(sysctl["net.core.somaxconn"], "1024");
    }

    #[test]
    fn device_mappings() {
        let config = ContainerConfig {
            devices: vec![DeviceMapping {
                path_on_host: "/dev/null".into(),
                path_in_container: Some("/dev/mynull".into()),
                cgroup_permissions: Some("rw".into()),
            }],
            ..ContainerConfig::default()
        };
        let spec = build(&busybox(), &config).unwrap();
        let l = linux(&spec);
        let devices = l.devices().clone().unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].path(), Path::new("/dev/mynull"));
        assert_eq!((devices[0].major(), devices[0].minor()), (1, 3));
        let rules = l.resources().as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(rules.last().unwrap().to_string(), "c 1:3 rw");

        let not_a_device = ContainerConfig {
            devices: vec![DeviceMapping {
                path_on_host: "/etc/hostname".into(),
                path_in_container: None,
                cgroup_permissions: None,
            }],
            ..ContainerConfig::default()
        };
        assert!(matches!(
            build(&busybox(), &not_a_device),
            Err(SpecError::Device { .. })
        ));
    }

    #[test]
    fn a_command_missing_from_the_image_fails_the_spec() {
        let config = ContainerConfig {
            command: Some(strings(&["foo", "--bar"])),
            ..ContainerConfig::default()
        };
        let err = build(&busybox(), &config).unwrap_err();
        assert!(matches!(
            err,
            SpecError::Executable(ExecutableError::CommandNotFound { .. })
        ));
        assert_eq!(
            err.to_string(),
            r#"exec: "foo": executable file not found in $PATH"#
        );
        // With init, the user's command is the one looked up.
        let with_init = ContainerConfig {
            init: true,
            init_binary: Some("/usr/libexec/rcompose-init".into()),
            ..config
        };
        assert_eq!(
            build(&busybox(), &with_init).unwrap_err().to_string(),
            r#"exec: "foo": executable file not found in $PATH"#
        );
        // A program a volume provides is left for the mount to supply.
        let from_volume = ContainerConfig {
            command: Some(strings(&["/opt/tool/run"])),
            mounts: vec![Mount {
                target: "/opt/tool".into(),
                read_only: true,
                kind: MountKind::Bind {
                    source: "/srv/tool".into(),
                    propagation: Propagation::Rprivate,
                    non_recursive: false,
                },
            }],
            ..ContainerConfig::default()
        };
        assert!(build(&busybox(), &from_volume).is_ok());
    }

    #[test]
    fn spec_serializes_to_runtime_json() {
        let spec = build(&busybox(), &ContainerConfig::default()).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["linux"]["cgroupsPath"], "/rcompose/p/c1");
        assert_eq!(json["process"]["args"][0], "sh");
        assert!(
            json["linux"]["seccomp"]["syscalls"]
                .as_array()
                .unwrap()
                .len()
                > 10
        );
    }
}

#[cfg(test)]
mod user_namespace_tests {
    use super::*;
    use crate::container::config::DEFAULT_REMAP_SIZE;

    fn remapped() -> ContainerConfig {
        ContainerConfig {
            command: Some(vec!["true".into()]),
            user_namespace: Some(UserNamespace::remap_root(
                100_000,
                200_000,
                DEFAULT_REMAP_SIZE,
            )),
            ..ContainerConfig::default()
        }
    }

    fn build(config: &ContainerConfig) -> Result<Spec, SpecError> {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nfar:x:70000:70000::/:/bin/sh\n",
        )
        .unwrap();
        fs::write(dir.path().join("etc/group"), "root:x:0:\n").unwrap();
        // build_spec checks that the command exists in the image.
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        fs::write(dir.path().join("bin/true"), "").unwrap();
        fs::set_permissions(
            dir.path().join("bin/true"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let platform = Platform {
            arch: "amd64".into(),
            kernel: (6, 1),
        };
        let image = ImageConfiguration::default();
        build_spec_for_platform(&image, config, dir.path(), "/rcompose/p/c", &platform)
    }

    fn linux(spec: &Spec) -> &Linux {
        spec.linux().as_ref().unwrap()
    }

    fn mapping_triples(mappings: &Option<Vec<LinuxIdMapping>>) -> Vec<(u32, u32, u32)> {
        mappings
            .iter()
            .flatten()
            .map(|m| (m.container_id(), m.host_id(), m.size()))
            .collect()
    }

    #[test]
    fn without_user_namespace_nothing_changes() {
        let config = ContainerConfig {
            user_namespace: None,
            ..remapped()
        };
        let spec = build(&config).unwrap();
        let namespaces = linux(&spec).namespaces().clone().unwrap();
        assert!(namespaces
            .iter()
            .all(|ns| ns.typ() != LinuxNamespaceType::User));
        assert_eq!(linux(&spec).uid_mappings(), &None);
        assert!(linux(&spec)
            .sysctl()
            .as_ref()
            .unwrap()
            .contains_key(PING_GROUP_RANGE));
    }

    #[test]
    fn user_namespace_comes_first_with_the_maps() {
        let spec = build(&remapped()).unwrap();
        let namespaces = linux(&spec).namespaces().clone().unwrap();
        let first = namespaces.first().unwrap();
        assert_eq!(first.typ(), LinuxNamespaceType::User);
        assert_eq!(first.path(), &None);
        assert_eq!(
            mapping_triples(linux(&spec).uid_mappings()),
            vec![(0, 100_000, 65_536)]
        );
        assert_eq!(
            mapping_triples(linux(&spec).gid_mappings()),
            vec![(0, 200_000, 65_536)]
        );
        let sysctls = linux(&spec).sysctl().clone().unwrap();
        assert!(!sysctls.contains_key(PING_GROUP_RANGE));
        assert_eq!(
            sysctls
                .get("net.ipv4.ip_unprivileged_port_start")
                .map(String::as_str),
            Some("0")
        );
    }

    #[test]
    fn configured_ping_range_is_kept() {
        let mut config = remapped();
        config
            .sysctls
            .insert(PING_GROUP_RANGE.into(), "0 1000".into());
        let spec = build(&config).unwrap();
        let sysctls = linux(&spec).sysctl().clone().unwrap();
        assert_eq!(
            sysctls.get(PING_GROUP_RANGE).map(String::as_str),
            Some("0 1000")
        );
    }

    #[test]
    fn devpts_tty_group_is_dropped_only_when_unmapped() {
        let devpts_options = |spec: &Spec| {
            spec.mounts()
                .iter()
                .flatten()
                .find(|m| m.typ().as_deref() == Some("devpts"))
                .and_then(|m| m.options().clone())
                .unwrap()
        };
        let spec = build(&remapped()).unwrap();
        assert!(devpts_options(&spec).contains(&"gid=5".to_string()));
        let mut config = remapped();
        config.user_namespace = Some(UserNamespace::remap_root(100_000, 200_000, 1));
        let spec = build(&config).unwrap();
        assert!(!devpts_options(&spec).iter().any(|o| o.starts_with("gid=")));
    }

    #[test]
    fn docker_conflicts_are_refused() {
        let refused = |config: ContainerConfig, text: &str| {
            let err = build(&config).unwrap_err();
            assert!(err.to_string().contains(text), "{err}");
        };
        refused(
            ContainerConfig {
                privileged: true,
                ..remapped()
            },
            "privileged mode is incompatible with user namespaces",
        );
        let mut host_net = remapped();
        host_net.namespaces.network = NamespaceMode::Host;
        refused(
            host_net,
            "cannot share the host's network namespace when user namespaces are enabled",
        );
        let mut host_pid = remapped();
        host_pid.namespaces.pid = NamespaceMode::Host;
        refused(host_pid, "host's PID namespace");
        let mut joined = remapped();
        joined.namespaces.ipc = NamespaceMode::Join("/proc/42/ns/ipc".into());
        refused(joined, "cannot join the IPC namespace /proc/42/ns/ipc");
        let mut host_uts = remapped();
        host_uts.namespaces.uts = NamespaceMode::Host;
        assert!(build(&host_uts).is_ok());
    }

    #[test]
    fn unmapped_users_and_bad_maps_are_refused() {
        let mut config = remapped();
        config.user = Some("far".into());
        let err = build(&config).unwrap_err();
        assert_eq!(
            err.to_string(),
            "user_namespace: the container user's uid 70000 is not mapped by the user namespace"
        );
        let mut config = remapped();
        config.group_add = vec!["70001".into()];
        let err = build(&config).unwrap_err();
        assert!(err.to_string().contains("group 70001"), "{err}");
        let mut config = remapped();
        config.user_namespace = Some(UserNamespace::default());
        let err = build(&config).unwrap_err();
        assert!(matches!(err, SpecError::InvalidUserNamespace(_)), "{err}");
    }
}
