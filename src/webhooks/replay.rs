//! Replay refusal: a message id seen within the tolerance is refused. The
//! [`ReplayGuard`] trait lets several servers share one record (a database
//! table, Redis `SET NX PX`); [`MemoryReplayGuard`] serves one process.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use time::OffsetDateTime;

/// Why a [`ReplayGuard`] could not answer. The verifier fails closed: the
/// message is refused (503 `webhook_replay_unavailable`).
///
/// ```
/// use keyward::webhooks::ReplayError;
///
/// let err = ReplayError::new("redis down");
/// assert_eq!(err.to_string(), "replay guard unavailable");
/// assert!(std::error::Error::source(&err).is_some());
/// ```
#[derive(Debug, Clone)]
pub struct ReplayError(Arc<dyn std::error::Error + Send + Sync>);

impl ReplayError {
    /// An error from any error or message.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ReplayError(Arc::from(err.into()))
    }
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("replay guard unavailable")
    }
}

impl std::error::Error for ReplayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A record of message ids already accepted.
///
/// [`claim`](Self::claim) must be atomic: of two concurrent claims of one
/// id, exactly one wins (a shared store does it with an insert that fails on
/// a duplicate key). Claims are made only for messages whose signature and
/// timestamp verified, so only the sender can fill the record.
///
/// ```
/// use keyward::webhooks::{ReplayError, ReplayGuard};
/// use time::OffsetDateTime;
///
/// /// Refuses nothing: for a receiver whose handler is idempotent anyway.
/// struct Off;
///
/// #[keyward::async_trait]
/// impl ReplayGuard for Off {
///     async fn claim(&self, _: &str, _: OffsetDateTime, _: OffsetDateTime) -> Result<bool, ReplayError> {
///         Ok(true)
///     }
///     async fn release(&self, _: &str) -> Result<(), ReplayError> {
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait ReplayGuard: Send + Sync + 'static {
    /// Records `id` until `until`; `Ok(false)` when it is already recorded
    /// and its record has not lapsed at `now`.
    async fn claim(
        &self,
        id: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, ReplayError>;

    /// Forgets `id` (the receiver failed to process the message, so the
    /// sender's retry must get through).
    async fn release(&self, id: &str) -> Result<(), ReplayError>;
}

/// The default number of ids [`MemoryReplayGuard`] holds.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// A [`ReplayGuard`] in this process's memory, bounded: at most `capacity`
/// ids (100 000 by default, each at most 256 bytes). When it is full, lapsed
/// ids are dropped; if none has lapsed, the claim fails (closed: 503) rather
/// than forget an id that is still within the window.
///
/// ```
/// use keyward::webhooks::{MemoryReplayGuard, ReplayGuard};
/// use time::{Duration, OffsetDateTime};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let guard = MemoryReplayGuard::new();
/// let now = OffsetDateTime::UNIX_EPOCH;
/// let until = now + Duration::minutes(5);
/// assert!(guard.claim("msg_1", until, now).await?);
/// assert!(!guard.claim("msg_1", until, now).await?);
/// assert!(guard.claim("msg_1", until, until).await?); // lapsed
/// # Ok::<(), keyward::webhooks::ReplayError>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct MemoryReplayGuard {
    seen: Mutex<HashMap<String, OffsetDateTime>>,
    capacity: usize,
}

impl MemoryReplayGuard {
    /// A guard of the default capacity.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_REPLAY_CAPACITY)
    }

    /// A guard holding at most `capacity` ids (at least 1).
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryReplayGuard {
            seen: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }
}

impl Default for MemoryReplayGuard {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl ReplayGuard for MemoryReplayGuard {
    async fn claim(
        &self,
        id: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, ReplayError> {
        // A panic elsewhere while holding the lock leaves the map whole.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lapses) = seen.get(id) {
            if *lapses > now {
                return Ok(false);
            }
        } else if seen.len() >= self.capacity {
            seen.retain(|_, lapses| *lapses > now);
            if seen.len() >= self.capacity {
                return Err(ReplayError::new("replay record full"));
            }
        }
        seen.insert(id.to_owned(), until);
        Ok(true)
    }

    async fn release(&self, id: &str) -> Result<(), ReplayError> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[tokio::test]
    async fn a_full_guard_drops_lapsed_ids_and_otherwise_fails_closed() {
        let guard = MemoryReplayGuard::with_capacity(2);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert!(guard.claim("a", t0 + Duration::SECOND, t0).await.unwrap());
        assert!(guard.claim("b", t0 + Duration::HOUR, t0).await.unwrap());
        assert!(guard.claim("c", t0 + Duration::HOUR, t0).await.is_err());
        // "a" lapses: its room is reused, "b" is still refused.
        let t1 = t0 + Duration::MINUTE;
        assert!(guard.claim("c", t1 + Duration::HOUR, t1).await.unwrap());
        assert!(!guard.claim("b", t1 + Duration::HOUR, t1).await.unwrap());
    }

    #[tokio::test]
    async fn a_record_lapses_at_its_instant() {
        let guard = MemoryReplayGuard::with_capacity(1);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let until = t0 + Duration::SECOND;
        assert!(guard.claim("a", until, t0).await.unwrap());
        assert!(!guard
            .claim("a", until, until - Duration::NANOSECOND)
            .await
            .unwrap());
        assert!(guard
            .claim("a", until + Duration::SECOND, until)
            .await
            .unwrap());
        // Full: a record lapsing exactly now makes room.
        let later = until + Duration::SECOND;
        assert!(guard.claim("b", later, later).await.unwrap());
    }

    #[test]
    fn errors_keep_their_cause_out_of_the_message() {
        let err = ReplayError::new("redis down");
        assert_eq!(err.to_string(), "replay guard unavailable");
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("redis down"));
    }

    #[tokio::test]
    async fn a_released_id_may_be_claimed_again() {
        let guard = MemoryReplayGuard::new();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert!(guard.claim("a", t0 + Duration::HOUR, t0).await.unwrap());
        guard.release("a").await.unwrap();
        assert!(guard.claim("a", t0 + Duration::HOUR, t0).await.unwrap());
    }
}
