//! Core costs: token generation, parsing, hashing, issue and verify on the
//! memory store.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use keyward::{
    KeyKind, Keyring, MemoryStore, NewKey, Pepper, ScopeCatalog, ScopeStatus, TokenFormat,
    TokenHasher, TokenKind,
};

fn keyring(hasher: TokenHasher) -> Keyring {
    let catalog = ScopeCatalog::builder()
        .scope("read", "", ScopeStatus::Enforced)
        .scope("write", "", ScopeStatus::Enforced)
        .build()
        .unwrap();
    Keyring::builder()
        .store(MemoryStore::new())
        .kind(
            KeyKind::new("pk", catalog)
                .unwrap()
                .default_scopes(["read"])
                .unwrap(),
        )
        .hasher(hasher)
        .build()
        .unwrap()
}

fn tokens(c: &mut Criterion) {
    let kind = TokenKind::new("pk").unwrap();
    let format = TokenFormat::new([kind.clone()]);
    let token = kind.generate();
    c.bench_function("token/generate", |b| b.iter(|| kind.generate()));
    c.bench_function("token/parse", |b| {
        b.iter(|| format.parse(token.expose_secret()).is_ok())
    });
    let sha = TokenHasher::sha256();
    let hmac = TokenHasher::hmac(Pepper::new(1, vec![7; 32]).unwrap());
    c.bench_function("hash/sha256", |b| {
        b.iter(|| sha.hash(token.expose_secret()))
    });
    c.bench_function("hash/hmac", |b| b.iter(|| hmac.hash(token.expose_secret())));
}

fn keyring_ops(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (name, hasher) in [
        ("sha256", TokenHasher::sha256()),
        (
            "hmac",
            TokenHasher::hmac(Pepper::new(1, vec![7; 32]).unwrap()),
        ),
    ] {
        let keyring = keyring(hasher);
        let mut last = None;
        rt.block_on(async {
            for i in 0..100_000 {
                last = Some(
                    keyring
                        .issue(NewKey::new("pk", &format!("t{}", i % 1000), "bench"))
                        .await
                        .unwrap(),
                );
            }
        });
        let token = last.unwrap().token;
        c.bench_function(&format!("keyring/verify/{name}/100k_keys"), |b| {
            b.iter(|| rt.block_on(keyring.verify(token.expose_secret())).is_ok())
        });
        c.bench_function(&format!("keyring/issue/{name}"), |b| {
            b.iter(|| {
                rt.block_on(keyring.issue(NewKey::new("pk", "t", "bench")))
                    .is_ok()
            })
        });
    }
}

criterion_group!(benches, tokens, keyring_ops);
criterion_main!(benches);
