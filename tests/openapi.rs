//! Every example in docs/openapi.yaml, sent to a live gateway: the documented status comes
//! back, and the body has the documented shape.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn every_documented_example_gets_its_documented_status() {
    let spec: Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml"))
            .unwrap(),
    )
    .unwrap();
    // Every error code the gateway answers must be one the spec lists: a client generated
    // from it rejects any other.
    let codes: Vec<&str> = spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
        .as_array()
        .expect("the Error schema lists its codes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let gw = Gateway::start().await;
    let mut alice = gw.client("alice", "alarm").await;
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        let operation = &item["post"];
        let responses = operation["responses"].as_object().unwrap();
        let examples = operation["requestBody"]["content"]["application/json"]["examples"]
            .as_object()
            .unwrap();
        for (name, example) in examples {
            let status = example["x-status"]
                .as_u64()
                .expect("x-status on every example");
            assert!(
                responses.contains_key(&status.to_string()),
                "{path} {name}: status {status} is not documented"
            );
            let (got, body) = gw
                .pusher()
                .await
                .request(
                    "POST",
                    path,
                    &[("content-type", "application/json")],
                    example["value"].to_string(),
                )
                .await;
            assert_eq!(u64::from(got.as_u16()), status, "{path} {name}: {body}");
            let body: Value = serde_json::from_str(&body).unwrap();
            if status == 200 {
                assert!(
                    body.is_object() && body.get("error").is_none(),
                    "{path} {name}: {body}"
                );
            } else {
                assert!(
                    body["error"].is_string() && body["message"].is_string(),
                    "{body}"
                );
                assert!(
                    codes.contains(&body["error"].as_str().unwrap_or_default()),
                    "{path} {name}: {body} uses a code the Error schema does not list"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} examples");
    // The pushes reached alice: the one-user, several-users, batch, broadcast and
    // alertmanager examples each queued one frame to her.
    for _ in 0..5 {
        next_text(&mut alice).await;
    }
    assert_nothing_queued(&mut alice).await;
    gw.stop().await;
}
