//! How `ikigai` prints: the operator's form (fields, tables), or with `--json` one JSON document
//! per command (JSON lines for the commands that follow a stream), and errors on stderr.

use ikigai_client::ClientError;
use serde_json::{json, Value};

/// The output form chosen by `--json`.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Prints `reply` as one JSON document with `--json`, else as `human` renders it.
    pub fn print(self, reply: &Value, human: impl FnOnce(&Value)) {
        if self.json {
            println!("{reply}");
        } else {
            human(reply);
        }
    }

    /// Prints `reply` with `--json`, else its fields one per line.
    pub fn fields(self, reply: &Value) {
        self.print(reply, print_fields);
    }

    /// Prints `reply` with `--json`, else each element of its array `field` as a JSON line.
    pub fn lines(self, reply: &Value, field: &str) {
        self.print(reply, |reply| {
            for item in reply[field].as_array().into_iter().flatten() {
                println!("{item}");
            }
        });
    }

    /// Reports a failed command on stderr: `code: message` (with `--json`, a JSON object
    /// `{"error": {"code", "message", ...}}`; `code` is null when the daemon did not answer).
    pub fn error(self, e: &anyhow::Error) {
        if !self.json {
            eprintln!("ikigai: {}", message(e));
            return;
        }
        let error = match e.downcast_ref::<ClientError>() {
            Some(ClientError::Server(body)) => json!(body),
            _ => json!({"code": null, "message": message(e)}),
        };
        eprintln!("{}", json!({ "error": error }));
    }
}

/// The error and its causes, `: `-separated, each once (a daemon error's `ClientError` and its
/// source `ErrorBody` read the same).
fn message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// `key: value` per field of an object, strings unquoted.
pub fn print_fields(value: &Value) {
    for (k, v) in value.as_object().into_iter().flatten() {
        match v.as_str() {
            Some(s) => println!("{k}: {s}"),
            None => println!("{k}: {v}"),
        }
    }
}

/// A JSON argument of the command line, refused by the parser (before connecting) when it is
/// not JSON.
pub fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}
