//! Route table. Every route is registered through an [`OpenApiRouter`] from a handler with
//! its `#[utoipa::path]` description, so `/openapi.json` describes exactly the routes served.

mod admin;
mod automations;
mod rest;
mod sdk;
mod session;
mod sso;

use crate::{ApiError, AppState};
use axum::Json;
use axum::Router;
use holdfast_api::{ErrorBody, ErrorCode};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;

/// Deserializes what a service built for a reply into its wire type; a mismatch is a fault
/// of the server, logged as a 500.
fn reply<T: serde::de::DeserializeOwned>(v: Value) -> Result<Json<T>, ApiError> {
    serde_json::from_value(v).map(Json).map_err(|e| {
        ApiError(holdfast_services::ServiceError::Internal(format!(
            "reply does not match its wire type: {e}"
        )))
    })
}

/// A route on `/v1/organization/{id}` answers only for the caller's organization (404 for
/// any other, like an object the caller cannot see).
fn this_org(p: &holdfast_services::Principal, id: &str) -> Result<(), ApiError> {
    if id == p.org_id {
        Ok(())
    } else {
        Err(ApiError(holdfast_services::ServiceError::NotFound(
            "organization".into(),
        )))
    }
}

/// Every route, with its description. Routes under `authenticated` pass the authentication
/// middleware first.
fn routes(state: AppState) -> OpenApiRouter<AppState> {
    let authenticated = OpenApiRouter::new()
        .merge(sdk::authenticated())
        .merge(rest::router())
        .merge(admin::router())
        .merge(automations::router())
        .merge(session::router())
        .merge(sso::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::auth::authenticate,
        ));
    OpenApiRouter::new()
        .merge(sdk::public())
        .merge(automations::public())
        .merge(session::public())
        .merge(crate::metrics::routes())
        .merge(authenticated)
}

pub fn router(state: AppState) -> Router<AppState> {
    let (router, doc) = routes(state).split_for_parts();
    let doc = std::sync::Arc::new(finish(doc));
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json(doc) }
            }),
        )
        .fallback(|| async { ApiError(holdfast_services::ServiceError::NotFound("route".into())) })
}

/// The API description as served at `/openapi.json`.
pub fn openapi(state: AppState) -> OpenApi {
    finish(routes(state).split_for_parts().1)
}

/// Adds what every operation shares: the bearer key scheme, and errors as [`ErrorBody`].
fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info.title = "Holdfast".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Holdfast's HTTP API. Authenticate with `Authorization: Bearer <API key>`. Every \
         error is an `ErrorBody` whose `code` is listed in `ErrorCode`."
            .into(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API key or service token"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "metrics_token",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("The configured `metrics_token`"))
                .build(),
        ),
    );
    for (name, schema) in [
        ("ErrorBody", <ErrorBody as utoipa::PartialSchema>::schema()),
        (
            "ErrorDetail",
            <holdfast_api::ErrorDetail as utoipa::PartialSchema>::schema(),
        ),
        ("ErrorCode", <ErrorCode as utoipa::PartialSchema>::schema()),
    ] {
        components.schemas.insert(name.into(), schema);
    }
    let error = ResponseBuilder::new()
        .description("An error; `error.code` says which (see `ErrorCode`)")
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    let bearer = utoipa::openapi::security::SecurityRequirement::new::<_, _, &str>("bearer", []);
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            op.responses
                .responses
                .insert("default".into(), RefOr::T(error.clone()));
            // Operations that named no security need a key; public ones say `security(())`.
            if op.security.is_none() {
                op.security = Some(vec![bearer.clone()]);
            }
        }
    }
    doc
}

fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<&mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
