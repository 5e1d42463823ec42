//! Authentication and the audit entry of every request, as one middleware around every route
//! that needs a key.
//!
//! A request with a valid key runs with its [`Principal`] in the request extensions; the
//! decisions taken for it collect on the principal's trail, and once the handler has answered
//! one audit entry records who, from where, which route, the status and the trail. When the
//! request changed something the entry is durable before the response leaves. A request
//! without a valid key gets a JSON 401 and an `auth.failure` entry (the key id if the token was
//! well formed, never the secret).

use crate::{ApiError, AppState};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use holdfast_core::authz::RequestContext;
use holdfast_services::ServiceError;
use holdfast_services::audit::{auth_failure_entry, must_be_durable, request_entry};
use std::net::SocketAddr;
use tracing::Instrument;

/// The session cookie's name: `__Host-` prefixed (so that no other host or path can set it)
/// when served over TLS, which that prefix needs.
pub fn session_cookie(tls: bool) -> &'static str {
    if tls {
        "__Host-holdfast_session"
    } else {
        "holdfast_session"
    }
}

/// The value of the cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Methods that change nothing, which a session cookie may make without the CSRF token.
fn safe(method: &axum::http::Method) -> bool {
    matches!(
        *method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    )
}

/// The principal of a request made with a browser session (no `Authorization` header):
/// the session must be live, and a request that may change something must carry the
/// session's CSRF token in `X-CSRF-Token`.
async fn session_principal(
    state: &AppState,
    token: &str,
    csrf: Option<&str>,
) -> Result<holdfast_services::Principal, ServiceError> {
    let (principal, session) = state.services.session_principal(token).await?;
    if let Some(presented) = csrf
        && !holdfast_services::Services::csrf_matches(&session, presented)
    {
        return Err(ServiceError::Forbidden(
            "a request made with a session cookie that changes something needs the \
             session's X-CSRF-Token header"
                .into(),
        ));
    }
    Ok(principal)
}

fn bearer(req: &Request) -> Result<&str, ServiceError> {
    let header = req.headers().get(axum::http::header::AUTHORIZATION).ok_or(
        ServiceError::Unauthenticated("missing Authorization header"),
    )?;
    header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(ServiceError::Unauthenticated(
            "Authorization must be `Bearer <API key>`",
        ))
}

// skip_all: the Authorization header must never reach a log line.
#[tracing::instrument(skip_all, name = "authenticate")]
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let services = state.services.clone();
    let services = &services;
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |m| m.as_str().to_owned());
    let action = format!("{} {route}", req.method());
    let session = cookie(req.headers(), session_cookie(state.tls))
        .filter(|_| {
            !req.headers()
                .contains_key(axum::http::header::AUTHORIZATION)
        })
        .map(str::to_owned);
    let principal = if let Some(token) = session {
        // What a request that may change something presents as the CSRF token.
        let csrf = (!safe(req.method())).then(|| {
            req.headers()
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        });
        match session_principal(&state, &token, csrf.as_deref()).await {
            Ok(p) => p,
            Err(e) => {
                audit_failure(&state, None, &e, &action, from.as_deref()).await;
                return ApiError(e).into_response();
            }
        }
    } else {
        let token = match bearer(&req) {
            Ok(t) => t.to_owned(),
            Err(e) => {
                audit_failure(&state, None, &e, &action, from.as_deref()).await;
                return ApiError(e).into_response();
            }
        };
        match services
            .keys
            .authenticate(&services.store, &token, from.as_deref())
            .await
        {
            Ok(p) => p,
            Err(failure) => {
                let key_id = failure.key_id;
                audit_failure(&state, key_id, &failure.error, &action, from.as_deref()).await;
                return ApiError(failure.error).into_response();
            }
        }
    };
    // The handler and the audit entry run in a task of their own, so that a client that
    // hangs up mid-request cannot stop a change from being audited (dropping this future
    // does not drop the task).
    principal.trail.set_request(RequestContext {
        action,
        from,
        request_id: req
            .extensions()
            .get::<crate::edge::RequestId>()
            .map(|r| r.0.clone()),
    });
    let safe = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let task = async move {
        let _in_flight = match state.key_limiter.enter(&principal.key_id) {
            Ok(guard) => guard,
            Err(e) => return finish(&state, &principal, safe, e.into_response()).await,
        };
        if writes_rows(req.method(), &route)
            && let Err(e) = state.services.may_write_rows(&principal).await
        {
            // Decided from the path: the body is never read.
            let response = ApiError(e).into_response();
            return finish(&state, &principal, safe, response).await;
        }
        req.extensions_mut().insert(principal.clone());
        let response = next.run(req).await;
        finish(&state, &principal, safe, response).await
    };
    match tokio::spawn(task.instrument(tracing::Span::current())).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            ApiError(ServiceError::Internal("request task failed".into())).into_response()
        }
    }
}

/// Audits a failed authentication, at most [`FAILURES_AUDITED_PER_MINUTE`] per client address
/// and ten times that in all; past that, failures are only counted in the log, so that a
/// flood of bad tokens cannot flood the audit log.
async fn audit_failure(
    state: &AppState,
    key_id: Option<String>,
    error: &ServiceError,
    action: &str,
    from: Option<&str>,
) {
    let services = &state.services;
    let minute = services.clock.now().unix_timestamp() / 60;
    if !state.failure_limiter.admit(from.unwrap_or("-"), minute) {
        return;
    }
    let entry = auth_failure_entry(services.now(), key_id, &error.to_string(), action, from);
    services.audit.record(entry).await;
}

pub const FAILURES_AUDITED_PER_MINUTE: u32 = 30;

/// Counts failed authentications per client address and minute.
#[derive(Default)]
pub struct FailureLimiter {
    counts: std::sync::Mutex<(i64, std::collections::HashMap<String, u32>, u32, u32)>,
}

impl FailureLimiter {
    pub(crate) fn admit(&self, from: &str, minute: i64) -> bool {
        let mut guard = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (current, per_address, total, dropped) = &mut *guard;
        if *current != minute {
            if *dropped > 0 {
                tracing::warn!(
                    dropped = *dropped,
                    "failed authentications past the audit rate limit in the last minute"
                );
            }
            *current = minute;
            per_address.clear();
            *total = 0;
            *dropped = 0;
        }
        // The total bounds the map too: at most that many addresses enter it a minute.
        if *total >= 10 * FAILURES_AUDITED_PER_MINUTE {
            *dropped += 1;
            return false;
        }
        let n = per_address.entry(from.to_owned()).or_default();
        if *n >= FAILURES_AUDITED_PER_MINUTE {
            *dropped += 1;
            return false;
        }
        *n += 1;
        *total += 1;
        true
    }
}

/// Routes whose body is rows or an upload: a credential that may write rows nowhere is
/// refused before the body is read.
fn writes_rows(method: &axum::http::Method, route: &str) -> bool {
    method == axum::http::Method::POST
        && (matches!(
            route,
            "/logs3" | "/logs3/overflow" | "/attachment" | "/attachment/status"
        ) || route.ends_with("/{id}/insert")
            || route.ends_with("/{id}/feedback"))
}

/// Writes the request's audit entry (durably when it changed something, see
/// [`must_be_durable`]; `safe`: a `GET` or `HEAD`) and answers.
async fn finish(
    state: &AppState,
    principal: &holdfast_services::Principal,
    safe: bool,
    mut response: Response,
) -> Response {
    let services = &state.services;
    response.extensions_mut().insert(crate::edge::Caller {
        user_id: principal.user_id.clone(),
        key_id: principal.key_id.clone(),
    });
    if response.status().is_success() && principal.trail.audited() {
        // Its entry was committed with the rows it wrote.
        return response;
    }
    let entry = request_entry(principal, services.now(), response.status().as_u16());
    if must_be_durable(principal, safe) {
        if let Err(e) = services.audit.record_durable(entry).await {
            tracing::error!(error = %e, "a change was made but its audit entry was not written");
        }
    } else {
        services.audit.record(entry).await;
    }
    response
}

/// Counts each key's requests in flight and refuses those past the limit (429).
#[derive(Default)]
pub struct KeyLimiter {
    limit: usize,
    in_flight: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// Ends one request of a key when dropped.
pub struct InFlight<'a> {
    limiter: &'a KeyLimiter,
    key_id: String,
}

impl KeyLimiter {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            in_flight: Default::default(),
        }
    }

    fn enter(&self, key_id: &str) -> Result<InFlight<'_>, ApiError> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key_id.to_owned()).or_default();
        if *n >= self.limit {
            return Err(ApiError(ServiceError::RateLimited(format!(
                "this key has {} requests in flight, the most allowed",
                self.limit
            ))));
        }
        *n += 1;
        Ok(InFlight {
            limiter: self,
            key_id: key_id.to_owned(),
        })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut map = self
            .limiter
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key_id);
            }
        }
    }
}
