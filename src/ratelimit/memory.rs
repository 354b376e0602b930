//! The in-process limiter: sharded hash maps of key → TAT, bounded.

use std::any::TypeId;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use hashbrown::hash_map::{HashMap, RawEntryMut};

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
/// hashes the key once (SipHash, randomly keyed), picks the shard from the
/// hash, and locks it for one lookup and a few integer operations.
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
/// 7/16 and 7/8 full, plus the key's bytes on the heap and the allocator's
/// overhead for them. For 26-byte key ids that is 80 to 95 bytes asked of
/// the allocator and 90 to 100 bytes of resident memory per tracked key,
/// measured after floods of 1,000,000 keys (`benches/ratelimit.rs`); see
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
    table: TatTable<Box<str>>,
    clock: Arc<dyn Clock>,
    /// Whether `clock` is the [`SystemClock`]: then the check reads the time
    /// directly, skipping two calendar conversions (about 25 ns).
    system_clock: bool,
}

/// Keys and their TATs in a fixed number of shards, each a `Mutex<HashMap>`
/// holding at most `shard_capacity` keys: the state of a
/// [`MemoryRateLimiter`] (keyed by string) and of the authentication layer's
/// failure throttle (keyed by client network), bounded the same way (see
/// [`MemoryRateLimiter`], "Memory").
pub(crate) struct TatTable<K> {
    shards: Box<[Mutex<Shard<K>>]>,
    hasher: RandomState,
    shard_capacity: usize,
    /// How many keys the shards hold, kept beside them: an insert counts
    /// under its shard's lock, a sweep after it let go of the locks, so the
    /// count is at times a little high, never low. [`peek`](Self::peek)
    /// answers an empty table without hashing or locking, the failure
    /// throttle's common case (no client with failures on record).
    tracked: AtomicUsize,
}

struct Shard<K> {
    tats: HashMap<K, i64, RandomState>,
    inserts_since_sweep: usize,
}

impl MemoryRateLimiter {
    /// A limiter on the system clock with the default bounds.
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configures a limiter.
    pub fn builder() -> MemoryRateLimiterBuilder {
        MemoryRateLimiterBuilder {
            clock: Arc::new(SystemClock),
            system_clock: true,
            max_keys: MemoryRateLimiterBuilder::DEFAULT_MAX_KEYS,
            shards: MemoryRateLimiterBuilder::DEFAULT_SHARDS,
        }
    }

    /// [`RateLimiter::check`] without the future: it never waits.
    ///
    /// # Errors
    ///
    /// [`LimitError::InvalidKey`] for an empty key or one over 256 bytes.
    pub fn check_sync(&self, key: &str, quota: Quota) -> Result<RateDecision, LimitError> {
        valid_key(key)?;
        Ok(self.table.step(key, |k| Box::from(k), quota, self.now()))
    }

    /// [`check_sync`](Self::check_sync) at `now`, an instant its clock gave
    /// a moment ago (the layer's verification read it): one clock read
    /// per request.
    #[cfg(feature = "http")]
    pub(crate) fn check_at(
        &self,
        key: &str,
        quota: Quota,
        now: time::OffsetDateTime,
    ) -> Result<RateDecision, LimitError> {
        valid_key(key)?;
        Ok(self
            .table
            .step(key, |k| Box::from(k), quota, unix_nanos(now)))
    }

    fn now(&self) -> i64 {
        if self.system_clock {
            return match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
                Ok(since) => i64::try_from(since.as_nanos()).unwrap_or(i64::MAX),
                Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |n| -n),
            };
        }
        unix_nanos(self.clock.now())
    }

    /// How many keys are tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this limiter tracks at once.
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.table.max_keys()
    }

    /// Drops every key that is back to a full burst (TAT at or before now);
    /// returns how many. Shards do this on their own as keys come in; call it
    /// to release memory after a burst of traffic ends.
    #[allow(clippy::must_use_candidate)] // called for its effect; the count is a report
    pub fn sweep(&self) -> usize {
        self.table.sweep(self.now())
    }

    /// The bytes this limiter has asked the allocator for: the shards, each
    /// hash table's allocation, and each key's bytes. The allocator's own
    /// overhead per key (8 to 24 bytes with glibc's malloc) is not counted.
    #[must_use]
    pub fn memory_estimate(&self) -> usize {
        self.table.memory_estimate(|key| key.len())
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
            .field("shards", &self.table.shards.len())
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

    fn check_now(&self, key: &str, quota: Quota) -> Option<Result<RateDecision, LimitError>> {
        Some(self.check_sync(key, quota))
    }
}

/// Configures a [`MemoryRateLimiter`].
#[derive(Debug)]
#[must_use]
pub struct MemoryRateLimiterBuilder {
    clock: Arc<dyn Clock>,
    system_clock: bool,
    max_keys: usize,
    shards: usize,
}

impl MemoryRateLimiterBuilder {
    /// The default bound on tracked keys: 100 000 (about 10 MB).
    pub const DEFAULT_MAX_KEYS: usize = 100_000;
    /// The default number of shards.
    pub const DEFAULT_SHARDS: usize = 64;

    /// The clock (default: the system clock).
    pub fn clock<C: Clock>(mut self, clock: C) -> Self {
        self.system_clock = TypeId::of::<C>() == TypeId::of::<SystemClock>();
        self.clock = Arc::new(clock);
        self
    }

    /// A clock shared with its owner (the keyring of an `AuthLayer`).
    #[cfg(feature = "http")]
    pub(crate) fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.system_clock = false;
        self.clock = clock;
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
    #[must_use]
    pub fn build(self) -> MemoryRateLimiter {
        MemoryRateLimiter {
            table: TatTable::new(self.max_keys, self.shards),
            clock: self.clock,
            system_clock: self.system_clock,
        }
    }
}

impl<K: Hash + Eq> TatTable<K> {
    /// At most `max_keys` keys (at least 1) in `shards` shards, rounded down
    /// to a power of two and to at most `max_keys`.
    pub(crate) fn new(max_keys: usize, shards: usize) -> Self {
        let max_keys = max_keys.max(1);
        let shards = prev_power_of_two(shards.clamp(1, max_keys));
        let hasher = RandomState::new();
        TatTable {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        tats: HashMap::with_hasher(hasher.clone()),
                        inserts_since_sweep: 0,
                    })
                })
                .collect(),
            hasher,
            shard_capacity: max_keys / shards,
            tracked: AtomicUsize::new(0),
        }
    }

    /// Records that a shard went from `before` keys to `after`: the
    /// difference, wrapping (`fetch_add` wraps too), so a shrink subtracts.
    fn resized(&self, before: usize, after: usize) {
        self.tracked
            .fetch_add(after.wrapping_sub(before), Ordering::Relaxed);
    }

    /// The hash of `key` and its shard.
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, MutexGuard<'_, Shard<K>>) {
        let hash = self.hasher.hash_one(key);
        // The map indexes buckets by the low bits and tags by the top 7:
        // pick the shard from bits in between.
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        (hash, lock(&self.shards[index]))
    }

    /// One GCRA step of `key` at `now`: the decision, and the new TAT stored
    /// when admitted. `own` makes the stored key of an untracked one.
    pub(crate) fn step<Q>(
        &self,
        key: &Q,
        own: impl FnOnce(&Q) -> K,
        quota: Quota,
        now: i64,
    ) -> RateDecision
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // An untracked key is admitted (count >= 1) and its TAT is > now.
        self.update(key, own, now, |tat| quota.step_nanos(tat, now))
    }

    /// Charges `key` one unit at `now` whether or not its budget has room
    /// (see [`Quota::charge_nanos`]), its TAT at most `now + cap` ahead.
    #[cfg(feature = "http")]
    pub(crate) fn charge<Q>(
        &self,
        key: &Q,
        own: impl FnOnce(&Q) -> K,
        quota: Quota,
        now: i64,
        cap: i64,
    ) where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.update(key, own, now, |tat| ((), quota.charge_nanos(tat, now, cap)));
    }

    /// Replaces `key`'s TAT (`None` when untracked) with what `next` makes
    /// of it, and returns what else `next` says; an untracked key is stored
    /// (making room at `now` first), under the key `own` makes.
    fn update<Q, R>(
        &self,
        key: &Q,
        own: impl FnOnce(&Q) -> K,
        now: i64,
        next: impl FnOnce(Option<i64>) -> (R, i64),
    ) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, mut shard) = self.shard(key);
        if let RawEntryMut::Occupied(mut entry) = shard
            .tats
            .raw_entry_mut()
            .from_key_hashed_nocheck(hash, key)
        {
            let tat = entry.get_mut();
            let (result, updated) = next(Some(*tat));
            *tat = updated;
            return result;
        }
        let (result, first) = next(None);
        let before = shard.tats.len();
        shard.make_room(now, self.shard_capacity);
        shard
            .tats
            .raw_entry_mut()
            .from_key_hashed_nocheck(hash, key)
            .insert(own(key), first);
        self.resized(before, shard.tats.len());
        result
    }

    /// The decision a step of `key` would get at `now()`, without taking
    /// it: `None` for an untracked key (a full burst), in which case the
    /// clock is not read.
    #[cfg(feature = "http")]
    pub(crate) fn peek<Q>(
        &self,
        key: &Q,
        quota: Quota,
        now: impl FnOnce() -> i64,
    ) -> Option<RateDecision>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Racing an insert, this is the look taken just before it.
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let (hash, shard) = self.shard(key);
        let (_, &tat) = shard.tats.raw_entry().from_key_hashed_nocheck(hash, key)?;
        Some(quota.step_nanos(Some(tat), now()).0)
    }

    /// How many keys are tracked.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).tats.len()).sum()
    }

    /// The most keys tracked at once.
    pub(crate) fn max_keys(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    /// Drops every key whose TAT is at or before `now`; returns how many.
    pub(crate) fn sweep(&self, now: i64) -> usize {
        let swept = self.shards.iter().map(|s| lock(s).sweep(now)).sum();
        self.tracked.fetch_sub(swept, Ordering::Relaxed);
        swept
    }

    /// The bytes asked of the allocator: the shards, each hash table's
    /// allocation, and `key_heap` of each key (its bytes on the heap).
    pub(crate) fn memory_estimate(&self, key_heap: impl Fn(&K) -> usize) -> usize {
        let shards = std::mem::size_of_val(&*self.shards);
        shards
            + self
                .shards
                .iter()
                .map(|s| {
                    let shard = lock(s);
                    let keys: usize = shard.tats.keys().map(&key_heap).sum();
                    shard.tats.allocation_size() + keys
                })
                .sum::<usize>()
    }
}

impl<K: Hash + Eq> Shard<K> {
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

fn lock<K>(shard: &Mutex<Shard<K>>) -> MutexGuard<'_, Shard<K>> {
    // A shard is consistent after any panic: each update is one i64 store.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
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

    /// The count `peek` trusts follows the shards through inserts, the
    /// evictions of a full shard and sweeps; a tracked key is peeked.
    #[test]
    fn the_tracked_count_follows_the_shards() {
        let quota = Quota::per_minute(1).unwrap();
        let table: TatTable<u32> = TatTable::new(8, 2);
        let counted = |table: &TatTable<u32>| table.tracked.load(Ordering::Relaxed);
        assert!(table.peek(&1, quota, || 0).is_none());
        let mut now = 1_000_000_000_000;
        for key in 0..40u32 {
            assert!(table.step(&key, |k| *k, quota, now).allowed, "a first step");
            assert_eq!(counted(&table), table.len(), "after inserting {key}");
            now += 1_000_000;
        }
        assert!(table.len() <= 8, "evicted to the bound");
        let kept = (0..40u32).find(|k| table.shards.iter().any(|s| lock(s).tats.contains_key(k)));
        let kept = kept.expect("some key is kept");
        assert!(!table.peek(&kept, quota, || now).unwrap().allowed);
        // Every key idle: a full shard sweeps itself before the next
        // insert, so it holds fewer keys after it than before.
        now += 120_000_000_000;
        let before = table.len();
        assert!(table.step(&1000, |k| *k, quota, now).allowed);
        assert!(table.len() < before, "the shard swept itself");
        assert_eq!(counted(&table), table.len(), "after a shard swept itself");
        let held = table.len();
        assert_eq!(table.sweep(now + 120_000_000_000), held, "every key idle");
        assert_eq!((counted(&table), table.len()), (0, 0));
        assert!(table.peek(&kept, quota, || now).is_none());
        table.charge(&kept, |k| *k, quota, now, i64::MAX);
        assert_eq!(counted(&table), 1);
        assert!(table.peek(&kept, quota, || now).is_some());
    }

    #[test]
    fn shards_are_a_power_of_two_within_the_key_bound() {
        assert_eq!(prev_power_of_two(1), 1);
        assert_eq!(prev_power_of_two(100), 64);
        assert_eq!(limiter(10, 64).0.table.shards.len(), 8);
        assert_eq!(limiter(10, 64).0.max_keys(), 8);
        assert_eq!(limiter(1000, 0).0.table.shards.len(), 1);
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
        clock.advance(std::time::Duration::from_millis(999));
        assert_eq!(limiter.sweep(), 0);
        clock.advance(std::time::Duration::from_millis(1));
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
                let _ = limiter.check_sync(&format!("k{i}"), quota).unwrap();
            }
        }
        assert_eq!(limiter.len(), 32);
        clock.advance(std::time::Duration::from_secs(1));
        let _ = limiter.check_sync("new", quota).unwrap();
        // Nothing idle: 32 / 16 = 2 keys go, those used least (k0, k1).
        assert_eq!(limiter.len(), 31);
        let shard = lock(&limiter.table.shards[0]);
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
            let _ = limiter.check_sync(&format!("k{i}"), quota).unwrap();
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
            let _ = limiter.check_sync(&format!("ip:{i}"), quota).unwrap();
            if i % 100 == 0 {
                clock.advance(std::time::Duration::from_millis(10));
            }
        }
        assert!(limiter.len() <= 1_000);
        let bounded = limiter.memory_estimate();
        clock.advance(std::time::Duration::from_secs(1));
        limiter.sweep();
        assert!(limiter.is_empty());
        assert!(limiter.memory_estimate() < bounded);
    }

    #[test]
    fn the_system_clock_is_read_directly_and_agrees() {
        let system = MemoryRateLimiter::new();
        assert!(system.system_clock);
        let before = unix_nanos(SystemClock.now());
        let now = system.now();
        assert!(before <= now && now <= unix_nanos(SystemClock.now()));
        assert!(
            MemoryRateLimiter::builder()
                .clock(SystemClock)
                .build()
                .system_clock
        );
        assert!(!limiter(1, 1).0.system_clock);
    }
}
