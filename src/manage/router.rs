//! [`ManageRouter`]: the builder, the handlers and their responses.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::StatusCode;
use serde::Serialize;

use super::input::{self, ControlsBody, CreateBody, Empty, RotateBody};
use super::policy::{ManagePolicy, ScopePolicy, Verdict};
use crate::clock::span;
use crate::error::{ConfigError, IssueError, ManageError};
use crate::http::errors::respond;
use crate::http::principal::Anonymous;
use crate::http::rejection::{Rejection, Renderer};
use crate::http::Principal;
use crate::key::{Expiry, KeyId, KeyInfo, KeyRecord, NewKey, RateLimit};
use crate::keyring::{KeyKind, Keyring};
use crate::page::{ListQuery, DEFAULT_PAGE_LIMIT};
use crate::scope::ScopeSet;
use crate::usage::{BudgetId, ControlsUpdate, CreditsChange, IpAllowlist, MAX_CREDITS};

/// The largest body the router reads by default: 16 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024;

/// The longest rotation grace a request may ask for: 30 days.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How far ahead an explicit `expires_at` may lie by default: 5 years (the
/// presets go to a year; `never` is always allowed).
pub const DEFAULT_MAX_EXPIRY: Duration = Duration::from_secs(5 * 365 * 24 * 60 * 60);

/// The highest `rate_limit` (requests a minute) a request may set by
/// default.
pub const DEFAULT_MAX_RATE_LIMIT: u32 = 100_000;

/// Builds the key-management router: see the [module docs](super).
#[derive(Clone)]
#[must_use]
#[non_exhaustive]
pub struct ManageRouter {
    keyring: Keyring,
    /// Managed kinds' prefixes, the default first; empty: every kind.
    kinds: Vec<String>,
    policy: Arc<dyn ManagePolicy>,
    body_limit: usize,
    max_expiry: Duration,
    max_rate_limit: u32,
    billing: bool,
}

impl fmt::Debug for ManageRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManageRouter")
            .field("kinds", &self.kinds)
            .field("body_limit", &self.body_limit)
            .field("max_expiry", &self.max_expiry)
            .field("max_rate_limit", &self.max_rate_limit)
            .field("billing_controls", &self.billing)
            .finish_non_exhaustive()
    }
}

impl ManageRouter {
    /// Manages every kind of `keyring` (the first configured is the
    /// default) with [`ScopePolicy::default`] (`keys:manage` on a key of the
    /// same kind), bodies up to [`DEFAULT_BODY_LIMIT`], explicit expiries up
    /// to [`DEFAULT_MAX_EXPIRY`] ahead, rate limits up to
    /// [`DEFAULT_MAX_RATE_LIMIT`].
    pub fn new(keyring: Keyring) -> Self {
        ManageRouter {
            keyring,
            kinds: Vec::new(),
            policy: Arc::new(ScopePolicy::default()),
            body_limit: DEFAULT_BODY_LIMIT,
            max_expiry: DEFAULT_MAX_EXPIRY,
            max_rate_limit: DEFAULT_MAX_RATE_LIMIT,
            billing: false,
        }
    }

    /// Whether callers may set keys' credits and shared budgets (`credits`,
    /// `add_credits`, `budget`, and `rate_limit` on a key of a budget):
    /// off by default, since those are usually the provider's billing
    /// decisions, not the tenant's; a request naming them is then 403
    /// `billing_not_managed`. Note that a caller who may create keys can
    /// create them without credits or a budget: to meter a tenant whose
    /// staff manage their own keys, give them a [`ManagePolicy`] that
    /// refuses creation, and issue their keys with your own code. Turn it on for a
    /// router only the provider's staff reach. Allowlists and rate limits
    /// (up to [`max_rate_limit`](Self::max_rate_limit)) are always
    /// managed.
    pub fn billing_controls(mut self, allow: bool) -> Self {
        self.billing = allow;
        self
    }

    /// Manages keys of this kind (prefix). Called once or more, the router
    /// manages only the kinds named, and the first is the default; keys of
    /// other kinds are not found through it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownKind`] for a prefix the keyring lacks.
    pub fn kind(mut self, prefix: &str) -> Result<Self, ConfigError> {
        if self.keyring.kind(prefix).is_none() {
            return Err(ConfigError::UnknownKind(prefix.to_owned()));
        }
        if !self.kinds.iter().any(|k| k == prefix) {
            self.kinds.push(prefix.to_owned());
        }
        Ok(self)
    }

    /// Who may manage keys and what they may grant.
    pub fn policy(mut self, policy: impl ManagePolicy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// The largest request body read, in bytes (16 KiB by default); a
    /// larger one is 413 `payload_too_large`.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How far ahead an explicit `expires_at` may lie (5 years by default).
    pub fn max_expiry(mut self, max: Duration) -> Self {
        self.max_expiry = max;
        self
    }

    /// The highest rate limit a request may set, in requests a minute
    /// (100 000 by default).
    pub fn max_rate_limit(mut self, per_minute: u32) -> Self {
        self.max_rate_limit = per_minute;
        self
    }

    /// The router, for any host state: `.nest("/api/tokens", router)`.
    pub fn into_router<S>(self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let kinds: Vec<Arc<KeyKind>> = if self.kinds.is_empty() {
            self.keyring.kinds().cloned().map(Arc::new).collect()
        } else {
            self.kinds
                .iter()
                .filter_map(|k| self.keyring.kind(k).cloned().map(Arc::new))
                .collect()
        };
        let manager = Arc::new(Manager {
            keyring: self.keyring,
            kinds,
            policy: self.policy,
            body_limit: self.body_limit,
            max_expiry: self.max_expiry,
            max_rate_limit: self.max_rate_limit,
            billing: self.billing,
        });
        Router::new()
            .route("/", get(list).post(create))
            .route("/grid", get(grid))
            .route("/{id}", get(show).delete(revoke).patch(update))
            .route("/{id}/revoke", post(revoke))
            .route("/{id}/rotate", post(rotate))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(manager)
    }
}

/// What the handlers share.
struct Manager {
    keyring: Keyring,
    kinds: Vec<Arc<KeyKind>>,
    policy: Arc<dyn ManagePolicy>,
    body_limit: usize,
    max_expiry: Duration,
    max_rate_limit: u32,
    billing: bool,
}

/// Why a request is refused.
#[derive(Debug)]
pub(crate) enum Failure {
    /// 400 `invalid_body`.
    Body(String),
    /// 400 `unknown_kind`.
    UnknownKind,
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType,
    /// 403 `insufficient_scope`, from the policy.
    Denied(Vec<crate::scope::Scope>),
    /// 404 `not_found`.
    NotFound,
    /// 403 `billing_not_managed`: credits or budgets through a router
    /// without [`ManageRouter::billing_controls`].
    Billing,
    /// No principal: 500 `auth_misconfigured` (no `AuthLayer` ran), or 401
    /// behind an anonymous one.
    NoPrincipal(Rejection),
    /// The keyring's errors.
    Issue(IssueError),
    Manage(ManageError),
}

impl Failure {
    pub(crate) fn body(why: &str) -> Self {
        Failure::Body(why.to_owned())
    }

    fn render(self, renderer: &Renderer) -> Response {
        let response = match self {
            Failure::Body(why) => respond(StatusCode::BAD_REQUEST, "invalid_body", &why),
            Failure::UnknownKind => respond(
                StatusCode::BAD_REQUEST,
                "unknown_kind",
                "this router manages no key kind of that name",
            ),
            Failure::PayloadTooLarge => respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            ),
            Failure::UnsupportedMediaType => respond(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ),
            Failure::Denied(scopes) => {
                let scope = scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                return renderer.render::<Body>(&Rejection::InsufficientScope { scope });
            }
            Failure::NotFound => IssueError::NotFound.to_response(),
            Failure::Billing => respond(
                StatusCode::FORBIDDEN,
                "billing_not_managed",
                "credits and budgets are not managed through this router",
            ),
            Failure::NoPrincipal(rejection) => return renderer.render::<Body>(&rejection),
            Failure::Issue(err) => {
                log_store_error(&err);
                err.to_response()
            }
            Failure::Manage(err) => {
                log_store_error(&err);
                err.to_response()
            }
        };
        response.map(Body::from)
    }
}

fn log_store_error(err: &(dyn std::error::Error + 'static)) {
    if let Some(store) = std::error::Error::source(err)
        .and_then(|e| e.downcast_ref::<crate::error::StoreError>())
        .or_else(|| err.downcast_ref::<crate::error::StoreError>())
    {
        tracing::error!(target: "keyward::manage", error = store as &dyn std::error::Error, "key store failed; answering 503");
    }
}

impl From<IssueError> for Failure {
    fn from(err: IssueError) -> Self {
        Failure::Issue(err)
    }
}

impl From<ManageError> for Failure {
    fn from(err: ManageError) -> Self {
        Failure::Manage(err)
    }
}

/// A policy's refusal as a failure.
fn allowed(verdict: Verdict) -> Result<(), Failure> {
    match verdict {
        Verdict::Allow => Ok(()),
        Verdict::Deny { scopes } => Err(Failure::Denied(scopes)),
    }
}

/// A key as the API shows it: the keyring's view and its state now.
#[derive(Serialize)]
struct KeyView<'a> {
    #[serde(flatten)]
    info: &'a KeyInfo,
    state: crate::key::KeyState,
}

/// A key and its token, shown once.
#[derive(Serialize)]
struct Issued<'a> {
    key: KeyView<'a>,
    token: &'a str,
}

/// `{"keys": [...], "next_cursor": ...}`.
#[derive(Serialize)]
struct Page<'a> {
    keys: Vec<KeyView<'a>>,
    next_cursor: Option<&'a str>,
}

/// `GET /grid`.
#[derive(Serialize)]
struct Grid<'a> {
    kind: &'a str,
    default_scopes: &'a ScopeSet,
    scopes: &'a [crate::scope::ScopeEntry],
}

/// A JSON response, never cached.
fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the response could not be rendered",
        )
        .map(Body::from),
    }
}

impl Manager {
    fn view<'a>(&self, info: &'a KeyInfo) -> KeyView<'a> {
        KeyView {
            info,
            state: info.state(self.keyring.now()),
        }
    }

    /// The managed kind named, or the default.
    fn kind(&self, name: Option<&str>) -> Result<&Arc<KeyKind>, Failure> {
        match name {
            None => self.kinds.first().ok_or(Failure::UnknownKind),
            Some(name) => self
                .kinds
                .iter()
                .find(|k| k.token_kind().prefix() == name)
                .ok_or(Failure::UnknownKind),
        }
    }

    /// The managed kinds `principal` may manage; refused when none.
    fn manageable(&self, principal: &Principal) -> Result<Vec<&Arc<KeyKind>>, Failure> {
        let mut denied = Vec::new();
        let mut kinds = Vec::new();
        for kind in &self.kinds {
            match self.policy.may_manage(principal, kind) {
                Verdict::Allow => kinds.push(kind),
                Verdict::Deny { scopes } => denied.extend(scopes),
            }
        }
        if kinds.is_empty() {
            denied.sort();
            denied.dedup();
            return Err(Failure::Denied(denied));
        }
        Ok(kinds)
    }

    /// The key `id` names in the principal's tenant, of a kind it may
    /// manage here; anything else is not found.
    async fn key(
        &self,
        principal: &Principal,
        id: Result<Path<String>, PathRejection>,
    ) -> Result<(Arc<KeyRecord>, &Arc<KeyKind>), Failure> {
        let kinds = self.manageable(principal)?;
        let id = id
            .ok()
            .and_then(|Path(id)| KeyId::parse(&id))
            .ok_or(Failure::NotFound)?;
        let record = self
            .keyring
            .record(Some(principal.tenant()), &id)
            .await
            .map_err(|e| match e {
                ManageError::NotFound => Failure::NotFound,
                other => Failure::Manage(other),
            })?;
        let kind = kinds
            .into_iter()
            .find(|k| k.token_kind().prefix() == record.kind)
            .ok_or(Failure::NotFound)?;
        Ok((record, kind))
    }

    async fn list(&self, principal: &Principal, query: Option<&str>) -> Result<Response, Failure> {
        let manageable = self.manageable(principal)?;
        let params = input::list_params(query)?;
        let mut query = ListQuery::new()
            .state(params.state)
            .limit(params.limit.unwrap_or(DEFAULT_PAGE_LIMIT));
        match params.kind.as_deref() {
            Some(name) => {
                let kind = self.kind(Some(name))?;
                let verdict = self.policy.may_manage(principal, kind);
                allowed(verdict)?;
                query = query.kind(name);
            }
            None => {
                for kind in manageable {
                    query = query.kind(kind.token_kind().prefix());
                }
            }
        }
        if let Some(cursor) = &params.cursor {
            query = query.cursor(cursor);
        }
        if let Some(owner) = params.owner {
            query = query.owner(owner);
        }
        let page = self.keyring.list_page(principal.tenant(), &query).await?;
        Ok(json(
            StatusCode::OK,
            &Page {
                keys: page.keys().iter().map(|k| self.view(k)).collect(),
                next_cursor: page.next_cursor(),
            },
        ))
    }

    async fn create(&self, principal: &Principal, req: Request) -> Result<Response, Failure> {
        self.manageable(principal)?;
        let (parts, body) = req.into_parts();
        let body: CreateBody = input::json_body(&parts.headers, body, self.body_limit).await?;
        let kind = self.kind(body.kind.as_deref())?;
        allowed(self.policy.may_manage(principal, kind))?;
        let scopes = match &body.scopes {
            Some(scopes) => kind
                .catalog()
                .grant(scopes)
                .map_err(|e| Failure::Issue(IssueError::Scope(e)))?,
            None => kind.default_scope_set().clone(),
        };
        allowed(self.policy.may_grant(principal, kind, &scopes))?;
        let expiry = self.expiry(&body)?;
        let rate_limit = self.rate_limit(body.rate_limit)?;
        let scope_names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let mut new = NewKey::new(
            kind.token_kind().prefix(),
            principal.tenant().as_str(),
            &body.name,
        )
        .scopes(scope_names)
        .rate_limit(rate_limit);
        if let Some(expiry) = expiry {
            new = new.expires(expiry);
        }
        for (k, v) in body.metadata.iter().flatten() {
            new = new.metadata(k, v);
        }
        if let Some(owner) = &body.owner {
            new = new.owner(owner);
        }
        if let Some(ranges) = &body.allowed_ips {
            new = new.allowed_ips(IpAllowlist::parse(ranges).map_err(input::usage_failure)?);
        }
        if body.credits.is_some() || body.budget.is_some() {
            self.billing()?;
        }
        if let Some(credits) = &body.credits {
            new = new.credits(credits.to_credits()?);
        }
        if let Some(budget) = &body.budget {
            new = new.budget(budget);
        }
        let issued = self.keyring.issue_as(new, Some(&principal.actor())).await?;
        Ok(json(
            StatusCode::CREATED,
            &Issued {
                key: self.view(&issued.info),
                token: issued.token.expose_secret(),
            },
        ))
    }

    /// Refused unless this router manages credits and budgets.
    fn billing(&self) -> Result<(), Failure> {
        if self.billing {
            Ok(())
        } else {
            Err(Failure::Billing)
        }
    }

    /// A rate limit from a body, within the router's bound.
    fn rate_limit(&self, per_minute: Option<u32>) -> Result<RateLimit, Failure> {
        match per_minute {
            None => Ok(RateLimit::default()),
            Some(n) if n <= self.max_rate_limit => {
                RateLimit::per_minute(n).ok_or_else(|| Failure::Body(self.rate_limit_message()))
            }
            Some(_) => Err(Failure::Body(self.rate_limit_message())),
        }
    }

    async fn update(
        &self,
        principal: &Principal,
        id: Result<Path<String>, PathRejection>,
        req: Request,
    ) -> Result<Response, Failure> {
        self.manageable(principal)?;
        let (parts, body) = req.into_parts();
        // The body before the key: a malformed request changes nothing.
        let body: ControlsBody = input::json_body(&parts.headers, body, self.body_limit).await?;
        let mut update = ControlsUpdate::new();
        if let Some(list) = &body.allowed_ips {
            let list = match list {
                Some(ranges) => Some(IpAllowlist::parse(ranges).map_err(input::usage_failure)?),
                None => None,
            };
            update = update.allowed_ips(list);
        }
        if body.credits.is_some() || body.add_credits.is_some() || body.budget.is_some() {
            self.billing()?;
        }
        match (&body.credits, body.add_credits) {
            (Some(_), Some(_)) => {
                return Err(Failure::body("give credits or add_credits, not both"));
            }
            (Some(Some(credits)), None) => {
                update = update.credits(CreditsChange::Set(credits.to_credits()?));
            }
            (Some(None), None) => update = update.credits(CreditsChange::Remove),
            (None, Some(n)) => {
                if n == 0 || n > MAX_CREDITS {
                    return Err(Failure::body("add_credits must be 1 to 2^53 - 1"));
                }
                update = update.credits(CreditsChange::Add(n));
            }
            (None, None) => {}
        }
        if let Some(budget) = &body.budget {
            let budget = match budget {
                Some(name) => {
                    Some(BudgetId::parse(name).ok_or(Failure::Issue(IssueError::InvalidBudget))?)
                }
                None => None,
            };
            update = update.budget(budget);
        }
        if body.rate_limit.is_some() {
            update = update.rate_limit(self.rate_limit(body.rate_limit)?);
        }
        if update.is_empty() {
            return Err(Failure::body(
                "name at least one of allowed_ips, credits, add_credits, budget, rate_limit",
            ));
        }
        let (record, _) = self.key(principal, id).await?;
        // A shared budget is checked against each key's own limit: raising
        // it on a key of a budget raises the budget, a billing decision.
        let budgeted = record.budget.is_some() || matches!(&update.budget, Some(Some(_)));
        if update.rate_limit.is_some() && budgeted {
            self.billing()?;
        }
        let info = self
            .keyring
            .update_controls_as(None, &record.id, update, Some(&principal.actor()))
            .await
            .map_err(|e| match e {
                ManageError::NotFound => Failure::NotFound,
                other => Failure::Manage(other),
            })?;
        Ok(json(StatusCode::OK, &self.view(&info)))
    }

    fn rate_limit_message(&self) -> String {
        format!(
            "rate_limit must be 1-{} requests a minute",
            self.max_rate_limit
        )
    }

    /// `expires_in` or `expires_at` (not both); none: the kind's default
    /// ([`ExpiryPolicy`](crate::ExpiryPolicy), which also judges the others).
    fn expiry(&self, body: &CreateBody) -> Result<Option<Expiry>, Failure> {
        match (&body.expires_in, body.expires_at) {
            (Some(_), Some(_)) => Err(Failure::body("give expires_in or expires_at, not both")),
            (Some(preset), None) => preset
                .parse()
                .map(Some)
                .map_err(|_| Failure::body("expires_in must be one of 30d, 90d, 1y, never")),
            (None, Some(at)) => {
                let now = self.keyring.now();
                if at <= now {
                    return Err(Failure::body("expires_at lies in the past"));
                }
                if at > now.saturating_add(span(self.max_expiry)) {
                    return Err(Failure::Body(format!(
                        "expires_at lies more than {} days ahead",
                        self.max_expiry.as_secs() / 86_400
                    )));
                }
                Ok(Some(Expiry::At(at)))
            }
            (None, None) => Ok(None),
        }
    }

    async fn show(
        &self,
        principal: &Principal,
        id: Result<Path<String>, PathRejection>,
    ) -> Result<Response, Failure> {
        let (record, _) = self.key(principal, id).await?;
        let info = self.keyring.fresh(&record);
        Ok(json(StatusCode::OK, &self.view(&info)))
    }

    async fn revoke(
        &self,
        principal: &Principal,
        id: Result<Path<String>, PathRejection>,
        req: Request,
    ) -> Result<Response, Failure> {
        self.manageable(principal)?;
        let (parts, body) = req.into_parts();
        // The body before the key: a malformed request changes nothing.
        let Empty {} = input::optional_json_body(&parts.headers, body, self.body_limit).await?;
        let (record, _) = self.key(principal, id).await?;
        let info = self
            .keyring
            .revoke_as(None, &record.id, Some(&principal.actor()), None)
            .await
            .map_err(|e| match e {
                ManageError::NotFound => Failure::NotFound,
                other => Failure::Manage(other),
            })?;
        Ok(json(StatusCode::OK, &self.view(&info)))
    }

    async fn rotate(
        &self,
        principal: &Principal,
        id: Result<Path<String>, PathRejection>,
        req: Request,
    ) -> Result<Response, Failure> {
        self.manageable(principal)?;
        let (parts, body) = req.into_parts();
        let body: RotateBody =
            input::optional_json_body(&parts.headers, body, self.body_limit).await?;
        let grace = Duration::from_secs(body.grace_seconds.unwrap_or(0));
        if grace > MAX_GRACE {
            return Err(Failure::body(
                "grace_seconds must be at most 2592000 (30 days)",
            ));
        }
        let (record, kind) = self.key(principal, id).await?;
        // The successor's token carries the old key's scopes.
        allowed(self.policy.may_grant(principal, kind, &record.scopes))?;
        let issued = self
            .keyring
            .rotate_record(&record, grace, Some(&principal.actor()))
            .await?;
        Ok(json(
            StatusCode::CREATED,
            &Issued {
                key: self.view(&issued.info),
                token: issued.token.expose_secret(),
            },
        ))
    }

    fn grid(&self, principal: &Principal, req: &Request) -> Result<Response, Failure> {
        self.manageable(principal)?;
        let params = input::grid_params(req.uri().query())?;
        let kind = self.kind(params.kind.as_deref())?;
        allowed(self.policy.may_manage(principal, kind))?;
        Ok(json(
            StatusCode::OK,
            &Grid {
                kind: kind.token_kind().prefix(),
                default_scopes: kind.default_scope_set(),
                scopes: kind.catalog().entries(),
            },
        ))
    }
}

/// The principal the authentication layer put into the request.
fn principal(req: &Request) -> Result<Principal, Failure> {
    req.extensions().get::<Principal>().cloned().ok_or_else(|| {
        Failure::NoPrincipal(Anonymous::rejection(
            req.extensions(),
            "the management router",
        ))
    })
}

fn finish(result: Result<Response, Failure>, renderer: &Renderer) -> Response {
    result.unwrap_or_else(|failure| failure.render(renderer))
}

async fn list(State(m): State<Arc<Manager>>, req: Request) -> Response {
    let renderer = Renderer::of(req.extensions());
    let result = match principal(&req) {
        Ok(p) => {
            let query = req.uri().query().map(str::to_owned);
            drop(req);
            m.list(&p, query.as_deref()).await
        }
        Err(f) => Err(f),
    };
    finish(result, &renderer)
}

async fn create(State(m): State<Arc<Manager>>, req: Request) -> Response {
    let renderer = Renderer::of(req.extensions());
    let result = match principal(&req) {
        Ok(p) => m.create(&p, req).await,
        Err(f) => Err(f),
    };
    finish(result, &renderer)
}

async fn grid(State(m): State<Arc<Manager>>, req: Request) -> Response {
    let renderer = Renderer::of(req.extensions());
    let result = principal(&req).and_then(|p| m.grid(&p, &req));
    finish(result, &renderer)
}

async fn show(
    State(m): State<Arc<Manager>>,
    id: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let renderer = Renderer::of(req.extensions());
    let result = match principal(&req) {
        Ok(p) => m.show(&p, id).await,
        Err(f) => Err(f),
    };
    finish(result, &renderer)
}

async fn revoke(
    State(m): State<Arc<Manager>>,
    id: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let renderer = Renderer::of(req.extensions());
    let result = match principal(&req) {
        Ok(p) => m.revoke(&p, id, req).await,
        Err(f) => Err(f),
    };
    finish(result, &renderer)
}

async fn update(
    State(m): State<Arc<Manager>>,
    id: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let renderer = Renderer::of(req.extensions());
    let result = match principal(&req) {
        Ok(p) => m.update(&p, id, req).await,
        Err(f) => Err(f),
    };
    finish(result, &renderer)
}

async fn rotate(
    State(m): State<Arc<Manager>>,
    id: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let renderer = Renderer::of(req.extensions());
    let result = match principal(&req) {
        Ok(p) => m.rotate(&p, id, req).await,
        Err(f) => Err(f),
    };
    finish(result, &renderer)
}

/// An unknown path under the mount point: answered without authentication
/// (nothing is read), with a message that names no key.
async fn not_found() -> Response {
    respond(StatusCode::NOT_FOUND, "not_found", "no such route").map(Body::from)
}

async fn method_not_allowed() -> Response {
    respond(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
    .into_response()
}
