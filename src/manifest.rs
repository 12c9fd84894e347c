//! An agent's `manifest.json`: what it is, how to run it, how to restart it, and what it may do.
//!
//! Parsing is strict: an unknown field, a wrong type or a value out of range is rejected with
//! the path of the field (`permissions.llm.models[1]`), so a deploy never half-succeeds on a typo.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole manifest of one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    /// Required with a `command`; an agent that only connects may leave it out (`""`).
    #[serde(default)]
    pub version: String,
    /// argv: the program and its arguments, run in the service directory. Absent: the agent
    /// connects by itself and is never started by the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub restart: Restart,
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    #[serde(default = "default_restart_window_s")]
    pub restart_window_s: u64,
    #[serde(default)]
    pub heartbeat_timeout_s: Option<u64>,
    #[serde(default = "default_stop_grace_s")]
    pub stop_grace_s: u64,
    #[serde(default)]
    pub permissions: Permissions,
}

/// When an exited agent is started again, as OTP's child restart types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// After any exit.
    #[default]
    Permanent,
    /// Only after an abnormal exit (non-zero status or a signal).
    Transient,
    /// Never.
    Temporary,
}

/// What the agent may do beyond its own mailbox, queues and namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// May deploy, start, stop and undeploy other agents.
    #[serde(default)]
    pub deploy_agent: bool,
    /// LLM access; absent means none at all.
    #[serde(default)]
    pub llm: Option<LlmPermissions>,
}

/// The `permissions.llm` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmPermissions {
    /// Model aliases the agent may prompt.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub max_tokens_per_request: Option<u64>,
    /// A rolling one-hour window over recorded usage.
    #[serde(default)]
    pub max_tokens_per_hour: Option<u64>,
    /// Platform tools the daemon may run on the agent's behalf.
    #[serde(default)]
    pub platform_tools: Vec<String>,
    #[serde(default)]
    pub allow_custom_tools: bool,
}

/// A manifest that cannot be accepted, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid manifest: {field}: {reason}")]
pub struct ManifestError {
    pub field: String,
    pub reason: String,
}

fn default_max_restarts() -> u32 {
    5
}

fn default_restart_window_s() -> u64 {
    60
}

fn default_stop_grace_s() -> u64 {
    10
}

/// Longest name of an environment variable or value we pass on, in bytes.
const MAX_ENV_BYTES: usize = 32 * 1024;

impl Manifest {
    /// Parses and validates a manifest given as JSON text.
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let manifest: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            ManifestError {
                field: if field == "." {
                    "manifest".into()
                } else {
                    field
                },
                reason: e.into_inner().to_string(),
            }
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Parses and validates a manifest given as a JSON value.
    pub fn from_value(value: &serde_json::Value) -> Result<Manifest, ManifestError> {
        Manifest::from_json(&value.to_string())
    }

    /// Checks what types alone cannot say.
    pub fn validate(&self) -> Result<(), ManifestError> {
        crate::identity::check_agent_name(&self.name).map_err(|r| invalid("name", &r))?;
        if self.name == crate::identity::ADMIN {
            return Err(invalid("name", "admin is the operator, not an agent"));
        }
        let unversioned = self.version.trim().is_empty() && self.command.is_some();
        if unversioned || self.version.len() > 64 {
            return Err(invalid("version", "must be 1 to 64 characters"));
        }
        match self.command.as_deref() {
            None => {}
            Some([]) => return Err(invalid("command", "must name a program")),
            Some([program, ..]) => check_program(program).map_err(|r| invalid("command[0]", r))?,
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(invalid(&format!("env.{key}"), "not a variable name"));
            }
            if key.starts_with("IKIGAI_") {
                return Err(invalid(
                    &format!("env.{key}"),
                    "IKIGAI_ variables are set by the daemon",
                ));
            }
            if value.contains('\0') || key.len() + value.len() > MAX_ENV_BYTES {
                return Err(invalid(&format!("env.{key}"), "value not allowed"));
            }
        }
        if self.max_restarts == 0 && self.restart != Restart::Temporary {
            return Err(invalid("max_restarts", "must be at least 1"));
        }
        if self.restart_window_s == 0 {
            return Err(invalid("restart_window_s", "must be at least 1"));
        }
        if self.heartbeat_timeout_s == Some(0) {
            return Err(invalid("heartbeat_timeout_s", "must be at least 1"));
        }
        if let Some(llm) = &self.permissions.llm {
            llm.validate()?;
        }
        Ok(())
    }
}

impl LlmPermissions {
    fn validate(&self) -> Result<(), ManifestError> {
        for (i, model) in self.models.iter().enumerate() {
            if model.trim().is_empty() {
                return Err(invalid(
                    &format!("permissions.llm.models[{i}]"),
                    "empty alias",
                ));
            }
        }
        for (i, tool) in self.platform_tools.iter().enumerate() {
            if !PLATFORM_TOOLS.contains(&tool.as_str()) {
                return Err(invalid(
                    &format!("permissions.llm.platform_tools[{i}]"),
                    &format!(
                        "unknown tool {tool:?}; known: {}",
                        PLATFORM_TOOLS.join(", ")
                    ),
                ));
            }
        }
        if self.max_tokens_per_request == Some(0) {
            return Err(invalid(
                "permissions.llm.max_tokens_per_request",
                "must be at least 1",
            ));
        }
        if self.max_tokens_per_hour == Some(0) {
            return Err(invalid(
                "permissions.llm.max_tokens_per_hour",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// The platform tools the daemon can run for a model.
pub const PLATFORM_TOOLS: &[&str] = &[
    "query_telemetry",
    "create_task",
    "send_message",
    "list_agents",
    "read_config",
    "deploy_agent",
    "memory_read",
    "memory_write",
    "context_mark",
    "context_exclude",
];

/// A program is a bare name found in `PATH`, or a path inside the service directory: never
/// absolute, never through `..`, so an agent cannot run what lies outside its directory.
fn check_program(program: &str) -> Result<(), &'static str> {
    use std::path::{Component, Path};
    if program.is_empty() {
        return Err("must name a program");
    }
    if !program.contains('/') {
        return Ok(());
    }
    let inside = Path::new(program)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if inside {
        Ok(())
    } else {
        Err("must be a program name found in PATH or a path inside the service directory (no absolute path, no ..)")
    }
}

fn invalid(field: &str, reason: &str) -> ManifestError {
    ManifestError {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Manifest, ManifestError> {
        Manifest::from_json(json)
    }

    #[test]
    fn a_minimal_manifest_gets_the_documented_defaults() {
        let m = parse(r#"{"name":"triage","version":"1.0.0","command":["./run"]}"#).unwrap();
        assert_eq!(m.restart, Restart::Permanent);
        assert_eq!((m.max_restarts, m.restart_window_s), (5, 60));
        assert_eq!(m.heartbeat_timeout_s, None);
        assert!(m.permissions.llm.is_none());
        assert!(!m.permissions.deploy_agent);
    }

    #[test]
    fn an_agent_that_only_connects_needs_only_a_name() {
        let m = parse(r#"{"name":"watcher","permissions":{"deploy_agent":false}}"#).unwrap();
        assert_eq!((m.version.as_str(), &m.command), ("", &None));
        let again = Manifest::from_value(&serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(again.command, None);
    }

    #[test]
    fn a_full_manifest_round_trips() {
        let text = r#"{"name":"coder","version":"2","command":["node","main.js"],
            "env":{"MODE":"fast"},"restart":"transient","max_restarts":3,"restart_window_s":10,
            "heartbeat_timeout_s":5,"stop_grace_s":2,
            "permissions":{"deploy_agent":true,"llm":{"models":["sonnet"],
            "max_tokens_per_request":4000,"max_tokens_per_hour":100000,
            "platform_tools":["create_task"],"allow_custom_tools":true}}}"#;
        let m = parse(text).unwrap();
        let again = Manifest::from_value(&serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(m, again);
        assert_eq!(m.permissions.llm.unwrap().max_tokens_per_hour, Some(100000));
    }

    #[test]
    fn errors_name_the_wrong_field() {
        let cases = [
            (r#"{"name":"a","command":["x"]}"#, "version"),
            (r#"{"name":"a","version":"","command":["x"]}"#, "version"),
            (r#"{"name":"a","version":"1","command":[]}"#, "command"),
            (r#"{"name":"a","version":"1","command":[""]}"#, "command[0]"),
            (
                r#"{"name":"a","version":"1","command":["/bin/sh"]}"#,
                "command[0]",
            ),
            (
                r#"{"name":"a","version":"1","command":["../../../../x.sh"]}"#,
                "command[0]",
            ),
            (
                r#"{"name":"a","version":"1","command":["bin/../../x"]}"#,
                "command[0]",
            ),
            (r#"{"name":"A B","version":"1","command":["x"]}"#, "name"),
            (
                r#"{"name":"a","version":"1","command":["x"],"restart":"always"}"#,
                "restart",
            ),
            (
                r#"{"name":"a","version":"1","command":["x"],"colour":1}"#,
                "colour",
            ),
            (
                r#"{"name":"a","version":"1","command":["x"],"max_restarts":-1}"#,
                "max_restarts",
            ),
            (
                r#"{"name":"a","version":"1","command":["x"],"env":{"IKIGAI_TOKEN":"x"}}"#,
                "env.IKIGAI_TOKEN",
            ),
            (
                r#"{"name":"a","version":"1","command":["x"],"permissions":{"llm":{"models":["ok",""]}}}"#,
                "permissions.llm.models[1]",
            ),
            (
                r#"{"name":"a","version":"1","command":["x"],"permissions":{"llm":{"platform_tools":["rm_rf"]}}}"#,
                "permissions.llm.platform_tools[0]",
            ),
            (
                r#"{"name":"a","version":"1","command":["x"],"permissions":{"llm":{"modles":[]}}}"#,
                "permissions.llm.modles",
            ),
        ];
        for (json, field) in cases {
            let err = parse(json).expect_err(json);
            assert_eq!(err.field, field, "{json}: {err}");
        }
    }
}
