//! What the benchmarks share: keyrings of 100 000 keys, and the fair
//! tower-http peer.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;

use keyward::{
    KeyKind, Keyring, MemoryStore, NewKey, RateLimit, ScopeCatalog, ScopeStatus, TokenHasher,
    TokenKey,
};
use sha2::{Digest, Sha256};

pub const KEYS: usize = 100_000;

pub fn token_key() -> TokenKey {
    TokenKey::new(1, vec![9; 32]).unwrap()
}

pub fn keyring(hasher: TokenHasher) -> Keyring {
    keyring_with(hasher, None)
}

pub fn keyring_with(hasher: TokenHasher, token_key: Option<TokenKey>) -> Keyring {
    let catalog = ScopeCatalog::builder()
        .scope("read", "", ScopeStatus::Enforced)
        .build()
        .unwrap();
    let mut kind = KeyKind::new("pk", catalog)
        .unwrap()
        .default_scopes(["read"])
        .unwrap();
    if let Some(key) = token_key {
        kind = kind.token_key(key);
    }
    Keyring::builder()
        .store(MemoryStore::new())
        .kind(kind)
        .hasher(hasher)
        .build()
        .unwrap()
}

/// Issues [`KEYS`] keys with scope `read` over 1,000 tenants; returns their
/// tokens.
pub fn issue_keys(rt: &tokio::runtime::Runtime, keyring: &Keyring) -> Vec<String> {
    rt.block_on(async {
        let mut tokens = Vec::with_capacity(KEYS);
        for i in 0..KEYS {
            let issued = keyring
                .issue(
                    // Unlimited, as `scripts/load.sh`'s key: the layer rows
                    // measure authentication, not a rate limit's 429s.
                    NewKey::new("pk", &format!("t{}", i % 1000), "bench")
                        .rate_limit(RateLimit::Unlimited),
                )
                .await
                .unwrap();
            tokens.push(issued.token.expose_secret().to_owned());
        }
        tokens
    })
}

/// What a team would write with tower-http instead of keyward: hashed keys
/// in a map (behind a lock, so keys can be revoked), checked per request.
#[cfg(feature = "http")]
#[derive(Clone)]
pub struct StorePeer {
    keys: std::sync::Arc<std::sync::RwLock<HashMap<[u8; 32], std::sync::Arc<PeerRecord>>>>,
}

#[cfg(feature = "http")]
pub struct PeerRecord {
    revoked: bool,
    expires_at: Option<std::time::SystemTime>,
}

#[cfg(feature = "http")]
impl StorePeer {
    pub fn new(hashes: impl Iterator<Item = [u8; 32]>) -> Self {
        let far = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400 * 365);
        let keys = hashes
            .map(|h| {
                let record = PeerRecord {
                    revoked: false,
                    expires_at: Some(far),
                };
                (h, std::sync::Arc::new(record))
            })
            .collect();
        StorePeer {
            keys: std::sync::Arc::new(std::sync::RwLock::new(keys)),
        }
    }
}

#[cfg(feature = "http")]
impl<B> tower_http::auth::AsyncAuthorizeRequest<B> for StorePeer {
    type RequestBody = B;
    type ResponseBody = String;
    type Future = std::future::Ready<Result<http::Request<B>, http::Response<String>>>;

    fn authorize(&mut self, mut req: http::Request<B>) -> Self::Future {
        let now = std::time::SystemTime::now();
        let found = req
            .headers()
            .get("x-api-key")
            .map(|v| <[u8; 32]>::from(Sha256::digest(v.as_bytes())))
            .and_then(|hash| self.keys.read().unwrap().get(&hash).cloned())
            .filter(|r| !r.revoked && r.expires_at.is_none_or(|at| now < at));
        std::future::ready(match found {
            Some(record) => {
                req.extensions_mut().insert(record);
                Ok(req)
            }
            None => {
                let mut res = http::Response::new(String::new());
                *res.status_mut() = http::StatusCode::UNAUTHORIZED;
                Err(res)
            }
        })
    }
}

/// The token of a key whose rate limit is checked but never reached
/// (`u32::MAX` a minute): the default path of the layers.
pub fn issue_limited(rt: &tokio::runtime::Runtime, keyring: &Keyring) -> String {
    let new = NewKey::new("pk", "t_limited", "bench")
        .rate_limit(RateLimit::per_minute(u32::MAX).unwrap());
    let issued = rt.block_on(keyring.issue(new)).unwrap();
    issued.token.expose_secret().to_owned()
}
