//! [`GithubAlerts`]: the tower service that receives GitHub's alerts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body::Body;
use tower::Service;

use super::alert::{self, Feedback, Label};
use super::keys::{self, GithubKeyFetcher, HttpKeyFetcher, KeyCache, Lookup};
use super::{AlertError, KEY_ID_HEADER, SIGNATURE_HEADER};
use crate::error::ConfigError;
use crate::http::body::{self, BodyError};
use crate::keyring::{Keyring, LeakReport};

/// The default body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The default bound on the tokens of one alert.
pub const DEFAULT_MAX_TOKENS: usize = 1000;
/// Longest signature header accepted (a P-256 DER signature is at most 72
/// bytes, 96 in base64).
const MAX_SIGNATURE_LEN: usize = 256;

/// Configures [`GithubAlerts`]; made by [`GithubAlerts::builder`].
///
/// ```
/// use std::time::Duration;
/// use keyward::leaks::{GithubAlerts, HttpKeyFetcher};
/// use keyward::{KeyKind, Keyring, MemoryStore, ScopeCatalog};
///
/// let keyring = Keyring::builder()
///     .store(MemoryStore::new())
///     .kind(KeyKind::new("acme_pk", ScopeCatalog::builder().build()?)?)
///     .build()?;
/// let alerts = GithubAlerts::builder(keyring)
///     .fetcher(HttpKeyFetcher::new()?.github_token("github_pat_…"))
///     .body_limit(512 * 1024)
///     .max_tokens(500)
///     .refetch_interval(Duration::from_secs(300))
///     .fetch_timeout(Duration::from_secs(3))
///     .build()?;
/// # let _ = alerts;
/// assert!(GithubAlerts::builder(keyward::Keyring::builder()
///     .store(MemoryStore::new())
///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
///     .build()?)
///     .max_tokens(0)
///     .build()
///     .is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct GithubAlertsBuilder {
    keyring: Keyring,
    fetcher: Option<Arc<dyn GithubKeyFetcher>>,
    body_limit: usize,
    max_tokens: usize,
    refetch_interval: Duration,
    fetch_timeout: Duration,
}

impl fmt::Debug for GithubAlertsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubAlertsBuilder")
            .field("keyring", &self.keyring)
            .field("custom_fetcher", &self.fetcher.is_some())
            .field("body_limit", &self.body_limit)
            .field("max_tokens", &self.max_tokens)
            .field("refetch_interval", &self.refetch_interval)
            .field("fetch_timeout", &self.fetch_timeout)
            .finish()
    }
}

impl GithubAlertsBuilder {
    /// Where GitHub's keys come from; [`HttpKeyFetcher`] by default.
    pub fn fetcher(mut self, fetcher: impl GithubKeyFetcher) -> Self {
        self.fetcher = Some(Arc::new(fetcher));
        self
    }

    /// The longest body read (413 `alert_too_large` beyond it); 1 MiB by
    /// default.
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// The most tokens one alert may report (413 `too_many_tokens` beyond
    /// it); 1000 by default.
    pub fn max_tokens(mut self, max: usize) -> Self {
        self.max_tokens = max;
        self
    }

    /// The least time between two fetches of GitHub's keys caused by an
    /// unknown key identifier (or a failed fetch); 60 s by default, at
    /// least 10 s (anyone can send an unknown identifier, and GitHub allows
    /// 60 unauthenticated API calls an hour: set
    /// [`HttpKeyFetcher::github_token`] in production).
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// The longest a key fetch may take (a slower one counts as failed:
    /// 503); 5 s by default, well inside GitHub's 10 s wait for an answer;
    /// from 100 ms to 10 s.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidLeakConfig`] for a zero body limit or token
    /// bound, a refetch interval under 10 s, a fetch timeout outside
    /// 100 ms to 10 s, or when the default fetcher's HTTP client can not be
    /// built.
    pub fn build(self) -> Result<GithubAlerts, ConfigError> {
        if self.body_limit == 0 {
            return Err(ConfigError::InvalidLeakConfig(
                "the body limit must not be zero",
            ));
        }
        if self.max_tokens == 0 {
            return Err(ConfigError::InvalidLeakConfig(
                "the token bound must not be zero",
            ));
        }
        if self.refetch_interval < Duration::from_secs(10) {
            return Err(ConfigError::InvalidLeakConfig(
                "the refetch interval must be at least 10 s",
            ));
        }
        if self.fetch_timeout < Duration::from_millis(100)
            || self.fetch_timeout > Duration::from_secs(10)
        {
            return Err(ConfigError::InvalidLeakConfig(
                "the fetch timeout must be between 100 ms and 10 s",
            ));
        }
        let fetcher = match self.fetcher {
            Some(fetcher) => fetcher,
            None => Arc::new(HttpKeyFetcher::new().map_err(|err| {
                tracing::error!(target: "keyward::leaks", error = &err as &dyn std::error::Error, "could not build the key fetcher");
                ConfigError::InvalidLeakConfig("the key fetcher's HTTP client could not be built")
            })?),
        };
        Ok(GithubAlerts {
            inner: Arc::new(Inner {
                keyring: self.keyring,
                keys: KeyCache::new(fetcher, self.refetch_interval, self.fetch_timeout),
                body_limit: self.body_limit,
                max_tokens: self.max_tokens,
            }),
        })
    }
}

/// Receives GitHub's secret-scanning alerts: a tower [`Service`] (mount it
/// with axum's `route_service`) that checks the alert's signature against
/// GitHub's published keys before reading it, reports each token to the
/// keyring ([`Keyring::report_leak`]: a live key is revoked at once), and
/// answers GitHub's feedback array (`token_hash`, `token_type`, `label`).
/// Refusals are JSON errors ([`AlertError`]). Cheap to clone; clones share
/// the key cache.
///
/// ```
/// use axum::Router;
/// use keyward::leaks::GithubAlerts;
/// use keyward::{KeyKind, Keyring, MemoryStore, ScopeCatalog};
///
/// let keyring = Keyring::builder()
///     .store(MemoryStore::new())
///     .kind(KeyKind::new("acme_pk", ScopeCatalog::builder().build()?)?)
///     .build()?;
/// let alerts = GithubAlerts::builder(keyring).build()?;
/// let app: Router = Router::new().route_service("/github/secret-scanning", alerts);
/// # let _ = app;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct GithubAlerts {
    inner: Arc<Inner>,
}

struct Inner {
    keyring: Keyring,
    keys: KeyCache,
    body_limit: usize,
    max_tokens: usize,
}

impl fmt::Debug for GithubAlerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubAlerts")
            .field("keyring", &self.inner.keyring)
            .field("keys", &self.inner.keys)
            .field("body_limit", &self.inner.body_limit)
            .field("max_tokens", &self.inner.max_tokens)
            .finish()
    }
}

impl GithubAlerts {
    /// A builder: GitHub's keys over HTTPS, bodies up to 1 MiB, at most
    /// 1000 tokens an alert, keys refetched at most once a minute.
    pub fn builder(keyring: Keyring) -> GithubAlertsBuilder {
        GithubAlertsBuilder {
            keyring,
            fetcher: None,
            body_limit: DEFAULT_BODY_LIMIT,
            max_tokens: DEFAULT_MAX_TOKENS,
            refetch_interval: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

impl Inner {
    async fn handle<B>(&self, req: Request<B>) -> Result<Response<String>, AlertError>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.method() != Method::POST {
            return Err(AlertError::MethodNotAllowed);
        }
        let (parts, body) = req.into_parts();
        let key_id = key_id(&parts.headers)?;
        let signature = signature(&parts.headers)?;
        let bytes = match body::read(&parts.headers, body, self.body_limit).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge) => return Err(AlertError::BodyTooLarge),
            Err(BodyError::Failed) => return Err(AlertError::BodyUnreadable),
        };
        let key = match self.keys.lookup(key_id).await {
            Lookup::Found(key) => key,
            Lookup::Unknown => return Err(AlertError::UnknownKey),
            Lookup::Unavailable => return Err(AlertError::KeysUnavailable),
        };
        // Nothing of the body is read before its signature verifies.
        if !keys::verify(&key, &bytes, &signature) {
            return Err(AlertError::BadSignature);
        }
        let matches = alert::parse(&bytes, self.max_tokens)?;
        let mut labels: HashMap<&str, Label> = HashMap::new();
        let mut feedback = Vec::with_capacity(matches.len());
        for found in &matches {
            let label = match labels.get(found.token.as_str()) {
                Some(label) => *label,
                None => {
                    let mut report = LeakReport::new("github");
                    if let Some(url) = &found.url {
                        report = report.url(url.as_str());
                    }
                    let outcome = self
                        .keyring
                        .report_leak(&found.token, report)
                        .await
                        .map_err(AlertError::Store)?;
                    let label = if outcome.is_ours() {
                        Label::TruePositive
                    } else {
                        Label::FalsePositive
                    };
                    labels.insert(&found.token, label);
                    label
                }
            };
            feedback.push(Feedback {
                token_hash: alert::token_hash(&found.token),
                token_type: &found.token_type,
                label,
            });
        }
        let ours = labels
            .values()
            .filter(|l| **l == Label::TruePositive)
            .count();
        tracing::info!(target: "keyward::leaks", key_id, reported = matches.len(), ours, "GitHub secret-scanning alert handled");
        let body = serde_json::to_string(&feedback).map_err(|_| AlertError::InvalidAlert)?;
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    }
}

/// The one value of header `name`, as text.
fn one_header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, AlertError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(AlertError::MissingHeader(name))?;
    if values.next().is_some() {
        return Err(AlertError::DuplicateHeader(name));
    }
    value
        .to_str()
        .map_err(|_| AlertError::MalformedHeader(name))
}

/// The key identifier: 1–128 ASCII letters, digits, `-` or `_`.
fn key_id(headers: &HeaderMap) -> Result<&str, AlertError> {
    let id = one_header(headers, KEY_ID_HEADER)?;
    if keys::valid_key_id(id) {
        Ok(id)
    } else {
        Err(AlertError::MalformedHeader(KEY_ID_HEADER))
    }
}

/// The signature's DER bytes, from standard padded base64.
fn signature(headers: &HeaderMap) -> Result<Vec<u8>, AlertError> {
    use base64::Engine as _;
    let text = one_header(headers, SIGNATURE_HEADER)?;
    if text.is_empty() || text.len() > MAX_SIGNATURE_LEN {
        return Err(AlertError::MalformedHeader(SIGNATURE_HEADER));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| AlertError::MalformedHeader(SIGNATURE_HEADER))
}

/// The response future of [`GithubAlerts`].
pub struct ResponseFuture(
    Pin<Box<dyn Future<Output = Result<Response<String>, Infallible>> + Send>>,
);

impl Future for ResponseFuture {
    type Output = Result<Response<String>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<B> Service<Request<B>> for GithubAlerts
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<String>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        ResponseFuture(Box::pin(async move {
            Ok(inner.handle(req).await.unwrap_or_else(|err| {
                tracing::debug!(target: "keyward::leaks", code = err.code(), "GitHub secret-scanning alert refused");
                err.to_response()
            }))
        }))
    }
}
