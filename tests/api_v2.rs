//! Push API v2 over real HTTP and WebSockets.

mod common;

use common::*;
use hyper::StatusCode;
use pushgate::Config;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const JSON: (&str, &str) = ("content-type", "application/json");

async fn post(gw: &Gateway, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, reply) = gw
        .pusher()
        .await
        .request("POST", path, &[JSON], body.to_string())
        .await;
    (status, serde_json::from_str(&reply).expect("a JSON reply"))
}

#[tokio::test]
async fn push_to_one_or_several_users_with_any_json_message() {
    let gw = Gateway::start().await;
    let mut alice = gw.client("alice", "alarm").await;
    let mut bob = gw.client("bob", "alarm").await;
    let (status, reply) = post(
        &gw,
        "/api/v2/push",
        json!({"userId": "alice", "event": "alarm", "message": "disk full"}),
    )
    .await;
    assert_eq!((status, reply), (StatusCode::OK, json!({"sent": 1})));
    assert_eq!(next_text(&mut alice).await, "disk full");
    let message = json!({"severity": "critical", "host": "db-3"});
    let (status, reply) = post(
        &gw,
        "/api/v2/push",
        json!({"userIds": ["alice", "bob", "nobody"], "event": "alarm", "message": message}),
    )
    .await;
    assert_eq!((status, reply), (StatusCode::OK, json!({"sent": 2})));
    for ws in [&mut alice, &mut bob] {
        let text = next_text(ws).await;
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), message);
    }
    // A user named twice is pushed to once.
    let (status, reply) = post(
        &gw,
        "/api/v2/push",
        json!({"userIds": ["alice", "bob", "alice"], "event": "alarm", "message": "once"}),
    )
    .await;
    assert_eq!((status, reply), (StatusCode::OK, json!({"sent": 2})));
    for ws in [&mut alice, &mut bob] {
        assert_eq!(next_text(ws).await, "once");
        assert_nothing_queued(ws).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_json_message_reaches_the_socket_as_the_exact_text_the_pusher_sent() {
    let gw = Gateway::start().await;
    let mut alice = gw.client("alice", "alarm").await;
    let mut http = gw.pusher().await;
    // Keys out of order, a repeated key, exponent and negative-zero numbers, an integer past
    // 2^64, an escape inside, spaces: parsing and re-encoding would change every one.
    let message =
        r#"{"z": 1e2, "a": [-0, 123456789012345678901234567890], "a": "\u00e9\n", "t": true}"#;
    let wrapped = |endpoint: &str| match endpoint {
        "broadcast" => format!(r#"{{"event": "alarm", "message": {message}}}"#),
        "batch" => format!(
            r#"{{"pushes": [{{"userId": "alice", "event": "alarm", "message": {message}}}]}}"#
        ),
        _ => format!(r#"{{"userId": "alice", "event": "alarm", "message": {message}}}"#),
    };
    for endpoint in ["push", "broadcast", "batch"] {
        let (status, reply) = http
            .request(
                "POST",
                &format!("/api/v2/{endpoint}"),
                &[JSON],
                wrapped(endpoint),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{endpoint}: {reply}");
        assert_eq!(next_text(&mut alice).await, message, "{endpoint}");
    }
    // Scalars too; a string is decoded, escapes and all.
    for (given, sent) in [
        ("42.50", "42.50"),
        ("[]", "[]"),
        (r#""caf\u00e9 \"ok\"""#, "café \"ok\""),
    ] {
        let body = format!(r#"{{"userId": "alice", "event": "alarm", "message": {given}}}"#);
        let (status, reply) = http.request("POST", "/api/v2/push", &[JSON], body).await;
        assert_eq!(status, StatusCode::OK, "{given}: {reply}");
        assert_eq!(next_text(&mut alice).await, sent);
    }
    // Absent, null and empty stay errors.
    for given in [
        r#""event": "alarm""#,
        r#""event": "alarm", "message": null"#,
        r#""event": "alarm", "message": """#,
    ] {
        let body = format!(r#"{{"userId": "alice", {given}}}"#);
        let (status, reply) = http.request("POST", "/api/v2/push", &[JSON], body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{given}: {reply}");
    }
    // Verbatim never means unchecked: invalid UTF-8 inside a JSON message is refused, so a
    // text frame is always valid UTF-8.
    let body = b"{\"userId\": \"alice\", \"event\": \"alarm\", \"message\": {\"k\": \"\xff\"}}";
    let (status, reply) = http
        .request("POST", "/api/v2/push", &[JSON], body.to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_nothing_queued(&mut alice).await;
    gw.stop().await;
}

#[tokio::test]
async fn errors_are_json_with_precise_statuses() {
    let mut config = Config::for_tests();
    config.push_keys = vec!["k".into()];
    config.max_push_body = 256;
    let gw = Gateway::start_with(config).await;
    let mut http = gw.pusher().await;
    let auth = ("authorization", "Bearer k");
    let ok_body = json!({"userId": "u", "event": "e", "message": "m"}).to_string();
    // (method, headers, body, expected status, expected error code)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", vec![JSON], ok_body.clone(), 401, "unauthorized"),
        (
            "POST",
            vec![auth],
            ok_body.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            vec![auth, ("content-type", "application/json; charset=utf-16")],
            ok_body.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            vec![auth, JSON, ("content-type", "text/plain")],
            ok_body.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            vec![auth, JSON, ("content-encoding", "gzip")],
            ok_body.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            "GET",
            vec![auth, JSON],
            String::new(),
            405,
            "method_not_allowed",
        ),
        ("POST", vec![auth, JSON], "{".into(), 400, "bad_request"),
        (
            "POST",
            vec![auth, JSON],
            json!({"event": "e", "message": "m"}).to_string(),
            400,
            "bad_request",
        ),
        (
            "POST",
            vec![auth, JSON],
            json!({"userId": "u", "event": "", "message": "m"}).to_string(),
            400,
            "bad_request",
        ),
        (
            "POST",
            vec![auth, JSON],
            json!({"userId": "u", "event": "e", "message": "x".repeat(300)}).to_string(),
            413,
            "too_large",
        ),
    ];
    for (method, headers, body, status, code) in cases {
        let (got, reply) = http
            .request(method, "/api/v2/push", &headers, body.clone())
            .await;
        assert_eq!(got.as_u16(), status, "{method} {headers:?} {body}");
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["error"], code, "{reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, reply) = http
        .request("POST", "/api/v2/push", &[auth, JSON], ok_body.clone())
        .await;
    assert_eq!((status.as_u16(), reply.as_str()), (200, r#"{"sent":0}"#));
    // UTF-8 named as such, and the identity coding, are what is read anyway.
    let utf8 = ("content-type", r#"application/json; charset="UTF-8""#);
    let identity = ("content-encoding", "identity");
    let (status, reply) = http
        .request("POST", "/api/v2/push", &[auth, utf8, identity], ok_body)
        .await;
    assert_eq!((status.as_u16(), reply.as_str()), (200, r#"{"sent":0}"#));
    gw.stop().await;
}

#[tokio::test]
async fn batch_answers_each_item() {
    let gw = Gateway::start().await;
    let mut alice = gw.client("alice", "alarm").await;
    let (status, reply) = post(
        &gw,
        "/api/v2/batch",
        json!({"pushes": [
            {"userId": "alice", "event": "alarm", "message": "one"},
            {"userId": "alice", "event": "", "message": "bad"},
            {"userIds": ["alice", "carol"], "event": "alarm", "message": {"n": 2}},
            5,
            // The fields of a push in order, as serde would take them for a struct.
            ["alice", null, "alarm", "positional"],
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results[0], json!({"sent": 1}));
    // Every item's error names the item, whatever check refused it.
    assert_eq!(
        results[1],
        json!({"error": "bad_request", "message": "pushes[1]: event must not be empty"})
    );
    assert_eq!(results[2], json!({"sent": 1}));
    // A malformed item's message names the item and what was expected, in the API's terms.
    assert_eq!(results[3]["error"], "bad_request");
    let message = results[3]["message"].as_str().unwrap();
    assert!(
        message.starts_with("pushes[3]: ") && message.contains("expected a push object"),
        "{message}"
    );
    assert_eq!(
        results[4],
        json!({"error": "bad_request", "message": "pushes[4]: expected a push object"})
    );
    assert_eq!(next_text(&mut alice).await, "one");
    assert_eq!(next_text(&mut alice).await, r#"{"n":2}"#);
    assert_nothing_queued(&mut alice).await;
    // The request is one push request; its items are counted one by one.
    let metrics = gw.metrics().await;
    for (series, count) in [
        (r#"pushgate_pushes_total{result="ok"}"#, 1.0),
        (r#"pushgate_batch_items_total{result="ok"}"#, 2.0),
        (r#"pushgate_batch_items_total{result="bad_request"}"#, 3.0),
        (r#"pushgate_batch_items_total{result="overloaded"}"#, 0.0),
    ] {
        assert_eq!(metric(&metrics, series), Some(count), "{series}");
    }
    gw.stop().await;
}

/// Every v2 body is a JSON object. An array of the fields in order (which serde's derived
/// structs would take) is refused, and nothing is delivered.
#[tokio::test]
async fn bodies_that_are_not_json_objects_are_refused() {
    let gw = Gateway::start().await;
    let mut alice = gw.client("alice", "alarm").await;
    for (path, body) in [
        (
            "/api/v2/push",
            json!(["alice", null, "alarm", "positional"]),
        ),
        ("/api/v2/broadcast", json!(["alarm", "positional"])),
        ("/api/v2/disconnect", json!(["alice"])),
        (
            "/api/v2/batch",
            json!([[{"userId": "alice", "event": "alarm", "message": "x"}]]),
        ),
        ("/api/v2/alertmanager", json!(["4", "pushgate"])),
        ("/api/v2/push", json!("alice")),
    ] {
        let (status, reply) = post(&gw, path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert_eq!(
            reply,
            json!({"error": "bad_request", "message": "the body must be a JSON object"}),
            "{path} {body}"
        );
    }
    // A byte order mark before the object: refused, and the message says why.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(br#"{"userId":"alice","event":"alarm","message":"x"}"#);
    let (status, reply) = gw
        .pusher()
        .await
        .request("POST", "/api/v2/push", &[JSON], bom)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply.contains("byte order mark"), "{reply}");
    assert_nothing_queued(&mut alice).await;
    gw.stop().await;
}

/// A lone surrogate escape cannot become a text frame: 400, with a message that says so
/// rather than serde's "unexpected end of hex escape".
#[tokio::test]
async fn a_message_with_a_lone_surrogate_is_refused_with_a_clear_message() {
    let gw = Gateway::start().await;
    let (status, reply) = gw
        .pusher()
        .await
        .request(
            "POST",
            "/api/v2/push",
            &[("content-type", "application/json")],
            r#"{"userId":"alice","event":"alarm","message":"a\ud800b"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .starts_with("message is not valid Unicode"),
        "{reply}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn batch_size_is_bounded() {
    let mut config = Config::for_tests();
    config.max_batch = 2;
    let gw = Gateway::start_with(config).await;
    let item = json!({"userId": "u", "event": "e", "message": "m"});
    let (status, reply) = post(&gw, "/api/v2/batch", json!({"pushes": [item, item, item]})).await;
    assert_eq!(
        (status, reply["error"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("too_large"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn broadcast_reaches_every_user_of_the_event_on_every_shard() {
    let mut config = Config::for_tests();
    config.shards = Some(4);
    let gw = Gateway::start_with(config).await;
    let mut listeners = Vec::new();
    for i in 0..12 {
        listeners.push(gw.client(&format!("user-{i}"), "maintenance").await);
    }
    let mut other = gw.client("user-x", "alarm").await;
    let (status, reply) = post(
        &gw,
        "/api/v2/broadcast",
        json!({"event": "maintenance", "message": "db down at 22:00"}),
    )
    .await;
    assert_eq!((status, reply), (StatusCode::OK, json!({"sent": 12})));
    for ws in &mut listeners {
        assert_eq!(next_text(ws).await, "db down at 22:00");
    }
    assert_nothing_queued(&mut other).await;
    gw.stop().await;
}

#[tokio::test]
async fn disconnect_closes_the_users_connections_with_4000() {
    let gw = Gateway::start().await;
    let mut alarm = gw.client("dana", "alarm").await;
    let mut news = gw.client("dana", "news").await;
    let (status, reply) = post(
        &gw,
        "/api/v2/disconnect",
        json!({"userId": "dana", "event": "news"}),
    )
    .await;
    assert_eq!((status, reply), (StatusCode::OK, json!({"closed": 1})));
    match next(&mut news).await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4000),
        other => panic!("expected close 4000, got {other:?}"),
    }
    assert_eq!(gw.pusher().await.push_ok("dana", "alarm", "still").await, 1);
    assert_eq!(next_text(&mut alarm).await, "still");
    // An empty event name is a mistake (400, as on push), not "no event matched".
    let (status, reply) = post(
        &gw,
        "/api/v2/disconnect",
        json!({"userId": "dana", "event": ""}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["message"], "event must not be empty");
    let (_, reply) = post(
        &gw,
        "/api/v2/push",
        json!({"userIds": ["alice", ""], "event": "alarm", "message": "x"}),
    )
    .await;
    assert_eq!(reply["message"], "every entry of userIds must not be empty");
    let (_, reply) = post(&gw, "/api/v2/disconnect", json!({"userId": "dana"})).await;
    assert_eq!(reply, json!({"closed": 1}));
    gw.stop().await;
}

#[tokio::test]
async fn alertmanager_webhooks_go_to_the_labelled_users() {
    let mut config = Config::for_tests();
    config.alertmanager_receivers = vec!["oncall=olivia".into()];
    let gw = Gateway::start_with(config).await;
    let mut alice = gw.client("alice", "HighCPU").await;
    let mut bob = gw.client("bob", "HighCPU").await;
    let mut olivia = gw.client("olivia", "HighCPU").await;
    let payload = json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"HighCPU\"}",
        "status": "firing",
        "receiver": "oncall",
        "groupLabels": {"alertname": "HighCPU"},
        "commonLabels": {"alertname": "HighCPU"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": [
            {"status": "firing", "labels": {"alertname": "HighCPU", "user": "alice, bob", "instance": "db-3"},
             "annotations": {"summary": "CPU > 95%"}, "startsAt": "2026-11-25T21:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph", "fingerprint": "a1"},
            {"status": "firing", "labels": {"user": "alice"}, "annotations": {},
             "startsAt": "2026-11-25T21:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": "a2"}
        ]
    });
    let (status, reply) = post(&gw, "/api/v2/alertmanager", payload).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        reply,
        json!({"alerts": 2, "pushed": 1, "skipped": 1, "sent": 3})
    );
    for ws in [&mut alice, &mut bob, &mut olivia] {
        let alert: Value = serde_json::from_str(&next_text(ws).await).unwrap();
        assert_eq!(alert["labels"]["instance"], "db-3");
        assert_eq!(alert["annotations"]["summary"], "CPU > 95%");
    }
    // The message is the alert's exact text, as Alertmanager wrote it (its key order).
    let alert = r#"{"status": "firing", "labels": {"user": "alice", "alertname": "HighCPU"}, "fingerprint": "a3", "value": 1e2}"#;
    let body = format!(r#"{{"version": "4", "receiver": "other", "alerts": [{alert}]}}"#);
    let mut http = gw.pusher().await;
    let (status, reply) = http
        .request("POST", "/api/v2/alertmanager", &[JSON], body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(next_text(&mut alice).await, alert);
    // An alert that is not an object refuses the whole webhook, before any delivery.
    let body = format!(r#"{{"version": "4", "alerts": [{alert}, ["not", "an", "alert"]]}}"#);
    let (status, reply) = http
        .request("POST", "/api/v2/alertmanager", &[JSON], body)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_nothing_queued(&mut alice).await;
    // `"receiver": null` is an absent receiver, as every optional field's null is.
    let body = format!(r#"{{"version": "4", "receiver": null, "alerts": [{alert}]}}"#);
    let (status, reply) = http
        .request("POST", "/api/v2/alertmanager", &[JSON], body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(next_text(&mut alice).await, alert);
    gw.stop().await;
}
