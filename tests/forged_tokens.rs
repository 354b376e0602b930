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
use keyward::testing::Fault;
use keyward::testing::{FaultyStore, Op};
use keyward::{KeyKind, Keyring, ManualClock, MemoryStore, NewKey, TokenKey, TokenKind};
use tower::{ServiceBuilder, ServiceExt};

const FORGED: usize = 20_000;

/// A `pk` keyring on `store` and a manual clock (the failure budget does not
/// refill while the test runs), tagging tokens when `key` is set.
fn keyring(store: FaultyStore, key: Option<TokenKey>) -> Keyring {
    keyring_with_clock(store, key, ManualClock::new(common::start()))
}

fn keyring_with_clock(store: FaultyStore, key: Option<TokenKey>, clock: ManualClock) -> Keyring {
    let mut kind = KeyKind::new("pk", common::player_os()).unwrap();
    if let Some(key) = key {
        kind = kind.token_key(key);
    }
    Keyring::builder()
        .store(store)
        .kind(kind)
        .clock(clock)
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

/// The status and error code of one request with `X-Api-Key: token` from
/// `peer`.
async fn one(layer: &AuthLayer, peer: &str, token: &str) -> (StatusCode, String) {
    let mut req = Request::get("/")
        .header("x-api-key", token)
        .body(String::new())
        .unwrap();
    req.extensions_mut()
        .insert(SocketAddr::new(peer.parse().unwrap(), 40_000));
    let res = ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        })
        .oneshot(req)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap_or_default();
    let code = body["error"].as_str().unwrap_or_default().to_owned();
    (res.status(), code)
}

/// Requests sent together all pass the budget check before any of them
/// fails; each failure is still charged, so the burst buys a lockout as long
/// as the budget would take to pay for it, and over time the client gets no
/// more lookups than the budget's rate.
#[tokio::test]
async fn a_burst_of_concurrent_forgeries_buys_a_proportional_lockout() {
    const BURST: usize = 200;
    let store = FaultyStore::new(MemoryStore::new());
    // Lookups take a while, so the whole burst is in flight at once.
    store.set_fault_on(
        Op::FindByHash,
        Fault::Delay(std::time::Duration::from_millis(50)),
    );
    let clock = ManualClock::new(common::start());
    let layer = AuthLayer::new(keyring_with_clock(store.clone(), None, clock.clone()));
    let budget = AuthLayer::DEFAULT_FAILURE_BUDGET;
    let interval = budget.emission_interval().as_secs() as i64;
    let tokens = forge(&TokenKind::new("pk").unwrap());
    let mut burst = tokio::task::JoinSet::new();
    for token in &tokens[..BURST] {
        let (layer, token) = (layer.clone(), token.clone());
        burst.spawn(async move { one(&layer, "203.0.113.9", &token).await });
    }
    let answers = burst.join_all().await;
    assert!(answers
        .iter()
        .all(|(status, _)| *status == StatusCode::UNAUTHORIZED));
    assert_eq!(
        store.calls(Op::FindByHash),
        BURST,
        "the burst got through once"
    );
    store.set_fault(Fault::None);

    // A budget's full refill later, the client is still paying for its burst.
    clock.advance(std::time::Duration::from_secs(
        (interval * i64::from(budget.count())).unsigned_abs(),
    ));
    let (status, code) = one(&layer, "203.0.113.9", &tokens[BURST]).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    // Once the burst is paid for (one interval per failure), it may fail again.
    clock.advance(std::time::Duration::from_secs(
        (interval * BURST as i64).unsigned_abs(),
    ));
    let (status, _) = one(&layer, "203.0.113.9", &tokens[BURST + 1]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(store.calls(Op::FindByHash), BURST + 1);
}

/// Someone sending forged tokens from an address others share (a NAT, a
/// proxy without `trust_forwarded_for`) does not lock out their valid keys
/// when tokens are tagged: a token whose tag verifies skips the budget
/// check (its failures still count); anything else from that address waits.
#[tokio::test]
async fn tagged_tokens_are_not_held_back_by_a_neighbours_forgeries() {
    let key = TokenKey::new(1, b"the server's token key, 32 bytes".to_vec()).unwrap();
    let store = FaultyStore::new(MemoryStore::new());
    let keyring = keyring(store.clone(), Some(key.clone()));
    let layer = AuthLayer::new(keyring.clone());
    let valid = keyring
        .issue(NewKey::new("pk", "prop_1", "shared office"))
        .await
        .unwrap();
    let revoked = keyring
        .issue(NewKey::new("pk", "prop_1", "old"))
        .await
        .unwrap();
    keyring.revoke(revoked.info.id()).await.unwrap();
    // Untagged, well formed, unknown: what a forger without the key sends.
    let forger = KeyKind::new("pk", common::player_os())
        .unwrap()
        .token_key(TokenKey::new(1, vec![3; 32]).unwrap());
    let budget = AuthLayer::DEFAULT_FAILURE_BUDGET.count() as usize;
    for _ in 0..budget {
        let forged = forger.token_kind().generate();
        let (status, _) = one(&layer, "192.0.2.50", forged.expose_secret()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let forged = forger.token_kind().generate();
    let (status, _) = one(&layer, "192.0.2.50", forged.expose_secret()).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the address is over budget"
    );

    // The neighbour's valid key still works, from the same address.
    let (status, _) = one(&layer, "192.0.2.50", valid.token.expose_secret()).await;
    assert_eq!(status, StatusCode::OK);
    // A real but revoked token is looked up and refused, and counts.
    let lookups = store.calls(Op::FindByHash);
    let (status, code) = one(&layer, "192.0.2.50", revoked.token.expose_secret()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );
    assert_eq!(store.calls(Op::FindByHash), lookups + 1);
    // Garbage and forgeries still wait, and never cost a lookup.
    for token in ["pk_garbage", forged.expose_secret()] {
        let (status, _) = one(&layer, "192.0.2.50", token).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(store.calls(Op::FindByHash), lookups + 1);
}
