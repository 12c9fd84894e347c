//! The reads of the queue service on Redis ([`QueueStore`]), and the releases of claims.

use super::decode::{array, bytes, int, millis, nth, task, DecodeError, Fields};
use super::{reply_error, RedisQueues};
use crate::store_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ikigai_actors::store::{QueueCounts, QueueStore, StoreError, TaskState};
use ikigai_actors::task::Rank;
use ikigai_actors::Task;
use redis::{AsyncCommands, Value};
use std::cmp::Reverse;
use std::time::Duration;
use uuid::Uuid;

/// The start of the ready-set members ranked `rank` (see `member` in `common.lua`).
fn rank_prefix(rank: &Rank) -> String {
    let Rank(Reverse(priority), created_at, seq) = rank;
    let priority = i64::from(i32::MAX) - i64::from(*priority);
    format!(
        "{priority:010}{:015}{seq:016}",
        created_at.timestamp_millis().max(0)
    )
}

/// A page of claimable tasks that decoded, and the members of those that did not, with why.
type Claimable = (Vec<Task>, Vec<(Vec<u8>, String, DecodeError)>);

fn claimable(reply: &Value) -> Result<Claimable, DecodeError> {
    let (mut tasks, mut bad) = (Vec::new(), Vec::new());
    for item in array(reply)? {
        let pair = array(item)?;
        let member = bytes(nth(pair, 0)?)?;
        let fields = Fields::new(nth(pair, 1)?)?;
        match task(&fields, None) {
            Ok(t) => tasks.push(t),
            Err(e) => {
                let id = String::from_utf8_lossy(member.get(41..).unwrap_or_default());
                bad.push((member.to_vec(), id.into_owned(), e));
            }
        }
    }
    Ok((tasks, bad))
}

/// Distinct queue names, sorted.
fn names(reply: &Value) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = array(reply)
        .and_then(|items| items.iter().map(text_owned).collect())
        .map_err(|e| StoreError::Undecodable(e.to_string()))?;
    names.sort();
    names.dedup();
    Ok(names)
}

fn text_owned(v: &Value) -> Result<String, DecodeError> {
    String::from_utf8(bytes(v)?.to_vec()).map_err(|_| DecodeError::NotText("queue"))
}

impl RedisQueues {
    /// Dead-letters the claimable tasks of `queue` that did not decode; how many it buried.
    async fn bury(
        &self,
        queue: &str,
        bad: &[(Vec<u8>, String, DecodeError)],
    ) -> Result<i64, StoreError> {
        let errors: Vec<String> = bad
            .iter()
            .map(|(_, id, e)| {
                self.report.task(id, e, "dead-lettered");
                format!("the stored task does not decode: {e}")
            })
            .collect();
        let mut args: Vec<&[u8]> = vec![queue.as_bytes()];
        for ((member, _, _), error) in bad.iter().zip(&errors) {
            args.push(member);
            args.push(error.as_bytes());
        }
        int(&self.run("bury", "", &args).await?).map_err(reply_error)
    }

    /// A release (`op` with `arg`): the queues it touched; tasks it could not read are
    /// reported and leave the set of leases.
    async fn release(&self, op: &str, arg: &str) -> Result<Vec<String>, StoreError> {
        let reply = self.run(op, "", &[arg.as_bytes()]).await?;
        let parts = array(&reply).map_err(reply_error)?;
        let corrupt = nth(parts, 1).and_then(array).map_err(reply_error)?;
        for id in corrupt {
            let id = String::from_utf8_lossy(bytes(id).unwrap_or_default());
            let e = DecodeError::Invalid("task", "claimed task");
            self.report.task(&id, &e, "left out of the lease sweep");
        }
        names(nth(parts, 0).map_err(reply_error)?)
    }
}

#[async_trait]
impl QueueStore for RedisQueues {
    async fn load_claimable(
        &self,
        queue: &str,
        after: Option<Rank>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let after = after.as_ref().map(rank_prefix).unwrap_or_default();
        let limit = limit.to_string();
        let args: [&[u8]; 3] = [queue.as_bytes(), after.as_bytes(), limit.as_bytes()];
        // Tasks that do not decode are buried, so the next run no longer returns them and a
        // page stays full; nothing buried means another writer moved them, and they are gone.
        loop {
            let reply = self.run("load", "", &args).await?;
            let (tasks, bad) = claimable(&reply).map_err(reply_error)?;
            if bad.is_empty() || self.bury(queue, &bad).await? == 0 {
                return Ok(tasks);
            }
        }
    }

    async fn next_due(&self, queue: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.run("next_due", "", &[queue.as_bytes()]).await? {
            Value::Nil => Ok(None),
            due => {
                let ms = int(&due).map_err(reply_error)?;
                Ok(Some(millis(ms).ok_or_else(|| {
                    reply_error(DecodeError::Reply("bad time"))
                })?))
            }
        }
    }

    async fn queues_with_work(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let reply: Value = conn
            .smembers(self.key("queues"))
            .await
            .map_err(store_error)?;
        names(&reply)
    }

    async fn release_claims_of(&self, origin: &str) -> Result<Vec<String>, StoreError> {
        self.release("release_of", origin).await
    }

    async fn release_expired(&self, grace: Duration) -> Result<Vec<String>, StoreError> {
        let grace = super::args::millis(grace).map_err(|e| StoreError::Rejected(e.to_string()))?;
        self.release("release_expired", &grace.to_string()).await
    }

    async fn queue_of(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("task:{id}"));
        let queue: Option<Vec<u8>> = conn.hget(key, "queue").await.map_err(store_error)?;
        queue
            .map(|q| String::from_utf8(q).map_err(|e| StoreError::Undecodable(e.to_string())))
            .transpose()
    }

    async fn counts(&self, queue: &str) -> Result<QueueCounts, StoreError> {
        let reply = self.run("counts", "", &[queue.as_bytes()]).await?;
        let n = array(&reply).map_err(reply_error)?;
        let count = |i| -> Result<u64, StoreError> {
            let n = nth(n, i).and_then(int).map_err(reply_error)?;
            Ok(n.unsigned_abs())
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
        let index = state.map_or("all", TaskState::name);
        // Tasks that do not decode are skipped; the page is filled from the tasks after them.
        let (mut tasks, mut after) = (Vec::with_capacity(limit), after);
        while tasks.len() < limit {
            let want = limit - tasks.len();
            let (page, last) = self.list_page(queue, index, after, want).await?;
            tasks.extend(page);
            match last {
                Some((seq, n)) if n == want => after = seq,
                _ => break,
            }
        }
        Ok(tasks)
    }
}

impl RedisQueues {
    /// Up to `want` tasks of `queue`'s `index` after seq `after`: those that decode, and the
    /// last seq read with how many were read.
    async fn list_page(
        &self,
        queue: &str,
        index: &str,
        after: i64,
        want: usize,
    ) -> Result<(Vec<Task>, Option<(i64, usize)>), StoreError> {
        let (after, want_arg) = (after.to_string(), want.to_string());
        let args: [&[u8]; 4] = [
            queue.as_bytes(),
            index.as_bytes(),
            after.as_bytes(),
            want_arg.as_bytes(),
        ];
        let reply = self.run("list", "", &args).await?;
        let items = array(&reply).map_err(reply_error)?;
        let mut tasks = Vec::with_capacity(items.len());
        let mut last = None;
        for item in items {
            let pair = array(item).map_err(reply_error)?;
            last = Some(nth(pair, 0).and_then(int).map_err(reply_error)?);
            let fields = Fields::new(nth(pair, 1).map_err(reply_error)?).map_err(reply_error)?;
            match task(&fields, None) {
                Ok(t) => tasks.push(t),
                Err(e) => self.report.task(&fields.id(), &e, "skipped"),
            }
        }
        Ok((tasks, last.map(|seq| (seq, items.len()))))
    }
}
