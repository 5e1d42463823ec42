//! The services' error enum. The edge maps each variant to a stable code and status.

use holdfast_api::ErrorCode;
use holdfast_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// A body field or query parameter that is missing, of the wrong type or out of range.
    #[error("{message}")]
    InvalidField {
        field: String,
        message: String,
        in_query: bool,
    },
    /// A body that is not JSON, or is empty where an object is required.
    #[error("{0}")]
    InvalidJson(String),
    /// A malformed path parameter.
    #[error("{0}")]
    InvalidPath(String),
    /// A key past its expiry.
    #[error("API key has expired")]
    KeyExpired,
    #[error("{0}")]
    Conflict(String),
    /// An `If-Match` precondition that the object's current version does not meet.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    TooLarge(String),
    /// The organization's storage quota is used up.
    #[error("{0}")]
    QuotaExceeded(String),
    /// Too many requests in flight for one key.
    #[error("{0}")]
    RateLimited(String),
    /// Sign-in refused for a while after too many failures; retry after this many seconds.
    #[error("{0}")]
    SignInThrottled(String, u64),
    /// The server is at a limit of its own (request bodies in memory); try again shortly.
    #[error("{0}")]
    Busy(String),
    /// A request body did not arrive in time.
    #[error("{0}")]
    Timeout(String),
    /// A query ran past the per-query time limit.
    #[error("{0}")]
    QueryTimeout(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    /// A body field that is wrong; `field` is its dotted path.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            message: message.into(),
            in_query: false,
        }
    }

    /// A query parameter that is wrong.
    pub fn query_param(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            message: message.into(),
            in_query: true,
        }
    }

    /// The code of the error table this error is sent with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::KeyExpired => ErrorCode::KeyExpired,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::InvalidField {
                in_query: false, ..
            } => ErrorCode::InvalidField,
            Self::InvalidField { in_query: true, .. } => ErrorCode::InvalidQuery,
            Self::InvalidJson(_) => ErrorCode::InvalidJson,
            Self::InvalidPath(_) => ErrorCode::InvalidPath,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::PreconditionFailed(_) => ErrorCode::PreconditionFailed,
            Self::TooLarge(_) => ErrorCode::BodyTooLarge,
            Self::QuotaExceeded(_) => ErrorCode::StorageQuotaExceeded,
            Self::RateLimited(_) | Self::SignInThrottled(..) => ErrorCode::RateLimited,
            Self::Busy(_) => ErrorCode::ServerBusy,
            Self::Timeout(_) => ErrorCode::BodyTimeout,
            Self::QueryTimeout(_) => ErrorCode::QueryTimeout,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The offending field or parameter, when there is one.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            Self::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(what.to_owned()),
            StoreError::Conflict(msg) => Self::Conflict(msg),
            StoreError::InvalidRow(msg) => Self::BadRequest(msg),
            StoreError::ReadTimeout => Self::QueryTimeout(
                "a read ran past the database's statement time limit \
                 (pg_read_statement_timeout_ms); narrow the query"
                    .into(),
            ),
            // A pass that does not carry the decision the store needs is a programmer
            // error, not a refusal: a 500, logged.
            StoreError::WrongPermission => {
                tracing::error!("a store call was made with a pass that does not allow it");
                Self::Internal("a store call was made with the wrong pass".into())
            }
            other => {
                tracing::error!(error = %other, "store failure");
                Self::Internal(other.to_string())
            }
        }
    }
}

impl From<holdfast_core::authz::Denied> for ServiceError {
    // Denials look like absence, so ids in other organizations or projects leak nothing.
    fn from(_: holdfast_core::authz::Denied) -> Self {
        Self::NotFound("object".into())
    }
}
