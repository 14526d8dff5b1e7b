//! Production hardening, over real sockets: listener separation, timers, caps, origins,
//! header timeouts. (File-descriptor exhaustion and SIGTERM drain run a real process: see
//! `tests/process.rs`.)

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use hyper::StatusCode;
use pushgate::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn push_and_metrics_are_not_reachable_on_the_public_listener_by_default() {
    let gw = Gateway::start().await;
    let mut public = gw.public_http().await;
    let body = r#"{"userId":"u","event":"e","message":"m"}"#;
    let (status, _) = public.request("POST", "/push", &[], body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = public.request("GET", "/metrics", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // And the internal listener serves no WebSockets.
    let (status, _) = gw.pusher().await.request("GET", "/ws", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for http in [&mut public, &mut gw.pusher().await] {
        assert_eq!(
            http.request("GET", "/healthz", &[], "").await.0,
            StatusCode::OK
        );
        assert_eq!(
            http.request("GET", "/readyz", &[], "").await.0,
            StatusCode::OK
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn public_push_is_opt_in_and_needs_a_key() {
    let mut config = Config::for_tests();
    config.public_push = true;
    config.push_keys = vec!["s3cret".into()];
    let gw = Gateway::start_with(config).await;
    let mut client = gw.client("pat", "alarm").await;
    let mut public = gw.public_http().await;
    let body = r#"{"userId":"pat","event":"alarm","message":"m"}"#;
    let (status, reply) = public.request("POST", "/push", &[], body).await;
    assert_eq!((status, reply.as_str()), (StatusCode::UNAUTHORIZED, ""));
    let (status, reply) = public
        .request("POST", "/push", &[("authorization", "Bearer s3cret")], body)
        .await;
    assert_eq!(
        (status, reply.as_str()),
        (StatusCode::OK, "message sent to 1 clients")
    );
    assert_eq!(next_text(&mut client).await, "m");
    gw.stop().await;
}

fn timers_config() -> Config {
    let mut config = Config::for_tests();
    // The shortest ping interval the gateway accepts.
    config.ping_interval = Duration::from_millis(100);
    config.idle_timeout = Duration::from_millis(500);
    config.register_timeout = Duration::from_millis(300);
    config
}

/// Reads server frames until a close frame; returns (pings seen, close code).
async fn read_until_close(raw: &mut TcpStream) -> (usize, u16) {
    let mut pings = 0;
    loop {
        let mut header = [0u8; 2];
        tokio::time::timeout(WAIT, raw.read_exact(&mut header))
            .await
            .expect("a frame within the wait bound")
            .unwrap();
        let mut payload = vec![0u8; (header[1] & 0x7F) as usize];
        raw.read_exact(&mut payload).await.unwrap();
        match header[0] {
            0x89 => pings += 1,
            0x88 => return (pings, u16::from_be_bytes([payload[0], payload[1]])),
            other => panic!("unexpected frame {other:#x}"),
        }
    }
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test]
async fn a_client_that_answers_nothing_is_pinged_then_closed_as_idle() {
    let gw = Gateway::start_with(timers_config()).await;
    let mut raw = raw_websocket(&gw).await;
    raw.write_all(&masked(0x1, br#"{"token":"quinn","event":"alarm"}"#))
        .await
        .unwrap();
    let (pings, code) = read_until_close(&mut raw).await;
    assert!(pings >= 1, "the server pinged first");
    assert_eq!(code, 4002);
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_connection_closes_total{reason="idle_timeout"}"#
        ),
        Some(1.0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_open_past_the_idle_timeout() {
    let gw = Gateway::start_with(timers_config()).await;
    let mut client = gw.client("rita", "alarm").await;
    // tungstenite answers each ping with a pong while we read. Twelve pings span more than
    // twice the 500 ms idle timeout.
    let mut pings = 0;
    while pings < 12 {
        match next(&mut client).await {
            Message::Ping(_) => pings += 1,
            other => panic!("expected pings only, got {other:?}"),
        }
        client.flush().await.unwrap();
    }
    assert_eq!(gw.pusher().await.push_ok("rita", "alarm", "alive").await, 1);
    loop {
        match next(&mut client).await {
            Message::Text(text) => {
                assert_eq!(text, "alive");
                break;
            }
            Message::Ping(_) => client.flush().await.unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_registers_is_closed_with_4003() {
    let gw = Gateway::start_with(timers_config()).await;
    let mut raw = raw_websocket(&gw).await;
    // Keep answering pings, so only the register timeout can fire.
    let code = loop {
        let mut header = [0u8; 2];
        tokio::time::timeout(WAIT, raw.read_exact(&mut header))
            .await
            .unwrap()
            .unwrap();
        let mut payload = vec![0u8; (header[1] & 0x7F) as usize];
        raw.read_exact(&mut payload).await.unwrap();
        match header[0] {
            0x89 => raw.write_all(&masked(0xA, &payload)).await.unwrap(),
            0x88 => break u16::from_be_bytes([payload[0], payload[1]]),
            other => panic!("unexpected frame {other:#x}"),
        }
    };
    assert_eq!(code, 4003);
    gw.stop().await;
}

#[tokio::test]
async fn the_global_connection_cap_refuses_with_503_and_recovers() {
    let mut config = Config::for_tests();
    config.max_connections = 3;
    let gw = Gateway::start_with(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(gw.connect().await);
    }
    let mut public = gw.public_http().await;
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let (status, headers, _) = public.request_full("GET", "/ws", &upgrade, "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    // Existing connections are unaffected.
    register(&mut held[0], "sam", "alarm").await;
    assert_eq!(gw.pusher().await.push_ok("sam", "alarm", "m").await, 1);
    // Closing one frees a slot (the slot is released when its session ends).
    let mut leaving = held.pop().unwrap();
    leaving.close(None).await.unwrap();
    while leaving.next().await.is_some() {}
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stream = TcpStream::connect(gw.addr).await.unwrap();
        if tokio_tungstenite::client_async(gw.ws_url(), stream)
            .await
            .is_ok()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::task::yield_now().await;
    }
    let metrics = gw.metrics().await;
    assert!(
        metric(
            &metrics,
            r#"pushgate_connections_refused_total{reason="global_cap"}"#
        ) >= Some(1.0)
    );
    gw.stop().await;
}

/// A connection that never finishes its handshake holds a descriptor like a WebSocket: it
/// counts under `--max-connections` from the moment it is accepted, so that such connections
/// (slowloris) meet the cap's 503 instead of using up the descriptors kept for pushes and
/// scrapes. They are not WebSockets: `pushgate_connections` does not count them.
#[tokio::test]
async fn connections_stuck_in_their_handshake_count_under_the_connection_cap() {
    let mut config = Config::for_tests();
    config.max_connections = 3;
    let gw = Gateway::start_with(config).await;
    let mut stuck = Vec::new();
    for _ in 0..3 {
        let mut raw = TcpStream::connect(gw.addr).await.unwrap();
        raw.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
            .await
            .unwrap();
        stuck.push(raw);
    }
    // The listener accepts in order: the fourth connection finds the three slots taken.
    let answer = |mut raw: TcpStream, request: Vec<u8>| async move {
        raw.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, raw.read_to_end(&mut answer))
            .await
            .expect("an answer within the wait bound")
            .unwrap();
        String::from_utf8(answer).unwrap()
    };
    // With a 3 KB cookie, as a browser may send: read whole before the answer, so that no
    // reset overtakes it.
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Cookie: session={}\r\n\r\n",
        "c".repeat(3000)
    );
    let refused = answer(
        TcpStream::connect(gw.addr).await.unwrap(),
        upgrade.into_bytes(),
    )
    .await;
    assert!(
        refused.starts_with("HTTP/1.1 503 ") && refused.contains("\r\nRetry-After: 1\r\n"),
        "{refused}"
    );
    assert!(refused.ends_with("connection limit reached\n"), "{refused}");
    // A liveness probe is still answered 200: the process is alive (and it is no refusal).
    let probe = answer(
        TcpStream::connect(gw.addr).await.unwrap(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    )
    .await;
    assert!(probe.starts_with("HTTP/1.1 200 "), "{probe}");
    // Written by hand, these answers carry what hyper's would: a Date, and no body for HEAD.
    assert!(refused.contains("\r\nDate: ") && probe.contains("\r\nDate: "));
    let head_probe = answer(
        TcpStream::connect(gw.addr).await.unwrap(),
        b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    )
    .await;
    assert!(
        head_probe.starts_with("HTTP/1.1 200 ") && head_probe.ends_with("\r\n\r\n"),
        "{head_probe}"
    );
    // Pushes and scrapes are served.
    assert_eq!(gw.pusher().await.push_ok("sam", "alarm", "m").await, 0);
    let metrics = gw.metrics().await;
    assert_eq!(metric(&metrics, "pushgate_connections"), Some(0.0));
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_connections_refused_total{reason="global_cap"}"#
        ),
        Some(1.0)
    );
    // One stuck connection goes: its slot is free for a WebSocket.
    drop(stuck.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut ws = loop {
        let stream = TcpStream::connect(gw.addr).await.unwrap();
        if let Ok((ws, _)) = tokio_tungstenite::client_async(gw.ws_url(), stream).await {
            break ws;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::task::yield_now().await;
    };
    register(&mut ws, "sam", "alarm").await;
    assert_eq!(gw.pusher().await.push_ok("sam", "alarm", "m").await, 1);
    assert_eq!(next_text(&mut ws).await, "m");
    assert_eq!(
        metric(&gw.metrics().await, "pushgate_connections"),
        Some(1.0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_per_user_cap_closes_the_extra_connection_with_4029() {
    let mut config = Config::for_tests();
    config.max_connections_per_user = 2;
    let gw = Gateway::start_with(config).await;
    let mut first = gw.client("tom", "alarm").await;
    let _second = gw.client("tom", "alarm").await;
    let mut third = gw.connect().await;
    third
        .send(Message::Text(r#"{"token":"tom","event":"alarm"}"#.into()))
        .await
        .unwrap();
    match next(&mut third).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4029),
        other => panic!("expected close 4029, got {other:?}"),
    }
    // A client that asked for an ack is told why before the close, never "registered".
    let mut fourth = gw.connect().await;
    fourth
        .send(Message::Text(
            r#"{"token":"tom","event":"news","ack":true}"#.into(),
        ))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut fourth).await,
        r#"{"type":"error","reason":"too_many_connections"}"#
    );
    match next(&mut fourth).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4029),
        other => panic!("expected close 4029, got {other:?}"),
    }
    let _other_user = gw.client("uma", "alarm").await;
    assert_eq!(gw.pusher().await.push_ok("tom", "alarm", "m").await, 2);
    assert_eq!(next_text(&mut first).await, "m");
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_connection_closes_total{reason="user_cap"}"#
        ),
        Some(2.0)
    );
    // Every register frame is counted, the refused ones too.
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_registrations_total{result="user_cap"}"#
        ),
        Some(2.0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_register_frame_past_the_per_connection_event_cap_is_refused_and_the_rest_kept() {
    let mut config = Config::for_tests();
    config.max_events_per_connection = 2;
    let gw = Gateway::start_with(config).await;
    let mut ws = gw.client("vera", "alarm").await;
    register(&mut ws, "vera", "news").await;
    // A third event: refused, with the reason when an ack was asked for.
    let frame = r#"{"token":"vera","event":"chat","ack":true}"#;
    ws.send(Message::Text(frame.into())).await.unwrap();
    let reply: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(
        reply,
        serde_json::json!({"type": "error", "reason": "too_many_events"})
    );
    // A known event again is still a duplicate, not a refusal.
    register(&mut ws, "vera", "news").await;
    let mut pusher = gw.pusher().await;
    assert_eq!(pusher.push_ok("vera", "chat", "c").await, 0);
    assert_eq!(pusher.push_ok("vera", "alarm", "a").await, 1);
    assert_eq!(pusher.push_ok("vera", "news", "n").await, 1);
    assert_eq!(next_text(&mut ws).await, "a");
    assert_eq!(next_text(&mut ws).await, "n");
    let metrics = gw.metrics().await;
    for (result, count) in [
        ("too_many_events", 1.0),
        ("duplicate", 1.0),
        ("added_event", 1.0),
    ] {
        let name = format!(r#"pushgate_registrations_total{{result="{result}"}}"#);
        assert_eq!(metric(&metrics, &name), Some(count), "{name}");
    }
    gw.stop().await;
}

/// The shard keeps a connection's userID and events while it is bound: names past
/// `--max-name-length` are refused (with the reason, when an ack was asked for), counted, and
/// the connection stays open with what it had, as for any refused register frame.
#[tokio::test]
async fn names_past_the_length_limit_are_refused_and_the_connection_kept() {
    let mut config = Config::for_tests();
    config.max_name_length = 8;
    let gw = Gateway::start_with(config).await;
    let mut ws = gw.connect().await;
    let refused = serde_json::json!({"type": "error", "reason": "name_too_long"});
    for (token, event) in [("ann", "event-nine"), ("ann-is-nine", "alarm")] {
        let frame = serde_json::json!({"token": token, "event": event, "ack": true});
        ws.send(Message::Text(frame.to_string())).await.unwrap();
        let reply: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        assert_eq!(reply, refused, "{token} {event}");
    }
    // Without an ack, as the old server: nothing is sent, nothing is bound.
    let frame = r#"{"token":"ann","event":"eight-ch+"}"#;
    send_and_sync(&mut ws, Message::Text(frame.into())).await;
    let mut pusher = gw.pusher().await;
    assert_eq!(pusher.push_ok("ann", "eight-ch+", "m").await, 0);
    // Names of exactly the limit are fine, on the same connection.
    register(&mut ws, "ann-is-8", "eight-ch").await;
    assert_eq!(pusher.push_ok("ann-is-8", "eight-ch", "m").await, 1);
    assert_eq!(next_text(&mut ws).await, "m");
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_registrations_total{result="name_too_long"}"#
        ),
        Some(3.0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn origins_outside_the_allowlist_are_refused_with_403() {
    let mut config = Config::for_tests();
    config.allowed_origins = vec!["https://app.example.com".into()];
    let gw = Gateway::start_with(config).await;
    let mut public = gw.public_http().await;
    let handshake = |origin: Option<&'static str>| {
        let mut headers = vec![
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        if let Some(origin) = origin {
            headers.push(("origin", origin));
        }
        headers
    };
    let (status, _) = public
        .request(
            "GET",
            "/ws",
            &handshake(Some("https://evil.example.net")),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Two Origin headers, the allowed one first: which one a proxy checked is unknowable.
    let mut two = handshake(Some("https://app.example.com"));
    two.push(("origin", "https://evil.example.net"));
    let (status, answer) = gw.public_http().await.request("GET", "/ws", &two, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer, "more than one Origin header\n");
    assert_eq!(
        metric(
            &gw.metrics().await,
            r#"pushgate_connections_refused_total{reason="origin"}"#
        ),
        Some(2.0)
    );
    for origin in [Some("https://app.example.com"), None] {
        let (status, _) = gw
            .public_http()
            .await
            .request("GET", "/ws", &handshake(origin), "")
            .await;
        assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS, "{origin:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let mut config = Config::for_tests();
    config.header_timeout = Duration::from_millis(200);
    let gw = Gateway::start_with(config).await;
    let mut raw = TcpStream::connect(gw.addr).await.unwrap();
    raw.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, raw.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the gateway closed the connection");
    gw.stop().await;
}

/// What hyper refuses before a handler sees the request (a request it cannot parse, a head
/// too large, a head never finished) is answered by hyper and counted by listener and kind.
#[tokio::test]
async fn http_errors_before_any_handler_are_counted_by_listener_and_kind() {
    let mut config = Config::for_tests();
    config.header_timeout = Duration::from_millis(200);
    let gw = Gateway::start_with(config).await;
    let exchange = |addr, request: Vec<u8>| async move {
        let mut raw = TcpStream::connect(addr).await.unwrap();
        raw.write_all(&request).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, raw.read_to_end(&mut answer))
            .await
            .expect("the gateway ends the connection")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    let never_finished = exchange(gw.addr, b"GET /ws HTTP/1.1\r\nHost: x\r\n".to_vec()).await;
    assert_eq!(never_finished, "");
    let malformed = exchange(
        gw.internal,
        b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n".to_vec(),
    )
    .await;
    assert!(malformed.starts_with("HTTP/1.1 400 "), "{malformed}");
    // More header lines than hyper takes (100), in one small segment that the gateway reads
    // whole: no reset can overtake the answer.
    let mut many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..120 {
        many.extend(format!("X-{i}: a\r\n").as_bytes());
    }
    many.extend(b"\r\n");
    let too_large = exchange(gw.internal, many).await;
    assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");

    let metrics = gw.metrics().await;
    for (listener, kind, count) in [
        ("public", "header_timeout", 1.0),
        ("internal", "malformed", 1.0),
        ("internal", "too_large", 1.0),
        ("public", "malformed", 0.0),
        ("internal", "header_timeout", 0.0),
    ] {
        let series =
            format!(r#"pushgate_http_errors_total{{listener="{listener}",kind="{kind}"}}"#);
        assert_eq!(metric(&metrics, &series), Some(count), "{series}");
    }
    gw.stop().await;
}

/// Pipelines keep their push connection open between alerts, and the old server never
/// closed an idle one: on the internal listener an idle keep-alive connection outlives the
/// header timeout, while a head once begun must still be finished within it. On the public
/// listener, where connections hold capped slots, an idle one is closed at the timeout.
#[tokio::test]
async fn an_idle_push_connection_stays_open_but_a_begun_head_must_finish() {
    let header_timeout = Duration::from_millis(200);
    let mut config = Config::for_tests();
    config.header_timeout = header_timeout;
    let gw = Gateway::start_with(config).await;
    let mut pusher = gw.pusher().await;
    let mut client = gw.client("ida", "alarm").await;
    assert_eq!(pusher.push_ok("ida", "alarm", "first").await, 1);
    // Idle for three header timeouts: the waiting is the behaviour under test.
    tokio::time::sleep(header_timeout * 3).await;
    // The same keep-alive connection (Pusher holds one) still pushes.
    assert_eq!(pusher.push_ok("ida", "alarm", "second").await, 1);
    assert_eq!(next_text(&mut client).await, "first");
    assert_eq!(next_text(&mut client).await, "second");
    // Likewise after a request without a body (a scrape), which hyper may parse and answer
    // without reading again.
    let (status, _) = pusher.request("GET", "/healthz", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(header_timeout * 3).await;
    let (status, _) = pusher.request("GET", "/healthz", &[], "").await;
    assert_eq!(status, StatusCode::OK);

    let ends = |mut raw: TcpStream| async move {
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, raw.read_to_end(&mut rest))
            .await
            .expect("the gateway closes the connection")
            .unwrap();
        String::from_utf8_lossy(&rest).into_owned()
    };
    let mut begun = TcpStream::connect(gw.internal).await.unwrap();
    begun
        .write_all(b"POST /push HTTP/1.1\r\nHost")
        .await
        .unwrap();
    assert_eq!(ends(begun).await, "");
    let mut idle_public = TcpStream::connect(gw.addr).await.unwrap();
    idle_public
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(ends(idle_public).await.starts_with("HTTP/1.1 200 "));

    let metrics = gw.metrics().await;
    for (listener, count) in [("internal", 1.0), ("public", 1.0)] {
        let series =
            format!(r#"pushgate_http_errors_total{{listener="{listener}",kind="header_timeout"}}"#);
        assert_eq!(metric(&metrics, &series), Some(count), "{series}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_pusher_that_stalls_mid_body_gets_408_and_the_connection_is_closed() {
    let mut config = Config::for_tests();
    config.body_timeout = Duration::from_millis(200);
    let gw = Gateway::start_with(config).await;
    for (path, expected_body) in [
        ("/push", String::new()),
        ("/api/v2/push", r#""error":"body_timeout""#.to_string()),
    ] {
        let mut raw = TcpStream::connect(gw.internal).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n"
        );
        raw.write_all(head.as_bytes()).await.unwrap();
        raw.write_all(br#"{"userId":"#).await.unwrap();
        // The gateway answers and then closes: read_to_end returns.
        let mut buf = Vec::new();
        tokio::time::timeout(WAIT, raw.read_to_end(&mut buf))
            .await
            .expect("the gateway answered and closed the connection")
            .unwrap();
        let reply = String::from_utf8_lossy(&buf);
        assert!(reply.starts_with("HTTP/1.1 408"), "{path}: {reply}");
        // Said, not only done: the client knows not to reuse the connection.
        assert!(
            reply
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{path}: {reply}"
        );
        assert!(reply.contains(&expected_body), "{path}: {reply}");
    }
    // Other pushes are unaffected.
    assert_eq!(gw.pusher().await.push_ok("nobody", "e", "m").await, 0);
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(&metrics, r#"pushgate_pushes_total{result="body_timeout"}"#),
        Some(2.0)
    );
    gw.stop().await;
}

/// Every refusal leaves a debug line naming its reason (with `--log debug`): the counters
/// say how many, the log says when and which connection.
#[tokio::test]
async fn refusals_leave_a_debug_log_line() {
    let mut gw = GatewayProcess::start(
        &["--log", "debug", "--allowed-origins", "https://app.example"],
        None,
    )
    .await;
    let (status, _) = gw
        .pusher()
        .await
        .request("POST", "/push", &[], r#"{"userId":"u"}"#)
        .await;
    assert_eq!(status.as_u16(), 400);
    let line = gw.wait_for_log("push refused").await;
    assert_eq!(line["result"], "bad_request");

    let mut ws = gw.connect().await.unwrap();
    ws.send(Message::Text("not json".into())).await.unwrap();
    let line = gw.wait_for_log("register frame refused").await;
    assert_eq!(line["result"], "malformed");
    ws.close(None).await.unwrap();
    let line = gw.wait_for_log("connection ended").await;
    assert_eq!(line["reason"], "client");

    let mut refused = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    refused
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Origin: https://evil.example\r\n\r\n",
        )
        .await
        .unwrap();
    let line = gw.wait_for_log("websocket upgrade refused").await;
    assert_eq!(line["reason"], "origin");

    // Not a handshake this server speaks: 400, counted, and a line that says why.
    let mut refused = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    refused
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let line = gw.wait_for_log("websocket upgrade refused").await;
    assert_eq!(line["reason"], "bad_handshake");
    assert_eq!(line["status"], 400);
    assert_eq!(
        line["error"],
        "unsupported Sec-WebSocket-Version: this server speaks 13"
    );
    let (_, metrics) = gw.pusher().await.request("GET", "/metrics", &[], "").await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_connections_refused_total{reason="bad_handshake"}"#
        ),
        Some(1.0)
    );
}

/// A fan-out that outruns many clients closes them together: one warn line says so and how
/// many it closed, rather than a line per connection (the counters have every one).
#[tokio::test]
async fn slow_consumers_closed_together_leave_one_warn_line() {
    const STALLED: usize = 8;
    let mut gw = GatewayProcess::start(
        &[
            "--log",
            "pushgate=debug",
            "--conn-queue-frames",
            "2",
            "--shards",
            "1",
        ],
        None,
    )
    .await;
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        // Register, then ping: the pong proves the register frame reached the shard. After
        // that the client never reads again.
        let mut client = small_buffer_client(gw.addr, "slowpoke", &[0x89, 0x80, 0, 0, 0, 0]).await;
        let mut pong = [0u8; 2];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0x8A, 0x00]);
        stalled.push(client);
    }
    let mut pusher = gw.pusher().await;
    let message = "s".repeat(64 * 1024);
    let mut pushes = 0;
    while pusher.push_ok("slowpoke", "alarm", &message).await > 0 {
        pushes += 1;
        assert!(pushes < 1_000, "the stalled clients were never closed");
    }
    // A refused push afterwards: its debug line follows whatever the closes logged.
    let (status, _) = pusher.request("POST", "/push", &[], "{}").await;
    assert_eq!(status.as_u16(), 400);
    let lines = gw.lines_until("push refused").await;
    let warnings: Vec<_> = lines
        .iter()
        .filter(|line| line["fields"]["message"] == "closing slow consumer")
        .collect();
    // All of them closed well within the 10 s between two such lines.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["level"], "WARN");
    assert_eq!(warnings[0]["fields"]["closed_since_last_line"], 1);
    let (_, metrics) = pusher.request("GET", "/metrics", &[], "").await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_frames_dropped_total{reason="slow_consumer"}"#
        ),
        Some(STALLED as f64)
    );
}
