//! `cargo bench --bench mailbox_throughput`: durable send -> receive -> ack through the daemon's
//! socket, against the seed's plain SQL path and Redis LPUSH/BRPOP on the same machine, same run.
//!
//! P producer connections pipeline sends round-robin over C mailboxes; C consumer connections
//! (each the owner of one mailbox) receive in batches and ack. Reports msgs/s and p50/p99
//! send-to-receive latency for each path and the ratios. Sizes come from the environment:
//! `BENCH_MESSAGES` (200000), `BENCH_PRODUCERS` (4), `BENCH_CONSUMERS` (4), `BENCH_WINDOW` (1024),
//! `BENCH_SEED_MESSAGES` (20000).

mod support;

use ikigai_client::Receive;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{env, finish, now_us, pipelined, sql, Daemon, Db, Run};

struct Params {
    messages: usize,
    producers: usize,
    consumers: usize,
    window: usize,
    seed_messages: usize,
}

async fn bench_daemon(p: &Params) -> Run {
    let db = Db::create("daemon").await;
    let daemon = Daemon::start(&db).await;
    let consumers = daemon.clients("sink", p.consumers).await;
    let producers = daemon.clients("producer", p.producers).await;
    let received = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(p.messages)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, client) in consumers.into_iter().enumerate() {
        let (received, latencies, total) = (received.clone(), latencies.clone(), p.messages);
        tasks.push(tokio::spawn(async move {
            let mailbox = format!("sink{c}");
            let mut local = Vec::new();
            let mut acks = Vec::new();
            while received.load(Ordering::Relaxed) < total {
                let args = Receive {
                    mailbox: &mailbox,
                    max: Some(1000),
                    wait_ms: Some(50),
                    visibility_ms: None,
                };
                let got = client.mailbox_receive(&args).await.unwrap();
                let now = now_us();
                local.extend(
                    got.iter()
                        .map(|m| now.saturating_sub(m.payload["t"].as_u64().unwrap())),
                );
                received.fetch_add(got.len(), Ordering::Relaxed);
                let ids: Vec<String> = got.into_iter().map(|m| m.id).collect();
                if !ids.is_empty() {
                    let (client, mailbox) = (client.clone(), mailbox.clone());
                    acks.push(tokio::spawn(async move {
                        client.mailbox_ack(&mailbox, &ids).await.unwrap()
                    }));
                }
            }
            for a in acks {
                a.await.unwrap();
            }
            latencies.lock().unwrap().extend(local);
        }));
    }
    let per_producer = p.messages / p.producers;
    for (i, client) in producers.into_iter().enumerate() {
        let (window, consumers) = (p.window, p.consumers);
        tasks.push(tokio::spawn(pipelined(per_producer, window, move |n| {
            let client = client.clone();
            let mailbox = format!("sink{}", (i + n) % consumers);
            async move {
                client
                    .mailbox_send(&mailbox, &json!({"t": now_us(), "n": n}))
                    .await
                    .unwrap();
            }
        })));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    drop(daemon);
    db.drop_now().await;
    let latencies_us = std::mem::take(&mut *latencies.lock().unwrap());
    Run {
        name: "daemon",
        messages: per_producer * p.producers,
        elapsed,
        latencies_us,
    }
}

/// The seed's path: one INSERT per message; consumers claim with FOR UPDATE SKIP LOCKED and
/// update read_at, one message per transaction.
async fn bench_seed_sql(p: &Params) -> Run {
    let db = Db::with_schema("seed").await;
    let total = p.seed_messages;
    let received = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..p.consumers {
        let mut client = sql(&db.url()).await;
        let (received, latencies) = (received.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mailbox = format!("sink{c}");
            while received.load(Ordering::Relaxed) < total {
                let tx = client.transaction().await.unwrap();
                let row = tx
                    .query_opt(
                        "SELECT id, payload FROM mailbox WHERE mailbox_name = $1 AND read_at IS NULL \
                         ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1",
                        &[&mailbox],
                    )
                    .await
                    .unwrap();
                let Some(row) = row else {
                    tx.commit().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                let id: uuid::Uuid = row.get(0);
                let payload: serde_json::Value = row.get(1);
                tx.execute("UPDATE mailbox SET read_at = now(), read_by = $1 WHERE id = $2", &[&mailbox, &id])
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                latencies.lock().unwrap().push(now_us().saturating_sub(payload["t"].as_u64().unwrap()));
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let per_producer = total / p.producers;
    for i in 0..p.producers {
        let client = sql(&db.url()).await;
        let consumers = p.consumers;
        tasks.push(tokio::spawn(async move {
            for n in 0..per_producer {
                let mailbox = format!("sink{}", (i + n) % consumers);
                let payload = json!({"t": now_us(), "n": n});
                client
                    .execute(
                        "INSERT INTO mailbox (mailbox_name, sender, payload) VALUES ($1, $2, $3)",
                        &[&mailbox, &"producer", &payload],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    finish(
        "seed SQL",
        per_producer * p.producers,
        started,
        tasks,
        &latencies,
        db,
    )
    .await
}

/// Redis LPUSH/BRPOP at the same concurrency (not durable: the comparison flatters Redis).
async fn bench_redis(p: &Params) -> Option<Run> {
    let redis_client = redis::Client::open("redis://127.0.0.1:6379/").ok()?;
    let mut probe = redis_client.get_multiplexed_async_connection().await.ok()?;
    let _: () = redis::cmd("DEL")
        .arg(
            (0..p.consumers)
                .map(|c| format!("ikigai-bench-sink{c}"))
                .collect::<Vec<_>>(),
        )
        .query_async(&mut probe)
        .await
        .ok()?;
    let received = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..p.consumers {
        let mut conn = redis_client.get_multiplexed_async_connection().await.ok()?;
        let (received, latencies, total) = (received.clone(), latencies.clone(), p.messages);
        tasks.push(tokio::spawn(async move {
            let key = format!("ikigai-bench-sink{c}");
            while received.load(Ordering::Relaxed) < total {
                let popped: Option<(String, String)> = redis::cmd("BRPOP")
                    .arg(&key)
                    .arg(0.05)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if let Some((_, body)) = popped {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    latencies
                        .lock()
                        .unwrap()
                        .push(now_us().saturating_sub(v["t"].as_u64().unwrap()));
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let per_producer = p.messages / p.producers;
    for i in 0..p.producers {
        let conn = redis_client.get_multiplexed_async_connection().await.ok()?;
        let (window, consumers) = (p.window, p.consumers);
        tasks.push(tokio::spawn(pipelined(per_producer, window, move |n| {
            let mut conn = conn.clone();
            let key = format!("ikigai-bench-sink{}", (i + n) % consumers);
            async move {
                let body = json!({"t": now_us(), "n": n}).to_string();
                let _: i64 = redis::cmd("LPUSH")
                    .arg(&key)
                    .arg(body)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        })));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let latencies_us = std::mem::take(&mut *latencies.lock().unwrap());
    Some(Run {
        name: "redis",
        messages: per_producer * p.producers,
        elapsed,
        latencies_us,
    })
}

#[tokio::main]
async fn main() {
    let p = Params {
        messages: env("BENCH_MESSAGES", 200_000),
        producers: env("BENCH_PRODUCERS", 4),
        consumers: env("BENCH_CONSUMERS", 4),
        window: env("BENCH_WINDOW", 1024),
        seed_messages: env("BENCH_SEED_MESSAGES", 20_000),
    };
    println!(
        "mailbox_throughput: {} producers, {} consumers, window {} sends per producer",
        p.producers, p.consumers, p.window
    );
    let mut daemon = bench_daemon(&p).await;
    daemon.report("msgs", "send->receive");
    let mut seed = bench_seed_sql(&p).await;
    seed.report("msgs", "send->receive");
    let mut redis = bench_redis(&p).await;
    match redis.as_mut() {
        Some(r) => r.report("msgs", "send->receive"),
        None => println!("redis      not reachable on 127.0.0.1:6379; skipped"),
    }
    let vs_seed = daemon.rate() / seed.rate();
    let vs_redis = redis.map_or("na".to_owned(), |r| {
        format!("{:.2}", daemon.rate() / r.rate())
    });
    println!(
        "mailbox_throughput msgs_per_s={:.0} vs_seed_sql={:.1} vs_redis={}",
        daemon.rate(),
        vs_seed,
        vs_redis
    );
}
