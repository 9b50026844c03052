//! Image archives as `docker save` writes them and `docker load` reads them.
//!
//! Two layouts exist, often in the same tar: the legacy one (`manifest.json` listing
//! each image's `Config`, `RepoTags` and `Layers` paths, older archives adding
//! `<id>/layer.tar` directories and symlinks between duplicate layers) and the OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`, image names in the
//! `io.containerd.image.name` / `org.opencontainers.image.ref.name` annotations).
//! Loading prefers `manifest.json` when present, as Docker does, and reads either
//! layout otherwise; [`save`] writes both, as Docker 25 and later do.
//!
//! Loading is all or nothing for what users see: every file is streamed into the blob
//! store and every layer is unpacked and checked against the config's `diff_ids`
//! first; image records and then tags are only written once all images of the
//! archive verified. A broken archive leaves at most unreferenced blobs and layers,
//! which `Store::prune` reclaims.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Seek, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::import::{host_architecture, HOST_OS};
use super::reference::{Digest, Reference, ReferenceError};
use super::store::{ChainId, HashingReader, Image, ImageId, Store, StoreError};
use super::unpack;

const MANIFEST_JSON: &str = "manifest.json";
const INDEX_JSON: &str = "index.json";
const OCI_LAYOUT: &str = "oci-layout";
const REPOSITORIES: &str = "repositories";
const BLOBS_PREFIX: &str = "blobs/sha256/";
/// Symlinks followed when resolving one archive path.
const MAX_LINK_HOPS: usize = 16;

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Full image name, as containerd and Docker write it.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI ref name: a tag, or a full reference in some producers' archives.
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why an archive could not be loaded or written.
#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image archive is unreadable or truncated{after}: {source}")]
    Read { after: String, source: io::Error },
    #[error("image archive entry {path}: {source}")]
    Entry {
        path: String,
        source: Box<StoreError>,
    },
    #[error("image archive entry {path} is truncated: {got} of {expected} bytes")]
    Truncated {
        path: String,
        expected: u64,
        got: u64,
    },
    #[error("image archive is empty: it holds no files (is it the whole `docker save` output?)")]
    Empty,
    #[error("image archive is not a tar archive (plain, gzip or zstd compressed): {reason}")]
    NotATar { reason: String },
    #[error("image archive has no manifest.json or index.json: not a `docker save` or OCI layout archive, or cut short before them")]
    NotAnImageArchive,
    #[error("image archive lacks {path}, which {referenced_by} refers to")]
    MissingFile { path: String, referenced_by: String },
    #[error("image archive file {path} is not valid {what}: {reason}")]
    BadJson {
        path: String,
        what: &'static str,
        reason: String,
    },
    #[error("image archive file {path}: invalid image name {name:?}: {source}")]
    BadName {
        path: String,
        name: String,
        source: ReferenceError,
    },
    #[error("image config {config} lists {expected} layers but the archive gives {found}")]
    LayerCount {
        config: String,
        expected: usize,
        found: usize,
    },
    #[error("layer {index} ({path}) of image config {config}: {source}")]
    Layer {
        config: String,
        index: usize,
        path: String,
        source: Box<StoreError>,
    },
    #[error("image archive has no image for this platform ({os}/{arch}) in {path}")]
    NoMatchingPlatform {
        path: String,
        os: &'static str,
        arch: &'static str,
    },
    #[error("no images given to save")]
    NothingToSave,
    #[error("cannot write image archive: {0}")]
    Write(io::Error),
}

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// An image `load` stored, with the names it tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: ImageId,
    pub tags: Vec<Reference>,
}

/// One legacy `manifest.json` entry.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct LegacyEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    digest: Digest,
    #[serde(default)]
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexDoc {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// An image found in the archive, not yet verified.
#[derive(Debug)]
struct Candidate {
    /// Archive path of the config, for messages.
    config_path: String,
    config: Digest,
    manifest: Option<Digest>,
    /// (archive path, blob) per layer, base first.
    layers: Vec<(String, Digest)>,
    names: Vec<Reference>,
}

/// The files of an archive, each already stored as a blob.
#[derive(Debug, Default)]
struct ArchiveFiles {
    files: HashMap<String, Digest>,
    /// Symlinks and hard links: path → target path, both archive-relative.
    links: HashMap<String, String>,
}

impl ArchiveFiles {
    fn contains(&self, path: &str) -> bool {
        self.resolve(path).is_some()
    }

    /// The blob stored for `path`, following links.
    fn resolve(&self, path: &str) -> Option<&Digest> {
        let mut current = clean_path(path)?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(digest) = self.files.get(&current) {
                return Some(digest);
            }
            current = self.links.get(&current)?.clone();
        }
        None
    }

    fn require(&self, path: &str, referenced_by: &str) -> Result<Digest> {
        self.resolve(path)
            .cloned()
            .ok_or_else(|| ArchiveError::MissingFile {
                path: path.to_owned(),
                referenced_by: referenced_by.to_owned(),
            })
    }

    /// The blob for an OCI descriptor: `blobs/sha256/<hex>` in the archive.
    fn require_descriptor(&self, descriptor: &Descriptor, referenced_by: &str) -> Result<Digest> {
        let path = blob_path(&descriptor.digest);
        self.require(&path, referenced_by)
    }
}

/// Loads every image of a `docker save` or OCI layout archive (plain, gzip or zstd)
/// into `store` and tags them with the names the archive carries.
pub fn load(store: &Store, reader: impl Read) -> Result<Vec<LoadedImage>> {
    let _session = store.write_session()?;
    let stream = decompressed(reader)?;
    let files = store_archive_files(store, stream)?;
    let candidates = if files.contains(MANIFEST_JSON) {
        legacy_candidates(store, &files)?
    } else if files.contains(INDEX_JSON) {
        oci_candidates(store, &files)?
    } else {
        return Err(ArchiveError::NotAnImageArchive);
    };
    let mut verified = Vec::new();
    for candidate in candidates {
        let chains = unpack_candidate_layers(store, &candidate)?;
        verified.push((candidate, chains));
    }
    let mut loaded = Vec::new();
    let mut tags = Vec::new();
    for (candidate, chains) in verified {
        let id = store.add_image(&candidate.config, candidate.manifest.as_ref(), &chains)?;
        tags.extend(
            candidate
                .names
                .iter()
                .map(|name| (name.clone(), id.clone())),
        );
        loaded.push(LoadedImage {
            id,
            tags: candidate.names,
        });
    }
    store.tag_all(&tags)?;
    Ok(loaded)
}

fn decompressed<'r>(reader: impl Read + 'r) -> Result<Box<dyn Read + 'r>> {
    crate::image::store::decompress(reader).map_err(|err| ArchiveError::Read {
        after: String::new(),
        source: io::Error::other(err.to_string()),
    })
}

/// Streams every regular file of the archive into the blob store. Files under
/// `blobs/sha256/` must match the digest their name claims.
fn store_archive_files(store: &Store, stream: impl Read) -> Result<ArchiveFiles> {
    let mut archive = tar::Archive::new(stream);
    let mut files = ArchiveFiles::default();
    let mut last: Option<String> = None;
    let read_error = |last: &Option<String>, source: io::Error| match last {
        // Nothing read yet: the stream does not start like a tar archive.
        None => ArchiveError::NotATar {
            reason: printable(&source.to_string()),
        },
        Some(path) => ArchiveError::Read {
            after: format!(" after entry {path}"),
            source,
        },
    };
    let entries = archive
        .entries()
        .map_err(|source| read_error(&last, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| read_error(&last, source))?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        last = Some(raw_path.clone());
        let Some(path) = clean_path(&raw_path) else {
            continue;
        };
        store_archive_entry(store, entry, &path, &mut files)?;
    }
    if last.is_none() {
        return Err(ArchiveError::Empty);
    }
    Ok(files)
}

/// `text` without control characters or undecodable bytes, which a damaged header's
/// fields bring into the tar reader's messages, and at most 120 characters long.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c == char::REPLACEMENT_CHARACTER {
                '?'
            } else {
                c
            }
        })
        .take(120)
        .collect()
}

fn store_archive_entry<R: Read>(
    store: &Store,
    entry: tar::Entry<'_, R>,
    path: &str,
    files: &mut ArchiveFiles,
) -> Result<()> {
    let kind = entry.header().entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        let target = entry
            .link_name_bytes()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        let resolved = if kind.is_symlink() {
            join_relative(path, &target)
        } else {
            clean_path(&target)
        };
        if let Some(resolved) = resolved {
            files.links.insert(path.to_owned(), resolved);
        }
        return Ok(());
    }
    if !kind.is_file() && !kind.is_contiguous() {
        return Ok(());
    }
    let expected_size = entry.size();
    let claimed = path
        .strip_prefix(BLOBS_PREFIX)
        .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
    let mut counted = CountingReader {
        inner: entry,
        count: 0,
    };
    let stored = store.put_blob(&mut counted, claimed.as_ref());
    let digest = stored.map_err(|source| match source {
        StoreError::Io { source, .. } if is_read_failure(&source) => ArchiveError::Read {
            after: format!(" in entry {path}"),
            source,
        },
        // A cut-off archive ends the entry early; that, not its digest, is the news.
        StoreError::DigestMismatch { .. } if counted.count < expected_size => {
            ArchiveError::Truncated {
                path: path.to_owned(),
                expected: expected_size,
                got: counted.count,
            }
        }
        source => ArchiveError::Entry {
            path: path.to_owned(),
            source: Box::new(source),
        },
    })?;
    let got = store.blob_size(&digest)?;
    if got != expected_size {
        return Err(ArchiveError::Truncated {
            path: path.to_owned(),
            expected: expected_size,
            got,
        });
    }
    files.files.insert(path.to_owned(), digest);
    Ok(())
}

/// Counts the bytes read through it.
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Errors a decompressor or the tar reader raises on a damaged stream.
fn is_read_failure(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
    )
}

fn legacy_candidates(store: &Store, files: &ArchiveFiles) -> Result<Vec<Candidate>> {
    let manifest = files.require(MANIFEST_JSON, "the archive")?;
    let entries: Vec<LegacyEntry> = read_json(store, &manifest, MANIFEST_JSON, "manifest.json")?;
    entries
        .into_iter()
        .map(|entry| {
            let config = files.require(&entry.config, MANIFEST_JSON)?;
            let layers = entry
                .layers
                .iter()
                .map(|path| Ok((path.clone(), files.require(path, MANIFEST_JSON)?)))
                .collect::<Result<Vec<_>>>()?;
            let names = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|name| parse_name(name, MANIFEST_JSON))
                .collect::<Result<Vec<_>>>()?;
            Ok(Candidate {
                config_path: entry.config,
                config,
                manifest: None,
                layers,
                names,
            })
        })
        .collect()
}

fn oci_candidates(store: &Store, files: &ArchiveFiles) -> Result<Vec<Candidate>> {
    let index_blob = files.require(INDEX_JSON, "the archive")?;
    let index: IndexDoc = read_json(store, &index_blob, INDEX_JSON, "OCI image index")?;
    let mut candidates = Vec::new();
    for descriptor in &index.manifests {
        let names = descriptor_names(descriptor)?;
        let manifest = pick_manifest(store, files, descriptor)?;
        candidates.push(manifest_candidate(store, files, &manifest, names)?);
    }
    Ok(candidates)
}

/// The names an index entry gives its image: the containerd name, else a ref name
/// that is a full reference (a bare tag names nothing on its own).
fn descriptor_names(descriptor: &Descriptor) -> Result<Vec<Reference>> {
    let annotations = descriptor.annotations.clone().unwrap_or_default();
    let name = annotations.get(ANNOTATION_IMAGE_NAME).or_else(|| {
        annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|name| name.contains('/') || name.contains(':'))
    });
    name.map(|name| parse_name(name, INDEX_JSON))
        .into_iter()
        .collect()
}

/// Follows nested indexes down to one image manifest, choosing this host's platform.
fn pick_manifest(
    store: &Store,
    files: &ArchiveFiles,
    descriptor: &Descriptor,
) -> Result<Descriptor> {
    let mut current = descriptor.clone();
    for _ in 0..MAX_LINK_HOPS {
        let media = current.media_type.as_deref().unwrap_or(MEDIA_MANIFEST);
        if media != MEDIA_INDEX && media != MEDIA_DOCKER_MANIFEST_LIST {
            return Ok(current);
        }
        let path = blob_path(&current.digest);
        let blob = files.require_descriptor(&current, INDEX_JSON)?;
        let nested: IndexDoc = read_json(store, &blob, &path, "OCI image index")?;
        current = nested
            .manifests
            .into_iter()
            .find(|candidate| {
                matches_host(candidate) && files.contains(&blob_path(&candidate.digest))
            })
            .ok_or(ArchiveError::NoMatchingPlatform {
                path,
                os: HOST_OS,
                arch: host_architecture(),
            })?;
    }
    Ok(current)
}

fn matches_host(descriptor: &Descriptor) -> bool {
    descriptor.platform.as_ref().is_none_or(|platform| {
        platform.os == HOST_OS && platform.architecture == host_architecture()
    })
}

fn manifest_candidate(
    store: &Store,
    files: &ArchiveFiles,
    descriptor: &Descriptor,
    names: Vec<Reference>,
) -> Result<Candidate> {
    let manifest_path = blob_path(&descriptor.digest);
    let manifest_blob = files.require_descriptor(descriptor, INDEX_JSON)?;
    let manifest: ManifestDoc =
        read_json(store, &manifest_blob, &manifest_path, "OCI image manifest")?;
    let config = files.require_descriptor(&manifest.config, &manifest_path)?;
    let layers = manifest
        .layers
        .iter()
        .map(|layer| {
            Ok((
                blob_path(&layer.digest),
                files.require_descriptor(layer, &manifest_path)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Candidate {
        config_path: blob_path(&manifest.config.digest),
        config,
        manifest: Some(manifest_blob),
        layers,
        names,
    })
}

#[derive(Deserialize)]
struct ConfigRootFs {
    rootfs: RootFsDoc,
}

#[derive(Deserialize)]
struct RootFsDoc {
    diff_ids: Vec<Digest>,
}

/// Unpacks a candidate's layers, each verified against the config's diff IDs.
fn unpack_candidate_layers(store: &Store, candidate: &Candidate) -> Result<Vec<ChainId>> {
    let config: ConfigRootFs = read_json(
        store,
        &candidate.config,
        &candidate.config_path,
        "image config",
    )?;
    let diff_ids = config.rootfs.diff_ids;
    if diff_ids.len() != candidate.layers.len() {
        return Err(ArchiveError::LayerCount {
            config: candidate.config_path.clone(),
            expected: diff_ids.len(),
            found: candidate.layers.len(),
        });
    }
    let mut chains: Vec<ChainId> = Vec::new();
    for (index, ((path, blob), diff_id)) in candidate.layers.iter().zip(&diff_ids).enumerate() {
        let chain = store
            .ensure_layer(blob, diff_id, chains.last())
            .map_err(|source| ArchiveError::Layer {
                config: candidate.config_path.clone(),
                index,
                path: path.clone(),
                source: Box::new(source),
            })?;
        chains.push(chain);
    }
    Ok(chains)
}

fn read_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    blob: &Digest,
    path: &str,
    what: &'static str,
) -> Result<T> {
    let bytes = store.read_small_blob(blob)?;
    serde_json::from_slice(&bytes).map_err(|err| ArchiveError::BadJson {
        path: path.to_owned(),
        what,
        reason: err.to_string(),
    })
}

fn parse_name(name: &str, path: &str) -> Result<Reference> {
    Reference::parse(name).map_err(|source| ArchiveError::BadName {
        path: path.to_owned(),
        name: name.to_owned(),
        source,
    })
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

/// Normalizes an archive path: no leading `/` or `./`, no `.` parts; `None` for the
/// root itself or a path that climbs out with `..`.
fn clean_path(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Resolves a symlink target relative to the directory of the link itself.
fn join_relative(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return clean_path(target);
    }
    let dir = link.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
    clean_path(&format!("{dir}/{target}"))
}

/// Writes the images `names` resolve to as one archive `docker load` accepts: OCI
/// layout files plus `manifest.json` and `repositories`, layers as uncompressed tars.
/// Names that are tags are recorded in the archive; IDs save the image unnamed.
pub fn save(store: &Store, names: &[&str], writer: impl Write) -> Result<()> {
    let selected = select_images(store, names)?;
    let mut out = ArchiveWriter::new(store, writer)?;
    let mut index = Vec::new();
    let mut legacy = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (image, tags) in &selected {
        let written = out.write_image(image)?;
        index.extend(index_entries(&written.manifest, tags));
        let top_layer = written.layers.last().map(|d| d.hex().to_owned());
        for tag in tags {
            if let (Some(name), Some(top)) = (tag.tag(), &top_layer) {
                let repo = familiar_repository(tag);
                repositories
                    .entry(repo)
                    .or_default()
                    .insert(name.to_owned(), top.clone());
            }
        }
        legacy.push(LegacyEntry {
            config: blob_path(image.id.digest()),
            repo_tags: Some(
                tags.iter()
                    .filter(|tag| tag.tag().is_some())
                    .map(Reference::familiar)
                    .collect(),
            ),
            layers: written.layers.iter().map(blob_path).collect(),
        });
    }
    let index = IndexDoc {
        schema_version: 2,
        media_type: Some(MEDIA_INDEX.to_owned()),
        manifests: index,
    };
    out.write_json(INDEX_JSON, &index)?;
    out.write_json(MANIFEST_JSON, &legacy)?;
    out.write_json(
        OCI_LAYOUT,
        &serde_json::json!({"imageLayoutVersion": "1.0.0"}),
    )?;
    out.write_json(REPOSITORIES, &repositories)?;
    out.finish()
}

/// Resolves the names, grouping tags per image in the order given.
fn select_images(store: &Store, names: &[&str]) -> Result<Vec<(Image, Vec<Reference>)>> {
    if names.is_empty() {
        return Err(ArchiveError::NothingToSave);
    }
    let mut selected: Vec<(Image, Vec<Reference>)> = Vec::new();
    for name in names {
        let image = store.resolve(name)?;
        let tag = Reference::parse(name)
            .ok()
            .filter(|reference| reference.tag().is_some())
            .filter(|reference| {
                store
                    .resolve_reference(reference)
                    .ok()
                    .flatten()
                    .is_some_and(|found| found.id == image.id)
            });
        match selected.iter_mut().find(|(known, _)| known.id == image.id) {
            Some((_, tags)) => tags.extend(tag.filter(|tag| !tags.contains(tag))),
            None => selected.push((image, tag.into_iter().collect())),
        }
    }
    Ok(selected)
}

/// `alpine` for Docker Hub official images, `user/app` or `host/app` otherwise.
fn familiar_repository(reference: &Reference) -> String {
    let familiar = reference.familiar();
    let suffix_len = reference.tag().map(|tag| tag.len() + 1).unwrap_or(0)
        + reference
            .digest()
            .map(|digest| digest.to_string().len() + 1)
            .unwrap_or(0);
    familiar
        .get(..familiar.len().saturating_sub(suffix_len))
        .unwrap_or(&familiar)
        .to_owned()
}

fn index_entries(manifest: &Descriptor, tags: &[Reference]) -> Vec<Descriptor> {
    if tags.is_empty() {
        return vec![manifest.clone()];
    }
    tags.iter()
        .map(|tag| {
            let mut annotations = BTreeMap::new();
            annotations.insert(ANNOTATION_IMAGE_NAME.to_owned(), tag.to_string());
            if let Some(name) = tag.tag() {
                annotations.insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
            }
            Descriptor {
                annotations: Some(annotations),
                ..manifest.clone()
            }
        })
        .collect()
}

/// What was written for one image.
struct WrittenImage {
    manifest: Descriptor,
    /// Diff IDs, which name the uncompressed layer blobs in the archive.
    layers: Vec<Digest>,
}

/// A tar being written, remembering which blobs it already holds.
struct ArchiveWriter<'s, W: Write> {
    store: &'s Store,
    tar: tar::Builder<W>,
    written: HashSet<Digest>,
}

impl<'s, W: Write> ArchiveWriter<'s, W> {
    fn new(store: &'s Store, writer: W) -> Result<ArchiveWriter<'s, W>> {
        let mut out = ArchiveWriter {
            store,
            tar: tar::Builder::new(writer),
            written: HashSet::new(),
        };
        out.append_dir("blobs")?;
        out.append_dir("blobs/sha256")?;
        Ok(out)
    }

    fn write_image(&mut self, image: &Image) -> Result<WrittenImage> {
        let config = image.id.digest();
        let config_size = self.store.blob_size(config)?;
        self.append_blob_file(config)?;
        let mut layers = Vec::new();
        let mut layer_descriptors = Vec::new();
        for chain in &image.layers {
            let info = self.store.layer(chain)?;
            let size = self.append_layer(&info.blob, &info.diff_id)?;
            layer_descriptors.push(descriptor(MEDIA_LAYER_TAR, &info.diff_id, size));
            layers.push(info.diff_id);
        }
        let manifest = ManifestDoc {
            schema_version: 2,
            media_type: Some(MEDIA_MANIFEST.to_owned()),
            config: descriptor(MEDIA_CONFIG, config, config_size),
            layers: layer_descriptors,
        };
        let bytes = to_json(&manifest)?;
        let digest = Digest::sha256_of(&bytes);
        self.append_bytes(&blob_path(&digest), &bytes)?;
        self.written.insert(digest.clone());
        Ok(WrittenImage {
            manifest: descriptor(MEDIA_MANIFEST, &digest, bytes.len() as u64),
            layers,
        })
    }

    /// Writes a stored blob under its own digest, once per archive.
    fn append_blob_file(&mut self, digest: &Digest) -> Result<()> {
        if !self.written.insert(digest.clone()) {
            return Ok(());
        }
        let size = self.store.blob_size(digest)?;
        let file = self.store.open_blob(digest)?;
        self.append_reader(&blob_path(digest), size, file)
    }

    /// Writes a layer as an uncompressed tar named by its diff ID; returns its size.
    fn append_layer(&mut self, blob: &Digest, diff_id: &Digest) -> Result<u64> {
        if blob == diff_id {
            self.append_blob_file(blob)?;
            return Ok(self.store.blob_size(blob)?);
        }
        let mut plain = self.decompress_to_temp(blob, diff_id)?;
        let size = plain.metadata().map_err(ArchiveError::Write)?.len();
        if self.written.insert(diff_id.clone()) {
            plain.rewind().map_err(ArchiveError::Write)?;
            self.append_reader(&blob_path(diff_id), size, plain)?;
        }
        Ok(size)
    }

    /// A compressed layer must be expanded before its tar header (which needs the
    /// size) can be written; the result is checked against the diff ID on the way.
    fn decompress_to_temp(&self, blob: &Digest, diff_id: &Digest) -> Result<std::fs::File> {
        let mut temp = tempfile::Builder::new()
            .prefix(crate::image::store::TEMP_PREFIX)
            .tempfile_in(self.store.root())
            .map_err(ArchiveError::Write)?;
        let source = self.store.open_blob(blob)?;
        let stream = unpack_stream(source).map_err(|source| StoreError::Unpack {
            diff_id: diff_id.clone(),
            source,
        })?;
        let mut hashing = HashingReader::new(stream);
        io::copy(&mut hashing, temp.as_file_mut()).map_err(ArchiveError::Write)?;
        let actual = hashing.digest();
        if actual != *diff_id {
            return Err(StoreError::DiffIdMismatch {
                expected: diff_id.clone(),
                actual,
            }
            .into());
        }
        // The open handle keeps the content; the name is not needed any more.
        Ok(temp.into_file())
    }

    fn write_json<T: Serialize>(&mut self, path: &str, value: &T) -> Result<()> {
        let bytes = to_json(value)?;
        self.append_bytes(path, &bytes)
    }

    fn append_dir(&mut self, path: &str) -> Result<()> {
        let mut header = archive_header(tar::EntryType::Directory, 0o755, 0);
        self.tar
            .append_data(&mut header, path, io::empty())
            .map_err(ArchiveError::Write)
    }

    fn append_bytes(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        self.append_reader(path, bytes.len() as u64, bytes)
    }

    fn append_reader(&mut self, path: &str, size: u64, reader: impl Read) -> Result<()> {
        let mut header = archive_header(tar::EntryType::Regular, 0o644, size);
        self.tar
            .append_data(&mut header, path, reader)
            .map_err(ArchiveError::Write)
    }

    fn finish(mut self) -> Result<()> {
        self.tar.finish().map_err(ArchiveError::Write)?;
        self.tar
            .into_inner()
            .and_then(|mut writer| writer.flush())
            .map_err(ArchiveError::Write)
    }
}

fn unpack_stream<'r>(reader: impl Read + 'r) -> Result<Box<dyn Read + 'r>, unpack::UnpackError> {
    crate::image::store::decompress(reader)
}

/// Deterministic entries: owned by root, dated at the epoch.
fn archive_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: Some(media_type.to_owned()),
        digest: digest.clone(),
        size,
        annotations: None,
        platform: None,
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|err| ArchiveError::Write(io::Error::other(err)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::store::test_support::temp_store as store;
    use crate::image::store::test_support::{
        add_image, config_json, gzip, sample_layers, LayerBuilder,
    };
    use crate::image::store::ImageSummary;

    fn reference(text: &str) -> Reference {
        Reference::parse(text).expect("reference")
    }

    fn chains(store: &Store, id: &ImageId) -> Vec<ChainId> {
        store.image(id).expect("image").layers
    }

    /// Names of the entries of an (uncompressed) archive.
    fn entry_names(archive: &[u8]) -> Vec<String> {
        let mut tar = tar::Archive::new(archive);
        tar.entries()
            .expect("entries")
            .map(|entry| {
                let entry = entry.expect("entry");
                String::from_utf8_lossy(&entry.path_bytes()).into_owned()
            })
            .collect()
    }

    fn assert_store_empty(store: &Store) {
        assert!(store.list().expect("list").is_empty(), "no image record");
        assert!(store.tags().expect("tags").is_empty(), "no tag");
    }

    /// A pre-Docker-25 archive: `<id>/layer.tar` directories, the third layer a
    /// symlink to the first (same content), config as `<hex>.json`.
    fn legacy_archive(layers: &[Vec<u8>; 2]) -> (Vec<u8>, Digest) {
        let all = [layers[0].clone(), layers[1].clone(), layers[0].clone()];
        let config = config_json(&all, &["sh"]);
        let config_digest = Digest::sha256_of(&config);
        let manifest = serde_json::json!([{
            "Config": format!("{}.json", config_digest.hex()),
            "RepoTags": ["legacy:1"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
        }]);
        let tar = LayerBuilder::new()
            .dir("aaa")
            .file("aaa/VERSION", b"1.0")
            .file("aaa/layer.tar", &layers[0])
            .file("bbb/layer.tar", &layers[1])
            .dir("ccc")
            .symlink("ccc/layer.tar", "../aaa/layer.tar")
            .file(&format!("{}.json", config_digest.hex()), &config)
            .file("repositories", b"{\"legacy\":{\"1\":\"ccc\"}}")
            .file("manifest.json", manifest.to_string().as_bytes())
            .build();
        (tar, config_digest)
    }

    /// An OCI-layout-only archive with gzip layers, named through annotations.
    fn oci_archive(layers: &[Vec<u8>]) -> (Vec<u8>, Digest) {
        let config = config_json(layers, &["oci"]);
        let config_digest = Digest::sha256_of(&config);
        let mut builder =
            LayerBuilder::new().file("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}");
        let mut layer_descriptors = Vec::new();
        for layer in layers {
            let compressed = gzip(layer);
            let digest = Digest::sha256_of(&compressed);
            builder = builder.file(&blob_path(&digest), &compressed);
            layer_descriptors.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest.to_string(),
                "size": compressed.len(),
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": layer_descriptors,
        })
        .to_string();
        let manifest_digest = Digest::sha256_of(manifest.as_bytes());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": MEDIA_MANIFEST, "digest": manifest_digest.to_string(), "size": manifest.len(),
                 "annotations": {ANNOTATION_IMAGE_NAME: "docker.io/library/oci:1", ANNOTATION_REF_NAME: "1"}},
                {"mediaType": MEDIA_MANIFEST, "digest": manifest_digest.to_string(), "size": manifest.len(),
                 "annotations": {ANNOTATION_REF_NAME: "example.com/team/oci:2"}},
            ],
        });
        let tar = builder
            .file(&blob_path(&config_digest), &config)
            .file(&blob_path(&manifest_digest), manifest.as_bytes())
            .file("index.json", index.to_string().as_bytes())
            .build();
        (tar, config_digest)
    }

    #[test]
    fn save_then_load_gives_the_same_image_and_layers() {
        let (_a, source) = store();
        let app = add_image(&source, &sample_layers(), &["app"]);
        let base = add_image(&source, &sample_layers()[..1], &["base"]);
        source.tag(&reference("app:1"), &app).expect("tag");
        source
            .tag(&reference("registry.local:5000/app:2"), &app)
            .expect("tag");
        let mut archive = Vec::new();
        save(
            &source,
            &["app:1", "registry.local:5000/app:2", base.short()],
            &mut archive,
        )
        .expect("save");

        let names = entry_names(&archive);
        for expected in ["manifest.json", "index.json", "oci-layout", "repositories"] {
            assert!(
                names.iter().any(|name| name == expected),
                "{expected} in {names:?}"
            );
        }
        for layer in sample_layers() {
            let path = blob_path(&Digest::sha256_of(&layer));
            assert!(names.contains(&path), "uncompressed layer {path}");
        }

        let (_b, target) = store();
        let loaded = load(&target, &archive[..]).expect("load");
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].id, app);
        assert_eq!(
            loaded[0].tags,
            [reference("app:1"), reference("registry.local:5000/app:2")]
        );
        assert_eq!(loaded[1].id, base);
        assert!(loaded[1].tags.is_empty(), "saved by ID, loaded unnamed");
        assert_eq!(chains(&target, &app), chains(&source, &app));
        assert_eq!(chains(&target, &base), chains(&source, &base));
        assert_eq!(target.resolve("app:1").expect("tag").id, app);
        let top = target
            .layer_dirs(&target.image(&app).expect("image"))
            .expect("dirs");
        assert!(top[0].join("opt/app/new").is_file());
    }

    #[test]
    fn saved_manifest_json_and_repositories_use_familiar_names() {
        let (_dir, store) = store();
        let id = add_image(&store, &sample_layers(), &[]);
        store.tag(&reference("app:1"), &id).expect("tag");
        let mut archive = Vec::new();
        save(&store, &["app:1"], &mut archive).expect("save");
        let mut tar = tar::Archive::new(&archive[..]);
        let mut manifest = String::new();
        let mut repositories = String::new();
        for entry in tar.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            match path.as_str() {
                "manifest.json" => entry.read_to_string(&mut manifest).map(drop),
                "repositories" => entry.read_to_string(&mut repositories).map(drop),
                _ => Ok(()),
            }
            .expect("read");
        }
        let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("json");
        assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["app:1"]));
        assert_eq!(
            manifest[0]["Config"],
            serde_json::json!(blob_path(id.digest()))
        );
        assert_eq!(manifest[0]["Layers"].as_array().map(Vec::len), Some(3));
        let repositories: serde_json::Value = serde_json::from_str(&repositories).expect("json");
        assert!(repositories["app"]["1"].is_string(), "{repositories}");
    }

    #[test]
    fn loads_legacy_archives_with_symlinked_layers() {
        let (_dir, store) = store();
        let layers = [
            LayerBuilder::new().file("etc/a", b"a").build(),
            LayerBuilder::new()
                .file("etc/.wh.a", b"")
                .file("etc/b", b"b")
                .build(),
        ];
        let (archive, config) = legacy_archive(&layers);
        let loaded = load(&store, &archive[..]).expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].id.digest(), &config);
        assert_eq!(loaded[0].tags, [reference("legacy:1")]);
        let image = store.resolve("legacy:1").expect("tagged");
        let dirs = store.layer_dirs(&image).expect("dirs");
        assert_eq!(dirs.len(), 3);
        assert!(
            dirs[0].join("etc/a").is_file(),
            "the top layer re-adds etc/a"
        );
    }

    #[test]
    fn loads_gzip_oci_layout_archives_named_by_annotations() {
        let (_dir, store) = store();
        let layers = sample_layers();
        let (archive, config) = oci_archive(&layers);
        let loaded = load(&store, &gzip(&archive)[..]).expect("load");
        assert_eq!(loaded.len(), 2, "one per index entry");
        assert!(loaded.iter().all(|image| image.id.digest() == &config));
        assert_eq!(
            store.resolve("oci:1").expect("containerd name").id.digest(),
            &config
        );
        assert!(
            store.resolve("example.com/team/oci:2").is_ok(),
            "full ref name"
        );
        let image = store.resolve("oci:1").expect("image");
        assert!(
            image.manifest.is_some(),
            "the archive's manifest is recorded"
        );

        // Saving decompresses the gzip layers; loading that again changes nothing.
        let mut saved = Vec::new();
        save(&store, &["oci:1"], &mut saved).expect("save");
        let (_other, fresh) = self::store();
        let again = load(&fresh, &saved[..]).expect("load saved");
        assert_eq!(again[0].id, image.id);
        assert_eq!(chains(&fresh, &image.id), image.layers);
    }

    #[test]
    fn a_missing_layer_leaves_the_store_unchanged() {
        let (_dir, store) = store();
        let (archive, _) = legacy_archive(&[
            LayerBuilder::new().file("a", b"a").build(),
            LayerBuilder::new().file("b", b"b").build(),
        ]);
        // Rebuild without bbb/layer.tar.
        let mut tar = tar::Archive::new(&archive[..]);
        let mut builder = tar::Builder::new(Vec::new());
        for entry in tar.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            if entry.path_bytes().as_ref() == b"bbb/layer.tar" {
                continue;
            }
            let mut header = entry.header().clone();
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            if header.entry_type().is_symlink() {
                let target = entry
                    .link_name()
                    .expect("link")
                    .expect("target")
                    .into_owned();
                builder
                    .append_link(&mut header, &path, target)
                    .expect("append");
            } else {
                builder
                    .append_data(&mut header, &path, &data[..])
                    .expect("append");
            }
        }
        let broken = builder.into_inner().expect("tar");
        let err = load(&store, &broken[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image archive lacks bbb/layer.tar, which manifest.json refers to"
        );
        assert_store_empty(&store);
    }

    #[test]
    fn a_blob_that_does_not_match_its_name_is_refused() {
        let (_dir, store) = store();
        let wrong = Digest::sha256_of(b"not this");
        let archive = LayerBuilder::new()
            .file(&blob_path(&wrong), b"something else")
            .file("index.json", b"{\"schemaVersion\":2,\"manifests\":[]}")
            .build();
        let err = load(&store, &archive[..]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("image archive entry {}", blob_path(&wrong))),
            "{err}"
        );
        assert_store_empty(&store);
    }

    #[test]
    fn a_layer_that_does_not_match_the_config_leaves_the_store_unchanged() {
        let (_dir, store) = store();
        let layers = [
            LayerBuilder::new().file("a", b"a").build(),
            LayerBuilder::new().file("b", b"b").build(),
        ];
        let config = config_json(&layers, &[]);
        let config_digest = Digest::sha256_of(&config);
        let manifest = serde_json::json!([{
            "Config": "config.json", "RepoTags": ["bad:1"],
            "Layers": ["one.tar", "two.tar"],
        }]);
        let archive = LayerBuilder::new()
            .file("config.json", &config)
            .file("one.tar", &layers[0])
            .file("two.tar", &layers[0])
            .file("manifest.json", manifest.to_string().as_bytes())
            .build();
        let err = load(&store, &archive[..]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("layer 1 (two.tar) of image config config.json"),
            "{err}"
        );
        assert!(
            matches!(&err, ArchiveError::Layer { source, .. } if matches!(**source, StoreError::DiffIdMismatch { .. }))
        );
        assert_store_empty(&store);
        assert!(store.has_blob(&config_digest), "blobs stay until pruned");
        store.prune(&[]).expect("prune");
        assert!(!store.has_blob(&config_digest));
    }

    #[test]
    fn bad_json_is_named() {
        let (_dir, store) = store();
        let archive = LayerBuilder::new()
            .file("manifest.json", b"[{\"Config\":")
            .build();
        let err = load(&store, &archive[..]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("image archive file manifest.json is not valid manifest.json"),
            "{err}"
        );
        assert_store_empty(&store);
    }

    /// A store holding one tagged image, and what `list` shows of it.
    fn store_with_an_image() -> (tempfile::TempDir, Store, Vec<ImageSummary>) {
        let (dir, store) = store();
        let id = add_image(&store, &sample_layers(), &["kept"]);
        store.tag(&reference("kept:1"), &id).expect("tag");
        let before = store.list().expect("list");
        (dir, store, before)
    }

    /// The failed load left the images, their tags and their layers as they were.
    fn assert_store_unchanged(store: &Store, before: &[ImageSummary]) {
        assert_eq!(store.list().expect("list"), before, "images and tags");
        let image = store
            .resolve("kept:1")
            .expect("the old image still resolves");
        for dir in store.layer_dirs(&image).expect("layers") {
            assert!(dir.is_dir(), "layer {} is still there", dir.display());
        }
    }

    #[test]
    fn a_truncated_archive_is_an_error() {
        let (_dir, store, before) = store_with_an_image();
        let (archive, _) = oci_archive(&sample_layers());
        // Cut inside an entry's header, inside its data, and inside the compressed stream.
        let compressed = gzip(&archive);
        let cuts: [(&[u8], &str); 4] = [
            (
                &archive[..archive.len() - 1100],
                "image archive is unreadable or truncated after entry",
            ),
            (&archive[..1600], "is truncated: 64 of "),
            (
                &compressed[..compressed.len() / 2],
                "image archive is unreadable or truncated in entry",
            ),
            (
                &archive[..700],
                "image archive is unreadable or truncated after entry oci-layout",
            ),
        ];
        for (input, want) in cuts {
            let err = load(&store, input).unwrap_err().to_string();
            assert!(err.contains(want), "cut at {}: {err}", input.len());
            assert_store_unchanged(&store, &before);
        }
        // Every other cut fails too (at a block boundary the tar ends early and the
        // image metadata is missing), and none changes the store.
        for cut in (0..archive.len() - 1024).step_by(509) {
            assert!(
                load(&store, &archive[..cut]).is_err(),
                "cut at {cut} must fail"
            );
        }
        assert_store_unchanged(&store, &before);
    }

    #[test]
    fn input_that_is_not_a_tar_is_named() {
        let (_dir, store, before) = store_with_an_image();
        let noise: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let inputs: [(&str, Vec<u8>); 3] = [
            ("text", b"hello, this is not a tar\n".to_vec()),
            ("noise", noise),
            ("gzip of text", gzip(b"just some text, not a tar at all\n")),
        ];
        for (name, input) in inputs {
            let err = load(&store, &input[..]).unwrap_err();
            assert!(matches!(err, ArchiveError::NotATar { .. }), "{name}: {err}");
            let text = err.to_string();
            assert!(
                text.starts_with("image archive is not a tar archive"),
                "{name}: {text}"
            );
            assert!(
                !text.contains(char::REPLACEMENT_CHARACTER) && !text.contains('\n'),
                "{name}: the message stays readable: {text:?}"
            );
            assert_store_unchanged(&store, &before);
        }
        for (name, input) in [("no bytes", Vec::new()), ("zero blocks", vec![0u8; 4096])] {
            let err = load(&store, &input[..]).unwrap_err();
            assert!(matches!(err, ArchiveError::Empty), "{name}: {err}");
            assert_store_unchanged(&store, &before);
        }
    }

    #[test]
    fn an_index_naming_a_missing_manifest_leaves_the_store_unchanged() {
        let (_dir, store, before) = store_with_an_image();
        let ghost = Digest::sha256_of(b"no such manifest");
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": MEDIA_MANIFEST, "digest": ghost.to_string(), "size": 10}],
        });
        let archive = LayerBuilder::new()
            .file("index.json", index.to_string().as_bytes())
            .build();
        let err = load(&store, &archive[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "image archive lacks {}, which index.json refers to",
                blob_path(&ghost)
            )
        );
        assert_store_unchanged(&store, &before);
    }

    #[test]
    fn an_archive_without_image_metadata_is_named() {
        let (_dir, store) = store();
        let archive = LayerBuilder::new().file("hello.txt", b"hi").build();
        let err = load(&store, &archive[..]).unwrap_err();
        assert!(matches!(err, ArchiveError::NotAnImageArchive), "{err}");
    }

    #[test]
    fn saving_nothing_or_an_unknown_image_fails() {
        let (_dir, store) = store();
        assert!(matches!(
            save(&store, &[], Vec::new()),
            Err(ArchiveError::NothingToSave)
        ));
        let err = save(&store, &["ghost:1"], Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "No such image: ghost:1");
    }

    #[test]
    fn archive_paths_are_normalized_and_links_resolved() {
        assert_eq!(clean_path("./a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(clean_path("/"), None);
        assert_eq!(clean_path("../x"), None);
        assert_eq!(
            join_relative("ccc/layer.tar", "../aaa/layer.tar").as_deref(),
            Some("aaa/layer.tar")
        );
        assert_eq!(join_relative("a/l", "/abs").as_deref(), Some("abs"));
    }
}
