//! The SQL of stored assets (`llm_asset`): one row per version of an agent's label, a deletion
//! being a version of its own; `llm_asset_current` is the newest live version of each. Writes
//! read the current version and add the next one under a per-agent advisory lock, so that
//! concurrent writers (on any daemon) never lose an update.

use super::rows::undecodable;
use super::store_error;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use ikigai_actors::store::StoreError;
use tokio_postgres::Row;

/// One version of an asset.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub label: String,
    pub version: i32,
    pub value: String,
    pub limit: u32,
    pub description: Option<String>,
    pub deleted: bool,
    pub at: DateTime<Utc>,
}

/// What a write stores as the next version.
pub struct Next {
    pub value: String,
    pub limit: u32,
    pub description: Option<String>,
    pub deleted: bool,
    /// A new incarnation of the label (create): it goes last in prompt order.
    pub reborn: bool,
}

const COLUMNS: &str = "label, version, value, limit_chars, description, deleted, created_at";

fn version(row: &Row) -> Result<Version, StoreError> {
    let limit: i32 = row.try_get(3).map_err(undecodable)?;
    Ok(Version {
        label: row.try_get(0).map_err(undecodable)?,
        version: row.try_get(1).map_err(undecodable)?,
        value: row.try_get(2).map_err(undecodable)?,
        limit: limit as u32,
        description: row.try_get(4).map_err(undecodable)?,
        deleted: row.try_get(5).map_err(undecodable)?,
        at: row.try_get(6).map_err(undecodable)?,
    })
}

/// The agent's live assets in prompt order.
pub async fn list(pool: &Pool, agent: &str) -> Result<Vec<Version>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let sql =
        format!("SELECT {COLUMNS} FROM llm_asset_current WHERE agent = $1 ORDER BY born, label");
    let rows = client.query(&sql, &[&agent]).await.map_err(store_error)?;
    rows.iter().map(version).collect()
}

/// The label's versions, newest first, at most `limit` (the current one included).
pub async fn versions(
    pool: &Pool,
    agent: &str,
    label: &str,
    limit: u32,
) -> Result<Vec<Version>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM llm_asset WHERE agent = $1 AND label = $2 \
         ORDER BY version DESC LIMIT $3"
    );
    let rows = client
        .query(&sql, &[&agent, &label, &i64::from(limit)])
        .await
        .map_err(store_error)?;
    rows.iter().map(version).collect()
}

/// Adds the label's next version as `decide` says, given its newest version (live or deleted)
/// and how many live assets the agent has; `decide` refusing writes nothing.
pub async fn write<E: From<StoreError>>(
    pool: &Pool,
    agent: &str,
    label: &str,
    decide: impl FnOnce(Option<&Version>, usize) -> Result<Next, E>,
) -> Result<Version, E> {
    let mut client = pool.get().await.map_err(store_error)?;
    let tx = client.transaction().await.map_err(store_error)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('ikigai.asset'), hashtext($1))",
        &[&agent],
    )
    .await
    .map_err(store_error)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM llm_asset WHERE agent = $1 AND label = $2 \
         ORDER BY version DESC LIMIT 1"
    );
    let newest = tx
        .query_opt(&sql, &[&agent, &label])
        .await
        .map_err(store_error)?;
    let newest = newest.as_ref().map(version).transpose()?;
    let live = tx
        .query_one(
            "SELECT count(*) FROM llm_asset_current WHERE agent = $1",
            &[&agent],
        )
        .await
        .map_err(store_error)?;
    let live: i64 = live.try_get(0).map_err(undecodable)?;
    let next = decide(newest.as_ref(), live as usize)?;
    let number = newest.as_ref().map_or(1, |v| v.version + 1);
    let sql = format!(
        "INSERT INTO llm_asset (agent, label, version, value, limit_chars, description, \
         deleted, born) VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8 THEN now() ELSE \
         (SELECT born FROM llm_asset WHERE agent = $1 AND label = $2 AND version = $3 - 1) END) \
         RETURNING {COLUMNS}"
    );
    let row = tx
        .query_one(
            &sql,
            &[
                &agent,
                &label,
                &number,
                &next.value,
                &(next.limit as i32),
                &next.description,
                &next.deleted,
                &next.reborn,
            ],
        )
        .await
        .map_err(store_error)?;
    let written = version(&row)?;
    tx.commit().await.map_err(store_error)?;
    Ok(written)
}
