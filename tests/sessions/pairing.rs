//! The pairing family through the session layer: requests, answers, warnings, timeouts, rate.

use super::*;

#[test]
fn an_accepted_pair_request_matches_both_sides() {
    let (_fixture, mut alice, mut bob) = paired_fixture();
    let reply = alice.request(json!({"type": "pair_request", "targetCode": "BBBBB2",
                                     "proposedName": "Alice's phone", "requestId": 1}));
    assert_eq!(
        reply,
        json!({"type": "ack", "for": "pair_request", "requestId": 1})
    );
    assert_eq!(
        bob.next_push(),
        Some(
            json!({"type": "pair_incoming", "fromCode": "ALCE22", "fromPublicKey": PUBLIC_KEY,
                    "expiresIn": 120000, "proposedName": "Alice's phone"})
        )
    );
    let reply =
        bob.request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}));
    assert_eq!(
        reply,
        json!({"type": "pair_matched", "peerCode": "ALCE22", "peerPublicKey": PUBLIC_KEY,
               "isInitiator": false})
    );
    assert_eq!(
        alice.next_push(),
        Some(
            json!({"type": "pair_matched", "peerCode": "BBBBB2", "peerPublicKey": OTHER_KEY,
                    "isInitiator": true})
        )
    );
    let reply =
        bob.request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}));
    assert_eq!(
        reply,
        json!({"type": "pair_error", "error": "No pending request from this peer"})
    );
}

#[test]
fn a_refused_pair_request_tells_the_requester() {
    let (_fixture, mut alice, bob) = paired_fixture();
    alice.request(json!({"type": "pair_request", "targetCode": "BBBBB2"}));
    let reply =
        bob.request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": false}));
    assert_eq!(reply, json!({"type": "ack", "for": "pair_response"}));
    assert_eq!(
        alice.next_push(),
        Some(json!({"type": "pair_rejected", "peerCode": "BBBBB2"}))
    );
}

#[test]
fn pair_requests_warn_at_90_seconds_and_time_out_at_120() {
    let (fixture, mut alice, mut bob) = paired_fixture();
    alice.request(json!({"type": "pair_request", "targetCode": "BBBBB2"}));
    bob.next_push();
    fixture.clock.advance(Duration::from_millis(89_999));
    assert_eq!(fixture.sessions.state().run_pairing_timers(), 0);
    fixture.clock.advance(Duration::from_millis(1));
    assert_eq!(fixture.sessions.state().run_pairing_timers(), 1);
    assert_eq!(
        alice.next_push(),
        Some(json!({"type": "pair_expiring", "peerCode": "BBBBB2", "remainingSeconds": 30}))
    );
    assert_eq!(
        bob.next_push(),
        Some(json!({"type": "pair_expiring", "peerCode": "ALCE22", "remainingSeconds": 30}))
    );
    fixture.clock.advance(Duration::from_secs(30));
    assert_eq!(fixture.sessions.state().run_pairing_timers(), 1);
    assert_eq!(
        alice.next_push(),
        Some(json!({"type": "pair_timeout", "peerCode": "BBBBB2"}))
    );
    assert_eq!(
        bob.next_push(),
        None,
        "only the requester is told of the timeout"
    );
    let reply =
        bob.request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}));
    assert_eq!(reply["type"], "pair_error");
}

#[test]
fn pair_requests_are_refused_with_one_generic_text() {
    let (fixture, alice, _bob) = paired_fixture();
    let refused = json!({"type": "pair_error", "error": "Pair request could not be processed"});
    assert_eq!(
        alice.request(json!({"type": "pair_request", "targetCode": "NNNNN2"})),
        refused
    );
    assert_eq!(
        alice.request(json!({"type": "pair_request", "targetCode": "bbbbb2"})),
        refused,
        "a misspelt code is as unknown as any other"
    );
    assert_eq!(
        alice.request(json!({"type": "pair_request", "targetCode": "ALCE22"})),
        refused
    );
    // A target with ten pending requests takes no eleventh, but a repeated one replaces its original.
    let requesters: Vec<Peer> = (0..11).map(|_| fixture.open()).collect();
    for (i, requester) in requesters.iter().enumerate() {
        let code = format!("RQ{i:02}XX").replace('0', "Z").replace('1', "Y");
        let reply = requester
            .request(json!({"type": "register", "pairingCode": code, "publicKey": PUBLIC_KEY}));
        assert_eq!(reply["type"], "registered", "{code}: {reply}");
    }
    for requester in &requesters[..10] {
        let reply = requester.request(json!({"type": "pair_request", "targetCode": "BBBBB2"}));
        assert_eq!(reply["type"], "ack");
    }
    assert_eq!(
        requesters[10].request(json!({"type": "pair_request", "targetCode": "BBBBB2"})),
        refused
    );
    let reply = requesters[3].request(json!({"type": "pair_request", "targetCode": "BBBBB2"}));
    assert_eq!(reply["type"], "ack");
    let unregistered = fixture.open();
    assert_eq!(
        unregistered.request(json!({"type": "pair_request", "targetCode": "BBBBB2"}))["code"],
        "not_registered"
    );
}

#[test]
fn a_disconnect_mid_flow_cancels_its_pair_requests() {
    let (fixture, alice, bob) = paired_fixture();
    alice.request(json!({"type": "pair_request", "targetCode": "BBBBB2"}));
    drop(alice);
    let reply =
        bob.request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}));
    assert_eq!(reply["type"], "pair_error");
    fixture.clock.advance(Duration::from_secs(200));
    assert_eq!(
        fixture.sessions.state().run_pairing_timers(),
        0,
        "no timers are left behind"
    );
}

#[test]
fn pair_requests_have_their_own_rate_of_ten_a_minute() {
    let (fixture, alice, _bob) = paired_fixture();
    for _ in 0..10 {
        let reply = alice.request(json!({"type": "pair_request", "targetCode": "BBBBB2"}));
        assert_eq!(reply["type"], "ack");
    }
    let reply = alice.request(json!({"type": "pair_request", "targetCode": "BBBBB2"}));
    assert_eq!(reply["code"], "rate_limited");
    assert_eq!(alice.request(json!({"type": "ping"}))["type"], "pong");
    fixture.clock.advance(Duration::from_secs(6));
    let reply = alice.request(json!({"type": "pair_request", "targetCode": "BBBBB2"}));
    assert_eq!(reply["type"], "ack");
}

#[test]
fn a_target_leaving_mid_flow_cancels_requests_to_it() {
    let (fixture, mut alice, bob) = paired_fixture();
    alice.request(json!({"type": "pair_request", "targetCode": "BBBBB2"}));
    drop(bob);
    assert_eq!(
        alice.next_push(),
        Some(json!({"type": "pair_timeout", "peerCode": "BBBBB2"})),
        "the requester is told at once"
    );
    fixture.clock.advance(Duration::from_secs(200));
    assert_eq!(fixture.sessions.state().run_pairing_timers(), 0);
    assert_eq!(alice.next_push(), None, "and no timer is left behind");
    let newcomer = fixture.open();
    newcomer.request(json!({"type": "register", "pairingCode": "BBBBB2", "publicKey": PUBLIC_KEY}));
    let reply = newcomer
        .request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}));
    assert_eq!(
        reply["type"], "pair_error",
        "the old request does not pass to the code's next holder"
    );
}
