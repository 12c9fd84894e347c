//! What a commit produced, from the script's reply: one entry per push, the claims that took
//! effect, the tasks each `claim_next` took, and each settlement's task or refusal.

use super::decode::{array, int, millis, nth, task, task_from_parts, text, DecodeError, Fields};
use super::Reporter;
use ikigai_actors::store::{Pushed, QueueBatch, QueueCommitted, Refusal, SettleWrite};
use ikigai_actors::task::{Claimed, Inserted};
use ikigai_actors::Task;
use redis::Value;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// The outcomes of `batch` from the commit's `reply`.
pub fn committed(
    batch: &QueueBatch,
    reply: &Value,
    report: &Reporter,
) -> Result<QueueCommitted, DecodeError> {
    let parts = array(reply)?;
    let pushed = array(nth(parts, 0)?)?;
    let pushed = batch.pushes.iter().zip(pushed);
    let next = array(nth(parts, 2)?)?
        .iter()
        .map(|tasks| claimed_next(tasks, report));
    let settled = batch.settles.iter().zip(array(nth(parts, 3)?)?);
    let mut out = QueueCommitted {
        pushed: Vec::with_capacity(batch.pushes.len()),
        claimed: array(nth(parts, 1)?)?
            .iter()
            .map(claim)
            .collect::<Result<_, _>>()?,
        claimed_next: next.collect::<Result<_, _>>()?,
        settled: HashMap::with_capacity(batch.settles.len()),
    };
    for (p, reply) in pushed {
        out.pushed.extend(push(p, reply, report)?);
    }
    for (s, reply) in settled {
        if let Some(outcome) = settle(s, reply, report)? {
            // A task settled twice in one group: a change wins over a refusal.
            if !matches!(out.settled.get(&s.id), Some(Ok(_))) {
                out.settled.insert(s.id, outcome);
            }
        }
    }
    Ok(out)
}

/// One push: `created` with what the store assigned (and the claim), or `existing` with the
/// pending task holding the dedup key.
fn push(
    p: &ikigai_actors::store::PushWrite,
    reply: &Value,
    report: &Reporter,
) -> Result<Option<Pushed>, DecodeError> {
    let items = array(reply)?;
    if text(nth(items, 0)?)? == "existing" {
        let fields = Fields::new(nth(items, 1)?)?;
        let task = report.or_bare(&fields, None, "a push with its dedup key was not made");
        return Ok(task.map(|task| Pushed {
            task,
            created: false,
        }));
    }
    let time = |i| {
        int(nth(items, i)?)
            .map(millis)?
            .ok_or(DecodeError::Reply("bad time"))
    };
    let inserted = Inserted {
        seq: int(nth(items, 1)?)?,
        scheduled_for: time(2)?,
        created_at: time(3)?,
    };
    let claimed = match items.len() {
        7 => Some(Claimed {
            attempts: stamp(int(nth(items, 4)?)?)?,
            claimed_at: time(5)?,
            lease_until: time(6)?,
        }),
        _ => None,
    };
    let task = p.task.stored(inserted, p.claim.as_ref().zip(claimed));
    Ok(Some(Pushed {
        task,
        created: true,
    }))
}

fn stamp(attempts: i64) -> Result<i32, DecodeError> {
    i32::try_from(attempts).map_err(|_| DecodeError::Reply("attempts out of range"))
}

/// A claim that took effect: the task id, attempts, claimed_at and lease_until.
fn claim(reply: &Value) -> Result<(Uuid, Claimed), DecodeError> {
    let items = array(reply)?;
    let time = |i| {
        int(nth(items, i)?)
            .map(millis)?
            .ok_or(DecodeError::Reply("bad time"))
    };
    let id = text(nth(items, 0)?)?
        .parse()
        .map_err(|_| DecodeError::Reply("bad task id"))?;
    let claimed = Claimed {
        attempts: stamp(int(nth(items, 1)?)?)?,
        claimed_at: time(2)?,
        lease_until: time(3)?,
    };
    Ok((id, claimed))
}

/// The tasks one `claim_next` took; one that does not decode is not handed out (its lease runs
/// out, and the expiry counts the attempt).
fn claimed_next(reply: &Value, report: &Reporter) -> Result<Vec<Task>, DecodeError> {
    let mut tasks = Vec::new();
    for item in array(reply)? {
        let fields = Fields::new(item)?;
        match task(&fields, None) {
            Ok(t) => tasks.push(t),
            Err(e) => report.task(&fields.id(), &e, "claimed but not handed out"),
        }
    }
    Ok(tasks)
}

/// One settlement: `settled` with the task as it is now, `refused` with why, or `corrupt` (the
/// hash cannot be worked on: answered as not found).
fn settle(
    s: &SettleWrite,
    reply: &Value,
    report: &Reporter,
) -> Result<Option<Result<Task, Refusal>>, DecodeError> {
    let items = array(reply)?;
    let outcome = match text(nth(items, 0)?)? {
        "settled" => {
            let fields = Fields::new(nth(items, 1)?)?;
            let task = report.or_bare(&fields, s.payload.as_ref(), "settled");
            return Ok(task.map(Ok));
        }
        "corrupt" => {
            let e = DecodeError::Invalid("task", "queue task");
            report.task(&s.id.to_string(), &e, "settlement refused as not found");
            Refusal::NotFound
        }
        _ => refusal(text(nth(items, 1)?)?)?,
    };
    Ok(Some(Err(outcome)))
}

fn refusal(reason: &str) -> Result<Refusal, DecodeError> {
    Ok(match reason {
        "not_found" => Refusal::NotFound,
        "not_claimer" => Refusal::NotClaimer,
        "lease_lost" => Refusal::LeaseLost,
        "finished" => Refusal::Finished,
        _ => return Err(DecodeError::Reply("unknown refusal")),
    })
}

impl Reporter {
    /// The task in `fields`; one whose JSON does not decode is reported and answered without
    /// payload and result, one that does not decode at all is reported and left out.
    pub fn or_bare(
        &self,
        fields: &Fields,
        payload: Option<&Arc<serde_json::Value>>,
        done: &str,
    ) -> Option<Task> {
        let e = match task(fields, payload) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let bare = task_from_parts(fields, Arc::default(), None);
        let action = match bare {
            Ok(_) => format!("{done}, answered without payload"),
            Err(_) => format!("{done}, left out of the answer"),
        };
        self.task(&fields.id(), &e, &action);
        bare.ok()
    }
}
