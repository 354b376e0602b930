//! The lifecycle sweeper: finds expiring, expired and stale keys with the
//! store's lifecycle queries and announces each once through the keyring's
//! [`LifecycleSink`](crate::LifecycleSink).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;

use crate::clock::span;
use crate::error::{ConfigError, StoreError};
use crate::key::KeyRecord;
use crate::keyring::Keyring;
use crate::lifecycle::{Actor, EventKind, LifecycleEvent};
use crate::store::{Condition, LifecycleQuery, NoticeClaim, NoticeOutcome, Revocation};

/// At most this many expiring-soon thresholds.
const MAX_THRESHOLDS: usize = 8;

/// The longest threshold, lookback or `stale_after` (100 years): instants
/// stay well inside every store's range (PostgreSQL's starts at 4713 BC).
const MAX_SPAN: Duration = Duration::from_secs(100 * 366 * 86_400);

/// Finds keys that are about to expire, have expired or have gone unused,
/// and sends one [`LifecycleEvent`] per key and occasion through the
/// keyring's sink; optionally revokes unused keys, as GitHub does. Built
/// with [`Keyring::sweeper`]; the host runs [`run`](Self::run) as a task
/// (or calls [`tick`](Self::tick) from its own scheduler).
///
/// * **Expiring soon**, once per key and threshold: a key is announced for
///   the smallest threshold whose window it is in, so with thresholds of 7
///   days and 1 day a key issued with 3 days left gets the 7-day notice,
///   then the 1-day one; one with 12 hours left only the 1-day one.
/// * **Expired**, once per key, for keys that expired within the
///   [lookback](SweeperBuilder::expired_lookback) (30 days by default),
///   and were not revoked.
/// * **Stale**, once per unused spell: active keys whose last use (or
///   creation) is older than [`stale_after`](SweeperBuilder::stale_after);
///   with [`revoke_stale`](SweeperBuilder::revoke_stale), revoked instead
///   ([`EventKind::AutoRevoked`]).
///
/// **Once, across restarts and instances.** Before it sends an event a
/// sweeper claims the notice in the store
/// ([`KeyStore::claim_notice`](crate::KeyStore::claim_notice), atomic), and
/// records the delivery after; the queries leave out keys already
/// announced. Several instances against one database send each event once.
/// A failure never loses an event: an event the sink refused keeps its
/// claim until the [lease](SweeperBuilder::lease) lapses and is sent again
/// then (the keys behind it go on meanwhile), and a sweeper that dies
/// between sending and recording leaves a claim that lapses the same way,
/// after which another sends it again (at least once).
///
/// **Bounded.** A tick sends at most
/// [`max_events_per_tick`](SweeperBuilder::max_events_per_tick) events and
/// reads at most that many records per query.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use keyward::{KeyKind, Keyring, MemoryStore, ScopeCatalog};
///
/// const DAY: Duration = Duration::from_secs(86_400);
/// let keyring = Keyring::builder()
///     .store(MemoryStore::new())
///     .kind(KeyKind::new("pl", ScopeCatalog::builder().build()?)?)
///     .build()?;
/// let sweeper = keyring
///     .sweeper()
///     .expiring_within([7 * DAY, DAY])
///     .stale_after(90 * DAY)
///     .build()?;
/// let report = sweeper.tick().await?;
/// assert_eq!(report.sent(), 0);
/// // In a service: tokio::spawn(sweeper.run(Duration::from_secs(60), tokio::time::sleep));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Sweeper {
    keyring: Keyring,
    /// Ascending.
    thresholds: Vec<Duration>,
    stale_after: Option<Duration>,
    revoke_stale: bool,
    max_events: usize,
    lease: Duration,
    expired_lookback: Duration,
}

impl fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sweeper")
            .field("thresholds", &self.thresholds)
            .field("stale_after", &self.stale_after)
            .field("revoke_stale", &self.revoke_stale)
            .field("max_events", &self.max_events)
            .field("lease", &self.lease)
            .field("expired_lookback", &self.expired_lookback)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Sweeper`] (see [`Keyring::sweeper`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct SweeperBuilder {
    sweeper: Sweeper,
}

impl Keyring {
    /// A sweeper over this keyring's store and sink: no expiring-soon
    /// thresholds, no stale detection, expired keys announced; at most 100
    /// events a tick, leases of 5 minutes.
    pub fn sweeper(&self) -> SweeperBuilder {
        SweeperBuilder {
            sweeper: Sweeper {
                keyring: self.clone(),
                thresholds: Vec::new(),
                stale_after: None,
                revoke_stale: false,
                max_events: 100,
                lease: Duration::from_secs(300),
                expired_lookback: Duration::from_secs(30 * 86_400),
            },
        }
    }
}

impl SweeperBuilder {
    /// Announce keys expiring within each of these (e.g. 7 days and 1
    /// day), once per key and threshold; at most 8, each a whole number of
    /// seconds from 1 s to 100 years.
    pub fn expiring_within(mut self, thresholds: impl IntoIterator<Item = Duration>) -> Self {
        self.sweeper.thresholds = thresholds.into_iter().collect();
        self
    }

    /// Announce keys unused (since their last use, or creation) for this
    /// long.
    pub fn stale_after(mut self, unused: Duration) -> Self {
        self.sweeper.stale_after = Some(unused);
        self
    }

    /// Revoke stale keys (announced as [`EventKind::AutoRevoked`]) rather
    /// than only announce them. Needs [`stale_after`](Self::stale_after).
    pub fn revoke_stale(mut self, revoke: bool) -> Self {
        self.sweeper.revoke_stale = revoke;
        self
    }

    /// At most this many events a tick (1 to 10 000; 100 by default).
    pub fn max_events_per_tick(mut self, n: usize) -> Self {
        self.sweeper.max_events = n;
        self
    }

    /// How long a claimed notice is this sweeper's to send before another
    /// may (1 s to 1 day; 5 minutes by default). Longer than the sink ever
    /// takes for one event, or that event may go out twice. It is also the
    /// backoff of an event the sink refused: it is sent again once the
    /// lease lapses.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.sweeper.lease = lease;
        self
    }

    /// How far back expired keys are announced (30 days by default): a new
    /// deployment does not announce every key that ever expired.
    pub fn expired_lookback(mut self, lookback: Duration) -> Self {
        self.sweeper.expired_lookback = lookback;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidSweeper`] for a repeated threshold or one not
    /// a whole number of seconds above zero, more than 8 thresholds, a zero
    /// `stale_after` or `expired_lookback`, a span over 100 years, a lease
    /// outside 1 s to 1 day, `revoke_stale` without
    /// `stale_after`, an event budget outside 1 to 10 000, or a lease
    /// shorter than a second.
    pub fn build(self) -> Result<Sweeper, ConfigError> {
        let mut sweeper = self.sweeper;
        sweeper.thresholds.sort_unstable();
        let invalid = ConfigError::InvalidSweeper;
        if sweeper.thresholds.len() > MAX_THRESHOLDS {
            return Err(invalid("at most 8 expiring thresholds"));
        }
        let whole = |d: &Duration| d.subsec_nanos() == 0 && d.as_secs() > 0;
        if !sweeper.thresholds.iter().all(whole)
            || sweeper.thresholds.windows(2).any(|w| w[0] == w[1])
        {
            return Err(invalid(
                "expiring thresholds must be distinct whole numbers of seconds, above zero",
            ));
        }
        if sweeper.stale_after.is_some_and(|d| d.is_zero()) {
            return Err(invalid("stale_after must be above zero"));
        }
        if sweeper.stale_after.is_some_and(|d| d > MAX_SPAN)
            || sweeper.expired_lookback > MAX_SPAN
            || sweeper.thresholds.last().is_some_and(|d| *d > MAX_SPAN)
        {
            return Err(invalid("spans are at most 100 years"));
        }
        if sweeper.revoke_stale && sweeper.stale_after.is_none() {
            return Err(invalid("revoke_stale needs stale_after"));
        }
        if !(1..=10_000).contains(&sweeper.max_events) {
            return Err(invalid("max_events_per_tick must be 1-10000"));
        }
        if sweeper.lease < Duration::from_secs(1) || sweeper.lease > Duration::from_secs(86_400) {
            return Err(invalid("the lease must be 1 s to 1 day"));
        }
        if sweeper.expired_lookback < Duration::from_secs(1) {
            return Err(invalid("expired_lookback must be at least a second"));
        }
        Ok(sweeper)
    }
}

/// What one [`Sweeper::tick`] sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Expiring-soon events.
    pub expiring: usize,
    /// Expired events.
    pub expired: usize,
    /// Stale events.
    pub stale: usize,
    /// Stale keys revoked.
    pub auto_revoked: usize,
    /// Events the sink refused (sent again once their lease lapses).
    pub sink_failures: usize,
    /// Whether the event budget ran out (more may be due).
    pub budget_spent: bool,
}

impl SweepReport {
    /// Events sent.
    #[must_use]
    pub fn sent(&self) -> usize {
        self.expiring + self.expired + self.stale + self.auto_revoked
    }
}

/// One pass of the sweeper: a query and the notice its keys get.
struct Pass {
    condition: Condition,
    notice: String,
    /// The threshold of an expiring-soon pass.
    threshold: Option<Duration>,
}

impl Sweeper {
    /// The passes of a tick at `now`: expired, each expiring window
    /// (smallest first), stale.
    fn passes(&self, now: OffsetDateTime) -> Vec<Pass> {
        let mut passes = vec![Pass {
            condition: Condition::Expiring {
                from: Some(now.saturating_sub(span(self.expired_lookback))),
                until: now,
            },
            notice: "expired".to_owned(),
            threshold: None,
        }];
        let mut from = now;
        for &threshold in &self.thresholds {
            let until = now.saturating_add(span(threshold));
            passes.push(Pass {
                condition: Condition::Expiring {
                    from: Some(from),
                    until,
                },
                notice: format!("expiring:{}", threshold.as_secs()),
                threshold: Some(threshold),
            });
            from = until;
        }
        if let Some(unused) = self.stale_after {
            passes.push(Pass {
                condition: Condition::UnusedSince(now.saturating_sub(span(unused))),
                notice: "stale".to_owned(),
                threshold: None,
            });
        }
        passes
    }

    /// Sends what is due now, within the event budget.
    ///
    /// # Errors
    ///
    /// The store's error when a query, a claim or a revocation fails: what
    /// was sent stays sent, what was not is sent on a later tick (a claim
    /// this tick could not settle lapses after the lease).
    pub async fn tick(&self) -> Result<SweepReport, StoreError> {
        let now = self.keyring.now();
        let store = self.keyring.store();
        let mut report = SweepReport::default();
        let mut budget = self.max_events;
        for pass in self.passes(now) {
            if budget == 0 {
                break;
            }
            let query = LifecycleQuery::new(pass.condition, now, budget).unnoticed(&pass.notice);
            let records = store.find_keys(&query).await?;
            for record in records {
                // A store must answer what it was asked; check rather than trust.
                if !query.matches(&record) {
                    continue;
                }
                // The lease runs from the claim, not from the tick's start:
                // a long tick must not hand out claims already lapsed.
                let claimed_at = self.keyring.now();
                let lease_until = claimed_at.saturating_add(span(self.lease));
                let claim =
                    NoticeClaim::new(record.id.clone(), &pass.notice, claimed_at, lease_until)
                        .renew_after(query.renew_after(&record));
                if !store.claim_notice(&claim).await? {
                    continue; // another sweeper has it, or had it
                }
                budget -= 1;
                match self.send(&pass, &query, &record, now).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // Refused: the claim stays until its lease lapses,
                        // then the event is sent again (a backoff of one
                        // lease); meanwhile the keys behind it go on.
                        report.sink_failures += 1;
                        if budget == 0 {
                            break;
                        }
                        continue;
                    }
                    Err(err) => {
                        // Best effort: otherwise the claim lapses.
                        let released = NoticeOutcome::Released(lease_until);
                        let _ = store
                            .settle_notice(&record.id, &pass.notice, released)
                            .await;
                        return Err(err);
                    }
                }
                let delivered = NoticeOutcome::Delivered(self.keyring.now());
                store
                    .settle_notice(&record.id, &pass.notice, delivered)
                    .await?;
                match pass.condition {
                    Condition::UnusedSince(_) if self.revoke_stale => report.auto_revoked += 1,
                    Condition::UnusedSince(_) => report.stale += 1,
                    _ if pass.threshold.is_some() => report.expiring += 1,
                    _ => report.expired += 1,
                }
                if budget == 0 {
                    break;
                }
            }
        }
        report.budget_spent = budget == 0;
        Ok(report)
    }

    /// Sends one event (and revokes a stale key when configured, after the
    /// event went out: a failed revocation sends it again next tick rather
    /// than lose it). `Ok(false)` when the sink failed.
    async fn send(
        &self,
        pass: &Pass,
        query: &LifecycleQuery,
        record: &KeyRecord,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let unused_since = query.position(record).unwrap_or(record.created_at);
        let kind = match (pass.condition, pass.threshold) {
            (Condition::UnusedSince(_), _) if self.revoke_stale => {
                EventKind::AutoRevoked { unused_since }
            }
            (Condition::UnusedSince(_), _) => EventKind::Stale { unused_since },
            (_, Some(threshold)) => EventKind::ExpiringSoon {
                expires_at: record.expires_at.unwrap_or(now),
                threshold,
            },
            _ => EventKind::Expired {
                expires_at: record.expires_at.unwrap_or(now),
            },
        };
        let revoke = matches!(kind, EventKind::AutoRevoked { .. });
        let event = LifecycleEvent::about(record, kind, Some(&Actor::System("sweeper")), now);
        if let Err(err) = self.keyring.sink().deliver(&event).await {
            tracing::warn!(target: "keyward::audit", error = &err as &dyn std::error::Error, event = event.kind.name(), key_id = %record.id, "lifecycle sink failed; retrying once the lease lapses");
            return Ok(false);
        }
        if revoke {
            self.keyring
                .store()
                .revoke(&record.id, Revocation::Now)
                .await?;
        }
        Ok(true)
    }

    /// Ticks every `interval` on the host's timer, forever (spawn it:
    /// `tokio::spawn(sweeper.run(interval, tokio::time::sleep))`). Errors
    /// are logged at target `keyward::sweeper` and retried next tick.
    pub async fn run<F>(self, interval: Duration, sleep: impl Fn(Duration) -> F)
    where
        F: Future<Output = ()>,
    {
        loop {
            match self.tick().await {
                Ok(report) => tracing::debug!(target: "keyward::sweeper", ?report, "sweep"),
                Err(err) => {
                    tracing::warn!(target: "keyward::sweeper", error = &err as &dyn std::error::Error, "sweep failed; retrying next tick");
                }
            }
            sleep(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_every_event_it_sent() {
        let report = SweepReport {
            expiring: 1,
            expired: 20,
            stale: 300,
            auto_revoked: 4_000,
            sink_failures: 50_000,
            budget_spent: false,
        };
        assert_eq!(report.sent(), 4_321, "sink failures are not sent");
    }

    #[test]
    fn debug_shows_the_settings() {
        let keyring = Keyring::builder()
            .store(crate::MemoryStore::new())
            .kind(
                crate::KeyKind::new("pk", crate::ScopeCatalog::builder().build().unwrap()).unwrap(),
            )
            .build()
            .unwrap();
        let sweeper = keyring
            .sweeper()
            .expiring_within([Duration::from_secs(86_400)])
            .build()
            .unwrap();
        let shown = format!("{sweeper:?}");
        assert!(shown.starts_with("Sweeper {"), "{shown}");
        assert!(shown.contains("thresholds: [86400s]"), "{shown}");
    }
}
