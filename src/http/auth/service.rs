//! [`Auth`]: the service, and the authentication it runs per request.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::net::IpAddr;

use http::header::USER_AGENT;
use http::request::Parts;
use http::{Request, Response};
use tower::Service;

use super::failures::counts_as_failure;
use super::layer::AuthConfig;
use crate::http::credentials::{self, Credential, SourceSet};
use crate::http::future::{timeout_when_pending, Admitted, CheckFuture, ResponseFuture, State};
use crate::http::principal::{Anonymous, Identity, Principal};
use crate::http::rejection::{render_limited, Rejection, Renderer};
use crate::http::throttle::ClientNet;
use crate::key::TenantId;
use crate::keyring::LastUsedWrite;
use crate::ratelimit::{
    bounded_key, ceil_secs, short_key, LimitError, Quota, RateDecision, RateLimiter, MAX_KEY_LEN,
};
use crate::usage::{CreditSpend, IpAllowlist, UseContext};
use crate::VerifiedKey;
use crate::VerifyError;
use time::OffsetDateTime;

/// Authenticates requests, then calls the inner service with the
/// [`Principal`](crate::http::Principal) in the request extensions. Built by [`AuthLayer`](crate::http::AuthLayer).
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    config: Arc<AuthConfig>,
}

impl<S> Auth<S> {
    pub(super) fn new(inner: S, config: Arc<AuthConfig>) -> Self {
        Auth { inner, config }
    }

    inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
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
        let config = &self.config;
        let (mut parts, body) = req.into_parts();
        if config.custom_renderer {
            parts.extensions.insert(config.renderer.clone());
        } else if !parts.extensions.is_empty() {
            // The default, as if inserted: an outer layer's renderer does not
            // reach behind this one.
            parts.extensions.remove::<Renderer>();
        }
        if !parts.extensions.is_empty() {
            // This layer decides who the caller is: an outer layer's
            // principal must not pass a request this one lets through
            // anonymously (a kind or source it does not accept).
            parts.extensions.remove::<Principal>();
        }
        // Header checks are synchronous: refuse bad input before any lookup,
        // and an over-budget client before its credential costs anything.
        let presented = config.rules.extract(&parts.headers).and_then(|credential| {
            let tenant = credentials::tenant(&parts.headers, &config.tenant_header)?;
            let Some(credential) = credential else {
                return Ok(None);
            };
            // Every credentialed request: the failure throttle, client
            // tracking and allowlists read it.
            let peer = config.client_ip.client(&parts)?;
            let client = config.failure_client(peer, &credential)?;
            Ok(Some((
                credential,
                tenant,
                Client {
                    ip: peer,
                    net: client,
                },
            )))
        });
        let rejection = match presented {
            Err(rejection) => rejection,
            Ok(None) if !config.anonymous => Rejection::MissingCredentials {
                accepted: config.rules.accepted.to_string().into(),
            },
            Ok(presented) => {
                if presented.is_none() {
                    // Let through anonymously: a scope check behind says 401,
                    // not "misconfigured".
                    parts.extensions.insert(Anonymous {
                        accepted: config.rules.accepted.clone(),
                    });
                }
                let Some((credential, tenant, client)) = presented else {
                    // Called now, the service `poll_ready` readied: no
                    // clone (an axum route's clone is an allocation).
                    return ResponseFuture::new(State::Future {
                        future: self.inner.call(Request::from_parts(parts, body)),
                        decision: None,
                        credits: None,
                        soon_header: config.soon_header.clone(),
                    });
                };
                // Decided at once when nothing has to wait (an in-memory
                // store and limiter, no hooks, no credits): no boxed future.
                let check =
                    match config.authenticate_now(&credential, tenant.as_ref(), client, &parts) {
                        Some(Now::Admitted(principal, decision)) => {
                            parts.extensions.insert(principal);
                            if let Some(decision) = decision {
                                parts.extensions.insert(decision);
                            }
                            return ResponseFuture::new(State::Future {
                                future: self.inner.call(Request::from_parts(parts, body)),
                                decision,
                                credits: None,
                                soon_header: config.soon_header.clone(),
                            });
                        }
                        Some(Now::Refused(rejection, decision)) => {
                            let response = render_limited(&config.renderer, &rejection, decision);
                            return ResponseFuture::new(State::Rejected {
                                response: Some(response.map(ResBody::from)),
                            });
                        }
                        Some(Now::Resume(verified, write)) => {
                            let req = Request::from_parts(parts, body);
                            Box::pin(resume(config.clone(), verified, write, client, req))
                                as CheckFuture<_>
                        }
                        None => {
                            let req = Request::from_parts(parts, body);
                            Box::pin(authenticate(
                                config.clone(),
                                credential,
                                tenant,
                                client,
                                req,
                            ))
                        }
                    };
                // Called later: the clone may not be ready, so this request
                // keeps the ready service.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                return ResponseFuture::new(State::Checking {
                    check,
                    inner: Some(inner),
                    soon_header: config.soon_header.clone(),
                });
            }
        };
        let decision = match rejection {
            Rejection::RateLimited(decision) | Rejection::TooManyFailures(decision) => {
                Some(decision)
            }
            _ => None,
        };
        ResponseFuture::new(State::Rejected {
            response: Some(
                render_limited(&config.renderer, &rejection, decision).map(ResBody::from),
            ),
        })
    }
}

/// Who sent a credentialed request: its address (when known) and the
/// network its failures count against (when the failure throttle is on).
#[derive(Debug, Clone, Copy)]
pub(super) struct Client {
    ip: Option<IpAddr>,
    net: Option<ClientNet>,
}

/// What [`AuthConfig::authenticate_now`] decided without waiting.
pub(super) enum Now {
    /// Let through: the principal, and the rate decision if a limiter saw
    /// the request.
    Admitted(Principal, Option<RateDecision>),
    /// Refused, with the rate decision if a limiter saw the request.
    Refused(Rejection, Option<RateDecision>),
    /// Verified (its use recorded), the rest to run asynchronously
    /// ([`resume`]): after the last-used write, if one is due.
    Resume(Result<Principal, Rejection>, Option<LastUsedWrite>),
}

/// Verifies the credential, selects the tenant, checks the key's IP
/// allowlist, the rate limit, runs the hooks, spends the key's credits; on
/// success the request carries the principal (and the rate decision, if
/// checked). A failed verification spends one of `client`'s failures.
async fn authenticate<B>(
    config: Arc<AuthConfig>,
    credential: Credential,
    tenant: Option<TenantId>,
    client: Client,
    req: Request<B>,
) -> Result<Admitted<B>, Response<String>> {
    let verified = {
        let user_agent = config.user_agent(req.headers());
        let from = config.use_context(user_agent.as_deref(), client);
        config
            .principal_within_timeout(&credential, tenant.as_ref(), from)
            .await
    };
    drop(credential);
    resume(config, verified, None, client, req).await
}

/// The checks after verification: waits for the last-used write `write`
/// (within the verification timeout), refuses a failed verification
/// (spending one of `client`'s failures), then [`admit`].
async fn resume<B>(
    config: Arc<AuthConfig>,
    verified: Result<Principal, Rejection>,
    write: Option<LastUsedWrite>,
    client: Client,
    req: Request<B>,
) -> Result<Admitted<B>, Response<String>> {
    if let Some(write) = write {
        if timeout_when_pending(config.verify_timeout, write)
            .await
            .is_err()
        {
            tracing::warn!(target: "keyward::http", timeout = ?config.verify_timeout, "credential verification timed out");
            return Err(render_limited(
                &config.renderer,
                &Rejection::AuthUnavailable,
                None,
            ));
        }
    }
    let principal = match verified {
        Ok(principal) => principal,
        Err(rejection) => {
            config.record_failure(client.net, &rejection);
            return Err(render_limited(&config.renderer, &rejection, None));
        }
    };
    admit(&config, principal, client, req).await
}

/// The checks of a verified principal: the key's IP allowlist, the rate
/// limit, the hooks, the key's credits.
async fn admit<B>(
    config: &AuthConfig,
    principal: Principal,
    client: Client,
    req: Request<B>,
) -> Result<Admitted<B>, Response<String>> {
    let (mut parts, body) = req.into_parts();
    let mut decision = None;
    let mut credits = None;
    let outcome = async {
        config.check_key_ip(&principal, client)?;
        decision = config.rate_limit(&principal).await?;
        if let Some(denied) = decision.filter(|d| !d.allowed) {
            return Err(Rejection::RateLimited(denied));
        }
        for hook in &config.hooks {
            hook.after_authentication(&principal, &mut parts).await?;
        }
        if let Identity::Key(key) = principal.identity() {
            if key.is_metered() {
                credits = config.spend_credits(key, &parts).await?;
            }
        }
        Ok::<_, Rejection>(principal)
    }
    .await;
    match outcome {
        Ok(principal) => {
            parts.extensions.insert(principal);
            if let Some(decision) = decision {
                parts.extensions.insert(decision);
            }
            Ok((Request::from_parts(parts, body), decision, credits))
        }
        Err(rejection) => Err(render_limited(&config.renderer, &rejection, decision)),
    }
}

/// A decision a limiter made at once, as the layer answers it.
fn decided(result: Result<RateDecision, LimitError>) -> Result<Option<RateDecision>, Rejection> {
    result.map(Some).map_err(|err| Rejection::from(&err))
}

/// The principal of a verified key, refused when the request named
/// another tenant.
fn key_principal(key: VerifiedKey, tenant: Option<&TenantId>) -> Result<Principal, Rejection> {
    if tenant.is_some_and(|t| t != key.tenant()) {
        return Err(Rejection::TenantMismatch);
    }
    Ok(Principal::key(key))
}

/// `String::from_utf8_lossy`, with `str::from_utf8`'s fast check first:
/// a user agent is valid UTF-8 (ASCII) in the common case, and the lossy
/// walk costs several times the check on every request.
fn lossy_utf8(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

impl AuthConfig {
    /// [`authenticate`] without waiting, when it can be: `None`, having
    /// done nothing, when the credential's verification would wait (an
    /// external authenticator, a store that is not in memory, a revoked
    /// key's reuse check) or hooks must run; [`Now::Resume`] when
    /// verification was done but the rest waits (a due last-used write
    /// without a spawner, credits, a limiter that is not in memory).
    fn authenticate_now(
        &self,
        credential: &Credential,
        tenant: Option<&TenantId>,
        client: Client,
        parts: &Parts,
    ) -> Option<Now> {
        if !self.hooks.is_empty() {
            return None;
        }
        let user_agent = self.user_agent(&parts.headers);
        let from = self.use_context(user_agent.as_deref(), client);
        // One clock read for verification and the rate limit.
        let now = self.keyring.now();
        let (verified, write) = match self.principal_now(credential, tenant, from, now)? {
            Ok((principal, write)) => (Ok(principal), write),
            Err((rejection, write)) => (Err(rejection), write),
        };
        if write.is_some() {
            return Some(Now::Resume(verified, write));
        }
        let principal = match verified {
            Ok(principal) => principal,
            Err(rejection) => {
                self.record_failure(client.net, &rejection);
                return Some(Now::Refused(rejection, None));
            }
        };
        if let Identity::Key(key) = principal.identity() {
            if key.is_metered() {
                return Some(Now::Resume(Ok(principal), None));
            }
        }
        if let Err(rejection) = self.check_key_ip(&principal, client) {
            return Some(Now::Refused(rejection, None));
        }
        let decision = match self.rate_limit_now(&principal, now) {
            Some(Ok(decision)) => decision,
            Some(Err(rejection)) => return Some(Now::Refused(rejection, None)),
            None => return Some(Now::Resume(Ok(principal), None)),
        };
        match decision {
            Some(denied) if !denied.allowed => {
                Some(Now::Refused(Rejection::RateLimited(denied), Some(denied)))
            }
            _ => Some(Now::Admitted(principal, decision)),
        }
    }

    /// The request's user agent, when clients are tracked (the header is
    /// looked up only then).
    fn user_agent<'h>(&self, headers: &'h http::HeaderMap) -> Option<Cow<'h, str>> {
        self.track_clients
            .then(|| headers.get(USER_AGENT))
            .flatten()
            .map(|v| lossy_utf8(v.as_bytes()))
    }

    /// Where a credentialed request comes from, as the last-used record
    /// keeps it (when clients are tracked).
    fn use_context<'a>(&self, user_agent: Option<&'a str>, client: Client) -> UseContext<'a> {
        let mut from = UseContext::new();
        if self.track_clients {
            from.ip = client.ip;
            from.user_agent = user_agent;
        }
        from
    }

    /// Refuses a key presented from outside its IP allowlist, as a failed
    /// authentication of that client: a leaked key can not buy unlimited
    /// lookups.
    fn check_key_ip(&self, principal: &Principal, client: Client) -> Result<(), Rejection> {
        if let Identity::Key(key) = principal.identity() {
            if let Some(list) = key.allowed_ips() {
                self.check_allowlist(list, client.ip)
                    .inspect_err(|rejection| self.record_failure(client.net, rejection))?;
            }
        }
        Ok(())
    }

    /// The client whose failures a credentialed request counts against:
    /// `None` when the throttle is off or the peer unknown (then not
    /// throttled, see [`AuthLayer::failure_budget`](crate::http::AuthLayer::failure_budget)).
    /// A client over its budget is refused here, before the credential costs
    /// anything, unless the credential is a token whose keyed tag verifies
    /// (only the service's token key makes one): clients sharing an address
    /// with someone sending forged tokens keep working. Its failures still
    /// count.
    fn failure_client(
        &self,
        peer: Option<IpAddr>,
        credential: &Credential,
    ) -> Result<Option<ClientNet>, Rejection> {
        let Some(budget) = self.failure_budget else {
            return Ok(None);
        };
        let Some(ip) = peer else {
            self.failures.warn_unknown_peer();
            return Ok(None);
        };
        let client = ClientNet::of(ip);
        match self.failures.over_budget(client, budget) {
            Some(_) if self.is_tagged_token(credential.value()) => Ok(Some(client)),
            Some(denied) => Err(Rejection::TooManyFailures(denied)),
            None => Ok(Some(client)),
        }
    }

    /// Refuses a client outside the key's allowlist; an unknown client
    /// address is a deployment mistake, refused as unavailable (never let
    /// through).
    fn check_allowlist(&self, list: &IpAllowlist, ip: Option<IpAddr>) -> Result<(), Rejection> {
        match ip {
            Some(ip) if list.allows(ip) => Ok(()),
            Some(_) => Err(Rejection::IpNotAllowed),
            None => {
                tracing::error!(target: "keyward::http", "a key with an IP allowlist was presented but the client address is unknown: configure AuthLayer::peer_ip (axum: ConnectInfo); refusing");
                Err(Rejection::AuthUnavailable)
            }
        }
    }

    /// Spends the request's cost of a metered key's credits (within the
    /// verification timeout); the credits left, or the refusal.
    async fn spend_credits(
        &self,
        key: &crate::VerifiedKey,
        parts: &Parts,
    ) -> Result<Option<u64>, Rejection> {
        let cost = (self.credit_cost)(parts);
        if cost == 0 {
            return Ok(None);
        }
        let spend = self.keyring.spend_credits(key, cost);
        let spent = match tokio::time::timeout(self.verify_timeout, spend).await {
            Ok(Ok(spent)) => spent,
            Ok(Err(err)) => {
                tracing::error!(target: "keyward::http", error = &err as &dyn std::error::Error, key_id = %key.id(), "spending credits failed; refusing the request");
                return Err(Rejection::AuthUnavailable);
            }
            Err(_) => {
                tracing::warn!(target: "keyward::http", timeout = ?self.verify_timeout, "spending credits timed out");
                return Err(Rejection::AuthUnavailable);
            }
        };
        match spent {
            CreditSpend::Spent { remaining } => Ok(Some(remaining)),
            CreditSpend::Exhausted { remaining } => {
                let now = self.keyring.now();
                // Only a refill that covers the cost is worth waiting for.
                let retry_after = key
                    .credits()
                    .filter(|c| c.refill.is_some_and(|r| r.amount >= cost))
                    .and_then(|c| c.next_refill(now))
                    .map(|at| ceil_secs((at - now).unsigned_abs()).max(1));
                Err(Rejection::CreditsExhausted {
                    remaining,
                    retry_after,
                })
            }
            // Unmetered since it was read (credits removed): nothing to spend.
            CreditSpend::Unmetered => Ok(None),
        }
    }

    /// Spends one of `client`'s failures if `rejection` counts as one.
    fn record_failure(&self, client: Option<ClientNet>, rejection: &Rejection) {
        if let (Some(client), Some(budget)) = (client, self.failure_budget) {
            if counts_as_failure(rejection) {
                self.failures.record(client, budget);
            }
        }
    }

    /// [`principal`](Self::principal), refused as unavailable past the
    /// verification timeout (dropping the lookup cancels it).
    async fn principal_within_timeout(
        &self,
        credential: &Credential,
        tenant: Option<&TenantId>,
        from: UseContext<'_>,
    ) -> Result<Principal, Rejection> {
        let verify = self.principal(credential, tenant, from);
        timeout_when_pending(self.verify_timeout, verify)
            .await
            .unwrap_or_else(|_| {
                tracing::warn!(target: "keyward::http", timeout = ?self.verify_timeout, "credential verification timed out");
                Err(Rejection::AuthUnavailable)
            })
    }

    /// Counts the request against the principal's quota: the key's stored
    /// limit, or [`AuthLayer::external_quota`](crate::http::AuthLayer::external_quota).
    /// `None` when nothing was checked.
    async fn rate_limit(&self, principal: &Principal) -> Result<Option<RateDecision>, Rejection> {
        if let Some(decided) = self.rate_limit_now(principal, self.keyring.now()) {
            return decided;
        }
        let Some((limiter, key, quota)) = self.limit_of(principal) else {
            return Ok(None);
        };
        match limiter.check(&key, quota).await {
            Ok(decision) => Ok(Some(decision)),
            Err(err) => Err(Rejection::from(&err)),
        }
    }

    /// [`rate_limit`](Self::rate_limit) without waiting: `None`, having
    /// counted nothing, when the limiter must be asked through a future.
    /// `now` is the instant verification read: the layer's own limiter
    /// (on the keyring's clock) steps at it, another reads its own clock.
    fn rate_limit_now(
        &self,
        principal: &Principal,
        now: OffsetDateTime,
    ) -> Option<Result<Option<RateDecision>, Rejection>> {
        let Some(limiter) = &self.limiter else {
            return Some(Ok(None));
        };
        let (kind, id, quota) = self.quota_of(principal);
        let Some(quota) = quota else {
            return Some(Ok(None));
        };
        if let Identity::Key(key) = principal.identity() {
            if key.budget().is_some() {
                return self
                    .limit_of(principal)
                    .and_then(|(limiter, key, quota)| limiter.check_now(&key, quota).map(decided));
            }
        }
        // The common case: the limiter key on the stack.
        let mut buf = [0u8; MAX_KEY_LEN];
        let long;
        let key = match short_key(&mut buf, kind, id) {
            Some(key) => key,
            None => {
                long = bounded_key(kind, id);
                &long
            }
        };
        match &self.own_limiter {
            Some(own) => Some(decided(own.check_at(key, quota, now))),
            None => limiter.check_now(key, quota).map(decided),
        }
    }

    /// The principal's limiter key kind, id and quota (`None`: unlimited).
    fn quota_of<'p>(&self, principal: &'p Principal) -> (&'static str, &'p str, Option<Quota>) {
        match principal.identity() {
            Identity::Key(key) => (
                "key",
                key.id().as_str(),
                Quota::from_rate_limit(key.rate_limit()),
            ),
            Identity::External(external) => ("ext", external.subject(), self.external_quota),
        }
    }

    /// The limiter, the limiter key and the quota of the principal; `None`
    /// when nothing is to be checked. The quota first: an unlimited key
    /// formats no limiter key.
    fn limit_of(&self, principal: &Principal) -> Option<(&dyn RateLimiter, String, Quota)> {
        let limiter = self.limiter.as_deref()?;
        let (kind, id, quota) = self.quota_of(principal);
        let quota = quota?;
        let key = match principal.identity() {
            // A shared budget is the tenant's: labels hold no control
            // characters, so the separator keeps (tenant, budget) pairs apart.
            Identity::Key(key) => match key.budget() {
                Some(budget) => bounded_key("budget", &format!("{}\u{1f}{budget}", key.tenant())),
                None => bounded_key(kind, id),
            },
            Identity::External(_) => bounded_key(kind, id),
        };
        Some((limiter, key, quota))
    }

    async fn principal(
        &self,
        credential: &Credential,
        tenant: Option<&TenantId>,
        from: UseContext<'_>,
    ) -> Result<Principal, Rejection> {
        self.check_kind(credential)?;
        let value = credential.value();
        match &self.external {
            Some(external) if self.is_external(credential) => {
                let principal = external
                    .authenticate(value)
                    .await
                    .map_err(|e| Rejection::from(&e))?;
                let tenant = match tenant {
                    Some(t) if principal.tenants().contains(t) => t.clone(),
                    Some(_) => return Err(Rejection::TenantMismatch),
                    None => match principal.tenants() {
                        [only] => only.clone(),
                        [] => return Err(Rejection::TenantMismatch),
                        _ => return Err(Rejection::TenantRequired),
                    },
                };
                Ok(Principal::external(principal, tenant))
            }
            _ => {
                let key = self
                    .keyring
                    .verify_with(value, from)
                    .await
                    .map_err(|e| Rejection::from(&e))?;
                key_principal(key, tenant)
            }
        }
    }

    /// [`principal`](Self::principal) without waiting (see
    /// [`Keyring::verify_now`](crate::Keyring)): the outcome and the
    /// last-used write to await before answering, or `None`, having done
    /// nothing, for a credential the external authenticator checks or a
    /// verification that would wait.
    #[allow(clippy::type_complexity)]
    fn principal_now(
        &self,
        credential: &Credential,
        tenant: Option<&TenantId>,
        from: UseContext<'_>,
        now: OffsetDateTime,
    ) -> Option<Result<(Principal, Option<LastUsedWrite>), (Rejection, Option<LastUsedWrite>)>>
    {
        let value = credential.value();
        // Only with an authenticator: its sources are none without one. A
        // value it checks is no token of the keyring's kinds, so
        // `check_kind` passes it.
        if self.is_external(credential) {
            return None;
        }
        // Parsed once, for the kind check and verification: a token that
        // parses is of the kind its prefix names. One that does not is
        // `invalid_token`, whichever source it came from (as `check_kind`
        // would have it).
        let parsed = match self.keyring.format().parse(value) {
            Ok(parsed) => parsed,
            Err(err) => return Some(Err((Rejection::from(&VerifyError::from(err)), None))),
        };
        if let Err(rejection) = self.check_source(parsed.kind().prefix(), credential) {
            return Some(Err((rejection, None)));
        }
        Some(match self.keyring.verify_now(&parsed, &from, now)? {
            Ok((key, write)) => match key_principal(key, tenant) {
                Ok(principal) => Ok((principal, write)),
                Err(rejection) => Err((rejection, write)),
            },
            Err(err) => Err((Rejection::from(&err), None)),
        })
    }

    /// Whether the external authenticator (if any) checks `credential`: it
    /// came from one of its sources and is not a token of the keyring.
    fn is_external(&self, credential: &Credential) -> bool {
        credential.from.intersects(self.external_set) && !self.is_keyward_token(credential.value())
    }

    /// Refuses a token of a kind of the keyring that this layer does not
    /// accept, or accepts from other sources: offline, before any lookup or
    /// quota. Values of no kind pass on (to the external authenticator, or
    /// to verification, which refuses them offline).
    fn check_kind(&self, credential: &Credential) -> Result<(), Rejection> {
        let value = credential.value();
        // The body has no `_`: the prefix is what precedes the last one
        // (a byte search: `rsplit_once`'s char searcher costs more).
        let Some(split) = value.bytes().rposition(|b| b == b'_') else {
            return Ok(());
        };
        let prefix = &value[..split];
        if self.keyring.kind(prefix).is_none() {
            return Ok(());
        }
        self.check_source(prefix, credential)
    }

    /// Refuses a token of the keyring's kind `prefix` that this layer does
    /// not accept from the sources `credential` came from.
    fn check_source(&self, prefix: &str, credential: &Credential) -> Result<(), Rejection> {
        let allowed = match &self.kind_sets {
            None => self.default_set,
            Some(kinds) => kinds
                .iter()
                .find(|(p, _)| p == prefix)
                .map_or(SourceSet::default(), |(_, set)| *set),
        };
        if credential.from.intersects(allowed) {
            Ok(())
        } else {
            Err(Rejection::InvalidToken)
        }
    }

    /// Whether `value` is a token of a keyed kind whose tag verifies
    /// (offline: no hashing of the whole token, no lookup).
    fn is_tagged_token(&self, value: &str) -> bool {
        self.keyring
            .format()
            .parse(value)
            .is_ok_and(|parsed| parsed.is_tagged())
    }

    /// Whether `value` starts with `<prefix>_` of a configured kind.
    fn is_keyward_token(&self, value: &str) -> bool {
        self.keyring.kinds().any(|kind| {
            value
                .strip_prefix(kind.token_kind().prefix())
                .is_some_and(|rest| rest.starts_with('_'))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::header::WWW_AUTHENTICATE;
    use http::{Request, Response, StatusCode};
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    use crate::http::{AuthLayer, RequireScopesLayer};
    use crate::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog, ScopeStatus};

    /// A service that is never ready.
    #[derive(Debug, Clone)]
    struct Busy;

    impl tower::Service<Request<String>> for Busy {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Pending
        }

        fn call(&mut self, _: Request<String>) -> Self::Future {
            std::future::ready(Ok(Response::new(String::new())))
        }
    }

    /// The layer is ready when its inner service is, not before; its
    /// `Debug` names it and its inner service, nothing of the keyring.
    #[test]
    fn readiness_and_debug_are_the_inner_services() {
        use tower::{Layer, Service};
        let keyring = Keyring::builder()
            .store(MemoryStore::new())
            .kind(KeyKind::new("pk", ScopeCatalog::builder().build().unwrap()).unwrap())
            .build()
            .unwrap();
        let mut auth = AuthLayer::new(keyring).layer(Busy);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(auth.poll_ready(&mut cx).is_pending());
        assert_eq!(format!("{auth:?}"), "Auth { inner: Busy, .. }");
    }

    /// The realm of the scope layer's 403 behind `outer` then `inner`.
    async fn realm_behind(outer: Option<&str>, inner: Option<&str>) -> String {
        let catalog = ScopeCatalog::builder()
            .scope("read", "", ScopeStatus::Enforced)
            .scope("write", "", ScopeStatus::Enforced)
            .build()
            .unwrap();
        let keyring = Keyring::builder()
            .store(MemoryStore::new())
            .kind(KeyKind::new("pk", catalog).unwrap())
            .build()
            .unwrap();
        let issued = keyring
            .issue(NewKey::new("pk", "t1", "test").scopes(["read"]))
            .await
            .unwrap();
        let layer = |realm: Option<&str>| match realm {
            Some(realm) => AuthLayer::new(keyring.clone()).realm(realm),
            None => AuthLayer::new(keyring.clone()),
        };
        let ok = service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
        let service = ServiceBuilder::new()
            .layer(layer(outer))
            .layer(layer(inner))
            .layer(RequireScopesLayer::all(["write"]).unwrap())
            .service(ok);
        let req = Request::get("/")
            .header("x-api-key", issued.token.expose_secret())
            .body(String::new())
            .unwrap();
        let res = service.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let challenge = res.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        let realm = challenge.split('"').nth(1).unwrap();
        realm.to_owned()
    }

    /// The scope layer renders with the innermost authentication layer's
    /// renderer, the default one included (which is not inserted).
    #[tokio::test]
    async fn the_innermost_layer_renderer_wins() {
        assert_eq!(realm_behind(None, None).await, "api");
        assert_eq!(realm_behind(None, Some("inner")).await, "inner");
        assert_eq!(realm_behind(Some("outer"), Some("inner")).await, "inner");
        assert_eq!(realm_behind(Some("outer"), None).await, "api");
    }
}
