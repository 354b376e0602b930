//! A webhook endpoint: its URL (checked), its signer, its enabled state.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::Uri;

use crate::webhooks::Signer;

/// The longest endpoint URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Why an endpoint URL was refused.
///
/// ```
/// use keyward::webhooks::{Endpoint, EndpointError, Signer, WebhookSecret};
///
/// let signer = Signer::new(WebhookSecret::generate());
/// assert_eq!(
///     Endpoint::new("http://hooks.example.com/", signer).unwrap_err(),
///     EndpointError::NotHttps
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Not an absolute URL with a host, or longer than [`MAX_URL_LEN`].
    #[error("webhook endpoint is not an absolute URL with a host (at most 2048 bytes)")]
    Invalid,
    /// Not `https` (plain `http` is allowed to `127.0.0.1`, `[::1]` and
    /// `localhost` only).
    #[error("webhook endpoint must use https (http only to 127.0.0.1, [::1] or localhost)")]
    NotHttps,
    /// The URL carries a user name or password (they would be sent and
    /// logged with it; put credentials in the signature, not the URL).
    #[error("webhook endpoint URL must not carry credentials")]
    Credentials,
}

/// Where webhooks go: a URL, the [`Signer`] for it, and whether it is
/// enabled. Clones share the enabled state: a `410 Gone` seen by one
/// delivery disables the endpoint for every clone, and later deliveries
/// are refused at once ([`DeliveryOutcome::EndpointDisabled`](super::DeliveryOutcome::EndpointDisabled))
/// until the host calls [`enable`](Self::enable).
///
/// `https` is required, except to loopback hosts (`127.0.0.1`, `[::1]`,
/// `localhost`) for tests and local development. The URL is not resolved
/// here: see the advice on SSRF of [`Deliverer`](super::Deliverer) (an
/// egress proxy). `Debug` and
/// logs show the origin only (`https://hooks.example.com`), as paths and
/// queries of webhook URLs often hold a secret.
///
/// ```
/// use keyward::webhooks::{Endpoint, Signer, WebhookSecret};
///
/// let endpoint = Endpoint::new(
///     "https://hooks.example.com/keyward?token=abc",
///     Signer::new(WebhookSecret::generate()),
/// )?;
/// assert_eq!(endpoint.origin(), "https://hooks.example.com");
/// assert!(!format!("{endpoint:?}").contains("token"));
///
/// let clone = endpoint.clone();
/// endpoint.disable();
/// assert!(!clone.is_enabled());
/// clone.enable();
/// assert!(endpoint.is_enabled());
/// # Ok::<(), keyward::webhooks::EndpointError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    uri: Uri,
    origin: String,
    signer: Signer,
    enabled: AtomicBool,
}

impl Endpoint {
    /// An enabled endpoint.
    ///
    /// # Errors
    ///
    /// [`EndpointError::Invalid`] for a URL that is not absolute, has no
    /// host or is longer than [`MAX_URL_LEN`]; [`EndpointError::NotHttps`]
    /// for another scheme than `https` (`http` to a loopback host is
    /// allowed); [`EndpointError::Credentials`] for a URL with user info.
    pub fn new(url: &str, signer: Signer) -> Result<Self, EndpointError> {
        let (uri, origin) = check_url(url)?;
        Ok(Endpoint {
            inner: Arc::new(Inner {
                uri,
                origin,
                signer,
                enabled: AtomicBool::new(true),
            }),
        })
    }

    /// The URL.
    #[must_use]
    pub fn uri(&self) -> &Uri {
        &self.inner.uri
    }

    /// `scheme://host[:port]`, what logs show of the endpoint.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The signer of its messages.
    #[must_use]
    pub fn signer(&self) -> &Signer {
        &self.inner.signer
    }

    /// Whether deliveries go out (false after a `410 Gone` or
    /// [`disable`](Self::disable)).
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Acquire)
    }

    /// Stops deliveries to it (and to every clone): a delivery in progress
    /// stops before its next attempt.
    pub fn disable(&self) {
        self.inner.enabled.store(false, Ordering::Release);
    }

    /// Lets deliveries go out again (the receiver is back).
    pub fn enable(&self) {
        self.inner.enabled.store(true, Ordering::Release);
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("origin", &self.inner.origin)
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

/// Whether `host` (as in a URL's authority) is a loopback host that may be
/// reached over plain `http`.
fn is_loopback(host: &str) -> bool {
    host == "127.0.0.1" || host == "[::1]" || host.eq_ignore_ascii_case("localhost")
}

/// The parsed URL and its origin, or why it is refused.
fn check_url(url: &str) -> Result<(Uri, String), EndpointError> {
    if url.len() > MAX_URL_LEN {
        return Err(EndpointError::Invalid);
    }
    let uri: Uri = url.parse().map_err(|_| EndpointError::Invalid)?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(EndpointError::Invalid);
    };
    if authority.as_str().contains('@') {
        return Err(EndpointError::Credentials);
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(EndpointError::Invalid);
    }
    let allowed = scheme.eq_ignore_ascii_case("https")
        || (scheme.eq_ignore_ascii_case("http") && is_loopback(host));
    if !allowed {
        return Err(EndpointError::NotHttps);
    }
    let origin = format!("{}://{}", scheme.to_ascii_lowercase(), authority.as_str());
    Ok((uri, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_except_to_loopback() {
        for good in [
            "https://hooks.example.com/in",
            "HTTPS://hooks.example.com",
            "https://10.0.0.1:8443/x?y=z",
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://localhost:3000/",
            "http://LOCALHOST/",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for (bad, err) in [
            ("http://hooks.example.com/", EndpointError::NotHttps),
            ("http://127.0.0.2/", EndpointError::NotHttps),
            ("http://localhost.example.com/", EndpointError::NotHttps),
            ("http://[::2]/", EndpointError::NotHttps),
            ("ftp://127.0.0.1/", EndpointError::NotHttps),
            ("ws://localhost/", EndpointError::NotHttps),
            (
                "https://user:pw@hooks.example.com/",
                EndpointError::Credentials,
            ),
            ("http://user@127.0.0.1/", EndpointError::Credentials),
            ("/relative", EndpointError::Invalid),
            ("hooks.example.com", EndpointError::Invalid),
            ("", EndpointError::Invalid),
            ("https://exa mple.com/", EndpointError::Invalid),
        ] {
            assert_eq!(check_url(bad).map(|_| ()), Err(err), "{bad}");
        }
    }

    #[test]
    fn long_urls_are_refused() {
        let base = "https://hooks.example.com/";
        let fits = format!("{base}{}", "a".repeat(MAX_URL_LEN - base.len()));
        assert!(check_url(&fits).is_ok());
        let over = format!("{fits}a");
        assert_eq!(check_url(&over).map(|_| ()), Err(EndpointError::Invalid));
    }

    #[test]
    fn the_origin_leaves_out_path_and_query() {
        let (_, origin) = check_url("HTTPS://Hooks.example.com:8443/p/secret?q=1").unwrap();
        assert_eq!(origin, "https://Hooks.example.com:8443");
    }
}
