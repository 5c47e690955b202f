//! Load generator for a running server: throughput, latency and server cost per request and per session,
//! over WebSocket (JSON or CBOR), raw QUIC or WebTransport (CBOR frames, one request stream per session).
//!
//!     cargo run --release --example load -- --addr 127.0.0.1:8080 --server-pid <PID> \
//!         --sessions 1000 --requests 200 --workload rendezvous --transport ws-cbor
//!     cargo run --release --example load -- --transport quic --addr 127.0.0.1:8080 \
//!         --quic-addr 127.0.0.1:4433 --sessions 1000 --requests 200
//!
//! (`examples/bench.rs` runs the scenarios of the performance issue on every transport at once.)
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

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use support::{Clients, Link, PUBLIC_KEY, Transport, pairing_code, percentile, process_usage};
use tokio::sync::{Barrier, Semaphore};

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum, default_value_t = Transport::WsJson)]
    transport: Transport,
    /// The server's WebSocket (and HTTP) address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
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
    /// Another node of the same cluster (WebSocket): every other session connects there.
    #[arg(long)]
    peer_addr: Option<SocketAddr>,
    /// A server process id, to read its memory and CPU time; once per node.
    #[arg(long)]
    server_pid: Vec<u32>,
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

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let usage = || (!args.server_pid.is_empty()).then(|| process_usage(&args.server_pid));
    let before_connect = usage();

    let clients = Arc::new(Clients::new(args.addr, args.quic_addr, 1).await);
    let peer_clients = match args.peer_addr {
        Some(peer) => Arc::new(Clients::new(peer, args.quic_addr, 1).await),
        None => clients.clone(),
    };
    let pushes = Arc::new(AtomicU64::new(0));
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
        let clients = if session % 2 == 1 {
            peer_clients.clone()
        } else {
            clients.clone()
        };
        let (workload, transport, requests) =
            (args.workload, args.transport, args.requests as usize);
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
        let pushes = pushes.clone();
        tasks.push(tokio::spawn(async move {
            let permit = handshakes.acquire().await.unwrap();
            let mut link = clients
                .connect(session, transport, &pushes)
                .await
                .expect("connects");
            drop(permit);
            match workload {
                Workload::Relays => {
                    let register = json!({"type": "register", "peerId": format!("load-{session}"),
                                          "maxConnections": 100, "requestId": 0});
                    link.round_trip(&register).await.expect("registered");
                }
                Workload::Signal => {
                    let register = json!({"type": "register", "pairingCode": pairing_code(session),
                                          "publicKey": PUBLIC_KEY, "requestId": 0});
                    link.round_trip(&register).await.expect("registered");
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
                        link.send(&message).await.expect("sent");
                        let pushed = partner.next_push().await.expect("pushed");
                        assert_eq!(pushed["payload"]["n"], n, "{pushed}");
                    }
                    None => {
                        let reply = link.round_trip(&message).await.expect("answered");
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
    if let (Some((rss_idle, _)), Some((rss_connected, cpu_before)), Some((_, cpu_after))) =
        (before_connect, after_connect, after_run)
    {
        let cpu_seconds = cpu_after - cpu_before;
        println!(
            "server: {} bytes resident per connected session; {:.1} µs CPU per request",
            rss_connected.saturating_sub(rss_idle) * 1024 / args.sessions as u64,
            cpu_seconds * 1e6 / total as f64
        );
    }
}
