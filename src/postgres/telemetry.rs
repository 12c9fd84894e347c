//! `TelemetrySink` on Postgres: the seed's `telemetry` table, written a batch per statement,
//! searched through its `search` tsvector (GIN index; `ikigai_search_text` in schema.sql says
//! which strings are words, and [`search_words`] picks the same strings out here).

use super::rows::{id_of, report, split};
use super::store_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use ikigai_actors::store::{StoreError, TelemetrySink};
use ikigai_actors::telemetry::{TelemetryEvent, TelemetryQuery};
use serde_json::Value;
use uuid::Uuid;

/// `search` is `ikigai_search_text(payload)`, computed from the words [`search_words`] picked
/// out (the function's own jsonpath regex cost more than the rest of the row).
const INSERT: &str = "\
    INSERT INTO telemetry (id, agent_name, event_type, payload, created_at, search) \
    SELECT u.id, u.agent, u.event_type, u.payload, u.created_at, \
        jsonb_to_tsvector('english', u.words, '[\"string\"]') \
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[], $6::jsonb[]) \
        AS u(id, agent, event_type, payload, created_at, words)";

/// Events are accepted before they are written and acknowledged to no one, so their batch need
/// not wait for its WAL flush (the WAL writer flushes it within a fraction of a second): a
/// Postgres crash may lose the last batches, as a daemon crash loses the accepted ones. Waiting
/// cost an fsync per batch, beside the group commits' own (seen under queue load: telemetry
/// batches queued on `WALSync` and `WALWrite` with the group `COMMIT`s).
const NO_FLUSH_WAIT: &str = "SELECT set_config('synchronous_commit', 'off', true)";

const QUERY: &str = "\
    SELECT id, agent_name, event_type, payload, created_at FROM telemetry \
    WHERE ($1::text IS NULL OR agent_name = $1) \
      AND ($2::text IS NULL OR event_type = $2) \
      AND ($3::timestamptz IS NULL OR created_at >= $3) \
      AND ($4::timestamptz IS NULL OR created_at < $4) \
      AND ($5::text IS NULL OR search @@ websearch_to_tsquery('english', $5)) \
    ORDER BY created_at DESC, id DESC LIMIT $6";

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
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let agents: Vec<&str> = events.iter().map(|e| e.agent.as_str()).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let payloads: Vec<&serde_json::Value> = events.iter().map(|e| &e.payload).collect();
        let times: Vec<DateTime<Utc>> = events.iter().map(|e| e.created_at).collect();
        let words: Vec<Value> = events.iter().map(|e| search_words(&e.payload)).collect();
        let mut client = self.pool.get().await.map_err(store_error)?;
        let stmt = client.prepare_cached(INSERT).await.map_err(store_error)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&ids, &agents, &types, &payloads, &times, &words];
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

fn event_from_row(r: &tokio_postgres::Row) -> Result<TelemetryEvent, tokio_postgres::Error> {
    Ok(TelemetryEvent {
        id: r.try_get(0)?,
        agent: r.try_get(1)?,
        event_type: r.try_get(2)?,
        payload: r.try_get(3)?,
        created_at: r
            .try_get::<_, Option<DateTime<Utc>>>(4)?
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
