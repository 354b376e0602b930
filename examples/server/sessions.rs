//! Dashboard sessions of the demo login (until issue 15 brings JWTs): an
//! opaque random token per login, held in memory for [`SESSION_TTL`], and
//! an [`ExternalAuthenticator`] that accepts it as `Authorization: Bearer`
//! on the token management routes.
//!
//! The map is keyed by the SHA-256 of the token, so a lookup compares no
//! secret byte by byte and the map holds no usable credential. Tokens and
//! their hashes are never logged; `Debug` shows only how many sessions live.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyward::http::{ExternalAuthError, ExternalAuthenticator, ExternalPrincipal};
use keyward::{ScopeCatalog, ScopeStatus, TenantId};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// How long a session lasts after login.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(60 * 60);

/// The tenant every dashboard session acts for.
pub(crate) const DASHBOARD_TENANT: &str = "org_demo";

/// The scope a session holds: manage the tenant's `pl_` tokens.
pub(crate) const MANAGE_TOKENS: &str = "tokens:manage";

/// Most sessions held at once; a login past it evicts the oldest.
const MAX_SESSIONS: usize = 10_000;

/// What a session holds: the account, and when it ends.
struct Session {
    account: String,
    expires: Instant,
}

/// The session table, shared by the login handler and the authenticator.
#[derive(Clone)]
pub(crate) struct Sessions {
    inner: Arc<Mutex<HashMap<[u8; 32], Session>>>,
    catalog: Arc<ScopeCatalog>,
    ttl: Duration,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = self.inner.lock().map_or(0, |m| m.len());
        f.debug_struct("Sessions").field("live", &live).finish()
    }
}

/// The dashboard's permissions: what a session may do.
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

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// An empty table whose sessions last `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Sessions {
            inner: Arc::new(Mutex::new(HashMap::new())),
            catalog: Arc::new(dashboard_catalog()),
            ttl,
        }
    }

    /// Starts a session for `account`; returns its token (64 hex digits, so
    /// never mistaken for a `pk_`/`pl_` token), the only copy.
    pub(crate) fn start(&self, account: &str) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            digest(&token),
            Session {
                account: account.to_owned(),
                expires: now + self.ttl,
            },
        );
        token
    }

    /// The account of a live session; expired sessions are dropped.
    fn account(&self, token: &str) -> Result<String, ExternalAuthError> {
        let key = digest(token);
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            None => Err(ExternalAuthError::Invalid),
            Some(s) if s.expires <= Instant::now() => {
                map.remove(&key);
                Err(ExternalAuthError::Expired)
            }
            Some(s) => Ok(s.account.clone()),
        }
    }
}

#[keyward::async_trait]
impl ExternalAuthenticator for Sessions {
    async fn authenticate(&self, bearer: &str) -> Result<ExternalPrincipal, ExternalAuthError> {
        let account = self.account(bearer)?;
        let tenant = TenantId::parse(DASHBOARD_TENANT).expect("a valid tenant");
        let scopes = self
            .catalog
            .grant([MANAGE_TOKENS])
            .map_err(ExternalAuthError::unavailable)?;
        Ok(ExternalPrincipal::new(
            &format!("account:{account}"),
            [tenant],
            scopes,
            self.catalog.clone(),
        ))
    }
}
