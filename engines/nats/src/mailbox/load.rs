//! Reading mailboxes: pages of a mailbox's unread messages from a sequence (an ephemeral pull
//! consumer on its subject, which reads without acknowledgements and is deleted after), the
//! messages of given ids (by their sequences), and the counters. A stream message that does
//! not decode (published by something else) is reported, moved to `<prefix>.mbdead.<mailbox>`
//! and counted read, as the Postgres engine dead-letters such a row.

use super::{seq_of, NatsMailboxes, Opened, AT, MSG_ID, SENDER};
use crate::store_error;
use crate::subject::{token, untoken};
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use futures::{StreamExt, TryStreamExt};
use ikigai_actors::store::undecodable::report;
use ikigai_actors::store::{MailboxCounts, StoreError};
use ikigai_actors::StoredMessage;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use uuid::Uuid;

/// Messages asked of the consumer at once.
const PAGE: usize = 1000;
/// How long a page may take: it asks for no more than the consumer has pending, so it waits
/// this long only when messages were acknowledged (deleted) while it read.
const BATCH_WAIT: Duration = Duration::from_millis(500);

/// Why a stream message is not a mailbox message.
#[derive(Debug, Error)]
enum EntryError {
    #[error("header {0} is missing or not UTF-8")]
    Missing(&'static str),
    #[error("id: {0}")]
    Id(#[from] uuid::Error),
    #[error("header {AT} is not a time in ms")]
    At,
    #[error("payload: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("stream sequence {0} is beyond a seq")]
    Seq(u64),
}

/// A stream message as read: its sequence, headers and payload.
pub(super) struct Raw {
    pub seq: u64,
    headers: Option<HeaderMap>,
    payload: Bytes,
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &'static str) -> Result<&'a str, EntryError> {
    let found = match name {
        MSG_ID => headers.and_then(|h| h.get(NATS_MESSAGE_ID)),
        _ => headers.and_then(|h| h.get(name)),
    };
    found.map(|v| v.as_str()).ok_or(EntryError::Missing(name))
}

fn time_of(headers: Option<&HeaderMap>) -> Result<DateTime<Utc>, EntryError> {
    let ms = header(headers, AT)?.parse().map_err(|_| EntryError::At)?;
    DateTime::from_timestamp_millis(ms).ok_or(EntryError::At)
}

fn decode(
    mailbox: &str,
    raw: &Raw,
    attempts: &HashMap<Uuid, u32>,
) -> Result<StoredMessage, EntryError> {
    let headers = raw.headers.as_ref();
    let id: Uuid = header(headers, MSG_ID)?.parse()?;
    Ok(StoredMessage {
        id,
        seq: seq_of(raw.seq).map_err(|_| EntryError::Seq(raw.seq))?,
        mailbox: mailbox.to_owned(),
        sender: header(headers, SENDER)?.to_owned(),
        payload: Arc::new(serde_json::from_slice(&raw.payload)?),
        created_at: time_of(headers)?,
        attempts: attempts.get(&id).copied().unwrap_or(0),
    })
}

/// Up to `limit` messages of `consumer`, asking for no more than it has pending.
async fn read_pages(
    consumer: &Consumer<pull::Config>,
    limit: usize,
) -> Result<Vec<Raw>, StoreError> {
    let mut pending = usize::try_from(consumer.cached_info().num_pending).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    while out.len() < limit && pending > 0 {
        let want = (limit - out.len()).min(PAGE).min(pending);
        let batch = consumer
            .batch()
            .max_messages(want)
            .expires(BATCH_WAIT)
            .messages();
        let page: Vec<_> = batch
            .await
            .map_err(store_error)?
            .try_collect()
            .await
            .map_err(store_error)?;
        let Some(last) = page.last() else { break };
        pending = usize::try_from(last.info().map_err(store_error)?.pending).unwrap_or(0);
        for m in page {
            let seq = m.info().map_err(store_error)?.stream_sequence;
            out.push(Raw {
                seq,
                headers: m.message.headers.clone(),
                payload: m.message.payload.clone(),
            });
        }
    }
    Ok(out)
}

impl NatsMailboxes {
    /// Up to `limit` unread messages of `mailbox` after the sequence `after`, oldest first.
    pub(super) async fn load(
        &self,
        opened: &Opened,
        mailbox: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let raws = self.read(opened, mailbox, after, limit, false).await?;
        let attempts = opened.meta.attempts(&token(mailbox)).await?;
        self.decode_all(opened, mailbox, raws, &attempts).await
    }

    /// The sequence of every unread message of `mailbox`, by id (read without payloads).
    pub(super) async fn locate(
        &self,
        opened: &Opened,
        mailbox: &str,
    ) -> Result<HashMap<Uuid, u64>, StoreError> {
        let raws = self.read(opened, mailbox, 0, usize::MAX, true).await?;
        let id = |raw: &Raw| header(raw.headers.as_ref(), MSG_ID).ok()?.parse().ok();
        Ok(raws
            .iter()
            .filter_map(|raw| Some((id(raw)?, raw.seq)))
            .collect())
    }

    /// Up to `limit` stream messages of `mailbox` after the sequence `after`, through an
    /// ephemeral consumer deleted after.
    pub(super) async fn read(
        &self,
        opened: &Opened,
        mailbox: &str,
        after: u64,
        limit: usize,
        headers_only: bool,
    ) -> Result<Vec<Raw>, StoreError> {
        let config = pull::Config {
            filter_subject: self.subject(mailbox),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            headers_only,
            ..Default::default()
        };
        let consumer = opened
            .stream
            .create_consumer(config)
            .await
            .map_err(store_error)?;
        let read = read_pages(&consumer, limit).await;
        let name = consumer.cached_info().name.clone();
        let _ = opened.stream.delete_consumer(&name).await;
        read
    }

    /// The messages of `raws` that decode (recorded as held here when this daemon serves
    /// `mailbox`); the others are dead-lettered.
    async fn decode_all(
        &self,
        opened: &Opened,
        mailbox: &str,
        raws: Vec<Raw>,
        attempts: &HashMap<Uuid, u32>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut good = Vec::with_capacity(raws.len());
        for raw in raws {
            match decode(mailbox, &raw, attempts) {
                Ok(m) => good.push(m),
                Err(e) => self.bury(opened, mailbox, raw, &e).await?,
            }
        }
        if self.local.serving(mailbox, Duration::ZERO) {
            let found = good
                .iter()
                .map(|m| (m.id, m.seq as u64, attempts.contains_key(&m.id)));
            self.local.hold(mailbox, found);
        }
        Ok(good)
    }

    /// Moves an undecodable message to the dead-letter subject and counts it read.
    async fn bury(
        &self,
        opened: &Opened,
        mailbox: &str,
        raw: Raw,
        error: &EntryError,
    ) -> Result<(), StoreError> {
        let dead = format!("{}.{}", self.dead, token(mailbox));
        let mut headers = raw.headers.unwrap_or_default();
        headers.insert("Ikigai-Seq", raw.seq.to_string().as_str());
        let ack = self
            .js
            .publish_with_headers(dead, headers, raw.payload)
            .await;
        ack.map_err(store_error)?.await.map_err(store_error)?;
        if self.delete(raw.seq).await? {
            opened.meta.add_read(&token(mailbox), 1).await?;
        }
        let id = format!("{}#{}", self.subject(mailbox), raw.seq);
        report(&self.stream_name, &id, error, "dead-lettered");
        Ok(())
    }

    /// The unread messages among `ids` of `mailbox`, oldest first: read by the sequences this
    /// daemon knows, or from a scan of the mailbox when it knows not every one.
    pub(super) async fn load_ids_in(
        &self,
        opened: &Opened,
        mailbox: &str,
        ids: &[Uuid],
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let seqs: Option<Vec<u64>> = ids
            .iter()
            .map(|id| self.local.held(mailbox, id).map(|h| h.seq))
            .collect();
        let Some(seqs) = seqs else {
            let all = self.load(opened, mailbox, 0, usize::MAX).await?;
            return Ok(all.into_iter().filter(|m| ids.contains(&m.id)).collect());
        };
        let subject = self.subject(mailbox);
        let got = join_all(seqs.iter().map(|&seq| opened.stream.get_raw_message(seq))).await;
        let raws: Vec<Raw> = got
            .into_iter()
            .filter_map(Result::ok)
            .filter(|m| m.subject.as_str() == subject)
            .map(|m| Raw {
                seq: m.sequence,
                headers: Some(m.headers),
                payload: m.payload,
            })
            .collect();
        let attempts = opened.meta.attempts(&token(mailbox)).await?;
        let mut found = self.decode_all(opened, mailbox, raws, &attempts).await?;
        found.retain(|m| ids.contains(&m.id));
        found.sort_by_key(|m| m.seq);
        found.dedup_by_key(|m| m.seq);
        Ok(found)
    }

    /// Counters per mailbox: unread from the stream's subjects, read from the bucket, the
    /// oldest unread's time from its first message.
    pub(super) async fn counts_in(
        &self,
        opened: &Opened,
        mailbox: Option<&str>,
    ) -> Result<Vec<MailboxCounts>, StoreError> {
        let one = mailbox.map(token);
        let filter = format!("{}.{}", self.subjects, one.as_deref().unwrap_or("*"));
        let subjects = opened
            .stream
            .info_with_subjects(filter)
            .await
            .map_err(store_error)?;
        let subjects: Vec<(String, usize)> = subjects.try_collect().await.map_err(store_error)?;
        let start = self.subjects.len() + 1;
        let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (subject, n) in subjects {
            if let Some(name) = subject.get(start..).and_then(untoken) {
                counts.entry(name).or_default().0 = n as u64;
            }
        }
        for (key, n) in opened.meta.reads(one.as_deref()).await? {
            if let Some(name) = untoken(&key) {
                counts.entry(name).or_default().1 = n;
            }
        }
        let rows = counts.into_iter().filter(|(_, (u, r))| u + r > 0);
        let rows = rows.map(|(name, (unread, read))| async move {
            let oldest_unread = match unread {
                0 => None,
                _ => self.oldest(opened, &name).await,
            };
            MailboxCounts {
                mailbox: name,
                unread,
                read,
                oldest_unread,
            }
        });
        Ok(futures::stream::iter(rows).buffered(16).collect().await)
    }

    /// When the oldest unread message of `mailbox` was sent.
    async fn oldest(&self, opened: &Opened, mailbox: &str) -> Option<DateTime<Utc>> {
        let first = opened
            .stream
            .direct_get_first_for_subject(self.subject(mailbox))
            .await
            .ok()?;
        time_of(first.headers.as_ref()).ok()
    }
}
