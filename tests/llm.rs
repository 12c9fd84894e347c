//! LLM access through the daemon, against a scripted provider on loopback (`ikigai-mock-llm`):
//! both wire formats, retries and failover, streaming, the tool loop, threads across restarts,
//! permissions and quotas, cost and the interaction log.

mod support;

use ikigai_client::{Client, ErrorCode};
use ikigai_mock_llm::{Api, MockLlm, Reply};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{assert_code, Daemon};

const ANTHROPIC_KEY: &str = "sk-ant-TEST-2f9c1e7d-never-logged";
const OPENAI_KEY: &str = "sk-oai-TEST-8b3a55c0-never-logged";

/// A daemon with two providers on `mock` (keys from the environment) and these aliases:
/// `sonnet` (Anthropic), `gpt` (OpenAI), `failover` (Anthropic, then OpenAI).
async fn daemon(mock: &MockLlm, extra: &str) -> Daemon {
    Daemon::start_with(&config(mock, extra)).await
}

/// The configuration of [`daemon`].
fn config(mock: &MockLlm, extra: &str) -> String {
    std::env::set_var("IKIGAI_TEST_ANTHROPIC_KEY", ANTHROPIC_KEY);
    std::env::set_var("IKIGAI_TEST_OPENAI_KEY", OPENAI_KEY);
    let url = mock.url();
    format!(
        "[llm]\n{extra}\nbackoff_ms = 10\nretries = 1\ntool_timeout_ms = 2000\n\
         [llm.provider.anth]\nkind = anthropic\nbase_url = {url}\napi_key_env = IKIGAI_TEST_ANTHROPIC_KEY\n\
         [llm.provider.oai]\nkind = openai\nbase_url = {url}\napi_key_env = IKIGAI_TEST_OPENAI_KEY\n\
         [llm.model.sonnet]\ntargets = anth:claude-sonnet-4-5\ninput_per_mtok = 3\n\
         output_per_mtok = 15\n\
         [llm.model.gpt]\ntargets = oai:gpt-4o\ninput_per_mtok = 2.5\noutput_per_mtok = 10\n\
         [llm.model.failover]\ntargets = anth:claude-a, oai:gpt-b\n"
    )
}

/// A mock provider, a daemon using it, and `agent` allowed everything but deploy.
async fn setup(agent: &str) -> (MockLlm, Daemon, Client) {
    let mock = MockLlm::start().await;
    let d = daemon(&mock, "").await;
    let c = allow_all(&d, agent).await;
    (mock, d, c)
}

/// Registers `agent` with every model, every platform tool but deploy, and custom tools.
async fn allow_all(d: &Daemon, agent: &str) -> Client {
    d.register_llm(
        agent,
        json!({"models": ["sonnet", "gpt", "failover"], "allow_custom_tools": true,
            "platform_tools": ["query_telemetry", "create_task", "send_message", "list_agents",
                "read_config"]}),
    )
    .await;
    d.agent(agent).await
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

async fn prompt(c: &Client, args: Value) -> Result<Value, ikigai_client::ClientError> {
    c.call("llm.prompt", &args).await
}

/// Waits until the interaction log holds `n` rows.
async fn rows(d: &Daemon, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let have = d.db.count("SELECT count(*) FROM llm_interactions").await;
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{have} interaction rows, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next push as (name, data).
async fn next_push(c: &Client) -> (String, Value) {
    let push = tokio::time::timeout(Duration::from_secs(10), c.next_push())
        .await
        .expect("a push within 10 s")
        .expect("connection open");
    (push.push, ikigai_protocol::from_value(push.data).unwrap())
}

#[tokio::test]
async fn the_anthropic_adapter_sends_the_messages_format_and_normalises_the_answer() {
    let (mock, _d, c) = setup("triage").await;
    mock.push(
        Api::Anthropic,
        Reply::Text {
            text: "P1".into(),
            input_tokens: 1000,
            output_tokens: 500,
        },
    );
    let messages = json!([{"role": "system", "content": "be brief"},
        {"role": "user", "content": "priority?"}]);
    let r = prompt(
        &c,
        json!({"model": "sonnet", "messages": messages, "max_tokens": 100}),
    )
    .await
    .unwrap();
    assert_eq!(r["content"], "P1");
    assert_eq!(r["usage"]["input_tokens"], 1000);
    assert_eq!(r["usage"]["output_tokens"], 500);
    assert_eq!(r["stop_reason"], "end_turn");
    assert_eq!(
        (r["provider"].as_str(), r["provider_model"].as_str()),
        (Some("anth"), Some("claude-sonnet-4-5"))
    );
    // 1000 * $3 / M + 500 * $15 / M
    assert_eq!(r["cost_usd"].as_f64(), Some(0.0105));
    let sent = &mock.received()[0];
    assert_eq!(sent.api, Api::Anthropic);
    assert_eq!(sent.headers["x-api-key"], ANTHROPIC_KEY);
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(sent.body["system"], "be brief");
    assert_eq!(sent.body["model"], "claude-sonnet-4-5");
    assert_eq!(sent.body["max_tokens"], 100);
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "priority?"}]}])
    );
}

#[tokio::test]
async fn the_openai_adapter_sends_chat_completions_with_tool_schemas() {
    let (mock, _d, c) = setup("triage").await;
    mock.push(
        Api::OpenAi,
        Reply::Text {
            text: "hello".into(),
            input_tokens: 400,
            output_tokens: 100,
        },
    );
    let custom =
        json!([{"name": "lookup", "description": "find", "parameters": {"type": "object"}}]);
    let r = prompt(
        &c,
        json!({"model": "gpt", "messages": user("hi"),
        "tools": {"platform": ["create_task"], "custom": custom}}),
    )
    .await
    .unwrap();
    assert_eq!(r["content"], "hello");
    assert_eq!(r["provider"], "oai");
    assert_eq!(r["cost_usd"].as_f64(), Some(0.002)); // 400 * 2.5 + 100 * 10 micro-dollars
    let sent = &mock.received()[0];
    assert_eq!(
        sent.headers["authorization"],
        format!("Bearer {OPENAI_KEY}")
    );
    assert_eq!(sent.body["model"], "gpt-4o");
    let names: Vec<&str> = sent.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["create_task", "lookup"]);
    assert_eq!(
        sent.body["tools"][0]["function"]["parameters"]["required"],
        json!(["queue", "payload"])
    );
}

#[tokio::test]
async fn a_failing_first_target_fails_over_to_the_next() {
    let (mock, d, c) = setup("triage").await;
    mock.push(Api::Anthropic, Reply::status(500, "boom"));
    mock.push(Api::Anthropic, Reply::status(503, "still down"));
    mock.push(Api::OpenAi, Reply::text("from the second"));
    let r = prompt(&c, json!({"model": "failover", "messages": user("hi")}))
        .await
        .unwrap();
    assert_eq!(r["content"], "from the second");
    assert_eq!(
        (r["provider"].as_str(), r["provider_model"].as_str()),
        (Some("oai"), Some("gpt-b"))
    );
    let apis: Vec<Api> = mock.received().iter().map(|r| r.api).collect();
    assert_eq!(apis, [Api::Anthropic, Api::Anthropic, Api::OpenAi]);
    rows(&d, 1).await;
    let attempts: Value =
        d.db.client()
            .await
            .query_one("SELECT attempts FROM llm_interactions", &[])
            .await
            .unwrap()
            .get(0);
    let statuses: Vec<u64> = attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 503, 200]);
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_that_delay_then_fails_over() {
    let (mock, _d, c) = setup("triage").await;
    let limited = Reply::Status {
        status: 429,
        message: "slow down".into(),
        retry_after: Some(1),
    };
    mock.push(Api::Anthropic, limited.clone());
    mock.push(Api::Anthropic, limited);
    mock.push(Api::OpenAi, Reply::text("second"));
    let started = Instant::now();
    let r = prompt(&c, json!({"model": "failover", "messages": user("hi")}))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(r["content"], "second");
    assert_eq!(mock.received().len(), 3);
}

#[tokio::test]
async fn a_529_overloaded_is_retried_on_the_same_target() {
    let (mock, _d, c) = setup("triage").await;
    mock.push(Api::Anthropic, Reply::status(529, "Overloaded"));
    mock.push(Api::Anthropic, Reply::text("after the overload"));
    let r = prompt(&c, json!({"model": "failover", "messages": user("hi")}))
        .await
        .unwrap();
    assert_eq!(r["content"], "after the overload");
    assert_eq!(r["provider"], "anth");
}

#[tokio::test]
async fn a_400_fails_at_once_with_the_providers_message_and_no_failover() {
    let (mock, _d, c) = setup("triage").await;
    mock.push(
        Api::Anthropic,
        Reply::status(400, "messages: roles must alternate"),
    );
    let e = prompt(&c, json!({"model": "failover", "messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest));
    assert!(e.to_string().contains("roles must alternate"), "{e}");
    assert_eq!(mock.received().len(), 1);
}

#[tokio::test]
async fn a_target_that_keeps_failing_is_skipped_during_its_cool_down() {
    let mock = MockLlm::start().await;
    let d = daemon(
        &mock,
        "retries = 0\nfailures_before_cooldown = 1\ncooldown_ms = 60000",
    )
    .await;
    let c = allow_all(&d, "triage").await;
    mock.push(Api::Anthropic, Reply::status(500, "down"));
    for _ in 0..3 {
        let r = prompt(&c, json!({"model": "failover", "messages": user("hi")}))
            .await
            .unwrap();
        assert_eq!(r["provider"], "oai");
    }
    let anthropic = mock
        .received()
        .iter()
        .filter(|r| r.api == Api::Anthropic)
        .count();
    assert_eq!(anthropic, 1, "the cooling target was called again");
}

#[tokio::test]
async fn streaming_pushes_deltas_in_order_before_the_final_answer() {
    for api in [Api::Anthropic, Api::OpenAi] {
        let mock = MockLlm::start().await;
        let d = daemon(&mock, "").await;
        let c = allow_all(&d, "writer").await;
        mock.push(
            api,
            Reply::Text {
                text: "one two three four".into(),
                input_tokens: 20,
                output_tokens: 4,
            },
        );
        let model = if api == Api::Anthropic {
            "sonnet"
        } else {
            "gpt"
        };
        let r = prompt(
            &c,
            json!({"model": model, "messages": user("count"), "stream": true}),
        )
        .await
        .unwrap();
        assert_eq!(r["content"], "one two three four");
        assert_eq!(r["usage"]["output_tokens"], 4, "{api:?}: usage of a stream");
        let mut text = String::new();
        while text.len() < "one two three four".len() {
            let (name, data) = next_push(&c).await;
            assert_eq!(name, "llm.delta");
            text.push_str(data["delta"].as_str().unwrap());
        }
        assert_eq!(text, "one two three four", "{api:?}");
        rows(&d, 1).await;
        assert_eq!(
            d.db.count("SELECT tokens_used::bigint FROM llm_interactions")
                .await,
            24
        );
    }
}

#[tokio::test]
async fn a_stream_cut_after_text_was_pushed_ends_in_an_error_without_failover() {
    let (mock, _d, c) = setup("writer").await;
    mock.push(
        Api::Anthropic,
        Reply::Cut {
            text: "a long answer that never ends properly".into(),
        },
    );
    let e = prompt(
        &c,
        json!({"model": "failover", "messages": user("go"), "stream": true}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unavailable));
    assert!(e.to_string().contains("stream cut off"), "{e}");
    assert_eq!(
        mock.received().len(),
        1,
        "no failover after the first streamed byte"
    );
}

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
    let per_agent = db.query("SELECT agent_name, SUM(cost_usd) FROM llm_interactions WHERE created_at > now() - interval '24 hours' GROUP BY agent_name", &[]).await.unwrap();
    let mut costs: Vec<(String, String)> = per_agent
        .iter()
        .map(|r| (r.get::<_, String>(0), db_text(r, 1)))
        .collect();
    costs.sort();
    // alpha: 1000 * $3/M + 1000 * $15/M; beta: 2000 * $3/M
    assert_eq!(
        costs,
        [
            ("alpha".into(), "0.018000".into()),
            ("beta".into(), "0.006000".into())
        ]
    );
}

/// A NUMERIC column as text (the test does not depend on a decimal crate).
fn db_text(row: &tokio_postgres::Row, i: usize) -> String {
    let raw: Decimal = row.get(i);
    raw.0
}

struct Decimal(String);

impl<'a> tokio_postgres::types::FromSql<'a> for Decimal {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Decimal(numeric_text(raw)))
    }
    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::NUMERIC
    }
}

/// Postgres' binary NUMERIC (base-10000 digits) as text with its display scale.
fn numeric_text(raw: &[u8]) -> String {
    let word = |i: usize| i16::from_be_bytes([raw[2 * i], raw[2 * i + 1]]) as i64;
    let (ndigits, weight, sign, dscale) = (word(0), word(1), word(2), word(3));
    let mut value: f64 = 0.0;
    for i in 0..ndigits {
        value += word(4 + i as usize) as f64 * 10000f64.powi((weight - i) as i32);
    }
    let value = if sign == 0x4000 { -value } else { value };
    format!("{value:.*}", dscale as usize)
}

#[tokio::test]
async fn api_keys_never_reach_the_log_or_the_database() {
    let (mock, d, c) = setup("triage").await;
    mock.push(
        Api::Anthropic,
        Reply::status(401, &format!("invalid x-api-key {ANTHROPIC_KEY}")),
    );
    let e = prompt(&c, json!({"model": "sonnet", "messages": user("hi")}))
        .await
        .unwrap_err();
    assert!(!e.to_string().contains(ANTHROPIC_KEY), "{e}");
    mock.push(
        Api::OpenAi,
        Reply::tool_call("c1", "read_config", json!({})),
    );
    mock.push(Api::OpenAi, Reply::text("done"));
    prompt(&c, json!({"model": "gpt", "messages": user("config?"), "tools": {"platform": ["read_config"]}})).await.unwrap();
    let tool_result = mock.received()[2].body["messages"][2]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        tool_result.contains("[redacted]") && tool_result.contains("llm.provider.oai"),
        "{tool_result}"
    );
    rows(&d, 2).await;
    let db = d.db.client().await;
    let mut dump = String::new();
    for table in [
        "llm_interactions",
        "llm_thread",
        "llm_thread_message",
        "telemetry",
    ] {
        let sql = format!("SELECT COALESCE(string_agg(t::text, ' '), '') FROM {table} t");
        dump.push_str(&db.query_one(&sql, &[]).await.unwrap().get::<_, String>(0));
    }
    for key in [ANTHROPIC_KEY, OPENAI_KEY] {
        assert!(!dump.contains(key), "a key reached the database");
        assert!(!d.log().contains(key), "a key reached the daemon log");
        assert!(!tool_result.contains(key), "read_config showed a key");
    }
}

#[test]
fn a_bad_llm_section_stops_the_daemon_naming_file_line_and_key() {
    let root = support::temp_root();
    let conf = root.path().join("bad.conf");
    let text = "[llm.provider.x]\nkind = openai\n[llm.model.fast]\ntargets = x:m, y:m\n";
    std::fs::write(&conf, text).unwrap();
    let mut cmd = support::daemon_command(root.path());
    cmd.arg("--config").arg(&conf);
    let (code, stderr) = support::run_to_exit(cmd);
    assert_eq!(code, 1, "{stderr}");
    let at = format!(
        "{}:4: [llm.model.fast] targets: no [llm.provider.y] section",
        conf.display()
    );
    assert!(stderr.contains(&at), "{stderr}");
}

#[tokio::test]
async fn without_configured_models_a_prompt_answers_a_clear_error() {
    let d = Daemon::start().await;
    d.register_llm("triage", json!({"models": ["sonnet"]}))
        .await;
    let c = d.agent("triage").await;
    let e = prompt(&c, json!({"model": "sonnet", "messages": user("hi")}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e}");
    assert!(
        e.to_string().contains("no LLM models are configured"),
        "{e}"
    );
}

#[tokio::test]
async fn the_cli_prints_usage_per_agent_and_model() {
    let (mock, d, c) = setup("triage").await;
    mock.push(
        Api::OpenAi,
        Reply::Text {
            text: "x".into(),
            input_tokens: 1000,
            output_tokens: 1000,
        },
    );
    prompt(&c, json!({"model": "gpt", "messages": user("hi")}))
        .await
        .unwrap();
    rows(&d, 1).await;
    let out = d.cli(&["llm", "usage", "--since", "24h"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("triage"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("gpt") && line.contains("2000") && line.contains("0.012500"),
        "{line}"
    );
}
