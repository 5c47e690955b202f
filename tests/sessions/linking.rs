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
        fixture.sessions.state().run_pairing_timers().await.unwrap(),
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
        fixture.sessions.state().run_pairing_timers().await.unwrap(),
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
