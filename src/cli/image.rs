//! `rcompose image ...`: the embedded engine's image store, as `docker image` drives
//! Docker's (load, save, import, ls, inspect, tag, rm, prune, pull, push).

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use rcompose_runtime::image::reference::Reference;
use rcompose_runtime::image::registry::{
    self, Platform, Progress as LayerProgress, ProgressEvent, ProgressStatus, PullOptions,
    RegistryClient,
};
use rcompose_runtime::image::store::{ImageSummary, Store};
use rcompose_runtime::image::{archive, import};

use super::{GlobalOptions, Progress};
use crate::ui;
use crate::ui::size::{human_size, image_size};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load images from a `docker save` archive (legacy or OCI layout, plain or gzip)
    Load {
        /// Read from this archive instead of standard input
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Suppress the load output
        #[arg(short, long)]
        quiet: bool,
    },
    /// Save images to an archive that `docker load` accepts
    Save {
        /// Write to this file instead of standard output
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Create an image from a root filesystem tarball (`-` for standard input)
    Import {
        #[arg(value_name = "FILE|-")]
        file: String,
        #[arg(value_name = "REPOSITORY[:TAG]")]
        reference: Option<String>,
        /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, ...)
        #[arg(short, long = "change", value_name = "INSTRUCTION")]
        changes: Vec<String>,
    },
    /// List images
    #[command(alias = "list")]
    Ls {
        /// Only show image IDs
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Display detailed information on images, as JSON
    Inspect {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Create a tag TARGET that refers to SOURCE
    Tag { source: String, target: String },
    /// Remove images (untag; the image goes with its last tag)
    #[command(alias = "remove")]
    Rm {
        /// Remove an image that several repositories tag (`-f` is the global --file)
        #[arg(long)]
        force: bool,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Remove untagged images and every layer and blob no image uses
    Prune,
    /// Download an image from a registry
    Pull {
        /// Suppress verbose output
        #[arg(short, long)]
        quiet: bool,
        /// Platform to take from a multi-platform image (os/arch[/variant])
        #[arg(long, value_name = "PLATFORM", env = "DOCKER_DEFAULT_PLATFORM")]
        platform: Option<String>,
        #[arg(value_name = "NAME[:TAG|@DIGEST]")]
        reference: String,
    },
    /// Upload an image to a registry
    Push {
        /// Suppress verbose output
        #[arg(short, long)]
        quiet: bool,
        #[arg(value_name = "NAME[:TAG]")]
        reference: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

pub fn run(global: &GlobalOptions, command: &ImageCommand) -> anyhow::Result<u8> {
    let store = open_store(global)?;
    match command {
        ImageCommand::Load { input, quiet } => load(&store, input.as_ref(), *quiet),
        ImageCommand::Save { output, images } => save(&store, output.as_ref(), images),
        ImageCommand::Import {
            file,
            reference,
            changes,
        } => import_rootfs(&store, file, reference.as_deref(), changes),
        ImageCommand::Ls { quiet, format } => list(&store, *quiet, *format),
        ImageCommand::Inspect { images } => inspect(&store, images),
        ImageCommand::Tag { source, target } => {
            let image = store.resolve(source)?;
            store.tag(&parse_reference(target)?, &image.id)?;
            Ok(0)
        }
        ImageCommand::Rm { force, images } => remove(&store, images, *force),
        ImageCommand::Pull {
            quiet,
            platform,
            reference,
        } => pull(global, &store, reference, platform.as_deref(), *quiet),
        ImageCommand::Push { quiet, reference } => push(global, &store, reference, *quiet),
        ImageCommand::Prune => {
            let report = store.prune(&[])?;
            for id in &report.images {
                println!("Deleted Images: {id}");
            }
            println!(
                "Total reclaimed space: {} ({} layers, {} blobs)",
                human_size(report.reclaimed_bytes),
                report.layers.len(),
                report.blobs.len()
            );
            Ok(0)
        }
    }
}

/// The image store lives under the state root (`--root`).
pub fn open_store(global: &GlobalOptions) -> anyhow::Result<Store> {
    let root = global.root.join("images");
    Store::open(&root).with_context(|| format!("opening the image store at {}", root.display()))
}

fn parse_reference(text: &str) -> anyhow::Result<Reference> {
    Reference::parse(text).with_context(|| format!("{text:?}"))
}

fn load(store: &Store, input: Option<&PathBuf>, quiet: bool) -> anyhow::Result<u8> {
    let loaded = match input {
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            archive::load(store, std::io::BufReader::new(file))
                .with_context(|| format!("loading {}", path.display()))?
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!(
                    "requested load from stdin, but stdin is empty: give the archive with -i FILE"
                );
            }
            archive::load(store, std::io::stdin().lock())
                .context("loading the archive from standard input")?
        }
    };
    if !quiet {
        for image in loaded {
            if image.tags.is_empty() {
                println!("Loaded image ID: {}", image.id);
            }
            for tag in image.tags {
                println!("Loaded image: {}", tag.familiar());
            }
        }
    }
    Ok(0)
}

fn save(store: &Store, output: Option<&PathBuf>, images: &[String]) -> anyhow::Result<u8> {
    let names: Vec<&str> = images.iter().map(String::as_str).collect();
    match output {
        Some(path) => {
            // Write next to the target and rename, so a failed save leaves no half archive.
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut temp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("writing {}", path.display()))?;
            archive::save(store, &names, std::io::BufWriter::new(temp.as_file_mut()))?;
            // An archive is not a secret: readable like any file the user writes.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))?;
            temp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect standard output");
            }
            let mut stdout = std::io::stdout().lock();
            archive::save(store, &names, &mut stdout)?;
            stdout.flush()?;
        }
    }
    Ok(0)
}

fn import_rootfs(
    store: &Store,
    file: &str,
    reference: Option<&str>,
    changes: &[String],
) -> anyhow::Result<u8> {
    let reference = reference.map(parse_reference).transpose()?;
    let reader: Box<dyn Read> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {file}"))?,
        ))
    };
    let id = import::import(store, reader, reference.as_ref(), changes)
        .with_context(|| format!("importing {file}"))?;
    println!("{id}");
    Ok(0)
}

fn list(store: &Store, quiet: bool, format: ListFormat) -> anyhow::Result<u8> {
    let images = store.list()?;
    if quiet {
        for image in &images {
            println!("{}", image.id.short());
        }
        return Ok(0);
    }
    match format {
        ListFormat::Json => {
            for image in &images {
                for row in rows_of(image) {
                    let [repository, tag, id, created, size] = row;
                    let line = serde_json::json!({
                        "Repository": repository, "Tag": tag, "ID": id,
                        "CreatedAt": created, "Size": size,
                    });
                    println!("{line}");
                }
            }
        }
        ListFormat::Table => {
            let rows: Vec<Vec<String>> = images.iter().flat_map(rows_of).map(Vec::from).collect();
            print!(
                "{}",
                ui::table::render(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows)
            );
        }
    }
    Ok(0)
}

/// One row per tag (`<none>` for an untagged image), as `docker images` shows them.
fn rows_of(image: &ImageSummary) -> Vec<[String; 5]> {
    let id = image.id.short().to_string();
    let created = image.created.as_deref().map(ago).unwrap_or_default();
    let size = image_size(image.size);
    if image.tags.is_empty() {
        return vec![["<none>".into(), "<none>".into(), id, created, size]];
    }
    image
        .tags
        .iter()
        .map(|reference| {
            let familiar = reference.familiar();
            let repository = familiar
                .split_once('@')
                .map_or(familiar.as_str(), |(name, _)| name)
                .rsplit_once(':')
                .filter(|(_, tag)| !tag.contains('/'))
                .map_or(familiar.clone(), |(name, _)| name.to_string());
            let tag = reference.tag().unwrap_or("<none>").to_string();
            [repository, tag, id.clone(), created.clone(), size.clone()]
        })
        .collect()
}

fn inspect(store: &Store, images: &[String]) -> anyhow::Result<u8> {
    let mut out = Vec::new();
    for query in images {
        let details = store.inspect(query)?;
        out.push(serde_json::json!({
            "Id": details.image.id.to_string(),
            "RepoTags": details.tags.iter().map(|t| t.familiar()).collect::<Vec<_>>(),
            "Created": details.image.created,
            "Size": details.image.size,
            "Layers": details.image.layers.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            "Config": details.config,
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

fn remove(store: &Store, images: &[String], force: bool) -> anyhow::Result<u8> {
    for query in images {
        let report = store.remove(query, force)?;
        for tag in &report.untagged {
            println!("Untagged: {}", tag.familiar());
        }
        if let Some(id) = &report.deleted {
            println!("Deleted: {id}");
        }
    }
    Ok(0)
}

/// "5 minutes ago" for an RFC 3339 time, as `docker images` shows ages.
fn ago(created: &str) -> String {
    let Ok(then) = humantime::parse_rfc3339_weak(
        created
            .trim_end_matches('Z')
            .split('.')
            .next()
            .unwrap_or(created),
    ) else {
        return created.to_string();
    };
    let Ok(elapsed) = std::time::SystemTime::now().duration_since(then) else {
        return "Less than a second ago".into();
    };
    let seconds = elapsed.as_secs();
    let (count, unit) = match seconds {
        0..=59 => return "Less than a minute ago".into(),
        60..=3599 => (seconds / 60, "minute"),
        3600..=86_399 => (seconds / 3600, "hour"),
        86_400..=2_591_999 => (seconds / 86_400, "day"),
        2_592_000..=31_535_999 => (seconds / 2_592_000, "month"),
        _ => (seconds / 31_536_000, "year"),
    };
    if count == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{count} {unit}s ago")
    }
}

/// `docker pull`: per-layer progress, then the digest, the status and the name.
fn pull(
    global: &GlobalOptions,
    store: &Store,
    text: &str,
    platform: Option<&str>,
    quiet: bool,
) -> anyhow::Result<u8> {
    let reference = parse_reference(text)?;
    let options = PullOptions {
        platform: platform.map(Platform::parse).transpose()?,
        ..PullOptions::default()
    };
    let client = RegistryClient::from_state_root(&global.root)?;
    let mode = RenderMode::choose(global.progress, quiet);
    if mode != RenderMode::Quiet {
        let tag = reference.tag().unwrap_or("latest");
        println!("{tag}: Pulling from {}", familiar_repository(&reference));
    }
    let renderer = LayerRenderer::new(mode);
    let outcome = block_on(registry::pull(
        &client,
        store,
        &reference,
        &options,
        &renderer.progress(),
    ))?;
    renderer.finish();
    if mode != RenderMode::Quiet {
        println!("Digest: {}", outcome.manifest_digest);
        let status = if outcome.updated {
            "Downloaded newer image for"
        } else {
            "Image is up to date for"
        };
        println!("Status: {status} {}", reference.familiar());
    }
    println!("{reference}");
    Ok(0)
}

/// `docker push`: per-layer progress, then `<tag>: digest: <digest> size: <n>`.
fn push(global: &GlobalOptions, store: &Store, text: &str, quiet: bool) -> anyhow::Result<u8> {
    let reference = parse_reference(text)?;
    let client = RegistryClient::from_state_root(&global.root)?;
    let mode = RenderMode::choose(global.progress, quiet);
    if mode != RenderMode::Quiet {
        println!(
            "The push refers to repository [{}]",
            familiar_repository(&reference)
        );
    }
    let renderer = LayerRenderer::new(mode);
    let outcome = block_on(registry::push(
        &client,
        store,
        &reference,
        &renderer.progress(),
    ))?;
    renderer.finish();
    if mode != RenderMode::Quiet {
        println!(
            "{}: digest: {} size: {}",
            reference.tag().unwrap_or("latest"),
            outcome.manifest_digest,
            outcome.size
        );
    }
    Ok(0)
}

/// The repository as Docker names it in messages (`library/busybox` on Docker Hub).
fn familiar_repository(reference: &Reference) -> String {
    if reference.domain() == "docker.io" {
        reference.path().to_owned()
    } else {
        reference.repository()
    }
}

/// Registry work runs on a small runtime of its own: the CLI is synchronous.
fn block_on<T>(
    work: impl std::future::Future<Output = Result<T, registry::RegistryError>>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(work)?)
}

/// How pull and push progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderMode {
    /// Nothing but the result.
    Quiet,
    /// A line whenever a layer changes state (logs, CI).
    Plain,
    /// A live bar per layer, as `docker pull` draws on a terminal.
    Bars,
}

impl RenderMode {
    pub fn choose(progress: Progress, quiet: bool) -> RenderMode {
        match progress {
            _ if quiet => RenderMode::Quiet,
            Progress::Quiet => RenderMode::Quiet,
            Progress::Plain | Progress::Json => RenderMode::Plain,
            Progress::Tty => RenderMode::Bars,
            Progress::Auto if std::io::stdout().is_terminal() => RenderMode::Bars,
            Progress::Auto => RenderMode::Plain,
        }
    }
}

/// Draws [`ProgressEvent`]s: one indicatif bar per layer, or plain lines.
pub struct LayerRenderer {
    mode: RenderMode,
    bars: indicatif::MultiProgress,
    state: Arc<Mutex<RenderState>>,
}

#[derive(Default)]
struct RenderState {
    bars: HashMap<String, indicatif::ProgressBar>,
    /// Last status printed per layer in plain mode, to print changes only.
    printed: HashMap<String, String>,
}

impl LayerRenderer {
    pub fn new(mode: RenderMode) -> LayerRenderer {
        let bars = indicatif::MultiProgress::with_draw_target(
            indicatif::ProgressDrawTarget::stdout_with_hz(10),
        );
        LayerRenderer {
            mode,
            bars,
            state: Arc::new(Mutex::new(RenderState::default())),
        }
    }

    /// The callback to hand to `registry::pull` or `registry::push`.
    pub fn progress(&self) -> LayerProgress {
        let (mode, bars, state) = (self.mode, self.bars.clone(), Arc::clone(&self.state));
        match mode {
            RenderMode::Quiet => LayerProgress::none(),
            RenderMode::Plain => LayerProgress::new(move |event| {
                if let Ok(mut state) = state.lock() {
                    print_plain(&mut state, &event);
                }
            }),
            RenderMode::Bars => LayerProgress::new(move |event| {
                if let Ok(mut state) = state.lock() {
                    draw_bar(&bars, &mut state, &event);
                }
            }),
        }
    }

    /// Leaves every bar drawn in its final state.
    pub fn finish(&self) {
        if let Ok(state) = self.state.lock() {
            for bar in state.bars.values() {
                bar.finish();
            }
        }
    }
}

fn print_plain(state: &mut RenderState, event: &ProgressEvent) {
    if matches!(event.status, ProgressStatus::Resolving) {
        return;
    }
    let line = event.status.to_string();
    if state.printed.get(&event.id) != Some(&line) {
        println!("{}: {line}", event.id);
        state.printed.insert(event.id.clone(), line);
    }
}

fn draw_bar(bars: &indicatif::MultiProgress, state: &mut RenderState, event: &ProgressEvent) {
    if matches!(event.status, ProgressStatus::Resolving) {
        return;
    }
    let bar = state
        .bars
        .entry(event.id.clone())
        .or_insert_with(|| {
            let bar = bars.add(indicatif::ProgressBar::new(0));
            bar.set_prefix(event.id.clone());
            bar.set_style(text_style());
            bar
        })
        .clone();
    match &event.status {
        ProgressStatus::Downloading { current, total }
        | ProgressStatus::Pushing { current, total } => {
            bar.set_style(bytes_style());
            bar.set_length(*total);
            bar.set_position(*current);
            bar.set_message(event.status.to_string());
        }
        other => {
            bar.set_style(text_style());
            bar.set_message(other.to_string());
        }
    }
}

fn text_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{prefix}: {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

fn bytes_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{prefix}: {msg} [{bar:40}] {decimal_bytes}/{decimal_total_bytes}",
    )
    .map(|style| style.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_mode_follows_quiet_and_progress() {
        assert_eq!(RenderMode::choose(Progress::Tty, true), RenderMode::Quiet);
        assert_eq!(
            RenderMode::choose(Progress::Quiet, false),
            RenderMode::Quiet
        );
        assert_eq!(
            RenderMode::choose(Progress::Plain, false),
            RenderMode::Plain
        );
        assert_eq!(RenderMode::choose(Progress::Tty, false), RenderMode::Bars);
    }

    #[test]
    fn plain_mode_prints_each_state_change_once() {
        let mut state = RenderState::default();
        let event = |status| ProgressEvent {
            id: "abc".into(),
            status,
        };
        print_plain(&mut state, &event(ProgressStatus::Waiting));
        print_plain(
            &mut state,
            &event(ProgressStatus::Downloading {
                current: 1,
                total: 9,
            }),
        );
        print_plain(
            &mut state,
            &event(ProgressStatus::Downloading {
                current: 5,
                total: 9,
            }),
        );
        assert_eq!(state.printed["abc"], "Downloading");
        print_plain(&mut state, &event(ProgressStatus::PullComplete));
        assert_eq!(state.printed["abc"], "Pull complete");
    }

    #[test]
    fn docker_hub_repositories_are_named_without_the_domain() {
        let hub = Reference::parse("busybox").expect("reference");
        assert_eq!(familiar_repository(&hub), "library/busybox");
        let local = Reference::parse("localhost:5000/app:1").expect("reference");
        assert_eq!(familiar_repository(&local), "localhost:5000/app");
    }
}
