//! Inputs that once crashed, hung or blew up the memory of the loader, found by fuzzing
//! it (`fuzz/`, target `load`) or by probing what the fuzzer showed to be reachable.
//! Each must now load to an error or a model quickly, without panicking, and whatever
//! loads must also print.

use std::path::Path;
use std::time::{Duration, Instant};

use rcompose::project::discover::{ConfigSource, Environment, ProjectInputs};
use rcompose::project::loader::{self, LoadError, LoadSettings, Loaded};
use rcompose::project::render::{self, Format};

/// The inputs the `load` fuzz target builds around one Compose file.
fn inputs(source: ConfigSource, project_directory: &Path) -> ProjectInputs {
    let mut environment = Environment::new();
    environment.insert("TAG".into(), "1.0".into());
    environment.insert("EMPTY".into(), String::new());
    ProjectInputs {
        files: vec![source],
        project_directory: project_directory.to_path_buf(),
        explicit_name: Some("fuzz".into()),
        profiles: vec!["*".into()],
        shell_environment: environment.clone(),
        environment,
        env_files: Vec::new(),
    }
}

/// Loads, and renders what loaded, in less than `limit` (debug builds are slow: the
/// limits leave a wide margin, they only catch runaway work).
fn load_within(inputs: &ProjectInputs, limit: Duration) -> Result<Loaded, LoadError> {
    let start = Instant::now();
    let loaded = loader::load(inputs, &LoadSettings::default());
    if let Ok(loaded) = &loaded {
        render::render(&loaded.project, Format::Yaml, true).expect("a loaded model renders");
    }
    let took = start.elapsed();
    assert!(took < limit, "loading took {took:?}, more than {limit:?}");
    loaded
}

/// Loads `text` the way the fuzz target does: an inline file.
fn load_inline(text: &str) -> Result<Loaded, LoadError> {
    let source = ConfigSource::Inline {
        name: "fuzz.yaml".into(),
        content: text.to_string(),
    };
    load_within(&inputs(source, Path::new("/nonexistent/fuzz")), LIMIT)
}

/// Loads `text` from a real file: the loader resolves `extends` and `include` only for
/// files read from disk.
fn load_file(text: &str) -> Result<Loaded, LoadError> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("compose.yaml");
    std::fs::write(&path, text).expect("write compose.yaml");
    load_within(&inputs(ConfigSource::Path(path), dir.path()), LIMIT)
}

const LIMIT: Duration = Duration::from_secs(20);

fn error_of(outcome: Result<Loaded, LoadError>) -> String {
    match outcome {
        Ok(_) => panic!("expected an error"),
        Err(err) => err.to_string(),
    }
}

/// A port range becomes one mapping per port: two full ranges reused by two services
/// through an alias expanded to 260 000 mappings (15 s and 1.7 GB for a 100-byte file
/// under the fuzzer).
#[test]
fn port_ranges_reused_by_aliases_are_bounded() {
    let text = "x-p: &p ['1-65535:1-65535', '1-65535:1-65535/udp']\n\
                services: {a: {image: x, ports: *p}, b: {image: x, ports: *p}}\n";
    let err = error_of(load_inline(text));
    assert!(
        err.starts_with("fuzz.yaml: services.a.ports.1: the ports of this file expand to more than 65536 port mappings"),
        "{err}"
    );
}

/// The same through several YAML documents of one file, which the loader canonicalizes
/// one by one: the budget holds only once the loader shares one `PortBudget` between
/// them (`canonical::canonicalize_with`).
#[test]
fn port_ranges_split_across_documents_are_bounded() {
    let documents: Vec<String> = (1..=3)
        .map(|n| format!("services: {{a: {{image: x, ports: ['127.0.0.{n}:1-65535:1-65535']}}}}\n"))
        .collect();
    let err = error_of(load_inline(&documents.join("---\n")));
    assert!(err.contains("port mappings"), "{err}");
}

/// A chain of `extends` declared top down was resolved by recursion, one level per base:
/// a few hundred levels overflowed a test thread's stack and aborted the process.
#[test]
fn long_extends_chains_fail_instead_of_overflowing_the_stack() {
    let mut text = String::from("services:\n");
    for level in (1..=2000).rev() {
        text.push_str(&format!("  s{level}: {{extends: s{}}}\n", level - 1));
    }
    text.push_str("  s0: {image: x}\n");
    let err = error_of(load_file(&text));
    assert!(
        err.contains("`services.s2000.extends` starts a chain of more than 64 services"),
        "{err}"
    );
}

/// Every extending service gets a full copy of its base: a base inflated to about
/// 200 000 nodes by aliases, extended by 60 services, grew to 12 million nodes.
#[test]
fn extending_a_large_base_many_times_is_bounded() {
    let mut text = String::from(
        "x-a: &a {a: 1, b: 1, c: 1, d: 1, e: 1, f: 1, g: 1, h: 1, i: 1, j: 1}\n\
         x-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
         x-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
         x-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
         services:\n  base: {image: x, x-big: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}\n",
    );
    for service in 0..60 {
        text.push_str(&format!("  s{service}: {{extends: base}}\n"));
    }
    let err = error_of(load_file(&text));
    assert!(
        err.contains("brings what `extends` copies from base services to more than 2000000 values"),
        "{err}"
    );
}

/// A few extensions of the same base still load.
#[test]
fn extending_a_base_a_few_times_loads() {
    let text = "services:\n  base: {image: x, ports: ['8000-8010:8000-8010']}\n  \
                one: {extends: base}\n  two: {extends: one}\n";
    let loaded = load_file(text).expect("loads");
    assert_eq!(loaded.project.services.len(), 3);
}
