//! The serialized permission grid: the shape a [`ScopeCatalog`] takes in
//! JSON (and any serde format), validated again on the way in.

use serde::{Deserialize, Serialize};

use crate::error::ScopeError;

use super::catalog::{ScopeCatalog, ScopeEntry};

#[derive(Serialize, Deserialize)]
pub(super) struct CatalogDef {
    pub(super) scopes: Vec<ScopeEntry>,
    #[serde(default)]
    pub(super) wildcards: bool,
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
