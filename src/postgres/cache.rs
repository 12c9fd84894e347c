//! `CacheStore` on Postgres: the UNLOGGED `cache` table the cache actor writes behind to.
//!
//! The SQL of a write batch is a function over any [`GenericClient`], so that a transaction op
//! can run it inside its own transaction (and apply the change in memory after commit).

use super::store_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use ikigai_actors::cache::{CacheRow, CacheStore, CacheWrite};
use ikigai_actors::store::StoreError;
use serde_json::Value;
use std::sync::Arc;
use tokio_postgres::GenericClient;

const REMOVE: &str = "DELETE FROM cache WHERE key = ANY($1::text[])";

const PUT: &str = "\
    INSERT INTO cache (key, value, expires_at) \
    SELECT * FROM unnest($1::text[], $2::jsonb[], $3::timestamptz[]) \
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at";

const LOAD: &str = "\
    SELECT key, value, expires_at FROM cache WHERE expires_at IS NULL OR expires_at > now()";

const SWEEP: &str = "DELETE FROM cache WHERE expires_at <= $1";

/// Applies a batch of cache writes (at most one per key) through `client`.
pub async fn write_in(
    client: &impl GenericClient,
    writes: &[CacheWrite],
) -> Result<(), tokio_postgres::Error> {
    let mut removed: Vec<&str> = Vec::new();
    let (mut keys, mut values, mut expiries) = (Vec::new(), Vec::new(), Vec::new());
    for write in writes {
        match write {
            CacheWrite::Remove(key) => removed.push(key),
            CacheWrite::Put(row) => {
                keys.push(row.key.as_str());
                values.push(row.value.as_ref());
                expiries.push(
                    row.expires_ms
                        .and_then(DateTime::<Utc>::from_timestamp_millis),
                );
            }
        }
    }
    if !removed.is_empty() {
        client.execute(REMOVE, &[&removed]).await?;
    }
    if !keys.is_empty() {
        client.execute(PUT, &[&keys, &values, &expiries]).await?;
    }
    Ok(())
}

pub struct PgCacheStore {
    pool: Pool,
}

impl PgCacheStore {
    pub fn new(pool: Pool) -> Self {
        PgCacheStore { pool }
    }
}

#[async_trait]
impl CacheStore for PgCacheStore {
    async fn load(&self) -> Result<Vec<CacheRow>, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        let rows = client.query(LOAD, &[]).await.map_err(store_error)?;
        Ok(rows
            .iter()
            .map(|r| CacheRow {
                key: r.get(0),
                value: Arc::new(r.get::<_, Value>(1)),
                expires_ms: r
                    .get::<_, Option<DateTime<Utc>>>(2)
                    .map(|t| t.timestamp_millis()),
            })
            .collect())
    }

    async fn write(&self, writes: &[CacheWrite]) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(store_error)?;
        let tx = client.transaction().await.map_err(store_error)?;
        write_in(&*tx, writes).await.map_err(store_error)?;
        tx.commit().await.map_err(store_error)
    }

    async fn sweep(&self, now_ms: i64) -> Result<u64, StoreError> {
        let Some(now) = DateTime::<Utc>::from_timestamp_millis(now_ms) else {
            return Ok(0);
        };
        let client = self.pool.get().await.map_err(store_error)?;
        client.execute(SWEEP, &[&now]).await.map_err(store_error)
    }
}
