//! Checks an HTTP request before it is upgraded, with the statuses the old server (gorilla)
//! gave: 405 for a method other than GET, 400 for anything that is not a valid RFC 6455
//! handshake, every refusal naming the protocol version spoken (`Sec-WebSocket-Version: 13`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper::{Method, Request, StatusCode};

/// The only WebSocket protocol version there is (RFC 6455), sent back with every refusal so
/// that a client speaking another one learns which (RFC 6455 section 4.4).
pub const VERSION: &str = "13";

/// Why a request to the WebSocket path is not upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeRefusal {
    #[error("websocket handshake must use GET")]
    NotGet,
    #[error("not a websocket handshake")]
    NotUpgrade,
    #[error("a websocket handshake needs HTTP/1.1")]
    OldHttp,
    #[error("Sec-WebSocket-Key must be the base64 encoding of 16 bytes")]
    BadKey,
    #[error("Sec-WebSocket-Key must appear once")]
    RepeatedKey,
    #[error("unsupported Sec-WebSocket-Version: this server speaks 13")]
    UnsupportedVersion,
}

impl HandshakeRefusal {
    pub fn status(self) -> StatusCode {
        match self {
            Self::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotUpgrade
            | Self::OldHttp
            | Self::BadKey
            | Self::RepeatedKey
            | Self::UnsupportedVersion => StatusCode::BAD_REQUEST,
        }
    }
}

/// Accepts the request as a WebSocket handshake or says why not.
pub fn check<B>(request: &Request<B>) -> Result<(), HandshakeRefusal> {
    if request.method() != Method::GET {
        return Err(HandshakeRefusal::NotGet);
    }
    // RFC 6455 section 4.2.1: the handshake is an HTTP/1.1 (or later) request; hyper would
    // answer an HTTP/1.0 one with "HTTP/1.0 101", which no client can rely on.
    if !fastwebsockets::upgrade::is_upgrade_request(request) {
        return Err(HandshakeRefusal::NotUpgrade);
    }
    if request.version() < hyper::Version::HTTP_11 {
        return Err(HandshakeRefusal::OldHttp);
    }
    let headers = request.headers();
    // RFC 6455 section 4.1: a client sends 13. Like gorilla, a list that holds 13 among
    // others (`13, 8`) is accepted; the upgrade then answers as version 13.
    let version_ok = headers.get("sec-websocket-version").is_some_and(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii() == VERSION.as_bytes())
    });
    if !version_ok {
        return Err(HandshakeRefusal::UnsupportedVersion);
    }
    // RFC 6455 section 11.3.1: the key "MUST NOT appear more than once". Of two, the answer
    // (Sec-WebSocket-Accept) can prove only one was read; no client sends two.
    if headers.get_all("sec-websocket-key").iter().nth(1).is_some() {
        return Err(HandshakeRefusal::RepeatedKey);
    }
    // RFC 6455 section 4.2.1: the key is a base64-encoded 16-byte nonce.
    let key_ok = headers.get("sec-websocket-key").is_some_and(|key| {
        STANDARD
            .decode(key.as_bytes().trim_ascii())
            .is_ok_and(|nonce| nonce.len() == 16)
    });
    if !key_ok {
        return Err(HandshakeRefusal::BadKey);
    }
    Ok(())
}
