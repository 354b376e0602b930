//! An outgoing message and the signed request of one attempt.

use std::fmt;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::Endpoint;
use crate::webhooks::MessageId;

/// The longest event type accepted, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// Why a [`WebhookMessage`] could not be made.
///
/// ```
/// use keyward::webhooks::{MessageError, MessageId, WebhookMessage};
///
/// let err = WebhookMessage::new(MessageId::generate(), "key revoked", "{}").unwrap_err();
/// assert!(matches!(err, MessageError::EventType));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The event type is empty, longer than [`MAX_EVENT_TYPE_LEN`], or not
    /// full-stop delimited identifiers of `[A-Za-z0-9_]` (`key.revoked`).
    #[error("invalid webhook event type: full-stop delimited identifiers of [A-Za-z0-9_], at most 128 bytes")]
    EventType,
    /// The timestamp can not be written in RFC 3339 (a year outside
    /// 0..=9999).
    #[error("webhook timestamp can not be written in RFC 3339")]
    Timestamp,
    /// The data could not be serialized as JSON.
    #[error("webhook data could not be serialized as JSON")]
    Payload(#[source] serde_json::Error),
}

/// One webhook message: its id (the same on every attempt), its event type
/// and its JSON payload. Cheap to clone (the payload is shared).
///
/// ```
/// use keyward::webhooks::{MessageId, WebhookMessage};
///
/// let at = time::macros::datetime!(2027-01-15 08:00:00 UTC);
/// let message = WebhookMessage::envelope(
///     MessageId::parse("msg_1")?,
///     "key.revoked",
///     at,
///     &serde_json::json!({ "key_id": "key_1" }),
/// )?;
/// assert_eq!(
///     message.payload().as_ref(),
///     br#"{"type":"key.revoked","timestamp":"2027-01-15T08:00:00Z","data":{"key_id":"key_1"}}"#
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct WebhookMessage {
    id: MessageId,
    event_type: String,
    payload: Bytes,
}

/// The specification's payload structure.
#[derive(Serialize)]
struct Envelope<'a, T: ?Sized> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: &'a T,
}

impl WebhookMessage {
    /// A message with a payload already written (it must be JSON: requests
    /// say `content-type: application/json`).
    ///
    /// ```
    /// use keyward::webhooks::{MessageId, WebhookMessage};
    ///
    /// let message = WebhookMessage::new(MessageId::generate(), "invoice.paid", r#"{"id":7}"#)?;
    /// assert_eq!(message.event_type(), "invoice.paid");
    /// # Ok::<(), keyward::webhooks::MessageError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`MessageError::EventType`] for an event type that is not
    /// full-stop delimited identifiers of `[A-Za-z0-9_]`.
    pub fn new(
        id: MessageId,
        event_type: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Self, MessageError> {
        if !valid_event_type(event_type) {
            return Err(MessageError::EventType);
        }
        Ok(WebhookMessage {
            id,
            event_type: event_type.to_owned(),
            payload: payload.into(),
        })
    }

    /// A message in the specification's envelope:
    /// `{"type": event_type, "timestamp": <when it happened, RFC 3339, UTC>,
    /// "data": data}` (see the type's example).
    ///
    /// # Errors
    ///
    /// [`MessageError::EventType`] (see [`new`](Self::new)),
    /// [`MessageError::Timestamp`] for a year outside 0..=9999,
    /// [`MessageError::Payload`] when `data` does not serialize.
    pub fn envelope<T: Serialize + ?Sized>(
        id: MessageId,
        event_type: &str,
        timestamp: OffsetDateTime,
        data: &T,
    ) -> Result<Self, MessageError> {
        if !valid_event_type(event_type) {
            return Err(MessageError::EventType);
        }
        let payload = serde_json::to_vec(&Envelope {
            event_type,
            timestamp: rfc3339(timestamp)?,
            data,
        })
        .map_err(MessageError::Payload)?;
        Self::new(id, event_type, payload)
    }

    /// The message id (`webhook-id`).
    #[must_use]
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// The event type (`key.revoked`).
    #[must_use]
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The body sent.
    #[must_use]
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The request of one attempt made at `at`: `POST` to the endpoint's
    /// URL, `content-type: application/json`, and the `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature` headers signed with the
    /// endpoint's signer for `at` (each retry is signed again).
    ///
    /// ```
    /// use keyward::webhooks::{Endpoint, MessageId, Signer, WebhookMessage, WebhookSecret};
    ///
    /// let endpoint = Endpoint::new("https://hooks.example.com/in", Signer::new(WebhookSecret::generate()))?;
    /// let message = WebhookMessage::new(MessageId::parse("msg_1")?, "key.issued", "{}")?;
    /// let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000)?;
    /// let request = message.request(&endpoint, at);
    /// assert_eq!(request.method(), "POST");
    /// assert_eq!(request.uri(), "https://hooks.example.com/in");
    /// assert_eq!(request.headers()["content-type"], "application/json");
    /// assert_eq!(request.headers()["webhook-id"], "msg_1");
    /// assert_eq!(request.headers()["webhook-timestamp"], "1700000000");
    /// assert_eq!(request.body().as_ref(), b"{}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn request(&self, endpoint: &Endpoint, at: OffsetDateTime) -> Request<Bytes> {
        let mut request = Request::new(self.payload.clone());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = endpoint.uri().clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.extend(endpoint.signer().headers(&self.id, at, &self.payload));
        request
    }
}

impl fmt::Debug for WebhookMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload is the host's data: its size only.
        f.debug_struct("WebhookMessage")
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// Full-stop delimited identifiers of `[A-Za-z0-9_]`, at most
/// [`MAX_EVENT_TYPE_LEN`] bytes.
fn valid_event_type(event_type: &str) -> bool {
    event_type.len() <= MAX_EVENT_TYPE_LEN
        && event_type.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// An instant in RFC 3339, UTC (`2027-01-15T08:00:00Z`).
pub(super) fn rfc3339(at: OffsetDateTime) -> Result<String, MessageError> {
    at.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|_| MessageError::Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_dotted_identifiers() {
        for good in [
            "key.revoked",
            "a",
            "A_1.b_2.c",
            &"a".repeat(MAX_EVENT_TYPE_LEN),
        ] {
            assert!(valid_event_type(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "key.",
            ".key",
            "key..revoked",
            "key revoked",
            "key-revoked",
            "clé",
            &"a".repeat(MAX_EVENT_TYPE_LEN + 1),
        ] {
            assert!(!valid_event_type(bad), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_utc_and_bounded() {
        let at = time::macros::datetime!(2027-01-15 09:00:00 +01:00);
        assert_eq!(rfc3339(at).unwrap(), "2027-01-15T08:00:00Z");
        let far = OffsetDateTime::UNIX_EPOCH.replace_year(-1).unwrap();
        assert!(matches!(rfc3339(far), Err(MessageError::Timestamp)));
        assert!(matches!(
            WebhookMessage::envelope(MessageId::generate(), "a", far, &1),
            Err(MessageError::Timestamp)
        ));
        assert!(matches!(
            WebhookMessage::envelope(MessageId::generate(), "a b", at, &1),
            Err(MessageError::EventType)
        ));
    }

    #[test]
    fn debug_shows_the_payload_size_only() {
        let message =
            WebhookMessage::new(MessageId::parse("msg_1").unwrap(), "a", "secret-ish").unwrap();
        let debug = format!("{message:?}");
        assert!(debug.contains("payload_len: 10"), "{debug}");
        assert!(!debug.contains("secret-ish"));
    }
}
