//! Typed calls for the mailbox service.

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

impl Client {
    /// Sends `payload` to `mailbox`; returns the message id once it is committed.
    pub async fn mailbox_send(&self, mailbox: &str, payload: &Json) -> Result<String, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            mailbox: &'a str,
            payload: &'a Json,
        }
        #[derive(Deserialize)]
        struct Sent {
            id: String,
        }
        let sent: Sent = self
            .call("mailbox.send", &Args { mailbox, payload })
            .await?;
        Ok(sent.id)
    }

    /// Receives up to `max` messages, waiting up to `wait_ms` for the first.
    pub async fn mailbox_receive(&self, args: &Receive<'_>) -> Result<Vec<Message>, ClientError> {
        #[derive(Deserialize)]
        struct Received {
            messages: Vec<Message>,
        }
        let received: Received = self.call("mailbox.receive", args).await?;
        Ok(received.messages)
    }

    /// Acknowledges delivered messages; returns how many were newly acknowledged.
    pub async fn mailbox_ack(&self, mailbox: &str, ids: &[String]) -> Result<u64, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            mailbox: &'a str,
            ids: &'a [String],
        }
        #[derive(Deserialize)]
        struct Acked {
            acked: u64,
        }
        let acked: Acked = self.call("mailbox.ack", &Args { mailbox, ids }).await?;
        Ok(acked.acked)
    }
}
