//! The platform's operations as an agent performs them, shared by the two ways in: the ops of
//! `cmd` (once their wire args are parsed) and the model's platform tools of `llm::tools` (once
//! their arguments are). Each checks what it is given by the rules of `rules` and acts through
//! the services' own handles (`Mailboxes`, `Queues`, the telemetry sink, `Agents`). What only
//! the wire has (transactions, reply shapes) stays in `cmd`.

use crate::agents::actor::{Deployment, Op};
use crate::agents::deploy::{self, File, Staged};
use crate::agents::store::Entry;
use crate::agents::AgentError;
use crate::error::Error;
use crate::manifest::Manifest;
use crate::rules::{check_ms, check_name, parse_time};
use crate::services::Services;
use crate::session::Session;
use actix::{Actor, Addr, Context, Handler};
use chrono::Utc;
use ikigai_actors::queue::{Push, QueueError};
use ikigai_actors::store::Pushed;
use ikigai_actors::telemetry::{TelemetryEvent, TelemetryQuery};
use ikigai_actors::{NewMessage, NewTask, StoredMessage};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Default and largest `limit` of a telemetry query.
pub const DEFAULT_EVENTS: usize = 100;
pub const MAX_EVENTS: usize = 1000;

/// Sends the message `make` builds around a reply channel to an actor; returns the channel its
/// answer will come on.
pub async fn ask<A, M, T>(
    addr: Addr<A>,
    make: impl FnOnce(oneshot::Sender<T>) -> M,
) -> Result<oneshot::Receiver<T>, Error>
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: actix::Message<Result = ()> + Send + 'static,
{
    let (reply, rx) = oneshot::channel();
    addr.send(make(reply)).await.map_err(|_| gone())?;
    Ok(rx)
}

/// The actor or the persistence callback went away before answering (daemon shutting down).
pub fn gone() -> Error {
    Error::Unavailable("the service stopped before answering; the outcome is unknown".into())
}

/// A queue's actor restarted before answering.
pub fn restarted(queue: &str) -> Error {
    QueueError::Restarted(queue.to_owned()).into()
}

/// Sends `payload` from `sender` to `mailbox`; answers once it is committed.
pub async fn send_message(
    s: &Services,
    sender: &str,
    mailbox: String,
    payload: Value,
) -> Result<StoredMessage, Error> {
    send(s, new_message(sender, mailbox, payload)?).await
}

/// A message from `sender` for `mailbox`, once the name is checked.
pub fn new_message(sender: &str, mailbox: String, payload: Value) -> Result<NewMessage, Error> {
    check_name("mailbox", &mailbox)?;
    Ok(NewMessage::new(mailbox, sender.to_owned(), payload))
}

/// Sends `msg` through its mailbox's actor; answers after the commit.
pub async fn send(s: &Services, msg: NewMessage) -> Result<StoredMessage, Error> {
    check_payload(s, &msg)?;
    s.mailboxes
        .send(msg)
        .await
        .map_err(|_| gone())?
        .map_err(Error::from)
}

/// Refuses a payload larger than the mailboxes' engine holds in one message.
fn check_payload(s: &Services, msg: &NewMessage) -> Result<(), Error> {
    let Some(max) = s.mailbox_store.max_payload() else {
        return Ok(());
    };
    let len = serde_json::to_vec(&*msg.payload).map_or(0, |v| v.len());
    if len > max {
        return Err(Error::BadRequest(format!(
            "payload is {len} bytes as JSON; the mailboxes' engine holds at most {max}"
        )));
    }
    Ok(())
}

/// One task to push, as given.
pub struct TaskSpec {
    pub payload: Value,
    pub priority: Option<i32>,
    /// RFC 3339.
    pub scheduled_for: Option<String>,
    pub delay_ms: Option<u64>,
    pub max_attempts: Option<i32>,
    pub dedup_key: Option<String>,
}

impl TaskSpec {
    /// The task for `queue`, checked (`max_attempts` defaults to `[queues] max_attempts`).
    pub fn task(self, queue: &str, s: &Services) -> Result<NewTask, Error> {
        check_name("queue", queue)?;
        let run_at = match (self.scheduled_for, self.delay_ms) {
            (Some(_), Some(_)) => {
                return Err(Error::BadRequest(
                    "give scheduled_for or delay_ms, not both".into(),
                ))
            }
            (Some(at), None) => Some(parse_time(&at)?),
            (None, Some(ms)) => {
                let delay = check_ms("delay_ms", ms, 0, Duration::MAX)?;
                Some(Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default())
            }
            (None, None) => None,
        };
        let max_attempts = self.max_attempts.unwrap_or(s.config.queues.max_attempts);
        if max_attempts < 1 {
            return Err(Error::BadRequest("max_attempts must be at least 1".into()));
        }
        if let Some(key) = &self.dedup_key {
            check_name("dedup_key", key)?;
        }
        Ok(NewTask {
            id: Uuid::now_v7(),
            queue: queue.to_owned(),
            payload: Arc::new(self.payload),
            priority: self.priority.unwrap_or(0),
            run_at,
            max_attempts,
            dedup_key: self.dedup_key,
        })
    }
}

/// Pushes `tasks` onto `queue` through its actor; answers once they are committed.
pub async fn push_tasks(
    s: &Services,
    queue: &str,
    tasks: Vec<NewTask>,
) -> Result<Vec<Pushed>, Error> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let rx = ask(s.queues.get(queue), |reply| Push { tasks, reply }).await?;
    rx.await.map_err(|_| restarted(queue))?.map_err(Error::from)
}

/// A telemetry query, as given.
#[derive(Default)]
pub struct EventsSpec {
    /// Whose events (admin only, for another agent's); default the caller's.
    pub agent: Option<String>,
    pub event_type: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    pub until: Option<String>,
    pub text: Option<String>,
    pub limit: Option<usize>,
}

/// The caller's telemetry events (anyone's for admin), newest first.
pub async fn query_telemetry(
    s: &Services,
    session: &Session,
    q: EventsSpec,
) -> Result<Vec<TelemetryEvent>, Error> {
    let agent = match (q.agent, session.is_admin()) {
        (agent, true) => agent,
        (Some(a), false) if a != session.agent => {
            return Err(Error::PermissionDenied(format!(
                "{:?} may query only its own telemetry, not {a:?}'s",
                session.agent
            )))
        }
        (_, false) => Some(session.agent.clone()),
    };
    let limit = q.limit.unwrap_or(DEFAULT_EVENTS);
    if limit > MAX_EVENTS {
        return Err(Error::BadRequest(format!(
            "limit must be at most {MAX_EVENTS}"
        )));
    }
    let query = TelemetryQuery {
        agent,
        event_type: q.event_type,
        since: q.since.as_deref().map(parse_time).transpose()?,
        until: q.until.as_deref().map(parse_time).transpose()?,
        text: q.text.filter(|t| !t.trim().is_empty()),
        limit,
    };
    Ok(s.telemetry_sink.query(&query).await?)
}

/// Deploys (or redeploys) the agent `manifest` describes, with `files` or from its service
/// directory in place, as `session`'s identity may: admin, or an agent whose manifest grants
/// `deploy_agent`. Returns the manifest deployed.
pub async fn deploy(
    s: &Services,
    session: &Session,
    manifest: &Value,
    files: Option<Vec<HexFile>>,
) -> Result<Manifest, Error> {
    let manifest = Manifest::from_value(manifest).map_err(|e| Error::BadRequest(e.to_string()))?;
    let files = files.map(|f| f.into_iter().map(HexFile::decode).collect());
    let files = files.transpose()?;
    let name = manifest.name.clone();
    if !session.is_admin() && !grants_deploy(s, session).await? {
        return Err(denied("deploy", &name));
    }
    // An entry without a daemon (written by other means than a deploy) is taken over.
    if let Some(entry) = s.agents.get(&name).await?.filter(|e| e.daemon_id.is_some()) {
        owned(s, &entry)?;
    }
    let staged = stage(files, &manifest, s)?;
    let deployment = Deployment {
        manifest: manifest.clone(),
        staged,
    };
    s.agents
        .command(&name, Op::Deploy(Box::new(deployment)))
        .await?;
    Ok(manifest)
}

/// Writes the files given into a staging directory, or, given none, checks that the service
/// directory is already in place.
fn stage(
    files: Option<Vec<File>>,
    manifest: &Manifest,
    s: &Services,
) -> Result<Option<Staged>, Error> {
    let in_place = || s.agents.services().join(&manifest.name).is_dir();
    let files = match files {
        Some(files) => files,
        None if in_place() => return Ok(None),
        // An agent that only connects needs no code: its directory holds just its manifest.
        None if manifest.command.is_none() => Vec::new(),
        None => {
            return Err(Error::BadRequest(format!(
                "no files given and .ikigai/services/{}/ does not exist",
                manifest.name
            )))
        }
    };
    let staged = deploy::stage(s.agents.services(), manifest, &files).map_err(AgentError::from)?;
    Ok(Some(staged))
}

/// A deployment's file as the op and the tool give it: its bytes in hexadecimal.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HexFile {
    path: String,
    hex: String,
    #[serde(default)]
    executable: bool,
}

impl HexFile {
    fn decode(self) -> Result<File, Error> {
        let data = hex::decode(&self.hex)
            .map_err(|e| Error::BadRequest(format!("files: {:?}: hex: {e}", self.path)))?;
        Ok(File {
            path: self.path,
            data,
            executable: self.executable,
        })
    }
}

/// True when the caller is a deployed agent whose manifest grants `deploy_agent`.
pub async fn grants_deploy(s: &Services, session: &Session) -> Result<bool, Error> {
    let entry = s.agents.get(&session.agent).await?;
    let manifest = entry.and_then(|e| Manifest::from_value(&e.manifest).ok());
    Ok(manifest.is_some_and(|m| m.permissions.deploy_agent))
}

pub fn denied(verb: &str, name: &str) -> Error {
    Error::PermissionDenied(format!(
        "only admin, or an agent whose manifest grants permissions.deploy_agent, may {verb} agent {name:?}"
    ))
}

/// Refuses an entry another daemon supervises.
pub fn owned(s: &Services, entry: &Entry) -> Result<(), Error> {
    if s.agents.owns(entry) {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "agent {:?} is supervised by daemon {} on {}; ask that daemon",
        entry.name,
        entry.daemon_id.as_deref().unwrap_or("?"),
        entry.server.as_deref().unwrap_or("?")
    )))
}
