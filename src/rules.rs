//! The rules of values that every way into the platform checks the same (the ops in `cmd`, the
//! model's platform tools in `llm::tools`, the shared operations in `actions`): names,
//! millisecond durations, timestamps (read, and written as they travel).

use crate::error::Error;
use chrono::{DateTime, SecondsFormat, Utc};
use std::time::Duration;

/// Checks a mailbox or queue name: 1 to 255 bytes without U+0000.
pub fn check_name(what: &str, name: &str) -> Result<(), Error> {
    check_text(what, name, 255)
}

/// Checks a name-like string argument: 1 to `max` bytes, no U+0000.
pub fn check_text(what: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() || value.len() > max || value.contains('\0') {
        return Err(Error::BadRequest(format!(
            "{what} must be 1 to {max} bytes without U+0000"
        )));
    }
    Ok(())
}

/// The longest duration any `*_ms` argument may give: ten years (of 366 days). Longer ones would
/// overflow the clocks they are added to; the ops of waits and leases allow less.
pub const MAX_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

/// Checks a `*_ms` argument named `what`: `min` to `max` (at most [`MAX_MS`]) milliseconds.
pub fn check_ms(what: &str, ms: u64, min: u64, max: Duration) -> Result<Duration, Error> {
    let max = u64::try_from(max.as_millis()).map_or(MAX_MS, |m| m.min(MAX_MS));
    if !(min..=max).contains(&ms) {
        return Err(Error::BadRequest(format!("{what} must be {min} to {max}")));
    }
    Ok(Duration::from_millis(ms))
}

/// Parses an RFC 3339 timestamp argument.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::BadRequest(format!("{s:?} is not an RFC 3339 timestamp: {e}")))
}

/// A timestamp as it travels: RFC 3339, UTC, microseconds.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}
