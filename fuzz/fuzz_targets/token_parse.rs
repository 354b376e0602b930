//! Token parsing against a reference model of the token grammar, written
//! here from the specification (README "Tokens", the `token` module docs,
//! `TokenFormat::parse`) and sharing no code with the parser: for every
//! input the parser must give exactly the model's answer, the kind on
//! success and the one `TokenError` the documented check order predicts
//! otherwise.
//!
//! The kinds cover each case of the format: `pk` without a token key (a
//! 36-character body), `pl` with a token key and a previous one (a
//! 44-character body with a tag under either), `pk_test` with a key that
//! still accepts untagged tokens; `pk` is also a prefix of `pk_test`.
//!
//! Each input is tried twice: as text, and as the seed of a token built to
//! be well formed (kind, 30 base62 characters, a tag under the current, the
//! previous or a foreign key, or none, and a correct checksum, all from the
//! input's first bytes) and then changed in at most one place (a byte
//! replaced, removed, inserted or swapped, a cut, a wrong checksum), so the
//! success path and each late check (prefix, length, checksum, tag) are
//! reached from the first run, without a corpus.
#![no_main]

use keyward::{TokenFormat, TokenKey, TokenKind};
use libfuzzer_sys::fuzz_target;

/// Key material of the kinds' token keys, and of a key no kind has.
const KEY_1: &[u8] = &[1; 32];
const KEY_2: &[u8] = &[2; 32];
const KEY_3: &[u8] = &[3; 32];
const FOREIGN: &[u8] = &[9; 32];

mod model {
    use hmac::{Hmac, Mac};
    use keyward::TokenError;
    use sha2::Sha256;
    use siphasher::sip::SipHasher24;

    pub const RANDOM_LEN: usize = 30;
    pub const TAG_LEN: usize = 8;
    pub const CHECKSUM_LEN: usize = 6;
    pub const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    /// A kind's token keys, as key material.
    pub struct Keys {
        pub current: &'static [u8],
        pub previous: Option<&'static [u8]>,
        pub accept_untagged: bool,
    }

    /// A token kind as the grammar sees it.
    pub struct Kind {
        pub prefix: &'static str,
        pub keys: Option<Keys>,
    }

    impl Kind {
        /// The body a new token has after `<prefix>_`.
        pub fn body_len(&self) -> usize {
            RANDOM_LEN + self.keys.as_ref().map_or(0, |_| TAG_LEN) + CHECKSUM_LEN
        }

        pub fn token_len(&self) -> usize {
            self.prefix.len() + 1 + self.body_len()
        }

        /// Whether a body of `len` characters is of this kind's shape, and
        /// whether it carries a tag.
        fn shape(&self, len: usize) -> Option<bool> {
            match &self.keys {
                _ if len == self.body_len() => Some(self.keys.is_some()),
                Some(keys) if keys.accept_untagged && len == RANDOM_LEN + CHECKSUM_LEN => {
                    Some(false)
                }
                _ => None,
            }
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

    /// The last `n` base62 digits of `value`, most significant first.
    pub fn digits(mut value: u64, n: usize) -> String {
        let mut out = vec![0u8; n];
        for d in out.iter_mut().rev() {
            *d = DIGITS[(value % 62) as usize];
            value /= 62;
        }
        String::from_utf8(out).unwrap()
    }

    fn value(digits: &str) -> Option<u64> {
        digits.bytes().try_fold(0u64, |acc, c| {
            let d = DIGITS.iter().position(|x| *x == c)? as u64;
            acc.checked_mul(62)?.checked_add(d)
        })
    }

    /// The tag of `signed` (`<prefix>_<random>`) under key material
    /// `material`: SipHash-2-4 under the first 16 bytes of
    /// HMAC-SHA256(material, "keyward token tag v1"), modulo 62^8, as 8
    /// base62 digits.
    pub fn tag(material: &[u8], signed: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(material).unwrap();
        mac.update(b"keyward token tag v1");
        let derived = mac.finalize().into_bytes();
        let key: [u8; 16] = derived[..16].try_into().unwrap();
        let hash = SipHasher24::new_with_key(&key).hash(signed);
        digits(hash % 62u64.pow(TAG_LEN as u32), TAG_LEN)
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
        let tagged = kind.shape(body.len()).ok_or(TokenError::BadLength)?;
        let (signed, checksum) = input.split_at(input.len() - CHECKSUM_LEN);
        if value(checksum) != Some(u64::from(crc32(signed.as_bytes()))) {
            return Err(TokenError::BadChecksum);
        }
        if let (true, Some(keys)) = (tagged, &kind.keys) {
            let (random, tag) = signed.split_at(signed.len() - TAG_LEN);
            let valid = std::iter::once(keys.current)
                .chain(keys.previous)
                .any(|material| tag == self::tag(material, random.as_bytes()));
            if !valid {
                return Err(TokenError::BadTag);
            }
        }
        Ok(kind)
    }
}

/// The kinds under test, in the model and as keyward configures them.
fn kinds() -> ([model::Kind; 3], TokenFormat) {
    use model::{Keys, Kind};
    let model = [
        Kind {
            prefix: "pk",
            keys: None,
        },
        Kind {
            prefix: "pl",
            keys: Some(Keys {
                current: KEY_2,
                previous: Some(KEY_1),
                accept_untagged: false,
            }),
        },
        Kind {
            prefix: "pk_test",
            keys: Some(Keys {
                current: KEY_3,
                previous: None,
                accept_untagged: true,
            }),
        },
    ];
    let key = |version, material: &[u8]| TokenKey::new(version, material.to_vec()).unwrap();
    let format = TokenFormat::new([
        TokenKind::new("pk").unwrap(),
        TokenKind::new("pl")
            .unwrap()
            .key(key(2, KEY_2))
            .previous_key(key(1, KEY_1))
            .unwrap(),
        TokenKind::new("pk_test")
            .unwrap()
            .key(key(3, KEY_3))
            .accept_untagged(true)
            .unwrap(),
    ]);
    (model, format)
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
    // The tag: mostly under the current key, else under the previous key,
    // a foreign key, made-up digits, or none at all.
    let choice = input.next();
    if let Some(keys) = &kind.keys {
        let material = match choice % 8 {
            0..=3 => Some(keys.current),
            4 => keys.previous,
            5 => Some(FOREIGN),
            _ => None,
        };
        match (material, choice % 8) {
            (Some(material), _) => token.push_str(&model::tag(material, token.as_bytes())),
            (None, 6) => token.push_str(&model::digits(choice as u64 * 7919, model::TAG_LEN)),
            _ => {}
        }
    }
    let checksum = model::crc32(token.as_bytes());
    token.push_str(&model::digits(checksum.into(), model::CHECKSUM_LEN));

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
        6 => bytes.extend(data.iter().skip(40)),
        7 => {
            // A checksum for other bytes: right shape, wrong value.
            let wrong = checksum ^ (1 + (at as u32) % 0xFFFF_FFFE);
            let n = bytes.len();
            let digits = model::digits(wrong.into(), model::CHECKSUM_LEN);
            bytes.splice(n - model::CHECKSUM_LEN.., digits.into_bytes());
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
            assert_eq!(parsed.kind().is_keyed(), kind.keys.is_some());
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
    static KINDS: std::sync::OnceLock<([model::Kind; 3], TokenFormat)> = std::sync::OnceLock::new();
    let (kinds, format) = KINDS.get_or_init(kinds);
    assert_eq!(
        format.max_token_len(),
        kinds.iter().map(model::Kind::token_len).max().unwrap()
    );
    if let Ok(input) = std::str::from_utf8(data) {
        check(format, kinds, input);
    }
    if let Some(token) = derive(kinds, data) {
        check(format, kinds, &token);
    }
});
