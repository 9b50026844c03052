//! Tags: `tags.json` maps normalized references to image IDs. Every change is a
//! read-modify-write under the exclusive metadata lock followed by an atomic rename,
//! so concurrent taggers never lose each other's updates.

use std::collections::BTreeMap;

use super::{read_json_file, write_json_file, ImageId, Result, Store, StoreError, TAGS_FILE};
use crate::image::reference::Reference;

/// Normalized reference text (`docker.io/library/alpine:latest`) → image.
pub(crate) type TagMap = BTreeMap<String, ImageId>;

impl Store {
    /// Points `reference` at an image already recorded in the store, replacing what
    /// it named before.
    pub fn tag(&self, reference: &Reference, image: &ImageId) -> Result<()> {
        self.tag_all(&[(reference.clone(), image.clone())])
    }

    /// Applies several tags in one update, so they appear together or not at all.
    pub fn tag_all(&self, tags: &[(Reference, ImageId)]) -> Result<()> {
        let _lock = self.metadata_lock()?;
        let mut map = self.read_tags()?;
        for (reference, image) in tags {
            // Checked under the lock: a concurrent remove cannot slip in between.
            if self.find_image_record(image)?.is_none() {
                return Err(StoreError::ImageNotFound(image.to_string()));
            }
            map.insert(reference.to_string(), image.clone());
        }
        self.write_tags(&map)
    }

    /// Removes a tag; returns the image it named. The image itself stays.
    pub fn untag(&self, reference: &Reference) -> Result<ImageId> {
        let _lock = self.metadata_lock()?;
        let mut map = self.read_tags()?;
        let image = map
            .remove(&reference.to_string())
            .ok_or_else(|| StoreError::ImageNotFound(reference.familiar()))?;
        self.write_tags(&map)?;
        Ok(image)
    }

    /// Every tag with the image it names, sorted by reference.
    pub fn tags(&self) -> Result<Vec<(Reference, ImageId)>> {
        Ok(self
            .read_tags()?
            .into_iter()
            .filter_map(|(name, id)| Reference::parse(&name).ok().map(|r| (r, id)))
            .collect())
    }

    /// Reads the current tag map; a missing file is an empty map. `tags.json` is only
    /// ever replaced whole, so readers need no lock.
    pub(crate) fn read_tags(&self) -> Result<TagMap> {
        Ok(read_json_file(&self.tags_path())?.unwrap_or_default())
    }

    /// Replaces `tags.json`; the caller holds the metadata lock.
    pub(crate) fn write_tags(&self, map: &TagMap) -> Result<()> {
        write_json_file(&self.root, TAGS_FILE, map)
    }

    fn find_image_record(&self, id: &ImageId) -> Result<Option<super::Image>> {
        match self.image(id) {
            Ok(image) => Ok(Some(image)),
            Err(StoreError::ImageNotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::store::test_support::temp_store as store;
    use crate::image::store::test_support::{add_image, sample_layers};
    use std::sync::Arc;

    fn reference(text: &str) -> Reference {
        Reference::parse(text).expect("reference")
    }

    #[test]
    fn tags_are_stored_normalized_and_can_move() {
        let (dir, store) = store();
        let first = add_image(&store, &sample_layers(), &["1"]);
        let second = add_image(&store, &sample_layers(), &["2"]);
        store.tag(&reference("app"), &first).expect("tag");
        store.tag(&reference("app:latest"), &second).expect("retag");
        let text = std::fs::read_to_string(dir.path().join("tags.json")).expect("read");
        assert!(text.contains("docker.io/library/app:latest"), "{text}");
        assert_eq!(store.tags().expect("tags"), [(reference("app"), second)]);
    }

    #[test]
    fn tagging_an_unknown_image_is_refused() {
        let (_dir, store) = store();
        let ghost = ImageId::new(crate::image::reference::Digest::sha256_of(b"ghost"));
        let err = store.tag(&reference("app"), &ghost).unwrap_err();
        assert!(matches!(err, StoreError::ImageNotFound(_)), "{err}");
        assert!(store.tags().expect("tags").is_empty());
    }

    #[test]
    fn untag_keeps_the_image() {
        let (_dir, store) = store();
        let id = add_image(&store, &sample_layers(), &[]);
        store.tag(&reference("app:1"), &id).expect("tag");
        assert_eq!(store.untag(&reference("app:1")).expect("untag"), id);
        assert!(store.image(&id).is_ok());
        let err = store.untag(&reference("app:1")).unwrap_err();
        assert_eq!(err.to_string(), "No such image: app:1");
    }

    #[test]
    fn concurrent_tagging_from_threads_loses_nothing() {
        let (_dir, store) = store();
        let id = add_image(&store, &sample_layers(), &[]);
        let store = Arc::new(store);
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let store = Arc::clone(&store);
                let id = id.clone();
                std::thread::spawn(move || {
                    for n in 0..25 {
                        let name = reference(&format!("app{thread}:{n}"));
                        store.tag(&name, &id).expect("tag");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(store.tags().expect("tags").len(), 8 * 25);
    }

    /// Environment variable telling a re-executed test binary to act as a tagger.
    const HELPER_ROOT: &str = "RCOMPOSE_TAG_HELPER_ROOT";
    const HELPER_PREFIX: &str = "RCOMPOSE_TAG_HELPER_PREFIX";
    const HELPER_IMAGE: &str = "RCOMPOSE_TAG_HELPER_IMAGE";

    /// Does nothing in a normal run; tags 40 names when spawned by the test below.
    #[test]
    fn tag_helper_process() {
        let (Ok(root), Ok(prefix), Ok(image)) = (
            std::env::var(HELPER_ROOT),
            std::env::var(HELPER_PREFIX),
            std::env::var(HELPER_IMAGE),
        ) else {
            return;
        };
        let store = Store::open(root).expect("open store");
        let id: ImageId = image.parse().expect("image id");
        for n in 0..40 {
            store
                .tag(&reference(&format!("{prefix}:{n}")), &id)
                .expect("tag");
        }
    }

    #[test]
    fn concurrent_tagging_from_processes_loses_nothing() {
        let (dir, store) = store();
        let id = add_image(&store, &sample_layers(), &[]);
        let exe = std::env::current_exe().expect("test binary");
        let children: Vec<_> = ["one", "two", "three"]
            .iter()
            .map(|prefix| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "image::store::tags::tests::tag_helper_process",
                        "--test-threads=1",
                    ])
                    .env(HELPER_ROOT, dir.path())
                    .env(HELPER_PREFIX, prefix)
                    .env(HELPER_IMAGE, id.to_string())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn helper")
            })
            .collect();
        for mut child in children {
            assert!(child.wait().expect("wait").success());
        }
        assert_eq!(store.tags().expect("tags").len(), 3 * 40);
    }
}
