//! Typed calls for pub/sub: `client.pubsub().publish`, and `subscribe`, whose messages arrive
//! as a [`Subscription`], a `Stream` of typed pushes.

use crate::client::{Owner, Route};
use crate::{Client, ClientError, Push};
use futures_core::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// What a subscription receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A published message.
    Message(PubSubMessage),
    /// `lost` messages were dropped because this subscriber was too slow.
    Overflow { lost: u64 },
    /// A push this client does not understand, as received.
    Other(Push),
}

/// A published message as delivered.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PubSubMessage {
    pub topic: String,
    pub message: Json,
    pub published_at: String,
}

/// The pub/sub service, as `client.pubsub()` gives it.
#[derive(Clone, Copy)]
pub struct PubSub<'a> {
    client: &'a Client,
}

impl PubSub<'_> {
    /// Publishes `message` on `topic`; returns how many subscriptions of this daemon got it.
    pub async fn publish(&self, topic: &str, message: &Json) -> Result<u64, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            topic: &'a str,
            message: &'a Json,
        }
        #[derive(Deserialize)]
        struct Delivered {
            delivered: u64,
        }
        let got: Delivered = self
            .client
            .call("pubsub.publish", &Args { topic, message })
            .await?;
        Ok(got.delivered)
    }

    /// Subscribes to a topic pattern (`*` one segment, final `>` one or more). Every message
    /// routed after the reply reaches the returned stream, none is missed in between.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            topic: &'a str,
        }
        let (route, pushes): (Route, _) = mpsc::unbounded_channel();
        let id = self.client.next_id();
        let pending = self
            .client
            .submit_as(id, "pubsub.subscribe", &Args { topic }, Some(route))
            .await?;
        let subscribed: crate::client::Subscribed = pending.reply().await?;
        Ok(Subscription {
            client: self.client.clone(),
            id: subscribed.subscription,
            pushes,
            open: true,
        })
    }
}

/// One subscription: a `Stream` of its deliveries, ending when the connection closes.
/// Dropping it unsubscribes (in the background).
pub struct Subscription {
    client: Client,
    id: String,
    pushes: mpsc::UnboundedReceiver<Push>,
    open: bool,
}

impl Subscription {
    /// The subscription's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Ends the subscription; true if it was still open at the daemon.
    pub async fn unsubscribe(mut self) -> Result<bool, ClientError> {
        self.open = false;
        self.client.discard(Owner::Subscription(self.id.clone()));
        unsubscribe(&self.client, &self.id).await
    }
}

/// `pubsub.unsubscribe`.
async fn unsubscribe(client: &Client, subscription: &str) -> Result<bool, ClientError> {
    #[derive(Serialize)]
    struct Args<'a> {
        subscription: &'a str,
    }
    #[derive(Deserialize)]
    struct Unsubscribed {
        unsubscribed: bool,
    }
    let got: Unsubscribed = client
        .call("pubsub.unsubscribe", &Args { subscription })
        .await?;
    Ok(got.unsubscribed)
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.open {
            self.client.discard(Owner::Subscription(self.id.clone()));
            let args = serde_json::json!({ "subscription": self.id });
            self.client.send_and_forget("pubsub.unsubscribe", args);
        }
    }
}

impl Stream for Subscription {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.pushes.poll_recv(cx).map(|push| push.map(delivery))
    }
}

fn delivery(push: Push) -> Delivery {
    #[derive(Deserialize)]
    struct Overflow {
        overflow: u64,
    }
    if let Ok(message) = ikigai_protocol::from_value::<PubSubMessage>(push.data.clone()) {
        return Delivery::Message(message);
    }
    match ikigai_protocol::from_value::<Overflow>(push.data.clone()) {
        Ok(o) => Delivery::Overflow { lost: o.overflow },
        Err(_) => Delivery::Other(push),
    }
}

impl Client {
    /// The pub/sub service.
    pub fn pubsub(&self) -> PubSub<'_> {
        PubSub { client: self }
    }
}
