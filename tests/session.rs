//! The session layer without any transport: the seed's handler cases, identity binding, cleanup, pushes.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};
use zajel_signal::hub::{Hub, OverCapacity, Settings};
use zajel_signal::protocol::codec::{Encoding, decode, encode};
use zajel_signal::protocol::{RequestId, ServerMessage};
use zajel_signal::registry::Swept;
use zajel_signal::session::Session;
use zajel_signal::session::push::PushReceiver;
use zajel_signal::{Config, ManualClock};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PUBLIC_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8=";

struct Fixture {
    hub: Hub,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Self {
        Self::with_config(Config {
            server_id: Some("srv".into()),
            ..Config::default()
        })
    }

    fn with_config(config: Config) -> Self {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let hub = Hub::with_rng(
            Settings::from_config(&config),
            clock.clone(),
            SmallRng::seed_from_u64(1),
        );
        Self { hub, clock }
    }

    fn open(&self) -> Peer {
        let (session, pushes) = Session::open(&self.hub, LOCALHOST).expect("admitted");
        let mut peer = Peer { session, pushes };
        assert_eq!(peer.next_push().unwrap()["type"], "server_info");
        peer
    }
}

struct Peer {
    session: Session,
    pushes: PushReceiver,
}

impl Peer {
    /// Sends one JSON request and returns the reply as JSON, exactly as a WebSocket client would see it.
    fn request(&self, message: Value) -> Value {
        let reply = self
            .session
            .handle(decode(message.to_string().as_bytes(), Encoding::Json));
        to_json(&reply.message, reply.request_id.as_ref())
    }

    fn next_push(&mut self) -> Option<Value> {
        self.pushes
            .try_recv()
            .map(|message| to_json(&message, None))
    }
}

fn to_json(message: &ServerMessage, request_id: Option<&RequestId>) -> Value {
    serde_json::from_slice(&encode(message, request_id, Encoding::Json)).unwrap()
}

fn relay_ids(reply: &Value) -> Vec<String> {
    let mut ids: Vec<String> = reply["relays"]
        .as_array()
        .expect("a relay list")
        .iter()
        .map(|r| r["peerId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

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
fn register_rendezvous_answers_rendezvous_result_with_live_matches_and_dead_drops() {
    let fixture = Fixture::new();
    let alice = fixture.open();
    let bob = fixture.open();
    alice.request(
        json!({"type": "register_rendezvous", "peerId": "alice", "relayId": "ra",
                         "dailyPoints": ["d1"], "deadDrop": "hello", "hourlyTokens": ["h1"]}),
    );
    let reply = bob.request(json!({"type": "register_rendezvous", "peerId": "bob",
                                   "dailyPoints": ["d1"], "hourlyTokens": ["h1"]}));
    assert_eq!(
        reply,
        json!({"type": "rendezvous_result",
               "liveMatches": [{"peerId": "alice", "relayId": "ra", "meetingPoint": "h1"}],
               "deadDrops": [{"peerId": "alice", "deadDrop": "hello", "relayId": "ra", "meetingPoint": "d1"}]})
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
fn the_earlier_peer_is_pushed_the_newcomer_once_per_request() {
    let fixture = Fixture::new();
    let mut alice = fixture.open();
    let bob = fixture.open();
    alice.request(
        json!({"type": "register_rendezvous", "peerId": "alice", "hourlyTokens": ["t1", "t2"]}),
    );
    bob.request(
        json!({"type": "register_rendezvous", "peerId": "bob", "relayId": "rb",
                       "hourlyTokens": ["t2", "t1"]}),
    );
    assert_eq!(
        alice.next_push(),
        Some(json!({"type": "rendezvous_match",
                    "match": {"peerId": "bob", "relayId": "rb", "meetingPoint": "t2"}}))
    );
    assert_eq!(
        alice.next_push(),
        None,
        "one push per request, not per token"
    );
}

#[test]
fn only_hourly_tokens_produce_pushes() {
    let fixture = Fixture::new();
    let mut alice = fixture.open();
    let bob = fixture.open();
    alice.request(json!({"type": "register_rendezvous", "peerId": "alice", "dailyPoints": ["d"], "deadDrop": "x"}));
    let reply =
        bob.request(json!({"type": "register_rendezvous", "peerId": "bob", "dailyPoints": ["d"]}));
    assert_eq!(reply["deadDrops"].as_array().unwrap().len(), 1);
    assert_eq!(alice.next_push(), None);
}

#[test]
fn hourly_matches_expire_with_the_clock() {
    let fixture = Fixture::new();
    let alice = fixture.open();
    let bob = fixture.open();
    alice.request(json!({"type": "register_rendezvous", "peerId": "alice", "hourlyTokens": ["h"]}));
    fixture.clock.advance(Duration::from_secs(3 * 3600));
    let reply =
        bob.request(json!({"type": "register_rendezvous", "peerId": "bob", "hourlyTokens": ["h"]}));
    assert_eq!(reply["liveMatches"], json!([]));
    assert_eq!(
        fixture.hub.sweep_expired_batch(),
        Swept {
            removed: 1,
            done: true
        },
        "alice's expired token is swept"
    );
}

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

#[test]
fn a_full_push_queue_signals_the_transport_to_close() {
    let fixture = Fixture::with_config(Config {
        push_queue: 2,
        ..Config::default()
    });
    let sleeper = fixture.open();
    let overflowed = sleeper.pushes.overflow_signal();
    sleeper.request(
        json!({"type": "register_rendezvous", "peerId": "sleeper", "hourlyTokens": ["t"]}),
    );
    let busy = fixture.open();
    for _ in 0..3 {
        busy.request(
            json!({"type": "register_rendezvous", "peerId": "busy", "hourlyTokens": ["t"]}),
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), overflowed.notified())
            .await
            .expect("overflow signalled");
    });
}

#[test]
fn sessions_beyond_the_limits_are_refused() {
    let fixture = Fixture::with_config(Config {
        max_sessions: 3,
        max_sessions_per_ip: 2,
        ..Config::default()
    });
    let first = fixture.open();
    let _second = fixture.open();
    assert_eq!(
        Session::open(&fixture.hub, LOCALHOST).err(),
        Some(OverCapacity)
    );
    let other_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (_third, _) = Session::open(&fixture.hub, other_ip).expect("another address has room");
    assert!(
        Session::open(&fixture.hub, other_ip).is_err(),
        "total limit"
    );
    drop(first);
    assert!(Session::open(&fixture.hub, LOCALHOST).is_ok());
}

#[test]
fn a_full_rendezvous_registry_refuses_registrations_and_the_session_goes_on() {
    let fixture = Fixture::with_config(Config {
        max_list_entries: 2,
        max_rendezvous_entries: 4,
        ..Config::default()
    });
    let session = fixture.open();
    let reply = session.request(json!({"type": "register_rendezvous", "peerId": "a",
                                       "dailyPoints": ["d1", "d2"], "hourlyTokens": ["h1"]}));
    assert_eq!(reply["type"], "rendezvous_result");
    let reply = session.request(json!({"type": "register_rendezvous", "peerId": "a",
                                       "dailyPoints": ["d3", "d4"], "requestId": 9}));
    assert_eq!(reply["code"], "over_capacity");
    assert_eq!(reply["requestId"], 9);
    // A refused registration does not bind the name of a session that had none.
    let newcomer = fixture.open();
    let reply = newcomer.request(json!({"type": "register_rendezvous", "peerId": "b",
                                        "dailyPoints": ["d5", "d6"]}));
    assert_eq!(reply["code"], "over_capacity");
    let reply = newcomer.request(json!({"type": "register", "peerId": "c"}));
    assert_eq!(
        reply["type"], "registered",
        "the session is still free to take a name"
    );
    fixture.clock.advance(Duration::from_secs(3 * 3600));
    assert!(fixture.hub.sweep_expired_batch().done);
    let reply = session
        .request(json!({"type": "register_rendezvous", "peerId": "a", "hourlyTokens": ["h2"]}));
    assert_eq!(
        reply["type"], "rendezvous_result",
        "room again once entries expire"
    );
    assert_eq!(session.request(json!({"type": "ping"}))["type"], "pong");
}

#[test]
fn signals_reach_the_target_code_unchanged_and_are_acknowledged() {
    let fixture = Fixture::new();
    let caller = fixture.open();
    let mut callee = fixture.open();
    caller.request(json!({"type": "register", "pairingCode": "CALLER", "publicKey": PUBLIC_KEY}));
    callee.request(json!({"type": "register", "pairingCode": "CALLEE", "publicKey": PUBLIC_KEY}));
    let payload = json!({"sdp": "v=0\r\n", "nested": [1, 2.5, null, {"k": "ü"}]});
    let reply = caller.request(
        json!({"type": "offer", "target": "CALLEE", "payload": payload,
                                      "requestId": 3}),
    );
    assert_eq!(
        reply,
        json!({"type": "ack", "for": "offer", "requestId": 3})
    );
    assert_eq!(
        callee.next_push(),
        Some(json!({"type": "offer", "from": "CALLER", "payload": payload}))
    );
}

#[test]
fn signals_need_a_pairing_code_and_a_live_target_code() {
    let fixture = Fixture::new();
    let sender = fixture.open();
    let relay = fixture.open();
    relay.request(json!({"type": "register", "peerId": "RELAY2"}));
    let offer = |target: &str| json!({"type": "offer", "target": target, "payload": {}});
    assert_eq!(sender.request(offer("RELAY2"))["code"], "not_registered");
    sender.request(json!({"type": "register", "pairingCode": "SENDER", "publicKey": PUBLIC_KEY}));
    assert_eq!(sender.request(offer("NBDY23"))["code"], "peer_not_found");
    assert_eq!(
        sender.request(offer("RELAY2"))["code"],
        "peer_not_found",
        "a relay id is not a pairing code"
    );
    assert_eq!(sender.request(offer("bad code"))["code"], "invalid_message");
    let reply = sender.request(json!({"type": "call_offer", "target": "SENDER",
                                      "payload": {"callId": "nope", "sdp": "v=0"}}));
    assert_eq!(reply["code"], "invalid_message");
    assert!(reply["message"].as_str().unwrap().contains("callId"));
}

#[test]
fn ping_and_request_ids() {
    let fixture = Fixture::new();
    let session = fixture.open();
    assert_eq!(
        session.request(json!({"type": "ping", "requestId": "x"})),
        json!({"type": "pong", "requestId": "x"})
    );
    assert_eq!(
        session.request(json!({"type": "heartbeat", "request_id": 5})),
        json!({"type": "heartbeat_ack", "timestamp": 1_700_000_000_000u64, "requestId": 5})
    );
}

/// Two sessions with pairing codes, as the pairing tests need them.
fn paired_fixture() -> (Fixture, Peer, Peer) {
    let fixture = Fixture::new();
    let alice = fixture.open();
    let bob = fixture.open();
    for (peer, code, key) in [(&alice, "ALCE22", PUBLIC_KEY), (&bob, "BBBBB2", OTHER_KEY)] {
        let reply =
            peer.request(json!({"type": "register", "pairingCode": code, "publicKey": key}));
        assert_eq!(reply["type"], "registered", "{reply}");
    }
    (fixture, alice, bob)
}

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
    assert_eq!(fixture.hub.run_pairing_timers(), 0);
    fixture.clock.advance(Duration::from_millis(1));
    assert_eq!(fixture.hub.run_pairing_timers(), 1);
    assert_eq!(
        alice.next_push(),
        Some(json!({"type": "pair_expiring", "peerCode": "BBBBB2", "remainingSeconds": 30}))
    );
    assert_eq!(
        bob.next_push(),
        Some(json!({"type": "pair_expiring", "peerCode": "ALCE22", "remainingSeconds": 30}))
    );
    fixture.clock.advance(Duration::from_secs(30));
    assert_eq!(fixture.hub.run_pairing_timers(), 1);
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
        fixture.hub.run_pairing_timers(),
        0,
        "no timers are left behind"
    );
}

#[test]
fn messages_over_the_rate_get_rate_limited_and_the_session_goes_on() {
    let fixture = Fixture::new();
    let session = fixture.open();
    for _ in 0..100 {
        assert_eq!(session.request(json!({"type": "ping"}))["type"], "pong");
    }
    let reply = session.request(json!({"type": "ping", "requestId": "over"}));
    assert_eq!(reply["code"], "rate_limited");
    assert_eq!(reply["requestId"], "over");
    assert_eq!(
        session.request(json!({"not": "even a message"}))["code"],
        "rate_limited",
        "every message counts, well-formed or not"
    );
    fixture.clock.advance(Duration::from_millis(600));
    assert_eq!(
        session.request(json!({"type": "ping"}))["type"],
        "pong",
        "one earned back"
    );
    assert_eq!(
        session.request(json!({"type": "ping"}))["code"],
        "rate_limited"
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

const WEB_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// The key the web client registered its own pairing code with (not the one it links with).
const WEB_CODE_KEY: &str = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";

/// A phone (code PHNE33) and a web client (code WEBWEB) with their own keys.
fn linking_fixture() -> (Fixture, Peer, Peer) {
    let fixture = Fixture::new();
    let phone = fixture.open();
    let web = fixture.open();
    for (peer, code, key) in [
        (&phone, "PHNE33", PUBLIC_KEY),
        (&web, "WEBWEB", WEB_CODE_KEY),
    ] {
        let reply =
            peer.request(json!({"type": "register", "pairingCode": code, "publicKey": key}));
        assert_eq!(reply["type"], "registered", "{reply}");
    }
    (fixture, phone, web)
}

#[test]
fn an_accepted_link_request_matches_the_web_client_and_the_phone() {
    let (_fixture, mut phone, mut web) = linking_fixture();
    let reply = web.request(json!({"type": "link_request", "linkCode": "PHNE33",
                                   "publicKey": WEB_KEY, "deviceName": "Firefox on Linux"}));
    assert_eq!(reply, json!({"type": "ack", "for": "link_request"}));
    assert_eq!(
        phone.next_push(),
        Some(
            json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY,
                    "deviceName": "Firefox on Linux", "expiresIn": 120000})
        )
    );
    let reply = phone.request(json!({"type": "link_response", "linkCode": "PHNE33",
                                     "accepted": true, "deviceId": "device-7"}));
    assert_eq!(
        reply,
        json!({"type": "link_matched", "linkCode": "PHNE33", "peerPublicKey": WEB_KEY,
               "isInitiator": false, "webClientCode": "WEBWEB", "deviceName": "Firefox on Linux"})
    );
    assert_eq!(
        web.next_push(),
        Some(
            json!({"type": "link_matched", "linkCode": "PHNE33", "peerPublicKey": PUBLIC_KEY,
                    "isInitiator": true, "deviceId": "device-7"})
        )
    );
}

#[test]
fn a_refused_link_request_tells_the_web_client() {
    let (_fixture, phone, mut web) = linking_fixture();
    web.request(json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}));
    let reply =
        phone.request(json!({"type": "link_response", "linkCode": "PHNE33", "accepted": false}));
    assert_eq!(reply, json!({"type": "ack", "for": "link_response"}));
    assert_eq!(
        web.next_push(),
        Some(json!({"type": "link_rejected", "linkCode": "PHNE33"}))
    );
}

#[test]
fn an_unanswered_link_request_times_out_for_both_sides() {
    let (fixture, mut phone, mut web) = linking_fixture();
    web.request(json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}));
    phone.next_push();
    fixture.clock.advance(Duration::from_secs(120));
    assert_eq!(fixture.hub.run_pairing_timers(), 1);
    for peer in [&mut phone, &mut web] {
        assert_eq!(
            peer.next_push(),
            Some(json!({"type": "link_timeout", "linkCode": "PHNE33"}))
        );
    }
}

#[test]
fn the_phone_is_told_at_once_when_the_web_client_leaves() {
    let (fixture, mut phone, web) = linking_fixture();
    web.request(json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}));
    phone.next_push();
    drop(web);
    assert_eq!(
        phone.next_push(),
        Some(json!({"type": "link_timeout", "linkCode": "PHNE33"}))
    );
    fixture.clock.advance(Duration::from_secs(200));
    assert_eq!(
        fixture.hub.run_pairing_timers(),
        0,
        "no timer is left behind"
    );
}

#[test]
fn link_requests_and_answers_are_checked() {
    let (fixture, phone, web) = linking_fixture();
    let refused = json!({"type": "link_error", "error": "Link request could not be processed"});
    assert_eq!(
        web.request(json!({"type": "link_request", "linkCode": "NNNNN3", "publicKey": WEB_KEY})),
        refused
    );
    let stranger = fixture.open();
    assert_eq!(
        stranger
            .request(json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}))["code"],
        "not_registered"
    );
    // Only the phone that owns the code may answer for it.
    web.request(json!({"type": "link_request", "linkCode": "PHNE33", "publicKey": WEB_KEY}));
    let reply =
        web.request(json!({"type": "link_response", "linkCode": "PHNE33", "accepted": true}));
    assert_eq!(reply["code"], "invalid_message");
    let reply =
        phone.request(json!({"type": "link_response", "linkCode": "PHNE33", "accepted": true}));
    assert_eq!(reply["type"], "link_matched");
    let reply =
        phone.request(json!({"type": "link_response", "linkCode": "PHNE33", "accepted": true}));
    assert_eq!(
        reply,
        json!({"type": "link_error", "error": "No pending link request"})
    );
}

#[test]
fn every_signal_type_is_forwarded() {
    let (_fixture, alice, mut bob) = paired_fixture();
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
        let reply = alice.request(json!({"type": kind, "target": "BBBBB2", "payload": payload}));
        assert_eq!(reply, json!({"type": "ack", "for": kind}));
        assert_eq!(
            bob.next_push(),
            Some(json!({"type": kind, "from": "ALCE22", "payload": payload}))
        );
    }
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
    assert_eq!(fixture.hub.run_pairing_timers(), 0);
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
