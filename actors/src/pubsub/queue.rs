//! One subscription's buffer: bounded, dropping its oldest messages when full and counting them,
//! so the hub never waits for a subscriber.

use super::Publication;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What a subscriber takes from its queue at once.
#[derive(Debug, Default, PartialEq)]
pub struct Drained {
    /// Messages dropped (oldest first) since the last take; they came before `messages`.
    pub lost: u64,
    pub messages: Vec<Arc<Publication>>,
    /// The subscription ended: nothing more will come.
    pub closed: bool,
}

#[derive(Default)]
struct Inner {
    messages: VecDeque<Arc<Publication>>,
    lost: u64,
    closed: bool,
}

/// Shared by the hub (which pushes) and the subscriber's forwarding task (which takes).
pub struct SubscriberQueue {
    inner: Mutex<Inner>,
    ready: Notify,
    capacity: usize,
}

impl SubscriberQueue {
    pub fn new(capacity: usize) -> Self {
        SubscriberQueue {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Adds a message, dropping the oldest when full. Never waits.
    pub fn push(&self, message: Arc<Publication>) {
        let mut inner = self.inner.lock().expect("queue lock");
        if inner.closed {
            return;
        }
        if inner.messages.len() >= self.capacity {
            inner.messages.pop_front();
            inner.lost += 1;
        }
        inner.messages.push_back(message);
        drop(inner);
        self.ready.notify_one();
    }

    /// Ends the subscription; the subscriber sees `closed` on its next take.
    pub fn close(&self) {
        self.inner.lock().expect("queue lock").closed = true;
        self.ready.notify_one();
    }

    /// Everything waiting, and the count lost before it.
    pub fn take(&self) -> Drained {
        let mut inner = self.inner.lock().expect("queue lock");
        Drained {
            lost: std::mem::take(&mut inner.lost),
            messages: inner.messages.drain(..).collect(),
            closed: inner.closed,
        }
    }

    /// Resolves when something was pushed or the queue closed since the last wait.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn publication(n: i64) -> Arc<Publication> {
        Arc::new(Publication::new("t".into(), json!(n)))
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_counts_them() {
        let q = SubscriberQueue::new(2);
        (0..5).for_each(|n| q.push(publication(n)));
        let d = q.take();
        assert_eq!(d.lost, 3);
        let kept: Vec<_> = d
            .messages
            .iter()
            .map(|p| p.message.as_ref().clone())
            .collect();
        assert_eq!(kept, vec![json!(3), json!(4)]);
        assert_eq!(q.take(), Drained::default());
        q.close();
        q.push(publication(9));
        assert_eq!(
            q.take(),
            Drained {
                closed: true,
                ..Drained::default()
            }
        );
    }
}
