//! The device-linking family through the session layer: link requests, answers and timeouts.

use super::*;

#[tokio::test]
async fn an_accepted_link_request_matches_the_web_client_and_the_phone() {
    let (_fixture, mut phone, mut web) = linking_fixture().await;
    let reply = web
        .request(json!({"type": "link_request", "linkCode": "PHNE33",
                                   "publicKey": WEB_KEY, "deviceName": "Firefox on Linux"}))
        .await;
    assert_eq!(reply, json!({"type": "ack", "for": "link_request"}));
    assert_eq!(
        phone.next_push().await,
        Some(
            json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY,
                    "deviceName": "Firefox on Linux", "webClientCode": "WEBWEB",
                    "expiresIn": 120000})
        )
    );
    let reply = phone
        .request(json!({"type": "link_response", "linkCode": "PHNE33",
                                     "accepted": true, "deviceId": "device-7"}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "link_matched", "linkCode": "PHNE33", "peerPublicKey": WEB_KEY,
               "isInitiator": false, "webClientCode": "WEBWEB", "deviceName": "Firefox on Linux"})
    );
    assert_eq!(
        web.next_push().await,
        Some(
            json!({"type": "link_matched", "linkCode": "PHNE33", "peerPublicKey": PUBLIC_KEY,
                    "isInitiator": true, "deviceId": "device-7"})
        )
    );
}

#[tokio::test]
async fn a_refused_link_request_tells_the_web_client() {
    let (_fixture, phone, mut web) = linking_fixture().await;
    web.request(json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}))
        .await;
    let reply = phone
        .request(json!({"type": "link_response", "linkCode": "PHNE33", "accepted": false}))
        .await;
    assert_eq!(reply, json!({"type": "ack", "for": "link_response"}));
    assert_eq!(
        web.next_push().await,
        Some(json!({"type": "link_rejected", "linkCode": "PHNE33"}))
    );
}

#[tokio::test]
async fn an_unanswered_link_request_times_out_for_both_sides() {
    let (fixture, mut phone, mut web) = linking_fixture().await;
    web.request(json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}))
        .await;
    phone.next_push().await;
    fixture.clock.advance(Duration::from_secs(120));
    assert_eq!(
        fixture
            .sessions
            .state()
            .run_pairing_timers()
            .await
            .unwrap()
            .events,
        1
    );
    for peer in [&mut phone, &mut web] {
        assert_eq!(
            peer.next_push().await,
            Some(json!({"type": "link_timeout", "linkCode": "PHNE33"}))
        );
    }
}

#[tokio::test]
async fn the_phone_is_told_at_once_when_the_web_client_leaves() {
    let (fixture, mut phone, web) = linking_fixture().await;
    web.request(json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}))
        .await;
    phone.next_push().await;
    drop(web);
    assert_eq!(
        phone.next_push().await,
        Some(json!({"type": "link_timeout", "linkCode": "PHNE33"}))
    );
    fixture.clock.advance(Duration::from_secs(200));
    assert_eq!(
        fixture
            .sessions
            .state()
            .run_pairing_timers()
            .await
            .unwrap()
            .events,
        0,
        "no timer is left behind"
    );
}

#[tokio::test]
async fn link_requests_and_answers_are_checked() {
    let (fixture, phone, web) = linking_fixture().await;
    let refused = json!({"type": "link_error", "error": "Link request could not be processed"});
    assert_eq!(
        web.request(json!({"type": "link_request", "linkCode": "NNNNN3", "publicKey": WEB_KEY}))
            .await,
        refused
    );
    let stranger = fixture.open().await;
    assert_eq!(
        stranger
            .request(json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}))
            .await["code"],
        "not_registered"
    );
    // Only the phone that owns the code may answer for it.
    web.request(json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}))
        .await;
    let reply = web
        .request(json!({"type": "link_response", "linkCode": "PHNE33", "accepted": true}))
        .await;
    assert_eq!(reply["code"], "invalid_message");
    let reply = phone
        .request(json!({"type": "link_response", "linkCode": "PHNE33", "accepted": true}))
        .await;
    assert_eq!(reply["type"], "link_matched");
    let reply = phone
        .request(json!({"type": "link_response", "linkCode": "PHNE33", "accepted": true}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "link_error", "error": "No pending link request"})
    );
}

/// Links the fixture's web client to its phone, and reads both sides' `link_matched`.
async fn link(phone: &mut Peer, web: &mut Peer) {
    web.request(json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}))
        .await;
    phone.next_push().await;
    let reply = phone
        .request(json!({"type": "link_response", "linkCode": "PHNE33", "accepted": true}))
        .await;
    assert_eq!(reply["type"], "link_matched");
    assert_eq!(web.next_push().await.unwrap()["type"], "link_matched");
}

const NO_TARGET: &str = "Missing required field: target";

#[tokio::test]
async fn linked_sessions_exchange_signals_without_a_target() {
    let (fixture, mut phone, mut web) = linking_fixture().await;
    let offer = json!({"type": "offer", "payload": {"type": "offer", "sdp": "v=0 web"}});
    let unlinked = web.request(offer.clone()).await;
    assert_eq!(
        (&unlinked["code"], &unlinked["message"]),
        (&json!("invalid_message"), &json!(NO_TARGET))
    );
    link(&mut phone, &mut web).await;

    assert_eq!(
        web.request(offer).await,
        json!({"type": "ack", "for": "offer"})
    );
    assert_eq!(
        phone.next_push().await,
        Some(json!({"type": "offer", "from": "WEBWEB",
                    "payload": {"type": "offer", "sdp": "v=0 web"}}))
    );
    phone
        .request(json!({"type": "answer", "payload": {"type": "answer", "sdp": "v=0 phone"}}))
        .await;
    assert_eq!(
        web.next_push().await,
        Some(json!({"type": "answer", "from": "PHNE33",
                    "payload": {"type": "answer", "sdp": "v=0 phone"}}))
    );
    for from_phone in [true, false] {
        let (from, to, code) = if from_phone {
            (&phone, &mut web, "PHNE33")
        } else {
            (&web, &mut phone, "WEBWEB")
        };
        from.request(json!({"type": "ice_candidate", "payload": {"candidate": code}}))
            .await;
        assert_eq!(
            to.next_push().await,
            Some(json!({"type": "ice_candidate", "from": code,
                        "payload": {"candidate": code}}))
        );
    }

    // A call still names its target; a session outside the link has no tunnel.
    let call = web
        .request(json!({"type": "call_hangup", "payload": {"callId": "123e4567-e89b-42d3-a456-426614174000"}}))
        .await;
    assert_eq!(call["message"], NO_TARGET);
    let stranger = fixture.open().await;
    stranger
        .request(json!({"type": "register", "pairingCode": "STRNG2", "publicKey": OTHER_KEY}))
        .await;
    let outside = stranger
        .request(json!({"type": "ice_candidate", "payload": {}}))
        .await;
    assert_eq!(outside["message"], NO_TARGET);
    assert_eq!(phone.next_push().await, None);
    assert_eq!(web.next_push().await, None);
}

#[tokio::test]
async fn a_tunnel_ends_with_either_session_even_when_its_code_comes_back() {
    let (fixture, mut phone, mut web) = linking_fixture().await;
    link(&mut phone, &mut web).await;
    drop(phone);
    // The phone reconnects and gets its reserved code back: a new session, outside the old link.
    let mut phone_again = fixture.open().await;
    let reply = phone_again
        .request(json!({"type": "register", "pairingCode": "PHNE33", "publicKey": PUBLIC_KEY}))
        .await;
    assert_eq!(reply["type"], "registered", "{reply}");
    let reply = web
        .request(json!({"type": "offer", "payload": {"sdp": "v=0"}}))
        .await;
    assert_eq!(reply["message"], NO_TARGET);
    assert_eq!(phone_again.next_push().await, None);

    // Linked again, the web client's leaving ends the tunnel for the phone.
    link(&mut phone_again, &mut web).await;
    drop(web);
    let reply = phone_again
        .request(json!({"type": "answer", "payload": {"sdp": "v=0"}}))
        .await;
    assert_eq!(reply["message"], NO_TARGET);
}
