//! Retention: finished tasks are deleted once their retention has passed, open and young ones
//! stay, and an id whose hash is gone leaves the sets.

use super::*;

/// Claims and settles `t` with `action` as agent `w`.
async fn finish(f: &Fixture, t: &Task, action: Settle) {
    assert!(f.claim(t.id, &lease("w", 10_000)).await);
    f.settle(t.id, "w", None, action).await.unwrap();
}

/// Moves the time `field` of task `id` back by `ms`, as if it had finished that long ago.
async fn age(f: &Fixture, id: Uuid, field: &str, ms: i64) {
    let mut conn = redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{}:q:task:{id}", f.prefix);
    let at: i64 = redis::cmd("HGET")
        .arg(&key)
        .arg(field)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg(field)
        .arg(at - ms)
        .query_async(&mut conn)
        .await
        .unwrap();
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn finished_tasks_past_their_retention_are_deleted_and_the_rest_stay() {
    let f = Fixture::new("a").await;
    let mut dying = task("q", 0);
    dying.max_attempts = 1;
    let pushed = f
        .push(vec![
            task("q", 0),
            task("q", 0),
            task("q", 0),
            dying,
            task("q", 0),
        ])
        .await;
    let t: Vec<Task> = pushed.into_iter().map(|p| p.task).collect();
    for done in &t[..3] {
        finish(&f, done, Settle::Complete(None)).await;
    }
    let fail = Settle::Fail {
        error: "no".into(),
        retry_in: None,
    };
    finish(&f, &t[3], fail).await;
    age(&f, t[0].id, "completed_at", 2 * 3_600_000).await;
    age(&f, t[2].id, "completed_at", 2 * 3_600_000).await;
    age(&f, t[3].id, "failed_at", 2 * 3_600_000).await;

    let kept = Kept {
        completed: Some(HOUR),
        dead: Some(24 * HOUR),
    };
    assert_eq!(f.queues.prune(&kept).await.unwrap(), 2);
    let counts = f.queues.counts("q").await.unwrap();
    assert_eq!(
        (counts.completed, counts.dead, counts.pending),
        (1, 1, 1),
        "the young completed task, the dead one and the open one stay"
    );
    assert_eq!(f.queues.queue_of(t[0].id).await.unwrap(), None);
    assert_eq!(
        f.queues.queue_of(t[1].id).await.unwrap().as_deref(),
        Some("q")
    );
    let all = f.queues.list("q", None, 0, 10).await.unwrap();
    let ids: Vec<Uuid> = all.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![t[1].id, t[3].id, t[4].id]);

    let forever = Kept {
        completed: None,
        dead: Some(Duration::ZERO),
    };
    assert_eq!(f.queues.prune(&forever).await.unwrap(), 1, "the dead task");
    assert_eq!(
        f.queues.prune(&kept).await.unwrap(),
        0,
        "nothing more is due"
    );
}

#[tokio::test]
async fn a_pass_goes_through_many_batches_and_queues() {
    let f = Fixture::new("a").await;
    for queue in ["one", "two:with:colons"] {
        let tasks: Vec<NewTask> = (0..1_500).map(|_| task(queue, 0)).collect();
        let pushed = f.push(tasks).await;
        for p in &pushed {
            finish(&f, &p.task, Settle::Complete(None)).await;
        }
    }
    let now = Kept {
        completed: Some(Duration::ZERO),
        dead: None,
    };
    assert_eq!(f.queues.prune(&now).await.unwrap(), 3_000);
    for queue in ["one", "two:with:colons"] {
        let counts = f.queues.counts(queue).await.unwrap();
        assert_eq!(counts.completed, 0, "{queue}");
        assert!(f.queues.list(queue, None, 0, 10).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_id_whose_hash_is_gone_leaves_the_sets() {
    let f = Fixture::new("a").await;
    let t = f.push_one(task("q", 0)).await;
    finish(&f, &t, Settle::Complete(None)).await;
    let mut conn = redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{}:q:task:{}", f.prefix, t.id);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let year = Kept {
        completed: Some(365 * 24 * HOUR),
        dead: None,
    };
    assert_eq!(f.queues.prune(&year).await.unwrap(), 0, "nothing deleted");
    assert_eq!(
        f.queues.counts("q").await.unwrap().completed,
        0,
        "but the id is gone"
    );
}
