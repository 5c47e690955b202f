//! The plain HTTP answers of the TCP port, shared by the routes and by refused WebSocket upgrades.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CONNECTION, CONTENT_TYPE};
use hyper::{Response, StatusCode};

pub type HttpResponse = Response<Full<Bytes>>;

/// Answers to the HTTP routes close their connection (`Connection: close`): they are for probes and
/// browsers fetching one value, and an idle keep-alive connection would only hold a socket.
pub fn json(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .header(CONNECTION, "close")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

/// A whole document of the given type (the metrics' exposition, the status page).
pub fn document(content_type: &'static str, body: impl Into<Bytes>) -> HttpResponse {
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, content_type)
        .header(CONNECTION, "close")
        .body(Full::new(body.into()))
        .expect("a valid response")
}

pub fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(CONNECTION, "close")
        .body(Full::new(Bytes::from_static(text.as_bytes())))
        .expect("a valid response")
}
