//! `rcompose config` and `rcompose version` as a Compose user drives them.

mod common;

use common::Project;

const APP: &str = r#"
services:
  web:
    image: "nginx:${TAG:-latest}"
    profiles: [front]
    depends_on: [api]
  api:
    build: ./api
    volumes: [data:/data]
    networks: [back]
  worker:
    image: worker
    profiles: [jobs]
volumes:
  data:
networks:
  back:
"#;

#[test]
fn discovers_files_from_a_subdirectory_and_names_the_project_after_the_directory() {
    let project = Project::new(&[("compose.yaml", APP), ("nested/deeper/file.txt", "")]);
    let out = project
        .run_in("nested/deeper", &["config", "--services"], &[], None)
        .ok();
    assert_eq!(out, "api\n");
    let dir_name = project
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase()
        .replace(['.'], "");
    let out = project.run(&["config"]).ok();
    assert!(out.starts_with(&format!("name: {dir_name}\n")), "{out}");
}

#[test]
fn listings() {
    let project = Project::new(&[("compose.yaml", APP)]);
    assert_eq!(
        project
            .run(&["--profile", "front", "config", "--services"])
            .ok(),
        "api\nweb\n"
    );
    assert_eq!(
        project
            .run(&["--profile", "*", "config", "--services"])
            .ok(),
        "api\nweb\nworker\n"
    );
    assert_eq!(project.run(&["config", "--volumes"]).ok(), "data\n");
    assert_eq!(project.run(&["config", "--networks"]).ok(), "back\n");
    assert_eq!(project.run(&["config", "--profiles"]).ok(), "front\njobs\n");
    let images = project
        .run(&["-p", "demo", "--profile", "front", "config", "--images"])
        .ok();
    assert_eq!(images, "demo-api\nnginx:latest\n");
    let env = [("COMPOSE_PROFILES", "jobs")];
    assert_eq!(
        project
            .run_in(".", &["config", "--services"], &env, None)
            .ok(),
        "api\nworker\n"
    );
}

#[test]
fn targeted_services_enable_their_profiles_and_bring_dependencies() {
    let project = Project::new(&[("compose.yaml", APP)]);
    let out = project.run(&["config", "--services", "web"]).ok();
    assert_eq!(out, "api\nweb\n");
    let err = project.run(&["config", "nope"]).fails(1);
    assert!(err.contains("no such service: nope"), "{err}");
}

#[test]
fn reads_standard_input_and_writes_output_file() {
    let project = Project::new(&[]);
    let out = project
        .run_in(
            ".",
            &["-f", "-", "-p", "stdin", "config", "-o", "out.yaml"],
            &[],
            Some("services:\n  a:\n    image: busybox\n"),
        )
        .ok();
    assert!(out.is_empty());
    let written = std::fs::read_to_string(project.path().join("out.yaml")).unwrap();
    assert!(
        written.starts_with("name: stdin\nservices:\n  a:\n"),
        "{written}"
    );
}

#[test]
fn standard_input_resolves_extends_and_include_from_the_project_directory() {
    let project = Project::new(&[("base.yaml", "services:\n  base:\n    image: base:1\n")]);
    let text = "include: [base.yaml]\nservices:\n  a:\n    extends: {file: base.yaml, service: base}\n  b:\n    extends: a\n";
    let out = project
        .run_in(".", &["-f", "-", "config", "--images"], &[], Some(text))
        .ok();
    assert_eq!(out, "base:1\nbase:1\nbase:1\n");
}

#[test]
fn quiet_validates_without_printing() {
    let project = Project::new(&[("compose.yaml", APP)]);
    assert_eq!(project.run(&["config", "-q"]).ok(), "");
}

#[test]
fn compose_file_and_project_name_from_environment_and_dotenv() {
    let project = Project::new(&[
        ("a.yaml", "services:\n  a:\n    image: a\n"),
        ("b.yaml", "services:\n  b:\n    image: b\n"),
        (
            ".env",
            "COMPOSE_FILE=a.yaml:b.yaml\nCOMPOSE_PROJECT_NAME=fromenv\n",
        ),
    ]);
    let out = project.run(&["config", "--services"]).ok();
    assert_eq!(out, "a\nb\n");
    let out = project.run(&["config"]).ok();
    assert!(out.starts_with("name: fromenv\n"), "{out}");
    let env = [("COMPOSE_PROJECT_NAME", "shellwins")];
    let out = project.run_in(".", &["config"], &env, None).ok();
    assert!(out.starts_with("name: shellwins\n"), "{out}");
    let out = project.run(&["-p", "flagwins", "config"]).ok();
    assert!(out.starts_with("name: flagwins\n"), "{out}");
}

#[test]
fn variable_precedence_shell_over_env_file_over_dotenv() {
    let project = Project::new(&[
        (
            "compose.yaml",
            "services:\n  a:\n    image: \"img:${TAG}\"\n    environment: [\"X=${X}\"]\n",
        ),
        (".env", "TAG=dotenv\nX=dotenv\n"),
        ("custom.env", "TAG=custom\n"),
    ]);
    let out = project.run(&["config"]).ok();
    assert!(
        out.contains("image: img:dotenv") && out.contains("X: dotenv"),
        "{out}"
    );
    let out = project.run(&["--env-file", "custom.env", "config"]).ok();
    assert!(out.contains("image: img:custom"), "{out}");
    let out = project
        .run_in(
            ".",
            &["--env-file", "custom.env", "config"],
            &[("TAG", "shell")],
            None,
        )
        .ok();
    assert!(out.contains("image: img:shell"), "{out}");
    let out = project.run_in(".", &["config"], &[("COMPOSE_DISABLE_ENV_FILE", "1")], None);
    let warn = out.stderr();
    assert!(
        warn.contains("The \"TAG\" variable is not set. Defaulting to a blank string."),
        "{warn}"
    );
}

#[test]
fn variables_and_environment_listings() {
    let project = Project::new(&[
        ("compose.yaml", "services:\n  a:\n    image: \"img:${TAG:-1.0}\"\n    environment: [\"X=${NEEDED:?}\", \"Y=${OPT:+alt}\"]\n"),
        (".env", "NEEDED=yes\n"),
    ]);
    let out = project.run(&["config", "--variables"]).ok();
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "REQUIRED", "DEFAULT", "VALUE", "ALTERNATE", "VALUE"]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NEEDED", "true"]),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["OPT", "false", "alt"]),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["TAG", "false", "1.0"]),
        "{out}"
    );
    let env = project
        .run_in(".", &["config", "--environment"], &[("ZED", "1")], None)
        .ok();
    assert!(
        env.contains("NEEDED=yes\n") && env.contains("ZED=1\n"),
        "{env}"
    );
}

#[test]
fn config_hash_ignores_what_compose_ignores() {
    let base = "services:\n  a:\n    image: busybox\n    command: sleep 1\n";
    let project = Project::new(&[("compose.yaml", base)]);
    let first = project.run(&["config", "--hash", "a"]).ok();
    assert!(
        first.starts_with("a ") && first.trim().len() == 2 + 64,
        "{first}"
    );
    project.write(
        "compose.yaml",
        &format!("{base}    scale: 2\n    pull_policy: always\n    profiles: [x]\n"),
    );
    let same = project
        .run(&["--profile", "x", "config", "--hash", "*"])
        .ok();
    assert_eq!(first, same);
    project.write(
        "compose.yaml",
        "services:\n  a:\n    image: busybox\n    command: sleep 2\n",
    );
    let changed = project.run(&["config", "--hash", "a"]).ok();
    assert_ne!(first, changed);
}

#[test]
fn no_interpolate_and_no_path_resolution_keep_the_text() {
    let project = Project::new(&[(
        "compose.yaml",
        "services:\n  a:\n    image: \"img:${TAG:-x}\"\n    volumes: [\"./data:/data\"]\n",
    )]);
    let out = project
        .run(&["config", "--no-interpolate", "--no-path-resolution"])
        .ok();
    assert!(out.contains("image: img:${TAG:-x}"), "{out}");
    assert!(out.contains("source: ./data"), "{out}");
    let out = project.run(&["config"]).ok();
    let root = project.path().to_string_lossy();
    assert!(out.contains(&format!("source: {root}/data")), "{out}");
}

#[test]
fn version_forms() {
    let project = Project::new(&[]);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        project.run(&["version"]).ok(),
        format!("rcompose version v{version}\n")
    );
    assert_eq!(
        project.run(&["version", "--short"]).ok(),
        format!("{version}\n")
    );
    let json: serde_json::Value =
        serde_json::from_str(&project.run(&["version", "--format", "json"]).ok()).unwrap();
    assert_eq!(json["version"], format!("v{version}"));
}
