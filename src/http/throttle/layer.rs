//! [`ThrottleLayer`]: the configuration of [`Throttle`].

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;
use tower::Layer;

use super::{ClientIp, Throttle};
use crate::http::rejection::{JsonRejections, RenderRejection, Renderer};
use crate::ratelimit::{MemoryRateLimiter, Quota, RateLimiter};

type Account = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// Applies [`Throttle`] to a service: see the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct ThrottleLayer {
    config: Arc<ThrottleConfig>,
}

#[derive(Clone)]
pub(super) struct ThrottleConfig {
    pub(super) limiter: Arc<dyn RateLimiter>,
    pub(super) per_ip: Option<Quota>,
    pub(super) per_account: Option<(Quota, Account)>,
    pub(super) client_ip: ClientIp,
    pub(super) renderer: Renderer,
}

impl ThrottleLayer {
    /// A throttle with no quota yet (it lets everything through until
    /// [`per_ip`](Self::per_ip) or [`per_account`](Self::per_account) is
    /// set), an in-process [`MemoryRateLimiter`] on the system clock, the
    /// peer address from a `SocketAddr` extension, no trusted proxies, and
    /// JSON rejections with realm `"api"`.
    pub fn new() -> Self {
        ThrottleLayer {
            config: Arc::new(ThrottleConfig {
                limiter: Arc::new(MemoryRateLimiter::new()),
                per_ip: None,
                per_account: None,
                client_ip: ClientIp::default(),
                renderer: Renderer::default(),
            }),
        }
    }

    fn config(&mut self) -> &mut ThrottleConfig {
        Arc::make_mut(&mut self.config)
    }

    /// The limiter (an in-process [`MemoryRateLimiter`] by default; a shared
    /// store's limiter to share the budget across instances). A limiter
    /// error is 503 `auth_unavailable`.
    pub fn limiter(mut self, limiter: impl RateLimiter) -> Self {
        self.config().limiter = Arc::new(limiter);
        self
    }

    /// A quota per client IP, keyed `ip:<address>` (IPv6: its /64).
    pub fn per_ip(mut self, quota: Quota) -> Self {
        self.config().per_ip = Some(quota);
        self
    }

    /// A quota per account, the account named by `account` from the request
    /// head (`None`: no account check for this request). Keyed
    /// `acct:sha256:<hex>`.
    pub fn per_account<F>(mut self, quota: Quota, account: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.config().per_account = Some((quota, Arc::new(account)));
        self
    }

    /// Where the connection's peer address comes from (by default a
    /// [`SocketAddr`](std::net::SocketAddr) in the request extensions; see the
    /// [module docs](super#client-ip) for axum's `ConnectInfo`).
    pub fn peer_ip<F>(mut self, peer_ip: F) -> Self
    where
        F: Fn(&Parts) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.config().client_ip.set_peer_ip(peer_ip);
        self
    }

    /// Trusts `X-Forwarded-For` on requests whose peer is one of `proxies`
    /// (none by default: the header is ignored). See the
    /// [module docs](super#client-ip).
    pub fn trust_forwarded_for<I>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = IpAddr>,
    {
        self.config().client_ip.set_trusted_proxies(proxies);
        self
    }

    /// Renders rejections with the default JSON rendering and this realm.
    pub fn realm(self, realm: &str) -> Self {
        self.renderer(JsonRejections::new(realm))
    }

    /// Renders rejections with `renderer`.
    pub fn renderer(mut self, renderer: impl RenderRejection) -> Self {
        self.config().renderer = Renderer::new(renderer);
        self
    }
}

impl Default for ThrottleLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ThrottleLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleLayer")
            .field("limiter", &self.config.limiter)
            .field("per_ip", &self.config.per_ip)
            .field(
                "per_account",
                &self.config.per_account.as_ref().map(|(q, _)| q),
            )
            .field("client_ip", &self.config.client_ip)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle::new(inner, self.config.clone())
    }
}
