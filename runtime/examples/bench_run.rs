//! Times create+start+wait+delete of `/bin/true` through the embedded runtime.
//!
//! Usage: `bench_run [--overlay] [--warmup K] [--security-opt OPT]... [--emit-spec FILE]
//! [--cgroup-parent PATH] ROOTFS STATE_DIR N`
//!
//! One helper serves every run (as in rcompose, where the supervisor keeps it), so
//! the per-run figure is the steady-state cost of one container. After K warm-up
//! runs (default 3) it prints one line per run to stdout:
//! `TOTAL_MS create=MS start=MS wait=MS delete=MS`. With `--emit-spec FILE` it also
//! writes the OCI spec it gives libcontainer (for ROOTFS, before any run), so runc
//! can be timed on exactly the same configuration. `--security-opt` takes Docker's
//! values (e.g. `seccomp=unconfined`), to measure what a setting costs. Containers'
//! cgroups go under `--cgroup-parent` (default `/rcompose-bench-<pid>`; the emitted
//! spec uses `<parent>/runc`), so a caller can find and clean them.
//!
//! Needs root. `main` calls `helper::maybe_run()` first: the runtime re-executes this
//! binary as its helper.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use oci_spec::image::ImageConfiguration;
use rcompose_runtime::container::config::ContainerConfig;
use rcompose_runtime::container::helper;
use rcompose_runtime::container::lifecycle::{
    ContainerOutput, CreateOptions, LifecycleError, Runtime,
};
use rcompose_runtime::container::rootfs::RootfsSource;
use rcompose_runtime::container::spec::{build_spec, SpecError};
use thiserror::Error;

const USAGE: &str = "usage: bench_run [--overlay] [--warmup K] [--security-opt OPT]... \
     [--emit-spec FILE] [--cgroup-parent PATH] ROOTFS STATE_DIR N";
const DEFAULT_WARMUP: usize = 3;

#[derive(Debug, Error)]
enum BenchError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error("run {run}: {source}")]
    Lifecycle {
        run: usize,
        #[source]
        source: LifecycleError,
    },
    #[error("run {run}: /bin/true exited with {code}")]
    NonZeroExit { run: usize, code: i32 },
    #[error("building the spec for --emit-spec: {0}")]
    Spec(#[from] SpecError),
    #[error("writing the spec to {path}: {source}")]
    WriteSpec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct Options {
    overlay: bool,
    warmup: usize,
    emit_spec: Option<PathBuf>,
    security_opt: Vec<String>,
    cgroup_parent: String,
    rootfs: PathBuf,
    state_dir: PathBuf,
    runs: usize,
}

/// How long each step of one container took.
struct Timing {
    create: Duration,
    start: Duration,
    wait: Duration,
    delete: Duration,
}

impl Timing {
    fn total(&self) -> Duration {
        self.create + self.start + self.wait + self.delete
    }
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "{:.3} create={:.3} start={:.3} wait={:.3} delete={:.3}",
            ms(self.total()),
            ms(self.create),
            ms(self.start),
            ms(self.wait),
            ms(self.delete)
        )
    }
}

fn main() -> ExitCode {
    helper::maybe_run();
    let result = parse_args(std::env::args().skip(1)).and_then(|options| run(&options));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench_run: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, BenchError> {
    let mut overlay = false;
    let mut warmup = DEFAULT_WARMUP;
    let mut emit_spec = None;
    let mut security_opt = Vec::new();
    let mut cgroup_parent = format!("/rcompose-bench-{}", std::process::id());
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--overlay" => overlay = true,
            "--warmup" => warmup = parse_count("--warmup", args.next())?,
            "--emit-spec" => {
                let path = args
                    .next()
                    .ok_or_else(|| usage("--emit-spec needs a FILE"))?;
                emit_spec = Some(PathBuf::from(path));
            }
            "--security-opt" => {
                let opt = args
                    .next()
                    .ok_or_else(|| usage("--security-opt needs a value"))?;
                security_opt.push(opt);
            }
            "--cgroup-parent" => {
                cgroup_parent = args
                    .next()
                    .ok_or_else(|| usage("--cgroup-parent needs a PATH"))?;
            }
            flag if flag.starts_with("--") => return Err(usage(&format!("unknown flag {flag}"))),
            _ => positional.push(arg),
        }
    }
    let [rootfs, state_dir, runs] = <[String; 3]>::try_from(positional)
        .map_err(|got| usage(&format!("expected 3 arguments, got {}", got.len())))?;
    Ok(Options {
        overlay,
        warmup,
        emit_spec,
        security_opt,
        cgroup_parent,
        rootfs: PathBuf::from(rootfs),
        state_dir: PathBuf::from(state_dir),
        runs: parse_count("N", Some(runs))?,
    })
}

fn parse_count(name: &str, value: Option<String>) -> Result<usize, BenchError> {
    let value = value.ok_or_else(|| usage(&format!("{name} needs a number")))?;
    value
        .parse()
        .map_err(|_| usage(&format!("{name}: {value:?} is not a non-negative integer")))
}

fn usage(message: &str) -> BenchError {
    BenchError::Usage(message.to_string())
}

fn run(options: &Options) -> Result<(), BenchError> {
    let cgroup_parent = options.cgroup_parent.as_str();
    if let Some(path) = &options.emit_spec {
        emit_spec(options, &format!("{cgroup_parent}/runc"), path)?;
    }
    let mut runtime = Runtime::new(Path::new("/proc/self/exe"), &options.state_dir);
    let mut bench = Bench {
        runtime: &mut runtime,
        options,
        cgroup_parent,
    };
    let result = bench.warm_up_and_time();
    remove_cgroup_parent(cgroup_parent);
    result
}

struct Bench<'a> {
    runtime: &'a mut Runtime,
    options: &'a Options,
    cgroup_parent: &'a str,
}

impl Bench<'_> {
    fn warm_up_and_time(&mut self) -> Result<(), BenchError> {
        for run in 0..self.options.warmup {
            self.one_container(&format!("warmup-{run}"), run)?;
        }
        for run in 0..self.options.runs {
            let timing = self.one_container(&format!("run-{run}"), run)?;
            println!("{timing}");
        }
        Ok(())
    }

    /// create+start+wait+delete of `/bin/true`, timing each step.
    fn one_container(&mut self, name: &str, run: usize) -> Result<Timing, BenchError> {
        let id = format!("bench-{}-{name}", std::process::id());
        let lifecycle = |source| BenchError::Lifecycle { run, source };
        let config = true_config(self.options);
        let image = ImageConfiguration::default();
        let cgroups_path = format!("{}/{id}", self.cgroup_parent);
        let begin = Instant::now();
        self.runtime
            .create(CreateOptions {
                id: &id,
                rootfs: rootfs_source(self.options),
                image: &image,
                config: &config,
                image_name: "busybox",
                cgroups_path: &cgroups_path,
                stdin: None,
                // Like `runc run` with no terminal: output discarded, no log written.
                output: ContainerOutput::Direct {
                    stdout: None,
                    stderr: None,
                },
            })
            .map_err(lifecycle)?;
        let created = Instant::now();
        self.runtime.start(&id).map_err(lifecycle)?;
        let started = Instant::now();
        let status = self.runtime.wait(&id).map_err(lifecycle)?;
        let exited = Instant::now();
        self.runtime.delete(&id, false).map_err(lifecycle)?;
        let deleted = Instant::now();
        if status.code != 0 {
            return Err(BenchError::NonZeroExit {
                run,
                code: status.code,
            });
        }
        Ok(Timing {
            create: created - begin,
            start: started - created,
            wait: exited - started,
            delete: deleted - exited,
        })
    }
}

/// The container every run uses: `/bin/true`, defaults otherwise (private
/// namespaces, Docker's default seccomp profile and capabilities) unless
/// `--security-opt` says otherwise.
fn true_config(options: &Options) -> ContainerConfig {
    ContainerConfig {
        command: Some(vec!["/bin/true".into()]),
        hostname: Some("bench".into()),
        security_opt: options.security_opt.clone(),
        ..ContainerConfig::default()
    }
}

fn rootfs_source(options: &Options) -> RootfsSource {
    if options.overlay {
        RootfsSource::Layers(vec![options.rootfs.clone()])
    } else {
        RootfsSource::Dir(options.rootfs.clone())
    }
}

/// Writes the spec rcompose would run `/bin/true` with, rooted at the plain
/// (canonical) rootfs dir.
fn emit_spec(options: &Options, cgroups_path: &str, path: &Path) -> Result<(), BenchError> {
    let write_error = |source| BenchError::WriteSpec {
        path: path.to_path_buf(),
        source,
    };
    let root = std::fs::canonicalize(&options.rootfs).map_err(write_error)?;
    let spec = build_spec(
        &ImageConfiguration::default(),
        &true_config(options),
        &root,
        cgroups_path,
    )?;
    let json = serde_json::to_vec_pretty(&spec).map_err(|e| write_error(e.into()))?;
    std::fs::write(path, json).map_err(write_error)
}

/// The cgroup parent in every hierarchy (v1 controllers, v2 root); libcontainer
/// removes each container's own cgroup on delete. A parent still in use (a shared
/// `--cgroup-parent`) is not empty, so its removal fails harmlessly.
fn remove_cgroup_parent(parent: &str) {
    let relative = parent.trim_start_matches('/');
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(relative)];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(entries.flatten().map(|e| e.path().join(relative)));
    }
    for dir in dirs {
        // Absent in most hierarchies; nothing to report.
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn flags_and_positionals_are_read_in_any_order() {
        let options = parse_args(args(&[
            "/r",
            "--overlay",
            "/s",
            "--warmup",
            "0",
            "--security-opt",
            "seccomp=unconfined",
            "7",
        ]))
        .unwrap();
        assert!(options.overlay);
        assert!(options.cgroup_parent.starts_with("/rcompose-bench-"));
        assert_eq!(options.security_opt, ["seccomp=unconfined"]);
        assert_eq!(options.warmup, 0);
        assert_eq!(options.rootfs, Path::new("/r"));
        assert_eq!(options.state_dir, Path::new("/s"));
        assert_eq!(options.runs, 7);
    }

    #[test]
    fn bad_arguments_name_the_problem() {
        let err = parse_args(args(&["/r", "/s"])).err().unwrap().to_string();
        assert!(err.contains("expected 3 arguments, got 2"), "{err}");
        let err = parse_args(args(&["/r", "/s", "many"]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("\"many\" is not a non-negative integer"),
            "{err}"
        );
        let err = parse_args(args(&["--fast", "/r", "/s", "1"]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown flag --fast"), "{err}");
    }

    #[test]
    fn timing_line_starts_with_the_total() {
        let ms = Duration::from_millis;
        let timing = Timing {
            create: ms(3),
            start: ms(1),
            wait: ms(2),
            delete: ms(4),
        };
        assert_eq!(
            timing.to_string(),
            "10.000 create=3.000 start=1.000 wait=2.000 delete=4.000"
        );
    }
}
