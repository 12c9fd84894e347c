//! Transactions across services. `tx.begin` opens one Postgres transaction on a connection of
//! its own; ops given its id run their SQL inside it, and their effects on the in-memory actors
//! (a message for a mailbox, new tasks for a queue) wait for `tx.commit`. `tx.rollback`, an
//! error inside the transaction, the session closing, or its deadline passing undoes all of it.
//! Only Postgres-backed services take part (today every service is).

use crate::error::Error;
use crate::postgres::store_error;
use crate::services::Services;
use deadpool_postgres::{GenericClient, Object};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::Mutex;
use uuid::Uuid;

/// Open transactions per connection: each holds a pooled connection.
const MAX_OPEN: usize = 2;

/// What a committed transaction then does to the in-memory actors (a message reaches its
/// mailbox, a queue reloads, a cache entry is set...).
pub type Effect = Box<dyn FnOnce(&Services)>;

struct Open {
    conn: Object,
    effects: Vec<Effect>,
}

type Slot = Rc<Mutex<Option<Open>>>;

/// The open transactions of one session.
#[derive(Default)]
pub struct Transactions {
    open: RefCell<HashMap<Uuid, Slot>>,
}

impl Transactions {
    /// Opens a transaction that is rolled back if still open after `limit`.
    pub async fn begin(self: &Rc<Self>, s: &Services, limit: Duration) -> Result<Uuid, Error> {
        if self.open.borrow().len() >= MAX_OPEN {
            let message = format!("at most {MAX_OPEN} transactions may be open per connection");
            return Err(Error::BadRequest(message));
        }
        let conn = s.pool.get().await.map_err(store_error)?;
        let begin = format!(
            "BEGIN; SELECT set_config('ikigai.origin', '{}', true), \
             set_config('ikigai.always_notify', 'on', true)",
            s.origin.replace('\'', "''")
        );
        conn.batch_execute(&begin).await.map_err(store_error)?;
        let id = Uuid::new_v4();
        let slot = Rc::new(Mutex::new(Some(Open {
            conn,
            effects: Vec::new(),
        })));
        self.open.borrow_mut().insert(id, slot);
        let txs = Rc::downgrade(self);
        tokio::task::spawn_local(async move {
            tokio::time::sleep(limit).await;
            if let Some(txs) = txs.upgrade() {
                let _ = txs.rollback(id).await;
            }
        });
        Ok(id)
    }

    /// Runs `f` inside transaction `id`. An error aborts the whole transaction.
    pub async fn within<T>(
        &self,
        id: Uuid,
        f: impl AsyncFnOnce(&Object) -> Result<(T, Option<Effect>), Error>,
    ) -> Result<T, Error> {
        let slot = self.slot(id)?;
        let mut guard = slot.lock().await;
        let open = guard.as_mut().ok_or_else(|| gone(id))?;
        match f(&open.conn).await {
            Ok((value, effect)) => {
                open.effects.extend(effect);
                Ok(value)
            }
            Err(e) => {
                drop(guard);
                // Rolled back before the error is answered, so that what it locked is free
                // for the caller's next request (a closed connection frees it only later).
                let _ = self.rollback(id).await;
                Err(e)
            }
        }
    }

    /// Records an effect that needs no SQL (it happens at commit, or never).
    pub async fn defer(&self, id: Uuid, effect: Effect) -> Result<(), Error> {
        self.within(id, async |_| Ok(((), Some(effect)))).await
    }

    /// Commits transaction `id`; returns what the actors must now learn.
    pub async fn commit(&self, id: Uuid) -> Result<Vec<Effect>, Error> {
        let open = self.take(id).await?;
        match open.conn.batch_execute("COMMIT").await {
            Ok(()) => Ok(open.effects),
            Err(e) => {
                let _ = Object::take(open.conn);
                Err(store_error(e).into())
            }
        }
    }

    /// Rolls transaction `id` back; if `ROLLBACK` fails, closes its connection, which makes
    /// Postgres roll back.
    pub async fn rollback(&self, id: Uuid) -> Result<(), Error> {
        let open = self.take(id).await?;
        if open.conn.batch_execute("ROLLBACK").await.is_err() {
            let _ = Object::take(open.conn);
        }
        Ok(())
    }

    /// Abandons every open transaction (the session closed): their connections are closed,
    /// which makes Postgres roll them back.
    pub fn abandon_all(&self) {
        for (_, slot) in self.open.borrow_mut().drain() {
            if let Ok(mut guard) = slot.try_lock() {
                if let Some(open) = guard.take() {
                    let _ = Object::take(open.conn);
                }
            }
        }
    }

    async fn take(&self, id: Uuid) -> Result<Open, Error> {
        let slot = self.open.borrow_mut().remove(&id).ok_or_else(|| gone(id))?;
        let open = slot.lock().await.take();
        open.ok_or_else(|| gone(id))
    }

    fn slot(&self, id: Uuid) -> Result<Slot, Error> {
        self.open.borrow().get(&id).cloned().ok_or_else(|| gone(id))
    }
}

fn gone(id: Uuid) -> Error {
    Error::NotFound(format!(
        "no open transaction {id}: it was committed, rolled back, failed, or ran past its time limit"
    ))
}
