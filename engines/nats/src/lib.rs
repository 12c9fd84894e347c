//! The NATS engine: one connection to a NATS server with JetStream, shared by the services kept
//! there ([`NatsPubSub`] on core NATS, [`NatsMailboxes`] on JetStream), every subject, stream
//! and bucket under one prefix.
//!
//! Subjects are `<prefix>.<service>.<tokens>`: `ikigai.ps.<topic>` for pub/sub,
//! `ikigai.mb.<mailbox>` for the mailboxes' stream (`ikigai_mailboxes`), and the bucket
//! `ikigai_mbmeta` for what a stream message cannot hold (leases, read counts, attempts), so
//! that several roots (or tests) can share one NATS server under their own prefixes. Names are
//! turned into subject tokens by [`subject`]. NATS's errors become [`StoreError`]s in one
//! place, [`store_error`].

mod engine;
mod mailbox;
mod pubsub;
pub mod subject;

pub use mailbox::NatsMailboxes;
pub use pubsub::NatsPubSub;

use async_nats::{Client, ConnectOptions, Event};
use ikigai_actors::store::StoreError;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

/// The prefix of every subject, stream and bucket when the configuration names none.
pub const DEFAULT_PREFIX: &str = "ikigai";

/// How long [`NatsEngine::connect`] waits for the server, and each request for its answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the engine could not start.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The prefix would not make valid stream, bucket and subject names.
    #[error("the NATS prefix {0:?} must be 1 to 64 of A-Z, a-z, 0-9, _ and -")]
    BadPrefix(String),
    #[error("NATS at {url} does not answer: {reason}")]
    NoAnswer { url: String, reason: String },
    #[error("NATS at {url} has no JetStream (start nats-server with -js): {reason}")]
    NoJetStream { url: String, reason: String },
}

/// A connected NATS server: what the NATS services are built from.
pub struct NatsEngine {
    client: Client,
    jetstream: async_nats::jetstream::Context,
    prefix: String,
    /// Counts the connection's reconnections: a feed that sees it change may have missed
    /// notifications while the connection was down.
    reconnects: watch::Receiver<u64>,
}

impl NatsEngine {
    /// Connects to `url` (`nats://127.0.0.1:4222`) and checks that JetStream answers.
    /// Subjects, streams and buckets go under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<NatsEngine, ConnectError> {
        if !valid_prefix(prefix) {
            return Err(ConnectError::BadPrefix(prefix.to_owned()));
        }
        let (count, reconnects) = watch::channel(0u64);
        let options = ConnectOptions::new()
            .connection_timeout(TIMEOUT)
            .request_timeout(Some(TIMEOUT))
            .event_callback(move |event| {
                let count = count.clone();
                async move { on_event(&event, &count) }
            });
        let no_answer = |e: &dyn std::fmt::Display| ConnectError::NoAnswer {
            url: url.to_owned(),
            reason: e.to_string(),
        };
        let client = tokio::time::timeout(TIMEOUT, options.connect(url))
            .await
            .map_err(|e| no_answer(&e))?
            .map_err(|e| no_answer(&e))?;
        let mut jetstream = async_nats::jetstream::new(client.clone());
        jetstream.set_timeout(TIMEOUT);
        jetstream
            .query_account()
            .await
            .map_err(|e| ConnectError::NoJetStream {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let max_payload = client.server_info().max_payload;
        info!(url, prefix, max_payload, "connected to NATS with JetStream");
        Ok(NatsEngine {
            client,
            jetstream,
            prefix: prefix.to_owned(),
            reconnects,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The start of every subject of `service`: `<prefix>.<service>`.
    fn namespace(&self, service: &str) -> String {
        format!("{}.{service}", self.prefix)
    }
}

/// Whether `prefix` makes valid stream and bucket names and one subject token.
fn valid_prefix(prefix: &str) -> bool {
    (1..=64).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Logs what the connection reports and counts its reconnections.
fn on_event(event: &Event, reconnects: &watch::Sender<u64>) {
    match event {
        Event::Connected => {
            info!("NATS connection (re)established");
            reconnects.send_modify(|n| *n += 1);
        }
        Event::SlowConsumer(sid) => warn!(sid, "NATS dropped messages of a slow subscription"),
        other => warn!(event = %other, "NATS connection event"),
    }
}

/// A NATS error as the seam sees it: a timeout or a lost connection may pass (`Unavailable`),
/// anything JetStream refused (`Rejected`) will not.
pub(crate) fn store_error(e: impl std::fmt::Display) -> StoreError {
    let text = e.to_string();
    let passing = [
        "timed out",
        "timeout",
        "disconnected",
        "no responders",
        "connection",
    ];
    let lower = text.to_lowercase();
    if passing.iter().any(|p| lower.contains(p)) {
        StoreError::Unavailable(format!("NATS: {text}"))
    } else {
        StoreError::Rejected(format!("NATS: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_names_and_tokens() {
        assert!(valid_prefix("ikigai"));
        assert!(valid_prefix("ikigai_test_42-a"));
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(65)] {
            assert!(!valid_prefix(bad), "{bad:?}");
        }
    }

    #[test]
    fn timeouts_may_pass_refusals_do_not() {
        assert!(store_error("request timed out").retriable());
        assert!(store_error("no responders").retriable());
        assert!(!store_error("maximum payload exceeded").retriable());
    }
}
