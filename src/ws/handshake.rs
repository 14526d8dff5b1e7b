//! Checks an HTTP request before it is upgraded, with the statuses the old server (gorilla)
//! gave: 405 for a method other than GET, 400 for anything that is not a WebSocket handshake.

use hyper::{Method, Request, StatusCode};

/// Why a request to the WebSocket path is not upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeRefusal {
    #[error("websocket handshake must use GET")]
    NotGet,
    #[error("not a websocket handshake")]
    NotUpgrade,
    #[error("missing or unsupported Sec-WebSocket-Key / Sec-WebSocket-Version")]
    BadHandshake,
}

impl HandshakeRefusal {
    pub fn status(self) -> StatusCode {
        match self {
            Self::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotUpgrade | Self::BadHandshake => StatusCode::BAD_REQUEST,
        }
    }
}

/// Accepts the request as a WebSocket handshake or says why not.
pub fn check<B>(request: &Request<B>) -> Result<(), HandshakeRefusal> {
    if request.method() != Method::GET {
        return Err(HandshakeRefusal::NotGet);
    }
    if !fastwebsockets::upgrade::is_upgrade_request(request) {
        return Err(HandshakeRefusal::NotUpgrade);
    }
    let headers = request.headers();
    let key_ok = headers
        .get("sec-websocket-key")
        .is_some_and(|key| !key.as_bytes().is_empty());
    let version_ok = headers
        .get("sec-websocket-version")
        .is_some_and(|v| v.as_bytes() == b"13");
    if !key_ok || !version_ok {
        return Err(HandshakeRefusal::BadHandshake);
    }
    Ok(())
}
