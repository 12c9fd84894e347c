//! Task hashes something else wrote: reads report and skip or dead-letter them, writes refuse
//! them; nothing panics and nothing loops.

use super::*;

async fn raw() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(URL).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

fn key(f: &Fixture, id: Uuid) -> String {
    format!("{}:q:task:{id}", f.prefix)
}

#[tokio::test]
async fn an_undecodable_claimable_task_is_dead_lettered() {
    let f = Fixture::new("a").await;
    let pushed = f.push(vec![task("q", 5), task("q", 0)]).await;
    let (bad, good) = (pushed[0].task.id, pushed[1].task.id);
    let mut conn = raw().await;
    let _: () = redis::cmd("HSET")
        .arg(key(&f, bad))
        .arg("payload")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(f.load("q").await, vec![good], "the good task still loads");
    let counts = f.queues.counts("q").await.unwrap();
    assert_eq!((counts.pending, counts.dead), (1, 1));
    assert_eq!(
        f.load("q").await,
        vec![good],
        "the buried task does not come back"
    );
    let dead = f
        .queues
        .list("q", Some(TaskState::Dead), 0, 10)
        .await
        .unwrap();
    assert!(
        dead.is_empty(),
        "a dead task that does not decode is skipped by list"
    );
    let all = f.queues.list("q", None, 0, 10).await.unwrap();
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), vec![good]);
}

#[tokio::test]
async fn a_hash_the_scripts_cannot_work_with_is_refused() {
    let f = Fixture::new("a").await;
    let pushed = f.push(vec![task("q", 0), task("q", 0)]).await;
    let (broken, replaced) = (pushed[0].task.id, pushed[1].task.id);
    let l = lease("w", 10_000);
    assert!(f.claim(broken, &l).await);
    let mut conn = raw().await;
    let _: () = redis::cmd("HSET")
        .arg(key(&f, broken))
        .arg("attempts")
        .arg("many")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(key(&f, replaced))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(key(&f, replaced))
        .arg("garbage")
        .query_async(&mut conn)
        .await
        .unwrap();

    let settled = f
        .settle(broken, "w", Some(l.lease_id), Settle::Complete(None))
        .await;
    assert_eq!(settled, Err(Refusal::NotFound));
    assert_eq!(
        f.settle(replaced, "w", None, Settle::Release).await,
        Err(Refusal::NotFound)
    );
    assert!(!f.claim(replaced, &lease("w", 1000)).await);
    assert!(
        f.load("q").await.is_empty(),
        "the string key is buried, the claimed hash left"
    );
    assert_eq!(
        f.queues.release_claims_of("a").await.unwrap(),
        Vec::<String>::new()
    );
    assert!(
        f.queues.queue_of(replaced).await.is_err(),
        "a wrong type is an error, no panic"
    );
    assert!(f.queues.list("q", None, 0, 10).await.unwrap().is_empty());
}
