//! `rcompose volume ...` and `rcompose volumes` on a state root in a temp dir: create,
//! list (table, -q, json, filters, -p), inspect, rm, prune; errors name the volume and
//! exit 1 as Docker's do.

mod common;

use common::Project;

fn rc<'a>(root: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--root", root];
    all.extend_from_slice(args);
    all
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// A project with a state root inside it.
fn setup() -> (Project, String) {
    let project = Project::new(&[]);
    let root = project.path().join("state").to_string_lossy().into_owned();
    (project, root)
}

#[test]
fn create_list_inspect_and_remove() {
    let (project, root) = setup();
    let run = |args: &[&str]| project.run(&rc(&root, args));
    assert_eq!(
        run(&[
            "volume",
            "create",
            "--label",
            "com.docker.compose.project=demo",
            "--label",
            "com.docker.compose.volume=data",
            "demo_data",
        ])
        .ok(),
        "demo_data\n"
    );
    run(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "cache",
    ])
    .ok();
    let anonymous = run(&["volume", "create"]).ok();
    let anonymous = anonymous.trim();
    assert_eq!(anonymous.len(), 64, "{anonymous}");

    let table = run(&["volume", "ls"]).ok();
    // Listed by name; the anonymous volume's random name sorts anywhere.
    let mut names = [anonymous.to_string(), "cache".into(), "demo_data".into()];
    names.sort();
    let mut expected_rows = vec!["DRIVER   VOLUME NAME".to_string()];
    expected_rows.extend(names.iter().map(|n| format!("local    {n}")));
    assert_eq!(lines(&table), expected_rows, "{table}");
    assert_eq!(
        run(&["volume", "ls", "-q"]).ok(),
        names.iter().map(|n| format!("{n}\n")).collect::<String>()
    );
    // -p selects the project's volumes, by Compose's label.
    let project_only = project
        .run(&rc(
            &root,
            &["-p", "demo", "volume", "ls", "--format", "json"],
        ))
        .ok();
    let rows: Vec<serde_json::Value> = project_only
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{project_only}");
    assert_eq!(rows[0]["Name"], "demo_data");
    assert_eq!(rows[0]["Driver"], "local");
    assert_eq!(
        rows[0]["Labels"],
        "com.docker.compose.project=demo,com.docker.compose.volume=data"
    );
    let mountpoint = format!("{root}/volumes/demo_data/_data");
    assert_eq!(rows[0]["Mountpoint"], mountpoint.as_str());
    assert!(std::path::Path::new(&mountpoint).is_dir());
    assert_eq!(
        run(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.compose.volume"
        ])
        .ok(),
        "demo_data\n"
    );
    assert_eq!(
        run(&["volume", "ls", "-q", "--filter", "name=cac"]).ok(),
        "cache\n"
    );

    let inspected: serde_json::Value =
        serde_json::from_str(&run(&["volume", "inspect", "cache", "demo_data"]).ok()).unwrap();
    assert_eq!(inspected[0]["Name"], "cache");
    assert_eq!(inspected[0]["Options"]["type"], "tmpfs");
    assert_eq!(inspected[0]["Options"]["o"], "size=1m");
    assert_eq!(inspected[0]["Scope"], "local");
    assert!(inspected[0]["Labels"].is_null());
    assert_eq!(inspected[1]["Labels"]["com.docker.compose.volume"], "data");
    assert!(inspected[1]["CreatedAt"].as_str().unwrap().ends_with('Z'));

    // A missing name fails the command but the found ones are still printed.
    let partial = run(&["volume", "inspect", "cache", "nope"]);
    assert!(partial.fails(1).contains("no such volume: nope"));
    assert!(partial.stdout().contains("\"Name\": \"cache\""));

    let removed = run(&["volume", "rm", "nope", "cache"]);
    assert!(removed.fails(1).contains("no such volume: nope"));
    assert_eq!(
        removed.stdout(),
        "cache\n",
        "the other volume is still removed"
    );
    assert_eq!(
        run(&["volume", "rm", "--force", "nope", "demo_data"]).ok(),
        "nope\ndemo_data\n"
    );
    assert!(!std::path::Path::new(&mountpoint).exists());
    assert_eq!(run(&["volume", "ls", "-q"]).ok(), format!("{anonymous}\n"));
}

#[test]
fn a_volume_in_use_is_not_removed_or_pruned() {
    let (project, root) = setup();
    let run = |args: &[&str]| project.run(&rc(&root, args));
    run(&["volume", "create", "busy"]).ok();
    run(&["volume", "create", "idle"]).ok();
    // What the runtime's attach records for a container using the volume.
    let record = format!("{root}/volumes/busy/volume.json");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    value["users"] = serde_json::json!(["c0ffee"]);
    std::fs::write(&record, value.to_string()).unwrap();

    let err = run(&["volume", "rm", "--force", "busy"]).fails(1);
    assert!(
        err.contains("remove busy: volume is in use - [c0ffee]"),
        "{err}"
    );
    assert_eq!(
        run(&["volume", "ls", "-q", "--filter", "dangling=true"]).ok(),
        "idle\n"
    );
    let pruned = run(&["volume", "prune", "--force", "--all"]).ok();
    assert_eq!(
        pruned,
        "Deleted Volumes:\nidle\n\nTotal reclaimed space: 0B\n"
    );
    assert_eq!(run(&["volume", "ls", "-q"]).ok(), "busy\n");
}

#[test]
fn prune_takes_anonymous_volumes_unless_all_and_honours_labels() {
    let (project, root) = setup();
    let run = |args: &[&str]| project.run(&rc(&root, args));
    run(&["volume", "create", "--label", "keep=yes", "named"]).ok();
    let anonymous = run(&["volume", "create"]).ok().trim().to_string();
    std::fs::write(
        format!("{root}/volumes/{anonymous}/_data/blob"),
        vec![7u8; 1500],
    )
    .unwrap();

    // Without --force it asks; anything but yes keeps everything.
    let asked = project.run_in(".", &rc(&root, &["volume", "prune"]), &[], Some("n\n"));
    assert_eq!(asked.ok(), "");
    assert!(asked
        .stderr()
        .contains("WARNING! This will remove anonymous local volumes"));
    assert_eq!(run(&["volume", "ls", "-q"]).ok().lines().count(), 2);

    let answered = project.run_in(".", &rc(&root, &["volume", "prune"]), &[], Some("y\n"));
    assert_eq!(
        answered.ok(),
        format!("Deleted Volumes:\n{anonymous}\n\nTotal reclaimed space: 1.5kB\n")
    );
    assert_eq!(
        run(&[
            "volume",
            "prune",
            "--force",
            "--all",
            "--filter",
            "label!=keep"
        ])
        .ok(),
        "Total reclaimed space: 0B\n"
    );
    assert_eq!(
        run(&[
            "volume",
            "prune",
            "--force",
            "--filter",
            "all=true",
            "--filter",
            "label=keep=yes"
        ])
        .ok(),
        "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n"
    );
}

#[test]
fn bad_input_is_named_and_exits_1() {
    let (project, root) = setup();
    let run = |args: &[&str]| project.run(&rc(&root, args));
    let err = run(&["volume", "create", "_bad"]).fails(1);
    assert!(
        err.contains("\"_bad\" includes invalid characters for a local volume name"),
        "{err}"
    );
    let err = run(&["volume", "create", "x"]).fails(1);
    assert!(err.contains("\"x\" includes invalid characters"), "{err}");
    let err = run(&["volume", "create", "-o", "typ=tmpfs", "vol"]).fails(1);
    assert!(
        err.contains("volume \"vol\": invalid option: \"typ\""),
        "{err}"
    );
    let err = run(&["volume", "create", "-o", "type=tmpfs", "vol"]).fails(1);
    assert!(err.contains("missing required option: \"device\""), "{err}");
    let err = run(&["volume", "create", "-d", "rexray", "vol"]).fails(1);
    assert!(err.contains("driver \"rexray\" is not supported"), "{err}");
    run(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "tmp1",
    ])
    .ok();
    let err = run(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=2m",
        "tmp1",
    ])
    .fails(1);
    assert!(
        err.contains("volume \"tmp1\" exists but doesn't match the requested configuration"),
        "{err}"
    );
    let err = run(&["volume", "ls", "--filter", "colour=red"]).fails(1);
    assert!(err.contains("invalid filter 'colour'"), "{err}");
    let err = run(&["volume", "inspect", "../../etc"]).fails(1);
    assert!(err.contains("no such volume: ../../etc"), "{err}");
    assert_eq!(run(&["volume", "ls", "-q"]).ok(), "tmp1\n");
}

#[test]
fn volumes_lists_the_current_projects_volumes() {
    let project = Project::new(&[(
        "compose.yaml",
        "name: shop\nservices:\n  db:\n    image: busybox\n    volumes: [data:/data]\nvolumes:\n  data: {}\n",
    )]);
    let root = project.path().join("state").to_string_lossy().into_owned();
    let run = |args: &[&str]| project.run(&rc(&root, args));
    run(&[
        "volume",
        "create",
        "--label",
        "com.docker.compose.project=shop",
        "shop_data",
    ])
    .ok();
    run(&[
        "volume",
        "create",
        "--label",
        "com.docker.compose.project=other",
        "other_data",
    ])
    .ok();
    run(&["volume", "create", "loose"]).ok();
    assert_eq!(
        lines(&run(&["volumes"]).ok()),
        ["DRIVER   VOLUME NAME", "local    shop_data"]
    );
    assert_eq!(run(&["volumes", "-q"]).ok(), "shop_data\n");
    assert_eq!(
        project
            .run(&rc(&root, &["-p", "other", "volumes", "-q"]))
            .ok(),
        "other_data\n"
    );
}
