//! Token quotas: the per-request limit, and the hourly limit by reservation. A call reserves its
//! worst case (the prompt's estimate plus `max_tokens`) in Postgres before any provider is
//! called; the interaction row that records the real usage deletes the reservation in the same
//! transaction (settle). Concurrent calls, of this daemon or another, therefore cannot overshoot
//! the hour, and a reservation whose daemon died expires.
//!
//! The calls of one agent that arrive while its reservation statement runs wait and are reserved
//! together by the next statement, so one agent costs at most one statement in flight per
//! daemon however many calls it makes.

use super::provider::{ChatRequest, ChatResponse, Usage};
use crate::postgres;
use deadpool_postgres::Pool;
use ikigai_actors::store::StoreError;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::warn;
use uuid::Uuid;

/// The outcome of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// The call may go ahead; settle the reservation (none without an hourly limit).
    Granted(Option<Uuid>),
    /// The hour's limit would be exceeded: `used` recorded, `held` reserved by calls in flight.
    Refused {
        used: u64,
        held: u64,
        retry_after_ms: u64,
    },
}

/// A generous estimate of a request's prompt tokens: one per three bytes of its JSON.
pub fn estimate(req: &ChatRequest) -> u64 {
    let bytes = serde_json::to_vec(&req.messages).map_or(0, |v| v.len())
        + serde_json::to_vec(&req.tools).map_or(0, |v| v.len());
    (bytes as u64).div_ceil(3)
}

/// Usage for an answer that reported none (an OpenAI-compatible server that ignores
/// `stream_options.include_usage`, say): estimated, so that the quota and the cost still count
/// the call.
pub fn estimate_usage(req: &ChatRequest, response: &ChatResponse) -> Usage {
    let calls = match response.tool_calls.is_empty() {
        true => 0,
        false => serde_json::to_vec(&response.tool_calls).map_or(0, |v| v.len()),
    };
    let answer = response.content.len() + calls;
    warn!(model = %req.model, "the provider reported no usage; counting an estimate");
    Usage {
        input_tokens: estimate(req),
        output_tokens: (answer as u64).div_ceil(3),
        ..Usage::default()
    }
}

type Answer = oneshot::Sender<Result<Reserved, StoreError>>;

/// A call waiting for its reservation.
struct Waiting {
    tokens: u64,
    limit: u64,
    answer: Answer,
}

/// Reservations in flight and waiting, per agent.
#[derive(Clone)]
pub struct Quotas {
    pool: Pool,
    ttl: Duration,
    /// Agents with a reservation statement running, and the calls waiting behind it.
    waiting: Rc<RefCell<HashMap<String, Vec<Waiting>>>>,
}

impl Quotas {
    pub fn new(pool: Pool, ttl: Duration) -> Quotas {
        Quotas {
            pool,
            ttl,
            waiting: Rc::default(),
        }
    }

    /// Reserves `tokens` against `agent`'s hourly `limit`, if it has one.
    pub async fn reserve(
        &self,
        agent: &str,
        tokens: u64,
        limit: Option<u64>,
    ) -> Result<Reserved, StoreError> {
        let Some(limit) = limit else {
            return Ok(Reserved::Granted(None));
        };
        let (answer, rx) = oneshot::channel();
        let call = Waiting {
            tokens,
            limit,
            answer,
        };
        let idle = {
            let mut waiting = self.waiting.borrow_mut();
            let idle = !waiting.contains_key(agent);
            waiting.entry(agent.to_owned()).or_default().push(call);
            idle
        };
        if idle {
            tokio::task::spawn_local(self.clone().drain(agent.to_owned()));
        }
        rx.await
            .map_err(|_| StoreError::Unavailable("the quota writer stopped".into()))?
    }

    /// Reserves the agent's waiting calls, batch after batch, until none is left.
    async fn drain(self, agent: String) {
        loop {
            let batch = {
                let mut waiting = self.waiting.borrow_mut();
                let batch = waiting
                    .get_mut(&agent)
                    .map(std::mem::take)
                    .unwrap_or_default();
                if batch.is_empty() {
                    waiting.remove(&agent);
                    return;
                }
                batch
            };
            self.reserve_batch(&agent, batch).await;
        }
    }

    /// One statement for a batch (the strictest limit applies: it is the same manifest, read
    /// at most a second apart).
    async fn reserve_batch(&self, agent: &str, batch: Vec<Waiting>) {
        let tokens: Vec<u64> = batch.iter().map(|w| w.tokens).collect();
        let limit = batch.iter().map(|w| w.limit).min().unwrap_or(0);
        let result = postgres::llm::reserve(&self.pool, agent, &tokens, limit, self.ttl).await;
        match result {
            Ok(outcomes) if outcomes.len() == batch.len() => {
                for (w, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = w.answer.send(Ok(outcome));
                }
            }
            Ok(_) => answer_all(
                batch,
                StoreError::Rejected("reservation count mismatch".into()),
            ),
            Err(e) => answer_all(batch, e),
        }
    }
}

fn answer_all(batch: Vec<Waiting>, e: StoreError) {
    for w in batch {
        let _ = w.answer.send(Err(e.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::provider::{Message, Role};

    #[test]
    fn an_answer_without_usage_is_counted_by_estimate() {
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![Message {
                role: Role::User,
                content: "x".repeat(300),
                tool_calls: Vec::new(),
                tool_call_id: None,
                is_error: false,
            }],
            tools: Vec::new(),
            max_tokens: 10,
            temperature: None,
        };
        let answer = ChatResponse {
            content: "y".repeat(30),
            ..ChatResponse::default()
        };
        let usage = estimate_usage(&req, &answer);
        assert!(usage.input_tokens >= 100, "{usage:?}");
        assert_eq!(usage.output_tokens, 10);
    }
}
