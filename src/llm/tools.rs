//! Platform tools: what the daemon offers models (name, description, JSON schema) and how it runs
//! them, as the calling agent, through the services' own handles and the operations of
//! `actions` that the ops use too (sending, pushing, querying telemetry, deploying), stored
//! assets and the context of the prompt's thread, so a tool can do exactly what the agent could.

use super::provider::ToolSpec;
use super::thread::{Change, Changed};
use super::LlmError;
use crate::actions::{self, EventsSpec, HexFile, TaskSpec};
use crate::config::SHIPPED_DEFAULT;
use crate::error::Error;
use crate::postgres;
use crate::rules::{parse_time, timestamp};
use crate::services::Services;
use crate::session::Session;
use ikigai_protocol::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// The spec the model sees for a platform tool (`None` for an unknown name).
pub fn spec(name: &str) -> Option<ToolSpec> {
    let (description, parameters) = match name {
        "query_telemetry" => (
            "Query this agent's telemetry events and its own LLM interactions (what it asked \
             models, what they answered, tools called, tokens, cost), newest first.",
            json!({"type": "object", "properties": {
                "event_type": {"type": "string"}, "since": {"type": "string",
                "description": "RFC 3339 timestamp"}, "text": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000}},
                "additionalProperties": false}),
        ),
        "create_task" => (
            "Push a task onto a queue.",
            json!({"type": "object", "properties": {
                "queue": {"type": "string"}, "payload": {},
                "priority": {"type": "integer"}, "delay_ms": {"type": "integer", "minimum": 0},
                "dedup_key": {"type": "string"}},
                "required": ["queue", "payload"], "additionalProperties": false}),
        ),
        "send_message" => (
            "Send a message to an agent's mailbox.",
            json!({"type": "object", "properties": {
                "mailbox": {"type": "string"}, "payload": {}},
                "required": ["mailbox", "payload"], "additionalProperties": false}),
        ),
        "list_agents" => (
            "List the registered agents with their version, status and last heartbeat.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
        "read_config" => (
            "Read the daemon's configuration (secrets redacted).",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
        "deploy_agent" => (
            "Deploy (or redeploy) an agent from its manifest.json, with its files or from its \
             service directory already in place.",
            json!({"type": "object", "properties": {
                "manifest": {"type": "object", "description": "the agent's manifest.json"},
                "files": {"type": "array", "items": {"type": "object", "properties": {
                    "path": {"type": "string"}, "hex": {"type": "string",
                    "description": "the file's bytes in hexadecimal"},
                    "executable": {"type": "boolean"}}, "required": ["path", "hex"]}}},
                "required": ["manifest"], "additionalProperties": false}),
        ),
        "memory_read" => (
            "Read one of your stored assets (memory blocks) by label, or all of them without a \
             label. They are also shown to you at the start of every conversation turn.",
            json!({"type": "object", "properties": {"label": {"type": "string"}},
                "additionalProperties": false}),
        ),
        "memory_write" => (
            "Rewrite (mode replace, the default) or add a line to (mode append) one of your \
             stored assets. A value longer than the asset's limit is refused.",
            json!({"type": "object", "properties": {
                "label": {"type": "string"}, "value": {"type": "string"},
                "mode": {"type": "string", "enum": ["replace", "append"]}},
                "required": ["label", "value"], "additionalProperties": false}),
        ),
        "context_mark" => (
            "Save a restoration point in this conversation, before this turn; the agent can \
             rewind the context to it later.",
            json!({"type": "object", "properties": {"label": {"type": "string"}},
                "required": ["label"], "additionalProperties": false}),
        ),
        "context_exclude" => (
            "Take an earlier exchange (a request with everything answered to it) out of your \
             future context: by its id, or the `previous` N (1 = the latest finished one). It \
             stays in the history.",
            json!({"type": "object", "properties": {"id": {"type": "string"},
                "previous": {"type": "integer", "minimum": 1, "maximum": 100}},
                "additionalProperties": false}),
        ),
        _ => return None,
    };
    Some(ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters,
    })
}

/// Runs a platform tool for `session`'s agent; an error is told to the model, not the agent.
pub async fn run(
    name: &str,
    args: Value,
    s: &Services,
    session: &Session,
    thread: Option<Uuid>,
) -> Result<Value, String> {
    let result = match name {
        "query_telemetry" => tool(args, async |a| query_telemetry(a, s, session).await).await,
        "create_task" => tool(args, async |a| create_task(a, s).await).await,
        "send_message" => {
            tool(args, async |a: MessageTool| {
                let sent = actions::send_message(s, &session.agent, a.mailbox, a.payload.0).await?;
                Ok(json!({"id": sent.id.to_string()}))
            })
            .await
        }
        "list_agents" => list_agents(s).await,
        "read_config" => Ok(read_config(&s.config.source)),
        "deploy_agent" => tool(args, async |a| deploy_agent(a, s, session).await).await,
        "memory_read" => tool(args, async |a| Ok(memory_read(a, s, session).await?)).await,
        "memory_write" => tool(args, async |a| Ok(memory_write(a, s, session).await?)).await,
        "context_mark" | "context_exclude" => {
            let Some(thread) = thread else {
                return Err("this prompt has no thread: there is no context to change".into());
            };
            tool(args, async |a| {
                Ok(context_tool(name, a, s, session, thread).await?)
            })
            .await
        }
        other => Err(Error::BadRequest(format!(
            "unknown platform tool {other:?}"
        ))),
    };
    result.map_err(|e| e.to_string())
}

/// The registered agents, reduced to what the model may see (no manifests, whose `env` may
/// hold secrets; no pids): name, version, status and last heartbeat.
async fn list_agents(s: &Services) -> Result<Value, Error> {
    let entries = s.agents.list().await?;
    let shown = entries.into_iter().map(|e| {
        json!({"name": e.name, "version": e.version, "status": e.status.as_str(),
            "last_heartbeat": e.last_heartbeat.map(timestamp)})
    });
    Ok(Value::Array(shown.collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetryTool {
    event_type: Option<String>,
    since: Option<String>,
    text: Option<String>,
    limit: Option<usize>,
}

/// The agent's telemetry events and its own LLM interactions, filtered by the same `since`,
/// `text` and `limit`.
async fn query_telemetry(
    a: TelemetryTool,
    s: &Services,
    session: &Session,
) -> Result<Value, Error> {
    let since = a.since.as_deref().map(parse_time).transpose()?;
    let text = a.text.clone().filter(|t| !t.trim().is_empty());
    let limit = a
        .limit
        .unwrap_or(actions::DEFAULT_EVENTS)
        .clamp(1, actions::MAX_EVENTS);
    let spec = EventsSpec {
        event_type: a.event_type,
        since: a.since,
        text: a.text,
        limit: a.limit,
        ..EventsSpec::default()
    };
    let events = actions::query_telemetry(s, session, spec).await?;
    let events = events.into_iter().map(|e| {
        json!({"id": e.id.to_string(), "agent": e.agent, "event_type": e.event_type,
            "payload": e.payload, "created_at": timestamp(e.created_at)})
    });
    let llm = s
        .llm
        .interactions(&session.agent, since, text.as_deref(), limit as i64)
        .await?;
    Ok(json!({"events": events.collect::<Vec<_>>(), "llm_interactions": llm}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskTool {
    queue: String,
    payload: Json,
    priority: Option<i32>,
    delay_ms: Option<u64>,
    dedup_key: Option<String>,
}

async fn create_task(a: TaskTool, s: &Services) -> Result<Value, Error> {
    let spec = TaskSpec {
        payload: a.payload.0,
        priority: a.priority,
        scheduled_for: None,
        delay_ms: a.delay_ms,
        max_attempts: None,
        dedup_key: a.dedup_key,
    };
    let task = spec.task(&a.queue, s)?;
    let pushed = actions::push_tasks(s, &a.queue, vec![task]).await?;
    let first = pushed.into_iter().next().ok_or_else(actions::gone)?;
    Ok(json!({"id": first.task.id.to_string(), "created": first.created}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageTool {
    mailbox: String,
    payload: Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployTool {
    manifest: Json,
    files: Option<Vec<HexFile>>,
}

async fn deploy_agent(a: DeployTool, s: &Services, session: &Session) -> Result<Value, Error> {
    let manifest = actions::deploy(s, session, &a.manifest.0, a.files).await?;
    Ok(json!({"name": manifest.name, "version": manifest.version}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryArgs {
    label: Option<String>,
    value: Option<String>,
    mode: Option<String>,
    id: Option<String>,
    previous: Option<usize>,
}

async fn memory_read(a: MemoryArgs, s: &Services, session: &Session) -> Result<Value, LlmError> {
    let assets = s.llm.assets();
    let shown = |v: &crate::postgres::assets::Version| {
        json!({"label": v.label, "value": v.value, "limit": v.limit,
            "chars": super::assets::chars(&v.value), "description": v.description})
    };
    Ok(match a.label {
        Some(label) => shown(&assets.get(&session.agent, &label, 0).await?.0),
        None => Value::Array(
            assets
                .list(&session.agent)
                .await?
                .iter()
                .map(shown)
                .collect(),
        ),
    })
}

async fn memory_write(a: MemoryArgs, s: &Services, session: &Session) -> Result<Value, LlmError> {
    let (Some(label), Some(value)) = (a.label, a.value) else {
        return Err(LlmError::BadRequest("label and value are required".into()));
    };
    let assets = s.llm.assets();
    let written = match a.mode.as_deref().unwrap_or("replace") {
        "replace" => {
            let change = super::assets::Change {
                value: Some(value),
                ..Default::default()
            };
            assets.update(&session.agent, &label, change).await?
        }
        "append" => assets.append(&session.agent, &label, &value).await?,
        other => {
            return Err(LlmError::BadRequest(format!(
                "mode {other:?} is not replace or append"
            )))
        }
    };
    let chars = super::assets::chars(&written.value);
    Ok(json!({"label": label, "version": written.version, "chars": chars, "limit": written.limit}))
}

async fn context_tool(
    name: &str,
    a: MemoryArgs,
    s: &Services,
    session: &Session,
    thread: Uuid,
) -> Result<Value, LlmError> {
    let change = match (name, a.label, a.id, a.previous) {
        ("context_mark", Some(label), _, _) => Change::Mark(label),
        ("context_exclude", _, Some(id), None) => Change::Exclude(
            Uuid::parse_str(&id)
                .map_err(|_| LlmError::BadRequest(format!("{id:?} is not an exchange id")))?,
        ),
        ("context_exclude", _, None, Some(n)) => Change::ExcludePrevious(n),
        ("context_mark", ..) => return Err(LlmError::BadRequest("label is required".into())),
        _ => return Err(LlmError::BadRequest("give id or previous".into())),
    };
    Ok(match s.llm.edit(&session.agent, thread, change).await? {
        Changed::Marked(m) => {
            json!({"mark": m.id.to_string(), "label": m.label, "position": m.position})
        }
        Changed::Excluded(n) => json!({"excluded": n}),
        _ => json!({}),
    })
}

/// Parses a tool's arguments and runs it.
async fn tool<A: serde::de::DeserializeOwned>(
    args: Value,
    run: impl AsyncFnOnce(A) -> Result<Value, Error>,
) -> Result<Value, Error> {
    let args = serde_json::from_value(args).map_err(|e| Error::BadRequest(e.to_string()))?;
    run(args).await
}

/// The configuration file as `{section: {key: value}}`, with every value whose key names a key,
/// token, secret or password, and the password of the Postgres URL, redacted.
pub fn read_config(source: &str) -> Value {
    let text = match source {
        "<shipped default>" => SHIPPED_DEFAULT.to_owned(),
        path => std::fs::read_to_string(path).unwrap_or_default(),
    };
    let Ok(ini) = ini::Ini::load_from_str(&text) else {
        return json!({});
    };
    let mut sections = Map::new();
    for (section, props) in ini.iter() {
        let keys: Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.to_owned(), Value::String(redact(k, v))))
            .collect();
        sections.insert(section.unwrap_or("").to_owned(), Value::Object(keys));
    }
    json!({"source": source, "sections": sections})
}

fn redact(key: &str, value: &str) -> String {
    let key = key.to_ascii_lowercase();
    if ["key", "token", "secret", "password"]
        .iter()
        .any(|s| key.contains(s))
    {
        return "[redacted]".into();
    }
    if key == "url" {
        return postgres::redact(value);
    }
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_tool_has_a_spec() {
        for name in crate::manifest::PLATFORM_TOOLS {
            let spec = spec(name).unwrap();
            assert_eq!(spec.parameters["type"], "object", "{name}");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact("api_key_env", "OPENAI_KEY"), "[redacted]");
        assert_eq!(redact("Password", "x"), "[redacted]");
        assert_eq!(
            redact("url", "postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact("pool_size", "8"), "8");
        assert_eq!(
            redact("url", "host=h password=pw dbname=x"),
            "host=h password=*** dbname=x"
        );
    }
}
