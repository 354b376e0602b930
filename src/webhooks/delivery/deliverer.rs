//! Delivering one message to one endpoint: attempts per the policy, and
//! the report.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::StatusCode;
use time::OffsetDateTime;

use super::policy::retry_after;
use super::{
    DeliveryPolicy, Endpoint, HttpTransport, TransportError, WebhookMessage, WebhookTransport,
};
use crate::clock::{Clock, SystemClock};
use crate::webhooks::MessageId;

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub enum DeliveryOutcome {
    /// An attempt got a `2xx`.
    Delivered,
    /// The endpoint answered `410 Gone`: it is now disabled, and no
    /// further attempt was made.
    Gone,
    /// The endpoint was disabled (before the delivery, or by another one
    /// while it waited to retry): no further attempt was made.
    EndpointDisabled,
    /// Every attempt of the schedule failed.
    GaveUp,
}

impl DeliveryOutcome {
    /// A stable name: `delivered`, `gone`, `endpoint_disabled`, `gave_up`.
    ///
    /// ```
    /// assert_eq!(keyward::webhooks::DeliveryOutcome::GaveUp.name(), "gave_up");
    /// ```
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Gone => "gone",
            DeliveryOutcome::EndpointDisabled => "endpoint_disabled",
            DeliveryOutcome::GaveUp => "gave_up",
        }
    }
}

/// Why an attempt got no status.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptError {
    /// No response within the policy's attempt timeout.
    #[error("no response within {0:?}")]
    TimedOut(Duration),
    /// The transport failed (unreachable, connection reset, TLS).
    #[error("webhook transport failed")]
    Transport(#[source] TransportError),
}

/// One attempt: when it went out, and the status or error it got.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Attempt {
    at: OffsetDateTime,
    result: Result<StatusCode, AttemptError>,
    retry_after: Option<Duration>,
}

impl Attempt {
    /// When it went out (the signed `webhook-timestamp`), on the
    /// deliverer's clock.
    #[must_use]
    pub fn at(&self) -> OffsetDateTime {
        self.at
    }

    /// The response's status, if one came.
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        self.result.as_ref().ok().copied()
    }

    /// Why no status came.
    #[must_use]
    pub fn error(&self) -> Option<&AttemptError> {
        self.result.as_ref().err()
    }

    /// The wait the response's `Retry-After` asked for (before the
    /// policy's bound), if it had a valid one.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// What became of a delivery: its outcome and every attempt made.
///
/// ```
/// # use keyward::webhooks::*;
/// # struct Gone;
/// # #[keyward::async_trait]
/// # impl WebhookTransport for Gone {
/// #     async fn send(&self, _: http::Request<bytes::Bytes>) -> Result<http::Response<()>, TransportError> {
/// #         let mut response = http::Response::new(());
/// #         *response.status_mut() = http::StatusCode::GONE;
/// #         Ok(response)
/// #     }
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let endpoint = Endpoint::new("https://hooks.example.com", Signer::new(WebhookSecret::generate()))?;
/// let message = WebhookMessage::new(MessageId::generate(), "key.issued", "{}")?;
/// // A receiver that answers 410 Gone:
/// let report = Deliverer::new(Gone).deliver(&endpoint, &message).await;
/// assert_eq!(report.outcome(), DeliveryOutcome::Gone);
/// assert_eq!(report.attempts()[0].status(), Some(http::StatusCode::GONE));
/// assert!(!endpoint.is_enabled());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
#[must_use]
pub struct DeliveryReport {
    message_id: MessageId,
    outcome: DeliveryOutcome,
    attempts: Vec<Attempt>,
}

impl DeliveryReport {
    /// How it ended.
    pub fn outcome(&self) -> DeliveryOutcome {
        self.outcome
    }

    /// Whether an attempt got a `2xx`.
    #[must_use]
    pub fn is_delivered(&self) -> bool {
        self.outcome == DeliveryOutcome::Delivered
    }

    /// Every attempt made, in order (none when the endpoint was disabled
    /// from the start).
    #[must_use]
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// The message delivered.
    #[must_use]
    pub fn message_id(&self) -> &MessageId {
        &self.message_id
    }
}

/// Delivers messages to endpoints through a [`WebhookTransport`], per a
/// [`DeliveryPolicy`]. Cheap to clone.
///
/// Waits use `tokio::time::sleep`, so [`deliver`](Self::deliver) needs a
/// tokio runtime with its timer; each attempt is bounded with
/// `tokio::time::timeout`. Timestamps come from the [`Clock`] (the system
/// clock by default).
///
/// # Outcomes
///
/// | answer | what happens |
/// |---|---|
/// | `2xx` | delivered |
/// | `410 Gone` | the endpoint is disabled; no further attempt |
/// | `3xx` | a failure (redirects are never followed), retried |
/// | any other status, a timeout, a connection error | retried per the schedule |
/// | `Retry-After` (seconds or HTTP date) | the next attempt waits at least that long (bounded) |
///
/// Every attempt is signed again with its own timestamp; the message id
/// stays the same, so receivers can drop duplicates.
///
/// # Server-side request forgery
///
/// Endpoint URLs usually come from your customers, and a delivery is a
/// request from inside your network to a URL they chose. [`Endpoint::new`]
/// refuses plain `http` (except to loopback) and URLs with credentials, but
/// it does not resolve names: a public name can point at `10.0.0.1` or at a
/// cloud metadata service. Run deliveries through an egress proxy that
/// refuses internal addresses (such as Stripe's smokescreen) and from a
/// subnet that can not reach internal services. [`HttpTransport`] uses the
/// proxy named by the `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` environment
/// variables; a custom [`WebhookTransport`] can route otherwise.
///
/// # Example
///
/// ```
/// use keyward::webhooks::{
///     Deliverer, DeliveryOutcome, Endpoint, MessageId, Signer, TransportError, WebhookMessage,
///     WebhookSecret, WebhookTransport,
/// };
///
/// /// A receiver that accepts everything (use `HttpTransport` for real).
/// struct Accept;
///
/// #[keyward::async_trait]
/// impl WebhookTransport for Accept {
///     async fn send(
///         &self,
///         request: http::Request<bytes::Bytes>,
///     ) -> Result<http::Response<()>, TransportError> {
///         assert!(request.headers().contains_key("webhook-signature"));
///         Ok(http::Response::new(()))
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let endpoint = Endpoint::new(
///     "https://hooks.example.com/keyward",
///     Signer::new(WebhookSecret::generate()),
/// )?;
/// let message = WebhookMessage::envelope(
///     MessageId::generate(),
///     "key.revoked",
///     time::OffsetDateTime::now_utc(),
///     &serde_json::json!({ "key_id": "key_1" }),
/// )?;
/// let report = Deliverer::new(Accept).deliver(&endpoint, &message).await;
/// assert_eq!(report.outcome(), DeliveryOutcome::Delivered);
/// assert_eq!(report.attempts().len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Deliverer {
    transport: Arc<dyn WebhookTransport>,
    policy: Arc<DeliveryPolicy>,
    clock: Arc<dyn Clock>,
}

impl Deliverer {
    /// A deliverer over `transport` with the default policy and the system
    /// clock.
    #[must_use]
    pub fn new(transport: impl WebhookTransport) -> Self {
        Deliverer {
            transport: Arc::new(transport),
            policy: Arc::new(DeliveryPolicy::default()),
            clock: Arc::new(SystemClock),
        }
    }

    /// A deliverer over [`HttpTransport`].
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built (no TLS configuration).
    ///
    /// ```
    /// let deliverer = keyward::webhooks::Deliverer::http()?;
    /// # let _ = deliverer;
    /// # Ok::<(), keyward::webhooks::TransportError>(())
    /// ```
    pub fn http() -> Result<Self, TransportError> {
        Ok(Self::new(HttpTransport::new()?))
    }

    /// Uses `policy` (the default is the specification's).
    ///
    /// ```
    /// use keyward::webhooks::{Deliverer, DeliveryPolicy};
    ///
    /// let deliverer = Deliverer::http()?.policy(DeliveryPolicy::default());
    /// # let _ = deliverer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn policy(mut self, policy: DeliveryPolicy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Takes attempts' timestamps from `clock`.
    ///
    /// ```
    /// use keyward::webhooks::Deliverer;
    ///
    /// let deliverer = Deliverer::http()?.clock(keyward::SystemClock);
    /// # let _ = deliverer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The policy in use.
    #[must_use]
    pub fn get_policy(&self) -> &DeliveryPolicy {
        &self.policy
    }

    /// Delivers `message` to `endpoint`: attempts per the schedule until
    /// one gets a `2xx` (delivered), one gets `410 Gone` (the endpoint is
    /// disabled), the endpoint is found disabled before an attempt, or the
    /// schedule ends (gave up). Each attempt is signed for its own time; a
    /// `Retry-After` makes the next attempt wait at least that long (up to
    /// the policy's bound). Redirects are failures, never followed.
    ///
    /// This can take days with the standard schedule: run it in a task of
    /// its own (as [`WebhookSink`](super::WebhookSink) does).
    pub async fn deliver(&self, endpoint: &Endpoint, message: &WebhookMessage) -> DeliveryReport {
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut asked = Duration::ZERO;
        let mut index = 0;
        let outcome = loop {
            let Some(delay) = self.policy.delay(index) else {
                break DeliveryOutcome::GaveUp;
            };
            index += 1;
            let wait = delay.max(asked.min(self.policy.get_max_retry_after()));
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            if !endpoint.is_enabled() {
                break DeliveryOutcome::EndpointDisabled;
            }
            let attempt = self.attempt(endpoint, message).await;
            asked = attempt.retry_after.unwrap_or(Duration::ZERO);
            let status = attempt.status();
            attempts.push(attempt);
            match status {
                Some(status) if status.is_success() => break DeliveryOutcome::Delivered,
                Some(StatusCode::GONE) => {
                    endpoint.disable();
                    break DeliveryOutcome::Gone;
                }
                _ => {}
            }
        };
        DeliveryReport {
            message_id: message.id().clone(),
            outcome,
            attempts,
        }
    }

    /// One attempt, signed for now.
    async fn attempt(&self, endpoint: &Endpoint, message: &WebhookMessage) -> Attempt {
        let at = self.clock.now();
        let request = message.request(endpoint, at);
        let timeout = self.policy.get_attempt_timeout();
        let (result, retry_after) =
            match tokio::time::timeout(timeout, self.transport.send(request)).await {
                Err(_) => (Err(AttemptError::TimedOut(timeout)), None),
                Ok(Err(err)) => (Err(AttemptError::Transport(err)), None),
                Ok(Ok(response)) => {
                    let asked = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|value| retry_after(value, at));
                    (Ok(response.status()), asked)
                }
            };
        tracing::debug!(
            target: "keyward::webhooks",
            message_id = %message.id(),
            endpoint = %endpoint.origin(),
            status = result.as_ref().ok().map(StatusCode::as_u16),
            error = result.as_ref().err().map(|e| e as &dyn std::error::Error),
            "webhook attempt"
        );
        Attempt {
            at,
            result,
            retry_after,
        }
    }
}

impl fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deliverer")
            .field("policy", &self.policy)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Logs a delivery's final outcome at target `keyward::webhooks`: ids,
/// event type, the endpoint's origin, the attempts; never the payload, the
/// URL's path or query, or a secret.
pub(super) fn log_report(report: &DeliveryReport, endpoint: &Endpoint, event_type: &str) {
    let attempts = report.attempts.len();
    let last = report.attempts.last();
    let status = last.and_then(Attempt::status).map(|s| s.as_u16());
    let error = last
        .and_then(Attempt::error)
        .map(|e| e as &dyn std::error::Error);
    let (id, origin, outcome) = (
        report.message_id.as_str(),
        endpoint.origin(),
        report.outcome.name(),
    );
    match report.outcome {
        DeliveryOutcome::Delivered => {
            tracing::info!(target: "keyward::webhooks", message_id = id, event = event_type, endpoint = origin, outcome, attempts, status, "webhook delivered");
        }
        DeliveryOutcome::Gone => {
            tracing::warn!(target: "keyward::webhooks", message_id = id, event = event_type, endpoint = origin, outcome, attempts, status, "webhook endpoint answered 410 Gone: disabled");
        }
        DeliveryOutcome::EndpointDisabled => {
            tracing::warn!(target: "keyward::webhooks", message_id = id, event = event_type, endpoint = origin, outcome, attempts, "webhook not delivered: endpoint disabled");
        }
        DeliveryOutcome::GaveUp => {
            tracing::error!(target: "keyward::webhooks", message_id = id, event = event_type, endpoint = origin, outcome, attempts, status, error, "webhook delivery gave up");
        }
    }
}
