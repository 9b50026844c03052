//! Top-level `include`: other Compose projects whose resources join this one.
//!
//! Each entry is loaded as a project of its own (its own directory and env files) by the
//! loader; this module reads the entries, detects include cycles and adds the included
//! resources, refusing a resource that the including file defines differently.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::discover::clean;

/// The resource sections an included project contributes.
const RESOURCE_KINDS: [&str; 5] = ["services", "networks", "volumes", "secrets", "configs"];

#[derive(Debug, thiserror::Error)]
pub enum IncludeError {
    #[error("include.{index}: {message}")]
    Entry { index: usize, message: String },
    #[error("include cycle detected: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("included file {file} defines {kind}.{name}, which conflicts with an existing definition of the same name")]
    Conflict {
        file: String,
        kind: &'static str,
        name: String,
    },
}

/// One `include` entry with its paths made absolute and its defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct IncludeEntry {
    pub files: Vec<PathBuf>,
    pub project_directory: PathBuf,
    pub env_files: Vec<PathBuf>,
}

/// Removes `include` from the document and returns its entries. Relative paths are taken
/// from the including file's directory.
pub fn take_entries(
    doc: &mut Value,
    including_file: &Path,
    fallback_dir: &Path,
) -> Result<Vec<IncludeEntry>, IncludeError> {
    let Some(root) = doc.as_mapping_mut() else {
        return Ok(Vec::new());
    };
    let Some(raw) = root.remove("include") else {
        return Ok(Vec::new());
    };
    let base = including_file.parent().unwrap_or(fallback_dir);
    let items = match raw {
        Value::Sequence(items) => items,
        Value::Null => Vec::new(),
        _ => {
            return Err(IncludeError::Entry {
                index: 0,
                message: "include must be a list".into(),
            })
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            entry(item, base).map_err(|message| IncludeError::Entry { index, message })
        })
        .collect()
}

fn entry(item: &Value, base: &Path) -> Result<IncludeEntry, String> {
    let (paths, project_directory, env_files) = match item {
        Value::String(path) => (vec![path.clone()], None, None),
        Value::Mapping(map) => {
            for key in map.keys() {
                let key = key.as_str().unwrap_or_default();
                if !matches!(key, "path" | "project_directory" | "env_file")
                    && !key.starts_with("x-")
                {
                    return Err(format!("additional properties '{key}' not allowed"));
                }
            }
            let paths = string_or_list(map.get("path"), "path")?;
            let dir = match map.get("project_directory") {
                None | Some(Value::Null) => None,
                Some(Value::String(d)) => Some(d.clone()),
                Some(_) => return Err("project_directory must be a string".into()),
            };
            let env_files = match map.get("env_file") {
                None | Some(Value::Null) => None,
                value => Some(string_or_list(value, "env_file")?),
            };
            (paths, dir, env_files)
        }
        _ => return Err("must be a path or a mapping with `path`".into()),
    };
    if paths.is_empty() {
        return Err("path is required".into());
    }
    let files: Vec<PathBuf> = paths.iter().map(|p| absolute(base, p)).collect();
    let project_directory = match project_directory {
        Some(dir) => absolute(base, &dir),
        None => files[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| base.to_path_buf()),
    };
    let env_files = match env_files {
        Some(list) => list.iter().map(|p| absolute(base, p)).collect(),
        None => {
            let default = project_directory.join(".env");
            if default.is_file() {
                vec![default]
            } else {
                Vec::new()
            }
        }
    };
    for file in &files {
        if !file.is_file() {
            return Err(format!("included file {} not found", file.display()));
        }
    }
    Ok(IncludeEntry {
        files,
        project_directory,
        env_files,
    })
}

fn string_or_list(value: Option<&Value>, key: &str) -> Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(String::from)
                    .ok_or_else(|| format!("{key} entries must be strings"))
            })
            .collect(),
        Some(_) => Err(format!("{key} must be a string or a list of strings")),
    }
}

fn absolute(base: &Path, path: &str) -> PathBuf {
    clean(&base.join(path))
}

/// The cycle an entry would close, if one of its files is already being loaded.
pub fn cycle(stack: &[PathBuf], files: &[PathBuf]) -> Option<IncludeError> {
    let file = files.iter().find(|f| stack.contains(f))?;
    let start = stack.iter().position(|s| s == file)?;
    let mut chain: Vec<String> = stack[start..]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    chain.push(file.display().to_string());
    Some(IncludeError::Cycle(chain))
}

/// Adds the included project's resources to `doc`. The same definition twice is fine
/// (diamond includes); a different one is a conflict.
pub fn add_resources(
    mut doc: Value,
    included: Value,
    entry: &IncludeEntry,
) -> Result<Value, IncludeError> {
    let Value::Mapping(mut included) = included else {
        return Ok(doc);
    };
    if !doc.is_mapping() {
        doc = Value::Mapping(Mapping::new());
    }
    let Some(root) = doc.as_mapping_mut() else {
        return Ok(doc);
    };
    for kind in RESOURCE_KINDS {
        let Some(Value::Mapping(resources)) = included.remove(kind) else {
            continue;
        };
        let target = root
            .entry(Value::from(kind))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if !target.is_mapping() {
            *target = Value::Mapping(Mapping::new());
        }
        let Some(target) = target.as_mapping_mut() else {
            continue;
        };
        for (name, definition) in resources {
            match target.get(&name) {
                Some(existing) if *existing != definition => {
                    return Err(IncludeError::Conflict {
                        file: entry.files[0].display().to_string(),
                        kind,
                        name: name.as_str().unwrap_or_default().to_string(),
                    })
                }
                Some(_) => {}
                None => {
                    target.insert(name, definition);
                }
            }
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn entries_resolve_paths_and_default_env_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/compose.yaml"), "services: {}").unwrap();
        fs::write(root.join("sub/.env"), "A=1").unwrap();
        fs::write(root.join("other.yaml"), "services: {}").unwrap();
        let mut doc = yaml(
            "include:\n  - sub/compose.yaml\n  - path: [other.yaml]\n    project_directory: sub\n    env_file: x.env\nservices: {}\n",
        );
        let entries = take_entries(&mut doc, &root.join("compose.yaml"), root).unwrap();
        assert!(doc.get("include").is_none());
        assert_eq!(entries[0].files, vec![root.join("sub/compose.yaml")]);
        assert_eq!(entries[0].project_directory, root.join("sub"));
        assert_eq!(entries[0].env_files, vec![root.join("sub/.env")]);
        assert_eq!(entries[1].project_directory, root.join("sub"));
        assert_eq!(entries[1].env_files, vec![root.join("x.env")]);
    }

    #[test]
    fn missing_included_file_and_unknown_key_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let mut doc = yaml("include: [nope.yaml]");
        let err = take_entries(&mut doc, &tmp.path().join("c.yaml"), tmp.path()).unwrap_err();
        assert!(
            err.to_string().contains("include.0: included file"),
            "{err}"
        );
        let mut doc = yaml("include: [{path: a.yaml, pth: b}]");
        let err = take_entries(&mut doc, &tmp.path().join("c.yaml"), tmp.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("additional properties 'pth' not allowed"),
            "{err}"
        );
    }

    #[test]
    fn cycles_are_named() {
        let stack = vec![PathBuf::from("/a.yaml"), PathBuf::from("/b.yaml")];
        let err = cycle(&stack, &[PathBuf::from("/a.yaml")]).unwrap();
        assert_eq!(
            err.to_string(),
            "include cycle detected: /a.yaml -> /b.yaml -> /a.yaml"
        );
        assert!(cycle(&stack, &[PathBuf::from("/c.yaml")]).is_none());
    }

    #[test]
    fn resources_are_added_and_conflicts_refused() {
        let entry = IncludeEntry {
            files: vec![PathBuf::from("/sub/compose.yaml")],
            project_directory: PathBuf::from("/sub"),
            env_files: vec![],
        };
        let doc = yaml("services: {web: {image: web}}");
        let included = yaml("services: {db: {image: db}}\nvolumes: {data: {}}");
        let merged = add_resources(doc.clone(), included, &entry).unwrap();
        assert_eq!(
            merged,
            yaml("services: {web: {image: web}, db: {image: db}}\nvolumes: {data: {}}")
        );
        let clash = yaml("services: {web: {image: other}}");
        let err = add_resources(doc, clash, &entry).unwrap_err();
        assert!(err.to_string().contains("services.web"), "{err}");
    }
}
