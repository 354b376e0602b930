//! The delivery policy: retry schedule with jitter, attempt timeout, and
//! `Retry-After` (seconds or HTTP date).

use std::time::Duration;

use http::HeaderValue;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::error::ConfigError;

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;

/// The specification's retry schedule: the delay before each attempt
/// (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h; the
/// last attempt about 75 hours after the first).
pub const STANDARD_SCHEDULE: [Duration; 10] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(5 * HOUR),
    Duration::from_secs(10 * HOUR),
    Duration::from_secs(14 * HOUR),
    Duration::from_secs(20 * HOUR),
    Duration::from_secs(24 * HOUR),
];
/// The most attempts a schedule may have.
pub const MAX_ATTEMPTS: usize = 20;
/// The longest delay of a schedule, and the highest bound on `Retry-After`.
const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * HOUR);
/// How much each delay varies at random, by default: ±10 %.
pub const DEFAULT_JITTER_PERCENT: u8 = 10;
/// The most jitter allowed.
const MAX_JITTER_PERCENT: u8 = 50;
/// How long one attempt may take, by default.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// The shortest attempt timeout allowed (the specification recommends 15
/// to 30 s, so receivers have time to process).
pub const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest attempt timeout allowed.
pub const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a `Retry-After` may push an attempt, by default.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * HOUR);

/// How a message is delivered: when each attempt goes out, how long it may
/// take, how far a receiver's `Retry-After` is honoured.
///
/// The default is the specification's: [`STANDARD_SCHEDULE`] with ±10 %
/// jitter (none on an immediate attempt), 15 s per attempt, `Retry-After`
/// honoured up to 24 hours.
///
/// ```
/// use std::time::Duration;
/// use keyward::webhooks::{DeliveryPolicy, STANDARD_SCHEDULE};
///
/// assert_eq!(DeliveryPolicy::default().schedule(), STANDARD_SCHEDULE);
/// let quick = DeliveryPolicy::builder()
///     .schedule([Duration::ZERO, Duration::from_secs(1), Duration::from_secs(10)])
///     .jitter_percent(0)
///     .attempt_timeout(Duration::from_secs(20))
///     .build()?;
/// assert_eq!(quick.schedule().len(), 3);
/// // The specification recommends 15 to 30 s per attempt.
/// assert!(DeliveryPolicy::builder().attempt_timeout(Duration::from_secs(5)).build().is_err());
/// # Ok::<(), keyward::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryPolicy {
    schedule: Vec<Duration>,
    jitter_percent: u8,
    attempt_timeout: Duration,
    max_retry_after: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            schedule: STANDARD_SCHEDULE.to_vec(),
            jitter_percent: DEFAULT_JITTER_PERCENT,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

impl DeliveryPolicy {
    /// A builder starting from the default.
    pub fn builder() -> DeliveryPolicyBuilder {
        DeliveryPolicyBuilder {
            policy: DeliveryPolicy::default(),
        }
    }

    /// The delay before each attempt (before jitter).
    #[must_use]
    pub fn schedule(&self) -> &[Duration] {
        &self.schedule
    }

    /// How much each non-zero delay varies at random, in percent (both
    /// ways).
    #[must_use]
    pub fn get_jitter_percent(&self) -> u8 {
        self.jitter_percent
    }

    /// How long one attempt may take before it counts as failed.
    #[must_use]
    pub fn get_attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// The longest a `Retry-After` may push the next attempt.
    #[must_use]
    pub fn get_max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// The wait before attempt `index` (0-based) with random jitter, or
    /// `None` past the schedule's end.
    pub(super) fn delay(&self, index: usize) -> Option<Duration> {
        let delay = *self.schedule.get(index)?;
        Some(jitter(
            delay,
            self.jitter_percent,
            rand::random_range(-1.0..=1.0),
        ))
    }
}

/// Builds a [`DeliveryPolicy`] (see there).
#[derive(Debug, Clone)]
#[must_use]
pub struct DeliveryPolicyBuilder {
    policy: DeliveryPolicy,
}

impl DeliveryPolicyBuilder {
    /// The delay before each attempt, the first usually zero: 1 to
    /// [`MAX_ATTEMPTS`] attempts, each delay at most 7 days.
    pub fn schedule(mut self, delays: impl IntoIterator<Item = Duration>) -> Self {
        self.policy.schedule = delays.into_iter().collect();
        self
    }

    /// Each non-zero delay varies at random by up to this percentage either
    /// way (0 to 50; default 10), so receivers recovering from an outage do
    /// not get every sender's retries at once.
    pub fn jitter_percent(mut self, percent: u8) -> Self {
        self.policy.jitter_percent = percent;
        self
    }

    /// How long one attempt (connect, send, response headers, a small
    /// body) may take: 15 to 30 s (default 15 s).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.policy.attempt_timeout = timeout;
        self
    }

    /// The longest a receiver's `Retry-After` may push the next attempt
    /// (at most 7 days; default 24 hours).
    pub fn max_retry_after(mut self, bound: Duration) -> Self {
        self.policy.max_retry_after = bound;
        self
    }

    /// Checks the policy.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidWebhookConfig`] for an empty schedule or one
    /// longer than [`MAX_ATTEMPTS`], a delay or `Retry-After` bound over 7
    /// days, jitter over 50 %, or an attempt timeout outside 15..=30 s.
    pub fn build(self) -> Result<DeliveryPolicy, ConfigError> {
        let p = self.policy;
        if p.schedule.is_empty() || p.schedule.len() > MAX_ATTEMPTS {
            return Err(ConfigError::InvalidWebhookConfig(
                "a delivery schedule has 1 to 20 attempts",
            ));
        }
        if p.schedule.iter().any(|d| *d > MAX_DELAY) {
            return Err(ConfigError::InvalidWebhookConfig(
                "a delivery delay is at most 7 days",
            ));
        }
        if p.jitter_percent > MAX_JITTER_PERCENT {
            return Err(ConfigError::InvalidWebhookConfig(
                "delivery jitter is at most 50 percent",
            ));
        }
        if !(MIN_ATTEMPT_TIMEOUT..=MAX_ATTEMPT_TIMEOUT).contains(&p.attempt_timeout) {
            return Err(ConfigError::InvalidWebhookConfig(
                "a delivery attempt timeout is 15 to 30 seconds",
            ));
        }
        if p.max_retry_after > MAX_DELAY {
            return Err(ConfigError::InvalidWebhookConfig(
                "the Retry-After bound is at most 7 days",
            ));
        }
        Ok(p)
    }
}

/// `delay` varied by `unit` (in -1..=1) times `percent` percent; zero stays
/// zero (an immediate attempt is immediate).
fn jitter(delay: Duration, percent: u8, unit: f64) -> Duration {
    if delay.is_zero() {
        return delay;
    }
    let unit = if unit.is_nan() {
        0.0
    } else {
        unit.clamp(-1.0, 1.0)
    };
    let percent = f64::from(percent.min(MAX_JITTER_PERCENT));
    // The factor stays in 0.5..=1.5 and delays under 7 days: no overflow.
    delay.mul_f64(1.0 + unit * percent / 100.0)
}

/// The wait a `Retry-After` value asks for, seen at `now`: delay-seconds,
/// or an HTTP date (a date in the past asks for no wait). `None` when it
/// is neither.
pub(super) fn retry_after(value: &HeaderValue, now: OffsetDateTime) -> Option<Duration> {
    let value = value.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Overlong numbers saturate (the caller bounds the wait).
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = http_date(value, now.year())?;
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

/// An HTTP date (RFC 9110 §5.6.7) in any of its three forms:
/// `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate),
/// `Sunday, 06-Nov-94 08:49:37 GMT` (RFC 850; a two-digit year more than
/// 50 years after `this_year` is in the previous century) and
/// `Sun Nov  6 08:49:37 1994` (asctime). The weekday is not checked.
fn http_date(value: &str, this_year: i32) -> Option<OffsetDateTime> {
    let parts: Vec<&str> = value.split_ascii_whitespace().collect();
    let (day, month, year, clock) = match parts.as_slice() {
        [weekday, day, month, year, clock, "GMT"] if weekday.ends_with(',') => {
            (number(day, 2)?, *month, number(year, 4)?, *clock)
        }
        [weekday, date, clock, "GMT"] if weekday.ends_with(',') => {
            let mut fields = date.split('-');
            let (Some(day), Some(month), Some(year), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return None;
            };
            let two_digits: i32 = number(year, 2)?;
            let mut year = this_year - this_year.rem_euclid(100) + two_digits;
            if year > this_year + 50 {
                year -= 100;
            }
            (number(day, 2)?, month, year, *clock)
        }
        [_weekday, month, day, clock, year] => {
            let day = if day.len() == 1 {
                number(day, 1)?
            } else {
                number(day, 2)?
            };
            (day, *month, number(year, 4)?, *clock)
        }
        _ => return None,
    };
    let month = match month {
        "Jan" => Month::January,
        "Feb" => Month::February,
        "Mar" => Month::March,
        "Apr" => Month::April,
        "May" => Month::May,
        "Jun" => Month::June,
        "Jul" => Month::July,
        "Aug" => Month::August,
        "Sep" => Month::September,
        "Oct" => Month::October,
        "Nov" => Month::November,
        "Dec" => Month::December,
        _ => return None,
    };
    let mut hms = clock.split(':');
    let (Some(h), Some(m), Some(s), None) = (hms.next(), hms.next(), hms.next(), hms.next()) else {
        return None;
    };
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(number(h, 2)?, number(m, 2)?, number(s, 2)?).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// `text` as a number of exactly `digits` ASCII digits.
fn number<T: std::str::FromStr>(text: &str, digits: usize) -> Option<T> {
    if text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-27 12:00:00 UTC);

    fn after(value: &str) -> Option<Duration> {
        retry_after(&HeaderValue::from_str(value).unwrap(), NOW)
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(after("120"), Some(Duration::from_secs(120)));
        assert_eq!(after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            after("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-5", "1.5", "12s", "soon", "0x10"] {
            assert_eq!(after(bad), None, "{bad}");
        }
        let opaque = HeaderValue::from_bytes(b"\xff12").unwrap();
        assert_eq!(retry_after(&opaque, NOW), None);
    }

    #[test]
    fn retry_after_dates_in_three_forms() {
        let minute = Some(Duration::from_secs(60));
        assert_eq!(after("Fri, 27 Nov 2026 12:01:00 GMT"), minute);
        assert_eq!(after("Friday, 27-Nov-26 12:01:00 GMT"), minute);
        assert_eq!(after("Fri Nov 27 12:01:00 2026"), minute);
        assert_eq!(
            after("Fri Nov  1 12:00:00 2026"),
            after("Fri Nov 01 12:00:00 2026")
        );
        assert_eq!(
            after("Fri Nov  1 12:00:00 2026"),
            Some(Duration::ZERO),
            "a past date asks for no wait"
        );
        assert_eq!(after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        // A year later, exactly.
        assert_eq!(
            after("Sat, 27 Nov 2027 12:00:00 GMT"),
            Some(Duration::from_secs(365 * 24 * 3600))
        );
        for bad in [
            "Fri, 27 Nov 2026 12:01:00 UTC",
            "Fri 27 Nov 2026 12:01:00 GMT",
            "Fri, 27 Foo 2026 12:01:00 GMT",
            "Fri, 32 Nov 2026 12:01:00 GMT",
            "Fri, 27 Nov 2026 25:01:00 GMT",
            "Fri, 27 Nov 2026 12:01 GMT",
            "Fri, 27 Nov 2026 12:01:00:00 GMT",
            "Fri, 7 Nov 2026 12:01:00 GMT",
            "Fri, 27 Nov 26 12:01:00 GMT",
            "Friday, 27-Nov-2026 12:01:00 GMT",
            "Friday, 27-Nov-26-1 12:01:00 GMT",
            "Friday, 27-Nov 12:01:00 GMT",
            "Friday 27-Nov-26 12:01:00 GMT",
            "Fri Nov 27 12:01:00 26",
            "Fri Nov 127 12:01:00 2026",
        ] {
            assert_eq!(after(bad), None, "{bad}");
        }
    }

    #[test]
    fn two_digit_years_stay_within_fifty_years() {
        assert_eq!(
            http_date("Sunday, 06-Nov-94 08:49:37 GMT", 2026).map(|d| d.year()),
            Some(1994)
        );
        assert_eq!(
            http_date("Sunday, 06-Nov-76 08:49:37 GMT", 2026).map(|d| d.year()),
            Some(2076)
        );
        assert_eq!(
            http_date("Sunday, 06-Nov-77 08:49:37 GMT", 2026).map(|d| d.year()),
            Some(1977)
        );
        assert_eq!(
            http_date("Sunday, 06-Nov-00 08:49:37 GMT", 2026).map(|d| d.year()),
            Some(2000)
        );
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let d = Duration::from_secs(100);
        assert_eq!(jitter(d, 10, -1.0), Duration::from_secs(90));
        assert_eq!(jitter(d, 10, 1.0), Duration::from_secs(110));
        assert_eq!(jitter(d, 10, 0.5), Duration::from_secs(105));
        assert_eq!(jitter(d, 10, 5.0), Duration::from_secs(110), "clamped");
        assert_eq!(jitter(d, 10, f64::NAN), d);
        assert_eq!(jitter(d, 0, 1.0), d);
        assert_eq!(
            jitter(d, 200, 1.0),
            Duration::from_secs(150),
            "capped at 50 %"
        );
        assert_eq!(jitter(Duration::ZERO, 50, 1.0), Duration::ZERO);
        let policy = DeliveryPolicy::default();
        for _ in 0..200 {
            assert_eq!(policy.delay(0), Some(Duration::ZERO));
            let second = policy.delay(1).unwrap();
            assert!(second >= Duration::from_millis(4500) && second <= Duration::from_millis(5500));
        }
        assert_eq!(policy.delay(10), None);
    }

    #[test]
    fn policies_are_checked() {
        let ok = |b: DeliveryPolicyBuilder| b.build().is_ok();
        let b = DeliveryPolicy::builder;
        assert!(ok(b()));
        assert!(ok(b().attempt_timeout(MIN_ATTEMPT_TIMEOUT)));
        assert!(ok(b().attempt_timeout(MAX_ATTEMPT_TIMEOUT)));
        assert!(!ok(b().attempt_timeout(
            MIN_ATTEMPT_TIMEOUT - Duration::from_millis(1)
        )));
        assert!(!ok(b().attempt_timeout(
            MAX_ATTEMPT_TIMEOUT + Duration::from_millis(1)
        )));
        assert!(ok(b().schedule([Duration::ZERO; MAX_ATTEMPTS])));
        assert!(!ok(b().schedule([Duration::ZERO; MAX_ATTEMPTS + 1])));
        assert!(!ok(b().schedule([])));
        assert!(ok(b().schedule([MAX_DELAY])));
        assert!(!ok(b().schedule([MAX_DELAY + Duration::from_secs(1)])));
        assert!(ok(b().jitter_percent(MAX_JITTER_PERCENT)));
        assert!(!ok(b().jitter_percent(MAX_JITTER_PERCENT + 1)));
        assert!(ok(b().max_retry_after(MAX_DELAY)));
        assert!(!ok(b().max_retry_after(MAX_DELAY + Duration::from_secs(1))));
        let p = b()
            .jitter_percent(3)
            .attempt_timeout(Duration::from_secs(20))
            .max_retry_after(Duration::from_secs(60))
            .build()
            .unwrap();
        assert_eq!(p.get_jitter_percent(), 3);
        assert_eq!(p.get_attempt_timeout(), Duration::from_secs(20));
        assert_eq!(p.get_max_retry_after(), Duration::from_secs(60));
    }
}
