//! Keeps the hot tables small. Every pass moves finished work out of `task_queue` and `mailbox`
//! into their archives once its retention has passed, purges the archives, and vacuums the
//! tables that churn when autovacuum is off or falling behind. Each statement takes one batch
//! and skips rows a writer holds, so the daemon's writers never wait on it.

use super::store_error;
use deadpool_postgres::Pool;
use ikigai_actors::store::{Maintenance, StoreError};
use std::time::Duration;
use tracing::{info, warn};

/// Rows one statement moves or deletes.
const BATCH: i64 = 5_000;

/// The columns of `task_queue` and of its archive, in one order.
const TASK_COLUMNS: &str = "id, queue_name, payload, priority, scheduled_for, claimed_by, \
    claimed_at, completed_at, failed_at, error, created_at, seq, attempts, max_attempts, \
    lease_until, lease_id, claimed_via, result, dedup_key";

/// The columns of `mailbox` and of its archive.
const MESSAGE_COLUMNS: &str =
    "id, mailbox_name, sender, payload, created_at, read_at, read_by, seq, attempts";

/// The tables whose rows are updated or deleted all the time, which the pass may vacuum.
const CHURNING: &[&str] = &[
    "task_queue",
    "mailbox",
    "mailbox_lease",
    "task_queue_archive",
    "mailbox_archive",
    "pubsub_message",
    "cache_log",
    "llm_reservation",
    "telemetry",
];

/// What one pass did.
#[derive(Debug, Default, PartialEq)]
pub struct Pass {
    pub tasks_archived: u64,
    pub messages_archived: u64,
    pub archived_purged: u64,
    pub vacuumed: Vec<String>,
}

/// Runs a pass now and then every `settings.every`, for as long as the daemon runs.
pub async fn run(pool: Pool, settings: Maintenance) {
    loop {
        match pass(&pool, &settings).await {
            Ok(done) if done != Pass::default() => info!(
                tasks_archived = done.tasks_archived,
                messages_archived = done.messages_archived,
                archived_purged = done.archived_purged,
                vacuumed = ?done.vacuumed,
                "maintenance: hot tables trimmed"
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "maintenance pass failed; the next one tries again"),
        }
        tokio::time::sleep(settings.every).await;
    }
}

/// One pass of the maintenance.
pub async fn pass(pool: &Pool, settings: &Maintenance) -> Result<Pass, StoreError> {
    let r = &settings.retention;
    let completed = "completed_at IS NOT NULL";
    let dead = "failed_at IS NOT NULL AND completed_at IS NULL";
    let mut done = Pass {
        tasks_archived: archive_tasks(pool, completed, r.completed).await?
            + archive_tasks(pool, dead, r.dead).await?,
        messages_archived: archive_messages(pool, r.read).await?,
        archived_purged: purge(pool, "task_queue_archive", r.task_archive).await?
            + purge(pool, "mailbox_archive", r.message_archive).await?,
        vacuumed: Vec::new(),
    };
    if settings.vacuum {
        done.vacuumed = vacuum(pool).await?;
    }
    Ok(done)
}

/// Moves the tasks matching `finished` that finished over `retention` ago into the archive.
async fn archive_tasks(
    pool: &Pool,
    finished: &str,
    retention: Option<Duration>,
) -> Result<u64, StoreError> {
    let sql = format!(
        "WITH moved AS (DELETE FROM task_queue WHERE id IN ( \
             SELECT id FROM task_queue WHERE {finished} \
               AND coalesce(completed_at, failed_at) < now() - $1::float8 * interval '1 millisecond' \
             ORDER BY coalesce(completed_at, failed_at) LIMIT $2 FOR UPDATE SKIP LOCKED) \
           RETURNING {TASK_COLUMNS}) \
         INSERT INTO task_queue_archive ({TASK_COLUMNS}) SELECT {TASK_COLUMNS} FROM moved"
    );
    batches(pool, &sql, retention).await
}

/// Moves the messages read over `retention` ago into the archive.
async fn archive_messages(pool: &Pool, retention: Option<Duration>) -> Result<u64, StoreError> {
    let sql = format!(
        "WITH moved AS (DELETE FROM mailbox WHERE id IN ( \
             SELECT id FROM mailbox WHERE read_at IS NOT NULL \
               AND read_at < now() - $1::float8 * interval '1 millisecond' \
             ORDER BY read_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
           RETURNING {MESSAGE_COLUMNS}) \
         INSERT INTO mailbox_archive ({MESSAGE_COLUMNS}) SELECT {MESSAGE_COLUMNS} FROM moved"
    );
    batches(pool, &sql, retention).await
}

/// Deletes the rows of the archive `table` archived over `retention` ago.
async fn purge(pool: &Pool, table: &str, retention: Option<Duration>) -> Result<u64, StoreError> {
    let sql = format!(
        "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} \
           WHERE archived_at < now() - $1::float8 * interval '1 millisecond' LIMIT $2)"
    );
    batches(pool, &sql, retention).await
}

/// Runs `sql` (taking the retention in ms and the batch size) until a batch comes up short;
/// nothing when the retention is forever.
async fn batches(pool: &Pool, sql: &str, retention: Option<Duration>) -> Result<u64, StoreError> {
    let Some(retention) = retention else {
        return Ok(0);
    };
    let ms = retention.as_millis() as f64;
    let client = pool.get().await.map_err(store_error)?;
    let statement = client.prepare(sql).await.map_err(store_error)?;
    let mut total = 0;
    loop {
        let n = client
            .execute(&statement, &[&ms, &BATCH])
            .await
            .map_err(store_error)?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Vacuums each churning table whose dead rows autovacuum leaves: all of them past a threshold
/// when autovacuum is off (for the server or the table), only those far past it when it is on
/// (it is then falling behind). `VACUUM` takes no lock that blocks reads or writes.
async fn vacuum(pool: &Pool) -> Result<Vec<String>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let tables: Vec<&str> = CHURNING.to_vec();
    let rows = client
        .query(
            "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
             CROSS JOIN LATERAL (SELECT 1000 + 0.02 * s.n_live_tup AS threshold, \
                 current_setting('autovacuum')::bool \
                 AND NOT coalesce('autovacuum_enabled=false' = ANY(c.reloptions), false) AS auto) a \
             WHERE s.schemaname = current_schema() AND s.relname = ANY($1) \
               AND s.n_dead_tup > a.threshold * CASE WHEN a.auto THEN 10 ELSE 1 END",
            &[&tables],
        )
        .await
        .map_err(store_error)?;
    let due: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut vacuumed = Vec::new();
    for table in CHURNING.iter().filter(|t| due.iter().any(|d| d == *t)) {
        client
            .batch_execute(&format!("VACUUM (ANALYZE) {table}"))
            .await
            .map_err(store_error)?;
        vacuumed.push(table.to_string());
    }
    Ok(vacuumed)
}
