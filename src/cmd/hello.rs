//! `hello {protocol, agent, token}`: the first request of every connection.

use super::parse;
use crate::error::Error;
use crate::services::Services;
use crate::session::Session;
use ikigai_protocol::{encode_err, encode_ok, Request, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};

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
    /// Authenticated: the session and the reply frame.
    Welcome(Session, Vec<u8>),
    /// Answered with an error; the connection stays open for another try.
    Refused(Vec<u8>),
    /// A wrong token: answered, and the connection must close.
    Rejected(Vec<u8>),
}

pub async fn authenticate(req: &Request, services: &Services) -> Outcome {
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
    match services.identities.verify(&hello.agent, &hello.token).await {
        Ok(true) => {
            let session = Session::new(hello.agent);
            let id = session.id.to_string();
            let welcome = Welcome {
                protocol: PROTOCOL_VERSION,
                daemon: "ikigai",
                version: env!("CARGO_PKG_VERSION"),
                session: &id,
            };
            match encode_ok(req.id, &welcome) {
                Ok(frame) => Outcome::Welcome(session, frame),
                Err(e) => Outcome::Refused(err(Error::Internal(e.to_string()))),
            }
        }
        Ok(false) => {
            let e = Error::Unauthenticated(format!("wrong token for agent {:?}", hello.agent));
            Outcome::Rejected(err(e))
        }
        Err(e) => Outcome::Refused(err(e.into())),
    }
}
