//! Typed calls for telemetry: `client.telemetry().emit/query`.

use crate::{Client, ClientError};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    pub id: String,
    pub agent: String,
    pub event_type: String,
    pub payload: Json,
    pub created_at: String,
}

/// Which events `telemetry.query` returns; unset fields take the daemon's defaults (the
/// caller's own events, newest 100).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Query<'a> {
    pub agent: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// RFC 3339, inclusive.
    pub since: Option<&'a str>,
    /// RFC 3339, exclusive.
    pub until: Option<&'a str>,
    /// Full-text search over the payload's strings.
    pub text: Option<&'a str>,
    pub limit: Option<u32>,
}

/// The telemetry service, as `client.telemetry()` gives it.
#[derive(Clone, Copy)]
pub struct Telemetry<'a> {
    client: &'a Client,
}

impl Telemetry<'_> {
    /// Records an event of the caller's agent (answered once it is buffered).
    pub async fn emit(&self, event_type: &str, payload: &Json) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            event_type: &'a str,
            payload: &'a Json,
        }
        let args = Args {
            event_type,
            payload,
        };
        self.client.call_unit("telemetry.emit", &args).await
    }

    /// Events, newest first.
    pub async fn query(&self, which: &Query<'_>) -> Result<Vec<Event>, ClientError> {
        #[derive(Deserialize)]
        struct Events {
            events: Vec<Event>,
        }
        let got: Events = self.client.call("telemetry.query", which).await?;
        Ok(got.events)
    }
}

impl Client {
    /// The telemetry service.
    pub fn telemetry(&self) -> Telemetry<'_> {
        Telemetry { client: self }
    }
}
