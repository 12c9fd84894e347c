//! The chaos test (docs/reliability.md, "Chaos"): mailbox senders and receivers, queue producers
//! and consumers load the daemon while it is `kill -9`ed at random and its Postgres is crashed
//! and restarted once; then what is left is drained, and nothing acknowledged may be lost,
//! delivered after its ack, or completed twice. The load lasts `IKIGAI_CHAOS_SECS` seconds
//! (default 45; about a minute in all with the set-up and the drain).

mod support;

use ikigai_client::{ClaimArgs, Client, ClientError, Message, Receive, Task};
use serde_json::{json, Value as Json};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::cluster::PrivatePostgres;
use support::{Daemon, TestDb};

const MAILBOXES: usize = 2;
const SENDERS_PER_MAILBOX: usize = 2;
const QUEUES: usize = 2;
const CONSUMERS_PER_QUEUE: usize = 2;
/// A call unanswered this long counts as failed: a live daemon answers within milliseconds, and
/// one that was killed closes the connection at once.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests each sender and producer keeps in flight on its connection.
const PIPELINE: usize = 4;
/// The visibility timeout of the receives, which a receiver now and then lets run out.
const VISIBILITY: Duration = Duration::from_secs(2);
/// The lease of the claims, which a consumer now and then overruns.
const LEASE: Duration = Duration::from_secs(2);
/// The open tasks a queue's producer lets wait for the consumers before it pauses.
const BACKLOG: u64 = 500;
/// How long the drain after the load may take: every message read, every task completed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_or_completed_twice_through_kills_and_a_postgres_crash() {
    let load = Duration::from_secs(
        std::env::var("IKIGAI_CHAOS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(45),
    );
    let started = Instant::now();
    let pg = PrivatePostgres::start();
    let mut d = Daemon::start_on(TestDb::create_on(&pg.url()).await, "").await;
    let shared = Arc::new(Shared::default());
    let (producers, workers) = start_load(&d, &shared).await;

    let (kills, pg_restarts) = chaos(&mut d, &pg, load).await;
    shared.producing.store(false, Ordering::Relaxed);
    futures::future::join_all(producers).await;
    let drain = Instant::now();
    let mut left = leftovers(&d.db).await;
    while !left.is_empty() && drain.elapsed() < DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = leftovers(&d.db).await;
    }
    shared.running.store(false, Ordering::Relaxed);
    futures::future::join_all(workers).await;
    let drain = drain.elapsed();

    let ledger = std::mem::take(&mut *shared.ledger());
    let mut violations = ledger.violations.clone();
    violations.extend(left);
    violations.extend(check_storage(&d.db, &ledger).await);
    println!(
        "chaos: {load:?} of load, {kills} kills, {pg_restarts} Postgres crash restart, \
         drained in {drain:.1?}, {:.1?} in all\n{}",
        started.elapsed(),
        ledger.figures()
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    assert!(kills >= load.as_secs() / 6, "the daemon was killed often");
    assert_eq!(pg_restarts, 1, "Postgres was crashed once");
    for (what, n) in ledger.volumes() {
        assert!(n >= 100, "the load did some work: {n} {what}");
    }
}

/// What the daemon acknowledged and what the clients saw, recorded by every client task.
#[derive(Default)]
struct Ledger {
    mail: Produced,
    tasks: Produced,
    /// Deliveries of each message, by id.
    delivered: HashMap<String, u32>,
    /// The messages whose ack was answered.
    acked: HashSet<String>,
    claims: u64,
    /// Answered `queue.fail`s and `queue.release`s.
    fails_and_releases: u64,
    /// Claims held past their lease before the complete.
    overruns: u64,
    /// Answered completes: task id → the attempt number it sent as its result.
    completed: HashMap<String, u64>,
    /// Completes that got no answer, or a refusal: task id → the attempt numbers they sent.
    completes_unanswered: HashMap<String, Vec<u64>>,
    reconnects: u64,
    timeouts: u64,
    /// What must never happen, as the clients saw it.
    violations: Vec<String>,
}

/// The sends (or pushes) of the load: the answered ones by id with the uid of their payload.
#[derive(Default)]
struct Produced {
    acked: HashMap<String, String>,
    unanswered: u64,
}

impl Ledger {
    fn delivered(&mut self, messages: &[Message]) {
        for m in messages {
            if self.acked.contains(&m.id) {
                self.violations.push(format!(
                    "message {} delivered after its ack was answered",
                    m.id
                ));
            }
            let sent = self.mail.acked.get(&m.id);
            if sent.is_some_and(|uid| m.payload["uid"] != uid.as_str()) {
                self.violations
                    .push(format!("message {} came with another payload", m.id));
            }
            *self.delivered.entry(m.id.clone()).or_default() += 1;
        }
    }

    fn claimed(&mut self, tasks: &[Task]) {
        self.claims += tasks.len() as u64;
        for t in tasks.iter().filter(|t| self.completed.contains_key(&t.id)) {
            self.violations.push(format!(
                "task {} claimed after its complete was answered",
                t.id
            ));
        }
    }

    fn completion(&mut self, id: &str, attempt: u64, answered: bool) {
        if !answered {
            let attempts = self.completes_unanswered.entry(id.to_owned());
            attempts.or_default().push(attempt);
        } else if self.completed.insert(id.to_owned(), attempt).is_some() {
            self.violations
                .push(format!("task {id} completed twice, both answered"));
        }
    }

    fn redeliveries(&self) -> u64 {
        let deliveries: u64 = self.delivered.values().map(|n| u64::from(*n)).sum();
        deliveries - self.delivered.len() as u64
    }

    fn volumes(&self) -> [(&'static str, u64); 4] {
        [
            ("sends answered", self.mail.acked.len() as u64),
            ("acks answered", self.acked.len() as u64),
            ("pushes answered", self.tasks.acked.len() as u64),
            ("completes answered", self.completed.len() as u64),
        ]
    }

    fn figures(&self) -> String {
        let volumes = self.volumes().map(|(what, n)| format!("{n} {what}"));
        format!(
            "{}; {} sends and {} pushes unanswered; {} messages delivered, {} redeliveries; \
             {} claims, {} completes unanswered, {} fails and releases, {} leases overrun; \
             {} reconnects, {} calls timed out",
            volumes.join(", "),
            self.mail.unanswered,
            self.tasks.unanswered,
            self.delivered.len(),
            self.redeliveries(),
            self.claims,
            self.completes_unanswered
                .values()
                .map(Vec::len)
                .sum::<usize>(),
            self.fails_and_releases,
            self.overruns,
            self.reconnects,
            self.timeouts,
        )
    }
}

/// What the client tasks share: the ledger, and the two phases of the run.
struct Shared {
    ledger: Mutex<Ledger>,
    /// Senders and producers run while this holds.
    producing: AtomicBool,
    /// Receivers and consumers run while this holds (through the drain).
    running: AtomicBool,
    /// Numbers the completes, so that a stored result names the complete that wrote it.
    attempts: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            ledger: Mutex::default(),
            producing: AtomicBool::new(true),
            running: AtomicBool::new(true),
            attempts: AtomicU64::new(0),
        }
    }
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap()
    }
}

/// Starts every client task: the producers (senders, pushers) and the workers (receivers,
/// consumers), each as an agent of its own.
async fn start_load(
    d: &Daemon,
    shared: &Arc<Shared>,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (mut producers, mut workers) = (Vec::new(), Vec::new());
    for m in 0..MAILBOXES {
        let mailbox = format!("chaos-mailbox-{m}");
        for s in 0..SENDERS_PER_MAILBOX {
            let conn = Conn::open(d, &format!("chaos-sender-{m}-{s}"), shared).await;
            producers.push(tokio::spawn(produce(conn, Kind::Mail, mailbox.clone())));
        }
        let conn = Conn::open(d, &mailbox, shared).await;
        workers.push(tokio::spawn(receive(conn, mailbox)));
    }
    for q in 0..QUEUES {
        let queue = format!("chaos-queue-{q}");
        let conn = Conn::open(d, &format!("chaos-producer-{q}"), shared).await;
        producers.push(tokio::spawn(produce(conn, Kind::Task, queue.clone())));
        for c in 0..CONSUMERS_PER_QUEUE {
            let conn = Conn::open(d, &format!("chaos-consumer-{q}-{c}"), shared).await;
            workers.push(tokio::spawn(consume(conn, queue.clone())));
        }
    }
    (producers, workers)
}

/// One agent's connection, opened again (with `hello`) after any failed call.
struct Conn {
    socket: PathBuf,
    agent: String,
    token: String,
    client: Option<Client>,
    shared: Arc<Shared>,
}

impl Conn {
    async fn open(d: &Daemon, agent: &str, shared: &Arc<Shared>) -> Conn {
        Conn {
            socket: d.socket(),
            agent: agent.to_owned(),
            token: d.token(agent).await,
            client: None,
            shared: shared.clone(),
        }
    }

    /// The connection, connecting until the daemon accepts (it may be down for a restart).
    async fn client(&mut self) -> Client {
        loop {
            if let Some(client) = &self.client {
                return client.clone();
            }
            match Client::connect_as(&self.socket, &self.agent, &self.token).await {
                Ok(client) => self.client = Some(client),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Runs `call` on the connection; on an error or a timeout the connection is dropped (the
    /// next call reconnects) and the outcome is unknown: `None`.
    async fn call<T, F, Fut>(&mut self, call: F) -> Option<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.pipeline(|c| vec![call(c)]).await.pop().flatten()
    }

    /// Runs the calls `calls` makes, pipelined on the connection; each outcome as in
    /// [`Conn::call`], and the connection is dropped if any failed.
    async fn pipeline<T, F, Fut>(&mut self, calls: F) -> Vec<Option<T>>
    where
        F: FnOnce(Client) -> Vec<Fut>,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let client = self.client().await;
        let timed = calls(client).into_iter();
        let timed = timed.map(|call| tokio::time::timeout(CALL_TIMEOUT, call));
        let outcomes = futures::future::join_all(timed).await;
        let mut ledger = self.shared.ledger();
        let mut failed = false;
        let values = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(Ok(value)) => Some(value),
                Ok(Err(_)) => {
                    failed = true;
                    None
                }
                Err(_) => {
                    ledger.timeouts += 1;
                    failed = true;
                    None
                }
            })
            .collect();
        if failed {
            ledger.reconnects += 1;
            self.client = None;
        }
        values
    }
}

/// What a producer produces.
#[derive(Clone, Copy)]
enum Kind {
    Mail,
    Task,
}

impl Kind {
    fn request(self, target: &str, uid: &str) -> (&'static str, Json) {
        match self {
            Kind::Mail => (
                "mailbox.send",
                json!({"mailbox": target, "payload": {"uid": uid}}),
            ),
            // Attempts never run out: a task caught by many kills is retried, not dead.
            Kind::Task => (
                "queue.push",
                json!({"queue": target, "payload": {"uid": uid}, "max_attempts": 1_000_000}),
            ),
        }
    }
}

/// Sends messages to a mailbox, or pushes tasks to a queue, each with a unique `uid`,
/// [`PIPELINE`] at a time, while the load runs; records which the daemon answered.
async fn produce(mut conn: Conn, kind: Kind, target: String) {
    let shared = conn.shared.clone();
    for round in 0.. {
        if matches!(kind, Kind::Task) && round % 25 == 0 {
            wait_for_consumers(&mut conn, &target).await;
        }
        if !shared.producing.load(Ordering::Relaxed) {
            return;
        }
        let uids: Vec<String> = (0..PIPELINE)
            .map(|i| format!("{}-{}", conn.agent, round * PIPELINE + i))
            .collect();
        let requests: Vec<_> = uids.iter().map(|uid| kind.request(&target, uid)).collect();
        let replies = conn
            .pipeline(|c| {
                let mut calls = Vec::new();
                for (op, args) in &requests {
                    let c = c.clone();
                    calls.push(async move { c.call::<_, Json>(op, args).await });
                }
                calls
            })
            .await;
        let mut ledger = shared.ledger();
        let produced = match kind {
            Kind::Mail => &mut ledger.mail,
            Kind::Task => &mut ledger.tasks,
        };
        for (uid, reply) in uids.into_iter().zip(replies) {
            match reply.and_then(|r| r["id"].as_str().map(str::to_owned)) {
                Some(id) => {
                    produced.acked.insert(id, uid);
                }
                None => produced.unanswered += 1,
            }
        }
    }
}

/// Waits while `queue` holds more than [`BACKLOG`] open tasks (the consumers complete them one
/// by one, slower than the pipelined pushes come), so that the drain stays short.
async fn wait_for_consumers(conn: &mut Conn, queue: &str) {
    while conn.shared.producing.load(Ordering::Relaxed) {
        let args = &json!({ "queue": queue });
        let stats = conn.call(|c| async move { c.call::<_, Json>("queue.stats", args).await });
        let open = stats.await.map(|s| {
            let count = |state: &str| s[state].as_u64().unwrap_or(0);
            count("pending") + count("scheduled") + count("claimed")
        });
        if open.is_some_and(|open| open <= BACKLOG) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The mailbox's consumer: receives and acks until the run ends. Now and then it holds what it
/// received past the visibility timeout, receives again (the messages held are delivered
/// again), and acks all of them together.
async fn receive(mut conn: Conn, mailbox: String) {
    let shared = conn.shared.clone();
    let mut held: Vec<String> = Vec::new();
    while shared.running.load(Ordering::Relaxed) {
        let args = Receive {
            mailbox: &mailbox,
            max: Some(100),
            wait_ms: Some(500),
            visibility_ms: Some(VISIBILITY.as_millis() as u64),
        };
        let args = &args;
        let received = conn.call(|c| async move { c.mailbox_receive(args).await });
        let Some(messages) = received.await else {
            continue;
        };
        shared.ledger().delivered(&messages);
        held.extend(messages.into_iter().map(|m| m.id));
        held.sort_unstable();
        held.dedup();
        if held.is_empty() {
            continue;
        }
        if rand::random_ratio(1, 50) {
            tokio::time::sleep(VISIBILITY + Duration::from_millis(500)).await;
            continue;
        }
        let (mailbox, ids) = (&mailbox, &held);
        let acked = conn.call(|c| async move { c.mailbox_ack(mailbox, ids).await });
        if acked.await.is_some() {
            shared.ledger().acked.extend(held.drain(..));
        }
    }
}

/// A queue consumer: claims and settles until the run ends. Mostly it completes, with a result
/// numbering the complete, so that the stored result names the complete that wrote it; now and
/// then it fails a task (retried at once), releases one, or overruns its lease before
/// completing (refused, unless the lease had not run out after all).
async fn consume(mut conn: Conn, queue: String) {
    let shared = conn.shared.clone();
    while shared.running.load(Ordering::Relaxed) {
        let args = ClaimArgs {
            queue: &queue,
            max: Some(10),
            wait_ms: Some(500),
            lease_ms: Some(LEASE.as_millis() as u64),
        };
        let args = &args;
        let claimed = conn.call(|c| async move { c.queue_claim(args).await });
        let Some(tasks) = claimed.await else {
            continue;
        };
        shared.ledger().claimed(&tasks);
        for task in &tasks {
            if !settle(&mut conn, &task.id).await {
                // The connection is gone, and with it the other claims of this batch.
                break;
            }
        }
    }
}

/// Settles one claimed task (see [`consume`]); false if the call failed.
async fn settle(conn: &mut Conn, id: &str) -> bool {
    let shared = conn.shared.clone();
    let choice = rand::random_range(0..1000);
    if choice < 50 {
        let settled = if choice < 30 {
            let failed = conn.call(|c| async move { c.queue_fail(id, "chaos", Some(0)).await });
            failed.await.is_some()
        } else {
            let released = conn.call(|c| async move { c.queue_release(id).await });
            released.await.is_some()
        };
        shared.ledger().fails_and_releases += u64::from(settled);
        return settled;
    }
    if choice == 50 {
        shared.ledger().overruns += 1;
        tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    }
    let attempt = shared.attempts.fetch_add(1, Ordering::Relaxed);
    let result = &json!({ "attempt": attempt });
    let completed = conn.call(|c| async move { c.queue_complete(id, Some(result)).await });
    let answered = completed.await.is_some();
    shared.ledger().completion(id, attempt, answered);
    answered
}

/// Kills the daemon (`kill -9`) every 0.5 to 3 s and restarts it, for `load`; once, two fifths
/// of the way in, crashes and restarts Postgres instead. Returns the kills and the Postgres
/// restarts.
async fn chaos(d: &mut Daemon, pg: &PrivatePostgres, load: Duration) -> (u64, u64) {
    let start = Instant::now();
    let (mut kills, mut pg_restarts) = (0, 0);
    while start.elapsed() < load {
        let pause = rand::random_range(500..3000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if pg_restarts == 0 && start.elapsed() > load * 2 / 5 {
            tokio::task::block_in_place(|| pg.crash_restart());
            pg_restarts += 1;
        } else {
            d.kill9();
            d.restart().await;
            kills += 1;
        }
    }
    (kills, pg_restarts)
}

/// What is not drained yet: the unread messages and the open tasks (the first 20 of each).
async fn leftovers(db: &TestDb) -> Vec<String> {
    let sql = "(SELECT format('unread message %s of %s', id, mailbox_name) FROM mailbox \
                WHERE read_at IS NULL LIMIT 20) \
               UNION ALL (SELECT format('open task %s %s: claimed by %s until %s, due %s, attempts %s', \
                queue_name, id, claimed_by, lease_until, scheduled_for, attempts) FROM task_queue \
                WHERE completed_at IS NULL AND failed_at IS NULL ORDER BY queue_name, priority DESC, created_at, seq LIMIT 20)";
    let rows = db.client().await.query(sql, &[]).await.expect(sql);
    rows.iter().map(|row| row.get(0)).collect()
}

/// What the tables say against what was answered: every answered send stored with its payload,
/// delivered and read; every answered push stored and completed; every stored result written by
/// the complete that was answered, or by one that was not answered when none was.
async fn check_storage(db: &TestDb, ledger: &Ledger) -> Vec<String> {
    let client = db.client().await;
    let sql = "SELECT id::text, payload->>'uid', read_at IS NOT NULL FROM mailbox";
    let messages = rows_by_id(&client, sql).await;
    let sql = "SELECT id::text, payload->>'uid', completed_at IS NOT NULL, \
               (result->>'attempt')::bigint FROM task_queue";
    let tasks = rows_by_id(&client, sql).await;
    let mut violations = Vec::new();
    for (id, uid) in &ledger.mail.acked {
        let (stored, read) = match messages.get(id) {
            Some(row) => (row.get::<_, Option<String>>(1), row.get::<_, bool>(2)),
            None => (None, false),
        };
        if stored.as_ref() != Some(uid) || !read || !ledger.delivered.contains_key(id) {
            violations.push(format!(
                "answered send {id} ({uid}): stored {stored:?}, read {read}, delivered {}",
                ledger.delivered.contains_key(id)
            ));
        }
    }
    for (id, uid) in &ledger.tasks.acked {
        let stored = tasks
            .get(id)
            .and_then(|row| row.get::<_, Option<String>>(1));
        let completed = tasks.get(id).is_some_and(|row| row.get::<_, bool>(2));
        if stored.as_ref() != Some(uid) || !completed {
            violations.push(format!(
                "answered push {id} ({uid}): stored {stored:?}, completed {completed}"
            ));
        }
    }
    for (id, row) in &tasks {
        let Some(written) = row.get::<_, Option<i64>>(3) else {
            continue;
        };
        let written = written as u64;
        let by_answered = ledger.completed.get(id);
        let unanswered = ledger.completes_unanswered.get(id);
        let expected = match by_answered {
            Some(attempt) => *attempt == written,
            None => unanswered.is_some_and(|a| a.contains(&written)),
        };
        if !expected {
            violations.push(format!(
                "task {id} holds the result of complete {written}; answered: {by_answered:?}, \
                 unanswered: {unanswered:?}"
            ));
        }
    }
    violations
}

/// The rows of `sql`, keyed by their first column.
async fn rows_by_id(
    client: &tokio_postgres::Client,
    sql: &str,
) -> HashMap<String, tokio_postgres::Row> {
    let rows = client.query(sql, &[]).await.expect(sql);
    rows.into_iter().map(|row| (row.get(0), row)).collect()
}
