//! `RegistryStore` on Postgres: the `agent_registry` table.

use super::store_error;
use crate::agents::store::{Entry, Owner, ProcessId, RegistryStore, Status};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use ikigai_actors::store::StoreError;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

const DEPLOY: &str = "\
    INSERT INTO agent_registry (name, version, manifest, deployed_at, status, server, daemon_id) \
    VALUES ($1, $2, $3, now(), 'running', $4, $5) \
    ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, manifest = EXCLUDED.manifest, \
    deployed_at = now(), status = 'running', server = EXCLUDED.server, \
    daemon_id = EXCLUDED.daemon_id, pid = NULL, pid_started_at = NULL, restarts = 0";

const SELECT: &str = "\
    SELECT name, version, manifest, deployed_at, status, last_heartbeat, server, daemon_id, pid, \
    pid_started_at, restarts FROM agent_registry";

/// The registry in Postgres.
pub struct PgRegistryStore {
    pool: Pool,
}

impl PgRegistryStore {
    pub fn new(pool: Pool) -> Self {
        PgRegistryStore { pool }
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        client.execute(sql, params).await.map_err(store_error)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Entry>, StoreError> {
        let client = self.pool.get().await.map_err(store_error)?;
        let rows = client.query(sql, params).await.map_err(store_error)?;
        rows.iter()
            .map(entry)
            .collect::<Result<_, _>>()
            .map_err(super::rows::undecodable)
    }
}

fn entry(row: &Row) -> Result<Entry, tokio_postgres::Error> {
    let pid: Option<i32> = row.try_get(8)?;
    let started_at: Option<i64> = row.try_get(9)?;
    let restarts: i32 = row.try_get(10)?;
    Ok(Entry {
        name: row.try_get(0)?,
        version: row.try_get(1)?,
        manifest: row.try_get(2)?,
        deployed_at: row.try_get(3)?,
        status: Status::parse(row.try_get::<_, Option<&str>>(4)?.unwrap_or_default()),
        last_heartbeat: row.try_get(5)?,
        server: row.try_get(6)?,
        daemon_id: row.try_get(7)?,
        process: pid.zip(started_at).map(|(pid, t)| ProcessId {
            pid,
            started_at: t as u64,
        }),
        restarts: restarts.max(0) as u32,
    })
}

#[async_trait]
impl RegistryStore for PgRegistryStore {
    async fn deploy(
        &self,
        name: &str,
        version: &str,
        manifest: &serde_json::Value,
        owner: &Owner,
    ) -> Result<(), StoreError> {
        let params: [&(dyn ToSql + Sync); 5] =
            [&name, &version, manifest, &owner.server, &owner.daemon_id];
        self.execute(DEPLOY, &params).await.map(drop)
    }

    async fn get(&self, name: &str) -> Result<Option<Entry>, StoreError> {
        let sql = format!("{SELECT} WHERE name = $1");
        Ok(self.query(&sql, &[&name]).await?.pop())
    }

    async fn list(&self) -> Result<Vec<Entry>, StoreError> {
        self.query(&format!("{SELECT} ORDER BY name"), &[]).await
    }

    async fn set_status(&self, name: &str, status: Status) -> Result<(), StoreError> {
        let sql = "UPDATE agent_registry SET status = $2 WHERE name = $1";
        self.execute(sql, &[&name, &status.as_str()])
            .await
            .map(drop)
    }

    async fn set_process(
        &self,
        name: &str,
        process: Option<ProcessId>,
        restarts: u32,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE agent_registry SET pid = $2, pid_started_at = $3, restarts = $4 \
                   WHERE name = $1";
        let pid = process.map(|p| p.pid);
        let started_at = process.map(|p| p.started_at as i64);
        let restarts = restarts.min(i32::MAX as u32) as i32;
        self.execute(sql, &[&name, &pid, &started_at, &restarts])
            .await
            .map(drop)
    }

    async fn heartbeat(&self, name: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE agent_registry SET last_heartbeat = now() WHERE name = $1";
        Ok(self.execute(sql, &[&name]).await? > 0)
    }

    async fn remove(&self, name: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM agent_registry WHERE name = $1";
        self.execute(sql, &[&name]).await.map(drop)
    }
}
