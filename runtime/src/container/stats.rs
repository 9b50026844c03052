//! Resource figures of a running container (`docker stats`): CPU time, memory and
//! pids read from the container's cgroup, plus the host figures Docker divides them
//! by (`/proc/stat`, `/proc/meminfo`).
//!
//! The few cgroup files are read directly rather than through libcgroups'
//! `CgroupManager::stats()`: that call reads every controller (blkio, hugetlb,
//! PSI, kernel memory…, about 40 files on v1), fails outright when swap accounting
//! or PSI is off, indexes `memory.stat` in a way that panics on a missing key, does
//! not expose `oom_kill`, and its v1 manager rereads `/proc/self/mountinfo` once per
//! controller; it also cannot be pointed at a fake tree for tests.
//!
//! Layout detection follows libcgroups: `statfs("/sys/fs/cgroup")` is cgroup2 →
//! unified (v2); tmpfs → v1, called hybrid when a cgroup2 is mounted at `unified`
//! (which holds no controllers, so hybrid hosts are read like v1 ones).

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Where cgroup filesystems are mounted on every distribution we support.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const PROC_STAT: &str = "/proc/stat";
const PROC_MEMINFO: &str = "/proc/meminfo";

/// `statfs` magic numbers (linux/magic.h).
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// USER_HZ: fixed at 100 on Linux for /proc/stat, whatever CONFIG_HZ is (moby
/// hard-codes it too).
const NANOS_PER_CLOCK_TICK: u64 = 1_000_000_000 / 100;

/// cgroup v1 prints "no limit" as PAGE_COUNTER_MAX pages in bytes, which is
/// i64::MAX rounded down to the page size (9223372036854771712 with 4 KiB pages).
/// Anything within the largest page size (64 KiB) of i64::MAX means unlimited.
const V1_UNLIMITED_FROM: u64 = i64::MAX as u64 - 0xFFFF;

/// One reading of a container's resource usage. Two readings give the CPU
/// percentage ([`cpu_percent`]); one gives the memory percentage
/// ([`memory_percent`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// CPU time used by the container's processes since the cgroup was created.
    pub cpu_usage_ns: u64,
    /// CPU time of the whole host (all CPUs, idle included) from `/proc/stat`:
    /// the denominator of Docker's CPU percentage.
    pub system_cpu_ns: u64,
    /// CPUs online on the host (the `cpuN` lines of `/proc/stat`).
    pub online_cpus: u32,
    /// Memory charged to the cgroup, page cache included.
    pub memory_usage: u64,
    /// The reclaimable page cache Docker subtracts from `memory_usage`:
    /// `total_inactive_file` on cgroup v1, `inactive_file` on v2.
    pub memory_cache: u64,
    /// The container's memory limit; `None` when it has none.
    pub memory_limit: Option<u64>,
    /// Total RAM of the host (`MemTotal`): Docker's limit for unlimited containers.
    pub host_memory: u64,
    /// Processes and threads in the cgroup.
    pub pids_current: u64,
    /// The pids limit; `None` when it is `max`.
    pub pids_limit: Option<u64>,
    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub oom_kills: u64,
    /// When the figures were read.
    pub read_at: SystemTime,
}

impl ContainerStats {
    /// Memory in use as `docker stats` shows it: usage minus the inactive page
    /// cache, which the kernel can reclaim at no cost.
    pub fn memory_used(&self) -> u64 {
        if self.memory_cache < self.memory_usage {
            self.memory_usage - self.memory_cache
        } else {
            self.memory_usage
        }
    }

    /// The limit `docker stats` shows: the container's limit, but never more than
    /// the host's RAM (an unlimited container is limited by the host).
    pub fn effective_memory_limit(&self) -> u64 {
        match self.memory_limit {
            Some(limit) if self.host_memory > 0 => limit.min(self.host_memory),
            Some(limit) => limit,
            None => self.host_memory,
        }
    }
}

/// Why a container's figures could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("invalid cgroup path {0:?}: expected an absolute path below the cgroup root, like /rcompose/<project>/<id>")]
    InvalidCgroupPath(String),
    #[error(
        "container cgroup not found: {cgroups_path} (the container is not running, or was removed)"
    )]
    CgroupNotFound { cgroups_path: String },
    #[error("the cgroup v1 controller {controller} is not mounted at {path}; mount it to read container stats")]
    ControllerNotMounted {
        controller: &'static str,
        path: PathBuf,
    },
    #[error("cannot tell which cgroup version {path} holds: {source}")]
    DetectLayout { path: PathBuf, source: io::Error },
    #[error("{path} is neither a cgroup2 filesystem nor a tmpfs of cgroup v1 controllers (filesystem magic {magic:#x})")]
    UnknownLayout { path: PathBuf, magic: u64 },
    #[error("cannot read {path} of container cgroup {cgroups_path}: {source}")]
    ReadCgroupFile {
        cgroups_path: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("unexpected content in {path} of container cgroup {cgroups_path}: {detail}")]
    ParseCgroupFile {
        cgroups_path: String,
        path: PathBuf,
        detail: String,
    },
    #[error("cannot read host figures from {path}: {source}")]
    ReadHostFile { path: PathBuf, source: io::Error },
    #[error("unexpected content in {path}: {detail}")]
    ParseHostFile { path: PathBuf, detail: String },
}

/// Reads the figures of the container whose cgroup is `cgroups_path` (the spec's
/// `linux.cgroupsPath`, e.g. `/rcompose/<project>/<id>`).
pub fn read_stats(cgroups_path: &str) -> Result<ContainerStats, StatsError> {
    let root = Path::new(CGROUP_ROOT);
    let dirs = CgroupDirs::for_container(root, host_cgroup_version(root)?, cgroups_path)?;
    let host = HostFiles {
        proc_stat: PathBuf::from(PROC_STAT),
        meminfo: PathBuf::from(PROC_MEMINFO),
    };
    read_stats_from(&dirs, &host)
}

/// The OOM-kill counter of a container's cgroup (v1 `memory.oom_control`, v2
/// `memory.events`). 0 when it cannot be read: the cgroup is gone or the kernel is
/// older than 4.13. Read it before the container is deleted.
pub fn read_oom_kills(cgroups_path: &str) -> u64 {
    let root = Path::new(CGROUP_ROOT);
    host_cgroup_version(root)
        .and_then(|version| CgroupDirs::for_container(root, version, cgroups_path))
        .and_then(|dirs| dirs.reader().oom_kills())
        .unwrap_or(0)
}

/// The processes (thread group ids) in the container's cgroup, ascending: what
/// `docker top` lists. Read from the pids controller on v1, where every process of
/// the container is accounted.
pub fn read_processes(cgroups_path: &str) -> Result<Vec<i32>, StatsError> {
    let root = Path::new(CGROUP_ROOT);
    let dirs = CgroupDirs::for_container(root, host_cgroup_version(root)?, cgroups_path)?;
    dirs.reader().processes()
}

/// Docker's CPU percentage between two readings: the container's share of all
/// the host's CPU time, scaled so that one busy core is 100% (moby's
/// `calculateCPUPercentUnix`). 0 when either delta is not positive.
pub fn cpu_percent(previous: &ContainerStats, current: &ContainerStats) -> f64 {
    let cpu_delta = current.cpu_usage_ns as f64 - previous.cpu_usage_ns as f64;
    let system_delta = current.system_cpu_ns as f64 - previous.system_cpu_ns as f64;
    if cpu_delta > 0.0 && system_delta > 0.0 {
        cpu_delta / system_delta * f64::from(current.online_cpus) * 100.0
    } else {
        0.0
    }
}

/// Docker's memory percentage: [`ContainerStats::memory_used`] over
/// [`ContainerStats::effective_memory_limit`]; 0 when the limit is unknown.
pub fn memory_percent(stats: &ContainerStats) -> f64 {
    let limit = stats.effective_memory_limit();
    if limit == 0 {
        return 0.0;
    }
    stats.memory_used() as f64 / limit as f64 * 100.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupVersion {
    /// One hierarchy per controller.
    V1,
    /// One hierarchy, all controllers.
    V2,
}

/// How the host mounts cgroups, named as libcgroups names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupSetup {
    Legacy,
    /// v1 controllers plus an empty cgroup2 at `unified`: read like legacy.
    Hybrid,
    Unified,
}

impl CgroupSetup {
    fn version(self) -> CgroupVersion {
        match self {
            CgroupSetup::Legacy | CgroupSetup::Hybrid => CgroupVersion::V1,
            CgroupSetup::Unified => CgroupVersion::V2,
        }
    }
}

/// The host's cgroup version; detected once, it cannot change while we run.
fn host_cgroup_version(root: &Path) -> Result<CgroupVersion, StatsError> {
    static DETECTED: OnceLock<CgroupVersion> = OnceLock::new();
    if let Some(version) = DETECTED.get() {
        return Ok(*version);
    }
    let version = detect_cgroup_setup(root)?.version();
    Ok(*DETECTED.get_or_init(|| version))
}

fn detect_cgroup_setup(root: &Path) -> Result<CgroupSetup, StatsError> {
    let root_magic = filesystem_magic(root)?;
    let unified = root.join("unified");
    let unified_magic = if root_magic == TMPFS_MAGIC && unified.exists() {
        Some(filesystem_magic(&unified)?)
    } else {
        None
    };
    classify_cgroup_mount(root, root_magic, unified_magic)
}

fn filesystem_magic(path: &Path) -> Result<u64, StatsError> {
    let stat = rustix::fs::statfs(path).map_err(|err| StatsError::DetectLayout {
        path: path.to_path_buf(),
        source: err.into(),
    })?;
    // f_type is a signed word on some architectures; magics are positive.
    Ok(u64::try_from(stat.f_type).unwrap_or(0))
}

/// libcgroups' rule: cgroup2 at the root is unified; tmpfs is hybrid when a
/// cgroup2 is mounted at `unified`, legacy otherwise.
fn classify_cgroup_mount(
    root: &Path,
    root_magic: u64,
    unified_magic: Option<u64>,
) -> Result<CgroupSetup, StatsError> {
    match (root_magic, unified_magic) {
        (CGROUP2_SUPER_MAGIC, _) => Ok(CgroupSetup::Unified),
        (TMPFS_MAGIC, Some(CGROUP2_SUPER_MAGIC)) => Ok(CgroupSetup::Hybrid),
        (TMPFS_MAGIC, _) => Ok(CgroupSetup::Legacy),
        (magic, _) => Err(StatsError::UnknownLayout {
            path: root.to_path_buf(),
            magic,
        }),
    }
}

/// The directories holding a cgroup's figures: one per controller on v1, the
/// same directory three times on v2.
#[derive(Debug, Clone)]
struct CgroupDirs {
    version: CgroupVersion,
    /// Shown in errors: which container this is.
    cgroups_path: String,
    cpu: PathBuf,
    memory: PathBuf,
    pids: PathBuf,
}

impl CgroupDirs {
    fn for_container(
        root: &Path,
        version: CgroupVersion,
        cgroups_path: &str,
    ) -> Result<Self, StatsError> {
        let relative = relative_cgroup_path(cgroups_path)?;
        let controller_dir = |controller: &str| match version {
            CgroupVersion::V1 => root.join(controller).join(&relative),
            CgroupVersion::V2 => root.join(&relative),
        };
        let dirs = CgroupDirs {
            version,
            cgroups_path: cgroups_path.to_string(),
            cpu: controller_dir("cpuacct"),
            memory: controller_dir("memory"),
            pids: controller_dir("pids"),
        };
        if version == CgroupVersion::V1 {
            for controller in ["cpuacct", "memory", "pids"] {
                let mount = root.join(controller);
                if !mount.exists() {
                    return Err(StatsError::ControllerNotMounted {
                        controller,
                        path: mount,
                    });
                }
            }
        }
        Ok(dirs)
    }

    fn reader(&self) -> CgroupReader<'_> {
        CgroupReader { dirs: self }
    }
}

/// `/rcompose/p/c` → `rcompose/p/c`; refuses the root itself and `..`, which
/// would read another cgroup than the container's.
fn relative_cgroup_path(cgroups_path: &str) -> Result<PathBuf, StatsError> {
    let invalid = || StatsError::InvalidCgroupPath(cgroups_path.to_string());
    let path = Path::new(cgroups_path);
    if !path.is_absolute() {
        return Err(invalid());
    }
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => relative.push(part),
            Component::ParentDir | Component::Prefix(_) => return Err(invalid()),
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(invalid());
    }
    Ok(relative)
}

/// Host-wide files, a parameter so that tests can use fakes.
struct HostFiles {
    proc_stat: PathBuf,
    meminfo: PathBuf,
}

fn read_stats_from(dirs: &CgroupDirs, host: &HostFiles) -> Result<ContainerStats, StatsError> {
    let cgroup = dirs.reader();
    let cpu_usage_ns = cgroup.cpu_usage_ns()?;
    // The host's CPU time right after the container's, as moby reads them, so
    // that both deltas of `cpu_percent` cover the same interval.
    let (system_cpu_ns, online_cpus) = read_host_cpu(&host.proc_stat)?;
    let read_at = SystemTime::now();
    let (memory_usage, memory_limit) = cgroup.memory_usage_and_limit()?;
    let (pids_current, pids_limit) = cgroup.pids()?;
    Ok(ContainerStats {
        cpu_usage_ns,
        system_cpu_ns,
        online_cpus,
        memory_usage,
        memory_cache: cgroup.inactive_file()?,
        memory_limit,
        host_memory: read_host_memory(&host.meminfo)?,
        pids_current,
        pids_limit,
        oom_kills: cgroup.oom_kills()?,
        read_at,
    })
}

/// Reads one container's cgroup files, turning failures into [`StatsError`]s
/// that name the container and the file.
struct CgroupReader<'a> {
    dirs: &'a CgroupDirs,
}

impl CgroupReader<'_> {
    fn cpu_usage_ns(&self) -> Result<u64, StatsError> {
        match self.dirs.version {
            CgroupVersion::V1 => self.single_value(&self.dirs.cpu.join("cpuacct.usage")),
            CgroupVersion::V2 => {
                let path = self.dirs.cpu.join("cpu.stat");
                let usec = self
                    .keyed_value(&path, "usage_usec")?
                    .ok_or_else(|| self.parse_error(&path, "no usage_usec line"))?;
                usec.checked_mul(1000)
                    .ok_or_else(|| self.parse_error(&path, "usage_usec is out of range"))
            }
        }
    }

    fn memory_usage_and_limit(&self) -> Result<(u64, Option<u64>), StatsError> {
        let (usage_file, limit_file) = match self.dirs.version {
            CgroupVersion::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
            CgroupVersion::V2 => ("memory.current", "memory.max"),
        };
        let usage = self.single_value(&self.dirs.memory.join(usage_file))?;
        let limit = self.limit(&self.dirs.memory.join(limit_file))?;
        Ok((usage, limit))
    }

    /// The inactive page cache; 0 when `memory.stat` or its line is missing
    /// (some kernels and fakes lack them, and the cache is only a refinement).
    fn inactive_file(&self) -> Result<u64, StatsError> {
        let key = match self.dirs.version {
            CgroupVersion::V1 => "total_inactive_file",
            CgroupVersion::V2 => "inactive_file",
        };
        let path = self.dirs.memory.join("memory.stat");
        match self.read_optional(&path)? {
            Some(text) => Ok(self.keyed_value_in(&path, &text, key)?.unwrap_or(0)),
            None => Ok(0),
        }
    }

    /// The `oom_kill` line appeared in kernel 4.13; without it the count is 0.
    fn oom_kills(&self) -> Result<u64, StatsError> {
        let file = match self.dirs.version {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.events",
        };
        Ok(self
            .keyed_value(&self.dirs.memory.join(file), "oom_kill")?
            .unwrap_or(0))
    }

    fn pids(&self) -> Result<(u64, Option<u64>), StatsError> {
        let current = self.single_value(&self.dirs.pids.join("pids.current"))?;
        let limit = self.limit(&self.dirs.pids.join("pids.max"))?;
        Ok((current, limit))
    }

    fn processes(&self) -> Result<Vec<i32>, StatsError> {
        let path = self.dirs.pids.join("cgroup.procs");
        let text = self.read(&path)?;
        parse_pid_list(&text).map_err(|detail| self.parse_error(&path, &detail))
    }

    /// A limit file: `max` (v2 memory, pids) or v1's huge "no limit" value is
    /// `None`.
    fn limit(&self, path: &Path) -> Result<Option<u64>, StatsError> {
        let text = self.read(path)?;
        let text = text.trim();
        if text == "max" {
            return Ok(None);
        }
        let value = parse_u64(text).map_err(|detail| self.parse_error(path, &detail))?;
        if self.dirs.version == CgroupVersion::V1 && value >= V1_UNLIMITED_FROM {
            return Ok(None);
        }
        Ok(Some(value))
    }

    fn single_value(&self, path: &Path) -> Result<u64, StatsError> {
        let text = self.read(path)?;
        parse_u64(text.trim()).map_err(|detail| self.parse_error(path, &detail))
    }

    fn keyed_value(&self, path: &Path, key: &str) -> Result<Option<u64>, StatsError> {
        let text = self.read(path)?;
        self.keyed_value_in(path, &text, key)
    }

    fn keyed_value_in(
        &self,
        path: &Path,
        text: &str,
        key: &str,
    ) -> Result<Option<u64>, StatsError> {
        keyed_value(text, key).map_err(|detail| self.parse_error(path, &detail))
    }

    fn read(&self, path: &Path) -> Result<String, StatsError> {
        self.read_optional(path)?.ok_or_else(|| self.missing(path))
    }

    /// `None` when the file does not exist but the cgroup does.
    fn read_optional(&self, path: &Path) -> Result<Option<String>, StatsError> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let cgroup_dir = path.parent().unwrap_or(path);
                if cgroup_dir.is_dir() {
                    Ok(None)
                } else {
                    Err(self.not_found())
                }
            }
            Err(err) => Err(self.read_error(path, err)),
        }
    }

    /// A required file is missing from a cgroup that exists: most likely the
    /// controller is not enabled for it (v2 `cgroup.subtree_control`).
    fn missing(&self, path: &Path) -> StatsError {
        self.read_error(
            path,
            io::Error::new(
                io::ErrorKind::NotFound,
                "no such file; is the controller enabled for this cgroup?",
            ),
        )
    }

    fn not_found(&self) -> StatsError {
        StatsError::CgroupNotFound {
            cgroups_path: self.dirs.cgroups_path.clone(),
        }
    }

    fn read_error(&self, path: &Path, source: io::Error) -> StatsError {
        StatsError::ReadCgroupFile {
            cgroups_path: self.dirs.cgroups_path.clone(),
            path: path.to_path_buf(),
            source,
        }
    }

    fn parse_error(&self, path: &Path, detail: &str) -> StatsError {
        StatsError::ParseCgroupFile {
            cgroups_path: self.dirs.cgroups_path.clone(),
            path: path.to_path_buf(),
            detail: detail.to_string(),
        }
    }
}

fn parse_u64(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("expected a non-negative integer, found {text:?}"))
}

/// `cgroup.procs`: one pid a line, sorted and without repeats (the kernel lists
/// them in no particular order and may repeat one).
fn parse_pid_list(text: &str) -> Result<Vec<i32>, String> {
    let mut pids = text
        .split_whitespace()
        .map(|word| {
            word.parse::<i32>()
                .map_err(|_| format!("expected a process id, found {word:?}"))
        })
        .collect::<Result<Vec<i32>, String>>()?;
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// The value of the `key value` line of a flat-keyed cgroup file
/// (`memory.stat`, `memory.events`, `cpu.stat`, `memory.oom_control`).
fn keyed_value(text: &str, key: &str) -> Result<Option<u64>, String> {
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some(key) {
            continue;
        }
        let value = fields
            .next()
            .ok_or_else(|| format!("the {key} line has no value"))?;
        return parse_u64(value)
            .map(Some)
            .map_err(|detail| format!("{key}: {detail}"));
    }
    Ok(None)
}

/// The host's total CPU time and online CPU count from `/proc/stat`, the way moby
/// computes them: the first seven fields of the `cpu` line (user nice system idle
/// iowait irq softirq), in clock ticks.
fn read_host_cpu(path: &Path) -> Result<(u64, u32), StatsError> {
    let text = read_host_file(path)?;
    parse_proc_stat(&text).map_err(|detail| StatsError::ParseHostFile {
        path: path.to_path_buf(),
        detail,
    })
}

fn parse_proc_stat(text: &str) -> Result<(u64, u32), String> {
    let mut total_ticks = None;
    let mut online_cpus: u32 = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        if name == "cpu" {
            total_ticks = Some(sum_cpu_ticks(fields)?);
        } else if name
            .strip_prefix("cpu")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            online_cpus = online_cpus.saturating_add(1);
        }
    }
    let ticks = total_ticks.ok_or("no cpu line")?;
    let nanos = ticks
        .checked_mul(NANOS_PER_CLOCK_TICK)
        .ok_or("the cpu line's total is out of range")?;
    Ok((nanos, online_cpus))
}

fn sum_cpu_ticks<'a>(fields: impl Iterator<Item = &'a str>) -> Result<u64, String> {
    let values: Vec<&str> = fields.take(7).collect();
    if values.len() < 7 {
        return Err(format!(
            "the cpu line has {} values, expected at least 7",
            values.len()
        ));
    }
    values.iter().try_fold(0u64, |total, value| {
        let ticks = parse_u64(value).map_err(|detail| format!("cpu line: {detail}"))?;
        total
            .checked_add(ticks)
            .ok_or_else(|| "the cpu line's total is out of range".to_string())
    })
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn read_host_memory(path: &Path) -> Result<u64, StatsError> {
    let text = read_host_file(path)?;
    parse_mem_total(&text).map_err(|detail| StatsError::ParseHostFile {
        path: path.to_path_buf(),
        detail,
    })
}

fn parse_mem_total(text: &str) -> Result<u64, String> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .ok_or("no MemTotal line")?;
    let kib = line
        .trim()
        .strip_suffix("kB")
        .ok_or_else(|| format!("MemTotal is not in kB: {line:?}"))?;
    parse_u64(kib.trim())
        .map_err(|detail| format!("MemTotal: {detail}"))?
        .checked_mul(1024)
        .ok_or_else(|| "MemTotal is out of range".to_string())
}

fn read_host_file(path: &Path) -> Result<String, StatsError> {
    fs::read_to_string(path).map_err(|source| StatsError::ReadHostFile {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTAINER: &str = "/rcompose/demo/web-1";

    /// `/proc/stat` of a 2-CPU host (format of a real one). The `cpu` line's
    /// first seven fields add up to 1_000_000 ticks = 10_000 s.
    const PROC_STAT: &str = "cpu  400000 100000 200000 280000 10000 5000 5000 323 0 0\n\
        cpu0 200000 50000 100000 140000 5000 2500 2500 168 0 0\n\
        cpu1 200000 50000 100000 140000 5000 2500 2500 155 0 0\n\
        intr 123456 0 9 0\nctxt 987654\nbtime 1700000000\nprocesses 4242\n\
        procs_running 2\nprocs_blocked 0\nsoftirq 1 2 3 4 5 6 7 8 9 10 11\n";
    const MEMINFO: &str = "MemTotal:        2097152 kB\nMemFree:          524288 kB\n\
        MemAvailable:    1048576 kB\nBuffers:           10240 kB\n";
    const HOST_MEMORY: u64 = 2097152 * 1024;

    /// `memory.stat` of a v1 cgroup, as this machine prints it.
    const V1_MEMORY_STAT: &str = "cache 2191360\nrss 1703936\nrss_huge 0\nshmem 0\n\
        mapped_file 0\ndirty 2158592\nwriteback 0\nswap 0\npgpgin 12342\npgpgout 11559\n\
        pgfault 29710\npgmajfault 4\ninactive_anon 1544192\nactive_anon 12288\n\
        inactive_file 1900544\nactive_file 290816\nunevictable 0\n\
        hierarchical_memory_limit 33554432\nhierarchical_memsw_limit 9223372036854771712\n\
        total_cache 2191360\ntotal_rss 1703936\ntotal_inactive_anon 1544192\n\
        total_active_anon 12288\ntotal_inactive_file 1900544\ntotal_active_file 290816\n\
        total_unevictable 0\n";

    /// `memory.stat` of a v2 cgroup (Documentation/admin-guide/cgroup-v2.rst).
    const V2_MEMORY_STAT: &str = "anon 1703936\nfile 2191360\nkernel 524288\n\
        kernel_stack 32768\npagetables 65536\nsock 0\nshmem 0\nfile_mapped 0\n\
        file_dirty 0\nfile_writeback 0\nswapcached 0\nanon_thp 0\n\
        inactive_anon 1544192\nactive_anon 12288\ninactive_file 1900544\n\
        active_file 290816\nunevictable 0\nslab_reclaimable 100000\npgfault 29710\n";

    const V2_CPU_STAT: &str = "usage_usec 2500000\nuser_usec 2000000\n\
        system_usec 500000\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n\
        nr_bursts 0\nburst_usec 0\n";

    const V2_MEMORY_EVENTS: &str = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";

    struct Fake {
        _dir: tempfile::TempDir,
        root: PathBuf,
        host: HostFiles,
    }

    impl Fake {
        fn new() -> Fake {
            let dir = tempfile::tempdir().expect("temp dir");
            let root = dir.path().join("cgroup");
            let proc_dir = dir.path().join("proc");
            write_files(&proc_dir, &[("stat", PROC_STAT), ("meminfo", MEMINFO)]);
            Fake {
                host: HostFiles {
                    proc_stat: proc_dir.join("stat"),
                    meminfo: proc_dir.join("meminfo"),
                },
                root,
                _dir: dir,
            }
        }

        /// A v1 container cgroup with a 32 MiB memory limit and 20 pids.
        fn v1() -> Fake {
            let fake = Fake::new();
            fake.controller_files("cpuacct", &[("cpuacct.usage", "11157893275\n")]);
            fake.controller_files(
                "memory",
                &[
                    ("memory.usage_in_bytes", "5681152\n"),
                    ("memory.limit_in_bytes", "33554432\n"),
                    ("memory.stat", V1_MEMORY_STAT),
                    (
                        "memory.oom_control",
                        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
                    ),
                ],
            );
            fake.controller_files("pids", &[("pids.current", "3\n"), ("pids.max", "20\n")]);
            fake
        }

        /// A v2 container cgroup without limits or swap accounting files.
        fn v2() -> Fake {
            let fake = Fake::new();
            write_files(
                &fake.root.join(CONTAINER.trim_start_matches('/')),
                &[
                    ("cgroup.procs", "4242\n"),
                    ("cpu.stat", V2_CPU_STAT),
                    ("memory.current", "5681152\n"),
                    ("memory.max", "max\n"),
                    ("memory.stat", V2_MEMORY_STAT),
                    ("memory.events", V2_MEMORY_EVENTS),
                    ("pids.current", "1\n"),
                    ("pids.max", "max\n"),
                ],
            );
            fake
        }

        fn controller_dir(&self, controller: &str) -> PathBuf {
            self.root
                .join(controller)
                .join(CONTAINER.trim_start_matches('/'))
        }

        fn controller_files(&self, controller: &str, files: &[(&str, &str)]) {
            write_files(&self.controller_dir(controller), files);
        }

        fn read(&self, setup: CgroupSetup) -> Result<ContainerStats, StatsError> {
            let dirs = CgroupDirs::for_container(&self.root, setup.version(), CONTAINER)?;
            read_stats_from(&dirs, &self.host)
        }
    }

    fn write_files(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).expect("create fake dir");
        for (name, content) in files {
            fs::write(dir.join(name), content).expect("write fake file");
        }
    }

    fn sample(cpu_usage_ns: u64, system_cpu_ns: u64) -> ContainerStats {
        ContainerStats {
            cpu_usage_ns,
            system_cpu_ns,
            online_cpus: 2,
            memory_usage: 0,
            memory_cache: 0,
            memory_limit: None,
            host_memory: 0,
            pids_current: 1,
            pids_limit: None,
            oom_kills: 0,
            read_at: SystemTime::UNIX_EPOCH,
        }
    }

    fn memory(usage: u64, cache: u64, limit: Option<u64>, host: u64) -> ContainerStats {
        ContainerStats {
            memory_usage: usage,
            memory_cache: cache,
            memory_limit: limit,
            host_memory: host,
            ..sample(0, 0)
        }
    }

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn v1_tree_gives_docker_figures() {
        let stats = Fake::v1().read(CgroupSetup::Legacy).unwrap();
        assert_eq!(stats.cpu_usage_ns, 11_157_893_275);
        assert_eq!(stats.system_cpu_ns, 10_000 * 1_000_000_000);
        assert_eq!(stats.online_cpus, 2);
        assert_eq!(stats.memory_usage, 5_681_152);
        assert_eq!(stats.memory_cache, 1_900_544, "total_inactive_file");
        assert_eq!(stats.memory_used(), 5_681_152 - 1_900_544);
        assert_eq!(stats.memory_limit, Some(32 * MIB));
        assert_eq!(stats.host_memory, HOST_MEMORY);
        assert_eq!(stats.pids_current, 3);
        assert_eq!(stats.pids_limit, Some(20));
        assert_eq!(stats.oom_kills, 1);
    }

    #[test]
    fn v1_no_limit_values_are_none() {
        let fake = Fake::v1();
        fake.controller_files(
            "memory",
            &[("memory.limit_in_bytes", "9223372036854771712\n")],
        );
        fake.controller_files("pids", &[("pids.max", "max\n")]);
        let stats = fake.read(CgroupSetup::Legacy).unwrap();
        assert_eq!(stats.memory_limit, None);
        assert_eq!(stats.pids_limit, None);
        assert_eq!(stats.effective_memory_limit(), HOST_MEMORY);
    }

    #[test]
    fn v1_optional_files_may_be_missing() {
        // No memsw files (no swap accounting) in any fake; here also no memory.stat
        // and a pre-4.13 oom_control without the oom_kill line.
        let fake = Fake::v1();
        fs::remove_file(fake.controller_dir("memory").join("memory.stat")).unwrap();
        fake.controller_files(
            "memory",
            &[("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n")],
        );
        let stats = fake.read(CgroupSetup::Legacy).unwrap();
        assert_eq!(stats.memory_cache, 0);
        assert_eq!(stats.oom_kills, 0);
        assert_eq!(stats.memory_used(), 5_681_152);
    }

    #[test]
    fn hybrid_tree_is_read_from_the_v1_controllers() {
        let fake = Fake::v1();
        // The cgroup2 at `unified` holds no controller files for the container.
        write_files(
            &fake
                .root
                .join("unified")
                .join(CONTAINER.trim_start_matches('/')),
            &[("cgroup.procs", "4242\n"), ("cpu.stat", "usage_usec 1\n")],
        );
        let stats = fake.read(CgroupSetup::Hybrid).unwrap();
        assert_eq!(stats.cpu_usage_ns, 11_157_893_275);
        assert_eq!(stats.memory_limit, Some(32 * MIB));
        assert_eq!(stats.pids_current, 3);
    }

    #[test]
    fn v2_tree_gives_docker_figures() {
        let stats = Fake::v2().read(CgroupSetup::Unified).unwrap();
        assert_eq!(stats.cpu_usage_ns, 2_500_000_000, "usage_usec in ns");
        assert_eq!(stats.memory_usage, 5_681_152);
        assert_eq!(stats.memory_cache, 1_900_544, "inactive_file");
        assert_eq!(stats.memory_limit, None, "memory.max is max");
        assert_eq!(stats.pids_current, 1);
        assert_eq!(stats.pids_limit, None, "pids.max is max");
        assert_eq!(stats.oom_kills, 2);
        assert_eq!(stats.online_cpus, 2);
    }

    #[test]
    fn v2_limits_are_read() {
        let fake = Fake::v2();
        let dir = fake.root.join(CONTAINER.trim_start_matches('/'));
        write_files(&dir, &[("memory.max", "67108864\n"), ("pids.max", "100\n")]);
        let stats = fake.read(CgroupSetup::Unified).unwrap();
        assert_eq!(stats.memory_limit, Some(64 * MIB));
        assert_eq!(stats.pids_limit, Some(100));
        // A v2 value as large as v1's "no limit" is a real limit.
        write_files(&dir, &[("memory.max", "9223372036854771712\n")]);
        let stats = fake.read(CgroupSetup::Unified).unwrap();
        assert_eq!(stats.memory_limit, Some(9_223_372_036_854_771_712));
    }

    #[test]
    fn missing_cgroup_is_reported_as_not_found() {
        for (fake, setup) in [
            (Fake::v1(), CgroupSetup::Legacy),
            (Fake::v2(), CgroupSetup::Unified),
        ] {
            let dirs =
                CgroupDirs::for_container(&fake.root, setup.version(), "/rcompose/demo/gone")
                    .unwrap();
            let err = read_stats_from(&dirs, &fake.host).unwrap_err();
            assert!(matches!(err, StatsError::CgroupNotFound { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                "container cgroup not found: /rcompose/demo/gone \
                 (the container is not running, or was removed)"
            );
        }
    }

    #[test]
    fn unmounted_v1_controller_is_named() {
        let fake = Fake::v1();
        fs::remove_dir_all(fake.root.join("pids")).unwrap();
        let err = CgroupDirs::for_container(&fake.root, CgroupVersion::V1, CONTAINER).unwrap_err();
        assert!(
            matches!(
                err,
                StatsError::ControllerNotMounted {
                    controller: "pids",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn v2_cgroup_without_memory_controller_names_the_file() {
        let fake = Fake::v2();
        let dir = fake.root.join(CONTAINER.trim_start_matches('/'));
        fs::remove_file(dir.join("memory.current")).unwrap();
        let err = fake.read(CgroupSetup::Unified).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StatsError::ReadCgroupFile { .. }), "{err:?}");
        assert!(message.contains("memory.current"), "{message}");
        assert!(message.contains(CONTAINER), "{message}");
        assert!(message.contains("controller enabled"), "{message}");
    }

    #[test]
    fn garbage_content_is_an_error_naming_file_and_container() {
        let cases: [(&str, &str, &str); 7] = [
            ("cpuacct", "cpuacct.usage", "banana\n"),
            ("cpuacct", "cpuacct.usage", ""),
            ("memory", "memory.usage_in_bytes", "-1\n"),
            ("memory", "memory.limit_in_bytes", "unlimited\n"),
            ("memory", "memory.stat", "total_inactive_file 12x\n"),
            ("memory", "memory.oom_control", "oom_kill\n"),
            ("pids", "pids.max", "12abc\n"),
        ];
        for (controller, file, content) in cases {
            let fake = Fake::v1();
            fake.controller_files(controller, &[(file, content)]);
            let err = fake.read(CgroupSetup::Legacy).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, StatsError::ParseCgroupFile { .. }),
                "{file}: {err:?}"
            );
            assert!(
                message.contains(file) && message.contains(CONTAINER),
                "{message}"
            );
        }
        let fake = Fake::v2();
        let dir = fake.root.join(CONTAINER.trim_start_matches('/'));
        write_files(&dir, &[("cpu.stat", "user_usec 5\n")]);
        let err = fake.read(CgroupSetup::Unified).unwrap_err();
        assert!(err.to_string().contains("no usage_usec line"), "{err}");
        write_files(&dir, &[("cpu.stat", "usage_usec 18446744073709551615\n")]);
        let err = fake.read(CgroupSetup::Unified).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn garbage_host_files_are_errors() {
        let fake = Fake::v1();
        fs::write(&fake.host.proc_stat, "cpu 1 2 3\n").unwrap();
        let err = fake.read(CgroupSetup::Legacy).unwrap_err();
        assert!(matches!(err, StatsError::ParseHostFile { .. }), "{err:?}");
        assert!(err.to_string().contains("expected at least 7"), "{err}");
        fs::write(&fake.host.proc_stat, PROC_STAT).unwrap();
        fs::write(&fake.host.meminfo, "MemTotal: lots\n").unwrap();
        let err = fake.read(CgroupSetup::Legacy).unwrap_err();
        assert!(err.to_string().contains("meminfo"), "{err}");
        fs::remove_file(&fake.host.meminfo).unwrap();
        let err = fake.read(CgroupSetup::Legacy).unwrap_err();
        assert!(matches!(err, StatsError::ReadHostFile { .. }), "{err:?}");
    }

    #[test]
    fn process_lists_are_sorted_and_checked() {
        assert_eq!(parse_pid_list("42\n7\n42\n").unwrap(), vec![7, 42]);
        assert_eq!(parse_pid_list("").unwrap(), Vec::<i32>::new());
        assert!(parse_pid_list("7\nx\n").unwrap_err().contains("\"x\""));
    }

    #[test]
    fn processes_are_read_from_the_pids_controller() {
        let fake = Fake::v1();
        fake.controller_files("pids", &[("cgroup.procs", "12\n3\n")]);
        let v1 = CgroupDirs::for_container(&fake.root, CgroupVersion::V1, CONTAINER).unwrap();
        assert_eq!(v1.reader().processes().unwrap(), vec![3, 12]);
        let fake = Fake::v2();
        let v2 = CgroupDirs::for_container(&fake.root, CgroupVersion::V2, CONTAINER).unwrap();
        assert_eq!(v2.reader().processes().unwrap(), vec![4242]);
    }

    #[test]
    fn proc_stat_parsing() {
        assert_eq!(parse_proc_stat(PROC_STAT), Ok((10_000 * 1_000_000_000, 2)));
        // Offline CPUs have no line; "cpufreq"-like names are not CPUs.
        let text = "cpu 1 0 0 0 0 0 0\ncpu0 1 0 0 0 0 0 0\ncpu3 0 0 0 0 0 0 0\ncpux 1\n";
        assert_eq!(parse_proc_stat(text), Ok((10_000_000, 2)));
        assert!(
            parse_proc_stat("cpu0 1 2 3 4 5 6 7\n").is_err(),
            "no total line"
        );
        assert!(parse_proc_stat("cpu 1 2 3 4 5 six 7\n").is_err());
        assert!(parse_proc_stat("cpu 18446744073709551615 1 0 0 0 0 0\n").is_err());
        assert!(parse_proc_stat("").is_err());
    }

    #[test]
    fn mem_total_parsing() {
        assert_eq!(parse_mem_total(MEMINFO), Ok(HOST_MEMORY));
        assert!(parse_mem_total("MemFree: 1 kB\n").is_err());
        assert!(parse_mem_total("MemTotal: 1 MB\n").is_err());
        assert!(parse_mem_total("MemTotal: 18446744073709551615 kB\n").is_err());
    }

    #[test]
    fn cgroup_setup_is_classified_like_libcgroups() {
        let root = Path::new("/sys/fs/cgroup");
        let ext4 = 0xEF53;
        let classify = |root_magic, unified| classify_cgroup_mount(root, root_magic, unified);
        assert_eq!(
            classify(CGROUP2_SUPER_MAGIC, None).unwrap(),
            CgroupSetup::Unified
        );
        assert_eq!(
            classify(TMPFS_MAGIC, Some(CGROUP2_SUPER_MAGIC)).unwrap(),
            CgroupSetup::Hybrid
        );
        assert_eq!(classify(TMPFS_MAGIC, None).unwrap(), CgroupSetup::Legacy);
        assert_eq!(
            classify(TMPFS_MAGIC, Some(TMPFS_MAGIC)).unwrap(),
            CgroupSetup::Legacy
        );
        let err = classify(ext4, None).unwrap_err();
        assert!(err.to_string().contains("0xef53"), "{err}");
        assert_eq!(CgroupSetup::Hybrid.version(), CgroupVersion::V1);
        assert_eq!(CgroupSetup::Unified.version(), CgroupVersion::V2);
    }

    #[test]
    fn this_hosts_cgroup_setup_is_detected() {
        match detect_cgroup_setup(Path::new(CGROUP_ROOT)) {
            Ok(setup) => println!("this host: {setup:?}"),
            Err(err) => println!("skipped: {err}"),
        }
        let err = detect_cgroup_setup(Path::new("/nonexistent-cgroup-root")).unwrap_err();
        assert!(matches!(err, StatsError::DetectLayout { .. }), "{err:?}");
    }

    #[test]
    fn cgroup_paths_must_name_a_cgroup_below_the_root() {
        for bad in [
            "",
            "/",
            "//",
            "relative/path",
            "/rcompose/../etc",
            "/a/./..",
        ] {
            let err = relative_cgroup_path(bad).unwrap_err();
            assert!(matches!(err, StatsError::InvalidCgroupPath(_)), "{bad:?}");
        }
        assert_eq!(
            relative_cgroup_path("/rcompose/demo/web-1/").unwrap(),
            PathBuf::from("rcompose/demo/web-1")
        );
        assert!(matches!(
            read_stats("../../etc"),
            Err(StatsError::InvalidCgroupPath(_))
        ));
    }

    #[test]
    fn cpu_percent_matches_docker() {
        // +0.5 s of container CPU over 2 s of host CPU time (1 s wall on 2 CPUs):
        // half a core → 0.5 / 2 * 2 * 100 = 50 %.
        let previous = sample(1_000_000_000, 100_000_000_000);
        let current = sample(1_500_000_000, 102_000_000_000);
        assert!((cpu_percent(&previous, &current) - 50.0).abs() < 1e-9);
        // Two busy cores on a 4-CPU host: 2 s / 4 s * 4 * 100 = 200 %.
        let current = ContainerStats {
            online_cpus: 4,
            ..sample(3_000_000_000, 104_000_000_000)
        };
        assert!((cpu_percent(&previous, &current) - 200.0).abs() < 1e-9);
        // No progress, or a counter going backwards (cgroup recreated): 0.
        assert_eq!(cpu_percent(&previous, &previous), 0.0);
        assert_eq!(cpu_percent(&current, &previous), 0.0);
        let no_host_time = sample(2_000_000_000, 100_000_000_000);
        assert_eq!(cpu_percent(&previous, &no_host_time), 0.0);
    }

    #[test]
    fn memory_percent_matches_docker() {
        // (100 MiB - 20 MiB inactive file) / 200 MiB = 40 %.
        let limited = memory(100 * MIB, 20 * MIB, Some(200 * MIB), 1024 * MIB);
        assert_eq!(limited.memory_used(), 80 * MIB);
        assert!((memory_percent(&limited) - 40.0).abs() < 1e-9);
        // Unlimited: the host's RAM is the limit; 80 MiB / 1 GiB = 7.8125 %.
        let unlimited = memory(100 * MIB, 20 * MIB, None, 1024 * MIB);
        assert!((memory_percent(&unlimited) - 7.8125).abs() < 1e-9);
        // A limit above the host's RAM is capped at it, as Docker does.
        let above_host = memory(100 * MIB, 20 * MIB, Some(4096 * MIB), 1024 * MIB);
        assert_eq!(above_host.effective_memory_limit(), 1024 * MIB);
        // Cache larger than usage (racy reads) is not subtracted.
        let racy = memory(10 * MIB, 20 * MIB, Some(100 * MIB), 1024 * MIB);
        assert!((memory_percent(&racy) - 10.0).abs() < 1e-9);
        // Nothing to divide by.
        assert_eq!(memory_percent(&memory(MIB, 0, None, 0)), 0.0);
    }

    #[test]
    fn stats_round_trip_through_json() {
        let stats = Fake::v1().read(CgroupSetup::Legacy).unwrap();
        let json = serde_json::to_string(&stats).unwrap();
        assert!(json.contains("\"oom_kills\":1"), "{json}");
        let back: ContainerStats = serde_json::from_str(&json).unwrap();
        assert_eq!(back, stats);
    }

    #[test]
    fn oom_kills_of_a_missing_container_are_zero() {
        assert_eq!(
            read_oom_kills("/rcompose-no-such-project/no-such-container"),
            0
        );
        assert_eq!(read_oom_kills("not absolute"), 0);
    }

    /// The test process's own cgroup directories, from `/proc/self/cgroup`.
    fn own_cgroup_dirs() -> Result<CgroupDirs, String> {
        let root = Path::new(CGROUP_ROOT);
        let version = detect_cgroup_setup(root)
            .map_err(|err| err.to_string())?
            .version();
        let own = fs::read_to_string("/proc/self/cgroup").map_err(|err| err.to_string())?;
        let dir_of = |controller: &str| -> Result<PathBuf, String> {
            let path = own
                .lines()
                .find_map(|line| {
                    let mut parts = line.splitn(3, ':');
                    let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                    let listed = match version {
                        CgroupVersion::V1 => controllers.split(',').any(|c| c == controller),
                        CgroupVersion::V2 => controllers.is_empty(),
                    };
                    listed.then_some(path)
                })
                .ok_or_else(|| format!("no {controller} line in /proc/self/cgroup"))?;
            let relative = path.trim_start_matches('/');
            Ok(match version {
                CgroupVersion::V1 => root.join(controller).join(relative),
                CgroupVersion::V2 => root.join(relative),
            })
        };
        Ok(CgroupDirs {
            version,
            cgroups_path: "(the test process's own cgroup)".to_string(),
            cpu: dir_of("cpuacct")?,
            memory: dir_of("memory")?,
            pids: dir_of("pids")?,
        })
    }

    const PROC_STAT_PATH: &str = super::PROC_STAT;

    #[test]
    fn own_cgroup_has_plausible_figures() {
        let dirs = match own_cgroup_dirs() {
            Ok(dirs) => dirs,
            Err(reason) => {
                println!("own cgroup: skipped, {reason}");
                return;
            }
        };
        let host = HostFiles {
            proc_stat: PathBuf::from(PROC_STAT_PATH),
            meminfo: PathBuf::from(PROC_MEMINFO),
        };
        let stats = match read_stats_from(&dirs, &host) {
            Ok(stats) => stats,
            // A root cgroup lacks pids.current and memory.current, for example.
            Err(err @ (StatsError::ReadCgroupFile { .. } | StatsError::CgroupNotFound { .. })) => {
                println!("own cgroup: skipped, {err}");
                return;
            }
            Err(err) => panic!("reading the own cgroup {dirs:?}: {err}"),
        };
        assert!(stats.memory_usage > 0, "{stats:?}");
        assert!(stats.pids_current >= 1, "{stats:?}");
        assert!(stats.cpu_usage_ns > 0, "{stats:?}");
        assert!(
            stats.online_cpus >= 1 && stats.system_cpu_ns > 0,
            "{stats:?}"
        );
        assert!(stats.host_memory > 0, "{stats:?}");
    }

    /// A cgroup made for one test in every controller it needs, holding one child
    /// process; both are removed on drop, even when the test fails.
    struct TestCgroup {
        version: CgroupVersion,
        dirs: Vec<PathBuf>,
        child: Option<std::process::Child>,
    }

    impl TestCgroup {
        fn create(root: &Path, version: CgroupVersion, cgroups_path: &str) -> io::Result<Self> {
            let relative = cgroups_path.trim_start_matches('/');
            let dirs = match version {
                CgroupVersion::V1 => ["memory", "pids", "cpuacct"]
                    .iter()
                    .map(|controller| root.join(controller).join(relative))
                    .collect(),
                CgroupVersion::V2 => vec![root.join(relative)],
            };
            let mut cgroup = TestCgroup {
                version,
                dirs: Vec::new(),
                child: None,
            };
            for dir in dirs {
                fs::create_dir(&dir)?;
                cgroup.dirs.push(dir);
            }
            Ok(cgroup)
        }

        /// 64 MiB of memory and 50 pids. The memory dir comes first, then pids.
        fn set_limits(&self) -> io::Result<()> {
            let (memory_file, pids_dir) = match self.version {
                CgroupVersion::V1 => ("memory.limit_in_bytes", self.dirs.get(1)),
                CgroupVersion::V2 => ("memory.max", self.dirs.first()),
            };
            let missing = || io::Error::new(io::ErrorKind::NotFound, "no cgroup dir");
            let memory_dir = self.dirs.first().ok_or_else(missing)?;
            fs::write(memory_dir.join(memory_file), "67108864")?;
            fs::write(pids_dir.ok_or_else(missing)?.join("pids.max"), "50")
        }

        /// Starts a shell that joins the cgroup itself, burns a little CPU, creates
        /// `ready`, then becomes `sleep`.
        fn spawn_member(&mut self, ready: &Path) -> io::Result<()> {
            let procs: Vec<PathBuf> = self.dirs.iter().map(|d| d.join("cgroup.procs")).collect();
            let script = r#"for f in "$@"; do echo $$ > "$f" || exit 1; done
                i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done
                : > "$READY"; exec sleep 30"#;
            let child = std::process::Command::new("/bin/sh")
                .args(["-c", script, "sh"])
                .args(&procs)
                .env("READY", ready)
                .spawn()?;
            self.child = Some(child);
            Ok(())
        }

        fn wait_until_ready(&mut self, ready: &Path) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !ready.exists() {
                if let Some(child) = self.child.as_mut() {
                    let exited = child.try_wait().expect("waiting for the child");
                    assert!(exited.is_none(), "the child exited early: {exited:?}");
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the child never got ready"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }

        fn remove(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            for dir in self.dirs.drain(..) {
                // The kernel may take a moment to release a cgroup whose last task exited.
                for _ in 0..50 {
                    if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            self.remove();
        }
    }

    #[test]
    fn process_in_a_fresh_cgroup_is_measured_through_the_public_api() {
        if !rustix::process::geteuid().is_root() {
            println!("fresh cgroup: skipped, creating cgroups needs root");
            return;
        }
        let root = Path::new(CGROUP_ROOT);
        let version = match detect_cgroup_setup(root) {
            Ok(setup) => setup.version(),
            Err(err) => {
                println!("fresh cgroup: skipped, {err}");
                return;
            }
        };
        let cgroups_path = format!("/rcompose-stats-test-{}", std::process::id());
        let mut cgroup = match TestCgroup::create(root, version, &cgroups_path) {
            Ok(cgroup) => cgroup,
            Err(err) => {
                println!("fresh cgroup: skipped, cannot create {cgroups_path}: {err}");
                return;
            }
        };
        if let Err(err) = cgroup.set_limits() {
            println!("fresh cgroup: skipped, cannot set limits (controllers not enabled?): {err}");
            return;
        }
        let scratch = tempfile::tempdir().expect("temp dir");
        let ready = scratch.path().join("ready");
        cgroup.spawn_member(&ready).expect("spawning /bin/sh");
        cgroup.wait_until_ready(&ready);

        let first = read_stats(&cgroups_path).expect("reading the fresh cgroup");
        assert_eq!(first.pids_current, 1, "{first:?}");
        assert_eq!(first.pids_limit, Some(50));
        assert_eq!(first.memory_limit, Some(64 * MIB));
        assert!(first.memory_usage > 0, "{first:?}");
        assert!(first.cpu_usage_ns > 0, "{first:?}");
        assert_eq!(first.oom_kills, 0);
        assert_eq!(read_oom_kills(&cgroups_path), 0);

        let rounds = 200;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            read_stats(&cgroups_path).expect("reading the fresh cgroup again");
        }
        println!(
            "fresh cgroup ({version:?}): read_stats takes {:?} on average (debug build)",
            started.elapsed() / rounds
        );
        let second = read_stats(&cgroups_path).expect("reading the fresh cgroup again");
        let percent = cpu_percent(&first, &second);
        assert!(
            (0.0..=f64::from(second.online_cpus) * 100.0).contains(&percent),
            "{percent}"
        );
        assert!(memory_percent(&second) > 0.0);

        cgroup.remove();
        let err = read_stats(&cgroups_path).unwrap_err();
        assert!(matches!(err, StatsError::CgroupNotFound { .. }), "{err:?}");
    }
}
