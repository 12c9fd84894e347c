//! The telemetry writer actor and the [`Telemetry`] handle services emit through.

use super::{Outbox, Retry, TelemetryError, TelemetryEvent, TelemetrySink};
use crate::persist::Flush;
use actix::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

/// Events deleted per statement when enforcing retention.
const PURGE_BATCH: usize = 10_000;

/// Tunables (`[telemetry]` in `ikigai.conf`).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Events accepted and not yet written; beyond this `emit` refuses.
    pub max_buffered: usize,
    /// Most events per write.
    pub batch_max: usize,
    /// Events older than this are deleted; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// How often retention runs (also once at start).
    pub purge_every: Duration,
}

/// What services hold to emit events. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Telemetry {
    writer: Addr<TelemetryWriter>,
    pending: Arc<AtomicUsize>,
    max_buffered: usize,
}

impl Telemetry {
    /// Starts the writer actor on the current arbiter.
    pub fn start(sink: Arc<dyn TelemetrySink>, config: TelemetryConfig) -> Telemetry {
        let pending = Arc::new(AtomicUsize::new(0));
        let max_buffered = config.max_buffered;
        let writer = TelemetryWriter {
            sink,
            outbox: Outbox::new(config.batch_max),
            writing: false,
            pending: pending.clone(),
            flushes: Vec::new(),
            config,
        }
        .start();
        Telemetry {
            writer,
            pending,
            max_buffered,
        }
    }

    /// Queues an event for writing; never waits. Refused when too many are waiting.
    pub fn emit(
        &self,
        agent: &str,
        event_type: &str,
        payload: serde_json::Value,
    ) -> Result<(), TelemetryError> {
        let waiting = self.pending.fetch_add(1, Ordering::Relaxed);
        if waiting >= self.max_buffered {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return Err(TelemetryError::Full(waiting));
        }
        let event = TelemetryEvent::new(agent, event_type, payload);
        self.writer.do_send(Emit(event));
        Ok(())
    }

    /// Emits an event of the daemon's own; one that cannot be queued is only logged.
    pub fn record(&self, agent: &str, event_type: &str, payload: serde_json::Value) {
        if let Err(e) = self.emit(agent, event_type, payload) {
            warn!(agent, event_type, error = %e, "telemetry event dropped");
        }
    }

    /// Resolves once every event accepted before the call is written (or given up).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.writer.do_send(Flush(tx));
        let _ = rx.await;
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Emit(TelemetryEvent);

/// Writes queued events one batch at a time; the next batch forms while one is written.
pub struct TelemetryWriter {
    sink: Arc<dyn TelemetrySink>,
    outbox: Outbox,
    writing: bool,
    pending: Arc<AtomicUsize>,
    flushes: Vec<oneshot::Sender<()>>,
    config: TelemetryConfig,
}

impl TelemetryWriter {
    fn write_next(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        let Some(batch) = self.outbox.next_batch() else {
            self.flushes.drain(..).for_each(|f| {
                let _ = f.send(());
            });
            return;
        };
        self.writing = true;
        let sink = self.sink.clone();
        let write = async move {
            let result = sink.write(&batch).await;
            (batch, result)
        };
        ctx.spawn(write.into_actor(self).map(|(batch, result), act, ctx| {
            act.writing = false;
            match result {
                Ok(()) => {
                    debug!(events = batch.len(), "telemetry written");
                    act.done(batch.len());
                    act.outbox.written();
                    act.write_next(ctx);
                }
                Err(e) => act.retry(ctx, batch, e),
            }
        }));
    }

    fn retry(&mut self, ctx: &mut Context<Self>, batch: Vec<TelemetryEvent>, e: impl ToString) {
        let e = e.to_string();
        match self.outbox.failed(batch) {
            Retry::After(delay) => {
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "writing telemetry failed");
                self.writing = true;
                ctx.run_later(delay, |act, ctx| {
                    act.writing = false;
                    act.write_next(ctx);
                });
            }
            Retry::GiveUp(lost) => {
                error!(error = %e, lost, "writing telemetry failed repeatedly; events dropped");
                self.done(lost);
                self.write_next(ctx);
            }
        }
    }

    fn done(&self, events: usize) {
        self.pending.fetch_sub(events, Ordering::Relaxed);
    }

    /// Deletes events older than the retention period, a batch per statement.
    fn purge(&mut self, ctx: &mut Context<Self>) {
        let Some(retention) = self.config.retention else {
            return;
        };
        let Ok(age) = chrono::Duration::from_std(retention) else {
            return;
        };
        let (sink, before) = (self.sink.clone(), chrono::Utc::now() - age);
        let purge = async move {
            let mut deleted = 0;
            loop {
                let n = sink.purge(before, PURGE_BATCH).await?;
                deleted += n;
                if n < PURGE_BATCH as u64 {
                    return Ok::<_, crate::store::StoreError>(deleted);
                }
            }
        };
        ctx.spawn(purge.into_actor(self).map(|result, _, _| match result {
            Ok(0) => {}
            Ok(deleted) => info!(deleted, "telemetry retention: old events deleted"),
            Err(e) => warn!(error = %e, "telemetry retention failed"),
        }));
    }
}

impl Actor for TelemetryWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.purge(ctx);
        ctx.run_interval(self.config.purge_every, |act, ctx| act.purge(ctx));
    }
}

impl Handler<Emit> for TelemetryWriter {
    type Result = ();

    fn handle(&mut self, msg: Emit, ctx: &mut Context<Self>) {
        self.outbox.push(msg.0);
        self.write_next(ctx);
    }
}

impl Handler<Flush> for TelemetryWriter {
    type Result = ();

    fn handle(&mut self, msg: Flush, ctx: &mut Context<Self>) {
        self.flushes.push(msg.0);
        self.write_next(ctx);
    }
}
