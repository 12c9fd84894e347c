//! The SQL of threads and their context (protocol section 18): threads and the default thread,
//! the append-only history (`llm_thread_message`), the context's events (`llm_context_event`),
//! and the reads that rebuild a thread's view: its newest in-context entries, pages and ranges
//! of history, and full-text search.

use super::rows::{report, undecodable};
use super::store_error;
use crate::llm::context::{tokens, Entry, Event, Filter, Mark, Summary};
use crate::llm::provider::Message;
use crate::llm::window::{Strategy, Window};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use ikigai_actors::store::StoreError;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::Row;
use uuid::Uuid;

/// A thread's row.
pub struct Head {
    pub agent: String,
    pub context: Option<String>,
    pub window: Window,
    /// The history's length.
    pub next_seq: u32,
}

pub async fn create_thread(
    pool: &Pool,
    id: Uuid,
    agent: &str,
    context: Option<&str>,
) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    client
        .execute(
            "INSERT INTO llm_thread (id, agent, context) VALUES ($1, $2, $3)",
            &[&id, &agent, &context],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The agent's default thread, created on first use.
pub async fn default_thread(pool: &Pool, agent: &str) -> Result<Uuid, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    client
        .execute(
            "INSERT INTO llm_thread (id, agent, is_default) VALUES ($1, $2, true) \
             ON CONFLICT (agent) WHERE is_default DO NOTHING",
            &[&Uuid::now_v7(), &agent],
        )
        .await
        .map_err(store_error)?;
    let row = client
        .query_one(
            "SELECT id FROM llm_thread WHERE agent = $1 AND is_default",
            &[&agent],
        )
        .await
        .map_err(store_error)?;
    row.try_get(0).map_err(undecodable)
}

/// The agent a thread belongs to; `None` if there is no such thread.
pub async fn thread_owner(pool: &Pool, id: Uuid) -> Result<Option<String>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let row = client
        .query_opt("SELECT agent FROM llm_thread WHERE id = $1", &[&id])
        .await
        .map_err(store_error)?;
    row.map(|r| r.try_get(0)).transpose().map_err(undecodable)
}

pub async fn head(pool: &Pool, id: Uuid) -> Result<Option<Head>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let row = client
        .query_opt(
            "SELECT agent, context, window_tokens, window_strategy, \
             (SELECT COALESCE(max(seq) + 1, 0) FROM llm_thread_message WHERE thread_id = $1) \
             FROM llm_thread WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(store_error)?;
    let Some(row) = row else { return Ok(None) };
    let strategy: String = row.try_get(3).map_err(undecodable)?;
    let strategy =
        Strategy::parse(&strategy).map_err(|e| StoreError::Undecodable(e.to_string()))?;
    let tokens: Option<i32> = row.try_get(2).map_err(undecodable)?;
    let next: i32 = row.try_get(4).map_err(undecodable)?;
    Ok(Some(Head {
        agent: row.try_get(0).map_err(undecodable)?,
        context: row.try_get(1).map_err(undecodable)?,
        window: Window {
            tokens: tokens.map(|t| t as u32),
            strategy,
        },
        next_seq: next as u32,
    }))
}

/// The thread's context events in order, as the view replays them (a rewind carries the
/// summary it restores).
pub async fn events(pool: &Pool, id: Uuid) -> Result<Vec<Event>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let rows = client
        .query(
            "SELECT n, kind, position, until_pos, mark_id, label, exchange, summary_ref, body \
             FROM llm_context_event WHERE thread_id = $1 ORDER BY n",
            &[&id],
        )
        .await
        .map_err(store_error)?;
    let mut summaries: HashMap<i64, Summary> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let event = event(row, &summaries).map_err(undecodable)?;
        if let Some(Event::Summary(s)) = &event {
            summaries.insert(s.n, s.clone());
        }
        out.extend(event);
    }
    Ok(out)
}

fn event(
    row: &Row,
    summaries: &HashMap<i64, Summary>,
) -> Result<Option<Event>, tokio_postgres::Error> {
    let position = |i| {
        row.try_get::<_, Option<i32>>(i)
            .map(|p| p.unwrap_or(0) as u32)
    };
    let summary_ref: Option<i64> = row.try_get(7)?;
    let kind: &str = row.try_get(1)?;
    Ok(Some(match kind {
        "mark" => Event::Mark(Mark {
            id: row.try_get(4)?,
            label: row.try_get(5)?,
            position: position(2)?,
            summary: summary_ref,
        }),
        "rewind" => Event::Rewind {
            from: position(2)?,
            until: position(3)?,
            summary: summary_ref.and_then(|n| summaries.get(&n).cloned()),
        },
        "exclude" => Event::Exclude(row.try_get(6)?),
        "summary" => Event::Summary(Summary {
            n: row.try_get(0)?,
            covers: position(2)?,
            text: row.try_get(8)?,
        }),
        // A deletion is already in the message row (erased).
        _ => return Ok(None),
    }))
}

/// A change to store: the event's columns.
#[derive(Default)]
pub struct NewEvent<'a> {
    pub kind: &'static str,
    pub position: Option<u32>,
    pub until: Option<u32>,
    pub mark: Option<Uuid>,
    pub label: Option<&'a str>,
    pub exchange: Option<Uuid>,
    pub summary_ref: Option<i64>,
    pub body: Option<&'a str>,
    pub interaction: Option<Uuid>,
}

/// Stores an event; returns its `n`.
pub async fn insert_event(pool: &Pool, id: Uuid, e: &NewEvent<'_>) -> Result<i64, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let pos = |p: Option<u32>| p.map(|p| p as i32);
    let row = client
        .query_one(
            "INSERT INTO llm_context_event (thread_id, kind, position, until_pos, mark_id, label, \
             exchange, summary_ref, body, interaction) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING n",
            &[
                &id,
                &e.kind,
                &pos(e.position),
                &pos(e.until),
                &e.mark,
                &e.label,
                &e.exchange,
                &e.summary_ref,
                &e.body,
                &e.interaction,
            ],
        )
        .await
        .map_err(store_error)?;
    row.try_get(0).map_err(undecodable)
}

/// A stored summary's text.
pub async fn summary(pool: &Pool, n: i64) -> Result<Option<Summary>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let row = client
        .query_opt(
            "SELECT position, body FROM llm_context_event WHERE n = $1 AND kind = 'summary'",
            &[&n],
        )
        .await
        .map_err(store_error)?;
    let Some(row) = row else { return Ok(None) };
    let covers: i32 = row.try_get(0).map_err(undecodable)?;
    Ok(Some(Summary {
        n,
        covers: covers as u32,
        text: row.try_get(1).map_err(undecodable)?,
    }))
}

/// The number of messages of `exchange` in the thread.
pub async fn exchange_len(pool: &Pool, id: Uuid, exchange: Uuid) -> Result<u32, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let row = client
        .query_one(
            "SELECT count(*) FROM llm_thread_message WHERE thread_id = $1 AND exchange = $2",
            &[&id, &exchange],
        )
        .await
        .map_err(store_error)?;
    let n: i64 = row.try_get(0).map_err(undecodable)?;
    Ok(n as u32)
}

pub async fn set_window(pool: &Pool, id: Uuid, w: Window) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    client
        .execute(
            "UPDATE llm_thread SET window_tokens = $2, window_strategy = $3 WHERE id = $1",
            &[&id, &w.tokens.map(|t| t as i32), &w.strategy.as_str()],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Appends one exchange's entries (a conflict if another writer took their positions).
pub async fn append(pool: &Pool, id: Uuid, entries: &[Entry]) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let seqs: Vec<i32> = entries.iter().map(|e| e.seq as i32).collect();
    let exchanges: Vec<Option<Uuid>> = entries.iter().map(|e| e.exchange).collect();
    let messages: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| serde_json::to_value(&*e.message).unwrap_or_default())
        .collect();
    let tokens: Vec<i32> = entries.iter().map(|e| e.tokens as i32).collect();
    client
        .execute(
            "INSERT INTO llm_thread_message (thread_id, seq, exchange, message, tokens) \
             SELECT $1, s, x, m, t FROM unnest($2::int[], $3::uuid[], $4::jsonb[], $5::int[]) \
             AS u(s, x, m, t)",
            &[&id, &seqs, &exchanges, &messages, &tokens],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

const ENTRY: &str = "seq, exchange, message, tokens, created_at, erased_at IS NOT NULL";

/// Reads history rows; one that does not decode (written beside the daemon) is reported and
/// skipped, and so is the rest of its exchange, so that no tool call loses its result.
fn entries(id: Uuid, rows: &[Row]) -> Vec<Entry> {
    let mut broken = std::collections::HashSet::new();
    let mut good = Vec::with_capacity(rows.len());
    for row in rows {
        match entry(row) {
            Ok(e) => good.push(e),
            Err(e) => {
                let seq = row.try_get::<_, i32>(0).unwrap_or(-1);
                let name = format!("{id}/{seq}");
                report("llm_thread_message", &name, &e, "skipped with its exchange");
                broken.insert(row.try_get::<_, Option<Uuid>>(1).ok().flatten());
            }
        }
    }
    good.retain(|e| e.exchange.is_none() || !broken.contains(&e.exchange));
    good
}

fn entry(row: &Row) -> Result<Entry, StoreError> {
    let seq: i32 = row.try_get(0).map_err(undecodable)?;
    let value: serde_json::Value = row.try_get(2).map_err(undecodable)?;
    let message: Message = serde_json::from_value(value)
        .map_err(|e| StoreError::Undecodable(format!("thread message {seq}: {e}")))?;
    let stored: Option<i32> = row.try_get(3).map_err(undecodable)?;
    Ok(Entry {
        bpe: None,
        seq: seq as u32,
        exchange: row.try_get(1).map_err(undecodable)?,
        tokens: stored.map_or_else(|| tokens(&message), |t| t as u32),
        message: Arc::new(message),
        at: row.try_get::<_, DateTime<Utc>>(4).map_err(undecodable)?,
        erased: row.try_get(5).map_err(undecodable)?,
    })
}

/// History entries with `from <= seq < until`, oldest first.
pub async fn range(pool: &Pool, id: Uuid, from: u32, until: u32) -> Result<Vec<Entry>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let sql = format!(
        "SELECT {ENTRY} FROM llm_thread_message WHERE thread_id = $1 AND seq >= $2 AND seq < $3 \
         ORDER BY seq"
    );
    let rows = client
        .query(
            &sql,
            &[&id, &(from as i32), &(until.min(i32::MAX as u32) as i32)],
        )
        .await
        .map_err(store_error)?;
    Ok(entries(id, &rows))
}

/// The `limit` entries before `before`, oldest first.
pub async fn page(
    pool: &Pool,
    id: Uuid,
    before: u32,
    limit: u32,
) -> Result<Vec<Entry>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let sql = format!(
        "SELECT * FROM (SELECT {ENTRY} FROM llm_thread_message WHERE thread_id = $1 AND seq < $2 \
         ORDER BY seq DESC LIMIT $3) p ORDER BY seq"
    );
    let before = before.min(i32::MAX as u32) as i32;
    let rows = client
        .query(&sql, &[&id, &before, &i64::from(limit)])
        .await
        .map_err(store_error)?;
    Ok(entries(id, &rows))
}

/// The newest in-context entries (by `filter`), whole exchanges, until `keep` tokens are
/// reached; and whether older in-context entries remain.
pub async fn tail(
    pool: &Pool,
    id: Uuid,
    filter: &Filter,
    next_seq: u32,
    keep: u64,
) -> Result<(Vec<Entry>, bool), StoreError> {
    const PAGE: u32 = 512;
    let mut newest_first: Vec<Entry> = Vec::new();
    let mut used = 0u64;
    let mut before = next_seq;
    while before > filter.covers {
        let rows = page(pool, id, before, PAGE).await?;
        let Some(first) = rows.first() else { break };
        before = first.seq;
        for e in rows.into_iter().rev().filter(|e| e.seq >= filter.covers) {
            let continues = newest_first
                .last()
                .is_some_and(|n| !crate::llm::context::new_exchange(&e, n));
            if !filter.keeps(&e) {
                continue;
            }
            if used + u64::from(e.tokens) > keep && !continues {
                newest_first.reverse();
                return Ok((newest_first, true));
            }
            used += u64::from(e.tokens);
            newest_first.push(e);
        }
    }
    newest_first.reverse();
    Ok((newest_first, false))
}

/// The first message at or after `from` stored after `time` (the end of what `older_than`
/// covers); `None` when every message is older.
pub async fn first_after(
    pool: &Pool,
    id: Uuid,
    from: u32,
    time: DateTime<Utc>,
) -> Result<Option<u32>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let row = client
        .query_one(
            "SELECT min(seq) FROM llm_thread_message WHERE thread_id = $1 AND seq >= $2 \
             AND created_at > $3",
            &[&id, &(from as i32), &time],
        )
        .await
        .map_err(store_error)?;
    let seq: Option<i32> = row.try_get(0).map_err(undecodable)?;
    Ok(seq.map(|s| s as u32))
}

/// What a deleted message keeps: its role, call ids and names.
pub fn erased(m: &Message) -> Message {
    let mut m = m.clone();
    m.content = "[deleted]".into();
    for call in &mut m.tool_calls {
        call.arguments = serde_json::json!({});
    }
    m
}

/// Erases a message's content, and the same content in the thread's interaction log; records
/// the deletion. Returns what remains, `None` when there is no such message.
pub async fn delete(pool: &Pool, id: Uuid, seq: u32) -> Result<Option<Message>, StoreError> {
    let mut client = pool.get().await.map_err(store_error)?;
    let tx = client.transaction().await.map_err(store_error)?;
    let row = tx
        .query_opt(
            "SELECT message FROM llm_thread_message WHERE thread_id = $1 AND seq = $2 FOR UPDATE",
            &[&id, &(seq as i32)],
        )
        .await
        .map_err(store_error)?;
    let Some(row) = row else { return Ok(None) };
    let value: serde_json::Value = row.try_get(0).map_err(undecodable)?;
    let message: Message = serde_json::from_value(value.clone())
        .map_err(|e| StoreError::Undecodable(format!("thread message {seq}: {e}")))?;
    let kept = erased(&message);
    let kept_json = serde_json::to_value(&kept).unwrap_or_default();
    tx.execute(
        "UPDATE llm_thread_message SET message = $3, tokens = $4, \
         erased_at = COALESCE(erased_at, now()) WHERE thread_id = $1 AND seq = $2",
        &[&id, &(seq as i32), &kept_json, &(tokens(&kept) as i32)],
    )
    .await
    .map_err(store_error)?;
    if !message.content.is_empty() && message.content != kept.content {
        scrub_log(&tx, id, &message.content).await?;
    }
    tx.execute(
        "INSERT INTO llm_context_event (thread_id, kind, position) VALUES ($1, 'delete', $2)",
        &[&id, &(seq as i32)],
    )
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(Some(kept))
}

/// Replaces `content` by `[deleted]` wherever the thread's interactions carry it as a
/// message's content (requests) or as the answer (responses).
async fn scrub_log(
    tx: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    content: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE llm_interactions SET \
           request = CASE WHEN jsonb_typeof(request->'messages') = 'array' THEN jsonb_set(request, \
             '{messages}', (SELECT COALESCE(jsonb_agg(CASE WHEN m->>'content' = $2 \
               THEN jsonb_set(m, '{content}', '\"[deleted]\"') ELSE m END ORDER BY i), '[]') \
               FROM jsonb_array_elements(request->'messages') WITH ORDINALITY AS a(m, i))) \
             ELSE request END, \
           response = CASE WHEN response->>'content' = $2 \
             THEN jsonb_set(response, '{content}', '\"[deleted]\"') ELSE response END \
         WHERE thread_id = $1 AND (request->'messages' @> jsonb_build_array(\
           jsonb_build_object('content', $2::text)) OR response->>'content' = $2)",
        &[&id, &content],
    )
    .await
    .map_err(store_error)?;
    Ok(())
}

/// Full-text search over the agent's history (one thread, or all of its threads).
pub async fn search(
    pool: &Pool,
    agent: &str,
    thread: Option<Uuid>,
    text: &str,
    limit: u32,
) -> Result<Vec<(Uuid, Entry)>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let sql = format!(
        "SELECT {ENTRY}, thread_id FROM (SELECT m.*, ts_rank(to_tsvector('simple', \
         m.message->>'content'), q) AS rank FROM llm_thread_message m JOIN llm_thread t \
         ON t.id = m.thread_id, websearch_to_tsquery('simple', $2) q \
         WHERE t.agent = $1 AND ($3::uuid IS NULL OR t.id = $3) \
         AND to_tsvector('simple', m.message->>'content') @@ q) found \
         ORDER BY rank DESC, created_at DESC LIMIT $4"
    );
    let rows = client
        .query(&sql, &[&agent, &text, &thread, &i64::from(limit)])
        .await
        .map_err(store_error)?;
    let found = rows.iter().filter_map(|r| {
        let thread: Uuid = r.try_get(6).ok()?;
        Some((thread, entries(thread, std::slice::from_ref(r)).pop()?))
    });
    Ok(found.collect())
}
