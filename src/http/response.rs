//! The few response shapes pushgate sends, so that statuses and bodies live in one place.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

/// Every response body is a complete buffer.
pub type Body = Full<Bytes>;

const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// A status with no body (the old server's 405 and 401).
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = status;
    response
}

/// A status with a plain-text body.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN);
    response
}

/// Marks `response` as the last on its connection (`Connection: close`), which hyper then
/// closes: for a request whose body never arrived whole, the rest of the stream cannot be
/// trusted to start a next request.
pub fn closing(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Methods allowed on pushing endpoints, and on read-only ones (health, metrics, demo).
pub const ALLOW_POST: HeaderValue = HeaderValue::from_static("POST");
pub const ALLOW_GET: HeaderValue = HeaderValue::from_static("GET, HEAD");

/// The scheme pushers authenticate with (`Authorization: Bearer <key>`).
const BEARER: HeaderValue = HeaderValue::from_static("Bearer");

/// Adds what HTTP requires beside some statuses (RFC 9110): a 405 names the methods the
/// resource allows, a 401 the scheme that would be accepted; clients and proxies rely on
/// them, and the old server's empty bodies stay as they were.
pub fn add_required_headers(response: &mut Response<Body>, allow: HeaderValue) {
    match response.status() {
        StatusCode::METHOD_NOT_ALLOWED => {
            response.headers_mut().insert(ALLOW, allow);
        }
        StatusCode::UNAUTHORIZED => {
            response.headers_mut().insert(WWW_AUTHENTICATE, BEARER);
        }
        _ => {}
    }
}

/// 405 with no body and the `Allow` header.
pub fn method_not_allowed(allow: HeaderValue) -> Response<Body> {
    let mut response = empty(StatusCode::METHOD_NOT_ALLOWED);
    add_required_headers(&mut response, allow);
    response
}

/// 401 with no body (the old server's) and the `WWW-Authenticate` header.
pub fn unauthorized() -> Response<Body> {
    let mut response = empty(StatusCode::UNAUTHORIZED);
    response.headers_mut().insert(WWW_AUTHENTICATE, BEARER);
    response
}

/// True for the methods a read-only resource answers.
pub fn is_read(method: &hyper::Method) -> bool {
    method == hyper::Method::GET || method == hyper::Method::HEAD
}

/// Go's `http.NotFound` body, for paths the gateway does not serve.
pub fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}
