//! How the keyring's own errors answer over HTTP: [`IssueError`] and
//! [`ManageError`] render as a [`Rejection`](super::Rejection) does, through
//! the same function (`{"error", "message"}`, JSON, `no-store`).
//!
//! | error | status | `error` code |
//! |---|---|---|
//! | `IssueError::UnknownKind`, `ManageError::UnknownKind` | 400 | `unknown_kind` |
//! | `IssueError::Scope` | 400 | `invalid_scope` |
//! | `IssueError::InvalidName`, `InvalidTenant`, `InvalidOwner`, `InvalidMetadata` | 400 | `invalid_label` |
//! | `IssueError::ExpiryInPast`, `ManageError::InvalidCursor`, `InvalidLimit` | 400 | `invalid_body` |
//! | `IssueError::ExpiryNotAllowed` | 400 | `expiry_not_allowed` |
//! | `IssueError::NotFound`, `ManageError::NotFound` | 404 | `not_found` |
//! | `IssueError::Inactive` | 409 | `key_inactive` |
//! | `IssueError::Store`, `ManageError::Store` | 503 | `store_unavailable` |

use http::{Response, StatusCode};

use super::rejection::json_error;
use crate::error::{IssueError, ManageError};

/// `{"error": code, "message": message}`.
pub(crate) fn body(code: &str, message: &str) -> String {
    serde_json::json!({ "error": code, "message": message }).to_string()
}

/// The response of a status, code and message, as every refusal renders.
pub(crate) fn respond(status: StatusCode, code: &str, message: &str) -> Response<String> {
    json_error(status, body(code, message))
}

impl IssueError {
    /// The HTTP status: 400 for bad input, 404 for an unknown key, 409 for
    /// an inactive one, 503 when the store fails (never a 2xx).
    ///
    /// ```
    /// use keyward::{IssueError, StoreError};
    ///
    /// assert_eq!(IssueError::Inactive.status(), 409);
    /// assert_eq!(IssueError::Store(StoreError::unavailable("down")).status(), 503);
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            IssueError::UnknownKind(_)
            | IssueError::Scope(_)
            | IssueError::InvalidName
            | IssueError::InvalidTenant
            | IssueError::InvalidOwner
            | IssueError::InvalidBudget
            | IssueError::InvalidMetadata
            | IssueError::Controls(_)
            | IssueError::ExpiryInPast
            | IssueError::ExpiryNotAllowed(_) => StatusCode::BAD_REQUEST,
            IssueError::NotFound => StatusCode::NOT_FOUND,
            IssueError::Inactive => StatusCode::CONFLICT,
            IssueError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code of the body's `error` field (the table is in the
    /// docs of `keyward::manage`, feature `axum`).
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            IssueError::UnknownKind(_) => "unknown_kind",
            IssueError::Scope(_) => "invalid_scope",
            IssueError::InvalidName
            | IssueError::InvalidTenant
            | IssueError::InvalidOwner
            | IssueError::InvalidBudget
            | IssueError::InvalidMetadata => "invalid_label",
            IssueError::ExpiryInPast | IssueError::Controls(_) => "invalid_body",
            IssueError::ExpiryNotAllowed(_) => "expiry_not_allowed",
            IssueError::NotFound => "not_found",
            IssueError::Inactive => "key_inactive",
            IssueError::Store(_) => "store_unavailable",
        }
    }

    /// The JSON error response of a [`Rejection`](super::Rejection):
    /// status, `{"error": code, "message": text}`, `Content-Type:
    /// application/json`, `Cache-Control: no-store`. The message is the
    /// error's `Display` (never its source: a store's cause stays in logs).
    ///
    /// ```
    /// use keyward::IssueError;
    ///
    /// let response = IssueError::NotFound.to_response();
    /// assert_eq!(response.status(), 404);
    /// assert_eq!(response.headers()["content-type"], "application/json");
    /// assert_eq!(response.headers()["cache-control"], "no-store");
    /// assert_eq!(response.body(), r#"{"error":"not_found","message":"no such key"}"#);
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[must_use]
    pub fn to_response(&self) -> Response<String> {
        respond(self.status(), self.code(), &self.to_string())
    }
}

impl ManageError {
    /// The HTTP status: 400 for a bad query or control value, 404 for an
    /// unknown key, 409 for credits added to a key without any, 503
    /// when the store fails (never a 2xx).
    ///
    /// ```
    /// use keyward::ManageError;
    ///
    /// assert_eq!(ManageError::NotFound.status(), 404);
    /// assert_eq!(ManageError::InvalidCursor.status(), 400);
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ManageError::InvalidCursor
            | ManageError::InvalidLimit
            | ManageError::UnknownKind(_) => StatusCode::BAD_REQUEST,
            ManageError::Controls(crate::usage::UsageError::NotMetered) => StatusCode::CONFLICT,
            ManageError::Controls(_) => StatusCode::BAD_REQUEST,
            ManageError::NotFound => StatusCode::NOT_FOUND,
            ManageError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code of the body's `error` field.
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            ManageError::InvalidCursor | ManageError::InvalidLimit => "invalid_body",
            ManageError::UnknownKind(_) => "unknown_kind",
            ManageError::Controls(crate::usage::UsageError::NotMetered) => "key_not_metered",
            ManageError::Controls(_) => "invalid_body",
            ManageError::NotFound => "not_found",
            ManageError::Store(_) => "store_unavailable",
        }
    }

    /// The JSON error response, as [`IssueError::to_response`].
    ///
    /// ```
    /// use keyward::{ManageError, StoreError};
    ///
    /// let response = ManageError::Store(StoreError::unavailable("connection refused")).to_response();
    /// assert_eq!(response.status(), 503);
    /// assert!(!response.body().contains("connection refused"));
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    #[must_use]
    pub fn to_response(&self) -> Response<String> {
        respond(self.status(), self.code(), &self.to_string())
    }
}

#[cfg(feature = "axum")]
mod axum_impls {
    use axum_core::response::{IntoResponse, Response};

    use crate::error::{IssueError, ManageError};

    /// The JSON error response ([`IssueError::to_response`]), so handlers
    /// can return the keyring's errors.
    impl IntoResponse for IssueError {
        fn into_response(self) -> Response {
            self.to_response().into_response()
        }
    }

    /// The JSON error response ([`ManageError::to_response`]).
    impl IntoResponse for ManageError {
        fn into_response(self) -> Response {
            self.to_response().into_response()
        }
    }
}
