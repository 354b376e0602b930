//! Reading requests: the body (size limit, content type, strict JSON) and
//! the list query. Every refusal is a [`Failure`]; nothing here panics.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;

use axum::body::{Body, HttpBody};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;

use super::router::Failure;
use crate::key::{OwnerId, StateFilter};
use crate::usage::{Credits, Refill, UsageError};

/// The body of `POST /`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) scopes: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) expires_in: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) expires_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub(crate) rate_limit: Option<u32>,
    #[serde(default, deserialize_with = "unique_map")]
    pub(crate) metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(crate) owner: Option<String>,
    #[serde(default)]
    pub(crate) allowed_ips: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) credits: Option<CreditsBody>,
    #[serde(default)]
    pub(crate) budget: Option<String>,
}

/// Credits in a body: `{"remaining", "refill"?: {"amount", "period":
/// "daily" | "monthly", "day"? (monthly: 1-31)}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreditsBody {
    pub(crate) remaining: u64,
    #[serde(default)]
    pub(crate) refill: Option<RefillBody>,
}

/// A refill in a body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefillBody {
    pub(crate) amount: u64,
    pub(crate) period: String,
    #[serde(default)]
    pub(crate) day: Option<u8>,
}

impl CreditsBody {
    /// The credits asked for, or why not.
    pub(crate) fn to_credits(&self) -> Result<Credits, Failure> {
        let mut credits = Credits::new(self.remaining).map_err(usage_failure)?;
        if let Some(refill) = &self.refill {
            let refill = match (refill.period.as_str(), refill.day) {
                ("daily", None) => Refill::daily(refill.amount),
                ("monthly", Some(day)) => Refill::monthly(refill.amount, day),
                ("monthly", None) => {
                    return Err(Failure::body("a monthly refill needs a day (1-31)"))
                }
                ("daily", Some(_)) => return Err(Failure::body("a daily refill takes no day")),
                _ => return Err(Failure::body("refill period must be daily or monthly")),
            }
            .map_err(usage_failure)?;
            credits = credits.refill(refill);
        }
        Ok(credits)
    }
}

/// A usage-control value refused: 400 `invalid_body` with its reason.
pub(crate) fn usage_failure(err: UsageError) -> Failure {
    Failure::Body(err.to_string())
}

/// The body of `PATCH /{id}`: each field absent keeps its value; `null`
/// removes the allowlist, the credits or the budget.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ControlsBody {
    #[serde(default, deserialize_with = "present")]
    pub(crate) allowed_ips: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) credits: Option<Option<CreditsBody>>,
    #[serde(default)]
    pub(crate) add_credits: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) budget: Option<Option<String>>,
    #[serde(default)]
    pub(crate) rate_limit: Option<u32>,
}

/// A field that is present (`Some`), with `null` as `Some(None)`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The body of `POST /{id}/rotate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateBody {
    #[serde(default)]
    pub(crate) grace_seconds: Option<u64>,
}

/// The body of `POST /{id}/revoke`: nothing, or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

/// A string map that refuses a key given twice (serde's maps keep the last).
fn unique_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Unique;
    impl<'de> Visitor<'de> for Unique {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of strings")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom("a metadata key is given twice"));
                }
                out.insert(key, value);
            }
            Ok(Some(out))
        }
    }
    deserializer.deserialize_any(Unique)
}

/// Reads a JSON body of at most `limit` bytes.
pub(crate) async fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, Failure> {
    match read_body(headers, body, limit).await? {
        Some(bytes) => strict_json(&bytes),
        None => strict_json(b""),
    }
}

/// [`json_body`], or `T::default()` for an empty body (whatever its
/// content type).
pub(crate) async fn optional_json_body<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, Failure> {
    match read_body(headers, body, limit).await? {
        Some(bytes) => strict_json(&bytes),
        None => Ok(T::default()),
    }
}

/// The body's bytes, `None` when empty; 413 past `limit`, 415 for a
/// non-empty body that is not declared JSON.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Option<Vec<u8>>, Failure> {
    let declared = declared_length(headers)?;
    if declared.is_some_and(|n| n > limit) {
        return Err(Failure::PayloadTooLarge);
    }
    let bytes = if declared == Some(0) {
        Vec::new()
    } else {
        read(body, limit).await?
    };
    if bytes.is_empty() {
        // An empty body needs no type; a required one is malformed JSON,
        // unless it claims another type.
        return if headers.contains_key(CONTENT_TYPE) && !is_json(headers) {
            Err(Failure::UnsupportedMediaType)
        } else {
            Ok(None)
        };
    }
    if !is_json(headers) {
        return Err(Failure::UnsupportedMediaType);
    }
    Ok(Some(bytes))
}

/// `Content-Length`, if sent; a malformed one is a bad request.
fn declared_length(headers: &HeaderMap) -> Result<Option<usize>, Failure> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let parsed = value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .map(|v| v.parse::<usize>().unwrap_or(usize::MAX));
    match (parsed, values.next()) {
        (Some(n), None) => Ok(Some(n)),
        _ => Err(Failure::body("malformed Content-Length")),
    }
}

/// `Content-Type: application/json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    value.to_str().is_ok_and(|v| {
        let essence = v.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json")
    })
}

/// Collects the body, refusing it once it passes `limit` bytes.
async fn read(mut body: Body, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|_| Failure::body("the body could not be read"))?;
        if let Ok(data) = frame.into_data() {
            if data.len() > limit.saturating_sub(out.len()) {
                return Err(Failure::PayloadTooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// JSON into `T`: unknown fields, duplicate fields, wrong types and
/// trailing data refused. The message names the problem, not the input.
fn strict_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Failure> {
    // An object, never an array (serde would read a struct from one).
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(Failure::body("the body must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|err| {
        let what = match err.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "malformed JSON"
            }
            _ => "invalid JSON body",
        };
        Failure::Body(format!("{what}: {}", short(&err.to_string())))
    })
}

/// At most 200 characters of a message.
fn short(message: &str) -> String {
    match message.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

/// The query of `GET /`.
#[derive(Debug, Default)]
pub(crate) struct ListParams {
    pub(crate) kind: Option<String>,
    pub(crate) state: StateFilter,
    pub(crate) limit: Option<usize>,
    pub(crate) cursor: Option<String>,
    pub(crate) owner: Option<OwnerId>,
}

/// The query of `GET /grid`.
#[derive(Debug, Default)]
pub(crate) struct GridParams {
    pub(crate) kind: Option<String>,
}

/// Longest query string read.
const MAX_QUERY_LEN: usize = 2048;

/// `k=v&…` pairs, percent-decoded; each name at most once.
fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, Failure> {
    let query = query.unwrap_or_default();
    if query.len() > MAX_QUERY_LEN {
        return Err(Failure::body("the query string is too long"));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| Failure::body("the query string is not UTF-8"))
        };
        let (name, value) = (decode(name)?, decode(value)?);
        if out.iter().any(|(n, _)| *n == name) {
            return Err(Failure::body("a query parameter is given twice"));
        }
        out.push((name, value));
    }
    Ok(out)
}

pub(crate) fn list_params(query: Option<&str>) -> Result<ListParams, Failure> {
    let mut params = ListParams::default();
    for (name, value) in pairs(query)? {
        match name.as_str() {
            "kind" => params.kind = Some(value),
            "state" => {
                params.state = value.parse().map_err(|_| {
                    Failure::body("state must be one of all, active, revoked, expired")
                })?;
            }
            "limit" => {
                let limit = Some(value.as_str())
                    .filter(|v| {
                        !v.is_empty() && v.len() <= 3 && v.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|n| (1..=crate::page::MAX_PAGE_LIMIT).contains(n))
                    .ok_or_else(|| Failure::body("limit must be 1-100"))?;
                params.limit = Some(limit);
            }
            "cursor" => params.cursor = Some(value),
            "owner" => {
                let owner = OwnerId::parse(&value).ok_or_else(|| {
                    Failure::body(
                        "owner must be 1-200 characters without control or format characters",
                    )
                })?;
                params.owner = Some(owner);
            }
            _ => return Err(Failure::body("unknown query parameter")),
        }
    }
    Ok(params)
}

pub(crate) fn grid_params(query: Option<&str>) -> Result<GridParams, Failure> {
    let mut params = GridParams::default();
    for (name, value) in pairs(query)? {
        match name.as_str() {
            "kind" => params.kind = Some(value),
            _ => return Err(Failure::body("unknown query parameter")),
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_refuse_repeats_and_strangers() {
        let p = list_params(Some("kind=pl&state=active&limit=20&cursor=1.key_a.0f")).unwrap();
        assert_eq!(p.kind.as_deref(), Some("pl"));
        assert_eq!(p.state, StateFilter::Active);
        assert_eq!(p.limit, Some(20));
        assert_eq!(p.cursor.as_deref(), Some("1.key_a.0f"));
        assert_eq!(
            list_params(Some("kind=%70l")).unwrap().kind.as_deref(),
            Some("pl")
        );
        assert!(list_params(None).unwrap().kind.is_none());
        for bad in [
            "kind=pl&kind=pk",
            "limit=0",
            "limit=101",
            "limit=+5",
            "limit=",
            "limit=99999999999999999999999",
            "state=gone",
            "other=1",
            "kind=%FF",
        ] {
            assert!(list_params(Some(bad)).is_err(), "{bad}");
        }
        assert!(list_params(Some(&"a".repeat(MAX_QUERY_LEN + 1))).is_err());
        assert!(grid_params(Some("kind=pk")).is_ok());
        assert!(grid_params(Some("limit=1")).is_err());
    }

    #[test]
    fn metadata_keys_are_unique() {
        let err = strict_json::<CreateBody>(br#"{"name":"a","metadata":{"k":"1","k":"2"}}"#);
        assert!(err.is_err());
        let ok: CreateBody = strict_json(br#"{"name":"a","metadata":{"k":"1","j":"2"}}"#).unwrap();
        assert_eq!(ok.metadata.unwrap().len(), 2);
        let none: CreateBody = strict_json(br#"{"name":"a","metadata":null}"#).unwrap();
        assert!(none.metadata.is_none());
    }
}
