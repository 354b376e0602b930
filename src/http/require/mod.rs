//! Per-route scope requirements: a layer behind [`AuthLayer`](crate::http::AuthLayer) that checks the
//! [`Principal`](crate::http::Principal) against a [`Requirement`](crate::Requirement).
//!
//! [`AuthLayer`]: crate::http::AuthLayer

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::RequireScopesLayer;
pub use service::RequireScopes;
