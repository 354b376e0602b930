//! Key records and the inputs to issue them: ids, tenants, expiry presets,
//! rate limits.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;

use rand::distr::{Alphanumeric, Distribution};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::clock::at_or_before;
use crate::hash::TokenHash;
use crate::scope::ScopeSet;
use crate::usage::{Credits, IpAllowlist};

const MAX_LABEL_LEN: usize = 200;
const MAX_ID_LEN: usize = 64;

/// The public, stable id of a key (`key_…`): not derived from the secret, safe
/// to log and to show. Management calls (get, revoke, rotate) take it.
///
/// ```
/// use keyward::KeyId;
///
/// let id = KeyId::generate();
/// assert!(id.as_str().starts_with("key_"));
/// assert_eq!(KeyId::parse(id.as_str()), Some(id));
/// assert_eq!(KeyId::parse("no spaces"), None);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct KeyId(Arc<str>);

impl KeyId {
    /// A fresh random id, `key_` and 22 base62 characters.
    pub fn generate() -> Self {
        let mut id = String::with_capacity(26);
        id.push_str("key_");
        id.extend(
            Alphanumeric
                .sample_iter(rand::rng())
                .take(22)
                .map(char::from),
        );
        KeyId(Arc::from(id))
    }

    /// Accepts 1–64 of `[A-Za-z0-9_-]`, the alphabet of ids this crate makes
    /// and of most ids a host store would make.
    #[must_use]
    pub fn parse(input: &str) -> Option<Self> {
        let ok = !input.is_empty()
            && input.len() <= MAX_ID_LEN
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| KeyId(Arc::from(input)))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tenant a key belongs to (a property, an organization, a workspace):
/// 1–200 characters, no control or format characters (no bidi overrides, no
/// zero-width characters) and no line separators, so one tenant id can not
/// be made to look like another.
///
/// ```
/// use keyward::TenantId;
///
/// assert_eq!(TenantId::parse("prop_123").unwrap().as_str(), "prop_123");
/// assert!(TenantId::parse("").is_none());
/// assert!(TenantId::parse("a\nb").is_none());
/// assert!(TenantId::parse("prop\u{202E}321").is_none()); // right-to-left override
/// assert!(TenantId::parse("prop\u{200B}_1").is_none()); // zero-width space
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(Arc<str>);

/// The user a key belongs to inside its tenant: a personal token, as opposed
/// to one of the whole tenant (which has no owner). The same rules as a
/// [`TenantId`]: 1–200 characters, none of them control or format
/// characters.
///
/// ```
/// use keyward::OwnerId;
///
/// assert_eq!(OwnerId::parse("user_42").unwrap().as_str(), "user_42");
/// assert!(OwnerId::parse("").is_none());
/// assert!(OwnerId::parse("user\u{202E}24").is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OwnerId(Arc<str>);

/// A shared rate-limit budget: every key of a tenant naming the same budget
/// draws on one limiter bucket (for example all keys of one customer). The
/// same rules as a [`TenantId`](crate::TenantId): 1–200 characters, none of
/// them control or format characters.
///
/// The bucket is the tenant's and the budget's (two tenants' budgets of one
/// name never share), and a request is checked against the presenting
/// key's [`RateLimit`]: give the keys of one budget the
/// same limit ([`ControlsUpdate::budget`](crate::usage::ControlsUpdate::budget) with
/// [`ControlsUpdate::rate_limit`](crate::usage::ControlsUpdate::rate_limit) does both).
///
/// ```
/// use keyward::usage::BudgetId;
///
/// assert_eq!(BudgetId::parse("customer_42").unwrap().as_str(), "customer_42");
/// assert!(BudgetId::parse("").is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BudgetId(Arc<str>);

macro_rules! label_id {
    ($name:ident, $what:literal) => {
        impl $name {
            #[doc = concat!("Validates ", $what, ".")]
            #[must_use]
            pub fn parse(input: &str) -> Option<Self> {
                valid_label(input).then(|| $name(Arc::from(input)))
            }

            /// The id as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

label_id!(TenantId, "a tenant id");
label_id!(OwnerId, "an owner id");
label_id!(BudgetId, "a budget id");

/// A name or tenant id: 1–200 characters of [`displayable`] text, at least
/// one of them visible.
pub(crate) fn valid_label(input: &str) -> bool {
    input.chars().count() <= MAX_LABEL_LEN
        && displayable(input)
        && input.chars().any(|c| !c.is_whitespace())
}

/// Whether text can be shown in a list view as it reads: none of the
/// characters that make one label look like another or like nothing.
///
/// * control characters (general category Cc);
/// * format characters (Cf: bidi overrides and isolates such as U+202E,
///   zero-width spaces and joiners, the soft hyphen, tag characters);
/// * line and paragraph separators (Zl, Zp);
/// * spaces other than U+0020 (Zs: no-break, em, ideographic spaces);
/// * the other default-ignorable code points, which render as nothing
///   (variation selectors, the combining grapheme joiner, Hangul fillers,
///   Khmer inherent vowels, Mongolian free variation selectors), and the
///   blank Braille pattern U+2800.
pub(crate) fn displayable(input: &str) -> bool {
    input.chars().all(displayable_char)
}

/// One character of [`displayable`] text.
pub(crate) fn displayable_char(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c == ' '
        || !(matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::SpaceSeparator
        ) || invisible(c))
}

/// Default-ignorable code points that are not format characters (Unicode's
/// `Default_Ignorable_Code_Point` less category Cf), and U+2800.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{034F}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{2065}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// When a new key expires: the presets of the dashboards, or an instant.
///
/// ```
/// use keyward::Expiry;
///
/// assert_eq!("90d".parse::<Expiry>().unwrap(), Expiry::Days90);
/// assert_eq!("never".parse::<Expiry>().unwrap(), Expiry::Never);
/// assert!("2w".parse::<Expiry>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Expiry {
    /// 30 days after issue.
    Days30,
    /// 90 days after issue.
    Days90,
    /// 365 days after issue.
    Year1,
    /// Never expires.
    #[default]
    Never,
    /// At this instant.
    At(OffsetDateTime),
}

impl Expiry {
    /// The expiry instant for a key issued at `now`.
    #[must_use]
    pub fn resolve(self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match self {
            Expiry::Days30 => Some(now.saturating_add(Duration::days(30))),
            Expiry::Days90 => Some(now.saturating_add(Duration::days(90))),
            Expiry::Year1 => Some(now.saturating_add(Duration::days(365))),
            Expiry::Never => None,
            Expiry::At(at) => Some(at),
        }
    }
}

/// What expiries a kind allows ([`KeyKind::expiry_policy`](crate::KeyKind::expiry_policy)):
/// a maximum lifetime, whether "never" is allowed, which presets, whether
/// explicit instants are, and the default for a key issued without one.
/// Issuing or rotating outside it is [`IssueError::ExpiryNotAllowed`](crate::IssueError::ExpiryNotAllowed):
/// a key is never silently given another expiry than asked for.
///
/// The default policy allows everything and defaults to
/// [`Expiry::Never`] (keyward 0.1's behaviour).
///
/// ```
/// use std::time::Duration;
/// use keyward::{Expiry, ExpiryPolicy};
///
/// // At most a year; 30 or 90 days, or an instant; 90 days unless asked.
/// let policy = ExpiryPolicy::new()
///     .max_lifetime(Duration::from_secs(366 * 86_400))
///     .allow_never(false)
///     .presets([Expiry::Days30, Expiry::Days90])
///     .default_expiry(Expiry::Days90);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ExpiryPolicy {
    max_lifetime: Option<std::time::Duration>,
    allow_never: bool,
    /// `None`: every preset.
    presets: Option<Vec<Expiry>>,
    allow_instants: bool,
    default: Expiry,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        ExpiryPolicy {
            max_lifetime: None,
            allow_never: true,
            presets: None,
            allow_instants: true,
            default: Expiry::Never,
        }
    }
}

impl ExpiryPolicy {
    /// Everything allowed, default never (see [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest a key may live, from its issue (or rotation) on.
    pub fn max_lifetime(mut self, max: std::time::Duration) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// Whether a key may never expire (allowed by default).
    pub fn allow_never(mut self, allow: bool) -> Self {
        self.allow_never = allow;
        self
    }

    /// The presets allowed (every one by default). [`Expiry::Never`] and
    /// [`Expiry::At`] listed here are ignored: see
    /// [`allow_never`](Self::allow_never) and
    /// [`allow_instants`](Self::allow_instants).
    pub fn presets(mut self, presets: impl IntoIterator<Item = Expiry>) -> Self {
        self.presets = Some(
            presets
                .into_iter()
                .filter(|e| !matches!(e, Expiry::Never | Expiry::At(_)))
                .collect(),
        );
        self
    }

    /// Whether an explicit instant ([`Expiry::At`]) may be asked for
    /// (allowed by default).
    pub fn allow_instants(mut self, allow: bool) -> Self {
        self.allow_instants = allow;
        self
    }

    /// The expiry of a key issued without one ([`Expiry::Never`] by
    /// default). It must itself be allowed:
    /// [`KeyKind::expiry_policy`](crate::KeyKind::expiry_policy) checks.
    pub fn default_expiry(mut self, expiry: Expiry) -> Self {
        self.default = expiry;
        self
    }

    /// The default expiry.
    #[must_use]
    pub fn default_value(&self) -> Expiry {
        self.default
    }

    /// The expiry instant of a key asked with `expiry` at `now`, if the
    /// policy allows it.
    ///
    /// # Errors
    ///
    /// Why the policy refuses it: a preset not allowed, "never" or an
    /// instant not allowed, a lifetime over the maximum, or an instant not
    /// after `now`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use keyward::{Expiry, ExpiryPolicy};
    /// use time::OffsetDateTime;
    ///
    /// let now = OffsetDateTime::UNIX_EPOCH;
    /// let policy = ExpiryPolicy::new().max_lifetime(Duration::from_secs(100 * 86_400));
    /// assert!(policy.check(Expiry::Days90, now).is_ok());
    /// assert!(policy.check(Expiry::Year1, now).is_err());
    /// assert!(policy.check(Expiry::Never, now).is_err());
    /// ```
    pub fn check(
        &self,
        expiry: Expiry,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, &'static str> {
        match expiry {
            Expiry::Never if !self.allow_never => return Err("this kind of key must expire"),
            Expiry::At(_) if !self.allow_instants => {
                return Err("this kind of key takes one of its preset expiries, not an instant")
            }
            Expiry::Days30 | Expiry::Days90 | Expiry::Year1
                if self.presets.as_ref().is_some_and(|p| !p.contains(&expiry)) =>
            {
                return Err("this expiry preset is not allowed for this kind of key")
            }
            _ => {}
        }
        let at = expiry.resolve(now);
        self.check_instant(at, now)?;
        Ok(at)
    }

    /// Whether a key expiring at `at` (`None`: never) may be made at
    /// `now`: what a rotation, which keeps the expiry, must meet.
    pub(crate) fn check_instant(
        &self,
        at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<(), &'static str> {
        match (at, self.max_lifetime) {
            (None, Some(_)) => Err("this kind of key must expire within its maximum lifetime"),
            (None, None) if !self.allow_never => Err("this kind of key must expire"),
            (Some(at), _) if at <= now => Err("the expiry lies in the past"),
            (Some(at), Some(max)) if at > now.saturating_add(crate::clock::span(max)) => {
                Err("the expiry lies beyond this kind's maximum lifetime")
            }
            _ => Ok(()),
        }
    }
}

/// The text is not one of `30d`, `90d`, `1y`, `never`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expiry must be one of 30d, 90d, 1y, never")]
#[non_exhaustive]
pub struct ParseExpiryError;

impl FromStr for Expiry {
    type Err = ParseExpiryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "30d" => Ok(Expiry::Days30),
            "90d" => Ok(Expiry::Days90),
            "1y" => Ok(Expiry::Year1),
            "never" => Ok(Expiry::Never),
            _ => Err(ParseExpiryError),
        }
    }
}

/// How many requests a minute a key may make.
///
/// ```
/// use keyward::RateLimit;
///
/// assert_eq!(RateLimit::default(), RateLimit::per_minute(100).unwrap());
/// assert_eq!(RateLimit::per_minute(0), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RateLimit {
    /// No limit.
    Unlimited,
    /// At most this many requests a minute.
    PerMinute(NonZeroU32),
}

impl RateLimit {
    /// The default of both products: 100 a minute.
    pub const DEFAULT_PER_MINUTE: u32 = 100;

    /// A limit of `n` a minute; `None` for 0.
    pub fn per_minute(n: u32) -> Option<Self> {
        NonZeroU32::new(n).map(RateLimit::PerMinute)
    }

    /// The limit a minute, `None` when unlimited.
    #[must_use]
    pub fn requests_per_minute(&self) -> Option<u32> {
        match self {
            RateLimit::Unlimited => None,
            RateLimit::PerMinute(n) => Some(n.get()),
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::PerMinute(NonZeroU32::new(Self::DEFAULT_PER_MINUTE).expect("non-zero"))
    }
}

/// Whether a key works at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyState {
    /// Usable.
    Active,
    /// Past its expiry.
    Expired,
    /// Revoked: at once for an immediate revocation, whatever the clock; a
    /// scheduled one counts from its instant.
    Revoked,
}

/// Which keys a paged list returns, by their [`KeyState`] at the list's
/// instant. Parses from `all`, `active`, `revoked`, `expired`.
///
/// ```
/// use keyward::{KeyState, StateFilter};
///
/// let filter: StateFilter = "active".parse().unwrap();
/// assert!(filter.matches(KeyState::Active));
/// assert!(!filter.matches(KeyState::Revoked));
/// assert!(StateFilter::All.matches(KeyState::Expired));
/// assert!("gone".parse::<StateFilter>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StateFilter {
    /// Every key, whatever its state.
    #[default]
    All,
    /// Keys usable at the list's instant.
    Active,
    /// Revoked keys (a scheduled revocation counts once its instant passed).
    Revoked,
    /// Expired keys that are not revoked.
    Expired,
}

impl StateFilter {
    /// Whether a key in `state` passes the filter.
    #[must_use]
    pub fn matches(self, state: KeyState) -> bool {
        match self {
            StateFilter::All => true,
            StateFilter::Active => state == KeyState::Active,
            StateFilter::Revoked => state == KeyState::Revoked,
            StateFilter::Expired => state == KeyState::Expired,
        }
    }

    /// The filter as its query-string name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::All => "all",
            StateFilter::Active => "active",
            StateFilter::Revoked => "revoked",
            StateFilter::Expired => "expired",
        }
    }
}

/// The text is not one of `all`, `active`, `revoked`, `expired`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state must be one of all, active, revoked, expired")]
#[non_exhaustive]
pub struct ParseStateFilterError;

impl FromStr for StateFilter {
    type Err = ParseStateFilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(StateFilter::All),
            "active" => Ok(StateFilter::Active),
            "revoked" => Ok(StateFilter::Revoked),
            "expired" => Ok(StateFilter::Expired),
            _ => Err(ParseStateFilterError),
        }
    }
}

/// A key as stored. Holds the hash, never the token; `Debug` hides the hash.
///
/// Host stores read and write every field; [`KeyInfo`] is the view without
/// the hash that list and get calls return. A store reading a row builds
/// the record with [`KeyRecord::new`] and sets the other fields as stored
/// (new fields may be added in minor releases, with defaults `new` sets).
///
/// ```
/// use keyward::{KeyId, KeyRecord, RateLimit, ScopeSet, TenantId, TokenHash};
/// use time::OffsetDateTime;
///
/// # fn row() -> (String, String, [u8; 34], OffsetDateTime) {
/// #     ("key_1".into(), "prop_1".into(), keyward::TokenHasher::sha256().hash("x").to_bytes(),
/// #      OffsetDateTime::UNIX_EPOCH)
/// # }
/// let (id, tenant, hash, created_at) = row();
/// let mut record = KeyRecord::new(
///     KeyId::parse(&id).unwrap(),
///     TenantId::parse(&tenant).unwrap(),
///     "pk",
///     TokenHash::from_bytes(&hash).unwrap(),
///     created_at,
/// );
/// record.name = "Backend".into();
/// record.display_prefix = "pk_7Hq2x".into();
/// record.rate_limit = RateLimit::Unlimited;
/// assert!(record.revoked_at.is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KeyRecord {
    /// Public id.
    pub id: KeyId,
    /// Owner.
    pub tenant: TenantId,
    /// Token kind prefix (`pk`, `pl`).
    pub kind: String,
    /// Name given at issue.
    pub name: String,
    /// First 8 characters of the token.
    pub display_prefix: String,
    /// Hash of the token.
    pub hash: TokenHash,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// Issue instant.
    pub created_at: OffsetDateTime,
    /// Expiry instant, if any.
    pub expires_at: Option<OffsetDateTime>,
    /// Last successful verification, as last flushed.
    pub last_used_at: Option<OffsetDateTime>,
    /// Revocation instant: on the store's clock for an immediate revocation;
    /// may lie in the future for a scheduled one (a rotation's grace).
    pub revoked_at: Option<OffsetDateTime>,
    /// Whether `revoked_at` is a scheduled instant, which each reader
    /// compares with its own clock. `false` for an immediate revocation
    /// ([`Revocation::Now`](crate::store::Revocation::Now)): that is in effect
    /// for every reader, whatever its clock says. Stores keep it `false`
    /// while `revoked_at` is `None`.
    pub revocation_scheduled: bool,
    /// Requests a minute.
    pub rate_limit: RateLimit,
    /// Free-form labels of the host.
    pub metadata: BTreeMap<String, String>,
    /// The key this one succeeded in a rotation.
    pub rotated_from: Option<KeyId>,
    /// The user inside the tenant the key belongs to (a personal token), or
    /// `None` for a key of the whole tenant.
    pub owner: Option<OwnerId>,
    /// The ranges the key may be used from; anywhere when `None`.
    pub allowed_ips: Option<IpAllowlist>,
    /// Usage credits; not metered when `None`. Spent with
    /// [`KeyStore::spend_credits`](crate::KeyStore::spend_credits), so the
    /// value here is as last read.
    pub credits: Option<Credits>,
    /// The shared rate-limit budget the key draws on; its own when `None`.
    pub budget: Option<BudgetId>,
    /// The last distinct client IPs, newest first (at most
    /// [`RECENT_IPS`](crate::usage::RECENT_IPS)), as last flushed.
    pub recent_ips: Vec<IpAddr>,
    /// The last user agent, cleaned, as last flushed.
    pub last_user_agent: Option<String>,
}

impl KeyRecord {
    /// A record of kind `kind` (its prefix) with this id, tenant, hash and
    /// creation instant; no name, display prefix or scopes, no expiry, never
    /// used, not revoked, the default rate limit, no metadata. Set the
    /// other fields as the store has them.
    #[must_use]
    pub fn new(
        id: KeyId,
        tenant: TenantId,
        kind: &str,
        hash: TokenHash,
        created_at: OffsetDateTime,
    ) -> Self {
        KeyRecord {
            id,
            tenant,
            kind: kind.to_owned(),
            name: String::new(),
            display_prefix: String::new(),
            hash,
            scopes: ScopeSet::default(),
            created_at,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
            revocation_scheduled: false,
            rate_limit: RateLimit::default(),
            metadata: BTreeMap::new(),
            rotated_from: None,
            owner: None,
            allowed_ips: None,
            credits: None,
            budget: None,
            recent_ips: Vec::new(),
            last_user_agent: None,
        }
    }

    /// Whether the key works at `now`. Revocation wins over expiry.
    ///
    /// An immediate revocation is in effect at any `now`, also one earlier
    /// than `revoked_at` (a reader whose clock lags the store's); only a
    /// scheduled revocation waits for its instant.
    ///
    /// ```
    /// # use keyward::*;
    /// # let now = time::OffsetDateTime::UNIX_EPOCH;
    /// # let mut record = KeyRecord::new(
    /// #     KeyId::generate(), TenantId::parse("t").unwrap(), "pk",
    /// #     TokenHasher::sha256().hash("x"), now,
    /// # );
    /// let a_minute = time::Duration::minutes(1);
    /// assert_eq!(record.state(now), KeyState::Active);
    /// // Scheduled a minute ahead: still usable until then.
    /// record.revoked_at = Some(now + a_minute);
    /// record.revocation_scheduled = true;
    /// assert_eq!(record.state(now), KeyState::Active);
    /// assert_eq!(record.state(now + a_minute), KeyState::Revoked);
    /// // Revoked immediately on a store whose clock is a minute ahead of ours.
    /// record.revocation_scheduled = false;
    /// assert_eq!(record.state(now), KeyState::Revoked);
    /// ```
    #[must_use]
    pub fn state(&self, now: OffsetDateTime) -> KeyState {
        if self
            .revoked_at
            .is_some_and(|at| !self.revocation_scheduled || at_or_before(at, now))
        {
            KeyState::Revoked
        } else if self.expires_at.is_some_and(|at| at_or_before(at, now)) {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }

    /// The view without the hash. Shares the record: no field is copied.
    #[must_use]
    pub fn info(self: &Arc<Self>) -> KeyInfo {
        KeyInfo {
            last_used_at: self.last_used_at,
            record: Arc::clone(self),
        }
    }
}

/// What list views show of a key: everything but the hash (and never the
/// token). A view over the stored record (a reference count, no copy), so
/// listing many keys copies none of their fields. Serializes with RFC 3339
/// timestamps.
///
/// [`Keyring::get`](crate::Keyring::get) and
/// [`Keyring::list`](crate::Keyring::list) fold in uses recorded but not yet
/// written, so [`last_used_at`](Self::last_used_at) is fresh.
///
/// ```
/// # use keyward::*;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let keyring = Keyring::builder()
///     .store(MemoryStore::new())
///     .kind(KeyKind::new("pk", ScopeCatalog::builder()
///         .scope("read", "Read", ScopeStatus::Enforced)
///         .build()
///         .unwrap()).unwrap())
///     .build()
///     .unwrap();
/// let issued = keyring.issue(NewKey::new("pk", "prop_1", "CI")).await.unwrap();
/// let info = keyring.get(issued.info.id()).await.unwrap();
/// assert_eq!(info.name(), "CI");
/// assert_eq!(info.display_prefix(), &issued.token.expose_secret()[..8]);
/// assert!(info.last_used_at().is_none());
/// # });
/// ```
#[derive(Clone)]
pub struct KeyInfo {
    record: Arc<KeyRecord>,
    /// The record's, or a later use not yet written.
    last_used_at: Option<OffsetDateTime>,
}

impl KeyInfo {
    /// Public id.
    #[must_use]
    pub fn id(&self) -> &KeyId {
        &self.record.id
    }
    /// Owner.
    #[must_use]
    pub fn tenant(&self) -> &TenantId {
        &self.record.tenant
    }
    /// Token kind prefix.
    #[must_use]
    pub fn kind(&self) -> &str {
        &self.record.kind
    }
    /// Name given at issue.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.record.name
    }
    /// First 8 characters of the token.
    #[must_use]
    pub fn display_prefix(&self) -> &str {
        &self.record.display_prefix
    }
    /// Granted scopes.
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        &self.record.scopes
    }
    /// Issue instant.
    #[must_use]
    pub fn created_at(&self) -> OffsetDateTime {
        self.record.created_at
    }
    /// Expiry instant, if any.
    #[must_use]
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.record.expires_at
    }
    /// Last successful verification: the store's, or a later one this
    /// keyring recorded and has not written yet.
    #[must_use]
    pub fn last_used_at(&self) -> Option<OffsetDateTime> {
        self.last_used_at
    }
    /// Revocation instant (in the future for a rotation's grace).
    #[must_use]
    pub fn revoked_at(&self) -> Option<OffsetDateTime> {
        self.record.revoked_at
    }
    /// Requests a minute.
    #[must_use]
    pub fn rate_limit(&self) -> RateLimit {
        self.record.rate_limit
    }
    /// Labels of the host.
    #[must_use]
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.record.metadata
    }
    /// The key this one succeeded.
    #[must_use]
    pub fn rotated_from(&self) -> Option<&KeyId> {
        self.record.rotated_from.as_ref()
    }

    /// The user inside the tenant the key belongs to, if it is personal.
    #[must_use]
    pub fn owner(&self) -> Option<&OwnerId> {
        self.record.owner.as_ref()
    }

    /// Whether the key works at `now` (see [`KeyRecord::state`]).
    #[must_use]
    pub fn state(&self, now: OffsetDateTime) -> KeyState {
        self.record.state(now)
    }

    /// The ranges the key may be used from, if restricted.
    #[must_use]
    pub fn allowed_ips(&self) -> Option<&IpAllowlist> {
        self.record.allowed_ips.as_ref()
    }

    /// The key's credits as last read (spends since are not counted).
    #[must_use]
    pub fn credits(&self) -> Option<&Credits> {
        self.record.credits.as_ref()
    }

    /// The shared budget the key draws on, if any.
    #[must_use]
    pub fn budget(&self) -> Option<&BudgetId> {
        self.record.budget.as_ref()
    }

    /// The last distinct client IPs, newest first, as last written.
    #[must_use]
    pub fn recent_ips(&self) -> &[IpAddr] {
        &self.record.recent_ips
    }

    /// The last user agent, as last written.
    #[must_use]
    pub fn last_user_agent(&self) -> Option<&str> {
        self.record.last_user_agent.as_deref()
    }

    /// This view with a later last use (an earlier one is ignored).
    pub(crate) fn used_at(mut self, at: OffsetDateTime) -> Self {
        if self.last_used_at.is_none_or(|prev| prev < at) {
            self.last_used_at = Some(at);
        }
        self
    }
}

impl PartialEq for KeyInfo {
    fn eq(&self, other: &Self) -> bool {
        self.last_used_at == other.last_used_at
            && (Arc::ptr_eq(&self.record, &other.record) || {
                let (a, b) = (&*self.record, &*other.record);
                a.id == b.id
                    && a.tenant == b.tenant
                    && a.kind == b.kind
                    && a.name == b.name
                    && a.display_prefix == b.display_prefix
                    && a.scopes == b.scopes
                    && a.created_at == b.created_at
                    && a.expires_at == b.expires_at
                    && a.revoked_at == b.revoked_at
                    && a.rate_limit == b.rate_limit
                    && a.metadata == b.metadata
                    && a.rotated_from == b.rotated_from
                    && a.owner == b.owner
                    && a.allowed_ips == b.allowed_ips
                    && a.credits == b.credits
                    && a.budget == b.budget
                    && a.recent_ips == b.recent_ips
                    && a.last_user_agent == b.last_user_agent
            })
    }
}

impl fmt::Debug for KeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &*self.record;
        f.debug_struct("KeyInfo")
            .field("id", &r.id)
            .field("tenant", &r.tenant)
            .field("kind", &r.kind)
            .field("name", &r.name)
            .field("display_prefix", &r.display_prefix)
            .field("scopes", &r.scopes)
            .field("created_at", &r.created_at)
            .field("expires_at", &r.expires_at)
            .field("last_used_at", &self.last_used_at)
            .field("revoked_at", &r.revoked_at)
            .field("rate_limit", &r.rate_limit)
            .field("metadata", &r.metadata)
            .field("rotated_from", &r.rotated_from)
            .field("owner", &r.owner)
            .field("allowed_ips", &r.allowed_ips)
            .field("credits", &r.credits)
            .field("budget", &r.budget)
            .field("recent_ips", &r.recent_ips)
            .field("last_user_agent", &r.last_user_agent)
            .finish()
    }
}

impl Serialize for KeyInfo {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Rfc3339(Option<OffsetDateTime>);
        impl Serialize for Rfc3339 {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                time::serde::rfc3339::option::serialize(&self.0, s)
            }
        }
        let r = &*self.record;
        let mut s = serializer.serialize_struct("KeyInfo", 19)?;
        s.serialize_field("id", &r.id)?;
        s.serialize_field("tenant", &r.tenant)?;
        s.serialize_field("kind", &r.kind)?;
        s.serialize_field("name", &r.name)?;
        s.serialize_field("display_prefix", &r.display_prefix)?;
        s.serialize_field("scopes", &r.scopes)?;
        s.serialize_field("created_at", &Rfc3339(Some(r.created_at)))?;
        s.serialize_field("expires_at", &Rfc3339(r.expires_at))?;
        s.serialize_field("last_used_at", &Rfc3339(self.last_used_at))?;
        s.serialize_field("revoked_at", &Rfc3339(r.revoked_at))?;
        s.serialize_field("rate_limit", &r.rate_limit)?;
        s.serialize_field("metadata", &r.metadata)?;
        s.serialize_field("rotated_from", &r.rotated_from)?;
        s.serialize_field("owner", &r.owner)?;
        s.serialize_field("allowed_ips", &r.allowed_ips)?;
        s.serialize_field("credits", &r.credits)?;
        s.serialize_field("budget", &r.budget)?;
        s.serialize_field("recent_ips", &r.recent_ips)?;
        s.serialize_field("last_user_agent", &r.last_user_agent)?;
        s.end()
    }
}

/// What to issue: built with [`NewKey::new`] and passed to
/// [`Keyring::issue`](crate::Keyring::issue).
///
/// `issue` checks the labels: the name and the tenant id are 1–200
/// characters with at least one visible; metadata is at most 32 labels with
/// keys of 1–64 bytes and values of up to 1024 bytes. None of them may hold
/// control characters, Unicode format characters (bidi overrides,
/// zero-width spaces and joiners, the soft hyphen, so also emoji ZWJ
/// sequences), line and paragraph separators, spaces other than U+0020, or
/// other characters that render as nothing (variation selectors, Hangul
/// fillers, the blank Braille pattern): any of them can make one label look
/// like another, or like nothing, in a list view.
///
/// ```
/// use keyward::{Expiry, NewKey, RateLimit};
///
/// let new = NewKey::new("pl", "org_1", "CI uploader")
///     .scopes(["versions:write"])
///     .expires(Expiry::Days90)
///     .rate_limit(RateLimit::per_minute(10).unwrap())
///     .metadata("created_by", "user_7");
/// # let _ = new;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct NewKey {
    pub(crate) kind: String,
    pub(crate) tenant: String,
    pub(crate) name: String,
    pub(crate) scopes: Option<Vec<String>>,
    /// `None`: the kind's [`ExpiryPolicy`] default.
    pub(crate) expiry: Option<Expiry>,
    pub(crate) rate_limit: RateLimit,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) owner: Option<String>,
    pub(crate) allowed_ips: Option<IpAllowlist>,
    pub(crate) credits: Option<Credits>,
    pub(crate) budget: Option<String>,
}

impl NewKey {
    /// A key of kind `kind` (its prefix) for `tenant`, named `name`; the
    /// kind's default scopes, no expiry, 100 requests a minute.
    pub fn new(kind: &str, tenant: &str, name: &str) -> Self {
        NewKey {
            kind: kind.to_owned(),
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            scopes: None,
            expiry: None,
            rate_limit: RateLimit::default(),
            metadata: BTreeMap::new(),
            owner: None,
            allowed_ips: None,
            credits: None,
            budget: None,
        }
    }

    /// The ranges the key may be used from (see [`IpAllowlist`]).
    pub fn allowed_ips(mut self, list: IpAllowlist) -> Self {
        self.allowed_ips = Some(list);
        self
    }

    /// Usage credits (see [`Credits`]).
    pub fn credits(mut self, credits: Credits) -> Self {
        self.credits = Some(credits);
        self
    }

    /// The shared rate-limit budget the key draws on; checked by `issue`
    /// as a [`BudgetId`].
    pub fn budget(mut self, budget: &str) -> Self {
        self.budget = Some(budget.to_owned());
        self
    }

    /// The user inside the tenant the key belongs to (a personal token);
    /// checked by `issue` as an [`OwnerId`]. A key without one belongs to the
    /// whole tenant.
    pub fn owner(mut self, owner: &str) -> Self {
        self.owner = Some(owner.to_owned());
        self
    }

    /// The scopes to grant, instead of the kind's defaults.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.scopes = Some(scopes.into_iter().map(|s| s.as_ref().to_owned()).collect());
        self
    }

    /// When the key expires.
    pub fn expires(mut self, expiry: Expiry) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// The key's rate limit.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Adds a metadata label.
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.insert(key.to_owned(), value.to_owned());
        self
    }
}
