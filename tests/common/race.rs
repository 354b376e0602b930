//! The revocation race shared by the memory and PostgreSQL tests: tasks
//! verify while one revokes every other key and another issues more; no
//! verification that starts after a `revoke` returned may pass.
//!
//! That stress run finds a race only by luck; [`revoke_during_a_held_lookup`]
//! lands the revocation at the racy point every time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyward::store::CachedStore;
use keyward::testing::FaultyStore;
use keyward::{KeyId, KeyStore, Keyring, NewKey, TenantId, VerifyError};

/// The race's size and pacing.
pub struct Race {
    /// `pk` keys issued before the race (tenant `p`).
    pub keys: usize,
    /// Verifying tasks.
    pub verifiers: usize,
    /// Verifications per task.
    pub rounds: usize,
    /// Task `t` starts at key `t * stride`.
    pub stride: usize,
    /// `pl` keys issued during the race (tenant `o`).
    pub issues: usize,
    /// The revoker's pause between revocations; `None` yields once.
    pub revoke_pause: Option<Duration>,
}

/// Runs the race on `keyring` (a fresh store: tenant `o` must be empty).
pub async fn revoke_races_verify(keyring: Keyring, race: Race) {
    let mut tokens = Vec::new();
    let mut ids: Vec<KeyId> = Vec::new();
    for i in 0..race.keys {
        let issued = keyring
            .issue(NewKey::new("pk", "p", &format!("k{i}")))
            .await
            .unwrap();
        tokens.push(issued.token.expose_secret().to_owned());
        ids.push(issued.info.id().clone());
    }
    let tokens = Arc::new(tokens);
    let revoked: Arc<Vec<AtomicBool>> =
        Arc::new((0..race.keys).map(|_| Default::default()).collect());
    let mut verifiers = Vec::new();
    for t in 0..race.verifiers {
        let (keyring, tokens, revoked) = (keyring.clone(), tokens.clone(), revoked.clone());
        let (rounds, stride, keys) = (race.rounds, race.stride, race.keys);
        verifiers.push(tokio::spawn(async move {
            let mut violations = 0;
            for round in 0..rounds {
                let i = (t * stride + round) % keys;
                // Read the flag before verifying: if revoke had returned by
                // then, the verification must fail.
                let was_revoked = revoked[i].load(Ordering::SeqCst);
                let result = keyring.verify(&tokens[i]).await;
                if let Err(VerifyError::Store(err)) = &result {
                    panic!("store error: {err}");
                }
                if was_revoked && result.is_ok() {
                    violations += 1;
                }
            }
            violations
        }));
    }
    let revoker = {
        let (keyring, revoked, pause) = (keyring.clone(), revoked.clone(), race.revoke_pause);
        tokio::spawn(async move {
            for (i, id) in ids.iter().enumerate().step_by(2) {
                keyring.revoke(id).await.unwrap();
                revoked[i].store(true, Ordering::SeqCst);
                match pause {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => tokio::task::yield_now().await,
                }
            }
        })
    };
    let issuer = {
        let (keyring, issues) = (keyring.clone(), race.issues);
        tokio::spawn(async move {
            for i in 0..issues {
                keyring
                    .issue(NewKey::new("pl", "o", &format!("n{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    revoker.await.unwrap();
    issuer.await.unwrap();
    for v in verifiers {
        assert_eq!(
            v.await.unwrap(),
            0,
            "a key verified after its revoke returned"
        );
    }
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(keyring.verify(token).await.is_ok(), i % 2 == 1, "key {i}");
    }
    let listed = keyring.list(&TenantId::parse("o").unwrap()).await.unwrap();
    assert_eq!(listed.len(), race.issues);
}

/// The race made deterministic, through `Keyring::verify` on a
/// `CachedStore` over `inner`: a verification reads the still active key,
/// the store holds its answer while `revoke` runs to completion, then the
/// verification answers (and passes: it started first). The cache must not
/// have kept that answer: the next verification refuses the key.
pub async fn revoke_during_a_held_lookup<S: KeyStore>(inner: FaultyStore<S>) {
    let (keyring, _) = super::keyring_on(CachedStore::new(inner.clone()));
    let issued = keyring.issue(NewKey::new("pk", "p", "held")).await.unwrap();
    let token = issued.token.expose_secret().to_owned();
    let hold = inner.hold_next_lookup();
    let mut verify = tokio::spawn({
        let (keyring, token) = (keyring.clone(), token.clone());
        async move { keyring.verify(&token).await.map(|key| key.id().clone()) }
    });
    tokio::select! {
        () = hold.reached() => {}
        answer = &mut verify => panic!("answered without reading the store: {answer:?}"),
    }
    keyring.revoke(issued.info.id()).await.unwrap();
    hold.release();
    assert_eq!(verify.await.unwrap().unwrap(), issued.info.id().clone());
    assert!(matches!(
        keyring.verify(&token).await.unwrap_err(),
        VerifyError::Revoked
    ));
}
