//! `TelemetrySink` on Postgres: the seed's `telemetry` table, written a batch per statement,
//! searched through its generated `search` tsvector (GIN index; `ikigai_search_text` in
//! schema.sql says which strings are words).

use super::store_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use ikigai_actors::store::{StoreError, TelemetrySink};
use ikigai_actors::telemetry::{TelemetryEvent, TelemetryQuery};
use uuid::Uuid;

const INSERT: &str = "\
    INSERT INTO telemetry (id, agent_name, event_type, payload, created_at) \
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[])";

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
        let mut client = self.pool.get().await.map_err(store_error)?;
        let stmt = client.prepare_cached(INSERT).await.map_err(store_error)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&ids, &agents, &types, &payloads, &times];
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
        Ok(rows
            .iter()
            .map(|r| TelemetryEvent {
                id: r.get(0),
                agent: r.get(1),
                event_type: r.get(2),
                payload: r.get(3),
                created_at: r
                    .get::<_, Option<DateTime<Utc>>>(4)
                    .unwrap_or_else(Utc::now),
            })
            .collect())
    }

    async fn purge(&self, before: DateTime<Utc>, batch: usize) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        client
            .execute(PURGE, &[&before, &(batch as i64)])
            .await
            .map_err(store_error)
    }
}
