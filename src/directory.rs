//! Being listed in the Zajel bootstrap directory (PROTOCOL section 3), where the shipped apps find
//! servers: registered at start, a heartbeat with live counts at an interval, unregistered at shutdown.
//!
//! The directory is someone else's service and may be down, slow or failing: every request has a
//! timeout, runs on this task alone (never on a session's path), and failures are retried with
//! backoff and jitter. What the operator needs to know is logged once per change (listed, or not and
//! why), not once per attempt.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::config::DirectoryConfig;
use crate::identity::ServerIdentity;

/// A registration or heartbeat that takes longer has failed; the next attempt comes after a backoff.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Shutdown waits no longer than this for the directory to take the unregistration.
const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The first retry after a failure; retries then double up to the heartbeat interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The live counts the directory is told (PROTOCOL section 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveCounts {
    /// Sessions.
    pub connections: usize,
    /// Sessions holding a relay id.
    pub relay_connections: usize,
    /// Sessions holding a pairing code.
    pub signaling_connections: usize,
    /// Pairing codes held.
    pub active_codes: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Registration<'a> {
    server_id: &'a str,
    endpoint: &'a str,
    public_key: &'a str,
    region: &'a str,
    #[serde(flatten)]
    counts: LiveCounts,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Heartbeat<'a> {
    server_id: &'a str,
    #[serde(flatten)]
    counts: LiveCounts,
}

/// Why a request to the directory did not succeed.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("the directory cannot be reached: {0}")]
    Unreachable(String),
    #[error("the directory did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the directory answered {0}")]
    Status(StatusCode),
}

/// Whether this server is listed, as the operator was last told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Listed,
    Unlisted,
}

/// This server as the directory lists it, and the way to the directory.
pub struct Directory {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The directory's URL, without a trailing slash.
    base: String,
    authorization: Option<HeaderValue>,
    heartbeat: Duration,
    server_id: Arc<str>,
    endpoint: String,
    public_key: String,
    region: String,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("base", &self.base)
            .field("server_id", &self.server_id)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// The directory of `config`, if one is configured. The configuration is validated: with a
    /// directory, the identity has an endpoint.
    pub fn from_config(
        config: &DirectoryConfig,
        identity: &ServerIdentity,
        public_key: String,
    ) -> Option<Self> {
        let base = config.bootstrap_url.as_deref()?.trim_end_matches('/');
        let endpoint = identity.endpoint.as_deref()?;
        let authorization = config.bootstrap_secret.as_ref().map(|secret| {
            let mut value = HeaderValue::try_from(format!("Bearer {secret}"))
                .expect("a secret from the command line or environment is a valid header");
            value.set_sensitive(true);
            value
        });
        Some(Self {
            client: Client::builder(TokioExecutor::new()).build(https_connector()),
            base: base.to_owned(),
            authorization,
            heartbeat: Duration::from_secs(config.bootstrap_heartbeat_secs),
            server_id: identity.server_id.clone(),
            endpoint: endpoint.to_owned(),
            public_key,
            region: identity.region.as_deref().unwrap_or("unknown").to_owned(),
        })
    }

    /// Keeps this server listed until `shutdown`, then unregisters it. `counts` reads the live counts.
    pub async fn run(self, counts: impl Fn() -> LiveCounts, shutdown: CancellationToken) {
        let mut retry = Backoff::new(FIRST_RETRY, self.heartbeat);
        let mut told: Option<Standing> = None;
        let mut registered = false;
        loop {
            let attempt = async {
                if registered {
                    self.send_heartbeat(counts()).await
                } else {
                    self.register(counts()).await
                }
            };
            // A slow directory does not hold shutdown up beyond the unregistration's own timeout.
            let attempt = tokio::select! {
                () = shutdown.cancelled() => break,
                attempt = attempt => attempt,
            };
            let wait = match attempt {
                Ok(()) => {
                    registered = true;
                    retry.reset();
                    if told != Some(Standing::Listed) {
                        info!(directory = %self.base, server_id = %self.server_id, endpoint = %self.endpoint,
                              "listed in the bootstrap directory");
                        told = Some(Standing::Listed);
                    }
                    self.heartbeat
                }
                Err(Refused::Status(StatusCode::NOT_FOUND)) if registered => {
                    // The directory forgot this server (its entries expire): register again at once.
                    debug!("the bootstrap directory forgot this server; registering again");
                    registered = false;
                    continue;
                }
                Err(refused) => {
                    let doing = if registered {
                        "heartbeat"
                    } else {
                        "registration"
                    };
                    if told != Some(Standing::Unlisted) {
                        warn!(directory = %self.base, error = %refused,
                              "bootstrap directory {doing} failed; retrying with backoff");
                        told = Some(Standing::Unlisted);
                    } else {
                        debug!(error = %refused, "bootstrap directory {doing} failed again");
                    }
                    retry.next_wait()
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.unregister().await;
    }

    async fn register(&self, counts: LiveCounts) -> Result<(), Refused> {
        let registration = Registration {
            server_id: &self.server_id,
            endpoint: &self.endpoint,
            public_key: &self.public_key,
            region: &self.region,
            counts,
        };
        self.send(
            Method::POST,
            "/servers",
            Some(json(&registration)),
            REQUEST_TIMEOUT,
        )
        .await
    }

    async fn send_heartbeat(&self, counts: LiveCounts) -> Result<(), Refused> {
        let heartbeat = Heartbeat {
            server_id: &self.server_id,
            counts,
        };
        self.send(
            Method::POST,
            "/servers/heartbeat",
            Some(json(&heartbeat)),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// Takes this server off the list; a directory that does not know it (404) is as good.
    async fn unregister(&self) {
        let path = format!("/servers/{}", percent_encoded(&self.server_id));
        match self
            .send(Method::DELETE, &path, None, UNREGISTER_TIMEOUT)
            .await
        {
            Ok(()) | Err(Refused::Status(StatusCode::NOT_FOUND)) => {
                info!("unregistered from the bootstrap directory");
            }
            Err(refused) => {
                warn!(error = %refused, "could not unregister from the bootstrap directory; it forgets this server within minutes");
            }
        }
    }

    /// One request; success is any 2xx.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(), Refused> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                USER_AGENT,
                concat!("zajel-signal/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|err| Refused::Unreachable(err.to_string()))?;
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| Refused::TimedOut(timeout))?
            .map_err(|err| Refused::Unreachable(error_chain(&err)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Refused::Status(status))
        }
    }
}

/// HTTPS with the system's trusted roots and Mozilla's (so that a container without a CA bundle works
/// too); plain HTTP only reaches a directory configured so (tests).
fn https_connector() -> HttpsConnector<HttpConnector> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let (added, _ignored) =
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    debug!(
        system_roots = added,
        "trusted roots for the bootstrap directory"
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

fn json(body: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(body).expect("a registration serializes as JSON")
}

/// An error with its causes: hyper's own text alone says only "client error (Connect)".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `text` as one path segment: every byte but the unreserved ones of RFC 3986 percent-encoded (as
/// JavaScript's `encodeURIComponent` does for the ids the directory takes).
fn percent_encoded(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_one_path_segment() {
        assert_eq!(
            percent_encoded("ed25519:ab+c/d=="),
            "ed25519%3Aab%2Bc%2Fd%3D%3D"
        );
        assert_eq!(percent_encoded("plain-id_1.2~"), "plain-id_1.2~");
    }

    #[test]
    fn registrations_carry_the_fields_of_protocol_section_3() {
        let counts = LiveCounts {
            connections: 4,
            relay_connections: 1,
            signaling_connections: 3,
            active_codes: 3,
        };
        let registration = Registration {
            server_id: "ed25519:key",
            endpoint: "wss://signal.example",
            public_key: "key",
            region: "unknown",
            counts,
        };
        assert_eq!(
            serde_json::to_value(&registration).unwrap(),
            serde_json::json!({"serverId": "ed25519:key", "endpoint": "wss://signal.example",
                               "publicKey": "key", "region": "unknown", "connections": 4,
                               "relayConnections": 1, "signalingConnections": 3, "activeCodes": 3})
        );
    }
}
