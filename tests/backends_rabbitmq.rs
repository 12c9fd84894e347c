//! The RabbitMQ queue engine's own guarantees, beyond the shared behavioural suite
//! (`IKIGAI_TEST_SERVICES=queues=rabbitmq` runs `tests/queue.rs` on it): a restart of RabbitMQ
//! under load loses no confirmed push, daemons sharing one RabbitMQ are one platform (dedup
//! keys included), delays of different lengths keep their due order, and a message that is no
//! task is dead-lettered.

mod support;

use ikigai_client::{ClaimArgs, Client, ErrorCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::rabbitmq_server::RabbitServer;
use support::{assert_code, drop_rabbitmq_queues, rabbitmq_url, Daemon, TestDb};

/// `[services]` with queues on the RabbitMQ at `url`, under `prefix`.
fn on_rabbitmq(url: &str, prefix: &str) -> String {
    format!("[services]\nqueues = rabbitmq\n[rabbitmq]\nurl = {url}\nprefix = {prefix}\n")
}

/// A daemon keeping its queues in the machine's RabbitMQ, under its database's name.
async fn daemon() -> Daemon {
    let db = TestDb::create().await;
    let config = on_rabbitmq(&rabbitmq_url(), &db.name);
    Daemon::start_on(db, &config).await
}

fn claim(queue: &str, max: u32, wait_ms: u64) -> ClaimArgs<'_> {
    ClaimArgs {
        queue,
        max: Some(max),
        wait_ms: Some(wait_ms),
        lease_ms: None,
    }
}

async fn push(c: &Client, args: Value) -> Value {
    c.call("queue.push", &args).await.unwrap()
}

/// Claims and completes tasks of `queue` until a claim waiting `wait_ms` finds none.
async fn drain(c: &Client, queue: &str, wait_ms: u64) -> Vec<String> {
    let mut done = Vec::new();
    loop {
        let got = c.queue_claim(&claim(queue, 100, wait_ms)).await.unwrap();
        if got.is_empty() {
            return done;
        }
        for t in got {
            c.queue_complete(&t.id, None).await.unwrap();
            done.push(t.id);
        }
    }
}

#[tokio::test]
async fn a_rabbitmq_restart_mid_load_loses_no_confirmed_push() {
    let mut rabbit = RabbitServer::start().await;
    let db = TestDb::create().await;
    let config = on_rabbitmq(&rabbit.url(), "restart");
    let d = Daemon::start_on(db, &config).await;
    let producer = d.agent("producer").await;
    let confirmed = Arc::new(Mutex::new(HashSet::new()));
    let (sent, stop) = (confirmed.clone(), Arc::new(Mutex::new(false)));
    let stopped = stop.clone();
    let producing = tokio::spawn(async move {
        let mut failures = 0;
        for i in 0..200_000 {
            if *stopped.lock().unwrap() {
                break;
            }
            let args = json!({"queue": "load", "payload": i, "priority": i % 3});
            match producer.call::<_, Value>("queue.push", &args).await {
                Ok(r) => drop(
                    sent.lock()
                        .unwrap()
                        .insert(r["id"].as_str().unwrap().to_owned()),
                ),
                Err(_) => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        failures
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rabbit.kill9();
    let before = confirmed.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    rabbit.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while confirmed.lock().unwrap().len() < before + 200 {
        assert!(Instant::now() < deadline, "pushes resume after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    *stop.lock().unwrap() = true;
    let failures = producing.await.unwrap();
    let confirmed = confirmed.lock().unwrap().clone();
    assert!(failures > 0, "some pushes failed while RabbitMQ was down");
    let worker = d.agent("worker").await;
    let claimed: HashSet<String> = drain(&worker, "load", 2_000).await.into_iter().collect();
    let lost: Vec<&String> = confirmed.difference(&claimed).collect();
    assert!(
        lost.is_empty(),
        "{} of {} confirmed pushes lost ({before} before the kill)",
        lost.len(),
        confirmed.len()
    );
}

#[tokio::test]
async fn daemons_sharing_one_rabbitmq_are_one_platform() {
    let d1 = daemon().await;
    let config = on_rabbitmq(&rabbitmq_url(), &d1.db.name);
    let d2 = Daemon::start_on(d1.db.share(), &config).await;
    let (p1, p2) = (d1.agent("p").await, d2.agent("p").await);
    let first = push(&p1, json!({"queue": "one", "payload": 1, "dedup_key": "k"})).await;
    let again = push(&p2, json!({"queue": "one", "payload": 2, "dedup_key": "k"})).await;
    assert_eq!(first["id"], again["id"], "a dedup key holds across daemons");
    assert_eq!(again["created"], json!(false));

    // A consumer on d1 takes the burst; once it stops waiting, d1 gives back what it holds
    // unclaimed, and d2's consumer gets it.
    for n in 0..20 {
        push(&p1, json!({"queue": "one", "payload": n})).await;
    }
    let w1 = d1.agent("w1").await;
    let got = w1.queue_claim(&claim("one", 1, 1_000)).await.unwrap();
    assert_eq!(got.len(), 1);
    w1.queue_complete(&got[0].id, None).await.unwrap();
    let w2 = d2.agent("w2").await;
    let rest = drain(&w2, "one", 2_000).await;
    assert_eq!(rest.len(), 20, "d2 claims every task d1 did not");

    // A settlement through a daemon that does not hold the delivery finds no such task.
    push(&p1, json!({"queue": "two", "payload": "x"})).await;
    let held = w2.queue_claim(&claim("two", 1, 1_000)).await.unwrap();
    let elsewhere = d1.agent("w2").await;
    let refused = elsewhere.queue_complete(&held[0].id, None).await;
    assert_code(refused, ErrorCode::NotFound);
    w2.queue_complete(&held[0].id, None).await.unwrap();
    drop_rabbitmq_queues(&d1.db.name).await;
}

#[tokio::test]
async fn delays_of_different_lengths_come_due_in_their_order() {
    let d = daemon().await;
    let c = d.agent("w").await;
    push(
        &c,
        json!({"queue": "later", "payload": "long", "delay_ms": 900}),
    )
    .await;
    push(
        &c,
        json!({"queue": "later", "payload": "short", "delay_ms": 150}),
    )
    .await;
    let started = Instant::now();
    let first = c.queue_claim(&claim("later", 1, 3_000)).await.unwrap();
    assert_eq!(first[0].payload, json!("short"));
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    let second = c.queue_claim(&claim("later", 1, 3_000)).await.unwrap();
    assert_eq!(second[0].payload, json!("long"));
    assert!(started.elapsed() >= Duration::from_millis(850));
    let stats: Value = c
        .call("queue.stats", &json!({"queue": "later"}))
        .await
        .unwrap();
    assert_eq!(
        (stats["scheduled"].as_u64(), stats["claimed"].as_u64()),
        (Some(0), Some(2))
    );
    drop_rabbitmq_queues(&d.db.name).await;
}

#[tokio::test]
async fn a_message_that_is_no_task_is_dead_lettered() {
    let d = daemon().await;
    let c = d.agent("w").await;
    push(&c, json!({"queue": "mixed", "payload": "real"})).await;
    let conn = lapin::Connection::connect(&rabbitmq_url(), Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let ready = format!("{}.q.mixed", d.db.name);
    let props = lapin::BasicProperties::default();
    let publish = channel
        .basic_publish("", &ready, Default::default(), b"not json", props)
        .await
        .unwrap();
    publish.await.unwrap();
    let got = c.queue_claim(&claim("mixed", 10, 1_000)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, json!("real"));
    support::wait_until(
        "the stray message is dead-lettered",
        Duration::from_secs(5),
        || async {
            let stats: Value = c
                .call("queue.stats", &json!({"queue": "mixed"}))
                .await
                .unwrap();
            stats["dead"] == json!(1)
        },
    )
    .await;
    drop_rabbitmq_queues(&d.db.name).await;
}
