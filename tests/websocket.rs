//! The WebSocket transport end to end, through real sockets on loopback.

mod common;

use std::time::Duration;

use common::{
    Client, PATIENCE, PUBLIC_KEY, Received, TestServer, http_get, http_request, test_config,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn every_session_starts_with_server_info() {
    let server = TestServer::start().await;
    let mut client = Client::connect_raw(server.addr).await;
    let info = client.recv_text().await;
    assert_eq!(
        info,
        json!({"type": "server_info", "serverId": "test-server", "endpoint": null, "region": null})
    );
    server.stop().await;
}

#[tokio::test]
async fn server_info_comes_first_even_when_the_client_sends_at_once() {
    let server = TestServer::start().await;
    for _ in 0..50 {
        let mut client = Client::connect_raw(server.addr).await;
        client.send_cbor(&json!({"type": "ping"})).await;
        assert_eq!(client.recv_text().await["type"], "server_info");
        assert_eq!(client.recv_binary().await["type"], "pong");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_closed_sessions_name_is_free_for_an_immediate_reconnect() {
    let server = TestServer::start().await;
    for _ in 0..20 {
        let mut client = server.connect().await;
        let reply = client
            .request(json!({"type": "register", "peerId": "returning-relay"}))
            .await;
        assert_eq!(reply["type"], "registered", "{reply}");
        // The server ends the session before it answers the close, so once the answer is in, the
        // name is free: no waiting.
        client.ws.close(None).await.unwrap();
        client.closed().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn health_reports_the_server_id_to_any_origin() {
    let server = TestServer::start().await;
    let response = http_get(server.addr, "/health").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{response}"
    );
    let health = server.health().await;
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["serverId"], "test-server");
    server.stop().await;
}

#[tokio::test]
async fn health_answers_head_and_cors_preflight() {
    let server = TestServer::start().await;
    let head = http_request(server.addr, "HEAD", "/health").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
    let preflight = http_request(server.addr, "OPTIONS", "/health")
        .await
        .to_ascii_lowercase();
    assert!(preflight.starts_with("http/1.1 204"), "{preflight}");
    assert!(
        preflight.contains("access-control-allow-origin: *"),
        "{preflight}"
    );
    let post = http_request(server.addr, "POST", "/health").await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    server.stop().await;
}

#[tokio::test]
async fn the_status_page_is_self_contained_and_reads_stats() {
    let server = TestServer::start().await;
    let response = http_get(server.addr, "/status").await;
    let (head, page) = response.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("content-security-policy: default-src 'none';")
            && head.contains("connect-src 'self'"),
        "nothing may load from elsewhere: {head}"
    );
    assert!(page.contains(r#"fetch("stats""#));
    assert!(
        !page.contains("<script src") && !page.contains("<link") && !page.contains("@import"),
        "script and style are inline"
    );
    for route in ["/stats", "/metrics", "/status"] {
        let post = http_request(server.addr, "POST", route).await;
        assert!(post.starts_with("HTTP/1.1 405"), "{route}: {post}");
    }
    server.stop().await;
}

#[tokio::test]
async fn plain_http_on_a_websocket_path_is_told_to_upgrade() {
    let server = TestServer::start().await;
    let response = http_get(server.addr, "/anything").await;
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    server.stop().await;
}

#[tokio::test]
async fn any_path_upgrades_to_a_session() {
    let server = TestServer::start().await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{}/some/legacy/path", server.addr), stream)
            .await
            .unwrap();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert!(matches!(first, Some(Ok(Message::Text(_)))));
    server.stop().await;
}

#[tokio::test]
async fn replies_echo_the_request_id_in_the_requests_encoding() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    client
        .send_json(&json!({"type": "ping", "requestId": "abc"}))
        .await;
    assert_eq!(
        client.recv_text().await,
        json!({"type": "pong", "requestId": "abc"})
    );
    client
        .send_cbor(&json!({"type": "ping", "requestId": 42}))
        .await;
    assert_eq!(
        client.recv_binary().await,
        json!({"type": "pong", "requestId": 42})
    );
    client.send_json(&json!({"type": "ping"})).await;
    assert_eq!(client.recv_text().await, json!({"type": "pong"}));
    server.stop().await;
}

#[tokio::test]
async fn heartbeat_answers_with_the_server_time() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let ack = client
        .request(json!({"type": "heartbeat", "peerId": "p1"}))
        .await;
    assert_eq!(
        ack,
        json!({"type": "heartbeat_ack", "timestamp": 1_700_000_000_000u64})
    );
    server.stop().await;
}

#[tokio::test]
async fn relay_registration_lists_other_relays_and_ends_with_the_session() {
    let server = TestServer::start().await;
    let mut first = server.connect().await;
    let reply = first
        .request(json!({"type": "register", "peerId": "relay-1", "maxConnections": 10, "publicKey": "pk1"}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "registered", "peerId": "relay-1", "serverId": "test-server", "relays": []})
    );

    let mut second = server.connect().await;
    second
        .send_cbor(&json!({"type": "register", "peer_id": "relay-2"}))
        .await;
    let reply = second.recv_binary().await;
    assert_eq!(reply["type"], "registered");
    assert_eq!(
        reply["relays"],
        json!([{"peerId": "relay-1", "publicKey": "pk1", "capacity": 0.0}])
    );

    let reply = first
        .request(json!({"type": "update_load", "peerId": "relay-1", "connectedCount": 5}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "load_updated", "peerId": "relay-1", "connectedCount": 5})
    );
    let reply = second
        .request(json!({"type": "get_relays", "peerId": "relay-2"}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "relays", "relays": []}),
        "relay-1 is at half load"
    );
    first
        .request(json!({"type": "update_load", "peerId": "relay-1", "connectedCount": 2}))
        .await;
    let reply = second
        .request(json!({"type": "get_relays", "peerId": "relay-2", "count": 5}))
        .await;
    assert_eq!(
        reply["relays"],
        json!([{"peerId": "relay-1", "publicKey": "pk1", "capacity": 0.2}])
    );

    first.ws.close(None).await.unwrap();
    server.wait_for_sessions(1).await;
    let reply = second
        .request(json!({"type": "get_relays", "peerId": "relay-2"}))
        .await;
    assert_eq!(reply["relays"], json!([]));
    assert_eq!(server.health().await["relays"], 1);
    server.stop().await;
}

#[tokio::test]
async fn hourly_token_match_pushes_to_the_earlier_peer_in_its_encoding() {
    let server = TestServer::start().await;
    let mut early = server.connect().await;
    early
        .send_cbor(&json!({"type": "register_rendezvous", "peerId": "early", "hourlyTokens": ["tok"], "relayId": "relay-e"}))
        .await;
    assert_eq!(
        early.recv_binary().await,
        json!({"type": "rendezvous_result", "liveMatches": [], "deadDrops": []})
    );

    let mut late = server.connect().await;
    let reply = late
        .request(
            json!({"type": "register_rendezvous", "peer_id": "late", "hourly_tokens": ["tok"]}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"type": "rendezvous_result",
               "liveMatches": [{"peerId": "early", "relayId": "relay-e", "meetingPoint": "tok"}],
               "deadDrops": []})
    );
    assert_eq!(
        early.recv_binary().await,
        json!({"type": "rendezvous_match", "match": {"peerId": "late", "relayId": "", "meetingPoint": "tok"}})
    );
    server.stop().await;
}

#[tokio::test]
async fn dead_drops_outlive_the_session_that_left_them() {
    let server = TestServer::start().await;
    let mut alice = server.connect().await;
    alice
        .request(
            json!({"type": "register_rendezvous", "peerId": "alice", "dailyPoints": ["day-1"],
                        "deadDrop": "sealed", "hourlyTokens": ["hour-1"]}),
        )
        .await;
    alice.ws.close(None).await.unwrap();
    server.wait_for_sessions(0).await;

    let mut bob = server.connect().await;
    let reply = bob
        .request(
            json!({"type": "register_rendezvous", "peerId": "bob", "dailyPoints": ["day-1"],
                        "hourlyTokens": ["hour-1"]}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"type": "rendezvous_result", "liveMatches": [],
               "deadDrops": [{"peerId": "alice", "deadDrop": "sealed", "relayId": "", "meetingPoint": "day-1"}]})
    );
    server.stop().await;
}

#[tokio::test]
async fn dead_drops_expire_with_the_injected_clock() {
    let server = TestServer::start().await;
    let mut alice = server.connect().await;
    alice
        .request(json!({"type": "register_rendezvous", "peerId": "alice", "dailyPoints": ["d"], "deadDrop": "x"}))
        .await;
    server.clock.advance(Duration::from_secs(48 * 3600));
    let mut bob = server.connect().await;
    let reply = bob
        .request(json!({"type": "register_rendezvous", "peerId": "bob", "dailyPoints": ["d"]}))
        .await;
    assert_eq!(reply["deadDrops"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn names_are_exclusive_across_sessions_and_freed_on_close() {
    let server = TestServer::start().await;
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    let reply = first
        .request(json!({"type": "register", "pairingCode": "ABC234", "publicKey": PUBLIC_KEY}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "registered", "pairingCode": "ABC234", "serverId": "test-server"})
    );
    let reply = second
        .request(json!({"type": "register", "pairingCode": "ABC234", "publicKey": PUBLIC_KEY, "requestId": 1}))
        .await;
    assert_eq!(reply["type"], "code_collision");
    assert_eq!(reply["requestId"], 1);
    let reply = second
        .request(json!({"type": "register", "peerId": "ABC234"}))
        .await;
    assert_eq!(
        reply["code"], "peer_id_taken",
        "one namespace for codes and relay ids"
    );
    let reply = second
        .request(json!({"type": "register_rendezvous", "peerId": "ABC234", "hourlyTokens": ["t"]}))
        .await;
    assert_eq!(reply["code"], "peer_id_taken");

    first.ws.close(None).await.unwrap();
    server.wait_for_sessions(1).await;
    let reply = second
        .request(json!({"type": "register", "pairingCode": "ABC234", "publicKey": PUBLIC_KEY}))
        .await;
    assert_eq!(reply["type"], "registered");
    server.stop().await;
}

#[tokio::test]
async fn oversized_messages_get_too_large_and_close_1009() {
    let mut config = test_config();
    config.transport.max_message_size = 4096;
    let server = TestServer::start_with(config).await;
    let mut client = server.connect().await;
    let padding = "x".repeat(5000);
    client
        .send_json(&json!({"type": "ping", "padding": padding}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "too_large");
    assert_eq!(client.closed().await, Some(1009));
    server.stop().await;
}

#[tokio::test]
async fn too_large_is_answered_in_the_encoding_of_the_refused_message() {
    let mut config = test_config();
    config.transport.max_message_size = 4096;
    let server = TestServer::start_with(config).await;
    let oversized = json!({"type": "ping", "padding": "x".repeat(5000)});

    // A CBOR message on a session that has only spoken JSON so far.
    let mut client = server.connect().await;
    client.request(json!({"type": "ping"})).await;
    client.send_cbor(&oversized).await;
    assert_eq!(client.recv_binary().await["code"], "too_large");
    assert_eq!(client.closed().await, Some(1009));

    // A JSON message on a session that has only spoken CBOR.
    let mut client = server.connect().await;
    client.send_cbor(&json!({"type": "ping"})).await;
    client.recv_binary().await;
    client.send_json(&oversized).await;
    assert_eq!(client.recv_text().await["code"], "too_large");
    assert_eq!(client.closed().await, Some(1009));
    server.stop().await;
}

#[tokio::test]
async fn sessions_over_the_per_address_limit_get_over_capacity_and_close_1013() {
    let mut config = test_config();
    config.admission.max_sessions_per_ip = 2;
    let server = TestServer::start_with(config).await;
    let _first = server.connect().await;
    let _second = server.connect().await;
    let mut third = Client::connect_raw(server.addr).await;
    let reply = third.recv().await;
    assert_eq!(reply["code"], "over_capacity");
    assert_eq!(third.closed().await, Some(1013));
    server.stop().await;
}

/// PROTOCOL 2.6: a client that never sends a message but whose WebSocket layer answers the server's
/// Pings (as a backgrounded tab's does) stays connected; one that answers nothing is closed as idle.
#[tokio::test]
async fn pings_keep_quiet_clients_connected_and_silent_ones_are_closed_as_idle() {
    const IDLE_SECS: u64 = 2;
    let mut config = test_config();
    config.transport.idle_timeout_secs = IDLE_SECS;
    config.transport.ping_interval_secs = 1;
    let server = TestServer::start_with(config).await;
    // Never polled until the end, so its WebSocket layer answers nothing.
    let mut silent = server.connect().await;
    let mut quiet = server.connect().await;
    // Reading is what makes tungstenite answer a Ping; the quiet client sends nothing else. Three idle
    // timeouts' worth of Pings is three idle timeouts connected.
    let mut pings = 0;
    while pings < 3 * IDLE_SECS {
        let frame = tokio::time::timeout(PATIENCE, quiet.ws.next())
            .await
            .expect("a Ping in time");
        match frame {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("the quiet client got {other:?}"),
        }
    }
    server.wait_for_sessions(1).await;
    assert_eq!(quiet.request(json!({"type": "ping"})).await["type"], "pong");
    match silent.next().await {
        Received::Closed(Some(frame)) => {
            assert_eq!(
                (u16::from(frame.code), frame.reason.as_str()),
                (1000, "idle")
            );
        }
        other => panic!("the silent client got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_and_the_server_stays_healthy() {
    let mut config = test_config();
    config.sessions.push_queue = 8;
    // This test floods on purpose.
    config.sessions.rate_limit_burst = 1_000_000;
    config.admission.messages_per_minute_per_ip = 1_000_000;
    config.admission.rendezvous_entries_per_minute_per_ip = 1_000_000;
    let server = TestServer::start_with(config).await;
    let mut sleeper = server.connect().await;
    sleeper
        .request(json!({"type": "register_rendezvous", "peerId": "sleeper", "hourlyTokens": ["t"]}))
        .await;
    // From here on the sleeper reads nothing; every registration below pushes it a match.
    let mut busy = server.connect().await;
    let long_relay = "r".repeat(128);
    let registration = json!({"type": "register_rendezvous", "peerId": "busy",
                              "hourlyTokens": ["t"], "relayId": long_relay});
    // Enough pushes to fill the socket buffers and then the queue, sent in pipelined batches.
    for _ in 0..100 {
        for _ in 0..500 {
            busy.send_json(&registration).await;
        }
        for _ in 0..500 {
            assert_eq!(busy.recv().await["type"], "rendezvous_result");
        }
        if server.health().await["sessions"] == 1 {
            break;
        }
    }
    server.wait_for_sessions(1).await;
    assert_eq!(busy.request(json!({"type": "ping"})).await["type"], "pong");
    drop(sleeper);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_sessions_with_going_away() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let closing = tokio::spawn(async move { client.closed().await });
    server.stop().await;
    assert_eq!(closing.await.unwrap(), Some(1001));
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    // After CBOR traffic, the refusal of a text frame is still JSON.
    client.send_cbor(&json!({"type": "ping"})).await;
    client.recv_binary().await;
    let frame = Frame::message(vec![0xff, 0xfe, b'{'], OpCode::Data(Data::Text), true);
    client.send_raw(Message::Frame(frame)).await;
    assert_eq!(client.recv_text().await["code"], "malformed");
    assert_eq!(client.closed().await, Some(1007));
    server.stop().await;
}

/// Every kind of garbage gets its error reply, and the session keeps working afterwards.
#[tokio::test]
async fn hostile_input_gets_error_replies_and_the_session_survives() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let deep_json = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_cbor = {
        let mut bytes = vec![0xa1, 0x64, b't', b'y', b'p', b'e'];
        bytes.extend(std::iter::repeat_n(0x81, 5000));
        bytes.push(0x00);
        bytes
    };
    let many_points: Vec<String> = (0..10_000).map(|i| format!("p{i}")).collect();
    let cbor_with = |field: ciborium::Value| {
        let mut bytes = Vec::new();
        let map = ciborium::Value::Map(vec![
            ("type".into(), "register_rendezvous".into()),
            ("peerId".into(), "peer".into()),
            ("requestId".into(), "req-7".into()),
            ("deadDrop".into(), field),
        ]);
        ciborium::into_writer(&map, &mut bytes).unwrap();
        bytes
    };
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("{not json"), "malformed"),
        (Message::text("[1,2,3]"), "malformed"),
        (Message::text("\"just a string\""), "malformed"),
        (Message::text("{}"), "malformed"),
        (Message::text(r#"{"type": 7}"#), "malformed"),
        (
            Message::text(r#"{"type":"register_rendezvous","peerId":"p","dailyPoints":["a""#),
            "malformed",
        ),
        (Message::text(deep_json), "malformed"),
        (Message::binary(vec![0xff, 0x00, 0x13]), "malformed"),
        (Message::binary(vec![0xa2, 0x64, b't', b'y']), "malformed"),
        (Message::binary(deep_cbor), "malformed"),
        // {"x": <text with invalid UTF-8>}
        (
            Message::binary(vec![0xa1, 0x61, b'x', 0x63, 0xff, 0xfe, 0xfd]),
            "malformed",
        ),
        (
            Message::binary(cbor_with(ciborium::Value::Bytes(vec![1, 2, 3]))),
            "invalid_message",
        ),
        (
            Message::binary(cbor_with(ciborium::Value::Tag(0, Box::new("2026".into())))),
            "invalid_message",
        ),
        (
            // {"type": "ping", "x": undefined}
            Message::binary(b"\xa2\x64type\x64ping\x61x\xf7".to_vec()),
            "invalid_message",
        ),
        (
            // {"type": h'70696e67'}: a byte-string type is no text type.
            Message::binary(b"\xa1\x64type\x44ping".to_vec()),
            "malformed",
        ),
        (Message::text(r#"{"type":"teleport"}"#), "unknown_type"),
        (
            Message::text(r#"{"type":"register","peerId":5}"#),
            "invalid_message",
        ),
        (
            Message::text(r#"{"type":"register","peerId":"a b"}"#),
            "invalid_message",
        ),
        (
            Message::text(r#"{"type":"update_load","peerId":"x","connectedCount":"9"}"#),
            "invalid_message",
        ),
        (
            Message::text(r#"{"type":"get_relays","peerId":"x","count":1.5}"#),
            "invalid_message",
        ),
        (
            Message::text(r#"{"type":"register_rendezvous","peerId":"x","dailyPoints":"a"}"#),
            "invalid_message",
        ),
        (
            Message::text(r#"{"type":"register_rendezvous","peerId":"x","deadDrops":[1]}"#),
            "invalid_message",
        ),
        (
            Message::text(
                json!({"type": "register_rendezvous", "peerId": "x", "dailyPoints": many_points})
                    .to_string(),
            ),
            "invalid_message",
        ),
        (
            Message::text(r#"{"type":"update_load","peerId":"nobody","connectedCount":1}"#),
            "not_registered",
        ),
    ];
    for (message, expected_code) in cases {
        let shown = format!("{message:?}");
        client.send_raw(message).await;
        let reply = client.recv().await;
        assert_eq!(reply["type"], "error", "{shown:.200}");
        assert_eq!(reply["code"], expected_code, "{shown:.200} -> {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A large array in a field nobody reads is ignored; one of more values than a message may hold is
    // refused as too large, and the session goes on.
    let large: Vec<u32> = (0..10_000).collect();
    let reply = client
        .request(json!({"type": "ping", "requestId": "after", "junk": large}))
        .await;
    assert_eq!(reply, json!({"type": "pong", "requestId": "after"}));
    let huge: Vec<u32> = (0..40_000).collect();
    client
        .send_json(&json!({"type": "ping", "requestId": "huge", "junk": huge}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["code"], "too_large", "{reply}");
    let one_entry_maps = vec![json!({"a": 0}); 5000];
    client
        .send_cbor(&json!({"type": "offer", "target": "ABC234", "payload": one_entry_maps}))
        .await;
    let reply = client.recv().await;
    assert_eq!(reply["code"], "too_large", "{reply}");
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
    server.stop().await;
}

#[tokio::test]
async fn error_replies_keep_the_request_id() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let reply = client
        .request(json!({"type": "get_relays", "requestId": "r-9"}))
        .await;
    assert_eq!(reply["code"], "invalid_message");
    assert_eq!(reply["requestId"], "r-9");
    assert!(reply["message"].as_str().unwrap().contains("peerId"));
    let reply = client
        .request(json!({"type": "nope", "requestId": 3}))
        .await;
    assert_eq!(reply["code"], "unknown_type");
    assert_eq!(reply["requestId"], 3);
    let _: Value = reply;
    server.stop().await;
}

#[tokio::test]
async fn messages_over_the_rate_are_dropped_with_rate_limited() {
    let mut config = test_config();
    config.sessions.rate_limit_burst = 5;
    let server = TestServer::start_with(config).await;
    let mut client = server.connect().await;
    for _ in 0..5 {
        assert_eq!(
            client.request(json!({"type": "ping"})).await["type"],
            "pong"
        );
    }
    for _ in 0..3 {
        let reply = client
            .request(json!({"type": "ping", "requestId": 9}))
            .await;
        assert_eq!(reply["code"], "rate_limited");
        assert_eq!(reply["requestId"], 9);
    }
    server.clock.advance(Duration::from_secs(1));
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong",
        "the session stayed open and earned a message back"
    );
    server.stop().await;
}

/// A client written for the original JSON servers: pairing codes, snake_case rendezvous without a
/// relayId, pairing, SDP and ICE, pings; no requestIds, nothing but JSON text.
#[tokio::test]
async fn a_legacy_json_client_flow_works_unchanged() {
    let server = TestServer::start().await;
    let mut alice = server.connect().await;
    let mut bob = server.connect().await;
    for (client, code) in [(&mut alice, "ALCE77"), (&mut bob, "BBB777")] {
        let reply = client
            .request(json!({"type": "register", "pairingCode": code, "publicKey": PUBLIC_KEY}))
            .await;
        assert_eq!(
            reply,
            json!({"type": "registered", "pairingCode": code, "serverId": "test-server"})
        );
    }
    let reply = alice
        .request(json!({"type": "register_rendezvous", "peer_id": "ALCE77",
                        "daily_points": ["day"], "hourly_tokens": ["hour"], "dead_drop": "for-bob"}))
        .await;
    assert_eq!(reply["type"], "rendezvous_result");
    let reply = bob
        .request(json!({"type": "register_rendezvous", "peer_id": "BBB777",
                        "daily_points": ["day"], "hourly_tokens": ["hour"]}))
        .await;
    assert_eq!(reply["liveMatches"][0]["peerId"], "ALCE77");
    assert_eq!(reply["deadDrops"][0]["deadDrop"], "for-bob");
    assert_eq!(alice.recv_text().await["type"], "rendezvous_match");

    // Pairing: no reply to the request itself, as the legacy servers did.
    bob.send_json(&json!({"type": "pair_request", "targetCode": "ALCE77"}))
        .await;
    let incoming = alice.recv_text().await;
    assert_eq!(incoming["type"], "pair_incoming");
    assert_eq!(incoming["fromCode"], "BBB777");
    let matched = alice
        .request(json!({"type": "pair_response", "targetCode": "BBB777", "accepted": true}))
        .await;
    assert_eq!(matched["isInitiator"], false);
    let matched = bob.recv_text().await;
    assert_eq!(matched["type"], "pair_matched");
    assert_eq!(matched["isInitiator"], true);

    // SDP and ICE, then the 30-second ping.
    bob.send_json(
        &json!({"type": "offer", "target": "ALCE77", "payload": {"type": "offer", "sdp": "v=0"}}),
    )
    .await;
    bob.send_json(&json!({"type": "ice_candidate", "target": "ALCE77",
                          "payload": {"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host"}}))
        .await;
    assert_eq!(
        alice.recv_text().await,
        json!({"type": "offer", "from": "BBB777", "payload": {"type": "offer", "sdp": "v=0"}})
    );
    assert_eq!(alice.recv_text().await["type"], "ice_candidate");
    alice
        .send_json(&json!({"type": "answer", "target": "BBB777", "payload": {"type": "answer", "sdp": "v=0"}}))
        .await;
    assert_eq!(bob.recv_text().await["from"], "ALCE77");
    assert_eq!(
        bob.request(json!({"type": "ping"})).await,
        json!({"type": "pong"})
    );
    server.stop().await;
}

/// A payload just under the message limit in CBOR can grow six times as JSON; it still reaches a JSON
/// client whole.
#[tokio::test]
async fn a_large_forwarded_payload_reaches_a_json_client_whole() {
    let server = TestServer::start().await;
    let mut sender = server.connect().await;
    let mut receiver = server.connect().await;
    sender
        .request(json!({"type": "register", "pairingCode": "SNDR22", "publicKey": PUBLIC_KEY}))
        .await;
    receiver
        .request(json!({"type": "register", "pairingCode": "RCVR22", "publicKey": PUBLIC_KEY}))
        .await;
    let payload = "\u{1}".repeat(200_000);
    sender
        .send_cbor(&json!({"type": "offer", "target": "RCVR22", "payload": payload}))
        .await;
    let offer = receiver.recv_text().await;
    assert_eq!(offer["from"], "SNDR22");
    assert_eq!(offer["payload"].as_str().map(str::len), Some(200_000));
    assert_eq!(
        receiver.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
    server.stop().await;
}

#[tokio::test]
async fn connections_that_never_finish_their_http_head_are_limited_per_address() {
    use tokio::io::AsyncReadExt;
    let mut config = test_config();
    config.admission.max_handshakes_per_ip = 2;
    let server = TestServer::start_with(config).await;
    let silent: Vec<_> =
        futures_util::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(server.addr)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    // The third from the same address is closed at once, without a word.
    let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(PATIENCE, third.read(&mut byte))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Another address is served as if nothing happened.
    let bystander = tokio::net::TcpSocket::new_v4().unwrap();
    bystander.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = bystander.connect(server.addr).await.unwrap();
    let mut client = Client::over(stream).await;
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
    // A silent connection that goes gives its place back.
    drop(silent);
    tokio::time::timeout(PATIENCE, async {
        // The health request is a connection in progress itself.
        while server.health().await["handshakes"] != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("handshakes given back");
    let mut again = server.connect().await;
    assert_eq!(again.request(json!({"type": "ping"})).await["type"], "pong");
    server.stop().await;
}

/// The texts clients show people are the Zajel servers' (PROTOCOL 2.9).
#[tokio::test]
async fn error_texts_are_the_ones_zajel_clients_show() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let mut other = server.connect().await;
    client.send_raw(Message::text("{not json")).await;
    let reply = client.recv().await;
    assert_eq!(
        (reply["code"].as_str(), reply["message"].as_str()),
        (
            Some("malformed"),
            Some("Invalid message format: JSON parse error")
        )
    );
    let expectations = [
        (
            json!({"type": "teleport"}),
            "unknown_type",
            "Unknown message type: teleport",
        ),
        (
            json!({"type": "offer", "target": "ABC234", "payload": {}}),
            "not_registered",
            "Not registered. Send register message first.",
        ),
        (
            json!({"type": "update_load", "connectedCount": 1}),
            "invalid_message",
            "Missing required field: peerId",
        ),
        (
            json!({"type": "register", "pairingCode": "ABC23O", "publicKey": PUBLIC_KEY}),
            "invalid_message",
            "Invalid pairing code format",
        ),
        (
            json!({"type": "register", "pairingCode": "ABC234", "publicKey": "AAAA"}),
            "invalid_message",
            "Invalid public key length",
        ),
    ];
    for (request, code, text) in expectations {
        let reply = client.request(request.clone()).await;
        assert_eq!(reply["code"], code, "{request}");
        assert_eq!(reply["message"], text, "{request}");
    }
    other
        .request(json!({"type": "register", "peerId": "taken-id"}))
        .await;
    let reply = client
        .request(json!({"type": "register", "peerId": "taken-id"}))
        .await;
    assert_eq!(
        reply["message"],
        "Peer ID already in use by another connection"
    );
    client
        .request(json!({"type": "register", "pairingCode": "ABC234", "publicKey": PUBLIC_KEY}))
        .await;
    let reply = client
        .request(json!({"type": "offer", "target": "ZZZ234", "payload": {}}))
        .await;
    assert_eq!(
        (reply["code"].as_str(), reply["message"].as_str()),
        (Some("peer_not_found"), Some("Peer not found: ZZZ234"))
    );
    let reply = client
        .request(json!({"type": "update_load", "peerId": "someone-else", "connectedCount": 1}))
        .await;
    assert_eq!(reply["message"], "peerId mismatch with registered identity");
    let reply = other
        .request(json!({"type": "register", "pairingCode": "ABC234", "publicKey": PUBLIC_KEY}))
        .await;
    assert_eq!(
        reply["message"],
        "Pairing code already in use. Please reconnect with a new code."
    );
    server.stop().await;
}
