//! The cache against the real daemon: namespaces, TTL expiry, counters and surviving a daemon
//! restart on whichever engine the run names (`IKIGAI_TEST_SERVICES`); and, on the Postgres
//! engine (`ON_POSTGRES`), the in-memory LRU bound and the log the entries are stored in
//! (compaction, the `cache` view, the move from the table of schema versions before 4).

mod support;

use futures::FutureExt;
use ikigai_client::{Client, ErrorCode};
use serde_json::{json, Value};
use std::time::Duration;
use support::{assert_code, wait_until, Daemon, TestDb};

/// Pins a test that checks the Postgres engine's own storage to that engine.
const ON_POSTGRES: &str = "[services]\ncache = postgres\n";

async fn set(client: &Client, args: Value) {
    client.call_value("cache.set", &args).await.unwrap();
}

async fn get(client: &Client, key: &str) -> Option<Value> {
    let reply: Value = client
        .call("cache.get", &json!({ "key": key }))
        .await
        .unwrap();
    reply["found"]
        .as_bool()
        .unwrap()
        .then(|| reply["value"].clone())
}

#[tokio::test]
async fn only_admin_names_another_agents_namespace() {
    let d = Daemon::start().await;
    let (admin, alice, bob) = (
        d.admin().await,
        d.agent("alice").await,
        d.agent("bob").await,
    );
    set(&alice, json!({"key": "k", "value": "alice's"})).await;
    let args = json!({"key": "k", "agent": "alice"});
    let got: Value = admin.call("cache.get", &args).await.unwrap();
    assert_eq!(got, json!({"found": true, "value": "alice's"}));
    set(&admin, json!({"key": "n", "value": 1, "agent": "alice"})).await;
    let incr = json!({"key": "n", "agent": "alice"});
    admin.call_value("cache.incr", &incr).await.unwrap();
    assert_eq!(get(&alice, "n").await, Some(json!(2)));
    assert_code(
        bob.call_value("cache.get", &args).await,
        ErrorCode::PermissionDenied,
    );
    let both = json!({"key": "k", "agent": "alice", "shared": true});
    assert_code(
        admin.call_value("cache.get", &both).await,
        ErrorCode::BadRequest,
    );
    let bad = json!({"keys": ["k"], "agent": "a/b"});
    assert_code(
        admin.call_value("cache.get_many", &bad).await,
        ErrorCode::BadRequest,
    );
}

#[tokio::test]
async fn keys_are_per_agent_unless_shared() {
    let d = Daemon::start().await;
    let (a, b) = (d.agent("alice").await, d.agent("bob").await);
    set(&a, json!({"key": "k", "value": {"mine": "alice"}})).await;
    assert_eq!(get(&a, "k").await, Some(json!({"mine": "alice"})));
    assert_eq!(get(&b, "k").await, None);
    set(&a, json!({"key": "k", "value": null, "shared": true})).await;
    let shared: Value = b
        .call("cache.get", &json!({"key": "k", "shared": true}))
        .await
        .unwrap();
    assert_eq!(shared, json!({"found": true, "value": null}));
    set(&a, json!({"key": "j", "value": [1, 2]})).await;
    let many: Value = a
        .call("cache.get_many", &json!({"keys": ["k", "j", "absent"]}))
        .await
        .unwrap();
    assert_eq!(
        many,
        json!({"values": {"k": {"mine": "alice"}, "j": [1, 2]}})
    );
    let deleted: Value = a.call("cache.delete", &json!({"key": "k"})).await.unwrap();
    assert_eq!(deleted, json!({"deleted": true}));
    assert_eq!(get(&a, "k").await, None);
    let bad = a
        .call_value("cache.set", &json!({"key": "", "value": 1}))
        .await;
    assert_code(bad, ErrorCode::BadRequest);
}

#[tokio::test]
async fn expired_keys_are_never_returned_nor_shown_by_the_cache_view() {
    let d = Daemon::start_with(&format!("{ON_POSTGRES}[cache]\nsweep_interval_ms = 50\n")).await;
    let a = d.agent("alice").await;
    set(&a, json!({"key": "short", "value": 1, "ttl_ms": 150})).await;
    set(&a, json!({"key": "long", "value": 2, "ttl_ms": 60000})).await;
    assert_eq!(get(&a, "short").await, Some(json!(1)));
    let in_view = "SELECT count(*) FROM cache WHERE key = 'alice/short'";
    wait_until(
        "the write-behind stores the key",
        Duration::from_secs(5),
        || d.db.count(in_view).map(|n| n == 1),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&a, "short").await, None);
    assert_eq!(get(&a, "long").await, Some(json!(2)));
    assert_eq!(
        d.db.count(in_view).await,
        0,
        "the view hides it once expired"
    );
    let ttl = a
        .call_value("cache.set", &json!({"key": "k", "value": 1, "ttl_ms": 0}))
        .await;
    assert_code(ttl, ErrorCode::BadRequest);
}

#[tokio::test]
async fn incr_is_atomic_under_concurrency() {
    let d = Daemon::start().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = d.agent("counter").await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..250 {
                let args = json!({"key": "hits", "shared": true});
                c.call_value("cache.incr", &args).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = d.agent("counter").await;
    let reply: Value = c
        .call(
            "cache.incr",
            &json!({"key": "hits", "shared": true, "by": -1000}),
        )
        .await
        .unwrap();
    assert_eq!(reply, json!({"value": 0}));
    set(&c, json!({"key": "word", "value": "x"})).await;
    let not_int = c.call_value("cache.incr", &json!({"key": "word"})).await;
    assert_code(not_int, ErrorCode::Conflict);
}

#[tokio::test]
async fn the_size_bound_evicts_the_least_recently_used_entries() {
    let d = Daemon::start_with(&format!("{ON_POSTGRES}[cache]\nmax_bytes = 10000\n")).await;
    let a = d.agent("alice").await;
    let value = "x".repeat(900);
    // Each entry counts about 975 bytes (key, JSON value, overhead): 12 exceed the bound.
    for i in 0..12 {
        set(&a, json!({"key": format!("k{i}"), "value": value})).await;
        if i >= 1 {
            assert!(get(&a, "k0").await.is_some(), "k0 is kept in use");
        }
    }
    assert!(get(&a, "k0").await.is_some());
    assert_eq!(get(&a, "k1").await, None, "k1 was least recently used");
    assert_eq!(get(&a, "k2").await, None);
    assert!(get(&a, "k3").await.is_some());
    assert!(get(&a, "k11").await.is_some());
    let too_big = json!({"key": "huge", "value": "x".repeat(20000)});
    assert_code(
        a.call_value("cache.set", &too_big).await,
        ErrorCode::BadRequest,
    );
}

#[tokio::test]
async fn the_cache_survives_a_daemon_restart() {
    let mut d = Daemon::start().await;
    let a = d.agent("alice").await;
    set(&a, json!({"key": "session", "value": {"user": 7}})).await;
    set(&a, json!({"key": "brief", "value": 1, "ttl_ms": 100})).await;
    a.call_value("cache.incr", &json!({"key": "n", "by": 41}))
        .await
        .unwrap();
    a.call_value("cache.delete", &json!({"key": "nothing"}))
        .await
        .unwrap();
    assert_eq!(d.terminate(), 0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    d.restart().await;
    let a = d.agent("alice").await;
    assert_eq!(get(&a, "session").await, Some(json!({"user": 7})));
    assert_eq!(
        get(&a, "brief").await,
        None,
        "expired while the daemon was down"
    );
    let n: Value = a.call("cache.incr", &json!({"key": "n"})).await.unwrap();
    assert_eq!(n, json!({"value": 42}));
}

/// The log rows holding a change of `key`.
async fn logged(d: &Daemon, key: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM cache_log WHERE changes LIKE '%\"{key}\"%'");
    d.db.count(&sql).await
}

#[tokio::test]
async fn the_log_is_compacted_once_it_outgrows_the_live_entries_and_keeps_them() {
    let mut d = Daemon::start_with(ON_POSTGRES).await;
    let a = d.agent("alice").await;
    set(&a, json!({"key": "kept", "value": {"n": 1}})).await;
    set(&a, json!({"key": "brief", "value": 1, "ttl_ms": 100})).await;
    set(&a, json!({"key": "gone", "value": 1})).await;
    a.call_value("cache.delete", &json!({"key": "gone"}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // 3 MB of changes to one ~100 KB entry: the log passes twice the live bytes plus 1 MB.
    let big = "x".repeat(100_000);
    for i in 0..30 {
        set(&a, json!({"key": "big", "value": format!("{i}{big}")})).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log_bytes = "SELECT coalesce(sum(length(changes)), 0)::bigint FROM cache_log";
    wait_until("the log is compacted", Duration::from_secs(10), || {
        d.db.count(log_bytes).map(|n| n < 1_000_000)
    })
    .await;
    assert_eq!(logged(&d, "alice/brief").await, 0, "expired entries leave");
    assert_eq!(logged(&d, "alice/gone").await, 0, "removed entries leave");
    assert_eq!(d.terminate(), 0);
    d.restart().await;
    let a = d.agent("alice").await;
    assert_eq!(get(&a, "kept").await, Some(json!({"n": 1})));
    assert_eq!(get(&a, "big").await, Some(json!(format!("29{big}"))));
    assert_eq!(get(&a, "gone").await, None);
}

#[tokio::test]
async fn a_cache_table_from_before_schema_version_4_moves_into_the_log() {
    let db = TestDb::create().await;
    let old = db.client().await;
    old.batch_execute(
        "CREATE UNLOGGED TABLE cache (key TEXT PRIMARY KEY, value JSONB NOT NULL, \
             expires_at TIMESTAMPTZ); \
         INSERT INTO cache VALUES ('alice/kept', '{\"n\": 1}', NULL), \
             ('alice/later', '2', now() + interval '1 hour'), \
             ('alice/past', '3', now() - interval '1 hour')",
    )
    .await
    .unwrap();
    let d = Daemon::start_on(db, ON_POSTGRES).await;
    let a = d.agent("alice").await;
    assert_eq!(get(&a, "kept").await, Some(json!({"n": 1})));
    assert_eq!(get(&a, "later").await, Some(json!(2)));
    assert_eq!(get(&a, "past").await, None);
    assert_eq!(d.db.count("SELECT count(*) FROM cache").await, 2);
}

#[tokio::test]
async fn values_keep_their_json_meaning_through_memory_the_log_and_a_restart() {
    let mut d = Daemon::start_with(ON_POSTGRES).await;
    let a = d.agent("alice").await;
    let value = json!({
        "z": [1, -2, 18446744073709551615u64, 1.5, null, true, "é ✓", {"nested": []}],
        "a": {}, "n": null, "s": "",
    });
    set(&a, json!({"key": "v", "value": value})).await;
    set(&a, json!({"key": "null", "value": null})).await;
    assert_eq!(get(&a, "v").await, Some(value.clone()));
    assert_eq!(d.terminate(), 0);
    d.restart().await;
    let a = d.agent("alice").await;
    assert_eq!(get(&a, "v").await, Some(value.clone()));
    assert_eq!(get(&a, "null").await, Some(Value::Null));
    let view = d.db.client().await;
    let row = view
        .query_one("SELECT value FROM cache WHERE key = 'alice/v'", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, Value>(0),
        value,
        "the view shows the same JSON"
    );
}

#[tokio::test]
async fn values_without_a_json_form_are_refused_and_nothing_is_stored() {
    #[derive(serde::Serialize)]
    struct Binary<'a> {
        key: &'a str,
        #[serde(serialize_with = "as_bytes")]
        value: &'a [u8],
    }
    fn as_bytes<S: serde::Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    let d = Daemon::start().await;
    let a = d.agent("alice").await;
    let binary = Binary {
        key: "k",
        value: &[1, 2, 3],
    };
    assert_code(
        a.call_value("cache.set", &binary).await,
        ErrorCode::BadRequest,
    );
    let nul = json!({"key": "k", "value": {"s": "a\u{0}b"}});
    assert_code(a.call_value("cache.set", &nul).await, ErrorCode::BadRequest);
    assert_eq!(get(&a, "k").await, None);
    set(&a, json!({"key": "k", "value": 1})).await;
    assert_eq!(
        get(&a, "k").await,
        Some(json!(1)),
        "the connection still works"
    );
}

#[tokio::test]
async fn a_log_row_that_is_not_a_batch_is_skipped_and_the_rest_loads() {
    let mut d = Daemon::start_with(ON_POSTGRES).await;
    let a = d.agent("alice").await;
    set(&a, json!({"key": "kept", "value": 1})).await;
    assert_eq!(d.terminate(), 0);
    let db = d.db.client().await;
    db.batch_execute("INSERT INTO cache_log (changes) VALUES ('not json')")
        .await
        .unwrap();
    d.restart().await;
    let a = d.agent("alice").await;
    assert_eq!(get(&a, "kept").await, Some(json!(1)));
    set(&a, json!({"key": "new", "value": 2})).await;
    assert_eq!(get(&a, "new").await, Some(json!(2)));
}
