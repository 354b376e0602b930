//! [`VerifyWebhookLayer`]: verifies inbound webhooks before the handler.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::{Layer, Service};

use super::verify::Verifier;
use super::WebhookError;
use crate::http::body::{self, BodyError};
use crate::http::macros::inner_service_accessors;

/// The default body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Verifies inbound webhooks before the inner service sees them: checks the
/// headers and the timestamp, reads the body (up to a limit, 413 beyond
/// it), verifies it with a [`Verifier`],
/// and hands the request on with the same bytes as its body
/// (`http_body_util::Full<Bytes>`) and the
/// [`VerifiedWebhook`](super::VerifiedWebhook) in its extensions. A refusal
/// is answered here ([`WebhookError::to_response`]). When the inner service
/// answers other than 2xx, the message id is released from the replay
/// guard, so the sender's retry gets through.
///
/// ```
/// use axum::{handler::Handler as _, routing::post, Extension, Router};
/// use keyward::webhooks::{VerifiedWebhook, Verifier, VerifyWebhookLayer, WebhookSecret};
///
/// async fn receive(Extension(hook): Extension<VerifiedWebhook>, body: String) -> &'static str {
///     let _ = (hook.id(), body);
///     "ok"
/// }
///
/// let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// // On the handler: the router's 404 and 405 answers stay as they are.
/// let layer = VerifyWebhookLayer::new(Verifier::standard([secret]).build()?);
/// let app: Router = Router::new().route("/webhooks", post(receive.layer(layer)));
/// # let _ = app;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct VerifyWebhookLayer {
    verifier: Verifier,
    body_limit: usize,
}

impl VerifyWebhookLayer {
    /// A layer verifying with `verifier`, bodies up to 1 MiB.
    pub fn new(verifier: Verifier) -> Self {
        VerifyWebhookLayer {
            verifier,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// The longest body read (413 `webhook_body_too_large` beyond it).
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }
}

impl<S> Layer<S> for VerifyWebhookLayer {
    type Service = VerifyWebhook<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyWebhook {
            inner,
            verifier: self.verifier.clone(),
            body_limit: self.body_limit,
        }
    }
}

/// The service of [`VerifyWebhookLayer`].
#[derive(Clone)]
pub struct VerifyWebhook<S> {
    inner: S,
    verifier: Verifier,
    body_limit: usize,
}

impl<S> VerifyWebhook<S> {
    inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for VerifyWebhook<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyWebhook")
            .field("inner", &self.inner)
            .field("verifier", &self.verifier)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

/// The response future of [`VerifyWebhook`].
pub struct ResponseFuture<T, E>(Pin<Box<dyn Future<Output = Result<T, E>> + Send>>);

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl<T, E> fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyWebhook<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone may not be ready: keep the ready service for this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let limit = self.body_limit;
        ResponseFuture(Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            // No plausible signature: refused before the body is read.
            if let Err(err) = verifier.check_headers(&parts.headers) {
                return Ok(refuse(&err));
            }
            let bytes = match body::read(&parts.headers, body, limit).await {
                Ok(bytes) => bytes,
                Err(BodyError::TooLarge) => return Ok(refuse(&WebhookError::BodyTooLarge)),
                Err(BodyError::Failed) => return Ok(refuse(&WebhookError::BodyUnreadable)),
            };
            let verified = match verifier.verify(&parts.headers, &bytes).await {
                Ok(verified) => verified,
                Err(err) => return Ok(refuse(&err)),
            };
            parts.extensions.insert(verified.clone());
            let result = inner
                .call(Request::from_parts(parts, Full::new(bytes)))
                .await;
            let processed = matches!(&result, Ok(response) if response.status().is_success());
            if !processed {
                if let Err(err) = verifier.release(&verified).await {
                    tracing::warn!(
                        target: "keyward::webhooks",
                        error = %err,
                        "could not release a webhook id after a failed handler"
                    );
                }
            }
            result
        }))
    }
}

fn refuse<B: From<String>>(err: &WebhookError) -> Response<B> {
    tracing::debug!(target: "keyward::webhooks", code = err.code(), "webhook refused");
    err.to_response().map(B::from)
}
