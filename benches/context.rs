//! What a thread's length costs a prompt: prompts on a thread of 10 messages and on a thread of
//! 10,000 messages, interleaved in one run against the mock provider (which answers at once),
//! each timed from the agent's call to its reply. The long thread's context is its window
//! (`context_tokens = 16000`, the design document's `window.resize(16000)`); the short one's is
//! its 10 messages. The mock reports usage as a tokenizer would (four bytes per token), so the
//! window's calibration is realistic. Provider time is taken out: the two threads' request
//! bodies, as recorded, are posted straight to the mock the same number of times, and what the
//! long body costs the mock there is subtracted. The database runs with `synchronous_commit =
//! off`: both threads' turns end with the same commit, and its fsync's jitter on a shared disk
//! (milliseconds) would hide the difference measured.
//!
//! First, memory: `BENCH_IDLE` (100) threads of 10,000 messages are loaded by one prompt each,
//! right after start-up and one warm-up prompt, and left idle; the daemon's resident memory
//! growth divided by their number is an idle thread's cost.
//!
//! `BENCH_TURNS` (1000) prompts per thread. Last line:
//! `context added_p99_us=<n> idle_thread_kib=<n>`.

mod support;

use ikigai_client::Client;
use ikigai_mock_llm::{Api, MockLlm, Reply};
use serde_json::{json, Value};
use std::time::Instant;
use support::{env, percentile, sql, Daemon, Db};
use uuid::Uuid;

/// Makes a thread of `agent` holding `messages` messages (user and assistant in turns, one
/// exchange per pair), as many turns of prompts would have stored them.
async fn thread_of(db: &Db, agent: &str, messages: i32) -> String {
    let id = Uuid::new_v4();
    let c = sql(&db.url()).await;
    c.execute(
        "INSERT INTO llm_thread (id, agent, context) VALUES ($1, $2, 'You answer questions.')",
        &[&id, &agent],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO llm_thread_message (thread_id, seq, exchange, message) \
         SELECT $1::uuid, g, md5($1::uuid::text || (g / 2)::text)::uuid, jsonb_build_object('role', \
           CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END, 'content', \
           'message ' || g || repeat(' lorem ipsum dolor', 6)) \
         FROM generate_series(0, $2 - 1) g",
        &[&id, &messages],
    )
    .await
    .unwrap();
    id.to_string()
}

/// One prompt on `thread` (`""`: none, stateless); its time in microseconds.
async fn prompt(c: &Client, thread: &str) -> u64 {
    let mut args = json!({"model": "fast", "max_tokens": 256,
        "messages": [{"role": "user", "content": "and then?"}]});
    if !thread.is_empty() {
        args["thread"] = json!(thread);
    }
    let started = Instant::now();
    let reply: Value = c.call("llm.prompt", &args).await.unwrap();
    assert_eq!(reply["content"], "ok");
    started.elapsed().as_micros() as u64
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resident KiB per idle thread of 10,000 messages, over `idle` of them.
async fn idle_cost(db: &Db, daemon: &Daemon, c: &Client, idle: usize) -> u64 {
    let mut threads = Vec::with_capacity(idle);
    for _ in 0..idle {
        threads.push(thread_of(db, "bench", 10_000).await);
    }
    let before = rss_kib(daemon.pid());
    for t in &threads {
        prompt(c, t).await;
    }
    let status: Value = c.call("daemon.status", &json!({})).await.unwrap();
    let after = rss_kib(daemon.pid());
    let per = after.saturating_sub(before) / idle.max(1) as u64;
    println!(
        "{idle} idle threads of 10,000 messages loaded: daemon RSS {before} KiB -> {after} KiB, \
         {per} KiB each (threads running: {})",
        status["threads_running"]
    );
    per
}

/// What the long thread's request body costs the mock over the short one's, at p50 and p99,
/// posted straight to it `n` times each, interleaved; and the long body's size.
async fn provider_cost(
    mock: &MockLlm,
    c: &Client,
    short: &str,
    long: &str,
    n: usize,
) -> (u64, u64, usize) {
    mock.start_recording();
    prompt(c, short).await;
    prompt(c, long).await;
    mock.stop_recording();
    let bodies: Vec<Value> = mock
        .received()
        .iter()
        .rev()
        .take(2)
        .map(|r| r.body.clone())
        .collect();
    let (long_body, short_body) = (&bodies[0], &bodies[1]);
    let http = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", mock.url());
    let post = |body: &Value| {
        let send = http.post(&url).json(body).send();
        async move {
            let started = Instant::now();
            let reply: Value = send.await.unwrap().json().await.unwrap();
            assert_eq!(reply["choices"][0]["message"]["content"], "ok");
            started.elapsed().as_micros() as u64
        }
    };
    for _ in 0..n {
        mock.push(Api::OpenAi, Reply::text("ok"));
        mock.push(Api::OpenAi, Reply::text("ok"));
    }
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        a.push(post(short_body).await);
        b.push(post(long_body).await);
    }
    let mut d = |p| percentile(&mut b, p).saturating_sub(percentile(&mut a, p));
    let (d50, d99) = (d(0.5), d(0.99));
    (d50, d99, long_body.to_string().len())
}

#[tokio::main]
async fn main() {
    let turns = env("BENCH_TURNS", 1000);
    let idle = env("BENCH_IDLE", 100);
    let mock = MockLlm::start().await;
    mock.stop_recording();
    let db = Db::create("context").await;
    // Both threads' turns end with the same append commit; without its fsync, whose time on
    // this shared disk varies by milliseconds, the difference between the threads shows.
    sql(&db.url())
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = off",
            db.name
        ))
        .await
        .unwrap();
    let config = format!(
        "[llm.provider.mock]\nkind = openai\nbase_url = {}\n\
         [llm.model.fast]\ntargets = mock:mock-1\ncontext_tokens = 16000\n",
        mock.url()
    );
    let daemon = Daemon::start_with(&db, &config).await;
    let manifest = json!({"name": "bench", "version": "1", "command": ["x"],
        "permissions": {"llm": {"models": ["fast"]}}});
    sql(&db.url())
        .await
        .execute(
            "INSERT INTO agent_registry (name, version, manifest, status) VALUES ('bench', '1', $1, 'running')",
            &[&manifest],
        )
        .await
        .unwrap();
    let c = daemon.client("bench").await;
    for _ in 0..(turns + 60) * 3 + idle + 1 {
        mock.push(Api::OpenAi, Reply::counted("ok"));
    }
    let short = thread_of(&db, "bench", 10).await;
    prompt(&c, &short).await;
    let per = idle_cost(&db, &daemon, &c, idle).await;
    let long = thread_of(&db, "bench", 10_000).await;
    println!("context: {turns} prompts each on a thread of 10 and of 10,000 messages, interleaved; window 16000 tokens");
    for _ in 0..50 {
        prompt(&c, &short).await;
        prompt(&c, &long).await;
    }
    let (mut a, mut b) = (Vec::with_capacity(turns), Vec::with_capacity(turns));
    let mut stateless = Vec::with_capacity(turns);
    for _ in 0..turns {
        a.push(prompt(&c, &short).await);
        b.push(prompt(&c, &long).await);
        stateless.push(prompt(&c, "").await);
    }
    let (s50, s99) = (
        percentile(&mut stateless, 0.5),
        percentile(&mut stateless, 0.99),
    );
    println!("through the daemon, no thread         p50 {s50:>6} us  p99 {s99:>6} us");
    let (a50, a99) = (percentile(&mut a, 0.5), percentile(&mut a, 0.99));
    let (b50, b99) = (percentile(&mut b, 0.5), percentile(&mut b, 0.99));
    println!("through the daemon, 10 messages       p50 {a50:>6} us  p99 {a99:>6} us");
    println!("through the daemon, 10,000 messages   p50 {b50:>6} us  p99 {b99:>6} us");
    let (d50, d99, bytes) = provider_cost(&mock, &c, &short, &long, turns).await;
    println!("the mock alone, long body ({bytes} bytes) minus short: p50 {d50} us, p99 {d99} us");
    let added_p50 = b50.saturating_sub(a50).saturating_sub(d50);
    let added_p99 = b99.saturating_sub(a99).saturating_sub(d99);
    println!(
        "added by the long thread, provider time taken out: p50 {added_p50} us, p99 {added_p99} us"
    );
    drop(daemon);
    db.drop_now().await;
    println!("context added_p99_us={added_p99} idle_thread_kib={per}");
}
