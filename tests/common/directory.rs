//! A stand-in for the Zajel bootstrap directory, written from PROTOCOL section 3: it lists servers that
//! register, answers heartbeats (404 for a server it does not know), unregisters on DELETE, and records
//! every request. It can be told to fail (500), to hang, to forget every server (as the real directory
//! does after five minutes without a heartbeat), and to stop listening altogether.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::PATIENCE;

/// How the stand-in answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// As PROTOCOL section 3 says.
    Working,
    /// 500 to everything.
    Failing,
    /// Reads the request and never answers.
    Hanging,
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body_len: usize,
    /// The body as JSON; null when there is none.
    pub body: Value,
    /// The status answered (none when hanging).
    pub status: Option<u16>,
}

struct Directory {
    behaviour: Behaviour,
    /// Listed servers by id.
    servers: HashMap<String, Value>,
    seen: Vec<Seen>,
}

pub struct DirectoryStandIn {
    pub addr: SocketAddr,
    directory: Arc<Mutex<Directory>>,
    changed: Arc<Notify>,
    listening: Option<JoinHandle<()>>,
}

impl DirectoryStandIn {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut stand_in = Self {
            addr: listener.local_addr().unwrap(),
            directory: Arc::new(Mutex::new(Directory {
                behaviour,
                servers: HashMap::new(),
                seen: Vec::new(),
            })),
            changed: Arc::new(Notify::new()),
            listening: None,
        };
        stand_in.listen(listener);
        stand_in
    }

    /// The URL to configure as the bootstrap URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn behave(&self, behaviour: Behaviour) {
        self.directory.lock().unwrap().behaviour = behaviour;
    }

    /// Forgets every listed server, as the directory does after five minutes without a heartbeat.
    pub fn forget_all(&self) {
        self.directory.lock().unwrap().servers.clear();
    }

    /// Closes the listening socket (and every connection): the directory is down.
    pub fn stop_listening(&mut self) {
        if let Some(task) = self.listening.take() {
            task.abort();
        }
    }

    /// Listens again on the same address.
    pub async fn listen_again(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.listen(listener);
    }

    /// The servers listed now, as `GET /servers` would show them.
    pub fn listed(&self) -> Vec<Value> {
        self.directory
            .lock()
            .unwrap()
            .servers
            .values()
            .cloned()
            .collect()
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.directory.lock().unwrap().seen.clone()
    }

    /// Waits until a request received from now on (those before are not looked at) matches.
    pub async fn next_matching(&self, what: &str, matches: impl Fn(&Seen) -> bool) -> Seen {
        let from = self.seen().len();
        self.matching_from(from, what, matches).await
    }

    /// Waits until any request received so far or later matches.
    pub async fn any_matching(&self, what: &str, matches: impl Fn(&Seen) -> bool) -> Seen {
        self.matching_from(0, what, matches).await
    }

    async fn matching_from(
        &self,
        from: usize,
        what: &str,
        matches: impl Fn(&Seen) -> bool,
    ) -> Seen {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let changed = self.changed.notified();
                if let Some(seen) = self.seen()[from..].iter().find(|seen| matches(seen)) {
                    return seen.clone();
                }
                changed.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the directory saw no {what} in time: {:#?}", self.seen()))
    }

    fn listen(&mut self, listener: TcpListener) {
        let (directory, changed) = (self.directory.clone(), self.changed.clone());
        self.listening = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (directory, changed) = (directory.clone(), changed.clone());
                let service = hyper::service::service_fn(move |request| {
                    answer(request, directory.clone(), changed.clone())
                });
                connections.spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        }));
    }
}

impl Drop for DirectoryStandIn {
    fn drop(&mut self) {
        self.stop_listening();
    }
}

async fn answer(
    request: Request<Incoming>,
    directory: Arc<Mutex<Directory>>,
    changed: Arc<Notify>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |name| {
        request
            .headers()
            .get(name)
            .map(|value: &hyper::header::HeaderValue| value.to_str().unwrap().to_owned())
    };
    let (authorization, content_type) = (header("authorization"), header("content-type"));
    let (method, path) = (
        request.method().to_string(),
        request.uri().path().to_owned(),
    );
    let bytes = request.into_body().collect().await?.to_bytes();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("the server sends JSON")
    };
    let mut seen = Seen {
        method,
        path,
        authorization,
        content_type,
        body_len: bytes.len(),
        body,
        status: None,
    };
    let outcome = {
        let mut directory = directory.lock().unwrap();
        let outcome = match directory.behaviour {
            Behaviour::Hanging => None,
            Behaviour::Failing => Some((500, json!({"error": "internal"}))),
            Behaviour::Working => Some(directory.serve(&seen)),
        };
        seen.status = outcome.as_ref().map(|(status, _)| *status);
        directory.seen.push(seen);
        outcome
    };
    changed.notify_waiters();
    let Some((status, reply)) = outcome else {
        return std::future::pending().await;
    };
    Ok(Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(reply.to_string())))
        .unwrap())
}

impl Directory {
    /// What the directory answers, per PROTOCOL section 3.
    fn serve(&mut self, seen: &Seen) -> (u16, Value) {
        let server_id = seen.body["serverId"].as_str().map(str::to_owned);
        match (seen.method.as_str(), seen.path.as_str()) {
            ("POST", "/servers") => {
                let Some(server_id) = server_id else {
                    return (400, json!({"error": "Missing required fields"}));
                };
                self.servers.insert(server_id, seen.body.clone());
                (200, json!({"success": true, "server": seen.body}))
            }
            ("POST", "/servers/heartbeat") => {
                match server_id.and_then(|id| self.servers.get_mut(&id)) {
                    Some(server) => {
                        for (field, value) in seen.body.as_object().unwrap() {
                            server[field] = value.clone();
                        }
                        (200, json!({"success": true, "peers": []}))
                    }
                    None => (404, json!({"error": "Server not registered"})),
                }
            }
            ("DELETE", path) if path.starts_with("/servers/") => {
                let id = percent_decoded(&path["/servers/".len()..]);
                match self.servers.remove(&id) {
                    Some(_) => (200, json!({"success": true})),
                    None => (404, json!({"error": "Server not registered"})),
                }
            }
            _ => (404, json!({"error": "Not Found"})),
        }
    }
}

fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            decoded.push(u8::from_str_radix(hex, 16).expect("percent-encoded hex"));
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).expect("an id is UTF-8")
}
