//! `AuthLayer` + `RequireScopesLayer` over an echo service, on arbitrary
//! header maps from arbitrary clients, against a model of what the layer
//! promises (`src/http/credentials.rs` and `AuthLayer::failure_budget`).
//!
//! Headers come from the input: names from a short list (the credential and
//! tenant headers, `X-Forwarded-For`, a near-miss name) or raw bytes; values
//! are the two valid tokens (tenants `property_1` and `property_2`), a
//! revoked one, a well-formed unknown one, near-misses, `Bearer` with any of
//! a few separators, other schemes, tenant ids, or raw bytes, repeated at
//! will. The peer is one of a few IPv4 addresses and IPv6 /64s, and the
//! layer's clock moves forward by up to a few seconds between inputs, so
//! failure budgets run out and refill.
//!
//! For every input the model predicts the whole answer, status and `error`
//! code, and the target checks it:
//!
//! * a repeated, empty, oversized or non-visible-ASCII credential or tenant
//!   header, a credential that is not one `b64token`, `Bearer` followed by
//!   anything but one space and a token, a malformed tenant id, or two
//!   credentials that differ → 400 `invalid_request`;
//! * no credential of ours (nothing, or another scheme) → 401
//!   `missing_credentials`;
//! * a client over its failure budget (the model replays GCRA with the
//!   public `Quota::step` on the failures it saw, per IPv4 address or IPv6
//!   /64; `X-Forwarded-For` is not trusted, so never read) → 429
//!   `rate_limited` with `Retry-After`, and only then;
//! * a valid token → 200 with that key's tenant and id if the tenant header
//!   is absent or names its tenant, else 403 `tenant_mismatch`; the revoked
//!   one → 401 `token_revoked`; anything else → 401 `invalid_token`.
//!
//! So a 2xx happens only when exactly a valid token is presented (in an
//! accepted header, not beside a different credential) with a matching or
//! absent tenant header, and the principal's tenant is the key's. No token
//! appears in any response.
#![no_main]

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, OnceLock};

use common::Fixture;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::{HeaderMap, Request, Response, StatusCode};
use keyward::http::{AuthLayer, Principal, RequireScopesLayer};
use keyward::ratelimit::Quota;
use time::OffsetDateTime;
use keyward::{
    Clock, KeyKind, Keyring, ManualClock, MemoryStore, NewKey, RateLimit, ScopeCatalog,
    ScopeStatus, TenantId,
};
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// Small, so that budgets run out within a run.
const BUDGET: Quota = match Quota::per_minute(4) {
    Some(quota) => quota,
    None => panic!("non-zero"),
};
const MAX_LEN: usize = 4096;

struct Key {
    token: String,
    id: String,
    tenant: &'static str,
}

struct State {
    layer: AuthLayer,
    clock: ManualClock,
    valid: [Key; 2],
    revoked: String,
    /// Well-formed, never issued by this keyring.
    unknown: String,
    /// The model's failure TATs per client network.
    failures: Mutex<HashMap<Network, i64>>,
}

fn fixture() -> &'static Fixture<State> {
    static FIXTURE: OnceLock<Fixture<State>> = OnceLock::new();
    common::fixture(&FIXTURE, |runtime| {
        let clock = ManualClock::new(keyward::SystemClock.now());
        let keyring = keyring(Some(&clock));
        let elsewhere = keyring_of_same_kinds();
        runtime.block_on(async {
            // Unlimited: a key's own 429 would hide the other paths.
            let issue = |keyring: &Keyring, tenant: &'static str| {
                let new = NewKey::new("pk", tenant, "fuzz")
                    .scopes(["read"])
                    .rate_limit(RateLimit::Unlimited);
                let keyring = keyring.clone();
                async move {
                    let issued = keyring.issue(new).await.unwrap();
                    Key {
                        token: issued.token.expose_secret().to_owned(),
                        id: issued.info.id().as_str().to_owned(),
                        tenant,
                    }
                }
            };
            let valid = [
                issue(&keyring, "property_1").await,
                issue(&keyring, "property_2").await,
            ];
            let revoked = keyring
                .issue(NewKey::new("pk", "property_1", "revoked").scopes(["read"]))
                .await
                .unwrap();
            let _ = keyring.revoke(revoked.info.id()).await.unwrap();
            let unknown = issue(&elsewhere, "property_1").await.token;
            State {
                layer: AuthLayer::new(keyring).failure_budget(BUDGET),
                clock,
                valid,
                revoked: revoked.token.expose_secret().to_owned(),
                unknown,
                failures: Mutex::new(HashMap::new()),
            }
        })
    })
}

fn keyring(clock: Option<&ManualClock>) -> Keyring {
    let catalog = ScopeCatalog::builder()
        .scope("read", "Read", ScopeStatus::Enforced)
        .scope("write", "Write", ScopeStatus::Enforced)
        .build()
        .unwrap();
    let builder = Keyring::builder()
        .store(MemoryStore::new())
        .kind(KeyKind::new("pk", catalog).unwrap());
    match clock {
        Some(clock) => builder.clock(clock.clone()),
        None => builder,
    }
    .build()
    .unwrap()
}

fn keyring_of_same_kinds() -> Keyring {
    keyring(None)
}

/// The peers: IPv4 addresses, and addresses in two IPv6 /64s (those in one
/// /64 share a budget).
fn peer(u: &mut Unstructured<'_>) -> ArbResult<IpAddr> {
    let n = u.int_in_range(0u8..=9)?;
    Ok(match n {
        0..=5 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, n)),
        _ => {
            let net: u128 = if n < 8 {
                0x2001_0db8_0000_0001
            } else {
                0x2001_0db8_0000_0002
            };
            let host = u128::from(u.arbitrary::<u16>()?);
            IpAddr::V6(Ipv6Addr::from(net << 64 | host))
        }
    })
}

/// The model's client network: an IPv4 address, or an IPv6 /64.
type Network = (u8, u64);

fn network(ip: IpAddr) -> Network {
    match ip {
        IpAddr::V4(v4) => (4, u64::from(u32::from(v4))),
        IpAddr::V6(v6) => (6, (u128::from(v6) >> 64) as u64),
    }
}

fn header_map(u: &mut Unstructured<'_>, fx: &State) -> ArbResult<HeaderMap> {
    let mut headers = HeaderMap::new();
    while !u.is_empty() && headers.len() < 16 {
        let name = match u.int_in_range(0u8..=5)? {
            0 | 1 => HeaderName::from_static("x-api-key"),
            2 => AUTHORIZATION,
            3 => HeaderName::from_static("x-property-id"),
            4 => HeaderName::from_static(
                ["x-forwarded-for", "x-api-key-2", "authorization-2"][u.choose_index(3)?],
            ),
            _ => match HeaderName::from_bytes(u.arbitrary::<&[u8]>()?) {
                Ok(name) => name,
                Err(_) => continue,
            },
        };
        let token = |u: &mut Unstructured<'_>| -> ArbResult<String> {
            Ok(match u.int_in_range(0u8..=5)? {
                0 => fx.valid[0].token.clone(),
                1 => fx.valid[1].token.clone(),
                2 => fx.revoked.clone(),
                3 => fx.unknown.clone(),
                4 => {
                    // A valid token with a few bytes changed.
                    let mut v = fx.valid[0].token.clone().into_bytes();
                    for _ in 0..u.int_in_range(1u8..=3)? {
                        let i = u.choose_index(v.len())?;
                        v[i] = u.arbitrary()?;
                    }
                    String::from_utf8_lossy(&v).into_owned()
                }
                _ => String::from_utf8_lossy(u.arbitrary::<&[u8]>()?).into_owned(),
            })
        };
        let value: Vec<u8> = match u.int_in_range(0u8..=6)? {
            0 | 1 => token(u)?.into_bytes(),
            2 | 3 => {
                let scheme = ["Bearer", "bearer", "BEARER", "Basic", "Bearerx", " Bearer"]
                    [u.choose_index(6)?];
                let separator = [" ", "\t", "  ", " \t", ",", "", "="][u.choose_index(7)?];
                format!("{scheme}{separator}{}", token(u)?).into_bytes()
            }
            4 => ["property_1", "property_2", "property 1", ""][u.choose_index(4)?].into(),
            5 => ["192.0.2.1", "198.51.100.7, 203.0.113.1"][u.choose_index(2)?].into(),
            _ => u.arbitrary::<&[u8]>()?.to_vec(),
        };
        // Headers the http crate refuses (control bytes) can not arrive.
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.append(name, value);
        }
    }
    Ok(headers)
}

/// What the model expects: a status and an `error` code (`""` for a 200).
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    status: StatusCode,
    code: &'static str,
    /// For a 200: the key it authenticates as.
    key: Option<usize>,
}

impl Expected {
    fn reject(status: StatusCode, code: &'static str) -> Self {
        Expected {
            status,
            code,
            key: None,
        }
    }
}

fn invalid_request() -> Expected {
    Expected::reject(StatusCode::BAD_REQUEST, "invalid_request")
}

/// The one value of a header that may appear once, as visible ASCII,
/// non-empty and at most `MAX_LEN` bytes; `Err` when it breaks that rule.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ()> {
    let values: Vec<&HeaderValue> = headers.get_all(name).iter().collect();
    match values.as_slice() {
        [] => Ok(None),
        [value] => {
            // `to_str` lets visible ASCII and tabs through.
            let text = value.to_str().map_err(|_| ())?;
            if text.is_empty() || value.len() > MAX_LEN {
                return Err(());
            }
            Ok(Some(text))
        }
        _ => Err(()),
    }
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" /
/// "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The presented token: `Err` for 400, `Ok(None)` for none of ours.
fn presented(headers: &HeaderMap) -> Result<Option<String>, ()> {
    let api_key = match single(headers, "x-api-key")? {
        Some(value) if is_b64token(value) => Some(value),
        Some(_) => return Err(()),
        None => None,
    };
    let bearer = match single(headers, "authorization")? {
        Some(value) => {
            let scheme_len = value.bytes().take_while(|&b| is_tchar(b)).count();
            let (scheme, rest) = value.split_at(scheme_len);
            if scheme.is_empty() {
                return Err(());
            }
            if scheme.eq_ignore_ascii_case("bearer") {
                match rest.strip_prefix(' ') {
                    Some(token) if is_b64token(token) => Some(token),
                    _ => return Err(()),
                }
            } else {
                None
            }
        }
        None => None,
    };
    match (api_key, bearer) {
        (Some(a), Some(b)) if a != b => Err(()),
        (a, b) => Ok(a.or(b).map(str::to_owned)),
    }
}

impl State {
    /// The model's answer for `headers` from `peer`, and whether it spends
    /// one of the client's failures.
    fn expect(&self, headers: &HeaderMap, client: Network, now: OffsetDateTime) -> (Expected, bool) {
        let Ok(token) = presented(headers) else {
            return (invalid_request(), false);
        };
        let tenant = match single(headers, "x-property-id") {
            Ok(None) => None,
            Ok(Some(value)) => match TenantId::parse(value) {
                Some(tenant) => Some(tenant),
                None => return (invalid_request(), false),
            },
            Err(()) => return (invalid_request(), false),
        };
        let Some(token) = token else {
            return (
                Expected::reject(StatusCode::UNAUTHORIZED, "missing_credentials"),
                false,
            );
        };
        let tat = self.failures.lock().unwrap().get(&client).copied();
        if !BUDGET.step(tat, now).0.allowed {
            return (
                Expected::reject(StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
                false,
            );
        }
        if let Some(i) = self.valid.iter().position(|k| k.token == token) {
            let key = &self.valid[i];
            return match tenant {
                Some(t) if t.as_str() != key.tenant => (
                    Expected::reject(StatusCode::FORBIDDEN, "tenant_mismatch"),
                    true,
                ),
                _ => (
                    Expected {
                        status: StatusCode::OK,
                        code: "",
                        key: Some(i),
                    },
                    false,
                ),
            };
        }
        if token == self.revoked {
            return (
                Expected::reject(StatusCode::UNAUTHORIZED, "token_revoked"),
                true,
            );
        }
        (
            Expected::reject(StatusCode::UNAUTHORIZED, "invalid_token"),
            true,
        )
    }

    /// A failure is charged even past the budget: the TAT moves one
    /// emission interval past `max(tat, now)`, at most an hour ahead.
    fn record_failure(&self, client: Network, now: OffsetDateTime) {
        let mut failures = self.failures.lock().unwrap();
        let now = i64::try_from(now.unix_timestamp_nanos()).unwrap();
        let interval = i64::try_from(BUDGET.emission_interval().as_nanos()).unwrap();
        let window = i64::try_from(BUDGET.window().as_nanos()).unwrap();
        let cap = now + window.max(3_600_000_000_000);
        let base = failures.get(&client).map_or(now, |tat| (*tat).max(now));
        failures.insert(client, (base + interval).min(cap));
    }
}

async fn echo(req: Request<String>) -> Result<Response<String>, std::convert::Infallible> {
    let principal = req.extensions().get::<Principal>().expect("a principal");
    Ok(Response::new(format!(
        "{} {}",
        principal.tenant().as_str(),
        principal.id()
    )))
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let mut u = Unstructured::new(data);
    let Ok((advance, peer)) = u
        .int_in_range(0u16..=4000)
        .and_then(|ms| Ok((ms, peer(&mut u)?)))
    else {
        return;
    };
    let Ok(headers) = header_map(&mut u, fx) else {
        return;
    };
    fx.clock
        .advance(std::time::Duration::from_millis(u64::from(advance)));
    let now = fx.clock.now();
    let client = network(peer);
    let (expected, spends) = fx.expect(&headers, client, now);

    let mut req = Request::new(String::new());
    *req.headers_mut() = headers.clone();
    req.extensions_mut().insert(SocketAddr::new(peer, 40_000));
    let service = ServiceBuilder::new()
        .layer(fx.layer.clone())
        .layer(RequireScopesLayer::all(["read"]).unwrap())
        .service(service_fn(echo));
    let res = fx
        .runtime
        .block_on(service.oneshot(req))
        .expect("infallible");
    if spends {
        fx.record_failure(client, now);
    }

    let body = res.body();
    for key in &fx.valid {
        assert!(!body.contains(&key.token), "a token in the body");
    }
    assert!(!body.contains(&fx.revoked) && !body.contains(&fx.unknown));
    assert_eq!(
        res.status(),
        expected.status,
        "{headers:?} from {peer}: {body}"
    );
    match expected.key {
        Some(i) => {
            // The principal is the key presented, in the key's tenant.
            let key = &fx.valid[i];
            assert_eq!(body, &format!("{} {}", key.tenant, key.id), "{headers:?}");
        }
        None => {
            let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
            assert_eq!(
                json["error"], expected.code,
                "{headers:?} from {peer}: {body}"
            );
            if expected.status == StatusCode::TOO_MANY_REQUESTS {
                let retry = res.headers()["retry-after"].to_str().unwrap();
                assert!(
                    retry.parse::<u64>().is_ok_and(|s| (1..=15).contains(&s)),
                    "{retry}"
                );
            }
        }
    }
});
