//! The commit's argument: a group as one JSON document that the script decodes with cjson.
//! Payloads and results go inside it as JSON text, so the script stores them byte for byte;
//! every number stays small enough to be exact in Lua's doubles.

use ikigai_actors::store::{ClaimNext, ClaimWrite, PushWrite, QueueBatch, Settle, SettleWrite};
use ikigai_actors::Lease;
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;

/// The longest duration (ms) a write may carry: added to a timestamp in Lua it stays exact, and
/// within what `chrono` holds.
const MAX_MS: u64 = 1 << 47;

/// The furthest timestamp (ms from the epoch, either way) a task may be scheduled for: the
/// script's bound for a stored time.
const MAX_TIME_MS: i64 = 8_000_000_000_000_000;

/// Why a group cannot be sent to the script.
#[derive(Debug, Error)]
pub enum ArgsError {
    #[error("a duration of {0:?} is beyond what the queue stores")]
    Duration(Duration),
    #[error("task {0} is scheduled beyond what the queue stores")]
    RunAt(uuid::Uuid),
    #[error("cannot encode the group: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Serialize)]
struct Batch<'a> {
    pushes: Vec<Push<'a>>,
    claims: Vec<Claim<'a>>,
    claim_next: Vec<Next<'a>>,
    settles: Vec<Settlement<'a>>,
}

#[derive(Serialize)]
struct LeaseArgs<'a> {
    agent: &'a str,
    lease_ms: u64,
    lease_id: String,
}

#[derive(Serialize)]
struct Push<'a> {
    id: String,
    queue: &'a str,
    payload: String,
    priority: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_at: Option<i64>,
    max_attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    dedup_key: Option<&'a str>,
    #[serde(flatten)]
    lease: Option<LeaseArgs<'a>>,
}

#[derive(Serialize)]
struct Claim<'a> {
    id: String,
    #[serde(flatten)]
    lease: LeaseArgs<'a>,
}

#[derive(Serialize)]
struct Next<'a> {
    queue: &'a str,
    max: u32,
    #[serde(flatten)]
    lease: LeaseArgs<'a>,
}

#[derive(Serialize)]
struct Settlement<'a> {
    id: String,
    agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_id: Option<String>,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jitter: Option<f64>,
    known: bool,
}

/// The script's argument for `batch`.
pub fn encode(batch: &QueueBatch) -> Result<Vec<u8>, ArgsError> {
    let doc = Batch {
        pushes: batch.pushes.iter().map(push).collect::<Result<_, _>>()?,
        claims: batch.claims.iter().map(claim).collect::<Result<_, _>>()?,
        claim_next: batch
            .claim_next
            .iter()
            .map(next)
            .collect::<Result<_, _>>()?,
        settles: batch.settles.iter().map(settle).collect::<Result<_, _>>()?,
    };
    Ok(serde_json::to_vec(&doc)?)
}

/// Milliseconds of `d`, refused beyond [`MAX_MS`].
pub fn millis(d: Duration) -> Result<u64, ArgsError> {
    u64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms <= MAX_MS)
        .ok_or(ArgsError::Duration(d))
}

fn lease(l: &Lease) -> Result<LeaseArgs<'_>, ArgsError> {
    Ok(LeaseArgs {
        agent: &l.agent,
        lease_ms: millis(l.duration)?,
        lease_id: l.lease_id.to_string(),
    })
}

fn push(p: &PushWrite) -> Result<Push<'_>, ArgsError> {
    let t = &p.task;
    let run_at = t.run_at.map(|at| at.timestamp_millis());
    if run_at.is_some_and(|ms| ms.abs() > MAX_TIME_MS) {
        return Err(ArgsError::RunAt(t.id));
    }
    Ok(Push {
        id: t.id.to_string(),
        queue: &t.queue,
        payload: serde_json::to_string(t.payload.as_ref())?,
        priority: t.priority,
        run_at,
        max_attempts: t.max_attempts,
        dedup_key: t.dedup_key.as_deref(),
        lease: p.claim.as_ref().map(lease).transpose()?,
    })
}

fn claim(c: &ClaimWrite) -> Result<Claim<'_>, ArgsError> {
    Ok(Claim {
        id: c.id.to_string(),
        lease: lease(&c.lease)?,
    })
}

fn next(c: &ClaimNext) -> Result<Next<'_>, ArgsError> {
    Ok(Next {
        queue: &c.queue,
        max: u32::try_from(c.max).unwrap_or(u32::MAX),
        lease: lease(&c.lease)?,
    })
}

fn settle(s: &SettleWrite) -> Result<Settlement<'_>, ArgsError> {
    let mut out = Settlement {
        id: s.id.to_string(),
        agent: &s.agent,
        lease_id: s.lease_id.map(|id| id.to_string()),
        kind: "",
        result: None,
        error: None,
        ms: None,
        jitter: None,
        known: s.payload.is_some(),
    };
    match &s.action {
        Settle::Complete(result) => {
            out.kind = "complete";
            out.result = result.as_ref().map(serde_json::to_string).transpose()?;
        }
        Settle::Fail { error, retry_in } => {
            out.kind = "fail";
            out.error = Some(error);
            out.ms = retry_in.map(millis).transpose()?;
            out.jitter = Some(0.75 + rand::random::<f64>() * 0.5);
        }
        Settle::Extend(d) => {
            out.kind = "extend";
            out.ms = Some(millis(*d)?);
        }
        Settle::Release => out.kind = "release",
        Settle::Expire => out.kind = "expire",
    }
    Ok(out)
}
