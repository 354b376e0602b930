//! Verification of inbound webhooks: Standard Webhooks, Stripe and GitHub.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::HeaderName;
use http::HeaderMap;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

#[cfg(feature = "webhooks-ed25519")]
use super::keys::Ed25519PublicKey;
use super::keys::WebhookSecret;
use super::message::{hmac, signed_content, valid_id};
use super::replay::ReplayGuard;
use super::{WebhookError, WebhookKeyError, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use crate::clock::{span, Clock, SystemClock};
use crate::error::ConfigError;

/// The default tolerance between a message's timestamp and now, either way:
/// 5 minutes, as the specification's libraries use.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
/// The largest tolerance a verifier accepts: one day.
const MAX_TOLERANCE: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest signature header read, in bytes.
const MAX_SIGNATURE_HEADER_LEN: usize = 4096;
/// The most signatures one header may carry.
const MAX_SIGNATURES: usize = 16;

const STRIPE_SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");
const GITHUB_SIGNATURE: HeaderName = HeaderName::from_static("x-hub-signature-256");

/// A key a receiver trusts for Standard Webhooks.
///
/// ```
/// use keyward::webhooks::{VerifyingKey, WebhookSecret};
///
/// let key: VerifyingKey = WebhookSecret::generate().into();
/// # let _ = key;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum VerifyingKey {
    /// `v1` signatures: the shared secret.
    Symmetric(WebhookSecret),
    /// `v1a` signatures: the sender's public key (feature
    /// `webhooks-ed25519`).
    #[cfg(feature = "webhooks-ed25519")]
    #[cfg_attr(docsrs, doc(cfg(feature = "webhooks-ed25519")))]
    Ed25519(Ed25519PublicKey),
}

impl From<WebhookSecret> for VerifyingKey {
    fn from(secret: WebhookSecret) -> Self {
        VerifyingKey::Symmetric(secret)
    }
}

#[cfg(feature = "webhooks-ed25519")]
impl From<Ed25519PublicKey> for VerifyingKey {
    fn from(key: Ed25519PublicKey) -> Self {
        VerifyingKey::Ed25519(key)
    }
}

/// A provider's signing secret used as is, as its bytes: Stripe's
/// `whsec_…` endpoint secret, a GitHub webhook's secret. `Debug` redacts it;
/// it is zeroed on drop.
///
/// ```
/// use keyward::webhooks::SharedSecret;
///
/// let secret = SharedSecret::new("whsec_test_secret")?;
/// assert_eq!(format!("{secret:?}"), "SharedSecret([REDACTED])");
/// assert!(SharedSecret::new("").is_err());
/// # Ok::<(), keyward::webhooks::WebhookKeyError>(())
/// ```
#[derive(Clone)]
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl SharedSecret {
    /// The secret of these bytes.
    ///
    /// # Errors
    ///
    /// [`WebhookKeyError::Length`] for an empty secret.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, WebhookKeyError> {
        let bytes = secret.as_ref();
        if bytes.is_empty() {
            return Err(WebhookKeyError::Length);
        }
        Ok(SharedSecret(Zeroizing::new(bytes.to_vec())))
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret([REDACTED])")
    }
}

/// Which signature scheme a webhook was verified under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WebhookScheme {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`).
    Standard,
    /// Stripe (`Stripe-Signature: t=…,v1=…`).
    Stripe,
    /// GitHub (`X-Hub-Signature-256: sha256=…`).
    GitHub,
}

impl WebhookScheme {
    /// A stable name: `standard`, `stripe`, `github`.
    ///
    /// ```
    /// assert_eq!(keyward::webhooks::WebhookScheme::Stripe.name(), "stripe");
    /// ```
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            WebhookScheme::Standard => "standard",
            WebhookScheme::Stripe => "stripe",
            WebhookScheme::GitHub => "github",
        }
    }
}

/// A webhook whose signature verified: put into the request extensions by
/// [`VerifyWebhookLayer`](super::VerifyWebhookLayer).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedWebhook {
    scheme: WebhookScheme,
    id: Option<String>,
    timestamp: Option<OffsetDateTime>,
    /// What the replay guard recorded, to release it.
    replay_key: Option<String>,
}

impl VerifiedWebhook {
    /// The scheme it was verified under.
    #[must_use]
    pub fn scheme(&self) -> WebhookScheme {
        self.scheme
    }

    /// The message id (`webhook-id`, signed); `None` for Stripe (its event
    /// id is in the body) and GitHub (its delivery id is not signed).
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The signed timestamp; `None` for GitHub, which signs none.
    #[must_use]
    pub fn timestamp(&self) -> Option<OffsetDateTime> {
        self.timestamp
    }
}

enum Keys {
    Standard(Vec<VerifyingKey>),
    Stripe(Vec<SharedSecret>),
    GitHub(Vec<SharedSecret>),
}

/// Settings of a [`Verifier`]: its keys (given to the constructor),
/// tolerance, clock and replay guard.
#[must_use]
pub struct VerifierBuilder {
    keys: Keys,
    tolerance: Duration,
    clock: Arc<dyn Clock>,
    replay: Option<Arc<dyn ReplayGuard>>,
    namespace: String,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("scheme", &self.scheme())
            .field("tolerance", &self.tolerance)
            .field("replay_guard", &self.replay.is_some())
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    fn new(keys: Keys) -> Self {
        let mut builder = VerifierBuilder {
            keys,
            tolerance: DEFAULT_TOLERANCE,
            clock: Arc::new(SystemClock),
            replay: None,
            namespace: String::new(),
        };
        builder.namespace = builder.scheme().name().to_owned();
        builder
    }

    fn scheme(&self) -> WebhookScheme {
        match self.keys {
            Keys::Standard(_) => WebhookScheme::Standard,
            Keys::Stripe(_) => WebhookScheme::Stripe,
            Keys::GitHub(_) => WebhookScheme::GitHub,
        }
    }

    /// How far a message's timestamp may be from now, either way: 5 minutes
    /// by default, at least 1 second, at most a day. Also how long the
    /// replay guard remembers an id.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Where time comes from; the system clock by default.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Refuses a message id already accepted within the tolerance (409
    /// `webhook_replayed`). Off by default.
    pub fn replay_guard(mut self, guard: impl ReplayGuard) -> Self {
        self.replay = Some(Arc::new(guard));
        self
    }

    /// The prefix of this verifier's records in its replay guard: the
    /// scheme's name by default (`standard`, `stripe`, `github`). Give each
    /// sender its own when several verifiers share a guard, so one sender
    /// can not claim another's message ids.
    pub fn replay_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Like [`replay_guard`](Self::replay_guard), sharing a guard.
    pub fn shared_replay_guard(mut self, guard: Arc<dyn ReplayGuard>) -> Self {
        self.replay = Some(guard);
        self
    }

    /// The verifier.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidWebhookConfig`] without a key, or for a
    /// tolerance under 1 second or over a day.
    pub fn build(self) -> Result<Verifier, ConfigError> {
        let empty = match &self.keys {
            Keys::Standard(keys) => keys.is_empty(),
            Keys::Stripe(keys) | Keys::GitHub(keys) => keys.is_empty(),
        };
        if empty {
            return Err(ConfigError::InvalidWebhookConfig("a verifier needs a key"));
        }
        if self.tolerance < Duration::from_secs(1) || self.tolerance > MAX_TOLERANCE {
            return Err(ConfigError::InvalidWebhookConfig(
                "the tolerance must be between 1 second and 1 day",
            ));
        }
        Ok(Verifier(Arc::new(self)))
    }
}

/// Verifies inbound webhooks of one scheme, against one or more trusted
/// keys. Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use keyward::webhooks::{MemoryReplayGuard, Verifier, WebhookSecret};
///
/// let verifier = Verifier::standard([WebhookSecret::generate()])
///     .tolerance(Duration::from_secs(60))
///     .replay_guard(MemoryReplayGuard::new())
///     .build()?;
/// # let _ = verifier;
/// # Ok::<(), keyward::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Verifier(Arc<VerifierBuilder>);

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Verifier").field(&self.0).finish()
    }
}

impl Verifier {
    /// Standard Webhooks, trusting these keys (several while one rotates).
    pub fn standard<K: Into<VerifyingKey>>(keys: impl IntoIterator<Item = K>) -> VerifierBuilder {
        VerifierBuilder::new(Keys::Standard(keys.into_iter().map(Into::into).collect()))
    }

    /// Stripe's scheme: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`,
    /// HMAC-SHA256 over `{t}.{body}` with the endpoint's secret.
    ///
    /// ```
    /// use keyward::webhooks::{SharedSecret, Verifier};
    ///
    /// let verifier = Verifier::stripe([SharedSecret::new("whsec_from_stripe")?]).build()?;
    /// # let _ = verifier;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stripe(secrets: impl IntoIterator<Item = SharedSecret>) -> VerifierBuilder {
        VerifierBuilder::new(Keys::Stripe(secrets.into_iter().collect()))
    }

    /// GitHub's scheme: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256
    /// of the body with the webhook's secret. GitHub signs no timestamp, so
    /// there is no tolerance check; with a replay guard, the same body is
    /// refused for the tolerance after it was first accepted. GitHub's
    /// `X-GitHub-Delivery` id is not signed, so it is neither used nor
    /// reported ([`VerifiedWebhook::id`] is `None`): never treat it as an
    /// idempotency key.
    pub fn github(secrets: impl IntoIterator<Item = SharedSecret>) -> VerifierBuilder {
        VerifierBuilder::new(Keys::GitHub(secrets.into_iter().collect()))
    }

    /// The scheme this verifier checks.
    #[must_use]
    pub fn scheme(&self) -> WebhookScheme {
        self.0.scheme()
    }

    /// Verifies a message: headers, timestamp, signatures, then (with a
    /// replay guard) that its id is new.
    ///
    /// # Errors
    ///
    /// A [`WebhookError`] for each way it fails (see the module docs).
    ///
    /// ```
    /// use keyward::webhooks::{Verifier, WebhookError, WebhookSecret};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let verifier = Verifier::standard([WebhookSecret::generate()]).build()?;
    /// let err = verifier.verify(&http::HeaderMap::new(), b"{}").await.unwrap_err();
    /// assert!(matches!(err, WebhookError::MissingHeader("webhook-id")));
    /// # Ok::<(), keyward::ConfigError>(())
    /// # }).unwrap();
    /// ```
    pub async fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<VerifiedWebhook, WebhookError> {
        let config = &*self.0;
        let now = config.clock.now();
        let namespace = &config.namespace;
        // The replay record's key, built only when there is a guard (the
        // Stripe one hashes the body).
        let record = |key: &dyn Fn() -> String| config.replay.as_ref().map(|_| key());
        let mut verified = match (&config.keys, self.parse(headers, now)?) {
            (
                Keys::Standard(keys),
                Parsed::Standard {
                    id,
                    timestamp,
                    at,
                    entries,
                },
            ) => {
                standard(keys, id, timestamp, &entries, body)?;
                VerifiedWebhook {
                    scheme: WebhookScheme::Standard,
                    id: Some(id.to_owned()),
                    timestamp: Some(at),
                    replay_key: record(&|| format!("{namespace}:{id}")),
                }
            }
            (
                Keys::Stripe(keys),
                Parsed::Stripe {
                    timestamp,
                    at,
                    signatures,
                },
            ) => {
                stripe(keys, timestamp, &signatures, body)?;
                // The message, not the signature that matched: during a
                // rotation Stripe sends one per secret, and either alone
                // must not pass for a new message.
                VerifiedWebhook {
                    scheme: WebhookScheme::Stripe,
                    id: None,
                    timestamp: Some(at),
                    replay_key: record(&|| {
                        let digest = STANDARD.encode(sha2::Sha256::digest(body));
                        format!("{namespace}:{timestamp}:{digest}")
                    }),
                }
            }
            (Keys::GitHub(keys), Parsed::GitHub { signature }) => {
                github(keys, &signature, body)?;
                // GitHub signs the body only: its delivery id is not signed,
                // so the record is keyed on the signature (one per body).
                VerifiedWebhook {
                    scheme: WebhookScheme::GitHub,
                    id: None,
                    timestamp: None,
                    replay_key: record(&|| format!("{namespace}:{}", STANDARD.encode(signature))),
                }
            }
            // `parse` reads the headers of this verifier's scheme.
            _ => return Err(WebhookError::InvalidSignature),
        };
        if let Some(guard) = &config.replay {
            let Some(key) = verified.replay_key.take() else {
                return Ok(verified);
            };
            let from = verified.timestamp.map_or(now, |t| t.max(now));
            let until = from.checked_add(span(config.tolerance)).unwrap_or(from);
            match guard.claim(&key, until, now).await {
                Ok(true) => verified.replay_key = Some(key),
                Ok(false) => return Err(WebhookError::Replayed),
                Err(err) => return Err(WebhookError::ReplayUnavailable(err)),
            }
        }
        Ok(verified)
    }

    /// The headers of this verifier's scheme, read and checked (format,
    /// timestamp) without the body.
    fn parse<'a>(
        &self,
        headers: &'a HeaderMap,
        now: OffsetDateTime,
    ) -> Result<Parsed<'a>, WebhookError> {
        let tolerance = self.0.tolerance;
        match &self.0.keys {
            Keys::Standard(_) => standard_headers(headers, now, tolerance),
            Keys::Stripe(_) => stripe_headers(headers, now, tolerance),
            Keys::GitHub(_) => github_headers(headers),
        }
    }

    /// Checks what can be checked before the body is read: the headers'
    /// presence and format, and the timestamp. The layer calls it so a
    /// request without a plausible signature costs no body read.
    pub(crate) fn check_headers(&self, headers: &HeaderMap) -> Result<(), WebhookError> {
        self.parse(headers, self.0.clock.now()).map(drop)
    }

    /// Forgets a verified message's id in the replay guard, so the sender's
    /// retry is accepted: call it when the message could not be processed.
    /// [`VerifyWebhookLayer`](super::VerifyWebhookLayer) does it for a
    /// response that is not 2xx.
    ///
    /// # Errors
    ///
    /// [`WebhookError::ReplayUnavailable`] when the guard fails.
    pub async fn release(&self, verified: &VerifiedWebhook) -> Result<(), WebhookError> {
        match (&self.0.replay, &verified.replay_key) {
            (Some(guard), Some(key)) => guard
                .release(key)
                .await
                .map_err(WebhookError::ReplayUnavailable),
            _ => Ok(()),
        }
    }
}

/// The one value of header `name`: visible ASCII, not empty, at most
/// `max` bytes.
fn one_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    label: &'static str,
    max: usize,
) -> Result<&'a str, WebhookError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(WebhookError::MissingHeader(label))?;
    if values.next().is_some() || value.is_empty() || value.len() > max {
        return Err(WebhookError::InvalidHeader(label));
    }
    value
        .to_str()
        .map_err(|_| WebhookError::InvalidHeader(label))
}

/// Unix seconds: 1 to 15 ASCII digits.
fn parse_timestamp(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The timestamp as an instant, when it is within `tolerance` of `now`.
fn within(
    timestamp: i64,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<OffsetDateTime, WebhookError> {
    let distance = (i128::from(now.unix_timestamp()) - i128::from(timestamp)).unsigned_abs();
    if distance > u128::from(tolerance.as_secs()) {
        return Err(WebhookError::TimestampOutOfTolerance);
    }
    OffsetDateTime::from_unix_timestamp(timestamp)
        .map_err(|_| WebhookError::TimestampOutOfTolerance)
}

/// Whether `candidate` equals `expected`, in time independent of where
/// they differ.
fn same(expected: &[u8], candidate: &[u8]) -> bool {
    expected.len() == candidate.len() && bool::from(expected.ct_eq(candidate))
}

/// 64 hex digits (either case) as 32 bytes.
fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

/// A message's headers, read and checked (format and timestamp) before its
/// body is.
enum Parsed<'a> {
    Standard {
        id: &'a str,
        timestamp: i64,
        at: OffsetDateTime,
        entries: Vec<(&'a str, &'a str)>,
    },
    Stripe {
        timestamp: i64,
        at: OffsetDateTime,
        signatures: Vec<[u8; 32]>,
    },
    GitHub {
        signature: [u8; 32],
    },
}

fn standard_headers(
    headers: &HeaderMap,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<Parsed<'_>, WebhookError> {
    let id = one_header(
        headers,
        &WEBHOOK_ID,
        "webhook-id",
        super::MAX_MESSAGE_ID_LEN,
    )?;
    if !valid_id(id) {
        return Err(WebhookError::InvalidHeader("webhook-id"));
    }
    let timestamp = one_header(headers, &WEBHOOK_TIMESTAMP, "webhook-timestamp", 15)?;
    let timestamp =
        parse_timestamp(timestamp).ok_or(WebhookError::InvalidHeader("webhook-timestamp"))?;
    let signatures = one_header(
        headers,
        &WEBHOOK_SIGNATURE,
        "webhook-signature",
        MAX_SIGNATURE_HEADER_LEN,
    )?;
    let mut entries = Vec::new();
    for entry in signatures.split(' ').filter(|e| !e.is_empty()) {
        let (version, signature) = entry
            .split_once(',')
            .ok_or(WebhookError::InvalidHeader("webhook-signature"))?;
        entries.push((version, signature));
        if entries.len() > MAX_SIGNATURES {
            return Err(WebhookError::InvalidHeader("webhook-signature"));
        }
    }
    if entries.is_empty() {
        return Err(WebhookError::InvalidHeader("webhook-signature"));
    }
    let at = within(timestamp, now, tolerance)?;
    Ok(Parsed::Standard {
        id,
        timestamp,
        at,
        entries,
    })
}

fn standard(
    keys: &[VerifyingKey],
    id: &str,
    timestamp: i64,
    entries: &[(&str, &str)],
    body: &[u8],
) -> Result<(), WebhookError> {
    let content = signed_content(id, timestamp, body);
    let macs: Vec<[u8; 32]> = keys
        .iter()
        .filter_map(|key| match key {
            VerifyingKey::Symmetric(secret) => Some(hmac(secret.bytes(), &content)),
            #[cfg(feature = "webhooks-ed25519")]
            VerifyingKey::Ed25519(_) => None,
        })
        .collect();
    let matched = entries.iter().any(|&(version, signature)| {
        // Not base64: matches nothing (as an unknown version).
        let Ok(signature) = STANDARD.decode(signature) else {
            return false;
        };
        match version {
            "v1" => macs.iter().any(|mac| same(mac, &signature)),
            #[cfg(feature = "webhooks-ed25519")]
            "v1a" => keys.iter().any(|key| match key {
                VerifyingKey::Ed25519(public) => public.verify(&content, &signature),
                VerifyingKey::Symmetric(_) => false,
            }),
            _ => false,
        }
    });
    if matched {
        Ok(())
    } else {
        Err(WebhookError::InvalidSignature)
    }
}

fn stripe_headers(
    headers: &HeaderMap,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<Parsed<'_>, WebhookError> {
    const LABEL: &str = "stripe-signature";
    let header = one_header(headers, &STRIPE_SIGNATURE, LABEL, MAX_SIGNATURE_HEADER_LEN)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for (n, item) in header.split(',').enumerate() {
        if n >= 2 * MAX_SIGNATURES {
            return Err(WebhookError::InvalidHeader(LABEL));
        }
        let (name, value) = item
            .split_once('=')
            .ok_or(WebhookError::InvalidHeader(LABEL))?;
        match name {
            "t" if timestamp.is_none() => {
                timestamp = Some(parse_timestamp(value).ok_or(WebhookError::InvalidHeader(LABEL))?);
            }
            "t" => return Err(WebhookError::InvalidHeader(LABEL)),
            // Not hex: matches nothing.
            "v1" => signatures.extend(decode_hex32(value)),
            // v0 (test mode's legacy scheme) and later versions: ignored.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::InvalidHeader(LABEL))?;
    let at = within(timestamp, now, tolerance)?;
    Ok(Parsed::Stripe {
        timestamp,
        at,
        signatures,
    })
}

fn stripe(
    keys: &[SharedSecret],
    timestamp: i64,
    signatures: &[[u8; 32]],
    body: &[u8],
) -> Result<(), WebhookError> {
    let mut content = format!("{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    let matched = keys.iter().any(|key| {
        let mac = hmac(&key.0, &content);
        signatures.iter().any(|sig| same(&mac, sig))
    });
    if matched {
        Ok(())
    } else {
        Err(WebhookError::InvalidSignature)
    }
}

fn github_headers(headers: &HeaderMap) -> Result<Parsed<'_>, WebhookError> {
    const LABEL: &str = "x-hub-signature-256";
    let header = one_header(headers, &GITHUB_SIGNATURE, LABEL, MAX_SIGNATURE_HEADER_LEN)?;
    let signature = header
        .strip_prefix("sha256=")
        .and_then(decode_hex32)
        .ok_or(WebhookError::InvalidHeader(LABEL))?;
    Ok(Parsed::GitHub { signature })
}

fn github(keys: &[SharedSecret], signature: &[u8; 32], body: &[u8]) -> Result<(), WebhookError> {
    if keys.iter().any(|key| same(&hmac(&key.0, body), signature)) {
        Ok(())
    } else {
        Err(WebhookError::InvalidSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_digits_only() {
        assert_eq!(parse_timestamp("1614265330"), Some(1_614_265_330));
        for bad in ["", "-1", "+1", "1.5", " 1", "1e3", "9999999999999999"] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hex_of_either_case_and_exact_length() {
        let lower = "ab".repeat(32);
        assert_eq!(decode_hex32(&lower), Some([0xab; 32]));
        assert_eq!(decode_hex32(&lower.to_uppercase()), Some([0xab; 32]));
        assert_eq!(decode_hex32(&lower[..62]), None);
        assert_eq!(decode_hex32(&format!("{}zz", &lower[..62])), None);
        assert_eq!(decode_hex32(&format!("{}+f", &lower[..62])), None);
    }

    #[test]
    fn the_tolerance_holds_both_ways_inclusively() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let tol = Duration::from_secs(300);
        assert!(within(1_000_300, now, tol).is_ok());
        assert!(within(999_700, now, tol).is_ok());
        assert!(within(1_000_301, now, tol).is_err());
        assert!(within(999_699, now, tol).is_err());
    }

    #[test]
    fn same_compares_length_and_bytes() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
