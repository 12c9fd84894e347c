//! The RabbitMQ queues one Ikigai queue is kept in, their names and their arguments:
//!
//! * `<prefix>.q.<queue>`: the ready tasks, a durable classic queue with `x-max-priority`
//!   (RabbitMQ 3.10's quorum queues have no priorities);
//! * `<prefix>.delay.<ttl_ms>.<queue>`: tasks due later, one queue per delay (`x-message-ttl`,
//!   so every message of a queue expires in arrival order), dead-lettered into the ready queue
//!   when their time comes and deleted (`x-expires`) once unused;
//! * `<prefix>.dead.<queue>`: the dead tasks (attempts exhausted);
//! * `<prefix>.dedup.<uuid>`: one per pending dedup key, holding at most one message
//!   (`x-max-length = 1`, `x-overflow = reject-publish`): the broker's confirm is the test and
//!   set that makes a key pending once across daemons.

use lapin::types::{AMQPValue, FieldTable, LongString};
use std::time::Duration;
use uuid::Uuid;

/// The highest RabbitMQ priority used: task priorities above it share it (RabbitMQ keeps a
/// sub-queue per level; its guide advises few).
pub const MAX_PRIORITY: u8 = 9;

/// A delay queue is declared again (which keeps it from expiring) when its last declaration is
/// older than this; it expires [`DELAY_QUEUE_SPARE`] after its TTL, so it outlives its last
/// message by at least their difference.
pub const DELAY_REDECLARE: Duration = Duration::from_secs(300);
const DELAY_QUEUE_SPARE: Duration = Duration::from_secs(600);

/// The longest single delay hop (RabbitMQ's TTL is at most 2^32 - 1 ms); a task due later is
/// delayed again when it arrives early.
const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);

/// The names of one prefix's queues.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_owned(),
        }
    }

    pub fn ready(&self, queue: &str) -> String {
        format!("{}.q.{queue}", self.prefix)
    }

    pub fn dead(&self, queue: &str) -> String {
        format!("{}.dead.{queue}", self.prefix)
    }

    pub fn delay(&self, queue: &str, ttl: Duration) -> String {
        format!("{}.delay.{}.{queue}", self.prefix, ttl.as_millis())
    }

    /// The queue holding dedup key `key` of `queue` while it is pending.
    pub fn dedup(&self, queue: &str, key: &str) -> String {
        let name = format!("{}:{queue}{key}", queue.len());
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes());
        format!("{}.dedup.{id}", self.prefix)
    }
}

pub fn ready_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-max-priority".into(),
        AMQPValue::ShortShortUInt(MAX_PRIORITY),
    );
    args
}

pub fn plain_args() -> FieldTable {
    FieldTable::default()
}

pub fn dedup_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    let overflow = LongString::from("reject-publish");
    args.insert("x-overflow".into(), AMQPValue::LongString(overflow));
    args
}

/// A delay queue of `ttl` dead-lettering into `ready`.
pub fn delay_args(ttl: Duration, ready: &str) -> FieldTable {
    let mut args = FieldTable::default();
    let millis = |d: Duration| AMQPValue::LongLongInt(d.as_millis() as i64);
    args.insert("x-message-ttl".into(), millis(ttl));
    args.insert("x-expires".into(), millis(ttl + DELAY_QUEUE_SPARE));
    let exchange = AMQPValue::LongString(LongString::from(""));
    args.insert("x-dead-letter-exchange".into(), exchange);
    let key = AMQPValue::LongString(LongString::from(ready));
    args.insert("x-dead-letter-routing-key".into(), key);
    args
}

/// The TTL of the delay queue for `delay`: rounded up (a task never arrives before it is due)
/// to a grid of 1/32 of its power of two, at least 10 ms, so that a few dozen queues serve each
/// doubling of delays (retries' jittered backoffs among them), at most [`MAX_DELAY`] (a longer
/// delay arrives early, and is delayed again).
pub fn delay_ttl(delay: Duration) -> Duration {
    let delay = delay.min(MAX_DELAY).as_millis() as u64;
    let grid = (delay / 32).max(1).next_power_of_two().max(10);
    Duration::from_millis(delay.div_ceil(grid) * grid).min(MAX_DELAY)
}

/// The RabbitMQ priority of a task's priority.
pub fn priority(priority: i32) -> u8 {
    priority.clamp(0, MAX_PRIORITY as i32) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_a_coarse_grid() {
        let ms = |m| Duration::from_millis(m);
        assert_eq!(delay_ttl(ms(1)), ms(10));
        assert_eq!(delay_ttl(ms(10)), ms(10));
        assert_eq!(delay_ttl(ms(1000)), ms(1024));
        for m in [3, 77, 999, 1_250, 60_000, 3_600_000] {
            let ttl = delay_ttl(ms(m));
            assert!(
                ttl >= ms(m) && ttl <= ms(m) + ms(m) / 16 + ms(10),
                "{m}: {ttl:?}"
            );
        }
        assert_eq!(delay_ttl(Duration::from_secs(10 << 20)), MAX_DELAY);
    }

    #[test]
    fn priorities_clamp_into_rabbitmqs_levels() {
        assert_eq!((priority(-5), priority(5), priority(200)), (0, 5, 9));
    }

    #[test]
    fn names_cannot_collide_across_kinds() {
        let n = Names::new("p");
        assert_ne!(n.ready("a.dead"), n.dead("a"));
        assert_ne!(n.dedup("q", "ab"), n.dedup("qa", "b"));
    }
}
