//! The change feed: another daemon's writes are reported, this daemon's own are not, and a
//! lost connection comes back with `Missed`.

use super::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

async fn next(feed: &mut UnboundedReceiver<QueueChange>) -> Option<QueueChange> {
    tokio::time::timeout(Duration::from_secs(5), feed.recv())
        .await
        .ok()
        .flatten()
}

/// Waits until `n` connections listen on the fixture's channel.
async fn subscribed(f: &Fixture, n: i64) {
    let client = redis::Client::open(URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for _ in 0..100 {
        let counts: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(format!("{}:qfeed", f.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        if counts.1 >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the feed never subscribed");
}

#[tokio::test]
async fn the_feed_reports_another_daemons_push_and_skips_its_own() {
    let f = Fixture::new("a").await;
    let mut feed = f.queues.feed();
    subscribed(&f, 1).await;
    f.push(vec![task("mine", 0)]).await;
    let other = f.other("b").await;
    let pushes = vec![PushWrite {
        task: task("theirs", 0),
        claim: None,
    }];
    other
        .commit(QueueBatch {
            pushes,
            ..QueueBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(
        next(&mut feed).await,
        Some(QueueChange::Changed("theirs".into()))
    );

    let l = lease("w", 50);
    let mine = f.push_one(task("released", 0)).await;
    assert!(f.claim(mine.id, &l).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    f.queues.release_expired(Duration::ZERO).await.unwrap();
    let change = next(&mut feed).await;
    assert_eq!(
        change,
        Some(QueueChange::Changed("released".into())),
        "a sweep wakes everyone"
    );
}

/// A TCP proxy to Redis whose connections can be cut.
struct Proxy {
    port: u16,
    accept: JoinHandle<()>,
    links: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let links = Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:6379").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().unwrap().push(link);
            }
        });
        Proxy {
            port,
            accept,
            links,
        }
    }

    fn cut(&self) {
        self.links.lock().unwrap().drain(..).for_each(|l| l.abort());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[tokio::test]
async fn a_feed_that_reconnects_reports_missed_changes() {
    let f = Fixture::new("a").await;
    let proxy = Proxy::start().await;
    let url = format!("redis://127.0.0.1:{}/", proxy.port);
    let through_proxy = store(&url, &f.prefix, "a").await;
    let mut feed = through_proxy.feed();
    subscribed(&f, 1).await;
    proxy.cut();
    assert_eq!(next(&mut feed).await, Some(QueueChange::Missed));
    subscribed(&f, 1).await;
    let other = f.other("b").await;
    let pushes = vec![PushWrite {
        task: task("q", 0),
        claim: None,
    }];
    other
        .commit(QueueBatch {
            pushes,
            ..QueueBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(
        next(&mut feed).await,
        Some(QueueChange::Changed("q".into()))
    );
}
