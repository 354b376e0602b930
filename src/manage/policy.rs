//! Who may manage keys, and what they may grant: [`ManagePolicy`], its
//! [`Verdict`], and the shipped [`ScopePolicy`].

use std::fmt;

use crate::error::ScopeError;
use crate::http::{Identity, Principal};
use crate::keyring::KeyKind;
use crate::scope::{Scope, ScopeCatalog, ScopeSet};

/// What a [`ManagePolicy`] decided. A refusal is 403 `insufficient_scope`,
/// with the scopes it names in the `WWW-Authenticate` challenge.
///
/// ```
/// use keyward::manage::Verdict;
///
/// let refused = Verdict::deny(["keys:manage".parse().unwrap()]);
/// assert!(!refused.is_allowed());
/// assert!(Verdict::Allow.is_allowed());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Verdict {
    /// The request may go ahead.
    Allow,
    /// Refused.
    Deny {
        /// The scopes that were missing, or asked for beyond what the
        /// caller may grant; named in the 403's challenge.
        scopes: Vec<Scope>,
    },
}

impl Verdict {
    /// A refusal naming `scopes`.
    pub fn deny(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Verdict::Deny {
            scopes: scopes.into_iter().collect(),
        }
    }

    /// Whether the request may go ahead.
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow)
    }
}

/// Who may manage keys through the [`ManageRouter`](super::ManageRouter),
/// and what they may grant. The host supplies it
/// ([`ManageRouter::policy`](super::ManageRouter::policy)); the default is
/// [`ScopePolicy`] with `keys:manage`.
///
/// The router asks [`may_manage`](Self::may_manage) before every call (list,
/// get, revoke, rotate, create, the grid) and
/// [`may_grant`](Self::may_grant) before it issues a key: on create with the
/// scopes asked for (or the kind's defaults), and on rotate with the old
/// key's scopes, since a successor's token carries them. The scopes are
/// already validated against `kind`'s catalog. Both are plain functions of
/// the principal: a role lookup belongs in the
/// [`ExternalAuthenticator`](crate::http::ExternalAuthenticator), which
/// puts roles into the principal's scopes.
///
/// A policy that lets dashboard users of one organization manage `pl` keys,
/// readers only list:
///
/// ```
/// use keyward::http::Principal;
/// use keyward::manage::{ManagePolicy, Verdict};
/// use keyward::{KeyKind, Requirement, ScopeSet};
///
/// struct Dashboard;
///
/// impl ManagePolicy for Dashboard {
///     fn may_manage(&self, principal: &Principal, kind: &KeyKind) -> Verdict {
///         let admin = Requirement::all(["tokens:admin"]).unwrap();
///         let external = principal.external_principal().is_some();
///         if external && kind.token_kind().prefix() == "pl" && principal.check(&admin).is_permitted() {
///             Verdict::Allow
///         } else {
///             Verdict::deny(admin.scopes().to_vec())
///         }
///     }
///
///     fn may_grant(&self, principal: &Principal, kind: &KeyKind, scopes: &ScopeSet) -> Verdict {
///         // Any scope of the kind, but never a wildcard.
///         match scopes.iter().find(|s| s.is_wildcard()) {
///             Some(wildcard) => Verdict::deny([wildcard.clone()]),
///             None => self.may_manage(principal, kind),
///         }
///     }
/// }
///
/// let keyring = keyward::Keyring::builder()
///     .store(keyward::MemoryStore::new())
///     .kind(KeyKind::new("pl", keyward::ScopeCatalog::builder().build().unwrap()).unwrap())
///     .build()
///     .unwrap();
/// let router = keyward::manage::ManageRouter::new(keyring).policy(Dashboard);
/// # let _ = router;
/// ```
pub trait ManagePolicy: Send + Sync + 'static {
    /// Whether `principal` may list, read, revoke and rotate keys of
    /// `kind` in its tenant (and see the kind's grid).
    fn may_manage(&self, principal: &Principal, kind: &KeyKind) -> Verdict;

    /// Whether `principal` may have a key of `kind` with `scopes` issued.
    fn may_grant(&self, principal: &Principal, kind: &KeyKind, scopes: &ScopeSet) -> Verdict;
}

/// The shipped policy: managing keys takes a management scope.
///
/// * A **key** may manage keys of its own kind when it holds the
///   management scope (directly, by implication or by a wildcard, as the
///   catalog judges). It never gets a key issued with a scope beyond its
///   own: each scope asked for must be covered by the caller's grants under
///   the catalog's rules (so `write` may grant `read` where `write` implies
///   `read`); a wildcard only by the same or a wider wildcard (`games:*`
///   by `games:*` or `*`, since a wildcard also covers scopes declared
///   later).
/// * An **external principal** (a dashboard session through the
///   [`ExternalAuthenticator`](crate::http::ExternalAuthenticator)) is
///   refused unless [`accept_external`](Self::accept_external) is on; then
///   it may manage keys of every kind when it holds the management scope in
///   its own catalog, and grant any scope of the managed kind.
/// * A new key never holds the management scope (counting wildcards and
///   implications) unless [`allow_granting_manage`](Self::allow_granting_manage)
///   is on; then only callers who may grant it (a key holding it, or an
///   accepted external principal).
///
/// ```
/// use keyward::manage::ScopePolicy;
///
/// let policy = ScopePolicy::new("keys:manage")?.accept_external(true);
/// # let _ = policy;
/// # Ok::<(), keyward::ScopeError>(())
/// ```
#[derive(Clone)]
#[must_use]
#[non_exhaustive]
pub struct ScopePolicy {
    manage: Scope,
    grant_manage: bool,
    external: bool,
}

impl fmt::Debug for ScopePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopePolicy")
            .field("manage", &self.manage)
            .field("grant_manage", &self.grant_manage)
            .field("external", &self.external)
            .finish()
    }
}

impl ScopePolicy {
    /// Managing takes `manage_scope` (e.g. `keys:manage`); no external
    /// principals; new keys never hold it. A key principal must hold it in
    /// its kind's catalog (so that catalog declares it); an external one
    /// ([`accept_external`](Self::accept_external)) in its own catalog, so
    /// the managed kind's catalog need not declare it.
    ///
    /// # Errors
    ///
    /// [`ScopeError::Invalid`] for a malformed scope or a wildcard.
    pub fn new(manage_scope: &str) -> Result<Self, ScopeError> {
        let manage = Scope::parse(manage_scope)?;
        if manage.is_wildcard() {
            return Err(ScopeError::Invalid(manage_scope.to_owned()));
        }
        Ok(ScopePolicy {
            manage,
            grant_manage: false,
            external: false,
        })
    }

    /// Whether new keys may hold the management scope (off by default).
    pub fn allow_granting_manage(mut self, allow: bool) -> Self {
        self.grant_manage = allow;
        self
    }

    /// Whether external principals holding the management scope in their
    /// own catalog may manage keys of every kind and grant any of its
    /// scopes (off by default).
    pub fn accept_external(mut self, accept: bool) -> Self {
        self.external = accept;
        self
    }

    /// The management scope.
    #[must_use]
    pub fn manage_scope(&self) -> &Scope {
        &self.manage
    }

    fn refuse(&self) -> Verdict {
        Verdict::deny([self.manage.clone()])
    }
}

impl Default for ScopePolicy {
    /// [`ScopePolicy::new`] with `keys:manage`.
    fn default() -> Self {
        ScopePolicy {
            manage: Scope::parse("keys:manage").expect("a valid scope"),
            grant_manage: false,
            external: false,
        }
    }
}

impl ManagePolicy for ScopePolicy {
    fn may_manage(&self, principal: &Principal, kind: &KeyKind) -> Verdict {
        let manager = match principal.identity() {
            Identity::Key(key) => {
                key.kind().prefix() == kind.token_kind().prefix()
                    && key.catalog().covers(key.scopes(), &self.manage)
            }
            Identity::External(external) => {
                self.external && external.catalog().covers(external.scopes(), &self.manage)
            }
        };
        if manager {
            Verdict::Allow
        } else {
            self.refuse()
        }
    }

    fn may_grant(&self, principal: &Principal, kind: &KeyKind, scopes: &ScopeSet) -> Verdict {
        let verdict = self.may_manage(principal, kind);
        if !verdict.is_allowed() {
            return verdict;
        }
        let catalog = kind.catalog();
        // Counting implications and wildcards: `*` holds the scope too.
        if catalog.covers(scopes, &self.manage) && !self.grant_manage {
            return self.refuse();
        }
        match principal.identity() {
            Identity::Key(key) => {
                let beyond: Vec<Scope> = scopes
                    .iter()
                    .filter(|s| !within(catalog, key.scopes(), s))
                    .cloned()
                    .collect();
                if beyond.is_empty() {
                    Verdict::Allow
                } else {
                    Verdict::deny(beyond)
                }
            }
            Identity::External(_) => Verdict::Allow,
        }
    }
}

/// Whether `held` covers `asked` for the purpose of granting it: a plain
/// scope by the catalog's coverage rules; a wildcard only by the same or a
/// wider wildcard.
pub(crate) fn within(catalog: &ScopeCatalog, held: &ScopeSet, asked: &Scope) -> bool {
    if !asked.is_wildcard() {
        return catalog.covers(held, asked);
    }
    if !catalog.allows_wildcards() {
        return false;
    }
    held.iter().any(|h| {
        h.as_str() == "*"
            || (asked.as_str() != "*" && h.is_wildcard() && h.resource() == asked.resource())
    })
}
