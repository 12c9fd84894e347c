//! LLM test setup: a daemon configured with two providers on a mock, agents allowed to use them,
//! and small helpers for prompts, pushes and the interaction log.

use super::Daemon;
use ikigai_client::Client;
use ikigai_mock_llm::MockLlm;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub const ANTHROPIC_KEY: &str = "sk-ant-TEST-2f9c1e7d-never-logged";
pub const OPENAI_KEY: &str = "sk-oai-TEST-8b3a55c0-never-logged";

/// A daemon with two providers on `mock` (keys from the environment) and these aliases:
/// `sonnet` (Anthropic), `gpt` (OpenAI), `failover` (Anthropic, then OpenAI).
pub async fn daemon(mock: &MockLlm, extra: &str) -> Daemon {
    Daemon::start_with(&config(mock, extra)).await
}

/// The configuration of [`daemon`].
pub fn config(mock: &MockLlm, extra: &str) -> String {
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
pub async fn setup(agent: &str) -> (MockLlm, Daemon, Client) {
    let mock = MockLlm::start().await;
    let d = daemon(&mock, "").await;
    let c = allow_all(&d, agent).await;
    (mock, d, c)
}

/// Registers `agent` with every model, every platform tool but deploy, and custom tools.
pub async fn allow_all(d: &Daemon, agent: &str) -> Client {
    d.register_llm(
        agent,
        json!({"models": ["sonnet", "gpt", "failover"], "allow_custom_tools": true,
            "platform_tools": ["query_telemetry", "create_task", "send_message", "list_agents",
                "read_config"]}),
    )
    .await;
    d.agent(agent).await
}

pub fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

pub async fn prompt(c: &Client, args: Value) -> Result<Value, ikigai_client::ClientError> {
    c.call("llm.prompt", &args).await
}

/// Waits until the interaction log holds `n` rows.
pub async fn rows(d: &Daemon, n: i64) {
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
pub async fn next_push(c: &Client) -> (String, Value) {
    let push = tokio::time::timeout(Duration::from_secs(10), c.next_push())
        .await
        .expect("a push within 10 s")
        .expect("connection open");
    (push.push, ikigai_protocol::from_value(push.data).unwrap())
}
