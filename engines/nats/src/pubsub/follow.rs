//! The follower: the task that receives other daemons' publications. It keeps one NATS
//! subscription per subject of the [`cover`](crate::subject::cover) of the patterns wanted,
//! each read by a task of its own into one bounded channel (a slow hub makes NATS drop, as a
//! slow Postgres listener would fall behind, never the publisher wait), joins large
//! publications' parts and hands each publication to the hub once. When the cover changes the
//! new subscriptions start before the old ones end; a publication both carry during the
//! change is delivered once, by its id.

use super::parts::{Joiner, Part};
use super::{Envelope, Patterns, FROM, PART};
use async_nats::{Client, Message};
use futures::StreamExt;
use ikigai_actors::pubsub::{Deliver, Publication};
use std::collections::{HashMap, VecDeque};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::warn;
use uuid::Uuid;

/// Messages waiting between the subscriptions and the follower.
const CHANNEL: usize = 1024;
/// How many publication ids the follower remembers, to deliver each once.
const RECENT: usize = 256;

pub(super) struct Follower {
    client: Client,
    namespace: String,
    me: String,
    patterns: watch::Receiver<Patterns>,
    deliver: Deliver,
    /// The subscriptions, by subject: each a task forwarding into `messages`.
    subscribed: HashMap<String, JoinHandle<()>>,
    joiner: Joiner,
    recent: VecDeque<Uuid>,
}

impl Follower {
    pub fn new(
        client: Client,
        namespace: String,
        me: String,
        patterns: watch::Receiver<Patterns>,
        deliver: Deliver,
    ) -> Follower {
        Follower {
            client,
            namespace,
            me,
            patterns,
            deliver,
            subscribed: HashMap::new(),
            joiner: Joiner::default(),
            recent: VecDeque::with_capacity(RECENT),
        }
    }

    /// Follows the patterns until the transport (the sender of `patterns`) is dropped.
    pub async fn run(mut self) {
        let (tx, mut messages) = mpsc::channel(CHANNEL);
        self.resubscribe(&tx).await;
        loop {
            tokio::select! {
                changed = self.patterns.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.resubscribe(&tx).await;
                }
                Some(message) = messages.recv() => self.handle(message),
            }
        }
        for (_, task) in self.subscribed.drain() {
            task.abort();
        }
    }

    /// Subscribes to the subjects the patterns now need, then ends the others.
    async fn resubscribe(&mut self, tx: &mpsc::Sender<Message>) {
        let wanted = {
            let patterns = self.patterns.borrow_and_update();
            crate::subject::cover(&self.namespace, patterns.keys().map(String::as_str))
        };
        for subject in &wanted {
            if self.subscribed.contains_key(subject) {
                continue;
            }
            match self.client.subscribe(subject.clone()).await {
                Ok(subscriber) => {
                    let tx = tx.clone();
                    let task = tokio::spawn(async move {
                        let mut subscriber = subscriber;
                        while let Some(message) = subscriber.next().await {
                            if tx.send(message).await.is_err() {
                                break;
                            }
                        }
                    });
                    self.subscribed.insert(subject.clone(), task);
                }
                Err(e) => warn!(subject, error = %e, "NATS subscription failed"),
            }
        }
        self.subscribed.retain(|subject, task| {
            let keep = wanted.contains(subject);
            if !keep {
                task.abort();
            }
            keep
        });
    }

    fn handle(&mut self, message: Message) {
        let headers = message.headers.as_ref();
        let header = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        if header(FROM) == Some(self.me.as_str()) {
            return;
        }
        let body = match header(PART).map(Part::parse) {
            None => message.payload,
            Some(Some(part)) => match self.joiner.add(part, &message.payload) {
                Some(body) => body,
                None => return,
            },
            Some(None) => {
                warn!(subject = %message.subject, "a publication part header does not parse");
                return;
            }
        };
        match serde_json::from_slice::<Envelope>(&body) {
            Ok(e) if self.first_time(e.i) => (self.deliver)(Publication {
                id: e.i,
                topic: e.t,
                message: e.m,
                published_at: e.at,
            }),
            Ok(_) => {}
            Err(e) => {
                warn!(subject = %message.subject, error = %e, "a publication does not decode")
            }
        }
    }

    /// Whether `id` was not delivered yet; remembers it.
    fn first_time(&mut self, id: Uuid) -> bool {
        if self.recent.contains(&id) {
            return false;
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
        true
    }
}
