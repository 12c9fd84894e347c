//! Applies `schema.sql` at start-up, idempotently and under an advisory lock, so several daemons
//! starting together on one database do not race.

use super::DbError;
use deadpool_postgres::Pool;

/// The schema version this build brings (the last `INSERT INTO ikigai_schema` of schema.sql).
pub const SCHEMA_VERSION: i32 = 8;

const SCHEMA: &str = include_str!("../../schema.sql");

/// Arbitrary, fixed key of the advisory lock that serialises schema application.
const SCHEMA_LOCK: i64 = 0x1_6161_6761;

pub async fn apply(pool: &Pool) -> Result<(), DbError> {
    let schema_error = |e: &dyn std::fmt::Display| DbError::Schema(e.to_string());
    let mut client = pool.get().await.map_err(|e| schema_error(&e))?;
    let tx = client.transaction().await.map_err(|e| schema_error(&e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(|e| schema_error(&e))?;
    // `DROP ... IF EXISTS` and `CREATE ... IF NOT EXISTS` notices say nothing an operator needs.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(|e| schema_error(&e))?;
    tx.batch_execute(SCHEMA)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => DbError::Schema(format!("schema.sql: {}", db.message())),
            None => schema_error(&e),
        })?;
    let newest: i32 = tx
        .query_one("SELECT max(version) FROM ikigai_schema", &[])
        .await
        .map_err(|e| schema_error(&e))?
        .get(0);
    if newest > SCHEMA_VERSION {
        return Err(DbError::Schema(format!(
            "the database has schema version {newest}, newer than this daemon's {SCHEMA_VERSION}; upgrade ikigai-daemon"
        )));
    }
    tx.commit().await.map_err(|e| schema_error(&e))
}
