//! The TCP port: optional TLS, HTTP/1.1, the HTTP routes (`/health`, `/ready`, `/stats`, `/metrics`,
//! `/status`, `/cert-hash`), and WebSocket upgrades on every other path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, CONNECTION,
    CONTENT_SECURITY_POLICY, HeaderValue,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::TransportContext;
use super::responses::{HttpResponse, document, json, plain};
use super::status;
use super::websocket;
use crate::admission::Handshake;
use crate::metrics::{self, HandshakeStage};
use crate::redact::redacted;

/// Pause after a failed accept (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts TCP connections until shutdown; each is served on its own task, counted as a handshake in
/// progress until its TLS handshake, HTTP request and WebSocket upgrade are done. A connection over the
/// handshake limits is closed at once. When accepting fails (out of file descriptors, say), the loop waits
/// a little before trying again, and says so once, not at every try.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    context: Arc<TransportContext>,
) {
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            () = context.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if std::mem::take(&mut failing) {
                    info!("accepting TCP connections again");
                }
                let Ok(handshake) = context.sessions.admissions().begin_handshake(peer.ip()) else {
                    debug!(peer = %redacted(peer.ip()), "over the handshake limits; closed");
                    continue;
                };
                let context_for_task = context.clone();
                let tls = tls.clone();
                context.tasks.spawn(serve_connection(
                    stream,
                    peer,
                    tls,
                    handshake,
                    context_for_task,
                ));
            }
            Err(err) => {
                if !std::mem::replace(&mut failing, true) {
                    warn!(error = %err, "accepting TCP connections fails; trying again shortly");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    _in_progress: Handshake,
    context: Arc<TransportContext>,
) {
    // Replies are small and latency matters more than packing.
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_http(TokioIo::new(stream), peer, context).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(context.config.handshake_timeout(), acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => serve_http(TokioIo::new(stream), peer, context).await,
                Ok(Err(err)) => {
                    context
                        .sessions
                        .metrics()
                        .handshake_failed(HandshakeStage::Tls);
                    debug!(peer = %redacted(peer.ip()), error = %err, "TLS handshake failed");
                }
                Err(_) => {
                    context
                        .sessions
                        .metrics()
                        .handshake_failed(HandshakeStage::Tls);
                    debug!(peer = %redacted(peer.ip()), "TLS handshake timed out");
                }
            }
        }
    }
}

async fn serve_http<I>(io: I, peer: SocketAddr, context: Arc<TransportContext>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let shutdown = context.shutdown.clone();
    let handshake_timeout = context.config.handshake_timeout();
    let service = service_fn(move |request| {
        let response = route(request, peer, &context);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .max_buf_size(64 * 1024);
    let mut connection = pin!(builder.serve_connection(io, service).with_upgrades());
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        debug!(peer = %redacted(peer.ip()), error = %err, "HTTP connection ended with an error");
    }
}

fn route(
    request: Request<Incoming>,
    peer: SocketAddr,
    context: &Arc<TransportContext>,
) -> HttpResponse {
    match (request.method(), request.uri().path()) {
        // hyper leaves the body out of HEAD answers by itself.
        (&Method::GET | &Method::HEAD, "/health") => json(StatusCode::OK, &context.health()),
        (&Method::GET | &Method::HEAD, "/cert-hash") => json(StatusCode::OK, &context.cert_hash()),
        (&Method::GET | &Method::HEAD, "/stats") => json(StatusCode::OK, &context.stats()),
        (&Method::GET | &Method::HEAD, "/metrics") => {
            document(metrics::CONTENT_TYPE, context.metrics())
        }
        (&Method::GET | &Method::HEAD, "/status") => status_page(),
        (&Method::GET | &Method::HEAD, "/ready") => {
            let (status, body) = context.readiness();
            json(status, &body)
        }
        (&Method::OPTIONS, "/health" | "/cert-hash" | "/stats" | "/ready") => cors_preflight(),
        (_, "/health" | "/cert-hash" | "/stats" | "/ready" | "/metrics" | "/status") => {
            plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
        }
        _ => websocket::upgrade(request, peer, context),
    }
}

/// The status page, which may load nothing from elsewhere: its script and style are inline, and it
/// reads only this server's `/stats`.
fn status_page() -> HttpResponse {
    let mut page = document("text/html; charset=utf-8", status::PAGE);
    page.headers_mut().insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    page
}

/// The answer to a CORS preflight: any origin may read the HTTP routes.
fn cors_preflight() -> HttpResponse {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .header(ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS")
        .header(ACCESS_CONTROL_MAX_AGE, "86400")
        .header(CONNECTION, "close")
        .body(Full::default())
        .expect("a valid response")
}
