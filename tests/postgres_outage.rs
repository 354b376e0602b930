//! The database going away mid-run: verification fails closed (503
//! `auth_unavailable` through the layers, never a 2xx), and service comes
//! back with the server. This binary stops and starts the shared test
//! server, so it holds one test only (cargo runs test binaries one at a time).
#![cfg(all(feature = "postgres", feature = "test-util", feature = "http"))]

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg;
use http::{Request, Response, StatusCode};
use keyward::http::{AuthLayer, RequireScopesLayer};
use keyward::store::CachedStore;
use keyward::{Keyring, NewKey, VerifyError};
use tower::{service_fn, ServiceBuilder, ServiceExt};

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

/// A `read` request with `token` through `AuthLayer` + `RequireScopes` on a
/// trivial service. The handler runs exactly when the status is a 2xx, and a
/// 503 is `auth_unavailable`.
async fn through_layer(keyring: &Keyring, token: &str) -> StatusCode {
    let called = Arc::new(AtomicBool::new(false));
    let flag = called.clone();
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(keyring.clone()))
        .layer(RequireScopesLayer::all(["read"]).unwrap())
        .service(service_fn(move |_req: Request<String>| {
            flag.store(true, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        }));
    let req = Request::get("/players")
        .header("x-api-key", token)
        .body(String::new())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let status = res.status();
    assert_eq!(
        called.load(Ordering::SeqCst),
        status.is_success(),
        "{status}"
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert!(
            res.body().contains(r#""error":"auth_unavailable""#),
            "{}",
            res.body()
        );
    }
    status
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
    assert_eq!(through_layer(&a, token).await, StatusCode::OK);
    assert_eq!(through_layer(&b, token).await, StatusCode::OK);

    let mut server = Restart {
        start: &start,
        stopped: false,
    };
    server.stop(&stop);

    // B's warm cache: the listener's connection closes with the server and
    // it clears the cache. Until it has, B may still vouch for the cached
    // (unrevoked) key: that window must be short.
    let served = AtomicUsize::new(0);
    let window = eventually(
        "B's warm cache fails closed",
        Duration::from_secs(1),
        || async {
            let status = through_layer(&b, token).await;
            if status.is_success() {
                served.fetch_add(1, Ordering::SeqCst);
            }
            status == StatusCode::SERVICE_UNAVAILABLE
        },
    )
    .await;
    eprintln!(
        "warm cache: 503 {window:?} after the server stopped ({} request(s) served from the cache before)",
        served.load(Ordering::SeqCst)
    );

    let began = Instant::now();
    fails_closed(a.verify(token).await);
    let took = began.elapsed();
    assert!(took < Duration::from_secs(6), "failing took {took:?}");
    eprintln!("uncached verify failed closed after {took:?}");
    let began = Instant::now();
    assert_eq!(
        through_layer(&a, token).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    eprintln!("uncached request: 503 after {:?}", began.elapsed());
    // B never saw `other`: its lookup fails closed too.
    fails_closed(b.verify(other.token.expose_secret()).await);
    // The listener noticed, and cleared the cache (notifications may be
    // lost): B no longer vouches for the cached key either.
    eventually("listener notices", Duration::from_secs(15), || async {
        !listener.is_listening()
    })
    .await;
    fails_closed(b.verify(token).await);
    for keyring in [&a, &b] {
        for token in [token, other.token.expose_secret()] {
            assert_eq!(
                through_layer(keyring, token).await,
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
    }
    assert!(a.revoke(issued.info.id()).await.is_err());

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
    for keyring in [&a, &b] {
        assert_eq!(through_layer(keyring, token).await, StatusCode::OK);
    }
    // Cross-process revocation works again.
    a.revoke(issued.info.id()).await.unwrap();
    let lag = eventually(
        "B refuses the revoked key",
        Duration::from_secs(1),
        || async { matches!(b.verify(token).await, Err(VerifyError::Revoked)) },
    )
    .await;
    eprintln!("after the restart, B refused the revoked key within {lag:?}");
    assert_eq!(through_layer(&b, token).await, StatusCode::UNAUTHORIZED);
}
