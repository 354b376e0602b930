//! Scanner rules and `scan`, through the public API: every minted token of
//! each kind shape (plain, `_` in the prefix, keyed, keyed accepting
//! untagged) matches the generated regex (compiled with `regex`, as a Rust
//! host would) and is found by `scan` in the contexts tokens leak in;
//! look-alikes are not found; and `scan` agrees with the regex on any text.

use keyward::scan::{kind_regex, scan, ScanRules};
use keyward::{TokenFormat, TokenKey, TokenKind};
use proptest::prelude::*;
use regex::{Regex, RegexBuilder};

fn key(byte: u8) -> TokenKey {
    TokenKey::new(1, vec![byte; 32]).unwrap()
}

/// `pk`, `pl`, `pk_test` (a prefix of which `pk` is a prefix), a keyed
/// kind, and a keyed kind that still accepts untagged tokens.
fn kinds() -> Vec<TokenKind> {
    vec![
        TokenKind::new("pk").unwrap(),
        TokenKind::new("pl").unwrap(),
        TokenKind::new("pk_test").unwrap(),
        TokenKind::new("sk").unwrap().key(key(1)),
        TokenKind::new("ak")
            .unwrap()
            .key(key(2))
            .accept_untagged(true)
            .unwrap(),
    ]
}

fn format() -> TokenFormat {
    TokenFormat::new(kinds())
}

/// The tokens a kind can mint: tagged and, for `ak`, untagged too.
fn minted(kind: &TokenKind) -> Vec<String> {
    let mut tokens = vec![kind.generate().expose_secret().to_owned()];
    if kind.prefix() == "ak" {
        let untagged = TokenKind::new("ak").unwrap().generate();
        tokens.push(untagged.expose_secret().to_owned());
    }
    tokens
}

/// A regex as a Rust host compiles the generated string: ASCII `\b`.
fn compile(pattern: &str) -> Regex {
    RegexBuilder::new(pattern).unicode(false).build().unwrap()
}

/// Where tokens leak: quotes, JSON, env files, line ends, URLs.
fn contexts(token: &str) -> Vec<String> {
    vec![
        token.to_owned(),
        format!("\"{token}\""),
        format!("'{token}'"),
        format!(r#"{{"api_key":"{token}","n":1}}"#),
        format!("ACME_KEY={token}\n"),
        format!("export KEY={token}\r\nnext line"),
        format!("curl -H 'Authorization: Bearer {token}' https://api"),
        format!("https://api.example/v1?key={token}&x=1"),
        format!("« {token} »"),
        format!("(token:{token})"),
    ]
}

#[test]
fn minted_tokens_match_their_regex_and_are_found() {
    let format = format();
    let rules = ScanRules::new(&format);
    let whole = compile(&rules.regex());
    for kind in kinds() {
        let own = compile(&kind_regex(&kind));
        for _ in 0..20 {
            for token in minted(&kind) {
                assert!(
                    own.is_match(&token),
                    "{} {}",
                    kind.prefix(),
                    kind_regex(&kind)
                );
                assert!(whole.is_match(&token));
                for text in contexts(&token) {
                    let found = scan(&format, &text);
                    assert_eq!(found.len(), 1, "{} in {text:?}", kind.prefix());
                    assert_eq!(found[0].expose_secret(), token);
                    assert_eq!(&text[found[0].range()], token);
                    assert_eq!(found[0].prefix(), kind.prefix());
                    let m = whole.find(&text).unwrap();
                    assert_eq!(m.range(), found[0].range());
                }
            }
        }
    }
}

#[test]
fn several_tokens_are_found_in_order() {
    let format = format();
    let kinds = kinds();
    let tokens: Vec<String> = kinds.iter().flat_map(minted).collect();
    let text = tokens.join(", ");
    let found = scan(&format, &text);
    let got: Vec<&str> = found.iter().map(|f| f.expose_secret()).collect();
    assert_eq!(got, tokens);
    assert!(found
        .windows(2)
        .all(|w| w[0].range().end < w[1].range().start));
}

/// Changes one base62 character at `at` to another base62 character.
fn flip(token: &str, at: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn look_alikes_are_not_found() {
    let format = format();
    for kind in kinds() {
        let token = kind.generate();
        let token = token.expose_secret();
        let prefix_len = kind.prefix().len() + 1;
        let mut fakes = vec![
            // Right shape, wrong checksum (or tag): a changed character.
            flip(token, prefix_len),
            flip(token, token.len() - 1),
            // Wrong lengths.
            token[..token.len() - 1].to_owned(),
            format!("{token}0"),
            format!("{token}_"),
            // Glued to more word characters, before or after.
            format!("x{token}"),
            format!("_{token}"),
            format!("0{token}"),
            format!("{token}a"),
            format!("abc{token}def"),
            // Another prefix.
            format!("z{}", &token[1..]),
        ];
        if kind.is_keyed() {
            // A tagged token of a foreign key: the checksum holds, the tag not.
            let foreign = TokenKind::new(kind.prefix())
                .unwrap()
                .key(key(9))
                .generate();
            fakes.push(foreign.expose_secret().to_owned());
        }
        for fake in fakes {
            for text in [fake.clone(), format!("KEY={fake}\n"), format!("\"{fake}\"")] {
                assert!(
                    scan(&format, &text).is_empty(),
                    "{} found in {text:?}",
                    kind.prefix()
                );
            }
        }
    }
}

#[test]
fn a_keyed_kind_rejects_untagged_look_alikes() {
    // `sk` is keyed without the migration switch: an untagged token of its
    // prefix has the right checksum but the wrong length, for the regex too.
    let untagged = TokenKind::new("sk").unwrap().generate();
    let untagged = untagged.expose_secret();
    assert!(scan(&format(), untagged).is_empty());
    assert!(!compile(&kind_regex(&kinds()[3])).is_match(untagged));
}

#[test]
fn the_regexes_are_exact() {
    let rules = ScanRules::new(&format());
    assert_eq!(
        rules.regex(),
        r"\b(?:pk_[0-9A-Za-z]{36}|pl_[0-9A-Za-z]{36}|pk_test_[0-9A-Za-z]{36}|sk_[0-9A-Za-z]{44}|ak_(?:[0-9A-Za-z]{44}|[0-9A-Za-z]{36}))\b"
    );
    // Valid in Rust's default (Unicode) mode too, and stricter there.
    let unicode = Regex::new(&rules.regex()).unwrap();
    let token = TokenKind::new("pk").unwrap().generate();
    let token = token.expose_secret();
    assert!(unicode.is_match(&format!(" {token} ")));
    assert!(!unicode.is_match(&format!("é{token}")));
    assert_eq!(scan(&format(), &format!("é{token}")).len(), 1);
}

#[test]
fn gitleaks_rules_hold_one_rule_per_kind() {
    let rules = ScanRules::new(&format()).name("acme").unwrap();
    let toml = rules.gitleaks_toml();
    assert_eq!(toml.matches("[[rules]]").count(), 5);
    assert!(toml.contains("title = \"acme tokens\"\n"), "{toml}");
    for kind in kinds() {
        let p = kind.prefix();
        let rule = format!(
            "[[rules]]\nid = \"acme-{p}\"\ndescription = \"acme token ({p}_...)\"\nregex = '''{}'''\nkeywords = [\"{p}_\"]\ntags = [\"acme\", \"api-key\"]\n",
            kind_regex(&kind)
        );
        assert!(toml.contains(&rule), "{rule}\nnot in\n{toml}");
    }
    // Each rule's regex, as gitleaks reads the literal string, compiles.
    for line in toml.lines().filter(|l| l.starts_with("regex = ")) {
        let pattern = line
            .trim_start_matches("regex = '''")
            .trim_end_matches("'''");
        compile(pattern);
    }
    assert!(!toml.contains("\t"));
}

#[test]
fn trufflehog_detectors_capture_the_token() {
    let rules = ScanRules::new(&format()).name("acme").unwrap();
    let yaml = rules.trufflehog_yaml();
    assert!(yaml.starts_with("detectors:\n"));
    assert_eq!(yaml.matches("  - name: acme-").count(), 5);
    let format = format();
    for kind in kinds() {
        let p = kind.prefix();
        let head =
            format!("  - name: acme-{p}\n    keywords:\n      - {p}_\n    regex:\n      token: '");
        let at = yaml.find(&head).unwrap() + head.len();
        let pattern = &yaml[at..at + yaml[at..].find("'\n").unwrap()];
        let regex = compile(pattern);
        for token in minted(&kind) {
            let text = format!("key: {token}\n");
            let caps = regex.captures(&text).unwrap();
            assert_eq!(&caps[1], token);
            assert_eq!(scan(&format, &text)[0].expose_secret(), token);
        }
    }
}

#[test]
fn findings_never_show_their_token() {
    let token = TokenKind::new("pl").unwrap().generate();
    let found = scan(&format(), token.expose_secret());
    let debug = format!("{found:?}");
    assert!(!debug.contains(token.expose_secret()), "{debug}");
    assert!(!debug.contains(&token.expose_secret()[3..]), "{debug}");
    assert!(debug.contains("[REDACTED]"));
}

/// Text built to reach every case: tokens, look-alikes and noise glued
/// together in any order.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..5usize, any::<bool>()).prop_map(|(i, untagged)| {
            let kind = &kinds()[i];
            let tokens = minted(kind);
            if untagged && tokens.len() > 1 {
                tokens[1].clone()
            } else {
                tokens[0].clone()
            }
        }),
        (0..5usize, 0..60usize).prop_map(|(i, at)| {
            let token = kinds()[i].generate();
            let token = token.expose_secret();
            flip(token, at % token.len())
        }),
        "[ _\\-\"'=:;,.\n\r\t{}()]{0,3}",
        "[0-9A-Za-z_]{0,50}",
        "\\PC{0,8}",
        Just("pk_".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn scan_agrees_with_the_regex(pieces in proptest::collection::vec(piece(), 0..12)) {
        let format = format();
        let text = pieces.concat();
        let found = scan(&format, &text);
        // Everything found parses, and its range slices to it.
        for f in &found {
            prop_assert!(format.parse(f.expose_secret()).is_ok());
            prop_assert_eq!(&text[f.range()], f.expose_secret());
        }
        // Exactly the regex's matches that parse.
        let regex = compile(&ScanRules::new(&format).regex());
        let expected: Vec<_> = regex
            .find_iter(&text)
            .filter(|m| format.parse(m.as_str()).is_ok())
            .map(|m| m.range())
            .collect();
        let got: Vec<_> = found.iter().map(|f| f.range()).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn scan_never_panics(text in "\\PC{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let format = format();
        for text in [text, String::from_utf8_lossy(&bytes).into_owned()] {
            for f in scan(&format, &text) {
                prop_assert!(format.parse(f.expose_secret()).is_ok());
                prop_assert_eq!(&text[f.range()], f.expose_secret());
            }
        }
    }
}
