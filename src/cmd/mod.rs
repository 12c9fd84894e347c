//! The ops: one file per service, one function per op, and the table that maps `op` strings to
//! them. Each op takes its typed args (wire structs, converted to domain types here) and returns
//! a serializable reply; errors become error frames in [`dispatch`].

mod agents;
mod cache;
mod daemon;
mod debug;
pub mod hello;
mod llm;
mod mailbox;
mod memory;
mod pubsub;
mod queue;
mod storage;
mod telemetry;
mod tx;

use crate::actions::{ask, gone};
use crate::error::Error;
use crate::rules::{check_ms, check_name, check_text, timestamp};
use crate::services::Services;
use crate::session::Session;
use ikigai_protocol::{encode_err, encode_ok, Raw, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use tokio::sync::oneshot;

/// Runs one request and returns the response frame.
pub async fn dispatch(req: Request, services: &Services, session: &Session) -> Vec<u8> {
    let Request {
        id,
        op,
        args,
        depth,
    } = req;
    let routed = match check_depth(depth, services) {
        Ok(()) => route(id, &op, args, services, session).await,
        Err(e) => Err(e),
    };
    match routed {
        Ok(frame) => frame,
        Err(e) => encode_err(id, &e.to_body(&op)),
    }
}

/// The cache's ops, which answer at once, are routed here, and every other op through
/// [`route_waiting`], boxed: its future holds the state of the largest op (some kilobytes), which
/// a cache request would otherwise allocate and copy (~4% of the daemon under the cache bench).
async fn route(
    id: u64,
    op: &str,
    a: Raw,
    s: &Services,
    session: &Session,
) -> Result<Vec<u8>, Error> {
    match op {
        "cache.get" => reply(id, cache::get(parse(op, a)?, s, session).await?),
        "cache.get_many" => reply(id, cache::get_many(parse(op, a)?, s, session).await?),
        "cache.set" => reply(id, cache::set(parse(op, a)?, s, session).await?),
        "cache.delete" => reply(id, cache::delete(parse(op, a)?, s, session).await?),
        "cache.incr" => reply(id, cache::incr(parse(op, a)?, s, session).await?),
        _ => Box::pin(route_waiting(id, op, a, s, session)).await,
    }
}

async fn route_waiting(
    id: u64,
    op: &str,
    a: Raw,
    s: &Services,
    session: &Session,
) -> Result<Vec<u8>, Error> {
    match op {
        "ping" => reply(id, daemon::ping()),
        "daemon.status" => reply(id, daemon::status(s)),
        "mailbox.send" => reply(id, mailbox::send(parse(op, a)?, s, session).await?),
        "mailbox.receive" => reply(id, mailbox::receive(parse(op, a)?, s, session).await?),
        "mailbox.ack" => reply(id, mailbox::ack(parse(op, a)?, s, session).await?),
        "mailbox.peek" => reply(id, mailbox::peek(parse(op, a)?, s, session).await?),
        "mailbox.stats" => reply(id, mailbox::stats(parse(op, a)?, s, session).await?),
        "queue.push" => reply(id, queue::push(parse(op, a)?, s, session).await?),
        "queue.push_many" => reply(id, queue::push_many(parse(op, a)?, s, session).await?),
        "queue.claim" => reply(id, queue::claim(parse(op, a)?, s, session).await?),
        "queue.extend" => reply(id, queue::extend(parse(op, a)?, s, session).await?),
        "queue.complete" => reply(id, queue::complete(parse(op, a)?, s, session).await?),
        "queue.fail" => reply(id, queue::fail(parse(op, a)?, s, session).await?),
        "queue.release" => reply(id, queue::release(parse(op, a)?, s, session).await?),
        "queue.stats" => reply(id, queue::stats(parse(op, a)?, s).await?),
        "queue.list" => reply(id, queue::list(parse(op, a)?, s).await?),
        "pubsub.publish" => reply(id, pubsub::publish(parse(op, a)?, s).await?),
        "pubsub.subscribe" => reply(id, pubsub::subscribe(parse(op, a)?, s, session).await?),
        "pubsub.unsubscribe" => reply(id, pubsub::unsubscribe(parse(op, a)?, s, session).await?),
        "storage.put" => reply(id, storage::put(parse(op, a)?, s, session).await?),
        "storage.get" => reply(id, storage::get(parse(op, a)?, s, session).await?),
        "storage.delete" => reply(id, storage::delete(parse(op, a)?, s, session).await?),
        "storage.list" => reply(id, storage::list(parse(op, a)?, s, session).await?),
        "telemetry.emit" => reply(id, telemetry::emit(parse(op, a)?, s, session)?),
        "telemetry.query" => reply(id, telemetry::query(parse(op, a)?, s, session).await?),
        "tx.begin" => reply(id, tx::begin(s, session).await?),
        "tx.commit" => reply(id, tx::commit(parse(op, a)?, s, session).await?),
        "tx.rollback" => reply(id, tx::rollback(parse(op, a)?, session).await?),
        "llm.prompt" => reply(id, llm::prompt(parse(op, a)?, id, s, session).await?),
        "llm.tool_result" => reply(id, llm::tool_result(parse(op, a)?, s, session)?),
        "llm.usage" => reply(id, llm::usage(parse(op, a)?, s, session).await?),
        "threads.create" => reply(id, llm::create_thread(parse(op, a)?, s, session).await?),
        _ if op.starts_with("assets.")
            || op.starts_with("context.")
            || op.starts_with("conversation.") =>
        {
            route_memory(id, op, a, s, session).await
        }
        "agents.token" => reply(id, agents::token(parse(op, a)?, s, session).await?),
        "agents.deploy" => reply(id, agents::deploy(parse(op, a)?, s, session).await?),
        "agents.list" => reply(id, agents::list(parse(op, a)?, s, session).await?),
        "agents.get" => reply(id, agents::get(parse(op, a)?, s, session).await?),
        "agents.start" | "agents.stop" | "agents.restart" | "agents.undeploy" => {
            reply(id, agents::manage(op, parse(op, a)?, s, session).await?)
        }
        "agents.heartbeat" => reply(id, agents::heartbeat(parse(op, a)?, s, session).await?),
        "debug.panic_mailbox" => reply(id, debug::panic_mailbox(parse(op, a)?, s, session)?),
        "debug.panic_agent" => reply(id, debug::panic_agent(parse(op, a)?, s, session)?),
        "hello" => Err(Error::BadRequest(
            "this connection is already authenticated".into(),
        )),
        other => Err(Error::UnknownOp(other.to_owned())),
    }
}

/// Refuses args nested deeper than `[daemon] max_depth`: below every reader's limit, so that
/// nothing stored is unreadable later.
fn check_depth(depth: usize, s: &Services) -> Result<(), Error> {
    let max = s.config.daemon.max_depth;
    if depth > max {
        return Err(Error::BadRequest(format!(
            "args nest more than {max} levels deep (the limit, [daemon] max_depth)"
        )));
    }
    Ok(())
}

/// Parses a request's args into the op's argument struct.
fn parse<T: DeserializeOwned>(op: &str, args: Raw) -> Result<T, Error> {
    args.parse()
        .map_err(|e| Error::BadRequest(format!("{op}: {e}")))
}

fn reply<T: Serialize>(id: u64, value: T) -> Result<Vec<u8>, Error> {
    encode_ok(id, &value).map_err(|e| Error::Internal(e.to_string()))
}

/// The namespace of a cache or storage op: the caller's own, or the agent that `agent` names,
/// which only `admin` may do (an operator reading or repairing an agent's data).
fn namespace<'a>(agent: Option<&'a str>, session: &'a Session) -> Result<&'a str, Error> {
    let Some(name) = agent else {
        return Ok(&session.agent);
    };
    require_admin(session, "name an agent's namespace")?;
    crate::identity::check_agent_name(name).map_err(Error::BadRequest)?;
    Ok(name)
}

/// Refuses unless the session is the operator.
fn require_admin(session: &Session, what: &str) -> Result<(), Error> {
    if session.is_admin() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!("only admin may {what}")))
    }
}

/// The memory and context ops (section 18).
async fn route_memory(
    id: u64,
    op: &str,
    a: Raw,
    s: &Services,
    session: &Session,
) -> Result<Vec<u8>, Error> {
    match op {
        "assets.create" => reply(id, memory::create(parse(op, a)?, s, session).await?),
        "assets.update" => reply(id, memory::update(parse(op, a)?, s, session).await?),
        "assets.get" => reply(id, memory::get(parse(op, a)?, s, session).await?),
        "assets.list" => reply(id, memory::list(parse(op, a)?, s, session).await?),
        "assets.delete" => reply(id, memory::delete(parse(op, a)?, s, session).await?),
        "context.mark" => reply(id, memory::mark(parse(op, a)?, s, session).await?),
        "context.rewind" => reply(id, memory::rewind(parse(op, a)?, s, session).await?),
        "context.exclude" => reply(id, memory::exclude(parse(op, a)?, s, session).await?),
        "context.summarize" => reply(id, memory::summarize(parse(op, a)?, s, session).await?),
        "context.window" => reply(id, memory::window(parse(op, a)?, s, session).await?),
        "conversation.list" => reply(
            id,
            memory::conversation_list(parse(op, a)?, s, session).await?,
        ),
        "conversation.delete" => reply(
            id,
            memory::conversation_delete(parse(op, a)?, s, session).await?,
        ),
        "conversation.search" => reply(
            id,
            memory::conversation_search(parse(op, a)?, s, session).await?,
        ),
        other => Err(Error::UnknownOp(other.to_owned())),
    }
}

/// Checks a batch size (`max` of receive and claim): 1 by default, at most `limit`.
fn check_max(max: Option<usize>, limit: usize) -> Result<usize, Error> {
    match max.unwrap_or(1) {
        n if (1..=limit).contains(&n) => Ok(n),
        _ => Err(Error::BadRequest(format!("max must be 1 to {limit}"))),
    }
}

/// Checks a `wait_ms`: 0 by default, at most `limit`.
fn check_wait(wait_ms: Option<u64>, limit: Duration) -> Result<Duration, Error> {
    check_ms("wait_ms", wait_ms.unwrap_or(0), 0, limit)
}

/// Waits for the answer of a request that may park (receive, claim): until it arrives,
/// `timeout` runs out, the session closes or the daemon shuts down. A zero `timeout` waits for
/// the actor's immediate answer; `None` leaves the deadline to the actor (a claim: one being
/// written when its wait ends is still handed over). An answer handed over at the last moment
/// is kept, never dropped with the channel (what it carries would stay in flight until it timed
/// out). `None` when the actor dropped the request (it restarted).
async fn parked<T, E>(
    mut rx: oneshot::Receiver<Result<Vec<T>, E>>,
    timeout: Option<Duration>,
    s: &Services,
    session: &Session,
) -> Option<Result<Vec<T>, E>> {
    if timeout.is_some_and(|t| t.is_zero()) {
        return rx.await.ok();
    }
    let expired = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let (mut shutdown, mut closed) = (s.shutdown.clone(), session.closed());
    tokio::select! {
        biased;
        answer = &mut rx => return answer.ok(),
        _ = expired => {}
        _ = shutdown.wait() => {}
        _ = closed.wait() => {}
    }
    rx.close();
    match rx.try_recv() {
        Ok(answer) => Some(answer),
        Err(oneshot::error::TryRecvError::Closed) => Some(Ok(Vec::new())),
        Err(oneshot::error::TryRecvError::Empty) => None,
    }
}

/// `{}`: the reply of ops that only succeed, and the args of ops that take none.
#[derive(Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}
