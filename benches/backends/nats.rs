//! The NATS engine in `cargo bench --bench backends` (`nats://127.0.0.1:4222`, JetStream):
//! * pubsub: a publisher on one daemon, a subscriber on another, both on NATS; the Redis
//!   bench's publications, against core NATS `PUBLISH` on one connection and `SUBSCRIBE` on
//!   another (all published, then flushed).
//! * mailbox: the Redis bench's sends, receives and acks, against raw JetStream on a stream of
//!   its own: publishes awaiting their `PubAck`s (`BENCH_WINDOW` in flight), a durable pull
//!   consumer fetching up to 1000 at a time and acking each message.

use super::{mailbox_round, pubsub_on, Measured, Params, Sides};
use async_nats::jetstream::{self, consumer::pull, stream};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use std::time::{Duration, Instant};
use support::{pipelined, Daemon, Db};

use super::support;

const NATS: &str = "nats://127.0.0.1:4222";

fn on_nats(services: &str, prefix: &str) -> String {
    format!("[services]\n{services}\n[nats]\nurl = {NATS}\nprefix = {prefix}\n")
}

async fn connect() -> async_nats::Client {
    async_nats::connect(NATS)
        .await
        .expect("NATS answers on 127.0.0.1:4222")
}

/// Deletes the streams the daemons and the raw rounds made under `prefix`.
async fn drop_streams(prefix: &str) {
    let js = jetstream::new(connect().await);
    for name in ["mailboxes", "raw"] {
        let _ = js.delete_stream(format!("{prefix}_{name}")).await;
    }
    let _ = js.delete_stream(format!("KV_{prefix}_mbmeta")).await;
}

pub async fn pubsub(p: &Params) -> Measured {
    let config = on_nats("pubsub = nats", "{prefix}");
    pubsub_on(p, "nats", config, |prefix| {
        Box::pin(async move { directly(p, &format!("{prefix}-raw.bench")).await })
    })
    .await
}

/// Core NATS alone: publishes on one connection, a subscription on another.
async fn directly(p: &Params, subject: &str) -> Duration {
    let (publisher, subscriber) = (connect().await, connect().await);
    let mut subscription = subscriber.subscribe(subject.to_owned()).await.unwrap();
    subscriber.flush().await.unwrap();
    let body: bytes::Bytes = serde_json::to_vec(&json!({"n": 0, "body": p.value}))
        .unwrap()
        .into();
    let started = Instant::now();
    let publish = async {
        for _ in 0..p.messages {
            let subject = subject.to_owned();
            publisher.publish(subject, body.clone()).await.unwrap();
        }
        publisher.flush().await.unwrap();
    };
    let receive = async {
        for _ in 0..p.messages {
            subscription.next().await.unwrap();
        }
    };
    futures::join!(publish, receive);
    started.elapsed()
}

pub async fn mailboxes(p: &Params) -> Measured {
    let db = Db::create("backends").await;
    let daemon = Daemon::start_with(&db, &on_nats("mailboxes = nats", &db.name)).await;
    let (sender, owner) = (daemon.client("sender").await, daemon.client("inbox").await);
    let mut sides = Sides::on("nats");
    let pids = [daemon.pid()];
    for round in 0..p.rounds {
        sides.daemon(&pids, mailbox_round(p, &sender, &owner)).await;
        sides.raw(jetstream_round(p, &db.name, round)).await;
    }
    drop((sender, owner, daemon));
    drop_streams(&db.name).await;
    db.drop_now().await;
    sides.measured("mailbox", "msgs", p.messages * p.rounds)
}

/// JetStream alone: acknowledged publishes, a durable pull consumer, an ack per message.
async fn jetstream_round(p: &Params, prefix: &str, round: usize) -> Duration {
    let js = jetstream::new(connect().await);
    let subject = format!("{prefix}.raw.{round}");
    let stream = js
        .get_or_create_stream(stream::Config {
            name: format!("{prefix}_raw"),
            subjects: vec![format!("{prefix}.raw.*")],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(format!("raw{round}")),
            filter_subject: subject.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let body: bytes::Bytes = serde_json::to_vec(&json!({"n": 0, "body": p.value}))
        .unwrap()
        .into();
    let started = Instant::now();
    let send = pipelined(p.messages, p.window, |_| {
        let (js, subject, body) = (js.clone(), subject.clone(), body.clone());
        async move {
            js.publish(subject, body).await.unwrap().await.unwrap();
        }
    });
    let receive = async {
        let mut seen = 0;
        while seen < p.messages {
            let batch = consumer
                .batch()
                .max_messages(1000)
                .expires(Duration::from_secs(1));
            let got: Vec<_> = batch.messages().await.unwrap().try_collect().await.unwrap();
            for m in &got {
                m.ack().await.unwrap();
            }
            seen += got.len();
        }
    };
    futures::join!(send, receive);
    started.elapsed()
}
