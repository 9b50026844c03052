//! `ContainerConfig`: what a caller wants from one container, independent of the image.
//!
//! It mirrors the parts of Docker's `Config` + `HostConfig` that shape the OCI spec.
//! Nothing here knows about Compose; the orchestrator fills it in. It is persisted as
//! JSON in the container's state dir, so every field has a serde default and old state
//! files keep loading when fields are added.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Docker's default size of `/dev/shm` (64 MiB).
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// The engine-level description of a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    /// Replaces the image's ENTRYPOINT when set. `Some(vec![])` clears it (the image
    /// CMD still applies); `Some(vec![""])` clears it and drops the image CMD too,
    /// as `docker run --entrypoint ""` does.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's CMD when set and non-empty.
    pub command: Option<Vec<String>>,
    /// `KEY=VALUE` entries, in order. A bare `KEY` removes that variable.
    pub env: Vec<String>,
    /// `user[:group]`, names or ids; `None` keeps the image's USER.
    pub user: Option<String>,
    /// Absolute path; `None` keeps the image's WORKDIR (default `/`).
    pub working_dir: Option<String>,
    /// Docker uses the first 12 characters of the container id when none is given;
    /// the caller should do the same.
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    /// Run a tiny init as PID 1 (Docker's `--init`); needs `init_binary`.
    pub init: bool,
    /// Host path of the init binary, bind-mounted read-only at `/sbin/docker-init`.
    pub init_binary: Option<PathBuf>,
    pub tty: bool,
    pub stdin_open: bool,
    /// Signal name or number used by `stop`; the caller applies it.
    pub stop_signal: Option<String>,
    /// Time between the stop signal and SIGKILL; the caller applies it.
    pub stop_grace_period: Option<Duration>,
    pub labels: BTreeMap<String, String>,
    pub read_only: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// As Docker takes them: `no-new-privileges[=bool]`, `seccomp=unconfined`,
    /// `seccomp=PATH`, `systempaths=unconfined`, `apparmor=…`, `label=…`
    /// (`:` is accepted as the separator too, as older Docker did).
    pub security_opt: Vec<String>,
    pub resources: Resources,
    pub ulimits: Vec<Ulimit>,
    pub sysctls: BTreeMap<String, String>,
    /// Destination → tmpfs options (`size=64m,mode=1777,…`), like `docker run --tmpfs`.
    pub tmpfs: BTreeMap<String, String>,
    /// Bind and tmpfs mounts (volumes, binds, secrets…).
    pub mounts: Vec<Mount>,
    pub devices: Vec<DeviceMapping>,
    /// Extra groups for the process: names from the image's /etc/group, or ids.
    pub group_add: Vec<String>,
    pub namespaces: Namespaces,
}

/// cgroup limits and process scheduling knobs (Docker's `Resources`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Bytes; 0 = unlimited.
    pub memory: i64,
    /// Bytes of memory + swap; 0 = twice `memory`, -1 = unlimited swap.
    pub memory_swap: i64,
    /// Bytes; 0 = none.
    pub memory_reservation: i64,
    /// Number of CPUs (fractional); 0 = unlimited.
    pub cpus: f64,
    /// Relative weight; 0 = default.
    pub cpu_shares: i64,
    /// CFS quota in microseconds; 0 = unset.
    pub cpu_quota: i64,
    /// CFS period in microseconds; 0 = unset.
    pub cpu_period: i64,
    /// CPUs allowed, e.g. `0-2,4`.
    pub cpuset: Option<String>,
    /// NUMA nodes allowed, e.g. `0`.
    pub cpuset_mems: Option<String>,
    /// `None` = unset; 0 or negative = unlimited.
    pub pids_limit: Option<i64>,
    /// Bytes; `None` = 64 MiB.
    pub shm_size: Option<u64>,
    pub oom_score_adj: i32,
    pub oom_kill_disable: bool,
}

/// One `--ulimit name=soft:hard`. -1 means unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// A mount added to the container's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum MountKind {
    /// A host path (or a volume's data dir) bind-mounted into the container.
    Bind {
        source: PathBuf,
        /// Docker's default is `rprivate`.
        #[serde(default)]
        propagation: Propagation,
        /// `bind` instead of `rbind`.
        #[serde(default)]
        non_recursive: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Bytes; `None` = the kernel default (half of RAM).
        #[serde(default)]
        size: Option<u64>,
        /// Permission bits, e.g. 0o1777.
        #[serde(default)]
        mode: Option<u32>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    Private,
    #[default]
    Rprivate,
    Shared,
    Rshared,
    Slave,
    Rslave,
}

impl Propagation {
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Private => "private",
            Propagation::Rprivate => "rprivate",
            Propagation::Shared => "shared",
            Propagation::Rshared => "rshared",
            Propagation::Slave => "slave",
            Propagation::Rslave => "rslave",
        }
    }
}

/// `--device host[:container[:permissions]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub path_on_host: PathBuf,
    /// Defaults to `path_on_host`.
    #[serde(default)]
    pub path_in_container: Option<PathBuf>,
    /// Any of `r`, `w`, `m`; defaults to `rwm`.
    #[serde(default)]
    pub cgroup_permissions: Option<String>,
}

/// How each namespace is obtained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Namespaces {
    /// The network module normally creates a namespace and passes `Join(path)`.
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
    pub uts: NamespaceMode,
    pub cgroup: NamespaceMode,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamespaceMode {
    /// A new namespace of the container's own.
    #[default]
    Private,
    /// The host's namespace (no entry in the spec).
    Host,
    /// An existing namespace, e.g. `/proc/<pid>/ns/net` or a bind-mounted netns file.
    Join(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let config = ContainerConfig {
            command: Some(vec!["sh".into(), "-c".into(), "echo hi".into()]),
            env: vec!["A=1".into()],
            resources: Resources {
                memory: 64 << 20,
                cpus: 0.5,
                pids_limit: Some(100),
                ..Resources::default()
            },
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048,
            }],
            mounts: vec![Mount {
                target: "/data".into(),
                read_only: true,
                kind: MountKind::Bind {
                    source: "/srv/data".into(),
                    propagation: Propagation::Rslave,
                    non_recursive: false,
                },
            }],
            namespaces: Namespaces {
                network: NamespaceMode::Join("/run/netns/x".into()),
                ..Namespaces::default()
            },
            stop_grace_period: Some(Duration::from_secs(10)),
            ..ContainerConfig::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        let back: ContainerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn missing_fields_take_defaults() {
        let config: ContainerConfig = serde_json::from_str(r#"{"tty": true}"#).unwrap();
        assert!(config.tty);
        assert_eq!(config.namespaces.network, NamespaceMode::Private);
        assert_eq!(config.resources.shm_size, None);
        let mount: Mount =
            serde_json::from_str(r#"{"target":"/t","kind":{"type":"bind","source":"/s"}}"#)
                .unwrap();
        assert_eq!(
            mount.kind,
            MountKind::Bind {
                source: "/s".into(),
                propagation: Propagation::Rprivate,
                non_recursive: false
            }
        );
    }
}
