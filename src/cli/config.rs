//! `rcompose config`: the merged, interpolated, normalized model, or parts of it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::GlobalOptions;
use crate::project::loader::{self, LoadSettings, Loaded};
use crate::project::model::{Project, Service};
use crate::project::render::{self, Format};
use crate::project::{hash, interpolate, profiles, yaml};
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Only these services (and what they depend on)
    services_filter: Vec<String>,
    /// Format the output
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    format: Format,
    /// Save to file (default to stdout)
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Only validate the configuration, don't print anything
    #[arg(short, long)]
    quiet: bool,
    /// Print the service names, one per line
    #[arg(long)]
    services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    volumes: bool,
    /// Print the network names, one per line
    #[arg(long)]
    networks: bool,
    /// Print the image names, one per line
    #[arg(long)]
    images: bool,
    /// Print the profile names, one per line
    #[arg(long)]
    profiles: bool,
    /// Print the model variables and their default values
    #[arg(long)]
    variables: bool,
    /// Print the environment used for interpolation
    #[arg(long)]
    environment: bool,
    /// Print the service config hash, one per line (`*` for all services)
    #[arg(long, value_name = "SERVICE")]
    hash: Option<String>,
    /// Don't interpolate environment variables
    #[arg(long)]
    no_interpolate: bool,
    /// Don't normalize the compose model
    #[arg(long)]
    no_normalize: bool,
    /// Don't resolve file paths
    #[arg(long)]
    no_path_resolution: bool,
    /// Don't resolve service env files
    #[arg(long)]
    no_env_resolution: bool,
    /// Don't check model consistency (warning: may produce an invalid model)
    #[arg(long)]
    no_consistency: bool,
}

pub fn run(global: &GlobalOptions, args: &ConfigArgs) -> anyhow::Result<u8> {
    let inputs = global.project_inputs()?;
    if args.environment {
        let mut lines: Vec<String> = inputs
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        lines.sort();
        return emit(args, &lines.join("\n"));
    }
    if args.variables {
        return emit(args, &variables_table(&inputs)?);
    }

    let settings = LoadSettings {
        interpolate: !args.no_interpolate,
        normalize: !args.no_normalize,
        resolve_paths: !args.no_path_resolution,
        resolve_env_files: !args.no_env_resolution,
        consistency: !args.no_consistency,
        targeted_services: args.services_filter.clone(),
    };
    let Loaded {
        project,
        disabled_services,
        warnings,
    } = loader::load(&inputs, &settings)?;
    for warning in &warnings {
        eprintln!("{} {warning}", console::style("WARN").yellow().for_stderr());
    }
    let project = if args.services_filter.is_empty() {
        project
    } else {
        profiles::select(project, &args.services_filter)?
    };

    if args.quiet {
        std::mem::forget(project);
        return Ok(0);
    }
    // Listings are sorted by name, as Compose prints them.
    if args.services {
        return emit(args, &sorted_lines(project.services.keys().cloned()));
    }
    if args.volumes {
        return emit(args, &sorted_lines(project.volumes.keys().cloned()));
    }
    if args.networks {
        return emit(args, &sorted_lines(project.networks.keys().cloned()));
    }
    if args.images {
        let mut services: Vec<_> = project.services.iter().collect();
        services.sort_by(|a, b| a.0.cmp(b.0));
        let images: Vec<String> = services
            .into_iter()
            .map(|(name, service)| image_name(&project.name, name, service))
            .collect();
        return emit(args, &images.join("\n"));
    }
    if args.profiles {
        let all = project.services.values().chain(disabled_services.values());
        return emit(args, &profiles::all_profiles(all).join("\n"));
    }
    if let Some(selector) = &args.hash {
        return emit(args, &hashes(&project, selector)?.join("\n"));
    }
    let text = render::render(&project, args.format, !args.no_interpolate)?;
    // The process ends here: freeing a large model piece by piece would only cost time.
    std::mem::forget(project);
    emit(args, text.trim_end())
}

fn sorted_lines(names: impl Iterator<Item = String>) -> String {
    let mut names: Vec<String> = names.collect();
    names.sort();
    names.join("\n")
}

/// The image a service runs: its `image`, or the name Compose gives a built image.
fn image_name(project: &str, service_name: &str, service: &Service) -> String {
    if service.image.is_empty() {
        format!("{project}-{service_name}")
    } else {
        service.image.clone()
    }
}

/// `SERVICE HASH` lines for one service, a comma-separated list, or `*`.
fn hashes(project: &Project, selector: &str) -> anyhow::Result<Vec<String>> {
    let names: Vec<&str> = if selector == "*" {
        project.services.keys().map(String::as_str).collect()
    } else {
        selector.split(',').map(str::trim).collect()
    };
    names
        .into_iter()
        .map(|name| {
            let service = project
                .services
                .get(name)
                .with_context(|| format!("no such service: {name}"))?;
            Ok(format!("{name} {}", hash::service_hash(service)?))
        })
        .collect()
}

/// The variables the Compose files refer to, with their defaults, as a table.
fn variables_table(inputs: &crate::project::discover::ProjectInputs) -> anyhow::Result<String> {
    let mut found: Vec<interpolate::Variable> = Vec::new();
    for source in &inputs.files {
        let text = loader::read_source(source)?;
        let documents = yaml::parse_documents(&text).with_context(|| source.display_name())?;
        for document in &documents {
            for variable in interpolate::variables_in_value(document) {
                if !found.iter().any(|v| v.name == variable.name) {
                    found.push(variable);
                }
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Vec<String>> = found
        .into_iter()
        .map(|v| {
            vec![
                v.name,
                v.required.to_string(),
                v.default.unwrap_or_default(),
                v.alternate.unwrap_or_default(),
            ]
        })
        .collect();
    Ok(ui::table::render(
        &["NAME", "REQUIRED", "DEFAULT VALUE", "ALTERNATE VALUE"],
        &rows,
    ))
}

fn emit(args: &ConfigArgs, text: &str) -> anyhow::Result<u8> {
    let mut text = text.to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
    }
    Ok(0)
}
