//! What the load generators share: a client session on any transport, the server's cost read from /proc,
//! percentiles, and pairing codes by number.
#![allow(dead_code)] // Each example uses a different part.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};
use wtransport::quinn;
use zajel_signal::protocol::framing::{read_frame, write_frame};

pub const PUBLIC_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// WebSocket, JSON text frames.
    WsJson,
    /// WebSocket, CBOR binary frames.
    WsCbor,
    /// Raw QUIC (ALPN zajel/1), CBOR frames.
    Quic,
    /// WebTransport over HTTP/3, CBOR frames.
    Webtransport,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Self::WsJson => "WebSocket JSON",
            Self::WsCbor => "WebSocket CBOR",
            Self::Quic => "QUIC",
            Self::Webtransport => "WebTransport",
        }
    }
}

/// Where the server is, and the client endpoints sessions connect from: one per loopback source address,
/// so that many sessions do not run out of one address's ports.
pub struct Clients {
    pub http: SocketAddr,
    pub quic: SocketAddr,
    sources: Vec<IpAddr>,
    quic_endpoints: Vec<quinn::Endpoint>,
    webtransport_endpoints: Vec<wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client>>,
    certificate_hash: [u8; 32],
    /// With `resuming`: each raw QUIC session number's own client configuration, so its TLS session
    /// tickets are its own (a shared store keeps 8 tickets per server name) and it resumes when it
    /// connects again.
    session_configs: Option<Mutex<HashMap<usize, quinn::ClientConfig>>>,
}

impl Clients {
    /// Clients of the server at `http` (WebSocket and HTTP) and `quic`, from 127.0.0.1 up to
    /// 127.0.0.`sources`, trusting the certificate the server serves at /cert-hash.
    pub async fn new(http: SocketAddr, quic: SocketAddr, sources: u8) -> Self {
        let hash = certificate_hash(http).await;
        let sources: Vec<IpAddr> = (1..=sources.max(1))
            .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
            .collect();
        let quic_endpoints = sources
            .iter()
            .map(|&source| quic_endpoint(source, hash))
            .collect();
        let webtransport_endpoints = sources
            .iter()
            .map(|&source| {
                let config = wtransport::ClientConfig::builder()
                    .with_bind_socket(udp_socket(source))
                    .with_server_certificate_hashes([wtransport::tls::Sha256Digest::new(hash)])
                    .build();
                wtransport::Endpoint::client(config).expect("a WebTransport client endpoint")
            })
            .collect();
        Self {
            http,
            quic,
            sources,
            quic_endpoints,
            webtransport_endpoints,
            certificate_hash: hash,
            session_configs: None,
        }
    }

    /// Raw QUIC sessions keep their TLS tickets per session number, to resume when they reconnect.
    pub fn resuming(mut self) -> Self {
        self.session_configs = Some(Mutex::new(HashMap::new()));
        self
    }

    /// Opens session number `n` on `transport` and reads its `server_info`. Pushes on QUIC and
    /// WebTransport are read on a task of their own and counted in `pushes`.
    pub async fn connect(
        &self,
        n: usize,
        transport: Transport,
        pushes: &Arc<AtomicU64>,
    ) -> std::io::Result<Link> {
        let which = n % self.sources.len();
        match transport {
            Transport::WsJson | Transport::WsCbor => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(self.sources[which], 0))?;
                let stream = socket.connect(self.http).await?;
                stream.set_nodelay(true)?;
                let (mut ws, _) = client_async(format!("ws://{}/", self.http), stream)
                    .await
                    .map_err(std::io::Error::other)?;
                let first = ws.next().await.ok_or_else(closed)?;
                decode(first.map_err(std::io::Error::other)?);
                Ok(Link::WebSocket {
                    ws: Box::new(ws),
                    cbor: transport == Transport::WsCbor,
                    pushes: pushes.clone(),
                })
            }
            Transport::Quic => {
                let endpoint = &self.quic_endpoints[which];
                let connecting = match &self.session_configs {
                    None => endpoint.connect(self.quic, "localhost"),
                    Some(configs) => {
                        let config = configs
                            .lock()
                            .unwrap()
                            .entry(n)
                            .or_insert_with(|| quic_client_config(self.certificate_hash))
                            .clone();
                        endpoint.connect_with(config, self.quic, "localhost")
                    }
                };
                let connection = connecting.map_err(std::io::Error::other)?.await?;
                let pushes_stream = connection.accept_uni().await?;
                drain_pushes(pushes_stream, pushes.clone()).await?;
                let (send, recv) = connection.open_bi().await?;
                Ok(Link::Quic {
                    connection,
                    send,
                    recv,
                })
            }
            Transport::Webtransport => {
                let url = format!("https://127.0.0.1:{}/", self.quic.port());
                let connection = self.webtransport_endpoints[which]
                    .connect(url)
                    .await
                    .map_err(std::io::Error::other)?;
                let pushes_stream = connection
                    .accept_uni()
                    .await
                    .map_err(std::io::Error::other)?;
                drain_pushes(pushes_stream, pushes.clone()).await?;
                let (send, recv) = connection
                    .open_bi()
                    .await
                    .map_err(std::io::Error::other)?
                    .await
                    .map_err(std::io::Error::other)?;
                Ok(Link::WebTransport {
                    connection,
                    send,
                    recv,
                })
            }
        }
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed")
}

/// Reads `server_info`, then every later push on a task of its own, counting them.
async fn drain_pushes<R: AsyncRead + Unpin + Send + 'static>(
    mut stream: R,
    pushes: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut frame = Vec::new();
    if !read_frame(&mut stream, usize::MAX, &mut frame)
        .await
        .map_err(std::io::Error::other)?
    {
        return Err(closed());
    }
    tokio::spawn(async move {
        let mut frame = Vec::new();
        while let Ok(true) = read_frame(&mut stream, usize::MAX, &mut frame).await {
            pushes.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(())
}

/// One client session. Requests go on one stream (QUIC, WebTransport) or the socket (WebSocket), one at
/// a time.
pub enum Link {
    WebSocket {
        ws: Box<WebSocketStream<TcpStream>>,
        cbor: bool,
        pushes: Arc<AtomicU64>,
    },
    Quic {
        connection: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    },
    WebTransport {
        connection: wtransport::Connection,
        send: wtransport::SendStream,
        recv: wtransport::RecvStream,
    },
}

impl Link {
    /// Sends `request` and returns its answer (on WebSocket: the next frame with a `requestId`, so
    /// requests must carry one; frames without are pushes, counted).
    pub async fn round_trip(&mut self, request: &Value) -> std::io::Result<Value> {
        match self {
            Self::WebSocket { ws, cbor, pushes } => {
                let message = if *cbor {
                    Message::binary(cbor_bytes(request))
                } else {
                    Message::text(request.to_string())
                };
                ws.send(message).await.map_err(std::io::Error::other)?;
                loop {
                    let frame = ws.next().await.ok_or_else(closed)?;
                    let reply = decode(frame.map_err(std::io::Error::other)?);
                    if reply.get("requestId").is_some() {
                        return Ok(reply);
                    }
                    pushes.fetch_add(1, Ordering::Relaxed);
                }
            }
            Self::Quic { send, recv, .. } => frame_round_trip(send, recv, request).await,
            Self::WebTransport { send, recv, .. } => frame_round_trip(send, recv, request).await,
        }
    }

    /// Sends `message`, which gets no answer on WebSocket (WebSocket only).
    pub async fn send(&mut self, message: &Value) -> std::io::Result<()> {
        let Self::WebSocket { ws, cbor, .. } = self else {
            panic!("only WebSocket sends without an answer")
        };
        let message = if *cbor {
            Message::binary(cbor_bytes(message))
        } else {
            Message::text(message.to_string())
        };
        ws.send(message).await.map_err(std::io::Error::other)
    }

    /// The next push (WebSocket only).
    pub async fn next_push(&mut self) -> std::io::Result<Value> {
        let Self::WebSocket { ws, .. } = self else {
            panic!("only WebSocket reads pushes in line")
        };
        let frame = ws.next().await.ok_or_else(closed)?;
        Ok(decode(frame.map_err(std::io::Error::other)?))
    }

    pub async fn close(self) {
        match self {
            Self::WebSocket { mut ws, .. } => {
                WebSocketStream::close(&mut ws, None).await.ok();
            }
            Self::Quic { connection, .. } => connection.close(0u32.into(), b"done"),
            Self::WebTransport { connection, .. } => connection.close(0u32.into(), b"done"),
        }
    }
}

async fn frame_round_trip(
    send: &mut (impl AsyncWrite + Unpin),
    recv: &mut (impl AsyncRead + Unpin),
    request: &Value,
) -> std::io::Result<Value> {
    write_frame(send, &cbor_bytes(request)).await?;
    let mut frame = Vec::new();
    if !read_frame(recv, usize::MAX, &mut frame)
        .await
        .map_err(std::io::Error::other)?
    {
        return Err(closed());
    }
    Ok(decode(Message::binary(frame)))
}

fn cbor_bytes(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).expect("encodes");
    bytes
}

pub fn decode(message: Message) -> Value {
    match message {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
        Message::Binary(bytes) => {
            let value: ciborium::Value = ciborium::from_reader(&bytes[..]).expect("CBOR");
            value.deserialized().expect("JSON data model")
        }
        other => panic!("unexpected frame {other:?}"),
    }
}

/// The certificate's SHA-256, from the server's /cert-hash.
async fn certificate_hash(http: SocketAddr) -> [u8; 32] {
    let mut stream = TcpStream::connect(http).await.expect("HTTP connect");
    let request = format!("GET /cert-hash HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let body: Value =
        serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(body["value"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// A UDP socket at `source` with buffers as large as the system allows (`net.core.rmem_max`): the
/// default overflows when hundreds of handshakes answer at once, and every loss costs a second.
fn udp_socket(source: IpAddr) -> std::net::UdpSocket {
    const BUFFER: usize = 4 * 1024 * 1024;
    let address = SocketAddr::new(source, 0);
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .expect("a UDP socket");
    let _ = socket.set_recv_buffer_size(BUFFER);
    let _ = socket.set_send_buffer_size(BUFFER);
    socket.bind(&address.into()).expect("a loopback address");
    socket.into()
}

/// A raw QUIC client endpoint at `source` that trusts the certificate with `hash`.
fn quic_endpoint(source: IpAddr, hash: [u8; 32]) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        udp_socket(source),
        Arc::new(quinn::TokioRuntime),
    )
    .expect("a QUIC client endpoint");
    endpoint.set_default_client_config(quic_client_config(hash));
    endpoint
}

/// A raw QUIC client configuration trusting the certificate with `hash`, with a TLS session store of
/// its own.
fn quic_client_config(hash: [u8; 32]) -> quinn::ClientConfig {
    let verifier =
        wtransport::tls::client::ServerHashVerification::new([wtransport::tls::Sha256Digest::new(
            hash,
        )]);
    let mut tls = wtransport::tls::client::build_default_tls_config(
        Arc::new(rustls::RootCertStore::empty()),
        Some(Arc::new(verifier)),
    );
    tls.alpn_protocols = vec![b"zajel/1".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // The server keeps sessions alive; a benchmark's idle clients must not time out on their side.
    transport.max_idle_timeout(None);
    client.transport_config(Arc::new(transport));
    client
}

/// Session `n`'s pairing code: its number in the code alphabet.
pub fn pairing_code(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..6)
        .map(|digit| ALPHABET[(n >> (5 * digit)) % 32] as char)
        .collect()
}

/// Resident memory (KiB) and CPU time (seconds) of processes together, from /proc.
pub fn process_usage(pids: &[u32]) -> (u64, f64) {
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (mut rss, mut ticks) = (0, 0);
    for &pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
        rss += status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
        // Fields after the command name, which is in parentheses and may contain spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
            .split_whitespace()
            .collect();
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    (rss, ticks as f64 / ticks_per_second)
}

/// The `p` quantile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
