//! `ikigai mailbox send|peek|stats`: mailboxes as admin.

use super::output::{parse_json, Out};
use anyhow::Result;
use clap::Subcommand;
use ikigai_client::Client;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum MailboxCommand {
    /// Sends a JSON payload to a mailbox (as admin); prints the message id.
    Send {
        mailbox: String,
        #[arg(value_parser = parse_json)]
        payload: Value,
    },
    /// Prints the oldest ready messages of a mailbox without delivering them, one JSON per line.
    Peek {
        mailbox: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Prints counters per mailbox.
    Stats { mailbox: Option<String> },
}

/// Runs one `ikigai mailbox` command.
pub async fn run(client: &Client, out: Out, command: MailboxCommand) -> Result<()> {
    match command {
        MailboxCommand::Send { mailbox, payload } => {
            let args = json!({"mailbox": mailbox, "payload": payload});
            let reply = super::call(client, "mailbox.send", &args).await?;
            out.print(&reply, |reply| {
                println!("{}", reply["id"].as_str().unwrap_or_default())
            });
        }
        MailboxCommand::Peek { mailbox, limit } => {
            let args = json!({ "mailbox": mailbox, "limit": limit });
            out.lines(
                &super::call(client, "mailbox.peek", &args).await?,
                "messages",
            );
        }
        MailboxCommand::Stats { mailbox } => {
            let args = json!({ "mailbox": mailbox });
            out.print(
                &super::call(client, "mailbox.stats", &args).await?,
                print_stats,
            );
        }
    }
    Ok(())
}

fn print_stats(reply: &Value) {
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>9} {:>7}  OLDEST_UNREAD",
        "MAILBOX", "UNREAD", "READ", "READY", "IN_FLIGHT", "WAITING"
    );
    for row in reply["mailboxes"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:>8} {:>8} {:>8} {:>9} {:>7}  {}",
            row["mailbox"].as_str().unwrap_or_default(),
            row["unread"].to_string(),
            row["read"].to_string(),
            row["ready"].to_string(),
            row["in_flight"].to_string(),
            row["waiting"].to_string(),
            row["oldest_unread_at"].as_str().unwrap_or("-"),
        );
    }
}
