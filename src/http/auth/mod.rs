//! The authentication middleware: reads credentials, verifies them, and puts
//! the [`Principal`] into the request extensions. See the
//! [`http` module docs](crate::http) for an example.

use http::request::Parts;

use crate::http::principal::Principal;
use crate::http::rejection::Rejection;

mod failures;
mod layer;
mod service;

pub use crate::http::future::ResponseFuture;
pub use layer::AuthLayer;
pub use service::Auth;

/// Runs after a request authenticated (and passed its rate limit, see
/// [`AuthLayer::rate_limiter`]) and before the inner service: the place for
/// the host's own per-key checks. Returning a rejection refuses the request
/// with it.
///
/// Hooks run in the order they were added; the first rejection wins.
///
/// Object safe: implement it with `#[keyward::async_trait]` (re-exported,
/// no dependency to add). The method reads `async fn
/// after_authentication(&self, principal: &Principal, request: &mut Parts)
/// -> Result<(), Rejection>`; the signature rendered below is the macro's
/// expansion of it.
///
/// ```
/// use http::request::Parts;
/// use keyward::http::{AuthHook, Principal, Rejection};
///
/// /// Refuses keys of one tenant while it is being migrated.
/// struct Freeze(keyward::TenantId);
///
/// #[keyward::async_trait]
/// impl AuthHook for Freeze {
///     async fn after_authentication(&self, principal: &Principal, _req: &mut Parts) -> Result<(), Rejection> {
///         if principal.tenant() == &self.0 { Err(Rejection::AuthUnavailable) } else { Ok(()) }
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait AuthHook: Send + Sync + 'static {
    /// Checks an authenticated request. `request` may be changed (for
    /// example to add an extension the handler or a response layer reads).
    async fn after_authentication(
        &self,
        principal: &Principal,
        request: &mut Parts,
    ) -> Result<(), Rejection>;
}
