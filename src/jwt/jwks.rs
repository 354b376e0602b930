//! The JWKS cache: keys fetched from the issuer, refreshed per
//! `Cache-Control`, refetched on an unknown `kid` at most once per
//! interval with concurrent callers coalesced, and served stale through an
//! outage up to a bound.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use time::OffsetDateTime;

use super::compact;
use super::JwtAlgorithm;
use crate::clock::{span, Clock};

/// Largest JWKS document read (bytes).
pub const MAX_JWKS_LEN: usize = 256 * 1024;
/// Most keys kept from one JWKS document.
const MAX_KEYS: usize = 64;
/// Smallest RSA modulus accepted (bits).
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted (bits): the RSA backend refuses larger keys
/// at every verification, so they are skipped when the set is read.
const MAX_RSA_BITS: usize = 4096;

/// How the JWKS cache refreshes and how long it trusts what it has.
///
/// ```
/// use std::time::Duration;
/// use keyward::jwt::JwksPolicy;
///
/// let policy = JwksPolicy::default()
///     .refetch_interval(Duration::from_secs(30))
///     .serve_stale_for(Duration::from_secs(3600));
/// assert_eq!(policy.get_refetch_interval(), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksPolicy {
    min_ttl: Duration,
    max_ttl: Duration,
    default_ttl: Duration,
    refetch_interval: Duration,
    serve_stale_for: Duration,
    fetch_timeout: Duration,
}

impl Default for JwksPolicy {
    /// Keys kept for the issuer's `max-age` bounded to 5 minutes..24 hours
    /// (1 hour without one); an unknown `kid` or a failed refresh refetches
    /// at most every 10 seconds; known keys are served up to 6 hours past
    /// their expiry while the issuer is unreachable; a fetch may take 3 s
    /// (below `AuthLayer`'s 5 s verification timeout, so a request that
    /// waits for a first fetch gets its answer from the fetch).
    fn default() -> Self {
        JwksPolicy {
            min_ttl: Duration::from_secs(5 * 60),
            max_ttl: Duration::from_secs(24 * 3600),
            default_ttl: Duration::from_secs(3600),
            refetch_interval: Duration::from_secs(10),
            serve_stale_for: Duration::from_secs(6 * 3600),
            fetch_timeout: Duration::from_secs(3),
        }
    }
}

macro_rules! policy_field {
    ($set:ident, $get:ident, $doc:literal) => {
        #[doc = $doc]
        #[must_use]
        pub fn $set(mut self, value: Duration) -> Self {
            self.$set = value;
            self
        }

        #[doc = concat!("The value set by [`", stringify!($set), "`](Self::", stringify!($set), ").")]
        #[must_use]
        pub fn $get(&self) -> Duration {
            self.$set
        }
    };
}

impl JwksPolicy {
    policy_field!(min_ttl, get_min_ttl, "The shortest time keys are kept before a refresh, whatever `Cache-Control` says (also for `no-cache`/`no-store`).");
    policy_field!(
        max_ttl,
        get_max_ttl,
        "The longest time keys are kept before a refresh, whatever `Cache-Control` says."
    );
    policy_field!(
        default_ttl,
        get_default_ttl,
        "How long keys are kept when the response has no `max-age` (bounded like `max-age`)."
    );
    policy_field!(refetch_interval, get_refetch_interval, "The least time between two fetches caused by an unknown `kid` or a failed refresh; callers in between are answered from what the cache has.");
    policy_field!(serve_stale_for, get_serve_stale_for, "How long past their expiry known keys keep verifying while refreshes fail; after it every verification is 503 `auth_unavailable`.");
    policy_field!(
        fetch_timeout,
        get_fetch_timeout,
        "The longest a fetch may take; a slower one counts as failed."
    );

    fn ttl(&self, cache_control: Option<&str>) -> Duration {
        let ttl = cache_control.and_then(max_age).unwrap_or(self.default_ttl);
        ttl.clamp(self.min_ttl, self.max_ttl.max(self.min_ttl))
    }
}

/// `max-age` of a `Cache-Control` value; `no-cache` and `no-store` count
/// as zero (the policy's minimum applies).
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            let value = value.trim().trim_matches('"');
            // Overlong numbers saturate (RFC 9111 §1.2.2).
            if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
                age = Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
            } else {
                return Some(Duration::ZERO);
            }
        }
    }
    age
}

/// What a [`JwksFetcher`] got from the issuer: the body and its
/// `Cache-Control` header.
///
/// ```
/// use keyward::jwt::JwksResponse;
///
/// let response = JwksResponse::new(br#"{"keys":[]}"#.to_vec()).cache_control("max-age=600");
/// assert_eq!(response.get_cache_control(), Some("max-age=600"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct JwksResponse {
    body: Vec<u8>,
    cache_control: Option<String>,
}

impl JwksResponse {
    /// A response with this body (a JSON Web Key Set, RFC 7517 §5).
    #[must_use]
    pub fn new(body: Vec<u8>) -> Self {
        JwksResponse {
            body,
            cache_control: None,
        }
    }

    /// The response's `Cache-Control` header.
    #[must_use]
    pub fn cache_control(mut self, value: &str) -> Self {
        self.cache_control = Some(value.to_owned());
        self
    }

    /// The `Cache-Control` header, if any.
    #[must_use]
    pub fn get_cache_control(&self) -> Option<&str> {
        self.cache_control.as_deref()
    }

    /// The body.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl fmt::Debug for JwksResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksResponse")
            .field("body_len", &self.body.len())
            .field("cache_control", &self.cache_control)
            .finish()
    }
}

/// Why a JWKS fetch failed: the issuer is unreachable, answered with an
/// error status, or sent something too large. Its message includes the
/// immediate cause; `source()` continues below it, so a chain prints each
/// cause once.
#[derive(Debug)]
pub struct JwksFetchError(Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for JwksFetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JWKS fetch failed: {}", self.0)
    }
}

impl std::error::Error for JwksFetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl JwksFetchError {
    /// A fetch error from any error or message.
    ///
    /// ```
    /// let err = keyward::jwt::JwksFetchError::new("status 502");
    /// assert_eq!(err.to_string(), "JWKS fetch failed: status 502");
    /// ```
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        JwksFetchError(err.into())
    }
}

/// Fetches a JWKS document. keyward's [`HttpFetcher`] is the default;
/// supply your own for a proxy, custom roots or tests.
///
/// ```
/// use keyward::jwt::{JwksFetchError, JwksFetcher, JwksResponse};
///
/// /// A fixed key set, e.g. for tests.
/// struct Fixed(Vec<u8>);
///
/// #[keyward::async_trait]
/// impl JwksFetcher for Fixed {
///     async fn fetch(&self, _url: &str) -> Result<JwksResponse, JwksFetchError> {
///         Ok(JwksResponse::new(self.0.clone()).cache_control("max-age=3600"))
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait JwksFetcher: Send + Sync + 'static {
    /// GETs `url`; a non-success status is an error.
    async fn fetch(&self, url: &str) -> Result<JwksResponse, JwksFetchError>;
}

/// The default [`JwksFetcher`]: reqwest over rustls (ring provider and the
/// Mozilla roots of `webpki-roots`, both chosen here, so nothing depends on
/// a process-wide provider), no redirects, a 5 s connect timeout, bodies up
/// to 256 KiB.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
}

impl HttpFetcher {
    /// A fetcher with its own connection pool.
    ///
    /// # Errors
    /// The HTTP client could not be built (no TLS configuration).
    ///
    /// ```
    /// let fetcher = keyward::jwt::HttpFetcher::new()?;
    /// # let _ = fetcher;
    /// # Ok::<(), keyward::jwt::JwksFetchError>(())
    /// ```
    pub fn new() -> Result<Self, JwksFetchError> {
        let client = crate::net::client(Duration::from_secs(5)).map_err(JwksFetchError::new)?;
        Ok(HttpFetcher { client })
    }
}

#[async_trait::async_trait]
impl JwksFetcher for HttpFetcher {
    async fn fetch(&self, url: &str) -> Result<JwksResponse, JwksFetchError> {
        let response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(JwksFetchError::new)?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksFetchError::new(format!("status {status}")));
        }
        let cache_control = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = crate::net::read_limited(response, MAX_JWKS_LEN)
            .await
            .map_err(JwksFetchError::new)?
            .ok_or_else(|| JwksFetchError::new("JWKS larger than 256 KiB"))?;
        let mut out = JwksResponse::new(body);
        out.cache_control = cache_control;
        Ok(out)
    }
}

/// The key type of a JWK, with the curve where there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One verification key of the set.
pub(crate) struct Key {
    family: Family,
    alg: Option<JwtAlgorithm>,
    pub(crate) decoding: DecodingKey,
}

impl Key {
    /// Whether a token signed with `alg` may be checked with this key: the
    /// key type fits the algorithm and the JWK's own `alg`, if any, is it.
    pub(crate) fn fits(&self, alg: JwtAlgorithm) -> bool {
        let family = match alg {
            JwtAlgorithm::RS256
            | JwtAlgorithm::RS384
            | JwtAlgorithm::RS512
            | JwtAlgorithm::PS256
            | JwtAlgorithm::PS384
            | JwtAlgorithm::PS512 => Family::Rsa,
            JwtAlgorithm::ES256 => Family::P256,
            JwtAlgorithm::ES384 => Family::P384,
            JwtAlgorithm::EdDSA => Family::Ed25519,
        };
        self.family == family && self.alg.is_none_or(|a| a == alg)
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWKS document into its usable signing keys by `kid`. Keys
/// that are not for signatures, of an unknown type, without a `kid`,
/// malformed or weak (RSA outside 2048..=4096 bits, Ed25519 of small
/// order) are skipped. A well-formed document is authoritative even with no
/// usable key (the set becomes empty); only a body that is not a JWKS is an
/// error (the cache keeps what it had).
pub(crate) fn parse_set(body: &[u8]) -> Result<HashMap<String, Arc<Key>>, &'static str> {
    if body.len() > MAX_JWKS_LEN {
        return Err("JWKS larger than 256 KiB");
    }
    let set: RawSet = serde_json::from_slice(body).map_err(|_| "not a JWKS document")?;
    let mut keys = HashMap::new();
    for raw in set.keys {
        if keys.len() == MAX_KEYS {
            break;
        }
        let Ok(raw) = serde_json::from_value::<RawKey>(raw) else {
            continue;
        };
        let Some(kid) = raw.kid.clone().filter(|k| !k.is_empty()) else {
            continue;
        };
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        match key(&raw) {
            Some(key) => {
                // A repeated kid is ambiguous: the first one wins.
                keys.entry(kid).or_insert_with(|| Arc::new(key));
            }
            None => tracing::warn!(kid = %kid, kty = %raw.kty, "JWKS key skipped: unusable"),
        }
    }
    if keys.is_empty() {
        // Authoritative all the same: an issuer that withdrew its keys (or
        // moved to ones keyward does not use) must not have the old ones
        // kept alive.
        tracing::error!("JWKS has no usable signing key: every token will be refused");
    }
    Ok(keys)
}

fn key(raw: &RawKey) -> Option<Key> {
    let alg = match &raw.alg {
        Some(name) => Some(JwtAlgorithm::from_name(name)?),
        None => None,
    };
    let component = |c: &Option<String>| compact::decode(c.as_deref()?).ok();
    let (family, decoding) = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let n = component(&raw.n)?;
            let e = component(&raw.e)?;
            let n = strip_zeros(&n);
            let e = strip_zeros(&e);
            let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) || e.is_empty() || e.len() > 8 {
                return None;
            }
            (Family::Rsa, DecodingKey::from_rsa_raw_components(n, e))
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (family, len) = if crv == "P-256" {
                (Family::P256, 32)
            } else {
                (Family::P384, 48)
            };
            let x = component(&raw.x)?;
            let y = component(&raw.y)?;
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (family, DecodingKey::from_ec_der(&point))
        }
        ("OKP", Some("Ed25519")) => {
            let x: [u8; 32] = component(&raw.x)?.try_into().ok()?;
            // A small-order point verifies forged signatures.
            if ed25519_dalek::VerifyingKey::from_bytes(&x).map_or(true, |k| k.is_weak()) {
                return None;
            }
            (Family::Ed25519, DecodingKey::from_ed_der(&x))
        }
        _ => return None,
    };
    let key = Key {
        family,
        alg,
        decoding,
    };
    // A JWK whose own alg does not fit its type is unusable.
    if alg.is_some_and(|a| !key.fits(a)) {
        return None;
    }
    Some(key)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// An error and its causes, `: `-separated, for a log line (reqwest's
/// "error sending request" says why only in its sources).
struct Chain<'a>(&'a JwksFetchError);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0 .0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// `at + by`, saturating: a policy of `Duration::MAX` means "never".
fn later(at: OffsetDateTime, by: Duration) -> OffsetDateTime {
    at.checked_add(span(by))
        .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_utc())
}

/// What the cache says about a `kid`.
pub(crate) enum Lookup {
    Found(Arc<Key>),
    /// Not in a key set the cache trusts: 401.
    Unknown,
    /// The cache can not decide (never fetched, or stale past the bound, or
    /// the issuer is unreachable while the kid is unknown): 503.
    Unavailable(&'static str),
}

#[derive(Default)]
struct State {
    keys: Arc<HashMap<String, Arc<Key>>>,
    expires: Option<OffsetDateTime>,
    last_attempt: Option<OffsetDateTime>,
    last_failed: bool,
    /// Fetches tried: a waiter that sees it move knows another caller
    /// fetched while it waited and does not fetch again.
    attempts: u64,
}

/// The cache shared by clones of an authenticator.
pub(crate) struct Jwks {
    url: String,
    fetcher: Arc<dyn JwksFetcher>,
    policy: JwksPolicy,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Held while fetching: concurrent callers wait for one fetch.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

enum Step {
    Done(Lookup),
    /// Fetch, unless another caller is (seen by `attempts` moving). With a
    /// known key still inside the stale bound, a caller that finds a fetch
    /// under way answers with it instead of waiting.
    Fetch {
        attempts: u64,
        stale: Option<Arc<Key>>,
    },
}

impl Jwks {
    pub(crate) fn new(
        url: String,
        fetcher: Arc<dyn JwksFetcher>,
        policy: JwksPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Jwks {
            url,
            fetcher,
            policy,
            clock,
            state: Mutex::new(State::default()),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The key for `kid` (`None`: the set's only key), fetching if the set
    /// expired or the kid is unknown and the refetch interval allows.
    ///
    /// One caller fetches; the fetch runs in its own task, so a caller
    /// cancelled meanwhile (a timeout, a client gone) does not cancel it:
    /// its outcome is recorded and the refetch interval holds. A caller
    /// with a known key inside the stale bound never waits for a fetch (it
    /// answers with the key and the set is refreshed behind it); one
    /// without (an unknown `kid`, a first fetch) waits for the fetch under
    /// way rather than starting another.
    pub(crate) async fn lookup(self: &Arc<Self>, kid: Option<&str>) -> Lookup {
        let (attempts, stale) = match self.step(kid, true) {
            Step::Done(found) => return found,
            Step::Fetch { attempts, stale } => (attempts, stale),
        };
        let guard = match (self.fetching.clone().try_lock_owned(), &stale) {
            (Ok(guard), _) => guard,
            (Err(_), Some(key)) => return Lookup::Found(key.clone()),
            (Err(_), None) => self.fetching.clone().lock_owned().await,
        };
        if self.lock().attempts == attempts {
            let jwks = self.clone();
            let task = tokio::spawn(async move {
                // The outcome is in the state the next step reads.
                let _ = jwks.fetch().await;
                drop(guard);
            });
            if let Some(key) = stale {
                return Lookup::Found(key);
            }
            // A fetch that panicked (a host fetcher's bug) left the state
            // as it was: the step below answers from it.
            let _ = task.await;
        } else {
            drop(guard);
        }
        match self.step(kid, false) {
            Step::Done(found) => found,
            Step::Fetch { .. } => Lookup::Unavailable("JWKS fetch pending"),
        }
    }

    /// Fetches now, whatever the policy says (a warm-up at start).
    pub(crate) async fn refresh(&self) -> Result<usize, JwksFetchError> {
        let _fetching = self.fetching.lock().await;
        self.fetch().await.map(|()| self.lock().keys.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn step(&self, kid: Option<&str>, may_fetch: bool) -> Step {
        let now = self.clock.now();
        let state = self.lock();
        let found = match kid {
            Some(kid) => state.keys.get(kid).cloned(),
            None if state.keys.len() == 1 => state.keys.values().next().cloned(),
            None => None,
        };
        let fresh = state.expires.is_some_and(|e| now < e);
        if let (Some(key), true) = (&found, fresh) {
            return Step::Done(Lookup::Found(key.clone()));
        }
        let throttled = state
            .last_attempt
            .is_some_and(|t| now < later(t, self.policy.refetch_interval) && now >= t);
        let within_bound = state
            .expires
            .is_some_and(|e| now < later(e, self.policy.serve_stale_for));
        if may_fetch && !throttled {
            return Step::Fetch {
                attempts: state.attempts,
                stale: found.filter(|_| within_bound),
            };
        }
        if state.expires.is_none() {
            return Step::Done(Lookup::Unavailable("JWKS never fetched"));
        }
        if !within_bound {
            return Step::Done(Lookup::Unavailable("JWKS stale past its bound"));
        }
        Step::Done(match found {
            Some(key) => Lookup::Found(key),
            None if state.last_failed => Lookup::Unavailable("JWKS unreachable, kid unknown"),
            None => Lookup::Unknown,
        })
    }

    async fn fetch(&self) -> Result<(), JwksFetchError> {
        let fetched =
            tokio::time::timeout(self.policy.fetch_timeout, self.fetcher.fetch(&self.url)).await;
        let result = match fetched {
            Err(_) => Err(JwksFetchError::new("timed out")),
            Ok(Err(err)) => Err(err),
            Ok(Ok(response)) => parse_set(&response.body)
                .map(|keys| (keys, self.policy.ttl(response.cache_control.as_deref())))
                .map_err(JwksFetchError::new),
        };
        let now = self.clock.now();
        let mut state = self.lock();
        state.attempts += 1;
        state.last_attempt = Some(now);
        match result {
            Ok((keys, ttl)) => {
                tracing::debug!(url = %self.url, keys = keys.len(), ttl_secs = ttl.as_secs(), "JWKS fetched");
                state.keys = Arc::new(keys);
                state.expires = Some(later(now, ttl));
                state.last_failed = false;
                Ok(())
            }
            Err(err) => {
                tracing::warn!(url = %self.url, error = %Chain(&err), "JWKS fetch failed");
                state.last_failed = true;
                Err(err)
            }
        }
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_and_bounded() {
        let p = JwksPolicy::default();
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("MAX-AGE = 7"), Some(Duration::from_secs(7)));
        assert_eq!(max_age("max-age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store, max-age=600"), Some(Duration::ZERO));
        assert_eq!(max_age("max-age=-1"), Some(Duration::ZERO));
        assert_eq!(
            max_age("max-age=99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(max_age("public"), None);
        assert_eq!(p.ttl(Some("max-age=600")), Duration::from_secs(600));
        assert_eq!(p.ttl(Some("max-age=1")), p.min_ttl);
        assert_eq!(p.ttl(Some("no-cache")), p.min_ttl);
        assert_eq!(p.ttl(Some("max-age=99999999")), p.max_ttl);
        assert_eq!(p.ttl(None), p.default_ttl);
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let small_n = compact_b64(&[0xff; 128]);
        // 2048 bits behind a leading zero byte: strong enough.
        let mut padded = vec![0u8];
        padded.extend([0xc1; 256]);
        let n = compact_b64(&padded);
        let long_e = compact_b64(&[1; 9]);
        let e8 = compact_b64(&[1; 8]);
        let ec_x = compact_b64(&[1; 32]);
        let doc = format!(
            r#"{{"keys":[
                {{"kty":"RSA","kid":"small","n":"{small_n}","e":"AQAB"}},
                {{"kty":"RSA","kid":"zero-e","n":"{n}","e":"AA"}},
                {{"kty":"RSA","kid":"long-e","n":"{n}","e":"{long_e}"}},
                {{"kty":"RSA","kid":"rsa","n":"{n}","e":"AQAB"}},
                {{"kty":"RSA","kid":"e8","n":"{n}","e":"{e8}"}},
                {{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}},
                {{"kty":"EC","kid":"enc","use":"enc","crv":"P-256","x":"{ec_x}","y":"{ec_x}"}},
                {{"kty":"EC","kid":"short","crv":"P-256","x":"{ec_x}","y":"AQ"}},
                {{"kty":"EC","kid":"mislabelled","alg":"RS256","crv":"P-256","x":"{ec_x}","y":"{ec_x}"}},
                {{"kty":"EC","crv":"P-256","x":"{ec_x}","y":"{ec_x}"}},
                {{"kty":"EC","kid":"ok","crv":"P-256","x":"{ec_x}","y":"{ec_x}"}},
                "not an object"
            ]}}"#
        );
        let keys = parse_set(doc.as_bytes()).unwrap();
        let mut kids: Vec<&String> = keys.keys().collect();
        kids.sort();
        assert_eq!(kids, ["e8", "ok", "rsa"]);
        assert!(keys["rsa"].fits(JwtAlgorithm::PS512));
        assert!(!keys["rsa"].fits(JwtAlgorithm::EdDSA));
        assert!(keys["ok"].fits(JwtAlgorithm::ES256));
        assert!(!keys["ok"].fits(JwtAlgorithm::ES384));
        assert!(!keys["ok"].fits(JwtAlgorithm::RS256));
        assert!(parse_set(b"[]").is_err());
    }

    #[test]
    fn a_fetch_error_prints_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        let err = JwksFetchError::new(Outer(std::io::Error::other("connection refused")));
        assert_eq!(err.to_string(), "JWKS fetch failed: error sending request");
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.to_string(), "connection refused");
        assert_eq!(
            Chain(&err).to_string(),
            "error sending request: connection refused"
        );
    }

    #[test]
    fn a_response_keeps_its_body_and_cache_control() {
        let response = JwksResponse::new(b"{\"keys\":[]}".to_vec());
        assert_eq!(response.get_cache_control(), None);
        let response = response.cache_control("max-age=60");
        assert_eq!(response.body(), b"{\"keys\":[]}");
        assert_eq!(response.get_cache_control(), Some("max-age=60"));
        let debug = format!("{response:?}");
        assert!(
            debug.contains("body_len: 11") && debug.contains("max-age=60"),
            "{debug}"
        );
        assert!(!debug.contains("keys"), "the body stays out of Debug");
    }

    #[test]
    fn the_document_size_limit_is_inclusive() {
        let x = compact_b64(
            ed25519_dalek::SigningKey::from_bytes(&[5; 32])
                .verifying_key()
                .as_bytes(),
        );
        let doc = format!(r#"{{"keys":[{{"kty":"OKP","kid":"k","crv":"Ed25519","x":"{x}"}}]}}"#);
        let padded = format!("{doc}{}", " ".repeat(MAX_JWKS_LEN - doc.len()));
        assert_eq!(padded.len(), 256 * 1024);
        assert_eq!(parse_set(padded.as_bytes()).unwrap().len(), 1);
        assert!(parse_set(format!("{padded} ").as_bytes()).is_err());
    }

    #[test]
    fn weak_and_odd_sized_keys_are_skipped() {
        // 2041 bits: 256 bytes whose first has five leading zero bits.
        let mut n2041 = vec![0x04];
        n2041.extend([0xc1; 255]);
        let mut n4096 = vec![0x80];
        n4096.extend([0xc1; 511]);
        let mut n4097 = vec![0x01];
        n4097.extend([0xc1; 512]);
        // The Ed25519 identity (small order) and a valid public key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let strong = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
        let doc = format!(
            r#"{{"keys":[
                {{"kty":"RSA","kid":"2041","n":"{}","e":"AQAB"}},
                {{"kty":"RSA","kid":"4096","n":"{}","e":"AQAB"}},
                {{"kty":"RSA","kid":"4097","n":"{}","e":"AQAB"}},
                {{"kty":"OKP","kid":"identity","crv":"Ed25519","x":"{}"}},
                {{"kty":"OKP","kid":"ed","crv":"Ed25519","x":"{}"}}
            ]}}"#,
            compact_b64(&n2041),
            compact_b64(&n4096),
            compact_b64(&n4097),
            compact_b64(&identity),
            compact_b64(strong.as_bytes()),
        );
        let keys = parse_set(doc.as_bytes()).unwrap();
        let mut kids: Vec<&String> = keys.keys().collect();
        kids.sort();
        assert_eq!(kids, ["4096", "ed"]);
        assert!(parse_set(br#"{"keys":[]}"#).unwrap().is_empty());
    }

    fn compact_b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
