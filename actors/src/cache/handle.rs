//! The cache as request handlers see it: the state shared with the cache actor on the daemon's
//! one thread, read and changed in place.
//!
//! Requests never wait on the actor's mailbox: a handle borrows the state, answers, and wakes the
//! actor only when changes start waiting to be stored (once per write-behind batch). The actor
//! loads the state before the handle serves anything, writes behind, sweeps, and reloads after a
//! panic of the cache's logic.

use super::actor::{CacheActor, CacheConfig, Reload, WriteBehind};
use super::state::Clock;
use super::{Cache, CacheError, CacheState, CacheStore};
use crate::persist::Flush;
use crate::supervise::contain;
use crate::telemetry::Telemetry;
use actix::Addr;
use async_trait::async_trait;
use ikigai_protocol::Packed;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tracing::error;

/// What the handles and the actor share.
pub(super) struct Shared {
    pub(super) state: RefCell<CacheState>,
    /// True once the stored entries are loaded; false again while reloading after a panic.
    pub(super) ready: watch::Sender<bool>,
}

/// A handle to the daemon's cache; cheap to clone, lives on the daemon's thread.
#[derive(Clone)]
pub struct CacheHandle {
    shared: Rc<Shared>,
    actor: Addr<CacheActor>,
}

impl CacheHandle {
    /// Starts the supervised cache actor, which loads the stored entries; requests wait for that.
    pub fn start(
        store: Arc<dyn CacheStore>,
        config: CacheConfig,
        telemetry: Telemetry,
    ) -> CacheHandle {
        let shared = Rc::new(Shared {
            state: RefCell::new(CacheState::new(config.max_bytes)),
            ready: watch::Sender::new(false),
        });
        let actor = CacheActor::start(shared.clone(), store, config, telemetry);
        CacheHandle { shared, actor }
    }

    /// Sets a key as [`Cache::set`] does, without waiting: at once when the cache is
    /// loaded (the effect of a committed transaction is seen by the requests that follow), else
    /// as soon as it is.
    pub fn set_soon(&self, key: String, value: Packed, ttl: Option<Duration>) {
        if *self.shared.ready.borrow() {
            let _ = self.set_loaded(key, value, ttl);
        } else {
            let cache = self.clone();
            tokio::task::spawn_local(async move { cache.set(key, value, ttl).await });
        }
    }

    fn set_loaded(
        &self,
        key: String,
        value: Packed,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        self.run(|s, now| {
            let expires = ttl.map(|t| now.now_ms().saturating_add(t.as_millis() as i64));
            s.set(key, value, expires)
        })?
    }

    async fn ready(&self) {
        if *self.shared.ready.borrow() {
            return;
        }
        let _ = self.shared.ready.subscribe().wait_for(|ready| *ready).await;
    }

    /// Runs cache logic on the state with panics contained: a panic empties the state and has
    /// the actor reload it from storage (requests wait meanwhile). Wakes the actor when changes
    /// start waiting to be stored.
    fn run<T>(&self, f: impl FnOnce(&mut CacheState, &Now) -> T) -> Result<T, CacheError> {
        let now = Now::default();
        let mut state = self.shared.state.borrow_mut();
        let had_unstored = state.has_unstored();
        let result = contain(|| f(&mut state, &now));
        let wake = !had_unstored && state.has_unstored();
        drop(state);
        match result {
            Ok(value) => {
                if wake {
                    self.actor.do_send(WriteBehind);
                }
                Ok(value)
            }
            Err(p) => {
                error!(panic = %p.0, "cache logic panicked; reloading");
                self.shared.ready.send_replace(false);
                self.actor.do_send(Reload);
                Err(CacheError::Panicked(p.0))
            }
        }
    }
}

#[async_trait(?Send)]
impl Cache for CacheHandle {
    /// The value of a live key; marks it recently used.
    async fn get(&self, key: &str) -> Result<Option<Packed>, CacheError> {
        self.ready().await;
        self.run(|s, now| s.get(key, now))
    }

    /// The values of several keys, `None` where absent.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Packed>>, CacheError> {
        self.ready().await;
        self.run(|s, now| keys.iter().map(|k| s.get(k, now)).collect())
    }

    /// Sets a key, with an optional time to live.
    async fn set(
        &self,
        key: String,
        value: Packed,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        self.ready().await;
        self.set_loaded(key, value, ttl)
    }

    /// Removes a key; answers whether it was live.
    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        self.ready().await;
        self.run(|s, now| s.delete(key, now))
    }

    /// Adds `by` to an integer key; answers the new value.
    async fn incr(&self, key: &str, by: i64) -> Result<i64, CacheError> {
        self.ready().await;
        self.run(|s, now| s.incr(key, by, now))?
    }

    /// Resolves once every change made so far is stored.
    async fn flush(&self) {
        let (flushed, done) = oneshot::channel();
        self.actor.do_send(Flush(flushed));
        let _ = done.await;
    }
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The system's time, read at most once per request and only if an expiry needs it (reading
/// the clock cost ~2% of the daemon's time under the cache benchmark, whose keys never expire).
#[derive(Default)]
struct Now(Cell<Option<i64>>);

impl Clock for &Now {
    fn now_ms(self) -> i64 {
        let now = self.0.get().unwrap_or_else(now_ms);
        self.0.set(Some(now));
        now
    }
}
