//! The authentication middleware: reads credentials, verifies them, and puts
//! the [`Principal`] into the request extensions.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::HeaderName;
use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::http::credentials::{
    self, Credential, CredentialRules, CredentialSource, TENANT_HEADER,
};
use crate::http::external::ExternalAuthenticator;
use crate::http::principal::Principal;
use crate::http::rejection::{JsonRejections, Rejection, RenderRejection, Renderer};
use crate::key::TenantId;
use crate::keyring::Keyring;

/// Runs after a request authenticated and before the inner service: the
/// place for per-key checks such as rate limiting. Returning a rejection
/// refuses the request with it.
///
/// Hooks run in the order they were added; the first rejection wins.
///
/// ```
/// use http::request::Parts;
/// use keyward::http::{AuthHook, Principal, Rejection};
///
/// /// Refuses keys of one tenant while it is being migrated.
/// struct Freeze(keyward::TenantId);
///
/// #[async_trait::async_trait]
/// impl AuthHook for Freeze {
///     async fn after_authentication(&self, principal: &Principal, _req: &mut Parts) -> Result<(), Rejection> {
///         if principal.tenant() == &self.0 { Err(Rejection::AuthUnavailable) } else { Ok(()) }
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait AuthHook: Send + Sync + 'static {
    /// Checks an authenticated request. `request` may be changed (for
    /// example to add an extension the handler or a response layer reads).
    async fn after_authentication(
        &self,
        principal: &Principal,
        request: &mut Parts,
    ) -> Result<(), Rejection>;
}

/// Applies [`Auth`] to a service: see the [module docs](crate::http).
#[derive(Clone)]
#[must_use]
pub struct AuthLayer {
    config: Arc<AuthConfig>,
}

#[derive(Clone)]
struct AuthConfig {
    keyring: Keyring,
    rules: CredentialRules,
    tenant_header: HeaderName,
    anonymous: bool,
    external: Option<Arc<dyn ExternalAuthenticator>>,
    hooks: Vec<Arc<dyn AuthHook>>,
    renderer: Renderer,
}

impl AuthLayer {
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
    /// [`Principal`]. Requests with bad credentials are still refused.
    pub fn allow_anonymous(mut self, allow: bool) -> Self {
        self.config().anonymous = allow;
        self
    }

    /// Sends bearer values that are not keyward tokens to `authenticator`.
    pub fn external(mut self, authenticator: impl ExternalAuthenticator) -> Self {
        self.config().external = Some(Arc::new(authenticator));
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
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Authenticates requests, then calls the inner service with the
/// [`Principal`] in the request extensions. Built by [`AuthLayer`].
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    config: Arc<AuthConfig>,
}

impl<S> Auth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The clone may not be ready: keep the ready service for this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = &self.config;
        req.extensions_mut().insert(config.renderer.clone());

        let presented = config.rules.extract(req.headers()).and_then(|credential| {
            let tenant = credentials::tenant(req.headers(), &config.tenant_header)?;
            Ok(credential.map(|c| (c, tenant)))
        });
        let state = match presented {
            Err(rejection) => State::Rejected {
                response: Some(config.renderer.render(&rejection)),
            },
            Ok(None) if config.anonymous => State::Future {
                future: inner.call(req),
            },
            Ok(None) => State::Rejected {
                response: Some(config.renderer.render(&Rejection::MissingCredentials)),
            },
            Ok(Some((credential, tenant))) => State::Authenticating {
                auth: Box::pin(authenticate(config.clone(), credential, tenant, req)),
                inner: Some(inner),
            },
        };
        ResponseFuture { state }
    }
}

type AuthFuture<B> = Pin<Box<dyn Future<Output = Result<Request<B>, Response<String>>> + Send>>;

/// Verifies the credential, selects the tenant, runs the hooks; on success
/// the request carries the principal.
async fn authenticate<B>(
    config: Arc<AuthConfig>,
    credential: Credential,
    tenant: Option<TenantId>,
    req: Request<B>,
) -> Result<Request<B>, Response<String>> {
    let (mut parts, body) = req.into_parts();
    let outcome = async {
        let principal = config.principal(&credential, tenant).await?;
        drop(credential);
        for hook in &config.hooks {
            hook.after_authentication(&principal, &mut parts).await?;
        }
        Ok::<_, Rejection>(principal)
    }
    .await;
    match outcome {
        Ok(principal) => {
            parts.extensions.insert(principal);
            Ok(Request::from_parts(parts, body))
        }
        Err(rejection) => Err(config.renderer.render(&rejection)),
    }
}

impl AuthConfig {
    async fn principal(
        &self,
        credential: &Credential,
        tenant: Option<TenantId>,
    ) -> Result<Principal, Rejection> {
        let value = credential.value.as_str();
        match &self.external {
            Some(external) if credential.bearer && !self.is_keyward_token(value) => {
                let principal = external
                    .authenticate(value)
                    .await
                    .map_err(|e| Rejection::from(&e))?;
                let tenant = match tenant {
                    Some(t) if principal.tenants().contains(&t) => t,
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
                    .verify(value)
                    .await
                    .map_err(|e| Rejection::from(&e))?;
                if tenant.is_some_and(|t| &t != key.tenant()) {
                    return Err(Rejection::TenantMismatch);
                }
                Ok(Principal::key(key))
            }
        }
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

pin_project! {
    /// The response future of [`Auth`].
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
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Authenticating {
            auth: AuthFuture<ReqBody>,
            inner: Option<S>,
        },
        Future {
            #[pin]
            future: S::Future,
        },
        Rejected {
            response: Option<S::Response>,
        },
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
                StateProj::Authenticating { auth, inner } => {
                    let next = match ready!(auth.as_mut().poll(cx)) {
                        Ok(req) => {
                            let mut inner = inner.take().expect("polled after completion");
                            State::Future {
                                future: inner.call(req),
                            }
                        }
                        Err(response) => State::Rejected {
                            response: Some(response.map(ResBody::from)),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Future { future } => return future.poll(cx),
                StateProj::Rejected { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response));
                }
            }
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
