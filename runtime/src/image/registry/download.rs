//! One blob from the registry into the store: streamed to a partial file in the
//! store's blob directory while hashed, resumed with a range request after an
//! interruption (in this pull or a later one), and renamed to its digest only once
//! the whole content hashed to it.
//!
//! The partial file is a store temp entry (`.tmp-partial-<hex>`), so `image prune`
//! reclaims abandoned ones; a lock beside it keeps two pulls of the same blob apart.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};

use super::client::Repository;
use super::error::RegistryError;
use super::manifest::Descriptor;
use super::progress::{short_id, Progress, ProgressStatus};
use crate::image::reference::Digest;
use crate::image::store::{sha256_digest, sync_dir, Store, TEMP_PREFIX};
use crate::lock::{lock_file, LockKind};

/// Attempts per blob; each one resumes where the previous one stopped.
const MAX_ATTEMPTS: u32 = 4;
/// Progress events are sent at most every this many bytes.
const PROGRESS_STEP: u64 = 256 << 10;

/// Makes sure the blob `descriptor` names is in the store, downloading what is
/// missing. Reports `Downloading` and `DownloadComplete` under the blob's short ID.
pub(crate) async fn download_blob(
    repo: &Repository,
    store: &Store,
    descriptor: &Descriptor,
    progress: &Progress,
) -> Result<(), RegistryError> {
    if store.has_blob(&descriptor.digest) {
        return Ok(());
    }
    let blob = BlobFile::new(repo, store, descriptor)?;
    let lock_path = blob.lock_path();
    let _lock = blocking(repo, "lock a partial download", move || {
        lock_file(&lock_path, LockKind::Exclusive)
    })
    .await?;
    // Another pull may have finished this blob while we waited for the lock.
    if store.has_blob(&descriptor.digest) {
        return Ok(());
    }
    let id = short_id(&descriptor.digest);
    let mut attempt = 1;
    loop {
        match fetch_remaining(repo, &blob, progress, &id).await {
            Ok(()) => break,
            Err(err) if err.is_transient() && attempt < MAX_ATTEMPTS => {
                progress.report(
                    &id,
                    ProgressStatus::Retrying {
                        attempt,
                        reason: err.to_string(),
                    },
                );
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
    let publish = blob.clone();
    blocking(repo, "store a downloaded blob", move || publish.publish()).await?;
    progress.report(&id, ProgressStatus::DownloadComplete);
    Ok(())
}

/// Where a blob is being downloaded to and what it must turn out to be.
#[derive(Debug, Clone)]
struct BlobFile {
    partial: PathBuf,
    target: PathBuf,
    digest: Digest,
    size: u64,
    what: String,
    reference: String,
}

impl BlobFile {
    fn new(
        repo: &Repository,
        store: &Store,
        descriptor: &Descriptor,
    ) -> Result<BlobFile, RegistryError> {
        let target =
            store
                .blob_path(&descriptor.digest)
                .map_err(|source| RegistryError::Store {
                    reference: repo.names.reference.clone(),
                    source,
                })?;
        let partial =
            target.with_file_name(format!("{TEMP_PREFIX}partial-{}", descriptor.digest.hex()));
        Ok(BlobFile {
            partial,
            target,
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            what: format!("blob {}", descriptor.digest),
            reference: repo.names.reference.clone(),
        })
    }

    fn lock_path(&self) -> PathBuf {
        self.partial.with_extension("lock")
    }

    /// Hashes what an earlier attempt left, so the download can continue after it.
    fn resume_state(&self) -> io::Result<(Sha256, u64)> {
        let mut hasher = Sha256::new();
        let mut file = match File::open(&self.partial) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok((hasher, 0)),
            Err(err) => return Err(err),
        };
        let mut buffer = vec![0; 1 << 20];
        let mut total = 0;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                return Ok((hasher, total));
            }
            hasher.update(buffer.get(..n).unwrap_or_default());
            total += n as u64;
        }
    }

    fn open_for_append(&self, truncate: bool) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options.create(true);
        if truncate {
            options.write(true).truncate(true);
        } else {
            options.append(true);
        }
        options.open(&self.partial)
    }

    fn discard(&self) {
        // Best effort: prune removes what is left.
        let _ = fs::remove_file(&self.partial);
    }

    /// Moves the verified partial file to the blob's name.
    fn publish(&self) -> io::Result<()> {
        File::open(&self.partial)?.sync_all()?;
        fs::rename(&self.partial, &self.target)?;
        if let Some(dir) = self.target.parent() {
            sync_dir(dir).map_err(io::Error::other)?;
        }
        let _ = fs::remove_file(self.lock_path());
        Ok(())
    }

    fn mismatch(&self, actual: Digest) -> RegistryError {
        RegistryError::DigestMismatch {
            what: self.what.clone(),
            reference: self.reference.clone(),
            expected: self.digest.clone(),
            actual,
        }
    }

    fn interrupted(&self, detail: String) -> RegistryError {
        RegistryError::Interrupted {
            what: self.what.clone(),
            reference: self.reference.clone(),
            detail,
        }
    }

    fn local_error(&self, action: &'static str, err: io::Error) -> RegistryError {
        RegistryError::Local {
            reference: self.reference.clone(),
            action,
            detail: format!("{}: {err}", self.partial.display()),
        }
    }
}

/// Downloads what the partial file lacks and checks the whole against the digest.
async fn fetch_remaining(
    repo: &Repository,
    blob: &BlobFile,
    progress: &Progress,
    id: &str,
) -> Result<(), RegistryError> {
    let state = blob.clone();
    let (mut hasher, mut have) = blocking(repo, "read a partial download", move || {
        state.resume_state()
    })
    .await?;
    if have > blob.size {
        blob.discard();
        (hasher, have) = (Sha256::new(), 0);
    }
    if have < blob.size {
        let url = repo.url(&format!("blobs/{}", blob.digest));
        let from = have;
        let response = repo
            .send(&url, |http| {
                let request = http.get(&url);
                if from > 0 {
                    request.header(reqwest::header::RANGE, format!("bytes={from}-"))
                } else {
                    request
                }
            })
            .await?;
        if from > 0 && response.status() != StatusCode::PARTIAL_CONTENT {
            // The registry ignored the range and sends everything again.
            (hasher, have) = (Sha256::new(), 0);
        }
        let response = repo.check(response, &blob.what).await?;
        let mut file = blob
            .open_for_append(have == 0)
            .map_err(|err| blob.local_error("write a download", err))?;
        stream_body(
            response,
            &mut file,
            &mut hasher,
            &mut have,
            blob,
            progress,
            id,
        )
        .await?;
    }
    let actual = sha256_digest(hasher);
    if actual != blob.digest {
        blob.discard();
        return Err(blob.mismatch(actual));
    }
    Ok(())
}

/// Appends the body to `file`, hashing and counting as it goes.
async fn stream_body(
    mut response: reqwest::Response,
    file: &mut File,
    hasher: &mut Sha256,
    have: &mut u64,
    blob: &BlobFile,
    progress: &Progress,
    id: &str,
) -> Result<(), RegistryError> {
    let mut reported = *have;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(err) => {
                return Err(blob.interrupted(format!("{err} after {have} of {} bytes", blob.size)))
            }
        };
        if *have + chunk.len() as u64 > blob.size {
            blob.discard();
            return Err(RegistryError::TooLarge {
                what: blob.what.clone(),
                reference: blob.reference.clone(),
                expected: blob.size,
            });
        }
        // Writes land in the page cache; a short blocking write here costs less than
        // a hop to the blocking pool per chunk.
        file.write_all(&chunk)
            .map_err(|err| blob.local_error("write a download", err))?;
        hasher.update(&chunk);
        *have += chunk.len() as u64;
        if *have - reported >= PROGRESS_STEP || *have == blob.size {
            reported = *have;
            progress.report(
                id,
                ProgressStatus::Downloading {
                    current: *have,
                    total: blob.size,
                },
            );
        }
    }
    if *have < blob.size {
        return Err(blob.interrupted(format!(
            "the connection closed after {have} of {} bytes",
            blob.size
        )));
    }
    Ok(())
}

/// Runs file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    repo: &Repository,
    action: &'static str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, RegistryError> {
    let local = |detail: String| RegistryError::Local {
        reference: repo.names.reference.clone(),
        action,
        detail,
    };
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| local(err.to_string()))?
        .map_err(|err| local(err.to_string()))
}
