//! `cargo bench --bench queue_throughput`: push -> claim -> complete through the daemon's
//! socket, against the seed's plain SQL path on the same Postgres, same run; then the daemon
//! beside the peer queues graphile-worker and pg-boss (`queue_throughput/peers.rs`) on the same
//! two workloads (`queue_throughput/workloads.rs`), and a long flow for how well the speed
//! lasts.
//!
//! Throughput: P producer connections pipeline `queue.push`; C consumer connections loop
//! `queue.claim {max: 100, wait_ms: 50}` and complete each task (pipelined). Wake-up latency:
//! C consumers wait in `queue.claim`, and one producer pushes one task at a time; the time from
//! the push being sent to the task arriving at a consumer is measured. Baseline: one `INSERT`
//! per task, the seed's claim `UPDATE ... FOR UPDATE SKIP LOCKED LIMIT 1`, one `UPDATE` to
//! complete, with the same concurrency. Sizes: `BENCH_TASKS` (200000), `BENCH_PRODUCERS` (4),
//! `BENCH_CONSUMERS` (8), `BENCH_WINDOW` (1024), `BENCH_SEED_TASKS` (20000),
//! `BENCH_WAKES` (2000). Below the throughput line, the CPU time per task of the daemon, of
//! every Postgres server process, of this process (the clients) and the machine's idle time.
//!
//! The comparison: `BENCH_DRAIN_TASKS` (50000) drained by `BENCH_CONSUMERS` workers, and a flow
//! of `BENCH_FLOW_SECS` (20) with `BENCH_PRODUCERS` producers keeping `BENCH_FLOW_WINDOW` (16)
//! pushes in flight each; `BENCH_PEERS=0` leaves the peers out. Sustained: a flow of
//! `BENCH_SUSTAIN_SECS` (600), its last minute's tasks over its first's. `BENCH_PARTS` (e.g.
//! `drain,flow`) runs only the parts it names of `end_to_end`, `drain`, `flow`, `sustained`. The
//! drain prints the CPU time per task of the daemon, its Postgres backends and the consumers.
//! Last line:
//! `queue_throughput drain_vs_best_peer=.. flow_vs_best_peer=.. p99_wake_ms=.. sustained=..`.

#[path = "queue_throughput/peers.rs"]
mod peers;
mod support;
#[path = "queue_throughput/workloads.rs"]
mod workloads;

use ikigai_client::ClaimArgs;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{env, finish, now_us, pipelined, sql, Daemon, Db, Run};
use workloads::{Measured, Shape};

struct Params {
    tasks: usize,
    producers: usize,
    consumers: usize,
    window: usize,
    seed_tasks: usize,
    wakes: usize,
}

async fn bench_daemon(p: &Params, daemon: &Daemon) -> Run {
    let done = Arc::new(AtomicUsize::new(0));
    let per_producer = p.tasks / p.producers;
    let total = per_producer * p.producers;
    let mut consumers = Vec::new();
    for c in 0..p.consumers {
        let client = daemon.client(&format!("worker{c}")).await;
        let stop = workloads::Stop::After(total);
        consumers.push(tokio::spawn(workloads::consume(
            client,
            "bench",
            done.clone(),
            stop,
        )));
    }
    let started = Instant::now();
    let mut producers = Vec::new();
    for i in 0..p.producers {
        let client = daemon.client(&format!("producer{i}")).await;
        producers.push(tokio::spawn(pipelined(per_producer, p.window, move |n| {
            let client = client.clone();
            async move {
                let args = json!({"queue": "bench", "payload": {"t": now_us(), "n": n}});
                let _: Value = client.call("queue.push", &args).await.unwrap();
            }
        })));
    }
    for t in producers {
        t.await.unwrap();
    }
    let mut latencies_us = Vec::new();
    for c in consumers {
        latencies_us.extend(c.await.unwrap().iter().map(|s| s.latency));
    }
    Run {
        name: "daemon",
        messages: total,
        elapsed: started.elapsed(),
        latencies_us,
    }
}

/// One task at a time to consumers already waiting: push sent -> task received.
async fn bench_wake(p: &Params, daemon: &Daemon) -> Run {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(AtomicUsize::new(0));
    let mut consumers = Vec::new();
    for c in 0..p.consumers {
        let client = daemon.client(&format!("waiter{c}")).await;
        let (latencies, received, total) = (latencies.clone(), received.clone(), p.wakes);
        consumers.push(tokio::spawn(async move {
            let args = ClaimArgs {
                queue: "wake",
                max: Some(1),
                wait_ms: Some(200),
                lease_ms: None,
            };
            while received.load(Ordering::Relaxed) < total {
                for t in client.queue_claim(&args).await.unwrap() {
                    let sent = t.payload["t"].as_u64().unwrap();
                    latencies
                        .lock()
                        .unwrap()
                        .push(now_us().saturating_sub(sent));
                    received.fetch_add(1, Ordering::Relaxed);
                    client.queue_complete(&t.id, None).await.unwrap();
                }
            }
        }));
    }
    let producer = daemon.client("waker").await;
    tokio::time::sleep(Duration::from_millis(300)).await; // everyone is waiting
    let started = Instant::now();
    for n in 0..p.wakes {
        let args = json!({"queue": "wake", "payload": {"t": now_us(), "n": n}});
        let _: Value = producer.call("queue.push", &args).await.unwrap();
        while received.load(Ordering::Relaxed) <= n {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    for c in consumers {
        c.await.unwrap();
    }
    let latencies_us = std::mem::take(&mut *latencies.lock().unwrap());
    Run {
        name: "wake",
        messages: p.wakes,
        elapsed: started.elapsed(),
        latencies_us,
    }
}

async fn bench_seed_sql(p: &Params) -> Run {
    let db = Db::with_schema("queue_seed").await;
    let per_producer = p.seed_tasks / p.producers;
    let total = per_producer * p.producers;
    let done = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..p.consumers {
        let client = sql(&db.url()).await;
        let (done, latencies) = (done.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < total {
                let row = client
                    .query_opt(
                        "UPDATE task_queue SET claimed_by = 'worker', claimed_at = now() \
                         WHERE id = (SELECT id FROM task_queue WHERE queue_name = 'bench' \
                           AND claimed_by IS NULL AND scheduled_for <= now() \
                           ORDER BY priority DESC, created_at FOR UPDATE SKIP LOCKED LIMIT 1) \
                         RETURNING id, payload",
                        &[],
                    )
                    .await
                    .unwrap();
                let Some(row) = row else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                let (id, payload): (uuid::Uuid, Value) = (row.get(0), row.get(1));
                latencies
                    .lock()
                    .unwrap()
                    .push(now_us().saturating_sub(payload["t"].as_u64().unwrap()));
                client
                    .execute(
                        "UPDATE task_queue SET completed_at = now() WHERE id = $1",
                        &[&id],
                    )
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for _ in 0..p.producers {
        let client = sql(&db.url()).await;
        tasks.push(tokio::spawn(async move {
            for n in 0..per_producer {
                let payload = json!({"t": now_us(), "n": n});
                client
                    .execute(
                        "INSERT INTO task_queue (queue_name, payload) VALUES ('bench', $1)",
                        &[&payload],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    finish("seed SQL", total, started, tasks, &latencies, db).await
}

/// Whether `BENCH_PARTS` (a comma-separated list; every part when unset) names `part`.
fn runs(part: &str) -> bool {
    std::env::var("BENCH_PARTS").map_or(true, |parts| parts.split(',').any(|p| p.trim() == part))
}

#[tokio::main]
async fn main() {
    let p = Params {
        tasks: env("BENCH_TASKS", 200_000),
        producers: env("BENCH_PRODUCERS", 4),
        consumers: env("BENCH_CONSUMERS", 8),
        window: env("BENCH_WINDOW", 1024),
        seed_tasks: env("BENCH_SEED_TASKS", 20_000),
        wakes: env("BENCH_WAKES", 2_000),
    };
    let wake = match runs("end_to_end") {
        true => format!("{:.2}", end_to_end(&p).await),
        false => "none".to_owned(),
    };
    let shape = Shape {
        drain_tasks: env("BENCH_DRAIN_TASKS", 50_000),
        concurrency: p.consumers,
        producers: p.producers,
        window: env("BENCH_FLOW_WINDOW", 16),
        flow: Duration::from_secs(env("BENCH_FLOW_SECS", 20) as u64),
    };
    println!("comparison: {shape:?}");
    let drain = compare(&shape, "drain").await;
    let flow = compare(&shape, "flow").await;
    let sustained = match runs("sustained") {
        true => format!("{:.2}", sustained(&shape).await),
        false => "none".to_owned(),
    };
    println!(
        "queue_throughput drain_vs_best_peer={drain} flow_vs_best_peer={flow} p99_wake_ms={wake} sustained={sustained}"
    );
}

/// Throughput and wake-up latency through the daemon against the seed's SQL: the p99 wake-up in
/// ms.
async fn end_to_end(p: &Params) -> f64 {
    println!(
        "queue_throughput: {} producers (window {}), {} consumers",
        p.producers, p.window, p.consumers
    );
    let db = Db::create("queue").await;
    let daemon = Daemon::start(&db).await;
    let pid = daemon.pid();
    let cpu = support::Cpu::start(|| {
        let mut spent = daemon_side(pid);
        spent.push(("idle", support::machine_idle()));
        spent
    });
    let mut throughput = bench_daemon(p, &daemon).await;
    throughput.report("tasks", "push->claim");
    support::report_cpu(&cpu.spent(), throughput.messages, "task");
    let mut wake = bench_wake(p, &daemon).await;
    wake.report("tasks", "push->claim (consumers waiting)");
    drop(daemon);
    db.drop_now().await;
    let mut seed = bench_seed_sql(p).await;
    seed.report("tasks", "push->claim");
    let p99_wake_ms = wake.percentile(0.99) as f64 / 1000.0;
    println!(
        "queue_throughput tasks_per_s={:.0} vs_seed_sql={:.1} p99_wake_ms={p99_wake_ms:.2}",
        throughput.rate(),
        throughput.rate() / seed.rate(),
    );
    p99_wake_ms
}

/// `workload` on the daemon, then on each peer: the daemon's rate over the best peer's (`none`
/// when the peers could not run or `BENCH_PARTS` leaves the workload out).
async fn compare(shape: &Shape, workload: &str) -> String {
    if !runs(workload) {
        return "none".to_owned();
    }
    let ours = on_fresh_daemon(shape, workload).await;
    ours.print();
    let best = match env("BENCH_PEERS", 1) {
        0 => None,
        _ => match peers::Peers::install() {
            Ok(peers) => best_peer(&peers, workload, shape).await,
            Err(why) => {
                println!("         peers left out: {why}");
                None
            }
        },
    };
    best.map_or("none".to_owned(), |b| {
        format!("{:.2}", ours.tasks_per_s / b)
    })
}

/// Runs `workload` on every peer, printing each; the best rate among them.
async fn best_peer(peers: &peers::Peers, workload: &str, shape: &Shape) -> Option<f64> {
    let mut best: Option<f64> = None;
    println!("         {}", peers::LEFT_OUT);
    for system in peers::SYSTEMS {
        match peers.run(system, workload, shape).await {
            Ok(m) => {
                m.print();
                best = Some(best.map_or(m.tasks_per_s, |b| b.max(m.tasks_per_s)));
            }
            Err(e) => println!("         {system} {workload} failed: {e}"),
        }
    }
    best
}

/// The CPU time so far of the daemon `pid`, of Postgres and of this process (the clients).
fn daemon_side(pid: u32) -> Vec<(&'static str, Duration)> {
    vec![
        ("daemon", support::cpu_time(pid)),
        ("postgres", support::postgres_cpu()),
        support::client_cpu(),
    ]
}

/// One workload on a daemon of its own, on a fresh database, as each peer gets one.
async fn on_fresh_daemon(shape: &Shape, workload: &str) -> Measured {
    let db = Db::create(&format!("queue_{workload}")).await;
    let daemon = Daemon::start(&db).await;
    let pid = daemon.pid();
    let cpu = support::Cpu::start(|| daemon_side(pid));
    let mut measured = match workload {
        "drain" => workloads::drain(&daemon, shape).await,
        _ => {
            workloads::flow(&daemon, shape, shape.flow, "flow")
                .await
                .measured
        }
    };
    measured.cpu_us = workloads::per_task(cpu.spent(), measured.tasks);
    drop(daemon);
    db.drop_now().await;
    measured
}

/// A long flow on a fresh daemon: tasks started in its last minute over its first (windows of a
/// fifth of the run when it is shorter than five minutes).
async fn sustained(shape: &Shape) -> f64 {
    let length = Duration::from_secs(env("BENCH_SUSTAIN_SECS", 600) as u64);
    let window = Duration::from_secs(60).min(length / 5);
    let db = Db::create("queue_sustained").await;
    let daemon = Daemon::start(&db).await;
    let flow = workloads::flow(&daemon, shape, length, "sustained").await;
    drop(daemon);
    db.drop_now().await;
    let (first, last) = workloads::first_and_last(&flow, window);
    print!("sustained {} s: ", length.as_secs());
    flow.measured.print();
    println!(
        "         first {} s: {first} tasks, last {} s: {last} tasks",
        window.as_secs(),
        window.as_secs()
    );
    last as f64 / first.max(1) as f64
}
