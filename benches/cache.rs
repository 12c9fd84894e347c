//! `cargo bench --bench cache`: `cache.get`/`cache.set` through the daemon's socket against
//! Redis `GET`/`SET` on the same machine, same run, at equal client concurrency.
//!
//! C client connections each run `BENCH_OPS / C` operations, at most `BENCH_WINDOW` in flight,
//! `BENCH_SET_PERCENT`% sets and the rest gets over `BENCH_KEYS` keys (filled beforehand) with
//! values of about 100 bytes. Reports ops/s and p50/p99 latency (submit to reply) for each.
//! Sizes: `BENCH_OPS` (1000000), `BENCH_CLIENTS` (8), `BENCH_WINDOW` (64), `BENCH_KEYS` (10000),
//! `BENCH_SET_PERCENT` (20), `BENCH_ROUNDS` (4). Both sides are filled first (the daemon's
//! measuring starts once its fill is stored); then the ops run in rounds that alternate between
//! the daemon and Redis, so that the machine's drifts in speed weigh on both alike. Also reports
//! the CPU time per op of each process involved.

mod support;

use ikigai_client::Client;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{env, percentile, pipelined, Daemon, Db};

struct Params {
    ops: usize,
    rounds: usize,
    clients: usize,
    window: usize,
    keys: usize,
    set_percent: usize,
    /// The value every set writes, built once for both sides: as a value for the daemon, as
    /// its JSON text for Redis.
    value: Value,
    body: String,
}

/// The args of `cache.get` and `cache.set`, as an agent's typed client code sends them.
#[derive(Serialize)]
struct GetArgs<'a> {
    key: &'a str,
}

#[derive(Serialize)]
struct SetArgs<'a> {
    key: &'a str,
    value: &'a Value,
}

impl Params {
    fn key(&self, client: usize, n: usize) -> String {
        format!("k{}", (n * 7919 + client * 104_729) % self.keys)
    }

    fn is_set(&self, n: usize) -> bool {
        n % 100 < self.set_percent
    }
}

struct Run {
    name: &'static str,
    ops: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    /// CPU time each process spent during the run, named.
    cpu: Vec<(&'static str, Duration)>,
}

impl Run {
    fn new(name: &'static str) -> Run {
        Run {
            name,
            ops: 0,
            elapsed: Duration::ZERO,
            latencies_us: Vec::new(),
            cpu: Vec::new(),
        }
    }

    /// Adds a round's result to this one.
    fn absorb(&mut self, round: Run) {
        self.ops += round.ops;
        self.elapsed += round.elapsed;
        self.latencies_us.extend(round.latencies_us);
        for (who, t) in round.cpu {
            match self.cpu.iter_mut().find(|(w, _)| *w == who) {
                Some((_, total)) => *total += t,
                None => self.cpu.push((who, t)),
            }
        }
    }

    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn report(&mut self) -> u64 {
        let p50 = percentile(&mut self.latencies_us, 0.5);
        let p99 = percentile(&mut self.latencies_us, 0.99);
        println!(
            "{:<7} {:>8} ops in {:>6.2} s = {:>9.0} ops/s   p50 {:>6} us  p99 {:>6} us",
            self.name,
            self.ops,
            self.elapsed.as_secs_f64(),
            self.rate(),
            p50,
            p99
        );
        support::report_cpu(&self.cpu, self.ops, "op");
        p50
    }
}

/// Runs every client's operations through `op(client, n)`, timing each.
async fn drive<C, F, Fut>(name: &'static str, p: &Arc<Params>, conns: Vec<C>, op: F) -> Run
where
    C: Clone + Send + Sync + 'static,
    F: Fn(C, Arc<Params>, usize, usize) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_client = p.ops / p.rounds / p.clients;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(per_client * p.clients)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, conn) in conns.into_iter().enumerate() {
        let (p, latencies) = (p.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mine = Arc::new(Mutex::new(Vec::with_capacity(per_client)));
            let window = p.window;
            pipelined(per_client, window, |n| {
                let (conn, p, mine) = (conn.clone(), p.clone(), mine.clone());
                async move {
                    let t = Instant::now();
                    op(conn, p, c, n).await;
                    mine.lock().unwrap().push(t.elapsed().as_micros() as u64);
                }
            })
            .await;
            latencies
                .lock()
                .unwrap()
                .extend(mine.lock().unwrap().drain(..));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let latencies_us = std::mem::take(&mut *latencies.lock().unwrap());
    Run {
        name,
        ops: per_client * p.clients,
        elapsed,
        latencies_us,
        cpu: Vec::new(),
    }
}

/// The daemon, filled, with its clients and the Postgres backends serving it.
struct DaemonSide {
    db: Db,
    daemon: Daemon,
    clients: Vec<Client>,
    postgres: Vec<u32>,
}

impl DaemonSide {
    async fn start(p: &Params) -> DaemonSide {
        let db = Db::create("cache").await;
        let daemon = Daemon::start(&db).await;
        let clients = daemon.clients("bench", p.clients).await;
        for (c, client) in clients.iter().enumerate() {
            for k in 0..p.keys {
                let args = json!({"key": p.key(c, k), "value": p.value});
                client.submit("cache.set", &args).await.unwrap();
            }
            let last = json!({"key": "k0"});
            client.call_value("cache.get", &last).await.unwrap();
        }
        stored(&db, p.clients * p.keys).await;
        let postgres = support::backends(&db.name).await;
        DaemonSide {
            db,
            daemon,
            clients,
            postgres,
        }
    }

    async fn round(&self, p: &Arc<Params>) -> Run {
        let (pid, postgres) = (self.daemon.pid(), &self.postgres);
        let cpu = support::Cpu::start(|| {
            let daemon = ("daemon", support::cpu_time(pid));
            let postgres = ("postgres", support::cpu_times(postgres));
            vec![daemon, postgres, support::client_cpu()]
        });
        let clients = self.clients.clone();
        let mut run = drive("daemon", p, clients, |client, p, c, n| async move {
            let key = p.key(c, n);
            if p.is_set(n) {
                let args = SetArgs {
                    key: &key,
                    value: &p.value,
                };
                client.call_value("cache.set", &args).await.unwrap();
            } else {
                let args = GetArgs { key: &key };
                client.call_value("cache.get", &args).await.unwrap();
            }
        })
        .await;
        run.cpu = cpu.spent();
        run
    }

    async fn stop(self) {
        drop(self.clients);
        drop(self.daemon);
        self.db.drop_now().await;
    }
}

/// Waits until the fill's writes are stored, so that writing them behind does not overlap the
/// measured operations (Redis keeps nothing on disk here, so its fill leaves no work behind).
async fn stored(db: &Db, entries: usize) {
    let sql = support::sql(&db.url()).await;
    loop {
        let row = sql
            .query_one("SELECT count(*) FROM cache", &[])
            .await
            .unwrap();
        if row.get::<_, i64>(0) as usize >= entries {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Redis, filled, with one multiplexed connection per client.
struct RedisSide {
    conns: Vec<redis::aio::MultiplexedConnection>,
    server: Option<u32>,
}

impl RedisSide {
    /// `None` when Redis is not reachable.
    async fn connect(p: &Params) -> Option<RedisSide> {
        let redis = redis::Client::open("redis://127.0.0.1:6379/").ok()?;
        let mut conns = Vec::new();
        for _ in 0..p.clients {
            conns.push(redis.get_multiplexed_async_connection().await.ok()?);
        }
        for (c, conn) in conns.iter_mut().enumerate() {
            for k in 0..p.keys {
                let key = format!("ikigai-bench-{c}-{}", p.key(c, k));
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(&p.body)
                    .query_async(conn)
                    .await
                    .ok()?;
            }
        }
        let server = support::pid_of("redis-server");
        Some(RedisSide { conns, server })
    }

    async fn round(&self, p: &Arc<Params>) -> Run {
        let server = self.server;
        let cpu = support::Cpu::start(|| {
            let redis = server.map_or(Duration::ZERO, support::cpu_time);
            vec![("redis", redis), support::client_cpu()]
        });
        let conns = self.conns.clone();
        let mut run = drive("redis", p, conns, |mut conn, p, c, n| async move {
            let key = format!("ikigai-bench-{c}-{}", p.key(c, n));
            if p.is_set(n) {
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(&p.body)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            } else {
                let _: Option<String> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        })
        .await;
        run.cpu = cpu.spent();
        run
    }
}

#[tokio::main]
async fn main() {
    let value = json!({"user": 42, "name": "x".repeat(72)});
    let p = Arc::new(Params {
        ops: env("BENCH_OPS", 1_000_000),
        rounds: env("BENCH_ROUNDS", 4).max(1),
        clients: env("BENCH_CLIENTS", 8),
        window: env("BENCH_WINDOW", 64),
        keys: env("BENCH_KEYS", 10_000).max(1),
        set_percent: env("BENCH_SET_PERCENT", 20),
        value: value.clone(),
        body: value.to_string(),
    });
    println!(
        "cache: {} clients, window {}, {} keys, {}% sets, ~100-byte values, {} alternating rounds",
        p.clients, p.window, p.keys, p.set_percent, p.rounds
    );
    let daemon_side = DaemonSide::start(&p).await;
    let redis_side = RedisSide::connect(&p).await;
    let (mut daemon, mut redis) = (Run::new("daemon"), Run::new("redis"));
    // Rounds alternate, so that the machine's drifts in speed weigh on both sides alike.
    for _ in 0..p.rounds {
        daemon.absorb(daemon_side.round(&p).await);
        if let Some(side) = &redis_side {
            redis.absorb(side.round(&p).await);
        }
    }
    daemon_side.stop().await;
    let daemon_p50 = daemon.report();
    let mut redis = redis_side.map(|_| redis);
    let vs_redis = match redis.as_mut() {
        Some(r) => {
            let redis_p50 = r.report();
            println!(
                "p50 daemon/redis = {:.2}",
                daemon_p50 as f64 / redis_p50.max(1) as f64
            );
            format!("{:.2}", daemon.rate() / r.rate())
        }
        None => {
            println!("redis   not reachable on 127.0.0.1:6379; skipped");
            "na".to_owned()
        }
    };
    println!("cache ops_per_s={:.0} vs_redis={vs_redis}", daemon.rate());
}
