//! The cache actor: one per daemon, supervised; answers from memory and writes behind.

use super::{CacheError, CacheState, CacheStore, CacheWrite};
use crate::persist::Flush;
use crate::store::StoreError;
use crate::supervise::contain;
use crate::telemetry::{Telemetry, DAEMON_AGENT};
use actix::prelude::*;
use serde_json::Value;
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

/// The value of a live key.
#[derive(Message)]
#[rtype(result = "Result<Option<Arc<Value>>, CacheError>")]
pub struct Get(pub String);

/// The values of several keys, `None` where absent.
#[derive(Message)]
#[rtype(result = "Result<Vec<Option<Arc<Value>>>, CacheError>")]
pub struct GetMany(pub Vec<String>);

/// Sets a key, with an optional time to live.
#[derive(Message)]
#[rtype(result = "Result<(), CacheError>")]
pub struct Set {
    pub key: String,
    pub value: Value,
    pub ttl: Option<Duration>,
}

/// Removes a key; answers whether it was live.
#[derive(Message)]
#[rtype(result = "Result<bool, CacheError>")]
pub struct Delete(pub String);

/// Adds `by` to an integer key; answers the new value.
#[derive(Message)]
#[rtype(result = "Result<i64, CacheError>")]
pub struct Incr {
    pub key: String,
    pub by: i64,
}

/// The cache.
pub struct Cache {
    state: CacheState,
    store: Arc<dyn CacheStore>,
    config: CacheConfig,
    telemetry: Telemetry,
    writing: bool,
    write_failures: u32,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Cache {
    /// Starts the supervised cache actor; it loads the stored entries before serving.
    pub fn start(
        store: Arc<dyn CacheStore>,
        config: CacheConfig,
        telemetry: Telemetry,
    ) -> Addr<Cache> {
        Supervisor::start(move |_| Cache {
            state: CacheState::new(config.max_bytes),
            store,
            config,
            telemetry,
            writing: false,
            write_failures: 0,
            flushes: Vec::new(),
        })
    }

    /// Runs cache logic with panics contained; a panic restarts the actor (reload).
    fn guarded<T>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut CacheState, i64) -> T,
    ) -> Result<T, CacheError> {
        let now = now_ms();
        let result = contain(|| f(&mut self.state, now)).map_err(|p| {
            error!(panic = %p.0, "cache logic panicked; restarting");
            ctx.stop();
            CacheError::Panicked(p.0)
        });
        self.write_behind(ctx);
        result
    }

    /// Loads every stored entry; blocks other messages until done, retrying with backoff.
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
        ctx.wait(load.into_actor(self).map(|rows, act, _| {
            act.state.load(rows, now_ms());
            debug!(
                entries = act.state.len(),
                bytes = act.state.bytes(),
                "cache loaded"
            );
        }));
    }

    /// Stores the changes made since the last write, one batch at a time.
    fn write_behind(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        if !self.state.has_unstored() {
            self.flushes.drain(..).for_each(|f| {
                let _ = f.send(());
            });
            return;
        }
        self.writing = true;
        let writes = self.state.take_unstored();
        let store = self.store.clone();
        let write = async move {
            let result = store.write(&writes).await;
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

    fn write_failed(&mut self, ctx: &mut Context<Self>, writes: Vec<CacheWrite>, e: StoreError) {
        self.write_failures += 1;
        let delay = backoff(self.write_failures);
        warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "storing cache writes failed");
        self.state.unstored_again(writes);
        self.writing = true;
        ctx.run_later(delay, |act, ctx| {
            act.writing = false;
            act.write_behind(ctx);
        });
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        if let Ok(n) = self.guarded(ctx, |s, now| s.sweep(now)) {
            if n > 0 {
                debug!(expired = n, entries = self.state.len(), "cache swept");
            }
        }
        let store = self.store.clone();
        let sweep = async move { store.sweep(now).await };
        ctx.spawn(sweep.into_actor(self).map(|result, _, _| {
            if let Err(e) = result {
                warn!(error = %e, "sweeping stored cache entries failed");
            }
        }));
    }
}

impl Actor for Cache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64 * 1024);
        self.load(ctx);
        ctx.run_interval(self.config.sweep_interval, |act, ctx| act.sweep(ctx));
    }
}

impl Supervised for Cache {
    fn restarting(&mut self, _: &mut Context<Self>) {
        warn!("cache actor restarting; reloading from storage");
        let payload = serde_json::json!({"actor": "cache"});
        self.telemetry
            .record(DAEMON_AGENT, "actor_restarted", payload);
        self.state.reset();
        self.writing = false;
    }
}

impl Handler<Get> for Cache {
    type Result = Result<Option<Arc<Value>>, CacheError>;

    fn handle(&mut self, msg: Get, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, |s, now| s.get(&msg.0, now))
    }
}

impl Handler<GetMany> for Cache {
    type Result = Result<Vec<Option<Arc<Value>>>, CacheError>;

    fn handle(&mut self, msg: GetMany, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, |s, now| msg.0.iter().map(|k| s.get(k, now)).collect())
    }
}

impl Handler<Set> for Cache {
    type Result = Result<(), CacheError>;

    fn handle(&mut self, msg: Set, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, |s, now| {
            let expires = msg.ttl.map(|t| now.saturating_add(t.as_millis() as i64));
            s.set(msg.key, Arc::new(msg.value), expires)
        })?
    }
}

impl Handler<Delete> for Cache {
    type Result = Result<bool, CacheError>;

    fn handle(&mut self, msg: Delete, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, |s, now| s.delete(&msg.0, now))
    }
}

impl Handler<Incr> for Cache {
    type Result = Result<i64, CacheError>;

    fn handle(&mut self, msg: Incr, ctx: &mut Context<Self>) -> Self::Result {
        self.guarded(ctx, |s, now| s.incr(&msg.key, msg.by, now))?
    }
}

impl Handler<Flush> for Cache {
    type Result = ();

    fn handle(&mut self, msg: Flush, ctx: &mut Context<Self>) {
        self.flushes.push(msg.0);
        self.write_behind(ctx);
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
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
