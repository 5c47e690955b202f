//! Load generator for a running server: throughput, latency and server cost per request and per session,
//! over WebSocket (JSON or CBOR) or raw QUIC (CBOR frames, one request stream per session).
//!
//!     cargo run --release --example load -- --addr 127.0.0.1:8080 --server-pid <PID> \
//!         --sessions 1000 --requests 200 --workload rendezvous --encoding cbor
//!     cargo run --release --example load -- --transport quic --addr 127.0.0.1:8080 \
//!         --quic-addr 127.0.0.1:4433 --sessions 1000 --requests 200
//!
//! Every session runs a closed loop (send, wait for the reply, repeat). With `--server-pid` (once per
//! server process) it also reports the servers' resident memory per connected session and their CPU
//! time per request, read from /proc: on a 2-core machine the load generator competes with the server
//! for CPU, so CPU time per request compares runs better than requests per second.
//!
//! With `--peer-addr`, every other session connects to that second node of a cluster instead, so that
//! partners (sessions 2k and 2k+1) are on different nodes. The `signal` workload measures deliveries:
//! session 2k sends `offer` to its partner's pairing code and the time runs until the partner has it.
//!
//!     cargo run --release --example load -- --addr 127.0.0.1:8080 --peer-addr 127.0.0.1:8081 \
//!         --server-pid <PID1> --server-pid <PID2> --sessions 200 --requests 200 --workload signal

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};
use wtransport::quinn;
use zajel_signal::protocol::framing::{read_frame, write_frame};

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum, default_value_t = Transport::Websocket)]
    transport: Transport,
    /// The server's WebSocket (and HTTP) address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// The server's QUIC address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    quic_addr: SocketAddr,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Requests per session that are timed (the relays workload registers each session first).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    requests: u32,
    #[arg(long, value_enum, default_value_t = Workload::Rendezvous)]
    workload: Workload,
    #[arg(long, value_enum, default_value_t = WireEncoding::Json)]
    encoding: WireEncoding,
    /// Another node of the same cluster (WebSocket): every other session connects there.
    #[arg(long)]
    peer_addr: Option<String>,
    /// A server process id, to read its memory and CPU time; once per node.
    #[arg(long)]
    server_pid: Vec<u32>,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Transport {
    Websocket,
    /// Raw QUIC, ALPN zajel/1; always CBOR.
    Quic,
}

#[derive(Clone, Copy, ValueEnum)]
enum Workload {
    /// `ping` → `pong`: the transport and codec alone.
    Ping,
    /// `register_rendezvous` with 3 daily points (with a dead drop) and 3 hourly tokens, each shared
    /// with one partner session.
    Rendezvous,
    /// `get_relays` for 10 relays.
    Relays,
    /// `offer` from session 2k to session 2k+1 by pairing code, timed until the partner receives it.
    Signal,
}

#[derive(Clone, Copy, ValueEnum)]
enum WireEncoding {
    Json,
    Cbor,
}

type Socket = WebSocketStream<TcpStream>;

fn encode(value: &Value, encoding: WireEncoding) -> Message {
    match encoding {
        WireEncoding::Json => Message::text(value.to_string()),
        WireEncoding::Cbor => {
            let mut bytes = Vec::new();
            ciborium::into_writer(value, &mut bytes).expect("encodes");
            Message::binary(bytes)
        }
    }
}

fn decode(message: Message) -> Value {
    match message {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
        Message::Binary(bytes) => {
            let value: ciborium::Value = ciborium::from_reader(&bytes[..]).expect("CBOR");
            value.deserialized().expect("JSON data model")
        }
        other => panic!("unexpected frame {other:?}"),
    }
}

/// One session, on either transport.
enum Link {
    WebSocket(Box<Socket>, WireEncoding),
    Quic {
        connection: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    },
}

impl Link {
    async fn websocket(addr: &str, encoding: WireEncoding) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).ok();
        let (mut ws, _) = client_async(format!("ws://{addr}/"), stream)
            .await
            .expect("handshake");
        decode(ws.next().await.unwrap().unwrap());
        Self::WebSocket(Box::new(ws), encoding)
    }

    async fn quic(endpoint: &quinn::Endpoint, addr: SocketAddr) -> Self {
        let connection = endpoint
            .connect(addr, "localhost")
            .unwrap()
            .await
            .expect("QUIC handshake");
        let mut pushes = connection.accept_uni().await.expect("push stream");
        let mut frame = Vec::new();
        read_frame(&mut pushes, usize::MAX, &mut frame)
            .await
            .expect("server_info");
        // Pushes (a partner's matches) are read and dropped, as a client that keeps up would.
        tokio::spawn(async move {
            let mut frame = Vec::new();
            while let Ok(true) = read_frame(&mut pushes, usize::MAX, &mut frame).await {}
        });
        let (send, recv) = connection.open_bi().await.expect("request stream");
        Self::Quic {
            connection,
            send,
            recv,
        }
    }

    /// Sends a message that has no reply (WebSocket only).
    async fn send(&mut self, message: &Value) {
        let Self::WebSocket(ws, encoding) = self else {
            panic!("the signal workload runs on WebSocket")
        };
        ws.send(encode(message, *encoding)).await.expect("send");
    }

    /// The next push (WebSocket only).
    async fn next_push(&mut self) -> Value {
        let Self::WebSocket(ws, _) = self else {
            panic!("the signal workload runs on WebSocket")
        };
        decode(ws.next().await.expect("open").expect("frame"))
    }

    async fn round_trip(&mut self, request: &Value) -> Value {
        match self {
            Self::WebSocket(ws, encoding) => {
                ws.send(encode(request, *encoding)).await.expect("send");
                loop {
                    let reply = decode(ws.next().await.expect("open").expect("frame"));
                    // Pushes may arrive between replies; only the reply ends the round trip.
                    if reply.get("requestId").is_some() {
                        return reply;
                    }
                }
            }
            Self::Quic { send, recv, .. } => {
                let mut bytes = Vec::new();
                ciborium::into_writer(request, &mut bytes).expect("encodes");
                write_frame(send, &bytes).await.expect("send");
                let mut frame = Vec::new();
                read_frame(recv, usize::MAX, &mut frame)
                    .await
                    .expect("reply");
                decode(Message::binary(frame))
            }
        }
    }

    async fn close(self) {
        match self {
            Self::WebSocket(mut ws, _) => {
                WebSocketStream::close(&mut ws, None).await.ok();
            }
            Self::Quic { connection, .. } => connection.close(0u32.into(), b"done"),
        }
    }
}

/// A QUIC client endpoint that trusts the server's certificate by the hash it serves at /cert-hash.
async fn quic_client(http_addr: &str) -> quinn::Endpoint {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(http_addr).await.expect("HTTP connect");
    let request =
        format!("GET /cert-hash HTTP/1.1\r\nHost: {http_addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let body: Value =
        serde_json::from_str(&response[response.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    use base64::Engine as _;
    let hash: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(body["value"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
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
    let mut endpoint = quinn::Endpoint::client("0.0.0.0:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

/// Session `session`'s pairing code: its number in the code alphabet.
fn pairing_code(session: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..6)
        .map(|digit| ALPHABET[(session >> (5 * digit)) % 32] as char)
        .collect()
}

fn request(workload: Workload, session: usize, n: usize) -> Value {
    let me = format!("load-{session}");
    match workload {
        Workload::Signal => json!({"type": "offer", "target": pairing_code(session + 1),
                                   "payload": {"sdp": "v=0", "n": n}}),
        Workload::Ping => json!({"type": "ping", "requestId": n}),
        Workload::Relays => {
            json!({"type": "get_relays", "peerId": me, "count": 10, "requestId": n})
        }
        Workload::Rendezvous => {
            // Each pair of sessions shares its points, as two friends do: replies carry the
            // partner's match and dead drops, and the partner is pushed a match.
            let point = |k: usize| format!("p{}-{}", session / 2, k);
            json!({"type": "register_rendezvous", "peerId": me, "requestId": n,
                   "dailyPoints": [point(0), point(1), point(2)],
                   "deadDrop": "c2VhbGVkIGRlYWQgZHJvcCBmb3IgYSBmcmllbmQ=",
                   "hourlyTokens": [point(3), point(4), point(5)],
                   "relayId": format!("relay-{}", session % 100)})
        }
    }
}

/// Resident memory (KiB) and CPU time (clock ticks) of a process, from /proc.
fn process_usage(pids: &[u32]) -> Option<(u64, u64)> {
    if pids.is_empty() {
        return None;
    }
    let (mut rss, mut ticks) = (0, 0);
    for &pid in pids {
        let (one_rss, one_ticks) = one_process_usage(pid);
        rss += one_rss;
        ticks += one_ticks;
    }
    Some((rss, ticks))
}

fn one_process_usage(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let rss = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    (rss, ticks)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let usage = || process_usage(&args.server_pid);
    let before_connect = usage();

    let quic_endpoint = match args.transport {
        Transport::Quic => Some(quic_client(&args.addr).await),
        Transport::Websocket => None,
    };
    let handshakes = Arc::new(Semaphore::new(128));
    let connected = Arc::new(Barrier::new(args.sessions + 1));
    let start_line = Arc::new(Barrier::new(args.sessions + 1));
    let signal = matches!(args.workload, Workload::Signal);
    assert!(
        !signal || args.sessions % 2 == 0,
        "the signal workload runs sessions in pairs"
    );
    let (partners_tx, partners_rx): (Vec<_>, Vec<_>) = (0..args.sessions / 2)
        .map(|_| tokio::sync::oneshot::channel::<Link>())
        .unzip();
    let mut partners_tx: Vec<_> = partners_tx.into_iter().map(Some).collect();
    let mut partners_rx: Vec<_> = partners_rx.into_iter().map(Some).collect();
    let mut tasks = Vec::with_capacity(args.sessions);
    for session in 0..args.sessions {
        let addr = match &args.peer_addr {
            Some(peer_addr) if session % 2 == 1 => peer_addr.clone(),
            _ => args.addr.clone(),
        };
        let (workload, encoding, requests) = (args.workload, args.encoding, args.requests as usize);
        // In the signal workload, a pair is timed by its first session, which gets its partner's link.
        let partner = signal.then(|| {
            if session % 2 == 0 {
                Err(partners_rx[session / 2].take().expect("one per pair"))
            } else {
                Ok(partners_tx[session / 2].take().expect("one per pair"))
            }
        });
        let (handshakes, connected, start_line) =
            (handshakes.clone(), connected.clone(), start_line.clone());
        let quic = quic_endpoint.clone();
        let quic_addr = args.quic_addr;
        tasks.push(tokio::spawn(async move {
            let permit = handshakes.acquire().await.unwrap();
            let mut link = match &quic {
                Some(endpoint) => Link::quic(endpoint, quic_addr).await,
                None => Link::websocket(&addr, encoding).await,
            };
            drop(permit);
            match workload {
                Workload::Relays => {
                    let register = json!({"type": "register", "peerId": format!("load-{session}"),
                                          "maxConnections": 100, "requestId": 0});
                    link.round_trip(&register).await;
                }
                Workload::Signal => {
                    let register = json!({"type": "register", "pairingCode": pairing_code(session),
                                          "publicKey": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                                          "requestId": 0});
                    link.round_trip(&register).await;
                }
                Workload::Ping | Workload::Rendezvous => {}
            }
            let mut partner_link = None;
            match partner {
                Some(Ok(give)) => {
                    let _ = give.send(link);
                    connected.wait().await;
                    start_line.wait().await;
                    return Vec::new();
                }
                Some(Err(take)) => partner_link = Some(take.await.expect("the partner connects")),
                None => {}
            }
            connected.wait().await;
            start_line.wait().await;
            let mut latencies = Vec::with_capacity(requests);
            for n in 1..=requests {
                let message = request(workload, session, n);
                let sent = Instant::now();
                match &mut partner_link {
                    Some(partner) => {
                        link.send(&message).await;
                        let pushed = partner.next_push().await;
                        assert_eq!(pushed["payload"]["n"], n, "{pushed}");
                    }
                    None => {
                        let reply = link.round_trip(&message).await;
                        assert_ne!(reply["type"], "error", "{reply}");
                    }
                }
                latencies.push(sent.elapsed());
            }
            link.close().await;
            if let Some(partner) = partner_link {
                partner.close().await;
            }
            latencies
        }));
    }
    connected.wait().await;
    let after_connect = usage();
    let started = Instant::now();
    start_line.wait().await;
    let mut latencies = Vec::with_capacity(args.sessions * args.requests as usize);
    for task in tasks {
        latencies.extend(task.await.expect("session task"));
    }
    let elapsed = started.elapsed();
    let after_run = usage();

    latencies.sort();
    let total = latencies.len();
    println!(
        "{total} requests over {} sessions in {:.2} s: {:.0} requests/s",
        args.sessions,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies[total - 1]
    );
    if let (Some((rss_idle, _)), Some((rss_connected, ticks_before)), Some((_, ticks_after))) =
        (before_connect, after_connect, after_run)
    {
        // SAFETY: sysconf only reads a configuration value.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let cpu_seconds = (ticks_after - ticks_before) as f64 / ticks_per_second;
        println!(
            "server: {} bytes resident per connected session; {:.1} µs CPU per request",
            rss_connected.saturating_sub(rss_idle) * 1024 / args.sessions as u64,
            cpu_seconds * 1e6 / total as f64
        );
    }
}
