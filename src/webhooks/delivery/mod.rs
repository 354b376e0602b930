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
//! The outcome rules, the SSRF advice and an example are on [`Deliverer`],
//! as this module is private (its items are re-exported by `webhooks`).

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
    DEFAULT_MAX_PER_ENDPOINT, DEFAULT_QUEUE_CAPACITY,
};
pub use transport::{HttpTransport, TransportError, WebhookTransport, MAX_RESPONSE_BODY};
