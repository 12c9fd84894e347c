//! Domain types shared by the mailbox actors and the stores: what a message is before and after
//! it is committed, and who is asking.

use chrono::{DateTime, Utc};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// One connection's authenticated session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub Uuid);

impl SessionId {
    pub fn new() -> Self {
        SessionId(Uuid::new_v4())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A message accepted from a sender, not yet committed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Chosen by the daemon (UUIDv7, so the primary key index grows at its right edge).
    pub id: Uuid,
    pub mailbox: String,
    pub sender: String,
    pub payload: Arc<serde_json::Value>,
}

impl NewMessage {
    pub fn new(mailbox: String, sender: String, payload: serde_json::Value) -> Self {
        NewMessage {
            id: Uuid::now_v7(),
            mailbox,
            sender,
            payload: Arc::new(payload),
        }
    }
}

impl NewMessage {
    /// The message as committed at position `seq`, at `created_at`, not yet delivered.
    pub fn stored(&self, seq: i64, created_at: DateTime<Utc>) -> StoredMessage {
        StoredMessage {
            id: self.id,
            seq,
            mailbox: self.mailbox.clone(),
            sender: self.sender.clone(),
            payload: Arc::clone(&self.payload),
            created_at,
            attempts: 0,
        }
    }
}

/// A committed, not yet acknowledged message.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub id: Uuid,
    /// Commit order within the database; FIFO order of a mailbox.
    pub seq: i64,
    pub mailbox: String,
    pub sender: String,
    pub payload: Arc<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    /// Deliveries recorded so far.
    pub attempts: u32,
}
