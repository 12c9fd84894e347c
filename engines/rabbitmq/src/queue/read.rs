//! The reads RabbitMQ can answer: counts from queue declarations (ready messages, dead
//! letters, the delay queues this daemon used) plus what this daemon holds, and listings that
//! browse a queue (each message taken unacked on a channel of its own, which is then closed, so
//! RabbitMQ puts them all back in place).

use super::lane::Lane;
use super::Inner;
use crate::record::Record;
use crate::store_error;
use crate::topology;
use chrono::Utc;
use ikigai_actors::store::{undecodable, QueueCounts, StoreError, TaskState};
use ikigai_actors::task::Task;
use lapin::types::FieldTable;
use std::time::Duration;
use uuid::Uuid;

/// The most messages one listing browses in a queue.
const BROWSE_MAX: usize = 10_000;

impl Inner {
    pub(super) fn queue_of(&self, id: Uuid) -> Option<String> {
        let lanes = self.lanes.lock().unwrap();
        let here = lanes
            .iter()
            .find(|(_, l)| l.held.contains_key(&id) || l.ready.contains_key(&id));
        match here {
            Some((queue, _)) => Some(queue.clone()),
            None => self.ended.lock().unwrap().queue_of(&id),
        }
    }

    /// Pending: RabbitMQ's ready messages and this daemon's unclaimed deliveries; scheduled:
    /// the delay queues this daemon published to; claimed: this daemon's claims; completed:
    /// this daemon's completions since it started; dead: the dead-letter queue.
    pub(super) async fn counts(&self, queue: &str) -> Result<QueueCounts, StoreError> {
        let ready = self.names.ready(queue);
        let waiting = self.count(&ready, topology::ready_args()).await?;
        let dead = self
            .count(&self.names.dead(queue), topology::plain_args())
            .await?;
        let mut scheduled = 0;
        for (name, args) in self.delay_queues(queue) {
            scheduled += self.count(&name, args).await?;
        }
        let (buffered, claimed, completed) =
            self.lane(queue, |l| (l.ready.len(), l.held.len(), l.completed));
        Ok(QueueCounts {
            pending: waiting + buffered as u64,
            scheduled,
            claimed: claimed as u64,
            completed,
            dead,
        })
    }

    async fn count(&self, name: &str, args: FieldTable) -> Result<u64, StoreError> {
        let declared = self.link.declare(name, args, None).await?;
        Ok(u64::from(declared.unwrap_or(0)))
    }

    fn delay_queues(&self, queue: &str) -> Vec<(String, FieldTable)> {
        let ready = self.names.ready(queue);
        let ttls: Vec<u64> = self.lane(queue, |l| l.delays.iter().copied().collect());
        ttls.into_iter()
            .map(Duration::from_millis)
            .map(|ttl| {
                (
                    self.names.delay(queue, ttl),
                    topology::delay_args(ttl, &ready),
                )
            })
            .collect()
    }

    /// Tasks of `queue` in `state`, by `seq`, after `after`: claimed and unclaimed deliveries
    /// held here, and what browsing RabbitMQ's queues finds. Completed tasks are not kept.
    pub(super) async fn list(
        &self,
        queue: &str,
        state: Option<TaskState>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let wants = |s: TaskState| state.is_none_or(|w| w == s);
        let mut tasks = self.lane(queue, |l| held_here(l, &wants));
        if wants(TaskState::Pending) {
            let ready = self.names.ready(queue);
            tasks.extend(self.browse(&ready, topology::ready_args()).await?);
        }
        if wants(TaskState::Scheduled) {
            for (name, args) in self.delay_queues(queue) {
                tasks.extend(self.browse(&name, args).await?);
            }
        }
        if wants(TaskState::Dead) {
            let dead = self.names.dead(queue);
            tasks.extend(self.browse(&dead, topology::plain_args()).await?);
        }
        tasks.retain(|t| t.seq > after);
        tasks.sort_by_key(|t| t.seq);
        tasks.dedup_by_key(|t| t.id);
        tasks.truncate(limit);
        Ok(tasks)
    }

    /// The tasks in queue `name`, left in place.
    async fn browse(&self, name: &str, args: FieldTable) -> Result<Vec<Task>, StoreError> {
        self.link.declare(name, args, None).await?;
        let live = self.link.live().await?;
        let channel = live.conn.create_channel().await.map_err(store_error)?;
        let mut tasks = Vec::new();
        while tasks.len() < BROWSE_MAX {
            let got = channel.basic_get(name, Default::default()).await;
            let Some(message) = got.map_err(store_error)? else {
                break;
            };
            match Record::decode(&message.delivery.data) {
                Ok(record) => tasks.push(record.task()),
                Err(e) => {
                    let id = format!("{name}#{}", message.delivery.delivery_tag);
                    undecodable::report("rabbitmq", &id, &e, "skipped");
                }
            }
        }
        let _ = channel.close(200, "browsed").await;
        Ok(tasks)
    }
}

/// The tasks of `lane` in a state `wants`: its claims, and its unclaimed deliveries (pending).
fn held_here(lane: &Lane, wants: &impl Fn(TaskState) -> bool) -> Vec<Task> {
    let mut tasks = Vec::new();
    if wants(TaskState::Claimed) {
        tasks.extend(lane.held.values().map(|h| h.task()));
    }
    if wants(TaskState::Pending) {
        let now = Utc::now();
        let due = lane
            .ready
            .values()
            .filter(|d| d.record.scheduled_for <= now);
        tasks.extend(due.map(|d| d.record.task()));
    }
    tasks
}
