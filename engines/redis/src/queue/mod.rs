//! The queue service on Redis: [`RedisQueues`] implements the seam's `QueueStore` and
//! `QueueJournal`, and gives the queue change feed. Every call is one Lua script (the `.lua`
//! files beside this one, one script, EVALSHA), so a group commits atomically in one round
//! trip and is acknowledged only once Redis applied it; the scripts take `now` from Redis TIME,
//! so daemons sharing a server agree on it.
//!
//! Keys (under `<prefix>:q:`): `task:<id>` a hash per task (the fields of `Task`, payload and
//! result as JSON text, times in ms, plus `state`, `lease_id` and `via`, the daemon that took
//! the claim); per queue `queue:<name>:` + `ready` (claimable due tasks, one score, members
//! ordered as the claim order, see `common.lua`), `due` (scheduled tasks by due time),
//! `pending`/`scheduled`/`claimed`/`completed`/`dead`/`all` (ids by seq: `list`, and `counts`
//! as their sizes), `dedup` (dedup key -> id of the open task); `leases` (open claims by
//! lease deadline), `queues` (queues with claimable tasks) and `seq`. Notifications go to
//! `<prefix>:qfeed` as `<origin>\n<queue>`.

mod args;
mod decode;
mod feed;
mod outcome;
mod prune;
mod store;
#[cfg(test)]
mod tests;

use super::store_error;
use async_trait::async_trait;
use ikigai_actors::store::{
    Feed, QueueBatch, QueueChange, QueueCommitted, QueueJournal, StoreError,
};
pub use prune::Kept;
use redis::aio::ConnectionManager;
use redis::{Script, Value};

/// The queue script: its parts in the order Lua needs their definitions.
const SCRIPT: &str = concat!(
    include_str!("common.lua"),
    include_str!("write.lua"),
    include_str!("read.lua"),
    include_str!("main.lua"),
);

/// The queue service's stores on one Redis server, under a key prefix.
pub struct RedisQueues {
    conn: ConnectionManager,
    client: redis::Client,
    prefix: String,
    origin: String,
    script: Script,
    report: Reporter,
}

impl RedisQueues {
    /// Stores on `conn` under keys starting with `prefix`; `client` opens the feed's own
    /// connection; `origin` is this daemon's id, recorded with its claims and notifications.
    pub fn new(
        conn: ConnectionManager,
        client: redis::Client,
        prefix: String,
        origin: String,
    ) -> Self {
        let report = Reporter {
            table: format!("{prefix}:q:task"),
        };
        RedisQueues {
            conn,
            client,
            prefix,
            origin,
            script: Script::new(SCRIPT),
            report,
        }
    }

    /// The changes other writers make: queues where tasks became claimable (this daemon's own
    /// notifications skipped), and `Missed` after the feed's connection came back.
    pub fn feed(&self) -> Feed<QueueChange> {
        feed::follow(
            self.client.clone(),
            format!("{}:qfeed", self.prefix),
            self.origin.clone(),
        )
    }

    /// Runs the script's operation `op` with `args`; `origin` names the writer in the
    /// notifications it sends.
    async fn run(&self, op: &str, origin: &str, args: &[&[u8]]) -> Result<Value, StoreError> {
        let mut call = self.script.prepare_invoke();
        call.arg(&self.prefix).arg(op).arg(origin);
        for arg in args {
            call.arg(*arg);
        }
        let mut conn = self.conn.clone();
        call.invoke_async(&mut conn).await.map_err(store_error)
    }

    /// A key of this store's, after `<prefix>:q:`.
    fn key(&self, rest: &str) -> String {
        format!("{}:q:{rest}", self.prefix)
    }
}

#[async_trait]
impl QueueJournal for RedisQueues {
    async fn commit(&self, batch: QueueBatch) -> Result<QueueCommitted, StoreError> {
        if batch.is_empty() {
            return Ok(QueueCommitted::default());
        }
        let arg = args::encode(&batch).map_err(|e| StoreError::Rejected(e.to_string()))?;
        let reply = self.run("commit", &self.origin, &[&arg]).await?;
        outcome::committed(&batch, &reply, &self.report).map_err(reply_error)
    }
}

/// Reports task hashes that do not decode, as the Postgres engine reports rows.
pub(crate) struct Reporter {
    /// Where the hashes live (`<prefix>:q:task`), in the report's `table`.
    table: String,
}

impl Reporter {
    fn task(&self, id: &str, error: &dyn std::fmt::Display, action: &str) {
        ikigai_actors::store::undecodable::report(&self.table, id, error, action);
    }
}

/// A reply the script does not produce: a bug, not a passing failure.
fn reply_error(e: decode::DecodeError) -> StoreError {
    StoreError::Rejected(e.to_string())
}
