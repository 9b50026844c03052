//! Finding the project: its Compose files, its directory, its name and the environment
//! used for interpolation, the way Docker Compose v2 resolves them.
//!
//! Precedence follows Compose: command-line flags, then the process environment, then
//! `COMPOSE_*` keys from the `.env` file (applied only when not already set).

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use super::dotenv;

/// File names Compose looks for, in order of preference.
pub const DEFAULT_FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// Override files picked up next to the discovered file.
pub const DEFAULT_OVERRIDE_FILE_NAMES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// A variable environment: name to value, in insertion order.
pub type Environment = IndexMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("no configuration file provided: not found (looked for {} in {} and its parents)", DEFAULT_FILE_NAMES.join(", "), .0.display())]
    NoConfigFile(PathBuf),
    #[error("{0}: no such file or directory")]
    MissingFile(PathBuf),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    EnvFile {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("couldn't find env file: {0}")]
    MissingEnvFile(PathBuf),
    #[error("{0:?} is not a valid project name: it must contain only characters from [a-z0-9_-] and start with [a-z0-9]")]
    InvalidProjectName(String),
    #[error("project name must not be empty: name the project with -p or COMPOSE_PROJECT_NAME, or add a top-level `name:`")]
    EmptyProjectName,
}

/// Where a Compose file's text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Path(PathBuf),
    Stdin,
    /// Text held in memory (tests, fuzzing, embedding), shown under `name`.
    Inline {
        name: String,
        content: String,
    },
}

impl ConfigSource {
    /// The name shown in messages.
    pub fn display_name(&self) -> String {
        match self {
            ConfigSource::Path(p) => p.display().to_string(),
            ConfigSource::Stdin => "-".to_string(),
            ConfigSource::Inline { name, .. } => name.clone(),
        }
    }
}

/// What the command line said about the project (`docker compose` global flags).
#[derive(Debug, Clone, Default)]
pub struct ProjectFlags {
    pub files: Vec<String>,
    pub project_name: Option<String>,
    pub project_directory: Option<PathBuf>,
    pub env_files: Vec<PathBuf>,
    pub profiles: Vec<String>,
}

/// The resolved inputs of the load pipeline.
#[derive(Debug, Clone)]
pub struct ProjectInputs {
    pub files: Vec<ConfigSource>,
    pub project_directory: PathBuf,
    /// Explicit name from `-p` or `COMPOSE_PROJECT_NAME`; the file's `name:` and the
    /// directory name come after it.
    pub explicit_name: Option<String>,
    pub profiles: Vec<String>,
    /// Variables for interpolation: process environment over env files.
    pub environment: Environment,
    /// The process environment alone: it wins over every env file, included ones too.
    pub shell_environment: Environment,
    /// The env files that were read, for `config --variables`-style reporting.
    pub env_files: Vec<PathBuf>,
}

/// Resolves files, directory, name and environment from flags, the process environment
/// and the working directory.
pub fn resolve(
    flags: &ProjectFlags,
    process_env: &Environment,
    working_dir: &Path,
) -> Result<ProjectInputs, DiscoverError> {
    // The env files may carry COMPOSE_* settings that select the Compose files themselves,
    // so read them before discovery: the explicit ones, or `.env` in the project directory
    // given on the command line (else the working directory).
    let early_dir = flags
        .project_directory
        .as_deref()
        .map(|d| absolute(working_dir, d))
        .unwrap_or_else(|| working_dir.to_path_buf());
    let mut settings = process_env.clone();
    for path in env_file_paths(flags, process_env, working_dir, &early_dir) {
        if !path.is_file() {
            continue;
        }
        for (key, value) in read_env_file(&path, process_env)? {
            if key.starts_with("COMPOSE_") {
                settings.entry(key).or_insert(value);
            }
        }
    }

    let files = config_files(flags, &settings, working_dir)?;
    let project_directory = match (&flags.project_directory, files.first()) {
        (Some(dir), _) => absolute(working_dir, dir),
        (None, Some(ConfigSource::Path(p))) => p
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| working_dir.to_path_buf()),
        (None, _) => working_dir.to_path_buf(),
    };

    let env_file_paths = env_file_paths(flags, &settings, working_dir, &project_directory);
    let mut file_env = Environment::new();
    for path in &env_file_paths {
        let explicit = !flags.env_files.is_empty() || settings.contains_key("COMPOSE_ENV_FILES");
        if !path.exists() {
            if explicit {
                return Err(DiscoverError::MissingEnvFile(path.clone()));
            }
            continue;
        }
        // Later env files override earlier ones; each sees what came before.
        let lookup_base = merged(process_env, &file_env);
        for (key, value) in read_env_file(path, &lookup_base)? {
            file_env.insert(key, value);
        }
    }
    let environment = merged(process_env, &file_env);

    let explicit_name = flags
        .project_name
        .clone()
        .or_else(|| non_empty(environment.get("COMPOSE_PROJECT_NAME")));
    if let Some(name) = &explicit_name {
        check_project_name(name)?;
    }

    let mut profiles = flags.profiles.clone();
    if profiles.is_empty() {
        if let Some(list) = environment.get("COMPOSE_PROFILES") {
            profiles = split_list(list, ',');
        }
    }

    Ok(ProjectInputs {
        files,
        project_directory,
        explicit_name,
        profiles,
        environment,
        shell_environment: process_env.clone(),
        env_files: env_file_paths,
    })
}

/// Process environment first, env files filling what it leaves unset.
fn merged(process_env: &Environment, file_env: &Environment) -> Environment {
    let mut env = file_env.clone();
    for (k, v) in process_env {
        env.insert(k.clone(), v.clone());
    }
    env
}

fn non_empty(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.is_empty()).cloned()
}

fn split_list(list: &str, separator: char) -> Vec<String> {
    list.split(separator)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        clean(&base.join(path))
    }
}

/// Lexically removes `.` and `..` components, as Go's `filepath.Clean` does.
pub fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !path.is_absolute() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn env_file_disabled(env: &Environment) -> bool {
    env.get("COMPOSE_DISABLE_ENV_FILE")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

fn env_file_paths(
    flags: &ProjectFlags,
    settings: &Environment,
    working_dir: &Path,
    project_directory: &Path,
) -> Vec<PathBuf> {
    if !flags.env_files.is_empty() {
        return flags
            .env_files
            .iter()
            .map(|p| absolute(working_dir, p))
            .collect();
    }
    if let Some(list) = settings.get("COMPOSE_ENV_FILES") {
        return split_list(list, ',')
            .iter()
            .map(|p| absolute(working_dir, Path::new(p)))
            .collect();
    }
    if env_file_disabled(settings) {
        return Vec::new();
    }
    vec![project_directory.join(".env")]
}

/// Reads one env file; `${VAR}` references resolve against `env`.
pub fn read_env_file(path: &Path, env: &Environment) -> Result<Environment, DiscoverError> {
    let text = std::fs::read_to_string(path).map_err(|source| DiscoverError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let lookup = |name: &str| env.get(name).cloned();
    dotenv::parse(&text, &lookup).map_err(|e| DiscoverError::EnvFile {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })
}

fn config_files(
    flags: &ProjectFlags,
    settings: &Environment,
    working_dir: &Path,
) -> Result<Vec<ConfigSource>, DiscoverError> {
    let named: Vec<String> = if !flags.files.is_empty() {
        flags.files.clone()
    } else if let Some(list) = settings.get("COMPOSE_FILE").filter(|v| !v.is_empty()) {
        let separator = settings
            .get("COMPOSE_PATH_SEPARATOR")
            .and_then(|s| s.chars().next())
            .unwrap_or(':');
        split_list(list, separator)
    } else {
        return discover_default_files(
            flags
                .project_directory
                .as_deref()
                .map(|d| absolute(working_dir, d))
                .as_deref()
                .unwrap_or(working_dir),
        );
    };
    named
        .iter()
        .map(|name| {
            if name == "-" {
                return Ok(ConfigSource::Stdin);
            }
            let path = absolute(working_dir, Path::new(name));
            if path.exists() {
                Ok(ConfigSource::Path(path))
            } else {
                Err(DiscoverError::MissingFile(path))
            }
        })
        .collect()
}

/// Looks for a default-named file in `start` and then its parents, plus the matching
/// override file beside it.
pub fn discover_default_files(start: &Path) -> Result<Vec<ConfigSource>, DiscoverError> {
    for dir in start.ancestors() {
        if let Some(main) = first_existing(dir, &DEFAULT_FILE_NAMES) {
            let mut files = vec![ConfigSource::Path(main)];
            if let Some(over) = first_existing(dir, &DEFAULT_OVERRIDE_FILE_NAMES) {
                files.push(ConfigSource::Path(over));
            }
            return Ok(files);
        }
    }
    Err(DiscoverError::NoConfigFile(start.to_path_buf()))
}

fn first_existing(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Compose's rule for explicit names (`-p`, `COMPOSE_PROJECT_NAME`, top-level `name:`).
pub fn check_project_name(name: &str) -> Result<(), DiscoverError> {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid_rest =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid_start && valid_rest {
        Ok(())
    } else if name.is_empty() {
        Err(DiscoverError::EmptyProjectName)
    } else {
        Err(DiscoverError::InvalidProjectName(name.to_string()))
    }
}

/// Compose's rule for names derived from a directory: lower-cased, other characters
/// dropped, leading `_`/`-` trimmed.
pub fn normalize_project_name(raw: &str) -> String {
    let kept: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn project_names_follow_compose_rules() {
        assert_eq!(normalize_project_name("My App.v2"), "myappv2");
        assert_eq!(normalize_project_name("__-x_Y"), "x_y");
        assert!(check_project_name("wordpress").is_ok());
        assert!(check_project_name("1st_app-x").is_ok());
        assert!(matches!(
            check_project_name("_bad"),
            Err(DiscoverError::InvalidProjectName(_))
        ));
        assert!(matches!(
            check_project_name("Upper"),
            Err(DiscoverError::InvalidProjectName(_))
        ));
        assert!(matches!(
            check_project_name(""),
            Err(DiscoverError::EmptyProjectName)
        ));
    }

    #[test]
    fn discovery_prefers_compose_yaml_and_adds_override_from_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(root.join("docker-compose.yml"), "services: {}").unwrap();
        fs::write(root.join("compose.yaml"), "services: {}").unwrap();
        fs::write(root.join("compose.override.yaml"), "services: {}").unwrap();
        let nested = root.join("a/b");
        fs::create_dir_all(&nested).unwrap();
        let files = discover_default_files(&nested).unwrap();
        assert_eq!(
            files,
            vec![
                ConfigSource::Path(root.join("compose.yaml")),
                ConfigSource::Path(root.join("compose.override.yaml")),
            ]
        );
    }

    #[test]
    fn missing_compose_file_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let err = discover_default_files(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("no configuration file provided"));
    }

    #[test]
    fn shell_env_wins_over_env_file_and_compose_keys_come_from_dotenv() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(root.join("other.yaml"), "services: {}").unwrap();
        fs::write(
            root.join(".env"),
            "COMPOSE_FILE=other.yaml\nCOMPOSE_PROJECT_NAME=fromdotenv\nTAG=dotenv\nONLY=x\n",
        )
        .unwrap();
        let inputs = resolve(&ProjectFlags::default(), &env(&[("TAG", "shell")]), root).unwrap();
        assert_eq!(
            inputs.files,
            vec![ConfigSource::Path(root.join("other.yaml"))]
        );
        assert_eq!(inputs.environment["TAG"], "shell");
        assert_eq!(inputs.environment["ONLY"], "x");
        assert_eq!(inputs.explicit_name.as_deref(), Some("fromdotenv"));
    }

    #[test]
    fn env_file_flag_replaces_dotenv_and_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(root.join("compose.yaml"), "services: {}").unwrap();
        fs::write(root.join(".env"), "A=dotenv\n").unwrap();
        fs::write(root.join("one.env"), "A=one\nB=one\n").unwrap();
        fs::write(root.join("two.env"), "B=two\n").unwrap();
        let flags = ProjectFlags {
            env_files: vec!["one.env".into(), "two.env".into()],
            ..Default::default()
        };
        let inputs = resolve(&flags, &Environment::new(), root).unwrap();
        assert_eq!(inputs.environment["A"], "one");
        assert_eq!(inputs.environment["B"], "two");

        let flags = ProjectFlags {
            env_files: vec!["nope.env".into()],
            ..Default::default()
        };
        let err = resolve(&flags, &Environment::new(), root).unwrap_err();
        assert!(matches!(err, DiscoverError::MissingEnvFile(_)));
    }

    #[test]
    fn compose_settings_come_from_an_explicit_env_file_too() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(root.join("prod.yaml"), "services: {}").unwrap();
        fs::write(
            root.join("prod.env"),
            "COMPOSE_FILE=prod.yaml\nCOMPOSE_PROFILES=web\n",
        )
        .unwrap();
        let flags = ProjectFlags {
            env_files: vec!["prod.env".into()],
            ..Default::default()
        };
        let inputs = resolve(&flags, &Environment::new(), root).unwrap();
        assert_eq!(
            inputs.files,
            vec![ConfigSource::Path(root.join("prod.yaml"))]
        );
        assert_eq!(inputs.profiles, vec!["web"]);
    }

    #[test]
    fn invalid_explicit_project_name_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("compose.yaml"), "services: {}").unwrap();
        let flags = ProjectFlags {
            project_name: Some("Bad Name".into()),
            ..Default::default()
        };
        assert!(matches!(
            resolve(&flags, &Environment::new(), tmp.path()),
            Err(DiscoverError::InvalidProjectName(_))
        ));
    }

    #[test]
    fn compose_file_env_splits_on_separator_and_profiles_from_env() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(root.join("a.yaml"), "services: {}").unwrap();
        fs::write(root.join("b.yaml"), "services: {}").unwrap();
        let inputs = resolve(
            &ProjectFlags::default(),
            &env(&[
                ("COMPOSE_FILE", "a.yaml;b.yaml"),
                ("COMPOSE_PATH_SEPARATOR", ";"),
                ("COMPOSE_PROFILES", "debug, ops"),
            ]),
            root,
        )
        .unwrap();
        assert_eq!(inputs.files.len(), 2);
        assert_eq!(inputs.profiles, vec!["debug", "ops"]);
    }
}
