//! `Keyring::issue` input limits at their boundaries: each limit is the
//! largest accepted value, one more is refused.

mod common;

use keyward::{
    IssueError, NewKey, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_LEN, MAX_METADATA_VALUE_LEN,
};

fn with_entries(n: usize) -> NewKey {
    (0..n).fold(NewKey::new("pk", "p", "labels"), |key, i| {
        key.metadata(&format!("k{i}"), "v")
    })
}

#[tokio::test]
async fn metadata_limits_are_inclusive() {
    let (keyring, _) = common::keyring();
    let accepted = [
        with_entries(MAX_METADATA_ENTRIES),
        NewKey::new("pk", "p", "n").metadata(&"k".repeat(MAX_METADATA_KEY_LEN), "v"),
        NewKey::new("pk", "p", "n").metadata("k", &"v".repeat(MAX_METADATA_VALUE_LEN)),
    ];
    for new in accepted {
        let issued = keyring.issue(new).await.unwrap();
        assert!(!issued.info.metadata().is_empty());
    }
    let refused = [
        with_entries(MAX_METADATA_ENTRIES + 1),
        NewKey::new("pk", "p", "n").metadata(&"k".repeat(MAX_METADATA_KEY_LEN + 1), "v"),
        NewKey::new("pk", "p", "n").metadata("k", &"v".repeat(MAX_METADATA_VALUE_LEN + 1)),
        NewKey::new("pk", "p", "n").metadata("", "v"),
        NewKey::new("pk", "p", "n").metadata("a\u{7}b", "v"),
    ];
    for (i, new) in refused.into_iter().enumerate() {
        assert!(
            matches!(
                keyring.issue(new).await.unwrap_err(),
                IssueError::InvalidMetadata
            ),
            "case {i}"
        );
    }
    assert_eq!(
        (
            MAX_METADATA_ENTRIES,
            MAX_METADATA_KEY_LEN,
            MAX_METADATA_VALUE_LEN
        ),
        (32, 64, 1024)
    );
}
