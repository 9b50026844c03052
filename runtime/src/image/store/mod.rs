//! The content-addressed image store.
//!
//! Everything lives under one state root chosen by the caller:
//!
//! ```text
//! <root>/
//!   lock                      flock serialising tags.json and image-record updates
//!   gc.lock                   shared by writers, exclusive for prune
//!   tags.json                 {"docker.io/library/alpine:latest": "sha256:<image id>"}
//!   blobs/sha256/<hex>        any blob as received (layer tars, configs, manifests)
//!   layers/<chain id hex>/
//!     diff/                   the layer unpacked on its own, overlayfs-ready whiteouts
//!     layer.json              diff id, parent chain id, blob digest, size
//!   images/<config hex>.json  image record: manifest digest, layer chain ids, created, size
//! ```
//!
//! An image is identified by the digest of its config blob (its ID, as Docker shows it)
//! and a layer by its chain ID, so layers are shared by every image that has them.
//!
//! Every file and layer directory is written under a `.tmp-` name first, then renamed
//! into place. Writes happen in dependency order (blobs, then layers, then the image
//! record, then the tag), so a crash at any point leaves at worst some unreferenced
//! content or temp entries, which [`Store::prune`] removes; a tag never names an
//! image whose record, config or layers are missing.
//!
//! Concurrency: `tags.json` is read-modify-written under an exclusive `flock` on
//! `<root>/lock`, so concurrent taggers (threads or processes) lose nothing. Writers of
//! content hold `<root>/gc.lock` shared for as long as the content they write is not
//! yet reachable from a tag, and prune takes it exclusively, so prune never deletes
//! content that a load in progress is about to tag.

mod blobs;
mod images;
mod layers;
mod prune;
mod tags;
#[cfg(test)]
pub(crate) mod test_support;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use super::reference::{Digest, DigestError};
use super::unpack::UnpackError;
use crate::lock::{lock_file, LockGuard, LockKind};
pub use blobs::HashingReader;
pub use images::{Image, ImageDetails, ImageSummary, RemoveReport};
pub(crate) use layers::decompress;
pub use layers::{chain_id, LayerInfo};
pub use prune::PruneReport;

/// Prefix of every entry still being written; such entries are never read and prune
/// deletes them.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";
/// Largest JSON document (config, manifest, index) read into memory.
pub(crate) const MAX_JSON_BYTES: u64 = 16 << 20;

const BLOBS_DIR: &str = "blobs/sha256";
const LAYERS_DIR: &str = "layers";
const IMAGES_DIR: &str = "images";
const TAGS_FILE: &str = "tags.json";
const TAGS_LOCK: &str = "lock";
const GC_LOCK: &str = "gc.lock";

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("image store: cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("digest {0} uses an algorithm the image store does not keep (only sha256)")]
    UnsupportedDigest(Digest),
    #[error("blob {0} is not in the image store")]
    BlobMissing(Digest),
    #[error("layer {diff_id} cannot be unpacked: {source}")]
    Unpack {
        diff_id: Digest,
        source: UnpackError,
    },
    #[error("layer content has diff id {actual}, but the image config lists {expected}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("layer {0} is not in the image store")]
    LayerMissing(ChainId),
    #[error("image config {digest} is invalid: {reason}")]
    InvalidConfig { digest: Digest, reason: String },
    #[error("image config {config} lists {expected} layers but {given} were given")]
    LayerCount {
        config: Digest,
        expected: usize,
        given: usize,
    },
    #[error("No such image: {0}")]
    ImageNotFound(String),
    #[error(
        "image ID prefix {prefix} is ambiguous: it matches {matches} images, give more digits"
    )]
    AmbiguousId { prefix: String, matches: usize },
    #[error("unable to delete {image} (must be forced) - image is referenced in multiple repositories: {tags}")]
    Conflict { image: String, tags: String },
    #[error("image store file {} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Builds the I/O error variant for an action on a path.
pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// An image ID: the digest of the image's config blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(Digest);

impl ImageId {
    pub fn new(config_digest: Digest) -> ImageId {
        ImageId(config_digest)
    }

    pub fn digest(&self) -> &Digest {
        &self.0
    }

    /// The 12 hex digits `docker images` shows.
    pub fn short(&self) -> &str {
        let hex = self.0.hex();
        hex.get(..12).unwrap_or(hex)
    }
}

/// A layer's chain ID: its diff ID combined with those of every layer below it, so
/// equal chain IDs mean equal filesystems.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId(Digest);

impl ChainId {
    pub fn new(digest: Digest) -> ChainId {
        ChainId(digest)
    }

    pub fn digest(&self) -> &Digest {
        &self.0
    }
}

macro_rules! digest_newtype_impls {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = DigestError;

            fn from_str(s: &str) -> Result<$name, DigestError> {
                s.parse().map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                Digest::deserialize(deserializer).map($name)
            }
        }
    };
}

digest_newtype_impls!(ImageId);
digest_newtype_impls!(ChainId);

/// Turns a finished sha256 hasher into a [`Digest`].
pub(crate) fn sha256_digest(hasher: Sha256) -> Digest {
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    // 64 lowercase hex digits always form a valid sha256 digest; the fallback keeps
    // this total without a panic path.
    format!("sha256:{hex}")
        .parse()
        .unwrap_or_else(|_| Digest::sha256_of(hex.as_bytes()))
}

/// Handle on a store directory. Cheap to clone; every method may be called from many
/// threads and processes at once.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Holds `gc.lock` shared: content written meanwhile survives a concurrent prune.
#[derive(Debug)]
pub struct WriteSession {
    _guard: LockGuard,
}

impl Store {
    /// Opens the store at `root`, creating its directories if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        for dir in [store.blobs_dir(), store.layers_dir(), store.images_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keeps prune away until the returned guard is dropped. Loads and imports hold
    /// one from their first blob until their tags are written.
    pub fn write_session(&self) -> Result<WriteSession> {
        let path = self.root.join(GC_LOCK);
        let guard = lock_file(&path, LockKind::Shared).map_err(io_err("lock", &path))?;
        Ok(WriteSession { _guard: guard })
    }

    fn exclusive_gc_lock(&self) -> Result<LockGuard> {
        let path = self.root.join(GC_LOCK);
        lock_file(&path, LockKind::Exclusive).map_err(io_err("lock", &path))
    }

    fn metadata_lock(&self) -> Result<LockGuard> {
        let path = self.root.join(TAGS_LOCK);
        lock_file(&path, LockKind::Exclusive).map_err(io_err("lock", &path))
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join(BLOBS_DIR)
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join(LAYERS_DIR)
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join(IMAGES_DIR)
    }

    fn tags_path(&self) -> PathBuf {
        self.root.join(TAGS_FILE)
    }
}

/// Writes `bytes` to `dir/name` atomically: temp file, fsync, rename, fsync of `dir`.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file in", dir))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(io_err("write", temp.path()))?;
    let target = dir.join(name);
    temp.persist(&target)
        .map_err(|err| io_err("rename into place", &target)(err.error))?;
    sync_dir(dir)
}

/// Makes a rename or unlink in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_err("sync directory", dir))
}

pub(crate) fn is_temp_name(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes())
}

/// Reads a JSON store file, `None` when it does not exist.
pub(crate) fn read_json_file<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_err("read", path)(err)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })
}

/// Serialises `value` and writes it atomically to `dir/name`.
pub(crate) fn write_json_file<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|err| StoreError::Corrupt {
        path: dir.join(name),
        reason: err.to_string(),
    })?;
    write_atomic(dir, name, &bytes)
}
