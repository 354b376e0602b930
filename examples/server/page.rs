//! The tokens page: `GET /tokens` (HTML), `GET /tokens/app.js` and
//! `GET /tokens/app.css`, compiled in with `include_str!` (no build step, no
//! external resource). The script logs in with the demo login and manages
//! the tenant's `pl_` tokens through `/api/tokens` with the dashboard JWT
//! the login answers.
//!
//! Every response carries a strict Content-Security-Policy (no inline
//! script or style, nothing from another origin, no framing), `nosniff`, and
//! `Cache-Control: no-store` (the page shows a token once; nothing of it
//! belongs in a cache). The script renders every value with `textContent`.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The page's Content-Security-Policy.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

const HTML: &str = include_str!("tokens/index.html");
const JS: &str = include_str!("tokens/app.js");
const CSS: &str = include_str!("tokens/app.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_SECURITY_POLICY, CSP),
            (CACHE_CONTROL, "no-store"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (X_FRAME_OPTIONS, "DENY"),
            (REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
}

/// The page's routes; no credential needed (the API behind it asks).
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/tokens",
            get(|| async { asset("text/html; charset=utf-8", HTML) }),
        )
        .route(
            "/tokens/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .route(
            "/tokens/app.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
}
