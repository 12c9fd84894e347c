//! Reads: counts and lists per state, queues with work, the queue of a task, the releases.

use super::*;

#[tokio::test]
async fn counts_and_lists_per_state() {
    let f = Fixture::new("a").await;
    let mut later = task("q", 0);
    later.run_at = Some(Utc::now() + chrono::Duration::hours(1));
    let mut doomed = task("q", 0);
    doomed.max_attempts = 1;
    let pushed = f
        .push(vec![
            task("q", 0),
            later,
            task("q", 0),
            task("q", 0),
            doomed,
        ])
        .await;
    let id = |i: usize| pushed[i].task.id;
    let l = lease("w", 10_000);
    for i in [2, 3, 4] {
        assert!(f.claim(id(i), &l).await);
    }
    f.settle(
        id(3),
        "w",
        None,
        Settle::Complete(Some(serde_json::json!("ok"))),
    )
    .await
    .unwrap();
    let fail = Settle::Fail {
        error: "boom".into(),
        retry_in: None,
    };
    assert!(f
        .settle(id(4), "w", None, fail)
        .await
        .unwrap()
        .failed_at
        .is_some());

    let counts = f.queues.counts("q").await.unwrap();
    let got = (
        counts.pending,
        counts.scheduled,
        counts.claimed,
        counts.completed,
        counts.dead,
    );
    assert_eq!(got, (1, 1, 1, 1, 1));
    let queues = &f.queues;
    let list = |state| async move {
        let tasks = queues.list("q", state, 0, 10).await.unwrap();
        tasks.iter().map(|t| t.id).collect::<Vec<_>>()
    };
    assert_eq!(list(Some(TaskState::Pending)).await, vec![id(0)]);
    assert_eq!(list(Some(TaskState::Scheduled)).await, vec![id(1)]);
    assert_eq!(list(Some(TaskState::Claimed)).await, vec![id(2)]);
    assert_eq!(list(Some(TaskState::Completed)).await, vec![id(3)]);
    assert_eq!(list(Some(TaskState::Dead)).await, vec![id(4)]);
    assert_eq!(list(None).await, (0..5).map(id).collect::<Vec<_>>());
    let page = f
        .queues
        .list("q", None, pushed[1].task.seq, 2)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![id(2), id(3)]
    );
    let done = f
        .queues
        .list("q", Some(TaskState::Completed), 0, 1)
        .await
        .unwrap();
    assert_eq!(done[0].result.as_deref(), Some(&serde_json::json!("ok")));
}

#[tokio::test]
async fn releases_free_the_claims_of_a_daemon_and_the_expired_ones() {
    let f = Fixture::new("a").await;
    let other = f.other("b").await;
    let pushed = f
        .push(vec![task("q1", 0), task("q2", 0), task("q3", 0)])
        .await;
    let id = |i: usize| pushed[i].task.id;
    assert!(f.claim(id(0), &lease("w", 60_000)).await);
    let via_b = QueueBatch {
        claims: vec![ClaimWrite {
            id: id(1),
            lease: lease("w", 60_000),
        }],
        ..QueueBatch::default()
    };
    assert_eq!(other.commit(via_b).await.unwrap().claimed.len(), 1);
    assert!(f.claim(id(2), &lease("w", 50)).await);

    assert_eq!(
        f.queues.release_claims_of("a").await.unwrap(),
        vec!["q1", "q3"]
    );
    let released = f.queues.load_claimable("q1", None, 10).await.unwrap();
    assert_eq!(
        (released[0].claimed_by.as_deref(), released[0].attempts),
        (None, 1)
    );
    assert!(f.load("q2").await.is_empty(), "b's claim holds");

    assert!(f.claim(id(0), &lease("w", 50)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let grace = Duration::from_secs(60);
    assert!(f.queues.release_expired(grace).await.unwrap().is_empty());
    assert_eq!(
        f.queues.release_expired(Duration::ZERO).await.unwrap(),
        vec!["q1"]
    );
    assert_eq!(f.load("q1").await, vec![id(0)]);
    assert!(
        f.load("q2").await.is_empty(),
        "a live lease is not released"
    );
}

#[tokio::test]
async fn queues_with_work_and_the_queue_of_a_task() {
    let f = Fixture::new("a").await;
    let pushed = f.push(vec![task("b", 0), task("a", 0)]).await;
    assert_eq!(f.queues.queues_with_work().await.unwrap(), vec!["a", "b"]);
    assert!(f.claim(pushed[0].task.id, &lease("w", 1000)).await);
    assert_eq!(f.queues.queues_with_work().await.unwrap(), vec!["a"]);
    assert_eq!(
        f.queues
            .queue_of(pushed[0].task.id)
            .await
            .unwrap()
            .as_deref(),
        Some("b")
    );
    assert_eq!(f.queues.queue_of(Uuid::new_v4()).await.unwrap(), None);
}
