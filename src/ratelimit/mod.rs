//! Rate limits: a GCRA engine and an in-memory, keyed limiter.
//!
//! A [`Quota`] is `count` requests per `period`, admitted in a burst of up to
//! `count` and then one every `period / count` (the generic cell rate
//! algorithm, see the [`Quota::step`] arithmetic). A [`RateLimiter`] checks
//! one request of a key against a quota and returns a [`RateDecision`], which
//! renders the `Retry-After` and IETF `RateLimit-Policy` / `RateLimit` header
//! values. [`MemoryRateLimiter`] keeps the state of each key in process, in
//! bounded memory; `PgRateLimiter` (feature `postgres`) keeps it in
//! PostgreSQL, so several server instances share one budget per key.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use keyward::ManualClock;
//! use keyward::ratelimit::{MemoryRateLimiter, Quota, RateLimiter};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new(time::OffsetDateTime::UNIX_EPOCH);
//! let limiter = MemoryRateLimiter::builder().clock(clock.clone()).build();
//! let quota = Quota::per_minute(100).unwrap();
//!
//! for _ in 0..100 {
//!     assert!(limiter.check("key:key_123", quota).await?.allowed);
//! }
//! let denied = limiter.check("key:key_123", quota).await?;
//! assert!(!denied.allowed);
//! assert_eq!(denied.retry_after, Some(Duration::from_millis(600)));
//! assert_eq!(denied.retry_after_value().as_deref(), Some("1"));
//! assert_eq!(denied.policy_value(), r#""default";q=100;w=60"#);
//! assert_eq!(denied.value(), r#""default";r=0;t=60"#);
//!
//! clock.advance(std::time::Duration::from_millis(600));
//! assert!(limiter.check("key:key_123", quota).await?.allowed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Keys
//!
//! The caller picks the key, and must pick it from something already
//! authenticated or bounded: a key id (`key:key_…`), an account, a client IP
//! as the server sees it (`ip:203.0.113.7`). Never key by raw header input:
//! anyone could then mint a fresh bucket per request. Prefix keys with their
//! kind so a key id cannot collide with an IP. Keys are 1 to
//! [`MAX_KEY_LEN`] bytes.
//!
//! A key whose [`RateLimit`](crate::RateLimit) is unlimited has no
//! [`Quota`] ([`Quota::from_rate_limit`] returns `None`): skip the check.
//!
//! # Why not `governor`
//!
//! `governor`'s keyed limiter applies one quota to all its keys, while here
//! each key carries its own limit; and a shared store needs the arithmetic
//! on its own anyway. One `i64` per key and a few lines of integer
//! arithmetic do it, and the memory limiter bounds its keys itself.
//!
//! # Failures
//!
//! A limiter whose shared store fails returns [`LimitError::Store`]; callers
//! should fail closed (the HTTP layer answers 503), never admit.

mod gcra;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;

#[cfg(feature = "http")]
pub(crate) use gcra::unix_nanos;
pub use gcra::Quota;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use gcra::PG_GCRA_SQL;
#[cfg(feature = "http")]
pub(crate) use memory::TatTable;
pub use memory::{MemoryRateLimiter, MemoryRateLimiterBuilder};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PgRateLimiter, PG_RATE_LIMITS_SCHEMA};

/// The longest key a limiter accepts, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// The policy name in the `RateLimit-Policy` and `RateLimit` header values.
pub const POLICY_NAME: &str = "default";

/// Checks requests of a key against a quota. Object safe: hold it as
/// `Arc<dyn RateLimiter>`. Implement it with `#[keyward::async_trait]`; the
/// method reads `async fn check(&self, key: &str, quota: Quota) ->
/// Result<RateDecision, LimitError>`.
///
/// ```
/// use keyward::ratelimit::{LimitError, MemoryRateLimiter, Quota, RateDecision, RateLimiter};
/// use std::sync::Arc;
///
/// let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new());
///
/// /// Another engine's limiter: here one that keeps the TAT per key the way
/// /// a Redis script would, with `Quota::step`.
/// #[derive(Debug, Default)]
/// struct Engine(std::sync::Mutex<std::collections::HashMap<String, i64>>);
///
/// #[keyward::async_trait]
/// impl RateLimiter for Engine {
///     async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, LimitError> {
///         let mut tats = self.0.lock().unwrap();
///         let (decision, tat) = quota.step(tats.get(key).copied(), time::OffsetDateTime::now_utc());
///         tats.insert(key.to_owned(), tat);
///         Ok(decision)
///     }
/// }
/// # let _ = (limiter, Engine::default());
/// ```
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug + 'static {
    /// Counts one request of `key` against `quota` and says whether it is
    /// admitted. A denied request does not use up any of the quota.
    ///
    /// `key` must come from authenticated or bounded data, never from raw
    /// header input (see the [module docs](self)).
    async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, LimitError>;

    /// [`check`](Self::check) for a limiter that decides without waiting
    /// (in memory): `Some` with the decision `check` would make, counting
    /// the request as `check` does, or `None` (having counted nothing) to
    /// be asked through `check`. [`AuthLayer`](crate::http::AuthLayer)
    /// tries this first, which spares the boxed future of an in-memory
    /// check.
    ///
    /// Provided: `None`. [`MemoryRateLimiter`] answers here.
    ///
    /// ```
    /// use keyward::ratelimit::{MemoryRateLimiter, Quota, RateLimiter};
    ///
    /// let limiter = MemoryRateLimiter::new();
    /// let quota = Quota::per_minute(1).unwrap();
    /// assert!(limiter.check_now("key:k_1", quota).expect("in memory")?.allowed);
    /// assert!(!limiter.check_now("key:k_1", quota).expect("in memory")?.allowed);
    /// # Ok::<(), keyward::ratelimit::LimitError>(())
    /// ```
    fn check_now(&self, key: &str, quota: Quota) -> Option<Result<RateDecision, LimitError>> {
        let _ = (key, quota);
        None
    }
}

#[async_trait]
impl<L: RateLimiter + ?Sized> RateLimiter for Arc<L> {
    async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, LimitError> {
        (**self).check(key, quota).await
    }

    fn check_now(&self, key: &str, quota: Quota) -> Option<Result<RateDecision, LimitError>> {
        (**self).check_now(key, quota)
    }
}

/// Why a limiter could not decide. Callers must not admit the request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The key is empty or longer than [`MAX_KEY_LEN`] bytes.
    #[error("a rate limit key must be 1-256 bytes")]
    InvalidKey,
    /// The shared store of the limiter failed (fail closed: 503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of one [`RateLimiter::check`].
///
/// ```
/// use keyward::ratelimit::Quota;
///
/// let quota = Quota::per_minute(100).unwrap();
/// let (decision, _) = quota.step(None, time::OffsetDateTime::UNIX_EPOCH);
/// assert!(decision.allowed);
/// assert_eq!(decision.policy_value(), r#""default";q=100;w=60"#);
/// assert_eq!(decision.value(), r#""default";r=99;t=1"#);
/// assert_eq!(decision.retry_after_value(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[must_use = "a rate decision admits or denies: act on it"]
pub struct RateDecision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The quota's request count per window.
    pub limit: u32,
    /// The quota's period.
    pub window: Duration,
    /// How many more requests would be admitted right now.
    pub remaining: u32,
    /// The time until the key is back to a full burst of `limit`.
    pub reset: Duration,
    /// When denied, the time until the next request would be admitted.
    pub retry_after: Option<Duration>,
}

impl RateDecision {
    /// The `Retry-After` value when denied: whole seconds, rounded up (a
    /// client that waits that long is admitted).
    #[must_use]
    pub fn retry_after_value(&self) -> Option<String> {
        self.retry_after.map(|wait| ceil_secs(wait).to_string())
    }

    /// The IETF `RateLimit-Policy` value, `"default";q=<limit>;w=<window
    /// seconds, rounded up>`.
    #[must_use]
    pub fn policy_value(&self) -> String {
        self.policy().to_string()
    }

    /// The IETF `RateLimit` value, `"default";r=<remaining>;t=<seconds until
    /// the key is full again, rounded up>`.
    #[must_use]
    pub fn value(&self) -> String {
        self.state().to_string()
    }

    /// [`policy_value`](Self::policy_value), written where it is wanted.
    pub(crate) fn policy(&self) -> HeaderText {
        HeaderText(b'q', u64::from(self.limit), b'w', ceil_secs(self.window))
    }

    /// [`value`](Self::value), written where it is wanted.
    pub(crate) fn state(&self) -> HeaderText {
        HeaderText(b'r', u64::from(self.remaining), b't', ceil_secs(self.reset))
    }
}

/// `"default";<a>=<x>;<b>=<y>`: a rate limit header value, written without
/// `core::fmt` (it is on every limited response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderText(u8, u64, u8, u64);

impl HeaderText {
    /// The longest text: the name, two parameters and two `u64`s.
    pub(crate) const MAX_LEN: usize = 2 + POLICY_NAME.len() + 2 * (3 + 20);

    /// A small number that tells most texts apart (for a cache slot).
    #[cfg(feature = "http")]
    pub(crate) fn slot(&self) -> usize {
        (self.1 ^ self.3.rotate_left(16)) as usize
    }

    /// The text, written into `buf`.
    pub(crate) fn bytes<'b>(&self, buf: &'b mut [u8; Self::MAX_LEN]) -> &'b [u8] {
        let HeaderText(a, x, b, y) = *self;
        let mut len = 0;
        let mut push = |bytes: &[u8]| {
            buf[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        push(b"\"");
        push(POLICY_NAME.as_bytes());
        push(b"\";");
        push(&[a, b'=']);
        push(decimal(x, &mut [0; 20]));
        push(&[b';', b, b'=']);
        push(decimal(y, &mut [0; 20]));
        &buf[..len]
    }
}

impl fmt::Display for HeaderText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ASCII by construction.
        let mut buf = [0; Self::MAX_LEN];
        f.write_str(std::str::from_utf8(self.bytes(&mut buf)).unwrap_or_default())
    }
}

/// The decimal digits of `n`, written at the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        // A digit: `n % 10` is below 10.
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// [`bounded_key`] written into `buf` when it is `<kind>:<value>` (short
/// enough not to be hashed): no allocation. `None` for a longer one.
#[cfg(feature = "http")]
pub(crate) fn short_key<'b>(
    buf: &'b mut [u8; MAX_KEY_LEN],
    kind: &str,
    value: &str,
) -> Option<&'b str> {
    let len = kind.len() + 1 + value.len();
    if len > MAX_KEY_LEN {
        return None;
    }
    buf[..kind.len()].copy_from_slice(kind.as_bytes());
    buf[kind.len()] = b':';
    buf[kind.len() + 1..len].copy_from_slice(value.as_bytes());
    // Two `str`s and an ASCII byte: always UTF-8.
    std::str::from_utf8(&buf[..len]).ok()
}

/// `<kind>:<value>`, or `<kind>:sha256:<hex digest of value>` when that
/// would be longer than [`MAX_KEY_LEN`] (an external subject, say).
#[cfg(feature = "http")]
pub(crate) fn bounded_key(kind: &str, value: &str) -> String {
    if kind.len() + 1 + value.len() <= MAX_KEY_LEN {
        format!("{kind}:{value}")
    } else {
        hashed_key(kind, value)
    }
}

/// `<kind>:sha256:<hex digest of value>`: a fixed-length key that keeps
/// request input such as an account name out of the limiter's store.
#[cfg(feature = "http")]
pub(crate) fn hashed_key(kind: &str, value: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{kind}:sha256:{:x}", Sha256::digest(value.as_bytes()))
}

pub(crate) fn valid_key(key: &str) -> Result<(), LimitError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(LimitError::InvalidKey);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_seconds_up() {
        let decision = RateDecision {
            allowed: false,
            limit: 7,
            window: Duration::from_millis(1500),
            remaining: 0,
            reset: Duration::from_nanos(18_000_000_001),
            retry_after: Some(Duration::from_millis(600)),
        };
        assert_eq!(decision.retry_after_value().as_deref(), Some("1"));
        assert_eq!(decision.policy_value(), "\"default\";q=7;w=2");
        assert_eq!(decision.value(), "\"default\";r=0;t=19");
        let exact = RateDecision {
            retry_after: Some(Duration::from_secs(2)),
            reset: Duration::ZERO,
            ..decision
        };
        assert_eq!(exact.retry_after_value().as_deref(), Some("2"));
        assert_eq!(exact.value(), "\"default\";r=0;t=0");
    }

    #[cfg(feature = "http")]
    #[test]
    fn long_values_are_keyed_by_their_digest() {
        assert_eq!(bounded_key("key", "key_123"), "key:key_123");
        let long = "s".repeat(MAX_KEY_LEN);
        let key = bounded_key("ext", &long);
        assert_eq!(key, hashed_key("ext", &long));
        assert_eq!(key.len(), "ext:sha256:".len() + 64);
        assert!(valid_key(&key).is_ok());
        assert_ne!(hashed_key("acct", "ada"), hashed_key("acct", "bob"));
    }

    #[cfg(feature = "http")]
    #[test]
    fn short_keys_are_the_bounded_keys_on_the_stack() {
        let mut buf = [0; MAX_KEY_LEN];
        assert_eq!(short_key(&mut buf, "key", "key_123"), Some("key:key_123"));
        let longest = "s".repeat(MAX_KEY_LEN - 4);
        let mut buf = [0; MAX_KEY_LEN];
        let key = short_key(&mut buf, "ext", &longest).map(str::to_owned);
        assert_eq!(key.as_deref(), Some(bounded_key("ext", &longest).as_str()));
        let long = "s".repeat(MAX_KEY_LEN - 3);
        assert_eq!(short_key(&mut buf, "ext", &long), None);
    }

    #[test]
    fn keys_are_bounded() {
        assert!(matches!(valid_key(""), Err(LimitError::InvalidKey)));
        assert!(valid_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(matches!(
            valid_key(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(LimitError::InvalidKey)
        ));
    }
}
