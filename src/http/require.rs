//! Per-route scope requirements: a layer behind [`AuthLayer`] that checks the
//! [`Principal`] against a [`Requirement`].
//!
//! [`AuthLayer`]: crate::http::AuthLayer

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::ScopeError;
use crate::http::principal::{Principal, WouldDeny};
use crate::http::rejection::{Rejection, Renderer};
use crate::scope::{Decision, Requirement, Scope};

/// Applies [`RequireScopes`] to a service.
///
/// * No [`Principal`] in the request (no [`AuthLayer`] in front, or an
///   anonymous request) → 401 `missing_credentials`.
/// * An enforced requirement the principal does not meet → 403
///   `insufficient_scope`, with the requirement in the challenge's `scope`.
/// * A requirement that names a "soon" scope and would fail once enforced →
///   passes; a [`WouldDeny`] goes into the request extensions and an event
///   is logged at target `keyward::audit` (principal id, tenant, required and
///   missing scopes; never a token).
///
/// [`AuthLayer`]: crate::http::AuthLayer
#[derive(Debug, Clone)]
#[must_use]
pub struct RequireScopesLayer {
    requirement: Arc<Requirement>,
}

impl RequireScopesLayer {
    /// Requires `requirement`.
    pub fn new(requirement: Requirement) -> Self {
        RequireScopesLayer {
            requirement: Arc::new(requirement),
        }
    }

    /// Requires every one of these scopes.
    pub fn all<I, S>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Requirement::all(scopes).map(Self::new)
    }

    /// Requires any one of these scopes.
    pub fn any<I, S>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Requirement::any(scopes).map(Self::new)
    }

    /// The requirement.
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }
}

impl<S> Layer<S> for RequireScopesLayer {
    type Service = RequireScopes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopes {
            inner,
            requirement: self.requirement.clone(),
        }
    }
}

/// Checks the request's [`Principal`] against a requirement. Built by
/// [`RequireScopesLayer`].
#[derive(Debug, Clone)]
pub struct RequireScopes<S> {
    inner: S,
    requirement: Arc<Requirement>,
}

impl<S> RequireScopes<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Whether the request may pass; records a "soon" scope's would-deny.
    fn check<B>(&self, req: &mut Request<B>) -> Result<(), Rejection> {
        let principal = req
            .extensions()
            .get::<Principal>()
            .ok_or(Rejection::MissingCredentials)?;
        match principal.check(&self.requirement) {
            Decision::Allowed
            | Decision::NotEnforced {
                would_deny: false, ..
            } => Ok(()),
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
                Ok(())
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
            Ok(()) => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Kind::Future {
                    future: inner.call(req),
                }
            }
            Err(rejection) => Kind::Rejected {
                response: Some(Renderer::of(req.extensions()).render(&rejection)),
            },
        };
        ResponseFuture { kind }
    }
}

pin_project! {
    /// The response future of [`RequireScopes`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Future {
            #[pin]
            future: F,
        },
        Rejected {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Future { future } => future.poll(cx),
            KindProj::Rejected { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
