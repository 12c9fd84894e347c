//! The SQL of LLM access: quota reservations, the interaction log (which
//! settles reservations in the same transaction), and usage reports (threads: `context`).

use super::rows::undecodable;
use super::store_error;
use crate::llm::log::Interaction;
use crate::llm::quota::Reserved;
use deadpool_postgres::Pool;
use ikigai_actors::store::StoreError;
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// Reserves each of `tokens`, in order, of `agent`'s hourly `limit` (see `ikigai_llm_reserve`
/// in schema.sql: one statement, serialised per agent across daemons by an advisory lock).
pub async fn reserve(
    pool: &Pool,
    agent: &str,
    tokens: &[u64],
    limit: u64,
    ttl: Duration,
) -> Result<Vec<Reserved>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let big = |n: u64| n.min(i64::MAX as u64) as i64;
    let tokens: Vec<i64> = tokens.iter().map(|t| big(*t)).collect();
    let rows = client
        .query(
            "SELECT * FROM ikigai_llm_reserve($1, $2, $3, $4)",
            &[&agent, &tokens, &big(limit), &big(ttl.as_millis() as u64)],
        )
        .await
        .map_err(store_error)?;
    let outcome = |row: &tokio_postgres::Row| -> Result<Reserved, tokio_postgres::Error> {
        let count = |i| row.try_get::<_, i64>(i).map(i64::unsigned_abs);
        Ok(match row.try_get::<_, Option<Uuid>>(0)? {
            Some(id) => Reserved::Granted(Some(id)),
            None => Reserved::Refused {
                used: count(1)?,
                held: count(2)?,
                retry_after_ms: count(3)?,
            },
        })
    };
    rows.iter()
        .map(outcome)
        .collect::<Result<_, _>>()
        .map_err(undecodable)
}

/// Adds a batch's tokens to the per-minute usage the quota sums (in a fixed order, so that
/// two daemons' writers cannot deadlock).
const ADD_USAGE: &str = "INSERT INTO llm_usage_minute (agent, minute, tokens) \
    SELECT agent, date_trunc('minute', at), SUM(tokens) \
    FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]) AS t(agent, at, tokens) \
    GROUP BY 1, 2 ORDER BY 1, 2 \
    ON CONFLICT (agent, minute) DO UPDATE SET tokens = llm_usage_minute.tokens + EXCLUDED.tokens";

const INSERT_INTERACTION: &str = "INSERT INTO llm_interactions (id, agent_name, thread_id, model, \
    tokens_used, cost_usd, metadata, created_at, provider, provider_model, request, response, \
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, latency_ms, attempts, \
    error) VALUES ($1, $2, $3, $4, $5, $6::float8, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
    $17, $18, $19)";

/// Writes a batch of interactions and deletes the reservations they settle, in one transaction.
pub async fn write_interactions(pool: &Pool, batch: &[Interaction]) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(store_error)?;
    let tx = client.transaction().await.map_err(store_error)?;
    let insert = tx.prepare(INSERT_INTERACTION).await.map_err(store_error)?;
    let writes = batch.iter().map(|i| {
        let u = &i.usage;
        let n = |v: u64| v.min(i32::MAX as u64) as i32;
        let attempts = serde_json::to_value(&i.attempts).unwrap_or_default();
        let tx = &tx;
        let insert = &insert;
        async move {
            tx.execute(
                insert,
                &[
                    &i.id,
                    &i.agent,
                    &i.thread,
                    &i.model,
                    &n(u.total()),
                    &i.cost_usd,
                    &i.metadata,
                    &i.created_at,
                    &i.provider,
                    &i.provider_model,
                    &i.request,
                    &i.response,
                    &n(u.input_tokens),
                    &n(u.output_tokens),
                    &n(u.cache_read_tokens),
                    &n(u.cache_write_tokens),
                    &n(i.latency_ms),
                    &attempts,
                    &i.error,
                ],
            )
            .await
        }
    });
    futures::future::try_join_all(writes)
        .await
        .map_err(store_error)?;
    let agents: Vec<&str> = batch.iter().map(|i| i.agent.as_str()).collect();
    let times: Vec<_> = batch.iter().map(|i| i.created_at).collect();
    let tokens: Vec<i64> = batch.iter().map(|i| i.usage.total() as i64).collect();
    tx.execute(ADD_USAGE, &[&agents, &times, &tokens])
        .await
        .map_err(store_error)?;
    let settled: Vec<Uuid> = batch.iter().filter_map(|i| i.reservation).collect();
    if !settled.is_empty() {
        tx.execute(
            "DELETE FROM llm_reservation WHERE id = ANY($1)",
            &[&settled],
        )
        .await
        .map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)
}

/// Tokens and cost per agent and model since `since` ago, as JSON rows.
pub async fn usage(pool: &Pool, since: Duration) -> Result<Vec<Value>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let rows = client
        .query(
            "SELECT json_build_object('agent', agent_name, 'model', model, 'calls', count(*), \
             'input_tokens', SUM(input_tokens), 'output_tokens', SUM(output_tokens), \
             'tokens', SUM(tokens_used), 'cost_usd', SUM(cost_usd)::float8, \
             'errors', count(error)) FROM llm_interactions \
             WHERE created_at > now() - $1 * interval '1 millisecond' \
             GROUP BY agent_name, model ORDER BY agent_name, model",
            &[&(since.as_millis() as f64)],
        )
        .await
        .map_err(store_error)?;
    json_rows(&rows)
}

/// Column 0 of each row, a JSON value.
fn json_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<Value>, StoreError> {
    rows.iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(undecodable)
}

/// An agent's own interactions, newest first, as the `query_telemetry` tool shows them: what
/// was asked (the last user message) and answered, tools called, tokens, cost, error.
pub async fn recent(
    pool: &Pool,
    agent: &str,
    since: Option<chrono::DateTime<chrono::Utc>>,
    text: Option<&str>,
    limit: i64,
) -> Result<Vec<Value>, StoreError> {
    let client = pool.get().await.map_err(store_error)?;
    let rows = client
        .query(
            "SELECT json_build_object('id', id, 'created_at', created_at, 'model', model, \
             'provider', provider, 'thread', thread_id, 'metadata', metadata, \
             'input_tokens', input_tokens, 'output_tokens', output_tokens, \
             'cost_usd', cost_usd::float8, 'latency_ms', latency_ms, 'error', error, \
             'asked', left((SELECT m->>'content' FROM jsonb_array_elements( \
               CASE WHEN jsonb_typeof(request->'messages') = 'array' THEN request->'messages' \
               ELSE '[]' END) WITH ORDINALITY AS a(m, i) WHERE m->>'role' = 'user' \
               ORDER BY i DESC LIMIT 1), 2000), \
             'answered', left(response->>'content', 2000), \
             'tool_calls', (SELECT json_agg(c->>'name') FROM jsonb_array_elements( \
               CASE WHEN jsonb_typeof(response->'tool_calls') = 'array' \
               THEN response->'tool_calls' ELSE '[]' END) c)) \
             FROM llm_interactions WHERE agent_name = $1 \
             AND ($2::timestamptz IS NULL OR created_at >= $2) \
             AND ($3::text IS NULL OR strpos(lower(request::text), lower($3)) > 0 \
               OR strpos(lower(response::text), lower($3)) > 0) \
             ORDER BY created_at DESC LIMIT $4",
            &[&agent, &since, &text, &limit],
        )
        .await
        .map_err(store_error)?;
    json_rows(&rows)
}
