//! `rcompose version`: printed without touching any project or state.

use clap::ValueEnum;

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Format the output
    #[arg(long, value_enum, default_value_t = VersionFormat::Pretty)]
    format: VersionFormat,
    /// Show only the version number
    #[arg(long)]
    short: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum VersionFormat {
    Pretty,
    Json,
}

pub fn run(args: &VersionArgs) -> anyhow::Result<u8> {
    let version = env!("CARGO_PKG_VERSION");
    let text = if args.short {
        version.to_string()
    } else {
        match args.format {
            VersionFormat::Pretty => format!("rcompose version v{version}"),
            VersionFormat::Json => {
                serde_json::json!({ "version": format!("v{version}") }).to_string()
            }
        }
    };
    println!("{text}");
    Ok(0)
}
