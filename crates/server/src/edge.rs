//! The outermost layer every request passes: its request id, its log span and access-log line,
//! and the guarantee that every error the server sends is JSON.
//!
//! * Request id: a client's `X-Request-Id` is kept when it is 1 to 64 characters of letters,
//!   digits, `.`, `_` and `-`; otherwise one is made. It is returned in `X-Request-Id`, set on
//!   every log line of the request (the `request` span), recorded in the request's audit
//!   entry, and put in every error body as `error.request_id`.
//! * Every response with a status of 400 or more has a JSON body
//!   `{"error": {"code", "message", "request_id"}}`: errors of our own already are; the
//!   framework's own refusals (405, a malformed path or query) are rewritten into that form,
//!   with a code for their status.
//! * A panic in a handler is caught here and answered as a JSON 500 (the lints forbid
//!   panicking code; this is the last line).
//! * One access-log line per request: method, route, status, duration, and the principal and
//!   key when the request was authenticated. Never a header or a body.

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use holdfast_api::ErrorCode;
use serde_json::{Value, json};
use tracing::Instrument;

/// The request's id, in the request's extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Who made an authenticated request (user id, key id), put on the response by the
/// authentication middleware for the access log.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub key_id: String,
}

/// Largest error body rewritten (ours are far smaller).
const ERROR_BODY_MAX: usize = 64 * 1024;

fn valid_request_id(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The code for an error status the framework produced rather than a handler.
pub fn code_for(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::BodyTimeout,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::BodyTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::InvalidField,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::ServerBusy,
        _ => ErrorCode::Internal,
    }
}

pub async fn request_context(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(no route)".to_owned(), |m| m.as_str().to_owned());
    let span = tracing::info_span!("request", request_id = %id);
    let started = std::time::Instant::now();
    let response = match std::panic::AssertUnwindSafe(next.run(req).instrument(span.clone()))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(_) => {
            span.in_scope(|| tracing::error!("a handler panicked"));
            crate::ApiError(holdfast_services::ServiceError::Internal(
                "handler panicked".into(),
            ))
            .into_response()
        }
    };
    let mut response = if response.status().as_u16() >= 400 {
        as_json_error(response, &id).await
    } else {
        response
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let caller = response.extensions().get::<Caller>().cloned();
    state.metrics.observe(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    span.in_scope(|| {
        tracing::info!(
            target: "holdfast::access",
            %method,
            route,
            status = response.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            user_id = caller.as_ref().map(|c| c.user_id.as_str()),
            key_id = caller.as_ref().map(|c| c.key_id.as_str()),
            "request"
        );
    });
    response
}

/// The same error, as `{"error": {"code", "message", "request_id"}}`.
async fn as_json_error(response: Response, id: &str) -> Response {
    // A page (HTML) shows its own error to the person reading it.
    let page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if page {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = axum::body::to_bytes(body, ERROR_BODY_MAX)
        .await
        .unwrap_or_default();
    let mut value: Value = if is_json {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    if value.get("error").and_then(Value::as_object).is_none() {
        let reason = parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_lowercase();
        match value.as_object_mut() {
            // A JSON answer of its own (`/readyz`): it keeps its fields and gains `error`.
            Some(fields) => {
                fields.insert(
                    "error".into(),
                    json!({"code": code_for(parts.status), "message": reason}),
                );
            }
            None => {
                let text = String::from_utf8_lossy(&bytes).trim().to_owned();
                let message = if text.is_empty() { reason } else { text };
                value = json!({"error": {"code": code_for(parts.status), "message": message}});
            }
        }
    }
    if let Some(e) = value.get_mut("error").and_then(Value::as_object_mut) {
        e.insert("request_id".into(), json!(id));
    }
    let body = value.to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
