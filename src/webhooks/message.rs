//! Message ids and signing: the content signed is `{id}.{timestamp}.{body}`,
//! the `webhook-signature` header a space-separated list of `v1,<base64>`
//! (and `v1a,<base64>`) signatures, one per signing key.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use http::{HeaderMap, HeaderValue};
use rand::distr::{Alphanumeric, SampleString as _};
use sha2::Sha256;
use time::OffsetDateTime;

#[cfg(feature = "webhooks-ed25519")]
use super::keys::Ed25519SecretKey;
use super::keys::WebhookSecret;
use super::{WebhookKeyError, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};

/// The longest message id accepted (sent or received), in bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 256;

/// A message's unique id: the `webhook-id` header, the same on every retry
/// of one message, so receivers can use it as an idempotency key.
///
/// 1 to 256 visible ASCII characters without `.`: the signed content joins
/// id, timestamp and body with dots, so a dot in the id would let one
/// signed message be read as another (`a.1` + `2.body` = `a` + `1.2.body`).
///
/// ```
/// use keyward::webhooks::MessageId;
///
/// let id = MessageId::generate();
/// assert!(id.as_str().starts_with("msg_"));
/// assert!(MessageId::parse("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W").is_ok());
/// assert!(MessageId::parse("msg.1").is_err());
/// assert!(MessageId::parse("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// `msg_` and 27 random base62 characters (160 bits).
    #[must_use]
    pub fn generate() -> Self {
        let mut id = String::from("msg_");
        Alphanumeric.append_string(&mut rand::rng(), &mut id, 27);
        MessageId(id)
    }

    /// An id given by the host (an event's id, so retries of one event
    /// share it).
    ///
    /// # Errors
    ///
    /// [`WebhookKeyError::MessageId`] for an empty id, one longer than 256
    /// bytes, or one with a `.`, whitespace or a byte outside visible ASCII.
    pub fn parse(id: &str) -> Result<Self, WebhookKeyError> {
        if valid_id(id) {
            Ok(MessageId(id.to_owned()))
        } else {
            Err(WebhookKeyError::MessageId)
        }
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MessageId").field(&self.0).finish()
    }
}

/// Whether `id` may be a message id (see [`MessageId`]).
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MESSAGE_ID_LEN
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b'.')
}

/// A key that signs outgoing webhooks.
///
/// ```
/// use keyward::webhooks::{SigningKey, WebhookSecret};
///
/// let key: SigningKey = WebhookSecret::generate().into();
/// # let _ = key;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SigningKey {
    /// `v1`: HMAC-SHA256 with a shared secret.
    Symmetric(WebhookSecret),
    /// `v1a`: Ed25519 (feature `webhooks-ed25519`).
    #[cfg(feature = "webhooks-ed25519")]
    #[cfg_attr(docsrs, doc(cfg(feature = "webhooks-ed25519")))]
    Ed25519(Ed25519SecretKey),
}

impl From<WebhookSecret> for SigningKey {
    fn from(secret: WebhookSecret) -> Self {
        SigningKey::Symmetric(secret)
    }
}

#[cfg(feature = "webhooks-ed25519")]
impl From<Ed25519SecretKey> for SigningKey {
    fn from(key: Ed25519SecretKey) -> Self {
        SigningKey::Ed25519(key)
    }
}

impl SigningKey {
    /// `v1,<base64>` or `v1a,<base64>` over `content`.
    fn signature(&self, content: &[u8]) -> String {
        match self {
            SigningKey::Symmetric(secret) => {
                format!("v1,{}", STANDARD.encode(hmac(secret.bytes(), content)))
            }
            #[cfg(feature = "webhooks-ed25519")]
            SigningKey::Ed25519(key) => format!("v1a,{}", STANDARD.encode(key.sign(content))),
        }
    }
}

/// HMAC-SHA256 of `content` under `key`.
pub(crate) fn hmac(key: &[u8], content: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(content);
    mac.finalize().into_bytes().into()
}

/// `{id}.{timestamp}.{body}`, the content every signature covers.
pub(crate) fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + 22 + body.len());
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Signs outgoing webhooks with one key, or several while a key rotates
/// (receivers accept a message when any one signature verifies).
///
/// ```
/// use keyward::webhooks::{MessageId, Signer, WebhookSecret};
///
/// // The specification's test vector.
/// let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// let id = MessageId::parse("msg_p5jXN8AQM9LWM0D4loKWxJek")?;
/// let signature = Signer::new(secret).sign(&id, 1614265330, br#"{"test": 2432232314}"#);
/// assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
/// # Ok::<(), keyward::webhooks::WebhookKeyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Signer {
    keys: Vec<SigningKey>,
}

impl Signer {
    /// A signer with one key.
    #[must_use]
    pub fn new(key: impl Into<SigningKey>) -> Self {
        Signer {
            keys: vec![key.into()],
        }
    }

    /// Also signs with `key` (during a rotation: the new key and the old
    /// one, until every receiver has the new one).
    #[must_use]
    pub fn also(mut self, key: impl Into<SigningKey>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// The `webhook-signature` header value for this message: one
    /// signature per key, space-separated.
    #[must_use]
    pub fn sign(&self, id: &MessageId, timestamp: i64, body: &[u8]) -> String {
        let content = signed_content(id.as_str(), timestamp, body);
        let signatures: Vec<String> = self.keys.iter().map(|k| k.signature(&content)).collect();
        signatures.join(" ")
    }

    /// The three headers of a message sent at `at`: `webhook-id`,
    /// `webhook-timestamp` (Unix seconds) and `webhook-signature`.
    ///
    /// ```
    /// use keyward::webhooks::{MessageId, Signer, WebhookSecret};
    ///
    /// let signer = Signer::new(WebhookSecret::generate());
    /// let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    /// let headers = signer.headers(&MessageId::generate(), at, b"{}");
    /// assert_eq!(headers["webhook-timestamp"], "1700000000");
    /// assert!(headers["webhook-signature"].to_str().unwrap().starts_with("v1,"));
    /// ```
    #[must_use]
    pub fn headers(&self, id: &MessageId, at: OffsetDateTime, body: &[u8]) -> HeaderMap {
        let timestamp = at.unix_timestamp();
        let mut headers = HeaderMap::with_capacity(3);
        // Visible ASCII by construction (ids are checked, base64 and digits).
        for (name, value) in [
            (WEBHOOK_ID, id.as_str().to_owned()),
            (WEBHOOK_TIMESTAMP, timestamp.to_string()),
            (WEBHOOK_SIGNATURE, self.sign(id, timestamp, body)),
        ] {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.insert(name, value);
            }
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_dots_spaces_and_long_values() {
        assert!(MessageId::parse("a b").is_err());
        assert!(MessageId::parse("é").is_err());
        assert!(MessageId::parse(&"a".repeat(MAX_MESSAGE_ID_LEN)).is_ok());
        assert!(MessageId::parse(&"a".repeat(MAX_MESSAGE_ID_LEN + 1)).is_err());
        assert_eq!(MessageId::generate().as_str().len(), 31);
        assert_ne!(MessageId::generate(), MessageId::generate());
    }

    #[test]
    fn a_rotating_signer_sends_one_signature_per_key() {
        let id = MessageId::generate();
        let one = Signer::new(WebhookSecret::generate());
        let two = one.clone().also(WebhookSecret::generate());
        let header = two.sign(&id, 5, b"x");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], one.sign(&id, 5, b"x"));
        assert_ne!(parts[0], parts[1]);
    }
}
