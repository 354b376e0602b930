//! The in-process limiter: sharded hash maps of key → TAT, bounded.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::gcra::{unix_nanos, Quota};
use super::{valid_key, LimitError, RateDecision, RateLimiter};
use crate::clock::{Clock, SystemClock};

/// When a shard is full even after dropping its idle keys, it drops this
/// fraction of its keys, those closest to idle, so that the next inserts do
/// not each pay a scan.
const EVICT_FRACTION: usize = 16;

/// A shard sweeps its idle keys after `len / 2 + SWEEP_SLACK` inserts, so a
/// sweep costs O(1) amortized per insert.
const SWEEP_SLACK: usize = 64;

/// An in-memory, keyed GCRA limiter, for one process.
///
/// Each key costs one entry, its TAT (an `i64`) under the key (a `Box<str>`),
/// in one of a fixed number of shards, each a `Mutex<HashMap>`. A check
/// locks one shard for a hash-map lookup and a few integer operations.
///
/// # Memory
///
/// Memory is bounded by [`max_keys`](MemoryRateLimiterBuilder::max_keys)
/// entries (100 000 by default), `max_keys / shards` per shard:
///
/// * A key whose TAT is at or before `now` is back to a full burst, exactly
///   as if it were not tracked, so dropping it loses nothing. A shard drops
///   all of these after every `len / 2 + 64` new keys (amortized), when it
///   is full, and on [`sweep`](Self::sweep).
/// * When a shard is full and none of its keys is idle, it drops the 1/16 of
///   its keys closest to idle (smallest TAT). Those keys get a full burst
///   back early: at most `(tat − now) / T` extra requests each, and they are
///   the keys for which that number is smallest. New keys are never refused.
///
/// An entry takes 24 bytes plus a control byte in a hash table kept between
/// 7/16 and 7/8 full, plus the key's bytes on the heap (and the allocator's
/// overhead for it): about 55 to 85 bytes for a 26-byte key id, see
/// [`memory_estimate`](Self::memory_estimate).
///
/// ```
/// use keyward::ratelimit::{MemoryRateLimiter, Quota};
///
/// let limiter = MemoryRateLimiter::builder().max_keys(10_000).build();
/// let quota = Quota::per_second(5).unwrap();
/// assert!(limiter.check_sync("ip:203.0.113.7", quota).unwrap().allowed);
/// assert_eq!(limiter.len(), 1);
/// ```
pub struct MemoryRateLimiter {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
    shard_capacity: usize,
}

struct Shard {
    tats: HashMap<Box<str>, i64, RandomState>,
    inserts_since_sweep: usize,
}

impl MemoryRateLimiter {
    /// A limiter on the system clock with the default bounds.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configures a limiter.
    pub fn builder() -> MemoryRateLimiterBuilder {
        MemoryRateLimiterBuilder {
            clock: Arc::new(SystemClock),
            max_keys: MemoryRateLimiterBuilder::DEFAULT_MAX_KEYS,
            shards: MemoryRateLimiterBuilder::DEFAULT_SHARDS,
        }
    }

    /// [`RateLimiter::check`] without the future: it never waits.
    pub fn check_sync(&self, key: &str, quota: Quota) -> Result<RateDecision, LimitError> {
        valid_key(key)?;
        let now = unix_nanos(self.clock.now());
        let hash = self.hasher.hash_one(key);
        // The map indexes buckets by the low bits and tags by the top 7:
        // pick the shard from bits in between.
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        let mut shard = lock(&self.shards[index]);
        if let Some(tat) = shard.tats.get_mut(key) {
            let (decision, next) = quota.step(Some(*tat), now);
            *tat = next;
            return Ok(decision);
        }
        // An untracked key is admitted (count >= 1) and its TAT is > now.
        let (decision, next) = quota.step(None, now);
        shard.make_room(now, self.shard_capacity);
        shard.tats.insert(key.into(), next);
        Ok(decision)
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).tats.len()).sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this limiter tracks at once.
    pub fn max_keys(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    /// Drops every key that is back to a full burst (TAT at or before now);
    /// returns how many. Shards do this on their own as keys come in; call it
    /// to release memory after a burst of traffic ends.
    pub fn sweep(&self) -> usize {
        let now = unix_nanos(self.clock.now());
        self.shards.iter().map(|s| lock(s).sweep(now)).sum()
    }

    /// An estimate of the bytes this limiter holds on the heap: each hash
    /// table's buckets (24 bytes and a control byte each, the layout of the
    /// standard library's tables) and each key's bytes. The allocator's own
    /// overhead per key allocation (8 to 24 bytes with glibc) is not counted.
    pub fn memory_estimate(&self) -> usize {
        let per_bucket = std::mem::size_of::<(Box<str>, i64)>() + 1;
        let shards = std::mem::size_of_val(&*self.shards);
        shards
            + self
                .shards
                .iter()
                .map(|s| {
                    let shard = lock(s);
                    let buckets = buckets_for_capacity(shard.tats.capacity());
                    let keys: usize = shard.tats.keys().map(|k| k.len()).sum();
                    buckets * per_bucket + keys
                })
                .sum::<usize>()
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("shards", &self.shards.len())
            .field("max_keys", &self.max_keys())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, LimitError> {
        self.check_sync(key, quota)
    }
}

/// Configures a [`MemoryRateLimiter`].
#[derive(Debug)]
#[must_use]
pub struct MemoryRateLimiterBuilder {
    clock: Arc<dyn Clock>,
    max_keys: usize,
    shards: usize,
}

impl MemoryRateLimiterBuilder {
    /// The default bound on tracked keys: 100 000 (about 5 to 9 MB).
    pub const DEFAULT_MAX_KEYS: usize = 100_000;
    /// The default number of shards.
    pub const DEFAULT_SHARDS: usize = 64;

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The most keys to track at once (at least 1).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// How many shards to spread keys over, rounded down to a power of two
    /// and to at most `max_keys`; more shards mean less lock contention.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.max(1);
        self
    }

    /// The limiter.
    pub fn build(self) -> MemoryRateLimiter {
        let shards = prev_power_of_two(self.shards.min(self.max_keys));
        let hasher = RandomState::new();
        MemoryRateLimiter {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        tats: HashMap::with_hasher(hasher.clone()),
                        inserts_since_sweep: 0,
                    })
                })
                .collect(),
            hasher,
            clock: self.clock,
            shard_capacity: self.max_keys / shards,
        }
    }
}

impl Shard {
    /// Makes sure one more key fits, and sweeps now and then.
    fn make_room(&mut self, now: i64, capacity: usize) {
        self.inserts_since_sweep += 1;
        let len = self.tats.len();
        if len < capacity && self.inserts_since_sweep <= len / 2 + SWEEP_SLACK {
            return;
        }
        self.sweep(now);
        if self.tats.len() >= capacity {
            self.evict_closest_to_idle((capacity / EVICT_FRACTION).max(1));
        }
    }

    fn sweep(&mut self, now: i64) -> usize {
        self.inserts_since_sweep = 0;
        let before = self.tats.len();
        self.tats.retain(|_, tat| *tat > now);
        let len = self.tats.len();
        // Give memory back after a flood, with room to grow again.
        if self.tats.capacity() > 4 * len.max(SWEEP_SLACK) {
            self.tats.shrink_to(2 * len);
        }
        before - len
    }

    /// Drops the `n` keys with the smallest TAT.
    fn evict_closest_to_idle(&mut self, n: usize) {
        let mut tats: Vec<i64> = self.tats.values().copied().collect();
        if n >= tats.len() {
            self.tats.clear();
            return;
        }
        let (smaller, &mut threshold, _) = tats.select_nth_unstable(n - 1);
        let mut ties = n - smaller.iter().filter(|&&t| t < threshold).count();
        self.tats.retain(|_, tat| {
            if *tat < threshold {
                false
            } else if *tat == threshold && ties > 0 {
                ties -= 1;
                false
            } else {
                true
            }
        });
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A shard is consistent after any panic: each update is one i64 store.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// The buckets behind a `HashMap` of this capacity (SwissTable: 7/8 of the
/// buckets are usable from 8 buckets on, all but one below).
fn buckets_for_capacity(capacity: usize) -> usize {
    match capacity {
        0 => 0,
        1..=6 => capacity + 1,
        _ => capacity / 7 * 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use time::OffsetDateTime;

    fn limiter(max_keys: usize, shards: usize) -> (MemoryRateLimiter, ManualClock) {
        let clock = ManualClock::new(OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000));
        let limiter = MemoryRateLimiter::builder()
            .clock(clock.clone())
            .max_keys(max_keys)
            .shards(shards)
            .build();
        (limiter, clock)
    }

    #[test]
    fn shards_are_a_power_of_two_within_the_key_bound() {
        assert_eq!(prev_power_of_two(1), 1);
        assert_eq!(prev_power_of_two(100), 64);
        assert_eq!(limiter(10, 64).0.shards.len(), 8);
        assert_eq!(limiter(10, 64).0.max_keys(), 8);
        assert_eq!(limiter(1000, 0).0.shards.len(), 1);
    }

    #[test]
    fn rejects_invalid_keys() {
        let (limiter, _) = limiter(10, 1);
        let quota = Quota::per_second(1).unwrap();
        assert!(matches!(
            limiter.check_sync("", quota),
            Err(LimitError::InvalidKey)
        ));
        assert!(limiter.is_empty());
    }

    #[test]
    fn keys_are_independent_and_idle_keys_are_swept() {
        let (limiter, clock) = limiter(100, 4);
        let quota = Quota::per_second(2).unwrap();
        for key in ["a", "b", "c"] {
            assert!(limiter.check_sync(key, quota).unwrap().allowed);
            assert!(limiter.check_sync(key, quota).unwrap().allowed);
            assert!(!limiter.check_sync(key, quota).unwrap().allowed);
        }
        assert_eq!(limiter.len(), 3);
        clock.advance(time::Duration::milliseconds(999));
        assert_eq!(limiter.sweep(), 0);
        clock.advance(time::Duration::milliseconds(1));
        assert_eq!(limiter.sweep(), 3);
        assert!(limiter.is_empty());
        assert_eq!(limiter.check_sync("a", quota).unwrap().remaining, 1);
    }

    #[test]
    fn a_full_shard_evicts_the_keys_closest_to_idle() {
        let (limiter, clock) = limiter(32, 1);
        let quota = Quota::per_minute(40).unwrap();
        // Key i is used i + 1 times: the higher i, the further from idle.
        for i in 0..32 {
            for _ in 0..=i {
                limiter.check_sync(&format!("k{i}"), quota).unwrap();
            }
        }
        assert_eq!(limiter.len(), 32);
        clock.advance(time::Duration::seconds(1));
        limiter.check_sync("new", quota).unwrap();
        // Nothing idle: 32 / 16 = 2 keys go, those used least (k0, k1).
        assert_eq!(limiter.len(), 31);
        let shard = lock(&limiter.shards[0]);
        assert!(!shard.tats.contains_key("k0"));
        assert!(!shard.tats.contains_key("k1"));
        assert!(shard.tats.contains_key("k2"));
        assert!(shard.tats.contains_key("new"));
    }

    #[test]
    fn eviction_with_equal_tats_drops_exactly_the_share() {
        let (limiter, _) = limiter(64, 1);
        let quota = Quota::per_minute(10).unwrap();
        for i in 0..200 {
            limiter.check_sync(&format!("k{i}"), quota).unwrap();
            assert!(limiter.len() <= 64);
        }
        // The frozen clock gives every key the same TAT.
        assert!(limiter.len() >= 60);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_keys() {
        let (limiter, clock) = limiter(1_000, 8);
        let quota = Quota::per_second(10).unwrap();
        for i in 0..20_000 {
            limiter.check_sync(&format!("ip:{i}"), quota).unwrap();
            if i % 100 == 0 {
                clock.advance(time::Duration::milliseconds(10));
            }
        }
        assert!(limiter.len() <= 1_000);
        let bounded = limiter.memory_estimate();
        clock.advance(time::Duration::seconds(1));
        limiter.sweep();
        assert!(limiter.is_empty());
        assert!(limiter.memory_estimate() < bounded);
    }

    #[test]
    fn bucket_estimate_matches_the_std_layout() {
        for n in [1usize, 3, 7, 8, 100, 1000] {
            let map: HashMap<Box<str>, i64> = HashMap::with_capacity(n);
            let buckets = buckets_for_capacity(map.capacity());
            assert!(buckets.is_power_of_two(), "{n}: {}", map.capacity());
        }
    }
}
