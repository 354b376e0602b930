//! Labels (key names, tenant ids, metadata keys and values) that could spoof
//! a list view are refused, with the same typed error on every store, and
//! nothing is stored.

mod common;

use keyward::{IssueError, KeyStore, MemoryStore, NewKey, TenantId};

/// Characters that make one label read as another: controls (Cc), format
/// characters (Cf: bidi overrides and isolates, zero-width characters, the
/// soft hyphen, the BOM, a tag character), line/paragraph separators, other
/// default-ignorable code points (fillers, variation selectors) and spaces
/// other than U+0020.
const SPOOFERS: &[char] = &[
    '\0',
    '\n',
    '\r',
    '\t',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    '\u{202e}',
    '\u{202d}',
    '\u{2066}',
    '\u{2069}',
    '\u{200b}',
    '\u{200c}',
    '\u{200d}',
    '\u{2060}',
    '\u{00ad}',
    '\u{feff}',
    '\u{e0041}',
    '\u{2028}',
    '\u{2029}',
    // Default-ignorable code points outside Cf, and spaces other than U+0020.
    '\u{3164}',
    '\u{ffa0}',
    '\u{115f}',
    '\u{034f}',
    '\u{fe0f}',
    '\u{fe00}',
    '\u{e0100}',
    '\u{17b4}',
    '\u{180b}',
    '\u{2800}',
    '\u{00a0}',
    '\u{2002}',
    '\u{3000}',
    '\u{202f}',
];

/// Labels that are nothing but invisible or blank characters.
const BLANK: &[&str] = &["\u{3164}", "\u{2800}\u{2800}", "   ", " \u{3164} "];

/// Readable text that must stay accepted, and come back byte for byte.
const FINE: &[&str] = &["CI uploader", "Café ☕", "日本語のキー", "שלום", "a-b_c.d"];

/// Every field, with `bad` spliced into an otherwise valid value, and the
/// error expected for it.
fn hostile(bad: char) -> Vec<(NewKey, &'static str)> {
    let text = format!("evil{bad}name");
    vec![
        (NewKey::new("pk", "prop_1", &text), "name"),
        (NewKey::new("pk", &text, "name"), "tenant"),
        (
            NewKey::new("pk", "prop_1", "name").metadata(&text, "v"),
            "metadata",
        ),
        (
            NewKey::new("pk", "prop_1", "name").metadata("k", &text),
            "metadata",
        ),
    ]
}

async fn labels_are_checked_on(store: impl KeyStore + Clone) {
    let (keyring, _) = common::keyring_on(store.clone());
    for &bad in SPOOFERS {
        for (new, field) in hostile(bad) {
            let err = keyring.issue(new).await.unwrap_err();
            let matches = match field {
                "name" => matches!(err, IssueError::InvalidName),
                "tenant" => matches!(err, IssueError::InvalidTenant),
                _ => matches!(err, IssueError::InvalidMetadata),
            };
            assert!(matches, "U+{:04X} in the {field}: {err:?}", bad as u32);
        }
        assert!(
            TenantId::parse(&format!("prop{bad}1")).is_none(),
            "U+{:04X} in a parsed tenant id",
            bad as u32
        );
    }
    for blank in BLANK {
        let err = keyring
            .issue(NewKey::new("pk", "prop_1", blank))
            .await
            .unwrap_err();
        assert!(matches!(err, IssueError::InvalidName), "{blank:?}: {err:?}");
        assert!(TenantId::parse(blank).is_none(), "{blank:?}");
    }
    let tenant = TenantId::parse("prop_1").unwrap();
    assert!(
        store.list(&tenant).await.unwrap().is_empty(),
        "nothing was stored"
    );
    for text in FINE {
        let issued = keyring
            .issue(NewKey::new("pk", text, text).metadata(text, text))
            .await
            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let info = keyring.get(issued.info.id()).await.unwrap();
        assert_eq!(info.name(), *text);
        assert_eq!(info.tenant().as_str(), *text);
        assert_eq!(info.metadata().get(*text).map(String::as_str), Some(*text));
    }
}

#[tokio::test]
async fn spoofing_labels_are_refused_on_the_memory_store() {
    labels_are_checked_on(MemoryStore::new()).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn spoofing_labels_are_refused_on_postgres() {
    let Some((store, _schema)) = common::pg::store("labels").await else {
        return;
    };
    labels_are_checked_on(store).await;
}
