//! The `PubSub` transport on Redis: PUBLISH on `<prefix>:ps:<topic>`, received on a connection
//! of its own through pattern subscriptions for the patterns this daemon's subscribers use.
//!
//! A publication travels as JSON `{d: daemon, i: id, t: topic, m: message, at: published_at}`.
//! A batch is one pipeline on one connection, so it reaches the other daemons in order; each
//! daemon skips its own publications (the hub routes those itself).
//!
//! The hub says which patterns someone here listens to ([`PubSub::interest`]); each becomes a
//! Redis glob (`*` and `>` both `*`, an exact segment with `?*[]\` escaped) subscribed once
//! however many patterns share it. Globs match across dots, so Redis sends more than the
//! patterns match; the hub matches exactly. A publication several globs match comes once per
//! glob, one after the other: the follower delivers it once, by its id. The follower
//! reconnects with backoff whenever the connection ends (a restart of Redis, or Redis dropping
//! a subscriber that fell behind) and subscribes again; what was published meanwhile is lost,
//! as pub/sub is at most once.

mod follow;

use super::{store_error, RedisEngine};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use follow::Follower;
use ikigai_actors::pubsub::{Deliver, PubSub, Publication};
use ikigai_actors::store::StoreError;
use redis::aio::ConnectionManager;
use redis::Client;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

/// What travels on a channel.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The publishing daemon.
    d: Uuid,
    i: Uuid,
    t: String,
    m: Arc<Value>,
    at: DateTime<Utc>,
}

/// The globs wanted, each with how many patterns asked for it.
type Globs = BTreeMap<String, usize>;

pub struct RedisPubSub {
    conn: ConnectionManager,
    client: Client,
    /// `<prefix>:ps:`, the start of every channel.
    channels: String,
    daemon: Uuid,
    globs: watch::Sender<Globs>,
}

impl RedisPubSub {
    pub fn new(engine: &RedisEngine) -> RedisPubSub {
        RedisPubSub {
            conn: engine.conn(),
            client: engine.client().clone(),
            channels: engine.namespace("ps"),
            daemon: Uuid::new_v4(),
            globs: watch::Sender::new(Globs::new()),
        }
    }

    fn envelope(&self, p: &Publication) -> Result<Vec<u8>, StoreError> {
        let envelope = Envelope {
            d: self.daemon,
            i: p.id,
            t: p.topic.clone(),
            m: p.message.clone(),
            at: p.published_at,
        };
        serde_json::to_vec(&envelope).map_err(|e| StoreError::Rejected(e.to_string()))
    }
}

#[async_trait]
impl PubSub for RedisPubSub {
    async fn publish(&self, batch: &[Publication]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for p in batch {
            let channel = format!("{}{}", self.channels, p.topic);
            pipe.cmd("PUBLISH")
                .arg(channel)
                .arg(self.envelope(p)?)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(store_error)
    }

    /// Starts the follower (call it once): it runs until this transport is dropped.
    fn receive(&self, deliver: Deliver) {
        let globs = self.globs.subscribe();
        let follower = Follower::new(self.client.clone(), self.daemon, globs, deliver);
        tokio::spawn(follower.run());
    }

    fn interest(&self, pattern: &str) {
        let glob = glob(&self.channels, pattern);
        self.globs.send_if_modified(|globs| {
            let count = globs.entry(glob).or_default();
            *count += 1;
            *count == 1
        });
    }

    fn disinterest(&self, pattern: &str) {
        let glob = glob(&self.channels, pattern);
        self.globs
            .send_if_modified(|globs| match globs.get_mut(&glob) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => globs.remove(&glob).is_some(),
                None => false,
            });
    }
}

/// The Redis glob of a pattern's channels: `*` and `>` become `*`, exact segments are escaped.
fn glob(channels: &str, pattern: &str) -> String {
    let mut out = crate::glob_escape(channels);
    for (i, segment) in pattern.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        match segment {
            "*" | ">" => out.push('*'),
            exact => out.push_str(&crate::glob_escape(exact)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio::time::timeout;

    const REDIS: &str = "127.0.0.1:6379";

    /// One daemon's transport and what it delivered.
    struct Daemon {
        ps: RedisPubSub,
        got: mpsc::UnboundedReceiver<Publication>,
    }

    impl Daemon {
        async fn start(addr: &str, prefix: &str) -> Daemon {
            let engine = RedisEngine::connect(&format!("redis://{addr}"), prefix)
                .await
                .expect("Redis runs at 127.0.0.1:6379 on this machine");
            let ps = RedisPubSub::new(&engine);
            let (tx, got) = mpsc::unbounded_channel();
            ps.receive(Box::new(move |p| {
                let _ = tx.send(p);
            }));
            Daemon { ps, got }
        }

        async fn publish(&self, topic: &str, message: Value) {
            let p = Publication::new(topic.into(), message);
            self.ps.publish(&[p]).await.expect("published");
        }

        /// The next publication delivered that is not a probe, within `wait`.
        async fn next_within(&mut self, wait: Duration) -> Option<Publication> {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let p = tokio::time::timeout_at(deadline, self.got.recv())
                    .await
                    .ok()??;
                if p.message.get("probe").is_none() {
                    return Some(p);
                }
            }
        }

        async fn next(&mut self) -> Publication {
            let p = self.next_within(Duration::from_secs(10)).await;
            p.expect("a publication within 10 s")
        }

        /// Probes `topic` from `from` until one reaches this daemon: its globs are subscribed
        /// (and `from` publishes, if it was reconnecting).
        async fn hears(&mut self, from: &Daemon, topic: &str) {
            for n in 0..400 {
                let probe = Publication::new(topic.into(), json!({"probe": n}));
                if let Err(e) = from.ps.publish(&[probe]).await {
                    assert!(e.retriable(), "{e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                if let Ok(Some(p)) = timeout(Duration::from_millis(50), self.got.recv()).await {
                    if p.topic == topic && p.message.get("probe").is_some() {
                        return;
                    }
                }
            }
            panic!("{topic} never reached the subscriber");
        }
    }

    fn prefix() -> String {
        format!("test-{}", Uuid::new_v4())
    }

    async fn pair() -> (Daemon, Daemon) {
        let prefix = prefix();
        (
            Daemon::start(REDIS, &prefix).await,
            Daemon::start(REDIS, &prefix).await,
        )
    }

    #[tokio::test]
    async fn a_batch_reaches_the_other_daemon_in_order_and_not_its_own() {
        let (mut a, mut b) = pair().await;
        a.ps.interest("orders.>");
        b.ps.interest("orders.>");
        b.hears(&a, "orders.probe").await;
        a.hears(&b, "orders.probe").await;
        let batch: Vec<Publication> = (0..200)
            .map(|i| Publication::new(format!("orders.{}", i % 3), json!({"i": i})))
            .collect();
        a.ps.publish(&batch).await.unwrap();
        for sent in &batch {
            assert_eq!(b.next().await, *sent, "in order, as published");
        }
        b.publish("orders.back", json!("from b")).await;
        let first = a.next().await;
        assert_eq!(
            first.message,
            Arc::new(json!("from b")),
            "a skipped its own 200"
        );
    }

    #[tokio::test]
    async fn a_megabyte_payload_goes_through() {
        let (a, mut b) = pair().await;
        b.ps.interest("big");
        b.hears(&a, "big").await;
        let message = json!({"blob": "x".repeat(1 << 20)});
        a.publish("big", message.clone()).await;
        assert_eq!(*b.next().await.message, message);
    }

    #[tokio::test]
    async fn wildcards_become_redis_globs_with_exact_segments_escaped() {
        let (a, mut b) = pair().await;
        b.ps.interest("a.*.c");
        b.ps.interest("x.>");
        b.ps.interest("k.a*b");
        b.hears(&a, "x.probe").await;
        for topic in ["a.b.c", "a.b.d", "x.y.z", "k.aXb", "k.a*b", "y.x"] {
            a.publish(topic, json!(topic)).await;
        }
        let mut delivered = Vec::new();
        for _ in 0..3 {
            delivered.push(b.next().await.topic);
        }
        assert_eq!(
            delivered,
            ["a.b.c", "x.y.z", "k.a*b"],
            "a * in a segment is literal"
        );
        let none = b.next_within(Duration::from_millis(200)).await;
        assert_eq!(none, None);
    }

    #[tokio::test]
    async fn a_publication_several_globs_match_is_delivered_once() {
        let (a, mut b) = pair().await;
        b.ps.interest("d.*");
        b.ps.interest("*.e");
        b.ps.interest(">");
        b.hears(&a, "d.e").await;
        a.publish("d.e", json!(1)).await;
        a.publish("d.f", json!(2)).await;
        assert_eq!(b.next().await.topic, "d.e");
        assert_eq!(b.next().await.topic, "d.f", "d.e came once");
    }

    /// Publishes on `gone` then on `kept` until `kept` arrives without `gone` before it: from
    /// then on Redis no longer sends `gone` here.
    async fn until_unheard(a: &Daemon, b: &mut Daemon, gone: &str, kept: &str) {
        for n in 0..400 {
            a.publish(gone, json!(n)).await;
            a.publish(kept, json!(n)).await;
            let first = b.next().await;
            if first.topic == kept {
                return;
            }
            assert_eq!(b.next().await.topic, kept);
        }
        panic!("{gone} is still delivered");
    }

    #[tokio::test]
    async fn interest_ends_with_the_last_pattern_of_a_glob() {
        let (a, mut b) = pair().await;
        b.ps.interest("i.*");
        b.ps.interest("i.>");
        b.ps.interest("j");
        b.hears(&a, "i.n").await;
        b.ps.disinterest("i.*");
        a.publish("i.n", json!("still")).await;
        assert_eq!(b.next().await.topic, "i.n", "i.> shares the glob and stays");
        b.ps.disinterest("i.>");
        until_unheard(&a, &mut b, "i.n", "j").await;
        a.publish("i.n", json!("gone")).await;
        a.publish("j", json!("marker")).await;
        assert_eq!(b.next().await.topic, "j");
        b.ps.disinterest("never.heard.of");
        b.ps.interest("i.>");
        b.hears(&a, "i.again").await;
    }

    /// A TCP proxy to Redis whose connections can all be cut at once, as a restart does.
    struct Proxy {
        addr: String,
        conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    }

    impl Proxy {
        async fn start() -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
            let open = conns.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let relay = tokio::spawn(async move {
                        if let Ok(mut redis) = TcpStream::connect(REDIS).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut redis).await;
                        }
                    });
                    open.lock().unwrap().push(relay.abort_handle());
                }
            });
            Proxy { addr, conns }
        }

        fn cut(&self) {
            self.conns.lock().unwrap().drain(..).for_each(|c| c.abort());
        }
    }

    #[tokio::test]
    async fn the_follower_subscribes_again_after_redis_drops_it() {
        let proxy = Proxy::start().await;
        let prefix = prefix();
        let mut a = Daemon::start(&proxy.addr, &prefix).await;
        let mut b = Daemon::start(REDIS, &prefix).await;
        a.ps.interest("r.>");
        b.ps.interest("r.>");
        a.hears(&b, "r.before").await;
        proxy.cut();
        a.hears(&b, "r.after").await;
        let first =
            a.ps.publish(&[Publication::new("r.x".into(), json!(0))])
                .await;
        if let Err(e) = first {
            assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        }
        b.hears(&a, "r.probe").await;
        a.publish("r.from-a", json!("after the cut")).await;
        assert_eq!(b.next().await.topic, "r.from-a");
    }

    #[test]
    fn globs_escape_exact_segments_and_the_prefix() {
        assert_eq!(glob("ikigai:ps:", "orders.*.eu"), "ikigai:ps:orders.*.eu");
        assert_eq!(glob("ikigai:ps:", ">"), "ikigai:ps:*");
        assert_eq!(glob("p?:ps:", r"a[1].b\c.>"), r"p\?:ps:a\[1\].b\\c.*");
    }
}
