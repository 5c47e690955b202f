//! The relay family through the session layer: `register {peerId}`, `update_load`, `get_relays`.

use super::*;

#[tokio::test]
async fn register_answers_registered_with_relays() {
    let fixture = Fixture::new();
    let first = fixture.open().await;
    let second = fixture.open().await;
    first.request(
        json!({"type": "register", "peerId": "relay-1", "maxConnections": 20, "publicKey": "k1"}),
    ).await;
    let reply = second
        .request(json!({"type": "register", "peerId": "relay-2"}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "registered", "peerId": "relay-2", "serverId": "srv",
               "relays": [{"peerId": "relay-1", "publicKey": "k1", "capacity": 0.0}]})
    );
}

#[tokio::test]
async fn update_load_changes_the_count() {
    let fixture = Fixture::new();
    let relay = fixture.open().await;
    let asker = fixture.open().await;
    relay
        .request(json!({"type": "register", "peerId": "relay-1", "maxConnections": 10}))
        .await;
    let reply = relay
        .request(json!({"type": "update_load", "peerId": "relay-1", "connectedCount": 3}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "load_updated", "peerId": "relay-1", "connectedCount": 3})
    );
    let reply = asker
        .request(json!({"type": "get_relays", "peerId": "asker"}))
        .await;
    assert_eq!(reply["relays"][0]["capacity"], 0.3);
    relay
        .request(json!({"type": "update_load", "peerId": "relay-1", "connectedCount": 6}))
        .await;
    let reply = asker
        .request(json!({"type": "get_relays", "peerId": "asker"}))
        .await;
    assert_eq!(reply["relays"], json!([]));
}

#[tokio::test]
async fn a_disconnect_unregisters_the_peer() {
    let fixture = Fixture::new();
    let relay = fixture.open().await;
    let asker = fixture.open().await;
    relay
        .request(json!({"type": "register", "peerId": "relay-1"}))
        .await;
    relay
        .request(
            json!({"type": "register_rendezvous", "peerId": "relay-1", "hourlyTokens": ["h"],
                         "dailyPoints": ["d"], "deadDrop": "stays"}),
        )
        .await;
    assert_eq!(
        relay_ids(
            &asker
                .request(json!({"type": "get_relays", "peerId": "x"}))
                .await
        ),
        ["relay-1"]
    );
    drop(relay);
    assert!(
        relay_ids(
            &asker
                .request(json!({"type": "get_relays", "peerId": "x"}))
                .await
        )
        .is_empty()
    );
    let reply = asker
        .request(json!({"type": "register_rendezvous", "peerId": "asker",
                                     "hourlyTokens": ["h"], "dailyPoints": ["d"]}))
        .await;
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
    let newcomer = fixture.open().await;
    assert_eq!(
        newcomer
            .request(json!({"type": "register", "peerId": "relay-1"}))
            .await["type"],
        "registered"
    );
}

#[tokio::test]
async fn update_load_needs_a_relay_registration_on_this_session() {
    let fixture = Fixture::new();
    let session = fixture.open().await;
    let reply = session
        .request(json!({"type": "update_load", "peerId": "me", "connectedCount": 1}))
        .await;
    assert_eq!(reply["code"], "not_registered");
    // A rendezvous binding names the session but does not list it as a relay.
    session
        .request(json!({"type": "register_rendezvous", "peerId": "me"}))
        .await;
    let reply = session
        .request(json!({"type": "update_load", "peerId": "me", "connectedCount": 1}))
        .await;
    assert_eq!(reply["code"], "not_registered");
    session
        .request(json!({"type": "register", "peerId": "me"}))
        .await;
    let reply = session
        .request(json!({"type": "update_load", "peerId": "me", "connectedCount": 1}))
        .await;
    assert_eq!(reply["type"], "load_updated");
}

#[tokio::test]
async fn re_registering_a_relay_replaces_capacity_and_resets_load() {
    let fixture = Fixture::new();
    let relay = fixture.open().await;
    let asker = fixture.open().await;
    relay
        .request(
            json!({"type": "register", "peerId": "r", "maxConnections": 10, "publicKey": "old"}),
        )
        .await;
    relay
        .request(json!({"type": "update_load", "peerId": "r", "connectedCount": 4}))
        .await;
    relay
        .request(
            json!({"type": "register", "peerId": "r", "maxConnections": 100, "publicKey": "new"}),
        )
        .await;
    let reply = asker
        .request(json!({"type": "get_relays", "peerId": "a"}))
        .await;
    assert_eq!(
        reply["relays"],
        json!([{"peerId": "r", "publicKey": "new", "capacity": 0.0}])
    );
}
