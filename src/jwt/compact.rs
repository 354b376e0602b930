//! The JWS compact serialization, parsed before any key is looked up:
//! `base64url(header) . base64url(payload) . base64url(signature)`.
//!
//! Everything here runs on attacker-controlled input and is fuzzed
//! (`fuzz/fuzz_targets/jwt_parse.rs`): bounded sizes, canonical unpadded
//! base64url only, JSON objects only, no panics.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::JwtAlgorithm;

/// Longest JWT read (bytes). Cognito ID tokens with many groups stay far
/// below; anything longer is refused before decoding.
pub(crate) const MAX_JWT_LEN: usize = 16 * 1024;

/// Why a compact JWS was refused before its signature was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Longer than [`MAX_JWT_LEN`].
    TooLong,
    /// Not three dot-separated parts (a JWE has five).
    Parts,
    /// A part is not canonical unpadded base64url.
    Base64,
    /// The header is not a JSON object with the fields a JWS needs.
    Header,
    /// `alg` is not one of the accepted algorithms (`none` never is).
    Algorithm,
    /// The header lists `crit` extensions, none of which keyward
    /// understands (RFC 7515 §4.1.11 requires refusing them).
    Critical,
    /// The payload is not a JSON object.
    Payload,
}

/// A compact JWS split and decoded, signature not yet checked.
#[derive(Debug)]
pub(crate) struct Compact<'a> {
    /// `header . payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    pub(crate) alg: JwtAlgorithm,
    pub(crate) kid: Option<String>,
    pub(crate) payload: &'a str,
    pub(crate) signature: Vec<u8>,
}

/// Splits and decodes `token`; `accepted` is the algorithm allowlist.
pub(crate) fn parse<'a>(
    token: &'a str,
    accepted: &[JwtAlgorithm],
) -> Result<Compact<'a>, Malformed> {
    if token.len() > MAX_JWT_LEN {
        return Err(Malformed::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed::Parts);
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let header_bytes = decode(header)?;
    let Ok(Value::Object(mut header)) = serde_json::from_slice::<Value>(&header_bytes) else {
        return Err(Malformed::Header);
    };
    if header.contains_key("crit") {
        return Err(Malformed::Critical);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(Malformed::Header)?;
    let alg = JwtAlgorithm::from_name(alg).ok_or(Malformed::Algorithm)?;
    if !accepted.contains(&alg) {
        return Err(Malformed::Algorithm);
    }
    let kid = match header.remove("kid") {
        None => None,
        Some(Value::String(kid)) if !kid.is_empty() => Some(kid),
        Some(_) => return Err(Malformed::Header),
    };
    let signature = decode(signature)?;
    if signature.is_empty() {
        return Err(Malformed::Base64);
    }
    Ok(Compact {
        signing_input,
        alg,
        kid,
        payload,
        signature,
    })
}

/// The payload's claims: a JSON object, nothing else.
pub(crate) fn claims(payload: &str) -> Result<Map<String, Value>, Malformed> {
    let bytes = decode(payload)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Malformed::Payload),
    }
}

/// Canonical unpadded base64url (the engine refuses padding and
/// non-zero trailing bits, so one value has one encoding).
pub(crate) fn decode(part: &str) -> Result<Vec<u8>, Malformed> {
    if part.is_empty() {
        return Err(Malformed::Base64);
    }
    URL_SAFE_NO_PAD.decode(part).map_err(|_| Malformed::Base64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    const RS: &[JwtAlgorithm] = &[JwtAlgorithm::RS256];

    #[test]
    fn a_well_formed_token_parses() {
        let t = token(r#"{"alg":"RS256","kid":"k1"}"#, r#"{"sub":"a"}"#);
        let c = parse(&t, RS).unwrap();
        assert_eq!(c.alg, JwtAlgorithm::RS256);
        assert_eq!(c.kid.as_deref(), Some("k1"));
        assert_eq!(c.signature, b"sig");
        assert_eq!(c.signing_input, &t[..t.rfind('.').unwrap()]);
        assert_eq!(claims(c.payload).unwrap()["sub"], "a");
    }

    #[test]
    fn none_hmac_and_unlisted_algorithms_are_refused() {
        for alg in ["none", "None", "HS256", "HS512", "ES256", "rs256", ""] {
            let t = token(&format!(r#"{{"alg":"{alg}","kid":"k"}}"#), "{}");
            assert_eq!(parse(&t, RS).unwrap_err(), Malformed::Algorithm, "{alg}");
        }
    }

    #[test]
    fn malformed_shapes_are_refused() {
        let good = token(r#"{"alg":"RS256"}"#, "{}");
        assert_eq!(
            parse(&format!("{good}.x.y"), RS).unwrap_err(),
            Malformed::Parts
        );
        assert_eq!(parse("a.b", RS).unwrap_err(), Malformed::Parts);
        assert_eq!(
            parse(&format!("{good}="), RS).unwrap_err(),
            Malformed::Base64
        );
        let no_sig = &good[..=good.rfind('.').unwrap()];
        assert_eq!(parse(no_sig, RS).unwrap_err(), Malformed::Base64);
        let crit = token(r#"{"alg":"RS256","crit":["exp"]}"#, "{}");
        assert_eq!(parse(&crit, RS).unwrap_err(), Malformed::Critical);
        let array = token(r#"["alg"]"#, "{}");
        assert_eq!(parse(&array, RS).unwrap_err(), Malformed::Header);
        let number_kid = token(r#"{"alg":"RS256","kid":7}"#, "{}");
        assert_eq!(parse(&number_kid, RS).unwrap_err(), Malformed::Header);
        let no_alg = token(r#"{"kid":"k"}"#, "{}");
        assert_eq!(parse(&no_alg, RS).unwrap_err(), Malformed::Header);
        let empty_kid = token(r#"{"alg":"RS256","kid":""}"#, "{}");
        assert_eq!(parse(&empty_kid, RS).unwrap_err(), Malformed::Header);
        let long = "a".repeat(MAX_JWT_LEN + 1);
        assert_eq!(parse(&long, RS).unwrap_err(), Malformed::TooLong);
        assert_eq!(claims(&b64("[1]")).unwrap_err(), Malformed::Payload);
        assert_eq!(claims(&b64("{\"a\":1} x")).unwrap_err(), Malformed::Payload);
    }

    #[test]
    fn the_length_limit_is_inclusive() {
        // Large tokens (an ID token with many groups) parse.
        let big = token(
            r#"{"alg":"RS256"}"#,
            &format!(r#"{{"groups":"{}"}}"#, "g".repeat(9000)),
        );
        assert!(big.len() > 12_000 && big.len() < MAX_JWT_LEN);
        assert!(parse(&big, RS).is_ok());
        // At the limit the length check passes (what follows may fail).
        let at_limit = format!("{big}{}", "A".repeat(MAX_JWT_LEN - big.len()));
        assert_ne!(parse(&at_limit, RS).err(), Some(Malformed::TooLong));
        let over = format!("{at_limit}A");
        assert_eq!(parse(&over, RS).unwrap_err(), Malformed::TooLong);
    }

    #[test]
    fn non_canonical_base64_is_refused() {
        // "QQ" is "A"; "QR" decodes to the same byte with non-zero trailing bits.
        assert_eq!(decode("QQ").unwrap(), b"A");
        assert_eq!(decode("QR").unwrap_err(), Malformed::Base64);
        assert_eq!(decode("QQ==").unwrap_err(), Malformed::Base64);
        assert_eq!(decode("Q+").unwrap_err(), Malformed::Base64);
    }
}
