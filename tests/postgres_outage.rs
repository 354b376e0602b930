//! The database going away mid-run: verification fails closed, and service
//! comes back with the server. This binary stops and starts the shared test
//! server, so it holds one test only (cargo runs test binaries one at a time).
#![cfg(all(feature = "postgres", feature = "test-util"))]

mod common;

use std::time::{Duration, Instant};

use common::pg;
use keyward::store::CachedStore;
use keyward::{NewKey, VerifyError};

/// Starts the server again if the test ends (or panics) while it is down.
struct Restart<'a> {
    start: &'a str,
    stopped: bool,
}

impl Restart<'_> {
    fn stop(&mut self, stop: &str) {
        pg::sh(stop);
        self.stopped = true;
    }

    fn start(&mut self) {
        pg::sh(self.start);
        self.stopped = false;
    }
}

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        if self.stopped {
            pg::sh(self.start);
        }
    }
}

async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn fails_closed(result: Result<keyward::VerifiedKey, VerifyError>) {
    match result {
        Err(VerifyError::Store(err)) => assert!(err.is_unavailable(), "{err}"),
        other => panic!("expected VerifyError::Store while the database is down, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_fails_closed_and_service_recovers() {
    let test = "outage";
    let Some((stop, start)) = pg::server_control(test) else {
        return;
    };
    let Some((pg_a, schema)) = pg::store(test).await else {
        return;
    };
    let url = pg::database_url(test).unwrap();

    // Keyring A: uncached. Keyring B: cached, with a revocation listener.
    let pg_b = pg::store_on(&url, &schema);
    let cache_b = CachedStore::new(pg_b.clone());
    let listener = pg_b.listen(cache_b.invalidator()).unwrap();
    let (a, _) = common::keyring_on(pg_a);
    let (b, _) = common::keyring_on(cache_b);
    eventually("listener connects", Duration::from_secs(10), || async {
        listener.is_listening()
    })
    .await;
    let issued = a.issue(NewKey::new("pk", "p", "k")).await.unwrap();
    let other = a.issue(NewKey::new("pk", "p", "other")).await.unwrap();
    let token = issued.token.expose_secret();
    a.verify(token).await.unwrap();
    b.verify(token).await.unwrap(); // now cached in B

    let mut server = Restart {
        start: &start,
        stopped: false,
    };
    server.stop(&stop);

    let began = Instant::now();
    fails_closed(a.verify(token).await);
    let took = began.elapsed();
    assert!(took < Duration::from_secs(6), "failing took {took:?}");
    eprintln!("uncached verify failed closed after {took:?}");
    // B never saw `other`: its lookup fails closed too.
    fails_closed(b.verify(other.token.expose_secret()).await);
    // The listener noticed, and cleared the cache (notifications may be
    // lost): B no longer vouches for the cached key either.
    eventually("listener notices", Duration::from_secs(15), || async {
        !listener.is_listening()
    })
    .await;
    fails_closed(b.verify(token).await);
    assert!(a.revoke(&issued.info.id).await.is_err());

    server.start();

    let back = eventually("A serves again", Duration::from_secs(30), || async {
        a.verify(token).await.is_ok()
    })
    .await;
    eprintln!("A verified again {back:?} after the restart");
    eventually("B serves again", Duration::from_secs(30), || async {
        b.verify(token).await.is_ok()
    })
    .await;
    eventually("listener reconnects", Duration::from_secs(30), || async {
        listener.is_listening()
    })
    .await;
    // Cross-process revocation works again.
    a.revoke(&issued.info.id).await.unwrap();
    let lag = eventually(
        "B refuses the revoked key",
        Duration::from_secs(1),
        || async { matches!(b.verify(token).await, Err(VerifyError::Revoked)) },
    )
    .await;
    eprintln!("after the restart, B refused the revoked key within {lag:?}");
}
