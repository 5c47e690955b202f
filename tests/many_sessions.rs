//! Ten thousand concurrent WebSocket sessions against the real server binary, each finding its partner by
//! an hourly token. The server runs as its own process so that each side has its own open-file limit.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};
use tokio_tungstenite::client_async;
use tokio_tungstenite::tungstenite::Message;

const SESSIONS: usize = 10_000;
const PATIENCE: Duration = Duration::from_secs(120);

/// Raises this process's open-file limit to what the sessions need, or fails saying why.
fn ensure_open_file_limit(needed: u64) {
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .expect("read the open-file limit");
    if soft < needed {
        rlimit::Resource::NOFILE
            .set(hard.min(needed), hard)
            .expect("raise the open-file limit");
    }
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .expect("read the open-file limit");
    assert!(
        soft >= needed,
        "this test needs {needed} open files; the hard limit is {hard}"
    );
}

struct ServerProcess {
    child: tokio::process::Child,
    addr: String,
}

impl ServerProcess {
    async fn start() -> Self {
        let args = [
            "--ws-listen",
            "127.0.0.1:0",
            "--quic-listen",
            "127.0.0.1:0",
            // One address plays ten thousand clients: its per-address budgets are those of many.
            "--max-sessions-per-ip",
            "20000",
            "--max-handshakes-per-ip",
            "20000",
            "--messages-per-minute-per-ip",
            "1000000",
            "--rendezvous-entries-per-minute-per-ip",
            "1000000",
            "--server-id",
            "many-sessions",
        ]
        .map(std::ffi::OsStr::new);
        let (child, addr) = common::spawn_server_binary(&args, &[]).await;
        Self { child, addr }
    }

    fn resident_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc")
    }
}

fn decode(message: Message) -> Value {
    match message {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("unexpected frame {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_sessions_are_served_without_errors() {
    ensure_open_file_limit(SESSIONS as u64 + 1024);
    let server = ServerProcess::start().await;
    let rss_before = server.resident_kib();

    // Every session connects, registers its hourly token, and waits for all others to be connected
    // before it finishes, so that all of them are open at once.
    let handshakes = Arc::new(Semaphore::new(256));
    let all_connected = Arc::new(Barrier::new(SESSIONS + 1));
    let all_checked = Arc::new(Barrier::new(SESSIONS + 1));
    let mut tasks = Vec::with_capacity(SESSIONS);
    // The even peer of each pair registers first and then lets its odd partner go: the partner is
    // then a newcomer that finds it, and the even peer gets the push.
    let mut partner_may_register = Vec::with_capacity(SESSIONS / 2);
    let mut partner_waits = Vec::with_capacity(SESSIONS / 2);
    for _ in 0..SESSIONS / 2 {
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        partner_may_register.push(Some(go));
        partner_waits.push(Some(wait));
    }
    for i in 0..SESSIONS {
        let addr = server.addr.clone();
        let handshakes = handshakes.clone();
        let all_connected = all_connected.clone();
        let all_checked = all_checked.clone();
        let (let_partner_go, wait_for_partner) = if i % 2 == 0 {
            (partner_may_register[i / 2].take(), None)
        } else {
            (None, partner_waits[i / 2].take())
        };
        tasks.push(tokio::spawn(async move {
            let permit = handshakes.acquire().await.unwrap();
            let stream = TcpStream::connect(&addr).await.expect("connect");
            let (mut ws, _) = client_async(format!("ws://{addr}/"), stream)
                .await
                .expect("handshake");
            drop(permit);
            let info = decode(ws.next().await.unwrap().unwrap());
            assert_eq!(info["serverId"], "many-sessions");
            all_connected.wait().await;

            let me = format!("peer-{i}");
            let request = json!({"type": "register_rendezvous", "peerId": me,
                                 "hourlyTokens": [format!("pair-{}", i / 2)], "requestId": i});
            if let Some(wait) = wait_for_partner {
                wait.await.expect("the partner registered");
                ws.send(Message::text(request.to_string())).await.unwrap();
                let reply = decode(ws.next().await.unwrap().unwrap());
                assert_eq!(reply["requestId"], i);
                assert_eq!(
                    reply["liveMatches"],
                    json!([{"peerId": format!("peer-{}", i - 1), "relayId": "",
                            "meetingPoint": format!("pair-{}", i / 2)}])
                );
            } else {
                ws.send(Message::text(request.to_string())).await.unwrap();
                let reply = decode(ws.next().await.unwrap().unwrap());
                assert_eq!(reply["requestId"], i);
                assert_eq!(reply["liveMatches"], json!([]));
                let_partner_go
                    .expect("even peers hold the signal")
                    .send(())
                    .unwrap();
                let push = decode(ws.next().await.unwrap().unwrap());
                assert_eq!(push["type"], "rendezvous_match");
                assert_eq!(push["match"]["peerId"], format!("peer-{}", i + 1));
            }
            ws.send(Message::text(json!({"type": "ping"}).to_string()))
                .await
                .unwrap();
            assert_eq!(decode(ws.next().await.unwrap().unwrap())["type"], "pong");
            all_checked.wait().await;
            ws.close(None).await.ok();
        }));
    }
    tokio::time::timeout(PATIENCE, all_connected.wait())
        .await
        .expect("all sessions connected in time");
    let rss_connected = server.resident_kib();
    tokio::time::timeout(PATIENCE, all_checked.wait())
        .await
        .expect("all sessions matched in time");
    for task in tasks {
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("session task ends")
            .expect("session task succeeded");
    }
    let per_session = (rss_connected.saturating_sub(rss_before)) * 1024 / SESSIONS as u64;
    println!(
        "server RSS: {rss_before} KiB idle, {rss_connected} KiB with {SESSIONS} sessions (~{per_session} bytes each)"
    );
}
