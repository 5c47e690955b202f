//! Clients of the QUIC port: raw QUIC (quinn, ALPN zajel/1) and WebTransport (wtransport), both speaking
//! length-prefixed CBOR frames.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use wtransport::quinn;
use zajel_signal::protocol::framing::{read_frame, write_frame};

use super::{PATIENCE, TestServer, cbor_to_json};

pub fn cbor(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::into_writer(value, &mut bytes).unwrap();
    bytes
}

pub async fn send_frame<W: AsyncWrite + Unpin>(stream: &mut W, message: &Value) {
    write_frame(stream, &cbor(message))
        .await
        .expect("write a frame");
}

/// The next frame as JSON; `None` when the stream ended cleanly.
pub async fn next_frame<R: AsyncRead + Unpin>(stream: &mut R) -> Option<Value> {
    let mut frame = Vec::new();
    let more = tokio::time::timeout(PATIENCE, read_frame(stream, 16 << 20, &mut frame))
        .await
        .expect("a frame in time")
        .expect("a well-formed frame");
    more.then(|| cbor_to_json(&frame))
}

pub async fn recv_frame<R: AsyncRead + Unpin>(stream: &mut R) -> Value {
    next_frame(stream)
        .await
        .expect("a frame, not the end of the stream")
}

/// Reads the first frame of a push stream, which must be `server_info`.
async fn expect_server_info<R: AsyncRead + Unpin>(pushes: &mut R) {
    let info = recv_frame(pushes).await;
    assert_eq!(info["type"], "server_info", "{info}");
}

/// Sends one request on a fresh stream, finishes it, and returns its one answer; the server must then
/// finish the stream.
async fn request_on<W, R>(send: &mut W, recv: &mut R, message: &Value) -> Value
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    send_frame(send, message).await;
    send.shutdown().await.unwrap();
    let reply = recv_frame(recv).await;
    assert_eq!(next_frame(recv).await, None, "one answer per request frame");
    reply
}

/// A raw QUIC session: its connection and its push stream, `server_info` already read.
pub struct QuicClient {
    pub connection: quinn::Connection,
    pub pushes: quinn::RecvStream,
    _endpoint: quinn::Endpoint,
}

impl QuicClient {
    pub async fn connect(server: &TestServer) -> Self {
        Self::connect_to(server.quic_addr, server.certificates.leaf_der()).await
    }

    pub async fn connect_to(
        addr: SocketAddr,
        trusted: rustls::pki_types::CertificateDer<'static>,
    ) -> Self {
        let (endpoint, connection) = Self::handshake(addr, trusted).await;
        let mut pushes = tokio::time::timeout(PATIENCE, connection.accept_uni())
            .await
            .expect("push stream in time")
            .expect("push stream");
        expect_server_info(&mut pushes).await;
        Self {
            connection,
            pushes,
            _endpoint: endpoint,
        }
    }

    /// A QUIC connection to the server, before anything is read from it.
    pub async fn handshake(
        addr: SocketAddr,
        trusted: rustls::pki_types::CertificateDer<'static>,
    ) -> (quinn::Endpoint, quinn::Connection) {
        let (endpoint, connecting) = Self::start_handshake(addr, trusted);
        let connection = tokio::time::timeout(PATIENCE, connecting)
            .await
            .expect("QUIC handshake in time")
            .expect("QUIC handshake");
        (endpoint, connection)
    }

    /// A handshake under way, for tests of how it ends.
    pub fn start_handshake(
        addr: SocketAddr,
        trusted: rustls::pki_types::CertificateDer<'static>,
    ) -> (quinn::Endpoint, quinn::Connecting) {
        Self::start_handshake_with_alpn(addr, trusted, b"zajel/1")
    }

    /// A handshake under way for `alpn`: with `h3`, a connection that then says nothing is a
    /// WebTransport handshake that never ends.
    pub fn start_handshake_with_alpn(
        addr: SocketAddr,
        trusted: rustls::pki_types::CertificateDer<'static>,
        alpn: &[u8],
    ) -> (quinn::Endpoint, quinn::Connecting) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(trusted).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![alpn.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let connecting = endpoint.connect(addr, "127.0.0.1").unwrap();
        (endpoint, connecting)
    }

    /// One request on a stream of its own.
    pub async fn request(&self, message: &Value) -> Value {
        let (mut send, mut recv) = self.connection.open_bi().await.expect("open a stream");
        request_on(&mut send, &mut recv, message).await
    }
}

/// A WebTransport session, connected the way a browser does with `serverCertificateHashes`.
pub struct WebTransportClient {
    pub connection: wtransport::Connection,
    pub pushes: wtransport::RecvStream,
    _endpoint: wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client>,
}

impl WebTransportClient {
    pub async fn connect(server: &TestServer) -> Self {
        Self::connect_with(server, "/", None)
            .await
            .expect("WebTransport session")
    }

    pub async fn connect_with(
        server: &TestServer,
        path: &str,
        origin: Option<&str>,
    ) -> Result<Self, wtransport::error::ConnectingError> {
        let hash = wtransport::tls::Sha256Digest::new(server.certificates.sha256());
        let config = wtransport::ClientConfig::builder()
            .with_bind_default()
            .with_server_certificate_hashes([hash])
            .build();
        let endpoint = wtransport::Endpoint::client(config).unwrap();
        let url = format!("https://127.0.0.1:{}{path}", server.quic_addr.port());
        let mut options = wtransport::endpoint::ConnectOptions::builder(url);
        if let Some(origin) = origin {
            options = options.add_header("origin", origin);
        }
        let connection = tokio::time::timeout(PATIENCE, endpoint.connect(options.build()))
            .await
            .expect("WebTransport handshake in time")?;
        let mut pushes = tokio::time::timeout(PATIENCE, connection.accept_uni())
            .await
            .expect("push stream in time")
            .expect("push stream");
        expect_server_info(&mut pushes).await;
        Ok(Self {
            connection,
            pushes,
            _endpoint: endpoint,
        })
    }

    pub async fn request(&self, message: &Value) -> Value {
        let (mut send, mut recv) = self
            .connection
            .open_bi()
            .await
            .expect("open a stream")
            .await
            .expect("stream opened");
        request_on(&mut send, &mut recv, message).await
    }
}
