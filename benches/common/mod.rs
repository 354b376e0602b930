//! What the benchmarks share: keyrings of 100 000 keys, and the fair
//! tower-http peer.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;

use keyward::{
    KeyKind, Keyring, MemoryStore, NewKey, RateLimit, ScopeCatalog, ScopeStatus, TokenHasher,
    TokenKey,
};
use sha2::{Digest, Sha256};

pub const KEYS: usize = 100_000;

pub fn token_key() -> TokenKey {
    TokenKey::new(1, vec![9; 32]).unwrap()
}

pub fn keyring(hasher: TokenHasher) -> Keyring {
    keyring_with(hasher, None)
}

pub fn keyring_with(hasher: TokenHasher, token_key: Option<TokenKey>) -> Keyring {
    let catalog = ScopeCatalog::builder()
        .scope("read", "", ScopeStatus::Enforced)
        .build()
        .unwrap();
    let mut kind = KeyKind::new("pk", catalog)
        .unwrap()
        .default_scopes(["read"])
        .unwrap();
    if let Some(key) = token_key {
        kind = kind.token_key(key);
    }
    Keyring::builder()
        .store(MemoryStore::new())
        .kind(kind)
        .hasher(hasher)
        .build()
        .unwrap()
}

/// Issues [`KEYS`] keys with scope `read` over 1,000 tenants; returns their
/// tokens.
pub fn issue_keys(rt: &tokio::runtime::Runtime, keyring: &Keyring) -> Vec<String> {
    rt.block_on(async {
        let mut tokens = Vec::with_capacity(KEYS);
        for i in 0..KEYS {
            let issued = keyring
                .issue(
                    // Unlimited, as `scripts/load.sh`'s key: the layer rows
                    // measure authentication, not a rate limit's 429s.
                    NewKey::new("pk", &format!("t{}", i % 1000), "bench")
                        .rate_limit(RateLimit::Unlimited),
                )
                .await
                .unwrap();
            tokens.push(issued.token.expose_secret().to_owned());
        }
        tokens
    })
}

/// What a team would write with tower-http instead of keyward: hashed keys
/// in a map (behind a lock, so keys can be revoked), checked per request.
#[cfg(feature = "http")]
#[derive(Clone)]
pub struct StorePeer {
    keys: std::sync::Arc<std::sync::RwLock<HashMap<[u8; 32], std::sync::Arc<PeerRecord>>>>,
}

#[cfg(feature = "http")]
pub struct PeerRecord {
    revoked: bool,
    expires_at: Option<std::time::SystemTime>,
}

#[cfg(feature = "http")]
impl StorePeer {
    pub fn new(hashes: impl Iterator<Item = [u8; 32]>) -> Self {
        let far = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400 * 365);
        let keys = hashes
            .map(|h| {
                let record = PeerRecord {
                    revoked: false,
                    expires_at: Some(far),
                };
                (h, std::sync::Arc::new(record))
            })
            .collect();
        StorePeer {
            keys: std::sync::Arc::new(std::sync::RwLock::new(keys)),
        }
    }
}

#[cfg(feature = "http")]
impl<B> tower_http::auth::AsyncAuthorizeRequest<B> for StorePeer {
    type RequestBody = B;
    type ResponseBody = String;
    type Future = std::future::Ready<Result<http::Request<B>, http::Response<String>>>;

    fn authorize(&mut self, mut req: http::Request<B>) -> Self::Future {
        let now = std::time::SystemTime::now();
        let found = req
            .headers()
            .get("x-api-key")
            .map(|v| <[u8; 32]>::from(Sha256::digest(v.as_bytes())))
            .and_then(|hash| self.keys.read().unwrap().get(&hash).cloned())
            .filter(|r| !r.revoked && r.expires_at.is_none_or(|at| now < at));
        std::future::ready(match found {
            Some(record) => {
                req.extensions_mut().insert(record);
                Ok(req)
            }
            None => {
                let mut res = http::Response::new(String::new());
                *res.status_mut() = http::StatusCode::UNAUTHORIZED;
                Err(res)
            }
        })
    }
}

/// The token of a key whose rate limit is checked but never reached
/// (`u32::MAX` a minute): the default path of the layers.
pub fn issue_limited(rt: &tokio::runtime::Runtime, keyring: &Keyring) -> String {
    let new = NewKey::new("pk", "t_limited", "bench")
        .rate_limit(RateLimit::per_minute(u32::MAX).unwrap());
    let issued = rt.block_on(keyring.issue(new)).unwrap();
    issued.token.expose_secret().to_owned()
}

/// The fair peer doing, plainly, the work keyward's two layers do besides
/// the peer's check, written without a library: what a lean
/// single-purpose layer pays for that work (one implementation, not a
/// bound). Per request: the credential header looked up and refused when
/// repeated, too long or not a b64token (one pass: a b64token is visible
/// ASCII); an
/// `Authorization` header looked for; the tenant and `User-Agent` headers
/// looked up; the token's prefix, digits and CRC-32 checked (keyward's
/// public [`keyward::TokenFormat::parse`]: the format's own cost); the
/// clock read; SHA-256 and a lookup behind a lock (`hashbrown`'s default
/// hasher, as keyward's `MemoryStore`; the fair peer [`StorePeer`] keeps
/// std's SipHash, as its rows were measured); revocation, expiry and
/// the tenant checked; the last use stored (one atomic store: less than
/// keyward's note, which also keeps the address and user agent for its
/// batched write); the record in the extensions; the scope checked by a
/// second layer from the extensions ([`FeatureScopes`]). With a limit: a
/// GCRA step on the record (one compare-and-swap), the decision in the
/// extensions and two `RateLimit` headers on the response (the policy's
/// value prepared once, the state's written without `core::fmt`).
#[cfg(feature = "http")]
pub mod feature_peer {
    // The default hasher of `hashbrown`, as keyward's `MemoryStore` has it
    // (std's SipHash would cost the peer about 150 instructions more).
    use hashbrown::HashMap;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, RwLock};
    use std::task::{Context, Poll};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use http::header::{HeaderName, HeaderValue, AUTHORIZATION, USER_AGENT};
    use http::{HeaderMap, Request, Response, StatusCode};
    use keyward::{TokenFormat, TokenKind};
    use sha2::{Digest, Sha256};

    const API_KEY: HeaderName = HeaderName::from_static("x-api-key");
    const TENANT: HeaderName = HeaderName::from_static("x-property-id");
    const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
    const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

    /// A key as the peer stores it.
    pub struct Record {
        tenant: String,
        scopes: Vec<String>,
        revoked: bool,
        expires_at: Option<SystemTime>,
        /// Seconds since the epoch of the last use.
        last_used: AtomicU64,
        /// `(limit a minute, the policy's header value)`, `None`: unlimited.
        limit: Option<(u32, HeaderValue)>,
        /// The GCRA's theoretical arrival time, ns since the epoch.
        tat: AtomicU64,
    }

    /// A rate decision, as the peer reports it.
    #[derive(Clone, Copy)]
    pub struct Decision {
        remaining: u64,
        reset_secs: u64,
    }

    /// The peer's layer: its shared state and the inner service.
    #[derive(Clone)]
    pub struct FeaturePeer<S> {
        inner: S,
        shared: Arc<Shared>,
    }

    pub struct Shared {
        format: TokenFormat,
        keys: RwLock<HashMap<[u8; 32], Arc<Record>>>,
    }

    impl Shared {
        /// Keys for `tokens` (tenant `t<i % 1000>`, scope `read`), each
        /// with the limit `limit_of(token)` a minute, if any.
        pub fn new<'t>(
            tokens: impl Iterator<Item = &'t str>,
            limit_of: impl Fn(&str) -> Option<u32>,
        ) -> Arc<Self> {
            let far = SystemTime::now() + Duration::from_secs(86_400 * 365);
            let keys = tokens
                .enumerate()
                .map(|(i, token)| {
                    let limit = limit_of(token).map(|per_minute| {
                        let policy = format!("\"default\";q={per_minute};w=60");
                        (per_minute, HeaderValue::from_str(&policy).unwrap())
                    });
                    let tenant = if limit.is_some() {
                        "t_limited".to_owned()
                    } else {
                        format!("t{}", i % 1000)
                    };
                    let record = Record {
                        tenant,
                        scopes: vec!["read".to_owned()],
                        revoked: false,
                        expires_at: Some(far),
                        last_used: AtomicU64::new(0),
                        limit,
                        tat: AtomicU64::new(0),
                    };
                    (Sha256::digest(token.as_bytes()).into(), Arc::new(record))
                })
                .collect();
            Arc::new(Shared {
                format: TokenFormat::new([TokenKind::new("pk").unwrap()]),
                keys: RwLock::new(keys),
            })
        }

        pub fn layer<S>(self: &Arc<Self>, inner: S) -> FeaturePeer<S> {
            FeaturePeer {
                inner,
                shared: self.clone(),
            }
        }
    }

    fn status(code: StatusCode) -> Response<String> {
        let mut res = Response::new(String::new());
        *res.status_mut() = code;
        res
    }

    /// The one value of header `name`, if any: refused when repeated or too
    /// long.
    fn single_header<'h>(
        headers: &'h HeaderMap,
        name: &HeaderName,
    ) -> Result<Option<&'h HeaderValue>, ()> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() || value.len() > 4096 {
            return Err(());
        }
        Ok(Some(value))
    }

    /// [`single_header`], as visible ASCII and not empty.
    fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, ()> {
        match single_header(headers, name)?.map(HeaderValue::to_str) {
            None => Ok(None),
            Some(Ok(text)) if !text.is_empty() => Ok(Some(text)),
            Some(_) => Err(()),
        }
    }

    /// The bytes of RFC 6750's `b64token` besides the trailing `=`.
    const B64: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            table[b] =
                c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            b += 1;
        }
        table
    };

    /// The value as one RFC 6750 `b64token` (which is visible ASCII and not
    /// empty: one pass over the bytes).
    fn b64token(value: &HeaderValue) -> Option<&str> {
        let bytes = value.as_bytes();
        let body = bytes.len() - bytes.iter().rev().take_while(|&&b| b == b'=').count();
        let ok = body > 0
            && bytes[..body]
                .iter()
                .fold(true, |all, &b| all & B64[usize::from(b)]);
        ok.then(|| std::str::from_utf8(bytes).ok()).flatten()
    }

    impl Shared {
        /// The record of the request's key and the rate decision, or the
        /// refusal's status.
        fn check(
            &self,
            headers: &HeaderMap,
        ) -> Result<(Arc<Record>, Option<Decision>), StatusCode> {
            let bad = |()| StatusCode::BAD_REQUEST;
            let token = single_header(headers, &API_KEY).map_err(bad)?;
            if let Some(auth) = single(headers, &AUTHORIZATION).map_err(bad)? {
                // The Bearer source: not presented by these requests.
                return Err(if auth.len() > 7 {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::BAD_REQUEST
                });
            }
            let token = token.ok_or(StatusCode::UNAUTHORIZED)?;
            let token = b64token(token).ok_or(StatusCode::BAD_REQUEST)?;
            let tenant = single(headers, &TENANT).map_err(bad)?;
            let user_agent = headers.get(USER_AGENT).map(HeaderValue::as_bytes);
            std::hint::black_box(user_agent);
            self.format
                .parse(token)
                .map_err(|_| StatusCode::UNAUTHORIZED)?;
            let now = SystemTime::now();
            let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            let record = self
                .keys
                .read()
                .unwrap()
                .get(&hash)
                .cloned()
                .ok_or(StatusCode::UNAUTHORIZED)?;
            if record.revoked || record.expires_at.is_some_and(|at| now >= at) {
                return Err(StatusCode::UNAUTHORIZED);
            }
            if tenant.is_some_and(|t| t != record.tenant) {
                return Err(StatusCode::FORBIDDEN);
            }
            let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
            record.last_used.store(since.as_secs(), Ordering::Relaxed);
            let decision = match &record.limit {
                None => None,
                Some((per_minute, _)) => Some(gcra(&record.tat, *per_minute, since)?),
            };
            Ok((record, decision))
        }
    }

    /// One GCRA step (burst: the whole minute's limit).
    fn gcra(tat: &AtomicU64, per_minute: u32, now: Duration) -> Result<Decision, StatusCode> {
        let now = now.as_nanos() as u64;
        let interval = 60_000_000_000 / u64::from(per_minute).max(1);
        let window = 60_000_000_000u64;
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            let next = current.max(now) + interval;
            if next - now > window {
                return Err(StatusCode::TOO_MANY_REQUESTS);
            }
            match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    return Ok(Decision {
                        remaining: (window - (next - now)) / interval,
                        reset_secs: (next - now).div_ceil(1_000_000_000),
                    });
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// `"default";r=<remaining>;t=<reset>`, without `core::fmt`.
    fn state_value(decision: Decision) -> HeaderValue {
        fn push(buf: &mut [u8; 64], len: &mut usize, mut n: u64) {
            let mut digits = [0u8; 20];
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            let d = &digits[i..];
            buf[*len..*len + d.len()].copy_from_slice(d);
            *len += d.len();
        }
        let mut buf = [0u8; 64];
        let mut len = 0;
        for (text, n) in [
            (&b"\"default\";r="[..], decision.remaining),
            (&b";t="[..], decision.reset_secs),
        ] {
            buf[len..len + text.len()].copy_from_slice(text);
            len += text.len();
            push(&mut buf, &mut len, n);
        }
        HeaderValue::from_bytes(&buf[..len]).unwrap()
    }

    impl<S> tower::Service<Request<String>> for FeaturePeer<S>
    where
        S: tower::Service<Request<String>, Response = Response<String>> + Clone,
    {
        type Response = Response<String>;
        type Error = S::Error;
        type Future = PeerFuture<S::Future>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, mut req: Request<String>) -> Self::Future {
            match self.shared.check(req.headers()) {
                Ok((record, decision)) => {
                    let policy = record.limit.as_ref().map(|(_, policy)| policy.clone());
                    req.extensions_mut().insert(record);
                    if let Some(decision) = decision {
                        req.extensions_mut().insert(decision);
                    }
                    // Called at once, the service `poll_ready` readied.
                    PeerFuture::Inner {
                        future: self.inner.call(req),
                        headers: decision.zip(policy),
                    }
                }
                Err(code) => PeerFuture::Refused {
                    response: Some(status(code)),
                },
            }
        }
    }

    pin_project_lite::pin_project! {
        /// The inner service's future, the rate limit headers added to its
        /// response; or a refusal.
        #[project = PeerProj]
        pub enum PeerFuture<F> {
            Inner { #[pin] future: F, headers: Option<(Decision, HeaderValue)> },
            Refused { response: Option<Response<String>> },
        }
    }

    impl<F, E> Future for PeerFuture<F>
    where
        F: Future<Output = Result<Response<String>, E>>,
    {
        type Output = F::Output;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            match self.project() {
                PeerProj::Inner { future, headers } => {
                    let mut poll = future.poll(cx);
                    if let (Poll::Ready(Ok(res)), Some((decision, policy))) =
                        (&mut poll, headers.take())
                    {
                        res.headers_mut().insert(RATELIMIT_POLICY, policy);
                        res.headers_mut().insert(RATELIMIT, state_value(decision));
                    }
                    poll
                }
                PeerProj::Refused { response } => {
                    Poll::Ready(Ok(response.take().expect("polled once")))
                }
            }
        }
    }

    /// The scope check, from the record in the extensions (tower-http's
    /// `AsyncRequireAuthorizationLayer`).
    #[derive(Clone)]
    pub struct FeatureScopes(pub &'static str);

    impl<B: Send + 'static> tower_http::auth::AsyncAuthorizeRequest<B> for FeatureScopes {
        type RequestBody = B;
        type ResponseBody = String;
        type Future = std::future::Ready<Result<Request<B>, Response<String>>>;

        fn authorize(&mut self, req: Request<B>) -> Self::Future {
            let allowed = req
                .extensions()
                .get::<Arc<Record>>()
                .is_some_and(|record| record.scopes.iter().any(|s| s == self.0));
            std::future::ready(if allowed {
                Ok(req)
            } else {
                Err(status(StatusCode::FORBIDDEN))
            })
        }
    }
}
