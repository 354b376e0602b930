//! Time, injectable so tests never sleep.

use std::fmt;
#[cfg(any(test, feature = "test-util"))]
use std::sync::{Arc, Mutex};

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
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
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
