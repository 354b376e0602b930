//! A scope catalog read from configuration (JSON): never panics, and a
//! catalog that loads serializes and loads back to the same catalog.
#![no_main]

use keyward::ScopeCatalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(catalog) = serde_json::from_slice::<ScopeCatalog>(data) {
        let json = serde_json::to_vec(&catalog).unwrap();
        let back: ScopeCatalog = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, catalog);
        for entry in catalog.entries() {
            let granted = catalog.grant([entry.name.as_str()]).unwrap();
            assert!(catalog.covers(&granted, &entry.name));
        }
    }
});
