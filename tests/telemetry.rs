//! Telemetry against the real daemon and Postgres: emit and query, full-text search, events of
//! the daemon itself, flushing on SIGTERM, retention, and the CLI.

mod support;

use ikigai_client::{Client, ErrorCode, Receive};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{assert_code, Daemon, Lines, TestDb};

async fn events(client: &Client, args: Value) -> Vec<Value> {
    let reply: Value = client.call("telemetry.query", &args).await.unwrap();
    reply["events"].as_array().unwrap().clone()
}

/// Queries until `args` matches at least `n` events (writes are batched, not instant).
async fn eventually(client: &Client, args: Value, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = events(client, args.clone()).await;
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn emit(client: &Client, event_type: &str, payload: Value) {
    let args = json!({ "event_type": event_type, "payload": payload });
    client.call_value("telemetry.emit", &args).await.unwrap();
}

#[tokio::test]
async fn emitted_events_are_queried_by_agent_type_and_time() {
    let d = Daemon::start().await;
    let alice = d.agent("alice").await;
    let before = chrono::Utc::now().to_rfc3339();
    emit(&alice, "metric", json!({"latency_ms": 12})).await;
    emit(&alice, "task_completed", json!({"task": "t1"})).await;
    emit(&d.agent("bob").await, "metric", json!({"latency_ms": 99})).await;
    let mine = eventually(&alice, json!({}), 2).await;
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert_eq!(mine[0]["event_type"], "task_completed", "newest first");
    assert_eq!(mine[1]["payload"], json!({"latency_ms": 12}));
    assert_eq!(mine[1]["agent"], "alice");
    let metrics = events(&alice, json!({"event_type": "metric", "since": before})).await;
    assert_eq!(metrics.len(), 1);
    let later = events(&alice, json!({"until": before})).await;
    assert!(later.is_empty(), "{later:?}");
    let admin = d.admin().await;
    let all_metrics = eventually(&admin, json!({"event_type": "metric"}), 2).await;
    assert_eq!(all_metrics.len(), 2);
    let denied = alice
        .call_value("telemetry.query", &json!({"agent": "bob"}))
        .await;
    assert_code(denied, ErrorCode::PermissionDenied);
    let bad = alice
        .call_value("telemetry.query", &json!({"since": "yesterday"}))
        .await;
    assert_code(bad, ErrorCode::BadRequest);
    let empty_type = json!({"event_type": "", "payload": 1});
    assert_code(
        alice.call_value("telemetry.emit", &empty_type).await,
        ErrorCode::BadRequest,
    );
}

#[tokio::test]
async fn full_text_search_finds_a_logged_phrase() {
    let d = Daemon::start().await;
    let agent = d.agent("worker").await;
    emit(
        &agent,
        "log",
        json!({"message": "The disk is full on volume seven"}),
    )
    .await;
    emit(&agent, "log", json!({"message": "a full moon tonight"})).await;
    emit(
        &agent,
        "error",
        json!({"detail": {"message": "disk quota exceeded"}}),
    )
    .await;
    eventually(&agent, json!({}), 3).await;
    let phrase = events(&agent, json!({"text": "\"disk is full\""})).await;
    assert_eq!(phrase.len(), 1, "{phrase:?}");
    assert_eq!(
        phrase[0]["payload"]["message"],
        "The disk is full on volume seven"
    );
    let word = events(&agent, json!({"text": "disk"})).await;
    assert_eq!(word.len(), 2, "nested strings are searched too: {word:?}");
    let id = "3fcaace7-d59d-4b66-96fd-5a92d5a521d2";
    emit(
        &agent,
        "log",
        json!({"message": "upload retried", "task_id": id}),
    )
    .await;
    eventually(&agent, json!({"text": "retried"}), 1).await;
    let by_id = events(&agent, json!({"text": id})).await;
    assert!(by_id.is_empty(), "UUIDs are not search words: {by_id:?}");
    let out = d.cli(&["telemetry", "search", "moon"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("a full moon tonight"), "{stdout}");
}

/// Rows whose stored search text is not what `ikigai_search_text` makes of their payload.
const SEARCH_MISMATCHES: &str =
    "SELECT count(*) FROM telemetry WHERE search IS DISTINCT FROM ikigai_search_text(payload)";

#[tokio::test]
async fn the_search_text_the_daemon_writes_is_the_one_the_schema_defines() {
    let d = Daemon::start().await;
    let agent = d.agent("words").await;
    let payloads = [
        json!({"zz": "last key", "a": ["first", {"k": "nested"}, ["deeper"]], "bb": {"yy": "two", "x": "one"}}),
        json!({"éé": "multibyte key", "ab": "same length", "b": "short", "abc": 3, "ok": true}),
        json!(["top", ["level"], "array", null, 1.5]),
        json!("a bare string"),
        json!({"id": "3FCAACE7-D59D-4B66-96FD-5A92D5A521D2", "lower": "3fcaace7-d59d-4b66-96fd-5a92d5a521d2"}),
        json!({"near": "3fcaace7d59d4b6696fd5a92d5a521d2", "braces": "{3fcaace7-d59d-4b66-96fd-5a92d5a521d2}"}),
        json!({"newline": "3fcaace7-d59d-4b66-96fd-5a92d5a521d2\n", "g": "3fcaace7-d59d-4b66-96fd-5a92d5a521dg"}),
        json!({"empty": "", "phrase": "The disk is full, again!", "n": {"m": {"o": "deep down"}}}),
        json!({}),
    ];
    for payload in &payloads {
        emit(&agent, "log", payload.clone()).await;
    }
    eventually(&agent, json!({}), payloads.len()).await;
    d.db.client()
        .await
        .batch_execute(
            "INSERT INTO telemetry (agent_name, event_type, payload) \
             VALUES ('sql', 'log', '{\"message\": \"written by hand\"}'); \
             UPDATE telemetry SET payload = '{\"message\": \"edited by hand\"}' \
             WHERE payload->>'phrase' IS NOT NULL",
        )
        .await
        .unwrap();
    assert_eq!(d.db.count(SEARCH_MISMATCHES).await, 0);
    let by_hand = events(&d.admin().await, json!({"text": "hand"})).await;
    assert_eq!(
        by_hand.len(),
        2,
        "plain SQL rows are searchable: {by_hand:?}"
    );
}

#[tokio::test]
async fn a_generated_search_column_of_schema_version_4_becomes_a_written_one() {
    let db = TestDb::create().await;
    let old = db.client().await;
    old.batch_execute(include_str!("../schema.sql"))
        .await
        .unwrap();
    old.batch_execute(
        "DROP VIEW telemetry_events; \
             DROP TRIGGER telemetry_search_insert ON telemetry; \
             DROP TRIGGER telemetry_search_update ON telemetry; \
             ALTER TABLE telemetry DROP COLUMN search; \
             ALTER TABLE telemetry ADD COLUMN search tsvector \
                 GENERATED ALWAYS AS (ikigai_search_text(payload)) STORED; \
             DELETE FROM ikigai_schema WHERE version = 5; \
             INSERT INTO telemetry (agent_name, event_type, payload) \
                 VALUES ('old', 'log', '{\"message\": \"from an older daemon\"}')",
    )
    .await
    .unwrap();
    let d = Daemon::start_on(db, "").await;
    let old = events(&d.admin().await, json!({"text": "older"})).await;
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(d.db.count(SEARCH_MISMATCHES).await, 0);
}

#[tokio::test]
async fn every_accepted_event_is_written_before_sigterm_exits() {
    let mut d = Daemon::start().await;
    let agent = d.agent("busy").await;
    let mut pending = Vec::new();
    for i in 0..5000 {
        let args = json!({"event_type": "metric", "payload": {"i": i}});
        pending.push(agent.submit("telemetry.emit", &args).await.unwrap());
    }
    for p in pending {
        p.value().await.unwrap();
    }
    assert_eq!(d.terminate(), 0);
    let db = d.db.client().await;
    let row = db
        .query_one(
            "SELECT count(*) FROM telemetry WHERE agent_name = 'busy'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 5000);
}

#[tokio::test]
async fn retention_deletes_only_events_older_than_its_days() {
    let mut d = Daemon::start_with("[telemetry]\nretention_days = 7\n").await;
    let db = d.db.client().await;
    db.batch_execute(
        "INSERT INTO telemetry (agent_name, event_type, payload, created_at) \
         SELECT 'old', 'log', '{}', now() - interval '8 days' FROM generate_series(1, 25000); \
         INSERT INTO telemetry (agent_name, event_type, payload, created_at) \
         SELECT 'recent', 'log', '{}', now() - interval '6 days' FROM generate_series(1, 10)",
    )
    .await
    .unwrap();
    d.terminate();
    d.restart().await; // retention runs at start, then hourly
    let count = |agent: &'static str| {
        let db = &db;
        async move {
            let sql = "SELECT count(*) FROM telemetry WHERE agent_name = $1";
            db.query_one(sql, &[&agent]).await.unwrap().get::<_, i64>(0)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count("old").await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count("old").await, 0, "{}", d.log());
    assert_eq!(count("recent").await, 10);
}

#[tokio::test]
async fn the_daemon_reports_config_loads_redeliveries_and_actor_restarts() {
    let d = Daemon::start_with("[debug]\nfault_injection = true\n").await;
    let admin = d.admin().await;
    let loaded = eventually(
        &admin,
        json!({"agent": "daemon", "event_type": "config_loaded"}),
        1,
    )
    .await;
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    let carol = d.agent("carol").await;
    carol.mailbox_send("carol", &json!("hi")).await.unwrap();
    let receive = Receive {
        mailbox: "carol",
        max: Some(1),
        wait_ms: None,
        visibility_ms: Some(50),
    };
    assert_eq!(carol.mailbox_receive(&receive).await.unwrap().len(), 1);
    let redelivered = eventually(&carol, json!({"event_type": "mailbox_redelivery"}), 1).await;
    assert_eq!(redelivered[0]["payload"]["reason"], "visibility_timeout");
    assert_eq!(redelivered[0]["payload"]["count"], 1);
    admin
        .call_value("debug.panic_mailbox", &json!({"mailbox": "carol"}))
        .await
        .unwrap();
    let restarted = eventually(&carol, json!({"event_type": "actor_restarted"}), 1).await;
    assert_eq!(restarted[0]["payload"]["mailbox"], "carol");
}

#[tokio::test]
async fn the_cli_tails_new_events_live() {
    let d = Daemon::start().await;
    let agent = d.agent("chatty").await;
    emit(&agent, "log", json!({"message": "before the tail"})).await;
    let mut tail = d.spawn_cli(&["telemetry", "tail", "--agent", "chatty", "--type", "log"]);
    let mut lines = Lines::of(tail.stdout.take().unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    emit(&agent, "metric", json!({"message": "not a log"})).await;
    emit(&agent, "log", json!({"message": "live line"})).await;
    let line = lines.next().await;
    tail.kill().unwrap();
    tail.wait().unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["payload"]["message"], "live line");
}

/// Claims every task of `queue` (`n` of them) and completes them all at once, pipelined.
async fn complete_all(client: &Client, queue: &str, n: usize) -> Vec<String> {
    let tasks: Vec<ikigai_client::NewTask> = (0..n)
        .map(|i| ikigai_client::NewTask::new(json!({"i": i})))
        .collect();
    client.queue(queue).push_many(&tasks).await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < n {
        let args = json!({"queue": queue, "max": 100});
        let claimed: Value = client.call("queue.claim", &args).await.unwrap();
        let claimed = claimed["tasks"].as_array().unwrap().clone();
        let mut pending = Vec::new();
        for t in &claimed {
            let args = json!({"id": t["id"]});
            pending.push(client.submit("queue.complete", &args).await.unwrap());
        }
        for p in pending {
            p.value().await.unwrap();
        }
        ids.extend(claimed.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
    }
    ids
}

#[tokio::test]
async fn settled_tasks_are_stored_a_group_per_row_and_queried_one_event_each() {
    let d = Daemon::start().await;
    let w = d.agent("w").await;
    let mut done = complete_all(&w, "plain", 500).await;
    done.extend(complete_all(&w, "special", 20).await);
    let query = json!({"event_type": "task_completed", "limit": 1000});
    let all = eventually(&w, query, 520).await;
    assert_eq!(all.len(), 520, "one event per task");
    let mut task_ids: Vec<&str> = all
        .iter()
        .map(|e| e["payload"]["task_id"].as_str().unwrap())
        .collect();
    task_ids.sort_unstable();
    done.sort_unstable();
    assert_eq!(task_ids, done, "each completed task's own event");
    let ids: std::collections::HashSet<&str> =
        all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 520, "every event keeps an id of its own");
    assert_eq!(all[0]["payload"]["queue"], "special", "newest first");
    assert_eq!(all[0]["payload"]["attempts"], 1);

    let db = d.db.client().await;
    let sql = "SELECT count(*), sum(coalesce(events, 1))::int8 FROM telemetry \
               WHERE agent_name = 'w' AND event_type = 'task_completed'";
    let stored = db.query_one(sql, &[]).await.unwrap();
    let (rows, counted) = (stored.get::<_, i64>(0), stored.get::<_, i64>(1));
    assert_eq!(counted, 520);
    assert!(
        rows <= 52,
        "about one row per commit group, not per task: {rows}"
    );
    assert_eq!(
        db.query_one(SEARCH_MISMATCHES, &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );

    let limited = events(&w, json!({"event_type": "task_completed", "limit": 7})).await;
    assert_eq!(limited, all[..7], "the limit counts events, not rows");
    let special = events(&w, json!({"text": "special", "limit": 1000})).await;
    assert_eq!(
        special.len(),
        20,
        "text picks the events of a group that match"
    );
    let at = |e: &Value| e["created_at"].as_str().unwrap().to_owned();
    let middle = at(&all[260]);
    let since = events(&w, json!({"since": middle, "limit": 1000})).await;
    let until = events(&w, json!({"until": middle, "limit": 1000})).await;
    assert_eq!(
        since.len() + until.len(),
        520,
        "since and until split the events exactly"
    );
    assert!(since.iter().all(|e| at(e) >= middle) && until.iter().all(|e| at(e) < middle));
}

#[tokio::test]
async fn a_hand_edited_group_row_loses_only_its_broken_event() {
    let d = Daemon::start().await;
    let w = d.agent("w").await;
    complete_all(&w, "q", 50).await;
    let query = json!({"event_type": "task_completed", "limit": 100});
    eventually(&w, query.clone(), 50).await;
    let db = d.db.client().await;
    let broken = db
        .execute(
            "UPDATE telemetry SET payload = jsonb_set(jsonb_set(payload, '{0,id}', '\"nope\"'), \
                 '{1,at}', '\"soon\"') \
             WHERE id = (SELECT id FROM telemetry WHERE events >= 2 LIMIT 1)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(broken, 1);
    let all = events(&w, query).await;
    assert_eq!(
        all.len(),
        49,
        "the event without an id is skipped: {}",
        d.log()
    );
    assert!(d.log().contains("telemetry"), "and reported: {}", d.log());
}
