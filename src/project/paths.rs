//! Relative paths in a Compose document made absolute against a base directory.
//!
//! One place for the rule, used for the project itself (path resolution), for services
//! extended from another file and for included projects: what a relative path means
//! depends on the file that wrote it, so it is fixed before documents are combined.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::discover::clean;
use super::yaml::untagged;

/// Resolves every path-valued key of a whole document against `base`.
pub fn resolve_document(doc: &mut Value, base: &Path, home: Option<&Path>) {
    let Some(root) = doc.as_mapping_mut() else {
        return;
    };
    if let Some(services) = get_mapping_mut(root, "services") {
        for (_, service) in services.iter_mut() {
            resolve_service(service, base, home);
        }
    }
    for kind in ["secrets", "configs"] {
        if let Some(items) = get_mapping_mut(root, kind) {
            for (_, item) in items.iter_mut() {
                if let Some(item) = untagged(item).as_mapping_mut() {
                    resolve_key(item, "file", base, home);
                }
            }
        }
    }
}

/// Resolves the path-valued keys of one service: build contexts and SSH keys, env and
/// label files, bind-mount sources and watched paths. `home` expands `~`; without it,
/// `~` paths are kept for a later pass.
pub fn resolve_service(service: &mut Value, base: &Path, home: Option<&Path>) {
    let Some(service) = untagged(service).as_mapping_mut() else {
        return;
    };
    let fix = |path: &mut Value| resolve_path(path, base, home);
    if let Some(build) = service.get_mut("build").map(untagged) {
        resolve_build(build, &fix);
    }
    if let Some(env_files) = service.get_mut("env_file").map(untagged) {
        for_each_entry(env_files, |entry| match entry.as_mapping_mut() {
            Some(entry) => entry.get_mut("path").into_iter().for_each(&fix),
            None => fix(entry),
        });
    }
    if let Some(label_files) = service.get_mut("label_file").map(untagged) {
        for_each_entry(label_files, &fix);
    }
    if let Some(volumes) = service.get_mut("volumes").map(untagged) {
        for_each_entry(volumes, |mount| {
            if mount.get("type").and_then(Value::as_str) == Some("bind") {
                mount.get_mut("source").into_iter().for_each(&fix);
            }
        });
    }
    let watch = service.get_mut("develop").and_then(|d| d.get_mut("watch"));
    if let Some(rules) = watch.map(untagged) {
        for_each_entry(rules, |rule| {
            rule.get_mut("path").into_iter().for_each(&fix)
        });
    }
}

fn resolve_build(build: &mut Value, fix: &dyn Fn(&mut Value)) {
    let context_fix = |context: &mut Value| {
        if is_local_context(context.as_str()) {
            fix(context);
        }
    };
    let Some(build) = build.as_mapping_mut() else {
        context_fix(build);
        return;
    };
    build.get_mut("context").into_iter().for_each(context_fix);
    match build.get_mut("additional_contexts").map(untagged) {
        Some(Value::Mapping(contexts)) => contexts.values_mut().for_each(context_fix),
        Some(Value::Sequence(contexts)) => {
            for entry in contexts {
                resolve_assignment(entry, &context_fix);
            }
        }
        _ => {}
    }
    match build.get_mut("ssh").map(untagged) {
        Some(Value::Mapping(keys)) => keys.values_mut().for_each(fix),
        Some(Value::Sequence(keys)) => {
            for entry in keys {
                resolve_assignment(entry, fix);
            }
        }
        _ => {}
    }
}

/// Resolves the value of a `name=path` list entry.
fn resolve_assignment(entry: &mut Value, fix: &dyn Fn(&mut Value)) {
    let Some((name, value)) = entry.as_str().and_then(|s| s.split_once('=')) else {
        return;
    };
    let (name, mut value) = (name.to_string(), Value::from(value));
    fix(&mut value);
    if let Some(value) = value.as_str() {
        *entry = Value::from(format!("{name}={value}"));
    }
}

fn resolve_path(path: &mut Value, base: &Path, home: Option<&Path>) {
    let Some(text) = path.as_str() else {
        return;
    };
    if text.is_empty() || (text.starts_with('~') && home.is_none()) {
        return;
    }
    *path = Value::String(absolute(text, base, home));
}

/// Makes `path` absolute: `~` is the home directory, relative paths hang off `base`.
pub fn absolute(path: &str, base: &Path, home: Option<&Path>) -> String {
    let expanded: PathBuf = match (path.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            home.join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(path),
    };
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        base.join(expanded)
    };
    clean(&joined).to_string_lossy().into_owned()
}

/// Build contexts may be URLs, git remotes or references to other stages, images and
/// services, which stay as written.
fn is_local_context(context: Option<&str>) -> bool {
    let Some(context) = context else {
        return false;
    };
    let remote = context.contains("://")
        || context.starts_with("git@")
        || context.starts_with("github.com/")
        || context.starts_with("docker-image:")
        || context.starts_with("service:")
        || context.starts_with("target:")
        || context.starts_with("oci-layout:");
    !remote
}

fn resolve_key(map: &mut Mapping, key: &str, base: &Path, home: Option<&Path>) {
    if let Some(value) = map.get_mut(key) {
        resolve_path(value, base, home);
    }
}

/// Applies `f` to a single value or to each entry of a sequence.
fn for_each_entry(value: &mut Value, mut f: impl FnMut(&mut Value)) {
    match value {
        Value::Sequence(entries) => entries.iter_mut().map(untagged).for_each(f),
        single => f(single),
    }
}

fn get_mapping_mut<'a>(map: &'a mut Mapping, key: &str) -> Option<&'a mut Mapping> {
    map.get_mut(key).map(untagged)?.as_mapping_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn resolves_service_and_resource_paths() {
        let mut doc = yaml(
            r#"
services:
  web:
    build: {context: ./app, additional_contexts: {a: ../lib, b: "docker-image://x"}}
    env_file: [{path: .env.web, required: true}]
    label_file: [labels.txt]
    volumes:
      - {type: bind, source: ./data, target: /data}
      - {type: bind, source: ~/cache, target: /cache}
      - {type: volume, source: named, target: /n}
  remote:
    build: {context: "https://github.com/x/y.git#main"}
secrets:
  s: {file: ./secret.txt}
"#,
        );
        resolve_document(&mut doc, Path::new("/p/proj"), Some(Path::new("/home/u")));
        let expected = yaml(
            r#"
services:
  web:
    build: {context: /p/proj/app, additional_contexts: {a: /p/lib, b: "docker-image://x"}}
    env_file: [{path: /p/proj/.env.web, required: true}]
    label_file: [/p/proj/labels.txt]
    volumes:
      - {type: bind, source: /p/proj/data, target: /data}
      - {type: bind, source: /home/u/cache, target: /cache}
      - {type: volume, source: named, target: /n}
  remote:
    build: {context: "https://github.com/x/y.git#main"}
secrets:
  s: {file: /p/proj/secret.txt}
"#,
        );
        assert_eq!(doc, expected);
    }

    #[test]
    fn absolute_paths_are_cleaned_and_kept() {
        assert_eq!(absolute("/a/./b/../c", Path::new("/x"), None), "/a/c");
        assert_eq!(absolute(".", Path::new("/x/y"), None), "/x/y");
        assert_eq!(
            absolute("~user/x", Path::new("/b"), Some(Path::new("/h"))),
            "/b/~user/x"
        );
    }
}
