//! JWT sign-in for dashboards (feature `jwt`): [`JwtAuthenticator`], an
//! [`ExternalAuthenticator`] that verifies JWTs against an issuer's JWKS,
//! with a [`cognito`](JwtAuthenticator::cognito) preset.
//!
//! - **Algorithms from an allowlist** (RS256 by default; ES256, EdDSA and
//!   the other RSA and ECDSA variants on request). `alg: none`, HMAC (never
//!   offered: a JWKS holds public keys) and anything outside the list are
//!   `invalid_token`, and a key is only used for the algorithm family its
//!   type and its own `alg` allow.
//! - **Claims checked after the signature**: `exp` (required), `nbf`,
//!   `iat` with a leeway, `iss` (required), `sub` (required), the audience
//!   (`aud`, or Cognito access tokens' `client_id`) and required claim
//!   values (Cognito's `token_use`). An expired token is 401
//!   `token_expired`, any other failure 401 `invalid_token`.
//! - **A JWKS cache** ([`JwksPolicy`]): refreshed per `Cache-Control`
//!   within bounds, refetched on an unknown `kid` at most once per interval
//!   with concurrent callers coalesced into one fetch, known keys served
//!   through an issuer outage up to a bound, then 503 `auth_unavailable`.
//! - **Pure-Rust crypto, chosen explicitly**: signatures are checked by
//!   `jsonwebtoken`'s RustCrypto provider, called directly (never the
//!   process-wide provider, so no run-time panic for a missing or
//!   conflicting one); the default fetcher ([`HttpFetcher`]) is reqwest
//!   over rustls with the ring provider configured here.
//!
//! Nothing of a token or its claims is logged but the subject.
//!
//! ```no_run
//! use std::sync::Arc;
//! use keyward::http::{AuthLayer, ExternalAuthError, ExternalPrincipal};
//! use keyward::jwt::{CognitoToken, JwtAuthenticator};
//! use keyward::{Keyring, ScopeCatalog, TenantId};
//!
//! # fn demo(keyring: Keyring, catalog: Arc<ScopeCatalog>) -> Result<(), Box<dyn std::error::Error>> {
//! let dashboard = JwtAuthenticator::cognito(
//!     "eu-west-1",
//!     "eu-west-1_AbCdEf123",
//!     ["3n4b5urk1ft4fl3mg5e62d9ado"],
//!     CognitoToken::Access,
//! )?
//! .principal(move |claims| {
//!     // Properties from a group per property, scopes from the `scope` claim.
//!     let tenants = claims.groups().filter_map(|g| TenantId::parse(g.strip_prefix("property:")?));
//!     let scopes = catalog.grant_known(claims.scopes());
//!     Ok(ExternalPrincipal::new(claims.subject(), tenants, scopes, catalog.clone()))
//! })
//! .build()?;
//! // JWTs only on these routes: no API key.
//! let layer = AuthLayer::new(keyring).accept_no_kinds().external(dashboard);
//! # let _ = layer; Ok(()) }
//! ```
//!
//! [`ExternalAuthenticator`]: crate::http::ExternalAuthenticator

mod compact;
mod jwks;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::clock::{Clock, SystemClock};
use crate::http::{ExternalAuthError, ExternalAuthenticator, ExternalPrincipal};

pub use jwks::{HttpFetcher, JwksFetchError, JwksFetcher, JwksPolicy, JwksResponse, MAX_JWKS_LEN};

/// A JWS signature algorithm keyward verifies. There is no `none` and no
/// HMAC: a JWKS holds public keys.
///
/// ```
/// use keyward::jwt::JwtAlgorithm;
///
/// assert_eq!(JwtAlgorithm::from_name("ES256"), Some(JwtAlgorithm::ES256));
/// assert_eq!(JwtAlgorithm::from_name("none"), None);
/// assert_eq!(JwtAlgorithm::from_name("HS256"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(clippy::upper_case_acronyms)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Cognito, Auth0).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    /// The algorithm a JOSE header's `alg` names (exact, case-sensitive).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => JwtAlgorithm::RS256,
            "RS384" => JwtAlgorithm::RS384,
            "RS512" => JwtAlgorithm::RS512,
            "PS256" => JwtAlgorithm::PS256,
            "PS384" => JwtAlgorithm::PS384,
            "PS512" => JwtAlgorithm::PS512,
            "ES256" => JwtAlgorithm::ES256,
            "ES384" => JwtAlgorithm::ES384,
            "EdDSA" => JwtAlgorithm::EdDSA,
            _ => return None,
        })
    }

    /// The `alg` name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::RS384 => "RS384",
            JwtAlgorithm::RS512 => "RS512",
            JwtAlgorithm::PS256 => "PS256",
            JwtAlgorithm::PS384 => "PS384",
            JwtAlgorithm::PS512 => "PS512",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::ES384 => "ES384",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    fn backend(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            JwtAlgorithm::RS256 => A::RS256,
            JwtAlgorithm::RS384 => A::RS384,
            JwtAlgorithm::RS512 => A::RS512,
            JwtAlgorithm::PS256 => A::PS256,
            JwtAlgorithm::PS384 => A::PS384,
            JwtAlgorithm::PS512 => A::PS512,
            JwtAlgorithm::ES256 => A::ES256,
            JwtAlgorithm::ES384 => A::ES384,
            JwtAlgorithm::EdDSA => A::EdDSA,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The verified claims of a JWT, given to the principal mapping. Its
/// `Debug` shows the subject only.
///
/// ```
/// # use keyward::jwt::JwtClaims;
/// fn properties(claims: &JwtClaims) -> Vec<String> {
///     // A custom claim listing properties: a JSON array, or one string
///     // of space- or comma-separated values.
///     claims.strings("custom:properties").map(str::to_owned).collect()
/// }
/// ```
#[derive(Clone)]
pub struct JwtClaims {
    subject: String,
    claims: Map<String, Value>,
}

impl JwtClaims {
    /// `sub` (always present: a token without it is refused).
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// A claim's raw JSON value.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// A string claim.
    #[must_use]
    pub fn string(&self, name: &str) -> Option<&str> {
        self.claims.get(name)?.as_str()
    }

    /// The strings of a claim that lists values: a JSON array (its
    /// non-string elements skipped), or one string split on spaces and
    /// commas (how `scope` and many custom claims are sent). Empty when
    /// the claim is absent or of another type.
    pub fn strings<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let (array, string) = match self.claims.get(name) {
            Some(Value::Array(items)) => (Some(items.iter().filter_map(Value::as_str)), None),
            Some(Value::String(s)) => (None, Some(s.split([' ', ',']).filter(|s| !s.is_empty()))),
            _ => (None, None),
        };
        array
            .into_iter()
            .flatten()
            .chain(string.into_iter().flatten())
    }

    /// The OAuth `scope` claim's scopes (space separated).
    pub fn scopes(&self) -> impl Iterator<Item = &str> + '_ {
        self.strings("scope")
    }

    /// Cognito's `cognito:groups`.
    pub fn groups(&self) -> impl Iterator<Item = &str> + '_ {
        self.strings("cognito:groups")
    }

    /// All claims.
    #[must_use]
    pub fn all(&self) -> &Map<String, Value> {
        &self.claims
    }
}

impl fmt::Debug for JwtClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtClaims")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Which Cognito token the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CognitoToken {
    /// Access tokens: `token_use` is `access`, `client_id` one of the app
    /// clients (they carry no `aud`), scopes in `scope`.
    Access,
    /// ID tokens: `token_use` is `id`, `aud` one of the app clients.
    Id,
}

/// Why a [`JwtAuthenticator`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// No issuer: `iss` is always checked.
    #[error("no issuer configured")]
    MissingIssuer,
    /// No audience check and no explicit
    /// [`any_audience`](JwtAuthenticatorBuilder::any_audience).
    #[error("no audience or client id configured (call any_audience() to accept any)")]
    MissingAudience,
    /// No [`principal`](JwtAuthenticatorBuilder::principal) mapping.
    #[error("no principal mapping configured")]
    MissingPrincipal,
    /// An empty algorithm list.
    #[error("no algorithm accepted")]
    NoAlgorithm,
    /// The JWKS URL is not `https://` (plain `http://` only to a loopback
    /// host), or the Cognito region or pool id is malformed.
    #[error("invalid JWKS URL or issuer: {0}")]
    InvalidUrl(String),
    /// The default fetcher could not be built.
    #[error(transparent)]
    Fetcher(#[from] JwksFetchError),
}

type PrincipalFn = dyn Fn(&JwtClaims) -> Result<ExternalPrincipal, ExternalAuthError> + Send + Sync;

/// Builds a [`JwtAuthenticator`]: see [`JwtAuthenticator::builder`].
#[must_use]
pub struct JwtAuthenticatorBuilder {
    jwks_url: String,
    issuer: Option<String>,
    audiences: Vec<String>,
    client_ids: Vec<String>,
    any_audience: bool,
    required: Vec<(String, String)>,
    algorithms: Vec<JwtAlgorithm>,
    leeway: Duration,
    policy: JwksPolicy,
    fetcher: Option<Arc<dyn JwksFetcher>>,
    clock: Arc<dyn Clock>,
    principal: Option<Arc<PrincipalFn>>,
}

impl JwtAuthenticatorBuilder {
    /// The issuer: `iss` must equal it exactly.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.to_owned());
        self
    }

    /// Accepted audiences: `aud` (a string or an array) must contain one.
    pub fn audience<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// Accepted OAuth client ids: the `client_id` claim must be one (Cognito
    /// access tokens name their app client there, not in `aud`).
    pub fn client_id<I, S>(mut self, client_ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.client_ids
            .extend(client_ids.into_iter().map(Into::into));
        self
    }

    /// Accept tokens for any audience. Only for an issuer that mints
    /// tokens for this API alone; without it, [`build`](Self::build)
    /// requires [`audience`](Self::audience) or
    /// [`client_id`](Self::client_id).
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// A claim that must be a string equal to `value` (e.g. `token_use`).
    pub fn require_claim(mut self, name: &str, value: &str) -> Self {
        self.required.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The accepted algorithms, replacing the default `[RS256]`.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = JwtAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self.algorithms.dedup();
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How the JWKS is cached and refreshed (default [`JwksPolicy::default`]).
    pub fn jwks_policy(mut self, policy: JwksPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Fetches the JWKS with this fetcher instead of [`HttpFetcher`].
    pub fn fetcher(mut self, fetcher: impl JwksFetcher) -> Self {
        self.fetcher = Some(Arc::new(fetcher));
        self
    }

    /// The clock for claim times and the cache (default: the system's).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Maps verified claims to the principal: subject, tenants (e.g. a
    /// custom claim or groups), scopes (e.g. `scope`) and the catalog. An
    /// error it returns is the request's answer (`Invalid`: 401).
    pub fn principal<F>(mut self, map: F) -> Self
    where
        F: Fn(&JwtClaims) -> Result<ExternalPrincipal, ExternalAuthError> + Send + Sync + 'static,
    {
        self.principal = Some(Arc::new(map));
        self
    }

    /// The authenticator.
    ///
    /// # Errors
    /// [`JwtConfigError`]: no issuer, no audience check (and no
    /// [`any_audience`](Self::any_audience)), no principal mapping, no
    /// algorithm, a JWKS URL that is neither `https://` nor loopback
    /// `http://`, or the default fetcher could not be built.
    pub fn build(self) -> Result<JwtAuthenticator, JwtConfigError> {
        check_url(&self.jwks_url)?;
        let issuer = self.issuer.ok_or(JwtConfigError::MissingIssuer)?;
        if issuer.is_empty() {
            return Err(JwtConfigError::MissingIssuer);
        }
        if self.audiences.is_empty() && self.client_ids.is_empty() && !self.any_audience {
            return Err(JwtConfigError::MissingAudience);
        }
        let principal = self.principal.ok_or(JwtConfigError::MissingPrincipal)?;
        if self.algorithms.is_empty() {
            return Err(JwtConfigError::NoAlgorithm);
        }
        let fetcher: Arc<dyn JwksFetcher> = match self.fetcher {
            Some(fetcher) => fetcher,
            None => Arc::new(HttpFetcher::new()?),
        };
        let jwks = Arc::new(jwks::Jwks::new(
            self.jwks_url,
            fetcher,
            self.policy,
            self.clock.clone(),
        ));
        Ok(JwtAuthenticator {
            inner: Arc::new(Inner {
                jwks,
                issuer,
                audiences: self.audiences,
                client_ids: self.client_ids,
                required: self.required,
                algorithms: self.algorithms,
                leeway: self.leeway.as_secs_f64(),
                clock: self.clock,
                principal,
            }),
        })
    }
}

impl fmt::Debug for JwtAuthenticatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticatorBuilder")
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// `https://`, or `http://` to a loopback host (a development issuer).
fn check_url(url: &str) -> Result<(), JwtConfigError> {
    let invalid = || JwtConfigError::InvalidUrl(url.to_owned());
    let uri: http::Uri = url.parse().map_err(|_| invalid())?;
    let host = uri.host().ok_or_else(invalid)?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        _ => Err(invalid()),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Verifies JWTs against an issuer's JWKS: an
/// [`ExternalAuthenticator`] for
/// [`AuthLayer::external`](crate::http::AuthLayer::external). Cheap to
/// clone; clones share the key cache. See the [module docs](self).
#[derive(Clone)]
pub struct JwtAuthenticator {
    inner: Arc<Inner>,
}

struct Inner {
    jwks: Arc<jwks::Jwks>,
    issuer: String,
    audiences: Vec<String>,
    client_ids: Vec<String>,
    required: Vec<(String, String)>,
    algorithms: Vec<JwtAlgorithm>,
    leeway: f64,
    clock: Arc<dyn Clock>,
    principal: Arc<PrincipalFn>,
}

/// Why a token was refused, for the log line (never the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Malformed(compact::Malformed),
    UnknownKey,
    KeyMismatch,
    Signature,
    Claims(&'static str),
    Expired,
}

impl JwtAuthenticator {
    /// A builder for tokens whose keys are at `jwks_url` (`https://`, or
    /// `http://` on loopback for a development issuer).
    ///
    /// ```
    /// use keyward::jwt::{JwtAlgorithm, JwtAuthenticator};
    ///
    /// let builder = JwtAuthenticator::builder("https://example.eu.auth0.com/.well-known/jwks.json")
    ///     .issuer("https://example.eu.auth0.com/")
    ///     .audience(["https://api.example.com"])
    ///     .algorithms([JwtAlgorithm::RS256]);
    /// # let _ = builder;
    /// ```
    pub fn builder(jwks_url: &str) -> JwtAuthenticatorBuilder {
        JwtAuthenticatorBuilder {
            jwks_url: jwks_url.to_owned(),
            issuer: None,
            audiences: Vec::new(),
            client_ids: Vec::new(),
            any_audience: false,
            required: Vec::new(),
            algorithms: vec![JwtAlgorithm::RS256],
            leeway: Duration::from_secs(60),
            policy: JwksPolicy::default(),
            fetcher: None,
            clock: Arc::new(SystemClock),
            principal: None,
        }
    }

    /// A builder preset for an Amazon Cognito user pool: the pool's JWKS
    /// URL and issuer (`https://cognito-idp.<region>.amazonaws.com/<pool>`),
    /// RS256, and the checks of the chosen token type against the app
    /// client ids (`client_id` and `token_use=access`, or `aud` and
    /// `token_use=id`). Add the [`principal`](JwtAuthenticatorBuilder::principal)
    /// mapping and build.
    ///
    /// # Errors
    /// [`JwtConfigError::InvalidUrl`] when the region or pool id is
    /// malformed (a pool id is `<region>_<id>`);
    /// [`JwtConfigError::MissingAudience`] with no client id.
    ///
    /// ```
    /// use keyward::jwt::{CognitoToken, JwtAuthenticator};
    ///
    /// let builder = JwtAuthenticator::cognito("us-east-1", "us-east-1_Ab12", ["client1"], CognitoToken::Id)?;
    /// assert!(JwtAuthenticator::cognito("us-east-1", "eu-west-1_Ab12", ["client1"], CognitoToken::Id).is_err());
    /// # let _ = builder;
    /// # Ok::<(), keyward::jwt::JwtConfigError>(())
    /// ```
    pub fn cognito<I, S>(
        region: &str,
        user_pool_id: &str,
        client_ids: I,
        token: CognitoToken,
    ) -> Result<JwtAuthenticatorBuilder, JwtConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let region_ok = !region.is_empty()
            && region.len() <= 32
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let pool_ok = user_pool_id
            .strip_prefix(region)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|id| {
                !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        if !region_ok || !pool_ok {
            return Err(JwtConfigError::InvalidUrl(format!(
                "{region} / {user_pool_id}"
            )));
        }
        let client_ids: Vec<String> = client_ids.into_iter().map(Into::into).collect();
        if client_ids.is_empty() {
            return Err(JwtConfigError::MissingAudience);
        }
        let issuer = format!("https://cognito-idp.{region}.amazonaws.com/{user_pool_id}");
        let builder =
            JwtAuthenticator::builder(&format!("{issuer}/.well-known/jwks.json")).issuer(&issuer);
        Ok(match token {
            CognitoToken::Access => builder
                .client_id(client_ids)
                .require_claim("token_use", "access"),
            CognitoToken::Id => builder
                .audience(client_ids)
                .require_claim("token_use", "id"),
        })
    }

    /// Fetches the JWKS now (e.g. at start, so the first request does not
    /// wait and a misconfigured URL shows at once) and returns how many
    /// usable keys it holds.
    ///
    /// # Errors
    /// The fetch failed, timed out, or the document held no usable key
    /// (the cache then keeps the keys it had); the message says why.
    pub async fn refresh(&self) -> Result<usize, JwksFetchError> {
        self.inner.jwks.refresh().await
    }

    /// The verified claims of `token`, before the principal mapping.
    ///
    /// # Errors
    /// [`ExternalAuthError::Invalid`] for a malformed, unverifiable or
    /// unacceptable token, [`ExternalAuthError::Expired`] for an expired
    /// one (signature valid), [`ExternalAuthError::Unavailable`] when the
    /// key set can not be had.
    pub async fn verify(&self, token: &str) -> Result<JwtClaims, ExternalAuthError> {
        match self.inner.verify(token).await {
            Ok(claims) => Ok(claims),
            Err(Ok(refusal)) => {
                tracing::debug!(reason = ?refusal, "JWT refused");
                Err(match refusal {
                    Refusal::Expired => ExternalAuthError::Expired,
                    _ => ExternalAuthError::Invalid,
                })
            }
            Err(Err(reason)) => {
                tracing::warn!(reason, url = %self.inner.jwks.url(), "JWT not verifiable: key set unavailable");
                Err(ExternalAuthError::unavailable(reason))
            }
        }
    }
}

impl Inner {
    /// `Err(Ok(_))`: refused; `Err(Err(_))`: could not decide.
    async fn verify(&self, token: &str) -> Result<JwtClaims, Result<Refusal, &'static str>> {
        let parsed =
            compact::parse(token, &self.algorithms).map_err(|m| Ok(Refusal::Malformed(m)))?;
        let key = match self.jwks.lookup(parsed.kid.as_deref()).await {
            jwks::Lookup::Found(key) => key,
            jwks::Lookup::Unknown => return Err(Ok(Refusal::UnknownKey)),
            jwks::Lookup::Unavailable(reason) => return Err(Err(reason)),
        };
        if !key.fits(parsed.alg) {
            return Err(Ok(Refusal::KeyMismatch));
        }
        let verified = (DEFAULT_PROVIDER.verifier_factory)(&parsed.alg.backend(), &key.decoding)
            .is_ok_and(|v| {
                v.verify(parsed.signing_input.as_bytes(), &parsed.signature)
                    .is_ok()
            });
        if !verified {
            return Err(Ok(Refusal::Signature));
        }
        let claims = compact::claims(parsed.payload).map_err(|m| Ok(Refusal::Malformed(m)))?;
        self.check(claims).map_err(Ok)
    }

    fn check(&self, claims: Map<String, Value>) -> Result<JwtClaims, Refusal> {
        let now = timestamp(self.clock.now());
        let time = |name: &'static str| -> Result<Option<f64>, Refusal> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .filter(|t| t.is_finite())
                    .map(Some)
                    .ok_or(Refusal::Claims(name)),
            }
        };
        let exp = time("exp")?.ok_or(Refusal::Claims("exp missing"))?;
        if let Some(nbf) = time("nbf")? {
            if now + self.leeway < nbf {
                return Err(Refusal::Claims("nbf in the future"));
            }
        }
        if let Some(iat) = time("iat")? {
            if now + self.leeway < iat {
                return Err(Refusal::Claims("iat in the future"));
            }
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(Refusal::Claims("iss"));
        }
        if !self.audiences.is_empty() {
            let matches = match claims.get("aud") {
                Some(Value::String(aud)) => self.audiences.contains(aud),
                Some(Value::Array(auds)) => auds
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|aud| self.audiences.iter().any(|a| a == aud)),
                _ => false,
            };
            if !matches {
                return Err(Refusal::Claims("aud"));
            }
        }
        if !self.client_ids.is_empty() {
            let client = claims.get("client_id").and_then(Value::as_str);
            if !client.is_some_and(|c| self.client_ids.iter().any(|id| id == c)) {
                return Err(Refusal::Claims("client_id"));
            }
        }
        for (name, value) in &self.required {
            if claims.get(name).and_then(Value::as_str) != Some(value.as_str()) {
                return Err(Refusal::Claims("required claim"));
            }
        }
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(Refusal::Claims("sub")),
        };
        // Last, so an expired token is only called expired when everything
        // else about it holds.
        if now - self.leeway >= exp {
            return Err(Refusal::Expired);
        }
        Ok(JwtClaims { subject, claims })
    }
}

fn timestamp(at: OffsetDateTime) -> f64 {
    // Seconds since the epoch; an i128 of nanoseconds fits an f64 to well
    // under a microsecond for any date a JWT carries.
    #[allow(clippy::cast_precision_loss)]
    let nanos = at.unix_timestamp_nanos() as f64;
    nanos / 1e9
}

#[async_trait::async_trait]
impl ExternalAuthenticator for JwtAuthenticator {
    async fn authenticate(&self, bearer: &str) -> Result<ExternalPrincipal, ExternalAuthError> {
        let claims = self.verify(bearer).await?;
        let principal = (self.inner.principal)(&claims);
        match &principal {
            Ok(_) => tracing::debug!(subject = claims.subject(), "JWT accepted"),
            Err(err) => {
                tracing::debug!(subject = claims.subject(), error = %err, "JWT principal refused")
            }
        }
        principal
    }
}

impl fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("jwks", &self.inner.jwks)
            .field("issuer", &self.inner.issuer)
            .field("algorithms", &self.inner.algorithms)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: Value) -> JwtClaims {
        let Value::Object(claims) = value else {
            unreachable!()
        };
        JwtClaims {
            subject: "user-1".into(),
            claims,
        }
    }

    #[test]
    fn claims_are_read_by_name_and_kept_out_of_debug() {
        let c = claims(serde_json::json!({
            "sub": "user-1",
            "scope": "openid  games:read,versions:write",
            "cognito:groups": ["admins", 7, "property:p1"],
            "custom:org": "org_1",
            "n": 3,
        }));
        assert_eq!(c.subject(), "user-1");
        assert_eq!(c.get("n"), Some(&Value::from(3)));
        assert_eq!(c.get("absent"), None);
        assert_eq!(c.string("custom:org"), Some("org_1"));
        assert_eq!(c.string("n"), None);
        assert_eq!(
            c.scopes().collect::<Vec<_>>(),
            ["openid", "games:read", "versions:write"]
        );
        assert_eq!(c.groups().collect::<Vec<_>>(), ["admins", "property:p1"]);
        assert_eq!(c.strings("n").count(), 0);
        assert_eq!(c.strings("absent").count(), 0);
        assert_eq!(c.all().len(), 5);
        let debug = format!("{c:?}");
        assert!(
            debug.contains("user-1") && !debug.contains("org_1") && !debug.contains("admins"),
            "{debug}"
        );
    }

    #[test]
    fn debug_shows_configuration_not_keys() {
        let auth = JwtAuthenticator::builder("https://issuer.example/jwks.json")
            .issuer("https://issuer.example/")
            .any_audience()
            .principal(|_| Err(ExternalAuthError::Invalid))
            .build()
            .unwrap();
        let debug = format!("{auth:?}");
        for part in [
            "https://issuer.example/jwks.json",
            "https://issuer.example/",
            "RS256",
            "refetch_interval",
        ] {
            assert!(debug.contains(part), "{part} in {debug}");
        }
        let builder = format!(
            "{:?}",
            JwtAuthenticator::builder("https://a.example/k").issuer("https://b.example")
        );
        assert!(
            builder.contains("https://a.example/k") && builder.contains("https://b.example"),
            "{builder}"
        );
    }
}
