//! Start-up and shutdown of `ikigai-daemon`: lock the root, load the configuration, open the
//! database, start the actors and replay what is pending, serve the socket, start the deployed
//! agents, and on SIGTERM or SIGINT stop accepting, finish in-flight requests, stop the agents
//! (TERM, then KILL after each one's grace), flush persistence and remove the socket.

use crate::agents::Agents;
use crate::backends::{cache_config, Backends};
use crate::config::{Config, ConfigError};
use crate::identity::{Identities, IdentityError};
use crate::llm::Llm;
use crate::postgres::{Database, DbError, PgRegistryStore};
use crate::root::{Root, RootError, RootLock};
use crate::server;
use crate::services::{Services, Shutdown, Status};
use actix::{Actor, Addr};
use ikigai_actors::mailbox::{MailboxConfig, Mailboxes};
use ikigai_actors::persist::{Flush, Journal, Lanes, Persister};
use ikigai_actors::pubsub::Hub;
use ikigai_actors::queue::{QueueConfig, Queues};
use ikigai_actors::store::StoreError;
use ikigai_actors::store::{BackendError, Needs};
use ikigai_actors::telemetry::{Telemetry, TelemetryConfig, DAEMON_AGENT};
use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

/// Where the daemon runs and which configuration file it was told to use.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    pub config: Option<PathBuf>,
}

/// Why the daemon could not start (or stop cleanly).
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Root(#[from] RootError),
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("identities: {0}")]
    Identity(#[from] IdentityError),
    #[error("replaying queues or agents: {0}")]
    Replay(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("LLM providers: {0}")]
    Llm(String),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: Options) -> Result<(), StartError> {
    actix_rt::System::new().block_on(start(opts))
}

async fn start(opts: Options) -> Result<(), StartError> {
    // Installed first: a SIGTERM that arrives while the daemon starts, or just after it began
    // to answer, is a request to shut down cleanly, never the default action's abrupt exit.
    let signals = Signals::install()?;
    let root = Root::new(&opts.root);
    let lock = root.lock()?;
    let config = Config::locate(opts.config.as_deref(), &root.config())?;
    info!(config = %config.source, root = %root.dir().display(), "starting ikigai-daemon");
    let db = Database::open(&config.postgres, &root).await?;
    let result = serve(&root, &lock, config, &db, signals).await;
    db.close();
    result
}

async fn serve(
    root: &Root,
    lock: &RootLock,
    config: Config,
    db: &Database,
    mut signals: Signals,
) -> Result<(), StartError> {
    let identities = Identities::new(db.pool.clone(), root.clone());
    identities.ensure_admin().await?;
    let origin = root.daemon_id()?;
    let backends = Backends::connect(&config, db, &origin).await?;
    let telemetry_sink = backends.telemetry(&config)?;
    let telemetry = Telemetry::start(telemetry_sink.clone(), telemetry_config(&config));
    ikigai_actors::store::undecodable::report_to(telemetry.clone());
    let loaded =
        serde_json::json!({"config": config.source, "root": root.dir().display().to_string()});
    telemetry.record(DAEMON_AGENT, "config_loaded", loaded);
    let needs = Needs {
        origin: &origin,
        cache: cache_config(&config),
        telemetry: &telemetry,
    };
    let stores = backends.stores(&config, &needs)?;
    backends.maintain(&config);
    let mailbox_config = MailboxConfig {
        max_buffered: config.mailboxes.max_buffered,
        lease: config.mailboxes.lease,
        idle: config.mailboxes.idle,
    };
    let m = stores.mailboxes;
    let mailbox_lane = Persister::new(Journal::Mailbox(m.journal)).start();
    let mailboxes = Mailboxes::new(
        m.store.clone(),
        mailbox_lane.clone(),
        mailbox_config,
        telemetry.clone(),
    );
    let q = stores.queues;
    let lane = |journal| Persister::new(Journal::Queue(journal)).start();
    let lanes = Lanes {
        main: lane(q.main),
        pushes: lane(q.pushes),
        claims: lane(q.claims),
    };
    let queue_config = QueueConfig {
        window: config.queues.window,
        idle: config.queues.idle,
    };
    let queues = Queues::new(q.store, lanes.clone(), queue_config);
    let queues_replayed = queues.replay(&origin).await?;
    tokio::task::spawn_local(queues.clone().follow(q.feed));
    tokio::task::spawn_local(mailboxes.clone().follow(m.feed));
    tokio::task::spawn_local(sweep_leases(queues.clone(), config.queues.sweep));
    let cache = stores.cache;
    let pubsub = Hub::start(stores.pubsub);
    let registry = Arc::new(PgRegistryStore::new(db.pool.clone()));
    let llm = Llm::start(config.llm.clone(), db.pool.clone(), registry.clone())
        .map_err(StartError::Llm)?;
    let llm = Rc::new(llm);
    let agents = Agents::new(
        registry,
        identities.clone(),
        telemetry.clone(),
        root,
        origin.clone(),
    );
    let (trigger, shutdown) = Shutdown::new();
    let grace = config.daemon.shutdown_grace;
    let services = Services {
        units: stores.units,
        origin: Rc::from(origin.as_str()),
        config: Rc::new(config),
        mailboxes: mailboxes.clone(),
        mailbox_store: m.store,
        queues,
        identities,
        agents: agents.clone(),
        telemetry: telemetry.clone(),
        telemetry_sink,
        documents: stores.documents,
        cache: cache.clone(),
        pubsub,
        llm: llm.clone(),
        status: Rc::new(Status {
            started: Instant::now(),
            root: root.dir().display().to_string(),
            database: db.target.clone(),
            connections: Cell::new(0),
        }),
        shutdown,
    };
    let listener = root.bind(lock)?;
    crate::agents::isolation::prepare(root)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    info!(
        socket = %root.socket().display(),
        queues_replayed,
        "listening"
    );
    let server = tokio::task::spawn_local(server::run(listener, services));
    // Agents start once the socket they connect to is served.
    let agents_replayed = agents.replay().await?;
    info!(agents_replayed, "agents replayed");
    let signal = signals.next().await;
    info!(signal, "shutting down: finishing in-flight requests");
    trigger.trigger();
    if tokio::time::timeout(grace, server).await.is_err() {
        warn!(
            grace_ms = grace.as_millis() as u64,
            "in-flight requests did not finish in time"
        );
    }
    info!("stopping agents");
    agents.shutdown().await;
    mailboxes.release_all().await;
    lanes.flush().await;
    flush(&mailbox_lane).await;
    cache.flush().await;
    llm.flush().await;
    telemetry.flush().await;
    root.unbind();
    info!("stopped");
    Ok(())
}

/// The slow safety sweep: releases leases that ran out under a daemon that died.
async fn sweep_leases(queues: Queues, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = queues.sweep(every).await {
            warn!(error = %e, "lease sweep failed");
        }
    }
}

/// Returns once every write submitted to `lane` has been committed or has failed.
async fn flush(lane: &Addr<Persister>) {
    let (done, flushed) = tokio::sync::oneshot::channel();
    lane.do_send(Flush(done));
    let _ = flushed.await;
}

fn telemetry_config(config: &Config) -> TelemetryConfig {
    let days = config.telemetry.retention_days;
    TelemetryConfig {
        max_buffered: config.telemetry.max_buffered,
        batch_max: 4096,
        retention: (days > 0).then(|| Duration::from_secs(days * 86_400)),
        purge_every: Duration::from_secs(3600),
    }
}

/// The signals that stop the daemon, caught from the moment it starts.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The name of the next signal that arrives (or arrived since `install`).
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
