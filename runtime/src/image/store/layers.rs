//! Layers: each layer unpacked once, on its own, under `layers/<chain id hex>/diff`,
//! so the `diff` directories of an image stack up as overlayfs lower directories.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::blobs::HashingReader;
use super::{
    io_err, read_json_file, sha256_digest, sync_dir, write_json_file, ChainId, Result, Store,
    StoreError, TEMP_PREFIX,
};
use crate::image::reference::Digest;
use crate::image::unpack::{self, apply_layer, Compression, UnpackOptions, WhiteoutMode};

const LAYER_META: &str = "layer.json";
const DIFF_DIR: &str = "diff";

/// What the store records about an unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub chain_id: ChainId,
    /// sha256 of the uncompressed layer tar.
    pub diff_id: Digest,
    pub parent: Option<ChainId>,
    /// The blob the layer was unpacked from, as received (maybe compressed).
    pub blob: Digest,
    /// Bytes of regular file content in the layer.
    pub size: u64,
}

/// The chain ID of a layer with `diff_id` on top of `parent`: the diff ID itself for a
/// base layer, else `sha256("<parent chain id> <diff id>")`.
pub fn chain_id(parent: Option<&ChainId>, diff_id: &Digest) -> ChainId {
    match parent {
        None => ChainId::new(diff_id.clone()),
        Some(parent) => {
            let mut hasher = Sha256::new();
            hasher.update(format!("{parent} {diff_id}").as_bytes());
            ChainId::new(sha256_digest(hasher))
        }
    }
}

impl Store {
    /// Unpacks the layer blob `blob` on top of `parent` unless that layer is already in
    /// the store. The uncompressed content must hash to `diff_id`; otherwise nothing is
    /// kept. Safe to race with another process unpacking the same layer.
    pub fn ensure_layer(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        parent: Option<&ChainId>,
    ) -> Result<ChainId> {
        let chain = chain_id(parent, diff_id);
        if self.has_layer(&chain) {
            return Ok(chain);
        }
        if let Some(parent) = parent {
            if !self.has_layer(parent) {
                return Err(StoreError::LayerMissing(parent.clone()));
            }
        }
        let _session = self.write_session()?;
        let layers_dir = self.layers_dir();
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(&layers_dir)
            .map_err(io_err("create a temporary directory in", &layers_dir))?;
        let size = self.unpack_verified(blob, diff_id, &temp.path().join(DIFF_DIR))?;
        let info = LayerInfo {
            chain_id: chain.clone(),
            diff_id: diff_id.clone(),
            parent: parent.cloned(),
            blob: blob.clone(),
            size,
        };
        write_json_file(temp.path(), LAYER_META, &info)?;
        sync_filesystem(temp.path())?;
        self.publish_layer_dir(temp, &chain)?;
        Ok(chain)
    }

    /// Whether a complete layer with this chain ID is present.
    pub fn has_layer(&self, chain: &ChainId) -> bool {
        self.layer_path(chain).join(LAYER_META).is_file()
    }

    /// The recorded metadata of a layer.
    pub fn layer(&self, chain: &ChainId) -> Result<LayerInfo> {
        let path = self.layer_path(chain).join(LAYER_META);
        read_json_file(&path)?.ok_or_else(|| StoreError::LayerMissing(chain.clone()))
    }

    /// The unpacked content of a layer, usable as an overlayfs lower directory.
    pub fn layer_diff_dir(&self, chain: &ChainId) -> PathBuf {
        self.layer_path(chain).join(DIFF_DIR)
    }

    pub(crate) fn layer_path(&self, chain: &ChainId) -> PathBuf {
        self.layers_dir().join(chain.digest().hex())
    }

    /// Applies the blob to `dest` while hashing its uncompressed bytes; returns the
    /// content size once the hash matched `diff_id`.
    fn unpack_verified(&self, blob: &Digest, diff_id: &Digest, dest: &Path) -> Result<u64> {
        fs::create_dir(dest).map_err(io_err("create directory", dest))?;
        let file = self.open_blob(blob)?;
        let unpack_error = |source| StoreError::Unpack {
            diff_id: diff_id.clone(),
            source,
        };
        let mut hashing = HashingReader::new(decompress(file).map_err(unpack_error)?);
        let options = UnpackOptions {
            whiteouts: WhiteoutMode::Overlay,
            ..UnpackOptions::default()
        };
        let stats = apply_layer(&mut hashing, dest, &options).map_err(unpack_error)?;
        let actual = hashing.digest();
        if actual != *diff_id {
            return Err(StoreError::DiffIdMismatch {
                expected: diff_id.clone(),
                actual,
            });
        }
        Ok(stats.bytes)
    }

    /// Renames a finished temp layer directory to its chain ID. Losing a race to another
    /// writer of the same layer is fine: its copy is identical.
    fn publish_layer_dir(&self, temp: tempfile::TempDir, chain: &ChainId) -> Result<()> {
        let target = self.layer_path(chain);
        match fs::rename(temp.path(), &target) {
            Ok(()) => {
                // The directory now lives under its final name; nothing left to clean.
                let _kept = temp.keep();
            }
            Err(_) if self.has_layer(chain) => {}
            Err(err) => return Err(io_err("rename layer into place", &target)(err)),
        }
        sync_dir(&self.layers_dir())
    }
}

/// Wraps a layer blob in the decompressor its magic bytes call for, so the hash taken
/// above it is over the uncompressed tar (the diff ID).
pub(crate) fn decompress<'r>(
    mut reader: impl Read + 'r,
) -> Result<Box<dyn Read + 'r>, unpack::UnpackError> {
    let mut head = Vec::new();
    (&mut reader)
        .take(8)
        .read_to_end(&mut head)
        .map_err(|source| unpack::UnpackError::Stream {
            after: String::new(),
            source,
        })?;
    let whole = io::Cursor::new(head.clone()).chain(reader);
    Ok(match unpack::detect(&head) {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(whole).map_err(|source| {
                unpack::UnpackError::Stream {
                    after: String::new(),
                    source,
                }
            })?)
        }
    })
}

/// Flushes everything written under `path` (the unpacked files included) to disk
/// before the layer gets its final name.
fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = fs::File::open(path).map_err(io_err("open", path))?;
    rustix::fs::syncfs(&dir).map_err(|errno| io_err("sync filesystem of", path)(errno.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::store::test_support::temp_store as store;
    use crate::image::store::test_support::{gzip, LayerBuilder};

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let base = chain_id(None, &a);
        assert_eq!(base.digest(), &a);
        let top = chain_id(Some(&base), &b);
        let expected = Digest::sha256_of(format!("{a} {b}").as_bytes());
        assert_eq!(top.digest(), &expected);
    }

    #[test]
    fn a_layer_is_unpacked_once_and_shared() {
        let (_dir, store) = store();
        let tar = LayerBuilder::new().file("etc/hostname", b"box").build();
        let diff_id = Digest::sha256_of(&tar);
        let blob = store.put_blob_bytes(&tar).expect("put");
        let chain = store.ensure_layer(&blob, &diff_id, None).expect("layer");
        let again = store.ensure_layer(&blob, &diff_id, None).expect("layer");
        assert_eq!(chain, again);
        let content = fs::read(store.layer_diff_dir(&chain).join("etc/hostname")).expect("read");
        assert_eq!(content, b"box");
        let info = store.layer(&chain).expect("info");
        assert_eq!(info.diff_id, diff_id);
        assert_eq!(info.size, 3);
        assert_eq!(info.parent, None);
    }

    #[test]
    fn gzip_blobs_are_verified_against_the_uncompressed_diff_id() {
        let (_dir, store) = store();
        let tar = LayerBuilder::new().file("a", b"1").build();
        let diff_id = Digest::sha256_of(&tar);
        let blob = store.put_blob_bytes(&gzip(&tar)).expect("put");
        assert_ne!(blob, diff_id);
        let chain = store.ensure_layer(&blob, &diff_id, None).expect("layer");
        assert_eq!(store.layer(&chain).expect("info").blob, blob);
    }

    #[test]
    fn a_wrong_diff_id_keeps_nothing() {
        let (dir, store) = store();
        let tar = LayerBuilder::new().file("a", b"1").build();
        let blob = store.put_blob_bytes(&tar).expect("put");
        let claimed = Digest::sha256_of(b"something else");
        let err = store.ensure_layer(&blob, &claimed, None).unwrap_err();
        assert!(matches!(err, StoreError::DiffIdMismatch { .. }), "{err}");
        assert!(!store.has_layer(&chain_id(None, &claimed)));
        let entries = fs::read_dir(dir.path().join("layers"))
            .expect("list")
            .count();
        assert_eq!(entries, 0, "the temp directory is removed");
    }

    #[test]
    fn whiteouts_are_kept_for_overlayfs_and_parents_are_recorded() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let (_dir, store) = store();
        let base = LayerBuilder::new().file("etc/old", b"x").build();
        let top = LayerBuilder::new().file("etc/.wh.old", b"").build();
        let base_blob = store.put_blob_bytes(&base).expect("put");
        let top_blob = store.put_blob_bytes(&top).expect("put");
        let base_chain = store
            .ensure_layer(&base_blob, &Digest::sha256_of(&base), None)
            .expect("base");
        let top_chain = store
            .ensure_layer(&top_blob, &Digest::sha256_of(&top), Some(&base_chain))
            .expect("top");
        let whiteout = fs::symlink_metadata(store.layer_diff_dir(&top_chain).join("etc/old"))
            .expect("whiteout present");
        assert!(whiteout.file_type().is_char_device());
        assert_eq!(whiteout.rdev(), 0);
        assert_eq!(
            store.layer(&top_chain).expect("info").parent,
            Some(base_chain)
        );
    }

    #[test]
    fn a_missing_parent_or_blob_is_named() {
        let (_dir, store) = store();
        let tar = LayerBuilder::new().file("a", b"1").build();
        let diff_id = Digest::sha256_of(&tar);
        let absent_parent = chain_id(None, &Digest::sha256_of(b"p"));
        let err = store
            .ensure_layer(&diff_id, &diff_id, Some(&absent_parent))
            .unwrap_err();
        assert!(matches!(err, StoreError::LayerMissing(_)), "{err}");
        let err = store.ensure_layer(&diff_id, &diff_id, None).unwrap_err();
        assert!(matches!(err, StoreError::BlobMissing(_)), "{err}");
    }
}
