//! The cache actor: one per daemon, supervised. It loads the state that the handles serve from,
//! writes its changes behind in batches, compacts storage when it asks, sweeps expired keys, and
//! reloads after a panic.

use super::handle::{now_ms, Shared};
use super::{CacheStore, CacheWrite};
use crate::persist::Flush;
use crate::store::StoreError;
use crate::supervise::contain;
use crate::telemetry::{Telemetry, DAEMON_AGENT};
use actix::prelude::*;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

/// Tunables (`[cache]` in `ikigai.conf`).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub max_bytes: usize,
    pub sweep_interval: Duration,
}

/// Most writes stored in one batch: bounded so that a batch's buffers (here and in the store)
/// stay small enough to be reused rather than freshly mapped each time.
const MAX_BATCH: usize = 1024;

/// Changes wait to be stored (sent by a handle when the first one arrives).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct WriteBehind;

/// The cache's logic panicked: restart and reload the state from storage.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Reload;

/// The cache.
pub struct CacheActor {
    shared: Rc<Shared>,
    store: Arc<dyn CacheStore>,
    config: CacheConfig,
    telemetry: Telemetry,
    writing: bool,
    write_failures: u32,
    flushes: Vec<oneshot::Sender<()>>,
}

impl CacheActor {
    /// Starts the supervised actor over `shared`; it loads the stored entries, then marks the
    /// state ready.
    pub(super) fn start(
        shared: Rc<Shared>,
        store: Arc<dyn CacheStore>,
        config: CacheConfig,
        telemetry: Telemetry,
    ) -> Addr<CacheActor> {
        Supervisor::start(move |_| CacheActor {
            shared,
            store,
            config,
            telemetry,
            writing: false,
            write_failures: 0,
            flushes: Vec::new(),
        })
    }

    /// Loads every stored entry, retrying with backoff; the handles wait until done.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let load = async move {
            let mut failures = 0u32;
            loop {
                match store.load().await {
                    Ok(rows) => return rows,
                    Err(e) => failures = retry_later("loading the cache", &e, failures).await,
                }
            }
        };
        ctx.wait(load.into_actor(self).map(|rows, act, ctx| {
            let mut state = act.shared.state.borrow_mut();
            if contain(|| state.load(rows, now_ms())).is_err() {
                error!("loading the cache panicked; restarting");
                state.reset();
                ctx.stop();
                return;
            }
            debug!(entries = state.len(), bytes = state.bytes(), "cache loaded");
            drop(state);
            act.shared.ready.send_replace(true);
            act.write_behind(ctx);
        }));
    }

    /// Stores the changes made since the last write, one batch at a time, or compacts storage
    /// first when it holds enough superseded changes.
    fn write_behind(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        if self
            .store
            .wants_compaction(self.shared.state.borrow().bytes())
        {
            return self.compact(ctx);
        }
        let writes = {
            let mut state = self.shared.state.borrow_mut();
            if !state.has_unstored() {
                drop(state);
                self.flushes.drain(..).for_each(|f| {
                    let _ = f.send(());
                });
                return;
            }
            state.take_unstored(MAX_BATCH)
        };
        self.writing = true;
        let store = self.store.clone();
        let write = async move {
            let started = std::time::Instant::now();
            let result = store.write(&writes).await;
            let ms = started.elapsed().as_millis() as u64;
            debug!(writes = writes.len(), ms, "cache write-behind batch");
            (writes, result)
        };
        ctx.spawn(write.into_actor(self).map(|(writes, result), act, ctx| {
            act.writing = false;
            match result {
                Ok(()) => {
                    act.write_failures = 0;
                    act.write_behind(ctx);
                }
                Err(e) => act.write_failed(ctx, writes, e),
            }
        }));
    }

    /// Replaces storage with every live entry (changes not yet stored included: they are stored
    /// again after, as they would have been).
    fn compact(&mut self, ctx: &mut Context<Self>) {
        let live = self.shared.state.borrow().live_rows(now_ms());
        let entries = live.len();
        self.writing = true;
        let store = self.store.clone();
        let compact = async move { store.compact(live).await };
        ctx.spawn(compact.into_actor(self).map(move |result, act, ctx| {
            act.writing = false;
            match result {
                Ok(()) => {
                    debug!(entries, "cache storage compacted");
                    act.write_failures = 0;
                    act.write_behind(ctx);
                }
                Err(e) => act.retry_storing(ctx, "compacting cache storage", e),
            }
        }));
    }

    fn write_failed(&mut self, ctx: &mut Context<Self>, writes: Vec<CacheWrite>, e: StoreError) {
        self.shared.state.borrow_mut().unstored_again(writes);
        self.retry_storing(ctx, "storing cache writes", e);
    }

    /// Tries storing again after a backoff that grows with each failure in a row.
    fn retry_storing(&mut self, ctx: &mut Context<Self>, what: &str, e: StoreError) {
        self.write_failures += 1;
        let delay = backoff(self.write_failures);
        warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "{what} failed");
        self.writing = true;
        ctx.run_later(delay, |act, ctx| {
            act.writing = false;
            act.write_behind(ctx);
        });
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let swept = {
            let mut state = self.shared.state.borrow_mut();
            contain(|| state.sweep(now)).map(|n| (n, state.len()))
        };
        match swept {
            Ok((n, entries)) if n > 0 => debug!(expired = n, entries, "cache swept"),
            Ok(_) => {}
            Err(p) => {
                error!(panic = %p.0, "sweeping the cache panicked; reloading");
                self.shared.ready.send_replace(false);
                ctx.stop();
                return;
            }
        }
        self.write_behind(ctx);
    }
}

impl Actor for CacheActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64 * 1024);
        self.load(ctx);
        ctx.run_interval(self.config.sweep_interval, |act, ctx| act.sweep(ctx));
    }
}

impl Supervised for CacheActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        warn!("cache actor restarting; reloading from storage");
        let payload = serde_json::json!({"actor": "cache"});
        self.telemetry
            .record(DAEMON_AGENT, "actor_restarted", payload);
        self.shared.ready.send_replace(false);
        self.shared.state.borrow_mut().reset();
        self.writing = false;
    }
}

impl Handler<WriteBehind> for CacheActor {
    type Result = ();

    fn handle(&mut self, _: WriteBehind, ctx: &mut Context<Self>) {
        self.write_behind(ctx);
    }
}

impl Handler<Reload> for CacheActor {
    type Result = ();

    fn handle(&mut self, _: Reload, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Flush> for CacheActor {
    type Result = ();

    fn handle(&mut self, msg: Flush, ctx: &mut Context<Self>) {
        self.flushes.push(msg.0);
        self.write_behind(ctx);
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100 << failures.min(6))
}

/// Logs a failure and sleeps for the backoff; returns the new failure count.
async fn retry_later(what: &str, e: &StoreError, failures: u32) -> u32 {
    let delay = backoff(failures + 1);
    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "{what} failed");
    tokio::time::sleep(delay).await;
    failures + 1
}
