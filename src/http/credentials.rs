//! Reading credentials and the tenant header from a request, strictly (the
//! policy is in the module docs of `keyward::http`, "Bad input").

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use crate::http::rejection::Rejection;
use crate::key::TenantId;

/// Where the authentication layer looks for credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CredentialSource {
    /// The API key header only (`X-Api-Key` by default).
    ApiKey,
    /// `Authorization: Bearer` only.
    Bearer,
    /// Either or both (the default).
    #[default]
    Both,
}

/// The default name of the API key header.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The default name of the tenant header.
pub const TENANT_HEADER: &str = "x-property-id";
/// The default longest credential accepted, in bytes.
pub const DEFAULT_MAX_CREDENTIAL_LEN: usize = 4096;

/// A presented credential: a clone of the header value that carries it (a
/// reference count on the request's header buffer, not a copy) and where
/// the token starts in it.
///
/// Nothing to zero on drop: no copy is made, and the header buffer belongs
/// to the HTTP stack (see SECURITY.md, "Process memory").
pub(crate) struct Credential {
    header: HeaderValue,
    start: usize,
    /// Whether it came in `Authorization: Bearer` (only those may go to an
    /// external authenticator).
    pub(crate) bearer: bool,
}

impl Credential {
    /// The token.
    pub(crate) fn value(&self) -> &str {
        // `extract` checked the header is visible ASCII: this cannot fail,
        // and an empty value would only fail verification.
        std::str::from_utf8(&self.header.as_bytes()[self.start..]).unwrap_or_default()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CredentialRules {
    pub(crate) source: CredentialSource,
    pub(crate) api_key_header: HeaderName,
    pub(crate) max_len: usize,
}

impl Default for CredentialRules {
    fn default() -> Self {
        CredentialRules {
            source: CredentialSource::Both,
            api_key_header: HeaderName::from_static(API_KEY_HEADER),
            max_len: DEFAULT_MAX_CREDENTIAL_LEN,
        }
    }
}

impl CredentialRules {
    /// The credential of a request: `Ok(None)` when it presents none of ours.
    pub(crate) fn extract(&self, headers: &HeaderMap) -> Result<Option<Credential>, Rejection> {
        let api_key = match self.source {
            CredentialSource::ApiKey | CredentialSource::Both => {
                match single_value(headers, &self.api_key_header, self.max_len)? {
                    Some((header, value)) => Some((header, value, token(value)?)),
                    None => None,
                }
            }
            CredentialSource::Bearer => None,
        };
        let bearer = match self.source {
            CredentialSource::Bearer | CredentialSource::Both => {
                match single_value(headers, &AUTHORIZATION, self.max_len)? {
                    Some((header, value)) => bearer_token(value)?.map(|t| (header, value, t)),
                    None => None,
                }
            }
            CredentialSource::ApiKey => {
                // Not ours to read, but never ambiguous: a malformed Bearer
                // is refused here too. One lookup when there is none.
                for value in headers.get_all(AUTHORIZATION) {
                    foreign_authorization(value)?;
                }
                None
            }
        };
        // The token is a suffix of the header's value (all of it for the API
        // key header, what follows the scheme for `Authorization`).
        let ((header, value, token), bearer) = match (api_key, bearer) {
            (None, None) => return Ok(None),
            (Some(key), None) => (key, false),
            (None, Some(b)) => (b, true),
            (Some(key), Some(b)) if key.2 == b.2 => (b, true),
            (Some(_), Some(_)) => {
                return Err(Rejection::InvalidRequest(
                    "X-Api-Key and Authorization carry different credentials",
                ))
            }
        };
        Ok(Some(Credential {
            header: header.clone(),
            start: value.len() - token.len(),
            bearer,
        }))
    }
}

/// The tenant a request names, if any.
pub(crate) fn tenant(
    headers: &HeaderMap,
    name: &HeaderName,
) -> Result<Option<TenantId>, Rejection> {
    match single_value(headers, name, DEFAULT_MAX_CREDENTIAL_LEN)? {
        None => Ok(None),
        Some((_, value)) => TenantId::parse(value)
            .map(Some)
            .ok_or(Rejection::InvalidRequest(
                "the tenant header is not a valid tenant id",
            )),
    }
}

/// The value of a header that must appear at most once, as visible ASCII,
/// non-empty and at most `max_len` bytes: the header and its text.
fn single_value<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    max_len: usize,
) -> Result<Option<(&'a HeaderValue, &'a str)>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::InvalidRequest(
            "a credential or tenant header is repeated",
        ));
    }
    if value.len() > max_len {
        return Err(Rejection::InvalidRequest(
            "a credential or tenant header is too long",
        ));
    }
    let text = value.to_str().map_err(|_| {
        Rejection::InvalidRequest("a credential or tenant header is not visible ASCII")
    })?;
    if text.is_empty() {
        return Err(Rejection::InvalidRequest(
            "a credential or tenant header is empty",
        ));
    }
    Ok(Some((value, text)))
}

/// The token of `Bearer <token>`; `None` for another scheme.
///
/// The scheme is the leading RFC 9110 `token` (up to the first byte that
/// cannot be in one); a value without one (` Bearer t`) is malformed. When
/// it is `Bearer` (any case), exactly one space and a `b64token` must
/// follow: `Bearer<TAB>t`, `Bearer  t` or `Bearer,t` is a malformed Bearer
/// credential, never another scheme, so it can not vanish beside an
/// `X-Api-Key`.
fn bearer_token(value: &str) -> Result<Option<&str>, Rejection> {
    let scheme_len = value
        .bytes()
        .position(|b| !is_tchar(b))
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_len);
    if scheme.is_empty() {
        // ` Bearer t` is no scheme at all; a looser reader would see Bearer.
        return Err(Rejection::InvalidRequest(
            "Authorization does not start with a scheme",
        ));
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    match rest.strip_prefix(' ') {
        _ if rest.is_empty() => Err(Rejection::InvalidRequest("Bearer without a token")),
        Some(token) if !token.is_empty() => self::token(token).map(Some),
        _ => Err(Rejection::InvalidRequest(
            "Bearer must be followed by exactly one space and the token",
        )),
    }
}

/// An `Authorization` value when `Authorization` is not a configured
/// source: a well-formed one, of any scheme, is left to whoever reads it;
/// a malformed Bearer credential (by [`bearer_token`]'s rule) or a value
/// that does not start with a scheme is refused, so that `X-Api-Key: A`
/// beside `Authorization: Bearer<TAB>B` cannot authenticate as A while
/// another component reads B. Neither the length limit nor the visible
/// ASCII rule applies to another scheme's value.
fn foreign_authorization(value: &HeaderValue) -> Result<(), Rejection> {
    let bytes = value.as_bytes();
    let scheme_len = bytes
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(bytes.len());
    let scheme = &bytes[..scheme_len];
    if !scheme.is_empty() && !scheme.eq_ignore_ascii_case(b"bearer") {
        return Ok(());
    }
    let text = value.to_str().map_err(|_| {
        Rejection::InvalidRequest("a credential or tenant header is not visible ASCII")
    })?;
    bearer_token(text).map(drop)
}

/// RFC 9110 `tchar`: the bytes of a `token`, such as an auth scheme.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The bytes of a `b64token` before its `=` padding, by value: one table
/// lookup per byte on the hot path.
const B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// Checks RFC 6750's `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~"
/// / "+" / "/" ) *"="`. Rejects any whitespace.
fn token(value: &str) -> Result<&str, Rejection> {
    let body = value.trim_end_matches('=');
    let ok = !body.is_empty() && body.bytes().all(|b| B64TOKEN[usize::from(b)]);
    if ok {
        Ok(value)
    } else {
        Err(Rejection::InvalidRequest(
            "the credential is not a single token (RFC 6750 b64token)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_grammar() {
        assert!(token("pk_abc").is_ok());
        assert!(token("eyJ.a-b_c~d+e/f==").is_ok());
        assert!(token("==").is_err());
        assert!(token("a b").is_err());
        assert!(token(" a").is_err());
        assert!(token("a=b").is_err());
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(B64TOKEN[usize::from(b)], expected, "byte {b}");
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("bEaReR tok").unwrap(), Some("tok"));
        assert_eq!(bearer_token("Basic dXNlcjpw").unwrap(), None);
        assert!(bearer_token("Bearer").is_err());
        assert!(bearer_token("Bearer  tok").is_err());
        assert!(bearer_token("Bearer tok ").is_err());
    }

    /// Whatever follows `Bearer` other than one space and a token makes a
    /// malformed Bearer credential, never another scheme (which would count
    /// as absent beside an `X-Api-Key`).
    #[test]
    fn only_one_space_separates_bearer_from_its_token() {
        for value in [
            "Bearer\ttok",
            "bearer\ttok",
            "Bearer \ttok",
            "Bearer\t tok",
            "Bearer\t",
            "Bearer ",
            "Bearer  tok",
            "Bearer   tok",
            "Bearer,tok",
            "Bearer=tok",
            "Bearer:tok",
            "Bearer\"tok\"",
            "BEARER\t\ttok",
            // No scheme at all: a looser reader would trim and see Bearer.
            " Bearer tok",
            "\tBearer tok",
            ",Bearer tok",
        ] {
            let refused = bearer_token(value);
            assert!(
                matches!(refused, Err(Rejection::InvalidRequest(_))),
                "{value:?}: {refused:?}"
            );
        }
        // Other schemes, whatever follows them, are not ours.
        for value in [
            "Basic\tdXNlcjpw",
            "Bearerx tok",
            "Bear tok",
            "Token\ttok",
            "Bearer-1 tok",
        ] {
            assert_eq!(bearer_token(value).unwrap(), None, "{value:?}");
        }
        assert!(is_tchar(b'!') && is_tchar(b'~') && is_tchar(b'Z'));
        assert!(!is_tchar(b' ') && !is_tchar(b'\t') && !is_tchar(b',') && !is_tchar(b'"'));
    }

    /// `X-Api-Key: A` beside `Authorization: Bearer<TAB>B` is refused, not
    /// read as A alone.
    #[test]
    fn a_malformed_bearer_beside_an_api_key_is_refused() {
        let rules = CredentialRules::default();
        let mut headers = HeaderMap::new();
        headers.insert(API_KEY_HEADER, HeaderValue::from_static("pk_a"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer\tpk_b"));
        assert!(matches!(
            rules.extract(&headers),
            Err(Rejection::InvalidRequest(_))
        ));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic\tdXNlcjpw"));
        let credential = rules.extract(&headers).unwrap().unwrap();
        assert_eq!((credential.value(), credential.bearer), ("pk_a", false));
    }

    /// With the API key header as the only source, `Authorization` is not
    /// read for a credential, yet a malformed Bearer in it is refused.
    #[test]
    fn an_api_key_only_source_refuses_a_malformed_bearer() {
        let rules = CredentialRules {
            source: CredentialSource::ApiKey,
            ..CredentialRules::default()
        };
        let mut headers = HeaderMap::new();
        headers.insert(API_KEY_HEADER, HeaderValue::from_static("pk_a"));
        for value in ["Bearer\tpk_b", "Bearer", "bearer  pk_b", " Bearer pk_b", ""] {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
            assert!(
                matches!(rules.extract(&headers), Err(Rejection::InvalidRequest(_))),
                "{value:?}"
            );
        }
        for value in ["Bearer pk_b", "Basic\tdXNlcjpw", "Bearer-1\tx"] {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
            let credential = rules.extract(&headers).unwrap().unwrap();
            assert_eq!((credential.value(), credential.bearer), ("pk_a", false));
        }
        let mut bytes = HeaderMap::new();
        bytes.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Basic \xff").unwrap(),
        );
        assert!(rules.extract(&bytes).unwrap().is_none());
        bytes.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert!(rules.extract(&bytes).is_err());
    }
}
