//! [`AuthLayer`]: the configuration of [`Auth`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use tower::Layer;

use super::{Auth, AuthHook};
use crate::http::credentials::{CredentialRules, CredentialSource, TENANT_HEADER};
use crate::http::external::ExternalAuthenticator;
use crate::http::rejection::{JsonRejections, RenderRejection, Renderer};
use crate::keyring::Keyring;
use crate::ratelimit::{MemoryRateLimiter, Quota, RateLimiter};

/// Applies [`Auth`] to a service: see the [module docs](crate::http).
#[derive(Clone)]
#[must_use]
pub struct AuthLayer {
    config: Arc<AuthConfig>,
}

#[derive(Clone)]
pub(super) struct AuthConfig {
    pub(super) keyring: Keyring,
    pub(super) rules: CredentialRules,
    pub(super) tenant_header: HeaderName,
    pub(super) anonymous: bool,
    pub(super) external: Option<Arc<dyn ExternalAuthenticator>>,
    pub(super) hooks: Vec<Arc<dyn AuthHook>>,
    pub(super) renderer: Renderer,
    /// Whether [`AuthLayer::renderer`] (or `realm`) set the renderer: only
    /// then does it go into the request extensions. Readers (the scope
    /// layers, the extractors) fall back to the default when it is absent.
    pub(super) custom_renderer: bool,
    pub(super) verify_timeout: Duration,
    pub(super) limiter: Option<Arc<dyn RateLimiter>>,
    pub(super) external_quota: Option<Quota>,
}

impl AuthLayer {
    /// How long verifying a credential may take by default: 5 s.
    pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

    /// Verifies credentials with `keyring`: `X-Api-Key` and `Authorization:
    /// Bearer` both accepted, tenant header `X-Property-Id`, no anonymous
    /// requests, JSON rejections with realm `"api"`, and each key's
    /// [`RateLimit`](crate::RateLimit) enforced by an in-process
    /// [`MemoryRateLimiter`] on the keyring's clock (see
    /// [`AuthLayer::rate_limiter`]).
    pub fn new(keyring: Keyring) -> Self {
        let limiter = MemoryRateLimiter::builder()
            .shared_clock(keyring.clock())
            .build();
        AuthLayer {
            config: Arc::new(AuthConfig {
                limiter: Some(Arc::new(limiter)),
                external_quota: None,
                keyring,
                rules: CredentialRules::default(),
                tenant_header: HeaderName::from_static(TENANT_HEADER),
                anonymous: false,
                external: None,
                hooks: Vec::new(),
                renderer: Renderer::default(),
                custom_renderer: false,
                verify_timeout: Self::DEFAULT_VERIFY_TIMEOUT,
            }),
        }
    }

    fn config(&mut self) -> &mut AuthConfig {
        Arc::make_mut(&mut self.config)
    }

    /// Which headers may carry credentials ([`CredentialSource::Both`] by
    /// default).
    pub fn credentials(mut self, source: CredentialSource) -> Self {
        self.config().rules.source = source;
        self
    }

    /// The API key header (`X-Api-Key` by default).
    pub fn api_key_header(mut self, name: HeaderName) -> Self {
        self.config().rules.api_key_header = name;
        self
    }

    /// The header that selects the tenant (`X-Property-Id` by default).
    pub fn tenant_header(mut self, name: HeaderName) -> Self {
        self.config().tenant_header = name;
        self
    }

    /// The longest credential accepted, in bytes (4096 by default). Longer
    /// values are refused with 400 `invalid_request` before any parsing.
    pub fn max_credential_len(mut self, max: usize) -> Self {
        self.config().rules.max_len = max;
        self
    }

    /// Lets requests without any credentials through, without a
    /// [`Principal`](crate::http::Principal). Requests with bad credentials are still refused.
    pub fn allow_anonymous(mut self, allow: bool) -> Self {
        self.config().anonymous = allow;
        self
    }

    /// Sends bearer values that are not keyward tokens to `authenticator`.
    pub fn external(mut self, authenticator: impl ExternalAuthenticator) -> Self {
        self.config().external = Some(Arc::new(authenticator));
        self
    }

    /// The longest a credential's verification may take: the keyring's store
    /// lookup (and the last-used write it may carry) or the
    /// [`ExternalAuthenticator`] call. Past it the request is refused with
    /// 503 `auth_unavailable`, as when the store fails, so a hung or slow
    /// store never holds requests forever nor lets one through.
    /// [`DEFAULT_VERIFY_TIMEOUT`](Self::DEFAULT_VERIFY_TIMEOUT) (5 s) by
    /// default; [`AuthHook`]s are not included.
    ///
    /// The timer is tokio's: the service must run inside a tokio runtime
    /// with its time driver enabled (as `#[tokio::main]`, axum and hyper
    /// servers do). Elsewhere, a request with credentials panics (and never
    /// reaches the inner service).
    pub fn verify_timeout(mut self, timeout: Duration) -> Self {
        self.config().verify_timeout = timeout;
        self
    }

    /// Adds a check that runs after authentication.
    pub fn hook(mut self, hook: impl AuthHook) -> Self {
        self.config().hooks.push(Arc::new(hook));
        self
    }

    /// The limiter that enforces each key's [`RateLimit`](crate::RateLimit)
    /// (default 100 a minute, set per key with
    /// [`NewKey::rate_limit`](crate::NewKey::rate_limit)).
    ///
    /// By default the layer has its own [`MemoryRateLimiter`] on the
    /// keyring's clock: clones of the layer share it, but two layers built
    /// with [`AuthLayer::new`] count separately, and so do several server
    /// instances. Pass one limiter to several layers to share a budget, or a
    /// shared store's limiter (`PgRateLimiter`, feature `postgres`) to
    /// share it across instances.
    ///
    /// The check runs after authentication (a request with bad credentials
    /// uses no quota) and before the [`AuthHook`]s, keyed by `key:<key id>`.
    /// A denied request gets 429 `rate_limited`; a limiter error gets 503
    /// `auth_unavailable` (fail closed). Every response of a checked request,
    /// allowed or not, carries `RateLimit-Policy` and `RateLimit`, and the
    /// handler finds the [`RateDecision`](crate::RateDecision) in the
    /// request extensions. Keys with [`RateLimit::Unlimited`](crate::RateLimit::Unlimited)
    /// are not checked and get no headers, nor are anonymous requests
    /// ([`allow_anonymous`](Self::allow_anonymous)): put a
    /// [`ThrottleLayer`](crate::http::ThrottleLayer) in front for those.
    ///
    /// ```
    /// use keyward::http::AuthLayer;
    /// use keyward::ratelimit::{MemoryRateLimiter, RateLimiter};
    /// use std::sync::Arc;
    ///
    /// # fn layers(keyring: keyward::Keyring) -> (AuthLayer, AuthLayer) {
    /// // One budget per key across both layers.
    /// let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryRateLimiter::new());
    /// let public = AuthLayer::new(keyring.clone()).rate_limiter(limiter.clone());
    /// let admin = AuthLayer::new(keyring).rate_limiter(limiter);
    /// # (public, admin) }
    /// ```
    pub fn rate_limiter(mut self, limiter: impl RateLimiter) -> Self {
        self.config().limiter = Some(Arc::new(limiter));
        self
    }

    /// Turns per-key rate limits off: no check, no headers. For hosts that
    /// limit elsewhere (a gateway).
    pub fn without_rate_limits(mut self) -> Self {
        self.config().limiter = None;
        self
    }

    /// A quota for principals of the [`ExternalAuthenticator`], keyed by
    /// `ext:<subject>` (a subject over 252 bytes by its SHA-256). None by
    /// default: an external principal has no stored limit, and its issuer
    /// usually limits it already. Needs a limiter (on by default).
    pub fn external_quota(mut self, quota: Quota) -> Self {
        self.config().external_quota = Some(quota);
        self
    }

    /// Renders rejections with the default JSON rendering and this realm.
    pub fn realm(self, realm: &str) -> Self {
        self.renderer(JsonRejections::new(realm))
    }

    /// Renders rejections with `renderer`. The [`RequireScopes`] layers and
    /// extractors behind this layer use it too.
    ///
    /// [`RequireScopes`]: crate::http::RequireScopes
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        let config = self.config();
        config.renderer = Renderer::new(renderer);
        config.custom_renderer = true;
        self
    }
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("keyring", &self.config.keyring)
            .field("rules", &self.config.rules)
            .field("tenant_header", &self.config.tenant_header)
            .field("anonymous", &self.config.anonymous)
            .field("external", &self.config.external.is_some())
            .field("hooks", &self.config.hooks.len())
            .field("verify_timeout", &self.config.verify_timeout)
            .field("limiter", &self.config.limiter)
            .field("external_quota", &self.config.external_quota)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth::new(inner, self.config.clone())
    }
}
