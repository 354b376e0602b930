//! Code every middleware service of this module writes the same way.

/// The `get_ref` / `get_mut` / `into_inner` accessors of a service that
/// wraps an inner service in its field `inner`, for use inside
/// `impl<S> Service<S> { … }`.
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        #[must_use]
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        #[must_use]
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes the middleware, returning the inner service.
        #[must_use]
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

// Also for the services of other modules (`webhooks`).
#[allow(unused_imports)]
pub(crate) use inner_service_accessors;
