//! Image archives cross between rcompose and a real Docker Engine: an archive from
//! `docker save` loads into rcompose's store, and one from `rcompose image save` loads into
//! dockerd and runs there. `scripts/test` starts a private dockerd and sets
//! `RCOMPOSE_TEST_DOCKER_HOST`.

mod common;

use std::process::Command;

use common::{Project, RootfsTar};

fn docker_host() -> String {
    std::env::var("RCOMPOSE_TEST_DOCKER_HOST").expect(
        "RCOMPOSE_TEST_DOCKER_HOST is not set: run the tests through scripts/test, which starts a private dockerd",
    )
}

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", docker_host())
        .output()
        .expect("the docker client runs");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A busybox root filesystem from the host's static busybox (Debian's busybox-static).
fn busybox_rootfs_tar() -> Vec<u8> {
    let busybox =
        std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
    let mut rootfs = RootfsTar::new().file("bin/busybox", &busybox, 0o755);
    for applet in ["sh", "echo", "cat"] {
        rootfs = rootfs.symlink(&format!("bin/{applet}"), "busybox");
    }
    rootfs.build()
}

#[test]
fn archives_cross_between_docker_and_rcompose() {
    let project = Project::new(&[]);
    let dir = project.path().to_string_lossy().into_owned();
    let unique = format!("rc-interop-{}", std::process::id());
    let from_docker = format!("{unique}-docker:1");
    let from_rcompose = format!("{unique}-rcompose:1");
    std::fs::write(project.path().join("rootfs.tar"), busybox_rootfs_tar()).unwrap();

    docker(&["import", &format!("{dir}/rootfs.tar"), &from_docker]);
    docker(&["save", "-o", &format!("{dir}/docker.tar"), &from_docker]);

    let root = format!("{dir}/state");
    let loaded = project
        .run(&["--root", &root, "image", "load", "-i", "docker.tar"])
        .ok();
    assert_eq!(loaded, format!("Loaded image: {from_docker}\n"));
    project
        .run(&[
            "--root",
            &root,
            "image",
            "tag",
            &from_docker,
            &from_rcompose,
        ])
        .ok();
    project
        .run(&[
            "--root",
            &root,
            "image",
            "save",
            "-o",
            "rcompose.tar",
            &from_rcompose,
        ])
        .ok();

    let loaded = docker(&["load", "-i", &format!("{dir}/rcompose.tar")]);
    assert!(loaded.contains(&from_rcompose), "{loaded}");
    let said = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &from_rcompose,
        "/bin/echo",
        "hello from rcompose's archive",
    ]);
    assert_eq!(said, "hello from rcompose's archive\n");

    docker(&["rmi", &from_docker, &from_rcompose]);
}
