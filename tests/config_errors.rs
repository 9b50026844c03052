//! Bad input: every error names the file (and the service and key where it applies),
//! exits 1 (2 for usage errors), never panics and prints no model.

mod common;

use common::Project;

fn config_error(files: &[(&str, &str)], args: &[&str]) -> String {
    let project = Project::new(files);
    let mut full = args.to_vec();
    full.push("config");
    let run = project.run(&full);
    assert!(
        run.stdout().is_empty(),
        "no model printed on error: {}",
        run.stdout()
    );
    run.fails(1)
}

fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
}

#[test]
fn unknown_key_names_file_service_and_key() {
    let err = config_error(
        &[("compose.yaml", "services:\n  web:\n    imgae: nginx\n")],
        &[],
    );
    assert_contains(
        &err,
        &[
            "compose.yaml",
            "services.web",
            "additional properties 'imgae' not allowed",
        ],
    );
}

#[test]
fn unknown_key_in_override_file_names_that_file() {
    let err = config_error(
        &[
            ("compose.yaml", "services:\n  web:\n    image: nginx\n"),
            (
                "compose.override.yaml",
                "services:\n  web:\n    portz: [80]\n",
            ),
        ],
        &[],
    );
    assert_contains(&err, &["compose.override.yaml", "services.web", "'portz'"]);
}

#[test]
fn yaml_syntax_errors_give_line_and_column() {
    let err = config_error(
        &[("compose.yaml", "services:\n  web:\n    image: \"nginx\n")],
        &[],
    );
    assert_contains(&err, &["compose.yaml", "line"]);
    let err = config_error(
        &[("compose.yaml", "services:\n\tweb:\n    image: nginx\n")],
        &[],
    );
    assert_contains(&err, &["compose.yaml", "line 2", "tab"]);
    let err = config_error(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: a\n   image: b\n",
        )],
        &[],
    );
    assert_contains(&err, &["compose.yaml", "line"]);
}

#[test]
fn wrong_types_name_the_key() {
    let err = config_error(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: nginx\n    privileged: [1]\n",
        )],
        &[],
    );
    assert_contains(&err, &["compose.yaml", "services.web.privileged"]);
    let err = config_error(&[("compose.yaml", "services: [web]\n")], &[]);
    assert_contains(&err, &["compose.yaml", "services"]);
}

#[test]
fn bad_ports_durations_and_sizes() {
    let err = config_error(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: nginx\n    ports: [\"80:abc\"]\n",
        )],
        &[],
    );
    assert_contains(&err, &["compose.yaml", "services.web.ports", "80:abc"]);
    let err = config_error(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: nginx\n    stop_grace_period: 10 minutes\n",
        )],
        &[],
    );
    assert_contains(
        &err,
        &[
            "compose.yaml",
            "services.web.stop_grace_period",
            "10 minutes",
        ],
    );
    let err = config_error(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: nginx\n    mem_limit: 12zb\n",
        )],
        &[],
    );
    assert_contains(&err, &["compose.yaml", "services.web.mem_limit", "12zb"]);
}

#[test]
fn missing_required_variable_and_bad_interpolation() {
    let err = config_error(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: \"nginx:${TAG:?set TAG first}\"\n",
        )],
        &[],
    );
    assert_contains(
        &err,
        &["compose.yaml", "services.web.image", "TAG", "set TAG first"],
    );
    let err = config_error(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: \"nginx:${TAG\"\n",
        )],
        &[],
    );
    assert_contains(
        &err,
        &[
            "compose.yaml",
            "services.web.image",
            "invalid interpolation format",
        ],
    );
}

#[test]
fn missing_files_are_named() {
    let err = config_error(
        &[("compose.yaml", "services:\n  web:\n    image: nginx\n")],
        &["-f", "nope.yaml"],
    );
    assert_contains(&err, &["nope.yaml"]);
    let err = config_error(
        &[("compose.yaml", "services:\n  web:\n    image: nginx\n")],
        &["--env-file", "missing.env"],
    );
    assert_contains(&err, &["missing.env"]);
    let err = config_error(
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: nginx\n    env_file: web.env\n",
        )],
        &[],
    );
    assert_contains(&err, &["services.web.env_file", "web.env"]);
    let project = Project::new(&[("other.txt", "")]);
    let err = project.run(&["config"]).fails(1);
    assert_contains(&err, &["no configuration file provided"]);
}

#[test]
fn consistency_errors_are_all_reported() {
    let err = config_error(
        &[(
            "compose.yaml",
            "services:\n  a:\n    network_mode: host\n    networks: [front]\n  b:\n    image: x\n    volumes: [data:/d]\n    secrets: [s]\n",
        )],
        &[],
    );
    assert_contains(
        &err,
        &[
            "compose.yaml",
            "services.a.image: the service has neither an image nor a build context",
            "services.a.network_mode",
            "undefined network \"front\"",
            "undefined volume \"data\"",
            "undefined secret \"s\"",
        ],
    );
}

#[test]
fn dependency_cycles_name_the_path() {
    let err = config_error(
        &[(
            "compose.yaml",
            "services:\n  s1: {image: x, depends_on: [s2]}\n  s2: {image: x, depends_on: [s3]}\n  s3: {image: x, depends_on: [s1]}\n",
        )],
        &[],
    );
    assert_contains(&err, &["dependency cycle detected: s1 -> s2 -> s3 -> s1"]);
}

#[test]
fn extends_and_include_cycles() {
    let err = config_error(
        &[(
            "compose.yaml",
            "services:\n  a: {image: x, extends: b}\n  b: {image: x, extends: a}\n",
        )],
        &[],
    );
    assert_contains(&err, &["compose.yaml", "cycle"]);
    let err = config_error(
        &[
            ("compose.yaml", "include: [other.yaml]\nservices: {}\n"),
            ("other.yaml", "include: [compose.yaml]\nservices: {}\n"),
        ],
        &[],
    );
    assert_contains(&err, &["include cycle detected"]);
}

#[test]
fn alias_bombs_fail_fast() {
    let mut bomb = String::from(
        "x-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = 'a';
    for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
        bomb.push_str(&format!("x-{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        prev = name;
    }
    bomb.push_str("services:\n  web:\n    image: nginx\n");
    let err = config_error(&[("compose.yaml", &bomb)], &[]);
    assert_contains(&err, &["compose.yaml", "excessive aliasing"]);
}

#[test]
fn invalid_project_names() {
    let err = config_error(
        &[("compose.yaml", "services:\n  web:\n    image: nginx\n")],
        &["-p", "Bad Name"],
    );
    assert_contains(&err, &["\"Bad Name\" is not a valid project name"]);
    let err = config_error(
        &[(
            "compose.yaml",
            "name: \"-bad\"\nservices:\n  web:\n    image: nginx\n",
        )],
        &[],
    );
    assert_contains(&err, &["compose.yaml", "not a valid project name"]);
}

#[test]
fn usage_errors_exit_2() {
    let project = Project::new(&[("compose.yaml", "services:\n  web:\n    image: nginx\n")]);
    project.run(&["config", "--format", "toml"]).fails(2);
    project.run(&["no-such-command"]).fails(2);
}

#[test]
fn huge_and_binary_files_are_refused_cleanly() {
    let project = Project::new(&[]);
    let big = "#".repeat(40 * 1024 * 1024);
    project.write("compose.yaml", &big);
    let err = project.run(&["config"]).fails(1);
    assert_contains(&err, &["compose.yaml", "larger than"]);
    std::fs::write(
        project.path().join("compose.yaml"),
        [0xff, 0xfe, 0x00, 0x41],
    )
    .unwrap();
    let err = project.run(&["config"]).fails(1);
    assert_contains(&err, &["compose.yaml"]);
}
