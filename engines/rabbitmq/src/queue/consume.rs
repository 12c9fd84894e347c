//! The consumer of a queue's ready messages on this daemon: started when an agent waits here,
//! stopped [`LINGER`] after the last one stopped waiting (its unclaimed deliveries go back to
//! RabbitMQ, where the other daemons' consumers get them), at most `prefetch` deliveries
//! (claimed or not) at a time. Each delivery joins the lane's ready tasks and is announced on
//! the feed.

use super::lane::{Consumer, Delivered};
use super::{Inner, LINGER};
use crate::record::Record;
use crate::store_error;
use crate::topology;
use chrono::Utc;
use futures::StreamExt;
use ikigai_actors::store::{undecodable, StoreError};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::Channel;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// How long a new consumer waits for the messages that were ready when it started.
const BURST: Duration = Duration::from_millis(50);

/// A delivery due later than this is delayed again (it took the longest hop of a long delay).
const EARLY: chrono::Duration = chrono::Duration::seconds(1);

impl Inner {
    /// `waiting` agents wait on `queue` here: start its consumer, or stop it after [`LINGER`].
    pub(super) fn want(self: Arc<Self>, queue: &str, waiting: usize) {
        self.lane(queue, |l| {
            l.wanted = waiting;
            l.quiet_since = (waiting == 0).then(Instant::now);
        });
        let queue = queue.to_owned();
        tokio::spawn(async move {
            if waiting == 0 {
                tokio::time::sleep(LINGER).await;
                self.stop_if_quiet(&queue).await;
            } else {
                if let Err(e) = self.ensure_consumer(&queue).await {
                    warn!(queue = %queue, error = %e, "starting the RabbitMQ consumer failed");
                }
                // What arrived while no one waited was not announced.
                self.announce(&queue);
            }
        });
    }

    /// Starts `queue`'s consumer when an agent waits and none runs.
    pub(super) async fn ensure_consumer(self: &Arc<Self>, queue: &str) -> Result<(), StoreError> {
        let start = self.lane(queue, |l| {
            let start = l.wanted > 0 && matches!(l.consumer, Consumer::Stopped);
            if start {
                l.consumer = Consumer::Starting;
            }
            start
        });
        if !start {
            return Ok(());
        }
        // Its first burst is announced whole, so that the actor ranks it whole.
        self.lane(queue, |l| l.notified = true);
        let started = self.consume(queue).await;
        if started.is_err() {
            self.lane(queue, |l| l.consumer = Consumer::Stopped);
        }
        self.lane(queue, |l| l.notified = false);
        self.announce(queue);
        started
    }

    /// Opens `queue`'s channel when its connection is new, consumes there, and waits up to
    /// [`BURST`] for the messages that were ready (up to the prefetch) to arrive.
    async fn consume(self: &Arc<Self>, queue: &str) -> Result<(), StoreError> {
        let ready = self.names.ready(queue);
        let count = self
            .link
            .declare(&ready, topology::ready_args(), None)
            .await?;
        let (channel, generation) = self.channel(queue).await?;
        let options = BasicConsumeOptions::default();
        let consumer = channel
            .basic_consume(&ready, "", options, FieldTable::default())
            .await
            .map_err(store_error)?;
        let tag = consumer.tag().to_string();
        self.lane(queue, |l| {
            l.consumer = Consumer::Running { tag: tag.clone() }
        });
        let (me, name) = (self.clone(), queue.to_owned());
        tokio::spawn(async move { me.follow(name, consumer, tag, generation).await });
        let expected = (count.unwrap_or(0) as usize).min(usize::from(self.prefetch));
        let until = Instant::now() + BURST;
        while Instant::now() < until && self.lane(queue, |l| l.ready.len()) < expected {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// `queue`'s channel on the current connection (deliveries of older ones are forgotten).
    async fn channel(&self, queue: &str) -> Result<(Channel, u64), StoreError> {
        let live = self.link.live().await?;
        let (held, lost) = self.lane(queue, |l| {
            let lost = l.forget_other_generations(live.generation);
            let open = l.channel.clone().filter(|(c, _)| c.status().connected());
            (open, lost)
        });
        self.lost(queue, lost);
        if let Some(held) = held {
            return Ok(held);
        }
        let channel = live.conn.create_channel().await.map_err(store_error)?;
        let qos = BasicQosOptions::default();
        channel
            .basic_qos(self.prefetch, qos)
            .await
            .map_err(store_error)?;
        let opened = (channel, live.generation);
        self.lane(queue, |l| l.channel = Some(opened.clone()));
        Ok(opened)
    }

    /// Takes in the deliveries of consumer `tag` until it ends (cancelled, or its connection
    /// closed), then has the actor reload.
    async fn follow(
        self: Arc<Self>,
        queue: String,
        mut consumer: lapin::Consumer,
        tag: String,
        generation: u64,
    ) {
        while let Some(next) = consumer.next().await {
            match next {
                Ok(delivery) => self.delivered(&queue, &tag, generation, delivery),
                Err(e) => {
                    warn!(queue = %queue, error = %e, "RabbitMQ consumer ended");
                    break;
                }
            }
        }
        self.lane(&queue, |l| {
            if l.consumes(&tag) {
                l.consumer = Consumer::Stopped;
            }
        });
        self.announce(&queue);
    }

    fn delivered(self: &Arc<Self>, queue: &str, tag: &str, generation: u64, d: Delivery) {
        let record = match Record::decode(&d.data) {
            Ok(record) => record,
            Err(e) => return self.dead_letter_raw(queue, d, e),
        };
        if record.scheduled_for > Utc::now() + EARLY {
            return self.delay_again(record, d);
        }
        let id = record.id;
        let delivered = Delivered {
            record,
            acker: d.acker,
            generation,
        };
        let kept = self.lane(queue, |l| {
            let duplicate = l.ready.contains_key(&id) || l.held.contains_key(&id);
            match () {
                _ if duplicate => Err((delivered.acker, true)),
                _ if !l.consumes(tag) => Err((delivered.acker, false)),
                _ => {
                    l.ready.insert(id, delivered);
                    Ok(l.wanted > 0)
                }
            }
        });
        match kept {
            // Announced only to waiting agents: the others take from the window, and the
            // next to wait is told (`want`).
            Ok(true) => self.announce(queue),
            Ok(false) => {}
            // A second copy of a task held here (a publish repeated after a failure) is
            // dropped; a delivery to a consumer being cancelled goes back.
            Err((acker, duplicate)) => {
                tokio::spawn(async move {
                    let _ = match duplicate {
                        true => acker.ack(BasicAckOptions::default()).await,
                        false => acker.nack(requeue()).await,
                    };
                });
            }
        }
    }

    /// Stops `queue`'s consumer if no agent waited for [`LINGER`], and gives back what it
    /// holds unclaimed.
    async fn stop_if_quiet(&self, queue: &str) {
        let quiet = |since: Option<Instant>| since.is_some_and(|t| t.elapsed() >= LINGER);
        let stopping = self.lane(queue, |l| {
            if l.wanted > 0 || !quiet(l.quiet_since) {
                return None;
            }
            let Consumer::Running { tag } = std::mem::replace(&mut l.consumer, Consumer::Stopped)
            else {
                return None;
            };
            let unclaimed: Vec<Delivered> = l.ready.drain().map(|(_, d)| d).collect();
            Some((tag, l.channel.clone(), unclaimed))
        });
        let Some((tag, channel, unclaimed)) = stopping else {
            return;
        };
        debug!(
            queue,
            tag,
            given_back = unclaimed.len(),
            "RabbitMQ consumer stops"
        );
        if let Some((channel, _)) = channel {
            let _ = channel
                .basic_cancel(&tag, BasicCancelOptions::default())
                .await;
        }
        for d in unclaimed {
            let _ = d.acker.nack(requeue()).await;
        }
        self.announce(queue);
    }

    /// A message that is no task of ours goes, as it is, to the queue's dead letters.
    fn dead_letter_raw(self: &Arc<Self>, queue: &str, d: Delivery, e: serde_json::Error) {
        let id = format!("{}#{}", self.names.ready(queue), d.delivery_tag);
        undecodable::report("rabbitmq", &id, &e, "dead-lettered");
        let (me, dead) = (self.clone(), self.names.dead(queue));
        tokio::spawn(async move {
            let args = topology::plain_args();
            let moved = match me.link.declare(&dead, args, None).await {
                Ok(_) => me.link.publish(&dead, &d.data, d.properties.clone()).await,
                Err(e) => Err(e),
            };
            let _ = match moved {
                Ok(_) => d.acker.ack(BasicAckOptions::default()).await,
                Err(_) => d.acker.nack(requeue()).await,
            };
        });
    }

    /// A task that arrived well before it is due (the longest hop of a long delay) waits again.
    fn delay_again(self: &Arc<Self>, record: Record, d: Delivery) {
        let me = self.clone();
        tokio::spawn(async move {
            let _ = match me.send(&record, Utc::now()).await {
                Ok(()) => d.acker.ack(BasicAckOptions::default()).await,
                Err(_) => d.acker.nack(requeue()).await,
            };
        });
    }
}

/// Nack options that put a delivery back where it was.
pub(super) fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    }
}
