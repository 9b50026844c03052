//! Image records (`images/<config hex>.json`) and the queries over them: resolve a
//! name or ID, list, inspect, remove.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::PathBuf;

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use super::layers::chain_id;
use super::tags::TagMap;
use super::{
    io_err, is_temp_name, read_json_file, sync_dir, write_json_file, ChainId, ImageId, Result,
    Store, StoreError,
};
use crate::image::reference::{Digest, Reference};

/// A stored image: its config (the ID), its manifest if one was received or made, and
/// its layers bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: ImageId,
    pub manifest: Option<Digest>,
    /// Chain IDs, base layer first.
    pub layers: Vec<ChainId>,
    /// `created` from the image config (RFC 3339), when present.
    pub created: Option<String>,
    /// Bytes of file content over all layers.
    pub size: u64,
}

/// One line of `docker images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub id: ImageId,
    pub tags: Vec<Reference>,
    pub created: Option<String>,
    pub size: u64,
}

/// What `docker image inspect` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDetails {
    pub image: Image,
    pub tags: Vec<Reference>,
    pub config: ImageConfiguration,
}

/// What [`Store::remove`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoveReport {
    pub untagged: Vec<Reference>,
    /// Set when the image record itself was deleted (its last name was removed).
    pub deleted: Option<ImageId>,
}

/// The parts of an image config the store relies on.
#[derive(Deserialize)]
struct ConfigHead {
    created: Option<String>,
    rootfs: RootFsHead,
}

#[derive(Deserialize)]
struct RootFsHead {
    diff_ids: Vec<Digest>,
}

impl Store {
    /// Records an image whose config blob and layers are already stored. The layers
    /// must be exactly the config's `rootfs.diff_ids`, in order.
    pub fn add_image(
        &self,
        config: &Digest,
        manifest: Option<&Digest>,
        layers: &[ChainId],
    ) -> Result<ImageId> {
        let head = self.config_head(config)?;
        if head.rootfs.diff_ids.len() != layers.len() {
            return Err(StoreError::LayerCount {
                config: config.clone(),
                expected: head.rootfs.diff_ids.len(),
                given: layers.len(),
            });
        }
        let size = self.check_layer_stack(&head.rootfs.diff_ids, layers)?;
        if let Some(manifest) = manifest {
            if !self.has_blob(manifest) {
                return Err(StoreError::BlobMissing(manifest.clone()));
            }
        }
        let image = Image {
            id: ImageId::new(config.clone()),
            manifest: manifest.cloned(),
            layers: layers.to_vec(),
            created: head.created,
            size,
        };
        let _lock = self.metadata_lock()?;
        write_json_file(&self.images_dir(), &record_name(&image.id), &image)?;
        Ok(image.id)
    }

    /// The image with exactly this ID.
    pub fn image(&self, id: &ImageId) -> Result<Image> {
        self.find_image(id)?
            .ok_or_else(|| StoreError::ImageNotFound(id.to_string()))
    }

    /// Every image record.
    pub fn images(&self) -> Result<Vec<Image>> {
        let dir = self.images_dir();
        let mut images = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let name = entry.file_name();
            if is_temp_name(&name) || !name.as_encoded_bytes().ends_with(b".json") {
                continue;
            }
            if let Some(image) = read_json_file(&entry.path())? {
                images.push(image);
            }
        }
        Ok(images)
    }

    /// Finds an image the way `docker image inspect` does: by reference first, then by
    /// full ID, then by a unique ID prefix (with or without `sha256:`).
    ///
    /// A missing name is reported as Docker does, with its default tag filled in
    /// (`No such image: busybox:latest`); a missing ID prefix as it was given.
    pub fn resolve(&self, query: &str) -> Result<Image> {
        let reference = Reference::parse(query).ok();
        if let Some(reference) = &reference {
            if let Some(image) = self.resolve_reference(reference)? {
                return Ok(image);
            }
        }
        match (self.resolve_id(query), reference) {
            (Err(StoreError::ImageNotFound(_)), Some(reference)) if !looks_like_id(query) => {
                Err(StoreError::ImageNotFound(reference.familiar()))
            }
            (result, _) => result,
        }
    }

    /// The image a reference names: a tag, or a manifest digest after `@`.
    pub fn resolve_reference(&self, reference: &Reference) -> Result<Option<Image>> {
        if let Some(id) = self.read_tags()?.get(&reference.to_string()) {
            return self.find_image(id);
        }
        let Some(digest) = reference.digest() else {
            return Ok(None);
        };
        let images = self.images()?;
        Ok(images
            .into_iter()
            .find(|image| image.manifest.as_ref() == Some(digest)))
    }

    /// Images with their tags, newest first, as `docker images` lists them.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let tags = self.read_tags()?;
        let mut summaries: Vec<ImageSummary> = self
            .images()?
            .into_iter()
            .map(|image| ImageSummary {
                tags: tags_of(&tags, &image.id),
                id: image.id,
                created: image.created,
                size: image.size,
            })
            .collect();
        summaries.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(summaries)
    }

    /// The record, tags and parsed config of an image.
    pub fn inspect(&self, query: &str) -> Result<ImageDetails> {
        let image = self.resolve(query)?;
        let tags = tags_of(&self.read_tags()?, &image.id);
        let config = self.config(&image)?;
        Ok(ImageDetails {
            image,
            tags,
            config,
        })
    }

    /// The parsed image config.
    pub fn config(&self, image: &Image) -> Result<ImageConfiguration> {
        let digest = image.id.digest();
        let bytes = self.read_small_blob(digest)?;
        ImageConfiguration::from_reader(&bytes[..]).map_err(|err| StoreError::InvalidConfig {
            digest: digest.clone(),
            reason: err.to_string(),
        })
    }

    /// The overlayfs lower directories of an image, top layer first.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>> {
        image
            .layers
            .iter()
            .rev()
            .map(|chain| {
                if self.has_layer(chain) {
                    Ok(self.layer_diff_dir(chain))
                } else {
                    Err(StoreError::LayerMissing(chain.clone()))
                }
            })
            .collect()
    }

    /// Removes a name, or an image with all its names, like `docker rmi`: a tag is
    /// untagged and the image deleted once it has no tag left; an ID deletes the image
    /// and its tags, which needs `force` if they span several repositories. Layers and
    /// blobs are reclaimed by [`Store::prune`].
    pub fn remove(&self, query: &str, force: bool) -> Result<RemoveReport> {
        let _lock = self.metadata_lock()?;
        let mut tags = self.read_tags()?;
        let by_tag = Reference::parse(query)
            .ok()
            .filter(|reference| tags.contains_key(&reference.to_string()));
        let mut report = RemoveReport::default();
        let id = match by_tag {
            Some(reference) => {
                let id = tags.remove(&reference.to_string());
                report.untagged.push(reference);
                id
            }
            None => {
                let image = self.resolve_id(query)?;
                let names = tags_of(&tags, &image.id);
                refuse_multi_repository_removal(&image.id, &names, force)?;
                tags.retain(|_, tagged| *tagged != image.id);
                report.untagged = names;
                Some(image.id)
            }
        };
        if let Some(id) = id {
            if tags_of(&tags, &id).is_empty() {
                self.delete_record(&id)?;
                report.deleted = Some(id);
            }
        }
        self.write_tags(&tags)?;
        Ok(report)
    }

    /// Deletes an image record; the caller holds the metadata lock.
    pub(crate) fn delete_record(&self, id: &ImageId) -> Result<()> {
        let path = self.images_dir().join(record_name(id));
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.images_dir()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_err("remove", &path)(err)),
        }
    }

    fn find_image(&self, id: &ImageId) -> Result<Option<Image>> {
        read_json_file(&self.images_dir().join(record_name(id)))
    }

    fn resolve_id(&self, query: &str) -> Result<Image> {
        if !looks_like_id(query) {
            return Err(StoreError::ImageNotFound(query.to_owned()));
        }
        let prefix = query
            .strip_prefix("sha256:")
            .unwrap_or(query)
            .to_ascii_lowercase();
        let mut matches: Vec<Image> = self
            .images()?
            .into_iter()
            .filter(|image| image.id.digest().hex().starts_with(&prefix))
            .collect();
        match matches.len() {
            0 => Err(StoreError::ImageNotFound(query.to_owned())),
            1 => Ok(matches.remove(0)),
            n => Err(StoreError::AmbiguousId {
                prefix: query.to_owned(),
                matches: n,
            }),
        }
    }

    fn config_head(&self, config: &Digest) -> Result<ConfigHead> {
        let bytes = self.read_small_blob(config)?;
        serde_json::from_slice(&bytes).map_err(|err| StoreError::InvalidConfig {
            digest: config.clone(),
            reason: err.to_string(),
        })
    }

    /// Checks that `layers` is the stack `diff_ids` describes, every layer present;
    /// returns the total content size.
    fn check_layer_stack(&self, diff_ids: &[Digest], layers: &[ChainId]) -> Result<u64> {
        let mut parent: Option<&ChainId> = None;
        let mut size = 0;
        for (diff_id, chain) in diff_ids.iter().zip(layers) {
            let info = self.layer(chain)?;
            let expected = chain_id(parent, diff_id);
            if info.diff_id != *diff_id || expected != *chain {
                return Err(StoreError::DiffIdMismatch {
                    expected: diff_id.clone(),
                    actual: info.diff_id,
                });
            }
            size += info.size;
            parent = Some(chain);
        }
        Ok(size)
    }
}

/// An image ID or a prefix of one: hex digits, optionally after `sha256:`.
fn looks_like_id(query: &str) -> bool {
    let prefix = query.strip_prefix("sha256:").unwrap_or(query);
    !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_hexdigit())
}

fn record_name(id: &ImageId) -> String {
    format!("{}.json", id.digest().hex())
}

/// The references in `tags` that name `id`, sorted.
pub(crate) fn tags_of(tags: &TagMap, id: &ImageId) -> Vec<Reference> {
    tags.iter()
        .filter(|(_, tagged)| *tagged == id)
        .filter_map(|(name, _)| Reference::parse(name).ok())
        .collect()
}

fn refuse_multi_repository_removal(id: &ImageId, names: &[Reference], force: bool) -> Result<()> {
    let repositories: BTreeSet<String> = names.iter().map(Reference::repository).collect();
    if force || repositories.len() <= 1 {
        return Ok(());
    }
    Err(StoreError::Conflict {
        image: id.short().to_owned(),
        tags: names
            .iter()
            .map(Reference::familiar)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::store::test_support::temp_store as store;
    use crate::image::store::test_support::{add_image, config_json, sample_layers};

    fn reference(text: &str) -> Reference {
        Reference::parse(text).expect("reference")
    }

    #[test]
    fn an_image_is_identified_by_its_config_digest() {
        let (_dir, store) = store();
        let layers = sample_layers();
        let id = add_image(&store, &layers, &["/bin/app"]);
        assert_eq!(
            id.digest(),
            &Digest::sha256_of(&config_json(&layers, &["/bin/app"]))
        );
        let image = store.image(&id).expect("image");
        assert_eq!(image.layers.len(), 3);
        assert_eq!(image.created.as_deref(), Some("2024-01-02T03:04:05Z"));
        let config = store.config(&image).expect("config");
        let cmd = config.config().as_ref().and_then(|c| c.cmd().clone());
        assert_eq!(cmd, Some(vec!["/bin/app".to_owned()]));
    }

    #[test]
    fn layer_dirs_are_listed_top_first_and_stack_to_the_image_tree() {
        let (_dir, store) = store();
        let id = add_image(&store, &sample_layers(), &[]);
        let image = store.image(&id).expect("image");
        let dirs = store.layer_dirs(&image).expect("dirs");
        assert_eq!(dirs.len(), 3);
        assert!(dirs[0].join("opt/app/new").is_file(), "top layer first");
        assert!(dirs[2].join("etc/os-release").is_file(), "base layer last");
    }

    #[test]
    fn add_image_refuses_layers_that_do_not_match_the_config() {
        let (_dir, store) = store();
        let layers = sample_layers();
        let id = add_image(&store, &layers, &[]);
        let chains = store.image(&id).expect("image").layers;
        let other = store
            .put_blob_bytes(&config_json(&layers[..2], &[]))
            .expect("config");
        let err = store.add_image(&other, None, &chains).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::LayerCount {
                    expected: 2,
                    given: 3,
                    ..
                }
            ),
            "{err}"
        );
        let swapped = [chains[1].clone(), chains[0].clone()];
        let err = store.add_image(&other, None, &swapped).unwrap_err();
        assert!(matches!(err, StoreError::DiffIdMismatch { .. }), "{err}");
        let not_json = store.put_blob_bytes(b"{not json").expect("blob");
        let err = store.add_image(&not_json, None, &[]).unwrap_err();
        assert!(err.to_string().contains("is invalid"), "{err}");
    }

    #[test]
    fn resolve_by_tag_full_id_and_unique_prefix() {
        let (_dir, store) = store();
        let id = add_image(&store, &sample_layers(), &["a"]);
        store.tag(&reference("app:1"), &id).expect("tag");
        assert_eq!(store.resolve("app:1").expect("by tag").id, id);
        assert_eq!(
            store.resolve("docker.io/library/app:1").expect("full").id,
            id
        );
        assert_eq!(store.resolve(&id.to_string()).expect("by id").id, id);
        assert_eq!(store.resolve(id.short()).expect("by prefix").id, id);
        let err = store.resolve("app:2").unwrap_err();
        assert_eq!(err.to_string(), "No such image: app:2");
    }

    #[test]
    fn an_ambiguous_prefix_is_an_error() {
        let (_dir, store) = store();
        let mut ids = Vec::new();
        for n in 0..40 {
            ids.push(add_image(&store, &sample_layers(), &[&n.to_string()]));
        }
        // Among 40 IDs two share a first hex digit.
        let first = ids[0].digest().hex().get(..1).expect("hex").to_owned();
        let sharing = ids
            .iter()
            .filter(|id| id.digest().hex().starts_with(&first))
            .count();
        let err = store.resolve(&first);
        if sharing > 1 {
            assert!(matches!(err, Err(StoreError::AmbiguousId { .. })));
        }
    }

    #[test]
    fn list_shows_tags_and_sizes() {
        let (_dir, store) = store();
        let id = add_image(&store, &sample_layers(), &[]);
        store.tag(&reference("app:1"), &id).expect("tag");
        store
            .tag(&reference("registry.local/app:2"), &id)
            .expect("tag");
        let list = store.list().expect("list");
        assert_eq!(list.len(), 1);
        let familiar: Vec<String> = list[0].tags.iter().map(Reference::familiar).collect();
        assert_eq!(familiar, ["app:1", "registry.local/app:2"]);
        assert!(list[0].size > 0);
        let details = store.inspect("app:1").expect("inspect");
        assert_eq!(details.tags.len(), 2);
    }

    #[test]
    fn removing_tags_deletes_the_image_with_its_last_name() {
        let (_dir, store) = store();
        let id = add_image(&store, &sample_layers(), &[]);
        store.tag(&reference("app:1"), &id).expect("tag");
        store.tag(&reference("app:2"), &id).expect("tag");
        let report = store.remove("app:1", false).expect("untag");
        assert_eq!(report.untagged, [reference("app:1")]);
        assert_eq!(report.deleted, None);
        let report = store.remove("app:2", false).expect("untag");
        assert_eq!(report.deleted, Some(id.clone()));
        assert!(matches!(
            store.image(&id),
            Err(StoreError::ImageNotFound(_))
        ));
    }

    #[test]
    fn removing_by_id_across_repositories_needs_force() {
        let (_dir, store) = store();
        let id = add_image(&store, &sample_layers(), &[]);
        store.tag(&reference("app:1"), &id).expect("tag");
        store.tag(&reference("other:1"), &id).expect("tag");
        let err = store.remove(id.short(), false).unwrap_err();
        assert!(err.to_string().contains("must be forced"), "{err}");
        assert_eq!(store.resolve("app:1").expect("still tagged").id, id);
        let report = store.remove(id.short(), true).expect("forced");
        assert_eq!(report.untagged.len(), 2);
        assert_eq!(report.deleted, Some(id));
        assert!(store.list().expect("list").is_empty());
    }

    #[test]
    fn a_missing_image_is_named_like_docker_names_it() {
        let (_dir, store) = store();
        let not_found = |query: &str| {
            let err = store.resolve(query).unwrap_err();
            assert!(
                matches!(err, StoreError::ImageNotFound(_)),
                "{query:?}: {err}"
            );
            err.to_string()
        };
        assert_eq!(not_found("busybox"), "No such image: busybox:latest");
        assert_eq!(
            not_found("docker.io/library/redis:7"),
            "No such image: redis:7"
        );
        assert_eq!(
            not_found("ghcr.io/org/app"),
            "No such image: ghcr.io/org/app:latest"
        );
        // An ID prefix is reported as typed.
        assert_eq!(not_found("0123abcd"), "No such image: 0123abcd");
        // Text that is neither a reference nor an ID is not found either, never a panic.
        assert_eq!(not_found("Not A Ref!"), "No such image: Not A Ref!");
        assert_eq!(not_found(""), "No such image: ");
        // The store is unchanged by failed lookups.
        assert!(store.list().expect("list").is_empty());
    }

    #[test]
    fn removing_an_unknown_image_is_not_found() {
        let (_dir, store) = store();
        let err = store.remove("ghost:1", false).unwrap_err();
        assert!(matches!(err, StoreError::ImageNotFound(_)), "{err}");
    }
}
