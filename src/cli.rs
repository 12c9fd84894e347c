//! The operator's `ikigai` command: runs the daemon, or talks to a running one over its socket
//! as the `admin` identity (token in `<root>/.ikigai/admin.token`).

mod agents;
mod llm;
mod telemetry;

use crate::daemon::{self, Options};
use crate::root::Root;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ikigai_client::Client;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `ikigai-daemon` (and of `ikigai daemon`).
#[derive(Debug, Parser)]
#[command(
    name = "ikigai-daemon",
    version,
    about = "Runs the Ikigai runtime daemon in a root directory"
)]
pub struct DaemonArgs {
    /// The root directory; the daemon works in <root>/.ikigai/.
    #[arg(long, env = "IKIGAI_ROOT", default_value = ".")]
    pub root: PathBuf,
    /// Configuration file (default: <root>/.ikigai/ikigai.conf, else the shipped default).
    #[arg(long, env = "IKIGAI_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `ikigai`: operate the Ikigai runtime.
#[derive(Debug, Parser)]
#[command(name = "ikigai", version, about)]
pub struct Cli {
    /// The root directory of the daemon to run or talk to.
    #[arg(long, env = "IKIGAI_ROOT", default_value = ".", global = true)]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the daemon (same as `ikigai-daemon`).
    Daemon {
        /// Configuration file (default: <root>/.ikigai/ikigai.conf, else the shipped default).
        #[arg(long, env = "IKIGAI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Shows the running daemon's status.
    Status,
    /// Agent identities.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Deploys (or redeploys) the agent in DIR: its manifest.json and every file under it.
    Deploy { dir: PathBuf },
    /// Deployed agents.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Mailboxes.
    #[command(subcommand)]
    Mailbox(MailboxCommand),
    /// Task queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Telemetry events.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
    /// LLM access.
    #[command(subcommand)]
    Llm(LlmCommand),
}

#[derive(Debug, Subcommand)]
enum LlmCommand {
    /// Prints tokens and cost per agent and model.
    Usage {
        /// How far back: a number with s, m, h or d.
        #[arg(long, default_value = "24h")]
        since: String,
    },
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// Pushes a task with a JSON payload; prints its id.
    Push {
        queue: String,
        payload: String,
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

#[derive(Debug, Subcommand)]
enum TelemetryCommand {
    /// Follows new events live, one JSON object per line, until interrupted.
    Tail {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
    },
    /// Prints the newest events whose payload matches TEXT (full-text search), one per line.
    Search {
        text: String,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Prints the token of an agent identity, creating the identity if absent.
    Token { name: String },
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    /// Prints every deployed agent with its status.
    List,
    /// Prints one agent's registry entry as JSON.
    Get { name: String },
    /// Starts an agent (also one marked failed).
    Start { name: String },
    /// Stops an agent (TERM, then KILL after its stop_grace_s); it stays stopped.
    Stop { name: String },
    /// Stops and starts an agent.
    Restart { name: String },
    /// Stops an agent, revokes its tokens and removes it and its directory.
    Undeploy { name: String },
    /// Prints an agent's newest output lines (its `log` events).
    Logs {
        name: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Keep printing new lines until interrupted.
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MailboxCommand {
    /// Sends a JSON payload to a mailbox (as admin); prints the message id.
    Send { mailbox: String, payload: String },
    /// Prints the oldest ready messages of a mailbox without delivering them, one JSON per line.
    Peek {
        mailbox: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Prints counters per mailbox.
    Stats { mailbox: Option<String> },
}

/// Runs the daemon and turns a start-up failure into a message and exit code 1.
pub fn run_daemon(args: DaemonArgs) -> ExitCode {
    match daemon::run(Options {
        root: args.root,
        config: args.config,
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ikigai-daemon: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one `ikigai` command.
pub fn run(cli: Cli) -> ExitCode {
    if let Command::Daemon { config } = cli.command {
        return run_daemon(DaemonArgs {
            root: cli.root,
            config,
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(operate(Root::new(&cli.root), cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ikigai: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn operate(root: Root, command: Command) -> Result<()> {
    let client = connect_admin(&root).await?;
    match command {
        Command::Daemon { .. } => unreachable!("handled before connecting"),
        Command::Status => print_fields(&client.call("daemon.status", &json!({})).await?),
        Command::Agent(AgentCommand::Token { name }) => {
            let reply: Value = client
                .call("agents.token", &json!({ "name": name }))
                .await?;
            println!("{}", reply["token"].as_str().unwrap_or_default());
        }
        Command::Deploy { dir } => agents::deploy(&client, &dir).await?,
        Command::Agents(command) => manage_agents(&client, command).await?,
        Command::Mailbox(MailboxCommand::Send { mailbox, payload }) => {
            let payload: Value = serde_json::from_str(&payload).context("payload is not JSON")?;
            println!("{}", client.mailbox_send(&mailbox, &payload).await?);
        }
        Command::Mailbox(MailboxCommand::Peek { mailbox, limit }) => {
            let args = json!({ "mailbox": mailbox, "limit": limit });
            let reply: Value = client.call("mailbox.peek", &args).await?;
            for m in reply["messages"].as_array().into_iter().flatten() {
                println!("{m}");
            }
        }
        Command::Queue(command) => queue(&client, command).await?,
        Command::Mailbox(MailboxCommand::Stats { mailbox }) => {
            let reply: Value = client
                .call("mailbox.stats", &json!({ "mailbox": mailbox }))
                .await?;
            print_stats(&reply);
        }
        Command::Llm(LlmCommand::Usage { since }) => llm::usage(&client, &since).await?,
        Command::Telemetry(TelemetryCommand::Tail { agent, event_type }) => {
            telemetry::tail(&client, agent, event_type).await?;
        }
        Command::Telemetry(TelemetryCommand::Search { text, agent, limit }) => {
            let args = json!({ "text": text, "agent": agent, "limit": limit });
            for event in telemetry::query(&client, &args).await? {
                println!("{event}");
            }
        }
    }
    Ok(())
}

async fn manage_agents(client: &Client, command: AgentsCommand) -> Result<()> {
    match command {
        AgentsCommand::List => agents::list(client).await,
        AgentsCommand::Get { name } => {
            let reply: Value = client.call("agents.get", &json!({ "name": name })).await?;
            println!("{reply}");
            Ok(())
        }
        AgentsCommand::Start { name } => agents::manage(client, "start", &name).await,
        AgentsCommand::Stop { name } => agents::manage(client, "stop", &name).await,
        AgentsCommand::Restart { name } => agents::manage(client, "restart", &name).await,
        AgentsCommand::Undeploy { name } => agents::manage(client, "undeploy", &name).await,
        AgentsCommand::Logs {
            name,
            limit,
            follow,
        } => {
            agents::logs(client, &name, limit).await?;
            if follow {
                telemetry::tail(client, Some(name), Some("log".into())).await?;
            }
            Ok(())
        }
    }
}

async fn queue(client: &Client, command: QueueCommand) -> Result<()> {
    let list =
        |queue, state: Option<&str>, limit| json!({"queue": queue, "state": state, "limit": limit});
    match command {
        QueueCommand::Push {
            queue,
            payload,
            priority,
            delay_ms,
        } => {
            let payload: Value = serde_json::from_str(&payload).context("payload is not JSON")?;
            let args = json!({"queue": queue, "payload": payload, "priority": priority, "delay_ms": delay_ms});
            let reply: Value = client.call("queue.push", &args).await?;
            println!("{}", reply["id"].as_str().unwrap_or_default());
        }
        QueueCommand::Stats { queue } => print_fields(
            &client
                .call("queue.stats", &json!({ "queue": queue }))
                .await?,
        ),
        QueueCommand::List {
            queue,
            state,
            limit,
        } => print_tasks(
            &client
                .call("queue.list", &list(queue, state.as_deref(), limit))
                .await?,
        ),
        QueueCommand::Dead { queue, limit } => print_tasks(
            &client
                .call("queue.list", &list(queue, Some("dead"), limit))
                .await?,
        ),
    }
    Ok(())
}

fn print_tasks(reply: &Value) {
    for task in reply["tasks"].as_array().into_iter().flatten() {
        println!("{task}");
    }
}

async fn connect_admin(root: &Root) -> Result<Client> {
    let socket = root.socket();
    if !socket.exists() {
        bail!(
            "no daemon is running in {} (no {}); start one with `ikigai daemon`",
            root.dir().display(),
            socket.display()
        );
    }
    let token_path = root.admin_token();
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("reading the admin token {}", token_path.display()))?;
    Client::connect_as(&socket, crate::identity::ADMIN, token.trim())
        .await
        .with_context(|| format!("connecting to {}", socket.display()))
}

fn print_fields(value: &Value) {
    for (k, v) in value.as_object().into_iter().flatten() {
        match v.as_str() {
            Some(s) => println!("{k}: {s}"),
            None => println!("{k}: {v}"),
        }
    }
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
