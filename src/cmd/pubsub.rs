//! `pubsub.publish`, `pubsub.subscribe` and `pubsub.unsubscribe`.
//!
//! A subscription's messages are forwarded to its connection as pushes by a task of its own,
//! from a bounded queue: `{"push": subscription, "data": {topic, message, published_at}}`, and
//! `{"push": subscription, "data": {"overflow": lost}}` when the subscriber fell behind.

use super::timestamp;
use crate::error::Error;
use crate::services::{Services, Shutdown};
use crate::session::{Out, Session};
use ikigai_actors::pubsub::{
    check_pattern, check_topic, Drained, PubSubError, Publication, Publish, Subscribe,
    SubscriberQueue, Unsubscribe,
};
use ikigai_protocol::{encode_push, Json};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::oneshot;
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishArgs {
    topic: String,
    message: Json,
}

#[derive(Serialize)]
pub struct Delivered {
    delivered: usize,
}

pub async fn publish(args: PublishArgs, s: &Services) -> Result<Delivered, Error> {
    check_topic(&args.topic).map_err(Error::BadRequest)?;
    let (reply, rx) = oneshot::channel();
    s.pubsub.do_send(Publish {
        topic: args.topic,
        message: args.message.0,
        reply,
    });
    let delivered = rx.await.map_err(|_| PubSubError::Stopped)??;
    Ok(Delivered { delivered })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeArgs {
    topic: String,
}

#[derive(Serialize)]
pub struct Subscribed {
    subscription: String,
}

pub async fn subscribe(
    args: SubscribeArgs,
    s: &Services,
    session: &Session,
) -> Result<Subscribed, Error> {
    let pattern = check_pattern(&args.topic).map_err(Error::BadRequest)?;
    let out = session
        .pushes()
        .ok_or_else(|| Error::Internal("this connection cannot receive pushes".into()))?;
    let queue = Arc::new(SubscriberQueue::new(s.config.pubsub.subscriber_buffer));
    let subscribe = Subscribe {
        session: session.id,
        pattern,
        queue: queue.clone(),
    };
    let id = s
        .pubsub
        .send(subscribe)
        .await
        .map_err(|_| PubSubError::Stopped)?
        .to_string();
    // Spawned now, first run after this request's reply is queued: pushes follow the reply.
    tokio::task::spawn_local(forward(id.clone(), queue, out, session.closed()));
    Ok(Subscribed { subscription: id })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeArgs {
    subscription: String,
}

#[derive(Serialize)]
pub struct Unsubscribed {
    unsubscribed: bool,
}

pub async fn unsubscribe(
    args: UnsubscribeArgs,
    s: &Services,
    session: &Session,
) -> Result<Unsubscribed, Error> {
    let id = Uuid::parse_str(&args.subscription)
        .map_err(|_| Error::BadRequest(format!("{:?} is not a UUID", args.subscription)))?;
    let unsubscribe = Unsubscribe {
        session: session.id,
        id,
    };
    let unsubscribed = s
        .pubsub
        .send(unsubscribe)
        .await
        .map_err(|_| PubSubError::Stopped)?;
    Ok(Unsubscribed { unsubscribed })
}

#[derive(Serialize)]
#[serde(untagged)]
enum PushData<'a> {
    Message {
        topic: &'a str,
        message: &'a serde_json::Value,
        published_at: String,
    },
    Overflow {
        overflow: u64,
    },
}

impl<'a> From<&'a Publication> for PushData<'a> {
    fn from(p: &'a Publication) -> Self {
        PushData::Message {
            topic: &p.topic,
            message: &p.message,
            published_at: timestamp(p.published_at),
        }
    }
}

/// Forwards a subscription's queue to its connection until it ends or the connection closes.
async fn forward(id: String, queue: Arc<SubscriberQueue>, out: Out, mut closed: Shutdown) {
    loop {
        let Drained {
            lost,
            messages,
            closed: ended,
        } = queue.take();
        let overflow = (lost > 0).then_some(PushData::Overflow { overflow: lost });
        let pushes = overflow
            .into_iter()
            .chain(messages.iter().map(|m| PushData::from(m.as_ref())));
        for data in pushes {
            let Ok(frame) = encode_push(&id, &data) else {
                continue;
            };
            tokio::select! {
                sent = out.send(frame) => if sent.is_err() { return },
                _ = closed.wait() => return,
            }
        }
        if ended {
            return;
        }
        tokio::select! {
            _ = queue.ready() => {}
            _ = closed.wait() => return,
        }
    }
}
