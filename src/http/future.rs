//! [`ResponseFuture`]: the checks of a layer (authentication, rate limits),
//! then the inner service's future with the rate limit headers added, or a
//! rejection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

use crate::http::principal::WouldDeny;
use crate::http::rejection::{rate_limit_headers, CREDITS_REMAINING};
use crate::ratelimit::RateDecision;

/// A request that passed a layer's checks, the rate decision to report on
/// its response (if a limiter saw it), and the credits left after it (if
/// it spent any).
pub(crate) type Admitted<B> = (Request<B>, Option<RateDecision>, Option<u64>);

/// The asynchronous checks of a layer: the admitted request, or the
/// rejection's response.
pub(crate) type CheckFuture<B> =
    Pin<Box<dyn Future<Output = Result<Admitted<B>, Response<String>>> + Send>>;

pin_project! {
    /// The response future of [`Auth`](crate::http::Auth) and
    /// [`Throttle`](crate::http::Throttle).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    pub(crate) enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Checking {
            check: CheckFuture<ReqBody>,
            inner: Option<S>,
            soon_header: Option<HeaderName>,
        },
        Future {
            #[pin]
            future: S::Future,
            decision: Option<RateDecision>,
            // The credits left after this request, if it spent any.
            credits: Option<u64>,
            // Where to list the "soon" scopes the caller lacks, if anywhere.
            soon_header: Option<HeaderName>,
        },
        Rejected {
            response: Option<S::Response>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn new(state: State<S, ReqBody>) -> Self {
        ResponseFuture { state }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<String>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking {
                    check,
                    inner,
                    soon_header,
                } => {
                    let next = match ready!(check.as_mut().poll(cx)) {
                        Ok((req, decision, credits)) => {
                            let mut inner = inner.take().expect("polled after completion");
                            State::Future {
                                future: inner.call(req),
                                decision,
                                credits,
                                soon_header: soon_header.take(),
                            }
                        }
                        Err(response) => State::Rejected {
                            response: Some(response.map(ResBody::from)),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Future {
                    future,
                    decision,
                    credits,
                    soon_header,
                } => {
                    // The response is changed where the inner future put
                    // it and returned as it is: no copy out and back in.
                    let mut poll = future.poll(cx);
                    if let Poll::Ready(Ok(response)) = &mut poll {
                        if let Some(decision) = decision {
                            rate_limit_headers(response.headers_mut(), decision);
                        }
                        if let Some(remaining) = *credits {
                            response
                                .headers_mut()
                                .insert(CREDITS_REMAINING, remaining.into());
                        }
                        if let Some(name) = soon_header.take() {
                            soon_scopes_header(response, name);
                        }
                    }
                    return poll;
                }
                StateProj::Rejected { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// Lists the "soon" scopes the caller lacks (the response's [`WouldDeny`],
/// put there by the scope layers) in header `name`, space separated. The
/// header is the layer's: absent when nothing is missing, whatever the
/// handler set.
fn soon_scopes_header<B>(response: &mut Response<B>, name: HeaderName) {
    let list = response
        .extensions()
        .get::<WouldDeny>()
        .map(|would_deny| {
            would_deny
                .missing()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    // Scope names are `[a-z0-9_:*-]`: always a valid value.
    match HeaderValue::from_str(&list) {
        Ok(value) if !list.is_empty() => {
            response.headers_mut().insert(name, value);
        }
        _ => {
            response.headers_mut().remove(name);
        }
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// `tokio::time::timeout` that starts its timer only if `future` waits:
    /// a check that completes at once (an in-memory store) never touches
    /// the runtime's timer, reads no clock and registers nothing. The limit
    /// runs from the first time `future` is pending; what ran before is
    /// this task's own CPU work.
    pub(crate) struct WhenPending<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        limit: std::time::Duration,
    }
}

/// The limit passed while `future` was waiting.
#[derive(Debug)]
pub(crate) struct Elapsed;

/// [`WhenPending`] around `future`.
pub(crate) fn timeout_when_pending<F: Future>(
    limit: std::time::Duration,
    future: F,
) -> WhenPending<F> {
    WhenPending {
        future,
        sleep: None,
        limit,
    }
}

impl<F: Future> Future for WhenPending<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.limit)));
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(Elapsed)),
            _ => Poll::Pending,
        }
    }
}
