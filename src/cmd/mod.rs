//! The ops: one file per service, one function per op, and the table that maps `op` strings to
//! them. Each op takes its typed args (wire structs, converted to domain types here) and returns
//! a serializable reply; errors become error frames in [`dispatch`].

mod agents;
mod daemon;
mod debug;
pub mod hello;
mod mailbox;

use crate::error::Error;
use crate::services::Services;
use crate::session::Session;
use ikigai_protocol::{encode_err, encode_ok, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Runs one request and returns the response frame.
pub async fn dispatch(req: Request, services: &Services, session: &Session) -> Vec<u8> {
    match route(&req, services, session).await {
        Ok(frame) => frame,
        Err(e) => encode_err(req.id, &e.to_body(&req.op)),
    }
}

async fn route(req: &Request, s: &Services, session: &Session) -> Result<Vec<u8>, Error> {
    match req.op.as_str() {
        "ping" => reply(req, daemon::ping()),
        "daemon.status" => reply(req, daemon::status(s)),
        "mailbox.send" => reply(req, mailbox::send(args(req)?, s, session).await?),
        "mailbox.receive" => reply(req, mailbox::receive(args(req)?, s, session).await?),
        "mailbox.ack" => reply(req, mailbox::ack(args(req)?, s, session).await?),
        "mailbox.peek" => reply(req, mailbox::peek(args(req)?, s, session).await?),
        "mailbox.stats" => reply(req, mailbox::stats(args(req)?, s, session).await?),
        "agents.token" => reply(req, agents::token(args(req)?, s, session).await?),
        "debug.panic_mailbox" => reply(req, debug::panic_mailbox(args(req)?, s, session)?),
        "hello" => Err(Error::BadRequest(
            "this connection is already authenticated".into(),
        )),
        other => Err(Error::UnknownOp(other.to_owned())),
    }
}

/// Parses the request's args into the op's argument struct.
fn args<T: DeserializeOwned>(req: &Request) -> Result<T, Error> {
    req.args()
        .map_err(|e| Error::BadRequest(format!("{}: {e}", req.op)))
}

fn reply<T: Serialize>(req: &Request, value: T) -> Result<Vec<u8>, Error> {
    encode_ok(req.id, &value).map_err(|e| Error::Internal(e.to_string()))
}

/// Refuses unless the session is the operator.
fn require_admin(session: &Session, what: &str) -> Result<(), Error> {
    if session.is_admin() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!("only admin may {what}")))
    }
}

/// `{}`: the reply of ops that only succeed.
#[derive(Serialize)]
struct Empty {}
