//! The dashboard's development issuer: what Cognito or Auth0 would be in
//! production, started by the server itself. It holds an ES256 key
//! generated at start, signs a JWT at each demo login, publishes its JWKS
//! at `GET /.well-known/jwks.json`, and hands the token management routes a
//! [`JwtAuthenticator`] that verifies those JWTs against that key set.
//!
//! The authenticator is the library's, configured as for a real issuer
//! (issuer, audience, algorithm allowlist, claims to principal); only the
//! fetch is in-process ([`DevIssuer`] is its own [`JwksFetcher`]). In
//! production the same routes take, for example,
//! `JwtAuthenticator::cognito(region, pool, [client_id], CognitoToken::Access)`
//! with the same principal mapping.
//!
//! The private key never leaves this module: no `Debug` shows it, nothing
//! logs it, and the process forgets it at exit (tokens from an earlier run
//! stop verifying, like sessions of a restarted server).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keyward::http::{ExternalAuthError, ExternalPrincipal};
use keyward::jwt::{
    JwksFetchError, JwksFetcher, JwksResponse, JwtAlgorithm, JwtAuthenticator, JwtClaims,
};
use keyward::{ScopeCatalog, ScopeStatus, TenantId};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{json, Value};

/// How long a dashboard JWT lasts after login.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(60 * 60);

/// The tenant every dashboard user acts for.
pub(crate) const DASHBOARD_TENANT: &str = "org_demo";

/// The scope a dashboard user holds: manage the tenant's `pl_` tokens.
pub(crate) const MANAGE_TOKENS: &str = "tokens:manage";

/// The development issuer's `iss`.
pub(crate) const ISSUER: &str = "https://dev-issuer.keyward.invalid";

/// The `aud` of the dashboard's tokens.
pub(crate) const AUDIENCE: &str = "keyward-dashboard";

/// Where the JWKS is published (and what the authenticator names as its
/// URL; the fetch itself is in-process).
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The dashboard's permissions: what a dashboard user may do.
pub(crate) fn dashboard_catalog() -> ScopeCatalog {
    ScopeCatalog::builder()
        .scope(
            MANAGE_TOKENS,
            "Create, list, rotate and revoke PlayableLabs tokens",
            ScopeStatus::Enforced,
        )
        .build()
        .expect("a valid catalog")
}

struct Inner {
    kid: String,
    key: EncodingKey,
    jwks: String,
}

/// The development issuer; clones share the key.
#[derive(Clone)]
pub(crate) struct DevIssuer {
    inner: Arc<Inner>,
    ttl: Duration,
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("kid", &self.inner.kid)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl DevIssuer {
    /// An issuer with a fresh P-256 key whose tokens last `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        let key = p256::ecdsa::SigningKey::random(&mut rand08::rngs::OsRng);
        let der = key.to_pkcs8_der().expect("a P-256 key encodes");
        let point = key.verifying_key().to_encoded_point(false);
        let kid = format!("dev-{}", unix_now());
        let jwks = json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed")),
        }]})
        .to_string();
        DevIssuer {
            inner: Arc::new(Inner {
                kid,
                key: EncodingKey::from_ec_der(der.as_bytes()),
                jwks,
            }),
            ttl,
        }
    }

    /// The JWKS document.
    pub(crate) fn jwks(&self) -> &str {
        &self.inner.jwks
    }

    /// Signs `claims` with the issuer's key.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.inner.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.inner.key).expect("ES256 signs")
    }

    /// The claims of a login of `account`: the dashboard tenant and
    /// `tokens:manage`, for the issuer's TTL.
    pub(crate) fn claims(&self, account: &str) -> Value {
        let now = unix_now();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": format!("account:{account}"),
            "iat": now,
            "exp": now.saturating_add(ttl),
            "scope": MANAGE_TOKENS,
            "orgs": [DASHBOARD_TENANT],
        })
    }

    /// A JWT for `account` (the login's answer).
    pub(crate) fn login(&self, account: &str) -> String {
        self.sign(&self.claims(account))
    }

    /// The dashboard's authenticator: ES256 only, this issuer and audience,
    /// tenants from `orgs`, scopes from `scope` (those the dashboard
    /// catalog declares).
    pub(crate) fn authenticator(&self) -> JwtAuthenticator {
        let catalog = Arc::new(dashboard_catalog());
        JwtAuthenticator::builder(&format!("http://localhost{JWKS_PATH}"))
            .issuer(ISSUER)
            .audience([AUDIENCE])
            .algorithms([JwtAlgorithm::ES256])
            .fetcher(self.clone())
            .principal(move |claims: &JwtClaims| principal(claims, &catalog))
            .build()
            .expect("a complete configuration")
    }
}

/// Claims to principal: what a host writes for its own issuer.
fn principal(
    claims: &JwtClaims,
    catalog: &Arc<ScopeCatalog>,
) -> Result<ExternalPrincipal, ExternalAuthError> {
    let tenants = claims.strings("orgs").filter_map(TenantId::parse);
    let scopes = catalog.grant_known(claims.scopes());
    Ok(ExternalPrincipal::new(
        claims.subject(),
        tenants,
        scopes,
        catalog.clone(),
    ))
}

#[keyward::async_trait]
impl JwksFetcher for DevIssuer {
    async fn fetch(&self, _url: &str) -> Result<JwksResponse, JwksFetchError> {
        Ok(JwksResponse::new(self.inner.jwks.clone().into_bytes()).cache_control("max-age=3600"))
    }
}
