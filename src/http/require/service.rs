//! [`RequireScopes`]: the check, and the audit of "soon" scopes.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::future::{Kind, ResponseFuture};
use crate::http::principal::{Anonymous, Principal, WouldDeny};
use crate::http::rejection::{Rejection, Renderer};
use crate::scope::{Decision, Requirement, Scope};

/// Checks the request's [`Principal`](crate::http::Principal) against a requirement. Built by
/// [`RequireScopesLayer`](crate::http::RequireScopesLayer).
#[derive(Debug, Clone)]
pub struct RequireScopes<S> {
    inner: S,
    requirement: Arc<Requirement>,
}

impl<S> RequireScopes<S> {
    pub(super) fn new(inner: S, requirement: Arc<Requirement>) -> Self {
        RequireScopes { inner, requirement }
    }

    inner_service_accessors!();

    /// Whether the request may pass; records a "soon" scope's would-deny
    /// (then `Ok(true)`).
    fn check<B>(&self, req: &mut Request<B>) -> Result<bool, Rejection> {
        let principal = req
            .extensions()
            .get::<Principal>()
            .ok_or_else(|| Anonymous::rejection(req.extensions(), "RequireScopes"))?;
        match principal.check(&self.requirement) {
            Decision::Allowed
            | Decision::NotEnforced {
                would_deny: false, ..
            } => Ok(false),
            Decision::NotEnforced { missing, .. } => {
                audit_would_deny(principal, &self.requirement, &missing);
                let extensions = req.extensions_mut();
                match extensions.get_mut::<WouldDeny>() {
                    Some(would_deny) => would_deny.add(&missing),
                    None => {
                        let mut would_deny = WouldDeny::default();
                        would_deny.add(&missing);
                        extensions.insert(would_deny);
                    }
                }
                Ok(true)
            }
            Decision::Denied { .. } => Err(Rejection::InsufficientScope {
                scope: self.requirement.to_string(),
            }),
        }
    }
}

fn audit_would_deny(principal: &Principal, requirement: &Requirement, missing: &[Scope]) {
    let missing = missing
        .iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    tracing::info!(
        target: "keyward::audit",
        principal = %principal.id(),
        tenant = %principal.tenant(),
        required = %requirement,
        missing = %missing,
        "soon scope would deny",
    );
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScopes<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let kind = match self.check(&mut req) {
            Ok(would_deny) => {
                // Only on the rare path: a "soon" scope let it through.
                let would_deny = would_deny
                    .then(|| req.extensions().get::<WouldDeny>().cloned())
                    .flatten();
                // Called now, the service `poll_ready` readied: no clone
                // (an axum route's clone is an allocation).
                Kind::Future {
                    future: self.inner.call(req),
                    would_deny,
                }
            }
            Err(rejection) => Kind::Rejected {
                response: Some(Renderer::of(req.extensions()).render(&rejection)),
            },
        };
        ResponseFuture::new(kind)
    }
}
