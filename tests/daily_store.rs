//! Daily points and dead drops kept in the data directory: what a server acknowledged comes back after a
//! crash and a restart, and what expired meanwhile does not.

mod common;

use common::{Client, TestServer, spawn_server_binary, test_config};
use serde_json::{Value, json};

const HOUR: u64 = 3600 * 1000;
const START: u64 = 1_700_000_000_000;

async fn register(
    client: &mut Client,
    peer_id: &str,
    points: &[&str],
    drop: Option<&str>,
) -> Value {
    let mut request =
        json!({"type": "register_rendezvous", "peerId": peer_id, "dailyPoints": points});
    if let Some(drop) = drop {
        request["deadDrop"] = json!(drop);
    }
    let reply = client.request(request).await;
    assert_eq!(reply["type"], "rendezvous_result", "{reply}");
    reply
}

/// The dead drops a newcomer finds at `points`, as (peer, drop, point).
async fn drops_found(addr: std::net::SocketAddr, points: &[&str]) -> Vec<(String, String, String)> {
    let mut newcomer = Client::connect(addr).await;
    let reply = register(&mut newcomer, "newcomer", points, None).await;
    let mut drops: Vec<_> = reply["deadDrops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|drop| {
            (
                drop["peerId"].as_str().unwrap().to_owned(),
                drop["deadDrop"].as_str().unwrap().to_owned(),
                drop["meetingPoint"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    drops.sort();
    drops
}

#[tokio::test]
async fn dead_drops_come_back_after_a_restart_until_they_expire() {
    let data_dir = std::env::temp_dir().join(format!("zajel-daily-restart-{}", std::process::id()));
    let mut config = test_config();
    config.storage.data_dir = data_dir.clone();

    let first = TestServer::start_at(config.clone(), START).await;
    let mut alice = first.connect().await;
    register(&mut alice, "alice", &["kept", "emptied"], Some("sealed")).await;
    // A later registration without a drop replaces the earlier drop at that point.
    register(&mut alice, "alice", &["emptied"], None).await;
    first.stop().await;

    let second = TestServer::start_at(config.clone(), START + 47 * HOUR).await;
    // Someone else claiming the peer id cannot overwrite what alice left.
    let mut mallory = second.connect().await;
    register(&mut mallory, "alice", &["kept"], Some("forged")).await;
    assert_eq!(
        drops_found(second.addr, &["kept", "emptied"]).await,
        [("alice".into(), "sealed".into(), "kept".into())]
    );
    second.stop().await;

    let third = TestServer::start_at(config, START + 48 * HOUR).await;
    assert_eq!(drops_found(third.addr, &["kept", "emptied"]).await, []);
    third.stop().await;
    std::fs::remove_dir_all(&data_dir).ok();
}

#[tokio::test]
async fn every_acknowledged_dead_drop_survives_kill_9() {
    const PEERS: usize = 40;
    let data_dir = std::env::temp_dir().join(format!("zajel-daily-kill-{}", std::process::id()));
    let data_dir_text = data_dir.to_str().unwrap();
    let args = [
        "--ws-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--quic-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ];
    let env = [("ZAJEL_DATA_DIR", data_dir_text)];
    let (mut server, addr) = spawn_server_binary(&args, &env).await;
    let addr = addr.parse().unwrap();

    // Registrations in flight together, as from many phones: each is counted once acknowledged.
    let registrations = (0..PEERS).map(|peer| async move {
        let mut client = Client::connect(addr).await;
        let (peer_id, point) = (format!("peer-{peer}"), format!("point-{peer}"));
        register(
            &mut client,
            &peer_id,
            &[&point],
            Some(&format!("drop-{peer}")),
        )
        .await;
        client
    });
    let clients = futures_util::future::join_all(registrations).await;
    server.kill().await.expect("the server is killed");
    drop(clients);

    let (mut restarted, addr) = spawn_server_binary(&args, &env).await;
    let points: Vec<String> = (0..PEERS).map(|peer| format!("point-{peer}")).collect();
    let points: Vec<&str> = points.iter().map(String::as_str).collect();
    let mut expected: Vec<_> = (0..PEERS)
        .map(|peer| {
            (
                format!("peer-{peer}"),
                format!("drop-{peer}"),
                format!("point-{peer}"),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(drops_found(addr.parse().unwrap(), &points).await, expected);
    restarted.kill().await.ok();
    std::fs::remove_dir_all(&data_dir).ok();
}
