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
use crate::key::{KeyId, KeyRecord, KeyState, RateLimit, StateFilter, TenantId};
use crate::scope::ScopeSet;
use crate::store::{KeyStore, PageRequest, Revocation};
use crate::token::TokenKind;

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
    }
}

fn ok<T, E: Debug>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("KeyStore contract: {what} failed: {err:?}"),
    }
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
        let found = ok(store.find_by_hash(&record.hash).await, "find_by_hash");
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
        ok(store.find_by_hash(&same_id.hash).await, "find_by_hash").is_none(),
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
    let found = ok(store.find_by_hash(&hash).await, "find_by_hash");
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
            ok(store.find_by_hash(&near).await, "find_by_hash").is_none(),
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
        let found = ok(store.find_by_hash(&key.hash).await, "find_by_hash");
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
            ok(store.find_by_hash(&key.hash).await, "find_by_hash"),
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
