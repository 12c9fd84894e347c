//! The ops: one file per service, one function per op, and the table that maps `op` strings to
//! them. Each op takes its typed args (wire structs, converted to domain types here) and returns
//! a serializable reply; errors become error frames in [`dispatch`].

mod agents;
mod cache;
mod daemon;
mod debug;
pub mod hello;
mod mailbox;
mod pubsub;
mod storage;
mod telemetry;

use crate::error::Error;
use crate::services::Services;
use crate::session::Session;
use chrono::{DateTime, SecondsFormat, Utc};
use ikigai_protocol::{encode_err, encode_ok, from_value, Request, Value};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Runs one request and returns the response frame.
pub async fn dispatch(req: Request, services: &Services, session: &Session) -> Vec<u8> {
    let Request { id, op, args } = req;
    match route(id, &op, args, services, session).await {
        Ok(frame) => frame,
        Err(e) => encode_err(id, &e.to_body(&op)),
    }
}

async fn route(
    id: u64,
    op: &str,
    a: Value,
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
        "cache.get" => reply(id, cache::get(parse(op, a)?, s, session).await?),
        "cache.get_many" => reply(id, cache::get_many(parse(op, a)?, s, session).await?),
        "cache.set" => reply(id, cache::set(parse(op, a)?, s, session).await?),
        "cache.delete" => reply(id, cache::delete(parse(op, a)?, s, session).await?),
        "cache.incr" => reply(id, cache::incr(parse(op, a)?, s, session).await?),
        "pubsub.publish" => reply(id, pubsub::publish(parse(op, a)?, s).await?),
        "pubsub.subscribe" => reply(id, pubsub::subscribe(parse(op, a)?, s, session).await?),
        "pubsub.unsubscribe" => reply(id, pubsub::unsubscribe(parse(op, a)?, s, session).await?),
        "storage.put" => reply(id, storage::put(parse(op, a)?, s, session).await?),
        "storage.get" => reply(id, storage::get(parse(op, a)?, s, session).await?),
        "storage.delete" => reply(id, storage::delete(parse(op, a)?, s, session).await?),
        "storage.list" => reply(id, storage::list(parse(op, a)?, s, session).await?),
        "telemetry.emit" => reply(id, telemetry::emit(parse(op, a)?, s, session)?),
        "telemetry.query" => reply(id, telemetry::query(parse(op, a)?, s, session).await?),
        "agents.token" => reply(id, agents::token(parse(op, a)?, s, session).await?),
        "debug.panic_mailbox" => reply(id, debug::panic_mailbox(parse(op, a)?, s, session)?),
        "hello" => Err(Error::BadRequest(
            "this connection is already authenticated".into(),
        )),
        other => Err(Error::UnknownOp(other.to_owned())),
    }
}

/// Parses a request's args into the op's argument struct.
fn parse<T: DeserializeOwned>(op: &str, args: Value) -> Result<T, Error> {
    from_value(args).map_err(|e| Error::BadRequest(format!("{op}: {e}")))
}

fn reply<T: Serialize>(id: u64, value: T) -> Result<Vec<u8>, Error> {
    encode_ok(id, &value).map_err(|e| Error::Internal(e.to_string()))
}

/// Refuses unless the session is the operator.
fn require_admin(session: &Session, what: &str) -> Result<(), Error> {
    if session.is_admin() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!("only admin may {what}")))
    }
}

/// Checks a name-like string argument: 1 to `max` bytes, no U+0000.
fn check_text(what: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() || value.len() > max || value.contains('\0') {
        return Err(Error::BadRequest(format!(
            "{what} must be 1 to {max} bytes without U+0000"
        )));
    }
    Ok(())
}

/// A timestamp as it travels: RFC 3339, UTC, microseconds.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an RFC 3339 timestamp argument.
fn parse_time(s: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::BadRequest(format!("{s:?} is not an RFC 3339 timestamp: {e}")))
}

/// `{}`: the reply of ops that only succeed.
#[derive(Serialize)]
struct Empty {}
