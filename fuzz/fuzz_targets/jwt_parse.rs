//! `JwtAuthenticator::verify` (the JWS parsing keyward does itself, the key
//! lookup, the signature and the claim checks) on hostile input, through the
//! public API only, against what `keyward::jwt` promises. Keys are fixed (an
//! ES256 and an Ed25519 key from constant seeds, so every run signs the same
//! tokens) and served by an in-process `JwksFetcher`; the clock is a
//! `ManualClock` at a fixed instant; the leeway is the default 60 s. The
//! fixture asserts that both valid tokens verify before any input runs.
//!
//! The input's first byte picks a mode:
//!
//! * **text**: the rest, as lossy UTF-8, is the bearer value. It must never
//!   panic and never verify unless it is byte for byte one of the tokens the
//!   target signed; any other text is `Invalid` (`Expired` needs a valid
//!   signature).
//! * **mutation**: one of the two valid tokens, changed once as the input
//!   says, and then the untouched token, which must still verify (so the
//!   target fails if verification breaks, or if a refusal spoiled the key
//!   cache). The changes: a byte replaced, inserted or removed; a part taken
//!   from the other token; the header replaced by `alg: none`, by an HMAC
//!   header signed with the public key (its SEC1, SPKI or raw bytes, its JWK
//!   or the whole JWKS as the secret), by the other algorithm or the other
//!   `kid`, or re-spelled, all under the old signature; a token signed with
//!   the real key but with a `crit` member, a mismatched `alg`/`kid`, an
//!   algorithm outside the allowlist or no `kid` (two keys: ambiguous); a
//!   token signed by an attacker's key naming the real `kid`, with its own
//!   key embedded as `jwk`/`jku`; the payload re-encoded with changed claims
//!   or the same claims spelled otherwise under the old signature; a
//!   non-canonical base64url spelling of a part (padding, the standard
//!   alphabet, non-zero trailing bits, whitespace); a truncated, extended,
//!   zeroed, DER-encoded or reordered signature, an Ed25519 `S + L`, or
//!   signature/payload bytes from the input; extra or missing parts and
//!   surrounding whitespace. The result verifies if and only if it equals
//!   the original (base64url is canonical here, so no other spelling of a
//!   token exists), and every refusal is `Invalid`, never `Expired`.
//!
//!   Not checked: an ES256 signature's `(r, n - s)` twin. ECDSA signatures
//!   are malleable and the verifier (like JWA, RFC 7518 §3.4) accepts both
//!   `s` and `n - s`, so an ES256 token has exactly two spellings that
//!   verify, with the same claims. No single input-driven change produces
//!   it.
//! * **claims**: a payload built from the input (`exp`, `nbf`, `iat` as
//!   integers or decimals at and around the leeway's edges, arbitrary
//!   integers and floats, huge and out-of-range literals, exponent forms,
//!   strings, booleans, null, arrays, objects or absent; `iss`, `aud` and
//!   `sub` right (also spelled with JSON escapes), wrong, of the wrong JSON
//!   type or absent; sometimes not JSON at all), signed with the real key
//!   (mostly Ed25519: ES256 is far slower under the sanitizer, and the
//!   claim checks do not depend on the algorithm).
//!   The answer must be a model's written from the module docs and
//!   `Inner::check`: `Accepted` only when `exp` is a finite number with
//!   `now - leeway < exp`, `nbf` and `iat` are absent or finite numbers
//!   `<= now + leeway`, `iss` is exactly the issuer, `aud` is the audience
//!   or an array holding it as a string, and `sub` is a non-empty string
//!   (then the claims handed back are the payload's, subject included);
//!   `Expired` exactly when all of that holds but `exp` has passed;
//!   `Invalid` otherwise. The model reads numbers as serde_json parses the
//!   payload (what a number literal means is JSON's business, not
//!   keyward's).
#![no_main]

mod common;

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::Fixture;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey};
use keyward::http::{ExternalAuthError, ExternalPrincipal};
use keyward::jwt::{
    JwksFetchError, JwksFetcher, JwksResponse, JwtAlgorithm, JwtAuthenticator, JwtClaims,
};
use keyward::ManualClock;
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

const ISS: &str = "https://issuer.fuzz/";
const AUD: &str = "dashboard";
const SUB: &str = "user-1";
const NOW: i64 = 1_800_000_000;
/// The builder's default leeway (not set, so the default is what is tested).
const LEEWAY: f64 = 60.0;
/// The longest token read (`compact::MAX_JWT_LEN`): longer is refused
/// before decoding. Only the claims mode can get near it.
const MAX_JWT_LEN: usize = 16 * 1024;
/// The Ed25519 group order, little-endian.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The issuer's key set, the same on every fetch.
struct Fixed(Vec<u8>);

#[keyward::async_trait]
impl JwksFetcher for Fixed {
    async fn fetch(&self, _url: &str) -> Result<JwksResponse, JwksFetchError> {
        Ok(JwksResponse::new(self.0.clone()).cache_control("max-age=86400"))
    }
}

/// A signing key, its JWK and what a confused verifier might take for an
/// HMAC secret.
struct Key {
    alg: Algorithm,
    kid: &'static str,
    encoding: EncodingKey,
    jwk: Value,
    secrets: Vec<Vec<u8>>,
}

impl Key {
    fn es256(seed: u8, kid: &'static str) -> Key {
        use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
        let key = p256::ecdsa::SigningKey::from_bytes(&[seed; 32].into()).unwrap();
        let public = key.verifying_key();
        let point = public.to_encoded_point(false);
        let (x, y) = (point.x().unwrap().to_vec(), point.y().unwrap().to_vec());
        let jwk = json!({
            "kty": "EC", "kid": kid, "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&x), "y": URL_SAFE_NO_PAD.encode(&y),
        });
        let secrets = vec![
            point.as_bytes().to_vec(),
            public.to_encoded_point(true).as_bytes().to_vec(),
            [x.as_slice(), y.as_slice()].concat(),
            public.to_public_key_der().unwrap().into_vec(),
            public
                .to_public_key_pem(LineEnding::LF)
                .unwrap()
                .into_bytes(),
            jwk.to_string().into_bytes(),
        ];
        Key {
            alg: Algorithm::ES256,
            kid,
            encoding: EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
            jwk,
            secrets,
        }
    }

    fn eddsa(seed: u8, kid: &'static str) -> Key {
        use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let public = key.verifying_key();
        let x = URL_SAFE_NO_PAD.encode(public.as_bytes());
        let jwk = json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": x});
        let secrets = vec![
            public.as_bytes().to_vec(),
            x.into_bytes(),
            public.to_public_key_der().unwrap().into_vec(),
            jwk.to_string().into_bytes(),
        ];
        Key {
            alg: Algorithm::EdDSA,
            kid,
            encoding: EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes()),
            jwk,
            secrets,
        }
    }

    /// `alg` as a header names it.
    fn alg_name(&self) -> &'static str {
        match self.alg {
            Algorithm::ES256 => "ES256",
            _ => "EdDSA",
        }
    }

    /// `header . payload . signature`, signed with this key whatever the
    /// header says.
    fn sign(&self, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{input}.{sig}")
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(part).unwrap()
}

fn header(alg: &str, kid: &str) -> Vec<u8> {
    json!({"typ": "JWT", "alg": alg, "kid": kid})
        .to_string()
        .into_bytes()
}

fn valid_payload() -> String {
    json!({"iss": ISS, "aud": AUD, "sub": SUB, "iat": NOW, "exp": NOW + 300}).to_string()
}

struct State {
    auth: JwtAuthenticator,
    /// The issuer's keys: ES256 (`es`) and Ed25519 (`ed`).
    keys: [Key; 2],
    /// A valid token under each key.
    tokens: [String; 2],
    /// Per key: tokens validly signed (by that key or an attacker's) that
    /// must still be refused. Signing is slow under the sanitizer, so they
    /// are made once.
    resigned: [Vec<String>; 2],
    jwks: Vec<u8>,
}

fn fixture() -> &'static Fixture<State> {
    static FIXTURE: OnceLock<Fixture<State>> = OnceLock::new();
    common::fixture(&FIXTURE, |runtime| {
        let keys = [Key::es256(7, "es"), Key::eddsa(9, "ed")];
        let attackers = [Key::es256(8, "es"), Key::eddsa(10, "ed")];
        let jwks = json!({"keys": [keys[0].jwk, keys[1].jwk]})
            .to_string()
            .into_bytes();
        let auth = JwtAuthenticator::builder("http://127.0.0.1/jwks.json")
            .issuer(ISS)
            .audience([AUD])
            .algorithms([JwtAlgorithm::ES256, JwtAlgorithm::EdDSA])
            .fetcher(Fixed(jwks.clone()))
            .clock(ManualClock::new(
                OffsetDateTime::from_unix_timestamp(NOW).unwrap(),
            ))
            .principal(|claims| {
                let catalog =
                    std::sync::Arc::new(keyward::ScopeCatalog::builder().build().unwrap());
                Ok(ExternalPrincipal::new(
                    claims.subject(),
                    [],
                    keyward::ScopeSet::default(),
                    catalog,
                ))
            })
            .build()
            .unwrap();
        assert_eq!(runtime.block_on(auth.refresh()).unwrap(), 2);
        let payload = valid_payload();
        let tokens = [0, 1].map(|i| {
            let k = &keys[i];
            k.sign(&header(k.alg_name(), k.kid), payload.as_bytes())
        });
        for token in &tokens {
            runtime
                .block_on(auth.verify(token))
                .expect("a valid token verifies");
        }
        let resigned = [0, 1].map(|i| {
            let (k, other, attacker) = (&keys[i], &keys[1 - i], &attackers[i]);
            let p = payload.as_bytes();
            let mut out = vec![
                // The other algorithm, the other kid, or both.
                k.sign(&header(other.alg_name(), k.kid), p),
                k.sign(&header(k.alg_name(), other.kid), p),
                k.sign(&header(other.alg_name(), other.kid), p),
                // No kid: the set has two keys, so none is chosen.
                k.sign(json!({"alg": k.alg_name()}).to_string().as_bytes(), p),
                // A kid the set does not have.
                k.sign(&header(k.alg_name(), "es "), p),
                // Critical extensions keyward does not understand.
                k.sign(json!({"alg": k.alg_name(), "kid": k.kid, "crit": ["exp"]}).to_string().as_bytes(), p),
                k.sign(json!({"alg": k.alg_name(), "kid": k.kid, "crit": []}).to_string().as_bytes(), p),
                k.sign(json!({"alg": k.alg_name(), "kid": k.kid, "crit": ["b64"], "b64": false}).to_string().as_bytes(), p),
                k.sign(json!({"alg": k.alg_name(), "kid": k.kid, "crit": null}).to_string().as_bytes(), p),
                // Algorithms outside the allowlist, or misspelled.
                k.sign(&header("ES384", k.kid), p),
                k.sign(&header("RS256", k.kid), p),
                k.sign(&header("Ed25519", k.kid), p),
                k.sign(&header(&k.alg_name().to_lowercase(), k.kid), p),
                // A header that is not an object, or a kid of another type.
                k.sign(json!([{"alg": k.alg_name(), "kid": k.kid}]).to_string().as_bytes(), p),
                k.sign(json!({"alg": k.alg_name(), "kid": [k.kid]}).to_string().as_bytes(), p),
                // The attacker's key under the issuer's kid, its own key
                // offered alongside.
                attacker.sign(&header(k.alg_name(), k.kid), p),
                attacker.sign(json!({"alg": k.alg_name(), "kid": k.kid, "jwk": attacker.jwk}).to_string().as_bytes(), p),
                attacker.sign(json!({"alg": k.alg_name(), "jwk": attacker.jwk}).to_string().as_bytes(), p),
                attacker.sign(json!({"alg": k.alg_name(), "kid": k.kid, "jku": "https://attacker.example/jwks.json"}).to_string().as_bytes(), p),
            ];
            // The attacker's key's own kid would be unknown; under the
            // other issuer key's kid it does not fit.
            out.push(attacker.sign(&header(k.alg_name(), other.kid), p));
            out
        });
        State {
            auth,
            keys,
            tokens,
            resigned,
            jwks,
        }
    })
}

#[derive(Debug, PartialEq)]
enum Refused {
    Expired,
    Invalid,
}

fn verify(f: &Fixture<State>, token: &str) -> Result<JwtClaims, Refused> {
    match f.runtime.block_on(f.auth.verify(token)) {
        Ok(claims) => Ok(claims),
        Err(ExternalAuthError::Expired) => Err(Refused::Expired),
        Err(ExternalAuthError::Invalid) => Err(Refused::Invalid),
        Err(other) => panic!("a fixed key set never makes verification unavailable: {other}"),
    }
}

/// An HMAC over `input` with a hash as `alg` names it.
fn hmac(alg: &str, secret: &[u8], input: &str) -> Vec<u8> {
    fn mac<M: Mac + hmac::digest::KeyInit>(secret: &[u8], input: &str) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        "HS384" => mac::<Hmac<sha2::Sha384>>(secret, input),
        "HS512" => mac::<Hmac<sha2::Sha512>>(secret, input),
        _ => mac::<Hmac<sha2::Sha256>>(secret, input),
    }
}

/// A DER `INTEGER` of a big-endian unsigned value.
fn der_int(bytes: &[u8]) -> Vec<u8> {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut v = bytes[start..].to_vec();
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    let mut out = vec![0x02, u8::try_from(v.len()).unwrap()];
    out.extend(v);
    out
}

/// The token `original` changed once as the input says.
fn mutate(u: &mut Unstructured<'_>, f: &State, which: usize) -> ArbResult<String> {
    let original = &f.tokens[which];
    let other = &f.tokens[1 - which];
    let parts: Vec<&str> = original.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let key = &f.keys[which];
    let other_key = &f.keys[1 - which];
    let join = |h: &str, p: &str, s: &str| format!("{h}.{p}.{s}");
    Ok(match u.int_in_range(0..=14u8)? {
        0 => {
            let mut bytes = original.as_bytes().to_vec();
            let i = u.choose_index(bytes.len())?;
            bytes[i] = u.arbitrary()?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        1 => {
            let mut s = original.clone();
            let i = u.int_in_range(0..=s.len())?;
            s.insert(i, u.arbitrary()?);
            s
        }
        2 => {
            let mut s = original.clone();
            s.remove(u.choose_index(s.len())?);
            s
        }
        3 => {
            let mut mixed = parts.clone();
            let i = u.choose_index(3)?;
            mixed[i] = other_parts[i];
            mixed.join(".")
        }
        4 => {
            // alg none, under any spelling, with or without the signature.
            let alg = *u.choose(&["none", "None", "NONE", "nOnE", ""])?;
            let h = b64(json!({"alg": alg, "kid": key.kid, "typ": "JWT"}).to_string());
            match u.int_in_range(0..=2u8)? {
                0 => join(&h, parts[1], parts[2]),
                1 => format!("{h}.{}.", parts[1]),
                _ => format!("{h}.{}", parts[1]),
            }
        }
        5 => {
            // HMAC keyed by something public (key confusion).
            let alg = *u.choose(&["HS256", "HS384", "HS512"])?;
            let signer = if u.arbitrary()? { key } else { other_key };
            let kid = if u.arbitrary()? {
                Some(signer.kid)
            } else {
                None
            };
            let h = b64(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string());
            let input = format!("{h}.{}", parts[1]);
            let secret = match u.choose_index(signer.secrets.len() + 1)? {
                i if i < signer.secrets.len() => signer.secrets[i].as_slice(),
                _ => f.jwks.as_slice(),
            };
            format!("{input}.{}", b64(hmac(alg, secret, &input)))
        }
        6 => {
            // Another header under the old signature.
            let name = key.alg_name();
            let h: Vec<u8> = match u.int_in_range(0..=9u8)? {
                0 => header(other_key.alg_name(), key.kid),
                1 => header(other_key.alg_name(), other_key.kid),
                2 => header(name, other_key.kid),
                3 => json!({"typ": "JWT", "alg": name}).to_string().into_bytes(),
                // The same header, spelled otherwise.
                4 => format!(r#"{{"typ":"JWT","kid":"{}","alg":"{name}"}}"#, key.kid).into_bytes(),
                5 => format!(
                    r#"{{ "typ": "JWT", "alg": "{name}", "kid": "{}" }}"#,
                    key.kid
                )
                .into_bytes(),
                6 => format!(
                    r#"{{"typ":"JWT","alg":"\u00{:x}{}","kid":"{}"}}"#,
                    name.as_bytes()[0],
                    &name[1..],
                    key.kid
                )
                .into_bytes(),
                7 => [header(name, key.kid), b"\n".to_vec()].concat(),
                // A repeated member.
                8 => format!(
                    r#"{{"typ":"JWT","alg":"{}","alg":"{name}","kid":"{}"}}"#,
                    other_key.alg_name(),
                    key.kid
                )
                .into_bytes(),
                _ => format!(
                    r#"{{"typ":"JWT","alg":"{name}","kid":"{}","kid":"{}"}}"#,
                    other_key.kid, key.kid
                )
                .into_bytes(),
            };
            join(&b64(h), parts[1], parts[2])
        }
        7 => u.choose(&f.resigned[which])?.clone(),
        8 => {
            // Other claims, or the same claims spelled otherwise, under the
            // old signature.
            let mut claims: Map<String, Value> = serde_json::from_slice(&unb64(parts[1])).unwrap();
            let payload = match u.int_in_range(0..=9u8)? {
                0 => {
                    claims.insert("sub".into(), u.arbitrary::<String>()?.into());
                    Value::Object(claims).to_string()
                }
                1 => {
                    claims.insert("exp".into(), json!(NOW + 86_400 * 365));
                    Value::Object(claims).to_string()
                }
                2 => {
                    claims.insert("aud".into(), json!([AUD, "admin"]));
                    Value::Object(claims).to_string()
                }
                3 => {
                    claims.insert("scope".into(), json!("admin"));
                    Value::Object(claims).to_string()
                }
                4 => {
                    claims.remove(*u.choose(&["iat", "exp", "iss", "aud", "sub"])?);
                    Value::Object(claims).to_string()
                }
                5 => {
                    claims.insert("exp".into(), json!(NOW - 3600));
                    Value::Object(claims).to_string()
                }
                6 => serde_json::to_string_pretty(&claims).unwrap(),
                7 => format!(" {} ", Value::Object(claims)),
                8 => {
                    let mut members: Vec<String> = claims
                        .iter()
                        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
                        .collect();
                    members.reverse();
                    format!("{{{}}}", members.join(","))
                }
                _ => format!("\u{feff}{}", Value::Object(claims)),
            };
            join(parts[0], &b64(payload), parts[2])
        }
        9 => {
            // A non-canonical base64url spelling of one part.
            let i = u.choose_index(3)?;
            let mut mixed: Vec<String> = parts.iter().map(|p| (*p).to_owned()).collect();
            let part = parts[i];
            mixed[i] = match u.int_in_range(0..=4u8)? {
                0 => format!("{part}{}", ["=", "==", "==="][u.choose_index(3)?]),
                1 => STANDARD_NO_PAD.encode(unb64(part)),
                2 => {
                    // Non-zero bits after the last byte: the same bytes.
                    let bits = match part.len() % 4 {
                        2 => 4,
                        3 => 2,
                        _ => 0,
                    };
                    if bits == 0 {
                        part.to_owned()
                    } else {
                        const ALPHABET: &[u8] =
                            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                        let last = part.as_bytes()[part.len() - 1];
                        let index = ALPHABET.iter().position(|&c| c == last).unwrap();
                        let low = u.int_in_range(1..=(1u8 << bits) - 1)?;
                        let changed =
                            char::from(ALPHABET[usize::from(u8::try_from(index).unwrap() | low)]);
                        format!("{}{changed}", &part[..part.len() - 1])
                    }
                }
                3 => {
                    let at = u.int_in_range(0..=part.len())?;
                    let space = *u.choose(&[" ", "\n", "\r\n", "\t", "%3D"])?;
                    format!("{}{space}{}", &part[..at], &part[at..])
                }
                _ => part.to_ascii_uppercase(),
            };
            mixed.join(".")
        }
        10 => {
            // The signature's bytes changed.
            let mut sig = unb64(parts[2]);
            match u.int_in_range(0..=6u8)? {
                0 => sig.truncate(sig.len() - u.int_in_range(1..=sig.len())?),
                1 => sig
                    .extend(std::iter::repeat(u.arbitrary::<u8>()?).take(u.int_in_range(1..=64)?)),
                2 => sig.iter_mut().for_each(|b| *b = 0),
                3 => sig.rotate_left(32),
                4 if key.alg == Algorithm::ES256 => {
                    let (r, s) = sig.split_at(32);
                    let body = [der_int(r), der_int(s)].concat();
                    sig = [vec![0x30, u8::try_from(body.len()).unwrap()], body].concat();
                }
                4 => {
                    // Ed25519: S + L, the same scalar, not reduced.
                    let mut carry = 0u16;
                    for (b, l) in sig[32..].iter_mut().zip(ED25519_L) {
                        let sum = u16::from(*b) + u16::from(l) + carry;
                        *b = sum as u8;
                        carry = sum >> 8;
                    }
                }
                5 => sig = u.bytes(u.len().min(200))?.to_vec(),
                _ => {
                    let i = u.choose_index(sig.len())?;
                    sig[i] ^= 1 << u.int_in_range(0..=7u8)?;
                }
            }
            join(parts[0], parts[1], &b64(sig))
        }
        11 => {
            // A payload from the input under the old signature.
            let payload = u.bytes(u.len().min(400))?;
            join(parts[0], &b64(payload), parts[2])
        }
        12 => {
            // The wrong number of parts, or something around the token.
            match u.int_in_range(0..=7u8)? {
                0 => format!("{original}."),
                1 => format!("{original}.{}", parts[2]),
                2 => format!("{original}.{}.{}", parts[1], parts[2]),
                3 => format!("{}.{}", parts[0], parts[1]),
                4 => format!(".{original}"),
                5 => format!("{}..{}.{}", parts[0], parts[1], parts[2]),
                6 => format!("Bearer {original}"),
                _ => format!(
                    "{}{original}{}",
                    u.choose(&["", " ", "\t", "\n"])?,
                    u.choose(&["", " ", "\r\n", "\0"])?
                ),
            }
        }
        13 => {
            // A string from the input in place of a span of the token.
            let start = u.int_in_range(0..=original.len())?;
            let end = u.int_in_range(start..=original.len().min(start + 16))?;
            let with: String = u.arbitrary()?;
            format!("{}{with}{}", &original[..start], &original[end..])
        }
        _ => {
            // The other token's signature over this token's input, or this
            // token's with the other's header (cross-key confusion).
            if u.arbitrary()? {
                join(parts[0], parts[1], other_parts[2])
            } else {
                join(other_parts[0], parts[1], parts[2])
            }
        }
    })
}

/// A time claim's JSON text: absent, a number at or around the leeway's
/// edges, an arbitrary or extreme number, or another type.
fn time_claim(u: &mut Unstructured<'_>) -> ArbResult<Option<String>> {
    Ok(Some(match u.int_in_range(0..=10u8)? {
        0 => return Ok(None),
        1 => (NOW + *u.choose(&[-61i64, -60, -59, -1, 0, 1, 59, 60, 61, 300])?).to_string(),
        2 => (NOW + i64::from(u.int_in_range(-400i16..=400)?)).to_string(),
        3 => {
            // Tenths of a second around the clock, as exact decimals.
            let tenths = NOW * 10 + i64::from(u.int_in_range(-4000i16..=4000)?);
            format!("{}.{}", tenths / 10, tenths % 10)
        }
        4 => (*u.choose(&[
            "1799999939.5",
            "1799999940.5",
            "1799999940.000001",
            "1799999939.999999",
            "1800000059.5",
            "1800000060.5",
            "1800000060.000001",
            "1800000059.999999",
            "1799999940.0",
            "1800000060.0",
            "17999999400e-1",
            "1.79999994e9",
            "1.80000006E9",
            "1.8e9",
            "18e8",
            "0.18e10",
            "1800000300e0",
            "-1800000300",
        ])?)
        .to_owned(),
        5 => {
            if u.arbitrary()? {
                u.arbitrary::<i64>()?.to_string()
            } else {
                u.arbitrary::<u64>()?.to_string()
            }
        }
        // serde_json writes a non-finite float as null.
        6 => serde_json::to_string(&u.arbitrary::<f64>()?).unwrap(),
        7 => (*u.choose(&[
            "1e400",
            "-1e400",
            "1e308",
            "-1e308",
            "1.7976931348623157e308",
            "5e-324",
            "1e-400",
            "0",
            "-0",
            "-0.0",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "100000000000000000000000000000000000000",
        ])?)
        .to_owned(),
        8 => Value::from(u.arbitrary::<String>()?).to_string(),
        9 => (*u.choose(&[
            "\"1800000300\"",
            "true",
            "false",
            "null",
            "[1800000300]",
            "{\"t\":1800000300}",
        ])?)
        .to_owned(),
        _ => (NOW + 300).to_string(),
    }))
}

/// Every character of `s` as a JSON `\u` escape: the same string.
fn escaped(s: &str) -> String {
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        out.push_str(&format!("\\u{unit:04x}"));
    }
    out.push('"');
    out
}

/// The right value's text (plainly or escaped) half the time, else one of
/// `wrong`, a string from the input, or none.
fn string_claim(
    u: &mut Unstructured<'_>,
    right: &str,
    wrong: &[&str],
) -> ArbResult<Option<String>> {
    Ok(match u.int_in_range(0..=7u8)? {
        0..=2 => Some(Value::from(right).to_string()),
        3 => Some(escaped(right)),
        4 => Some(Value::from(u.arbitrary::<String>()?).to_string()),
        5 => None,
        _ => Some((*u.choose(wrong)?).to_owned()),
    })
}

/// What keyward must answer for a signed payload: the claims and subject
/// of an accepted token, or the refusal.
fn model(payload: &[u8], token_len: usize) -> Result<(Map<String, Value>, String), Refused> {
    if token_len > MAX_JWT_LEN {
        return Err(Refused::Invalid);
    }
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(payload) else {
        return Err(Refused::Invalid);
    };
    let now = NOW as f64;
    // A time claim: absent, or a finite number; anything else refuses.
    let time = |name: &str| -> Result<Option<f64>, Refused> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(t) if t.is_finite() => Ok(Some(t)),
                _ => Err(Refused::Invalid),
            },
            Some(_) => Err(Refused::Invalid),
        }
    };
    let exp = time("exp")?.ok_or(Refused::Invalid)?;
    let not_future = |t: Option<f64>| t.is_none_or(|t| t <= now + LEEWAY);
    let nbf_ok = not_future(time("nbf")?);
    let iat_ok = not_future(time("iat")?);
    let iss_ok = matches!(claims.get("iss"), Some(Value::String(s)) if s == ISS);
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == AUD,
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(AUD)),
        _ => false,
    };
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(Refused::Invalid),
    };
    if !(nbf_ok && iat_ok && iss_ok && aud_ok) {
        return Err(Refused::Invalid);
    }
    if now - LEEWAY < exp {
        Ok((claims, sub))
    } else {
        Err(Refused::Expired)
    }
}

fn claims_case(u: &mut Unstructured<'_>, f: &Fixture<State>) -> ArbResult<()> {
    // Mostly Ed25519: the claim checks do not depend on the algorithm, and
    // ES256 signing and verification are many times slower under the
    // sanitizer (the mutation mode covers both algorithms evenly).
    // (`ratio` is true once the input is used up: Ed25519 then too.)
    let which = if u.ratio(15u8, 16)? { 1 } else { 0 };
    let payload: Vec<u8> = if u.ratio(1u8, 16)? {
        // Signed bytes that need not be JSON (or an object) at all.
        u.bytes(u.len().min(200))?.to_vec()
    } else {
        let mut members = vec![
            ("exp", time_claim(u)?),
            ("nbf", time_claim(u)?),
            ("iat", time_claim(u)?),
            (
                "iss",
                string_claim(
                    u,
                    ISS,
                    &[
                        "\"https://issuer.fuzz\"",
                        "\"https://issuer.fuzz/ \"",
                        "\"HTTPS://issuer.fuzz/\"",
                        "\"https://issuer.fuzz/\\u0000\"",
                        "7",
                        "[\"https://issuer.fuzz/\"]",
                        "null",
                        "{\"iss\":\"https://issuer.fuzz/\"}",
                    ],
                )?,
            ),
            (
                "aud",
                string_claim(
                    u,
                    AUD,
                    &[
                        "[\"dashboard\"]",
                        "[\"dashboard\",\"x\"]",
                        "[\"x\",\"dashboard\"]",
                        "[7,\"dashboard\"]",
                        "[null,\"dashboard\"]",
                        "\"Dashboard\"",
                        "\"dashboard \"",
                        "\"dashboard x\"",
                        "\"x,dashboard\"",
                        "[\"x\"]",
                        "[]",
                        "[[\"dashboard\"]]",
                        "[{\"aud\":\"dashboard\"}]",
                        "null",
                        "7",
                        "{\"dashboard\":true}",
                        "[\"Dashboard\"]",
                    ],
                )?,
            ),
            (
                "sub",
                string_claim(
                    u,
                    SUB,
                    &[
                        "\"\"",
                        "\" \"",
                        "5",
                        "[\"user-1\"]",
                        "null",
                        "true",
                        "{\"sub\":\"user-1\"}",
                    ],
                )?,
            ),
        ];
        // Where the checked claims sit, and a claim nobody checks.
        let rotate = u.choose_index(members.len())?;
        members.rotate_left(rotate);
        if u.arbitrary()? {
            members.push((
                "scope",
                Some(Value::from(u.arbitrary::<String>()?).to_string()),
            ));
        }
        let body: Vec<String> = members
            .into_iter()
            .filter_map(|(name, value)| Some(format!("\"{name}\":{}", value?)))
            .collect();
        format!("{{{}}}", body.join(",")).into_bytes()
    };
    let key = &f.keys[which];
    let token = key.sign(&header(key.alg_name(), key.kid), &payload);
    let expected = model(&payload, token.len());
    match (verify(f, &token), expected) {
        (Ok(got), Ok((claims, sub))) => {
            assert_eq!(
                got.subject(),
                sub,
                "the subject of {}",
                String::from_utf8_lossy(&payload)
            );
            assert_eq!(
                got.all(),
                &claims,
                "the claims of {}",
                String::from_utf8_lossy(&payload)
            );
        }
        (Err(got), Err(expected)) => {
            assert_eq!(got, expected, "{}", String::from_utf8_lossy(&payload))
        }
        (got, expected) => panic!(
            "claims {}: got {:?}, the model says {:?}",
            String::from_utf8_lossy(&payload),
            got.map(|c| c.subject().to_owned()),
            expected.map(|(_, sub)| sub)
        ),
    }
    Ok(())
}

/// `token` verifies if and only if it is `original`; refusals are
/// `Invalid`.
fn only_original(f: &Fixture<State>, token: &str, original: Option<&String>) {
    match (verify(f, token), original) {
        (Ok(claims), Some(original)) if token == original => assert_eq!(claims.subject(), SUB),
        (Ok(_), _) => panic!("{token:?} verified"),
        (Err(refused), Some(original)) if token == original => {
            panic!("the valid token {token:?} was refused: {refused:?}")
        }
        (Err(refused), _) => assert_eq!(refused, Refused::Invalid, "{token:?}"),
    }
}

fn run(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let f = fixture();
    match u.int_in_range(0..=3u8)? {
        0 => {
            let text = String::from_utf8_lossy(u.bytes(u.len())?).into_owned();
            only_original(f, &text, f.tokens.iter().find(|t| **t == text));
        }
        1 | 2 => {
            let which = usize::from(u.arbitrary::<bool>()?);
            let changed = mutate(u, f, which)?;
            only_original(f, &changed, Some(&f.tokens[which]));
            // Afterwards, so a refusal that left the cache in a bad state
            // shows too.
            only_original(f, &f.tokens[which], Some(&f.tokens[which]));
        }
        _ => claims_case(u, f)?,
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
