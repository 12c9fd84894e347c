//! Task queues, as agents see them through the socket: priority and scheduling, exactly-once
//! claims, leases, retries to dead letters, deduplication, and wake-ups without polling.

mod support;

use ikigai_client::{ClaimArgs, Client, ErrorCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{assert_code, on_postgres, running, running_settles_at, Daemon};

fn claim(queue: &str, max: u32, wait_ms: u64) -> ClaimArgs<'_> {
    ClaimArgs {
        queue,
        max: Some(max),
        wait_ms: Some(wait_ms),
        lease_ms: None,
    }
}

/// `queue.stats` of `queue`, as the store counts.
async fn counts(d: &Daemon, queue: &str) -> Value {
    let admin = d.admin().await;
    let mut stats: Value = admin
        .call("queue.stats", &json!({"queue": queue}))
        .await
        .unwrap();
    if let Some(o) = stats.as_object_mut() {
        o.retain(|k, _| {
            [
                "queue",
                "pending",
                "scheduled",
                "claimed",
                "completed",
                "dead",
            ]
            .contains(&k.as_str())
        });
    }
    stats
}

async fn push(c: &Client, queue: &str, args: Value) -> String {
    let mut args = args;
    args["queue"] = json!(queue);
    let reply: Value = c.call("queue.push", &args).await.unwrap();
    reply["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn tasks_are_claimed_by_priority_then_age() {
    let d = Daemon::start().await;
    let producer = d.agent("producer").await;
    for (n, priority) in [(1, 0), (2, 5), (3, 0), (4, 9), (5, 5)] {
        push(
            &producer,
            "jobs",
            json!({"payload": n, "priority": priority}),
        )
        .await;
    }
    let worker = d.agent("worker").await;
    let tasks = worker.queue_claim(&claim("jobs", 10, 0)).await.unwrap();
    let order: Vec<i64> = tasks.iter().map(|t| t.payload.as_i64().unwrap()).collect();
    assert_eq!(order, [4, 2, 5, 1, 3]);
    assert!(tasks
        .iter()
        .all(|t| t.claimed_by.as_deref() == Some("worker") && t.attempts == 1));
}

#[tokio::test]
async fn a_scheduled_task_is_claimable_only_when_due() {
    let d = Daemon::start().await;
    let c = d.agent("worker").await;
    push(&c, "later", json!({"payload": "x", "delay_ms": 400})).await;
    assert!(c
        .queue_claim(&claim("later", 1, 0))
        .await
        .unwrap()
        .is_empty());
    let started = Instant::now();
    let got = c.queue_claim(&claim("later", 1, 5_000)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn twenty_concurrent_consumers_complete_each_task_exactly_once() {
    let d = Daemon::start().await;
    let producer = d.agent("producer").await;
    let tasks: Vec<Value> = (0..500).map(|i| json!({"payload": i})).collect();
    let _: Value = producer
        .call("queue.push_many", &json!({"queue": "work", "tasks": tasks}))
        .await
        .unwrap();
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for w in 0..20 {
        let c = d.agent(&format!("w{w}")).await;
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let got = c.queue_claim(&claim("work", 5, 300)).await.unwrap();
                if got.is_empty() {
                    return;
                }
                for t in got {
                    c.queue_complete(&t.id, Some(&json!({"by": w})))
                        .await
                        .unwrap();
                    done.lock().unwrap().push(t.id);
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let done = done.lock().unwrap().clone();
    let unique: HashSet<&String> = done.iter().collect();
    assert_eq!(done.len(), 500, "every task completed");
    assert_eq!(unique.len(), 500, "none twice");
    assert_eq!(counts(&d, "work").await["completed"], json!(500));
}

#[tokio::test]
async fn an_expired_lease_makes_the_task_claimable_again_and_fences_the_old_claimer() {
    let d = Daemon::start().await;
    let (a, b) = (d.agent("a").await, d.agent("b").await);
    let id = push(&a, "q", json!({"payload": 1})).await;
    let short = ClaimArgs {
        queue: "q",
        max: Some(1),
        wait_ms: None,
        lease_ms: Some(200),
    };
    assert_eq!(a.queue_claim(&short).await.unwrap()[0].id, id);
    let again = b.queue_claim(&claim("q", 1, 5_000)).await.unwrap();
    assert_eq!(again[0].id, id);
    assert_eq!(
        again[0].attempts, 2,
        "the expired claim counts as an attempt"
    );
    assert_code(a.queue_complete(&id, None).await, ErrorCode::Conflict);
    b.queue_complete(&id, None).await.unwrap();
}

#[tokio::test]
async fn a_claimer_that_disconnects_gives_its_tasks_back_at_once() {
    let d = Daemon::start().await;
    let producer = d.agent("producer").await;
    let id = push(&producer, "q", json!({"payload": 1})).await;
    {
        let gone = d.agent("w").await;
        assert_eq!(gone.queue_claim(&claim("q", 1, 0)).await.unwrap()[0].id, id);
    }
    let w = d.agent("w").await;
    let started = Instant::now();
    let again = w.queue_claim(&claim("q", 1, 10_000)).await.unwrap();
    assert_eq!(again[0].id, id);
    assert_eq!(again[0].attempts, 2);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn failures_retry_with_backoff_until_the_task_is_dead() {
    let d = Daemon::start().await;
    let c = d.agent("w").await;
    let id = push(&c, "q", json!({"payload": 1, "max_attempts": 3})).await;
    let t = c.queue_claim(&claim("q", 1, 0)).await.unwrap().remove(0);
    let retried = c.queue_fail(&t.id, "boom 1", None).await.unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(&retried.scheduled_for).unwrap();
    let delay = due
        .signed_duration_since(chrono::Utc::now())
        .num_milliseconds();
    assert!(
        (500..=1300).contains(&delay),
        "first backoff ~1 s with jitter, got {delay} ms"
    );
    assert!(retried.failed_at.is_none() && retried.claimed_by.is_none());

    for attempt in 2..=3 {
        let t = c
            .queue_claim(&claim("q", 1, 3_000))
            .await
            .unwrap()
            .remove(0);
        assert_eq!((t.id.as_str(), t.attempts), (id.as_str(), attempt));
        let after = c
            .queue_fail(&t.id, &format!("boom {attempt}"), Some(10))
            .await
            .unwrap();
        assert_eq!(after.failed_at.is_some(), attempt == 3);
    }
    assert!(
        c.queue_claim(&claim("q", 1, 300)).await.unwrap().is_empty(),
        "dead tasks are not claimed"
    );
    let dead: Value = c
        .call("queue.list", &json!({"queue": "q", "state": "dead"}))
        .await
        .unwrap();
    assert_eq!(dead["tasks"][0]["id"], json!(id));
    assert_eq!(dead["tasks"][0]["error"], json!("boom 3"));
    let stats: Value = c.call("queue.stats", &json!({"queue": "q"})).await.unwrap();
    assert_eq!(
        (stats["dead"].as_u64(), stats["pending"].as_u64()),
        (Some(1), Some(0))
    );
}

#[tokio::test]
async fn a_pending_dedup_key_returns_the_existing_task() {
    let d = Daemon::start().await;
    let c = d.agent("w").await;
    let first: Value = c
        .call(
            "queue.push",
            &json!({"queue": "q", "payload": 1, "dedup_key": "k"}),
        )
        .await
        .unwrap();
    let second: Value = c
        .call(
            "queue.push",
            &json!({"queue": "q", "payload": 2, "dedup_key": "k"}),
        )
        .await
        .unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(
        (first["created"].as_bool(), second["created"].as_bool()),
        (Some(true), Some(false))
    );
    let t = c.queue_claim(&claim("q", 5, 0)).await.unwrap();
    assert_eq!(t.len(), 1);
    c.queue_complete(&t[0].id, None).await.unwrap();
    let third: Value = c
        .call(
            "queue.push",
            &json!({"queue": "q", "payload": 3, "dedup_key": "k"}),
        )
        .await
        .unwrap();
    assert_ne!(third["id"], first["id"], "a finished task frees its key");
}

#[tokio::test]
async fn only_the_claimer_settles_its_task_and_never_twice() {
    let d = Daemon::start().await;
    let (a, b) = (d.agent("a").await, d.agent("b").await);
    let id = push(&a, "q", json!({"payload": 1})).await;
    a.queue_claim(&claim("q", 1, 0)).await.unwrap();
    assert_code(
        b.queue_complete(&id, None).await,
        ErrorCode::PermissionDenied,
    );
    assert_code(
        b.queue_fail(&id, "x", None).await,
        ErrorCode::PermissionDenied,
    );
    assert_code(b.queue_release(&id).await, ErrorCode::PermissionDenied);
    assert_code(b.queue_extend(&id, 1000).await, ErrorCode::PermissionDenied);
    a.queue_complete(&id, Some(&json!("done"))).await.unwrap();
    assert_code(a.queue_complete(&id, None).await, ErrorCode::Conflict);
    let missing = uuid::Uuid::new_v4().to_string();
    assert_code(a.queue_complete(&missing, None).await, ErrorCode::NotFound);
}

#[tokio::test]
async fn a_failure_that_cannot_be_stored_is_refused_without_harming_other_writes() {
    let d = Daemon::start().await;
    let c = d.agent("w").await;
    let id = push(&c, "q", json!({"payload": 1})).await;
    c.queue_claim(&claim("q", 1, 0)).await.unwrap();
    assert_code(
        c.queue_fail(&id, "bad\u{0}text", None).await,
        ErrorCode::BadRequest,
    );
    assert_code(
        c.queue_fail(&id, "later", Some(u64::MAX)).await,
        ErrorCode::BadRequest,
    );
    c.queue_fail(&id, "fine", Some(10)).await.unwrap();
}

#[tokio::test]
async fn release_gives_the_task_back_untouched_and_extend_keeps_it() {
    let d = Daemon::start().await;
    let (a, b) = (d.agent("a").await, d.agent("b").await);
    let id = push(&a, "q", json!({"payload": 1})).await;
    a.queue_claim(&claim("q", 1, 0)).await.unwrap();
    let released = a.queue_release(&id).await.unwrap();
    assert_eq!((released.attempts, released.claimed_by), (0, None));

    let short = ClaimArgs {
        queue: "q",
        max: Some(1),
        wait_ms: None,
        lease_ms: Some(300),
    };
    assert_eq!(a.queue_claim(&short).await.unwrap()[0].attempts, 1);
    a.queue_extend(&id, 10_000).await.unwrap();
    assert!(
        b.queue_claim(&claim("q", 1, 700)).await.unwrap().is_empty(),
        "the extended lease holds"
    );
    a.queue_complete(&id, None).await.unwrap();
}

#[tokio::test]
async fn a_task_rescheduled_by_another_writer_is_not_claimed_from_a_stale_window() {
    let d = Daemon::start_with(&on_postgres("queues")).await;
    let c = d.agent("worker").await;
    push(&c, "retries", json!({"payload": "x"})).await;
    // Another writer (another daemon's `queue.fail`, say) moves the task an hour later; with the
    // notify trigger off, this daemon's window still holds it as due.
    d.db.client()
        .await
        .batch_execute(
            "ALTER TABLE task_queue DISABLE TRIGGER task_queue_notify_claimable; \
             UPDATE task_queue SET scheduled_for = now() + interval '1 hour'; \
             ALTER TABLE task_queue ENABLE TRIGGER task_queue_notify_claimable",
        )
        .await
        .unwrap();
    let got = c.queue_claim(&claim("retries", 1, 300)).await.unwrap();
    assert!(got.is_empty(), "claimed before it was due: {got:?}");
    let stats: Value = c
        .call("queue.stats", &json!({"queue": "retries"}))
        .await
        .unwrap();
    assert_eq!(stats["scheduled"], 1, "{stats}");
}

#[tokio::test]
async fn a_task_inserted_with_plain_sql_wakes_a_waiting_consumer() {
    let d = Daemon::start_with(&on_postgres("queues")).await;
    let w = d.agent("w").await;
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let got = w.queue_claim(&claim("webhooks", 1, 10_000)).await.unwrap();
        (got, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.db.client().await
        .execute("INSERT INTO task_queue (queue_name, payload) VALUES ('webhooks', '{\"from\": \"psql\"}')", &[])
        .await
        .unwrap();
    let (got, waited) = waiting.await.unwrap();
    assert_eq!(got[0].payload, json!({"from": "psql"}));
    assert!(
        waited < Duration::from_secs(2),
        "woken by NOTIFY, not a sweep: {waited:?}"
    );
}

/// Notifications name their writer: a daemon's pushes and give-backs wake the other daemons
/// under its id, which lets it ignore its own; plain SQL names no one and wakes every daemon.
#[tokio::test]
async fn notifications_name_the_daemon_that_wrote() {
    let d = Daemon::start_with(&on_postgres("queues")).await;
    let mut notifications = d.db.listen("ikigai_task_queue").await;
    let id = std::fs::read_to_string(d.root().join(".ikigai/daemon.id")).unwrap();
    let by_daemon = format!("{}\nnamed", id.trim());
    let c = d.agent("worker").await;
    let task = push(&c, "named", json!({"payload": {}})).await;
    assert_eq!(notifications.next().await, by_daemon, "a push");
    c.queue_claim(&claim("named", 1, 1_000)).await.unwrap();
    let _: Value = c.call("queue.release", &json!({"id": task})).await.unwrap();
    assert_eq!(notifications.next().await, by_daemon, "a give-back");
    d.db.client()
        .await
        .execute(
            "INSERT INTO task_queue (queue_name, payload) VALUES ('named', '{}')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(notifications.next().await, "\nnamed", "plain SQL");
}

#[tokio::test]
async fn the_cli_pushes_counts_lists_and_shows_dead_tasks() {
    let d = Daemon::start().await;
    let args = [
        "queue",
        "push",
        "ops",
        r#"{"from":"cli"}"#,
        "--priority",
        "3",
    ];
    let pushed = d.cli_ok(&args).trim().to_owned();

    let stats = String::from_utf8(d.cli(&["queue", "stats", "ops"]).stdout).unwrap();
    assert!(stats.lines().any(|l| l == "pending: 1"), "{stats}");
    let list = String::from_utf8(
        d.cli(&["queue", "list", "ops", "--state", "pending"])
            .stdout,
    )
    .unwrap();
    let task: Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    assert_eq!(
        (&task["id"], &task["priority"], &task["payload"]),
        (&json!(pushed), &json!(3), &json!({"from": "cli"}))
    );

    let c = d.agent("worker").await;
    let doomed = push(
        &c,
        "ops",
        json!({"payload": {}, "priority": 9, "max_attempts": 1}),
    )
    .await;
    c.queue_claim(&claim("ops", 1, 1_000)).await.unwrap();
    let _: Value = c
        .call("queue.fail", &json!({"id": doomed, "error": "boom"}))
        .await
        .unwrap();
    let dead = String::from_utf8(d.cli(&["queue", "dead", "ops"]).stdout).unwrap();
    let ids: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].clone())
        .collect();
    assert_eq!(ids, [json!(doomed)], "{dead}");
}

#[tokio::test]
async fn the_seeds_claim_query_still_works_on_the_table() {
    let d = Daemon::start_with(&on_postgres("queues")).await;
    let c = d.agent("w").await;
    let id = push(
        &c,
        "monitoring-tasks",
        json!({"payload": {"check": "disk"}}),
    )
    .await;
    let row = d.db.client().await
        .query_one(
            "UPDATE task_queue SET claimed_by = 'monitoring-agent', claimed_at = now() \
             WHERE id = (SELECT id FROM task_queue WHERE queue_name = 'monitoring-tasks' \
               AND claimed_by IS NULL AND scheduled_for <= now() \
               ORDER BY priority DESC, created_at FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), id);
    assert!(c
        .queue_claim(&claim("monitoring-tasks", 1, 200))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_push_or_completion_and_releases_dead_sessions_claims() {
    let mut d = Daemon::start_with(&on_postgres("queues")).await;
    let producer = d.agent("producer").await;
    let pushed = Arc::new(Mutex::new(HashSet::new()));
    let completed = Arc::new(Mutex::new(HashSet::new()));
    let p = pushed.clone();
    let producing = tokio::spawn(async move {
        for i in 0.. {
            match producer
                .call::<_, Value>("queue.push", &json!({"queue": "q", "payload": i}))
                .await
            {
                Ok(r) => p
                    .lock()
                    .unwrap()
                    .insert(r["id"].as_str().unwrap().to_owned()),
                Err(_) => return,
            };
        }
    });
    let w = d.agent("w").await;
    let c = completed.clone();
    let working = tokio::spawn(async move {
        while let Ok(got) = w.queue_claim(&claim("q", 10, 100)).await {
            for t in got {
                if w.queue_complete(&t.id, None).await.is_err() {
                    return;
                }
                c.lock().unwrap().insert(t.id);
            }
        }
    });
    // Killed mid-load: once both sides are well under way (however slow the machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (pushed.lock().unwrap().len() < 50 || completed.lock().unwrap().len() < 10)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.kill9();
    producing.await.unwrap();
    working.await.unwrap();
    d.restart().await;
    let db = d.db.client().await;
    let rows = db
        .query(
            "SELECT id::text, completed_at IS NOT NULL, claimed_by FROM task_queue",
            &[],
        )
        .await
        .unwrap();
    let stored: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let done: HashSet<String> = rows
        .iter()
        .filter(|r| r.get::<_, bool>(1))
        .map(|r| r.get(0))
        .collect();
    let pushed = pushed.lock().unwrap().clone();
    assert!(
        pushed.len() > 20,
        "the producer was busy ({} pushes)",
        pushed.len()
    );
    assert!(
        pushed.is_subset(&stored),
        "every acknowledged push is stored"
    );
    assert!(
        completed.lock().unwrap().is_subset(&done),
        "every acknowledged completion is stored"
    );
    let held: Vec<Option<String>> = rows
        .iter()
        .filter(|r| !r.get::<_, bool>(1))
        .map(|r| r.get(2))
        .collect();
    assert!(
        held.iter().all(Option::is_none),
        "claims of the dead daemon's sessions are released"
    );
}

#[tokio::test]
async fn two_daemons_on_one_database_complete_ten_thousand_tasks_exactly_once() {
    let d1 = Daemon::start().await;
    let d2 = d1.beside().await;
    for (i, d) in [&d1, &d2, &d1, &d2, &d1, &d2, &d1, &d2, &d1, &d2]
        .iter()
        .enumerate()
    {
        let tasks: Vec<Value> = (0..1000)
            .map(|n| json!({"payload": i * 1000 + n}))
            .collect();
        let producer = d.agent("producer").await;
        let _: Value = producer
            .call(
                "queue.push_many",
                &json!({"queue": "shared", "tasks": tasks}),
            )
            .await
            .unwrap();
    }
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for w in 0..8 {
        let c = if w % 2 == 0 {
            d1.agent(&format!("w{w}")).await
        } else {
            d2.agent(&format!("w{w}")).await
        };
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let got = c.queue_claim(&claim("shared", 50, 1_000)).await.unwrap();
                if got.is_empty() {
                    return;
                }
                for t in got {
                    c.queue_complete(&t.id, None).await.unwrap();
                    done.lock().unwrap().push(t.id);
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let done = done.lock().unwrap().clone();
    let unique: HashSet<&String> = done.iter().collect();
    assert_eq!(
        (done.len(), unique.len()),
        (10_000, 10_000),
        "each task completed exactly once"
    );
}

#[tokio::test]
async fn a_task_pushed_through_one_daemon_wakes_a_consumer_waiting_on_another() {
    let d1 = Daemon::start().await;
    let d2 = d1.beside().await;
    let waiter = d2.agent("w").await;
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        (
            waiter
                .queue_claim(&claim("cross", 1, 10_000))
                .await
                .unwrap(),
            started.elapsed(),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = push(&d1.agent("p").await, "cross", json!({"payload": "hop"})).await;
    let (got, waited) = waiting.await.unwrap();
    assert_eq!(got[0].id, id);
    assert!(
        waited < Duration::from_secs(2),
        "woken by the other daemon's NOTIFY: {waited:?}"
    );
}

#[tokio::test]
async fn completing_and_failing_tasks_are_telemetry_events() {
    let d = Daemon::start().await;
    let c = d.agent("w").await;
    push(&c, "q", json!({"payload": 1})).await;
    push(&c, "q", json!({"payload": 2})).await;
    let tasks = c.queue_claim(&claim("q", 2, 0)).await.unwrap();
    c.queue_complete(&tasks[0].id, None).await.unwrap();
    c.queue_fail(&tasks[1].id, "nope", None).await.unwrap();
    let mut found = Value::Null;
    for _ in 0..200 {
        found = c
            .call("telemetry.query", &json!({"agent": "w"}))
            .await
            .unwrap();
        if found["events"].as_array().is_some_and(|e| e.len() >= 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let types: HashSet<&str> = found["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert!(
        types.contains("task_completed") && types.contains("task_failed"),
        "{found}"
    );
}

#[tokio::test]
async fn push_arguments_are_checked_and_bad_ones_store_nothing() {
    let d = Daemon::start().await;
    let c = d.agent("w").await;
    let bad = [
        json!({"queue": "q", "payload": 1, "delay": 5}),
        json!({"queue": "q", "payload": 1, "delay_ms": 5, "scheduled_for": "2030-01-01T00:00:00Z"}),
        json!({"queue": "q", "payload": {"s": "a\u{0}b"}}),
        json!({"queue": "q", "payload": 1, "max_attempts": 0}),
        json!({"queue": "q", "payload": 1, "delay_ms": u64::MAX}),
        json!({"queue": 7, "payload": 1}),
        json!({"payload": 1}),
    ];
    for args in bad {
        assert_code(
            c.call_value("queue.push", &args).await,
            ErrorCode::BadRequest,
        );
    }
    #[derive(serde::Serialize)]
    struct NanPush {
        queue: &'static str,
        payload: f64,
    }
    let nan = NanPush {
        queue: "q",
        payload: f64::NAN,
    };
    assert_code(
        c.call_value("queue.push", &nan).await,
        ErrorCode::BadRequest,
    );
    let nothing = json!({"queue": "q", "pending": 0, "scheduled": 0, "claimed": 0, "completed": 0, "dead": 0});
    assert_eq!(counts(&d, "q").await, nothing);
}

#[tokio::test]
async fn an_idle_queue_stops_its_actor_and_a_later_claim_finds_its_tasks() {
    let d = Daemon::start_with("[queues]\nidle_ms = 300\n").await;
    let (producer, holder) = (d.agent("producer").await, d.agent("holder").await);
    push(&producer, "held", json!({"payload": "a"})).await;
    push(&producer, "held", json!({"payload": "b"})).await;
    let claimed = holder.queue_claim(&claim("held", 1, 0)).await.unwrap();
    push(&producer, "unused", json!({"payload": "c"})).await;
    let waiter = d.agent("waiter").await;
    let waiting = tokio::spawn(async move {
        let got = waiter.queue_claim(&claim("awaited", 1, 5_000)).await;
        (waiter, got)
    });
    let why = "the unused queue stops; one with a claim held or a consumer waiting stays";
    running_settles_at(&producer, "queues", 2, why).await;
    push(&producer, "awaited", json!({"payload": "d"})).await;
    let (waiter, got) = waiting.await.unwrap();
    let got = got.unwrap();
    assert_eq!(got[0].payload, json!("d"));
    holder.queue_complete(&claimed[0].id, None).await.unwrap();
    waiter.queue_complete(&got[0].id, None).await.unwrap();
    support::wait_until("every queue stops", Duration::from_secs(10), || async {
        running(&producer, "queues").await == 0
    })
    .await;

    let later = holder.queue_claim(&claim("unused", 5, 0)).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!((&later[0].payload, later[0].attempts), (&json!("c"), 1));
    let rest = holder.queue_claim(&claim("held", 5, 0)).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].payload, json!("b"));
    assert_eq!(running(&producer, "queues").await, 2);
}
