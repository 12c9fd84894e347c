//! Storage: durable JSON documents per agent namespace, versioned for optimistic concurrency.
//!
//! Postgres is the truth and its row locks do the arbitration, so there is no actor: ops call
//! the [`DocumentStore`] directly. What is decided here is the shape of a page.

use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use thiserror::Error;

/// A stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub key: String,
    pub value: serde_json::Value,
    /// 1 on creation, +1 on every write.
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// Why a document write failed.
#[derive(Debug, Clone, Error)]
pub enum DocumentError {
    /// `if_version` did not match the stored version (0: the key must not exist).
    #[error("document {key:?} is not at version {expected}")]
    Conflict { key: String, expected: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A change to one document of a namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentWrite {
    /// Writes `value`; with `if_version`, only if the stored version is that (0: absent).
    Put {
        namespace: String,
        key: String,
        value: serde_json::Value,
        if_version: Option<i64>,
    },
    /// Deletes the document; with `if_version`, only at that version.
    Delete {
        namespace: String,
        key: String,
        if_version: Option<i64>,
    },
}

/// What a [`DocumentWrite`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentWritten {
    /// The new version.
    Put(i64),
    /// Whether the document existed.
    Deleted(bool),
}

/// Which documents `list` returns: keys starting with `prefix`, after `after`, in key order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub prefix: String,
    pub after: Option<String>,
    pub limit: usize,
}

/// One page of a listing; `next` is the `after` of the following page, if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub documents: Vec<Document>,
    pub next: Option<String>,
}

impl Page {
    /// Builds a page from up to `limit + 1` rows in key order (the extra row says "more").
    pub fn from_rows(mut rows: Vec<Document>, limit: usize) -> Page {
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = more.then(|| rows.last().map(|d| d.key.clone())).flatten();
        Page {
            documents: rows,
            next,
        }
    }
}

/// Durable storage of documents. Keys are unique per namespace (the agent's name).
#[async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    /// Applies `write`; a version that does not match is a [`DocumentError::Conflict`].
    async fn write(&self, write: &DocumentWrite) -> Result<DocumentWritten, DocumentError>;

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>, StoreError>;

    /// Up to `query.limit + 1` documents in key order (see [`Page::from_rows`]).
    async fn list(&self, namespace: &str, query: &ListQuery) -> Result<Vec<Document>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(key: &str) -> Document {
        Document {
            key: key.into(),
            value: serde_json::json!(null),
            version: 1,
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_page_names_its_successor_only_when_more_rows_exist() {
        let page = Page::from_rows(vec![doc("a"), doc("b"), doc("c")], 2);
        assert_eq!(page.documents.len(), 2);
        assert_eq!(page.next.as_deref(), Some("b"));
        let last = Page::from_rows(vec![doc("c")], 2);
        assert_eq!(last.next, None);
        assert_eq!(Page::from_rows(Vec::new(), 2).next, None);
    }
}
