//! The forwarding family through the session layer: offers, answers, ICE candidates and calls.

use super::*;

#[tokio::test]
async fn signals_reach_the_target_code_unchanged_and_are_acknowledged() {
    let fixture = Fixture::new();
    let caller = fixture.open().await;
    let mut callee = fixture.open().await;
    caller
        .request(json!({"type": "register", "pairingCode": "CALLER", "publicKey": PUBLIC_KEY}))
        .await;
    callee
        .request(json!({"type": "register", "pairingCode": "CALLEE", "publicKey": PUBLIC_KEY}))
        .await;
    let payload = json!({"sdp": "v=0\r\n", "nested": [1, 2.5, null, {"k": "ü"}]});
    let reply = caller
        .request(
            json!({"type": "offer", "target": "CALLEE", "payload": payload,
                                      "requestId": 3}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"type": "ack", "for": "offer", "requestId": 3})
    );
    assert_eq!(
        callee.next_push().await,
        Some(json!({"type": "offer", "from": "CALLER", "payload": payload}))
    );
}

#[tokio::test]
async fn signals_need_a_pairing_code_and_a_live_target_code() {
    let fixture = Fixture::new();
    let sender = fixture.open().await;
    let relay = fixture.open().await;
    relay
        .request(json!({"type": "register", "peerId": "RELAY2"}))
        .await;
    let offer = |target: &str| json!({"type": "offer", "target": target, "payload": {}});
    assert_eq!(
        sender.request(offer("RELAY2")).await["code"],
        "not_registered"
    );
    sender
        .request(json!({"type": "register", "pairingCode": "SENDER", "publicKey": PUBLIC_KEY}))
        .await;
    assert_eq!(
        sender.request(offer("NBDY23")).await["code"],
        "peer_not_found"
    );
    assert_eq!(
        sender.request(offer("RELAY2")).await["code"],
        "peer_not_found",
        "a relay id is not a pairing code"
    );
    assert_eq!(
        sender.request(offer("bad code")).await["code"],
        "invalid_message"
    );
    let reply = sender
        .request(json!({"type": "call_offer", "target": "SENDER",
                                      "payload": {"callId": "nope", "sdp": "v=0"}}))
        .await;
    assert_eq!(reply["code"], "invalid_message");
    assert!(reply["message"].as_str().unwrap().contains("callId"));
}

#[tokio::test]
async fn every_signal_type_is_forwarded() {
    let (_fixture, alice, mut bob) = paired_fixture().await;
    let call = "123e4567-e89b-42d3-a456-426614174000";
    for (kind, payload) in [
        ("offer", json!({"sdp": "o"})),
        ("answer", json!({"sdp": "a"})),
        ("ice_candidate", json!({"candidate": "c"})),
        ("call_offer", json!({"callId": call, "sdp": "o"})),
        ("call_answer", json!({"callId": call, "sdp": "a"})),
        ("call_reject", json!({"callId": call})),
        ("call_hangup", json!({"callId": call})),
        ("call_ice", json!({"callId": call, "candidate": "c"})),
    ] {
        let reply = alice
            .request(json!({"type": kind, "target": "BBBBB2", "payload": payload}))
            .await;
        assert_eq!(reply, json!({"type": "ack", "for": kind}));
        let mut pushed = json!({"type": kind, "from": "ALCE22", "payload": payload});
        // Calls arrive in the merged shape: the payload's call fields also at the top level.
        if kind.starts_with("call_") {
            for (field, value) in payload.as_object().unwrap() {
                pushed[field] = value.clone();
            }
        }
        assert_eq!(bob.next_push().await, Some(pushed));
    }
}

/// A web client (flat calls) and a phone (nested calls) call each other (PROTOCOL 2.7).
#[tokio::test]
async fn flat_and_nested_calls_cross_in_both_directions_in_the_merged_shape() {
    let (_fixture, web, phone) = paired_fixture().await;
    let (mut web, mut phone) = (web, phone);
    let call = "123e4567-e89b-42d3-a456-426614174000";
    let reply = web
        .request(
            json!({"type": "call_offer", "targetId": "BBBBB2", "callId": call,
                        "sdp": "v=0 web", "withVideo": true}),
        )
        .await;
    assert_eq!(reply, json!({"type": "ack", "for": "call_offer"}));
    assert_eq!(
        phone.next_push().await,
        Some(json!({"type": "call_offer", "from": "ALCE22",
                    "payload": {"callId": call, "sdp": "v=0 web", "withVideo": true},
                    "callId": call, "sdp": "v=0 web", "withVideo": true}))
    );
    phone
        .request(json!({"type": "call_answer", "target": "ALCE22",
                        "payload": {"callId": call, "sdp": "v=0 phone"}}))
        .await;
    assert_eq!(
        web.next_push().await,
        Some(json!({"type": "call_answer", "from": "BBBBB2",
                    "payload": {"callId": call, "sdp": "v=0 phone"},
                    "callId": call, "sdp": "v=0 phone"}))
    );
    web.request(
        json!({"type": "call_reject", "targetId": "BBBBB2", "callId": call,
                       "reason": "busy"}),
    )
    .await;
    assert_eq!(phone.next_push().await.unwrap()["reason"], "busy");
    let reply = web
        .request(
            json!({"type": "call_reject", "targetId": "BBBBB2", "callId": call,
                        "reason": "bored"}),
        )
        .await;
    assert_eq!(reply["code"], "invalid_message");
    assert!(reply["message"].as_str().unwrap().contains("reason"));
    // A flat call with a bad callId gets the same check as a nested one.
    let reply = web
        .request(json!({"type": "call_hangup", "targetId": "BBBBB2", "callId": "nope"}))
        .await;
    assert_eq!(
        reply["message"],
        "Invalid or missing callId (must be UUID v4 format)"
    );
}
