//! The rules of the telemetry writer, without actix: events wait in arrival order, leave in
//! batches, and a batch that fails is retried with backoff a few times before it is given up.

use super::TelemetryEvent;
use std::collections::VecDeque;
use std::time::Duration;

/// Failed attempts after which a batch is dropped (logged with its size).
const MAX_ATTEMPTS: u32 = 5;

/// What to do after a failed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// The batch is back at the front; write again after this delay.
    After(Duration),
    /// The batch was dropped: this many events are lost.
    GiveUp(usize),
}

/// Events waiting to be written.
#[derive(Debug)]
pub struct Outbox {
    waiting: VecDeque<TelemetryEvent>,
    batch_max: usize,
    failures: u32,
}

impl Outbox {
    pub fn new(batch_max: usize) -> Self {
        Outbox {
            waiting: VecDeque::new(),
            batch_max: batch_max.max(1),
            failures: 0,
        }
    }

    pub fn push(&mut self, event: TelemetryEvent) {
        self.waiting.push_back(event);
    }

    /// The oldest waiting events, at most `batch_max`; `None` when nothing waits.
    pub fn next_batch(&mut self) -> Option<Vec<TelemetryEvent>> {
        if self.waiting.is_empty() {
            return None;
        }
        let take = self.waiting.len().min(self.batch_max);
        Some(self.waiting.drain(..take).collect())
    }

    /// The last batch was written.
    pub fn written(&mut self) {
        self.failures = 0;
    }

    /// The last batch failed: it goes back to the front, or is given up after `MAX_ATTEMPTS`.
    pub fn failed(&mut self, batch: Vec<TelemetryEvent>) -> Retry {
        self.failures += 1;
        if self.failures >= MAX_ATTEMPTS {
            self.failures = 0;
            return Retry::GiveUp(batch.len());
        }
        for event in batch.into_iter().rev() {
            self.waiting.push_front(event);
        }
        Retry::After(Duration::from_millis(100 << self.failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(n: usize) -> Vec<TelemetryEvent> {
        (0..n)
            .map(|i| TelemetryEvent::new("a", "log", json!({ "i": i })))
            .collect()
    }

    #[test]
    fn batches_leave_in_arrival_order_and_bounded() {
        let mut outbox = Outbox::new(2);
        events(3).into_iter().for_each(|e| outbox.push(e));
        let first = outbox.next_batch().unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].payload, json!({"i": 0}));
        assert_eq!(outbox.next_batch().unwrap()[0].payload, json!({"i": 2}));
        assert!(outbox.next_batch().is_none());
    }

    #[test]
    fn a_failed_batch_goes_back_first_then_is_given_up() {
        let mut outbox = Outbox::new(2);
        events(2).into_iter().for_each(|e| outbox.push(e));
        let mut batch = outbox.next_batch().unwrap();
        outbox.push(TelemetryEvent::new("a", "log", json!("later")));
        for attempt in 1..MAX_ATTEMPTS {
            let delay = Duration::from_millis(100 << attempt);
            assert_eq!(outbox.failed(batch), Retry::After(delay));
            batch = outbox.next_batch().unwrap();
            assert_eq!(batch[0].payload, json!({"i": 0}), "the failed events lead");
        }
        assert_eq!(outbox.failed(batch), Retry::GiveUp(2));
        assert_eq!(outbox.next_batch().unwrap()[0].payload, json!("later"));
    }
}
