//! Usage controls of a key: an IP allowlist, usage credits with refill,
//! a shared rate-limit budget, and where the key was last used.
//!
//! Every control is optional and set per key, at issue
//! ([`NewKey`](crate::NewKey)) or later
//! ([`Keyring::update_controls`](crate::Keyring::update_controls)). A key
//! without them costs nothing more to verify: the authentication layer
//! reads a field of the verified record and moves on.
//!
//! * [`IpAllowlist`]: IPv4 and IPv6 CIDR ranges a request must come from
//!   (403 `ip_not_allowed` otherwise, after verification and before any
//!   quota is spent).
//! * [`Credits`]: a number of remaining uses, spent by each admitted
//!   request (402 `credits_exhausted` when out), optionally refilled daily
//!   or monthly ([`Refill`]).
//! * [`BudgetId`]: keys naming the same budget in a tenant share one rate
//!   limit.
//! * [`KeyUse`]: what the batched last-used write carries: the instant, the
//!   last few distinct client IPs and the last user agent.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;
use time::{Date, Duration, Month, OffsetDateTime, Time};

pub use crate::key::BudgetId;
use crate::key::{KeyId, RateLimit};

/// At most this many ranges in an [`IpAllowlist`].
pub const MAX_ALLOWLIST_LEN: usize = 100;

/// At most this many credits on a key (2^53 - 1: exact in JSON numbers and
/// in a PostgreSQL `bigint`).
pub const MAX_CREDITS: u64 = (1 << 53) - 1;

/// How many distinct client IPs a key remembers ([`KeyUse::ips`]).
pub const RECENT_IPS: usize = 5;

/// The longest user agent kept, in bytes (longer ones are cut at a
/// character boundary).
pub const MAX_USER_AGENT_LEN: usize = 256;

/// Why a usage control is refused.
///
/// ```
/// use keyward::usage::{IpAllowlist, UsageError};
///
/// assert_eq!(IpAllowlist::parse(["10.0.0.1/8"]).unwrap_err(), UsageError::HostBitsSet("10.0.0.1/8".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// An allowlist entry is neither an IP address nor a CIDR range.
    #[error("{0:?} is not an IP address or a CIDR range (203.0.113.0/24, 2001:db8::/32)")]
    InvalidRange(String),
    /// A CIDR range with bits set after its prefix (`10.0.0.1/8`): which
    /// range was meant is ambiguous.
    #[error("{0:?} has bits set after its prefix length: write the network address")]
    HostBitsSet(String),
    /// An IPv4 range written in IPv6 (`::ffff:10.0.0.0/104`): client
    /// addresses are compared as IPv4, so it would never match.
    #[error("{0:?} is an IPv4-mapped IPv6 range: write it as IPv4")]
    MappedRange(String),
    /// An allowlist without ranges, or with more than [`MAX_ALLOWLIST_LEN`].
    #[error("an IP allowlist holds 1-100 ranges")]
    AllowlistLength,
    /// More than [`MAX_CREDITS`] credits, or a refill of none.
    #[error("credits must be at most 2^53 - 1, and a refill at least 1")]
    CreditsRange,
    /// A monthly refill on a day outside 1-31.
    #[error("a monthly refill falls on day 1-31")]
    RefillDay,
    /// A budget id that is empty, too long, or has control or format
    /// characters.
    #[error("a budget id must be 1-200 characters, not all spaces, without control, format (bidi, zero-width) or line-separator characters")]
    InvalidBudget,
    /// Credits added to a key that has none (it is not metered).
    #[error("the key has no credits to add to: set them instead")]
    NotMetered,
}

/// The CIDR ranges a key may be used from. IPv4 and IPv6; an address
/// without a prefix length is a single host. Client addresses are compared
/// in canonical form (an IPv4-mapped IPv6 address as IPv4).
///
/// ```
/// use keyward::usage::IpAllowlist;
///
/// let list = IpAllowlist::parse(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"])?;
/// assert!(list.allows("203.0.113.9".parse()?));
/// assert!(list.allows("::ffff:203.0.113.9".parse()?)); // IPv4-mapped
/// assert!(list.allows("2001:db8:1::1".parse()?));
/// assert!(!list.allows("198.51.100.8".parse()?));
/// assert_eq!(list.to_strings(), ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct IpAllowlist(Arc<[IpNet]>);

impl IpAllowlist {
    /// Parses 1 to [`MAX_ALLOWLIST_LEN`] ranges (`203.0.113.0/24`,
    /// `2001:db8::/32`, or a single address); duplicates are dropped.
    ///
    /// # Errors
    ///
    /// [`UsageError::InvalidRange`], [`HostBitsSet`](UsageError::HostBitsSet)
    /// (`10.0.0.1/8`), [`MappedRange`](UsageError::MappedRange) (an IPv4
    /// range written as IPv6), [`AllowlistLength`](UsageError::AllowlistLength).
    pub fn parse<I, S>(ranges: I) -> Result<Self, UsageError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets: Vec<IpNet> = Vec::new();
        for (i, range) in ranges.into_iter().enumerate() {
            if i >= MAX_ALLOWLIST_LEN {
                return Err(UsageError::AllowlistLength);
            }
            let text = range.as_ref();
            let net = parse_range(text)?;
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        if nets.is_empty() {
            return Err(UsageError::AllowlistLength);
        }
        Ok(IpAllowlist(nets.into()))
    }

    /// Whether `ip` lies in one of the ranges.
    #[must_use]
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The ranges, as CIDR text.
    #[must_use]
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// How many ranges.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: an allowlist holds at least one range.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_range(text: &str) -> Result<IpNet, UsageError> {
    let invalid = || UsageError::InvalidRange(text.chars().take(64).collect());
    let net = match IpNet::from_str(text) {
        Ok(net) => net,
        Err(_) => IpAddr::from_str(text)
            .map(IpNet::from)
            .map_err(|_| invalid())?,
    };
    if net.trunc() != net {
        return Err(UsageError::HostBitsSet(text.to_owned()));
    }
    if let IpNet::V6(v6) = net {
        // ::ffff:0:0/96 and everything inside it.
        let mapped = ipnet::Ipv6Net::new(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96)
            .expect("a valid prefix");
        if v6.prefix_len() >= 96 && mapped.contains(&v6) {
            return Err(UsageError::MappedRange(text.to_owned()));
        }
    }
    Ok(net)
}

impl fmt::Debug for IpAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.to_strings()).finish()
    }
}

impl Serialize for IpAllowlist {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

/// When credits are refilled: at 00:00 UTC each day, or on a day of each
/// month (the last day of a shorter month for days past its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase", tag = "period")]
#[non_exhaustive]
pub enum RefillPeriod {
    /// At 00:00 UTC every day.
    Daily,
    /// At 00:00 UTC on this day of every month (1-31; the 31st means the
    /// last day of a shorter month).
    Monthly {
        /// The day of the month.
        day: u8,
    },
}

impl RefillPeriod {
    /// The start of the period `now` falls in: the latest refill instant at
    /// or before `now`.
    ///
    /// ```
    /// use keyward::usage::RefillPeriod;
    /// use time::macros::datetime;
    ///
    /// let monthly = RefillPeriod::Monthly { day: 31 };
    /// assert_eq!(monthly.period_start(datetime!(2026-03-15 12:00 UTC)), datetime!(2026-02-28 0:00 UTC));
    /// assert_eq!(monthly.period_start(datetime!(2026-03-31 0:00 UTC)), datetime!(2026-03-31 0:00 UTC));
    /// assert_eq!(RefillPeriod::Daily.period_start(datetime!(2026-03-15 12:00 UTC)), datetime!(2026-03-15 0:00 UTC));
    /// ```
    #[must_use]
    pub fn period_start(self, now: OffsetDateTime) -> OffsetDateTime {
        let now = now.to_offset(time::UtcOffset::UTC);
        match self {
            RefillPeriod::Daily => now.replace_time(Time::MIDNIGHT),
            RefillPeriod::Monthly { day } => {
                let this = refill_day(now.year(), now.month(), day);
                if this <= now {
                    this
                } else {
                    let (year, month) = previous_month(now.year(), now.month());
                    refill_day(year, month, day)
                }
            }
        }
    }

    /// The first refill instant after `now`.
    ///
    /// ```
    /// use keyward::usage::RefillPeriod;
    /// use time::macros::datetime;
    ///
    /// let monthly = RefillPeriod::Monthly { day: 1 };
    /// assert_eq!(monthly.next_after(datetime!(2026-12-01 0:00 UTC)), datetime!(2027-01-01 0:00 UTC));
    /// ```
    #[must_use]
    pub fn next_after(self, now: OffsetDateTime) -> OffsetDateTime {
        let now = now.to_offset(time::UtcOffset::UTC);
        match self {
            RefillPeriod::Daily => now
                .replace_time(Time::MIDNIGHT)
                .saturating_add(Duration::DAY),
            RefillPeriod::Monthly { day } => {
                let this = refill_day(now.year(), now.month(), day);
                if this > now {
                    this
                } else {
                    let (year, month) = next_month(now.year(), now.month());
                    refill_day(year, month, day)
                }
            }
        }
    }
}

fn refill_day(year: i32, month: Month, day: u8) -> OffsetDateTime {
    let last = time::util::days_in_month(month, year);
    let date = Date::from_calendar_date(year, month, day.clamp(1, last)).unwrap_or(Date::MIN);
    date.midnight().assume_utc()
}

fn previous_month(year: i32, month: Month) -> (i32, Month) {
    match month {
        Month::January => (year - 1, Month::December),
        m => (year, m.previous()),
    }
}

fn next_month(year: i32, month: Month) -> (i32, Month) {
    match month {
        Month::December => (year + 1, Month::January),
        m => (year, m.next()),
    }
}

/// Credits are set back to `amount` (not added to) at each refill instant
/// of `period`: applied lazily, by the first spend of a new period.
///
/// ```
/// use keyward::usage::{Refill, RefillPeriod};
///
/// let refill = Refill::monthly(10_000, 1)?;
/// assert_eq!(refill.period, RefillPeriod::Monthly { day: 1 });
/// assert!(Refill::monthly(10, 32).is_err());
/// assert!(Refill::daily(0).is_err());
/// # Ok::<(), keyward::usage::UsageError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Refill {
    /// What the credits are set back to.
    pub amount: u64,
    /// When.
    #[serde(flatten)]
    pub period: RefillPeriod,
}

impl Refill {
    /// Back to `amount` at 00:00 UTC every day.
    ///
    /// # Errors
    ///
    /// [`UsageError::CreditsRange`] for 0 or more than [`MAX_CREDITS`].
    pub fn daily(amount: u64) -> Result<Self, UsageError> {
        Self::new(amount, RefillPeriod::Daily)
    }

    /// Back to `amount` at 00:00 UTC on `day` (1-31) of every month.
    ///
    /// # Errors
    ///
    /// [`UsageError::CreditsRange`] for 0 or more than [`MAX_CREDITS`],
    /// [`UsageError::RefillDay`] for a day outside 1-31.
    pub fn monthly(amount: u64, day: u8) -> Result<Self, UsageError> {
        if !(1..=31).contains(&day) {
            return Err(UsageError::RefillDay);
        }
        Self::new(amount, RefillPeriod::Monthly { day })
    }

    fn new(amount: u64, period: RefillPeriod) -> Result<Self, UsageError> {
        if amount == 0 || amount > MAX_CREDITS {
            return Err(UsageError::CreditsRange);
        }
        Ok(Refill { amount, period })
    }

    /// Whether credits last refilled at `last` are due a refill at `now`.
    #[must_use]
    pub fn due(&self, last: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
        last.is_none_or(|last| last < self.period.period_start(now))
    }
}

/// A key's usage credits: how many uses remain, and an optional refill.
///
/// ```
/// use keyward::usage::{Credits, Refill};
///
/// let credits = Credits::new(1_000)?.refill(Refill::daily(1_000)?);
/// assert_eq!(credits.remaining, 1_000);
/// # Ok::<(), keyward::usage::UsageError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Credits {
    /// Uses left.
    pub remaining: u64,
    /// The refill, if any.
    pub refill: Option<Refill>,
    /// When the credits were last set or refilled (a refill is due once a
    /// refill instant passes after it). Issuing and setting credits set it
    /// to that instant unless given (to have the first refill due at the
    /// first spend, give an instant before the current period); shown in
    /// views, never taken from a request body.
    #[serde(with = "time::serde::rfc3339::option")]
    pub refilled_at: Option<OffsetDateTime>,
}

impl Credits {
    /// `remaining` credits, no refill.
    ///
    /// # Errors
    ///
    /// [`UsageError::CreditsRange`] above [`MAX_CREDITS`].
    pub fn new(remaining: u64) -> Result<Self, UsageError> {
        if remaining > MAX_CREDITS {
            return Err(UsageError::CreditsRange);
        }
        Ok(Credits {
            remaining,
            refill: None,
            refilled_at: None,
        })
    }

    /// With a refill.
    #[must_use]
    pub fn refill(mut self, refill: Refill) -> Self {
        self.refill = Some(refill);
        self
    }

    /// Spends `cost` at `now` as a store does it, refilling first when a
    /// refill is due: the outcome, and the credits to store (`None`: no
    /// change). Stores that hold the credits in memory call this under
    /// their lock; a database does the same in one statement.
    pub fn spend(&self, cost: u64, now: OffsetDateTime) -> (CreditSpend, Option<Credits>) {
        let mut next = *self;
        let mut changed = false;
        if let Some(refill) = self.refill {
            if refill.due(self.refilled_at, now) {
                next.remaining = refill.amount;
                next.refilled_at = Some(now);
                changed = true;
            }
        }
        if next.remaining >= cost {
            next.remaining -= cost;
            let changed = changed || cost > 0;
            (
                CreditSpend::Spent {
                    remaining: next.remaining,
                },
                changed.then_some(next),
            )
        } else {
            (
                CreditSpend::Exhausted {
                    remaining: next.remaining,
                },
                changed.then_some(next),
            )
        }
    }

    /// Checks values set through the public fields: remaining at most
    /// [`MAX_CREDITS`], a refill of 1 to [`MAX_CREDITS`], a monthly day
    /// of 1-31.
    ///
    /// # Errors
    ///
    /// [`UsageError::CreditsRange`] or [`UsageError::RefillDay`].
    pub fn check(&self) -> Result<(), UsageError> {
        if self.remaining > MAX_CREDITS {
            return Err(UsageError::CreditsRange);
        }
        if let Some(refill) = self.refill {
            if refill.amount == 0 || refill.amount > MAX_CREDITS {
                return Err(UsageError::CreditsRange);
            }
            if let RefillPeriod::Monthly { day } = refill.period {
                if !(1..=31).contains(&day) {
                    return Err(UsageError::RefillDay);
                }
            }
        }
        Ok(())
    }

    /// When the next refill comes, if any (for a `Retry-After` hint).
    #[must_use]
    pub fn next_refill(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.refill.map(|r| r.period.next_after(now))
    }
}

/// What [`KeyStore::spend_credits`](crate::KeyStore::spend_credits)
/// did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub enum CreditSpend {
    /// Spent; this many remain.
    Spent {
        /// Credits left after the spend.
        remaining: u64,
    },
    /// Not enough credits: nothing was spent (a due refill was applied).
    Exhausted {
        /// Credits left, fewer than the cost.
        remaining: u64,
    },
    /// The key has no credits: it is not metered.
    Unmetered,
}

/// How [`ControlsUpdate::credits`] changes a key's credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreditsChange {
    /// Sets remaining credits and refill (`refilled_at` becomes the
    /// update's instant unless given).
    Set(Credits),
    /// Adds credits to a metered key, atomically with concurrent spends
    /// (capped at [`MAX_CREDITS`]), after applying a due refill. A key
    /// without credits stays unmetered. A later refill sets the credits
    /// back to its amount, top-ups included: credits bought to last belong
    /// on a key without refill.
    Add(u64),
    /// Removes the credits: the key is no longer metered.
    Remove,
}

/// A change to a key's usage controls, as
/// [`Keyring::update_controls`](crate::Keyring::update_controls) and
/// [`KeyStore::update_controls`](crate::KeyStore::update_controls) take it.
/// Fields left `None` keep their value.
///
/// ```
/// use keyward::usage::{BudgetId, ControlsUpdate, Credits, CreditsChange, IpAllowlist};
/// use keyward::RateLimit;
///
/// let update = ControlsUpdate::new()
///     .allowed_ips(Some(IpAllowlist::parse(["203.0.113.0/24"])?))
///     .credits(CreditsChange::Add(500))
///     .budget(Some(BudgetId::parse("customer_42").unwrap()))
///     .rate_limit(RateLimit::per_minute(600).unwrap());
/// assert!(!update.is_empty());
/// assert!(ControlsUpdate::new().is_empty());
/// # Ok::<(), keyward::usage::UsageError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct ControlsUpdate {
    /// The new allowlist (`Some(None)`: remove it).
    pub allowed_ips: Option<Option<IpAllowlist>>,
    /// The change to the credits.
    pub credits: Option<CreditsChange>,
    /// The new shared budget (`Some(None)`: remove the key from its budget).
    pub budget: Option<Option<BudgetId>>,
    /// The new rate limit.
    pub rate_limit: Option<RateLimit>,
}

impl ControlsUpdate {
    /// Changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or with `None` removes) the allowlist.
    pub fn allowed_ips(mut self, list: Option<IpAllowlist>) -> Self {
        self.allowed_ips = Some(list);
        self
    }

    /// Changes the credits.
    pub fn credits(mut self, change: CreditsChange) -> Self {
        self.credits = Some(change);
        self
    }

    /// Joins (or with `None` leaves) a shared budget.
    pub fn budget(mut self, budget: Option<BudgetId>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sets the rate limit.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Whether it changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.allowed_ips.is_none()
            && self.credits.is_none()
            && self.budget.is_none()
            && self.rate_limit.is_none()
    }

    /// Applies the update to a record at `now`, as a store holding records
    /// in memory does it.
    pub fn apply(&self, record: &mut crate::KeyRecord, now: OffsetDateTime) {
        if let Some(list) = &self.allowed_ips {
            record.allowed_ips.clone_from(list);
        }
        match self.credits {
            None => {}
            Some(CreditsChange::Set(credits)) => {
                record.credits = Some(Credits {
                    refilled_at: credits.refilled_at.or(Some(now)),
                    ..credits
                });
            }
            Some(CreditsChange::Add(n)) => {
                if let Some(credits) = &mut record.credits {
                    // Onto a due refill first, as a spend would apply it:
                    // the refill does not overwrite the top-up later.
                    if let Some(refill) = credits.refill {
                        if refill.due(credits.refilled_at, now) {
                            credits.remaining = refill.amount;
                            credits.refilled_at = Some(now);
                        }
                    }
                    credits.remaining = credits.remaining.saturating_add(n).min(MAX_CREDITS);
                }
            }
            Some(CreditsChange::Remove) => record.credits = None,
        }
        if let Some(budget) = &self.budget {
            record.budget.clone_from(budget);
        }
        if let Some(limit) = self.rate_limit {
            record.rate_limit = limit;
        }
    }
}

/// One key's uses in a last-used batch
/// ([`KeyStore::record_uses`](crate::KeyStore::record_uses)): the latest
/// instant, the distinct client IPs seen (newest first, at most
/// [`RECENT_IPS`]) and the latest user agent (cleaned: no control
/// characters, at most [`MAX_USER_AGENT_LEN`] bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyUse {
    /// The key.
    pub id: KeyId,
    /// The latest use.
    pub at: OffsetDateTime,
    /// Distinct client IPs, newest first.
    pub ips: Vec<IpAddr>,
    /// The latest user agent.
    pub user_agent: Option<Arc<str>>,
}

impl KeyUse {
    /// A use at `at` with no client details.
    #[must_use]
    pub fn new(id: KeyId, at: OffsetDateTime) -> Self {
        KeyUse {
            id,
            at,
            ips: Vec::new(),
            user_agent: None,
        }
    }

    /// Folds this batch's use into a stored record's fields, as a store
    /// does it: `last_used_at` becomes the later instant; when this use is
    /// not older than the stored one, its IPs go first and its user agent
    /// replaces the stored one, otherwise its IPs go after the stored ones.
    /// IPs stay distinct, at most [`RECENT_IPS`].
    pub fn apply(&self, record: &mut crate::KeyRecord) {
        let newer = record.last_used_at.is_none_or(|at| self.at >= at);
        let (first, second) = if newer {
            (&self.ips, &record.recent_ips)
        } else {
            (&record.recent_ips, &self.ips)
        };
        let mut ips = Vec::with_capacity(RECENT_IPS);
        for ip in first.iter().chain(second) {
            if ips.len() < RECENT_IPS && !ips.contains(ip) {
                ips.push(*ip);
            }
        }
        record.recent_ips = ips;
        if newer {
            if let Some(ua) = &self.user_agent {
                record.last_user_agent = Some(ua.to_string());
            }
        }
        record.last_used_at = Some(record.last_used_at.map_or(self.at, |at| at.max(self.at)));
    }
}

/// Where a verification came from, for the key's
/// [recent IPs and user agent](crate::KeyInfo::recent_ips):
/// [`Keyring::verify_with`](crate::Keyring::verify_with) notes them in
/// the batched last-used write. The authentication layer passes the
/// client IP (by its trusted-proxy rules) and the `User-Agent` header.
///
/// ```
/// use keyward::usage::UseContext;
///
/// let from = UseContext::new().ip("203.0.113.9".parse().unwrap()).user_agent("curl/8.5");
/// assert_eq!(from.user_agent, Some("curl/8.5"));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct UseContext<'a> {
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// The raw `User-Agent` (cleaned before it is kept).
    pub user_agent: Option<&'a str>,
}

impl<'a> UseContext<'a> {
    /// Nothing known.
    pub fn new() -> Self {
        Self::default()
    }

    /// From this client address.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// With this user agent.
    pub fn user_agent(mut self, user_agent: &'a str) -> Self {
        self.user_agent = Some(user_agent);
        self
    }
}

/// A user agent as kept: only characters a list view shows as they read
/// (the rule of labels: no control or format characters such as bidi
/// overrides and zero-width spaces, no line separators, no spaces but
/// U+0020), at most [`MAX_USER_AGENT_LEN`] bytes (cut at a character
/// boundary).
///
/// ```
/// assert_eq!(keyward::usage::clean_user_agent("curl/8.5\u{7}\r\n"), "curl/8.5");
/// assert_eq!(keyward::usage::clean_user_agent("evil\u{202e}gpj.exe\u{2028}"), "evilgpj.exe");
/// ```
#[must_use]
pub fn clean_user_agent(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_USER_AGENT_LEN));
    for c in raw.chars().filter(|&c| crate::key::displayable_char(c)) {
        if out.len() + c.len_utf8() > MAX_USER_AGENT_LEN {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ranges_parse_strictly() {
        assert!(IpAllowlist::parse(["10.0.0.0/8"]).is_ok());
        assert!(matches!(
            IpAllowlist::parse(["10.0.0.0/33"]),
            Err(UsageError::InvalidRange(_))
        ));
        assert!(matches!(
            IpAllowlist::parse(["nope"]),
            Err(UsageError::InvalidRange(_))
        ));
        assert!(matches!(
            IpAllowlist::parse([" 10.0.0.0/8"]),
            Err(UsageError::InvalidRange(_))
        ));
        assert!(matches!(
            IpAllowlist::parse(["::ffff:10.0.0.0/104"]),
            Err(UsageError::MappedRange(_))
        ));
        assert!(matches!(
            IpAllowlist::parse(["::ffff:10.0.0.1"]),
            Err(UsageError::MappedRange(_))
        ));
        // ::/0 holds the mapped block but is not inside it.
        assert!(IpAllowlist::parse(["::/0"]).is_ok());
        assert_eq!(
            IpAllowlist::parse(Vec::<String>::new()),
            Err(UsageError::AllowlistLength)
        );
        let many: Vec<String> = (0..=100).map(|i| format!("10.0.{i}.0/24")).collect();
        assert_eq!(IpAllowlist::parse(&many), Err(UsageError::AllowlistLength));
        assert_eq!(IpAllowlist::parse(&many[..100]).unwrap().len(), 100);
        let dup = IpAllowlist::parse(["10.0.0.0/8", "10.0.0.0/8"]).unwrap();
        assert_eq!(dup.len(), 1);
    }

    #[test]
    fn allowlists_show_their_ranges() {
        let list = IpAllowlist::parse(["10.0.0.0/8", "2001:db8::1", "192.0.2.7"]).unwrap();
        assert_eq!(
            list.to_strings(),
            ["10.0.0.0/8", "2001:db8::1/128", "192.0.2.7/32"]
        );
        assert_eq!(
            format!("{list:?}"),
            r#"["10.0.0.0/8", "2001:db8::1/128", "192.0.2.7/32"]"#
        );
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            r#"["10.0.0.0/8","2001:db8::1/128","192.0.2.7/32"]"#
        );
        assert!(!list.is_empty());
        assert!(list.allows("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn budgets_and_contexts_read_back() {
        let budget = BudgetId::parse("customer 42").unwrap();
        assert_eq!(budget.as_str(), "customer 42");
        assert_eq!(budget.to_string(), "customer 42");
        assert_eq!(format!("{budget:?}"), r#""customer 42""#);
        assert!(BudgetId::parse("a\u{202e}b").is_none());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let from = UseContext::new().ip(ip).user_agent("ua/1");
        assert_eq!((from.ip, from.user_agent), (Some(ip), Some("ua/1")));
    }

    #[test]
    fn refills_cross_the_year() {
        let monthly = RefillPeriod::Monthly { day: 1 };
        assert_eq!(
            monthly.next_after(datetime!(2026-12-01 0:00 UTC)),
            datetime!(2027-01-01 0:00 UTC)
        );
        assert_eq!(
            monthly.next_after(datetime!(2026-12-31 23:59 UTC)),
            datetime!(2027-01-01 0:00 UTC)
        );
        assert_eq!(
            monthly.period_start(datetime!(2027-01-01 0:00 UTC)),
            datetime!(2027-01-01 0:00 UTC)
        );
        assert_eq!(
            RefillPeriod::Monthly { day: 2 }.period_start(datetime!(2027-01-01 12:00 UTC)),
            datetime!(2026-12-02 0:00 UTC)
        );
    }

    #[test]
    fn allowlists_match_by_range_and_family() {
        let list = IpAllowlist::parse(["10.1.0.0/16", "2001:db8::/48"]).unwrap();
        assert!(list.allows("10.1.255.255".parse().unwrap()));
        assert!(!list.allows("10.2.0.0".parse().unwrap()));
        assert!(list.allows("::ffff:10.1.0.1".parse().unwrap()));
        assert!(list.allows("2001:db8:0:ffff::1".parse().unwrap()));
        assert!(!list.allows("2001:db8:1::1".parse().unwrap()));
    }

    #[test]
    fn monthly_refills_clamp_to_the_month() {
        let p = RefillPeriod::Monthly { day: 31 };
        assert_eq!(
            p.period_start(datetime!(2028-02-29 0:00 UTC)),
            datetime!(2028-02-29 0:00 UTC)
        );
        assert_eq!(
            p.period_start(datetime!(2028-02-28 23:59 UTC)),
            datetime!(2028-01-31 0:00 UTC)
        );
        assert_eq!(
            p.next_after(datetime!(2028-02-29 0:00 UTC)),
            datetime!(2028-03-31 0:00 UTC)
        );
        assert_eq!(
            p.period_start(datetime!(2027-01-05 0:00 UTC)),
            datetime!(2026-12-31 0:00 UTC)
        );
        let d = RefillPeriod::Monthly { day: 15 };
        assert_eq!(
            d.period_start(datetime!(2027-01-15 0:00 UTC)),
            datetime!(2027-01-15 0:00 UTC)
        );
        assert_eq!(
            d.period_start(datetime!(2027-01-14 23:59:59 UTC)),
            datetime!(2026-12-15 0:00 UTC)
        );
        assert_eq!(
            d.next_after(datetime!(2027-01-14 23:59:59 UTC)),
            datetime!(2027-01-15 0:00 UTC)
        );
        assert_eq!(
            RefillPeriod::Daily.next_after(datetime!(2027-01-14 0:00 UTC)),
            datetime!(2027-01-15 0:00 UTC)
        );
        // Offsets other than UTC are judged in UTC.
        assert_eq!(
            RefillPeriod::Daily.period_start(datetime!(2027-01-15 1:00 +02:00)),
            datetime!(2027-01-14 0:00 UTC)
        );
    }

    #[test]
    fn spending_refills_then_spends_never_below_zero() {
        let day1 = datetime!(2027-01-01 10:00 UTC);
        let credits = Credits {
            remaining: 2,
            refill: Some(Refill::daily(5).unwrap()),
            refilled_at: Some(day1),
        };
        let (spent, next) = credits.spend(2, day1);
        assert_eq!(spent, CreditSpend::Spent { remaining: 0 });
        let next = next.unwrap();
        assert_eq!(
            next.spend(1, day1).0,
            CreditSpend::Exhausted { remaining: 0 }
        );
        assert!(next.spend(1, day1).1.is_none(), "nothing to store");
        // The next day: refilled to 5, then spent.
        let (spent, after) = next.spend(3, datetime!(2027-01-02 0:00 UTC));
        assert_eq!(spent, CreditSpend::Spent { remaining: 2 });
        assert_eq!(
            after.unwrap().refilled_at,
            Some(datetime!(2027-01-02 0:00 UTC))
        );
        // A cost above the refill: refilled, but refused.
        let (spent, after) = next.spend(6, datetime!(2027-01-02 0:00 UTC));
        assert_eq!(spent, CreditSpend::Exhausted { remaining: 5 });
        assert_eq!(after.unwrap().remaining, 5);
        // Zero cost changes nothing.
        assert_eq!(
            credits.spend(0, day1),
            (CreditSpend::Spent { remaining: 2 }, None)
        );
    }

    #[test]
    fn uses_fold_newest_first_and_bounded() {
        let now = datetime!(2027-01-01 0:00 UTC);
        let mut record = crate::KeyRecord::new(
            KeyId::generate(),
            crate::TenantId::parse("t").unwrap(),
            "pk",
            crate::TokenHasher::sha256().hash("x"),
            now,
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut first = KeyUse::new(record.id.clone(), now + Duration::SECOND);
        first.ips = vec![ip("10.0.0.1"), ip("10.0.0.2")];
        first.user_agent = Some("a/1".into());
        first.apply(&mut record);
        assert_eq!(record.recent_ips, [ip("10.0.0.1"), ip("10.0.0.2")]);
        let mut newer = KeyUse::new(record.id.clone(), now + Duration::MINUTE);
        newer.ips = vec![
            ip("10.0.0.3"),
            ip("10.0.0.2"),
            ip("10.0.0.4"),
            ip("10.0.0.5"),
        ];
        newer.apply(&mut record);
        assert_eq!(
            record.recent_ips,
            [
                ip("10.0.0.3"),
                ip("10.0.0.2"),
                ip("10.0.0.4"),
                ip("10.0.0.5"),
                ip("10.0.0.1")
            ]
        );
        assert_eq!(
            record.last_user_agent.as_deref(),
            Some("a/1"),
            "kept without a newer one"
        );
        // An older batch landing late goes after, and leaves the agent.
        let mut late = KeyUse::new(record.id.clone(), now);
        late.ips = vec![ip("10.0.0.9")];
        late.user_agent = Some("old/0".into());
        late.apply(&mut record);
        assert_eq!(record.recent_ips.len(), RECENT_IPS);
        assert!(!record.recent_ips.contains(&ip("10.0.0.9")));
        assert_eq!(record.last_user_agent.as_deref(), Some("a/1"));
        assert_eq!(record.last_used_at, Some(now + Duration::MINUTE));
    }

    #[test]
    fn credits_set_through_fields_are_checked() {
        let mut credits = Credits::new(1).unwrap();
        assert_eq!(credits.check(), Ok(()));
        credits.remaining = MAX_CREDITS + 1;
        assert_eq!(credits.check(), Err(UsageError::CreditsRange));
        credits.remaining = MAX_CREDITS;
        assert_eq!(credits.check(), Ok(()));
        let mut refill = Refill::daily(MAX_CREDITS).unwrap();
        credits.refill = Some(refill);
        assert_eq!(credits.check(), Ok(()));
        refill.amount = 0;
        credits.refill = Some(refill);
        assert_eq!(credits.check(), Err(UsageError::CreditsRange));
        refill.amount = MAX_CREDITS + 1;
        credits.refill = Some(refill);
        assert_eq!(credits.check(), Err(UsageError::CreditsRange));
        for (day, ok) in [(0, false), (1, true), (31, true), (32, false)] {
            let refill = Refill {
                amount: 1,
                period: RefillPeriod::Monthly { day },
            };
            credits.refill = Some(refill);
            assert_eq!(credits.check().is_ok(), ok, "day {day}");
        }
    }

    #[test]
    fn user_agents_are_cleaned_and_cut() {
        assert_eq!(clean_user_agent("a\tb\u{0}c\u{85}"), "abc");
        assert_eq!(
            clean_user_agent("a\u{202e}b\u{200b}c\u{2028}d\u{a0}e f"),
            "abcde f"
        );
        let long = "é".repeat(200);
        let cut = clean_user_agent(&long);
        assert!(cut.len() <= MAX_USER_AGENT_LEN && cut.len() >= MAX_USER_AGENT_LEN - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
