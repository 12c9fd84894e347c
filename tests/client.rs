//! The Rust client's typed calls, service by service, against the real daemon: each test reads
//! as what an agent written with `ikigai-client` can do, with no raw `call(op, json)`.

mod support;

use futures::StreamExt;
use ikigai_client::{
    AgentFile, ChatMessage, Client, ClientError, CustomTool, Delivery, ErrorCode, ListDocuments,
    ListTasks, NewTask, Prompt, PromptEvent, Query, Tools,
};
use ikigai_mock_llm::{Api, Reply};
use serde_json::json;
use std::time::Duration;
use support::llm::setup;
use support::{assert_code, wait_for, Daemon};

/// `Err(code)` of a typed call, with the protocol's `retriable`.
fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (ErrorCode, bool) {
    let e = r.expect_err("refused");
    (e.code().expect("a daemon error"), e.retriable())
}

#[tokio::test]
async fn queues_push_claim_and_settle_through_typed_calls() {
    let d = Daemon::start().await;
    let c = d.agent("worker").await;
    let q = c.queue("jobs");
    let low = q.push(&json!({"n": 1})).await.unwrap();
    assert!(low.created);
    let urgent = NewTask {
        priority: Some(9),
        dedup_key: Some("u".into()),
        ..NewTask::new(json!({"n": 2}))
    };
    let high = q.push_task(&urgent).await.unwrap();
    let again = q
        .push_many(&[urgent.clone(), NewTask::new(json!(3))])
        .await
        .unwrap();
    assert_eq!(
        (again[0].id.clone(), again[0].created),
        (high.id.clone(), false)
    );
    assert!(again[1].created);
    assert_eq!(q.stats().await.unwrap().pending, 3);

    let first = q.claim_one().await.unwrap().expect("a task");
    assert_eq!((first.id.as_str(), first.priority), (high.id.as_str(), 9));
    assert!(c.task(&first.id).extend(60_000).await.unwrap() > first.lease_until.clone().unwrap());
    let done = c
        .task(&first.id)
        .complete(Some(&json!("ok")))
        .await
        .unwrap();
    assert_eq!(done.result, Some(json!("ok")));
    let two = q.claim(Some(2), None, Some(10_000)).await.unwrap();
    assert_eq!(two.len(), 2);
    let released = c.task(&two[0].id).release().await.unwrap();
    assert_eq!(released.claimed_by, None);
    let failed = c.task(&two[1].id).fail("boom", Some(0)).await.unwrap();
    assert_eq!(failed.error.as_deref(), Some("boom"));
    let (code, retriable) = refused(c.task(&first.id).complete(None).await);
    assert_eq!((code, retriable), (ErrorCode::Conflict, false));

    let completed = ListTasks {
        state: Some("completed"),
        ..ListTasks::default()
    };
    let page = q.list(&completed).await.unwrap();
    assert_eq!(page.tasks.len(), 1);
    assert_eq!(page.tasks[0].id, high.id);
}

#[tokio::test]
async fn mailboxes_send_receive_peek_ack_and_count_through_typed_calls() {
    let d = Daemon::start().await;
    let alice = d.agent("alice").await;
    let bob = d.agent("bob").await;
    let id = alice.mailbox("bob").send(&json!({"hi": 1})).await.unwrap();
    let inbox = bob.mailbox("bob");
    let peeked = inbox.peek(None).await.unwrap();
    assert_eq!(peeked[0].id, id);
    let got = inbox.receive(Some(10), Some(1_000)).await.unwrap();
    assert_eq!((got[0].sender.as_str(), got[0].attempts), ("alice", 1));
    assert_eq!(inbox.ack(&[id]).await.unwrap(), 1);
    let stats = inbox.stats().await.unwrap().expect("a stored mailbox");
    assert_eq!((stats.unread, stats.read), (0, 1));
    let (code, _) = refused(alice.mailbox("bob").receive(None, None).await);
    assert_eq!(code, ErrorCode::PermissionDenied);
}

#[tokio::test]
async fn the_cache_keeps_each_namespace_apart_and_counts() {
    let d = Daemon::start().await;
    let a = d.agent("a").await;
    let b = d.agent("b").await;
    a.cache().set("k", &json!({"v": 1})).await.unwrap();
    a.shared_cache().set("k", &json!("shared")).await.unwrap();
    assert_eq!(a.cache().get("k").await.unwrap(), Some(json!({"v": 1})));
    assert_eq!(b.cache().get("k").await.unwrap(), None);
    assert_eq!(
        b.shared_cache().get("k").await.unwrap(),
        Some(json!("shared"))
    );
    assert_eq!(a.cache().incr("n", 5).await.unwrap(), 5);
    assert_eq!(a.cache().incr("n", -2).await.unwrap(), 3);
    let many = a.cache().get_many(&["k", "n", "absent"]).await.unwrap();
    assert_eq!((many.len(), &many["n"]), (2, &json!(3)));
    let (code, retriable) = refused(a.cache().incr("k", 1).await);
    assert_eq!((code, retriable), (ErrorCode::Conflict, false));
    a.cache()
        .set_with_ttl("brief", &json!(1), Some(50))
        .await
        .unwrap();
    assert!(a.cache().delete("k").await.unwrap());
    assert!(!a.cache().delete("k").await.unwrap());
    wait_for("the ttl runs out", Duration::from_secs(5), || async {
        a.cache()
            .get("brief")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

/// The next delivery of `s`, within 10 s.
async fn next(s: &mut ikigai_client::Subscription) -> Option<Delivery> {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("a delivery within 10 s")
}

#[tokio::test]
async fn a_subscription_is_a_stream_of_typed_messages_until_unsubscribed() {
    let d = Daemon::start().await;
    let listener = d.agent("listener").await;
    let mut orders = listener.pubsub().subscribe("orders.>").await.unwrap();
    let mut users = listener.pubsub().subscribe("users.*").await.unwrap();
    let shop = d.agent("shop").await;
    let ps = shop.pubsub();
    assert_eq!(
        ps.publish("orders.created.eu", &json!({"n": 1}))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        ps.publish("users.created", &json!({"n": 2})).await.unwrap(),
        1
    );
    let Some(Delivery::Message(m)) = next(&mut orders).await else {
        panic!("a message for orders.>")
    };
    assert_eq!(
        (m.topic.as_str(), m.message),
        ("orders.created.eu", json!({"n": 1}))
    );
    let Some(Delivery::Message(m)) = next(&mut users).await else {
        panic!("a message for users.*")
    };
    assert_eq!(m.message, json!({"n": 2}));
    assert!(orders.unsubscribe().await.unwrap());
    assert_eq!(ps.publish("orders.created", &json!(3)).await.unwrap(), 0);
    drop(users);
    wait_for(
        "a dropped subscription ends",
        Duration::from_secs(5),
        || async {
            let n = ps.publish("users.gone", &json!(4)).await.unwrap();
            (n == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn storage_versions_documents_and_refuses_a_stale_write() {
    let d = Daemon::start().await;
    let c = d.agent("writer").await;
    let s = c.storage();
    assert_eq!(
        s.put_if_version("doc/1", &json!({"a": 1}), Some(0))
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.put("doc/1", &json!({"a": 2})).await.unwrap(), 2);
    s.put("doc/2", &json!(null)).await.unwrap();
    let doc = s.get("doc/1").await.unwrap().expect("stored");
    assert_eq!((doc.version, doc.value), (2, json!({"a": 2})));
    let (code, retriable) = refused(s.put_if_version("doc/1", &json!(0), Some(1)).await);
    assert_eq!((code, retriable), (ErrorCode::Conflict, false));
    let which = ListDocuments {
        prefix: Some("doc/"),
        limit: Some(1),
        ..ListDocuments::default()
    };
    let page = s.list(&which).await.unwrap();
    assert_eq!(page.next.as_deref(), Some("doc/1"));
    assert!(s.delete_if_version("doc/1", Some(2)).await.unwrap());
    assert!(!s.delete("doc/1").await.unwrap());
    assert_eq!(
        d.agent("other").await.storage().get("doc/2").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn telemetry_emitted_through_the_client_is_queried_back() {
    let d = Daemon::start().await;
    let c = d.agent("metrics").await;
    let t = c.telemetry();
    t.emit("metric", &json!({"name": "latency", "value": 12}))
        .await
        .unwrap();
    let which = Query {
        event_type: Some("metric"),
        ..Query::default()
    };
    let events = wait_for("the event is written", Duration::from_secs(5), || async {
        let events = t.query(&which).await.unwrap();
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(
        (events[0].agent.as_str(), &events[0].payload["value"]),
        ("metrics", &json!(12))
    );
    let others = Query {
        agent: Some("daemon"),
        ..Query::default()
    };
    assert_eq!(
        refused(t.query(&others).await).0,
        ErrorCode::PermissionDenied
    );
}

#[tokio::test]
async fn a_transaction_commits_when_its_body_returns_ok_and_rolls_back_on_err_or_drop() {
    let d = Daemon::start().await;
    let c = d.agent("clerk").await;
    let reader = d.agent("reader").await;
    for n in 1..=3 {
        c.queue("in").push(&json!(n)).await.unwrap();
    }
    let done = c
        .transaction(|tx| async move {
            let task = tx.queue("in").claim_one().await?.expect("a task");
            tx.storage().put("result", &task.payload).await?;
            tx.cache().set("last", &task.payload).await?;
            tx.mailbox("reader").send(&json!({"done": task.id})).await?;
            tx.queue("out").push(&task.payload).await?;
            tx.task(&task.id).complete(None).await?;
            Ok::<_, ClientError>(task.id)
        })
        .await
        .unwrap();
    let msg = reader
        .mailbox("reader")
        .receive(None, Some(5_000))
        .await
        .unwrap();
    assert_eq!(msg[0].payload, json!({"done": done}));
    assert_eq!(
        c.storage().get("result").await.unwrap().unwrap().value,
        json!(1)
    );
    assert_eq!(c.cache().get("last").await.unwrap(), Some(json!(1)));
    assert_eq!(c.queue("out").stats().await.unwrap().pending, 1);

    let failed: Result<(), ClientError> = c
        .transaction(|tx| async move {
            let task = tx.queue("in").claim_one().await?.expect("a task");
            tx.storage().put("result", &json!("never")).await?;
            tx.task(&task.id).complete(None).await?;
            // The body fails after its writes: none of them stays.
            tx.storage()
                .put_if_version("result", &json!(0), Some(99))
                .await?;
            Ok(())
        })
        .await;
    assert_eq!(refused(failed).0, ErrorCode::Conflict);
    assert_eq!(
        c.storage().get("result").await.unwrap().unwrap().value,
        json!(1)
    );

    let tx = c.begin().await.unwrap();
    let held = tx.queue("in").claim(Some(2), None, None).await.unwrap();
    assert_eq!(held.len(), 2);
    assert!(
        c.queue("in").claim_one().await.unwrap().is_none(),
        "locked by the transaction"
    );
    drop(tx);
    let back = wait_for(
        "the dropped transaction rolls back",
        Duration::from_secs(5),
        || async {
            let got = c.queue("in").claim(Some(2), None, None).await.unwrap();
            (got.len() == 2).then_some(got)
        },
    )
    .await;
    assert!(
        back.iter().all(|t| t.attempts == 1),
        "attempts unchanged by the rollback"
    );

    let tx = c.begin().await.unwrap();
    tx.mailbox("reader").send(&json!("undone")).await.unwrap();
    let id = tx.id().to_owned();
    tx.rollback().await.unwrap();
    let gone = c.call_value("tx.commit", &json!({"tx": id})).await;
    assert_code(gone, ErrorCode::NotFound);
    let none = reader
        .mailbox("reader")
        .receive(None, Some(200))
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_streamed_prompt_yields_typed_deltas_and_its_custom_tool_is_answered_by_its_handler() {
    let (mock, _d, c) = setup("coder").await;
    mock.push(
        Api::Anthropic,
        Reply::tool_call("call_1", "line_count", json!({"path": "main.rs"})),
    );
    mock.push(Api::Anthropic, Reply::text("main.rs has three lines"));
    let count = CustomTool::new(
        "line_count",
        "count a file's lines",
        json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        |args| async move {
            match args["path"].as_str() {
                Some("main.rs") => Ok(json!(3)),
                _ => Err("no such file".to_owned()),
            }
        },
    );
    let prompt = Prompt {
        model: Some("sonnet".into()),
        messages: vec![ChatMessage::user("how long is main.rs?")],
        tools: Some(Tools {
            custom: vec![count],
            ..Tools::default()
        }),
        ..Prompt::default()
    };
    let mut events = c.prompt_stream(&prompt).await.unwrap();
    let (mut text, mut calls, mut reply) = (String::new(), Vec::new(), None);
    while let Some(event) = events.next().await {
        match event.unwrap() {
            PromptEvent::Delta(delta) => text.push_str(&delta),
            PromptEvent::ToolCall(call) => calls.push(call.name),
            PromptEvent::Done(r) => reply = Some(r),
        }
    }
    let reply = reply.expect("the reply ends the stream");
    assert_eq!(calls, ["line_count"]);
    assert_eq!(text, "main.rs has three lines");
    assert_eq!(
        (reply.content.as_str(), reply.steps),
        ("main.rs has three lines", 2)
    );
    let sent = &mock.received()[1].body;
    assert!(
        sent.to_string().contains("\"3\""),
        "the handler's answer reached the model: {sent}"
    );
}

#[tokio::test]
async fn a_prompt_on_a_thread_remembers_and_usage_is_reported_to_admin() {
    let (mock, d, c) = setup("support").await;
    mock.push(Api::Anthropic, Reply::text("Billing."));
    mock.push(Api::Anthropic, Reply::text("P2."));
    let thread = c.threads().create(Some("Support tickets")).await.unwrap();
    let ask = |text: &str| Prompt {
        model: Some("sonnet".into()),
        thread: Some(thread.id.clone()),
        messages: vec![ChatMessage::user(text)],
        ..Prompt::default()
    };
    let first = c.prompt(&ask("Categorize this ticket")).await.unwrap();
    assert_eq!(
        (first.content.as_str(), first.thread.as_ref()),
        ("Billing.", Some(&thread.id))
    );
    let second = c.prompt(&ask("What priority?")).await.unwrap();
    assert_eq!(second.content, "P2.");
    let history = mock.received()[1].body.to_string();
    assert!(history.contains("Categorize this ticket") && history.contains("Billing."));
    let usage = wait_for("usage is logged", Duration::from_secs(10), || async {
        let rows = d.admin().await.llm_usage(None).await.unwrap();
        rows.into_iter()
            .find(|r| r.agent == "support" && r.calls == 2)
    })
    .await;
    assert_eq!(usage.model, "sonnet");
    assert_eq!(
        refused(c.llm_usage(None).await).0,
        ErrorCode::PermissionDenied
    );
    let unknown = Prompt {
        thread: Some("0190f4c2-8a3e-7b1c-9d2e-3f4a5b6c7d8e".into()),
        ..ask("hello?")
    };
    assert_eq!(refused(c.prompt(&unknown).await).0, ErrorCode::NotFound);
}

#[tokio::test]
async fn agents_are_deployed_listed_stopped_started_and_undeployed_through_typed_calls() {
    let d = Daemon::start().await;
    let admin = d.admin().await;
    let agents = admin.agents();
    let manifest = json!({"name": "sleeper", "version": "1", "command": ["./run.sh"]});
    let run = AgentFile::new("run.sh", b"#!/bin/sh\nexec sleep 600\n", true);
    let deployed = agents.deploy(&manifest, Some(&[run])).await.unwrap();
    assert_eq!(
        (deployed.name.as_str(), deployed.version.as_str()),
        ("sleeper", "1")
    );
    let pid = wait_for("it runs", Duration::from_secs(10), || async {
        agents.get("sleeper").await.unwrap().pid
    })
    .await;
    assert!(pid > 0);
    assert_eq!(agents.list().await.unwrap()[0].name, "sleeper");
    agents.stop("sleeper").await.unwrap();
    assert_eq!(agents.get("sleeper").await.unwrap().status, "stopped");
    agents.start("sleeper").await.unwrap();
    agents.restart("sleeper").await.unwrap();
    let token = agents.token("sleeper").await.unwrap();
    let me = Client::connect_as(d.socket(), "sleeper", &token.token)
        .await
        .unwrap();
    me.agents().heartbeat().await.unwrap();
    assert!(agents
        .get("sleeper")
        .await
        .unwrap()
        .last_heartbeat
        .is_some());
    let (code, _) = refused(me.agents().start("sleeper").await);
    assert_eq!(
        code,
        ErrorCode::PermissionDenied,
        "an agent may not start itself"
    );
    agents.undeploy("sleeper").await.unwrap();
    assert_eq!(refused(agents.get("sleeper").await).0, ErrorCode::NotFound);
}

#[tokio::test]
async fn the_daemon_answers_ping_status_and_fault_injection_through_typed_calls() {
    let d = Daemon::start_with("[debug]\nfault_injection = true\n").await;
    let admin = d.admin().await;
    admin.ping().await.unwrap();
    let status = admin.status().await.unwrap();
    assert_eq!((status.daemon.as_str(), status.pid), ("ikigai", d.pid()));
    let owner = d.agent("owner").await;
    owner.mailbox("owner").send(&json!(1)).await.unwrap();
    admin.debug().panic_mailbox("owner").await.unwrap();
    let got = owner
        .mailbox("owner")
        .receive(None, Some(5_000))
        .await
        .unwrap();
    assert_eq!(
        got[0].payload,
        json!(1),
        "the mailbox came back from storage"
    );
    assert_eq!(
        refused(admin.debug().panic_agent("nobody").await).0,
        ErrorCode::NotFound
    );
    assert_eq!(
        refused(owner.debug().panic_mailbox("owner").await).0,
        ErrorCode::PermissionDenied
    );
}

#[tokio::test]
async fn a_panicking_tool_handler_is_a_failed_call_the_model_is_told_of() {
    let (mock, _d, c) = setup("brittle").await;
    mock.push(Api::Anthropic, Reply::tool_call("c1", "explode", json!({})));
    mock.push(Api::Anthropic, Reply::text("recovered"));
    let explode = CustomTool::new("explode", "fails", json!({"type": "object"}), |_| async {
        panic!("the handler's own bug")
    });
    let prompt = Prompt {
        model: Some("sonnet".into()),
        messages: vec![ChatMessage::user("try it")],
        tools: Some(Tools {
            custom: vec![explode],
            ..Tools::default()
        }),
        ..Prompt::default()
    };
    assert_eq!(c.prompt(&prompt).await.unwrap().content, "recovered");
    let told = mock.received()[1].body.to_string();
    assert!(told.contains("the tool's handler failed"), "{told}");
}

/// The agent scenario every client runs: claim a task, prompt with a platform tool, store the
/// result, send a message and complete the task, all in one transaction.
async fn scenario(c: &Client, tx: &ikigai_client::Tx) -> Result<String, ClientError> {
    let task = tx.queue("reports").claim_one().await?.expect("a task");
    let ask = Prompt {
        model: Some("sonnet".into()),
        messages: vec![ChatMessage::user(format!("Analyze {}", task.payload))],
        tools: Some(Tools {
            platform: vec!["create_task".into()],
            ..Tools::default()
        }),
        ..Prompt::default()
    };
    let answer = c.prompt(&ask).await?.content;
    tx.storage().put(&task.id, &json!(answer)).await?;
    tx.mailbox("oncall").send(&json!({"task": task.id})).await?;
    tx.task(&task.id).complete(Some(&json!(answer))).await?;
    Ok(task.id)
}

#[tokio::test]
async fn the_agent_scenario_commits_whole_and_a_cancelled_run_leaves_only_its_platform_tool_work() {
    let (mock, d, c) = setup("analyst").await;
    let oncall = d.agent("oncall").await;
    c.queue("reports").push(&json!("week 1")).await.unwrap();
    mock.push(Api::Anthropic, Reply::text("all quiet"));
    let agent = c.clone();
    let id = c
        .transaction(|tx| async move { scenario(&agent, &tx).await })
        .await
        .unwrap();
    let done = c.storage().get(&id).await.unwrap().expect("the result");
    assert_eq!(done.value, json!("all quiet"));
    let told = oncall
        .mailbox("oncall")
        .receive(None, Some(5_000))
        .await
        .unwrap();
    assert_eq!(told[0].payload, json!({"task": id}));

    // The next run is cancelled once its writes are made (its future dropped, as when the agent
    // stops): the transaction rolls back; the task the model created through create_task ran
    // outside it, as every platform tool does, and stays.
    c.queue("reports").push(&json!("week 2")).await.unwrap();
    let create = json!({"queue": "follow-ups", "payload": {"about": "week 2"}});
    mock.push(
        Api::Anthropic,
        Reply::tool_call("t1", "create_task", create),
    );
    mock.push(Api::Anthropic, Reply::text("filed a follow-up"));
    let (written, wrote) = tokio::sync::oneshot::channel();
    let agent = c.clone();
    let run = tokio::spawn(async move {
        let tx = agent.begin().await.unwrap();
        let id = scenario(&agent, &tx).await.unwrap();
        written.send(id).unwrap();
        std::future::pending::<()>().await
    });
    let id = wrote.await.unwrap();
    run.abort();
    let back = wait_for(
        "the claim is rolled back",
        Duration::from_secs(5),
        || async { c.queue("reports").claim_one().await.unwrap() },
    )
    .await;
    assert_eq!((back.id.as_str(), back.attempts), (id.as_str(), 1));
    assert_eq!(c.storage().get(&id).await.unwrap(), None);
    let none = oncall
        .mailbox("oncall")
        .receive(None, Some(300))
        .await
        .unwrap();
    assert!(none.is_empty(), "the message was never sent");
    assert_eq!(c.queue("follow-ups").stats().await.unwrap().pending, 1);
}
