//! GitHub's secret-scanning public keys: the fetcher, the key list's
//! parser, the cache, and the signature check.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

// tokio's clock, so tests can move it (`start_paused`).
use tokio::time::Instant;

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where GitHub publishes its secret-scanning keys.
pub const GITHUB_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";
/// Largest key list read (bytes).
const MAX_KEY_LIST_LEN: usize = 64 * 1024;
/// Most keys kept from one key list.
const MAX_KEYS: usize = 32;
/// Longest key identifier accepted (GitHub's are 64 hex digits).
pub(crate) const MAX_KEY_ID_LEN: usize = 128;

/// Why GitHub's key list could not be fetched: unreachable, an error
/// status, too large. Its message includes the immediate cause; `source()`
/// continues below it.
///
/// ```
/// let err = keyward::leaks::KeyFetchError::new("status 502");
/// assert_eq!(err.to_string(), "secret-scanning key fetch failed: status 502");
/// ```
#[derive(Debug)]
pub struct KeyFetchError(Box<dyn std::error::Error + Send + Sync>);

impl KeyFetchError {
    /// A fetch error from any error or message.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        KeyFetchError(err.into())
    }
}

impl fmt::Display for KeyFetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret-scanning key fetch failed: {}", self.0)
    }
}

impl std::error::Error for KeyFetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Fetches GitHub's secret-scanning key list (the JSON document at
/// [`GITHUB_KEYS_URL`]: `{"public_keys": [{"key_identifier", "key",
/// "is_current"}]}`, keys as PEM). [`HttpKeyFetcher`] is the default;
/// supply your own for a proxy, a GitHub Enterprise Server, or tests.
///
/// ```
/// use keyward::leaks::{GithubKeyFetcher, KeyFetchError};
///
/// /// A fixed key list, e.g. for tests.
/// struct Fixed(Vec<u8>);
///
/// #[keyward::async_trait]
/// impl GithubKeyFetcher for Fixed {
///     async fn fetch(&self) -> Result<Vec<u8>, KeyFetchError> {
///         Ok(self.0.clone())
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait GithubKeyFetcher: Send + Sync + 'static {
    /// The key list's body; an unreachable server or an error status is an
    /// error.
    async fn fetch(&self) -> Result<Vec<u8>, KeyFetchError>;
}

/// The default [`GithubKeyFetcher`]: GETs [`GITHUB_KEYS_URL`] with
/// keyward's HTTPS client (reqwest over rustls with the Mozilla roots, no
/// redirects, a 5 s connect timeout), bodies up to 64 KiB.
///
/// GitHub rate-limits unauthenticated API calls per address; give it a
/// token ([`github_token`](Self::github_token): a personal access token
/// with no scope) if many processes share one.
///
/// ```
/// use keyward::leaks::HttpKeyFetcher;
///
/// let fetcher = HttpKeyFetcher::new()?.github_token("github_pat_…");
/// assert!(!format!("{fetcher:?}").contains("github_pat"));
/// # Ok::<(), keyward::leaks::KeyFetchError>(())
/// ```
#[derive(Clone)]
pub struct HttpKeyFetcher {
    client: reqwest::Client,
    url: String,
    token: Option<Arc<SecretString>>,
}

impl HttpKeyFetcher {
    /// A fetcher of [`GITHUB_KEYS_URL`] with its own connection pool.
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built (no TLS configuration).
    pub fn new() -> Result<Self, KeyFetchError> {
        let client = crate::net::client(Duration::from_secs(5)).map_err(KeyFetchError::new)?;
        Ok(HttpKeyFetcher {
            client,
            url: GITHUB_KEYS_URL.to_owned(),
            token: None,
        })
    }

    /// Fetches from `url` instead (a GitHub Enterprise Server's
    /// `https://<host>/api/v3/meta/public_keys/secret_scanning`).
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Sends `token` as `Authorization: Bearer` (never printed by `Debug`).
    #[must_use]
    pub fn github_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Arc::new(SecretString::from(token.into())));
        self
    }
}

impl fmt::Debug for HttpKeyFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpKeyFetcher")
            .field("url", &self.url)
            .field(
                "token",
                &self.token.as_ref().map(|_| crate::error::Redacted),
            )
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl GithubKeyFetcher for HttpKeyFetcher {
    async fn fetch(&self) -> Result<Vec<u8>, KeyFetchError> {
        let mut request = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            let mut value =
                reqwest::header::HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
                    .map_err(|_| KeyFetchError::new("the GitHub token is not a header value"))?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(KeyFetchError::new)?;
        let status = response.status();
        if !status.is_success() {
            return Err(KeyFetchError::new(format!("status {status}")));
        }
        crate::net::read_limited(response, MAX_KEY_LIST_LEN)
            .await
            .map_err(KeyFetchError::new)?
            .ok_or_else(|| KeyFetchError::new("key list larger than 64 KiB"))
    }
}

#[derive(Deserialize)]
struct KeyList {
    public_keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    key_identifier: String,
    key: String,
}

/// Parses the key list into its usable keys by identifier. Entries that
/// are malformed, not P-256 keys, or without an identifier are skipped; a
/// repeated identifier keeps its first key. A well-formed list is
/// authoritative even with no usable key; only a body that is not a key
/// list is an error (the cache keeps what it had).
pub(crate) fn parse_keys(body: &[u8]) -> Result<HashMap<String, VerifyingKey>, &'static str> {
    if body.len() > MAX_KEY_LIST_LEN {
        return Err("key list larger than 64 KiB");
    }
    let list: KeyList = serde_json::from_slice(body).map_err(|_| "not a key list")?;
    let mut keys = HashMap::new();
    for raw in list.public_keys {
        if keys.len() == MAX_KEYS {
            break;
        }
        let Ok(raw) = serde_json::from_value::<RawKey>(raw) else {
            continue;
        };
        if !valid_key_id(&raw.key_identifier) {
            continue;
        }
        match VerifyingKey::from_public_key_pem(&raw.key) {
            Ok(key) => {
                keys.entry(raw.key_identifier).or_insert(key);
            }
            Err(_) => {
                tracing::warn!(target: "keyward::leaks", key_id = %raw.key_identifier, "secret-scanning key skipped: not a P-256 public key");
            }
        }
    }
    if keys.is_empty() {
        tracing::error!(target: "keyward::leaks", "GitHub's key list has no usable key: every alert will be refused");
    }
    Ok(keys)
}

/// Whether `id` can be a key identifier: 1–128 ASCII letters, digits,
/// `-` or `_`.
pub(crate) fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `signature` (ASN.1 DER) is `key`'s ECDSA P-256 SHA-256
/// signature of `body`.
pub(crate) fn verify(key: &VerifyingKey, body: &[u8], signature: &[u8]) -> bool {
    Signature::from_der(signature).is_ok_and(|sig| key.verify(body, &sig).is_ok())
}

/// What the cache says about a key identifier.
pub(crate) enum Lookup {
    Found(VerifyingKey),
    /// Not in the key list GitHub last published: 401.
    Unknown,
    /// The cache can not decide (never fetched, or the last fetch failed
    /// and the identifier is unknown): 503, so GitHub sends again.
    Unavailable,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, VerifyingKey>,
    /// Whether a key list was ever read.
    fetched: bool,
    last_attempt: Option<Instant>,
    last_failed: bool,
}

/// The keys shared by clones of a receiver: fetched on the first alert,
/// refetched when an unknown identifier arrives, at most once per
/// interval; concurrent callers wait for one fetch.
pub(crate) struct KeyCache {
    fetcher: Arc<dyn GithubKeyFetcher>,
    refetch_interval: Duration,
    fetch_timeout: Duration,
    state: Mutex<State>,
    fetching: tokio::sync::Mutex<()>,
}

impl KeyCache {
    pub(crate) fn new(
        fetcher: Arc<dyn GithubKeyFetcher>,
        refetch_interval: Duration,
        fetch_timeout: Duration,
    ) -> Self {
        KeyCache {
            fetcher,
            refetch_interval,
            fetch_timeout,
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cached(&self, id: &str) -> Option<VerifyingKey> {
        self.lock().keys.get(id).copied()
    }

    /// The key named `id`, fetching the list when `id` is unknown and the
    /// last attempt is an interval old (or there was none).
    pub(crate) async fn lookup(&self, id: &str) -> Lookup {
        if let Some(key) = self.cached(id) {
            return Lookup::Found(key);
        }
        let _fetching = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(key) = self.cached(id) {
            return Lookup::Found(key);
        }
        let due = self
            .lock()
            .last_attempt
            .is_none_or(|at| at.elapsed() >= self.refetch_interval);
        if due {
            self.fetch().await;
            if let Some(key) = self.cached(id) {
                return Lookup::Found(key);
            }
        }
        let state = self.lock();
        if state.fetched && !state.last_failed {
            Lookup::Unknown
        } else {
            Lookup::Unavailable
        }
    }

    async fn fetch(&self) {
        let fetched = tokio::time::timeout(self.fetch_timeout, self.fetcher.fetch()).await;
        let parsed = match fetched {
            Err(_) => Err(KeyFetchError::new("timed out")),
            Ok(Err(err)) => Err(err),
            Ok(Ok(body)) => parse_keys(&body).map_err(KeyFetchError::new),
        };
        let mut state = self.lock();
        state.last_attempt = Some(Instant::now());
        match parsed {
            Ok(keys) => {
                tracing::debug!(target: "keyward::leaks", keys = keys.len(), "secret-scanning keys fetched");
                state.keys = keys;
                state.fetched = true;
                state.last_failed = false;
            }
            Err(err) => {
                tracing::warn!(target: "keyward::leaks", error = &err as &dyn std::error::Error, "secret-scanning key fetch failed");
                state.last_failed = true;
            }
        }
    }
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("refetch_interval", &self.refetch_interval)
            .field("fetch_timeout", &self.fetch_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::SigningKey;
    use p256::pkcs8::EncodePublicKey as _;

    fn signing_key(byte: u8) -> SigningKey {
        SigningKey::from_slice(&[byte; 32]).unwrap()
    }

    fn pem(key: &SigningKey) -> String {
        key.verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap()
    }

    #[test]
    fn high_s_signatures_verify_as_go_makes_them() {
        // Go's crypto/ecdsa (GitHub's signer) does not normalize s: both
        // halves must verify.
        let key = signing_key(7);
        let body = b"[]";
        let sig: Signature = key.sign(body);
        let (r, s) = sig.split_scalars();
        let flipped = Signature::from_scalars(r, -*s).unwrap();
        for sig in [sig, flipped] {
            assert!(verify(key.verifying_key(), body, sig.to_der().as_bytes()));
        }
        assert!(!verify(
            key.verifying_key(),
            b"[ ]",
            sig.to_der().as_bytes()
        ));
        assert!(!verify(key.verifying_key(), body, &sig.to_bytes()));
        assert!(!verify(
            signing_key(8).verifying_key(),
            body,
            sig.to_der().as_bytes()
        ));
    }

    #[test]
    fn the_key_list_keeps_usable_keys() {
        let (a, b) = (signing_key(1), signing_key(2));
        let doc = serde_json::json!({"public_keys": [
            {"key_identifier": "a", "key": pem(&a), "is_current": true},
            {"key_identifier": "a", "key": pem(&b), "is_current": false},
            {"key_identifier": "b", "key": pem(&b)},
            {"key_identifier": "", "key": pem(&b)},
            {"key_identifier": "bad id", "key": pem(&b)},
            {"key_identifier": "c", "key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
            {"key": pem(&b)},
            "not an object"
        ]});
        let keys = parse_keys(doc.to_string().as_bytes()).unwrap();
        let mut ids: Vec<&String> = keys.keys().collect();
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(&keys["a"], a.verifying_key());
        assert!(parse_keys(br#"{"public_keys":[]}"#).unwrap().is_empty());
        assert!(parse_keys(b"[]").is_err());
        let padded = format!(
            r#"{{"public_keys":[]}}{}"#,
            " ".repeat(MAX_KEY_LIST_LEN - 18)
        );
        assert_eq!(padded.len(), MAX_KEY_LIST_LEN);
        assert!(parse_keys(padded.as_bytes()).is_ok());
        assert!(parse_keys(format!("{padded} ").as_bytes()).is_err());
    }

    #[test]
    fn at_most_32_keys_are_kept() {
        let pem = pem(&signing_key(1));
        let entries: Vec<_> = (0..40)
            .map(|i| serde_json::json!({"key_identifier": format!("k{i}"), "key": pem}))
            .collect();
        let doc = serde_json::json!({ "public_keys": entries });
        assert_eq!(
            parse_keys(doc.to_string().as_bytes()).unwrap().len(),
            MAX_KEYS
        );
    }

    #[test]
    fn key_identifiers_are_bounded_words() {
        assert!(valid_key_id("bcb53661c06b4728e59d897fb6165d5c"));
        assert!(valid_key_id("a-b_C9"));
        assert!(valid_key_id(&"a".repeat(MAX_KEY_ID_LEN)));
        for bad in ["", "a b", "a/b", "é", &"a".repeat(MAX_KEY_ID_LEN + 1)] {
            assert!(!valid_key_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_fetcher_hides_its_token() {
        let fetcher = HttpKeyFetcher::new()
            .unwrap()
            .url("https://ghes.example/api/v3/meta/public_keys/secret_scanning")
            .github_token("secret-token");
        let debug = format!("{fetcher:?}");
        assert!(
            debug.contains("ghes.example") && debug.contains("[REDACTED]"),
            "{debug}"
        );
        assert!(!debug.contains("secret-token"));
        let err = KeyFetchError::new(std::io::Error::other("refused"));
        assert_eq!(err.to_string(), "secret-scanning key fetch failed: refused");
    }

    #[test]
    fn a_fetch_error_prints_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        let err = KeyFetchError::new(Outer(std::io::Error::other("connection refused")));
        assert_eq!(
            err.to_string(),
            "secret-scanning key fetch failed: error sending request"
        );
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.to_string(), "connection refused");
    }

    /// Serves one HTTP/1.1 response on 127.0.0.1 (a thread of its own);
    /// the request's head, lowercased, comes back through the handle.
    fn serve_once(response: String) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let task = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&chunk[..n]);
            }
            // The client may hang up early (a body over the limit).
            let _ = socket.write_all(response.as_bytes());
            String::from_utf8_lossy(&head).to_lowercase()
        });
        (
            format!("http://{addr}/meta/public_keys/secret_scanning"),
            task,
        )
    }

    fn http_response(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn the_http_fetcher_reads_the_list_with_its_token() {
        let (url, request) = serve_once(http_response("200 OK", r#"{"public_keys":[]}"#));
        let fetcher = HttpKeyFetcher::new()
            .unwrap()
            .url(url)
            .github_token("tok_1");
        assert_eq!(fetcher.fetch().await.unwrap(), br#"{"public_keys":[]}"#);
        let head = request.join().unwrap();
        assert!(
            head.starts_with("get /meta/public_keys/secret_scanning "),
            "{head}"
        );
        assert!(
            head.contains("\r\nauthorization: bearer tok_1\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\naccept: application/json\r\n"), "{head}");

        let (url, request) = serve_once(http_response("200 OK", "{}"));
        HttpKeyFetcher::new()
            .unwrap()
            .url(url)
            .fetch()
            .await
            .unwrap();
        assert!(!request.join().unwrap().contains("authorization"));
    }

    #[tokio::test]
    async fn the_http_fetcher_refuses_errors_and_large_lists() {
        let (url, _request) = serve_once(http_response("503 Service Unavailable", "{}"));
        let err = HttpKeyFetcher::new()
            .unwrap()
            .url(url)
            .fetch()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("status 503"), "{err}");

        let big = " ".repeat(MAX_KEY_LIST_LEN + 1);
        let (url, _request) = serve_once(http_response("200 OK", &big));
        let err = HttpKeyFetcher::new()
            .unwrap()
            .url(url)
            .fetch()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("larger than 64 KiB"), "{err}");

        let fits = " ".repeat(MAX_KEY_LIST_LEN);
        let (url, _request) = serve_once(http_response("200 OK", &fits));
        let body = HttpKeyFetcher::new()
            .unwrap()
            .url(url)
            .fetch()
            .await
            .unwrap();
        assert_eq!(body.len(), MAX_KEY_LIST_LEN);

        let bad = HttpKeyFetcher::new()
            .unwrap()
            .url("http://127.0.0.1:1/")
            .github_token("a\nb");
        let err = bad.fetch().await.unwrap_err();
        assert!(err.to_string().contains("not a header value"), "{err}");
    }
}
