//! `Verifier::verify` for the three schemes (Standard Webhooks, Stripe,
//! GitHub) on hostile headers and bodies, through the public API only. Each
//! verifier has a fixed key, a `ManualClock` at a fixed instant and the
//! default 5-minute tolerance. The fixture checks that one valid message of
//! each scheme verifies before any input runs.
//!
//! The input's first byte picks the scheme and a mode:
//!
//! * **text**: the rest is split at `\n` into header values and a body
//!   (for Standard: id, timestamp, signature, body; Stripe: signature,
//!   body; GitHub: signature, delivery id, body). Values that are not valid
//!   header values leave the header out (so absence is also tried). It must
//!   never panic, and an accepted message must carry, among its
//!   signatures, exactly the one the fixed key makes for its (id,
//!   timestamp, body), with a timestamp within the tolerance and a valid
//!   id: the fuzzer has no key, so anything else accepted is a forgery.
//! * **mutation**: a valid message of the scheme, one header value or the
//!   body changed as the input says (a byte replaced, inserted or removed,
//!   a signature appended or prepended, whitespace added). The same oracle
//!   applies to the result; and the untouched message must still verify
//!   (so the target fails if verification breaks).
#![no_main]

mod common;

use std::sync::OnceLock;

use common::Fixture;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use keyward::webhooks::{MessageId, SharedSecret, Signer, Verifier, WebhookSecret};
use keyward::ManualClock;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

const NOW: i64 = 1_800_000_000;
const TOLERANCE: i64 = 300;
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SHARED_SECRET: &str = "fuzz-shared-secret";

struct State {
    standard: Verifier,
    stripe: Verifier,
    github: Verifier,
    signer: Signer,
}

static STATE: OnceLock<Fixture<State>> = OnceLock::new();

fn state() -> &'static Fixture<State> {
    common::fixture(&STATE, |runtime| {
        let clock = ManualClock::new(OffsetDateTime::from_unix_timestamp(NOW).unwrap());
        let secret = WebhookSecret::parse(STANDARD_SECRET).unwrap();
        let shared = || SharedSecret::new(SHARED_SECRET).unwrap();
        let state = State {
            standard: Verifier::standard([secret.clone()]).clock(clock.clone()).build().unwrap(),
            stripe: Verifier::stripe([shared()]).clock(clock.clone()).build().unwrap(),
            github: Verifier::github([shared()]).clock(clock).build().unwrap(),
            signer: Signer::new(secret),
        };
        for scheme in 0..3 {
            let (headers, body) = valid(&state, scheme);
            assert!(runtime.block_on(verifier(&state, scheme).verify(&headers, &body)).is_ok());
        }
        state
    })
}

fn verifier(state: &State, scheme: u8) -> &Verifier {
    match scheme {
        0 => &state.standard,
        1 => &state.stripe,
        _ => &state.github,
    }
}

fn hex_hmac(content: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SHARED_SECRET.as_bytes()).unwrap();
    mac.update(content);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn valid(state: &State, scheme: u8) -> (HeaderMap, Vec<u8>) {
    let body = br#"{"type":"key.revoked","data":{"key_id":"key_1"}}"#.to_vec();
    let mut headers = HeaderMap::new();
    match scheme {
        0 => {
            let id = MessageId::parse("msg_fuzz").unwrap();
            let at = OffsetDateTime::from_unix_timestamp(NOW - 10).unwrap();
            headers = state.signer.headers(&id, at, &body);
        }
        1 => {
            let t = NOW - 10;
            let mut content = format!("{t}.").into_bytes();
            content.extend_from_slice(&body);
            let value = format!("t={t},v1={}", hex_hmac(&content));
            headers.insert("stripe-signature", HeaderValue::from_str(&value).unwrap());
        }
        _ => {
            let value = format!("sha256={}", hex_hmac(&body));
            headers.insert("x-hub-signature-256", HeaderValue::from_str(&value).unwrap());
            headers.insert("x-github-delivery", HeaderValue::from_static("72d3162e-cc78"));
        }
    }
    (headers, body)
}

/// The header names of a scheme, in the order the text mode fills them.
fn names(scheme: u8) -> &'static [&'static str] {
    match scheme {
        0 => &["webhook-id", "webhook-timestamp", "webhook-signature"],
        1 => &["stripe-signature"],
        _ => &["x-hub-signature-256", "x-github-delivery"],
    }
}

/// The oracle: could an accepted message have been made without the key?
fn assert_authentic(state: &State, scheme: u8, headers: &HeaderMap, body: &[u8]) {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    match scheme {
        0 => {
            let id = MessageId::parse(value("webhook-id")).expect("accepted an invalid id");
            let ts: i64 = value("webhook-timestamp").parse().expect("accepted a bad timestamp");
            assert!((ts - NOW).abs() <= TOLERANCE, "accepted a stale timestamp");
            let expected = state.signer.sign(&id, ts, body);
            assert!(
                value("webhook-signature").split(' ').any(|s| s == expected),
                "accepted without the key's signature"
            );
        }
        1 => {
            let header = value("stripe-signature");
            let t = header
                .split(',')
                .find_map(|item| item.strip_prefix("t="))
                .expect("accepted without t");
            let ts: i64 = t.parse().expect("accepted a bad t");
            assert!((ts - NOW).abs() <= TOLERANCE, "accepted a stale t");
            let mut content = format!("{ts}.").into_bytes();
            content.extend_from_slice(body);
            let expected = format!("v1={}", hex_hmac(&content));
            assert!(
                header.split(',').any(|item| item.eq_ignore_ascii_case(&expected)),
                "accepted without the key's signature"
            );
        }
        _ => {
            let expected = format!("sha256={}", hex_hmac(body));
            assert!(
                value("x-hub-signature-256").eq_ignore_ascii_case(&expected),
                "accepted without the key's signature"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let fixture = state();
    let scheme = selector % 3;
    let verifier = verifier(fixture, scheme);
    let (headers, body) = if selector & 0x80 == 0 {
        // Text mode.
        let mut parts = rest.splitn(names(scheme).len() + 1, |&b| b == b'\n');
        let mut headers = HeaderMap::new();
        for name in names(scheme) {
            if let Some(Ok(value)) = parts.next().map(HeaderValue::from_bytes) {
                headers.append(*name, value);
            }
        }
        (headers, parts.next().unwrap_or_default().to_vec())
    } else {
        let (valid_headers, valid_body) = valid(fixture, scheme);
        // The untouched message still verifies.
        assert!(fixture
            .runtime
            .block_on(verifier.verify(&valid_headers, &valid_body))
            .is_ok());
        let (mut headers, mut body) = (valid_headers, valid_body);
        let [what, how, at, byte, ..] = rest else {
            return;
        };
        let extra = &rest[4..];
        let name = names(scheme)[usize::from(*what) % names(scheme).len()];
        let mut target = if what & 0x80 == 0 {
            headers.get(name).map(|v| v.as_bytes().to_vec()).unwrap_or_default()
        } else {
            std::mem::take(&mut body)
        };
        let i = usize::from(*at) % (target.len() + 1);
        match how % 6 {
            0 if i < target.len() => target[i] = *byte,
            1 => target.insert(i, *byte),
            2 if i < target.len() => {
                target.remove(i);
            }
            3 => {
                target.push(b' ');
                target.extend_from_slice(extra);
            }
            4 => {
                let mut front = extra.to_vec();
                front.push(b' ');
                front.extend_from_slice(&target);
                target = front;
            }
            _ => target.extend_from_slice(extra),
        }
        if what & 0x80 == 0 {
            match HeaderValue::from_bytes(&target) {
                Ok(value) => {
                    headers.insert(name, value);
                }
                Err(_) => {
                    headers.remove(name);
                }
            }
        } else {
            body = target;
        }
        (headers, body)
    };
    if fixture.runtime.block_on(verifier.verify(&headers, &body)).is_ok() {
        assert_authentic(fixture, scheme, &headers, &body);
    }
});
