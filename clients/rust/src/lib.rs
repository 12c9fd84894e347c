//! Rust client for agents of the Ikigai runtime: a typed call for every op of
//! `docs/protocol.md`, named as the design document's `ikigai/platform` names them.
//!
//! One [`Client`] is one connection to `ikigai-daemon`'s Unix socket. Calls are pipelined: any
//! number may be in flight at once from clones of the client, and each is matched to its response
//! by id. Pushes reach their owners: a [`Subscription`] (pub/sub), a [`PromptStream`]
//! (`llm.delta`, `llm.tool_call`); any other arrives on [`Client::next_push`].
//!
//! | Service | Calls |
//! | --- | --- |
//! | queues | `client.queue(name).push/push_task/push_many/claim/claim_one/stats/list`, `client.task(id).complete/fail/extend/release` |
//! | mailboxes | `client.mailbox(name).send/receive/ack/peek/stats`, `client.receive`, `client.mailbox_stats` |
//! | cache | `client.cache()` / `client.shared_cache()` `.get/get_many/set/set_with_ttl/delete/incr` |
//! | pub/sub | `client.pubsub().publish/subscribe` (a `Stream`), `Subscription::unsubscribe` |
//! | storage | `client.storage().put/put_if_version/get/delete/delete_if_version/list` |
//! | telemetry | `client.telemetry().emit/query` |
//! | transactions | `client.transaction(\|tx\| async move { .. })`, `client.begin()` → [`Tx`] |
//! | LLM | `client.prompt` (`if_busy`), `client.prompt_stream`, `client.tool_result`, `client.threads().create`, `client.llm_usage` |
//! | memory and context | `client.stored_assets().create/update/get/list/delete`, `client.context().mark/rewind/exclude/summarize/window().get/resize/strategy/reset`, `client.conversation().list/delete/search` (the default thread; `search`: every thread), `client.thread(id).context()/conversation()` |
//! | agents | `client.agents().deploy/list/get/start/stop/restart/undeploy/heartbeat/token` |
//! | daemon | `client.hello`, `client.ping`, `client.status`, `client.debug().panic_mailbox/panic_agent` |
//!
//! ```no_run
//! # async fn demo() -> Result<(), ikigai_client::ClientError> {
//! use serde_json::json;
//! let client = ikigai_client::Client::connect_env().await?;
//! if let Some(task) = client.queue("my-tasks").claim_one().await? {
//!     client.transaction(|tx| async move {
//!         tx.storage().put("result", &json!({"done": task.id})).await?;
//!         tx.mailbox("reviewer").send(&json!({"task": task.id})).await?;
//!         tx.task(&task.id).complete(None).await?;
//!         Ok::<_, ikigai_client::ClientError>(())
//!     }).await?;
//! }
//! client.cache().set("key", &json!(1)).await?;
//! # Ok(()) }
//! ```

mod agents;
mod cache;
mod client;
mod daemon;
mod flat;
mod llm;
mod mailbox;
mod memory;
mod pubsub;
mod queue;
mod storage;
mod telemetry;
mod tx;

pub use agents::{AgentEntry, AgentFile, AgentToken, Agents, Deployed};
pub use cache::Cache;
pub use client::{Client, ClientError, Hello, Pending, Push};
pub use daemon::{DaemonStatus, Debug};
pub use ikigai_protocol::{ErrorBody, ErrorCode};
pub use llm::{
    ChatMessage, CustomTool, IfBusy, Prompt, PromptEvent, PromptReply, PromptStream, Thread,
    Threads, ToolCall, ToolOutcome, Tools, Usage, UsageRow,
};
pub use mailbox::{Mailbox, MailboxStats, Message, Receive};
pub use memory::{
    Age, AssetChanges, AssetVersion, AssetWithHistory, Context, ContextWindow, Conversation,
    ConversationMessage, FoundMessage, ListMessages, Mark, MessageState, NewAsset, StoredAsset,
    StoredAssets, Summarize, Summary, ThreadScope, WindowSetting, WindowStrategy, DEFAULT_THREAD,
};
pub use pubsub::{Delivery, PubSub, PubSubMessage, Subscription};
pub use queue::{
    ClaimArgs, ListTasks, NewTask, Pushed, Queue, QueueStats, Task, TaskPage, TaskRef,
};
pub use storage::{Document, DocumentPage, ListDocuments, Storage};
pub use telemetry::{Event, Query, Telemetry};
pub use tx::Tx;
