//! The agent registry, as operators and agents see it: deploying service directories, the
//! supervision of the agents' processes (restart rules, backoff, crash loops, hung agents,
//! daemon crashes and shutdowns), redeploys, and the identity each agent gets.

mod support;

use ikigai_client::{Client, ErrorCode, Receive};
use serde_json::{json, Value};
use std::time::Duration;
use support::{alive, assert_code, environ, processes_in, wait_until, AgentDir, Daemon};

const SLEEPER: &str = "exec sleep 1000";
const LONG: Duration = Duration::from_secs(20);

fn inbox(mailbox: &str) -> Receive<'_> {
    Receive {
        mailbox,
        max: Some(1),
        wait_ms: Some(20_000),
        visibility_ms: None,
    }
}

/// Sends `payload` to `agent` as `tester` and returns the answer.
async fn ask(tester: &Client, agent: &str, payload: Value) -> Value {
    tester.mailbox_send(agent, &payload).await.unwrap();
    let got = tester.mailbox_receive(&inbox("tester")).await.unwrap();
    assert_eq!(got.len(), 1, "{agent} answered within 20 s");
    tester
        .mailbox_ack("tester", &[got[0].id.clone()])
        .await
        .unwrap();
    assert_eq!(got[0].sender, agent);
    got[0].payload.clone()
}

/// A client holding the token the daemon gave `agent`'s process.
async fn as_agent_process(d: &Daemon, agent: &str) -> Client {
    let pid = d.agent_pid(agent, None).await;
    let token = environ(pid, "IKIGAI_TOKEN").expect("the token is in the environment");
    Client::connect_as(d.socket(), agent, &token).await.unwrap()
}

/// Asserts that `hello` as `agent` with `token` is refused.
async fn assert_refused(d: &Daemon, agent: &str, token: &str) {
    let hello = Client::connect_as(d.socket(), agent, token).await;
    assert_code(hello.map(drop), ErrorCode::Unauthenticated);
}

async fn count(d: &Daemon, agent: &str, event_type: &str) -> usize {
    d.events(agent, event_type).await.len()
}

#[tokio::test]
async fn a_deployed_agent_runs_in_its_directory_with_its_identity_and_answers_mail() {
    let d = Daemon::start().await;
    let echo = AgentDir::echo("echo", "1", json!({"heartbeat_timeout_s": 2}));
    d.deploy(&echo);
    let tester = d.agent("tester").await;

    let answer = ask(&tester, "echo", json!({"hello": 1})).await;
    assert_eq!(answer["echo"], json!({"hello": 1}));
    assert_eq!(answer["version"], "1");

    let entry = d.entry("echo").await;
    let pid = entry["pid"].as_i64().unwrap() as i32;
    assert_eq!(answer["pid"], json!(pid));
    assert_eq!(entry["status"], "running");
    assert_eq!(entry["version"], "1");
    assert!(!entry["server"].as_str().unwrap().is_empty());
    let dir = d.service_dir("echo");
    assert!(dir.join("manifest.json").is_file());
    assert_eq!(
        processes_in(&dir),
        vec![pid],
        "runs in its service directory"
    );
    assert_eq!(
        environ(pid, "IKIGAI_SOCKET").as_deref(),
        Some("../../daemon.sock")
    );
    assert_eq!(environ(pid, "IKIGAI_AGENT").as_deref(), Some("echo"));
    assert_eq!(
        environ(pid, "IKIGAI_DATABASE_URL"),
        None,
        "the daemon's own settings stay"
    );

    // Heartbeats every 200 ms keep it alive past its 2 s heartbeat timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let entry = d.entry("echo").await;
    assert_eq!(
        entry["pid"],
        json!(pid),
        "a heartbeating agent is not restarted"
    );
    assert!(entry["last_heartbeat"].is_string());
    wait_until("its output is a log event", LONG, || async {
        let logs = d.events("echo", "log").await;
        logs.iter()
            .any(|e| e["payload"]["line"] == "echo agent echo connected")
    })
    .await;
    let listed = d.call("agents.list", json!({})).await;
    assert_eq!(listed["agents"][0]["name"], "echo");
}

#[tokio::test]
async fn an_agent_killed_with_sigkill_is_back_within_the_backoff() {
    let d = Daemon::start().await;
    d.deploy(&AgentDir::script("sleeper", SLEEPER, json!({})));
    let first = d.agent_pid("sleeper", None).await;

    unsafe { libc::kill(first, libc::SIGKILL) };
    let second = d.agent_pid("sleeper", Some(first)).await;
    assert!(alive(second));
    assert_eq!(d.entry("sleeper").await["restarts"], 1);
    assert_eq!(processes_in(&d.service_dir("sleeper")), vec![second]);
    wait_until("the exit is reported", LONG, || async {
        let exits = d.events("sleeper", "agent_exited").await;
        exits
            .iter()
            .any(|e| e["payload"]["signal"] == libc::SIGKILL)
    })
    .await;
}

#[tokio::test]
async fn a_crash_looping_agent_ends_failed_with_an_error_event_until_started_again() {
    let d = Daemon::start().await;
    let extra = json!({"max_restarts": 3, "restart_window_s": 60});
    d.deploy(&AgentDir::script("crasher", "exit 1", extra));

    wait_until("crasher is failed", LONG, || async {
        d.entry("crasher").await["status"] == "failed"
    })
    .await;
    wait_until("the error event is written", LONG, || async {
        count(&d, "crasher", "error").await == 1
    })
    .await;
    let error = &d.events("crasher", "error").await[0];
    let message = error["payload"]["message"].as_str().unwrap();
    assert!(message.contains("more than 3 times in 60 s"), "{message}");
    assert_eq!(
        count(&d, "crasher", "agent_started").await,
        4,
        "1 start + 3 restarts"
    );
    let entry = d.entry("crasher").await;
    assert_eq!(entry["pid"], Value::Null);

    let admin = d.admin().await;
    let _: Value = admin
        .call("agents.start", &json!({"name": "crasher"}))
        .await
        .unwrap();
    wait_until("the restarted agent fails again", LONG, || async {
        count(&d, "crasher", "error").await == 2
    })
    .await;
    assert_eq!(count(&d, "crasher", "agent_started").await, 8);
}

#[tokio::test]
async fn restart_rules_follow_otp_permanent_transient_temporary() {
    let d = Daemon::start().await;
    let cases = [
        ("perm-ok", "permanent", 0, true),
        ("trans-ok", "transient", 0, false),
        ("trans-bad", "transient", 3, true),
        ("temp-bad", "temporary", 3, false),
    ];
    for (name, restart, code, _) in cases {
        let script = format!("echo run >> runs\nexit {code}");
        d.deploy(&AgentDir::script(
            name,
            &script,
            json!({"restart": restart}),
        ));
    }
    let runs = |name: &str| {
        let path = d.service_dir(name).join("runs");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count()
    };
    for (name, _, _, restarted) in cases {
        if restarted {
            wait_until(&format!("{name} is restarted"), LONG, || async {
                runs(name) >= 2
            })
            .await;
        } else {
            wait_until(&format!("{name} is stopped"), LONG, || async {
                d.entry(name).await["status"] == "stopped"
            })
            .await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (runs("trans-ok"), runs("temp-bad")),
        (1, 1),
        "never restarted"
    );
}

#[tokio::test]
async fn a_hung_agent_is_killed_and_restarted_even_if_it_ignores_sigterm() {
    let d = Daemon::start().await;
    let extra = json!({"heartbeat_timeout_s": 1, "stop_grace_s": 1});
    d.deploy(&AgentDir::script(
        "hung",
        "trap '' TERM\nexec sleep 1000",
        extra,
    ));
    let first = d.agent_pid("hung", None).await;

    let second = d.agent_pid("hung", Some(first)).await;
    assert!(!alive(first), "the hung process was killed");
    assert!(alive(second));
    wait_until("the hang is reported", LONG, || async {
        count(&d, "hung", "agent_hung").await >= 1
    })
    .await;
}

#[tokio::test]
async fn a_daemon_killed_with_sigkill_adopts_its_agents_without_duplicating_them() {
    let mut d = Daemon::start().await;
    d.deploy(&AgentDir::script("a", SLEEPER, json!({})));
    d.deploy(&AgentDir::script("b", SLEEPER, json!({})));
    let (a, b) = (d.agent_pid("a", None).await, d.agent_pid("b", None).await);

    d.kill9();
    assert!(alive(a) && alive(b), "agents outlive their daemon");
    d.restart().await;
    wait_until("both were adopted", LONG, || async {
        count(&d, "a", "agent_adopted").await + count(&d, "b", "agent_adopted").await == 2
    })
    .await;
    for (name, pid) in [("a", a), ("b", b)] {
        let entry = d.entry(name).await;
        assert_eq!(
            (entry["status"].as_str(), entry["pid"].as_i64()),
            (Some("running"), Some(pid as i64))
        );
        assert_eq!(
            processes_in(&d.service_dir(name)),
            vec![pid],
            "{name} runs once"
        );
    }
    let listed = d.call("agents.list", json!({})).await;
    assert_eq!(listed["agents"].as_array().unwrap().len(), 2);

    // An adopted process is still supervised.
    unsafe { libc::kill(a, libc::SIGKILL) };
    let again = d.agent_pid("a", Some(a)).await;
    assert_eq!(processes_in(&d.service_dir("a")), vec![again]);
}

#[tokio::test]
async fn daemon_shutdown_terminates_agents_and_the_next_start_runs_them_again() {
    let mut d = Daemon::start().await;
    let script = "trap 'echo term > got_term; exit 0' TERM\nwhile true; do sleep 0.1; done";
    d.deploy(&AgentDir::script("graceful", script, json!({})));
    let first = d.agent_pid("graceful", None).await;

    assert_eq!(d.terminate(), 0);
    assert!(!alive(first));
    assert!(
        d.service_dir("graceful").join("got_term").exists(),
        "it got SIGTERM"
    );
    assert!(processes_in(&d.service_dir("graceful")).is_empty());

    d.restart().await;
    let second = d.agent_pid("graceful", Some(first)).await;
    assert!(alive(second));
    assert_eq!(d.entry("graceful").await["status"], "running");
}

#[tokio::test]
async fn redeploying_a_new_version_replaces_the_process_and_rotates_the_token() {
    let d = Daemon::start().await;
    d.deploy(&AgentDir::echo("echo", "1", json!({})));
    let tester = d.agent("tester").await;
    assert_eq!(ask(&tester, "echo", json!({"n": 1})).await["version"], "1");
    let old = d.agent_pid("echo", None).await;
    let old_token = environ(old, "IKIGAI_TOKEN").unwrap();

    d.deploy(&AgentDir::echo("echo", "2", json!({})));
    let entry = d.entry("echo").await;
    assert_eq!(entry["version"], "2");
    assert!(!alive(old), "the old process was stopped");
    let answer = ask(&tester, "echo", json!({"n": 2})).await;
    assert_eq!(answer["version"], "2");
    let new = d.agent_pid("echo", None).await;
    assert_ne!(new, old);
    assert_eq!(processes_in(&d.service_dir("echo")), vec![new]);
    assert_refused(&d, "echo", &old_token).await;
    let new_token = environ(new, "IKIGAI_TOKEN").unwrap();
    assert_ne!(new_token, old_token);
    let in_registry = format!(
        "SELECT count(*) FROM agent_registry WHERE agent_registry::text LIKE '%{new_token}%'"
    );
    assert_eq!(
        d.db.count(&in_registry).await,
        0,
        "the token is not stored in clear"
    );

    let admin = d.admin().await;
    let _: Value = admin
        .call("agents.undeploy", &json!({"name": "echo"}))
        .await
        .unwrap();
    assert!(!alive(new));
    assert!(!d.service_dir("echo").exists());
    assert_code(
        admin
            .call_value("agents.get", &json!({"name": "echo"}))
            .await,
        ErrorCode::NotFound,
    );
    assert_refused(&d, "echo", &new_token).await;
}

#[tokio::test]
async fn an_agents_token_proves_only_that_agent() {
    let d = Daemon::start().await;
    d.deploy(&AgentDir::script("a", SLEEPER, json!({})));
    d.deploy(&AgentDir::script("b", SLEEPER, json!({})));
    d.admin()
        .await
        .mailbox_send("b", &json!({"secret": 1}))
        .await
        .unwrap();
    let a = as_agent_process(&d, "a").await;

    let stolen = a
        .mailbox_receive(&Receive {
            mailbox: "b",
            max: Some(1),
            wait_ms: None,
            visibility_ms: None,
        })
        .await;
    assert_code(stolen, ErrorCode::PermissionDenied);
    let pid_a = d.agent_pid("a", None).await;
    let token_a = environ(pid_a, "IKIGAI_TOKEN").unwrap();
    assert_refused(&d, "b", &token_a).await;
    assert_refused(&d, "a", &"0".repeat(64)).await;
    // Agent a sends as itself: the sender is its identity.
    a.mailbox_send("b", &json!({"from": "a"})).await.unwrap();
    let peek = d
        .call("mailbox.peek", json!({"mailbox": "b", "limit": 10}))
        .await;
    assert_eq!(peek["messages"][1]["sender"], "a");
}

#[tokio::test]
async fn only_admin_or_a_deploy_agent_grant_manages_other_agents() {
    let d = Daemon::start().await;
    d.deploy(&AgentDir::script("worker", SLEEPER, json!({})));
    d.deploy(&AgentDir::script(
        "ops",
        SLEEPER,
        json!({"permissions": {"deploy_agent": true}}),
    ));
    let mallory = d.agent("mallory").await;
    let worker = as_agent_process(&d, "worker").await;
    let ops = as_agent_process(&d, "ops").await;
    let manifest = json!({"name": "child", "version": "1", "command": ["./run.sh"]});
    let files = json!([{"path": "run.sh", "hex": hex(&format!("#!/bin/sh\n{SLEEPER}\n")), "executable": true}]);
    let deploy = json!({"manifest": manifest, "files": files});

    for client in [&mallory, &worker] {
        assert_code(
            client.call_value("agents.deploy", &deploy).await,
            ErrorCode::PermissionDenied,
        );
        assert_code(
            client
                .call_value("agents.stop", &json!({"name": "ops"}))
                .await,
            ErrorCode::PermissionDenied,
        );
    }
    let listed: Value = worker.call("agents.list", &json!({})).await.unwrap();
    assert_eq!(
        listed["agents"].as_array().unwrap().len(),
        2,
        "listing is open"
    );

    let deployed: Value = ops.call("agents.deploy", &deploy).await.unwrap();
    assert_eq!(deployed, json!({"name": "child", "version": "1"}));
    let child = d.agent_pid("child", None).await;
    let _: Value = ops
        .call("agents.stop", &json!({"name": "child"}))
        .await
        .unwrap();
    assert!(!alive(child));
    assert_eq!(d.entry("child").await["status"], "stopped");
    worker
        .call_value("agents.heartbeat", &json!({}))
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_manifests_and_files_are_rejected_naming_the_field_and_deploy_nothing() {
    let d = Daemon::start().await;
    let admin = d.admin().await;
    let cases = [
        (json!({"version": "1"}), "manifest"),
        (json!({"name": "x", "command": ["a"]}), "version"),
        (
            json!({"name": "x", "version": "1", "command": []}),
            "command",
        ),
        (
            json!({"name": "x", "version": "1", "command": ["/bin/sh", "-c", "id"]}),
            "command[0]",
        ),
        (
            json!({"name": "x", "version": "1", "command": ["../../../../x.sh"]}),
            "command[0]",
        ),
        (
            json!({"name": "x", "version": "1", "command": ["a"], "restart": "always"}),
            "restart",
        ),
        (
            json!({"name": "x", "version": "1", "command": ["a"], "stop_grace": 1}),
            "stop_grace",
        ),
        (
            json!({"name": "x", "version": "1", "command": ["a"], "permissions": {"llm": {"models": [""]}}}),
            "permissions.llm.models[0]",
        ),
    ];
    for (manifest, field) in cases {
        let args = json!({"manifest": manifest, "files": []});
        let err = admin.call_value("agents.deploy", &args).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{manifest}");
        assert!(
            err.to_string()
                .contains(&format!("invalid manifest: {field}:")),
            "{err}"
        );
    }
    let manifest = json!({"name": "x", "version": "1", "command": ["./run.sh"]});
    for path in ["../escape", "/etc/x", "a/../../b"] {
        let files = json!([{"path": "run.sh", "hex": "00"}, {"path": path, "hex": "00"}]);
        let err = admin
            .call_value(
                "agents.deploy",
                &json!({"manifest": manifest, "files": files}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{path}");
    }
    let bad = AgentDir::script("x", SLEEPER, json!({"max_restarts": "many"}));
    let out = d.cli(&["deploy", bad.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_restarts"));

    let big = AgentDir::script("x", SLEEPER, json!({}));
    big.file("blob", &"x".repeat(8 << 20), false);
    let out = d.cli(&["deploy", big.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("more than one deploy request carries"),
        "{err}"
    );

    assert_eq!(d.db.count("SELECT count(*) FROM agent_registry").await, 0);
    let services = std::fs::read_dir(d.root().join(".ikigai/services")).map_or(0, |r| r.count());
    assert_eq!(services, 0, "no staging directory is left behind");
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_heartbeat_needs_a_deployed_agent() {
    let d = Daemon::start().await;
    let plain = d.agent("plain").await;
    assert_code(
        plain.call_value("agents.heartbeat", &json!({})).await,
        ErrorCode::NotFound,
    );
}

#[tokio::test]
async fn a_daemon_supervises_only_the_agents_deployed_in_its_root() {
    let mut d = Daemon::start().await;
    d.deploy(&AgentDir::script("mine", SLEEPER, json!({})));
    let pid = d.agent_pid("mine", None).await;
    let mut other = d.beside().await;
    let admin = other.admin().await;

    let listed: Value = admin.call("agents.list", &json!({})).await.unwrap();
    assert_eq!(
        listed["agents"][0]["name"], "mine",
        "the registry is shared"
    );
    let stop = admin
        .call_value("agents.stop", &json!({"name": "mine"}))
        .await;
    assert_code(stop, ErrorCode::Conflict);
    let out = other.cli(&[
        "deploy",
        AgentDir::script("mine", SLEEPER, json!({}))
            .path()
            .to_str()
            .unwrap(),
    ]);
    assert!(
        !out.status.success(),
        "a name supervised elsewhere is not taken over"
    );

    other.kill9();
    other.restart().await;
    d.kill9();
    d.restart().await;
    wait_until("mine is adopted by its own daemon", LONG, || async {
        count(&d, "mine", "agent_adopted").await == 1
    })
    .await;
    assert_eq!(processes_in(&d.service_dir("mine")), vec![pid]);
    assert!(!other.service_dir("mine").exists());
}

#[tokio::test]
async fn operators_list_stop_start_and_read_the_logs_of_agents_from_the_cli() {
    let d = Daemon::start().await;
    let script = "echo hello from talker\necho oops >&2\nexec sleep 1000";
    d.deploy(&AgentDir::script("talker", script, json!({})));
    d.agent_pid("talker", None).await;
    let list = d.cli_ok(&["agents", "list"]);
    let row = list.lines().find(|l| l.starts_with("talker")).expect(&list);
    assert!(row.contains(" 1 ") && row.contains("running"), "{row}");
    wait_until("both lines are logged", LONG, || async {
        count(&d, "talker", "log").await == 2
    })
    .await;
    let logs = d.cli_ok(&["agents", "logs", "talker"]);
    assert!(logs.contains("stdout: hello from talker"), "{logs}");
    assert!(logs.contains("stderr: oops"), "{logs}");
    let events = d.cli_ok(&["--json", "agents", "logs", "talker"]);
    let lines: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{events}");
    assert!(lines
        .iter()
        .any(|e| e["payload"]["line"] == "hello from talker"));
    let listed: Value = serde_json::from_str(&d.cli_ok(&["--json", "agents", "list"])).unwrap();
    assert_eq!(listed["agents"][0]["status"], "running");

    d.cli_ok(&["agents", "stop", "talker"]);
    assert_eq!(d.entry("talker").await["status"], "stopped");
    assert!(processes_in(&d.service_dir("talker")).is_empty());
    d.cli_ok(&["agents", "start", "talker"]);
    d.agent_pid("talker", None).await;
    d.cli_ok(&["agents", "undeploy", "talker"]);
    assert!(!d.cli_ok(&["agents", "list"]).contains("talker"));
}

#[tokio::test]
async fn what_an_agent_leaves_running_in_its_process_group_ends_with_it() {
    let d = Daemon::start().await;
    let script = "sleep 1000 &\necho $! > child.pid\nexit 0";
    d.deploy(&AgentDir::script(
        "forker",
        script,
        json!({"restart": "temporary"}),
    ));
    wait_until("forker is stopped", LONG, || async {
        d.entry("forker").await["status"] == "stopped"
    })
    .await;
    let pid_file = d.service_dir("forker").join("child.pid");
    let child: i32 = std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the left-behind child is killed", LONG, || async {
        !alive(child)
    })
    .await;
}

#[tokio::test]
async fn a_panicking_supervisor_restarts_and_adopts_its_agent_without_a_second_process() {
    let d = Daemon::start_with("[debug]\nfault_injection = true\n").await;
    d.deploy(&AgentDir::script("calm", SLEEPER, json!({})));
    let pid = d.agent_pid("calm", None).await;

    d.call("debug.panic_agent", json!({"name": "calm"})).await;
    wait_until(
        "the actor restarted and adopted the agent",
        LONG,
        || async { count(&d, "calm", "agent_adopted").await == 1 },
    )
    .await;
    assert_eq!(processes_in(&d.service_dir("calm")), vec![pid]);
    d.assert_serving().await;

    unsafe { libc::kill(pid, libc::SIGKILL) };
    let again = d.agent_pid("calm", Some(pid)).await;
    assert_eq!(
        processes_in(&d.service_dir("calm")),
        vec![again],
        "still supervised"
    );
}

#[tokio::test]
async fn an_entry_written_with_the_seeds_sql_is_listed_and_taken_over_by_a_deploy() {
    let mut d = Daemon::start().await;
    let seed = "INSERT INTO agent_registry (name, version, manifest, status) \
                VALUES ('legacy', '0', '{}', 'running')";
    d.db.client().await.execute(seed, &[]).await.unwrap();
    d.kill9();
    d.restart().await;
    assert_eq!(
        d.entry("legacy").await["version"],
        "0",
        "listed, not started"
    );

    d.deploy(&AgentDir::script("legacy", SLEEPER, json!({})));
    let pid = d.agent_pid("legacy", None).await;
    assert_eq!(processes_in(&d.service_dir("legacy")), vec![pid]);
    assert_eq!(d.entry("legacy").await["version"], "1");
}

#[tokio::test]
async fn a_directory_already_in_place_is_deployed_without_sending_files() {
    let d = Daemon::start().await;
    let manifest = json!({"name": "inplace", "version": "1", "command": ["./run.sh"]});
    let admin = d.admin().await;
    let missing = admin
        .call_value("agents.deploy", &json!({ "manifest": manifest }))
        .await;
    assert_code(missing, ErrorCode::BadRequest);

    let source = AgentDir::script("inplace", SLEEPER, json!({}));
    let dir = d.service_dir("inplace");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(source.path().join("run.sh"), dir.join("run.sh")).unwrap();
    d.call("agents.deploy", json!({ "manifest": manifest }))
        .await;
    let pid = d.agent_pid("inplace", None).await;
    assert_eq!(processes_in(&dir), vec![pid]);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        written["restart"], "permanent",
        "the manifest is written with its defaults"
    );
}

#[tokio::test]
async fn an_agent_whose_directory_vanished_is_failed_at_the_next_start() {
    let mut d = Daemon::start().await;
    d.deploy(&AgentDir::script("gone", SLEEPER, json!({})));
    d.agent_pid("gone", None).await;
    assert_eq!(d.terminate(), 0);
    std::fs::remove_dir_all(d.service_dir("gone")).unwrap();

    d.restart().await;
    wait_until("it is failed with an error event", LONG, || async {
        count(&d, "gone", "error").await == 1
    })
    .await;
    assert_eq!(d.entry("gone").await["status"], "failed");
}

#[tokio::test]
async fn a_manifest_env_value_is_shown_to_admin_and_its_own_agent_only() {
    let d = Daemon::start().await;
    let env = json!({"API_KEY": "sk-live-123"});
    d.register_manifest(json!({"name": "holder", "version": "1", "command": ["x"], "env": env}))
        .await;
    let snoop = d.agent("snoop").await;
    let got: serde_json::Value = snoop
        .call("agents.get", &json!({"name": "holder"}))
        .await
        .unwrap();
    assert_eq!(got["manifest"]["env"], json!({"API_KEY": "[redacted]"}));
    let listed: serde_json::Value = snoop.call("agents.list", &json!({})).await.unwrap();
    assert!(!listed.to_string().contains("sk-live-123"), "{listed}");
    for seer in [d.admin().await, d.agent("holder").await] {
        let got: serde_json::Value = seer
            .call("agents.get", &json!({"name": "holder"}))
            .await
            .unwrap();
        assert_eq!(got["manifest"]["env"], env);
    }
}
