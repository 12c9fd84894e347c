//! Settlements: fencing by agent, lease id and live lease, retries with backoff, dead letters,
//! expiry and release.

use super::*;

#[tokio::test]
async fn settlements_are_fenced_by_agent_lease_and_state() {
    let f = Fixture::new("a").await;
    let t = f.push_one(task("q", 0)).await;
    let l = lease("w", 10_000);
    assert!(f.claim(t.id, &l).await);
    let complete = || Settle::Complete(None);
    assert_eq!(
        f.settle(t.id, "x", None, complete()).await,
        Err(Refusal::NotClaimer)
    );
    assert_eq!(
        f.settle(t.id, "x", Some(l.lease_id), complete()).await,
        Err(Refusal::LeaseLost)
    );
    let stale = Some(Uuid::new_v4());
    assert_eq!(
        f.settle(t.id, "w", stale, complete()).await,
        Err(Refusal::LeaseLost)
    );
    let missing = f.settle(Uuid::new_v4(), "w", None, complete()).await;
    assert_eq!(missing, Err(Refusal::NotFound));

    let extended = f.settle(
        t.id,
        "w",
        Some(l.lease_id),
        Settle::Extend(Duration::from_secs(60)),
    );
    let extended = extended.await.unwrap();
    assert!(from_now(extended.lease_until.unwrap()) > 50_000);
    let done = f.settle(
        t.id,
        "w",
        None,
        Settle::Complete(Some(serde_json::json!({"r": 1}))),
    );
    let done = done.await.unwrap();
    assert!(done.completed_at.is_some() && done.lease_until.is_none());
    assert_eq!(done.result.as_deref(), Some(&serde_json::json!({"r": 1})));
    assert_eq!(done.payload, t.payload);
    assert_eq!(
        f.settle(t.id, "w", None, complete()).await,
        Err(Refusal::Finished)
    );
}

#[tokio::test]
async fn a_lease_that_ran_out_is_lost_but_can_expire() {
    let f = Fixture::new("a").await;
    let t = f.push_one(task("q", 0)).await;
    let l = lease("w", 50);
    assert!(f.claim(t.id, &l).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = f
        .settle(t.id, "w", Some(l.lease_id), Settle::Complete(None))
        .await;
    assert_eq!(late, Err(Refusal::LeaseLost));
    let expired = f
        .settle(t.id, "w", Some(l.lease_id), Settle::Expire)
        .await
        .unwrap();
    assert_eq!((expired.claimed_by, expired.attempts), (None, 1));
    assert_eq!(f.load("q").await, vec![t.id]);
}

#[tokio::test]
async fn expiry_counts_the_attempt_until_the_task_is_dead() {
    let f = Fixture::new("a").await;
    let t = f
        .push_one(NewTask {
            max_attempts: 2,
            ..task("q", 0)
        })
        .await;
    for attempt in 1..=2 {
        let l = lease("w", 10_000);
        assert!(f.claim(t.id, &l).await);
        let after = f
            .settle(t.id, "w", Some(l.lease_id), Settle::Expire)
            .await
            .unwrap();
        assert_eq!(
            (after.attempts, after.failed_at.is_some()),
            (attempt, attempt == 2)
        );
    }
    let dead = f
        .queues
        .list("q", Some(TaskState::Dead), 0, 10)
        .await
        .unwrap();
    assert_eq!(dead[0].error.as_deref(), Some("lease expired on attempt 2"));
    assert_eq!(
        dead[0].claimed_by.as_deref(),
        Some("w"),
        "a dead task keeps its claimer"
    );
    assert!(f.load("q").await.is_empty());
}

#[tokio::test]
async fn a_failure_retries_with_backoff_then_the_task_is_dead() {
    let f = Fixture::new("a").await;
    let t = f
        .push_one(NewTask {
            max_attempts: 3,
            ..task("q", 0)
        })
        .await;
    let l = lease("w", 10_000);
    assert!(f.claim(t.id, &l).await);
    let fail = |error: &str, retry_in| Settle::Fail {
        error: error.into(),
        retry_in,
    };
    let retried = f
        .settle(t.id, "w", Some(l.lease_id), fail("boom 1", None))
        .await
        .unwrap();
    let delay = from_now(retried.scheduled_for);
    assert!(
        (600..=1300).contains(&delay),
        "first backoff ~1 s with jitter, got {delay} ms"
    );
    assert!(retried.failed_at.is_none() && retried.claimed_by.is_none());
    assert_eq!(retried.error.as_deref(), Some("boom 1"));
    assert_eq!(f.queues.counts("q").await.unwrap().scheduled, 1);
    assert!(
        f.load("q").await.is_empty(),
        "not claimable during the backoff"
    );
    let due = f.queues.next_due("q").await.unwrap();
    assert_eq!(due, Some(retried.scheduled_for));

    tokio::time::sleep(Duration::from_millis(1300)).await;
    for attempt in 2..=3 {
        let l = lease("w", 10_000);
        assert!(
            f.claim(t.id, &l).await,
            "claimable again at attempt {attempt}"
        );
        let zero = Some(Duration::ZERO);
        let after = f
            .settle(t.id, "w", Some(l.lease_id), fail("boom", zero))
            .await
            .unwrap();
        assert_eq!(
            (after.attempts, after.failed_at.is_some()),
            (attempt, attempt == 3)
        );
    }
    let counts = f.queues.counts("q").await.unwrap();
    assert_eq!((counts.dead, counts.pending, counts.scheduled), (1, 0, 0));
    assert!(f.load("q").await.is_empty(), "dead tasks are not claimed");
}

#[tokio::test]
async fn release_gives_the_task_back_without_counting_the_attempt() {
    let f = Fixture::new("a").await;
    let t = f.push_one(task("q", 0)).await;
    let l = lease("w", 10_000);
    assert!(f.claim(t.id, &l).await);
    let released = f
        .settle(t.id, "w", Some(l.lease_id), Settle::Release)
        .await
        .unwrap();
    assert_eq!(
        (released.attempts, released.claimed_by, released.claimed_at),
        (0, None, None)
    );
    assert_eq!(f.load("q").await, vec![t.id]);
    let again = f.settle(t.id, "w", Some(l.lease_id), Settle::Release).await;
    assert_eq!(
        again,
        Err(Refusal::LeaseLost),
        "the old lease id no longer holds"
    );
}
