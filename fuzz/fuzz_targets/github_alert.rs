//! `keyward::leaks::GithubAlerts` on hostile alerts, through the public
//! API: a keyring (memory store) with two `pk` keys, GitHub's key list from
//! a fixed fetcher with one test key (`k1`), and the service with a 64 KiB
//! body limit and at most 16 tokens an alert. The fixture checks that a
//! valid alert about a live key answers `true_positive` before any input
//! runs.
//!
//! The input's first byte picks a mode:
//!
//! * **signed body**: the rest is the body, correctly signed by `k1`. The
//!   answer must be 200 exactly when a reference parser (serde_json into
//!   `Value`) sees an array of at most 16 objects each with a string
//!   `token` and `type`; 413 when it sees more; 400 `invalid_alert`
//!   otherwise;
//! * **seeded alert**: the rest is split at `\x00` into matches; a piece's
//!   first byte picks its token (one of the fixture's, a well-formed
//!   stranger, a forged look-alike, or the piece's bytes as text), the
//!   rest becomes its `type` and `url`. The alert is signed and must be
//!   answered 200;
//! * **hostile headers**: the rest is split at `\x00` into a key
//!   identifier, a signature and a body, sent as they are (a value that is
//!   not a header value leaves the header out). The fuzzer has no key, so
//!   the answer is never 200 (400, 401 or 413).
//!
//! On every 200 the feedback has one entry per match, in order:
//! `token_hash` is the hex SHA-256 of its token, `token_type` its type,
//! and `label` is `true_positive` exactly for the fixture's tokens. No
//! response ever contains one of the fixture's tokens.
#![no_main]

mod common;

use std::sync::OnceLock;

use base64::Engine as _;
use common::Fixture;
use keyward::leaks::{GithubAlerts, GithubKeyFetcher, KeyFetchError};
use keyward::{KeyKind, Keyring, MemoryStore, NewKey, ScopeCatalog, TokenKind};
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use sha2::Digest as _;
use tower::ServiceExt as _;

const MAX_TOKENS: usize = 16;

struct Keys(Vec<u8>);

#[keyward::async_trait]
impl GithubKeyFetcher for Keys {
    async fn fetch(&self) -> Result<Vec<u8>, KeyFetchError> {
        Ok(self.0.clone())
    }
}

struct State {
    alerts: GithubAlerts,
    github: SigningKey,
    tokens: Vec<String>,
}

static STATE: OnceLock<Fixture<State>> = OnceLock::new();

fn state() -> &'static Fixture<State> {
    common::fixture(&STATE, |runtime| {
        let github = SigningKey::from_slice(&[7; 32]).unwrap();
        let pem = github.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        let list = serde_json::json!({"public_keys": [
            {"key_identifier": "k1", "key": pem, "is_current": true}
        ]});
        let keyring = Keyring::builder()
            .store(MemoryStore::new())
            .kind(KeyKind::new("pk", ScopeCatalog::builder().build().unwrap()).unwrap())
            .build()
            .unwrap();
        let tokens = runtime.block_on(async {
            let mut tokens = Vec::new();
            for name in ["a", "b"] {
                let issued = keyring.issue(NewKey::new("pk", "org_1", name)).await.unwrap();
                tokens.push(issued.token.expose_secret().to_owned());
            }
            tokens
        });
        let alerts = GithubAlerts::builder(keyring)
            .fetcher(Keys(list.to_string().into_bytes()))
            .body_limit(64 * 1024)
            .max_tokens(MAX_TOKENS)
            .build()
            .unwrap();
        let state = State { alerts, github, tokens };
        let body = serde_json::json!([{"token": state.tokens[0], "type": "t"}]).to_string();
        let (status, feedback) = runtime.block_on(send(&state, signed(&state, body.clone()), &body));
        assert_eq!(status, 200);
        assert_eq!(feedback[0]["label"], "true_positive");
        state
    })
}

fn signed(state: &State, body: String) -> http::Request<String> {
    let sig: Signature = state.github.sign(body.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(sig.to_der());
    http::Request::post("/")
        .header("github-public-key-identifier", "k1")
        .header("github-public-key-signature", sig)
        .body(body)
        .unwrap()
}

/// Sends `req` (whose body is `body`) and checks the feedback of a 200.
async fn send(state: &State, req: http::Request<String>, body: &str) -> (u16, serde_json::Value) {
    let response = state.alerts.clone().oneshot(req).await.unwrap();
    let status = response.status().as_u16();
    let text = response.body();
    for token in &state.tokens {
        assert!(!text.contains(token.as_str()), "a token in a response");
    }
    let value: serde_json::Value = serde_json::from_str(text).expect("JSON answers");
    if status == 200 {
        let matches: Vec<serde_json::Value> = serde_json::from_str(body).unwrap();
        let entries = value.as_array().expect("an array of feedback");
        assert_eq!(entries.len(), matches.len());
        for (entry, found) in entries.iter().zip(&matches) {
            let token = found["token"].as_str().unwrap();
            let hash: String = sha2::Sha256::digest(token.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let ours = state.tokens.iter().any(|t| t == token);
            let label = if ours { "true_positive" } else { "false_positive" };
            assert_eq!(
                entry,
                &serde_json::json!({"token_hash": hash, "token_type": found["type"], "label": label})
            );
        }
    }
    (status, value)
}

/// A match as the partner program documents it: a string `token` and
/// `type`, and a `url` that may be absent or null.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Reference {
    token: String,
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
}

/// What the reference says of a body: `Some(n)` for an array of `n`
/// matches, `None` for anything else.
fn matches(body: &[u8]) -> Option<usize> {
    serde_json::from_slice::<Vec<Reference>>(body).ok().map(|m| m.len())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(body) = std::str::from_utf8(rest) else {
                return;
            };
            let (status, value) =
                state.runtime.block_on(send(state, signed(state, body.to_owned()), body));
            let expected = match matches(rest) {
                Some(n) if n <= MAX_TOKENS => 200,
                Some(_) => 413,
                None => 400,
            };
            assert_eq!(status, expected, "{value}");
            if status != 200 {
                let code = if status == 413 { "too_many_tokens" } else { "invalid_alert" };
                assert_eq!(value["error"], code);
            }
        }
        1 => {
            let mut items = Vec::new();
            for piece in rest.split(|b| *b == 0).take(MAX_TOKENS) {
                let (pick, tail) = piece.split_first().map_or((0, &[][..]), |(p, t)| (*p, t));
                let token = match pick % 4 {
                    0 => state.tokens[usize::from(pick / 4) % 2].clone(),
                    1 => TokenKind::new("pk").unwrap().generate().expose_secret().to_owned(),
                    2 => {
                        let mut forged = state.tokens[0].clone().into_bytes();
                        let at = 3 + usize::from(pick) % 36;
                        forged[at] = if forged[at] == b'a' { b'b' } else { b'a' };
                        String::from_utf8(forged).unwrap()
                    }
                    _ => text(tail),
                };
                let (kind, url) = tail.split_at(tail.len() / 2);
                items.push(serde_json::json!({"token": token, "type": text(kind), "url": text(url)}));
            }
            let body = serde_json::Value::from(items).to_string();
            let (status, value) = state.runtime.block_on(send(state, signed(state, body.clone()), &body));
            assert_eq!(status, 200, "{value}");
        }
        _ => {
            let mut parts = rest.splitn(3, |b| *b == 0);
            let id = parts.next().unwrap_or_default();
            let sig = parts.next().unwrap_or_default();
            let body = text(parts.next().unwrap_or_default());
            let mut req = http::Request::post("/").body(body.clone()).unwrap();
            for (name, value) in [("github-public-key-identifier", id), ("github-public-key-signature", sig)] {
                if let Ok(value) = http::HeaderValue::from_bytes(value) {
                    req.headers_mut().insert(name, value);
                }
            }
            let (status, value) = state.runtime.block_on(send(state, req, &body));
            assert!(matches!(status, 400 | 401 | 413), "{status} {value}");
        }
    }
});
