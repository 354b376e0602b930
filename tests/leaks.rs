//! Leak reports through the public API: `Keyring::report_leak` (offline
//! refusal, lookup under both peppers, immediate revocation with one
//! `Leaked` event, inactive keys left alone, store failures failing
//! closed), and with feature `secret-scanning` the GitHub alert receiver
//! (`keyward::leaks::GithubAlerts`): every refusal with its status and
//! code, and the success path.

use std::sync::Arc;
use std::time::Duration;

use keyward::store::CachedStore;
use keyward::testing::{Fault, FaultyStore, Op, RecordingSink};
use keyward::{
    Actor, EventKind, Expiry, HashScheme, KeyKind, KeyStore, Keyring, LeakOutcome, LeakReport,
    ManualClock, MemoryStore, NewKey, Pepper, ScopeCatalog, TokenError, TokenHasher, TokenKey,
    TokenKind, VerifyError,
};
use time::OffsetDateTime;

fn start() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn kind(prefix: &str) -> KeyKind {
    KeyKind::new(prefix, ScopeCatalog::builder().build().unwrap()).unwrap()
}

fn token_key() -> TokenKey {
    TokenKey::new(1, vec![5; 32]).unwrap()
}

struct Fixture {
    keyring: Keyring,
    sink: RecordingSink,
    store: Arc<FaultyStore>,
    clock: ManualClock,
}

/// A keyring over a faulty memory store, with `pk` and a keyed `sk`.
fn fixture() -> Fixture {
    let clock = ManualClock::new(start());
    let store = Arc::new(FaultyStore::new(MemoryStore::with_clock(clock.clone())));
    let sink = RecordingSink::new();
    let keyring = Keyring::builder()
        .shared_store(store.clone())
        .kind(kind("pk"))
        .kind(kind("sk").token_key(token_key()))
        .clock(clock.clone())
        .events(sink.clone())
        .build()
        .unwrap();
    Fixture {
        keyring,
        sink,
        store,
        clock,
    }
}

fn github() -> LeakReport {
    LeakReport::new("github").url("https://github.com/octo/app/blob/1a2b/.env")
}

#[tokio::test]
async fn a_live_key_is_revoked_with_one_leaked_event() {
    let f = fixture();
    for prefix in ["pk", "sk"] {
        let issued = f.keyring.issue(NewKey::new(prefix, "org_1", "CI")).await.unwrap();
        f.sink.clear();
        let token = issued.token.expose_secret();
        let outcome = f.keyring.report_leak(token, github()).await.unwrap();
        let LeakOutcome::Revoked(info) = &outcome else {
            panic!("{outcome:?}");
        };
        assert!(outcome.is_ours());
        assert_eq!(info.id(), issued.info.id());
        assert_eq!(info.revoked_at(), Some(start()));
        let events = f.sink.take();
        assert_eq!(events.len(), 1, "{events:?}");
        let event = &events[0];
        assert_eq!(event.kind.name(), "leaked");
        assert_eq!(
            event.kind,
            EventKind::Leaked {
                reporter: "github".into(),
                url: Some("https://github.com/octo/app/blob/1a2b/.env".into()),
            }
        );
        assert_eq!(&event.key_id, issued.info.id());
        assert_eq!(event.key_kind, prefix);
        assert_eq!(event.actor, Some(Actor::System("secret-scanning")));
        assert_eq!(event.at, start());
        assert!(matches!(f.keyring.verify(token).await, Err(VerifyError::Revoked)));

        // Reported again: known, inactive, no second revocation or event.
        let revokes = f.store.calls(Op::Revoke);
        f.clock.advance(Duration::from_secs(60));
        let again = f.keyring.report_leak(token, github()).await.unwrap();
        let LeakOutcome::Inactive(info) = &again else {
            panic!("{again:?}");
        };
        assert!(again.is_ours());
        assert_eq!(info.revoked_at(), Some(start()));
        assert_eq!(f.store.calls(Op::Revoke), revokes);
        assert!(f.sink.take().is_empty());
        f.clock.rewind(Duration::from_secs(60));
    }
}

#[tokio::test]
async fn revocation_is_immediate_through_a_cache_and_for_a_lagging_reader() {
    // The cache holds the key as verified; the report goes through the
    // same cache, which drops the key before the call returns. A second
    // keyring whose clock lags an hour reads the store directly: the
    // revocation is on the store's clock and in effect whatever its clock.
    let clock = ManualClock::new(start());
    let memory = MemoryStore::with_clock(clock.clone());
    let cached: Arc<dyn KeyStore> = Arc::new(
        CachedStore::builder(memory.clone())
            .ttl(Duration::from_secs(3600))
            .build(),
    );
    let keyring = Keyring::builder()
        .shared_store(cached)
        .kind(kind("pk"))
        .clock(clock.clone())
        .build()
        .unwrap();
    let lagging = Keyring::builder()
        .store(memory)
        .kind(kind("pk"))
        .clock(ManualClock::new(start() - time::Duration::hours(1)))
        .build()
        .unwrap();
    let issued = keyring.issue(NewKey::new("pk", "org_1", "CI")).await.unwrap();
    let token = issued.token.expose_secret();
    keyring.verify(token).await.unwrap();
    let outcome = keyring.report_leak(token, github()).await.unwrap();
    assert!(matches!(outcome, LeakOutcome::Revoked(_)));
    assert!(matches!(keyring.verify(token).await, Err(VerifyError::Revoked)));
    assert!(matches!(lagging.verify(token).await, Err(VerifyError::Revoked)));
}

#[tokio::test]
async fn a_key_in_its_rotation_grace_is_revoked_now() {
    let f = fixture();
    let issued = f.keyring.issue(NewKey::new("pk", "org_1", "CI")).await.unwrap();
    let token = issued.token.expose_secret();
    let successor = f
        .keyring
        .rotate(issued.info.id(), Duration::from_secs(3600))
        .await
        .unwrap();
    f.keyring.verify(token).await.unwrap();
    f.sink.clear();
    let outcome = f.keyring.report_leak(token, github()).await.unwrap();
    assert!(matches!(outcome, LeakOutcome::Revoked(_)), "{outcome:?}");
    assert!(matches!(f.keyring.verify(token).await, Err(VerifyError::Revoked)));
    assert_eq!(f.sink.names(), ["leaked"]);
    // The successor's token is another secret: it keeps working.
    f.keyring
        .verify(successor.token.expose_secret())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_key_is_left_alone() {
    let f = fixture();
    let issued = f
        .keyring
        .issue(NewKey::new("pk", "org_1", "CI").expires(Expiry::Days30))
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(31 * 86_400));
    f.sink.clear();
    let outcome = f
        .keyring
        .report_leak(issued.token.expose_secret(), github())
        .await
        .unwrap();
    let LeakOutcome::Inactive(info) = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(info.revoked_at(), None);
    assert_eq!(f.store.calls(Op::Revoke), 0);
    assert!(f.sink.take().is_empty());
}

#[tokio::test]
async fn tokens_not_ours_are_refused_without_a_lookup() {
    let f = fixture();
    // The store would fail: an answer proves it was not asked.
    f.store.set_fault(Fault::Fail);
    let pk = TokenKind::new("pk").unwrap().generate();
    let good = pk.expose_secret();
    let mut bad_checksum = good.as_bytes().to_vec();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'a' { b'b' } else { b'a' };
    let bad_checksum = String::from_utf8(bad_checksum).unwrap();
    let foreign_tag = TokenKind::new("sk")
        .unwrap()
        .key(TokenKey::new(1, vec![6; 32]).unwrap())
        .generate();
    let unknown_prefix = TokenKind::new("xk").unwrap().generate();
    for (token, expected) in [
        (bad_checksum.as_str(), TokenError::BadChecksum),
        (foreign_tag.expose_secret(), TokenError::BadTag),
        (unknown_prefix.expose_secret(), TokenError::UnknownPrefix),
        ("", TokenError::Empty),
        ("pk_short", TokenError::BadLength),
    ] {
        let outcome = f.keyring.report_leak(token, github()).await.unwrap();
        assert!(!outcome.is_ours());
        match outcome {
            LeakOutcome::NotOurs(err) => assert_eq!(err, expected, "{token:?}"),
            other => panic!("{token:?}: {other:?}"),
        }
    }
    assert_eq!(f.store.calls(Op::FindByHash), 0);
    assert!(f.sink.take().is_empty());
}

#[tokio::test]
async fn an_unknown_token_is_not_found() {
    let f = fixture();
    let stranger = TokenKind::new("pk").unwrap().generate();
    let outcome = f
        .keyring
        .report_leak(stranger.expose_secret(), github())
        .await
        .unwrap();
    assert!(matches!(outcome, LeakOutcome::NotFound), "{outcome:?}");
    assert!(!outcome.is_ours());
    assert_eq!(f.store.calls(Op::FindByHash), 1);
    assert_eq!(f.store.calls(Op::Revoke), 0);
}

#[tokio::test]
async fn store_failures_fail_closed() {
    let f = fixture();
    let issued = f.keyring.issue(NewKey::new("pk", "org_1", "CI")).await.unwrap();
    let token = issued.token.expose_secret();
    f.store.set_fault_on(Op::FindByHash, Fault::Fail);
    assert!(f.keyring.report_leak(token, github()).await.is_err());
    f.store.set_fault_on(Op::FindByHash, Fault::None);
    f.store.set_fault_on(Op::Revoke, Fault::Fail);
    f.sink.clear();
    assert!(f.keyring.report_leak(token, github()).await.is_err());
    assert!(f.sink.take().is_empty());
    f.store.set_fault_on(Op::Revoke, Fault::None);
    // Still live, and revoked once the store answers.
    f.keyring.verify(token).await.unwrap();
    let outcome = f.keyring.report_leak(token, github()).await.unwrap();
    assert!(matches!(outcome, LeakOutcome::Revoked(_)));
}

#[tokio::test]
async fn keys_hashed_under_the_previous_pepper_are_found() {
    let old = HashScheme::Hmac(Pepper::new(1, vec![1; 32]).unwrap());
    let new = HashScheme::Hmac(Pepper::new(2, vec![2; 32]).unwrap());
    let store = MemoryStore::new();
    let before = Keyring::builder()
        .store(store.clone())
        .kind(kind("pk"))
        .hasher(TokenHasher::new(old.clone()))
        .build()
        .unwrap();
    let issued = before.issue(NewKey::new("pk", "org_1", "CI")).await.unwrap();
    let after = Keyring::builder()
        .store(store)
        .kind(kind("pk"))
        .hasher(TokenHasher::new(new).with_previous(old).unwrap())
        .build()
        .unwrap();
    let outcome = after
        .report_leak(issued.token.expose_secret(), github())
        .await
        .unwrap();
    assert!(matches!(outcome, LeakOutcome::Revoked(_)), "{outcome:?}");
}

#[tokio::test]
async fn a_store_answer_for_another_kind_is_not_trusted() {
    // A store that answers a lookup with a record of another kind (or
    // another hash) must not get that key revoked.
    let f = fixture();
    let other = f.keyring.issue(NewKey::new("sk", "org_1", "CI")).await.unwrap();
    let record = f.store.get_ref().get(other.info.id()).await.unwrap();
    f.store.set_lookup_answer(record);
    let stranger = TokenKind::new("pk").unwrap().generate();
    let outcome = f
        .keyring
        .report_leak(stranger.expose_secret(), github())
        .await
        .unwrap();
    assert!(matches!(outcome, LeakOutcome::NotFound), "{outcome:?}");
    assert_eq!(f.store.calls(Op::Revoke), 0);
}

#[test]
fn reports_are_bounded() {
    let long = "x".repeat(100);
    assert_eq!(LeakReport::new(long).reporter().len(), 64);
    let url = format!("https://e/{}", "é".repeat(2000));
    let report = LeakReport::new("github").url(url.clone());
    let kept = report.get_url().unwrap();
    assert!(kept.len() <= 2048 && kept.len() >= 2046, "{}", kept.len());
    assert!(url.starts_with(kept));
    assert_eq!(LeakReport::new("github").get_url(), None);
    assert_eq!(LeakReport::new("a").url("").get_url(), None);
    assert_eq!(
        LeakReport::new("a").url("u").url("").get_url(),
        None,
        "an empty url clears it"
    );
}
