//! The queue service on Postgres: the seed's `task_queue` table. [`write`] applies the queue
//! part of a group commit (pushes, claims, settlements, each kind one statement over arrays);
//! [`PgQueueStore`] serves the reads. Claims are conditional (`claimed_by IS NULL`) and skip
//! rows another transaction holds, so two daemons never claim one task and never deadlock.

use super::rows::{id_of, report, split, undecodable};
use super::{locked_by_id, store_error};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use ikigai_actors::store::{
    ClaimWrite, PushWrite, Pushed, QueueBatch, QueueCommitted, QueueCounts, QueueStore, Refusal,
    Settle, SettleWrite, StoreError, TaskState,
};
use ikigai_actors::task::{won_by, Claimed, Inserted, Rank};
use ikigai_actors::{Lease, Task};
use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Row;
use uuid::Uuid;

/// The columns of a [`Task`], in `task_from_row` order, qualified by `t` (e.g. `"t."`).
fn columns(t: &str) -> String {
    columns_with_payload(t, &format!("{t}payload"))
}

/// [`columns`] with `payload` in the payload's place (NULL where the daemon knows it).
fn columns_with_payload(t: &str, payload: &str) -> String {
    format!(
        "{t}id, {t}seq, {t}queue_name, {payload}, COALESCE({t}priority, 0), \
         COALESCE({t}scheduled_for, {t}created_at, now()), {t}created_at, {t}attempts, \
         {t}max_attempts, {t}claimed_by, {t}claimed_at, {t}lease_until, {t}completed_at, \
         {t}failed_at, {t}error, {t}result, {t}dedup_key"
    )
}

/// Open (neither completed nor dead) and unclaimed.
const CLAIMABLE: &str = "claimed_by IS NULL AND completed_at IS NULL AND failed_at IS NULL";

/// Retry delay after the n-th failed attempt: 1 s doubling to 1 h, with ±25% jitter.
const BACKOFF: &str = "LEAST(1000 * power(2, GREATEST(t.attempts - 1, 0)), 3600000) \
    * (0.75 + random() * 0.5)";

fn push_sql() -> String {
    format!(
        "INSERT INTO task_queue (id, queue_name, payload, priority, scheduled_for, max_attempts, \
             dedup_key, claimed_by, claimed_at, lease_until, lease_id, claimed_via, attempts) \
         SELECT p.id, p.queue_name, p.payload, p.priority, COALESCE(p.run_at, now()), \
             p.max_attempts, p.dedup_key, p.agent, \
             CASE WHEN p.agent IS NOT NULL THEN now() END, \
             CASE WHEN p.agent IS NOT NULL THEN now() + p.lease_ms * interval '1 millisecond' END, \
             p.lease_id, CASE WHEN p.agent IS NOT NULL THEN $11 END, \
             CASE WHEN p.agent IS NOT NULL THEN 1 ELSE 0 END \
         FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::int4[], $5::timestamptz[], \
             $6::int4[], $7::text[], $8::text[], $9::int8[], $10::uuid[]) WITH ORDINALITY \
             AS p(id, queue_name, payload, priority, run_at, max_attempts, dedup_key, agent, \
                  lease_ms, lease_id, ord) \
         ORDER BY p.ord \
         ON CONFLICT (queue_name, dedup_key) \
             WHERE dedup_key IS NOT NULL AND completed_at IS NULL AND failed_at IS NULL DO NOTHING \
         RETURNING id, seq, scheduled_for, created_at, {}",
        claim_stamp("")
    )
}

/// The columns of a [`Claimed`], qualified by `t` (e.g. `"t."`): what a claim (or a push that
/// claims) returns, the rest of the task being known already.
fn claim_stamp(t: &str) -> String {
    format!("{t}attempts, {t}claimed_at, {t}lease_until")
}

fn claimed_from_row(r: &Row, at: usize) -> Result<Option<Claimed>, tokio_postgres::Error> {
    let claimed_at: Option<DateTime<Utc>> = r.try_get(at + 1)?;
    let lease_until: Option<DateTime<Utc>> = r.try_get(at + 2)?;
    let attempts = r.try_get(at)?;
    Ok(claimed_at
        .zip(lease_until)
        .map(|(claimed_at, lease_until)| Claimed {
            attempts,
            claimed_at,
            lease_until,
        }))
}

fn dedup_sql() -> String {
    format!(
        "SELECT {} FROM task_queue WHERE (queue_name, dedup_key) IN \
             (SELECT * FROM unnest($1::text[], $2::text[])) \
         AND completed_at IS NULL AND failed_at IS NULL",
        columns("")
    )
}

/// The conditional claim of tasks a window picked: still claimable and due, since another
/// writer may have claimed, finished or rescheduled a task since the window read it.
fn claim_sql() -> String {
    let free = locked_by_id(
        "task_queue",
        "$1::uuid[], $2::text[], $3::int8[], $4::uuid[]",
        "id, agent, lease_ms, lease_id",
        &format!("t.{CLAIMABLE} AND {DUE}"),
        "SKIP LOCKED",
    );
    format!(
        "WITH free AS ({free}) \
         UPDATE task_queue AS t SET claimed_by = free.agent, claimed_at = now(), \
             lease_until = now() + free.lease_ms * interval '1 millisecond', \
             lease_id = free.lease_id, claimed_via = $5, attempts = t.attempts + 1 \
         FROM free WHERE t.id = free.id \
         RETURNING t.id, {}",
        claim_stamp("t.")
    )
}

/// One settlement statement: `set` applied where the claim is still this agent's.
fn settle_sql(set: &str, live_lease: bool) -> String {
    let lease = if live_lease {
        "AND t.lease_until > now()"
    } else {
        ""
    };
    let held = locked_by_id(
        "task_queue",
        "$1::uuid[], $2::text[], $3::uuid[], $4::jsonb[], $5::text[], $6::int8[], $7::bool[]",
        "id, agent, lease_id, result, error, ms, known",
        &format!(
            "t.claimed_by = u.agent AND (u.lease_id IS NULL OR t.lease_id = u.lease_id) {lease} \
             AND t.completed_at IS NULL AND t.failed_at IS NULL"
        ),
        "",
    );
    format!(
        "WITH s AS ({held}) UPDATE task_queue AS t SET {set} FROM s WHERE t.id = s.id \
         RETURNING {}",
        columns_with_payload("t.", "CASE WHEN s.known THEN NULL ELSE t.payload END")
    )
}

const RELEASED: &str =
    "claimed_by = NULL, claimed_at = NULL, lease_until = NULL, lease_id = NULL, \
    claimed_via = NULL";

fn settle_set(action: &Settle) -> String {
    let exhausted = "t.attempts >= t.max_attempts";
    match action {
        Settle::Complete(_) => "completed_at = now(), result = s.result, lease_until = NULL".into(),
        Settle::Extend(_) => "lease_until = now() + s.ms * interval '1 millisecond'".into(),
        Settle::Release => format!("{RELEASED}, attempts = t.attempts - 1"),
        Settle::Fail { .. } => format!(
            "error = s.error, lease_until = NULL, lease_id = NULL, claimed_via = NULL, \
             failed_at = CASE WHEN {exhausted} THEN now() END, \
             claimed_by = CASE WHEN {exhausted} THEN t.claimed_by END, \
             scheduled_for = CASE WHEN {exhausted} THEN t.scheduled_for \
                 ELSE now() + COALESCE(s.ms, {BACKOFF}) * interval '1 millisecond' END"
        ),
        Settle::Expire => format!(
            "lease_until = NULL, lease_id = NULL, claimed_via = NULL, \
             failed_at = CASE WHEN {exhausted} THEN now() END, \
             claimed_by = CASE WHEN {exhausted} THEN t.claimed_by END, \
             error = CASE WHEN {exhausted} THEN 'lease expired on attempt ' || t.attempts \
                 ELSE t.error END"
        ),
    }
}

/// Applies the queue writes of a group inside its transaction.
pub async fn write(
    tx: &impl GenericClient,
    batch: &QueueBatch,
    origin: &str,
) -> Result<QueueCommitted, tokio_postgres::Error> {
    // Pipelined on the group's connection: they touch different tasks (new ones, claimable
    // ones, claimed ones), and one round trip serves them all.
    let next = batch
        .claim_next
        .iter()
        .map(|c| claim_next(tx, &c.queue, c.max, &c.lease, origin));
    let (pushed, claimed, claimed_next, settled) = futures::try_join!(
        push(tx, &batch.pushes, origin),
        claim(tx, &batch.claims, origin),
        futures::future::try_join_all(next),
        settle(tx, &batch.settles),
    )?;
    Ok(QueueCommitted {
        pushed,
        claimed,
        claimed_next,
        settled,
    })
}

async fn push(
    tx: &impl GenericClient,
    pushes: &[PushWrite],
    origin: &str,
) -> Result<Vec<Pushed>, tokio_postgres::Error> {
    if pushes.is_empty() {
        return Ok(Vec::new());
    }
    let tasks = pushes.iter().map(|p| &p.task);
    let ids: Vec<Uuid> = tasks.clone().map(|t| t.id).collect();
    let queues: Vec<&str> = tasks.clone().map(|t| t.queue.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = tasks.clone().map(|t| t.payload.as_ref()).collect();
    let priorities: Vec<i32> = tasks.clone().map(|t| t.priority).collect();
    let run_at: Vec<Option<DateTime<Utc>>> = tasks.clone().map(|t| t.run_at).collect();
    let max_attempts: Vec<i32> = tasks.clone().map(|t| t.max_attempts).collect();
    let dedup: Vec<Option<&str>> = tasks.map(|t| t.dedup_key.as_deref()).collect();
    let claims = pushes.iter().map(|p| p.claim.as_ref());
    let agents: Vec<Option<&str>> = claims
        .clone()
        .map(|c| c.map(|l| l.agent.as_str()))
        .collect();
    let lease_ms: Vec<Option<i64>> = claims
        .clone()
        .map(|c| c.map(|l| millis(l.duration)))
        .collect();
    let lease_ids: Vec<Option<Uuid>> = claims.map(|c| c.map(|l| l.lease_id)).collect();
    let stmt = tx.prepare_cached(&push_sql()).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 11] = [
        &ids,
        &queues,
        &payloads,
        &priorities,
        &run_at,
        &max_attempts,
        &dedup,
        &agents,
        &lease_ms,
        &lease_ids,
        &origin,
    ];
    let mut created: HashMap<Uuid, (Inserted, Option<Claimed>)> = tx
        .query(&stmt, &params)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                (inserted_from_row(r)?, claimed_from_row(r, 4)?),
            ))
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let existing = existing_for_dedup(tx, pushes, &created).await?;
    Ok(pushes
        .iter()
        .filter_map(|p| match created.remove(&p.task.id) {
            Some((inserted, claimed)) => Some(Pushed {
                task: p.task.stored(inserted, p.claim.as_ref().zip(claimed)),
                created: true,
            }),
            None => {
                let key = (p.task.queue.clone(), p.task.dedup_key.clone()?);
                let task = existing.get(&key)?.clone();
                Some(Pushed {
                    task,
                    created: false,
                })
            }
        })
        .collect())
}

/// The pending tasks that pushes not inserted (because of their dedup key) collided with.
async fn existing_for_dedup(
    tx: &impl GenericClient,
    pushes: &[PushWrite],
    created: &HashMap<Uuid, (Inserted, Option<Claimed>)>,
) -> Result<HashMap<(String, String), Task>, tokio_postgres::Error> {
    let (queues, keys): (Vec<&str>, Vec<&str>) = pushes
        .iter()
        .filter(|p| !created.contains_key(&p.task.id))
        .filter_map(|p| Some((p.task.queue.as_str(), p.task.dedup_key.as_deref()?)))
        .unzip();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = tx.query(&dedup_sql(), &[&queues, &keys]).await?;
    Ok(
        decoded(&rows, "skipped (a push with its dedup key was not made)")
            .into_iter()
            .filter_map(|t| Some(((t.queue.clone(), t.dedup_key.clone()?), t)))
            .collect(),
    )
}

async fn claim(
    tx: &impl GenericClient,
    claims: &[ClaimWrite],
    origin: &str,
) -> Result<HashMap<Uuid, Claimed>, tokio_postgres::Error> {
    if claims.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<Uuid> = claims.iter().map(|c| c.id).collect();
    let agents: Vec<&str> = claims.iter().map(|c| c.lease.agent.as_str()).collect();
    let lease_ms: Vec<i64> = claims.iter().map(|c| millis(c.lease.duration)).collect();
    let lease_ids: Vec<Uuid> = claims.iter().map(|c| c.lease.lease_id).collect();
    let stmt = tx.prepare_cached(&claim_sql()).await?;
    let rows = tx
        .query(&stmt, &[&ids, &agents, &lease_ms, &lease_ids, &origin])
        .await?;
    let won = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, claimed_from_row(r, 1)?)));
    let won: Vec<(Uuid, Option<Claimed>)> = won.collect::<Result<_, tokio_postgres::Error>>()?;
    Ok(won
        .into_iter()
        .filter_map(|(id, claimed)| Some((id, claimed?)))
        .collect())
}

/// Claims up to `max` of the best claimable tasks of `queue` for `lease` (inside a transaction:
/// the rows stay locked, and claimed, until it ends).
async fn claim_next(
    tx: &impl GenericClient,
    queue: &str,
    max: usize,
    lease: &Lease,
    origin: &str,
) -> Result<Vec<Task>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {} FROM task_queue WHERE queue_name = $1 AND {CLAIMABLE} AND {DUE} \
         ORDER BY priority DESC, created_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED",
        columns("")
    );
    let rows = tx.query(&sql, &[&queue, &(max as i64)]).await?;
    let candidates = decoded(&rows, "skipped (left unclaimed)");
    let claims: Vec<ClaimWrite> = candidates
        .iter()
        .map(|t| ClaimWrite {
            id: t.id,
            lease: lease.clone(),
        })
        .collect();
    let won = claim(tx, &claims, origin).await?;
    Ok(won_by(candidates, won, &lease.agent))
}

async fn settle(
    tx: &impl GenericClient,
    settles: &[SettleWrite],
) -> Result<HashMap<Uuid, Result<Task, Refusal>>, tokio_postgres::Error> {
    let kinds = (0..5).map(|kind| {
        let group: Vec<&SettleWrite> = settles
            .iter()
            .filter(|s| kind_of(&s.action) == kind)
            .collect();
        settle_kind(tx, group)
    });
    let mut out: HashMap<Uuid, Result<Task, Refusal>> = futures::future::try_join_all(kinds)
        .await?
        .into_iter()
        .flatten()
        .map(|t| (t.id, Ok(t)))
        .collect();
    let refused: Vec<&SettleWrite> = settles
        .iter()
        .filter(|s| !out.contains_key(&s.id))
        .collect();
    out.extend(classify(tx, &refused).await?);
    Ok(out)
}

/// Applies settlements of one kind in one statement; returns the tasks it changed.
async fn settle_kind(
    tx: &impl GenericClient,
    group: Vec<&SettleWrite>,
) -> Result<Vec<Task>, tokio_postgres::Error> {
    let Some(first) = group.first() else {
        return Ok(Vec::new());
    };
    let live = !matches!(first.action, Settle::Expire);
    let stmt = tx
        .prepare_cached(&settle_sql(&settle_set(&first.action), live))
        .await?;
    let ids: Vec<Uuid> = group.iter().map(|s| s.id).collect();
    let agents: Vec<&str> = group.iter().map(|s| s.agent.as_str()).collect();
    let lease_ids: Vec<Option<Uuid>> = group.iter().map(|s| s.lease_id).collect();
    let (results, errors, ms) = settle_args(&group);
    let known: Vec<bool> = group.iter().map(|s| s.payload.is_some()).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
        [&ids, &agents, &lease_ids, &results, &errors, &ms, &known];
    let payloads: HashMap<Uuid, &Arc<serde_json::Value>> = group
        .iter()
        .filter_map(|s| Some((s.id, s.payload.as_ref()?)))
        .collect();
    let rows = tx.query(&stmt, &params).await?;
    rows.iter()
        .map(|row| {
            let id: Uuid = row.try_get(0)?;
            task_with_payload(row, payloads.get(&id).copied()).or_else(|e| {
                report(
                    "task_queue",
                    &id.to_string(),
                    &e,
                    "settled, answered without payload",
                );
                task_from_parts(row, Arc::default(), None)
            })
        })
        .collect()
}

fn kind_of(action: &Settle) -> usize {
    match action {
        Settle::Complete(_) => 0,
        Settle::Fail { .. } => 1,
        Settle::Extend(_) => 2,
        Settle::Release => 3,
        Settle::Expire => 4,
    }
}

type SettleArgs<'a> = (
    Vec<Option<&'a serde_json::Value>>,
    Vec<Option<&'a str>>,
    Vec<Option<i64>>,
);

fn settle_args<'a>(group: &[&'a SettleWrite]) -> SettleArgs<'a> {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for s in group {
        let (result, error, ms) = match &s.action {
            Settle::Complete(result) => (result.as_ref(), None, None),
            Settle::Fail { error, retry_in } => (None, Some(error.as_str()), retry_in.map(millis)),
            Settle::Extend(d) => (None, None, Some(millis(*d))),
            Settle::Release | Settle::Expire => (None, None, None),
        };
        out.0.push(result);
        out.1.push(error);
        out.2.push(ms);
    }
    out
}

/// Why settlements changed nothing.
async fn classify(
    tx: &impl GenericClient,
    refused: &[&SettleWrite],
) -> Result<Vec<(Uuid, Result<Task, Refusal>)>, tokio_postgres::Error> {
    if refused.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = refused.iter().map(|s| s.id).collect();
    // Only the claim and the state decide: payload and result are not read.
    let sql = format!(
        "SELECT {}, lease_id FROM task_queue WHERE id = ANY($1)",
        columns_with_payload("", "NULL")
    );
    let rows = tx.query(&sql, &[&ids]).await?;
    let found: HashMap<Uuid, (Task, Option<Uuid>)> = rows
        .iter()
        .map(|r| {
            let task = task_from_parts(r, Arc::default(), None)?;
            Ok((task.id, (task, r.try_get(17)?)))
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok(refused
        .iter()
        .map(|s| (s.id, Err(refusal(s, found.get(&s.id)))))
        .collect())
}

fn refusal(s: &SettleWrite, found: Option<&(Task, Option<Uuid>)>) -> Refusal {
    let Some((task, lease_id)) = found else {
        return Refusal::NotFound;
    };
    let mine = task.claimed_by.as_deref() == Some(s.agent.as_str());
    let same_lease = s.lease_id.is_none() || s.lease_id == *lease_id;
    match () {
        _ if !task.is_open() => Refusal::Finished,
        _ if mine && same_lease => Refusal::LeaseLost, // still ours, but the lease ran out
        _ if s.lease_id.is_some() => Refusal::LeaseLost, // we held it once; someone took it over
        _ => Refusal::NotClaimer,
    }
}

fn inserted_from_row(r: &Row) -> Result<Inserted, tokio_postgres::Error> {
    Ok(Inserted {
        seq: r.try_get(1)?,
        scheduled_for: r.try_get(2)?,
        created_at: r.try_get(3)?,
    })
}

fn task_from_row(r: &Row) -> Result<Task, tokio_postgres::Error> {
    task_with_payload(r, None)
}

/// The tasks of `rows` that decode; the others are reported, with what became of them.
fn decoded(rows: &[Row], action: &str) -> Vec<Task> {
    let (tasks, bad) = split(rows, task_from_row);
    for (row, error) in &bad {
        report("task_queue", &id_of(row), error, action);
    }
    tasks
}

/// A task from a row of [`columns_with_payload`]: `payload` when given (the row's is NULL).
fn task_with_payload(
    r: &Row,
    payload: Option<&Arc<serde_json::Value>>,
) -> Result<Task, tokio_postgres::Error> {
    let payload = match payload {
        Some(p) => Arc::clone(p),
        None => Arc::new(
            r.try_get::<_, Option<serde_json::Value>>(3)?
                .unwrap_or_default(),
        ),
    };
    let result = r.try_get::<_, Option<serde_json::Value>>(15)?;
    task_from_parts(r, payload, result.map(Arc::new))
}

/// A task from a row of [`columns_with_payload`], its JSON columns given (not read).
fn task_from_parts(
    r: &Row,
    payload: Arc<serde_json::Value>,
    result: Option<Arc<serde_json::Value>>,
) -> Result<Task, tokio_postgres::Error> {
    Ok(Task {
        id: r.try_get(0)?,
        seq: r.try_get(1)?,
        queue: r.try_get(2)?,
        payload,
        priority: r.try_get(4)?,
        scheduled_for: r.try_get(5)?,
        created_at: r
            .try_get::<_, Option<DateTime<Utc>>>(6)?
            .unwrap_or_else(Utc::now),
        attempts: r.try_get(7)?,
        max_attempts: r.try_get(8)?,
        claimed_by: r.try_get(9)?,
        claimed_at: r.try_get(10)?,
        lease_until: r.try_get(11)?,
        completed_at: r.try_get(12)?,
        failed_at: r.try_get(13)?,
        error: r.try_get(14)?,
        result,
        dedup_key: r.try_get(16)?,
    })
}

/// Dead-letters claimable tasks that do not decode: dead, with an error saying why.
const BURY: &str = "\
    UPDATE task_queue AS t SET failed_at = now(), error = u.error \
    FROM unnest($1::uuid[], $2::text[]) AS u(id, error) \
    WHERE t.id = u.id AND t.claimed_by IS NULL AND t.completed_at IS NULL AND t.failed_at IS NULL \
    RETURNING t.id";

/// Due: its scheduled time has come (a missing one counts as due).
const DUE: &str = "COALESCE(scheduled_for, created_at, now()) <= now()";

pub struct PgQueueStore {
    pool: Pool,
}

impl PgQueueStore {
    pub fn new(pool: Pool) -> Self {
        PgQueueStore { pool }
    }

    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        let stmt = client.prepare_cached(sql).await.map_err(store_error)?;
        client.query(&stmt, params).await.map_err(store_error)
    }

    async fn names(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<String>, StoreError> {
        let rows = self.rows(sql, params).await?;
        let names = rows.iter().map(|r| r.try_get(0));
        let mut names: Vec<String> = names.collect::<Result<_, _>>().map_err(undecodable)?;
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Runs a load of claimable tasks until every row it returns decodes: those that do not
    /// are dead-lettered, so the next run no longer returns them and a page stays full.
    async fn claimable(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Task>, StoreError> {
        loop {
            let rows = self.rows(sql, params).await?;
            let (tasks, bad) = split(&rows, task_from_row);
            if bad.is_empty() {
                return Ok(tasks);
            }
            let mut ids: Vec<Uuid> = Vec::with_capacity(bad.len());
            let mut errors = Vec::with_capacity(bad.len());
            for (row, error) in &bad {
                report("task_queue", &id_of(row), error, "dead-lettered");
                if let Ok(id) = row.try_get(0) {
                    ids.push(id);
                    errors.push(format!("the stored task does not decode: {error}"));
                }
            }
            // Nothing buried (another writer changed the rows): they will not come back.
            if self.rows(BURY, &[&ids, &errors]).await?.is_empty() {
                return Ok(tasks);
            }
        }
    }
}

#[async_trait]
impl QueueStore for PgQueueStore {
    async fn load_claimable(
        &self,
        queue: &str,
        after: Option<Rank>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let limit = limit as i64;
        let select = format!(
            "SELECT {} FROM task_queue WHERE queue_name = $1 AND {CLAIMABLE} AND {DUE}",
            columns("")
        );
        match &after {
            None => {
                let sql = format!("{select} ORDER BY priority DESC, created_at, seq LIMIT $2");
                self.claimable(&sql, &[&queue, &limit]).await
            }
            // Two index range scans (the rest of this priority, then lower priorities): one
            // condition with OR would walk the index from its start.
            Some(Rank(Reverse(priority), created_at, seq)) => {
                let sql = format!(
                    "({select} AND priority = $3 AND (created_at, seq) > ($4, $5) \
                       ORDER BY created_at, seq LIMIT $2) \
                     UNION ALL \
                     ({select} AND priority < $3 ORDER BY priority DESC, created_at, seq LIMIT $2) \
                     LIMIT $2"
                );
                self.claimable(&sql, &[&queue, &limit, priority, created_at, seq])
                    .await
            }
        }
    }

    async fn next_due(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sql = format!(
            "SELECT min(scheduled_for) FROM task_queue WHERE queue_name = $1 AND {CLAIMABLE} \
             AND scheduled_for > created_at AND scheduled_for > now()"
        );
        let rows = self.rows(&sql, &[&queue]).await?;
        let first = rows.first().map(|r| r.try_get(0)).transpose();
        Ok(first.map_err(undecodable)?.flatten())
    }

    async fn queues_with_work(&self) -> Result<Vec<String>, StoreError> {
        let sql = format!("SELECT DISTINCT queue_name FROM task_queue WHERE {CLAIMABLE}");
        self.names(&sql, &[]).await
    }

    async fn release_claims_of(&self, origin: &str) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "UPDATE task_queue AS t SET {} FROM (SELECT id FROM task_queue WHERE claimed_by IS NOT NULL \
                 AND claimed_via = $1 \
                 AND completed_at IS NULL AND failed_at IS NULL FOR UPDATE SKIP LOCKED) AS gone \
             WHERE t.id = gone.id RETURNING t.queue_name",
            settle_set(&Settle::Expire)
        );
        self.names(&sql, &[&origin]).await
    }

    async fn release_expired(&self, grace: Duration) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "UPDATE task_queue AS t SET {} FROM (SELECT id FROM task_queue \
                 WHERE claimed_by IS NOT NULL AND completed_at IS NULL AND failed_at IS NULL \
                 AND lease_until < now() - $1::int8 * interval '1 millisecond' \
                 FOR UPDATE SKIP LOCKED) AS gone \
             WHERE t.id = gone.id RETURNING t.queue_name",
            settle_set(&Settle::Expire)
        );
        self.names(&sql, &[&millis(grace)]).await
    }

    async fn queue_of(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        let rows = self
            .rows("SELECT queue_name FROM task_queue WHERE id = $1", &[&id])
            .await?;
        rows.first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(undecodable)
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts, StoreError> {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE {CLAIMABLE} AND {DUE}), \
                    count(*) FILTER (WHERE {CLAIMABLE} AND NOT {DUE}), \
                    count(*) FILTER (WHERE claimed_by IS NOT NULL AND completed_at IS NULL \
                                     AND failed_at IS NULL), \
                    count(*) FILTER (WHERE completed_at IS NOT NULL), \
                    count(*) FILTER (WHERE failed_at IS NOT NULL) \
             FROM task_queue WHERE queue_name = $1"
        );
        let rows = self.rows(&sql, &[&queue]).await?;
        let count = |i: usize| -> Result<u64, StoreError> {
            let n = rows.first().map(|r| r.try_get::<_, i64>(i)).transpose();
            Ok(n.map_err(undecodable)?.unwrap_or(0).unsigned_abs())
        };
        Ok(QueueCounts {
            pending: count(0)?,
            scheduled: count(1)?,
            claimed: count(2)?,
            completed: count(3)?,
            dead: count(4)?,
        })
    }

    async fn list(
        &self,
        queue: &str,
        state: Option<TaskState>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let filter = match state {
            None => "TRUE".to_owned(),
            Some(TaskState::Pending) => format!("{CLAIMABLE} AND {DUE}"),
            Some(TaskState::Scheduled) => format!("{CLAIMABLE} AND NOT {DUE}"),
            Some(TaskState::Claimed) => {
                "claimed_by IS NOT NULL AND completed_at IS NULL AND failed_at IS NULL".to_owned()
            }
            Some(TaskState::Completed) => "completed_at IS NOT NULL".to_owned(),
            Some(TaskState::Dead) => "failed_at IS NOT NULL".to_owned(),
        };
        let sql = format!(
            "SELECT {} FROM task_queue WHERE queue_name = $1 AND {filter} AND seq > $2 \
             ORDER BY seq LIMIT $3",
            columns("")
        );
        // Rows that do not decode are skipped; the page is filled from the rows after them.
        let (mut tasks, mut after) = (Vec::with_capacity(limit), after);
        while tasks.len() < limit {
            let want = limit - tasks.len();
            let rows = self.rows(&sql, &[&queue, &after, &(want as i64)]).await?;
            tasks.extend(decoded(&rows, "skipped"));
            match rows.last().map(|r| r.try_get::<_, i64>(1)) {
                Some(Ok(seq)) if rows.len() == want => after = seq,
                _ => break,
            }
        }
        Ok(tasks)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
