//! Being listed in the Zajel bootstrap directory (PROTOCOL section 3), against a stand-in directory
//! written from the protocol: registration, heartbeats with live counts, unregistration at shutdown,
//! and a server that keeps serving whatever the directory does.

mod common;

use base64::Engine as _;
use common::directory::{Behaviour, DirectoryStandIn, Seen};
use common::{PATIENCE, PUBLIC_KEY, TestServer, spawn_server_binary, test_config};
use serde_json::json;

const ENDPOINT: &str = "wss://signal.example.org/ws";
const SECRET: &str = "directory-secret";

fn is_registration(seen: &Seen) -> bool {
    seen.method == "POST" && seen.path == "/servers"
}

fn is_heartbeat(seen: &Seen) -> bool {
    seen.method == "POST" && seen.path == "/servers/heartbeat"
}

fn is_unregistration(seen: &Seen) -> bool {
    seen.method == "DELETE" && seen.path.starts_with("/servers/")
}

fn counts(seen: &Seen) -> [u64; 4] {
    [
        "connections",
        "relayConnections",
        "signalingConnections",
        "activeCodes",
    ]
    .map(|field| seen.body[field].as_u64().expect("a count"))
}

#[tokio::test]
async fn the_binary_registers_sends_live_counts_and_unregisters_on_sigterm() {
    let directory = DirectoryStandIn::start(Behaviour::Working).await;
    let url = directory.url();
    let (mut child, addr) = spawn_server_binary(
        &[],
        &[
            ("ZAJEL_WS_LISTEN", "127.0.0.1:0"),
            ("ZAJEL_QUIC_LISTEN", "127.0.0.1:0"),
            ("ZAJEL_BOOTSTRAP_URL", &url),
            ("ZAJEL_BOOTSTRAP_ALLOW_INSECURE", "true"),
            ("ZAJEL_BOOTSTRAP_SECRET", SECRET),
            ("ZAJEL_BOOTSTRAP_HEARTBEAT_SECS", "1"),
            ("ZAJEL_ENDPOINT", ENDPOINT),
        ],
    )
    .await;

    let registration = directory
        .any_matching("registration", is_registration)
        .await;
    let public_key = registration.body["publicKey"].as_str().unwrap().to_owned();
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(&public_key)
        .unwrap();
    assert_eq!(key_bytes.len(), 32, "an Ed25519 public key");
    let server_id = format!("ed25519:{public_key}");
    assert_eq!(
        registration.body,
        json!({"serverId": server_id, "endpoint": ENDPOINT, "publicKey": public_key,
               "region": "unknown", "connections": 0, "relayConnections": 0,
               "signalingConnections": 0, "activeCodes": 0})
    );
    let bearer = format!("Bearer {SECRET}");
    assert_eq!(registration.authorization.as_deref(), Some(bearer.as_str()));
    assert_eq!(
        registration.content_type.as_deref(),
        Some("application/json")
    );
    assert!(registration.body_len < 4096);

    // Live counts: a phone with a pairing code, a relay, and a session holding nothing.
    let addr = addr.parse().unwrap();
    let mut phone = common::Client::connect(addr).await;
    let registered = phone
        .request(json!({"type": "register", "pairingCode": "PHNE33", "publicKey": PUBLIC_KEY}))
        .await;
    assert_eq!(registered["type"], "registered");
    let mut relay = common::Client::connect(addr).await;
    let registered = relay
        .request(json!({"type": "register", "peerId": "relay-1", "maxConnections": 10}))
        .await;
    assert_eq!(registered["type"], "registered");
    let _idle = common::Client::connect(addr).await;
    let heartbeat = directory
        .next_matching("heartbeat with the live counts", |seen| {
            is_heartbeat(seen) && counts(seen) == [3, 1, 1, 1]
        })
        .await;
    assert_eq!(heartbeat.body["serverId"], server_id);
    assert_eq!(heartbeat.authorization.as_deref(), Some(bearer.as_str()));
    assert_eq!(directory.listed().len(), 1);

    // SIGTERM: unregistered, and the process ends cleanly.
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: sending a signal to a child process this test started and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let unregistration = directory
        .any_matching("unregistration", is_unregistration)
        .await;
    let encoded_id = server_id
        .replace(':', "%3A")
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    assert_eq!(unregistration.path, format!("/servers/{encoded_id}"));
    assert_eq!(
        unregistration.authorization.as_deref(),
        Some(bearer.as_str())
    );
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the server exits in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(directory.listed().is_empty());
}

#[tokio::test]
async fn the_server_serves_while_the_directory_fails_is_down_forgets_it_or_hangs() {
    let mut directory = DirectoryStandIn::start(Behaviour::Failing).await;
    let mut config = test_config();
    config.directory.bootstrap_url = Some(directory.url());
    config.directory.bootstrap_allow_insecure = true;
    config.directory.bootstrap_heartbeat_secs = 1;
    config.identity.endpoint = Some(ENDPOINT.into());
    config.identity.region = Some("eu-west".into());
    let server = TestServer::start_with(config).await;
    let mut client = server.connect().await;

    // Failing: registrations are answered 500, retried, and sessions are served meanwhile.
    for _ in 0..2 {
        directory
            .next_matching("a registration answered 500", |seen| {
                is_registration(seen) && seen.status == Some(500)
            })
            .await;
        assert_eq!(
            client.request(json!({"type": "ping"})).await["type"],
            "pong"
        );
    }

    // Down: nothing listens; sessions are served, and new ones too.
    directory.stop_listening();
    let mut newcomer = server.connect().await;
    assert_eq!(
        newcomer.request(json!({"type": "ping"})).await["type"],
        "pong"
    );

    // Back and working: registered, then heartbeats.
    directory.behave(Behaviour::Working);
    directory.listen_again().await;
    let registration = directory
        .next_matching("a registration answered 200", |seen| {
            is_registration(seen) && seen.status == Some(200)
        })
        .await;
    assert_eq!(registration.body["serverId"], "test-server");
    assert_eq!(registration.body["region"], "eu-west");
    assert_eq!(registration.authorization, None, "no secret configured");
    directory
        .next_matching("a heartbeat", |seen| {
            is_heartbeat(seen) && seen.status == Some(200)
        })
        .await;

    // Forgotten (the directory's entries expire): the next heartbeat's 404 registers it again.
    directory.forget_all();
    directory
        .next_matching("a heartbeat answered 404", |seen| {
            is_heartbeat(seen) && seen.status == Some(404)
        })
        .await;
    directory
        .next_matching("a registration again", is_registration)
        .await;
    assert_eq!(directory.listed().len(), 1);

    // Hanging: sessions are served, and shutdown is not held up by the unregistration.
    directory.behave(Behaviour::Hanging);
    directory
        .next_matching("a request left hanging", |seen| seen.status.is_none())
        .await;
    assert_eq!(
        client.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
    server.stop().await;
    directory
        .any_matching("an unregistration", is_unregistration)
        .await;
}
