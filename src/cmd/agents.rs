//! The agent registry's ops: `agents.deploy`, `agents.list`, `agents.get`, `agents.start`,
//! `agents.stop`, `agents.restart`, `agents.undeploy`, `agents.heartbeat`, and `agents.token`
//! (issue an identity's token, admin only).
//!
//! Deploying, or starting, stopping, restarting or undeploying another agent, takes admin or an
//! agent whose manifest grants `permissions.deploy_agent`; an agent may stop, restart or
//! undeploy itself, but not deploy itself (that could widen its own permissions). Listing is
//! open to every session; a heartbeat is always the caller's own.

use super::{require_admin, timestamp, Empty};
use crate::actions::{self, denied, grants_deploy, owned, HexFile};
use crate::agents::actor::Op;
use crate::agents::store::Entry;
use crate::error::Error;
use crate::identity::{check_agent_name, IdentityError, ADMIN};
use crate::services::Services;
use crate::session::Session;
use ikigai_protocol::Json;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenArgs {
    name: String,
}

#[derive(Serialize)]
pub struct Token {
    agent: String,
    token: String,
}

pub async fn token(args: TokenArgs, s: &Services, session: &Session) -> Result<Token, Error> {
    require_admin(session, "issue agent tokens")?;
    check_agent_name(&args.name).map_err(Error::BadRequest)?;
    if args.name == ADMIN {
        return Err(Error::BadRequest(
            "admin's token lives in .ikigai/admin.token".into(),
        ));
    }
    let token = s
        .identities
        .token_for(&args.name)
        .await
        .map_err(|e| match e {
            IdentityError::Store(e) => Error::Store(e),
            IdentityError::File(e) => Error::Internal(e.to_string()),
        })?;
    Ok(Token {
        agent: args.name,
        token,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployArgs {
    manifest: Json,
    files: Option<Vec<HexFile>>,
}

#[derive(Serialize)]
pub struct Deployed {
    name: String,
    version: String,
}

pub async fn deploy(args: DeployArgs, s: &Services, session: &Session) -> Result<Deployed, Error> {
    let manifest = actions::deploy(s, session, &args.manifest.0, args.files).await?;
    Ok(Deployed {
        name: manifest.name,
        version: manifest.version,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameArgs {
    name: String,
}

/// `agents.start`, `agents.stop`, `agents.restart` and `agents.undeploy`.
pub async fn manage(
    op: &str,
    args: NameArgs,
    s: &Services,
    session: &Session,
) -> Result<Empty, Error> {
    let (verb, command) = match op {
        "agents.start" => ("start", Op::Start),
        "agents.stop" => ("stop", Op::Stop),
        "agents.restart" => ("restart", Op::Restart),
        _ => ("undeploy", Op::Undeploy),
    };
    let own = session.agent == args.name && !matches!(command, Op::Start);
    if !session.is_admin() && !own && !grants_deploy(s, session).await? {
        return Err(denied(verb, &args.name));
    }
    owned(s, &found(s, &args.name).await?)?;
    s.agents.command(&args.name, command).await?;
    Ok(Empty {})
}

async fn found(s: &Services, name: &str) -> Result<Entry, Error> {
    s.agents
        .get(name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no agent {name:?} is deployed")))
}

/// An entry as it travels.
#[derive(Serialize)]
pub struct WireAgent {
    name: String,
    version: String,
    status: &'static str,
    deployed_at: Option<String>,
    last_heartbeat: Option<String>,
    server: Option<String>,
    daemon_id: Option<String>,
    pid: Option<i32>,
    restarts: u32,
    manifest: serde_json::Value,
}

impl WireAgent {
    /// The entry as `session` may see it: a manifest's `env` values (API keys, as often as not)
    /// only for admin and for the agent itself.
    fn seen_by(e: Entry, session: &Session) -> WireAgent {
        let mut wire = WireAgent::from(e);
        if !session.is_admin() && session.agent != wire.name {
            redact_env(&mut wire.manifest);
        }
        wire
    }
}

fn redact_env(manifest: &mut serde_json::Value) {
    if let Some(env) = manifest.get_mut("env").and_then(|e| e.as_object_mut()) {
        for value in env.values_mut() {
            *value = serde_json::Value::String("[redacted]".into());
        }
    }
}

impl From<Entry> for WireAgent {
    fn from(e: Entry) -> Self {
        WireAgent {
            name: e.name,
            version: e.version,
            status: e.status.as_str(),
            deployed_at: e.deployed_at.map(timestamp),
            last_heartbeat: e.last_heartbeat.map(timestamp),
            server: e.server,
            daemon_id: e.daemon_id,
            pid: e.process.map(|p| p.pid),
            restarts: e.restarts,
            manifest: e.manifest,
        }
    }
}

pub async fn get(args: NameArgs, s: &Services, session: &Session) -> Result<WireAgent, Error> {
    Ok(WireAgent::seen_by(found(s, &args.name).await?, session))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {}

#[derive(Serialize)]
pub struct AgentList {
    agents: Vec<WireAgent>,
}

pub async fn list(_: ListArgs, s: &Services, session: &Session) -> Result<AgentList, Error> {
    let entries = s.agents.list().await?.into_iter();
    let agents = entries.map(|e| WireAgent::seen_by(e, session)).collect();
    Ok(AgentList { agents })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatArgs {}

pub async fn heartbeat(_: HeartbeatArgs, s: &Services, session: &Session) -> Result<Empty, Error> {
    if !s.agents.heartbeat(&session.agent).await? {
        return Err(Error::NotFound(format!(
            "{:?} is not a deployed agent",
            session.agent
        )));
    }
    Ok(Empty {})
}
