//! Route table.

mod admin;
mod rest;
mod sdk;

use crate::{ApiError, AppState};
use axum::Router;
use axum::routing::{get, post, put};

/// Routes open to anyone: health, version, and signed URLs (the signature is the grant).
fn public() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(sdk::healthz))
        .route("/readyz", get(sdk::readyz))
        .route("/metrics", get(crate::metrics::serve_metrics))
        .route("/version", get(sdk::version))
        .route("/signed/{token}", put(sdk::signed_put).get(sdk::signed_get))
}

pub fn router(state: AppState) -> Router<AppState> {
    let authenticated = Router::new()
        .route("/ping", get(sdk::ping))
        .route("/api/apikey/login", post(sdk::login))
        .route("/logs3", post(sdk::logs3))
        .route("/logs3/overflow", post(sdk::overflow))
        .route(
            "/attachment",
            post(sdk::attachment_upload).get(sdk::attachment_download),
        )
        .route("/attachment/status", post(sdk::attachment_status))
        .route("/btql", post(sdk::btql))
        .route("/api/project/register", post(sdk::register_project))
        .route("/api/project", get(sdk::app_get_project))
        .route("/api/experiment/register", post(sdk::register_experiment))
        .route("/api/experiment/get", post(sdk::app_get_experiment))
        .route("/api/dataset/register", post(sdk::register_dataset))
        .route("/api/base_experiment/get_id", post(sdk::base_experiment))
        .route("/api/self/get_object_info", post(sdk::object_info))
        .route("/experiment-comparison2", get(sdk::experiment_comparison))
        .merge(rest::router())
        .merge(admin::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::auth::authenticate,
        ));
    public()
        .merge(authenticated)
        .fallback(|| async { ApiError(holdfast_services::ServiceError::NotFound("route".into())) })
}
