//! Typed calls for document storage: `client.storage().put/get/delete/list`, in the caller's
//! namespace, with optimistic versions.

use crate::{Client, ClientError};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A stored document.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Document {
    pub key: String,
    pub value: Json,
    pub version: i64,
    pub updated_at: String,
}

/// Which documents `storage.list` returns; unset fields take the daemon's defaults.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListDocuments<'a> {
    pub prefix: Option<&'a str>,
    pub limit: Option<u32>,
    /// The previous page's `next`.
    pub after: Option<&'a str>,
}

/// A page of `storage.list`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocumentPage {
    pub documents: Vec<Document>,
    pub next: Option<String>,
}

/// The caller's documents, as `client.storage()` or, inside a transaction, `tx.storage()`
/// gives them: `put` and `delete` then run inside it; `get` and `list` never do.
#[derive(Clone, Copy)]
pub struct Storage<'a> {
    pub(crate) client: &'a Client,
    pub(crate) tx: Option<&'a str>,
}

#[derive(Serialize)]
struct Key<'a> {
    key: &'a str,
}

impl Storage<'_> {
    /// Writes `value` at `key`; returns the new version.
    pub async fn put(&self, key: &str, value: &Json) -> Result<i64, ClientError> {
        self.put_if_version(key, value, None).await
    }

    /// Writes only if the stored version is `if_version` (`Some(0)`: only if absent), else
    /// `conflict`.
    pub async fn put_if_version(
        &self,
        key: &str,
        value: &Json,
        if_version: Option<i64>,
    ) -> Result<i64, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            key: &'a str,
            value: &'a Json,
            if_version: Option<i64>,
            tx: Option<&'a str>,
        }
        #[derive(Deserialize)]
        struct Version {
            version: i64,
        }
        let args = Args {
            key,
            value,
            if_version,
            tx: self.tx,
        };
        let put: Version = self.client.call("storage.put", &args).await?;
        Ok(put.version)
    }

    /// The document at `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Document>, ClientError> {
        #[derive(Deserialize)]
        struct Got {
            document: Option<Document>,
        }
        let got: Got = self.client.call("storage.get", &Key { key }).await?;
        Ok(got.document)
    }

    /// Deletes `key`; false when it did not exist.
    pub async fn delete(&self, key: &str) -> Result<bool, ClientError> {
        self.delete_if_version(key, None).await
    }

    /// Deletes only if the stored version is `if_version`, else `conflict`.
    pub async fn delete_if_version(
        &self,
        key: &str,
        if_version: Option<i64>,
    ) -> Result<bool, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            key: &'a str,
            if_version: Option<i64>,
            tx: Option<&'a str>,
        }
        #[derive(Deserialize)]
        struct Deleted {
            deleted: bool,
        }
        let args = Args {
            key,
            if_version,
            tx: self.tx,
        };
        let got: Deleted = self.client.call("storage.delete", &args).await?;
        Ok(got.deleted)
    }

    /// A page of documents in key order.
    pub async fn list(&self, which: &ListDocuments<'_>) -> Result<DocumentPage, ClientError> {
        self.client.call("storage.list", which).await
    }
}

impl Client {
    /// The caller's document namespace.
    pub fn storage(&self) -> Storage<'_> {
        Storage {
            client: self,
            tx: None,
        }
    }
}
