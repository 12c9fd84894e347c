//! Mailboxes, as an agent sees them through the socket: durable send, FIFO receive, ack,
//! redelivery, and one consumer per mailbox.

mod support;

use ikigai_client::{ErrorCode, Receive};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::{assert_code, backend, running, running_settles_at, wait_until, Daemon};

fn receive(mailbox: &str, max: u32, wait_ms: u64) -> Receive<'_> {
    Receive {
        mailbox,
        max: Some(max),
        wait_ms: Some(wait_ms),
        visibility_ms: None,
    }
}

#[tokio::test]
async fn a_sent_message_is_received_with_its_sender_and_acked_once() {
    let d = Daemon::start().await;
    let alice = d.agent("alice").await;
    let bob = d.agent("bob").await;

    let id = alice
        .mailbox_send("bob", &json!({"task": "review", "pr": 42}))
        .await
        .unwrap();
    let got = bob.mailbox_receive(&receive("bob", 10, 0)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].sender, "alice");
    assert_eq!(got[0].mailbox, "bob");
    assert_eq!(got[0].payload, json!({"task": "review", "pr": 42}));
    assert_eq!(got[0].attempts, 1);
    chrono::DateTime::parse_from_rfc3339(&got[0].created_at).expect("RFC 3339 timestamp");

    assert_eq!(
        bob.mailbox_ack("bob", std::slice::from_ref(&id))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        bob.mailbox_ack("bob", std::slice::from_ref(&id))
            .await
            .unwrap(),
        0,
        "a second ack changes nothing"
    );

    assert_eq!(stored(&d, "bob").await, (0, 1), "stored as read");
    if backend("mailboxes") == "postgres" {
        let row = d
            .db
            .client()
            .await
            .query_one(
                "SELECT read_by, read_at IS NOT NULL, sender FROM mailbox WHERE id = $1::text::uuid",
                &[&id],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "bob");
        assert!(row.get::<_, bool>(1));
        assert_eq!(row.get::<_, String>(2), "alice");
    }
    assert!(bob
        .mailbox_receive(&receive("bob", 10, 0))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_send_is_committed_before_it_is_acknowledged() {
    let d = Daemon::start().await;
    let alice = d.agent("alice").await;
    alice.mailbox_send("bob", &json!("hi")).await.unwrap();
    assert_eq!(
        stored(&d, "bob").await,
        (1, 0),
        "stored, unread, once acknowledged"
    );
}

/// The unread and read counts of `mailbox` as its store holds them (`mailbox.stats`).
async fn stored(d: &Daemon, mailbox: &str) -> (u64, u64) {
    let stats: Value = d
        .admin()
        .await
        .call("mailbox.stats", &json!({"mailbox": mailbox}))
        .await
        .unwrap();
    let row = &stats["mailboxes"][0];
    let count = |field: &str| row[field].as_u64().unwrap_or(0);
    (count("unread"), count("read"))
}

#[tokio::test]
async fn concurrent_senders_each_keep_their_order_and_nothing_is_lost() {
    let d = Daemon::start().await;
    let mut senders = Vec::new();
    for s in 0..4 {
        let client = d.agent(&format!("sender{s}")).await;
        senders.push(tokio::spawn(async move {
            // Pipelined: all 200 in flight at once, yet each is committed in order.
            let mut sends = Vec::new();
            for i in 0..200 {
                let args = json!({"mailbox": "sink", "payload": {"s": s, "i": i}});
                sends.push(client.submit("mailbox.send", &args).await.unwrap());
            }
            for pending in sends {
                pending.value().await.unwrap();
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let sink = d.agent("sink").await;
    let mut next = [0u64; 4];
    let mut total = 0;
    loop {
        let got = sink
            .mailbox_receive(&receive("sink", 300, 0))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        for m in &got {
            let (s, i) = (
                m.payload["s"].as_u64().unwrap() as usize,
                m.payload["i"].as_u64().unwrap(),
            );
            assert_eq!(i, next[s], "sender {s} out of order");
            next[s] += 1;
        }
        total += got.len();
        let ids: Vec<String> = got.into_iter().map(|m| m.id).collect();
        sink.mailbox_ack("sink", &ids).await.unwrap();
    }
    assert_eq!(total, 800);
}

#[tokio::test]
async fn the_mailbox_delivers_in_commit_order() {
    let d = Daemon::start().await;
    let alice = d.agent("alice").await;
    for i in 0..50 {
        alice.mailbox_send("bob", &json!(i)).await.unwrap();
    }
    let bob = d.agent("bob").await;
    let got = bob.mailbox_receive(&receive("bob", 100, 0)).await.unwrap();
    let order: Vec<u64> = got.iter().map(|m| m.payload.as_u64().unwrap()).collect();
    assert_eq!(order, (0..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_waiting_receive_wakes_when_a_message_is_sent() {
    let d = Daemon::start().await;
    let bob = d.agent("bob").await;
    let alice = d.agent("alice").await;
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let got = bob
            .mailbox_receive(&receive("bob", 1, 10_000))
            .await
            .unwrap();
        (got, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice.mailbox_send("bob", &json!("wake up")).await.unwrap();
    let (got, waited) = waiting.await.unwrap();
    assert_eq!(got[0].payload, json!("wake up"));
    assert!(
        waited < Duration::from_secs(5),
        "woke on send, not at the 10 s timeout"
    );
}

#[tokio::test]
async fn a_waiting_receive_returns_empty_when_its_wait_ends() {
    let d = Daemon::start().await;
    let bob = d.agent("bob").await;
    let started = Instant::now();
    let got = bob.mailbox_receive(&receive("bob", 1, 300)).await.unwrap();
    assert!(got.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn an_unacked_message_is_redelivered_after_its_visibility_timeout() {
    let d = Daemon::start().await;
    d.agent("alice")
        .await
        .mailbox_send("bob", &json!("again"))
        .await
        .unwrap();
    let bob = d.agent("bob").await;
    let short = Receive {
        mailbox: "bob",
        max: Some(1),
        wait_ms: None,
        visibility_ms: Some(300),
    };
    let first = bob.mailbox_receive(&short).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        bob.mailbox_receive(&receive("bob", 1, 0))
            .await
            .unwrap()
            .is_empty(),
        "hidden while in flight"
    );

    let again = bob
        .mailbox_receive(&receive("bob", 1, 5_000))
        .await
        .unwrap();
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].attempts, 2);
}

#[tokio::test]
async fn a_message_is_redelivered_at_once_when_its_receiver_disconnects() {
    let d = Daemon::start().await;
    d.agent("alice")
        .await
        .mailbox_send("bob", &json!("yours"))
        .await
        .unwrap();
    let first_id = {
        let bob = d.agent("bob").await;
        let got = bob.mailbox_receive(&receive("bob", 1, 0)).await.unwrap();
        got[0].id.clone()
    }; // connection closed here, long before the 30 s visibility timeout

    let bob = d.agent("bob").await;
    let started = Instant::now();
    let again = bob
        .mailbox_receive(&receive("bob", 1, 5_000))
        .await
        .unwrap();
    assert_eq!(again[0].id, first_id);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn only_the_owner_may_receive_or_ack_but_anyone_may_send() {
    let d = Daemon::start().await;
    let mallory = d.agent("mallory").await;
    let id = mallory
        .mailbox_send("bob", &json!("for bob"))
        .await
        .unwrap();
    assert_code(
        mallory.mailbox_receive(&receive("bob", 1, 0)).await,
        ErrorCode::PermissionDenied,
    );
    assert_code(
        mallory.mailbox_ack("bob", std::slice::from_ref(&id)).await,
        ErrorCode::PermissionDenied,
    );
    let bob = d.agent("bob").await;
    assert_eq!(
        bob.mailbox_receive(&receive("bob", 1, 0)).await.unwrap()[0].id,
        id
    );
}

#[tokio::test]
async fn payloads_without_a_json_form_are_refused_and_nothing_is_stored() {
    let d = Daemon::start().await;
    let alice = d.agent("alice").await;
    #[derive(serde::Serialize)]
    struct Raw<'a> {
        mailbox: &'a str,
        #[serde(with = "serde_bytes_like")]
        payload: Vec<u8>,
    }
    mod serde_bytes_like {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }
    let binary = alice
        .call_value(
            "mailbox.send",
            &Raw {
                mailbox: "bob",
                payload: vec![1, 2, 3],
            },
        )
        .await;
    assert_code(binary, ErrorCode::BadRequest);
    let nul = alice.mailbox_send("bob", &json!({"s": "a\u{0}b"})).await;
    assert_code(nul, ErrorCode::BadRequest);
    assert_eq!(stored(&d, "bob").await, (0, 0));
    // The connection is still usable.
    alice.mailbox_send("bob", &json!("fine")).await.unwrap();
}

#[tokio::test]
async fn receive_arguments_are_checked() {
    let d = Daemon::start().await;
    let bob = d.agent("bob").await;
    assert_code(
        bob.mailbox_receive(&receive("bob", 0, 0)).await,
        ErrorCode::BadRequest,
    );
    assert_code(
        bob.mailbox_receive(&receive("bob", 1_000_000, 0)).await,
        ErrorCode::BadRequest,
    );
    let unknown = bob
        .call_value("mailbox.receive", &json!({"mailbox": "bob", "wait": 5}))
        .await;
    assert_code(unknown, ErrorCode::BadRequest);
    assert_code(
        bob.mailbox_ack("bob", &["not-a-uuid".into()]).await,
        ErrorCode::BadRequest,
    );
}

#[tokio::test]
async fn the_cli_sends_peeks_and_counts() {
    let d = Daemon::start().await;
    let sent = d.cli_ok(&["mailbox", "send", "bob", r#"{"from":"cli"}"#]);
    let id = sent.trim().to_owned();

    let peek = String::from_utf8(d.cli(&["mailbox", "peek", "bob"]).stdout).unwrap();
    let line: serde_json::Value = serde_json::from_str(peek.lines().next().unwrap()).unwrap();
    assert_eq!(line["id"], json!(id));
    assert_eq!(line["sender"], json!("admin"));

    let stats = String::from_utf8(d.cli(&["mailbox", "stats"]).stdout).unwrap();
    let row: Vec<&str> = stats.lines().nth(1).unwrap().split_whitespace().collect();
    // Nobody has received from bob: no daemon serves the mailbox, so nothing is ready in memory.
    assert_eq!(&row[..6], ["bob", "1", "0", "0", "0", "0"]);

    let bob_token = String::from_utf8(d.cli(&["agent", "token", "bob"]).stdout).unwrap();
    assert_eq!(
        bob_token.trim(),
        d.token("bob").await,
        "the same identity keeps its token"
    );
    let status = String::from_utf8(d.cli(&["status"]).stdout).unwrap();
    assert!(status.contains("daemon: ikigai"), "{status}");
}

#[tokio::test]
async fn many_messages_page_through_a_small_memory_window() {
    let d = Daemon::start_with("[mailboxes]\nmax_buffered = 16\n").await;
    let alice = d.agent("alice").await;
    let sends: Vec<_> = (0..100)
        .map(|i| {
            let c = alice.clone();
            async move { c.mailbox_send("bob", &json!(i)).await.unwrap() }
        })
        .collect();
    futures::future::join_all(sends).await;
    let bob = d.agent("bob").await;
    let mut seen = Vec::new();
    while seen.len() < 100 {
        let got = bob
            .mailbox_receive(&receive("bob", 7, 2_000))
            .await
            .unwrap();
        assert!(!got.is_empty(), "stalled after {} messages", seen.len());
        let ids: Vec<String> = got.iter().map(|m| m.id.clone()).collect();
        seen.extend(got.iter().map(|m| m.payload.as_u64().unwrap()));
        bob.mailbox_ack("bob", &ids).await.unwrap();
    }
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    let unique: HashSet<u64> = seen.into_iter().collect();
    assert_eq!(unique.len(), 100);
}

#[tokio::test]
async fn an_unused_mailbox_stops_its_actor_and_keeps_its_messages() {
    let d = Daemon::start_with("[mailboxes]\nidle_ms = 300\n").await;
    let (alice, bob, carol) = (
        d.agent("alice").await,
        d.agent("bob").await,
        d.agent("carol").await,
    );
    alice
        .mailbox_send("bob", &json!("for later"))
        .await
        .unwrap();
    alice
        .mailbox_send("carol", &json!("unacked"))
        .await
        .unwrap();
    let held = carol
        .mailbox_receive(&receive("carol", 1, 0))
        .await
        .unwrap();
    let why = "the unread mailbox stops; one with a delivery not yet acknowledged stays";
    running_settles_at(&alice, "mailboxes", 1, why).await;
    carol
        .mailbox_ack("carol", &[held[0].id.clone()])
        .await
        .unwrap();
    wait_until("every mailbox stops", Duration::from_secs(10), || async {
        running(&alice, "mailboxes").await == 0
    })
    .await;
    let later = bob.mailbox_receive(&receive("bob", 10, 0)).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].payload, json!("for later"));
    let again = carol
        .mailbox_receive(&receive("carol", 10, 0))
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "the acknowledged message stays acknowledged"
    );
}
