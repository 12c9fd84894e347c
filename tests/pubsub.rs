//! Pub/sub against real daemons and Postgres: wildcards, large messages, a slow subscriber's
//! overflow beside a fast one, unsubscribing, and delivery from one daemon to another.

mod support;

use ikigai_client::{Client, ErrorCode};
use serde_json::{json, Value};
use std::time::Duration;
use support::{assert_code, Daemon, Raw};

async fn subscribe(client: &Client, topic: &str) -> String {
    let reply: Value = client
        .call("pubsub.subscribe", &json!({ "topic": topic }))
        .await
        .unwrap();
    reply["subscription"].as_str().unwrap().to_owned()
}

async fn publish(client: &Client, topic: &str, message: Value) -> u64 {
    let reply: Value = client
        .call(
            "pubsub.publish",
            &json!({"topic": topic, "message": message}),
        )
        .await
        .unwrap();
    reply["delivered"].as_u64().unwrap()
}

/// The next push as (subscription, data).
async fn next(client: &Client) -> (String, Value) {
    let push = tokio::time::timeout(Duration::from_secs(10), client.next_push())
        .await
        .expect("a push within 10 s")
        .expect("connection open");
    (push.push, ikigai_protocol::from_value(push.data).unwrap())
}

#[tokio::test]
async fn wildcard_subscriptions_receive_what_they_match() {
    let d = Daemon::start().await;
    let sub = d.agent("listener").await;
    let one = subscribe(&sub, "orders.*").await;
    let rest = subscribe(&sub, "orders.>").await;
    let exact = subscribe(&sub, "orders.created.eu").await;
    let publisher = d.agent("shop").await;
    assert_eq!(
        publish(&publisher, "orders.created", json!({"n": 1})).await,
        2
    );
    assert_eq!(
        publish(&publisher, "orders.created.eu", json!({"n": 2})).await,
        2
    );
    assert_eq!(
        publish(&publisher, "users.created", json!({"n": 3})).await,
        0
    );
    let mut got = Vec::new();
    for _ in 0..4 {
        let (subscription, data) = next(&sub).await;
        got.push((
            subscription,
            data["topic"].clone(),
            data["message"]["n"].clone(),
        ));
        assert!(data["published_at"].is_string(), "{data}");
    }
    got.sort_by_key(|g| format!("{g:?}"));
    let mut want = vec![
        (one, json!("orders.created"), json!(1)),
        (rest.clone(), json!("orders.created"), json!(1)),
        (rest, json!("orders.created.eu"), json!(2)),
        (exact, json!("orders.created.eu"), json!(2)),
    ];
    want.sort_by_key(|g| format!("{g:?}"));
    assert_eq!(got, want);
    let bad = publisher
        .call_value(
            "pubsub.publish",
            &json!({"topic": "orders.*", "message": 1}),
        )
        .await;
    assert_code(bad, ErrorCode::BadRequest);
    let bad = sub
        .call_value("pubsub.subscribe", &json!({"topic": "a.>.b"}))
        .await;
    assert_code(bad, ErrorCode::BadRequest);
}

#[tokio::test]
async fn unsubscribed_and_disconnected_subscriptions_receive_nothing_more() {
    let d = Daemon::start().await;
    let sub = d.agent("listener").await;
    let id = subscribe(&sub, "news").await;
    let publisher = d.agent("press").await;
    assert_eq!(publish(&publisher, "news", json!(1)).await, 1);
    assert_eq!(next(&sub).await.1["message"], 1);
    let reply: Value = sub
        .call("pubsub.unsubscribe", &json!({ "subscription": id }))
        .await
        .unwrap();
    assert_eq!(reply, json!({"unsubscribed": true}));
    assert_eq!(publish(&publisher, "news", json!(2)).await, 0);
    let other = d.agent("other").await;
    subscribe(&other, "news").await;
    drop(other);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(publish(&publisher, "news", json!(3)).await, 0);
}

#[tokio::test]
async fn a_slow_subscriber_overflows_while_a_fast_one_receives_everything() {
    let d = Daemon::start_with(
        "[daemon]\nmax_in_flight = 4\nmax_reply_bytes = 65536\n[pubsub]\nsubscriber_buffer = 16\n",
    )
    .await;
    let mut slow = Raw::hello(&d).await;
    slow.request(2, "pubsub.subscribe", &json!({"topic": "ticks"}))
        .await;
    let reply = slow.frame().await.unwrap();
    let slow_id = reply["ok"]["subscription"].as_str().unwrap().to_owned();
    let fast = d.agent("fast").await;
    subscribe(&fast, "ticks").await;
    let publisher = d.agent("clock").await;
    let total = 2000;
    let body = "x".repeat(1000);
    let mut pending = Vec::new();
    for n in 0..total {
        let args = json!({"topic": "ticks", "message": {"n": n, "body": body}});
        pending.push(publisher.submit("pubsub.publish", &args).await.unwrap());
    }
    for p in pending {
        p.value().await.unwrap();
    }
    for n in 0..total {
        let (_, data) = next(&fast).await;
        assert_eq!(
            data["message"]["n"], n,
            "the fast subscriber gets every message in order"
        );
    }
    let (mut lost, mut received, mut last) = (0, 0, -1);
    while lost + received < total {
        let frame = slow.frame().await.expect("pushes keep coming");
        assert_eq!(frame["push"], slow_id.as_str());
        if let Some(n) = frame["data"]["overflow"].as_i64() {
            lost += n;
        } else {
            let n = frame["data"]["message"]["n"].as_i64().unwrap();
            assert!(n > last, "order is kept across the gap");
            last = n;
            received += 1;
        }
    }
    assert!(lost > 0, "the slow subscriber lost its oldest messages");
    assert_eq!(last, total - 1, "the newest message is kept");
}

#[tokio::test]
async fn publications_cross_daemons_in_order_and_large_ones_arrive_whole() {
    let a = Daemon::start().await;
    let b = a.beside().await;
    let sub = b.agent("remote").await;
    subscribe(&sub, "jobs.>").await;
    tokio::time::sleep(Duration::from_millis(200)).await; // LISTEN is in place
    let publisher = a.agent("origin").await;
    let big: String = (0..100 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut pending = Vec::new();
    for n in 0..50 {
        let message = if n == 25 {
            json!({"n": n, "big": big})
        } else {
            json!({"n": n})
        };
        let args = json!({"topic": format!("jobs.{n}"), "message": message});
        pending.push(publisher.submit("pubsub.publish", &args).await.unwrap());
    }
    for p in pending {
        let delivered: Value = p.reply().await.unwrap();
        assert_eq!(
            delivered,
            json!({"delivered": 0}),
            "counted on the publishing daemon only"
        );
    }
    for n in 0..50 {
        let (_, data) = next(&sub).await;
        assert_eq!(data["message"]["n"], n, "publisher order is kept");
        assert_eq!(data["topic"], format!("jobs.{n}"));
        if n == 25 {
            assert_eq!(
                data["message"]["big"].as_str().unwrap(),
                big,
                "100 KB, whole"
            );
        }
    }
    let local = a.agent("local").await;
    subscribe(&local, "jobs.*").await;
    let big_local = json!({"big": big});
    assert_eq!(publish(&publisher, "jobs.last", big_local.clone()).await, 1);
    assert_eq!(next(&local).await.1["message"], big_local);
    assert_eq!(next(&sub).await.1["message"], big_local);
}
