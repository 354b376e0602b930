//! An axum server that serves both products: PlayerOS (`pk_` keys, `read` /
//! `write`, key management) and PlayableLabs (`pl_` tokens, a
//! `resource:action` grid with "soon" scopes).
//!
//! Run with `cargo run --example server --features axum,jwt,webhooks`
//! (in-memory store).
//! With `--features axum,postgres` and `DATABASE_URL` set, it keeps keys in
//! PostgreSQL instead: it migrates the schema on start and verifies through
//! a `CachedStore<PgStore>` whose `RevocationListener` hears revocations
//! made by other instances on the same database.
//!
//! ```sh
//! DATABASE_URL=postgres://app@localhost/app cargo run --example server --features axum,jwt,webhooks,postgres
//! ```
//!
//! It listens on
//! `KEYWARD_ADDR` (an `ip:port`, default `127.0.0.1:3000`) and prints one
//! JSON line per demo key on stdout (`{"name","token","scopes","tenant"}`);
//! logs go to stderr, with `Authorization` and `X-Api-Key` marked sensitive.
//! It serves HTTP/1 with a 10 s header read timeout, a 30 s request timeout,
//! a 10 s write timeout (a client that stops reading is cut off), at most
//! 1000 requests and 5 minutes per connection, at most 1024 connections at
//! once and 64 per client address, and 16 KiB bodies (see `serve.rs`).
//!
//! The tokens page, <http://127.0.0.1:3000/tokens>, manages `org_demo`'s
//! `pl_` tokens after a demo login with any account name (`app::page`,
//! `/api/tokens`). The login answers a JWT of the server's own development
//! issuer (`app::issuer`, its key set at `/.well-known/jwks.json`), which
//! `keyward::jwt::JwtAuthenticator` verifies on `/api/tokens`.
//!
//! Every key event (issue, revoke, rotate, …) is delivered as a signed
//! Standard Webhooks message to the server's own receiver,
//! `POST /webhooks/keyward`, which verifies it (`app::webhooks`); what it
//! received is listed at `GET /api/webhooks/received` for keys holding
//! `keys:manage` (their tenant's events only). The receiver reads at most
//! 16 KiB of body, as every route.
//!
//! `--unauthenticated-load-test-baseline` serves only `GET /api/players`,
//! without authentication: the baseline of `scripts/load.sh`. The server
//! refuses that flag on any address but a loopback one.
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
//! # the dashboard JWT from the login's "session" manages pl_ tokens
//! JWT=$(curl -s -X POST -H 'X-Account: ada' localhost:3000/api/login | jq -r .session)
//! curl -H "Authorization: Bearer $JWT" localhost:3000/api/tokens
//! # revoke a key, then see the signed key.revoked webhook the receiver verified
//! curl -H "X-Api-Key: $MANAGER" -H 'content-type: application/json' \
//!      -d '{"id":"key_…"}' localhost:3000/api/functions/revoke-api-key
//! curl -H "X-Api-Key: $MANAGER" localhost:3000/api/webhooks/received
//! ```

mod app;
mod serve;

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderName;
use serve::{Limits, Mode};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();

    let options = serve::options(std::env::args().skip(1), std::env::var("KEYWARD_ADDR").ok())?;

    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    let addr = listener.local_addr()?;
    // Key events go out as signed webhooks, to this server's own receiver.
    let webhooks = app::webhooks::Webhooks::new();
    // The listener (PostgreSQL only) runs as long as it is held.
    let (keyring, _listener) = open_keyring(webhooks.sink(addr)).await?;
    for key in app::demo_keys(&keyring).await? {
        println!("{}", serde_json::to_string(&key)?);
    }

    // Key lifecycle: announce keys expiring within 7 days and 1 day, and
    // expired ones, once each (also with several instances on one
    // database), as `keyward::audit` events.
    const DAY: std::time::Duration = std::time::Duration::from_secs(86_400);
    let sweeper = keyring.sweeper().expiring_within([7 * DAY, DAY]).build()?;
    tokio::spawn(sweeper.run(std::time::Duration::from_secs(60), tokio::time::sleep));

    let sensitive = [AUTHORIZATION, HeaderName::from_static("x-api-key")];
    let router = match options.mode {
        Mode::Api => app::router_with(keyring.clone(), webhooks),
        Mode::UnauthenticatedBaseline => {
            eprintln!(
                "{}: /api/players WITHOUT authentication on {} (load-test baseline only)",
                serve::BASELINE_FLAG,
                options.addr
            );
            app::bare_router()
        }
    };
    let router = router
        .layer(TraceLayer::new_for_http())
        .layer(SetSensitiveRequestHeadersLayer::new(sensitive));

    eprintln!("listening on http://{addr}");
    eprintln!(
        "webhooks: key events are signed and delivered to http://{addr}{}",
        app::webhooks::RECEIVER_PATH
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve::serve(listener, router, Limits::default(), shutdown).await;
    keyring.flush_last_used().await?;
    Ok(())
}

/// On PostgreSQL when `DATABASE_URL` is set: migrated, cached, and listening
/// for other instances' revocations. In memory otherwise.
#[cfg(feature = "postgres")]
async fn open_keyring(
    sink: keyward::webhooks::WebhookSink,
) -> Result<
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
            return Ok((
                app::keyring_sending(keyward::MemoryStore::new(), sink),
                None,
            ));
        }
    };
    let pg = PgStore::builder(&url).build()?;
    pg.migrate().await?;
    let store = CachedStore::new(pg.clone());
    let listener = pg.listen(store.invalidator())?;
    eprintln!("store: PostgreSQL (migrated; cached, revocations shared by LISTEN/NOTIFY)");
    Ok((app::keyring_sending(store, sink), Some(listener)))
}

/// In memory: built without the `postgres` feature.
#[cfg(not(feature = "postgres"))]
async fn open_keyring(
    sink: keyward::webhooks::WebhookSink,
) -> Result<(keyward::Keyring, ()), Box<dyn std::error::Error>> {
    if std::env::var_os("DATABASE_URL").is_some() {
        eprintln!("store: in memory (DATABASE_URL ignored: built without the postgres feature)");
    } else {
        eprintln!("store: in memory");
    }
    Ok((app::keyring_sending(keyward::MemoryStore::new(), sink), ()))
}
