//! WebSocket over TLS (wss://) with a configured PEM certificate and key.

mod common;

use std::sync::Arc;

use common::{PATIENCE, TestServer, test_config};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio_tungstenite::tungstenite::Message;

async fn next_text<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(PATIENCE, ws.next()).await.unwrap() {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
        other => panic!("unexpected frame {other:?}"),
    }
}

/// A server speaking TLS on its TCP port with a certificate written in `dir`.
async fn wss_server(dir: &std::path::Path) -> (TestServer, rcgen::CertifiedKey<rcgen::KeyPair>) {
    let certified = common::write_certificate(dir);
    let mut config = test_config();
    config.listen.ws_tls = true;
    config.tls.tls_cert = Some(dir.join("cert.pem"));
    config.tls.tls_key = Some(dir.join("key.pem"));
    (TestServer::start_with(config).await, certified)
}

#[tokio::test]
async fn wss_serves_sessions_with_the_configured_certificate() {
    let dir = std::env::temp_dir().join(format!("zajel-wss-test-{}", std::process::id()));
    let (server, certified) = wss_server(&dir).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let tls = client_of(&certified)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS handshake with the configured certificate");
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://{}/", server.addr), tls)
        .await
        .expect("WebSocket handshake over TLS");

    assert_eq!(next_text(&mut ws).await["type"], "server_info");
    ws.send(Message::text(
        json!({"type": "ping", "requestId": 1}).to_string(),
    ))
    .await
    .unwrap();
    let reply = next_text(&mut ws).await;
    assert_eq!(reply, json!({"type": "pong", "requestId": 1}));
    server.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// A client of the certificate `certified`, with a TLS session store of its own.
fn client_of(certified: &rcgen::CertifiedKey<rcgen::KeyPair>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Asks for /health over TLS and reads the whole answer (the server closes after it): the session tickets
/// sent after the handshake are in the client's store by then. Returns how the handshake went.
async fn health_over_tls(client: &TlsConnector, addr: std::net::SocketAddr) -> HandshakeKind {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = client
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, tls.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    kind
}

#[tokio::test]
async fn a_reconnecting_client_resumes_its_tls_session_however_many_came_between() {
    let dir = std::env::temp_dir().join(format!("zajel-wss-resume-{}", std::process::id()));
    let (server, certified) = wss_server(&dir).await;

    let returning = client_of(&certified);
    assert_eq!(
        health_over_tls(&returning, server.addr).await,
        HandshakeKind::Full
    );
    // More clients than a server-side session cache of 256 would remember (one at a time: an address
    // has a handshake limit).
    for _ in 0..300 {
        health_over_tls(&client_of(&certified), server.addr).await;
    }
    assert_eq!(
        health_over_tls(&returning, server.addr).await,
        HandshakeKind::Resumed
    );
    server.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_missing_certificate_is_a_clear_start_up_error() {
    let mut config = test_config();
    config.listen.ws_tls = true;
    config.tls.tls_cert = Some("/nonexistent/cert.pem".into());
    config.tls.tls_key = Some("/nonexistent/key.pem".into());
    let error = zajel_signal::Server::bind(config)
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("/nonexistent/cert.pem"),
        "{error}"
    );
}
