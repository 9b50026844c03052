//! The load pipeline: runs the stages in order and puts the file name on every error.
//!
//! Each Compose file goes through `yaml` → `interpolate` → `canonical` → `extends` →
//! `include` on its own, and is checked against the model on its own, so that a mistake is
//! reported with the file that holds it. The files are then merged, paths resolved, the
//! model decoded, profiles applied, and the result normalized and validated.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_yaml::{Mapping, Value};

use super::discover::{self, ConfigSource, Environment, ProjectInputs};
use super::model::{self, Project, Service};
use super::{
    canonical, extends, include, interpolate, merge, normalize, paths, profiles, validate, yaml,
};

/// Which stages run, as `rcompose config`'s `--no-*` flags choose.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub interpolate: bool,
    pub normalize: bool,
    pub resolve_paths: bool,
    pub resolve_env_files: bool,
    pub consistency: bool,
    /// Services named on the command line; they enable their own profiles.
    pub targeted_services: Vec<String>,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            interpolate: true,
            normalize: true,
            resolve_paths: true,
            resolve_env_files: true,
            consistency: true,
            targeted_services: Vec::new(),
        }
    }
}

/// A loaded project and what was noticed on the way.
#[derive(Debug)]
pub struct Loaded {
    pub project: Project,
    /// Services switched off by profiles, for commands that need to name them.
    pub disabled_services: IndexMap<String, Service>,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Discover(#[from] discover::DiscoverError),
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: the file is larger than the {limit} bytes a Compose file may have")]
    TooLarge { file: String, limit: usize },
    #[error("{file}: empty compose file")]
    Empty { file: String },
    #[error("{file}: {source}")]
    Yaml {
        file: String,
        source: yaml::YamlError,
    },
    #[error("{file}: {source}")]
    Interpolate {
        file: String,
        source: interpolate::InterpolateError,
    },
    #[error("{file}: {source}")]
    Canonical {
        file: String,
        source: canonical::CanonicalError,
    },
    #[error("{file}: {source}")]
    Merge {
        file: String,
        source: merge::MergeError,
    },
    /// The extends error names the files involved itself.
    #[error("{source}")]
    Extends {
        file: String,
        source: Box<extends::ExtendsError>,
    },
    #[error("{file}: {source}")]
    Include {
        file: String,
        source: include::IncludeError,
    },
    #[error("{file}: {source}")]
    Model {
        file: String,
        source: model::ModelError,
    },
    #[error("{file}: {message}")]
    InvalidName { file: String, message: String },
    #[error(transparent)]
    Profiles(#[from] profiles::ProfilesError),
    #[error("{file}: {source}")]
    Normalize {
        file: String,
        source: normalize::NormalizeError,
    },
    #[error("validating {file}: {source}")]
    Validate {
        file: String,
        source: validate::ValidateError,
    },
}

/// Loads, checks and normalizes the project the inputs describe.
pub fn load(inputs: &ProjectInputs, settings: &LoadSettings) -> Result<Loaded, LoadError> {
    let mut pipeline = Pipeline::new(settings, inputs);
    let doc = pipeline.load_files(
        &inputs.files,
        &inputs.project_directory,
        &inputs.environment,
    )?;
    let primary = inputs
        .files
        .first()
        .map(ConfigSource::display_name)
        .unwrap_or_default();

    let name = project_name(inputs, &doc, &primary)?;
    let mut doc = doc;
    if let Some(root) = doc.as_mapping_mut() {
        root.insert(Value::from("name"), Value::from(name));
    }
    let mut project = match model::from_value(doc) {
        Ok(project) => project,
        Err(source) => return Err(pipeline.blame_model_error(inputs, &primary, source)),
    };
    if project.version.take().is_some() {
        pipeline.warn_all(vec![format!(
            "{primary}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion"
        )]);
    }

    let selection = profiles::apply(project, &inputs.profiles, &settings.targeted_services)?;
    let mut project = selection.project;
    if settings.normalize {
        let options = normalize::Options {
            project_directory: &inputs.project_directory,
            environment: &inputs.environment,
            resolve_env_files: settings.resolve_env_files,
        };
        normalize::normalize(&mut project, &options).map_err(|source| LoadError::Normalize {
            file: primary.clone(),
            source,
        })?;
    }
    if settings.consistency {
        validate::validate(&project).map_err(|source| LoadError::Validate {
            file: primary.clone(),
            source,
        })?;
    }
    project.environment = inputs.environment.clone();
    Ok(Loaded {
        project,
        disabled_services: selection.disabled,
        warnings: pipeline.warnings,
    })
}

/// `-p`/`COMPOSE_PROJECT_NAME`, else the file's `name:`, else the project directory's name.
fn project_name(inputs: &ProjectInputs, doc: &Value, primary: &str) -> Result<String, LoadError> {
    if let Some(name) = &inputs.explicit_name {
        return Ok(name.clone());
    }
    let invalid = |e: discover::DiscoverError| LoadError::InvalidName {
        file: primary.to_string(),
        message: e.to_string(),
    };
    if let Some(name) = doc
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        discover::check_project_name(name).map_err(invalid)?;
        return Ok(name.to_string());
    }
    let dir_name = inputs
        .project_directory
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = discover::normalize_project_name(&dir_name);
    discover::check_project_name(&name).map_err(invalid)?;
    Ok(name)
}

struct Pipeline<'s> {
    settings: &'s LoadSettings,
    home: Option<PathBuf>,
    /// Shell variables win over any env file, including an included project's.
    shell_environment: Environment,
    /// Other files read for `extends`, by path, already interpolated and canonical.
    extends_cache: HashMap<PathBuf, Value>,
    /// The include chain, to name a cycle.
    include_stack: Vec<PathBuf>,
    /// Standard input can be read once; kept for a second pass.
    stdin_text: Option<String>,
    /// Decode every file on its own, to name the file that holds a model error. Off on
    /// the normal path: the merged model is decoded anyway, and twice costs time.
    check_each_file: bool,
    warnings: Vec<String>,
}

impl<'s> Pipeline<'s> {
    fn new(settings: &'s LoadSettings, inputs: &ProjectInputs) -> Self {
        Pipeline {
            settings,
            home: std::env::var_os("HOME").map(PathBuf::from),
            shell_environment: inputs.shell_environment.clone(),
            extends_cache: HashMap::new(),
            include_stack: Vec::new(),
            stdin_text: None,
            check_each_file: false,
            warnings: Vec::new(),
        }
    }

    /// The merged model did not decode: load again checking each file on its own, so the
    /// error names the file that holds the mistake (the primary file if none does alone).
    fn blame_model_error(
        &mut self,
        inputs: &ProjectInputs,
        primary: &str,
        source: model::ModelError,
    ) -> LoadError {
        self.check_each_file = true;
        self.extends_cache.clear();
        self.include_stack.clear();
        match self.load_files(
            &inputs.files,
            &inputs.project_directory,
            &inputs.environment,
        ) {
            Err(err) => err,
            Ok(_) => LoadError::Model {
                file: primary.to_string(),
                source,
            },
        }
    }

    fn read(&mut self, source: &ConfigSource) -> Result<String, LoadError> {
        if let ConfigSource::Stdin = source {
            if let Some(text) = &self.stdin_text {
                return Ok(text.clone());
            }
            let text = read_source(source)?;
            self.stdin_text = Some(text.clone());
            return Ok(text);
        }
        read_source(source)
    }

    /// Loads and merges a set of files that form one project (the main one or an included
    /// one); relative paths are resolved against `project_directory` when asked.
    fn load_files(
        &mut self,
        files: &[ConfigSource],
        project_directory: &Path,
        env: &Environment,
    ) -> Result<Value, LoadError> {
        let mut merged: Option<Value> = None;
        for source in files {
            let name = source.display_name();
            let text = self.read(source)?;
            let mut doc = self.file_document(&name, &text, env)?;
            // Text without a file of its own (stdin, inline) refers to other files from
            // the project directory, as if it lived there.
            let path = match source {
                ConfigSource::Path(path) => path.clone(),
                _ => project_directory.join(&name),
            };
            self.resolve_extends(&mut doc, &path, env)?;
            doc = self.apply_includes(doc, &path, project_directory, env)?;
            if self.check_each_file {
                check_against_model(&doc, &name)?;
            }
            merged = Some(match merged {
                None => doc,
                Some(base) => merge::merge(base, doc)
                    .map_err(|source| LoadError::Merge { file: name, source })?,
            });
        }
        let mut doc = merged.unwrap_or_else(|| Value::Mapping(Mapping::new()));
        merge::resolve_tags(&mut doc);
        if self.settings.resolve_paths {
            paths::resolve_document(&mut doc, project_directory, self.home.as_deref());
        }
        Ok(doc)
    }

    /// One file's text as a single canonical document: every YAML document interpolated,
    /// turned to long syntax and merged in order.
    fn file_document(
        &mut self,
        name: &str,
        text: &str,
        env: &Environment,
    ) -> Result<Value, LoadError> {
        let documents = yaml::parse_documents(text).map_err(|source| LoadError::Yaml {
            file: name.to_string(),
            source,
        })?;
        let mut merged: Option<Value> = None;
        // Port ranges expand; the budget holds for the whole file, across its documents.
        let mut port_budget = canonical::PortBudget::default();
        for mut doc in documents {
            if self.settings.interpolate {
                let lookup = |var: &str| env.get(var).cloned();
                let warnings =
                    interpolate::interpolate_value(&mut doc, &lookup).map_err(|source| {
                        LoadError::Interpolate {
                            file: name.to_string(),
                            source,
                        }
                    })?;
                self.warn_all(warnings);
            }
            canonical::canonicalize_with(&mut doc, &mut port_budget).map_err(|source| {
                LoadError::Canonical {
                    file: name.to_string(),
                    source,
                }
            })?;
            merged = Some(match merged {
                None => doc,
                Some(base) => merge::merge(base, doc).map_err(|source| LoadError::Merge {
                    file: name.to_string(),
                    source,
                })?,
            });
        }
        merged.ok_or_else(|| LoadError::Empty {
            file: name.to_string(),
        })
    }

    fn resolve_extends(
        &mut self,
        doc: &mut Value,
        path: &Path,
        env: &Environment,
    ) -> Result<(), LoadError> {
        let mut load_other = |other: &Path| -> Result<Value, String> {
            if let Some(cached) = self.extends_cache.get(other) {
                return Ok(cached.clone());
            }
            let name = other.display().to_string();
            let text =
                read_source(&ConfigSource::Path(other.to_path_buf())).map_err(|e| e.to_string())?;
            let loaded = self
                .file_document(&name, &text, env)
                .map_err(|e| e.to_string())?;
            self.extends_cache
                .insert(other.to_path_buf(), loaded.clone());
            Ok(loaded)
        };
        extends::resolve_extends(doc, path, &mut load_other).map_err(|source| LoadError::Extends {
            file: path.display().to_string(),
            source: Box::new(source),
        })
    }

    /// Loads each `include` entry as a project of its own and adds its resources.
    fn apply_includes(
        &mut self,
        mut doc: Value,
        path: &Path,
        project_directory: &Path,
        env: &Environment,
    ) -> Result<Value, LoadError> {
        let file = path.display().to_string();
        let include_error = |source| LoadError::Include {
            file: file.clone(),
            source,
        };
        let entries =
            include::take_entries(&mut doc, path, project_directory).map_err(include_error)?;
        if entries.is_empty() {
            return Ok(doc);
        }
        self.include_stack.push(path.to_path_buf());
        for entry in entries {
            if let Some(cycle) = include::cycle(&self.include_stack, &entry.files) {
                self.include_stack.pop();
                return Err(include_error(cycle));
            }
            let mut included_env = env.clone();
            for env_file in &entry.env_files {
                let values = discover::read_env_file(env_file, env).map_err(LoadError::Discover)?;
                for (key, value) in values {
                    if !self.shell_environment.contains_key(&key) {
                        included_env.insert(key, value);
                    }
                }
            }
            let sources: Vec<ConfigSource> = entry
                .files
                .iter()
                .cloned()
                .map(ConfigSource::Path)
                .collect();
            // Included projects always resolve their paths: their meaning depends on where
            // they live, not on the including project.
            let mut included =
                self.load_files(&sources, &entry.project_directory, &included_env)?;
            paths::resolve_document(
                &mut included,
                &entry.project_directory,
                self.home.as_deref(),
            );
            doc = include::add_resources(doc, included, &entry).map_err(include_error)?;
        }
        self.include_stack.pop();
        Ok(doc)
    }

    fn warn_all(&mut self, warnings: Vec<String>) {
        for warning in warnings {
            if !self.warnings.contains(&warning) {
                self.warnings.push(warning);
            }
        }
    }
}

/// Decodes a copy of one file's document so that unknown keys and wrong types are reported
/// with the file that holds them, before anything is merged.
fn check_against_model(doc: &Value, file: &str) -> Result<(), LoadError> {
    let mut copy = doc.clone();
    merge::resolve_tags(&mut copy);
    model::from_value(copy)
        .map(drop)
        .map_err(|source| LoadError::Model {
            file: file.to_string(),
            source,
        })
}

pub fn read_source(source: &ConfigSource) -> Result<String, LoadError> {
    let file = source.display_name();
    let mut bytes = Vec::new();
    let limit = yaml::MAX_FILE_BYTES;
    let read = match source {
        ConfigSource::Stdin => {
            use std::io::Read;
            std::io::stdin()
                .lock()
                .take(limit as u64 + 1)
                .read_to_end(&mut bytes)
        }
        ConfigSource::Path(path) => std::fs::File::open(path).and_then(|f| {
            use std::io::Read;
            f.take(limit as u64 + 1).read_to_end(&mut bytes)
        }),
        ConfigSource::Inline { content, .. } => {
            bytes.extend_from_slice(content.as_bytes());
            Ok(bytes.len())
        }
    };
    read.map_err(|source| LoadError::Read {
        file: file.clone(),
        source,
    })?;
    if bytes.len() > limit {
        return Err(LoadError::TooLarge { file, limit });
    }
    String::from_utf8(bytes).map_err(|_| LoadError::Read {
        file,
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is not valid UTF-8",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(files: Vec<ConfigSource>, dir: &Path) -> ProjectInputs {
        ProjectInputs {
            files,
            project_directory: dir.to_path_buf(),
            explicit_name: None,
            profiles: Vec::new(),
            environment: Environment::new(),
            shell_environment: Environment::new(),
            env_files: Vec::new(),
        }
    }

    fn inline(name: &str, content: &str) -> ConfigSource {
        ConfigSource::Inline {
            name: name.into(),
            content: content.into(),
        }
    }

    #[test]
    fn documents_of_one_file_merge_in_order_and_the_directory_names_the_project() {
        let text = "services:\n  a:\n    image: one\n---\nservices:\n  a:\n    image: two\n";
        let loaded = load(
            &inputs(vec![inline("c.yaml", text)], Path::new("/srv/My_App")),
            &LoadSettings::default(),
        )
        .unwrap();
        assert_eq!(loaded.project.name, "my_app");
        assert_eq!(loaded.project.services["a"].image, "two");
    }

    #[test]
    fn a_model_error_names_the_file_that_holds_it() {
        let files = vec![
            inline("base.yaml", "services:\n  a:\n    image: one\n"),
            inline("override.yaml", "services:\n  a:\n    tty: [nope]\n"),
        ];
        let err = load(&inputs(files, Path::new("/p")), &LoadSettings::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "override.yaml: services.a.tty: invalid type: expected a boolean, got a sequence"
        );
    }

    #[test]
    fn empty_file_and_obsolete_version() {
        let err = load(
            &inputs(vec![inline("c.yaml", "# nothing\n")], Path::new("/p")),
            &LoadSettings::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "c.yaml: empty compose file");
        let loaded = load(
            &inputs(
                vec![inline(
                    "c.yaml",
                    "version: '3.8'\nservices:\n  a:\n    image: x\n",
                )],
                Path::new("/p"),
            ),
            &LoadSettings::default(),
        )
        .unwrap();
        assert!(loaded.warnings[0].contains("`version` is obsolete"));
        assert!(loaded.project.version.is_none());
    }
}
