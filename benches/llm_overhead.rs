//! What the daemon adds to an LLM call: the same chat requests, at a fixed rate (open loop),
//! sent straight to the mock provider over HTTP and sent as `llm.prompt` through the daemon
//! (permissions, quota check, routing, the provider call, the interaction log), in one run.
//! Latency is measured from each request's scheduled time, so queueing counts.
//!
//! Two agents go through the daemon: `bench` (no hourly limit: the interaction log is on, the
//! quota statement is not run) and `metered` (an hourly limit: one reservation per call).
//! `BENCH_RPS` (1000) requests per second for `BENCH_SECS` (5) seconds each, after a warm-up.
//! Last line: `llm_overhead p50_us=<n> p99_us=<n> at_rps=<n>` (`bench` minus direct).

mod support;

use ikigai_client::Client;
use ikigai_mock_llm::MockLlm;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{env, sql, Daemon, Db, Run};

fn body() -> Value {
    json!({"model": "mock-1", "messages": [{"role": "user", "content": "Classify: login fails"}],
        "max_tokens": 64})
}

/// Runs `call` `n` times, the i-th at `start + i / rps`, each on its own task.
async fn open_loop<F, Fut>(name: &'static str, rps: usize, n: usize, call: F) -> Run
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let interval = Duration::from_secs_f64(1.0 / rps as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (fut, latencies) = (call(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            fut.await;
            latencies
                .lock()
                .unwrap()
                .push(due.elapsed().as_micros() as u64);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let latencies_us = std::mem::take(&mut *latencies.lock().unwrap());
    Run {
        name,
        messages: n,
        elapsed: start.elapsed(),
        latencies_us,
    }
}

async fn direct(url: &str, rps: usize, n: usize) -> Run {
    let http = reqwest::Client::new();
    let url = format!("{url}/v1/chat/completions");
    open_loop("direct", rps, n, || {
        let post = http.post(&url).json(&body()).send();
        async move {
            let reply: Value = post.await.unwrap().json().await.unwrap();
            assert_eq!(reply["choices"][0]["message"]["content"], "ok");
        }
    })
    .await
}

async fn through_daemon(name: &'static str, client: Arc<Client>, rps: usize, n: usize) -> Run {
    let args = json!({"model": "fast", "messages": body()["messages"], "max_tokens": 64});
    open_loop(name, rps, n, || {
        let (client, args) = (client.clone(), args.clone());
        async move {
            let reply: Value = client.call("llm.prompt", &args).await.unwrap();
            assert_eq!(reply["content"], "ok");
        }
    })
    .await
}

/// Registers `agent` with the `fast` model and an hourly limit when `metered`.
async fn register(db: &Db, agent: &str, metered: bool) {
    let hourly = metered.then_some(1_000_000_000u64);
    let manifest = json!({"name": agent, "version": "1", "command": ["x"],
        "permissions": {"llm": {"models": ["fast"], "max_tokens_per_hour": hourly}}});
    sql(&db.url())
        .await
        .execute(
            "INSERT INTO agent_registry (name, version, manifest, status) VALUES ($1, '1', $2, 'running')",
            &[&agent, &manifest],
        )
        .await
        .unwrap();
}

async fn daemon(mock: &MockLlm, db: &Db) -> Daemon {
    let config = format!(
        "[llm.provider.mock]\nkind = openai\nbase_url = {}\n\
         [llm.model.fast]\ntargets = mock:mock-1\ninput_per_mtok = 1\noutput_per_mtok = 2\n",
        mock.url()
    );
    let daemon = Daemon::start_with(db, &config).await;
    register(db, "bench", false).await;
    register(db, "metered", true).await;
    daemon
}

/// What `run` adds to `base` at p50 and p99, in microseconds.
fn added(run: &mut Run, base: &mut Run) -> (u64, u64) {
    let mut at = |p| run.percentile(p).saturating_sub(base.percentile(p));
    (at(0.50), at(0.99))
}

#[tokio::main]
async fn main() {
    let rps = env("BENCH_RPS", 1000);
    let n = rps * env("BENCH_SECS", 5);
    let warmup = rps / 2;
    let mock = MockLlm::start().await;
    mock.stop_recording();
    let db = Db::create("llm").await;
    let daemon = daemon(&mock, &db).await;
    let client = Arc::new(daemon.client("bench").await);
    let metered_client = Arc::new(daemon.client("metered").await);
    println!("llm_overhead: {n} chat requests at {rps}/s, direct to the mock provider and through the daemon");
    direct(&mock.url(), rps, warmup).await;
    through_daemon("daemon", client.clone(), rps, warmup).await;
    through_daemon("metered", metered_client.clone(), rps, warmup).await;
    let mut direct = direct(&mock.url(), rps, n).await;
    let mut through = through_daemon("daemon", client, rps, n).await;
    let mut metered = through_daemon("metered", metered_client, rps, n).await;
    direct.report("calls", "latency");
    through.report("calls", "latency");
    metered.report("calls", "latency");
    let (p50, p99) = added(&mut metered, &mut direct);
    println!("with an hourly quota (one reservation statement per call): added p50_us={p50} p99_us={p99}");
    let logged = sql(&db.url())
        .await
        .query_one("SELECT count(*) FROM llm_interactions", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    println!("interaction rows logged so far: {logged}");
    let (p50, p99) = added(&mut through, &mut direct);
    drop(daemon);
    db.drop_now().await;
    println!("llm_overhead p50_us={p50} p99_us={p99} at_rps={rps}");
}
