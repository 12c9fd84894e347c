//! What the registry keeps durably: one [`Entry`] per deployed agent, behind [`RegistryStore`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ikigai_actors::store::StoreError;

/// The seed's `status`: what the supervisor is doing with an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Supervised: kept running (also while it waits to be restarted, and across a daemon
    /// restart, which starts it again).
    Running,
    /// Stopped by an operator, or exited under a restart rule that does not restart it.
    Stopped,
    /// Restarted more than `max_restarts` times in `restart_window_s`; no longer restarted.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
        }
    }

    /// Parses a stored status; anything unknown reads as `stopped` (never started by mistake).
    pub fn parse(s: &str) -> Status {
        match s {
            "running" => Status::Running,
            "failed" => Status::Failed,
            _ => Status::Stopped,
        }
    }
}

/// An OS process, named so that a reused pid is not mistaken for it: the pid and its start
/// time in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: i32,
    pub started_at: u64,
}

/// One row of `agent_registry`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub version: String,
    pub manifest: serde_json::Value,
    pub deployed_at: Option<DateTime<Utc>>,
    pub status: Status,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Host name of the supervising daemon.
    pub server: Option<String>,
    /// `.ikigai/daemon.id` of the supervising daemon's root.
    pub daemon_id: Option<String>,
    /// The process it runs, while it runs.
    pub process: Option<ProcessId>,
    pub restarts: u32,
}

/// Where a new deployment is recorded: the supervising daemon.
#[derive(Debug, Clone)]
pub struct Owner {
    pub server: String,
    pub daemon_id: String,
}

/// Durable storage of the registry.
#[async_trait]
pub trait RegistryStore: Send + Sync + 'static {
    /// Records a (re)deployment: version and manifest, `running`, no process, no restarts.
    async fn deploy(
        &self,
        name: &str,
        version: &str,
        manifest: &serde_json::Value,
        owner: &Owner,
    ) -> Result<(), StoreError>;

    async fn get(&self, name: &str) -> Result<Option<Entry>, StoreError>;

    /// Every entry, by name.
    async fn list(&self) -> Result<Vec<Entry>, StoreError>;

    async fn set_status(&self, name: &str, status: Status) -> Result<(), StoreError>;

    /// Records the process now running (or none) and the restart count.
    async fn set_process(
        &self,
        name: &str,
        process: Option<ProcessId>,
        restarts: u32,
    ) -> Result<(), StoreError>;

    /// Sets `last_heartbeat` to now; false when there is no such entry.
    async fn heartbeat(&self, name: &str) -> Result<bool, StoreError>;

    async fn remove(&self, name: &str) -> Result<(), StoreError>;
}
