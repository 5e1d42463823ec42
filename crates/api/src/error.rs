//! The error table: every error the server sends is an [`ErrorBody`] whose `code` is one of
//! [`ErrorCode`], with the status the table gives it. Codes are stable: clients may match on
//! them; messages are for people and may change.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! error_codes {
    ($($variant:ident = $code:literal, $status:literal, $doc:literal;)*) => {
        /// A machine-readable error condition.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $(#[doc = $doc] $variant,)*
        }

        impl ErrorCode {
            /// Every code, in the table's order.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status this condition is sent with.
            pub const fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// What the condition means, for the documentation.
            pub const fn description(self) -> &'static str {
                match self { $(ErrorCode::$variant => $doc,)* }
            }
        }
    };
}

error_codes! {
    BadRequest = "bad_request", 400,
        "The request is not one this route can act on (a value out of range, an unsupported combination).";
    InvalidJson = "invalid_json", 400,
        "The body is not JSON, or is empty where a JSON object is required.";
    InvalidField = "invalid_field", 400,
        "A field of the body is missing, of the wrong type or out of range; `field` names it.";
    InvalidPath = "invalid_path", 400,
        "A parameter in the URL path is malformed.";
    InvalidQuery = "invalid_query", 400,
        "The query string is malformed or a query parameter is invalid; `field` names it.";
    Unauthenticated = "unauthenticated", 401,
        "No credential, or one the server does not know (a revoked key looks the same).";
    KeyExpired = "key_expired", 401,
        "The API key has passed its expiry time.";
    Forbidden = "forbidden", 403,
        "The caller may see the object but not do this to it.";
    CorsOriginNotAllowed = "cors_origin_not_allowed", 403,
        "A browser preflight from an origin that is not on the server's allowlist.";
    NotFound = "not_found", 404,
        "No such route, or no such object among those the caller may see.";
    MethodNotAllowed = "method_not_allowed", 405,
        "The route exists but does not take this method.";
    BodyTimeout = "body_timeout", 408,
        "The request body did not arrive within the server's read timeout.";
    Conflict = "conflict", 409,
        "The change conflicts with the current state (a name in use, a stale version).";
    PreconditionFailed = "precondition_failed", 412,
        "The object changed since it was read: the `If-Match` header names none of its current `ETag`. Read it again and redo the change.";
    BodyTooLarge = "body_too_large", 413,
        "The body, a row in it, or an upload is larger than the server's limit.";
    StorageQuotaExceeded = "storage_quota_exceeded", 413,
        "The organization's storage quota is used up.";
    UnsupportedMediaType = "unsupported_media_type", 415,
        "The body's content type or encoding is not one the route takes.";
    QueryTimeout = "query_timeout", 422,
        "A query ran past the server's per-query time limit; narrow it (a filter on `root_span_id`, a smaller object).";
    RateLimited = "rate_limited", 429,
        "Too many requests in flight for this key (retry after `Retry-After` seconds), or too many failed sign-ins for the account or address (retry after 15 minutes).";
    Internal = "internal", 500,
        "A fault in the server; the detail is in the server's log under the request id.";
    ServerBusy = "server_busy", 503,
        "The server is at one of its own limits (request bodies held in memory); retry shortly.";
    NotReady = "not_ready", 503,
        "A readiness check failed; the body of `/readyz` names it.";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people; may change between versions.
    pub message: String,
    /// The offending field or parameter, as a dotted path, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The request's id, as in the `X-Request-Id` response header and the server's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The error table as Markdown, for `docs/errors.md`.
pub fn error_table_markdown() -> String {
    let mut out = String::from("| Code | Status | Meaning |\n|---|---|---|\n");
    for c in ErrorCode::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            c.as_str(),
            c.status(),
            c.description()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_names() {
        for c in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(c).ok(),
                Some(serde_json::json!(c.as_str()))
            );
            assert!((400..600).contains(&c.status()), "{c}");
        }
    }

    #[test]
    fn the_documented_table_is_current() {
        let doc = include_str!("../../../docs/errors.md");
        assert!(
            doc.contains(&error_table_markdown()),
            "docs/errors.md is out of date; its table must be:\n{}",
            error_table_markdown()
        );
    }
}
