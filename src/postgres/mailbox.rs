//! The mailbox service on Postgres: the seed's `mailbox` table. [`write`] applies the mailbox
//! part of a group commit (at most three statements: insert the sends, mark the acks read,
//! record redelivery attempts, each taking its rows as arrays through `unnest`, pipelined);
//! [`PgMailboxStore`] serves the reads. Acks and attempt counts reach their rows by id through
//! [`locked_by_id`], whatever the statistics say.

use super::rows::{id_of, report, split, undecodable};
use super::{locked_by_id, store_error};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use ikigai_actors::store::{
    AckWrite, AttemptsWrite, MailboxBatch, MailboxCommitted, MailboxCounts, MailboxStore,
    StoreError,
};
use ikigai_actors::{NewMessage, StoredMessage};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio_postgres::Row;
use uuid::Uuid;

const INSERT: &str = "\
    INSERT INTO mailbox (id, mailbox_name, sender, payload) \
    SELECT id, mailbox_name, sender, payload \
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) WITH ORDINALITY \
         AS t(id, mailbox_name, sender, payload, ord) \
    ORDER BY ord \
    RETURNING id, seq, created_at";

/// Marks acked rows read (only unread rows of the named mailbox).
static ACK: LazyLock<String> = LazyLock::new(|| {
    let unread = locked_by_id(
        "mailbox",
        "$1::uuid[], $2::text[], $3::text[], $4::int4[]",
        "id, mailbox_name, reader, attempts",
        "t.mailbox_name = u.mailbox_name AND t.read_at IS NULL",
        "",
    );
    format!(
        "WITH a AS ({unread}) UPDATE mailbox AS m \
         SET read_at = now(), read_by = a.reader, attempts = GREATEST(m.attempts, a.attempts) \
         FROM a WHERE m.id = a.id RETURNING m.id"
    )
});

/// Records redelivery counts of unread rows.
static ATTEMPTS: LazyLock<String> = LazyLock::new(|| {
    let unread = locked_by_id(
        "mailbox",
        "$1::uuid[], $2::int4[]",
        "id, attempts",
        "t.read_at IS NULL",
        "",
    );
    format!(
        "WITH a AS ({unread}) UPDATE mailbox AS m SET attempts = GREATEST(m.attempts, a.attempts) \
         FROM a WHERE m.id = a.id"
    )
});

const LOAD: &str = "\
    SELECT id, seq, mailbox_name, sender, payload, created_at, attempts FROM mailbox \
    WHERE mailbox_name = $1 AND read_at IS NULL AND seq > $2 ORDER BY seq LIMIT $3";

const LOAD_IDS: &str = "\
    SELECT id, seq, mailbox_name, sender, payload, created_at, attempts FROM mailbox \
    WHERE mailbox_name = $1 AND read_at IS NULL AND id = ANY($2) ORDER BY seq";

/// Dead-letters messages that do not decode: marked read by [`UNDECODABLE`], kept in the table
/// for inspection, never delivered.
const BURY: &str = "\
    UPDATE mailbox SET read_at = now(), read_by = $2 WHERE id = ANY($1) AND read_at IS NULL";

/// The `read_by` of a dead-lettered message.
pub const UNDECODABLE: &str = "ikigai:undecodable";

const ACQUIRE: &str = "\
    INSERT INTO mailbox_lease AS l (mailbox_name, daemon_id, lease_until) \
    VALUES ($1, $2, now() + $3::float8 * interval '1 millisecond') \
    ON CONFLICT (mailbox_name) DO UPDATE \
    SET daemon_id = excluded.daemon_id, lease_until = excluded.lease_until \
    WHERE l.daemon_id IS NULL OR l.daemon_id = excluded.daemon_id OR l.lease_until < now() \
    RETURNING 1";

const RENEW: &str = "\
    UPDATE mailbox_lease SET lease_until = now() + $3::float8 * interval '1 millisecond' \
    WHERE mailbox_name = $1 AND daemon_id = $2 AND lease_until > now() RETURNING 1";

const RELEASE: &str = "\
    WITH freed AS (UPDATE mailbox_lease SET daemon_id = NULL, lease_until = NULL \
                   WHERE mailbox_name = $1 AND daemon_id = $2 RETURNING mailbox_name) \
    SELECT pg_notify('ikigai_mailbox', 'released' || E'\\n' || mailbox_name) FROM freed";

const COUNTS: &str = "\
    SELECT mailbox_name, \
           count(*) FILTER (WHERE read_at IS NULL), \
           count(*) FILTER (WHERE read_at IS NOT NULL), \
           min(created_at) FILTER (WHERE read_at IS NULL) \
    FROM mailbox WHERE $1::text IS NULL OR mailbox_name = $1 \
    GROUP BY mailbox_name ORDER BY mailbox_name";

pub struct PgMailboxStore {
    pool: Pool,
    /// This daemon's id: the holder named in the leases it takes.
    daemon: String,
}

impl PgMailboxStore {
    pub fn new(pool: Pool, daemon: String) -> Self {
        PgMailboxStore { pool, daemon }
    }

    /// Runs a lease statement; true when it touched the row.
    async fn lease(&self, sql: &str, mailbox: &str, lease: Duration) -> Result<bool, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        let stmt = client.prepare_cached(sql).await.map_err(store_error)?;
        let ms = lease.as_millis() as f64;
        let rows = client
            .query(&stmt, &[&mailbox, &self.daemon, &ms])
            .await
            .map_err(store_error)?;
        Ok(!rows.is_empty())
    }

    /// Runs a load (`sql` over `params`) until every row it returns decodes: those that do not
    /// are dead-lettered, so the next run no longer returns them and a page stays full.
    async fn load(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        let stmt = client.prepare_cached(sql).await.map_err(store_error)?;
        loop {
            let rows = client.query(&stmt, params).await.map_err(store_error)?;
            let (good, bad) = split(&rows, stored_from_row);
            if bad.is_empty() {
                return Ok(good);
            }
            let ids: Vec<Uuid> = bad.iter().filter_map(|(r, _)| r.try_get(0).ok()).collect();
            let buried = client
                .execute(BURY, &[&ids, &UNDECODABLE])
                .await
                .map_err(store_error)?;
            for (row, error) in &bad {
                report("mailbox", &id_of(row), error, "dead-lettered");
            }
            if buried == 0 {
                return Ok(good);
            }
        }
    }
}

/// Applies the mailbox writes of a group inside its transaction.
pub async fn write(
    tx: &impl GenericClient,
    batch: &MailboxBatch,
) -> Result<MailboxCommitted, tokio_postgres::Error> {
    let (sent, acked, ()) = futures::try_join!(
        insert(tx, &batch.sends),
        ack(tx, &batch.acks),
        record_attempts(tx, &batch.attempts),
    )?;
    Ok(MailboxCommitted { sent, acked })
}

#[async_trait]
impl MailboxStore for PgMailboxStore {
    async fn load_unread(
        &self,
        mailbox: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let limit = limit as i64;
        self.load(LOAD, &[&mailbox, &after_seq, &limit]).await
    }

    async fn load_ids(
        &self,
        mailbox: &str,
        ids: &[Uuid],
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.load(LOAD_IDS, &[&mailbox, &ids]).await
    }

    async fn acquire(&self, mailbox: &str, lease: Duration) -> Result<bool, StoreError> {
        self.lease(ACQUIRE, mailbox, lease).await
    }

    async fn renew(&self, mailbox: &str, lease: Duration) -> Result<bool, StoreError> {
        self.lease(RENEW, mailbox, lease).await
    }

    async fn release(&self, mailbox: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        client
            .query(RELEASE, &[&mailbox, &self.daemon])
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn counts(&self, mailbox: Option<&str>) -> Result<Vec<MailboxCounts>, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        let rows = client
            .query(COUNTS, &[&mailbox])
            .await
            .map_err(store_error)?;
        let counts = |r: &Row| -> Result<MailboxCounts, tokio_postgres::Error> {
            Ok(MailboxCounts {
                mailbox: r.try_get(0)?,
                unread: r.try_get::<_, i64>(1)?.unsigned_abs(),
                read: r.try_get::<_, i64>(2)?.unsigned_abs(),
                oldest_unread: r.try_get(3)?,
            })
        };
        rows.iter()
            .map(counts)
            .collect::<Result<_, _>>()
            .map_err(undecodable)
    }
}

async fn insert(
    tx: &impl GenericClient,
    sends: &[NewMessage],
) -> Result<Vec<StoredMessage>, tokio_postgres::Error> {
    if sends.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = sends.iter().map(|m| m.id).collect();
    let names: Vec<&str> = sends.iter().map(|m| m.mailbox.as_str()).collect();
    let senders: Vec<&str> = sends.iter().map(|m| m.sender.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = sends.iter().map(|m| m.payload.as_ref()).collect();
    let stmt = tx.prepare_cached(INSERT).await?;
    let rows = tx
        .query(&stmt, &[&ids, &names, &senders, &payloads])
        .await?;
    let mut committed: HashMap<Uuid, (i64, DateTime<Utc>)> = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok(sends
        .iter()
        .filter_map(|m| {
            let (seq, created_at) = committed.remove(&m.id)?;
            Some(m.stored(seq, created_at))
        })
        .collect())
}

async fn ack(
    tx: &impl GenericClient,
    acks: &[AckWrite],
) -> Result<HashSet<Uuid>, tokio_postgres::Error> {
    if acks.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<Uuid> = acks.iter().map(|a| a.id).collect();
    let names: Vec<&str> = acks.iter().map(|a| a.mailbox.as_str()).collect();
    let readers: Vec<&str> = acks.iter().map(|a| a.reader.as_str()).collect();
    let attempts: Vec<i32> = acks.iter().map(|a| saturating_i32(a.attempts)).collect();
    let stmt = tx.prepare_cached(&ACK).await?;
    let rows = tx
        .query(&stmt, &[&ids, &names, &readers, &attempts])
        .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

async fn record_attempts(
    tx: &impl GenericClient,
    writes: &[AttemptsWrite],
) -> Result<(), tokio_postgres::Error> {
    if writes.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = writes.iter().map(|w| w.id).collect();
    let attempts: Vec<i32> = writes.iter().map(|w| saturating_i32(w.attempts)).collect();
    let stmt = tx.prepare_cached(&ATTEMPTS).await?;
    tx.execute(&stmt, &[&ids, &attempts]).await?;
    Ok(())
}

fn stored_from_row(r: &Row) -> Result<StoredMessage, tokio_postgres::Error> {
    Ok(StoredMessage {
        id: r.try_get(0)?,
        seq: r.try_get(1)?,
        mailbox: r.try_get(2)?,
        sender: r.try_get(3)?,
        payload: Arc::new(r.try_get(4)?),
        created_at: r
            .try_get::<_, Option<DateTime<Utc>>>(5)?
            .unwrap_or_else(Utc::now),
        attempts: r.try_get::<_, i32>(6)?.max(0).unsigned_abs(),
    })
}

fn saturating_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
