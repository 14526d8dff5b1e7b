//! Asking a backend: the token is POSTed as `{"token": "..."}` to `--auth-http-url`; a 200
//! with `{"userId": "..."}` accepts it, 401/403/404 refuse it, anything else (other
//! statuses, a 200 without a usable userId, errors, the `--auth-http-timeout`) means the
//! backend is unavailable and the registration is refused as such, without blocking any
//! other connection and without telling the client its token is bad (a broken backend or a
//! proxy answering 200 must not make clients drop valid tokens); logged once per 10 s. At most
//! `--auth-http-concurrency` requests are in flight; answers are cached briefly (accepted
//! tokens for `--auth-http-cache-ttl`, refused ones for `--auth-http-negative-ttl`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

use super::{AuthError, AuthFuture, Authenticator, Identity, RejectReason};
use crate::config::{Config, ConfigError};
use crate::log_throttle::LogThrottle;

/// Why the backend gave no answer; logged (throttled), never shown to clients.
#[derive(Debug, thiserror::Error)]
enum Trouble {
    #[error("request failed: {0}")]
    Request(String),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("answered 200 without a non-empty string userId")]
    BadAnswer,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// How often an unavailable backend is logged (each refused registration is counted).
const UNAVAILABLE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Cached answers kept at most; past it the cache is cleared (a simple, bounded policy).
const CACHE_CAPACITY: usize = 100_000;

/// Bytes of tokens and userIDs the cache holds at most, also cleared past it: a token may be
/// as long as a client message (`--max-message-size`, 64 KiB), so the entry count alone would
/// let clients sending long, refused tokens make the cache hold gigabytes.
const CACHE_BYTES: usize = 32 << 20;

/// Answers by token, and the bytes their strings hold.
#[derive(Default)]
struct Cache {
    answers: HashMap<String, (Instant, Answer)>,
    bytes: usize,
}

/// What an entry counts against [`CACHE_BYTES`]: its strings and a fixed share for the
/// map's own slot.
fn entry_bytes(token: &str, answer: &Answer) -> usize {
    token.len() + answer.as_ref().map_or(0, String::len) + 64
}

/// Largest backend reply read.
const MAX_REPLY: usize = 64 * 1024;

type Answer = Result<String, RejectReason>;

pub struct HttpAuthenticator {
    url: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    permits: Semaphore,
    positive_ttl: Duration,
    negative_ttl: Duration,
    cache: Mutex<Cache>,
    unavailable_logged: LogThrottle,
}

impl std::fmt::Debug for HttpAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuthenticator")
            .field("url", &self.url)
            .finish()
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    user_id: String,
}

impl HttpAuthenticator {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let url = config
            .auth_http_url
            .as_deref()
            .ok_or(ConfigError::Missing("--auth-http-url (with --auth http)"))?;
        let url: Uri =
            url.parse()
                .map_err(|e: hyper::http::uri::InvalidUri| ConfigError::File {
                    path: url.to_owned(),
                    reason: e.to_string(),
                })?;
        if url.scheme_str() != Some("http") {
            return Err(ConfigError::File {
                path: url.to_string(),
                reason: "only http:// backends are supported (keep them on a private network)"
                    .into(),
            });
        }
        if config.auth_http_concurrency == 0 {
            return Err(ConfigError::Zero("--auth-http-concurrency"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.auth_http_timeout));
        Ok(Self {
            url,
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout: config.auth_http_timeout,
            permits: Semaphore::new(config.auth_http_concurrency),
            positive_ttl: config.auth_http_cache_ttl,
            negative_ttl: config.auth_http_negative_ttl,
            cache: Mutex::new(Cache::default()),
            unavailable_logged: LogThrottle::new(UNAVAILABLE_LOG_INTERVAL),
        })
    }

    fn cached(&self, token: &str) -> Option<Answer> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .answers
            .get(token)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, answer)| answer.clone())
    }

    fn remember(&self, token: &str, answer: &Answer) {
        let ttl = if answer.is_ok() {
            self.positive_ttl
        } else {
            self.negative_ttl
        };
        if ttl.is_zero() {
            return;
        }
        let bytes = entry_bytes(token, answer);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.answers.len() >= CACHE_CAPACITY || cache.bytes + bytes > CACHE_BYTES {
            cache.answers.clear();
            cache.bytes = 0;
        }
        let replaced = cache
            .answers
            .insert(token.to_owned(), (Instant::now() + ttl, answer.clone()));
        cache.bytes += bytes;
        if let Some((_, old)) = replaced {
            cache.bytes -= entry_bytes(token, &old);
        }
    }

    async fn ask(&self, token: &str) -> Result<Answer, Trouble> {
        let body = serde_json::json!({ "token": token }).to_string();
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Trouble::Request(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| Trouble::Request(e.to_string()))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                return Ok(Err(RejectReason::Refused))
            }
            status => return Err(Trouble::Status(status)),
        }
        let bytes = Limited::new(response.into_body(), MAX_REPLY)
            .collect()
            .await
            .map_err(|e| Trouble::Request(e.to_string()))?
            .to_bytes();
        match serde_json::from_slice::<Reply>(&bytes) {
            Ok(reply) if !reply.user_id.is_empty() => Ok(Ok(reply.user_id)),
            _ => Err(Trouble::BadAnswer),
        }
    }

    /// Asks the backend within the timeout and the concurrency bound.
    async fn ask_bounded(&self, token: &str) -> Result<Answer, Trouble> {
        tokio::time::timeout(self.timeout, async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|e| Trouble::Request(e.to_string()))?;
            self.ask(token).await
        })
        .await
        .map_err(|_| Trouble::Timeout(self.timeout))?
    }
}

impl Authenticator for HttpAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(async move {
            let answer = match self.cached(token) {
                Some(answer) => answer,
                None => match self.ask_bounded(token).await {
                    Ok(asked) => {
                        self.remember(token, &asked);
                        asked
                    }
                    Err(trouble) => {
                        if self.unavailable_logged.ready() {
                            tracing::warn!(
                                %trouble,
                                "token backend unavailable: registrations are answered \
                                 auth_unavailable (counted in pushgate_registrations_total)"
                            );
                        }
                        return Err(AuthError::Unavailable);
                    }
                },
            };
            answer.map(Identity::forever).map_err(AuthError::Rejected)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn authenticator() -> HttpAuthenticator {
        let config = Config::parse_from([
            "pushgate",
            "--auth",
            "http",
            "--auth-http-url",
            "http://127.0.0.1:9/auth",
        ]);
        HttpAuthenticator::from_config(&config).unwrap()
    }

    #[test]
    fn long_refused_tokens_cannot_grow_the_cache_past_its_byte_bound() {
        let auth = authenticator();
        // 1,000 distinct 64 KiB tokens (the longest a client message may be): 64 MiB of
        // keys if only the entry count bounded the cache.
        for i in 0..1_000 {
            let token = format!("{i:08}{}", "t".repeat(64 * 1024 - 8));
            auth.remember(&token, &Err(RejectReason::Refused));
            let cache = auth.cache.lock().unwrap();
            assert!(
                cache.bytes <= CACHE_BYTES,
                "{} bytes after {i}",
                cache.bytes
            );
            let held: usize = cache
                .answers
                .iter()
                .map(|(token, (_, answer))| entry_bytes(token, answer))
                .sum();
            assert_eq!(held, cache.bytes, "the count follows the entries");
        }
        // The newest answer is still there: clearing makes room, it does not stop caching.
        let last = format!("{:08}{}", 999, "t".repeat(64 * 1024 - 8));
        assert!(auth.cached(&last).is_some());
        // Refreshing an entry does not count it twice.
        auth.remember(&last, &Ok("u".into()));
        let cache = auth.cache.lock().unwrap();
        let held: usize = cache
            .answers
            .iter()
            .map(|(token, (_, answer))| entry_bytes(token, answer))
            .sum();
        assert_eq!(held, cache.bytes);
    }
}
