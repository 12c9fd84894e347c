//! `ikigai-daemon`: runs the daemon in a root directory (see `ikigai daemon --help`).

use clap::Parser;

/// glibc's allocator spent ~45% of the daemon's CPU under load (many small, short-lived
/// allocations per frame); mimalloc handles that pattern far better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ikigai::init_logging();
    let args = ikigai::cli::DaemonArgs::parse();
    ikigai::cli::run_daemon(args)
}
