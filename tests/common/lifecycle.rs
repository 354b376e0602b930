//! Key lifecycle scenarios, run on every store: `tests/lifecycle.rs` on the
//! memory store, `tests/postgres_lifecycle.rs` on PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keyward::testing::{Fault, FaultyStore, Op, RecordingSink};
use keyward::{
    Actor, EventKind, Expiry, IssueError, KeyId, KeyKind, KeyStore, Keyring, ListQuery,
    ManualClock, NewKey, OwnerId, ReusePolicy, StateFilter, TenantId, VerifyError,
};

use super::{playable_labs, player_os, start};

pub const HOUR: Duration = Duration::from_secs(3_600);
pub const DAY: Duration = Duration::from_secs(86_400);

/// A keyring with `pk` and `pl` (reuse: revoke the family) on `store`, the
/// clock and the sink.
pub fn keyring(store: Arc<dyn KeyStore>, clock: &ManualClock, sink: &RecordingSink) -> Keyring {
    Keyring::builder()
        .shared_store(store)
        .kind(
            KeyKind::new("pk", player_os())
                .unwrap()
                .default_scopes(["read"])
                .unwrap(),
        )
        .kind(
            KeyKind::new("pl", playable_labs())
                .unwrap()
                .on_reuse(ReusePolicy::RevokeFamily),
        )
        .clock(clock.clone())
        .events(sink.clone())
        .build()
        .unwrap()
}

fn at(instant: time::OffsetDateTime) -> Expiry {
    Expiry::At(instant)
}

fn span(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap()
}

/// `(event name, key id, threshold seconds)` of expiring/expired events.
fn notices(sink: &RecordingSink) -> Vec<(&'static str, KeyId, u64)> {
    sink.take()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::ExpiringSoon { threshold, .. } => {
                Some(("expiring_soon", e.key_id, threshold.as_secs()))
            }
            EventKind::Expired { .. } => Some(("expired", e.key_id, 0)),
            EventKind::Stale { .. } => Some(("stale", e.key_id, 0)),
            EventKind::AutoRevoked { .. } => Some(("auto_revoked", e.key_id, 0)),
            _ => None,
        })
        .collect()
}

fn sorted(mut v: Vec<(&'static str, KeyId, u64)>) -> Vec<(&'static str, KeyId, u64)> {
    v.sort_by(|a, b| (a.0, a.1.as_str(), a.2).cmp(&(b.0, b.1.as_str(), b.2)));
    v
}

/// Expiring-soon at 7 days and 1 day: each key is announced once per
/// threshold, for the smallest window it is in; expired once; a restarted
/// sweeper announces nothing again.
pub async fn expiring_soon_once_per_threshold(store: Arc<dyn KeyStore>) {
    let clock = ManualClock::new(start());
    let sink = RecordingSink::new();
    let keyring = keyring(store, &clock, &sink);
    let now = start();
    let issue = |name: &'static str, expiry: Expiry| {
        let keyring = keyring.clone();
        async move {
            keyring
                .issue(NewKey::new("pl", "org_1", name).expires(expiry))
                .await
                .unwrap()
                .info
                .id()
                .clone()
        }
    };
    let three_days = issue("3d", at(now + span(3 * DAY))).await;
    let half_day = issue("12h", at(now + span(12 * HOUR))).await;
    let ten_days = issue("10d", at(now + span(10 * DAY))).await;
    let _never = issue("never", Expiry::Never).await;
    sink.clear();
    let sweeper = || {
        keyring
            .sweeper()
            .expiring_within([7 * DAY, DAY])
            .build()
            .unwrap()
    };
    let report = sweeper().tick().await.unwrap();
    assert_eq!((report.expiring, report.expired), (2, 0));
    let week = 7 * 86_400;
    assert_eq!(
        sorted(notices(&sink)),
        sorted(vec![
            ("expiring_soon", three_days.clone(), week),
            ("expiring_soon", half_day.clone(), 86_400),
        ])
    );
    assert_eq!(sweeper().tick().await.unwrap().sent(), 0, "once");

    clock.advance(2 * DAY + 12 * HOUR); // 3d key: 12 h left; 10d: 7.5 days
    sweeper().tick().await.unwrap();
    assert_eq!(
        sorted(notices(&sink)),
        sorted(vec![
            ("expired", half_day.clone(), 0),
            ("expiring_soon", three_days.clone(), 86_400),
        ])
    );
    clock.advance(DAY); // 10d key: 6.5 days left; the 3d key expired
    sweeper().tick().await.unwrap();
    assert_eq!(
        sorted(notices(&sink)),
        sorted(vec![
            ("expired", three_days.clone(), 0),
            ("expiring_soon", ten_days.clone(), week),
        ])
    );
    // A restart (a new sweeper, a new keyring on the same store) sends
    // nothing again.
    assert_eq!(sweeper().tick().await.unwrap().sent(), 0);
    clock.advance(DAY);
    assert_eq!(sweeper().tick().await.unwrap().sent(), 0);
    assert!(sink.events().is_empty());
}

/// Two instances (two keyrings, two sweepers, two stores on one database)
/// tick at the same time, round after round: each expiring-soon and
/// expired event goes out exactly once.
pub async fn two_instances_send_each_event_once(a: Arc<dyn KeyStore>, b: Arc<dyn KeyStore>) {
    let clock = ManualClock::new(start());
    let sink = RecordingSink::new();
    let one = keyring(a, &clock, &sink);
    let two = keyring(b, &clock, &sink);
    let mut ids = Vec::new();
    for i in 0..60u64 {
        let expires = start() + span(HOUR * (6 + 4 * i as u32));
        let issued = one
            .issue(NewKey::new("pl", &format!("org_{}", i % 3), "k").expires(at(expires)))
            .await
            .unwrap();
        ids.push(issued.info.id().clone());
    }
    sink.clear();
    let sweeper = |k: &Keyring| {
        k.sweeper()
            .expiring_within([7 * DAY, DAY])
            .max_events_per_tick(7)
            .build()
            .unwrap()
    };
    let (s1, s2) = (sweeper(&one), sweeper(&two));
    for _round in 0..45 {
        let (r1, r2) = tokio::join!(s1.tick(), s2.tick());
        r1.unwrap();
        r2.unwrap();
        let (r1, r2) = tokio::join!(s2.tick(), s1.tick());
        r1.unwrap();
        r2.unwrap();
        clock.advance(6 * HOUR);
    }
    let sent = notices(&sink);
    let mut counts: BTreeMap<(&str, String, u64), usize> = BTreeMap::new();
    for (name, id, threshold) in &sent {
        *counts
            .entry((name, id.to_string(), *threshold))
            .or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    // Every key expired within the 10 simulated days: each got its expired
    // event, and each the 1-day notice (issued at least 6 h before expiry).
    for id in &ids {
        for (name, threshold) in [("expired", 0), ("expiring_soon", 86_400)] {
            assert!(
                counts.contains_key(&(name, id.to_string(), threshold)),
                "{name} {threshold} missing for {id}"
            );
        }
    }
}

/// Unused keys: announced once per unused spell; used again, announced
/// again later; with `revoke_stale`, revoked (and refused).
pub async fn stale_keys_are_announced_and_revoked(store: Arc<dyn KeyStore>) {
    let clock = ManualClock::new(start());
    let sink = RecordingSink::new();
    let keyring = keyring(store, &clock, &sink);
    let used = keyring
        .issue(NewKey::new("pk", "p1", "used"))
        .await
        .unwrap();
    let idle = keyring
        .issue(NewKey::new("pk", "p1", "idle"))
        .await
        .unwrap();
    sink.clear();
    let stale = || keyring.sweeper().stale_after(90 * DAY).build().unwrap();
    clock.advance(89 * DAY);
    keyring.verify(used.token.expose_secret()).await.unwrap();
    keyring.flush_last_used().await.unwrap();
    assert_eq!(
        stale().tick().await.unwrap().sent(),
        0,
        "nothing is 90 days old yet"
    );
    clock.advance(2 * DAY);
    let report = stale().tick().await.unwrap();
    assert_eq!(report.stale, 1);
    let events = sink.take();
    assert_eq!(events.len(), 1);
    assert_eq!(&events[0].key_id, idle.info.id());
    assert_eq!(events[0].actor, Some(Actor::System("sweeper")));
    assert_eq!(
        events[0].kind,
        EventKind::Stale {
            unused_since: start()
        }
    );
    assert_eq!(stale().tick().await.unwrap().sent(), 0, "once per spell");
    // `idle` is used, then left unused again: a new spell, a new event.
    clock.advance(Duration::from_secs(1));
    keyring.verify(idle.token.expose_secret()).await.unwrap();
    keyring.flush_last_used().await.unwrap();
    clock.advance(91 * DAY);
    let mut again: Vec<_> = notices(&sink);
    assert!(again.is_empty());
    stale().tick().await.unwrap();
    again = sorted(notices(&sink));
    assert_eq!(
        again,
        sorted(vec![
            ("stale", used.info.id().clone(), 0),
            ("stale", idle.info.id().clone(), 0)
        ])
    );
    // Revoking sweeper: both are revoked, announced as auto_revoked, and
    // refused.
    let revoking = keyring
        .sweeper()
        .stale_after(90 * DAY)
        .revoke_stale(true)
        .build()
        .unwrap();
    let fresh = keyring
        .issue(NewKey::new("pk", "p1", "fresh"))
        .await
        .unwrap();
    clock.advance(DAY);
    sink.clear();
    // Already announced as stale: `auto_revoked` is a notice of its own.
    let report = revoking.tick().await.unwrap();
    assert_eq!(report.auto_revoked, 0, "stale notices already delivered");
    clock.advance(90 * DAY);
    let report = revoking.tick().await.unwrap();
    assert_eq!(report.auto_revoked, 1, "{report:?}");
    assert_eq!(
        notices(&sink),
        [("auto_revoked", fresh.info.id().clone(), 0)]
    );
    assert!(matches!(
        keyring.verify(fresh.token.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));
}

/// A sink that refuses delays the event, never loses it; a store that
/// fails delays it too; a sweeper that dies after sending (its settle
/// failed) leaves a claim that lapses, and the event goes out again after
/// the lease (at least once).
pub async fn failures_delay_events_never_lose_them<S: KeyStore>(store: S) {
    let faulty = FaultyStore::new(store);
    let clock = ManualClock::new(start());
    let sink = RecordingSink::new();
    let keyring = keyring(Arc::new(faulty.clone()), &clock, &sink);
    let key = keyring
        .issue(NewKey::new("pl", "org_1", "k").expires(at(start() + span(HOUR))))
        .await
        .unwrap();
    let later = keyring
        .issue(NewKey::new("pl", "org_1", "k2").expires(at(start() + span(20 * HOUR))))
        .await
        .unwrap();
    sink.clear();
    let sweeper = keyring
        .sweeper()
        .expiring_within([DAY])
        .lease(Duration::from_secs(300))
        .build()
        .unwrap();
    // The first key's event is refused: the tick goes on with the next.
    sink.refuse_next(1);
    let report = sweeper.tick().await.unwrap();
    assert_eq!((report.expiring, report.sink_failures), (1, 1));
    assert_eq!(
        notices(&sink),
        [("expiring_soon", later.info.id().clone(), 86_400)]
    );
    assert_eq!(
        sweeper.tick().await.unwrap().sent(),
        0,
        "the refused event waits for its lease"
    );
    clock.advance(Duration::from_secs(300));
    let report = sweeper.tick().await.unwrap();
    assert_eq!(report.expiring, 1, "sent once the lease lapsed");
    assert_eq!(
        notices(&sink),
        [("expiring_soon", key.info.id().clone(), 86_400)]
    );

    // The store fails on queries: the tick fails, the event waits.
    clock.advance(2 * HOUR);
    faulty.set_fault_on(Op::FindKeys, Fault::Fail);
    assert!(sweeper.tick().await.is_err());
    faulty.set_fault_on(Op::FindKeys, Fault::None);
    faulty.set_fault_on(Op::ClaimNotice, Fault::Fail);
    assert!(sweeper.tick().await.is_err());
    faulty.set_fault_on(Op::ClaimNotice, Fault::None);
    assert!(sink.events().is_empty());
    // Sent, then the settle fails (a crash after sending): the claim
    // stays until its lease lapses.
    faulty.set_fault_on(Op::SettleNotice, Fault::Fail);
    assert!(sweeper.tick().await.is_err());
    faulty.set_fault_on(Op::SettleNotice, Fault::None);
    assert_eq!(notices(&sink), [("expired", key.info.id().clone(), 0)]);
    assert_eq!(sweeper.tick().await.unwrap().sent(), 0, "leased");
    clock.advance(Duration::from_secs(301));
    assert_eq!(
        sweeper.tick().await.unwrap().expired,
        1,
        "again, after the lease"
    );
    assert_eq!(sweeper.tick().await.unwrap().sent(), 0);
}

/// A tick sends at most its budget, across its passes; the rest follow on
/// later ticks.
pub async fn ticks_are_bounded(store: Arc<dyn KeyStore>) {
    let clock = ManualClock::new(start());
    let sink = RecordingSink::new();
    let keyring = keyring(store, &clock, &sink);
    // 8 keys that will have expired, 17 that will expire within a day.
    for (n, base) in [(8u32, HOUR), (17, 10 * HOUR)] {
        for i in 0..n {
            let expires = start() + span(base + Duration::from_secs(i.into()));
            keyring
                .issue(NewKey::new("pl", "org_1", "k").expires(at(expires)))
                .await
                .unwrap();
        }
    }
    sink.clear();
    clock.advance(2 * HOUR);
    let sweeper = keyring
        .sweeper()
        .expiring_within([DAY])
        .max_events_per_tick(10)
        .build()
        .unwrap();
    let mut sent = Vec::new();
    for _ in 0..4 {
        let r = sweeper.tick().await.unwrap();
        sent.push((r.expired, r.expiring, r.budget_spent));
    }
    assert_eq!(
        sent,
        [(8, 2, true), (0, 10, true), (0, 5, false), (0, 0, false)]
    );
    assert_eq!(notices(&sink).len(), 25);
}

/// Issued, revoked (actor and reason), rotated: each an event naming the
/// key, tenant, kind, owner and actor, never the token or hash.
pub async fn management_events_name_the_actor(store: Arc<dyn KeyStore>) {
    let clock = ManualClock::new(start());
    let sink = RecordingSink::new();
    let keyring = keyring(store, &clock, &sink);
    let admin = Actor::Subject("admin_1".into());
    let acting = keyring.acting(admin.clone());
    let issued = acting
        .issue(NewKey::new("pl", "org_1", "laptop").owner("user_7"))
        .await
        .unwrap();
    let id = issued.info.id().clone();
    let rotated = acting.rotate(&id, HOUR).await.unwrap();
    acting
        .clone()
        .reason("leaked")
        .revoke(rotated.info.id())
        .await
        .unwrap();
    keyring.revoke(&id).await.unwrap();
    // The tenant-scoped calls: another tenant's key is not found.
    let other = TenantId::parse("org_2").unwrap();
    let org = TenantId::parse("org_1").unwrap();
    let second = acting
        .issue(NewKey::new("pl", "org_1", "second"))
        .await
        .unwrap();
    assert!(acting.revoke_in(&other, second.info.id()).await.is_err());
    assert!(acting
        .rotate_in(&other, second.info.id(), HOUR)
        .await
        .is_err());
    let third = acting
        .rotate_in(&org, second.info.id(), HOUR)
        .await
        .unwrap();
    acting.revoke_in(&org, third.info.id()).await.unwrap();
    let tail: Vec<_> = sink.names().split_off(5);
    assert_eq!(tail, ["issued", "issued", "rotated", "revoked"]);
    let events: Vec<_> = sink.events().into_iter().take(5).collect();
    let names: Vec<_> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(names, ["issued", "issued", "rotated", "revoked", "revoked"]);
    let owner = OwnerId::parse("user_7").unwrap();
    for e in &events[..4] {
        assert_eq!(e.actor, Some(admin.clone()), "{e:?}");
        assert_eq!(
            e.owner,
            Some(owner.clone()),
            "the successor keeps the owner"
        );
        assert_eq!(e.tenant.as_str(), "org_1");
        assert_eq!(e.key_kind, "pl");
    }
    assert_eq!(events[4].actor, None, "the plain method names nobody");
    assert_eq!(
        events[2].kind,
        EventKind::Rotated {
            successor: rotated.info.id().clone(),
            grace: HOUR
        }
    );
    assert_eq!(
        events[3].kind,
        EventKind::Revoked {
            reason: Some("leaked".into())
        }
    );
    assert_eq!(events[4].kind, EventKind::Revoked { reason: None });
    let shown = format!("{events:?}");
    for secret in [issued.token.expose_secret(), rotated.token.expose_secret()] {
        assert!(!shown.contains(secret));
        assert!(!shown.contains(&secret[8..]));
    }
}

/// A predecessor presented after its grace is refused as revoked and
/// reported with its successor; under `RevokeFamily` the successor and its
/// own successors are revoked too.
pub async fn reuse_after_grace_is_detected(store: Arc<dyn KeyStore>) {
    let clock = ManualClock::new(start());
    let sink = RecordingSink::new();
    let keyring = keyring(store, &clock, &sink);
    // `pk`: report only.
    let old = keyring.issue(NewKey::new("pk", "p1", "svc")).await.unwrap();
    let new = keyring.rotate(old.info.id(), HOUR).await.unwrap();
    keyring
        .verify(old.token.expose_secret())
        .await
        .expect("within the grace");
    sink.clear();
    assert!(
        sink.events().is_empty(),
        "no reuse within the grace, and verify sends nothing"
    );
    clock.advance(HOUR);
    assert!(matches!(
        keyring.verify(old.token.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));
    let events = sink.take();
    assert_eq!(events.len(), 1);
    assert_eq!(&events[0].key_id, old.info.id());
    assert_eq!(
        events[0].kind,
        EventKind::ReuseDetected {
            successors: vec![new.info.id().clone()],
            family_revoked: false
        }
    );
    keyring
        .verify(new.token.expose_secret())
        .await
        .expect("Report leaves the successor working");

    // Reported once per hour, however often the token comes back.
    assert!(keyring.verify(old.token.expose_secret()).await.is_err());
    assert!(sink.events().is_empty(), "reported within the hour");
    clock.advance(HOUR);
    assert!(keyring.verify(old.token.expose_secret()).await.is_err());
    assert_eq!(sink.names(), ["reuse_detected"], "an hour later, again");
    // A key in its grace was replaced: it can not be rotated again.
    let again = keyring.rotate(new.info.id(), HOUR).await.unwrap();
    assert!(matches!(
        keyring.rotate(new.info.id(), HOUR).await,
        Err(IssueError::Inactive)
    ));
    // Revoked at once during its grace (not by the grace running out): no
    // reuse.
    keyring.revoke(new.info.id()).await.unwrap();
    sink.clear();
    assert!(keyring.verify(new.token.expose_secret()).await.is_err());
    assert!(sink.events().is_empty(), "a plain revocation is no reuse");
    keyring.verify(again.token.expose_secret()).await.unwrap();

    // `pl`: the family goes.
    let a = keyring
        .issue(NewKey::new("pl", "org_1", "ci"))
        .await
        .unwrap();
    let b = keyring
        .rotate(a.info.id(), Duration::from_secs(1))
        .await
        .unwrap();
    // `b` is still in its own grace when `a` comes back: revoked at once.
    let c = keyring.rotate(b.info.id(), HOUR).await.unwrap();
    clock.advance(Duration::from_secs(1));
    keyring
        .verify(b.token.expose_secret())
        .await
        .expect("b's grace");
    keyring.verify(c.token.expose_secret()).await.unwrap();
    sink.clear();
    assert!(matches!(
        keyring.verify(a.token.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));
    let events = sink.take();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].kind,
        EventKind::ReuseDetected {
            successors: vec![b.info.id().clone()],
            family_revoked: true
        }
    );
    for token in [&b.token, &c.token] {
        assert!(matches!(
            keyring.verify(token.expose_secret()).await,
            Err(VerifyError::Revoked)
        ));
    }
    // A key revoked without a rotation is no reuse.
    let plain = keyring
        .issue(NewKey::new("pk", "p1", "plain"))
        .await
        .unwrap();
    keyring.revoke(plain.info.id()).await.unwrap();
    sink.clear();
    assert!(keyring.verify(plain.token.expose_secret()).await.is_err());
    assert!(sink.events().is_empty());
}

/// Personal keys: listed by owner, revoked all at once (across pages),
/// other owners' and the tenant's own keys untouched.
pub async fn owners_are_offboarded_in_one_call(store: Arc<dyn KeyStore>) {
    let clock = ManualClock::new(start());
    let sink = RecordingSink::new();
    let keyring = keyring(store, &clock, &sink);
    let mut mine = Vec::new();
    for i in 0..105 {
        let issued = keyring
            .issue(NewKey::new("pl", "org_1", &format!("k{i}")).owner("user_7"))
            .await
            .unwrap();
        mine.push(issued);
    }
    let other = keyring
        .issue(NewKey::new("pl", "org_1", "bob's").owner("user_8"))
        .await
        .unwrap();
    let shared = keyring
        .issue(NewKey::new("pl", "org_1", "shared"))
        .await
        .unwrap();
    let elsewhere = keyring
        .issue(NewKey::new("pl", "org_2", "same user id elsewhere").owner("user_7"))
        .await
        .unwrap();
    keyring.revoke(mine[0].info.id()).await.unwrap();
    let (org, user) = (
        TenantId::parse("org_1").unwrap(),
        OwnerId::parse("user_7").unwrap(),
    );
    let page = keyring
        .list_page(&org, &ListQuery::new().owner(user.clone()).limit(100))
        .await
        .unwrap();
    assert_eq!(page.keys().len(), 100);
    assert!(page.keys().iter().all(|k| k.owner() == Some(&user)));
    sink.clear();
    let admin = Actor::Subject("hr".into());
    let revoked = keyring
        .acting(admin.clone())
        .reason("offboarding")
        .revoke_owner(&org, &user)
        .await
        .unwrap();
    assert_eq!(revoked.len(), 104, "every key not already revoked");
    let events = sink.take();
    assert_eq!(events.len(), 104);
    assert!(events.iter().all(|e| e.kind
        == EventKind::Revoked {
            reason: Some("offboarding".into())
        }
        && e.actor == Some(admin.clone())));
    for issued in &mine {
        assert!(keyring.verify(issued.token.expose_secret()).await.is_err());
    }
    for issued in [&other, &shared, &elsewhere] {
        keyring.verify(issued.token.expose_secret()).await.unwrap();
    }
    let active = keyring
        .list_page(
            &org,
            &ListQuery::new()
                .owner(user.clone())
                .state(StateFilter::Active),
        )
        .await
        .unwrap();
    assert!(active.keys().is_empty());
    assert!(
        keyring.revoke_owner(&org, &user).await.unwrap().is_empty(),
        "idempotent"
    );
    assert!(matches!(
        keyring
            .issue(NewKey::new("pl", "org_1", "x").owner("bad\u{202e}id"))
            .await,
        Err(IssueError::InvalidOwner)
    ));
}
