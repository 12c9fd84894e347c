//! Transactions across services: `client.transaction(|tx| async move { ... })`, or a [`Tx`]
//! from `client.begin()` that commits explicitly.
//!
//! A [`Tx`] is a cheap handle (clones share one transaction). Its service handles
//! (`tx.queue(name)`, `tx.task(id)`, `tx.mailbox(name)`, `tx.storage()`, `tx.cache()`) pass
//! its id to every write that takes one; their reads run outside it. Async Rust has no async
//! destructor, so the guard works like this: `commit` and `rollback` end it and say how; when
//! the last clone of a transaction neither committed nor rolled back is dropped (an early `?`,
//! a panic, a cancelled future), a `tx.rollback` is written in the background. Should even that
//! not happen (no runtime left), the daemon rolls back when the connection closes or after
//! `[daemon] tx_timeout_ms`. Nothing is ever committed that was not committed explicitly.

use crate::{Cache, Client, ClientError, Mailbox, Queue, Storage, TaskRef};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// An open transaction of this connection.
#[derive(Clone)]
pub struct Tx {
    state: Arc<State>,
}

struct State {
    client: Client,
    id: String,
    timeout_ms: u64,
    /// Committed or rolled back (or being): the drop guard has nothing to do.
    ended: AtomicBool,
}

impl Drop for State {
    fn drop(&mut self) {
        if !self.ended.load(Ordering::Acquire) {
            let args = serde_json::json!({ "tx": self.id });
            self.client.send_and_forget("tx.rollback", args);
        }
    }
}

#[derive(Serialize)]
struct Id<'a> {
    tx: &'a str,
}

impl Tx {
    /// The transaction's id, as the `tx` arg of the ops.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// How long after `begin` the daemon rolls it back if it is still open.
    pub fn timeout_ms(&self) -> u64 {
        self.state.timeout_ms
    }

    fn client(&self) -> &Client {
        &self.state.client
    }

    /// Commits: answered after `COMMIT` succeeded and its effects reached the services.
    pub async fn commit(self) -> Result<(), ClientError> {
        self.end("tx.commit").await
    }

    /// Undoes everything done inside.
    pub async fn rollback(self) -> Result<(), ClientError> {
        self.end("tx.rollback").await
    }

    async fn end(&self, op: &str) -> Result<(), ClientError> {
        self.state.ended.store(true, Ordering::Release);
        self.client().call_unit(op, &Id { tx: self.id() }).await
    }

    /// The mailbox `name`; `send` and `ack` run inside this transaction.
    pub fn mailbox<'a>(&'a self, name: &'a str) -> Mailbox<'a> {
        Mailbox {
            tx: Some(self.id()),
            ..self.client().mailbox(name)
        }
    }

    /// The queue `name`; pushes and claims run inside this transaction.
    pub fn queue<'a>(&'a self, name: &'a str) -> Queue<'a> {
        Queue {
            tx: Some(self.id()),
            ..self.client().queue(name)
        }
    }

    /// The claimed task `id`; its settlement runs inside this transaction.
    pub fn task<'a>(&'a self, id: &'a str) -> TaskRef<'a> {
        TaskRef {
            tx: Some(self.id()),
            ..self.client().task(id)
        }
    }

    /// The caller's documents; `put` and `delete` run inside this transaction.
    pub fn storage(&self) -> Storage<'_> {
        Storage {
            tx: Some(self.id()),
            ..self.client().storage()
        }
    }

    /// The caller's cache namespace; `set` takes effect when this transaction commits.
    pub fn cache(&self) -> Cache<'_> {
        Cache {
            tx: Some(self.id()),
            ..self.client().cache()
        }
    }

    /// The shared cache namespace; `set` takes effect when this transaction commits.
    pub fn shared_cache(&self) -> Cache<'_> {
        Cache {
            tx: Some(self.id()),
            ..self.client().shared_cache()
        }
    }
}

impl Client {
    /// Opens a transaction (`tx.begin`).
    pub async fn begin(&self) -> Result<Tx, ClientError> {
        #[derive(Deserialize)]
        struct Begun {
            tx: String,
            timeout_ms: u64,
        }
        let begun: Begun = self.call("tx.begin", &serde_json::json!({})).await?;
        Ok(Tx {
            state: Arc::new(State {
                client: self.clone(),
                id: begun.tx,
                timeout_ms: begun.timeout_ms,
                ended: AtomicBool::new(false),
            }),
        })
    }

    /// Runs `body` in a transaction: commits when it returns `Ok`, rolls back when it returns
    /// `Err` (returning the body's error), and rolls back in the background when the future is
    /// dropped or `body` panics.
    pub async fn transaction<T, E, F, Fut>(&self, body: F) -> Result<T, E>
    where
        F: FnOnce(Tx) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<ClientError>,
    {
        let tx = self.begin().await?;
        match body(tx.clone()).await {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(e) => {
                // Whatever the rollback answers, the transaction is over: rolled back, already
                // aborted by the daemon (`not_found`), or gone with a lost connection.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}
