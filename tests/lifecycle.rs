//! How connections end and what the gateway does about it, over real sockets.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use pushgate::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Pushes until the reply says `expected`, for conditions the gateway learns about
/// asynchronously (a reset socket). Bounded by [`WAIT`].
async fn wait_for_sent(gw: &Gateway, user: &str, expected: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut pusher = gw.pusher().await;
    loop {
        if pusher.push_ok(user, "alarm", "probe").await == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached {expected}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_closed_connection_is_unbound_before_its_close_is_echoed() {
    let gw = Gateway::start().await;
    let mut staying = gw.client("ivy", "alarm").await;
    let mut leaving = gw.client("ivy", "alarm").await;
    leaving
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
    match next(&mut leaving).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the close echo, got {other:?}"),
    }
    assert_eq!(gw.pusher().await.push_ok("ivy", "alarm", "after").await, 1);
    assert_eq!(next_text(&mut staying).await, "after");
    gw.stop().await;
}

#[tokio::test]
async fn a_reset_connection_is_unbound() {
    let gw = Gateway::start().await;
    let mut staying = gw.client("jack", "alarm").await;
    let reset = gw.client("jack", "alarm").await;
    reset.get_ref().set_zero_linger().unwrap();
    drop(reset); // RST, no close frame
    wait_for_sent(&gw, "jack", 1).await;
    // The probes before the reset was noticed may have reached `staying`; the last did.
    let mut last = String::new();
    while last != "probe" {
        last = next_text(&mut staying).await;
    }
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_connection_closes_total{reason="reset"}"#
        ),
        Some(1.0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_oversized_client_message_is_closed_with_1009() {
    let mut config = Config::for_tests();
    config.max_message_size = 1024;
    let gw = Gateway::start_with(config).await;
    let mut other = gw.client("kim", "alarm").await;
    let mut big = gw.connect().await;
    big.send(Message::Text("x".repeat(4096))).await.unwrap();
    match next(&mut big).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
    assert_eq!(gw.pusher().await.push_ok("kim", "alarm", "fine").await, 1);
    assert_eq!(next_text(&mut other).await, "fine");
    gw.stop().await;
}

/// Reads the server's close frame and returns its code.
async fn close_code(raw: &mut TcpStream) -> u16 {
    let mut header = [0u8; 2];
    tokio::time::timeout(WAIT, raw.read_exact(&mut header))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(header[0], 0x88, "a close frame");
    let mut payload = vec![0u8; (header[1] & 0x7F) as usize];
    raw.read_exact(&mut payload).await.unwrap();
    u16::from_be_bytes([payload[0], payload[1]])
}

#[tokio::test]
async fn protocol_violations_get_the_right_close_codes() {
    let gw = Gateway::start().await;
    let mut bystander = gw.client("lee", "alarm").await;
    let cases: [(&[u8], u16); 9] = [
        (b"\x81\x02hi", 1002),               // unmasked
        (b"\xC1\x80\0\0\0\0", 1002),         // reserved bit
        (b"\x83\x80\0\0\0\0", 1002),         // unknown opcode
        (b"\x09\x80\0\0\0\0", 1002),         // fragmented ping
        (b"\x81\x82\0\0\0\0\xFF\xFE", 1007), // invalid UTF-8
        // Close codes: registered ones are echoed (1012 service restart, 1013 try again
        // later, as gorilla accepts them); reserved or unassigned ones are a violation.
        (b"\x88\x82\0\0\0\0\x03\xF4", 1012),
        (b"\x88\x82\0\0\0\0\x03\xF5", 1013),
        (b"\x88\x82\0\0\0\0\x03\xF6", 1002), // 1014
        (b"\x88\x82\0\0\0\0\x03\xEC", 1002), // 1004
    ];
    for (frame, code) in cases {
        let mut raw = raw_websocket(&gw).await;
        raw.write_all(frame).await.unwrap();
        assert_eq!(close_code(&mut raw).await, code, "{frame:?}");
    }
    assert_eq!(
        gw.pusher()
            .await
            .push_ok("lee", "alarm", "still here")
            .await,
        1
    );
    assert_eq!(next_text(&mut bystander).await, "still here");
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_as_slow_while_others_receive() {
    const READERS: usize = 100;
    let mut config = Config::for_tests();
    config.conn_queue_frames = 16;
    config.conn_queue_bytes = 64 * 1024;
    let gw = Gateway::start_with(config).await;
    let mut readers = Vec::new();
    for _ in 0..READERS {
        readers.push(gw.client("mia", "alarm").await);
    }
    // A raw client with a small receive buffer that registers, pings (the pong proves it
    // registered) and then never reads a byte.
    let mut stalled = small_buffer_client(gw.addr, "mia", &[0x89, 0x80, 0, 0, 0, 0]).await;
    let mut pong = [0u8; 2];
    stalled.read_exact(&mut pong).await.unwrap();
    assert_eq!(pong, [0x8A, 0x00]);

    let message = "m".repeat(4 * 1024);
    let mut pusher = gw.pusher().await;
    let mut pushes = 0;
    // Each push reaches everyone until the stalled client's socket buffers and queue fill
    // up; then it is closed, and the readers still get every push.
    loop {
        let sent = pusher.push_ok("mia", "alarm", &message).await;
        pushes += 1;
        for reader in &mut readers {
            assert_eq!(next_text(reader).await.len(), message.len());
        }
        if sent == READERS {
            break;
        }
        assert_eq!(sent, READERS + 1);
        assert!(pushes < 2_000, "the stalled client was never closed");
    }
    assert_eq!(pusher.push_ok("mia", "alarm", "after").await, READERS);
    for reader in &mut readers {
        assert_eq!(next_text(reader).await, "after");
    }
    let metrics = gw.metrics().await;
    assert!(
        metric(
            &metrics,
            r#"pushgate_frames_dropped_total{reason="slow_consumer"}"#
        ) >= Some(1.0)
    );
    // The shard found the stalled socket full and left it to the connection's task.
    assert!(metric(&metrics, "pushgate_writes_handed_over_total") >= Some(1.0));
    drop(stalled);
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_falls_behind_and_catches_up_gets_every_frame_in_order() {
    const PUSHES: usize = 200;
    let mut config = Config::for_tests();
    config.conn_queue_frames = 1_000;
    config.conn_queue_bytes = 32 * 1024 * 1024;
    let gw = Gateway::start_with(config).await;
    // A small receive buffer, so that the socket fills up whatever the machine's defaults.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(gw.addr).await.unwrap();
    let (mut lagging, _) = tokio_tungstenite::client_async(gw.ws_url(), stream)
        .await
        .unwrap();
    register(&mut lagging, "pia", "alarm").await;
    let mut pusher = gw.pusher().await;
    // 3.2 MB while the client reads nothing: more than the socket buffers hold, so the
    // shard hands the rest to the connection's task, which writes it as the client reads.
    let body = "m".repeat(16 * 1024);
    for i in 0..PUSHES {
        let message = format!("{i:04}{body}");
        assert_eq!(pusher.push_ok("pia", "alarm", &message).await, 1);
    }
    let metrics = gw.metrics().await;
    assert!(metric(&metrics, "pushgate_writes_handed_over_total") >= Some(1.0));
    for i in 0..PUSHES {
        let text = next_text(&mut lagging).await;
        assert_eq!(&text[..4], format!("{i:04}"), "frame {i} out of order");
        assert_eq!(text.len(), 4 + body.len());
    }
    // Caught up: the next push is written by the shard again and arrives.
    assert_eq!(pusher.push_ok("pia", "alarm", "caught up").await, 1);
    assert_eq!(next_text(&mut lagging).await, "caught up");
    gw.stop().await;
}

/// A [`small_buffer_client`] that will never read nor send again; pushes to it until its
/// socket is full and the gateway's connection task waits for room.
async fn stuck_client(gw: &Gateway, user: &str) -> TcpStream {
    let stuck = small_buffer_client(gw.addr, user, &[]).await;
    let mut pusher = gw.pusher().await;
    let message = "s".repeat(64 * 1024);
    for pushes in 1.. {
        assert_eq!(pusher.push_ok(user, "alarm", &message).await, 1);
        if pushes % 8 == 0
            && metric(&gw.metrics().await, "pushgate_writes_handed_over_total") >= Some(1.0)
        {
            return stuck;
        }
        assert!(pushes < 1_000, "the socket never filled up");
    }
    unreachable!()
}

fn roomy_queues(mut config: Config) -> Config {
    // Far more than the socket holds, so that no slow-consumer close gets in the way.
    config.conn_queue_frames = 100_000;
    config.conn_queue_bytes = 256 * 1024 * 1024;
    config
}

/// Reads until the stream ends (FIN or reset), within [`WAIT`].
async fn read_to_end_or_reset(stream: &mut TcpStream) {
    let mut buffer = vec![0u8; 64 * 1024];
    tokio::time::timeout(WAIT, async {
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                return;
            }
        }
    })
    .await
    .expect("the gateway ends the connection");
}

/// The idle timeout is about what the client sends; a client that stopped reading (its
/// socket full, the connection's task waiting for room) must still be closed on time and
/// unbound, not held and counted by every push for ever.
#[tokio::test]
async fn a_client_that_stops_reading_is_still_closed_as_idle() {
    let mut config = roomy_queues(Config::for_tests());
    config.ping_interval = Duration::from_millis(100);
    config.idle_timeout = Duration::from_millis(500);
    let gw = Gateway::start_with(config).await;
    let mut stuck = stuck_client(&gw, "rhea").await;
    wait_for_sent(&gw, "rhea", 0).await;
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_connection_closes_total{reason="idle_timeout"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_connection_closes_total{reason="slow_consumer"}"#
        ),
        Some(0.0)
    );
    read_to_end_or_reset(&mut stuck).await;
    gw.stop().await;
}

/// Polls the metrics until `series` reaches `value`, within [`WAIT`] (the gateway counts a
/// close when the connection's task ends, which nothing outside can wait on).
async fn wait_for_metric(gw: &Gateway, series: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&gw.metrics().await, series) != Some(value) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never reached {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Frames still queued for a client that vanishes are thrown away and counted as discarded,
/// so that every delivery a reply counted is accounted for: written or discarded.
#[tokio::test]
async fn frames_queued_to_a_client_that_vanishes_are_counted_as_discarded() {
    let gw = Gateway::start_with(roomy_queues(Config::for_tests())).await;
    let stuck = stuck_client(&gw, "vic").await;
    // These wait in the queue behind a full socket.
    let mut pusher = gw.pusher().await;
    for _ in 0..4 {
        assert_eq!(pusher.push_ok("vic", "alarm", "queued").await, 1);
    }
    stuck.set_zero_linger().unwrap();
    drop(stuck); // RST
    wait_for_metric(
        &gw,
        r#"pushgate_connection_closes_total{reason="reset"}"#,
        1.0,
    )
    .await;
    let (_, discarded) = assert_every_delivery_accounted_for(&gw).await;
    assert!(discarded >= 4.0, "{discarded}");
    gw.stop().await;
}

/// Every frame a push counted (deliveries) was either written or thrown away with a queue,
/// and the metrics say which: nothing counted in a reply vanishes unseen. Call once nothing
/// is queued any more. Returns the frames discarded as (slow_consumer, closed).
async fn assert_every_delivery_accounted_for(gw: &Gateway) -> (f64, f64) {
    let metrics = gw.metrics().await;
    let value = |series: &str| metric(&metrics, series).unwrap();
    let slow = value(r#"pushgate_frames_discarded_total{reason="slow_consumer"}"#);
    let closed = value(r#"pushgate_frames_discarded_total{reason="closed"}"#);
    assert_eq!(
        value("pushgate_deliveries_total"),
        value("pushgate_frames_written_total") + slow + closed,
        "{metrics}"
    );
    (slow, closed)
}

/// A disconnect reaches a client whose socket is full at once: its connection task stops
/// waiting for room, gives the close its second and ends, counted as disconnected.
#[tokio::test]
async fn a_disconnect_ends_a_client_that_stopped_reading() {
    let gw = Gateway::start_with(roomy_queues(Config::for_tests())).await;
    let mut stuck = stuck_client(&gw, "ugo").await;
    let (status, reply) = gw
        .pusher()
        .await
        .request(
            "POST",
            "/api/v2/disconnect",
            &[("content-type", "application/json")],
            r#"{"userId":"ugo"}"#,
        )
        .await;
    assert_eq!((status.as_u16(), reply.as_str()), (200, r#"{"closed":1}"#));
    wait_for_metric(
        &gw,
        r#"pushgate_connection_closes_total{reason="disconnected"}"#,
        1.0,
    )
    .await;
    read_to_end_or_reset(&mut stuck).await;
    gw.stop().await;
}

/// Draining closes a client whose socket is full like any other: what is queued and the
/// close frame get their second, then the connection is dropped, and the gateway stops
/// long before its shutdown timeout.
#[tokio::test]
async fn shutdown_does_not_wait_for_a_client_that_stopped_reading() {
    let mut config = roomy_queues(Config::for_tests());
    config.shutdown_timeout = Duration::from_secs(60);
    let gw = Gateway::start_with(config).await;
    let mut stuck = stuck_client(&gw, "saul").await;
    // Fails with "gateway stops in time" (WAIT, 10 s) if the stuck connection holds it.
    gw.stop().await;
    read_to_end_or_reset(&mut stuck).await;
}

/// Reads one server frame (unmasked, any length): (opcode, payload).
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).await?;
    let len = match header[1] & 0x7F {
        126 => u64::from(stream.read_u16().await?),
        127 => stream.read_u64().await?,
        short => u64::from(short),
    };
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).await?;
    Ok((header[0] & 0x0F, payload))
}

/// A slow consumer that reads again once it is closed gets the close frame, 4001, after the
/// frame that was partly on the wire: the queued frames are dropped, not the close.
#[tokio::test]
async fn a_slow_consumer_that_reads_again_gets_close_4001() {
    let mut config = Config::for_tests();
    config.conn_queue_frames = 8;
    let gw = Gateway::start_with(config).await;
    let mut slow = small_buffer_client(gw.addr, "tess", &[]).await;
    let mut pusher = gw.pusher().await;
    let message = "t".repeat(16 * 1024);
    for pushes in 1.. {
        if pusher.push_ok("tess", "alarm", &message).await == 0 {
            break;
        }
        assert!(pushes < 10_000, "never closed as a slow consumer");
    }
    let close = tokio::time::timeout(WAIT, async {
        loop {
            let (opcode, payload) = read_frame(&mut slow).await.expect("a close frame");
            if opcode == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
            assert_eq!((opcode, payload.len()), (0x1, message.len()));
        }
    })
    .await
    .expect("the close frame within the wait bound");
    assert_eq!(close, 4001);
    let (discarded, _) = assert_every_delivery_accounted_for(&gw).await;
    assert!(discarded >= 1.0, "{discarded}");
    gw.stop().await;
}

/// A client that asks for acks faster than it reads them fills its queue like any slow
/// consumer: it is closed with 4001 after the replies that fit, never left waiting for a
/// reply that was dropped unseen.
#[tokio::test]
async fn register_replies_that_overflow_the_queue_close_the_client_as_slow() {
    const FRAMES: usize = 64;
    let mut config = Config::for_tests();
    config.conn_queue_frames = 8;
    let gw = Gateway::start_with(config).await;
    let mut burst = Vec::new();
    for event in 0..FRAMES {
        let frame = format!(r#"{{"token":"ada","event":"e{event}","ack":true}}"#);
        burst.extend_from_slice(&[0x81, 0x80 | frame.len() as u8, 0, 0, 0, 0]);
        burst.extend_from_slice(frame.as_bytes());
    }
    let mut raw = raw_websocket(&gw).await;
    raw.write_all(&burst).await.unwrap();
    let mut replies = 0;
    let close = tokio::time::timeout(WAIT, async {
        while replies < FRAMES {
            match read_frame(&mut raw).await.expect("a frame") {
                (0x1, _) => replies += 1,
                (0x8, payload) => return Some(u16::from_be_bytes([payload[0], payload[1]])),
                (opcode, _) => panic!("unexpected frame {opcode:#x}"),
            }
        }
        None
    })
    .await
    .expect("every reply, or a close, within the wait bound");
    // Every reply, or the ones that fit and then 4001: never fewer replies and no close.
    // (The first 16 are `registered`, queued by the shard and written as it binds; the 48
    // `too_many_events` refusals past `--max-events-per-connection` come in one burst from
    // the session, which is what overflows the 8-frame queue.)
    assert!(
        close == Some(4001) || (close.is_none() && replies == FRAMES),
        "{replies} replies, close {close:?}"
    );
    if close.is_some() {
        let metrics = gw.metrics().await;
        assert_eq!(
            metric(
                &metrics,
                r#"pushgate_connection_closes_total{reason="slow_consumer"}"#
            ),
            Some(1.0)
        );
    }
    gw.stop().await;
}

/// While draining, pushes are refused with 503 and counted as `draining`, not as an
/// overloaded shard: a rolling deploy must not look like saturation on the dashboards.
#[tokio::test]
async fn pushes_refused_while_draining_are_counted_as_draining() {
    let mut config = Config::for_tests();
    config.drain_window = Duration::from_secs(2);
    config.shutdown_timeout = Duration::from_secs(4);
    let mut gw = Gateway::start_with(config).await;
    // An open connection keeps the drain going for its window.
    let _client = gw.client("zoe", "alarm").await;
    gw.begin_stop();
    wait_until_not_ready(gw.internal).await;
    // A connection opened while draining answers one request: one pusher per request.
    let push = r#"{"userId":"zoe","event":"alarm","message":"m"}"#;
    let (status, reply) = gw.pusher().await.request("POST", "/push", &[], push).await;
    assert_eq!((status.as_u16(), reply.as_str()), (503, "shutting down"));
    let json = [("content-type", "application/json")];
    let (status, _) = gw
        .pusher()
        .await
        .request("POST", "/api/v2/push", &json, push)
        .await;
    assert_eq!(status.as_u16(), 503);
    let (_, metrics) = gw.pusher().await.request("GET", "/metrics", &[], "").await;
    assert_eq!(
        metric(&metrics, r#"pushgate_pushes_total{result="draining"}"#),
        Some(2.0)
    );
    assert_eq!(
        metric(&metrics, r#"pushgate_pushes_total{result="overloaded"}"#),
        Some(0.0)
    );
    gw.stop().await;
}

/// An address in use names the listener that could not bind, once, and exits 1.
#[test]
fn a_listener_that_cannot_bind_is_named_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pushgate"))
        .args(["--listen", "127.0.0.1:0", "--internal-listen", &taken])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let named = format!("binding the internal listener (--internal-listen {taken})");
    assert_eq!(stderr.matches(&named).count(), 1, "{stderr}");
    assert!(!stderr.contains("public listener"), "{stderr}");
    // The cause once, after the listener.
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );
}

#[tokio::test]
async fn shutdown_closes_every_websocket_with_1001() {
    let gw = Gateway::start().await;
    let mut bound = gw.client("nina", "alarm").await;
    let mut unbound = gw.connect().await;
    sync(&mut unbound).await;
    let stopping = tokio::spawn(gw.stop());
    for ws in [&mut bound, &mut unbound] {
        match next(ws).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    stopping.await.unwrap();
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_format() {
    let gw = Gateway::start().await;
    let mut client = gw.client("olga", "alarm").await;
    assert_eq!(gw.pusher().await.push_ok("olga", "alarm", "m").await, 1);
    next_text(&mut client).await;
    // The frame was written before it arrived, so its latency sample exists.
    let metrics = gw.metrics().await;
    for name in [
        "# TYPE pushgate_connections gauge",
        "# TYPE pushgate_pushes_total counter",
        "# TYPE pushgate_fanout_latency_seconds histogram",
        "pushgate_fanout_latency_seconds_bucket{le=\"0.00005\"}",
        "pushgate_shard_users{shard=\"0\"}",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
    assert_eq!(metric(&metrics, "pushgate_connections"), Some(1.0));
    assert_eq!(
        metric(&metrics, r#"pushgate_pushes_total{result="ok"}"#),
        Some(1.0)
    );
    assert_eq!(metric(&metrics, "pushgate_deliveries_total"), Some(1.0));
    assert_eq!(
        metric(&metrics, "pushgate_fanout_latency_seconds_count"),
        Some(1.0)
    );
    gw.stop().await;
}

#[test]
fn bad_configuration_exits_with_status_64() {
    let binary = env!("CARGO_BIN_EXE_pushgate");
    for args in [
        &["--shards", "0"][..],
        &["--log", "verbose"],
        &["--max-batch", "0"],
        &["--alertmanager-receiver", "=u1"],
        &["--listen", "not-an-address"],
        &["--ws-path", "ws"],
        &["--no-such-flag"],
        &["--nats-url", "nats://a:b@10.0.0.5,nats://a:c@10.0.0.6"],
        &[
            "--nats-url",
            "nats://10.0.0.5",
            "--nats-tls-ca",
            "/nonexistent/ca.pem",
        ],
        &["--nats-url", "http://10.0.0.5"],
        &[
            "--nats-url",
            "nats://10.0.0.5",
            "--nats-subject-prefix",
            "a.*",
        ],
    ] {
        let output = std::process::Command::new(binary)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?} explains itself");
    }
    let output = std::process::Command::new(binary)
        .env("PUSHGATE_SHARDS", "0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64), "env vars are validated too");
    let help = std::process::Command::new(binary)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("PUSHGATE_LISTEN"));
}
