//! The bar for forged tokens: 20,000 distinct tokens that are well formed
//! (right prefix, length, alphabet and public CRC32 checksum) but were never
//! issued, sent through `AuthLayer` over a store that counts its lookups.
//!
//! * With a token key, the keyed tag refuses every one offline: no lookup at
//!   all, with or without the failure throttle.
//! * Without one, each forged token would cost a lookup; the failure
//!   throttle caps them at the client's failure budget.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Response, StatusCode};
use keyward::http::AuthLayer;
use keyward::testing::{FaultyStore, Op};
use keyward::{KeyKind, Keyring, ManualClock, MemoryStore, TokenKey, TokenKind};
use tower::{ServiceBuilder, ServiceExt};

const FORGED: usize = 20_000;

/// A `pk` keyring on `store` and a manual clock (the failure budget does not
/// refill while the test runs), tagging tokens when `key` is set.
fn keyring(store: FaultyStore, key: Option<TokenKey>) -> Keyring {
    let mut kind = KeyKind::new("pk", common::player_os()).unwrap();
    if let Some(key) = key {
        kind = kind.token_key(key);
    }
    Keyring::builder()
        .store(store)
        .kind(kind)
        .clock(ManualClock::new(common::start()))
        .build()
        .unwrap()
}

/// Sends every token from one client; returns how many answers had each
/// status (401, 429).
async fn flood(layer: AuthLayer, tokens: &[String]) -> (usize, usize) {
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::from("handler reached")))
        });
    let peer: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let (mut unauthorized, mut throttled) = (0, 0);
    for token in tokens {
        let mut req = Request::get("/")
            .header("x-api-key", token.as_str())
            .body(String::new())
            .unwrap();
        req.extensions_mut().insert(peer);
        let res = service.clone().oneshot(req).await.unwrap();
        match res.status() {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                // The client's failures, not a key's request quota.
                let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
                assert_eq!(body["error"], "rate_limited");
                assert!(
                    body["message"]
                        .as_str()
                        .unwrap()
                        .starts_with("too many failed authentications from this client"),
                    "{body}"
                );
                assert!(res.headers().contains_key("retry-after"));
                throttled += 1
            }
            other => panic!("a forged token got {other}: {}", res.body()),
        }
    }
    (unauthorized, throttled)
}

/// `FORGED` distinct tokens of `kind`: each passes the public checksum.
fn forge(kind: &TokenKind) -> Vec<String> {
    let tokens: std::collections::HashSet<String> = (0..FORGED)
        .map(|_| kind.generate().expose_secret().to_owned())
        .collect();
    assert_eq!(tokens.len(), FORGED, "distinct");
    tokens.into_iter().collect()
}

#[tokio::test]
async fn with_a_token_key_forged_tokens_cost_no_lookup() {
    let ours = TokenKey::new(1, b"the server's token key, 32 bytes".to_vec()).unwrap();
    // The forger knows the format, even that it is tagged, but not the key.
    let guess = TokenKey::new(1, b"a forger's guess at the token key".to_vec()).unwrap();
    let tokens = forge(&TokenKind::new("pk").unwrap().key(guess));
    let format = keyring(FaultyStore::new(MemoryStore::new()), Some(ours.clone()))
        .format()
        .clone();
    assert!(tokens
        .iter()
        .all(|t| matches!(format.parse(t), Err(keyward::TokenError::BadTag))));

    // The throttle off: the tag alone keeps them from the store.
    let store = FaultyStore::new(MemoryStore::new());
    let layer =
        AuthLayer::new(keyring(store.clone(), Some(ours.clone()))).without_failure_throttle();
    assert_eq!(flood(layer, &tokens).await, (FORGED, 0));
    assert_eq!(store.calls(Op::FindByHash), 0);

    // The default layer: the same, and the client is throttled too.
    let store = FaultyStore::new(MemoryStore::new());
    let layer = AuthLayer::new(keyring(store.clone(), Some(ours)));
    let budget = layer.current_failure_budget().unwrap().count() as usize;
    let (unauthorized, throttled) = flood(layer, &tokens).await;
    assert_eq!((unauthorized, throttled), (budget, FORGED - budget));
    assert_eq!(store.calls(Op::FindByHash), 0);
}

#[tokio::test]
async fn without_a_token_key_lookups_stop_at_the_failure_budget() {
    let tokens = forge(&TokenKind::new("pk").unwrap());
    let store = FaultyStore::new(MemoryStore::new());
    let layer = AuthLayer::new(keyring(store.clone(), None));
    let budget = layer.current_failure_budget().unwrap().count() as usize;
    assert_eq!(budget, AuthLayer::DEFAULT_FAILURE_BUDGET.count() as usize);
    let (unauthorized, throttled) = flood(layer, &tokens).await;
    assert_eq!((unauthorized, throttled), (budget, FORGED - budget));
    let lookups = store.calls(Op::FindByHash);
    assert!(
        lookups <= budget,
        "{lookups} lookups for a budget of {budget}"
    );
    assert_eq!(lookups, budget, "each admitted forgery cost one lookup");

    // Without the throttle, every forgery is a lookup: what the budget saves.
    let store = FaultyStore::new(MemoryStore::new());
    let layer = AuthLayer::new(keyring(store.clone(), None)).without_failure_throttle();
    assert_eq!(flood(layer, &tokens).await, (FORGED, 0));
    assert_eq!(store.calls(Op::FindByHash), FORGED);
}
