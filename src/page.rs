//! Paged lists of a tenant's keys: the query ([`ListQuery`]), the page
//! ([`KeyPage`]) and its opaque cursor.
//!
//! A cursor names the position of a page's last key, `(created_at, id)`,
//! and carries a check value over that position and the tenant. It is not a
//! secret and grants nothing: the store query is always scoped to the
//! caller's tenant, so a cursor can only ever select among the caller's own
//! keys. The check value makes a cursor altered in transit, or one of
//! another tenant, a typed error ([`ManageError::InvalidCursor`]) instead
//! of a silently different page.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::ManageError;
use crate::key::{KeyId, KeyInfo, OwnerId, StateFilter, TenantId};

/// Largest page [`Keyring::list_page`](crate::Keyring::list_page) returns.
pub const MAX_PAGE_LIMIT: usize = 100;

/// The page size of a [`ListQuery`] that names none.
pub const DEFAULT_PAGE_LIMIT: usize = 50;

/// Longest cursor accepted; longer input is refused before parsing.
const MAX_CURSOR_LEN: usize = 128;

/// Which of a tenant's keys to list, and which page: built with
/// [`ListQuery::new`] and passed to
/// [`Keyring::list_page`](crate::Keyring::list_page).
///
/// ```
/// use keyward::{ListQuery, StateFilter};
///
/// let first = ListQuery::new().kind("pl").state(StateFilter::Active).limit(20);
/// # let _ = first;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct ListQuery {
    pub(crate) kinds: Vec<String>,
    pub(crate) state: StateFilter,
    pub(crate) limit: usize,
    pub(crate) cursor: Option<String>,
    pub(crate) owner: Option<OwnerId>,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery::new()
    }
}

impl ListQuery {
    /// The first page of keys of every kind and state,
    /// [`DEFAULT_PAGE_LIMIT`] keys long.
    pub fn new() -> Self {
        ListQuery {
            kinds: Vec::new(),
            state: StateFilter::All,
            limit: DEFAULT_PAGE_LIMIT,
            cursor: None,
            owner: None,
        }
    }

    /// Only keys of this kind (prefix); called again, of any of the kinds.
    pub fn kind(mut self, prefix: &str) -> Self {
        self.kinds.push(prefix.to_owned());
        self
    }

    /// Only the keys of this owner inside the tenant (personal tokens).
    pub fn owner(mut self, owner: OwnerId) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Only keys in this state.
    pub fn state(mut self, state: StateFilter) -> Self {
        self.state = state;
        self
    }

    /// At most `limit` keys (1 to [`MAX_PAGE_LIMIT`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The page after the one whose [`KeyPage::next_cursor`] this is.
    pub fn cursor(mut self, cursor: &str) -> Self {
        self.cursor = Some(cursor.to_owned());
        self
    }
}

/// One page of keys, newest first, and the cursor of the next page.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct KeyPage {
    keys: Vec<KeyInfo>,
    next_cursor: Option<String>,
}

impl KeyPage {
    pub(crate) fn new(keys: Vec<KeyInfo>, next_cursor: Option<String>) -> Self {
        KeyPage { keys, next_cursor }
    }

    /// The keys, newest first (by creation, then id).
    #[must_use]
    pub fn keys(&self) -> &[KeyInfo] {
        &self.keys
    }

    /// The keys, owned.
    #[must_use]
    pub fn into_keys(self) -> Vec<KeyInfo> {
        self.keys
    }

    /// The cursor of the next page ([`ListQuery::cursor`]), `None` on the
    /// last page. Opaque, valid for this tenant only, and URL-safe
    /// (`[A-Za-z0-9._-]`): it goes into a query string as it is.
    #[must_use]
    pub fn next_cursor(&self) -> Option<&str> {
        self.next_cursor.as_deref()
    }
}

/// The cursor after `(created_at, id)` for `tenant`:
/// `<unix nanoseconds>.<id>.<check>`, all URL-safe.
pub(crate) fn encode_cursor(tenant: &TenantId, created_at: OffsetDateTime, id: &KeyId) -> String {
    let nanos = created_at.unix_timestamp_nanos();
    format!("{nanos}.{id}.{}", check(tenant, nanos, id))
}

/// The position a cursor names, if it is well formed and was made for
/// `tenant`.
pub(crate) fn decode_cursor(
    tenant: &TenantId,
    cursor: &str,
) -> Result<(OffsetDateTime, KeyId), ManageError> {
    if cursor.len() > MAX_CURSOR_LEN {
        return Err(ManageError::InvalidCursor);
    }
    let mut parts = cursor.split('.');
    let (Some(nanos), Some(id), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ManageError::InvalidCursor);
    };
    // Digits with an optional sign only: `i128::from_str` also takes `+`.
    let digits = nanos.strip_prefix('-').unwrap_or(nanos);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ManageError::InvalidCursor);
    }
    let nanos: i128 = nanos.parse().map_err(|_| ManageError::InvalidCursor)?;
    let id = KeyId::parse(id).ok_or(ManageError::InvalidCursor)?;
    let at =
        OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| ManageError::InvalidCursor)?;
    // Not a secret comparison (the check value is computable by anyone), so
    // no constant-time equality is needed.
    if tag != check(tenant, nanos, &id) {
        return Err(ManageError::InvalidCursor);
    }
    Ok((at, id))
}

/// 64 bits of SHA-256 over the tenant and the position, in hex.
fn check(tenant: &TenantId, nanos: i128, id: &KeyId) -> String {
    let mut digest = Sha256::new();
    digest.update(b"keyward page cursor v1\0");
    digest.update((tenant.as_str().len() as u64).to_be_bytes());
    digest.update(tenant.as_str().as_bytes());
    digest.update(nanos.to_be_bytes());
    digest.update(id.as_str().as_bytes());
    digest.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn a_cursor_round_trips_for_its_tenant_only() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_456_789).unwrap();
        let id = KeyId::generate();
        let cursor = encode_cursor(&tenant("org_1"), at, &id);
        assert_eq!(decode_cursor(&tenant("org_1"), &cursor).unwrap(), (at, id));
        assert!(matches!(
            decode_cursor(&tenant("org_2"), &cursor),
            Err(ManageError::InvalidCursor)
        ));
    }

    #[test]
    fn an_altered_cursor_is_refused() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let id = KeyId::parse("key_abc").unwrap();
        let t = tenant("org_1");
        let cursor = encode_cursor(&t, at, &id);
        let (nanos, rest) = cursor.split_once('.').unwrap();
        let (_, tag) = rest.split_once('.').unwrap();
        let earlier = format!("{}.key_abc.{tag}", nanos.parse::<i128>().unwrap() - 1);
        let other_id = format!("{nanos}.key_abd.{tag}");
        let bad_tag = format!("{nanos}.key_abc.{}", "0".repeat(16));
        let plus = format!("+{cursor}");
        let long = format!("{cursor}{}", "0".repeat(MAX_CURSOR_LEN));
        for bad in [
            "",
            ".",
            "..",
            "1.key_abc",
            "x.key_abc.00",
            "-.key_abc.00",
            &format!("{cursor}."),
            &earlier,
            &other_id,
            &bad_tag,
            &plus,
            &long,
            &cursor.to_uppercase(),
            "99999999999999999999999999999999999.key_abc.00",
        ] {
            assert!(
                matches!(decode_cursor(&t, bad), Err(ManageError::InvalidCursor)),
                "{bad:?}"
            );
        }
        assert!(decode_cursor(&t, &cursor).is_ok());
    }

    #[test]
    fn negative_instants_round_trip() {
        let at = OffsetDateTime::UNIX_EPOCH - time::Duration::nanoseconds(5);
        let id = KeyId::generate();
        let cursor = encode_cursor(&tenant("t"), at, &id);
        assert!(cursor.starts_with("-5."));
        assert_eq!(decode_cursor(&tenant("t"), &cursor).unwrap().0, at);
    }
}
