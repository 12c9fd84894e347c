//! The operator's `ikigai` command: runs the daemon, or talks to a running one over its socket
//! as the `admin` identity (token in `<root>/.ikigai/admin.token`).

mod agents;
mod cache;
mod llm;
mod mailbox;
mod output;
mod pubsub;
mod queue;
mod storage;
mod telemetry;

use self::cache::CacheCommand;
use self::mailbox::MailboxCommand;
use self::output::Out;
use self::pubsub::PubsubCommand;
use self::queue::QueueCommand;
use self::storage::StorageCommand;

use crate::daemon::{self, Options};
use crate::root::Root;
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ikigai_client::Client;
use serde_json::json;
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
    /// Print machine-readable output: one JSON document (JSON lines for commands that follow
    /// a stream), and errors as a JSON object on stderr.
    #[arg(long, global = true)]
    json: bool,
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
    /// Cache keys (admin's, an agent's or the shared namespace).
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Publish and subscribe.
    #[command(subcommand)]
    Pubsub(PubsubCommand),
    /// Durable documents (admin's or an agent's namespace).
    #[command(subcommand)]
    Storage(StorageCommand),
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
    let out = Out { json: cli.json };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(operate(Root::new(&cli.root), out, cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            ExitCode::FAILURE
        }
    }
}

async fn operate(root: Root, out: Out, command: Command) -> Result<()> {
    let client = connect_admin(&root).await?;
    match command {
        Command::Daemon { .. } => unreachable!("handled before connecting"),
        Command::Status => out.fields(&call(&client, "daemon.status", &json!({})).await?),
        Command::Agent(AgentCommand::Token { name }) => {
            let reply = call(&client, "agents.token", &json!({ "name": name })).await?;
            out.print(&reply, |r| {
                println!("{}", r["token"].as_str().unwrap_or_default())
            });
        }
        Command::Deploy { dir } => agents::deploy(&client, out, &dir).await?,
        Command::Agents(command) => manage_agents(&client, out, command).await?,
        Command::Mailbox(command) => mailbox::run(&client, out, command).await?,
        Command::Queue(command) => queue::run(&client, out, command).await?,
        Command::Cache(command) => cache::run(&client, out, command).await?,
        Command::Pubsub(command) => pubsub::run(&client, out, command).await?,
        Command::Storage(command) => storage::run(&client, out, command).await?,
        Command::Llm(LlmCommand::Usage { since }) => llm::usage(&client, out, &since).await?,
        Command::Telemetry(TelemetryCommand::Tail { agent, event_type }) => {
            telemetry::tail(&client, agent, event_type, |e| println!("{e}")).await?;
        }
        Command::Telemetry(TelemetryCommand::Search { text, agent, limit }) => {
            let args = json!({ "text": text, "agent": agent, "limit": limit });
            let events = telemetry::query(&client, &args).await?;
            out.lines(&json!({ "events": events }), "events");
        }
    }
    Ok(())
}

async fn manage_agents(client: &Client, out: Out, command: AgentsCommand) -> Result<()> {
    match command {
        AgentsCommand::List => agents::list(client, out).await,
        AgentsCommand::Get { name } => {
            println!(
                "{}",
                call(client, "agents.get", &json!({ "name": name })).await?
            );
            Ok(())
        }
        AgentsCommand::Start { name } => agents::manage(client, out, "start", &name).await,
        AgentsCommand::Stop { name } => agents::manage(client, out, "stop", &name).await,
        AgentsCommand::Restart { name } => agents::manage(client, out, "restart", &name).await,
        AgentsCommand::Undeploy { name } => agents::manage(client, out, "undeploy", &name).await,
        AgentsCommand::Logs {
            name,
            limit,
            follow,
        } => agents::logs(client, out, &name, limit, follow).await,
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

/// Calls `op` with `args`; the reply as JSON.
async fn call(client: &Client, op: &str, args: &serde_json::Value) -> Result<serde_json::Value> {
    Ok(client.call(op, args).await?)
}
