//! Signed webhooks ([Standard Webhooks](https://www.standardwebhooks.com)),
//! sent and received (feature `webhooks`).
//!
//! * **Keys**: [`WebhookSecret`] (`whsec_`, `v1` HMAC-SHA256) and, with
//!   feature `webhooks-ed25519`, `Ed25519SecretKey` / `Ed25519PublicKey`
//!   (`whsk_` / `whpk_`, `v1a`). Secrets redact themselves and zeroize.
//! * **Signing**: [`Signer`] writes the `webhook-id`, `webhook-timestamp`
//!   and `webhook-signature` headers over `{id}.{timestamp}.{body}`, with
//!   several keys while one rotates.
//! * **Verifying**: [`Verifier`] checks those headers (any one signature of
//!   a trusted key is enough), a timestamp within a tolerance both ways (5
//!   minutes by default, on the crate's injectable [`Clock`](crate::Clock)),
//!   and optionally refuses a message id seen within the tolerance
//!   ([`ReplayGuard`]). It also verifies the two schemes integrators meet
//!   most: Stripe's `Stripe-Signature` and GitHub's `X-Hub-Signature-256`.
//! * **Receiving**: [`VerifyWebhookLayer`] reads the body (up to a limit),
//!   verifies it and hands it on intact, with the [`VerifiedWebhook`] in
//!   the request extensions.
//! * **Sending**: [`Deliverer`] delivers a [`WebhookMessage`] to an
//!   [`Endpoint`] with the specification's retry schedule;
//!   [`WebhookSink`] delivers the keyring's lifecycle events.
//!
//! # Example
//!
//! ```
//! use keyward::webhooks::{MessageId, Signer, Verifier, WebhookSecret};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let secret = WebhookSecret::generate();
//! // The sender:
//! let body = br#"{"type":"key.revoked"}"#;
//! let headers = Signer::new(secret.clone())
//!     .headers(&MessageId::generate(), time::OffsetDateTime::now_utc(), body);
//! // The receiver:
//! let verifier = Verifier::standard([secret]).build()?;
//! let verified = verifier.verify(&headers, body).await?;
//! assert!(verified.id().unwrap().starts_with("msg_"));
//! // One changed byte and it fails.
//! assert!(verifier.verify(&headers, br#"{"type":"key.revokeD"}"#).await.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Refusals
//!
//! | error | status | `error` code |
//! |---|---|---|
//! | [`WebhookError::MissingHeader`] | 400 | `webhook_header_missing` |
//! | [`WebhookError::InvalidHeader`] | 400 | `webhook_header_invalid` |
//! | [`WebhookError::BodyUnreadable`] | 400 | `webhook_body_unreadable` |
//! | [`WebhookError::InvalidSignature`] | 401 | `webhook_signature_invalid` |
//! | [`WebhookError::TimestampOutOfTolerance`] | 401 | `webhook_timestamp_out_of_tolerance` |
//! | [`WebhookError::Replayed`] | 409 | `webhook_replayed` |
//! | [`WebhookError::BodyTooLarge`] | 413 | `webhook_body_too_large` |
//! | [`WebhookError::ReplayUnavailable`] | 503 | `webhook_replay_unavailable` |
//!
//! Bodies are `{"error": code, "message": text}` (JSON, `no-store`), as
//! every keyward refusal.

use http::header::HeaderName;
use http::{Response, StatusCode};

mod delivery;
mod keys;
mod layer;
mod message;
mod replay;
mod verify;

pub use delivery::*;
#[cfg(feature = "webhooks-ed25519")]
pub use keys::{Ed25519PublicKey, Ed25519SecretKey};
pub use keys::{WebhookSecret, MAX_SECRET_LEN, MIN_SECRET_LEN};
pub use layer::{ResponseFuture, VerifyWebhook, VerifyWebhookLayer, DEFAULT_BODY_LIMIT};
pub use message::{MessageId, Signer, SigningKey, MAX_MESSAGE_ID_LEN};
pub use replay::{MemoryReplayGuard, ReplayError, ReplayGuard, DEFAULT_REPLAY_CAPACITY};
pub use verify::{
    SharedSecret, VerifiedWebhook, Verifier, VerifierBuilder, VerifyingKey, WebhookScheme,
    DEFAULT_TOLERANCE,
};

/// `webhook-id`: the message's unique id.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// `webhook-timestamp`: the attempt's Unix time in seconds.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// `webhook-signature`: space-separated `v1,<base64>` / `v1a,<base64>`.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// A webhook key or message id that can not be used.
///
/// ```
/// use keyward::webhooks::{WebhookKeyError, WebhookSecret};
///
/// assert_eq!(WebhookSecret::parse("whsec_"), Err(WebhookKeyError::Length));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookKeyError {
    /// Not standard base64 (or a public key off the curve).
    #[error("webhook key is not valid base64")]
    Encoding,
    /// A secret of fewer than 24 or more than 64 bytes, or an Ed25519 key
    /// of another length than 32 bytes.
    #[error("webhook key has the wrong length")]
    Length,
    /// An Ed25519 key without its `whsk_` / `whpk_` prefix.
    #[error("webhook key lacks its prefix")]
    Prefix,
    /// An Ed25519 public key of small order.
    #[error("webhook public key is weak (small order)")]
    WeakKey,
    /// A message id that is empty, longer than 256 bytes, or holds a `.`,
    /// whitespace or a byte outside visible ASCII.
    #[error("invalid webhook message id")]
    MessageId,
}

/// Why an inbound webhook was refused. Each case has its status and code
/// (table in the [module docs](self)); [`to_response`](Self::to_response)
/// renders it.
///
/// ```
/// use keyward::webhooks::WebhookError;
///
/// let response = WebhookError::InvalidSignature.to_response();
/// assert_eq!(response.status(), 401);
/// assert_eq!(
///     response.body(),
///     r#"{"error":"webhook_signature_invalid","message":"no webhook signature matched"}"#,
/// );
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A required header is absent.
    #[error("webhook header {0} is missing")]
    MissingHeader(&'static str),
    /// A header is repeated, too long, not visible ASCII, or malformed.
    #[error("webhook header {0} is invalid")]
    InvalidHeader(&'static str),
    /// No signature of a trusted key matched the message.
    #[error("no webhook signature matched")]
    InvalidSignature,
    /// The timestamp is further from now than the tolerance (either way).
    #[error("webhook timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
    /// The message id was already accepted within the tolerance.
    #[error("webhook message was already received")]
    Replayed,
    /// The body is longer than the receiver's limit.
    #[error("webhook body is too large")]
    BodyTooLarge,
    /// The body could not be read.
    #[error("webhook body could not be read")]
    BodyUnreadable,
    /// The replay guard failed; the message is refused (fail closed).
    #[error("webhook replay guard is unavailable")]
    ReplayUnavailable(#[source] ReplayError),
}

impl WebhookError {
    /// The HTTP status (see the table in the [module docs](self)).
    ///
    /// ```
    /// use keyward::webhooks::WebhookError;
    ///
    /// assert_eq!(WebhookError::Replayed.status(), 409);
    /// ```
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            WebhookError::MissingHeader(_)
            | WebhookError::InvalidHeader(_)
            | WebhookError::BodyUnreadable => StatusCode::BAD_REQUEST,
            WebhookError::InvalidSignature | WebhookError::TimestampOutOfTolerance => {
                StatusCode::UNAUTHORIZED
            }
            WebhookError::Replayed => StatusCode::CONFLICT,
            WebhookError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::ReplayUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code of the body's `error` field.
    ///
    /// ```
    /// use keyward::webhooks::WebhookError;
    ///
    /// assert_eq!(WebhookError::MissingHeader("webhook-id").code(), "webhook_header_missing");
    /// ```
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::MissingHeader(_) => "webhook_header_missing",
            WebhookError::InvalidHeader(_) => "webhook_header_invalid",
            WebhookError::InvalidSignature => "webhook_signature_invalid",
            WebhookError::TimestampOutOfTolerance => "webhook_timestamp_out_of_tolerance",
            WebhookError::Replayed => "webhook_replayed",
            WebhookError::BodyTooLarge => "webhook_body_too_large",
            WebhookError::BodyUnreadable => "webhook_body_unreadable",
            WebhookError::ReplayUnavailable(_) => "webhook_replay_unavailable",
        }
    }

    /// The refusal: status, `{"error": code, "message": text}`, JSON,
    /// `Cache-Control: no-store`. The message never holds a cause's text.
    #[must_use]
    pub fn to_response(&self) -> Response<String> {
        crate::http::errors::respond(self.status(), self.code(), &self.to_string())
    }
}
