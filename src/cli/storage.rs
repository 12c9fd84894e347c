//! `ikigai storage get|put|list`: documents in admin's own namespace or an agent's (`--agent`).

use super::output::{parse_json, print_fields, Out};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use ikigai_client::Client;
use serde_json::{json, Value};

/// Whose data a cache or storage command works on.
#[derive(Debug, Args)]
pub struct Namespace {
    /// Work in this agent's namespace instead of admin's own.
    #[arg(long)]
    pub agent: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Prints the document at KEY: its value, version and time (exit status 1 when absent).
    Get {
        key: String,
        #[command(flatten)]
        namespace: Namespace,
    },
    /// Writes a JSON value at KEY; prints the document's new version.
    Put {
        key: String,
        #[arg(value_parser = parse_json)]
        value: Value,
        /// Write only if the stored version is this (0: only if absent).
        #[arg(long)]
        if_version: Option<i64>,
        #[command(flatten)]
        namespace: Namespace,
    },
    /// Prints the documents whose key starts with PREFIX, in key order, one per line.
    List {
        prefix: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this key (the `next` a previous page printed).
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        namespace: Namespace,
    },
}

/// Runs one `ikigai storage` command.
pub async fn run(client: &Client, out: Out, command: StorageCommand) -> Result<()> {
    match command {
        StorageCommand::Get { key, namespace } => {
            let args = json!({"key": key, "agent": namespace.agent});
            let reply = super::call(client, "storage.get", &args).await?;
            let found = !reply["document"].is_null();
            if found || out.json {
                out.print(&reply, |reply| print_fields(&reply["document"]));
            }
            if !found {
                bail!("no document at {key:?}");
            }
        }
        StorageCommand::Put {
            key,
            value,
            if_version,
            namespace,
        } => {
            let args = json!({"key": key, "value": value, "if_version": if_version,
                "agent": namespace.agent});
            out.fields(&super::call(client, "storage.put", &args).await?);
        }
        StorageCommand::List {
            prefix,
            limit,
            after,
            namespace,
        } => {
            let args = json!({"prefix": prefix, "limit": limit, "after": after,
                "agent": namespace.agent});
            out.print(
                &super::call(client, "storage.list", &args).await?,
                print_list,
            );
        }
    }
    Ok(())
}

fn print_list(reply: &Value) {
    println!("{:<32} {:>8} {:<27}  VALUE", "KEY", "VERSION", "UPDATED_AT");
    for d in reply["documents"].as_array().into_iter().flatten() {
        println!(
            "{:<32} {:>8} {:<27}  {}",
            d["key"].as_str().unwrap_or_default(),
            d["version"].to_string(),
            d["updated_at"].as_str().unwrap_or_default(),
            d["value"],
        );
    }
    if let Some(next) = reply["next"].as_str() {
        println!("(more: --after {next})");
    }
}
