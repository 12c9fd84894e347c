//! The storage seam as `[services]` selects it: engines that do not answer stop the start and
//! are named, two daemons sharing one Redis are one platform, a transaction refuses a service on
//! another engine, and a Redis killed mid-load with `appendfsync always` loses no cache entry,
//! message or task the daemon acknowledged. (The behavioural suites of each service run on
//! Redis too: `scripts/test`, `IKIGAI_TEST_SERVICES`.)

mod support;

use ikigai_client::{ClaimArgs, ErrorCode, Receive};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use support::redis_server::RedisServer;
use support::{assert_code, daemon_command, redis_url, run_to_exit, temp_root, Daemon, TestDb};

/// `[services]` with every service Redis serves on the Redis at `url`, keys under `prefix`.
fn on_redis(url: &str, prefix: &str) -> String {
    format!(
        "[services]\ncache = redis\npubsub = redis\nmailboxes = redis\nqueues = redis\n\
         [redis]\nurl = {url}\nprefix = {prefix}\n"
    )
}

#[tokio::test]
async fn a_named_engine_that_does_not_answer_stops_the_start_naming_services_engine_and_address() {
    let root = temp_root();
    let conf = root.path().join("ikigai.conf");
    std::fs::write(&conf, on_redis("redis://127.0.0.1:1", "unused")).unwrap();
    let mut cmd = daemon_command(root.path());
    cmd.arg("--config").arg(&conf);
    let (code, stderr) = run_to_exit(cmd);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(
            "queues, mailboxes, cache, pubsub: redis: Redis at 127.0.0.1:1 does not answer"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn two_daemons_sharing_one_redis_share_its_cache_and_pub_sub() {
    let db = TestDb::create().await;
    let config = on_redis(&redis_url(), &db.name);
    let one = Daemon::start_on(db, &config).await;
    let two = Daemon::start_on(one.db.share(), &config).await;
    let (a, b) = (one.agent("alice").await, two.agent("alice").await);
    let set = json!({"key": "k", "value": {"n": 1}, "shared": true});
    a.call_value("cache.set", &set).await.unwrap();
    let got: Value = b
        .call("cache.get", &json!({"key": "k", "shared": true}))
        .await
        .unwrap();
    assert_eq!(got["value"], json!({"n": 1}));
    for c in [&a, &b, &a] {
        c.call_value("cache.incr", &json!({"key": "n", "shared": true}))
            .await
            .unwrap();
    }
    let n: Value = b
        .call("cache.incr", &json!({"key": "n", "shared": true, "by": 0}))
        .await
        .unwrap();
    assert_eq!(
        n,
        json!({"value": 3}),
        "one counter, incremented through both daemons"
    );
    a.call_value("cache.delete", &json!({"key": "k", "shared": true}))
        .await
        .unwrap();
    let gone: Value = b
        .call("cache.get", &json!({"key": "k", "shared": true}))
        .await
        .unwrap();
    assert_eq!(gone["found"], json!(false));
}

#[tokio::test]
async fn a_transaction_refuses_a_service_on_another_engine_and_keeps_its_other_writes() {
    let db = TestDb::create().await;
    let config = on_redis(&redis_url(), &db.name);
    let d = Daemon::start_on(db, &config).await;
    let a = d.agent("alice").await;
    let begun: Value = a.call("tx.begin", &json!({})).await.unwrap();
    let tx = begun["tx"].clone();
    let put = json!({"key": "doc", "value": 1, "tx": tx});
    a.call_value("storage.put", &put).await.unwrap();
    let refused = a
        .call_value("cache.set", &json!({"key": "k", "value": 1, "tx": tx}))
        .await;
    let message = format!("{refused:?}");
    assert_code(refused, ErrorCode::BadRequest);
    assert!(message.contains("cache entries are on redis"), "{message}");
    assert!(message.contains("backend is postgres"), "{message}");
    for (op, args, service) in [
        (
            "mailbox.send",
            json!({"mailbox": "bob", "payload": 1}),
            "mailboxes",
        ),
        ("queue.push", json!({"queue": "q", "payload": 1}), "queues"),
    ] {
        let mut args = args;
        args["tx"] = tx.clone();
        let refused = a.call_value(op, &args).await;
        let message = format!("{refused:?}");
        assert_code(refused, ErrorCode::BadRequest);
        assert!(
            message.contains(&format!("{service} are on redis")),
            "{message}"
        );
    }
    a.call_value("tx.commit", &json!({"tx": tx})).await.unwrap();
    let doc: Value = a.call("storage.get", &json!({"key": "doc"})).await.unwrap();
    assert_eq!(
        doc["document"]["value"],
        json!(1),
        "the transaction's own writes commit"
    );
    let k: Value = a.call("cache.get", &json!({"key": "k"})).await.unwrap();
    assert_eq!(k["found"], json!(false), "the refused write was not made");
}

/// Runs `op(i)` for i = 0, 1, ... until one fails; returns what succeeded.
async fn until_refused<F, Fut, T>(op: F) -> Vec<T>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let mut acknowledged = Vec::new();
    for i in 0..1_000_000u64 {
        match op(i).await {
            Some(t) => acknowledged.push(t),
            None => break,
        }
    }
    acknowledged
}

#[tokio::test]
async fn redis_killed_mid_load_with_appendfsync_always_loses_no_acknowledged_write() {
    let mut redis = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]).await;
    let db = TestDb::create().await;
    let config = on_redis(&redis.url(), &db.name);
    let mut d = Daemon::start_on(db, &config).await;
    let (a, b, c) = (
        d.agent("alice").await,
        d.agent("bob").await,
        d.agent("carol").await,
    );
    let sets = until_refused(|i| {
        let set = json!({"key": format!("k{i}"), "value": i});
        let a = &a;
        async move { a.call_value("cache.set", &set).await.ok().map(|_| i) }
    });
    let sends = until_refused(|i| {
        let b = &b;
        async move { b.mailbox_send("dave", &json!(i)).await.ok() }
    });
    let pushes = until_refused(|i| {
        let c = &c;
        async move { c.queue_push("jobs", &json!(i)).await.ok() }
    });
    let kill = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        redis.kill9();
    };
    let (sets, sends, pushes, ()) = futures::join!(sets, sends, pushes, kill);
    assert!(
        sets.len() > 10 && sends.len() > 10 && pushes.len() > 10,
        "the load ran"
    );
    redis.restart().await;
    assert_eq!(d.terminate(), 0);
    d.restart().await;
    let alice = d.agent("alice").await;
    for chunk in sets.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("k{i}")).collect();
        let got: Value = alice
            .call("cache.get_many", &json!({"keys": keys}))
            .await
            .unwrap();
        for i in chunk {
            assert_eq!(
                got["values"][format!("k{i}")],
                json!(i),
                "the set of k{i} survived"
            );
        }
    }
    let dave = d.agent("dave").await;
    let received = drain_mailbox(&dave).await;
    assert!(
        sends.iter().all(|id| received.contains(id)),
        "every acknowledged send survived"
    );
    let worker = d.agent("worker").await;
    let claimed = drain_queue(&worker).await;
    assert!(
        pushes.iter().all(|id| claimed.contains(id)),
        "every acknowledged push survived"
    );
}

async fn drain_mailbox(c: &ikigai_client::Client) -> HashSet<String> {
    let mut ids = HashSet::new();
    loop {
        let receive = Receive {
            mailbox: "dave",
            max: Some(1000),
            wait_ms: Some(0),
            visibility_ms: None,
        };
        let got = c.mailbox_receive(&receive).await.unwrap();
        if got.is_empty() {
            return ids;
        }
        let batch: Vec<String> = got.into_iter().map(|m| m.id).collect();
        c.mailbox_ack("dave", &batch).await.unwrap();
        ids.extend(batch);
    }
}

async fn drain_queue(c: &ikigai_client::Client) -> HashSet<String> {
    let mut ids = HashSet::new();
    loop {
        let claim = ClaimArgs {
            queue: "jobs",
            max: Some(1000),
            wait_ms: Some(0),
            lease_ms: None,
        };
        let got = c.queue_claim(&claim).await.unwrap();
        if got.is_empty() {
            return ids;
        }
        for t in got {
            c.queue_complete(&t.id, None).await.unwrap();
            ids.insert(t.id);
        }
    }
}

#[tokio::test]
async fn finished_tasks_on_redis_are_deleted_once_their_retention_passes() {
    let db = TestDb::create().await;
    let config = format!(
        "{}[postgres]\nmaintenance_ms = 100\n[queues]\nretain_completed_ms = 1\n",
        on_redis(&redis_url(), &db.name)
    );
    let d = Daemon::start_on(db, &config).await;
    let a = d.agent("alice").await;
    for n in 0..20 {
        a.queue_push("jobs", &json!({"n": n})).await.unwrap();
    }
    let claim = ClaimArgs {
        queue: "jobs",
        max: Some(100),
        wait_ms: Some(1000),
        lease_ms: None,
    };
    for task in a.queue_claim(&claim).await.unwrap() {
        a.queue_complete(&task.id, None).await.unwrap();
    }
    a.queue_push("jobs", &json!({"open": true})).await.unwrap();
    let stats = || async {
        a.call::<_, Value>("queue.stats", &json!({"queue": "jobs"}))
            .await
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let logged = || d.log().contains("finished tasks deleted from Redis");
    while (stats().await.unwrap()["completed"] != 0 || !logged())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = stats().await.unwrap();
    assert_eq!(
        (&now["completed"], &now["pending"]),
        (&json!(0), &json!(1)),
        "{}",
        d.log()
    );
    assert!(logged(), "the pass logs what it deleted: {}", d.log());
}
