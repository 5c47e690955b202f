//! The session layer without any transport, one file per message family (as `src/session/` is): the
//! handler cases, identity binding, cleanup, pushes, with an injected clock.

mod limits;
mod linking;
mod names;
mod pairing;
mod relay;
mod rendezvous;
mod signal;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};
use zajel_signal::admission::{Admissions, OverCapacity};
use zajel_signal::identity::ServerIdentity;
use zajel_signal::protocol::codec::{Encoding, decode, encode};
use zajel_signal::protocol::{RequestId, ServerMessage};
use zajel_signal::push::PushReceiver;
use zajel_signal::registry::Swept;
use zajel_signal::session::{Session, Sessions, Transport};
use zajel_signal::state::SharedState;
use zajel_signal::{Config, ManualClock};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PUBLIC_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8=";
/// The key a web client links with.
const WEB_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// The key the web client registered its own pairing code with (not the one it links with).
const WEB_CODE_KEY: &str = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";

struct Fixture {
    sessions: Sessions,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Self {
        Self::with_config({
            let mut config = Config::default();
            config.identity.server_id = Some("srv".into());
            config
        })
    }

    fn with_config(config: Config) -> Self {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let state = SharedState::with_rng(
            clock.clone(),
            &config.rendezvous,
            &config.pairing,
            SmallRng::seed_from_u64(1),
        );
        let sessions = Sessions::new(
            state,
            Admissions::new(config.admission, clock.clone()),
            config.sessions,
            ServerIdentity {
                server_id: config.identity.server_id.as_deref().unwrap_or("srv").into(),
                endpoint: None,
                region: None,
            },
        );
        Self { sessions, clock }
    }

    async fn open(&self) -> Peer {
        self.open_from(LOCALHOST).await
    }

    /// A session from another address than the others'.
    async fn open_from(&self, ip: IpAddr) -> Peer {
        let (session, pushes) = self
            .sessions
            .open(ip, Transport::WebSocket, Encoding::Json)
            .expect("admitted");
        let mut peer = Peer {
            session,
            pushes,
            state: self.sessions.state().clone(),
        };
        assert_eq!(peer.next_push().await.unwrap()["type"], "server_info");
        peer
    }
}

struct Peer {
    session: Session,
    pushes: PushReceiver,
    state: SharedState,
}

impl Peer {
    /// Sends one JSON request and returns the reply as JSON, exactly as a WebSocket client would see it.
    async fn request(&self, message: Value) -> Value {
        let reply = self
            .session
            .handle(
                decode(message.to_string().as_bytes(), Encoding::Json),
                Encoding::Json,
            )
            .await;
        to_json(&reply.message, reply.request_id.as_ref())
    }

    /// The next push, once every operation sent so far (by anyone) has run.
    async fn next_push(&mut self) -> Option<Value> {
        self.state.settled().await.expect("the state runs");
        self.pushes
            .try_recv()
            .map(|push| serde_json::from_slice(&push.bytes).expect("pushes are JSON here"))
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

/// Two sessions with pairing codes, as the pairing tests need them.
async fn paired_fixture() -> (Fixture, Peer, Peer) {
    let fixture = Fixture::new();
    let alice = fixture.open().await;
    let bob = fixture.open().await;
    for (peer, code, key) in [(&alice, "ALCE22", PUBLIC_KEY), (&bob, "BBBBB2", OTHER_KEY)] {
        let reply = peer
            .request(json!({"type": "register", "pairingCode": code, "publicKey": key}))
            .await;
        assert_eq!(reply["type"], "registered", "{reply}");
    }
    (fixture, alice, bob)
}

/// A phone (code PHNE33) and a web client (code WEBWEB) with their own keys.
async fn linking_fixture() -> (Fixture, Peer, Peer) {
    let fixture = Fixture::new();
    let phone = fixture.open().await;
    let web = fixture.open().await;
    for (peer, code, key) in [
        (&phone, "PHNE33", PUBLIC_KEY),
        (&web, "WEBWEB", WEB_CODE_KEY),
    ] {
        let reply = peer
            .request(json!({"type": "register", "pairingCode": code, "publicKey": key}))
            .await;
        assert_eq!(reply["type"], "registered", "{reply}");
    }
    (fixture, phone, web)
}
