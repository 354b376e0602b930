//! `PgStore` and `CachedStore<PgStore>` against a real PostgreSQL server
//! (`scripts/test.sh` starts one). Each test works in its own schema.
#![cfg(all(feature = "postgres", feature = "test-util"))]

mod common;

use std::time::{Duration as StdDuration, Instant};

use common::pg;
use common::race::{revoke_races_verify, Race};
use keyward::store::CachedStore;
use keyward::testing::conformance;
use keyward::{
    Clock, KeyId, KeyStore, ManualClock, NewKey, Revocation, StoreError, TokenHasher, VerifyError,
};
use time::{Duration, OffsetDateTime};

#[tokio::test]
async fn pg_store_conforms() {
    let Some((store, _)) = pg::store("pg_store_conforms").await else {
        return;
    };
    conformance::run(&store).await;
    // Twice on one schema: the suite only adds fresh records.
    conformance::run(&store).await;
}

#[tokio::test]
async fn cached_pg_store_conforms() {
    let Some((store, _)) = pg::store("cached_pg_store_conforms").await else {
        return;
    };
    conformance::run(&CachedStore::new(store.clone())).await;
    conformance::run(&CachedStore::builder(store).capacity(2).build()).await;
}

#[tokio::test]
async fn migrate_is_idempotent_and_safe_when_run_concurrently() {
    let Some((store, schema)) = pg::store("migrate_concurrently").await else {
        return;
    };
    let url = pg::database_url("migrate_concurrently").unwrap();
    // A fresh schema migrated by eight "processes" at once, then again.
    let fresh = pg::unique_schema("migrate_fresh");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = pg::store_on(&url, &fresh);
        tasks.push(tokio::spawn(async move { s.migrate().await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    store.migrate().await.unwrap();
    for schema in [&schema, &fresh] {
        let client = store.pool().get().await.unwrap();
        let versions: Vec<i32> = client
            .query(
                &format!("SELECT version FROM {schema}.keyward_schema_version"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let all: Vec<i32> = (1..=keyward::store::postgres::SCHEMA_VERSION).collect();
        assert_eq!(versions, all);
    }
    conformance::run(&pg::store_on(&url, &fresh)).await;
}

#[tokio::test]
async fn an_unmigrated_schema_is_an_error_never_an_empty_answer() {
    let Some(url) = pg::database_url("unmigrated") else {
        return;
    };
    let store = pg::store_on(&url, &pg::unique_schema("unmigrated"));
    let hash = TokenHasher::sha256().hash("pk_whatever");
    let err = store.find_by_hash(&hash).await.unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    let (keyring, _) = common::keyring_on(store);
    let token = keyring.kind("pk").unwrap().token_kind().generate();
    let err = keyring.verify(token.expose_secret()).await.unwrap_err();
    assert!(matches!(err, VerifyError::Store(_)), "{err:?}");
}

/// Many tasks verify while one revokes and another issues: once `revoke`
/// returns, the key never verifies again.
const RACE: Race = Race {
    keys: 24,
    verifiers: 6,
    rounds: 300,
    stride: 5,
    issues: 50,
    revoke_pause: Some(StdDuration::from_millis(2)),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_issue_verify_revoke_on_postgres() {
    let Some((store, _)) = pg::store("concurrent_uncached").await else {
        return;
    };
    revoke_races_verify(common::keyring_on(store).0, RACE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_issue_verify_revoke_through_the_cache() {
    let Some((store, _)) = pg::store("concurrent_cached").await else {
        return;
    };
    revoke_races_verify(common::keyring_on(CachedStore::new(store)).0, RACE).await;
}

#[tokio::test]
async fn a_flush_of_n_touched_keys_is_one_update_statement() {
    let Some((store, schema)) = pg::store("flush_one_update").await else {
        return;
    };
    // Server-side proof, independent of the store's own counter: a
    // statement-level trigger counts UPDATE statements on the table.
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.update_statements (n integer NOT NULL);
             INSERT INTO {schema}.update_statements VALUES (0);
             CREATE FUNCTION {schema}.count_update() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN UPDATE {schema}.update_statements SET n = n + 1; RETURN NULL; END $$;
             CREATE TRIGGER count_update AFTER UPDATE ON {schema}.keyward_keys
               FOR EACH STATEMENT EXECUTE FUNCTION {schema}.count_update();"
        ))
        .await
        .unwrap();
    let updates = || async {
        let row = client
            .query_one(&format!("SELECT n FROM {schema}.update_statements"), &[])
            .await
            .unwrap();
        row.get::<_, i32>(0)
    };

    const N: usize = 40;
    let (keyring, clock) = common::keyring_on(store.clone());
    let mut tokens = Vec::new();
    for i in 0..N {
        let issued = keyring
            .issue(NewKey::new("pk", "p", &format!("k{i}")))
            .await
            .unwrap();
        tokens.push(issued.token);
    }
    // Uses wait in memory for the interval (60 s); the flush writes them all.
    clock.advance(std::time::Duration::from_secs(1));
    for token in &tokens {
        keyring.verify(token.expose_secret()).await.unwrap();
    }
    assert_eq!(keyring.pending_last_used(), N);
    let (statements, before) = (store.statements_executed(), updates().await);
    assert_eq!(keyring.flush_last_used().await.unwrap(), N);
    assert_eq!(
        store.statements_executed() - statements,
        1,
        "one statement sent"
    );
    assert_eq!(
        updates().await - before,
        1,
        "one UPDATE statement ran on the server"
    );
    let touched: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {schema}.keyward_keys WHERE last_used_at = $1"),
            &[&clock.now()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(touched, N as i64);
}

/// Polls `verify` until it refuses the token, for at most `limit`.
async fn refused_within(
    keyring: &keyward::Keyring,
    token: &str,
    limit: StdDuration,
) -> StdDuration {
    let start = Instant::now();
    loop {
        match keyring.verify(token).await {
            Err(VerifyError::Revoked) => return start.elapsed(),
            Ok(_) if start.elapsed() < limit => {
                tokio::time::sleep(StdDuration::from_millis(10)).await
            }
            other => panic!("after {:?}: {other:?}", start.elapsed()),
        }
    }
}

async fn wait_listening(listener: &keyward::store::postgres::RevocationListener) {
    let start = Instant::now();
    while !listener.is_listening() {
        assert!(
            start.elapsed() < StdDuration::from_secs(10),
            "listener did not connect"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_keyring_refuses_a_revoked_key_within_a_second() {
    let Some((_, schema)) = pg::store("two_keyrings").await else {
        return;
    };
    let url = pg::database_url("two_keyrings").unwrap();
    // Two "processes": each its own pool, cache and listener, one database.
    let (pg_a, pg_b) = (pg::store_on(&url, &schema), pg::store_on(&url, &schema));
    let cache_a = CachedStore::new(pg_a.clone());
    let cache_b = CachedStore::new(pg_b.clone());
    let listener_a = pg_a.listen(cache_a.invalidator()).unwrap();
    let listener_b = pg_b.listen(cache_b.invalidator()).unwrap();
    let (a, _) = common::keyring_on(cache_a);
    let (b, _) = common::keyring_on(cache_b);
    wait_listening(&listener_a).await;
    wait_listening(&listener_b).await;

    let issued = a.issue(NewKey::new("pk", "p", "shared")).await.unwrap();
    let token = issued.token.expose_secret();
    a.verify(token).await.unwrap();
    b.verify(token).await.unwrap();
    // B now answers from its cache: without the listener it would keep
    // accepting the key for the cache's TTL (30 s).
    let statements = pg_b.statements_executed();
    b.verify(token).await.unwrap();
    assert_eq!(
        pg_b.statements_executed(),
        statements,
        "B serves from its cache"
    );

    a.revoke(issued.info.id()).await.unwrap();
    assert!(matches!(a.verify(token).await, Err(VerifyError::Revoked)));
    let lag = refused_within(&b, token, StdDuration::from_secs(1)).await;
    eprintln!("keyring B refused the revoked key after {lag:?}");
}

#[tokio::test]
async fn without_notifications_the_ttl_bounds_the_lag() {
    let Some((store, schema)) = pg::store("ttl_bound").await else {
        return;
    };
    let url = pg::database_url("ttl_bound").unwrap();
    let clock = keyward::ManualClock::new(common::start());
    let cached = CachedStore::builder(pg::store_on(&url, &schema))
        .ttl(std::time::Duration::from_secs(30))
        .clock(clock.clone())
        .build();
    let (a, _) = common::keyring_on(store);
    let (b, b_clock) = common::keyring_on(cached);
    let issued = a.issue(NewKey::new("pk", "p", "k")).await.unwrap();
    let token = issued.token.expose_secret();
    b.verify(token).await.unwrap();
    a.revoke(issued.info.id()).await.unwrap();
    // No listener: B's cache still holds the key, for at most the TTL.
    clock.advance(std::time::Duration::from_secs(29));
    b.verify(token).await.unwrap();
    clock.advance(std::time::Duration::from_secs(1));
    b_clock.advance(std::time::Duration::from_secs(1));
    assert!(matches!(b.verify(token).await, Err(VerifyError::Revoked)));
}

/// Every rendering of a stored hash an error message could carry:
/// PostgreSQL's `DETAIL` shows a `bytea` as `\x` and lower-case hex.
fn hash_renderings(hash: &keyward::TokenHash) -> Vec<String> {
    let hex: String = hash.digest().iter().map(|b| format!("{b:02x}")).collect();
    let stored: String = hash.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let list: Vec<String> = hash.digest()[..8].iter().map(u8::to_string).collect();
    vec![
        hex[..16].to_owned(),
        hex[..16].to_uppercase(),
        format!("\\x{}", &stored[..20]),
        list.join(", "),
    ]
}

/// `Display` and `Debug` of an error and of every error in its source chain.
fn rendered(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(err);
    while let Some(err) = next {
        text.push_str(&format!("{err} | {err:?} | "));
        next = err.source();
    }
    text
}

/// Inserts `record`'s hash with plain SQL, bypassing the store: the server's
/// own error for it, to show what an unfiltered message would carry.
async fn raw_insert(store: &keyward::store::postgres::PgStore, name: &str, hash: &[u8]) -> String {
    let client = store.pool().get().await.unwrap();
    let err = client
        .execute(
            "INSERT INTO keyward_keys (id, tenant, kind, name, display_prefix, hash, created_at) \
             VALUES ($1, 't', 'pk', $2, 'pk_abcde', $3, now())",
            &[&KeyId::generate().as_str(), &name, &hash],
        )
        .await
        .unwrap_err();
    rendered(&err)
}

/// A unique violation on the hash and a CHECK violation both make the server
/// echo the hash in its `DETAIL`; the store's errors (message, `Debug`,
/// sources) carry neither. The unfiltered server errors are checked to
/// carry it, so this test sees a leak when there is one.
#[tokio::test]
async fn errors_never_echo_hashes() {
    let Some((store, schema)) = pg::store("errors_no_hash").await else {
        return;
    };
    let (keyring, _) = common::keyring_on(store.clone());
    let issued = keyring.issue(NewKey::new("pk", "p", "k")).await.unwrap();
    let record = store.get(issued.info.id()).await.unwrap().unwrap();
    let needles = hash_renderings(&record.hash);
    let leaks = |text: &str, needles: &[String]| needles.iter().any(|n| text.contains(n.as_str()));

    // A second key with the same hash: a unique violation.
    let server = raw_insert(&store, "dup", &record.hash.to_bytes()).await;
    assert!(leaks(&server, &needles), "the server echoes it: {server}");
    let mut duplicate = (*record).clone();
    duplicate.id = KeyId::generate();
    let err = store.insert(duplicate).await.unwrap_err();
    let text = rendered(&err);
    assert!(
        !leaks(&text, &needles),
        "a conflict echoes the hash: {text}"
    );
    assert!(matches!(err, StoreError::Conflict), "{err:?}");

    // A row the table refuses: the DETAIL lists the whole row.
    client_execute(
        &store,
        &format!(
            "ALTER TABLE {schema}.keyward_keys ADD CONSTRAINT no_refused CHECK (name <> 'refused')"
        ),
    )
    .await;
    let mut refused = (*record).clone();
    refused.id = KeyId::generate();
    refused.name = "refused".into();
    refused.hash = TokenHasher::sha256().hash("pk_another token");
    let needles = hash_renderings(&refused.hash);
    let server = raw_insert(&store, "refused", &refused.hash.to_bytes()).await;
    assert!(leaks(&server, &needles), "the server echoes it: {server}");
    let err = store.insert(refused).await.unwrap_err();
    let text = rendered(&err);
    assert!(!leaks(&text, &needles), "an error echoes the hash: {text}");
    assert!(
        matches!(err, StoreError::Other(_)) && text.contains("23514"),
        "the message keeps the server's message and SQLSTATE: {text}"
    );
    // A host reads the SQLSTATE from the source, without parsing text.
    let pg = std::error::Error::source(&err)
        .and_then(|cause| cause.downcast_ref::<keyward::store::postgres::PgError>())
        .expect("the source is the server's error");
    assert_eq!(
        pg.code(),
        &keyward::store::postgres::tokio_postgres::error::SqlState::CHECK_VIOLATION
    );
    assert_eq!(pg.severity(), "ERROR");
}

async fn client_execute(store: &keyward::store::postgres::PgStore, sql: &str) {
    store
        .pool()
        .get()
        .await
        .unwrap()
        .batch_execute(sql)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_blocked_statement_times_out_as_unavailable() {
    let Some((store, schema)) = pg::store("statement_timeout").await else {
        return;
    };
    let url = pg::database_url("statement_timeout").unwrap();
    let (keyring, _) = common::keyring_on(store);
    let issued = keyring.issue(NewKey::new("pk", "p", "k")).await.unwrap();
    let impatient = keyward::store::postgres::PgStore::builder(&url)
        .schema(&schema)
        .timeout(StdDuration::from_millis(300))
        .build()
        .unwrap();
    // Another session holds the row lock, so the revoke's UPDATE waits.
    let mut holder = pg::store_on(&url, &schema).pool().get().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM keyward_keys WHERE id = $1 FOR UPDATE",
        &[&issued.info.id().as_str()],
    )
    .await
    .unwrap();
    let start = Instant::now();
    let err = impatient
        .revoke(issued.info.id(), keyward::Revocation::Now)
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(took < StdDuration::from_secs(3), "took {took:?}");
    tx.rollback().await.unwrap();
}

/// Anyone who can connect may `NOTIFY keyward_revoked`: payloads that are
/// not key ids (garbage with spaces, empty, overlong) change nothing and are
/// logged once, without the payload; a well-formed id that names no key
/// changes nothing either; a key's id drops exactly that key.
#[tokio::test]
async fn notifications_drop_one_key_and_never_clear_the_cache() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    // This runtime has one thread: the listener task logs to this subscriber.
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );

    let Some((store, _)) = pg::store("notify_garbage").await else {
        return;
    };
    let cache = CachedStore::new(store.clone());
    let listener = store.listen(cache.invalidator()).unwrap();
    let (keyring, _) = common::keyring_on(cache.clone());
    wait_listening(&listener).await;
    let a = keyring.issue(NewKey::new("pk", "p", "a")).await.unwrap();
    let b = keyring.issue(NewKey::new("pk", "p", "b")).await.unwrap();
    for key in [&a, &b] {
        keyring.verify(key.token.expose_secret()).await.unwrap();
    }
    assert_eq!(cache.cached(), 2);

    let notify = |payload: String| {
        let store = store.clone();
        async move {
            let client = store.pool().get().await.unwrap();
            client
                .execute("SELECT pg_notify('keyward_revoked', $1)", &[&payload])
                .await
                .unwrap();
        }
    };
    let garbage = "garbage; not a key id".to_owned();
    for payload in [
        garbage.clone(),
        String::new(),
        "k".repeat(7999),     // PostgreSQL's longest payload
        "garbage".to_owned(), // a well-formed id of no key
        garbage.clone(),
    ] {
        notify(payload).await;
    }
    // Notifications from one session arrive in order: once `a` is dropped,
    // everything before it has been handled.
    notify(a.info.id().to_string()).await;
    let start = Instant::now();
    while cache.cached() == 2 {
        assert!(
            start.elapsed() < StdDuration::from_secs(5),
            "no invalidation"
        );
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    assert_eq!(cache.cached(), 1, "exactly the notified key was dropped");
    assert_eq!(listener.ignored_notifications(), 4);

    // `b` is still served from the cache; `a` is read again.
    let statements = store.statements_executed();
    keyring.verify(b.token.expose_secret()).await.unwrap();
    assert_eq!(store.statements_executed(), statements, "b stayed cached");
    keyring.verify(a.token.expose_secret()).await.unwrap();
    assert_eq!(store.statements_executed(), statements + 1, "a is re-read");

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        logs.matches("not a key id").count(),
        1,
        "logged once: {logs}"
    );
    assert!(logs.contains("payload_bytes=21"), "{logs}");
    assert!(!logs.contains(&garbage) && !logs.contains("kkkk"), "{logs}");
}

/// The database's clock now.
async fn db_clock(store: &keyward::store::postgres::PgStore) -> OffsetDateTime {
    let client = store.pool().get().await.unwrap();
    client
        .query_one("SELECT clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Three "processes" on one database: the revoker's clock 60 s ahead of the
/// database, two verifiers' 60 s behind it (120 s behind the revoker), one
/// reading directly, one through a `CachedStore` with a listener. The
/// revocation takes the database's clock, and once `revoke` returns the
/// direct verifier refuses the key; the cached one within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_takes_the_database_clock_and_binds_lagging_keyrings() {
    let Some((store, schema)) = pg::store("revoke_db_clock").await else {
        return;
    };
    let url = pg::database_url("revoke_db_clock").unwrap();
    let real = OffsetDateTime::now_utc();
    let ahead = ManualClock::new(real + Duration::seconds(60));
    let behind = ManualClock::new(real - Duration::seconds(60));
    let revoker = common::keyring_with_clock(pg::store_on(&url, &schema), ahead);
    let direct = common::keyring_with_clock(pg::store_on(&url, &schema), behind.clone());
    let pg_c = pg::store_on(&url, &schema);
    let cache = CachedStore::builder(pg_c.clone())
        .clock(behind.clone())
        .build();
    let listener = pg_c.listen(cache.invalidator()).unwrap();
    let cached = common::keyring_with_clock(cache, behind);
    wait_listening(&listener).await;

    let issued = revoker.issue(NewKey::new("pk", "p", "k")).await.unwrap();
    let token = issued.token.expose_secret();
    direct.verify(token).await.unwrap();
    cached.verify(token).await.unwrap();

    let before = db_clock(&store).await;
    let info = revoker.revoke(issued.info.id()).await.unwrap();
    let after = db_clock(&store).await;
    let at = info.revoked_at().unwrap();
    assert!(
        before <= at && at <= after,
        "revoked_at {at} is the database's clock ({before} .. {after}), not the revoker's"
    );
    assert!(matches!(
        direct.verify(token).await.unwrap_err(),
        VerifyError::Revoked
    ));
    let lag = refused_within(&cached, token, StdDuration::from_secs(1)).await;
    eprintln!("the lagging cached keyring refused the key after {lag:?}");
}

/// A scheduled revocation whose instant has passed on the database's clock
/// but not on a lagging verifier's, then made immediate: `revoked_at` stays,
/// only `revocation_scheduled` changes, and other caches are still notified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn making_a_scheduled_revocation_immediate_notifies_other_caches() {
    let Some((store, schema)) = pg::store("schedule_to_now").await else {
        return;
    };
    let url = pg::database_url("schedule_to_now").unwrap();
    let behind = ManualClock::new(OffsetDateTime::now_utc() - Duration::seconds(120));
    let pg_c = pg::store_on(&url, &schema);
    let cache = CachedStore::builder(pg_c.clone())
        .clock(behind.clone())
        .build();
    let listener = pg_c.listen(cache.invalidator()).unwrap();
    let cached = common::keyring_with_clock(cache, behind);
    wait_listening(&listener).await;

    let (revoker, _) = common::keyring_on(store.clone());
    let issued = revoker.issue(NewKey::new("pk", "p", "k")).await.unwrap();
    let token = issued.token.expose_secret();
    cached.verify(token).await.unwrap();
    let reads = pg_c.statements_executed();
    let past = db_clock(&store).await - Duration::seconds(30);
    let scheduled = store
        .revoke(issued.info.id(), Revocation::At(past))
        .await
        .unwrap()
        .unwrap();
    assert!(scheduled.revocation_scheduled);
    // Once notified, the cache reads the scheduled record, whose instant is
    // ahead of the verifier's clock: it still accepts the key.
    let start = Instant::now();
    while pg_c.statements_executed() == reads {
        assert!(start.elapsed() < StdDuration::from_secs(5), "not notified");
        tokio::time::sleep(StdDuration::from_millis(10)).await;
        cached.verify(token).await.unwrap();
    }
    let reads = pg_c.statements_executed();
    cached.verify(token).await.unwrap();
    assert_eq!(pg_c.statements_executed(), reads, "served from the cache");
    let now = revoker.revoke(issued.info.id()).await.unwrap();
    assert_eq!(now.revoked_at(), Some(past), "the earlier instant stays");
    refused_within(&cached, token, StdDuration::from_secs(1)).await;
}

/// A database at schema version 1 (instants only) upgrades to version 2: a
/// revocation still ahead of the database's clock (a rotation's grace in
/// progress) stays scheduled, a past one becomes immediate.
#[tokio::test]
async fn upgrading_from_version_1_keeps_grace_periods() {
    let Some(url) = pg::database_url("upgrade_v1") else {
        return;
    };
    let schema = pg::unique_schema("upgrade_v1");
    let store = pg::store_on(&url, &schema);
    let (keyring, _) = common::keyring_on(store.clone());
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema};
             {v1}
             CREATE TABLE keyward_schema_version (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO keyward_schema_version (version) VALUES (1);",
            v1 = include_str!("../src/store/postgres/schema.sql")
        ))
        .await
        .unwrap();
    // Rows as version 1 wrote them.
    let mut ids = Vec::new();
    for revoked in [
        "NULL",
        "now() - interval '1 day'",
        "now() + interval '1 hour'",
    ] {
        let id = KeyId::generate();
        let hash = TokenHasher::sha256().hash(id.as_str()).to_bytes();
        client
            .execute(
                &format!(
                    "INSERT INTO keyward_keys (id, tenant, kind, name, display_prefix, hash, \
                     created_at, revoked_at) \
                     VALUES ($1, 't', 'pk', 'n', 'pk_abcde', $2, now(), {revoked})"
                ),
                &[&id.as_str(), &&hash[..]],
            )
            .await
            .unwrap();
        ids.push(id);
    }
    drop(client);
    store.migrate().await.unwrap();
    let mut states = Vec::new();
    for id in &ids {
        let record = store.get(id).await.unwrap().unwrap();
        states.push((record.revoked_at.is_some(), record.revocation_scheduled));
    }
    assert_eq!(
        states,
        [(false, false), (true, false), (true, true)],
        "active, past (immediate), ahead (scheduled)"
    );
    conformance::run(&store).await;
    keyring
        .issue(NewKey::new("pk", "p", "after"))
        .await
        .unwrap();
}

/// A database at schema version 2, with keys, upgrades to version 3: the
/// paging index appears, old rows page, and a page query is an index scan
/// in the page's order (no sort of the tenant's rows).
#[tokio::test]
async fn upgrading_from_version_2_adds_the_paging_index() {
    let Some(url) = pg::database_url("upgrade_v2") else {
        return;
    };
    let schema = pg::unique_schema("upgrade_v2");
    let store = pg::store_on(&url, &schema);
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema};
             {v1}
             {v2}
             CREATE TABLE keyward_schema_version (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO keyward_schema_version (version) VALUES (1), (2);",
            v1 = include_str!("../src/store/postgres/schema.sql"),
            v2 = include_str!("../src/store/postgres/schema_v2.sql"),
        ))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (i, id) in ["key_b", "key_A", "key_a"].into_iter().enumerate() {
        let hash = TokenHasher::sha256().hash(id).to_bytes();
        client
            .execute(
                "INSERT INTO keyward_keys (id, tenant, kind, name, display_prefix, hash, \
                 created_at) VALUES ($1, 't', 'pk', 'n', 'pk_abcde', $2, \
                 timestamptz '2030-01-01' + $3 * interval '1 second')",
                &[&id, &&hash[..], &((i / 2) as f64)],
            )
            .await
            .unwrap();
        ids.push(id);
    }
    drop(client);
    store.migrate().await.unwrap();
    let client = store.pool().get().await.unwrap();
    let versions: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {schema}.keyward_schema_version WHERE version = 3"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 1);
    let (keyring, _) = common::keyring_on(store.clone());
    let tenant = keyward::TenantId::parse("t").unwrap();
    let page = keyring
        .list_page(&tenant, &keyward::ListQuery::new().limit(2))
        .await
        .unwrap();
    let listed: Vec<&str> = page.keys().iter().map(|k| k.id().as_str()).collect();
    // Newest first; at the same instant, ids byte by byte descending.
    assert_eq!(listed, ["key_a", "key_b"]);
    let rest = keyring
        .list_page(
            &tenant,
            &keyward::ListQuery::new()
                .limit(2)
                .cursor(page.next_cursor().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.keys()[0].id().as_str(), "key_A");
    assert!(rest.next_cursor().is_none());

    // The plan: the new index, walked backwards, no Sort node.
    client
        .batch_execute(&format!(
            "SET search_path TO {schema}; SET enable_seqscan = off"
        ))
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT id FROM keyward_keys WHERE tenant = 't' \
             AND (created_at, id COLLATE \"C\") < (now(), 'key_z' COLLATE \"C\") \
             ORDER BY created_at DESC, id COLLATE \"C\" DESC LIMIT 3",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("keyward_keys_tenant_page_idx"), "{plan}");
    assert!(plan.contains("Backward"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
    conformance::run(&store).await;
}

/// An instance that waits for another's migration longer than its
/// per-statement timeout still migrates: the wait is bounded by
/// `MIGRATION_TIMEOUT`, not the store's timeout.
#[tokio::test]
async fn a_migration_waits_for_another_longer_than_the_statement_timeout() {
    let Some(url) = pg::database_url("migrate_waits") else {
        return;
    };
    let schema = pg::unique_schema("migrate_waits");
    let holder = pg::store_on(&url, &schema);
    let waiter = keyward::store::postgres::PgStore::builder(&url)
        .schema(&schema)
        .timeout(StdDuration::from_millis(500))
        .build()
        .unwrap();
    let mut client = holder.pool().get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    // The lock `migrate` takes (0x006b_6579_7761_7264, "keyward").
    tx.execute("SELECT pg_advisory_xact_lock(30229394876363364)", &[])
        .await
        .unwrap();
    let waiting = tokio::spawn(async move { waiter.migrate().await });
    tokio::time::sleep(StdDuration::from_millis(1_500)).await;
    assert!(!waiting.is_finished(), "it waits for the lock");
    tx.commit().await.unwrap();
    waiting.await.unwrap().expect("migrated after the wait");
}

// ---------------------------------------------------------------------------
// Usage controls (schema version 5).
// ---------------------------------------------------------------------------

/// A fresh key with these credits, refilled at `refilled_at`.
fn metered_key(
    remaining: u64,
    refill: Option<keyward::usage::Refill>,
    refilled_at: OffsetDateTime,
) -> keyward::KeyRecord {
    let id = KeyId::generate();
    let hash = TokenHasher::sha256().hash(id.as_str());
    let mut record = keyward::KeyRecord::new(
        id,
        keyward::TenantId::parse("t").unwrap(),
        "pk",
        hash,
        refilled_at,
    );
    let mut credits = keyward::usage::Credits::new(remaining).unwrap();
    credits.refill = refill;
    credits.refilled_at = Some(refilled_at);
    record.credits = Some(credits);
    record
}

/// What a batch of spends reported: the remainders of those spent, and how
/// many were exhausted.
fn tally(outcomes: Vec<keyward::usage::CreditSpend>) -> (Vec<u64>, usize) {
    use keyward::usage::CreditSpend;
    let mut spent = Vec::new();
    let mut exhausted = 0;
    for outcome in outcomes {
        match outcome {
            CreditSpend::Spent { remaining } => spent.push(remaining),
            CreditSpend::Exhausted { .. } => exhausted += 1,
            other => panic!("{other:?}"),
        }
    }
    spent.sort_unstable();
    (spent, exhausted)
}

/// Two "processes" (two pools on one schema) spend one key's credits at
/// once: exactly the credits there are are spent, each spend reports its
/// own remainder, and credits added meanwhile are never lost. A refill due
/// at the spends' instant applies once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_spends_across_two_stores_spend_exactly() {
    use keyward::usage::{ControlsUpdate, CreditsChange, Refill};
    let Some((_, schema)) = pg::store("spend_two_stores").await else {
        return;
    };
    let url = pg::database_url("spend_two_stores").unwrap();
    let stores = [pg::store_on(&url, &schema), pg::store_on(&url, &schema)];
    let now = OffsetDateTime::now_utc();

    // 50 credits, 200 spends.
    let key = metered_key(50, None, now);
    stores[0].insert(key.clone()).await.unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = stores[i % 2].clone();
            let id = key.id.clone();
            tokio::spawn(async move { store.spend_credits(&id, 1, now).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap().unwrap());
    }
    let (spent, exhausted) = tally(outcomes);
    assert_eq!(spent, (0..50).collect::<Vec<u64>>(), "each remainder once");
    assert_eq!(exhausted, 150);
    let stored = stores[1].get(&key.id).await.unwrap().unwrap();
    assert_eq!(stored.credits.unwrap().remaining, 0);

    // 100 credits; 150 spends and 20 additions of 5 at once.
    let key = metered_key(100, None, now);
    stores[1].insert(key.clone()).await.unwrap();
    let add = ControlsUpdate::new().credits(CreditsChange::Add(5));
    let mut spends = Vec::new();
    let mut adds = Vec::new();
    for i in 0..170 {
        let store = stores[i % 2].clone();
        let id = key.id.clone();
        if i % 17 == 3 && adds.len() < 20 {
            let add = add.clone();
            adds.push(tokio::spawn(async move {
                store.update_controls(&id, &add, now).await
            }));
        } else {
            spends.push(tokio::spawn(async move {
                store.spend_credits(&id, 1, now).await
            }));
        }
    }
    assert_eq!(adds.len(), 10);
    let added = 5 * adds.len() as u64;
    for task in adds {
        assert!(task.await.unwrap().unwrap().unwrap().credits.is_some());
    }
    let mut outcomes = Vec::new();
    for task in spends {
        outcomes.push(task.await.unwrap().unwrap().unwrap());
    }
    let (spent, _) = tally(outcomes);
    let stored = stores[0].get(&key.id).await.unwrap().unwrap();
    assert_eq!(
        stored.credits.unwrap().remaining,
        100 + added - spent.len() as u64,
        "no spend and no addition lost"
    );

    // Refilled daily to 30, last refilled yesterday: 100 spends today
    // refill once and spend 30.
    let yesterday = now - Duration::days(1);
    let key = metered_key(0, Some(Refill::daily(30).unwrap()), yesterday);
    stores[0].insert(key.clone()).await.unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = stores[i % 2].clone();
            let id = key.id.clone();
            tokio::spawn(async move { store.spend_credits(&id, 1, now).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap().unwrap());
    }
    let (spent, exhausted) = tally(outcomes);
    assert_eq!(spent, (0..30).collect::<Vec<u64>>(), "one refill");
    assert_eq!(exhausted, 70);
    let credits = stores[1]
        .get(&key.id)
        .await
        .unwrap()
        .unwrap()
        .credits
        .unwrap();
    assert_eq!(credits.remaining, 0);
    let micros = |t: OffsetDateTime| {
        t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
            .unwrap()
    };
    assert_eq!(credits.refilled_at, Some(micros(now)));
}

/// The schema's `keyward_refill_start` is `RefillPeriod::period_start`:
/// daily and every monthly day, over two years of instants (a leap year,
/// every month's turn, each refill day's midnight and the microsecond
/// before it).
#[tokio::test]
async fn the_sql_refill_period_is_the_crates() {
    use keyward::usage::RefillPeriod;
    use time::macros::datetime;
    let Some((store, _)) = pg::store("refill_start").await else {
        return;
    };
    let start = datetime!(2027-11-15 00:00 UTC);
    let mut instants = Vec::new();
    let mut t = start;
    while t < datetime!(2029-03-15 00:00 UTC) {
        instants.push(t);
        t += Duration::minutes(7 * 60 + 13);
    }
    let mut day = datetime!(2027-11-01 00:00 UTC);
    while day < datetime!(2029-03-01 00:00 UTC) {
        instants.push(day);
        instants.push(day - Duration::microseconds(1));
        day += Duration::DAY;
    }
    // An instant in another offset is judged in UTC.
    instants.push(datetime!(2028-03-01 01:00 +02:00));
    let mut periods = vec![RefillPeriod::Daily];
    periods.extend((1..=31).map(|day| RefillPeriod::Monthly { day }));
    let client = store.pool().get().await.unwrap();
    for period in periods {
        let (name, day): (&str, Option<i16>) = match period {
            RefillPeriod::Daily => ("daily", None),
            RefillPeriod::Monthly { day } => ("monthly", Some(i16::from(day))),
            _ => unreachable!(),
        };
        let starts: Vec<OffsetDateTime> = client
            .query_one(
                "SELECT array_agg(keyward_refill_start($1, $2, t) ORDER BY n) \
                 FROM unnest($3::timestamptz[]) WITH ORDINALITY AS i(t, n)",
                &[&name, &day, &instants],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(starts.len(), instants.len());
        for (at, sql) in instants.iter().zip(starts) {
            assert_eq!(sql, period.period_start(*at), "{period:?} at {at}");
        }
    }
}

/// Waits until `cache` no longer holds `id` (a notification arrived).
async fn dropped_within(
    cache: &CachedStore<keyward::store::postgres::PgStore>,
    store: &keyward::store::postgres::PgStore,
    hash: &keyward::TokenHash,
    what: &str,
) {
    let start = Instant::now();
    loop {
        let reads = store.statements_executed();
        cache.find_by_hash(hash).await.unwrap().unwrap();
        if store.statements_executed() > reads {
            return;
        }
        assert!(
            start.elapsed() < StdDuration::from_secs(5),
            "{what}: the other process's cache was not told"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

/// A change of a key's allowlist, budget, rate limit or meteredness made
/// through one store drops the key from another process's cache (the
/// schema's trigger notifies); spends, additions, a new refill rule and
/// last-used writes do not notify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_changes_notify_other_caches_and_spends_do_not() {
    use keyward::usage::{
        BudgetId, ControlsUpdate, Credits, CreditsChange, IpAllowlist, KeyUse, Refill,
    };
    use keyward::RateLimit;
    let Some((_, schema)) = pg::store("controls_notify").await else {
        return;
    };
    let url = pg::database_url("controls_notify").unwrap();
    let (pg_a, pg_b) = (pg::store_on(&url, &schema), pg::store_on(&url, &schema));
    let cache = CachedStore::new(pg_b.clone());
    let listener = pg_b.listen(cache.invalidator()).unwrap();
    wait_listening(&listener).await;
    let now = OffsetDateTime::now_utc();
    let key = metered_key(10, None, now);
    let sentinel = metered_key(10, None, now);
    for record in [&key, &sentinel] {
        pg_a.insert(record.clone()).await.unwrap();
    }

    // The hot path and changes that leave the controls' shape alone.
    cache.find_by_hash(&key.hash).await.unwrap().unwrap();
    pg_a.spend_credits(&key.id, 1, now).await.unwrap();
    let mut key_use = KeyUse::new(key.id.clone(), now);
    key_use.ips = vec!["203.0.113.9".parse().unwrap()];
    key_use.user_agent = Some("agent/1".into());
    pg_a.record_uses(&[key_use]).await.unwrap();
    pg_a.touch(&[(key.id.clone(), now)]).await.unwrap();
    let quiet = [
        ControlsUpdate::new().credits(CreditsChange::Add(5)),
        ControlsUpdate::new().credits(CreditsChange::Set(
            Credits::new(3)
                .unwrap()
                .refill(Refill::monthly(3, 9).unwrap()),
        )),
        ControlsUpdate::new().rate_limit(key.rate_limit),
    ];
    for update in &quiet {
        pg_a.update_controls(&key.id, update, now).await.unwrap();
    }
    // Notifications arrive in commit order: once the sentinel's is in,
    // any of the above would have been too.
    cache.find_by_hash(&sentinel.hash).await.unwrap().unwrap();
    let limit = ControlsUpdate::new().rate_limit(RateLimit::per_minute(9).unwrap());
    pg_a.update_controls(&sentinel.id, &limit, now)
        .await
        .unwrap();
    dropped_within(&cache, &pg_b, &sentinel.hash, "rate limit").await;
    let reads = pg_b.statements_executed();
    cache.find_by_hash(&key.hash).await.unwrap().unwrap();
    assert_eq!(
        pg_b.statements_executed(),
        reads,
        "spends, additions, refill rules and last uses do not notify"
    );

    // Each change of the controls' shape does.
    let list = IpAllowlist::parse(["203.0.113.0/24"]).unwrap();
    let budget = BudgetId::parse("customer_1").unwrap();
    let changes = [
        (
            "allowlist set",
            ControlsUpdate::new().allowed_ips(Some(list.clone())),
        ),
        (
            "allowlist changed",
            ControlsUpdate::new()
                .allowed_ips(Some(IpAllowlist::parse(["198.51.100.0/24"]).unwrap())),
        ),
        ("allowlist removed", ControlsUpdate::new().allowed_ips(None)),
        ("budget joined", ControlsUpdate::new().budget(Some(budget))),
        ("budget left", ControlsUpdate::new().budget(None)),
        (
            "rate limit",
            ControlsUpdate::new().rate_limit(RateLimit::per_minute(3).unwrap()),
        ),
        (
            "credits removed",
            ControlsUpdate::new().credits(CreditsChange::Remove),
        ),
        (
            "credits set",
            ControlsUpdate::new().credits(CreditsChange::Set(Credits::new(1).unwrap())),
        ),
    ];
    for (what, update) in changes {
        cache.find_by_hash(&key.hash).await.unwrap().unwrap();
        let updated = pg_a
            .update_controls(&key.id, &update, now)
            .await
            .unwrap()
            .unwrap();
        dropped_within(&cache, &pg_b, &key.hash, what).await;
        let read = cache.find_by_hash(&key.hash).await.unwrap().unwrap();
        assert_eq!(read, updated, "{what}: the cache reads the new controls");
    }
}

/// A batch of uses with client IPs and agents, on keys used before and
/// after, with an unknown id and a key used twice, is one statement and
/// leaves each key as the memory store (`KeyUse::apply`) does.
#[tokio::test]
async fn a_batch_of_uses_is_one_statement_and_applies_as_the_memory_store() {
    use keyward::usage::KeyUse;
    use keyward::MemoryStore;
    let Some((store, _)) = pg::store("record_uses_batch").await else {
        return;
    };
    let memory = MemoryStore::new();
    let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let ip = |i: usize| -> std::net::IpAddr {
        if i.is_multiple_of(3) {
            format!("2001:db8::{i:x}").parse().unwrap()
        } else {
            format!("203.0.113.{i}").parse().unwrap()
        }
    };
    let mut keys = Vec::new();
    for i in 0..30 {
        let mut key = metered_key(1, None, t0);
        key.credits = None;
        // Never used, used before the batch, or after it (a late batch).
        key.last_used_at = match i % 3 {
            0 => None,
            1 => Some(t0 - Duration::minutes(5)),
            _ => Some(t0 + Duration::minutes(5)),
        };
        key.recent_ips = (0..i % 6).map(|j| ip(100 + j)).collect();
        key.last_user_agent = (i % 2 == 0).then(|| format!("stored/{i}"));
        store.insert(key.clone()).await.unwrap();
        memory.insert(key.clone()).await.unwrap();
        keys.push(key);
    }
    let mut batch = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let mut key_use = KeyUse::new(key.id.clone(), t0);
        // Some IPs the key already holds, some new, up to 7 of them.
        key_use.ips = (0..i % 8)
            .map(|j| ip(if j % 2 == 0 { 100 + j } else { j }))
            .collect();
        key_use.user_agent = (i % 4 != 0).then(|| format!("agent/{i}").into());
        batch.push(key_use);
    }
    batch.push(KeyUse::new(KeyId::generate(), t0));
    // Keys used again in the batch, earlier and later than their first
    // use and than the stored instant (before, after or none).
    for (n, (i, minutes, agent)) in [
        (4, -1, Some("earlier/1")),
        (4, 2, None),
        (4, -10, Some("oldest/1")),
        (5, 7, Some("later/1")),
        (5, -7, None),
        (6, -1, Some("earlier/2")),
        (6, 1, Some("later/2")),
        (8, 10, Some("latest/3")),
        (8, 4, Some("between/3")),
        (9, 0, Some("same/4")),
    ]
    .into_iter()
    .enumerate()
    {
        let mut again = KeyUse::new(keys[i].id.clone(), t0 + Duration::minutes(minutes));
        again.ips = (0..n % 4).map(|j| ip(70 + j + n)).collect();
        again.ips.push(ip(1));
        again.user_agent = agent.map(Into::into);
        batch.push(again);
    }

    let statements = store.statements_executed();
    store.record_uses(&batch).await.unwrap();
    assert_eq!(store.statements_executed() - statements, 1);
    memory.record_uses(&batch).await.unwrap();
    for key in &keys {
        let pg = store.get(&key.id).await.unwrap().unwrap();
        let expected = memory.get(&key.id).await.unwrap().unwrap();
        assert_eq!(pg.last_used_at, expected.last_used_at, "{}", key.id);
        assert_eq!(pg.recent_ips, expected.recent_ips, "{}", key.id);
        assert_eq!(pg.last_user_agent, expected.last_user_agent, "{}", key.id);
        assert!(pg.recent_ips.len() <= keyward::usage::RECENT_IPS);
    }
    // An empty batch sends nothing.
    let statements = store.statements_executed();
    store.record_uses(&[]).await.unwrap();
    assert_eq!(store.statements_executed(), statements);
}

/// A usage control the crate would not accept, written by other means,
/// reads as an error: never as no control, never a panic.
#[tokio::test]
async fn invalid_usage_controls_read_as_errors() {
    let Some((store, schema)) = pg::store("invalid_controls").await else {
        return;
    };
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let key = metered_key(1, None, now);
    store.insert(key.clone()).await.unwrap();
    let client = store.pool().get().await.unwrap();
    for (set, what) in [
        ("budget = ''", "budget"),
        ("budget = E'a\\u200Eb'", "budget"),
        ("allowed_ips = '{::ffff:10.0.0.0/104}'", "allowed_ips"),
        ("recent_ips = '{10.0.0.0/8}'", "recent IP"),
    ] {
        client
            .execute(
                &format!("UPDATE {schema}.keyward_keys SET {set} WHERE id = $1"),
                &[&key.id.as_str()],
            )
            .await
            .unwrap();
        let err = store.get(&key.id).await.unwrap_err();
        assert!(matches!(err, StoreError::Other(_)), "{set}: {err:?}");
        assert!(format!("{err:?}").contains(what), "{set}: {err:?}");
        let err = store.find_by_hash(&key.hash).await.unwrap_err();
        assert!(matches!(err, StoreError::Other(_)), "{set}: {err:?}");
        client
            .execute(
                &format!(
                    "UPDATE {schema}.keyward_keys SET budget = NULL, allowed_ips = NULL, \
                     recent_ips = '{{}}' WHERE id = $1"
                ),
                &[&key.id.as_str()],
            )
            .await
            .unwrap();
        assert_eq!(*store.get(&key.id).await.unwrap().unwrap(), key);
    }
    // The schema refuses inconsistent credits outright.
    for set in [
        "credits_remaining = -1",
        "credits_remaining = 9007199254740992",
        "credits_refill_period = 'weekly', credits_refill_amount = 1",
        "credits_refill_period = 'daily'",
        "credits_refill_period = 'daily', credits_refill_amount = 1, credits_refill_day = 3",
        "credits_refill_period = 'monthly', credits_refill_amount = 1",
        "credits_remaining = NULL",
        "recent_ips = '{1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5,1.1.1.6}'",
        "allowed_ips = '{}'",
    ] {
        let err = client
            .execute(
                &format!("UPDATE {schema}.keyward_keys SET {set} WHERE id = $1"),
                &[&key.id.as_str()],
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&keyward::store::postgres::tokio_postgres::error::SqlState::CHECK_VIOLATION),
            "{set}: {err}"
        );
    }
}
