//! A docker-registry process on a free local port, for the registry tests of the
//! runtime (runtime/tests/registry.rs) and the pull and push tests of the binary
//! (tests/pull_cli.rs), which include this file with `#[path]`.
//!
//! `docker-registry`, `htpasswd` and a static busybox are installed with apt-get when
//! missing; if that fails the tests fail, they never pass without a registry.
#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use rcompose_runtime::image::reference::Reference;
use tempfile::TempDir;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const BUSYBOX: &str = "/bin/busybox";

// ---------------------------------------------------------------------------------
// A docker-registry process on a free port.

pub struct LocalRegistry {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalRegistry {
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn reference(&self, name: &str) -> Reference {
        Reference::parse(&format!("{}/{name}", self.host())).expect("reference")
    }
}

pub fn install_tools() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let missing = !Path::new(REGISTRY_BIN).exists()
            || Command::new("sh")
                .args(["-c", "command -v htpasswd"])
                .stdout(Stdio::null())
                .status()
                .map(|status| !status.success())
                .unwrap_or(true)
            || !Path::new(BUSYBOX).exists();
        if !missing {
            return;
        }
        let status = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry apache2-utils busybox-static",
            ])
            .status()
            .expect("run apt-get");
        assert!(
            status.success(),
            "docker-registry, apache2-utils and busybox-static are needed and could not be installed"
        );
    });
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

pub fn start_registry(credentials: Option<(&str, &str)>) -> LocalRegistry {
    install_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let auth = match credentials {
        Some((user, password)) => {
            let output = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd");
            assert!(output.status.success(), "htpasswd failed");
            fs::write(dir.path().join("htpasswd"), &output.stdout).expect("write htpasswd");
            format!(
                "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                dir.path().join("htpasswd").display()
            )
        }
        None => String::new(),
    };
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
        dir.path().join("data").display()
    );
    let config_path = dir.path().join("config.yml");
    fs::write(&config_path, config).expect("write registry config");
    let log = fs::File::create(dir.path().join("registry.log")).expect("log file");
    let child = Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(&config_path)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start docker-registry");
    let registry = LocalRegistry {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    registry
}
