//! Replacing a file whole: other processes read the old contents or the new ones,
//! never a part (a temporary file in the same directory, renamed over the target).
//! Records are read while they are rewritten — `ps` during `up`, the supervisor on
//! every change — so none may be written in place.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Temporary files start with this, so listings can tell them from records.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Replaces `path` with `bytes`, file mode `mode`. Survives a crash of the writer,
/// not of the machine (see [`replace_durably`]).
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_then_rename(path, bytes, mode, false)
}

/// [`replace`], flushed to the disk before the rename: for state whose loss after a
/// power cut would do harm (address allocations, volumes, exit codes).
pub fn replace_durably(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_then_rename(path, bytes, mode, true)
}

/// `value` as pretty JSON, through [`replace`].
pub fn replace_json(path: &Path, value: &impl serde::Serialize, mode: u32) -> io::Result<()> {
    let body = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    replace(path, &body, mode)
}

fn write_then_rename(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    if durable {
        temp.as_file().sync_all()?;
    }
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_contents_with_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        fs::write(&path, b"old contents, longer than the new").unwrap();
        replace(&path, b"new", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        replace_durably(&path, b"newer", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"newer");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("record.json")]);
    }

    #[test]
    fn a_missing_directory_is_an_error_and_nothing_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("record.json");
        assert!(replace_json(&path, &serde_json::json!({"a": 1}), 0o600).is_err());
        assert!(!dir.path().join("absent").exists());
    }
}
