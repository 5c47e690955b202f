//! The server binary's configuration: a TOML file, environment variables and flags, in that order of
//! precedence, as a client sees them in `server_info`.

mod common;

use common::{Client, TestServer, spawn_server_binary, test_config};
use serde_json::json;
use tokio::process::Command;

#[tokio::test]
async fn flags_beat_environment_which_beats_the_file() {
    let dir = std::env::temp_dir().join(format!("zajel-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("zajel.toml");
    std::fs::write(
        &file,
        r#"
            ws_listen = "127.0.0.1:0"
            quic_listen = "127.0.0.1:0"
            server_id = "from-file"
            region = "from-file"
            endpoint = "from-file"
        "#,
    )
    .unwrap();
    let (mut child, addr) = spawn_server_binary(
        &[
            "--config".as_ref(),
            file.as_os_str(),
            "--endpoint".as_ref(),
            "from-flag".as_ref(),
        ],
        &[
            ("ZAJEL_SERVER_ID", "from-env"),
            ("ZAJEL_ENDPOINT", "from-env"),
        ],
    )
    .await;

    let mut client = Client::connect_raw(addr.parse().unwrap()).await;
    assert_eq!(
        client.recv_text().await,
        json!({"type": "server_info", "serverId": "from-env", "endpoint": "from-flag",
               "region": "from-file"})
    );
    child.kill().await.ok();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_bad_setting_stops_the_binary_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_zajel-signal"))
        .args([
            "--ws-listen",
            "127.0.0.1:0",
            "--quic-listen",
            "127.0.0.1:0",
            "--max-message-size",
            "10",
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("max_message_size"), "{stderr}");
}

#[tokio::test]
async fn a_restarted_server_keeps_its_id_and_its_development_certificate() {
    let data_dir = std::env::temp_dir().join(format!("zajel-restart-test-{}", std::process::id()));
    let mut config = test_config();
    config.identity.server_id = None;
    config.storage.data_dir = data_dir.clone();
    let first = TestServer::start_with(config.clone()).await;
    let (server_id, hash) = seen(&first).await;
    first.stop().await;
    assert!(server_id.starts_with("ed25519:"), "{server_id}");
    let restarted = TestServer::start_with(config).await;
    assert_eq!(seen(&restarted).await, (server_id, hash));
    restarted.stop().await;
    std::fs::remove_dir_all(&data_dir).ok();
}

/// The server id a client is told, and the certificate hash a browser pins.
async fn seen(server: &TestServer) -> (String, [u8; 32]) {
    let server_info = Client::connect_raw(server.addr).await.recv_text().await;
    (
        server_info["serverId"].as_str().unwrap().to_owned(),
        server.certificates.sha256(),
    )
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = on_loopback()
        .args(["--log-format", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the server binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let serving = tokio::time::timeout(common::PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let event: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|err| panic!("not one JSON object ({err}): {line}"));
            assert!(event["timestamp"].is_string(), "{event}");
            assert!(event["level"].is_string(), "{event}");
            if event["fields"]["message"] == "serving WebSocket and HTTP" {
                return event;
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("the server listens in time");
    assert_eq!(serving["level"], "INFO");
    let addr = serving["fields"]["addr"]
        .as_str()
        .expect("the address as a field");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    child.kill().await.ok();
}

/// The server binary on loopback ports, with a data directory of its own, logging at info.
fn on_loopback() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zajel-signal"));
    command
        .args(["--ws-listen", "127.0.0.1:0", "--quic-listen", "127.0.0.1:0"])
        .env("ZAJEL_DATA_DIR", common::test_data_dir())
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    command
}

/// The server binary with its text log read line by line.
struct Binary {
    child: tokio::process::Child,
    log: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Binary {
    /// Starts the binary on loopback with `args`; returns it and its WebSocket address.
    async fn start(args: &[&str]) -> (Self, std::net::SocketAddr) {
        let mut command = on_loopback();
        command.args(args);
        Self::start_with(command).await
    }

    /// Starts `command` (from [`on_loopback`]); returns it and its WebSocket address.
    async fn start_with(mut command: Command) -> (Self, std::net::SocketAddr) {
        use tokio::io::AsyncBufReadExt;
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the server binary starts");
        let log = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut binary = Self { child, log };
        let line = binary.wait_for_log(" addr=").await;
        let addr = line.split(" addr=").nth(1).unwrap();
        let addr = addr.split_whitespace().next().unwrap().parse().unwrap();
        (binary, addr)
    }

    /// Reads the log up to the first line containing `needle`.
    async fn wait_for_log(&mut self, needle: &str) -> String {
        tokio::time::timeout(common::PATIENCE, async {
            while let Some(line) = self.log.next_line().await.unwrap() {
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("the log ended without {needle:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} in the log in time"))
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: sending a signal to a child process this test started and still owns.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the process to end (reading the rest of its log) and returns its status.
    async fn exit_status(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(common::PATIENCE, async {
            while let Ok(Some(_)) = self.log.next_line().await {}
            self.child.wait().await.unwrap()
        })
        .await
        .expect("the server exits in time")
    }
}

#[tokio::test]
async fn sigterm_under_load_closes_every_session_with_1001_and_exits_0() {
    let (binary, addr) = Binary::start(&["--drain-secs", "5"]).await;
    let mut sessions = tokio::task::JoinSet::new();
    let (started_tx, mut started) = tokio::sync::mpsc::channel(40);
    for _ in 0..40 {
        let started_tx = started_tx.clone();
        sessions.spawn(async move {
            let mut client = Client::connect(addr).await;
            let mut answered = 0;
            loop {
                client.send_json(&json!({"type": "ping"})).await;
                match client.next().await {
                    common::Received::Message(pong) => {
                        assert_eq!(pong["type"], "pong");
                        answered += 1;
                        if answered == 1 {
                            started_tx.send(()).await.unwrap();
                        }
                    }
                    common::Received::Closed(frame) => {
                        return frame.map(|frame| u16::from(frame.code));
                    }
                }
            }
        });
    }
    // Every session is busy with requests when the signal comes.
    for _ in 0..40 {
        started.recv().await.unwrap();
    }
    binary.signal(libc::SIGTERM);
    while let Some(closed) = sessions.join_next().await {
        assert_eq!(closed.unwrap(), Some(1001), "closed as going away");
    }
    let status = binary.exit_status().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_second_signal_exits_at_once_without_draining() {
    let (mut binary, addr) = Binary::start(&["--drain-secs", "30"]).await;
    // A client that never reads: its closing handshake keeps the drain waiting.
    let _silent = Client::connect(addr).await;
    binary.signal(libc::SIGTERM);
    binary.wait_for_log("draining").await;
    binary.signal(libc::SIGTERM);
    let status = binary.exit_status().await;
    assert_eq!(
        status.code(),
        Some(1),
        "the second signal's exit, not the drain's"
    );
}

#[tokio::test]
async fn systemd_is_told_when_the_server_is_ready_and_when_it_stops() {
    let socket_path = std::env::temp_dir().join(format!("zajel-notify-{}", std::process::id()));
    let _ = std::fs::remove_file(&socket_path);
    let notifications = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let next_notification = async || {
        let mut buffer = [0u8; 256];
        let length = tokio::time::timeout(common::PATIENCE, notifications.recv(&mut buffer))
            .await
            .expect("a notification in time")
            .unwrap();
        String::from_utf8_lossy(&buffer[..length]).into_owned()
    };
    let mut child = on_loopback()
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the server binary starts");
    assert!(next_notification().await.contains("READY=1"));
    // At once: from READY=1 on, a SIGTERM must drain, not kill.
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: sending a signal to a child process this test started and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(next_notification().await.contains("STOPPING=1"));
    let status = tokio::time::timeout(common::PATIENCE, child.wait())
        .await
        .expect("the server exits in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_file(&socket_path).ok();
}

#[tokio::test]
async fn log_ids_writes_codes_and_addresses_in_clear() {
    let mut command = on_loopback();
    command
        .env("RUST_LOG", "zajel_signal=debug")
        .arg("--log-ids");
    let (mut binary, addr) = Binary::start_with(command).await;
    let mut client = Client::connect(addr).await;
    let registered = client
        .request(
            json!({"type": "register", "pairingCode": "CLEAR2", "publicKey": common::PUBLIC_KEY}),
        )
        .await;
    assert_eq!(registered["type"], "registered");
    let line = binary.wait_for_log("pairing code registered").await;
    assert!(
        line.contains(r#"session{transport="websocket" peer=127.0.0.1 id=1}"#),
        "{line}"
    );
    assert!(
        line.ends_with("pairing code registered code=CLEAR2"),
        "{line}"
    );
}
