//! Cache: keys and JSON values (kept as msgpack) served from memory, written behind to storage.
//!
//! [`CacheState`] holds the rules (expiry, the least-recently-used bound, atomic counters, the
//! coalesced writes still to be stored). Requests reach it through a [`CacheHandle`], in place on
//! the daemon's thread; [`CacheActor`] is the supervised actor beside it, which loads the stored
//! entries at start, writes changes behind in batches, compacts storage and sweeps expired keys.
//!
//! Requests see the service as a [`Cache`]: the handle is its in-memory engine, and an engine
//! whose own server holds the entries (Redis) implements [`Cache`] directly.

mod actor;
mod handle;
mod state;

pub use actor::{CacheActor, CacheConfig};
pub use handle::CacheHandle;
pub use state::CacheState;

use crate::store::StoreError;
use async_trait::async_trait;
use ikigai_protocol::Packed;
use std::time::Duration;
use thiserror::Error;

/// The cache service as requests use it. Keys are full keys (`<namespace>/<key>`).
#[async_trait(?Send)]
pub trait Cache {
    /// The value of a live key.
    async fn get(&self, key: &str) -> Result<Option<Packed>, CacheError>;

    /// The values of several keys, `None` where absent, in the order asked.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Packed>>, CacheError>;

    /// Sets a key, with an optional time to live.
    async fn set(
        &self,
        key: String,
        value: Packed,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError>;

    /// Removes a key; answers whether it was live.
    async fn delete(&self, key: &str) -> Result<bool, CacheError>;

    /// Adds `by` to an integer key (absent: 0), keeping its time to live; answers the new value.
    async fn incr(&self, key: &str, by: i64) -> Result<i64, CacheError>;

    /// Resolves once every change made so far is stored.
    async fn flush(&self);
}

/// A stored entry. `key` is the full key (`<namespace>/<key>`); expiry in Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheRow {
    pub key: String,
    pub value: Packed,
    pub expires_ms: Option<i64>,
}

/// A change to store.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheWrite {
    Put(CacheRow),
    Remove(String),
}

/// Why a cache request failed.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum CacheError {
    #[error("entry of {bytes} bytes exceeds the cache's max_bytes ({max})")]
    TooLarge { bytes: usize, max: usize },
    #[error("the value of {0:?} is not an integer")]
    NotInteger(String),
    #[error("incrementing {0:?} overflows a 64-bit integer")]
    Overflow(String),
    #[error("the cache failed: {0}; it is reloading from storage")]
    Panicked(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Durable storage of cache entries (on Postgres, an UNLOGGED log of batches).
#[async_trait]
pub trait CacheStore: Send + Sync + 'static {
    /// Every entry stored, expired ones included (the state drops those).
    async fn load(&self) -> Result<Vec<CacheRow>, StoreError>;

    /// Stores a batch of changes (at most one per key), all or nothing.
    async fn write(&self, writes: &[CacheWrite]) -> Result<(), StoreError>;

    /// Whether storage holds enough superseded changes, against `live_bytes` of live entries
    /// (as [`CacheState::bytes`] counts them), for a [`CacheStore::compact`] to pay.
    fn wants_compaction(&self, live_bytes: usize) -> bool;

    /// Replaces what this store wrote and loaded with `live`, every live entry, all or nothing.
    /// Never runs beside a [`CacheStore::write`].
    async fn compact(&self, live: Vec<CacheRow>) -> Result<(), StoreError>;
}
