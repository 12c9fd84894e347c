//! `ikigai pubsub publish|subscribe`: publishing as admin, and following a topic pattern.

use super::output::{parse_json, Out};
use anyhow::{bail, Result};
use clap::Subcommand;
use futures::StreamExt;
use ikigai_client::{Client, Delivery};
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum PubsubCommand {
    /// Publishes a JSON message on TOPIC; prints how many subscriptions of this daemon got it.
    Publish {
        topic: String,
        #[arg(value_parser = parse_json)]
        message: Value,
    },
    /// Prints each message published on a topic matching PATTERN (`*` one segment, a final `>`
    /// one or more) as a JSON line, until interrupted.
    Subscribe { pattern: String },
}

/// Runs one `ikigai pubsub` command.
/// With or without `--json`, `publish` prints its reply's fields and `subscribe` JSON lines.
pub async fn run(client: &Client, out: Out, command: PubsubCommand) -> Result<()> {
    match command {
        PubsubCommand::Publish { topic, message } => {
            let args = json!({"topic": topic, "message": message});
            out.fields(&super::call(client, "pubsub.publish", &args).await?);
        }
        PubsubCommand::Subscribe { pattern } => subscribe(client, &pattern).await?,
    }
    Ok(())
}

/// Prints `{"topic", "message", "published_at"}` per message, and `{"overflow": n}` when `n`
/// messages were dropped because this command read too slowly.
async fn subscribe(client: &Client, pattern: &str) -> Result<()> {
    let mut subscription = client.pubsub().subscribe(pattern).await?;
    eprintln!("subscribed to {pattern}");
    while let Some(delivery) = subscription.next().await {
        match delivery {
            Delivery::Message(m) => println!(
                "{}",
                json!({"topic": m.topic, "message": m.message, "published_at": m.published_at})
            ),
            Delivery::Overflow { lost } => println!("{}", json!({ "overflow": lost })),
            Delivery::Other(_) => {}
        }
    }
    bail!("the daemon closed the connection")
}
