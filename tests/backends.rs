//! The storage seam as `[services]` selects it: engines that do not answer stop the start and
//! are named, two daemons sharing one Redis are one platform, a transaction refuses a service on
//! another engine, and a Redis killed mid-load with `appendfsync always` loses nothing the daemon
//! acknowledged.

mod support;

use ikigai_client::ErrorCode;
use serde_json::{json, Value};
use support::redis_server::RedisServer;
use support::{assert_code, daemon_command, redis_url, run_to_exit, temp_root, Daemon, TestDb};

/// `[services]` with the cache and pub/sub on the Redis at `url`, keys under `prefix`.
fn on_redis(url: &str, prefix: &str) -> String {
    format!("[services]\ncache = redis\npubsub = redis\n[redis]\nurl = {url}\nprefix = {prefix}\n")
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
        stderr.contains("cache, pubsub: redis: Redis at 127.0.0.1:1 does not answer"),
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

#[tokio::test]
async fn redis_killed_mid_load_with_appendfsync_always_loses_no_acknowledged_write() {
    let mut redis = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]).await;
    let db = TestDb::create().await;
    let config = on_redis(&redis.url(), &db.name);
    let d = Daemon::start_on(db, &config).await;
    let a = d.agent("alice").await;
    let writer = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for i in 0..100_000u64 {
            let set = json!({"key": format!("k{i}"), "value": i});
            match a.call_value("cache.set", &set).await {
                Ok(_) => acknowledged.push(i),
                Err(_) => return acknowledged,
            }
        }
        acknowledged
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    redis.kill9();
    let acknowledged = writer.await.unwrap();
    assert!(acknowledged.len() > 10, "the load ran before the kill");
    redis.restart().await;
    let alice = d.agent("alice").await;
    for chunk in acknowledged.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("k{i}")).collect();
        let got: Value = alice
            .call("cache.get_many", &json!({"keys": keys}))
            .await
            .unwrap();
        for i in chunk {
            let value = &got["values"][format!("k{i}")];
            assert_eq!(
                value,
                &json!(i),
                "the acknowledged set of k{i} survived the kill"
            );
        }
    }
}
