//! `storage.put`, `storage.get`, `storage.delete` and `storage.list`: the caller's documents.
//!
//! Every agent has its own namespace (its name), which `admin` may name with `agent`; keys are 1
//! to 1024 bytes without U+0000.

use super::{check_text, timestamp};
use crate::error::Error;
use crate::services::Services;
use crate::session::Session;
use ikigai_actors::storage::{Document, DocumentWrite, DocumentWritten, ListQuery, Page};
use ikigai_protocol::Json;
use serde::{Deserialize, Serialize};

const MAX_KEY: usize = 1024;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutArgs {
    key: String,
    value: Json,
    if_version: Option<i64>,
    tx: Option<String>,
    agent: Option<String>,
}

#[derive(Serialize)]
pub struct Version {
    version: i64,
}

pub async fn put(args: PutArgs, s: &Services, session: &Session) -> Result<Version, Error> {
    check_text("key", &args.key, MAX_KEY)?;
    check_version(args.if_version)?;
    let write = DocumentWrite::Put {
        namespace: super::namespace(args.agent.as_deref(), session)?.to_owned(),
        key: args.key,
        value: args.value.0,
        if_version: args.if_version,
    };
    match apply(write, args.tx.as_deref(), s, session).await? {
        DocumentWritten::Put(version) => Ok(Version { version }),
        DocumentWritten::Deleted(_) => Err(Error::Internal("a put answered as a delete".into())),
    }
}

/// Applies `write`: inside transaction `tx` when given, else at once.
async fn apply(
    write: DocumentWrite,
    tx: Option<&str>,
    s: &Services,
    session: &Session,
) -> Result<DocumentWritten, Error> {
    match tx {
        None => Ok(s.documents.write(&write).await?),
        Some(tx) => session.txs.document(s, super::tx::parse(tx)?, write).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyArgs {
    key: String,
    agent: Option<String>,
}

#[derive(Serialize)]
pub struct Got {
    document: Option<WireDocument>,
}

pub async fn get(args: KeyArgs, s: &Services, session: &Session) -> Result<Got, Error> {
    check_text("key", &args.key, MAX_KEY)?;
    let document = s
        .documents
        .get(super::namespace(args.agent.as_deref(), session)?, &args.key)
        .await?;
    Ok(Got {
        document: document.map(WireDocument::from),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    key: String,
    if_version: Option<i64>,
    tx: Option<String>,
    agent: Option<String>,
}

#[derive(Serialize)]
pub struct Deleted {
    deleted: bool,
}

pub async fn delete(args: DeleteArgs, s: &Services, session: &Session) -> Result<Deleted, Error> {
    check_text("key", &args.key, MAX_KEY)?;
    check_version(args.if_version)?;
    let write = DocumentWrite::Delete {
        namespace: super::namespace(args.agent.as_deref(), session)?.to_owned(),
        key: args.key,
        if_version: args.if_version,
    };
    match apply(write, args.tx.as_deref(), s, session).await? {
        DocumentWritten::Deleted(deleted) => Ok(Deleted { deleted }),
        DocumentWritten::Put(_) => Err(Error::Internal("a delete answered as a put".into())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    prefix: Option<String>,
    limit: Option<usize>,
    after: Option<String>,
    agent: Option<String>,
}

#[derive(Serialize)]
pub struct Listed {
    documents: Vec<WireDocument>,
    next: Option<String>,
}

pub async fn list(args: ListArgs, s: &Services, session: &Session) -> Result<Listed, Error> {
    let limit = args.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::BadRequest(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let query = ListQuery {
        prefix: args.prefix.unwrap_or_default(),
        after: args.after,
        limit,
    };
    let rows = s
        .documents
        .list(super::namespace(args.agent.as_deref(), session)?, &query)
        .await?;
    let Page { documents, next } = Page::from_rows(rows, limit);
    Ok(Listed {
        documents: documents.into_iter().map(WireDocument::from).collect(),
        next,
    })
}

fn check_version(if_version: Option<i64>) -> Result<(), Error> {
    match if_version {
        Some(v) if v < 0 => Err(Error::BadRequest("if_version must be at least 0".into())),
        _ => Ok(()),
    }
}

#[derive(Serialize)]
struct WireDocument {
    key: String,
    value: serde_json::Value,
    version: i64,
    updated_at: String,
}

impl From<Document> for WireDocument {
    fn from(d: Document) -> Self {
        WireDocument {
            key: d.key,
            value: d.value,
            version: d.version,
            updated_at: timestamp(d.updated_at),
        }
    }
}
