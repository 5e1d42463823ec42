//! The HTTP edge: routers, extractors and the one table that maps errors to statuses.
//! Handlers extract, call one service function and shape the reply; protocol quirks of the
//! SDKs (status codes, optional content types) live here and nowhere else.

mod app;
mod auth;
mod browser;
pub mod edge;
mod error;
mod extract;
pub mod listen;
pub mod metrics;
mod pages;
mod routes;

use axum::Router;
use holdfast_services::Services;
use std::sync::Arc;

pub use error::ApiError;
pub use routes::openapi;

#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    /// The externally visible base URL; when unset it is taken from the request's Host.
    pub public_url: Option<Arc<str>>,
    /// Origins allowed to call from a browser (exact `scheme://host[:port]`).
    pub cors_origins: Arc<Vec<String>>,
    /// Served over TLS (sends HSTS).
    pub tls: bool,
    /// Request bodies held in memory, over all requests.
    pub body_budget: extract::BodyBudget,
    /// Requests in flight per key.
    pub key_limiter: Arc<auth::KeyLimiter>,
    /// Failed authentications audited per client address.
    pub failure_limiter: Arc<auth::FailureLimiter>,
    /// Request counts and latencies for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// The bearer token `/metrics` needs; without one it is not served.
    pub metrics_token: Option<Arc<str>>,
    /// Experiments' summary rows kept for their pages.
    pub(crate) experiment_rows: Arc<app::RowsKept>,
}

impl AppState {
    pub fn new(
        services: Services,
        public_url: Option<Arc<str>>,
        cors_origins: Vec<String>,
        tls: bool,
    ) -> Self {
        let limits = services.limits.clone();
        Self {
            services,
            public_url,
            cors_origins: Arc::new(cors_origins),
            tls,
            body_budget: extract::BodyBudget::new(limits.max_inflight_body_bytes),
            key_limiter: Arc::new(auth::KeyLimiter::new(limits.max_requests_per_key)),
            failure_limiter: Arc::default(),
            metrics: Arc::default(),
            metrics_token: None,
            experiment_rows: Arc::default(),
        }
    }

    /// Serves `/metrics` to requests that carry `token`.
    pub fn with_metrics_token(mut self, token: Option<&str>) -> Self {
        self.metrics_token = token.filter(|t| !t.is_empty()).map(Arc::from);
        self
    }
}

pub fn router(state: AppState) -> Router {
    // Outermost last: compression, then the request context (request id, JSON errors,
    // access log), then the browser guard, then the routes.
    routes::router(state.clone())
        .merge(pages::router())
        .merge(app::router(state.clone()))
        .merge(app::assets())
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            browser::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::request_context,
        ))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
        .with_state(state)
}
