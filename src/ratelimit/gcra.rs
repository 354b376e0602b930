//! The generic cell rate algorithm (GCRA), as pure integer arithmetic.
//!
//! A key's whole state is one number, its *theoretical arrival time* (TAT),
//! in nanoseconds since the Unix epoch. With the emission interval
//! `T = ⌈period / count⌉` and the window `L = count · T` (burst tolerance
//! `τ = L − T = T · (count − 1)`), a request at `now` is admitted when
//!
//! ```text
//! tat' = max(tat, now) + T        and        tat' − now ≤ L
//! ```
//!
//! and then `tat'` is stored; a denied request leaves the TAT as it was. A
//! key that is not tracked behaves as `tat = now`, so a TAT at or before
//! `now` carries no information and can be forgotten (that is how the memory
//! limiter stays bounded). `T` is rounded *up* to whole nanoseconds, so the
//! rate never exceeds the quota; the error is under a nanosecond a request.

use std::num::NonZeroU32;
use std::time::Duration;

use time::OffsetDateTime;

use super::RateDecision;
use crate::key::RateLimit;

/// The SQL for a shared PostgreSQL limiter: one statement per check, with the
/// same arithmetic as [`Quota::step`] run on the database clock.
///
/// Parameters: `$1` the limit key (`text`), `$2` the emission interval `T`
/// and `$3` the window `L = count · T`, both in nanoseconds (`bigint`, see
/// [`Quota::emission_interval`] and [`Quota::window`]). It returns one row
/// `(allowed boolean, tat_ns bigint, now_ns bigint)` to hand to
/// [`Quota::decision`], or no row in one rare race (see the file's comments),
/// which a caller treats as a denial. The table it needs is in the same file.
#[cfg(feature = "postgres")]
pub const PG_GCRA_SQL: &str = include_str!("pg_gcra.sql");

/// A rate limit: `count` requests per `period`, in a burst of up to `count`.
///
/// A fresh key admits exactly `count` requests back to back, then one more
/// every emission interval `period / count` (rounded up to a nanosecond).
///
/// ```
/// use keyward::ratelimit::Quota;
/// use std::time::Duration;
///
/// let quota = Quota::per_minute(100).unwrap();
/// assert_eq!(quota.count(), 100);
/// assert_eq!(quota.emission_interval(), Duration::from_millis(600));
/// assert_eq!(quota.burst_tolerance(), Duration::from_millis(600 * 99));
/// assert_eq!(Quota::new(7, Duration::from_secs(1)).unwrap().emission_interval(),
///            Duration::from_nanos(142_857_143));
/// assert!(Quota::per_minute(0).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    count: NonZeroU32,
    period: Duration,
    /// `T` in nanoseconds, at least 1.
    interval: i64,
}

impl Quota {
    /// The longest period a quota may have: 366 days.
    pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 60 * 60);

    /// `count` requests per `period`; `None` when `count` is 0, or `period`
    /// is zero or longer than [`Quota::MAX_PERIOD`].
    #[must_use]
    pub const fn new(count: u32, period: Duration) -> Option<Self> {
        // `const`: no `?`, `From` or `Ord` on `Duration` here.
        let Some(count) = NonZeroU32::new(count) else {
            return None;
        };
        if period.is_zero() || period.as_nanos() > Self::MAX_PERIOD.as_nanos() {
            return None;
        }
        // Fits: MAX_PERIOD is about 3.2e16 ns.
        let period_ns = period.as_nanos() as i64;
        let n = count.get() as i64;
        let interval = period_ns.div_euclid(n) + (period_ns.rem_euclid(n) != 0) as i64;
        Some(Quota {
            count,
            period,
            interval,
        })
    }

    /// `n` requests a second; `None` for 0.
    #[must_use]
    pub const fn per_second(n: u32) -> Option<Self> {
        Self::new(n, Duration::from_secs(1))
    }

    /// `n` requests a minute; `None` for 0.
    #[must_use]
    pub const fn per_minute(n: u32) -> Option<Self> {
        Self::new(n, Duration::from_secs(60))
    }

    /// `n` requests an hour; `None` for 0.
    #[must_use]
    pub const fn per_hour(n: u32) -> Option<Self> {
        Self::new(n, Duration::from_secs(60 * 60))
    }

    /// The quota of a key's [`RateLimit`]; `None` when it is unlimited.
    ///
    /// ```
    /// use keyward::{ratelimit::Quota, RateLimit};
    ///
    /// assert_eq!(Quota::from_rate_limit(RateLimit::default()), Quota::per_minute(100));
    /// assert_eq!(Quota::from_rate_limit(RateLimit::Unlimited), None);
    /// ```
    pub fn from_rate_limit(limit: RateLimit) -> Option<Self> {
        limit.requests_per_minute().and_then(Self::per_minute)
    }

    /// How many requests the quota admits in a burst, and per period.
    #[must_use]
    pub const fn count(&self) -> u32 {
        self.count.get()
    }

    /// The period the count applies to.
    #[must_use]
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// `T`: the steady-state spacing of requests, `period / count` rounded up
    /// to a nanosecond.
    #[must_use]
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval as u64)
    }

    /// `τ = T · (count − 1)`: how far ahead of `now` a key's TAT may already
    /// be for a request to be admitted.
    #[must_use]
    pub fn burst_tolerance(&self) -> Duration {
        Duration::from_nanos((self.window_ns() - self.interval) as u64)
    }

    /// `L = count · T`: how far ahead of `now` a TAT may be after an admitted
    /// request; also the time a key takes to refill from empty.
    #[must_use]
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_ns() as u64)
    }

    /// `count · T`: at most about 3.2e16 + 4.3e9, no overflow.
    fn window_ns(&self) -> i64 {
        i64::from(self.count.get()) * self.interval
    }

    /// The TAT after charging one more unit at `now` even when the budget
    /// is spent (a denied [`step`](Self::step) would move nothing), at most
    /// `now + cap`: charges that arrive together each push the TAT, so a
    /// burst buys a proportional wait. Nanoseconds.
    #[cfg(feature = "http")]
    pub(crate) fn charge_nanos(&self, tat: Option<i64>, now: i64, cap: i64) -> i64 {
        let base = tat.map_or(now, |tat| tat.max(now));
        base.saturating_add(self.interval)
            .min(now.saturating_add(cap.max(self.window_ns())))
    }

    /// One GCRA step: the decision for a request at `now` on a key whose
    /// stored theoretical arrival time is `tat` (`None` when not tracked),
    /// and the TAT to store afterwards (unchanged when denied). TATs are
    /// nanoseconds since the Unix epoch; store them as they are. For a host
    /// writing its own [`RateLimiter`](super::RateLimiter) on another engine.
    ///
    /// ```
    /// use keyward::ratelimit::Quota;
    /// use std::time::Duration;
    /// use time::OffsetDateTime;
    ///
    /// let quota = Quota::per_minute(2).unwrap();
    /// let now = OffsetDateTime::UNIX_EPOCH;
    /// let (first, tat) = quota.step(None, now);
    /// assert!(first.allowed && first.remaining == 1);
    /// let (second, tat) = quota.step(Some(tat), now);
    /// assert!(second.allowed && second.remaining == 0);
    /// let (third, _) = quota.step(Some(tat), now);
    /// assert!(!third.allowed);
    /// assert_eq!(third.retry_after, Some(Duration::from_secs(30)));
    /// ```
    pub fn step(&self, tat: Option<i64>, now: OffsetDateTime) -> (RateDecision, i64) {
        self.step_nanos(tat, unix_nanos(now))
    }

    /// [`step`](Self::step) at `now` nanoseconds since the Unix epoch.
    pub(crate) fn step_nanos(&self, tat: Option<i64>, now: i64) -> (RateDecision, i64) {
        let base = match tat {
            Some(tat) if tat > now => tat,
            _ => now,
        };
        // Past the representable range (a clock beyond 2262) nothing is
        // admitted: a saturated TAT would otherwise admit every request.
        let next = base.checked_add(self.interval);
        let allowed = next.is_some_and(|next| next.saturating_sub(now) <= self.window_ns());
        let stored = match next {
            Some(next) if allowed => next,
            _ => base,
        };
        (self.decision(allowed, stored, now), stored)
    }

    /// The full decision from the outcome of a step computed elsewhere (by
    /// the SQL of [`PG_GCRA_SQL`]): whether it was admitted, the TAT after it
    /// and `now`, in nanoseconds since the Unix epoch. With `ahead =
    /// max(tat − now, 0)`:
    ///
    /// * `remaining = ⌊(L − ahead) / T⌋`, at least 0: the requests still
    ///   admissible at `now`;
    /// * `reset = ahead`: the time until the key is back to a full burst;
    /// * `retry_after = ahead + T − L` when denied: the time until the next
    ///   request is admitted.
    pub fn decision(&self, allowed: bool, tat: i64, now: i64) -> RateDecision {
        let window = self.window_ns();
        let ahead = tat.saturating_sub(now).max(0);
        let remaining = if ahead <= window {
            ((window - ahead) / self.interval).min(i64::from(self.count.get())) as u32
        } else {
            0
        };
        let retry_after = (!allowed).then(|| {
            let wait = ahead.saturating_add(self.interval).saturating_sub(window);
            Duration::from_nanos(wait.max(0) as u64)
        });
        RateDecision {
            allowed,
            limit: self.count.get(),
            window: self.period,
            remaining,
            reset: Duration::from_nanos(ahead as u64),
            retry_after,
        }
    }
}

/// An instant as nanoseconds since the Unix epoch, the unit of a stored TAT,
/// saturating outside the years 1677–2262.
pub(crate) fn unix_nanos(at: OffsetDateTime) -> i64 {
    let nanos = crate::clock::unix_timestamp_nanos(at);
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: i64 = 1_000_000;

    /// Admits requests at `now` until one is denied; returns how many were.
    /// More than a burst at one instant is a failure (not an endless loop).
    fn drain(quota: &Quota, tat: &mut Option<i64>, now: i64) -> (u32, RateDecision) {
        let mut admitted = 0;
        loop {
            let (decision, next) = quota.step_nanos(*tat, now);
            *tat = Some(next);
            if !decision.allowed {
                return (admitted, decision);
            }
            admitted += 1;
            assert!(admitted <= quota.count(), "more than a burst at {now}");
        }
    }

    #[test]
    fn constructors_and_accessors() {
        assert_eq!(Quota::MAX_PERIOD, Duration::from_secs(31_622_400));
        let q = Quota::per_hour(7).unwrap();
        assert_eq!((q.count(), q.period()), (7, Duration::from_secs(3_600)));
        assert_eq!(q.emission_interval(), Duration::from_nanos(514_285_714_286));
        let q = Quota::per_second(4).unwrap();
        assert_eq!((q.count(), q.period()), (4, Duration::from_secs(1)));
        let q = Quota::per_minute(100).unwrap();
        assert_eq!(q.period(), Duration::from_secs(60));
        assert_eq!(q.window(), Duration::from_secs(60));
        assert_eq!(q.burst_tolerance(), Duration::from_millis(600 * 99));
        assert_eq!(
            Quota::new(3, Duration::from_nanos(10))
                .unwrap()
                .burst_tolerance(),
            Duration::from_nanos(8)
        );
        for none in [Quota::per_hour(0), Quota::per_second(0)] {
            assert_eq!(none, None);
        }
    }

    #[test]
    fn instants_outside_the_nanosecond_range_saturate_toward_their_side() {
        let far_future = OffsetDateTime::UNIX_EPOCH + time::Duration::days(365 * 300);
        let far_past = OffsetDateTime::UNIX_EPOCH - time::Duration::days(365 * 300);
        assert_eq!(unix_nanos(far_future), i64::MAX);
        assert_eq!(unix_nanos(far_past), i64::MIN);
        let before = OffsetDateTime::UNIX_EPOCH - time::Duration::nanoseconds(5);
        assert_eq!(unix_nanos(before), -5);
    }

    #[test]
    fn hundred_a_minute_admits_a_burst_of_exactly_one_hundred() {
        let quota = Quota::per_minute(100).unwrap();
        let mut tat = None;
        for i in 0..100 {
            let (decision, next) = quota.step_nanos(tat, 0);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, 99 - i);
            assert_eq!(
                decision.reset,
                Duration::from_millis(600 * u64::from(i + 1))
            );
            assert_eq!(decision.retry_after, None);
            tat = Some(next);
        }
        let (denied, after) = quota.step_nanos(tat, 0);
        assert!(!denied.allowed);
        assert_eq!(after, tat.unwrap(), "a denial does not move the TAT");
        assert_eq!(denied.remaining, 0);
        assert_eq!(denied.retry_after, Some(Duration::from_millis(600)));
        assert_eq!(denied.reset, Duration::from_secs(60));
    }

    #[test]
    fn refills_one_request_every_emission_interval() {
        let quota = Quota::per_minute(100).unwrap();
        let mut tat = None;
        assert_eq!(drain(&quota, &mut tat, 0).0, 100);
        assert!(!quota.step_nanos(tat, 600 * MS - 1).0.allowed);
        for k in 1..=5 {
            let (admitted, denied) = drain(&quota, &mut tat, k * 600 * MS);
            assert_eq!(admitted, 1);
            assert_eq!(denied.retry_after, Some(Duration::from_millis(600)));
        }
    }

    #[test]
    fn full_burst_after_idle_partial_after_partial_use() {
        let quota = Quota::per_minute(10).unwrap(); // T = 6 s
        let mut tat = None;
        assert_eq!(drain(&quota, &mut tat, 0).0, 10);
        // 30 s later: five intervals refilled.
        assert_eq!(drain(&quota, &mut tat, 30_000 * MS).0, 5);
        // A full window after the last admission: a full burst again.
        let (d, _) = quota.step_nanos(tat, 30_000 * MS);
        let full_at = 30_000 * MS + d.reset.as_nanos() as i64;
        assert_eq!(d.reset, Duration::from_secs(60));
        assert_eq!(drain(&quota, &mut tat, full_at - 1).0, 9);
        let mut tat = Some(full_at);
        assert_eq!(drain(&quota, &mut tat, full_at).0, 10);
        // Idle for an hour: still just one burst.
        assert_eq!(drain(&quota, &mut tat, full_at + 3_600_000 * MS).0, 10);
    }

    #[test]
    fn uneven_periods_round_the_interval_up() {
        let quota = Quota::new(3, Duration::from_nanos(10)).unwrap();
        assert_eq!(quota.emission_interval(), Duration::from_nanos(4));
        assert_eq!(quota.window(), Duration::from_nanos(12));
        assert!(Quota::new(1, Quota::MAX_PERIOD).is_some());
        assert!(Quota::new(1, Quota::MAX_PERIOD + Duration::from_nanos(1)).is_none());
        assert!(Quota::new(1, Duration::ZERO).is_none());
        let tiny = Quota::new(u32::MAX, Duration::from_nanos(1)).unwrap();
        assert_eq!(tiny.emission_interval(), Duration::from_nanos(1));
    }

    #[test]
    fn extreme_instants_saturate_instead_of_overflowing() {
        let quota = Quota::new(u32::MAX, Quota::MAX_PERIOD).unwrap();
        // Overflowing the clock fails closed rather than admitting.
        let (d, tat) = quota.step_nanos(None, i64::MAX - 5);
        assert!(!d.allowed);
        assert_eq!(tat, i64::MAX - 5);
        let (d, _) = quota.step_nanos(Some(i64::MAX - 5), i64::MAX - 5);
        assert!(!d.allowed);
        let (d, _) = quota.step_nanos(Some(i64::MAX), i64::MIN);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
    }

    fn quotas() -> impl Strategy<Value = Quota> {
        (1u32..50, 1u64..120_000).prop_map(|(count, ms)| {
            Quota::new(count, Duration::from_millis(ms)).expect("valid quota")
        })
    }

    proptest! {
        /// In any window [a, b] of admitted requests, at most
        /// `count + (b − a) / T` are admitted.
        #[test]
        fn never_admits_more_than_the_quota(
            quota in quotas(),
            gaps in proptest::collection::vec(0i64..2_000, 1..300),
        ) {
            let t = quota.interval;
            let mut tat = None;
            let mut now = 1_700_000_000_000 * MS;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += gap * t / 1_000;
                let (decision, next) = quota.step_nanos(tat, now);
                tat = Some(next);
                if decision.allowed {
                    admitted.push(now);
                }
            }
            for (i, a) in admitted.iter().enumerate() {
                for (j, b) in admitted.iter().enumerate().skip(i) {
                    let n = (j - i + 1) as i64;
                    prop_assert!(n <= i64::from(quota.count()) + (b - a) / t);
                }
            }
        }

        /// `retry_after`, `remaining` and `reset` are exact.
        #[test]
        fn decisions_are_exact(
            quota in quotas(),
            used in 0u32..60,
            offset in 0i64..200_000_000_000,
        ) {
            let start = 1_700_000_000_000 * MS;
            let mut tat = None;
            for _ in 0..used {
                tat = Some(quota.step_nanos(tat, start).1);
            }
            let now = start + offset % (quota.window_ns() + 1);
            let (decision, next) = quota.step_nanos(tat, now);
            if decision.allowed {
                // `remaining` more are admitted at `now`, not one more.
                let mut after = Some(next);
                let (more, _) = drain(&quota, &mut after, now);
                prop_assert_eq!(more, decision.remaining);
            } else {
                prop_assert_eq!(decision.remaining, 0);
                prop_assert_eq!(next, tat.unwrap());
                let wait = decision.retry_after.unwrap().as_nanos() as i64;
                prop_assert!(wait > 0);
                prop_assert!(quota.step_nanos(tat, now + wait).0.allowed);
                prop_assert!(!quota.step_nanos(tat, now + wait - 1).0.allowed);
            }
            // At `now + reset` the key has a full burst again, not before.
            let reset = decision.reset.as_nanos() as i64;
            let mut full = Some(next);
            prop_assert_eq!(drain(&quota, &mut full, now + reset).0, quota.count());
            if reset > 0 {
                let mut early = Some(next);
                prop_assert!(drain(&quota, &mut early, now + reset - 1).0 < quota.count());
            }
        }
    }
}
