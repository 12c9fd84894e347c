//! Typed calls for the queue service.

use crate::{Client, ClientError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

/// A task as the daemon returns it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Task {
    pub id: String,
    pub seq: i64,
    pub queue: String,
    pub payload: Json,
    pub priority: i32,
    pub scheduled_for: String,
    pub created_at: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub claimed_by: Option<String>,
    pub lease_until: Option<String>,
    pub completed_at: Option<String>,
    pub failed_at: Option<String>,
    pub error: Option<String>,
    pub result: Option<Json>,
    pub dedup_key: Option<String>,
}

/// Arguments of `queue.claim`; unset fields take the daemon's defaults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClaimArgs<'a> {
    pub queue: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

#[derive(Deserialize)]
struct Tasks {
    tasks: Vec<Task>,
}

impl Client {
    /// Pushes a task with default options; returns its id once committed.
    pub async fn queue_push(&self, queue: &str, payload: &Json) -> Result<String, ClientError> {
        let reply: Json = self
            .call("queue.push", &json!({"queue": queue, "payload": payload}))
            .await?;
        Ok(reply["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Claims tasks (waiting up to `wait_ms` for the first).
    pub async fn queue_claim(&self, args: &ClaimArgs<'_>) -> Result<Vec<Task>, ClientError> {
        let tasks: Tasks = self.call("queue.claim", args).await?;
        Ok(tasks.tasks)
    }

    /// Completes a claimed task with an optional result.
    pub async fn queue_complete(
        &self,
        id: &str,
        result: Option<&Json>,
    ) -> Result<Task, ClientError> {
        self.call("queue.complete", &json!({"id": id, "result": result}))
            .await
    }

    /// Fails a claimed task: retried with backoff (or after `retry_in_ms`) until its attempts
    /// run out, then dead.
    pub async fn queue_fail(
        &self,
        id: &str,
        error: &str,
        retry_in_ms: Option<u64>,
    ) -> Result<Task, ClientError> {
        let args = json!({"id": id, "error": error, "retry_in_ms": retry_in_ms});
        self.call("queue.fail", &args).await
    }

    /// Gives a claimed task back untouched.
    pub async fn queue_release(&self, id: &str) -> Result<Task, ClientError> {
        self.call("queue.release", &json!({"id": id})).await
    }

    /// Renews the lease of a claimed task.
    pub async fn queue_extend(&self, id: &str, lease_ms: u64) -> Result<Json, ClientError> {
        self.call("queue.extend", &json!({"id": id, "lease_ms": lease_ms}))
            .await
    }
}
