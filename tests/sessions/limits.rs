//! What bounds a session: its push queue, the session limits, its message rate; request ids.

use super::*;

#[tokio::test]
async fn a_full_push_queue_signals_the_transport_to_close() {
    let fixture = Fixture::with_config({
        let mut config = Config::default();
        config.sessions.push_queue = 2;
        config
    });
    let sleeper = fixture.open().await;
    let buffers = sleeper.session.buffers().clone();
    sleeper
        .request(json!({"type": "register_rendezvous", "peerId": "sleeper", "hourlyTokens": ["t"]}))
        .await;
    let busy = fixture.open().await;
    for _ in 0..3 {
        busy.request(
            json!({"type": "register_rendezvous", "peerId": "busy", "hourlyTokens": ["t"]}),
        )
        .await;
    }
    tokio::time::timeout(Duration::from_secs(5), buffers.must_close())
        .await
        .expect("overflow signalled");
}

#[tokio::test]
async fn sessions_beyond_the_limits_are_refused() {
    let fixture = Fixture::with_config({
        let mut config = Config::default();
        config.admission.max_sessions = 3;
        config.admission.max_sessions_per_ip = 2;
        config
    });
    let first = fixture.open().await;
    let _second = fixture.open().await;
    assert_eq!(
        fixture
            .sessions
            .open(LOCALHOST, Transport::WebSocket, Encoding::Json)
            .err(),
        Some(OverCapacity)
    );
    let other_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (_third, _) = fixture
        .sessions
        .open(other_ip, Transport::WebSocket, Encoding::Json)
        .expect("another address has room");
    assert!(
        fixture
            .sessions
            .open(other_ip, Transport::WebSocket, Encoding::Json)
            .is_err(),
        "total limit"
    );
    drop(first);
    assert!(
        fixture
            .sessions
            .open(LOCALHOST, Transport::WebSocket, Encoding::Json)
            .is_ok()
    );
}

#[tokio::test]
async fn messages_over_the_rate_get_rate_limited_and_the_session_goes_on() {
    let fixture = Fixture::new();
    let session = fixture.open().await;
    for _ in 0..100 {
        assert_eq!(
            session.request(json!({"type": "ping"})).await["type"],
            "pong"
        );
    }
    let reply = session
        .request(json!({"type": "ping", "requestId": "over"}))
        .await;
    assert_eq!(reply["code"], "rate_limited");
    assert_eq!(reply["requestId"], "over");
    assert_eq!(
        session.request(json!({"not": "even a message"})).await["code"],
        "rate_limited",
        "every message counts, well-formed or not"
    );
    fixture.clock.advance(Duration::from_millis(600));
    assert_eq!(
        session.request(json!({"type": "ping"})).await["type"],
        "pong",
        "one earned back"
    );
    assert_eq!(
        session.request(json!({"type": "ping"})).await["code"],
        "rate_limited"
    );
}

#[tokio::test]
async fn ping_and_request_ids() {
    let fixture = Fixture::new();
    let session = fixture.open().await;
    assert_eq!(
        session
            .request(json!({"type": "ping", "requestId": "x"}))
            .await,
        json!({"type": "pong", "requestId": "x"})
    );
    assert_eq!(
        session
            .request(json!({"type": "heartbeat", "request_id": 5}))
            .await,
        json!({"type": "heartbeat_ack", "timestamp": 1_700_000_000_000u64, "requestId": 5})
    );
}
