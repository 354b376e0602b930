//! An axum server that serves both products: PlayerOS (`pk_` keys, `read` /
//! `write`, key management) and PlayableLabs (`pl_` tokens, a
//! `resource:action` grid with "soon" scopes).
//!
//! Run with `cargo run --example server --features axum` (in-memory store).
//! With `--features axum,postgres` and `DATABASE_URL` set, it keeps keys in
//! PostgreSQL instead: it migrates the schema on start and verifies through
//! a `CachedStore<PgStore>` whose `RevocationListener` hears revocations
//! made by other instances on the same database.
//!
//! ```sh
//! DATABASE_URL=postgres://app@localhost/app cargo run --example server --features axum,postgres
//! ```
//!
//! It listens on
//! `KEYWARD_ADDR` (default `127.0.0.1:3000`) and prints one JSON line per
//! demo key on stdout (`{"name","token","scopes","tenant"}`); logs go to
//! stderr, with `Authorization` and `X-Api-Key` marked sensitive.
//! `KEYWARD_BENCH_BARE=1` serves only `GET /api/players`, without
//! authentication: the baseline of `scripts/load.sh`.
//!
//! ```sh
//! curl -H "X-Api-Key: $PK" localhost:3000/api/players
//! curl -H "Authorization: Bearer $PL" localhost:3000/api/games
//! curl -H "X-Api-Key: $MANAGER" -H 'content-type: application/json' \
//!      -d '{"property_id":"property_demo","name":"new"}' \
//!      localhost:3000/api/functions/create-api-key
//! # the demo key "limited" allows 3 requests a minute: the 4th is a 429
//! for i in 1 2 3 4; do curl -i -H "X-Api-Key: $LIMITED" localhost:3000/api/players; done
//! # the demo login allows 3 attempts per account per 15 minutes, 5 per IP a minute
//! curl -i -X POST -H 'X-Account: ada@example.com' localhost:3000/api/login
//! ```

mod app;

use std::net::SocketAddr;

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderName;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();

    // The listener (PostgreSQL only) runs as long as it is held.
    let (keyring, _listener) = open_keyring().await?;
    for key in app::demo_keys(&keyring).await? {
        println!("{}", serde_json::to_string(&key)?);
    }

    let sensitive = [AUTHORIZATION, HeaderName::from_static("x-api-key")];
    // `scripts/load.sh` compares against the same route without authentication.
    let router = if std::env::var_os("KEYWARD_BENCH_BARE").is_some_and(|v| v == "1") {
        eprintln!("KEYWARD_BENCH_BARE=1: /api/players WITHOUT authentication (load-test baseline)");
        app::bare_router()
    } else {
        app::router(keyring.clone())
    };
    let router = router
        .layer(TraceLayer::new_for_http())
        .layer(SetSensitiveRequestHeadersLayer::new(sensitive));

    let addr = std::env::var("KEYWARD_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    // Connect info: the login throttle keys by the client's address.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    keyring.flush_last_used().await?;
    Ok(())
}

/// On PostgreSQL when `DATABASE_URL` is set: migrated, cached, and listening
/// for other instances' revocations. In memory otherwise.
#[cfg(feature = "postgres")]
async fn open_keyring() -> Result<
    (
        keyward::Keyring,
        Option<keyward::store::postgres::RevocationListener>,
    ),
    Box<dyn std::error::Error>,
> {
    use keyward::store::postgres::PgStore;
    use keyward::store::CachedStore;

    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            eprintln!("store: in memory (set DATABASE_URL for PostgreSQL)");
            return Ok((app::keyring(), None));
        }
    };
    let pg = PgStore::builder(&url).build()?;
    pg.migrate().await?;
    let store = CachedStore::new(pg.clone());
    let listener = pg.listen(store.invalidator())?;
    eprintln!("store: PostgreSQL (migrated; cached, revocations shared by LISTEN/NOTIFY)");
    Ok((app::keyring_on(store), Some(listener)))
}

/// In memory: built without the `postgres` feature.
#[cfg(not(feature = "postgres"))]
async fn open_keyring() -> Result<(keyward::Keyring, ()), Box<dyn std::error::Error>> {
    if std::env::var_os("DATABASE_URL").is_some() {
        eprintln!("store: in memory (DATABASE_URL ignored: built without the postgres feature)");
    } else {
        eprintln!("store: in memory");
    }
    Ok((app::keyring(), ()))
}
