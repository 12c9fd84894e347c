//! Rows whose content an agent or plain SQL wrote may not decode (a JSONB value nested beyond
//! serde_json's 128 levels, a NULL where the daemon writes none): they are read with `try_get`,
//! never `Row::get` (which panics), and one that does not decode is reported, with a warning and
//! a `row_undecodable` telemetry event, then skipped or dead-lettered by its store.

use ikigai_actors::telemetry::{Telemetry, DAEMON_AGENT};
use std::sync::OnceLock;
use tokio_postgres::Row;
use tracing::warn;

/// Where reports go once the daemon's telemetry runs (the telemetry sink is a store itself, so
/// the stores cannot be handed it when they are made).
static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// Sends the reports of undecodable rows to `telemetry` from now on (the first call counts).
pub fn report_to(telemetry: Telemetry) {
    let _ = TELEMETRY.set(telemetry);
}

/// Splits `rows` into what `decode` reads and the rows it cannot, with why.
pub(crate) fn split<T>(
    rows: &[Row],
    decode: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> (Vec<T>, Vec<(&Row, tokio_postgres::Error)>) {
    let mut good = Vec::with_capacity(rows.len());
    let mut bad = Vec::new();
    for row in rows {
        match decode(row) {
            Ok(t) => good.push(t),
            Err(e) => bad.push((row, e)),
        }
    }
    (good, bad)
}

/// Reports a row of `table` named `id` that does not decode, and what was done with it.
pub(crate) fn report(table: &str, id: &str, error: &dyn std::fmt::Display, action: &str) {
    warn!(table, id, error = %error, action, "a stored row does not decode");
    if let Some(telemetry) = TELEMETRY.get() {
        let payload = serde_json::json!({
            "table": table, "id": id, "error": error.to_string(), "action": action,
        });
        telemetry.record(DAEMON_AGENT, "row_undecodable", payload);
    }
}

/// A column that does not decode: the same row will not decode on a retry.
pub(crate) fn undecodable(e: tokio_postgres::Error) -> ikigai_actors::store::StoreError {
    ikigai_actors::store::StoreError::Undecodable(e.to_string())
}

/// The text of column 0 (an id of every table read here), for reports.
pub(crate) fn id_of(row: &Row) -> String {
    match row.try_get::<_, uuid::Uuid>(0) {
        Ok(id) => id.to_string(),
        Err(_) => row.try_get::<_, String>(0).unwrap_or_else(|_| "?".into()),
    }
}
