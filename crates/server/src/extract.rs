//! Extractors: the authenticated principal, JSON bodies whatever their content type, and the
//! base URL the SDKs should use.
//!
//! Request bodies are bounded in size ([`holdfast_services::Limits::max_body_bytes`]), in the
//! time they take to arrive (`body_read_timeout`), in the number of JSON values they hold, and
//! all together in the memory they take while held ([`BodyBudget`]).

use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use holdfast_services::{Principal, ServiceError};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// Reads a request body whole, within the configured size and read time, and only while the
/// server holds less than its budget of request bodies in memory. A `Content-Length` over
/// the limit is refused before a byte is read.
async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let limits = &state.services.limits;
    let limit = limits.max_body_bytes;
    let too_large = || {
        ApiError(ServiceError::TooLarge(format!(
            "request body is larger than {limit} bytes"
        )))
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let _held = state.body_budget.reserve(declared.unwrap_or(limit))?;
    match tokio::time::timeout(
        limits.body_read_timeout,
        axum::body::to_bytes(req.into_body(), limit),
    )
    .await
    {
        Err(_) => Err(ApiError(ServiceError::Timeout(format!(
            "the request body did not arrive within {} s",
            limits.body_read_timeout.as_secs()
        )))),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad(format!(
            "request body not received whole: {e}"
        ))),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// Reads a JSON body whatever the Content-Type says (the Python SDK sends none); an empty body
/// is `empty`, or an error when that is `None`. A body with more values than
/// `max_json_values` is refused before it is parsed.
async fn read_json(
    req: Request,
    state: &AppState,
    empty: Option<Value>,
) -> Result<Value, ApiError> {
    let bytes = read_body(req, state).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return empty.ok_or_else(|| {
            ApiError(ServiceError::InvalidJson(
                "request body is empty; a JSON object is required".into(),
            ))
        });
    }
    holdfast_services::json_values_within(&bytes, state.services.limits.max_json_values)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError(ServiceError::InvalidJson(format!("invalid JSON body: {e}"))))
}

/// Reads `value` as a `T`, naming the field that does not fit.
pub fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        ApiError(field_error(&path, &message, false))
    })
}

/// The error for a value at `path` (serde's `a.b[0]` form, `.` for the top) that did not
/// deserialize. A missing field is reported at its parent: its name is taken from the message.
fn field_error(path: &str, message: &str, in_query: bool) -> ServiceError {
    let mut field = if path == "." {
        String::new()
    } else {
        path.to_owned()
    };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let named = missing.or_else(|| {
        message
            .strip_prefix("duplicate field `")
            .and_then(|rest| rest.split('`').next())
    });
    if let Some(name) = named {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(name);
    }
    if field.is_empty() {
        return if in_query {
            ServiceError::bad(format!("invalid query string: {message}"))
        } else {
            ServiceError::InvalidJson(format!("the body must be a JSON object: {message}"))
        };
    }
    let message = match missing {
        Some(_) => format!("`{field}` is required"),
        None => format!("`{field}`: {message}"),
    };
    ServiceError::InvalidField {
        field,
        message,
        in_query,
    }
}

/// A JSON body checked against its wire type `T` at the edge.
pub struct Checked<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Checked<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = read_json(req, state, None).await?;
        Ok(Self(typed(&value)?))
    }
}

/// A JSON body checked against `T`, for routes where an empty body means `{}`.
pub struct CheckedOrEmpty<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CheckedOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = read_json(req, state, Some(Value::Object(Default::default()))).await?;
        Ok(Self(typed(&value)?))
    }
}

/// A query string read as `T`, naming the parameter that does not fit.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        // PostgreSQL cannot hold NUL: refused here, the same on every backend.
        if let Some((name, _)) = form_urlencoded::parse(query.as_bytes())
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(ApiError(ServiceError::InvalidField {
                message: format!("`{name}` may not contain the NUL character"),
                field: name.into_owned(),
                in_query: true,
            }));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize::<_, T>(de)
            .map(Self)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError(field_error(&path, &e.into_inner().to_string(), true))
            })
    }
}

/// The `{id}` (or other single) parameter of a route's path.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError(ServiceError::InvalidPath(e.body_text())))
            .and_then(|p| match p.0.contains('\0') {
                true => Err(ApiError(ServiceError::InvalidPath(
                    "path parameters may not contain the NUL character".into(),
                ))),
                false => Ok(Self(p.0)),
            })
    }
}

/// The two parameters of a route's path (`/{id}/.../{other}`).
pub struct TwoIds(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for TwoIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((a, b)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError(ServiceError::InvalidPath(e.body_text())))?;
        if a.contains('\0') || b.contains('\0') {
            return Err(ApiError(ServiceError::InvalidPath(
                "path parameters may not contain the NUL character".into(),
            )));
        }
        Ok(Self(a, b))
    }
}

/// A JSON body.
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(read_json(req, state, None).await?))
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

/// The bytes of request bodies the server holds in memory at once, over all requests.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, u32::MAX as usize);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Holds `n` bytes of the budget until the permit is dropped; refuses (503) when they are
    /// not free, rather than queueing bodies in memory.
    pub fn reserve(&self, n: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let n = u32::try_from(n.clamp(1, self.total)).unwrap_or(u32::MAX);
        self.bytes.clone().try_acquire_many_owned(n).map_err(|_| {
            ApiError(ServiceError::Busy(
                "the server is holding its limit of request bodies; retry shortly".into(),
            ))
        })
    }
}
