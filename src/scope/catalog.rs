//! The catalog: every scope a service knows, its status and implications.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ScopeError;

use super::name::{Scope, ScopeSet};

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
#[serde(try_from = "super::grid::CatalogDef", into = "super::grid::CatalogDef")]
pub struct ScopeCatalog {
    pub(super) entries: Vec<ScopeEntry>,
    pub(super) index: HashMap<Scope, usize>,
    /// For each declared scope, every declared scope that implies it,
    /// directly or transitively (itself excluded).
    pub(super) implied_by: HashMap<Scope, Vec<Scope>>,
    pub(super) wildcards: bool,
    /// Whether any declared scope is "soon": when none is, evaluating a
    /// requirement looks no status up.
    pub(super) any_soon: bool,
}

impl fmt::Debug for ScopeCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeCatalog")
            .field("entries", &self.entries)
            .field("wildcards", &self.wildcards)
            .finish()
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
    ///
    /// # Errors
    ///
    /// [`ScopeError`] for a malformed or duplicate scope, or an implication
    /// naming an undeclared scope.
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

    pub(super) fn from_entries(
        mut entries: Vec<ScopeEntry>,
        wildcards: bool,
    ) -> Result<Self, ScopeError> {
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
    ///
    /// # Errors
    ///
    /// [`ScopeError::Unknown`] when the catalog does not declare `scope`
    /// ([`ScopeError::Invalid`] when it is malformed).
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
    ///
    /// # Errors
    ///
    /// [`ScopeError::Invalid`] for a malformed scope, [`ScopeError::Unknown`]
    /// for one the catalog does not declare (or a wildcard it does not allow).
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

    /// The scopes of `scopes` this catalog would [`grant`](Self::grant),
    /// the others (undeclared, malformed, or wildcards it does not allow)
    /// dropped: for scopes another system issued, such as a JWT's `scope`
    /// claim (`openid email games:read`).
    ///
    /// ```
    /// use keyward::{Scope, ScopeCatalog, ScopeStatus};
    ///
    /// let c = ScopeCatalog::builder().scope("games:read", "", ScopeStatus::Enforced).build().unwrap();
    /// let set = c.grant_known("openid games:read Bad*Scope".split(' '));
    /// assert_eq!(set.iter().map(Scope::as_str).collect::<Vec<_>>(), ["games:read"]);
    /// ```
    #[must_use]
    pub fn grant_known<I, S>(&self, scopes: I) -> ScopeSet
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let known: Vec<Scope> = scopes
            .into_iter()
            .filter_map(|s| self.grant([s.as_ref()]).ok())
            .flat_map(|set| set.iter().cloned().collect::<Vec<_>>())
            .collect();
        ScopeSet::parse(known.iter().map(Scope::as_str)).unwrap_or_default()
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
}
