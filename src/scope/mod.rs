//! Scopes, the catalog that declares them (enforced or "soon"), and the
//! evaluation of a route's requirement against a key's grants.
//!
//! By concern: scope names and sets ([`Scope`], [`ScopeSet`]), the catalog
//! ([`ScopeCatalog`] and its builder, [`ScopeEntry`], [`ScopeStatus`]), a
//! route's [`Requirement`] and the [`Decision`] it yields, and the
//! serialized permission grid a UI renders.
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

mod catalog;
mod grid;
mod name;
mod requirement;
#[cfg(test)]
mod tests;

pub use catalog::{ScopeCatalog, ScopeCatalogBuilder, ScopeEntry, ScopeStatus};
pub use name::{Scope, ScopeSet};
pub use requirement::{Decision, Requirement};
