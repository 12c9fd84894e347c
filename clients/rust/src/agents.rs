//! Typed calls for the agent registry: `client.agents().deploy/list/get/start/stop/restart/
//! undeploy/heartbeat/token`.

use crate::{Client, ClientError};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A registry entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AgentEntry {
    pub name: String,
    pub version: String,
    /// `running`, `stopped` or `failed`.
    pub status: String,
    pub deployed_at: Option<String>,
    pub last_heartbeat: Option<String>,
    pub server: Option<String>,
    pub daemon_id: Option<String>,
    pub pid: Option<i32>,
    pub restarts: u32,
    /// The manifest with defaults filled in (`env` values redacted for other agents).
    pub manifest: Json,
}

/// A file of a service directory to deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentFile {
    /// Relative, without `..`.
    pub path: String,
    /// The contents, hex-encoded.
    pub hex: String,
    pub executable: bool,
}

impl AgentFile {
    /// A file with these contents.
    pub fn new(path: &str, contents: &[u8], executable: bool) -> AgentFile {
        use std::fmt::Write;
        let hex = contents.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        AgentFile {
            path: path.into(),
            hex,
            executable,
        }
    }
}

/// What `agents.deploy` recorded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Deployed {
    pub name: String,
    pub version: String,
}

/// An agent's token, from `agents.token`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AgentToken {
    pub agent: String,
    pub token: String,
}

/// The agent registry, as `client.agents()` gives it.
#[derive(Clone, Copy)]
pub struct Agents<'a> {
    client: &'a Client,
}

#[derive(Serialize)]
struct Name<'a> {
    name: &'a str,
}

impl Agents<'_> {
    /// Deploys `manifest`, with `files` as its service directory (`None`: the directory is
    /// already in place).
    pub async fn deploy(
        &self,
        manifest: &Json,
        files: Option<&[AgentFile]>,
    ) -> Result<Deployed, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            manifest: &'a Json,
            files: Option<&'a [AgentFile]>,
        }
        self.client
            .call("agents.deploy", &Args { manifest, files })
            .await
    }

    /// Every entry, by name.
    pub async fn list(&self) -> Result<Vec<AgentEntry>, ClientError> {
        #[derive(Deserialize)]
        struct List {
            agents: Vec<AgentEntry>,
        }
        let list: List = self
            .client
            .call("agents.list", &serde_json::json!({}))
            .await?;
        Ok(list.agents)
    }

    /// The entry of `name`.
    pub async fn get(&self, name: &str) -> Result<AgentEntry, ClientError> {
        self.client.call("agents.get", &Name { name }).await
    }

    /// Marks `name` running and starts it.
    pub async fn start(&self, name: &str) -> Result<(), ClientError> {
        self.client.call_unit("agents.start", &Name { name }).await
    }

    /// Marks `name` stopped and stops its process.
    pub async fn stop(&self, name: &str) -> Result<(), ClientError> {
        self.client.call_unit("agents.stop", &Name { name }).await
    }

    /// Stops `name`'s process if it runs, then starts it.
    pub async fn restart(&self, name: &str) -> Result<(), ClientError> {
        self.client
            .call_unit("agents.restart", &Name { name })
            .await
    }

    /// Stops `name`, removes its entry, tokens and directory.
    pub async fn undeploy(&self, name: &str) -> Result<(), ClientError> {
        self.client
            .call_unit("agents.undeploy", &Name { name })
            .await
    }

    /// Tells the supervisor the caller is alive.
    pub async fn heartbeat(&self) -> Result<(), ClientError> {
        let args = serde_json::json!({});
        self.client.call_unit("agents.heartbeat", &args).await
    }

    /// A token of agent `name` (`admin` only).
    pub async fn token(&self, name: &str) -> Result<AgentToken, ClientError> {
        self.client.call("agents.token", &Name { name }).await
    }
}

impl Client {
    /// The agent registry.
    pub fn agents(&self) -> Agents<'_> {
        Agents { client: self }
    }
}
