//! Many nodes on one Redis: names held once in the whole cluster, deliveries across nodes. Each test
//! starts its own `redis-server` and nodes on loopback.

mod common;

use common::redis::{RedisCluster, RedisServer};
use common::streams::{QuicClient, WebTransportClient, recv_frame};
use common::{Client, PUBLIC_KEY, TestServer, spawn_server_binary, test_config};
use serde_json::json;
use std::time::Duration;

const OTHER_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

async fn node(redis: &RedisServer) -> TestServer {
    let mut config = test_config();
    config.cluster.redis_url = Some(redis.url());
    TestServer::start_with(config).await
}

/// Waits until `done` says so: what a session's end releases in Redis is released a moment after the
/// session closes. Asks again every 20 ms, for at most [`common::PATIENCE`].
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(common::PATIENCE, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not in time"));
}

/// The `peerId`s of a list of relays or matches, sorted.
fn peer_ids(list: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|item| item["peerId"].as_str().expect("a peerId").to_owned())
        .collect();
    ids.sort();
    ids
}

async fn register_code(client: &mut Client, code: &str, key: &str) -> serde_json::Value {
    client
        .request(json!({"type": "register", "pairingCode": code, "publicKey": key}))
        .await
}

#[tokio::test]
async fn a_name_held_on_one_node_is_refused_on_another_until_its_session_ends() {
    let redis = RedisServer::start();
    let (first, second) = (node(&redis).await, node(&redis).await);

    let mut holder = first.connect().await;
    assert_eq!(
        register_code(&mut holder, "ABC234", PUBLIC_KEY).await["type"],
        "registered"
    );
    let mut other = second.connect().await;
    assert_eq!(
        register_code(&mut other, "ABC234", OTHER_KEY).await["type"],
        "code_collision"
    );
    let reply = other
        .request(json!({"type": "register", "peerId": "ABC234"}))
        .await;
    assert_eq!(
        reply["code"], "peer_id_taken",
        "one namespace, cluster-wide"
    );

    // Once its session ends, the code is reserved for its key (on every node), then free.
    holder.ws.close(None).await.unwrap();
    first.wait_for_sessions(0).await;
    let mut returning = second.connect().await;
    eventually("the code is released", async || {
        register_code(&mut returning, "ABC234", PUBLIC_KEY).await["type"] == "registered"
    })
    .await;
    assert_eq!(
        register_code(&mut other, "ABC234", OTHER_KEY).await["type"],
        "code_collision"
    );
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn signals_cross_nodes_in_order_both_ways() {
    let redis = RedisServer::start();
    let (first, second) = (node(&redis).await, node(&redis).await);
    let mut alice = first.connect().await;
    register_code(&mut alice, "ALXCE2", PUBLIC_KEY).await;
    let mut bob = second.connect().await;
    register_code(&mut bob, "BQBBY3", OTHER_KEY).await;

    for n in 0..20 {
        alice
            .send_json(&json!({"type": "ice_candidate", "target": "BQBBY3", "payload": {"n": n}}))
            .await;
    }
    for n in 0..20 {
        assert_eq!(
            bob.recv().await,
            json!({"type": "ice_candidate", "from": "ALXCE2", "payload": {"n": n}})
        );
    }
    bob.send_cbor(&json!({"type": "answer", "target": "ALXCE2", "payload": {"sdp": "v=0"}}))
        .await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "answer", "from": "BQBBY3", "payload": {"sdp": "v=0"}})
    );
    let reply = alice
        .request(json!({"type": "offer", "target": "NQBQDY", "payload": {}}))
        .await;
    assert_eq!(reply["code"], "peer_not_found");
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn health_names_the_node_and_whether_redis_answers() {
    let redis = RedisServer::start();
    let server = node(&redis).await;
    let health = server.health().await;
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["cluster"]["redis"], "ok");
    assert_eq!(health["cluster"]["node"].as_str().unwrap().len(), 16);
    server.stop().await;
}

#[tokio::test]
async fn relays_of_every_node_are_listed_on_each_and_leave_with_their_session() {
    let redis = RedisServer::start();
    let (first, second) = (node(&redis).await, node(&redis).await);
    let mut relay_one = first.connect().await;
    let reply = relay_one
        .request(json!({"type": "register", "peerId": "relay-one", "maxConnections": 10, "publicKey": "pk one"}))
        .await;
    assert_eq!(reply["relays"], json!([]));
    let mut relay_two = second.connect().await;
    let reply = relay_two
        .request(json!({"type": "register", "peerId": "relay-two", "maxConnections": 4}))
        .await;
    assert_eq!(
        reply["relays"],
        json!([{"peerId": "relay-one", "publicKey": "pk one", "capacity": 0.0}])
    );

    let mut asker = second.connect().await;
    let listed = |reply: serde_json::Value| peer_ids(&reply["relays"]);
    let get_relays = json!({"type": "get_relays", "peerId": "asker", "count": 10});
    assert_eq!(
        listed(asker.request(get_relays.clone()).await),
        ["relay-one", "relay-two"]
    );

    // Half load or more takes a relay off the list; the same request from another node sees it.
    let reply = relay_two
        .request(json!({"type": "update_load", "peerId": "relay-two", "connectedCount": 2}))
        .await;
    assert_eq!(reply["type"], "load_updated");
    let mut other_asker = first.connect().await;
    assert_eq!(
        listed(other_asker.request(get_relays.clone()).await),
        ["relay-one"]
    );
    relay_two
        .request(json!({"type": "update_load", "peerId": "relay-two", "connectedCount": 1}))
        .await;
    let relays = other_asker.request(get_relays.clone()).await["relays"].clone();
    assert!(
        relays
            .as_array()
            .unwrap()
            .contains(&json!({"peerId": "relay-two", "publicKey": null, "capacity": 0.25}))
    );

    relay_one.ws.close(None).await.unwrap();
    first.wait_for_sessions(1).await;
    eventually("the relay leaves the list with its session", async || {
        listed(asker.request(get_relays.clone()).await) == ["relay-two"]
    })
    .await;
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn rendezvous_matches_and_dead_drops_cross_nodes() {
    let redis = RedisServer::start();
    let (first, second) = (node(&redis).await, node(&redis).await);
    let mut alice = first.connect().await;
    let reply = alice
        .request(
            json!({"type": "register_rendezvous", "peerId": "alice", "relayId": "relay-a",
                        "dailyPoints": ["day-1", "day-2"], "deadDrops": {"day-1": "sealed for bob"},
                        "hourlyTokens": ["hour-1"]}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"type": "rendezvous_result", "liveMatches": [], "deadDrops": []})
    );

    let mut bob = second.connect().await;
    bob.send_cbor(
        &json!({"type": "register_rendezvous", "peerId": "bob", "relayId": "relay-b",
                          "dailyPoints": ["day-2", "day-1"], "hourlyTokens": ["hour-1"]}),
    )
    .await;
    assert_eq!(
        bob.recv_binary().await,
        json!({"type": "rendezvous_result",
               "liveMatches": [{"peerId": "alice", "relayId": "relay-a", "meetingPoint": "hour-1"}],
               "deadDrops": [{"peerId": "alice", "deadDrop": "sealed for bob", "relayId": "relay-a",
                              "meetingPoint": "day-1"}]})
    );
    assert_eq!(
        alice.recv().await,
        json!({"type": "rendezvous_match",
               "match": {"peerId": "bob", "relayId": "relay-b", "meetingPoint": "hour-1"}})
    );

    // Alice leaves: her hourly token matches no one any more, her dead drop stays.
    alice.ws.close(None).await.unwrap();
    first.wait_for_sessions(0).await;
    let mut carol = first.connect().await;
    let mut carol_sees = async || {
        carol
            .request(json!({"type": "register_rendezvous", "peerId": "carol",
                            "dailyPoints": ["day-1"], "hourlyTokens": ["hour-1"]}))
            .await
    };
    eventually("alice's hourly entry goes with her session", async || {
        carol_sees().await["liveMatches"]
            == json!([{"peerId": "bob", "relayId": "relay-b", "meetingPoint": "hour-1"}])
    })
    .await;
    assert_eq!(
        carol_sees().await["deadDrops"],
        json!([{"peerId": "alice", "deadDrop": "sealed for bob", "relayId": "relay-a", "meetingPoint": "day-1"}])
    );
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn rendezvous_entries_expire_by_the_clock_of_the_node_asking() {
    const HOUR: Duration = Duration::from_secs(3600);
    let redis = RedisServer::start();
    let (first, second) = (node(&redis).await, node(&redis).await);
    let mut alice = first.connect().await;
    alice
        .request(
            json!({"type": "register_rendezvous", "peerId": "alice", "dailyPoints": ["day"],
                        "deadDrop": "sealed", "hourlyTokens": ["hour"]}),
        )
        .await;
    let mut bob = second.connect().await;
    let mut register_bob = async || {
        bob.request(
            json!({"type": "register_rendezvous", "peerId": "bob", "dailyPoints": ["day"],
                           "hourlyTokens": ["hour"]}),
        )
        .await
    };
    second.clock.advance(3 * HOUR - Duration::from_millis(1));
    let reply = register_bob().await;
    assert_eq!(reply["liveMatches"].as_array().unwrap().len(), 1);
    assert_eq!(reply["deadDrops"].as_array().unwrap().len(), 1);
    second.clock.advance(Duration::from_millis(1));
    let reply = register_bob().await;
    assert_eq!(
        reply["liveMatches"],
        json!([]),
        "hourly entries last 3 hours"
    );
    assert_eq!(reply["deadDrops"].as_array().unwrap().len(), 1);
    second.clock.advance(45 * HOUR);
    assert_eq!(
        register_bob().await["deadDrops"],
        json!([]),
        "daily entries last 48 hours"
    );
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn pairing_crosses_nodes_with_its_warnings_and_timeouts() {
    let redis = RedisServer::start();
    let (first, second) = (node(&redis).await, node(&redis).await);
    let mut alice = first.connect().await;
    register_code(&mut alice, "ALCE22", PUBLIC_KEY).await;
    let mut bob = second.connect().await;
    register_code(&mut bob, "BBBBB2", OTHER_KEY).await;

    alice
        .send_json(
            &json!({"type": "pair_request", "targetCode": "BBBBB2", "proposedName": "Alice"}),
        )
        .await;
    assert_eq!(
        bob.recv().await,
        json!({"type": "pair_incoming", "fromCode": "ALCE22", "fromPublicKey": PUBLIC_KEY,
               "expiresIn": 120000, "proposedName": "Alice"})
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
        alice.recv().await,
        json!({"type": "pair_matched", "peerCode": "BBBBB2", "peerPublicKey": OTHER_KEY,
               "isInitiator": true})
    );
    let reply = bob
        .request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}))
        .await;
    assert_eq!(
        reply["error"], "No pending request from this peer",
        "answered once"
    );

    // Unanswered: the requester's node keeps the timers, and both sides hear of them.
    alice
        .send_json(&json!({"type": "pair_request", "targetCode": "BBBBB2"}))
        .await;
    assert_eq!(bob.recv().await["type"], "pair_incoming");
    first.clock.advance(Duration::from_secs(90));
    for (peer, other) in [(&mut alice, "BBBBB2"), (&mut bob, "ALCE22")] {
        assert_eq!(
            peer.recv().await,
            json!({"type": "pair_expiring", "peerCode": other, "remainingSeconds": 30})
        );
    }
    first.clock.advance(Duration::from_secs(30));
    assert_eq!(
        alice.recv().await,
        json!({"type": "pair_timeout", "peerCode": "BBBBB2"})
    );
    let reply = bob
        .request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}))
        .await;
    assert_eq!(reply["type"], "pair_error", "timed out");

    // A target that leaves times its requesters out at once, wherever they are.
    alice
        .send_json(&json!({"type": "pair_request", "targetCode": "BBBBB2"}))
        .await;
    assert_eq!(bob.recv().await["type"], "pair_incoming");
    bob.ws.close(None).await.unwrap();
    assert_eq!(
        alice.recv().await,
        json!({"type": "pair_timeout", "peerCode": "BBBBB2"})
    );
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_web_client_links_to_a_phone_on_another_node() {
    const WEB_KEY: &str = OTHER_KEY;
    let redis = RedisServer::start();
    let (first, second) = (node(&redis).await, node(&redis).await);
    let mut phone = first.connect().await;
    register_code(&mut phone, "PHNE33", PUBLIC_KEY).await;
    let mut web = second.connect().await;
    register_code(&mut web, "WEBWEB", WEB_KEY).await;

    web.send_json(
        &json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY,
                          "deviceName": "Firefox"}),
    )
    .await;
    assert_eq!(
        phone.recv().await,
        json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY,
               "deviceName": "Firefox", "webClientCode": "WEBWEB", "expiresIn": 120000})
    );
    let reply = phone
        .request(
            json!({"type": "link_response", "linkCode": "PHNE33", "accepted": true,
                        "deviceId": "device-7"}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"type": "link_matched", "linkCode": "PHNE33", "peerPublicKey": WEB_KEY,
               "isInitiator": false, "webClientCode": "WEBWEB", "deviceName": "Firefox"})
    );
    assert_eq!(
        web.recv().await,
        json!({"type": "link_matched", "linkCode": "PHNE33", "peerPublicKey": PUBLIC_KEY,
               "isInitiator": true, "deviceId": "device-7"})
    );

    // The tunnel (PROTOCOL 2.8): signals without a target go to the other end, across the nodes.
    web.send_json(&json!({"type": "offer", "payload": {"sdp": "v=0 web"}}))
        .await;
    assert_eq!(
        phone.recv().await,
        json!({"type": "offer", "from": "WEBWEB", "payload": {"sdp": "v=0 web"}})
    );
    phone
        .send_json(&json!({"type": "answer", "payload": {"sdp": "v=0 phone"}}))
        .await;
    assert_eq!(
        web.recv().await,
        json!({"type": "answer", "from": "PHNE33", "payload": {"sdp": "v=0 phone"}})
    );

    // The web client's session ends while a request waits: the phone is told at once.
    web.send_json(&json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}))
        .await;
    assert_eq!(phone.recv().await["type"], "link_request");
    web.ws.close(None).await.unwrap();
    assert_eq!(
        phone.recv().await,
        json!({"type": "link_timeout", "linkCode": "PHNE33"})
    );
    // ... and its tunnel is gone with it.
    let reply = phone
        .request(json!({"type": "ice_candidate", "payload": {"candidate": "c"}}))
        .await;
    assert_eq!(reply["message"], "Missing required field: target");
    first.stop().await;
    second.stop().await;
}

/// Three nodes on the Redis at `redis_url`, a peer on each over another transport (WebSocket, raw QUIC,
/// WebTransport): they rendezvous, pair, signal and find each other's relays as on one server.
async fn three_nodes_serve_as_one(redis_url: String) {
    let mut config = test_config();
    config.cluster.redis_url = Some(redis_url);
    let ws_node = TestServer::start_with(config.clone()).await;
    let quic_node = TestServer::start_with(config.clone()).await;
    let wt_node = TestServer::start_with(config).await;
    let mut alice = ws_node.connect().await;
    let mut bob = QuicClient::connect(&quic_node).await;
    let mut carol = WebTransportClient::connect(&wt_node).await;

    // Rendezvous: a dead drop and a live match found across nodes, the earlier peers pushed.
    alice
        .request(json!({"type": "register_rendezvous", "peerId": "alice", "relayId": "relay-a",
                        "dailyPoints": ["day"], "deadDrop": "for friends", "hourlyTokens": ["hour"]}))
        .await;
    let reply = bob
        .request(
            &json!({"type": "register_rendezvous", "peerId": "bob", "relayId": "relay-b",
                         "dailyPoints": ["day"], "hourlyTokens": ["hour"], "requestId": 1}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"type": "rendezvous_result", "requestId": 1,
               "liveMatches": [{"peerId": "alice", "relayId": "relay-a", "meetingPoint": "hour"}],
               "deadDrops": [{"peerId": "alice", "deadDrop": "for friends", "relayId": "relay-a",
                              "meetingPoint": "day"}]})
    );
    let bob_match = json!({"type": "rendezvous_match",
                           "match": {"peerId": "bob", "relayId": "relay-b", "meetingPoint": "hour"}});
    assert_eq!(alice.recv().await, bob_match);
    let reply = carol
        .request(
            &json!({"type": "register_rendezvous", "peerId": "carol", "hourlyTokens": ["hour"]}),
        )
        .await;
    assert_eq!(peer_ids(&reply["liveMatches"]), ["alice", "bob"]);
    let carol_match = json!({"type": "rendezvous_match",
                             "match": {"peerId": "carol", "relayId": "", "meetingPoint": "hour"}});
    assert_eq!(alice.recv().await, carol_match);
    assert_eq!(recv_frame(&mut bob.pushes).await, carol_match);

    // Pairing codes: held once in the cluster; a pairing between QUIC and WebTransport.
    register_code(&mut alice, "ALCE22", PUBLIC_KEY).await;
    let reply = bob
        .request(&json!({"type": "register", "pairingCode": "ALCE22", "publicKey": OTHER_KEY}))
        .await;
    assert_eq!(reply["type"], "code_collision");
    bob.request(&json!({"type": "register", "pairingCode": "BBBBB2", "publicKey": OTHER_KEY}))
        .await;
    carol
        .request(&json!({"type": "register", "pairingCode": "CCCCC3", "publicKey": PUBLIC_KEY}))
        .await;
    let reply = bob
        .request(&json!({"type": "pair_request", "targetCode": "CCCCC3"}))
        .await;
    assert_eq!(reply, json!({"type": "ack", "for": "pair_request"}));
    assert_eq!(
        recv_frame(&mut carol.pushes).await,
        json!({"type": "pair_incoming", "fromCode": "BBBBB2", "fromPublicKey": OTHER_KEY,
               "expiresIn": 120000})
    );
    let reply = carol
        .request(&json!({"type": "pair_response", "targetCode": "BBBBB2", "accepted": true}))
        .await;
    assert_eq!(reply["type"], "pair_matched");
    assert_eq!(
        recv_frame(&mut bob.pushes).await,
        json!({"type": "pair_matched", "peerCode": "CCCCC3", "peerPublicKey": PUBLIC_KEY,
               "isInitiator": true})
    );

    // WebRTC signaling: offer, answer and ICE between all three.
    bob.request(&json!({"type": "offer", "target": "CCCCC3", "payload": {"sdp": "offer"}}))
        .await;
    assert_eq!(
        recv_frame(&mut carol.pushes).await,
        json!({"type": "offer", "from": "BBBBB2", "payload": {"sdp": "offer"}})
    );
    carol
        .request(&json!({"type": "answer", "target": "BBBBB2", "payload": {"sdp": "answer"}}))
        .await;
    assert_eq!(
        recv_frame(&mut bob.pushes).await,
        json!({"type": "answer", "from": "CCCCC3", "payload": {"sdp": "answer"}})
    );
    alice
        .send_json(
            &json!({"type": "ice_candidate", "target": "BBBBB2", "payload": {"candidate": "c1"}}),
        )
        .await;
    assert_eq!(
        recv_frame(&mut bob.pushes).await,
        json!({"type": "ice_candidate", "from": "ALCE22", "payload": {"candidate": "c1"}})
    );
    bob.request(
        &json!({"type": "ice_candidate", "target": "ALCE22", "payload": {"candidate": "c2"}}),
    )
    .await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "ice_candidate", "from": "BBBBB2", "payload": {"candidate": "c2"}})
    );

    // Relays registered on each node are listed on any.
    let mut relay_ws = ws_node.connect().await;
    relay_ws
        .request(json!({"type": "register", "peerId": "relay-ws"}))
        .await;
    let relay_quic = QuicClient::connect(&quic_node).await;
    relay_quic
        .request(&json!({"type": "register", "peerId": "relay-quic"}))
        .await;
    let relay_wt = WebTransportClient::connect(&wt_node).await;
    relay_wt
        .request(&json!({"type": "register", "peerId": "relay-wt"}))
        .await;
    let mut asker = ws_node.connect().await;
    let reply = asker
        .request(json!({"type": "get_relays", "peerId": "asker", "count": 10}))
        .await;
    assert_eq!(
        peer_ids(&reply["relays"]),
        ["relay-quic", "relay-ws", "relay-wt"]
    );

    ws_node.stop().await;
    quic_node.stop().await;
    wt_node.stop().await;
}

#[tokio::test]
async fn three_nodes_on_one_redis_serve_as_one() {
    let redis = RedisServer::start();
    three_nodes_serve_as_one(redis.url()).await;
}

#[tokio::test]
async fn three_nodes_on_a_redis_cluster_serve_as_one() {
    let redis = RedisCluster::start();
    three_nodes_serve_as_one(redis.url()).await;
    let holding_keys = redis
        .masters
        .iter()
        .filter(|master| master.cli(&["dbsize"]).trim() != "0")
        .count();
    assert_eq!(holding_keys, 3, "keys are spread over every master");
}

#[tokio::test]
async fn a_killed_node_frees_what_its_sessions_held_within_15_seconds_but_not_dead_drops() {
    let redis = RedisServer::start();
    let args = [
        "--ws-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--quic-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ];
    let url = redis.url();
    let (mut doomed, doomed_addr) = spawn_server_binary(&args, &[("ZAJEL_REDIS_URL", &url)]).await;
    let doomed_addr = doomed_addr.parse().unwrap();
    let survivor = node(&redis).await;

    let mut alice = Client::connect(doomed_addr).await;
    assert_eq!(
        register_code(&mut alice, "ALCE22", PUBLIC_KEY).await["type"],
        "registered"
    );
    alice
        .request(
            json!({"type": "register_rendezvous", "peerId": "ALCE22", "dailyPoints": ["day"],
                        "deadDrop": "kept", "hourlyTokens": ["hour"]}),
        )
        .await;
    let mut relay = Client::connect(doomed_addr).await;
    relay
        .request(json!({"type": "register", "peerId": "relay-doomed"}))
        .await;
    let mut carol = survivor.connect().await;
    register_code(&mut carol, "CCCCC3", OTHER_KEY).await;
    alice
        .send_json(&json!({"type": "pair_request", "targetCode": "CCCCC3"}))
        .await;
    assert_eq!(carol.recv().await["type"], "pair_incoming");

    assert_eq!(
        redis.cli(&["keys", "zajel:{held:*"]).lines().count(),
        2,
        "both nodes list what their sessions hold"
    );
    doomed.kill().await.unwrap();
    let killed = std::time::Instant::now();
    let mut asker = survivor.connect().await;
    let get_relays = json!({"type": "get_relays", "peerId": "asker"});
    while asker.request(get_relays.clone()).await["relays"] != json!([]) {
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "the dead node's relay is still listed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut mallory = survivor.connect().await;
    assert_eq!(
        register_code(&mut mallory, "ALCE22", OTHER_KEY).await["type"],
        "registered",
        "a dead node's codes are free"
    );
    let reply = carol
        .request(
            json!({"type": "register_rendezvous", "peerId": "CCCCC3", "dailyPoints": ["day"],
                        "hourlyTokens": ["hour"]}),
        )
        .await;
    assert_eq!(
        reply["liveMatches"],
        json!([]),
        "a dead node's hourly entries match no one"
    );
    assert_eq!(
        reply["deadDrops"],
        json!([{"peerId": "ALCE22", "deadDrop": "kept", "relayId": "", "meetingPoint": "day"}])
    );
    let reply = carol
        .request(json!({"type": "pair_response", "targetCode": "ALCE22", "accepted": true}))
        .await;
    assert_eq!(
        reply["type"], "pair_error",
        "a dead node's requests are gone"
    );
    assert!(killed.elapsed() < Duration::from_secs(15));

    // Reaped from Redis too: only the survivor lists holdings.
    eventually("the dead node is reaped", async || {
        redis.cli(&["keys", "zajel:{held:*"]).lines().count() <= 1
            && redis.cli(&["smembers", "zajel:{nodes}"]).lines().count() == 1
    })
    .await;
    survivor.stop().await;
}

#[tokio::test]
async fn redis_lost_answers_unavailable_and_redis_back_restores_every_live_session() {
    let mut redis = RedisServer::start();
    let (first, second) = (node(&redis).await, node(&redis).await);
    let mut alice = first.connect().await;
    register_code(&mut alice, "ALCE22", PUBLIC_KEY).await;
    let hourly =
        json!({"type": "register_rendezvous", "peerId": "ALCE22", "hourlyTokens": ["hour"]});
    alice.request(hourly.clone()).await;
    let mut relay = first.connect().await;
    relay
        .request(json!({"type": "register", "peerId": "relay-one", "maxConnections": 10}))
        .await;
    relay
        .request(json!({"type": "update_load", "peerId": "relay-one", "connectedCount": 1}))
        .await;
    let mut bob = second.connect().await;
    register_code(&mut bob, "BBBBB2", OTHER_KEY).await;

    redis.kill();
    let reply = alice.request(hourly.clone()).await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "unavailable");
    assert_eq!(alice.request(json!({"type": "ping"})).await["type"], "pong");
    assert_eq!(first.health().await["status"], "degraded");
    assert_eq!(first.health().await["cluster"]["redis"], "unreachable");
    assert_eq!(
        first.get_json("/ready").await,
        (503, json!({"ready": false, "reason": "store unreachable"})),
        "a load balancer sends new clients elsewhere"
    );

    // Redis comes back empty: each node announces again what its live sessions hold (names first,
    // then relays and hourly entries).
    redis.restart();
    let mut carol = second.connect().await;
    eventually("alice's hourly entry is back", async || {
        let reply = carol
            .request(
                json!({"type": "register_rendezvous", "peerId": "carol", "hourlyTokens": ["hour"]}),
            )
            .await;
        reply["liveMatches"] == json!([{"peerId": "ALCE22", "relayId": "", "meetingPoint": "hour"}])
    })
    .await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "rendezvous_match", "match": {"peerId": "carol", "relayId": "", "meetingPoint": "hour"}})
    );
    let mut mallory = second.connect().await;
    assert_eq!(
        register_code(&mut mallory, "ALCE22", OTHER_KEY).await["type"],
        "code_collision",
        "alice's code is hers again"
    );
    assert_eq!(first.health().await["status"], "healthy");
    let reply = carol
        .request(json!({"type": "get_relays", "peerId": "carol"}))
        .await;
    assert_eq!(
        reply["relays"],
        json!([{"peerId": "relay-one", "publicKey": null, "capacity": 0.1}]),
        "the relay is listed again, with its load"
    );
    eventually("deliveries cross nodes again", async || {
        bob.send_json(&json!({"type": "offer", "target": "ALCE22", "payload": {"sdp": "o"}}))
            .await;
        bob.request(json!({"type": "ping"})).await;
        matches!(
            tokio::time::timeout(Duration::from_millis(200), alice.recv()).await,
            Ok(message) if message["type"] == "offer"
        )
    })
    .await;
    first.stop().await;
    second.stop().await;
}
