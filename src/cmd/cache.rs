//! `cache.get`, `cache.get_many`, `cache.set`, `cache.delete` and `cache.incr`.
//!
//! Keys belong to the caller's namespace (its agent name) unless `shared: true` names the
//! platform-wide namespace, or `agent` (admin only) another agent's. Keys are 1 to 1024 bytes
//! without U+0000.

use super::{check_ms, check_text};
use crate::error::Error;
use crate::services::Services;
use crate::session::Session;
use crate::tx::Later;
use ikigai_protocol::Packed;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

const MAX_KEY: usize = 1024;
/// Most keys one `cache.get_many` may name.
const MAX_KEYS: usize = 1000;

/// The namespace of the keys: `""` when shared, else the caller's or the named agent's.
fn scope<'a>(shared: bool, agent: Option<&'a str>, session: &'a Session) -> Result<&'a str, Error> {
    match (shared, agent) {
        (false, agent) => super::namespace(agent, session),
        (true, None) => Ok(""),
        (true, Some(_)) => Err(Error::BadRequest("give shared or agent, not both".into())),
    }
}

/// The stored key: `<agent>/<key>`, or `/<key>` when shared (agent names never hold `/`).
fn full_key(key: &str, namespace: &str) -> Result<String, Error> {
    check_text("key", key, MAX_KEY)?;
    // Built by hand: `format!` cost ~5% of the daemon under the cache benchmark.
    let mut full = String::with_capacity(namespace.len() + 1 + key.len());
    full.push_str(namespace);
    full.push('/');
    full.push_str(key);
    Ok(full)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyArgs {
    key: String,
    #[serde(default)]
    shared: bool,
    agent: Option<String>,
}

#[derive(Serialize)]
pub struct Found {
    found: bool,
    value: Option<Packed>,
}

pub async fn get(args: KeyArgs, s: &Services, session: &Session) -> Result<Found, Error> {
    let key = full_key(
        &args.key,
        scope(args.shared, args.agent.as_deref(), session)?,
    )?;
    let value = s.cache.get(&key).await?;
    Ok(Found {
        found: value.is_some(),
        value,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManyArgs {
    keys: Vec<String>,
    #[serde(default)]
    shared: bool,
    agent: Option<String>,
}

#[derive(Serialize)]
pub struct Values {
    values: HashMap<String, Packed>,
}

pub async fn get_many(args: ManyArgs, s: &Services, session: &Session) -> Result<Values, Error> {
    if args.keys.len() > MAX_KEYS {
        return Err(Error::BadRequest(format!("at most {MAX_KEYS} keys")));
    }
    let namespace = scope(args.shared, args.agent.as_deref(), session)?;
    let keys = args
        .keys
        .iter()
        .map(|k| full_key(k, namespace))
        .collect::<Result<Vec<_>, _>>()?;
    let found = s.cache.get_many(&keys).await?;
    let values = args
        .keys
        .into_iter()
        .zip(found)
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    Ok(Values { values })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetArgs {
    key: String,
    value: Packed,
    ttl_ms: Option<u64>,
    #[serde(default)]
    shared: bool,
    agent: Option<String>,
    /// Inside a transaction the entry is set when (and only if) it commits.
    tx: Option<String>,
}

pub async fn set(args: SetArgs, s: &Services, session: &Session) -> Result<super::Empty, Error> {
    let key = full_key(
        &args.key,
        scope(args.shared, args.agent.as_deref(), session)?,
    )?;
    let ttl = args
        .ttl_ms
        .map(|ms| check_ms("ttl_ms", ms, 1, Duration::MAX))
        .transpose()?;
    let value = args.value;
    match &args.tx {
        None => s.cache.set(key, value, ttl).await?,
        Some(tx) => {
            let set = Later::CacheSet { key, value, ttl };
            session.txs.later(s, super::tx::parse(tx)?, set).await?
        }
    }
    Ok(super::Empty {})
}

#[derive(Serialize)]
pub struct Deleted {
    deleted: bool,
}

pub async fn delete(args: KeyArgs, s: &Services, session: &Session) -> Result<Deleted, Error> {
    let key = full_key(
        &args.key,
        scope(args.shared, args.agent.as_deref(), session)?,
    )?;
    let deleted = s.cache.delete(&key).await?;
    Ok(Deleted { deleted })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrArgs {
    key: String,
    by: Option<i64>,
    #[serde(default)]
    shared: bool,
    agent: Option<String>,
}

#[derive(Serialize)]
pub struct Counter {
    value: i64,
}

pub async fn incr(args: IncrArgs, s: &Services, session: &Session) -> Result<Counter, Error> {
    let key = full_key(
        &args.key,
        scope(args.shared, args.agent.as_deref(), session)?,
    )?;
    let by = args.by.unwrap_or(1);
    let value = s.cache.incr(&key, by).await?;
    Ok(Counter { value })
}
