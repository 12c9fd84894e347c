//! The queue store against the real Redis at 127.0.0.1:6379: each test under a random prefix,
//! whose keys it deletes when it ends (also when it fails).

use super::{Kept, RedisQueues};
use chrono::{DateTime, Utc};
use ikigai_actors::store::{
    ClaimNext, ClaimWrite, PushWrite, Pushed, QueueBatch, QueueChange, QueueCommitted,
    QueueJournal, QueueStore, Refusal, Settle, SettleWrite, TaskState,
};
use ikigai_actors::{Lease, NewTask, Task};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

mod feed;
mod garbage;
mod prune;
mod reads;
mod settle;

const URL: &str = "redis://127.0.0.1:6379/";

/// Stores under a fresh prefix; its keys go when it is dropped.
struct Fixture {
    prefix: String,
    queues: RedisQueues,
}

impl Fixture {
    async fn new(origin: &str) -> Fixture {
        let prefix = format!("ikigai-test-{}", Uuid::new_v4().simple());
        let queues = store(URL, &prefix, origin).await;
        Fixture { prefix, queues }
    }

    /// Another daemon's stores on the same keys.
    async fn other(&self, origin: &str) -> RedisQueues {
        store(URL, &self.prefix, origin).await
    }

    async fn commit(&self, batch: QueueBatch) -> QueueCommitted {
        self.queues.commit(batch).await.expect("commit")
    }

    async fn push(&self, tasks: Vec<NewTask>) -> Vec<Pushed> {
        self.commit(QueueBatch::pushes(tasks)).await.pushed
    }

    async fn push_one(&self, task: NewTask) -> Task {
        self.push(vec![task]).await.remove(0).task
    }

    /// Claims `id` for `lease`; whether the claim took effect.
    async fn claim(&self, id: Uuid, lease: &Lease) -> bool {
        let batch = QueueBatch {
            claims: vec![ClaimWrite {
                id,
                lease: lease.clone(),
            }],
            ..QueueBatch::default()
        };
        self.commit(batch).await.claimed.contains_key(&id)
    }

    async fn settle(
        &self,
        id: Uuid,
        agent: &str,
        lease_id: Option<Uuid>,
        action: Settle,
    ) -> Result<Task, Refusal> {
        let write = SettleWrite {
            id,
            agent: agent.into(),
            lease_id,
            action,
            payload: None,
        };
        let batch = QueueBatch {
            settles: vec![write],
            ..QueueBatch::default()
        };
        let mut committed = self.commit(batch).await;
        committed.settled.remove(&id).expect("an outcome")
    }

    async fn load(&self, queue: &str) -> Vec<Uuid> {
        let tasks = self
            .queues
            .load_claimable(queue, None, 100)
            .await
            .expect("load");
        tasks.iter().map(|t| t.id).collect()
    }
}

async fn store(url: &str, prefix: &str, origin: &str) -> RedisQueues {
    let client = redis::Client::open(url).expect("redis url");
    let conn = redis::aio::ConnectionManager::new(client.clone())
        .await
        .expect("Redis at 127.0.0.1:6379");
    RedisQueues::new(conn, client, prefix.into(), origin.into())
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(URL) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = match redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut conn)
        {
            Ok(keys) => keys,
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

fn task(queue: &str, priority: i32) -> NewTask {
    NewTask {
        id: Uuid::new_v4(),
        queue: queue.into(),
        payload: Arc::new(serde_json::json!({"n": priority, "big": 9_007_199_254_740_993_u64})),
        priority,
        run_at: None,
        max_attempts: 3,
        dedup_key: None,
    }
}

fn lease(agent: &str, ms: u64) -> Lease {
    Lease::new(agent.into(), Duration::from_millis(ms))
}

/// Milliseconds from now until `at` (negative when past).
fn from_now(at: DateTime<Utc>) -> i64 {
    (at - Utc::now()).num_milliseconds()
}

#[tokio::test]
async fn tasks_load_in_claim_order_priority_then_age() {
    let f = Fixture::new("a").await;
    let pushed = f
        .push(vec![
            task("q", 0),
            task("q", 5),
            task("q", 0),
            task("q", 5),
            task("q", -3),
        ])
        .await;
    let ids: Vec<Uuid> = pushed.iter().map(|p| p.task.id).collect();
    assert!(pushed.iter().all(|p| p.created));
    assert_eq!(
        f.load("q").await,
        vec![ids[1], ids[3], ids[0], ids[2], ids[4]]
    );
    let loaded = f.queues.load_claimable("q", None, 1).await.unwrap();
    assert_eq!(
        loaded[0], pushed[1].task,
        "the stored task reads back as pushed"
    );
    assert_eq!(
        loaded[0].payload["big"],
        serde_json::json!(9_007_199_254_740_993_u64)
    );
}

#[tokio::test]
async fn pages_follow_a_rank() {
    let f = Fixture::new("a").await;
    let priorities = [1, 3, 1, 2, 3, 1, 2];
    let tasks: Vec<NewTask> = priorities.iter().map(|p| task("q", *p)).collect();
    f.push(tasks).await;
    let all = f.queues.load_claimable("q", None, 100).await.unwrap();
    let (mut paged, mut after) = (Vec::new(), None);
    loop {
        let page = f.queues.load_claimable("q", after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.rank());
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let ranks: Vec<_> = all.iter().map(Task::rank).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] < w[1]),
        "claim order is Rank order"
    );
}

#[tokio::test]
async fn a_scheduled_task_is_invisible_until_due() {
    let f = Fixture::new("a").await;
    let mut t = task("q", 0);
    let run_at = Utc::now() + chrono::Duration::milliseconds(400);
    t.run_at = Some(run_at);
    let stored = f.push_one(t).await;
    assert_eq!(
        stored.scheduled_for.timestamp_millis(),
        run_at.timestamp_millis()
    );
    assert!(f.load("q").await.is_empty());
    let due = f.queues.next_due("q").await.unwrap().expect("a due time");
    assert_eq!(due.timestamp_millis(), run_at.timestamp_millis());
    assert_eq!(f.queues.counts("q").await.unwrap().scheduled, 1);
    assert!(
        !f.claim(stored.id, &lease("w", 1000)).await,
        "not claimable before due"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(f.queues.next_due("q").await.unwrap(), None);
    assert_eq!(f.load("q").await, vec![stored.id]);
    let counts = f.queues.counts("q").await.unwrap();
    assert_eq!((counts.pending, counts.scheduled), (1, 0));
}

#[tokio::test]
async fn a_task_is_claimed_by_id_only_once() {
    let f = Fixture::new("a").await;
    let t = f.push_one(task("q", 0)).await;
    let batch = QueueBatch {
        claims: vec![
            ClaimWrite {
                id: t.id,
                lease: lease("w1", 1000),
            },
            ClaimWrite {
                id: t.id,
                lease: lease("w2", 1000),
            },
        ],
        ..QueueBatch::default()
    };
    let committed = f.commit(batch).await;
    assert_eq!(committed.claimed.len(), 1);
    let claimed = &committed.claimed[&t.id];
    assert_eq!(claimed.attempts, 1);
    assert!(claimed.lease_until > claimed.claimed_at);
    assert!(!f.claim(t.id, &lease("w3", 1000)).await, "claimed already");
    assert!(f.load("q").await.is_empty());
    assert_eq!(f.queues.counts("q").await.unwrap().claimed, 1);
}

#[tokio::test]
async fn claim_next_takes_the_best_tasks() {
    let f = Fixture::new("a").await;
    let pushed = f.push(vec![task("q", 0), task("q", 9), task("q", 5)]).await;
    let batch = QueueBatch {
        claim_next: vec![ClaimNext {
            queue: "q".into(),
            max: 2,
            lease: lease("w", 1000),
        }],
        ..QueueBatch::default()
    };
    let next = f.commit(batch).await.claimed_next.remove(0);
    let ids: Vec<Uuid> = next.iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![pushed[1].task.id, pushed[2].task.id]);
    assert!(next
        .iter()
        .all(|t| t.claimed_by.as_deref() == Some("w") && t.attempts == 1));
    assert_eq!(f.load("q").await, vec![pushed[0].task.id]);
}

#[tokio::test]
async fn a_push_can_be_claimed_in_its_insert() {
    let f = Fixture::new("a").await;
    let l = lease("w", 5_000);
    let batch = QueueBatch {
        pushes: vec![PushWrite {
            task: task("q", 0),
            claim: Some(l.clone()),
        }],
        ..QueueBatch::default()
    };
    let t = f.commit(batch).await.pushed.remove(0).task;
    assert_eq!((t.claimed_by.as_deref(), t.attempts), (Some("w"), 1));
    assert!((4_000..=5_000).contains(&from_now(t.lease_until.unwrap())));
    assert!(f.load("q").await.is_empty());
    let done = f
        .settle(t.id, "w", Some(l.lease_id), Settle::Complete(None))
        .await;
    assert!(done.unwrap().completed_at.is_some());
}

#[tokio::test]
async fn a_pending_dedup_key_returns_the_existing_task() {
    let f = Fixture::new("a").await;
    let keyed = |n| NewTask {
        dedup_key: Some("k".into()),
        ..task("q", n)
    };
    let pushed = f.push(vec![keyed(1), keyed(2)]).await;
    assert_eq!((pushed[0].created, pushed[1].created), (true, false));
    assert_eq!(
        pushed[1].task, pushed[0].task,
        "the second push returns the first task"
    );
    let again = f.push(vec![keyed(3)]).await.remove(0);
    assert_eq!((again.created, again.task.id), (false, pushed[0].task.id));
    assert_eq!(f.load("q").await.len(), 1);

    let l = lease("w", 1000);
    assert!(f.claim(pushed[0].task.id, &l).await);
    let claimed = f.push(vec![keyed(4)]).await.remove(0);
    assert!(!claimed.created, "a claimed task still holds its key");
    f.settle(
        pushed[0].task.id,
        "w",
        Some(l.lease_id),
        Settle::Complete(None),
    )
    .await
    .unwrap();
    let fresh = f.push(vec![keyed(5)]).await.remove(0);
    assert!(
        fresh.created && fresh.task.id != pushed[0].task.id,
        "a finished task frees its key"
    );
}

#[tokio::test]
async fn an_empty_batch_and_a_repeated_push_id() {
    let f = Fixture::new("a").await;
    assert_eq!(
        f.commit(QueueBatch::default()).await,
        QueueCommitted::default()
    );
    let t = task("q", 0);
    f.push(vec![t.clone()]).await;
    let batch = QueueBatch {
        pushes: vec![
            PushWrite {
                task: task("q", 1),
                claim: None,
            },
            PushWrite {
                task: t,
                claim: None,
            },
        ],
        ..QueueBatch::default()
    };
    let refused = f.queues.commit(batch).await;
    assert!(matches!(
        refused,
        Err(ikigai_actors::store::StoreError::Rejected(_))
    ));
    assert_eq!(f.load("q").await.len(), 1, "a refused group writes nothing");
}
