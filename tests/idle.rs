//! Idle actors cost memory, not CPU: a daemon holding many mailbox actors that have nothing due
//! sleeps, and still answers at once.

mod support;

use futures::future::join_all;
use serde_json::json;
use std::time::{Duration, Instant};
use support::{running, Daemon};

/// How many distinct mailboxes the test sends to (`IKIGAI_IDLE_MAILBOXES`, default 20,000).
fn mailboxes() -> usize {
    std::env::var("IKIGAI_IDLE_MAILBOXES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

#[tokio::test]
async fn a_daemon_with_many_idle_mailboxes_uses_almost_no_cpu_and_answers_a_ping() {
    let d = Daemon::start().await;
    let alice = d.agent("alice").await;
    let names: Vec<String> = (0..mailboxes()).map(|n| format!("idle-{n}")).collect();
    let payload = json!("hi");
    for chunk in names.chunks(1_000) {
        let sends = chunk.iter().map(|name| alice.mailbox_send(name, &payload));
        for sent in join_all(sends).await {
            sent.expect("sent");
        }
    }
    let actors = running(&alice, "mailboxes").await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (cpu, started) = (d.cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let share = (d.cpu_time() - cpu).as_secs_f64() / started.elapsed().as_secs_f64();
    assert!(
        share < 0.05,
        "with {actors} idle mailbox actors the daemon used {:.0}% of a core",
        share * 100.0
    );
    d.assert_serving().await;
}
