//! The interaction log: every call (answered, failed or refused) becomes one `llm_interactions`
//! row, written in batches by one writer task; writing a row settles its quota reservation.
//! Nobody waits for it; `flush` (at shutdown) waits until every queued row is written.

use super::provider::Usage;
use super::route::Attempt;
use crate::postgres;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};
use uuid::Uuid;

/// Most rows per write.
const BATCH_MAX: usize = 1024;
/// Tries of one batch before it is given up (and logged).
const TRIES: u32 = 5;

/// One row of `llm_interactions`.
#[derive(Debug, Clone)]
pub struct Interaction {
    pub id: Uuid,
    pub agent: String,
    pub thread: Option<Uuid>,
    /// The alias the agent asked for.
    pub model: String,
    pub provider: Option<String>,
    pub provider_model: Option<String>,
    pub request: Value,
    pub response: Option<Value>,
    pub usage: Usage,
    pub cost_usd: f64,
    pub latency_ms: u64,
    pub attempts: Vec<Attempt>,
    pub error: Option<String>,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    /// The quota reservation this row settles.
    pub reservation: Option<Uuid>,
}

enum Command {
    Write(Box<Interaction>),
    Flush(oneshot::Sender<()>),
}

/// The handle calls log through; cheap to clone.
#[derive(Clone)]
pub struct InteractionLog(mpsc::UnboundedSender<Command>);

impl InteractionLog {
    /// Starts the writer task on the current thread.
    pub fn start(pool: Pool) -> InteractionLog {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::task::spawn_local(run(pool, rx));
        InteractionLog(tx)
    }

    /// Queues a row; never waits.
    pub fn write(&self, interaction: Interaction) {
        if self.0.send(Command::Write(Box::new(interaction))).is_err() {
            error!("interaction log writer stopped; row lost");
        }
    }

    /// Resolves once every row queued before the call is written (or given up).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.0.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(pool: Pool, mut rx: mpsc::UnboundedReceiver<Command>) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write(i) => batch.push(*i),
                Command::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH_MAX {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            write(&pool, &batch).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Writes one batch, retrying with backoff while the database is unavailable.
async fn write(pool: &Pool, batch: &[Interaction]) {
    for attempt in 1..=TRIES {
        match postgres::llm::write_interactions(pool, batch).await {
            Ok(()) => return,
            Err(e) if attempt < TRIES => {
                warn!(rows = batch.len(), attempt, error = %e, "interaction log write failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Err(e) => error!(rows = batch.len(), error = %e, "interaction log rows lost"),
        }
    }
}
