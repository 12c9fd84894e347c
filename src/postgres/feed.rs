//! The change feeds of mailboxes and queues on Postgres: the notifications `schema.sql`'s
//! triggers send (and a daemon giving up a mailbox), received through the LISTEN hub
//! ([`super::listen`]) and turned into the typed changes the actors follow.

use super::listen::{Event, Listener};
use ikigai_actors::store::changes;
use ikigai_actors::store::{Feed, MailboxChange, QueueChange};
use tokio::sync::mpsc;

/// The channel `schema.sql`'s mailbox trigger (and a daemon giving up a mailbox) notifies.
const MAILBOX_CHANNEL: &str = "ikigai_mailbox";

/// The channel `schema.sql`'s trigger notifies when tasks become claimable.
const TASK_CHANNEL: &str = "ikigai_task_queue";

/// Mailbox changes, in the text form of `ikigai_actors::store::changes`.
pub fn mailboxes(listener: &Listener) -> Feed<MailboxChange> {
    follow(listener.subscribe(MAILBOX_CHANNEL), |event| match event {
        Event::Resync => vec![MailboxChange::Missed],
        Event::Notify(payload) => changes::mailbox(&payload).into_iter().collect(),
    })
}

/// Queue changes, in the text form of `ikigai_actors::store::changes`; this daemon's own writes are already
/// known to its actors.
pub fn queues(listener: &Listener, origin: String) -> Feed<QueueChange> {
    follow(listener.subscribe(TASK_CHANNEL), move |event| match event {
        Event::Resync => vec![QueueChange::Missed],
        Event::Notify(payload) => changes::queues(&payload, &origin),
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
