//! `rcompose network ...` end to end: create, ls (table, -q, json, filters), inspect,
//! rm and prune, with Docker's errors and exit codes.
//!
//! Networks are kernel objects, so these tests need root. Each one makes a throwaway
//! network namespace and runs every command inside it (`nsenter --net=...`), so the
//! host's interfaces and firewall are never touched; at the end everything is
//! removed and nothing may stay mounted under the test's directory.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::Run;
use rcompose_runtime::container::rootfs::mount_points;
use rcompose_runtime::network::link::bridge_name;
use rcompose_runtime::network::manager::{EndpointRequest, NetworkManager};
use rcompose_runtime::network::netns::{self, NetnsHandle};

/// A state root and a network namespace of its own, both thrown away at the end.
struct Sandbox {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    netns: PathBuf,
}

impl Sandbox {
    /// `None` (after saying why) where namespaces cannot be made.
    fn new(test: &str) -> Option<Sandbox> {
        if !is_root() {
            println!("{test}: skipped, network namespaces and bridges need root");
            return None;
        }
        if Command::new("nsenter").arg("--version").output().is_err() {
            println!("{test}: skipped, nsenter is not installed");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("rcompose-netcli")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let netns = match NetnsHandle::create(&root, "cli") {
            Ok(handle) => handle.path().to_path_buf(),
            Err(err) => {
                println!("{test}: skipped, cannot create a network namespace: {err}");
                let _ = netns::release_netns_dir(&root);
                return None;
            }
        };
        Some(Sandbox {
            dir: Some(dir),
            root,
            netns,
        })
    }

    /// `rcompose --root <root> network <args>` inside the namespace.
    fn network(&self, args: &[&str]) -> Run {
        self.network_with_input(args, None)
    }

    fn network_with_input(&self, args: &[&str], input: Option<&str>) -> Run {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.netns.display()))
            .arg(env!("CARGO_BIN_EXE_rcompose"))
            .arg("--root")
            .arg(&self.root)
            .arg("network")
            .args(args)
            .env_remove("RCOMPOSE_ROOT")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("nsenter runs");
        if let Some(text) = input {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        Run(child.wait_with_output().unwrap())
    }

    /// `ip -o link show <name>` inside the namespace, if the link exists.
    fn link(&self, name: &str) -> Option<String> {
        let output = Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .args(["ip", "-o", "link", "show", name])
            .output()
            .unwrap();
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Connects a stand-in container (a namespace of its own, no process) to a
    /// network, as a running service would be.
    fn connect_stand_in(&self, network: &str, container_id: &str, name: &str) {
        let root = self.root.clone();
        let request = EndpointRequest {
            container_id: container_id.into(),
            container_name: name.into(),
            aliases: vec!["web".into()],
            ifname: "eth0".into(),
            default_route: true,
            ..EndpointRequest::default()
        };
        netns::in_netns(&self.netns, move || {
            let manager = NetworkManager::open(&root).unwrap();
            let sandbox = manager.create_sandbox(&request.container_id).unwrap();
            manager.connect(network, &sandbox, &request).unwrap();
        })
        .unwrap();
    }

    fn disconnect_stand_in(&self, network: &str, container_id: &str) {
        let root = self.root.clone();
        netns::in_netns(&self.netns, move || {
            let manager = NetworkManager::open(&root).unwrap();
            manager.disconnect(network, container_id).unwrap();
            manager.remove_sandbox(container_id).unwrap();
        })
        .unwrap();
    }

    /// Removes every network left, then the namespace; checks nothing stays mounted.
    fn finish(mut self) {
        let left = self.network(&["ls", "-q"]).ok();
        assert_eq!(left, "", "a test left networks behind");
        let problems = self.tear_down();
        assert!(problems.is_empty(), "cleanup: {}", problems.join("; "));
    }

    fn tear_down(&mut self) -> Vec<String> {
        let Some(dir) = self.dir.take() else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        // What a failed test left: networks (their bridges go with the namespace).
        let _ = self.network(&["prune", "--force"]);
        // Our namespace, and those of stand-in containers a failed test left.
        let netns_dir = self
            .netns
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let files = fs::read_dir(&netns_dir).into_iter().flatten().flatten();
        for path in files.map(|entry| entry.path()).chain([self.netns.clone()]) {
            if let Err(err) = netns::delete_netns(&path) {
                problems.push(err.to_string());
            }
        }
        match netns::release_netns_dir(&self.root) {
            Ok(true) => {}
            Ok(false) => problems.push("namespace files are left".into()),
            Err(err) => problems.push(err.to_string()),
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some(point) = mount_points(&mountinfo).find(|p| Path::new(p).starts_with(&self.root))
        {
            problems.push(format!("still mounted: {point}"));
        }
        drop(dir);
        problems
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // A failed assertion got here first: clean up as well as we can.
        for problem in self.tear_down() {
            eprintln!("cleanup: {problem}");
        }
    }
}

fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn names_of(rows: &[serde_json::Value]) -> Vec<&str> {
    rows.iter()
        .map(|row| row["Name"].as_str().unwrap())
        .collect()
}

/// `ls --filter ...` → the names it lists.
fn listed(sandbox: &Sandbox, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["ls", "--format", "json"];
    for filter in filters {
        args.extend(["--filter", filter]);
    }
    let out = sandbox.network(&args).ok();
    names_of(&json_lines(&out))
        .into_iter()
        .map(String::from)
        .collect()
}

#[test]
fn create_list_inspect_and_remove() {
    let Some(sandbox) = Sandbox::new("create_list_inspect_and_remove") else {
        return;
    };
    let front_id = sandbox
        .network(&[
            "create",
            "--subnet",
            "10.213.77.0/24",
            "--gateway",
            "10.213.77.254",
            "--ip-range",
            "10.213.77.128/25",
            "--label",
            "tier=web",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "front",
        ])
        .ok();
    let front_id = front_id.trim().to_string();
    assert_eq!(front_id.len(), 64, "create prints the full id: {front_id}");
    let back_id = sandbox
        .network(&["create", "--internal", "-d", "bridge", "back"])
        .ok()
        .trim()
        .to_string();

    // The bridge is in the test's namespace, with the MTU asked for, and not on the host.
    let bridge = bridge_name(&front_id);
    let link = sandbox.link(&bridge).expect("the bridge exists");
    assert!(link.contains("mtu 1400"), "{link}");
    let on_host = Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .unwrap();
    assert!(!on_host.status.success(), "{bridge} leaked to the host");

    let table = sandbox.network(&["ls"]).ok();
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(
        rows,
        [
            "NETWORK ID     NAME    DRIVER   SCOPE".to_string(),
            format!("{}   back    bridge   local", &back_id[..12]),
            format!("{}   front   bridge   local", &front_id[..12]),
        ]
    );
    assert_eq!(
        sandbox.network(&["ls", "-q"]).ok(),
        format!("{}\n{}\n", &back_id[..12], &front_id[..12])
    );
    assert_eq!(
        sandbox.network(&["ls", "-q", "--no-trunc"]).ok(),
        format!("{back_id}\n{front_id}\n")
    );
    let lines = json_lines(&sandbox.network(&["ls", "--format", "json"]).ok());
    assert_eq!(names_of(&lines), ["back", "front"]);
    assert_eq!(lines[0]["Internal"], "true");
    assert_eq!(lines[1]["ID"], &front_id[..12]);
    assert_eq!(lines[1]["Labels"], "tier=web");
    assert_eq!(lines[1]["Driver"], "bridge");
    assert_eq!(lines[1]["Scope"], "local");

    // By name and by id prefix, as Docker allows.
    let inspected: serde_json::Value =
        serde_json::from_str(&sandbox.network(&["inspect", "front", &back_id[..6]]).ok()).unwrap();
    let front = &inspected[0];
    assert_eq!(front["Name"], "front");
    assert_eq!(front["Id"], front_id.as_str());
    assert_eq!(front["Driver"], "bridge");
    assert_eq!(front["Scope"], "local");
    assert_eq!(front["Internal"], false);
    assert!(front["Created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        front["IPAM"]["Config"],
        serde_json::json!([{
            "Subnet": "10.213.77.0/24",
            "IPRange": "10.213.77.128/25",
            "Gateway": "10.213.77.254",
        }])
    );
    assert_eq!(front["Containers"], serde_json::json!({}));
    assert_eq!(
        front["Options"],
        serde_json::json!({"com.docker.network.driver.mtu": "1400"})
    );
    assert_eq!(front["Labels"], serde_json::json!({"tier": "web"}));
    let back = &inspected[1];
    assert_eq!(back["Name"], "back");
    assert_eq!(back["Internal"], true);
    let subnet = back["IPAM"]["Config"][0]["Subnet"].as_str().unwrap();
    assert!(subnet.contains('/'), "a subnet from the pool: {subnet}");

    assert_eq!(
        sandbox.network(&["rm", "front", &back_id[..12]]).ok(),
        format!("front\n{}\n", &back_id[..12])
    );
    assert_eq!(sandbox.network(&["ls", "-q"]).ok(), "");
    assert!(sandbox.link(&bridge).is_none(), "rm removes the bridge");
    sandbox.finish();
}

#[test]
fn mistakes_fail_with_dockers_messages() {
    let Some(sandbox) = Sandbox::new("mistakes_fail_with_dockers_messages") else {
        return;
    };
    sandbox
        .network(&["create", "--subnet", "10.213.78.0/24", "front"])
        .ok();
    let again = sandbox
        .network(&["create", "--subnet", "10.213.79.0/24", "front"])
        .fails(1);
    assert_eq!(again, "network with name front already exists\n");
    let overlay = sandbox
        .network(&["create", "-d", "overlay", "swarm"])
        .fails(1);
    assert!(
        overlay.contains("network swarm: driver \"overlay\" is not supported"),
        "{overlay}"
    );
    let overlap = sandbox
        .network(&["create", "--subnet", "10.213.78.128/25", "inner"])
        .fails(1);
    assert!(overlap.starts_with("network inner: "), "{overlap}");
    let outside = sandbox
        .network(&[
            "create",
            "--subnet",
            "10.213.80.0/24",
            "--gateway",
            "10.213.81.1",
            "stray",
        ])
        .fails(1);
    assert!(outside.starts_with("network stray: "), "{outside}");
    let option = sandbox
        .network(&[
            "create",
            "-o",
            "com.docker.network.bridge.name=br9",
            "named",
        ])
        .fails(1);
    assert!(option.contains("\"com.docker.network.bridge.name\" is not supported"));

    // Nothing half-made was left by the failures.
    assert_eq!(listed(&sandbox, &[]), ["front"]);

    assert_eq!(
        sandbox.network(&["rm", "ghost"]).fails(1),
        "Error: No such network: ghost\n"
    );
    // rm goes on past a failure, and still exits 1.
    let run = sandbox.network(&["rm", "ghost", "front"]);
    assert_eq!(run.fails(1), "Error: No such network: ghost\n");
    assert_eq!(run.stdout(), "front\n");
    assert_eq!(sandbox.network(&["rm", "--force", "ghost"]).ok(), "");

    let inspect = sandbox.network(&["inspect", "ghost"]);
    assert_eq!(inspect.fails(1), "Error: No such network: ghost\n");
    assert_eq!(
        sandbox.network(&["ls", "--filter", "colour=red"]).fails(1),
        "invalid filter 'colour'\n"
    );
    sandbox.finish();
}

#[test]
fn filters_in_use_networks_and_prune() {
    let Some(sandbox) = Sandbox::new("filters_in_use_networks_and_prune") else {
        return;
    };
    let project = "com.docker.compose.project";
    sandbox
        .network(&[
            "create",
            "--label",
            &format!("{project}=demo"),
            "demo_default",
        ])
        .ok();
    sandbox
        .network(&[
            "create",
            "--label",
            &format!("{project}=other"),
            "other_default",
        ])
        .ok();
    sandbox.network(&["create", "shared"]).ok();
    sandbox.connect_stand_in("shared", "c0ffee", "demo-web-1");

    assert_eq!(
        listed(&sandbox, &[&format!("label={project}=demo")]),
        ["demo_default"]
    );
    assert_eq!(
        listed(&sandbox, &[&format!("label={project}")]),
        ["demo_default", "other_default"]
    );
    assert_eq!(listed(&sandbox, &["name=_default", "name=shared"]).len(), 3);
    assert_eq!(listed(&sandbox, &["name=other"]), ["other_default"]);
    assert_eq!(
        listed(&sandbox, &["dangling=true"]),
        ["demo_default", "other_default"]
    );
    assert_eq!(listed(&sandbox, &["dangling=false"]), ["shared"]);
    assert_eq!(listed(&sandbox, &["driver=bridge"]).len(), 3);
    assert!(listed(&sandbox, &["type=builtin"]).is_empty());

    // The connected container shows up, and keeps the network from being removed.
    let inspected: serde_json::Value =
        serde_json::from_str(&sandbox.network(&["inspect", "shared"]).ok()).unwrap();
    let container = &inspected[0]["Containers"]["c0ffee"];
    assert_eq!(container["Name"], "demo-web-1");
    let address = container["IPv4Address"].as_str().unwrap();
    let subnet = inspected[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap();
    assert_eq!(
        address.split_once('/').map(|(_, prefix)| prefix),
        subnet.split_once('/').map(|(_, prefix)| prefix),
        "{address} in {subnet}"
    );
    assert_eq!(container["MacAddress"].as_str().unwrap().len(), 17);
    assert_eq!(
        sandbox.network(&["rm", "shared"]).fails(1),
        "Error: error while removing network: network shared has active endpoints (name:\"demo-web-1\" id:\"c0ffee\")\n"
    );

    // Declining the prompt removes nothing.
    let declined = sandbox.network_with_input(&["prune"], Some("n\n"));
    assert!(declined
        .stderr()
        .starts_with("WARNING! This will remove all custom networks"));
    assert_eq!(declined.ok(), "");
    assert_eq!(listed(&sandbox, &[]).len(), 3);

    assert_eq!(
        sandbox
            .network(&[
                "prune",
                "--force",
                "--filter",
                &format!("label={project}=other")
            ])
            .ok(),
        "Deleted Networks:\nother_default\n\n"
    );
    assert_eq!(
        sandbox.network_with_input(&["prune"], Some("y\n")).ok(),
        "Deleted Networks:\ndemo_default\n\n",
        "a network in use is never pruned"
    );
    assert_eq!(listed(&sandbox, &[]), ["shared"]);

    sandbox.disconnect_stand_in("shared", "c0ffee");
    assert_eq!(
        sandbox.network(&["prune", "--force"]).ok(),
        "Deleted Networks:\nshared\n\n"
    );
    assert_eq!(sandbox.network(&["prune", "--force"]).ok(), "");
    sandbox.finish();
}
