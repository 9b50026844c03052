//! Golden tests of `rcompose config`: each folder under `tests/golden/` holds an `input/`
//! project, optional `args` (command-line arguments; `--env K=V` sets a variable instead)
//! and the expected `expected.yaml` and `expected.json`. The project's temporary path is
//! written as `/PROJECT` in the expected files.
//!
//! Regenerate with `RCOMPOSE_UPDATE_GOLDEN=1 cargo test --test config_golden`, then read
//! the diff: the expected files are the specification.

mod common;

use std::path::Path;

use common::{repo_path, Project};

fn copy_tree(from: &Path, project: &Project, prefix: &str) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), project, &format!("{name}/"));
        } else {
            project.write(&name, &std::fs::read_to_string(entry.path()).unwrap());
        }
    }
}

fn run_case(case: &Path) {
    let project = Project::new(&[]);
    copy_tree(&case.join("input"), &project, "");
    let args_text = std::fs::read_to_string(case.join("args")).unwrap_or_default();
    let words: Vec<String> = shell_words::split(&args_text).unwrap();
    let mut args: Vec<&str> = Vec::new();
    let mut env: Vec<(&str, &str)> = Vec::new();
    let mut iter = words.iter();
    while let Some(word) = iter.next() {
        if word == "--env" {
            let (k, v) = iter.next().unwrap().split_once('=').unwrap();
            env.push((k, v));
        } else {
            args.push(word);
        }
    }
    let root = project.path().to_string_lossy().into_owned();
    for format in ["yaml", "json"] {
        let mut full: Vec<&str> = args.clone();
        full.extend(["config", "--format", format]);
        let output = project
            .run_in(".", &full, &env, None)
            .ok()
            .replace(&root, "/PROJECT");
        let expected_path = case.join(format!("expected.{format}"));
        if std::env::var_os("RCOMPOSE_UPDATE_GOLDEN").is_some() {
            std::fs::write(&expected_path, &output).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        assert!(
            output == expected,
            "{}: `config --format {format}` differs from {}\n--- got ---\n{output}\n--- expected ---\n{expected}",
            case.display(),
            expected_path.display()
        );
    }

    // The printed model loads back to the same model: feed the YAML output to `config -f -`.
    let mut first: Vec<&str> = args.clone();
    first.extend(["config", "--format", "yaml"]);
    let printed = project.run_in(".", &first, &env, None).ok();
    let json_direct = {
        let mut a = args.clone();
        a.extend(["config", "--format", "json"]);
        project.run_in(".", &a, &env, None).ok()
    };
    let mut again: Vec<&str> = args.clone();
    again.extend([
        "-f",
        "-",
        "--project-directory",
        ".",
        "config",
        "--format",
        "json",
    ]);
    let reparsed = project.run_in(".", &again, &[], Some(&printed)).ok();
    assert_eq!(
        reparsed,
        json_direct,
        "{}: config output does not parse back to the same model",
        case.display()
    );
}

#[test]
fn golden_config_outputs() {
    let root = repo_path("tests/golden");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "golden cases are missing");
    for case in cases {
        run_case(&case);
    }
}
