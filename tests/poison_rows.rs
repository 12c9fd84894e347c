//! Rows the daemon cannot decode, written by plain SQL (a JSONB value nested 200 levels deep,
//! beyond serde_json's 128): each reader reports the row (`row_undecodable`) and skips or
//! dead-letters it, and everything around it is served; nothing panics, no actor restart-loops.

mod support;

use ikigai_client::{Client, ClientError};
use serde_json::json;
use std::time::Duration;
use support::{assert_code, Daemon};

/// SQL for a JSONB array nested 200 levels deep.
const POISON: &str = "(repeat('[', 200) || '1' || repeat(']', 200))::jsonb";

async fn sql(d: &Daemon, statement: &str) {
    let client = d.db.client().await;
    let done = client.batch_execute(statement).await;
    done.unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// `op` as `c`, answered within 10 s: a reader that panics leaves its request unanswered.
async fn call(
    c: &Client,
    op: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, ClientError> {
    within(op, c.call(op, &args)).await
}

async fn within<T>(what: &str, answer: impl std::future::Future<Output = T>) -> T {
    let answer = tokio::time::timeout(Duration::from_secs(10), answer).await;
    answer.unwrap_or_else(|_| panic!("{what} answered within 10 s"))
}

/// Waits until the daemon has recorded a `row_undecodable` event about `table` for each of
/// `actions` (what was done with the row).
async fn reported(d: &Daemon, table: &str, actions: &[&str]) {
    let what = format!("row_undecodable events about {table}: {actions:?}");
    support::wait_until(&what, Duration::from_secs(10), || async {
        let events = within("telemetry.query", d.events("daemon", "row_undecodable")).await;
        let about = |action: &str| {
            let payload = |e: &serde_json::Value| e["payload"].clone();
            events
                .iter()
                .map(payload)
                .any(|p| p["table"] == table && p["action"] == action)
        };
        actions.iter().all(|a| about(a))
    })
    .await
}

/// Nothing panicked, and no actor was restarted (a restart loop shows up as restarts).
fn assert_no_panic_nor_restart(d: &Daemon) {
    d.assert_no_panic_nor_internal();
    let log = d.log();
    assert!(!log.contains("restarting"), "an actor restarted:\n{log}");
}

#[tokio::test]
async fn an_undecodable_task_is_dead_lettered_and_the_next_task_is_claimed() {
    let d = Daemon::start().await;
    let poison = format!(
        "INSERT INTO task_queue (queue_name, payload, created_at) \
         VALUES ('p', {POISON}, now() - interval '1 minute')"
    );
    sql(&d, &poison).await;
    let c = d.admin().await;
    let good = within("queue.push", c.queue_push("p", &json!({"n": 1})))
        .await
        .unwrap();
    let claimed = call(&c, "queue.claim", json!({"queue": "p", "max": 10}))
        .await
        .unwrap();
    let tasks = claimed["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "only the good task is claimed: {claimed}");
    assert_eq!(tasks[0]["id"], json!(good));
    let dead =
        d.db.count(
            "SELECT count(*) FROM task_queue WHERE failed_at IS NOT NULL \
             AND error LIKE 'the stored task does not decode%'",
        )
        .await;
    assert_eq!(dead, 1, "the poison task is dead with a reason");
    let stats = call(&c, "queue.stats", json!({"queue": "p"}))
        .await
        .unwrap();
    assert_eq!(stats["dead"], 1, "{stats}");
    reported(&d, "task_queue", &["dead-lettered"]).await;
    assert_no_panic_nor_restart(&d);
}

#[tokio::test]
async fn an_undecodable_message_is_marked_read_and_the_next_is_received() {
    let d = Daemon::start().await;
    let poison = format!(
        "INSERT INTO mailbox (mailbox_name, sender, payload) VALUES ('admin', 'x', {POISON})"
    );
    sql(&d, &poison).await;
    let c = d.admin().await;
    within("mailbox.send", c.mailbox_send("admin", &json!({"n": 1})))
        .await
        .unwrap();
    for _ in 0..3 {
        let got = call(
            &c,
            "mailbox.receive",
            json!({"mailbox": "admin", "wait_ms": 1000, "visibility_ms": 1}),
        )
        .await
        .expect("the mailbox serves, again and again");
        let messages = got["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "{got}");
        assert_eq!(messages[0]["payload"], json!({"n": 1}));
    }
    let buried =
        d.db.count("SELECT count(*) FROM mailbox WHERE read_by = 'ikigai:undecodable'")
            .await;
    assert_eq!(
        buried, 1,
        "the poison message is marked read by ikigai:undecodable"
    );
    reported(&d, "mailbox", &["dead-lettered"]).await;
    assert_no_panic_nor_restart(&d);
}

#[tokio::test]
async fn an_undecodable_document_is_unavailable_and_skipped_by_list() {
    let d = Daemon::start().await;
    let c = d.admin().await;
    for key in ["a", "c"] {
        let args = json!({"key": key, "value": key});
        call(&c, "storage.put", args).await.unwrap();
    }
    let poison = format!(
        "INSERT INTO document (namespace, key, value, version) VALUES ('admin', 'b', {POISON}, 1)"
    );
    sql(&d, &poison).await;
    let get = call(&c, "storage.get", json!({"key": "b"})).await;
    assert_code(get, ikigai_client::ErrorCode::Unavailable);
    let listed = call(&c, "storage.list", json!({})).await.unwrap();
    let keys: Vec<_> = listed["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|doc| doc["key"].clone())
        .collect();
    assert_eq!(keys, [json!("a"), json!("c")], "{listed}");
    let got = call(&c, "storage.get", json!({"key": "c"})).await.unwrap();
    assert_eq!(got["document"]["value"], "c");
    reported(&d, "document", &["refused", "skipped"]).await;
    assert_no_panic_nor_restart(&d);
}

#[tokio::test]
async fn an_undecodable_event_is_skipped_by_telemetry_query() {
    let d = Daemon::start().await;
    let poison = format!(
        "INSERT INTO telemetry (agent_name, event_type, payload) VALUES ('admin', 'e', {POISON})"
    );
    sql(&d, &poison).await;
    let c = d.admin().await;
    call(
        &c,
        "telemetry.emit",
        json!({"event_type": "e", "payload": 1}),
    )
    .await
    .unwrap();
    let events = support::wait_for("the good event is written", Duration::from_secs(10), || {
        let events = d.events("admin", "e");
        async move {
            let events = within("telemetry.query", events).await;
            (!events.is_empty()).then_some(events)
        }
    })
    .await;
    assert_eq!(events.len(), 1, "only the good event: {events:?}");
    assert_eq!(events[0]["payload"], 1);
    reported(&d, "telemetry", &["skipped"]).await;
    assert_no_panic_nor_restart(&d);
}

#[tokio::test]
async fn an_undecodable_thread_message_leaves_the_context_with_its_exchange() {
    let mock = ikigai_mock_llm::MockLlm::start().await;
    let mut d = support::llm::daemon(&mock, "").await;
    let c = support::llm::allow_all(&d, "reader").await;
    let say = |text: &str| {
        let args =
            json!({"model": "gpt", "thread": "default", "messages": support::llm::user(text)});
        call(&c, "llm.prompt", args)
    };
    say("first").await.unwrap();
    let broken = "INSERT INTO llm_thread_message (thread_id, seq, exchange, message) \
        SELECT id, 2, '00000000-0000-0000-0000-00000000000b', m FROM llm_thread, \
        (VALUES ('{\"role\": \"assistant\", \"tool_calls\": [{\"id\": \"x\", \"name\": \"t\", \
        \"arguments\": {}}]}'::jsonb)) v(m) WHERE agent = 'reader'";
    sql(&d, broken).await;
    let poison = format!(
        "INSERT INTO llm_thread_message (thread_id, seq, exchange, message) SELECT id, 3, \
         '00000000-0000-0000-0000-00000000000b', {POISON} FROM llm_thread WHERE agent = 'reader'"
    );
    sql(&d, &poison).await;
    d.terminate();
    d.restart().await;
    let c = d.agent("reader").await;
    let args =
        json!({"model": "gpt", "thread": "default", "messages": support::llm::user("second")});
    call(&c, "llm.prompt", args).await.unwrap();
    let sent = mock.received().last().unwrap().body["messages"].clone();
    let roles: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "user"],
        "the broken exchange is left out: {sent}"
    );
    let listed = call(&c, "conversation.list", json!({})).await.unwrap();
    assert_eq!(listed["messages"].as_array().unwrap().len(), 4, "{listed}");
    reported(&d, "llm_thread_message", &["skipped with its exchange"]).await;
    assert_no_panic_nor_restart(&d);
}
