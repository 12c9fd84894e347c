//! `hello {protocol, agent, token}`: the first request of every connection.

use super::parse;
use crate::admission::{Admission, Peer};
use crate::error::Error;
use crate::services::Services;
use crate::session::Session;
use ikigai_protocol::{encode_err, encode_ok, Request, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hello {
    protocol: u32,
    agent: String,
    token: String,
}

#[derive(Serialize)]
struct Welcome<'a> {
    protocol: u32,
    daemon: &'static str,
    version: &'static str,
    session: &'a str,
}

/// How an unauthenticated request ended.
pub enum Outcome {
    /// Authenticated: the session, its `max_connections` slot and the reply frame.
    Welcome(Box<Session>, OwnedSemaphorePermit, Vec<u8>),
    /// Answered with an error; the connection stays open for another try.
    Refused(Vec<u8>),
    /// A wrong token: answered, and the connection must close.
    Rejected(Vec<u8>),
}

/// Answers one request of an unauthenticated connection from `peer`. A `hello` waits out the
/// delay the peer's failed `hello`s earned before its token is checked.
pub async fn authenticate(
    req: &Request,
    services: &Services,
    admission: &Admission,
    peer: Peer,
) -> Outcome {
    let err = |e: Error| encode_err(req.id, &e.to_body(&req.op));
    if req.op != "hello" {
        let e = Error::Unauthenticated(format!("{} before hello: send hello first", req.op));
        return Outcome::Refused(err(e));
    }
    let hello: Hello = match parse(&req.op, req.args.clone()) {
        Ok(h) => h,
        Err(e) => return Outcome::Refused(err(e)),
    };
    if hello.protocol != PROTOCOL_VERSION {
        let e = Error::BadRequest(format!(
            "protocol {} is not supported; this daemon speaks {PROTOCOL_VERSION}",
            hello.protocol
        ));
        return Outcome::Refused(err(e));
    }
    admission.delay(peer).await;
    match services.identities.verify(&hello.agent, &hello.token).await {
        Ok(true) => {
            let Some(slot) = admission.slot() else {
                let e = Error::Unavailable(format!(
                    "the daemon serves its limit of {} authenticated connections; retry later",
                    services.config.daemon.max_connections
                ));
                return Outcome::Refused(err(e));
            };
            admission.succeeded(peer);
            let session = Session::new(hello.agent);
            let id = session.id.to_string();
            let welcome = Welcome {
                protocol: PROTOCOL_VERSION,
                daemon: "ikigai",
                version: env!("CARGO_PKG_VERSION"),
                session: &id,
            };
            match encode_ok(req.id, &welcome) {
                Ok(frame) => Outcome::Welcome(Box::new(session), slot, frame),
                Err(e) => Outcome::Refused(err(Error::Internal(e.to_string()))),
            }
        }
        Ok(false) => {
            admission.failed(peer);
            let e = Error::Unauthenticated(format!("wrong token for agent {:?}", hello.agent));
            Outcome::Rejected(err(e))
        }
        Err(e) => Outcome::Refused(err(e.into())),
    }
}
