//! Applies one image layer (a tar stream, optionally gzip or zstd compressed) onto a
//! directory, the way a container engine extracts OCI/Docker layers.
//!
//! Every path is resolved inside the destination as if it were the root of a chroot:
//! `..` may not climb above it, a leading `/` is dropped, and symlinks met on the way
//! (absolute or relative) are followed *within* the destination. All writes go through
//! directory file descriptors with `O_NOFOLLOW` on the final component, so a layer
//! cannot write, link or delete anything outside the destination.
//!
//! Whiteouts (`.wh.NAME`, `.wh..wh..opq`) either delete lower content already present in
//! the destination, or are recorded the way overlayfs expects them (a 0/0 character
//! device, the `trusted.overlay.opaque` xattr) for a layer unpacked on its own.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use thiserror::Error;

/// Prefix marking a whiteout entry: `.wh.NAME` hides `NAME` of the lower layers.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Entry marking its directory opaque: lower content of that directory is hidden.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Prefix of AUFS bookkeeping entries at the layer root, which carry no content.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
/// Xattr overlayfs reads to treat a directory as opaque.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Xattrs under this prefix steer overlayfs; a layer must not smuggle them in.
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// PAX record prefix carrying extended attributes (GNU tar / libarchive / Docker).
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// Symlinks followed while resolving one path before giving up (the kernel's limit).
const MAX_SYMLINKS: usize = 40;
/// Bytes read up front to recognise the compression format.
const MAGIC_PEEK: u64 = 10;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b, 0x08];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";

/// Compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Recognises gzip and zstd from the first bytes of a stream; anything else is `None`.
pub fn detect(first_bytes: &[u8]) -> Compression {
    if first_bytes.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if first_bytes.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// How whiteout entries are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Delete the hidden lower content from the destination (layers applied in order
    /// onto one directory or a snapshot of the layers below).
    #[default]
    Delete,
    /// Keep the layer self-contained for overlayfs: a whiteout becomes a 0/0 character
    /// device and an opaque directory gets `trusted.overlay.opaque=y`.
    Overlay,
}

/// Settings for [`apply_layer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Give files the owners recorded in the tar (needs root or CAP_CHOWN).
    pub keep_ownership: bool,
    pub whiteouts: WhiteoutMode,
}

impl Default for UnpackOptions {
    /// Keeps ownership when running as root, deletes whiteouts.
    fn default() -> UnpackOptions {
        UnpackOptions {
            keep_ownership: rustix::process::geteuid().is_root(),
            whiteouts: WhiteoutMode::Delete,
        }
    }
}

/// What applying a layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries applied, whiteouts included.
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// Entries or attributes skipped because this host does not permit them.
    pub warnings: Vec<UnpackWarning>,
}

/// Something a layer asked for that this host did not allow; the rest was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnpackWarning {
    /// Creating a device node was refused (no CAP_MKNOD, e.g. rootless).
    DeviceSkipped { path: String },
    /// The filesystem or our privileges do not allow this extended attribute.
    XattrSkipped { path: String, name: String },
}

impl fmt::Display for UnpackWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnpackWarning::DeviceSkipped { path } => {
                write!(f, "layer entry {path}: device node skipped, creating devices is not permitted here")
            }
            UnpackWarning::XattrSkipped { path, name } => {
                write!(f, "layer entry {path}: extended attribute {name} skipped, not supported or not permitted here")
            }
        }
    }
}

/// Why a layer could not be applied. Entry paths are shown as written in the tar.
#[derive(Debug, Error)]
pub enum UnpackError {
    #[error("cannot open layer destination {}: {source}", path.display())]
    Destination { path: PathBuf, source: io::Error },
    #[error("layer is compressed with {0}, which is not supported (use gzip, zstd or an uncompressed tar)")]
    UnsupportedCompression(&'static str),
    #[error("layer stream is unreadable or corrupt{after}: {source}")]
    Stream { after: String, source: io::Error },
    #[error(
        "layer entry {path}: stream ends after {written} of {expected} bytes (truncated layer)"
    )]
    Truncated {
        path: String,
        expected: u64,
        written: u64,
    },
    #[error("layer entry {path}: `..` would leave the layer destination")]
    PathEscapes { path: String },
    #[error("layer entry {path}: hard link target {target} is outside the layer destination")]
    LinkEscapes { path: String, target: String },
    #[error(
        "layer entry {path}: hard link target {target} does not exist in the layer destination"
    )]
    LinkTargetMissing { path: String, target: String },
    #[error("layer entry {path}: unsupported tar entry type {kind}")]
    UnsupportedType { path: String, kind: String },
    #[error("layer entry {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("layer entry {path}: cannot {action}: {source}")]
    Io {
        path: String,
        action: &'static str,
        source: io::Error,
    },
}

/// Applies one layer read from `reader` onto `dest`, detecting its compression.
pub fn apply_layer(
    reader: impl Read,
    dest: &Path,
    options: &UnpackOptions,
) -> Result<LayerStats, UnpackError> {
    let stream = decompressed(reader)?;
    let mut unpacker = Unpacker::open(dest, options)?;
    let mut archive = tar::Archive::new(stream);
    let entries = archive.entries().map_err(|source| UnpackError::Stream {
        after: String::new(),
        source,
    })?;
    let mut last_path: Option<String> = None;
    for entry in entries {
        let mut entry = entry.map_err(|source| stream_error(last_path.as_deref(), source))?;
        last_path = Some(lossy(&entry.path_bytes()));
        unpacker.apply_entry(&mut entry)?;
    }
    unpacker.finish_directories()?;
    // Read to the end so a compressed trailer is checked and a hashing reader upstream
    // sees every byte.
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|source| stream_error(last_path.as_deref(), source))?;
    Ok(unpacker.stats)
}

fn stream_error(after: Option<&str>, source: io::Error) -> UnpackError {
    let after = after
        .map(|path| format!(" after entry {path}"))
        .unwrap_or_default();
    UnpackError::Stream { after, source }
}

/// Wraps `reader` in the decompressor its first bytes call for.
fn decompressed<'r>(mut reader: impl Read + 'r) -> Result<Box<dyn Read + 'r>, UnpackError> {
    let mut head = Vec::new();
    (&mut reader)
        .take(MAGIC_PEEK)
        .read_to_end(&mut head)
        .map_err(|source| stream_error(None, source))?;
    refuse_unsupported_compression(&head)?;
    let compression = detect(&head);
    let whole = io::Cursor::new(head).chain(reader);
    Ok(match compression {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(whole).map_err(|source| stream_error(None, source))?,
        ),
    })
}

/// Names formats Docker can produce but we don't read, rather than failing on "tar" garbage.
fn refuse_unsupported_compression(head: &[u8]) -> Result<(), UnpackError> {
    if head.starts_with(XZ_MAGIC) {
        return Err(UnpackError::UnsupportedCompression("xz"));
    }
    let bzip2_level = head.get(BZIP2_MAGIC.len());
    if head.starts_with(BZIP2_MAGIC) && bzip2_level.is_some_and(|b| (b'1'..=b'9').contains(b)) {
        return Err(UnpackError::UnsupportedCompression("bzip2"));
    }
    Ok(())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Splits a tar path into components, dropping `.`, empty parts and a leading `/`.
/// `None` when `..` would climb above the root.
fn clean_components(path: &[u8]) -> Option<Vec<OsString>> {
    let mut components: Vec<OsString> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                components.pop()?;
            }
            name => components.push(OsString::from_vec(name.to_vec())),
        }
    }
    Some(components)
}

fn io_error(path: &str, action: &'static str, errno: Errno) -> UnpackError {
    UnpackError::Io {
        path: path.to_owned(),
        action,
        source: errno.into(),
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> UnpackError {
    UnpackError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Access and modification times for one entry.
#[derive(Debug, Clone, Copy)]
struct Times {
    access: Timespec,
    modify: Timespec,
}

impl Times {
    fn timestamps(self) -> Timestamps {
        Timestamps {
            last_access: self.access,
            last_modification: self.modify,
        }
    }
}

/// Header fields applied to whatever the entry creates.
struct EntryMeta {
    /// The entry path as written in the tar, for messages.
    display: String,
    /// Permission bits including setuid, setgid and sticky.
    mode: Mode,
    /// `None` when ownership is not kept.
    owner: Option<(Uid, Gid)>,
    times: Times,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl EntryMeta {
    fn read<R: Read>(
        entry: &mut tar::Entry<'_, R>,
        display: &str,
        keep_ownership: bool,
    ) -> Result<EntryMeta, UnpackError> {
        let header = entry.header();
        let bad_header = |field: &str, err: io::Error| {
            invalid(display, format!("bad {field} in tar header: {err}"))
        };
        let mode = header.mode().map_err(|e| bad_header("mode", e))? & 0o7777;
        let owner = if keep_ownership {
            let uid = header.uid().map_err(|e| bad_header("uid", e))?;
            let gid = header.gid().map_err(|e| bad_header("gid", e))?;
            Some((to_uid(uid, display)?, to_gid(gid, display)?))
        } else {
            None
        };
        let header_mtime = header.mtime().map_err(|e| bad_header("mtime", e))?;
        let mut modify = Timespec {
            tv_sec: i64::try_from(header_mtime).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut access = None;
        let mut xattrs = Vec::new();
        let pax = entry
            .pax_extensions()
            .map_err(|e| invalid(display, format!("unreadable PAX header: {e}")))?;
        for record in pax.into_iter().flatten() {
            let record =
                record.map_err(|e| invalid(display, format!("malformed PAX record: {e}")))?;
            let Ok(key) = record.key() else { continue };
            if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                xattrs.push((name.to_owned(), record.value_bytes().to_vec()));
            } else if key == "mtime" {
                modify = record
                    .value()
                    .ok()
                    .and_then(parse_pax_time)
                    .unwrap_or(modify);
            } else if key == "atime" {
                access = record.value().ok().and_then(parse_pax_time);
            }
        }
        // Overlay metadata comes only from whiteout markers, never from a layer's xattrs.
        xattrs.retain(|(name, _)| !name.starts_with(OVERLAY_XATTR_PREFIX));
        // Like Docker: the access time is never older than the modification time.
        let access = access.filter(|a| *a > modify).unwrap_or(modify);
        Ok(EntryMeta {
            display: display.to_owned(),
            mode: Mode::from_raw_mode(mode),
            owner,
            times: Times { access, modify },
            xattrs,
        })
    }
}

fn to_uid(raw: u64, display: &str) -> Result<Uid, UnpackError> {
    match u32::try_from(raw) {
        Ok(id) if id != u32::MAX => Ok(Uid::from_raw(id)),
        _ => Err(invalid(display, format!("uid {raw} is out of range"))),
    }
}

fn to_gid(raw: u64, display: &str) -> Result<Gid, UnpackError> {
    match u32::try_from(raw) {
        Ok(id) if id != u32::MAX => Ok(Gid::from_raw(id)),
        _ => Err(invalid(display, format!("gid {raw} is out of range"))),
    }
}

/// Parses a PAX time such as `1700000000.25` or `-1.5` into a timespec.
fn parse_pax_time(text: &str) -> Option<Timespec> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let nanos_text: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    let nanos: i64 = nanos_text.parse().ok()?;
    Some(match (negative, nanos) {
        (false, _) => Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
        (true, 0) => Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        },
        // -1.25 s is -2 s plus 0.75 s.
        (true, _) => Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nanos,
        },
    })
}

/// Where an entry goes: its resolved parent directory and its final name.
struct Slot {
    parent: OwnedFd,
    name: OsString,
}

impl Slot {
    fn is_root(&self) -> bool {
        self.name.as_bytes() == b"."
    }
}

/// A directory whose mode and times are set once all entries are in, since creating
/// children changes its mtime and a read-only mode could block them.
struct DeferredDir {
    components: Vec<OsString>,
    display: String,
    mode: Mode,
    times: Times,
}

struct Unpacker<'o> {
    root: OwnedFd,
    options: &'o UnpackOptions,
    /// Paths this layer wrote, which an opaque marker must keep.
    unpacked: HashSet<PathBuf>,
    deferred_dirs: Vec<DeferredDir>,
    stats: LayerStats,
}

impl<'o> Unpacker<'o> {
    fn open(dest: &Path, options: &'o UnpackOptions) -> Result<Unpacker<'o>, UnpackError> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root =
            rfs::open(dest, flags, Mode::empty()).map_err(|errno| UnpackError::Destination {
                path: dest.to_owned(),
                source: errno.into(),
            })?;
        Ok(Unpacker {
            root,
            options,
            unpacked: HashSet::new(),
            deferred_dirs: Vec::new(),
            stats: LayerStats::default(),
        })
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let display = lossy(&entry.path_bytes());
        let components =
            clean_components(&entry.path_bytes()).ok_or_else(|| UnpackError::PathEscapes {
                path: display.clone(),
            })?;
        self.stats.entries += 1;
        if is_aufs_metadata(&components) {
            return Ok(());
        }
        let meta = EntryMeta::read(entry, &display, self.options.keep_ownership)?;
        if let Some((last, parent)) = components.split_last() {
            if last.as_bytes() == OPAQUE_MARKER {
                return self.apply_opaque(parent, &meta);
            }
            if let Some(hidden) = last.as_bytes().strip_prefix(WHITEOUT_PREFIX) {
                return self.apply_whiteout(parent, OsStr::from_bytes(hidden), &meta);
            }
        }
        self.apply_content(entry, kind, &components, &meta)?;
        self.unpacked.insert(components.iter().collect());
        Ok(())
    }

    fn apply_content<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: tar::EntryType,
        components: &[OsString],
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        use tar::EntryType as T;
        if components.is_empty() && !kind.is_dir() {
            return Err(invalid(
                &meta.display,
                "only a directory may stand for the layer root",
            ));
        }
        match kind {
            T::Directory => self.make_directory(components, meta),
            T::Regular | T::Continuous | T::GNUSparse => self.write_file(entry, components, meta),
            T::Symlink => self.make_symlink(entry, components, meta),
            T::Link => self.make_hard_link(entry, components, meta),
            T::Char | T::Block | T::Fifo => self.make_node(entry, kind, components, meta),
            other => Err(UnpackError::UnsupportedType {
                path: meta.display.clone(),
                kind: format!("{other:?}"),
            }),
        }
    }

    /// Resolves the parent of `components` (creating missing directories) inside the root.
    fn slot(&self, components: &[OsString], display: &str) -> Result<Slot, UnpackError> {
        let Some((name, parent)) = components.split_last() else {
            let parent = open_path_dir(self.root.as_fd(), OsStr::new("."))
                .map_err(|e| io_error(display, "open the layer destination", e))?;
            return Ok(Slot {
                parent,
                name: OsString::from("."),
            });
        };
        let parent = resolve_in_root(self.root.as_fd(), parent, true)
            .map_err(|e| io_error(display, "resolve its parent directory", e))?;
        Ok(Slot {
            parent,
            name: name.clone(),
        })
    }

    /// Makes room for a new entry: lower content in the way is removed, except that a
    /// directory is kept (and merged) when the new entry is a directory too.
    fn clear_slot(
        &self,
        slot: &Slot,
        keep_directory: bool,
        display: &str,
    ) -> Result<bool, UnpackError> {
        match rfs::statat(&slot.parent, &slot.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat)
                if keep_directory
                    && FileType::from_raw_mode(stat.st_mode) == FileType::Directory =>
            {
                Ok(true)
            }
            Ok(_) => remove_all_at(slot.parent.as_fd(), &slot.name)
                .map(|()| false)
                .map_err(|e| io_error(display, "replace the existing file", e)),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(io_error(display, "inspect the existing file", e)),
        }
    }

    fn make_directory(
        &mut self,
        components: &[OsString],
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        let display = meta.display.as_str();
        let slot = self.slot(components, display)?;
        if !slot.is_root() && !self.clear_slot(&slot, true, display)? {
            rfs::mkdirat(&slot.parent, &slot.name, Mode::from_raw_mode(0o755))
                .map_err(|e| io_error(display, "create the directory", e))?;
        }
        let dir = open_read_dir(slot.parent.as_fd(), &slot.name)
            .map_err(|e| io_error(display, "open the directory", e))?;
        if let Some((uid, gid)) = meta.owner {
            rfs::fchown(&dir, Some(uid), Some(gid))
                .map_err(|e| io_error(display, "change the owner", e))?;
        }
        self.set_xattrs_on_fd(dir.as_fd(), meta)?;
        self.deferred_dirs.push(DeferredDir {
            components: components.to_vec(),
            display: meta.display.clone(),
            mode: meta.mode,
            times: meta.times,
        });
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        components: &[OsString],
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        let display = meta.display.as_str();
        let slot = self.slot(components, display)?;
        self.clear_slot(&slot, false, display)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(&slot.parent, &slot.name, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| io_error(display, "create the file", e))?;
        let mut file = std::fs::File::from(fd);
        let written = io::copy(entry, &mut file).map_err(|source| UnpackError::Io {
            path: display.to_owned(),
            action: "write its content",
            source,
        })?;
        let expected = entry.size();
        if written != expected && entry.header().entry_type() != tar::EntryType::GNUSparse {
            return Err(UnpackError::Truncated {
                path: display.to_owned(),
                expected,
                written,
            });
        }
        self.stats.bytes += written;
        // Owner before mode (chown clears setuid), xattrs after chown (it drops file
        // capabilities), times last (writing moves them).
        if let Some((uid, gid)) = meta.owner {
            rfs::fchown(&file, Some(uid), Some(gid))
                .map_err(|e| io_error(display, "change the owner", e))?;
        }
        rfs::fchmod(&file, meta.mode).map_err(|e| io_error(display, "set the mode", e))?;
        self.set_xattrs_on_fd(file.as_fd(), meta)?;
        rfs::futimens(&file, &meta.times.timestamps())
            .map_err(|e| io_error(display, "set the times", e))
    }

    fn make_symlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        components: &[OsString],
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        let display = meta.display.as_str();
        let target = link_name(entry, display)?;
        let slot = self.slot(components, display)?;
        self.clear_slot(&slot, false, display)?;
        // The target is stored as-is: it is only ever followed inside the root.
        rfs::symlinkat(OsStr::from_bytes(&target), &slot.parent, &slot.name)
            .map_err(|e| io_error(display, "create the symlink", e))?;
        self.finish_node(&slot, meta, false)
    }

    fn make_hard_link<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        components: &[OsString],
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        let display = meta.display.as_str();
        let raw_target = link_name(entry, display)?;
        let target_display = lossy(&raw_target);
        let escapes = || UnpackError::LinkEscapes {
            path: display.to_owned(),
            target: target_display.clone(),
        };
        let target = clean_components(&raw_target).ok_or_else(escapes)?;
        let Some((target_name, target_parent)) = target.split_last() else {
            return Err(escapes());
        };
        let missing = || UnpackError::LinkTargetMissing {
            path: display.to_owned(),
            target: target_display.clone(),
        };
        let source_dir = match resolve_in_root(self.root.as_fd(), target_parent, false) {
            Ok(dir) => dir,
            Err(Errno::NOENT | Errno::NOTDIR) => return Err(missing()),
            Err(e) => return Err(io_error(display, "resolve the hard link target", e)),
        };
        match rfs::statat(&source_dir, target_name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                return Err(invalid(
                    display,
                    format!("hard link target {target_display} is a directory"),
                ));
            }
            Ok(_) => {}
            Err(Errno::NOENT) => return Err(missing()),
            Err(e) => return Err(io_error(display, "inspect the hard link target", e)),
        }
        let slot = self.slot(components, display)?;
        if target.as_slice() == components {
            return Ok(()); // A link to itself changes nothing.
        }
        self.clear_slot(&slot, false, display)?;
        // No AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself.
        rfs::linkat(
            &source_dir,
            target_name,
            &slot.parent,
            &slot.name,
            AtFlags::empty(),
        )
        .map_err(|e| io_error(display, "create the hard link", e))
    }

    fn make_node<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        kind: tar::EntryType,
        components: &[OsString],
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        let display = meta.display.as_str();
        let header = entry.header();
        let bad = |e: io::Error| invalid(display, format!("bad device number in tar header: {e}"));
        let major = header.device_major().map_err(bad)?.unwrap_or(0);
        let minor = header.device_minor().map_err(bad)?.unwrap_or(0);
        let file_type = match kind {
            tar::EntryType::Char => FileType::CharacterDevice,
            tar::EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        let slot = self.slot(components, display)?;
        self.clear_slot(&slot, false, display)?;
        let created = rfs::mknodat(
            &slot.parent,
            &slot.name,
            file_type,
            meta.mode,
            rfs::makedev(major, minor),
        );
        match created {
            Ok(()) => self.finish_node(&slot, meta, true),
            Err(Errno::PERM) if file_type != FileType::Fifo => {
                self.stats.warnings.push(UnpackWarning::DeviceSkipped {
                    path: display.to_owned(),
                });
                Ok(())
            }
            Err(e) => Err(io_error(display, "create the special file", e)),
        }
    }

    /// Owner, mode, xattrs and times for entries that cannot be opened (symlinks, nodes).
    fn finish_node(
        &mut self,
        slot: &Slot,
        meta: &EntryMeta,
        set_mode: bool,
    ) -> Result<(), UnpackError> {
        let display = meta.display.as_str();
        if let Some((uid, gid)) = meta.owner {
            rfs::chownat(
                &slot.parent,
                &slot.name,
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_error(display, "change the owner", e))?;
        }
        if set_mode {
            // mknod applied the umask; the leaf was just created by us and is no symlink.
            rfs::chmodat(&slot.parent, &slot.name, meta.mode, AtFlags::empty())
                .map_err(|e| io_error(display, "set the mode", e))?;
        }
        for (name, value) in &meta.xattrs {
            let result = set_xattr_no_follow(slot, name, value);
            self.record_xattr_result(result, display, name)?;
        }
        rfs::utimensat(
            &slot.parent,
            &slot.name,
            &meta.times.timestamps(),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_error(display, "set the times", e))
    }

    fn set_xattrs_on_fd(
        &mut self,
        fd: BorrowedFd<'_>,
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        for (name, value) in &meta.xattrs {
            let result = rfs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty());
            self.record_xattr_result(result, &meta.display, name)?;
        }
        Ok(())
    }

    /// Like Docker, an xattr the filesystem or our privileges refuse is skipped with a note.
    fn record_xattr_result(
        &mut self,
        result: Result<(), Errno>,
        display: &str,
        name: &str,
    ) -> Result<(), UnpackError> {
        match result {
            Ok(()) => Ok(()),
            Err(Errno::NOTSUP | Errno::PERM) => {
                self.stats.warnings.push(UnpackWarning::XattrSkipped {
                    path: display.to_owned(),
                    name: name.to_owned(),
                });
                Ok(())
            }
            Err(e) => Err(io_error(display, "set an extended attribute", e)),
        }
    }

    fn apply_whiteout(
        &mut self,
        parent: &[OsString],
        hidden: &OsStr,
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        let display = meta.display.as_str();
        if matches!(hidden.as_bytes(), b"" | b"." | b"..") {
            return Err(invalid(display, "whiteout names no file"));
        }
        match self.options.whiteouts {
            WhiteoutMode::Delete => {
                let dir = match resolve_in_root(self.root.as_fd(), parent, false) {
                    Ok(dir) => dir,
                    // Nothing below to hide.
                    Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
                    Err(e) => return Err(io_error(display, "resolve the whiteout's directory", e)),
                };
                remove_all_at(dir.as_fd(), hidden)
                    .map_err(|e| io_error(display, "delete the hidden file", e))
            }
            WhiteoutMode::Overlay => {
                let mut components = parent.to_vec();
                components.push(hidden.to_owned());
                let slot = self.slot(&components, display)?;
                self.clear_slot(&slot, false, display)?;
                let device = rfs::makedev(0, 0);
                rfs::mknodat(
                    &slot.parent,
                    &slot.name,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    device,
                )
                .map_err(|e| io_error(display, "create the overlay whiteout device", e))?;
                if let Some((uid, gid)) = meta.owner {
                    rfs::chownat(
                        &slot.parent,
                        &slot.name,
                        Some(uid),
                        Some(gid),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_error(display, "change the owner", e))?;
                }
                self.unpacked.insert(components.iter().collect());
                Ok(())
            }
        }
    }

    fn apply_opaque(&mut self, dir: &[OsString], meta: &EntryMeta) -> Result<(), UnpackError> {
        let display = meta.display.as_str();
        match self.options.whiteouts {
            WhiteoutMode::Delete => self.remove_lower_content(dir, display),
            WhiteoutMode::Overlay => {
                let resolved = resolve_in_root(self.root.as_fd(), dir, true)
                    .map_err(|e| io_error(display, "resolve the opaque directory", e))?;
                let readable = open_read_dir(resolved.as_fd(), OsStr::new("."))
                    .map_err(|e| io_error(display, "open the opaque directory", e))?;
                rfs::fsetxattr(&readable, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                    .map_err(|e| io_error(display, "mark the directory opaque for overlayfs", e))
            }
        }
    }

    /// Deletes everything under `dir` that this layer did not write itself.
    fn remove_lower_content(&self, dir: &[OsString], display: &str) -> Result<(), UnpackError> {
        let fail = |e| io_error(display, "clear the opaque directory", e);
        let start = match resolve_in_root(self.root.as_fd(), dir, false) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(fail(e)),
        };
        let mut pending = vec![(start, dir.iter().collect::<PathBuf>())];
        while let Some((dir_fd, dir_path)) = pending.pop() {
            let readable = open_read_dir(dir_fd.as_fd(), OsStr::new(".")).map_err(fail)?;
            for child in list_dir(readable.as_fd()).map_err(fail)? {
                let child_path = dir_path.join(&child);
                if !self.unpacked.contains(&child_path) {
                    remove_all_at(dir_fd.as_fd(), &child).map_err(fail)?;
                } else if let Ok(child_dir) = open_path_dir(dir_fd.as_fd(), &child) {
                    // Kept by this layer, but it may still hold lower content.
                    pending.push((child_dir, child_path));
                }
            }
        }
        Ok(())
    }

    /// Sets the deferred modes and times, later (usually deeper) directories first.
    fn finish_directories(&mut self) -> Result<(), UnpackError> {
        for dir in std::mem::take(&mut self.deferred_dirs).into_iter().rev() {
            let fail = |action, e| io_error(&dir.display, action, e);
            let located = match dir.components.split_last() {
                Some((name, parent)) => resolve_in_root(self.root.as_fd(), parent, false)
                    .and_then(|parent| open_read_dir(parent.as_fd(), name)),
                None => open_read_dir(self.root.as_fd(), OsStr::new(".")),
            };
            let fd = match located {
                Ok(fd) => fd,
                // Replaced or removed by a later entry of this layer.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(fail("reopen the directory", e)),
            };
            rfs::fchmod(&fd, dir.mode).map_err(|e| fail("set the mode", e))?;
            rfs::futimens(&fd, &dir.times.timestamps()).map_err(|e| fail("set the times", e))?;
        }
        Ok(())
    }
}

/// Top-level `.wh..wh.*` entries are AUFS bookkeeping (hard link stash), not content.
fn is_aufs_metadata(components: &[OsString]) -> bool {
    components.first().is_some_and(|first| {
        let bytes = first.as_bytes();
        bytes.starts_with(AUFS_META_PREFIX) && !(components.len() == 1 && bytes == OPAQUE_MARKER)
    })
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, display: &str) -> Result<Vec<u8>, UnpackError> {
    match entry.link_name_bytes() {
        Some(name) if !name.is_empty() => Ok(name.into_owned()),
        _ => Err(invalid(display, "link entry has no target")),
    }
}

/// Opens a directory for `*at` calls only, refusing a symlink in its place.
fn open_path_dir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(dir, name, flags, Mode::empty())
}

/// Opens a directory for reading and metadata changes, refusing a symlink in its place.
fn open_read_dir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(dir, name, flags, Mode::empty())
}

/// Resolves `components` to a directory the way a process chrooted into `root` would:
/// `..` stops at the root and symlinks (absolute or relative) are followed inside it.
/// With `create`, missing directories are made (mode 0755), through dangling symlinks too.
fn resolve_in_root(
    root: BorrowedFd<'_>,
    components: &[OsString],
    create: bool,
) -> Result<OwnedFd, Errno> {
    let mut pending: VecDeque<OsString> = components.iter().cloned().collect();
    // Real directory names from the root to `current`, to step back on `..`.
    let mut walked: Vec<OsString> = Vec::new();
    let mut current = open_path_dir(root, OsStr::new("."))?;
    let mut symlinks_followed = 0;
    while let Some(name) = pending.pop_front() {
        match name.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                walked.pop();
                current = reopen_walked(root, &walked)?;
                continue;
            }
            _ => {}
        }
        match rfs::statat(&current, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    current = open_path_dir(current.as_fd(), &name)?;
                    walked.push(name);
                }
                FileType::Symlink => {
                    symlinks_followed += 1;
                    if symlinks_followed > MAX_SYMLINKS {
                        return Err(Errno::LOOP);
                    }
                    let target = rfs::readlinkat(&current, &name, Vec::new())?;
                    let target = target.as_bytes();
                    if target.starts_with(b"/") {
                        walked.clear();
                        current = open_path_dir(root, OsStr::new("."))?;
                    }
                    for part in target.split(|&b| b == b'/').rev() {
                        pending.push_front(OsString::from_vec(part.to_vec()));
                    }
                }
                _ => return Err(Errno::NOTDIR),
            },
            Err(Errno::NOENT) if create => {
                match rfs::mkdirat(&current, &name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                current = open_path_dir(current.as_fd(), &name)?;
                walked.push(name);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(current)
}

/// Re-walks already resolved, symlink-free directory names from the root.
fn reopen_walked(root: BorrowedFd<'_>, walked: &[OsString]) -> Result<OwnedFd, Errno> {
    let mut current = open_path_dir(root, OsStr::new("."))?;
    for name in walked {
        current = open_path_dir(current.as_fd(), name)?;
    }
    Ok(current)
}

fn list_dir(dir: BorrowedFd<'_>) -> Result<Vec<OsString>, Errno> {
    let mut reader = rfs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(entry) = reader.read() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name));
        }
    }
    Ok(names)
}

/// Removes `name` in `parent` and, for a directory, everything below it, without
/// following symlinks. Iterative so that a deep tree cannot exhaust the stack.
fn remove_all_at(parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    match rfs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e),
    }
    struct Frame {
        dir: OwnedFd,
        name: OsString,
        children: Vec<OsString>,
    }
    let open_frame = |parent: BorrowedFd<'_>, name: &OsStr| -> Result<Frame, Errno> {
        let dir = open_read_dir(parent, name)?;
        let children = list_dir(dir.as_fd())?;
        Ok(Frame {
            dir,
            name: name.to_owned(),
            children,
        })
    };
    let mut stack = vec![open_frame(parent, name)?];
    while let Some(top) = stack.last_mut() {
        if let Some(child) = top.children.pop() {
            match rfs::unlinkat(&top.dir, &child, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) => {
                    let frame = open_frame(top.dir.as_fd(), &child)?;
                    stack.push(frame);
                }
                Err(e) => return Err(e),
            }
            continue;
        }
        let Some(done) = stack.pop() else { break };
        let holder = stack.last().map_or(parent, |frame| frame.dir.as_fd());
        match rfs::unlinkat(holder, &done.name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets an xattr on a symlink or special file in a resolved directory. There is no
/// `*at` form of lsetxattr before Linux 6.13, so the directory is named through its
/// /proc/self/fd link; the final component is not followed.
fn set_xattr_no_follow(slot: &Slot, name: &str, value: &[u8]) -> Result<(), Errno> {
    let path = PathBuf::from(format!("/proc/self/fd/{}", slot.parent.as_raw_fd())).join(&slot.name);
    rfs::lsetxattr(&path, name, value, XattrFlags::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::{EntryType, Header};

    const MTIME: u64 = 1_600_000_000;

    /// Builds a layer tar in memory.
    struct Layer {
        builder: tar::Builder<Vec<u8>>,
    }

    impl Layer {
        fn new() -> Layer {
            Layer {
                builder: tar::Builder::new(Vec::new()),
            }
        }

        fn header(kind: EntryType, mode: u32, size: u64) -> Header {
            let mut header = Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(MTIME);
            header.set_size(size);
            header
        }

        fn dir(mut self, path: &str, mode: u32) -> Layer {
            let mut header = Layer::header(EntryType::Directory, mode, 0);
            self.builder
                .append_data(&mut header, path, io::empty())
                .expect("append dir");
            self
        }

        fn file(self, path: &str, mode: u32, data: &[u8]) -> Layer {
            self.owned_file(path, mode, (0, 0), data)
        }

        fn owned_file(mut self, path: &str, mode: u32, owner: (u64, u64), data: &[u8]) -> Layer {
            let mut header = Layer::header(EntryType::Regular, mode, data.len() as u64);
            header.set_uid(owner.0);
            header.set_gid(owner.1);
            self.builder
                .append_data(&mut header, path, data)
                .expect("append file");
            self
        }

        fn pax(mut self, records: &[(&str, &[u8])]) -> Layer {
            self.builder
                .append_pax_extensions(records.iter().copied())
                .expect("append pax");
            self
        }

        fn link(mut self, kind: EntryType, path: &str, target: &str) -> Layer {
            let mut header = Layer::header(kind, 0o777, 0);
            self.builder
                .append_link(&mut header, path, target)
                .expect("append link");
            self
        }

        fn node(mut self, kind: EntryType, path: &str, mode: u32, major: u32, minor: u32) -> Layer {
            let mut header = Layer::header(kind, mode, 0);
            header.set_device_major(major).expect("major");
            header.set_device_minor(minor).expect("minor");
            self.builder
                .append_data(&mut header, path, io::empty())
                .expect("append node");
            self
        }

        /// An entry whose name the `tar` crate would refuse to write (`..`, absolute).
        fn raw(mut self, kind: EntryType, name: &str, link: Option<&str>, data: &[u8]) -> Layer {
            let mut header = Layer::header(kind, 0o644, data.len() as u64);
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_cksum();
            self.builder.append(&header, data).expect("append raw");
            self
        }

        fn bytes(self) -> Vec<u8> {
            self.builder.into_inner().expect("finish tar")
        }
    }

    fn root_options() -> UnpackOptions {
        UnpackOptions {
            keep_ownership: true,
            whiteouts: WhiteoutMode::Delete,
        }
    }

    fn apply(layer: &[u8], dest: &Path) -> Result<LayerStats, UnpackError> {
        apply_layer(layer, dest, &root_options())
    }

    fn meta(path: &Path) -> fs::Metadata {
        fs::symlink_metadata(path)
            .unwrap_or_else(|e| panic!("{} should exist: {e}", path.display()))
    }

    fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        let len = rfs::lgetxattr(path, name, &mut buf[..]).ok()?;
        buf.truncate(len);
        Some(buf)
    }

    fn sample_layer() -> Vec<u8> {
        Layer::new()
            .dir("./", 0o755)
            .dir("etc/", 0o755)
            .owned_file("etc/passwd", 0o644, (0, 0), b"root:x:0:0::/root:/bin/sh\n")
            .owned_file("usr/bin/su", 0o4755, (0, 0), b"#!setuid")
            .owned_file("usr/bin/wall", 0o2755, (0, 5), b"#!setgid")
            .owned_file("home/app/data", 0o600, (1000, 2000), b"secret")
            .dir("tmp", 0o1777)
            .link(EntryType::Symlink, "bin", "usr/bin")
            .link(EntryType::Link, "usr/bin/su-again", "usr/bin/su")
            .node(EntryType::Fifo, "run/pipe", 0o620, 0, 0)
            .bytes()
    }

    fn assert_sample_tree(dest: &Path) {
        assert_eq!(
            fs::read(dest.join("etc/passwd")).expect("read"),
            b"root:x:0:0::/root:/bin/sh\n"
        );
        assert_eq!(meta(&dest.join("usr/bin/su")).mode() & 0o7777, 0o4755);
        assert_eq!(meta(&dest.join("usr/bin/wall")).mode() & 0o7777, 0o2755);
        assert_eq!(meta(&dest.join("usr/bin/wall")).gid(), 5);
        let data = meta(&dest.join("home/app/data"));
        assert_eq!(
            (data.uid(), data.gid(), data.mode() & 0o7777),
            (1000, 2000, 0o600)
        );
        assert_eq!(data.mtime(), MTIME as i64);
        let tmp = meta(&dest.join("tmp"));
        assert!(tmp.is_dir());
        assert_eq!(tmp.mode() & 0o7777, 0o1777, "sticky bit kept");
        assert_eq!(tmp.mtime(), MTIME as i64);
        assert_eq!(
            fs::read_link(dest.join("bin")).expect("symlink"),
            Path::new("usr/bin")
        );
        assert_eq!(
            meta(&dest.join("bin")).mtime(),
            MTIME as i64,
            "symlink times set without following"
        );
        let su = meta(&dest.join("usr/bin/su"));
        let again = meta(&dest.join("usr/bin/su-again"));
        assert_eq!(su.ino(), again.ino(), "hard link shares the inode");
        assert_eq!(su.nlink(), 2);
        let pipe = meta(&dest.join("run/pipe"));
        assert!(pipe.file_type().is_fifo());
        assert_eq!(pipe.mode() & 0o7777, 0o620, "mode set despite the umask");
        // Directories get their times after their children were written.
        assert_eq!(meta(&dest.join("etc")).mtime(), MTIME as i64);
        assert_eq!(
            meta(dest).mtime(),
            MTIME as i64,
            "`./` entry applies to the root"
        );
    }

    #[test]
    fn detects_compression_from_magic_numbers() {
        assert_eq!(detect(&[0x1f, 0x8b, 0x08, 0x00]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0x00]), Compression::Zstd);
        assert_eq!(detect(b"etc/passwd\0"), Compression::None);
        assert_eq!(detect(&[0x1f]), Compression::None, "too short to be gzip");
        assert_eq!(detect(&[]), Compression::None);
    }

    #[test]
    fn unpacks_plain_gzip_and_zstd_layers_alike() {
        let plain = sample_layer();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&plain).expect("gzip");
        let gzip = gzip.finish().expect("gzip");
        let zstd = zstd::encode_all(&plain[..], 3).expect("zstd");
        for (label, layer) in [("plain", plain), ("gzip", gzip), ("zstd", zstd)] {
            let dest = tempfile::tempdir().expect("tempdir");
            let stats = apply(&layer, dest.path()).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(stats.entries, 10, "{label}");
            assert_eq!(stats.bytes, 26 + 8 + 8 + 6, "{label}");
            assert_sample_tree(dest.path());
        }
    }

    #[test]
    fn creates_device_nodes_or_notes_when_not_permitted() {
        let layer = Layer::new()
            .node(EntryType::Char, "dev/null", 0o666, 1, 3)
            .node(EntryType::Block, "dev/loop0", 0o660, 7, 0)
            .bytes();
        let dest = tempfile::tempdir().expect("tempdir");
        let stats = apply(&layer, dest.path()).expect("devices apply");
        if stats.warnings.is_empty() {
            let null = meta(&dest.path().join("dev/null"));
            assert!(null.file_type().is_char_device());
            assert_eq!(null.rdev(), rfs::makedev(1, 3));
            assert_eq!(null.mode() & 0o7777, 0o666);
            assert!(meta(&dest.path().join("dev/loop0"))
                .file_type()
                .is_block_device());
        } else {
            let skipped = UnpackWarning::DeviceSkipped {
                path: "dev/null".into(),
            };
            assert!(stats.warnings.contains(&skipped), "{:?}", stats.warnings);
        }
    }

    #[test]
    fn long_names_and_xattrs_from_pax_and_gnu_headers() {
        let deep = format!("{}/{}", "d".repeat(90), "f".repeat(120));
        let long_target = format!("/{}", "t".repeat(150));
        let layer = Layer::new()
            .file(&deep, 0o644, b"gnu long name")
            .link(EntryType::Symlink, "long-link", &long_target)
            .pax(&[
                ("SCHILY.xattr.user.origin", b"pax\0binary"),
                ("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere"),
                ("mtime", b"1600000000.5"),
            ])
            .file("with-xattr", 0o640, b"x")
            .pax(&[("path", "p".repeat(200).as_bytes())])
            .file("short", 0o644, b"pax path")
            .bytes();
        let dest = tempfile::tempdir().expect("tempdir");
        let stats = apply(&layer, dest.path()).expect("layer applies");
        assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
        assert_eq!(
            fs::read(dest.path().join(&deep)).expect("deep file"),
            b"gnu long name"
        );
        assert_eq!(
            fs::read_link(dest.path().join("long-link")).expect("link"),
            Path::new(&long_target)
        );
        let with_xattr = dest.path().join("with-xattr");
        assert_eq!(
            xattr(&with_xattr, "user.origin").as_deref(),
            Some(&b"pax\0binary"[..])
        );
        assert_eq!(
            xattr(&with_xattr, "trusted.overlay.redirect"),
            None,
            "overlay xattrs are dropped"
        );
        assert_eq!(
            meta(&with_xattr).mtime_nsec(),
            500_000_000,
            "PAX sub-second mtime"
        );
        assert_eq!(
            fs::read(dest.path().join("p".repeat(200))).expect("pax path"),
            b"pax path"
        );
    }

    #[test]
    fn xattrs_on_symlinks_are_set_without_following_or_noted() {
        let dest = tempfile::tempdir().expect("tempdir");
        fs::write(dest.path().join("target"), b"t").expect("target");
        let layer = Layer::new()
            .pax(&[
                ("SCHILY.xattr.trusted.label", b"link"),
                ("SCHILY.xattr.user.refused", b"x"),
            ])
            .link(EntryType::Symlink, "sl", "target")
            .bytes();
        let stats = apply(&layer, dest.path()).expect("layer applies");
        let link = dest.path().join("sl");
        assert_eq!(xattr(&link, "trusted.label").as_deref(), Some(&b"link"[..]));
        assert_eq!(xattr(&dest.path().join("target"), "trusted.label"), None);
        // Linux refuses user.* xattrs on symlinks: noted, not fatal.
        let refused = UnpackWarning::XattrSkipped {
            path: "sl".into(),
            name: "user.refused".into(),
        };
        assert_eq!(stats.warnings, vec![refused]);
    }

    #[test]
    fn ownership_is_left_alone_when_not_kept() {
        let layer = Layer::new()
            .owned_file("f", 0o644, (1234, 5678), b"x")
            .bytes();
        let dest = tempfile::tempdir().expect("tempdir");
        let options = UnpackOptions {
            keep_ownership: false,
            whiteouts: WhiteoutMode::Delete,
        };
        apply_layer(&layer[..], dest.path(), &options).expect("applies");
        let file = meta(&dest.path().join("f"));
        assert_eq!(file.uid(), rustix::process::geteuid().as_raw());
    }

    fn lower_tree(dest: &Path) {
        let lower = Layer::new()
            .file("etc/keep", 0o644, b"keep")
            .file("etc/gone", 0o644, b"gone")
            .file("var/cache/a/b", 0o644, b"old")
            .file("opt/app/old", 0o644, b"old")
            .file("opt/app/sub/old", 0o644, b"old")
            .bytes();
        apply(&lower, dest).expect("lower layer");
    }

    #[test]
    fn whiteouts_delete_lower_content() {
        let dest = tempfile::tempdir().expect("tempdir");
        lower_tree(dest.path());
        let upper = Layer::new()
            .file("etc/.wh.gone", 0o644, b"")
            .file("var/.wh.cache", 0o644, b"")
            .file("nowhere/.wh.nothing", 0o644, b"")
            .dir("opt/app", 0o755)
            .file("opt/app/.wh..wh..opq", 0o644, b"")
            .file("opt/app/sub/new", 0o644, b"new")
            .bytes();
        let stats = apply(&upper, dest.path()).expect("upper layer");
        assert_eq!(stats.entries, 6);
        let root = dest.path();
        assert!(root.join("etc/keep").exists());
        assert!(!root.join("etc/gone").exists());
        assert!(
            !root.join("etc/.wh.gone").exists(),
            "whiteout markers are not content"
        );
        assert!(
            !root.join("var/cache").exists(),
            "a whited-out directory goes whole"
        );
        assert!(
            !root.join("nowhere").exists(),
            "whiteout of missing content creates nothing"
        );
        assert!(
            !root.join("opt/app/old").exists(),
            "opaque directory hides lower files"
        );
        assert!(!root.join("opt/app/sub/old").exists());
        assert_eq!(fs::read(root.join("opt/app/sub/new")).expect("new"), b"new");
    }

    #[test]
    fn opaque_marker_keeps_what_the_same_layer_wrote_before_it() {
        let dest = tempfile::tempdir().expect("tempdir");
        lower_tree(dest.path());
        let upper = Layer::new()
            .file("opt/app/fresh", 0o644, b"fresh")
            .file("opt/app/.wh..wh..opq", 0o644, b"")
            .bytes();
        apply(&upper, dest.path()).expect("upper layer");
        let entries: Vec<_> = fs::read_dir(dest.path().join("opt/app"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(entries, vec![OsString::from("fresh")]);
    }

    #[test]
    fn overlay_mode_records_whiteouts_for_overlayfs() {
        let dest = tempfile::tempdir().expect("tempdir");
        let layer = Layer::new()
            .file("etc/.wh.gone", 0o644, b"")
            .dir("opt/app", 0o755)
            .file("opt/app/.wh..wh..opq", 0o644, b"")
            .file("opt/app/new", 0o644, b"new")
            .bytes();
        let options = UnpackOptions {
            keep_ownership: true,
            whiteouts: WhiteoutMode::Overlay,
        };
        apply_layer(&layer[..], dest.path(), &options).expect("layer applies");
        let whiteout = meta(&dest.path().join("etc/gone"));
        assert!(whiteout.file_type().is_char_device());
        assert_eq!(whiteout.rdev(), 0, "overlay whiteouts are 0/0 devices");
        let app = dest.path().join("opt/app");
        assert_eq!(
            xattr(&app, "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert!(app.join("new").exists());
        assert!(!app.join(".wh..wh..opq").exists());
    }

    #[test]
    fn replaces_files_with_directories_and_back() {
        let dest = tempfile::tempdir().expect("tempdir");
        let lower = Layer::new()
            .file("a", 0o644, b"file")
            .file("b/inner", 0o644, b"x")
            .bytes();
        apply(&lower, dest.path()).expect("lower");
        let upper = Layer::new()
            .dir("a", 0o700)
            .file("b", 0o600, b"now a file")
            .bytes();
        apply(&upper, dest.path()).expect("upper");
        assert!(meta(&dest.path().join("a")).is_dir());
        assert_eq!(meta(&dest.path().join("a")).mode() & 0o777, 0o700);
        assert_eq!(fs::read(dest.path().join("b")).expect("b"), b"now a file");
    }

    #[test]
    fn dotdot_that_escapes_is_refused() {
        let base = tempfile::tempdir().expect("tempdir");
        let dest = base.path().join("dest");
        fs::create_dir(&dest).expect("dest");
        let layer = Layer::new()
            .raw(EntryType::Regular, "../escaped", None, b"x")
            .bytes();
        let err = apply(&layer, &dest).expect_err("escape refused");
        assert!(
            matches!(err, UnpackError::PathEscapes { ref path } if path == "../escaped"),
            "{err}"
        );
        assert!(err.to_string().contains("../escaped"));
        assert!(!base.path().join("escaped").exists());

        let inner = Layer::new()
            .raw(EntryType::Regular, "a/../b", None, b"x")
            .bytes();
        apply(&inner, &dest).expect("`..` that stays inside is fine");
        assert!(dest.join("b").exists());
    }

    #[test]
    fn absolute_paths_are_contained() {
        let dest = tempfile::tempdir().expect("tempdir");
        let layer = Layer::new()
            .raw(EntryType::Regular, "/etc/abs", None, b"x")
            .bytes();
        apply(&layer, dest.path()).expect("absolute path applies");
        assert!(dest.path().join("etc/abs").exists());
    }

    #[test]
    fn symlinked_parents_resolve_inside_the_destination() {
        let outside = tempfile::tempdir().expect("outside");
        let dest = tempfile::tempdir().expect("dest");
        let outside_path = outside.path().to_str().expect("utf-8 temp path");
        let layer = Layer::new()
            .link(EntryType::Symlink, "abs", outside_path)
            .file("abs/pwned", 0o644, b"x")
            .link(EntryType::Symlink, "rel", "../../../../..")
            .file("rel/pwned-rel", 0o644, b"x")
            .link(EntryType::Symlink, "d/up", "../..")
            .file("d/up/pwned-nested", 0o644, b"x")
            .bytes();
        apply(&layer, dest.path()).expect("layer applies, contained");
        assert_eq!(
            fs::read_dir(outside.path()).expect("outside").count(),
            0,
            "nothing written outside"
        );
        let contained = dest
            .path()
            .join(outside_path.trim_start_matches('/'))
            .join("pwned");
        assert!(
            contained.exists(),
            "absolute symlink followed as in a chroot"
        );
        assert!(
            dest.path().join("pwned-rel").exists(),
            "`..` stops at the root"
        );
        assert!(dest.path().join("pwned-nested").exists());
    }

    #[test]
    fn a_file_replaces_a_symlink_instead_of_writing_through_it() {
        let outside = tempfile::tempdir().expect("outside");
        let victim = outside.path().join("victim");
        fs::write(&victim, b"original").expect("victim");
        let dest = tempfile::tempdir().expect("dest");
        let layer = Layer::new()
            .link(
                EntryType::Symlink,
                "target",
                victim.to_str().expect("utf-8"),
            )
            .file("target", 0o644, b"overwritten?")
            .bytes();
        apply(&layer, dest.path()).expect("layer applies");
        assert_eq!(fs::read(&victim).expect("victim"), b"original");
        assert_eq!(
            fs::read(dest.path().join("target")).expect("target"),
            b"overwritten?"
        );
    }

    #[test]
    fn whiteouts_cannot_delete_outside_through_symlinks() {
        let outside = tempfile::tempdir().expect("outside");
        fs::write(outside.path().join("secret"), b"s").expect("secret");
        let dest = tempfile::tempdir().expect("dest");
        let layer = Layer::new()
            .link(
                EntryType::Symlink,
                "evil",
                outside.path().to_str().expect("utf-8"),
            )
            .file("evil/.wh.secret", 0o644, b"")
            .file("evil/.wh..wh..opq", 0o644, b"")
            .raw(EntryType::Regular, "../.wh.secret", None, b"")
            .bytes();
        let err = apply(&layer, dest.path()).expect_err("`..` whiteout refused");
        assert!(matches!(err, UnpackError::PathEscapes { .. }), "{err}");
        assert!(outside.path().join("secret").exists());
    }

    #[test]
    fn hard_links_cannot_reach_outside() {
        let outside = tempfile::tempdir().expect("outside");
        let secret = outside.path().join("secret");
        fs::write(&secret, b"s").expect("secret");
        let dest = tempfile::tempdir().expect("dest");

        let dotdot = Layer::new()
            .raw(EntryType::Link, "link", Some("../../../etc/passwd"), b"")
            .bytes();
        let err = apply(&dotdot, dest.path()).expect_err("escaping link refused");
        assert!(matches!(err, UnpackError::LinkEscapes { .. }), "{err}");
        assert!(
            err.to_string().contains("link") && err.to_string().contains("../../../etc/passwd")
        );

        let via_symlink = Layer::new()
            .link(
                EntryType::Symlink,
                "evil",
                outside.path().to_str().expect("utf-8"),
            )
            .link(EntryType::Link, "stolen", "evil/secret")
            .bytes();
        let err = apply(&via_symlink, dest.path()).expect_err("link through symlink refused");
        assert!(
            matches!(err, UnpackError::LinkTargetMissing { .. }),
            "{err}"
        );
        assert_eq!(meta(&secret).nlink(), 1, "outside file gained no link");

        let absolute = Layer::new()
            .raw(
                EntryType::Link,
                "abs",
                Some(secret.to_str().expect("utf-8")),
                b"",
            )
            .bytes();
        let err = apply(&absolute, dest.path()).expect_err("absolute target is looked up inside");
        assert!(
            matches!(err, UnpackError::LinkTargetMissing { .. }),
            "{err}"
        );
        assert_eq!(meta(&secret).nlink(), 1);
    }

    #[test]
    fn truncated_and_corrupt_streams_are_errors() {
        let layer = Layer::new().file("big", 0o644, &[7u8; 4096]).bytes();
        let cut = layer.get(..512 + 1000).expect("long enough");
        let dest = tempfile::tempdir().expect("dest");
        let err = apply(cut, dest.path()).expect_err("truncated");
        assert!(
            matches!(err, UnpackError::Truncated { ref path, expected: 4096, written: 1000 } if path == "big"),
            "{err}"
        );

        let mut corrupt = Layer::new().file("a", 0o644, b"x").bytes();
        if let Some(byte) = corrupt.get_mut(0) {
            *byte = b'b';
        }
        let err = apply(&corrupt, dest.path()).expect_err("bad checksum");
        assert!(matches!(err, UnpackError::Stream { .. }), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");

        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&layer).expect("gzip");
        let gzip = gzip.finish().expect("gzip");
        let cut_gzip = gzip.get(..gzip.len() / 2).expect("half");
        let dest = tempfile::tempdir().expect("dest");
        assert!(
            apply(cut_gzip, dest.path()).is_err(),
            "truncated gzip is an error"
        );
    }

    #[test]
    fn unsupported_inputs_are_named() {
        let dest = tempfile::tempdir().expect("dest");
        let xz = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0];
        let err = apply(&xz, dest.path()).expect_err("xz refused");
        assert!(err.to_string().contains("xz"), "{err}");

        let missing = Layer::new().link(EntryType::Link, "l", "nope").bytes();
        let err = apply(&missing, dest.path()).expect_err("missing target");
        assert_eq!(
            err.to_string(),
            "layer entry l: hard link target nope does not exist in the layer destination"
        );

        let err = apply_layer(&[][..], Path::new("/nonexistent/dest"), &root_options())
            .expect_err("missing destination");
        assert!(err.to_string().contains("/nonexistent/dest"), "{err}");

        let empty = apply(&[], dest.path()).expect("an empty stream is an empty layer");
        assert_eq!(empty.entries, 0);
    }

    #[test]
    fn pax_times_parse() {
        let t = |s| parse_pax_time(s).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("12"), Some((12, 0)));
        assert_eq!(t("12.5"), Some((12, 500_000_000)));
        assert_eq!(t("12.1234567891"), Some((12, 123_456_789)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t("x"), None);
        assert_eq!(t(".5"), None);
    }
}
