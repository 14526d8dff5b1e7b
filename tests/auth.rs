//! Authentication modes and the opt-in register ack, over real sockets.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use pushgate::auth::jwt::unix_now;
use pushgate::config::AuthMode;
use pushgate::Config;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &[u8] = b"an HS256 secret of at least 32 bytes!";

/// Sends a register frame asking for an ack and returns the reply.
async fn register_with_ack(ws: &mut Ws, token: &str, event: &str) -> Value {
    let frame = json!({"token": token, "event": event, "ack": true}).to_string();
    ws.send(Message::Text(frame)).await.unwrap();
    serde_json::from_str(&next_text(ws).await).unwrap()
}

async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match next(ws).await {
            Message::Close(Some(frame)) => return u16::from(frame.code),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn ack_replies_only_when_asked() {
    let gw = Gateway::start().await;
    let mut ws = gw.connect().await;
    // Byte for byte as the README shows it: `type` first.
    ws.send(Message::Text(
        json!({"token": "ann", "event": "first", "ack": true}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_text(&mut ws).await,
        r#"{"type":"registered","event":"first"}"#
    );
    assert_eq!(
        register_with_ack(&mut ws, "ann", "alarm").await,
        json!({"type": "registered", "event": "alarm"})
    );
    assert_eq!(
        register_with_ack(&mut ws, "someone-else", "alarm").await,
        json!({"type": "error", "reason": "user_conflict"})
    );
    assert_eq!(
        register_with_ack(&mut ws, "ann", "").await,
        json!({"type": "error", "reason": "empty_field"})
    );
    // Without the opt-in, nothing comes back (the old protocol).
    register(&mut ws, "ann", "news").await;
    assert_nothing_queued(&mut ws).await;
    gw.stop().await;
}

fn jwt_config() -> Config {
    let dir = std::env::temp_dir().join(format!("pushgate-auth-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("hs256.key");
    std::fs::write(&key, SECRET).unwrap();
    let mut config = Config::for_tests();
    config.auth = AuthMode::Jwt;
    config.jwt_keys = vec![format!("main=HS256:{}", key.display())];
    config.jwt_leeway = Duration::ZERO;
    config
}

fn jwt(claims: Value, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("main".into());
    encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
}

#[tokio::test]
async fn a_valid_jwt_binds_its_subject() {
    let gw = Gateway::start_with(jwt_config()).await;
    let token = jwt(json!({"sub": "erin", "exp": unix_now() + 600}), SECRET);
    let mut ws = gw.connect().await;
    assert_eq!(
        register_with_ack(&mut ws, &token, "alarm").await["type"],
        "registered"
    );
    assert_eq!(gw.pusher().await.push_ok("erin", "alarm", "hi").await, 1);
    assert_eq!(next_text(&mut ws).await, "hi");
    gw.stop().await;
}

#[tokio::test]
async fn a_refused_jwt_is_answered_and_closed_with_4401_when_acked() {
    let gw = Gateway::start_with(jwt_config()).await;
    let forged = jwt(
        json!({"sub": "erin", "exp": unix_now() + 600}),
        b"not the secret, but long enough!!",
    );
    let mut ws = gw.connect().await;
    assert_eq!(
        register_with_ack(&mut ws, &forged, "alarm").await,
        json!({"type": "error", "reason": "token_rejected"})
    );
    assert_eq!(close_code(&mut ws).await, 4401);
    // Without the ack the old behaviour holds: open and unbound.
    let mut quiet = gw.connect().await;
    register(&mut quiet, &forged, "alarm").await;
    assert_eq!(gw.pusher().await.push_ok("erin", "alarm", "x").await, 0);
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_auth_rejections_total{reason="bad_signature"}"#
        ),
        Some(2.0)
    );
    gw.stop().await;
}

/// Issuers that mint "never expires" tokens put the largest integer they have in `exp`;
/// with the leeway added it is past any clock, and it must mean no expiry, not a panic.
#[tokio::test]
async fn a_token_that_never_expires_binds_and_stays() {
    let mut config = jwt_config();
    config.jwt_leeway = Duration::from_secs(30);
    let gw = Gateway::start_with(config).await;
    let mut connections = Vec::new();
    for (user, exp) in [("ida", i64::MAX as u64), ("jon", i64::MAX as u64 - 29)] {
        let token = jwt(json!({"sub": user, "exp": exp}), SECRET);
        let mut ws = gw.connect().await;
        assert_eq!(
            register_with_ack(&mut ws, &token, "alarm").await["type"],
            "registered",
            "{user}"
        );
        connections.push((user, ws));
    }
    let mut pusher = gw.pusher().await;
    for (user, ws) in &mut connections {
        assert_eq!(pusher.push_ok(user, "alarm", "still here").await, 1);
        assert_eq!(next_text(ws).await, "still here");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_connection_is_closed_with_4408_when_its_token_expires() {
    let gw = Gateway::start_with(jwt_config()).await;
    let token = jwt(json!({"sub": "finn", "exp": unix_now() + 2}), SECRET);
    let mut ws = gw.connect().await;
    assert_eq!(
        register_with_ack(&mut ws, &token, "alarm").await["type"],
        "registered"
    );
    assert_eq!(close_code(&mut ws).await, 4408);
    assert_eq!(gw.pusher().await.push_ok("finn", "alarm", "late").await, 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_tokens_reload_on_sighup_without_dropping_connections() {
    let path = std::env::temp_dir().join(format!("pushgate-static-{}", std::process::id()));
    std::fs::write(&path, "tok-a alice\n").unwrap();
    let mut gw = GatewayProcess::start(
        &[
            "--auth",
            "static",
            "--static-tokens",
            path.to_str().unwrap(),
        ],
        None,
    )
    .await;
    let mut alice = gw.connect().await.unwrap();
    assert_eq!(
        register_with_ack(&mut alice, "tok-a", "alarm").await["type"],
        "registered"
    );
    std::fs::write(&path, "tok-b bob\n").unwrap();
    gw.hangup();
    gw.wait_for_log("SIGHUP: static tokens reloaded").await;
    let mut bob = gw.connect().await.unwrap();
    assert_eq!(
        register_with_ack(&mut bob, "tok-b", "alarm").await["type"],
        "registered"
    );
    let mut late = gw.connect().await.unwrap();
    assert_eq!(
        register_with_ack(&mut late, "tok-a", "alarm").await["reason"],
        "token_rejected"
    );
    // Alice, bound before the reload, is still connected and served.
    assert_eq!(gw.pusher().await.push_ok("alice", "alarm", "kept").await, 1);
    assert_eq!(next_text(&mut alice).await, "kept");
    std::fs::remove_file(&path).unwrap();
}

/// Push keys are read again from `--push-keys-file` on SIGHUP, so a key is rotated without a
/// restart (which would drop every browser); a file left with no key keeps the old keys, since
/// no key would let anyone push.
#[tokio::test]
async fn push_keys_reload_on_sighup_and_never_to_none() {
    let dir = TempDir::new("push-keys");
    let keys = dir.file("keys");
    std::fs::write(&keys, "old-key\n").unwrap();
    let mut gw = GatewayProcess::start(&["--push-keys-file", &keys], None).await;
    let mut pusher = gw.pusher().await;
    let body = r#"{"userId":"nobody","event":"alarm","message":"m"}"#;
    let mut status_with = async |key: &str| {
        let bearer = format!("Bearer {key}");
        let headers: &[(&str, &str)] = if key.is_empty() {
            &[]
        } else {
            &[("authorization", &bearer)]
        };
        pusher
            .request("POST", "/push", headers, body)
            .await
            .0
            .as_u16()
    };
    assert_eq!(
        (status_with("old-key").await, status_with("new-key").await),
        (200, 401)
    );

    std::fs::write(&keys, "# rotated\nnew-key\n").unwrap();
    gw.hangup();
    let reloaded = gw.wait_for_log("SIGHUP: push keys reloaded").await;
    assert_eq!(reloaded["keys"], 1);
    assert_eq!(
        (status_with("new-key").await, status_with("old-key").await),
        (200, 401)
    );

    std::fs::write(&keys, "# no key left\n").unwrap();
    gw.hangup();
    gw.wait_for_log("SIGHUP: push keys not reloaded, keeping the old ones")
        .await;
    assert_eq!(
        (status_with("new-key").await, status_with("").await),
        (200, 401)
    );
}

/// A token backend on a real socket: `good-NAME` is user NAME, `broken-...` gets a 200
/// without a usable userId (a misbehaving backend or proxy), anything else is refused.
/// Counts the requests it answers.
async fn token_backend() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let token: Value = serde_json::from_slice(&body).unwrap();
                            let token = token["token"].as_str().unwrap_or("").to_owned();
                            let broken = match token.as_str() {
                                "broken-text" => Some("not json".to_owned()),
                                "broken-empty" => Some(json!({"userId": ""}).to_string()),
                                "broken-number" => Some(json!({"userId": 5}).to_string()),
                                _ => None,
                            };
                            let response = match (token.strip_prefix("good-"), broken) {
                                (_, Some(body)) => {
                                    hyper::Response::new(Full::new(bytes::Bytes::from(body)))
                                }
                                (Some(user), None) => hyper::Response::new(Full::new(
                                    bytes::Bytes::from(json!({"userId": user}).to_string()),
                                )),
                                (None, None) => {
                                    let mut r =
                                        hyper::Response::new(Full::new(bytes::Bytes::new()));
                                    *r.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                                    r
                                }
                            };
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, asked)
}

fn http_auth_config(url: String) -> Config {
    let mut config = Config::for_tests();
    config.auth = AuthMode::Http;
    config.auth_http_url = Some(url);
    config.auth_http_timeout = Duration::from_secs(2);
    config
}

#[tokio::test]
async fn an_http_backend_decides_and_its_answers_are_cached() {
    use std::sync::atomic::Ordering;
    let (backend, asked) = token_backend().await;
    let gw = Gateway::start_with(http_auth_config(format!("http://{backend}/auth"))).await;
    let mut first = gw.connect().await;
    assert_eq!(
        register_with_ack(&mut first, "good-gwen", "alarm").await["type"],
        "registered"
    );
    let mut second = gw.connect().await;
    assert_eq!(
        register_with_ack(&mut second, "good-gwen", "alarm").await["type"],
        "registered"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the second answer came from the cache"
    );
    assert_eq!(gw.pusher().await.push_ok("gwen", "alarm", "hi").await, 2);
    let mut refused = gw.connect().await;
    assert_eq!(
        register_with_ack(&mut refused, "stolen", "alarm").await["reason"],
        "token_rejected"
    );
    assert_eq!(close_code(&mut refused).await, 4401);
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_auth_rejections_total{reason="refused"}"#
        ),
        Some(1.0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_backend_that_is_down_refuses_registrations_without_blocking_others() {
    // Nothing listens on this port once the listener is dropped.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = Gateway::start_with(http_auth_config(format!("http://{dead}/auth"))).await;
    let mut ws = gw.connect().await;
    assert_eq!(
        register_with_ack(&mut ws, "good-hal", "alarm").await,
        json!({"type": "error", "reason": "auth_unavailable"})
    );
    // The connection stays open (the client may retry), and pushes still work.
    sync(&mut ws).await;
    assert_eq!(gw.pusher().await.push_ok("hal", "alarm", "x").await, 0);
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_registrations_total{result="auth_unavailable"}"#
        ),
        Some(1.0)
    );
    gw.stop().await;
}

/// A 200 that carries no usable userId is the backend failing, not a verdict on the token:
/// the client hears `auth_unavailable` and keeps its connection (and its token), instead
/// of a 4401 that tells it not to retry with that token.
#[tokio::test]
async fn a_backend_answering_200_without_a_user_is_unavailable_not_a_refusal() {
    let (backend, _) = token_backend().await;
    let gw = Gateway::start_with(http_auth_config(format!("http://{backend}/auth"))).await;
    let mut ws = gw.connect().await;
    for token in ["broken-text", "broken-empty", "broken-number"] {
        assert_eq!(
            register_with_ack(&mut ws, token, "alarm").await,
            json!({"type": "error", "reason": "auth_unavailable"}),
            "{token}"
        );
    }
    // Still open, and a good token on the same connection binds.
    assert_eq!(
        register_with_ack(&mut ws, "good-ivy", "alarm").await["type"],
        "registered"
    );
    assert_eq!(gw.pusher().await.push_ok("ivy", "alarm", "x").await, 1);
    assert_eq!(next_text(&mut ws).await, "x");
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_registrations_total{result="auth_unavailable"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_auth_rejections_total{reason="claims"}"#
        ),
        Some(0.0)
    );
    gw.stop().await;
}
