//! Secret hygiene: through a whole issue / verify / revoke / rotate cycle,
//! neither a token nor a stored hash appears in tracing output (at TRACE),
//! error messages, `Debug` output of public types, or the list API.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use keyward::{
    HashScheme, KeyKind, KeyStore, Keyring, MemoryStore, NewKey, Pepper, TokenFormat, TokenHasher,
    TokenKind,
};
use time::Duration;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every rendering of secret material we look for: the token, its random
/// part, and the hash digest in hex (both cases) and as a Debug byte list.
fn forbidden(token: &str, digest: &[u8; 32]) -> Vec<String> {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let list = format!("{:?}", &digest[..6]);
    let list = list.trim_end_matches(']').to_owned();
    vec![
        token.to_owned(),
        token[token.len() - 36..token.len() - 6].to_owned(),
        hex[..16].to_owned(),
        hex[..16].to_uppercase(),
        list,
    ]
}

fn pepper() -> Pepper {
    Pepper::new(2, b"a pepper of at least sixteen bytes".to_vec()).unwrap()
}

/// A subscriber at TRACE writing into a buffer, for this thread.
fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (capture, tracing::subscriber::set_default(subscriber))
}

/// A PlayableLabs keyring on a memory store, hashing with a pepper.
fn hygienic_keyring() -> (Keyring, MemoryStore, TokenHasher) {
    let store = MemoryStore::new();
    let hasher = TokenHasher::hmac(pepper())
        .with_previous(HashScheme::Sha256)
        .unwrap();
    let keyring = Keyring::builder()
        .store(store.clone())
        .kind(KeyKind::new("pl", common::playable_labs()).unwrap())
        .hasher(hasher.clone())
        .build()
        .unwrap();
    (keyring, store, hasher)
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
        issued.token, issued.info.display_prefix
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
    let parsed = TokenFormat::new([TokenKind::new("pl").unwrap()]);
    seen.push(format!("{:?}", parsed.parse(&token).unwrap()));
    seen.push(serde_json::to_string(&keyring.list(&key.tenant().clone()).await.unwrap()).unwrap());
    seen.push(format!("{:?}", keyring.get(key.id()).await.unwrap()));

    // Failures: a near-miss of the real token, an unknown one, a revoked one.
    let mut typo = token.clone().into_bytes();
    typo[5] = if typo[5] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    let err = keyring.verify(&typo).await.unwrap_err();
    seen.push(format!("{err} {err:?}"));
    let rotated = keyring.rotate(key.id(), Duration::ZERO).await.unwrap();
    let err = keyring.verify(&token).await.unwrap_err();
    seen.push(format!("{err} {err:?}"));
    keyring.revoke(&rotated.info.id).await.unwrap();
    let err = keyring
        .verify(rotated.token.expose_secret())
        .await
        .unwrap_err();
    seen.push(format!("{err} {err:?} {rotated:?}"));
    keyring.flush_last_used().await.unwrap();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
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
    keyring.revoke(&revoked.info.id).await.unwrap();
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

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
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
