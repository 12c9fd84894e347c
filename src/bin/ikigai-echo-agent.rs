//! `ikigai-echo-agent`: a small real agent, the template of an agent in Rust and the one the
//! integration tests deploy. Started by the daemon (it connects with `IKIGAI_SOCKET`,
//! `IKIGAI_AGENT` and `IKIGAI_TOKEN`), it heartbeats every `ECHO_HEARTBEAT_MS` (default 1000;
//! 0 = never) and answers every message in its mailbox: to the payload's `reply_to`, else to the
//! sender, it sends `{"echo": payload, "agent", "version" (ECHO_VERSION), "pid"}`, then acks.
//! It exits 1 when the connection fails, to be restarted by its supervisor.

use ikigai_client::{Client, ClientError};
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ikigai-echo-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), ClientError> {
    let client = Client::connect_env().await?;
    let me = std::env::var("IKIGAI_AGENT").unwrap_or_default();
    println!("echo agent {me} connected");
    let every: u64 = std::env::var("ECHO_HEARTBEAT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    if every > 0 {
        tokio::spawn(heartbeat(client.clone(), Duration::from_millis(every)));
    }
    let inbox = client.mailbox(&me);
    loop {
        for msg in inbox.receive(Some(10), Some(10_000)).await? {
            let to = msg.payload["reply_to"].as_str().unwrap_or(&msg.sender);
            let answer = json!({
                "echo": msg.payload,
                "agent": me,
                "version": std::env::var("ECHO_VERSION").unwrap_or_default(),
                "pid": std::process::id(),
            });
            client.mailbox(to).send(&answer).await?;
            inbox.ack(&[msg.id]).await?;
        }
    }
}

async fn heartbeat(client: Client, every: Duration) {
    loop {
        if let Err(e) = client.agents().heartbeat().await {
            eprintln!("ikigai-echo-agent: heartbeat: {e}");
        }
        tokio::time::sleep(every).await;
    }
}
