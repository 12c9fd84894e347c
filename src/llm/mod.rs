//! LLM access through the daemon: the service facade (`Llm`) that ops call. It owns the router
//! (providers and their keys), the interaction log, the threads, the custom tool calls waiting
//! for their agent, and a short-lived cache of agents' LLM permissions.
//!
//! `config` parses `[llm]`; `provider` holds the normalised types and the OpenAI and Anthropic
//! adapters; `route` retries and fails over; `price` prices usage; `quota` reserves and settles
//! tokens; `prompt` runs the tool loop (telling the agent of deltas and custom tool calls as
//! `PromptEvent`s, which `cmd` pushes); `tools` the platform tools;
//! `log` writes `llm_interactions`. Memory and context: `thread` the thread actors, `context`
//! the view each holds, `window` fits it into the window, `summary` writes summaries, `assets`
//! the stored assets, `memory` the ops on them.

pub mod assets;
pub mod config;
pub mod context;
pub mod log;
pub mod memory;
mod price;
mod prompt;
pub mod provider;
pub mod quota;
mod route;
mod summary;
pub mod thread;
pub mod tokenizer;
mod tools;
pub mod window;

pub use prompt::{Events, Prompt, PromptEvent, PromptReply};
pub use route::RouteError;

use crate::agents::store::RegistryStore;
use crate::manifest::{LlmPermissions, Manifest};
use crate::postgres;
use assets::Assets;
use config::LlmConfig;
use deadpool_postgres::Pool;
use ikigai_actors::store::StoreError;
use log::InteractionLog;
use quota::Quotas;
use route::Router;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thread::Threads;
use tokio::sync::oneshot;
use uuid::Uuid;
use window::Calibration;

/// How long an agent's permissions are reused before they are read again (a redeploy that
/// changes them takes effect within this time).
const PERMISSIONS_TTL: Duration = Duration::from_secs(1);

/// Why an LLM op failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{message}")]
    QuotaExceeded {
        message: String,
        retry_after_ms: u64,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotConfigured(String),
    #[error("{0}")]
    Conflict(String),
    /// A passing failure of the daemon's own making (an empty summary, say).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Provider(#[from] RouteError),
    #[error("{0}")]
    ToolTimeout(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

/// An agent's answer to a custom tool call.
pub struct ToolResult {
    pub content: String,
    pub is_error: bool,
}

/// What an agent may do with models, as its manifest says (cached).
#[derive(Clone)]
struct Grant {
    llm: Option<LlmPermissions>,
    deploy_agent: bool,
    read_at: Instant,
}

pub struct Llm {
    config: LlmConfig,
    /// Where agents' manifests (and so their permissions) are read.
    registry: Arc<dyn RegistryStore>,
    router: Router,
    pool: Pool,
    log: InteractionLog,
    threads: Threads,
    assets: Assets,
    calibration: Calibration,
    /// Each agent's default thread, once known.
    defaults: RefCell<HashMap<String, Uuid>>,
    quotas: Quotas,
    grants: RefCell<HashMap<String, Grant>>,
    /// Custom tool calls waiting for `llm.tool_result`, by (agent, call id).
    waiting: RefCell<HashMap<(String, String), oneshot::Sender<ToolResult>>>,
}

impl Llm {
    /// Builds the service; starts the log writer on the current thread.
    pub fn start(
        config: LlmConfig,
        pool: Pool,
        registry: Arc<dyn RegistryStore>,
    ) -> Result<Llm, String> {
        Ok(Llm {
            registry,
            router: Router::new(&config)?,
            log: InteractionLog::start(pool.clone()),
            threads: Threads::new(pool.clone(), config.thread_idle, config.largest_context()),
            assets: Assets::new(pool.clone()),
            calibration: Calibration::default(),
            defaults: RefCell::default(),
            quotas: Quotas::new(pool.clone(), config.reservation_ttl),
            config,
            pool,
            grants: RefCell::default(),
            waiting: RefCell::default(),
        })
    }

    /// Thread actors running now (threads in use, their history in memory).
    pub fn threads_running(&self) -> usize {
        self.threads.running()
    }

    /// Waits until every interaction logged so far is written.
    pub async fn flush(&self) {
        self.log.flush().await;
    }

    pub async fn create_thread(
        &self,
        agent: &str,
        context: Option<String>,
    ) -> Result<Uuid, LlmError> {
        self.threads.create(agent, context).await
    }

    /// Hands an agent's answer to the prompt waiting for it.
    pub fn tool_result(
        &self,
        agent: &str,
        call_id: &str,
        result: ToolResult,
    ) -> Result<(), LlmError> {
        let key = (agent.to_owned(), call_id.to_owned());
        let waiting = self.waiting.borrow_mut().remove(&key);
        match waiting.map(|w| w.send(result)) {
            Some(Ok(())) => Ok(()),
            _ => Err(LlmError::NotFound(format!(
                "no tool call {call_id:?} is waiting for a result"
            ))),
        }
    }

    /// The agent's own interactions, newest first (for the `query_telemetry` tool).
    pub async fn interactions(
        &self,
        agent: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
        text: Option<&str>,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, LlmError> {
        self.log.flush().await;
        Ok(postgres::llm::recent(&self.pool, agent, since, text, limit).await?)
    }

    /// Tokens and cost per agent and model over the last `since`.
    pub async fn usage(&self, since: Duration) -> Result<Vec<serde_json::Value>, LlmError> {
        Ok(postgres::llm::usage(&self.pool, since).await?)
    }

    /// The agent's permissions, read from its manifest at most every `PERMISSIONS_TTL`.
    /// The model of a prompt that names none: the first of the agent's manifest's
    /// `permissions.llm.models`, else `[llm] default_model`.
    pub async fn default_model(&self, agent: &str) -> Result<String, LlmError> {
        let grant = self.grant(agent).await?;
        let listed = grant.llm.and_then(|llm| llm.models.into_iter().next());
        listed
            .or_else(|| self.config.default_model.clone())
            .ok_or_else(|| {
                LlmError::BadRequest(format!(
                    "no model given, and {agent:?} has no default: name a model, list models in \
                 the manifest's permissions.llm.models, or set [llm] default_model"
                ))
            })
    }

    async fn grant(&self, agent: &str) -> Result<Grant, LlmError> {
        let cached = self.grants.borrow().get(agent).cloned();
        if let Some(g) = cached.filter(|g| g.read_at.elapsed() < PERMISSIONS_TTL) {
            return Ok(g);
        }
        let entry = self.registry.get(agent).await?;
        let manifest = entry.map(|e| Manifest::from_value(&e.manifest)).transpose();
        let manifest = manifest.map_err(|e| {
            LlmError::PermissionDenied(format!("the manifest of {agent:?} is invalid: {e}"))
        })?;
        let grant = Grant {
            llm: manifest.as_ref().and_then(|m| m.permissions.llm.clone()),
            deploy_agent: manifest.is_some_and(|m| m.permissions.deploy_agent),
            read_at: Instant::now(),
        };
        self.grants
            .borrow_mut()
            .insert(agent.to_owned(), grant.clone());
        Ok(grant)
    }
}
