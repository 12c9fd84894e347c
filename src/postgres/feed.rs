//! The change feeds of mailboxes and queues on Postgres: the notifications `schema.sql`'s
//! triggers send (and a daemon giving up a mailbox), received through the LISTEN hub
//! ([`super::listen`]) and turned into the typed changes the actors follow.

use super::listen::{Event, Listener};
use ikigai_actors::store::{Feed, MailboxChange, QueueChange};
use tokio::sync::mpsc;
use tracing::warn;
use uuid::Uuid;

/// The channel `schema.sql`'s mailbox trigger (and a daemon giving up a mailbox) notifies.
const MAILBOX_CHANNEL: &str = "ikigai_mailbox";

/// The channel `schema.sql`'s trigger notifies when tasks become claimable.
const TASK_CHANNEL: &str = "ikigai_task_queue";

/// Mailbox changes: `sent`, `acked` or `released`, the mailbox, then the ids, one per line.
pub fn mailboxes(listener: &Listener) -> Feed<MailboxChange> {
    follow(listener.subscribe(MAILBOX_CHANNEL), |event| match event {
        Event::Resync => vec![MailboxChange::Missed],
        Event::Notify(payload) => mailbox_change(&payload).into_iter().collect(),
    })
}

/// Queue changes: the writer's daemon, then the queues (`*`: all), one per line; this daemon's
/// own writes are already known to its actors.
pub fn queues(listener: &Listener, origin: String) -> Feed<QueueChange> {
    follow(listener.subscribe(TASK_CHANNEL), move |event| match event {
        Event::Resync => vec![QueueChange::Missed],
        Event::Notify(payload) => queue_changes(&payload, &origin),
    })
}

/// Forwards each event's changes until either side goes away.
fn follow<C: 'static>(
    mut events: mpsc::UnboundedReceiver<Event>,
    parse: impl Fn(Event) -> Vec<C> + 'static,
) -> Feed<C> {
    let (changes, feed) = mpsc::unbounded_channel();
    tokio::task::spawn_local(async move {
        while let Some(event) = events.recv().await {
            if parse(event).into_iter().any(|c| changes.send(c).is_err()) {
                return;
            }
        }
    });
    feed
}

fn mailbox_change(payload: &str) -> Option<MailboxChange> {
    let mut lines = payload.lines();
    let (kind, mailbox) = (lines.next(), lines.next().map(str::to_owned));
    let ids: Option<Vec<Uuid>> = lines.map(|l| l.parse().ok()).collect();
    let change = match (kind, mailbox, ids) {
        (Some("released"), Some(mailbox), _) => MailboxChange::Released { mailbox },
        (Some("sent"), Some(mailbox), ids) => MailboxChange::Sent { mailbox, ids },
        (Some("acked"), Some(mailbox), Some(ids)) => MailboxChange::Acked { mailbox, ids },
        _ => {
            warn!(payload, "unexpected mailbox notification");
            return None;
        }
    };
    Some(change)
}

fn queue_changes(payload: &str, origin: &str) -> Vec<QueueChange> {
    let mut lines = payload.lines();
    if lines.next() == Some(origin) {
        return Vec::new();
    }
    lines
        .map(|queue| match queue {
            "*" => QueueChange::Missed,
            name => QueueChange::Changed(name.to_owned()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_notifications_become_changes() {
        let id = Uuid::now_v7();
        assert_eq!(
            mailbox_change(&format!("sent\nbox\n{id}")),
            Some(MailboxChange::Sent {
                mailbox: "box".into(),
                ids: Some(vec![id])
            })
        );
        assert_eq!(
            mailbox_change("sent\nbox\nnot-a-uuid"),
            Some(MailboxChange::Sent {
                mailbox: "box".into(),
                ids: None
            })
        );
        assert_eq!(
            mailbox_change("released\nbox"),
            Some(MailboxChange::Released {
                mailbox: "box".into()
            })
        );
        assert_eq!(mailbox_change("acked\nbox\nnot-a-uuid"), None);
        assert_eq!(mailbox_change("renamed\nbox"), None);
    }

    #[test]
    fn queue_notifications_skip_this_daemons_own() {
        assert_eq!(queue_changes("me\njobs", "me"), vec![]);
        assert_eq!(
            queue_changes("other\njobs\n*", "me"),
            vec![QueueChange::Changed("jobs".into()), QueueChange::Missed]
        );
    }
}
