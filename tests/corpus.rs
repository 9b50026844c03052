//! Every Compose file of the awesome-compose corpus loads, and its `config` output loads
//! back to the same model.

use std::path::{Path, PathBuf};

use rcompose::project::discover::{self, ProjectFlags};
use rcompose::project::loader::{self, LoadSettings};
use rcompose::project::render::{render, Format};

fn corpus_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/awesome-compose");
    let mut files = Vec::new();
    for sample in std::fs::read_dir(&root).expect("the awesome-compose corpus at ../shared/corpus")
    {
        let sample = sample.unwrap().path();
        for name in ["compose.yaml", "compose.yml"] {
            if sample.join(name).is_file() {
                files.push(sample.join(name));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_corpus_file_loads_and_round_trips() {
    let files = corpus_files();
    assert_eq!(files.len(), 39, "the corpus has 39 samples");
    let env = discover::Environment::new();
    let mut failures = Vec::new();
    for file in &files {
        let dir = file.parent().unwrap();
        let flags = ProjectFlags {
            files: vec![file.to_string_lossy().into_owned()],
            project_name: Some("corpus".into()),
            ..Default::default()
        };
        let inputs = discover::resolve(&flags, &env, dir).unwrap();
        let loaded = match loader::load(&inputs, &LoadSettings::default()) {
            Ok(loaded) => loaded,
            Err(err) => {
                failures.push(format!("{}: {err}", file.display()));
                continue;
            }
        };
        let printed = render(&loaded.project, Format::Yaml, true).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("compose.yaml");
        std::fs::write(&copy, &printed).unwrap();
        let flags = ProjectFlags {
            files: vec![copy.to_string_lossy().into_owned()],
            project_directory: Some(dir.to_path_buf()),
            ..Default::default()
        };
        let inputs = discover::resolve(&flags, &env, dir).unwrap();
        match loader::load(&inputs, &LoadSettings::default()) {
            Ok(again) if again.project == loaded.project => {}
            Ok(_) => failures.push(format!(
                "{}: config output loads to a different model",
                file.display()
            )),
            Err(err) => failures.push(format!(
                "{}: config output does not load: {err}",
                file.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
