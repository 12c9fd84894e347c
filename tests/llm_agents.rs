//! LLM access as agents use it, through the daemon against a scripted provider: the tool loop
//! (platform tools acting on the platform, custom tools through the agent), threads across
//! restarts, permissions, the hourly quota under concurrency and across daemons, and the seed's
//! SQL over the interaction log.

mod support;

use ikigai_client::ErrorCode;
use ikigai_mock_llm::{Api, MockLlm, Reply};
use serde_json::{json, Value};
use std::time::Duration;
use support::llm::*;
use support::{assert_code, Daemon};

#[tokio::test]
async fn platform_tools_run_as_the_agent_and_the_loop_continues_to_the_answer() {
    let (mock, d, c) = setup("triage").await;
    mock.push(
        Api::Anthropic,
        Reply::tool_call(
            "t1",
            "create_task",
            json!({"queue": "bugs", "payload": {"title": "crash"}, "priority": 7}),
        ),
    );
    mock.push(
        Api::Anthropic,
        Reply::tool_call(
            "t2",
            "send_message",
            json!({"mailbox": "oncall", "payload": {"text": "P1 filed"}}),
        ),
    );
    mock.push(
        Api::Anthropic,
        Reply::text("Filed as priority 7 and told oncall."),
    );
    let r = prompt(
        &c,
        json!({"model": "sonnet", "messages": user("file it"),
        "tools": {"platform": ["create_task", "send_message"]}}),
    )
    .await
    .unwrap();
    assert_eq!(r["content"], "Filed as priority 7 and told oncall.");
    assert_eq!(r["steps"], 3);
    assert_eq!(r["usage"]["input_tokens"], 30);
    let task =
        d.db.client()
            .await
            .query_one(
                "SELECT priority, payload FROM task_queue WHERE queue_name = 'bugs'",
                &[],
            )
            .await
            .unwrap();
    assert_eq!(task.get::<_, i32>(0), 7);
    assert_eq!(task.get::<_, Value>(1), json!({"title": "crash"}));
    let sender: String =
        d.db.client()
            .await
            .query_one(
                "SELECT sender FROM mailbox WHERE mailbox_name = 'oncall'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(sender, "triage");
    let third = &mock.received()[2].body["messages"];
    let result = &third[third.as_array().unwrap().len() - 1]["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["tool_use_id"], "t2");
}

#[tokio::test]
async fn streamed_tool_calls_of_both_formats_are_assembled_and_run() {
    for (api, model) in [(Api::Anthropic, "sonnet"), (Api::OpenAi, "gpt")] {
        let (mock, d, c) = setup("streamer").await;
        let args = json!({"queue": "jobs", "payload": {"n": [1, 2, 3]}, "priority": 3});
        mock.push(api, Reply::tool_call("s1", "create_task", args));
        mock.push(api, Reply::text("queued it"));
        let r = prompt(
            &c,
            json!({"model": model, "messages": user("queue"), "stream": true,
            "tools": {"platform": ["create_task"]}}),
        )
        .await
        .unwrap();
        assert_eq!(
            (r["content"].as_str(), r["steps"].as_u64()),
            (Some("queued it"), Some(2))
        );
        let payload: Value =
            d.db.client()
                .await
                .query_one(
                    "SELECT payload FROM task_queue WHERE queue_name = 'jobs'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
        assert_eq!(payload, json!({"n": [1, 2, 3]}), "{api:?}");
        let (name, data) = next_push(&c).await;
        assert_eq!(
            (name.as_str(), data["delta"].as_str()),
            ("llm.delta", Some("queued "))
        );
    }
}

#[tokio::test]
async fn the_tool_loop_stops_at_max_steps_with_the_open_calls_in_the_reply() {
    let mock = MockLlm::start().await;
    let d = daemon(&mock, "max_steps = 2").await;
    let c = allow_all(&d, "looper").await;
    for id in ["a", "b"] {
        mock.push(Api::OpenAi, Reply::tool_call(id, "list_agents", json!({})));
    }
    let r = prompt(
        &c,
        json!({"model": "gpt", "messages": user("loop"),
        "tools": {"platform": ["list_agents"]}}),
    )
    .await
    .unwrap();
    assert_eq!(
        (r["stop_reason"].as_str(), r["steps"].as_u64()),
        (Some("max_steps"), Some(2))
    );
    assert_eq!(r["tool_calls"][0]["id"], "b");
    assert_eq!(mock.received().len(), 2);
    let listed = &mock.received()[1].body["messages"][2];
    let agents: Value = serde_json::from_str(listed["content"].as_str().unwrap()).unwrap();
    let looper =
        json!({"name": "looper", "version": "1", "status": "running", "last_heartbeat": null});
    assert_eq!(agents, json!([looper]), "list_agents shows no manifest");
}

#[tokio::test]
async fn deploy_agent_deploys_through_the_registry_when_the_manifest_allows_it() {
    let mock = MockLlm::start().await;
    let d = daemon(&mock, "").await;
    d.register_manifest(json!({"name": "ops", "version": "1", "command": ["x"],
        "permissions": {"deploy_agent": true,
            "llm": {"models": ["gpt"], "platform_tools": ["deploy_agent"]}}}))
        .await;
    let ops = d.agent("ops").await;
    let script: String = "#!/bin/sh\nexec sleep 1000\n"
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest = json!({"name": "child", "version": "7", "command": ["./run.sh"]});
    let files = json!([{"path": "run.sh", "hex": script, "executable": true}]);
    mock.push(
        Api::OpenAi,
        Reply::tool_call(
            "d1",
            "deploy_agent",
            json!({"manifest": manifest, "files": files}),
        ),
    );
    mock.push(Api::OpenAi, Reply::text("deployed"));
    let r = prompt(
        &ops,
        json!({"model": "gpt", "messages": user("deploy child"),
        "tools": {"platform": ["deploy_agent"]}}),
    )
    .await
    .unwrap();
    assert_eq!(r["content"], "deployed");
    let result = &mock.received()[1].body["messages"][2];
    assert_eq!(
        result["content"],
        json!({"name": "child", "version": "7"}).to_string(),
        "{result}"
    );
    let version: String =
        d.db.client()
            .await
            .query_one(
                "SELECT version FROM agent_registry WHERE name = 'child'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(version, "7");
    d.call("agents.undeploy", json!({"name": "child"})).await;
}

#[tokio::test]
async fn a_custom_tool_call_is_pushed_to_the_agent_and_its_result_continues_the_loop() {
    let (mock, _d, c) = setup("coder").await;
    mock.push(
        Api::OpenAi,
        Reply::tool_call("call_9", "read_file", json!({"path": "main.rs"})),
    );
    mock.push(Api::OpenAi, Reply::text("The file has 3 lines."));
    let custom = json!([{"name": "read_file", "description": "read a file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}]);
    let pending = c
        .submit(
            "llm.prompt",
            &json!({"model": "gpt", "messages": user("count lines"),
        "tools": {"custom": custom}}),
        )
        .await
        .unwrap();
    let (name, data) = next_push(&c).await;
    assert_eq!(name, "llm.tool_call");
    assert_eq!(
        data["tool_call"],
        json!({"id": "call_9", "name": "read_file", "arguments": {"path": "main.rs"}})
    );
    let _: Value = c
        .call(
            "llm.tool_result",
            &json!({"call_id": "call_9", "content": "a\nb\nc"}),
        )
        .await
        .unwrap();
    let r: Value = pending.reply().await.unwrap();
    assert_eq!(r["content"], "The file has 3 lines.");
    let second = &mock.received()[1].body["messages"];
    assert_eq!(
        second[2],
        json!({"role": "tool", "tool_call_id": "call_9", "content": "a\nb\nc"})
    );
}

#[tokio::test]
async fn a_custom_tool_call_without_a_result_times_out_with_a_clear_error() {
    let (mock, _d, c) = setup("coder").await;
    mock.push(
        Api::OpenAi,
        Reply::tool_call("call_1", "ask_human", json!({})),
    );
    let custom = json!([{"name": "ask_human", "parameters": {"type": "object"}}]);
    let e = prompt(
        &c,
        json!({"model": "gpt", "messages": user("?"), "tools": {"custom": custom}}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Timeout));
    assert!(e.to_string().contains("call_1"), "{e}");
    let late = c
        .call::<_, Value>(
            "llm.tool_result",
            &json!({"call_id": "call_1", "content": "x"}),
        )
        .await;
    assert_code(late, ErrorCode::NotFound);
}

#[tokio::test]
async fn a_thread_follow_up_carries_the_history_also_after_a_restart() {
    let (mock, mut d, c) = setup("triage").await;
    let t: Value = c
        .call("threads.create", &json!({"context": "You triage bugs."}))
        .await
        .unwrap();
    let thread = t["id"].as_str().unwrap().to_owned();
    mock.push(Api::Anthropic, Reply::text("I assigned P2."));
    let r = prompt(
        &c,
        json!({"model": "sonnet", "thread": thread, "messages": user("Triage: login fails")}),
    )
    .await
    .unwrap();
    assert_eq!(r["thread"], thread.as_str());
    d.terminate();
    d.restart().await;
    let c = d.agent("triage").await;
    mock.push(Api::Anthropic, Reply::text("P2."));
    let r = prompt(
        &c,
        json!({"model": "sonnet", "thread": thread,
        "messages": user("What priority did you assign?")}),
    )
    .await
    .unwrap();
    assert_eq!(r["content"], "P2.");
    let sent = &mock.received()[1].body;
    assert_eq!(sent["system"], "You triage bugs.");
    let texts: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "Triage: login fails",
            "I assigned P2.",
            "What priority did you assign?"
        ]
    );
    let other = allow_all(&d, "intruder").await;
    let e = prompt(
        &other,
        json!({"model": "sonnet", "thread": thread, "messages": user("?")}),
    )
    .await;
    assert_code(e, ErrorCode::NotFound);
}

#[tokio::test]
async fn prompts_on_one_thread_take_turns_and_each_sees_the_last() {
    let (mock, _d, c) = setup("triage").await;
    let t: Value = c.call("threads.create", &json!({})).await.unwrap();
    let thread = t["id"].as_str().unwrap();
    let slow = Reply::Delay(
        Duration::from_millis(300),
        Box::new(Reply::text("first answer")),
    );
    mock.push(Api::Anthropic, slow);
    mock.push(Api::Anthropic, Reply::text("second answer"));
    let first = json!({"model": "sonnet", "thread": thread, "messages": user("one")});
    let second = json!({"model": "sonnet", "thread": thread, "messages": user("two")});
    let (a, b) = tokio::join!(prompt(&c, first), prompt(&c, second));
    let mut answers = [a.unwrap()["content"].clone(), b.unwrap()["content"].clone()];
    answers.sort_by_key(|v| v.to_string());
    assert_eq!(answers, [json!("first answer"), json!("second answer")]);
    let later = &mock.received()[1].body["messages"];
    assert_eq!(later.as_array().unwrap().len(), 3, "{later}");
    assert_eq!(later[1]["content"][0]["text"], "first answer");
}

#[tokio::test]
async fn every_permission_rule_refuses_before_any_provider_is_called_and_is_logged() {
    let mock = MockLlm::start().await;
    let d = daemon(&mock, "").await;
    let nobody = d.agent("unregistered").await;
    assert_code(
        prompt(&nobody, json!({"model": "sonnet", "messages": user("hi")})).await,
        ErrorCode::PermissionDenied,
    );
    d.register_llm(
        "limited",
        json!({"models": ["gpt"], "max_tokens_per_request": 500,
        "platform_tools": ["list_agents"]}),
    )
    .await;
    let c = d.agent("limited").await;
    let cases = [
        json!({"model": "sonnet", "messages": user("hi")}),
        json!({"model": "gpt", "messages": user("hi"), "max_tokens": 1000}),
        json!({"model": "gpt", "messages": user("hi"), "tools": {"platform": ["create_task"]}}),
        json!({"model": "gpt", "messages": user("hi"),
            "tools": {"custom": [{"name": "x", "parameters": {"type": "object"}}]}}),
    ];
    for args in &cases {
        assert_code(prompt(&c, args.clone()).await, ErrorCode::PermissionDenied);
    }
    d.register_manifest(json!({"name": "deployer", "version": "1", "command": ["x"],
        "permissions": {"llm": {"models": ["gpt"], "platform_tools": ["deploy_agent"]}}}))
        .await;
    let deployer = d.agent("deployer").await;
    let deploy =
        json!({"model": "gpt", "messages": user("hi"), "tools": {"platform": ["deploy_agent"]}});
    assert_code(prompt(&deployer, deploy).await, ErrorCode::PermissionDenied);
    assert!(mock.received().is_empty(), "a provider was called");
    rows(&d, 6).await;
    let refused = d
        .db
        .count("SELECT count(*) FROM llm_interactions WHERE error IS NOT NULL AND tokens_used = 0")
        .await;
    assert_eq!(refused, 6);
    let ok = prompt(
        &c,
        json!({"model": "gpt", "messages": user("hi"), "max_tokens": 100}),
    )
    .await;
    assert_eq!(ok.unwrap()["content"], "ok");
}

#[tokio::test]
async fn the_hourly_quota_holds_under_twenty_concurrent_prompts_and_across_a_restart() {
    let mock = MockLlm::start().await;
    let mut d = daemon(&mock, "").await;
    d.register_llm(
        "busy",
        json!({"models": ["gpt"], "max_tokens_per_hour": 1000}),
    )
    .await;
    for _ in 0..20 {
        mock.push(
            Api::OpenAi,
            Reply::Delay(
                Duration::from_millis(200),
                Box::new(Reply::Text {
                    text: "x".into(),
                    input_tokens: 10,
                    output_tokens: 100,
                }),
            ),
        );
    }
    let c = d.agent("busy").await;
    let calls = (0..20).map(|_| {
        prompt(
            &c,
            json!({"model": "gpt", "messages": user("hi"), "max_tokens": 150}),
        )
    });
    let results = futures::future::join_all(calls).await;
    let granted = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!((1..=6).contains(&granted), "{granted} of 20 granted");
    assert_eq!(granted + refused.len(), 20);
    for e in &refused {
        assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded), "{e}");
        let ikigai_client::ClientError::Server(body) = e else {
            panic!("{e}")
        };
        assert!(body.retry_after_ms.is_some_and(|ms| ms > 0), "{body:?}");
    }
    assert_eq!(
        mock.received().len(),
        granted,
        "refused prompts reached the provider"
    );
    rows(&d, 20).await;
    let used = d.db.count("SELECT COALESCE(SUM(tokens_used), 0)::bigint FROM llm_interactions WHERE agent_name = 'busy'").await;
    assert!(used <= 1000, "{used} tokens used over a limit of 1000");
    d.terminate();
    d.restart().await;
    let c = d.agent("busy").await;
    let used_now = used as u64;
    let buckets =
        d.db.count("SELECT COALESCE(SUM(tokens), 0)::bigint FROM llm_usage_minute")
            .await;
    assert_eq!(buckets, used, "per-minute usage");
    let e = prompt(
        &c,
        json!({"model": "gpt", "messages": user("hi"), "max_tokens": 1000 - used_now + 1}),
    )
    .await;
    assert_code(e, ErrorCode::QuotaExceeded);
}

#[tokio::test]
async fn a_reservation_left_by_a_killed_daemon_expires() {
    let mock = MockLlm::start().await;
    let mut d = daemon(&mock, "reservation_ttl_ms = 1000").await;
    d.register_llm(
        "busy",
        json!({"models": ["gpt"], "max_tokens_per_hour": 1000}),
    )
    .await;
    mock.push(
        Api::OpenAi,
        Reply::Delay(Duration::from_secs(30), Box::new(Reply::text("never"))),
    );
    let c = d.agent("busy").await;
    let big = json!({"model": "gpt", "messages": user("hi"), "max_tokens": 900});
    let in_flight = c.submit("llm.prompt", &big).await.unwrap();
    while mock.received().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    d.kill9();
    drop(in_flight);
    d.restart().await;
    let c = d.agent("busy").await;
    assert_code(prompt(&c, big.clone()).await, ErrorCode::QuotaExceeded);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(prompt(&c, big).await.unwrap()["content"], "ok");
}

#[tokio::test]
async fn two_daemons_on_one_database_share_the_hourly_quota() {
    let mock = MockLlm::start().await;
    let one = daemon(&mock, "").await;
    let two = Daemon::start_on(one.db.share(), &config(&mock, "")).await;
    one.register_llm(
        "busy",
        json!({"models": ["gpt"], "max_tokens_per_hour": 1000}),
    )
    .await;
    for _ in 0..20 {
        let slow = Reply::Text {
            text: "x".into(),
            input_tokens: 10,
            output_tokens: 100,
        };
        mock.push(
            Api::OpenAi,
            Reply::Delay(Duration::from_millis(300), Box::new(slow)),
        );
    }
    let (a, b) = (one.agent("busy").await, two.agent("busy").await);
    let args = json!({"model": "gpt", "messages": user("hi"), "max_tokens": 150});
    let calls = (0..20).map(|i| prompt(if i % 2 == 0 { &a } else { &b }, args.clone()));
    let granted = futures::future::join_all(calls)
        .await
        .iter()
        .filter(|r| r.is_ok())
        .count();
    assert!(
        (1..=6).contains(&granted),
        "{granted} of 20 granted across two daemons"
    );
    rows(&one, 20).await;
    let used = one
        .db
        .count("SELECT SUM(tokens_used)::bigint FROM llm_interactions")
        .await;
    assert!(used <= 1000, "{used} tokens used over a limit of 1000");
}

#[tokio::test]
async fn the_seeds_queries_run_as_written() {
    let mock = MockLlm::start().await;
    let d = daemon(&mock, "").await;
    let a = allow_all(&d, "alpha").await;
    let b = allow_all(&d, "beta").await;
    mock.push(
        Api::Anthropic,
        Reply::Text {
            text: "1".into(),
            input_tokens: 1000,
            output_tokens: 0,
        },
    );
    mock.push(
        Api::Anthropic,
        Reply::Text {
            text: "2".into(),
            input_tokens: 0,
            output_tokens: 1000,
        },
    );
    mock.push(
        Api::Anthropic,
        Reply::Text {
            text: "3".into(),
            input_tokens: 2000,
            output_tokens: 0,
        },
    );
    let task = json!({"task_id": "task-42"});
    prompt(
        &a,
        json!({"model": "sonnet", "messages": user("1"), "metadata": task}),
    )
    .await
    .unwrap();
    prompt(
        &a,
        json!({"model": "sonnet", "messages": user("2"), "metadata": task}),
    )
    .await
    .unwrap();
    prompt(&b, json!({"model": "sonnet", "messages": user("3")}))
        .await
        .unwrap();
    rows(&d, 3).await;
    let db = d.db.client().await;
    let by_task = db
        .query(
            "SELECT * FROM llm_interactions WHERE metadata->>'task_id' = $1",
            &[&"task-42"],
        )
        .await
        .unwrap();
    assert_eq!(by_task.len(), 2);
    let per_agent = "SELECT agent_name, SUM(cost_usd) FROM llm_interactions WHERE created_at > now() - interval '24 hours' GROUP BY agent_name";
    assert_eq!(db.query(per_agent, &[]).await.unwrap().len(), 2);
    let as_text = format!("SELECT a, s::text FROM ({per_agent}) AS q(a, s) ORDER BY a");
    let costs: Vec<(String, String)> = db
        .query(&as_text, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // alpha: 1000 * $3/M + 1000 * $15/M; beta: 2000 * $3/M
    let expected = [("alpha", "0.018000"), ("beta", "0.006000")].map(|(a, c)| (a.into(), c.into()));
    assert_eq!(costs, expected);
}

#[tokio::test]
async fn an_idle_thread_leaves_memory_and_its_next_prompt_reads_the_history_back() {
    let mock = MockLlm::start().await;
    let d = daemon(&mock, "thread_idle_ms = 300").await;
    let c = allow_all(&d, "triage").await;
    let t: Value = c.call("threads.create", &json!({})).await.unwrap();
    let thread = t["id"].as_str().unwrap();
    mock.push(Api::Anthropic, Reply::text("noted"));
    let first = json!({"model": "sonnet", "thread": thread, "messages": user("remember 7")});
    prompt(&c, first).await.unwrap();
    assert_eq!(support::running(&c, "threads").await, 1);
    support::wait_until(
        "the thread's actor stops",
        Duration::from_secs(10),
        || async { support::running(&c, "threads").await == 0 },
    )
    .await;
    mock.push(Api::Anthropic, Reply::text("7"));
    let second = json!({"model": "sonnet", "thread": thread, "messages": user("which number?")});
    assert_eq!(prompt(&c, second).await.unwrap()["content"], "7");
    let sent = &mock.received()[1].body["messages"];
    assert_eq!(sent.as_array().unwrap().len(), 3, "{sent}");
    assert_eq!(sent[1]["content"][0]["text"], "noted");
}

#[tokio::test]
async fn a_custom_tool_without_parameters_is_offered_as_taking_no_arguments() {
    let (mock, _d, c) = setup("clock").await;
    mock.push(Api::OpenAi, Reply::text("noon"));
    let custom = json!([{"name": "now", "description": "the time"}]);
    let args = json!({"model": "gpt", "messages": user("time?"), "tools": {"custom": custom}});
    assert_eq!(prompt(&c, args).await.unwrap()["content"], "noon");
    let offered = &mock.received()[0].body["tools"][0]["function"];
    assert_eq!(
        offered["parameters"],
        json!({"type": "object", "properties": {}})
    );
}
