//! Scope, scope-set and requirement parsing against a reference model of
//! the scope grammar, written here from the specification (`Scope` docs):
//! `*`, or `resource` / `resource:action` / `resource:*` where each part is
//! 1–64 of `[a-z0-9_-]` starting with a letter. For any text the parsers
//! must accept exactly what the model accepts, refuse the rest with the
//! error the model predicts, and what they accept must print back as
//! written, take apart as the model does, and parse back to itself.
#![no_main]

use keyward::{Requirement, Scope, ScopeError, ScopeSet};
use libfuzzer_sys::fuzz_target;

mod model {
    /// One part of a scope: 1–64 of `[a-z0-9_-]`, a letter first.
    fn part(s: &str) -> bool {
        let b = s.as_bytes();
        (1..=64).contains(&b.len())
            && b[0].is_ascii_lowercase()
            && b.iter()
                .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
    }

    /// A valid scope's resource and action, or `None` when invalid.
    pub fn scope(s: &str) -> Option<(&str, Option<&str>)> {
        if s == "*" {
            return Some(("*", None));
        }
        match s.split_once(':') {
            None => part(s).then_some((s, None)),
            Some((resource, action)) => (part(resource) && (action == "*" || part(action)))
                .then_some((resource, Some(action))),
        }
    }

    pub fn is_wildcard(s: &str) -> bool {
        s == "*" || s.ends_with(":*")
    }

    /// The message text of an invalid scope: at most 129 characters of it.
    pub fn shown(s: &str) -> String {
        s.chars().take(129).collect()
    }
}

fn check_scope(input: &str) {
    match (Scope::parse(input), model::scope(input)) {
        (Ok(scope), Some((resource, action))) => {
            assert_eq!(scope.as_str(), input);
            assert_eq!(scope.to_string(), input);
            assert_eq!(scope.resource(), resource);
            assert_eq!(scope.action(), action);
            assert_eq!(scope.is_wildcard(), model::is_wildcard(input));
            assert_eq!(input.parse::<Scope>().as_ref(), Ok(&scope));
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), scope);
        }
        (Err(err), None) => assert_eq!(err, ScopeError::Invalid(model::shown(input))),
        (got, expected) => panic!("{input:?}: parsed {got:?}, the model says {expected:?}"),
    }
}

fn check_set(parts: &[&str]) {
    let invalid = parts.iter().find(|p| model::scope(p).is_none());
    match (ScopeSet::parse(parts), invalid) {
        (Ok(set), None) => {
            // Sorted, without duplicates, each part in it.
            let mut expected: Vec<&str> = parts.to_vec();
            expected.sort_unstable();
            expected.dedup();
            let got: Vec<&str> = set.iter().map(Scope::as_str).collect();
            assert_eq!(got, expected);
            assert_eq!(set.len(), expected.len());
            assert_eq!(set.is_empty(), parts.is_empty());
            for p in parts {
                assert!(set.contains(&p.parse().unwrap()));
            }
            // Printed space-separated, it parses back to itself.
            let printed = set.to_string();
            assert_eq!(printed, expected.join(" "));
            if !set.is_empty() {
                assert_eq!(ScopeSet::parse(printed.split(' ')).unwrap(), set);
            }
        }
        (Err(err), Some(first)) => assert_eq!(err, ScopeError::Invalid(model::shown(first))),
        (got, invalid) => panic!("{parts:?}: parsed {got:?}, first invalid {invalid:?}"),
    }
}

fn check_requirement(parts: &[&str]) {
    // The first part that is invalid or a wildcard decides the error.
    let refused = parts
        .iter()
        .find(|p| model::scope(p).is_none() || model::is_wildcard(p));
    let expected = match refused {
        Some(p) if model::scope(p).is_none() => Err(ScopeError::Invalid(model::shown(p))),
        Some(p) => Err(ScopeError::Invalid(p.to_string())),
        None if parts.is_empty() => Err(ScopeError::EmptyRequirement),
        None => {
            let mut distinct: Vec<&str> = Vec::new();
            for p in parts {
                if !distinct.contains(p) {
                    distinct.push(p);
                }
            }
            Ok(distinct)
        }
    };
    for (req, any) in [
        (Requirement::any(parts), true),
        (Requirement::all(parts), false),
    ] {
        match (req, &expected) {
            (Ok(req), Ok(distinct)) => {
                let got: Vec<&str> = req.scopes().iter().map(Scope::as_str).collect();
                assert_eq!(&got, distinct, "in the order given, once each");
                assert_eq!(req.to_string(), distinct.join(" "));
                assert_eq!(matches!(req, Requirement::Any(_)), any);
            }
            (Err(err), Err(expected)) => assert_eq!(&err, expected),
            (got, expected) => panic!("{parts:?}: {got:?}, the model says {expected:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    check_scope(input);
    let parts: Vec<&str> = if input.is_empty() {
        Vec::new()
    } else {
        input.split(' ').collect()
    };
    for part in &parts {
        check_scope(part);
    }
    check_set(&parts);
    check_requirement(&parts);
});
