//! Stored data that does not decode (written beside the daemon, by plain SQL, `redis-cli` or an
//! older build) is reported, with a warning and a `row_undecodable` telemetry event, whichever
//! engine holds it; the engine then skips it or dead-letters it.

use crate::telemetry::{Telemetry, DAEMON_AGENT};
use std::sync::OnceLock;
use tracing::warn;

/// Where reports go once the daemon's telemetry runs (the telemetry sink is a store itself, so
/// the stores cannot be handed it when they are made).
static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// Sends the reports of undecodable data to `telemetry` from now on (the first call counts).
pub fn report_to(telemetry: Telemetry) {
    let _ = TELEMETRY.set(telemetry);
}

/// Reports an entry of `table` (or stream, or key space) named `id` that does not decode, and
/// what was done with it.
pub fn report(table: &str, id: &str, error: &dyn std::fmt::Display, action: &str) {
    warn!(table, id, error = %error, action, "a stored row does not decode");
    if let Some(telemetry) = TELEMETRY.get() {
        let payload = serde_json::json!({
            "table": table, "id": id, "error": error.to_string(), "action": action,
        });
        telemetry.record(DAEMON_AGENT, "row_undecodable", payload);
    }
}
