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

#[tokio::test]
async fn no_token_or_hash_leaks_anywhere() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let store = MemoryStore::new();
    let pepper = || Pepper::new(2, b"a pepper of at least sixteen bytes".to_vec()).unwrap();
    let hasher = TokenHasher::hmac(pepper())
        .with_previous(HashScheme::Sha256)
        .unwrap();
    let keyring = Keyring::builder()
        .store(store.clone())
        .kind(KeyKind::new("pl", common::playable_labs()).unwrap())
        .hasher(hasher.clone())
        .build()
        .unwrap();

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
    for text in &seen {
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "leak of {needle:?} in {text}"
            );
        }
    }
}
