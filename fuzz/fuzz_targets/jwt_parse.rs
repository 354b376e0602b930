//! `JwtAuthenticator::verify` (the JWS parsing keyward does itself, the key
//! lookup, the signature and the claim checks) on hostile input, against
//! what `keyward::jwt` promises. Keys are fixed (an ES256 and an Ed25519
//! key from constant seeds) and served by an in-process `JwksFetcher`; the
//! clock is a `ManualClock` at a fixed instant; the leeway is 60 s.
//!
//! The input's first byte picks a mode:
//!
//! * **text**: the rest as a bearer value. It must never panic and never
//!   verify unless it is byte for byte one of the tokens the target signed.
//! * **mutation**: one of the valid tokens, changed once as the input says
//!   (a byte replaced, inserted or removed; a part taken from the other
//!   token; the header replaced by `alg: none`, an HMAC header signed with
//!   the public key's bytes, the other algorithm, or a `crit` member; the
//!   payload re-encoded with another subject under the old signature). The
//!   result verifies if and only if it equals the original (base64url is
//!   canonical here, so no other spelling of a token exists), and the
//!   untouched original always verifies.
//! * **claims**: a payload built from the input (`exp`, `nbf`, `iat` as
//!   integers or floats around the clock, strings, booleans or absent;
//!   `iss`, `aud` and `sub` right, wrong, of the wrong JSON type or absent),
//!   signed with the real key. The answer must be the model's: accepted
//!   only when `exp` is a number and not past (`now - leeway < exp`), `nbf`
//!   and `iat` are absent or numbers not beyond `now + leeway`, `iss` is
//!   exactly the issuer, `aud` is the audience or an array holding it, and
//!   `sub` a non-empty string; `Expired` exactly when everything but `exp`
//!   holds; `Invalid` otherwise.
#![no_main]

mod common;

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::Fixture;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keyward::http::{ExternalAuthError, ExternalPrincipal};
use keyward::jwt::{JwksFetchError, JwksFetcher, JwksResponse, JwtAlgorithm, JwtAuthenticator};
use keyward::ManualClock;
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use time::OffsetDateTime;

const ISS: &str = "https://issuer.fuzz/";
const AUD: &str = "dashboard";
const NOW: i64 = 1_800_000_000;
const LEEWAY: f64 = 60.0;

struct Fixed(Vec<u8>);

#[keyward::async_trait]
impl JwksFetcher for Fixed {
    async fn fetch(&self, _url: &str) -> Result<JwksResponse, JwksFetchError> {
        Ok(JwksResponse::new(self.0.clone()).cache_control("max-age=86400"))
    }
}

struct Key {
    alg: Algorithm,
    kid: &'static str,
    encoding: EncodingKey,
    /// The public key's bytes (what a confused verifier might use as an
    /// HMAC secret).
    public: Vec<u8>,
    jwk: Value,
}

impl Key {
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(&header.to_string()), b64(&claims.to_string()));
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{input}.{sig}")
    }
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

struct State {
    auth: JwtAuthenticator,
    keys: [Key; 2],
    tokens: [String; 2],
}

fn valid_claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "user-1", "iat": NOW, "exp": NOW + 300})
}

fn fixture() -> &'static Fixture<State> {
    static FIXTURE: OnceLock<Fixture<State>> = OnceLock::new();
    common::fixture(&FIXTURE, |runtime| {
        // One trait (the pkcs8 crate's) for both keys.
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let es = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let point = es.verifying_key().to_encoded_point(false);
        let es = Key {
            alg: Algorithm::ES256,
            kid: "es",
            encoding: EncodingKey::from_ec_der(es.to_pkcs8_der().unwrap().as_bytes()),
            public: point.as_bytes().to_vec(),
            jwk: json!({
                "kty": "EC", "kid": "es", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
            }),
        };
        let ed = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let public = ed.verifying_key().as_bytes().to_vec();
        let ed = Key {
            alg: Algorithm::EdDSA,
            kid: "ed",
            encoding: EncodingKey::from_ed_der(ed.to_pkcs8_der().unwrap().as_bytes()),
            jwk: json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&public)}),
            public,
        };
        let jwks = json!({"keys": [es.jwk, ed.jwk]}).to_string().into_bytes();
        let auth = JwtAuthenticator::builder("https://issuer.fuzz/jwks.json")
            .issuer(ISS)
            .audience([AUD])
            .algorithms([JwtAlgorithm::ES256, JwtAlgorithm::EdDSA])
            .fetcher(Fixed(jwks))
            .clock(ManualClock::new(OffsetDateTime::from_unix_timestamp(NOW).unwrap()))
            .principal(|claims| {
                let catalog = std::sync::Arc::new(keyward::ScopeCatalog::builder().build().unwrap());
                Ok(ExternalPrincipal::new(claims.subject(), [], keyward::ScopeSet::default(), catalog))
            })
            .build()
            .unwrap();
        runtime.block_on(auth.refresh()).unwrap();
        let tokens = [es.sign(&valid_claims()), ed.sign(&valid_claims())];
        State {
            auth,
            keys: [es, ed],
            tokens,
        }
    })
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Accepted,
    Expired,
    Invalid,
}

fn verify(f: &Fixture<State>, token: &str) -> Outcome {
    match f.runtime.block_on(f.auth.verify(token)) {
        Ok(_) => Outcome::Accepted,
        Err(ExternalAuthError::Expired) => Outcome::Expired,
        Err(ExternalAuthError::Invalid) => Outcome::Invalid,
        Err(other) => panic!("a fixed key set never makes verification unavailable: {other}"),
    }
}

fn mutate(u: &mut Unstructured<'_>, f: &State, which: usize) -> ArbResult<String> {
    let original = &f.tokens[which];
    let other = &f.tokens[1 - which];
    let parts: Vec<&str> = original.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let key = &f.keys[which];
    Ok(match u.int_in_range(0..=8u8)? {
        0 => {
            let mut bytes = original.as_bytes().to_vec();
            let i = u.choose_index(bytes.len())?;
            bytes[i] = u.arbitrary()?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        1 => {
            let mut bytes = original.as_bytes().to_vec();
            let i = u.int_in_range(0..=bytes.len())?;
            bytes.insert(i, u.arbitrary()?);
            String::from_utf8_lossy(&bytes).into_owned()
        }
        2 => {
            let mut s = original.clone();
            let i = u.choose_index(s.len())?;
            s.remove(i);
            s
        }
        3 => {
            let mut mixed = parts.clone();
            let i = u.choose_index(3)?;
            mixed[i] = other_parts[i];
            mixed.join(".")
        }
        4 => {
            let alg = *u.choose(&["none", "None", "NONE", "nOnE"])?;
            let header = b64(&json!({"alg": alg, "kid": key.kid}).to_string());
            let sig = if u.arbitrary()? { "" } else { parts[2] };
            format!("{header}.{}.{sig}", parts[1])
        }
        5 => {
            let alg = *u.choose(&["HS256", "HS384", "HS512"])?;
            let header = b64(&json!({"alg": alg, "kid": key.kid, "typ": "JWT"}).to_string());
            let input = format!("{header}.{}", parts[1]);
            let secret = if u.arbitrary()? { key.public.clone() } else { key.jwk.to_string().into_bytes() };
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
            mac.update(input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
        }
        6 => {
            // This key's signature under the other key's algorithm or kid.
            let other_key = &f.keys[1 - which];
            let header = if u.arbitrary()? {
                json!({"alg": format!("{:?}", other_key.alg), "kid": key.kid})
            } else {
                json!({"alg": format!("{:?}", key.alg), "kid": other_key.kid})
            };
            key.sign_raw(&header, &valid_claims())
        }
        7 => {
            let header = json!({"alg": format!("{:?}", key.alg), "kid": key.kid, "crit": ["exp"]});
            key.sign_raw(&header, &valid_claims())
        }
        _ => {
            let sub: String = u.arbitrary()?;
            let mut claims = valid_claims();
            claims["sub"] = sub.into();
            format!("{}.{}.{}", parts[0], b64(&claims.to_string()), parts[2])
        }
    })
}

/// A time claim: absent, a number near the clock, or of another type.
fn time_claim(u: &mut Unstructured<'_>) -> ArbResult<Option<Value>> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => None,
        // The edges of the leeway, where an off-by-one would show.
        1 => Some(json!(NOW + *u.choose(&[-61i64, -60, -59, -1, 0, 1, 59, 60, 61])?)),
        2 => Some(json!(NOW + i64::from(u.int_in_range(-200i16..=200)?))),
        3 => Some(json!(NOW as f64 + f64::from(u.int_in_range(-2000i16..=2000)?) / 10.0)),
        4 => Some(json!(u.arbitrary::<i64>()?)),
        5 => Some(json!(u.arbitrary::<String>()?)),
        6 => Some(u.choose(&[json!(true), json!(null), json!([NOW]), json!({"t": NOW})])?.clone()),
        _ => Some(json!(NOW + 300)),
    })
}

/// The first (right) value half the time, else another or none.
fn pick(u: &mut Unstructured<'_>, values: &[Value]) -> ArbResult<Option<Value>> {
    if u.arbitrary()? {
        return Ok(values.first().cloned());
    }
    let i = u.int_in_range(0..=values.len())?;
    Ok(values.get(i).cloned())
}

fn claims_case(u: &mut Unstructured<'_>, f: &Fixture<State>) -> ArbResult<()> {
    let mut claims = serde_json::Map::new();
    let fields = [
        ("exp", time_claim(u)?),
        ("nbf", time_claim(u)?),
        ("iat", time_claim(u)?),
        ("iss", pick(u, &[json!(ISS), json!("https://issuer.fuzz"), json!(7), json!([ISS])])?),
        (
            "aud",
            pick(u, &[json!(AUD), json!([AUD, "x"]), json!(["x", AUD]), json!(["x"]), json!("Dashboard"), json!(null), json!([7])])?,
        ),
        ("sub", pick(u, &[json!("user-1"), json!(""), json!(5), json!(["user-1"])])?),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            claims.insert(name.to_owned(), value);
        }
    }
    let claims = Value::Object(claims);
    let key = &f.keys[usize::from(u.arbitrary::<bool>()?)];
    let token = key.sign(&claims);

    let now = NOW as f64;
    let num = |name: &str| -> Result<Option<f64>, ()> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_f64().filter(|t| t.is_finite()).map(Some).ok_or(()),
        }
    };
    let others_hold = (|| -> Result<bool, ()> {
        num("exp")?.ok_or(())?;
        if num("nbf")?.is_some_and(|nbf| now + LEEWAY < nbf) {
            return Ok(false);
        }
        if num("iat")?.is_some_and(|iat| now + LEEWAY < iat) {
            return Ok(false);
        }
        let iss = claims.get("iss") == Some(&json!(ISS));
        let aud = match claims.get("aud") {
            Some(Value::String(a)) => a == AUD,
            Some(Value::Array(a)) => a.iter().any(|v| v == AUD),
            _ => false,
        };
        let sub = matches!(claims.get("sub"), Some(Value::String(s)) if !s.is_empty());
        Ok(iss && aud && sub)
    })()
    .unwrap_or(false);
    let expected = if !others_hold {
        Outcome::Invalid
    } else if now - LEEWAY >= num("exp").unwrap().unwrap() {
        Outcome::Expired
    } else {
        Outcome::Accepted
    };
    assert_eq!(verify(f, &token), expected, "claims {claims}");
    Ok(())
}

fn run(u: &mut Unstructured<'_>) -> ArbResult<()> {
    let f = fixture();
    match u.int_in_range(0..=2u8)? {
        0 => {
            let text = String::from_utf8_lossy(u.bytes(u.len())?).into_owned();
            let outcome = verify(f, &text);
            if f.tokens.contains(&text) {
                assert_eq!(outcome, Outcome::Accepted);
            } else {
                assert_ne!(outcome, Outcome::Accepted, "{text:?} verified");
            }
        }
        1 => {
            let which = usize::from(u.arbitrary::<bool>()?);
            assert_eq!(verify(f, &f.tokens[which]), Outcome::Accepted, "the original verifies");
            let changed = mutate(u, f, which)?;
            let outcome = verify(f, &changed);
            if changed == f.tokens[which] {
                assert_eq!(outcome, Outcome::Accepted);
            } else {
                assert_ne!(outcome, Outcome::Accepted, "{changed:?} verified");
            }
        }
        _ => claims_case(u, f)?,
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
