//! Agent identities in Postgres: token hashes and the agent each one proves.

use super::store_error;
use deadpool_postgres::Pool;
use ikigai_actors::store::StoreError;

/// Records that `token_hash` proves `agent`.
pub async fn insert_token(pool: &Pool, agent: &str, token_hash: &str) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    client
        .execute(
            "INSERT INTO agent_token (token_hash, agent_name) VALUES ($1, $2) \
             ON CONFLICT (token_hash) DO NOTHING",
            &[&token_hash, &agent],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The agent a token hash proves, unless it is unknown or revoked.
pub async fn agent_of(pool: &Pool, token_hash: &str) -> Result<Option<String>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let row = client
        .query_opt(
            "SELECT agent_name FROM agent_token WHERE token_hash = $1 AND revoked_at IS NULL",
            &[&token_hash],
        )
        .await
        .map_err(store_error)?;
    row.map(|r| r.try_get(0))
        .transpose()
        .map_err(super::rows::undecodable)
}

/// Revokes every token of `agent` and, given one, records `token_hash` as its only valid token,
/// in one transaction.
pub async fn replace_tokens(
    pool: &Pool,
    agent: &str,
    token_hash: Option<&str>,
) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(store_error)?;
    let tx = client.transaction().await.map_err(store_error)?;
    tx.execute(
        "UPDATE agent_token SET revoked_at = now() WHERE agent_name = $1 AND revoked_at IS NULL",
        &[&agent],
    )
    .await
    .map_err(store_error)?;
    if let Some(hash) = token_hash {
        tx.execute(
            "INSERT INTO agent_token (token_hash, agent_name) VALUES ($1, $2)",
            &[&hash, &agent],
        )
        .await
        .map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)
}
