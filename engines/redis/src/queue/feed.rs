//! The queue change feed on Redis: the script's notifications on `<prefix>:qfeed`
//! (`<origin>\n<queue>`, one per queue where tasks became claimable), received on a pub/sub
//! connection of its own. This daemon's own notifications are skipped; after the connection
//! comes back (reconnecting with backoff) the feed says `Missed`, as nothing tells what was
//! published meanwhile.

use futures::StreamExt;
use ikigai_actors::store::{Feed, QueueChange};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

/// Follows `channel` on its own connection from `client` until the feed is dropped.
pub fn follow(client: redis::Client, channel: String, origin: String) -> Feed<QueueChange> {
    let (changes, feed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(run(client, channel, origin, changes));
    feed
}

async fn run(
    client: redis::Client,
    channel: String,
    origin: String,
    changes: UnboundedSender<QueueChange>,
) {
    let mut failures: u32 = 0;
    loop {
        match subscribe(&client, &channel).await {
            Ok(pubsub) => {
                if failures > 0 && changes.send(QueueChange::Missed).is_err() {
                    return;
                }
                failures = 0;
                if !forward(pubsub, &origin, &changes).await {
                    return;
                }
                warn!(channel = %channel, "queue feed connection lost, reconnecting");
            }
            Err(e) => warn!(channel = %channel, error = %e, "queue feed cannot subscribe"),
        }
        failures = failures.saturating_add(1);
        let delay = Duration::from_millis(100 << failures.min(6));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = changes.closed() => return,
        }
    }
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Hands on the changes of each notification until the connection ends (`true`) or the feed
/// was dropped (`false`).
async fn forward(
    pubsub: redis::aio::PubSub,
    origin: &str,
    changes: &UnboundedSender<QueueChange>,
) -> bool {
    let mut messages = pubsub.into_on_message();
    loop {
        tokio::select! {
            message = messages.next() => match message {
                None => return true,
                Some(m) => {
                    let payload = String::from_utf8_lossy(m.get_payload_bytes());
                    if ikigai_actors::store::changes::queues(&payload, origin).into_iter().any(|c| changes.send(c).is_err()) {
                        return false;
                    }
                }
            },
            _ = changes.closed() => return false,
        }
    }
}
