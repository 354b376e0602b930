//! Time, injectable so tests never sleep.

use std::cell::Cell;
use std::fmt;
#[cfg(any(test, feature = "test-util"))]
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use time::OffsetDateTime;

/// A source of the current UTC instant: [`SystemClock`] by default; tests
/// use `ManualClock` (feature `test-util`).
///
/// ```
/// use keyward::Clock;
/// use time::OffsetDateTime;
///
/// /// A clock a minute ahead of the system's.
/// #[derive(Debug)]
/// struct Ahead;
///
/// impl Clock for Ahead {
///     fn now(&self) -> OffsetDateTime {
///         OffsetDateTime::now_utc() + time::Duration::MINUTE
///     }
/// }
/// assert!(Ahead.now() > OffsetDateTime::now_utc());
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant, UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::exhaustive_structs)] // a unit struct users name; it holds nothing
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> OffsetDateTime {
        utc(SystemTime::now())
    }
}

thread_local! {
    /// The last whole second since the epoch this thread converted, and
    /// that second as an instant: the calendar is worked out once a second
    /// per thread, not on every call.
    static SECOND: Cell<(u64, OffsetDateTime)> =
        const { Cell::new((0, OffsetDateTime::UNIX_EPOCH)) };
}

/// `OffsetDateTime::from(at)`, at a third of its cost within a second
/// already converted (on the hot path, every request reads the clock).
fn utc(at: SystemTime) -> OffsetDateTime {
    let Ok(since) = at.duration_since(SystemTime::UNIX_EPOCH) else {
        return OffsetDateTime::from(at);
    };
    let secs = since.as_secs();
    let whole = SECOND.with(|second| {
        let (cached, whole) = second.get();
        if cached == secs {
            return Some(whole);
        }
        let whole = OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()?;
        second.set((secs, whole));
        Some(whole)
    });
    whole
        .and_then(|whole| whole.replace_nanosecond(since.subsec_nanos()).ok())
        .unwrap_or_else(|| OffsetDateTime::from(at))
}

/// `at.unix_timestamp_nanos()`, at about two thirds of its cost for an
/// instant in the second this thread's [`SystemClock`] last read (6 ns a
/// call here, 4 through the cache): the rate limiters
/// turn the instant the layer just read into nanoseconds on every request.
pub(crate) fn unix_timestamp_nanos(at: OffsetDateTime) -> i128 {
    let (secs, whole) = SECOND.with(Cell::get);
    let same_second = at.offset().is_utc()
        && at.date() == whole.date()
        && at.time().as_hms() == whole.time().as_hms();
    if same_second {
        // `whole` is `secs` seconds after the epoch (see `utc`).
        i128::from(secs) * 1_000_000_000 + i128::from(at.nanosecond())
    } else {
        at.unix_timestamp_nanos()
    }
}

/// `a <= b`. Instants at UTC (the clock's and the stores') compare by
/// calendar date and time of day, at a third of the cost of `time`'s
/// comparison, which works out both offsets first.
pub(crate) fn at_or_before(a: OffsetDateTime, b: OffsetDateTime) -> bool {
    if a.offset().is_utc() && b.offset().is_utc() {
        (a.date(), a.time()) <= (b.date(), b.time())
    } else {
        a <= b
    }
}

/// A clock that moves only when told: for tests (feature `test-util`).
/// Clones share the instant.
///
/// ```
/// use keyward::{Clock, ManualClock};
///
/// let clock = ManualClock::new(time::OffsetDateTime::UNIX_EPOCH);
/// clock.advance(std::time::Duration::from_secs(5));
/// assert_eq!(clock.now().unix_timestamp(), 5);
/// ```
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

#[cfg(any(test, feature = "test-util"))]
impl ManualClock {
    /// A clock stopped at `start`.
    #[must_use]
    pub fn new(start: OffsetDateTime) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward (saturating at the end of time).
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.saturating_add(span(by));
    }

    /// Moves the clock back (a host whose clock lags, a clock step).
    pub fn rewind(&self, by: std::time::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.saturating_sub(span(by));
    }

    /// Sets the clock.
    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A span of the public API (`std::time::Duration`) as a `time::Duration`
/// for arithmetic on instants, saturating past `time::Duration::MAX`.
pub(crate) fn span(d: std::time::Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use time::OffsetDateTime;

    use super::{at_or_before, unix_timestamp_nanos, utc, Clock, SystemClock};
    use time::macros::{datetime, offset};

    /// The per-second cache answers exactly what `time` does: within one
    /// second, across seconds, and in either order.
    #[test]
    fn system_instants_convert_as_time_converts_them() {
        let epoch = SystemTime::UNIX_EPOCH;
        let now = SystemTime::now();
        let instants = [
            epoch,
            epoch + Duration::from_nanos(1),
            epoch + Duration::from_millis(1500),
            now,
            now + Duration::from_nanos(300_000_001),
            now + Duration::from_secs(1),
            now,
            now - Duration::from_secs(86_400 * 366),
            epoch - Duration::from_millis(1500),
            epoch + Duration::from_secs(253_402_300_799), // 9999-12-31T23:59:59
            epoch + Duration::from_secs(253_402_300_799) + Duration::from_nanos(999_999_999),
            epoch,
        ];
        for at in instants {
            assert_eq!(utc(at), OffsetDateTime::from(at), "{at:?}");
        }
        // Each thread keeps its own second.
        std::thread::spawn(move || assert_eq!(utc(now), OffsetDateTime::from(now)))
            .join()
            .unwrap();
    }

    /// Within the cached second and outside it, before the epoch, at other
    /// offsets: what `time` answers.
    #[test]
    fn nanoseconds_since_the_epoch_are_what_time_says() {
        let read = SystemClock.now(); // caches this thread's second
        let second = read.replace_nanosecond(0).unwrap();
        let instants = [
            read,
            second,
            second + time::Duration::nanoseconds(999_999_999),
            second - time::Duration::nanoseconds(1),
            second + time::Duration::SECOND,
            second + time::Duration::MINUTE,
            second + time::Duration::HOUR,
            second + time::Duration::DAY,
            second - time::Duration::days(366),
            // The same calendar second at another offset is another instant.
            second.replace_offset(offset!(+2)),
            second.to_offset(offset!(-5:30)),
            datetime!(1969-12-31 23:59:59.5 UTC),
            OffsetDateTime::UNIX_EPOCH,
        ];
        for at in instants {
            assert_eq!(unix_timestamp_nanos(at), at.unix_timestamp_nanos(), "{at}");
        }
        // A thread that never read the clock caches the epoch.
        std::thread::spawn(move || {
            for at in [
                OffsetDateTime::UNIX_EPOCH,
                read,
                second.to_offset(offset!(+1)),
            ] {
                assert_eq!(unix_timestamp_nanos(at), at.unix_timestamp_nanos(), "{at}");
            }
        })
        .join()
        .unwrap();
    }

    /// Equal, a nanosecond apart, a day apart, across offsets: as `time`
    /// orders them.
    #[test]
    fn instants_order_as_time_orders_them() {
        let at = datetime!(2026-11-27 14:05:32.5 UTC);
        let others = [
            at,
            at + time::Duration::NANOSECOND,
            at - time::Duration::NANOSECOND,
            at + time::Duration::DAY,
            at - time::Duration::DAY,
            at.replace_time(time::macros::time!(14:05:32.4)),
            at.to_offset(offset!(+3)),
            at.to_offset(offset!(-1)) + time::Duration::NANOSECOND,
            at.replace_offset(offset!(+1)),
            at.replace_offset(offset!(-1)),
            datetime!(2025-12-31 23:59:59.999_999_999 UTC),
        ];
        for a in others {
            for b in others {
                assert_eq!(at_or_before(a, b), a <= b, "{a} <= {b}");
            }
        }
    }

    #[test]
    fn the_system_clock_reads_the_system_time() {
        let before = OffsetDateTime::now_utc();
        let read = SystemClock.now();
        let after = OffsetDateTime::now_utc();
        assert!(before <= read && read <= after, "{before} {read} {after}");
    }
}
