//! Leak reports through the public API: `Keyring::report_leak` (offline
//! refusal, lookup under both peppers, immediate revocation with one
//! `Leaked` event, inactive keys left alone, store failures failing
//! closed), and with feature `secret-scanning` the GitHub alert receiver
//! (`keyward::leaks::GithubAlerts`): every refusal with its status and
//! code, and the success path.

mod common;

use std::sync::Arc;
use std::time::Duration;

use keyward::store::CachedStore;
use keyward::testing::{Fault, FaultyStore, Op, RecordingSink};
use keyward::{
    Actor, EventKind, Expiry, HashScheme, KeyKind, KeyStore, Keyring, LeakOutcome, LeakReport,
    ManualClock, MemoryStore, NewKey, Pepper, ScopeCatalog, TokenError, TokenHasher, TokenKey,
    TokenKind, VerifyError,
};
use time::OffsetDateTime;

fn start() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn kind(prefix: &str) -> KeyKind {
    KeyKind::new(prefix, ScopeCatalog::builder().build().unwrap()).unwrap()
}

fn token_key() -> TokenKey {
    TokenKey::new(1, vec![5; 32]).unwrap()
}

struct Fixture {
    keyring: Keyring,
    sink: RecordingSink,
    store: Arc<FaultyStore>,
    clock: ManualClock,
}

/// A keyring over a faulty memory store, with `pk` and a keyed `sk`.
fn fixture() -> Fixture {
    let clock = ManualClock::new(start());
    let store = Arc::new(FaultyStore::new(MemoryStore::with_clock(clock.clone())));
    let sink = RecordingSink::new();
    let keyring = Keyring::builder()
        .shared_store(store.clone())
        .kind(kind("pk"))
        .kind(kind("sk").token_key(token_key()))
        .clock(clock.clone())
        .events(sink.clone())
        .build()
        .unwrap();
    Fixture {
        keyring,
        sink,
        store,
        clock,
    }
}

fn github() -> LeakReport {
    LeakReport::new("github").url("https://github.com/octo/app/blob/1a2b/.env")
}

#[tokio::test]
async fn a_live_key_is_revoked_with_one_leaked_event() {
    let f = fixture();
    for prefix in ["pk", "sk"] {
        let issued = f
            .keyring
            .issue(NewKey::new(prefix, "org_1", "CI"))
            .await
            .unwrap();
        f.sink.clear();
        let token = issued.token.expose_secret();
        let outcome = f.keyring.report_leak(token, github()).await.unwrap();
        let LeakOutcome::Revoked(info) = &outcome else {
            panic!("{outcome:?}");
        };
        assert!(outcome.is_ours());
        assert_eq!(info.id(), issued.info.id());
        assert_eq!(info.revoked_at(), Some(start()));
        let events = f.sink.take();
        assert_eq!(events.len(), 1, "{events:?}");
        let event = &events[0];
        assert_eq!(event.kind.name(), "leaked");
        assert_eq!(
            event.kind,
            EventKind::Leaked {
                reporter: "github".into(),
                url: Some("https://github.com/octo/app/blob/1a2b/.env".into()),
            }
        );
        assert_eq!(&event.key_id, issued.info.id());
        assert_eq!(event.key_kind, prefix);
        assert_eq!(event.actor, Some(Actor::System("secret-scanning")));
        assert_eq!(event.at, start());
        assert!(matches!(
            f.keyring.verify(token).await,
            Err(VerifyError::Revoked)
        ));

        // Reported again: known, inactive, no second revocation or event.
        let revokes = f.store.calls(Op::Revoke);
        f.clock.advance(Duration::from_secs(60));
        let again = f.keyring.report_leak(token, github()).await.unwrap();
        let LeakOutcome::Inactive(info) = &again else {
            panic!("{again:?}");
        };
        assert!(again.is_ours());
        assert_eq!(info.revoked_at(), Some(start()));
        assert_eq!(f.store.calls(Op::Revoke), revokes);
        assert!(f.sink.take().is_empty());
        f.clock.rewind(Duration::from_secs(60));
    }
}

#[tokio::test]
async fn revocation_is_immediate_through_a_cache_and_for_a_lagging_reader() {
    // The cache holds the key as verified; the report goes through the
    // same cache, which drops the key before the call returns. A second
    // keyring whose clock lags an hour reads the store directly: the
    // revocation is on the store's clock and in effect whatever its clock.
    let clock = ManualClock::new(start());
    let memory = MemoryStore::with_clock(clock.clone());
    let cached: Arc<dyn KeyStore> = Arc::new(
        CachedStore::builder(memory.clone())
            .ttl(Duration::from_secs(3600))
            .build(),
    );
    let keyring = Keyring::builder()
        .shared_store(cached)
        .kind(kind("pk"))
        .clock(clock.clone())
        .events(RecordingSink::new())
        .build()
        .unwrap();
    let lagging = Keyring::builder()
        .store(memory)
        .kind(kind("pk"))
        .clock(ManualClock::new(start() - time::Duration::hours(1)))
        .build()
        .unwrap();
    let issued = keyring
        .issue(NewKey::new("pk", "org_1", "CI"))
        .await
        .unwrap();
    let token = issued.token.expose_secret();
    keyring.verify(token).await.unwrap();
    let outcome = keyring.report_leak(token, github()).await.unwrap();
    assert!(matches!(outcome, LeakOutcome::Revoked(_)));
    assert!(matches!(
        keyring.verify(token).await,
        Err(VerifyError::Revoked)
    ));
    assert!(matches!(
        lagging.verify(token).await,
        Err(VerifyError::Revoked)
    ));
}

#[tokio::test]
async fn a_key_in_its_rotation_grace_is_revoked_now() {
    let f = fixture();
    let issued = f
        .keyring
        .issue(NewKey::new("pk", "org_1", "CI"))
        .await
        .unwrap();
    let token = issued.token.expose_secret();
    let successor = f
        .keyring
        .rotate(issued.info.id(), Duration::from_secs(3600))
        .await
        .unwrap();
    f.keyring.verify(token).await.unwrap();
    f.sink.clear();
    let outcome = f.keyring.report_leak(token, github()).await.unwrap();
    assert!(matches!(outcome, LeakOutcome::Revoked(_)), "{outcome:?}");
    assert!(matches!(
        f.keyring.verify(token).await,
        Err(VerifyError::Revoked)
    ));
    assert_eq!(f.sink.names(), ["leaked"]);
    // The successor's token is another secret: it keeps working.
    f.keyring
        .verify(successor.token.expose_secret())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_key_is_left_alone() {
    let f = fixture();
    let issued = f
        .keyring
        .issue(NewKey::new("pk", "org_1", "CI").expires(Expiry::Days30))
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(31 * 86_400));
    f.sink.clear();
    let outcome = f
        .keyring
        .report_leak(issued.token.expose_secret(), github())
        .await
        .unwrap();
    let LeakOutcome::Inactive(info) = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(info.revoked_at(), None);
    assert_eq!(f.store.calls(Op::Revoke), 0);
    assert!(f.sink.take().is_empty());
}

#[tokio::test]
async fn tokens_not_ours_are_refused_without_a_lookup() {
    let f = fixture();
    // The store would fail: an answer proves it was not asked.
    f.store.set_fault(Fault::Fail);
    let pk = TokenKind::new("pk").unwrap().generate();
    let good = pk.expose_secret();
    let mut bad_checksum = good.as_bytes().to_vec();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'a' {
        b'b'
    } else {
        b'a'
    };
    let bad_checksum = String::from_utf8(bad_checksum).unwrap();
    let foreign_tag = TokenKind::new("sk")
        .unwrap()
        .key(TokenKey::new(1, vec![6; 32]).unwrap())
        .generate();
    let unknown_prefix = TokenKind::new("xk").unwrap().generate();
    for (token, expected) in [
        (bad_checksum.as_str(), TokenError::BadChecksum),
        (foreign_tag.expose_secret(), TokenError::BadTag),
        (unknown_prefix.expose_secret(), TokenError::UnknownPrefix),
        ("", TokenError::Empty),
        ("pk_short", TokenError::BadLength),
    ] {
        let outcome = f.keyring.report_leak(token, github()).await.unwrap();
        assert!(!outcome.is_ours());
        match outcome {
            LeakOutcome::NotOurs(err) => assert_eq!(err, expected, "{token:?}"),
            other => panic!("{token:?}: {other:?}"),
        }
    }
    assert_eq!(f.store.calls(Op::FindByHash), 0);
    assert!(f.sink.take().is_empty());
}

#[tokio::test]
async fn an_unknown_token_is_not_found() {
    let f = fixture();
    let stranger = TokenKind::new("pk").unwrap().generate();
    let outcome = f
        .keyring
        .report_leak(stranger.expose_secret(), github())
        .await
        .unwrap();
    assert!(matches!(outcome, LeakOutcome::NotFound), "{outcome:?}");
    assert!(!outcome.is_ours());
    assert_eq!(f.store.calls(Op::FindByHash), 1);
    assert_eq!(f.store.calls(Op::Revoke), 0);
}

#[tokio::test]
async fn store_failures_fail_closed() {
    let f = fixture();
    let issued = f
        .keyring
        .issue(NewKey::new("pk", "org_1", "CI"))
        .await
        .unwrap();
    let token = issued.token.expose_secret();
    f.store.set_fault_on(Op::FindByHash, Fault::Fail);
    assert!(f.keyring.report_leak(token, github()).await.is_err());
    f.store.set_fault_on(Op::FindByHash, Fault::None);
    f.store.set_fault_on(Op::Revoke, Fault::Fail);
    f.sink.clear();
    assert!(f.keyring.report_leak(token, github()).await.is_err());
    assert!(f.sink.take().is_empty());
    f.store.set_fault_on(Op::Revoke, Fault::None);
    // Still live, and revoked once the store answers.
    f.keyring.verify(token).await.unwrap();
    let outcome = f.keyring.report_leak(token, github()).await.unwrap();
    assert!(matches!(outcome, LeakOutcome::Revoked(_)));
}

#[tokio::test]
async fn keys_hashed_under_the_previous_pepper_are_found() {
    let old = HashScheme::Hmac(Pepper::new(1, vec![1; 32]).unwrap());
    let new = HashScheme::Hmac(Pepper::new(2, vec![2; 32]).unwrap());
    let store = MemoryStore::new();
    let before = Keyring::builder()
        .store(store.clone())
        .kind(kind("pk"))
        .hasher(TokenHasher::new(old.clone()))
        .build()
        .unwrap();
    let issued = before
        .issue(NewKey::new("pk", "org_1", "CI"))
        .await
        .unwrap();
    let after = Keyring::builder()
        .store(store)
        .kind(kind("pk"))
        .hasher(TokenHasher::new(new).with_previous(old).unwrap())
        .events(RecordingSink::new())
        .build()
        .unwrap();
    let outcome = after
        .report_leak(issued.token.expose_secret(), github())
        .await
        .unwrap();
    assert!(matches!(outcome, LeakOutcome::Revoked(_)), "{outcome:?}");
}

#[tokio::test]
async fn a_store_answer_for_another_kind_is_not_trusted() {
    // A store that answers a lookup with a record of another kind (or
    // another hash) must not get that key revoked.
    let f = fixture();
    let stranger = TokenKind::new("pk").unwrap().generate();
    // Another kind's key, then another key of the same kind.
    for kind in ["sk", "pk"] {
        let other = f
            .keyring
            .issue(NewKey::new(kind, "org_1", "CI"))
            .await
            .unwrap();
        let record = f.store.get_ref().get(other.info.id()).await.unwrap();
        f.store.set_lookup_answer(record);
        let outcome = f
            .keyring
            .report_leak(stranger.expose_secret(), github())
            .await
            .unwrap();
        assert!(
            matches!(outcome, LeakOutcome::NotFound),
            "{kind}: {outcome:?}"
        );
        assert_eq!(f.store.calls(Op::Revoke), 0);
    }
}

#[test]
fn reports_are_bounded() {
    let long = "x".repeat(100);
    assert_eq!(LeakReport::new(long).reporter().len(), 64);
    // 11 bytes, then 2-byte characters: byte 2048 falls inside one.
    let url = format!("https://ex/{}", "é".repeat(2000));
    let report = LeakReport::new("github").url(url.clone());
    let kept = report.get_url().unwrap();
    assert_eq!(kept.len(), 2047);
    assert!(url.starts_with(kept));
    assert_eq!(LeakReport::new("github").get_url(), None);
    assert_eq!(LeakReport::new("a").url("").get_url(), None);
    assert_eq!(
        LeakReport::new("a").url("u").url("").get_url(),
        None,
        "an empty url clears it"
    );
}

#[cfg(feature = "secret-scanning")]
mod github {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use base64::Engine as _;
    use keyward::leaks::{AlertError, GithubAlerts, GithubKeyFetcher, KeyFetchError};
    use keyward::testing::{Fault, Op};
    use keyward::{KeyInfo, LeakOutcome, NewKey, TokenKind, VerifyError};
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::{Signature, SigningKey};
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};
    use sha2::Digest as _;
    use tower::ServiceExt as _;

    use super::{fixture, Fixture};

    /// The tests of this module run one at a time: one of them captures
    /// the logs of callsites the others hit, and tracing's per-callsite
    /// interest cache is not reliable under concurrent registration.
    static SERIAL: std::sync::LazyLock<tokio::sync::Mutex<()>> =
        std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

    /// GitHub's key list with the test keys `k1` and `k2`; counts fetches
    /// and can be told to fail.
    #[derive(Clone, Default)]
    struct Keys {
        fetches: Arc<AtomicUsize>,
        failing: Arc<AtomicBool>,
        hanging: Arc<AtomicBool>,
    }

    fn github_key(id: u8) -> SigningKey {
        SigningKey::from_slice(&[id; 32]).unwrap()
    }

    #[keyward::async_trait]
    impl GithubKeyFetcher for Keys {
        async fn fetch(&self) -> Result<Vec<u8>, KeyFetchError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if self.hanging.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.failing.load(Ordering::SeqCst) {
                return Err(KeyFetchError::new("status 502"));
            }
            let pem = |k: &SigningKey| k.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
            let list = serde_json::json!({"public_keys": [
                {"key_identifier": "k1", "key": pem(&github_key(1)), "is_current": false},
                {"key_identifier": "k2", "key": pem(&github_key(2)), "is_current": true},
            ]});
            Ok(list.to_string().into_bytes())
        }
    }

    fn service(f: &Fixture, keys: &Keys) -> GithubAlerts {
        GithubAlerts::builder(f.keyring.clone())
            .fetcher(keys.clone())
            .max_tokens(5)
            .body_limit(4096)
            .build()
            .unwrap()
    }

    fn sign(key: &SigningKey, body: &str) -> String {
        let sig: Signature = key.sign(body.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(sig.to_der())
    }

    fn alert(tokens: &[&str]) -> String {
        let matches: Vec<_> = tokens
            .iter()
            .map(|t| {
                serde_json::json!({
                    "token": t, "type": "acme_api_key",
                    "url": "https://github.com/octo/app/blob/1a2b/.env", "source": "content"
                })
            })
            .collect();
        serde_json::Value::from(matches).to_string()
    }

    fn request(key_id: &str, signature: &str, body: String) -> http::Request<String> {
        http::Request::post("/github/secret-scanning")
            .header("Github-Public-Key-Identifier", key_id)
            .header("Github-Public-Key-Signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .unwrap()
    }

    fn signed(body: String) -> http::Request<String> {
        let signature = sign(&github_key(2), &body);
        request("k2", &signature, body)
    }

    async fn send(svc: &GithubAlerts, req: http::Request<String>) -> (u16, serde_json::Value) {
        let response = svc.clone().oneshot(req).await.unwrap();
        let status = response.status().as_u16();
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["cache-control"], "no-store");
        (status, serde_json::from_str(response.body()).unwrap())
    }

    async fn refused(svc: &GithubAlerts, req: http::Request<String>, status: u16, code: &str) {
        let (got, body) = send(svc, req).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }

    fn sha256_hex(token: &str) -> String {
        sha2::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[tokio::test]
    async fn an_alert_revokes_live_keys_and_labels_each_token() {
        let _serial = SERIAL.lock().await;
        let f = fixture();
        let keys = Keys::default();
        let svc = service(&f, &keys);
        let live = f
            .keyring
            .issue(NewKey::new("pk", "org_1", "CI"))
            .await
            .unwrap();
        let keyed = f
            .keyring
            .issue(NewKey::new("sk", "org_1", "CI"))
            .await
            .unwrap();
        let old = f
            .keyring
            .issue(NewKey::new("pk", "org_1", "old"))
            .await
            .unwrap();
        f.keyring.revoke(old.info.id()).await.unwrap();
        let unknown = TokenKind::new("pk").unwrap().generate();
        f.sink.clear();
        let tokens = [
            live.token.expose_secret(),
            keyed.token.expose_secret(),
            old.token.expose_secret(),
            unknown.expose_secret(),
            "pk_malformed",
        ];
        let (status, body) = send(&svc, signed(alert(&tokens))).await;
        assert_eq!(status, 200, "{body}");
        let labels = [
            "true_positive",
            "true_positive",
            "true_positive",
            "false_positive",
            "false_positive",
        ];
        let entries = body.as_array().unwrap();
        assert_eq!(entries.len(), tokens.len());
        for ((entry, token), label) in entries.iter().zip(tokens).zip(labels) {
            assert_eq!(
                entry,
                &serde_json::json!({"token_hash": sha256_hex(token), "token_type": "acme_api_key", "label": label})
            );
        }
        assert!(!body.to_string().contains(live.token.expose_secret()));
        // The live keys are revoked at once, with one event each; the old
        // one is not revoked again.
        for token in [live.token.expose_secret(), keyed.token.expose_secret()] {
            assert!(matches!(
                f.keyring.verify(token).await,
                Err(VerifyError::Revoked)
            ));
        }
        let events = f.sink.take();
        assert_eq!(
            events
                .iter()
                .map(|e| (e.kind.name(), &e.key_id))
                .collect::<Vec<_>>(),
            [("leaked", live.info.id()), ("leaked", keyed.info.id())]
        );
        assert_eq!(keys.fetches.load(Ordering::SeqCst), 1);

        // GitHub sends it again: all known, nothing more revoked.
        let revokes = f.store.calls(Op::Revoke);
        let (status, again) = send(&svc, signed(alert(&tokens))).await;
        assert_eq!(status, 200);
        assert_eq!(again, body);
        assert_eq!(f.store.calls(Op::Revoke), revokes);
        assert!(f.sink.take().is_empty());
        assert_eq!(keys.fetches.load(Ordering::SeqCst), 1, "keys are cached");
    }

    #[tokio::test]
    async fn a_token_repeated_in_one_alert_is_reported_once() {
        let _serial = SERIAL.lock().await;
        let f = fixture();
        let svc = service(&f, &Keys::default());
        let live = f
            .keyring
            .issue(NewKey::new("pk", "org_1", "CI"))
            .await
            .unwrap();
        f.sink.clear();
        let token = live.token.expose_secret();
        let (status, body) = send(&svc, signed(alert(&[token, token]))).await;
        assert_eq!(status, 200);
        assert_eq!(body[0], body[1]);
        assert_eq!(body[1]["label"], "true_positive");
        assert_eq!(f.sink.names(), ["leaked"]);
        assert_eq!(f.store.calls(Op::FindByHash), 1);
    }

    #[tokio::test]
    async fn an_empty_alert_is_answered_with_no_feedback() {
        let _serial = SERIAL.lock().await;
        let f = fixture();
        let svc = service(&f, &Keys::default());
        let (status, body) = send(&svc, signed("[]".into())).await;
        assert_eq!((status, body), (200, serde_json::json!([])));
    }

    #[tokio::test]
    async fn the_signature_is_checked_before_the_body_is_read() {
        let _serial = SERIAL.lock().await;
        let f = fixture();
        let keys = Keys::default();
        let svc = service(&f, &keys);
        let live = f
            .keyring
            .issue(NewKey::new("pk", "org_1", "CI"))
            .await
            .unwrap();
        let body = alert(&[live.token.expose_secret()]);
        // Signed by another key, by the other listed key, over other bytes,
        // or not a DER signature: 401, nothing revoked.
        let cases = [
            request("k2", &sign(&github_key(9), &body), body.clone()),
            request("k2", &sign(&github_key(1), &body), body.clone()),
            request(
                "k2",
                &sign(&github_key(2), &format!("{body} ")),
                body.clone(),
            ),
            request("k2", "AAAA", body.clone()),
            // Not even JSON, badly signed: still 401, not 400.
            request("k2", &sign(&github_key(9), "x"), "not json".into()),
        ];
        for req in cases {
            refused(&svc, req, 401, "bad_signature").await;
        }
        f.keyring.verify(live.token.expose_secret()).await.unwrap();
        // The other listed key verifies its own signatures.
        let (status, _) = send(&svc, request("k1", &sign(&github_key(1), &body), body)).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn headers_must_be_present_single_and_well_formed() {
        let _serial = SERIAL.lock().await;
        let f = fixture();
        let svc = service(&f, &Keys::default());
        let body = alert(&[]);
        let sig = sign(&github_key(2), &body);
        let mut missing_id = request("k2", &sig, body.clone());
        missing_id
            .headers_mut()
            .remove("github-public-key-identifier");
        refused(&svc, missing_id, 400, "missing_header").await;
        let mut missing_sig = request("k2", &sig, body.clone());
        missing_sig
            .headers_mut()
            .remove("github-public-key-signature");
        refused(&svc, missing_sig, 400, "missing_header").await;
        for name in [
            "github-public-key-identifier",
            "github-public-key-signature",
        ] {
            let mut twice = request("k2", &sig, body.clone());
            let value = twice.headers()[name].clone();
            twice.headers_mut().append(name, value);
            refused(&svc, twice, 400, "duplicate_header").await;
        }
        for (id, signature) in [
            ("k 2", sig.as_str()),
            ("", sig.as_str()),
            ("k/2", sig.as_str()),
            ("k2", "not base64!"),
            ("k2", ""),
            ("k2", &"A".repeat(260)),
            ("k2", &"A".repeat(257)),
        ] {
            refused(
                &svc,
                request(id, signature, body.clone()),
                400,
                "malformed_header",
            )
            .await;
        }
        let mut binary = request("k2", &sig, body.clone());
        binary.headers_mut().insert(
            "github-public-key-identifier",
            http::HeaderValue::from_bytes(b"k\xff").unwrap(),
        );
        refused(&svc, binary, 400, "malformed_header").await;
        // The longest signature read: base64, so looked at, and wrong.
        refused(
            &svc,
            request("k2", &"A".repeat(256), body.clone()),
            401,
            "bad_signature",
        )
        .await;
        // Just within the bounds: a 128-character identifier is looked up.
        refused(
            &svc,
            request(&"k".repeat(128), &sig, body.clone()),
            401,
            "unknown_key",
        )
        .await;
        refused(
            &svc,
            request(&"k".repeat(129), &sig, body),
            400,
            "malformed_header",
        )
        .await;
    }

    #[tokio::test]
    async fn only_post_is_accepted() {
        let _serial = SERIAL.lock().await;
        let f = fixture();
        let svc = service(&f, &Keys::default());
        let mut req = signed("[]".into());
        *req.method_mut() = http::Method::GET;
        let response = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        assert!(response.body().contains("method_not_allowed"));
    }

    #[tokio::test]
    async fn bodies_and_alerts_are_bounded() {
        let _serial = SERIAL.lock().await;
        let f = fixture();
        let svc = service(&f, &Keys::default());
        let padded = format!("[{}]", " ".repeat(4094));
        assert_eq!(padded.len(), 4096);
        assert_eq!(send(&svc, signed(padded.clone())).await.0, 200);
        refused(&svc, signed(format!("{padded} ")), 413, "alert_too_large").await;
        let tokens = ["pk_a"; 5];
        assert_eq!(send(&svc, signed(alert(&tokens))).await.0, 200);
        refused(&svc, signed(alert(&["pk_a"; 6])), 413, "too_many_tokens").await;
    }

    #[tokio::test]
    async fn alerts_that_are_not_lists_of_matches_are_refused() {
        let _serial = SERIAL.lock().await;
        let f = fixture();
        let svc = service(&f, &Keys::default());
        for body in [
            "",
            "{}",
            "[{\"type\":\"acme_api_key\"}]",
            "[{\"token\":\"pk_a\"}]",
            "[{\"token\":7,\"type\":\"t\"}]",
            "[\"pk_a\"]",
        ] {
            refused(&svc, signed(body.into()), 400, "invalid_alert").await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_key_ids_refetch_at_most_once_an_interval() {
        let _serial = SERIAL.lock().await;
        let f = fixture();
        let keys = Keys::default();
        let svc = service(&f, &keys);
        let body = alert(&[]);
        let sig = sign(&github_key(2), &body);
        refused(&svc, request("k3", &sig, body.clone()), 401, "unknown_key").await;
        refused(&svc, request("k4", &sig, body.clone()), 401, "unknown_key").await;
        assert_eq!(keys.fetches.load(Ordering::SeqCst), 1);
        // Known ids need no fetch.
        assert_eq!(send(&svc, request("k2", &sig, body.clone())).await.0, 200);
        assert_eq!(keys.fetches.load(Ordering::SeqCst), 1);
        // Once the interval has passed, an unknown id fetches again.
        tokio::time::advance(Duration::from_secs(60)).await;
        refused(&svc, request("k3", &sig, body.clone()), 401, "unknown_key").await;
        assert_eq!(keys.fetches.load(Ordering::SeqCst), 2);
        refused(&svc, request("k3", &sig, body.clone()), 401, "unknown_key").await;
        assert_eq!(keys.fetches.load(Ordering::SeqCst), 2);
        // A shorter interval, down to its 10 s floor.
        let eager = GithubAlerts::builder(f.keyring.clone())
            .fetcher(keys.clone())
            .refetch_interval(Duration::from_secs(10))
            .build()
            .unwrap();
        refused(
            &eager,
            request("k3", &sig, body.clone()),
            401,
            "unknown_key",
        )
        .await;
        tokio::time::advance(Duration::from_secs(10)).await;
        refused(&eager, request("k3", &sig, body), 401, "unknown_key").await;
        assert_eq!(keys.fetches.load(Ordering::SeqCst), 4);
        for (interval, timeout) in [(9_999, 5_000), (60_000, 99), (60_000, 10_001)] {
            assert!(GithubAlerts::builder(f.keyring.clone())
                .fetcher(keys.clone())
                .refetch_interval(Duration::from_millis(interval))
                .fetch_timeout(Duration::from_millis(timeout))
                .build()
                .is_err());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn key_fetch_failures_fail_closed() {
        let _serial = SERIAL.lock().await;
        let f = fixture();
        let keys = Keys::default();
        keys.failing.store(true, Ordering::SeqCst);
        let svc = GithubAlerts::builder(f.keyring.clone())
            .fetcher(keys.clone())
            .refetch_interval(Duration::from_secs(10))
            .build()
            .unwrap();
        refused(&svc, signed("[]".into()), 503, "keys_unavailable").await;
        keys.failing.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(send(&svc, signed("[]".into())).await.0, 200);
        // A later failure keeps the known keys, but an unknown id is then
        // undecidable: 503, not 401.
        keys.failing.store(true, Ordering::SeqCst);
        let body = "[]".to_owned();
        let sig = sign(&github_key(2), &body);
        tokio::time::advance(Duration::from_secs(10)).await;
        refused(
            &svc,
            request("k9", &sig, body.clone()),
            503,
            "keys_unavailable",
        )
        .await;
        assert_eq!(send(&svc, request("k2", &sig, body)).await.0, 200);

        // A hanging fetch times out.
        let hanging = Keys::default();
        hanging.hanging.store(true, Ordering::SeqCst);
        let svc = GithubAlerts::builder(f.keyring.clone())
            .fetcher(hanging)
            .fetch_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        refused(&svc, signed("[]".into()), 503, "keys_unavailable").await;
    }

    #[tokio::test]
    async fn a_throttled_failure_stays_unavailable() {
        let _serial = SERIAL.lock().await;
        // The first fetch failed and the next is not due yet: the cache
        // can not decide, so 503 (GitHub retries), never 401.
        let f = fixture();
        let keys = Keys::default();
        keys.failing.store(true, Ordering::SeqCst);
        let svc = service(&f, &keys);
        refused(&svc, signed("[]".into()), 503, "keys_unavailable").await;
        keys.failing.store(false, Ordering::SeqCst);
        refused(&svc, signed("[]".into()), 503, "keys_unavailable").await;
        assert_eq!(keys.fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn store_failures_answer_503() {
        let f = fixture();
        let svc = service(&f, &Keys::default());
        let live = f
            .keyring
            .issue(NewKey::new("pk", "org_1", "CI"))
            .await
            .unwrap();
        let body = alert(&[live.token.expose_secret()]);
        f.store.set_fault_on(Op::Revoke, Fault::Fail);
        refused(&svc, signed(body.clone()), 503, "store_unavailable").await;
        f.keyring.verify(live.token.expose_secret()).await.unwrap();
        f.store.set_fault_on(Op::Revoke, Fault::None);
        let (status, feedback) = send(&svc, signed(body)).await;
        assert_eq!(
            (status, &feedback[0]["label"]),
            (200, &serde_json::json!("true_positive"))
        );
    }

    #[tokio::test]
    async fn logs_name_the_leak_and_never_the_token() {
        let _serial = SERIAL.lock().await;
        let keyring = keyward::Keyring::builder()
            .store(keyward::MemoryStore::new())
            .kind(super::kind("pk"))
            .build()
            .unwrap();
        let live = keyring
            .issue(NewKey::new("pk", "org_1", "CI"))
            .await
            .unwrap();
        let token = live.token.expose_secret();
        let svc = GithubAlerts::builder(keyring)
            .fetcher(Keys::default())
            .build()
            .unwrap();
        let (logs, _guard) = super::common::capture();
        tracing::callsite::rebuild_interest_cache();
        let stranger = TokenKind::new("pk").unwrap().generate();
        let body = alert(&[token, "pk_malformed", stranger.expose_secret()]);
        assert_eq!(send(&svc, signed(body)).await.0, 200);
        let mut bad = signed(alert(&[token]));
        bad.headers_mut().insert(
            "github-public-key-signature",
            http::HeaderValue::from_static("AAAA"),
        );
        refused(&svc, bad, 401, "bad_signature").await;
        let logs = logs.text();
        let audit = logs
            .lines()
            .find(|l| l.contains("leaked key revoked"))
            .unwrap_or_else(|| panic!("{logs}"));
        for field in [
            "event=\"leaked\"",
            &format!("key_id={}", live.info.id()),
            "actor=\"system:secret-scanning\"",
            "reporter=\"github\"",
            "url=\"https://github.com/octo/app/blob/1a2b/.env\"",
        ] {
            assert!(audit.contains(field), "{field} not in {audit}");
        }
        assert!(audit.contains("WARN"), "{audit}");
        assert!(logs.contains("reported=3 ours=1"), "{logs}");
        assert!(logs.contains("code=\"bad_signature\""), "{logs}");
        assert!(!logs.contains(token), "{logs}");
        assert!(!logs.contains(&token[3..33]), "{logs}");
    }

    #[test]
    fn settings_are_checked() {
        let f = fixture();
        for builder in [
            GithubAlerts::builder(f.keyring.clone()).body_limit(0),
            GithubAlerts::builder(f.keyring.clone()).max_tokens(0),
        ] {
            assert!(builder.fetcher(Keys::default()).build().is_err());
        }
        // The default fetcher builds without network access.
        let builder =
            GithubAlerts::builder(f.keyring.clone()).fetch_timeout(Duration::from_secs(2));
        let debug = format!("{builder:?}");
        assert!(
            debug.contains("custom_fetcher: false") && debug.contains("fetch_timeout: 2s"),
            "{debug}"
        );
        let mut svc = builder.build().unwrap();
        let debug = format!("{svc:?}");
        assert!(
            debug.contains("body_limit: 1048576") && debug.contains("max_tokens: 1000"),
            "{debug}"
        );
        assert!(
            debug.contains("refetch_interval: 60s") && debug.contains("fetch_timeout: 2s"),
            "{debug}"
        );
        let future = tower::Service::call(&mut svc, http::Request::new(String::new()));
        assert_eq!(format!("{future:?}"), "ResponseFuture");
        let _: fn(KeyInfo) -> LeakOutcome = LeakOutcome::Revoked;
    }

    #[test]
    fn every_error_has_its_status_and_code() {
        let cases = [
            (AlertError::MethodNotAllowed, 405, "method_not_allowed"),
            (AlertError::MissingHeader("h"), 400, "missing_header"),
            (AlertError::DuplicateHeader("h"), 400, "duplicate_header"),
            (AlertError::MalformedHeader("h"), 400, "malformed_header"),
            (AlertError::BodyTooLarge, 413, "alert_too_large"),
            (AlertError::BodyUnreadable, 400, "body_unreadable"),
            (AlertError::UnknownKey, 401, "unknown_key"),
            (AlertError::BadSignature, 401, "bad_signature"),
            (AlertError::InvalidAlert, 400, "invalid_alert"),
            (AlertError::TooManyTokens, 413, "too_many_tokens"),
            (AlertError::KeysUnavailable, 503, "keys_unavailable"),
            (
                AlertError::Store(keyward::StoreError::unavailable("down")),
                503,
                "store_unavailable",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status().as_u16(), err.code()), (status, code));
            let response = err.to_response();
            assert_eq!(response.status().as_u16(), status);
            let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
            assert_eq!(body["error"], code);
            assert_eq!(body["message"], err.to_string());
            assert_eq!(response.headers().contains_key("allow"), status == 405);
        }
    }
}
