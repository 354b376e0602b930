//! An axum server on the in-memory store that serves both products:
//! PlayerOS (`pk_` keys, `read` / `write`, key management) and PlayableLabs
//! (`pl_` tokens, a `resource:action` grid with "soon" scopes).
//!
//! Run with `cargo run --example server --features axum`. It listens on
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
//! ```

mod app;

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

    let keyring = app::keyring();
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
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    keyring.flush_last_used().await?;
    Ok(())
}
