//! Sending one request: the [`WebhookTransport`] trait and the default
//! [`HttpTransport`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};

/// The most bytes of a response body read (then dropped): receivers should
/// answer with an empty body.
pub const MAX_RESPONSE_BODY: usize = 16 * 1024;

/// Why a request got no response: the receiver is unreachable, the
/// connection broke, TLS failed. Its message includes the immediate cause;
/// `source()` continues below it, so a chain prints each cause once.
///
/// ```
/// let err = keyward::webhooks::TransportError::new("connection refused");
/// assert_eq!(err.to_string(), "webhook request failed: connection refused");
/// ```
#[derive(Debug, Clone)]
pub struct TransportError(Arc<dyn std::error::Error + Send + Sync>);

impl TransportError {
    /// A transport error from any error or message.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        TransportError(Arc::from(err.into()))
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "webhook request failed: {}", self.0)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Sends one webhook request and returns the response's status and
/// headers (the body is not needed). [`HttpTransport`] is the default;
/// supply your own for a proxy, custom roots or tests.
///
/// A transport must not follow redirects (a redirect would carry a signed
/// request to another URL). It need not bound its time: the
/// [`Deliverer`](super::Deliverer) applies the policy's attempt timeout
/// around [`send`](Self::send).
///
/// ```
/// use keyward::webhooks::{TransportError, WebhookTransport};
///
/// /// Answers every request with 503 and `Retry-After: 60`.
/// struct Busy;
///
/// #[keyward::async_trait]
/// impl WebhookTransport for Busy {
///     async fn send(
///         &self,
///         _request: http::Request<bytes::Bytes>,
///     ) -> Result<http::Response<()>, TransportError> {
///         http::Response::builder()
///             .status(503)
///             .header("retry-after", "60")
///             .body(())
///             .map_err(TransportError::new)
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait WebhookTransport: Send + Sync + 'static {
    /// Sends `request`; any status is `Ok`.
    async fn send(&self, request: Request<Bytes>) -> Result<Response<()>, TransportError>;
}

/// The default [`WebhookTransport`]: reqwest over rustls (ring provider,
/// the Mozilla roots of `webpki-roots`), redirects never followed, a 5 s
/// connect timeout, at most [`MAX_RESPONSE_BODY`] bytes of a response read
/// and dropped. It uses the proxy of the `HTTPS_PROXY` / `HTTP_PROXY` /
/// `NO_PROXY` environment variables: point them at an egress proxy that
/// refuses internal addresses (see the advice on SSRF of
/// [`Deliverer`](super::Deliverer)).
///
/// ```
/// let transport = keyward::webhooks::HttpTransport::new()?;
/// # let _ = transport;
/// # Ok::<(), keyward::webhooks::TransportError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A transport with its own connection pool.
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built (no TLS configuration).
    pub fn new() -> Result<Self, TransportError> {
        let client = crate::net::client(Duration::from_secs(5)).map_err(TransportError::new)?;
        Ok(HttpTransport { client })
    }
}

#[async_trait::async_trait]
impl WebhookTransport for HttpTransport {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<()>, TransportError> {
        // reqwest's errors name the whole URL, whose path or query may be
        // the endpoint's own secret (Slack-style URLs): dropped, as every
        // log line names the origin only.
        let request = reqwest::Request::try_from(request)
            .map_err(|err| TransportError::new(err.without_url()))?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|err| TransportError::new(err.without_url()))?;
        let mut out = Response::new(());
        *out.status_mut() = response.status();
        *out.headers_mut() = response.headers().clone();
        // Read (a little of) the body so the connection can be reused; the
        // status is the answer, so a body that fails to arrive is ignored.
        let _ = crate::net::read_limited(response, MAX_RESPONSE_BODY).await;
        Ok(out)
    }
}
