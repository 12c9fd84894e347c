//! The wire protocol under bad input: every malformed frame gets a typed error, a broken stream
//! is closed, and the daemon keeps serving everyone else.

mod support;

use ikigai_client::{Client, ErrorCode, Receive};
use serde_json::json;
use support::{assert_code, Daemon, Raw};

/// After each abuse, a well-behaved agent still gets a full round trip.
async fn still_serving(d: &Daemon) {
    let alice = d.agent("alice").await;
    let id = alice.mailbox_send("alice", &json!("ok")).await.unwrap();
    let got = alice
        .mailbox_receive(&Receive {
            mailbox: "alice",
            max: Some(10),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(got.iter().any(|m| m.id == id));
}

#[tokio::test]
async fn bytes_that_are_not_msgpack_get_bad_frame_and_the_connection_closes() {
    let d = Daemon::start().await;
    let mut raw = Raw::connect(&d).await;
    raw.send(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1]).await;
    Raw::assert_err(raw.frame().await, 0, "bad_frame");
    assert!(raw.frame().await.is_none(), "closed after bad_frame");
    still_serving(&d).await;
}

#[tokio::test]
async fn garbage_text_is_refused_by_its_absurd_length_prefix() {
    let d = Daemon::start().await;
    let mut raw = Raw::connect(&d).await;
    raw.send(b"GET / HTTP/1.1\r\n\r\n").await;
    Raw::assert_err(raw.frame().await, 0, "bad_frame");
    assert!(raw.frame().await.is_none());
    still_serving(&d).await;
}

#[tokio::test]
async fn an_oversize_length_prefix_is_refused_before_its_body_is_read() {
    let d = Daemon::start_with("[daemon]\nmax_frame_bytes = 1024\n").await;
    let mut raw = Raw::hello(&d).await;
    raw.send(&2048u32.to_be_bytes()).await;
    let frame = raw.frame().await.expect("an error frame");
    assert_eq!(frame["err"]["code"], json!("bad_frame"));
    assert!(frame["err"]["message"]
        .as_str()
        .unwrap()
        .contains("exceeds the limit of 1024"));
    assert!(raw.frame().await.is_none());
    still_serving(&d).await;
}

#[tokio::test]
async fn a_frame_cut_off_mid_way_is_a_bad_frame() {
    let d = Daemon::start().await;
    let mut raw = Raw::hello(&d).await;
    raw.send(&[0, 0, 0, 100, 0x81, 0xa2]).await;
    raw.finish_writing().await;
    Raw::assert_err(raw.frame().await, 0, "bad_frame");
    still_serving(&d).await;
}

#[tokio::test]
async fn msgpack_that_is_not_a_map_gets_bad_frame() {
    let d = Daemon::start().await;
    let mut raw = Raw::hello(&d).await;
    let body = rmp_serde::to_vec(&(1, "mailbox.send", 3)).unwrap();
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    raw.send(&frame).await;
    Raw::assert_err(raw.frame().await, 0, "bad_frame");
    assert!(raw.frame().await.is_none());
    still_serving(&d).await;
}

#[tokio::test]
async fn the_reserved_marker_is_a_bad_frame_and_the_values_after_it_are_never_served() {
    // {"z": <0xc1>, "id": 7, "op": "telemetry.query", "args": {"text": "a\0b"}}: the decoders'
    // checks cannot read 0xc1 (msgpack never uses it; rmpv reads it as nil), so the NUL after
    // it went unchecked to Postgres, which answered `internal`.
    let d = Daemon::start().await;
    let mut raw = Raw::hello(&d).await;
    let mut body = vec![0x84, 0xa1, b'z', 0xc1, 0xa2, b'i', b'd', 7];
    body.extend([0xa2, b'o', b'p', 0xaf]);
    body.extend(b"telemetry.query");
    body.extend([
        0xa4, b'a', b'r', b'g', b's', 0x81, 0xa4, b't', b'e', b'x', b't',
    ]);
    body.extend([0xa3, b'a', 0, b'b']);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend(body);
    raw.send(&frame).await;
    Raw::assert_err(raw.frame().await, 0, "bad_frame");
    assert!(raw.frame().await.is_none(), "closed after bad_frame");
    still_serving(&d).await;
}

#[tokio::test]
async fn an_unknown_op_is_refused_and_the_connection_stays_usable() {
    let d = Daemon::start().await;
    let mut raw = Raw::hello(&d).await;
    raw.request(7, "mailbox.teleport", &json!({})).await;
    Raw::assert_err(raw.frame().await, 7, "unknown_op");
    raw.request(8, "ping", &json!({})).await;
    assert_eq!(raw.frame().await.unwrap(), json!({"id": 8, "ok": {}}));
}

#[tokio::test]
async fn missing_or_mistyped_fields_get_bad_request_with_their_id() {
    let d = Daemon::start().await;
    let mut raw = Raw::hello(&d).await;
    raw.request(11, "mailbox.send", &json!({"mailbox": "bob"}))
        .await;
    Raw::assert_err(raw.frame().await, 11, "bad_request");
    raw.request(12, "mailbox.send", &json!({"mailbox": 5, "payload": 1}))
        .await;
    Raw::assert_err(raw.frame().await, 12, "bad_request");
    let no_op = rmp_serde::to_vec_named(&json!({"id": 13, "args": {}})).unwrap();
    let mut frame = (no_op.len() as u32).to_be_bytes().to_vec();
    frame.extend(no_op);
    raw.send(&frame).await;
    Raw::assert_err(raw.frame().await, 13, "bad_request");
    raw.request(14, "ping", &json!({})).await;
    assert_eq!(raw.frame().await.unwrap()["id"], json!(14));
    still_serving(&d).await;
}

#[tokio::test]
async fn requests_before_hello_are_unauthenticated() {
    let d = Daemon::start().await;
    let client = Client::connect(d.socket()).await.unwrap();
    assert_code(
        client.call_value("ping", &json!({})).await,
        ErrorCode::Unauthenticated,
    );
    client.hello("admin", &d.admin_token()).await.unwrap();
    client.call_value("ping", &json!({})).await.unwrap();
}

#[tokio::test]
async fn a_wrong_token_is_unauthenticated_and_closes_the_connection() {
    let d = Daemon::start().await;
    d.token("bob").await;
    let mut raw = Raw::connect(&d).await;
    raw.request(
        1,
        "hello",
        &json!({"protocol": 1, "agent": "bob", "token": "guess"}),
    )
    .await;
    Raw::assert_err(raw.frame().await, 1, "unauthenticated");
    assert!(raw.frame().await.is_none());
    // Another agent's valid token does not prove bob either.
    let alice_token = d.token("alice").await;
    assert_code(
        Client::connect_as(d.socket(), "bob", &alice_token)
            .await
            .map(drop),
        ErrorCode::Unauthenticated,
    );
}

#[tokio::test]
async fn hello_answers_with_the_protocol_and_a_session() {
    let d = Daemon::start().await;
    let client = Client::connect(d.socket()).await.unwrap();
    let hello = client.hello("admin", &d.admin_token()).await.unwrap();
    assert_eq!(hello.protocol, 1);
    assert_eq!(hello.daemon, "ikigai");
    uuid::Uuid::parse_str(&hello.session).expect("session is a UUID");
    assert_code(
        client.hello("admin", &d.admin_token()).await,
        ErrorCode::BadRequest,
    );
}

#[tokio::test]
async fn pipelined_requests_are_matched_by_id() {
    let d = Daemon::start().await;
    let mut raw = Raw::hello(&d).await;
    // A receive that waits is answered after the pings sent behind it.
    raw.request(
        100,
        "mailbox.receive",
        &json!({"mailbox": "admin", "wait_ms": 500}),
    )
    .await;
    for id in 101..=105 {
        raw.request(id, "ping", &json!({})).await;
    }
    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(raw.frame().await.unwrap()["id"].as_u64().unwrap());
    }
    assert_eq!(order.last(), Some(&100), "{order:?}");
    order.sort();
    assert_eq!(order, (100..=105).collect::<Vec<_>>());
}

/// Floods the daemon with `op` (after `setup`) from a client that never reads the replies:
/// everyone else is still served, and shutdown still ends within its grace.
async fn a_client_that_never_reads(
    setup: Option<(&'static str, serde_json::Value)>,
    op: &'static str,
    args: serde_json::Value,
) {
    let mut d = Daemon::start_with("[daemon]\nmax_in_flight = 4\nshutdown_grace_ms = 500\n").await;
    let mut raw = Raw::hello(&d).await;
    // Far more responses than the socket buffers hold; this client never reads them.
    let flood = tokio::spawn(async move {
        if let Some((op, args)) = setup {
            raw.request(1, op, &args).await;
        }
        for id in 2..2000 {
            raw.request(id, op, &args).await;
        }
        raw
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    still_serving(&d).await;
    let started = std::time::Instant::now();
    assert_eq!(d.terminate(), 0, "{}", d.log());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "shutdown waited {:?}",
        started.elapsed()
    );
    drop(flood);
}

#[tokio::test]
async fn a_client_that_never_reads_holds_only_itself_and_not_the_shutdown() {
    let big = json!({"mailbox": "admin", "payload": "x".repeat(4000)});
    a_client_that_never_reads(None, "mailbox.send", big).await;
}

#[tokio::test]
async fn a_client_that_never_reads_in_place_replies_holds_only_itself() {
    // Cache replies are answered in place and batched: the batches back up, not the daemon.
    let big = json!({"key": "k", "value": "x".repeat(4000)});
    a_client_that_never_reads(Some(("cache.set", big)), "cache.get", json!({"key": "k"})).await;
}
