//! The mailbox service on JetStream: one stream (`<prefix>_mailboxes`) holding exactly the
//! unread messages, a subject per mailbox, and a key-value bucket for the rest ([`meta`]).
//! [`NatsMailboxes`] is the store, the journal and the change feed.
//!
//! * A message is one stream message on `<prefix>.mb.<mailbox as a token>`: the payload's JSON
//!   text, with the headers `Nats-Msg-Id` (its UUID: JetStream drops a repeat within its
//!   duplicate window), `Ikigai-Sender` and `Ikigai-At` (`created_at`, ms). Its stream
//!   sequence is its `seq`: JetStream numbers the messages of a stream in the order it stores
//!   them, so `seq` is commit order per mailbox, the FIFO order.
//! * A send is answered after JetStream's publish ack, which it gives once the message is
//!   stored (on disk with file storage; on a quorum of replicas in a cluster). An ack deletes
//!   the message by its sequence, so the stream is the unread set, and counts it read.
//! * Loads read the mailbox's subject from a sequence with an ephemeral consumer
//!   ([`load`]); visibility deadlines and redelivery stay with the mailbox actor, which knows
//!   them, as on Postgres and Redis, so no consumer tracks deliveries. The daemon keeps the
//!   sequence of each message it loaded or sent while serving its mailbox (an ack names a
//!   message by id alone).
//! * The change feed is core NATS on `<prefix>.mbfeed` ([`feed`]). As on Postgres and Redis a
//!   send or an ack is announced unless this daemon holds the mailbox's lease with over a
//!   second to spare.
//!
//! JetStream has no transaction: a group's sends are published one after the other and, when
//! one fails, those already stored are deleted again before the group fails; acks and attempt
//! counts are applied one by one (an ack that deleted its message stays done).

mod feed;
mod load;
mod meta;

use crate::store_error;
use async_nats::jetstream::response::Response;
use async_nats::jetstream::stream::DeleteStatus;
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use async_trait::async_trait;
use chrono::Utc;
use futures::future::join_all;
use ikigai_actors::store::{
    MailboxBatch, MailboxCommitted, MailboxCounts, MailboxJournal, MailboxStore, StoreError,
};
use ikigai_actors::{NewMessage, StoredMessage};
use meta::Meta;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, OnceCell};
use uuid::Uuid;

use crate::subject::token;

const SENDER: &str = "Ikigai-Sender";
const AT: &str = "Ikigai-At";
const MSG_ID: &str = "Nats-Msg-Id";
/// Room a message leaves for its subject and headers (a mailbox name is at most 255 bytes,
/// three bytes a byte as a token; a sender the same).
const HEADROOM: usize = 2048;

/// A message this daemon may acknowledge: where it is in the stream.
#[derive(Debug, Clone, Copy)]
struct Held {
    seq: u64,
    /// Whether a delivery count was stored for it (to remove with it).
    attempted: bool,
}

/// The stream and the bucket, opened (and created if missing) on first use.
struct Opened {
    stream: stream::Stream,
    meta: Meta,
}

/// The mailbox service's store, journal and change feed on one NATS server.
pub struct NatsMailboxes {
    js: jetstream::Context,
    client: async_nats::Client,
    /// `<prefix>_mailboxes`, `<prefix>_mbmeta`.
    stream_name: String,
    bucket: String,
    /// `<prefix>.mb`, `<prefix>.mbdead`, `<prefix>.mbfeed`.
    subjects: String,
    dead: String,
    feed_subject: String,
    daemon: String,
    opened: OnceCell<Opened>,
    local: Arc<Local>,
    reconnects: watch::Receiver<u64>,
}

/// What this daemon knows of the mailboxes it serves (shared with the feed's task).
#[derive(Default)]
struct Local {
    /// The messages loaded or sent here of the mailboxes this daemon serves, by mailbox and id.
    held: Mutex<HashMap<String, HashMap<Uuid, Held>>>,
    /// The leases this daemon holds, until when (by its own clock).
    leases: Mutex<HashMap<String, Instant>>,
}

impl NatsMailboxes {
    pub fn new(engine: &crate::NatsEngine, daemon: &str) -> NatsMailboxes {
        let prefix = engine.prefix();
        NatsMailboxes {
            js: engine.jetstream.clone(),
            client: engine.client.clone(),
            stream_name: format!("{prefix}_mailboxes"),
            bucket: format!("{prefix}_mbmeta"),
            subjects: engine.namespace("mb"),
            dead: engine.namespace("mbdead"),
            feed_subject: engine.namespace("mbfeed"),
            daemon: daemon.to_owned(),
            opened: OnceCell::new(),
            local: Arc::default(),
            reconnects: engine.reconnects.clone(),
        }
    }

    async fn opened(&self) -> Result<&Opened, StoreError> {
        self.opened
            .get_or_try_init(|| async {
                let config = stream::Config {
                    name: self.stream_name.clone(),
                    subjects: vec![format!("{}.*", self.subjects), format!("{}.*", self.dead)],
                    storage: stream::StorageType::File,
                    allow_direct: true,
                    ..Default::default()
                };
                let stream = self
                    .js
                    .get_or_create_stream(config)
                    .await
                    .map_err(store_error)?;
                let meta = Meta::open(&self.js, &self.bucket).await?;
                Ok(Opened { stream, meta })
            })
            .await
    }

    /// The subject of `mailbox`'s messages.
    fn subject(&self, mailbox: &str) -> String {
        format!("{}.{}", self.subjects, token(mailbox))
    }

    /// The stream message of `m`: its subject, headers and payload.
    fn message(
        &self,
        m: &NewMessage,
        at: i64,
    ) -> Result<(String, HeaderMap, bytes::Bytes), StoreError> {
        let payload = serde_json::to_vec(&*m.payload)
            .map_err(|e| StoreError::Rejected(format!("payload of {}: {e}", m.id)))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            m.id.to_string().as_str(),
        );
        headers.insert(SENDER, m.sender.as_str());
        headers.insert(AT, at.to_string().as_str());
        let subject = self.subject(&m.mailbox);
        let max = self.client.server_info().max_payload;
        if payload.len() + HEADROOM > max {
            return Err(StoreError::Rejected(format!(
                "message {} is {} bytes, over the NATS server's max_payload of {max} bytes \
                 less {HEADROOM} for its headers",
                m.id,
                payload.len()
            )));
        }
        Ok((subject, headers, payload.into()))
    }

    /// Stores `sends` in order; on a failure deletes those already stored and fails.
    async fn send(&self, sends: &[NewMessage]) -> Result<Vec<StoredMessage>, StoreError> {
        let ms = Utc::now().timestamp_millis();
        let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
        let messages: Vec<_> = sends
            .iter()
            .map(|m| self.message(m, ms))
            .collect::<Result<_, _>>()?;
        let mut acks = Vec::with_capacity(messages.len());
        let mut failed = None;
        for (subject, headers, payload) in messages {
            match self
                .js
                .publish_with_headers(subject, headers, payload)
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    failed = Some(store_error(e));
                    break;
                }
            }
        }
        let mut seqs = Vec::with_capacity(acks.len());
        for ack in join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await {
            match ack {
                Ok(ack) => seqs.push(ack.sequence),
                Err(e) => failed = failed.or(Some(store_error(e))),
            }
        }
        if let Some(e) = failed {
            join_all(seqs.iter().map(|&seq| self.delete(seq))).await;
            return Err(e);
        }
        let sent: Vec<StoredMessage> = sends
            .iter()
            .zip(&seqs)
            .map(|(m, &seq)| Ok(m.stored(seq_of(seq)?, at)))
            .collect::<Result<_, _>>()?;
        for m in &sent {
            if self.local.serving(&m.mailbox, Duration::ZERO) {
                self.local.hold(&m.mailbox, [(m.id, m.seq as u64, false)]);
            }
        }
        Ok(sent)
    }

    /// Deletes the acknowledged messages; the ids it deleted.
    async fn ack(
        &self,
        opened: &Opened,
        batch: &MailboxBatch,
    ) -> Result<HashSet<Uuid>, StoreError> {
        let mut by_mailbox: BTreeMap<&str, Vec<(Uuid, Held)>> = BTreeMap::new();
        for (mailbox, id, held) in self.find(opened, batch).await? {
            by_mailbox.entry(mailbox).or_default().push((id, held));
        }
        let mut acked = HashSet::new();
        for (mailbox, found) in by_mailbox {
            let deleted = self.delete_all(opened, mailbox, &found).await?;
            let ids: Vec<Uuid> = found.iter().map(|(id, _)| *id).collect();
            self.local.forget(mailbox, &ids);
            for (id, held) in found.iter().filter(|(id, _)| deleted.contains(id)) {
                if held.attempted {
                    opened.meta.forget_attempts(&token(mailbox), *id).await?;
                }
            }
            if !deleted.is_empty() {
                opened
                    .meta
                    .add_read(&token(mailbox), deleted.len() as u64)
                    .await?;
            }
            acked.extend(deleted);
        }
        Ok(acked)
    }

    /// Deletes `found`, messages of `mailbox`: with one purge of the mailbox's subject below the
    /// last of them when they are exactly its oldest unread messages (the usual FIFO ack), else
    /// one by one. The ids deleted.
    async fn delete_all(
        &self,
        opened: &Opened,
        mailbox: &str,
        found: &[(Uuid, Held)],
    ) -> Result<HashSet<Uuid>, StoreError> {
        let seqs: HashSet<u64> = found.iter().map(|(_, h)| h.seq).collect();
        let oldest = self.read(opened, mailbox, 0, seqs.len(), true).await?;
        let prefix = oldest.len() == seqs.len() && oldest.iter().all(|r| seqs.contains(&r.seq));
        if prefix && seqs.len() > 1 {
            let below = seqs.iter().max().map_or(0, |last| last + 1);
            let purge = opened
                .stream
                .purge()
                .filter(self.subject(mailbox))
                .sequence(below);
            purge.await.map_err(store_error)?;
            return Ok(found.iter().map(|(id, _)| *id).collect());
        }
        let mut deleted = HashSet::new();
        for (id, held) in found {
            if self.delete(held.seq).await? {
                deleted.insert(*id);
            }
        }
        Ok(deleted)
    }

    /// Deletes the message at `seq` without overwriting its bytes (`no_erase`: the default
    /// erase rewrites the message in the store file); false when no message is there.
    pub(super) async fn delete(&self, seq: u64) -> Result<bool, StoreError> {
        let subject = format!("STREAM.MSG.DELETE.{}", self.stream_name);
        let request = serde_json::json!({"seq": seq, "no_erase": true});
        match self
            .js
            .request(subject, &request)
            .await
            .map_err(store_error)?
        {
            Response::Ok(DeleteStatus { success }) => Ok(success),
            Response::Err { error } if error.code() == 404 => Ok(false),
            Response::Err { error } => Err(store_error(error)),
        }
    }

    /// Where the acknowledged messages are: known here, or else found by a scan of their
    /// mailbox (an ack through a daemon that does not serve the mailbox).
    async fn find<'a>(
        &self,
        opened: &Opened,
        batch: &'a MailboxBatch,
    ) -> Result<Vec<(&'a str, Uuid, Held)>, StoreError> {
        let mut seen = HashSet::new();
        let mut found = Vec::with_capacity(batch.acks.len());
        let mut unknown: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
        for a in batch.acks.iter().filter(|a| seen.insert(a.id)) {
            match self.local.held(&a.mailbox, &a.id) {
                Some(held) => found.push((a.mailbox.as_str(), a.id, held)),
                None => unknown.entry(&a.mailbox).or_default().push(a.id),
            }
        }
        for (mailbox, ids) in unknown {
            let seqs = self.locate(opened, mailbox).await?;
            let located = ids.into_iter().filter_map(|id| Some((id, *seqs.get(&id)?)));
            let held = |(id, seq)| {
                (
                    mailbox,
                    id,
                    Held {
                        seq,
                        attempted: true,
                    },
                )
            };
            found.extend(located.map(held));
        }
        Ok(found)
    }

    /// Stores the delivery counts of messages this daemon holds.
    async fn attempts(&self, opened: &Opened, batch: &MailboxBatch) -> Result<(), StoreError> {
        for w in &batch.attempts {
            let Some(mailbox) = self.local.mailbox_of(&w.id) else {
                continue;
            };
            opened
                .meta
                .put_attempts(&token(&mailbox), w.id, w.attempts)
                .await?;
            if let Some(held) = self.local.held(&mailbox, &w.id) {
                self.local.hold(&mailbox, [(w.id, held.seq, true)]);
            }
        }
        Ok(())
    }
}

impl Local {
    /// Whether this daemon holds the lease of `mailbox` with `spare` to spare.
    fn serving(&self, mailbox: &str, spare: Duration) -> bool {
        let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let soon = Instant::now() + spare;
        leases.get(mailbox).is_some_and(|until| *until > soon)
    }

    /// Remembers where messages of `mailbox` are, when this daemon serves it.
    fn hold(&self, mailbox: &str, found: impl IntoIterator<Item = (Uuid, u64, bool)>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let entry = held.entry(mailbox.to_owned()).or_default();
        for (id, seq, attempted) in found {
            entry.insert(id, Held { seq, attempted });
        }
    }

    fn held(&self, mailbox: &str, id: &Uuid) -> Option<Held> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(mailbox).and_then(|m| m.get(id)).copied()
    }

    fn forget(&self, mailbox: &str, ids: &[Uuid]) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = held.get_mut(mailbox) {
            for id in ids {
                m.remove(id);
            }
        }
    }

    fn set_lease(&self, mailbox: &str, until: Option<Instant>) {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        match until {
            Some(until) => leases.insert(mailbox.to_owned(), until),
            None => leases.remove(mailbox),
        };
    }

    /// The mailbox holding message `id`, if this daemon holds it.
    fn mailbox_of(&self, id: &Uuid) -> Option<String> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter()
            .find_map(|(mailbox, m)| m.contains_key(id).then(|| mailbox.clone()))
    }

    /// Forgets every message of `mailbox` (no longer served here).
    fn drop_mailbox(&self, mailbox: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(mailbox);
    }
}

/// A stream sequence as a `seq`.
fn seq_of(sequence: u64) -> Result<i64, StoreError> {
    i64::try_from(sequence)
        .map_err(|_| StoreError::Undecodable(format!("stream sequence {sequence}")))
}

#[async_trait]
impl MailboxJournal for NatsMailboxes {
    async fn commit(&self, batch: MailboxBatch) -> Result<MailboxCommitted, StoreError> {
        if batch.is_empty() {
            return Ok(MailboxCommitted::default());
        }
        let opened = self.opened().await?;
        let sent = self.send(&batch.sends).await?;
        let acked = self.ack(opened, &batch).await?;
        self.attempts(opened, &batch).await?;
        self.announce_sent(&sent).await;
        self.announce_acked(&batch, &acked).await;
        Ok(MailboxCommitted { sent, acked })
    }
}

#[async_trait]
impl MailboxStore for NatsMailboxes {
    async fn load_unread(
        &self,
        mailbox: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let opened = self.opened().await?;
        self.load(
            opened,
            mailbox,
            u64::try_from(after_seq).unwrap_or(0),
            limit,
        )
        .await
    }

    async fn load_ids(
        &self,
        mailbox: &str,
        ids: &[Uuid],
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let opened = self.opened().await?;
        self.load_ids_in(opened, mailbox, ids).await
    }

    async fn acquire(&self, mailbox: &str, lease: Duration) -> Result<bool, StoreError> {
        let start = Instant::now();
        let opened = self.opened().await?;
        let took = opened
            .meta
            .acquire(&token(mailbox), &self.daemon, lease)
            .await?;
        if took {
            self.local.set_lease(mailbox, Some(start + lease));
        }
        Ok(took)
    }

    async fn renew(&self, mailbox: &str, lease: Duration) -> Result<bool, StoreError> {
        let start = Instant::now();
        let opened = self.opened().await?;
        let kept = opened
            .meta
            .renew(&token(mailbox), &self.daemon, lease)
            .await?;
        self.local.set_lease(mailbox, kept.then_some(start + lease));
        Ok(kept)
    }

    async fn release(&self, mailbox: &str) -> Result<(), StoreError> {
        let opened = self.opened().await?;
        self.local.set_lease(mailbox, None);
        self.local.drop_mailbox(mailbox);
        if opened.meta.release(&token(mailbox), &self.daemon).await? {
            self.announce(format!("released\n{mailbox}")).await;
        }
        Ok(())
    }

    async fn counts(&self, mailbox: Option<&str>) -> Result<Vec<MailboxCounts>, StoreError> {
        let opened = self.opened().await?;
        self.counts_in(opened, mailbox).await
    }

    /// The server's `max_payload` less room for the subject and headers.
    fn max_payload(&self) -> Option<usize> {
        Some(
            self.client
                .server_info()
                .max_payload
                .saturating_sub(HEADROOM),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ikigai_actors::store::AckWrite;
    use serde_json::json;

    type Outcome = Result<(), Box<dyn std::error::Error>>;

    /// Mailboxes under a prefix of their own on the local NATS; its streams are deleted on drop.
    struct Scratch {
        engine: crate::NatsEngine,
    }

    impl Scratch {
        async fn new() -> Result<Scratch, crate::ConnectError> {
            let prefix = format!("test_{}", Uuid::new_v4().simple());
            let engine = crate::NatsEngine::connect("nats://127.0.0.1:4222", &prefix).await?;
            Ok(Scratch { engine })
        }

        fn daemon(&self, daemon: &str) -> NatsMailboxes {
            NatsMailboxes::new(&self.engine, daemon)
        }

        async fn drop_streams(&self) {
            let prefix = self.engine.prefix();
            for stream in [format!("{prefix}_mailboxes"), format!("KV_{prefix}_mbmeta")] {
                let _ = self.engine.jetstream.delete_stream(&stream).await;
            }
        }
    }

    fn sends(mailbox: &str, count: usize) -> MailboxBatch {
        let sends = (0..count)
            .map(|n| NewMessage::new(mailbox.into(), "alice".into(), json!({ "n": n })))
            .collect();
        MailboxBatch {
            sends,
            ..MailboxBatch::default()
        }
    }

    fn acks(mailbox: &str, ids: &[Uuid]) -> MailboxBatch {
        let acks = ids.iter().map(|&id| AckWrite {
            id,
            mailbox: mailbox.into(),
            reader: "bob".into(),
            attempts: 1,
        });
        MailboxBatch {
            acks: acks.collect(),
            ..MailboxBatch::default()
        }
    }

    #[tokio::test]
    async fn sends_load_in_fifo_order_and_acks_remove_them() -> Outcome {
        let scratch = Scratch::new().await?;
        let mb = scratch.daemon("d1");
        let run = async {
            assert!(mb.acquire("b.x", Duration::from_secs(30)).await?);
            let mut sent = mb.commit(sends("b.x", 3)).await?.sent;
            sent.extend(mb.commit(sends("b.x", 2)).await?.sent);
            assert!(sent.windows(2).all(|w| w[0].seq < w[1].seq));
            assert_eq!(mb.load_unread("b.x", 0, 100).await?, sent);
            assert_eq!(mb.load_unread("b.x", sent[1].seq, 2).await?, sent[2..4]);
            let ids: Vec<Uuid> = sent.iter().map(|m| m.id).collect();
            let acked = mb.commit(acks("b.x", &ids[..2])).await?.acked;
            assert_eq!(acked, ids[..2].iter().copied().collect());
            assert!(mb.commit(acks("b.x", &ids[..2])).await?.acked.is_empty());
            assert_eq!(mb.load_unread("b.x", 0, 100).await?, sent[2..]);
            assert_eq!(mb.load_ids("b.x", &ids[1..3]).await?, sent[2..3]);
            let middle = mb.commit(acks("b.x", &ids[3..5])).await?.acked;
            assert_eq!(middle.len(), 2, "not the oldest: deleted one by one");
            assert_eq!(
                mb.load_unread("b.x", 0, 100).await?,
                sent[2..3],
                "the older one stays"
            );
            mb.commit(sends("b.x", 2)).await?;
            let counts = mb.counts(Some("b.x")).await?;
            assert_eq!((counts[0].unread, counts[0].read), (3, 4));
            assert_eq!(mb.counts(None).await?.len(), 1);
            Ok::<_, Box<dyn std::error::Error>>(())
        };
        let outcome = run.await;
        scratch.drop_streams().await;
        outcome
    }

    #[tokio::test]
    async fn one_daemon_holds_a_lease_at_a_time() -> Outcome {
        let scratch = Scratch::new().await?;
        let (d1, d2) = (scratch.daemon("d1"), scratch.daemon("d2"));
        let run = async {
            let short = Duration::from_millis(300);
            assert!(d1.acquire("box", short).await?);
            let sent = d1.commit(sends("box", 1)).await?.sent;
            assert_eq!(d1.load_unread("box", 0, 10).await?, sent);
            assert!(!d2.acquire("box", short).await?);
            assert!(d1.renew("box", short).await?);
            assert!(!d2.renew("box", short).await?);
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(
                d2.acquire("box", short).await?,
                "a lease that ran out is free"
            );
            assert_eq!(
                d2.load_unread("box", 0, 10).await?,
                sent,
                "the next holder loads it"
            );
            assert!(!d1.renew("box", short).await?);
            d2.release("box").await?;
            assert!(d1.acquire("box", short).await?, "a released lease is free");
            Ok::<_, Box<dyn std::error::Error>>(())
        };
        let outcome = run.await;
        scratch.drop_streams().await;
        outcome
    }
}
