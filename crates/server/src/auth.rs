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
use holdfast_services::ServiceError;
use holdfast_services::audit::{auth_failure_entry, changed_something, request_entry};
use holdfast_services::keys::KeyService;
use std::net::SocketAddr;

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
    let services = &state.services;
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |m| m.as_str().to_owned());
    let action = format!("{} {route}", req.method());
    let token = match bearer(&req) {
        Ok(t) => t.to_owned(),
        Err(e) => {
            let entry = auth_failure_entry(
                services.now(),
                None,
                &e.to_string(),
                &action,
                from.as_deref(),
            );
            services.audit.record(entry).await;
            return ApiError(e).into_response();
        }
    };
    let principal = match services
        .keys
        .authenticate(&services.store, &token, from.as_deref())
        .await
    {
        Ok(p) => p,
        Err(e) => {
            let entry = auth_failure_entry(
                services.now(),
                KeyService::key_id_of(&token),
                &e.to_string(),
                &action,
                from.as_deref(),
            );
            services.audit.record(entry).await;
            return ApiError(e).into_response();
        }
    };
    req.extensions_mut().insert(principal.clone());
    let response = next.run(req).await;
    let entry = request_entry(
        &principal,
        services.now(),
        &action,
        response.status().as_u16(),
        from.as_deref(),
    );
    if changed_something(&principal) {
        if let Err(e) = services.audit.record_durable(entry).await {
            tracing::error!(error = %e, "a change was made but its audit entry was not written");
        }
    } else {
        services.audit.record(entry).await;
    }
    response
}
