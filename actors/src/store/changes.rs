//! The text form of the change notifications the engines send (Postgres `NOTIFY` from
//! `schema.sql`'s triggers, Redis `PUBLISH` from the engine's scripts), which other daemons read
//! back into the seam's typed changes.

use super::{MailboxChange, QueueChange};
use tracing::warn;
use uuid::Uuid;

/// A mailbox notification: `sent`, `acked` or `released`, the mailbox, then the ids, one per
/// line; `None` (with a warning) for anything else.
pub fn mailbox(payload: &str) -> Option<MailboxChange> {
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

/// A queue notification: the writer's daemon, then the queues (`*`: all), one per line; nothing
/// when `origin` (this daemon) wrote it.
pub fn queues(payload: &str, origin: &str) -> Vec<QueueChange> {
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
            mailbox(&format!("sent\nbox\n{id}")),
            Some(MailboxChange::Sent {
                mailbox: "box".into(),
                ids: Some(vec![id])
            })
        );
        assert_eq!(
            mailbox("sent\nbox\nnot-a-uuid"),
            Some(MailboxChange::Sent {
                mailbox: "box".into(),
                ids: None
            })
        );
        assert_eq!(
            mailbox("released\nbox"),
            Some(MailboxChange::Released {
                mailbox: "box".into()
            })
        );
        assert_eq!(mailbox("acked\nbox\nnot-a-uuid"), None);
        assert_eq!(mailbox("renamed\nbox"), None);
    }

    #[test]
    fn queue_notifications_skip_this_daemons_own() {
        assert_eq!(queues("me\njobs", "me"), vec![]);
        assert_eq!(
            queues("other\njobs\n*", "me"),
            vec![QueueChange::Changed("jobs".into()), QueueChange::Missed]
        );
    }
}
