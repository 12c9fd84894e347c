//! The mailbox change feed on core NATS: notifications on `<prefix>.mbfeed` in the text of
//! `ikigai_actors::store::changes`, except that a `sent` line may carry the message's stream
//! sequence after its id (`<id> <seq>`), which the daemon serving the mailbox keeps, so that
//! loading those ids reads them by sequence. The connection reconnects by itself; after it
//! did, the feed reports [`MailboxChange::Missed`] (what was published meanwhile is lost).

use super::{Local, NatsMailboxes};
use async_nats::Client;
use futures::StreamExt;
use ikigai_actors::store::{changes, Feed, MailboxBatch, MailboxChange};
use ikigai_actors::supervise::retry_delay;
use ikigai_actors::StoredMessage;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::warn;
use uuid::Uuid;

type Changes = mpsc::UnboundedSender<MailboxChange>;

/// How long a lease held here must still run for its mailbox's writes to go unannounced.
const SPARE: Duration = Duration::from_secs(1);

impl NatsMailboxes {
    /// The change feed, followed by a task of the current runtime until its receiver is gone.
    pub fn feed(&self) -> Feed<MailboxChange> {
        let (changes, feed) = mpsc::unbounded_channel();
        let follow = follow(
            self.client.clone(),
            self.feed_subject.clone(),
            self.local.clone(),
            self.reconnects.clone(),
            changes,
        );
        tokio::spawn(follow);
        feed
    }

    /// Publishes a notification (at most once, as every notification).
    pub(super) async fn announce(&self, text: String) {
        let sent = self
            .client
            .publish(self.feed_subject.clone(), text.into())
            .await;
        if let Err(e) = sent {
            warn!(error = %e, "a mailbox notification was not published");
        }
    }

    /// Announces the sends of mailboxes this daemon does not serve, with their sequences.
    pub(super) async fn announce_sent(&self, sent: &[StoredMessage]) {
        let mut by: BTreeMap<&str, String> = BTreeMap::new();
        for m in sent
            .iter()
            .filter(|m| !self.local.serving(&m.mailbox, SPARE))
        {
            let text = by
                .entry(&m.mailbox)
                .or_insert_with(|| format!("sent\n{}", m.mailbox));
            text.push_str(&format!("\n{} {}", m.id, m.seq));
        }
        for (_, text) in by {
            self.announce(text).await;
        }
    }

    /// Announces the acks of mailboxes this daemon does not serve.
    pub(super) async fn announce_acked(&self, batch: &MailboxBatch, acked: &HashSet<Uuid>) {
        let mut by: BTreeMap<&str, String> = BTreeMap::new();
        let done = batch.acks.iter().filter(|a| acked.contains(&a.id));
        for a in done.filter(|a| !self.local.serving(&a.mailbox, SPARE)) {
            let text = by
                .entry(&a.mailbox)
                .or_insert_with(|| format!("acked\n{}", a.mailbox));
            text.push_str(&format!("\n{}", a.id));
        }
        for (_, text) in by {
            self.announce(text).await;
        }
    }
}

/// Follows `subject` until the receiver of `changes` is gone.
async fn follow(
    client: Client,
    subject: String,
    local: Arc<Local>,
    mut reconnects: watch::Receiver<u64>,
    changes: Changes,
) {
    let mut failures = 0;
    let mut subscriber = loop {
        match client.subscribe(subject.clone()).await {
            Ok(subscriber) => break subscriber,
            Err(e) => {
                failures += 1;
                warn!(subject, error = %e, "mailbox feed subscription failed");
                tokio::time::sleep(retry_delay(failures)).await;
            }
        }
    };
    reconnects.borrow_and_update();
    loop {
        let change = tokio::select! {
            () = changes.closed() => return,
            Ok(()) = reconnects.changed() => Some(MailboxChange::Missed),
            message = subscriber.next() => match message {
                Some(message) => change(&local, &message.payload),
                None => return,
            },
        };
        if let Some(change) = change {
            if changes.send(change).is_err() {
                return;
            }
        }
    }
}

/// A notification as a change; the sequences of a `sent` one are kept when this daemon serves
/// the mailbox.
fn change(local: &Local, payload: &[u8]) -> Option<MailboxChange> {
    let Ok(text) = std::str::from_utf8(payload) else {
        warn!("mailbox notification is not UTF-8");
        return None;
    };
    let mut lines = text.lines();
    let (kind, mailbox) = (lines.next()?, lines.next()?);
    let mut plain = format!("{kind}\n{mailbox}");
    let mut seqs = Vec::new();
    for line in lines {
        let (id, seq) = line.split_once(' ').unwrap_or((line, ""));
        plain.push('\n');
        plain.push_str(id);
        if let (Ok(id), Ok(seq)) = (id.parse::<Uuid>(), seq.parse::<u64>()) {
            seqs.push((id, seq, false));
        }
    }
    if kind == "sent" && local.serving(mailbox, Duration::ZERO) {
        local.hold(mailbox, seqs);
    }
    changes::mailbox(&plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn notifications_become_changes_and_keep_sequences_when_served() {
        let local = Local::default();
        let id = Uuid::now_v7();
        let sent = format!("sent\nbox\n{id} 42");
        let expected = MailboxChange::Sent {
            mailbox: "box".into(),
            ids: Some(vec![id]),
        };
        assert_eq!(change(&local, sent.as_bytes()), Some(expected.clone()));
        assert!(
            local.held("box", &id).is_none(),
            "not served here: not kept"
        );
        local.set_lease("box", Some(Instant::now() + Duration::from_secs(30)));
        assert_eq!(change(&local, sent.as_bytes()), Some(expected));
        assert_eq!(local.held("box", &id).map(|h| h.seq), Some(42));
        let released = MailboxChange::Released {
            mailbox: "box".into(),
        };
        assert_eq!(change(&local, b"released\nbox"), Some(released));
        assert_eq!(change(&local, b"renamed\nbox"), None);
        assert_eq!(change(&local, b"\xff"), None);
    }
}
