//! Fixtures shared by the integration tests: both products' catalogs and a
//! keyring on a manual clock.
#![allow(dead_code, unreachable_pub)]

use keyward::{KeyKind, KeyStore, Keyring, ManualClock, MemoryStore, ScopeCatalog, ScopeStatus};
use time::OffsetDateTime;

/// PlayerOS: `read` and `write`, both enforced; `write` implies `read`.
pub fn player_os() -> ScopeCatalog {
    ScopeCatalog::builder()
        .scope("read", "Read players and events", ScopeStatus::Enforced)
        .scope("write", "Create and change players", ScopeStatus::Enforced)
        .implies("write", "read")
        .build()
        .unwrap()
}

/// PlayableLabs: a resource:action grid, only two scopes enforced.
pub fn playable_labs() -> ScopeCatalog {
    let mut b = ScopeCatalog::builder();
    for (name, status) in [
        ("games:read", ScopeStatus::Soon),
        ("games:write", ScopeStatus::Soon),
        ("games:delete", ScopeStatus::Soon),
        ("versions:read", ScopeStatus::Soon),
        ("versions:write", ScopeStatus::Enforced),
        ("assets:read", ScopeStatus::Soon),
        ("assets:write", ScopeStatus::Enforced),
        ("exports:read", ScopeStatus::Soon),
        ("exports:create", ScopeStatus::Soon),
    ] {
        b = b.scope(name, &format!("{name} permission"), status);
    }
    b.allow_wildcards().build().unwrap()
}

pub fn start() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

/// A keyring with `pk` (PlayerOS, default read+write) and `pl` kinds on
/// `store`, a manual clock and a 60 s last-used interval.
pub fn keyring_on(store: impl KeyStore) -> (Keyring, ManualClock) {
    let clock = ManualClock::new(start());
    (keyring_with_clock(store, clock.clone()), clock)
}

/// The same keyring on `clock`.
pub fn keyring_with_clock(store: impl KeyStore, clock: ManualClock) -> Keyring {
    Keyring::builder()
        .store(store)
        .kind(
            KeyKind::new("pk", player_os())
                .unwrap()
                .default_scopes(["read", "write"])
                .unwrap(),
        )
        .kind(KeyKind::new("pl", playable_labs()).unwrap())
        .clock(clock)
        .last_used_interval(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A keyring on a memory store that shares its clock (immediate revocations
/// are stamped with the store's clock).
pub fn keyring() -> (Keyring, ManualClock) {
    let clock = ManualClock::new(start());
    let store = MemoryStore::with_clock(clock.clone());
    (keyring_with_clock(store, clock.clone()), clock)
}

/// Tracing output captured in memory (at TRACE, without colours), for
/// tests that check what is logged.
#[derive(Clone, Default)]
pub struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's tracing output until the guard drops.
pub fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (capture, tracing::subscriber::set_default(subscriber))
}

pub mod lifecycle;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod race;
#[cfg(feature = "http")]
pub mod usage;

/// A hook that lets every request through: with one, `AuthLayer` checks
/// asynchronously (verification, then the hook).
#[cfg(feature = "http")]
pub struct PassHook;

#[cfg(feature = "http")]
#[keyward::async_trait]
impl keyward::http::AuthHook for PassHook {
    async fn after_authentication(
        &self,
        _: &keyward::http::Principal,
        _: &mut http::request::Parts,
    ) -> Result<(), keyward::http::Rejection> {
        Ok(())
    }
}
