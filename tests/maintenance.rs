//! Finished work leaves the hot tables: completed and dead tasks and read messages move into
//! their archives after their retention, the archives are purged after theirs, and the daemon
//! vacuums the tables that churn when autovacuum does not (this machine's Postgres has it off).

mod support;

use ikigai_client::{ClaimArgs, Client, Receive};
use serde_json::json;
use std::time::Duration;
use support::{wait_until, Daemon};

/// Retentions short enough to watch, a pass every 100 ms.
const QUICK: &str = "[postgres]\nmaintenance_ms = 100\n\
    [queues]\nretain_completed_ms = 1\nretain_dead_ms = 1\n\
    [mailboxes]\nretain_read_ms = 1\n";

const WAIT: Duration = Duration::from_secs(20);

/// Pushes `n` tasks to `queue`, claims them all and completes them.
async fn complete_tasks(a: &Client, queue: &str, n: usize) {
    for i in 0..n {
        a.queue_push(queue, &json!({"n": i})).await.unwrap();
    }
    let mut done = 0;
    while done < n {
        for task in a.queue_claim(&claim(queue)).await.unwrap() {
            a.queue_complete(&task.id, None).await.unwrap();
            done += 1;
        }
    }
}

/// A claim of up to 1,000 tasks, waiting up to a second.
fn claim(queue: &str) -> ClaimArgs<'_> {
    ClaimArgs {
        queue,
        max: Some(1000),
        wait_ms: Some(1000),
        lease_ms: None,
    }
}

/// A receive of up to 1,000 messages, waiting up to a second.
fn receive(mailbox: &str) -> Receive<'_> {
    Receive {
        mailbox,
        max: Some(1000),
        wait_ms: Some(1000),
        visibility_ms: None,
    }
}

/// Receives and acknowledges `n` messages of `mailbox`.
async fn read_messages(a: &Client, mailbox: &str, n: usize) {
    let mut read = 0;
    while read < n {
        let ids: Vec<String> = a
            .mailbox_receive(&receive(mailbox))
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        read += ids.len();
        a.mailbox_ack(mailbox, &ids).await.unwrap();
    }
}

#[tokio::test]
async fn finished_tasks_and_read_messages_move_to_the_archives_and_open_work_stays() {
    let d = Daemon::start_with(QUICK).await;
    let a = d.agent("alice").await;
    complete_tasks(&a, "jobs", 30).await;
    let open = a.queue_push("jobs", &json!("still to do")).await.unwrap();
    for i in 0..20 {
        a.mailbox_send("alice", &json!(i)).await.unwrap();
    }
    read_messages(&a, "alice", 20).await;
    a.mailbox_send("alice", &json!("unread")).await.unwrap();

    wait_until("the finished rows are archived", WAIT, || async {
        d.db.count("SELECT count(*) FROM task_queue_archive").await == 30
            && d.db.count("SELECT count(*) FROM mailbox_archive").await == 20
    })
    .await;
    let hot_tasks = d.db.count("SELECT count(*) FROM task_queue").await;
    assert_eq!(hot_tasks, 1, "only the open task stays in task_queue");
    let sql = format!("SELECT count(*) FROM task_queue WHERE id = '{open}'");
    assert_eq!(d.db.count(&sql).await, 1);
    let unread = "SELECT count(*) FROM mailbox WHERE read_at IS NULL";
    assert_eq!(d.db.count(unread).await, 1, "the unread message stays");
    assert_eq!(d.db.count("SELECT count(*) FROM mailbox").await, 1);
    let archived = "SELECT count(*) FROM task_queue_archive \
        WHERE completed_at IS NOT NULL AND archived_at >= completed_at AND queue_name = 'jobs'";
    assert_eq!(d.db.count(archived).await, 30, "archived whole, with when");
    assert_eq!(d.db.count("SELECT count(*) FROM task_queue_all").await, 31);
    assert_eq!(d.db.count("SELECT count(*) FROM mailbox_all").await, 21);

    let got = a.mailbox_receive(&receive("alice")).await.unwrap();
    assert_eq!(got.len(), 1, "the mailbox still delivers what is unread");
    assert_eq!(got[0].payload, json!("unread"));
}

#[tokio::test]
async fn dead_tasks_keep_their_own_longer_retention() {
    let config = "[postgres]\nmaintenance_ms = 100\n[queues]\nretain_completed_ms = 1\n";
    let d = Daemon::start_with(config).await;
    let a = d.agent("alice").await;
    let task = json!({"queue": "jobs", "payload": 1, "max_attempts": 1});
    let id: serde_json::Value = a.call("queue.push", &task).await.unwrap();
    let claimed = a.queue_claim(&claim("jobs")).await.unwrap();
    assert_eq!(json!(claimed[0].id), id["id"]);
    a.queue_fail(&claimed[0].id, "broken", None).await.unwrap();
    complete_tasks(&a, "jobs", 3).await;
    wait_until("the completed tasks are archived", WAIT, || async {
        d.db.count("SELECT count(*) FROM task_queue_archive").await == 3
    })
    .await;
    let dead = "SELECT count(*) FROM task_queue WHERE failed_at IS NOT NULL";
    assert_eq!(d.db.count(dead).await, 1, "dead for a week by default");
}

#[tokio::test]
async fn archived_rows_past_archive_days_are_purged() {
    let d = Daemon::start_with("[postgres]\nmaintenance_ms = 100\n").await;
    let c = d.db.client().await;
    c.batch_execute(
        "INSERT INTO task_queue_archive (queue_name, payload, seq, archived_at) VALUES \
           ('old', '1', 1, now() - interval '31 days'), ('recent', '2', 2, now() - interval '29 days'); \
         INSERT INTO mailbox_archive (mailbox_name, sender, payload, seq, archived_at) VALUES \
           ('old', 'x', '1', 1, now() - interval '31 days'), ('recent', 'x', '2', 2, now());",
    )
    .await
    .unwrap();
    wait_until("the old archived rows are purged", WAIT, || async {
        d.db.count("SELECT count(*) FROM task_queue_archive WHERE queue_name = 'old'")
            .await
            == 0
            && d.db
                .count("SELECT count(*) FROM mailbox_archive WHERE mailbox_name = 'old'")
                .await
                == 0
    })
    .await;
    assert_eq!(
        d.db.count("SELECT count(*) FROM task_queue_archive").await,
        1
    );
    assert_eq!(d.db.count("SELECT count(*) FROM mailbox_archive").await, 1);
}

#[tokio::test]
async fn retention_zero_keeps_finished_work_in_place() {
    let config = "[postgres]\nmaintenance_ms = 100\n[queues]\nretain_completed_ms = 0\n";
    let d = Daemon::start_with(config).await;
    let a = d.agent("alice").await;
    complete_tasks(&a, "jobs", 5).await;
    // A pass that would have moved them (retention 0 is forever) runs within a second.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let completed = "SELECT count(*) FROM task_queue WHERE completed_at IS NOT NULL";
    assert_eq!(d.db.count(completed).await, 5);
    assert_eq!(
        d.db.count("SELECT count(*) FROM task_queue_archive").await,
        0
    );
}

/// When `table` was last vacuumed by hand (not by autovacuum), if ever.
async fn vacuumed(d: &Daemon, table: &str) -> bool {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_user_tables WHERE relname = '{table}' \
         AND last_vacuum IS NOT NULL"
    );
    d.db.count(&sql).await == 1
}

/// Turns autovacuum off for task_queue (this machine's server has it off everywhere; another's
/// may not), then churns it: every claim and completion leaves a dead row version behind.
async fn churn_without_autovacuum(d: &Daemon) {
    d.db.client()
        .await
        .batch_execute("ALTER TABLE task_queue SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    let a = d.agent("alice").await;
    complete_tasks(&a, "churn", 1500).await;
}

#[tokio::test]
async fn the_daemon_vacuums_a_churning_table_that_autovacuum_leaves() {
    let d = Daemon::start_with("[postgres]\nmaintenance_ms = 100\n").await;
    churn_without_autovacuum(&d).await;
    wait_until("task_queue is vacuumed", WAIT, || {
        vacuumed(&d, "task_queue")
    })
    .await;
    let log = d.log();
    assert!(log.contains("maintenance: hot tables trimmed"), "{log}");
}

#[tokio::test]
async fn vacuum_false_leaves_vacuuming_to_the_operator() {
    let config = "[postgres]\nmaintenance_ms = 100\nvacuum = false\n";
    let d = Daemon::start_with(config).await;
    churn_without_autovacuum(&d).await;
    let dead = "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'task_queue'";
    wait_until("the dead rows are counted", WAIT, || async {
        d.db.count(dead).await > 1000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!vacuumed(&d, "task_queue").await);
}
