//! Scopes, the catalog that declares them (enforced or "soon"), and the
//! evaluation of a route's requirement against a key's grants.
//!
//! ```
//! use keyward::{Decision, Requirement, ScopeCatalog, ScopeStatus};
//!
//! let catalog = ScopeCatalog::builder()
//!     .scope("games:read", "Read games", ScopeStatus::Soon)
//!     .scope("versions:write", "Upload versions", ScopeStatus::Enforced)
//!     .build()
//!     .unwrap();
//! let granted = catalog.grant(["games:read"]).unwrap();
//!
//! let upload = Requirement::all(["versions:write"]).unwrap();
//! assert!(matches!(catalog.evaluate(&upload, &granted), Decision::Denied { .. }));
//!
//! let none = catalog.grant(Vec::<String>::new()).unwrap();
//! let list = Requirement::all(["games:read"]).unwrap();
//! assert!(matches!(
//!     catalog.evaluate(&list, &none),
//!     Decision::NotEnforced { would_deny: true, .. }
//! ));
//! ```

use std::collections::{BTreeSet, HashMap};
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
    fn wildcard_covers(&self, other: &Scope) -> bool {
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
    /// [`ScopeCatalog::grant`] for that).
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

/// Whether the API checks a scope yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ScopeStatus {
    /// Checked: a key without it is refused (403).
    Enforced,
    /// Shown and grantable, not yet checked: a key without it passes, and the
    /// decision is recorded as "would deny".
    Soon,
}

/// One row of the permission grid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScopeEntry {
    /// The scope.
    pub name: Scope,
    /// Its resource (the part before `:`), for grouping in a UI.
    #[serde(default, skip_deserializing)]
    pub resource: String,
    /// Its action (the part after `:`), if any.
    #[serde(default, skip_deserializing)]
    pub action: Option<String>,
    /// What it allows, for people.
    pub description: String,
    /// Enforced or soon.
    pub status: ScopeStatus,
    /// Scopes this one grants as well (`write` implies `read`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub implies: Vec<Scope>,
}

#[derive(Serialize, Deserialize)]
struct CatalogDef {
    scopes: Vec<ScopeEntry>,
    #[serde(default)]
    wildcards: bool,
}

/// Every scope a service knows, with its description, status and
/// implications. Serializes (serde) to the permission grid a UI renders, and
/// deserializes from the same shape, so statuses can come from configuration.
///
/// ```
/// use keyward::{ScopeCatalog, ScopeStatus};
///
/// let catalog = ScopeCatalog::builder()
///     .scope("read", "Read data", ScopeStatus::Enforced)
///     .scope("write", "Change data", ScopeStatus::Enforced)
///     .implies("write", "read")
///     .build()
///     .unwrap();
/// let json = serde_json::to_value(&catalog).unwrap();
/// assert_eq!(json["scopes"][1]["name"], "write");
/// assert_eq!(json["scopes"][1]["status"], "enforced");
/// let back: ScopeCatalog = serde_json::from_value(json).unwrap();
/// assert_eq!(back, catalog);
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CatalogDef", into = "CatalogDef")]
pub struct ScopeCatalog {
    entries: Vec<ScopeEntry>,
    index: HashMap<Scope, usize>,
    /// For each declared scope, every declared scope that implies it,
    /// directly or transitively (itself excluded).
    implied_by: HashMap<Scope, Vec<Scope>>,
    wildcards: bool,
    /// Whether any declared scope is "soon": when none is, evaluating a
    /// requirement looks no status up.
    any_soon: bool,
}

impl fmt::Debug for ScopeCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeCatalog")
            .field("entries", &self.entries)
            .field("wildcards", &self.wildcards)
            .finish()
    }
}

impl TryFrom<CatalogDef> for ScopeCatalog {
    type Error = ScopeError;
    fn try_from(def: CatalogDef) -> Result<Self, Self::Error> {
        ScopeCatalog::from_entries(def.scopes, def.wildcards)
    }
}

impl From<ScopeCatalog> for CatalogDef {
    fn from(c: ScopeCatalog) -> Self {
        CatalogDef {
            scopes: c.entries,
            wildcards: c.wildcards,
        }
    }
}

/// Builds a [`ScopeCatalog`]; errors surface in [`build`](Self::build).
#[derive(Debug, Default)]
#[must_use]
pub struct ScopeCatalogBuilder {
    scopes: Vec<(String, String, ScopeStatus)>,
    implications: Vec<(String, String)>,
    wildcards: bool,
}

impl ScopeCatalogBuilder {
    /// Declares a scope.
    pub fn scope(mut self, name: &str, description: &str, status: ScopeStatus) -> Self {
        self.scopes
            .push((name.to_owned(), description.to_owned(), status));
        self
    }

    /// Declares that a key granted `from` also holds `to` (both declared).
    pub fn implies(mut self, from: &str, to: &str) -> Self {
        self.implications.push((from.to_owned(), to.to_owned()));
        self
    }

    /// Lets keys be granted `*` (everything) and `resource:*` (every action
    /// of a declared resource).
    pub fn allow_wildcards(mut self) -> Self {
        self.wildcards = true;
        self
    }

    /// Validates every declaration.
    pub fn build(self) -> Result<ScopeCatalog, ScopeError> {
        let mut entries = Vec::with_capacity(self.scopes.len());
        for (name, description, status) in self.scopes {
            entries.push(ScopeEntry {
                name: Scope::parse(&name)?,
                resource: String::new(),
                action: None,
                description,
                status,
                implies: Vec::new(),
            });
        }
        for (from, to) in self.implications {
            let to = Scope::parse(&to)?;
            let from = Scope::parse(&from)?;
            let entry = entries
                .iter_mut()
                .find(|e| e.name == from)
                .ok_or_else(|| ScopeError::Unknown(from.to_string()))?;
            entry.implies.push(to);
        }
        ScopeCatalog::from_entries(entries, self.wildcards)
    }
}

fn any_soon(entries: &[ScopeEntry]) -> bool {
    entries.iter().any(|e| e.status == ScopeStatus::Soon)
}

impl ScopeCatalog {
    /// A builder.
    pub fn builder() -> ScopeCatalogBuilder {
        ScopeCatalogBuilder::default()
    }

    fn from_entries(mut entries: Vec<ScopeEntry>, wildcards: bool) -> Result<Self, ScopeError> {
        let mut index = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter_mut().enumerate() {
            if e.name.is_wildcard() {
                return Err(ScopeError::Invalid(e.name.to_string()));
            }
            e.resource = e.name.resource().to_owned();
            e.action = e.name.action().map(str::to_owned);
            e.implies.sort();
            e.implies.dedup();
            if index.insert(e.name.clone(), i).is_some() {
                return Err(ScopeError::Duplicate(e.name.to_string()));
            }
        }
        for e in &entries {
            if let Some(unknown) = e.implies.iter().find(|s| !index.contains_key(*s)) {
                return Err(ScopeError::Unknown(unknown.to_string()));
            }
        }
        let mut implied_by: HashMap<Scope, Vec<Scope>> = HashMap::new();
        for e in &entries {
            // Everything `e` reaches through implications, by depth-first walk.
            let mut seen = BTreeSet::new();
            let mut stack: Vec<&Scope> = e.implies.iter().collect();
            while let Some(s) = stack.pop() {
                if s != &e.name && seen.insert(s.clone()) {
                    stack.extend(entries[index[s]].implies.iter());
                }
            }
            for s in seen {
                implied_by.entry(s).or_default().push(e.name.clone());
            }
        }
        let any_soon = any_soon(&entries);
        Ok(ScopeCatalog {
            entries,
            index,
            implied_by,
            wildcards,
            any_soon,
        })
    }

    /// The declared scopes, in declaration order: the permission grid.
    #[must_use]
    pub fn entries(&self) -> &[ScopeEntry] {
        &self.entries
    }

    /// The declaration of a scope.
    #[must_use]
    pub fn get(&self, scope: &Scope) -> Option<&ScopeEntry> {
        self.index.get(scope).map(|&i| &self.entries[i])
    }

    /// The status of a scope; an undeclared scope counts as enforced, so a
    /// typo in a requirement fails closed.
    #[must_use]
    pub fn status(&self, scope: &Scope) -> ScopeStatus {
        self.get(scope).map_or(ScopeStatus::Enforced, |e| e.status)
    }

    /// The same catalog with one scope's status changed: how an operator flips
    /// a "soon" scope to enforced from configuration.
    ///
    /// ```
    /// use keyward::{ScopeCatalog, ScopeStatus};
    ///
    /// let c = ScopeCatalog::builder().scope("games:read", "", ScopeStatus::Soon).build().unwrap();
    /// let c = c.with_status("games:read", ScopeStatus::Enforced).unwrap();
    /// assert_eq!(c.status(&"games:read".parse().unwrap()), ScopeStatus::Enforced);
    /// ```
    pub fn with_status(mut self, scope: &str, status: ScopeStatus) -> Result<Self, ScopeError> {
        let scope = Scope::parse(scope)?;
        let i = *self
            .index
            .get(&scope)
            .ok_or_else(|| ScopeError::Unknown(scope.to_string()))?;
        self.entries[i].status = status;
        self.any_soon = any_soon(&self.entries);
        Ok(self)
    }

    /// Whether `*` and `resource:*` may be granted and are honoured.
    #[must_use]
    pub fn allows_wildcards(&self) -> bool {
        self.wildcards
    }

    /// Validates scopes to grant to a key: each must be declared, or be a
    /// wildcard over declared scopes where the catalog allows wildcards.
    ///
    /// ```
    /// use keyward::{ScopeCatalog, ScopeError, ScopeStatus};
    ///
    /// let c = ScopeCatalog::builder().scope("read", "", ScopeStatus::Enforced).build().unwrap();
    /// assert!(c.grant(["read"]).is_ok());
    /// assert!(matches!(c.grant(["admin"]), Err(ScopeError::Unknown(_))));
    /// assert!(matches!(c.grant(["*"]), Err(ScopeError::Unknown(_))));
    /// ```
    pub fn grant<I, S>(&self, scopes: I) -> Result<ScopeSet, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let set = ScopeSet::parse(scopes)?;
        for s in set.iter() {
            let known = if s.is_wildcard() {
                self.wildcards
                    && (s.as_str() == "*"
                        || self.entries.iter().any(|e| e.resource == s.resource()))
            } else {
                self.index.contains_key(s)
            };
            if !known {
                return Err(ScopeError::Unknown(s.to_string()));
            }
        }
        Ok(set)
    }

    /// Whether `granted` covers `required`: directly, through an implication,
    /// or through a wildcard the catalog allows. Wildcards and implications
    /// only ever cover scopes the catalog declares: `*` does not satisfy a
    /// requirement on a scope of another catalog.
    #[must_use]
    pub fn covers(&self, granted: &ScopeSet, required: &Scope) -> bool {
        if granted.contains(required) {
            return true;
        }
        if !self.index.contains_key(required) {
            return false;
        }
        if self.wildcards && granted.iter().any(|g| g.wildcard_covers(required)) {
            return true;
        }
        self.implied_by
            .get(required)
            .is_some_and(|by| by.iter().any(|s| granted.contains(s)))
    }

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
    pub fn all<I, S>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::parse_list(scopes).map(Requirement::All)
    }

    /// Any one of these scopes is enough.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn playable_labs() -> ScopeCatalog {
        let mut b = ScopeCatalog::builder();
        for (name, status) in [
            ("games:read", ScopeStatus::Soon),
            ("games:write", ScopeStatus::Soon),
            ("games:delete", ScopeStatus::Soon),
            ("versions:read", ScopeStatus::Soon),
            ("versions:write", ScopeStatus::Enforced),
            ("assets:read", ScopeStatus::Soon),
            ("assets:write", ScopeStatus::Enforced),
            ("exports:read", ScopeStatus::Soon),
            ("exports:create", ScopeStatus::Soon),
        ] {
            b = b.scope(name, name, status);
        }
        b.allow_wildcards().build().unwrap()
    }

    fn player_os() -> ScopeCatalog {
        ScopeCatalog::builder()
            .scope("read", "Read", ScopeStatus::Enforced)
            .scope("write", "Write", ScopeStatus::Enforced)
            .implies("write", "read")
            .build()
            .unwrap()
    }

    fn s(x: &str) -> Scope {
        x.parse().unwrap()
    }

    #[test]
    fn scope_syntax() {
        for ok in ["read", "versions:write", "a-b_c:d1", "*", "games:*"] {
            assert!(Scope::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ":", "a:", ":b", "A", "a b", "a:b:c", "1a", "*:read", "a:**", "é", "a\n",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Scope::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn player_os_write_implies_read() {
        let c = player_os();
        let rw = c.grant(["read", "write"]).unwrap();
        let ro = c.grant(["read"]).unwrap();
        let wo = c.grant(["write"]).unwrap();
        let read = Requirement::all(["read"]).unwrap();
        let write = Requirement::all(["write"]).unwrap();
        assert_eq!(c.evaluate(&read, &rw), Decision::Allowed);
        assert_eq!(c.evaluate(&read, &wo), Decision::Allowed);
        assert_eq!(
            c.evaluate(&write, &ro),
            Decision::Denied {
                missing: vec![s("write")]
            }
        );
    }

    #[test]
    fn playable_labs_enforced_and_soon() {
        let c = playable_labs();
        let reader = c.grant(["games:read", "versions:read"]).unwrap();
        let empty = c.grant(Vec::<String>::new()).unwrap();
        let upload = Requirement::all(["versions:write"]).unwrap();
        assert_eq!(
            c.evaluate(&upload, &reader),
            Decision::Denied {
                missing: vec![s("versions:write")]
            }
        );
        let list = Requirement::all(["games:read"]).unwrap();
        assert_eq!(
            c.evaluate(&list, &reader),
            Decision::NotEnforced {
                would_deny: false,
                missing: vec![]
            }
        );
        assert_eq!(
            c.evaluate(&list, &empty),
            Decision::NotEnforced {
                would_deny: true,
                missing: vec![s("games:read")]
            }
        );
        // Mixed: the enforced half decides.
        let both = Requirement::all(["games:read", "assets:write"]).unwrap();
        assert!(matches!(
            c.evaluate(&both, &reader),
            Decision::Denied { .. }
        ));
        let writer = c.grant(["assets:write"]).unwrap();
        assert_eq!(
            c.evaluate(&both, &writer),
            Decision::NotEnforced {
                would_deny: true,
                missing: vec![s("games:read")]
            }
        );
    }

    #[test]
    fn any_of() {
        let c = playable_labs();
        let req = Requirement::any(["versions:write", "assets:write"]).unwrap();
        let assets = c.grant(["assets:write"]).unwrap();
        let none = c.grant(Vec::<String>::new()).unwrap();
        assert_eq!(c.evaluate(&req, &assets), Decision::Allowed);
        assert_eq!(
            c.evaluate(&req, &none),
            Decision::Denied {
                missing: vec![s("versions:write"), s("assets:write")]
            }
        );
        let soon_alt = Requirement::any(["versions:write", "games:write"]).unwrap();
        assert!(matches!(
            c.evaluate(&soon_alt, &none),
            Decision::NotEnforced {
                would_deny: true,
                ..
            }
        ));
    }

    #[test]
    fn wildcards_only_where_allowed() {
        let c = playable_labs();
        let all = c.grant(["*"]).unwrap();
        let games = c.grant(["games:*"]).unwrap();
        assert!(c.covers(&all, &s("assets:write")));
        assert!(c.covers(&games, &s("games:delete")));
        assert!(!c.covers(&games, &s("versions:write")));
        assert!(matches!(c.grant(["nope:*"]), Err(ScopeError::Unknown(_))));
        let p = player_os();
        assert!(matches!(p.grant(["*"]), Err(ScopeError::Unknown(_))));
        // Without permission a wildcard in a granted set does not count.
        let forged = ScopeSet::parse(["*"]).unwrap();
        assert!(!p.covers(&forged, &s("read")));
        // A wildcard never covers an undeclared scope (another catalog's, or
        // an action the catalog does not know).
        for undeclared in ["keys:manage", "read", "games:admin"] {
            assert!(!c.covers(&all, &s(undeclared)), "{undeclared}");
            let req = Requirement::all([undeclared]).unwrap();
            assert!(matches!(c.evaluate(&req, &all), Decision::Denied { .. }));
        }
        assert!(!c.covers(&games, &s("games:admin")));
    }

    #[test]
    fn implications_are_transitive_and_checked() {
        let c = ScopeCatalog::builder()
            .scope("admin", "", ScopeStatus::Enforced)
            .scope("write", "", ScopeStatus::Enforced)
            .scope("read", "", ScopeStatus::Enforced)
            .implies("admin", "write")
            .implies("write", "read")
            .implies("read", "admin") // a cycle is harmless
            .build()
            .unwrap();
        let admin = c.grant(["admin"]).unwrap();
        assert!(c.covers(&admin, &s("read")));
        let bad = ScopeCatalog::builder()
            .scope("a", "", ScopeStatus::Enforced)
            .implies("a", "b")
            .build();
        assert_eq!(bad.unwrap_err(), ScopeError::Unknown("b".into()));
        let dup = ScopeCatalog::builder()
            .scope("a", "", ScopeStatus::Enforced)
            .scope("a", "", ScopeStatus::Soon)
            .build();
        assert_eq!(dup.unwrap_err(), ScopeError::Duplicate("a".into()));
    }

    #[test]
    fn undeclared_required_scope_fails_closed() {
        let c = player_os();
        let rw = c.grant(["read", "write"]).unwrap();
        let typo = Requirement::all(["wrte"]).unwrap();
        assert!(matches!(c.evaluate(&typo, &rw), Decision::Denied { .. }));
    }

    #[test]
    fn invalid_scopes_are_named_in_the_error_at_most_129_characters_long() {
        assert_eq!(
            Scope::parse("Read").unwrap_err(),
            ScopeError::Invalid("Read".into())
        );
        let long = format!("{}é", "A".repeat(300));
        assert_eq!(
            Scope::parse(&long).unwrap_err(),
            ScopeError::Invalid("A".repeat(129))
        );
    }

    #[test]
    fn sets_print_sorted_and_space_separated() {
        for (scopes, printed) in [
            (vec![], ""),
            (vec!["read"], "read"),
            (vec!["write", "read"], "read write"),
            (vec!["c", "a", "b", "a"], "a b c"),
        ] {
            let set = ScopeSet::parse(&scopes).unwrap();
            assert_eq!(set.to_string(), printed);
            assert_eq!(set.len(), printed.split_whitespace().count());
            assert_eq!(set.is_empty(), scopes.is_empty());
        }
        let set = ScopeSet::parse(["write", "read"]).unwrap();
        assert_eq!(format!("{set:?}"), r#"["read", "write"]"#);
        assert_eq!(format!("{:?}", s("games:*")), r#""games:*""#);
    }

    #[test]
    fn sets_serialize_as_sorted_lists() {
        let set = ScopeSet::parse(["write", "read"]).unwrap();
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(json, serde_json::json!(["read", "write"]));
        // Read back sorted and without duplicates, whatever the order.
        let back: ScopeSet =
            serde_json::from_value(serde_json::json!(["write", "read", "write"])).unwrap();
        assert_eq!(back, set);
        assert_eq!(Vec::<Scope>::from(set), vec![s("read"), s("write")]);
        assert!(serde_json::from_value::<ScopeSet>(serde_json::json!(["Bad"])).is_err());
    }

    #[test]
    fn requirements_print_in_the_order_given() {
        for (scopes, printed) in [
            (vec!["b"], "b"),
            (vec!["b", "a"], "b a"),
            (vec!["c", "a", "b"], "c a b"),
        ] {
            assert_eq!(Requirement::all(&scopes).unwrap().to_string(), printed);
            assert_eq!(Requirement::any(&scopes).unwrap().to_string(), printed);
        }
    }

    #[test]
    fn catalog_accessors() {
        let c = playable_labs();
        assert!(c.allows_wildcards());
        assert!(!player_os().allows_wildcards());
        let names: Vec<&str> = c.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names[..3], ["games:read", "games:write", "games:delete"]);
        assert_eq!(names.len(), 9);
        let debug = format!("{:?}", player_os());
        assert!(
            debug.starts_with(r#"ScopeCatalog { entries: [ScopeEntry { name: "read""#),
            "{debug}"
        );
        assert!(debug.ends_with("wildcards: false }"), "{debug}");
    }

    /// A catalog whose scopes are all "soon": nothing is denied yet, and
    /// the decisions still say what would be.
    #[test]
    fn an_all_soon_catalog_denies_nothing() {
        let c = ScopeCatalog::builder()
            .scope("games:read", "", ScopeStatus::Soon)
            .scope("games:write", "", ScopeStatus::Soon)
            .build()
            .unwrap();
        let none = c.grant(Vec::<String>::new()).unwrap();
        let req = Requirement::all(["games:read", "games:write"]).unwrap();
        assert_eq!(
            c.evaluate(&req, &none),
            Decision::NotEnforced {
                would_deny: true,
                missing: vec![s("games:read"), s("games:write")]
            }
        );
        // Enforcing one of them makes its half decide.
        let c = c.with_status("games:write", ScopeStatus::Enforced).unwrap();
        assert!(matches!(c.evaluate(&req, &none), Decision::Denied { .. }));
        let c = c.with_status("games:write", ScopeStatus::Soon).unwrap();
        assert!(c.evaluate(&req, &none).is_permitted());
    }

    #[test]
    fn grid_serializes_with_resource_and_action() {
        let json = serde_json::to_value(playable_labs()).unwrap();
        let row = &json["scopes"][4];
        assert_eq!(row["name"], "versions:write");
        assert_eq!(row["resource"], "versions");
        assert_eq!(row["action"], "write");
        assert_eq!(row["status"], "enforced");
        assert_eq!(json["scopes"][0]["status"], "soon");
        assert_eq!(json["wildcards"], true);
    }
}
