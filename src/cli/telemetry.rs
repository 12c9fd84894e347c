//! `ikigai telemetry tail|search`: reading events through `telemetry.query`.

use anyhow::Result;
use chrono::{DateTime, SecondsFormat, Utc};
use ikigai_client::Client;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

/// How often `tail` asks for new events.
const POLL: Duration = Duration::from_millis(250);
/// How far back each poll looks again: events are written in batches, so one accepted just
/// before the last poll may be stored just after it.
const OVERLAP: Duration = Duration::from_secs(10);

/// The events matching `args`, newest first.
pub async fn query(client: &Client, args: &Value) -> Result<Vec<Value>> {
    let mut reply: Value = client.call("telemetry.query", args).await?;
    Ok(match reply["events"].take() {
        Value::Array(events) => events,
        _ => Vec::new(),
    })
}

/// Prints events accepted from now on with `print`, oldest first, each once.
pub async fn tail(
    client: &Client,
    agent: Option<String>,
    event_type: Option<String>,
    print: impl Fn(&Value),
) -> Result<()> {
    let started = Utc::now();
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let since = (Utc::now() - OVERLAP).max(started);
        let args = json!({
            "agent": agent, "event_type": event_type, "since": rfc3339(since), "limit": 1000,
        });
        let events = query(client, &args).await?;
        let mut current = HashSet::with_capacity(events.len());
        for event in events.into_iter().rev() {
            let id = event["id"].as_str().unwrap_or_default().to_owned();
            if !seen.contains(&id) {
                print(&event);
            }
            current.insert(id);
        }
        // Events older than the window are never returned again: forget them.
        seen = current;
        tokio::time::sleep(POLL).await;
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}
