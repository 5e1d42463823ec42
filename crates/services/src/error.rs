//! The services' error enum. The edge maps each variant to a stable code and status.

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
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// The organization's storage quota is used up.
    #[error("{0}")]
    QuotaExceeded(String),
    /// Too many requests in flight for one key.
    #[error("{0}")]
    RateLimited(String),
    /// The server is at a limit of its own (request bodies in memory); try again shortly.
    #[error("{0}")]
    Busy(String),
    /// A request body did not arrive in time.
    #[error("{0}")]
    Timeout(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(what.to_owned()),
            StoreError::Conflict(msg) => Self::Conflict(msg),
            StoreError::InvalidRow(msg) => Self::BadRequest(msg),
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
