//! `ikigai`: the operator's command line (see `ikigai --help`).

use clap::Parser;

/// The same allocator as `ikigai-daemon`, since `ikigai daemon` runs the daemon too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ikigai::init_logging();
    ikigai::cli::run(ikigai::cli::Cli::parse())
}
