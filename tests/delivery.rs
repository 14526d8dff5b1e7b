//! Who receives what, in which order, intact: over real sockets.

mod common;

use std::collections::HashMap;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn every_connection_of_a_user_receives_the_push() {
    let gw = Gateway::start().await;
    let mut tab1 = gw.client("alice", "alarm").await;
    let mut tab2 = gw.client("alice", "alarm").await;
    assert_eq!(
        gw.pusher()
            .await
            .push_ok("alice", "alarm", "disk full")
            .await,
        2
    );
    assert_eq!(next_text(&mut tab1).await, "disk full");
    assert_eq!(next_text(&mut tab2).await, "disk full");
    gw.stop().await;
}

#[tokio::test]
async fn only_connections_registered_for_the_event_receive_it() {
    let gw = Gateway::start().await;
    let mut alarms = gw.client("bob", "alarm").await;
    let mut news = gw.client("bob", "news").await;
    let mut pusher = gw.pusher().await;
    assert_eq!(pusher.push_ok("bob", "alarm", "a1").await, 1);
    assert_eq!(pusher.push_ok("bob", "news", "n1").await, 1);
    assert_eq!(pusher.push_ok("bob", "other", "x").await, 0);
    assert_eq!(next_text(&mut alarms).await, "a1");
    assert_nothing_queued(&mut alarms).await;
    assert_eq!(next_text(&mut news).await, "n1");
    assert_nothing_queued(&mut news).await;
    gw.stop().await;
}

#[tokio::test]
async fn users_never_see_each_others_messages() {
    let gw = Gateway::start().await;
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let mut clients = Vec::new();
    for user in &users {
        for _ in 0..2 {
            clients.push((user.clone(), gw.client(user, "alarm").await));
        }
    }
    let mut pusher = gw.pusher().await;
    for round in 0..3 {
        for user in &users {
            assert_eq!(
                pusher
                    .push_ok(user, "alarm", &format!("{user}/{round}"))
                    .await,
                2
            );
        }
    }
    for (user, ws) in &mut clients {
        for round in 0..3 {
            assert_eq!(next_text(ws).await, format!("{user}/{round}"));
        }
        assert_nothing_queued(ws).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_thousand_pushes_arrive_complete_and_in_order() {
    let gw = Gateway::start().await;
    let mut client = gw.client("carol", "alarm").await;
    let mut pusher = gw.pusher().await;
    for i in 0..1000 {
        assert_eq!(
            pusher.push_ok("carol", "alarm", &format!("msg-{i}")).await,
            1
        );
    }
    for i in 0..1000 {
        assert_eq!(next_text(&mut client).await, format!("msg-{i}"));
    }
    assert_nothing_queued(&mut client).await;
    gw.stop().await;
}

#[tokio::test]
async fn concurrent_pushers_lose_nothing_and_never_corrupt_a_frame() {
    const PUSHERS: usize = 8;
    const EACH: usize = 150;
    let gw = Gateway::start().await;
    let mut a = gw.client("dave", "alarm").await;
    let mut b = gw.client("dave", "alarm").await;
    let mut tasks = Vec::new();
    for p in 0..PUSHERS {
        let addr = gw.internal;
        tasks.push(tokio::spawn(async move {
            let mut pusher = Pusher::connect(addr).await;
            let padding = "z".repeat(100 * (p + 1));
            for i in 0..EACH {
                let message = format!("{p}:{i}:{padding}");
                assert_eq!(pusher.push_ok("dave", "alarm", &message).await, 2);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for ws in [&mut a, &mut b] {
        let mut next_index: HashMap<usize, usize> = HashMap::new();
        for _ in 0..PUSHERS * EACH {
            let text = next_text(ws).await;
            let mut parts = text.splitn(3, ':');
            let p: usize = parts.next().unwrap().parse().unwrap();
            let i: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(
                parts.next().unwrap(),
                "z".repeat(100 * (p + 1)),
                "intact payload"
            );
            let expected = next_index.entry(p).or_default();
            assert_eq!(i, *expected, "pusher {p} in order");
            *expected += 1;
        }
        assert!(next_index.values().all(|&n| n == EACH));
        assert_nothing_queued(ws).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn non_ascii_and_large_messages_arrive_intact() {
    let gw = Gateway::start().await;
    let mut client = gw.client("erin", "alarm").await;
    let mut pusher = gw.pusher().await;
    let unicode = "告警: CPU > 95% 🚨 — naïve café ☃";
    let large: String = (0..64 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    // 125, 126, 65535 and 65536 bytes cover the 7-, 16- and 64-bit length forms.
    let boundaries: Vec<String> = [125, 126, 65_535, 65_536]
        .iter()
        .map(|&n| "b".repeat(n))
        .collect();
    let mut expected = vec![unicode.to_string(), large];
    expected.extend(boundaries);
    for message in &expected {
        assert_eq!(pusher.push_ok("erin", "alarm", message).await, 1);
    }
    for message in &expected {
        assert_eq!(&next_text(&mut client).await, message);
    }
    gw.stop().await;
}

/// A message larger than the connection's byte budget (`--conn-queue-bytes` below
/// `--max-push-body`) reaches a client that has nothing pending: it is not a slow consumer.
#[tokio::test]
async fn a_message_larger_than_the_queue_byte_limit_reaches_a_reading_client() {
    let mut config = pushgate::Config::for_tests();
    config.conn_queue_bytes = 1024;
    let gw = Gateway::start_with(config).await;
    let mut client = gw.client("erin", "alarm").await;
    let mut pusher = gw.pusher().await;
    let large = "x".repeat(4096);
    assert_eq!(pusher.push_ok("erin", "alarm", &large).await, 1);
    assert_eq!(next_text(&mut client).await, large);
    // Still open and served.
    assert_eq!(pusher.push_ok("erin", "alarm", "small").await, 1);
    assert_eq!(next_text(&mut client).await, "small");
    gw.stop().await;
}

#[tokio::test]
async fn escaped_json_strings_are_delivered_decoded() {
    let gw = Gateway::start().await;
    let mut client = gw.client("frank", "alarm").await;
    let mut pusher = gw.pusher().await;
    let (status, reply) = pusher
        .request(
            "POST",
            "/push",
            &[],
            r#"{"userId":"frank","event":"alarm","message":"line1\nline2 \"q\" \u00e9 \ud83d\ude00"}"#,
        )
        .await;
    assert_eq!(
        (status.as_u16(), reply.as_str()),
        (200, "message sent to 1 clients")
    );
    assert_eq!(next_text(&mut client).await, "line1\nline2 \"q\" é 😀");
    gw.stop().await;
}

/// The old server's Go decoder turned bytes that are not UTF-8 (a Latin-1 log line pasted
/// into a push) and lone surrogate escapes into U+FFFD, one per byte, and delivered the
/// message; pipelines that relied on it keep working. Counted, since the text delivered is
/// not the text sent.
#[tokio::test]
async fn text_that_is_not_utf8_is_delivered_with_replacement_characters_as_go_did() {
    let gw = Gateway::start().await;
    let mut client = gw.connect().await;
    // A lone surrogate in the token: the user is "h\u{FFFD}", as Go decoded it.
    send_and_sync(
        &mut client,
        Message::Text(r#"{"token":"h\udc00","event":"alarm"}"#.into()),
    )
    .await;
    let mut pusher = gw.pusher().await;
    let body: &'static [u8] =
        b"{\"userId\":\"h\\udc00\",\"event\":\"alarm\",\"message\":\"caf\xe9 \xe2\x82!\"}";
    let (status, reply) = pusher.request("POST", "/push", &[], body).await;
    assert_eq!(
        (status.as_u16(), reply.as_str()),
        (200, "message sent to 1 clients")
    );
    assert_eq!(
        next_text(&mut client).await,
        "caf\u{FFFD} \u{FFFD}\u{FFFD}!"
    );
    let metrics = gw.metrics().await;
    for source in ["push", "register"] {
        assert_eq!(
            metric(
                &metrics,
                &format!(r#"pushgate_invalid_text_replaced_total{{source="{source}"}}"#)
            ),
            Some(1.0),
            "{source}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_second_register_adds_an_event_for_the_same_user_and_is_refused_for_another() {
    let gw = Gateway::start().await;
    let mut client = gw.client("gina", "alarm").await;
    register(&mut client, "gina", "news").await;
    register(&mut client, "gina", "news").await; // duplicate: still one binding
    register(&mut client, "mallory", "alarm").await; // another user: refused
    let mut pusher = gw.pusher().await;
    assert_eq!(pusher.push_ok("gina", "alarm", "a").await, 1);
    assert_eq!(pusher.push_ok("gina", "news", "n").await, 1);
    assert_eq!(pusher.push_ok("mallory", "alarm", "x").await, 0);
    assert_eq!(next_text(&mut client).await, "a");
    assert_eq!(next_text(&mut client).await, "n");
    assert_nothing_queued(&mut client).await;
    let metrics = gw.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_registrations_total{result="user_conflict"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_registrations_total{result="duplicate"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            r#"pushgate_registrations_total{result="added_event"}"#
        ),
        Some(1.0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn first_frame_in_the_same_packet_as_the_handshake_is_not_lost() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start().await;
    let mut raw = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let register = br#"{"token":"hank","event":"alarm"}"#;
    let mask = [1u8, 2, 3, 4];
    let mut packet =
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_vec();
    packet.extend([0x81, 0x80 | register.len() as u8]);
    packet.extend(mask);
    packet.extend(register.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    packet.extend([0x89, 0x80, 0, 0, 0, 0]); // ping, empty, zero mask
    raw.write_all(&packet).await.unwrap();
    // Read the 101 response and the pong that follows it.
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(&[0x8A, 0x00]) {
        let n = tokio::time::timeout(WAIT, raw.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 101"));
    assert_eq!(gw.pusher().await.push_ok("hank", "alarm", "hi").await, 1);
    let n = tokio::time::timeout(WAIT, raw.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"\x81\x02hi");
    let _ = Message::Close(None);
    gw.stop().await;
}

/// The `registered` reply comes before any push on that connection, however busy the user's
/// shard is: a client tells its ack from pushed text by order (clients/js), and pushed text
/// may look like an ack. Pushers keep the user's one shard busy while connections register
/// one after another, on one worker thread; a push used to overtake the reply there (the
/// session queued it after the shard had bound the connection and pushed to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registered_reply_comes_before_any_push() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const CONNECTIONS: usize = 300;
    let gw = GatewayProcess::start(&["--worker-threads", "1", "--shards", "1"], None).await;
    let pushing = Arc::new(AtomicBool::new(true));
    let pushers: Vec<_> = (0..32)
        .map(|_| {
            let pushing = pushing.clone();
            let internal = gw.internal;
            tokio::spawn(async move {
                let mut pusher = Pusher::connect(internal).await;
                while pushing.load(Ordering::Relaxed) {
                    pusher.push("busy", "alarm", "a push").await;
                }
            })
        })
        .collect();
    let ack = r#"{"type":"registered","event":"alarm"}"#;
    let mut overtaken = Vec::new();
    for attempt in 0..CONNECTIONS {
        let mut ws = gw.connect().await.unwrap();
        ws.send(Message::Text(
            r#"{"token":"busy","event":"alarm","ack":true}"#.into(),
        ))
        .await
        .unwrap();
        let first = next_text(&mut ws).await;
        if first != ack {
            overtaken.push((attempt, first));
        }
    }
    pushing.store(false, Ordering::Relaxed);
    for pusher in pushers {
        pusher.await.unwrap();
    }
    assert!(
        overtaken.is_empty(),
        "a push came before the ack: {overtaken:?}"
    );
}
