//! A route's requirement and the decision it yields against granted scopes.

use std::fmt;

use crate::error::ScopeError;

use super::catalog::{ScopeCatalog, ScopeStatus};
use super::name::{Scope, ScopeSet};

impl ScopeCatalog {
    /// Evaluates a route's requirement against granted scopes.
    ///
    /// * [`Denied`](Decision::Denied) when the requirement fails even with
    ///   every "soon" scope counted as held;
    /// * else [`NotEnforced`](Decision::NotEnforced) when it names a "soon"
    ///   scope, with `would_deny` telling whether it fails once every scope is
    ///   enforced;
    /// * else [`Allowed`](Decision::Allowed).
    pub fn evaluate(&self, requirement: &Requirement, granted: &ScopeSet) -> Decision {
        let scopes = requirement.scopes();
        // The common case, decided without building the missing list: no
        // "soon" scope in the catalog and every required scope covered.
        if !self.any_soon {
            if let Requirement::All(req) = requirement {
                if req.iter().all(|s| self.covers(granted, s)) {
                    return Decision::Allowed;
                }
            }
        }
        let is_soon = |s: &Scope| self.any_soon && self.status(s) == ScopeStatus::Soon;
        let (strict, lenient, missing) = match requirement {
            Requirement::All(req) => {
                let missing: Vec<Scope> = req
                    .iter()
                    .filter(|s| !self.covers(granted, s))
                    .cloned()
                    .collect();
                (missing.is_empty(), missing.iter().all(is_soon), missing)
            }
            Requirement::Any(req) => {
                if req.iter().any(|s| self.covers(granted, s)) {
                    (true, true, Vec::new())
                } else {
                    (false, req.iter().any(is_soon), req.to_vec())
                }
            }
        };
        if !lenient {
            Decision::Denied { missing }
        } else if scopes.iter().any(is_soon) {
            Decision::NotEnforced {
                would_deny: !strict,
                missing,
            }
        } else {
            Decision::Allowed
        }
    }
}

/// The scopes a route requires: all of them, or any one.
///
/// ```
/// use keyward::Requirement;
///
/// let r = Requirement::any(["games:write", "games:delete"]).unwrap();
/// assert_eq!(r.to_string(), "games:write games:delete");
/// assert!(Requirement::all(Vec::<&str>::new()).is_err());
/// assert!(Requirement::all(["*"]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Requirement {
    /// Every scope is needed.
    All(Vec<Scope>),
    /// One of the scopes is enough.
    Any(Vec<Scope>),
}

impl Requirement {
    /// Every one of these scopes is needed.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] when a scope is malformed or a wildcard, or the list is
    /// empty.
    pub fn all<I, S>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::parse_list(scopes).map(Requirement::All)
    }

    /// Any one of these scopes is enough.
    ///
    /// # Errors
    ///
    /// [`ScopeError`] when a scope is malformed or a wildcard, or the list is
    /// empty.
    pub fn any<I, S>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::parse_list(scopes).map(Requirement::Any)
    }

    fn parse_list<I, S>(scopes: I) -> Result<Vec<Scope>, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<Scope> = Vec::new();
        for s in scopes {
            let s = Scope::parse(s.as_ref())?;
            if s.is_wildcard() {
                return Err(ScopeError::Invalid(s.to_string()));
            }
            if !list.contains(&s) {
                list.push(s);
            }
        }
        if list.is_empty() {
            return Err(ScopeError::EmptyRequirement);
        }
        Ok(list)
    }

    /// The scopes named, in the order given.
    #[must_use]
    pub fn scopes(&self) -> &[Scope] {
        match self {
            Requirement::All(s) | Requirement::Any(s) => s,
        }
    }
}

/// Space-separated, for RFC 6750's `scope` attribute.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.scopes().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

/// The outcome of [`ScopeCatalog::evaluate`]: a decision to act on, so
/// dropping one unread is a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a scope decision allows or denies: act on it"]
pub enum Decision {
    /// Every enforced requirement is met, and no "soon" scope is involved.
    Allowed,
    /// The requirement names a "soon" scope; the request passes.
    NotEnforced {
        /// Whether it would be denied were every scope enforced.
        would_deny: bool,
        /// The scopes that would be missing (empty when `would_deny` is false).
        missing: Vec<Scope>,
    },
    /// An enforced requirement is not met: 403.
    Denied {
        /// The scopes missing (for all-of) or the alternatives (for any-of).
        missing: Vec<Scope>,
    },
}

impl Decision {
    /// Whether the request may proceed (`Allowed` or `NotEnforced`).
    #[must_use]
    pub fn is_permitted(&self) -> bool {
        !matches!(self, Decision::Denied { .. })
    }
}
