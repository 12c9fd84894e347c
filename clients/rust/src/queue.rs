//! Typed calls for the queue service: `client.queue(name).push/push_many/claim/stats/list`, and
//! the settlements of a claimed task, `client.task(id).complete/fail/extend/release`.

use crate::{Client, ClientError};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

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

/// A task to push: its payload and options (unset ones take the daemon's defaults).
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewTask {
    pub payload: Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// RFC 3339; not together with `delay_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
}

impl NewTask {
    /// A task with this payload and default options.
    pub fn new(payload: Json) -> NewTask {
        NewTask {
            payload,
            ..NewTask::default()
        }
    }
}

/// The answer to a push: the task's id, and whether it was stored (false: an open task with
/// the same `dedup_key` exists, and this is its id).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pushed {
    pub id: String,
    pub created: bool,
}

/// `queue.stats`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueueStats {
    pub queue: String,
    pub pending: u64,
    pub scheduled: u64,
    pub claimed: u64,
    pub completed: u64,
    pub dead: u64,
    pub ready_in_memory: u64,
    pub waiting: u64,
}

/// Which tasks `queue.list` returns; unset fields take the daemon's defaults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListTasks<'a> {
    /// `pending`, `scheduled`, `claimed`, `completed` or `dead`.
    pub state: Option<&'a str>,
    /// The previous page's `next`.
    pub after: Option<i64>,
    pub limit: Option<u32>,
}

/// A page of `queue.list`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub next: Option<i64>,
}

/// One queue, as `client.queue(name)` or, inside a transaction, `tx.queue(name)` gives it:
/// pushes and claims then run inside that transaction; `stats` and `list` never do.
#[derive(Clone, Copy)]
pub struct Queue<'a> {
    pub(crate) client: &'a Client,
    pub(crate) name: &'a str,
    pub(crate) tx: Option<&'a str>,
}

/// A claimed task, as `client.task(id)` or `tx.task(id)` gives it, to settle.
#[derive(Clone, Copy)]
pub struct TaskRef<'a> {
    pub(crate) client: &'a Client,
    pub(crate) id: &'a str,
    pub(crate) tx: Option<&'a str>,
}

#[derive(Deserialize)]
struct Tasks {
    tasks: Vec<Task>,
}

impl Queue<'_> {
    /// Pushes a task with default options; returns once it is committed.
    pub async fn push(&self, payload: &Json) -> Result<Pushed, ClientError> {
        self.push_task(&NewTask::new(payload.clone())).await
    }

    /// Pushes a task with its options.
    pub async fn push_task(&self, task: &NewTask) -> Result<Pushed, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            queue: &'a str,
            #[serde(flatten)]
            task: &'a NewTask,
            tx: Option<&'a str>,
        }
        let args = Args {
            queue: self.name,
            task,
            tx: self.tx,
        };
        self.client.call("queue.push", &args).await
    }

    /// Pushes several tasks in one transaction; one answer per task, in order.
    pub async fn push_many(&self, tasks: &[NewTask]) -> Result<Vec<Pushed>, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            queue: &'a str,
            tasks: &'a [NewTask],
            tx: Option<&'a str>,
        }
        #[derive(Deserialize)]
        struct Answers {
            tasks: Vec<Pushed>,
        }
        let args = Args {
            queue: self.name,
            tasks,
            tx: self.tx,
        };
        let answers: Answers = self.client.call("queue.push_many", &args).await?;
        Ok(answers.tasks)
    }

    /// Claims up to `max` tasks (default 1), waiting up to `wait_ms` for the first (never
    /// inside a transaction), each leased for `lease_ms`.
    pub async fn claim(
        &self,
        max: Option<u32>,
        wait_ms: Option<u64>,
        lease_ms: Option<u64>,
    ) -> Result<Vec<Task>, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            #[serde(flatten)]
            claim: ClaimArgs<'a>,
            tx: Option<&'a str>,
        }
        let claim = ClaimArgs {
            queue: self.name,
            max,
            wait_ms,
            lease_ms,
        };
        let args = Args { claim, tx: self.tx };
        let tasks: Tasks = self.client.call("queue.claim", &args).await?;
        Ok(tasks.tasks)
    }

    /// Claims one task if one is claimable now.
    pub async fn claim_one(&self) -> Result<Option<Task>, ClientError> {
        Ok(self.claim(None, None, None).await?.pop())
    }

    /// The queue's counters.
    pub async fn stats(&self) -> Result<QueueStats, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            queue: &'a str,
        }
        self.client
            .call("queue.stats", &Args { queue: self.name })
            .await
    }

    /// A page of the queue's tasks in insertion order.
    pub async fn list(&self, which: &ListTasks<'_>) -> Result<TaskPage, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            queue: &'a str,
            #[serde(flatten)]
            which: &'a ListTasks<'a>,
        }
        let args = Args {
            queue: self.name,
            which,
        };
        self.client.call("queue.list", &args).await
    }
}

#[derive(Serialize)]
struct Settle<'a, T: Serialize> {
    id: &'a str,
    #[serde(flatten)]
    more: T,
    tx: Option<&'a str>,
}

impl TaskRef<'_> {
    async fn settle<T: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        op: &str,
        more: T,
    ) -> Result<R, ClientError> {
        let args = Settle {
            id: self.id,
            more,
            tx: self.tx,
        };
        self.client.call(op, &args).await
    }

    /// Completes the task with an optional result.
    pub async fn complete(&self, result: Option<&Json>) -> Result<Task, ClientError> {
        #[derive(Serialize)]
        struct More<'a> {
            result: Option<&'a Json>,
        }
        self.settle("queue.complete", More { result }).await
    }

    /// Fails the task: retried with backoff (or after `retry_in_ms`) until its attempts run
    /// out, then dead.
    pub async fn fail(&self, error: &str, retry_in_ms: Option<u64>) -> Result<Task, ClientError> {
        #[derive(Serialize)]
        struct More<'a> {
            error: &'a str,
            retry_in_ms: Option<u64>,
        }
        self.settle("queue.fail", More { error, retry_in_ms }).await
    }

    /// Gives the task back untouched (the attempt does not count).
    pub async fn release(&self) -> Result<Task, ClientError> {
        #[derive(Serialize)]
        struct More {}
        self.settle("queue.release", More {}).await
    }

    /// Moves the lease to end `lease_ms` from now; returns the new `lease_until`.
    pub async fn extend(&self, lease_ms: u64) -> Result<String, ClientError> {
        #[derive(Serialize)]
        struct More {
            lease_ms: u64,
        }
        #[derive(Deserialize)]
        struct Extended {
            lease_until: String,
        }
        let extended: Extended = self.settle("queue.extend", More { lease_ms }).await?;
        Ok(extended.lease_until)
    }
}

impl Client {
    /// The queue `name`.
    pub fn queue<'a>(&'a self, name: &'a str) -> Queue<'a> {
        Queue {
            client: self,
            name,
            tx: None,
        }
    }

    /// The claimed task `id`, to settle.
    pub fn task<'a>(&'a self, id: &'a str) -> TaskRef<'a> {
        TaskRef {
            client: self,
            id,
            tx: None,
        }
    }
}
