//! Unit tests of scopes, catalogs and decisions.

use super::*;
use crate::error::ScopeError;

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
