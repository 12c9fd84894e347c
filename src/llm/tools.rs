//! Platform tools: what the daemon offers models (name, description, JSON schema) and how it runs
//! them, as the calling agent, through the same functions as the ops (`queue.push`,
//! `mailbox.send`, `telemetry.query`, `agents.deploy`), so a tool can do exactly what the agent
//! could.

use super::provider::ToolSpec;
use crate::cmd;
use crate::config::SHIPPED_DEFAULT;
use crate::error::Error;
use crate::postgres;
use crate::services::Services;
use crate::session::Session;
use serde_json::{json, Map, Value};

/// The spec the model sees for a platform tool (`None` for an unknown name).
pub fn spec(name: &str) -> Option<ToolSpec> {
    let (description, parameters) = match name {
        "query_telemetry" => (
            "Query this agent's telemetry events, newest first.",
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
) -> Result<Value, String> {
    let result = match name {
        "query_telemetry" => ask(args, async |a| cmd::telemetry::query(a, s, session).await).await,
        "create_task" => ask(args, async |a| cmd::queue::push(a, s, session).await).await,
        "send_message" => ask(args, async |a| cmd::mailbox::send(a, s, session).await).await,
        "list_agents" => ask(args, async |a| cmd::agents::list(a, s, session).await)
            .await
            .map(summaries),
        "read_config" => Ok(read_config(&s.config.source)),
        "deploy_agent" => ask(args, async |a| cmd::agents::deploy(a, s, session).await).await,
        other => Err(Error::BadRequest(format!(
            "unknown platform tool {other:?}"
        ))),
    };
    result.map_err(|e| e.to_string())
}

/// `agents.list` without what the model need not see (manifests, whose `env` may hold secrets;
/// pids): name, version, status and last heartbeat of each agent.
fn summaries(list: Value) -> Value {
    let agents = list["agents"].as_array().into_iter().flatten();
    let keep = ["name", "version", "status", "last_heartbeat"];
    agents
        .map(|a| keep.iter().map(|k| (k.to_string(), a[k].clone())).collect())
        .map(Value::Object)
        .collect()
}

/// Parses a tool's arguments as an op's args, runs the op, and returns its reply as JSON.
async fn ask<A, R>(args: Value, op: impl AsyncFnOnce(A) -> Result<R, Error>) -> Result<Value, Error>
where
    A: serde::de::DeserializeOwned,
    R: serde::Serialize,
{
    let args = serde_json::from_value(args).map_err(|e| Error::BadRequest(e.to_string()))?;
    let reply = op(args).await?;
    serde_json::to_value(reply).map_err(|e| Error::Internal(e.to_string()))
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
