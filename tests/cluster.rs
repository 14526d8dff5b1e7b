//! Cluster mode over real processes: a real `nats-server` on a loopback port and several
//! `pushgate` processes joined by it (`--nats-url`).
//!
//! Interest propagates asynchronously (a node subscribes to a bucket after its first user
//! there registers, and announces it), so each test first pushes probes until the count is
//! the one expected (a bounded retry loop, never a sleep), then checks exact behaviour.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Bound for interest to propagate on a healthy cluster.
const SETTLE: Duration = Duration::from_secs(10);

/// Bound for recovery after NATS or a node comes back or goes (client reconnect backoff is
/// up to 4 s; a silent peer is forgotten after 3.5 s).
const RECOVER: Duration = Duration::from_secs(30);

async fn node(nats: &NatsServer) -> GatewayProcess {
    GatewayProcess::start(&["--nats-url", &nats.url(), "--shards", "2"], None).await
}

async fn readyz(gw: &GatewayProcess) -> (hyper::StatusCode, String) {
    gw.pusher().await.request("GET", "/readyz", &[], "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_into_one_node_reaches_connections_on_the_others_with_exact_counts() {
    let nats = NatsServer::start().await;
    let (a, b, c) = (node(&nats).await, node(&nats).await, node(&nats).await);
    let mut on_a1 = a.client("alice", "alarm").await;
    let mut on_a2 = a.client("alice", "alarm").await;
    let mut other_event = a.client("alice", "other").await;
    let mut on_c = c.client("alice", "alarm").await;
    let mut into_b = b.pusher().await;

    let probe = push_until_count(&mut into_b, "alice", "alarm", "probe", 3, SETTLE).await;
    for ws in [&mut on_a1, &mut on_a2, &mut on_c] {
        skip_until(ws, &probe).await;
    }
    // Exact counts, summed over nodes; frames verbatim; the other event gets nothing.
    for i in 0..5 {
        let message = format!("m{i} ✓ \"quoted\"");
        let (sent, partial) = push_counted(&mut into_b, "alice", "alarm", &message).await;
        assert_eq!((sent, partial), (3, false));
        for ws in [&mut on_a1, &mut on_a2, &mut on_c] {
            assert_eq!(next_text(ws).await, message);
        }
    }
    assert_nothing_queued(&mut other_event).await;
    // A user nobody holds: 0, not partial, no wait beyond the publish.
    assert_eq!(
        push_counted(&mut into_b, "nobody", "alarm", "x").await,
        (0, false)
    );
    // Cluster status in readiness and metrics.
    let (status, body) = readyz(&b).await;
    assert_eq!(status, 200);
    assert_eq!(body, "ready\ncluster: connected\n");
    let metrics = b.pusher().await.request("GET", "/metrics", &[], "").await.1;
    assert_eq!(metric(&metrics, "pushgate_cluster_connected"), Some(1.0));
    assert_eq!(metric(&metrics, "pushgate_cluster_peers"), Some(2.0));
    let metrics = a.pusher().await.request("GET", "/metrics", &[], "").await.1;
    assert!(metric(&metrics, "pushgate_cluster_buckets") >= Some(1.0));
    assert!(
        metric(
            &metrics,
            r#"pushgate_cluster_subscription_changes_total{change="subscribe"}"#
        ) >= Some(1.0)
    );
    // Deliveries are counted where the frame was queued: A queued two per push.
    assert!(metric(&metrics, "pushgate_deliveries_total") >= Some(10.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_every_node_gets_exactly_one_copy_per_connection_in_order() {
    let nats = NatsServer::start().await;
    let nodes = [node(&nats).await, node(&nats).await, node(&nats).await];
    let mut clients = Vec::new();
    for gw in &nodes {
        clients.push(gw.client("everywhere", "alarm").await);
    }
    for (origin, gw) in nodes.iter().enumerate() {
        let mut pusher = gw.pusher().await;
        let probe = push_until_count(
            &mut pusher,
            "everywhere",
            "alarm",
            &format!("probe{origin}"),
            3,
            SETTLE,
        )
        .await;
        for ws in &mut clients {
            skip_until(ws, &probe).await;
        }
        for i in 0..20 {
            let (sent, partial) =
                push_counted(&mut pusher, "everywhere", "alarm", &format!("{origin}:{i}")).await;
            assert_eq!((sent, partial), (3, false));
        }
        // Each connection, including the one on the accepting node: every push once, in
        // the order of the replies.
        for ws in &mut clients {
            for i in 0..20 {
                assert_eq!(next_text(ws).await, format!("{origin}:{i}"));
            }
            assert_nothing_queued(ws).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_nats_keeps_local_delivery_and_cross_node_delivery_comes_back() {
    let mut nats = NatsServer::start().await;
    let (a, b) = (node(&nats).await, node(&nats).await);
    let mut on_a = a.client("carol", "alarm").await;
    let mut into_a = a.pusher().await;
    let mut into_b = b.pusher().await;
    let probe = push_until_count(&mut into_b, "carol", "alarm", "before", 1, SETTLE).await;
    skip_until(&mut on_a, &probe).await;

    nats.stop();
    // Local delivery never stops; the count is flagged partial while NATS is away (at once,
    // or once the client has noticed the loss).
    for i in 0..10 {
        let message = format!("local-{i}");
        let (sent, _) = push_counted(&mut into_a, "carol", "alarm", &message).await;
        assert_eq!(sent, 1);
        assert_eq!(next_text(&mut on_a).await, message);
    }
    let deadline = tokio::time::Instant::now() + RECOVER;
    loop {
        let (status, body) = readyz(&a).await;
        assert_eq!(status, 200, "still ready: local serving works");
        if body == "ready\ncluster: disconnected\n" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        push_counted(&mut into_a, "carol", "alarm", "while-down").await,
        (1, true)
    );
    assert_eq!(next_text(&mut on_a).await, "while-down");
    let metrics = a.pusher().await.request("GET", "/metrics", &[], "").await.1;
    assert_eq!(metric(&metrics, "pushgate_cluster_connected"), Some(0.0));
    assert!(metric(&metrics, "pushgate_cluster_partial_replies_total") >= Some(1.0));

    // NATS returns on the same port: both clients reconnect and resubscribe by themselves.
    nats.restart().await;
    let probe = push_until_count(&mut into_b, "carol", "alarm", "after", 1, RECOVER).await;
    skip_until(&mut on_a, &probe).await;
    assert_eq!(
        push_counted(&mut into_b, "carol", "alarm", "resumed").await,
        (1, false)
    );
    assert_eq!(next_text(&mut on_a).await, "resumed");
    assert_eq!(readyz(&a).await.1, "ready\ncluster: connected\n");
}

/// A NATS server that hangs without closing its connections (a frozen host, a partition that
/// drops packets) is noticed as lost within seconds, and no reply meanwhile looks exact:
/// each is marked partial, first because the peer does not answer, then because NATS is
/// gone (before the client pinged it, replies came back unmarked once the silent peer was
/// forgotten, 3.5 s in, for as long as the server hung).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_nats_server_is_noticed_and_no_count_looks_exact_meanwhile() {
    let nats = NatsServer::start().await;
    let (a, b) = (node(&nats).await, node(&nats).await);
    let (_on_a, mut on_b, mut into_b) = joined_pair(&a, &b, "hana").await;
    nats.pause();
    let paused = tokio::time::Instant::now();
    // Past the moment the silent peer is forgotten (3.5 s), with margin.
    let mut pushes = 0;
    while paused.elapsed() < Duration::from_secs(6) {
        let message = format!("hung-{pushes}");
        let (sent, partial) = push_counted(&mut into_b, "hana", "alarm", &message).await;
        assert!(
            partial,
            "{:?} after the pause: {message} answered {sent} as an exact count",
            paused.elapsed()
        );
        assert_eq!(
            next_text(&mut on_b).await,
            message,
            "local delivery goes on"
        );
        pushes += 1;
        // Pacing, not synchronisation: pushes spread over the whole pause.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(readyz(&b).await.1, "ready\ncluster: disconnected\n");
    let metrics = b.pusher().await.request("GET", "/metrics", &[], "").await.1;
    assert_eq!(metric(&metrics, "pushgate_cluster_connected"), Some(0.0));
    nats.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_without_nats_and_joins_when_it_appears() {
    // A port nobody listens on yet (a race with another test taking it is harmless here:
    // the node would then find a server that is not NATS and keep retrying).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let a = GatewayProcess::start(&["--nats-url", &url], None).await;
    let mut on_a = a.client("dave", "alarm").await;
    let mut into_a = a.pusher().await;
    assert_eq!(
        push_counted(&mut into_a, "dave", "alarm", "alone").await,
        (1, true)
    );
    assert_eq!(next_text(&mut on_a).await, "alone");
    let (status, body) = readyz(&a).await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "ready\ncluster: connecting\n")
    );

    let nats = NatsServer::start_on(i32::from(port)).await;
    let b = node(&nats).await;
    let mut into_b = b.pusher().await;
    let probe = push_until_count(&mut into_b, "dave", "alarm", "joined", 1, RECOVER).await;
    skip_until(&mut on_a, &probe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_leaves_the_others_delivering() {
    let nats = NatsServer::start().await;
    let (a, b) = (node(&nats).await, node(&nats).await);
    let mut c = node(&nats).await;
    let mut on_a = a.client("erin", "alarm").await;
    let mut on_b = b.client("erin", "alarm").await;
    let _on_c = c.client("erin", "alarm").await;
    let mut into_a = a.pusher().await;
    let probe = push_until_count(&mut into_a, "erin", "alarm", "three", 3, SETTLE).await;
    skip_until(&mut on_a, &probe).await;
    skip_until(&mut on_b, &probe).await;

    c.child.kill().await.unwrap();
    // The survivors keep delivering at once; the count is a lower bound (partial) until C
    // is forgotten, then exact again.
    for i in 0..5 {
        let message = format!("after-kill-{i}");
        let (sent, _) = push_counted(&mut into_a, "erin", "alarm", &message).await;
        assert!(sent >= 2, "{sent}");
        assert_eq!(next_text(&mut on_a).await, message);
        assert_eq!(next_text(&mut on_b).await, message);
    }
    let probe = push_until_count(&mut into_a, "erin", "alarm", "two", 2, RECOVER).await;
    skip_until(&mut on_a, &probe).await;
    skip_until(&mut on_b, &probe).await;
}

/// A connect/disconnect storm (page reloads): 200 users each reconnecting 5 times. Bucket
/// subscriptions follow users, but a bucket that empties lingers before it is unsubscribed,
/// so reconnections cost no churn: subscribe operations stay at one per bucket reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_causes_no_subscription_churn() {
    const USERS: usize = 200;
    const ROUNDS: usize = 5;
    let nats = NatsServer::start().await;
    let a = node(&nats).await;
    for _ in 0..ROUNDS {
        let mut clients = Vec::new();
        for user in 0..USERS {
            clients.push(a.client(&format!("storm-{user}"), "alarm").await);
        }
        for mut ws in clients {
            ws.close(None).await.unwrap();
            while futures_util::StreamExt::next(&mut ws).await.is_some() {}
        }
    }
    let metrics = a.pusher().await.request("GET", "/metrics", &[], "").await.1;
    let subscribes = metric(
        &metrics,
        r#"pushgate_cluster_subscription_changes_total{change="subscribe"}"#,
    )
    .unwrap();
    let unsubscribes = metric(
        &metrics,
        r#"pushgate_cluster_subscription_changes_total{change="unsubscribe"}"#,
    )
    .unwrap();
    eprintln!(
        "{} bindings and unbindings: {subscribes} subscribes, {unsubscribes} unsubscribes",
        2 * USERS * ROUNDS
    );
    assert!(subscribes <= USERS as f64, "{subscribes}");
    assert_eq!(unsubscribes, 0.0, "a bucket lingers before it is dropped");
}

/// `POST /api/v2/<endpoint>` with a JSON body; asserts a 200 and returns the JSON reply.
async fn v2(pusher: &mut Pusher, endpoint: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, reply) = v2_any(pusher, endpoint, body).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

/// `POST /api/v2/<endpoint>` with a JSON body, whatever the answer: status and JSON reply.
async fn v2_any(
    pusher: &mut Pusher,
    endpoint: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let (status, reply) = pusher
        .request(
            "POST",
            &format!("/api/v2/{endpoint}"),
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    (status.as_u16(), serde_json::from_str(&reply).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_into_one_node_reaches_every_node_with_the_exact_sum() {
    let nats = NatsServer::start().await;
    let (a, b, c) = (node(&nats).await, node(&nats).await, node(&nats).await);
    // Different users on every node, several per node: a broadcast ignores buckets.
    let mut listeners = vec![
        a.client("news-a1", "news").await,
        a.client("news-a2", "news").await,
        b.client("news-b1", "news").await,
        c.client("news-c1", "news").await,
        c.client("news-c2", "news").await,
    ];
    let mut other_event = a.client("news-a1", "other").await;
    let mut into_b = b.pusher().await;

    // Peers learn of each other through presence: broadcast probes until all answer.
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut attempt = 0;
    let probe = loop {
        attempt += 1;
        let message = format!("probe-{attempt}");
        let reply = v2(
            &mut into_b,
            "broadcast",
            json!({"event": "news", "message": message}),
        )
        .await;
        if reply == json!({"sent": 5}) {
            break message;
        }
        assert!(tokio::time::Instant::now() < deadline, "last reply {reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for ws in &mut listeners {
        skip_until(ws, &probe).await;
    }
    for i in 0..5 {
        let message = format!("to everyone {i} ✓ \"quoted\"");
        let reply = v2(
            &mut into_b,
            "broadcast",
            json!({"event": "news", "message": message}),
        )
        .await;
        assert_eq!(reply, json!({"sent": 5}));
        for ws in &mut listeners {
            assert_eq!(next_text(ws).await, message);
        }
    }
    // A JSON message is sent as its text, verbatim on every node.
    let reply = v2(
        &mut into_b,
        "broadcast",
        json!({"event": "news", "message": {"k": 1}}),
    )
    .await;
    assert_eq!(reply, json!({"sent": 5}));
    for ws in &mut listeners {
        assert_eq!(next_text(ws).await, r#"{"k":1}"#);
    }
    for ws in &mut listeners {
        assert_nothing_queued(ws).await;
    }
    assert_nothing_queued(&mut other_event).await;
    // An event nobody listens to: 0 from every node, not partial.
    let reply = v2(
        &mut into_b,
        "broadcast",
        json!({"event": "none", "message": "x"}),
    )
    .await;
    assert_eq!(reply, json!({"sent": 0}));
    // Deliveries are counted where queued: A queued two per broadcast.
    let metrics = a.pusher().await.request("GET", "/metrics", &[], "").await.1;
    assert!(metric(&metrics, "pushgate_deliveries_total") >= Some(12.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_into_one_node_closes_the_users_connections_on_another() {
    let nats = NatsServer::start().await;
    let (a, b) = (node(&nats).await, node(&nats).await);
    let mut on_a = a.client("frank", "alarm").await;
    let mut bystander = a.client("grace", "alarm").await;
    let mut into_b = b.pusher().await;
    let probe = push_until_count(&mut into_b, "frank", "alarm", "probe", 1, SETTLE).await;
    skip_until(&mut on_a, &probe).await;
    let probe = push_until_count(&mut into_b, "grace", "alarm", "probe", 1, SETTLE).await;
    skip_until(&mut bystander, &probe).await;

    // Nobody holds this user: 0, not partial.
    let reply = v2(&mut into_b, "disconnect", json!({"userId": "nobody"})).await;
    assert_eq!(reply, json!({"closed": 0}));
    // Another event of the user: nothing closed.
    let reply = v2(
        &mut into_b,
        "disconnect",
        json!({"userId": "frank", "event": "other"}),
    )
    .await;
    assert_eq!(reply, json!({"closed": 0}));
    // A push then a disconnect through B: the push arrives first, then the 4000 close.
    assert_eq!(
        push_counted(&mut into_b, "frank", "alarm", "last").await,
        (1, false)
    );
    let reply = v2(&mut into_b, "disconnect", json!({"userId": "frank"})).await;
    assert_eq!(reply, json!({"closed": 1}));
    assert_eq!(next_text(&mut on_a).await, "last");
    loop {
        match next(&mut on_a).await {
            Message::Close(Some(close)) => {
                assert_eq!(u16::from(close.code), 4000);
                assert_eq!(close.reason, "disconnected by server");
                break;
            }
            Message::Pong(_) => {}
            other => panic!("expected the 4000 close, got {other:?}"),
        }
    }
    // The other user on A is untouched, and frank is gone everywhere.
    assert_eq!(
        push_counted(&mut into_b, "grace", "alarm", "still").await.0,
        1
    );
    assert_eq!(next_text(&mut bystander).await, "still");
    let reply = v2(&mut into_b, "disconnect", json!({"userId": "frank"})).await;
    assert_eq!(reply, json!({"closed": 0}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_nats_cannot_carry_is_refused_with_413_before_any_node_delivers_it() {
    // Below --max-push-body (1 MiB): NATS itself would refuse the larger messages.
    let nats = NatsServer::start_with_config("max_payload: 4096\n").await;
    let (a, b) = (node(&nats).await, node(&nats).await);
    let (mut on_a, mut on_b, mut into_b) = joined_pair(&a, &b, "heidi").await;
    let big = "x".repeat(5_000);

    // v1: the old server's 413 body; not delivered on B either.
    let body = json!({"userId": "heidi", "event": "alarm", "message": big});
    let (status, reply) = into_b.request("POST", "/push", &[], body.to_string()).await;
    assert_eq!(
        (status.as_u16(), reply.as_str()),
        (413, "request body too large")
    );
    // v2, several users: the longest decides, so "heidi" gets nothing either.
    let (status, reply) = v2_any(
        &mut into_b,
        "push",
        json!({"userIds": ["heidi", big], "event": "alarm", "message": "short"}),
    )
    .await;
    assert_eq!(
        (status, &reply["error"]),
        (413, &json!("too_large")),
        "{reply}"
    );
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("max_payload of 4096"),
        "{reply}"
    );
    let (status, reply) = v2_any(
        &mut into_b,
        "broadcast",
        json!({"event": "alarm", "message": big}),
    )
    .await;
    assert_eq!(
        (status, &reply["error"]),
        (413, &json!("too_large")),
        "{reply}"
    );
    // An Alertmanager webhook is taken whole or not at all: its first alert fits, its
    // second does not, so neither is delivered (Alertmanager does not retry a 4xx).
    let (status, reply) = v2_any(
        &mut into_b,
        "alertmanager",
        json!({"version": "4", "receiver": "ops", "alerts": [
            {"labels": {"alertname": "alarm", "user": "heidi"}},
            {"labels": {"alertname": "alarm", "user": "heidi"}, "annotations": {"text": big}},
        ]}),
    )
    .await;
    assert_eq!(
        (status, &reply["error"]),
        (413, &json!("too_large")),
        "{reply}"
    );
    // A batch refuses the item alone.
    let reply = v2(
        &mut into_b,
        "batch",
        json!({"pushes": [
            {"userId": "heidi", "event": "alarm", "message": big},
            {"userId": "heidi", "event": "alarm", "message": "from the batch"},
        ]}),
    )
    .await;
    assert_eq!(reply["results"][0]["error"], "too_large", "{reply}");
    assert_eq!(reply["results"][1], json!({"sent": 2}), "{reply}");

    // What fits still reaches both nodes; nothing refused was delivered before it.
    assert_eq!(
        push_counted(&mut into_b, "heidi", "alarm", "fits").await,
        (2, false)
    );
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(next_text(ws).await, "from the batch");
        assert_eq!(next_text(ws).await, "fits");
    }
    let metrics = b.pusher().await.request("GET", "/metrics", &[], "").await.1;
    assert_eq!(
        metric(&metrics, r#"pushgate_pushes_total{result="too_large"}"#),
        Some(4.0)
    );
}

/// Two nodes started with `a_args` and `b_args` (besides the defaults) both reach a user's
/// connections through a push into B: proof that each is connected to NATS.
async fn assert_two_nodes_join(a_args: &[&str], b_args: &[&str]) {
    let start = |extra: &[&str]| {
        let mut args = vec!["--shards", "2"];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            GatewayProcess::start(&args, None).await
        }
    };
    let (a, b) = (start(a_args).await, start(b_args).await);
    joined_pair(&a, &b, "ivan").await;
    assert_eq!(readyz(&a).await.1, "ready\ncluster: connected\n");
}

/// A connection of `user` (event `alarm`) on each of `a` and `b` and a pusher into `b`,
/// once a push into `b` reaches both: the nodes have found each other through NATS.
async fn joined_pair(a: &GatewayProcess, b: &GatewayProcess, user: &str) -> (Ws, Ws, Pusher) {
    let mut on_a = a.client(user, "alarm").await;
    let mut on_b = b.client(user, "alarm").await;
    let mut into_b = b.pusher().await;
    let probe = push_until_count(&mut into_b, user, "alarm", "probe", 2, SETTLE).await;
    for ws in [&mut on_a, &mut on_b] {
        skip_until(ws, &probe).await;
    }
    (on_a, on_b, into_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_with_a_password_from_the_flags_or_from_the_url() {
    let nats =
        NatsServer::start_with_config("authorization { user: alice, password: \"p@ss:word\" }\n")
            .await;
    let in_url = format!("nats://alice:p%40ss%3Aword@127.0.0.1:{}", nats.port);
    assert_two_nodes_join(
        &[
            "--nats-url",
            &nats.url(),
            "--nats-user",
            "alice",
            "--nats-password",
            "p@ss:word",
        ],
        &["--nats-url", &in_url],
    )
    .await;
}

/// A credential the server turns down is named as such, at error level, without the secret;
/// the node keeps serving its own connections (it may be the server's configuration that is
/// wrong, and retries pick up a fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_credential_is_named_not_reported_as_an_outage() {
    let nats =
        NatsServer::start_with_config("authorization { user: alice, password: right }\n").await;
    let mut gw = GatewayProcess::start(
        &[
            "--nats-url",
            &nats.url(),
            "--nats-user",
            "alice",
            "--nats-password",
            "wr0ng-s3cret",
        ],
        None,
    )
    .await;
    let line = gw
        .wait_for_log(
            "NATS refused this node's credentials (authorization violation): check \
             --nats-user/--nats-password, --nats-token, --nats-creds or --nats-nkey; serving \
             local connections only, retrying",
        )
        .await;
    assert!(!line.to_string().contains("wr0ng-s3cret"), "{line}");
    let mut ws = gw.client("lena", "alarm").await;
    assert_eq!(gw.pusher().await.push_ok("lena", "alarm", "local").await, 1);
    assert_eq!(next_text(&mut ws).await, "local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_with_a_token_from_the_flags_or_from_the_url() {
    let nats = NatsServer::start_with_config("authorization { token: \"t0ken\" }\n").await;
    let in_url = format!("nats://t0ken@127.0.0.1:{}", nats.port);
    assert_two_nodes_join(
        &["--nats-url", &nats.url(), "--nats-token", "t0ken"],
        &["--nats-url", &in_url],
    )
    .await;
}

/// A NATS JWT (as `nsc` issues them): `claims` plus the standard fields, signed with the
/// issuer's NKey (`ed25519-nkey`).
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine};
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "jti": format!("{name}-{issued_at}"),
        "iat": issued_at,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Decentralized authentication: an operator, an account it signs and a user the account
/// signs. Returns the nats-server configuration (operator mode, the account preloaded) and
/// the user's `.creds` file text.
fn operator_mode() -> (String, String) {
    use nkeys::KeyPair;
    let (operator, account, user) = (
        KeyPair::new_operator(),
        KeyPair::new_account(),
        KeyPair::new_user(),
    );
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "op",
        json!({ "type": "operator", "version": 2 }),
    );
    let unlimited = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1
    });
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "pushgate",
        json!({
            "limits": unlimited,
            "default_permissions": { "pub": {}, "sub": {} },
            "type": "account",
            "version": 2
        }),
    );
    let user_jwt = nats_jwt(
        &account,
        &user.public_key(),
        "node",
        json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2
        }),
    );
    let server = format!(
        "operator: \"{operator_jwt}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{account_jwt}\"\n}}\n",
        account.public_key()
    );
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().unwrap()
    );
    (server, creds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_with_a_creds_file_to_a_server_in_operator_mode() {
    let (server, creds) = operator_mode();
    let nats = NatsServer::start_with_config(&server).await;
    let dir = TempDir::new("creds");
    let creds_path = dir.file("node.creds");
    std::fs::write(&creds_path, creds).unwrap();
    let args = ["--nats-url", &nats.url(), "--nats-creds", &creds_path];
    assert_two_nodes_join(&args, &args).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_with_an_nkey_seed() {
    let user = nkeys::KeyPair::new_user();
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
        user.public_key()
    ))
    .await;
    let dir = TempDir::new("nkey");
    let seed_path = dir.file("node.nk");
    std::fs::write(&seed_path, format!("{}\n", user.seed().unwrap())).unwrap();
    let args = ["--nats-url", &nats.url(), "--nats-nkey", &seed_path];
    assert_two_nodes_join(&args, &args).await;
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by the
/// `openssl` command (scripts/test installs it) in a fresh directory.
fn certificates() -> TempDir {
    let dir = TempDir::new("tls");
    std::fs::write(
        dir.path().join("server.ext"),
        "subjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("client.ext"),
        "extendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let sign = |name: &str| {
        format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
             -out {name}.pem -days 1 -extfile {name}.ext"
        )
    };
    let steps = [
        format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 1 -subj /CN=pushgate-test-ca"),
        format!("req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1"),
        sign("server"),
        format!("req {ec} -keyout client.key -out client.csr -subj /CN=pushgate-node"),
        sign("client"),
    ];
    for step in &steps {
        let args: Vec<&str> = step.split_whitespace().collect();
        let output = std::process::Command::new("openssl")
            .args(&args)
            .current_dir(dir.path())
            .output()
            .expect("openssl must be installed (scripts/test installs it)");
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_a_nats_server_that_requires_mutual_tls() {
    let dir = certificates();
    let path = |name: &str| dir.file(name);
    let nats = NatsServer::start_with_config(&format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n",
        path("server.pem"),
        path("server.key"),
        path("ca.pem"),
    ))
    .await;
    let tls = [
        "--nats-tls-ca",
        &path("ca.pem"),
        "--nats-tls-cert",
        &path("client.pem"),
        "--nats-tls-key",
        &path("client.key"),
    ];
    // One node forced to TLS by the CA flag on a nats:// URL, the other by a tls:// URL.
    let (plain_url, tls_url) = (nats.url(), format!("tls://127.0.0.1:{}", nats.port));
    assert_two_nodes_join(
        &[&["--nats-url", &plain_url][..], &tls].concat(),
        &[&["--nats-url", &tls_url][..], &tls].concat(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_with_different_subject_prefixes_share_a_nats_server_apart() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let start = |prefix: &'static str| {
        let url = url.clone();
        async move {
            GatewayProcess::start(
                &[
                    "--nats-url",
                    &url,
                    "--shards",
                    "2",
                    "--nats-subject-prefix",
                    prefix,
                ],
                None,
            )
            .await
        }
    };
    // Cluster "one" first, so that the other's nodes would hear of it at their hello.
    let one = start("one").await;
    let mut on_one = one.client("kim", "alarm").await;
    let (two_a, two_b) = (start("acme.two").await, start("acme.two").await);
    let mut on_two = two_a.client("kim", "alarm").await;
    let mut into_two = two_b.pusher().await;
    let probe = push_until_count(&mut into_two, "kim", "alarm", "probe", 1, SETTLE).await;
    skip_until(&mut on_two, &probe).await;

    // Each node knows the nodes of its own cluster only, and a push stays in its cluster.
    let peers = |gw: &GatewayProcess| {
        let internal = gw.internal;
        async move {
            let metrics = Pusher::connect(internal)
                .await
                .request("GET", "/metrics", &[], "")
                .await
                .1;
            metric(&metrics, "pushgate_cluster_peers")
        }
    };
    assert_eq!(peers(&two_b).await, Some(1.0));
    assert_eq!(
        push_counted(&mut one.pusher().await, "kim", "alarm", "to one").await,
        (1, false)
    );
    assert_eq!(next_text(&mut on_one).await, "to one");
    assert_eq!(peers(&one).await, Some(0.0));
    assert_nothing_queued(&mut on_two).await;
}
