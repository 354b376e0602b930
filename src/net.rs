//! The outbound HTTPS client the features that call out share (JWKS
//! fetches, webhook deliveries, GitHub's key list): reqwest over rustls with
//! the ring provider and the Mozilla roots of `webpki-roots`, both chosen
//! here, so nothing depends on a process-wide provider; no redirects.

use std::sync::Arc;
use std::time::Duration;

/// Why the client could not be built.
pub(crate) type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// A client with its own connection pool: no redirects (a redirect could
/// carry a signed request or a key fetch to another host), `connect` as the
/// connect timeout, keyward's user agent.
pub(crate) fn client(connect: Duration) -> Result<reqwest::Client, BuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect)
        .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Reads a response body of at most `limit` bytes; `Ok(None)` when it is
/// longer (announced or actual).
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}
