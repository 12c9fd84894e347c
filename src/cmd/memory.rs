//! `assets.*`, `context.*` and `conversation.*`: the wire side of memory and context (protocol
//! section 18; `src/llm` does the work). Every op takes an optional `thread`: an id, `"default"`,
//! or none (the caller's default thread).

use super::{timestamp, Empty};
use crate::error::Error;
use crate::llm::context::{Entry, State};
use crate::llm::memory::Range;
use crate::llm::provider::{Message, Usage};
use crate::llm::thread::{Change, Changed};
use crate::llm::window::{Strategy, Window};
use crate::postgres::assets::Version;
use crate::services::Services;
use crate::session::Session;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

#[derive(Serialize)]
pub struct AssetReply {
    label: String,
    value: String,
    limit: u32,
    description: Option<String>,
    version: i32,
    chars: usize,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<VersionReply>>,
}

#[derive(Serialize)]
pub struct VersionReply {
    version: i32,
    value: String,
    limit: u32,
    description: Option<String>,
    updated_at: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

fn asset(v: Version, history: Option<Vec<Version>>) -> AssetReply {
    let history = history.map(|h| {
        h.into_iter()
            .map(|v| VersionReply {
                version: v.version,
                updated_at: timestamp(v.at),
                value: v.value,
                limit: v.limit,
                description: v.description,
                deleted: v.deleted,
            })
            .collect()
    });
    AssetReply {
        label: v.label,
        chars: crate::llm::assets::chars(&v.value),
        value: v.value,
        limit: v.limit,
        description: v.description,
        version: v.version,
        updated_at: timestamp(v.at),
        history,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    label: String,
    value: String,
    limit: u32,
    description: Option<String>,
}

pub async fn create(a: CreateArgs, s: &Services, session: &Session) -> Result<AssetReply, Error> {
    let assets = s.llm.assets();
    let v = assets
        .create(&session.agent, &a.label, a.value, a.limit, a.description)
        .await?;
    Ok(asset(v, None))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    label: String,
    value: Option<String>,
    limit: Option<u32>,
    description: Option<String>,
}

pub async fn update(a: UpdateArgs, s: &Services, session: &Session) -> Result<AssetReply, Error> {
    let change = crate::llm::assets::Change {
        value: a.value,
        limit: a.limit,
        description: a.description,
    };
    let v = s
        .llm
        .assets()
        .update(&session.agent, &a.label, change)
        .await?;
    Ok(asset(v, None))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetArgs {
    label: String,
    history: Option<u32>,
}

pub async fn get(a: GetArgs, s: &Services, session: &Session) -> Result<AssetReply, Error> {
    let n = a.history.unwrap_or(0);
    if n > 1000 {
        return Err(Error::BadRequest("history must be 0 to 1000".into()));
    }
    let (v, history) = s.llm.assets().get(&session.agent, &a.label, n).await?;
    Ok(asset(v, (n > 0).then_some(history)))
}

#[derive(Serialize)]
pub struct AssetList {
    assets: Vec<AssetReply>,
}

pub async fn list(_: Empty, s: &Services, session: &Session) -> Result<AssetList, Error> {
    let all = s.llm.assets().list(&session.agent).await?;
    Ok(AssetList {
        assets: all.into_iter().map(|v| asset(v, None)).collect(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelArgs {
    label: String,
}

pub async fn delete(a: LabelArgs, s: &Services, session: &Session) -> Result<Empty, Error> {
    s.llm.assets().delete(&session.agent, &a.label).await?;
    Ok(Empty {})
}

/// Runs a change on the thread the args name.
async fn edit(
    thread: Option<String>,
    change: Change,
    s: &Services,
    session: &Session,
) -> Result<Changed, Error> {
    let id = s.llm.thread_of(&session.agent, thread.as_deref()).await?;
    Ok(s.llm.edit(&session.agent, id, change).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkArgs {
    label: String,
    thread: Option<String>,
}

#[derive(Serialize)]
pub struct MarkReply {
    mark: String,
    label: String,
    position: u32,
}

pub async fn mark(a: MarkArgs, s: &Services, session: &Session) -> Result<MarkReply, Error> {
    if a.label.is_empty() || a.label.chars().count() > 200 {
        return Err(Error::BadRequest(
            "label must be 1 to 200 characters".into(),
        ));
    }
    match edit(a.thread, Change::Mark(a.label), s, session).await? {
        Changed::Marked(m) => Ok(MarkReply {
            mark: m.id.to_string(),
            label: m.label,
            position: m.position,
        }),
        _ => Err(unexpected()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewindArgs {
    mark: String,
    thread: Option<String>,
}

#[derive(Serialize)]
pub struct RewindReply {
    rewound: u32,
}

pub async fn rewind(a: RewindArgs, s: &Services, session: &Session) -> Result<RewindReply, Error> {
    match edit(a.thread, Change::Rewind(a.mark), s, session).await? {
        Changed::Rewound(rewound) => Ok(RewindReply { rewound }),
        _ => Err(unexpected()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludeArgs {
    id: String,
    thread: Option<String>,
}

#[derive(Serialize)]
pub struct ExcludeReply {
    excluded: u32,
}

pub async fn exclude(
    a: ExcludeArgs,
    s: &Services,
    session: &Session,
) -> Result<ExcludeReply, Error> {
    let id = Uuid::parse_str(&a.id)
        .map_err(|_| Error::BadRequest(format!("{:?} is not an exchange id", a.id)))?;
    match edit(a.thread, Change::Exclude(id), s, session).await? {
        Changed::Excluded(excluded) => Ok(ExcludeReply { excluded }),
        _ => Err(unexpected()),
    }
}

/// `older_than` as it travels: a duration string or milliseconds.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Age {
    Millis(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummarizeArgs {
    older_than: Option<Age>,
    before: Option<u32>,
    thread: Option<String>,
}

#[derive(Serialize)]
pub struct SummarizeReply {
    summarized: usize,
    summary: Option<String>,
    id: Option<String>,
    usage: Usage,
    cost_usd: f64,
}

pub async fn summarize(
    a: SummarizeArgs,
    s: &Services,
    session: &Session,
) -> Result<SummarizeReply, Error> {
    let range = match (a.older_than, a.before) {
        (Some(age), None) => Range::OlderThan(age_of(age)?),
        (None, Some(seq)) => Range::Before(seq),
        _ => {
            return Err(Error::BadRequest(
                "give exactly one of older_than and before".into(),
            ))
        }
    };
    let id = s.llm.thread_of(&session.agent, a.thread.as_deref()).await?;
    let done = s.llm.summarize(s, session, id, range).await?;
    Ok(SummarizeReply {
        summarized: done.messages,
        summary: done.summary.map(|s| s.text),
        id: done.interaction.map(|i| i.to_string()),
        usage: done.usage,
        cost_usd: (done.cost * 1e6).round() / 1e6,
    })
}

/// `"90s"`, `"30m"`, `"1h"`, `"2d"` or milliseconds.
fn age_of(age: Age) -> Result<Duration, Error> {
    let text = match age {
        Age::Millis(ms) => return super::check_ms("older_than", ms, 0, Duration::MAX),
        Age::Text(t) => t,
    };
    let bad = || {
        Error::BadRequest(format!(
            "older_than {text:?} is not a duration like \"90s\", \"30m\", \"1h\" or \"2d\""
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: u64 = text[..split].parse().map_err(|_| bad())?;
    let unit = match &text[split..] {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let ms = n.checked_mul(unit).ok_or_else(bad)?;
    super::check_ms("older_than", ms, 0, Duration::MAX)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowArgs {
    tokens: Option<u32>,
    reset: Option<bool>,
    strategy: Option<String>,
    thread: Option<String>,
}

#[derive(Serialize)]
pub struct WindowReply {
    tokens: Option<u32>,
    strategy: &'static str,
}

pub async fn window(a: WindowArgs, s: &Services, session: &Session) -> Result<WindowReply, Error> {
    if a.tokens.is_some_and(|t| !(256..=10_000_000).contains(&t)) {
        return Err(Error::BadRequest("tokens must be 256 to 10000000".into()));
    }
    let tokens = match (a.tokens, a.reset.unwrap_or(false)) {
        (Some(_), true) => return Err(Error::BadRequest("give tokens or reset, not both".into())),
        (Some(t), false) => Some(Some(t)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    let strategy = a.strategy.as_deref().map(Strategy::parse).transpose()?;
    match edit(a.thread, Change::Window { tokens, strategy }, s, session).await? {
        Changed::Window(Window { tokens, strategy }) => Ok(WindowReply {
            tokens,
            strategy: strategy.as_str(),
        }),
        _ => Err(unexpected()),
    }
}

#[derive(Serialize)]
pub struct Listed {
    id: u32,
    exchange: Option<String>,
    #[serde(flatten)]
    message: Message,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<String>,
}

fn listed(e: Entry, state: Option<State>, thread: Option<Uuid>) -> Listed {
    Listed {
        id: e.seq,
        exchange: e.exchange.map(|x| x.to_string()),
        message: (*e.message).clone(),
        created_at: timestamp(e.at),
        state,
        thread: thread.map(|t| t.to_string()),
    }
}

#[derive(Serialize)]
pub struct Messages {
    messages: Vec<Listed>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    limit: Option<u32>,
    before: Option<u32>,
    thread: Option<String>,
}

pub async fn conversation_list(
    a: ListArgs,
    s: &Services,
    session: &Session,
) -> Result<Messages, Error> {
    let limit = a.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Error::BadRequest("limit must be 1 to 1000".into()));
    }
    let id = s.llm.thread_of(&session.agent, a.thread.as_deref()).await?;
    let page = s.llm.history(&session.agent, id, a.before, limit).await?;
    let messages = page
        .into_iter()
        .map(|(e, state)| listed(e, Some(state), None))
        .collect();
    Ok(Messages { messages })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    id: u32,
    thread: Option<String>,
}

pub async fn conversation_delete(
    a: DeleteArgs,
    s: &Services,
    session: &Session,
) -> Result<Empty, Error> {
    edit(a.thread, Change::Delete(a.id), s, session).await?;
    Ok(Empty {})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    text: String,
    limit: Option<u32>,
    thread: Option<String>,
}

pub async fn conversation_search(
    a: SearchArgs,
    s: &Services,
    session: &Session,
) -> Result<Messages, Error> {
    let limit = a.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Error::BadRequest("limit must be 1 to 100".into()));
    }
    if a.text.trim().is_empty() || a.text.len() > 1000 {
        return Err(Error::BadRequest(
            "text must be 1 to 1000 bytes, not blank".into(),
        ));
    }
    let thread = match a.thread.as_deref() {
        None => None,
        named => Some(s.llm.thread_of(&session.agent, named).await?),
    };
    let found = s.llm.search(&session.agent, thread, &a.text, limit).await?;
    let messages = found
        .into_iter()
        .map(|(t, e)| listed(e, None, Some(t)))
        .collect();
    Ok(Messages { messages })
}

fn unexpected() -> Error {
    Error::Internal("the thread answered a change with another kind of outcome".into())
}
