//! [`ResponseFuture`]: the inner service's future, or a rejection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use crate::http::principal::WouldDeny;
use pin_project_lite::pin_project;

pin_project! {
    /// The response future of [`RequireScopes`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    pub(super) enum Kind<F, B> {
        Future {
            #[pin]
            future: F,
            // What this requirement (and those before it) would deny, for
            // the response's extensions.
            would_deny: Option<WouldDeny>,
        },
        Rejected {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn new(kind: Kind<F, B>) -> Self {
        ResponseFuture { kind }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Future { future, would_deny } => {
                // The response is changed where the inner future put it and
                // returned as it is: no copy out and back in.
                let mut poll = future.poll(cx);
                if let Poll::Ready(Ok(response)) = &mut poll {
                    if let Some(would_deny) = would_deny.take() {
                        let extensions = response.extensions_mut();
                        match extensions.get_mut::<WouldDeny>() {
                            Some(existing) => existing.add(would_deny.missing()),
                            None => {
                                extensions.insert(would_deny);
                            }
                        }
                    }
                }
                poll
            }
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
