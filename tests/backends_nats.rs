//! The NATS engine (`pubsub = nats`, `mailboxes = nats`) beyond the behavioural suites, which run
//! on it too (`scripts/test`, `IKIGAI_TEST_SERVICES`): a NATS server killed mid-load loses no
//! send JetStream acknowledged, and the daemon goes on once it is back; publications over the
//! server's `max_payload` and topics that are no subject tokens cross daemons whole and in
//! order; a mailbox payload over `max_payload` is refused as a bad request.

mod support;

use ikigai_client::{Client, ErrorCode, Receive};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::nats_server::NatsServer;
use support::{assert_code, nats_url, Daemon, TestDb};

/// `[services]` with pub/sub and mailboxes on the NATS at `url`, under `prefix`.
fn on_nats(url: &str, prefix: &str) -> String {
    format!("[services]\npubsub = nats\nmailboxes = nats\n[nats]\nurl = {url}\nprefix = {prefix}\n")
}

/// Sends to `mailbox` until a send is refused (or 20 s pass); the ids acknowledged.
async fn send_until_refused(client: &Client, mailbox: &str) -> Vec<String> {
    let started = Instant::now();
    let mut acked = Vec::new();
    while started.elapsed() < Duration::from_secs(20) {
        match client.mailbox_send(mailbox, &json!(acked.len())).await {
            Ok(id) => acked.push(id),
            Err(_) => break,
        }
    }
    acked
}

/// Receives and acks everything in `mailbox`; the ids in the order received.
async fn drain(client: &Client, mailbox: &str) -> Vec<String> {
    let receive = Receive {
        mailbox,
        max: Some(1000),
        wait_ms: Some(0),
        visibility_ms: None,
    };
    let mut ids = Vec::new();
    loop {
        let got: Vec<String> = client
            .mailbox_receive(&receive)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        if got.is_empty() {
            return ids;
        }
        client.mailbox_ack(mailbox, &got).await.unwrap();
        ids.extend(got);
    }
}

#[tokio::test]
async fn nats_killed_mid_load_loses_no_acknowledged_send() {
    let mut nats = NatsServer::start().await;
    let db = TestDb::create().await;
    let config = on_nats(&nats.url(), &db.name);
    let mut d = Daemon::start_on(db, &config).await;
    let senders = [d.agent("alice").await, d.agent("bob").await];
    let loads = senders.iter().map(|c| send_until_refused(c, "dave"));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        nats.kill9();
    };
    let (sent, ()) = futures::join!(futures::future::join_all(loads), kill);
    let sent: Vec<String> = sent.into_iter().flatten().collect();
    assert!(sent.len() > 10, "the load ran: {}", sent.len());
    nats.restart().await;

    let deadline = Instant::now() + Duration::from_secs(15);
    let after = loop {
        match senders[0].mailbox_send("dave", &json!("after")).await {
            Ok(id) => break id,
            Err(e) => assert!(Instant::now() < deadline, "no send after the restart: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(d.terminate(), 0);
    d.restart().await;
    let dave = d.agent("dave").await;
    let received: HashSet<String> = drain(&dave, "dave").await.into_iter().collect();
    let lost: Vec<&String> = sent.iter().filter(|id| !received.contains(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged sends lost", lost.len());
    assert!(
        received.contains(&after),
        "the daemon went on after the restart"
    );
}

/// Subscribes to `topic`; the subscription's id.
async fn subscribe(client: &Client, topic: &str) -> String {
    let reply: Value = client
        .call("pubsub.subscribe", &json!({ "topic": topic }))
        .await
        .unwrap();
    reply["subscription"].as_str().unwrap().to_owned()
}

/// The next push as (subscription, topic, n), after checking a big message came whole.
async fn next(client: &Client, big: usize) -> (String, String, u64) {
    let push = tokio::time::timeout(Duration::from_secs(10), client.next_push())
        .await
        .expect("a push within 10 s")
        .expect("connection open");
    let data: Value = ikigai_protocol::from_value(push.data).unwrap();
    let n = data["message"]["n"].as_u64().unwrap();
    let len = data["message"]["big"].as_str().map_or(0, str::len);
    assert_eq!(len, if n == 1 { big } else { 0 }, "whole");
    (push.push, data["topic"].as_str().unwrap().to_owned(), n)
}

#[tokio::test]
async fn large_publications_and_topics_that_are_no_subject_tokens_cross_daemons_in_order() {
    let db = TestDb::create().await;
    let config = on_nats(&nats_url(), &db.name);
    let a = Daemon::start_on(db, &config).await;
    let b = Daemon::start_on(a.db.share(), &config).await;
    let sub = b.agent("remote").await;
    // Overlapping patterns: one subscription covers both, so each publication comes once.
    let rest = subscribe(&sub, "odd.>").await;
    let one = subscribe(&sub, "odd.*.x").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let publisher = a.agent("origin").await;
    let big = "n".repeat(3 << 20);
    let topics = ["odd.é$.x", "odd.a*b.x", "odd.=3D.y", "odd.sp>ce"];
    let mut pending = Vec::new();
    for (n, topic) in topics.iter().enumerate() {
        let message = json!({"n": n, "big": if n == 1 { big.as_str() } else { "" }});
        let args = json!({"topic": topic, "message": message});
        pending.push(publisher.submit("pubsub.publish", &args).await.unwrap());
    }
    for p in pending {
        let _: Value = p.reply().await.unwrap();
    }
    let mut seen: Vec<(String, String, u64)> = Vec::new();
    for _ in 0..6 {
        seen.push(next(&sub, big.len()).await);
    }
    let of = |subscription: &str| -> Vec<(String, u64)> {
        let mine = seen.iter().filter(|(s, _, _)| s == subscription);
        mine.map(|(_, topic, n)| (topic.clone(), *n)).collect()
    };
    let all: Vec<(String, u64)> = topics
        .iter()
        .zip(0..)
        .map(|(t, n)| (t.to_string(), n))
        .collect();
    assert_eq!(of(&rest), all, "odd.> gets every one, once, in order");
    let x: Vec<(String, u64)> = all
        .iter()
        .filter(|(t, _)| t.ends_with(".x"))
        .cloned()
        .collect();
    assert_eq!(of(&one), x, "odd.*.x gets those it matches, once, in order");
}

#[tokio::test]
async fn a_mailbox_payload_over_the_servers_max_payload_is_a_bad_request() {
    let db = TestDb::create().await;
    let config = on_nats(&nats_url(), &db.name);
    let d = Daemon::start_on(db, &config).await;
    let alice = d.agent("alice").await;
    let big = json!("x".repeat(1 << 20));
    assert_code(alice.mailbox_send("bob", &big).await, ErrorCode::BadRequest);
    let small = alice.mailbox_send("bob", &json!("fits")).await.unwrap();
    let bob = d.agent("bob").await;
    assert_eq!(drain(&bob, "bob").await, [small]);
}
