//! Resolving `user` the way Docker does (runc's `libcontainer/user` rules).
//!
//! `user` is `user[:group]`, each part a name or a numeric id. Names are looked up in
//! the image's `/etc/passwd` and `/etc/group`, read through the rootfs without letting
//! symlinks escape it. Numeric ids need no entry. When no group is given, the
//! supplementary groups are those of `/etc/group` listing the user by name; with an
//! explicit group there are none, as in runc.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::rootfs_path::{self, ResolveError, Resolved};

/// The container settings a message can point at.
const USER: &str = "user";
const GROUP_ADD: &str = "group_add";
/// The highest uid/gid Docker accepts.
const MAX_ID: i64 = i32::MAX as i64;
/// Linux's limit on symlinks followed while resolving one path.

#[derive(Debug, Error)]
pub enum UserError {
    /// `spec` is the container's `user[:group]` setting, `name` its user part.
    #[error(
        "user {spec:?}: unable to find user {name}: no matching entries in the image's /etc/passwd"
    )]
    UnknownUser { spec: String, name: String },
    /// `setting` is `user` or `group_add`, `spec` its value, `name` the group asked for.
    #[error("{setting} {spec:?}: unable to find group {name}: no matching entries in the image's /etc/group")]
    UnknownGroup {
        setting: &'static str,
        spec: String,
        name: String,
    },
    #[error("{setting} {spec:?}: uids and gids must be in range 0-{MAX_ID}")]
    IdOutOfRange { setting: &'static str, spec: String },
    #[error("reading the image's {path} to resolve the container's user: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("resolving the image's {path} to find the container's user: too many levels of symbolic links")]
    SymlinkLoop { path: String },
}

/// The identity the container process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// As Docker builds it: the primary gid, the user's groups, then `group_add`.
    pub additional_gids: Vec<u32>,
    /// From passwd; `/` when the user has no entry.
    pub home: String,
}

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: i64,
    gid: i64,
    home: String,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: i64,
    members: Vec<String>,
}

/// Resolves `user` (empty = root) and `group_add` against the rootfs's account files.
pub fn resolve_user(
    rootfs: &Path,
    user: &str,
    group_add: &[String],
) -> Result<ExecUser, UserError> {
    let passwd = read_rootfs_file(rootfs, "/etc/passwd")?
        .map(|text| parse_passwd(&text))
        .unwrap_or_default();
    let groups = read_rootfs_file(rootfs, "/etc/group")?
        .map(|text| parse_group(&text))
        .unwrap_or_default();

    let base = resolve_user_spec(user, &passwd, &groups)?;
    let added = resolve_additional_groups(group_add, &groups)?;

    let mut additional_gids = vec![base.gid];
    additional_gids.extend(base.supplementary);
    additional_gids.extend(added);
    Ok(ExecUser {
        uid: base.uid,
        gid: base.gid,
        additional_gids,
        home: base.home,
    })
}

/// The result of `user[:group]` before `group_add` is applied.
struct BaseUser {
    uid: u32,
    gid: u32,
    supplementary: Vec<u32>,
    home: String,
}

fn resolve_user_spec(
    spec: &str,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<BaseUser, UserError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, g),
        None => (spec, ""),
    };
    let numeric_uid = user_arg.parse::<i64>().ok();

    let matched = passwd.iter().find(|entry| match (user_arg, numeric_uid) {
        ("", _) => entry.uid == 0,
        (_, Some(uid)) => entry.uid == uid,
        (name, None) => entry.name == name,
    });

    let (uid, mut gid, home, matched_name) = match (matched, numeric_uid) {
        (Some(entry), _) => (
            entry.uid,
            entry.gid,
            home_or_root(&entry.home),
            entry.name.as_str(),
        ),
        (None, _) if user_arg.is_empty() => (0, 0, "/".to_string(), ""),
        (None, Some(uid)) => (uid, 0, "/".to_string(), ""),
        (None, None) => {
            return Err(UserError::UnknownUser {
                spec: spec.to_string(),
                name: user_arg.to_string(),
            })
        }
    };

    let mut supplementary = Vec::new();
    if !group_arg.is_empty() {
        gid = resolve_group_arg(spec, group_arg, groups)?;
    } else if !matched_name.is_empty() {
        supplementary = groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == matched_name))
            .map(|g| checked_id(g.gid, USER, spec))
            .collect::<Result<_, _>>()?;
    }

    Ok(BaseUser {
        uid: checked_id(uid, USER, spec)?,
        gid: checked_id(gid, USER, spec)?,
        supplementary,
        home,
    })
}

fn resolve_group_arg(spec: &str, group_arg: &str, groups: &[GroupEntry]) -> Result<i64, UserError> {
    let numeric = group_arg.parse::<i64>().ok();
    let found = groups.iter().find(|g| match numeric {
        Some(gid) => g.gid == gid,
        None => g.name == group_arg,
    });
    match (found, numeric) {
        (Some(g), _) => Ok(g.gid),
        (None, Some(gid)) => Ok(gid),
        (None, None) => Err(UserError::UnknownGroup {
            setting: USER,
            spec: spec.to_string(),
            name: group_arg.to_string(),
        }),
    }
}

/// `group_add` entries: a group name or gid from /etc/group, else any numeric gid.
/// Duplicates are dropped, keeping the first position.
fn resolve_additional_groups(
    wanted: &[String],
    groups: &[GroupEntry],
) -> Result<Vec<u32>, UserError> {
    let mut gids: Vec<u32> = Vec::new();
    for name in wanted {
        let found = groups
            .iter()
            .find(|g| g.name == *name || g.gid.to_string() == *name);
        let gid = match found {
            Some(g) => g.gid,
            None => name.parse::<i64>().map_err(|_| UserError::UnknownGroup {
                setting: GROUP_ADD,
                spec: name.clone(),
                name: name.clone(),
            })?,
        };
        let gid = checked_id(gid, GROUP_ADD, name)?;
        if !gids.contains(&gid) {
            gids.push(gid);
        }
    }
    Ok(gids)
}

/// `id` as a uid/gid; `setting` and `spec` name where it came from in messages.
fn checked_id(id: i64, setting: &'static str, spec: &str) -> Result<u32, UserError> {
    let out_of_range = || UserError::IdOutOfRange {
        setting,
        spec: spec.to_string(),
    };
    if (0..=MAX_ID).contains(&id) {
        u32::try_from(id).map_err(|_| out_of_range())
    } else {
        Err(out_of_range())
    }
}

fn home_or_root(home: &str) -> String {
    if home.is_empty() {
        "/".to_string()
    } else {
        home.to_string()
    }
}

/// Numeric fields that do not parse count as 0, as in runc.
fn lenient_id(field: Option<&str>) -> i64 {
    field.and_then(|f| f.trim().parse().ok()).unwrap_or(0)
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            // name:password:uid:gid:gecos:home:shell
            let fields: Vec<&str> = line.split(':').collect();
            PasswdEntry {
                name: fields.first().copied().unwrap_or_default().to_string(),
                uid: lenient_id(fields.get(2).copied()),
                gid: lenient_id(fields.get(3).copied()),
                home: fields.get(5).copied().unwrap_or_default().to_string(),
            }
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            // name:password:gid:member,member
            let fields: Vec<&str> = line.split(':').collect();
            let members = fields
                .get(3)
                .map(|list| {
                    list.split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            GroupEntry {
                name: fields.first().copied().unwrap_or_default().to_string(),
                gid: lenient_id(fields.get(2).copied()),
                members,
            }
        })
        .collect()
}

/// Reads a file of the rootfs; `None` when it does not exist.
fn read_rootfs_file(rootfs: &Path, path: &str) -> Result<Option<String>, UserError> {
    let host_path = resolve_in_rootfs(rootfs, Path::new(path))?;
    match fs::read(&host_path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(UserError::Read {
            path: path.to_string(),
            source: e,
        }),
    }
}

/// Maps a path inside the container to a host path under `rootfs`, following
/// symlinks as if `rootfs` were `/`: absolute targets restart at the rootfs and `..`
/// never climbs above it. Missing components are kept as they are.
pub fn resolve_in_rootfs(rootfs: &Path, path: &Path) -> Result<PathBuf, UserError> {
    match rootfs_path::resolve_in_rootfs(rootfs, path, &[]) {
        Ok(Resolved::InRootfs(relative) | Resolved::UnderMount(relative)) => {
            Ok(rootfs.join(relative))
        }
        Err(ResolveError::SymlinkLoop) => Err(UserError::SymlinkLoop {
            path: path.display().to_string(),
        }),
        Err(ResolveError::Io(source)) => Err(UserError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
";
    const GROUP: &str = "\
root:x:0:
daemon:x:1:
audio:x:29:app
www-data:x:33:
video:x:44:app,www-data
app:x:1000:
nogroup:x:65534:
";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    fn resolve(user: &str) -> Result<ExecUser, UserError> {
        let dir = rootfs();
        resolve_user(dir.path(), user, &[])
    }

    #[test]
    fn empty_user_is_root() {
        let u = resolve("").unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        assert_eq!(u.additional_gids, vec![0]);
        assert_eq!(u.home, "/root");
    }

    #[test]
    fn name_takes_uid_gid_home_and_supplementary_groups() {
        let u = resolve("app").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![1000, 29, 44]);
        assert_eq!(u.home, "/home/app");
    }

    #[test]
    fn numeric_uid_matches_passwd_entry() {
        let u = resolve("33").unwrap();
        assert_eq!((u.uid, u.gid), (33, 33));
        assert_eq!(u.additional_gids, vec![33, 44]);
        assert_eq!(u.home, "/var/www");
    }

    #[test]
    fn numeric_uid_without_entry_is_accepted() {
        let u = resolve("4242").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 0));
        assert_eq!(u.additional_gids, vec![0]);
        assert_eq!(u.home, "/");
    }

    #[test]
    fn explicit_group_replaces_gid_and_drops_supplementary_groups() {
        let u = resolve("app:video").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 44));
        assert_eq!(u.additional_gids, vec![44]);
        let u = resolve("1000:5000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 5000));
        let u = resolve("4242:audio").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 29));
    }

    #[test]
    fn unknown_names_are_errors_naming_the_setting_and_the_image_file() {
        let err = resolve("nobody2").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"user "nobody2": unable to find user nobody2: no matching entries in the image's /etc/passwd"#
        );
        let err = resolve("nobody2:app").unwrap_err();
        assert!(matches!(err, UserError::UnknownUser { ref name, .. } if name == "nobody2"));
        let err = resolve("app:nogroup2").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"user "app:nogroup2": unable to find group nogroup2: no matching entries in the image's /etc/group"#
        );
    }

    #[test]
    fn out_of_range_ids_are_errors() {
        let err = resolve("-1").unwrap_err();
        assert!(matches!(err, UserError::IdOutOfRange { .. }));
        assert_eq!(
            err.to_string(),
            format!(r#"user "-1": uids and gids must be in range 0-{MAX_ID}"#)
        );
        assert!(matches!(
            resolve("0:4294967296"),
            Err(UserError::IdOutOfRange { .. })
        ));
        let dir = rootfs();
        let err = resolve_user(dir.path(), "", &["-5".to_string()]).unwrap_err();
        assert!(err.to_string().starts_with(r#"group_add "-5": "#), "{err}");
    }

    #[test]
    fn odd_user_specs_never_panic() {
        let dir = rootfs();
        for spec in [
            ":",
            "::",
            "app:",
            ":app",
            "app:video:extra",
            "\0",
            " ",
            "99999999999999999999",
        ] {
            // Each either resolves or explains itself; none panics.
            if let Err(err) = resolve_user(dir.path(), spec, &[]) {
                assert!(
                    err.to_string().contains(&format!("{spec:?}")),
                    "{spec:?}: {err}"
                );
            }
        }
    }

    #[test]
    fn group_add_appends_names_and_ids() {
        let dir = rootfs();
        let added = ["video".to_string(), "29".to_string(), "777".to_string()];
        let u = resolve_user(dir.path(), "daemon", &added).unwrap();
        assert_eq!(u.additional_gids, vec![1, 44, 29, 777]);
        let err = resolve_user(dir.path(), "", &["nosuch".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"group_add "nosuch": unable to find group nosuch: no matching entries in the image's /etc/group"#
        );
    }

    #[test]
    fn missing_account_files_allow_numeric_ids_only() {
        let dir = tempfile::tempdir().unwrap();
        let u = resolve_user(dir.path(), "", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/"));
        let u = resolve_user(dir.path(), "1000:1000", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert!(matches!(
            resolve_user(dir.path(), "app", &[]),
            Err(UserError::UnknownUser { .. })
        ));
    }

    #[test]
    fn symlinks_stay_inside_the_rootfs() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("passwd"), "evil:x:0:0::/evil:/bin/sh\n").unwrap();

        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        fs::write(dir.path().join("usr/lib/passwd"), PASSWD).unwrap();
        // An absolute target that would leave the rootfs on the host.
        let escape = outside.path().join("passwd");
        symlink(&escape, dir.path().join("etc/group")).unwrap();
        // A relative target climbing above the root.
        symlink("../../../../usr/lib/passwd", dir.path().join("etc/passwd")).unwrap();

        let resolved = resolve_in_rootfs(dir.path(), Path::new("/etc/passwd")).unwrap();
        assert_eq!(resolved, dir.path().join("usr/lib/passwd"));
        let resolved = resolve_in_rootfs(dir.path(), Path::new("/etc/group")).unwrap();
        assert!(resolved.starts_with(dir.path()));

        let u = resolve_user(dir.path(), "app", &[]).unwrap();
        assert_eq!(u.uid, 1000);
        assert!(resolve_user(dir.path(), "evil", &[]).is_err());
    }

    #[test]
    fn symlink_loops_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        symlink("/etc/passwd", dir.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_user(dir.path(), "", &[]),
            Err(UserError::SymlinkLoop { .. })
        ));
    }
}
