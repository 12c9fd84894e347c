//! The directory of mailbox actors: one supervised actor per mailbox, started on first use.

use super::actor::{Appended, ForeignSent, Forget, Mailbox, MailboxConfig, Release, Released};
use super::MailboxError;
use crate::directory::Directory;
use crate::message::{NewMessage, StoredMessage};
use crate::persist::{Outcome, Persist, Persister, Write};
use crate::store::{Feed, MailboxChange, MailboxStore, StoreError};
use crate::telemetry::Telemetry;
use actix::Addr;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Starts and finds mailbox actors. Lives on the daemon's actor thread (cheap to clone).
#[derive(Clone)]
pub struct Mailboxes {
    inner: Rc<Inner>,
}

struct Inner {
    actors: Directory<Mailbox>,
    persister: Addr<Persister>,
}

impl Mailboxes {
    pub fn new(
        store: Arc<dyn MailboxStore>,
        persister: Addr<Persister>,
        config: MailboxConfig,
        telemetry: Telemetry,
    ) -> Self {
        let make = {
            let persister = persister.clone();
            move |name, leave| {
                let mailbox = Mailbox::new(
                    name,
                    store.clone(),
                    persister.clone(),
                    config.clone(),
                    leave,
                );
                mailbox.with_telemetry(telemetry.clone())
            }
        };
        Mailboxes {
            inner: Rc::new(Inner {
                actors: Directory::new(make),
                persister,
            }),
        }
    }

    /// The actor of `name`, started (and loading from storage) if it was not running.
    pub fn get(&self, name: &str) -> Addr<Mailbox> {
        self.inner.actors.get(name)
    }

    /// The actor of `name` if it is running.
    pub fn running(&self, name: &str) -> Option<Addr<Mailbox>> {
        self.inner.actors.running(name)
    }

    /// How many mailbox actors are running.
    pub fn count(&self) -> usize {
        self.inner.actors.count()
    }

    /// Every running mailbox actor.
    pub fn all(&self) -> Vec<(String, Addr<Mailbox>)> {
        self.inner.actors.all()
    }

    /// Another daemon committed messages for `name` (`None`: re-read the mailbox).
    pub fn foreign(&self, name: &str, ids: Option<Vec<Uuid>>) {
        if let Some(addr) = self.running(name) {
            addr.do_send(ForeignSent(ids));
        }
    }

    /// Applies the changes other writers made, as the mailbox feed reports them, until the
    /// feed ends: messages committed for a mailbox served here reach it, acks made elsewhere
    /// are forgotten, and receivers waiting here take a mailbox another daemon gave up.
    pub async fn follow(self, mut feed: Feed<MailboxChange>) {
        while let Some(change) = feed.recv().await {
            match change {
                MailboxChange::Sent { mailbox, ids } => self.foreign(&mailbox, ids),
                MailboxChange::Acked { mailbox, ids } => self.forget(&mailbox, ids),
                MailboxChange::Released { mailbox } => self.released(&mailbox),
                MailboxChange::Missed => self.resync(),
            }
        }
    }

    /// The daemon that served `name` let it go.
    pub fn released(&self, name: &str) {
        if let Some(addr) = self.running(name) {
            addr.do_send(Released);
        }
    }

    /// Notifications may have been missed: every mailbox served here re-reads its messages.
    pub fn resync(&self) {
        self.all()
            .iter()
            .for_each(|(_, a)| a.do_send(ForeignSent(None)));
    }

    /// Gives up every lease held here (daemon shutdown), so other daemons may serve at once.
    pub async fn release_all(&self) {
        let waits = self.all().into_iter().map(|(_, addr)| {
            let (tx, rx) = oneshot::channel();
            addr.do_send(Release(tx));
            rx
        });
        futures::future::join_all(waits).await;
    }

    /// Hands a message committed elsewhere (inside a transaction) to its mailbox.
    pub fn committed(&self, msg: StoredMessage) {
        self.get(&msg.mailbox).do_send(Appended(msg));
    }

    /// Tells a mailbox that `ids` were acknowledged elsewhere (inside a transaction).
    pub fn forget(&self, mailbox: &str, ids: Vec<Uuid>) {
        if let Some(addr) = self.running(mailbox) {
            addr.do_send(Forget(ids));
        }
    }

    /// Commits `msg` and hands it to its mailbox; resolves after the commit.
    pub fn send(&self, msg: NewMessage) -> oneshot::Receiver<Result<StoredMessage, MailboxError>> {
        let mailbox = self.get(&msg.mailbox);
        let (tx, rx) = oneshot::channel();
        self.inner.persister.do_send(Persist {
            write: Write::Send(msg),
            done: Box::new(move |result| {
                let answer = match result {
                    Ok(Outcome::Sent(stored)) => {
                        // Hand over before answering, so a receive that follows the answer
                        // finds the message.
                        mailbox.do_send(Appended(stored.clone()));
                        Ok(stored)
                    }
                    Ok(other) => {
                        Err(StoreError::Rejected(format!("send produced {other:?}")).into())
                    }
                    Err(e) => Err(e.into()),
                };
                let _ = tx.send(answer);
            }),
        });
        rx
    }
}
