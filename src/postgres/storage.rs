//! `DocumentStore` on Postgres: the `document` table.
//!
//! A [`DocumentWrite`] is applied by one function over any [`GenericClient`]: [`PgDocumentStore`]
//! runs it on a pooled connection, a unit of work (`super::unit`) inside its transaction.

use super::rows::{report, split};
use super::store_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use ikigai_actors::storage::{
    Document, DocumentError, DocumentStore, DocumentWrite, DocumentWritten, ListQuery,
};
use ikigai_actors::store::StoreError;
use serde_json::Value;
use tokio_postgres::{GenericClient, Row};

const UPSERT: &str = "\
    INSERT INTO document (namespace, key, value, version) VALUES ($1, $2, $3, 1) \
    ON CONFLICT (namespace, key) DO UPDATE \
    SET value = EXCLUDED.value, version = document.version + 1, updated_at = now() \
    RETURNING version";

const CREATE: &str = "\
    INSERT INTO document (namespace, key, value, version) VALUES ($1, $2, $3, 1) \
    ON CONFLICT (namespace, key) DO NOTHING RETURNING version";

const UPDATE: &str = "\
    UPDATE document SET value = $3, version = version + 1, updated_at = now() \
    WHERE namespace = $1 AND key = $2 AND version = $4 RETURNING version";

const DELETE: &str = "\
    DELETE FROM document WHERE namespace = $1 AND key = $2 \
    AND ($3::bigint IS NULL OR version = $3) RETURNING version";

const GET: &str = "\
    SELECT key, value, version, updated_at FROM document WHERE namespace = $1 AND key = $2";

const LIST: &str = "\
    SELECT key, value, version, updated_at FROM document \
    WHERE namespace = $1 AND key LIKE $2 AND ($3::text IS NULL OR key > $3) \
    ORDER BY key LIMIT $4";

/// Applies a document write on `client` (the pool's, or a transaction's).
pub async fn write(
    client: &impl GenericClient,
    write: &DocumentWrite,
) -> Result<DocumentWritten, DocumentError> {
    let (key, expected, outcome) = match write {
        DocumentWrite::Put {
            namespace,
            key,
            value,
            if_version,
        } => {
            let put = put(client, namespace, key, value, *if_version).await;
            (key, *if_version, put.map(|v| v.map(DocumentWritten::Put)))
        }
        DocumentWrite::Delete {
            namespace,
            key,
            if_version,
        } => {
            let deleted = delete(client, namespace, key, *if_version).await;
            (
                key,
                *if_version,
                deleted.map(|d| d.map(DocumentWritten::Deleted)),
            )
        }
    };
    outcome
        .map_err(store_error)?
        .ok_or_else(|| conflict(key, expected))
}

/// Writes a document; `None` when `if_version` did not match.
async fn put(
    client: &impl GenericClient,
    namespace: &str,
    key: &str,
    value: &Value,
    if_version: Option<i64>,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = match if_version {
        None => client.query_opt(UPSERT, &[&namespace, &key, value]).await?,
        Some(0) => client.query_opt(CREATE, &[&namespace, &key, value]).await?,
        Some(v) => {
            let args: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&namespace, &key, value, &v];
            client.query_opt(UPDATE, &args).await?
        }
    };
    row.map(|r| r.try_get(0)).transpose()
}

/// Deletes a document; `Some(true)` deleted, `Some(false)` absent, `None` version mismatch.
async fn delete(
    client: &impl GenericClient,
    namespace: &str,
    key: &str,
    if_version: Option<i64>,
) -> Result<Option<bool>, tokio_postgres::Error> {
    let deleted = client
        .query_opt(DELETE, &[&namespace, &key, &if_version])
        .await?
        .is_some();
    Ok(match (deleted, if_version) {
        (false, Some(v)) if v > 0 => None,
        (deleted, _) => Some(deleted),
    })
}

pub struct PgDocumentStore {
    pool: Pool,
}

impl PgDocumentStore {
    pub fn new(pool: Pool) -> Self {
        PgDocumentStore { pool }
    }
}

fn conflict(key: &str, expected: Option<i64>) -> DocumentError {
    DocumentError::Conflict {
        key: key.to_owned(),
        expected: expected.unwrap_or_default(),
    }
}

#[async_trait]
impl DocumentStore for PgDocumentStore {
    async fn write(&self, w: &DocumentWrite) -> Result<DocumentWritten, DocumentError> {
        let client = self.pool.get().await.map_err(store_error)?;
        write(&**client, w).await
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        let row = client
            .query_opt(GET, &[&namespace, &key])
            .await
            .map_err(store_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        document(&row).map(Some).map_err(|e| {
            report("document", &format!("{namespace}/{key}"), &e, "refused");
            StoreError::Undecodable(format!("document {key:?}: {e}"))
        })
    }

    async fn list(&self, namespace: &str, q: &ListQuery) -> Result<Vec<Document>, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        let pattern = format!("{}%", like_escape(&q.prefix));
        // One more than asked, to tell whether more follow. Rows that do not decode are
        // skipped; the page is filled from the rows after them.
        let limit = q.limit + 1;
        let (mut docs, mut after) = (Vec::with_capacity(limit), q.after.clone());
        while docs.len() < limit {
            let want = limit - docs.len();
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&namespace, &pattern, &after, &(want as i64)];
            let rows = client.query(LIST, &params).await.map_err(store_error)?;
            let (good, bad) = split(&rows, document);
            for (row, error) in &bad {
                let key = row.try_get::<_, String>(0).unwrap_or_default();
                report("document", &format!("{namespace}/{key}"), error, "skipped");
            }
            docs.extend(good);
            match rows.last().map(|r| r.try_get::<_, String>(0)) {
                Some(Ok(key)) if rows.len() == want => after = Some(key),
                _ => break,
            }
        }
        Ok(docs)
    }
}

fn document(r: &Row) -> Result<Document, tokio_postgres::Error> {
    Ok(Document {
        key: r.try_get(0)?,
        value: r.try_get(1)?,
        version: r.try_get(2)?,
        updated_at: r.try_get::<_, DateTime<Utc>>(3)?,
    })
}

/// `s` as a literal inside a LIKE pattern (default escape character `\`).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::like_escape;

    #[test]
    fn like_wildcards_in_prefixes_are_literal() {
        assert_eq!(like_escape(r"a_b%c\d"), r"a\_b\%c\\d");
    }
}
