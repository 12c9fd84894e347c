//! `queue.push`, `queue.push_many`, `queue.claim`, `queue.extend`, `queue.complete`,
//! `queue.fail`, `queue.release`, `queue.stats` and `queue.list`.
//!
//! Any authenticated agent may push to and claim from any queue; only the claimer may extend,
//! complete, fail or release its task.

use super::tx::parse;
use super::{ask, check_max, check_ms, check_name, check_wait, gone, parked, timestamp};
use crate::actions::{self, restarted, TaskSpec};
use crate::error::Error;
use crate::services::Services;
use crate::session::Session;
use crate::tx::Later;
use ikigai_actors::queue::{Claim, QueueError, SettleTask, Stats};
use ikigai_actors::store::{
    ClaimNext, Pushed, QueueBatch, QueueCommitted, Refusal, Settle, SettleWrite, TaskState,
};
use ikigai_actors::{Lease, NewTask, Task};
use ikigai_protocol::{from_value, Json, Value};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Most tasks one `queue.push_many` may carry.
const MAX_PUSH_MANY: usize = 10_000;

/// Longest `error` text a failure may record.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Checks a delay argument: 0 to [`crate::rules::MAX_MS`] (beyond any real schedule, timestamps overflow).
fn check_delay(what: &str, ms: u64) -> Result<Duration, Error> {
    check_ms(what, ms, 0, Duration::MAX)
}

/// `queue.push` args: `queue` plus the fields of one task.
pub struct PushArgs {
    queue: String,
    tx: Option<String>,
    task: TaskArgs,
}

impl<'de> Deserialize<'de> for PushArgs {
    /// Takes `queue` out of the map and reads the rest as [`TaskArgs`] (still msgpack, so the
    /// payload keeps its strict JSON checks).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Value::Map(mut entries) = Value::deserialize(d)? else {
            return Err(serde::de::Error::custom("args must be a map"));
        };
        let at = entries
            .iter()
            .position(|(k, _)| k.as_str() == Some("queue"));
        let queue = match at.map(|i| entries.remove(i).1) {
            Some(Value::String(q)) => q
                .into_str()
                .ok_or_else(|| serde::de::Error::custom("queue must be UTF-8"))?,
            Some(_) => return Err(serde::de::Error::custom("queue must be a string")),
            None => return Err(serde::de::Error::missing_field("queue")),
        };
        let at = entries.iter().position(|(k, _)| k.as_str() == Some("tx"));
        // `nil` is an absent `tx`, as for every optional field.
        let tx = match at.map(|i| entries.remove(i).1) {
            Some(v) => from_value(v).map_err(serde::de::Error::custom)?,
            None => None,
        };
        let task = from_value(Value::Map(entries)).map_err(serde::de::Error::custom)?;
        Ok(PushArgs { queue, tx, task })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskArgs {
    payload: Json,
    priority: Option<i32>,
    scheduled_for: Option<String>,
    delay_ms: Option<u64>,
    max_attempts: Option<i32>,
    dedup_key: Option<String>,
}

#[derive(Serialize)]
pub struct PushReply {
    id: String,
    /// False when a pending task with the same `dedup_key` was returned instead.
    created: bool,
}

pub async fn push(args: PushArgs, s: &Services, session: &Session) -> Result<PushReply, Error> {
    let task = new_task(&args.queue, args.task, s)?;
    let pushed = push_tasks(&args.queue, vec![task], args.tx.as_deref(), s, session).await?;
    let first = pushed.into_iter().next().ok_or_else(gone)?;
    Ok(PushReply {
        id: first.task.id.to_string(),
        created: first.created,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushManyArgs {
    queue: String,
    tasks: Vec<TaskArgs>,
    tx: Option<String>,
}

#[derive(Serialize)]
pub struct PushManyReply {
    tasks: Vec<PushReply>,
}

pub async fn push_many(
    args: PushManyArgs,
    s: &Services,
    session: &Session,
) -> Result<PushManyReply, Error> {
    if args.tasks.len() > MAX_PUSH_MANY {
        return Err(Error::BadRequest(format!(
            "at most {MAX_PUSH_MANY} tasks per push_many"
        )));
    }
    let tasks = args
        .tasks
        .into_iter()
        .map(|t| new_task(&args.queue, t, s))
        .collect::<Result<Vec<_>, _>>()?;
    let pushed = push_tasks(&args.queue, tasks, args.tx.as_deref(), s, session).await?;
    let tasks = pushed
        .into_iter()
        .map(|p| PushReply {
            id: p.task.id.to_string(),
            created: p.created,
        })
        .collect();
    Ok(PushManyReply { tasks })
}

async fn push_tasks(
    queue: &str,
    tasks: Vec<NewTask>,
    tx: Option<&str>,
    s: &Services,
    session: &Session,
) -> Result<Vec<Pushed>, Error> {
    let Some(tx) = tx else {
        return actions::push_tasks(s, queue, tasks).await;
    };
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let batch = QueueBatch::pushes(tasks);
    let pushed = |done: &QueueCommitted| Ok(done.pushed.clone());
    session.txs.queue(s, parse(tx)?, batch, pushed).await
}

fn new_task(queue: &str, t: TaskArgs, s: &Services) -> Result<NewTask, Error> {
    let spec = TaskSpec {
        payload: t.payload.0,
        priority: t.priority,
        scheduled_for: t.scheduled_for,
        delay_ms: t.delay_ms,
        max_attempts: t.max_attempts,
        dedup_key: t.dedup_key,
    };
    spec.task(queue, s)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimArgs {
    queue: String,
    max: Option<usize>,
    wait_ms: Option<u64>,
    lease_ms: Option<u64>,
    tx: Option<String>,
}

#[derive(Serialize)]
pub struct Tasks {
    tasks: Vec<WireTask>,
}

pub async fn claim(args: ClaimArgs, s: &Services, session: &Session) -> Result<Tasks, Error> {
    check_name("queue", &args.queue)?;
    let limits = &s.config.queues;
    let max = check_max(args.max, limits.max_claim)?;
    let wait = check_wait(args.wait_ms, limits.max_wait)?;
    let lease = Lease::new(session.agent.clone(), lease(args.lease_ms, s)?);
    let tasks = match &args.tx {
        Some(_) if !wait.is_zero() => {
            return Err(Error::BadRequest(
                "a claim inside a transaction cannot wait".into(),
            ))
        }
        Some(tx) => claim_within(tx, &args.queue, max, lease, s, session).await?,
        None => {
            let rx = ask(s.queues.get(&args.queue), |reply| Claim {
                session: session.id,
                lease,
                max,
                wait: (!wait.is_zero()).then_some(wait),
                reply,
            })
            .await?;
            let tasks = parked(rx, None, s, session).await;
            tasks.ok_or_else(|| restarted(&args.queue))??
        }
    };
    session.claimed(&args.queue, tasks.iter().map(|t| t.id));
    Ok(Tasks {
        tasks: tasks.iter().map(WireTask::from).collect(),
    })
}

/// Claims inside a transaction: the tasks stay claimed only if it commits.
async fn claim_within(
    tx: &str,
    queue: &str,
    max: usize,
    lease: Lease,
    s: &Services,
    session: &Session,
) -> Result<Vec<Task>, Error> {
    let next = ClaimNext {
        queue: queue.to_owned(),
        max,
        lease,
    };
    let batch = QueueBatch {
        claim_next: vec![next],
        ..QueueBatch::default()
    };
    let claimed = |done: &QueueCommitted| Ok(done.claimed_next.concat());
    session.txs.queue(s, parse(tx)?, batch, claimed).await
}

fn lease(lease_ms: Option<u64>, s: &Services) -> Result<Duration, Error> {
    let limits = &s.config.queues;
    match lease_ms {
        None => Ok(limits.lease),
        Some(ms) => check_ms("lease_ms", ms, 1, limits.max_lease),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendArgs {
    id: String,
    lease_ms: u64,
    tx: Option<String>,
}

#[derive(Serialize)]
pub struct Extended {
    lease_until: Option<String>,
}

pub async fn extend(args: ExtendArgs, s: &Services, session: &Session) -> Result<Extended, Error> {
    let duration = lease(Some(args.lease_ms), s)?;
    let task = settle(
        &args.id,
        Settle::Extend(duration),
        args.tx.as_deref(),
        s,
        session,
    )
    .await?;
    Ok(Extended {
        lease_until: task.lease_until.map(timestamp),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteArgs {
    id: String,
    result: Option<Json>,
    tx: Option<String>,
}

pub async fn complete(
    args: CompleteArgs,
    s: &Services,
    session: &Session,
) -> Result<WireTask, Error> {
    let action = Settle::Complete(args.result.map(|r| r.0));
    let task = settle(&args.id, action, args.tx.as_deref(), s, session).await?;
    report(s, session, args.tx.as_deref(), "task_completed", &task).await?;
    Ok(WireTask::from(&task))
}

/// Records a task's outcome as a telemetry event of the agent that settled it (inside a
/// transaction: when it commits).
async fn report(
    s: &Services,
    session: &Session,
    tx: Option<&str>,
    event_type: &'static str,
    task: &Task,
) -> Result<(), Error> {
    let payload = serde_json::json!({
        "task_id": task.id.to_string(),
        "queue": task.queue,
        "attempts": task.attempts,
        "error": task.error,
        "dead": task.failed_at.is_some(),
    });
    let agent = session.agent.clone();
    match tx {
        None => s.telemetry.record(&agent, event_type, payload),
        Some(tx) => {
            let event = Later::Event {
                agent,
                event_type,
                payload,
            };
            session.txs.later(s, parse(tx)?, event).await?;
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailArgs {
    id: String,
    error: String,
    retry_in_ms: Option<u64>,
    tx: Option<String>,
}

pub async fn fail(args: FailArgs, s: &Services, session: &Session) -> Result<WireTask, Error> {
    if args.error.len() > MAX_ERROR_BYTES || args.error.contains('\0') {
        let message = format!("error must be at most {MAX_ERROR_BYTES} bytes without U+0000");
        return Err(Error::BadRequest(message));
    }
    let retry_in = args
        .retry_in_ms
        .map(|ms| check_delay("retry_in_ms", ms))
        .transpose()?;
    let action = Settle::Fail {
        error: args.error,
        retry_in,
    };
    let task = settle(&args.id, action, args.tx.as_deref(), s, session).await?;
    report(s, session, args.tx.as_deref(), "task_failed", &task).await?;
    Ok(WireTask::from(&task))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseArgs {
    id: String,
    tx: Option<String>,
}

pub async fn release(
    args: ReleaseArgs,
    s: &Services,
    session: &Session,
) -> Result<WireTask, Error> {
    let task = settle(&args.id, Settle::Release, args.tx.as_deref(), s, session).await?;
    Ok(WireTask::from(&task))
}

/// Settles inside a transaction (fenced by the claimer and its live lease); a refusal undoes
/// the transaction.
async fn settle_within(
    tx: &str,
    id: &str,
    action: Settle,
    s: &Services,
    session: &Session,
) -> Result<Task, Error> {
    let (tx, id) = (parse(tx)?, parse_id(id)?);
    let write = SettleWrite {
        id,
        agent: session.agent.clone(),
        lease_id: None,
        action,
        payload: None,
    };
    let batch = QueueBatch {
        settles: vec![write],
        ..QueueBatch::default()
    };
    let settled = |done: &QueueCommitted| {
        let outcome = done.settled.get(&id).cloned();
        let task = outcome.unwrap_or(Err(Refusal::NotFound));
        task.map_err(|r| QueueError::refused(id, r).into())
    };
    session.txs.queue(s, tx, batch, settled).await
}

fn parse_id(id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id).map_err(|_| Error::BadRequest(format!("{id:?} is not a UUID")))
}

/// Settles a task: inside transaction `tx` when given, else through its queue actor.
async fn settle(
    id: &str,
    action: Settle,
    tx: Option<&str>,
    s: &Services,
    session: &Session,
) -> Result<Task, Error> {
    match tx {
        Some(tx) => settle_within(tx, id, action, s, session).await,
        None => settle_now(id, action, s, session).await,
    }
}

/// Sends a settlement to the task's queue actor; answers after its commit.
async fn settle_now(
    id: &str,
    action: Settle,
    s: &Services,
    session: &Session,
) -> Result<Task, Error> {
    let id = parse_id(id)?;
    let claimed_here = session.queue_of(&id);
    let queue = match &claimed_here {
        Some(q) => q.clone(),
        None => s
            .queues
            .store()
            .queue_of(id)
            .await?
            .ok_or(QueueError::NotFound(id))?,
    };
    let keeps_claim = matches!(action, Settle::Extend(_));
    let agent = session.agent.clone();
    let rx = ask(s.queues.get(&queue), |reply| SettleTask {
        agent,
        id,
        action,
        reply,
    })
    .await?;
    match rx.await.map_err(|_| restarted(&queue))? {
        Ok(task) => {
            if !keeps_claim {
                session.settled(&id);
            }
            Ok(task)
        }
        // This connection did claim it: its lease ran out and the task moved on.
        Err(QueueError::NotClaimer(id)) if claimed_here.is_some() => {
            session.settled(&id);
            Err(QueueError::LeaseLost(id).into())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsArgs {
    queue: String,
}

#[derive(Serialize)]
pub struct QueueStats {
    queue: String,
    pending: u64,
    scheduled: u64,
    claimed: u64,
    completed: u64,
    dead: u64,
    ready_in_memory: usize,
    waiting: usize,
}

pub async fn stats(args: StatsArgs, s: &Services) -> Result<QueueStats, Error> {
    check_name("queue", &args.queue)?;
    let c = s.queues.store().counts(&args.queue).await?;
    let live = match s.queues.running(&args.queue) {
        Some(addr) => addr.send(Stats).await.unwrap_or_default(),
        None => Default::default(),
    };
    Ok(QueueStats {
        queue: args.queue,
        pending: c.pending,
        scheduled: c.scheduled,
        claimed: c.claimed,
        completed: c.completed,
        dead: c.dead,
        ready_in_memory: live.ready,
        waiting: live.waiting,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    queue: String,
    state: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
}

#[derive(Serialize)]
pub struct Listed {
    tasks: Vec<WireTask>,
    /// Pass as `after` for the next page; absent on the last page.
    next: Option<i64>,
}

pub async fn list(args: ListArgs, s: &Services) -> Result<Listed, Error> {
    check_name("queue", &args.queue)?;
    let state = args.state.as_deref().map(parse_state).transpose()?;
    let limit = args.limit.unwrap_or(100).clamp(1, 1000);
    let tasks = s
        .queues
        .store()
        .list(&args.queue, state, args.after.unwrap_or(0), limit)
        .await?;
    let next = (tasks.len() == limit)
        .then(|| tasks.last().map(|t| t.seq))
        .flatten();
    Ok(Listed {
        tasks: tasks.iter().map(WireTask::from).collect(),
        next,
    })
}

fn parse_state(state: &str) -> Result<TaskState, Error> {
    TaskState::parse(state).ok_or_else(|| {
        let known: Vec<&str> = TaskState::ALL.iter().map(|s| s.name()).collect();
        let known = known.join(", ");
        Error::BadRequest(format!("unknown state {state:?} (known: {known})"))
    })
}

/// A task as it travels: UUID and timestamps as strings.
#[derive(Serialize)]
pub struct WireTask {
    id: String,
    seq: i64,
    queue: String,
    payload: Arc<serde_json::Value>,
    priority: i32,
    scheduled_for: String,
    created_at: String,
    attempts: i32,
    max_attempts: i32,
    claimed_by: Option<String>,
    lease_until: Option<String>,
    completed_at: Option<String>,
    failed_at: Option<String>,
    error: Option<String>,
    result: Option<Arc<serde_json::Value>>,
    dedup_key: Option<String>,
}

impl From<&Task> for WireTask {
    fn from(t: &Task) -> Self {
        WireTask {
            id: t.id.to_string(),
            seq: t.seq,
            queue: t.queue.clone(),
            payload: t.payload.clone(),
            priority: t.priority,
            scheduled_for: timestamp(t.scheduled_for),
            created_at: timestamp(t.created_at),
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            claimed_by: t.claimed_by.clone(),
            lease_until: t.lease_until.map(timestamp),
            completed_at: t.completed_at.map(timestamp),
            failed_at: t.failed_at.map(timestamp),
            error: t.error.clone(),
            result: t.result.clone(),
            dedup_key: t.dedup_key.clone(),
        }
    }
}
