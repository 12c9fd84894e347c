//! The cross-service scenario as an agent process, the same contract as the TypeScript and
//! Python clients' `scenario_agent`: in one transaction it claims a task of `$QUEUE`, prompts
//! with a platform tool, stores the answer, sends a message to `$REPORT_TO` and completes the
//! task. With `$HANG` set it prints "in transaction" and waits before committing (to be killed).
//! `clients/python/tests/test_scenario.py` runs it beside the other two against one daemon.

use ikigai_client::{ChatMessage, Client, Prompt, Tools};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let client = Client::connect_env().await?;
    let tx = client.begin().await?;
    let task = tx
        .queue(&env("QUEUE"))
        .claim_one()
        .await?
        .ok_or("no task to claim")?;
    let ask = Prompt {
        model: Some("haiku".into()),
        messages: vec![ChatMessage::user(format!("Summarize {}", task.payload))],
        tools: Some(Tools {
            platform: vec!["query_telemetry".into()],
            ..Tools::default()
        }),
        metadata: Some(json!({"task_id": task.id})),
        ..Prompt::default()
    };
    let summary = client.prompt(&ask).await?.content;
    tx.storage()
        .put(&format!("summary/{}", task.id), &json!(summary))
        .await?;
    let report = json!({"task": task.id, "summary": summary});
    tx.mailbox(&env("REPORT_TO")).send(&report).await?;
    tx.task(&task.id)
        .complete(Some(&json!({"summary": summary})))
        .await?;
    if !env("HANG").is_empty() {
        println!("in transaction");
        std::future::pending::<()>().await;
    }
    tx.commit().await?;
    Ok(())
}
