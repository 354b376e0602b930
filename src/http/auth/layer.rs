//! [`AuthLayer`]: the configuration of [`Auth`].

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::request::Parts;
use tower::Layer;

use super::failures::Failures;
use super::{Auth, AuthHook};
use crate::error::ConfigError;
use crate::http::credentials::{
    CredentialRules, Source, SourceSet, DEFAULT_MAX_CREDENTIAL_LEN, MAX_SOURCES, TENANT_HEADER,
};
use crate::http::external::ExternalAuthenticator;
use crate::http::rejection::{JsonRejections, RenderRejection, Renderer};
use crate::http::throttle::ClientIp;
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
    /// The sources of kinds without their own ([`AuthLayer::credentials`]).
    default_sources: Vec<Source>,
    /// `Some`: only these kinds, each from its sources ([`AuthLayer::accept`]).
    kind_sources: Option<Vec<(String, Vec<Source>)>>,
    max_len: usize,
    /// Built from the three fields above by [`AuthConfig::plan`].
    pub(super) rules: CredentialRules,
    pub(super) default_set: SourceSet,
    pub(super) kind_sets: Option<Vec<(String, SourceSet)>>,
    pub(super) external_set: SourceSet,
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
    /// `limiter` when it is the layer's own (on the keyring's clock): then
    /// the layer hands it the instant verification read, one clock read
    /// per request instead of two.
    pub(super) own_limiter: Option<Arc<MemoryRateLimiter>>,
    pub(super) external_quota: Option<Quota>,
    /// Who the client is, for the failure throttle.
    pub(super) client_ip: ClientIp,
    /// `None`: the failure throttle is off.
    pub(super) failure_budget: Option<Quota>,
    /// Shared by clones of the layer, whatever the budget.
    pub(super) failures: Arc<Failures>,
    /// [`AuthLayer::soon_scopes_header`].
    pub(super) soon_header: Option<HeaderName>,
    /// [`AuthLayer::track_clients`].
    pub(super) track_clients: bool,
    /// [`AuthLayer::credit_cost`].
    pub(super) credit_cost: CreditCost,
}

/// What a request costs in credits.
pub(super) type CreditCost = Arc<dyn Fn(&Parts) -> u64 + Send + Sync>;

impl AuthConfig {
    /// Rebuilds the credential rules from the sources of the layer, its
    /// kinds and its external authenticator. At most [`MAX_SOURCES`]
    /// distinct sources: more are never read.
    fn plan(&mut self) {
        let mut rules = CredentialRules::new(&[], self.max_len);
        match &self.kind_sources {
            None => {
                self.default_set = rules.set_of(&self.default_sources);
                self.kind_sets = None;
            }
            Some(kinds) => {
                self.default_set = SourceSet::default();
                self.kind_sets = Some(
                    kinds
                        .iter()
                        .map(|(prefix, sources)| (prefix.clone(), rules.set_of(sources)))
                        .collect(),
                );
            }
        }
        self.external_set = if self.external.is_some() {
            rules.set_of(&[Source::bearer()])
        } else {
            SourceSet::default()
        };
        self.rules = rules;
    }
}

impl AuthLayer {
    /// How long verifying a credential may take by default: 5 s.
    pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

    /// The failed authentications a client may have by default: 20 in a
    /// burst, then one every 3 s (20 a minute). See
    /// [`failure_budget`](Self::failure_budget).
    ///
    /// ```
    /// use keyward::http::AuthLayer;
    /// use std::time::Duration;
    ///
    /// assert_eq!(AuthLayer::DEFAULT_FAILURE_BUDGET.count(), 20);
    /// assert_eq!(AuthLayer::DEFAULT_FAILURE_BUDGET.emission_interval(), Duration::from_secs(3));
    /// ```
    pub const DEFAULT_FAILURE_BUDGET: Quota = match Quota::per_minute(20) {
        Some(quota) => quota,
        None => panic!("20 is not zero"),
    };

    /// Verifies credentials with `keyring`: `X-Api-Key` and `Authorization:
    /// Bearer` both accepted, tenant header `X-Property-Id`, no anonymous
    /// requests, JSON rejections with realm `"api"`, each key's
    /// [`RateLimit`](crate::RateLimit) enforced by an in-process
    /// [`MemoryRateLimiter`] on the keyring's clock (see
    /// [`AuthLayer::rate_limiter`]), and failed authentications throttled
    /// per client with [`DEFAULT_FAILURE_BUDGET`](Self::DEFAULT_FAILURE_BUDGET)
    /// (see [`AuthLayer::failure_budget`]).
    pub fn new(keyring: Keyring) -> Self {
        let limiter = Arc::new(
            MemoryRateLimiter::builder()
                .shared_clock(keyring.clock())
                .build(),
        );
        AuthLayer {
            config: Arc::new(AuthConfig {
                limiter: Some(limiter.clone()),
                own_limiter: Some(limiter),
                external_quota: None,
                client_ip: ClientIp::default(),
                failure_budget: Some(Self::DEFAULT_FAILURE_BUDGET),
                failures: Arc::new(Failures::new(keyring.clock())),
                keyring,
                default_sources: vec![Source::api_key(), Source::bearer()],
                kind_sources: None,
                max_len: DEFAULT_MAX_CREDENTIAL_LEN,
                rules: CredentialRules::default(),
                default_set: SourceSet::ALL,
                kind_sets: None,
                external_set: SourceSet::default(),
                tenant_header: HeaderName::from_static(TENANT_HEADER),
                anonymous: false,
                external: None,
                hooks: Vec::new(),
                renderer: Renderer::default(),
                custom_renderer: false,
                verify_timeout: Self::DEFAULT_VERIFY_TIMEOUT,
                soon_header: None,
                track_clients: true,
                credit_cost: Arc::new(|_: &Parts| 1),
            }),
        }
    }

    fn config(&mut self) -> &mut AuthConfig {
        Arc::make_mut(&mut self.config)
    }

    /// The sources of credentials, for every kind not given its own with
    /// [`accept`](Self::accept): `X-Api-Key` and `Authorization: Bearer`
    /// by default. A request presenting different credentials in two
    /// sources is refused (400 `invalid_request`).
    ///
    /// ```
    /// use keyward::http::{AuthLayer, Source};
    /// # fn layer(keyring: keyward::Keyring) -> AuthLayer {
    /// // Only `X-Api-Key`; `Authorization` is still checked, never read.
    /// AuthLayer::new(keyring).credentials([Source::api_key()])
    /// # }
    /// ```
    pub fn credentials(mut self, sources: impl IntoIterator<Item = Source>) -> Self {
        let config = self.config();
        config.default_sources = sources.into_iter().take(MAX_SOURCES).collect();
        config.plan();
        self
    }

    /// Accepts tokens of kind `prefix` from `sources` only. The first call
    /// restricts the layer to the kinds named this way: a token of another
    /// kind of the keyring, or of an accepted kind in another source, is
    /// refused with 401 `invalid_token` before any store lookup and before
    /// the rate limit (it spends no quota). Bearer values without a
    /// keyward prefix still go to the [`external`](Self::external)
    /// authenticator, if any. A layer reads at most 64 distinct sources
    /// over all its kinds (the external authenticator's Bearer included):
    /// sources past them are never read.
    ///
    /// ```
    /// use keyward::http::{AuthLayer, Source};
    /// # fn layers(keyring: keyward::Keyring) -> Result<(AuthLayer, AuthLayer), keyward::ConfigError> {
    /// // One keyring, two products: `pk` keys in X-Api-Key on one router,
    /// // `pl` tokens as Bearer on the other.
    /// let players = AuthLayer::new(keyring.clone()).accept("pk", [Source::api_key()])?;
    /// let games = AuthLayer::new(keyring).accept("pl", [Source::bearer()])?;
    /// # Ok((players, games)) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownKind`] when the keyring has no kind `prefix`,
    /// [`ConfigError::NoSources`] when `sources` is empty.
    pub fn accept(
        mut self,
        prefix: &str,
        sources: impl IntoIterator<Item = Source>,
    ) -> Result<Self, ConfigError> {
        let config = self.config();
        if config.keyring.kind(prefix).is_none() {
            return Err(ConfigError::UnknownKind(prefix.to_owned()));
        }
        let sources: Vec<Source> = sources.into_iter().take(MAX_SOURCES).collect();
        if sources.is_empty() {
            return Err(ConfigError::NoSources);
        }
        let kinds = config.kind_sources.get_or_insert_with(Vec::new);
        kinds.retain(|(p, _)| p != prefix);
        kinds.push((prefix.to_owned(), sources));
        config.plan();
        Ok(self)
    }

    /// Lists, on each response, the "soon" scopes the caller lacks: the
    /// requirements that let the request through only because a scope is
    /// not enforced yet, so integrators see what will break before it is.
    /// Off by default; [`SOON_SCOPES_HEADER`](crate::http::SOON_SCOPES_HEADER)
    /// (`X-Soon-Scopes-Missing`) is the usual name. The value is the scope
    /// names, space separated (`games:read exports:read`); the header is
    /// absent when nothing is missing (one the handler set is removed).
    ///
    /// The list comes from the [`WouldDeny`](crate::http::WouldDeny) the scope
    /// layers put into the *response* extensions (also there for your own
    /// router-wide middleware, header or not); a handler's own response
    /// extensions are kept.
    ///
    /// ```
    /// use http::HeaderName;
    /// use keyward::http::{AuthLayer, SOON_SCOPES_HEADER};
    /// # fn layer(keyring: keyward::Keyring) -> AuthLayer {
    /// AuthLayer::new(keyring).soon_scopes_header(HeaderName::from_static(SOON_SCOPES_HEADER))
    /// # }
    /// ```
    pub fn soon_scopes_header(mut self, name: HeaderName) -> Self {
        self.config().soon_header = Some(name);
        self
    }

    /// Accepts no token of the keyring's kinds: for routes only the
    /// [`external`](Self::external) authenticator's principals may use (a
    /// dashboard's sessions or JWTs). A keyward token is 401
    /// `invalid_token`, before any lookup and before the rate limit. A later
    /// [`accept`](Self::accept) adds its kind.
    ///
    /// ```
    /// use keyward::http::AuthLayer;
    /// # fn layer(keyring: keyward::Keyring, sessions: impl keyward::http::ExternalAuthenticator) -> AuthLayer {
    /// AuthLayer::new(keyring).accept_no_kinds().external(sessions)
    /// # }
    /// ```
    pub fn accept_no_kinds(mut self) -> Self {
        let config = self.config();
        config.kind_sources = Some(Vec::new());
        config.plan();
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
        let config = self.config();
        config.max_len = max;
        config.plan();
        self
    }

    /// Lets requests without any credentials through, without a
    /// [`Principal`](crate::http::Principal). Requests with bad credentials are still refused.
    pub fn allow_anonymous(mut self, allow: bool) -> Self {
        self.config().anonymous = allow;
        self
    }

    /// Sends bearer values that are not keyward tokens to `authenticator`.
    /// Bearer values are read for it whatever the sources of the kinds.
    pub fn external(mut self, authenticator: impl ExternalAuthenticator) -> Self {
        let config = self.config();
        config.external = Some(Arc::new(authenticator));
        config.plan();
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
    /// The limit runs from the first time the verification waits (on the
    /// store, or the authenticator); a verification that completes at once
    /// (an in-memory store, a fresh [`CachedStore`](crate::store::CachedStore)
    /// entry) never starts a timer. The timer is tokio's: the service must
    /// run inside a tokio runtime with its time driver enabled (as
    /// `#[tokio::main]`, axum and hyper servers do). Elsewhere, a
    /// verification that waits panics (and never reaches the inner
    /// service).
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
        let config = self.config();
        config.limiter = Some(Arc::new(limiter));
        config.own_limiter = None;
        self
    }

    /// Turns per-key rate limits off: no check, no headers. For hosts that
    /// limit elsewhere (a gateway).
    pub fn without_rate_limits(mut self) -> Self {
        let config = self.config();
        config.limiter = None;
        config.own_limiter = None;
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

    /// How many failed authentications a client may have:
    /// [`DEFAULT_FAILURE_BUDGET`](Self::DEFAULT_FAILURE_BUDGET) (20 in a
    /// burst, then 20 a minute) unless set here. A client over its budget
    /// gets 429 `rate_limited` (with `Retry-After`, `RateLimit-Policy` and
    /// `RateLimit`, as every 429) **before** its credential costs anything:
    /// after the header checks, before the token is parsed, hashed or
    /// looked up, and before an [`ExternalAuthenticator`] sees it. That
    /// bounds the store lookups of forged tokens from one client to its
    /// budget.
    ///
    /// * **What counts:** a credential that fails to authenticate the
    ///   caller for the request: 401 `invalid_token` (malformed, bad
    ///   checksum or tag, unknown), `token_expired`, `token_revoked`, from
    ///   the keyring or the [`ExternalAuthenticator`] alike (a guessed
    ///   session token is a guess too), 403 `tenant_mismatch` and 403
    ///   `ip_not_allowed` (they cost a lookup, and no key's rate limit is
    ///   charged for them: a leaked key used from outside its allowlist
    ///   buys no unlimited lookups). Not counted: a
    ///   success, header errors (400, refused before any lookup), missing
    ///   credentials, `tenant_required`, 503s (a store outage is ours, not
    ///   the client's), a key's own 429, and rejections by [`AuthHook`]s or
    ///   scope layers.
    /// * **Who a client is:** the connection's peer, IPv6 addresses by their
    ///   /64, with `X-Forwarded-For` read only from
    ///   [`trusted proxies`](Self::trust_forwarded_for): the rules of
    ///   [`ThrottleLayer`](crate::http::ThrottleLayer), see
    ///   [`throttle`](crate::http::throttle#client-ip). A malformed
    ///   `X-Forwarded-For` from a trusted proxy is 400 `invalid_request`.
    /// * **Peer unknown:** the peer comes from a [`SocketAddr`](std::net::SocketAddr)
    ///   in the request extensions unless [`peer_ip`](Self::peer_ip) says
    ///   otherwise; axum puts `ConnectInfo<SocketAddr>` there instead, so
    ///   set `peer_ip` with axum. A request whose peer is unknown is not
    ///   throttled (a host that never provides one keeps working: one
    ///   shared budget would let any client lock every client out), and the
    ///   layer logs a warning once. The client cannot choose this: a peer is
    ///   known or not by how the host serves. To give all such requests one
    ///   shared budget instead, return a fixed address from `peer_ip`.
    /// * **Cost:** a request whose client has no failure on record pays a
    ///   hash and a lookup in an uncontended shard (no allocation, no clock
    ///   read; about 45 ns with reading the client address). Failures are tracked per client network (a few MB at most:
    ///   100 000 networks; clients back to a full budget are dropped first),
    ///   on the keyring's clock, shared by clones of the layer.
    /// * **Concurrency:** concurrent requests of one client that all pass
    ///   the check before the first of them fails each make their lookup, so
    ///   a client can exceed its budget by its number of requests in flight;
    ///   bound connections per server (the example server does).
    ///
    /// Per-client budgets bound each network, not a botnet: pair this with a
    /// token key, which refuses forged tokens without any lookup.
    ///
    /// ```
    /// use keyward::http::AuthLayer;
    /// use keyward::ratelimit::Quota;
    /// use std::net::{IpAddr, Ipv4Addr};
    ///
    /// # fn layer(keyring: keyward::Keyring) -> AuthLayer {
    /// // 10 failures in a burst, then 10 an hour; behind one proxy at 10.0.0.1.
    /// AuthLayer::new(keyring)
    ///     .failure_budget(Quota::per_hour(10).unwrap())
    ///     .trust_forwarded_for([IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))])
    /// # }
    /// ```
    ///
    /// [`ExternalAuthenticator`]: crate::http::ExternalAuthenticator
    pub fn failure_budget(mut self, budget: Quota) -> Self {
        self.config().failure_budget = Some(budget);
        self
    }

    /// What a request costs a metered key, in [credits](crate::usage::Credits):
    /// 1 by default. The closure sees the request head (method, path,
    /// headers), so one layer can price routes differently; a cost of 0
    /// spends nothing and is not refused for want of credits. Keys without
    /// credits never call it.
    ///
    /// ```
    /// use keyward::http::AuthLayer;
    /// # fn layer(keyring: keyward::Keyring) -> AuthLayer {
    /// // Renders cost 10, everything else 1, health checks nothing.
    /// AuthLayer::new(keyring).credit_cost(|parts| match parts.uri.path() {
    ///     p if p.starts_with("/renders") => 10,
    ///     "/health" => 0,
    ///     _ => 1,
    /// })
    /// # }
    /// ```
    pub fn credit_cost<F>(mut self, cost: F) -> Self
    where
        F: Fn(&Parts) -> u64 + Send + Sync + 'static,
    {
        self.config().credit_cost = Arc::new(cost);
        self
    }

    /// Whether each verification notes the client address and `User-Agent`
    /// for the key's [recent IPs and last user agent](crate::KeyInfo::recent_ips)
    /// (in the batched last-used write, no write of its own): on by
    /// default. Turn it off where client addresses must not be kept.
    pub fn track_clients(mut self, track: bool) -> Self {
        self.config().track_clients = track;
        self
    }

    /// Turns the failed-authentication throttle off: failures are not
    /// counted, and no client is refused for them. For hosts that throttle
    /// failures elsewhere.
    pub fn without_failure_throttle(mut self) -> Self {
        self.config().failure_budget = None;
        self
    }

    /// The failure budget in force: `None` when the throttle is off.
    #[must_use]
    pub fn current_failure_budget(&self) -> Option<Quota> {
        self.config.failure_budget
    }

    /// Where the connection's peer address comes from, for the failure
    /// throttle, keys' [IP allowlists](crate::usage::IpAllowlist) and the
    /// recent IPs of keys (by default a [`SocketAddr`](std::net::SocketAddr) in the
    /// request extensions). With axum, which inserts
    /// `ConnectInfo<SocketAddr>` when served with
    /// `into_make_service_with_connect_info::<SocketAddr>()`:
    ///
    /// ```
    /// use axum::extract::ConnectInfo;
    /// use keyward::http::AuthLayer;
    /// use std::net::SocketAddr;
    ///
    /// # fn layer(keyring: keyward::Keyring) -> AuthLayer {
    /// AuthLayer::new(keyring).peer_ip(|parts| {
    ///     parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
    /// })
    /// # }
    /// ```
    pub fn peer_ip<F>(mut self, peer_ip: F) -> Self
    where
        F: Fn(&Parts) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.config().client_ip.set_peer_ip(peer_ip);
        self
    }

    /// Trusts `X-Forwarded-For` on requests whose peer is one of `proxies`
    /// (none by default: the header is ignored), for the failure throttle,
    /// keys' IP allowlists and recent IPs; the client is the right-most
    /// address that is not a trusted proxy.
    /// See [`throttle`](crate::http::throttle#client-ip).
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
            .field("failure_budget", &self.config.failure_budget)
            .field("client_ip", &self.config.client_ip)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth::new(inner, self.config.clone())
    }
}
