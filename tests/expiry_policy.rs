//! Expiry policy per kind: a maximum lifetime, whether "never" is allowed,
//! the presets, instants, and the default. Issuing or rotating outside it is
//! a typed error, never a silently clamped key; on the memory store and on
//! PostgreSQL (the policy is the keyring's, the store only keeps what it
//! decided, so the same scenario runs on both).

mod common;

use std::sync::Arc;
use std::time::Duration;

use keyward::{
    ConfigError, Expiry, ExpiryPolicy, IssueError, KeyKind, KeyStore, Keyring, ManualClock,
    MemoryStore, NewKey,
};
use time::OffsetDateTime;

const DAY: u64 = 86_400;

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

/// At most 100 days, never "never", 30 or 90 days or an instant, 30 days
/// unless asked.
fn strict() -> ExpiryPolicy {
    ExpiryPolicy::new()
        .max_lifetime(days(100))
        .allow_never(false)
        .presets([Expiry::Days30, Expiry::Days90])
        .default_expiry(Expiry::Days30)
}

fn keyring_on(store: Arc<dyn KeyStore>, clock: ManualClock, policy: ExpiryPolicy) -> Keyring {
    Keyring::builder()
        .shared_store(store)
        .kind(
            KeyKind::new("pl", common::playable_labs())
                .unwrap()
                .expiry_policy(policy)
                .unwrap(),
        )
        .clock(clock)
        .build()
        .unwrap()
}

fn not_allowed(result: Result<keyward::IssuedKey, IssueError>) -> &'static str {
    match result {
        Err(IssueError::ExpiryNotAllowed(why)) => why,
        other => panic!("expected ExpiryNotAllowed, got {other:?}"),
    }
}

async fn issuing_obeys_the_policy(store: Arc<dyn KeyStore>) {
    let now = common::start();
    let clock = ManualClock::new(now);
    let keyring = keyring_on(store, clock, strict());
    let issue = |expiry: Option<Expiry>| {
        let mut new = NewKey::new("pl", "org_1", "ci");
        if let Some(expiry) = expiry {
            new = new.expires(expiry);
        }
        let keyring = keyring.clone();
        async move { keyring.issue(new).await }
    };
    // The default applies when none is asked for.
    let default = issue(None).await.unwrap();
    assert_eq!(default.info.expires_at(), Some(now + days(30)));
    let ninety = issue(Some(Expiry::Days90)).await.unwrap();
    assert_eq!(ninety.info.expires_at(), Some(now + days(90)));
    let at = now + days(100);
    assert_eq!(
        issue(Some(Expiry::At(at))).await.unwrap().info.expires_at(),
        Some(at)
    );
    // Outside it: refused, with the reason, and nothing is stored.
    assert_eq!(
        not_allowed(issue(Some(Expiry::Never)).await),
        "this kind of key must expire"
    );
    assert_eq!(
        not_allowed(issue(Some(Expiry::Year1)).await),
        "this expiry preset is not allowed for this kind of key"
    );
    assert_eq!(
        not_allowed(issue(Some(Expiry::At(at + Duration::from_secs(1)))).await),
        "the expiry lies beyond this kind's maximum lifetime"
    );
    let tenant = keyward::TenantId::parse("org_1").unwrap();
    assert_eq!(keyring.list(&tenant).await.unwrap().len(), 3);
}

async fn rotation_obeys_the_policy(store: Arc<dyn KeyStore>) {
    let now = common::start();
    let clock = ManualClock::new(now);
    // Keys made before the policy: one that never expires, one for a year.
    let before = keyring_on(store.clone(), clock.clone(), ExpiryPolicy::new());
    let forever = before
        .issue(NewKey::new("pl", "org_1", "old"))
        .await
        .unwrap();
    let a_year = before
        .issue(NewKey::new("pl", "org_1", "year").expires(Expiry::Year1))
        .await
        .unwrap();
    let short = before
        .issue(NewKey::new("pl", "org_1", "short").expires(Expiry::Days30))
        .await
        .unwrap();
    // Under the policy, a rotation keeps the expiry only if the policy
    // allows it now: refused otherwise, and the old key keeps working.
    let after = keyring_on(store, clock.clone(), strict());
    for (issued, why) in [
        (
            &forever,
            "this kind of key must expire within its maximum lifetime",
        ),
        (
            &a_year,
            "the expiry lies beyond this kind's maximum lifetime",
        ),
    ] {
        let id = issued.info.id();
        assert_eq!(not_allowed(after.rotate(id, Duration::ZERO).await), why);
        assert!(after.verify(issued.token.expose_secret()).await.is_ok());
    }
    let rotated = after.rotate(short.info.id(), Duration::ZERO).await.unwrap();
    assert_eq!(rotated.info.expires_at(), Some(now + days(30)));
    // Later, the year-long key is within 100 days of its end: it rotates.
    clock.advance(days(300));
    let rotated = after
        .rotate(a_year.info.id(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(rotated.info.expires_at(), a_year.info.expires_at());
}

#[tokio::test]
async fn issuing_obeys_the_policy_in_memory() {
    issuing_obeys_the_policy(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn rotation_obeys_the_policy_in_memory() {
    rotation_obeys_the_policy(Arc::new(MemoryStore::new())).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn issuing_obeys_the_policy_on_postgres() {
    let Some((store, _)) = common::pg::store("expiry_issue").await else {
        return;
    };
    issuing_obeys_the_policy(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn rotation_obeys_the_policy_on_postgres() {
    let Some((store, _)) = common::pg::store("expiry_rotate").await else {
        return;
    };
    rotation_obeys_the_policy(Arc::new(store)).await;
}

#[test]
fn a_policy_whose_default_it_refuses_is_a_configuration_error() {
    let kind = || KeyKind::new("pl", common::playable_labs()).unwrap();
    for policy in [
        ExpiryPolicy::new().allow_never(false),
        ExpiryPolicy::new()
            .presets([Expiry::Days30])
            .default_expiry(Expiry::Days90),
        ExpiryPolicy::new()
            .max_lifetime(days(10))
            .default_expiry(Expiry::Days30),
    ] {
        assert!(
            matches!(
                kind().expiry_policy(policy.clone()),
                Err(ConfigError::InvalidExpiryPolicy(_))
            ),
            "{policy:?}"
        );
    }
    let kind = kind()
        .expiry_policy(ExpiryPolicy::new().allow_instants(false))
        .unwrap();
    assert_eq!(kind.expiry(), &ExpiryPolicy::new().allow_instants(false));
    assert_eq!(kind.expiry().default_value(), Expiry::Never);
}

#[test]
fn instants_can_be_refused() {
    let now = OffsetDateTime::UNIX_EPOCH;
    let policy = ExpiryPolicy::new().allow_instants(false);
    assert_eq!(
        policy.check(Expiry::At(now + days(1)), now),
        Err("this kind of key takes one of its preset expiries, not an instant")
    );
    assert!(policy.check(Expiry::Days30, now).is_ok());
    // An instant in the past is never allowed.
    assert_eq!(
        ExpiryPolicy::new().check(Expiry::At(now), now),
        Err("the expiry lies in the past")
    );
}
