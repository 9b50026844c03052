//! The whole load pipeline on arbitrary text: it may reject the input, never panic, hang
//! or blow up memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcompose::project::discover::{ConfigSource, Environment, ProjectInputs};
use rcompose::project::loader::{self, LoadSettings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut environment = Environment::new();
    environment.insert("TAG".into(), "1.0".into());
    environment.insert("EMPTY".into(), String::new());
    let inputs = ProjectInputs {
        files: vec![ConfigSource::Inline {
            name: "fuzz.yaml".into(),
            content: text.to_string(),
        }],
        project_directory: "/nonexistent/fuzz".into(),
        explicit_name: Some("fuzz".into()),
        profiles: vec!["*".into()],
        shell_environment: environment.clone(),
        environment,
        env_files: Vec::new(),
    };
    if let Ok(loaded) = loader::load(&inputs, &LoadSettings::default()) {
        // Whatever loads must also print.
        let _ = rcompose::project::render::render(&loaded.project, rcompose::project::render::Format::Yaml, true);
    }
});
