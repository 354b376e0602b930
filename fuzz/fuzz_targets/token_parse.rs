//! Token parsing against a reference model of the token grammar, written
//! here from the specification (README "Tokens", `TokenFormat::parse`) and
//! sharing no code with the parser: for every input the parser must give
//! exactly the model's answer, the kind on success and the one
//! `TokenError` the documented check order predicts otherwise.
//!
//! Each input is tried twice: as text, and as the seed of a token built to
//! be well formed (kind, 30 base62 characters and a correct checksum from
//! the input's first bytes) and then changed in at most one place (a byte
//! replaced, removed, inserted or swapped, a cut, a wrong checksum), so the
//! success path and each late check (prefix, length, checksum) are reached
//! from the first run, without a corpus.
//!
//! Keyed kinds (a tag between the random part and the checksum, refused
//! with `BadTag` after `BadChecksum`) slot into [`model::Kind`]: give the
//! kind its tag length and key, and [`derive`] its tag.
#![no_main]

use keyward::{TokenFormat, TokenKind};
use libfuzzer_sys::fuzz_target;

/// The kinds under test: one a prefix of another's, to exercise the split
/// on the last `_`.
const PREFIXES: [&str; 3] = ["pk", "pl", "pk_test"];

mod model {
    use keyward::TokenError;

    pub const RANDOM_LEN: usize = 30;
    pub const CHECKSUM_LEN: usize = 6;
    pub const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    /// A token kind as the grammar sees it.
    pub struct Kind {
        pub prefix: &'static str,
    }

    impl Kind {
        /// Characters after `<prefix>_`.
        pub fn body_len(&self) -> usize {
            RANDOM_LEN + CHECKSUM_LEN
        }

        pub fn token_len(&self) -> usize {
            self.prefix.len() + 1 + self.body_len()
        }
    }

    /// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bit by bit.
    pub fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// `value` as 6 base62 digits, most significant first.
    pub fn checksum_digits(value: u32) -> String {
        let mut digits = [0u8; CHECKSUM_LEN];
        let mut v = u64::from(value);
        for d in digits.iter_mut().rev() {
            *d = DIGITS[(v % 62) as usize];
            v /= 62;
        }
        String::from_utf8(digits.to_vec()).unwrap()
    }

    fn digit_value(c: u8) -> Option<u64> {
        DIGITS.iter().position(|d| *d == c).map(|p| p as u64)
    }

    /// The kind a token parses to, or the error the documented order gives.
    pub fn parse<'k>(kinds: &'k [Kind], input: &str) -> Result<&'k Kind, TokenError> {
        let bytes = input.as_bytes();
        if bytes.is_empty() {
            return Err(TokenError::Empty);
        }
        let longest = kinds.iter().map(Kind::token_len).max().unwrap_or(0);
        if bytes.len() > longest {
            return Err(TokenError::TooLong);
        }
        if bytes
            .iter()
            .any(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        {
            return Err(TokenError::InvalidCharacter);
        }
        // The prefix is everything before the last `_`, and not empty.
        let last = match input.rfind('_') {
            None | Some(0) => return Err(TokenError::MissingPrefix),
            Some(i) => i,
        };
        let (prefix, body) = (&input[..last], &input[last + 1..]);
        let kind = kinds
            .iter()
            .find(|k| k.prefix == prefix)
            .ok_or(TokenError::UnknownPrefix)?;
        if body.len() != kind.body_len() {
            return Err(TokenError::BadLength);
        }
        let (signed, digits) = input.split_at(input.len() - CHECKSUM_LEN);
        let value = digits
            .bytes()
            .try_fold(0u64, |acc, c| Some(acc * 62 + digit_value(c)?));
        if value != Some(u64::from(crc32(signed.as_bytes()))) {
            return Err(TokenError::BadChecksum);
        }
        Ok(kind)
    }
}

/// Reads the input a byte at a time, zeros once it runs out.
struct Bytes<'a>(std::slice::Iter<'a, u8>);

impl Bytes<'_> {
    fn next(&mut self) -> usize {
        self.0.next().copied().unwrap_or(0).into()
    }
}

/// A well-formed token seeded by `data`, then changed in at most one place.
/// `None` when the change left invalid UTF-8.
fn derive(kinds: &[model::Kind], data: &[u8]) -> Option<String> {
    let mut input = Bytes(data.iter());
    let kind = &kinds[input.next() % kinds.len()];
    let mut token = format!("{}_", kind.prefix);
    for _ in 0..model::RANDOM_LEN {
        token.push(char::from(model::DIGITS[input.next() % 62]));
    }
    let checksum = model::crc32(token.as_bytes());
    token.push_str(&model::checksum_digits(checksum));

    let mut bytes = token.into_bytes();
    let op = input.next();
    let at = input.next() % (bytes.len() + 1);
    // A replacement byte: mostly token characters, `_`, or anything.
    let byte = match input.next() {
        b @ 0..=127 => model::DIGITS[b % 62],
        128..=143 => b'_',
        b => input.next().wrapping_add(b) as u8,
    };
    match op % 8 {
        0 => {}
        1 if at < bytes.len() => bytes[at] = byte,
        2 if at < bytes.len() => {
            bytes.remove(at);
        }
        3 => bytes.insert(at, byte),
        4 => bytes.truncate(at),
        5 if at + 1 < bytes.len() => bytes.swap(at, at + 1),
        6 => bytes.extend(data.iter().skip(35)),
        7 => {
            // A checksum for other bytes: right shape, wrong value.
            let wrong = checksum ^ (1 + (at as u32) % 0xFFFF_FFFE);
            let n = bytes.len();
            bytes.splice(n - 6.., model::checksum_digits(wrong).into_bytes());
        }
        _ => {}
    }
    String::from_utf8(bytes).ok()
}

fn check(format: &TokenFormat, kinds: &[model::Kind], input: &str) {
    match (format.parse(input), model::parse(kinds, input)) {
        (Ok(parsed), Ok(kind)) => {
            assert_eq!(parsed.kind().prefix(), kind.prefix, "{input:?}");
            assert_eq!(parsed.kind().token_len(), kind.token_len());
            assert_eq!(parsed.expose_secret(), input);
            assert_eq!(parsed.display_prefix(), &input[..8]);
        }
        (Err(got), Err(expected)) => assert_eq!(got, expected, "{input:?}"),
        (got, expected) => panic!(
            "{input:?}: parsed as {:?}, the model says {:?}",
            got.map(|p| p.kind().prefix().to_owned()),
            expected.map(|k| k.prefix)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let format = TokenFormat::new(PREFIXES.map(|p| TokenKind::new(p).unwrap()));
    let kinds = PREFIXES.map(|prefix| model::Kind { prefix });
    assert_eq!(
        format.max_token_len(),
        kinds.iter().map(model::Kind::token_len).max().unwrap()
    );
    if let Ok(input) = std::str::from_utf8(data) {
        check(&format, &kinds, input);
    }
    if let Some(token) = derive(&kinds, data) {
        check(&format, &kinds, &token);
    }
});
