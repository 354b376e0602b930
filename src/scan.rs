//! Secret-scanning support: rules for scanners generated from a
//! [`TokenFormat`], and [`scan`], which finds this format's tokens in text.
//!
//! A leaked token is only found if scanners know its shape. The format that
//! mints tokens also describes them exactly: the kind's prefix, `_`, and a
//! base62 body of the lengths that kind accepts (36 characters untagged, 44
//! with a [`TokenKey`](crate::TokenKey) tag, both while a keyed kind still
//! [accepts untagged tokens](crate::TokenKind::accept_untagged)), with word
//! boundaries on both sides. From it, [`ScanRules`] writes
//!
//! * a regular expression per kind ([`kind_regex`]) and for the whole
//!   format ([`ScanRules::regex`]), in the syntax Rust's `regex`, Go's
//!   RE2 (gitleaks, TruffleHog) and most engines share;
//! * a [gitleaks](https://github.com/gitleaks/gitleaks) rule file
//!   ([`ScanRules::gitleaks_toml`]);
//! * a [TruffleHog](https://github.com/trufflesecurity/trufflehog) custom
//!   detector configuration ([`ScanRules::trufflehog_yaml`]).
//!
//! A regex match is a candidate; the token's public CRC32 checksum (and, for
//! a keyed kind, its tag, which only the issuer can check) says whether it is
//! one. [`scan`] does both for text in hand (a log line, a support ticket, a
//! paste): it finds candidates with a hand-written matcher that accepts
//! exactly what the regex accepts, and keeps those [`TokenFormat::parse`]
//! accepts.
//!
//! `\b` in the generated regex is an ASCII word boundary in RE2. Rust's
//! `regex` reads it as a Unicode one unless Unicode is off
//! (`RegexBuilder::unicode(false)`, as [`scan`] behaves); with it on, a token
//! glued to a non-ASCII letter is not matched, which only makes the rule
//! stricter.
//!
//! # Example
//!
//! ```
//! use keyward::scan::{scan, ScanRules};
//! use keyward::{TokenFormat, TokenKind};
//!
//! let pk = TokenKind::new("acme_pk")?;
//! let format = TokenFormat::new([pk.clone()]);
//! let rules = ScanRules::new(&format).name("acme")?;
//! assert_eq!(rules.regex(), r"\b(?:acme_pk_[0-9A-Za-z]{36})\b");
//! assert!(rules.gitleaks_toml().contains(r#"id = "acme-acme_pk""#));
//!
//! let token = pk.generate();
//! let text = format!("ACME_KEY={}\n", token.expose_secret());
//! let found = scan(&format, &text);
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].prefix(), "acme_pk");
//! assert_eq!(&text[found[0].range()], token.expose_secret());
//! assert!(!format!("{:?}", found[0]).contains(token.expose_secret()));
//! # Ok::<(), keyward::ConfigError>(())
//! ```

use std::fmt;
use std::fmt::Write as _;
use std::ops::Range;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{ConfigError, Redacted};
use crate::token::{TokenFormat, TokenKind, BODY_LEN, TAGGED_BODY_LEN};

/// The character class of a token body.
const BODY_CLASS: &str = "[0-9A-Za-z]";

/// Longest rule name ([`ScanRules::name`]).
const MAX_NAME_LEN: usize = 32;

/// The body lengths `kind` accepts, longest first.
fn body_lens(kind: &TokenKind) -> &'static [usize] {
    if !kind.is_keyed() {
        &[BODY_LEN]
    } else if accepts_untagged(kind) {
        &[TAGGED_BODY_LEN, BODY_LEN]
    } else {
        &[TAGGED_BODY_LEN]
    }
}

/// Whether a keyed kind still accepts untagged tokens: asked of the parser
/// itself with an untagged token of the kind's prefix, so the rules can never
/// disagree with it.
fn accepts_untagged(kind: &TokenKind) -> bool {
    let Ok(plain) = TokenKind::new(kind.prefix()) else {
        return false;
    };
    let untagged = plain.generate();
    TokenFormat::new([kind.clone()])
        .parse(untagged.expose_secret())
        .is_ok()
}

/// The alternatives of one kind, without boundaries:
/// `pk_[0-9A-Za-z]{36}`, or `pk_(?:[0-9A-Za-z]{44}|[0-9A-Za-z]{36})`.
fn kind_pattern(kind: &TokenKind) -> String {
    // A prefix is `[a-z0-9_]`: nothing in it needs escaping.
    let mut out = format!("{}_", kind.prefix());
    match body_lens(kind) {
        [one] => {
            let _ = write!(out, "{BODY_CLASS}{{{one}}}");
        }
        lens => {
            out.push_str("(?:");
            for (i, len) in lens.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                let _ = write!(out, "{BODY_CLASS}{{{len}}}");
            }
            out.push(')');
        }
    }
    out
}

/// The regular expression of one kind's tokens: its prefix, `_` and a body
/// of exactly the lengths the kind accepts, between word boundaries, e.g.
/// `\bpk_[0-9A-Za-z]{36}\b`. Valid for Rust's `regex`, Go's RE2 (gitleaks,
/// TruffleHog) and PCRE; the whole match is the token.
///
/// ```
/// use keyward::scan::kind_regex;
/// use keyward::{TokenKey, TokenKind};
///
/// let pk = TokenKind::new("pk")?;
/// assert_eq!(kind_regex(&pk), r"\bpk_[0-9A-Za-z]{36}\b");
/// let keyed = pk.key(TokenKey::new(1, vec![7; 32])?);
/// assert_eq!(kind_regex(&keyed), r"\bpk_[0-9A-Za-z]{44}\b");
/// let migrating = keyed.accept_untagged(true)?;
/// assert_eq!(kind_regex(&migrating), r"\bpk_(?:[0-9A-Za-z]{44}|[0-9A-Za-z]{36})\b");
/// # Ok::<(), keyward::ConfigError>(())
/// ```
#[must_use]
pub fn kind_regex(kind: &TokenKind) -> String {
    format!(r"\b{}\b", kind_pattern(kind))
}

/// Rules for secret scanners, generated from a [`TokenFormat`]: the
/// format's regex, a gitleaks rule file and a TruffleHog detector
/// configuration, with rule ids `<name>-<prefix>` (`name` is `keyward`
/// unless [set](Self::name)).
///
/// ```
/// use keyward::scan::ScanRules;
/// use keyward::{TokenFormat, TokenKind};
///
/// let format = TokenFormat::new([TokenKind::new("pk")?, TokenKind::new("pl")?]);
/// let rules = ScanRules::new(&format);
/// assert_eq!(
///     rules.regex(),
///     r"\b(?:pk_[0-9A-Za-z]{36}|pl_[0-9A-Za-z]{36})\b"
/// );
/// assert!(rules.trufflehog_yaml().starts_with("detectors:\n  - name: keyward-pk\n"));
/// # Ok::<(), keyward::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ScanRules {
    format: TokenFormat,
    name: String,
}

impl ScanRules {
    /// The rules of `format`, named `keyward`.
    #[must_use]
    pub fn new(format: &TokenFormat) -> Self {
        ScanRules {
            format: format.clone(),
            name: "keyward".to_owned(),
        }
    }

    /// Names the rules (your product, e.g. `acme`): rule ids read
    /// `<name>-<prefix>`, descriptions `<name> token (<prefix>_…)`. 1–32 of
    /// `[a-z0-9_-]`, starting with a letter, so it needs no escaping in TOML
    /// or YAML.
    ///
    /// ```
    /// use keyward::scan::ScanRules;
    /// use keyward::{TokenFormat, TokenKind};
    ///
    /// let rules = ScanRules::new(&TokenFormat::new([TokenKind::new("pk")?]));
    /// assert!(rules.clone().name("acme").is_ok());
    /// assert!(rules.name("Acme \"Inc\"").is_err());
    /// # Ok::<(), keyward::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidRuleName`] for a name outside that alphabet.
    pub fn name(mut self, name: &str) -> Result<Self, ConfigError> {
        let bytes = name.as_bytes();
        let valid = bytes.first().is_some_and(u8::is_ascii_lowercase)
            && bytes.len() <= MAX_NAME_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
        if !valid {
            return Err(ConfigError::InvalidRuleName(name.to_owned()));
        }
        name.clone_into(&mut self.name);
        Ok(self)
    }

    /// The regular expression of every token of the format: one
    /// alternative per kind (see [`kind_regex`]) between word boundaries.
    /// A format without kinds matches nothing (`[^\s\S]`).
    #[must_use]
    pub fn regex(&self) -> String {
        let kinds = self.format.kinds();
        if kinds.is_empty() {
            return r"[^\s\S]".to_owned();
        }
        let alternatives: Vec<String> = kinds.iter().map(kind_pattern).collect();
        format!(r"\b(?:{})\b", alternatives.join("|"))
    }

    /// A gitleaks configuration (TOML) with one `[[rules]]` entry per kind:
    /// `id`, `description`, `regex` (a literal string, as gitleaks' own
    /// configuration writes them), `keywords` (the prefix with its `_`) and
    /// `tags`. Use it as the whole configuration, or add
    /// `[extend]\nuseDefault = true` to keep gitleaks' built-in rules.
    ///
    /// ```
    /// use keyward::scan::ScanRules;
    /// use keyward::{TokenFormat, TokenKind};
    ///
    /// let rules = ScanRules::new(&TokenFormat::new([TokenKind::new("pk")?]));
    /// let toml = rules.gitleaks_toml();
    /// assert!(toml.contains("[[rules]]\nid = \"keyward-pk\"\n"));
    /// assert!(toml.contains(r"regex = '''\bpk_[0-9A-Za-z]{36}\b'''"));
    /// assert!(toml.contains("keywords = [\"pk_\"]"));
    /// # Ok::<(), keyward::ConfigError>(())
    /// ```
    #[must_use]
    pub fn gitleaks_toml(&self) -> String {
        let name = &self.name;
        let mut out = format!(
            "# gitleaks rules for {name} tokens, generated by keyward from its token format.\n\
             # A match is a candidate: its last 6 characters are a CRC32 checksum of the rest\n\
             # (base62), which {name} checks before anything else.\n\
             title = \"{name} tokens\"\n"
        );
        for kind in self.format.kinds() {
            let prefix = kind.prefix();
            let _ = write!(
                out,
                "\n[[rules]]\n\
                 id = \"{name}-{prefix}\"\n\
                 description = \"{name} token ({prefix}_...)\"\n\
                 regex = '''{regex}'''\n\
                 keywords = [\"{prefix}_\"]\n\
                 tags = [\"{name}\", \"api-key\"]\n",
                regex = kind_regex(kind),
            );
        }
        out
    }

    /// A TruffleHog configuration (YAML) with one custom detector per kind:
    /// `name`, `keywords` (the prefix with its `_`) and one regex, `token`,
    /// whose capture group is the token. Run it with `trufflehog filesystem
    /// --config=<file> <path>`.
    ///
    /// ```
    /// use keyward::scan::ScanRules;
    /// use keyward::{TokenFormat, TokenKind};
    ///
    /// let rules = ScanRules::new(&TokenFormat::new([TokenKind::new("pk")?]));
    /// assert_eq!(
    ///     rules.trufflehog_yaml(),
    ///     "detectors:\n  - name: keyward-pk\n    keywords:\n      - pk_\n    regex:\n      token: '\\b(pk_[0-9A-Za-z]{36})\\b'\n"
    /// );
    /// # Ok::<(), keyward::ConfigError>(())
    /// ```
    #[must_use]
    pub fn trufflehog_yaml(&self) -> String {
        let mut out = String::from("detectors:\n");
        for kind in self.format.kinds() {
            let prefix = kind.prefix();
            // Single-quoted YAML takes backslashes as they are; the regex
            // has no quote.
            let _ = write!(
                out,
                "  - name: {name}-{prefix}\n    keywords:\n      - {prefix}_\n    regex:\n      token: '\\b({pattern})\\b'\n",
                name = self.name,
                pattern = kind_pattern(kind),
            );
        }
        out
    }
}

/// A token of the format found in text by [`scan`]: the token (a secret:
/// `Debug` never prints it, and it is zeroed on drop), its kind and where
/// it is.
///
/// ```
/// use keyward::scan::scan;
/// use keyward::{TokenFormat, TokenKind};
///
/// let pl = TokenKind::new("pl")?;
/// let token = pl.generate();
/// let text = format!(r#"{{"key":"{}"}}"#, token.expose_secret());
/// let found = scan(&TokenFormat::new([pl]), &text);
/// assert_eq!(found[0].expose_secret(), token.expose_secret());
/// assert_eq!(found[0].range(), 8..8 + 39);
/// assert_eq!(found[0].kind().prefix(), "pl");
/// assert_eq!(
///     format!("{:?}", found[0]),
///     r#"Finding { prefix: "pl", range: 8..47, token: [REDACTED] }"#
/// );
/// # Ok::<(), keyward::ConfigError>(())
/// ```
pub struct Finding {
    token: SecretString,
    kind: TokenKind,
    range: Range<usize>,
}

impl Finding {
    /// The token. Treat it as the secret it is: revoke it, never log it.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        self.token.expose_secret()
    }

    /// The token's kind.
    #[must_use]
    pub fn kind(&self) -> &TokenKind {
        &self.kind
    }

    /// The kind's prefix (without its `_`).
    #[must_use]
    pub fn prefix(&self) -> &str {
        self.kind.prefix()
    }

    /// The token's byte range in the scanned text.
    #[must_use]
    pub fn range(&self) -> Range<usize> {
        self.range.clone()
    }
}

impl fmt::Debug for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finding")
            .field("prefix", &self.kind.prefix())
            .field("range", &self.range)
            .field("token", &Redacted)
            .finish()
    }
}

/// Whether `b` is an ASCII word character (`[0-9A-Za-z_]`, what `\b`
/// separates from the rest).
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Finds `format`'s tokens in `text`, in order: every maximal run of ASCII
/// word characters (`[0-9A-Za-z_]`) that [`TokenFormat::parse`] accepts
/// (prefix, length, checksum and, for a keyed kind, tag). A token is a whole
/// run, so this matches exactly what the [generated regex](ScanRules::regex)
/// matches, then drops what fails the checks: `xpk_…`, `_pk_…`, a token
/// glued to more letters or digits, and look-alikes with a wrong checksum
/// are not found. Linear in the text; allocates only for findings.
///
/// ```
/// use keyward::scan::scan;
/// use keyward::{TokenFormat, TokenKind};
///
/// let pk = TokenKind::new("pk")?;
/// let format = TokenFormat::new([pk.clone()]);
/// let token = pk.generate();
/// let token = token.expose_secret();
/// assert_eq!(scan(&format, &format!("key: '{token}'")).len(), 1);
/// assert!(scan(&format, &format!("x{token}")).is_empty());
/// assert!(scan(&format, &format!("{token}0")).is_empty());
/// # Ok::<(), keyward::ConfigError>(())
/// ```
#[must_use]
pub fn scan(format: &TokenFormat, text: &str) -> Vec<Finding> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if !is_word(bytes[at]) {
            at += 1;
            continue;
        }
        let start = at;
        while at < bytes.len() && is_word(bytes[at]) {
            at += 1;
        }
        // Runs are ASCII, so `start..at` lies on character boundaries.
        let Some(run) = text.get(start..at) else {
            continue;
        };
        if let Ok(parsed) = format.parse(run) {
            found.push(Finding {
                token: SecretString::from(run),
                kind: parsed.kind().clone(),
                range: start..at,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenKey;

    fn key() -> TokenKey {
        TokenKey::new(1, vec![3; 32]).unwrap()
    }

    #[test]
    fn body_lengths_follow_the_kind() {
        let plain = TokenKind::new("pk").unwrap();
        assert_eq!(body_lens(&plain), [BODY_LEN]);
        let keyed = plain.key(key());
        assert_eq!(body_lens(&keyed), [TAGGED_BODY_LEN]);
        assert!(!accepts_untagged(&keyed));
        let migrating = keyed.accept_untagged(true).unwrap();
        assert!(accepts_untagged(&migrating));
        assert_eq!(body_lens(&migrating), [TAGGED_BODY_LEN, BODY_LEN]);
    }

    #[test]
    fn an_empty_format_matches_nothing() {
        let rules = ScanRules::new(&TokenFormat::new([]));
        assert_eq!(rules.regex(), r"[^\s\S]");
        assert_eq!(rules.trufflehog_yaml(), "detectors:\n");
        assert!(!rules.gitleaks_toml().contains("[[rules]]"));
        assert!(scan(&TokenFormat::new([]), "pk_abc").is_empty());
    }

    #[test]
    fn rule_names_are_checked() {
        let rules = ScanRules::new(&TokenFormat::new([TokenKind::new("pk").unwrap()]));
        for good in ["a", "acme", "acme-cloud_2", &"a".repeat(32)] {
            assert_eq!(rules.clone().name(good).unwrap().name, good);
        }
        for bad in [
            "",
            "Acme",
            "1acme",
            "-a",
            "a b",
            "a\"",
            "a'",
            "é",
            &"a".repeat(33),
        ] {
            assert_eq!(
                rules.clone().name(bad).unwrap_err(),
                ConfigError::InvalidRuleName(bad.to_owned()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn word_characters_are_ascii_alphanumerics_and_underscore() {
        let words: Vec<u8> = (0..=255u8).filter(|b| is_word(*b)).collect();
        let mut expected: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .collect();
        expected.push(b'_');
        expected.sort_unstable();
        assert_eq!(words, expected);
    }
}
