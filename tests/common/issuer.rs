//! A JWT issuer on loopback for the `jwt` tests and benchmark: keys
//! generated per run (RS256, ES256, EdDSA), tokens signed with
//! jsonwebtoken, and a JWKS endpoint whose keys, `Cache-Control`, outage
//! and latency the test controls, counting every fetch.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A signing key and its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    /// An RSA-2048 key for RS256.
    pub fn rs256(kid: &str) -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand08::thread_rng(), 2048).unwrap();
        let der = key.to_pkcs1_der().unwrap();
        let jwk = json!({
            "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        });
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk,
        }
    }

    /// A P-256 key for ES256.
    pub fn es256(kid: &str) -> Self {
        use p256::pkcs8::EncodePrivateKey;
        let key = p256::ecdsa::SigningKey::random(&mut rand08::rngs::OsRng);
        let der = key.to_pkcs8_der().unwrap();
        let point = key.verifying_key().to_encoded_point(false);
        let jwk = json!({
            "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        });
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk,
        }
    }

    /// A P-384 key for ES384.
    pub fn es384(kid: &str) -> Self {
        use p384::pkcs8::EncodePrivateKey;
        let key = p384::ecdsa::SigningKey::random(&mut rand08::rngs::OsRng);
        let der = key.to_pkcs8_der().unwrap();
        let point = key.verifying_key().to_encoded_point(false);
        let jwk = json!({
            "kty": "EC", "kid": kid, "crv": "P-384",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        });
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::ES384,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk,
        }
    }

    /// The same key under another algorithm of its family and another
    /// `kid`, its JWK naming no `alg` (the key may serve any of them).
    pub fn variant(&self, alg: Algorithm, kid: &str) -> Self {
        let mut jwk = self.jwk.clone();
        jwk.as_object_mut().unwrap().remove("alg");
        jwk["kid"] = kid.into();
        SigningKey {
            kid: kid.into(),
            alg,
            encoding: self.encoding.clone(),
            jwk,
        }
    }

    /// An Ed25519 key for EdDSA.
    pub fn eddsa(kid: &str) -> Self {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let key = ed25519_dalek::SigningKey::generate(&mut rand08::rngs::OsRng);
        let der = key.to_pkcs8_der().unwrap();
        let jwk = json!({
            "kty": "OKP", "kid": kid, "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        });
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            jwk,
        }
    }

    /// A token with the key's `alg` and `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// A token with a header of the caller's (signed by this key with its
    /// own algorithm whatever the header says).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{input}.{sig}")
    }
}

/// A JWKS document of these keys.
pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

struct State {
    body: String,
    cache_control: String,
    down: bool,
    delay: Duration,
}

/// The issuer's JWKS endpoint on 127.0.0.1, at `/.well-known/jwks.json`.
#[derive(Clone)]
pub struct Issuer {
    pub url: String,
    state: Arc<Mutex<State>>,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    /// Starts serving `keys` with `Cache-Control: max-age=600`.
    pub async fn start(keys: &[&SigningKey]) -> Self {
        use axum::http::{header, StatusCode};
        use axum::response::IntoResponse;
        let state = Arc::new(Mutex::new(State {
            body: jwks(keys).to_string(),
            cache_control: "max-age=600".into(),
            down: false,
            delay: Duration::ZERO,
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (state.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let (s, f) = (s.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    let (body, cc, down, delay) = {
                        let s = s.lock().unwrap();
                        (s.body.clone(), s.cache_control.clone(), s.down, s.delay)
                    };
                    tokio::time::sleep(delay).await;
                    if down {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    (
                        [
                            (header::CACHE_CONTROL, cc),
                            (header::CONTENT_TYPE, "application/json".into()),
                        ],
                        body,
                    )
                        .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Issuer {
            url: format!("http://{addr}/.well-known/jwks.json"),
            state,
            fetches,
        }
    }

    /// Serves these keys from now on.
    pub fn set_keys(&self, keys: &[&SigningKey]) {
        self.state.lock().unwrap().body = jwks(keys).to_string();
    }

    /// Serves this body from now on.
    pub fn set_body(&self, body: &str) {
        self.state.lock().unwrap().body = body.into();
    }

    pub fn set_cache_control(&self, value: &str) {
        self.state.lock().unwrap().cache_control = value.into();
    }

    /// 503 for every fetch while down.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// Each fetch waits this long before answering.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Fetches served so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
