//! Helpers of the end-to-end tests that run real containers as root inside a throwaway
//! network namespace (native_engine, up_down, ps_logs).

use std::fs;
use std::path::Path;

use rcompose_runtime::container::rootfs::mount_points;

pub fn check_eq<T: PartialEq + std::fmt::Debug>(
    got: &T,
    want: &T,
    what: &str,
) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

pub fn release_netns_dir(root: &Path) -> Result<(), String> {
    match rcompose_runtime::network::netns::release_netns_dir(root) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "network namespace files are left in {}",
            root.display()
        )),
        Err(err) => Err(err.to_string()),
    }
}

pub fn nothing_mounted_under(dir: &Path) -> Result<(), String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let left = mount_points(&mountinfo).find(|p| Path::new(p).starts_with(dir));
    match left {
        Some(point) => Err(format!("still mounted: {point}")),
        None => Ok(()),
    }
}

/// Moves this process into a new network namespace with its loopback up, so bridges,
/// veths and nftables rules of the containers it starts never touch the host's. Call
/// it while the process has a single thread: the children started later inherit it.
#[allow(dead_code)]
pub fn enter_throwaway_netns() -> Result<(), String> {
    // SAFETY: only the network namespace is unshared; the caller has no other thread.
    #[allow(unsafe_code)]
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
        .map_err(|e| e.to_string())?;
    let status = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .map_err(|e| format!("running ip: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ip link set lo up: {status}"))
    }
}
