//! The keyring: issue, verify, list, get, revoke and rotate keys over a store.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog, ScopeStatus, VerifyError};
//!
//! let catalog = ScopeCatalog::builder()
//!     .scope("read", "Read players", ScopeStatus::Enforced)
//!     .scope("write", "Change players", ScopeStatus::Enforced)
//!     .build()?;
//! let keyring = Keyring::builder()
//!     .store(MemoryStore::new())
//!     .kind(KeyKind::new("pk", catalog)?.default_scopes(["read", "write"])?)
//!     .build()?;
//!
//! let issued = keyring.issue(NewKey::new("pk", "property_1", "Backend")).await?;
//! let key = keyring.verify(issued.token.expose_secret()).await?;
//! assert_eq!(key.tenant().as_str(), "property_1");
//!
//! keyring.revoke(key.id()).await?;
//! let err = keyring.verify(issued.token.expose_secret()).await.unwrap_err();
//! assert!(matches!(err, VerifyError::Revoked));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use std::time::Duration;

use time::OffsetDateTime;

use crate::clock::{span, Clock, SystemClock};
use crate::error::{ConfigError, IssueError, ManageError, StoreError, TokenError, VerifyError};
use crate::hash::TokenHasher;
use crate::key::{
    displayable, valid_label, ExpiryPolicy, KeyId, KeyInfo, KeyRecord, KeyState, NewKey, OwnerId,
    RateLimit, TenantId,
};
use crate::last_used::{Batch, LastUsedTracker, Recorded, TimerTask};
use crate::lifecycle::{announce, Actor, EventKind, LifecycleEvent, LifecycleSink, TracingSink};
use crate::page::{decode_cursor, encode_cursor, KeyPage, ListQuery, MAX_PAGE_LIMIT};
use crate::scope::{Decision, Requirement, ScopeCatalog, ScopeSet};
use crate::store::{KeyStore, NoticeClaim, NoticeOutcome, PageRequest, Revocation};
use crate::token::{ParsedToken, Secret, TokenFormat, TokenKey, TokenKind};
use crate::usage::{
    BudgetId, ControlsUpdate, CreditSpend, Credits, CreditsChange, IpAllowlist, UseContext,
};

/// Most metadata labels a key may carry.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_LEN: usize = 1024;

/// At most this many keys are revoked for one reuse of a rotated token (a
/// family longer than this is reported as not wholly revoked).
const MAX_FAMILY: usize = 64;

/// A rotated key's reuse is reported (and its family revoked) at most once
/// per this interval.
const REUSE_REPORT_INTERVAL: Duration = Duration::from_secs(3_600);

/// At most this many keys are remembered as recently looked into for reuse
/// (then the memory starts over).
const MAX_REUSE_SEEN: usize = 4_096;

/// What [`Keyring::verify`] does when a rotated key's token is presented
/// after its rotation's grace ended (the token is refused as revoked in
/// every case, and a [`EventKind::ReuseDetected`] event names the keys
/// that replaced it).
///
/// A token used after it was replaced is either a client that missed the
/// rotation or a copy in someone else's hands. [`Report`](Self::Report)
/// leaves the successor working (no outage for a slow client; an attacker
/// who also holds the successor keeps it). [`RevokeFamily`](Self::RevokeFamily)
/// revokes every key that descends from it by rotation, as GitLab does: a
/// leaked chain dies at once, at the price of an outage for the legitimate
/// holder, who must be issued a new key. Anyone holding the old token can
/// trigger it, so pick it for kinds whose holders can take that.
///
/// ```
/// use keyward::{KeyKind, ReusePolicy, ScopeCatalog};
///
/// let kind = KeyKind::new("pl", ScopeCatalog::builder().build()?)?.on_reuse(ReusePolicy::RevokeFamily);
/// assert_eq!(kind.reuse_policy(), ReusePolicy::RevokeFamily);
/// # Ok::<(), keyward::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReusePolicy {
    /// Refuse the old token and report it; the successors keep working.
    #[default]
    Report,
    /// Also revoke, at once, every key that descends from it by rotation.
    RevokeFamily,
}

/// Longest reporter name a [`LeakReport`] keeps, in bytes.
const MAX_REPORTER_LEN: usize = 64;
/// Longest URL a [`LeakReport`] keeps, in bytes.
const MAX_LEAK_URL_LEN: usize = 2048;

/// Who reported a leaked token and where it was found, for
/// [`Keyring::report_leak`] and its [`EventKind::Leaked`] event.
///
/// Both come from outside (a scanner's alert): the reporter is cut to 64
/// bytes and the URL to 2048 (at a character boundary); an empty URL is
/// none.
///
/// ```
/// use keyward::LeakReport;
///
/// let report = LeakReport::new("github").url("https://github.com/o/r/blob/1/.env");
/// assert_eq!(report.reporter(), "github");
/// assert_eq!(report.get_url(), Some("https://github.com/o/r/blob/1/.env"));
/// assert_eq!(LeakReport::new("github").url("").get_url(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakReport {
    reporter: Cow<'static, str>,
    url: Option<String>,
}

impl LeakReport {
    /// A report from `reporter` (`"github"`, `"gitleaks"`, a support
    /// ticket's queue).
    #[must_use]
    pub fn new(reporter: impl Into<Cow<'static, str>>) -> Self {
        let mut reporter = reporter.into();
        if reporter.len() > MAX_REPORTER_LEN {
            reporter = Cow::Owned(cut(&reporter, MAX_REPORTER_LEN).to_owned());
        }
        LeakReport {
            reporter,
            url: None,
        }
    }

    /// Where the token was found.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        let mut url = url.into();
        url.truncate(cut(&url, MAX_LEAK_URL_LEN).len());
        self.url = Some(url).filter(|u| !u.is_empty());
        self
    }

    /// Who reported it.
    #[must_use]
    pub fn reporter(&self) -> &str {
        &self.reporter
    }

    /// Where it was found, if said.
    #[must_use]
    pub fn get_url(&self) -> Option<&str> {
        self.url.as_deref()
    }
}

/// The longest start of `text` of at most `max` bytes that ends on a
/// character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What [`Keyring::report_leak`] found and did.
///
/// ```
/// use keyward::{LeakOutcome, TokenError};
///
/// let outcome = LeakOutcome::NotOurs(TokenError::BadChecksum);
/// assert!(!outcome.is_ours());
/// assert!(!LeakOutcome::NotFound.is_ours());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
#[must_use]
pub enum LeakOutcome {
    /// Not a token of this keyring (malformed, unknown prefix, bad checksum
    /// or tag): refused offline, no store was asked.
    NotOurs(TokenError),
    /// Well formed, but no key has this token.
    NotFound,
    /// The key was live and is now revoked; [`EventKind::Leaked`] was
    /// announced.
    Revoked(KeyInfo),
    /// The key was already revoked or expired; nothing was done.
    Inactive(KeyInfo),
}

impl LeakOutcome {
    /// Whether the token is one of this keyring's keys (revoked now or
    /// before): a true positive for the reporter.
    #[must_use]
    pub fn is_ours(&self) -> bool {
        matches!(self, LeakOutcome::Revoked(_) | LeakOutcome::Inactive(_))
    }
}

/// A token kind with the scopes its keys may hold: the prefix, its scope
/// catalog, and the scopes a key gets when the issuer names none.
///
/// ```
/// use keyward::{KeyKind, ScopeCatalog, ScopeStatus};
///
/// let catalog = ScopeCatalog::builder().scope("read", "", ScopeStatus::Enforced).build().unwrap();
/// let kind = KeyKind::new("pk", catalog).unwrap().default_scopes(["read"]).unwrap();
/// assert_eq!(kind.token_kind().prefix(), "pk");
/// ```
#[derive(Debug, Clone)]
pub struct KeyKind {
    token: TokenKind,
    catalog: Arc<ScopeCatalog>,
    default_scopes: ScopeSet,
    expiry: ExpiryPolicy,
    reuse: ReusePolicy,
}

impl KeyKind {
    /// A kind with this prefix and catalog; no default scopes.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPrefix`] when `prefix` is not 1–16 of
    /// `[a-z0-9_]`, starting with a letter and not ending with `_`.
    pub fn new(prefix: &str, catalog: ScopeCatalog) -> Result<Self, ConfigError> {
        Ok(KeyKind {
            token: TokenKind::new(prefix)?,
            catalog: Arc::new(catalog),
            default_scopes: ScopeSet::default(),
            expiry: ExpiryPolicy::default(),
            reuse: ReusePolicy::default(),
        })
    }

    /// The scopes a key gets when the issuer names none (for example
    /// `["read", "write"]` for a dashboard's default key). Each must be in
    /// the catalog.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Scope`] for a scope the catalog does not declare.
    pub fn default_scopes<I, S>(mut self, scopes: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.default_scopes = self.catalog.grant(scopes)?;
        Ok(self)
    }

    /// The expiries keys of this kind may have ([`ExpiryPolicy`]; by
    /// default any, and never unless asked). Issuing or rotating outside
    /// it is [`IssueError::ExpiryNotAllowed`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use keyward::{Expiry, ExpiryPolicy, KeyKind, ScopeCatalog};
    ///
    /// let kind = KeyKind::new("pl", ScopeCatalog::builder().build().unwrap())
    ///     .unwrap()
    ///     .expiry_policy(
    ///         ExpiryPolicy::new()
    ///             .max_lifetime(Duration::from_secs(366 * 86_400))
    ///             .allow_never(false)
    ///             .default_expiry(Expiry::Days90),
    ///     )
    ///     .unwrap();
    /// # let _ = kind;
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidExpiryPolicy`] when the policy's default
    /// expiry is one it does not allow.
    pub fn expiry_policy(mut self, policy: ExpiryPolicy) -> Result<Self, ConfigError> {
        // Checked at an instant far from the ends of time.
        let probe = OffsetDateTime::UNIX_EPOCH;
        policy
            .check(policy.default_value(), probe)
            .map_err(|_| ConfigError::InvalidExpiryPolicy("the default expiry is not allowed"))?;
        self.expiry = policy;
        Ok(self)
    }

    /// The kind's expiry policy.
    pub fn expiry(&self) -> &ExpiryPolicy {
        &self.expiry
    }

    /// What happens when a rotated key's token is presented after its
    /// grace ended; [`ReusePolicy::Report`] by default.
    #[must_use]
    pub fn on_reuse(mut self, policy: ReusePolicy) -> Self {
        self.reuse = policy;
        self
    }

    /// The kind's [`ReusePolicy`].
    #[must_use]
    pub fn reuse_policy(&self) -> ReusePolicy {
        self.reuse
    }

    /// Tags this kind's tokens with a server-held [`TokenKey`], so forged
    /// tokens are refused offline, before any store lookup (see
    /// [`TokenKind::key`]).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog, TokenError, TokenKey,
    ///               VerifyError};
    ///
    /// let key = TokenKey::new(1, b"32 bytes from your secret store!".to_vec())?;
    /// let keyring = Keyring::builder()
    ///     .store(MemoryStore::new())
    ///     .kind(KeyKind::new("pl", ScopeCatalog::builder().build()?)?.token_key(key))
    ///     .build()?;
    /// let issued = keyring.issue(NewKey::new("pl", "org_1", "CI")).await?;
    /// assert_eq!(issued.token.expose_secret().len(), 3 + 44);
    /// assert!(keyring.verify(issued.token.expose_secret()).await.is_ok());
    ///
    /// // Well formed, with a valid public checksum, but not tagged by us.
    /// let forged = keyward::TokenKind::new("pl")?
    ///     .key(TokenKey::new(1, vec![0; 32])?)
    ///     .generate();
    /// assert!(matches!(
    ///     keyring.verify(forged.expose_secret()).await,
    ///     Err(VerifyError::Malformed(TokenError::BadTag))
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn token_key(mut self, key: TokenKey) -> Self {
        self.token = self.token.key(key);
        self
    }

    /// Also accepts tokens tagged with `previous` (token key rotation; see
    /// [`TokenKind::previous_key`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidTokenKey`] without a current key or when both
    /// keys share a version.
    pub fn previous_token_key(mut self, previous: TokenKey) -> Result<Self, ConfigError> {
        self.token = self.token.previous_key(previous)?;
        Ok(self)
    }

    /// Also accepts untagged tokens issued before the kind had a key (a
    /// migration aid; see [`TokenKind::accept_untagged`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidTokenKey`] without a token key.
    pub fn accept_untagged_tokens(mut self, accept: bool) -> Result<Self, ConfigError> {
        self.token = self.token.accept_untagged(accept)?;
        Ok(self)
    }

    /// The token kind.
    #[must_use]
    pub fn token_kind(&self) -> &TokenKind {
        &self.token
    }

    /// The scope catalog.
    #[must_use]
    pub fn catalog(&self) -> &ScopeCatalog {
        &self.catalog
    }

    /// The scopes a key of this kind gets when the issuer names none (set
    /// with [`default_scopes`](Self::default_scopes)).
    #[must_use]
    pub fn default_scope_set(&self) -> &ScopeSet {
        &self.default_scopes
    }
}

/// Configures a [`Keyring`]. Made by [`Keyring::builder`]; a store is
/// required, so [`build`](KeyringBuilder::build) exists only once
/// [`store`](KeyringBuilder::store) (or `shared_store`) was called: a
/// keyring without a store does not compile.
///
/// ```compile_fail
/// # use keyward::{KeyKind, Keyring, ScopeCatalog};
/// let keyring = Keyring::builder()
///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
///     .build()?; // no store: `build` is not there
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct KeyringBuilder<S = NoStore> {
    store: S,
    kinds: Vec<KeyKind>,
    hasher: TokenHasher,
    clock: Arc<dyn Clock>,
    /// `clock` is a [`SystemClock`]: read without the dynamic call.
    system_clock: bool,
    last_used_interval: Duration,
    spawner: Option<Spawner>,
    timer: Option<Sleeper>,
    sink: Arc<dyn LifecycleSink>,
}

/// The store of a [`KeyringBuilder`] before one is given.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct NoStore;

impl<S> fmt::Debug for KeyringBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringBuilder")
            .field("kinds", &self.kinds)
            .field("hasher", &self.hasher)
            .field("last_used_interval", &self.last_used_interval)
            .field("spawns_last_used_writes", &self.spawner.is_some())
            .field("last_used_timer", &self.timer.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> KeyringBuilder<S> {
    /// The store (required).
    pub fn store(self, store: impl KeyStore) -> KeyringBuilder<Arc<dyn KeyStore>> {
        self.shared_store(Arc::new(store))
    }

    /// The store, already shared.
    pub fn shared_store(self, store: Arc<dyn KeyStore>) -> KeyringBuilder<Arc<dyn KeyStore>> {
        KeyringBuilder {
            store,
            kinds: self.kinds,
            hasher: self.hasher,
            clock: self.clock,
            system_clock: self.system_clock,
            last_used_interval: self.last_used_interval,
            spawner: self.spawner,
            timer: self.timer,
            sink: self.sink,
        }
    }

    /// Where lifecycle events go (issued, revoked, rotated, reuse detected,
    /// and the [`Sweeper`](crate::Sweeper)'s); [`TracingSink`] by default.
    pub fn events(mut self, sink: impl LifecycleSink) -> Self {
        self.sink = Arc::new(sink);
        self
    }

    /// Accepts and issues keys of this kind (at least one).
    pub fn kind(mut self, kind: KeyKind) -> Self {
        self.kinds.push(kind);
        self
    }

    /// How tokens are hashed; SHA-256 by default.
    pub fn hasher(mut self, hasher: TokenHasher) -> Self {
        self.hasher = hasher;
        self
    }

    /// Where time comes from; the system clock by default.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.system_clock = is_system_clock(&clock);
        self.clock = Arc::new(clock);
        self
    }

    /// At most one last-used write per key per this interval; 60 s by default.
    ///
    /// This process sees a use at once ([`Keyring::get`] and
    /// [`Keyring::list`] fold in uses not yet written); other processes
    /// reading the store see it once it is written: within one interval with
    /// a [`last_used_timer`](Self::last_used_timer), otherwise at the next
    /// use that finds a batch due or at [`Keyring::flush_last_used`].
    pub fn last_used_interval(mut self, interval: Duration) -> Self {
        self.last_used_interval = interval;
        self
    }

    /// Writes due last-used batches in the background instead of inside the
    /// `verify` call that finds them due: `spawn` receives the write as a
    /// future to run (with tokio: `|write| { tokio::spawn(write); }`). Then no
    /// request ever waits on, or times out over, a last-used write. A write
    /// that fails, or a future dropped before it ran, puts its batch back for
    /// the next interval.
    ///
    /// Without a [`last_used_timer`](Self::last_used_timer) a batch is only
    /// taken when a later use finds it due, so a key used once and then left
    /// quiet reaches the store at the next flush; add the timer so it is
    /// written within the interval.
    ///
    /// ```
    /// # use keyward::{KeyKind, Keyring, MemoryStore, ScopeCatalog};
    /// let keyring = Keyring::builder()
    ///     .store(MemoryStore::new())
    ///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
    ///     .spawn_last_used_writes(|write| {
    ///         tokio::spawn(write);
    ///     })
    ///     .last_used_timer(tokio::time::sleep)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_last_used_writes(
        mut self,
        spawn: impl Fn(Pin<Box<dyn Future<Output = ()> + Send>>) + Send + Sync + 'static,
    ) -> Self {
        self.spawner = Some(Arc::new(spawn));
        self
    }

    /// Writes last uses on a timer, so a quiet key's last use reaches the
    /// store within one [interval](Self::last_used_interval) of its use even
    /// when no further request comes. Needs
    /// [`spawn_last_used_writes`](Self::spawn_last_used_writes): the keyring
    /// has no runtime of its own, so `sleep` is the host's timer (with tokio:
    /// `tokio::time::sleep`): `sleep(span)` returns a future that completes
    /// once `span` has passed.
    ///
    /// How it runs: the first use after a quiet spell hands one timer task
    /// to the spawner (never one per request). The task sleeps until the
    /// batch is due (one interval after the previous batch, or at once if
    /// that was longer ago), writes every pending use, and sleeps one
    /// interval again while uses keep coming; a wake-up that finds nothing
    /// pending ends it. It writes one batch at a time, waiting for each
    /// before sleeping. Requests then never take a batch themselves: they
    /// only note the use. The task holds the keyring weakly: once the
    /// keyring is dropped it ends at its next wake-up without writing (call
    /// [`Keyring::flush_last_used`] at shutdown). A failed write, or a task
    /// dropped mid-write, puts its batch back; a task dropped before it ends
    /// (its runtime shut down) lets the next use arm a new one.
    ///
    /// Without a spawner, [`build`](KeyringBuilder::build) fails with
    /// [`ConfigError::LastUsedTimerWithoutSpawner`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog};
    ///
    /// let keyring = Keyring::builder()
    ///     .store(MemoryStore::new())
    ///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
    ///     .last_used_interval(Duration::from_secs(60))
    ///     .spawn_last_used_writes(|write| {
    ///         tokio::spawn(write);
    ///     })
    ///     .last_used_timer(tokio::time::sleep)
    ///     .build()?;
    /// let issued = keyring.issue(NewKey::new("pk", "tenant_1", "Backend")).await?;
    /// keyring.verify(issued.token.expose_secret()).await?;
    /// // Seen at once in this process; written within 60 s for the others.
    /// assert!(keyring.get(issued.info.id()).await?.last_used_at().is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn last_used_timer<F>(
        mut self,
        sleep: impl Fn(Duration) -> F + Send + Sync + 'static,
    ) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.timer = Some(Arc::new(move |span| Box::pin(sleep(span))));
        self
    }
}

impl KeyringBuilder<Arc<dyn KeyStore>> {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoTokenKind`] without a kind,
    /// [`ConfigError::DuplicatePrefix`] when two kinds share a prefix,
    /// [`ConfigError::LastUsedTimerWithoutSpawner`] for a
    /// [`last_used_timer`](KeyringBuilder::last_used_timer) without
    /// [`spawn_last_used_writes`](KeyringBuilder::spawn_last_used_writes).
    pub fn build(self) -> Result<Keyring, ConfigError> {
        let store = self.store;
        if self.kinds.is_empty() {
            return Err(ConfigError::NoTokenKind);
        }
        let format = TokenFormat::try_new(self.kinds.iter().map(|k| k.token.clone()))?;
        if self.timer.is_some() && self.spawner.is_none() {
            return Err(ConfigError::LastUsedTimerWithoutSpawner);
        }
        let timed = self.timer.is_some();
        Ok(Keyring {
            inner: Arc::new(Inner {
                store,
                format,
                kinds: self.kinds.into_iter().map(Arc::new).collect(),
                hasher: self.hasher,
                clock: self.clock,
                system_clock: self.system_clock,
                last_used: Arc::new(LastUsedTracker::new(self.last_used_interval, timed)),
                spawner: self.spawner,
                timer: self.timer,
                sink: self.sink,
                reuse_seen: std::sync::Mutex::default(),
            }),
        })
    }
}

/// Issues, verifies and manages keys. Cheap to clone; clones share state.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog, ScopeStatus, VerifyError};
///
/// let catalog = ScopeCatalog::builder()
///     .scope("read", "Read players", ScopeStatus::Enforced)
///     .build()?;
/// let keyring = Keyring::builder()
///     .store(MemoryStore::new())
///     .kind(KeyKind::new("pk", catalog)?.default_scopes(["read"])?)
///     .build()?;
///
/// let issued = keyring.issue(NewKey::new("pk", "tenant_1", "Backend")).await?;
/// let key = keyring.verify(issued.token.expose_secret()).await?;
/// assert_eq!(keyring.list(key.tenant()).await?.len(), 1);
///
/// keyring.revoke(key.id()).await?;
/// let refused = keyring.verify(issued.token.expose_secret()).await;
/// assert!(matches!(refused, Err(VerifyError::Revoked)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    format: TokenFormat,
    kinds: Vec<Arc<KeyKind>>,
    hasher: TokenHasher,
    clock: Arc<dyn Clock>,
    /// `clock` is a [`SystemClock`] (see `now`).
    system_clock: bool,
    last_used: Arc<LastUsedTracker>,
    spawner: Option<Spawner>,
    timer: Option<Sleeper>,
    sink: Arc<dyn LifecycleSink>,
    /// Keys whose reuse this process looked into, until when.
    reuse_seen: std::sync::Mutex<std::collections::HashMap<KeyId, OffsetDateTime>>,
}

/// Runs a background last-used write (see
/// [`KeyringBuilder::spawn_last_used_writes`]).
type Spawner = Arc<dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>) + Send + Sync>;

/// The host's timer (see [`KeyringBuilder::last_used_timer`]).
type Sleeper = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("kinds", &self.inner.kinds)
            .field("hasher", &self.inner.hasher)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

/// A freshly issued key: the token, to show its owner once, and the record.
#[derive(Debug)]
#[non_exhaustive]
pub struct IssuedKey {
    /// The token. `Debug`/`Display` redact it; it is zeroed on drop.
    pub token: Secret,
    /// What was stored (without the hash).
    pub info: KeyInfo,
}

/// A key that passed verification, with what routes need to authorize.
#[derive(Clone)]
pub struct VerifiedKey {
    record: Arc<KeyRecord>,
    kind: Arc<KeyKind>,
}

impl VerifiedKey {
    /// The key's id.
    #[must_use]
    pub fn id(&self) -> &KeyId {
        &self.record.id
    }

    /// The key's tenant.
    #[must_use]
    pub fn tenant(&self) -> &TenantId {
        &self.record.tenant
    }

    /// The key's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The key's kind.
    #[must_use]
    pub fn kind(&self) -> &TokenKind {
        &self.kind.token
    }

    /// The granted scopes.
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        &self.record.scopes
    }

    /// The catalog of the key's kind.
    #[must_use]
    pub fn catalog(&self) -> &ScopeCatalog {
        &self.kind.catalog
    }

    /// The key's rate limit.
    #[must_use]
    pub fn rate_limit(&self) -> RateLimit {
        self.record.rate_limit
    }

    /// When the key expires.
    #[must_use]
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.record.expires_at
    }

    /// The key's metadata labels.
    #[must_use]
    pub fn metadata(&self) -> &std::collections::BTreeMap<String, String> {
        &self.record.metadata
    }

    /// The ranges the key may be used from, if restricted.
    #[must_use]
    pub fn allowed_ips(&self) -> Option<&IpAllowlist> {
        self.record.allowed_ips.as_ref()
    }

    /// The key's credits as read at verification (spends since are not
    /// counted; [`Keyring::spend_credits`] answers what remains).
    #[must_use]
    pub fn credits(&self) -> Option<&Credits> {
        self.record.credits.as_ref()
    }

    /// Whether the key carries usage credits (spend them with
    /// [`Keyring::spend_credits`]).
    #[must_use]
    pub fn is_metered(&self) -> bool {
        self.record.credits.is_some()
    }

    /// The shared rate-limit budget the key draws on, if any.
    #[must_use]
    pub fn budget(&self) -> Option<&BudgetId> {
        self.record.budget.as_ref()
    }

    /// Evaluates a route's requirement against the key's scopes.
    pub fn check(&self, requirement: &Requirement) -> Decision {
        self.kind.catalog.evaluate(requirement, &self.record.scopes)
    }
}

impl fmt::Debug for VerifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedKey")
            .field("id", &self.record.id)
            .field("tenant", &self.record.tenant)
            .field("kind", &self.kind.token)
            .field("scopes", &self.record.scopes)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A builder: SHA-256, the system clock, last-used writes every 60 s.
    pub fn builder() -> KeyringBuilder {
        KeyringBuilder {
            store: NoStore,
            kinds: Vec::new(),
            hasher: TokenHasher::sha256(),
            clock: Arc::new(SystemClock),
            system_clock: true,
            spawner: None,
            timer: None,
            last_used_interval: Duration::from_secs(60),
            sink: Arc::new(TracingSink),
        }
    }

    /// The accepted token format (for parsing without verifying).
    #[must_use]
    pub fn format(&self) -> &TokenFormat {
        &self.inner.format
    }

    /// The configured kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &KeyKind> {
        self.inner.kinds.iter().map(|k| &**k)
    }

    /// The kind with this prefix.
    #[must_use]
    pub fn kind(&self, prefix: &str) -> Option<&KeyKind> {
        self.kinds().find(|k| k.token.prefix() == prefix)
    }

    /// The current instant of the keyring's clock.
    pub(crate) fn now(&self) -> OffsetDateTime {
        // The default clock called directly: its instant comes back in
        // registers, not through memory as a dynamic call's does (a stall
        // on every request).
        if self.inner.system_clock {
            SystemClock.now()
        } else {
            self.inner.clock.now()
        }
    }

    /// The keyring's clock, for the limiters of its HTTP layer.
    #[cfg(feature = "http")]
    pub(crate) fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// Issues a key. The token in the result exists nowhere else: only its
    /// hash is stored.
    ///
    /// # Errors
    ///
    /// [`IssueError`]: an unknown kind, scopes the kind's catalog does not
    /// declare, an invalid name, tenant or metadata label, an expiry in the
    /// past, or a store failure (nothing is issued then).
    pub async fn issue(&self, new: NewKey) -> Result<IssuedKey, IssueError> {
        self.issue_as(new, None).await
    }

    /// [`issue`](Self::issue), naming who asked in the event.
    pub(crate) async fn issue_as(
        &self,
        new: NewKey,
        actor: Option<&Actor>,
    ) -> Result<IssuedKey, IssueError> {
        let kind = self
            .kind(&new.kind)
            .ok_or_else(|| IssueError::UnknownKind(new.kind.clone()))?;
        if !valid_label(&new.name) {
            return Err(IssueError::InvalidName);
        }
        let tenant = TenantId::parse(&new.tenant).ok_or(IssueError::InvalidTenant)?;
        let owner = match &new.owner {
            Some(owner) => Some(OwnerId::parse(owner).ok_or(IssueError::InvalidOwner)?),
            None => None,
        };
        let scopes = match &new.scopes {
            Some(scopes) => kind.catalog.grant(scopes)?,
            None => kind.default_scopes.clone(),
        };
        check_metadata(&new.metadata)?;
        let now = self.now();
        let expiry = new.expiry.unwrap_or(kind.expiry.default_value());
        if expiry.resolve(now).is_some_and(|at| at <= now) {
            return Err(IssueError::ExpiryInPast);
        }
        let expires_at = kind
            .expiry
            .check(expiry, now)
            .map_err(IssueError::ExpiryNotAllowed)?;
        let budget = match &new.budget {
            Some(budget) => Some(BudgetId::parse(budget).ok_or(IssueError::InvalidBudget)?),
            None => None,
        };
        if let Some(credits) = &new.credits {
            credits.check()?;
        }
        let credits = new.credits.map(|c| Credits {
            refilled_at: c.refilled_at.or(Some(now)),
            ..c
        });
        let draft = Draft {
            tenant,
            name: new.name,
            scopes,
            created_at: now,
            expires_at,
            rate_limit: new.rate_limit,
            metadata: new.metadata,
            rotated_from: None,
            owner,
            allowed_ips: new.allowed_ips,
            credits,
            budget,
        };
        self.insert(kind, draft, actor).await
    }

    /// Generates the token, stores the record, and returns both.
    async fn insert(
        &self,
        kind: &KeyKind,
        draft: Draft,
        actor: Option<&Actor>,
    ) -> Result<IssuedKey, IssueError> {
        let token = kind.token.generate();
        let record = KeyRecord {
            id: KeyId::generate(),
            tenant: draft.tenant,
            kind: kind.token.prefix().to_owned(),
            name: draft.name,
            display_prefix: token.display_prefix().to_owned(),
            hash: self.inner.hasher.hash(token.expose_secret()),
            scopes: draft.scopes,
            created_at: draft.created_at,
            expires_at: draft.expires_at,
            last_used_at: None,
            revoked_at: None,
            revocation_scheduled: false,
            rate_limit: draft.rate_limit,
            metadata: draft.metadata,
            rotated_from: draft.rotated_from,
            owner: draft.owner,
            allowed_ips: draft.allowed_ips,
            credits: draft.credits,
            budget: draft.budget,
            recent_ips: Vec::new(),
            last_user_agent: None,
        };
        let record = Arc::new(record);
        let info = record.info();
        self.inner.store.insert(KeyRecord::clone(&record)).await?;
        let event = LifecycleEvent::about(&record, EventKind::Issued, actor, draft.created_at);
        announce(&*self.inner.sink, &event).await;
        Ok(IssuedKey { token, info })
    }

    /// Verifies a presented token: format and checksum offline, then the
    /// store by hash, then revocation and expiry. Records the use for the
    /// coalesced last-used write.
    ///
    /// Fails closed: a store error is [`VerifyError::Store`], never a pass.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Malformed`] (offline: shape, prefix, checksum, tag),
    /// [`Unknown`](VerifyError::Unknown), [`Expired`](VerifyError::Expired),
    /// [`Revoked`](VerifyError::Revoked), or [`Store`](VerifyError::Store)
    /// when the store fails (never a pass).
    pub async fn verify(&self, token: &str) -> Result<VerifiedKey, VerifyError> {
        self.verify_with(token, UseContext::new()).await
    }

    /// [`verify`](Self::verify), noting where the use came from (client IP,
    /// user agent) in the batched last-used write: the key's
    /// [`recent_ips`](KeyInfo::recent_ips) and
    /// [`last_user_agent`](KeyInfo::last_user_agent) once it is written.
    /// No store write of its own.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::usage::UseContext;
    /// use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog};
    ///
    /// let keyring = Keyring::builder()
    ///     .store(MemoryStore::new())
    ///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
    ///     .build()?;
    /// let issued = keyring.issue(NewKey::new("pk", "prop_1", "CI")).await?;
    /// let from = UseContext::new().ip("203.0.113.9".parse()?).user_agent("ci-runner/2.1");
    /// keyring.verify_with(issued.token.expose_secret(), from).await?;
    /// keyring.flush_last_used().await?;
    /// let info = keyring.get(issued.info.id()).await?;
    /// assert_eq!(info.recent_ips(), ["203.0.113.9".parse::<std::net::IpAddr>()?]);
    /// assert_eq!(info.last_user_agent(), Some("ci-runner/2.1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify).
    pub async fn verify_with(
        &self,
        token: &str,
        from: UseContext<'_>,
    ) -> Result<VerifiedKey, VerifyError> {
        let parsed = self.inner.format.parse(token)?;
        // From memory when the store can, without a future (the common case
        // and the cheapest); otherwise through the store's futures, the
        // first hash worked out again beside a round trip.
        let record = match self.find_now(&parsed) {
            Some(found) => found?,
            None => self.find(&parsed).await?,
        }
        .ok_or(VerifyError::Unknown)?;
        let now = self.now();
        if let Some(refused) = refusal(&record, now) {
            if matches!(refused, VerifyError::Revoked) {
                self.check_reuse(&record, now).await;
            }
            return Err(refused);
        }
        let (key, write) = self.accept(record, &parsed, now, &from)?;
        if let Some(write) = write {
            write.await;
        }
        Ok(key)
    }

    /// [`verify_with`](Self::verify_with) without waiting, for a store that
    /// answers from memory ([`KeyStore::find_by_hash_now`]): the key and the
    /// last-used write to await before answering (due, and no spawner to
    /// hand it to), or the refusal. `None`, having recorded nothing, when it
    /// would wait: the store must be asked through a future, or a revoked
    /// key's rotation reuse must be looked into. The token comes parsed
    /// (by [`format`](Self::format)), and `now` from the keyring's clock:
    /// the layer parses the token once for its own checks and this one,
    /// and reads the clock once for this and its rate limit.
    #[cfg(feature = "http")]
    pub(crate) fn verify_now(
        &self,
        parsed: &ParsedToken<'_, '_>,
        from: &UseContext<'_>,
        now: OffsetDateTime,
    ) -> Option<Result<(VerifiedKey, Option<LastUsedWrite>), VerifyError>> {
        let record = match self.find_now(parsed)? {
            Ok(Some(record)) => record,
            Ok(None) => return Some(Err(VerifyError::Unknown)),
            Err(err) => return Some(Err(err.into())),
        };
        match refusal(&record, now) {
            None => Some(self.accept(record, parsed, now, from)),
            // `check_reuse` acts only on a scheduled revocation.
            Some(VerifyError::Revoked) if record.revocation_scheduled => None,
            Some(refused) => Some(Err(refused)),
        }
    }

    /// An active key's record, found for `parsed`: the verified key, with
    /// its use recorded, and the last-used write to await, if one is due
    /// and no spawner takes it.
    fn accept(
        &self,
        record: Arc<KeyRecord>,
        parsed: &ParsedToken<'_, '_>,
        now: OffsetDateTime,
        from: &UseContext<'_>,
    ) -> Result<(VerifiedKey, Option<LastUsedWrite>), VerifyError> {
        let kind = self
            .inner
            .kinds
            .iter()
            .find(|k| &k.token == parsed.kind())
            .cloned()
            .ok_or(VerifyError::Unknown)?;
        let write = match self
            .inner
            .last_used
            .record(&record.id, now, from.ip, from.user_agent)
        {
            Recorded::Noted => None,
            // The write's outcome never changes this request's answer.
            Recorded::Write(batch) => {
                let write = Box::pin(write_batch(Arc::clone(&self.inner.store), batch));
                match &self.inner.spawner {
                    Some(spawn) => {
                        spawn(write);
                        None
                    }
                    None => Some(write as LastUsedWrite),
                }
            }
            Recorded::Arm(wait, task) => {
                self.arm_last_used_timer(wait, task);
                None
            }
        };
        Ok((VerifiedKey { record, kind }, write))
    }

    /// The stored record of a parsed token: looked up by its hash under the
    /// current pepper, then the previous one; the first record found decides.
    async fn find(
        &self,
        parsed: &ParsedToken<'_, '_>,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        // Through the trait object itself: method lookup on the `Arc` would
        // pick `impl KeyStore for Arc<S>`, one more boxed future per call.
        let store: &dyn KeyStore = &*self.inner.store;
        for hash in self.inner.hasher.candidates(parsed.expose_secret()) {
            // From memory without a future when the store can.
            let found = match store.find_by_hash_now(&hash) {
                Some(found) => found?,
                None => store.find_by_hash(&hash).await?,
            };
            if let Some(record) = found {
                return Ok(exact(record, &hash, parsed));
            }
        }
        Ok(None)
    }

    /// [`find`](Self::find) from memory; `None` when the store would have
    /// to be asked through a future.
    fn find_now(
        &self,
        parsed: &ParsedToken<'_, '_>,
    ) -> Option<Result<Option<Arc<KeyRecord>>, StoreError>> {
        let store: &dyn KeyStore = &*self.inner.store;
        for hash in self.inner.hasher.candidates(parsed.expose_secret()) {
            match store.find_by_hash_now(&hash)? {
                Ok(Some(record)) => return Some(Ok(exact(record, &hash, parsed))),
                Ok(None) => {}
                Err(err) => return Some(Err(err)),
            }
        }
        Some(Ok(None))
    }

    /// Handles a report that `token` leaked (a secret scanner found it in
    /// public): checks it offline, looks it up by hash as
    /// [`verify`](Self::verify) does, and if its key is live revokes it at
    /// once ([`Revocation::Now`]: on the store's clock, as
    /// [`revoke`](Self::revoke) does) and announces
    /// [`EventKind::Leaked`] with actor `Actor::System("secret-scanning")`.
    ///
    /// * not a token of this keyring (malformed, unknown prefix, bad
    ///   checksum or tag): [`LeakOutcome::NotOurs`], without a store
    ///   lookup;
    /// * well formed but no key has it: [`LeakOutcome::NotFound`];
    /// * its key was live: [`LeakOutcome::Revoked`];
    /// * its key was already revoked or expired:
    ///   [`LeakOutcome::Inactive`], and nothing is written or announced.
    ///
    /// Two reports of one live key at the same instant may both revoke it
    /// (the store keeps the first instant) and both announce it.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::{KeyKind, Keyring, LeakOutcome, LeakReport, MemoryStore, NewKey, ScopeCatalog,
    ///               VerifyError};
    ///
    /// let keyring = Keyring::builder()
    ///     .store(MemoryStore::new())
    ///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
    ///     .build()?;
    /// let issued = keyring.issue(NewKey::new("pk", "org_1", "CI")).await?;
    /// let token = issued.token.expose_secret();
    ///
    /// let report = LeakReport::new("github").url("https://github.com/o/r/blob/1/.env");
    /// let outcome = keyring.report_leak(token, report.clone()).await?;
    /// assert!(matches!(outcome, LeakOutcome::Revoked(ref info) if info.id() == issued.info.id()));
    /// assert!(matches!(keyring.verify(token).await, Err(VerifyError::Revoked)));
    ///
    /// // Reported again: known, already inactive, nothing more happens.
    /// assert!(matches!(keyring.report_leak(token, report.clone()).await?, LeakOutcome::Inactive(_)));
    /// assert!(matches!(keyring.report_leak("pk_nope", report).await?, LeakOutcome::NotOurs(_)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The store's error when the lookup or the revocation fails (fails
    /// closed: the caller should answer so that the report is sent again).
    pub async fn report_leak(
        &self,
        token: &str,
        report: LeakReport,
    ) -> Result<LeakOutcome, StoreError> {
        let parsed = match self.inner.format.parse(token) {
            Ok(parsed) => parsed,
            Err(err) => return Ok(LeakOutcome::NotOurs(err)),
        };
        let Some(record) = self.find(&parsed).await? else {
            return Ok(LeakOutcome::NotFound);
        };
        if record.state(self.now()) != KeyState::Active {
            return Ok(LeakOutcome::Inactive(self.fresh(&record)));
        }
        let kind = EventKind::Leaked {
            reporter: report.reporter,
            url: report.url,
        };
        let actor = Actor::System("secret-scanning");
        match self.revoke_now(&record.id, Some(&actor), kind).await? {
            Some(revoked) => Ok(LeakOutcome::Revoked(self.fresh(&revoked))),
            // Deleted from the store since the lookup.
            None => Ok(LeakOutcome::NotFound),
        }
    }

    /// A revoked key's token was presented: if the key's rotation grace ran
    /// out (its revocation is the scheduled one), reports the reuse (and
    /// revokes the family when the kind says so), at most once per key per
    /// [`REUSE_REPORT_INTERVAL`] across every keyring on the store. Its
    /// failures are logged; the token is refused whatever happens here.
    #[cold]
    async fn check_reuse(&self, record: &KeyRecord, now: OffsetDateTime) {
        if !record.revocation_scheduled {
            // Revoked at once (by a call, the sweeper or offboarding), not
            // by a grace running out.
            return;
        }
        // Checked here first: a replayed token costs this process one read
        // and one claim per key and interval, not one per request.
        if !self.note_reuse(&record.id, now) {
            return;
        }
        let store = &self.inner.store;
        let successors = match store.successors(&record.id).await {
            Ok(successors) => successors,
            Err(err) => {
                tracing::warn!(target: "keyward::audit", error = &err as &dyn std::error::Error, key_id = %record.id, "could not check a revoked key for rotation reuse");
                return;
            }
        };
        // A store must answer by exact id; check rather than trust.
        let successors: Vec<_> = successors
            .into_iter()
            .filter(|s| s.rotated_from.as_ref() == Some(&record.id) && s.tenant == record.tenant)
            .collect();
        if successors.is_empty() {
            return;
        }
        let lease_until = now.saturating_add(span(REUSE_REPORT_INTERVAL));
        let report = NoticeClaim::new(record.id.clone(), "reuse", now, lease_until);
        match store.claim_notice(&report).await {
            Ok(true) | Err(StoreError::Unsupported(_)) => {}
            Ok(false) => return, // reported within the interval
            Err(err) => {
                tracing::warn!(target: "keyward::audit", error = &err as &dyn std::error::Error, key_id = %record.id, "could not record a rotation reuse report");
                return;
            }
        }
        let revoke = self
            .kind(&record.kind)
            .is_some_and(|k| k.reuse == ReusePolicy::RevokeFamily);
        let mut family_revoked = false;
        if revoke {
            family_revoked = self.revoke_family(&successors).await;
            if !family_revoked {
                // Not done: the next presentation tries again at once.
                self.forget_reuse(&record.id);
                let released = NoticeOutcome::Released(lease_until);
                let _ = store.settle_notice(&record.id, "reuse", released).await;
            }
        }
        let kind = EventKind::ReuseDetected {
            successors: successors.iter().map(|s| s.id.clone()).collect(),
            family_revoked,
        };
        let event = LifecycleEvent::about(record, kind, Some(&Actor::System("verify")), now);
        announce(&*self.inner.sink, &event).await;
    }

    /// Whether this process should look into a reuse of `id` at `now` (not
    /// within [`REUSE_REPORT_INTERVAL`] of its last look); notes the look.
    fn note_reuse(&self, id: &KeyId, now: OffsetDateTime) -> bool {
        let mut seen = self
            .inner
            .reuse_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.get(id).is_some_and(|until| *until > now) {
            return false;
        }
        if seen.len() >= MAX_REUSE_SEEN {
            // Only an optimisation: the store's claim still limits reports.
            seen.clear();
        }
        seen.insert(id.clone(), now.saturating_add(span(REUSE_REPORT_INTERVAL)));
        true
    }

    /// Forgets the look at a reuse of `id` (its work was not finished).
    fn forget_reuse(&self, id: &KeyId) {
        self.inner
            .reuse_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// Revokes these keys and every key descending from them by rotation
    /// (visiting at most [`MAX_FAMILY`] keys; one already revoked at once is
    /// not written again); whether all of them were revoked.
    async fn revoke_family(&self, roots: &[Arc<KeyRecord>]) -> bool {
        let store = &self.inner.store;
        let mut queue: Vec<Arc<KeyRecord>> = roots.to_vec();
        let mut seen = std::collections::HashSet::new();
        let mut complete = true;
        while let Some(key) = queue.pop() {
            if !seen.insert(key.id.clone()) {
                continue;
            }
            if seen.len() > MAX_FAMILY {
                complete = false;
                break;
            }
            let revoked_at_once = key.revoked_at.is_some() && !key.revocation_scheduled;
            if revoked_at_once {
                // Written already; its successors may not be.
            } else if let Err(err) = store.revoke(&key.id, Revocation::Now).await {
                tracing::warn!(target: "keyward::audit", error = &err as &dyn std::error::Error, key_id = %key.id, "could not revoke a reused key's successor");
                complete = false;
                continue;
            }
            match store.successors(&key.id).await {
                Ok(next) => queue.extend(next.into_iter().filter(|s| {
                    s.rotated_from.as_ref() == Some(&key.id) && s.tenant == key.tenant
                })),
                Err(_) => complete = false,
            }
        }
        complete
    }

    /// Hands the last-used timer task to the spawner (at most one is alive;
    /// see [`KeyringBuilder::last_used_timer`]).
    #[cold]
    fn arm_last_used_timer(&self, wait: Duration, task: TimerTask) {
        // A timed tracker is only built with both.
        if let (Some(spawn), Some(sleep)) = (&self.inner.spawner, &self.inner.timer) {
            let timer = last_used_timer(Arc::downgrade(&self.inner), Arc::clone(sleep), wait, task);
            spawn(Box::pin(timer));
        }
    }

    /// Writes every pending last-used instant now (call at shutdown). Returns
    /// how many keys were written; on error the batch stays pending.
    ///
    /// # Errors
    ///
    /// The store's error when the write fails; the uses are kept for the next
    /// flush.
    pub async fn flush_last_used(&self) -> Result<usize, StoreError> {
        let Some(batch) = self.inner.last_used.take_all(self.now()) else {
            return Ok(0);
        };
        self.inner.store.record_uses(batch.uses()).await?;
        let n = batch.uses().len();
        batch.written();
        Ok(n)
    }

    /// Last uses recorded but not yet taken for writing (a batch being
    /// written is not counted).
    #[must_use]
    pub fn pending_last_used(&self) -> usize {
        self.inner.last_used.pending()
    }

    /// A key by id. Its last use is fresh in this process: uses recorded
    /// here but not yet written (pending, or in a write under way) are
    /// folded in.
    ///
    /// # Errors
    ///
    /// [`ManageError::NotFound`] for an unknown id, [`ManageError::Store`]
    /// when the store fails.
    pub async fn get(&self, id: &KeyId) -> Result<KeyInfo, ManageError> {
        Ok(self.fresh(&self.record(None, id).await?))
    }

    /// A key by id, within a tenant: another tenant's key is
    /// [`ManageError::NotFound`], exactly like an unknown id.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::{KeyKind, Keyring, ManageError, MemoryStore, NewKey, ScopeCatalog, TenantId};
    ///
    /// let keyring = Keyring::builder()
    ///     .store(MemoryStore::new())
    ///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
    ///     .build()?;
    /// let issued = keyring.issue(NewKey::new("pk", "org_1", "CI")).await?;
    /// let (mine, theirs) = (TenantId::parse("org_1").unwrap(), TenantId::parse("org_2").unwrap());
    /// assert!(keyring.get_in(&mine, issued.info.id()).await.is_ok());
    /// assert!(matches!(keyring.get_in(&theirs, issued.info.id()).await, Err(ManageError::NotFound)));
    /// assert!(matches!(keyring.revoke_in(&theirs, issued.info.id()).await, Err(ManageError::NotFound)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ManageError::NotFound`] for an unknown id or another tenant's,
    /// [`ManageError::Store`] when the store fails.
    pub async fn get_in(&self, tenant: &TenantId, id: &KeyId) -> Result<KeyInfo, ManageError> {
        Ok(self.fresh(&self.record(Some(tenant), id).await?))
    }

    /// The stored record, within `tenant` when given.
    pub(crate) async fn record(
        &self,
        tenant: Option<&TenantId>,
        id: &KeyId,
    ) -> Result<Arc<KeyRecord>, ManageError> {
        let record = self.inner.store.get(id).await?;
        // A store must answer by exact id; check rather than trust.
        record
            .filter(|r| r.id == *id && tenant.is_none_or(|t| r.tenant == *t))
            .ok_or(ManageError::NotFound)
    }

    /// A tenant's keys, oldest first: no hash, no token. Last uses are fresh
    /// in this process, as in [`get`](Self::get).
    ///
    /// # Errors
    ///
    /// [`ManageError::Store`] when the store fails.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<KeyInfo>, ManageError> {
        let records = self.inner.store.list(tenant).await?;
        Ok(records.iter().map(|r| self.fresh(r)).collect())
    }

    /// One page of a tenant's keys, newest first (by creation, then id),
    /// filtered by kind and state ([`ListQuery`]); the page's
    /// [`next_cursor`](KeyPage::next_cursor) asks for the next one. Paging
    /// is by position, so keys issued meanwhile never make a key appear
    /// twice or be skipped. The store pages ([`KeyStore::list_page`]). Last
    /// uses are fresh in this process, as in [`get`](Self::get).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::{KeyKind, Keyring, ListQuery, MemoryStore, NewKey, ScopeCatalog, TenantId};
    ///
    /// let keyring = Keyring::builder()
    ///     .store(MemoryStore::new())
    ///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
    ///     .build()?;
    /// for name in ["a", "b", "c"] {
    ///     keyring.issue(NewKey::new("pk", "org_1", name)).await?;
    /// }
    /// let tenant = TenantId::parse("org_1").unwrap();
    /// let first = keyring.list_page(&tenant, &ListQuery::new().limit(2)).await?;
    /// assert_eq!(first.keys().len(), 2);
    /// let cursor = first.next_cursor().expect("one more");
    /// let rest = keyring.list_page(&tenant, &ListQuery::new().limit(2).cursor(cursor)).await?;
    /// assert_eq!(rest.keys().len(), 1);
    /// assert!(rest.next_cursor().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ManageError::InvalidLimit`] for a limit outside 1 to
    /// [`MAX_PAGE_LIMIT`](crate::MAX_PAGE_LIMIT),
    /// [`ManageError::UnknownKind`] for a kind not configured,
    /// [`ManageError::InvalidCursor`] for a cursor that is malformed,
    /// altered or another tenant's, [`ManageError::Store`] when the store
    /// fails.
    pub async fn list_page(
        &self,
        tenant: &TenantId,
        query: &ListQuery,
    ) -> Result<KeyPage, ManageError> {
        if !(1..=MAX_PAGE_LIMIT).contains(&query.limit) {
            return Err(ManageError::InvalidLimit);
        }
        if let Some(unknown) = query.kinds.iter().find(|k| self.kind(k).is_none()) {
            return Err(ManageError::UnknownKind(unknown.clone()));
        }
        let mut request = PageRequest::new(self.now(), query.limit + 1)
            .kinds(query.kinds.iter().cloned())
            .state(query.state);
        request.owner.clone_from(&query.owner);
        if let Some(cursor) = &query.cursor {
            request.after = Some(decode_cursor(tenant, cursor)?);
        }
        let mut records = self.inner.store.list_page(tenant, &request).await?;
        // A store must page the tenant it was asked for; check rather than
        // trust (a record of another tenant never leaves this function).
        records.retain(|r| r.tenant == *tenant && request.matches(r));
        let next_cursor = if records.len() > query.limit {
            records.truncate(query.limit);
            records
                .last()
                .map(|r| encode_cursor(tenant, r.created_at, &r.id))
        } else {
            None
        };
        Ok(KeyPage::new(
            records.iter().map(|r| self.fresh(r)).collect(),
            next_cursor,
        ))
    }

    /// The view of a stored record with any use not yet written (pending or
    /// in flight).
    pub(crate) fn fresh(&self, record: &Arc<KeyRecord>) -> KeyInfo {
        let info = record.info();
        match self.inner.last_used.unwritten_use(&record.id) {
            Some(at) => info.used_at(at),
            None => info,
        }
    }

    /// Revokes a key now ([`Revocation::Now`]: on the store's clock, not this
    /// keyring's); the answer's last use is fresh, as in [`get`](Self::get).
    /// Idempotent: revoking again keeps the first instant. Once
    /// this returns, [`verify`](Self::verify) refuses the key in every
    /// keyring that reads the store, whatever its clock says; one reading
    /// through a [`CachedStore`](crate::store::CachedStore) once its cache
    /// drops the key (at once in this process, on notification elsewhere).
    ///
    /// # Errors
    ///
    /// [`ManageError::NotFound`] for an unknown id, [`ManageError::Store`]
    /// when the store fails.
    pub async fn revoke(&self, id: &KeyId) -> Result<KeyInfo, ManageError> {
        self.revoke_as(None, id, None, None).await
    }

    /// [`revoke`](Self::revoke) within a tenant: another tenant's key is
    /// [`ManageError::NotFound`], exactly like an unknown id, and stays as
    /// it was.
    ///
    /// # Errors
    ///
    /// [`ManageError::NotFound`] for an unknown id or another tenant's,
    /// [`ManageError::Store`] when the store fails.
    pub async fn revoke_in(&self, tenant: &TenantId, id: &KeyId) -> Result<KeyInfo, ManageError> {
        self.revoke_as(Some(tenant), id, None, None).await
    }

    /// Revokes within `tenant` when given, naming `actor` and `reason` in
    /// the event.
    pub(crate) async fn revoke_as(
        &self,
        tenant: Option<&TenantId>,
        id: &KeyId,
        actor: Option<&Actor>,
        reason: Option<Cow<'static, str>>,
    ) -> Result<KeyInfo, ManageError> {
        if tenant.is_some() {
            // The owner never changes, so checking it first is enough.
            self.record(tenant, id).await?;
        }
        let record = self
            .revoke_now(id, actor, EventKind::Revoked { reason })
            .await?
            .ok_or(ManageError::NotFound)?;
        Ok(self.fresh(&record))
    }

    /// Revokes a key now ([`Revocation::Now`]) and announces `kind` about
    /// it; `None` for an unknown id (nothing announced).
    async fn revoke_now(
        &self,
        id: &KeyId,
        actor: Option<&Actor>,
        kind: EventKind,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let record = self.inner.store.revoke(id, Revocation::Now).await?;
        if let Some(record) = &record {
            let event = LifecycleEvent::about(record, kind, actor, self.now());
            announce(&*self.inner.sink, &event).await;
        }
        Ok(record)
    }

    /// Spends `cost` of a verified key's credits, atomically in the store
    /// (a due refill first, never below zero). A key without credits is
    /// [`CreditSpend::Unmetered`] without a store call; a key gone from
    /// the store since it was verified is
    /// [`CreditSpend::Exhausted`] with nothing remaining.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::usage::{CreditSpend, Credits};
    /// use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog};
    ///
    /// let keyring = Keyring::builder()
    ///     .store(MemoryStore::new())
    ///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
    ///     .build()?;
    /// let issued = keyring.issue(NewKey::new("pk", "prop_1", "trial").credits(Credits::new(3)?)).await?;
    /// let key = keyring.verify(issued.token.expose_secret()).await?;
    /// assert_eq!(keyring.spend_credits(&key, 2).await?, CreditSpend::Spent { remaining: 1 });
    /// assert_eq!(keyring.spend_credits(&key, 2).await?, CreditSpend::Exhausted { remaining: 1 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The store's error (never a pass: the caller refuses the request).
    pub async fn spend_credits(
        &self,
        key: &VerifiedKey,
        cost: u64,
    ) -> Result<CreditSpend, StoreError> {
        if key.record.credits.is_none() {
            return Ok(CreditSpend::Unmetered);
        }
        let spent = self
            .inner
            .store
            .spend_credits(&key.record.id, cost, self.now())
            .await?;
        Ok(spent.unwrap_or(CreditSpend::Exhausted { remaining: 0 }))
    }

    /// Changes a key's usage controls: its IP allowlist, credits, shared
    /// budget and rate limit (see [`ControlsUpdate`]), and announces
    /// [`EventKind::ControlsChanged`]. In effect at once for this process
    /// (and, through a [`CachedStore`](crate::store::CachedStore), for the
    /// others once their cache drops the key: at once on PostgreSQL with the
    /// listener).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::usage::{ControlsUpdate, Credits, CreditsChange, IpAllowlist};
    /// use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog};
    ///
    /// let keyring = Keyring::builder()
    ///     .store(MemoryStore::new())
    ///     .kind(KeyKind::new("pk", ScopeCatalog::builder().build()?)?)
    ///     .build()?;
    /// let issued = keyring.issue(NewKey::new("pk", "prop_1", "partner").credits(Credits::new(10)?)).await?;
    /// let update = ControlsUpdate::new()
    ///     .allowed_ips(Some(IpAllowlist::parse(["198.51.100.0/24"])?))
    ///     .credits(CreditsChange::Add(90));
    /// let info = keyring.update_controls(issued.info.id(), update).await?;
    /// assert_eq!(info.credits().unwrap().remaining, 100);
    /// assert_eq!(info.allowed_ips().unwrap().to_strings(), ["198.51.100.0/24"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ManageError::NotFound`] for an unknown id,
    /// [`ManageError::Controls`] for credits added to a key without credits
    /// ([`UsageError::NotMetered`](crate::usage::UsageError::NotMetered)),
    /// [`ManageError::Store`] when the store fails.
    pub async fn update_controls(
        &self,
        id: &KeyId,
        update: ControlsUpdate,
    ) -> Result<KeyInfo, ManageError> {
        self.update_controls_as(None, id, update, None).await
    }

    /// [`update_controls`](Self::update_controls) within a tenant: another
    /// tenant's key is [`ManageError::NotFound`] and stays as it was.
    ///
    /// # Errors
    ///
    /// As [`update_controls`](Self::update_controls).
    pub async fn update_controls_in(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        update: ControlsUpdate,
    ) -> Result<KeyInfo, ManageError> {
        self.update_controls_as(Some(tenant), id, update, None)
            .await
    }

    pub(crate) async fn update_controls_as(
        &self,
        tenant: Option<&TenantId>,
        id: &KeyId,
        update: ControlsUpdate,
        actor: Option<&Actor>,
    ) -> Result<KeyInfo, ManageError> {
        if let Some(CreditsChange::Set(credits)) = &update.credits {
            credits.check()?;
        }
        let current = self.record(tenant, id).await?;
        if matches!(update.credits, Some(CreditsChange::Add(_))) && current.credits.is_none() {
            return Err(crate::usage::UsageError::NotMetered.into());
        }
        let now = self.now();
        let record = self
            .inner
            .store
            .update_controls(id, &update, now)
            .await?
            .ok_or(ManageError::NotFound)?;
        let event =
            LifecycleEvent::about(&record, EventKind::ControlsChanged { update }, actor, now);
        announce(&*self.inner.sink, &event).await;
        Ok(self.fresh(&record))
    }

    /// Issues a successor with the same tenant, name, kind, scopes, usage
    /// controls (the credits move to it: the old key keeps none), rate limit,
    /// metadata and expiry instant (rotation replaces the secret; it never
    /// extends a key's life), and revokes the old key after `grace` (at once,
    /// as [`revoke`](Self::revoke) does, for a zero or negative grace; a grace
    /// past the end of time is clamped). The grace ends at this keyring's
    /// `now + grace`, which each verifier compares with its own clock.
    ///
    /// The two steps are not one transaction: if scheduling the old key's
    /// revocation fails, the error is returned and the successor, whose
    /// token is then lost, stays listed with `rotated_from` set; revoke it
    /// or rotate again.
    ///
    /// # Errors
    ///
    /// [`IssueError::NotFound`] for an unknown id, [`IssueError::Inactive`]
    /// for a revoked or expired key, [`IssueError::UnknownKind`] when the
    /// keyring no longer has the key's kind, [`IssueError::Store`] when the
    /// store fails.
    pub async fn rotate(&self, id: &KeyId, grace: Duration) -> Result<IssuedKey, IssueError> {
        self.rotate_as(None, id, grace, None).await
    }

    /// [`rotate`](Self::rotate) within a tenant: another tenant's key is
    /// [`IssueError::NotFound`], exactly like an unknown id, and stays as it
    /// was.
    ///
    /// # Errors
    ///
    /// As [`rotate`](Self::rotate); another tenant's key is
    /// [`IssueError::NotFound`].
    pub async fn rotate_in(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        grace: Duration,
    ) -> Result<IssuedKey, IssueError> {
        self.rotate_as(Some(tenant), id, grace, None).await
    }

    /// Rotates within `tenant` when given, naming `actor` in the audit event.
    pub(crate) async fn rotate_as(
        &self,
        tenant: Option<&TenantId>,
        id: &KeyId,
        grace: Duration,
        actor: Option<&Actor>,
    ) -> Result<IssuedKey, IssueError> {
        let old = self.record(tenant, id).await.map_err(|e| match e {
            ManageError::Store(e) => IssueError::Store(e),
            _ => IssueError::NotFound,
        })?;
        self.rotate_record(&old, grace, actor).await
    }

    /// Takes every credit of a key by atomic spends, starting from
    /// `remaining` as last read (a spend that finds fewer takes what it
    /// finds; a due refill is taken too), then sets its credits to none
    /// without refill: the amount taken. At most a few rounds: under a
    /// flood of concurrent spends, what is left after them is dropped,
    /// never given twice.
    async fn drain_credits(
        &self,
        id: &KeyId,
        remaining: u64,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let store = &self.inner.store;
        let mut taken = 0u64;
        let mut want = remaining.max(1);
        for _ in 0..8 {
            match store.spend_credits(id, want, now).await? {
                Some(CreditSpend::Spent { remaining }) => {
                    taken = taken.saturating_add(want);
                    want = remaining;
                }
                Some(CreditSpend::Exhausted { remaining }) => want = remaining,
                Some(CreditSpend::Unmetered) | None => return Ok(taken),
            }
            if want == 0 {
                break;
            }
        }
        let none_left = Credits {
            remaining: 0,
            refill: None,
            refilled_at: Some(now),
        };
        let update = ControlsUpdate::new().credits(CreditsChange::Set(none_left));
        store.update_controls(id, &update, now).await?;
        Ok(taken)
    }

    /// Rotates a record already read (and checked by the caller).
    pub(crate) async fn rotate_record(
        &self,
        old: &KeyRecord,
        grace: Duration,
        actor: Option<&Actor>,
    ) -> Result<IssuedKey, IssueError> {
        let now = self.now();
        // A key in a rotation's grace was replaced already: rotating it again
        // would let whoever holds its token start a second chain.
        if old.state(now) != KeyState::Active || old.revoked_at.is_some() {
            return Err(IssueError::Inactive);
        }
        let kind = self
            .kind(&old.kind)
            .ok_or_else(|| IssueError::UnknownKind(old.kind.clone()))?;
        // The successor keeps the old expiry, which must meet the kind's
        // policy as it is now (a key made before a stricter policy is not
        // renewed past it: rotation is refused, never silently clamped).
        kind.expiry
            .check_instant(old.expires_at, now)
            .map_err(IssueError::ExpiryNotAllowed)?;
        let draft = Draft {
            tenant: old.tenant.clone(),
            name: old.name.clone(),
            scopes: old.scopes.clone(),
            created_at: now,
            expires_at: old.expires_at,
            rate_limit: old.rate_limit,
            metadata: old.metadata.clone(),
            rotated_from: Some(old.id.clone()),
            owner: old.owner.clone(),
            allowed_ips: old.allowed_ips.clone(),
            // Metered with none until the old key's credits are moved: its
            // token is known to nobody before this returns.
            credits: old.credits.map(|_| Credits {
                remaining: 0,
                refill: None,
                refilled_at: Some(now),
            }),
            budget: old.budget.clone(),
        };
        let mut issued = self.insert(kind, draft, actor).await?;
        let when = if grace.is_zero() {
            Revocation::Now
        } else {
            Revocation::At(now.saturating_add(span(grace)))
        };
        self.inner.store.revoke(&old.id, when).await?;
        if let Some(credits) = old.credits {
            // The credits move to the successor: taken from the old key by
            // atomic spends (whatever its token spends meanwhile is not
            // taken twice), then given to the successor. If a step fails,
            // the error loses the successor's token: nothing spends twice.
            let taken = self.drain_credits(&old.id, credits.remaining, now).await?;
            let moved = Credits {
                remaining: taken,
                refill: credits.refill,
                refilled_at: Some(now),
            };
            let update = ControlsUpdate::new().credits(CreditsChange::Set(moved));
            let record = self
                .inner
                .store
                .update_controls(issued.info.id(), &update, now)
                .await?
                .ok_or(IssueError::NotFound)?;
            issued.info = self.fresh(&record);
        }
        let kind = EventKind::Rotated {
            successor: issued.info.id().clone(),
            grace,
        };
        announce(
            &*self.inner.sink,
            &LifecycleEvent::about(old, kind, actor, now),
        )
        .await;
        Ok(issued)
    }
}

impl Keyring {
    /// The management calls on behalf of `actor`, who is named in their
    /// [lifecycle events](crate::LifecycleEvent) (the plain methods name
    /// nobody).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use keyward::{Actor, KeyKind, Keyring, MemoryStore, NewKey, OwnerId, ScopeCatalog, TenantId};
    ///
    /// let keyring = Keyring::builder()
    ///     .store(MemoryStore::new())
    ///     .kind(KeyKind::new("pl", ScopeCatalog::builder().build()?)?)
    ///     .build()?;
    /// let acting = keyring.acting(Actor::Subject("admin_1".into()));
    /// acting.issue(NewKey::new("pl", "org_1", "laptop").owner("user_7")).await?;
    /// acting.issue(NewKey::new("pl", "org_1", "CI").owner("user_7")).await?;
    /// acting.issue(NewKey::new("pl", "org_1", "shared")).await?;
    ///
    /// // Offboarding user_7: every key of theirs in org_1, in one call.
    /// let (org, user) = (TenantId::parse("org_1").unwrap(), OwnerId::parse("user_7").unwrap());
    /// let revoked = acting.reason("offboarding").revoke_owner(&org, &user).await?;
    /// assert_eq!(revoked.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn acting(&self, actor: Actor) -> Acting<'_> {
        Acting {
            keyring: self,
            actor,
            reason: None,
        }
    }

    /// Revokes every key of `owner` inside `tenant` that is not yet revoked
    /// (offboarding in one call), page by page; returns the keys it
    /// revoked. A key issued to the owner while this runs may survive it:
    /// stop issuing to the owner first.
    ///
    /// # Errors
    ///
    /// [`ManageError::Store`] when the store fails (keys revoked before the
    /// failure stay revoked; calling again finishes the job).
    pub async fn revoke_owner(
        &self,
        tenant: &TenantId,
        owner: &OwnerId,
    ) -> Result<Vec<KeyInfo>, ManageError> {
        self.revoke_owner_as(tenant, owner, None, None).await
    }

    async fn revoke_owner_as(
        &self,
        tenant: &TenantId,
        owner: &OwnerId,
        actor: Option<&Actor>,
        reason: Option<Cow<'static, str>>,
    ) -> Result<Vec<KeyInfo>, ManageError> {
        let mut revoked = Vec::new();
        let mut after = None;
        loop {
            let mut request = PageRequest::new(self.now(), MAX_PAGE_LIMIT).owner(owner.clone());
            request.after.clone_from(&after);
            let mut page = self.inner.store.list_page(tenant, &request).await?;
            // A store must page the tenant and owner it was asked for,
            // strictly after the position: the walk always moves on.
            page.retain(|r| r.tenant == *tenant && request.matches(r));
            let Some(oldest) = page.iter().map(|r| (r.created_at, r.id.clone())).min() else {
                return Ok(revoked);
            };
            after = Some(oldest);
            for record in page {
                if record.state(self.now()) == KeyState::Revoked {
                    continue;
                }
                revoked.push(
                    self.revoke_as(Some(tenant), &record.id, actor, reason.clone())
                        .await?,
                );
            }
        }
    }

    /// The store, for the sweeper.
    pub(crate) fn store(&self) -> &Arc<dyn KeyStore> {
        &self.inner.store
    }

    /// The event sink, for the sweeper.
    pub(crate) fn sink(&self) -> &dyn LifecycleSink {
        &*self.inner.sink
    }
}

/// The management calls of a [`Keyring`] on behalf of an [`Actor`] (see
/// [`Keyring::acting`]): the same calls, errors and checks, with the actor
/// (and a revocation's reason) in each event.
#[derive(Debug, Clone)]
#[must_use]
pub struct Acting<'a> {
    keyring: &'a Keyring,
    actor: Actor,
    reason: Option<Cow<'static, str>>,
}

impl Acting<'_> {
    /// The reason revocations give in their events (`"offboarding"`,
    /// `"leaked"`, a ticket number); none by default.
    pub fn reason(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// [`Keyring::issue`], by this actor.
    ///
    /// # Errors
    ///
    /// As [`Keyring::issue`].
    pub async fn issue(&self, new: NewKey) -> Result<IssuedKey, IssueError> {
        self.keyring.issue_as(new, Some(&self.actor)).await
    }

    /// [`Keyring::revoke`], by this actor, for the reason given.
    ///
    /// # Errors
    ///
    /// As [`Keyring::revoke`].
    pub async fn revoke(&self, id: &KeyId) -> Result<KeyInfo, ManageError> {
        self.keyring
            .revoke_as(None, id, Some(&self.actor), self.reason.clone())
            .await
    }

    /// [`Keyring::revoke_in`], by this actor, for the reason given.
    ///
    /// # Errors
    ///
    /// As [`Keyring::revoke_in`].
    pub async fn revoke_in(&self, tenant: &TenantId, id: &KeyId) -> Result<KeyInfo, ManageError> {
        self.keyring
            .revoke_as(Some(tenant), id, Some(&self.actor), self.reason.clone())
            .await
    }

    /// [`Keyring::update_controls_in`], by this actor.
    ///
    /// # Errors
    ///
    /// As [`Keyring::update_controls`].
    pub async fn update_controls_in(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        update: ControlsUpdate,
    ) -> Result<KeyInfo, ManageError> {
        self.keyring
            .update_controls_as(Some(tenant), id, update, Some(&self.actor))
            .await
    }

    /// [`Keyring::revoke_owner`], by this actor, for the reason given.
    ///
    /// # Errors
    ///
    /// As [`Keyring::revoke_owner`].
    pub async fn revoke_owner(
        &self,
        tenant: &TenantId,
        owner: &OwnerId,
    ) -> Result<Vec<KeyInfo>, ManageError> {
        self.keyring
            .revoke_owner_as(tenant, owner, Some(&self.actor), self.reason.clone())
            .await
    }

    /// [`Keyring::rotate`], by this actor.
    ///
    /// # Errors
    ///
    /// As [`Keyring::rotate`].
    pub async fn rotate(&self, id: &KeyId, grace: Duration) -> Result<IssuedKey, IssueError> {
        self.keyring
            .rotate_as(None, id, grace, Some(&self.actor))
            .await
    }

    /// [`Keyring::rotate_in`], by this actor.
    ///
    /// # Errors
    ///
    /// As [`Keyring::rotate_in`].
    pub async fn rotate_in(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        grace: Duration,
    ) -> Result<IssuedKey, IssueError> {
        self.keyring
            .rotate_as(Some(tenant), id, grace, Some(&self.actor))
            .await
    }
}

/// A key to store, before its token, id and hash exist (what `issue` and
/// `rotate` decide).
struct Draft {
    tenant: TenantId,
    name: String,
    scopes: ScopeSet,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    rate_limit: RateLimit,
    metadata: std::collections::BTreeMap<String, String>,
    rotated_from: Option<KeyId>,
    owner: Option<OwnerId>,
    allowed_ips: Option<IpAllowlist>,
    credits: Option<Credits>,
    budget: Option<BudgetId>,
}

/// The last-used timer task: sleeps on the host's timer, then writes what is
/// pending, one batch at a time, until a wake-up finds nothing (or the
/// keyring gone). Holds the keyring weakly, and nothing of it while asleep.
async fn last_used_timer(
    keyring: Weak<Inner>,
    sleep: Sleeper,
    mut wait: Duration,
    mut task: TimerTask,
) {
    loop {
        sleep(wait).await;
        let Some(inner) = keyring.upgrade() else {
            return;
        };
        let Some(batch) = task.tick(inner.clock.now()) else {
            return;
        };
        let store = Arc::clone(&inner.store);
        drop(inner);
        let Some(period) = task.period() else {
            return;
        };
        // A write that outlasts four periods is given up (its batch goes
        // back): a store whose write hangs must not stop every later one.
        let limit = period.saturating_mul(4);
        let write = write_batch(store, batch);
        if !finishes_within(write, sleep(limit)).await {
            tracing::warn!(target: "keyward::last_used", ?limit, "last-used write given up; retrying next interval");
        }
        wait = period;
    }
}

/// Runs `work` until it ends (`true`) or `deadline` does first (`false`,
/// and `work` is dropped).
async fn finishes_within(
    work: impl std::future::Future<Output = ()>,
    deadline: impl std::future::Future<Output = ()>,
) -> bool {
    let mut work = std::pin::pin!(work);
    let mut deadline = std::pin::pin!(deadline);
    std::future::poll_fn(|cx| {
        if work.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(true);
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(false);
        }
        std::task::Poll::Pending
    })
    .await
}

/// A last-used write a verification hands back to be awaited (see
/// [`Keyring::verify_now`]).
pub(crate) type LastUsedWrite = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Whether `clock` is the [`SystemClock`] (read without the dynamic call).
fn is_system_clock<C: Clock>(_clock: &C) -> bool {
    std::any::TypeId::of::<C>() == std::any::TypeId::of::<SystemClock>()
}

/// Why a found record is refused at `now`, if it is.
fn refusal(record: &KeyRecord, now: OffsetDateTime) -> Option<VerifyError> {
    match record.state(now) {
        KeyState::Active => None,
        KeyState::Revoked => Some(VerifyError::Revoked),
        KeyState::Expired => Some(VerifyError::Expired),
    }
}

/// `record` if it is exactly the one asked for: a store must answer by
/// exact hash; check rather than trust.
fn exact(
    record: Arc<KeyRecord>,
    hash: &crate::hash::TokenHash,
    parsed: &ParsedToken<'_, '_>,
) -> Option<Arc<KeyRecord>> {
    let exact = record.hash == *hash && record.kind == parsed.kind().prefix();
    exact.then_some(record)
}

/// Writes a last-used batch; on failure the dropped batch goes back to the
/// tracker for the next interval.
async fn write_batch(store: Arc<dyn KeyStore>, batch: Batch) {
    match store.record_uses(batch.uses()).await {
        Ok(()) => batch.written(),
        Err(err) => {
            tracing::warn!(target: "keyward::last_used", error = &err as &dyn std::error::Error, keys = batch.uses().len(), "last-used write failed; retrying next interval");
        }
    }
}

fn check_metadata(metadata: &std::collections::BTreeMap<String, String>) -> Result<(), IssueError> {
    let ok = metadata.len() <= MAX_METADATA_ENTRIES
        && metadata.iter().all(|(k, v)| {
            !k.is_empty()
                && k.len() <= MAX_METADATA_KEY_LEN
                && v.len() <= MAX_METADATA_VALUE_LEN
                && displayable(k)
                && displayable(v)
        });
    if ok {
        Ok(())
    } else {
        Err(IssueError::InvalidMetadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::builder()
            .store(crate::MemoryStore::new())
            .kind(KeyKind::new("pk", ScopeCatalog::builder().build().unwrap()).unwrap())
            .build()
            .unwrap()
    }

    /// The default clock, or `SystemClock` given explicitly, is read
    /// directly; any other clock through the keyring's `dyn Clock`.
    #[test]
    fn only_the_system_clock_is_read_directly() {
        #[derive(Debug)]
        struct Fixed;
        impl Clock for Fixed {
            fn now(&self) -> OffsetDateTime {
                OffsetDateTime::UNIX_EPOCH
            }
        }
        assert!(keyring().inner.system_clock);
        let explicit = Keyring::builder().clock(SystemClock);
        assert!(explicit.system_clock);
        let manual = Keyring::builder().clock(crate::ManualClock::new(OffsetDateTime::UNIX_EPOCH));
        assert!(!manual.system_clock);
        let fixed = Keyring::builder()
            .store(crate::MemoryStore::new())
            .clock(Fixed)
            .kind(KeyKind::new("pk", ScopeCatalog::builder().build().unwrap()).unwrap())
            .build()
            .unwrap();
        assert!(!fixed.inner.system_clock);
        assert_eq!(fixed.now(), OffsetDateTime::UNIX_EPOCH);
        // The flag survives `shared_store`.
        let shared = Keyring::builder()
            .clock(Fixed)
            .shared_store(Arc::new(crate::MemoryStore::new()));
        assert!(!shared.system_clock);
    }

    #[test]
    fn reuse_looks_are_remembered_an_interval_and_bounded() {
        let keyring = keyring();
        let now = OffsetDateTime::UNIX_EPOCH;
        let first = KeyId::generate();
        assert!(keyring.note_reuse(&first, now));
        assert!(!keyring.note_reuse(&first, now + time::Duration::minutes(59)));
        assert!(keyring.note_reuse(&first, now + time::Duration::hours(1)));
        keyring.forget_reuse(&first);
        assert!(keyring.note_reuse(&first, now + time::Duration::hours(1)));
        // Full: the memory starts over, so `first` is looked at again.
        for _ in 1..MAX_REUSE_SEEN {
            assert!(keyring.note_reuse(&KeyId::generate(), now + time::Duration::hours(1)));
        }
        assert!(!keyring.note_reuse(&first, now + time::Duration::hours(1)));
        assert!(keyring.note_reuse(&KeyId::generate(), now + time::Duration::hours(1)));
        assert!(keyring.note_reuse(&first, now + time::Duration::hours(1)));
    }
}
