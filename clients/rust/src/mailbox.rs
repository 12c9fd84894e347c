//! Typed calls for the mailbox service: `client.mailbox(name).send/receive/ack/peek`.

use crate::{Client, ClientError};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A delivered mailbox message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    pub id: String,
    pub mailbox: String,
    pub sender: String,
    pub payload: Json,
    pub created_at: String,
    pub attempts: u32,
}

/// Arguments of `mailbox.receive`; unset fields take the daemon's defaults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Receive<'a> {
    pub mailbox: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility_ms: Option<u64>,
}

/// One row of `mailbox.stats`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MailboxStats {
    pub mailbox: String,
    pub unread: u64,
    pub read: u64,
    pub oldest_unread_at: Option<String>,
    pub ready: u64,
    pub in_flight: u64,
    pub waiting: u64,
}

/// One mailbox, as `client.mailbox(name)` or, inside a transaction, `tx.mailbox(name)` gives
/// it: writes (`send`, `ack`) then run inside that transaction; reads never do.
#[derive(Clone, Copy)]
pub struct Mailbox<'a> {
    pub(crate) client: &'a Client,
    pub(crate) name: &'a str,
    pub(crate) tx: Option<&'a str>,
}

#[derive(Deserialize)]
struct Messages {
    messages: Vec<Message>,
}

impl Mailbox<'_> {
    /// Sends `payload`; returns the message id once it is committed (in a transaction: once
    /// inserted; delivered if it commits).
    pub async fn send(&self, payload: &Json) -> Result<String, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            mailbox: &'a str,
            payload: &'a Json,
            tx: Option<&'a str>,
        }
        #[derive(Deserialize)]
        struct Sent {
            id: String,
        }
        let args = Args {
            mailbox: self.name,
            payload,
            tx: self.tx,
        };
        let sent: Sent = self.client.call("mailbox.send", &args).await?;
        Ok(sent.id)
    }

    /// Receives up to `max` messages (default 1), waiting up to `wait_ms` for the first.
    pub async fn receive(
        &self,
        max: Option<u32>,
        wait_ms: Option<u64>,
    ) -> Result<Vec<Message>, ClientError> {
        let args = Receive {
            mailbox: self.name,
            max,
            wait_ms,
            visibility_ms: None,
        };
        self.client.receive(&args).await
    }

    /// Acknowledges delivered messages; returns how many were newly acknowledged.
    pub async fn ack(&self, ids: &[String]) -> Result<u64, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            mailbox: &'a str,
            ids: &'a [String],
            tx: Option<&'a str>,
        }
        #[derive(Deserialize)]
        struct Acked {
            acked: u64,
        }
        let args = Args {
            mailbox: self.name,
            ids,
            tx: self.tx,
        };
        let acked: Acked = self.client.call("mailbox.ack", &args).await?;
        Ok(acked.acked)
    }

    /// The oldest ready messages, without delivering them (default 10).
    pub async fn peek(&self, limit: Option<u32>) -> Result<Vec<Message>, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            mailbox: &'a str,
            limit: Option<u32>,
        }
        let args = Args {
            mailbox: self.name,
            limit,
        };
        let peeked: Messages = self.client.call("mailbox.peek", &args).await?;
        Ok(peeked.messages)
    }

    /// This mailbox's counters (`None` if it never stored a message).
    pub async fn stats(&self) -> Result<Option<MailboxStats>, ClientError> {
        let rows = self.client.mailbox_stats(Some(self.name)).await?;
        Ok(rows.into_iter().next())
    }
}

impl Client {
    /// The mailbox `name`.
    pub fn mailbox<'a>(&'a self, name: &'a str) -> Mailbox<'a> {
        Mailbox {
            client: self,
            name,
            tx: None,
        }
    }

    /// `mailbox.receive` with every option (`visibility_ms` included).
    pub async fn receive(&self, args: &Receive<'_>) -> Result<Vec<Message>, ClientError> {
        let received: Messages = self.call("mailbox.receive", args).await?;
        Ok(received.messages)
    }

    /// `mailbox.stats`: of `mailbox`, else of the caller's own (for `admin`: of every mailbox).
    pub async fn mailbox_stats(
        &self,
        mailbox: Option<&str>,
    ) -> Result<Vec<MailboxStats>, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            mailbox: Option<&'a str>,
        }
        #[derive(Deserialize)]
        struct Rows {
            mailboxes: Vec<MailboxStats>,
        }
        let rows: Rows = self.call("mailbox.stats", &Args { mailbox }).await?;
        Ok(rows.mailboxes)
    }
}
