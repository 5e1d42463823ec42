//! Extractors: the authenticated principal, JSON bodies whatever their content type, and the
//! base URL the SDKs should use.

use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use holdfast_services::{Principal, ServiceError};
use serde_json::Value;

/// The caller, authenticated by the [`crate::auth`] middleware.
pub struct Authed(pub Principal);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Self)
            .ok_or(ApiError(ServiceError::Unauthenticated(
                "missing Authorization header",
            )))
    }
}

/// A body read up to the configured size limit; larger bodies get a JSON 413.
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.services.limits.max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                ApiError(ServiceError::TooLarge(format!(
                    "request body is larger than {limit} bytes"
                )))
            })?;
        Ok(Self(bytes))
    }
}

/// Reads a JSON body whatever the Content-Type says (the Python SDK sends none); an empty body
/// is `empty`, or an error when that is `None`.
async fn read_json(
    req: Request,
    state: &AppState,
    empty: Option<Value>,
) -> Result<Value, ApiError> {
    let RawBody(bytes) = RawBody::from_request(req, state).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return empty
            .ok_or_else(|| ApiError::bad("request body is empty; a JSON object is required"));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

/// A JSON body.
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(read_json(req, state, None).await?))
    }
}

/// A JSON body that may be empty (treated as `{}`).
pub struct OptionalJson(pub Value);

impl FromRequest<AppState> for OptionalJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(
            read_json(req, state, Some(Value::Object(Default::default()))).await?,
        ))
    }
}

/// Where clients reach this server.
pub struct BaseUrl(pub String);

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(url) = &state.public_url {
            return Ok(Self(url.trim_end_matches('/').to_owned()));
        }
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .ok_or_else(|| ApiError::bad("missing or invalid Host header"))?;
        let scheme = if state.tls { "https" } else { "http" };
        Ok(Self(format!("{scheme}://{host}")))
    }
}
