//! Reading what the queue script returns: its replies (`redis::Value` trees) and the task
//! hashes in them (flat lists of field names and values, as `HGETALL` gives) into [`Task`]s.
//! A hash something else wrote may not decode; the callers report it (as the Postgres engine
//! reports rows, through `ikigai_actors::store::undecodable::report`) and skip or dead-letter it.

use chrono::{DateTime, Utc};
use ikigai_actors::Task;
use redis::Value;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use thiserror::Error;
use uuid::Uuid;

/// Why a reply or a stored task does not decode.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{0} is not UTF-8 text")]
    NotText(&'static str),
    #[error("{0} is not a valid {1}")]
    Invalid(&'static str, &'static str),
    #[error("{0} is not JSON: {1}")]
    Json(&'static str, serde_json::Error),
    /// The script answered in a shape it never produces.
    #[error("unexpected reply from the queue script: {0}")]
    Reply(&'static str),
}

/// The elements of an array reply (nil: none).
pub fn array(v: &Value) -> Result<&[Value], DecodeError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(&[]),
        _ => Err(DecodeError::Reply("expected an array")),
    }
}

/// The bytes of a string reply.
pub fn bytes(v: &Value) -> Result<&[u8], DecodeError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        _ => Err(DecodeError::Reply("expected a string")),
    }
}

/// The text of a string reply.
pub fn text(v: &Value) -> Result<&str, DecodeError> {
    std::str::from_utf8(bytes(v)?).map_err(|_| DecodeError::Reply("expected UTF-8 text"))
}

/// An integer reply, or an integer written as a string.
pub fn int(v: &Value) -> Result<i64, DecodeError> {
    match v {
        Value::Int(n) => Ok(*n),
        _ => text(v)?
            .parse()
            .map_err(|_| DecodeError::Reply("expected an integer")),
    }
}

/// The `i`-th element of `items`.
pub fn nth(items: &[Value], i: usize) -> Result<&Value, DecodeError> {
    items.get(i).ok_or(DecodeError::Reply("too few elements"))
}

/// A timestamp stored as milliseconds since the epoch.
pub fn millis(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// The fields of one task hash.
pub struct Fields<'a>(HashMap<&'a [u8], &'a [u8]>);

impl<'a> Fields<'a> {
    /// The fields of a flat reply of names and values.
    pub fn new(v: &'a Value) -> Result<Self, DecodeError> {
        let items = array(v)?;
        let mut map = HashMap::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            if let [name, value] = pair {
                map.insert(bytes(name)?, bytes(value)?);
            }
        }
        Ok(Fields(map))
    }

    /// The task's id as stored, for reports (`?` when there is none).
    pub fn id(&self) -> String {
        self.0
            .get(b"id".as_slice())
            .map(|id| String::from_utf8_lossy(id).into_owned())
            .unwrap_or_else(|| "?".into())
    }

    fn text(&self, name: &'static str) -> Result<Option<String>, DecodeError> {
        self.0
            .get(name.as_bytes())
            .map(|b| String::from_utf8(b.to_vec()).map_err(|_| DecodeError::NotText(name)))
            .transpose()
    }

    fn parsed<T: FromStr>(
        &self,
        name: &'static str,
        kind: &'static str,
    ) -> Result<Option<T>, DecodeError> {
        self.text(name)?
            .map(|s| s.parse().map_err(|_| DecodeError::Invalid(name, kind)))
            .transpose()
    }

    fn time(&self, name: &'static str) -> Result<Option<DateTime<Utc>>, DecodeError> {
        self.parsed::<i64>(name, "timestamp")?
            .map(|ms| millis(ms).ok_or(DecodeError::Invalid(name, "timestamp")))
            .transpose()
    }

    fn json(&self, name: &'static str) -> Result<Option<serde_json::Value>, DecodeError> {
        self.0
            .get(name.as_bytes())
            .map(|b| serde_json::from_slice(b).map_err(|e| DecodeError::Json(name, e)))
            .transpose()
    }
}

fn required<T>(value: Option<T>, name: &'static str) -> Result<T, DecodeError> {
    value.ok_or(DecodeError::Missing(name))
}

/// The task in `f`; its payload is `payload` when the daemon knows it (`f` has none then).
pub fn task(f: &Fields, payload: Option<&Arc<serde_json::Value>>) -> Result<Task, DecodeError> {
    let payload = match payload {
        Some(p) => Arc::clone(p),
        None => Arc::new(required(f.json("payload")?, "payload")?),
    };
    let result = f.json("result")?.map(Arc::new);
    task_from_parts(f, payload, result)
}

/// The task in `f` with its JSON fields given (not read).
pub fn task_from_parts(
    f: &Fields,
    payload: Arc<serde_json::Value>,
    result: Option<Arc<serde_json::Value>>,
) -> Result<Task, DecodeError> {
    Ok(Task {
        id: required(f.parsed::<Uuid>("id", "uuid")?, "id")?,
        seq: required(f.parsed("seq", "integer")?, "seq")?,
        queue: required(f.text("queue")?, "queue")?,
        payload,
        priority: required(f.parsed("priority", "integer")?, "priority")?,
        scheduled_for: required(f.time("scheduled_for")?, "scheduled_for")?,
        created_at: required(f.time("created_at")?, "created_at")?,
        attempts: required(f.parsed("attempts", "integer")?, "attempts")?,
        max_attempts: required(f.parsed("max_attempts", "integer")?, "max_attempts")?,
        claimed_by: f.text("claimed_by")?,
        claimed_at: f.time("claimed_at")?,
        lease_until: f.time("lease_until")?,
        completed_at: f.time("completed_at")?,
        failed_at: f.time("failed_at")?,
        error: f.text("error")?,
        result,
        dedup_key: f.text("dedup_key")?,
    })
}
