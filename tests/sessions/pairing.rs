//! The pairing family through the session layer: requests, answers, warnings, timeouts, rate.

use super::*;

#[tokio::test]
async fn an_accepted_pair_request_matches_both_sides() {
    let (_fixture, mut alice, mut bob) = paired_fixture().await;
    let reply = alice
        .request(json!({"type": "pair_request", "targetCode": "BBBBB2",
                                     "proposedName": "Alice's phone", "requestId": 1}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "ack", "for": "pair_request", "requestId": 1})
    );
    assert_eq!(
        bob.next_push().await,
        Some(
            json!({"type": "pair_incoming", "fromCode": "ALCE22", "fromPublicKey": PUBLIC_KEY,
                    "expiresIn": 120000, "proposedName": "Alice's phone"})
        )
    );
    let reply = bob
        .request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "pair_matched", "peerCode": "ALCE22", "peerPublicKey": PUBLIC_KEY,
               "isInitiator": false})
    );
    assert_eq!(
        alice.next_push().await,
        Some(
            json!({"type": "pair_matched", "peerCode": "BBBBB2", "peerPublicKey": OTHER_KEY,
                    "isInitiator": true})
        )
    );
    let reply = bob
        .request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "pair_error", "error": "No pending request from this peer"})
    );
}

#[tokio::test]
async fn a_refused_pair_request_tells_the_requester() {
    let (_fixture, mut alice, bob) = paired_fixture().await;
    alice
        .request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))
        .await;
    let reply = bob
        .request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": false}))
        .await;
    assert_eq!(reply, json!({"type": "ack", "for": "pair_response"}));
    assert_eq!(
        alice.next_push().await,
        Some(json!({"type": "pair_rejected", "peerCode": "BBBBB2"}))
    );
}

#[tokio::test]
async fn pair_requests_warn_at_90_seconds_and_time_out_at_120() {
    let (fixture, mut alice, mut bob) = paired_fixture().await;
    alice
        .request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))
        .await;
    bob.next_push().await;
    fixture.clock.advance(Duration::from_millis(89_999));
    assert_eq!(
        fixture
            .sessions
            .state()
            .run_pairing_timers()
            .await
            .unwrap()
            .events,
        0
    );
    fixture.clock.advance(Duration::from_millis(1));
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
    assert_eq!(
        alice.next_push().await,
        Some(json!({"type": "pair_expiring", "peerCode": "BBBBB2", "remainingSeconds": 30}))
    );
    assert_eq!(
        bob.next_push().await,
        Some(json!({"type": "pair_expiring", "peerCode": "ALCE22", "remainingSeconds": 30}))
    );
    fixture.clock.advance(Duration::from_secs(30));
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
    assert_eq!(
        alice.next_push().await,
        Some(json!({"type": "pair_timeout", "peerCode": "BBBBB2"}))
    );
    assert_eq!(
        bob.next_push().await,
        None,
        "only the requester is told of the timeout"
    );
    let reply = bob
        .request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}))
        .await;
    assert_eq!(reply["type"], "pair_error");
}

#[tokio::test]
async fn pair_requests_are_refused_with_one_generic_text() {
    let (fixture, alice, _bob) = paired_fixture().await;
    let refused = json!({"type": "pair_error", "error": "Pair request could not be processed"});
    assert_eq!(
        alice
            .request(json!({"type": "pair_request", "targetCode": "NNNNN2"}))
            .await,
        refused
    );
    assert_eq!(
        alice
            .request(json!({"type": "pair_request", "targetCode": "bbbbb2"}))
            .await,
        refused,
        "a misspelt code is as unknown as any other"
    );
    assert_eq!(
        alice
            .request(json!({"type": "pair_request", "targetCode": "ALCE22"}))
            .await,
        refused
    );
    // A target with ten pending requests takes no eleventh, but a repeated one replaces its original.
    let mut requesters = Vec::new();
    for i in 0..11 {
        requesters.push(fixture.open_from(IpAddr::from([198, 51, 100, i])).await);
    }
    for (i, requester) in requesters.iter().enumerate() {
        let code = format!("RQ{i:02}XX").replace('0', "Z").replace('1', "Y");
        let reply = requester
            .request(json!({"type": "register", "pairingCode": code, "publicKey": PUBLIC_KEY}))
            .await;
        assert_eq!(reply["type"], "registered", "{code}: {reply}");
    }
    for requester in &requesters[..10] {
        let reply = requester
            .request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))
            .await;
        assert_eq!(reply["type"], "ack");
    }
    assert_eq!(
        requesters[10]
            .request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))
            .await,
        refused
    );
    let reply = requesters[3]
        .request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))
        .await;
    assert_eq!(reply["type"], "ack");
    let unregistered = fixture.open().await;
    assert_eq!(
        unregistered
            .request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))
            .await["code"],
        "not_registered"
    );
}

#[tokio::test]
async fn a_disconnect_mid_flow_cancels_its_pair_requests() {
    let (fixture, alice, bob) = paired_fixture().await;
    alice
        .request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))
        .await;
    drop(alice);
    let reply = bob
        .request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}))
        .await;
    assert_eq!(reply["type"], "pair_error");
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
        "no timers are left behind"
    );
}

#[tokio::test]
async fn pair_requests_have_their_own_rate_of_ten_a_minute() {
    let (fixture, alice, _bob) = paired_fixture().await;
    for _ in 0..10 {
        let reply = alice
            .request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))
            .await;
        assert_eq!(reply["type"], "ack");
    }
    let reply = alice
        .request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))
        .await;
    assert_eq!(reply["code"], "rate_limited");
    assert_eq!(alice.request(json!({"type": "ping"})).await["type"], "pong");
    fixture.clock.advance(Duration::from_secs(6));
    let reply = alice
        .request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))
        .await;
    assert_eq!(reply["type"], "ack");
}

#[tokio::test]
async fn a_target_leaving_mid_flow_cancels_requests_to_it() {
    let (fixture, mut alice, bob) = paired_fixture().await;
    alice
        .request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))
        .await;
    drop(bob);
    assert_eq!(
        alice.next_push().await,
        Some(json!({"type": "pair_timeout", "peerCode": "BBBBB2"})),
        "the requester is told at once"
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
        0
    );
    assert_eq!(alice.next_push().await, None, "and no timer is left behind");
    let newcomer = fixture.open().await;
    newcomer
        .request(json!({"type": "register", "pairingCode": "BBBBB2", "publicKey": PUBLIC_KEY}))
        .await;
    let reply = newcomer
        .request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}))
        .await;
    assert_eq!(
        reply["type"], "pair_error",
        "the old request does not pass to the code's next holder"
    );
}

#[tokio::test]
async fn one_address_cannot_fill_a_codes_pending_slots() {
    let (fixture, _alice, _bob) = paired_fixture().await;
    let mut requesters = Vec::new();
    for i in 0..3 {
        let requester = fixture.open().await;
        let code = ["RQZZXA", "RQZZXB", "RQZZXC"][i];
        requester
            .request(json!({"type": "register", "pairingCode": code, "publicKey": PUBLIC_KEY}))
            .await;
        requesters.push(requester);
    }
    let request = json!({"type": "pair_request", "targetCode": "BBBBB2"});
    assert_eq!(requesters[0].request(request.clone()).await["type"], "ack");
    assert_eq!(requesters[1].request(request.clone()).await["type"], "ack");
    assert_eq!(
        requesters[2].request(request.clone()).await["type"],
        "pair_error",
        "a third code from the same address waits for a slot it may not take"
    );
    let elsewhere = fixture.open_from(IpAddr::from([203, 0, 113, 9])).await;
    elsewhere
        .request(json!({"type": "register", "pairingCode": "ELSWR2", "publicKey": OTHER_KEY}))
        .await;
    assert_eq!(
        elsewhere.request(request).await["type"],
        "ack",
        "the real requester still gets in"
    );
}

/// A client's X25519 key pair, as the apps keep theirs.
fn client_key() -> (ring::agreement::EphemeralPrivateKey, String) {
    use base64::Engine as _;
    let secret = ring::agreement::EphemeralPrivateKey::generate(
        &ring::agreement::X25519,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let public = base64::engine::general_purpose::STANDARD
        .encode(secret.compute_public_key().unwrap().as_ref());
    (secret, public)
}

/// The proof of docs/protocol.md: HMAC-SHA256 keyed by the X25519 secret shared with the server's key,
/// over "zajel key proof", the nonce and the code.
fn prove(secret: ring::agreement::EphemeralPrivateKey, challenge: &Value) -> String {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    let server_key = base64
        .decode(challenge["serverKey"].as_str().unwrap())
        .unwrap();
    let nonce = base64.decode(challenge["nonce"].as_str().unwrap()).unwrap();
    let code = challenge["pairingCode"].as_str().unwrap();
    ring::agreement::agree_ephemeral(
        secret,
        &ring::agreement::UnparsedPublicKey::new(&ring::agreement::X25519, server_key),
        |shared| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, shared);
            let message = [b"zajel key proof".as_slice(), &nonce, code.as_bytes()].concat();
            base64.encode(ring::hmac::sign(&key, &message).as_ref())
        },
    )
    .unwrap()
}

#[tokio::test]
async fn with_proofs_required_a_code_is_bound_only_to_the_holder_of_its_key() {
    let fixture = Fixture::with_config({
        let mut config = Config::default();
        config.sessions.require_key_proof = true;
        config
    });
    let phone = fixture.open().await;
    let (secret, public_key) = client_key();
    let challenge = phone
        .request(json!({"type": "register", "pairingCode": "PHNE22", "publicKey": public_key}))
        .await;
    assert_eq!(challenge["type"], "key_challenge", "{challenge}");
    assert_eq!(challenge["pairingCode"], "PHNE22");
    let reply = phone
        .request(json!({"type": "key_proof", "pairingCode": "PHNE22",
                        "proof": prove(secret, &challenge)}))
        .await;
    assert_eq!(reply["type"], "registered", "{reply}");

    // Someone who only knows the phone's public key cannot register under it.
    let impostor = fixture.open().await;
    let challenge = impostor
        .request(json!({"type": "register", "pairingCode": "MPSTR2", "publicKey": public_key}))
        .await;
    let (own_secret, _) = client_key();
    let reply = impostor
        .request(json!({"type": "key_proof", "pairingCode": "MPSTR2",
                        "proof": prove(own_secret, &challenge)}))
        .await;
    assert_eq!(reply["code"], "invalid_message", "{reply}");
    assert!(reply["message"].as_str().unwrap().starts_with("proof"));
    // The challenge is used up either way, and a proof with none waiting is refused.
    let reply = impostor
        .request(json!({"type": "key_proof", "pairingCode": "MPSTR2", "proof": "AAAA"}))
        .await;
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .starts_with("pairingCode"),
        "{reply}"
    );
    let reply = impostor
        .request(json!({"type": "pair_request", "targetCode": "PHNE22"}))
        .await;
    assert_eq!(
        reply["code"], "not_registered",
        "the impostor holds no code"
    );
}
