//! [`Throttle`]: the service, and the checks it runs per request.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response};
use tower::Service;

use super::ip_key;
use super::layer::ThrottleConfig;
use crate::http::future::{Admitted, ResponseFuture, State};
use crate::http::rejection::{render_limited, Rejection};
use crate::ratelimit::{hashed_key, Quota, RateDecision};

/// Counts requests per client IP and per account, and refuses those over
/// quota with 429. Built by [`ThrottleLayer`](crate::http::ThrottleLayer).
#[derive(Clone)]
pub struct Throttle<S> {
    inner: S,
    config: Arc<ThrottleConfig>,
}

impl<S> Throttle<S> {
    pub(super) fn new(inner: S, config: Arc<ThrottleConfig>) -> Self {
        Throttle { inner, config }
    }

    inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Throttle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Throttle<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let checks = match self.config.checks(&parts) {
            Ok(checks) => checks,
            Err(rejection) => {
                return ResponseFuture::new(State::Rejected {
                    response: Some(self.config.renderer.render(&rejection)),
                })
            }
        };
        let req = Request::from_parts(parts, body);
        if checks.is_empty() {
            // Called now, the service `poll_ready` readied: no clone.
            return ResponseFuture::new(State::Future {
                future: self.inner.call(req),
                decision: None,
                credits: None,
                soon_header: None,
            });
        }
        // Called later: the clone may not be ready, so this request keeps
        // the ready service.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(State::Checking {
            check: Box::pin(check(self.config.clone(), checks, req)),
            inner: Some(inner),
            soon_header: None,
        })
    }
}

impl ThrottleConfig {
    /// The limiter keys and quotas of a request, per IP first.
    fn checks(&self, parts: &Parts) -> Result<Vec<(String, Quota)>, Rejection> {
        let mut checks = Vec::with_capacity(2);
        if let Some(quota) = self.per_ip {
            let Some(client) = self.client_ip.client(parts)? else {
                tracing::error!(
                    target: "keyward::http",
                    "a per-IP throttle cannot see the client address; refusing the request \
                     (serve with connect info, or set ThrottleLayer::peer_ip)"
                );
                return Err(Rejection::AuthUnavailable);
            };
            checks.push((ip_key(client), quota));
        }
        if let Some((quota, account)) = &self.per_account {
            if let Some(account) = account(parts) {
                checks.push((hashed_key("acct", &account), *quota));
            }
        }
        Ok(checks)
    }
}

/// Runs the checks in order; the first denial or limiter error refuses the
/// request. An admitted request reports the decision closest to its limit.
async fn check<B>(
    config: Arc<ThrottleConfig>,
    checks: Vec<(String, Quota)>,
    req: Request<B>,
) -> Result<Admitted<B>, Response<String>> {
    let mut report: Option<RateDecision> = None;
    for (key, quota) in checks {
        let decision = match config.limiter.check(&key, quota).await {
            Ok(decision) => decision,
            Err(err) => return Err(config.renderer.render(&Rejection::from(&err))),
        };
        if !decision.allowed {
            let rejection = Rejection::RateLimited(decision);
            return Err(render_limited(&config.renderer, &rejection, Some(decision)));
        }
        if report.is_none_or(|r| decision.remaining < r.remaining) {
            report = Some(decision);
        }
    }
    Ok((req, report, None))
}
