//! Garbage collection: dangling images, then layers and blobs nothing references,
//! then leftovers of interrupted writes (`.tmp-*` entries).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

use serde::Deserialize;

use super::{
    io_err, is_temp_name, sync_dir, ChainId, Image, ImageId, Result, Store, StoreError, TEMP_PREFIX,
};
use crate::image::reference::Digest;

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Untagged images that were not asked to be kept.
    pub images: Vec<ImageId>,
    pub layers: Vec<ChainId>,
    pub blobs: Vec<Digest>,
    /// Leftovers of interrupted writes.
    pub temp_entries: usize,
    /// Bytes of blobs and layer content freed.
    pub reclaimed_bytes: u64,
}

/// The references a stored manifest holds, so its blobs survive with it.
#[derive(Deserialize)]
struct ManifestRefs {
    config: Option<DescriptorRef>,
    #[serde(default)]
    layers: Vec<DescriptorRef>,
}

#[derive(Deserialize)]
struct DescriptorRef {
    digest: Digest,
}

impl Store {
    /// Deletes untagged images except those in `keep` (e.g. used by containers), then
    /// every layer and blob no remaining image needs, and temp entries left by
    /// interrupted writes. Waits for loads and imports in progress to finish first.
    pub fn prune(&self, keep: &[ImageId]) -> Result<PruneReport> {
        let _gc = self.exclusive_gc_lock()?;
        let _metadata = self.metadata_lock()?;
        let mut report = PruneReport::default();
        for dir in [
            self.root.clone(),
            self.blobs_dir(),
            self.layers_dir(),
            self.images_dir(),
        ] {
            report.temp_entries += remove_temp_entries(&dir)?;
        }
        let images = self.prune_images(keep, &mut report)?;
        let live_layers: HashSet<ChainId> = images
            .iter()
            .flat_map(|image| image.layers.iter().cloned())
            .collect();
        self.prune_layers(&live_layers, &mut report)?;
        let live_blobs = self.live_blobs(&images, &live_layers)?;
        self.prune_blobs(&live_blobs, &mut report)?;
        Ok(report)
    }

    /// Deletes dangling image records; returns the images that remain.
    fn prune_images(&self, keep: &[ImageId], report: &mut PruneReport) -> Result<Vec<Image>> {
        let tagged: HashSet<ImageId> = self.read_tags()?.into_values().collect();
        let mut remaining = Vec::new();
        for image in self.images()? {
            if tagged.contains(&image.id) || keep.contains(&image.id) {
                remaining.push(image);
            } else {
                self.delete_record(&image.id)?;
                report.images.push(image.id);
            }
        }
        Ok(remaining)
    }

    fn prune_layers(&self, live: &HashSet<ChainId>, report: &mut PruneReport) -> Result<()> {
        let dir = self.layers_dir();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let chain = entry
                .file_name()
                .to_str()
                .and_then(|hex| format!("sha256:{hex}").parse::<ChainId>().ok());
            let Some(chain) = chain else { continue };
            if live.contains(&chain) {
                continue;
            }
            let size = self.layer(&chain).map(|info| info.size).unwrap_or(0);
            remove_dir_via_temp(&entry.path())?;
            report.reclaimed_bytes += size;
            report.layers.push(chain);
        }
        sync_dir(&dir)
    }

    /// Configs and manifests of remaining images, plus the blobs of their layers and
    /// whatever their manifests reference.
    fn live_blobs(&self, images: &[Image], layers: &HashSet<ChainId>) -> Result<HashSet<Digest>> {
        let mut live = HashSet::new();
        for image in images {
            live.insert(image.id.digest().clone());
            if let Some(manifest) = &image.manifest {
                live.insert(manifest.clone());
                live.extend(self.manifest_references(manifest));
            }
        }
        for chain in layers {
            match self.layer(chain) {
                Ok(info) => {
                    live.insert(info.blob);
                }
                Err(StoreError::LayerMissing(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(live)
    }

    /// Digests a stored manifest points at; an unreadable manifest protects nothing.
    fn manifest_references(&self, manifest: &Digest) -> Vec<Digest> {
        let Ok(bytes) = self.read_small_blob(manifest) else {
            return Vec::new();
        };
        let Ok(refs) = serde_json::from_slice::<ManifestRefs>(&bytes) else {
            return Vec::new();
        };
        refs.config
            .into_iter()
            .chain(refs.layers)
            .map(|descriptor| descriptor.digest)
            .collect()
    }

    fn prune_blobs(&self, live: &HashSet<Digest>, report: &mut PruneReport) -> Result<()> {
        let dir = self.blobs_dir();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            let digest = entry
                .file_name()
                .to_str()
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
            let Some(digest) = digest else { continue };
            if live.contains(&digest) {
                continue;
            }
            let path = entry.path();
            let size = entry.metadata().map(|meta| meta.len()).unwrap_or(0);
            remove_path(&path)?;
            report.reclaimed_bytes += size;
            report.blobs.push(digest);
        }
        sync_dir(&dir)
    }
}

/// Removes every `.tmp-*` entry directly in `dir`; returns how many there were.
fn remove_temp_entries(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if is_temp_name(&entry.file_name()) {
            remove_path(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Renames a layer directory to a temp name before deleting it, so a crash midway
/// leaves a temp entry instead of a half-deleted layer under its real name.
fn remove_dir_via_temp(path: &Path) -> Result<()> {
    let Some(parent) = path.parent() else {
        return remove_path(path);
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doomed = parent.join(format!("{TEMP_PREFIX}deleting-{name}"));
    fs::rename(path, &doomed).map_err(io_err("rename for removal", path))?;
    sync_dir(parent)?;
    remove_path(&doomed)
}

fn remove_path(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_err("remove", path)(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::reference::Reference;
    use crate::image::store::test_support::temp_store as store;
    use crate::image::store::test_support::{add_image, sample_layers, LayerBuilder};

    #[test]
    fn prune_keeps_tagged_and_kept_images_with_everything_they_need() {
        let (_dir, store) = store();
        let layers = sample_layers();
        let tagged = add_image(&store, &layers, &["tagged"]);
        let kept = add_image(&store, &layers[..1], &["kept"]);
        let dangling_layers = vec![LayerBuilder::new().file("only-here", b"x").build()];
        let dangling = add_image(&store, &dangling_layers, &["dangling"]);
        store
            .tag(&Reference::parse("app").expect("ref"), &tagged)
            .expect("tag");
        let stray = store.put_blob_bytes(b"stray").expect("blob");

        let report = store.prune(std::slice::from_ref(&kept)).expect("prune");
        assert_eq!(report.images, std::slice::from_ref(&dangling));
        assert_eq!(
            report.layers.len(),
            1,
            "only the dangling image's own layer"
        );
        assert!(report.blobs.contains(&stray));
        assert!(report.blobs.contains(dangling.digest()));
        assert!(report.reclaimed_bytes > 0);

        for id in [&tagged, &kept] {
            let image = store.image(id).expect("image survives");
            store.config(&image).expect("config survives");
            for dir in store.layer_dirs(&image).expect("layers survive") {
                assert!(dir.is_dir());
            }
        }
        assert!(store.image(&dangling).is_err());
        assert_eq!(store.prune(&[kept]).expect("again"), PruneReport::default());
    }

    #[test]
    fn partially_written_layers_and_blobs_are_ignored_then_pruned() {
        let (dir, store) = store();
        let id = add_image(&store, &sample_layers(), &[]);
        store
            .tag(&Reference::parse("app").expect("ref"), &id)
            .expect("tag");
        // What a process killed mid-write leaves behind.
        let partial_layer = dir.path().join("layers/.tmp-abc123/diff/etc");
        fs::create_dir_all(&partial_layer).expect("partial layer");
        fs::write(dir.path().join("blobs/sha256/.tmp-xyz"), b"half a blob").expect("partial blob");
        fs::write(dir.path().join("images/.tmp-rec"), b"{").expect("partial record");
        fs::write(dir.path().join(".tmp-tags"), b"{").expect("partial tags");

        assert_eq!(store.images().expect("records").len(), 1);
        assert_eq!(store.list().expect("list").len(), 1);
        let report = store.prune(&[]).expect("prune");
        assert_eq!(report.temp_entries, 4);
        assert!(report.layers.is_empty() && report.images.is_empty());
        assert!(!dir.path().join("layers/.tmp-abc123").exists());
        assert!(store.resolve("app").is_ok());
    }

    #[test]
    fn prune_waits_for_a_write_session() {
        let (_dir, store) = store();
        let session = store.write_session().expect("session");
        let pruner = {
            let store = store.clone();
            std::thread::spawn(move || store.prune(&[]).expect("prune"))
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!pruner.is_finished(), "prune must wait for the loader");
        // The loader's blob is tagged before its session ends in real use; here it
        // simply shows that content written inside a session is not pruned early.
        let blob = store.put_blob_bytes(b"in flight").expect("blob");
        assert!(store.has_blob(&blob));
        drop(session);
        let report = pruner.join().expect("prune thread");
        assert!(report.blobs.contains(&blob));
    }
}
