//! `ikigai queue push|stats|list|dead`: task queues as admin.

use super::output::{parse_json, Out};
use anyhow::Result;
use clap::Subcommand;
use ikigai_client::Client;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Pushes a task with a JSON payload; prints its id.
    Push {
        queue: String,
        #[arg(value_parser = parse_json)]
        payload: Value,
        #[arg(long)]
        priority: Option<i32>,
        #[arg(long)]
        delay_ms: Option<u64>,
    },
    /// Prints the counters of a queue.
    Stats { queue: String },
    /// Prints tasks of a queue, one JSON per line (all states, or one of pending, scheduled,
    /// claimed, completed, dead).
    List {
        queue: String,
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Prints the dead tasks of a queue (failed on their last attempt), one JSON per line.
    Dead {
        queue: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Runs one `ikigai queue` command.
pub async fn run(client: &Client, out: Out, command: QueueCommand) -> Result<()> {
    let list =
        |queue, state: Option<&str>, limit| json!({"queue": queue, "state": state, "limit": limit});
    match command {
        QueueCommand::Push {
            queue,
            payload,
            priority,
            delay_ms,
        } => {
            let args = json!({"queue": queue, "payload": payload, "priority": priority, "delay_ms": delay_ms});
            let reply = super::call(client, "queue.push", &args).await?;
            out.print(&reply, |reply| {
                println!("{}", reply["id"].as_str().unwrap_or_default())
            });
        }
        QueueCommand::Stats { queue } => {
            out.fields(&super::call(client, "queue.stats", &json!({ "queue": queue })).await?)
        }
        QueueCommand::List {
            queue,
            state,
            limit,
        } => {
            let args = list(queue, state.as_deref(), limit);
            out.lines(&super::call(client, "queue.list", &args).await?, "tasks");
        }
        QueueCommand::Dead { queue, limit } => {
            let args = list(queue, Some("dead"), limit);
            out.lines(&super::call(client, "queue.list", &args).await?, "tasks");
        }
    }
    Ok(())
}
