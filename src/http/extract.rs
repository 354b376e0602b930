//! axum extractors for the [`Principal`].
//!
//! * `Principal`: the authenticated caller. On a request without one: 401
//!   `missing_credentials` behind an [`AuthLayer::allow_anonymous`] layer
//!   (the same JSON rejection as the layers), else 500 `auth_misconfigured`
//!   with an error logged (no `AuthLayer` ran: it is missing or inside the
//!   route that extracts).
//! * `Option<Principal>`: the caller, if any; never rejects (for routes
//!   behind [`AuthLayer::allow_anonymous`]).
//!
//! [`AuthLayer::allow_anonymous`]: crate::http::AuthLayer::allow_anonymous
//!
//! ```
//! use axum::{handler::Handler, routing::{get, post}, Router};
//! use keyward::http::{AuthLayer, Principal, RequireScopesLayer};
//!
//! async fn list(principal: Principal) -> String {
//!     format!("players of {}", principal.tenant())
//! }
//! async fn upload() -> &'static str { "uploaded" }
//! async fn hello(principal: Option<Principal>) -> &'static str {
//!     if principal.is_some() { "hello, caller" } else { "hello, stranger" }
//! }
//!
//! fn app(keyring: keyward::Keyring) -> Result<Router, keyward::ScopeError> {
//!     Ok(Router::new()
//!         .route("/api/players", get(list.layer(RequireScopesLayer::all(["read"])?)))
//!         .route("/api/assets", post(upload.layer(RequireScopesLayer::all(["assets:write"])?)))
//!         .route("/hello", get(hello))
//!         .layer(AuthLayer::new(keyring).allow_anonymous(true)))
//! }
//! ```

use std::convert::Infallible;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::http::principal::{Anonymous, Principal};
use crate::http::rejection::{Rejection, Renderer};

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            Renderer::of(&parts.extensions).render(&Anonymous::rejection(
                &parts.extensions,
                "the Principal extractor",
            ))
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Principal>().cloned())
    }
}

/// Renders with the default JSON rendering (realm `"api"`), so handlers can
/// return a [`Rejection`].
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        Renderer::default().render(&self)
    }
}
