//! The hub actor: the subscriptions of this daemon, and publishing in batches, in order.

use super::{Pattern, PubSub, PubSubError, Publication, SubscriberQueue};
use crate::message::SessionId;
use crate::store::StoreError;
use actix::prelude::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::oneshot;
use tracing::debug;
use uuid::Uuid;

/// Publishes a message; answers how many subscriptions of this daemon it was handed to, once it
/// is out to the other daemons.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub topic: String,
    pub message: Value,
    pub reply: oneshot::Sender<Result<usize, PubSubError>>,
}

/// Registers a subscription; answers its id.
#[derive(Message)]
#[rtype(result = "Uuid")]
pub struct Subscribe {
    pub session: SessionId,
    pub pattern: Pattern,
    pub queue: Arc<SubscriberQueue>,
}

/// Ends a subscription of `session`; answers whether it existed.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Unsubscribe {
    pub session: SessionId,
    pub id: Uuid,
}

/// A session ended: its subscriptions end.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionClosed(pub SessionId);

/// A publication of another daemon.
#[derive(Message)]
#[rtype(result = "()")]
struct Remote(Publication);

struct Subscription {
    session: SessionId,
    pattern: Pattern,
    queue: Arc<SubscriberQueue>,
}

/// The subscriptions, and who gets what.
#[derive(Default)]
struct Router {
    subscriptions: HashMap<Uuid, Subscription>,
    /// How many subscriptions each pattern (as written) has.
    patterns: HashMap<String, usize>,
}

/// What [`Router::remove_where`] removed.
struct Removed {
    count: usize,
    /// The patterns of which it removed the last subscription.
    last_of: Vec<String>,
}

impl Router {
    /// Hands `p` to every matching subscription; returns how many.
    fn route(&self, p: Publication) -> usize {
        let p = Arc::new(p);
        let matching = self
            .subscriptions
            .values()
            .filter(|s| s.pattern.matches(&p.topic));
        matching.map(|s| s.queue.push(p.clone())).count()
    }

    /// Adds a subscription; answers its pattern if it is the first subscription to it.
    fn add(&mut self, id: Uuid, subscription: Subscription) -> Option<String> {
        let pattern = subscription.pattern.to_string();
        self.subscriptions.insert(id, subscription);
        let count = self.patterns.entry(pattern.clone()).or_default();
        *count += 1;
        (*count == 1).then_some(pattern)
    }

    fn remove_where(&mut self, drop: impl Fn(&Uuid, &Subscription) -> bool) -> Removed {
        let mut gone = Vec::new();
        self.subscriptions.retain(|id, s| {
            let remove = drop(id, s);
            if remove {
                s.queue.close();
                gone.push(s.pattern.to_string());
            }
            !remove
        });
        let count = gone.len();
        let last_of = gone.into_iter().filter(|p| self.release(p)).collect();
        Removed { count, last_of }
    }

    /// Counts one subscription to `pattern` fewer; answers whether it was the last.
    fn release(&mut self, pattern: &str) -> bool {
        let Some(count) = self.patterns.get_mut(pattern) else {
            return false;
        };
        *count -= 1;
        if *count > 0 {
            return false;
        }
        self.patterns.remove(pattern);
        true
    }
}

type Waiting = (Publication, oneshot::Sender<Result<usize, PubSubError>>);

/// One per daemon.
pub struct Hub {
    router: Router,
    transport: Arc<dyn PubSub>,
    next: Vec<Waiting>,
    publishing: bool,
}

impl Hub {
    /// Starts the hub and the transport's delivery of other daemons' publications to it.
    pub fn start(transport: Arc<dyn PubSub>) -> Addr<Hub> {
        let hub = Hub {
            router: Router::default(),
            transport: transport.clone(),
            next: Vec::new(),
            publishing: false,
        }
        .start();
        let remote = hub.clone();
        transport.receive(Box::new(move |p| remote.do_send(Remote(p))));
        hub
    }

    /// Publishes what waits, one batch at a time; each batch is routed locally once it is out.
    fn publish_next(&mut self, ctx: &mut Context<Self>) {
        if self.publishing || self.next.is_empty() {
            return;
        }
        self.publishing = true;
        let batch: Vec<Waiting> = std::mem::take(&mut self.next);
        let publications: Vec<Publication> = batch.iter().map(|(p, _)| p.clone()).collect();
        let transport = self.transport.clone();
        let send = async move { transport.publish(&publications).await };
        ctx.spawn(send.into_actor(self).map(move |result, act, ctx| {
            act.publishing = false;
            act.settle(batch, result);
            act.publish_next(ctx);
        }));
    }

    /// Ends the subscriptions `drop` picks, telling the transport of patterns nobody here
    /// listens to any more; answers how many ended.
    fn end_where(&mut self, drop: impl Fn(&Uuid, &Subscription) -> bool) -> usize {
        let removed = self.router.remove_where(drop);
        for pattern in &removed.last_of {
            self.transport.disinterest(pattern);
        }
        removed.count
    }

    fn settle(&mut self, batch: Vec<Waiting>, result: Result<(), StoreError>) {
        debug!(publications = batch.len(), ok = result.is_ok(), "published");
        for (p, reply) in batch {
            let answer = match &result {
                Ok(()) => Ok(self.router.route(p)),
                Err(e) => Err(PubSubError::Store(e.clone())),
            };
            let _ = reply.send(answer);
        }
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64 * 1024);
    }
}

impl Handler<Publish> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        let p = Publication::new(msg.topic, msg.message);
        self.next.push((p, msg.reply));
        self.publish_next(ctx);
    }
}

impl Handler<Remote> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Remote, _: &mut Context<Self>) {
        self.router.route(msg.0);
    }
}

impl Handler<Subscribe> for Hub {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let id = Uuid::new_v4();
        let Subscribe {
            session,
            pattern,
            queue,
        } = msg;
        let subscription = Subscription {
            session,
            pattern,
            queue,
        };
        if let Some(pattern) = self.router.add(id, subscription) {
            self.transport.interest(&pattern);
        }
        MessageResult(id)
    }
}

impl Handler<Unsubscribe> for Hub {
    type Result = bool;

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) -> bool {
        self.end_where(|id, s| *id == msg.id && s.session == msg.session) > 0
    }
}

impl Handler<SessionClosed> for Hub {
    type Result = ();

    fn handle(&mut self, msg: SessionClosed, _: &mut Context<Self>) {
        self.end_where(|_, s| s.session == msg.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::check_pattern;

    #[test]
    fn publications_reach_matching_subscriptions_until_they_end() {
        let mut router = Router::default();
        let (a, b) = (SessionId::new(), SessionId::new());
        let mut add = |session, pattern: &str| {
            let queue = Arc::new(SubscriberQueue::new(8));
            let pattern = check_pattern(pattern).unwrap();
            let sub = Subscription {
                session,
                pattern,
                queue: queue.clone(),
            };
            router.add(Uuid::new_v4(), sub);
            queue
        };
        let (qa, qb) = (add(a, "orders.*"), add(b, "orders.>"));
        let p = |t: &str| Publication::new(t.into(), Value::Null);
        assert_eq!(router.route(p("orders.new")), 2);
        assert_eq!(router.route(p("orders.new.eu")), 1);
        assert_eq!(router.route(p("users.new")), 0);
        assert_eq!(qa.take().messages.len(), 1);
        assert_eq!(qb.take().messages.len(), 2);
        assert_eq!(router.remove_where(|_, s| s.session == a).count, 1);
        assert!(qa.take().closed);
        assert_eq!(router.route(p("orders.new")), 1);
    }

    /// A transport that records what the hub tells it of its interests.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl PubSub for Recorder {
        async fn publish(&self, _: &[Publication]) -> Result<(), StoreError> {
            Ok(())
        }
        fn receive(&self, _: crate::pubsub::Deliver) {}
        fn interest(&self, pattern: &str) {
            self.0.lock().unwrap().push(format!("+{pattern}"));
        }
        fn disinterest(&self, pattern: &str) {
            self.0.lock().unwrap().push(format!("-{pattern}"));
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<String> {
            let mut calls = std::mem::take(&mut *self.0.lock().unwrap());
            calls.sort();
            calls
        }
    }

    #[actix_rt::test]
    async fn the_transport_hears_of_a_patterns_first_and_last_subscription() {
        let recorder = Arc::new(Recorder::default());
        let hub = Hub::start(recorder.clone());
        let (a, b) = (SessionId::new(), SessionId::new());
        let subscribe = |session, pattern: &str| Subscribe {
            session,
            pattern: check_pattern(pattern).unwrap(),
            queue: Arc::new(SubscriberQueue::new(8)),
        };
        let first = hub.send(subscribe(a, "orders.*")).await.unwrap();
        assert_eq!(recorder.take(), ["+orders.*"]);
        let second = hub.send(subscribe(b, "orders.*")).await.unwrap();
        hub.send(subscribe(a, "users.>")).await.unwrap();
        assert_eq!(
            recorder.take(),
            ["+users.>"],
            "orders.* was already heard of"
        );
        let unsubscribe = |session, id| Unsubscribe { session, id };
        assert!(hub.send(unsubscribe(b, second)).await.unwrap());
        assert!(!hub.send(unsubscribe(b, first)).await.unwrap(), "not b's");
        assert_eq!(recorder.take(), Vec::<String>::new(), "a still listens");
        hub.send(SessionClosed(a)).await.unwrap();
        assert_eq!(recorder.take(), ["-orders.*", "-users.>"]);
        hub.send(subscribe(b, "orders.*")).await.unwrap();
        assert_eq!(
            recorder.take(),
            ["+orders.*"],
            "heard of again after the last left"
        );
    }
}
