//! Relative paths in a Compose document made absolute against a base directory.
//!
//! One place for the rule, used for the project itself (path resolution), for services
//! extended from another file and for included projects: what a relative path means
//! depends on the file that wrote it, so it is fixed before documents are combined.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::discover::clean;

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
                if let Some(item) = untagged_mut(item).as_mapping_mut() {
                    resolve_key(item, "file", base, home);
                }
            }
        }
    }
}

/// Resolves the path-valued keys of one service.
pub fn resolve_service(service: &mut Value, base: &Path, home: Option<&Path>) {
    let Some(service) = untagged_mut(service).as_mapping_mut() else {
        return;
    };
    if let Some(build) = get_mapping_mut(service, "build") {
        if is_local_context(build.get("context").and_then(Value::as_str)) {
            resolve_key(build, "context", base, home);
        }
        if let Some(contexts) = get_mapping_mut(build, "additional_contexts") {
            for (_, value) in contexts.iter_mut() {
                if let Some(text) = value.as_str() {
                    if is_local_context(Some(text)) {
                        *value = Value::String(absolute(text, base, home));
                    }
                }
            }
        }
    }
    if let Some(extends) = get_mapping_mut(service, "extends") {
        resolve_key(extends, "file", base, home);
    }
    for_each_entry(service, "env_file", |entry| {
        if let Some(entry) = entry.as_mapping_mut() {
            resolve_key(entry, "path", base, home);
        }
    });
    for_each_entry(service, "label_file", |entry| {
        if let Some(text) = entry.as_str() {
            *entry = Value::String(absolute(text, base, home));
        }
    });
    for_each_entry(service, "volumes", |entry| {
        if let Some(mount) = entry.as_mapping_mut() {
            if mount.get("type").and_then(Value::as_str) == Some("bind") {
                resolve_key(mount, "source", base, home);
            }
        }
    });
    if let Some(develop) = get_mapping_mut(service, "develop") {
        for_each_entry(develop, "watch", |entry| {
            if let Some(rule) = entry.as_mapping_mut() {
                resolve_key(rule, "path", base, home);
            }
        });
    }
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

/// Build contexts may be URLs or git remotes, which stay as written.
fn is_local_context(context: Option<&str>) -> bool {
    let Some(context) = context else {
        return false;
    };
    let remote = context.contains("://")
        || context.starts_with("git@")
        || context.starts_with("github.com/")
        || context.starts_with("docker-image:")
        || context.starts_with("service:")
        || context.starts_with("oci-layout:");
    !remote
}

fn resolve_key(map: &mut Mapping, key: &str, base: &Path, home: Option<&Path>) {
    if let Some(value) = map.get_mut(key) {
        if let Some(text) = value.as_str() {
            *value = Value::String(absolute(text, base, home));
        }
    }
}

fn for_each_entry(map: &mut Mapping, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(Value::Sequence(items)) = map.get_mut(key).map(untagged_mut) {
        items.iter_mut().for_each(|item| f(untagged_mut(item)));
    }
}

fn get_mapping_mut<'a>(map: &'a mut Mapping, key: &str) -> Option<&'a mut Mapping> {
    map.get_mut(key).map(untagged_mut)?.as_mapping_mut()
}

/// `!reset`/`!override` wrap values until the merge stage removes them.
fn untagged_mut(value: &mut Value) -> &mut Value {
    match value {
        Value::Tagged(tagged) => untagged_mut(&mut tagged.value),
        other => other,
    }
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
        assert_eq!(absolute("~user/x", Path::new("/b"), Some(Path::new("/h"))), "/b/~user/x");
    }
}
