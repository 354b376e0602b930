//! Floods: a million well-formed but unknown tokens through
//! `Keyring::verify` on a `CachedStore<MemoryStore>` leave memory bounded.
//!
//! `KEYWARD_FLOOD_N` sets the count (1,000,000 by default; about 20 s of CPU
//! in a debug build). Run with `--nocapture` to see the cache size and the
//! process's resident memory before and after.

mod common;

use keyward::store::CachedStore;
use keyward::{MemoryRateLimiter, MemoryStore, NewKey, Quota, TokenKind, VerifyError};

fn flood_n() -> usize {
    std::env::var("KEYWARD_FLOOD_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000)
}

/// Resident memory in KiB (Linux), to report alongside the asserted bounds.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_flood_of_unknown_tokens_leaves_memory_bounded() {
    const CAPACITY: usize = 1_000;
    let store = CachedStore::builder(MemoryStore::new())
        .capacity(CAPACITY)
        .build();
    let (keyring, _) = common::keyring_on(store.clone());
    // The host's limiter, keyed by key id and consulted only once a key has
    // verified (as the authentication layer does).
    let limiter = MemoryRateLimiter::new();
    let quota = Quota::per_minute(100).unwrap();
    let real = keyring.issue(NewKey::new("pk", "p", "real")).await.unwrap();
    let key = keyring.verify(real.token.expose_secret()).await.unwrap();
    let _ = limiter.check_sync(key.id().as_str(), quota).unwrap();
    let pending = keyring.pending_last_used();
    // The known key plus at most a quarter of the room for misses.
    let bound = 1 + CAPACITY / 4;

    let kinds = [TokenKind::new("pk").unwrap(), TokenKind::new("pl").unwrap()];
    let n = flood_n();
    let before = rss_kib();
    for i in 0..n {
        let token = kinds[i % 2].generate();
        match keyring.verify(token.expose_secret()).await {
            Err(VerifyError::Unknown) => {}
            Err(err) => panic!("flood token {i}: {err}"),
            Ok(_) => panic!("flood token {i} verified"),
        }
        if i % 4096 == 0 {
            assert!(store.cached() <= bound, "{} cached at {i}", store.cached());
        }
    }
    let after = rss_kib();
    eprintln!(
        "flood of {n}: cache {} entries (bound {bound}), RSS {before:?} KiB -> {after:?} KiB",
        store.cached()
    );

    assert!(store.cached() <= bound);
    assert_eq!(
        keyring.pending_last_used(),
        pending,
        "unknown tokens are not tracked"
    );
    assert_eq!(limiter.len(), 1, "only the verified key is rate-limited");
    // The flood did not push the real key out, nor break it.
    assert!(keyring.verify(real.token.expose_secret()).await.is_ok());
    if let (Some(before), Some(after)) = (before, after) {
        assert!(
            after.saturating_sub(before) < 64 * 1024,
            "RSS grew from {before} KiB to {after} KiB"
        );
    }
}
