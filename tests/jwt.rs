//! `JwtAuthenticator` against a real issuer on loopback (tests/common/issuer.rs:
//! an HTTP JWKS endpoint with keys generated per run), through `AuthLayer`
//! where the status matters: every algorithm, the tenant header, algorithm
//! confusion and `none`, tampering, issuer and audience, time claims, the
//! Cognito preset, key rotation, an unknown-`kid` flood, coalesced fetches,
//! an issuer outage up to the stale bound, `Cache-Control` bounds.

mod common;
#[path = "common/issuer.rs"]
mod issuer;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{Request, Response, StatusCode};
use issuer::{Issuer, SigningKey};
use keyward::http::{
    AuthLayer, ExternalAuthError, ExternalAuthenticator, ExternalPrincipal, Principal,
};
use keyward::jwt::{
    CognitoToken, HttpFetcher, JwksFetchError, JwksFetcher, JwksPolicy, JwksResponse, JwtAlgorithm,
    JwtAuthenticator, JwtAuthenticatorBuilder, JwtClaims, JwtConfigError,
};
use keyward::{ManualClock, ScopeCatalog, TenantId};
use serde_json::{json, Value};
use tower::{ServiceBuilder, ServiceExt};

const ISS: &str = "https://issuer.test/";
const AUD: &str = "dashboard";

struct Keys {
    rs: SigningKey,
    es: SigningKey,
    ed: SigningKey,
}

/// One RSA key per test binary (generation is the slow part).
fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rs: SigningKey::rs256("rs-1"),
        es: SigningKey::es256("es-1"),
        ed: SigningKey::eddsa("ed-1"),
    })
}

fn catalog() -> Arc<ScopeCatalog> {
    Arc::new(common::player_os())
}

/// Properties from `custom:properties`, scopes from `scope`.
fn map(claims: &JwtClaims) -> Result<ExternalPrincipal, ExternalAuthError> {
    let catalog = catalog();
    let tenants = claims
        .strings("custom:properties")
        .filter_map(TenantId::parse);
    let scopes = catalog.grant_known(claims.scopes());
    Ok(ExternalPrincipal::new(
        claims.subject(),
        tenants,
        scopes,
        catalog,
    ))
}

fn builder(issuer: &Issuer, clock: &ManualClock) -> JwtAuthenticatorBuilder {
    JwtAuthenticator::builder(&issuer.url)
        .issuer(ISS)
        .audience([AUD])
        .algorithms([
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
            JwtAlgorithm::EdDSA,
        ])
        .clock(clock.clone())
        .principal(map)
}

fn now(clock: &ManualClock) -> i64 {
    use keyward::Clock;
    clock.now().unix_timestamp()
}

fn claims(clock: &ManualClock) -> Value {
    let now = now(clock);
    json!({
        "iss": ISS, "aud": AUD, "sub": "user-1",
        "iat": now, "exp": now + 300,
        "custom:properties": ["prop_1", "prop_2"],
        "scope": "openid read",
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(name);
    } else {
        claims[name] = value;
    }
    claims
}

struct Env {
    issuer: Issuer,
    clock: ManualClock,
    auth: JwtAuthenticator,
}

async fn env() -> Env {
    let k = keys();
    let issuer = Issuer::start(&[&k.rs, &k.es, &k.ed]).await;
    let (_, clock) = common::keyring();
    let auth = builder(&issuer, &clock).build().unwrap();
    Env {
        issuer,
        clock,
        auth,
    }
}

async fn send(auth: &JwtAuthenticator, token: &str, tenant: Option<&str>) -> Response<String> {
    let (keyring, _) = common::keyring();
    let mut req = Request::get("/").header("authorization", format!("Bearer {token}"));
    if let Some(t) = tenant {
        req = req.header("x-property-id", t);
    }
    ServiceBuilder::new()
        .layer(AuthLayer::new(keyring).external(auth.clone()))
        .service_fn(|req: Request<String>| async move {
            let p = req.extensions().get::<Principal>().unwrap();
            let sub = p.external_principal().unwrap().subject().to_owned();
            Ok::<_, std::convert::Infallible>(Response::new(format!("{sub}@{}", p.tenant())))
        })
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap()
}

fn code(res: &Response<String>) -> (StatusCode, String) {
    let body: Value = serde_json::from_str(res.body()).unwrap_or_default();
    (
        res.status(),
        body["error"].as_str().unwrap_or("").to_owned(),
    )
}

fn refused(status: u16, error: &str) -> (StatusCode, String) {
    (StatusCode::from_u16(status).unwrap(), error.to_owned())
}

async fn verdict(auth: &JwtAuthenticator, token: &str) -> (StatusCode, String) {
    code(&send(auth, token, Some("prop_1")).await)
}

fn ok() -> (StatusCode, String) {
    (StatusCode::OK, String::new())
}

#[tokio::test]
async fn each_algorithm_verifies_and_picks_the_tenant() {
    let e = env().await;
    let k = keys();
    for key in [&k.rs, &k.es, &k.ed] {
        let token = key.sign(&claims(&e.clock));
        let res = send(&e.auth, &token, Some("prop_2")).await;
        assert_eq!(res.status(), StatusCode::OK, "{:?}", key.alg);
        assert_eq!(res.body(), "user-1@prop_2");
    }
    // The three keys came from one fetch.
    assert_eq!(e.issuer.fetches(), 1);
    let c = e.auth.verify(&k.es.sign(&claims(&e.clock))).await.unwrap();
    assert_eq!(c.subject(), "user-1");
    assert_eq!(c.scopes().collect::<Vec<_>>(), ["openid", "read"]);
    assert!(
        !format!("{c:?}").contains("prop_1"),
        "claims stay out of Debug"
    );
}

#[tokio::test]
async fn the_tenant_header_selects_among_the_tenants() {
    let e = env().await;
    let k = keys();
    let several = k.es.sign(&claims(&e.clock));
    assert_eq!(
        code(&send(&e.auth, &several, None).await),
        refused(400, "tenant_required")
    );
    assert_eq!(
        code(&send(&e.auth, &several, Some("prop_9")).await),
        refused(403, "tenant_mismatch")
    );
    assert_eq!(
        send(&e.auth, &several, Some("prop_1")).await.body(),
        "user-1@prop_1"
    );
    let one = k.es.sign(&with(
        claims(&e.clock),
        "custom:properties",
        json!("prop_7"),
    ));
    assert_eq!(send(&e.auth, &one, None).await.body(), "user-1@prop_7");
    assert_eq!(
        code(&send(&e.auth, &one, Some("prop_1")).await),
        refused(403, "tenant_mismatch")
    );
    let none =
        k.es.sign(&with(claims(&e.clock), "custom:properties", Value::Null));
    assert_eq!(
        code(&send(&e.auth, &none, None).await),
        refused(403, "tenant_mismatch")
    );
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    use hmac::{Hmac, Mac};
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn none_hmac_and_algorithm_confusion_are_refused() {
    let e = env().await;
    let k = keys();
    let c = claims(&e.clock);
    let invalid = refused(401, "invalid_token");
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    // alg none, with and without a signature part.
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "kid": "rs-1"});
        assert_eq!(
            verdict(&e.auth, &format!("{}.{}.", b64(&header), b64(&c))).await,
            invalid
        );
        assert_eq!(
            verdict(&e.auth, &format!("{}.{}.c2ln", b64(&header), b64(&c))).await,
            invalid
        );
    }
    // HMAC keyed with the public key, in each form a confused verifier
    // might use.
    let rs_jwk = k.rs.jwk.to_string();
    let n = URL_SAFE_NO_PAD
        .decode(k.rs.jwk["n"].as_str().unwrap())
        .unwrap();
    for alg in ["HS256", "HS384", "HS512"] {
        for secret in [rs_jwk.as_bytes(), &n[..], k.es.jwk.to_string().as_bytes()] {
            let header = json!({"alg": alg, "kid": "rs-1", "typ": "JWT"});
            assert_eq!(
                verdict(&e.auth, &hs256(secret, &header, &c)).await,
                invalid,
                "{alg}"
            );
        }
    }
    // A key used under an algorithm of another family, or its own family's
    // other variant: the EC key under RS256 and ES384, the RSA key under PS256.
    let header = json!({"alg": "RS256", "kid": "es-1"});
    assert_eq!(verdict(&e.auth, &k.es.sign_raw(&header, &c)).await, invalid);
    let header = json!({"alg": "ES256", "kid": "ed-1"});
    assert_eq!(verdict(&e.auth, &k.es.sign_raw(&header, &c)).await, invalid);
    let strict = JwtAuthenticator::builder(&e.issuer.url)
        .issuer(ISS)
        .audience([AUD])
        .algorithms([
            JwtAlgorithm::RS256,
            JwtAlgorithm::PS256,
            JwtAlgorithm::ES384,
        ])
        .clock(e.clock.clone())
        .principal(map)
        .build()
        .unwrap();
    // The JWK says RS256: PS256 with it is refused even though PS256 is allowed.
    let header = json!({"alg": "PS256", "kid": "rs-1"});
    assert_eq!(verdict(&strict, &k.rs.sign_raw(&header, &c)).await, invalid);
    // ES256 and EdDSA are outside this authenticator's list.
    assert_eq!(verdict(&strict, &k.es.sign(&c)).await, invalid);
    assert_eq!(verdict(&strict, &k.ed.sign(&c)).await, invalid);
    assert_eq!(verdict(&strict, &k.rs.sign(&c)).await, ok());
    // A critical header extension nobody understands.
    let header = json!({"alg": "ES256", "kid": "es-1", "crit": ["b64"], "b64": false});
    assert_eq!(verdict(&e.auth, &k.es.sign_raw(&header, &c)).await, invalid);
}

#[tokio::test]
async fn tampered_tokens_are_refused() {
    let e = env().await;
    let k = keys();
    let invalid = refused(401, "invalid_token");
    for key in [&k.rs, &k.es, &k.ed] {
        let token = key.sign(&claims(&e.clock));
        assert_eq!(verdict(&e.auth, &token).await, ok());
        let parts: Vec<&str> = token.split('.').collect();
        // Another subject under the old signature.
        let forged =
            URL_SAFE_NO_PAD.encode(with(claims(&e.clock), "sub", json!("admin")).to_string());
        assert_eq!(
            verdict(&e.auth, &format!("{}.{forged}.{}", parts[0], parts[2])).await,
            invalid
        );
        // Every character of the signature changed in turn (a sample).
        for i in (0..parts[2].len()).step_by(7) {
            let mut sig = parts[2].as_bytes().to_vec();
            sig[i] = if sig[i] == b'A' { b'B' } else { b'A' };
            let sig = String::from_utf8(sig).unwrap();
            assert_eq!(
                verdict(&e.auth, &format!("{}.{}.{sig}", parts[0], parts[1])).await,
                invalid,
                "{i}"
            );
        }
        // Shapes: a part missing, an extra part, padding, a JWE-like five parts.
        for bad in [
            format!("{}.{}", parts[0], parts[1]),
            format!("{token}.x"),
            format!("{token}="),
            format!("{token}.a.b"),
            format!("{}..{}", parts[0], parts[2]),
        ] {
            assert_eq!(verdict(&e.auth, &bad).await, invalid, "{bad}");
        }
    }
    // A header naming another key than the one that signed.
    let header = json!({"alg": "RS256", "kid": "es-1"});
    assert_eq!(
        verdict(&e.auth, &k.rs.sign_raw(&header, &claims(&e.clock))).await,
        invalid
    );
    // Garbage bearer values.
    for junk in ["x", "a.b.c", "eyJ.eyJ.eyJ", "....", "😀.😀.😀"] {
        assert_eq!(
            e.auth.verify(junk).await.unwrap_err().to_string(),
            "invalid credential",
            "{junk}"
        );
    }
}

#[tokio::test]
async fn issuer_audience_and_subject_are_checked() {
    let e = env().await;
    let k = keys();
    let invalid = refused(401, "invalid_token");
    let c = claims(&e.clock);
    for bad in [
        with(c.clone(), "iss", json!("https://evil.test/")),
        with(c.clone(), "iss", json!("https://issuer.test")),
        with(c.clone(), "iss", Value::Null),
        with(c.clone(), "iss", json!([ISS])),
        with(c.clone(), "aud", json!("other")),
        with(c.clone(), "aud", json!(["other", "more"])),
        with(c.clone(), "aud", Value::Null),
        with(c.clone(), "aud", json!({"aud": AUD})),
        with(c.clone(), "sub", Value::Null),
        with(c.clone(), "sub", json!("")),
        with(c.clone(), "sub", json!(42)),
    ] {
        assert_eq!(verdict(&e.auth, &k.es.sign(&bad)).await, invalid, "{bad}");
    }
    let many = with(c.clone(), "aud", json!(["other", AUD]));
    assert_eq!(verdict(&e.auth, &k.es.sign(&many)).await, ok());
}

#[tokio::test]
async fn time_claims_are_checked_with_leeway() {
    let e = env().await;
    let k = keys();
    let now = now(&e.clock);
    let invalid = refused(401, "invalid_token");
    let expired = refused(401, "token_expired");
    let c = claims(&e.clock);
    let at = |name: &str, v: Value| k.es.sign(&with(c.clone(), name, v));
    // exp: past the 60 s leeway is expired; inside it, accepted.
    assert_eq!(verdict(&e.auth, &at("exp", json!(now - 61))).await, expired);
    assert_eq!(verdict(&e.auth, &at("exp", json!(now - 59))).await, ok());
    assert_eq!(
        verdict(&e.auth, &at("exp", json!((now - 59) as f64 + 0.5))).await,
        ok()
    );
    // exp missing or not a number is invalid, not expired.
    for bad in [
        Value::Null,
        json!("9999999999"),
        json!(true),
        json!([now + 60]),
    ] {
        assert_eq!(
            verdict(&e.auth, &at("exp", bad.clone())).await,
            invalid,
            "{bad}"
        );
    }
    // nbf and iat in the future past the leeway.
    assert_eq!(verdict(&e.auth, &at("nbf", json!(now + 61))).await, invalid);
    assert_eq!(verdict(&e.auth, &at("nbf", json!(now + 59))).await, ok());
    // The edges: a token is valid from nbf - leeway and until exp + leeway,
    // exclusive.
    assert_eq!(verdict(&e.auth, &at("nbf", json!(now + 60))).await, ok());
    assert_eq!(verdict(&e.auth, &at("iat", json!(now + 60))).await, ok());
    assert_eq!(verdict(&e.auth, &at("exp", json!(now - 60))).await, expired);
    assert_eq!(verdict(&e.auth, &at("nbf", json!("soon"))).await, invalid);
    assert_eq!(verdict(&e.auth, &at("iat", json!(now + 61))).await, invalid);
    assert_eq!(verdict(&e.auth, &at("iat", json!(now + 59))).await, ok());
    // An expired token with a bad signature is invalid, never "expired".
    let token = at("exp", json!(now - 3600));
    let mid = token.len() - 10;
    let flipped = if &token[mid..=mid] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &token[..mid], &token[mid + 1..]);
    assert_eq!(verdict(&e.auth, &forged).await, invalid);
    // An expired token for another issuer is invalid, not expired.
    let other = k.es.sign(&with(
        with(c.clone(), "exp", json!(now - 3600)),
        "iss",
        json!("x"),
    ));
    assert_eq!(verdict(&e.auth, &other).await, invalid);
    // The clock moves: a token valid now expires with it.
    let token = k.es.sign(&c);
    e.clock.advance(Duration::from_secs(300 + 61));
    assert_eq!(verdict(&e.auth, &token).await, expired);
    // A zero leeway.
    let strict = builder(&e.issuer, &e.clock)
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    let now = self::now(&e.clock);
    assert_eq!(
        verdict(&strict, &k.es.sign(&with(c.clone(), "exp", json!(now)))).await,
        expired
    );
    let fresh = with(with(c, "exp", json!(now + 1)), "nbf", json!(now + 1));
    assert_eq!(verdict(&strict, &k.es.sign(&fresh)).await, invalid);
}

/// Waits (up to 5 s) until the issuer has seen `n` fetches: refreshes
/// behind a known key run in the background.
async fn wait_for_fetches(issuer: &Issuer, n: usize) {
    for _ in 0..500 {
        if issuer.fetches() >= n {
            // Let the refresh record its outcome.
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(issuer.fetches(), n);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} fetches, expected {n}", issuer.fetches());
}

/// Serves the Cognito preset's requests from the loopback issuer.
struct Loopback(Issuer, HttpFetcher);

#[keyward::async_trait]
impl JwksFetcher for Loopback {
    async fn fetch(&self, url: &str) -> Result<JwksResponse, JwksFetchError> {
        assert_eq!(
            url,
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool1/.well-known/jwks.json"
        );
        self.1.fetch(&self.0.url).await
    }
}

#[tokio::test]
async fn the_cognito_preset_checks_token_use_and_the_client() {
    let e = env().await;
    let k = keys();
    let iss = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool1";
    let cognito = |token| {
        JwtAuthenticator::cognito(
            "eu-west-1",
            "eu-west-1_Pool1",
            ["client-a", "client-b"],
            token,
        )
        .unwrap()
        .fetcher(Loopback(e.issuer.clone(), HttpFetcher::new().unwrap()))
        .clock(e.clock.clone())
        .principal(map)
        .build()
        .unwrap()
    };
    let access = cognito(CognitoToken::Access);
    let id = cognito(CognitoToken::Id);
    let now = now(&e.clock);
    let base = json!({
        "iss": iss, "sub": "u-1", "exp": now + 300, "iat": now,
        "custom:properties": "prop_1",
    });
    let access_token = with(
        with(base.clone(), "token_use", json!("access")),
        "client_id",
        json!("client-b"),
    );
    let id_token = with(
        with(base.clone(), "token_use", json!("id")),
        "aud",
        json!("client-a"),
    );
    let invalid = refused(401, "invalid_token");
    assert_eq!(verdict(&access, &k.rs.sign(&access_token)).await, ok());
    assert_eq!(verdict(&id, &k.rs.sign(&id_token)).await, ok());
    // Each token type only where it belongs.
    assert_eq!(verdict(&access, &k.rs.sign(&id_token)).await, invalid);
    assert_eq!(verdict(&id, &k.rs.sign(&access_token)).await, invalid);
    for bad in [
        with(access_token.clone(), "client_id", json!("client-z")),
        with(access_token.clone(), "client_id", Value::Null),
        with(access_token.clone(), "token_use", json!("ACCESS")),
        with(
            access_token.clone(),
            "iss",
            json!("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"),
        ),
    ] {
        assert_eq!(verdict(&access, &k.rs.sign(&bad)).await, invalid, "{bad}");
    }
    // Cognito signs with RS256 only.
    assert_eq!(verdict(&access, &k.es.sign(&access_token)).await, invalid);
    for (region, pool) in [
        ("eu-west-1", "us-east-1_Pool1"),
        ("EU", "EU_x"),
        ("eu-west-1", "eu-west-1_"),
        ("eu/x", "eu/x_a"),
    ] {
        assert!(matches!(
            JwtAuthenticator::cognito(region, pool, ["c"], CognitoToken::Access),
            Err(JwtConfigError::InvalidUrl(_))
        ));
    }
    assert!(matches!(
        JwtAuthenticator::cognito(
            "eu-west-1",
            "eu-west-1_P",
            Vec::<String>::new(),
            CognitoToken::Id
        ),
        Err(JwtConfigError::MissingAudience)
    ));
}

#[tokio::test]
async fn a_rotated_key_is_fetched_and_the_removed_one_refused() {
    let e = env().await;
    let k = keys();
    let old = k.es.sign(&claims(&e.clock));
    assert_eq!(verdict(&e.auth, &old).await, ok());
    assert_eq!(e.issuer.fetches(), 1);
    // The issuer rotates: a new key appears, the EC key is removed.
    let new = SigningKey::es256("es-2");
    e.issuer.set_keys(&[&k.rs, &new]);
    // Within the refetch interval the new kid is not fetched for.
    let token = new.sign(&claims(&e.clock));
    assert_eq!(
        verdict(&e.auth, &token).await,
        refused(401, "invalid_token")
    );
    assert_eq!(e.issuer.fetches(), 1);
    e.clock.advance(Duration::from_secs(10));
    assert_eq!(verdict(&e.auth, &token).await, ok());
    assert_eq!(e.issuer.fetches(), 2);
    // The refetch replaced the set: the removed key no longer verifies.
    assert_eq!(verdict(&e.auth, &old).await, refused(401, "invalid_token"));
    assert_eq!(verdict(&e.auth, &k.rs.sign(&claims(&e.clock))).await, ok());
}

#[tokio::test]
async fn an_unknown_kid_flood_fetches_once_per_interval() {
    let e = env().await;
    let k = keys();
    assert_eq!(verdict(&e.auth, &k.es.sign(&claims(&e.clock))).await, ok());
    e.clock.advance(Duration::from_secs(10));
    let flood = |round: usize| {
        let auth = e.auth.clone();
        let c = claims(&e.clock);
        async move {
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let header = json!({"alg": "ES256", "kid": format!("unknown-{round}-{i}")});
                    let token = keys().es.sign_raw(&header, &c);
                    let auth = auth.clone();
                    tokio::spawn(async move { auth.verify(&token).await })
                })
                .collect();
            for t in tasks {
                assert!(matches!(t.await.unwrap(), Err(ExternalAuthError::Invalid)));
            }
        }
    };
    flood(0).await;
    assert_eq!(e.issuer.fetches(), 2, "one fetch for the whole flood");
    flood(1).await;
    assert_eq!(e.issuer.fetches(), 2, "none within the interval");
    e.clock.advance(Duration::from_secs(9));
    flood(2).await;
    assert_eq!(e.issuer.fetches(), 2);
    e.clock.advance(Duration::from_secs(1));
    flood(3).await;
    assert_eq!(e.issuer.fetches(), 3, "one more after the interval");
    // Known keys kept working throughout.
    assert_eq!(verdict(&e.auth, &k.ed.sign(&claims(&e.clock))).await, ok());
}

#[tokio::test]
async fn concurrent_callers_on_a_cold_cache_share_one_fetch() {
    let e = env().await;
    e.issuer.set_delay(Duration::from_millis(200));
    let token = keys().es.sign(&claims(&e.clock));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (auth, token) = (e.auth.clone(), token.clone());
            tokio::spawn(async move { auth.verify(&token).await.map(|c| c.subject().to_owned()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "user-1");
    }
    assert_eq!(e.issuer.fetches(), 1);
}

#[tokio::test]
async fn an_outage_serves_known_keys_up_to_the_bound_then_503() {
    let e = env().await;
    let k = keys();
    let policy = JwksPolicy::default()
        .serve_stale_for(Duration::from_secs(3600))
        .refetch_interval(Duration::from_secs(30));
    let auth = builder(&e.issuer, &e.clock)
        .jwks_policy(policy)
        .build()
        .unwrap();
    assert_eq!(auth.refresh().await.unwrap(), 3);
    e.issuer.set_down(true);
    // Past the 600 s max-age: known keys answer at once while a refresh is
    // tried behind them, and fails.
    e.clock.advance(Duration::from_secs(600));
    assert_eq!(verdict(&auth, &k.rs.sign(&claims(&e.clock))).await, ok());
    wait_for_fetches(&e.issuer, 2).await;
    // Failed refreshes are retried once per interval, not per request.
    for _ in 0..5 {
        assert_eq!(verdict(&auth, &k.es.sign(&claims(&e.clock))).await, ok());
    }
    assert_eq!(e.issuer.fetches(), 2);
    // An unknown kid while the issuer is down can not be decided: 503.
    let header = json!({"alg": "ES256", "kid": "new-key"});
    let unknown = k.es.sign_raw(&header, &claims(&e.clock));
    assert_eq!(
        verdict(&auth, &unknown).await,
        refused(503, "auth_unavailable")
    );
    // Just inside the bound: still served.
    e.clock.advance(Duration::from_secs(3599));
    assert_eq!(verdict(&auth, &k.ed.sign(&claims(&e.clock))).await, ok());
    // At the bound: fail closed.
    e.clock.advance(Duration::from_secs(1));
    assert_eq!(
        verdict(&auth, &k.ed.sign(&claims(&e.clock))).await,
        refused(503, "auth_unavailable")
    );
    assert!(matches!(
        auth.verify(&k.rs.sign(&claims(&e.clock))).await,
        Err(ExternalAuthError::Unavailable(_))
    ));
    // Garbage is still refused as garbage, without a fetch.
    let before = e.issuer.fetches();
    assert_eq!(
        verdict(&auth, "not-a-jwt").await,
        refused(401, "invalid_token")
    );
    assert_eq!(e.issuer.fetches(), before);
    // The issuer comes back: the next allowed fetch restores service.
    e.issuer.set_down(false);
    e.clock.advance(Duration::from_secs(30));
    assert_eq!(verdict(&auth, &k.ed.sign(&claims(&e.clock))).await, ok());
}

#[tokio::test]
async fn an_issuer_never_reached_is_503() {
    let e = env().await;
    e.issuer.set_down(true);
    let token = keys().es.sign(&claims(&e.clock));
    assert_eq!(
        verdict(&e.auth, &token).await,
        refused(503, "auth_unavailable")
    );
    assert!(e.auth.refresh().await.is_err());
    // Nothing listens here at all.
    let closed = JwtAuthenticator::builder("http://127.0.0.1:9/jwks.json")
        .issuer(ISS)
        .audience([AUD])
        .principal(map)
        .build()
        .unwrap();
    let token = keys().rs.sign(&claims(&e.clock));
    assert_eq!(
        verdict(&closed, &token).await,
        refused(503, "auth_unavailable")
    );
}

#[tokio::test]
async fn a_broken_key_set_keeps_the_known_keys() {
    let e = env().await;
    let k = keys();
    assert_eq!(e.auth.refresh().await.unwrap(), 3);
    for body in ["not json", r#"{"kees":[]}"#, "[]", r#"{"keys":{}}"#] {
        e.issuer.set_body(body);
        assert!(e.auth.refresh().await.is_err(), "{body}");
        assert_eq!(
            verdict(&e.auth, &k.rs.sign(&claims(&e.clock))).await,
            ok(),
            "{body}"
        );
    }
    // An oversized document is refused by the default fetcher.
    e.issuer
        .set_body(&" ".repeat(keyward::jwt::MAX_JWKS_LEN + 1));
    let err = e.auth.refresh().await.unwrap_err().to_string();
    assert!(err.contains("256 KiB"), "{err}");
    assert_eq!(err.matches("JWKS fetch failed").count(), 1, "{err}");
}

/// A well-formed key set is authoritative even when it holds no key
/// keyward uses: keys the issuer withdrew stop verifying at once.
#[tokio::test]
async fn a_withdrawn_key_stops_verifying_at_the_next_fetch() {
    let e = env().await;
    let k = keys();
    let token = k.es.sign(&claims(&e.clock));
    assert_eq!(verdict(&e.auth, &token).await, ok());
    for body in [
        r#"{"keys":[]}"#,
        r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#,
        r#"{"keys":[{"kty":"EC","kid":"p521","crv":"P-521","alg":"ES512","x":"AQ","y":"AQ"}]}"#,
    ] {
        e.issuer.set_keys(&[&k.es]);
        assert_eq!(e.auth.refresh().await.unwrap(), 1);
        assert_eq!(verdict(&e.auth, &token).await, ok());
        e.issuer.set_body(body);
        assert_eq!(e.auth.refresh().await.unwrap(), 0, "{body}");
        assert_eq!(
            verdict(&e.auth, &token).await,
            refused(401, "invalid_token"),
            "{body}"
        );
    }
}

/// A caller cancelled while it waits for a fetch (a timeout, a client gone)
/// does not cancel the fetch: it is recorded, and the refetch interval
/// holds.
#[tokio::test]
async fn cancelled_callers_do_not_multiply_fetches() {
    let e = env().await;
    e.issuer.set_delay(Duration::from_millis(400));
    let token = keys().es.sign(&claims(&e.clock));
    for _ in 0..6 {
        let _ = tokio::time::timeout(Duration::from_millis(100), e.auth.verify(&token)).await;
    }
    assert_eq!(e.issuer.fetches(), 1);
    // The fetch finished behind the cancelled callers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(verdict(&e.auth, &token).await, ok());
    assert_eq!(e.issuer.fetches(), 1);
}

/// With the default policy and `AuthLayer`'s default verification timeout,
/// an issuer that hangs once the set expired costs no request: known keys
/// answer at once and the issuer is asked once per interval.
#[tokio::test]
async fn a_hanging_issuer_is_served_from_the_stale_set() {
    let e = env().await;
    let k = keys();
    assert_eq!(e.auth.refresh().await.unwrap(), 3);
    e.clock.advance(Duration::from_secs(601));
    e.issuer.set_delay(Duration::from_secs(3600));
    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(verdict(&e.auth, &k.ed.sign(&claims(&e.clock))).await, ok());
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    wait_for_fetches(&e.issuer, 2).await;
    // The hung fetch times out (3 s by default) and counts as failed; the
    // next one waits for the interval.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    e.clock.advance(Duration::from_secs(5));
    assert_eq!(verdict(&e.auth, &k.ed.sign(&claims(&e.clock))).await, ok());
    assert_eq!(e.issuer.fetches(), 2);
}

/// Policies of `Duration::MAX` mean "never", without overflowing.
#[tokio::test]
async fn unbounded_policies_do_not_overflow() {
    let e = env().await;
    let k = keys();
    e.issuer.set_cache_control("max-age=99999999999999");
    let policy = JwksPolicy::default()
        .max_ttl(Duration::MAX)
        .refetch_interval(Duration::MAX)
        .serve_stale_for(Duration::MAX);
    let auth = builder(&e.issuer, &e.clock)
        .jwks_policy(policy)
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(verdict(&auth, &k.ed.sign(&claims(&e.clock))).await, ok());
        e.clock.advance(Duration::from_secs(10 * 365 * 24 * 3600));
    }
    assert_eq!(e.issuer.fetches(), 1);
}

#[tokio::test]
async fn cache_control_sets_the_refresh_within_bounds() {
    let e = env().await;
    let k = keys();
    let token = |e: &Env| k.es.sign(&claims(&e.clock));
    // max-age=1 is raised to the 5 minute minimum.
    e.issuer.set_cache_control("public, max-age=1");
    assert_eq!(verdict(&e.auth, &token(&e)).await, ok());
    e.clock.advance(Duration::from_secs(299));
    assert_eq!(verdict(&e.auth, &token(&e)).await, ok());
    assert_eq!(e.issuer.fetches(), 1);
    e.clock.advance(Duration::from_secs(1));
    assert_eq!(verdict(&e.auth, &token(&e)).await, ok());
    wait_for_fetches(&e.issuer, 2).await;
    // A year is lowered to the 24 hour maximum.
    e.issuer.set_cache_control("max-age=31536000");
    e.clock.advance(Duration::from_secs(300));
    assert_eq!(verdict(&e.auth, &token(&e)).await, ok());
    wait_for_fetches(&e.issuer, 3).await;
    e.clock.advance(Duration::from_secs(24 * 3600 - 1));
    assert_eq!(verdict(&e.auth, &token(&e)).await, ok());
    assert_eq!(e.issuer.fetches(), 3);
    e.clock.advance(Duration::from_secs(1));
    assert_eq!(verdict(&e.auth, &token(&e)).await, ok());
    wait_for_fetches(&e.issuer, 4).await;
}

#[tokio::test]
async fn the_builder_refuses_unsafe_configurations() {
    let e = env().await;
    let base = || JwtAuthenticator::builder(&e.issuer.url).principal(map);
    assert!(matches!(
        base().audience([AUD]).build(),
        Err(JwtConfigError::MissingIssuer)
    ));
    assert!(matches!(
        base().issuer(ISS).build(),
        Err(JwtConfigError::MissingAudience)
    ));
    assert!(base().issuer(ISS).any_audience().build().is_ok());
    assert!(matches!(
        JwtAuthenticator::builder(&e.issuer.url)
            .issuer(ISS)
            .audience([AUD])
            .build(),
        Err(JwtConfigError::MissingPrincipal)
    ));
    assert!(matches!(
        base().issuer(ISS).audience([AUD]).algorithms([]).build(),
        Err(JwtConfigError::NoAlgorithm)
    ));
    for url in [
        "http://issuer.example.com/jwks.json",
        "http://10.0.0.1/jwks.json",
        "ftp://localhost/jwks.json",
        "jwks.json",
        "https://",
    ] {
        let built = JwtAuthenticator::builder(url)
            .issuer(ISS)
            .audience([AUD])
            .principal(map)
            .build();
        assert!(matches!(built, Err(JwtConfigError::InvalidUrl(_))), "{url}");
    }
    for url in [
        "https://issuer.example.com/jwks.json",
        "http://localhost:8080/jwks",
        "http://[::1]/jwks",
    ] {
        let built = JwtAuthenticator::builder(url)
            .issuer(ISS)
            .audience([AUD])
            .principal(map)
            .build();
        assert!(built.is_ok(), "{url}");
    }
}

#[tokio::test]
async fn the_principal_mapping_decides_last() {
    let e = env().await;
    let k = keys();
    let auth = builder(&e.issuer, &e.clock)
        .principal(|claims| {
            if claims.groups().any(|g| g == "suspended") {
                return Err(ExternalAuthError::Invalid);
            }
            map(claims)
        })
        .build()
        .unwrap();
    let c = claims(&e.clock);
    let suspended = k.es.sign(&with(
        c.clone(),
        "cognito:groups",
        json!(["admins", "suspended"]),
    ));
    assert_eq!(
        verdict(&auth, &suspended).await,
        refused(401, "invalid_token")
    );
    // verify alone does not run the mapping.
    assert!(auth.verify(&suspended).await.is_ok());
    assert!(auth.authenticate(&suspended).await.is_err());
    assert_eq!(verdict(&auth, &k.es.sign(&c)).await, ok());
}

/// At TRACE, through accepted, forged, expired and unverifiable tokens,
/// the log names the subject and never a token, a part of one, or a claim
/// value.
#[tokio::test]
async fn logs_carry_the_subject_and_nothing_of_the_token() {
    let (capture, _guard) = common::capture();
    let e = env().await;
    let k = keys();
    let c = with(
        claims(&e.clock),
        "custom:properties",
        json!(["prop_secretive"]),
    );
    let good = k.es.sign(&c);
    let expired =
        k.es.sign(&with(c.clone(), "exp", json!(now(&e.clock) - 3600)));
    let forged = format!("{}.{}", &good[..good.rfind('.').unwrap()], "AAAA");
    assert_eq!(code(&send(&e.auth, &good, None).await), ok());
    assert_eq!(
        verdict(&e.auth, &expired).await,
        refused(401, "token_expired")
    );
    assert_eq!(
        verdict(&e.auth, &forged).await,
        refused(401, "invalid_token")
    );
    e.issuer.set_down(true);
    e.clock.advance(Duration::from_secs(7 * 3600));
    assert_eq!(
        verdict(&e.auth, &good).await,
        refused(503, "auth_unavailable")
    );
    let log = capture.text();
    assert!(log.contains("user-1"), "the subject is logged");
    assert!(log.contains("JWT refused"), "refusals are logged");
    assert!(
        log.lines()
            .any(|l| l.contains("key set unavailable")
                && l.contains(&format!("url={}", e.issuer.url))),
        "an outage names the JWKS URL"
    );
    for token in [&good, &expired, &forged] {
        for part in token.split('.') {
            assert!(
                !log.contains(&part[..part.len().min(24)]),
                "a token part leaked"
            );
        }
    }
    for value in ["prop_secretive", "openid", ISS, AUD] {
        assert!(!log.contains(value), "claim value {value} leaked");
    }
}

#[tokio::test]
async fn a_slow_issuer_counts_as_unreachable_at_the_fetch_timeout() {
    let e = env().await;
    e.issuer.set_delay(Duration::from_secs(5));
    let policy = JwksPolicy::default().fetch_timeout(Duration::from_millis(200));
    let auth = builder(&e.issuer, &e.clock)
        .jwks_policy(policy)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let token = keys().es.sign(&claims(&e.clock));
    assert_eq!(
        verdict(&auth, &token).await,
        refused(503, "auth_unavailable")
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout cut the fetch"
    );
    assert!(auth
        .refresh()
        .await
        .unwrap_err()
        .to_string()
        .contains("timed out"));
}

#[tokio::test]
async fn a_token_without_kid_needs_a_single_key_set() {
    let e = env().await;
    let k = keys();
    let header = json!({"alg": "ES256"});
    let token = k.es.sign_raw(&header, &claims(&e.clock));
    // Three keys: which one is meant is ambiguous.
    assert_eq!(
        verdict(&e.auth, &token).await,
        refused(401, "invalid_token")
    );
    // One key: it is the one.
    let single = Issuer::start(&[&k.es]).await;
    let auth = builder(&single, &e.clock).build().unwrap();
    assert_eq!(verdict(&auth, &token).await, ok());
    // Still checked against its type: the EdDSA key is not the ES256 one.
    let ed_only = Issuer::start(&[&k.ed]).await;
    let auth = builder(&ed_only, &e.clock).build().unwrap();
    assert_eq!(verdict(&auth, &token).await, refused(401, "invalid_token"));
}

/// A JWKS endpoint answering `body` with chunked transfer encoding (no
/// `Content-Length`, so only the running count can stop an oversized one).
async fn chunked_issuer(body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
                for chunk in body.as_bytes().chunks(8192) {
                    out.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend(chunk);
                    out.extend(b"\r\n");
                }
                out.extend(b"0\r\n\r\n");
                let _ = socket.write_all(&out).await;
            });
        }
    });
    format!("http://{addr}/.well-known/jwks.json")
}

/// The default fetcher reads key sets up to 256 KiB inclusive, with or
/// without `Content-Length`, and refuses one byte more.
#[tokio::test]
async fn the_default_fetcher_reads_up_to_the_size_limit() {
    let k = keys();
    let doc = issuer::jwks(&[&k.es]).to_string();
    let max = keyward::jwt::MAX_JWKS_LEN;
    let at_limit = format!("{doc}{}", " ".repeat(max - doc.len()));
    let over = format!("{at_limit} ");
    let fetcher = HttpFetcher::new().unwrap();
    // With Content-Length.
    let e = env().await;
    e.issuer.set_body(&at_limit);
    assert_eq!(
        fetcher.fetch(&e.issuer.url).await.unwrap().body().len(),
        max
    );
    assert_eq!(e.auth.refresh().await.unwrap(), 1);
    e.issuer.set_body(&over);
    assert!(fetcher
        .fetch(&e.issuer.url)
        .await
        .unwrap_err()
        .to_string()
        .contains("256 KiB"));
    // Chunked.
    let url = chunked_issuer(at_limit).await;
    assert_eq!(fetcher.fetch(&url).await.unwrap().body().len(), max);
    let url = chunked_issuer(over).await;
    assert!(fetcher
        .fetch(&url)
        .await
        .unwrap_err()
        .to_string()
        .contains("256 KiB"));
    // Chunks that add up to the limit only after the first.
    let url = chunked_issuer(doc.clone()).await;
    let chunked = fetcher.fetch(&url).await.unwrap();
    assert_eq!(chunked.body(), doc.as_bytes());
    assert_eq!(chunked.get_cache_control(), None);
}

/// Every algorithm of `JwtAlgorithm` verifies end to end when allowed, and
/// only when allowed.
#[tokio::test]
async fn every_listed_algorithm_verifies_when_allowed() {
    use jsonwebtoken::Algorithm as A;
    let k = keys();
    let (_, clock) = common::keyring();
    let es384 = SigningKey::es384("es384");
    let variants: Vec<(SigningKey, JwtAlgorithm)> = vec![
        (k.rs.variant(A::RS384, "rs384"), JwtAlgorithm::RS384),
        (k.rs.variant(A::RS512, "rs512"), JwtAlgorithm::RS512),
        (k.rs.variant(A::PS256, "ps256"), JwtAlgorithm::PS256),
        (k.rs.variant(A::PS384, "ps384"), JwtAlgorithm::PS384),
        (k.rs.variant(A::PS512, "ps512"), JwtAlgorithm::PS512),
        (es384.clone(), JwtAlgorithm::ES384),
        (k.rs.clone(), JwtAlgorithm::RS256),
        (k.es.clone(), JwtAlgorithm::ES256),
        (k.ed.clone(), JwtAlgorithm::EdDSA),
    ];
    let all: Vec<&SigningKey> = variants.iter().map(|(key, _)| key).collect();
    let issuer = Issuer::start(&all).await;
    let every = builder(&issuer, &clock)
        .algorithms(variants.iter().map(|(_, alg)| *alg))
        .build()
        .unwrap();
    for (key, alg) in &variants {
        let token = key.sign(&claims(&clock));
        assert_eq!(verdict(&every, &token).await, ok(), "{alg}");
        // Allowed alone, it verifies; left out, it does not.
        let only = builder(&issuer, &clock).algorithms([*alg]).build().unwrap();
        assert_eq!(verdict(&only, &token).await, ok(), "{alg} alone");
        let others = variants.iter().map(|(_, a)| *a).filter(|a| a != alg);
        let without = builder(&issuer, &clock).algorithms(others).build().unwrap();
        assert_eq!(
            verdict(&without, &token).await,
            refused(401, "invalid_token"),
            "without {alg}"
        );
        assert_eq!(JwtAlgorithm::from_name(alg.name()), Some(*alg));
        assert_eq!(alg.to_string(), alg.name());
        assert_eq!(format!("{:?}", key.alg), alg.name());
    }
}

/// While one caller refreshes an expired key set from a slow issuer, the
/// others keep verifying with the known keys instead of waiting; a new
/// `kid` still waits for the fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_refresh_delays_one_caller_not_all() {
    let e = env().await;
    let k = keys();
    assert_eq!(e.auth.refresh().await.unwrap(), 3);
    e.clock.advance(Duration::from_secs(600));
    e.issuer.set_delay(Duration::from_millis(1500));
    let token = k.es.sign(&claims(&e.clock));
    let refresher = {
        let (auth, token) = (e.auth.clone(), token.clone());
        tokio::spawn(async move { auth.verify(&token).await.map(|_| ()) })
    };
    // Let the refresher take the fetch.
    while e.issuer.fetches() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    for _ in 0..20 {
        e.auth.verify(&token).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    refresher.await.unwrap().unwrap();
    assert_eq!(e.issuer.fetches(), 2);
}
