//! Every way the HTTP layers refuse a request, and how a refusal becomes a
//! response: the one place where errors map to statuses and codes.
//!
//! | status | `error` code | `WWW-Authenticate` |
//! |---|---|---|
//! | 400 | `invalid_request` | `Bearer realm="…", error="invalid_request"` |
//! | 400 | `tenant_required` | — |
//! | 401 | `missing_credentials` | `Bearer realm="…"` (no `error`, RFC 6750 §3.1) |
//! | 401 | `invalid_token` | `Bearer realm="…", error="invalid_token"` |
//! | 401 | `token_expired` | `Bearer realm="…", error="invalid_token"` |
//! | 401 | `token_revoked` | `Bearer realm="…", error="invalid_token"` |
//! | 403 | `insufficient_scope` | `Bearer realm="…", error="insufficient_scope", scope="…"` |
//! | 402 | `credits_exhausted` | — (`X-Credits-Remaining`; `Retry-After` until the next refill, if any) |
//! | 403 | `tenant_mismatch` | — |
//! | 403 | `ip_not_allowed` | — |
//! | 429 | `rate_limited` | — (`Retry-After`, `RateLimit-Policy`, `RateLimit`) |
//! | 500 | `auth_misconfigured` | — |
//! | 503 | `auth_unavailable` | — |
//!
//! The keyring's own errors, [`IssueError`](crate::IssueError) and
//! [`ManageError`](crate::ManageError), render in the same shape (their
//! `status`, `code` and `to_response`); their codes are listed with the
//! management router (`keyward::manage`, feature `axum`).
//!
//! The body is `{"error": "<code>", "message": "<for people>"}` with
//! `Content-Type: application/json` and `Cache-Control: no-store`; a 429 (and
//! a 402 whose key refills) adds `"retry_after": <seconds>`, the same whole
//! seconds (rounded up) as its `Retry-After` header; a 402 adds
//! `"credits_remaining"`.
//!
//! ```
//! use keyward::http::Rejection;
//!
//! let response = Rejection::TokenRevoked.to_response("api");
//! assert_eq!(response.status(), 401);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="invalid_token""#,
//! );
//! let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
//! assert_eq!(body["error"], "token_revoked");
//! ```

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};

use crate::error::VerifyError;
use crate::http::external::ExternalAuthError;
use crate::ratelimit::{ceil_secs, HeaderText, LimitError, RateDecision};

/// The IETF `RateLimit-Policy` header (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The IETF `RateLimit` header (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The header that shows a metered key's remaining credits on every
/// response the authentication layer saw (see [`crate::usage`]).
pub const CREDITS_REMAINING: HeaderName = HeaderName::from_static("x-credits-remaining");

/// The realm of the default rendering.
pub const DEFAULT_REALM: &str = "api";

/// Why a request is refused. Each variant has a fixed status and a stable
/// machine-readable code (see the [module docs](self) for the table).
///
/// New variants may be added in minor releases.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// 400 `invalid_request`: malformed or ambiguous credentials (repeated
    /// headers, two different tokens, non-visible-ASCII bytes, empty or
    /// oversized values, `Bearer` without a token) or a malformed tenant
    /// header. The text says which, for people.
    InvalidRequest(&'static str),
    /// 400 `tenant_required`: a principal of several tenants named none.
    TenantRequired,
    /// 401 `missing_credentials`: none of the credential sources the layer
    /// reads carries a credential. `accepted` names those sources for the
    /// message (`"X-Api-Key or Authorization: Bearer"`).
    MissingCredentials {
        /// The sources, for people.
        accepted: Cow<'static, str>,
    },
    /// 401 `invalid_token`: malformed, bad checksum, or unknown.
    InvalidToken,
    /// 401 `token_expired`.
    TokenExpired,
    /// 401 `token_revoked`.
    TokenRevoked,
    /// 403 `insufficient_scope`.
    InsufficientScope {
        /// The scopes the route requires, space separated (RFC 6750 `scope`).
        scope: String,
    },
    /// 403 `tenant_mismatch`: the tenant header names a tenant the principal
    /// does not belong to.
    TenantMismatch,
    /// 403 `ip_not_allowed`: the key has an
    /// [IP allowlist](crate::usage::IpAllowlist) and the client address is
    /// outside it. Decided after verification, before any quota or credit
    /// is spent.
    IpNotAllowed,
    /// 402 `credits_exhausted`: the key's [credits](crate::usage::Credits)
    /// do not cover the request's cost. The response carries
    /// `X-Credits-Remaining`, and when the key refills, `Retry-After` (and
    /// `"retry_after"` in the body) until the next refill.
    CreditsExhausted {
        /// Credits left (fewer than the cost).
        remaining: u64,
        /// Seconds until the next refill, if the key refills.
        retry_after: Option<u64>,
    },
    /// 429 `rate_limited`: the key, client IP or account used up its quota.
    /// The response carries `Retry-After` (whole seconds, rounded up), the
    /// `RateLimit-Policy` and `RateLimit` headers of the decision, and
    /// `"retry_after"` in the body.
    RateLimited(RateDecision),
    /// 429 `rate_limited`: the client (by network) failed to authenticate
    /// more often than [`AuthLayer`](crate::http::AuthLayer)'s failure
    /// budget allows; refused before its credential is even parsed. Headers
    /// and body field as for [`RateLimited`](Self::RateLimited), with its own
    /// message.
    TooManyFailures(RateDecision),
    /// 503 `auth_unavailable`: the key store, the external authenticator or
    /// the rate limiter failed. Never grants access.
    AuthUnavailable,
    /// 500 `auth_misconfigured`: a scope check or an extractor ran on a
    /// request no [`AuthLayer`](crate::http::AuthLayer) authenticated (the
    /// layer is missing, or inside the check). The server's fault, never the
    /// client's: nothing passes, and an error naming the fix is logged.
    AuthMisconfigured,
}

impl Rejection {
    /// 401 `missing_credentials` naming the default sources, `X-Api-Key`
    /// and `Authorization: Bearer`.
    ///
    /// ```
    /// use keyward::http::Rejection;
    ///
    /// assert_eq!(
    ///     Rejection::missing_credentials().message(),
    ///     "credentials are required: send X-Api-Key or Authorization: Bearer",
    /// );
    /// ```
    #[must_use]
    pub fn missing_credentials() -> Self {
        Rejection::MissingCredentials {
            accepted: Cow::Borrowed("X-Api-Key or Authorization: Bearer"),
        }
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::InvalidRequest(_) | Rejection::TenantRequired => StatusCode::BAD_REQUEST,
            Rejection::MissingCredentials { .. }
            | Rejection::InvalidToken
            | Rejection::TokenExpired
            | Rejection::TokenRevoked => StatusCode::UNAUTHORIZED,
            Rejection::InsufficientScope { .. }
            | Rejection::TenantMismatch
            | Rejection::IpNotAllowed => StatusCode::FORBIDDEN,
            Rejection::CreditsExhausted { .. } => StatusCode::PAYMENT_REQUIRED,
            Rejection::RateLimited(_) | Rejection::TooManyFailures(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Rejection::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::AuthMisconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code of the body's `error` field.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::InvalidRequest(_) => "invalid_request",
            Rejection::TenantRequired => "tenant_required",
            Rejection::MissingCredentials { .. } => "missing_credentials",
            Rejection::InvalidToken => "invalid_token",
            Rejection::TokenExpired => "token_expired",
            Rejection::TokenRevoked => "token_revoked",
            Rejection::InsufficientScope { .. } => "insufficient_scope",
            Rejection::TenantMismatch => "tenant_mismatch",
            Rejection::IpNotAllowed => "ip_not_allowed",
            Rejection::CreditsExhausted { .. } => "credits_exhausted",
            Rejection::RateLimited(_) | Rejection::TooManyFailures(_) => "rate_limited",
            Rejection::AuthUnavailable => "auth_unavailable",
            Rejection::AuthMisconfigured => "auth_misconfigured",
        }
    }

    /// A message for people; never contains credential material.
    #[must_use]
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Rejection::InvalidRequest(why) => Cow::Borrowed(why),
            Rejection::TenantRequired => Cow::Borrowed(
                "this principal belongs to several tenants: name one in the tenant header",
            ),
            Rejection::MissingCredentials { accepted } => {
                Cow::Owned(format!("credentials are required: send {accepted}"))
            }
            Rejection::InvalidToken => Cow::Borrowed("the token is malformed or unknown"),
            Rejection::TokenExpired => Cow::Borrowed("the token has expired"),
            Rejection::TokenRevoked => Cow::Borrowed("the token has been revoked"),
            Rejection::InsufficientScope { scope } => {
                Cow::Owned(format!("this route requires the scope(s): {scope}"))
            }
            Rejection::TenantMismatch => {
                Cow::Borrowed("the credentials do not belong to the requested tenant")
            }
            Rejection::IpNotAllowed => {
                Cow::Borrowed("this key may not be used from this client address")
            }
            Rejection::CreditsExhausted { remaining, .. } => Cow::Owned(format!(
                "this key's credits do not cover the request ({remaining} remaining)"
            )),
            Rejection::RateLimited(decision) => Cow::Owned(format!(
                "rate limit of {} requests per {} s exceeded; retry in {} s",
                decision.limit,
                ceil_secs(decision.window),
                retry_after_secs(decision),
            )),
            Rejection::TooManyFailures(decision) => Cow::Owned(format!(
                "too many failed authentications from this client; retry in {} s",
                retry_after_secs(decision),
            )),
            Rejection::AuthUnavailable => {
                Cow::Borrowed("authentication is temporarily unavailable; retry later")
            }
            Rejection::AuthMisconfigured => Cow::Borrowed(
                "the server's authentication is misconfigured; this is not the client's fault",
            ),
        }
    }

    /// The seconds a client should wait before retrying (`Retry-After`), for
    /// a rejection that has them.
    ///
    /// ```
    /// use keyward::http::Rejection;
    /// use keyward::ratelimit::Quota;
    ///
    /// let quota = Quota::per_minute(5).unwrap();
    /// let (_, tat) = quota.step(None, time::OffsetDateTime::UNIX_EPOCH);
    /// let (mut decision, mut tat) = quota.step(Some(tat), time::OffsetDateTime::UNIX_EPOCH);
    /// for _ in 0..4 {
    ///     (decision, tat) = quota.step(Some(tat), time::OffsetDateTime::UNIX_EPOCH);
    /// }
    /// assert!(!decision.allowed);
    /// let rejection = Rejection::RateLimited(decision);
    /// assert_eq!(rejection.retry_after(), Some(12));
    /// assert_eq!(rejection.status(), 429);
    /// let response = rejection.to_response("api");
    /// assert_eq!(response.headers()["retry-after"], "12");
    /// assert_eq!(response.headers()["ratelimit-policy"], r#""default";q=5;w=60"#);
    /// assert_eq!(response.headers()["ratelimit"], r#""default";r=0;t=60"#);
    /// let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
    /// assert_eq!(body["error"], "rate_limited");
    /// assert_eq!(body["retry_after"], 12);
    /// ```
    #[must_use]
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Rejection::RateLimited(decision) | Rejection::TooManyFailures(decision) => {
                Some(retry_after_secs(decision))
            }
            Rejection::CreditsExhausted { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The RFC 6750 `error` attribute of the challenge, if the rejection
    /// carries one.
    fn rfc6750_error(&self) -> Option<&'static str> {
        match self {
            Rejection::InvalidRequest(_) => Some("invalid_request"),
            Rejection::InvalidToken | Rejection::TokenExpired | Rejection::TokenRevoked => {
                Some("invalid_token")
            }
            Rejection::InsufficientScope { .. } => Some("insufficient_scope"),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge for `realm`, or `None` where the
    /// table in the [module docs](self) has none.
    ///
    /// ```
    /// use keyward::http::Rejection;
    ///
    /// assert_eq!(
    ///     Rejection::missing_credentials().www_authenticate("api").unwrap(),
    ///     r#"Bearer realm="api""#,
    /// );
    /// assert_eq!(Rejection::AuthUnavailable.www_authenticate("api"), None);
    /// ```
    #[must_use]
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        if !matches!(self, Rejection::MissingCredentials { .. }) && self.rfc6750_error().is_none() {
            return None;
        }
        let mut challenge = format!("Bearer realm=\"{}\"", quoted_string_safe(realm));
        if let Some(error) = self.rfc6750_error() {
            challenge.push_str(&format!(", error=\"{error}\""));
        }
        if let Rejection::InsufficientScope { scope } = self {
            challenge.push_str(&format!(", scope=\"{}\"", quoted_string_safe(scope)));
        }
        Some(challenge)
    }

    /// The JSON body: `{"error": code, "message": text}`, plus
    /// `"retry_after": seconds` for a 429.
    #[must_use]
    pub fn json_body(&self) -> String {
        let mut body = serde_json::json!({ "error": self.code(), "message": self.message() });
        if let Some(seconds) = self.retry_after() {
            body["retry_after"] = seconds.into();
        }
        if let Rejection::CreditsExhausted { remaining, .. } = self {
            body["credits_remaining"] = (*remaining).into();
        }
        body.to_string()
    }

    /// The default rendering: status, `WWW-Authenticate` for `realm`, JSON
    /// body, and for a 429 `Retry-After` and the RateLimit headers. Map the body with `response.map(Into::into)` for any body type
    /// that converts from `String`.
    pub fn to_response(&self, realm: &str) -> Response<String> {
        let mut response = json_error(self.status(), self.json_body());
        let headers = response.headers_mut();
        if let Some(challenge) = self.www_authenticate(realm) {
            // Safe by construction: `quoted_string_safe` keeps visible ASCII only.
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(WWW_AUTHENTICATE, value);
            }
        }
        if let Rejection::RateLimited(decision) | Rejection::TooManyFailures(decision) = self {
            rate_limit_headers(headers, decision);
        }
        if let Rejection::CreditsExhausted {
            remaining,
            retry_after,
        } = self
        {
            headers.insert(CREDITS_REMAINING, (*remaining).into());
            if let Some(seconds) = retry_after {
                headers.insert(RETRY_AFTER, (*seconds).into());
            }
        }
        response
    }
}

/// The response every refusal of the crate shares (a [`Rejection`], and
/// the keyring's errors in the management router): `status`, the JSON
/// `body`, `Content-Type: application/json`, `Cache-Control: no-store`.
pub(crate) fn json_error(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Sets the `RateLimit-Policy` and `RateLimit` headers of `decision`, and
/// `Retry-After` when it is a denial. The layers call it on every response a
/// limiter saw, allowed or not, whatever the renderer did.
pub(crate) fn rate_limit_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    if !decision.allowed {
        headers.insert(RETRY_AFTER, retry_after_secs(decision).into());
    }
    // Digits, quotes, `;` and `=` only: always a valid header value.
    if let Some(value) = policy_value(decision.policy()) {
        headers.insert(RATELIMIT_POLICY, value);
    }
    if let Some(value) = header_value(decision.state()) {
        headers.insert(RATELIMIT, value);
    }
}

/// `text` as a header value (its one allocation is the value's own).
fn header_value(text: HeaderText) -> Option<HeaderValue> {
    HeaderValue::from_bytes(text.bytes(&mut [0; HeaderText::MAX_LEN])).ok()
}

thread_local! {
    /// The `RateLimit-Policy` values this thread sent last, by quota: the
    /// value depends on the quota alone, and a service has few, so most
    /// responses clone one (a reference count) instead of building it.
    static POLICIES: RefCell<[Option<(HeaderText, HeaderValue)>; 4]> =
        const { RefCell::new([const { None }; 4]) };
}

/// [`header_value`] of a `RateLimit-Policy` text, from [`POLICIES`] when
/// it was sent before.
fn policy_value(text: HeaderText) -> Option<HeaderValue> {
    POLICIES
        .with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let slot = &mut cache[text.slot() % 4];
            match slot {
                Some((cached, value)) if *cached == text => Some(value.clone()),
                _ => {
                    let value = header_value(text)?;
                    *slot = Some((text, value.clone()));
                    Some(value)
                }
            }
        })
        .or_else(|| header_value(text))
}

/// Renders `rejection`, with the rate limit headers of `decision` when a
/// limiter saw the request (a 429, or a refusal after an admitted check).
pub(crate) fn render_limited(
    renderer: &Renderer,
    rejection: &Rejection,
    decision: Option<RateDecision>,
) -> Response<String> {
    let mut response = renderer.render(rejection);
    if let Some(decision) = decision {
        rate_limit_headers(response.headers_mut(), &decision);
    }
    if let Rejection::CreditsExhausted { remaining, .. } = rejection {
        // Whatever the renderer: the header is part of the contract.
        response
            .headers_mut()
            .insert(CREDITS_REMAINING, (*remaining).into());
    }
    response
}

/// `Retry-After` in whole seconds, rounded up, at least 1 for a denial.
fn retry_after_secs(decision: &RateDecision) -> u64 {
    ceil_secs(decision.retry_after.unwrap_or(decision.reset)).max(1)
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.status())
    }
}

impl std::error::Error for Rejection {}

/// Drops what cannot appear in a quoted-string header value: quotes,
/// backslashes, and anything but visible ASCII and space.
fn quoted_string_safe(s: &str) -> Cow<'_, str> {
    let ok = |c: char| (c == ' ' || c.is_ascii_graphic()) && c != '"' && c != '\\';
    if s.chars().all(ok) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().filter(|&c| ok(c)).collect())
    }
}

impl From<&VerifyError> for Rejection {
    fn from(err: &VerifyError) -> Self {
        match err {
            VerifyError::Malformed(_) | VerifyError::Unknown => Rejection::InvalidToken,
            VerifyError::Expired => Rejection::TokenExpired,
            VerifyError::Revoked => Rejection::TokenRevoked,
            VerifyError::Store(_) => Rejection::AuthUnavailable,
        }
    }
}

impl From<&LimitError> for Rejection {
    /// A limiter that cannot decide never admits: 503.
    fn from(err: &LimitError) -> Self {
        tracing::error!(target: "keyward::http", error = %err, "rate limiter failed; refusing the request");
        Rejection::AuthUnavailable
    }
}

impl From<&ExternalAuthError> for Rejection {
    fn from(err: &ExternalAuthError) -> Self {
        match err {
            ExternalAuthError::Invalid => Rejection::InvalidToken,
            ExternalAuthError::Expired => Rejection::TokenExpired,
            ExternalAuthError::Unavailable(_) => Rejection::AuthUnavailable,
        }
    }
}

/// Turns a [`Rejection`] into a response. Implemented by [`JsonRejections`]
/// (the default) and by any `Fn(&Rejection) -> Response<String>` closure.
///
/// ```
/// use http::Response;
/// use keyward::http::{AuthLayer, Rejection};
/// # fn layer(keyring: keyward::Keyring) -> AuthLayer {
/// AuthLayer::new(keyring).renderer(|r: &Rejection| {
///     let mut response = r.to_response("players");
///     *response.body_mut() = format!("{{\"code\":\"{}\"}}", r.code());
///     response
/// })
/// # }
/// ```
pub trait RenderRejection: Send + Sync + 'static {
    /// The response for this rejection.
    fn render(&self, rejection: &Rejection) -> Response<String>;
}

impl<F> RenderRejection for F
where
    F: Fn(&Rejection) -> Response<String> + Send + Sync + 'static,
{
    fn render(&self, rejection: &Rejection) -> Response<String> {
        self(rejection)
    }
}

/// The default rendering ([`Rejection::to_response`]) with a realm.
#[derive(Debug, Clone)]
pub struct JsonRejections {
    realm: Arc<str>,
}

impl JsonRejections {
    /// Renders with this realm. Quotes, backslashes and characters outside
    /// visible ASCII are dropped from it.
    #[must_use]
    pub fn new(realm: &str) -> Self {
        JsonRejections {
            realm: Arc::from(quoted_string_safe(realm)),
        }
    }

    /// The realm.
    #[must_use]
    pub fn realm(&self) -> &str {
        &self.realm
    }
}

impl Default for JsonRejections {
    fn default() -> Self {
        JsonRejections::new(DEFAULT_REALM)
    }
}

impl RenderRejection for JsonRejections {
    fn render(&self, rejection: &Rejection) -> Response<String> {
        rejection.to_response(&self.realm)
    }
}

/// The renderer the authentication layer puts into request extensions, so
/// the scope layer and the extractors render the same way.
#[derive(Clone)]
pub(crate) struct Renderer(Arc<dyn RenderRejection>);

impl Renderer {
    pub(crate) fn new(render: impl RenderRejection) -> Self {
        Renderer(Arc::new(render))
    }

    /// The renderer of a request's authentication layer, or the default.
    pub(crate) fn of(extensions: &http::Extensions) -> Self {
        extensions.get::<Renderer>().cloned().unwrap_or_default()
    }

    pub(crate) fn render<B: From<String>>(&self, rejection: &Rejection) -> Response<B> {
        tracing::debug!(target: "keyward::http", code = rejection.code(), status = %rejection.status(), "request rejected");
        self.0.render(rejection).map(B::from)
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new(JsonRejections::default())
    }
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Renderer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy values a thread keeps are per quota: each response gets
    /// its own quota's, whatever was sent before, colliding slots included.
    #[test]
    fn rate_limit_headers_are_each_decisions_own() {
        let decision = |limit: u32, window: u64, remaining: u32| RateDecision {
            allowed: true,
            limit,
            window: std::time::Duration::from_secs(window),
            remaining,
            reset: std::time::Duration::from_millis(1500),
            retry_after: None,
        };
        let cases = [
            (
                decision(100, 60, 99),
                r#""default";q=100;w=60"#,
                r#""default";r=99;t=2"#,
            ),
            (
                decision(3, 60, 0),
                r#""default";q=3;w=60"#,
                r#""default";r=0;t=2"#,
            ),
            (
                decision(100, 60, 7),
                r#""default";q=100;w=60"#,
                r#""default";r=7;t=2"#,
            ),
            // Slot 100 % 4 == 104 % 4: the same slot, another quota.
            (
                decision(104, 60, 1),
                r#""default";q=104;w=60"#,
                r#""default";r=1;t=2"#,
            ),
            (
                decision(100, 3600, 0),
                r#""default";q=100;w=3600"#,
                r#""default";r=0;t=2"#,
            ),
            (
                decision(u32::MAX, u64::MAX, u32::MAX),
                "\"default\";q=4294967295;w=18446744073709551615",
                "\"default\";r=4294967295;t=2",
            ),
            (
                decision(100, 60, 0),
                r#""default";q=100;w=60"#,
                r#""default";r=0;t=2"#,
            ),
        ];
        for (decision, policy, state) in cases {
            let mut headers = HeaderMap::new();
            rate_limit_headers(&mut headers, &decision);
            assert_eq!(headers[RATELIMIT_POLICY], policy);
            assert_eq!(headers[RATELIMIT], state);
            assert_eq!(decision.policy_value(), policy);
            assert_eq!(decision.value(), state);
        }
    }

    #[test]
    fn realm_cannot_break_out_of_its_quotes() {
        let r = JsonRejections::new("a\"b\\c\nd");
        assert_eq!(r.realm(), "abcd");
    }

    #[test]
    fn display_and_debug_name_the_code_not_the_details() {
        assert_eq!(
            Rejection::TokenRevoked.to_string(),
            "token_revoked (401 Unauthorized)"
        );
        assert_eq!(
            Rejection::InvalidRequest("why").to_string(),
            "invalid_request (400 Bad Request)"
        );
        assert_eq!(format!("{:?}", Renderer::default()), "Renderer");
    }

    #[test]
    fn insufficient_scope_challenge_lists_the_scopes() {
        let r = Rejection::InsufficientScope {
            scope: "games:read games:write".into(),
        };
        assert_eq!(
            r.www_authenticate("x").unwrap(),
            r#"Bearer realm="x", error="insufficient_scope", scope="games:read games:write""#
        );
        assert_eq!(r.status(), 403);
    }
}
