//! What the lifecycle queries of [`KeyStore`](super::KeyStore) are asked:
//! keys expiring in a window or unused since an instant
//! ([`LifecycleQuery`]), and the notices that make each lifecycle event go
//! out once ([`NoticeClaim`], [`NoticeState`]).

use std::sync::Arc;

use time::OffsetDateTime;

use crate::key::{KeyId, KeyRecord, KeyState, TenantId};

/// Which keys a [`LifecycleQuery`] finds.
///
/// ```
/// use keyward::store::Condition;
/// use time::{Duration, OffsetDateTime};
///
/// let now = OffsetDateTime::now_utc();
/// // Keys that expire within the next 7 days.
/// let soon = Condition::Expiring { from: Some(now), until: now + Duration::days(7) };
/// // Keys nobody has used for 90 days.
/// let stale = Condition::UnusedSince(now - Duration::days(90));
/// assert_ne!(soon, stale);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// Keys without a revocation (none scheduled either: a key in a
    /// rotation's grace has been replaced) whose `expires_at` lies after
    /// `from` (any past instant when `None`) and at or before `until`. With
    /// `until` at or before `now`, the keys that have expired. Ordered by
    /// `expires_at`.
    Expiring {
        /// Exclusive lower bound; `None` for none.
        from: Option<OffsetDateTime>,
        /// Inclusive upper bound.
        until: OffsetDateTime,
    },
    /// Keys without a revocation (none scheduled either) and not expired at
    /// the query's `now` whose last use, or creation when never used, lies
    /// strictly before this instant. Ordered by that instant.
    UnusedSince(OffsetDateTime),
}

/// One page of the keys that meet a [`Condition`], across tenants or within
/// one, as [`KeyStore::find_keys`](super::KeyStore::find_keys) is asked for
/// it. Made by the keyring's sweeper or by a host; a store reads it.
///
/// The order is ascending by the condition's instant
/// ([`position`](Self::position)), then by id byte by byte (in SQL: `COLLATE "C"`);
/// [`after`](Self::after) is the position of the last record of the
/// previous page.
///
/// With [`unnoticed`](Self::unnoticed) set, keys whose notice of that name
/// [blocks](NoticeState::blocks) are left out, so a sweeper that stops at a
/// page's end finds the keys it has not yet announced on its next tick.
///
/// ```
/// use keyward::store::{Condition, LifecycleQuery};
/// use time::{Duration, OffsetDateTime};
///
/// let now = OffsetDateTime::now_utc();
/// let query = LifecycleQuery::new(Condition::UnusedSince(now - Duration::days(90)), now, 100)
///     .unnoticed("stale");
/// assert_eq!(query.limit, 100);
/// assert_eq!(query.unnoticed.as_deref(), Some("stale"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LifecycleQuery {
    /// Which keys.
    pub condition: Condition,
    /// Only this tenant's keys; every tenant's when `None`.
    pub tenant: Option<TenantId>,
    /// The instant states and leases are judged at.
    pub now: OffsetDateTime,
    /// Leave out keys whose notice of this name blocks (see
    /// [`NoticeState::blocks`]).
    pub unnoticed: Option<String>,
    /// Only records after this `(instant, id)` position.
    pub after: Option<(OffsetDateTime, KeyId)>,
    /// At most this many records.
    pub limit: usize,
}

impl LifecycleQuery {
    /// The first page, of at most `limit` records, of every tenant's keys
    /// that meet `condition` at `now`.
    #[must_use]
    pub fn new(condition: Condition, now: OffsetDateTime, limit: usize) -> Self {
        LifecycleQuery {
            condition,
            tenant: None,
            now,
            unnoticed: None,
            after: None,
            limit,
        }
    }

    /// Only this tenant's keys.
    #[must_use]
    pub fn tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Leave out keys whose notice of this name blocks.
    #[must_use]
    pub fn unnoticed(mut self, notice: &str) -> Self {
        self.unnoticed = Some(notice.to_owned());
        self
    }

    /// Only records after this position (the last of the previous page).
    #[must_use]
    pub fn after(mut self, instant: OffsetDateTime, id: KeyId) -> Self {
        self.after = Some((instant, id));
        self
    }

    /// The instant a record is ordered by: its expiry for
    /// [`Condition::Expiring`], its last use (or creation) for
    /// [`Condition::UnusedSince`]. `None` for a record without an expiry
    /// under `Expiring` (it never matches).
    #[must_use]
    pub fn position(&self, record: &KeyRecord) -> Option<OffsetDateTime> {
        match self.condition {
            Condition::Expiring { .. } => record.expires_at,
            Condition::UnusedSince(_) => Some(record.last_used_at.unwrap_or(record.created_at)),
        }
    }

    /// Whether a record meets the condition, the tenant and the position
    /// (notices and the limit aside).
    #[must_use]
    pub fn matches(&self, record: &KeyRecord) -> bool {
        let Some(at) = self.position(record) else {
            return false;
        };
        let meets = match self.condition {
            Condition::Expiring { from, until } => from.is_none_or(|from| at > from) && at <= until,
            Condition::UnusedSince(since) => {
                record.state(self.now) == KeyState::Active && at < since
            }
        };
        record.revoked_at.is_none()
            && meets
            && self.tenant.as_ref().is_none_or(|t| record.tenant == *t)
            && self
                .after
                .as_ref()
                .is_none_or(|(after, id)| (at, record.id.as_str()) > (*after, id.as_str()))
    }

    /// The instant after which a delivered notice no longer blocks this
    /// record (see [`NoticeState::blocks`]): its last use (or creation) for
    /// [`Condition::UnusedSince`], so a key used again and left unused
    /// again is announced again; `None` otherwise (once for good).
    #[must_use]
    pub fn renew_after(&self, record: &KeyRecord) -> Option<OffsetDateTime> {
        match self.condition {
            Condition::UnusedSince(_) => self.position(record),
            Condition::Expiring { .. } => None,
        }
    }

    /// Sorts records by position ascending, then id byte by byte.
    pub fn sort(&self, records: &mut [Arc<KeyRecord>]) {
        records.sort_unstable_by(|a, b| {
            (self.position(a), a.id.as_str()).cmp(&(self.position(b), b.id.as_str()))
        });
    }
}

/// What a store keeps of one notice (a key id and a notice name, such as
/// `expiring:604800`): whether it went out, or who is sending it until when.
///
/// ```
/// use keyward::store::NoticeState;
/// use time::{Duration, OffsetDateTime};
///
/// let now = OffsetDateTime::now_utc();
/// let sending = NoticeState::claimed(now + Duration::minutes(5));
/// assert!(sending.blocks(now, None), "someone is sending it");
/// assert!(!sending.blocks(now + Duration::minutes(5), None), "the lease ran out");
/// let sent = NoticeState::delivered(now);
/// assert!(sent.blocks(now + Duration::days(999), None));
/// // Sent before the key's last use: announce the new episode.
/// assert!(!sent.blocks(now, Some(now + Duration::days(1))));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NoticeState {
    /// When it went out; `None` while it is being sent.
    pub delivered_at: Option<OffsetDateTime>,
    /// Until when the claimant may send it (another sweeper waits); `None`
    /// once delivered.
    pub lease_until: Option<OffsetDateTime>,
}

impl NoticeState {
    /// Claimed, being sent until `lease_until`.
    #[must_use]
    pub fn claimed(lease_until: OffsetDateTime) -> Self {
        NoticeState {
            delivered_at: None,
            lease_until: Some(lease_until),
        }
    }

    /// Delivered at `at`.
    #[must_use]
    pub fn delivered(at: OffsetDateTime) -> Self {
        NoticeState {
            delivered_at: Some(at),
            lease_until: None,
        }
    }

    /// Whether this notice keeps its key out of a query and refuses a
    /// claim at `now`: it was delivered (at or after `renew_after`, when
    /// given), or a claimant's lease runs past `now`.
    #[must_use]
    pub fn blocks(&self, now: OffsetDateTime, renew_after: Option<OffsetDateTime>) -> bool {
        match self.delivered_at {
            Some(at) => renew_after.is_none_or(|renew| at >= renew),
            None => self.lease_until.is_some_and(|until| until > now),
        }
    }
}

/// A request to send one notice, as
/// [`KeyStore::claim_notice`](super::KeyStore::claim_notice) is asked: the
/// store grants it (and records [`NoticeState::claimed`]) unless the
/// notice's current state [blocks](NoticeState::blocks) at `now`, in one
/// atomic step, so two sweepers never both hold one notice.
///
/// ```
/// use keyward::store::NoticeClaim;
/// use keyward::KeyId;
/// use time::{Duration, OffsetDateTime};
///
/// let now = OffsetDateTime::now_utc();
/// let claim = NoticeClaim::new(KeyId::parse("key_1").unwrap(), "expired", now, now + Duration::minutes(5));
/// assert_eq!(claim.notice, "expired");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NoticeClaim {
    /// The key the notice is about.
    pub key: KeyId,
    /// The notice's name.
    pub notice: String,
    /// The claimant's instant.
    pub now: OffsetDateTime,
    /// Until when the claimant may send it; after that, another may.
    pub lease_until: OffsetDateTime,
    /// A delivery before this instant no longer blocks (see
    /// [`NoticeState::blocks`]).
    pub renew_after: Option<OffsetDateTime>,
}

impl NoticeClaim {
    /// A claim of notice `notice` about key `key` at `now`, leased until
    /// `lease_until`, that a delivery blocks for good.
    #[must_use]
    pub fn new(key: KeyId, notice: &str, now: OffsetDateTime, lease_until: OffsetDateTime) -> Self {
        NoticeClaim {
            key,
            notice: notice.to_owned(),
            now,
            lease_until,
            renew_after: None,
        }
    }

    /// A delivery before `at` no longer blocks this claim.
    #[must_use]
    pub fn renew_after(mut self, at: Option<OffsetDateTime>) -> Self {
        self.renew_after = at;
        self
    }

    /// Whether the claim is granted over a notice in `current` state (none
    /// yet: granted).
    #[must_use]
    pub fn granted_over(&self, current: Option<&NoticeState>) -> bool {
        current.is_none_or(|state| !state.blocks(self.now, self.renew_after))
    }
}

/// How a claimed notice ended, as
/// [`KeyStore::settle_notice`](super::KeyStore::settle_notice) is told.
///
/// ```
/// use keyward::store::NoticeOutcome;
///
/// let at = time::OffsetDateTime::UNIX_EPOCH;
/// assert_ne!(NoticeOutcome::Delivered(at), NoticeOutcome::Released(at));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoticeOutcome {
    /// Sent at this instant: the notice becomes
    /// [`NoticeState::delivered`].
    Delivered(OffsetDateTime),
    /// Not sent (the sink failed): the claim leased until this instant
    /// (the claimant's [`NoticeClaim::lease_until`]) is dropped, so the next
    /// sweep tries again. A claim that is no longer the claimant's (its
    /// lease lapsed and another sweeper claimed it, or it was delivered)
    /// stays.
    Released(OffsetDateTime),
}
