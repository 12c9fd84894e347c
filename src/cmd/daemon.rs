//! `ping` and `daemon.status`.

use super::Empty;
use crate::services::Services;
use serde::Serialize;

pub fn ping() -> Empty {
    Empty {}
}

#[derive(Serialize)]
pub struct Status {
    daemon: &'static str,
    version: &'static str,
    pid: u32,
    uptime_ms: u64,
    root: String,
    database: String,
    schema_version: i32,
    config: String,
    connections: usize,
    mailboxes_running: usize,
    queues_running: usize,
    threads_running: usize,
}

pub fn status(s: &Services) -> Status {
    Status {
        daemon: "ikigai",
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        uptime_ms: s.status.started.elapsed().as_millis() as u64,
        root: s.status.root.clone(),
        database: s.status.database.clone(),
        schema_version: crate::postgres::SCHEMA_VERSION,
        config: s.config.source.clone(),
        connections: s.status.connections.get(),
        mailboxes_running: s.mailboxes.count(),
        queues_running: s.queues.count(),
        threads_running: s.llm.threads_running(),
    }
}
