//! `ikigai cache get|set|del`: cache keys in admin's own namespace, an agent's (`--agent`) or
//! the platform-wide one (`--shared`).

use super::output::{parse_json, Out};
use super::storage::Namespace;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use ikigai_client::Client;
use serde_json::{json, Value};

/// Whose keys a cache command works on.
#[derive(Debug, Args)]
pub struct Scope {
    #[command(flatten)]
    namespace: Namespace,
    /// Work in the platform-wide shared namespace.
    #[arg(long, conflicts_with = "agent")]
    shared: bool,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Prints the value at KEY as JSON (exit status 1 when it is absent or expired).
    Get {
        key: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// Sets KEY to a JSON value (replacing its value and expiry).
    Set {
        key: String,
        #[arg(value_parser = parse_json)]
        value: Value,
        /// Expire the key this many milliseconds from now.
        #[arg(long)]
        ttl_ms: Option<u64>,
        #[command(flatten)]
        scope: Scope,
    },
    /// Deletes KEY; prints whether it was there.
    Del {
        key: String,
        #[command(flatten)]
        scope: Scope,
    },
}

/// Runs one `ikigai cache` command.
pub async fn run(client: &Client, out: Out, command: CacheCommand) -> Result<()> {
    let args = |key: String, scope: Scope| json!({"key": key, "agent": scope.namespace.agent, "shared": scope.shared});
    match command {
        CacheCommand::Get { key, scope } => {
            let reply = super::call(client, "cache.get", &args(key.clone(), scope)).await?;
            let found = reply["found"] == true;
            if found || out.json {
                out.print(&reply, |reply| println!("{}", reply["value"]));
            }
            if !found {
                bail!("cache key {key:?} not found");
            }
        }
        CacheCommand::Set {
            key,
            value,
            ttl_ms,
            scope,
        } => {
            let mut args = args(key, scope);
            args["value"] = value;
            args["ttl_ms"] = json!(ttl_ms);
            out.print(&super::call(client, "cache.set", &args).await?, |_| {});
        }
        CacheCommand::Del { key, scope } => {
            let reply = super::call(client, "cache.delete", &args(key, scope)).await?;
            out.print(&reply, |reply| match reply["deleted"] == true {
                true => println!("deleted"),
                false => println!("not found (nothing deleted)"),
            });
        }
    }
    Ok(())
}
