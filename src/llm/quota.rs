//! Token quotas: the per-request limit, and the hourly limit by reservation. A call reserves its
//! worst case (the prompt's estimate plus `max_tokens`) in Postgres before any provider is
//! called; the interaction row that records the real usage deletes the reservation in the same
//! transaction (settle). Concurrent calls, of this daemon or another, therefore cannot overshoot
//! the hour, and a reservation whose daemon died expires.

use super::provider::ChatRequest;
use crate::manifest::LlmPermissions;
use crate::postgres;
use deadpool_postgres::Pool;
use ikigai_actors::store::StoreError;
use std::time::Duration;
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

/// Reserves `tokens` against the agent's hourly limit, if it has one.
pub async fn reserve(
    pool: &Pool,
    agent: &str,
    perms: &LlmPermissions,
    tokens: u64,
    ttl: Duration,
) -> Result<Reserved, StoreError> {
    match perms.max_tokens_per_hour {
        None => Ok(Reserved::Granted(None)),
        Some(limit) => postgres::llm::reserve(pool, agent, tokens, limit, ttl).await,
    }
}
