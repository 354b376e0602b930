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
    pub(super) verify_timeout: Duration,
}

impl AuthLayer {
    /// How long verifying a credential may take by default: 5 s.
    pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

    /// Verifies credentials with `keyring`: `X-Api-Key` and `Authorization:
    /// Bearer` both accepted, tenant header `X-Property-Id`, no anonymous
    /// requests, JSON rejections with realm `"api"`.
    pub fn new(keyring: Keyring) -> Self {
        AuthLayer {
            config: Arc::new(AuthConfig {
                keyring,
                rules: CredentialRules::default(),
                tenant_header: HeaderName::from_static(TENANT_HEADER),
                anonymous: false,
                external: None,
                hooks: Vec::new(),
                renderer: Renderer::default(),
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

    /// Renders rejections with the default JSON rendering and this realm.
    pub fn realm(self, realm: &str) -> Self {
        self.renderer(JsonRejections::new(realm))
    }

    /// Renders rejections with `renderer`. The [`RequireScopes`] layers and
    /// extractors behind this layer use it too.
    ///
    /// [`RequireScopes`]: crate::http::RequireScopes
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.config().renderer = Renderer::new(renderer);
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
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth::new(inner, self.config.clone())
    }
}
