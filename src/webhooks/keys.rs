//! Webhook keys as the specification serializes them: `whsec_` symmetric
//! secrets and, with feature `webhooks-ed25519`, `whsk_` / `whpk_` Ed25519
//! key pairs. Each secret redacts itself in `Debug` and zeroizes on drop.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use rand::RngCore as _;
use zeroize::Zeroizing;

use super::WebhookKeyError;

/// The prefix of a serialized symmetric secret.
pub(crate) const SECRET_PREFIX: &str = "whsec_";
/// The fewest random bytes a symmetric secret may hold (192 bits).
pub const MIN_SECRET_LEN: usize = 24;
/// The most bytes a symmetric secret may hold (512 bits).
pub const MAX_SECRET_LEN: usize = 64;
/// The bytes [`WebhookSecret::generate`] draws.
const GENERATED_SECRET_LEN: usize = 32;

/// A Standard Webhooks signing secret (`v1`, HMAC-SHA256): 24 to 64 random
/// bytes, shown to the receiver once as `whsec_` + base64.
///
/// `Debug` prints `WebhookSecret([REDACTED])`; the bytes are zeroed on drop.
///
/// ```
/// use keyward::webhooks::WebhookSecret;
///
/// let secret = WebhookSecret::generate();
/// let shown = secret.expose_secret();
/// assert!(shown.starts_with("whsec_"));
/// assert_eq!(WebhookSecret::parse(&shown)?, secret);
/// assert_eq!(format!("{secret:?}"), "WebhookSecret([REDACTED])");
/// # Ok::<(), keyward::webhooks::WebhookKeyError>(())
/// ```
#[derive(Clone)]
pub struct WebhookSecret {
    key: Zeroizing<Vec<u8>>,
}

impl WebhookSecret {
    /// A new secret of 32 bytes from the operating system's CSPRNG.
    #[must_use]
    pub fn generate() -> Self {
        let mut key = Zeroizing::new(vec![0u8; GENERATED_SECRET_LEN]);
        rand::rng().fill_bytes(&mut key);
        WebhookSecret { key }
    }

    /// Reads a serialized secret: `whsec_` followed by standard base64
    /// (padded or not), or the base64 alone, as the specification's
    /// libraries accept it.
    ///
    /// # Errors
    ///
    /// [`WebhookKeyError::Encoding`] for text that is not base64,
    /// [`WebhookKeyError::Length`] for fewer than 24 or more than 64 bytes.
    ///
    /// ```
    /// use keyward::webhooks::{WebhookKeyError, WebhookSecret};
    ///
    /// assert!(WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
    /// assert_eq!(WebhookSecret::parse("whsec_c2hvcnQ="), Err(WebhookKeyError::Length));
    /// assert_eq!(WebhookSecret::parse("whsec_!!"), Err(WebhookKeyError::Encoding));
    /// ```
    pub fn parse(text: &str) -> Result<Self, WebhookKeyError> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = Zeroizing::new(decode_base64(encoded)?);
        Self::from_bytes(&key)
    }

    /// A secret of these bytes (24 to 64 of them).
    ///
    /// # Errors
    ///
    /// [`WebhookKeyError::Length`] for fewer than 24 or more than 64 bytes.
    ///
    /// ```
    /// use keyward::webhooks::WebhookSecret;
    ///
    /// assert!(WebhookSecret::from_bytes(&[7; 32]).is_ok());
    /// assert!(WebhookSecret::from_bytes(&[7; 16]).is_err());
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WebhookKeyError> {
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
            return Err(WebhookKeyError::Length);
        }
        Ok(WebhookSecret {
            key: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// The secret as the receiver is given it: `whsec_` + padded base64.
    /// Show it once; never log it.
    #[must_use]
    pub fn expose_secret(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::from(SECRET_PREFIX));
        STANDARD.encode_string(&*self.key, &mut out);
        out
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.key
    }
}

impl PartialEq for WebhookSecret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        // Slices of different lengths compare unequal.
        bool::from(self.key.ct_eq(&other.key))
    }
}

impl Eq for WebhookSecret {}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

/// Standard base64, padded or not (the specification's libraries accept
/// both).
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, WebhookKeyError> {
    let unpadded = text.trim_end_matches('=');
    if text.len() - unpadded.len() > 2 {
        return Err(WebhookKeyError::Encoding);
    }
    STANDARD_NO_PAD
        .decode(unpadded)
        .map_err(|_| WebhookKeyError::Encoding)
}

#[cfg(feature = "webhooks-ed25519")]
pub use self::ed25519::{Ed25519PublicKey, Ed25519SecretKey};

#[cfg(feature = "webhooks-ed25519")]
mod ed25519 {
    use std::fmt;

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
    use rand::RngCore as _;
    use zeroize::Zeroizing;

    use super::{decode_base64, WebhookKeyError};

    pub(crate) const SECRET_KEY_PREFIX: &str = "whsk_";
    pub(crate) const PUBLIC_KEY_PREFIX: &str = "whpk_";

    /// A `v1a` signing key (Ed25519), serialized as `whsk_` + base64 of its
    /// 32-byte seed. The sender keeps it; receivers get the
    /// [`public_key`](Self::public_key). Feature `webhooks-ed25519`.
    ///
    /// ```
    /// use keyward::webhooks::{Ed25519PublicKey, Ed25519SecretKey};
    ///
    /// let key = Ed25519SecretKey::generate();
    /// assert!(key.expose_secret().starts_with("whsk_"));
    /// let public = key.public_key();
    /// assert_eq!(Ed25519PublicKey::parse(&public.to_string())?, public);
    /// assert_eq!(format!("{key:?}"), "Ed25519SecretKey([REDACTED])");
    /// # Ok::<(), keyward::webhooks::WebhookKeyError>(())
    /// ```
    #[derive(Clone)]
    pub struct Ed25519SecretKey(SigningKey);

    impl Ed25519SecretKey {
        /// A new key from the operating system's CSPRNG.
        #[must_use]
        pub fn generate() -> Self {
            let mut seed = Zeroizing::new([0u8; 32]);
            rand::rng().fill_bytes(&mut *seed);
            Ed25519SecretKey(SigningKey::from_bytes(&seed))
        }

        /// Reads `whsk_` + base64 of the 32-byte seed (or of the 64 bytes
        /// seed and public key, checked to agree).
        ///
        /// # Errors
        ///
        /// [`WebhookKeyError::Prefix`] without `whsk_`,
        /// [`WebhookKeyError::Encoding`] for bad base64,
        /// [`WebhookKeyError::Length`] for another length or a public half
        /// that does not match.
        ///
        /// ```
        /// use keyward::webhooks::{Ed25519SecretKey, WebhookKeyError};
        ///
        /// let key = Ed25519SecretKey::generate();
        /// assert!(Ed25519SecretKey::parse(&key.expose_secret()).is_ok());
        /// assert_eq!(Ed25519SecretKey::parse("whpk_AAAA").err(), Some(WebhookKeyError::Prefix));
        /// ```
        pub fn parse(text: &str) -> Result<Self, WebhookKeyError> {
            let encoded = text
                .strip_prefix(SECRET_KEY_PREFIX)
                .ok_or(WebhookKeyError::Prefix)?;
            let bytes = Zeroizing::new(decode_base64(encoded)?);
            let seed: &[u8; 32] = bytes
                .get(..32)
                .and_then(|s| s.try_into().ok())
                .ok_or(WebhookKeyError::Length)?;
            let key = SigningKey::from_bytes(seed);
            match bytes.len() {
                32 => {}
                64 if bytes[32..] == key.verifying_key().to_bytes() => {}
                _ => return Err(WebhookKeyError::Length),
            }
            Ok(Ed25519SecretKey(key))
        }

        /// `whsk_` + base64 of the seed. Never log it.
        #[must_use]
        pub fn expose_secret(&self) -> Zeroizing<String> {
            let mut out = Zeroizing::new(String::from(SECRET_KEY_PREFIX));
            STANDARD.encode_string(self.0.to_bytes(), &mut out);
            out
        }

        /// The public key receivers verify with.
        #[must_use]
        pub fn public_key(&self) -> Ed25519PublicKey {
            Ed25519PublicKey(self.0.verifying_key())
        }

        pub(crate) fn sign(&self, content: &[u8]) -> [u8; 64] {
            self.0.sign(content).to_bytes()
        }
    }

    impl fmt::Debug for Ed25519SecretKey {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Ed25519SecretKey([REDACTED])")
        }
    }

    /// A `v1a` verification key (Ed25519), serialized as `whpk_` + base64
    /// of its 32 bytes; not secret. Feature `webhooks-ed25519`.
    ///
    /// Keys of small order (which would accept forged signatures for some
    /// messages) are refused.
    ///
    /// ```
    /// use keyward::webhooks::{Ed25519PublicKey, WebhookKeyError};
    ///
    /// let identity = format!("whpk_{}", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    /// assert_eq!(Ed25519PublicKey::parse(&identity), Err(WebhookKeyError::WeakKey));
    /// ```
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct Ed25519PublicKey(VerifyingKey);

    impl Ed25519PublicKey {
        /// Reads `whpk_` + base64 of 32 bytes.
        ///
        /// # Errors
        ///
        /// [`WebhookKeyError::Prefix`] without `whpk_`,
        /// [`WebhookKeyError::Encoding`] for bad base64 or a point off the
        /// curve, [`WebhookKeyError::Length`] for another length,
        /// [`WebhookKeyError::WeakKey`] for a key of small order.
        pub fn parse(text: &str) -> Result<Self, WebhookKeyError> {
            let encoded = text
                .strip_prefix(PUBLIC_KEY_PREFIX)
                .ok_or(WebhookKeyError::Prefix)?;
            let bytes: [u8; 32] = decode_base64(encoded)?
                .try_into()
                .map_err(|_| WebhookKeyError::Length)?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| WebhookKeyError::Encoding)?;
            if key.is_weak() {
                return Err(WebhookKeyError::WeakKey);
            }
            Ok(Ed25519PublicKey(key))
        }

        /// Whether `signature` is this key's (strict verification: no
        /// malleable or small-order signatures).
        pub(crate) fn verify(&self, content: &[u8], signature: &[u8]) -> bool {
            let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
                return false;
            };
            self.0.verify_strict(content, &signature).is_ok()
        }
    }

    impl fmt::Display for Ed25519PublicKey {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "{PUBLIC_KEY_PREFIX}{}",
                STANDARD.encode(self.0.to_bytes())
            )
        }
    }

    impl fmt::Debug for Ed25519PublicKey {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_tuple("Ed25519PublicKey")
                .field(&self.to_string())
                .finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_value_and_print_redacted() {
        let a = WebhookSecret::from_bytes(&[7; 32]).unwrap();
        assert_eq!(a, WebhookSecret::from_bytes(&[7; 32]).unwrap());
        assert_ne!(a, WebhookSecret::from_bytes(&[8; 32]).unwrap());
        assert_ne!(a, WebhookSecret::from_bytes(&[7; 24]).unwrap());
        assert_ne!(WebhookSecret::generate(), WebhookSecret::generate());
        assert_eq!(format!("{a:?}"), "WebhookSecret([REDACTED])");
        assert_eq!(
            &*a.expose_secret(),
            "whsec_BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
        );
        assert!(WebhookSecret::from_bytes(&[0; MAX_SECRET_LEN]).is_ok());
        assert!(WebhookSecret::from_bytes(&[0; MAX_SECRET_LEN + 1]).is_err());
        assert!(WebhookSecret::from_bytes(&[0; MIN_SECRET_LEN - 1]).is_err());
    }

    #[cfg(feature = "webhooks-ed25519")]
    #[test]
    fn ed25519_keys_parse_the_seed_or_the_seed_and_its_public_half() {
        let key = Ed25519SecretKey::generate();
        let seed = decode_base64(key.expose_secret().strip_prefix("whsk_").unwrap()).unwrap();
        let public = key.public_key();
        let public_bytes =
            decode_base64(public.to_string().strip_prefix("whpk_").unwrap()).unwrap();
        let encode = |bytes: &[u8]| format!("whsk_{}", STANDARD.encode(bytes));
        let parsed = Ed25519SecretKey::parse(&encode(&seed)).unwrap();
        assert_eq!(parsed.public_key(), public);
        let both = [seed.clone(), public_bytes.clone()].concat();
        assert_eq!(
            Ed25519SecretKey::parse(&encode(&both))
                .unwrap()
                .public_key(),
            public
        );
        let mut wrong = both.clone();
        wrong[40] ^= 1;
        assert_eq!(
            Ed25519SecretKey::parse(&encode(&wrong)).err(),
            Some(WebhookKeyError::Length)
        );
        assert_eq!(
            Ed25519SecretKey::parse(&encode(&seed[..31])).err(),
            Some(WebhookKeyError::Length)
        );
        assert_eq!(format!("{key:?}"), "Ed25519SecretKey([REDACTED])");
        assert_eq!(
            format!("{public:?}"),
            format!("Ed25519PublicKey({:?})", public.to_string())
        );
    }
}
