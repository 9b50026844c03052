//! The `rcompose` binary: everything lives in the library; this is only the process edge.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(rcompose::cli::run())
}
