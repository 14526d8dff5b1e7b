//! Push API v2: JSON in, JSON out, next to the unchanged v1 `/push` (docs/openapi.yaml).
//!
//! `POST /api/v2/push`, `/batch`, `/broadcast`, `/disconnect` and `/alertmanager`, on the
//! internal listener, behind the same push keys as v1. Errors are `{"error": code,
//! "message": text}` with precise statuses: 400 bad body, 401 missing key, 405 method,
//! 413 too large, 415 not JSON, 503 overloaded or draining.

use std::borrow::Cow;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::body::{read_limited, BodyError};
use super::response::{add_required_headers, closing, Body, ALLOW_POST};
use super::service::RequestContext;
use crate::cluster::remote::DISCONNECTED_REASON;
use crate::config::Config;
use crate::metrics::PushResult;
use crate::shard::{MultiPush, PushRefused};
use crate::ws::close::CloseCode;
use crate::ws::frame;

/// Path prefix of every v2 endpoint.
pub const PREFIX: &str = "/api/v2/";

/// An API error: status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The same error, its message naming the batch item it is about.
    fn at_item(mut self, at: usize) -> Self {
        self.message = format!("pushes[{at}]: {}", self.message);
        self
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn result(&self) -> PushResult {
        match self.status {
            StatusCode::UNAUTHORIZED => PushResult::Unauthorized,
            StatusCode::PAYLOAD_TOO_LARGE => PushResult::TooLarge,
            StatusCode::SERVICE_UNAVAILABLE if self.code == "shutting_down" => PushResult::Draining,
            StatusCode::SERVICE_UNAVAILABLE => PushResult::Overloaded,
            StatusCode::METHOD_NOT_ALLOWED => PushResult::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => PushResult::BodyTimeout,
            _ => PushResult::BadRequest,
        }
    }
}

impl From<PushRefused> for ApiError {
    fn from(refused: PushRefused) -> Self {
        match refused {
            PushRefused::Overloaded => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "a shard is saturated; retry shortly",
            ),
            PushRefused::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the gateway is draining",
            ),
            PushRefused::TooLargeForCluster { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                refused.to_string(),
            ),
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    add_required_headers(&mut response, ALLOW_POST);
    if status == StatusCode::REQUEST_TIMEOUT {
        response = closing(response);
    }
    response
}

/// Handles a request under [`PREFIX`].
pub async fn handle(request: Request<Incoming>, ctx: &RequestContext) -> Response<Body> {
    let started = Instant::now();
    let metrics = &ctx.shared.metrics;
    let result = respond(request, ctx).await;
    metrics.push_duration.record(started.elapsed());
    match result {
        Ok(body) => {
            metrics.push(PushResult::Ok);
            json_response(StatusCode::OK, &body)
        }
        Err(error) => {
            metrics.push(error.result());
            tracing::debug!(
                result = error.result().label(),
                status = %error.status,
                error = error.code,
                "push refused"
            );
            json_response(
                error.status,
                &json!({"error": error.code, "message": error.message}),
            )
        }
    }
}

async fn respond(request: Request<Incoming>, ctx: &RequestContext) -> Result<Value, ApiError> {
    let shared = &ctx.shared;
    let endpoint = request.uri().path()[PREFIX.len()..].to_owned();
    if !matches!(
        endpoint.as_str(),
        "push" | "batch" | "broadcast" | "disconnect" | "alertmanager"
    ) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        ));
    }
    if request.method() != Method::POST {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST",
        ));
    }
    if !shared.push_keys.authorize(&request) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or unknown push key (Authorization: Bearer <key>)",
        ));
    }
    if ctx.is_draining() {
        return Err(PushRefused::ShuttingDown.into());
    }
    if let Err(what) = readable_as_json(request.headers()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            what,
        ));
    }
    let body = read_body(request, &shared.config).await?;
    match endpoint.as_str() {
        "push" => {
            let push: PushBody = parse(&body)?;
            Ok(push_one(ctx, push).await?.to_json())
        }
        "batch" => batch(ctx, &body).await,
        "broadcast" => {
            let broadcast: BroadcastBody = parse(&body)?;
            non_empty("event", &broadcast.event)?;
            let frame = frame::text(&message_text(broadcast.message)?);
            // In cluster mode every live node delivers it and answers its count.
            let delivery = shared
                .broadcast(&broadcast.event, frame, Instant::now())
                .await?;
            Ok(counted_json("sent", delivery.sent, delivery.partial))
        }
        "disconnect" => {
            let disconnect: DisconnectBody = parse(&body)?;
            non_empty("userId", &disconnect.user_id)?;
            // Absent or null means every event; an empty name is a mistake, as on push.
            if let Some(event) = &disconnect.event {
                non_empty("event", event)?;
            }
            let close = frame::close(CloseCode::DISCONNECTED.0, DISCONNECTED_REASON);
            // In cluster mode it reaches the nodes holding the user's bucket, like a push.
            let delivery = shared
                .disconnect(disconnect.user_id, disconnect.event, close)
                .await?;
            Ok(counted_json("closed", delivery.sent, delivery.partial))
        }
        _ => super::alertmanager::handle(ctx, &body).await,
    }
}

async fn read_body(request: Request<Incoming>, config: &Config) -> Result<Bytes, ApiError> {
    let limit = config.max_push_body;
    read_limited(request, limit, config.body_timeout)
        .await
        .map_err(|error| match error {
            BodyError::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body larger than {limit} bytes"),
            ),
            BodyError::Unreadable => ApiError::bad_request("could not read the body"),
            BodyError::TimedOut => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("body not received within {:?}", config.body_timeout),
            ),
        })
}

/// Whether the body can be read as JSON as it arrives: `application/json`, in UTF-8 (JSON's
/// only encoding between systems, RFC 8259 §8.1), not compressed. A body in another charset
/// or a content coding would otherwise be refused as malformed JSON (400), which hides what
/// the pusher has to change; RFC 9110 §15.5.16 makes both a 415.
fn readable_as_json(headers: &hyper::HeaderMap) -> Result<(), &'static str> {
    // Content-Type is a singleton field (RFC 9110 §8.3): of two, neither can be trusted.
    if headers.get_all(CONTENT_TYPE).iter().nth(1).is_some() {
        return Err("send one Content-Type header: application/json");
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err("send Content-Type: application/json");
    }
    for parameter in parts {
        let Some((name, value)) = parameter.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset")
            && !value.eq_ignore_ascii_case("utf-8")
            && !value.eq_ignore_ascii_case("utf8")
        {
            return Err("JSON is read as UTF-8: send charset=utf-8, or no charset");
        }
    }
    let encoded = headers
        .get_all(hyper::header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err("Content-Encoding is not supported: send the body uncompressed");
    }
    Ok(())
}

/// Parses a body that must be a JSON object. serde's derived structs also accept an array
/// of their fields in order, which would make `["alarm", "hi"]` a broadcast: refused.
pub(super) fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if !is_object(body) {
        // A byte order mark is not JSON (RFC 8259 §8.1); say so rather than "not an object".
        if body.starts_with(b"\xEF\xBB\xBF") {
            return Err(ApiError::bad_request(
                "the body starts with a UTF-8 byte order mark, which JSON does not allow",
            ));
        }
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Whether `json` starts (after JSON whitespace) with an object.
fn is_object(json: &[u8]) -> bool {
    json.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|&b| b == b'{')
}

pub(super) fn non_empty(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::bad_request(format!("{field} must not be empty")));
    }
    Ok(())
}

/// A string message is sent decoded; any other JSON value as the exact text the pusher
/// sent for it. Re-encoding a parsed value would reorder an object's keys, turn `1e2` into
/// `100.0` and round integers past 2^64 (`raw_value`: the text is borrowed, not parsed).
fn message_text(message: Option<&RawValue>) -> Result<Cow<'_, str>, ApiError> {
    let Some(raw) = message else {
        // Missing or `null`.
        return Err(ApiError::bad_request("message is required"));
    };
    let text = raw.get();
    if !text.starts_with('"') {
        return Ok(Cow::Borrowed(text));
    }
    // The body already parsed as JSON, so a string that does not decode holds an escape
    // of a lone surrogate (`\ud800`), which no text frame can carry; serde's own message
    // ("unexpected end of hex escape" at a position inside the value) would mislead.
    let JsonString(decoded) = serde_json::from_str(text).map_err(|_| {
        ApiError::bad_request(
            "message is not valid Unicode: a lone surrogate escape (such as \\ud800) \
             cannot be sent as a WebSocket text frame",
        )
    })?;
    if decoded.is_empty() {
        return Err(ApiError::bad_request("message must not be empty"));
    }
    Ok(decoded)
}

/// A JSON string, borrowed from the body unless it holds escapes.
#[derive(Deserialize)]
struct JsonString<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a push object")]
struct PushBody<'a> {
    user_id: Option<String>,
    user_ids: Option<Vec<String>>,
    event: String,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct BroadcastBody<'a> {
    event: String,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DisconnectBody {
    user_id: String,
    event: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BatchBody<'a> {
    /// Parsed one by one, so that a bad item fails alone.
    #[serde(borrow)]
    pushes: Vec<&'a RawValue>,
}

/// A validated push: who, which event, and its frame encoded once.
struct Prepared {
    users: Vec<String>,
    event: String,
    frame: Bytes,
}

fn prepare(push: PushBody<'_>) -> Result<Prepared, ApiError> {
    let users_field = if push.user_ids.is_some() {
        "every entry of userIds"
    } else {
        "userId"
    };
    let users = match (push.user_id, push.user_ids) {
        (Some(user), None) => vec![user],
        (None, Some(mut users)) if !users.is_empty() => {
            // A user named twice gets the message once, as each of its connections should.
            users.sort_unstable();
            users.dedup();
            users
        }
        (None, Some(_)) => return Err(ApiError::bad_request("userIds must not be empty")),
        (None, None) => return Err(ApiError::bad_request("userId or userIds is required")),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give userId or userIds, not both"))
        }
    };
    non_empty("event", &push.event)?;
    for user in &users {
        non_empty(users_field, user)?;
    }
    let frame = frame::text(&message_text(push.message)?);
    Ok(Prepared {
        users,
        event: push.event,
        frame,
    })
}

/// Validates one push and queues its frame to every user it names.
async fn push_one(ctx: &RequestContext, push: PushBody<'_>) -> Result<Counted, ApiError> {
    let prepared = prepare(push)?;
    deliver(
        ctx,
        vec![MultiPush {
            users: prepared.users,
            event: prepared.event,
            frame: prepared.frame,
        }],
    )
    .await
}

/// Connections reached, and whether some node of the cluster did not answer in time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counted {
    pub sent: usize,
    pub partial: bool,
}

impl Counted {
    pub fn to_json(self) -> Value {
        counted_json("sent", self.sent, self.partial)
    }
}

/// `{"<key>": count}`, plus `"partial": true` when some node did not answer in time.
fn counted_json(key: &str, count: usize, partial: bool) -> Value {
    let mut body = serde_json::Map::new();
    body.insert(key.to_owned(), json!(count));
    if partial {
        body.insert("partial".to_owned(), json!(true));
    }
    Value::Object(body)
}

/// Delivers one request's pushes, each one frame to several users, all or none on this
/// node (in cluster mode the other nodes at the same time), and adds up the counts.
pub(super) async fn deliver(
    ctx: &RequestContext,
    pushes: Vec<MultiPush>,
) -> Result<Counted, ApiError> {
    let shared = &ctx.shared;
    let delivery = shared.deliver_many(pushes, Instant::now()).await?;
    Ok(Counted {
        sent: delivery.sent,
        partial: delivery.partial,
    })
}

/// Up to `--max-batch` pushes, one result each. Every item is handed to its shards (and
/// peers) before any count is awaited, so a batch costs one round of wake-ups, not one per
/// item.
async fn batch(ctx: &RequestContext, body: &[u8]) -> Result<Value, ApiError> {
    let batch: BatchBody = parse(body)?;
    let max = ctx.shared.config.max_batch;
    if batch.pushes.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("at most {max} pushes per batch"),
        ));
    }
    let items = batch
        .pushes
        .into_iter()
        .enumerate()
        .map(|(at, item)| async move {
            // Every message says which item it is about (serde's positions are inside it).
            if !is_object(item.get().as_bytes()) {
                return Err(ApiError::bad_request("expected a push object").at_item(at));
            }
            let push = serde_json::from_str::<PushBody<'_>>(item.get())
                .map_err(|e| ApiError::bad_request(e.to_string()).at_item(at))?;
            push_one(ctx, push).await.map_err(|e| e.at_item(at))
        });
    let metrics = &ctx.shared.metrics;
    let results = futures_util::future::join_all(items)
        .await
        .into_iter()
        .map(|outcome| match outcome {
            Ok(counted) => {
                metrics.batch_item(PushResult::Ok);
                counted.to_json()
            }
            Err(error) => {
                metrics.batch_item(error.result());
                json!({ "error": error.code, "message": error.message })
            }
        })
        .collect::<Vec<_>>();
    Ok(json!({ "results": results }))
}
