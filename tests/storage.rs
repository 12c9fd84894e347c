//! Storage against the real daemon and Postgres: versions and conflicts, namespaces, deletes,
//! paged listings, and durability across a restart.

mod support;

use ikigai_client::{Client, ErrorCode};
use serde_json::{json, Value};
use support::{assert_code, Daemon};

async fn put(client: &Client, args: Value) -> Result<i64, ikigai_client::ClientError> {
    let reply: Value = client.call("storage.put", &args).await?;
    Ok(reply["version"].as_i64().unwrap())
}

async fn get(client: &Client, key: &str) -> Value {
    let reply: Value = client
        .call("storage.get", &json!({ "key": key }))
        .await
        .unwrap();
    reply["document"].clone()
}

async fn list(client: &Client, args: Value) -> (Vec<String>, Value) {
    let reply: Value = client.call("storage.list", &args).await.unwrap();
    let keys = reply["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap().to_owned())
        .collect();
    (keys, reply["next"].clone())
}

#[tokio::test]
async fn versions_grow_and_a_stale_if_version_is_a_conflict() {
    let d = Daemon::start().await;
    let a = d.agent("alice").await;
    assert_eq!(
        put(&a, json!({"key": "k", "value": {"n": 1}}))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        put(&a, json!({"key": "k", "value": {"n": 2}}))
            .await
            .unwrap(),
        2
    );
    let stale = put(&a, json!({"key": "k", "value": {"n": 3}, "if_version": 1})).await;
    assert_code(stale, ErrorCode::Conflict);
    let current = put(&a, json!({"key": "k", "value": {"n": 3}, "if_version": 2})).await;
    assert_eq!(current.unwrap(), 3);
    let doc = get(&a, "k").await;
    assert_eq!(doc["value"], json!({"n": 3}));
    assert_eq!(doc["version"], 3);
    let create_only = put(&a, json!({"key": "k", "value": 0, "if_version": 0})).await;
    assert_code(create_only, ErrorCode::Conflict);
    let fresh = put(&a, json!({"key": "new", "value": 0, "if_version": 0})).await;
    assert_eq!(fresh.unwrap(), 1);
    let absent = put(&a, json!({"key": "absent", "value": 0, "if_version": 4})).await;
    assert_code(absent, ErrorCode::Conflict);
    assert_eq!(get(&a, "absent").await, Value::Null);
    assert_code(
        put(&a, json!({"key": "", "value": 1})).await,
        ErrorCode::BadRequest,
    );
}

#[tokio::test]
async fn concurrent_writers_with_the_same_version_exactly_one_wins() {
    let d = Daemon::start().await;
    let a = d.agent("alice").await;
    put(&a, json!({"key": "counter", "value": 0}))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let a = d.agent("alice").await;
        tasks.push(tokio::spawn(async move {
            put(&a, json!({"key": "counter", "value": i, "if_version": 1})).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => {
                assert_eq!(v, 2);
                won += 1;
            }
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::Conflict)),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn only_admin_names_another_agents_namespace() {
    let d = Daemon::start().await;
    let (admin, alice, bob) = (
        d.admin().await,
        d.agent("alice").await,
        d.agent("bob").await,
    );
    put(&alice, json!({"key": "doc", "value": 1}))
        .await
        .unwrap();
    let args = json!({"key": "doc", "value": 2, "agent": "alice", "if_version": 1});
    assert_eq!(put(&admin, args.clone()).await.unwrap(), 2);
    assert_eq!(get(&alice, "doc").await["value"], 2);
    let listed: Value = admin
        .call("storage.list", &json!({"agent": "alice"}))
        .await
        .unwrap();
    assert_eq!(listed["documents"][0]["key"], "doc");
    let gone = json!({"key": "doc", "agent": "alice"});
    admin.call_value("storage.delete", &gone).await.unwrap();
    assert!(get(&alice, "doc").await.is_null());
    assert_code(put(&bob, args).await, ErrorCode::PermissionDenied);
    assert_code(
        bob.call_value("storage.get", &gone).await,
        ErrorCode::PermissionDenied,
    );
}

#[tokio::test]
async fn each_agent_sees_only_its_own_namespace_and_deletes_respect_versions() {
    let d = Daemon::start().await;
    let (a, b) = (d.agent("alice").await, d.agent("bob").await);
    put(&a, json!({"key": "profile", "value": "alice's"}))
        .await
        .unwrap();
    assert_eq!(get(&b, "profile").await, Value::Null);
    put(&b, json!({"key": "profile", "value": "bob's"}))
        .await
        .unwrap();
    assert_eq!(get(&a, "profile").await["value"], "alice's");
    let stale = a
        .call_value(
            "storage.delete",
            &json!({"key": "profile", "if_version": 7}),
        )
        .await;
    assert_code(stale, ErrorCode::Conflict);
    let deleted: Value = a
        .call(
            "storage.delete",
            &json!({"key": "profile", "if_version": 1}),
        )
        .await
        .unwrap();
    assert_eq!(deleted, json!({"deleted": true}));
    let again: Value = a
        .call("storage.delete", &json!({"key": "profile"}))
        .await
        .unwrap();
    assert_eq!(again, json!({"deleted": false}));
    assert_eq!(get(&b, "profile").await["value"], "bob's");
}

#[tokio::test]
async fn listings_page_through_a_prefix_in_key_order() {
    let mut d = Daemon::start().await;
    let a = d.agent("alice").await;
    for i in (0..25).rev() {
        let key = format!("notes/{i:02}");
        put(&a, json!({"key": key, "value": i})).await.unwrap();
    }
    put(&a, json!({"key": "notes_x", "value": "not under notes/"}))
        .await
        .unwrap();
    put(&a, json!({"key": "other", "value": 0})).await.unwrap();
    let mut keys = Vec::new();
    let mut after = Value::Null;
    loop {
        let args = json!({"prefix": "notes/", "limit": 10, "after": after});
        let (page, next) = list(&a, args).await;
        assert!(page.len() <= 10);
        keys.extend(page);
        if next.is_null() {
            break;
        }
        after = next;
    }
    let expected: Vec<String> = (0..25).map(|i| format!("notes/{i:02}")).collect();
    assert_eq!(keys, expected);
    let (underscore, _) = list(&a, json!({"prefix": "notes_"})).await;
    assert_eq!(underscore, vec!["notes_x"], "_ in a prefix is literal");
    assert_code(
        a.call_value("storage.list", &json!({"limit": 0})).await,
        ErrorCode::BadRequest,
    );
    d.terminate();
    d.restart().await;
    let a = d.agent("alice").await;
    let (all, next) = list(&a, json!({})).await;
    assert_eq!(all.len(), 27, "documents survive a restart");
    assert!(next.is_null());
}
