//! Starting a real server on loopback and talking to it as a WebSocket client would.
#![allow(dead_code)] // Each test file uses a different part of this helper.

pub mod directory;
pub mod redis;
pub mod streams;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{WebSocketStream, client_async};
use tokio_util::sync::CancellationToken;
use zajel_signal::{Clock, Config, ManualClock, Server};

/// Every wait in these tests is bounded by this, so a broken server fails a test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn test_config() -> Config {
    let mut config = Config::default();
    config.listen.ws_listen = "127.0.0.1:0".parse().unwrap();
    config.listen.quic_listen = "127.0.0.1:0".parse().unwrap();
    config.identity.server_id = Some("test-server".into());
    config.storage.data_dir = test_data_dir();
    config
}

/// A data directory of its own for each server a test starts (a data directory is one server's),
/// outside the checkout; the server removes it when the test stops it.
pub fn test_data_dir() -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "{TEST_DATA_PREFIX}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

const TEST_DATA_PREFIX: &str = "zajel-test-data-";

pub struct TestServer {
    pub addr: SocketAddr,
    pub quic_addr: SocketAddr,
    pub certificates: Arc<zajel_signal::tls::Certificates>,
    pub clock: Arc<ManualClock>,
    /// The server's metrics, readable after it stopped.
    pub metrics: Arc<zajel_signal::metrics::Metrics>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    /// A data directory made for this server alone, removed with it.
    scratch_data_dir: Option<std::path::PathBuf>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(config: Config) -> Self {
        Self::start_at(config, 1_700_000_000_000).await
    }

    /// Starts a server whose clock reads `now` (milliseconds since the Unix epoch) until a test moves it.
    pub async fn start_at(config: Config, now: u64) -> Self {
        let scratch_data_dir = config
            .storage
            .data_dir
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with(TEST_DATA_PREFIX))
            .then(|| config.storage.data_dir.clone());
        let clock = Arc::new(ManualClock::new(now));
        let server = Server::bind_with_clock(config, clock.clone() as Arc<dyn Clock>)
            .await
            .expect("server binds");
        let addr = server.ws_addr();
        let quic_addr = server.quic_addr();
        let certificates = server.certificates().clone();
        let metrics = server.metrics().clone();
        let shutdown = server.shutdown_token();
        let task = tokio::spawn(server.run());
        Self {
            addr,
            quic_addr,
            certificates,
            clock,
            metrics,
            shutdown,
            task: Some(task),
            scratch_data_dir,
        }
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// Shuts the server down and waits until it has stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().expect("running");
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("server stops in time")
            .expect("server task ends cleanly");
    }

    /// Waits until /health reports `sessions` open sessions (closing is asynchronous on the server).
    pub async fn wait_for_sessions(&self, sessions: u64) {
        tokio::time::timeout(PATIENCE, async {
            while self.health().await["sessions"] != sessions {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("session count reached in time");
    }

    pub async fn health(&self) -> Value {
        self.get_json("/health").await.1
    }

    /// GETs a JSON route: the status code and the body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = http_get(self.addr, path).await;
        let status = response[9..12].parse().expect("a status line");
        let json_start = response.find("\r\n\r\n").expect("a header block") + 4;
        let body = serde_json::from_str(&response[json_start..]).expect("a JSON body");
        (status, body)
    }

    /// GETs `/metrics`: every sample by its name and labels as written (`name{label="value",...}`).
    /// Checks the status, the content type, and that every line is a comment or a sample.
    pub async fn metrics(&self) -> std::collections::HashMap<String, f64> {
        let response = http_get(self.addr, "/metrics").await;
        let (head, body) = response.split_once("\r\n\r\n").expect("a header block");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{head}"
        );
        body.lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("a sample line");
                let value = value.parse().unwrap_or_else(|_| panic!("a value: {line}"));
                (series.to_owned(), value)
            })
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(dir) = &self.scratch_data_dir {
            std::fs::remove_dir_all(dir).ok();
        }
    }
}

/// A minimal HTTP/1.1 GET, returning the whole response as text.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    http_request(addr, "GET", path).await
}

/// A minimal HTTP/1.1 request without a body, returning the whole response as text.
pub async fn http_request(addr: SocketAddr, method: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("HTTP answer in time")
        .unwrap();
    response
}

pub struct Client {
    pub ws: WebSocketStream<TcpStream>,
}

/// What a client received next: a message, or the close frame that ended the session.
#[derive(Debug)]
pub enum Received {
    Message(Value),
    Closed(Option<CloseFrame>),
}

impl Client {
    /// Connects and consumes the `server_info` that opens every session.
    pub async fn connect(addr: SocketAddr) -> Self {
        let mut client = Self::connect_raw(addr).await;
        let info = client.recv().await;
        assert_eq!(info["type"], "server_info", "{info}");
        client
    }

    /// Connects without reading anything.
    pub async fn connect_raw(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Self::upgrade(stream).await
    }

    /// A WebSocket session over a TCP connection made by the caller (from another address, say), with
    /// its `server_info` read.
    pub async fn over(stream: TcpStream) -> Self {
        let mut client = Self::upgrade(stream).await;
        let info = client.recv().await;
        assert_eq!(info["type"], "server_info", "{info}");
        client
    }

    async fn upgrade(stream: TcpStream) -> Self {
        let addr = stream.peer_addr().expect("connected");
        let (ws, _) = client_async(format!("ws://{addr}/"), stream)
            .await
            .expect("WebSocket handshake");
        Self { ws }
    }

    pub async fn send_json(&mut self, message: &Value) {
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_cbor(&mut self, message: &Value) {
        let mut bytes = Vec::new();
        ciborium::into_writer(message, &mut bytes).unwrap();
        self.ws.send(Message::binary(bytes)).await.expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next message or close, decoding text as JSON and binary as CBOR.
    pub async fn next(&mut self) -> Received {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return Received::Message(serde_json::from_str(&text).expect("JSON frame"));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    return Received::Message(cbor_to_json(&bytes));
                }
                Some(Ok(Message::Close(frame))) => return Received::Closed(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Received::Message(value) => value,
            Received::Closed(frame) => panic!("session closed: {frame:?}"),
        }
    }

    /// The next frame, which must be text (JSON).
    pub async fn recv_text(&mut self) -> Value {
        let frame = tokio::time::timeout(PATIENCE, self.ws.next())
            .await
            .expect("in time");
        match frame {
            Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame, which must be binary (CBOR).
    pub async fn recv_binary(&mut self) -> Value {
        let frame = tokio::time::timeout(PATIENCE, self.ws.next())
            .await
            .expect("in time");
        match frame {
            Some(Ok(Message::Binary(bytes))) => cbor_to_json(&bytes),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    pub async fn request(&mut self, message: Value) -> Value {
        self.send_json(&message).await;
        self.recv().await
    }

    /// Waits for the session to close and returns its close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Received::Message(_) => continue,
                Received::Closed(frame) => return frame.map(|f| f.code.into()),
            }
        }
    }
}

pub fn cbor_to_json(bytes: &[u8]) -> Value {
    let value: ciborium::Value = ciborium::from_reader(bytes).expect("CBOR frame");
    value.deserialized().expect("CBOR in the JSON data model")
}

/// Starts the server binary with `args` and `envs`, and returns it with the address it listens on (read
/// from its log). The process is killed when the handle is dropped.
pub async fn spawn_server_binary(
    args: &[&std::ffi::OsStr],
    envs: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_zajel-signal"));
    // Only the settings a test gives: none inherited from whoever runs the tests.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ZAJEL_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .env("ZAJEL_DATA_DIR", test_data_dir())
        .envs(envs.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("addr=").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("the server listens in time");
    // Keep reading its log so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// A fresh self-signed certificate for 127.0.0.1, written as `cert.pem` and `key.pem` in `dir`, with a
/// modification time of `modified` so that a rewrite is always seen as a change.
pub fn write_certificate_at(
    dir: &std::path::Path,
    modified: std::time::SystemTime,
) -> rcgen::CertifiedKey<rcgen::KeyPair> {
    std::fs::create_dir_all(dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    for path in [cert, key] {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    }
    certified
}

pub fn write_certificate(dir: &std::path::Path) -> rcgen::CertifiedKey<rcgen::KeyPair> {
    write_certificate_at(dir, std::time::SystemTime::now())
}

pub const PUBLIC_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
