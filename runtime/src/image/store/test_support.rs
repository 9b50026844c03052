//! Builders for layers and images used by the store, archive and import tests.

use std::io::Write;

use tar::{EntryType, Header};

use super::{ImageId, Store};
use crate::image::reference::Digest;

/// Builds an uncompressed layer tar in memory.
pub(crate) struct LayerBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl LayerBuilder {
    pub(crate) fn new() -> LayerBuilder {
        LayerBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, mode: u32, size: u64) -> Header {
        let mut header = Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    pub(crate) fn dir(mut self, path: &str) -> LayerBuilder {
        let mut header = Self::header(EntryType::Directory, 0o755, 0);
        self.builder
            .append_data(&mut header, path, &[][..])
            .expect("append directory to in-memory tar");
        self
    }

    pub(crate) fn file(mut self, path: &str, data: &[u8]) -> LayerBuilder {
        let mut header = Self::header(EntryType::Regular, 0o644, data.len() as u64);
        self.builder
            .append_data(&mut header, path, data)
            .expect("append file to in-memory tar");
        self
    }

    pub(crate) fn symlink(mut self, path: &str, target: &str) -> LayerBuilder {
        let mut header = Self::header(EntryType::Symlink, 0o777, 0);
        self.builder
            .append_link(&mut header, path, target)
            .expect("append symlink to in-memory tar");
        self
    }

    pub(crate) fn build(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish in-memory tar")
    }
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// A config JSON naming `layers` (uncompressed tars) as its rootfs, Docker style.
pub(crate) fn config_json(layers: &[Vec<u8>], cmd: &[&str]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|layer| Digest::sha256_of(layer).to_string())
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": cmd, "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "test"}],
    });
    serde_json::to_vec(&config).expect("serialize test config")
}

/// A three-layer image whose top layer deletes a file and makes a directory opaque.
pub(crate) fn sample_layers() -> Vec<Vec<u8>> {
    vec![
        LayerBuilder::new()
            .dir("etc")
            .file("etc/os-release", b"ID=test\n")
            .file("etc/motd", b"hello\n")
            .dir("opt")
            .dir("opt/app")
            .file("opt/app/old", b"old")
            .build(),
        LayerBuilder::new()
            .dir("bin")
            .file("bin/app", b"#!/bin/sh\necho hi\n")
            .build(),
        LayerBuilder::new()
            .file("etc/.wh.motd", b"")
            .dir("opt/app")
            .file("opt/app/.wh..wh..opq", b"")
            .file("opt/app/new", b"new")
            .build(),
    ]
}

/// Puts `layers` and a config into `store` and records the image, untagged.
pub(crate) fn add_image(store: &Store, layers: &[Vec<u8>], cmd: &[&str]) -> ImageId {
    let mut parent = None;
    let mut chains = Vec::new();
    for layer in layers {
        let blob = store.put_blob_bytes(layer).expect("put layer");
        let chain = store
            .ensure_layer(&blob, &Digest::sha256_of(layer), parent.as_ref())
            .expect("unpack layer");
        chains.push(chain.clone());
        parent = Some(chain);
    }
    let config = store
        .put_blob_bytes(&config_json(layers, cmd))
        .expect("put config");
    store.add_image(&config, None, &chains).expect("add image")
}

/// An empty store in a temporary directory, removed when the guard drops.
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}
