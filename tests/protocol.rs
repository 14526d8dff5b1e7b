//! Every row of the v1 protocol table (shared/protocol.md), over real sockets.

mod common;

use common::*;
use hyper::StatusCode;
use pushgate::Config;
use tokio_tungstenite::tungstenite::Message;

const ILLEGAL: &str = "request data illegal";

#[tokio::test]
async fn push_with_a_method_other_than_post_is_405_with_an_empty_body() {
    let gw = Gateway::start().await;
    let mut pusher = gw.pusher().await;
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let (status, headers, body) = pusher.request_full(method, "/push", &[], "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(body, "", "{method}");
        assert_eq!(headers["allow"], "POST", "{method}");
    }
    gw.stop().await;
}

/// HTTP's companions of some statuses (RFC 9110): every 405 names the allowed methods, and
/// every 401 the scheme that would be accepted; read-only resources answer GET and HEAD.
#[tokio::test]
async fn refusals_carry_allow_and_www_authenticate() {
    let mut config = Config::for_tests();
    config.push_keys = vec!["k1".into()];
    let gw = Gateway::start_with(config).await;
    let mut internal = gw.pusher().await;
    for path in ["/push", "/api/v2/push", "/api/v2/broadcast"] {
        let (status, headers, _) = internal.request_full("POST", path, &[], "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(headers["www-authenticate"], "Bearer", "{path}");
        let (status, headers, _) = internal.request_full("GET", path, &[], "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(headers["allow"], "POST", "{path}");
    }
    for path in ["/metrics", "/healthz", "/readyz"] {
        let (status, headers, _) = internal.request_full("POST", path, &[], "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(headers["allow"], "GET, HEAD", "{path}");
        let (status, _, _) = internal.request_full("HEAD", path, &[], "").await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let mut public = gw.public_http().await;
    let (status, headers, _) = public.request_full("POST", "/ws", &[], "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET");
    let (status, headers, _) = public.request_full("DELETE", "/healthz", &[], "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, HEAD");
    gw.stop().await;
}

#[tokio::test]
async fn push_with_failed_authorisation_is_401_with_an_empty_body() {
    let mut config = Config::for_tests();
    config.push_keys = vec!["old-key".into(), "new-key".into()];
    let gw = Gateway::start_with(config).await;
    let _client = gw.client("u", "e").await;
    let mut pusher = gw.pusher().await;
    let body = r#"{"userId":"u","event":"e","message":"m"}"#;
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "new-key")],
        vec![("authorization", "Bearer new-key-and-more")],
    ] {
        let (status, reply) = pusher.request("POST", "/push", &headers, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(reply, "");
    }
    // The scheme is case-insensitive (RFC 9110 11.1).
    for key in [
        "Bearer old-key",
        "Bearer new-key",
        "bearer new-key",
        "BEARER  old-key",
    ] {
        let (status, reply) = pusher
            .request("POST", "/push", &[("authorization", key)], body)
            .await;
        assert_eq!(
            (status, reply.as_str()),
            (StatusCode::OK, "message sent to 1 clients")
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn push_bodies_of_the_wrong_shape_are_400_request_data_illegal() {
    let gw = Gateway::start().await;
    let mut pusher = gw.pusher().await;
    for body in [
        "not json",
        "",
        "[]",
        r#"{"userId":"u","event":"e","message":5}"#,
        r#"{"userId":7,"event":"e","message":"m"}"#,
        r#"{"userId":"u","event":"e","message":{"a":1}}"#,
        r#"{"userId":"u","event":"e""#,
    ] {
        let (status, reply) = pusher.request("POST", "/push", &[], body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply, ILLEGAL, "{body}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn push_with_a_missing_or_empty_field_is_400_request_data_illegal() {
    let gw = Gateway::start().await;
    let mut pusher = gw.pusher().await;
    for body in [
        r#"{"event":"e","message":"m"}"#,
        r#"{"userId":"u","message":"m"}"#,
        r#"{"userId":"u","event":"e"}"#,
        r#"{"userId":"","event":"e","message":"m"}"#,
        r#"{"userId":"u","event":"","message":"m"}"#,
        r#"{"userId":"u","event":"e","message":""}"#,
        r#"{"userId":"u","event":"e","message":null}"#,
        "{}",
    ] {
        let (status, reply) = pusher.request("POST", "/push", &[], body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply, ILLEGAL, "{body}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn push_to_nobody_is_200_message_sent_to_0_clients() {
    let gw = Gateway::start().await;
    let (status, reply) = gw.push("nobody", "alarm", "hello").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply, "message sent to 0 clients");
    gw.stop().await;
}

#[tokio::test]
async fn push_is_written_as_is_as_one_text_frame_and_counted() {
    let gw = Gateway::start().await;
    let mut client = gw.client("03A3408D-7C1B", "alarm").await;
    let (status, reply) = gw.push("03A3408D-7C1B", "alarm", "CPU > 95% on db-3").await;
    assert_eq!(
        (status, reply.as_str()),
        (StatusCode::OK, "message sent to 1 clients")
    );
    assert_eq!(
        next(&mut client).await,
        Message::Text("CPU > 95% on db-3".into())
    );
    gw.stop().await;
}

#[tokio::test]
async fn field_names_match_case_insensitively_and_unknown_fields_are_ignored() {
    let gw = Gateway::start().await;
    let mut client = gw.connect().await;
    send_and_sync(
        &mut client,
        Message::Text(r#"{"Token":"u1","EVENT":"alarm","extra":{"x":[1]}}"#.into()),
    )
    .await;
    let mut pusher = gw.pusher().await;
    let (status, reply) = pusher
        .request(
            "POST",
            "/push",
            &[],
            r#"{"userid":"u1","Event":"alarm","MESSAGE":"hi","priority":3}"#,
        )
        .await;
    assert_eq!(
        (status, reply.as_str()),
        (StatusCode::OK, "message sent to 1 clients")
    );
    assert_eq!(next_text(&mut client).await, "hi");
    gw.stop().await;
}

#[tokio::test]
async fn plain_get_on_the_websocket_path_is_400_and_other_methods_405() {
    let gw = Gateway::start().await;
    let mut http = gw.public_http().await;
    let (status, _) = http.request("GET", "/ws", &[], "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = http.request("POST", "/ws", &[], "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = http.request("GET", "/elsewhere", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    gw.stop().await;
}

/// Sends an upgrade request by hand and returns the first 12 bytes of the answer (the
/// protocol version and the status).
async fn raw_upgrade_status(
    addr: std::net::SocketAddr,
    http: &str,
    connection: &str,
    version: &str,
    key: &str,
) -> [u8; 12] {
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws {http}\r\nHost: x\r\nConnection: {connection}\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut raw, request.as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut raw, &mut head)
        .await
        .unwrap();
    head
}

#[tokio::test]
async fn handshakes_outside_rfc_6455_are_400_and_name_the_version_spoken() {
    let gw = Gateway::start().await;
    let mut http = gw.public_http().await;
    let nonce = "dGhlIHNhbXBsZSBub25jZQ==";
    for (version, key) in [
        (Some("8"), Some(nonce)),
        (Some("8, 7"), Some(nonce)),
        (Some("130"), Some(nonce)),
        (None, Some(nonce)),
        (Some("13"), None),
        (Some("13"), Some("abc")),
        // 16 bytes must be what the key decodes to, not 15 or 17.
        (Some("13"), Some("dGhlIHNhbXBsZSBub25j")),
        (Some("13"), Some("dGhlIHNhbXBsZSBub25jZSEh")),
    ] {
        let mut headers = vec![("connection", "Upgrade"), ("upgrade", "websocket")];
        headers.extend(version.map(|v| ("sec-websocket-version", v)));
        headers.extend(key.map(|k| ("sec-websocket-key", k)));
        let (status, response_headers, _) = http.request_full("GET", "/ws", &headers, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{version:?} {key:?}");
        assert_eq!(
            response_headers["sec-websocket-version"], "13",
            "{version:?} {key:?}"
        );
    }
    // The key must appear once (RFC 6455 11.3.1), even when both copies are valid.
    let (status, _, answer) = http
        .request_full(
            "GET",
            "/ws",
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", nonce),
                ("sec-websocket-key", nonce),
            ],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer, "Sec-WebSocket-Key must appear once\n");
    // An HTTP/1.0 upgrade is not a WebSocket handshake (RFC 6455 4.2.1).
    let head = raw_upgrade_status(gw.addr, "HTTP/1.0", "Upgrade", "13", nonce).await;
    assert_eq!(&head, b"HTTP/1.0 400");
    // And the answer says what is wrong with it.
    let mut raw = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.0\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {nonce}\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut raw, request.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut answer),
    )
    .await
    .expect("an HTTP/1.0 answer ends with the connection")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.ends_with("\r\n\r\na websocket handshake needs HTTP/1.1\n"),
        "{answer}"
    );
    // What browsers send is accepted, Firefox's "Connection: keep-alive, Upgrade" included,
    // and a version list that holds 13 (gorilla accepted it too).
    for (connection, version) in [
        ("keep-alive, Upgrade", "13"),
        ("upgrade", "13"),
        ("upgrade", "13, 8"),
        ("upgrade", "8,13"),
    ] {
        let head = raw_upgrade_status(gw.addr, "HTTP/1.1", connection, version, nonce).await;
        assert_eq!(&head, b"HTTP/1.1 101", "{connection:?} {version:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn invalid_register_frames_leave_the_connection_open_and_unbound() {
    let gw = Gateway::start().await;
    let mut client = gw.connect().await;
    for frame in [
        Message::Text("not json".into()),
        Message::Text(r#"{"token":"","event":"alarm"}"#.into()),
        Message::Text(r#"{"token":"u","event":""}"#.into()),
        Message::Text(r#"{"token":5,"event":"alarm"}"#.into()),
        Message::Binary(br#"{"token":"u","event":"alarm"}"#.to_vec()),
    ] {
        send_and_sync(&mut client, frame).await;
        let (_, reply) = gw.push("u", "alarm", "m").await;
        assert_eq!(reply, "message sent to 0 clients");
    }
    // Still open, and a valid frame binds it.
    register(&mut client, "u", "alarm").await;
    assert_eq!(gw.pusher().await.push_ok("u", "alarm", "m").await, 1);
    assert_eq!(next_text(&mut client).await, "m");
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_registrations_total{result="malformed"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_registrations_total{result="empty_field"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&metrics, r#"pushgate_registrations_total{result="binary"}"#),
        Some(1.0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn oversized_push_body_is_413() {
    let mut config = Config::for_tests();
    config.max_push_body = 1024;
    let gw = Gateway::start_with(config).await;
    let message = "x".repeat(2048);
    let (status, reply) = gw.push("u", "e", &message).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply, "request body too large");
    gw.stop().await;
}
