//! Load stage `extends`: a service built on top of another service definition.
//!
//! `extends: {service, file?}` takes the base service from the same document or from
//! another file (relative to the directory of the file that names it), resolves the base's
//! own `extends` first (chains may cross files), then merges the service over its base with
//! the multi-file override rules ([`merge_service`]). Compose v2 inherits every key of the
//! base, `depends_on` included; only `extends` itself is dropped.
//!
//! A base taken from another file has its relative paths made absolute against that file's
//! directory, since they were written relative to it; a base from the same file keeps its
//! paths, which later stages resolve against the project directory.
//!
//! `!reset` / `!override` tags of the extending service stay in the resolved service, so
//! the file-level `merge` (or `resolve_tags` for a lone file) applies them to earlier files
//! too, as compose-go does.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::merge::{merge_service, MergeError};

/// Why `extends` could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ExtendsError {
    /// `services` is not a mapping.
    #[error("{file}: `services` must be a mapping of service names to definitions")]
    ServicesNotMapping { file: PathBuf },
    /// A service definition is not a mapping.
    #[error("{file}: `services.{service}` must be a mapping")]
    ServiceNotMapping { file: PathBuf, service: String },
    /// `extends` does not name a base service.
    #[error(
        "{file}: `services.{service}.extends` must name the base service, as \
         `extends: {{service: NAME}}` or `extends: {{service: NAME, file: PATH}}`"
    )]
    InvalidExtends { file: PathBuf, service: String },
    /// The base service does not exist.
    #[error(
        "{file}: `services.{service}.extends` refers to service `{base}`, which is not \
         defined in {base_file}"
    )]
    BaseNotFound {
        file: PathBuf,
        service: String,
        base: String,
        base_file: PathBuf,
    },
    /// The file holding the base service could not be loaded.
    #[error("{file}: `services.{service}.extends` cannot load {base_file}: {reason}")]
    LoadFailed {
        file: PathBuf,
        service: String,
        base_file: PathBuf,
        reason: String,
    },
    /// Services extend each other in a loop.
    #[error("{file}: extends cycle: {chain}")]
    Cycle { file: PathBuf, chain: String },
    /// The chain of bases is longer than [`MAX_EXTENDS_DEPTH`].
    #[error(
        "{file}: `services.{service}.extends` starts a chain of more than {limit} services; \
         extend fewer levels"
    )]
    TooDeep {
        file: PathBuf,
        service: String,
        limit: usize,
    },
    /// The copies of base services add up to more than [`MAX_EXTENDED_NODES`] values.
    #[error(
        "{file}: extending `services.{service}` brings what `extends` copies from base \
         services to more than {limit} values; extend smaller services or fewer times"
    )]
    TooLarge {
        file: PathBuf,
        service: String,
        limit: usize,
    },
    /// The service cannot be merged over its base.
    #[error("{file}: cannot extend `services.{service}`: {source}")]
    Merge {
        file: PathBuf,
        service: String,
        #[source]
        source: MergeError,
    },
}

/// The longest chain of bases one service may have. Real chains are a few levels; the
/// limit keeps a generated chain from exhausting the stack (each level takes a few
/// kilobytes of it in debug builds, whose test threads have 2 MiB).
pub const MAX_EXTENDS_DEPTH: usize = 64;

/// The most values (YAML nodes) the resolved services of one file may hold in total.
/// Every extending service gets a full copy of its base, so without a bound a base
/// inflated by aliases and extended many times would grow without limit.
pub const MAX_EXTENDED_NODES: usize = 2_000_000;

/// Resolves `extends` for every service of `doc`, the canonical document read from `file`
/// (absolute). `load` returns the parsed, interpolated, canonical document of another file.
pub fn resolve_extends(
    doc: &mut Value,
    file: &Path,
    load: &mut dyn FnMut(&Path) -> Result<Value, String>,
) -> Result<(), ExtendsError> {
    resolve_within(doc, file, load, MAX_EXTENDED_NODES)
}

/// [`resolve_extends`] with an allowance of `node_allowance` copied values.
fn resolve_within(
    doc: &mut Value,
    file: &Path,
    load: &mut dyn FnMut(&Path) -> Result<Value, String>,
    node_allowance: usize,
) -> Result<(), ExtendsError> {
    let Some(services) = services_of(doc, file)? else {
        return Ok(());
    };
    let names: Vec<String> = services
        .keys()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    let mut resolver = Resolver {
        load,
        chain: Vec::new(),
        root: identity(file),
        nodes_left: node_allowance,
        node_allowance,
    };
    for name in names {
        resolver.resolve(services, &name, file)?;
    }
    Ok(())
}

/// The base named by one `extends`.
struct BaseRef {
    service: String,
    file: Option<String>,
}

/// One service being resolved: its file's identity and its name.
type ChainLink = (PathBuf, String);

struct Resolver<'a> {
    load: &'a mut dyn FnMut(&Path) -> Result<Value, String>,
    /// Services whose resolution is under way, outermost first (for cycle detection).
    chain: Vec<ChainLink>,
    /// The identity of the file `resolve_extends` was called for.
    root: PathBuf,
    /// How many more values extended services may hold, out of `node_allowance`.
    nodes_left: usize,
    node_allowance: usize,
}

impl Resolver<'_> {
    /// Resolves `services[name]` (declared in `file`) and stores the result back.
    /// `null` services and services without `extends` are left as they are.
    fn resolve(
        &mut self,
        services: &mut Mapping,
        name: &str,
        file: &Path,
    ) -> Result<(), ExtendsError> {
        let service = match services.get(name) {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Mapping(m)) if !m.contains_key("extends") => return Ok(()),
            Some(Value::Mapping(m)) => m.clone(),
            Some(_) => {
                return Err(ExtendsError::ServiceNotMapping {
                    file: file.to_path_buf(),
                    service: name.to_string(),
                })
            }
        };
        let Some(extends) = service.get("extends") else {
            return Ok(());
        };
        let base_ref = parse_extends(extends, name, file)?;
        let link = (identity(file), name.to_string());
        if let Some(start) = self.chain.iter().position(|l| *l == link) {
            return Err(self.cycle_error(start, &link));
        }
        if self.chain.len() >= MAX_EXTENDS_DEPTH {
            return Err(ExtendsError::TooDeep {
                file: file.to_path_buf(),
                service: self.chain.first().map_or(name, |(_, n)| n).to_string(),
                limit: MAX_EXTENDS_DEPTH,
            });
        }
        self.chain.push(link);
        let merged = self.extend(services, name, service, &base_ref, file);
        self.chain.pop();
        let merged = merged?;
        self.charge(&merged, name, file)?;
        services.insert(Value::from(name), merged);
        Ok(())
    }

    /// Takes the values of a newly extended service from the file's allowance.
    fn charge(&mut self, service: &Value, name: &str, file: &Path) -> Result<(), ExtendsError> {
        // `count_nodes` stops at the allowance, so what it counts always fits.
        match count_nodes(service, self.nodes_left) {
            Some(used) => {
                self.nodes_left -= used;
                Ok(())
            }
            None => Err(ExtendsError::TooLarge {
                file: file.to_path_buf(),
                service: name.to_string(),
                limit: self.node_allowance,
            }),
        }
    }

    /// Merges `service` over its resolved base.
    fn extend(
        &mut self,
        services: &mut Mapping,
        name: &str,
        mut service: Mapping,
        base_ref: &BaseRef,
        file: &Path,
    ) -> Result<Value, ExtendsError> {
        let base = match &base_ref.file {
            Some(other) => self.base_from_file(name, &base_ref.service, other, file)?,
            None => {
                ensure_defined(services, name, &base_ref.service, file, file)?;
                self.resolve(services, &base_ref.service, file)?;
                services
                    .get(base_ref.service.as_str())
                    .cloned()
                    .unwrap_or(Value::Null)
            }
        };
        service.remove("extends");
        let service = Value::Mapping(service);
        if base.is_null() {
            return Ok(service);
        }
        merge_service(&base, &service, &format!("services.{name}")).map_err(|source| {
            ExtendsError::Merge {
                file: file.to_path_buf(),
                service: name.to_string(),
                source,
            }
        })
    }

    /// Loads `other` (relative to `file`'s directory), resolves the base service there and
    /// rebases its relative paths on that file's directory.
    fn base_from_file(
        &mut self,
        name: &str,
        base: &str,
        other: &str,
        file: &Path,
    ) -> Result<Value, ExtendsError> {
        let base_file = clean_join(parent_dir(file), other);
        let mut doc = (self.load)(&base_file).map_err(|reason| ExtendsError::LoadFailed {
            file: file.to_path_buf(),
            service: name.to_string(),
            base_file: base_file.clone(),
            reason,
        })?;
        let mut empty = Mapping::new();
        let services = services_of(&mut doc, &base_file)?.unwrap_or(&mut empty);
        ensure_defined(services, name, base, file, &base_file)?;
        self.resolve(services, base, &base_file)?;
        let mut resolved = services.remove(base).unwrap_or(Value::Null);
        super::paths::resolve_service(&mut resolved, parent_dir(&base_file), None);
        Ok(resolved)
    }

    /// Names the loop from its first service back to it, e.g. `web -> base -> web`.
    fn cycle_error(&self, start: usize, repeated: &ChainLink) -> ExtendsError {
        let chain = self
            .chain
            .iter()
            .skip(start)
            .chain(std::iter::once(repeated))
            .map(|link| self.describe(link))
            .collect::<Vec<_>>()
            .join(" -> ");
        ExtendsError::Cycle {
            file: self.root.clone(),
            chain,
        }
    }

    fn describe(&self, (file, name): &ChainLink) -> String {
        if *file == self.root {
            name.clone()
        } else {
            format!("{name} ({})", file.display())
        }
    }
}

/// The number of nodes in `value`, or `None` as soon as it exceeds `limit` (so that an
/// oversized value is not walked to the end).
fn count_nodes(value: &Value, limit: usize) -> Option<usize> {
    let mut count = 0usize;
    let mut pending = vec![value];
    while let Some(node) = pending.pop() {
        count += 1;
        if count > limit {
            return None;
        }
        match node {
            Value::Sequence(items) => pending.extend(items),
            Value::Mapping(map) => map.iter().for_each(|(key, item)| {
                pending.push(key);
                pending.push(item);
            }),
            Value::Tagged(tagged) => pending.push(&tagged.value),
            _ => {}
        }
    }
    Some(count)
}

/// The `services` mapping of a document, if it has one.
fn services_of<'d>(
    doc: &'d mut Value,
    file: &Path,
) -> Result<Option<&'d mut Mapping>, ExtendsError> {
    match doc.get_mut("services") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Mapping(services)) => Ok(Some(services)),
        Some(_) => Err(ExtendsError::ServicesNotMapping {
            file: file.to_path_buf(),
        }),
    }
}

fn ensure_defined(
    services: &Mapping,
    name: &str,
    base: &str,
    file: &Path,
    base_file: &Path,
) -> Result<(), ExtendsError> {
    if services.contains_key(base) {
        Ok(())
    } else {
        Err(ExtendsError::BaseNotFound {
            file: file.to_path_buf(),
            service: name.to_string(),
            base: base.to_string(),
            base_file: base_file.to_path_buf(),
        })
    }
}

/// Reads `extends` in its long form, or the short form `extends: NAME`.
fn parse_extends(extends: &Value, name: &str, file: &Path) -> Result<BaseRef, ExtendsError> {
    let invalid = || ExtendsError::InvalidExtends {
        file: file.to_path_buf(),
        service: name.to_string(),
    };
    match extends {
        Value::String(service) if !service.is_empty() => Ok(BaseRef {
            service: service.clone(),
            file: None,
        }),
        Value::Mapping(m) => {
            let service = m
                .get("service")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(invalid)?;
            let other = match m.get("file") {
                None | Some(Value::Null) => None,
                Some(Value::String(f)) => Some(f.clone()),
                Some(_) => return Err(invalid()),
            };
            Ok(BaseRef {
                service: service.to_string(),
                file: other,
            })
        }
        _ => Err(invalid()),
    }
}

/// A file's identity for cycle detection: its real path when it exists, else its clean
/// absolute form.
fn identity(file: &Path) -> PathBuf {
    std::fs::canonicalize(file)
        .unwrap_or_else(|_| clean_join(Path::new("/"), &file.to_string_lossy()))
}

fn parent_dir(file: &Path) -> &Path {
    file.parent().unwrap_or(Path::new("/"))
}

/// `dir` joined with `relative` (kept as is when absolute), without `.` and `..` parts.
fn clean_join(dir: &Path, relative: &str) -> PathBuf {
    super::discover::clean(&dir.join(relative))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;

    fn y(text: &str) -> Value {
        serde_yaml::from_str(text).expect("test YAML parses")
    }

    /// A loader over in-memory documents, keyed by absolute path.
    fn loader(files: &[(&str, &str)]) -> impl FnMut(&Path) -> Result<Value, String> {
        let docs: HashMap<PathBuf, Value> = files
            .iter()
            .map(|(path, text)| (PathBuf::from(path), y(text)))
            .collect();
        move |path: &Path| {
            docs.get(path)
                .cloned()
                .ok_or_else(|| format!("no such file: {}", path.display()))
        }
    }

    fn resolve(doc: &str, file: &str, files: &[(&str, &str)]) -> Result<Value, ExtendsError> {
        let mut doc = y(doc);
        let mut load = loader(files);
        resolve_extends(&mut doc, Path::new(file), &mut load)?;
        Ok(doc)
    }

    fn service(doc: &Value, name: &str) -> Value {
        doc["services"][name].clone()
    }

    #[test]
    fn same_file_base_is_merged() {
        let doc = resolve(
            r#"
services:
  base:
    image: app
    command: [serve]
    ports: [{target: 80, published: "8080"}]
    environment: {A: "1", B: "2"}
  web:
    extends: {service: base}
    command: [serve, --debug]
    ports: [{target: 443, published: "8443"}]
    environment: {B: "20", C: "3"}
"#,
            "/p/compose.yaml",
            &[],
        )
        .unwrap();
        assert_eq!(
            service(&doc, "web"),
            y(r#"
image: app
command: [serve, --debug]
ports: [{target: 80, published: "8080"}, {target: 443, published: "8443"}]
environment: {A: "1", B: "20", C: "3"}
"#)
        );
        assert_eq!(service(&doc, "base")["image"], y("app"));
    }

    #[test]
    fn short_form_and_inherited_depends_on() {
        let doc = resolve(
            "services: {db: {image: pg}, base: {image: a, depends_on: {db: {condition: service_started, required: true}}}, web: {extends: base}}",
            "/p/compose.yaml",
            &[],
        )
        .unwrap();
        assert_eq!(
            service(&doc, "web"),
            y("{image: a, depends_on: {db: {condition: service_started, required: true}}}")
        );
    }

    #[test]
    fn chains_resolve_in_any_order() {
        let doc = resolve(
            r#"
services:
  foo: {image: busybox, extends: {service: bar}}
  bar: {image: alpine, command: [echo], extends: {service: wee}}
  wee: {extends: {service: last}, command: [echo, wee], labels: {a: b}}
  last: {image: python, user: root}
"#,
            "/p/compose.yaml",
            &[],
        )
        .unwrap();
        assert_eq!(
            service(&doc, "foo"),
            y("{image: busybox, user: root, command: [echo], labels: {a: b}}")
        );
        assert!(doc["services"]["wee"].get("extends").is_none());
    }

    #[test]
    fn same_file_base_keeps_relative_paths() {
        let doc = resolve(
            "services: {base: {build: {context: ./app}, volumes: [{type: bind, source: ./src, target: /src}]}, web: {extends: {service: base}}}",
            "/p/compose.yaml",
            &[],
        )
        .unwrap();
        assert_eq!(service(&doc, "web")["build"]["context"], y("./app"));
        assert_eq!(service(&doc, "web")["volumes"][0]["source"], y("./src"));
    }

    #[test]
    fn other_file_base_paths_are_rebased() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let base_text = r#"
services:
  base:
    build:
      context: ..
      dockerfile: Dockerfile.dev
      additional_contexts: {assets: ./assets, img: "docker-image://alpine", svc: "service:other"}
      ssh: {default: null, key: ./id_rsa}
    env_file: [{path: ./common.env, required: true}, {path: /etc/abs.env, required: false}]
    label_file: [labels.txt]
    volumes:
      - {type: bind, source: ./data, target: /data}
      - {type: bind, source: ~/cache, target: /cache}
      - {type: bind, source: /abs, target: /abs}
      - {type: volume, source: named, target: /named}
    develop: {watch: [{path: ./src, action: sync, target: /app}]}
  remote:
    build: {context: "https://github.com/docker/app.git#main"}
"#;
        fs::write(sub.join("base.yaml"), base_text).unwrap();
        let root = dir.path().join("compose.yaml");
        let mut doc = y(r#"
services:
  web:
    extends: {file: sub/base.yaml, service: base}
    build: {target: dev}
  git:
    extends: {file: ./sub/base.yaml, service: remote}
"#);
        let mut loads = Vec::new();
        let mut load = |path: &Path| {
            loads.push(path.to_path_buf());
            fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_yaml::from_str(&t).map_err(|e| e.to_string()))
        };
        resolve_extends(&mut doc, &root, &mut load).unwrap();
        let root_dir = dir.path().to_string_lossy().into_owned();
        let sub_dir = sub.to_string_lossy().into_owned();
        let web = service(&doc, "web");
        assert_eq!(web["build"]["context"], y(&format!("'{root_dir}'")));
        assert_eq!(web["build"]["dockerfile"], y("Dockerfile.dev"));
        assert_eq!(web["build"]["target"], y("dev"));
        assert_eq!(
            web["build"]["additional_contexts"],
            y(&format!("{{assets: '{sub_dir}/assets', img: 'docker-image://alpine', svc: 'service:other'}}"))
        );
        assert_eq!(
            web["build"]["ssh"],
            y(&format!("{{default: null, key: '{sub_dir}/id_rsa'}}"))
        );
        assert_eq!(
            web["env_file"][0]["path"],
            y(&format!("'{sub_dir}/common.env'"))
        );
        assert_eq!(web["env_file"][1]["path"], y("/etc/abs.env"));
        assert_eq!(web["label_file"][0], y(&format!("'{sub_dir}/labels.txt'")));
        assert_eq!(web["volumes"][0]["source"], y(&format!("'{sub_dir}/data'")));
        assert_eq!(web["volumes"][1]["source"], y("~/cache"));
        assert_eq!(web["volumes"][2]["source"], y("/abs"));
        assert_eq!(web["volumes"][3]["source"], y("named"));
        assert_eq!(
            web["develop"]["watch"][0]["path"],
            y(&format!("'{sub_dir}/src'"))
        );
        assert_eq!(
            service(&doc, "git")["build"]["context"],
            y("'https://github.com/docker/app.git#main'")
        );
        assert_eq!(loads, vec![sub.join("base.yaml"), sub.join("base.yaml")]);
    }

    #[test]
    fn chains_across_files_rebase_each_level_on_its_own_file() {
        let doc = resolve(
            "services: {a: {extends: {file: ./sub/compose.yaml, service: b}}}",
            "/p/compose.yaml",
            &[
                (
                    "/p/sub/compose.yaml",
                    "services: {b: {extends: {service: c}, build: {target: fake}}, c: {extends: {file: ../other/c.yaml, service: c}, env_file: [{path: b.env}]}}",
                ),
                (
                    "/p/other/c.yaml",
                    "services: {c: {command: [echo], build: {context: .}, env_file: [{path: c.env}]}}",
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            service(&doc, "a"),
            y("{command: [echo], build: {context: /p/other, target: fake}, env_file: [{path: /p/other/c.env}, {path: /p/sub/b.env}]}")
        );
    }

    #[test]
    fn cycle_in_the_same_file_is_named() {
        let err = resolve(
            "services: {web: {extends: {service: base}}, base: {extends: {service: web}}}",
            "/p/compose.yaml",
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/p/compose.yaml: extends cycle: web -> base -> web"
        );
    }

    #[test]
    fn self_extension_is_a_cycle() {
        let err = resolve("services: {web: {extends: web}}", "/p/compose.yaml", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/p/compose.yaml: extends cycle: web -> web"
        );
    }

    #[test]
    fn cycle_across_files_names_the_files() {
        let err = resolve(
            "services: {web: {extends: {file: other.yaml, service: base}}}",
            "/p/compose.yaml",
            &[
                (
                    "/p/other.yaml",
                    "services: {base: {extends: {file: ./compose.yaml, service: web}}}",
                ),
                (
                    "/p/compose.yaml",
                    "services: {web: {extends: {file: other.yaml, service: base}}}",
                ),
            ],
        )
        .unwrap_err();
        let ExtendsError::Cycle { chain, .. } = &err else {
            panic!("expected a cycle, got {err}");
        };
        assert!(
            chain.starts_with("web -> base (") && chain.ends_with(") -> web"),
            "{chain}"
        );
        assert!(chain.contains("other.yaml"), "{chain}");
    }

    #[test]
    fn missing_base_in_the_same_file() {
        let err = resolve(
            "services: {web: {extends: {service: nope}}}",
            "/p/compose.yaml",
            &[],
        )
        .unwrap_err();
        assert!(matches!(&err, ExtendsError::BaseNotFound { base, .. } if base == "nope"));
        let text = err.to_string();
        assert!(
            text.contains("services.web.extends")
                && text.contains("`nope`")
                && text.contains("/p/compose.yaml"),
            "{text}"
        );
    }

    #[test]
    fn missing_base_in_another_file_names_both_files() {
        let err = resolve(
            "services: {web: {extends: {file: base.yaml, service: nope}}}",
            "/p/compose.yaml",
            &[("/p/base.yaml", "services: {other: {image: a}}")],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("/p/compose.yaml:"), "{text}");
        assert!(text.contains("not defined in /p/base.yaml"), "{text}");
    }

    #[test]
    fn missing_file_names_the_service_and_file() {
        let err = resolve(
            "services: {web: {extends: {file: gone.yaml, service: base}}}",
            "/p/compose.yaml",
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, ExtendsError::LoadFailed { .. }));
        let text = err.to_string();
        assert!(
            text.contains("services.web.extends") && text.contains("/p/gone.yaml"),
            "{text}"
        );
    }

    #[test]
    fn extends_without_service_is_rejected() {
        let err = resolve(
            "services: {web: {extends: {file: base.yaml}}}",
            "/p/compose.yaml",
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, ExtendsError::InvalidExtends { .. }), "{err}");
        let err = resolve("services: {web: {extends: [a]}}", "/p/c.yaml", &[]).unwrap_err();
        assert!(err.to_string().contains("services.web.extends"), "{err}");
    }

    #[test]
    fn merge_clash_names_the_service_and_key() {
        let err = resolve(
            "services: {base: {security_opt: [a]}, web: {extends: base, security_opt: {a: b}}}",
            "/p/compose.yaml",
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("services.web.security_opt"),
            "{err}"
        );
    }

    #[test]
    fn null_base_yields_the_service() {
        let doc = resolve(
            "services: {base: null, web: {image: a, extends: base}}",
            "/p/compose.yaml",
            &[],
        )
        .unwrap();
        assert_eq!(service(&doc, "web"), y("{image: a}"));
    }

    #[test]
    fn overlong_chains_are_rejected_before_the_stack_runs_out() {
        // Declared top down, so that resolving the first service walks the whole chain.
        let chain = |top: usize| {
            let mut text = String::from("services:\n");
            for i in (1..=top).rev() {
                text.push_str(&format!("  s{i}: {{extends: s{}}}\n", i - 1));
            }
            text + "  s0: {image: a}\n"
        };
        let top = MAX_EXTENDS_DEPTH + 1;
        let err = resolve(&chain(top), "/p/compose.yaml", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "/p/compose.yaml: `services.s{top}.extends` starts a chain of more than \
                 {MAX_EXTENDS_DEPTH} services; extend fewer levels"
            )
        );
        assert!(resolve(&chain(MAX_EXTENDS_DEPTH), "/p/compose.yaml", &[]).is_ok());
    }

    #[test]
    fn copies_of_large_bases_are_bounded() {
        let text = "services:\n  base: {image: a, labels: {a: '1', b: '2'}}\n  \
                    one: {extends: base}\n  two: {extends: base}\n";
        // Each extended service holds 9 nodes: the mapping, two keys with values, and
        // `labels` with its two entries.
        for (allowance, fits) in [(18, true), (17, false)] {
            let mut doc = y(text);
            let outcome = resolve_within(
                &mut doc,
                Path::new("/p/compose.yaml"),
                &mut loader(&[]),
                allowance,
            );
            match outcome {
                Ok(()) => assert!(fits, "{allowance} should be too small"),
                Err(err) => {
                    assert!(!fits, "{allowance} should fit: {err}");
                    assert_eq!(
                        err.to_string(),
                        "/p/compose.yaml: extending `services.two` brings what `extends` \
                         copies from base services to more than 17 values; extend smaller \
                         services or fewer times"
                    );
                }
            }
        }
    }

    #[test]
    fn documents_without_services_are_fine() {
        assert!(resolve("name: x", "/p/compose.yaml", &[]).is_ok());
        let err = resolve("services: [a]", "/p/compose.yaml", &[]).unwrap_err();
        assert!(matches!(err, ExtendsError::ServicesNotMapping { .. }));
    }

    #[test]
    fn reset_in_the_service_drops_inherited_keys() {
        let doc = resolve(
            "services: {base: {image: a, ports: [{target: 80}]}, web: {extends: base, ports: !reset []}}",
            "/p/compose.yaml",
            &[],
        )
        .unwrap();
        let mut web = service(&doc, "web");
        super::super::merge::resolve_tags(&mut web);
        assert_eq!(web, y("{image: a}"));
    }
}
