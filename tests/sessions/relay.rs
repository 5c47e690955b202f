//! The relay family through the session layer: `register {peerId}`, `update_load`, `get_relays`.

use super::*;

#[test]
fn register_answers_registered_with_relays() {
    let fixture = Fixture::new();
    let first = fixture.open();
    let second = fixture.open();
    first.request(
        json!({"type": "register", "peerId": "relay-1", "maxConnections": 20, "publicKey": "k1"}),
    );
    let reply = second.request(json!({"type": "register", "peerId": "relay-2"}));
    assert_eq!(
        reply,
        json!({"type": "registered", "peerId": "relay-2", "serverId": "srv",
               "relays": [{"peerId": "relay-1", "publicKey": "k1", "capacity": 0.0}]})
    );
}

#[test]
fn update_load_changes_the_count() {
    let fixture = Fixture::new();
    let relay = fixture.open();
    let asker = fixture.open();
    relay.request(json!({"type": "register", "peerId": "relay-1", "maxConnections": 10}));
    let reply =
        relay.request(json!({"type": "update_load", "peerId": "relay-1", "connectedCount": 3}));
    assert_eq!(
        reply,
        json!({"type": "load_updated", "peerId": "relay-1", "connectedCount": 3})
    );
    let reply = asker.request(json!({"type": "get_relays", "peerId": "asker"}));
    assert_eq!(reply["relays"][0]["capacity"], 0.3);
    relay.request(json!({"type": "update_load", "peerId": "relay-1", "connectedCount": 6}));
    let reply = asker.request(json!({"type": "get_relays", "peerId": "asker"}));
    assert_eq!(reply["relays"], json!([]));
}

#[test]
fn a_disconnect_unregisters_the_peer() {
    let fixture = Fixture::new();
    let relay = fixture.open();
    let asker = fixture.open();
    relay.request(json!({"type": "register", "peerId": "relay-1"}));
    relay.request(
        json!({"type": "register_rendezvous", "peerId": "relay-1", "hourlyTokens": ["h"],
                         "dailyPoints": ["d"], "deadDrop": "stays"}),
    );
    assert_eq!(
        relay_ids(&asker.request(json!({"type": "get_relays", "peerId": "x"}))),
        ["relay-1"]
    );
    drop(relay);
    assert!(relay_ids(&asker.request(json!({"type": "get_relays", "peerId": "x"}))).is_empty());
    let reply = asker.request(json!({"type": "register_rendezvous", "peerId": "asker",
                                     "hourlyTokens": ["h"], "dailyPoints": ["d"]}));
    assert_eq!(
        reply["liveMatches"],
        json!([]),
        "hourly entries go with the session"
    );
    assert_eq!(
        reply["deadDrops"][0]["deadDrop"], "stays",
        "daily entries stay"
    );
    // The name is free again.
    let newcomer = fixture.open();
    assert_eq!(
        newcomer.request(json!({"type": "register", "peerId": "relay-1"}))["type"],
        "registered"
    );
}

#[test]
fn update_load_needs_a_relay_registration_on_this_session() {
    let fixture = Fixture::new();
    let session = fixture.open();
    let reply =
        session.request(json!({"type": "update_load", "peerId": "me", "connectedCount": 1}));
    assert_eq!(reply["code"], "not_registered");
    // A rendezvous binding names the session but does not list it as a relay.
    session.request(json!({"type": "register_rendezvous", "peerId": "me"}));
    let reply =
        session.request(json!({"type": "update_load", "peerId": "me", "connectedCount": 1}));
    assert_eq!(reply["code"], "not_registered");
    session.request(json!({"type": "register", "peerId": "me"}));
    let reply =
        session.request(json!({"type": "update_load", "peerId": "me", "connectedCount": 1}));
    assert_eq!(reply["type"], "load_updated");
}

#[test]
fn re_registering_a_relay_replaces_capacity_and_resets_load() {
    let fixture = Fixture::new();
    let relay = fixture.open();
    let asker = fixture.open();
    relay.request(
        json!({"type": "register", "peerId": "r", "maxConnections": 10, "publicKey": "old"}),
    );
    relay.request(json!({"type": "update_load", "peerId": "r", "connectedCount": 4}));
    relay.request(
        json!({"type": "register", "peerId": "r", "maxConnections": 100, "publicKey": "new"}),
    );
    let reply = asker.request(json!({"type": "get_relays", "peerId": "a"}));
    assert_eq!(
        reply["relays"],
        json!([{"peerId": "r", "publicKey": "new", "capacity": 0.0}])
    );
}
