//! Token kinds, generation, offline parsing with a checksum, and the redacted
//! [`Secret`] that carries a freshly issued token.
//!
//! A token reads `<prefix>_<random>[<tag>]<checksum>`:
//!
//! * `prefix`: the kind, e.g. `pk`, `pl` or `pk_test` (1–16 of `[a-z0-9_]`);
//! * `random`: 30 base62 characters drawn uniformly from a CSPRNG seeded by the
//!   operating system (178 bits);
//! * `tag` (only for a kind with a [`TokenKey`]): 8 base62 characters, a
//!   keyed SipHash-2-4 of `<prefix>_<random>` under the server-held token
//!   key (about 47.6 bits);
//! * `checksum`: 6 base62 characters, the CRC32 of everything before it.
//!
//! The checksum is public: it lets [`TokenFormat::parse`] reject typos,
//! truncated pastes and garbage offline, before any store is asked, and lets
//! secret scanners validate a match without calling the issuer. It proves
//! nothing about where a token came from, since anyone can compute it. The
//! tag does: without the token key, a made-up token passes its checksum but
//! fails its tag ([`TokenError::BadTag`]), still offline, so forged tokens
//! never cost a store lookup.
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

use hmac::{Hmac, Mac};
use rand::distr::{Alphanumeric, Distribution};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use siphasher::sip::SipHasher24;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{ConfigError, Redacted, TokenError};

/// Base62 characters of the random part.
pub(crate) const RANDOM_LEN: usize = 30;
/// Base62 characters of the checksum.
pub(crate) const CHECKSUM_LEN: usize = 6;
/// Base62 characters of the keyed tag.
pub(crate) const TAG_LEN: usize = 8;
/// 62^8: the tag is the keyed hash reduced modulo this, in 8 base62 digits.
const TAG_MODULUS: u64 = 62u64.pow(TAG_LEN as u32);
/// Length of the body after `<prefix>_` for a kind without a token key.
pub const BODY_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
/// Length of the body after `<prefix>_` for a kind with a [`TokenKey`]: the
/// random part, the tag and the checksum.
pub const TAGGED_BODY_LEN: usize = RANDOM_LEN + TAG_LEN + CHECKSUM_LEN;
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

/// A server-held secret that tags the tokens of a kind, so forged tokens are
/// refused offline ([`TokenError::BadTag`]) without a store lookup.
///
/// Handle it like a [`Pepper`](crate::Pepper): keep it outside the database,
/// load it from your secret manager, and rotate it by configuring the new key
/// as current and the old one as previous
/// ([`TokenKind::previous_key`]), so tokens tagged with either verify. The
/// version only names the key in configuration and `Debug` output; tokens
/// do not carry it.
///
/// The tag is SipHash-2-4 (a keyed pseudo-random function built for short
/// inputs) under a 128-bit key derived from yours with HMAC-SHA256, reduced
/// to 8 base62 characters: a forger guesses one in 2^47.6 per attempt, and the
/// authentication layer's failure throttle caps the attempts. SipHash rather
/// than HMAC-SHA256 because the check runs on every request: it costs a
/// fraction of the SHA-256 the lookup already pays.
///
/// `Debug` shows only the version; the key material is zeroed once derived.
///
/// ```
/// use keyward::TokenKey;
///
/// assert!(TokenKey::new(1, b"too short".to_vec()).is_err());
/// let key = TokenKey::new(1, vec![7; 32]).unwrap();
/// assert_eq!(format!("{key:?}"), "TokenKey { version: 1, key: [REDACTED] }");
/// ```
#[derive(Clone)]
pub struct TokenKey {
    version: u16,
    sip: Zeroizing<[u8; 16]>,
}

impl TokenKey {
    /// Shortest accepted key material, in bytes (32 random bytes are
    /// recommended).
    pub const MIN_LEN: usize = 16;

    /// A token key with this version and key material: 16 bytes or more,
    /// which should be random (32 bytes from a CSPRNG); only the length can
    /// be checked, so pass decoded bytes, not a passphrase. The material is
    /// zeroed once the tag key is derived from it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidTokenKey`] for key material shorter than
    /// [`TokenKey::MIN_LEN`](Self::MIN_LEN) bytes.
    pub fn new(version: u16, key: Vec<u8>) -> Result<Self, ConfigError> {
        let key = Zeroizing::new(key);
        if key.len() < Self::MIN_LEN {
            return Err(ConfigError::InvalidTokenKey(
                "a token key needs at least 16 bytes",
            ));
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&key)
            .map_err(|_| ConfigError::InvalidTokenKey("rejected by HMAC"))?;
        mac.update(b"keyward token tag v1");
        let derived = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        let mut sip = Zeroizing::new([0u8; 16]);
        sip.copy_from_slice(&derived[..16]);
        Ok(TokenKey { version, sip })
    }

    /// The key's version.
    #[must_use]
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The tag of `signed` (`<prefix>_<random>`), as a number below 62^8.
    fn tag_value(&self, signed: &[u8]) -> u64 {
        SipHasher24::new_with_key(&self.sip).hash(signed) % TAG_MODULUS
    }

    /// The tag of `signed`, as the base62 digits a token carries.
    fn tag(&self, signed: &[u8]) -> [u8; TAG_LEN] {
        encode_base62(self.tag_value(signed))
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("version", &self.version)
            .field("key", &Redacted)
            .finish()
    }
}

/// The token keys of a kind: the one that tags new tokens, one more that
/// still verifies (rotation), and whether untagged tokens are still accepted.
#[derive(Clone)]
struct TagKeys {
    current: TokenKey,
    previous: Option<TokenKey>,
    accept_untagged: bool,
}

impl TagKeys {
    /// Whether `presented` (base62 digits) is the tag of `signed` under the
    /// current or the previous key, compared in constant time. Compares
    /// numbers rather than digits: decoding 8 digits is cheaper than
    /// encoding them.
    fn verify(&self, signed: &[u8], presented: &[u8]) -> bool {
        // Digits were checked by the parser; an overflow can not happen
        // (62^8 < 2^48), and a bad digit can not match a tag below 62^8.
        let presented = decode_base62(presented).unwrap_or(u64::MAX);
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .any(|key| bool::from(key.tag_value(signed).ct_eq(&presented)))
    }
}

/// A kind of token, named by its prefix (`pk`, `pl`, `pk_test`, …), with an
/// optional [`TokenKey`] that tags its tokens.
///
/// Cloning is cheap (the prefix and keys are shared). Two kinds are equal
/// when their prefixes are.
///
/// ```
/// use keyward::{TokenKey, TokenKind};
///
/// let kind = TokenKind::new("pk_test").unwrap();
/// assert_eq!(kind.prefix(), "pk_test");
/// assert_eq!(kind.token_len(), 7 + 1 + 36);
/// assert!(TokenKind::new("").is_err());
/// assert!(TokenKind::new("has space").is_err());
///
/// let keyed = kind.key(TokenKey::new(1, vec![7; 32]).unwrap());
/// assert_eq!(keyed.token_len(), 7 + 1 + 44);
/// ```
#[derive(Clone)]
pub struct TokenKind {
    prefix: Arc<str>,
    keys: Option<Arc<TagKeys>>,
}

impl PartialEq for TokenKind {
    fn eq(&self, other: &Self) -> bool {
        self.prefix == other.prefix
    }
}

impl Eq for TokenKind {}

impl std::hash::Hash for TokenKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.prefix.hash(state);
    }
}

impl TokenKind {
    /// A kind with this prefix: 1–16 of `[a-z0-9_]`, starting with a letter,
    /// not ending with `_`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPrefix`] when `prefix` is not 1–16 of
    /// `[a-z0-9_]`, starting with a letter and not ending with `_`.
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
            keys: None,
        })
    }

    /// Tags this kind's tokens with `key`: new tokens carry its tag, and a
    /// token whose tag verifies under neither this key nor the
    /// [previous](Self::previous_key) one is refused offline
    /// ([`TokenError::BadTag`]). A current key set before is dropped (keep
    /// its tokens working with [`previous_key`](Self::previous_key)); the
    /// previous key stays unless it has this key's version.
    ///
    /// Tokens issued before a kind had a key have no tag and are refused
    /// ([`TokenError::BadLength`]) unless [`accept_untagged`](Self::accept_untagged)
    /// is on.
    #[must_use]
    pub fn key(mut self, key: TokenKey) -> Self {
        let keys = match self.keys.take() {
            Some(keys) => TagKeys {
                previous: keys.previous.clone().filter(|p| p.version != key.version),
                current: key,
                accept_untagged: keys.accept_untagged,
            },
            None => TagKeys {
                current: key,
                previous: None,
                accept_untagged: false,
            },
        };
        self.keys = Some(Arc::new(keys));
        self
    }

    /// Also accepts tokens tagged with `previous` (key rotation: configure
    /// the new key with [`key`](Self::key) and the old one here until its
    /// tokens are gone). Refused without a current key, or when both share a
    /// version.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidTokenKey`] without a current key, or when both
    /// keys share a version.
    pub fn previous_key(mut self, previous: TokenKey) -> Result<Self, ConfigError> {
        let Some(keys) = self.keys.take() else {
            return Err(ConfigError::InvalidTokenKey(
                "a previous token key needs a current one",
            ));
        };
        if keys.current.version == previous.version {
            return Err(ConfigError::InvalidTokenKey(
                "the previous token key must have another version",
            ));
        }
        let mut keys = TagKeys::clone(&keys);
        keys.previous = Some(previous);
        self.keys = Some(Arc::new(keys));
        Ok(self)
    }

    /// A migration aid for a kind that gains a key while untagged tokens are
    /// in use: also accept tokens without a tag (the 36-character body).
    /// While it is on, a forger can send untagged tokens that pass the
    /// public checksum and reach the store (the failure throttle still caps
    /// them); rotate the old keys and turn it off. Turning it on is refused
    /// without a key (an unkeyed kind accepts only untagged tokens anyway);
    /// turning it off then changes nothing.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidTokenKey`] when turned on for a kind without a
    /// key.
    pub fn accept_untagged(mut self, accept: bool) -> Result<Self, ConfigError> {
        let Some(keys) = self.keys.take() else {
            if !accept {
                return Ok(self);
            }
            return Err(ConfigError::InvalidTokenKey(
                "accepting untagged tokens needs a token key",
            ));
        };
        let mut keys = TagKeys::clone(&keys);
        keys.accept_untagged = accept;
        self.keys = Some(Arc::new(keys));
        Ok(self)
    }

    /// Whether this kind's tokens carry a keyed tag.
    #[must_use]
    pub fn is_keyed(&self) -> bool {
        self.keys.is_some()
    }

    /// The prefix, without the trailing `_`.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Length of a full token of this kind.
    #[must_use]
    pub fn token_len(&self) -> usize {
        self.prefix.len() + 1 + self.body_len()
    }

    fn body_len(&self) -> usize {
        if self.keys.is_some() {
            TAGGED_BODY_LEN
        } else {
            BODY_LEN
        }
    }

    /// Generates a new token of this kind from the thread-local CSPRNG
    /// (seeded by the operating system), tagged when the kind has a key.
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
        if let Some(keys) = &self.keys {
            let tag = keys.current.tag(token.as_bytes());
            token.extend(tag.iter().copied().map(char::from));
        }
        let checksum = encode_checksum(crc32fast::hash(token.as_bytes()));
        token.extend(checksum.iter().copied().map(char::from));
        Secret::new(token)
    }

    /// Checks the body of a token of this kind (`input` is the whole token):
    /// length, checksum, then tag.
    fn check_body(&self, input: &str, body_len: usize) -> Result<(), TokenError> {
        let tagged = match &self.keys {
            Some(keys) if body_len == TAGGED_BODY_LEN => Some(keys),
            Some(keys) if body_len == BODY_LEN && keys.accept_untagged => None,
            None if body_len == BODY_LEN => None,
            _ => return Err(TokenError::BadLength),
        };
        let (signed, checksum) = input.split_at(input.len() - CHECKSUM_LEN);
        if decode_checksum(checksum) != Some(crc32fast::hash(signed.as_bytes())) {
            return Err(TokenError::BadChecksum);
        }
        if let Some(keys) = tagged {
            let (random, tag) = signed.as_bytes().split_at(signed.len() - TAG_LEN);
            if !keys.verify(random, tag) {
                return Err(TokenError::BadTag);
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TokenKind");
        d.field("prefix", &&*self.prefix);
        if let Some(keys) = &self.keys {
            d.field("key", &keys.current)
                .field("previous_key", &keys.previous)
                .field("accept_untagged", &keys.accept_untagged);
        }
        d.finish()
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
    ///
    /// # Errors
    ///
    /// [`ConfigError::DuplicatePrefix`] when two kinds share a prefix.
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
    #[must_use]
    pub fn kinds(&self) -> &[TokenKind] {
        &self.kinds
    }

    /// The kind with this prefix, if configured.
    #[must_use]
    pub fn kind(&self, prefix: &str) -> Option<&TokenKind> {
        self.kinds.iter().find(|k| k.prefix() == prefix)
    }

    /// Length of the longest token any accepted kind produces.
    #[must_use]
    pub fn max_token_len(&self) -> usize {
        self.max_len
    }

    /// Checks shape, alphabet, prefix, checksum and, for a kind with a
    /// [`TokenKey`], the tag. Never panics, never allocates, and touches no
    /// store.
    ///
    /// The checks run in this order, so each input gets exactly one error:
    /// [`Empty`](TokenError::Empty), [`TooLong`](TokenError::TooLong),
    /// [`InvalidCharacter`](TokenError::InvalidCharacter),
    /// [`MissingPrefix`](TokenError::MissingPrefix),
    /// [`UnknownPrefix`](TokenError::UnknownPrefix),
    /// [`BadLength`](TokenError::BadLength),
    /// [`BadChecksum`](TokenError::BadChecksum),
    /// [`BadTag`](TokenError::BadTag).
    ///
    /// # Errors
    ///
    /// The first [`TokenError`] in the order above.
    pub fn parse<'a>(&self, input: &'a str) -> Result<ParsedToken<'a, '_>, TokenError> {
        let bytes = input.as_bytes();
        if bytes.is_empty() {
            return Err(TokenError::Empty);
        }
        if bytes.len() > self.max_len {
            return Err(TokenError::TooLong);
        }
        // A token is `<prefix>_` of a kind, then base62 digits (the body
        // has no `_`, so the last `_` ends the prefix). Kinds in order: the
        // first with the prefix decides, as `kind` finds it.
        for kind in &self.kinds {
            let body = bytes
                .strip_prefix(kind.prefix.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"_"));
            if let Some(body) = body.filter(|body| all_base62(body)) {
                kind.check_body(input, body.len())?;
                return Ok(ParsedToken { kind, token: input });
            }
        }
        Err(shape_error(bytes))
    }
}

/// Why `bytes`, which is no kind's `<prefix>_` followed by base62 digits,
/// is not a token. If every byte is a token byte and a `_` follows at least
/// one byte, the text before the last `_` is a prefix and what follows it
/// base62 digits: had the prefix been a kind's, [`TokenFormat::parse`]
/// would have matched it. So the prefix is unknown.
fn shape_error(bytes: &[u8]) -> TokenError {
    // One pass, no early exit: every byte's class, and where the last `_` is.
    let mut invalid = false;
    let mut last_underscore = None;
    for (i, b) in bytes.iter().enumerate() {
        invalid |= !TOKEN_BYTES[usize::from(*b)];
        if *b == b'_' {
            last_underscore = Some(i);
        }
    }
    if invalid {
        return TokenError::InvalidCharacter;
    }
    match last_underscore {
        Some(0) | None => TokenError::MissingPrefix,
        Some(_) => TokenError::UnknownPrefix,
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
    #[must_use]
    pub fn kind(&self) -> &'f TokenKind {
        self.kind
    }

    /// The whole token. Treat it as a secret.
    #[must_use]
    pub fn expose_secret(&self) -> &'a str {
        self.token
    }

    /// The first 8 characters, safe to show in list views and logs.
    #[must_use]
    pub fn display_prefix(&self) -> &'a str {
        display_prefix(self.token)
    }

    #[cfg(feature = "http")]
    /// Whether the token carries a keyed tag that verified (its kind has a
    /// [`TokenKey`] and it is not an untagged token let through by
    /// [`TokenKind::accept_untagged`]).
    pub(crate) fn is_tagged(&self) -> bool {
        self.kind.is_keyed() && self.token.len() == self.kind.token_len()
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
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// The first 8 characters, safe to show in list views and logs.
    #[must_use]
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
fn encode_checksum(value: u32) -> [u8; CHECKSUM_LEN] {
    encode_base62(u64::from(value))
}

/// The last `N` base62 digits of `value`, most significant first.
fn encode_base62<const N: usize>(mut value: u64) -> [u8; N] {
    let mut out = [b'0'; N];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out
}

/// Whether every byte is a base62 digit (`[0-9A-Za-z]`), without a branch
/// per byte.
fn all_base62(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(true, |all, b| all & b.is_ascii_alphanumeric())
}

fn decode_checksum(text: &str) -> Option<u32> {
    decode_base62(text.as_bytes()).and_then(|v| u32::try_from(v).ok())
}

/// The value of base62 digits, most significant first; `None` for a
/// non-digit or more than fits a `u64`.
fn decode_base62(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'A'..=b'Z' => b - b'A' + 10,
            b'a'..=b'z' => b - b'a' + 36,
            _ => return None,
        };
        acc.checked_mul(62)?.checked_add(u64::from(digit))
    })
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

    /// `parse` as it was written before its fast path: the specification
    /// the fast path and `shape_error` must agree with.
    fn reference_parse<'f>(f: &'f TokenFormat, input: &str) -> Result<&'f str, TokenError> {
        let bytes = input.as_bytes();
        if bytes.is_empty() {
            return Err(TokenError::Empty);
        }
        if bytes.len() > f.max_token_len() {
            return Err(TokenError::TooLong);
        }
        if !bytes.iter().all(|b| TOKEN_BYTES[usize::from(*b)]) {
            return Err(TokenError::InvalidCharacter);
        }
        let split = match input.rfind('_') {
            Some(0) | None => return Err(TokenError::MissingPrefix),
            Some(split) => split,
        };
        let kind = f.kind(&input[..split]).ok_or(TokenError::UnknownPrefix)?;
        kind.check_body(input, input.len() - split - 1)?;
        Ok(kind.prefix())
    }

    fn keyed_format() -> TokenFormat {
        let key = TokenKey::new(1, vec![9; 32]).unwrap();
        let keyed = TokenKind::new("pk").unwrap().key(key);
        TokenFormat::new([keyed, TokenKind::new("pk_test").unwrap()])
    }

    proptest::proptest! {
        #[test]
        fn parse_agrees_with_the_reference(
            seed in 0usize..6,
            edits in proptest::collection::vec((0usize..64, proptest::sample::select(
                vec!['_', '-', 'a', 'Z', '0', 'é', ' ', 'p', 'k'])), 0..3),
            cut in proptest::option::of(0usize..64),
            noise in "(pk|pl|pk_test|xx|_)?_?[A-Za-z0-9_é-]{0,48}",
        ) {
            let formats = [format(), keyed_format()];
            let f = &formats[seed % 2];
            let mut input: Vec<char> = match seed / 2 {
                0 => f.kinds()[0].generate().expose_secret().chars().collect(),
                1 => f.kinds()[1].generate().expose_secret().chars().collect(),
                _ => noise.chars().collect(),
            };
            for (at, c) in edits {
                if !input.is_empty() {
                    let at = at % input.len();
                    input[at] = c;
                }
            }
            if let Some(cut) = cut {
                input.truncate(cut);
            }
            let input: String = input.into_iter().collect();
            let parsed = f.parse(&input).map(|p| p.kind().prefix());
            proptest::prop_assert_eq!(parsed, reference_parse(f, &input), "{:?}", input);
        }
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

    fn token_key(version: u16, byte: u8) -> TokenKey {
        TokenKey::new(version, vec![byte; 32]).unwrap()
    }

    /// Replaces the tag of a tagged token and fixes its checksum, as a forger
    /// who knows the format (but not the key) would.
    fn with_tag(token: &str, tag: &[u8; TAG_LEN]) -> String {
        let random_end = token.len() - CHECKSUM_LEN - TAG_LEN;
        let mut forged = token[..random_end].to_owned();
        forged.push_str(std::str::from_utf8(tag).unwrap());
        let checksum = encode_checksum(crc32fast::hash(forged.as_bytes()));
        forged.push_str(std::str::from_utf8(&checksum).unwrap());
        forged
    }

    #[test]
    fn the_tag_is_pinned() {
        // A fixed key and input give a fixed tag: changing the derivation or
        // the PRF would strand every issued token. The expected value was
        // computed outside this crate: HMAC-SHA256(key, "keyward token tag
        // v1")[..16] as the SipHash-2-4 key (a reference implementation,
        // checked against the SipHash paper's vector), the 64-bit output
        // modulo 62^8, in base62.
        let key = TokenKey::new(7, (0u8..32).collect()).unwrap();
        assert_eq!(&key.tag(b"pk_000000000000000000000000000000"), b"Xh0u2oUC");
        assert_ne!(&key.tag(b"pk_000000000000000000000000000001"), b"Xh0u2oUC");
    }

    #[test]
    fn keyed_tokens_carry_a_tag_that_verifies() {
        let kind = TokenKind::new("pl").unwrap().key(token_key(1, 1));
        let format = TokenFormat::new([kind.clone()]);
        let token = kind.generate();
        let token = token.expose_secret();
        assert_eq!(token.len(), 3 + TAGGED_BODY_LEN);
        assert_eq!(format.max_token_len(), 3 + TAGGED_BODY_LEN);
        assert!(format.parse(token).is_ok());
        // The tag is the keyed hash of what precedes it.
        let signed = &token.as_bytes()[..3 + RANDOM_LEN];
        let tag = &token.as_bytes()[3 + RANDOM_LEN..token.len() - CHECKSUM_LEN];
        assert_eq!(tag, token_key(1, 1).tag(signed));
    }

    #[test]
    fn forged_tags_are_refused_offline() {
        let ours = TokenKind::new("pl").unwrap().key(token_key(1, 1));
        let format = TokenFormat::new([ours.clone()]);
        // Tagged under another key: checksum fine, tag wrong.
        let theirs = TokenKind::new("pl").unwrap().key(token_key(1, 2));
        let forged = theirs.generate();
        assert_eq!(
            format.parse(forged.expose_secret()).unwrap_err(),
            TokenError::BadTag
        );
        // Our token with any one tag character changed, checksum recomputed.
        let good = ours.generate();
        let good = good.expose_secret();
        let tag_at = good.len() - CHECKSUM_LEN - TAG_LEN;
        for i in 0..TAG_LEN {
            let mut tag: [u8; TAG_LEN] = good.as_bytes()[tag_at..tag_at + TAG_LEN]
                .try_into()
                .unwrap();
            tag[i] = if tag[i] == b'a' { b'b' } else { b'a' };
            assert_eq!(
                format.parse(&with_tag(good, &tag)).unwrap_err(),
                TokenError::BadTag,
                "tag character {i}"
            );
        }
        // A broken checksum is still reported as such, before the tag.
        let mut bad = good.as_bytes().to_vec();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            format
                .parse(std::str::from_utf8(&bad).unwrap())
                .unwrap_err(),
            TokenError::BadChecksum
        );
    }

    #[test]
    fn a_previous_key_keeps_its_tokens_working() {
        let old = TokenKind::new("pk").unwrap().key(token_key(1, 1));
        let issued_before = old.generate();
        let rotated = old.clone().key(token_key(2, 2));
        let issued_after = rotated.generate();
        // Without the previous key, the old token's tag no longer verifies.
        let format = TokenFormat::new([rotated.clone()]);
        assert_eq!(
            format.parse(issued_before.expose_secret()).unwrap_err(),
            TokenError::BadTag
        );
        let both = rotated.previous_key(token_key(1, 1)).unwrap();
        let format = TokenFormat::new([both.clone()]);
        assert!(format.parse(issued_before.expose_secret()).is_ok());
        assert!(format.parse(issued_after.expose_secret()).is_ok());
        // New tokens are tagged with the current key only.
        let only_old = TokenFormat::new([old]);
        assert_eq!(
            only_old.parse(both.generate().expose_secret()).unwrap_err(),
            TokenError::BadTag
        );
    }

    #[test]
    fn untagged_tokens_need_the_migration_switch() {
        let untagged = TokenKind::new("pk").unwrap().generate();
        let keyed = TokenKind::new("pk").unwrap().key(token_key(1, 1));
        let tagged = keyed.generate();
        assert_eq!(
            TokenFormat::new([keyed.clone()])
                .parse(untagged.expose_secret())
                .unwrap_err(),
            TokenError::BadLength
        );
        let migrating = keyed.accept_untagged(true).unwrap();
        let format = TokenFormat::new([migrating.clone()]);
        assert!(format.parse(untagged.expose_secret()).is_ok());
        assert!(format.parse(tagged.expose_secret()).is_ok());
        // Turned off again, and a tagged token on an unkeyed kind.
        let format = TokenFormat::new([migrating.accept_untagged(false).unwrap()]);
        assert_eq!(
            format.parse(untagged.expose_secret()).unwrap_err(),
            TokenError::BadLength
        );
        let unkeyed = TokenFormat::new([TokenKind::new("pk").unwrap()]);
        assert_eq!(
            unkeyed.parse(tagged.expose_secret()).unwrap_err(),
            TokenError::TooLong
        );
    }

    #[test]
    fn token_key_configuration_is_checked() {
        assert_eq!(
            TokenKey::new(1, vec![1; 15]).unwrap_err(),
            ConfigError::InvalidTokenKey("a token key needs at least 16 bytes")
        );
        assert!(TokenKey::new(1, vec![1; 16]).is_ok());
        let pk = TokenKind::new("pk").unwrap();
        assert!(pk.clone().previous_key(token_key(1, 1)).is_err());
        assert!(pk.clone().accept_untagged(true).is_err());
        assert!(!pk.clone().accept_untagged(false).unwrap().is_keyed());
        let keyed = pk.key(token_key(1, 1));
        assert!(keyed.clone().previous_key(token_key(1, 2)).is_err());
        let rotated = keyed.previous_key(token_key(2, 2)).unwrap();
        assert!(rotated.is_keyed());
        // Making the previous key current again drops it as previous.
        let back = rotated.key(token_key(2, 2));
        assert!(back.keys.as_ref().unwrap().previous.is_none());
        let debug = format!("{back:?}");
        assert!(
            debug.contains("TokenKey { version: 2, key: [REDACTED] }"),
            "{debug}"
        );
        assert!(!debug.contains("[2, 2"), "{debug}");
    }

    #[test]
    fn kinds_are_equal_and_hash_by_prefix_alone() {
        use std::collections::HashSet;
        let key = TokenKey::new(5, vec![1; 32]).unwrap();
        assert_eq!(key.version(), 5);
        let plain = TokenKind::new("pk").unwrap();
        let keyed = plain.clone().key(key);
        assert_eq!(plain, keyed);
        let set: HashSet<TokenKind> = [plain, keyed, TokenKind::new("pl").unwrap()]
            .into_iter()
            .collect();
        assert_eq!(set.len(), 2);
        // The hash is the prefix's: equal kinds land in one bucket.
        let state = std::hash::RandomState::new();
        let one = |kind: &TokenKind| std::hash::BuildHasher::hash_one(&state, kind);
        assert_eq!(
            one(&TokenKind::new("pk").unwrap()),
            one(&TokenKind::new("pk")
                .unwrap()
                .key(TokenKey::new(1, vec![2; 32]).unwrap()))
        );
        assert_ne!(
            one(&TokenKind::new("pk").unwrap()),
            one(&TokenKind::new("pl").unwrap())
        );
    }

    #[test]
    fn renderings_show_the_kind_and_never_the_token() {
        let kind = TokenKind::new("pl").unwrap();
        assert_eq!(kind.to_string(), "pl");
        assert_eq!(format!("{kind:?}"), r#"TokenKind { prefix: "pl" }"#);
        let secret = kind.generate();
        assert_eq!(secret.to_string(), "[REDACTED]");
        assert_eq!(format!("{secret:?}"), "Secret([REDACTED])");
        let format = TokenFormat::new([kind]);
        let parsed = format.parse(secret.expose_secret()).unwrap();
        assert_eq!(
            format!("{parsed:?}"),
            r#"ParsedToken { kind: TokenKind { prefix: "pl" }, token: [REDACTED] }"#
        );
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
