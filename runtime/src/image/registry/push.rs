//! `docker push`: upload an image's layer and config blobs the registry lacks, then
//! its manifest under the reference's tag.
//!
//! An image pulled from a registry is pushed with the manifest it came with. One
//! loaded or imported without a manifest gets an OCI manifest made from its blobs as
//! the store holds them (compressed or not, each declared with its real media type).

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::task::JoinSet;

use super::client::{Access, Repository};
use super::error::RegistryError;
use super::manifest::{
    parse_manifest, Descriptor, Fetched, ImageManifest, Manifest, OCI_CONFIG, OCI_LAYER_GZIP,
    OCI_LAYER_TAR, OCI_LAYER_ZSTD, OCI_MANIFEST,
};
use super::progress::{short_id, Progress, ProgressStatus};
use super::RegistryClient;
use crate::image::reference::{Digest, Reference};
use crate::image::store::{Image, Store, StoreError};
use crate::image::unpack::{detect, Compression};

/// Blobs up to this size go up in one request; larger ones in chunks of it.
const CHUNK_SIZE: u64 = 32 << 20;
/// Blobs uploaded at once (Docker's default `max-concurrent-uploads`: 5).
const CONCURRENT_UPLOADS: usize = 5;

/// What a push did: the manifest the registry now has under the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    pub manifest_digest: Digest,
    pub size: u64,
}

/// Pushes the local image `reference` names to its registry (never to a mirror).
pub async fn push(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    progress: &Progress,
) -> Result<PushOutcome, RegistryError> {
    let name = reference.to_string();
    let store_error = |source: StoreError| RegistryError::Store {
        reference: name.clone(),
        source,
    };
    let image = store
        .resolve_reference(reference)
        .map_err(store_error)?
        .ok_or_else(|| RegistryError::NotLocal(reference.familiar()))?;
    let manifest = manifest_for(store, &image, &name)?;
    let endpoints = client.config().endpoints(reference.domain());
    let origin = endpoints
        .iter()
        .find(|endpoint| !endpoint.is_mirror)
        .ok_or_else(|| RegistryError::BadManifest {
            reference: name.clone(),
            reason: "no registry endpoint to push to".to_owned(),
        })?;
    let repo = client.repository(reference, origin, Access::Push).await?;
    upload_layers(&repo, store, &manifest.parsed.layers, progress).await?;
    upload_blob(&repo, store, &manifest.parsed.config, &Progress::none()).await?;
    let tag_or_digest = reference
        .tag()
        .map(str::to_owned)
        .unwrap_or_else(|| manifest.fetched.digest.to_string());
    put_manifest(&repo, &tag_or_digest, &manifest.fetched).await?;
    Ok(PushOutcome {
        manifest_digest: manifest.fetched.digest.clone(),
        size: manifest.fetched.bytes.len() as u64,
    })
}

struct PushManifest {
    fetched: Fetched,
    parsed: ImageManifest,
}

/// The image's own manifest when it has one and every blob it names is stored,
/// otherwise an OCI manifest built from the stored blobs.
fn manifest_for(store: &Store, image: &Image, name: &str) -> Result<PushManifest, RegistryError> {
    if let Some(existing) = stored_manifest(store, image, name) {
        return Ok(existing);
    }
    build_manifest(store, image, name)
}

fn stored_manifest(store: &Store, image: &Image, name: &str) -> Option<PushManifest> {
    let digest = image.manifest.as_ref()?;
    let bytes = store.read_small_blob(digest).ok()?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("mediaType")
        .and_then(|value| value.as_str())
        .unwrap_or(OCI_MANIFEST)
        .to_owned();
    let fetched = Fetched {
        bytes,
        media_type,
        digest: digest.clone(),
    };
    let Manifest::Image(parsed) = parse_manifest(&fetched, name).ok()? else {
        return None;
    };
    let complete = std::iter::once(&parsed.config)
        .chain(&parsed.layers)
        .all(|descriptor| store.has_blob(&descriptor.digest));
    complete.then_some(PushManifest { fetched, parsed })
}

fn build_manifest(store: &Store, image: &Image, name: &str) -> Result<PushManifest, RegistryError> {
    let store_error = |source: StoreError| RegistryError::Store {
        reference: name.to_owned(),
        source,
    };
    let config = Descriptor {
        media_type: OCI_CONFIG.to_owned(),
        digest: image.id.digest().clone(),
        size: store.blob_size(image.id.digest()).map_err(store_error)?,
        platform: None,
        annotations: None,
    };
    let layers = image
        .layers
        .iter()
        .map(|chain| {
            let blob = store.layer(chain).map_err(store_error)?.blob;
            Ok(Descriptor {
                media_type: layer_media_type(store, &blob).map_err(store_error)?,
                size: store.blob_size(&blob).map_err(store_error)?,
                digest: blob,
                platform: None,
                annotations: None,
            })
        })
        .collect::<Result<Vec<_>, RegistryError>>()?;
    let parsed = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_owned()),
        config,
        layers,
    };
    let bytes = serde_json::to_vec(&parsed).map_err(|err| RegistryError::BadManifest {
        reference: name.to_owned(),
        reason: err.to_string(),
    })?;
    let digest = Digest::sha256_of(&bytes);
    Ok(PushManifest {
        fetched: Fetched {
            bytes,
            media_type: OCI_MANIFEST.to_owned(),
            digest,
        },
        parsed,
    })
}

/// The OCI layer media type matching how the stored blob is compressed.
fn layer_media_type(store: &Store, blob: &Digest) -> Result<String, StoreError> {
    let mut head = [0u8; 8];
    let mut file = store.open_blob(blob)?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(source) => {
                return Err(StoreError::Io {
                    action: "read blob",
                    path: store.blob_path(blob)?,
                    source,
                })
            }
        }
    }
    Ok(match detect(&head[..filled]) {
        Compression::Gzip => OCI_LAYER_GZIP,
        Compression::Zstd => OCI_LAYER_ZSTD,
        Compression::None => OCI_LAYER_TAR,
    }
    .to_owned())
}

/// Uploads the layers, several at once, each once even if listed twice.
async fn upload_layers(
    repo: &Repository,
    store: &Store,
    layers: &[Descriptor],
    progress: &Progress,
) -> Result<(), RegistryError> {
    let mut unique: Vec<&Descriptor> = Vec::new();
    for layer in layers {
        if !unique.iter().any(|seen| seen.digest == layer.digest) {
            progress.report(&short_id(&layer.digest), ProgressStatus::Preparing);
            unique.push(layer);
        }
    }
    let mut tasks = JoinSet::new();
    let mut pending = unique.into_iter().cloned();
    loop {
        while tasks.len() < CONCURRENT_UPLOADS {
            let Some(layer) = pending.next() else { break };
            let (repo, store, progress) = (repo.clone(), store.clone(), progress.clone());
            tasks.spawn(async move { upload_blob(&repo, &store, &layer, &progress).await });
        }
        let Some(joined) = tasks.join_next().await else {
            return Ok(());
        };
        joined.map_err(|err| RegistryError::Local {
            reference: repo.names.reference.clone(),
            action: "upload a layer",
            detail: err.to_string(),
        })??;
    }
}

/// Uploads one blob unless the registry already has it.
async fn upload_blob(
    repo: &Repository,
    store: &Store,
    descriptor: &Descriptor,
    progress: &Progress,
) -> Result<(), RegistryError> {
    let id = short_id(&descriptor.digest);
    let what = format!("blob {}", descriptor.digest);
    let url = repo.url(&format!("blobs/{}", descriptor.digest));
    let head = repo.send(&url, |http| http.head(&url)).await?;
    if head.status().is_success() {
        progress.report(&id, ProgressStatus::LayerAlreadyExists);
        return Ok(());
    }
    if head.status() != StatusCode::NOT_FOUND {
        repo.check(head, &what).await?;
    }
    let start_url = repo.url("blobs/uploads/");
    let started = repo.send(&start_url, |http| http.post(&start_url)).await?;
    let mut location = upload_location(repo, repo.check(started, &what).await?, &what)?;
    let total = descriptor.size;
    let mut offset = 0;
    // Small blobs go up whole with the closing PUT; larger ones PATCH chunk by chunk.
    while total > CHUNK_SIZE && offset < total {
        let chunk = read_chunk(repo, store, &descriptor.digest, offset, CHUNK_SIZE).await?;
        let end = offset + chunk.len() as u64;
        let range = format!("{offset}-{}", end.saturating_sub(1));
        let patched = repo
            .send(&location, |http| {
                http.patch(&location)
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_RANGE, range.as_str())
                    .body(chunk.clone())
            })
            .await?;
        location = upload_location(repo, repo.check(patched, &what).await?, &what)?;
        offset = end;
        progress.report(
            &id,
            ProgressStatus::Pushing {
                current: offset,
                total,
            },
        );
    }
    let body = if offset < total {
        read_chunk(repo, store, &descriptor.digest, offset, total - offset).await?
    } else {
        bytes_empty()
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let finish_url = format!("{location}{separator}digest={}", descriptor.digest);
    let finished = repo
        .send(&finish_url, |http| {
            http.put(&finish_url)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body.clone())
        })
        .await?;
    repo.check(finished, &what).await?;
    progress.report(
        &id,
        ProgressStatus::Pushing {
            current: total,
            total,
        },
    );
    progress.report(&id, ProgressStatus::Pushed);
    Ok(())
}

fn bytes_empty() -> Bytes {
    Bytes::new()
}

/// The `Location` an upload continues at.
fn upload_location(
    repo: &Repository,
    response: reqwest::Response,
    what: &str,
) -> Result<String, RegistryError> {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(|location| repo.absolute(location))
        .ok_or_else(|| RegistryError::Status {
            what: what.to_owned(),
            reference: repo.names.reference.clone(),
            registry: repo.names.registry.clone(),
            status: response.status().as_u16(),
            detail: ": the upload answer has no Location".to_owned(),
        })
}

/// Reads `length` bytes of a stored blob from `offset`.
async fn read_chunk(
    repo: &Repository,
    store: &Store,
    digest: &Digest,
    offset: u64,
    length: u64,
) -> Result<Bytes, RegistryError> {
    let (store, digest) = (store.clone(), digest.clone());
    let read = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, StoreError> {
        let mut file = store.open_blob(&digest)?;
        let io_error = |source| StoreError::Io {
            action: "read blob",
            path: store.blob_path(&digest).unwrap_or_default(),
            source,
        };
        file.seek(SeekFrom::Start(offset)).map_err(io_error)?;
        let mut chunk = Vec::new();
        file.take(length)
            .read_to_end(&mut chunk)
            .map_err(io_error)?;
        Ok(chunk)
    });
    let reference = repo.names.reference.clone();
    let chunk = read
        .await
        .map_err(|err| RegistryError::Local {
            reference: reference.clone(),
            action: "read a blob to upload",
            detail: err.to_string(),
        })?
        .map_err(|source| RegistryError::Store { reference, source })?;
    Ok(Bytes::from(chunk))
}

/// `PUT /v2/<name>/manifests/<tag>`.
async fn put_manifest(
    repo: &Repository,
    tag_or_digest: &str,
    manifest: &Fetched,
) -> Result<(), RegistryError> {
    let url = repo.url(&format!("manifests/{tag_or_digest}"));
    let response = repo
        .send(&url, |http| {
            http.put(&url)
                .header(reqwest::header::CONTENT_TYPE, manifest.media_type.as_str())
                .body(manifest.bytes.clone())
        })
        .await?;
    repo.check(response, &format!("manifest {tag_or_digest}"))
        .await?;
    Ok(())
}
