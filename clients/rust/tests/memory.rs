//! Memory and context against the real daemon (protocol section 18), through the typed calls:
//! stored assets and what prompts carry of them, marks and rewinds, exclusions, summaries, the
//! window, the history (list, delete, search), the default thread, and `if_busy`.

mod support;

use ikigai_client::{
    AssetChanges, ChatMessage, Client, ClientError, ErrorCode, IfBusy, ListMessages, MessageState,
    NewAsset, Prompt, PromptReply, Summarize, WindowSetting, WindowStrategy, DEFAULT_THREAD,
};
use serde_json::json;
use std::time::Duration;
use support::{testbed, Testbed};

fn llm() -> serde_json::Value {
    json!({"models": ["haiku"]})
}

fn prompt(thread: &str, content: &str) -> Prompt {
    Prompt {
        model: Some("haiku".into()),
        messages: vec![ChatMessage::user(content)],
        thread: Some(thread.into()),
        ..Prompt::default()
    }
}

/// Prompts `content` on `thread`, answered `answer` by the mock.
async fn exchange(
    bed: &Testbed,
    c: &Client,
    thread: &str,
    content: &str,
    answer: &str,
) -> PromptReply {
    bed.script(&[json!({"text": answer})]).await;
    c.prompt(&prompt(thread, content)).await.unwrap()
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> ErrorCode {
    r.expect_err("refused").code().expect("a daemon error")
}

/// `(content, state)` of each message of a history.
fn states(messages: &[ikigai_client::ConversationMessage]) -> Vec<(&str, MessageState)> {
    messages
        .iter()
        .map(|m| (m.message.content.as_str(), m.state))
        .collect()
}

#[tokio::test]
async fn stored_assets_are_versioned_listed_deleted_and_in_every_prompt() {
    let (_turn, bed) = testbed().await;
    let c = bed.llm_agent(llm()).await;
    let assets = c.stored_assets();
    let new = NewAsset {
        label: "working_state",
        value: "batch #1",
        limit: 100,
        description: Some("What I do now"),
    };
    let created = assets.create(&new).await.unwrap();
    assert_eq!((created.version, created.chars), (1, 8));
    assert_eq!(created.description.as_deref(), Some("What I do now"));
    assert_eq!(code(assets.create(&new).await), ErrorCode::Conflict);
    let too_long = "x".repeat(101);
    let over = AssetChanges {
        value: Some(&too_long),
        ..AssetChanges::default()
    };
    assert_eq!(
        code(assets.update("working_state", &over).await),
        ErrorCode::BadRequest
    );
    let done = AssetChanges {
        value: Some("batch #1 done"),
        ..AssetChanges::default()
    };
    assert_eq!(
        assets.update("working_state", &done).await.unwrap().version,
        2
    );
    let got = assets.get("working_state", Some(5)).await.unwrap();
    assert_eq!(got.asset.value, "batch #1 done");
    let history: Vec<_> = got
        .history
        .iter()
        .map(|v| (v.version, v.value.as_str()))
        .collect();
    assert_eq!(history, [(1, "batch #1")]);
    let notes = NewAsset {
        label: "notes",
        value: "none yet",
        limit: 50,
        description: None,
    };
    assets.create(&notes).await.unwrap();
    let labels = |list: Vec<ikigai_client::StoredAsset>| {
        list.into_iter().map(|a| a.label).collect::<Vec<_>>()
    };
    assert_eq!(
        labels(assets.list().await.unwrap()),
        ["working_state", "notes"]
    );

    exchange(bed, &c, DEFAULT_THREAD, "what now?", "next batch").await;
    let sent = bed.last_sent().await;
    assert!(sent.contains(r#"<asset label=\"working_state\""#), "{sent}");
    assert!(sent.contains("batch #1 done"));

    assets.delete("notes").await.unwrap();
    assert_eq!(labels(assets.list().await.unwrap()), ["working_state"]);
    assert_eq!(code(assets.get("notes", None).await), ErrorCode::NotFound);
    // Created again: one past the versions of the deleted label, the deletion among them.
    assert_eq!(assets.create(&notes).await.unwrap().version, 3);
    let again = assets.get("notes", Some(5)).await.unwrap();
    let deleted: Vec<_> = again
        .history
        .iter()
        .map(|v| (v.version, v.deleted))
        .collect();
    assert_eq!(deleted, [(2, true), (1, false)]);
}

#[tokio::test]
async fn a_rewind_takes_what_follows_the_mark_out_of_the_context() {
    let (_turn, bed) = testbed().await;
    let c = bed.llm_agent(llm()).await;
    let created = c.threads().create(None).await.unwrap();
    let (id, thread) = (&created.id, c.thread(&created));
    exchange(bed, &c, id, "first question", "first answer").await;
    let mark = thread.context().mark("before-analysis").await.unwrap();
    assert_eq!((mark.label.as_str(), mark.position), ("before-analysis", 2));
    exchange(bed, &c, id, "analysis question", "analysis answer").await;
    assert_eq!(thread.context().rewind(&mark).await.unwrap(), 2);
    let history = thread
        .conversation()
        .list(&ListMessages::default())
        .await
        .unwrap();
    assert_eq!(
        states(&history),
        [
            ("first question", MessageState::Context),
            ("first answer", MessageState::Context),
            ("analysis question", MessageState::Rewound),
            ("analysis answer", MessageState::Rewound),
        ]
    );
    exchange(bed, &c, id, "after the rewind", "ok").await;
    assert!(!bed.last_sent().await.contains("analysis answer"));
    thread.context().mark("again").await.unwrap();
    assert_eq!(thread.context().rewind("again").await.unwrap(), 0);
    assert_eq!(
        code(thread.context().rewind("no-such-mark").await),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn an_excluded_exchange_leaves_the_context() {
    let (_turn, bed) = testbed().await;
    let c = bed.llm_agent(llm()).await;
    let id = c.threads().create(None).await.unwrap().id;
    let detour = exchange(bed, &c, &id, "a detour", "detour answer").await;
    assert_eq!(
        c.thread(&id).context().exclude(&detour.id).await.unwrap(),
        2
    );
    assert_eq!(
        c.thread(&id).context().exclude(&detour.id).await.unwrap(),
        0
    );
    exchange(bed, &c, &id, "back on track", "ok").await;
    assert!(!bed.last_sent().await.contains("detour answer"));
}

#[tokio::test]
async fn a_summary_replaces_the_exchanges_in_range() {
    let (_turn, bed) = testbed().await;
    let c = bed.llm_agent(llm()).await;
    let id = c.threads().create(None).await.unwrap().id;
    let context = c.thread(&id).context();
    let hour = Summarize::OlderThan(Duration::from_secs(3600).into());
    let none = context.summarize(&hour).await.unwrap();
    assert_eq!((none.summarized, none.summary, none.id), (0, None, None));
    exchange(bed, &c, &id, "the long story", "a long answer").await;
    bed.script(&[json!({"text": "They talked about a long story."})])
        .await;
    let summary = context.summarize(&Summarize::Before(2)).await.unwrap();
    assert_eq!(summary.summarized, 2);
    assert_eq!(
        summary.summary.as_deref(),
        Some("They talked about a long story.")
    );
    assert!(summary.id.is_some());
    let history = c
        .thread(&id)
        .conversation()
        .list(&ListMessages::default())
        .await
        .unwrap();
    assert!(history.iter().all(|m| m.state == MessageState::Summarized));
    exchange(bed, &c, &id, "go on", "ok").await;
    assert!(bed
        .last_sent()
        .await
        .contains("They talked about a long story."));
}

#[tokio::test]
async fn the_window_is_read_and_changed() {
    let (_turn, bed) = testbed().await;
    let c = bed.llm_agent(llm()).await;
    let window = c.context().window();
    let setting = |tokens, strategy| WindowSetting { tokens, strategy };
    use WindowStrategy::{Summarize, Truncate};
    assert_eq!(window.get().await.unwrap(), setting(None, Truncate));
    assert_eq!(
        window.resize(16000).await.unwrap(),
        setting(Some(16000), Truncate)
    );
    assert_eq!(
        window.strategy(Summarize).await.unwrap(),
        setting(Some(16000), Summarize)
    );
    assert_eq!(window.get().await.unwrap(), setting(Some(16000), Summarize));
    assert_eq!(window.reset().await.unwrap(), setting(None, Summarize));
    assert_eq!(code(window.resize(10).await), ErrorCode::BadRequest);
}

#[tokio::test]
async fn the_history_is_listed_and_a_message_erased() {
    let (_turn, bed) = testbed().await;
    let c = bed.llm_agent(llm()).await;
    let first = exchange(bed, &c, DEFAULT_THREAD, "my card number is 4242", "noted").await;
    exchange(bed, &c, DEFAULT_THREAD, "second", "two").await;
    let history = c
        .conversation()
        .list(&ListMessages::default())
        .await
        .unwrap();
    let rows: Vec<_> = history
        .iter()
        .map(|m| (m.id, m.message.role.as_str(), m.message.content.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            (0, "user", "my card number is 4242"),
            (1, "assistant", "noted"),
            (2, "user", "second"),
            (3, "assistant", "two")
        ]
    );
    assert_eq!(history[0].exchange.as_deref(), Some(first.id.as_str()));
    let page = ListMessages {
        limit: Some(1),
        before: Some(3),
    };
    let ids: Vec<u64> = c
        .conversation()
        .list(&page)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, [2]);
    c.conversation().delete(0).await.unwrap();
    let first_page = ListMessages {
        limit: Some(1),
        before: Some(1),
    };
    let erased = c.conversation().list(&first_page).await.unwrap();
    assert_eq!(states(&erased), [("[deleted]", MessageState::Deleted)]);
    let same = c
        .thread(DEFAULT_THREAD)
        .conversation()
        .list(&ListMessages::default())
        .await
        .unwrap();
    assert_eq!(same.len(), 4);
    assert_eq!(code(c.conversation().delete(99).await), ErrorCode::NotFound);
}

#[tokio::test]
async fn a_search_covers_every_thread_or_one() {
    let (_turn, bed) = testbed().await;
    let c = bed.llm_agent(llm()).await;
    let id = c.threads().create(None).await.unwrap().id;
    exchange(bed, &c, &id, "the invoice of Oslo", "paid").await;
    exchange(bed, &c, DEFAULT_THREAD, "an invoice of Bergen", "open").await;
    let everywhere = c.conversation().search("invoice", None).await.unwrap();
    let threads: std::collections::BTreeSet<_> =
        everywhere.iter().map(|m| m.thread.clone()).collect();
    assert_eq!(threads.len(), 2);
    let found = c
        .thread(&id)
        .conversation()
        .search("invoice", None)
        .await
        .unwrap();
    let found: Vec<_> = found
        .iter()
        .map(|m| (m.thread.as_str(), m.message.content.as_str()))
        .collect();
    assert_eq!(found, [(id.as_str(), "the invoice of Oslo")]);
    let not_oslo = c
        .conversation()
        .search("invoice -Oslo", Some(1))
        .await
        .unwrap();
    assert_eq!(not_oslo[0].message.content, "an invoice of Bergen");
}

#[tokio::test]
async fn a_busy_thread_waits_or_rejects() {
    let (_turn, bed) = testbed().await;
    let c = bed.llm_agent(llm()).await;
    let id = c.threads().create(None).await.unwrap().id;
    bed.script(&[
        json!({"text": "slow", "delay_ms": 1000}),
        json!({"text": "waited"}),
    ])
    .await;
    let slow = {
        let c = c.clone();
        let ask = prompt(&id, "slow one");
        tokio::spawn(async move { c.prompt(&ask).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reject = Prompt {
        if_busy: Some(IfBusy::Reject),
        ..prompt(&id, "now")
    };
    assert_eq!(code(c.prompt(&reject).await), ErrorCode::Conflict);
    let wait = Prompt {
        if_busy: Some(IfBusy::Wait),
        ..prompt(&id, "later")
    };
    let waited = c.prompt(&wait).await.unwrap();
    assert_eq!(slow.await.unwrap().unwrap().content, "slow");
    assert_eq!(waited.content, "waited");
}

#[tokio::test]
async fn another_agents_thread_is_not_found() {
    let (_turn, bed) = testbed().await;
    let owner = bed.llm_agent(llm()).await;
    let other = bed.llm_agent(llm()).await;
    let id = owner.threads().create(None).await.unwrap().id;
    assert_eq!(
        code(other.thread(&id).context().mark("x").await),
        ErrorCode::NotFound
    );
}
