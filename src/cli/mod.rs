//! The command line: `docker compose`'s global options and one module per subcommand.
//!
//! This is the binary's edge, so errors are `anyhow` here; the library stages below keep
//! their typed errors and this layer only adds context and picks the exit code.

mod common;
mod config;
mod containers;
mod down;
mod exec;
mod image;
mod images;
mod kill;
mod lifecycle;
mod logs;
mod ls;
mod network;
mod pause;
mod port;
mod ps;
mod pull;
mod push;
mod remove;
mod run;
mod top;
mod up;
mod version;
mod volume;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::project::discover::{self, Environment, ProjectFlags, ProjectInputs};

/// Exit code for errors in the user's project or in running a command.
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "rcompose",
    about = "Define and run multi-container applications (Compose Specification), no daemon needed",
    version,
    disable_version_flag = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// The global options of `docker compose`, plus rcompose's state root.
#[derive(Debug, clap::Args)]
pub struct GlobalOptions {
    /// Compose configuration files (repeatable; `-` reads standard input). Before the
    /// command, as Compose's documentation writes it: after it, `-f` is the command's
    /// own (`logs -f` follows, `rm -f` forces).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<String>,
    /// Project name
    #[arg(short = 'p', long = "project-name", global = true)]
    pub project_name: Option<String>,
    /// Alternate working directory (default: the directory of the first Compose file)
    #[arg(long, global = true, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Alternate environment files (repeatable)
    #[arg(long = "env-file", global = true, value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Profiles to enable (repeatable)
    #[arg(
        id = "global_profile",
        long = "profile",
        global = true,
        value_name = "PROFILE"
    )]
    pub profiles: Vec<String>,
    /// Control when to print ANSI control characters
    #[arg(long, global = true, value_enum, default_value_t = Ansi::Auto)]
    pub ansi: Ansi,
    /// Set type of progress output
    #[arg(long, global = true, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Control max parallelism, -1 for unlimited
    #[arg(long, global = true, default_value_t = -1, allow_negative_numbers = true)]
    pub parallel: i64,
    /// State root of the embedded engine
    #[arg(
        long,
        global = true,
        env = "RCOMPOSE_ROOT",
        default_value = "/var/lib/rcompose",
        value_name = "DIR"
    )]
    pub root: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ansi {
    Never,
    Always,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    Tty,
    Plain,
    Json,
    Quiet,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, resolve and render the Compose file in canonical format
    #[command(alias = "convert")]
    Config(config::ConfigArgs),
    /// Creates containers for a service
    Create(up::CreateArgs),
    /// Stop and remove containers, networks
    Down(down::DownArgs),
    /// Manage the embedded engine's images
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Manage the embedded engine's networks
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// List images used by the created containers
    Images(images::ImagesArgs),
    /// Force stop service containers
    Kill(kill::KillArgs),
    /// View output from containers
    Logs(logs::LogsArgs),
    /// List running compose projects
    Ls(ls::LsArgs),
    /// Pause services
    Pause(pause::PauseArgs),
    /// Print the public port for a port binding
    Port(port::PortArgs),
    /// List containers
    Ps(ps::PsArgs),
    /// Pull service images
    Pull(pull::PullArgs),
    /// Push service images
    Push(push::PushArgs),
    /// Restart service containers
    Restart(lifecycle::StopArgs),
    /// Removes stopped service containers
    Rm(remove::RemoveArgs),
    /// Run a one-off command on a service
    Run(run::RunArgs),
    /// Start services
    Start(lifecycle::StartArgs),
    /// Stop services
    Stop(lifecycle::StopArgs),
    /// Display the running processes
    Top(top::TopArgs),
    /// Unpause services
    Unpause(pause::PauseArgs),
    /// Create and start containers
    Up(up::UpArgs),
    /// Show the rcompose version information
    Version(version::VersionArgs),
    /// Manage the embedded engine's volumes
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// List the current project's volumes
    Volumes(volume::ListArgs),
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn run() -> u8 {
    let cli = Cli::parse();
    apply_ansi(cli.global.ansi);
    let result = match &cli.command {
        Command::Config(args) => config::run(&cli.global, args),
        Command::Create(args) => up::run_create(&cli.global, args),
        Command::Down(args) => down::run(&cli.global, args),
        Command::Image(command) => image::run(&cli.global, command),
        Command::Restart(args) => lifecycle::run_restart(&cli.global, args),
        Command::Run(args) => run::run(&cli.global, args),
        Command::Start(args) => lifecycle::run_start(&cli.global, args),
        Command::Stop(args) => lifecycle::run_stop(&cli.global, args),
        Command::Up(args) => up::run(&cli.global, args),
        Command::Network(command) => network::run(&cli.global, command),
        Command::Exec(args) => exec::run(&cli.global, args),
        Command::Images(args) => images::run(&cli.global, args),
        Command::Kill(args) => kill::run(&cli.global, args),
        Command::Ls(args) => ls::run(&cli.global, args),
        Command::Pause(args) => pause::run_pause(&cli.global, args),
        Command::Unpause(args) => pause::run_unpause(&cli.global, args),
        Command::Rm(args) => remove::run(&cli.global, args),
        Command::Top(args) => top::run(&cli.global, args),
        Command::Logs(args) => logs::run(&cli.global, args),
        Command::Port(args) => port::run(&cli.global, args),
        Command::Ps(args) => ps::run(&cli.global, args),
        Command::Pull(args) => pull::run(&cli.global, args),
        Command::Push(args) => push::run(&cli.global, args),
        Command::Version(args) => version::run(args),
        Command::Volume(command) => volume::run(&cli.global, command),
        Command::Volumes(args) => volume::run_project(&cli.global, args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{}", render_error(&err));
            EXIT_FAILURE
        }
    }
}

fn apply_ansi(ansi: Ansi) {
    match ansi {
        Ansi::Never => console::set_colors_enabled(false),
        Ansi::Always => console::set_colors_enabled(true),
        Ansi::Auto => {}
    }
    console::set_colors_enabled_stderr(console::colors_enabled_stderr() && ansi != Ansi::Never);
}

/// One line per cause, outermost first, without repeating text a cause already says.
fn render_error(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

impl GlobalOptions {
    pub fn project_flags(&self) -> ProjectFlags {
        ProjectFlags {
            files: self.files.clone(),
            project_name: self.project_name.clone(),
            project_directory: self.project_directory.clone(),
            env_files: self.env_files.clone(),
            profiles: self.profiles.clone(),
        }
    }

    /// Resolves files, directory, name and environment for this invocation.
    pub fn project_inputs(&self) -> anyhow::Result<ProjectInputs> {
        let process_env: Environment = std::env::vars().collect();
        let working_dir = std::env::current_dir()?;
        Ok(discover::resolve(
            &self.project_flags(),
            &process_env,
            &working_dir,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks flag clashes (a subcommand's `-f` against the global `--file`) only when
    /// a command is parsed; check them all here instead of at a user's first try.
    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
