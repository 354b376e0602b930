//! The receiving end of GitHub's secret-scanning partner program: when
//! GitHub finds one of your tokens in public (a commit, an issue, a gist,
//! an npm package), it POSTs an alert; [`GithubAlerts`] verifies it,
//! revokes the leaked keys at once and tells GitHub which tokens were real.
//!
//! What happens to an alert, in order (each refusal is a JSON error with a
//! stable code, [`AlertError`]):
//!
//! 1. Only `POST` (405 `method_not_allowed` otherwise).
//! 2. Exactly one `Github-Public-Key-Identifier` and one
//!    `Github-Public-Key-Signature` (base64 of an ASN.1 DER ECDSA
//!    signature), well formed (400 `missing_header`, `duplicate_header`,
//!    `malformed_header`).
//! 3. The body, read up to a limit (413 `alert_too_large`; 1 MiB by
//!    default).
//! 4. The key named by the identifier, from GitHub's published list
//!    ([`GITHUB_KEYS_URL`], fetched by a [`GithubKeyFetcher`]; cached, and
//!    refetched when an unknown identifier arrives, at most once a minute).
//!    Unknown: 401 `unknown_key`; the list can not be fetched: 503
//!    `keys_unavailable` (GitHub sends the alert again).
//! 5. The signature: ECDSA P-256 with SHA-256 over the raw body, checked
//!    before the body is parsed (401 `bad_signature`).
//! 6. The body: a JSON array of `{"token", "type", "url", "source"}`
//!    (400 `invalid_alert`), at most 1000 of them by default (413
//!    `too_many_tokens`).
//! 7. Each token goes to [`Keyring::report_leak`](crate::Keyring::report_leak):
//!    a live key is revoked at once and announced as
//!    [`EventKind::Leaked`](crate::EventKind::Leaked) (reporter `github`,
//!    the alert's URL); a store failure is 503 `store_unavailable` (keys
//!    revoked before it stay revoked; GitHub sends the alert again, and
//!    they are then reported as known).
//! 8. 200 with GitHub's feedback array, one entry per match:
//!    `{"token_hash": <hex SHA-256 of the token>, "token_type": <the
//!    match's type>, "label": "true_positive" | "false_positive"}`. A token
//!    of one of the keyring's keys, revoked now or before, is a true
//!    positive; anything else (malformed, a bad checksum, unknown) a false
//!    one. The token itself is never sent back, nor logged.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use base64::Engine as _;
//! use keyward::leaks::{GithubAlerts, GithubKeyFetcher, KeyFetchError};
//! use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog, VerifyError};
//! use p256::ecdsa::{signature::Signer, Signature, SigningKey};
//! use p256::pkcs8::{EncodePublicKey, LineEnding};
//! use tower::ServiceExt;
//!
//! // GitHub's key list, here with a test key.
//! struct Fixed(String);
//! #[keyward::async_trait]
//! impl GithubKeyFetcher for Fixed {
//!     async fn fetch(&self) -> Result<Vec<u8>, KeyFetchError> {
//!         Ok(self.0.clone().into_bytes())
//!     }
//! }
//! let github = SigningKey::from_slice(&[7; 32])?;
//! let pem = github.verifying_key().to_public_key_pem(LineEnding::LF)?;
//! let list = serde_json::json!({"public_keys": [
//!     {"key_identifier": "k1", "key": pem, "is_current": true}
//! ]});
//!
//! let keyring = Keyring::builder()
//!     .store(MemoryStore::new())
//!     .kind(KeyKind::new("acme_pk", ScopeCatalog::builder().build()?)?)
//!     .build()?;
//! let issued = keyring.issue(NewKey::new("acme_pk", "org_1", "CI")).await?;
//! let alerts = GithubAlerts::builder(keyring.clone())
//!     .fetcher(Fixed(list.to_string()))
//!     .build()?;
//!
//! // GitHub found the token in a public repository.
//! let body = serde_json::json!([{
//!     "token": issued.token.expose_secret(),
//!     "type": "acme_api_key",
//!     "url": "https://github.com/octo/app/blob/1a2b/.env",
//!     "source": "content"
//! }])
//! .to_string();
//! let signature: Signature = github.sign(body.as_bytes());
//! let request = http::Request::post("/github/secret-scanning")
//!     .header("Github-Public-Key-Identifier", "k1")
//!     .header(
//!         "Github-Public-Key-Signature",
//!         base64::engine::general_purpose::STANDARD.encode(signature.to_der()),
//!     )
//!     .body(body)?;
//! let response = alerts.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! let feedback: serde_json::Value = serde_json::from_str(response.body())?;
//! assert_eq!(feedback[0]["label"], "true_positive");
//! assert_eq!(feedback[0]["token_type"], "acme_api_key");
//! assert_eq!(feedback[0]["token_hash"].as_str().map(str::len), Some(64));
//!
//! // Revoked at once.
//! let refused = keyring.verify(issued.token.expose_secret()).await;
//! assert!(matches!(refused, Err(VerifyError::Revoked)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod alert;
mod keys;
mod service;

use http::header::ALLOW;
use http::{HeaderValue, Response, StatusCode};

pub use keys::{GithubKeyFetcher, HttpKeyFetcher, KeyFetchError, GITHUB_KEYS_URL};
pub use service::{
    GithubAlerts, GithubAlertsBuilder, ResponseFuture, DEFAULT_BODY_LIMIT, DEFAULT_MAX_TOKENS,
};

use crate::error::StoreError;

/// The header naming the key that signed an alert.
pub const KEY_ID_HEADER: &str = "github-public-key-identifier";
/// The header carrying an alert's signature (base64 of ASN.1 DER).
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// Why an alert was refused. Each variant has an HTTP status
/// ([`status`](Self::status)), a stable code ([`code`](Self::code)) and a
/// JSON response ([`to_response`](Self::to_response)): `{"error": code,
/// "message": text}`.
///
/// | error | status | `error` code |
/// |---|---|---|
/// | `MethodNotAllowed` | 405 (with `Allow: POST`) | `method_not_allowed` |
/// | `MissingHeader` | 400 | `missing_header` |
/// | `DuplicateHeader` | 400 | `duplicate_header` |
/// | `MalformedHeader` | 400 | `malformed_header` |
/// | `BodyTooLarge` | 413 | `alert_too_large` |
/// | `BodyUnreadable` | 400 | `body_unreadable` |
/// | `UnknownKey` | 401 | `unknown_key` |
/// | `BadSignature` | 401 | `bad_signature` |
/// | `InvalidAlert` | 400 | `invalid_alert` |
/// | `TooManyTokens` | 413 | `too_many_tokens` |
/// | `KeysUnavailable` | 503 | `keys_unavailable` |
/// | `Store` | 503 | `store_unavailable` |
///
/// ```
/// use keyward::leaks::AlertError;
///
/// let err = AlertError::BadSignature;
/// assert_eq!(err.status(), 401);
/// assert_eq!(err.code(), "bad_signature");
/// let response = err.to_response();
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert_eq!(
///     response.body(),
///     r#"{"error":"bad_signature","message":"the alert signature does not verify"}"#
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// Not a `POST`.
    #[error("alerts are sent with POST")]
    MethodNotAllowed,
    /// A signature header is missing.
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    /// A signature header is repeated.
    #[error("the {0} header is repeated")]
    DuplicateHeader(&'static str),
    /// A signature header is not text, not a key identifier, or not
    /// base64.
    #[error("the {0} header is malformed")]
    MalformedHeader(&'static str),
    /// The body is longer than the limit.
    #[error("the alert body is too large")]
    BodyTooLarge,
    /// The body could not be read (the connection broke).
    #[error("the alert body could not be read")]
    BodyUnreadable,
    /// No key GitHub publishes has this identifier.
    #[error("no GitHub secret-scanning key has this identifier")]
    UnknownKey,
    /// The signature does not verify under the named key.
    #[error("the alert signature does not verify")]
    BadSignature,
    /// The body is not a JSON array of matches with a `token` and a
    /// `type`.
    #[error("the alert body is not a list of matches")]
    InvalidAlert,
    /// The alert reports more tokens than the bound.
    #[error("the alert reports too many tokens")]
    TooManyTokens,
    /// GitHub's keys could not be fetched and the identifier is not known.
    #[error("GitHub's secret-scanning keys are unavailable")]
    KeysUnavailable,
    /// The key store failed (fail closed: GitHub sends the alert again).
    #[error("the key store failed")]
    Store(#[source] StoreError),
}

impl AlertError {
    /// The HTTP status (see the table above).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            AlertError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AlertError::MissingHeader(_)
            | AlertError::DuplicateHeader(_)
            | AlertError::MalformedHeader(_)
            | AlertError::BodyUnreadable
            | AlertError::InvalidAlert => StatusCode::BAD_REQUEST,
            AlertError::BodyTooLarge | AlertError::TooManyTokens => StatusCode::PAYLOAD_TOO_LARGE,
            AlertError::UnknownKey | AlertError::BadSignature => StatusCode::UNAUTHORIZED,
            AlertError::KeysUnavailable | AlertError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code of the body's `error` field (see the table above).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            AlertError::MethodNotAllowed => "method_not_allowed",
            AlertError::MissingHeader(_) => "missing_header",
            AlertError::DuplicateHeader(_) => "duplicate_header",
            AlertError::MalformedHeader(_) => "malformed_header",
            AlertError::BodyTooLarge => "alert_too_large",
            AlertError::BodyUnreadable => "body_unreadable",
            AlertError::UnknownKey => "unknown_key",
            AlertError::BadSignature => "bad_signature",
            AlertError::InvalidAlert => "invalid_alert",
            AlertError::TooManyTokens => "too_many_tokens",
            AlertError::KeysUnavailable => "keys_unavailable",
            AlertError::Store(_) => "store_unavailable",
        }
    }

    /// The JSON error response: status, `{"error": code, "message":
    /// text}`, `Content-Type: application/json`, `Cache-Control:
    /// no-store`, and `Allow: POST` for a 405. The message is the error's
    /// `Display` (a store's cause stays in logs).
    #[must_use]
    pub fn to_response(&self) -> Response<String> {
        let mut response =
            crate::http::errors::respond(self.status(), self.code(), &self.to_string());
        if matches!(self, AlertError::MethodNotAllowed) {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}
