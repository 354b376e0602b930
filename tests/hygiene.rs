//! Secret hygiene: through a whole issue / verify / revoke / rotate cycle,
//! neither a token nor a stored hash appears in tracing output (at TRACE),
//! error messages, `Debug` output of public types, or the list API. On
//! PostgreSQL, dependencies' `log` records (tokio-postgres logs statement
//! parameters at DEBUG) are bridged into the captured output too.

mod common;

use common::capture;
use keyward::{
    HashScheme, KeyKind, KeyStore, Keyring, MemoryStore, NewKey, Pepper, TokenHasher, TokenKey,
};

/// Every rendering of secret material we look for: the token, its random
/// part, and the hash digest in hex (both cases), as a Debug byte list (a
/// run of its bytes, without brackets: the stored form puts the version's
/// two bytes first) and in PostgreSQL's `bytea` text form (`\x`, version,
/// digest).
fn forbidden(token: &str, digest: &[u8; 32]) -> Vec<String> {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let list: Vec<String> = digest[..8].iter().map(u8::to_string).collect();
    vec![
        token.to_owned(),
        // The random part: the 30 characters after `<prefix>_`.
        token[token.find('_').unwrap() + 1..][..30].to_owned(),
        hex[..16].to_owned(),
        hex[..16].to_uppercase(),
        list.join(", "),
    ]
}

/// The renderings of every hash `hasher` would look `token` up by.
fn forbidden_hashes(hasher: &TokenHasher, token: &str) -> Vec<String> {
    let mut needles = Vec::new();
    for hash in hasher.candidates(token) {
        needles.extend(forbidden(token, hash.digest()));
        let bytea: String = hash.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        needles.push(format!("\\x{}", &bytea[..20]));
    }
    needles
}

fn pepper() -> Pepper {
    Pepper::new(2, b"a pepper of at least sixteen bytes".to_vec()).unwrap()
}

/// The token key's material, looked for in every output.
const TOKEN_KEY: &[u8] = b"a token key of 32 bytes or so!!!";

/// The `pl` kind, its tokens tagged with [`TOKEN_KEY`].
fn tagged_pl() -> KeyKind {
    KeyKind::new("pl", common::playable_labs())
        .unwrap()
        .token_key(TokenKey::new(3, TOKEN_KEY.to_vec()).unwrap())
}

/// Renderings of the token key's material: as text, in hex, as a byte list.
fn forbidden_token_key() -> Vec<String> {
    let hex: String = TOKEN_KEY.iter().map(|b| format!("{b:02x}")).collect();
    let list: Vec<String> = TOKEN_KEY[..8].iter().map(u8::to_string).collect();
    vec![
        String::from_utf8(TOKEN_KEY.to_vec()).unwrap(),
        hex[..16].to_owned(),
        list.join(", "),
    ]
}

/// A PlayableLabs keyring on a memory store, hashing with a pepper.
fn hygienic_keyring() -> (Keyring, MemoryStore, TokenHasher) {
    let store = MemoryStore::new();
    let (keyring, hasher) = hygienic_keyring_on(store.clone());
    (keyring, store, hasher)
}

/// The `pl` kind with a token key on `store`, hashing with a pepper (and
/// SHA-256 as the previous scheme): every secret the hygiene tests look for.
fn hygienic_keyring_on(store: impl KeyStore) -> (Keyring, TokenHasher) {
    let hasher = TokenHasher::hmac(pepper())
        .with_previous(HashScheme::Sha256)
        .unwrap();
    let keyring = Keyring::builder()
        .store(store)
        .kind(tagged_pl())
        .hasher(hasher.clone())
        .build()
        .unwrap();
    (keyring, hasher)
}

/// The stored digest of a token.
async fn digest(store: &MemoryStore, hasher: &TokenHasher, token: &str) -> [u8; 32] {
    let record = store.find_by_hash(&hasher.hash(token)).await.unwrap();
    *record.unwrap().hash.digest()
}

/// Fails on any needle found in any text.
fn assert_no_leak(texts: &[String], needles: &[String]) {
    for text in texts {
        for needle in needles {
            assert!(
                !text.contains(needle.as_str()),
                "leak of {needle:?} in {text}"
            );
        }
    }
}

#[tokio::test]
async fn no_token_or_hash_leaks_anywhere() {
    let (capture, _guard) = capture();
    let (keyring, store, hasher) = hygienic_keyring();

    let mut seen: Vec<String> = Vec::new();
    let issued = keyring
        .issue(NewKey::new("pl", "org", "cycle").scopes(["assets:write"]))
        .await
        .unwrap();
    let token = issued.token.expose_secret().to_owned();
    seen.push(format!(
        "{issued:?} {} {}",
        issued.token,
        issued.info.display_prefix()
    ));
    let key = keyring.verify(&token).await.unwrap();
    seen.push(format!("{key:?}"));
    let record = store
        .find_by_hash(&hasher.hash(&token))
        .await
        .unwrap()
        .unwrap();
    seen.push(format!("{record:?}"));
    seen.push(format!("{:?} {:?} {:?}", record.hash, hasher, pepper()));
    seen.push(format!("{keyring:?}"));
    seen.push(format!("{:?}", keyring.format().parse(&token).unwrap()));
    seen.push(format!("{:?} {:?}", tagged_pl(), keyring.format()));
    seen.push(serde_json::to_string(&keyring.list(&key.tenant().clone()).await.unwrap()).unwrap());
    seen.push(format!("{:?}", keyring.get(key.id()).await.unwrap()));

    // Failures: a near-miss of the real token, an unknown one, a revoked one.
    let mut typo = token.clone().into_bytes();
    typo[5] = if typo[5] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    let err = keyring.verify(&typo).await.unwrap_err();
    seen.push(format!("{err} {err:?}"));
    let rotated = keyring
        .rotate(key.id(), std::time::Duration::ZERO)
        .await
        .unwrap();
    let err = keyring.verify(&token).await.unwrap_err();
    seen.push(format!("{err} {err:?}"));
    keyring.revoke(rotated.info.id()).await.unwrap();
    let err = keyring
        .verify(rotated.token.expose_secret())
        .await
        .unwrap_err();
    seen.push(format!("{err} {err:?} {rotated:?}"));
    keyring.flush_last_used().await.unwrap();

    let logs = capture.text();
    assert!(logs.contains("key issued"), "the capture works: {logs}");
    assert!(logs.contains("key revoked"));
    seen.push(logs);

    let mut needles = forbidden(&token, record.hash.digest());
    let rotated_record = store
        .find_by_hash(&hasher.hash(rotated.token.expose_secret()))
        .await
        .unwrap()
        .unwrap();
    needles.extend(forbidden(
        rotated.token.expose_secret(),
        rotated_record.hash.digest(),
    ));
    needles.push(typo);
    needles.extend(forbidden_token_key());
    assert_no_leak(&seen, &needles);
}

/// The HTTP path: `AuthLayer` + `RequireScopesLayer` answering 200 (valid),
/// 401 (revoked, near-miss), 403 (an enforced scope missing) and 200 with a
/// "would deny" audit event (a soon scope missing). Neither token nor hash
/// appears in tracing output at TRACE, in response headers or bodies, or in
/// the `Debug` of `Principal`, `WouldDeny` and `Rejection`.
#[cfg(feature = "http")]
#[tokio::test]
async fn no_token_or_hash_leaks_through_the_http_layers() {
    use http::{Request, Response, StatusCode};
    use keyward::http::{AuthLayer, Principal, Rejection, RequireScopesLayer, WouldDeny};
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    let (capture, _guard) = capture();
    let (keyring, store, hasher) = hygienic_keyring();
    let issue = |name: &str, scope: &str| {
        let new = NewKey::new("pl", "org", name).scopes([scope]);
        let keyring = keyring.clone();
        async move { keyring.issue(new).await.unwrap() }
    };
    let uploader = issue("uploader", "assets:write").await;
    let revoked = issue("revoked", "assets:write").await;
    keyring.revoke(revoked.info.id()).await.unwrap();
    let valid = uploader.token.expose_secret().to_owned();
    let revoked = revoked.token.expose_secret().to_owned();
    let mut near_miss = valid.clone().into_bytes();
    near_miss[5] = if near_miss[5] == b'x' { b'y' } else { b'x' };
    let near_miss = String::from_utf8(near_miss).unwrap();

    // The handler answers with the Debug of what the layers gave it.
    let handler = service_fn(|req: Request<String>| async move {
        let principal = req.extensions().get::<Principal>();
        let would_deny = req.extensions().get::<WouldDeny>();
        let body = format!("{principal:?} {would_deny:?}");
        Ok::<_, std::convert::Infallible>(Response::new(body))
    });
    let call = |token: &str, scope: &str| {
        let service = ServiceBuilder::new()
            .layer(AuthLayer::new(keyring.clone()))
            .layer(RequireScopesLayer::all([scope]).unwrap())
            .service(handler);
        let req = Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(String::new())
            .unwrap();
        async move { service.oneshot(req).await.unwrap() }
    };

    let mut seen = Vec::new();
    for (token, scope, status) in [
        (&valid, "assets:write", StatusCode::OK),
        (&revoked, "assets:write", StatusCode::UNAUTHORIZED),
        (&near_miss, "assets:write", StatusCode::UNAUTHORIZED),
        (&valid, "versions:write", StatusCode::FORBIDDEN),
        (&valid, "games:read", StatusCode::OK),
    ] {
        let res = call(token, scope).await;
        assert_eq!(res.status(), status, "{scope}");
        seen.push(format!("{:?} {}", res.headers(), res.body()));
    }
    assert!(
        seen[0].contains("Principal"),
        "the handler saw: {}",
        seen[0]
    );
    assert!(seen[4].contains("games:read"), "would deny: {}", seen[4]);
    for token in [&valid, &revoked, &near_miss] {
        if let Err(err) = keyring.verify(token).await {
            seen.push(format!("{:?}", Rejection::from(&err)));
        }
    }

    let logs = capture.text();
    assert!(
        logs.contains("soon scope would deny"),
        "the audit event is captured: {logs}"
    );
    seen.push(logs);

    let mut needles = forbidden(&valid, &digest(&store, &hasher, &valid).await);
    needles.extend(forbidden(
        &revoked,
        &digest(&store, &hasher, &revoked).await,
    ));
    needles.push(near_miss);
    assert_no_leak(&seen, &needles);
}

/// The PostgreSQL store and limiter with dependencies' `log` records bridged
/// into the captured tracing output at TRACE: tokio-postgres logs every
/// statement's parameters at DEBUG, so an unwrapped hash parameter would
/// show up here. Issue, verify (also of an unknown token), last-used
/// writes, get, list, rotate, revoke, a conflicting insert, and a
/// per-account limiter check: no token, hash, pepper or account key.
///
/// Without `DATABASE_URL` it skips, except under `CI=true`, where it fails.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn no_token_or_hash_leaks_through_postgres_logs() {
    use keyward::ratelimit::{PgRateLimiter, Quota, RateLimiter};

    // Global, once per test binary; the records then go to this thread's
    // subscriber, which also sees the pool's connection tasks (this
    // runtime has one thread).
    let _ = tracing_log::LogTracer::init();
    let (capture, _guard) = capture();
    let Some((store, _)) = common::pg::store("hygiene_logs").await else {
        return;
    };
    let (keyring, hasher) = hygienic_keyring_on(store.clone());

    let mut seen: Vec<String> = Vec::new();
    let issued = keyring
        .issue(NewKey::new("pl", "org", "pg cycle").scopes(["assets:write"]))
        .await
        .unwrap();
    let token = issued.token.expose_secret().to_owned();
    let key = keyring.verify(&token).await.unwrap();
    let mut typo = token.clone().into_bytes();
    typo[5] = if typo[5] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    let err = keyring.verify(&typo).await.unwrap_err();
    seen.push(format!("{err} {err:?}"));
    keyring.flush_last_used().await.unwrap();
    seen.push(format!("{:?}", keyring.get(key.id()).await.unwrap()));
    seen.push(format!("{:?}", keyring.list(key.tenant()).await.unwrap()));
    let record = store.get(key.id()).await.unwrap().unwrap();
    let mut duplicate = (*record).clone();
    duplicate.id = keyward::KeyId::generate();
    let err = store.insert(duplicate).await.unwrap_err();
    seen.push(format!("{err} {err:?}"));
    let rotated = keyring
        .rotate(key.id(), std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    keyring.verify(rotated.token.expose_secret()).await.unwrap();
    keyring.revoke(key.id()).await.unwrap();
    keyring.revoke(rotated.info.id()).await.unwrap();
    let err = keyring
        .verify(rotated.token.expose_secret())
        .await
        .unwrap_err();
    seen.push(format!("{err} {err:?}"));

    let account = "acct:sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let limiter = PgRateLimiter::new(store.clone());
    limiter.migrate().await.unwrap();
    let quota = Quota::per_minute(1).unwrap();
    assert!(limiter.check(account, quota).await.unwrap().allowed);
    assert!(!limiter.check(account, quota).await.unwrap().allowed);

    let logs = capture.text();
    // The bridge works: tokio-postgres's parameter log is captured, and the
    // wrapped parameters show as redacted.
    assert!(
        logs.contains("executing statement") && logs.contains("with parameters"),
        "tokio-postgres's DEBUG records are captured: {logs}"
    );
    assert!(logs.contains("[REDACTED]"), "{logs}");
    assert!(logs.contains("key revoked"), "{logs}");
    seen.push(logs);

    let mut needles = forbidden_hashes(&hasher, &token);
    needles.extend(forbidden_hashes(&hasher, rotated.token.expose_secret()));
    needles.extend(forbidden_hashes(&hasher, &typo));
    needles.push(typo);
    needles.push("a pepper of at least sixteen bytes".to_owned());
    needles.extend(forbidden_token_key());
    needles.push(account.to_owned());
    assert_no_leak(&seen, &needles);
}
