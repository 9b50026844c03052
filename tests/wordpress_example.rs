//! The flagship example end to end: `examples/wordpress/compose.yaml`, unchanged, on the
//! embedded engine, its images pulled from a registry.
//!
//! No registry holding the official images is reachable here, so the stand-ins that
//! `examples/wordpress/standins/build.sh` builds from Debian packages (cached between
//! runs) are pushed with `rcompose image push` under the official names to Debian's
//! docker-registry on 127.0.0.1, which is then docker.io's mirror. `smoke.sh` runs the
//! user's checks on a fresh state root: `up -d` (pulling both images), the installer on
//! http://127.0.0.1/, the installation over HTTP, the site's title, `logs`, MariaDB
//! restarted by `restart: always`, `down` + `up -d` keeping the site, `down -v`.
//!
//! Everything after the image build runs in a throwaway network namespace (port 80 and
//! the bridges are its own); its own `main` (`harness = false`) enters it before any
//! thread exists.

mod kernel_support;
#[path = "../runtime/tests/support/local_registry.rs"]
mod local_registry;

use std::path::Path;
use std::process::Command;

use kernel_support::{
    check_eq, enter_throwaway_netns, is_root, nothing_mounted_under, release_netns_dir,
};
use local_registry::{install_tools, start_registry, LocalRegistry};
use rcompose_runtime::container::helper;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/wordpress");
const IMAGES: [&str; 2] = ["mariadb:10.6.4-focal", "wordpress:latest"];

fn main() {
    helper::maybe_run();
    if !is_root() {
        println!("wordpress_example: skipped, needs root");
        return;
    }
    // apt-get and debootstrap need the host's network: before the namespace.
    install_tools();
    let work = tempfile::Builder::new()
        .prefix("rcompose-wordpress-test")
        .tempdir()
        .unwrap_or_else(|err| panic!("creating a temp dir: {err}"));
    let staging = work.path().join("staging");
    let root = work.path().join("root");
    let mut failed = false;
    let mut report = |name: &str, result: Result<(), String>| match result {
        Ok(()) => println!("test {name} ... ok"),
        Err(err) => {
            println!("test {name} ... FAILED: {err}");
            failed = true;
        }
    };

    let built = build_standins(&staging);
    let built_ok = built.is_ok();
    report("standin_images_build", built);
    if built_ok {
        if let Err(err) = enter_throwaway_netns() {
            println!("wordpress_example: skipped, cannot create a network namespace: {err}");
            return;
        }
        let registry = start_registry(None);
        let published = publish(&staging, &registry);
        let published_ok = published.is_ok();
        report("standins_pushed_under_the_official_names", published);
        if published_ok {
            report(
                "unchanged_example_pulls_installs_and_keeps_its_site",
                smoke(&root, &registry).and_then(|()| same_images(&staging, &root)),
            );
        }
        drop(registry);
    }
    let cleanup = release_netns_dir(&root)
        .or_else(|err| if root.exists() { Err(err) } else { Ok(()) })
        .and_then(|()| nothing_mounted_under(work.path()));
    report("cleanup", cleanup);
    drop(work);
    if failed {
        std::process::exit(1);
    }
}

/// `rcompose --root ROOT ARGS...`, with the registry (when given) as Docker Hub's mirror;
/// its stdout when it succeeds.
fn rcompose(
    root: &Path,
    registry: Option<&LocalRegistry>,
    args: &[&str],
) -> Result<String, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rcompose"));
    command.arg("--root").arg(root).args(args);
    if let Some(registry) = registry {
        command.env(
            "RCOMPOSE_REGISTRY_MIRRORS",
            format!("http://{}", registry.host()),
        );
    }
    let output = command
        .output()
        .map_err(|e| format!("running rcompose {args:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "rcompose {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Builds (or loads from the cache) both stand-ins into the staging root.
fn build_standins(staging: &Path) -> Result<(), String> {
    let status = Command::new(format!("{EXAMPLE}/standins/build.sh"))
        .arg("--root")
        .arg(staging)
        .env("RCOMPOSE", env!("CARGO_BIN_EXE_rcompose"))
        .status()
        .map_err(|e| format!("running standins/build.sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("standins/build.sh: {status}"))
    }
}

/// Pushes both images to the registry as docker.io's official images would be named on
/// a mirror (`library/NAME:TAG`).
fn publish(staging: &Path, registry: &LocalRegistry) -> Result<(), String> {
    for image in IMAGES {
        let mirrored = format!("{}/library/{image}", registry.host());
        rcompose(staging, None, &["image", "tag", image, &mirrored])?;
        rcompose(staging, None, &["image", "push", &mirrored])?;
    }
    Ok(())
}

/// The user's checks, from `examples/wordpress/smoke.sh`, on a state root without images.
fn smoke(root: &Path, registry: &LocalRegistry) -> Result<(), String> {
    for image in IMAGES {
        if rcompose(root, None, &["image", "inspect", image]).is_ok() {
            return Err(format!("{image} is in the fresh state root before up"));
        }
    }
    let status = Command::new(format!("{EXAMPLE}/smoke.sh"))
        .arg(root)
        .env("RCOMPOSE", env!("CARGO_BIN_EXE_rcompose"))
        .env(
            "RCOMPOSE_REGISTRY_MIRRORS",
            format!("http://{}", registry.host()),
        )
        .status()
        .map_err(|e| format!("running smoke.sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "smoke.sh: {status} (its output above names the failed check)"
        ))
    }
}

/// `up` pulled exactly the images that were pushed: same image IDs in both roots.
fn same_images(staging: &Path, root: &Path) -> Result<(), String> {
    for image in IMAGES {
        let id = |root: &Path| -> Result<String, String> {
            let out = rcompose(root, None, &["image", "inspect", image])?;
            let details: serde_json::Value =
                serde_json::from_str(&out).map_err(|e| format!("image inspect output: {e}"))?;
            details[0]["Id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("no Id in image inspect {image}: {out}"))
        };
        check_eq(
            &id(root)?,
            &id(staging)?,
            &format!("image ID of {image} after up"),
        )?;
    }
    Ok(())
}
