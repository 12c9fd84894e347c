//! The directory of mailbox actors: one supervised actor per mailbox, started on first use.

use super::actor::{Appended, Forget, Mailbox, MailboxConfig};
use super::MailboxError;
use crate::message::{NewMessage, StoredMessage};
use crate::persist::{Outcome, Persist, Persister, Write};
use crate::store::{MailboxStore, StoreError};
use crate::telemetry::Telemetry;
use actix::{Addr, Supervisor};
use std::cell::RefCell;
use std::collections::HashMap;
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
    actors: RefCell<HashMap<String, Addr<Mailbox>>>,
    store: Arc<dyn MailboxStore>,
    persister: Addr<Persister>,
    config: MailboxConfig,
    telemetry: Telemetry,
}

impl Mailboxes {
    pub fn new(
        store: Arc<dyn MailboxStore>,
        persister: Addr<Persister>,
        config: MailboxConfig,
        telemetry: Telemetry,
    ) -> Self {
        Mailboxes {
            inner: Rc::new(Inner {
                actors: RefCell::new(HashMap::new()),
                store,
                persister,
                config,
                telemetry,
            }),
        }
    }

    /// The actor of `name`, started (and loading from storage) if it was not running.
    pub fn get(&self, name: &str) -> Addr<Mailbox> {
        if let Some(addr) = self.inner.actors.borrow().get(name) {
            return addr.clone();
        }
        let inner = &self.inner;
        let (store, persister) = (inner.store.clone(), inner.persister.clone());
        let (owned, config) = (name.to_owned(), inner.config.clone());
        let telemetry = inner.telemetry.clone();
        let addr = Supervisor::start(move |_| {
            Mailbox::new(owned, store, persister, config).with_telemetry(telemetry)
        });
        inner
            .actors
            .borrow_mut()
            .insert(name.to_owned(), addr.clone());
        addr
    }

    /// The actor of `name` if it is running.
    pub fn running(&self, name: &str) -> Option<Addr<Mailbox>> {
        self.inner.actors.borrow().get(name).cloned()
    }

    /// Every running mailbox actor.
    pub fn all(&self) -> Vec<(String, Addr<Mailbox>)> {
        let actors = self.inner.actors.borrow();
        actors.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Starts an actor for every mailbox that holds unread messages (daemon start-up replay).
    pub async fn replay(&self) -> Result<usize, StoreError> {
        let names = self.inner.store.mailboxes_with_unread().await?;
        names.iter().for_each(|n| {
            self.get(n);
        });
        Ok(names.len())
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
