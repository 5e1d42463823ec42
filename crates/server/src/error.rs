//! Errors as responses: every failure becomes an [`ErrorBody`] with its code and status from
//! the error table ([`holdfast_api::ErrorCode`]). Internal details are logged, not returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use holdfast_api::{ErrorBody, ErrorDetail};
use holdfast_services::ServiceError;

#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        Self(ServiceError::BadRequest(msg.into()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match &self.0 {
            ServiceError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                field: self.0.field_name().map(str::to_owned),
                request_id: None,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            let after = match &self.0 {
                ServiceError::SignInThrottled(_, secs) => *secs,
                _ => 1,
            };
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, after.into());
        }
        // The body may not have been read: the client must not reuse the connection.
        if matches!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}
