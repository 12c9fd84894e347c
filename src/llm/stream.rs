//! Streaming to the agent: text deltas of a streamed `llm.prompt`, pushed to its connection as
//! `{"push": "llm.delta", "data": {request, delta}}` in order, all queued before the reply.

use crate::session::Out;
use ikigai_protocol::encode_push;
use serde_json::json;
use tokio::sync::mpsc;

/// Forwards streamed text to the connection as `llm.delta` pushes, in order, ahead of the reply.
pub struct Streamer {
    tx: mpsc::UnboundedSender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Streamer {
    pub fn start(out: Out, request: u64) -> Streamer {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let task = tokio::task::spawn_local(async move {
            while let Some(delta) = rx.recv().await {
                let data = json!({"request": request, "delta": delta});
                let Ok(frame) = encode_push("llm.delta", &data) else {
                    continue;
                };
                if out.send(frame).await.is_err() {
                    return;
                }
            }
        });
        Streamer { tx, task }
    }

    pub fn push(&self, delta: &str) {
        let _ = self.tx.send(delta.to_owned());
    }

    /// Waits until every delta is queued on the connection.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}
