//! Inbound webhooks through the public API: the Standard Webhooks
//! specification's published test vectors, every refusal, rotation, replay
//! refusal, Stripe and GitHub signatures, and the receiving layer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use keyward::webhooks::{
    MemoryReplayGuard, MessageId, SharedSecret, Signer, VerifiedWebhook, Verifier,
    VerifyWebhookLayer, WebhookError, WebhookScheme, WebhookSecret,
};
use keyward::ManualClock;
use proptest::prelude::*;
use time::OffsetDateTime;
use tower::{Layer as _, ServiceExt as _};

fn at(unix: i64) -> ManualClock {
    ManualClock::new(OffsetDateTime::from_unix_timestamp(unix).unwrap())
}

fn headers(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", HeaderValue::from_str(id).unwrap());
    headers.insert(
        "webhook-timestamp",
        HeaderValue::from_str(timestamp).unwrap(),
    );
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    headers
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

// The vectors of the specification's own libraries
// (standard-webhooks/standard-webhooks, libraries/{python,go,rust}).
const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn vector_verifier() -> Verifier {
    Verifier::standard([WebhookSecret::parse(VECTOR_SECRET).unwrap()])
        .clock(at(VECTOR_TIMESTAMP))
        .build()
        .unwrap()
}

#[test]
fn vector_sign_python_and_go() {
    let signer = Signer::new(WebhookSecret::parse(VECTOR_SECRET).unwrap());
    let id = MessageId::parse(VECTOR_ID).unwrap();
    assert_eq!(
        signer.sign(&id, VECTOR_TIMESTAMP, VECTOR_BODY),
        VECTOR_SIGNATURE
    );
}

#[test]
fn vector_sign_rust() {
    let signer =
        Signer::new(WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap());
    let id = MessageId::parse("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk").unwrap();
    assert_eq!(
        signer.sign(
            &id,
            1_649_367_553,
            br#"{"email":"test@example.com","username":"test_user"}"#
        ),
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
    );
}

#[tokio::test]
async fn vector_verifies_and_its_one_character_change_does_not() {
    let verifier = vector_verifier();
    let good = headers(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), VECTOR_SIGNATURE);
    let verified = verifier.verify(&good, VECTOR_BODY).await.unwrap();
    assert_eq!(verified.id(), Some(VECTOR_ID));
    assert_eq!(verified.scheme(), WebhookScheme::Standard);
    assert_eq!(
        verified.timestamp().unwrap().unix_timestamp(),
        VECTOR_TIMESTAMP
    );
    // The libraries' "invalid signature" case: the last character changed.
    let bad = headers(
        VECTOR_ID,
        &VECTOR_TIMESTAMP.to_string(),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
    );
    assert!(matches!(
        verifier.verify(&bad, VECTOR_BODY).await,
        Err(WebhookError::InvalidSignature)
    ));
    // And the body, id and timestamp are all covered.
    assert!(verifier
        .verify(&good, br#"{"test": 2432232315}"#)
        .await
        .is_err());
    let other_id = headers(
        "msg_p5jXN8AQM9LWM0D4loKWxJeK",
        &VECTOR_TIMESTAMP.to_string(),
        VECTOR_SIGNATURE,
    );
    assert!(verifier.verify(&other_id, VECTOR_BODY).await.is_err());
    let other_ts = headers(
        VECTOR_ID,
        &(VECTOR_TIMESTAMP + 1).to_string(),
        VECTOR_SIGNATURE,
    );
    assert!(verifier.verify(&other_ts, VECTOR_BODY).await.is_err());
}

#[tokio::test]
async fn vector_secret_without_prefix_and_with_padding_variants() {
    // The libraries accept the bare base64 and unpadded spellings.
    for secret in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", VECTOR_SECRET] {
        let verifier = Verifier::standard([WebhookSecret::parse(secret).unwrap()])
            .clock(at(VECTOR_TIMESTAMP))
            .build()
            .unwrap();
        let good = headers(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), VECTOR_SIGNATURE);
        assert!(
            verifier.verify(&good, VECTOR_BODY).await.is_ok(),
            "{secret}"
        );
    }
    // 27 bytes: one padding character, with it or without it.
    let padded = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr0u6w==").unwrap();
    let unpadded = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr0u6w").unwrap();
    assert_eq!(padded, unpadded);
    assert!(WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw===").is_err());
    assert!(WebhookSecret::parse("whsec_").is_err());
}

#[tokio::test]
async fn any_one_matching_signature_of_several_is_enough() {
    // The libraries' multi-signature case: unknown versions and wrong
    // signatures around the right one.
    let verifier = vector_verifier();
    let many = [
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        VECTOR_SIGNATURE,
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    ]
    .join(" ");
    let h = headers(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), &many);
    assert!(verifier.verify(&h, VECTOR_BODY).await.is_ok());
    // Without the right one: refused.
    let wrong = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc=";
    let h = headers(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), wrong);
    assert!(matches!(
        verifier.verify(&h, VECTOR_BODY).await,
        Err(WebhookError::InvalidSignature)
    ));
}

#[tokio::test]
async fn partial_signatures_are_refused() {
    // The libraries' partial-signature cases: `v1,` alone, and a truncated one.
    let verifier = vector_verifier();
    for signature in [
        "v1,",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O",
        "v1,g0hM9S",
    ] {
        let h = headers(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), signature);
        assert!(
            matches!(
                verifier.verify(&h, VECTOR_BODY).await,
                Err(WebhookError::InvalidSignature)
            ),
            "{signature}"
        );
    }
}

#[tokio::test]
async fn the_tolerance_holds_both_ways_on_the_injected_clock() {
    let clock = at(VECTOR_TIMESTAMP);
    let verifier = Verifier::standard([WebhookSecret::parse(VECTOR_SECRET).unwrap()])
        .clock(clock.clone())
        .build()
        .unwrap();
    let h = headers(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), VECTOR_SIGNATURE);
    clock.advance(Duration::from_secs(300));
    assert!(verifier.verify(&h, VECTOR_BODY).await.is_ok());
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        verifier.verify(&h, VECTOR_BODY).await,
        Err(WebhookError::TimestampOutOfTolerance)
    ));
    clock.set(OffsetDateTime::from_unix_timestamp(VECTOR_TIMESTAMP - 300).unwrap());
    assert!(verifier.verify(&h, VECTOR_BODY).await.is_ok());
    clock.rewind(Duration::from_secs(1));
    assert!(matches!(
        verifier.verify(&h, VECTOR_BODY).await,
        Err(WebhookError::TimestampOutOfTolerance)
    ));
}

#[tokio::test]
async fn a_configured_tolerance_is_used() {
    let clock = at(VECTOR_TIMESTAMP + 30);
    let verifier = Verifier::standard([WebhookSecret::parse(VECTOR_SECRET).unwrap()])
        .clock(clock.clone())
        .tolerance(Duration::from_secs(29))
        .build()
        .unwrap();
    let h = headers(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), VECTOR_SIGNATURE);
    assert!(matches!(
        verifier.verify(&h, VECTOR_BODY).await,
        Err(WebhookError::TimestampOutOfTolerance)
    ));
    assert!(Verifier::standard([WebhookSecret::generate()])
        .tolerance(Duration::ZERO)
        .build()
        .is_err());
    assert!(Verifier::standard([WebhookSecret::generate()])
        .tolerance(Duration::from_secs(86_401))
        .build()
        .is_err());
    assert!(Verifier::standard(Vec::<WebhookSecret>::new())
        .build()
        .is_err());
}

#[tokio::test]
async fn every_malformed_header_is_a_typed_400() {
    let verifier = vector_verifier();
    let ts = VECTOR_TIMESTAMP.to_string();
    let good = headers(VECTOR_ID, &ts, VECTOR_SIGNATURE);
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut h = good.clone();
        h.remove(name);
        let err = verifier.verify(&h, VECTOR_BODY).await.unwrap_err();
        assert!(
            matches!(err, WebhookError::MissingHeader(n) if n == name),
            "{name}"
        );
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.code(), "webhook_header_missing");

        let mut h = good.clone();
        h.append(name, good[name].clone());
        let err = verifier.verify(&h, VECTOR_BODY).await.unwrap_err();
        assert!(
            matches!(err, WebhookError::InvalidHeader(n) if n == name),
            "repeated {name}"
        );

        let mut h = good.clone();
        h.insert(name, HeaderValue::from_static(""));
        let err = verifier.verify(&h, VECTOR_BODY).await.unwrap_err();
        assert!(
            matches!(err, WebhookError::InvalidHeader(n) if n == name),
            "empty {name}"
        );

        let mut h = good.clone();
        h.insert(name, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        let err = verifier.verify(&h, VECTOR_BODY).await.unwrap_err();
        assert!(
            matches!(err, WebhookError::InvalidHeader(n) if n == name),
            "non-ASCII {name}"
        );
    }
    let cases: [(&str, &str, &str, &str); 9] = [
        // A dot in the id would let `a.1` + `2.body` pass for `a` + `1.2.body`.
        ("msg.1", &ts, VECTOR_SIGNATURE, "webhook-id"),
        ("msg 1", &ts, VECTOR_SIGNATURE, "webhook-id"),
        (
            VECTOR_ID,
            "-1614265330",
            VECTOR_SIGNATURE,
            "webhook-timestamp",
        ),
        (
            VECTOR_ID,
            "1614265330.0",
            VECTOR_SIGNATURE,
            "webhook-timestamp",
        ),
        (VECTOR_ID, "1e9", VECTOR_SIGNATURE, "webhook-timestamp"),
        (
            VECTOR_ID,
            "99999999999999999999",
            VECTOR_SIGNATURE,
            "webhook-timestamp",
        ),
        (
            VECTOR_ID,
            &ts,
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "webhook-signature",
        ),
        (VECTOR_ID, &ts, "   ", "webhook-signature"),
        (
            VECTOR_ID,
            &ts,
            &format!("{VECTOR_SIGNATURE} nocomma"),
            "webhook-signature",
        ),
    ];
    for (id, timestamp, signature, header) in cases {
        let err = verifier
            .verify(&headers(id, timestamp, signature), VECTOR_BODY)
            .await
            .unwrap_err();
        assert!(
            matches!(err, WebhookError::InvalidHeader(n) if n == header),
            "{id:?} {timestamp:?} {signature:?}: {err:?}"
        );
        assert_eq!(err.code(), "webhook_header_invalid");
    }
    let long_id = "m".repeat(257);
    let err = verifier
        .verify(&headers(&long_id, &ts, VECTOR_SIGNATURE), VECTOR_BODY)
        .await
        .unwrap_err();
    assert!(matches!(err, WebhookError::InvalidHeader("webhook-id")));
    // At most 16 signatures, and a bounded header.
    let many = vec![VECTOR_SIGNATURE; 17].join(" ");
    let err = verifier
        .verify(&headers(VECTOR_ID, &ts, &many), VECTOR_BODY)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        WebhookError::InvalidHeader("webhook-signature")
    ));
    let sixteen = vec![VECTOR_SIGNATURE; 16].join(" ");
    assert!(verifier
        .verify(&headers(VECTOR_ID, &ts, &sixteen), VECTOR_BODY)
        .await
        .is_ok());
    let huge = format!("{VECTOR_SIGNATURE} v9,{}", "A".repeat(4096));
    let err = verifier
        .verify(&headers(VECTOR_ID, &ts, &huge), VECTOR_BODY)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        WebhookError::InvalidHeader("webhook-signature")
    ));
}

#[tokio::test]
async fn rotation_either_key_verifies_and_a_dual_signature_reaches_both() {
    let old = WebhookSecret::generate();
    let new = WebhookSecret::generate();
    let now = OffsetDateTime::now_utc();
    let id = MessageId::generate();
    let both = Verifier::standard([old.clone(), new.clone()])
        .build()
        .unwrap();
    let only_new = Verifier::standard([new.clone()]).build().unwrap();
    let only_old = Verifier::standard([old.clone()]).build().unwrap();
    let by_old = Signer::new(old.clone()).headers(&id, now, b"x");
    let by_new = Signer::new(new.clone()).headers(&id, now, b"x");
    let by_both = Signer::new(new).also(old).headers(&id, now, b"x");
    assert!(both.verify(&by_old, b"x").await.is_ok());
    assert!(both.verify(&by_new, b"x").await.is_ok());
    assert!(only_new.verify(&by_both, b"x").await.is_ok());
    assert!(only_old.verify(&by_both, b"x").await.is_ok());
    assert!(matches!(
        only_new.verify(&by_old, b"x").await,
        Err(WebhookError::InvalidSignature)
    ));
}

#[tokio::test]
async fn a_replayed_id_is_refused_within_the_tolerance_and_a_released_one_is_not() {
    let secret = WebhookSecret::generate();
    let clock = at(1_700_000_000);
    let verifier = Verifier::standard([secret.clone()])
        .clock(clock.clone())
        .replay_guard(MemoryReplayGuard::new())
        .build()
        .unwrap();
    let id = MessageId::generate();
    let signer = Signer::new(secret);
    let first = signer.headers(
        &id,
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        b"x",
    );
    let verified = verifier.verify(&first, b"x").await.unwrap();
    let err = verifier.verify(&first, b"x").await.unwrap_err();
    assert!(matches!(err, WebhookError::Replayed));
    assert_eq!(err.status(), StatusCode::CONFLICT);
    // A retry of the same id, re-signed later: still the same message.
    clock.advance(Duration::from_secs(5));
    let retry = signer.headers(
        &id,
        OffsetDateTime::from_unix_timestamp(1_700_000_005).unwrap(),
        b"x",
    );
    assert!(matches!(
        verifier.verify(&retry, b"x").await,
        Err(WebhookError::Replayed)
    ));
    // Released (the handler failed): the retry gets through, once.
    verifier.release(&verified).await.unwrap();
    assert!(verifier.verify(&retry, b"x").await.is_ok());
    assert!(matches!(
        verifier.verify(&retry, b"x").await,
        Err(WebhookError::Replayed)
    ));
    // Past the window the id is forgotten (its old timestamp is refused anyway).
    clock.advance(Duration::from_secs(301));
    let late = signer.headers(
        &id,
        OffsetDateTime::from_unix_timestamp(1_700_000_306).unwrap(),
        b"x",
    );
    assert!(verifier.verify(&late, b"x").await.is_ok());
    // A bad signature never claims the id.
    let other = MessageId::generate();
    let forged = Signer::new(WebhookSecret::generate()).headers(&other, clock_now(&clock), b"x");
    assert!(matches!(
        verifier.verify(&forged, b"x").await,
        Err(WebhookError::InvalidSignature)
    ));
    let real = signer.headers(&other, clock_now(&clock), b"x");
    assert!(verifier.verify(&real, b"x").await.is_ok());
}

fn clock_now(clock: &ManualClock) -> OffsetDateTime {
    keyward::Clock::now(clock)
}

#[tokio::test]
async fn a_failing_replay_guard_fails_closed() {
    struct Down;
    #[keyward::async_trait]
    impl keyward::webhooks::ReplayGuard for Down {
        async fn claim(
            &self,
            _: &str,
            _: OffsetDateTime,
            _: OffsetDateTime,
        ) -> Result<bool, keyward::webhooks::ReplayError> {
            Err(keyward::webhooks::ReplayError::new("down"))
        }
        async fn release(&self, _: &str) -> Result<(), keyward::webhooks::ReplayError> {
            Err(keyward::webhooks::ReplayError::new("down"))
        }
    }
    let secret = WebhookSecret::generate();
    let verifier = Verifier::standard([secret.clone()])
        .replay_guard(Down)
        .build()
        .unwrap();
    let h = Signer::new(secret).headers(&MessageId::generate(), OffsetDateTime::now_utc(), b"x");
    let err = verifier.verify(&h, b"x").await.unwrap_err();
    assert!(matches!(err, WebhookError::ReplayUnavailable(_)));
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!err.to_response().body().contains("down"));
}

// GitHub's documented test values ("Validating webhook deliveries").
#[tokio::test]
async fn github_documented_vector() {
    let verifier = Verifier::github([SharedSecret::new("It's a Secret to Everybody").unwrap()])
        .build()
        .unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_static(
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
    );
    h.insert(
        "x-github-delivery",
        HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    );
    let verified = verifier.verify(&h, b"Hello, World!").await.unwrap();
    assert_eq!(verified.scheme(), WebhookScheme::GitHub);
    // The delivery id is not signed: not reported.
    assert_eq!(verified.id(), None);
    assert!(matches!(
        verifier.verify(&h, b"Hello, World?").await,
        Err(WebhookError::InvalidSignature)
    ));
    for bad in [
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107ea",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1g",
    ] {
        h.insert("x-hub-signature-256", HeaderValue::from_str(bad).unwrap());
        assert!(
            matches!(
                verifier.verify(&h, b"Hello, World!").await,
                Err(WebhookError::InvalidHeader(_))
            ),
            "{bad}"
        );
    }
    h.remove("x-hub-signature-256");
    assert!(matches!(
        verifier.verify(&h, b"Hello, World!").await,
        Err(WebhookError::MissingHeader("x-hub-signature-256"))
    ));
}

/// Stripe's scheme, computed independently with `hmac` + `sha2`.
fn stripe_header(secret: &str, t: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

#[tokio::test]
async fn stripe_signatures_with_rotation_tolerance_and_bad_input() {
    let clock = at(1_700_000_000);
    let verifier = Verifier::stripe([
        SharedSecret::new("whsec_old").unwrap(),
        SharedSecret::new("whsec_new").unwrap(),
    ])
    .clock(clock.clone())
    .build()
    .unwrap();
    let body = br#"{"id":"evt_1","type":"customer.created"}"#;
    let check = |value: String| {
        let mut h = HeaderMap::new();
        h.insert("stripe-signature", HeaderValue::from_str(&value).unwrap());
        h
    };
    let good = stripe_header("whsec_new", 1_700_000_000, body);
    let verified = verifier.verify(&check(good.clone()), body).await.unwrap();
    assert_eq!(verified.scheme(), WebhookScheme::Stripe);
    assert_eq!(verified.id(), None);
    assert!(verifier
        .verify(
            &check(stripe_header("whsec_old", 1_700_000_000, body)),
            body
        )
        .await
        .is_ok());
    assert!(matches!(
        verifier
            .verify(
                &check(stripe_header("whsec_other", 1_700_000_000, body)),
                body
            )
            .await,
        Err(WebhookError::InvalidSignature)
    ));
    // Several v1 (Stripe's own rotation) and a v0: any v1 may match.
    let sig = good.split_once(",v1=").unwrap().1.to_owned();
    let mixed = format!("t=1700000000,v1={},v1={sig},v0=abc", "0".repeat(64));
    assert!(verifier.verify(&check(mixed), body).await.is_ok());
    assert!(matches!(
        verifier.verify(&check(good.clone()), b"{}").await,
        Err(WebhookError::InvalidSignature)
    ));
    clock.advance(Duration::from_secs(301));
    assert!(matches!(
        verifier.verify(&check(good), body).await,
        Err(WebhookError::TimestampOutOfTolerance)
    ));
    for bad in [
        format!("v1={sig}"),
        format!("t=1700000301,t=1700000301,v1={sig}"),
        format!("t=abc,v1={sig}"),
        "t=1700000301,garbage".to_owned(),
    ] {
        assert!(
            matches!(
                verifier.verify(&check(bad.clone()), body).await,
                Err(WebhookError::InvalidHeader("stripe-signature"))
            ),
            "{bad}"
        );
    }
}

#[cfg(feature = "webhooks-ed25519")]
#[tokio::test]
async fn v1a_ed25519_signatures() {
    use base64::Engine as _;
    use keyward::webhooks::{Ed25519PublicKey, Ed25519SecretKey};

    let key = Ed25519SecretKey::generate();
    let public = key.public_key();
    let verifier = Verifier::standard([public]).build().unwrap();
    let id = MessageId::generate();
    let now = OffsetDateTime::now_utc();
    let h = Signer::new(key.clone()).headers(&id, now, b"body");
    assert!(h["webhook-signature"].to_str().unwrap().starts_with("v1a,"));
    assert!(verifier.verify(&h, b"body").await.is_ok());
    assert!(matches!(
        verifier.verify(&h, b"bodY").await,
        Err(WebhookError::InvalidSignature)
    ));
    let other = Signer::new(Ed25519SecretKey::generate()).headers(&id, now, b"body");
    assert!(matches!(
        verifier.verify(&other, b"body").await,
        Err(WebhookError::InvalidSignature)
    ));
    // A v1a signature made independently (ed25519-dalek) over the spec's content.
    let seed = base64::engine::general_purpose::STANDARD
        .decode(key.expose_secret().strip_prefix("whsk_").unwrap())
        .unwrap();
    let dalek = ed25519_dalek::SigningKey::from_bytes(&seed.try_into().unwrap());
    use ed25519_dalek::Signer as _;
    let ts = now.unix_timestamp();
    let sig = dalek.sign(format!("{id}.{ts}.body").as_bytes());
    let value = format!(
        "v1a,{}",
        base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
    );
    let independent = headers(id.as_str(), &ts.to_string(), &value);
    assert!(verifier.verify(&independent, b"body").await.is_ok());
    // A v1 HMAC signature does not pass for a v1a key, nor v1a for a secret.
    let hmac_only = Verifier::standard([WebhookSecret::generate()])
        .build()
        .unwrap();
    assert!(hmac_only.verify(&h, b"body").await.is_err());
    // Keys round-trip and refuse the wrong prefix.
    assert_eq!(
        Ed25519PublicKey::parse(&key.public_key().to_string()).unwrap(),
        key.public_key()
    );
    assert!(Ed25519PublicKey::parse(&key.expose_secret()).is_err());
}

/// What the handler got: bodies and verified webhooks.
type Seen = Arc<Mutex<Vec<(Bytes, Option<VerifiedWebhook>)>>>;

/// The layer over a handler that records what it got and answers `status`.
fn app(
    verifier: Verifier,
    limit: usize,
    status: StatusCode,
    seen: Seen,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<String>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    let handler = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let seen = seen.clone();
        async move {
            let verified = req.extensions().get::<VerifiedWebhook>().cloned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            seen.lock().unwrap().push((body, verified));
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .status(status)
                    .body(String::from("handled"))
                    .unwrap(),
            )
        }
    });
    VerifyWebhookLayer::new(verifier)
        .body_limit(limit)
        .layer(handler)
}

fn request(headers: &HeaderMap, body: &'static [u8]) -> Request<Full<Bytes>> {
    let mut req = Request::post("/hooks")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    req.headers_mut().extend(headers.clone());
    req
}

#[tokio::test]
async fn the_layer_hands_the_body_on_intact_with_the_verified_webhook() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let service = app(vector_verifier(), 1024, StatusCode::OK, seen.clone());
    let h = headers(VECTOR_ID, &VECTOR_TIMESTAMP.to_string(), VECTOR_SIGNATURE);
    let response = service.oneshot(request(&h, VECTOR_BODY)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].0[..], VECTOR_BODY);
    assert_eq!(seen[0].1.as_ref().unwrap().id(), Some(VECTOR_ID));
}

#[tokio::test]
async fn the_layer_refuses_with_status_and_code_before_the_handler() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let service = app(vector_verifier(), 20, StatusCode::OK, seen.clone());
    let ts = VECTOR_TIMESTAMP.to_string();
    let bad_sig = headers(
        VECTOR_ID,
        &ts,
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
    );
    let cases: Vec<(HeaderMap, &'static [u8], StatusCode, &str)> = vec![
        (
            bad_sig,
            VECTOR_BODY,
            StatusCode::UNAUTHORIZED,
            "webhook_signature_invalid",
        ),
        (
            HeaderMap::new(),
            VECTOR_BODY,
            StatusCode::BAD_REQUEST,
            "webhook_header_missing",
        ),
        (
            headers(VECTOR_ID, &ts, VECTOR_SIGNATURE),
            b"{\"test\": 2432232314} and more than twenty bytes",
            StatusCode::PAYLOAD_TOO_LARGE,
            "webhook_body_too_large",
        ),
    ];
    for (h, body, status, code) in cases {
        let response = service.clone().oneshot(request(&h, body)).await.unwrap();
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(json["error"], code);
    }
    // An announced length over the limit is refused before reading.
    let mut req = request(&headers(VECTOR_ID, &ts, VECTOR_SIGNATURE), VECTOR_BODY);
    req.headers_mut()
        .insert("content-length", HeaderValue::from_static("21"));
    let response = service.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_handler_releases_the_id_and_a_successful_one_keeps_it() {
    let secret = WebhookSecret::generate();
    let verifier = Verifier::standard([secret.clone()])
        .replay_guard(MemoryReplayGuard::new())
        .build()
        .unwrap();
    let h = Signer::new(secret).headers(&MessageId::generate(), OffsetDateTime::now_utc(), b"x");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let failing = app(
        verifier.clone(),
        1024,
        StatusCode::INTERNAL_SERVER_ERROR,
        seen.clone(),
    );
    let ok = app(verifier, 1024, StatusCode::OK, seen.clone());
    let first = failing.oneshot(request(&h, b"x")).await.unwrap();
    assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let retry = ok.clone().oneshot(request(&h, b"x")).await.unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    let replay = ok.oneshot(request(&h, b"x")).await.unwrap();
    assert_eq!(replay.status(), StatusCode::CONFLICT);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn secrets_never_print() {
    let secret = WebhookSecret::generate();
    let shown = secret.expose_secret();
    let encoded = shown.strip_prefix("whsec_").unwrap().to_owned();
    let verifier = Verifier::standard([secret.clone()]).build().unwrap();
    let signer = Signer::new(secret.clone());
    let shared = SharedSecret::new("github-secret-value").unwrap();
    for text in [
        format!("{secret:?}"),
        format!("{verifier:?}"),
        format!("{signer:?}"),
        format!("{shared:?}"),
        format!("{:?}", Verifier::github([shared.clone()]).build().unwrap()),
    ] {
        assert!(!text.contains(&encoded), "{text}");
        assert!(!text.contains("github-secret-value"), "{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Sign then verify; then any one byte changed in the body, the id,
    /// the timestamp or the signature fails.
    #[test]
    fn sign_then_verify_and_any_changed_byte_fails(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        id in "[A-Za-z0-9_-]{1,40}",
        offset in -300i64..=300,
        part in 0usize..4,
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        block_on(async {
            let secret = WebhookSecret::generate();
            let now = 1_700_000_000i64;
            let verifier = Verifier::standard([secret.clone()]).clock(at(now)).build().unwrap();
            let id = MessageId::parse(&id).unwrap();
            let sent = OffsetDateTime::from_unix_timestamp(now + offset).unwrap();
            let h = Signer::new(secret).headers(&id, sent, &body);
            prop_assert!(verifier.verify(&h, &body).await.is_ok());

            let mut h2 = h.clone();
            let mut body2 = body.clone();
            let changed = match part {
                0 if !body2.is_empty() => {
                    let i = position.index(body2.len());
                    body2[i] ^= flip;
                    true
                }
                0 => { body2.push(flip); true }
                _ => {
                    let name = ["webhook-id", "webhook-timestamp", "webhook-signature"][part - 1];
                    let mut value = h2[name].as_bytes().to_vec();
                    let i = position.index(value.len());
                    value[i] ^= flip;
                    match HeaderValue::from_bytes(&value) {
                        Ok(v) => { h2.insert(name, v); true }
                        Err(_) => false,
                    }
                }
            };
            if changed {
                prop_assert!(verifier.verify(&h2, &body2).await.is_err());
            }
            Ok(())
        })?;
    }
}

#[test]
fn tolerance_bounds_are_inclusive() {
    let build = |secs| {
        Verifier::standard([WebhookSecret::generate()])
            .tolerance(Duration::from_secs(secs))
            .build()
    };
    assert!(build(1).is_ok());
    assert!(build(86_400).is_ok());
    assert!(build(86_401).is_err());
    assert!(Verifier::standard([WebhookSecret::generate()])
        .tolerance(Duration::from_millis(999))
        .build()
        .is_err());
}

#[test]
fn names_and_debug_output() {
    assert_eq!(WebhookScheme::Standard.name(), "standard");
    assert_eq!(WebhookScheme::Stripe.name(), "stripe");
    assert_eq!(WebhookScheme::GitHub.name(), "github");
    assert_eq!(
        format!("{:?}", MessageId::parse("msg_1").unwrap()),
        r#"MessageId("msg_1")"#
    );
    assert_eq!(
        format!("{:?}", SharedSecret::new("s").unwrap()),
        "SharedSecret([REDACTED])"
    );
    let builder =
        Verifier::stripe([SharedSecret::new("s").unwrap()]).tolerance(Duration::from_secs(7));
    assert_eq!(
        format!("{builder:?}"),
        "VerifierBuilder { scheme: Stripe, tolerance: 7s, replay_guard: false, .. }"
    );
    let verifier = builder.build().unwrap();
    assert_eq!(verifier.scheme(), WebhookScheme::Stripe);
    assert_eq!(
        format!("{verifier:?}"),
        "Verifier(VerifierBuilder { scheme: Stripe, tolerance: 7s, replay_guard: false, .. })"
    );
}

#[tokio::test]
async fn limits_are_inclusive_at_their_edges() {
    let secret = WebhookSecret::generate();
    let verifier = Verifier::standard([secret.clone()]).build().unwrap();
    // An id of exactly 256 bytes.
    let id = MessageId::parse(&"i".repeat(256)).unwrap();
    let h = Signer::new(secret).headers(&id, OffsetDateTime::now_utc(), b"x");
    assert!(verifier.verify(&h, b"x").await.is_ok());
    // 15 digits parse (then fail the tolerance); 16 do not.
    let sig = h["webhook-signature"].to_str().unwrap();
    let err = verifier
        .verify(&headers(id.as_str(), "100000000000000", sig), b"x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, WebhookError::TimestampOutOfTolerance),
        "{err:?}"
    );
    let err = verifier
        .verify(&headers(id.as_str(), "1000000000000000", sig), b"x")
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        WebhookError::InvalidHeader("webhook-timestamp")
    ));
}

#[tokio::test]
async fn a_stripe_header_holds_at_most_32_items() {
    let verifier = Verifier::stripe([SharedSecret::new("whsec_s").unwrap()])
        .clock(at(1_700_000_000))
        .build()
        .unwrap();
    let good = stripe_header("whsec_s", 1_700_000_000, b"{}");
    let filler = format!(",v0={}", "0".repeat(8));
    let check = |value: String| {
        let mut h = HeaderMap::new();
        h.insert("stripe-signature", HeaderValue::from_str(&value).unwrap());
        h
    };
    // t, v1 and 30 more: 32 items.
    assert!(verifier
        .verify(&check(format!("{good}{}", filler.repeat(30))), b"{}")
        .await
        .is_ok());
    assert!(matches!(
        verifier
            .verify(&check(format!("{good}{}", filler.repeat(31))), b"{}")
            .await,
        Err(WebhookError::InvalidHeader("stripe-signature"))
    ));
}

#[tokio::test]
async fn the_default_body_limit_is_one_mebibyte() {
    use keyward::webhooks::DEFAULT_BODY_LIMIT;
    assert_eq!(DEFAULT_BODY_LIMIT, 1024 * 1024);
    let secret = WebhookSecret::generate();
    let verifier = Verifier::standard([secret.clone()]).build().unwrap();
    let handler = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
    });
    let service = VerifyWebhookLayer::new(verifier).layer(handler);
    let signer = Signer::new(secret);
    for (len, status) in [
        (DEFAULT_BODY_LIMIT, StatusCode::OK),
        (DEFAULT_BODY_LIMIT + 1, StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        let body = Bytes::from(vec![b'a'; len]);
        let h = signer.headers(&MessageId::generate(), OffsetDateTime::now_utc(), &body);
        let mut req = Request::post("/").body(Full::new(body)).unwrap();
        req.headers_mut().extend(h);
        let response = service.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), status, "{len}");
    }
}

/// A service that is never ready: the layer must say so too.
#[derive(Clone, Debug)]
struct Broken;

impl tower::Service<Request<Full<Bytes>>> for Broken {
    type Response = Response<String>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Response<String>, &'static str>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Err("broken"))
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        std::future::ready(Err("broken"))
    }
}

#[tokio::test]
async fn the_layer_delegates_readiness_and_prints_its_parts() {
    let verifier = Verifier::github([SharedSecret::new("s").unwrap()])
        .build()
        .unwrap();
    let layer = VerifyWebhookLayer::new(verifier).body_limit(10);
    let mut service = layer.layer(Broken);
    let ready = std::future::poll_fn(|cx| {
        tower::Service::<Request<Full<Bytes>>>::poll_ready(&mut service, cx)
    })
    .await;
    assert_eq!(ready, Err("broken"));
    let debug = format!("{service:?}");
    assert!(
        debug.starts_with("VerifyWebhook { inner: Broken, verifier: Verifier("),
        "{debug}"
    );
    assert!(debug.ends_with("body_limit: 10 }"), "{debug}");
    let future = tower::Service::call(&mut service, request(&HeaderMap::new(), b"x"));
    assert_eq!(format!("{future:?}"), "ResponseFuture");
    let response = future.await.unwrap();
    // No signature header: 400, from the layer, not the broken service.
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// GitHub signs the body only: a replay with another (unsigned) delivery
/// id, or none, is the same message.
#[tokio::test]
async fn a_github_replay_is_refused_whatever_its_delivery_id() {
    let verifier = Verifier::github([SharedSecret::new("It's a Secret to Everybody").unwrap()])
        .replay_guard(MemoryReplayGuard::new())
        .build()
        .unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_static(
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
    );
    h.insert(
        "x-github-delivery",
        HeaderValue::from_static("72d3162e-cc78"),
    );
    assert!(verifier.verify(&h, b"Hello, World!").await.is_ok());
    for delivery in [Some("attacker-1"), Some("attacker-2"), None] {
        match delivery {
            Some(id) => h.insert("x-github-delivery", HeaderValue::from_static(id)),
            None => h.remove("x-github-delivery"),
        };
        assert!(
            matches!(
                verifier.verify(&h, b"Hello, World!").await,
                Err(WebhookError::Replayed)
            ),
            "{delivery:?}"
        );
    }
}

/// During a rotation Stripe sends a signature per secret: either one alone
/// is the same message, refused as a replay.
#[tokio::test]
async fn a_stripe_replay_is_refused_whichever_signature_it_keeps() {
    let verifier = Verifier::stripe([
        SharedSecret::new("whsec_a").unwrap(),
        SharedSecret::new("whsec_b").unwrap(),
    ])
    .clock(at(1_700_000_000))
    .replay_guard(MemoryReplayGuard::new())
    .build()
    .unwrap();
    let body = br#"{"id":"evt_1"}"#;
    let a = stripe_header("whsec_a", 1_700_000_000, body);
    let b = stripe_header("whsec_b", 1_700_000_000, body);
    let sig_b = b.split_once(",v1=").unwrap().1;
    let check = |value: String| {
        let mut h = HeaderMap::new();
        h.insert("stripe-signature", HeaderValue::from_str(&value).unwrap());
        h
    };
    assert!(verifier
        .verify(&check(format!("{a},v1={sig_b}")), body)
        .await
        .is_ok());
    assert!(matches!(
        verifier.verify(&check(a), body).await,
        Err(WebhookError::Replayed)
    ));
    assert!(matches!(
        verifier.verify(&check(b), body).await,
        Err(WebhookError::Replayed)
    ));
    // Another body at the same instant is another message.
    let other = stripe_header("whsec_a", 1_700_000_000, b"{}");
    assert!(verifier.verify(&check(other), b"{}").await.is_ok());
}

/// Verifiers of two senders sharing one guard, each with its namespace:
/// one sender's ids do not block the other's.
#[tokio::test]
async fn namespaces_keep_senders_apart_in_a_shared_guard() {
    let guard: Arc<dyn keyward::webhooks::ReplayGuard> = Arc::new(MemoryReplayGuard::new());
    let (one, two) = (WebhookSecret::generate(), WebhookSecret::generate());
    let first = Verifier::standard([one.clone()])
        .shared_replay_guard(guard.clone())
        .replay_namespace("sender-1")
        .build()
        .unwrap();
    let second = Verifier::standard([two.clone()])
        .shared_replay_guard(guard.clone())
        .replay_namespace("sender-2")
        .build()
        .unwrap();
    let same_id = MessageId::parse("evt_42").unwrap();
    let now = OffsetDateTime::now_utc();
    let by_one = Signer::new(one).headers(&same_id, now, b"x");
    let by_two = Signer::new(two).headers(&same_id, now, b"x");
    assert!(first.verify(&by_one, b"x").await.is_ok());
    assert!(second.verify(&by_two, b"x").await.is_ok());
    assert!(matches!(
        first.verify(&by_one, b"x").await,
        Err(WebhookError::Replayed)
    ));
    // Without namespaces they would collide.
    let shared = |key: WebhookSecret| {
        Verifier::standard([key])
            .shared_replay_guard(guard.clone())
            .build()
            .unwrap()
    };
    let (k1, k2) = (WebhookSecret::generate(), WebhookSecret::generate());
    let id = MessageId::parse("evt_43").unwrap();
    assert!(shared(k1.clone())
        .verify(&Signer::new(k1).headers(&id, now, b"x"), b"x")
        .await
        .is_ok());
    assert!(matches!(
        shared(k2.clone())
            .verify(&Signer::new(k2).headers(&id, now, b"x"), b"x")
            .await,
        Err(WebhookError::Replayed)
    ));
}

/// A body that never ends: refused on its headers, never read.
#[tokio::test]
async fn headers_are_checked_before_the_body_is_read() {
    let handler = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
    });
    let service = VerifyWebhookLayer::new(vector_verifier()).layer(handler);
    let req = Request::post("/").body(Endless).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), service.oneshot(req))
        .await
        .expect("refused without reading the body")
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // And a stale timestamp, too.
    let h = headers(VECTOR_ID, "1000000000", VECTOR_SIGNATURE);
    let mut req = Request::post("/").body(Endless).unwrap();
    req.headers_mut().extend(h);
    let service = VerifyWebhookLayer::new(vector_verifier()).layer(tower::service_fn(
        |_req: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
        },
    ));
    let response = tokio::time::timeout(Duration::from_secs(5), service.oneshot(req))
        .await
        .expect("refused without reading the body")
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// A body that never yields a frame.
struct Endless;

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }
}
