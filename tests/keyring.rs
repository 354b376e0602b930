//! The key lifecycle through the public API: issue, verify, list, get,
//! revoke, rotate, expiry, last-used coalescing, concurrency.

mod common;

use common::race::{revoke_races_verify, Race};
use common::{keyring, keyring_on, keyring_with_clock, start};
use keyward::store::CachedStore;
use keyward::testing::{Fault, FaultyStore, Op};
use keyward::{
    Decision, Expiry, IssueError, KeyId, Keyring, ManageError, ManualClock, MemoryStore, NewKey,
    RateLimit, Requirement, ScopeError, TenantId, TokenError, VerifyError,
};
use time::{Duration, OffsetDateTime};

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

#[tokio::test]
async fn issue_then_verify_both_products() {
    let (keyring, _) = keyring();
    let pk = keyring
        .issue(NewKey::new("pk", "prop_1", "Backend"))
        .await
        .unwrap();
    assert!(pk.token.expose_secret().starts_with("pk_"));
    assert_eq!(pk.info.display_prefix(), &pk.token.expose_secret()[..8]);
    assert_eq!(pk.info.scopes().to_string(), "read write");
    assert_eq!(pk.info.rate_limit(), RateLimit::default());
    assert_eq!(pk.info.expires_at(), None);

    let key = keyring.verify(pk.token.expose_secret()).await.unwrap();
    assert_eq!(key.id(), pk.info.id());
    assert_eq!(key.tenant(), &tenant("prop_1"));
    assert_eq!(key.kind().prefix(), "pk");

    let pl = keyring
        .issue(
            NewKey::new("pl", "org_1", "CI")
                .scopes(["versions:write", "games:read"])
                .expires(Expiry::Days30),
        )
        .await
        .unwrap();
    assert_eq!(pl.info.expires_at(), Some(start() + Duration::days(30)));
    let key = keyring.verify(pl.token.expose_secret()).await.unwrap();
    let upload = Requirement::all(["versions:write"]).unwrap();
    let assets = Requirement::all(["assets:write"]).unwrap();
    assert_eq!(key.check(&upload), Decision::Allowed);
    assert!(matches!(key.check(&assets), Decision::Denied { .. }));
}

#[tokio::test]
async fn read_only_keys_on_request() {
    let (keyring, _) = keyring();
    let ro = keyring
        .issue(NewKey::new("pk", "prop_1", "Analytics").scopes(["read"]))
        .await
        .unwrap();
    let key = keyring.verify(ro.token.expose_secret()).await.unwrap();
    let write = Requirement::all(["write"]).unwrap();
    assert_eq!(
        key.check(&write),
        Decision::Denied {
            missing: vec!["write".parse().unwrap()]
        }
    );
}

#[tokio::test]
async fn issue_refuses_bad_input() {
    let (keyring, clock) = keyring();
    let err = keyring
        .issue(NewKey::new("pk", "p", "n").scopes(["admin"]))
        .await
        .unwrap_err();
    assert!(matches!(err, IssueError::Scope(ScopeError::Unknown(s)) if s == "admin"));
    let err = keyring
        .issue(NewKey::new("pk", "p", "n").scopes(["Bad Scope"]))
        .await
        .unwrap_err();
    assert!(matches!(err, IssueError::Scope(ScopeError::Invalid(_))));
    // PlayerOS does not allow wildcards; PlayableLabs does.
    assert!(keyring
        .issue(NewKey::new("pk", "p", "n").scopes(["*"]))
        .await
        .is_err());
    assert!(keyring
        .issue(NewKey::new("pl", "o", "n").scopes(["games:*"]))
        .await
        .is_ok());
    assert!(matches!(
        keyring
            .issue(NewKey::new("gh", "p", "n"))
            .await
            .unwrap_err(),
        IssueError::UnknownKind(_)
    ));
    for name in ["", "   ", "a\u{0}b", &"x".repeat(201)] {
        assert!(matches!(
            keyring
                .issue(NewKey::new("pk", "p", name))
                .await
                .unwrap_err(),
            IssueError::InvalidName
        ));
    }
    assert!(matches!(
        keyring.issue(NewKey::new("pk", "", "n")).await.unwrap_err(),
        IssueError::InvalidTenant
    ));
    assert!(matches!(
        keyring
            .issue(NewKey::new("pk", "p", "n").expires(Expiry::At(clock.now_for_test())))
            .await
            .unwrap_err(),
        IssueError::ExpiryInPast
    ));
    assert!(matches!(
        keyring
            .issue(NewKey::new("pk", "p", "n").metadata("k", &"v".repeat(2000)))
            .await
            .unwrap_err(),
        IssueError::InvalidMetadata
    ));
}

trait NowForTest {
    fn now_for_test(&self) -> OffsetDateTime;
}
impl NowForTest for keyward::ManualClock {
    fn now_for_test(&self) -> OffsetDateTime {
        keyward::Clock::now(self)
    }
}

#[tokio::test]
async fn verify_errors_are_typed() {
    let (keyring, _) = keyring();
    let issued = keyring.issue(NewKey::new("pl", "org", "n")).await.unwrap();
    let token = issued.token.expose_secret();

    let mut typo = token.as_bytes().to_vec();
    typo[10] = if typo[10] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    assert!(matches!(
        keyring.verify(&typo).await.unwrap_err(),
        VerifyError::Malformed(TokenError::BadChecksum)
    ));
    assert!(matches!(
        keyring.verify("").await.unwrap_err(),
        VerifyError::Malformed(TokenError::Empty)
    ));
    assert!(matches!(
        keyring.verify(&token[..20]).await.unwrap_err(),
        VerifyError::Malformed(TokenError::BadLength)
    ));
    // A well-formed token nobody issued.
    let stranger = keyward::TokenKind::new("pl").unwrap().generate();
    assert!(matches!(
        keyring.verify(stranger.expose_secret()).await.unwrap_err(),
        VerifyError::Unknown
    ));
}

#[tokio::test]
async fn expiry_presets_end_access() {
    let (keyring, clock) = keyring();
    for (preset, days) in [
        (Expiry::Days30, 30_u64),
        (Expiry::Days90, 90),
        (Expiry::Year1, 365),
    ] {
        let issued = keyring
            .issue(NewKey::new("pl", "org", "n").expires(preset))
            .await
            .unwrap();
        clock.advance(std::time::Duration::from_secs(days * 86_400 - 1));
        assert!(keyring.verify(issued.token.expose_secret()).await.is_ok());
        clock.advance(std::time::Duration::from_secs(1));
        assert!(matches!(
            keyring
                .verify(issued.token.expose_secret())
                .await
                .unwrap_err(),
            VerifyError::Expired
        ));
    }
    let never = keyring.issue(NewKey::new("pl", "org", "n")).await.unwrap();
    clock.advance(std::time::Duration::from_secs(315360000));
    assert!(keyring.verify(never.token.expose_secret()).await.is_ok());
}

#[tokio::test]
async fn revoke_is_immediate_idempotent_and_listed() {
    let (keyring, clock) = keyring();
    let issued = keyring.issue(NewKey::new("pl", "org", "n")).await.unwrap();
    let first = keyring.revoke(issued.info.id()).await.unwrap();
    assert_eq!(first.revoked_at(), Some(start()));
    assert!(matches!(
        keyring
            .verify(issued.token.expose_secret())
            .await
            .unwrap_err(),
        VerifyError::Revoked
    ));
    clock.advance(std::time::Duration::from_secs(3600));
    let again = keyring.revoke(issued.info.id()).await.unwrap();
    assert_eq!(
        again.revoked_at(),
        Some(start()),
        "a second revoke keeps the first instant"
    );
    assert!(matches!(
        keyring.revoke(&KeyId::generate()).await.unwrap_err(),
        ManageError::NotFound
    ));
    let listed = keyring.list(&tenant("org")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at(), Some(start()));
}

#[tokio::test]
async fn list_and_get_show_no_secrets() {
    let (keyring, _) = keyring();
    let a = keyring
        .issue(NewKey::new("pk", "prop_1", "a"))
        .await
        .unwrap();
    let _b = keyring
        .issue(NewKey::new("pk", "prop_1", "b"))
        .await
        .unwrap();
    let _c = keyring
        .issue(NewKey::new("pk", "prop_2", "c"))
        .await
        .unwrap();
    let listed = keyring.list(&tenant("prop_1")).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.name()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let json = serde_json::to_string(&listed).unwrap();
    assert!(!json.contains(a.token.expose_secret()));
    assert!(!json.contains("hash"));
    let got = keyring.get(a.info.id()).await.unwrap();
    assert_eq!(got, a.info);
    assert!(format!("{:?}", a).contains("[REDACTED]"));
    assert!(!format!("{:?}", a).contains(a.token.expose_secret()));
}

#[tokio::test]
async fn rotate_keeps_the_old_key_for_the_grace_period() {
    let (keyring, clock) = keyring();
    let old = keyring
        .issue(
            NewKey::new("pl", "org", "deploy")
                .scopes(["assets:write"])
                .expires(Expiry::Days90)
                .rate_limit(RateLimit::per_minute(7).unwrap()),
        )
        .await
        .unwrap();
    clock.advance(std::time::Duration::from_secs(864000));
    let new = keyring
        .rotate(old.info.id(), std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(new.info.rotated_from(), Some(old.info.id()));
    assert_eq!(new.info.scopes(), old.info.scopes());
    assert_eq!(new.info.rate_limit(), old.info.rate_limit());
    // Rotation replaces the secret, never the expiry.
    assert_eq!(new.info.expires_at(), old.info.expires_at());
    assert_ne!(new.token.expose_secret(), old.token.expose_secret());

    assert!(keyring.verify(old.token.expose_secret()).await.is_ok());
    clock.advance(std::time::Duration::from_secs(3540));
    assert!(keyring.verify(old.token.expose_secret()).await.is_ok());
    clock.advance(std::time::Duration::from_secs(60));
    assert!(matches!(
        keyring.verify(old.token.expose_secret()).await.unwrap_err(),
        VerifyError::Revoked
    ));
    assert!(keyring.verify(new.token.expose_secret()).await.is_ok());
    assert!(matches!(
        keyring
            .rotate(old.info.id(), std::time::Duration::ZERO)
            .await
            .unwrap_err(),
        IssueError::Inactive
    ));
    // A grace past the end of time is clamped, not a panic.
    let far = keyring
        .rotate(new.info.id(), std::time::Duration::MAX)
        .await
        .unwrap();
    assert!(keyring.verify(new.token.expose_secret()).await.is_ok());
    assert!(keyring.verify(far.token.expose_secret()).await.is_ok());
}

/// Revocation does not depend on clocks: two keyrings share one store, the
/// verifier's clock 120 s behind the revoker's and the store's. Once
/// `revoke` returns, the verifier refuses the key: directly, and through its
/// own `CachedStore` once that is told (as a `RevocationListener` tells it).
#[tokio::test]
async fn a_keyring_whose_clock_lags_refuses_a_key_once_revoke_returns() {
    let store = MemoryStore::with_clock(ManualClock::new(start()));
    let revoker = keyring_with_clock(store.clone(), ManualClock::new(start()));
    let lag = ManualClock::new(start() - Duration::seconds(120));
    let lagging = keyring_with_clock(store.clone(), lag.clone());
    let cache = CachedStore::builder(store.clone())
        .clock(lag.clone())
        .build();
    let lagging_cached = keyring_with_clock(cache.clone(), lag);

    let issued = revoker.issue(NewKey::new("pk", "p", "k")).await.unwrap();
    let token = issued.token.expose_secret();
    lagging.verify(token).await.unwrap();
    lagging_cached.verify(token).await.unwrap();

    let info = revoker.revoke(issued.info.id()).await.unwrap();
    assert_eq!(info.revoked_at(), Some(start()), "on the store's clock");
    assert!(matches!(
        lagging.verify(token).await.unwrap_err(),
        VerifyError::Revoked
    ));
    // The other process's cache still holds the old record until told.
    lagging_cached.verify(token).await.unwrap();
    cache.invalidator().invalidate(issued.info.id());
    assert!(matches!(
        lagging_cached.verify(token).await.unwrap_err(),
        VerifyError::Revoked
    ));
}

/// A rotation's grace is a scheduled revocation: each verifier counts it on
/// its own clock, so one 120 s behind accepts the old key 120 s longer; an
/// immediate revoke ends the grace everywhere at once.
#[tokio::test]
async fn a_grace_period_counts_on_each_clock_until_revoked_now() {
    let rotator_clock = ManualClock::new(start());
    let store = MemoryStore::with_clock(rotator_clock.clone());
    let rotator = keyring_with_clock(store.clone(), rotator_clock.clone());
    let lag = ManualClock::new(start() - Duration::seconds(120));
    let lagging = keyring_with_clock(store.clone(), lag.clone());
    let old = rotator.issue(NewKey::new("pk", "p", "k")).await.unwrap();
    let token = old.token.expose_secret();
    rotator
        .rotate(old.info.id(), std::time::Duration::from_secs(3600))
        .await
        .unwrap();

    rotator_clock.advance(std::time::Duration::from_secs(3600));
    lag.advance(std::time::Duration::from_secs(3600));
    assert!(matches!(
        rotator.verify(token).await.unwrap_err(),
        VerifyError::Revoked
    ));
    lagging.verify(token).await.unwrap();
    let info = rotator.revoke(old.info.id()).await.unwrap();
    assert_eq!(
        info.revoked_at(),
        Some(start() + Duration::hours(1)),
        "an immediate revoke never postpones the scheduled instant"
    );
    assert!(matches!(
        lagging.verify(token).await.unwrap_err(),
        VerifyError::Revoked
    ));
}

#[tokio::test]
async fn ten_thousand_verifications_write_once_per_interval() {
    let store = FaultyStore::new(MemoryStore::new());
    let (keyring, clock) = keyring_on(store.clone());
    let issued = keyring.issue(NewKey::new("pk", "p", "busy")).await.unwrap();
    let token = issued.token.expose_secret();
    // 10,000 verifications spread over 5 minutes: 30 ms apart.
    for _ in 0..10_000 {
        keyring.verify(token).await.unwrap();
        clock.advance(std::time::Duration::from_millis(30));
    }
    // Due at 60, 120, 180, 240 s; the 300 s write is still pending.
    assert_eq!(store.calls(Op::Touch), 4);
    assert_eq!(store.touched_ids(), 4);
    assert_eq!(keyring.pending_last_used(), 1);
    assert_eq!(keyring.flush_last_used().await.unwrap(), 1);
    assert_eq!(keyring.pending_last_used(), 0);
    let info = keyring.get(issued.info.id()).await.unwrap();
    assert_eq!(
        info.last_used_at(),
        Some(start() + Duration::milliseconds(30 * 9_999))
    );
}

#[tokio::test]
async fn a_failed_last_used_write_is_retried_and_never_fails_verify() {
    let store = FaultyStore::new(MemoryStore::new());
    let (keyring, clock) = keyring_on(store.clone());
    let issued = keyring.issue(NewKey::new("pk", "p", "n")).await.unwrap();
    let token = issued.token.expose_secret();
    store.set_fault_on(Op::Touch, Fault::Fail);
    keyring.verify(token).await.unwrap();
    clock.advance(std::time::Duration::from_secs(60));
    keyring.verify(token).await.unwrap(); // the write fails, the request does not
    assert_eq!(keyring.pending_last_used(), 1);
    assert!(keyring.flush_last_used().await.is_err());
    assert_eq!(keyring.pending_last_used(), 1);
    store.set_fault_on(Op::Touch, Fault::None);
    clock.advance(std::time::Duration::from_secs(60));
    keyring.verify(token).await.unwrap();
    assert_eq!(store.calls(Op::Touch), 1);
    let info = keyring.get(issued.info.id()).await.unwrap();
    assert_eq!(info.last_used_at(), Some(start() + Duration::seconds(120)));
}

#[tokio::test]
async fn store_errors_fail_closed() {
    // A store whose every call fails: verify must fail closed.
    let store = FaultyStore::new(MemoryStore::new());
    store.set_fault(Fault::Fail);
    let (keyring, _) = keyring_on(store);
    let token = keyward::TokenKind::new("pk").unwrap().generate();
    let err = keyring.verify(token.expose_secret()).await.unwrap_err();
    assert!(matches!(err, VerifyError::Store(e) if e.is_unavailable()));
    assert!(matches!(
        keyring
            .issue(NewKey::new("pk", "p", "n"))
            .await
            .unwrap_err(),
        IssueError::Store(_)
    ));
    // Malformed input never reaches the store.
    assert!(matches!(
        keyring.verify("pk_short").await.unwrap_err(),
        VerifyError::Malformed(_)
    ));
    // Management within a tenant: a store failure is the store's, never
    // "not found" (which a caller would take for an answer).
    let id = keyward::KeyId::generate();
    let t = tenant("p");
    assert!(matches!(
        keyring.get_in(&t, &id).await.unwrap_err(),
        ManageError::Store(_)
    ));
    assert!(matches!(
        keyring.revoke_in(&t, &id).await.unwrap_err(),
        ManageError::Store(_)
    ));
    assert!(matches!(
        keyring
            .rotate_in(&t, &id, std::time::Duration::ZERO)
            .await
            .unwrap_err(),
        IssueError::Store(_)
    ));
}

/// Tenant-scoped operations: another tenant's key is not found, exactly
/// like an unknown id, and stays as it was.
#[tokio::test]
async fn another_tenants_key_is_not_found_within_a_tenant() {
    let (keyring, _) = keyring();
    let issued = keyring.issue(NewKey::new("pk", "p1", "n")).await.unwrap();
    let id = issued.info.id();
    let other = tenant("p2");
    assert!(matches!(
        keyring.get_in(&other, id).await,
        Err(ManageError::NotFound)
    ));
    assert!(matches!(
        keyring.revoke_in(&other, id).await,
        Err(ManageError::NotFound)
    ));
    assert!(matches!(
        keyring
            .rotate_in(&other, id, std::time::Duration::ZERO)
            .await,
        Err(IssueError::NotFound)
    ));
    let own = keyring.get_in(&tenant("p1"), id).await.unwrap();
    assert!(own.revoked_at().is_none(), "left as it was");
    assert!(keyring.verify(issued.token.expose_secret()).await.is_ok());
}

#[tokio::test]
async fn a_pepper_rotation_keeps_old_keys_working() {
    use keyward::{HashScheme, KeyKind, ManualClock, Pepper, TokenHasher};
    let store = MemoryStore::new();
    let build = |hasher: TokenHasher| {
        Keyring::builder()
            .store(store.clone())
            .kind(KeyKind::new("pk", common::player_os()).unwrap())
            .hasher(hasher)
            .clock(ManualClock::new(start()))
            .build()
            .unwrap()
    };
    let v1 = || Pepper::new(1, b"first pepper, 16 bytes or more".to_vec()).unwrap();
    let v2 = Pepper::new(2, b"second pepper, also long enough".to_vec()).unwrap();
    let before = build(TokenHasher::hmac(v1()));
    let old = before.issue(NewKey::new("pk", "p", "old")).await.unwrap();

    let after = build(
        TokenHasher::hmac(v2)
            .with_previous(HashScheme::Hmac(v1()))
            .unwrap(),
    );
    assert!(after.verify(old.token.expose_secret()).await.is_ok());
    let new = after.issue(NewKey::new("pk", "p", "new")).await.unwrap();
    assert!(after.verify(new.token.expose_secret()).await.is_ok());
    // The old keyring does not know pepper 2.
    assert!(matches!(
        before.verify(new.token.expose_secret()).await.unwrap_err(),
        VerifyError::Unknown
    ));
    // Without the previous pepper, old keys stop working.
    let only_v2 = build(TokenHasher::hmac(
        Pepper::new(2, b"second pepper, also long enough".to_vec()).unwrap(),
    ));
    assert!(matches!(
        only_v2.verify(old.token.expose_secret()).await.unwrap_err(),
        VerifyError::Unknown
    ));
}

/// 16 tasks verify 64 keys while another revokes every other one and a third
/// issues more: no verification that starts after a revoke returned passes.
const RACE: Race = Race {
    keys: 64,
    verifiers: 16,
    rounds: 2_000,
    stride: 7,
    issues: 200,
    revoke_pause: None,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_key_never_verifies_after_revoke_returns() {
    revoke_races_verify(keyring().0, RACE).await;
}

/// The same through a cache: `revoke` invalidates before it returns, and a
/// lookup racing with it can not put the old record back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_key_never_verifies_after_revoke_returns_through_a_cache() {
    let store = keyward::store::CachedStore::new(MemoryStore::new());
    revoke_races_verify(keyring_on(store).0, RACE).await;
}

/// A `pl` keyring whose tokens are tagged with `current` (and also accept
/// `previous`), on `store`.
fn tagged_keyring(store: impl keyward::KeyStore, current: u8, previous: Option<u8>) -> Keyring {
    use keyward::{KeyKind, TokenKey};
    let key = |version: u8| TokenKey::new(u16::from(version), vec![version; 32]).unwrap();
    let mut kind = KeyKind::new("pl", common::playable_labs())
        .unwrap()
        .token_key(key(current));
    if let Some(previous) = previous {
        kind = kind.previous_token_key(key(previous)).unwrap();
    }
    Keyring::builder().store(store).kind(kind).build().unwrap()
}

#[tokio::test]
async fn forged_tokens_cost_no_store_lookup_with_a_token_key() {
    let store = FaultyStore::new(MemoryStore::new());
    let keyring = tagged_keyring(store.clone(), 1, None);
    let issued = keyring.issue(NewKey::new("pl", "org", "CI")).await.unwrap();
    assert!(keyring.verify(issued.token.expose_secret()).await.is_ok());
    assert_eq!(store.calls(Op::FindByHash), 1);

    // Forgers know the format and the public checksum, not the key: tokens
    // tagged under another key, and untagged tokens of the old format.
    let other_key = keyward::TokenKind::new("pl")
        .unwrap()
        .key(keyward::TokenKey::new(1, vec![9; 32]).unwrap());
    let untagged = keyward::TokenKind::new("pl").unwrap();
    for _ in 0..1_000 {
        let forged = other_key.generate();
        assert!(matches!(
            keyring.verify(forged.expose_secret()).await.unwrap_err(),
            VerifyError::Malformed(TokenError::BadTag)
        ));
        let old_format = untagged.generate();
        assert!(matches!(
            keyring
                .verify(old_format.expose_secret())
                .await
                .unwrap_err(),
            VerifyError::Malformed(TokenError::BadLength)
        ));
    }
    assert_eq!(
        store.calls(Op::FindByHash),
        1,
        "no forged token was looked up"
    );
}

#[tokio::test]
async fn a_token_key_rotation_keeps_issued_tokens_working() {
    let store = MemoryStore::new();
    let before = tagged_keyring(store.clone(), 1, None)
        .issue(NewKey::new("pl", "org", "old"))
        .await
        .unwrap();
    // Rotated: key 2 tags new tokens, key 1 still verifies.
    let rotating = tagged_keyring(store.clone(), 2, Some(1));
    let after = rotating
        .issue(NewKey::new("pl", "org", "new"))
        .await
        .unwrap();
    assert!(rotating.verify(before.token.expose_secret()).await.is_ok());
    assert!(rotating.verify(after.token.expose_secret()).await.is_ok());
    // Key 1 retired: its tokens are refused offline, key 2's still work.
    let retired = tagged_keyring(store, 2, None);
    assert!(matches!(
        retired
            .verify(before.token.expose_secret())
            .await
            .unwrap_err(),
        VerifyError::Malformed(TokenError::BadTag)
    ));
    assert!(retired.verify(after.token.expose_secret()).await.is_ok());
}

/// What a verified key tells a route, and how the keyring's types print:
/// every field as issued, no token anywhere.
#[tokio::test]
async fn a_verified_key_carries_what_was_issued_and_prints_no_secret() {
    let (keyring, _) = keyring();
    let issued = keyring
        .issue(
            NewKey::new("pl", "org_7", "CI uploader")
                .scopes(["versions:write", "assets:write"])
                .expires(Expiry::Days90)
                .rate_limit(RateLimit::per_minute(7).unwrap())
                .metadata("team", "games"),
        )
        .await
        .unwrap();
    let token = issued.token.expose_secret();
    let key = keyring.verify(token).await.unwrap();
    assert_eq!(key.name(), "CI uploader");
    assert_eq!(key.scopes().to_string(), "assets:write versions:write");
    assert_eq!(key.rate_limit(), RateLimit::per_minute(7).unwrap());
    assert_eq!(key.expires_at(), Some(start() + Duration::days(90)));
    assert_eq!(
        key.metadata().get("team").map(String::as_str),
        Some("games")
    );
    assert_eq!(
        key.catalog().entries().len(),
        common::playable_labs().entries().len()
    );

    let debug = format!("{key:?}");
    assert!(debug.starts_with("VerifiedKey { id: "), "{debug}");
    assert!(debug.contains(r#"tenant: "org_7""#), "{debug}");
    let keyring_debug = format!("{keyring:?}");
    assert!(
        keyring_debug.starts_with("Keyring { kinds: ["),
        "{keyring_debug}"
    );
    let builder_debug = format!("{:?}", Keyring::builder());
    assert!(
        builder_debug.starts_with("KeyringBuilder { kinds: [], hasher: "),
        "{builder_debug}"
    );
    for text in [debug, keyring_debug, builder_debug] {
        assert!(!text.contains(token) && !text.contains(&token[3..33]));
    }
}

/// A store that answers a tenant's list with another tenant's keys too (a
/// bug a host store could have): the keyring's pages never show them.
#[derive(Debug)]
struct LeakyList {
    inner: MemoryStore,
    other: TenantId,
}

#[keyward::async_trait]
impl keyward::KeyStore for LeakyList {
    async fn insert(&self, record: keyward::KeyRecord) -> Result<(), keyward::StoreError> {
        self.inner.insert(record).await
    }
    async fn find_by_hash(
        &self,
        hash: &keyward::TokenHash,
    ) -> Result<Option<std::sync::Arc<keyward::KeyRecord>>, keyward::StoreError> {
        self.inner.find_by_hash(hash).await
    }
    async fn get(
        &self,
        id: &KeyId,
    ) -> Result<Option<std::sync::Arc<keyward::KeyRecord>>, keyward::StoreError> {
        self.inner.get(id).await
    }
    async fn list(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<std::sync::Arc<keyward::KeyRecord>>, keyward::StoreError> {
        let mut all = self.inner.list(tenant).await?;
        all.extend(self.inner.list(&self.other).await?);
        Ok(all)
    }
    async fn revoke(
        &self,
        id: &KeyId,
        when: keyward::store::Revocation,
    ) -> Result<Option<std::sync::Arc<keyward::KeyRecord>>, keyward::StoreError> {
        self.inner.revoke(id, when).await
    }
    async fn touch(&self, uses: &[(KeyId, OffsetDateTime)]) -> Result<(), keyward::StoreError> {
        self.inner.touch(uses).await
    }
}

#[tokio::test]
async fn a_page_never_shows_another_tenants_key_whatever_the_store_returns() {
    let (keyring, _) = keyring_on(LeakyList {
        inner: MemoryStore::new(),
        other: tenant("p2"),
    });
    for (t, name) in [("p1", "mine"), ("p2", "theirs"), ("p1", "mine too")] {
        keyring.issue(NewKey::new("pk", t, name)).await.unwrap();
    }
    let page = keyring
        .list_page(&tenant("p1"), &keyward::ListQuery::new())
        .await
        .unwrap();
    let names: Vec<&str> = page.keys().iter().map(|k| k.name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.contains(&"theirs"));
}

/// A page that holds exactly the last keys has no next page.
#[tokio::test]
async fn a_full_last_page_has_no_cursor() {
    let (keyring, _) = keyring();
    for name in ["a", "b"] {
        keyring.issue(NewKey::new("pk", "p", name)).await.unwrap();
    }
    let page = |limit| {
        let keyring = keyring.clone();
        async move {
            keyring
                .list_page(&tenant("p"), &keyward::ListQuery::new().limit(limit))
                .await
                .unwrap()
        }
    };
    let exact = page(2).await;
    assert_eq!(exact.keys().len(), 2);
    assert!(exact.next_cursor().is_none());
    let short = page(1).await;
    assert!(short.next_cursor().is_some());
}
