//! Throttles for endpoints without an API key (login, password reset): a
//! [`Quota`](crate::ratelimit::Quota) per client IP and one per account,
//! with the 429 contract of the authentication layer.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use http::{Request, Response, StatusCode};
//! use keyward::http::ThrottleLayer;
//! use keyward::ratelimit::Quota;
//! use std::net::SocketAddr;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let login = ServiceBuilder::new()
//!     .layer(
//!         ThrottleLayer::new()
//!             .per_ip(Quota::per_minute(2).unwrap())
//!             .per_account(Quota::per_hour(10).unwrap(), |parts| {
//!                 let account = parts.headers.get("x-account")?.to_str().ok()?;
//!                 Some(account.to_ascii_lowercase())
//!             }),
//!     )
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("welcome")))
//!     }));
//!
//! let peer: SocketAddr = "203.0.113.7:50000".parse()?;
//! let attempt = || {
//!     let mut req = Request::post("/login").header("x-account", "ada").body(String::new()).unwrap();
//!     req.extensions_mut().insert(peer); // what the server saw
//!     req
//! };
//! let ok = login.clone().oneshot(attempt()).await?;
//! assert_eq!(ok.status(), StatusCode::OK);
//! assert_eq!(ok.headers()["ratelimit"], r#""default";r=1;t=30"#);
//! login.clone().oneshot(attempt()).await?;
//! let denied = login.oneshot(attempt()).await?;
//! assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(denied.headers()["retry-after"], "30");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Client IP
//!
//! The client IP is the address of the connection's peer, read by
//! [`ThrottleLayer::peer_ip`]; by default from a [`std::net::SocketAddr`] in
//! the request extensions. axum puts `ConnectInfo<SocketAddr>` there instead
//! (serve with `into_make_service_with_connect_info::<SocketAddr>()`), so
//! with axum configure:
//!
//! ```
//! use axum::extract::ConnectInfo;
//! use keyward::http::ThrottleLayer;
//! use std::net::SocketAddr;
//!
//! let throttle = ThrottleLayer::new().peer_ip(|parts| {
//!     parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
//! });
//! # let _ = throttle;
//! ```
//!
//! A request whose peer address is unknown while a per-IP quota is set is
//! refused with 503 `auth_unavailable` and an error event: that is a
//! deployment mistake, and the throttle fails closed rather than letting
//! every request through unthrottled.
//!
//! `X-Forwarded-For` is ignored unless [`ThrottleLayer::trust_forwarded_for`]
//! names the proxies in front of the service, and then only read when the
//! peer is one of them: the client is the right-most address in the header
//! that is not a trusted proxy (every address left of it could be made up by
//! the client). A malformed header from a trusted proxy is 400
//! `invalid_request`, never guessed at; a trusted peer without the header is
//! the client itself.
//!
//! IPv4 addresses (also IPv4-mapped IPv6 ones) are keyed as `ip:<address>`;
//! IPv6 addresses by their /64 network, `ip:<network>/64`, since one host
//! usually holds a whole /64.
//!
//! # Accounts
//!
//! The account comes from a closure on the request head
//! ([`ThrottleLayer::per_account`]): the body is not read, since that would
//! buffer every request before the throttle. Send the account in a header
//! (`X-Account`) or the path, and normalise it (lower case an e-mail
//! address) so variants share a budget. A request without an account is only
//! checked per IP. Accounts are keyed as `acct:sha256:<hex>`, so no account
//! name is stored in the limiter.
//!
//! The per-IP check runs first; a request it denies uses none of the
//! account's quota. Note that an account quota, by design, also slows the
//! account's owner while someone guesses its password from many addresses.
//!
//! # Headers
//!
//! Every response carries `RateLimit-Policy` and `RateLimit` for the
//! dimension closest to its limit (the denying one on a 429), and a 429
//! `Retry-After`, as [`Rejection::RateLimited`]
//! renders it.

mod layer;
mod service;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::request::Parts;
use http::HeaderMap;

use crate::http::rejection::Rejection;

pub use crate::http::future::ResponseFuture;
pub use layer::ThrottleLayer;
pub use service::Throttle;

/// The header a trusted proxy appends the client address to.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// Where the peer address of a request comes from.
pub(crate) type PeerIp = Arc<dyn Fn(&Parts) -> Option<IpAddr> + Send + Sync>;

/// Who the client of a request is: its connection's peer (read by
/// `peer_ip`), or for a trusted proxy the address it forwarded (see the
/// [module docs](self#client-ip)). The rule of [`ThrottleLayer`] and of the
/// failure throttle of [`AuthLayer`](crate::http::AuthLayer).
#[derive(Clone)]
pub(crate) struct ClientIp {
    peer_ip: PeerIp,
    trusted_proxies: HashSet<IpAddr>,
}

impl Default for ClientIp {
    /// The peer from a `SocketAddr` in the request extensions, no trusted
    /// proxies.
    fn default() -> Self {
        ClientIp {
            peer_ip: Arc::new(|parts: &Parts| {
                parts.extensions.get::<SocketAddr>().map(SocketAddr::ip)
            }),
            trusted_proxies: HashSet::new(),
        }
    }
}

impl ClientIp {
    pub(crate) fn set_peer_ip<F>(&mut self, peer_ip: F)
    where
        F: Fn(&Parts) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.peer_ip = Arc::new(peer_ip);
    }

    pub(crate) fn set_trusted_proxies(&mut self, proxies: impl IntoIterator<Item = IpAddr>) {
        self.trusted_proxies = proxies.into_iter().map(|ip| ip.to_canonical()).collect();
    }

    /// The client of a request; `Ok(None)` when its peer is unknown.
    pub(crate) fn client(&self, parts: &Parts) -> Result<Option<IpAddr>, Rejection> {
        match (self.peer_ip)(parts) {
            Some(peer) => client_ip(peer, &parts.headers, &self.trusted_proxies).map(Some),
            None => Ok(None),
        }
    }
}

impl fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIp")
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

/// The client address for `peer`: the peer itself, or, when the peer is a
/// trusted proxy, the right-most untrusted address of `X-Forwarded-For`.
fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &HashSet<IpAddr>,
) -> Result<IpAddr, Rejection> {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return Ok(peer);
    }
    let malformed = || Rejection::InvalidRequest("malformed X-Forwarded-For header");
    let mut client = peer;
    // Several header lines form one list, in order.
    for line in headers.get_all(FORWARDED_FOR).iter().rev() {
        let line = line.to_str().map_err(|_| malformed())?;
        for hop in line.rsplit(',') {
            let hop = parse_hop(hop.trim()).ok_or_else(malformed)?;
            if !trusted.contains(&hop) {
                return Ok(hop);
            }
            client = hop;
        }
    }
    Ok(client)
}

/// One `X-Forwarded-For` entry: an address, or an address with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`), as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// A client as the limiters count it: an IPv4 address, or an IPv6 address's
/// /64 network (one host usually holds a whole /64). Its `Display` is the
/// address or `<network>/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientNet {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6(u64),
}

impl ClientNet {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientNet::V4(v4),
            IpAddr::V6(v6) => ClientNet::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

impl fmt::Display for ClientNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientNet::V4(v4) => write!(f, "{v4}"),
            ClientNet::V6(net) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*net) << 64)),
        }
    }
}

/// The limiter key of a client address: `ip:` and its [`ClientNet`].
fn ip_key(ip: IpAddr) -> String {
    format!("ip:{}", ClientNet::of(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_peers() {
        let trusted: HashSet<IpAddr> = [ip("10.0.0.1"), ip("10.0.0.2")].into();
        let headers = xff(&["198.51.100.9, 203.0.113.7, 10.0.0.2"]);
        assert_eq!(
            client_ip(ip("192.0.2.1"), &headers, &trusted),
            Ok(ip("192.0.2.1"))
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &trusted),
            Ok(ip("203.0.113.7"))
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &headers, &HashSet::new()),
            Ok(ip("10.0.0.1"))
        );
        // Several lines are one list; ports and mapped addresses are accepted.
        let lines = xff(&["198.51.100.9", "[::ffff:203.0.113.8]:4711, 10.0.0.2"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &lines, &trusted),
            Ok(ip("203.0.113.8"))
        );
        // Only trusted hops: the left-most; no header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff(&["10.0.0.2"]), &trusted),
            Ok(ip("10.0.0.2"))
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            Ok(ip("10.0.0.1"))
        );
        for bad in ["unknown", "203.0.113.7,", "203.0.113.7 10.0.0.2"] {
            assert!(matches!(
                client_ip(ip("10.0.0.1"), &xff(&[bad]), &trusted),
                Err(Rejection::InvalidRequest(_))
            ));
        }
        // Garbage left of the client is never read.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff(&["junk, 203.0.113.7"]), &trusted),
            Ok(ip("203.0.113.7"))
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(ip_key(ip("203.0.113.7")), "ip:203.0.113.7");
        assert_eq!(ip_key(ip("::ffff:203.0.113.7")), "ip:203.0.113.7");
        assert_eq!(ip_key(ip("2001:db8:1:2:3:4:5:6")), "ip:2001:db8:1:2::/64");
        assert_eq!(ip_key(ip("2001:db8:1:2::ffff")), "ip:2001:db8:1:2::/64");
        assert_eq!(ip_key(ip("2001:db8:1:3::")), "ip:2001:db8:1:3::/64");
        assert_eq!(
            ClientNet::of(ip("2001:db8:1:2:aaaa::1")),
            ClientNet::of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            ClientNet::of(ip("2001:db8:1:2::1")),
            ClientNet::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientNet::of(ip("::ffff:203.0.113.7")),
            ClientNet::of(ip("203.0.113.7"))
        );
    }
}
