//! `TelemetrySink` on Postgres: the seed's `telemetry` table, written a batch per statement,
//! searched through its `search` tsvector (GIN index; `ikigai_search_text` in schema.sql says
//! which strings are words, and [`search_words`] picks the same strings out here).
//!
//! The events the daemon records for every settled task ([`GROUPED`]) are stored a group per
//! row: the events of one batch with the same agent and type, within [`GROUP_SPAN`] of the
//! first, as one row whose `events` column counts them and whose payload is their array. The
//! view `telemetry_events` (schema.sql) shows every event as a row of its own, and queries read
//! it, so that grouping changes what a row holds and not what a query answers.

use super::rows::{id_of, report, split};
use super::store_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use ikigai_actors::store::{StoreError, TelemetrySink};
use ikigai_actors::telemetry::{TelemetryEvent, TelemetryQuery};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// The event types stored a group per row: the daemon writes one for every task it settles,
/// and a row each cost more Postgres time than the task itself (its heap tuple, four index
/// entries and the search text).
const GROUPED: [&str; 2] = ["task_completed", "task_failed"];

/// The longest time from the first event of a group to its last (the view's time filters rely
/// on it: schema.sql, `telemetry_events`).
const GROUP_SPAN: Duration = Duration::from_secs(1);

/// The most events in one row.
const GROUP_MAX: usize = 1000;

/// `search` is `ikigai_search_text(payload)`, computed from the words [`search_words`] picked
/// out (the function's own jsonpath regex cost more than the rest of the row).
const INSERT: &str = "\
    INSERT INTO telemetry (id, agent_name, event_type, payload, created_at, search, events) \
    SELECT u.id, u.agent, u.event_type, u.payload, u.created_at, \
        jsonb_to_tsvector('english', u.words, '[\"string\"]'), u.events \
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[], $6::jsonb[], \
        $7::int4[]) AS u(id, agent, event_type, payload, created_at, words, events)";

/// Events are accepted before they are written and acknowledged to no one, so their batch need
/// not wait for its WAL flush (the WAL writer flushes it within a fraction of a second): a
/// Postgres crash may lose the last batches, as a daemon crash loses the accepted ones. Waiting
/// cost an fsync per batch, beside the group commits' own (seen under queue load: telemetry
/// batches queued on `WALSync` and `WALWrite` with the group `COMMIT`s).
const NO_FLUSH_WAIT: &str = "SELECT set_config('synchronous_commit', 'off', true)";

/// Events one at a time (`telemetry_events`): the row filters (`stored_at`, `search`) narrow
/// the rows through their indexes, the event filters pick the events of a group.
const QUERY: &str = "\
    SELECT stored_id, id, agent_name, event_type, payload, created_at FROM telemetry_events \
    WHERE ($1::text IS NULL OR agent_name = $1) \
      AND ($2::text IS NULL OR event_type = $2) \
      AND ($3::timestamptz IS NULL OR (stored_at >= $3 - interval '1 second' AND created_at >= $3)) \
      AND ($4::timestamptz IS NULL OR (stored_at < $4 AND created_at < $4)) \
      AND ($5::text IS NULL OR (search @@ websearch_to_tsquery('english', $5) \
          AND (stored_index IS NULL \
               OR ikigai_search_text(payload) @@ websearch_to_tsquery('english', $5)))) \
    ORDER BY stored_at DESC, stored_id DESC, stored_index DESC LIMIT $6";

const PURGE: &str = "\
    DELETE FROM telemetry WHERE id IN \
    (SELECT id FROM telemetry WHERE created_at < $1 LIMIT $2)";

pub struct PgTelemetrySink {
    pool: Pool,
}

impl PgTelemetrySink {
    pub fn new(pool: Pool) -> Self {
        PgTelemetrySink { pool }
    }
}

#[async_trait]
impl TelemetrySink for PgTelemetrySink {
    async fn write(&self, events: &[TelemetryEvent]) -> Result<(), StoreError> {
        let rows = stored_rows(events);
        let ids: Vec<Uuid> = rows.iter().map(|r| r.first.id).collect();
        let agents: Vec<&str> = rows.iter().map(|r| r.first.agent.as_str()).collect();
        let types: Vec<&str> = rows.iter().map(|r| r.first.event_type.as_str()).collect();
        let payloads: Vec<Value> = rows.iter().map(StoredRow::payload).collect();
        let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.first.created_at).collect();
        let words: Vec<Value> = payloads.iter().map(search_words).collect();
        let counts: Vec<Option<i32>> = rows.iter().map(StoredRow::events).collect();
        let mut client = self.pool.get().await.map_err(store_error)?;
        let stmt = client.prepare_cached(INSERT).await.map_err(store_error)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
            [&ids, &agents, &types, &payloads, &times, &words, &counts];
        let tx = client.transaction().await.map_err(store_error)?;
        futures::try_join!(tx.execute(NO_FLUSH_WAIT, &[]), tx.execute(&stmt, &params))
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn query(&self, q: &TelemetryQuery) -> Result<Vec<TelemetryEvent>, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        let limit = q.limit as i64;
        let rows = client
            .query(
                QUERY,
                &[&q.agent, &q.event_type, &q.since, &q.until, &q.text, &limit],
            )
            .await
            .map_err(store_error)?;
        let (events, bad) = split(&rows, event_from_row);
        for (row, error) in &bad {
            report("telemetry", &id_of(row), error, "skipped");
        }
        Ok(events)
    }

    async fn purge(&self, before: DateTime<Utc>, batch: usize) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        client
            .execute(PURGE, &[&before, &(batch as i64)])
            .await
            .map_err(store_error)
    }
}

/// One row of `telemetry`: an event, or a group of events of one agent and type (the first
/// gives the row its id, agent, type and time).
struct StoredRow<'a> {
    first: &'a TelemetryEvent,
    rest: Vec<&'a TelemetryEvent>,
}

impl StoredRow<'_> {
    /// `events`: how many events a group row holds; none for a row of one event.
    fn events(&self) -> Option<i32> {
        (!self.rest.is_empty()).then(|| self.rest.len() as i32 + 1)
    }

    /// A group's payload is its events, each `{"id", "at", "payload"}`, `at` in microseconds
    /// after the row's `created_at` (a number, so that it is no search word).
    fn payload(&self) -> Value {
        if self.rest.is_empty() {
            return self.first.payload.clone();
        }
        let item = |e: &TelemetryEvent| {
            let at = (e.created_at - self.first.created_at).num_microseconds();
            json!({"id": e.id, "at": at.unwrap_or(0).max(0), "payload": e.payload})
        };
        let rest = self.rest.iter().map(|e| item(e));
        Value::Array(std::iter::once(item(self.first)).chain(rest).collect())
    }
}

/// `events` as rows: each of a [`GROUPED`] type joins the open group of its agent and type
/// while that group spans less than [`GROUP_SPAN`] and holds fewer than [`GROUP_MAX`].
fn stored_rows(events: &[TelemetryEvent]) -> Vec<StoredRow<'_>> {
    let span = chrono::Duration::from_std(GROUP_SPAN).unwrap_or_default();
    let mut rows: Vec<StoredRow> = Vec::with_capacity(events.len());
    let mut open: HashMap<(&str, &str), usize> = HashMap::new();
    for e in events {
        let key = (e.agent.as_str(), e.event_type.as_str());
        let group = open.get(&key).copied().filter(|&i| {
            let r = &rows[i];
            r.rest.len() + 1 < GROUP_MAX && e.created_at - r.first.created_at < span
        });
        match group {
            Some(i) => rows[i].rest.push(e),
            None => {
                if GROUPED.contains(&e.event_type.as_str()) {
                    open.insert(key, rows.len());
                }
                rows.push(StoredRow {
                    first: e,
                    rest: Vec::new(),
                });
            }
        }
    }
    rows
}

/// A row of [`QUERY`]: the stored row's id first (what a report of an undecodable event names),
/// then the event.
fn event_from_row(r: &tokio_postgres::Row) -> Result<TelemetryEvent, tokio_postgres::Error> {
    Ok(TelemetryEvent {
        id: r.try_get(1)?,
        agent: r.try_get(2)?,
        event_type: r.try_get(3)?,
        payload: r.try_get(4)?,
        created_at: r
            .try_get::<_, Option<DateTime<Utc>>>(5)?
            .unwrap_or_else(Utc::now),
    })
}

/// The strings of `payload` that `ikigai_search_text` makes words, as a JSON array in the order
/// its jsonpath `strict $.**` visits them: depth first, the value before its children, arrays in
/// order, objects in jsonb's key order (shorter keys first, then bytewise); UUID-shaped strings
/// left out.
fn search_words(payload: &Value) -> Value {
    let mut words = Vec::new();
    collect_words(payload, &mut words);
    Value::Array(words)
}

fn collect_words(value: &Value, words: &mut Vec<Value>) {
    match value {
        Value::String(s) if !uuid_shaped(s) => words.push(value.clone()),
        Value::Array(items) => items.iter().for_each(|v| collect_words(v, words)),
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|(a, _), (b, _)| {
                (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes()))
            });
            entries
                .into_iter()
                .for_each(|(_, v)| collect_words(v, words));
        }
        _ => {}
    }
}

/// What `ikigai_search_text`'s regex matches:
/// `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`.
fn uuid_shaped(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}
