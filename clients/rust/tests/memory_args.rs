//! Without a daemon: each memory call (protocol section 18) and `if_busy` send their op with the
//! protocol's args, and a thread handle names its thread in every call. A fake daemon on a Unix
//! socket records each request and answers with one reply that every call's type can decode.

use ikigai_client::{
    AssetChanges, ChatMessage, Client, IfBusy, ListMessages, Mark, NewAsset, Prompt, Summarize,
    WindowStrategy, DEFAULT_THREAD,
};
use serde_json::{json, Value as Json};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::mpsc;

/// A client of a fake daemon, and the `(op, args)` it receives, nil args left out (absent and
/// nil mean the same, protocol section 6).
async fn fake_daemon() -> (Client, mpsc::UnboundedReceiver<(String, Json)>) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("ikigai-memory-args-{}-{n}.sock", std::process::id());
    let path = std::env::temp_dir().join(name);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let (sent, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut frames = ikigai_protocol::FrameReader::new(read, 1 << 20);
        while let Ok(Some(frame)) = frames.read_frame().await {
            let request = ikigai_protocol::decode_request(&frame).unwrap();
            let mut args: Json = request.args.parse().unwrap();
            args.as_object_mut().unwrap().retain(|_, v| !v.is_null());
            sent.send((request.op, args)).unwrap();
            let reply = ikigai_protocol::encode_ok(request.id, &any_reply()).unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut write, &reply)
                .await
                .unwrap();
        }
    });
    let client = Client::connect(&path).await.unwrap();
    let _ = std::fs::remove_file(&path);
    (client, received)
}

/// The fields of every reply of section 18 and of `llm.prompt`, in one map.
fn any_reply() -> Json {
    json!({
        "label": "l", "value": "v", "limit": 10, "description": null, "version": 1, "chars": 1,
        "updated_at": "2026-01-01T00:00:00.000000Z", "history": [], "assets": [], "mark": "m1",
        "position": 2, "rewound": 0, "excluded": 0, "summarized": 0, "summary": null, "id": "x",
        "tokens": null, "strategy": "truncate", "messages": [], "content": "", "cost_usd": 0.0,
        "usage": {"input_tokens": 1, "output_tokens": 1, "cache_read_tokens": 0, "cache_write_tokens": 0},
        "model": "m", "provider": "p", "provider_model": "pm", "stop_reason": "end_turn", "steps": 1,
    })
}

/// Runs the call, then checks the op and args the fake daemon got.
macro_rules! sends {
    ($sent:ident, $call:expr, $op:literal, $args:tt) => {{
        $call.await.expect($op);
        let got = tokio::time::timeout(Duration::from_secs(5), $sent.recv()).await;
        assert_eq!(got.unwrap().unwrap(), ($op.to_owned(), json!($args)));
    }};
}

#[tokio::test]
async fn each_memory_call_sends_its_op_and_args() {
    let (c, mut sent) = fake_daemon().await;
    let t = "thread-1";
    let asset = NewAsset {
        label: "l",
        value: "v",
        limit: 10,
        description: Some("d"),
    };
    sends!(sent, c.stored_assets().create(&asset), "assets.create",
        {"label": "l", "value": "v", "limit": 10, "description": "d"});
    let changes = AssetChanges {
        limit: Some(20),
        ..AssetChanges::default()
    };
    sends!(sent, c.stored_assets().update("l", &changes), "assets.update", {"label": "l", "limit": 20});
    sends!(sent, c.stored_assets().get("l", Some(3)), "assets.get", {"label": "l", "history": 3});
    sends!(sent, c.stored_assets().list(), "assets.list", {});
    sends!(sent, c.stored_assets().delete("l"), "assets.delete", {"label": "l"});

    sends!(sent, c.context().mark("before"), "context.mark", {"label": "before"});
    sends!(sent, c.thread(t).context().mark("before"), "context.mark", {"label": "before", "thread": t});
    let mark = Mark {
        mark: "m1".into(),
        label: "before".into(),
        position: 2,
    };
    sends!(sent, c.context().rewind(&mark), "context.rewind", {"mark": "m1"});
    sends!(sent, c.thread(t).context().rewind("before"), "context.rewind", {"mark": "before", "thread": t});
    sends!(sent, c.thread(DEFAULT_THREAD).context().exclude("x1"), "context.exclude",
        {"id": "x1", "thread": "default"});
    let older = Summarize::OlderThan("1h".into());
    sends!(sent, c.context().summarize(&older), "context.summarize", {"older_than": "1h"});
    let hour = Summarize::OlderThan(Duration::from_secs(3600).into());
    sends!(sent, c.context().summarize(&hour), "context.summarize", {"older_than": 3_600_000});
    sends!(sent, c.thread(t).context().summarize(&Summarize::Before(7)), "context.summarize",
        {"before": 7, "thread": t});

    let window = c.context().window();
    sends!(sent, window.get(), "context.window", {});
    sends!(sent, c.thread(t).context().window().resize(16000), "context.window", {"tokens": 16000, "thread": t});
    sends!(sent, window.strategy(WindowStrategy::Summarize), "context.window", {"strategy": "summarize"});
    sends!(sent, window.reset(), "context.window", {"reset": true});

    let page = ListMessages {
        limit: Some(50),
        before: Some(9),
    };
    sends!(sent, c.conversation().list(&page), "conversation.list", {"limit": 50, "before": 9});
    sends!(sent, c.thread(t).conversation().delete(4), "conversation.delete", {"id": 4, "thread": t});
    sends!(sent, c.conversation().search("batch -done", Some(5)), "conversation.search",
        {"text": "batch -done", "limit": 5});
    sends!(sent, c.thread(t).conversation().search("batch", None), "conversation.search",
        {"text": "batch", "thread": t});
}

#[tokio::test]
async fn a_prompt_sends_if_busy_and_the_default_thread() {
    let (c, mut sent) = fake_daemon().await;
    let prompt = Prompt {
        messages: vec![ChatMessage::user("hi")],
        thread: Some(DEFAULT_THREAD.into()),
        if_busy: Some(IfBusy::Reject),
        ..Prompt::default()
    };
    c.prompt(&prompt).await.unwrap();
    let (op, args) = sent.recv().await.unwrap();
    assert_eq!(op, "llm.prompt");
    assert_eq!(
        (&args["thread"], &args["if_busy"]),
        (&json!("default"), &json!("reject"))
    );
}
