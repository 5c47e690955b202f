//! The rendezvous family through the session layer: results, `rendezvous_match` pushes, expiry, capacity.

use super::*;

#[tokio::test]
async fn register_rendezvous_answers_rendezvous_result_with_live_matches_and_dead_drops() {
    let fixture = Fixture::new();
    let alice = fixture.open().await;
    let bob = fixture.open().await;
    alice
        .request(
            json!({"type": "register_rendezvous", "peerId": "alice", "relayId": "ra",
                         "dailyPoints": ["d1"], "deadDrop": "hello", "hourlyTokens": ["h1"]}),
        )
        .await;
    let reply = bob
        .request(json!({"type": "register_rendezvous", "peerId": "bob",
                                   "dailyPoints": ["d1"], "hourlyTokens": ["h1"]}))
        .await;
    assert_eq!(
        reply,
        json!({"type": "rendezvous_result",
               "liveMatches": [{"peerId": "alice", "relayId": "ra", "meetingPoint": "h1"}],
               "deadDrops": [{"peerId": "alice", "deadDrop": "hello", "relayId": "ra", "meetingPoint": "d1"}]})
    );
}

#[tokio::test]
async fn the_earlier_peer_is_pushed_the_newcomer_once_per_request() {
    let fixture = Fixture::new();
    let mut alice = fixture.open().await;
    let bob = fixture.open().await;
    alice
        .request(
            json!({"type": "register_rendezvous", "peerId": "alice", "hourlyTokens": ["t1", "t2"]}),
        )
        .await;
    bob.request(
        json!({"type": "register_rendezvous", "peerId": "bob", "relayId": "rb",
                       "hourlyTokens": ["t2", "t1"]}),
    )
    .await;
    assert_eq!(
        alice.next_push().await,
        Some(json!({"type": "rendezvous_match",
                    "match": {"peerId": "bob", "relayId": "rb", "meetingPoint": "t2"}}))
    );
    assert_eq!(
        alice.next_push().await,
        None,
        "one push per request, not per token"
    );
}

#[tokio::test]
async fn only_hourly_tokens_produce_pushes() {
    let fixture = Fixture::new();
    let mut alice = fixture.open().await;
    let bob = fixture.open().await;
    alice.request(json!({"type": "register_rendezvous", "peerId": "alice", "dailyPoints": ["d"], "deadDrop": "x"})).await;
    let reply = bob
        .request(json!({"type": "register_rendezvous", "peerId": "bob", "dailyPoints": ["d"]}))
        .await;
    assert_eq!(reply["deadDrops"].as_array().unwrap().len(), 1);
    assert_eq!(alice.next_push().await, None);
}

#[tokio::test]
async fn hourly_matches_expire_with_the_clock() {
    let fixture = Fixture::new();
    let alice = fixture.open().await;
    let bob = fixture.open().await;
    alice
        .request(json!({"type": "register_rendezvous", "peerId": "alice", "hourlyTokens": ["h"]}))
        .await;
    fixture.clock.advance(Duration::from_secs(3 * 3600));
    let reply = bob
        .request(json!({"type": "register_rendezvous", "peerId": "bob", "hourlyTokens": ["h"]}))
        .await;
    assert_eq!(reply["liveMatches"], json!([]));
    assert_eq!(
        fixture
            .sessions
            .state()
            .sweep_expired_batch()
            .await
            .unwrap(),
        Swept {
            removed: 1,
            done: true
        },
        "alice's expired token is swept"
    );
}

#[tokio::test]
async fn a_full_rendezvous_registry_refuses_registrations_and_the_session_goes_on() {
    let fixture = Fixture::with_config({
        let mut config = Config::default();
        config.sessions.max_list_entries = 2;
        config.rendezvous.max_rendezvous_entries = 4;
        config
    });
    let session = fixture.open().await;
    let reply = session
        .request(json!({"type": "register_rendezvous", "peerId": "a",
                                       "dailyPoints": ["d1", "d2"], "hourlyTokens": ["h1"]}))
        .await;
    assert_eq!(reply["type"], "rendezvous_result");
    let reply = session
        .request(json!({"type": "register_rendezvous", "peerId": "a",
                                       "dailyPoints": ["d3", "d4"], "requestId": 9}))
        .await;
    assert_eq!(reply["code"], "over_capacity");
    assert_eq!(reply["requestId"], 9);
    // A refused registration does not bind the name of a session that had none.
    let newcomer = fixture.open().await;
    let reply = newcomer
        .request(json!({"type": "register_rendezvous", "peerId": "b",
                                        "dailyPoints": ["d5", "d6"]}))
        .await;
    assert_eq!(reply["code"], "over_capacity");
    let reply = newcomer
        .request(json!({"type": "register", "peerId": "c"}))
        .await;
    assert_eq!(
        reply["type"], "registered",
        "the session is still free to take a name"
    );
    fixture.clock.advance(Duration::from_secs(3 * 3600));
    assert!(
        fixture
            .sessions
            .state()
            .sweep_expired_batch()
            .await
            .unwrap()
            .done
    );
    let reply = session
        .request(json!({"type": "register_rendezvous", "peerId": "a", "hourlyTokens": ["h2"]}))
        .await;
    assert_eq!(
        reply["type"], "rendezvous_result",
        "room again once entries expire"
    );
    assert_eq!(
        session.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
}

/// A registration of `count` daily points and `count` hourly tokens named after `prefix`.
fn big_registration(peer_id: &str, prefix: &str, count: usize) -> Value {
    let points: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    json!({"type": "register_rendezvous", "peerId": peer_id, "dailyPoints": points,
           "hourlyTokens": points})
}

#[tokio::test]
async fn a_registration_costs_message_tokens_by_its_size() {
    let fixture = Fixture::with_config({
        let mut config = Config::default();
        config.admission.rendezvous_entries_per_minute_per_ip = 1_000_000;
        config.rendezvous.max_rendezvous_entries_per_ip = 1_000_000;
        config
    });
    let session = fixture.open().await;
    // 2000 entries cost 1 + 20 tokens of the burst of 100: four fit, the fifth does not.
    for round in 0..4 {
        let reply = session
            .request(big_registration("p", &format!("r{round}-"), 1000))
            .await;
        assert_eq!(reply["type"], "rendezvous_result", "{reply}");
    }
    let reply = session.request(big_registration("p", "r4-", 1000)).await;
    assert_eq!(reply["code"], "rate_limited");
    assert_eq!(
        session.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
}

#[tokio::test]
async fn the_sessions_of_one_address_share_its_rendezvous_budget() {
    let fixture = Fixture::with_config({
        let mut config = Config::default();
        config.admission.rendezvous_entries_per_minute_per_ip = 2000;
        config
    });
    let first = fixture.open().await;
    let reply = first.request(big_registration("first", "a", 1000)).await;
    assert_eq!(reply["type"], "rendezvous_result", "{reply}");
    drop(first);
    let second = fixture.open().await;
    let small = json!({"type": "register_rendezvous", "peerId": "second", "hourlyTokens": ["h"]});
    assert_eq!(
        second.request(small.clone()).await["code"],
        "rate_limited",
        "the address spent its budget, whichever session asks"
    );
    fixture.clock.advance(Duration::from_secs(1));
    assert_eq!(
        second.request(small).await["type"],
        "rendezvous_result",
        "33 entries earned back in a second"
    );
}
