//! `rcompose image ...` on the embedded engine's store: import, list, tag, save, load into
//! another store, inspect, remove, prune; bad input leaves the store unchanged.

mod common;

use common::{Project, RootfsTar};

/// A tiny root filesystem tarball: a few files, a symlink.
fn rootfs_tar() -> Vec<u8> {
    RootfsTar::new()
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .file("bin/hello", b"#!/bin/sh\necho hello\n", 0o755)
        .symlink("bin/hi", "hello")
        .build()
}

fn rc<'a>(root: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--root", root];
    all.extend_from_slice(args);
    all
}

#[test]
fn import_tag_save_load_remove_prune() {
    let project = Project::new(&[]);
    std::fs::write(project.path().join("rootfs.tar"), rootfs_tar()).unwrap();
    let one = project.path().join("one").to_string_lossy().into_owned();
    let two = project.path().join("two").to_string_lossy().into_owned();

    let id = project
        .run(&rc(
            &one,
            &[
                "image",
                "import",
                "rootfs.tar",
                "hello:1",
                "--change",
                "CMD [\"/bin/hello\"]",
            ],
        ))
        .ok();
    assert!(id.starts_with("sha256:") && id.trim().len() == 71, "{id}");
    project
        .run(&rc(
            &one,
            &["image", "tag", "hello:1", "localhost:5000/hello:0.1"],
        ))
        .ok();
    let listing = project.run(&rc(&one, &["image", "ls"])).ok();
    assert!(listing.starts_with("REPOSITORY"), "{listing}");
    assert!(
        listing.contains("\nhello ") && listing.contains("localhost:5000/hello"),
        "{listing}"
    );
    let quiet = project.run(&rc(&one, &["image", "ls", "-q"])).ok();
    assert_eq!(
        quiet.trim(),
        &id.trim()["sha256:".len().."sha256:".len() + 12]
    );

    project
        .run(&rc(
            &one,
            &[
                "image",
                "save",
                "-o",
                "saved.tar",
                "hello:1",
                "localhost:5000/hello:0.1",
            ],
        ))
        .ok();
    let loaded = project
        .run(&rc(&two, &["image", "load", "-i", "saved.tar"]))
        .ok();
    assert_eq!(
        loaded,
        "Loaded image: hello:1\nLoaded image: localhost:5000/hello:0.1\n"
    );
    let inspect: serde_json::Value = serde_json::from_str(
        &project
            .run(&rc(&two, &["image", "inspect", "hello:1"]))
            .ok(),
    )
    .unwrap();
    assert_eq!(
        inspect[0]["Id"].as_str().unwrap(),
        id.trim(),
        "same image id after a round trip"
    );
    assert_eq!(inspect[0]["Config"]["config"]["Cmd"][0], "/bin/hello");

    let removed = project
        .run(&rc(
            &two,
            &["image", "rm", "hello:1", "localhost:5000/hello:0.1"],
        ))
        .ok();
    assert!(
        removed.contains("Untagged: hello:1")
            && removed.contains(&format!("Deleted: {}", id.trim())),
        "{removed}"
    );
    let pruned = project.run(&rc(&two, &["image", "prune"])).ok();
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let empty = project.run(&rc(&two, &["image", "ls"])).ok();
    assert_eq!(empty.lines().count(), 1, "{empty}");
}

#[test]
fn bad_input_is_explained_and_changes_nothing() {
    let project = Project::new(&[]);
    std::fs::write(project.path().join("rootfs.tar"), rootfs_tar()).unwrap();
    let root = project.path().join("state").to_string_lossy().into_owned();
    project
        .run(&rc(&root, &["image", "import", "rootfs.tar", "base"]))
        .ok();
    let before = project.run(&rc(&root, &["image", "ls"])).ok();

    let err = project
        .run(&rc(&root, &["image", "inspect", "missing:1"]))
        .fails(1);
    assert!(err.contains("No such image: missing:1"), "{err}");
    let err = project
        .run(&rc(&root, &["image", "tag", "base", "Bad/Name"]))
        .fails(1);
    assert!(err.contains("invalid reference format"), "{err}");
    // A truncated archive and a tarball that is not an image archive.
    project
        .run(&rc(&root, &["image", "save", "-o", "full.tar", "base"]))
        .ok();
    let full = std::fs::read(project.path().join("full.tar")).unwrap();
    std::fs::write(project.path().join("cut.tar"), &full[..full.len() / 2]).unwrap();
    let err = project
        .run(&rc(&root, &["image", "load", "-i", "cut.tar"]))
        .fails(1);
    assert!(err.contains("cut.tar"), "{err}");
    let err = project
        .run(&rc(&root, &["image", "load", "-i", "rootfs.tar"]))
        .fails(1);
    assert!(
        err.contains("not a `docker save` or OCI layout archive"),
        "{err}"
    );
    let err = project
        .run(&rc(
            &root,
            &["image", "import", "rootfs.tar", "x", "--change", "RUN true"],
        ))
        .fails(1);
    assert!(err.contains("RUN"), "{err}");

    assert_eq!(project.run(&rc(&root, &["image", "ls"])).ok(), before);
}
