//! A deployment across servers (docs/deployment.md), on this machine: two daemons, each on a
//! host of its own (a network namespace, `support::netns`), with their own roots, sharing the
//! engines over the network. A sender on one and a receiver on the other exchange mailbox
//! messages, publications and tasks, on each engine; and when one server dies, what its agents
//! held goes to the agents of the other.

mod support;

use ikigai_client::{Client, Receive};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use support::netns::Host;
use support::{Daemon, TestDb};

/// Where the services run, and what a daemon on a host needs to reach their engines.
struct Deployment {
    /// The engine `[services]` names for `services` (none: all on Postgres).
    engine: &'static str,
    services: &'static [&'static str],
    /// The engine's URL from a host, `{gateway}` standing for the host's end of its link.
    url: &'static str,
    /// The engines' ports on loopback, relayed to every host.
    ports: &'static [u16],
    /// A claimed task's `attempts` when it comes back after its server died: RabbitMQ requeues
    /// a dead connection's deliveries without counting the attempt (docs/protocol.md, section 14).
    attempts_after_crash: i32,
}

impl Deployment {
    /// `[services]` and the engine's section, for a host whose link ends at `gateway`; the
    /// engine's key prefix is the database's name.
    fn config(&self, gateway: Ipv4Addr, db: &TestDb) -> String {
        if self.services.is_empty() {
            return String::new();
        }
        let engine = self.engine;
        let services: String = self
            .services
            .iter()
            .map(|s| format!("{s} = {engine}\n"))
            .collect();
        let url = self.url.replace("{gateway}", &gateway.to_string());
        format!(
            "[services]\n{services}[{engine}]\nurl = {url}\nprefix = {}\n",
            db.name
        )
    }
}

const POSTGRES: Deployment = Deployment {
    engine: "postgres",
    services: &[],
    url: "",
    ports: &[5432],
    attempts_after_crash: 2,
};

const REDIS: Deployment = Deployment {
    engine: "redis",
    services: &["cache", "pubsub", "mailboxes", "queues"],
    url: "redis://{gateway}:6379",
    ports: &[5432, 6379],
    attempts_after_crash: 2,
};

const NATS: Deployment = Deployment {
    engine: "nats",
    services: &["pubsub", "mailboxes"],
    url: "nats://{gateway}:4222",
    ports: &[5432, 4222],
    attempts_after_crash: 2,
};

const RABBITMQ: Deployment = Deployment {
    engine: "rabbitmq",
    services: &["queues"],
    url: "amqp://guest:guest@{gateway}:5672/%2f",
    ports: &[5432, 5672],
    attempts_after_crash: 1,
};

/// Two hosts, each running a daemon of `deployment` on one fresh database.
struct TwoServers {
    one: Daemon,
    two: Daemon,
    _hosts: (Host, Host),
}

impl TwoServers {
    async fn start(deployment: &Deployment) -> TwoServers {
        let hosts = (
            Host::create(0, deployment.ports).await,
            Host::create(1, deployment.ports).await,
        );
        for host in [&hosts.0, &hosts.1] {
            assert!(
                !host.reaches("127.0.0.1:5432"),
                "a host reaches the engines only across its link"
            );
            for port in deployment.ports {
                assert!(host.reaches(&format!("{}:{port}", host.gateway)));
            }
        }
        let db = TestDb::create().await;
        let shared = db.share();
        let one =
            Daemon::start_in(&hosts.0, db, &deployment.config(hosts.0.gateway, &shared)).await;
        let config = deployment.config(hosts.1.gateway, &shared);
        let two = Daemon::start_in(&hosts.1, shared, &config).await;
        for daemon in [&one, &two] {
            let netns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
            assert_ne!(
                netns(&daemon.pid().to_string()),
                netns("self"),
                "on a host of its own"
            );
        }
        TwoServers {
            one,
            two,
            _hosts: hosts,
        }
    }
}

fn receive(mailbox: &str) -> Receive<'_> {
    Receive {
        mailbox,
        max: Some(100),
        wait_ms: Some(2_000),
        visibility_ms: Some(1_000),
    }
}

/// Messages sent through one server reach their receiver on the other, each once, in order.
async fn mailbox_across(servers: &TwoServers) {
    let alice = servers.one.agent("alice").await;
    let bob = servers.two.agent("bob").await;
    let mut sent = Vec::new();
    for n in 0..50 {
        sent.push(alice.mailbox_send("bob", &json!({"n": n})).await.unwrap());
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < sent.len() && Instant::now() < deadline {
        let messages = bob.mailbox_receive(&receive("bob")).await.unwrap();
        let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        if !ids.is_empty() {
            bob.mailbox_ack("bob", &ids).await.unwrap();
        }
        got.extend(ids);
    }
    assert_eq!(got, sent, "every message, once, in the order sent");
}

/// Publications through one server reach a subscriber on the other, in order.
async fn pubsub_across(servers: &TwoServers) {
    let publisher = servers.one.agent("alice").await;
    let subscriber = servers.two.agent("bob").await;
    let sub: Value = subscriber
        .call("pubsub.subscribe", &json!({"topic": "news.*"}))
        .await
        .unwrap();
    assert!(sub["subscription"].is_string());
    // The other daemon learns of the subscription through the engine: publish until it arrives.
    let first = arrival(&publisher, &subscriber).await;
    for n in 0..20 {
        let args = json!({"topic": "news.daily", "message": {"n": n}});
        publisher.call_value("pubsub.publish", &args).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let push = tokio::time::timeout(Duration::from_secs(10), subscriber.next_push())
            .await
            .expect("a publication within 10 s")
            .expect("connection open");
        let data: Value = ikigai_protocol::from_value(push.data).unwrap();
        if data["message"]["warmup"].is_null() {
            got.push(data["message"]["n"].as_u64().unwrap());
        }
    }
    assert!(first, "the subscriber was reached before the count began");
    assert_eq!(got, (0..20).collect::<Vec<u64>>());
}

/// Publishes warm-up messages until one reaches `subscriber`.
async fn arrival(publisher: &Client, subscriber: &Client) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let args = json!({"topic": "news.warmup", "message": {"warmup": true}});
        publisher.call_value("pubsub.publish", &args).await.unwrap();
        let wait = Duration::from_millis(200);
        if let Ok(Some(_)) = tokio::time::timeout(wait, subscriber.next_push()).await {
            return true;
        }
    }
    false
}

/// Tasks pushed through one server are claimed and completed through the other.
async fn queue_across(servers: &TwoServers) {
    let producer = servers.one.agent("producer").await;
    let worker = servers.two.agent("worker").await;
    let mut pushed = HashSet::new();
    for n in 0..30 {
        pushed.insert(
            producer
                .queue("jobs")
                .push(&json!({"n": n}))
                .await
                .unwrap()
                .id,
        );
    }
    let mut done = HashSet::new();
    while done.len() < pushed.len() {
        let tasks = worker
            .queue("jobs")
            .claim(Some(100), Some(2_000), None)
            .await;
        let tasks = tasks.unwrap();
        assert!(!tasks.is_empty(), "claimable through the other server");
        for t in tasks {
            worker.task(&t.id).complete(None).await.unwrap();
            done.insert(t.id);
        }
    }
    assert_eq!(done, pushed);
}

/// A server dies with a task claimed and a message received by its agents: after the lease and
/// the visibility timeout, the agents of the other server get both.
async fn one_server_dies(servers: &mut TwoServers, attempts: i32) {
    let sender = servers.two.agent("alice").await;
    let id = sender
        .mailbox_send("bob", &json!({"last": true}))
        .await
        .unwrap();
    sender
        .queue("jobs")
        .push(&json!({"last": true}))
        .await
        .unwrap();
    let (bob, worker) = (
        servers.one.agent("bob").await,
        servers.one.agent("worker").await,
    );
    let held = bob.mailbox_receive(&receive("bob")).await.unwrap();
    assert_eq!(held.len(), 1);
    let claimed = worker
        .queue("jobs")
        .claim(None, Some(2_000), Some(1_000))
        .await;
    let claimed = claimed.unwrap().pop().expect("the task");
    servers.one.kill9();

    let bob = servers.two.agent("bob").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut again = Vec::new();
    while again.is_empty() && Instant::now() < deadline {
        again = bob.mailbox_receive(&receive("bob")).await.unwrap();
    }
    assert_eq!(again.first().map(|m| m.id.as_str()), Some(id.as_str()));
    let worker = servers.two.agent("worker").await;
    let mut retried = None;
    while retried.is_none() && Instant::now() < deadline {
        let tasks = worker.queue("jobs").claim(None, Some(2_000), None).await;
        retried = tasks.unwrap().pop();
    }
    let retried = retried.expect("the task, once its lease expired");
    assert_eq!((retried.id, retried.attempts), (claimed.id, attempts));
}

/// Runs every exchange between two servers of `deployment`; returns the database's name (the
/// engines' key prefix).
async fn across_two_servers(deployment: &Deployment) -> String {
    let mut servers = TwoServers::start(deployment).await;
    let name = servers.one.db.name.clone();
    mailbox_across(&servers).await;
    pubsub_across(&servers).await;
    queue_across(&servers).await;
    one_server_dies(&mut servers, deployment.attempts_after_crash).await;
    name
}

// The relays run on the runtime's workers while a test blocks on a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_postgres_share_mailboxes_pubsub_and_queues() {
    across_two_servers(&POSTGRES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_redis_share_mailboxes_pubsub_and_queues() {
    across_two_servers(&REDIS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_nats_share_mailboxes_and_pubsub() {
    across_two_servers(&NATS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_rabbitmq_share_queues() {
    let db_name = across_two_servers(&RABBITMQ).await;
    support::drop_rabbitmq_queues(&db_name).await;
}
