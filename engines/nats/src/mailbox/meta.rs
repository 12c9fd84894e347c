//! What a mailbox message in the stream cannot hold, in one JetStream key-value bucket
//! (`<prefix>_mbmeta`, one value per key): the serving lease of a mailbox (`lease.<mailbox>`:
//! `<daemon> <until, ms since the epoch>`, empty when given up), how many of its messages were
//! read (`read.<mailbox>`) and how often an unread message was delivered
//! (`at.<mailbox>.<id>`, removed with its message). Mailboxes are subject tokens
//! ([`crate::subject::token`]). Every change of a lease or a count is a compare-and-set on the
//! key's revision, so daemons sharing the bucket never both win a lease nor lose a count.

use crate::store_error;
use async_nats::jetstream::kv::{CreateErrorKind, Entry, Operation, Store, UpdateErrorKind};
use async_nats::jetstream::{self, stream::StorageType};
use bytes::Bytes;
use futures::TryStreamExt;
use ikigai_actors::store::StoreError;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

/// How often a compare-and-set is tried again after another writer changed the key first.
const TRIES: usize = 16;

/// The bucket, opened (and created if missing) on first use.
pub(super) struct Meta {
    store: Store,
}

/// A lease as stored: its holder and until when (ms since the epoch).
#[derive(Debug, PartialEq)]
struct Lease<'a> {
    holder: &'a str,
    until: i64,
}

fn lease_of(value: &[u8]) -> Option<Lease<'_>> {
    let (holder, until) = std::str::from_utf8(value).ok()?.split_once(' ')?;
    Some(Lease {
        holder,
        until: until.parse().ok()?,
    })
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The live value of an entry (`None` for one deleted or purged).
fn live(entry: &Entry) -> Option<&[u8]> {
    (entry.operation == Operation::Put).then_some(&entry.value[..])
}

impl Meta {
    pub async fn open(js: &jetstream::Context, bucket: &str) -> Result<Meta, StoreError> {
        let store = match js.get_key_value(bucket).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(jetstream::kv::Config {
                    bucket: bucket.to_owned(),
                    history: 1,
                    storage: StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(store_error)?,
        };
        Ok(Meta { store })
    }

    /// Takes the lease of `mailbox` for `me` if it is free, ran out, or is `me`'s already.
    pub async fn acquire(
        &self,
        mailbox: &str,
        me: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.set_lease(mailbox, me, lease, |held| {
            held.is_none_or(|held| held.holder == me || held.until <= now_ms())
        })
        .await
    }

    /// Extends `me`'s lease of `mailbox`; false when it ran out or another holds it.
    pub async fn renew(
        &self,
        mailbox: &str,
        me: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.set_lease(mailbox, me, lease, |held| {
            held.is_some_and(|held| held.holder == me && held.until > now_ms())
        })
        .await
    }

    /// Makes `me` hold the lease of `mailbox` for `lease` from now, where `allowed` says it may
    /// given the lease held now; whether it did.
    async fn set_lease(
        &self,
        mailbox: &str,
        me: &str,
        lease: Duration,
        allowed: impl Fn(Option<Lease<'_>>) -> bool,
    ) -> Result<bool, StoreError> {
        let value = lease_value(me, lease);
        self.change(&format!("lease.{mailbox}"), |now| {
            allowed(now.and_then(lease_of)).then(|| value.clone())
        })
        .await
    }

    /// Gives up `me`'s lease of `mailbox`; true when `me` held it.
    pub async fn release(&self, mailbox: &str, me: &str) -> Result<bool, StoreError> {
        self.change(&format!("lease.{mailbox}"), |now| {
            let mine = now.and_then(lease_of).is_some_and(|held| held.holder == me);
            mine.then(Bytes::new)
        })
        .await
    }

    /// Adds `n` to the read count of `mailbox`.
    pub async fn add_read(&self, mailbox: &str, n: u64) -> Result<(), StoreError> {
        let key = format!("read.{mailbox}");
        let add = |now: Option<&[u8]>| Some((now.map_or(0, count_of) + n).to_string().into());
        if self.change(&key, add).await? {
            return Ok(());
        }
        Err(StoreError::Unavailable(format!(
            "the read count of {mailbox} kept changing under {TRIES} tries"
        )))
    }

    /// Sets `key` to what `next` makes of its live value (`None`: leave it), by compare-and-set
    /// on its revision, reading again when another writer was first; whether it was set.
    async fn change(
        &self,
        key: &str,
        next: impl Fn(Option<&[u8]>) -> Option<Bytes>,
    ) -> Result<bool, StoreError> {
        for _ in 0..TRIES {
            let entry = self.store.entry(key).await.map_err(store_error)?;
            let Some(value) = next(entry.as_ref().and_then(live)) else {
                return Ok(false);
            };
            let written = match &entry {
                None => match self.store.create(key, value).await {
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => false,
                    other => other.map(|_| true).map_err(store_error)?,
                },
                Some(entry) => match self.store.update(key, value, entry.revision).await {
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => false,
                    other => other.map(|_| true).map_err(store_error)?,
                },
            };
            if written {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The read counts of `mailbox`, or of every mailbox with one.
    pub async fn reads(&self, mailbox: Option<&str>) -> Result<HashMap<String, u64>, StoreError> {
        let keys = self
            .keys(&format!("read.{}", mailbox.unwrap_or("*")))
            .await?;
        let mut out = HashMap::new();
        for key in keys {
            if let Some(value) = self.store.get(key.as_str()).await.map_err(store_error)? {
                out.insert(key["read.".len()..].to_owned(), count_of(&value));
            }
        }
        Ok(out)
    }

    /// The deliveries recorded for unread messages of `mailbox`, by id.
    pub async fn attempts(&self, mailbox: &str) -> Result<HashMap<Uuid, u32>, StoreError> {
        let prefix = format!("at.{mailbox}.");
        let mut out = HashMap::new();
        for key in self.keys(&format!("{prefix}*")).await? {
            let Ok(id) = key[prefix.len()..].parse() else {
                continue;
            };
            if let Some(value) = self.store.get(key.as_str()).await.map_err(store_error)? {
                out.insert(id, u32::try_from(count_of(&value)).unwrap_or(u32::MAX));
            }
        }
        Ok(out)
    }

    /// Records `attempts` deliveries of message `id` of `mailbox`.
    pub async fn put_attempts(
        &self,
        mailbox: &str,
        id: Uuid,
        attempts: u32,
    ) -> Result<(), StoreError> {
        let key = format!("at.{mailbox}.{id}");
        self.store
            .put(key, attempts.to_string().into())
            .await
            .map(drop)
            .map_err(store_error)
    }

    /// Removes the delivery count of message `id` of `mailbox` (it was read), leaving no
    /// tombstone.
    pub async fn forget_attempts(&self, mailbox: &str, id: Uuid) -> Result<(), StoreError> {
        let subject = format!("{}at.{mailbox}.{id}", self.store.prefix);
        self.store
            .stream
            .purge()
            .filter(subject)
            .await
            .map(drop)
            .map_err(store_error)
    }

    /// The keys matching `filter` (a key with `*` wildcards) that hold a value: one request.
    async fn keys(&self, filter: &str) -> Result<Vec<String>, StoreError> {
        let subjects = self
            .store
            .stream
            .info_with_subjects(format!("{}{filter}", self.store.prefix))
            .await
            .map_err(store_error)?;
        let subjects: Vec<(String, usize)> = subjects.try_collect().await.map_err(store_error)?;
        let prefix = self.store.prefix.len();
        Ok(subjects
            .into_iter()
            .filter_map(|(subject, _)| subject.get(prefix..).map(str::to_owned))
            .collect())
    }
}

fn lease_value(me: &str, lease: Duration) -> Bytes {
    let ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    format!("{me} {}", now_ms().saturating_add(ms)).into()
}

fn count_of(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_parse() {
        assert_eq!(
            lease_of(b"d1 42"),
            Some(Lease {
                holder: "d1",
                until: 42
            })
        );
        assert_eq!(lease_of(b""), None);
        assert_eq!(lease_of(b"d1"), None);
        assert_eq!(lease_of(b"d1 soon"), None);
        assert_eq!(count_of(b"12"), 12);
        assert_eq!(count_of(b"x"), 0);
    }
}
