//! The queue on RabbitMQ (`amqp://guest:guest@127.0.0.1:5672`): the same push → claim →
//! complete rounds through the daemon as on Redis (`super::queue_round`), against lapin alone
//! doing the same work on the same kind of queue (durable, classic, `x-max-priority`,
//! persistent messages): `BENCH_MESSAGES` publishes with confirms, `BENCH_WINDOW` in flight,
//! while a consumer with the engine's prefetch (1000) acks each delivery.

use super::{queue_round, Measured, Params, Sides};
use crate::support::{pipelined, Daemon, Db};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::json;
use std::time::{Duration, Instant};

const RABBITMQ: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The engine's default prefetch, which the raw consumer uses too.
const PREFETCH: u16 = 1000;

pub async fn queues(p: &Params) -> Measured {
    let db = Db::create("backends").await;
    let config = format!(
        "[services]\nqueues = rabbitmq\n[rabbitmq]\nurl = {RABBITMQ}\nprefix = {}\n",
        db.name
    );
    let daemon = Daemon::start_with(&db, &config).await;
    let (producer, worker) = (
        daemon.client("producer").await,
        daemon.client("worker").await,
    );
    let conn = Connection::connect(RABBITMQ, ConnectionProperties::default())
        .await
        .expect("RabbitMQ answers on 127.0.0.1:5672");
    let raw = format!("{}-raw", db.name);
    let mut sides = Sides::on("rabbitmq");
    let pids = [daemon.pid()];
    for _ in 0..p.rounds {
        sides
            .daemon(&pids, queue_round(p, &producer, &worker))
            .await;
        sides.raw(lapin_round(p, &conn, &raw)).await;
    }
    let cleanup = conn.create_channel().await.unwrap();
    for name in [raw, format!("{}.q.jobs", db.name)] {
        let _ = cleanup.queue_delete(&name, Default::default()).await;
    }
    drop((producer, worker, daemon));
    db.drop_now().await;
    sides.measured("queue", "tasks", p.messages * p.rounds)
}

/// Publishes `p.messages` with confirms while a consumer acks each, until the last ack.
async fn lapin_round(p: &Params, conn: &Connection, queue: &str) -> Duration {
    let publisher = conn.create_channel().await.unwrap();
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    declare(&publisher, queue).await;
    let consumer = conn.create_channel().await.unwrap();
    consumer
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .unwrap();
    let mut deliveries = consumer
        .basic_consume(
            queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let body = serde_json::to_vec(&json!({"n": 0, "body": p.value})).unwrap();
    let started = Instant::now();
    let publish = pipelined(p.messages, p.window, |_| {
        let (publisher, body) = (publisher.clone(), body.clone());
        async move {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_priority(0);
            let confirm = publisher
                .basic_publish("", queue, Default::default(), &body, props)
                .await
                .unwrap();
            confirm.await.unwrap();
        }
    });
    let work = async {
        for _ in 0..p.messages {
            let delivery = deliveries.next().await.unwrap().unwrap();
            delivery.acker.ack(Default::default()).await.unwrap();
        }
    };
    futures::join!(publish, work);
    let elapsed = started.elapsed();
    let _ = consumer.close(200, "round done").await;
    let _ = publisher.close(200, "round done").await;
    elapsed
}

async fn declare(channel: &Channel, queue: &str) {
    let mut args = FieldTable::default();
    args.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(9));
    let options = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel.queue_declare(queue, options, args).await.unwrap();
}
