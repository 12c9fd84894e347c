//! A task as one RabbitMQ message: its body is the task's stored fields as JSON (never msgpack,
//! which only `clients/protocol` encodes), and its properties carry the priority, the id and
//! persistence.

use crate::topology;
use chrono::{DateTime, Utc};
use ikigai_actors::task::{NewTask, Task};
use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// What a message of the engine's queues holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: Uuid,
    pub queue: String,
    pub payload: Arc<serde_json::Value>,
    pub priority: i32,
    pub scheduled_for: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub seq: i64,
    /// Claims that ended counted (a claim in progress is not in it yet).
    pub attempts: i32,
    pub max_attempts: i32,
    pub dedup_key: Option<String>,
    pub error: Option<String>,
    pub failed_at: Option<DateTime<Utc>>,
}

impl Record {
    pub fn new(task: NewTask, seq: i64, now: DateTime<Utc>) -> Record {
        Record {
            id: task.id,
            queue: task.queue,
            payload: task.payload,
            priority: task.priority,
            scheduled_for: task.run_at.unwrap_or(now).max(now),
            created_at: now,
            seq,
            attempts: 0,
            max_attempts: task.max_attempts,
            dedup_key: task.dedup_key,
            error: None,
            failed_at: None,
        }
    }

    pub fn decode(body: &[u8]) -> Result<Record, serde_json::Error> {
        serde_json::from_slice(body)
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record is plain JSON")
    }

    pub fn properties(&self) -> BasicProperties {
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_priority(topology::priority(self.priority))
            .with_content_type("application/json".into())
            .with_message_id(self.id.to_string().into())
    }

    /// The task as stored (unclaimed).
    pub fn task(&self) -> Task {
        Task {
            id: self.id,
            seq: self.seq,
            queue: self.queue.clone(),
            payload: self.payload.clone(),
            priority: self.priority,
            scheduled_for: self.scheduled_for,
            created_at: self.created_at,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            claimed_by: None,
            claimed_at: None,
            lease_until: None,
            completed_at: None,
            failed_at: self.failed_at,
            error: self.error.clone(),
            result: None,
            dedup_key: self.dedup_key.clone(),
        }
    }
}
