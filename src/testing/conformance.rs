//! A conformance suite for [`KeyStore`] implementations: run it in a host
//! store's tests to check every clause of the contract in the
//! [`store`](crate::store) module docs.
//!
//! [`run`] panics with a message naming the broken clause. It only adds
//! records with fresh random ids, hashes and tenants, so it may run against a
//! store that already holds data, and several runs may share one store. Its
//! instants are whole microseconds (what PostgreSQL keeps).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use keyward::MemoryStore;
//!
//! keyward::testing::conformance::run(&MemoryStore::new()).await;
//! # });
//! ```

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::error::StoreError;
use crate::hash::{TokenHash, TokenHasher};
use crate::key::{KeyId, KeyRecord, KeyState, OwnerId, RateLimit, StateFilter, TenantId};
use crate::scope::ScopeSet;
use crate::store::{
    Condition, KeyStore, LifecycleQuery, NoticeClaim, NoticeOutcome, PageRequest, Revocation,
};
use crate::token::TokenKind;
use crate::usage::{
    BudgetId, ControlsUpdate, CreditSpend, Credits, CreditsChange, IpAllowlist, KeyUse, Refill,
    MAX_CREDITS,
};

/// Checks `store` against every clause of the [`KeyStore`] contract; panics
/// on the first violation.
pub async fn run<S: KeyStore + ?Sized>(store: &S) {
    round_trip(store).await;
    insert_conflicts(store).await;
    find_by_hash_is_exact(store).await;
    get_by_id(store).await;
    list_oldest_first_per_tenant(store).await;
    list_page_filters_by_kind_and_state(store).await;
    list_page_walks_newest_first_by_position(store).await;
    revoke_earliest_wins(store).await;
    revoke_now_is_in_effect_whatever_the_clock(store).await;
    revoke_now_ends_a_schedule_and_stays(store).await;
    touch_later_wins(store).await;
    list_page_filters_by_owner(store).await;
    find_keys_expiring_in_a_window(store).await;
    find_keys_unused_since(store).await;
    find_keys_across_tenants(store).await;
    successors_by_rotated_from(store).await;
    notices_claim_once_and_settle(store).await;
    notices_keep_announced_keys_out(store).await;
    concurrent_claims_grant_one(store).await;
    spend_credits_exactly(store).await;
    spend_credits_refills_lazily(store).await;
    concurrent_spends_spend_exactly(store).await;
    update_controls_applies_and_adds_atomically(store).await;
    record_uses_keeps_recent_ips_and_agent(store).await;
}

/// A base instant with a sub-second part in whole microseconds.
fn t(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).expect("in range")
        + Duration::microseconds(123_456)
}

fn fresh_tenant() -> TenantId {
    TenantId::parse(&format!("conformance {}", KeyId::generate())).expect("valid tenant")
}

fn fresh_hash() -> TokenHash {
    let token = TokenKind::new("pk").expect("valid prefix").generate();
    TokenHasher::sha256().hash(token.expose_secret())
}

/// A record with every optional field empty.
fn record(tenant: &TenantId, created: i64) -> KeyRecord {
    KeyRecord {
        id: KeyId::generate(),
        tenant: tenant.clone(),
        kind: "pk".into(),
        name: "conformance".into(),
        display_prefix: "pk_abcde".into(),
        hash: fresh_hash(),
        scopes: ScopeSet::default(),
        created_at: t(created),
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
        revocation_scheduled: false,
        rate_limit: RateLimit::default(),
        metadata: BTreeMap::new(),
        rotated_from: None,
        owner: None,
        allowed_ips: None,
        credits: None,
        budget: None,
        recent_ips: Vec::new(),
        last_user_agent: None,
    }
}

fn ok<T, E: Debug>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("KeyStore contract: {what} failed: {err:?}"),
    }
}

/// `find_by_hash`, and `find_by_hash_now` when the store answers there:
/// both must give the same record (verification trusts the one answered
/// at once as it trusts the other).
async fn by_hash<S: KeyStore + ?Sized>(store: &S, hash: &TokenHash) -> Option<Arc<KeyRecord>> {
    let found = ok(store.find_by_hash(hash).await, "find_by_hash");
    if let Some(now) = store.find_by_hash_now(hash) {
        let now = ok(now, "find_by_hash_now");
        assert_eq!(
            now, found,
            "KeyStore contract: find_by_hash_now must answer as find_by_hash does"
        );
    }
    found
}

async fn insert<S: KeyStore + ?Sized>(store: &S, record: &KeyRecord) {
    ok(store.insert(record.clone()).await, "insert of a new record");
}

async fn stored<S: KeyStore + ?Sized>(store: &S, id: &KeyId) -> Arc<KeyRecord> {
    ok(store.get(id).await, "get")
        .unwrap_or_else(|| panic!("KeyStore contract: get must return the inserted record {id}"))
}

async fn round_trip<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let mut full = record(&tenant, 0);
    full.kind = "pl".into();
    full.name = "Every field: ünïcode, 'quotes', \"and\" \\ slashes".into();
    full.scopes = ScopeSet::parse(["games:read", "versions:write", "read"]).expect("scopes");
    full.expires_at = Some(t(86_400));
    full.last_used_at = Some(t(5));
    full.revoked_at = Some(t(7_200));
    full.revocation_scheduled = true;
    full.rate_limit = RateLimit::Unlimited;
    full.metadata = BTreeMap::from([
        ("created_by".to_owned(), "user_7".to_owned()),
        ("note".to_owned(), String::new()),
    ]);
    full.rotated_from = Some(KeyId::generate());
    full.owner = Some(OwnerId::parse("user_7 ✓").expect("owner"));
    full.allowed_ips = Some(
        IpAllowlist::parse(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]).expect("ranges"),
    );
    full.credits = Some(Credits {
        remaining: MAX_CREDITS,
        refill: Some(Refill::monthly(500, 31).expect("refill")),
        refilled_at: Some(t(3)),
    });
    full.budget = Some(BudgetId::parse("customer ✓ 42").expect("budget"));
    full.recent_ips = vec![
        "203.0.113.9".parse().expect("ip"),
        "2001:db8::1".parse().expect("ip"),
    ];
    full.last_user_agent = Some("agent/1.0 (ünïcode; 'quoted')".into());
    let mut minimal = record(&tenant, 1);
    minimal.hash = TokenHash::new(3, *fresh_hash().digest());
    minimal.rate_limit = RateLimit::per_minute(1).expect("non-zero");
    for record in [&full, &minimal] {
        insert(store, record).await;
        assert_eq!(
            *stored(store, &record.id).await,
            *record,
            "KeyStore contract: get must return the record exactly as inserted"
        );
        let found = by_hash(store, &record.hash).await;
        assert_eq!(
            found.as_deref(),
            Some(record),
            "KeyStore contract: find_by_hash must return the record exactly as inserted"
        );
    }
}

async fn insert_conflicts<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let original = record(&tenant, 0);
    insert(store, &original).await;

    let mut same_id = record(&tenant, 1);
    same_id.id = original.id.clone();
    assert!(
        matches!(
            store.insert(same_id.clone()).await,
            Err(StoreError::Conflict)
        ),
        "KeyStore contract: insert must fail with StoreError::Conflict when the id is taken"
    );
    assert!(
        by_hash(store, &same_id.hash).await.is_none(),
        "KeyStore contract: a refused insert (id conflict) must store nothing"
    );

    let mut same_hash = record(&tenant, 2);
    same_hash.hash = original.hash;
    assert!(
        matches!(
            store.insert(same_hash.clone()).await,
            Err(StoreError::Conflict)
        ),
        "KeyStore contract: insert must fail with StoreError::Conflict when the hash is taken"
    );
    assert!(
        ok(store.get(&same_hash.id).await, "get").is_none(),
        "KeyStore contract: a refused insert (hash conflict) must store nothing"
    );
    assert_eq!(
        *stored(store, &original.id).await,
        original,
        "KeyStore contract: a refused insert must leave the existing record unchanged"
    );
    assert_eq!(
        ok(store.list(&tenant).await, "list").len(),
        1,
        "KeyStore contract: refused inserts must not be listed"
    );
}

async fn find_by_hash_is_exact<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let mut revoked_and_expired = record(&tenant, 0);
    revoked_and_expired.expires_at = Some(t(1));
    revoked_and_expired.revoked_at = Some(t(1));
    insert(store, &revoked_and_expired).await;
    let hash = revoked_and_expired.hash;
    let found = by_hash(store, &hash).await;
    assert_eq!(
        found.as_deref(),
        Some(&revoked_and_expired),
        "KeyStore contract: find_by_hash must return revoked and expired keys too"
    );

    let other_version = TokenHash::new(hash.version() + 1, *hash.digest());
    let mut flipped_digest = *hash.digest();
    flipped_digest[31] ^= 1;
    let mut flipped_prefix = *hash.digest();
    flipped_prefix[0] ^= 0x80;
    for (near, what) in [
        (other_version, "another version"),
        (
            TokenHash::new(hash.version(), flipped_digest),
            "a digest one bit off at its end",
        ),
        (
            TokenHash::new(hash.version(), flipped_prefix),
            "a digest one bit off at its start",
        ),
        (fresh_hash(), "an unknown hash"),
    ] {
        assert!(
            by_hash(store, &near).await.is_none(),
            "KeyStore contract: find_by_hash must match exactly; it found a key for {what}"
        );
    }
}

async fn get_by_id<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let a = record(&tenant, 0);
    let b = record(&tenant, 0);
    insert(store, &a).await;
    insert(store, &b).await;
    assert_eq!(
        stored(store, &a.id).await.hash,
        a.hash,
        "KeyStore contract: get by id"
    );
    assert_eq!(
        stored(store, &b.id).await.hash,
        b.hash,
        "KeyStore contract: get by id"
    );
    assert!(
        ok(store.get(&KeyId::generate()).await, "get").is_none(),
        "KeyStore contract: get of an unknown id must be None"
    );
}

async fn list_oldest_first_per_tenant<S: KeyStore + ?Sized>(store: &S) {
    let (mine, theirs) = (fresh_tenant(), fresh_tenant());
    // Inserted out of creation order.
    let newest = record(&mine, 30);
    let oldest = record(&mine, 10);
    let middle = record(&mine, 20);
    let other = record(&theirs, 15);
    for r in [&newest, &other, &oldest, &middle] {
        insert(store, r).await;
    }
    ok(
        store.revoke(&middle.id, Revocation::At(t(40))).await,
        "revoke",
    );
    let listed = ok(store.list(&mine).await, "list");
    let ids: Vec<&KeyId> = listed.iter().map(|r| &r.id).collect();
    assert_eq!(
        ids,
        [&oldest.id, &middle.id, &newest.id],
        "KeyStore contract: list must return every record of the tenant, oldest first, and no other tenant's"
    );
    assert_eq!(
        listed[1].revoked_at,
        Some(t(40)),
        "KeyStore contract: list must show revocations"
    );
    let theirs_listed = ok(store.list(&theirs).await, "list");
    assert_eq!(
        theirs_listed.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&other.id],
        "KeyStore contract: list must isolate tenants"
    );
    assert!(
        ok(store.list(&fresh_tenant()).await, "list").is_empty(),
        "KeyStore contract: list of an unknown tenant must be empty"
    );
}

async fn page<S: KeyStore + ?Sized>(
    store: &S,
    tenant: &TenantId,
    request: &PageRequest,
) -> Vec<KeyId> {
    ok(store.list_page(tenant, request).await, "list_page")
        .iter()
        .map(|r| r.id.clone())
        .collect()
}

async fn list_page_filters_by_kind_and_state<S: KeyStore + ?Sized>(store: &S) {
    let (mine, theirs) = (fresh_tenant(), fresh_tenant());
    let now = t(1_000);
    let active = record(&mine, 1);
    let mut grace = record(&mine, 2); // revocation scheduled ahead of now
    grace.revoked_at = Some(t(2_000));
    grace.revocation_scheduled = true;
    let mut revoked = record(&mine, 3); // immediate, stamped by a clock ahead
    revoked.revoked_at = Some(t(5_000));
    let mut grace_over = record(&mine, 4); // scheduled, instant passed
    grace_over.revoked_at = Some(t(500));
    grace_over.revocation_scheduled = true;
    let mut expired = record(&mine, 5);
    expired.expires_at = Some(now);
    let mut revoked_and_expired = record(&mine, 6);
    revoked_and_expired.expires_at = Some(t(100));
    revoked_and_expired.revoked_at = Some(t(200));
    let mut not_yet_expired = record(&mine, 7);
    not_yet_expired.expires_at = Some(t(1_001));
    let mut other_kind = record(&mine, 8);
    other_kind.kind = "pl".into();
    let other_tenant = record(&theirs, 9);
    for r in [
        &active,
        &grace,
        &revoked,
        &grace_over,
        &expired,
        &revoked_and_expired,
        &not_yet_expired,
        &other_kind,
        &other_tenant,
    ] {
        insert(store, r).await;
    }
    let pk = PageRequest::new(now, 100).kinds(["pk"]);
    for (state, want, what) in [
        (
            StateFilter::All,
            vec![
                &not_yet_expired,
                &revoked_and_expired,
                &expired,
                &grace_over,
                &revoked,
                &grace,
                &active,
            ],
            "every key of the kind, newest first",
        ),
        (
            StateFilter::Active,
            vec![&not_yet_expired, &grace, &active],
            "active: not revoked (a schedule ahead of now is not yet) and not expired",
        ),
        (
            StateFilter::Revoked,
            vec![&revoked_and_expired, &grace_over, &revoked],
            "revoked: immediate ones whatever their instant, scheduled ones once passed; revocation wins over expiry",
        ),
        (
            StateFilter::Expired,
            vec![&expired],
            "expired: past (or at) expiry and not revoked",
        ),
    ] {
        let want: Vec<KeyId> = want.into_iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            page(store, &mine, &pk.clone().state(state)).await,
            want,
            "KeyStore contract: list_page {what}"
        );
    }
    let all = page(store, &mine, &PageRequest::new(now, 100)).await;
    assert_eq!(
        all.first(),
        Some(&other_kind.id),
        "KeyStore contract: list_page without kinds lists every kind"
    );
    assert_eq!(
        all.len(),
        8,
        "KeyStore contract: list_page lists only the tenant's keys"
    );
    assert_eq!(
        page(
            store,
            &mine,
            &PageRequest::new(now, 100).kinds(["pl", "pk"])
        )
        .await,
        all,
        "KeyStore contract: list_page with several kinds lists any of them"
    );
    assert!(
        page(store, &mine, &PageRequest::new(now, 100).kinds(["nope"]))
            .await
            .is_empty(),
        "KeyStore contract: list_page of a kind without keys is empty"
    );
    assert_eq!(
        page(store, &theirs, &PageRequest::new(now, 100)).await,
        std::slice::from_ref(&other_tenant.id),
        "KeyStore contract: list_page must isolate tenants"
    );
    assert!(
        page(store, &fresh_tenant(), &PageRequest::new(now, 100))
            .await
            .is_empty(),
        "KeyStore contract: list_page of an unknown tenant must be empty"
    );
}

async fn list_page_walks_newest_first_by_position<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    // Four keys share an instant: ids break the tie, byte by byte (upper
    // case sorts before lower case, `_` between them, whatever a database's
    // collation says).
    let mut records: Vec<KeyRecord> = ["key_Zq", "key_aa", "key_a_", "key_B1"]
        .iter()
        .map(|prefix| {
            let mut r = record(&tenant, 50);
            r.id =
                KeyId::parse(&format!("{prefix}{}", &KeyId::generate().as_str()[4..])).expect("id");
            r
        })
        .collect();
    records.extend((0..5).map(|i| record(&tenant, 10 + i)));
    records.push(record(&tenant, 90));
    for r in &records {
        insert(store, r).await;
    }
    // The model: (created_at, id) descending.
    let mut model: Vec<(OffsetDateTime, KeyId)> = records
        .iter()
        .map(|r| (r.created_at, r.id.clone()))
        .collect();
    let ordered = |model: &mut Vec<(OffsetDateTime, KeyId)>| -> Vec<KeyId> {
        model.sort_by(|a, b| (b.0, b.1.as_str()).cmp(&(a.0, a.1.as_str())));
        model.iter().map(|(_, id)| id.clone()).collect()
    };
    let now = t(100);
    assert_eq!(
        page(store, &tenant, &PageRequest::new(now, 100)).await,
        ordered(&mut model),
        "KeyStore contract: list_page orders newest first by (created_at, id), ids byte by byte"
    );
    for limit in [1, 2, 3, 10] {
        let want = ordered(&mut model);
        let mut walked = Vec::new();
        let mut request = PageRequest::new(now, limit);
        loop {
            let page = ok(store.list_page(&tenant, &request).await, "list_page");
            assert!(
                page.len() <= limit,
                "KeyStore contract: list_page returns at most limit records"
            );
            let Some(last) = page.last() else { break };
            assert!(
                walked.len() <= model.len(),
                "KeyStore contract: list_page must page strictly after the position (it repeats records)"
            );
            request = request.clone().after(last.created_at, last.id.clone());
            walked.extend(page.iter().map(|r| r.id.clone()));
            if walked.len() == limit {
                // Issued while paging: newer than every page, so it shows
                // up on none of the later ones.
                let meanwhile = record(&tenant, 95);
                insert(store, &meanwhile).await;
                model.push((meanwhile.created_at, meanwhile.id));
            }
        }
        assert_eq!(
            walked, want,
            "KeyStore contract: list_page pages strictly after the position, each record once (limit {limit})"
        );
    }
}

async fn revoke_earliest_wins<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let key = record(&tenant, 0);
    let bystander = record(&tenant, 0);
    insert(store, &key).await;
    insert(store, &bystander).await;

    assert!(
        ok(
            store.revoke(&KeyId::generate(), Revocation::At(t(1))).await,
            "revoke"
        )
        .is_none(),
        "KeyStore contract: revoke of an unknown id must be None"
    );
    for (at, expected, what) in [
        (
            t(100),
            t(100),
            "the first revoke at an instant sets revoked_at, scheduled",
        ),
        (t(50), t(50), "an earlier revoke moves revoked_at earlier"),
        (t(200), t(50), "a later revoke never postpones revoked_at"),
        (t(50), t(50), "revoke is idempotent"),
    ] {
        let returned = ok(store.revoke(&key.id, Revocation::At(at)).await, "revoke")
            .unwrap_or_else(|| {
                panic!("KeyStore contract: revoke of a known id must return the record")
            });
        let mut want = key.clone();
        want.revoked_at = Some(expected);
        want.revocation_scheduled = true;
        assert_eq!(
            *returned, want,
            "KeyStore contract: {what} (returned record)"
        );
        assert_eq!(
            *stored(store, &key.id).await,
            want,
            "KeyStore contract: {what} (visible to get once revoke returns)"
        );
        let found = by_hash(store, &key.hash).await;
        assert_eq!(
            found.as_deref(),
            Some(&want),
            "KeyStore contract: {what} (visible to find_by_hash once revoke returns)"
        );
    }
    assert_eq!(
        *stored(store, &bystander.id).await,
        bystander,
        "KeyStore contract: revoke must change only the named key"
    );
}

/// `revoke(Now)` on a known id: the returned record and every later read.
async fn revoke_now<S: KeyStore + ?Sized>(store: &S, key: &KeyRecord, what: &str) -> KeyRecord {
    let returned =
        ok(store.revoke(&key.id, Revocation::Now).await, "revoke").unwrap_or_else(|| {
            panic!("KeyStore contract: revoke of a known id must return the record")
        });
    for (seen, from) in [
        (Some(returned.clone()), "returned record"),
        (
            Some(stored(store, &key.id).await),
            "get once revoke returns",
        ),
        (
            by_hash(store, &key.hash).await,
            "find_by_hash once revoke returns",
        ),
    ] {
        let seen = seen.unwrap_or_else(|| panic!("KeyStore contract: {what} ({from}): not found"));
        assert!(
            seen.revoked_at.is_some() && !seen.revocation_scheduled,
            "KeyStore contract: {what} ({from}): revoke(Now) must set revoked_at and leave \
             revocation_scheduled false, got {:?} / {}",
            seen.revoked_at,
            seen.revocation_scheduled
        );
        // A reader whose clock is far behind the store's still refuses it.
        assert_eq!(
            seen.state(OffsetDateTime::UNIX_EPOCH),
            KeyState::Revoked,
            "KeyStore contract: {what} ({from}): revoke(Now) must be in effect for a reader \
             whatever its clock"
        );
        let mut rest = KeyRecord::clone(&seen);
        rest.revoked_at = key.revoked_at;
        rest.revocation_scheduled = key.revocation_scheduled;
        assert_eq!(
            rest, *key,
            "KeyStore contract: {what} ({from}): revoke must change nothing else"
        );
    }
    KeyRecord::clone(&returned)
}

async fn revoke_now_is_in_effect_whatever_the_clock<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let key = record(&tenant, 0);
    let bystander = record(&tenant, 0);
    insert(store, &key).await;
    insert(store, &bystander).await;
    assert!(
        ok(
            store.revoke(&KeyId::generate(), Revocation::Now).await,
            "revoke"
        )
        .is_none(),
        "KeyStore contract: revoke(Now) of an unknown id must be None"
    );

    let first = revoke_now(store, &key, "an immediate revoke").await;
    let again = revoke_now(store, &key, "a second immediate revoke").await;
    assert_eq!(
        again.revoked_at, first.revoked_at,
        "KeyStore contract: revoke(Now) is idempotent: a second call keeps the first instant"
    );

    // A scheduled revoke never postpones an immediate one, nor makes it
    // scheduled again; an earlier instant moves it earlier, still immediate.
    let first_at = first.revoked_at.expect("revoked");
    for (at, expected, what) in [
        (
            first_at + Duration::days(365),
            first_at,
            "a later scheduled revoke leaves an immediate one as it is",
        ),
        (
            first_at - Duration::days(1),
            first_at - Duration::days(1),
            "an earlier scheduled revoke moves an immediate one earlier, still immediate",
        ),
    ] {
        let returned = ok(store.revoke(&key.id, Revocation::At(at)).await, "revoke")
            .unwrap_or_else(|| panic!("KeyStore contract: revoke must return the record"));
        assert_eq!(
            (returned.revoked_at, returned.revocation_scheduled),
            (Some(expected), false),
            "KeyStore contract: {what}"
        );
        assert_eq!(
            *stored(store, &key.id).await,
            *returned,
            "KeyStore contract: {what} (visible to get)"
        );
    }
    assert_eq!(
        *stored(store, &bystander.id).await,
        bystander,
        "KeyStore contract: revoke must change only the named key"
    );
}

async fn revoke_now_ends_a_schedule_and_stays<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let key = record(&tenant, 0);
    insert(store, &key).await;
    // Far ahead of any store's clock: a rotation's grace.
    let far = t(1_000_000_000);
    let scheduled = ok(store.revoke(&key.id, Revocation::At(far)).await, "revoke")
        .unwrap_or_else(|| panic!("KeyStore contract: revoke must return the record"));
    assert_eq!(
        (scheduled.revoked_at, scheduled.revocation_scheduled),
        (Some(far), true),
        "KeyStore contract: revoke(At) of an active key schedules it"
    );
    assert_eq!(
        scheduled.state(t(0)),
        KeyState::Active,
        "KeyStore contract: a scheduled revocation waits for its instant"
    );
    let now = revoke_now(store, &key, "revoke(Now) of a scheduled key").await;
    assert!(
        now.revoked_at.is_some_and(|at| at <= far),
        "KeyStore contract: revoke(Now) never postpones a scheduled revocation"
    );
}

async fn touch_later_wins<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let a = record(&tenant, 0);
    let b = record(&tenant, 0);
    let mut c = record(&tenant, 0);
    c.last_used_at = Some(t(500));
    for r in [&a, &b, &c] {
        insert(store, r).await;
    }
    let last_used = |id: KeyId| async move { stored(store, &id).await.last_used_at };

    ok(store.touch(&[]).await, "touch of an empty batch");
    ok(store.touch(&[(a.id.clone(), t(100))]).await, "touch");
    assert_eq!(
        last_used(a.id.clone()).await,
        Some(t(100)),
        "KeyStore contract: touch sets last_used_at"
    );
    ok(store.touch(&[(a.id.clone(), t(50))]).await, "touch");
    assert_eq!(
        last_used(a.id.clone()).await,
        Some(t(100)),
        "KeyStore contract: touch keeps the later instant"
    );

    // One batch: several keys, an unknown id, a key twice, an earlier instant.
    ok(
        store
            .touch(&[
                (a.id.clone(), t(300)),
                (KeyId::generate(), t(300)),
                (b.id.clone(), t(200)),
                (b.id.clone(), t(250)),
                (b.id.clone(), t(150)),
                (c.id.clone(), t(400)),
            ])
            .await,
        "touch of a batch with an unknown id",
    );
    for (id, want, what) in [
        (&a.id, t(300), "a later instant wins"),
        (
            &b.id,
            t(250),
            "the latest of one key's instants in a batch wins",
        ),
        (
            &c.id,
            t(500),
            "an earlier instant than the stored one is ignored",
        ),
    ] {
        assert_eq!(
            last_used(id.clone()).await,
            Some(want),
            "KeyStore contract: touch batch: {what}"
        );
    }
    let mut unchanged = stored(store, &b.id).await.as_ref().clone();
    unchanged.last_used_at = None;
    assert_eq!(
        unchanged, b,
        "KeyStore contract: touch must change only last_used_at"
    );
}

async fn list_page_filters_by_owner<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let (alice, bob) = (
        OwnerId::parse("alice").expect("owner"),
        OwnerId::parse("bob").expect("owner"),
    );
    let mut a1 = record(&tenant, 1);
    a1.owner = Some(alice.clone());
    let mut a2 = record(&tenant, 2);
    a2.owner = Some(alice.clone());
    let mut b = record(&tenant, 3);
    b.owner = Some(bob.clone());
    let shared = record(&tenant, 4);
    let mut elsewhere = record(&fresh_tenant(), 5);
    elsewhere.owner = Some(alice.clone());
    for r in [&a1, &a2, &b, &shared, &elsewhere] {
        insert(store, r).await;
    }
    let request = PageRequest::new(t(10), 10).owner(alice.clone());
    assert_eq!(
        page(store, &tenant, &request).await,
        [a2.id.clone(), a1.id.clone()],
        "KeyStore contract: list_page with an owner returns that owner's keys of the tenant, newest first"
    );
    let request = PageRequest::new(t(10), 1)
        .owner(alice)
        .after(a2.created_at, a2.id.clone());
    assert_eq!(
        page(store, &tenant, &request).await,
        [a1.id.clone()],
        "KeyStore contract: list_page pages an owner's keys by position"
    );
    let all = page(store, &tenant, &PageRequest::new(t(10), 10)).await;
    assert_eq!(
        all.len(),
        4,
        "KeyStore contract: list_page without an owner returns keys of every owner and none"
    );
}

async fn find<S: KeyStore + ?Sized>(store: &S, query: &LifecycleQuery) -> Vec<KeyId> {
    ok(store.find_keys(query).await, "find_keys")
        .iter()
        .map(|r| r.id.clone())
        .collect()
}

/// Records sorted by id byte by byte (a tie's order).
fn by_id(mut records: Vec<KeyRecord>) -> Vec<KeyId> {
    records.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    records.into_iter().map(|r| r.id).collect()
}

async fn find_keys_expiring_in_a_window<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let expiring = |created: i64, at: i64| {
        let mut r = record(&tenant, created);
        r.expires_at = Some(t(at));
        r
    };
    let at_from = expiring(0, 100); // on the exclusive lower bound
    let first = expiring(1, 150);
    let (tie_a, tie_b) = (expiring(2, 200), expiring(3, 200));
    let at_until = expiring(4, 300); // on the inclusive upper bound
    let beyond = expiring(5, 301);
    let mut revoked = expiring(6, 160);
    revoked.revoked_at = Some(t(50_000)); // immediate: revoked at any instant
    let mut grace = expiring(7, 170); // revocation scheduled ahead: replaced
    grace.revoked_at = Some(t(120));
    grace.revocation_scheduled = true;
    let never = record(&tenant, 8);
    for r in [
        &at_from, &first, &tie_a, &tie_b, &at_until, &beyond, &revoked, &grace, &never,
    ] {
        insert(store, r).await;
    }
    let window = Condition::Expiring {
        from: Some(t(100)),
        until: t(300),
    };
    let query = LifecycleQuery::new(window, t(10), 10).tenant(tenant.clone());
    let mut expected = vec![first.id.clone()];
    expected.extend(by_id(vec![tie_a.clone(), tie_b.clone()]));
    expected.push(at_until.id.clone());
    assert_eq!(
        find(store, &query).await,
        expected,
        "KeyStore contract: find_keys(Expiring) returns keys without a revocation (none scheduled either) whose expiry is in (from, until], by expiry then id"
    );
    // Paging by position, ties by id.
    let mut paged = LifecycleQuery::new(window, t(10), 2).tenant(tenant.clone());
    let first_page = find(store, &paged).await;
    assert_eq!(
        first_page,
        expected[..2],
        "KeyStore contract: find_keys honours the limit"
    );
    paged.after = Some((t(200), expected[1].clone()));
    assert_eq!(
        find(store, &paged).await,
        expected[2..],
        "KeyStore contract: find_keys returns only records strictly after `after` (by expiry, then id byte by byte)"
    );
    // No lower bound, and an upper bound in the past: expired keys.
    let expired = Condition::Expiring {
        from: None,
        until: t(150),
    };
    let query = LifecycleQuery::new(expired, t(1_000), 10).tenant(tenant);
    assert_eq!(
        find(store, &query).await,
        [at_from.id.clone(), first.id.clone()],
        "KeyStore contract: find_keys(Expiring) without `from` has no lower bound, and finds expired keys"
    );
}

async fn find_keys_unused_since<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let never_used = record(&tenant, 0);
    let mut used_early = record(&tenant, -50);
    used_early.last_used_at = Some(t(500));
    let mut used_late = record(&tenant, 1);
    used_late.last_used_at = Some(t(600)); // on the exclusive bound
    let young = record(&tenant, 700);
    let mut revoked = record(&tenant, 2);
    revoked.revoked_at = Some(t(3));
    let mut expired = record(&tenant, 3);
    expired.expires_at = Some(t(650));
    let mut grace = record(&tenant, 4); // scheduled ahead of now: replaced
    grace.revoked_at = Some(t(5_000));
    grace.revocation_scheduled = true;
    for r in [
        &never_used,
        &used_early,
        &used_late,
        &young,
        &revoked,
        &expired,
        &grace,
    ] {
        insert(store, r).await;
    }
    let query = LifecycleQuery::new(Condition::UnusedSince(t(600)), t(700), 10).tenant(tenant);
    assert_eq!(
        find(store, &query).await,
        [never_used.id.clone(), used_early.id.clone()],
        "KeyStore contract: find_keys(UnusedSince) returns unrevoked, unexpired keys whose last use, or creation, lies before the instant, by that instant then id"
    );
}

async fn find_keys_across_tenants<S: KeyStore + ?Sized>(store: &S) {
    // Far from the other clauses' instants; the store may hold other data.
    let (one, two) = (fresh_tenant(), fresh_tenant());
    let mut a = record(&one, 0);
    a.expires_at = Some(t(9_000_001));
    let mut b = record(&two, 0);
    b.expires_at = Some(t(9_000_002));
    insert(store, &a).await;
    insert(store, &b).await;
    let window = Condition::Expiring {
        from: Some(t(9_000_000)),
        until: t(9_000_003),
    };
    let query = LifecycleQuery::new(window, t(0), 10_000);
    let found = ok(store.find_keys(&query).await, "find_keys");
    assert!(
        found.iter().all(|r| query.matches(r)),
        "KeyStore contract: find_keys returns only records that match the query"
    );
    let ours: Vec<_> = found
        .iter()
        .filter(|r| r.id == a.id || r.id == b.id)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(
        ours,
        [a.id.clone(), b.id.clone()],
        "KeyStore contract: find_keys without a tenant searches every tenant"
    );
}

async fn successors_by_rotated_from<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let old = record(&tenant, 0);
    let mut next = record(&tenant, 1);
    next.rotated_from = Some(old.id.clone());
    let mut again = record(&tenant, 2);
    again.rotated_from = Some(old.id.clone());
    let mut grandchild = record(&tenant, 3);
    grandchild.rotated_from = Some(next.id.clone());
    for r in [&old, &next, &again, &grandchild] {
        insert(store, r).await;
    }
    let mut found = ok(store.successors(&old.id).await, "successors")
        .iter()
        .map(|r| r.id.clone())
        .collect::<Vec<_>>();
    found.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(
        found,
        by_id(vec![next.clone(), again.clone()]),
        "KeyStore contract: successors returns exactly the records rotated from the id"
    );
    assert!(
        ok(store.successors(&grandchild.id).await, "successors").is_empty(),
        "KeyStore contract: successors of a key nobody replaced is empty"
    );
}

async fn claim<S: KeyStore + ?Sized>(store: &S, claim: &NoticeClaim) -> bool {
    ok(store.claim_notice(claim).await, "claim_notice")
}

async fn settle<S: KeyStore + ?Sized>(
    store: &S,
    key: &KeyId,
    notice: &str,
    outcome: NoticeOutcome,
) {
    ok(
        store.settle_notice(key, notice, outcome).await,
        "settle_notice",
    );
}

async fn notices_claim_once_and_settle<S: KeyStore + ?Sized>(store: &S) {
    let key = record(&fresh_tenant(), 0);
    insert(store, &key).await;
    let at = |now: i64| NoticeClaim::new(key.id.clone(), "expiring:86400", t(now), t(now + 60));
    assert!(
        claim(store, &at(0)).await,
        "KeyStore contract: claim_notice grants a new notice"
    );
    assert!(
        !claim(store, &at(59)).await,
        "KeyStore contract: claim_notice refuses a notice whose lease runs past `now`"
    );
    assert!(
        claim(
            store,
            &NoticeClaim::new(key.id.clone(), "expired", t(59), t(119))
        )
        .await,
        "KeyStore contract: notices of one key are separate by name"
    );
    assert!(
        claim(store, &at(60)).await,
        "KeyStore contract: claim_notice grants a notice whose lease ran out"
    );
    // Released by the claimant whose lease lapsed (the lease of at(0)):
    // the live claim of at(60) stays.
    settle(
        store,
        &key.id,
        "expiring:86400",
        NoticeOutcome::Released(t(60)),
    )
    .await;
    assert!(
        !claim(store, &at(61)).await,
        "KeyStore contract: Released drops only the claim with that lease_until"
    );
    settle(
        store,
        &key.id,
        "expiring:86400",
        NoticeOutcome::Released(t(120)),
    )
    .await;
    assert!(
        claim(store, &at(61)).await,
        "KeyStore contract: a released notice can be claimed again at once"
    );
    settle(
        store,
        &key.id,
        "expiring:86400",
        NoticeOutcome::Delivered(t(62)),
    )
    .await;
    assert!(
        !claim(store, &at(1_000_000)).await,
        "KeyStore contract: a delivered notice is never claimed again"
    );
    settle(
        store,
        &key.id,
        "expiring:86400",
        NoticeOutcome::Released(t(1_000_060)),
    )
    .await;
    assert!(
        !claim(store, &at(1_000_001)).await,
        "KeyStore contract: Released leaves a delivered notice delivered"
    );
    // A renewable notice: a delivery before `renew_after` no longer blocks.
    let stale = |now: i64, renew: i64| {
        NoticeClaim::new(key.id.clone(), "stale", t(now), t(now + 60)).renew_after(Some(t(renew)))
    };
    assert!(
        claim(store, &stale(0, 0)).await,
        "KeyStore contract: claim_notice grants a new notice"
    );
    settle(store, &key.id, "stale", NoticeOutcome::Delivered(t(10))).await;
    assert!(
        !claim(store, &stale(100, 10)).await,
        "KeyStore contract: a delivery at or after renew_after blocks"
    );
    assert!(
        claim(store, &stale(100, 11)).await,
        "KeyStore contract: a delivery before renew_after no longer blocks"
    );
    assert!(
        !claim(store, &stale(101, 11)).await,
        "KeyStore contract: a renewed claim is leased like a new one"
    );
    let unknown = NoticeClaim::new(KeyId::generate(), "expired", t(0), t(60));
    assert!(
        !claim(store, &unknown).await,
        "KeyStore contract: claim_notice about an unknown key is not granted"
    );
}

async fn notices_keep_announced_keys_out<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let mut keys = Vec::new();
    for i in 0..4 {
        let mut r = record(&tenant, i);
        r.expires_at = Some(t(100 + i));
        insert(store, &r).await;
        keys.push(r);
    }
    let window = Condition::Expiring {
        from: Some(t(0)),
        until: t(200),
    };
    let query = LifecycleQuery::new(window, t(10), 10)
        .tenant(tenant.clone())
        .unnoticed("expiring:604800");
    // keys[0] claimed (live lease), keys[1] delivered, keys[2] another
    // notice, keys[3] untouched.
    assert!(
        claim(
            store,
            &NoticeClaim::new(keys[0].id.clone(), "expiring:604800", t(10), t(70))
        )
        .await
    );
    assert!(
        claim(
            store,
            &NoticeClaim::new(keys[1].id.clone(), "expiring:604800", t(10), t(70))
        )
        .await
    );
    settle(
        store,
        &keys[1].id,
        "expiring:604800",
        NoticeOutcome::Delivered(t(11)),
    )
    .await;
    assert!(
        claim(
            store,
            &NoticeClaim::new(keys[2].id.clone(), "expiring:86400", t(10), t(70))
        )
        .await
    );
    assert_eq!(
        find(store, &query).await,
        [keys[2].id.clone(), keys[3].id.clone()],
        "KeyStore contract: find_keys with `unnoticed` leaves out keys whose notice of that name is delivered or leased"
    );
    let mut lapsed = query.clone();
    lapsed.now = t(70);
    assert_eq!(
        find(store, &lapsed).await,
        [keys[0].id.clone(), keys[2].id.clone(), keys[3].id.clone()],
        "KeyStore contract: find_keys with `unnoticed` includes keys whose claim lapsed"
    );
    // A stale notice delivered before the key's last use no longer blocks.
    let mut used = record(&tenant, 0);
    used.last_used_at = Some(t(50));
    insert(store, &used).await;
    assert!(
        claim(
            store,
            &NoticeClaim::new(used.id.clone(), "stale", t(0), t(60))
        )
        .await
    );
    settle(store, &used.id, "stale", NoticeOutcome::Delivered(t(40))).await;
    let stale = LifecycleQuery::new(Condition::UnusedSince(t(500)), t(600), 10)
        .tenant(tenant)
        .unnoticed("stale");
    assert!(
        find(store, &stale).await.contains(&used.id),
        "KeyStore contract: find_keys(UnusedSince) includes a key whose notice was delivered before its last use"
    );
    settle(store, &used.id, "stale", NoticeOutcome::Delivered(t(50))).await;
    assert!(
        !find(store, &stale).await.contains(&used.id),
        "KeyStore contract: find_keys(UnusedSince) leaves out a key whose notice was delivered at or after its last use"
    );
}

async fn concurrent_claims_grant_one<S: KeyStore + ?Sized>(store: &S) {
    let key = record(&fresh_tenant(), 0);
    insert(store, &key).await;
    let claim = NoticeClaim::new(key.id.clone(), "expired", t(0), t(60));
    for round in 0..3 {
        let name = format!("expired:{round}");
        let mut claim = claim.clone();
        claim.notice = name;
        let claims: Vec<_> = (0..8).map(|_| store.claim_notice(&claim)).collect();
        let granted = join_all(claims)
            .await
            .into_iter()
            .map(|r| ok(r, "claim_notice"))
            .filter(|g| *g)
            .count();
        assert_eq!(
            granted, 1,
            "KeyStore contract: of concurrent claims of one notice, exactly one is granted"
        );
    }
}

async fn spend<S: KeyStore + ?Sized>(
    store: &S,
    id: &KeyId,
    cost: u64,
    at: OffsetDateTime,
) -> CreditSpend {
    ok(store.spend_credits(id, cost, at).await, "spend_credits").unwrap_or_else(|| {
        panic!("KeyStore contract: spend_credits must find the inserted key {id}")
    })
}

fn metered(tenant: &TenantId, remaining: u64, refill: Option<Refill>) -> KeyRecord {
    let mut key = record(tenant, 0);
    key.credits = Some(Credits {
        remaining,
        refill,
        refilled_at: Some(t(0)),
    });
    key
}

async fn spend_credits_exactly<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let key = metered(&tenant, 5, None);
    insert(store, &key).await;
    assert_eq!(
        spend(store, &key.id, 2, t(1)).await,
        CreditSpend::Spent { remaining: 3 },
        "KeyStore contract: spend_credits spends the cost"
    );
    assert_eq!(
        spend(store, &key.id, 4, t(1)).await,
        CreditSpend::Exhausted { remaining: 3 },
        "KeyStore contract: a cost above what remains spends nothing"
    );
    assert_eq!(
        spend(store, &key.id, 3, t(1)).await,
        CreditSpend::Spent { remaining: 0 },
        "KeyStore contract: the last credits can be spent"
    );
    assert_eq!(
        spend(store, &key.id, 1, t(1)).await,
        CreditSpend::Exhausted { remaining: 0 },
        "KeyStore contract: never below zero"
    );
    assert_eq!(
        stored(store, &key.id).await.credits.map(|c| c.remaining),
        Some(0),
        "KeyStore contract: get shows the credits spent"
    );
    let plain = record(&tenant, 1);
    insert(store, &plain).await;
    assert_eq!(
        spend(store, &plain.id, 1, t(1)).await,
        CreditSpend::Unmetered,
        "KeyStore contract: a key without credits is unmetered"
    );
    assert!(
        stored(store, &plain.id).await.credits.is_none(),
        "KeyStore contract: spending on an unmetered key leaves it unmetered"
    );
    assert_eq!(
        ok(
            store.spend_credits(&KeyId::generate(), 1, t(1)).await,
            "spend_credits"
        ),
        None,
        "KeyStore contract: spend_credits of an unknown id is None"
    );
}

async fn spend_credits_refills_lazily<S: KeyStore + ?Sized>(store: &S) {
    use time::macros::datetime;
    let tenant = fresh_tenant();
    // Refilled on the 31st (the last day of shorter months), to 10.
    let mut key = metered(&tenant, 1, Some(Refill::monthly(10, 31).expect("refill")));
    let jan = datetime!(2027-01-31 00:00 UTC);
    if let Some(c) = key.credits.as_mut() {
        c.refilled_at = Some(jan);
    }
    insert(store, &key).await;
    let feb27 = datetime!(2027-02-27 23:59:59.999999 UTC);
    assert_eq!(
        spend(store, &key.id, 1, feb27).await,
        CreditSpend::Spent { remaining: 0 },
        "KeyStore contract: no refill before the refill instant"
    );
    let feb28 = datetime!(2027-02-28 00:00 UTC);
    assert_eq!(spend(store, &key.id, 3, feb28).await, CreditSpend::Spent { remaining: 7 }, "KeyStore contract: a due refill (the 31st is February's last day) applies before the spend");
    assert_eq!(
        spend(store, &key.id, 3, feb28 + Duration::HOUR).await,
        CreditSpend::Spent { remaining: 4 },
        "KeyStore contract: one refill per period"
    );
    let stored_credits = stored(store, &key.id).await.credits.expect("credits");
    assert_eq!(
        stored_credits.refilled_at,
        Some(feb28),
        "KeyStore contract: refilled_at becomes the spend's instant"
    );
    assert_eq!(
        spend(store, &key.id, 11, datetime!(2027-03-31 00:00 UTC)).await,
        CreditSpend::Exhausted { remaining: 10 },
        "KeyStore contract: a refused spend still applies a due refill"
    );
    let daily = metered(&tenant, 0, Some(Refill::daily(2).expect("refill")));
    insert(store, &daily).await;
    assert_eq!(
        spend(store, &daily.id, 1, t(0) + Duration::HOUR).await,
        CreditSpend::Exhausted { remaining: 0 },
        "KeyStore contract: same day, no refill"
    );
    assert_eq!(
        spend(store, &daily.id, 1, t(0) + Duration::DAY).await,
        CreditSpend::Spent { remaining: 1 },
        "KeyStore contract: daily refill at 00:00 UTC"
    );
    // A top-up in a new period lands on the due refill, which then does not
    // overwrite it.
    let topped = metered(&tenant, 0, Some(Refill::daily(2).expect("refill")));
    insert(store, &topped).await;
    let next_day = t(0) + Duration::DAY;
    let add = ControlsUpdate::new().credits(CreditsChange::Add(3));
    let after = ok(
        store.update_controls(&topped.id, &add, next_day).await,
        "update_controls",
    )
    .expect("found");
    assert_eq!(
        after.credits.map(|c| (c.remaining, c.refilled_at)),
        Some((5, Some(next_day))),
        "KeyStore contract: adding credits applies a due refill first"
    );
    assert_eq!(
        spend(store, &topped.id, 1, next_day + Duration::HOUR).await,
        CreditSpend::Spent { remaining: 4 },
        "KeyStore contract: a top-up is not overwritten by the refill it followed"
    );
}

async fn concurrent_spends_spend_exactly<S: KeyStore + ?Sized>(store: &S) {
    let key = metered(&fresh_tenant(), 10, None);
    insert(store, &key).await;
    let spends: Vec<_> = (0..24)
        .map(|_| store.spend_credits(&key.id, 1, t(1)))
        .collect();
    let outcomes: Vec<_> = join_all(spends)
        .await
        .into_iter()
        .map(|r| ok(r, "spend_credits"))
        .collect();
    let spent = outcomes
        .iter()
        .filter(|o| matches!(o, Some(CreditSpend::Spent { .. })))
        .count();
    assert_eq!(
        spent, 10,
        "KeyStore contract: concurrent spends spend exactly the credits there are"
    );
    let mut remaining: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Some(CreditSpend::Spent { remaining }) => Some(*remaining),
            _ => None,
        })
        .collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..10).collect::<Vec<_>>(),
        "KeyStore contract: each concurrent spend reports its own remainder"
    );
}

async fn update_controls_applies_and_adds_atomically<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let key = record(&tenant, 0);
    insert(store, &key).await;
    let list = IpAllowlist::parse(["10.0.0.0/8", "2001:db8::/48"]).expect("ranges");
    let budget = BudgetId::parse("customer_1").expect("budget");
    let update = ControlsUpdate::new()
        .allowed_ips(Some(list.clone()))
        .credits(CreditsChange::Set(
            Credits::new(5)
                .expect("credits")
                .refill(Refill::daily(5).expect("refill")),
        ))
        .budget(Some(budget.clone()))
        .rate_limit(RateLimit::per_minute(7).expect("non-zero"));
    let updated = ok(
        store.update_controls(&key.id, &update, t(9)).await,
        "update_controls",
    )
    .unwrap_or_else(|| panic!("KeyStore contract: update_controls must find the inserted key"));
    let mut expected = key.clone();
    update.apply(&mut expected, t(9));
    assert_eq!(
        *updated, expected,
        "KeyStore contract: update_controls applies the update as ControlsUpdate::apply does"
    );
    assert_eq!(
        *stored(store, &key.id).await,
        expected,
        "KeyStore contract: get shows the update"
    );
    assert_eq!(
        updated.credits.and_then(|c| c.refilled_at),
        Some(t(9)),
        "KeyStore contract: set credits are refilled at the update's instant"
    );
    // Add, concurrently with spends: nothing lost.
    let add = ControlsUpdate::new().credits(CreditsChange::Add(3));
    let adds: Vec<_> = (0..5)
        .map(|_| store.update_controls(&key.id, &add, t(10)))
        .collect();
    let spends: Vec<_> = (0..5)
        .map(|_| store.spend_credits(&key.id, 1, t(10)))
        .collect();
    let (adds, spends) = (join_all(adds), join_all(spends));
    let (added, spent) = futures_join(adds, spends).await;
    for a in added {
        ok(a, "update_controls");
    }
    let spent = spent
        .into_iter()
        .map(|r| ok(r, "spend_credits"))
        .filter(|o| matches!(o, Some(CreditSpend::Spent { .. })))
        .count();
    let remaining = stored(store, &key.id).await.credits.map(|c| c.remaining);
    assert_eq!(
        remaining,
        Some(5 + 15 - spent as u64),
        "KeyStore contract: adding credits never loses a concurrent spend"
    );
    // Clearing.
    let cleared = ControlsUpdate::new()
        .allowed_ips(None)
        .credits(CreditsChange::Remove)
        .budget(None);
    let after = ok(
        store.update_controls(&key.id, &cleared, t(11)).await,
        "update_controls",
    )
    .expect("found");
    assert!(
        after.allowed_ips.is_none() && after.credits.is_none() && after.budget.is_none(),
        "KeyStore contract: None clears a control"
    );
    assert_eq!(
        after.rate_limit,
        RateLimit::per_minute(7).expect("non-zero"),
        "KeyStore contract: fields not in the update are kept"
    );
    let plain = ControlsUpdate::new().credits(CreditsChange::Add(3));
    let still = ok(
        store.update_controls(&key.id, &plain, t(12)).await,
        "update_controls",
    )
    .expect("found");
    assert!(
        still.credits.is_none(),
        "KeyStore contract: adding to an unmetered key leaves it unmetered"
    );
    assert!(
        ok(
            store
                .update_controls(&KeyId::generate(), &update, t(9))
                .await,
            "update_controls"
        )
        .is_none(),
        "KeyStore contract: update_controls of an unknown id is None"
    );
}

async fn record_uses_keeps_recent_ips_and_agent<S: KeyStore + ?Sized>(store: &S) {
    let tenant = fresh_tenant();
    let key = record(&tenant, 0);
    insert(store, &key).await;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    let mut expected = key.clone();
    let mut first = KeyUse::new(key.id.clone(), t(10));
    first.ips = vec![ip("203.0.113.1"), ip("2001:db8::1")];
    first.user_agent = Some("first/1".into());
    let mut second = KeyUse::new(key.id.clone(), t(20));
    second.ips = vec![
        ip("203.0.113.3"),
        ip("203.0.113.1"),
        ip("203.0.113.4"),
        ip("203.0.113.5"),
    ];
    let mut late = KeyUse::new(key.id.clone(), t(15));
    late.ips = vec![ip("198.51.100.1")];
    late.user_agent = Some("late/0".into());
    for batch in [
        vec![first],
        vec![second, KeyUse::new(KeyId::generate(), t(1))],
        vec![late],
    ] {
        ok(store.record_uses(&batch).await, "record_uses");
        batch[0].apply(&mut expected);
        let got = stored(store, &key.id).await;
        assert_eq!(
            got.last_used_at, expected.last_used_at,
            "KeyStore contract: record_uses keeps the later instant"
        );
        assert_eq!(got.recent_ips, expected.recent_ips, "KeyStore contract: record_uses keeps the distinct recent IPs as KeyUse::apply does (newest first, at most 5)");
        assert_eq!(
            got.last_user_agent, expected.last_user_agent,
            "KeyStore contract: record_uses keeps the latest user agent"
        );
    }
    assert_eq!(expected.recent_ips.len(), 5);
}

/// Polls two futures to completion.
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let (mut a, mut b) = (Box::pin(a), Box::pin(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    (ra.expect("done"), rb.expect("done"))
}

/// Polls every future until all are done (no runtime needed).
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
