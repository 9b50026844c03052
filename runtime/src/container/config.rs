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
use thiserror::Error;

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
    /// Run the container in a user namespace of its own with these id mappings
    /// (Docker's `userns-remap`); `None` keeps the host's user namespace.
    pub user_namespace: Option<UserNamespace>,
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

/// The id mappings of a container's own user namespace: container root is an
/// unprivileged id on the host, and host ids outside the mappings appear as
/// `nobody` inside.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserNamespace {
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
}

/// Container ids `container_id..container_id + size` are host ids
/// `host_id..host_id + size` (one line of `/proc/<pid>/uid_map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// Docker's userns-remap size: the 65536 ids of a classic Unix system.
pub const DEFAULT_REMAP_SIZE: u32 = 65536;

/// The kernel accepts at most this many lines in a uid or gid map (since 4.15).
const MAX_MAPPING_LINES: usize = 340;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserNamespaceError {
    #[error("user_namespace: no {0} mappings given; map at least container id 0")]
    NoMappings(&'static str),
    #[error("user_namespace: {kind} mapping {mapping} has size 0")]
    EmptyRange { kind: &'static str, mapping: String },
    #[error("user_namespace: {kind} mapping {mapping} runs past id 4294967294")]
    RangeOverflow { kind: &'static str, mapping: String },
    #[error("user_namespace: {kind} mappings {first} and {second} overlap on the {side} side")]
    Overlap {
        kind: &'static str,
        first: String,
        second: String,
        side: &'static str,
    },
    #[error(
        "user_namespace: {count} {kind} mappings, over the kernel's limit of {MAX_MAPPING_LINES}"
    )]
    TooManyMappings { kind: &'static str, count: usize },
    #[error("user_namespace: container root (uid 0 and gid 0) must be mapped, or the container could not own its files")]
    RootNotMapped,
}

impl std::fmt::Display for IdMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.container_id, self.host_id, self.size)
    }
}

impl IdMapping {
    /// The last id of the range on each side, or `None` when it would pass
    /// `u32::MAX - 1` (`(uid_t)-1` is never a valid id).
    fn ends(&self) -> Option<(u32, u32)> {
        let last = self.size.checked_sub(1)?;
        let container_end = self.container_id.checked_add(last)?;
        let host_end = self.host_id.checked_add(last)?;
        (container_end < u32::MAX && host_end < u32::MAX).then_some((container_end, host_end))
    }

    fn host_id_of(&self, container_id: u32) -> Option<u32> {
        let offset = container_id.checked_sub(self.container_id)?;
        if offset < self.size {
            self.host_id.checked_add(offset)
        } else {
            None
        }
    }
}

impl UserNamespace {
    /// Docker's userns-remap: container ids `0..size` become host ids from
    /// `host_uid`/`host_gid` on (e.g. the `dockremap` range of `/etc/subuid`).
    pub fn remap_root(host_uid: u32, host_gid: u32, size: u32) -> UserNamespace {
        UserNamespace {
            uid_mappings: vec![IdMapping {
                container_id: 0,
                host_id: host_uid,
                size,
            }],
            gid_mappings: vec![IdMapping {
                container_id: 0,
                host_id: host_gid,
                size,
            }],
        }
    }

    /// Checks what the kernel would refuse when the maps are written (where the
    /// error could only surface as a failed container create).
    pub fn validate(&self) -> Result<(), UserNamespaceError> {
        validate_mappings("uid", &self.uid_mappings)?;
        validate_mappings("gid", &self.gid_mappings)?;
        if self.host_uid(0).is_none() || self.host_gid(0).is_none() {
            return Err(UserNamespaceError::RootNotMapped);
        }
        Ok(())
    }

    /// The host uid of `container_uid`, if it is mapped.
    pub fn host_uid(&self, container_uid: u32) -> Option<u32> {
        host_id(&self.uid_mappings, container_uid)
    }

    /// The host gid of `container_gid`, if it is mapped.
    pub fn host_gid(&self, container_gid: u32) -> Option<u32> {
        host_id(&self.gid_mappings, container_gid)
    }
}

fn host_id(mappings: &[IdMapping], container_id: u32) -> Option<u32> {
    mappings.iter().find_map(|m| m.host_id_of(container_id))
}

fn validate_mappings(kind: &'static str, mappings: &[IdMapping]) -> Result<(), UserNamespaceError> {
    if mappings.is_empty() {
        return Err(UserNamespaceError::NoMappings(kind));
    }
    if mappings.len() > MAX_MAPPING_LINES {
        return Err(UserNamespaceError::TooManyMappings {
            kind,
            count: mappings.len(),
        });
    }
    let mut ranges = Vec::with_capacity(mappings.len());
    for mapping in mappings {
        if mapping.size == 0 {
            return Err(UserNamespaceError::EmptyRange {
                kind,
                mapping: mapping.to_string(),
            });
        }
        let (container_end, host_end) =
            mapping
                .ends()
                .ok_or_else(|| UserNamespaceError::RangeOverflow {
                    kind,
                    mapping: mapping.to_string(),
                })?;
        ranges.push((mapping, container_end, host_end));
    }
    for (i, (a, a_container_end, a_host_end)) in ranges.iter().enumerate() {
        for (b, b_container_end, b_host_end) in ranges.iter().skip(i + 1) {
            let overlap = |a_start: u32, a_end: u32, b_start: u32, b_end: u32| {
                a_start <= b_end && b_start <= a_end
            };
            let side = if overlap(
                a.container_id,
                *a_container_end,
                b.container_id,
                *b_container_end,
            ) {
                "container"
            } else if overlap(a.host_id, *a_host_end, b.host_id, *b_host_end) {
                "host"
            } else {
                continue;
            };
            return Err(UserNamespaceError::Overlap {
                kind,
                first: a.to_string(),
                second: b.to_string(),
                side,
            });
        }
    }
    Ok(())
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

    fn mapping(container_id: u32, host_id: u32, size: u32) -> IdMapping {
        IdMapping {
            container_id,
            host_id,
            size,
        }
    }

    #[test]
    fn remap_root_maps_container_root_to_the_host_range() {
        let userns = UserNamespace::remap_root(100_000, 200_000, DEFAULT_REMAP_SIZE);
        assert_eq!(userns.validate(), Ok(()));
        assert_eq!(userns.host_uid(0), Some(100_000));
        assert_eq!(userns.host_uid(65_535), Some(165_535));
        assert_eq!(userns.host_uid(65_536), None);
        assert_eq!(userns.host_gid(5), Some(200_005));
    }

    #[test]
    fn user_namespace_is_optional_and_round_trips() {
        let config: ContainerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config.user_namespace, None);
        let config = ContainerConfig {
            user_namespace: Some(UserNamespace::remap_root(100_000, 100_000, 65_536)),
            ..ContainerConfig::default()
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(
            json.contains(r#""uid_mappings":[{"container_id":0,"host_id":100000,"size":65536}]"#),
            "{json}"
        );
        let back: ContainerConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn several_ranges_map_ids_piecewise() {
        let userns = UserNamespace {
            uid_mappings: vec![mapping(0, 100_000, 1000), mapping(1000, 1000, 1)],
            gid_mappings: vec![mapping(0, 100_000, 65_536)],
        };
        assert_eq!(userns.validate(), Ok(()));
        assert_eq!(userns.host_uid(999), Some(100_999));
        assert_eq!(userns.host_uid(1000), Some(1000));
        assert_eq!(userns.host_uid(1001), None);
    }

    #[test]
    fn invalid_mappings_are_refused_with_the_offending_range() {
        let gids = vec![mapping(0, 100_000, 65_536)];
        let with_uids = |uid_mappings: Vec<IdMapping>| UserNamespace {
            uid_mappings,
            gid_mappings: gids.clone(),
        };
        assert_eq!(
            with_uids(vec![]).validate(),
            Err(UserNamespaceError::NoMappings("uid"))
        );
        let err = with_uids(vec![mapping(0, 100_000, 0)])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "user_namespace: uid mapping 0:100000:0 has size 0"
        );
        assert!(matches!(
            with_uids(vec![mapping(0, u32::MAX - 10, 65_536)]).validate(),
            Err(UserNamespaceError::RangeOverflow { .. })
        ));
        let err = with_uids(vec![mapping(0, 100_000, 100), mapping(50, 300_000, 10)])
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "user_namespace: uid mappings 0:100000:100 and 50:300000:10 overlap on the container side"
        );
        let err = with_uids(vec![mapping(0, 100_000, 100), mapping(100, 100_050, 10)])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("host side"), "{err}");
        assert_eq!(
            with_uids(vec![mapping(1, 100_000, 100)]).validate(),
            Err(UserNamespaceError::RootNotMapped)
        );
        let many = (0..341).map(|i| mapping(i, 100_000 + i, 1)).collect();
        assert!(matches!(
            with_uids(many).validate(),
            Err(UserNamespaceError::TooManyMappings { count: 341, .. })
        ));
    }
}
