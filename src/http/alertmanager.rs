//! `POST /api/v2/alertmanager`: Prometheus Alertmanager's webhook payload (version 4) as is,
//! so an alerting pipeline needs no glue. Each alert goes to the users named by a label
//! (`--alertmanager-user-label`, comma-separated values) and to those mapped from the
//! receiver (`--alertmanager-receiver NAME=U1,U2`), on the event named by another label
//! (`--alertmanager-event-label`, default `alertname`), with the alert's exact JSON text as
//! the message.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::service::RequestContext;
use super::v2::{deliver, parse, ApiError, Counted};
use crate::shard::MultiPush;
use crate::ws::frame;

#[derive(Debug, Deserialize)]
struct Webhook<'a> {
    version: String,
    /// Absent and `null` alike: no receiver mapping applies.
    #[serde(default)]
    receiver: Option<String>,
    /// Each alert's exact text is its message (re-encoding would reorder its keys).
    #[serde(borrow)]
    alerts: Vec<&'a RawValue>,
}

/// The part of an alert that routes it.
#[derive(Debug, Deserialize)]
struct Alert {
    #[serde(default)]
    labels: Value,
}

/// Handles one webhook delivery; replies with the alerts seen, pushed and skipped (an alert
/// without the event label or without any user is skipped) and the connections reached.
pub async fn handle(ctx: &RequestContext, body: &[u8]) -> Result<Value, ApiError> {
    let webhook: Webhook = parse(body)?;
    if webhook.version != "4" {
        return Err(ApiError::bad_request(format!(
            "webhook version {:?} is not supported (expected \"4\")",
            webhook.version
        )));
    }
    let config = &ctx.shared.config;
    let receiver_users: Vec<String> = config
        .alertmanager_receivers
        .iter()
        .filter_map(|spec| spec.split_once('='))
        .filter(|(name, _)| webhook.receiver.as_deref() == Some(*name))
        .flat_map(|(_, users)| users.split(','))
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    let mut skipped = 0;
    let mut pushes = Vec::with_capacity(webhook.alerts.len());
    for raw in &webhook.alerts {
        let text = raw.get();
        if !text.starts_with('{') {
            return Err(ApiError::bad_request("every alert must be a JSON object"));
        }
        let alert: Alert = parse(text.as_bytes())?;
        let labels = alert.labels.as_object();
        let label = |name: &str| labels.and_then(|l| l.get(name)).and_then(Value::as_str);
        let Some(event) = label(&config.alertmanager_event_label).filter(|e| !e.is_empty()) else {
            skipped += 1;
            continue;
        };
        let users: BTreeSet<String> = label(&config.alertmanager_user_label)
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .chain(receiver_users.iter().cloned())
            .collect();
        if users.is_empty() {
            skipped += 1;
            continue;
        }
        pushes.push(MultiPush {
            users: users.into_iter().collect(),
            event: event.to_owned(),
            frame: frame::text(text),
        });
    }
    // All alerts or none: a webhook refused (413 too large for the cluster, 503 a saturated
    // shard) delivered nothing, so Alertmanager's retry cannot deliver an alert twice.
    let pushed = pushes.len();
    let Counted { sent, partial } = deliver(ctx, pushes).await?;
    let mut reply = json!({
        "alerts": webhook.alerts.len(),
        "pushed": pushed,
        "skipped": skipped,
        "sent": sent,
    });
    if partial {
        reply["partial"] = json!(true);
    }
    Ok(reply)
}
