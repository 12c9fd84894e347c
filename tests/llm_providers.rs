//! LLM access through the daemon against a scripted provider on loopback (`ikigai-mock-llm`):
//! both wire formats, retries, failover and cool-down, streaming, API key hygiene, configuration
//! errors and the usage CLI.

mod support;

use ikigai_client::ErrorCode;
use ikigai_mock_llm::{Api, MockLlm, Reply};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::llm::*;
use support::Daemon;

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
async fn a_provider_that_does_not_answer_in_time_is_retried_then_failed_over() {
    let mock = MockLlm::start().await;
    let slow = format!(
        "{}[llm.provider.slow]\nkind = openai\nbase_url = {}\ntimeout_ms = 200\n\
         [llm.model.patient]\ntargets = slow:m1, oai:m2\n",
        config(&mock, ""),
        mock.url()
    );
    let d = Daemon::start_with(&slow).await;
    let c = allow_all(&d, "triage").await;
    d.register_llm("triage", json!({"models": ["patient"]}))
        .await;
    for _ in 0..2 {
        let late = Reply::Delay(Duration::from_secs(2), Box::new(Reply::text("too late")));
        mock.push(Api::OpenAi, late);
    }
    mock.push(Api::OpenAi, Reply::text("in time"));
    let r = prompt(&c, json!({"model": "patient", "messages": user("hi")}))
        .await
        .unwrap();
    assert_eq!(
        (r["content"].as_str(), r["provider"].as_str()),
        (Some("in time"), Some("oai"))
    );
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
    let (mock, d, c) = setup("writer").await;
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
    rows(&d, 1).await;
    let input =
        d.db.count("SELECT input_tokens::bigint FROM llm_interactions")
            .await;
    assert!(input > 0, "the prompt of a cut stream is counted");
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
    let text = d.cli_ok(&["llm", "usage", "--since", "24h"]);
    let line = text
        .lines()
        .find(|l| l.contains("triage"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("gpt") && line.contains("2000") && line.contains("0.012500"),
        "{line}"
    );
}
