//! The benchmark of issue 11, in one command: scenarios × transports, one table.
//!
//!     cargo build --release --bins --examples
//!     target/release/examples/bench                      # every scenario on every transport
//!     target/release/examples/bench --transports quic --scenarios steady --steady-rate 10000
//!     target/release/examples/bench --scenarios connect --transports quic,webtransport --hold \
//!         --connect-sessions 20000                        # 20 000 + 20 000 sessions held together
//!
//! Scenarios:
//! - `connect`: `--connect-sessions` sessions (5000), `--connect-concurrency` (256) at a time, each
//!   connecting and registering a pairing code; then held idle: the server's resident memory per session
//!   is (RSS holding them − RSS before) / sessions.
//! - `resume` (raw QUIC only): the connect scenario's sessions, each with a TLS session store of its own,
//!   close and connect again: the row is the second round, whose handshakes resume the TLS session
//!   (no certificate signature).
//! - `steady`: `--steady-sessions` (1000) registered relays sending `update_load` and `get_relays` (10)
//!   in turn at `--steady-rate` (20 000/s) in all, each on its schedule; latency runs from the time a
//!   request was due, so a server that falls behind shows it (no coordinated omission).
//! - `rendezvous`: `--rendezvous-sessions` (200) in pairs, each sending `--rendezvous-requests` (100)
//!   `register_rendezvous` (3 daily points with a dead drop, 3 hourly tokens, shared with its partner) in
//!   a closed loop: every registration answers with the partner's entries and pushes the partner a match.
//!
//! Each row runs against a fresh server started from `target/release/zajel-signal` (or `--server`),
//! with the per-address budgets lifted (the load generator is one address playing every client; the
//! per-session limits stay), unless `--addr`, `--quic-addr` and `--server-pid` name a running one.
//! Server CPU per operation is the server's CPU time over the phase (user + system, /proc) divided by
//! the operations: on 2 cores shared with the load generator, it compares runs better than the rate.
//! `--sources N` spreads sessions over 127.0.0.1..127.0.0.N (needed past ~28 000 sessions per address).

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use support::{Clients, Link, PUBLIC_KEY, Transport, pairing_code, percentile, process_usage};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Semaphore;

/// A connect, or a request, that takes longer than this counts as an error.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
struct Args {
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ws-json,ws-cbor,quic,webtransport"
    )]
    transports: Vec<Transport>,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "connect,resume,steady,rendezvous"
    )]
    scenarios: Vec<Scenario>,
    #[arg(long, default_value_t = 5000)]
    connect_sessions: usize,
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    #[arg(long, default_value_t = 1000)]
    steady_sessions: usize,
    /// Requests per second, all sessions together.
    #[arg(long, default_value_t = 20_000)]
    steady_rate: u64,
    #[arg(long, default_value_t = 10)]
    steady_secs: u64,
    #[arg(long, default_value_t = 200)]
    rendezvous_sessions: usize,
    #[arg(long, default_value_t = 100)]
    rendezvous_requests: usize,
    /// Connect rows share one server and keep their sessions to the end: each row's RSS per session is
    /// measured on top of the earlier rows' sessions, and the server's RSS holding them all is printed
    /// last (the 20 000 QUIC + 20 000 WebTransport run). Only with `--scenarios connect`.
    #[arg(long)]
    hold: bool,
    /// Loopback source addresses to spread sessions over (127.0.0.1 up to 127.0.0.N).
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// The server binary to start for each row [default: zajel-signal next to this example's folder].
    #[arg(long)]
    server: Option<PathBuf>,
    /// A running server's WebSocket address (with --quic-addr and --server-pid) instead.
    #[arg(long, requires_all = ["quic_addr", "server_pid"])]
    addr: Option<SocketAddr>,
    #[arg(long)]
    quic_addr: Option<SocketAddr>,
    #[arg(long)]
    server_pid: Option<u32>,
    /// More flags for the servers this starts (after `--`).
    #[arg(last = true)]
    server_args: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Connect,
    Resume,
    Steady,
    Rendezvous,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect + register, held idle",
            Self::Resume => "reconnect + register, TLS resumed",
            Self::Steady => "steady update_load + get_relays",
            Self::Rendezvous => "rendezvous with pushes",
        }
    }
}

/// One row of the table.
struct Row {
    scenario: Scenario,
    transport: Transport,
    operations: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
    cpu_seconds: f64,
    /// Bytes of server memory per session held, for the connect scenario.
    rss_per_session: Option<u64>,
    /// Pushes the sessions received.
    pushes: u64,
}

/// A server under test: one this benchmark started, or one already running.
struct Server {
    http: SocketAddr,
    quic: SocketAddr,
    pid: u32,
    child: Option<tokio::process::Child>,
    data_dir: Option<PathBuf>,
}

impl Server {
    async fn start(args: &Args) -> Self {
        if let (Some(http), Some(quic), Some(pid)) = (args.addr, args.quic_addr, args.server_pid) {
            return Self {
                http,
                quic,
                pid,
                child: None,
                data_dir: None,
            };
        }
        let binary = args.server.clone().unwrap_or_else(|| {
            let examples = std::env::current_exe().expect("this program's path");
            examples
                .parent()
                .and_then(|dir| dir.parent())
                .expect("target/<profile>/examples")
                .join("zajel-signal")
        });
        let data_dir = std::env::temp_dir().join(format!(
            "zajel-bench-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let lifted = [
            "--ws-listen=127.0.0.1:0",
            "--quic-listen=127.0.0.1:0",
            "--max-sessions=1000000",
            "--max-sessions-per-ip=1000000",
            "--max-handshakes=100000",
            "--max-handshakes-per-ip=100000",
            "--handshakes-before-retry=100000",
            "--rate-limit-burst=1000000",
            "--rate-limit-per-minute=1000000",
            "--messages-per-minute-per-ip=4000000000",
            "--rendezvous-entries-per-minute-per-ip=4000000000",
            "--max-rendezvous-entries-per-ip=5000000",
        ];
        let mut child = tokio::process::Command::new(&binary)
            .args(lifted)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&args.server_args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut http, mut quic) = (None, None);
        while http.is_none() || quic.is_none() {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the server exited before listening");
            let field = |name: &str| {
                line.split(name)
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.parse::<SocketAddr>().ok())
            };
            http = http.or(field(" addr="));
            quic = quic.or(field("quic_addr="));
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            http: http.unwrap(),
            quic: quic.unwrap(),
            pid: child.id().expect("running"),
            child: Some(child),
            data_dir: Some(data_dir),
        }
    }

    fn usage(&self) -> (u64, f64) {
        process_usage(&[self.pid])
    }

    async fn stop(mut self) {
        if let Some(child) = &mut self.child {
            child.kill().await.ok();
        }
        if let Some(dir) = &self.data_dir {
            std::fs::remove_dir_all(dir).ok();
        }
    }
}

/// Connects `count` sessions, `concurrency` at a time, each sending `first(n)` once connected; returns
/// the live sessions with the time each took, and how many failed.
async fn connect_many(
    clients: &Arc<Clients>,
    transport: Transport,
    count: usize,
    concurrency: usize,
    pushes: &Arc<AtomicU64>,
    first: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> (Vec<(usize, Link)>, Vec<Duration>, usize) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let first = Arc::new(first);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let (clients, permits, pushes, first) = (
            clients.clone(),
            permits.clone(),
            pushes.clone(),
            first.clone(),
        );
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let started = Instant::now();
            let connected = tokio::time::timeout(TIMEOUT, async {
                let mut link = clients.connect(n, transport, &pushes).await?;
                let reply = link.round_trip(&first(n)).await?;
                if reply["type"] == "error" {
                    return Err(std::io::Error::other(reply.to_string()));
                }
                Ok::<_, std::io::Error>(link)
            })
            .await;
            match connected {
                Ok(Ok(link)) => Ok((n, link, started.elapsed())),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err("timed out".to_owned()),
            }
        });
    }
    let (mut links, mut latencies, mut errors) = (Vec::new(), Vec::new(), 0);
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("a session task") {
            Ok((n, link, took)) => {
                links.push((n, link));
                latencies.push(took);
            }
            Err(err) => {
                errors += 1;
                first_error.get_or_insert(err);
            }
        }
    }
    if let Some(err) = first_error {
        eprintln!("  {errors} sessions failed to open, the first: {err}");
    }
    (links, latencies, errors)
}

/// The answer to `request`, unless the session failed or took longer than [`TIMEOUT`].
async fn answered(link: &mut Link, request: &Value) -> Option<Value> {
    tokio::time::timeout(TIMEOUT, link.round_trip(request))
        .await
        .ok()?
        .ok()
}

async fn close_all(links: Vec<(usize, Link)>) {
    let mut closing = tokio::task::JoinSet::new();
    for (_, link) in links {
        closing.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), link.close()).await;
        });
    }
    while closing.join_next().await.is_some() {}
}

/// Session `n`'s first request: registering pairing code number `first_code + n`.
fn register_code(first_code: usize) -> impl Fn(usize) -> Value + Send + Sync + 'static {
    move |n| {
        json!({"type": "register", "pairingCode": pairing_code(first_code + n),
               "publicKey": PUBLIC_KEY, "requestId": 0})
    }
}

/// Sessions of a connect row, kept open by `--hold`.
struct Held {
    _clients: Arc<Clients>,
    links: Vec<(usize, Link)>,
}

/// Connects and registers `--connect-sessions` sessions with pairing codes from `first_code` on; returns
/// the row and the sessions, still open.
async fn run_connect(
    args: &Args,
    server: &Server,
    transport: Transport,
    first_code: usize,
) -> (Row, Held) {
    let clients = Arc::new(Clients::new(server.http, server.quic, args.sources).await);
    let pushes = Arc::new(AtomicU64::new(0));
    let (rss_before, cpu_before) = server.usage();
    let started = Instant::now();
    let (links, latencies, errors) = connect_many(
        &clients,
        transport,
        args.connect_sessions,
        args.connect_concurrency,
        &pushes,
        register_code(first_code),
    )
    .await;
    let elapsed = started.elapsed();
    let (_, cpu_after) = server.usage();
    // Held idle for a moment: what a session costs once its handshake's buffers are gone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_held, _) = server.usage();
    let held = links.len();
    let row = Row {
        scenario: Scenario::Connect,
        transport,
        operations: held + errors,
        elapsed,
        latencies,
        errors,
        cpu_seconds: cpu_after - cpu_before,
        rss_per_session: (held > 0)
            .then(|| rss_held.saturating_sub(rss_before) * 1024 / held as u64),
        pushes: pushes.load(Ordering::Relaxed),
    };
    (
        row,
        Held {
            _clients: clients,
            links,
        },
    )
}

/// Connects and registers every session, closes them, then does it again: the second round's handshakes
/// resume their TLS sessions. Raw QUIC only (the WebSocket rows run without TLS, and the WebTransport
/// client keeps one ticket store per endpoint).
async fn run_resume(args: &Args, server: &Server, transport: Transport) -> Row {
    let clients = Arc::new(
        Clients::new(server.http, server.quic, args.sources)
            .await
            .resuming(),
    );
    let pushes = Arc::new(AtomicU64::new(0));
    let connect = || {
        connect_many(
            &clients,
            transport,
            args.connect_sessions,
            args.connect_concurrency,
            &pushes,
            register_code(0),
        )
    };
    let (links, _, _) = connect().await;
    close_all(links).await;
    // The first round's connections finish closing on both sides before the measured round.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, cpu_before) = server.usage();
    let started = Instant::now();
    let (links, latencies, errors) = connect().await;
    let elapsed = started.elapsed();
    let (_, cpu_after) = server.usage();
    let held = links.len();
    close_all(links).await;
    Row {
        scenario: Scenario::Resume,
        transport,
        operations: held + errors,
        elapsed,
        latencies,
        errors,
        cpu_seconds: cpu_after - cpu_before,
        rss_per_session: None,
        pushes: pushes.load(Ordering::Relaxed),
    }
}

async fn run_steady(args: &Args, server: &Server, transport: Transport) -> Row {
    let clients = Arc::new(Clients::new(server.http, server.quic, args.sources).await);
    let pushes = Arc::new(AtomicU64::new(0));
    let (links, _, errors) = connect_many(
        &clients,
        transport,
        args.steady_sessions,
        args.connect_concurrency,
        &pushes,
        |n| {
            json!({"type": "register", "peerId": format!("relay-{n}"), "maxConnections": 100,
                   "requestId": 0})
        },
    )
    .await;
    let sessions = links.len().max(1);
    let interval = Duration::from_secs_f64(sessions as f64 / args.steady_rate as f64);
    let duration = Duration::from_secs(args.steady_secs);
    let (_, cpu_before) = server.usage();
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (n, mut link)) in links.into_iter().enumerate() {
        // Sessions start spread over one interval, not all at once.
        let offset = interval.mul_f64(index as f64 / sessions as f64);
        tasks.spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            let peer_id = format!("relay-{n}");
            for k in 0.. {
                let due = start + offset + interval * k;
                if due > start + duration {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let request = if k % 2 == 0 {
                    json!({"type": "update_load", "peerId": peer_id, "connectedCount": k % 100,
                           "requestId": k})
                } else {
                    json!({"type": "get_relays", "peerId": peer_id, "count": 10, "requestId": k})
                };
                match answered(&mut link, &request).await {
                    Some(reply) if reply["type"] != "error" => latencies.push(due.elapsed()),
                    _ => errors += 1,
                }
            }
            link.close().await;
            (latencies, errors)
        });
    }
    let measured = Measured {
        server,
        cpu_before,
        started: start.into_std(),
        errors,
        pushes,
    };
    measured.row(Scenario::Steady, transport, tasks).await
}

async fn run_rendezvous(args: &Args, server: &Server, transport: Transport) -> Row {
    let clients = Arc::new(Clients::new(server.http, server.quic, args.sources).await);
    let pushes = Arc::new(AtomicU64::new(0));
    let (links, _, errors) = connect_many(
        &clients,
        transport,
        args.rendezvous_sessions,
        args.connect_concurrency,
        &pushes,
        |_| json!({"type": "ping", "requestId": 0}),
    )
    .await;
    let requests = args.rendezvous_requests;
    let (_, cpu_before) = server.usage();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, mut link) in links {
        tasks.spawn(async move {
            let (mut latencies, mut errors) = (Vec::with_capacity(requests), 0);
            // Each pair of sessions shares its points, as two friends do.
            let point = |k: usize| format!("p{}-{k}", n / 2);
            for k in 1..=requests {
                let request = json!({"type": "register_rendezvous", "peerId": format!("peer-{n}"),
                    "requestId": k, "dailyPoints": [point(0), point(1), point(2)],
                    "deadDrop": "c2VhbGVkIGRlYWQgZHJvcCBmb3IgYSBmcmllbmQ=",
                    "hourlyTokens": [point(3), point(4), point(5)],
                    "relayId": format!("relay-{}", n % 100)});
                let sent = Instant::now();
                match answered(&mut link, &request).await {
                    Some(reply) if reply["type"] == "rendezvous_result" => {
                        latencies.push(sent.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            link.close().await;
            (latencies, errors)
        });
    }
    let measured = Measured {
        server,
        cpu_before,
        started,
        errors,
        pushes,
    };
    measured.row(Scenario::Rendezvous, transport, tasks).await
}

/// A phase of sessions making requests, being measured.
struct Measured<'a> {
    server: &'a Server,
    cpu_before: f64,
    started: Instant,
    /// Sessions that failed to open.
    errors: usize,
    pushes: Arc<AtomicU64>,
}

impl Measured<'_> {
    /// The row of the phase, once every session's task (its latencies and failed requests) is done.
    async fn row(
        self,
        scenario: Scenario,
        transport: Transport,
        mut tasks: tokio::task::JoinSet<(Vec<Duration>, usize)>,
    ) -> Row {
        let (mut latencies, mut errors) = (Vec::new(), self.errors);
        while let Some(joined) = tasks.join_next().await {
            let (some, failed) = joined.expect("a session task");
            latencies.extend(some);
            errors += failed;
        }
        let elapsed = self.started.elapsed();
        let (_, cpu_after) = self.server.usage();
        Row {
            scenario,
            transport,
            operations: latencies.len() + errors,
            elapsed,
            latencies,
            errors,
            cpu_seconds: cpu_after - self.cpu_before,
            rss_per_session: None,
            pushes: self.pushes.load(Ordering::Relaxed),
        }
    }
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn print_row(row: &mut Row) {
    row.latencies.sort();
    let done = row.latencies.len();
    println!(
        "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {:.1} µs | {} | {} |",
        row.scenario.label(),
        row.transport.label(),
        row.operations,
        done as f64 / row.elapsed.as_secs_f64(),
        millis(percentile(&row.latencies, 0.5)),
        millis(percentile(&row.latencies, 0.99)),
        millis(row.latencies.last().copied().unwrap_or_default()),
        row.errors,
        row.cpu_seconds * 1e6 / row.operations.max(1) as f64,
        row.rss_per_session.map_or("".to_owned(), |bytes| format!(
            "{:.1} KiB",
            bytes as f64 / 1024.0
        )),
        row.pushes,
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!(
        "| scenario | transport | operations | done per second | p50 | p99 | max | errors | server CPU per operation | server RSS per idle session | pushes received |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    if args.hold {
        return run_held(&args).await;
    }
    for &scenario in &args.scenarios {
        for &transport in &args.transports {
            if scenario == Scenario::Resume && transport != Transport::Quic {
                continue;
            }
            let server = Server::start(&args).await;
            let mut row = match scenario {
                Scenario::Connect => {
                    let (row, held) = run_connect(&args, &server, transport, 0).await;
                    close_all(held.links).await;
                    row
                }
                Scenario::Resume => run_resume(&args, &server, transport).await,
                Scenario::Steady => run_steady(&args, &server, transport).await,
                Scenario::Rendezvous => run_rendezvous(&args, &server, transport).await,
            };
            server.stop().await;
            print_row(&mut row);
        }
    }
}

/// `--hold`: every transport's connect row on one server, all sessions kept to the end.
async fn run_held(args: &Args) {
    assert!(
        args.scenarios == [Scenario::Connect],
        "--hold runs the connect scenario only"
    );
    let server = Server::start(args).await;
    let (rss_fresh, _) = server.usage();
    let mut kept = Vec::new();
    for &transport in &args.transports {
        let first_code = kept.iter().map(|held: &Held| held.links.len()).sum();
        let (mut row, held) = run_connect(args, &server, transport, first_code).await;
        print_row(&mut row);
        kept.push(held);
    }
    let (rss_all, _) = server.usage();
    let sessions: usize = kept.iter().map(|held| held.links.len()).sum();
    println!(
        "\nholding {sessions} sessions together: server RSS {:.1} MiB ({:.1} MiB over the fresh server's {:.1} MiB)",
        rss_all as f64 / 1024.0,
        rss_all.saturating_sub(rss_fresh) as f64 / 1024.0,
        rss_fresh as f64 / 1024.0
    );
    for held in kept {
        close_all(held.links).await;
    }
    server.stop().await;
}
