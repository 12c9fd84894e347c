//! `cargo bench --bench sdk_throughput`: the mailbox round trip (send -> receive -> ack) through
//! the Rust, TypeScript and Python clients, against one daemon in one run, and each client's
//! ratio to Rust. A client must not be the bottleneck of an agent.
//!
//! Each path: one producer connection pipelines `BENCH_MESSAGES` (50000) sends to one mailbox
//! with at most `BENCH_WINDOW` (256) in flight; one consumer connection receives (up to 1000 at a
//! time) and acks each batch; the time runs from the first send to the last ack. The TypeScript
//! and Python paths run the clients' own `mailbox_roundtrip` scripts, which print
//! `{"messages", "seconds", "msgs_per_s"}`. `BENCH_RUNS` (1) repeats all three, interleaved.

mod support;

use ikigai_client::{Client, Receive};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use support::{env, pipelined, Daemon, Db};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Clone, Copy)]
struct Params {
    messages: usize,
    window: usize,
}

/// The Rust client's round trip, msgs/s.
async fn rust(d: &Daemon, p: Params, run: usize) -> f64 {
    let consumer = format!("rs_c{run}");
    let (tx, rx) = (
        d.client(&format!("rs_p{run}")).await,
        d.client(&consumer).await,
    );
    let started = Instant::now();
    let receiving = tokio::spawn(receive_all(rx, consumer.clone(), p.messages));
    let (tx, mailbox) = (&tx, consumer.as_str());
    pipelined(p.messages, p.window, |i| async move {
        tx.mailbox_send(mailbox, &json!({"i": i})).await.unwrap();
    })
    .await;
    receiving.await.unwrap();
    p.messages as f64 / started.elapsed().as_secs_f64()
}

async fn receive_all(rx: Client, mailbox: String, total: usize) {
    let mut got = 0;
    while got < total {
        let receive = Receive {
            mailbox: &mailbox,
            max: Some(1000),
            wait_ms: Some(1000),
            visibility_ms: None,
        };
        let batch: Vec<String> = rx
            .mailbox_receive(&receive)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        got += batch.len();
        rx.mailbox_ack(&mailbox, &batch).await.unwrap();
    }
}

/// A client's `mailbox_roundtrip` script, msgs/s.
async fn script(d: &Daemon, p: Params, lang: &str, mut cmd: Command, run: usize) -> f64 {
    let (producer, consumer) = (format!("{lang}_p{run}"), format!("{lang}_c{run}"));
    let pair = |name: &str, token: String| format!("{name}:{token}");
    cmd.arg("--socket")
        .arg(d.socket())
        .arg("--producer")
        .arg(pair(&producer, d.token(&producer).await))
        .arg("--consumer")
        .arg(pair(&consumer, d.token(&consumer).await))
        .args(["--messages", &p.messages.to_string()])
        .args(["--window", &p.window.to_string()]);
    let out = cmd.output().unwrap_or_else(|e| panic!("{lang} bench: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{lang} bench failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    let report: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{lang}: {e}: {line}"));
    assert_eq!(report["messages"], json!(p.messages), "{lang}: {line}");
    report["msgs_per_s"].as_f64().expect("msgs_per_s")
}

/// `node` on the built TypeScript bench (built here when it is not yet).
fn typescript() -> Command {
    let dir = Path::new(REPO).join("clients/typescript");
    let built = dir.join("dist/bench/mailbox_roundtrip.js");
    if !built.exists() {
        let status = Command::new("npm")
            .arg("run")
            .arg("build")
            .current_dir(&dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "npm run build in {}",
            dir.display()
        );
    }
    let mut cmd = Command::new("node");
    cmd.arg(built);
    cmd
}

fn python() -> Command {
    let dir = Path::new(REPO).join("clients/python");
    let mut cmd = Command::new("python3");
    cmd.arg(dir.join("bench/mailbox_roundtrip.py"))
        .env("PYTHONPATH", dir.join("src"));
    cmd
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let p = Params {
        messages: env("BENCH_MESSAGES", 50_000),
        window: env("BENCH_WINDOW", 256),
    };
    let runs = env("BENCH_RUNS", 1).max(1);
    let db = Db::create("sdk").await;
    let d = Daemon::start(&db).await;
    let (mut rs, mut ts, mut py) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        rs.push(rust(&d, p, run).await);
        ts.push(script(&d, p, "ts", typescript(), run).await);
        py.push(script(&d, p, "py", python(), run).await);
        println!(
            "run {run}: rust {:>8.0} msgs/s   typescript {:>8.0} msgs/s   python {:>8.0} msgs/s",
            rs[run], ts[run], py[run]
        );
    }
    drop(d);
    db.drop_now().await;
    let rust = median(&mut rs);
    println!(
        "sdk_throughput rust_msgs_per_s={rust:.0} ts_vs_rust={:.2} py_vs_rust={:.2}",
        median(&mut ts) / rust,
        median(&mut py) / rust
    );
}
