//! The design document (`runtime.md`) as written: its `ikigai.conf` examples, its manifest of an
//! agent that only connects, and its prompts that name no model, each copied verbatim and run
//! against the real daemon.

mod support;

use ikigai_client::{ChatMessage, Client, ErrorCode, Prompt, Tools};
use ikigai_mock_llm::{Api, MockLlm, Reply};
use serde_json::json;
use support::{daemon_command, run_to_exit, temp_root, Daemon};

/// "Configurable Backends", verbatim.
const DEFAULT_CONF: &str = "\
# Default configuration - PostgreSQL for everything
[services]
queues = postgres
mailboxes = postgres
cache = postgres
pubsub = postgres
storage = postgres
telemetry = postgres
";

/// "Alternative Backends", verbatim: inline `#` comments after the values.
const ALTERNATIVE_CONF: &str = "\
# Example: specialized backends for specific services
[services]
queues = postgres          # ACID transactions matter here
mailboxes = postgres       # Keep it simple
cache = redis              # Need faster caching
pubsub = nats              # Need higher message throughput
storage = postgres         # Primary data store
telemetry = timescaledb    # Time-series optimized
";

/// "Permission Model", verbatim: no `version`, no `command`.
const MANIFEST: &str = r#"{
    "name": "monitoring-agent",
    "permissions": {
        "llm": {
            "models": ["haiku", "sonnet"],
            "max_tokens_per_request": 4096,
            "max_tokens_per_hour": 100000,
            "platform_tools": ["query_telemetry", "send_message"],
            "allow_custom_tools": true
        }
    }
}"#;

/// The daemon's stderr when it refuses to start with `config`.
fn refused_config(config: &str) -> String {
    let root = temp_root();
    let file = root.path().join("ikigai.conf");
    std::fs::write(&file, config).unwrap();
    let mut cmd = daemon_command(root.path());
    cmd.arg("--config").arg(&file);
    let (code, stderr) = run_to_exit(cmd);
    assert_ne!(code, 0, "{stderr}");
    stderr
}

#[tokio::test]
async fn the_documents_default_configuration_starts_the_daemon() {
    let d = Daemon::start_with(DEFAULT_CONF).await;
    d.assert_serving().await;
}

#[tokio::test]
async fn inline_comments_of_the_alternative_configuration_are_not_part_of_its_values() {
    // Every value parses without its comment (`cache = redis` and `pubsub = nats` are
    // accepted), so the first one not built yet is named cleanly.
    let stderr = refused_config(ALTERNATIVE_CONF);
    assert!(
        stderr.contains(":8: [services] telemetry: backend \"timescaledb\" is not implemented yet"),
        "{stderr}"
    );
    let with_semicolons =
        "[services]\nqueues = postgres ; ACID\n[daemon]\nmax_in_flight = 7 ; few\n";
    let d = Daemon::start_with(with_semicolons).await;
    d.assert_serving().await;
}

/// A daemon whose mock serves the document's aliases `haiku` and `sonnet`.
async fn llm_daemon(mock: &MockLlm, extra: &str) -> Daemon {
    let config =
        support::llm::config(mock, extra) + "[llm.model.haiku]\ntargets = anth:claude-haiku-4-5\n";
    Daemon::start_with(&config).await
}

#[tokio::test]
async fn the_documents_manifest_deploys_an_agent_that_connects_and_prompts_its_first_model() {
    let mock = MockLlm::start().await;
    let d = llm_daemon(&mock, "").await;
    let admin = d.admin().await;
    let manifest: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
    let deployed = admin.agents().deploy(&manifest, None).await.unwrap();
    assert_eq!(deployed.name, "monitoring-agent");
    let entry = admin.agents().get("monitoring-agent").await.unwrap();
    assert_eq!((entry.status.as_str(), entry.pid), ("stopped", None));

    let start = admin.agents().start("monitoring-agent").await.unwrap_err();
    assert_eq!(start.code(), Some(ErrorCode::BadRequest));
    assert!(
        start.to_string().contains("never started by the daemon"),
        "{start}"
    );

    let token = admin
        .agents()
        .token("monitoring-agent")
        .await
        .unwrap()
        .token;
    let agent = Client::connect_as(d.socket(), "monitoring-agent", &token)
        .await
        .unwrap();
    mock.push(Api::Anthropic, Reply::text("No, not yet."));
    let should = Prompt {
        messages: vec![ChatMessage::user("Should I escalate this alert?")],
        tools: Some(Tools {
            platform: vec!["query_telemetry".into(), "send_message".into()],
            ..Tools::default()
        }),
        ..Prompt::default()
    };
    let reply = agent.prompt(&should).await.unwrap();
    assert_eq!(
        (reply.model.as_str(), reply.content.as_str()),
        ("haiku", "No, not yet.")
    );
    assert_eq!(mock.received()[0].body["model"], "claude-haiku-4-5");

    let other = Prompt {
        model: Some("gpt".into()),
        ..should.clone()
    };
    let denied = agent.prompt(&other).await.unwrap_err();
    assert_eq!(denied.code(), Some(ErrorCode::PermissionDenied));
    agent
        .mailbox("oncall")
        .send(&json!({"alert": 1}))
        .await
        .unwrap();

    // "With conversation threading": a thread's prompts name no model either.
    mock.push(Api::Anthropic, Reply::text("P2."));
    let threads = agent.threads();
    let thread = threads.create(Some("Analyzing customer support tickets"));
    let follow_up = Prompt {
        thread: Some(thread.await.unwrap().id),
        messages: vec![ChatMessage::user("What priority did you assign?")],
        ..Prompt::default()
    };
    assert_eq!(agent.prompt(&follow_up).await.unwrap().content, "P2.");
}

#[tokio::test]
async fn a_prompt_without_model_takes_the_configured_default_else_says_how_to_name_one() {
    let mock = MockLlm::start().await;
    let d = llm_daemon(&mock, "default_model = sonnet").await;
    d.register_llm("listed", json!({"models": ["gpt", "sonnet"]}))
        .await;
    d.register_llm("unlisted", json!({"models": []})).await;
    let ask = Prompt {
        messages: vec![ChatMessage::user("Categorize this ticket...")],
        ..Prompt::default()
    };
    mock.push(Api::OpenAi, Reply::text("billing"));
    let listed = d.agent("listed").await.prompt(&ask).await.unwrap();
    assert_eq!(
        listed.model, "gpt",
        "the manifest's first model comes first"
    );
    // The configured default is then checked like a named model: this manifest allows none.
    let unlisted = d.agent("unlisted").await.prompt(&ask).await.unwrap_err();
    assert_eq!(unlisted.code(), Some(ErrorCode::PermissionDenied));
    assert!(unlisted.to_string().contains("\"sonnet\""), "{unlisted}");

    let bare = llm_daemon(&mock, "").await;
    bare.register_llm("unlisted", json!({"models": []})).await;
    let none = bare.agent("unlisted").await.prompt(&ask).await.unwrap_err();
    assert_eq!(none.code(), Some(ErrorCode::BadRequest));
    assert!(none.to_string().contains("[llm] default_model"), "{none}");

    let stderr = refused_config("[llm]\ndefault_model = opus\n");
    assert!(
        stderr.contains("[llm] default_model: \"opus\" is not"),
        "{stderr}"
    );
}
