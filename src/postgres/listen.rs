//! `LISTEN`/`NOTIFY`: one dedicated connection (outside the pool, since a pooled connection
//! cannot keep listening) that listens on the channels services subscribe to and fans
//! notifications out to them. When the connection drops it reconnects with backoff, listens
//! again, and tells every subscriber to resynchronise (notifications may have been missed).

use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tracing::{info, warn};

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A notification on the subscribed channel.
    Notify(String),
    /// The connection was re-established: anything may have been missed; re-read the truth.
    Resync,
}

/// A handle to the listening connection. Cheap to clone.
#[derive(Clone)]
pub struct Listener {
    commands: mpsc::UnboundedSender<(String, mpsc::UnboundedSender<Event>)>,
}

impl Listener {
    /// Starts the listening task on `config`'s database.
    pub fn start(config: tokio_postgres::Config) -> Listener {
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(config, rx));
        Listener { commands }
    }

    /// Subscribes to `channel` (a plain identifier); notifications arrive on the receiver.
    pub fn subscribe(&self, channel: &str) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.commands.send((channel.to_owned(), tx));
        rx
    }
}

type Subscribers = HashMap<String, Vec<mpsc::UnboundedSender<Event>>>;

async fn run(
    config: tokio_postgres::Config,
    mut commands: mpsc::UnboundedReceiver<(String, mpsc::UnboundedSender<Event>)>,
) {
    let mut subscribers: Subscribers = HashMap::new();
    let mut failures = 0u32;
    loop {
        match serve(&config, &mut commands, &mut subscribers).await {
            Ok(()) => return, // every handle is gone: the daemon is stopping
            Err(e) => {
                failures += 1;
                let delay = Duration::from_millis(100 << failures.min(6));
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "LISTEN connection lost");
                tokio::time::sleep(delay).await;
            }
        }
        broadcast(&mut subscribers, |_| true, Event::Resync);
    }
}

/// Serves one connection until it fails (`Err`) or every handle is dropped (`Ok`).
async fn serve(
    config: &tokio_postgres::Config,
    commands: &mut mpsc::UnboundedReceiver<(String, mpsc::UnboundedSender<Event>)>,
    subscribers: &mut Subscribers,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = config.connect(NoTls).await?;
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = notes_tx.send((n.channel().to_owned(), n.payload().to_owned()));
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    for channel in subscribers.keys() {
        listen(&client, channel).await?;
    }
    info!(channels = subscribers.len(), "listening for notifications");
    let result = loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some((channel, tx)) => {
                    if !subscribers.contains_key(&channel) {
                        listen(&client, &channel).await?;
                    }
                    subscribers.entry(channel).or_default().push(tx);
                }
                None => break Ok(()),
            },
            note = notes.recv() => match note {
                Some((channel, payload)) => {
                    broadcast(subscribers, |c| c == channel, Event::Notify(payload));
                }
                None => break client.simple_query("SELECT 1").await.map(drop),
            },
        }
    };
    driver.abort();
    result
}

async fn listen(client: &Client, channel: &str) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!("LISTEN \"{}\"", channel.replace('"', "\"\"")))
        .await
}

fn broadcast(subscribers: &mut Subscribers, matches: impl Fn(&str) -> bool, event: Event) {
    for (channel, txs) in subscribers.iter_mut() {
        if matches(channel) {
            txs.retain(|tx| tx.send(event.clone()).is_ok());
        }
    }
}
