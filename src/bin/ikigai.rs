//! `ikigai`: the operator's command line (see `ikigai --help`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    ikigai::init_logging();
    ikigai::cli::run(ikigai::cli::Cli::parse())
}
