//! The daemon's life: configuration errors, one daemon per root, stale sockets, clean shutdown,
//! `kill -9` without losing acknowledged work, supervised actors, and the private cluster.

mod support;

use ikigai_client::{Client, Receive};
use serde_json::json;
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{daemon_command, run_to_exit, temp_root, Daemon};

fn all(mailbox: &str) -> Receive<'_> {
    Receive {
        mailbox,
        max: Some(1000),
        wait_ms: None,
        visibility_ms: None,
    }
}

/// Receives and acks everything currently in `mailbox`; returns the payloads' `n` fields.
async fn drain(client: &Client, mailbox: &str) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let got = client.mailbox_receive(&all(mailbox)).await.unwrap();
        if got.is_empty() {
            return ids;
        }
        let batch: Vec<String> = got.into_iter().map(|m| m.id).collect();
        client.mailbox_ack(mailbox, &batch).await.unwrap();
        ids.extend(batch);
    }
}

#[tokio::test]
async fn kill_9_while_agents_work_loses_no_acknowledged_send_and_redelivers_no_acked_message() {
    let mut d = Daemon::start().await;
    let sent = Arc::new(Mutex::new(HashSet::new()));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let received = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for s in 0..4 {
        let client = d.agent(&format!("sender{s}")).await;
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                match client.mailbox_send("sink", &json!({"s": s, "i": i})).await {
                    Ok(id) => sent.lock().unwrap().insert(id),
                    Err(_) => return,
                };
            }
        }));
    }
    let consumer = d.agent("sink").await;
    let (consumer_acked, consumer_received) = (acked.clone(), received.clone());
    tasks.push(tokio::spawn(async move {
        loop {
            let Ok(got) = consumer
                .mailbox_receive(&Receive {
                    mailbox: "sink",
                    max: Some(50),
                    wait_ms: Some(100),
                    visibility_ms: None,
                })
                .await
            else {
                return;
            };
            let ids: Vec<String> = got.into_iter().map(|m| m.id).collect();
            consumer_received.lock().unwrap().extend(ids.clone());
            if consumer.mailbox_ack("sink", &ids).await.is_err() {
                return;
            }
            consumer_acked.lock().unwrap().extend(ids);
        }
    }));
    // Killed mid-work: once sends and acks are flowing (however slow the machine is today).
    support::wait_until("sends and acks flow", Duration::from_secs(30), || async {
        sent.lock().unwrap().len() > 100 && !acked.lock().unwrap().is_empty()
    })
    .await;
    d.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let (sent, acked) = (sent.lock().unwrap().clone(), acked.lock().unwrap().clone());
    // An ack in flight at the kill may have committed without its answer arriving.
    let received = received.lock().unwrap().clone();
    assert!(
        sent.len() > 100,
        "the senders were busy when the daemon died ({} sends)",
        sent.len()
    );
    assert!(
        !acked.is_empty(),
        "the consumer acked some messages before the kill"
    );

    d.restart().await;
    let after: HashSet<String> = drain(&d.agent("sink").await, "sink")
        .await
        .into_iter()
        .collect();
    let missing: Vec<&String> = sent
        .iter()
        .filter(|id| !after.contains(*id) && !received.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged sends lost",
        missing.len()
    );
    let twice: Vec<&String> = after.intersection(&acked).collect();
    assert!(
        twice.is_empty(),
        "{} messages delivered again after their ack",
        twice.len()
    );
}

#[tokio::test]
async fn a_delivery_in_flight_at_a_crash_is_delivered_again_after_restart() {
    let mut d = Daemon::start().await;
    let id = d
        .agent("alice")
        .await
        .mailbox_send("bob", &json!("x"))
        .await
        .unwrap();
    let got = d
        .agent("bob")
        .await
        .mailbox_receive(&all("bob"))
        .await
        .unwrap();
    assert_eq!(got[0].id, id);
    d.kill9();
    d.restart().await;
    let again = d
        .agent("bob")
        .await
        .mailbox_receive(&all("bob"))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, id);
}

#[tokio::test]
async fn a_stale_socket_from_a_dead_daemon_is_replaced() {
    let mut d = Daemon::start().await;
    d.kill9();
    assert!(d.socket().exists(), "kill -9 leaves the socket behind");
    d.restart().await;
    d.assert_serving().await;
}

#[tokio::test]
async fn a_second_daemon_on_the_same_root_is_refused() {
    let d = Daemon::start().await;
    let (code, stderr) = run_to_exit(d.command());
    assert_ne!(code, 0);
    assert!(
        stderr.contains(&format!(
            "another ikigai-daemon (pid {}) already owns",
            d.pid()
        )),
        "{stderr}"
    );
    d.assert_serving().await;
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_removes_the_socket() {
    let mut d = Daemon::start().await;
    let alice = d.agent("alice").await;
    let sends: Vec<_> = (0..300)
        .map(|i| {
            let c = alice.clone();
            tokio::spawn(async move { c.mailbox_send("bob", &json!(i)).await })
        })
        .collect();
    let bob = d.agent("bob").await;
    let waiting = tokio::spawn(async move {
        bob.mailbox_receive(&Receive {
            mailbox: "nobody",
            max: Some(1),
            wait_ms: Some(60_000),
            visibility_ms: None,
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(d.terminate(), 0, "clean exit:\n{}", d.log());
    assert!(!d.socket().exists(), "socket removed");
    assert!(d.log().contains("stopped"), "{}", d.log());
    let _ = waiting.await.unwrap();
    let acked: HashSet<String> = futures::future::join_all(sends)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap().ok())
        .collect();
    let stored: HashSet<String> =
        d.db.client()
            .await
            .query("SELECT id::text FROM mailbox", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert!(
        acked.is_subset(&stored),
        "every acknowledged send is stored"
    );
}

#[tokio::test]
async fn a_sigterm_the_moment_the_socket_answers_is_a_clean_shutdown() {
    let mut d = Daemon::start().await;
    for round in 0..5 {
        assert_eq!(d.terminate(), 0, "round {round}:\n{}", d.log());
        d.restart().await;
    }
    assert_eq!(d.terminate(), 0, "{}", d.log());
}

#[tokio::test]
async fn config_errors_stop_the_start_and_name_file_line_and_key() {
    let root = temp_root();
    let bad = root.path().join("bad.conf");
    std::fs::write(
        &bad,
        "[services]\nqueues = postgres\ntelemetry = influxdb\n",
    )
    .unwrap();
    let mut cmd = daemon_command(root.path());
    cmd.arg("--config").arg(&bad);
    let (code, stderr) = run_to_exit(cmd);
    assert_ne!(code, 0);
    let expected = format!(
        "{}:3: [services] telemetry: backend \"influxdb\" is not implemented yet",
        bad.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    std::fs::write(&bad, "[mailboxes]\nvisibility = 10\n").unwrap();
    let mut cmd = daemon_command(root.path());
    cmd.env("IKIGAI_CONFIG", &bad);
    let (code, stderr) = run_to_exit(cmd);
    assert_ne!(code, 0);
    assert!(
        stderr.contains(":2: [mailboxes] visibility: unknown key"),
        "{stderr}"
    );

    let mut cmd = daemon_command(root.path());
    cmd.arg("--config").arg(root.path().join("missing.conf"));
    let (code, stderr) = run_to_exit(cmd);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("missing.conf") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_panicking_mailbox_actor_restarts_from_storage_and_its_neighbours_never_notice() {
    let d = Daemon::start_with("[debug]\nfault_injection = true\n").await;
    let alice = d.agent("alice").await;
    let (bob, carol) = (d.agent("bob").await, d.agent("carol").await);
    let kept = alice.mailbox_send("bob", &json!("kept")).await.unwrap();
    let held = alice
        .mailbox_send("bob", &json!("in flight"))
        .await
        .unwrap();
    let first = bob
        .mailbox_receive(&Receive {
            mailbox: "bob",
            max: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first[0].id, kept);
    let carol_waits = tokio::spawn(async move {
        carol
            .mailbox_receive(&Receive {
                mailbox: "carol",
                max: Some(1),
                wait_ms: Some(10_000),
                visibility_ms: None,
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    d.admin()
        .await
        .call_value("debug.panic_mailbox", &json!({"mailbox": "bob"}))
        .await
        .unwrap();
    let to_carol = alice
        .mailbox_send("carol", &json!("hello carol"))
        .await
        .unwrap();
    let carol_got = carol_waits
        .await
        .unwrap()
        .expect("carol's wait survives bob's panic");
    assert_eq!(carol_got[0].id, to_carol);

    // Bob's state was rebuilt from Postgres: both unread messages are deliverable, in order.
    let mut rebuilt = Vec::new();
    for _ in 0..50 {
        rebuilt = bob.mailbox_receive(&all("bob")).await.unwrap();
        if !rebuilt.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ids: Vec<&str> = rebuilt.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [kept.as_str(), held.as_str()]);
    assert!(
        d.log().contains("actor logic panicked; restarting"),
        "{}",
        d.log()
    );
    assert!(d.log().contains("mailbox actor restarting"), "{}", d.log());
}

#[tokio::test]
async fn fault_injection_is_refused_unless_configured() {
    let d = Daemon::start().await;
    let r = d
        .admin()
        .await
        .call_value("debug.panic_mailbox", &json!({"mailbox": "bob"}))
        .await;
    support::assert_code(r, ikigai_client::ErrorCode::PermissionDenied);
}

#[tokio::test]
async fn without_a_url_the_daemon_runs_and_stops_a_private_cluster_under_a_relative_root() {
    let top = temp_root();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = top.path().join("demo");
    let config = top.path().join("private.conf");
    std::fs::write(&config, "[postgres]\nserver = private\n").unwrap();
    // As the README runs it: `--root ./demo` from the directory above, ./demo not there yet.
    let mut child = daemon_command(Path::new("./demo"))
        .arg("--config")
        .arg(&config)
        .current_dir(top.path())
        .stderr(std::fs::File::create(top.path().join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let socket = root.join(".ikigai/daemon.sock");
    let log = || std::fs::read_to_string(top.path().join("daemon.log")).unwrap_or_default();
    for _ in 0..600 {
        if socket.exists() || child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        socket.exists(),
        "daemon with a private cluster listens:\n{}",
        log()
    );
    assert!(log().contains("private cluster"), "{}", log());
    assert!(
        !log().contains("NOTICE"),
        "applying the schema is quiet:\n{}",
        log()
    );
    let token = std::fs::read_to_string(root.join(".ikigai/admin.token")).unwrap();
    let admin = Client::connect_as(&socket, "admin", token.trim())
        .await
        .unwrap();
    let id = admin
        .mailbox_send("admin", &json!("private"))
        .await
        .unwrap();
    assert_eq!(
        admin.mailbox_receive(&all("admin")).await.unwrap()[0].id,
        id
    );
    drop(admin);

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success(), "{}", log());
    assert!(
        log().contains("private Postgres cluster stopped"),
        "{}",
        log()
    );
    assert!(
        !root.join(".ikigai/postgres/data/postmaster.pid").exists(),
        "cluster is down"
    );
}
