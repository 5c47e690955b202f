//! The names a session holds: acting only for them, replacing them, and pushes to their holder.

use super::*;

#[tokio::test]
async fn a_session_acts_only_for_its_own_ids() {
    let fixture = Fixture::new();
    let session = fixture.open().await;
    session
        .request(json!({"type": "register", "peerId": "me"}))
        .await;
    for request in [
        json!({"type": "update_load", "peerId": "other", "connectedCount": 1}),
        json!({"type": "get_relays", "peerId": "other"}),
        json!({"type": "heartbeat", "peerId": "other"}),
        json!({"type": "register_rendezvous", "peerId": "other", "hourlyTokens": ["t"]}),
        json!({"type": "register", "peerId": "other"}),
    ] {
        let reply = session.request(request.clone()).await;
        assert_eq!(reply["code"], "peer_id_mismatch", "{request}");
    }
    assert_eq!(
        session
            .request(json!({"type": "heartbeat", "peerId": "me"}))
            .await["type"],
        "heartbeat_ack"
    );
}

#[tokio::test]
async fn a_second_pairing_code_replaces_and_frees_the_first() {
    let fixture = Fixture::new();
    let first = fixture.open().await;
    let second = fixture.open().await;
    first
        .request(json!({"type": "register", "pairingCode": "AAAAAA", "publicKey": PUBLIC_KEY}))
        .await;
    let reply = first
        .request(json!({"type": "register", "pairingCode": "BBBBBB", "publicKey": PUBLIC_KEY}))
        .await;
    assert_eq!(reply["pairingCode"], "BBBBBB");
    let reply = second
        .request(json!({"type": "register", "pairingCode": "AAAAAA", "publicKey": PUBLIC_KEY}))
        .await;
    assert_eq!(reply["type"], "registered", "the old code was freed");
    let reply = second
        .request(json!({"type": "register", "pairingCode": "BBBBBB", "publicKey": PUBLIC_KEY}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "code_collision",
               "message": "Pairing code already in use. Please reconnect with a new code."})
    );
}

#[tokio::test]
async fn a_replaced_pairing_code_takes_its_hourly_tokens_with_it() {
    let fixture = Fixture::new();
    let phone = fixture.open().await;
    let other = fixture.open().await;
    phone
        .request(json!({"type": "register", "pairingCode": "AAAAAA", "publicKey": PUBLIC_KEY}))
        .await;
    phone
        .request(
            json!({"type": "register_rendezvous", "peerId": "AAAAAA", "hourlyTokens": ["t"],
                         "dailyPoints": ["d"], "deadDrop": "kept"}),
        )
        .await;
    phone
        .request(json!({"type": "register", "pairingCode": "BBBBBB", "publicKey": PUBLIC_KEY}))
        .await;
    let reply = other
        .request(json!({"type": "register_rendezvous", "peerId": "other",
                                     "hourlyTokens": ["t"], "dailyPoints": ["d"]}))
        .await;
    assert_eq!(reply["liveMatches"], json!([]));
    assert_eq!(
        reply["deadDrops"][0]["peerId"], "AAAAAA",
        "daily points stay"
    );
}

#[tokio::test]
async fn a_pairing_code_is_an_identity_for_peer_id_checks() {
    let fixture = Fixture::new();
    let session = fixture.open().await;
    session
        .request(json!({"type": "register", "pairingCode": "ABC234", "publicKey": PUBLIC_KEY}))
        .await;
    let reply = session
        .request(json!({"type": "register_rendezvous", "peerId": "ABC234", "hourlyTokens": ["t"]}))
        .await;
    assert_eq!(reply["type"], "rendezvous_result");
    let reply = session
        .request(json!({"type": "register_rendezvous", "peerId": "someone", "hourlyTokens": ["t"]}))
        .await;
    assert_eq!(reply["code"], "peer_id_mismatch");
}

#[tokio::test]
async fn pushes_go_to_the_holder_of_the_name_whichever_role() {
    let fixture = Fixture::new();
    let mut phone = fixture.open().await;
    let browser = fixture.open().await;
    let reply = phone
        .request(json!({"type": "register", "pairingCode": "PHNE22", "publicKey": PUBLIC_KEY}))
        .await;
    assert_eq!(reply["type"], "registered", "{reply}");
    phone
        .request(json!({"type": "register_rendezvous", "peerId": "PHNE22", "hourlyTokens": ["t"]}))
        .await;
    browser
        .request(json!({"type": "register_rendezvous", "peerId": "browser", "hourlyTokens": ["t"]}))
        .await;
    assert_eq!(
        phone.next_push().await.unwrap()["match"]["peerId"],
        "browser"
    );
}

#[tokio::test]
async fn a_code_freed_by_its_session_ending_stays_with_its_key_for_two_minutes() {
    let fixture = Fixture::new();
    let phone = fixture.open().await;
    let register =
        |key: &str| json!({"type": "register", "pairingCode": "PHNE22", "publicKey": key});
    phone.request(register(PUBLIC_KEY)).await;
    drop(phone);
    let thief = fixture.open().await;
    assert_eq!(
        thief.request(register(OTHER_KEY)).await["type"],
        "code_collision",
        "nobody else takes it while its owner reconnects"
    );
    let returning = fixture.open().await;
    assert_eq!(
        returning.request(register(PUBLIC_KEY)).await["type"],
        "registered",
        "its owner gets it back"
    );
    drop(returning);
    // Released (and reserved again) before the clock moves on.
    fixture.sessions.state().settled().await.unwrap();
    fixture.clock.advance(Duration::from_secs(121));
    fixture.sessions.state().run_pairing_timers().await.unwrap();
    assert_eq!(
        thief.request(register(OTHER_KEY)).await["type"],
        "registered",
        "free for anyone once the reservation ended"
    );
}

#[tokio::test]
async fn a_session_ending_while_its_registration_is_under_way_leaves_no_name_behind() {
    use futures_util::FutureExt;
    let fixture = Fixture::with_config({
        let mut config = Config::default();
        config.identity.server_id = Some("srv".into());
        config.admission.rendezvous_entries_per_minute_per_ip = 1_000_000;
        config
    });
    let phone = fixture.open().await;
    // Another session keeps the shared state busy for a while with a large registration ...
    let busy = fixture.open().await;
    let points: Vec<String> = (0..1000).map(|i| format!("p{i}")).collect();
    let large = json!({"type": "register_rendezvous", "peerId": "busy", "dailyPoints": points,
                       "hourlyTokens": points});
    let large = busy.session.handle(
        decode(large.to_string().as_bytes(), Encoding::Json),
        Encoding::Json,
    );
    let mut large = std::pin::pin!(large);
    assert!(futures_util::poll!(large.as_mut()).is_pending());
    // ... so that this registration is sent to it, and its session goes before the answer comes (its
    // transport closed it, say).
    let register = json!({"type": "register", "pairingCode": "PHNE22", "publicKey": PUBLIC_KEY});
    let under_way = phone
        .session
        .handle(
            decode(register.to_string().as_bytes(), Encoding::Json),
            Encoding::Json,
        )
        .now_or_never();
    assert!(under_way.is_none(), "the answer was not there yet");
    drop(phone);
    large.await;
    fixture.sessions.state().settled().await.unwrap();
    fixture.clock.advance(Duration::from_secs(121));
    fixture.sessions.state().run_pairing_timers().await.unwrap();
    let other = fixture.open().await;
    let reply = other
        .request(json!({"type": "register", "pairingCode": "PHNE22", "publicKey": OTHER_KEY}))
        .await;
    assert_eq!(
        reply["type"], "registered",
        "the code was released with its session: {reply}"
    );
}
