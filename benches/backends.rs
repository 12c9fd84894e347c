//! `cargo bench --bench backends`: each service on an alternative engine, through the daemon,
//! against the same work done directly on that engine by the bench, in the same run, at the same
//! concurrency and pipelining. Prints a line per service and engine with the ratio
//! (daemon / raw throughput) and last `backends min_ratio=<lowest> engines=<engines measured>`.
//!
//! Redis (`redis://127.0.0.1:6379`):
//! * cache: `BENCH_CLIENTS` (8) connections, `BENCH_WINDOW` (64) in flight each, `BENCH_OPS`
//!   (400000) operations, 20% `cache.set` / 80% `cache.get` over `BENCH_KEYS` (10000) keys,
//!   against `SET`/`GET` of the same bytes.
//! * pubsub: a publisher on one daemon, a subscriber on another, both on Redis; `BENCH_MESSAGES`
//!   (100000) publications of ~100 bytes, `BENCH_WINDOW` in flight; time from the first publish to
//!   the last delivery, against `PUBLISH` on one connection and `SUBSCRIBE` on another.
//!
//! * mailbox: `BENCH_MESSAGES` sends (`BENCH_WINDOW` in flight) while the owner receives (up to
//!   1000 at a time) and acks each batch, against `XADD` / `XREADGROUP` / `XACK` with one group.
//! * queue: `BENCH_MESSAGES` pushes while a worker claims up to `BENCH_WINDOW` at a time and
//!   completes them (all of a claim in flight at once), against Redis's reliable list queue:
//!   `LPUSH`, `LMOVE` into a processing list (a pipeline of `BENCH_WINDOW`), `LREM` when done.
//!
//! NATS: pubsub and mailbox as above, against core NATS and raw JetStream (`backends/nats.rs`).
//! RabbitMQ: the queue again, against lapin alone (`backends/rabbitmq.rs`).
//!
//! `BENCH_SERVICES` (e.g. `cache,queue`) measures only those; `BENCH_ENGINES` (e.g. `nats`)
//! only those engines.
//!
//! Rounds (`BENCH_ROUNDS`, 3) alternate between the daemon and the raw engine, so that the
//! machine's drifts in speed weigh on both alike.

#[path = "backends/nats.rs"]
mod nats;
#[path = "backends/rabbitmq.rs"]
mod rabbitmq;
mod support;

use futures::StreamExt;
use ikigai_client::Client;
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{env, pipelined, Daemon, Db};

const REDIS: &str = "redis://127.0.0.1:6379";

struct Params {
    rounds: usize,
    clients: usize,
    window: usize,
    ops: usize,
    keys: usize,
    messages: usize,
    value: Value,
}

/// One service on one engine: its throughput through the daemon and directly, and the CPU
/// time per operation each process spent on either side.
struct Measured {
    service: &'static str,
    engine: &'static str,
    unit: &'static str,
    daemon: f64,
    raw: f64,
    cpu: [Spent; 2],
    count: usize,
}

/// CPU time by process over several timed runs.
#[derive(Default)]
struct Spent(Vec<(&'static str, Duration)>);

impl Spent {
    /// Times `run`, adding what the daemons (`pids`), the engine's server and this process
    /// spent.
    async fn time<F: std::future::Future<Output = Duration>>(
        &mut self,
        engine: &'static str,
        pids: &[u32],
        run: F,
    ) -> Duration {
        let server = support::pid_of(&format!("{engine}-server"));
        let cpu = support::Cpu::start(|| {
            let redis = (engine, server.map_or(Duration::ZERO, support::cpu_time));
            let daemons = ("daemon", support::cpu_times(pids));
            vec![daemons, redis, support::client_cpu()]
        });
        let elapsed = run.await;
        for (who, t) in cpu.spent() {
            match self.0.iter_mut().find(|(w, _)| *w == who) {
                Some((_, total)) => *total += t,
                None => self.0.push((who, t)),
            }
        }
        elapsed
    }
}

impl Measured {
    fn ratio(&self) -> f64 {
        self.daemon / self.raw
    }

    fn report(&self) {
        println!(
            "{:<8} {:<6} daemon {:>9.0} {}/s   raw {:>9.0} {}/s   ratio {:.2}",
            self.service,
            self.engine,
            self.daemon,
            self.unit,
            self.raw,
            self.unit,
            self.ratio()
        );
        for (side, spent) in ["daemon", "raw"].iter().zip(&self.cpu) {
            let per: Vec<String> = (spent.0.iter())
                .filter(|(_, t)| !t.is_zero())
                .map(|(who, t)| format!("{who} {:.1}", t.as_secs_f64() * 1e6 / self.count as f64))
                .collect();
            println!(
                "         cpu us per {} ({side}): {}",
                self.unit,
                per.join(", ")
            );
        }
    }
}

/// Both sides of one service's measurement on `engine`, over its alternating rounds.
struct Sides {
    engine: &'static str,
    daemon: Duration,
    raw: Duration,
    cpu: [Spent; 2],
}

impl Sides {
    fn on(engine: &'static str) -> Sides {
        Sides {
            engine,
            daemon: Duration::ZERO,
            raw: Duration::ZERO,
            cpu: Default::default(),
        }
    }

    /// Times a round through the daemons `pids`.
    async fn daemon(&mut self, pids: &[u32], run: impl std::future::Future<Output = Duration>) {
        self.daemon += self.cpu[0].time(self.engine, pids, run).await;
    }

    /// Times a round directly on the engine.
    async fn raw(&mut self, run: impl std::future::Future<Output = Duration>) {
        self.raw += self.cpu[1].time(self.engine, &[], run).await;
    }

    /// The measurement of `count` operations (of every round) of `service`.
    fn measured(self, service: &'static str, unit: &'static str, count: usize) -> Measured {
        Measured {
            service,
            engine: self.engine,
            unit,
            daemon: rate(count, self.daemon),
            raw: rate(count, self.raw),
            cpu: self.cpu,
            count,
        }
    }
}

/// Operations (or messages) per second of `rounds` timed runs together.
fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

fn on_redis(services: &str, prefix: &str) -> String {
    format!("[services]\n{services}\n[redis]\nurl = {REDIS}\nprefix = {prefix}\n")
}

async fn redis_conn() -> MultiplexedConnection {
    let client = redis::Client::open(REDIS).expect("a Redis URL");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers on 127.0.0.1:6379")
}

fn key(p: &Params, client: usize, n: usize) -> String {
    format!("k{}", (n * 7919 + client * 104_729) % p.keys)
}

fn is_set(n: usize) -> bool {
    n.is_multiple_of(5)
}

/// Runs `op(conn, client, n)` for every client's share of `total`, timed as one run.
async fn drive<C, F, Fut>(conns: &[C], total: usize, window: usize, op: F) -> Duration
where
    C: Clone,
    F: Fn(C, usize, usize) -> Fut + Copy,
    Fut: std::future::Future<Output = ()>,
{
    let per_client = total / conns.len();
    let started = Instant::now();
    let runs = conns
        .iter()
        .enumerate()
        .map(|(c, conn)| pipelined(per_client, window, move |n| op(conn.clone(), c, n)));
    futures::future::join_all(runs).await;
    started.elapsed()
}

async fn cache(p: &Params) -> Measured {
    let db = Db::create("backends").await;
    let daemon = Daemon::start_with(&db, &on_redis("cache = redis", &db.name)).await;
    let clients = daemon.clients("bench", p.clients).await;
    let conns: Vec<MultiplexedConnection> = {
        let mut conns = Vec::new();
        for _ in 0..p.clients {
            conns.push(redis_conn().await);
        }
        conns
    };
    let raw_prefix = format!("{}-raw", db.name);
    let body = rmp_serde::to_vec(&p.value).expect("msgpack");
    let fill = p.keys.min(p.ops);
    drive(&clients, fill * p.clients, p.window, |c: Client, i, n| {
        let args = json!({"key": key(p, i, n), "value": p.value});
        async move {
            c.call_value("cache.set", &args).await.unwrap();
        }
    })
    .await;
    let mut sides = Sides::on("redis");
    let per_round = p.ops / p.rounds;
    let pids = [daemon.pid()];
    let through_daemon = |c: Client, i, n| {
        let k = key(p, i, n);
        async move {
            if is_set(n) {
                let args = json!({"key": k, "value": p.value});
                c.call_value("cache.set", &args).await.unwrap();
            } else {
                c.call_value("cache.get", &json!({"key": k})).await.unwrap();
            }
        }
    };
    let directly = |mut c: MultiplexedConnection, i, n| {
        let k = format!("{raw_prefix}:{}", key(p, i, n));
        let set = is_set(n).then(|| body.clone());
        async move {
            let mut cmd = redis::cmd(if set.is_some() { "SET" } else { "GET" });
            cmd.arg(k).arg(set);
            let _: redis::Value = cmd.query_async(&mut c).await.unwrap();
        }
    };
    for _ in 0..p.rounds {
        let daemon_run = drive(&clients, per_round, p.window, through_daemon);
        sides.daemon(&pids, daemon_run).await;
        sides
            .raw(drive(&conns, per_round, p.window, directly))
            .await;
    }
    drop_keys(&mut redis_conn().await, &db.name).await;
    drop_keys(&mut redis_conn().await, &raw_prefix).await;
    drop(clients);
    drop(daemon);
    db.drop_now().await;
    sides.measured("cache", "ops", per_round * p.rounds)
}

async fn pubsub(p: &Params) -> Measured {
    let config = on_redis("pubsub = redis", "{prefix}");
    pubsub_on(p, "redis", config, |prefix| {
        Box::pin(async move { directly(p, &format!("{prefix}-raw:bench")).await })
    })
    .await
}

/// Pub/sub between two daemons on `engine` (`config`, with `{prefix}` for the database's name)
/// against the raw round `raw` makes for that name.
async fn pubsub_on<'a>(
    p: &'a Params,
    engine: &'static str,
    config: String,
    raw: impl Fn(String) -> futures::future::BoxFuture<'a, Duration>,
) -> Measured {
    let db = Db::create("backends").await;
    let config = config.replace("{prefix}", &db.name);
    let (one, two) = (
        Daemon::start_with(&db, &config).await,
        Daemon::start_with(&db, &config).await,
    );
    let (publisher, subscriber) = (
        one.client("publisher").await,
        two.client("subscriber").await,
    );
    let mut sides = Sides::on(engine);
    let pids = [one.pid(), two.pid()];
    for _ in 0..p.rounds {
        sides
            .daemon(&pids, through_daemon(p, &publisher, &subscriber))
            .await;
        sides.raw(raw(db.name.clone())).await;
    }
    drop((publisher, subscriber, one, two));
    db.drop_now().await;
    sides.measured("pubsub", "msgs", p.messages * p.rounds)
}

/// Publishes `p.messages` on one daemon until the last reached the other's subscriber.
async fn through_daemon(p: &Params, publisher: &Client, subscriber: &Client) -> Duration {
    let mut subscription = subscriber.pubsub().subscribe("bench.>").await.unwrap();
    // The other daemon's PSUBSCRIBE reaches Redis a round trip after the reply: wait for it.
    loop {
        publisher
            .call_value(
                "pubsub.publish",
                &json!({"topic": "bench.probe", "message": 0}),
            )
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_millis(200), subscription.next()).await;
        if got.is_ok() {
            break;
        }
    }
    let started = Instant::now();
    let publish = pipelined(p.messages, p.window, |n| {
        let args = json!({"topic": "bench.t", "message": {"n": n, "body": p.value}});
        async move {
            publisher.call_value("pubsub.publish", &args).await.unwrap();
        }
    });
    let receive = async {
        let mut seen = 0;
        while seen < p.messages {
            match subscription.next().await {
                Some(ikigai_client::Delivery::Message(m)) => {
                    seen += usize::from(m.topic == "bench.t")
                }
                // A subscriber slower than the publisher loses its oldest (the bench would wait).
                Some(ikigai_client::Delivery::Overflow { lost }) => {
                    println!("         (the subscriber lost {lost} to overflow)");
                    seen += lost as usize;
                }
                _ => {}
            }
        }
    };
    futures::join!(publish, receive);
    started.elapsed()
}

/// The same over Redis alone: `PUBLISH` pipelined on one connection, `SUBSCRIBE` on another.
async fn directly(p: &Params, channel: &str) -> Duration {
    let client = redis::Client::open(REDIS).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(channel).await.unwrap();
    let conn = redis_conn().await;
    let body = serde_json::to_vec(&json!({"n": 0, "body": p.value})).unwrap();
    let started = Instant::now();
    let publish = pipelined(p.messages, p.window, |_| {
        let (mut conn, body) = (conn.clone(), body.clone());
        async move {
            let _: i64 = redis::cmd("PUBLISH")
                .arg(channel)
                .arg(body)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    });
    let mut messages = pubsub.on_message();
    let receive = async {
        for _ in 0..p.messages {
            messages.next().await.unwrap();
        }
    };
    futures::join!(publish, receive);
    started.elapsed()
}

/// Messages sent through the daemon, received and acked by the mailbox's owner, against
/// `XADD`, `XREADGROUP` and `XACK` on one stream with one consumer group.
async fn mailboxes(p: &Params) -> Measured {
    let db = Db::create("backends").await;
    let daemon = Daemon::start_with(&db, &on_redis("mailboxes = redis", &db.name)).await;
    let (sender, owner) = (daemon.client("sender").await, daemon.client("inbox").await);
    let stream = format!("{}-raw:stream", db.name);
    let mut sides = Sides::on("redis");
    let pids = [daemon.pid()];
    for round in 0..p.rounds {
        sides.daemon(&pids, mailbox_round(p, &sender, &owner)).await;
        sides
            .raw(stream_round(p, &format!("{stream}{round}")))
            .await;
    }
    drop_keys(&mut redis_conn().await, &format!("{}-raw", db.name)).await;
    drop((sender, owner, daemon));
    db.drop_now().await;
    sides.measured("mailbox", "msgs", p.messages * p.rounds)
}

async fn mailbox_round(p: &Params, sender: &Client, owner: &Client) -> Duration {
    let started = Instant::now();
    let send = pipelined(p.messages, p.window, |n| {
        let body = json!({"n": n, "body": p.value});
        async move {
            sender.mailbox_send("inbox", &body).await.unwrap();
        }
    });
    let receive = async {
        let mut seen = 0;
        while seen < p.messages {
            let args = ikigai_client::Receive {
                mailbox: "inbox",
                max: Some(1000),
                wait_ms: Some(1000),
                visibility_ms: None,
            };
            let got = owner.mailbox_receive(&args).await.unwrap();
            let ids: Vec<String> = got.into_iter().map(|m| m.id).collect();
            owner.mailbox_ack("inbox", &ids).await.unwrap();
            seen += ids.len();
        }
    };
    futures::join!(send, receive);
    started.elapsed()
}

async fn stream_round(p: &Params, stream: &str) -> Duration {
    let (producer, mut consumer) = (redis_conn().await, redis_conn().await);
    let _: redis::Value = redis::cmd("XGROUP")
        .arg(&["CREATE", stream, "g", "$", "MKSTREAM"])
        .query_async(&mut consumer)
        .await
        .unwrap();
    let body = serde_json::to_vec(&json!({"n": 0, "body": p.value})).unwrap();
    let started = Instant::now();
    let send = pipelined(p.messages, p.window, |_| {
        let (mut conn, body) = (producer.clone(), body.clone());
        async move {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(stream).arg("*").arg("payload").arg(body);
            let _: String = xadd.query_async(&mut conn).await.unwrap();
        }
    });
    let receive = async {
        let mut seen = 0;
        while seen < p.messages {
            let mut read = redis::cmd("XREADGROUP");
            read.arg(&[
                "GROUP", "g", "c", "COUNT", "1000", "BLOCK", "1000", "STREAMS", stream, ">",
            ]);
            let got: redis::Value = read.query_async(&mut consumer).await.unwrap();
            let ids = entry_ids(&got);
            if ids.is_empty() {
                continue;
            }
            let _: i64 = redis::cmd("XACK")
                .arg(stream)
                .arg("g")
                .arg(&ids)
                .query_async(&mut consumer)
                .await
                .unwrap();
            seen += ids.len();
        }
    };
    futures::join!(send, receive);
    started.elapsed()
}

/// The entry ids of an `XREADGROUP` reply: `[[stream, [[id, fields], ...]], ...]`, or nil.
fn entry_ids(reply: &redis::Value) -> Vec<String> {
    let redis::Value::Array(streams) = reply else {
        return Vec::new();
    };
    let entries = streams.iter().filter_map(|s| match s {
        redis::Value::Array(parts) => parts.get(1),
        _ => None,
    });
    let entries = entries.flat_map(|e| match e {
        redis::Value::Array(entries) => entries.as_slice(),
        _ => &[],
    });
    entries
        .filter_map(|entry| match entry {
            redis::Value::Array(parts) => redis::from_redis_value(parts.first()?).ok(),
            _ => None,
        })
        .collect()
}

/// Tasks pushed through the daemon, claimed and completed by a worker, against Redis's reliable
/// list queue: `LPUSH`, `LMOVE` to a processing list, `LREM` from it when done.
async fn queues(p: &Params) -> Measured {
    let db = Db::create("backends").await;
    let daemon = Daemon::start_with(&db, &on_redis("queues = redis", &db.name)).await;
    let (producer, worker) = (
        daemon.client("producer").await,
        daemon.client("worker").await,
    );
    let lists = format!("{}-raw", db.name);
    let mut sides = Sides::on("redis");
    let pids = [daemon.pid()];
    for _ in 0..p.rounds {
        sides
            .daemon(&pids, queue_round(p, &producer, &worker))
            .await;
        sides.raw(list_round(p, &lists)).await;
    }
    drop_keys(&mut redis_conn().await, &lists).await;
    drop((producer, worker, daemon));
    db.drop_now().await;
    sides.measured("queue", "tasks", p.messages * p.rounds)
}

async fn queue_round(p: &Params, producer: &Client, worker: &Client) -> Duration {
    let started = Instant::now();
    let push = pipelined(p.messages, p.window, |n| {
        let body = json!({"n": n, "body": p.value});
        async move {
            producer.queue_push("jobs", &body).await.unwrap();
        }
    });
    let work = async {
        let mut done = 0;
        while done < p.messages {
            let args = ikigai_client::ClaimArgs {
                queue: "jobs",
                max: Some(p.window as u32),
                wait_ms: Some(1000),
                lease_ms: None,
            };
            let tasks = worker.queue_claim(&args).await.unwrap();
            let completes = tasks.iter().map(|t| worker.queue_complete(&t.id, None));
            futures::future::try_join_all(completes).await.unwrap();
            done += tasks.len();
        }
    };
    futures::join!(push, work);
    started.elapsed()
}

async fn list_round(p: &Params, lists: &str) -> Duration {
    let (queue, processing) = (format!("{lists}:jobs"), format!("{lists}:processing"));
    let (producer, worker) = (redis_conn().await, redis_conn().await);
    let body = serde_json::to_vec(&json!({"n": 0, "body": p.value})).unwrap();
    let started = Instant::now();
    let push = pipelined(p.messages, p.window, |n| {
        let (mut conn, mut body) = (producer.clone(), body.clone());
        body.extend_from_slice(n.to_string().as_bytes());
        let queue = &queue;
        async move {
            let _: i64 = redis::cmd("LPUSH")
                .arg(queue)
                .arg(body)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    });
    let work = async {
        let mut done = 0;
        while done < p.messages {
            let mut claim = redis::pipe();
            for _ in 0..p.window {
                claim
                    .cmd("LMOVE")
                    .arg(&queue)
                    .arg(&processing)
                    .arg("RIGHT")
                    .arg("LEFT");
            }
            let claimed: Vec<Option<Vec<u8>>> =
                claim.query_async(&mut worker.clone()).await.unwrap();
            let claimed: Vec<Vec<u8>> = claimed.into_iter().flatten().collect();
            let mut complete = redis::pipe();
            for task in &claimed {
                complete
                    .cmd("LREM")
                    .arg(&processing)
                    .arg(1)
                    .arg(task)
                    .ignore();
            }
            let _: () = complete.query_async(&mut worker.clone()).await.unwrap();
            done += claimed.len();
        }
    };
    futures::join!(push, work);
    started.elapsed()
}

async fn drop_keys(conn: &mut MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(conn).await;
    }
}

#[tokio::main]
async fn main() {
    let p = Params {
        rounds: env("BENCH_ROUNDS", 3).max(1),
        clients: env("BENCH_CLIENTS", 8).max(1),
        window: env("BENCH_WINDOW", 64).max(1),
        ops: env("BENCH_OPS", 400_000),
        keys: env("BENCH_KEYS", 10_000).max(1),
        messages: env("BENCH_MESSAGES", 100_000),
        value: json!({"user": 42, "name": "x".repeat(72)}),
    };
    println!(
        "backends: {} clients, window {}, {} alternating rounds",
        p.clients, p.window, p.rounds
    );
    let listed = |var: &str, name: &str| {
        let only = std::env::var(var).unwrap_or_default();
        only.is_empty() || only.split(',').any(|s| s == name)
    };
    let wanted = |engine: &str, service: &str| {
        listed("BENCH_ENGINES", engine) && listed("BENCH_SERVICES", service)
    };
    let mut measured = Vec::new();
    if wanted("redis", "cache") {
        measured.push(cache(&p).await);
    }
    if wanted("redis", "pubsub") {
        measured.push(pubsub(&p).await);
    }
    if wanted("redis", "mailbox") {
        measured.push(mailboxes(&p).await);
    }
    if wanted("redis", "queue") {
        measured.push(queues(&p).await);
    }
    if wanted("nats", "pubsub") {
        measured.push(nats::pubsub(&p).await);
    }
    if wanted("nats", "mailbox") {
        measured.push(nats::mailboxes(&p).await);
    }
    if wanted("rabbitmq", "queue") {
        measured.push(rabbitmq::queues(&p).await);
    }
    measured.iter().for_each(Measured::report);
    let min = measured
        .iter()
        .map(Measured::ratio)
        .fold(f64::INFINITY, f64::min);
    let mut engines: Vec<&str> = measured.iter().map(|m| m.engine).collect();
    engines.dedup();
    println!("backends min_ratio={min:.2} engines={}", engines.join(","));
}
