//! Scope names (`resource:action`, wildcards) and sets of them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::ScopeError;

const MAX_PART_LEN: usize = 64;

/// A scope: `name` (`read`) or `resource:action` (`versions:write`), each part
/// 1–64 of `[a-z0-9_-]` starting with a letter. The wildcards `*` and
/// `resource:*` are scopes too, grantable where the catalog allows them.
///
/// Cloning is cheap.
///
/// ```
/// use keyward::Scope;
///
/// let s: Scope = "versions:write".parse().unwrap();
/// assert_eq!(s.resource(), "versions");
/// assert_eq!(s.action(), Some("write"));
/// assert!(!s.is_wildcard());
/// assert!("games:*".parse::<Scope>().unwrap().is_wildcard());
/// assert!("a:b:c".parse::<Scope>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(Arc<str>);

impl Scope {
    /// Parses and validates a scope.
    ///
    /// # Errors
    ///
    /// [`ScopeError::Invalid`] when `input` is not `name`, `resource:action`
    /// or a wildcard in `[a-z0-9_-]`.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let invalid = || ScopeError::Invalid(truncate_for_error(input));
        if input == "*" {
            return Ok(Scope(Arc::from(input)));
        }
        let mut parts = input.split(':');
        let resource = parts.next().unwrap_or_default();
        let action = parts.next();
        if parts.next().is_some() || !valid_part(resource) {
            return Err(invalid());
        }
        if let Some(action) = action {
            if action != "*" && !valid_part(action) {
                return Err(invalid());
            }
        }
        Ok(Scope(Arc::from(input)))
    }

    /// The scope as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `:`, or the whole name.
    #[must_use]
    pub fn resource(&self) -> &str {
        self.0.split(':').next().unwrap_or_default()
    }

    /// The part after `:`, if any.
    #[must_use]
    pub fn action(&self) -> Option<&str> {
        self.0.split_once(':').map(|(_, a)| a)
    }

    /// Whether this is `*` or `resource:*`.
    #[must_use]
    pub fn is_wildcard(&self) -> bool {
        &*self.0 == "*" || self.action() == Some("*")
    }

    /// Whether this scope, as a wildcard, covers `other`.
    pub(super) fn wildcard_covers(&self, other: &Scope) -> bool {
        &*self.0 == "*" || (self.action() == Some("*") && self.resource() == other.resource())
    }
}

fn valid_part(part: &str) -> bool {
    let b = part.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_PART_LEN
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Keeps error messages small when the input is hostile.
fn truncate_for_error(input: &str) -> String {
    input.chars().take(MAX_PART_LEN * 2 + 1).collect()
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s)
    }
}

impl TryFrom<String> for Scope {
    type Error = ScopeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Scope::parse(&s)
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.as_str().to_owned()
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The scopes granted to a key: sorted, without duplicates, cheap to clone.
///
/// ```
/// use keyward::ScopeSet;
///
/// let set = ScopeSet::parse(["write", "read", "read"]).unwrap();
/// assert_eq!(set.to_string(), "read write");
/// assert!(set.contains(&"read".parse().unwrap()));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<Scope>", into = "Vec<Scope>")]
pub struct ScopeSet(Arc<[Scope]>);

impl ScopeSet {
    /// Parses scopes without checking them against a catalog (see
    /// [`ScopeCatalog::grant`](super::ScopeCatalog::grant) for that).
    ///
    /// # Errors
    ///
    /// [`ScopeError::Invalid`] for a malformed scope.
    pub fn parse<I, S>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        scopes
            .into_iter()
            .map(|s| Scope::parse(s.as_ref()))
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self::from_sorted)
    }

    fn from_sorted(set: BTreeSet<Scope>) -> Self {
        ScopeSet(set.into_iter().collect())
    }

    /// Whether the set holds exactly this scope (no implication or wildcard).
    #[must_use]
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.binary_search(scope).is_ok()
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// How many scopes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Vec<Scope>> for ScopeSet {
    type Error = ScopeError;
    fn try_from(v: Vec<Scope>) -> Result<Self, Self::Error> {
        Ok(Self::from_sorted(v.into_iter().collect()))
    }
}

impl From<ScopeSet> for Vec<Scope> {
    fn from(s: ScopeSet) -> Self {
        s.0.to_vec()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        Self::from_sorted(iter.into_iter().collect())
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

/// Space-separated, as in OAuth's `scope` parameter.
impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}
