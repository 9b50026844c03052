//! `docker pull`: resolve the reference to one platform's manifest, download the
//! config and the missing layers (several at once), unpack them in order as they
//! arrive, then record and tag the image.
//!
//! Nothing is tagged until every layer is unpacked and verified, so an interrupted
//! pull leaves no broken image, only blobs and layers the next pull reuses.

use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::client::{Access, RegistryClient, Repository};
use super::download::download_blob;
use super::error::{MirrorFailure, RegistryError};
use super::manifest::{
    fetch_manifest, parse_manifest, select_platform, Descriptor, Fetched, ImageManifest, Manifest,
    Platform,
};
use super::progress::{short_id, Progress, ProgressStatus};
use crate::image::reference::{Digest, Reference};
use crate::image::store::{chain_id, ChainId, ImageId, Store, StoreError};

/// Docker's default `max-concurrent-downloads`.
const DEFAULT_CONCURRENT_DOWNLOADS: usize = 3;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to take from a manifest list; this machine's when `None`.
    pub platform: Option<Platform>,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            platform: None,
            max_concurrent_downloads: DEFAULT_CONCURRENT_DOWNLOADS,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOutcome {
    pub id: ImageId,
    /// Digest of the manifest (the platform's, not the list's) as `Digest:` shows.
    pub manifest_digest: Digest,
    /// False when the reference already named this image ("Image is up to date").
    pub updated: bool,
}

#[derive(Deserialize)]
struct ConfigHead {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<Digest>,
}

/// Pulls `reference` into `store` and tags it (references by digest are recorded
/// by manifest digest instead). Mirrors are tried first for Docker Hub images.
pub async fn pull(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    progress: &Progress,
) -> Result<PullOutcome, RegistryError> {
    let store_error = |source: StoreError| RegistryError::Store {
        reference: reference.to_string(),
        source,
    };
    // Keeps `image prune` from deleting what this pull stores before it is tagged.
    let session_store = store.clone();
    let _session = tokio::task::spawn_blocking(move || session_store.write_session())
        .await
        .map_err(|err| RegistryError::Local {
            reference: reference.to_string(),
            action: "lock the image store",
            detail: err.to_string(),
        })?
        .map_err(store_error)?;
    let label = reference.tag().unwrap_or("latest").to_owned();
    progress.report(&label, ProgressStatus::Resolving);
    let wanted = options.platform.clone().unwrap_or_else(Platform::host);
    let (repo, fetched, manifest) = resolve(client, reference, &wanted).await?;
    let previous = store
        .resolve_reference(reference)
        .map_err(store_error)?
        .map(|image| image.id);

    let config = download_config(&repo, store, &manifest.config).await?;
    let diff_ids = config_diff_ids(store, &manifest, &repo)?;
    let chains = layer_chains(&diff_ids);
    let layers = unpack_layers(
        &repo, store, &manifest, &diff_ids, &chains, options, progress,
    )
    .await?;

    store.put_blob_bytes(&fetched.bytes).map_err(store_error)?;
    let id = store
        .add_image(&config, Some(&fetched.digest), &layers)
        .map_err(store_error)?;
    if reference.tag().is_some() {
        store.tag(reference, &id).map_err(store_error)?;
    }
    Ok(PullOutcome {
        updated: previous.as_ref() != Some(&id),
        id,
        manifest_digest: fetched.digest,
    })
}

/// Finds the image manifest for `wanted`, trying each endpoint (mirrors first; a
/// failing mirror falls through to the next endpoint, as Docker does).
async fn resolve(
    client: &RegistryClient,
    reference: &Reference,
    wanted: &Platform,
) -> Result<(Repository, Fetched, ImageManifest), RegistryError> {
    let endpoints = client.config().endpoints(reference.domain());
    // What each mirror said, kept for the final error: a user who set a mirror needs to
    // see why it did not serve the image, not only why Docker Hub did not.
    let mut mirror_failures = Vec::new();
    for endpoint in &endpoints {
        let attempt = async {
            let repo = client.repository(reference, endpoint, Access::Pull).await?;
            let (fetched, manifest) = resolve_at(&repo, reference, wanted).await?;
            Ok::<_, RegistryError>((repo, fetched, manifest))
        };
        match attempt.await {
            Ok(found) => return Ok(found),
            Err(err) if endpoint.is_mirror => mirror_failures.push(MirrorFailure {
                mirror: endpoint.base.clone(),
                error: Box::new(err),
            }),
            Err(err) if mirror_failures.is_empty() => return Err(err),
            Err(err) => {
                return Err(RegistryError::AfterMirrors {
                    error: Box::new(err),
                    mirrors: mirror_failures,
                })
            }
        }
    }
    Err(match mirror_failures.pop() {
        Some(last) if mirror_failures.is_empty() => *last.error,
        Some(last) => RegistryError::AfterMirrors {
            error: last.error,
            mirrors: mirror_failures,
        },
        None => RegistryError::BadManifest {
            reference: reference.to_string(),
            reason: "no registry endpoint to ask".to_owned(),
        },
    })
}

async fn resolve_at(
    repo: &Repository,
    reference: &Reference,
    wanted: &Platform,
) -> Result<(Fetched, ImageManifest), RegistryError> {
    let name = reference.to_string();
    let (tag_or_digest, expected) = match (reference.digest(), reference.tag()) {
        (Some(digest), _) => (digest.to_string(), Some(digest)),
        (None, Some(tag)) => (tag.to_owned(), None),
        (None, None) => ("latest".to_owned(), None),
    };
    let fetched = fetch_manifest(repo, &tag_or_digest, expected).await?;
    match parse_manifest(&fetched, &name)? {
        Manifest::Image(manifest) => Ok((fetched, manifest)),
        Manifest::Index(index) => {
            let entry = select_platform(&index, wanted, &name)?;
            let digest = entry.digest.to_string();
            let chosen = fetch_manifest(repo, &digest, Some(&entry.digest)).await?;
            match parse_manifest(&chosen, &name)? {
                Manifest::Image(manifest) => Ok((chosen, manifest)),
                Manifest::Index(_) => Err(RegistryError::BadManifest {
                    reference: name,
                    reason: format!("the entry for {wanted} is itself a manifest list"),
                }),
            }
        }
    }
}

/// Stores the config blob (small: read whole, verified) and returns its digest.
async fn download_config(
    repo: &Repository,
    store: &Store,
    descriptor: &Descriptor,
) -> Result<Digest, RegistryError> {
    download_blob(repo, store, descriptor, &Progress::none()).await?;
    Ok(descriptor.digest.clone())
}

/// The config's `rootfs.diff_ids`, one per manifest layer.
fn config_diff_ids(
    store: &Store,
    manifest: &ImageManifest,
    repo: &Repository,
) -> Result<Vec<Digest>, RegistryError> {
    let reference = repo.names.reference.clone();
    let bytes = store
        .read_small_blob(&manifest.config.digest)
        .map_err(|source| RegistryError::Store {
            reference: reference.clone(),
            source,
        })?;
    let head: ConfigHead =
        serde_json::from_slice(&bytes).map_err(|err| RegistryError::BadManifest {
            reference: reference.clone(),
            reason: format!("image config {}: {err}", manifest.config.digest),
        })?;
    if head.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::BadManifest {
            reference,
            reason: format!(
                "it lists {} layers but its config has {} diff ids",
                manifest.layers.len(),
                head.rootfs.diff_ids.len()
            ),
        });
    }
    Ok(head.rootfs.diff_ids)
}

fn layer_chains(diff_ids: &[Digest]) -> Vec<ChainId> {
    let mut chains: Vec<ChainId> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let chain = chain_id(chains.last(), diff_id);
        chains.push(chain);
    }
    chains
}

/// Downloads the missing layers concurrently and unpacks each, in order, as soon as
/// it and the layers below it are there. Returns the chain IDs, base first.
async fn unpack_layers(
    repo: &Repository,
    store: &Store,
    manifest: &ImageManifest,
    diff_ids: &[Digest],
    chains: &[ChainId],
    options: &PullOptions,
    progress: &Progress,
) -> Result<Vec<ChainId>, RegistryError> {
    let mut downloads = start_downloads(repo, store, manifest, chains, options, progress);
    unpack_in_order(repo, store, manifest, diff_ids, &mut downloads, progress).await
}

/// Download tasks, one slot per layer (`None`: already unpacked). Dropping them, on
/// an error or when the pull itself is dropped, stops the others; their partial
/// files stay for the next pull.
struct Downloads(Vec<Option<JoinHandle<Result<(), RegistryError>>>>);

impl Drop for Downloads {
    fn drop(&mut self) {
        for handle in self.0.iter().flatten() {
            handle.abort();
        }
    }
}

fn start_downloads(
    repo: &Repository,
    store: &Store,
    manifest: &ImageManifest,
    chains: &[ChainId],
    options: &PullOptions,
    progress: &Progress,
) -> Downloads {
    let permits = Arc::new(Semaphore::new(options.max_concurrent_downloads.max(1)));
    let mut started: Vec<(Digest, usize)> = Vec::new();
    let handles = manifest
        .layers
        .iter()
        .zip(chains)
        .enumerate()
        .map(|(index, (layer, chain))| {
            let id = short_id(&layer.digest);
            if store.has_layer(chain) {
                progress.report(&id, ProgressStatus::AlreadyExists);
                return None;
            }
            // A blob listed twice is downloaded once; the second slot waits on nothing.
            if started.iter().any(|(digest, _)| *digest == layer.digest) {
                return None;
            }
            started.push((layer.digest.clone(), index));
            progress.report(&id, ProgressStatus::Waiting);
            let (repo, store, layer) = (repo.clone(), store.clone(), layer.clone());
            let (progress, permits) = (progress.clone(), Arc::clone(&permits));
            Some(tokio::spawn(async move {
                let _permit =
                    permits
                        .acquire_owned()
                        .await
                        .map_err(|err| RegistryError::Local {
                            reference: repo.names.reference.clone(),
                            action: "schedule a download",
                            detail: err.to_string(),
                        })?;
                download_blob(&repo, &store, &layer, &progress).await
            }))
        })
        .collect();
    Downloads(handles)
}

async fn unpack_in_order(
    repo: &Repository,
    store: &Store,
    manifest: &ImageManifest,
    diff_ids: &[Digest],
    downloads: &mut Downloads,
    progress: &Progress,
) -> Result<Vec<ChainId>, RegistryError> {
    let mut chains: Vec<ChainId> = Vec::new();
    let reference = repo.names.reference.clone();
    let joined = |err: tokio::task::JoinError| RegistryError::Local {
        reference: reference.clone(),
        action: "download a layer",
        detail: err.to_string(),
    };
    let layers = manifest.layers.iter().zip(diff_ids);
    for ((layer, diff_id), download) in layers.zip(downloads.0.iter_mut()) {
        let downloaded = download.is_some();
        if let Some(handle) = download.take() {
            handle.await.map_err(joined)??;
        }
        let id = short_id(&layer.digest);
        if downloaded {
            progress.report(&id, ProgressStatus::Extracting);
        }
        let (unpack_store, blob, diff, parent) = (
            store.clone(),
            layer.digest.clone(),
            diff_id.clone(),
            chains.last().cloned(),
        );
        let chain = tokio::task::spawn_blocking(move || {
            unpack_store.ensure_layer(&blob, &diff, parent.as_ref())
        })
        .await
        .map_err(joined)?
        .map_err(|source| RegistryError::Store {
            reference: reference.clone(),
            source,
        })?;
        if downloaded {
            progress.report(&id, ProgressStatus::PullComplete);
        }
        chains.push(chain);
    }
    Ok(chains)
}
