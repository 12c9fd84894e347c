//! `ikigai-daemon`: runs the daemon in a root directory (see `ikigai daemon --help`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    ikigai::init_logging();
    let args = ikigai::cli::DaemonArgs::parse();
    ikigai::cli::run_daemon(args)
}
