//! Many nodes on one Redis: names held once in the whole cluster, deliveries across nodes. Each test
//! starts its own `redis-server` and nodes on loopback.

mod common;

use common::redis::RedisServer;
use common::{Client, PUBLIC_KEY, TestServer, test_config};
use serde_json::json;

const OTHER_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

async fn node(redis: &RedisServer) -> TestServer {
    let mut config = test_config();
    config.cluster.redis_url = Some(redis.url());
    TestServer::start_with(config).await
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
    tokio::time::timeout(common::PATIENCE, async {
        loop {
            if register_code(&mut returning, "ABC234", PUBLIC_KEY).await["type"] == "registered" {
                break;
            }
        }
    })
    .await
    .expect("the code is released in time");
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
