//! The operator's `ikigai` command against the real daemon: cache, pub/sub and storage as
//! admin, in admin's own, an agent's and the shared namespace; `--json` output; and errors
//! (the daemon's code on stderr, JSON arguments refused before connecting).

mod support;

use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use support::{temp_root, Daemon, Lines};

/// The exit code and stderr of `ikigai <args>`, which must fail.
#[track_caller]
fn cli_err(d: &Daemon, args: &[&str]) -> (i32, String) {
    let out = d.cli(args);
    assert!(!out.status.success(), "ikigai {args:?} succeeded");
    let code = out.status.code().unwrap();
    (code, String::from_utf8(out.stderr).unwrap())
}

/// The one JSON document `ikigai --json <args>` prints.
#[track_caller]
fn cli_json(d: &Daemon, args: &[&str]) -> Value {
    let out = d.cli_ok(&[&["--json"], args].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {out:?}: {e}"))
}

#[tokio::test]
async fn cache_commands_work_in_admins_an_agents_and_the_shared_namespace() {
    let d = Daemon::start().await;
    d.cli_ok(&["cache", "set", "k", r#"{"who":"admin"}"#]);
    assert_eq!(d.cli_ok(&["cache", "get", "k"]), "{\"who\":\"admin\"}\n");

    let bob = d.agent("bob").await;
    d.cli_ok(&["cache", "set", "--agent", "bob", "k", r#""bob's""#]);
    assert_eq!(bob.cache().get("k").await.unwrap(), Some(json!("bob's")));
    bob.shared_cache().set("flag", &json!(true)).await.unwrap();
    assert_eq!(d.cli_ok(&["cache", "get", "--shared", "flag"]), "true\n");
    assert_eq!(d.cli_ok(&["cache", "get", "k"]), "{\"who\":\"admin\"}\n");

    let got = cli_json(&d, &["cache", "get", "--agent", "bob", "k"]);
    assert_eq!(got, json!({"found": true, "value": "bob's"}));

    d.cli_ok(&["cache", "set", "brief", "1", "--ttl-ms", "50"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, err) = cli_err(&d, &["cache", "get", "brief"]);
    assert_eq!((code, err.contains("not found")), (1, true), "{err}");

    assert_eq!(
        d.cli_ok(&["cache", "del", "--agent", "bob", "k"]),
        "deleted\n"
    );
    assert_eq!(bob.cache().get("k").await.unwrap(), None);
    let gone = cli_json(&d, &["cache", "del", "--agent", "bob", "k"]);
    assert_eq!(gone, json!({"deleted": false}));

    let (code, err) = cli_err(&d, &["cache", "get", "--agent", "bob", "--shared", "k"]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn storage_commands_put_get_and_list_an_agents_documents() {
    let d = Daemon::start().await;
    let bob = d.agent("bob").await;
    bob.storage().put("notes/1", &json!("first")).await.unwrap();
    let put = ["storage", "put", "--agent", "bob", "notes/2", r#"{"n":2}"#];
    assert_eq!(d.cli_ok(&put), "version: 1\n");
    assert_eq!(d.cli_ok(&put), "version: 2\n");
    let doc = bob.storage().get("notes/2").await.unwrap().unwrap();
    assert_eq!((doc.value, doc.version), (json!({"n": 2}), 2));

    let shown = d.cli_ok(&["storage", "get", "--agent", "bob", "notes/2"]);
    assert!(shown.contains("value: {\"n\":2}\nversion: 2\n"), "{shown}");
    let listed = d.cli_ok(&["storage", "list", "--agent", "bob", "notes/"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(lines[1].starts_with("notes/1 ") && lines[1].ends_with("\"first\""));

    let page = cli_json(&d, &["storage", "list", "--agent", "bob", "--limit", "1"]);
    assert_eq!(page["documents"][0]["key"], "notes/1");
    assert_eq!(page["next"], "notes/1");
    let (code, _) = cli_err(&d, &["storage", "get", "notes/2"]);
    assert_eq!(code, 1, "admin's own namespace holds no notes/2");
    d.cli_ok(&["storage", "put", "mine", "[1,2]"]);
    let mine = cli_json(&d, &["storage", "list"]);
    assert_eq!(mine["documents"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn pubsub_subscribe_prints_each_message_published_as_a_json_line() {
    let d = Daemon::start().await;
    let mut sub = d.spawn_cli(&["pubsub", "subscribe", "orders.*"]);
    let mut lines = Lines::of(sub.stdout.take().unwrap());
    // The line on stderr comes once the subscription is in place.
    let subscribed = Lines::of(sub.stderr.take().unwrap()).next().await;
    assert_eq!(subscribed, "subscribed to orders.*");
    let delivered = d.cli_ok(&["pubsub", "publish", "orders.created", r#"{"n":1}"#]);
    assert_eq!(delivered, "delivered: 1\n");
    d.cli_ok(&["pubsub", "publish", "users.created", "0"]);
    let last = cli_json(&d, &["pubsub", "publish", "orders.paid", r#""done""#]);
    assert_eq!(last, json!({"delivered": 1}));
    let got: Vec<Value> = [lines.next().await, lines.next().await]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    sub.kill().unwrap();
    sub.wait().unwrap();
    assert_eq!(got[0]["topic"], "orders.created");
    assert_eq!(got[0]["message"], json!({"n": 1}));
    assert!(got[0]["published_at"].is_string());
    assert_eq!(
        (&got[1]["topic"], &got[1]["message"]),
        (&json!("orders.paid"), &json!("done"))
    );
}

#[tokio::test]
async fn existing_commands_print_one_json_document_with_json() {
    let d = Daemon::start().await;
    let pushed = cli_json(&d, &["queue", "push", "ops", r#"{"n":1}"#]);
    let id = pushed["id"].as_str().unwrap();
    let listed = cli_json(&d, &["queue", "list", "ops"]);
    assert_eq!(listed["tasks"][0]["id"], id);
    assert_eq!(cli_json(&d, &["queue", "stats", "ops"])["pending"], 1);
    assert_eq!(d.cli_ok(&["queue", "stats", "ops"]).lines().count(), 8);
    cli_json(&d, &["mailbox", "send", "bob", "null"]);
    let stats = cli_json(&d, &["mailbox", "stats"]);
    assert_eq!(stats["mailboxes"][0]["mailbox"], "bob");
    assert_eq!(stats["mailboxes"][0]["unread"], 1);
    assert!(d.cli_ok(&["mailbox", "stats"]).starts_with("MAILBOX "));
    assert_eq!(cli_json(&d, &["status"])["daemon"], "ikigai");
    assert_eq!(cli_json(&d, &["agents", "list"]), json!({"agents": []}));
}

#[tokio::test]
async fn a_daemon_error_prints_its_code_and_message_and_exits_non_zero() {
    let d = Daemon::start().await;
    let (code, err) = cli_err(&d, &["agents", "get", "nobody"]);
    assert_eq!(code, 1);
    assert_eq!(err, "ikigai: not_found: no agent \"nobody\" is deployed\n");
    let (code, err) = cli_err(&d, &["--json", "storage", "get", "k", "--agent", "no/such"]);
    assert_eq!(code, 1);
    let err: Value = serde_json::from_str(&err).unwrap();
    assert_eq!(err["error"]["code"], "bad_request");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no/such"));
}

#[test]
fn json_arguments_are_refused_before_connecting_naming_the_argument() {
    // No daemon runs here: a command that connected would say so instead.
    let root = temp_root();
    for (args, name) in [
        (&["cache", "set", "k", "{oops"][..], "<VALUE>"),
        (&["storage", "put", "k", "nope"][..], "<VALUE>"),
        (&["pubsub", "publish", "t", "[1,"][..], "<MESSAGE>"),
        (&["queue", "push", "q", "{"][..], "<PAYLOAD>"),
        (&["mailbox", "send", "m", "x"][..], "<PAYLOAD>"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ikigai"))
            .arg("--root")
            .arg(root.path())
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(name) && err.contains("not JSON"),
            "{args:?}: {err}"
        );
    }
}
