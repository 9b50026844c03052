//! Blobs: content-addressed files under `blobs/sha256/`, written through a temp file
//! and verified before they get their name.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::{io_err, sha256_digest, Result, Store, StoreError, MAX_JSON_BYTES, TEMP_PREFIX};
use crate::image::reference::{Algorithm, Digest};

/// A reader that hashes (sha256) and counts every byte read through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// The digest of everything read so far.
    pub fn digest(&self) -> Digest {
        sha256_digest(self.hasher.clone())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = buf.get(..n).unwrap_or_default();
        self.hasher.update(read);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl Store {
    /// Streams `reader` into the store and returns its digest. With `expected`, the
    /// content must hash to it, or nothing is stored.
    pub fn put_blob(&self, reader: impl Read, expected: Option<&Digest>) -> Result<Digest> {
        if let Some(expected) = expected {
            self.require_sha256(expected)?;
        }
        let _session = self.write_session()?;
        let dir = self.blobs_dir();
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&dir)
            .map_err(io_err("create a temporary file in", &dir))?;
        let mut hashing = HashingReader::new(reader);
        io::copy(&mut hashing, temp.as_file_mut()).map_err(|source| StoreError::Io {
            action: "write blob",
            path: temp.path().to_path_buf(),
            source,
        })?;
        let actual = hashing.digest();
        if let Some(expected) = expected {
            if *expected != actual {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        if self.has_blob(&actual) {
            return Ok(actual);
        }
        temp.as_file()
            .sync_all()
            .map_err(io_err("sync", temp.path()))?;
        let target = self.blob_path(&actual)?;
        temp.persist(&target)
            .map_err(|err| io_err("rename into place", &target)(err.error))?;
        super::sync_dir(&dir)?;
        Ok(actual)
    }

    /// Stores an in-memory blob (configs, manifests).
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        self.put_blob(bytes, None)
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_ok_and(|path| path.is_file())
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => StoreError::BlobMissing(digest.clone()),
            _ => io_err("open blob", &path)(err),
        })
    }

    /// Size in bytes of a stored blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest)?;
        fs::metadata(&path)
            .map(|meta| meta.len())
            .map_err(|err| match err.kind() {
                io::ErrorKind::NotFound => StoreError::BlobMissing(digest.clone()),
                _ => io_err("stat blob", &path)(err),
            })
    }

    /// Reads a small blob (a JSON document) whole, refusing anything huge.
    pub fn read_small_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let size = self.blob_size(digest)?;
        if size > MAX_JSON_BYTES {
            return Err(StoreError::Corrupt {
                path: self.blob_path(digest)?,
                reason: format!("{size} bytes is too large for a JSON document"),
            });
        }
        let path = self.blob_path(digest)?;
        fs::read(&path).map_err(io_err("read blob", &path))
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> Result<PathBuf> {
        self.require_sha256(digest)?;
        Ok(self.blobs_dir().join(digest.hex()))
    }

    fn require_sha256(&self, digest: &Digest) -> Result<()> {
        match digest.algorithm() {
            Algorithm::Sha256 => Ok(()),
            _ => Err(StoreError::UnsupportedDigest(digest.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::store::test_support::temp_store as store;

    #[test]
    fn blobs_are_named_by_their_sha256() {
        let (_dir, store) = store();
        let digest = store.put_blob(&b"hello"[..], None).expect("put");
        assert_eq!(digest, Digest::sha256_of(b"hello"));
        assert!(store.has_blob(&digest));
        let mut content = String::new();
        store
            .open_blob(&digest)
            .expect("open")
            .read_to_string(&mut content)
            .expect("read");
        assert_eq!(content, "hello");
        assert_eq!(store.blob_size(&digest).expect("size"), 5);
    }

    #[test]
    fn a_digest_mismatch_stores_nothing() {
        let (dir, store) = store();
        let wrong = Digest::sha256_of(b"other");
        let err = store.put_blob(&b"hello"[..], Some(&wrong)).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(!store.has_blob(&Digest::sha256_of(b"hello")));
        let leftovers = fs::read_dir(dir.path().join("blobs/sha256"))
            .expect("list")
            .count();
        assert_eq!(leftovers, 0, "the temp file is removed");
    }

    #[test]
    fn storing_the_same_content_twice_is_harmless() {
        let (_dir, store) = store();
        let first = store.put_blob_bytes(b"same").expect("put");
        let second = store.put_blob(&b"same"[..], Some(&first)).expect("put");
        assert_eq!(first, second);
    }

    #[test]
    fn missing_and_foreign_digests_are_named() {
        let (_dir, store) = store();
        let missing = Digest::sha256_of(b"absent");
        let err = store.open_blob(&missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("blob {missing} is not in the image store")
        );
        let sha512: Digest = format!("sha512:{}", "a".repeat(128))
            .parse()
            .expect("digest");
        assert!(matches!(
            store.put_blob(&b"x"[..], Some(&sha512)),
            Err(StoreError::UnsupportedDigest(_))
        ));
    }

    #[test]
    fn hashing_reader_counts_and_hashes() {
        let mut reader = HashingReader::new(&b"abc"[..]);
        io::copy(&mut reader, &mut io::sink()).expect("copy");
        assert_eq!(reader.bytes_read(), 3);
        assert_eq!(reader.digest(), Digest::sha256_of(b"abc"));
    }
}
