//! Finished tasks leave Redis: the completed and dead tasks whose retention has passed
//! (`[queues] retain_completed_ms`, `retain_dead_ms`) are deleted, a batch per script call so
//! that Redis never runs one long script, queue by queue.

use super::decode::{array, int, nth};
use super::{reply_error, RedisQueues};
use crate::store_error;
use futures::StreamExt;
use ikigai_actors::store::StoreError;
use std::time::Duration;

/// Tasks one call looks at.
const BATCH: usize = 1000;

/// Keys one `SCAN` step looks at (Redis's default, 10, takes a round trip per 10 keys of the
/// whole keyspace).
const SCAN_COUNT: usize = 1000;

/// The finished states, each with how long its tasks stay.
pub struct Kept {
    pub completed: Option<Duration>,
    pub dead: Option<Duration>,
}

impl RedisQueues {
    /// Deletes the finished tasks whose retention has passed; returns how many. In each queue
    /// it goes through the state's tasks oldest push first and stops at a batch that had none
    /// to delete, so a pass costs what it deletes, not what is kept.
    pub async fn prune(&self, kept: &Kept) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let sets = self.finished_sets().await?;
        for (state, keep) in [("completed", kept.completed), ("dead", kept.dead)] {
            let Some(keep) = keep else { continue };
            let keep_ms = keep.as_millis().to_string();
            for (queue, _) in sets.iter().filter(|(_, s)| *s == state) {
                deleted += self.prune_queue(queue, state, &keep_ms).await?;
            }
        }
        Ok(deleted)
    }

    async fn prune_queue(
        &self,
        queue: &str,
        state: &str,
        keep_ms: &str,
    ) -> Result<u64, StoreError> {
        let limit = BATCH.to_string();
        let mut deleted = 0;
        loop {
            let args: [&[u8]; 4] = [
                queue.as_bytes(),
                state.as_bytes(),
                keep_ms.as_bytes(),
                limit.as_bytes(),
            ];
            let reply = self.run("prune", "", &args).await?;
            let (gone, looked) = pruned(&reply).map_err(reply_error)?;
            deleted += gone;
            if gone == 0 || looked < BATCH as u64 {
                return Ok(deleted);
            }
        }
    }

    /// The queues' sets of finished tasks, as (queue, state): from the keys
    /// `<prefix>:q:queue:<name>:completed` and `...:dead`, in one walk of the keyspace.
    async fn finished_sets(&self) -> Result<Vec<(String, &'static str)>, StoreError> {
        let start = self.key("queue:");
        let pattern = format!("{}*", crate::glob_escape(&start));
        let mut conn = self.conn.clone();
        let mut scan = redis::cmd("SCAN");
        scan.cursor_arg(0)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let keys: Vec<String> = scan
            .iter_async(&mut conn)
            .await
            .map_err(store_error)?
            .collect()
            .await;
        let set = |key: &String| {
            let rest = key.strip_prefix(&start)?;
            ["completed", "dead"].into_iter().find_map(|state| {
                let queue = rest.strip_suffix(state)?.strip_suffix(':')?;
                Some((queue.to_owned(), state))
            })
        };
        Ok(keys.iter().filter_map(set).collect())
    }
}

/// `{deleted, looked at}`.
fn pruned(reply: &redis::Value) -> Result<(u64, u64), super::decode::DecodeError> {
    let pair = array(reply)?;
    Ok((int(nth(pair, 0)?)? as u64, int(nth(pair, 1)?)? as u64))
}
