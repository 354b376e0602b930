//! Upgrading a real version-1 database written by keyward 0.1 (issue 13,
//! item 7).
//!
//! The database is made the way 0.1 made it: 0.1's migration, then keys
//! written with 0.1's own INSERT, last-used UPDATE and revoke statements
//! (copied below), each key with a real token. Several instances then run
//! today's `PgStore::migrate` at once; afterwards every old key verifies with
//! its scopes, expiry, rate limit and last use, expired and revoked keys stay
//! refused, a rotation's grace runs to its instant, reuse of a rotated token
//! is detected from 0.1's `rotated_from`, and the store passes the conformance
//! suite.
#![cfg(all(feature = "postgres", feature = "test-util"))]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use common::pg;
use keyward::store::postgres::tokio_postgres::types::Json;
use keyward::store::postgres::tokio_postgres::{self, Client};
use keyward::store::postgres::{PgStore, SCHEMA_VERSION};
use keyward::testing::conformance;
use keyward::{
    EventKind, KeyId, KeyInfo, KeyKind, KeyStore, Keyring, LifecycleEvent, LifecycleSink,
    ManualClock, NewKey, RateLimit, ReusePolicy, ScopeSet, Secret, SinkError, TenantId,
    TokenHasher, VerifyError,
};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

// ---------------------------------------------------------------------------
// keyward 0.1's SQL, copied verbatim from commit
// e66e4f54e34e58838982ceabdbd664a0cd14167f ("README: the rate-limit layer
// figure from the quiet-machine run"), the last commit of 0.1.0: its child
// 8d30a9a opens the CHANGELOG's "Unreleased" section above "[0.1.0]". The
// data statements are the same in every 0.1 commit since a2b583c, which
// added the PostgreSQL store.
// ---------------------------------------------------------------------------

/// `src/store/postgres/schema.sql` at e66e4f5: 0.1's schema, version 1.
const SCHEMA_0_1: &str = r#"-- keyward schema, version 1. Applied by PgStore::migrate() inside a
-- transaction holding an advisory lock; every statement is idempotent.

CREATE TABLE IF NOT EXISTS keyward_keys (
    id              text        PRIMARY KEY,
    tenant          text        NOT NULL,
    kind            text        NOT NULL,
    name            text        NOT NULL,
    display_prefix  text        NOT NULL,
    -- 2-byte big-endian scheme version, then the 32-byte digest.
    hash            bytea       NOT NULL CHECK (octet_length(hash) = 34),
    scopes          text[]      NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    -- Requests a minute; NULL = unlimited.
    rate_limit      integer     CHECK (rate_limit IS NULL OR rate_limit > 0),
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    rotated_from    text,
    -- Insertion order, to list keys created in the same instant stably.
    seq             bigint      GENERATED ALWAYS AS IDENTITY
);

CREATE UNIQUE INDEX IF NOT EXISTS keyward_keys_hash_key ON keyward_keys (hash);
CREATE INDEX IF NOT EXISTS keyward_keys_tenant_idx ON keyward_keys (tenant, created_at, seq);

-- Other processes learn of a revocation through NOTIFY on this channel, with
-- the key id as payload (never the hash).
CREATE OR REPLACE FUNCTION keyward_notify_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keyward_revoked', NEW.id);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS keyward_keys_revoked ON keyward_keys;
CREATE TRIGGER keyward_keys_revoked
    AFTER UPDATE OF revoked_at ON keyward_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at)
    EXECUTE FUNCTION keyward_notify_revoked();
"#;

/// 0.1's `MIGRATION_LOCK` ("keyward" in ASCII), which `migrate` still takes.
const MIGRATION_LOCK_0_1: i64 = 0x006b_6579_7761_7264;

// 0.1's `PgStore::migrate`, statement by statement.
const LOCK_0_1: &str = "SELECT pg_advisory_xact_lock($1)";
const SCHEMA_EXISTS_0_1: &str = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)";
const VERSION_TABLE_0_1: &str = "CREATE TABLE IF NOT EXISTS keyward_schema_version (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )";
const CURRENT_VERSION_0_1: &str = "SELECT COALESCE(max(version), 0) FROM keyward_schema_version";
const RECORD_VERSION_0_1: &str = "INSERT INTO keyward_schema_version (version) VALUES ($1)";

/// 0.1's `columns!()`.
macro_rules! columns_0_1 {
    () => {
        "id, tenant, kind, name, display_prefix, hash, scopes, created_at, expires_at, \
         last_used_at, revoked_at, rate_limit, metadata, rotated_from"
    };
}

/// 0.1's `KeyStore::insert`.
const INSERT_0_1: &str = "INSERT INTO keyward_keys (id, tenant, kind, name, display_prefix, hash, \
                     scopes, created_at, expires_at, last_used_at, revoked_at, rate_limit, \
                     metadata, rotated_from) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// 0.1's `KeyStore::revoke` (`$2` is the instant: the keyring's now, or
/// now plus a rotation's grace).
const REVOKE_0_1: &str = concat!(
    "UPDATE keyward_keys SET revoked_at = LEAST(COALESCE(revoked_at, $2), $2) ",
    "WHERE id = $1 RETURNING ",
    columns_0_1!()
);

/// 0.1's `KeyStore::touch` (the coalesced last-used write).
const TOUCH_0_1: &str = "UPDATE keyward_keys AS k \
                     SET last_used_at = GREATEST(k.last_used_at, u.at) \
                     FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at) \
                     WHERE k.id = u.id";

/// 0.1's `RateLimit::default()`: 100 requests a minute.
const DEFAULT_RATE_LIMIT_0_1: i32 = 100;

/// 0.1's `PgStore::migrate` on a fresh schema, run on a connection of a store
/// configured as 0.1 configured it (`search_path` is the schema).
async fn migrate_as_0_1(store: &PgStore, schema: &str) {
    let mut client = store.pool().get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute(LOCK_0_1, &[&MIGRATION_LOCK_0_1]).await.unwrap();
    let exists: bool = tx
        .query_one(SCHEMA_EXISTS_0_1, &[&schema])
        .await
        .unwrap()
        .get(0);
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
    }
    tx.batch_execute(VERSION_TABLE_0_1).await.unwrap();
    let current: i32 = tx.query_one(CURRENT_VERSION_0_1, &[]).await.unwrap().get(0);
    assert_eq!(current, 0, "a fresh schema");
    tx.batch_execute(SCHEMA_0_1).await.unwrap();
    tx.execute(RECORD_VERSION_0_1, &[&1i32]).await.unwrap();
    tx.commit().await.unwrap();
}

/// A key as 0.1's keyring made it: a real token of its kind, and the fields
/// 0.1's INSERT wrote.
struct OldKey {
    id: KeyId,
    kind: &'static str,
    name: &'static str,
    token: Secret,
    scopes: ScopeSet,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    rate_limit: Option<i32>,
    metadata: BTreeMap<String, String>,
    rotated_from: Option<KeyId>,
}

const TENANT: &str = "org_upgrade";

impl OldKey {
    /// 0.1's `issue` with the default rate limit, no expiry, no metadata.
    fn issued(
        keyring: &Keyring,
        kind: &'static str,
        name: &'static str,
        scopes: &[&str],
        created_at: OffsetDateTime,
    ) -> Self {
        OldKey {
            id: KeyId::generate(),
            kind,
            name,
            token: keyring.kind(kind).unwrap().token_kind().generate(),
            scopes: ScopeSet::parse(scopes).unwrap(),
            created_at,
            expires_at: None,
            rate_limit: Some(DEFAULT_RATE_LIMIT_0_1),
            metadata: BTreeMap::new(),
            rotated_from: None,
        }
    }

    /// 0.1's `rotate` at `at`: a successor with the same name, scopes,
    /// expiry, rate limit and metadata (the old key's revocation is written
    /// separately, as 0.1 did after the insert).
    fn successor(&self, keyring: &Keyring, at: OffsetDateTime) -> Self {
        OldKey {
            id: KeyId::generate(),
            kind: self.kind,
            name: self.name,
            token: keyring.kind(self.kind).unwrap().token_kind().generate(),
            scopes: self.scopes.clone(),
            created_at: at,
            expires_at: self.expires_at,
            rate_limit: self.rate_limit,
            metadata: self.metadata.clone(),
            rotated_from: Some(self.id.clone()),
        }
    }

    fn rate_limit(&self) -> RateLimit {
        match self.rate_limit {
            None => RateLimit::Unlimited,
            Some(n) => RateLimit::per_minute(u32::try_from(n).unwrap()).unwrap(),
        }
    }
}

/// 0.1's INSERT, with its parameters in its order and of its types.
async fn insert_as_0_1(client: &Client, key: &OldKey) {
    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
    let hash = TokenHasher::sha256()
        .hash(key.token.expose_secret())
        .to_bytes();
    let kind = key.kind.to_owned();
    let name = key.name.to_owned();
    let display_prefix = key.token.display_prefix().to_owned();
    // 0.1's keyring inserted neither a last use nor a revocation.
    let (last_used_at, revoked_at): (Option<OffsetDateTime>, Option<OffsetDateTime>) = (None, None);
    let metadata = Json(&key.metadata);
    let rotated_from = key.rotated_from.as_ref().map(KeyId::as_str);
    let inserted = client
        .execute(
            INSERT_0_1,
            &[
                &key.id.as_str(),
                &TENANT,
                &kind,
                &name,
                &display_prefix,
                &&hash[..],
                &scopes,
                &key.created_at,
                &key.expires_at,
                &last_used_at,
                &revoked_at,
                &key.rate_limit,
                &metadata,
                &rotated_from,
            ],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);
}

/// 0.1's last-used write of one batch (one row per id, its latest use).
async fn touch_as_0_1(client: &Client, uses: &[(&KeyId, OffsetDateTime)]) {
    let mut latest: BTreeMap<&str, OffsetDateTime> = BTreeMap::new();
    for (id, at) in uses {
        latest
            .entry(id.as_str())
            .and_modify(|t| *t = (*t).max(*at))
            .or_insert(*at);
    }
    let ids: Vec<&str> = latest.keys().copied().collect();
    let ats: Vec<OffsetDateTime> = latest.values().copied().collect();
    client.execute(TOUCH_0_1, &[&ids, &ats]).await.unwrap();
}

/// 0.1's revocation of `id` at `at`.
async fn revoke_as_0_1(client: &Client, id: &KeyId, at: OffsetDateTime) {
    let rows = client
        .query(REVOKE_0_1, &[&id.as_str(), &at])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}

/// Every row of `keyward_keys` as JSON, by id.
async fn rows(client: &Client) -> BTreeMap<String, serde_json::Map<String, Value>> {
    client
        .query("SELECT id, to_jsonb(k) FROM keyward_keys k", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let Value::Object(object) = row.get::<_, Value>(1) else {
                panic!("to_jsonb of a row is an object");
            };
            (row.get(0), object)
        })
        .collect()
}

/// Collects the keyring's lifecycle events.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<LifecycleEvent>>>);

#[keyward::async_trait]
impl LifecycleSink for Events {
    async fn deliver(&self, event: &LifecycleEvent) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

impl Events {
    /// The reuse reports about `id`: (successors, family revoked).
    fn reuses_of(&self, id: &KeyId) -> Vec<(Vec<KeyId>, bool)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| &e.key_id == id)
            .filter_map(|e| match &e.kind {
                EventKind::ReuseDetected {
                    successors,
                    family_revoked,
                } => Some((successors.clone(), *family_revoked)),
                _ => None,
            })
            .collect()
    }
}

/// PostgreSQL keeps microseconds.
fn micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap()
}

/// How many instances migrate at once.
const INSTANCES: usize = 4;

#[test]
fn version_1_is_still_0_1s_schema() {
    // A fresh database gets today's version 1 and then the upgrades; an
    // upgraded one kept 0.1's. They are the same database only while
    // version 1 is 0.1's text.
    assert_eq!(
        include_str!("../src/store/postgres/schema.sql"),
        SCHEMA_0_1,
        "schema.sql (version 1) changed since 0.1: add a migration instead"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_written_by_0_1_upgrades_with_every_key_intact() {
    let Some(url) = pg::database_url("upgrade_from_0_1") else {
        return;
    };
    let schema = pg::unique_schema("upgrade_from_0_1");
    // The instances' connections carry the schema's name as their
    // application name, so their lock waits can be told from other tests'.
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.application_name(&schema);
    // A migration waiting for the lock is bounded by the statement timeout;
    // the test holds the lock until all are queued, so give them room.
    let instances: Vec<PgStore> = (0..INSTANCES)
        .map(|_| {
            PgStore::builder_from_config(config.clone())
                .schema(&schema)
                .timeout(StdDuration::from_secs(30))
                .build()
                .unwrap()
        })
        .collect();

    let t0 = micros(OffsetDateTime::now_utc());
    let clock = ManualClock::new(t0);
    let events = Events::default();
    let keyring = Keyring::builder()
        .store(instances[0].clone())
        .kind(
            KeyKind::new("pk", common::player_os())
                .unwrap()
                .default_scopes(["read", "write"])
                .unwrap(),
        )
        .kind(
            KeyKind::new("pl", common::playable_labs())
                .unwrap()
                .on_reuse(ReusePolicy::RevokeFamily),
        )
        .clock(clock.clone())
        .events(events.clone())
        .build()
        .unwrap();
    let tenant = TenantId::parse(TENANT).unwrap();
    let minutes = Duration::minutes;
    let days = Duration::days;

    // ---- The database as 0.1 left it. --------------------------------------
    let old = pg::store_on(&url, &schema);
    migrate_as_0_1(&old, &schema).await;
    let client = old.pool().get().await.unwrap();

    let mut active = OldKey::issued(&keyring, "pk", "Backend", &["read", "write"], t0 - days(30));
    active.expires_at = Some(t0 + days(60));
    let mut forever = OldKey::issued(
        &keyring,
        "pl",
        "CI",
        &["games:read", "versions:write"],
        t0 - days(100),
    );
    forever.rate_limit = None;
    forever.metadata = BTreeMap::from([
        ("env".to_owned(), "prod".to_owned()),
        ("team".to_owned(), "ci".to_owned()),
    ]);
    let mut limited = OldKey::issued(&keyring, "pk", "Reader", &["read"], t0 - days(5));
    limited.rate_limit = Some(5);
    limited.expires_at = Some(t0 + days(365));
    let mut expired = OldKey::issued(&keyring, "pk", "Old", &["read", "write"], t0 - days(40));
    expired.expires_at = Some(t0 - days(1));
    let revoked = OldKey::issued(&keyring, "pl", "Leaked", &["assets:write"], t0 - days(20));
    // Rotated ten minutes ago with 70 minutes of grace: usable for an hour.
    let mut grace = OldKey::issued(&keyring, "pk", "Rotating", &["read"], t0 - days(10));
    grace.expires_at = Some(t0 + days(20));
    let grace_successor = grace.successor(&keyring, t0 - minutes(10));
    let grace_ends = t0 + minutes(60);
    // Rotated two hours ago with 115 minutes of grace: over five minutes ago.
    let lapsed = OldKey::issued(&keyring, "pl", "Lapsed", &["versions:write"], t0 - days(15));
    let lapsed_successor = lapsed.successor(&keyring, t0 - minutes(120));
    let lapsed_at = t0 - minutes(5);

    for key in [
        &active, &forever, &limited, &expired, &revoked, &grace, &lapsed,
    ] {
        insert_as_0_1(&client, key).await;
    }
    // Two last-used batches; in the first, `active` was used twice.
    touch_as_0_1(
        &client,
        &[
            (&active.id, t0 - days(2)),
            (&expired.id, t0 - days(2)),
            (&active.id, t0 - days(1)),
            (&limited.id, t0 - minutes(180)),
        ],
    )
    .await;
    touch_as_0_1(&client, &[(&active.id, t0 - minutes(10))]).await;
    // `Keyring::revoke` at its now; `rotate`: the successor, then the old
    // key's revocation at now + grace.
    revoke_as_0_1(&client, &revoked.id, t0 - minutes(180)).await;
    insert_as_0_1(&client, &lapsed_successor).await;
    revoke_as_0_1(&client, &lapsed.id, lapsed_at).await;
    insert_as_0_1(&client, &grace_successor).await;
    revoke_as_0_1(&client, &grace.id, grace_ends).await;

    let before = rows(&client).await;
    assert_eq!(before.len(), 9);
    let version_1_applied: OffsetDateTime = client
        .query_one(
            "SELECT applied_at FROM keyward_schema_version WHERE version = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    // ---- Several instances migrate at once. --------------------------------
    // The test holds the migration lock until every instance is queued on
    // it, so all four are inside `migrate` together (none ran before another
    // started).
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_0_1])
        .await
        .unwrap();
    let tasks: Vec<_> = instances
        .iter()
        .cloned()
        .map(|store| tokio::spawn(async move { store.migrate().await }))
        .collect();
    let deadline = Instant::now() + StdDuration::from_secs(20);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = $1",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == INSTANCES as i64 {
            break;
        }
        assert!(
            tasks.iter().all(|t| !t.is_finished()),
            "a migration ended while the lock was held: it did not take the lock"
        );
        assert!(
            Instant::now() < deadline,
            "{waiting} of {INSTANCES} migrations waiting for the lock"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    let unlocked: bool = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_0_1])
        .await
        .unwrap()
        .get(0);
    assert!(unlocked);
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // And once more, with nothing left to do.
    instances[1].migrate().await.unwrap();

    let versions: Vec<(i32, i64)> = client
        .query(
            "SELECT version, count(*) FROM keyward_schema_version GROUP BY version ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let once_each: Vec<(i32, i64)> = (1..=SCHEMA_VERSION).map(|v| (v, 1)).collect();
    assert_eq!(versions, once_each);
    let still: OffsetDateTime = client
        .query_one(
            "SELECT applied_at FROM keyward_schema_version WHERE version = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(still, version_1_applied, "version 1 was not applied again");

    // Every column 0.1 wrote is as it was; of the new ones, only the grace
    // still ahead is a scheduled revocation, and no old key has an owner.
    let after = rows(&client).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (id, old_row) in &before {
        let new_row = &after[id];
        for (column, value) in old_row {
            assert_eq!(&new_row[column], value, "{id}.{column}");
        }
        let scheduled = *id == grace.id.as_str();
        assert_eq!(
            new_row["revocation_scheduled"],
            Value::Bool(scheduled),
            "{id}"
        );
        assert_eq!(new_row["owner"], Value::Null, "{id}");
        assert_no_usage_controls(new_row, id);
    }

    // ---- Every old key reads as 0.1 wrote it. ------------------------------
    let last_uses = [
        (&active.id, t0 - minutes(10)),
        (&expired.id, t0 - days(2)),
        (&limited.id, t0 - minutes(180)),
    ];
    let revocations = [
        (&revoked.id, t0 - minutes(180)),
        (&lapsed.id, lapsed_at),
        (&grace.id, grace_ends),
    ];
    let all = [
        &active,
        &forever,
        &limited,
        &expired,
        &revoked,
        &grace,
        &grace_successor,
        &lapsed,
        &lapsed_successor,
    ];
    for key in all {
        let info: KeyInfo = keyring.get(&key.id).await.unwrap();
        assert_eq!(info.tenant(), &tenant);
        assert_eq!(info.kind(), key.kind);
        assert_eq!(info.name(), key.name);
        assert_eq!(info.display_prefix(), &key.token.expose_secret()[..8]);
        assert_eq!(info.scopes(), &key.scopes, "{}", key.name);
        assert_eq!(info.created_at(), key.created_at);
        assert_eq!(info.expires_at(), key.expires_at, "{}", key.name);
        assert_eq!(info.rate_limit(), key.rate_limit(), "{}", key.name);
        assert_eq!(info.metadata(), &key.metadata);
        assert_eq!(info.rotated_from(), key.rotated_from.as_ref());
        assert_eq!(info.owner(), None, "{}", key.name);
        let last_used = last_uses
            .iter()
            .find(|(id, _)| *id == &key.id)
            .map(|(_, at)| *at);
        assert_eq!(info.last_used_at(), last_used, "{}", key.name);
        let revoked_at = revocations
            .iter()
            .find(|(id, _)| *id == &key.id)
            .map(|(_, at)| *at);
        assert_eq!(info.revoked_at(), revoked_at, "{}", key.name);
    }
    let listed: Vec<KeyId> = keyring
        .list(&tenant)
        .await
        .unwrap()
        .iter()
        .map(|k| k.id().clone())
        .collect();
    assert_eq!(listed.len(), all.len());
    assert!(all.iter().all(|k| listed.contains(&k.id)));

    // ---- Old tokens verify, or are refused, as before. ---------------------
    for key in [
        &active,
        &forever,
        &limited,
        &grace,
        &grace_successor,
        &lapsed_successor,
    ] {
        let verified = keyring
            .verify(key.token.expose_secret())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.name));
        assert_eq!(verified.id(), &key.id);
        assert_eq!(verified.tenant(), &tenant);
        assert_eq!(verified.kind().prefix(), key.kind);
        assert_eq!(verified.scopes(), &key.scopes, "{}", key.name);
        assert_eq!(verified.expires_at(), key.expires_at, "{}", key.name);
        assert_eq!(verified.rate_limit(), key.rate_limit(), "{}", key.name);
        assert_eq!(verified.metadata(), &key.metadata);
    }
    // NULL is unlimited; a number, that many a minute.
    let unlimited = keyring.get(&forever.id).await.unwrap().rate_limit();
    assert_eq!(unlimited, RateLimit::Unlimited);
    let five = keyring.get(&limited.id).await.unwrap().rate_limit();
    assert_eq!(five, RateLimit::per_minute(5).unwrap());
    assert!(matches!(
        keyring.verify(expired.token.expose_secret()).await,
        Err(VerifyError::Expired)
    ));
    assert!(matches!(
        keyring.verify(revoked.token.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));
    assert_eq!(events.reuses_of(&revoked.id), [], "revoked, never rotated");

    // Today's last-used write lands on the old rows.
    assert_eq!(
        keyring.get(&active.id).await.unwrap().last_used_at(),
        Some(t0)
    );
    keyring.flush_last_used().await.unwrap();
    let stored = instances[2].get(&active.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(t0));
    let stored = instances[2].get(&expired.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(t0 - days(2)));

    // The predecessor whose grace ended before the upgrade: refused. 0.1
    // kept only the instant, and version 2 made a past one immediate, so it
    // reads as a plain revocation: no reuse report, the successor stays.
    // (A grace still running at the upgrade stays scheduled: see below.)
    assert!(matches!(
        keyring.verify(lapsed.token.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));
    assert_eq!(events.reuses_of(&lapsed.id), []);
    keyring
        .verify(lapsed_successor.token.expose_secret())
        .await
        .unwrap();

    // ---- New keys, and today's writes on old keys. -------------------------
    let issued = keyring
        .issue(NewKey::new("pk", TENANT, "After the upgrade").owner("user_7"))
        .await
        .unwrap();
    let verified = keyring.verify(issued.token.expose_secret()).await.unwrap();
    assert_eq!(verified.id(), issued.info.id());
    let info = keyring.get(issued.info.id()).await.unwrap();
    assert_eq!(info.owner().map(|o| o.as_str()), Some("user_7"));
    let rotated = keyring
        .rotate(&limited.id, StdDuration::from_secs(30 * 60))
        .await
        .unwrap();
    assert_eq!(rotated.info.rotated_from(), Some(&limited.id));
    assert_eq!(rotated.info.scopes(), &limited.scopes);
    assert_eq!(rotated.info.rate_limit(), limited.rate_limit());
    keyring.verify(limited.token.expose_secret()).await.unwrap();
    keyring.verify(rotated.token.expose_secret()).await.unwrap();
    keyring.revoke(&forever.id).await.unwrap();
    assert!(matches!(
        keyring.verify(forever.token.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));

    // ---- The grace 0.1 scheduled runs to its instant, not past it. --------
    clock.set(grace_ends - Duration::seconds(1));
    keyring.verify(grace.token.expose_secret()).await.unwrap();
    assert_eq!(events.reuses_of(&grace.id), []);
    clock.set(grace_ends);
    assert!(matches!(
        keyring.verify(grace.token.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));
    assert_eq!(
        events.reuses_of(&grace.id),
        [(vec![grace_successor.id.clone()], false)],
        "`pk` reports reuse and keeps the successor"
    );
    keyring
        .verify(grace_successor.token.expose_secret())
        .await
        .unwrap();
    keyring.verify(active.token.expose_secret()).await.unwrap();
    // Today's rotation of an old key, 30 minutes earlier, has ended too.
    assert!(matches!(
        keyring.verify(limited.token.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));
    assert_eq!(
        events.reuses_of(&limited.id),
        [(vec![rotated.info.id().clone()], false)]
    );
    keyring.verify(rotated.token.expose_secret()).await.unwrap();

    drop(client);
    conformance::run(&instances[3]).await;
}

/// The columns of schema version 5 on a row written before it: empty.
fn assert_no_usage_controls(row: &serde_json::Map<String, Value>, id: &str) {
    for column in [
        "allowed_ips",
        "credits_remaining",
        "credits_refill_amount",
        "credits_refill_period",
        "credits_refill_day",
        "credits_refilled_at",
        "budget",
        "last_user_agent",
    ] {
        assert_eq!(row[column], Value::Null, "{id}.{column}");
    }
    assert_eq!(
        row["recent_ips"],
        Value::Array(Vec::new()),
        "{id}.recent_ips"
    );
}

/// Version 4's INSERT (`KeyStore::insert` before usage controls).
const INSERT_V4: &str = "INSERT INTO keyward_keys (id, tenant, kind, name, display_prefix, hash, \
     scopes, created_at, expires_at, last_used_at, revoked_at, rate_limit, metadata, \
     rotated_from, revocation_scheduled, owner) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// A database at schema version 4, with keys (an owner's, a rotated and
/// revoked one, one with a delivered notice), upgrades to version 5: every
/// old column and notice is kept, the old keys read back exactly, with no
/// usage controls (unmetered, anywhere, their own budget, no recent IPs or
/// user agent), and today's writes land on them.
#[tokio::test]
async fn upgrading_from_version_4_adds_usage_controls_to_old_keys() {
    use keyward::usage::{
        ControlsUpdate, CreditSpend, Credits, CreditsChange, IpAllowlist, KeyUse,
    };
    let Some(url) = pg::database_url("upgrade_v4") else {
        return;
    };
    let schema = pg::unique_schema("upgrade_v4");
    let store = pg::store_on(&url, &schema);
    let client = store.pool().get().await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema};
             {v1}
             {v2}
             {v3}
             {v4}
             CREATE TABLE keyward_schema_version (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO keyward_schema_version (version) VALUES (1), (2), (3), (4);",
            v1 = include_str!("../src/store/postgres/schema.sql"),
            v2 = include_str!("../src/store/postgres/schema_v2.sql"),
            v3 = include_str!("../src/store/postgres/schema_v3.sql"),
            v4 = include_str!("../src/store/postgres/schema_v4.sql"),
        ))
        .await
        .unwrap();

    let t0 = micros(OffsetDateTime::now_utc());
    let tenant = TenantId::parse(TENANT).unwrap();
    let record = |name: &str, created: OffsetDateTime| {
        let id = KeyId::generate();
        let hash = TokenHasher::sha256().hash(id.as_str());
        let mut record = keyward::KeyRecord::new(id, tenant.clone(), "pk", hash, created);
        record.name = name.to_owned();
        record.display_prefix = "pk_abcde".to_owned();
        record.scopes = ScopeSet::parse(["read", "write"]).unwrap();
        record
    };
    let mut owned = record("Personal", t0 - Duration::days(3));
    owned.owner = Some(keyward::OwnerId::parse("user_7").unwrap());
    owned.last_used_at = Some(t0 - Duration::hours(1));
    owned.expires_at = Some(t0 + Duration::days(30));
    owned.metadata = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
    let mut rotated = record("Rotated", t0 - Duration::days(2));
    rotated.revoked_at = Some(t0 + Duration::minutes(30));
    rotated.revocation_scheduled = true;
    rotated.rate_limit = RateLimit::Unlimited;
    let mut successor = record("Rotated", t0 - Duration::minutes(1));
    successor.rotated_from = Some(rotated.id.clone());
    let old = [owned, rotated, successor];
    for key in &old {
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        let hash = key.hash.to_bytes();
        let rate_limit = key
            .rate_limit
            .requests_per_minute()
            .map(|n| i32::try_from(n).unwrap());
        client
            .execute(
                INSERT_V4,
                &[
                    &key.id.as_str(),
                    &key.tenant.as_str(),
                    &key.kind,
                    &key.name,
                    &key.display_prefix,
                    &&hash[..],
                    &scopes,
                    &key.created_at,
                    &key.expires_at,
                    &key.last_used_at,
                    &key.revoked_at,
                    &rate_limit,
                    &Json(&key.metadata),
                    &key.rotated_from.as_ref().map(KeyId::as_str),
                    &key.revocation_scheduled,
                    &key.owner.as_ref().map(|o| o.as_str()),
                ],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "INSERT INTO keyward_notices (key_id, notice, delivered_at) VALUES ($1, 'stale', $2)",
            &[&old[0].id.as_str(), &t0],
        )
        .await
        .unwrap();
    let before = rows(&client).await;

    store.migrate().await.unwrap();
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM keyward_schema_version ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    assert_eq!(SCHEMA_VERSION, 5);
    let after = rows(&client).await;
    assert_eq!(after.len(), before.len());
    for (id, old_row) in &before {
        let new_row = &after[id];
        for (column, value) in old_row {
            assert_eq!(&new_row[column], value, "{id}.{column}");
        }
        assert_no_usage_controls(new_row, id);
    }
    let notices: i64 = client
        .query_one(
            "SELECT count(*) FROM keyward_notices WHERE notice = 'stale'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(notices, 1);

    // Read back exactly as version 4 wrote them, with no usage controls.
    for key in &old {
        let read = store.get(&key.id).await.unwrap().unwrap();
        assert_eq!(*read, *key, "{}", key.name);
        assert!(read.allowed_ips.is_none() && read.credits.is_none() && read.budget.is_none());
        assert!(read.recent_ips.is_empty() && read.last_user_agent.is_none());
        let found = store.find_by_hash(&key.hash).await.unwrap().unwrap();
        assert_eq!(*found, *key);
    }

    // Today's writes on an old key.
    let id = &old[0].id;
    assert_eq!(
        store.spend_credits(id, 1, t0).await.unwrap(),
        Some(CreditSpend::Unmetered)
    );
    let mut key_use = KeyUse::new(id.clone(), t0);
    key_use.ips = vec!["203.0.113.9".parse().unwrap()];
    key_use.user_agent = Some("agent/2".into());
    store.record_uses(&[key_use]).await.unwrap();
    let update = ControlsUpdate::new()
        .allowed_ips(Some(IpAllowlist::parse(["203.0.113.0/24"]).unwrap()))
        .credits(CreditsChange::Set(Credits::new(2).unwrap()));
    let updated = store
        .update_controls(id, &update, t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        updated.recent_ips,
        ["203.0.113.9".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(updated.last_user_agent.as_deref(), Some("agent/2"));
    assert_eq!(updated.last_used_at, Some(t0));
    assert_eq!(updated.owner, old[0].owner);
    assert_eq!(
        store.spend_credits(id, 2, t0).await.unwrap(),
        Some(CreditSpend::Spent { remaining: 0 })
    );
    drop(client);
    conformance::run(&store).await;
}
