//! Fresh last use across processes on PostgreSQL: a dashboard in another
//! process (another keyring, its own pool, one database) sees a key as used
//! within about a second of its use, with no further request, when the
//! interval is 500 ms and the timer writes in the background.
#![cfg(all(feature = "postgres", feature = "test-util"))]

mod common;

use std::time::{Duration, Instant};

use common::pg;
use keyward::{KeyKind, Keyring, NewKey, TenantId};

fn kind() -> KeyKind {
    KeyKind::new("pk", common::player_os()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_in_another_process_sees_a_use_within_a_second() {
    let Some((store, schema)) = pg::store("pg_last_used_fresh").await else {
        return;
    };
    let url = pg::database_url("pg_last_used_fresh").unwrap();
    let service = Keyring::builder()
        .store(store)
        .kind(kind())
        .last_used_interval(Duration::from_millis(500))
        .spawn_last_used_writes(|write| {
            tokio::spawn(write);
        })
        .last_used_timer(tokio::time::sleep)
        .build()
        .unwrap();
    let dashboard = Keyring::builder()
        .store(pg::store_on(&url, &schema))
        .kind(kind())
        .build()
        .unwrap();
    let tenant = TenantId::parse("p").unwrap();
    let issued = service
        .issue(NewKey::new("pk", "p", "quiet"))
        .await
        .unwrap();
    assert_eq!(
        dashboard.list(&tenant).await.unwrap()[0].last_used_at(),
        None
    );

    // One use, then no request at all.
    service.verify(issued.token.expose_secret()).await.unwrap();
    let used = Instant::now();
    let seen_here = service.get(issued.info.id()).await.unwrap().last_used_at();
    assert!(seen_here.is_some(), "this process sees it at once");

    let deadline = used + Duration::from_secs(1);
    let lag = loop {
        let listed = dashboard.list(&tenant).await.unwrap();
        if let Some(at) = listed[0].last_used_at() {
            // PostgreSQL keeps microseconds.
            let off = (at - seen_here.unwrap()).abs();
            assert!(off < time::Duration::microseconds(1), "{at} is not the use");
            break used.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard still shows \"never used\" a second after the use"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("the dashboard saw the use after {lag:?}");
}
