//! Reading credentials and the tenant header from a request, strictly (the
//! policy is in the module docs of `keyward::http`, "Bad input").

use std::fmt;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use crate::http::rejection::Rejection;
use crate::key::TenantId;

/// Where credentials come from: one header, read strictly. Implement it for
/// a source of your own; [`Source::api_key`] and [`Source::bearer`] are the
/// built-in ones. [`AuthLayer::credentials`](crate::http::AuthLayer::credentials)
/// and [`AuthLayer::accept`](crate::http::AuthLayer::accept) take a list of
/// [`Source`]s.
///
/// A source only finds the token: the layer checks the value's length
/// first, refuses two sources presenting different tokens, and decides from
/// the token's prefix which kind it is and whether that kind may come from
/// this source.
///
/// ```
/// use http::header::{HeaderMap, HeaderName};
/// use keyward::http::{CredentialSource, Presented, Rejection, Source};
///
/// /// `X-Token: <token>`, as some older clients send it.
/// #[derive(Debug)]
/// struct XToken(HeaderName);
///
/// impl CredentialSource for XToken {
///     fn header(&self) -> &HeaderName {
///         &self.0
///     }
///     fn describe(&self) -> &str {
///         "X-Token"
///     }
///     fn read(&self, value: &http::HeaderValue) -> Result<Option<Presented>, Rejection> {
///         Presented::new(value, 0).map(Some)
///     }
/// }
///
/// let source = Source::custom(XToken(HeaderName::from_static("x-token")));
/// # let _ = source;
/// ```
pub trait CredentialSource: fmt::Debug + Send + Sync + 'static {
    /// The header this source reads. The layer refuses the request with 400
    /// `invalid_request` when it is repeated, empty, longer than
    /// [`AuthLayer::max_credential_len`](crate::http::AuthLayer::max_credential_len)
    /// or not visible ASCII, before calling [`read`](Self::read).
    fn header(&self) -> &HeaderName;

    /// How the source is named in the 401 `missing_credentials` message
    /// (`"X-Api-Key"`, `"Authorization: Bearer"`).
    fn describe(&self) -> &str;

    /// The token in the header's value: `Ok(None)` when the value is not a
    /// credential of this source (another scheme); a [`Rejection`] (400
    /// `invalid_request`) when it is one, malformed.
    ///
    /// # Errors
    ///
    /// A malformed credential.
    fn read(&self, value: &HeaderValue) -> Result<Option<Presented>, Rejection>;
}

/// A token found in a header: a clone of the header's value (a reference
/// count on the request's buffer, not a copy) and where the token starts.
///
/// Nothing to zero on drop: no copy is made, and the header buffer belongs
/// to the HTTP stack (see SECURITY.md, "Process memory").
#[derive(Clone)]
pub struct Presented {
    header: HeaderValue,
    start: usize,
}

impl Presented {
    /// The token that starts at byte `start` of `header` and runs to its end.
    ///
    /// # Errors
    ///
    /// 400 `invalid_request` when `start` is past the end, or what follows
    /// it is not one RFC 6750 `b64token` (so no whitespace, no separator).
    ///
    /// ```
    /// use http::HeaderValue;
    /// use keyward::http::Presented;
    ///
    /// let value = HeaderValue::from_static("Token pk_abc");
    /// assert!(Presented::new(&value, 6).is_ok());
    /// assert!(Presented::new(&value, 5).is_err()); // " pk_abc"
    /// assert!(Presented::new(&value, 99).is_err());
    /// ```
    pub fn new(header: &HeaderValue, start: usize) -> Result<Self, Rejection> {
        // What precedes the token must be visible ASCII (as `to_str` would
        // have it); the token itself is checked by its stricter grammar.
        // A b64token is ASCII: checked on the bytes, no UTF-8 pass.
        let bytes = header.as_bytes();
        let ok = bytes.get(..start).is_some_and(|before| {
            before
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        }) && is_b64token(&bytes[start..]);
        if !ok {
            return Err(NOT_A_TOKEN);
        }
        Ok(Presented {
            header: header.clone(),
            start,
        })
    }

    /// The token.
    pub(crate) fn value(&self) -> &str {
        // `new` checked it is a b64token (ASCII): this cannot fail, and
        // `from_utf8`'s ASCII run is cheaper than `to_str`'s byte walk.
        self.header
            .as_bytes()
            .get(self.start..)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
    }
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Presented(<redacted>)")
    }
}

/// A credential source as the layer holds it: built-in or yours. Cheap to
/// clone.
///
/// ```
/// use keyward::http::Source;
///
/// let sources = [Source::api_key(), Source::bearer()];
/// assert_eq!(sources[0].describe(), "X-Api-Key");
/// assert_eq!(sources[1].describe(), "Authorization: Bearer");
/// ```
#[derive(Clone, Debug)]
pub struct Source {
    inner: Arc<dyn CredentialSource>,
    /// `Authorization: Bearer`: the only source whose values may go to an
    /// external authenticator.
    bearer: bool,
    /// The built-in whole-value source ([`WholeValue`]): its value is read
    /// as [`Presented::new`]`(value, 0)`.
    whole: bool,
}

impl Source {
    /// `X-Api-Key: <token>`.
    #[must_use]
    pub fn api_key() -> Self {
        Self::api_key_header(HeaderName::from_static(API_KEY_HEADER))
    }

    /// `<name>: <token>`: the API key header under another name.
    #[must_use]
    pub fn api_key_header(name: HeaderName) -> Self {
        let describe = canonical_name(&name);
        Source {
            inner: Arc::new(WholeValue { name, describe }),
            bearer: false,
            whole: true,
        }
    }

    /// `Authorization: Bearer <token>` (RFC 6750), the scheme in any case.
    /// Values of other schemes are not credentials of this source.
    #[must_use]
    pub fn bearer() -> Self {
        Source {
            inner: Arc::new(Bearer),
            bearer: true,
            whole: false,
        }
    }

    /// A source of your own.
    #[must_use]
    pub fn custom(source: impl CredentialSource) -> Self {
        Source {
            inner: Arc::new(source),
            bearer: false,
            whole: false,
        }
    }

    /// How the source is named in messages.
    #[must_use]
    pub fn describe(&self) -> &str {
        self.inner.describe()
    }

    fn same_as(&self, other: &Source) -> bool {
        self.bearer == other.bearer && self.inner.header() == other.inner.header()
    }
}

/// A header whose whole value is the token (`X-Api-Key`).
#[derive(Debug)]
struct WholeValue {
    name: HeaderName,
    describe: String,
}

impl CredentialSource for WholeValue {
    fn header(&self) -> &HeaderName {
        &self.name
    }
    fn describe(&self) -> &str {
        &self.describe
    }
    fn read(&self, value: &HeaderValue) -> Result<Option<Presented>, Rejection> {
        Presented::new(value, 0).map(Some)
    }
}

/// `Authorization: Bearer`.
#[derive(Debug)]
struct Bearer;

impl CredentialSource for Bearer {
    fn header(&self) -> &HeaderName {
        &AUTHORIZATION
    }
    fn describe(&self) -> &str {
        "Authorization: Bearer"
    }
    fn read(&self, value: &HeaderValue) -> Result<Option<Presented>, Rejection> {
        // `visible_text` checked it is visible ASCII.
        let text = value.to_str().map_err(|_| {
            Rejection::InvalidRequest("a credential or tenant header is not visible ASCII")
        })?;
        match bearer_token(text)? {
            Some(token) => Presented::new(value, text.len() - token.len()).map(Some),
            None => Ok(None),
        }
    }
}

/// `X-Api-Key` for `x-api-key`: each dash-separated word capitalized.
fn canonical_name(name: &HeaderName) -> String {
    name.as_str()
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The default name of the API key header.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The usual name of the header that lists the "soon" scopes a caller lacks
/// ([`AuthLayer::soon_scopes_header`](crate::http::AuthLayer::soon_scopes_header)).
pub const SOON_SCOPES_HEADER: &str = "x-soon-scopes-missing";
/// The default name of the tenant header.
pub const TENANT_HEADER: &str = "x-property-id";
/// The default longest credential accepted, in bytes.
pub const DEFAULT_MAX_CREDENTIAL_LEN: usize = 4096;

/// A presented credential and the sources it came in (a bit per source of
/// the layer's [`CredentialRules`]).
pub(crate) struct Credential {
    presented: Presented,
    /// The sources that carried it (only a Bearer source's may go to an
    /// external authenticator).
    pub(crate) from: SourceSet,
}

impl Credential {
    /// The token.
    pub(crate) fn value(&self) -> &str {
        self.presented.value()
    }
}

/// A set of a layer's sources, by index (a layer has at most 64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SourceSet(u64);

impl SourceSet {
    pub(crate) const ALL: SourceSet = SourceSet(u64::MAX);
    fn with(self, index: usize) -> Self {
        SourceSet(self.0 | 1 << index)
    }
    pub(crate) fn intersects(self, other: SourceSet) -> bool {
        self.0 & other.0 != 0
    }
}

/// The most sources one layer reads.
pub(crate) const MAX_SOURCES: usize = 64;

/// The sources a layer reads and the kinds each may carry.
#[derive(Clone, Debug)]
pub(crate) struct CredentialRules {
    /// Distinct sources, read in this order.
    sources: Vec<Source>,
    /// Whether a source reads `Authorization: Bearer` (else `Authorization`
    /// is checked for a malformed Bearer credential, whatever other source
    /// reads it).
    reads_bearer: bool,
    pub(crate) max_len: usize,
    /// "X-Api-Key or Authorization: Bearer", for the 401.
    pub(crate) accepted: Arc<str>,
}

impl Default for CredentialRules {
    fn default() -> Self {
        CredentialRules::new(
            &[Source::api_key(), Source::bearer()],
            DEFAULT_MAX_CREDENTIAL_LEN,
        )
    }
}

impl CredentialRules {
    /// Rules reading `sources` (duplicates read once).
    pub(crate) fn new(sources: &[Source], max_len: usize) -> Self {
        let mut rules = CredentialRules {
            sources: Vec::new(),
            reads_bearer: false,
            max_len,
            accepted: Arc::from("credentials of a kind this layer accepts (it accepts none)"),
        };
        for source in sources {
            rules.add(source);
        }
        rules
    }

    /// Adds `source` unless the rules read it already; its index. `None`
    /// when the rules read [`MAX_SOURCES`] already: the source is never
    /// read (its bit would not fit in a [`SourceSet`]).
    pub(crate) fn add(&mut self, source: &Source) -> Option<usize> {
        if let Some(i) = self.sources.iter().position(|s| s.same_as(source)) {
            return Some(i);
        }
        if self.sources.len() >= MAX_SOURCES {
            return None;
        }
        self.sources.push(source.clone());
        self.reads_bearer |= source.bearer;
        let names: Vec<&str> = self.sources.iter().map(Source::describe).collect();
        self.accepted = Arc::from(names.join(" or "));
        Some(self.sources.len() - 1)
    }

    /// The set of `sources` (each added if missing and if it fits).
    pub(crate) fn set_of(&mut self, sources: &[Source]) -> SourceSet {
        sources.iter().fold(SourceSet::default(), |set, s| {
            self.add(s).map_or(set, |i| set.with(i))
        })
    }

    /// The credential of a request: `Ok(None)` when it presents none of ours.
    pub(crate) fn extract(&self, headers: &HeaderMap) -> Result<Option<Credential>, Rejection> {
        let mut found: Option<Credential> = None;
        for (i, source) in self.sources.iter().enumerate() {
            let Some(value) = single_header(headers, source.inner.header(), self.max_len)? else {
                continue;
            };
            let presented = if source.whole {
                Some(whole_value(value)?)
            } else {
                visible_text(value)?;
                source.inner.read(value)?
            };
            let Some(presented) = presented else {
                continue;
            };
            match &mut found {
                None => {
                    found = Some(Credential {
                        presented,
                        from: SourceSet::default().with(i),
                    });
                }
                Some(first) if first.value() == presented.value() => {
                    first.from = first.from.with(i);
                }
                Some(_) => {
                    return Err(Rejection::InvalidRequest(
                        "two headers carry different credentials",
                    ))
                }
            }
        }
        if !self.reads_bearer {
            // Not ours to read as Bearer (maybe a custom source's scheme),
            // but never ambiguous: a malformed Bearer is refused here too.
            // One lookup when there is none.
            for value in headers.get_all(AUTHORIZATION) {
                foreign_authorization(value)?;
            }
        }
        Ok(found)
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
    match single_header(headers, name, max_len)? {
        None => Ok(None),
        Some(value) => Ok(Some((value, visible_text(value)?))),
    }
}

/// The value of a header that must appear at most once and be at most
/// `max_len` bytes long.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    max_len: usize,
) -> Result<Option<&'a HeaderValue>, Rejection> {
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
    Ok(Some(value))
}

/// The token of a whole-value source's header (`X-Api-Key`): as
/// [`visible_text`] then [`Presented::new`]`(value, 0)` would have it, one
/// pass over the value when it is a token. A b64token is visible ASCII and
/// not empty, so `visible_text` would pass; it runs only to name what is
/// wrong with a value that is not one.
fn whole_value(value: &HeaderValue) -> Result<Presented, Rejection> {
    Presented::new(value, 0).or_else(|rejection| {
        visible_text(value)?;
        Err(rejection)
    })
}

/// The text of a credential or tenant header: visible ASCII, not empty.
fn visible_text(value: &HeaderValue) -> Result<&str, Rejection> {
    let text = value.to_str().map_err(|_| {
        Rejection::InvalidRequest("a credential or tenant header is not visible ASCII")
    })?;
    if text.is_empty() {
        return Err(Rejection::InvalidRequest(
            "a credential or tenant header is empty",
        ));
    }
    Ok(text)
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
    if is_b64token(value.as_bytes()) {
        Ok(value)
    } else {
        Err(NOT_A_TOKEN)
    }
}

/// [`token`]'s check on bytes, without a branch per byte.
fn is_b64token(value: &[u8]) -> bool {
    let body_len = value.len() - value.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &value[..body_len];
    !body.is_empty()
        && body
            .iter()
            .fold(true, |all, &b| all & B64TOKEN[usize::from(b)])
}

const NOT_A_TOKEN: Rejection =
    Rejection::InvalidRequest("the credential is not a single token (RFC 6750 b64token)");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presented_token_is_redacted_in_debug() {
        let value = HeaderValue::from_static("pk_secret");
        let presented = Presented::new(&value, 0).unwrap();
        assert_eq!(format!("{presented:?}"), "Presented(<redacted>)");
        assert_eq!(presented.value(), "pk_secret");
    }

    /// Only visible ASCII may precede the token, as `HeaderValue::to_str`
    /// requires of the whole value.
    #[test]
    fn what_precedes_the_token_must_be_visible_ascii() {
        // obs-text: the only bytes a HeaderValue holds that are not visible.
        for before in [&b"\xffx "[..], b"x\x80 "] {
            let value = HeaderValue::from_bytes(&[before, b"pk_abc"].concat()).unwrap();
            assert!(Presented::new(&value, before.len()).is_err(), "{before:?}");
        }
        let value = HeaderValue::from_bytes(b"Tok\ten ~x pk_abc").unwrap();
        let presented = Presented::new(&value, 10).unwrap();
        assert_eq!(presented.value(), "pk_abc");
        let value = HeaderValue::from_bytes(b"pk_abc\xff").unwrap();
        assert!(Presented::new(&value, 0).is_err());
    }

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
    fn each_malformed_bearer_says_what_is_wrong() {
        let reason = |value| match bearer_token(value) {
            Err(Rejection::InvalidRequest(reason)) => reason,
            other => panic!("{value:?}: {other:?}"),
        };
        assert_eq!(reason("Bearer"), "Bearer without a token");
        assert_eq!(
            reason("Bearer "),
            "Bearer must be followed by exactly one space and the token"
        );
        assert_eq!(
            reason("Bearer\tt"),
            "Bearer must be followed by exactly one space and the token"
        );
        assert_eq!(
            reason("Bearer t t"),
            "the credential is not a single token (RFC 6750 b64token)"
        );
    }

    /// `whole_value` answers as checking the text first, then the token
    /// did: the same token, or the same rejection.
    #[test]
    fn a_whole_value_is_read_as_its_text_then_its_token() {
        let reference =
            |value: &HeaderValue| visible_text(value).and_then(|_| Presented::new(value, 0));
        let mut values: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"pk_abc".to_vec(),
            b"pk_abc==".to_vec(),
            b"==".to_vec(),
            b"pk abc".to_vec(),
            b"\tpk".to_vec(),
            b"pk_abc\xff".to_vec(),
        ];
        for b in 0..=255u8 {
            for at in [0, 3, 6] {
                let mut value = b"pk_abc".to_vec();
                value.insert(at, b);
                values.push(value);
            }
            values.push(vec![b]);
        }
        let mut checked = 0;
        for bytes in values {
            let Ok(value) = HeaderValue::from_bytes(&bytes) else {
                continue;
            };
            checked += 1;
            match (whole_value(&value), reference(&value)) {
                (Ok(got), Ok(want)) => assert_eq!(got.value(), want.value()),
                (Err(got), Err(want)) => assert_eq!(got, want, "{bytes:?}"),
                (got, want) => panic!("{bytes:?}: {got:?} against {want:?}"),
            }
        }
        assert!(checked > 700, "{checked}");
    }

    #[test]
    fn a_value_of_exactly_the_maximum_length_is_accepted() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("0123456789"));
        assert!(single_value(&headers, &AUTHORIZATION, 10)
            .unwrap()
            .is_some());
        assert!(matches!(
            single_value(&headers, &AUTHORIZATION, 9),
            Err(Rejection::InvalidRequest(
                "a credential or tenant header is too long"
            ))
        ));
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
        assert_eq!(credential.value(), "pk_a");
    }

    /// A Bearer (or custom) source's value is checked as text before the
    /// source reads it: an empty or non-visible `Authorization` says so,
    /// whatever the source would have made of it.
    #[test]
    fn a_bearer_value_is_checked_as_text_first() {
        let rules = CredentialRules::default();
        for (value, reason) in [
            (&b""[..], "a credential or tenant header is empty"),
            (
                &b"Bearer pk_\xff"[..],
                "a credential or tenant header is not visible ASCII",
            ),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
            assert!(
                matches!(rules.extract(&headers), Err(Rejection::InvalidRequest(r)) if r == reason),
                "{value:?}"
            );
        }
    }

    /// With the API key header as the only source, `Authorization` is not
    /// read for a credential, yet a malformed Bearer in it is refused.
    #[test]
    fn an_api_key_only_source_refuses_a_malformed_bearer() {
        let rules = CredentialRules::new(&[Source::api_key()], DEFAULT_MAX_CREDENTIAL_LEN);
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
            assert_eq!(credential.value(), "pk_a");
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
