//! `CacheStore` on Postgres: the UNLOGGED log `cache_log` the cache actor writes behind to.
//!
//! A batch of changes is one row: a JSON array of `[key, value, expires_ms | null]` (set) and
//! `[key]` (removed), in text, so that storing it costs Postgres one insert whatever the batch
//! holds. Loading replays the rows in `seq` order. The store remembers which rows it wrote or
//! loaded and how many bytes they hold; once they outgrow the live entries, the actor hands it
//! every live entry and [`PgCacheStore::compact`] replaces those rows with them, in one
//! transaction. Rows another daemon appends meanwhile are left alone.

use super::store_error;
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use ikigai_actors::cache::{CacheRow, CacheStore, CacheWrite};
use ikigai_actors::store::StoreError;
use ikigai_protocol::Packed;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tracing::error;

const APPEND: &str = "INSERT INTO cache_log (changes) SELECT unnest($1::text[]) RETURNING seq";

const LOAD: &str = "SELECT seq, changes FROM cache_log ORDER BY seq";

const FORGET: &str = "DELETE FROM cache_log WHERE seq = ANY($1)";

/// A row is closed once its text passes this size, so that no row nears Postgres's 1 GB limit
/// and a compaction's rows are built and sent a piece at a time.
const ROW_BYTES: usize = 1 << 20;

/// Bytes of log the store lets grow before compacting, beyond twice the live entries' bytes.
const SLACK_BYTES: u64 = 1 << 20;

/// The rows of the log this store answers for, and their size.
#[derive(Default)]
struct Owned {
    seqs: Vec<i64>,
    bytes: u64,
}

impl Owned {
    fn extend(&mut self, rows: impl IntoIterator<Item = (i64, usize)>) {
        for (seq, bytes) in rows {
            self.seqs.push(seq);
            self.bytes += bytes as u64;
        }
    }
}

pub struct PgCacheStore {
    pool: Pool,
    owned: Mutex<Owned>,
}

impl PgCacheStore {
    pub fn new(pool: Pool) -> Self {
        PgCacheStore {
            pool,
            owned: Mutex::default(),
        }
    }

    /// The lock's data even after a panic elsewhere poisoned it: `Owned` is only bookkeeping
    /// for compaction, valid after any interrupted `extend`.
    fn owned(&self) -> MutexGuard<'_, Owned> {
        self.owned.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl CacheStore for PgCacheStore {
    async fn load(&self) -> Result<Vec<CacheRow>, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        let rows = client.query(LOAD, &[]).await.map_err(store_error)?;
        let mut owned = Owned::default();
        let mut entries: HashMap<String, Option<CacheRow>> = HashMap::new();
        for row in &rows {
            let undecodable = super::rows::undecodable;
            let seq: i64 = row.try_get(0).map_err(undecodable)?;
            let changes: &str = row.try_get(1).map_err(undecodable)?;
            owned.extend([(seq, changes.len())]);
            // A row edited by hand into something else costs its own changes, not the cache:
            // it is skipped, and the next compaction drops it.
            let batch: Vec<Change> = match serde_json::from_str(changes) {
                Ok(batch) => batch,
                Err(e) => {
                    error!(seq, error = %e, "cache_log row is not a batch of changes; skipped");
                    continue;
                }
            };
            for change in batch {
                match change {
                    Change::Set(row) => entries.insert(row.key.clone(), Some(row)),
                    Change::Remove(key) => entries.insert(key, None),
                };
            }
        }
        *self.owned() = owned;
        Ok(entries.into_values().flatten().collect())
    }

    async fn write(&self, writes: &[CacheWrite]) -> Result<(), StoreError> {
        let rows = log_rows(writes.iter().map(Logged::of))?;
        let client = self.pool.get().await.map_err(store_error)?;
        let appended = append(&client, &rows).await?;
        self.owned().extend(appended);
        Ok(())
    }

    fn wants_compaction(&self, live_bytes: usize) -> bool {
        self.owned().bytes > 2 * live_bytes as u64 + SLACK_BYTES
    }

    /// The actor never runs it beside a write, so the rows owned before are the rows replaced.
    async fn compact(&self, live: Vec<CacheRow>) -> Result<(), StoreError> {
        let rows = tokio::task::spawn_blocking(move || log_rows(live.iter().map(Logged::Set)))
            .await
            .map_err(rejected)??;
        let forget = self.owned().seqs.clone();
        let mut client = self.pool.get().await.map_err(store_error)?;
        let tx = client.transaction().await.map_err(store_error)?;
        tx.execute(FORGET, &[&forget]).await.map_err(store_error)?;
        let mut owned = Owned::default();
        // A row per statement: no bind buffer, here or in Postgres, holds the whole cache.
        for row in &rows {
            owned.extend(append(&tx, std::slice::from_ref(row)).await?);
        }
        tx.commit().await.map_err(store_error)?;
        *self.owned() = owned;
        Ok(())
    }
}

fn rejected(e: impl fmt::Display) -> StoreError {
    StoreError::Rejected(e.to_string())
}

/// Appends rows to the log; answers each one's seq and size.
async fn append(
    client: &impl GenericClient,
    rows: &[String],
) -> Result<Vec<(i64, usize)>, StoreError> {
    let append = client.prepare_cached(APPEND).await.map_err(store_error)?;
    let seqs = client.query(&append, &[&rows]).await.map_err(store_error)?;
    seqs.iter()
        .zip(rows)
        .map(|(r, text)| Ok((r.try_get(0)?, text.len())))
        .collect::<Result<_, _>>()
        .map_err(super::rows::undecodable)
}

/// Changes as log rows: JSON arrays of at most about [`ROW_BYTES`] each.
fn log_rows<'a>(changes: impl Iterator<Item = Logged<'a>>) -> Result<Vec<String>, StoreError> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    for change in changes {
        row.push(if row.is_empty() { b'[' } else { b',' });
        serde_json::to_writer(&mut row, &change).map_err(rejected)?;
        if row.len() >= ROW_BYTES {
            rows.push(closed(std::mem::take(&mut row))?);
        }
    }
    if !row.is_empty() {
        rows.push(closed(row)?);
    }
    Ok(rows)
}

fn closed(mut row: Vec<u8>) -> Result<String, StoreError> {
    row.push(b']');
    String::from_utf8(row).map_err(rejected)
}

/// One change as written: `[key, value, expires_ms | null]` or `[key]`.
enum Logged<'a> {
    Set(&'a CacheRow),
    Remove(&'a str),
}

impl<'a> Logged<'a> {
    fn of(write: &'a CacheWrite) -> Self {
        match write {
            CacheWrite::Put(row) => Logged::Set(row),
            CacheWrite::Remove(key) => Logged::Remove(key),
        }
    }
}

impl Serialize for Logged<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Logged::Set(row) => (&row.key, &row.value, row.expires_ms).serialize(s),
            Logged::Remove(key) => [key].serialize(s),
        }
    }
}

/// One change as read back.
enum Change {
    Set(CacheRow),
    Remove(String),
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ChangeVisitor)
    }
}

struct ChangeVisitor;

impl<'de> Visitor<'de> for ChangeVisitor {
    type Value = Change;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("[key, value, expires_ms | null] or [key]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Change, A::Error> {
        let key: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let Some(value) = seq.next_element::<Packed>()? else {
            return Ok(Change::Remove(key));
        };
        let expires_ms: Option<i64> = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(2, &self))?;
        Ok(Change::Set(CacheRow {
            key,
            value,
            expires_ms,
        }))
    }
}
