//! Typed calls for memory and context (protocol section 18): `client.stored_assets()` (the
//! agent's assets, carried by every prompt), `client.context()` (marks, rewinds, exclusions,
//! summaries, the window) and `client.conversation()` (the history) of the agent's default
//! thread, and `client.thread(id)` for the same two on one thread ([`DEFAULT_THREAD`] names the
//! default one). `client.conversation().search` looks in every thread of the agent.

use crate::{ChatMessage, Client, ClientError, Usage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The thread each agent has, created on first use: `Prompt { thread:
/// Some(DEFAULT_THREAD.into()), .. }`, `client.thread(DEFAULT_THREAD)`.
pub const DEFAULT_THREAD: &str = "default";

/// A named, persistent section of the agent's context, carried by every prompt on its threads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredAsset {
    pub label: String,
    pub value: String,
    /// The most characters `value` may have.
    pub limit: u32,
    pub description: Option<String>,
    pub version: u64,
    /// The characters `value` has.
    pub chars: u32,
    pub updated_at: String,
}

/// An earlier version of a stored asset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AssetVersion {
    pub version: u64,
    pub value: String,
    pub limit: u32,
    pub description: Option<String>,
    pub updated_at: String,
    /// The version that recorded a deletion of the label (its `value` empty); the daemon adds
    /// it, section 18 does not list it.
    #[serde(default)]
    pub deleted: bool,
}

/// The reply of `assets.get`: the asset and the earlier versions asked for, newest first (none
/// when none were asked for).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AssetWithHistory {
    #[serde(flatten)]
    pub asset: StoredAsset,
    #[serde(default)]
    pub history: Vec<AssetVersion>,
}

/// A new stored asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewAsset<'a> {
    /// 1 to 64 characters of `A-Z a-z 0-9 _ - .`.
    pub label: &'a str,
    pub value: &'a str,
    /// In characters, 1 to 100000; a longer value is refused (`bad_request`), never cut.
    pub limit: u32,
    pub description: Option<&'a str>,
}

/// What `assets.update` changes: at least one of these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AssetChanges<'a> {
    pub value: Option<&'a str>,
    pub limit: Option<u32>,
    pub description: Option<&'a str>,
}

/// The agent's stored assets, as `client.stored_assets()` gives them.
#[derive(Clone, Copy)]
pub struct StoredAssets<'a> {
    client: &'a Client,
}

#[derive(Serialize)]
struct Label<'a> {
    label: &'a str,
}

impl StoredAssets<'_> {
    /// Creates an asset (`conflict` if the label exists).
    pub async fn create(&self, asset: &NewAsset<'_>) -> Result<StoredAsset, ClientError> {
        self.client.call("assets.create", asset).await
    }

    /// Changes an asset: its next version.
    pub async fn update(
        &self,
        label: &str,
        changes: &AssetChanges<'_>,
    ) -> Result<StoredAsset, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            label: &'a str,
            #[serde(flatten)]
            changes: &'a AssetChanges<'a>,
        }
        let args = Args { label, changes };
        self.client.call("assets.update", &args).await
    }

    /// The asset, with up to `history` (0 to 1000, default 0) earlier versions.
    pub async fn get(
        &self,
        label: &str,
        history: Option<u32>,
    ) -> Result<AssetWithHistory, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            label: &'a str,
            history: Option<u32>,
        }
        self.client
            .call("assets.get", &Args { label, history })
            .await
    }

    /// Every asset, in the order prompts carry them.
    pub async fn list(&self) -> Result<Vec<StoredAsset>, ClientError> {
        #[derive(Deserialize)]
        struct List {
            assets: Vec<StoredAsset>,
        }
        let list: List = self.client.call("assets.list", &Empty {}).await?;
        Ok(list.assets)
    }

    /// Takes the label out of every prompt (its versions stay stored).
    pub async fn delete(&self, label: &str) -> Result<(), ClientError> {
        self.client
            .call_unit("assets.delete", &Label { label })
            .await
    }
}

#[derive(Serialize)]
struct Empty {}

/// A restoration point of a thread's context, from `context.mark`; `&mark` rewinds to it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Mark {
    /// Its id.
    pub mark: String,
    pub label: String,
    /// The number of messages of the history before it.
    pub position: u64,
}

impl AsRef<str> for Mark {
    fn as_ref(&self) -> &str {
        &self.mark
    }
}

/// How old exchanges must be for `context.summarize`: `"90s"`, `"30m"`, `"1h"`, `"2d"`, or a
/// `Duration` (sent in milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Age {
    Text(String),
    Millis(u64),
}

impl From<&str> for Age {
    fn from(text: &str) -> Age {
        Age::Text(text.into())
    }
}

impl From<Duration> for Age {
    fn from(age: Duration) -> Age {
        Age::Millis(age.as_millis().try_into().unwrap_or(u64::MAX))
    }
}

/// Which exchanges `context.summarize` replaces by one summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Summarize {
    /// Those that ended longer ago than this.
    OlderThan(Age),
    /// Those that end before this message id.
    Before(u64),
}

/// The reply of `context.summarize`: no model call (`id` none) when nothing was in range.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Summary {
    pub summarized: u64,
    pub summary: Option<String>,
    /// The `llm_interactions` row of the summary's call.
    pub id: Option<String>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
}

/// What leaves a full window first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowStrategy {
    /// The oldest exchanges are left out (they stay in history).
    Truncate,
    /// The oldest exchanges are summarised.
    Summarize,
}

/// A thread's window: `tokens` none means the model's context size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct WindowSetting {
    pub tokens: Option<u64>,
    pub strategy: WindowStrategy,
}

/// Where a message of the history stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// In the view the model sees (the window may still leave it out of a call).
    Context,
    Summarized,
    Rewound,
    Excluded,
    Deleted,
}

/// A message of a thread's history.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ConversationMessage {
    #[serde(flatten)]
    pub message: ChatMessage,
    /// Its position in the history, from 0.
    pub id: u64,
    /// The exchange it belongs to: the `id` of its prompt's reply (none for a message stored
    /// before the daemon kept exchanges).
    pub exchange: Option<String>,
    pub created_at: String,
    pub state: MessageState,
}

/// A message found by `conversation.search`, and its thread: a [`ConversationMessage`] whose
/// `state` the daemon may leave out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FoundMessage {
    #[serde(flatten)]
    pub message: ChatMessage,
    pub id: u64,
    pub exchange: Option<String>,
    pub created_at: String,
    pub state: Option<MessageState>,
    pub thread: String,
}

/// Which messages `conversation.list` returns; unset fields take the daemon's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ListMessages {
    /// 1 to 1000, default 50.
    pub limit: Option<u32>,
    /// A message id: the page ends before it; default the newest.
    pub before: Option<u64>,
}

/// One thread (`None`: the default one), named in every call made through it.
#[derive(Clone, Copy)]
struct OnThread<'a> {
    client: &'a Client,
    thread: Option<&'a str>,
}

impl OnThread<'_> {
    async fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        op: &str,
        args: A,
    ) -> Result<R, ClientError> {
        #[derive(Serialize)]
        struct Args<'a, A> {
            #[serde(flatten)]
            args: A,
            thread: Option<&'a str>,
        }
        let thread = self.thread;
        self.client.call(op, &Args { args, thread }).await
    }
}

/// What the model sees of a thread (`context.*`); the history itself is never rewritten.
#[derive(Clone, Copy)]
pub struct Context<'a>(OnThread<'a>);

impl<'a> Context<'a> {
    /// Marks a restoration point (`label`: 1 to 200 characters).
    pub async fn mark(&self, label: &str) -> Result<Mark, ClientError> {
        self.0.call("context.mark", Label { label }).await
    }

    /// Takes everything after the mark (a [`Mark`], or its id or label) out of the context;
    /// the number of messages taken out.
    pub async fn rewind(&self, mark: &(impl AsRef<str> + ?Sized)) -> Result<u64, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            mark: &'a str,
        }
        #[derive(Deserialize)]
        struct Rewound {
            rewound: u64,
        }
        let mark = mark.as_ref();
        let reply: Rewound = self.0.call("context.rewind", Args { mark }).await?;
        Ok(reply.rewound)
    }

    /// Takes an exchange (the `id` of a prompt's reply) out of the context; its number of
    /// messages (0: it was already out).
    pub async fn exclude(&self, exchange: &str) -> Result<u64, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            id: &'a str,
        }
        #[derive(Deserialize)]
        struct Excluded {
            excluded: u64,
        }
        let reply: Excluded = self
            .0
            .call("context.exclude", Args { id: exchange })
            .await?;
        Ok(reply.excluded)
    }

    /// Replaces the exchanges in range by one summary.
    pub async fn summarize(&self, range: &Summarize) -> Result<Summary, ClientError> {
        self.0.call("context.summarize", range).await
    }

    /// The thread's window (`context.window`).
    pub fn window(&self) -> ContextWindow<'a> {
        ContextWindow(self.0)
    }
}

/// A thread's window (`context.window`): each call answers the setting after it.
#[derive(Clone, Copy)]
pub struct ContextWindow<'a>(OnThread<'a>);

/// One change of `context.window`, as its one arg.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum WindowChange {
    Tokens(u64),
    Strategy(WindowStrategy),
    Reset(bool),
}

impl ContextWindow<'_> {
    /// The current setting.
    pub async fn get(&self) -> Result<WindowSetting, ClientError> {
        self.0.call("context.window", Empty {}).await
    }

    /// Fits the context in `tokens` (256 to 10000000).
    pub async fn resize(&self, tokens: u64) -> Result<WindowSetting, ClientError> {
        self.set(WindowChange::Tokens(tokens)).await
    }

    /// What leaves a full window first.
    pub async fn strategy(&self, strategy: WindowStrategy) -> Result<WindowSetting, ClientError> {
        self.set(WindowChange::Strategy(strategy)).await
    }

    /// Back to the model's context size.
    pub async fn reset(&self) -> Result<WindowSetting, ClientError> {
        self.set(WindowChange::Reset(true)).await
    }

    async fn set(&self, change: WindowChange) -> Result<WindowSetting, ClientError> {
        self.0.call("context.window", change).await
    }
}

/// A thread's history (`conversation.*`).
#[derive(Clone, Copy)]
pub struct Conversation<'a>(OnThread<'a>);

#[derive(Deserialize)]
struct Messages<M> {
    messages: Vec<M>,
}

impl Conversation<'_> {
    /// A page of the history, oldest first.
    pub async fn list(
        &self,
        which: &ListMessages,
    ) -> Result<Vec<ConversationMessage>, ClientError> {
        let page: Messages<_> = self.0.call("conversation.list", which).await?;
        Ok(page.messages)
    }

    /// Erases a message's content for good; it keeps its place in its exchange.
    pub async fn delete(&self, id: u64) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Args {
            id: u64,
        }
        let _: serde::de::IgnoredAny = self.0.call("conversation.delete", Args { id }).await?;
        Ok(())
    }

    /// Messages matching `text` (Postgres web search syntax), best first, at most `limit` (1 to
    /// 100, default 20); `client.conversation()` searches every thread of the agent.
    pub async fn search(
        &self,
        text: &str,
        limit: Option<u32>,
    ) -> Result<Vec<FoundMessage>, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            text: &'a str,
            limit: Option<u32>,
        }
        let found: Messages<_> = self
            .0
            .call("conversation.search", Args { text, limit })
            .await?;
        Ok(found.messages)
    }
}

/// One thread's context and conversation, as `client.thread(id)` gives them.
#[derive(Clone, Copy)]
pub struct ThreadScope<'a>(OnThread<'a>);

impl<'a> ThreadScope<'a> {
    pub fn context(&self) -> Context<'a> {
        Context(self.0)
    }

    pub fn conversation(&self) -> Conversation<'a> {
        Conversation(self.0)
    }
}

impl Client {
    /// The agent's stored assets.
    pub fn stored_assets(&self) -> StoredAssets<'_> {
        StoredAssets { client: self }
    }

    /// The context of the agent's default thread.
    pub fn context(&self) -> Context<'_> {
        self.on(None).context()
    }

    /// The history of the agent's default thread; its `search` looks in every thread.
    pub fn conversation(&self) -> Conversation<'_> {
        self.on(None).conversation()
    }

    /// The context and conversation of a thread: a [`crate::Thread`] from `threads().create`,
    /// its id, or [`DEFAULT_THREAD`].
    pub fn thread<'a>(&'a self, thread: &'a (impl AsRef<str> + ?Sized)) -> ThreadScope<'a> {
        self.on(Some(thread.as_ref()))
    }

    fn on<'a>(&'a self, thread: Option<&'a str>) -> ThreadScope<'a> {
        ThreadScope(OnThread {
            client: self,
            thread,
        })
    }
}
