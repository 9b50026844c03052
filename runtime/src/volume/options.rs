//! The local driver's `driver_opts` (`type`, `device`, `o`), as dockerd's local driver
//! reads them: validated when the volume is created, mounted on the volume's `_data`
//! when its first container attaches and unmounted when the last one detaches.
//!
//! `o` is split the way `mount(8)` does: flag words (`ro`, `nosuid`, `bind`, `rbind`,
//! `private`, ...) become mount flags, everything else (`size=100m`, `uid=1000`,
//! `addr=...`) is passed to the filesystem as its data string.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::net::ToSocketAddrs;
use std::path::Path;

use rustix::fs::{AtFlags, StatxAttributes, StatxFlags, CWD};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use thiserror::Error;

/// Keys the local driver accepts in `driver_opts`.
const VALID_KEYS: [&str; 4] = ["type", "device", "o", "size"];

/// An option that needs others next to it (dockerd's `mandatoryOpts`).
const REQUIRED_WITH: [(&str, &[&str]); 3] = [
    ("device", &["type"]),
    ("type", &["device"]),
    ("o", &["device", "type"]),
];

/// Why a volume's `driver_opts` cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("invalid option: {0:?} (the local driver takes type, device and o)")]
    UnknownKey(String),
    #[error("missing required option: {missing:?} (needed with {given:?})")]
    MissingRequired {
        missing: &'static str,
        given: &'static str,
    },
    #[error("quota size requested but no quota support (remove the \"size\" option)")]
    QuotaUnsupported,
    #[error("option {key:?} contains a NUL byte")]
    NulByte { key: &'static str },
    #[error("mount option {0:?} in \"o\" is not allowed for a volume")]
    ForbiddenFlag(String),
}

/// Why mounting a volume's device failed; the text says which option to check.
#[derive(Debug, Error)]
#[error("failed to mount local volume: mount {what}: {source}{hint}")]
pub struct MountError {
    /// `device:target (type T, options "o")`, any password masked.
    what: String,
    #[source]
    source: io::Error,
    hint: String,
}

/// How to mount a volume's device, parsed from its `driver_opts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMount {
    pub fstype: String,
    pub device: String,
    /// `o` as given, for messages.
    pub options: String,
    flags: MountFlags,
    propagation: Option<MountPropagationFlags>,
    data: String,
}

/// Checks `driver_opts` as dockerd's local driver does at create time and returns how
/// to mount the volume, or `None` for a plain directory volume.
pub fn parse(opts: &BTreeMap<String, String>) -> Result<Option<LocalMount>, OptionsError> {
    if let Some(key) = opts.keys().find(|k| !VALID_KEYS.contains(&k.as_str())) {
        return Err(OptionsError::UnknownKey(key.clone()));
    }
    for (given, needs) in REQUIRED_WITH {
        if opts.contains_key(given) {
            if let Some(missing) = needs.iter().find(|n| !opts.contains_key(**n)) {
                return Err(OptionsError::MissingRequired { missing, given });
            }
        }
    }
    if opts.get("size").is_some_and(|s| !s.is_empty() && s != "0") {
        return Err(OptionsError::QuotaUnsupported);
    }
    let (Some(fstype), Some(device)) = (opts.get("type"), opts.get("device")) else {
        return Ok(None);
    };
    let options = opts.get("o").cloned().unwrap_or_default();
    for (key, value) in [("type", fstype), ("device", device), ("o", &options)] {
        if value.contains('\0') {
            return Err(OptionsError::NulByte { key });
        }
    }
    let (flags, propagation, data) = split_options(&options)?;
    Ok(Some(LocalMount {
        fstype: fstype.clone(),
        device: device.clone(),
        options,
        flags,
        propagation,
        data,
    }))
}

/// Splits `o` into mount flags, a propagation change and the filesystem's data string.
fn split_options(
    options: &str,
) -> Result<(MountFlags, Option<MountPropagationFlags>, String), OptionsError> {
    let mut flags = MountFlags::empty();
    let mut propagation = None;
    let mut data = Vec::new();
    for word in options.split(',').filter(|w| !w.is_empty()) {
        if let Some((set, clear)) = flag_word(word) {
            flags = (flags - clear) | set;
        } else if let Some(change) = propagation_word(word) {
            propagation = Some(change);
        } else if matches!(word, "remount" | "move") {
            return Err(OptionsError::ForbiddenFlag(word.to_string()));
        } else {
            data.push(word);
        }
    }
    Ok((flags, propagation, data.join(",")))
}

/// Flag words of `mount(8)`: the flags they set and the flags they clear.
fn flag_word(word: &str) -> Option<(MountFlags, MountFlags)> {
    let none = MountFlags::empty();
    Some(match word {
        "defaults" => (none, none),
        "ro" => (MountFlags::RDONLY, none),
        "rw" => (none, MountFlags::RDONLY),
        "nosuid" => (MountFlags::NOSUID, none),
        "suid" => (none, MountFlags::NOSUID),
        "nodev" => (MountFlags::NODEV, none),
        "dev" => (none, MountFlags::NODEV),
        "noexec" => (MountFlags::NOEXEC, none),
        "exec" => (none, MountFlags::NOEXEC),
        "sync" => (MountFlags::SYNCHRONOUS, none),
        "async" => (none, MountFlags::SYNCHRONOUS),
        "dirsync" => (MountFlags::DIRSYNC, none),
        "noatime" => (MountFlags::NOATIME, none),
        "atime" => (none, MountFlags::NOATIME),
        "nodiratime" => (MountFlags::NODIRATIME, none),
        "diratime" => (none, MountFlags::NODIRATIME),
        "relatime" => (MountFlags::RELATIME, none),
        "norelatime" => (none, MountFlags::RELATIME),
        "strictatime" => (MountFlags::STRICTATIME, none),
        "nostrictatime" => (none, MountFlags::STRICTATIME),
        "bind" => (MountFlags::BIND, none),
        "rbind" => (MountFlags::BIND | MountFlags::REC, none),
        _ => return None,
    })
}

fn propagation_word(word: &str) -> Option<MountPropagationFlags> {
    let rec = MountPropagationFlags::REC;
    Some(match word {
        "private" => MountPropagationFlags::PRIVATE,
        "rprivate" => MountPropagationFlags::PRIVATE | rec,
        "shared" => MountPropagationFlags::SHARED,
        "rshared" => MountPropagationFlags::SHARED | rec,
        "slave" => MountPropagationFlags::DOWNSTREAM,
        "rslave" => MountPropagationFlags::DOWNSTREAM | rec,
        "unbindable" => MountPropagationFlags::UNBINDABLE,
        "runbindable" => MountPropagationFlags::UNBINDABLE | rec,
        _ => return None,
    })
}

impl LocalMount {
    /// Whether this is a bind of a host path (`o: bind`), as opposed to a filesystem.
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MountFlags::BIND)
    }

    /// Mounts the device on `target` (the volume's `_data`).
    pub fn mount(&self, target: &Path) -> Result<(), MountError> {
        self.mount_inner(target)
            .map_err(|source| self.error(target, source))
    }

    fn mount_inner(&self, target: &Path) -> io::Result<()> {
        let data = self.resolved_data()?;
        let data = CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let data = (!data.as_bytes().is_empty()).then_some(data.as_c_str());
        rustix::mount::mount(
            self.device.as_str(),
            target,
            self.fstype.as_str(),
            self.flags,
            data,
        )?;
        // The kernel ignores MS_RDONLY on a new bind: make it read-only with a remount.
        if self.is_bind() && self.flags.contains(MountFlags::RDONLY) {
            let remount = self.flags & !MountFlags::REC;
            if let Err(err) = rustix::mount::mount_remount(target, remount, "") {
                let _ = unmount(target);
                return Err(err.into());
            }
        }
        if let Some(change) = self.propagation {
            if let Err(err) = rustix::mount::mount_change(target, change) {
                let _ = unmount(target);
                return Err(err.into());
            }
        }
        Ok(())
    }

    /// The data string, with an NFS `addr=<host name>` resolved to an IPv4 address:
    /// the kernel's NFS client takes addresses only (dockerd resolves it the same way).
    fn resolved_data(&self) -> io::Result<String> {
        if self.fstype != "nfs" {
            return Ok(self.data.clone());
        }
        let words: io::Result<Vec<String>> = self
            .data
            .split(',')
            .map(|word| match word.strip_prefix("addr=") {
                Some(host) if host.parse::<std::net::IpAddr>().is_err() => {
                    resolve_ipv4(host).map(|ip| format!("addr={ip}"))
                }
                _ => Ok(word.to_string()),
            })
            .collect();
        Ok(words?.join(","))
    }

    fn error(&self, target: &Path, source: io::Error) -> MountError {
        MountError {
            what: format!(
                "{}:{} (type {}, options {:?})",
                self.device,
                target.display(),
                self.fstype,
                mask_password(&self.options)
            ),
            hint: self.hint_for(&source),
            source,
        }
    }

    /// What the user should check for a given failure.
    fn hint_for(&self, error: &io::Error) -> String {
        let text = match rustix::io::Errno::from_io_error(error) {
            Some(rustix::io::Errno::NOENT) if self.is_bind() => {
                format!(
                    "the host path {:?} (option \"device\") does not exist",
                    self.device
                )
            }
            Some(rustix::io::Errno::NOENT) => format!(
                "the device {:?} (option \"device\") does not exist",
                self.device
            ),
            Some(rustix::io::Errno::NODEV) => format!(
                "this kernel does not support filesystem type {:?} (option \"type\")",
                self.fstype
            ),
            Some(rustix::io::Errno::NOTBLK) => format!(
                "{:?} (option \"device\") is not a block device; a {} filesystem needs one",
                self.device, self.fstype
            ),
            Some(rustix::io::Errno::INVAL) => format!(
                "the kernel rejected the mount options; check option \"o\" ({:?})",
                mask_password(&self.options)
            ),
            Some(rustix::io::Errno::PERM | rustix::io::Errno::ACCESS) => {
                "mounting needs root (CAP_SYS_ADMIN)".to_string()
            }
            _ => return String::new(),
        };
        format!(" ({text})")
    }
}

fn resolve_ipv4(host: &str) -> io::Result<std::net::Ipv4Addr> {
    (host, 0)
        .to_socket_addrs()?
        .find_map(|addr| match addr.ip() {
            std::net::IpAddr::V4(ip) => Some(ip),
            std::net::IpAddr::V6(_) => None,
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot resolve addr={host} to an IPv4 address"),
            )
        })
}

/// `o` with the value of `password=` replaced, so errors never show a CIFS password.
fn mask_password(options: &str) -> String {
    options
        .split(',')
        .map(|word| {
            if word.starts_with("password=") {
                "password=********"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Detaches whatever is mounted on `target`; "not mounted" is not an error.
pub fn unmount(target: &Path) -> io::Result<()> {
    match rustix::mount::unmount(target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
        Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// Whether `path` is the root of a mount (something is mounted on it).
pub fn is_mount_root(path: &Path) -> io::Result<bool> {
    let stat = rustix::fs::statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        StatxFlags::BASIC_STATS,
    )?;
    if stat
        .stx_attributes_mask
        .contains(StatxAttributes::MOUNT_ROOT)
    {
        return Ok(stat.stx_attributes.contains(StatxAttributes::MOUNT_ROOT));
    }
    // Kernels before 5.8 do not report it: a different device than the parent's.
    let parent = path.parent().unwrap_or(Path::new("/"));
    let parent = rustix::fs::stat(parent)?;
    let dev = rustix::fs::makedev(stat.stx_dev_major, stat.stx_dev_minor);
    Ok(parent.st_dev != dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_options_means_a_plain_directory() {
        assert_eq!(parse(&BTreeMap::new()), Ok(None));
    }

    #[test]
    fn tmpfs_options_go_to_the_filesystem_and_flags_to_mount() {
        let mount = parse(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=100m,uid=1000,nosuid,ro"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(mount.fstype, "tmpfs");
        assert_eq!(mount.data, "size=100m,uid=1000");
        assert_eq!(mount.flags, MountFlags::NOSUID | MountFlags::RDONLY);
        assert!(!mount.is_bind());
    }

    #[test]
    fn bind_options_make_a_bind_and_later_words_win() {
        let mount = parse(&opts(&[
            ("type", "none"),
            ("device", "/srv/data"),
            ("o", "bind,ro,rw,rprivate"),
        ]))
        .unwrap()
        .unwrap();
        assert!(mount.is_bind());
        assert!(!mount.flags.contains(MountFlags::RDONLY));
        assert_eq!(
            mount.propagation,
            Some(MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
        );
        assert_eq!(mount.data, "");
    }

    #[test]
    fn unknown_and_incomplete_options_are_named() {
        assert_eq!(
            parse(&opts(&[("typ", "tmpfs")])),
            Err(OptionsError::UnknownKey("typ".into()))
        );
        assert_eq!(
            parse(&opts(&[("type", "tmpfs")])),
            Err(OptionsError::MissingRequired {
                missing: "device",
                given: "type"
            })
        );
        let err = parse(&opts(&[("o", "size=1m"), ("device", "tmpfs")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing required option: \"type\" (needed with \"device\")"
        );
        assert_eq!(
            parse(&opts(&[("size", "10G")])),
            Err(OptionsError::QuotaUnsupported)
        );
        assert_eq!(
            parse(&opts(&[
                ("type", "tmpfs"),
                ("device", "tmpfs"),
                ("o", "remount")
            ])),
            Err(OptionsError::ForbiddenFlag("remount".into()))
        );
        assert_eq!(
            parse(&opts(&[("type", "tmp\0fs"), ("device", "tmpfs")])),
            Err(OptionsError::NulByte { key: "type" })
        );
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            mask_password("username=a,password=s3cret,vers=3.0"),
            "username=a,password=********,vers=3.0"
        );
    }

    #[test]
    fn nfs_addresses_stay_and_localhost_resolves() {
        let mut mount = parse(&opts(&[
            ("type", "nfs"),
            ("device", ":/export"),
            ("o", "addr=10.213.0.1,rw,nfsvers=4"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(mount.resolved_data().unwrap(), "addr=10.213.0.1,nfsvers=4");
        mount.data = "addr=localhost".into();
        assert_eq!(mount.resolved_data().unwrap(), "addr=127.0.0.1");
    }

    #[test]
    fn mount_root_is_detected() {
        assert!(is_mount_root(Path::new("/proc")).unwrap());
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mount_root(dir.path()).unwrap());
    }
}
