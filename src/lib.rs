//! `ikigai-daemon`: the process agents use to coordinate and to reach LLMs.
//!
//! See `ARCHITECTURE.md` for the map. In short: [`server`] accepts connections on the Unix
//! socket, [`session`] reads frames (framing lives in the `ikigai-protocol` crate) and runs
//! [`cmd`] ops, which call the actors of the `ikigai-actors` crate; the actors persist through
//! store traits implemented in [`postgres`]. [`daemon`] wires it together; [`cli`] is the
//! operator's `ikigai` command.

pub mod actions;
pub mod admission;
pub mod agents;
pub mod backends;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod error;
pub mod identity;
pub mod llm;
pub mod manifest;
pub mod postgres;
pub mod root;
pub mod rules;
pub mod server;
pub mod services;
pub mod session;
pub mod tx;

/// Starts `tracing` output on stderr, filtered by `$IKIGAI_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IKIGAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
