//! Verification cost per store: memory, the cache in front of PostgreSQL
//! (target: within 1.2x of memory), and PostgreSQL uncached (one round
//! trip). The PostgreSQL cases need `DATABASE_URL` and are skipped without it:
//!
//! ```sh
//! KEYWARD_TEST_CMD='cargo bench --features postgres --bench store' scripts/test.sh
//! ```
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use keyward::store::postgres::PgStore;
use keyward::store::CachedStore;
use keyward::{KeyKind, KeyStore, Keyring, MemoryStore, NewKey, ScopeCatalog, ScopeStatus};

fn keyring(store: impl KeyStore) -> Keyring {
    let catalog = ScopeCatalog::builder()
        .scope("read", "", ScopeStatus::Enforced)
        .build()
        .unwrap();
    Keyring::builder()
        .store(store)
        .kind(
            KeyKind::new("pk", catalog)
                .unwrap()
                .default_scopes(["read"])
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn bench_verify(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, keyring: Keyring) {
    let token = rt
        .block_on(keyring.issue(NewKey::new("pk", "bench", "k")))
        .unwrap()
        .token;
    c.bench_function(name, |b| {
        b.to_async(rt)
            .iter(|| async { keyring.verify(token.expose_secret()).await.unwrap() })
    });
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    bench_verify(c, &rt, "verify/memory", keyring(MemoryStore::new()));
    bench_verify(
        c,
        &rt,
        "verify/cached_memory",
        keyring(CachedStore::new(MemoryStore::new())),
    );

    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("note: DATABASE_URL is not set; skipping the PostgreSQL benches");
        return;
    };
    let schema = format!(
        "kw_bench_{}",
        keyward::KeyId::generate().as_str()[4..14].to_ascii_lowercase()
    );
    let pg = PgStore::builder(&url).schema(&schema).build().unwrap();
    if let Err(err) = rt.block_on(pg.migrate()) {
        eprintln!("note: PostgreSQL unreachable ({err}); skipping the PostgreSQL benches");
        return;
    }
    let cached = CachedStore::new(pg.clone());
    let _listener = rt.block_on(async { pg.listen(cached.invalidator()).unwrap() });
    bench_verify(c, &rt, "verify/cached_postgres", keyring(cached));
    bench_verify(c, &rt, "verify/postgres", keyring(pg));
}

criterion_group!(benches, stores);
criterion_main!(benches);
