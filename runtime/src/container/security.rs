//! Capabilities, `security_opt` and seccomp, with Docker's semantics.
//!
//! `seccomp-default.json` is Docker's default seccomp profile, copied unchanged from
//! Debian's `golang-github-docker-docker-dev` 20.10.24+dfsg1-1+deb12u1
//! (`/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json`),
//! which is part of the Moby project, Copyright Docker, Inc., licensed under the
//! Apache License 2.0. It is written in Docker's own format (rules conditioned on
//! capabilities, architectures and kernel versions), so it is converted to the OCI
//! form for each container, as moby's `profiles/seccomp` does.

use std::fs;
use std::io;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSyscall,
};
use serde::Deserialize;
use thiserror::Error;

/// Docker's default seccomp profile (see the module comment for its origin).
pub const DOCKER_DEFAULT_SECCOMP_PROFILE: &str = include_str!("seccomp-default.json");

/// The capabilities Docker gives a container by default (`oci/caps/defaults.go`).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability up to CAP_CHECKPOINT_RESTORE (Linux 5.9), in kernel order.
/// `privileged` and `cap_add: ALL` grant these.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const ALL: &str = "ALL";

#[derive(Debug, Error)]
pub enum SecurityError {
    #[error("unknown capability: {0:?}")]
    UnknownCapability(String),
    #[error("invalid security_opt {0:?}: expected no-new-privileges, seccomp=…, apparmor=…, label=… or systempaths=unconfined")]
    InvalidSecurityOpt(String),
    #[error("reading seccomp profile {path}: {source}")]
    ReadProfile {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("decoding seccomp profile failed: {0}")]
    DecodeProfile(#[source] serde_json::Error),
    #[error("seccomp profile: {0}")]
    InvalidProfile(String),
}

/// Upper-cases, adds the `CAP_` prefix when missing, and checks the name.
/// `ALL` passes through.
fn normalize_capability(name: &str) -> Result<String, SecurityError> {
    let upper = name.to_ascii_uppercase();
    if upper == ALL {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(SecurityError::UnknownCapability(full))
    }
}

fn normalize_capabilities(names: &[String]) -> Result<Vec<String>, SecurityError> {
    names.iter().map(|n| normalize_capability(n)).collect()
}

/// The container's capability list, as Docker's `TweakCapabilities` computes it:
/// privileged → all; `cap_add: ALL` → all but the dropped; `cap_drop: ALL` → only the
/// added; otherwise the defaults minus the dropped, then the added.
pub fn container_capabilities(
    cap_add: &[String],
    cap_drop: &[String],
    privileged: bool,
) -> Result<Vec<String>, SecurityError> {
    let all = || ALL_CAPABILITIES.iter().map(|c| c.to_string());
    if privileged {
        return Ok(all().collect());
    }
    let add = normalize_capabilities(cap_add)?;
    let drop = normalize_capabilities(cap_drop)?;

    let mut caps: Vec<String> = if add.iter().any(|c| c == ALL) {
        all().filter(|c| !drop.contains(c)).collect()
    } else if drop.iter().any(|c| c == ALL) {
        add
    } else {
        let mut kept: Vec<String> = DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect();
        kept.extend(add);
        kept
    };
    // The OCI sets are sets; keep the first occurrence of each name.
    let mut seen = Vec::with_capacity(caps.len());
    caps.retain(|c| {
        let fresh = !seen.contains(c);
        if fresh {
            seen.push(c.clone());
        }
        fresh
    });
    Ok(caps)
}

/// Which seccomp filter the container gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SeccompChoice {
    /// Docker's default profile.
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`).
    Unconfined,
    /// A Docker-format profile, as JSON text (read from `seccomp=PATH`).
    Profile(String),
}

/// `security_opt` entries, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityOptions {
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
    /// `systempaths=unconfined`: no masked or read-only paths.
    pub unconfined_system_paths: bool,
    /// Accepted for compatibility; this runtime applies no AppArmor profile.
    pub apparmor: Option<String>,
    /// Accepted for compatibility; this runtime applies no SELinux labels.
    pub labels: Vec<String>,
}

/// Parses Docker's `--security-opt` values. `seccomp=PATH` reads the file (as the
/// docker CLI does before sending the profile to the daemon); a value starting
/// with `{` is taken as the profile itself.
pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOptions, SecurityError> {
    let mut parsed = SecurityOptions::default();
    for opt in opts {
        apply_security_opt(&mut parsed, opt)?;
    }
    Ok(parsed)
}

fn apply_security_opt(parsed: &mut SecurityOptions, opt: &str) -> Result<(), SecurityError> {
    let invalid = || SecurityError::InvalidSecurityOpt(opt.to_string());
    if opt == "no-new-privileges" {
        parsed.no_new_privileges = true;
        return Ok(());
    }
    if opt == "disable" {
        parsed.labels.push(opt.to_string());
        return Ok(());
    }
    let (key, value) = opt
        .split_once('=')
        .or_else(|| opt.split_once(':'))
        .ok_or_else(invalid)?;
    match key {
        "no-new-privileges" => {
            parsed.no_new_privileges = parse_go_bool(value).ok_or_else(invalid)?
        }
        "seccomp" => parsed.seccomp = seccomp_choice(value)?,
        "systempaths" if value == "unconfined" => parsed.unconfined_system_paths = true,
        "apparmor" => parsed.apparmor = Some(value.to_string()),
        "label" => parsed.labels.push(value.to_string()),
        _ => return Err(invalid()),
    }
    Ok(())
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn seccomp_choice(value: &str) -> Result<SeccompChoice, SecurityError> {
    match value {
        "unconfined" => Ok(SeccompChoice::Unconfined),
        "builtin" | "" => Ok(SeccompChoice::Default),
        inline if inline.trim_start().starts_with('{') => {
            Ok(SeccompChoice::Profile(inline.to_string()))
        }
        path => fs::read_to_string(path)
            .map(SeccompChoice::Profile)
            .map_err(|source| SecurityError::ReadProfile {
                path: path.to_string(),
                source,
            }),
    }
}

/// What a seccomp profile's conditions are evaluated against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// libseccomp's native name of the architecture: `amd64`, `arm64`, `x86`, …
    pub arch: String,
    /// Kernel version and major revision, e.g. (6, 1).
    pub kernel: (u32, u32),
}

impl Platform {
    /// The machine this code runs on. The kernel version comes from
    /// `/proc/sys/kernel/osrelease`; when it cannot be read it is taken as 0.0, so
    /// rules that need a minimum kernel are left out.
    pub fn host() -> Platform {
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|release| parse_kernel_release(&release))
            .unwrap_or((0, 0));
        Platform {
            arch: host_seccomp_arch().to_string(),
            kernel,
        }
    }
}

fn host_seccomp_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// `6.1.0-18-amd64` → (6, 1). Minor revisions and suffixes are ignored, as Docker does.
fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut numbers = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let kernel = numbers.next()?.parse().ok()?;
    let major = numbers.next()?.parse().ok()?;
    Some((kernel, major))
}

/// The seccomp architecture name of a libseccomp native arch name.
fn seccomp_arch_name(native: &str) -> Option<&'static str> {
    Some(match native {
        "x86" => "SCMP_ARCH_X86",
        "amd64" => "SCMP_ARCH_X86_64",
        "arm" => "SCMP_ARCH_ARM",
        "arm64" => "SCMP_ARCH_AARCH64",
        "mips64" => "SCMP_ARCH_MIPS64",
        "mips64n32" => "SCMP_ARCH_MIPS64N32",
        "mipsel64" => "SCMP_ARCH_MIPSEL64",
        "mips3l64n32" => "SCMP_ARCH_MIPSEL64N32",
        "mipsel" => "SCMP_ARCH_MIPSEL",
        "ppc" => "SCMP_ARCH_PPC",
        "ppc64" => "SCMP_ARCH_PPC64",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "s390" => "SCMP_ARCH_S390",
        "s390x" => "SCMP_ARCH_S390X",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => return None,
    })
}

/// A seccomp profile in Docker's format.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    #[serde(default)]
    default_action: Option<LinuxSeccompAction>,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMapEntry>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    syscalls: Option<Vec<DockerSyscall>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<RuleFilter>,
    #[serde(default)]
    excludes: Option<RuleFilter>,
}

/// The condition part of a Docker seccomp rule.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleFilter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Docker's default profile converted for a container with these capabilities
/// (the bounding set) on `platform`.
pub fn default_seccomp(
    caps: &[String],
    platform: &Platform,
) -> Result<LinuxSeccomp, SecurityError> {
    seccomp_from_profile(DOCKER_DEFAULT_SECCOMP_PROFILE, caps, platform)?
        .ok_or_else(|| SecurityError::InvalidProfile("the default profile is empty".into()))
}

/// Converts a Docker-format profile to the OCI form. `None` when the profile has
/// neither a default action nor rules, which Docker reads as "no filter".
pub fn seccomp_from_profile(
    json: &str,
    caps: &[String],
    platform: &Platform,
) -> Result<Option<LinuxSeccomp>, SecurityError> {
    let profile: DockerProfile =
        serde_json::from_str(json).map_err(SecurityError::DecodeProfile)?;
    let rules = profile.syscalls.unwrap_or_default();
    let Some(default_action) = profile.default_action else {
        if rules.is_empty() {
            return Ok(None);
        }
        return Err(SecurityError::InvalidProfile(
            "defaultAction is missing".into(),
        ));
    };

    let architectures = profile_architectures(
        profile.architectures.unwrap_or_default(),
        profile.arch_map.unwrap_or_default(),
        &platform.arch,
    )?;
    let mut syscalls = Vec::new();
    for rule in rules {
        if rule_applies(&rule, caps, platform)? {
            syscalls.push(oci_syscall(rule)?);
        }
    }

    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(default_action);
    seccomp.set_default_errno_ret(profile.default_errno_ret);
    seccomp.set_architectures((!architectures.is_empty()).then_some(architectures));
    seccomp.set_flags(profile.flags.filter(|f| !f.is_empty()));
    seccomp.set_syscalls(Some(syscalls));
    Ok(Some(seccomp))
}

/// `architectures` as given, or the host's entry of `archMap` with its sub-arches.
fn profile_architectures(
    listed: Vec<Arch>,
    arch_map: Vec<ArchMapEntry>,
    native: &str,
) -> Result<Vec<Arch>, SecurityError> {
    if !listed.is_empty() && !arch_map.is_empty() {
        return Err(SecurityError::InvalidProfile(
            "'architectures' and 'archMap' were both specified; use one of them".into(),
        ));
    }
    if !listed.is_empty() {
        return Ok(listed);
    }
    let Some(host_name) = seccomp_arch_name(native) else {
        return Ok(Vec::new());
    };
    let host_entry = arch_map
        .into_iter()
        .find(|entry| arch_name(entry.architecture).as_deref() == Some(host_name));
    Ok(host_entry
        .map(|entry| {
            let mut arches = vec![entry.architecture];
            arches.extend(entry.sub_architectures.unwrap_or_default());
            arches
        })
        .unwrap_or_default())
}

fn arch_name(arch: Arch) -> Option<String> {
    match serde_json::to_value(arch) {
        Ok(serde_json::Value::String(name)) => Some(name),
        _ => None,
    }
}

/// Docker's filter: every `excludes` condition must fail and every `includes`
/// condition must hold (caps are checked against the bounding set).
fn rule_applies(
    rule: &DockerSyscall,
    caps: &[String],
    platform: &Platform,
) -> Result<bool, SecurityError> {
    let has_cap = |c: &String| caps.contains(c);
    let arch = platform.arch.as_str();
    if let Some(ex) = &rule.excludes {
        if ex
            .arches
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x == arch))
        {
            return Ok(false);
        }
        if ex.caps.as_ref().is_some_and(|c| c.iter().any(has_cap)) {
            return Ok(false);
        }
        if let Some(min) = nonempty(&ex.min_kernel) {
            if platform.kernel >= parse_min_kernel(min)? {
                return Ok(false);
            }
        }
    }
    if let Some(inc) = &rule.includes {
        if inc
            .arches
            .as_ref()
            .is_some_and(|a| !a.is_empty() && !a.iter().any(|x| x == arch))
        {
            return Ok(false);
        }
        if inc.caps.as_ref().is_some_and(|c| !c.iter().all(has_cap)) {
            return Ok(false);
        }
        if let Some(min) = nonempty(&inc.min_kernel) {
            if platform.kernel < parse_min_kernel(min)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn parse_min_kernel(version: &str) -> Result<(u32, u32), SecurityError> {
    let invalid = || {
        SecurityError::InvalidProfile(format!(
            "invalid kernel version {version:?}, expected \"<kernel>.<major>\""
        ))
    };
    let (kernel, major) = version.split_once('.').ok_or_else(invalid)?;
    Ok((
        kernel.parse().map_err(|_| invalid())?,
        major.parse().map_err(|_| invalid())?,
    ))
}

fn oci_syscall(rule: DockerSyscall) -> Result<LinuxSyscall, SecurityError> {
    let names = match (rule.name.filter(|n| !n.is_empty()), rule.names) {
        (Some(_), Some(names)) if !names.is_empty() => {
            return Err(SecurityError::InvalidProfile(
                "'name' and 'names' were both specified in a rule; use one of them".into(),
            ))
        }
        (Some(name), _) => vec![name],
        (None, names) => names.unwrap_or_default(),
    };
    let mut syscall = LinuxSyscall::default();
    syscall.set_names(names);
    syscall.set_action(rule.action);
    syscall.set_errno_ret(rule.errno_ret);
    syscall.set_args(rule.args.filter(|a| !a.is_empty()));
    Ok(syscall)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn amd64() -> Platform {
        Platform {
            arch: "amd64".into(),
            kernel: (6, 1),
        }
    }

    fn defaults() -> Vec<String> {
        strings(&DEFAULT_CAPABILITIES)
    }

    #[test]
    fn default_capabilities_without_tweaks() {
        assert_eq!(container_capabilities(&[], &[], false).unwrap(), defaults());
    }

    #[test]
    fn drop_then_add_accepts_any_case_and_optional_prefix() {
        let caps = container_capabilities(
            &strings(&["net_admin", "CAP_SYS_PTRACE"]),
            &strings(&["cap_mknod", "NET_RAW"]),
            false,
        )
        .unwrap();
        assert!(!caps.contains(&"CAP_MKNOD".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert_eq!(caps.len(), 14);
        assert_eq!(&caps[12..], &strings(&["CAP_NET_ADMIN", "CAP_SYS_PTRACE"]));
    }

    #[test]
    fn all_in_add_or_drop() {
        let caps =
            container_capabilities(&strings(&["ALL"]), &strings(&["sys_admin"]), false).unwrap();
        assert_eq!(caps.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));

        let caps = container_capabilities(&strings(&["chown"]), &strings(&["all"]), false).unwrap();
        assert_eq!(caps, strings(&["CAP_CHOWN"]));
        assert!(container_capabilities(&[], &strings(&["ALL"]), false)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn privileged_gets_every_capability() {
        let caps = container_capabilities(&[], &strings(&["ALL"]), true).unwrap();
        assert_eq!(caps, strings(&ALL_CAPABILITIES));
    }

    #[test]
    fn unknown_capability_is_an_error() {
        let err = container_capabilities(&strings(&["FLY"]), &[], false).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability: \"CAP_FLY\"");
    }

    #[test]
    fn security_opts() {
        let parsed = parse_security_opts(&strings(&[
            "no-new-privileges",
            "seccomp=unconfined",
            "apparmor=unconfined",
            "label:disable",
        ]))
        .unwrap();
        assert!(parsed.no_new_privileges);
        assert_eq!(parsed.seccomp, SeccompChoice::Unconfined);
        assert_eq!(parsed.apparmor.as_deref(), Some("unconfined"));
        assert_eq!(parsed.labels, strings(&["disable"]));

        let parsed = parse_security_opts(&strings(&["no-new-privileges=false"])).unwrap();
        assert!(!parsed.no_new_privileges);
        assert!(parse_security_opts(&strings(&["no-new-privileges=maybe"])).is_err());
        assert!(parse_security_opts(&strings(&["bogus=1"])).is_err());
        assert!(parse_security_opts(&strings(&["bogus"])).is_err());
        let parsed = parse_security_opts(&strings(&["systempaths=unconfined"])).unwrap();
        assert!(parsed.unconfined_system_paths);
    }

    #[test]
    fn seccomp_path_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        fs::write(&path, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        let opt = format!("seccomp={}", path.display());
        let parsed = parse_security_opts(&[opt]).unwrap();
        assert_eq!(
            parsed.seccomp,
            SeccompChoice::Profile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.into())
        );
        let missing = format!("seccomp={}", dir.path().join("nope.json").display());
        assert!(matches!(
            parse_security_opts(&[missing]),
            Err(SecurityError::ReadProfile { .. })
        ));
    }

    fn rule_names(seccomp: &LinuxSeccomp) -> Vec<String> {
        seccomp
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn default_profile_for_default_caps_on_amd64() {
        let seccomp = default_seccomp(&defaults(), &amd64()).unwrap();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(
            seccomp.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        let names = rule_names(&seccomp);
        for allowed in [
            "read",
            "openat",
            "arch_prctl",
            "modify_ldt",
            "ptrace",
            "chroot",
        ] {
            assert!(
                names.iter().any(|n| n == allowed),
                "{allowed} should be allowed"
            );
        }
        // CAP_SYS_ADMIN-only calls, foreign arches, and caps the container lacks.
        for denied in [
            "mount",
            "bpf",
            "reboot",
            "s390_runtime_instr",
            "sync_file_range2",
            "init_module",
        ] {
            assert!(
                !names.iter().any(|n| n == denied),
                "{denied} should be filtered"
            );
        }
        // clone is allowed only without namespace flags, and clone3 returns ENOSYS.
        let rules = seccomp.syscalls().clone().unwrap_or_default();
        let clone = rules
            .iter()
            .find(|r| r.names() == &["clone".to_string()])
            .unwrap();
        assert_eq!(clone.args().as_ref().map(Vec::len), Some(1));
        let clone3 = rules
            .iter()
            .find(|r| r.names() == &["clone3".to_string()])
            .unwrap();
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3.errno_ret(), Some(38));
    }

    #[test]
    fn default_profile_follows_capabilities_and_kernel() {
        let mut caps = defaults();
        caps.push("CAP_SYS_ADMIN".into());
        let seccomp = default_seccomp(&caps, &amd64()).unwrap();
        let names = rule_names(&seccomp);
        assert!(names.iter().any(|n| n == "mount"));
        // The masked-args clone rule and the ENOSYS clone3 rule are excluded.
        assert!(!seccomp
            .syscalls()
            .iter()
            .flatten()
            .any(|r| r.errno_ret() == Some(38)));

        let old_kernel = Platform {
            kernel: (4, 4),
            ..amd64()
        };
        let names = rule_names(&default_seccomp(&defaults(), &old_kernel).unwrap());
        assert!(!names.iter().any(|n| n == "ptrace"));
    }

    #[test]
    fn default_profile_on_arm64() {
        let arm = Platform {
            arch: "arm64".into(),
            kernel: (6, 1),
        };
        let seccomp = default_seccomp(&defaults(), &arm).unwrap();
        assert_eq!(
            seccomp.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        let names = rule_names(&seccomp);
        assert!(names.iter().any(|n| n == "arm_fadvise64_64"));
        assert!(!names.iter().any(|n| n == "arch_prctl"));
    }

    #[test]
    fn custom_profiles() {
        let empty = seccomp_from_profile("{}", &defaults(), &amd64()).unwrap();
        assert!(empty.is_none());
        let profile = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"name":"chmod","action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#;
        let seccomp = seccomp_from_profile(profile, &defaults(), &amd64())
            .unwrap()
            .unwrap();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(rule_names(&seccomp), strings(&["chmod"]));
        let both = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":[]}]}"#;
        assert!(matches!(
            seccomp_from_profile(both, &defaults(), &amd64()),
            Err(SecurityError::InvalidProfile(_))
        ));
        assert!(matches!(
            seccomp_from_profile("{not json", &defaults(), &amd64()),
            Err(SecurityError::DecodeProfile(_))
        ));
    }

    #[test]
    fn kernel_release_parsing() {
        assert_eq!(parse_kernel_release("6.1.0-18-amd64\n"), Some((6, 1)));
        assert_eq!(parse_kernel_release("3.12-rc5"), Some((3, 12)));
        assert_eq!(parse_kernel_release("garbage"), None);
    }
}
