//! Scope, scope-set and requirement parsing on arbitrary text: never panics,
//! and what parses prints back as it was written.
#![no_main]

use keyward::{Requirement, Scope, ScopeSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(scope) = input.parse::<Scope>() {
        assert_eq!(scope.to_string(), input);
    }
    let parts: Vec<&str> = input.split(' ').collect();
    if let Ok(set) = ScopeSet::parse(&parts) {
        assert!(set.len() <= parts.len());
    }
    if let Ok(req) = Requirement::any(&parts) {
        assert!(req.scopes().iter().all(|s| !s.is_wildcard()));
    }
});
