//! The QUIC port end to end: raw QUIC (ALPN zajel/1) and WebTransport on one UDP port, sharing the
//! registries with WebSocket.

mod common;

use common::streams::{QuicClient, WebTransportClient, next_frame, recv_frame, send_frame};
use common::{PUBLIC_KEY, TestServer, http_get, test_config};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use wtransport::quinn;

#[tokio::test]
async fn quic_request_streams_answer_each_frame_in_order() {
    let server = TestServer::start().await;
    let client = QuicClient::connect(&server).await;
    let (mut send, mut recv) = client.connection.open_bi().await.unwrap();
    for id in 0..5 {
        send_frame(&mut send, &json!({"type": "ping", "requestId": id})).await;
    }
    send_frame(&mut send, &json!({"type": "nope", "requestId": "x"})).await;
    send.shutdown().await.unwrap();
    for id in 0..5 {
        assert_eq!(
            recv_frame(&mut recv).await,
            json!({"type": "pong", "requestId": id})
        );
    }
    let error = recv_frame(&mut recv).await;
    assert_eq!(error["code"], "unknown_type");
    assert_eq!(error["requestId"], "x");
    assert_eq!(
        next_frame(&mut recv).await,
        None,
        "finished after the last answer"
    );
    server.stop().await;
}

#[tokio::test]
async fn many_request_streams_are_served_concurrently() {
    let server = TestServer::start().await;
    let client = QuicClient::connect(&server).await;
    let requests = (0..50).map(|id| {
        let client = &client;
        async move {
            client
                .request(&json!({"type": "ping", "requestId": id}))
                .await
        }
    });
    let replies = futures_util::future::join_all(requests).await;
    for (id, reply) in replies.iter().enumerate() {
        assert_eq!(reply["requestId"], id);
    }
    server.stop().await;
}

#[tokio::test]
async fn stream_errors_leave_the_session_and_server_healthy() {
    let mut config = test_config();
    config.transport.max_message_size = 4096;
    let server = TestServer::start_with(config).await;
    let client = QuicClient::connect(&server).await;

    // An oversized frame: refused from its length, answered with too_large.
    let (mut send, mut recv) = client.connection.open_bi().await.unwrap();
    send.write_all(&100_000u32.to_be_bytes()).await.unwrap();
    let reply = recv_frame(&mut recv).await;
    assert_eq!(reply["code"], "too_large");

    // Garbage CBOR: an error, and the same stream goes on.
    let (mut send, mut recv) = client.connection.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    assert_eq!(recv_frame(&mut recv).await["code"], "malformed");
    send_frame(&mut send, &json!({"type": "ping", "requestId": 1})).await;
    assert_eq!(recv_frame(&mut recv).await["type"], "pong");

    // CBOR outside the JSON data model.
    let mut bytes = vec![
        0xa2, 0x64, b't', b'y', b'p', b'e', 0x64, b'p', b'i', b'n', b'g',
    ];
    bytes.extend([0x61, b'x', 0x41, 0x00]);
    send.write_all(&(bytes.len() as u32).to_be_bytes())
        .await
        .unwrap();
    send.write_all(&bytes).await.unwrap();
    assert_eq!(recv_frame(&mut recv).await["code"], "invalid_message");

    assert_eq!(
        client.request(&json!({"type": "ping"})).await["type"],
        "pong"
    );
    let other = QuicClient::connect(&server).await;
    assert_eq!(
        other.request(&json!({"type": "ping"})).await["type"],
        "pong"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_quic_client_that_never_reads_its_pushes_is_closed() {
    let mut config = test_config();
    config.sessions.push_queue = 4;
    // This test floods on purpose.
    config.sessions.rate_limit_burst = 1_000_000;
    config.admission.messages_per_minute_per_ip = 1_000_000;
    config.admission.rendezvous_entries_per_minute_per_ip = 1_000_000;
    let server = TestServer::start_with(config).await;
    let sleeper = QuicClient::connect(&server).await;
    sleeper
        .request(
            &json!({"type": "register_rendezvous", "peerId": "sleeper", "hourlyTokens": ["t"]}),
        )
        .await;
    // The sleeper never reads `sleeper.pushes` again; its flow-control window and queue fill up.
    let busy = QuicClient::connect(&server).await;
    let registration = json!({"type": "register_rendezvous", "peerId": "busy",
                              "hourlyTokens": ["t"], "relayId": "r".repeat(128)});
    let (mut send, mut recv) = busy.connection.open_bi().await.unwrap();
    let mut close_reason = None;
    for _ in 0..20_000 {
        send_frame(&mut send, &registration).await;
        recv_frame(&mut recv).await;
        close_reason = sleeper.connection.close_reason();
        if close_reason.is_some() {
            break;
        }
    }
    match close_reason {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(2), "too slow");
        }
        other => panic!("the sleeper should be closed as too slow, not {other:?}"),
    }
    assert_eq!(busy.request(&json!({"type": "ping"})).await["type"], "pong");
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_session_limit_are_refused_before_their_handshake() {
    let mut config = test_config();
    config.admission.max_sessions_per_ip = 1;
    let server = TestServer::start_with(config).await;
    let admitted = QuicClient::connect(&server).await;
    let (_endpoint, connecting) =
        QuicClient::start_handshake(server.quic_addr, server.certificates.leaf_der());
    assert_refused(connecting).await;
    assert_eq!(
        admitted.request(&json!({"type": "ping"})).await["type"],
        "pong"
    );
    server.stop().await;
}

#[tokio::test]
async fn handshakes_in_progress_are_limited_per_address_apart_from_sessions() {
    let mut config = test_config();
    config.admission.max_handshakes_per_ip = 1;
    let server = TestServer::start_with(config).await;
    // A WebTransport connection that never sends its CONNECT stays in its handshake.
    let (_endpoint, stalled) = QuicClient::start_handshake_with_alpn(
        server.quic_addr,
        server.certificates.leaf_der(),
        b"h3",
    );
    let stalled = tokio::time::timeout(common::PATIENCE, stalled)
        .await
        .unwrap()
        .expect("its QUIC handshake completes");
    let (_endpoint, second) =
        QuicClient::start_handshake(server.quic_addr, server.certificates.leaf_der());
    assert_refused(second).await;
    stalled.close(quinn::VarInt::from_u32(0), b"bye");
    let client = tokio::time::timeout(common::PATIENCE, async {
        loop {
            let (endpoint, connecting) =
                QuicClient::start_handshake(server.quic_addr, server.certificates.leaf_der());
            if let Ok(connection) = connecting.await {
                break (endpoint, connection);
            }
        }
    })
    .await
    .expect("the address's handshake slot is given back");
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn under_many_handshakes_clients_prove_their_address_first() {
    let mut config = test_config();
    config.admission.handshakes_before_retry = 0;
    let server = TestServer::start_with(config).await;
    // Every handshake is then preceded by a Retry, which both clients follow.
    let quic = QuicClient::connect(&server).await;
    assert_eq!(quic.request(&json!({"type": "ping"})).await["type"], "pong");
    let webtransport = WebTransportClient::connect(&server).await;
    assert_eq!(
        webtransport.request(&json!({"type": "ping"})).await["type"],
        "pong"
    );
    assert_eq!(server.health().await["quicRetries"], 2, "one Retry each");
    server.stop().await;
}

#[tokio::test]
async fn a_quic_sessions_names_are_freed_when_it_ends() {
    let server = TestServer::start().await;
    let first = QuicClient::connect(&server).await;
    first
        .request(&json!({"type": "register", "peerId": "native-relay"}))
        .await;
    first.connection.close(quinn::VarInt::from_u32(0), b"bye");
    server.wait_for_sessions(0).await;
    let second = QuicClient::connect(&server).await;
    let reply = second
        .request(&json!({"type": "register", "peerId": "native-relay"}))
        .await;
    assert_eq!(reply["type"], "registered", "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_quic_sessions_with_code_0() {
    let server = TestServer::start().await;
    let client = QuicClient::connect(&server).await;
    server.stop().await;
    match tokio::time::timeout(common::PATIENCE, client.connection.closed())
        .await
        .unwrap()
    {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(0));
        }
        other => panic!("expected an application close, got {other:?}"),
    }
}

/// At shutdown a WebTransport session is closed in the session first (CLOSE_WEBTRANSPORT_SESSION with
/// code 0 and "shutting down"), and only then its connection. wtransport's client reports the same
/// session end either way (its `accept_bi` fails with the code and reason of whichever close came
/// first), but on the capsule it closes the QUIC connection itself, so its connection was closed
/// locally; on the server's QUIC close alone, it would have been closed by the peer.
#[tokio::test]
async fn shutdown_closes_webtransport_sessions_with_a_close_capsule() {
    let server = TestServer::start().await;
    let client = WebTransportClient::connect(&server).await;
    server.stop().await;
    let ended = tokio::time::timeout(common::PATIENCE, client.connection.accept_bi())
        .await
        .expect("the session ends in time");
    match ended {
        Err(wtransport::error::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.code(), wtransport::VarInt::from_u32(0));
            assert_eq!(close.reason(), b"shutting down");
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    assert_eq!(
        client.connection.closed().await,
        wtransport::error::ConnectionError::LocallyClosed,
        "the client closed the connection on the session's close, before the server closed it"
    );
}

/// PROTOCOL 2.6: the server sends QUIC PINGs at the ping interval, so QUIC and WebTransport clients that
/// send nothing themselves (quinn's clients have no keep-alive of their own) outlive the idle timeout.
#[tokio::test]
async fn keep_alives_hold_quiet_quic_and_webtransport_sessions() {
    const IDLE_SECS: u64 = 2;
    let mut config = test_config();
    config.transport.idle_timeout_secs = IDLE_SECS;
    config.transport.ping_interval_secs = 1;
    let server = TestServer::start_with(config).await;
    let quic = QuicClient::connect(&server).await;
    let webtransport = WebTransportClient::connect(&server).await;
    // (The number of PINGs received says nothing here: quinn's MTU probes are PINGs too.)
    let three_idle_timeouts = std::time::Duration::from_secs(3 * IDLE_SECS);
    let (quic_closed, webtransport_closed) = tokio::join!(
        tokio::time::timeout(three_idle_timeouts, quic.connection.closed()),
        tokio::time::timeout(
            three_idle_timeouts,
            webtransport.connection.quic_connection().closed()
        ),
    );
    assert!(quic_closed.is_err(), "QUIC closed: {quic_closed:?}");
    assert!(
        webtransport_closed.is_err(),
        "WebTransport closed: {webtransport_closed:?}"
    );
    let ping = json!({"type": "ping"});
    assert_eq!(quic.request(&ping).await["type"], "pong");
    assert_eq!(webtransport.request(&ping).await["type"], "pong");
    server.stop().await;
}

#[tokio::test]
async fn an_origin_allow_list_refuses_other_origins() {
    let mut config = test_config();
    config.transport.webtransport_origins = vec!["https://app.example".into()];
    let server = TestServer::start_with(config).await;
    let allowed = WebTransportClient::connect_with(&server, "/", Some("https://app.example")).await;
    assert!(allowed.is_ok(), "the listed origin is served");
    let refused =
        WebTransportClient::connect_with(&server, "/", Some("https://evil.example")).await;
    assert!(
        matches!(
            refused,
            Err(wtransport::error::ConnectingError::SessionRejected)
        ),
        "other origins are rejected (403)"
    );
    server.stop().await;
}

#[tokio::test]
async fn webtransport_serves_path_slash_only() {
    let server = TestServer::start().await;
    let client = WebTransportClient::connect(&server).await;
    assert_eq!(
        client
            .request(&json!({"type": "ping", "requestId": "wt"}))
            .await,
        json!({"type": "pong", "requestId": "wt"})
    );
    assert!(
        matches!(
            WebTransportClient::connect_with(&server, "/elsewhere", None).await,
            Err(wtransport::error::ConnectingError::SessionRejected)
        ),
        "other paths are rejected (404)"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_replaced_certificate_serves_new_sessions_and_keeps_established_ones() {
    let dir = std::env::temp_dir().join(format!("zajel-rotation-test-{}", std::process::id()));
    let now = std::time::SystemTime::now();
    let first = common::write_certificate_at(&dir, now);
    let mut config = test_config();
    config.tls.tls_cert = Some(dir.join("cert.pem"));
    config.tls.tls_key = Some(dir.join("key.pem"));
    let server = TestServer::start_with(config).await;
    let established = QuicClient::connect_to(server.quic_addr, first.cert.der().clone()).await;

    let second = common::write_certificate_at(&dir, now + std::time::Duration::from_secs(60));
    assert_eq!(
        server
            .certificates
            .refresh(std::time::SystemTime::now())
            .unwrap(),
        zajel_signal::tls::Refreshed::Replaced
    );

    assert_eq!(
        established.request(&json!({"type": "ping"})).await["type"],
        "pong",
        "the established session goes on"
    );
    let renewed = QuicClient::connect_to(server.quic_addr, second.cert.der().clone()).await;
    assert_eq!(
        renewed.request(&json!({"type": "ping"})).await["type"],
        "pong"
    );
    assert_eq!(server.certificates.leaf_der(), *second.cert.der());
    server.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn cert_hash_serves_the_certificates_sha256() {
    let server = TestServer::start().await;
    let response = http_get(server.addr, "/cert-hash").await;
    assert!(
        response
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{response}"
    );
    let body: serde_json::Value =
        serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD.encode(server.certificates.sha256());
    assert_eq!(
        body,
        json!({"algorithm": "sha-256", "value": expected, "values": [expected]}),
        "one certificate listed until a successor is announced"
    );
    server.stop().await;
}

/// A WebTransport client pairs with a WebSocket client, and they exchange an offer, an answer and 20 ICE
/// candidates each way, in order.
#[tokio::test]
async fn a_browser_and_a_phone_pair_and_signal_across_transports_in_order() {
    let server = TestServer::start().await;
    let mut browser = WebTransportClient::connect(&server).await;
    let mut phone = server.connect().await;
    browser
        .request(
            &json!({"type": "register", "pairingCode": "BRWSER", "publicKey": common::PUBLIC_KEY}),
        )
        .await;
    phone
        .request(
            json!({"type": "register", "pairingCode": "PHNE22", "publicKey": common::PUBLIC_KEY}),
        )
        .await;

    // They pair: the browser asks, the phone accepts.
    let reply = browser
        .request(&json!({"type": "pair_request", "targetCode": "PHNE22", "requestId": 1}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "ack", "for": "pair_request", "requestId": 1})
    );
    let incoming = phone.recv().await;
    assert_eq!(incoming["type"], "pair_incoming");
    assert_eq!(incoming["fromCode"], "BRWSER");
    let matched = phone
        .request(json!({"type": "pair_response", "targetCode": "BRWSER", "accepted": true}))
        .await;
    assert_eq!(matched["type"], "pair_matched");
    assert_eq!(matched["isInitiator"], false);
    let matched = recv_frame(&mut browser.pushes).await;
    assert_eq!(
        matched,
        json!({"type": "pair_matched", "peerCode": "PHNE22", "peerPublicKey": common::PUBLIC_KEY,
               "isInitiator": true})
    );

    // The browser sends everything on one stream: each frame is acknowledged, in order.
    let (mut send, mut recv) = browser.connection.open_bi().await.unwrap().await.unwrap();
    send_frame(
        &mut send,
        &json!({"type": "offer", "target": "PHNE22", "payload": {"sdp": "offer-sdp"}}),
    )
    .await;
    for i in 0..20 {
        send_frame(
            &mut send,
            &json!({"type": "ice_candidate", "target": "PHNE22",
                                      "payload": {"candidate": format!("b{i}")}}),
        )
        .await;
    }
    send.shutdown().await.unwrap();
    assert_eq!(
        recv_frame(&mut recv).await,
        json!({"type": "ack", "for": "offer"})
    );
    for _ in 0..20 {
        assert_eq!(recv_frame(&mut recv).await["for"], "ice_candidate");
    }
    assert_eq!(
        phone.recv().await,
        json!({"type": "offer", "from": "BRWSER", "payload": {"sdp": "offer-sdp"}})
    );
    for i in 0..20 {
        let candidate = phone.recv().await;
        assert_eq!(candidate["type"], "ice_candidate");
        assert_eq!(candidate["payload"]["candidate"], format!("b{i}"));
    }

    // The phone answers over WebSocket, which sends no acks: the next frame it gets is its pong.
    phone
        .send_json(&json!({"type": "answer", "target": "BRWSER", "payload": {"sdp": "answer-sdp"}}))
        .await;
    for i in 0..20 {
        phone
            .send_json(&json!({"type": "ice_candidate", "target": "BRWSER",
                               "payload": {"candidate": format!("p{i}")}}))
            .await;
    }
    assert_eq!(phone.request(json!({"type": "ping"})).await["type"], "pong");
    assert_eq!(
        recv_frame(&mut browser.pushes).await,
        json!({"type": "answer", "from": "PHNE22", "payload": {"sdp": "answer-sdp"}})
    );
    for i in 0..20 {
        let candidate = recv_frame(&mut browser.pushes).await;
        assert_eq!(candidate["payload"]["candidate"], format!("p{i}"));
    }
    server.stop().await;
}

/// Three peers on three transports share an hourly token and a daily point.
/// PROTOCOL 2.7: the web client's flat calls (here over WebSocket, JSON) and a phone's nested ones (over
/// raw QUIC, CBOR) cross both ways, each side reading the merged shape.
#[tokio::test]
async fn a_flat_web_call_and_a_nested_phone_call_cross_both_ways() {
    const CALL: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let server = TestServer::start().await;
    let mut web = server.connect().await;
    let mut phone = QuicClient::connect(&server).await;
    web.request(
        json!({"type": "register", "pairingCode": "WEBWEB", "publicKey": common::PUBLIC_KEY}),
    )
    .await;
    phone
        .request(
            &json!({"type": "register", "pairingCode": "PHNE22", "publicKey": common::PUBLIC_KEY}),
        )
        .await;

    // The web client calls, flat.
    web.send_json(
        &json!({"type": "call_offer", "targetId": "PHNE22", "callId": CALL,
                          "sdp": "v=0 web", "withVideo": true}),
    )
    .await;
    assert_eq!(
        recv_frame(&mut phone.pushes).await,
        json!({"type": "call_offer", "from": "WEBWEB",
               "payload": {"callId": CALL, "sdp": "v=0 web", "withVideo": true},
               "callId": CALL, "sdp": "v=0 web", "withVideo": true})
    );
    // The phone answers, nested; then each sends a candidate in its own shape.
    let reply = phone
        .request(&json!({"type": "call_answer", "target": "WEBWEB",
                         "payload": {"callId": CALL, "sdp": "v=0 phone"}}))
        .await;
    assert_eq!(reply, json!({"type": "ack", "for": "call_answer"}));
    assert_eq!(
        web.recv().await,
        json!({"type": "call_answer", "from": "PHNE22",
               "payload": {"callId": CALL, "sdp": "v=0 phone"}, "callId": CALL, "sdp": "v=0 phone"})
    );
    phone
        .request(&json!({"type": "call_ice", "target": "WEBWEB",
                         "payload": {"callId": CALL, "candidate": "candidate:phone"}}))
        .await;
    assert_eq!(web.recv().await["candidate"], "candidate:phone");
    web.send_json(
        &json!({"type": "call_ice", "targetId": "PHNE22", "callId": CALL,
                          "candidate": "candidate:web"}),
    )
    .await;
    assert_eq!(
        recv_frame(&mut phone.pushes).await["payload"]["candidate"],
        "candidate:web"
    );

    // The phone calls back, nested; the web client declines, flat.
    let call_back = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    phone
        .request(&json!({"type": "call_offer", "target": "WEBWEB",
                         "payload": {"callId": call_back, "sdp": "v=0 again", "withVideo": false}}))
        .await;
    let offer = web.recv().await;
    assert_eq!(
        (
            &offer["callId"],
            &offer["withVideo"],
            &offer["payload"]["sdp"]
        ),
        (&json!(call_back), &json!(false), &json!("v=0 again"))
    );
    web.send_json(
        &json!({"type": "call_reject", "targetId": "PHNE22", "callId": call_back,
                          "reason": "busy"}),
    )
    .await;
    assert_eq!(
        recv_frame(&mut phone.pushes).await,
        json!({"type": "call_reject", "from": "WEBWEB",
               "payload": {"callId": call_back, "reason": "busy"}, "callId": call_back,
               "reason": "busy"})
    );
    server.stop().await;
}

#[tokio::test]
async fn three_transports_share_one_set_of_registries() {
    let server = TestServer::start().await;
    let mut quic = QuicClient::connect(&server).await;
    let mut webtransport = WebTransportClient::connect(&server).await;
    let mut websocket = server.connect().await;

    let reply = quic
        .request(&json!({"type": "register_rendezvous", "peerId": "native", "relayId": "relay-q",
                         "hourlyTokens": ["hour"], "dailyPoints": ["day"], "deadDrop": "from-quic"}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "rendezvous_result", "liveMatches": [], "deadDrops": []})
    );

    let reply = webtransport
        .request(
            &json!({"type": "register_rendezvous", "peerId": "browser", "relayId": "relay-w",
                         "hourlyTokens": ["hour"], "dailyPoints": ["day"], "deadDrop": "from-wt"}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"type": "rendezvous_result",
               "liveMatches": [{"peerId": "native", "relayId": "relay-q", "meetingPoint": "hour"}],
               "deadDrops": [{"peerId": "native", "deadDrop": "from-quic", "relayId": "relay-q",
                              "meetingPoint": "day"}]})
    );
    assert_eq!(
        recv_frame(&mut quic.pushes).await,
        json!({"type": "rendezvous_match",
               "match": {"peerId": "browser", "relayId": "relay-w", "meetingPoint": "hour"}})
    );

    let reply = websocket
        .request(json!({"type": "register_rendezvous", "peer_id": "phone",
                        "hourly_tokens": ["hour"], "daily_points": ["day"]}))
        .await;
    let mut live: Vec<String> = reply["liveMatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["peerId"].as_str().unwrap().to_owned())
        .collect();
    live.sort();
    assert_eq!(live, ["browser", "native"]);
    let mut drops: Vec<(String, String)> = reply["deadDrops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["peerId"].as_str().unwrap().to_owned(),
                d["deadDrop"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    drops.sort();
    assert_eq!(
        drops,
        [
            ("browser".to_owned(), "from-wt".to_owned()),
            ("native".to_owned(), "from-quic".to_owned())
        ]
    );
    for pushes in [
        recv_frame(&mut quic.pushes).await,
        recv_frame(&mut webtransport.pushes).await,
    ] {
        assert_eq!(
            pushes,
            json!({"type": "rendezvous_match",
                   "match": {"peerId": "phone", "relayId": "", "meetingPoint": "hour"}})
        );
    }
    // A value from a CBOR client reaches a JSON client intact.
    let payload = "ünïcödé ✓ \"quoted\" \\ \u{1F600}";
    quic.request(&json!({"type": "register_rendezvous", "peerId": "native",
                         "dailyPoints": ["day2"], "deadDrop": payload}))
        .await;
    let reply = websocket
        .request(json!({"type": "register_rendezvous", "peerId": "phone", "dailyPoints": ["day2"]}))
        .await;
    assert_eq!(reply["deadDrops"][0]["deadDrop"], payload);
    server.stop().await;
}

/// The handshake ends in CONNECTION_REFUSED, at the server's first answer.
async fn assert_refused(connecting: quinn::Connecting) {
    match tokio::time::timeout(common::PATIENCE, connecting)
        .await
        .unwrap()
    {
        Err(quinn::ConnectionError::ConnectionClosed(close)) => {
            assert_eq!(
                close.error_code,
                quinn::TransportErrorCode::CONNECTION_REFUSED
            );
        }
        other => panic!("expected CONNECTION_REFUSED, got {other:?}"),
    }
}

#[tokio::test]
async fn stats_count_sessions_by_transport_as_the_zajel_servers_publish() {
    let server = TestServer::start().await;
    let mut web = server.connect().await;
    let registered = web
        .request(json!({"type": "register", "pairingCode": "ABCDE2", "publicKey": PUBLIC_KEY}))
        .await;
    assert_eq!(registered["type"], "registered");
    let quic = QuicClient::connect(&server).await;
    let relay = quic
        .request(&json!({"type": "register", "peerId": "relay-1", "maxConnections": 5}))
        .await;
    assert_eq!(relay["type"], "registered", "{relay}");
    let webtransport = WebTransportClient::connect(&server).await;
    assert_eq!(
        webtransport.request(&json!({"type": "ping"})).await["type"],
        "pong"
    );

    let (status, stats) = server.get_json("/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["serverId"], "test-server");
    assert_eq!(stats["connections"], 3);
    assert_eq!(stats["signalingConnections"], 1);
    assert_eq!(stats["activeCodes"], 1);
    assert_eq!(stats["relayConnections"], 1);
    assert_eq!(
        stats["sessionsByTransport"],
        json!({"websocket": 1, "quic": 1, "webtransport": 1})
    );
    assert!(stats["uptime"].as_f64().is_some_and(|uptime| uptime >= 0.0));
    assert!(stats.get("endpoint").is_some() && stats.get("region").is_some());
    // What the status page draws from: totals for rates, the certificate, the limits.
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(stats["messagesReceived"], 3, "{stats}");
    assert_eq!(stats["errorsSent"], 0, "{stats}");
    let expires_at = stats["certificate"]["expiresAt"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (12 * 86_400..13 * 86_400).contains(&(expires_at - now)),
        "{stats}"
    );
    assert_eq!(stats["limits"]["maxSessions"], 100_000, "{stats}");
    assert_eq!(stats["limits"]["maxMessageSize"], 262_144, "{stats}");

    drop(quic);
    server.wait_for_sessions(2).await;
    let (_, stats) = server.get_json("/stats").await;
    assert_eq!(
        stats["sessionsByTransport"],
        json!({"websocket": 1, "quic": 0, "webtransport": 1})
    );
    // The session's names are given back by the state's thread, just after the session is gone.
    tokio::time::timeout(common::PATIENCE, async {
        while server.get_json("/stats").await.1["relayConnections"] != 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the relay id released");

    let health = server.health().await;
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime"].is_number());
    assert_eq!(
        server.get_json("/ready").await,
        (200, json!({"ready": true}))
    );
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_what_every_transport_does() {
    let server = TestServer::start().await;
    let mut alice = server.connect().await;
    let mut bob = server.connect().await;
    for (client, code) in [(&mut alice, "ALCE22"), (&mut bob, "BBBBB2")] {
        let registered = client
            .request(json!({"type": "register", "pairingCode": code, "publicKey": PUBLIC_KEY}))
            .await;
        assert_eq!(registered["type"], "registered");
    }
    alice.send_cbor(&json!({"type": "ping"})).await;
    assert_eq!(alice.recv().await["type"], "pong");
    let unknown = alice.request(json!({"type": "teleport"})).await;
    assert_eq!(unknown["code"], "unknown_type");
    alice
        .send_json(&json!({"type": "pair_request", "targetCode": "BBBBB2"}))
        .await;
    assert_eq!(bob.recv().await["type"], "pair_incoming");
    bob.send_json(&json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": false}))
        .await;
    assert_eq!(alice.recv().await["type"], "pair_rejected");

    let mut webtransport = WebTransportClient::connect(&server).await;
    webtransport
        .request(&json!({"type": "register_rendezvous", "peerId": "browser",
                         "hourlyTokens": ["hour"], "dailyPoints": ["day"], "deadDrop": "sealed"}))
        .await;
    let quic = QuicClient::connect(&server).await;
    let relay = quic
        .request(&json!({"type": "register", "peerId": "relay-1", "maxConnections": 5}))
        .await;
    assert_eq!(relay["type"], "registered", "{relay}");
    let found = quic
        .request(&json!({"type": "register_rendezvous", "peerId": "relay-1",
                         "hourlyTokens": ["hour"], "dailyPoints": ["day"]}))
        .await;
    assert_eq!(found["liveMatches"].as_array().unwrap().len(), 1);
    assert_eq!(found["deadDrops"].as_array().unwrap().len(), 1);
    assert_eq!(
        recv_frame(&mut webtransport.pushes).await["type"],
        "rendezvous_match"
    );
    let relays = webtransport
        .request(&json!({"type": "get_relays", "peerId": "browser", "count": 5}))
        .await;
    assert_eq!(relays["relays"].as_array().unwrap().len(), 1);
    assert!(
        http_get(server.addr, "/not-websocket")
            .await
            .starts_with("HTTP/1.1 426")
    );
    drop(quic);
    server.wait_for_sessions(3).await;

    let metrics = server.metrics().await;
    let value = |series: &str| -> f64 {
        *metrics
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing in {metrics:#?}"))
    };
    for (series, expected) in [
        (r#"zajel_sessions_open{transport="websocket"}"#, 2.0),
        (r#"zajel_sessions_open{transport="webtransport"}"#, 1.0),
        (r#"zajel_sessions_open{transport="quic"}"#, 0.0),
        (r#"zajel_sessions_opened_total{transport="quic"}"#, 1.0),
        (
            r#"zajel_sessions_closed_total{reason="client_closed",transport="quic"}"#,
            1.0,
        ),
        (
            r#"zajel_messages_received_total{encoding="json",type="register"}"#,
            2.0,
        ),
        (
            r#"zajel_messages_received_total{encoding="cbor",type="register"}"#,
            1.0,
        ),
        (
            r#"zajel_messages_received_total{encoding="cbor",type="ping"}"#,
            1.0,
        ),
        (
            r#"zajel_messages_received_total{encoding="json",type="other"}"#,
            1.0,
        ),
        (
            r#"zajel_messages_received_total{encoding="cbor",type="register_rendezvous"}"#,
            2.0,
        ),
        (r#"zajel_errors_sent_total{code="unknown_type"}"#, 1.0),
        (r#"zajel_errors_sent_total{code="peer_not_found"}"#, 0.0),
        (
            r#"zajel_introductions_total{kind="pair",outcome="requested"}"#,
            1.0,
        ),
        (
            r#"zajel_introductions_total{kind="pair",outcome="rejected"}"#,
            1.0,
        ),
        (
            r#"zajel_introductions_total{kind="pair",outcome="matched"}"#,
            0.0,
        ),
        ("zajel_rendezvous_matches_total", 1.0),
        ("zajel_dead_drops_returned_total", 1.0),
        ("zajel_relays_listed_total", 1.0),
        (
            r#"zajel_handshakes_failed_total{stage="websocket_upgrade"}"#,
            1.0,
        ),
        (r#"zajel_registry_entries{registry="pairing_codes"}"#, 2.0),
        (r#"zajel_registry_entries{registry="daily_points"}"#, 1.0),
        (r#"zajel_registry_entries{registry="dead_drops"}"#, 1.0),
        // The QUIC client's hourly token and relay listing went with its session.
        (r#"zajel_registry_entries{registry="hourly_tokens"}"#, 1.0),
        (r#"zajel_registry_entries{registry="relays"}"#, 0.0),
        (
            r#"zajel_request_duration_seconds_count{type="register_rendezvous"}"#,
            2.0,
        ),
        (
            &format!(
                r#"zajel_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ] {
        assert_eq!(value(series), expected, "{series}");
    }
    // server_info for each of the four sessions; pair_incoming, pair_rejected, rendezvous_match.
    assert_eq!(value("zajel_pushes_queued_total"), 7.0);
    assert_eq!(value("zajel_pushes_sent_total"), 7.0);
    // A development certificate: valid 13 days from an hour ago.
    let days_left = value("zajel_certificate_expires_in_seconds") / 86_400.0;
    assert!((12.9..=13.0).contains(&days_left), "{days_left}");
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_cpu_seconds_total") > 0.0);
    server.stop().await;
}

/// Log lines written by the current thread's subscriber (the test's runtime runs the server on it).
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_session_logs_in_a_span_naming_its_transport_with_ids_redacted() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start().await;
    let mut websocket = server.connect().await;
    let quic = QuicClient::connect(&server).await;
    let webtransport = WebTransportClient::connect(&server).await;
    let register =
        |code: &str| json!({"type": "register", "pairingCode": code, "publicKey": PUBLIC_KEY});
    assert_eq!(
        websocket.request(register("WSLGE2")).await["type"],
        "registered"
    );
    assert_eq!(
        quic.request(&register("QCLGE2")).await["type"],
        "registered"
    );
    assert_eq!(
        webtransport.request(&register("WTLGE2")).await["type"],
        "registered"
    );
    server.stop().await;

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    for code in ["WSLGE2", "QCLGE2", "WTLGE2"] {
        assert!(!text.contains(code), "{code} in clear in the log:\n{text}");
    }
    assert!(
        !text.contains("\"peer\":\"127.0.0.1"),
        "an address in clear:\n{text}"
    );
    let registered: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|event| event["fields"]["message"] == "pairing code registered")
        .collect();
    let mut transports: Vec<&str> = registered
        .iter()
        .map(|event| {
            let span = &event["span"];
            assert_eq!(span["name"], "session", "{event}");
            assert!(span["id"].is_u64(), "the session's number: {event}");
            let peer = span["peer"].as_str().unwrap();
            assert!(peer.starts_with('~') && peer.len() == 13, "{event}");
            let code = event["fields"]["code"].as_str().unwrap();
            assert!(code.starts_with('~'), "{event}");
            span["transport"].as_str().unwrap()
        })
        .collect();
    transports.sort_unstable();
    assert_eq!(transports, ["quic", "websocket", "webtransport"], "{text}");
}

/// Pings in flight on each session of the shutdown test: the server is always in the middle of some.
const PIPELINED: usize = 32;

/// Sends pings on one stream, keeping [`PIPELINED`] unanswered, until the stream ends; returns the number
/// of pongs. A write refused or a stream cut short ends it too: what counts is what was answered.
async fn ping_until_the_stream_ends<W, R>(
    mut send: W,
    mut recv: R,
    started: tokio::sync::mpsc::Sender<()>,
) -> u64
where
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    R: tokio::io::AsyncRead + Unpin,
{
    use zajel_signal::protocol::framing::{read_frame, write_frame};
    let ping = common::streams::cbor(&json!({"type": "ping"}));
    let (answered, mut may_send) = tokio::sync::mpsc::unbounded_channel::<()>();
    let writer = tokio::spawn(async move {
        for _ in 0..PIPELINED {
            if write_frame(&mut send, &ping).await.is_err() {
                return;
            }
        }
        while may_send.recv().await.is_some() {
            if write_frame(&mut send, &ping).await.is_err() {
                return;
            }
        }
    });
    let mut pongs = 0;
    let mut frame = Vec::new();
    while let Ok(true) = read_frame(&mut recv, 1 << 16, &mut frame).await {
        assert_eq!(common::cbor_to_json(&frame)["type"], "pong");
        pongs += 1;
        if pongs == 1 {
            started.send(()).await.unwrap();
        }
        let _ = answered.send(());
    }
    writer.abort();
    pongs
}

#[tokio::test]
async fn shutdown_under_load_answers_what_was_read_and_closes_every_session() {
    const EACH: usize = 8;
    let mut config = test_config();
    config.sessions.rate_limit_burst = 1_000_000;
    config.sessions.rate_limit_per_minute = 1_000_000;
    config.admission.messages_per_minute_per_ip = 10_000_000;
    let server = TestServer::start_with(config).await;
    let (started_tx, mut started) = tokio::sync::mpsc::channel(3 * EACH);
    let mut quic_clients = tokio::task::JoinSet::new();
    let mut websocket_clients = tokio::task::JoinSet::new();
    for _ in 0..EACH {
        let quic = QuicClient::connect(&server).await;
        let started = started_tx.clone();
        quic_clients.spawn(async move {
            let (send, recv) = quic.connection.open_bi().await.unwrap();
            let pongs = ping_until_the_stream_ends(send, recv, started).await;
            let closed = quic.connection.closed().await;
            let quinn::ConnectionError::ApplicationClosed(close) = closed else {
                panic!("closed with {closed:?}");
            };
            assert_eq!(
                (close.error_code.into_inner(), &close.reason[..]),
                (0, &b"shutting down"[..])
            );
            pongs
        });
        let webtransport = WebTransportClient::connect(&server).await;
        let started = started_tx.clone();
        quic_clients.spawn(async move {
            let (send, recv) = webtransport
                .connection
                .open_bi()
                .await
                .unwrap()
                .await
                .unwrap();
            let pongs = ping_until_the_stream_ends(send, recv, started).await;
            // The session's close (its capsule), after which the client closes the connection.
            match webtransport.connection.accept_bi().await {
                Err(wtransport::error::ConnectionError::ApplicationClosed(close)) => {
                    assert_eq!(close.code().into_inner(), 0);
                    assert_eq!(close.reason(), b"shutting down");
                }
                other => panic!("closed with {other:?}"),
            }
            pongs
        });
        let mut websocket = server.connect().await;
        let started = started_tx.clone();
        websocket_clients.spawn(async move {
            for _ in 0..PIPELINED {
                websocket.send_json(&json!({"type": "ping"})).await;
            }
            let mut pongs = 0;
            loop {
                match websocket.next().await {
                    common::Received::Message(pong) => {
                        assert_eq!(pong["type"], "pong");
                        pongs += 1;
                        if pongs == 1 {
                            started.send(()).await.unwrap();
                        }
                        websocket.send_json(&json!({"type": "ping"})).await;
                    }
                    common::Received::Closed(frame) => {
                        assert_eq!(frame.map(|frame| u16::from(frame.code)), Some(1001));
                        return pongs;
                    }
                }
            }
        });
    }
    for _ in 0..3 * EACH {
        started.recv().await.unwrap();
    }
    let metrics = server.metrics.clone();
    server.stop().await;
    let mut pongs = 0;
    for clients in [&mut quic_clients, &mut websocket_clients] {
        while let Some(answered) = clients.join_next().await {
            pongs += answered.unwrap();
        }
    }
    assert_eq!(
        pongs,
        metrics.messages_received_total(),
        "every ping the server read was answered, and the answer delivered"
    );
}

#[tokio::test]
async fn pairing_requests_that_time_out_are_counted() {
    let server = TestServer::start().await;
    let mut alice = server.connect().await;
    let mut bob = server.connect().await;
    for (client, code) in [(&mut alice, "ALCE22"), (&mut bob, "BBBBB2")] {
        let registered = client
            .request(json!({"type": "register", "pairingCode": code, "publicKey": PUBLIC_KEY}))
            .await;
        assert_eq!(registered["type"], "registered");
    }
    alice
        .send_json(&json!({"type": "pair_request", "targetCode": "BBBBB2"}))
        .await;
    assert_eq!(bob.recv().await["type"], "pair_incoming");
    server.clock.advance(std::time::Duration::from_secs(121));
    // The pairing timers run on the server's own tick.
    let timed_out = r#"zajel_introductions_total{kind="pair",outcome="timed_out"}"#;
    tokio::time::timeout(common::PATIENCE, async {
        while server.metrics().await[timed_out] != 1.0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the timeout counted");
    assert_eq!(
        server.metrics().await[r#"zajel_introductions_total{kind="link",outcome="timed_out"}"#],
        0.0
    );
    server.stop().await;
}
