//! `tx.begin`, `tx.commit` and `tx.rollback`, and the `tx` argument of the ops that may run
//! inside a transaction (see `crate::tx`).

use super::Empty;
use crate::error::Error;
use crate::services::Services;
use crate::session::Session;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Serialize)]
pub struct Begun {
    tx: String,
    /// It is rolled back if still open after this long.
    timeout_ms: u64,
}

pub async fn begin(s: &Services, session: &Session) -> Result<Begun, Error> {
    let limit = s.config.daemon.tx_timeout;
    let id = session.txs.begin(s, limit).await?;
    Ok(Begun {
        tx: id.to_string(),
        timeout_ms: limit.as_millis() as u64,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxArgs {
    tx: String,
}

pub async fn commit(args: TxArgs, s: &Services, session: &Session) -> Result<Empty, Error> {
    let outcomes = session.txs.commit(parse(&args.tx)?).await?;
    outcomes.apply(s, session.id).await;
    Ok(Empty {})
}

pub async fn rollback(args: TxArgs, session: &Session) -> Result<Empty, Error> {
    session.txs.rollback(parse(&args.tx)?).await?;
    Ok(Empty {})
}

/// Parses a `tx` argument.
pub fn parse(tx: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(tx).map_err(|_| Error::BadRequest(format!("tx {tx:?} is not a transaction id")))
}
