//! Mailboxes across several daemons on one database: a message sent through any daemon reaches
//! its consumer through any other, and one daemon at a time delivers a mailbox's messages.

mod support;

use ikigai_client::{Client, Receive};
use serde_json::json;
use std::time::{Duration, Instant};
use support::{Daemon, TestDb};

fn receive(mailbox: &str, wait_ms: u64) -> Receive<'_> {
    Receive {
        mailbox,
        max: Some(100),
        wait_ms: Some(wait_ms),
        visibility_ms: None,
    }
}

/// True when a receive of bob's mailbox through `client` gets no message at once.
async fn nothing_ready(client: &Client) -> bool {
    client
        .mailbox_receive(&receive("bob", 0))
        .await
        .unwrap()
        .is_empty()
}

/// Two daemons on one fresh database; both get `config`.
async fn two_daemons(config: &str) -> (Daemon, Daemon) {
    let a = Daemon::start_with(config).await;
    let b = Daemon::start_on(a.db.share(), config).await;
    (a, b)
}

#[tokio::test]
async fn a_message_sent_through_one_daemon_wakes_a_receiver_waiting_on_another() {
    let (a, b) = two_daemons("").await;
    let alice = a.agent("alice").await;
    let bob = b.agent("bob").await;

    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let got = bob.mailbox_receive(&receive("bob", 10_000)).await.unwrap();
        (got, started.elapsed(), bob)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = alice.mailbox_send("bob", &json!({"hi": 1})).await.unwrap();

    let (got, waited, bob) = waiting.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].id.as_str(), got[0].sender.as_str()),
        (id.as_str(), "alice")
    );
    assert!(
        waited < Duration::from_secs(5),
        "woken by the send, not by the wait's end"
    );
    assert_eq!(bob.mailbox_ack("bob", &[id]).await.unwrap(), 1);
}

#[tokio::test]
async fn messages_sent_through_both_daemons_are_each_delivered_once_in_order_per_sender() {
    let (a, b) = two_daemons("").await;
    let (via_a, via_b) = (a.agent("alice").await, b.agent("carol").await);
    let bob = b.agent("bob").await;
    bob.mailbox_receive(&receive("bob", 0)).await.unwrap();

    let send = |client: Client| async move {
        let mut ids = Vec::new();
        for n in 0..200 {
            ids.push(client.mailbox_send("bob", &json!({"n": n})).await.unwrap());
        }
        ids
    };
    let (ids_a, ids_b) = tokio::join!(send(via_a), send(via_b));

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 400 && Instant::now() < deadline {
        let batch = bob.mailbox_receive(&receive("bob", 1000)).await.unwrap();
        let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
        bob.mailbox_ack("bob", &ids).await.unwrap();
        got.extend(ids);
    }
    let positions = |ids: &[String]| -> Vec<usize> {
        ids.iter()
            .map(|id| got.iter().position(|g| g == id).expect("delivered"))
            .collect()
    };
    assert_eq!(got.len(), 400, "every message exactly once");
    for sent in [&ids_a, &ids_b] {
        let p = positions(sent);
        assert!(p.windows(2).all(|w| w[0] < w[1]), "a sender's order holds");
    }
}

#[tokio::test]
async fn a_mailbox_is_served_by_one_daemon_at_a_time_and_moves_when_that_one_goes_idle() {
    served_by_one_then_moves("").await;
}

#[tokio::test]
async fn a_mailbox_moves_as_soon_also_when_its_idle_actor_stops_at_once() {
    served_by_one_then_moves("[mailboxes]\nidle_ms = 1\n").await;
}

/// Daemon A serves bob while its consumer is there, B not; once A goes idle, B delivers.
async fn served_by_one_then_moves(config: &str) {
    let (a, b) = two_daemons(config).await;
    let alice = a.agent("alice").await;
    let (bob_a, bob_b) = (a.agent("bob").await, b.agent("bob").await);
    let first = alice.mailbox_send("bob", &json!(1)).await.unwrap();
    let got = bob_a.mailbox_receive(&receive("bob", 0)).await.unwrap();
    assert_eq!(got[0].id, first, "daemon A now serves bob");

    let second = alice.mailbox_send("bob", &json!(2)).await.unwrap();
    assert!(
        nothing_ready(&bob_b).await,
        "daemon B does not deliver while A serves the mailbox"
    );
    bob_a.mailbox_ack("bob", &[first]).await.unwrap();
    drop(bob_a);

    let started = Instant::now();
    let got = bob_b
        .mailbox_receive(&receive("bob", 15_000))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, second, "B serves bob once A let go");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn when_the_serving_daemon_dies_another_delivers_its_unacked_messages_after_the_lease() {
    let (mut a, b) = two_daemons("[mailboxes]\nlease_ms = 1000\n").await;
    let alice = a.agent("alice").await;
    let id = alice.mailbox_send("bob", &json!("work")).await.unwrap();
    let bob_a = a.agent("bob").await;
    assert_eq!(
        bob_a.mailbox_receive(&receive("bob", 0)).await.unwrap()[0].id,
        id
    );
    a.kill9();

    let bob_b = b.agent("bob").await;
    let got = bob_b
        .mailbox_receive(&receive("bob", 10_000))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id, "delivered again by the next daemon");
    assert_eq!(bob_b.mailbox_ack("bob", &[id]).await.unwrap(), 1);
}

#[tokio::test]
async fn an_ack_written_through_another_daemon_ends_the_delivery_on_the_serving_one() {
    let (a, b) = two_daemons("").await;
    let (bob_a, bob_b) = (a.agent("bob").await, b.agent("bob").await);
    let id = bob_a.mailbox_send("bob", &json!("once")).await.unwrap();
    let short = Receive {
        mailbox: "bob",
        max: Some(10),
        wait_ms: Some(0),
        visibility_ms: Some(300),
    };
    assert_eq!(bob_b.mailbox_receive(&short).await.unwrap()[0].id, id);
    assert_eq!(
        bob_a
            .mailbox_ack("bob", std::slice::from_ref(&id))
            .await
            .unwrap(),
        1
    );

    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        nothing_ready(&bob_b).await,
        "past its visibility timeout, the acked message is not delivered again"
    );
}

#[tokio::test]
async fn a_message_inserted_by_plain_sql_wakes_a_waiting_receiver() {
    let d = Daemon::start_with(&support::on_postgres("mailboxes")).await;
    let bob = d.agent("bob").await;
    let waiting = tokio::spawn(async move {
        let got = bob.mailbox_receive(&receive("bob", 10_000)).await.unwrap();
        got.into_iter().map(|m| m.payload).collect::<Vec<_>>()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    insert_by_sql(&d.db, "bob", r#"{"from": "psql"}"#).await;
    assert_eq!(waiting.await.unwrap(), vec![json!({"from": "psql"})]);
}

async fn insert_by_sql(db: &TestDb, mailbox: &str, payload: &str) {
    db.client()
        .await
        .execute(
            "INSERT INTO mailbox (mailbox_name, sender, payload) VALUES ($1, 'psql', $2::text::jsonb)",
            &[&mailbox, &payload],
        )
        .await
        .unwrap();
}
