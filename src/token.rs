//! Token kinds, generation, offline parsing with a checksum, and the redacted
//! [`Secret`] that carries a freshly issued token.
//!
//! A token reads `<prefix>_<random><checksum>`:
//!
//! * `prefix`: the kind, e.g. `pk`, `pl` or `pk_test` (1–16 of `[a-z0-9_]`);
//! * `random`: 30 base62 characters drawn uniformly from a CSPRNG seeded by the
//!   operating system (178 bits);
//! * `checksum`: 6 base62 characters, the CRC32 of everything before it.
//!
//! The checksum lets [`TokenFormat::parse`] reject typos, truncated pastes and
//! garbage offline, before any store is asked, and lets secret scanners
//! validate a match without calling the issuer.
//!
//! ```
//! use keyward::{TokenFormat, TokenKind};
//!
//! let pk = TokenKind::new("pk").unwrap();
//! let secret = pk.generate();
//! let format = TokenFormat::new([pk.clone()]);
//! let parsed = format.parse(secret.expose_secret()).unwrap();
//! assert_eq!(parsed.kind(), &pk);
//! assert_eq!(format!("{secret:?}"), "Secret([REDACTED])");
//! ```

use std::fmt;
use std::sync::Arc;

use rand::distr::{Alphanumeric, Distribution};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{ConfigError, TokenError};

/// Base62 characters of the random part.
pub(crate) const RANDOM_LEN: usize = 30;
/// Base62 characters of the checksum.
pub(crate) const CHECKSUM_LEN: usize = 6;
/// Length of the body after `<prefix>_`.
pub const BODY_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
/// Longest prefix a token kind may have.
pub(crate) const MAX_PREFIX_LEN: usize = 16;
/// Characters of a token shown in list views and logs.
pub const DISPLAY_PREFIX_LEN: usize = 8;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The bytes a token may contain, base62 and `_`, as a table: one load per
/// byte on the verify path instead of a chain of range checks.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < table.len() {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric() || b == b'_';
        i += 1;
    }
    table
};

/// A kind of token, named by its prefix (`pk`, `pl`, `pk_test`, …).
///
/// Cloning is cheap (the prefix is shared).
///
/// ```
/// use keyward::TokenKind;
///
/// let kind = TokenKind::new("pk_test").unwrap();
/// assert_eq!(kind.prefix(), "pk_test");
/// assert!(TokenKind::new("").is_err());
/// assert!(TokenKind::new("has space").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenKind {
    prefix: Arc<str>,
}

impl TokenKind {
    /// A kind with this prefix: 1–16 of `[a-z0-9_]`, starting with a letter,
    /// not ending with `_`.
    pub fn new(prefix: &str) -> Result<Self, ConfigError> {
        let bytes = prefix.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_PREFIX_LEN
            && bytes[0].is_ascii_lowercase()
            && bytes[bytes.len() - 1] != b'_'
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !valid {
            return Err(ConfigError::InvalidPrefix(prefix.to_owned()));
        }
        Ok(TokenKind {
            prefix: Arc::from(prefix),
        })
    }

    /// The prefix, without the trailing `_`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Length of a full token of this kind.
    pub fn token_len(&self) -> usize {
        self.prefix.len() + 1 + BODY_LEN
    }

    /// Generates a new token of this kind from the thread-local CSPRNG
    /// (seeded by the operating system).
    ///
    /// ```
    /// use keyward::TokenKind;
    ///
    /// let token = TokenKind::new("pl").unwrap().generate();
    /// assert!(token.expose_secret().starts_with("pl_"));
    /// assert_eq!(token.expose_secret().len(), 3 + 36);
    /// ```
    pub fn generate(&self) -> Secret {
        let mut token = String::with_capacity(self.token_len());
        token.push_str(&self.prefix);
        token.push('_');
        let mut rng = rand::rng();
        token.extend(
            Alphanumeric
                .sample_iter(&mut rng)
                .take(RANDOM_LEN)
                .map(char::from),
        );
        let checksum = encode_checksum(crc32fast::hash(token.as_bytes()));
        token.extend(checksum.iter().copied().map(char::from));
        Secret::new(token)
    }
}

impl fmt::Debug for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenKind").field(&&*self.prefix).finish()
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)
    }
}

/// The set of token kinds a service accepts, and the offline parser for them.
///
/// ```
/// use keyward::{TokenError, TokenFormat, TokenKind};
///
/// let format = TokenFormat::new([TokenKind::new("pk").unwrap(), TokenKind::new("pl").unwrap()]);
/// let token = TokenKind::new("pl").unwrap().generate();
/// assert_eq!(format.parse(token.expose_secret()).unwrap().kind().prefix(), "pl");
/// assert_eq!(format.parse("gh_abc").unwrap_err(), TokenError::UnknownPrefix);
/// ```
#[derive(Debug, Clone)]
pub struct TokenFormat {
    kinds: Vec<TokenKind>,
    max_len: usize,
}

impl TokenFormat {
    /// A format accepting these kinds.
    ///
    /// Use [`TokenFormat::try_new`] to refuse duplicate prefixes instead of
    /// keeping the first.
    pub fn new(kinds: impl IntoIterator<Item = TokenKind>) -> Self {
        let mut unique: Vec<TokenKind> = Vec::new();
        for kind in kinds {
            if !unique.contains(&kind) {
                unique.push(kind);
            }
        }
        Self::from_unique(unique)
    }

    /// A format accepting these kinds, refusing a prefix given twice.
    pub fn try_new(kinds: impl IntoIterator<Item = TokenKind>) -> Result<Self, ConfigError> {
        let mut unique: Vec<TokenKind> = Vec::new();
        for kind in kinds {
            if unique.contains(&kind) {
                return Err(ConfigError::DuplicatePrefix(kind.prefix().to_owned()));
            }
            unique.push(kind);
        }
        Ok(Self::from_unique(unique))
    }

    fn from_unique(kinds: Vec<TokenKind>) -> Self {
        let max_len = kinds.iter().map(TokenKind::token_len).max().unwrap_or(0);
        TokenFormat { kinds, max_len }
    }

    /// The accepted kinds.
    pub fn kinds(&self) -> &[TokenKind] {
        &self.kinds
    }

    /// The kind with this prefix, if configured.
    pub fn kind(&self, prefix: &str) -> Option<&TokenKind> {
        self.kinds.iter().find(|k| k.prefix() == prefix)
    }

    /// Length of the longest token any accepted kind produces.
    pub fn max_token_len(&self) -> usize {
        self.max_len
    }

    /// Checks shape, alphabet, prefix and checksum. Never panics, never
    /// allocates, and touches no store.
    ///
    /// The checks run in this order, so each input gets exactly one error:
    /// [`Empty`](TokenError::Empty), [`TooLong`](TokenError::TooLong),
    /// [`InvalidCharacter`](TokenError::InvalidCharacter),
    /// [`MissingPrefix`](TokenError::MissingPrefix),
    /// [`UnknownPrefix`](TokenError::UnknownPrefix),
    /// [`BadLength`](TokenError::BadLength),
    /// [`BadChecksum`](TokenError::BadChecksum).
    pub fn parse<'a>(&self, input: &'a str) -> Result<ParsedToken<'a, '_>, TokenError> {
        let bytes = input.as_bytes();
        if bytes.is_empty() {
            return Err(TokenError::Empty);
        }
        if bytes.len() > self.max_len {
            return Err(TokenError::TooLong);
        }
        if !bytes.iter().all(|b| TOKEN_BYTES[usize::from(*b)]) {
            return Err(TokenError::InvalidCharacter);
        }
        let split = bytes
            .iter()
            .rposition(|b| *b == b'_')
            .ok_or(TokenError::MissingPrefix)?;
        if split == 0 {
            return Err(TokenError::MissingPrefix);
        }
        let (prefix, body) = (&input[..split], &input[split + 1..]);
        let kind = self.kind(prefix).ok_or(TokenError::UnknownPrefix)?;
        if body.len() != BODY_LEN {
            return Err(TokenError::BadLength);
        }
        let (signed, checksum) = input.split_at(input.len() - CHECKSUM_LEN);
        if decode_checksum(checksum) != Some(crc32fast::hash(signed.as_bytes())) {
            return Err(TokenError::BadChecksum);
        }
        Ok(ParsedToken { kind, token: input })
    }
}

/// A token that passed [`TokenFormat::parse`]: well formed, of a known kind,
/// with a valid checksum. It borrows the presented string; nothing is copied.
#[derive(Clone, Copy)]
pub struct ParsedToken<'a, 'f> {
    kind: &'f TokenKind,
    token: &'a str,
}

impl<'a, 'f> ParsedToken<'a, 'f> {
    /// The token's kind.
    pub fn kind(&self) -> &'f TokenKind {
        self.kind
    }

    /// The whole token. Treat it as a secret.
    pub fn expose_secret(&self) -> &'a str {
        self.token
    }

    /// The first 8 characters, safe to show in list views and logs.
    pub fn display_prefix(&self) -> &'a str {
        display_prefix(self.token)
    }
}

impl fmt::Debug for ParsedToken<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedToken")
            .field("kind", self.kind)
            .field("token", &crate::error::Redacted)
            .finish()
    }
}

/// A full token, returned once when a key is issued.
///
/// `Debug` and `Display` print `[REDACTED]`; the memory is zeroed on drop.
/// Call [`expose_secret`](Secret::expose_secret) to hand the token to its owner.
///
/// ```
/// use keyward::TokenKind;
///
/// let secret = TokenKind::new("pk").unwrap().generate();
/// assert_eq!(secret.to_string(), "[REDACTED]");
/// assert_eq!(secret.display_prefix().len(), 8);
/// ```
pub struct Secret(SecretString);

impl Secret {
    fn new(token: String) -> Self {
        Secret(SecretString::from(token))
    }

    /// The token itself. Show it to its owner once; never log or store it.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// The first 8 characters, safe to show in list views and logs.
    pub fn display_prefix(&self) -> &str {
        display_prefix(self.expose_secret())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

fn display_prefix(token: &str) -> &str {
    // Tokens are ASCII; `get` keeps this total for any input anyway.
    token.get(..DISPLAY_PREFIX_LEN).unwrap_or(token)
}

/// The checksum's base62 digits, most significant first (no allocation).
fn encode_checksum(mut value: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out
}

fn decode_checksum(text: &str) -> Option<u32> {
    text.bytes()
        .try_fold(0u64, |acc, b| {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'A'..=b'Z' => b - b'A' + 10,
                b'a'..=b'z' => b - b'a' + 36,
                _ => return None,
            };
            Some(acc * 62 + u64::from(digit))
        })
        .and_then(|v| u32::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format() -> TokenFormat {
        TokenFormat::new(["pk", "pl", "pk_test"].map(|p| TokenKind::new(p).unwrap()))
    }

    #[test]
    fn checksum_round_trips_at_the_edges() {
        for v in [0, 1, 61, 62, u32::MAX / 2, u32::MAX] {
            let digits = encode_checksum(v);
            assert_eq!(
                decode_checksum(std::str::from_utf8(&digits).unwrap()),
                Some(v)
            );
        }
        // 62^6 > 2^32: the largest 6-digit value does not fit a u32.
        assert_eq!(decode_checksum("zzzzzz"), None);
    }

    #[test]
    fn prefixes_with_underscores_parse_to_the_longest_kind() {
        let f = format();
        let t = TokenKind::new("pk_test").unwrap().generate();
        assert_eq!(
            f.parse(t.expose_secret()).unwrap().kind().prefix(),
            "pk_test"
        );
        let t = TokenKind::new("pk").unwrap().generate();
        assert_eq!(f.parse(t.expose_secret()).unwrap().kind().prefix(), "pk");
    }

    #[test]
    fn each_malformation_has_its_own_error() {
        let f = format();
        let good = TokenKind::new("pl").unwrap().generate();
        let good = good.expose_secret();
        assert_eq!(f.parse("").unwrap_err(), TokenError::Empty);
        assert_eq!(f.parse(&"a".repeat(8192)).unwrap_err(), TokenError::TooLong);
        assert_eq!(
            f.parse("pl_ab-c").unwrap_err(),
            TokenError::InvalidCharacter
        );
        assert_eq!(f.parse("pl_é").unwrap_err(), TokenError::InvalidCharacter);
        assert_eq!(f.parse("plabc").unwrap_err(), TokenError::MissingPrefix);
        assert_eq!(f.parse("_abc").unwrap_err(), TokenError::MissingPrefix);
        assert_eq!(f.parse("xx_abc").unwrap_err(), TokenError::UnknownPrefix);
        assert_eq!(
            f.parse(&good[..good.len() - 1]).unwrap_err(),
            TokenError::BadLength
        );
        // One character changed in the random part or in the checksum.
        for pos in [3, good.len() - 1] {
            let mut bad = good.as_bytes().to_vec();
            bad[pos] = if bad[pos] == b'a' { b'b' } else { b'a' };
            let bad = String::from_utf8(bad).unwrap();
            assert_eq!(f.parse(&bad).unwrap_err(), TokenError::BadChecksum);
        }
        assert!(f.parse(good).is_ok());
    }

    #[test]
    fn generated_tokens_differ_and_use_the_alphabet() {
        let kind = TokenKind::new("pk").unwrap();
        let a = kind.generate();
        let b = kind.generate();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(a.expose_secret()[3..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(a.display_prefix(), &a.expose_secret()[..8]);
    }

    #[test]
    fn duplicate_prefixes_are_refused_by_try_new() {
        let pk = TokenKind::new("pk").unwrap();
        assert_eq!(
            TokenFormat::try_new([pk.clone(), pk.clone()]).unwrap_err(),
            ConfigError::DuplicatePrefix("pk".into())
        );
        assert_eq!(TokenFormat::new([pk.clone(), pk]).kinds().len(), 1);
    }

    #[test]
    fn invalid_prefixes_are_refused() {
        for p in ["", "Pk", "1pk", "pk_", "p k", "abcdefghijklmnopq", "pk-x"] {
            assert!(TokenKind::new(p).is_err(), "{p:?}");
        }
        for p in ["p", "pk", "pk_test", "a1", "abcdefghijklmnop"] {
            assert!(TokenKind::new(p).is_ok(), "{p:?}");
        }
    }
}
