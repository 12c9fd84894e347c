//! `telemetry.emit` and `telemetry.query`.
//!
//! Any agent emits events under its own name; an agent queries its own events, `admin` anyone's.

use super::{check_text, timestamp, Empty};
use crate::actions::{self, EventsSpec};
use crate::error::Error;
use crate::services::Services;
use crate::session::Session;
use ikigai_actors::telemetry::TelemetryEvent;
use ikigai_protocol::Json;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitArgs {
    event_type: String,
    payload: Json,
}

/// The most bytes of strings a payload may hold: its search text (a tsvector, at most 1 MiB in
/// Postgres, up to ~3.5 times the bytes of short distinct words) must fit, or the batch holding
/// it could never be written and the events beside it would be lost with it.
const MAX_TEXT_BYTES: usize = 128 * 1024;

pub fn emit(args: EmitArgs, s: &Services, session: &Session) -> Result<Empty, Error> {
    check_text("event_type", &args.event_type, 64)?;
    if text_bytes(&args.payload.0) > MAX_TEXT_BYTES {
        return Err(Error::BadRequest(format!(
            "payload holds more than {MAX_TEXT_BYTES} bytes of strings, more than can be searched"
        )));
    }
    s.telemetry
        .emit(&session.agent, &args.event_type, args.payload.0)?;
    Ok(Empty {})
}

/// The bytes of the strings in `value` (map keys are not searched).
fn text_bytes(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(s) => s.len(),
        serde_json::Value::Array(items) => items.iter().map(text_bytes).sum(),
        serde_json::Value::Object(map) => map.values().map(text_bytes).sum(),
        _ => 0,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryArgs {
    agent: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    text: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize)]
pub struct Events {
    events: Vec<WireEvent>,
}

#[derive(Serialize)]
struct WireEvent {
    id: String,
    agent: String,
    event_type: String,
    payload: serde_json::Value,
    created_at: String,
}

pub async fn query(args: QueryArgs, s: &Services, session: &Session) -> Result<Events, Error> {
    let spec = EventsSpec {
        agent: args.agent,
        event_type: args.event_type,
        since: args.since,
        until: args.until,
        text: args.text,
        limit: args.limit,
    };
    let events = actions::query_telemetry(s, session, spec).await?;
    Ok(Events {
        events: events.into_iter().map(WireEvent::from).collect(),
    })
}

impl From<TelemetryEvent> for WireEvent {
    fn from(e: TelemetryEvent) -> Self {
        WireEvent {
            id: e.id.to_string(),
            agent: e.agent,
            event_type: e.event_type,
            payload: e.payload,
            created_at: timestamp(e.created_at),
        }
    }
}
