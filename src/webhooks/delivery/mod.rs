//! Delivery of signed webhooks, following the Standard Webhooks
//! specification's advice on retries, status codes, timeouts and SSRF.
//!
//! * [`WebhookMessage`]: one message (its [`MessageId`](super::MessageId),
//!   event type and JSON payload), written in the specification's envelope
//!   `{"type", "timestamp", "data"}` by [`WebhookMessage::envelope`].
//!   [`WebhookMessage::request`] builds the signed `POST` for an attempt.
//! * [`Endpoint`]: where it goes (`https`, or `http` to a loopback host),
//!   the [`Signer`](super::Signer) for it, and whether it is enabled (a
//!   `410 Gone` disables it; clones share the state).
//! * [`DeliveryPolicy`]: the retry schedule (the specification's, with
//!   jitter, by default), the per-attempt timeout (15 to 30 s) and the bound
//!   on `Retry-After`.
//! * [`Deliverer`]: sends a message to an endpoint through a
//!   [`WebhookTransport`] ([`HttpTransport`] by default), retrying per the
//!   policy, and returns a [`DeliveryReport`].
//! * [`WebhookSink`]: a [`LifecycleSink`](crate::LifecycleSink) that turns
//!   key lifecycle events into `key.*` webhooks, delivered in the background.
//!
//! # Outcomes
//!
//! | answer | what happens |
//! |---|---|
//! | `2xx` | delivered |
//! | `410 Gone` | the endpoint is disabled; no further attempt |
//! | `3xx` | a failure (redirects are never followed), retried |
//! | any other status, a timeout, a connection error | retried per the schedule |
//! | `Retry-After` (seconds or HTTP date) | the next attempt waits at least that long (bounded) |
//!
//! Every attempt is signed again with its own timestamp; the message id
//! stays the same, so receivers can drop duplicates.
//!
//! # Server-side request forgery
//!
//! Endpoint URLs usually come from your customers, and a delivery is a
//! request from inside your network to a URL they chose. [`Endpoint::new`]
//! refuses plain `http` (except to loopback) and URLs with credentials, but
//! it does not resolve names: a public name can point at `10.0.0.1` or at a
//! cloud metadata service. Run deliveries through an egress proxy that
//! refuses internal addresses (such as Stripe's smokescreen) and from a
//! subnet that can not reach internal services. [`HttpTransport`] uses the
//! proxy named by the `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` environment
//! variables; a custom [`WebhookTransport`] can route otherwise.
//!
//! # Example
//!
//! ```
//! use keyward::webhooks::{
//!     Deliverer, DeliveryOutcome, Endpoint, MessageId, Signer, TransportError, WebhookMessage,
//!     WebhookSecret, WebhookTransport,
//! };
//!
//! /// A receiver that accepts everything (use `HttpTransport` for real).
//! struct Accept;
//!
//! #[keyward::async_trait]
//! impl WebhookTransport for Accept {
//!     async fn send(
//!         &self,
//!         request: http::Request<bytes::Bytes>,
//!     ) -> Result<http::Response<()>, TransportError> {
//!         assert!(request.headers().contains_key("webhook-signature"));
//!         Ok(http::Response::new(()))
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let endpoint = Endpoint::new(
//!     "https://hooks.example.com/keyward",
//!     Signer::new(WebhookSecret::generate()),
//! )?;
//! let message = WebhookMessage::envelope(
//!     MessageId::generate(),
//!     "key.revoked",
//!     time::OffsetDateTime::now_utc(),
//!     &serde_json::json!({ "key_id": "key_1" }),
//! )?;
//! let report = Deliverer::new(Accept).deliver(&endpoint, &message).await;
//! assert_eq!(report.outcome(), DeliveryOutcome::Delivered);
//! assert_eq!(report.attempts().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod deliverer;
mod endpoint;
mod outgoing;
mod policy;
mod sink;
mod transport;

pub use deliverer::{Attempt, AttemptError, Deliverer, DeliveryOutcome, DeliveryReport};
pub use endpoint::{Endpoint, EndpointError, MAX_URL_LEN};
pub use outgoing::{MessageError, WebhookMessage, MAX_EVENT_TYPE_LEN};
pub use policy::{
    DeliveryPolicy, DeliveryPolicyBuilder, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_JITTER_PERCENT,
    DEFAULT_MAX_RETRY_AFTER, MAX_ATTEMPTS, MAX_ATTEMPT_TIMEOUT, MIN_ATTEMPT_TIMEOUT,
    STANDARD_SCHEDULE,
};
pub use sink::{
    WebhookEndpoints, WebhookSink, WebhookSinkBuilder, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_QUEUE_CAPACITY,
};
pub use transport::{HttpTransport, TransportError, WebhookTransport, MAX_RESPONSE_BODY};
