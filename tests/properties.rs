//! Property tests: parsers never panic, generated tokens round-trip, and the
//! scope algebra obeys its laws.

mod common;

use keyward::{
    Decision, Requirement, Scope, ScopeCatalog, ScopeSet, ScopeStatus, TokenFormat, TokenKind,
};
use proptest::prelude::*;

fn kinds() -> TokenFormat {
    TokenFormat::new(["pk", "pl", "pk_test"].map(|p| TokenKind::new(p).unwrap()))
}

proptest! {
    /// No grant, wildcards included, covers a scope its catalog does not
    /// declare: a key can never pass a requirement of another catalog.
    #[test]
    fn nothing_covers_an_undeclared_scope(
        granted in proptest::sample::subsequence(
            vec!["*", "games:*", "versions:*", "games:read", "assets:write"], 0..=5),
        undeclared in "[a-z]{1,8}(:[a-z]{1,8})?",
    ) {
        let catalog = common::playable_labs();
        let undeclared: Scope = undeclared.parse().unwrap();
        prop_assume!(catalog.get(&undeclared).is_none());
        let granted = catalog.grant(&granted).unwrap();
        prop_assert!(!catalog.covers(&granted, &undeclared));
    }

    #[test]
    fn token_parse_never_panics(input in any::<String>()) {
        let _ = kinds().parse(&input);
    }

    #[test]
    fn token_parse_never_panics_on_near_tokens(prefix in "(pk|pl|pk_test|p|x)_", body in "[0-9A-Za-z_\\-]{0,45}") {
        let _ = kinds().parse(&format!("{prefix}{body}"));
    }

    #[test]
    fn generated_tokens_round_trip(prefix in "[a-z][a-z0-9_]{0,14}[a-z0-9]") {
        let kind = TokenKind::new(&prefix).unwrap();
        let format = TokenFormat::new([kind.clone()]);
        let token = kind.generate();
        let parsed = format.parse(token.expose_secret()).unwrap();
        prop_assert_eq!(parsed.kind(), &kind);
        prop_assert_eq!(parsed.display_prefix(), &token.expose_secret()[..8]);
    }

    /// Every kind of one format, `pk_test` beside `pk` included: a generated
    /// token parses back as its own kind, whole.
    #[test]
    fn generated_tokens_round_trip_in_a_shared_format(which in 0usize..3) {
        let format = kinds();
        let kind = &format.kinds()[which];
        let token = kind.generate();
        let parsed = format.parse(token.expose_secret()).unwrap();
        prop_assert_eq!(parsed.kind(), kind);
        prop_assert_eq!(parsed.expose_secret(), token.expose_secret());
        prop_assert_eq!(token.expose_secret().len(), kind.token_len());
    }

    #[test]
    fn any_single_character_change_is_caught(pos in 3usize..39, replacement in "[0-9A-Za-z]") {
        let kind = TokenKind::new("pl").unwrap();
        let format = TokenFormat::new([kind.clone()]);
        let token = kind.generate();
        let mut bytes = token.expose_secret().as_bytes().to_vec();
        let r = replacement.as_bytes()[0];
        prop_assume!(bytes[pos] != r);
        bytes[pos] = r;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert!(format.parse(&changed).is_err());
    }

    #[test]
    fn scope_parse_never_panics(input in any::<String>()) {
        let _ = input.parse::<Scope>();
    }

    #[test]
    fn scope_display_round_trips(s in "[a-z][a-z0-9_-]{0,10}(:[a-z][a-z0-9_-]{0,10})?") {
        let scope: Scope = s.parse().unwrap();
        prop_assert_eq!(scope.to_string(), s);
    }

    /// A requirement is permitted exactly when every enforced scope it names
    /// is covered (all-of), and allowed outright exactly when every scope is.
    #[test]
    fn all_of_is_permitted_iff_enforced_scopes_are_covered(
        granted in proptest::sample::subsequence(ALL.to_vec(), 0..=ALL.len()),
        required in proptest::sample::subsequence(ALL.to_vec(), 1..=4),
    ) {
        let catalog = common::playable_labs();
        let granted = catalog.grant(&granted).unwrap();
        let req = Requirement::all(&required).unwrap();
        let decision = catalog.evaluate(&req, &granted);
        let covered = |s: &&str| granted.contains(&s.parse().unwrap());
        let enforced = |s: &&str| catalog.status(&s.parse().unwrap()) == ScopeStatus::Enforced;
        let enforced_covered = required.iter().filter(|s| enforced(s)).all(&covered);
        let all_covered = required.iter().all(covered);
        prop_assert_eq!(decision.is_permitted(), enforced_covered);
        if enforced_covered {
            let would_deny = matches!(decision, Decision::NotEnforced { would_deny: true, .. });
            prop_assert_eq!(would_deny, !all_covered);
        }
    }

    /// The same for any-of: permitted exactly when one named scope is covered
    /// or one is "soon"; allowed outright exactly when one is covered and
    /// none is "soon".
    #[test]
    fn any_of_is_permitted_iff_a_scope_is_covered_or_soon(
        granted in proptest::sample::subsequence(ALL.to_vec(), 0..=ALL.len()),
        required in proptest::sample::subsequence(ALL.to_vec(), 1..=4),
    ) {
        let catalog = common::playable_labs();
        let granted = catalog.grant(&granted).unwrap();
        let req = Requirement::any(&required).unwrap();
        let decision = catalog.evaluate(&req, &granted);
        let soon = |s: &&str| catalog.status(&s.parse().unwrap()) == ScopeStatus::Soon;
        let one_covered = required.iter().any(|s| catalog.covers(&granted, &s.parse().unwrap()));
        let any_soon = required.iter().any(soon);
        prop_assert_eq!(decision.is_permitted(), one_covered || any_soon);
        prop_assert_eq!(decision == Decision::Allowed, one_covered && !any_soon);
        if let Decision::NotEnforced { would_deny, .. } = decision {
            prop_assert_eq!(would_deny, !one_covered);
        }
    }

    /// All-of, exactly: allowed outright iff every scope is covered and none
    /// is "soon".
    #[test]
    fn all_of_is_allowed_iff_covered_and_enforced(
        granted in proptest::sample::subsequence(ALL.to_vec(), 0..=ALL.len()),
        required in proptest::sample::subsequence(ALL.to_vec(), 1..=4),
    ) {
        let catalog = common::playable_labs();
        let granted = catalog.grant(&granted).unwrap();
        let decision = catalog.evaluate(&Requirement::all(&required).unwrap(), &granted);
        let all_covered = required.iter().all(|s| catalog.covers(&granted, &s.parse().unwrap()));
        let any_soon = required.iter().any(|s| catalog.status(&s.parse().unwrap()) == ScopeStatus::Soon);
        prop_assert_eq!(decision == Decision::Allowed, all_covered && !any_soon);
    }

    /// Implication is transitive, and nothing more: on a catalog with random
    /// implications (cycles included), granting one scope covers exactly the
    /// scopes reachable from it.
    #[test]
    fn implication_is_transitive(
        edges in proptest::collection::vec((0usize..6, 0usize..6), 0..12),
        from in 0usize..6,
    ) {
        let names = ["s0", "s1", "s2", "s3", "s4", "s5"];
        let mut builder = ScopeCatalog::builder();
        for name in names {
            builder = builder.scope(name, name, ScopeStatus::Enforced);
        }
        for &(a, b) in &edges {
            builder = builder.implies(names[a], names[b]);
        }
        let catalog = builder.build().unwrap();
        let mut reach = [false; 6];
        reach[from] = true;
        let mut stack = vec![from];
        while let Some(a) = stack.pop() {
            for &(x, y) in &edges {
                if x == a && !reach[y] {
                    reach[y] = true;
                    stack.push(y);
                }
            }
        }
        let granted = catalog.grant([names[from]]).unwrap();
        for (i, name) in names.iter().enumerate() {
            prop_assert_eq!(catalog.covers(&granted, &name.parse().unwrap()), reach[i], "{}", name);
        }
    }

    /// `*` covers every declared scope; `resource:*` exactly its resource's.
    #[test]
    fn wildcards_cover_their_resource(resource in proptest::sample::select(vec!["games", "versions", "assets", "exports"])) {
        let catalog = common::playable_labs();
        let star = catalog.grant(["*"]).unwrap();
        let res = catalog.grant([format!("{resource}:*")]).unwrap();
        for scope in ALL {
            let s: Scope = scope.parse().unwrap();
            prop_assert!(catalog.covers(&star, &s));
            prop_assert_eq!(catalog.covers(&res, &s), s.resource() == resource);
        }
    }

    /// Implication is monotone: adding grants never removes coverage.
    #[test]
    fn coverage_is_monotone(
        a in proptest::sample::subsequence(vec!["read", "write"], 0..=2),
        b in proptest::sample::subsequence(vec!["read", "write"], 0..=2),
    ) {
        let catalog = common::player_os();
        let small = catalog.grant(&a).unwrap();
        let big: ScopeSet = small.iter().cloned().chain(catalog.grant(&b).unwrap().iter().cloned()).collect();
        for s in ["read", "write"] {
            let s: Scope = s.parse().unwrap();
            if catalog.covers(&small, &s) {
                prop_assert!(catalog.covers(&big, &s));
            }
        }
    }
}

const ALL: [&str; 9] = [
    "games:read",
    "games:write",
    "games:delete",
    "versions:read",
    "versions:write",
    "assets:read",
    "assets:write",
    "exports:read",
    "exports:create",
];
