//! The names a session holds: acting only for them, replacing them, and pushes to their holder.

use super::*;

#[test]
fn a_session_acts_only_for_its_own_ids() {
    let fixture = Fixture::new();
    let session = fixture.open();
    session.request(json!({"type": "register", "peerId": "me"}));
    for request in [
        json!({"type": "update_load", "peerId": "other", "connectedCount": 1}),
        json!({"type": "get_relays", "peerId": "other"}),
        json!({"type": "heartbeat", "peerId": "other"}),
        json!({"type": "register_rendezvous", "peerId": "other", "hourlyTokens": ["t"]}),
        json!({"type": "register", "peerId": "other"}),
    ] {
        let reply = session.request(request.clone());
        assert_eq!(reply["code"], "peer_id_mismatch", "{request}");
    }
    assert_eq!(
        session.request(json!({"type": "heartbeat", "peerId": "me"}))["type"],
        "heartbeat_ack"
    );
}

#[test]
fn a_second_pairing_code_replaces_and_frees_the_first() {
    let fixture = Fixture::new();
    let first = fixture.open();
    let second = fixture.open();
    first.request(json!({"type": "register", "pairingCode": "AAAAAA", "publicKey": PUBLIC_KEY}));
    let reply = first
        .request(json!({"type": "register", "pairingCode": "BBBBBB", "publicKey": PUBLIC_KEY}));
    assert_eq!(reply["pairingCode"], "BBBBBB");
    let reply = second
        .request(json!({"type": "register", "pairingCode": "AAAAAA", "publicKey": PUBLIC_KEY}));
    assert_eq!(reply["type"], "registered", "the old code was freed");
    let reply = second
        .request(json!({"type": "register", "pairingCode": "BBBBBB", "publicKey": PUBLIC_KEY}));
    assert_eq!(
        reply,
        json!({"type": "code_collision", "message": "Pairing code already in use"})
    );
}

#[test]
fn a_replaced_pairing_code_takes_its_hourly_tokens_with_it() {
    let fixture = Fixture::new();
    let phone = fixture.open();
    let other = fixture.open();
    phone.request(json!({"type": "register", "pairingCode": "AAAAAA", "publicKey": PUBLIC_KEY}));
    phone.request(
        json!({"type": "register_rendezvous", "peerId": "AAAAAA", "hourlyTokens": ["t"],
                         "dailyPoints": ["d"], "deadDrop": "kept"}),
    );
    phone.request(json!({"type": "register", "pairingCode": "BBBBBB", "publicKey": PUBLIC_KEY}));
    let reply = other.request(json!({"type": "register_rendezvous", "peerId": "other",
                                     "hourlyTokens": ["t"], "dailyPoints": ["d"]}));
    assert_eq!(reply["liveMatches"], json!([]));
    assert_eq!(
        reply["deadDrops"][0]["peerId"], "AAAAAA",
        "daily points stay"
    );
}

#[test]
fn a_pairing_code_is_an_identity_for_peer_id_checks() {
    let fixture = Fixture::new();
    let session = fixture.open();
    session.request(json!({"type": "register", "pairingCode": "ABC234", "publicKey": PUBLIC_KEY}));
    let reply = session
        .request(json!({"type": "register_rendezvous", "peerId": "ABC234", "hourlyTokens": ["t"]}));
    assert_eq!(reply["type"], "rendezvous_result");
    let reply = session.request(
        json!({"type": "register_rendezvous", "peerId": "someone", "hourlyTokens": ["t"]}),
    );
    assert_eq!(reply["code"], "peer_id_mismatch");
}

#[test]
fn pushes_go_to_the_holder_of_the_name_whichever_role() {
    let fixture = Fixture::new();
    let mut phone = fixture.open();
    let browser = fixture.open();
    let reply = phone
        .request(json!({"type": "register", "pairingCode": "PHNE22", "publicKey": PUBLIC_KEY}));
    assert_eq!(reply["type"], "registered", "{reply}");
    phone
        .request(json!({"type": "register_rendezvous", "peerId": "PHNE22", "hourlyTokens": ["t"]}));
    browser.request(
        json!({"type": "register_rendezvous", "peerId": "browser", "hourlyTokens": ["t"]}),
    );
    assert_eq!(phone.next_push().unwrap()["match"]["peerId"], "browser");
}
