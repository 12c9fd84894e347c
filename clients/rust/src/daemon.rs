//! Typed calls about the daemon itself: `ping`, `daemon.status`, and the fault injection of
//! `debug.*`.

use crate::{Client, ClientError};
use serde::{Deserialize, Serialize};

/// `daemon.status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DaemonStatus {
    pub daemon: String,
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    pub root: String,
    pub database: String,
    pub schema_version: i32,
    pub config: String,
    pub connections: u64,
    pub mailboxes_running: u64,
    pub queues_running: u64,
    pub threads_running: u64,
}

/// Fault injection (`admin`, with `[debug] fault_injection = true`), as `client.debug()`
/// gives it.
#[derive(Clone, Copy)]
pub struct Debug<'a> {
    client: &'a Client,
}

impl Debug<'_> {
    /// Makes the logic of mailbox `mailbox` panic; its actor restarts from storage.
    pub async fn panic_mailbox(&self, mailbox: &str) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            mailbox: &'a str,
        }
        let args = Args { mailbox };
        self.client.call_unit("debug.panic_mailbox", &args).await
    }

    /// Makes the supervising actor of agent `name` panic; it restarts and adopts the process.
    pub async fn panic_agent(&self, name: &str) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            name: &'a str,
        }
        self.client
            .call_unit("debug.panic_agent", &Args { name })
            .await
    }
}

impl Client {
    /// A round trip that does nothing.
    pub async fn ping(&self) -> Result<(), ClientError> {
        self.call_unit("ping", &serde_json::json!({})).await
    }

    /// What the daemon is and holds.
    pub async fn status(&self) -> Result<DaemonStatus, ClientError> {
        self.call("daemon.status", &serde_json::json!({})).await
    }

    /// Fault injection.
    pub fn debug(&self) -> Debug<'_> {
        Debug { client: self }
    }
}
