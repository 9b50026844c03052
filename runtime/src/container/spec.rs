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
    LinuxDeviceType, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxResources,
    Mount as OciMount, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};
use thiserror::Error;

use super::config::{
    ContainerConfig, DeviceMapping, Mount, MountKind, NamespaceMode, Namespaces, Propagation,
    Resources, Ulimit, DEFAULT_SHM_SIZE,
};
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
    #[error("user: {0}")]
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
    #[error("devices: error gathering device information while adding custom device {path:?}: {message}")]
    Device { path: String, message: String },
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
    Ok(spec)
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
        let position = defaults.iter().position(|k| k == env_key(entry));
        match (entry.contains('='), position) {
            (true, Some(i)) => result[i] = Some(entry.clone()),
            (true, None) => result.push(Some(entry.clone())),
            (false, Some(i)) => result[i] = None,
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
