//! The `rcompose` binary: everything lives in the library; this is only the process edge.

// Loading a big project allocates many small strings and maps; mimalloc does that with
// fewer page faults and less time than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Before anything else (before any thread exists): when started as the
    // container runtime's helper, this serves it and never returns.
    rcompose_runtime::container::helper::maybe_run();
    // Likewise when started as a project's supervisor.
    rcompose::supervisor::maybe_run();
    std::process::ExitCode::from(rcompose::cli::run())
}
