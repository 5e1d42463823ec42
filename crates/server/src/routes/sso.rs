//! An organization's OpenID Connect and SAML connections (Owners). The browser side of
//! signing in through them is in `crate::pages`.

use crate::extract::{Authed, BaseUrl, Checked, Id, TwoIds};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use holdfast_api::ObjectList;
use holdfast_api::accounts::Done;
use holdfast_api::sso::{
    OidcConnection, OidcConnectionRequest, SamlConnection, SamlConnectionRequest,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Reply<T> = Result<Json<T>, ApiError>;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_oidc, create_oidc))
        .routes(routes!(replace_oidc, delete_oidc))
        .routes(routes!(list_saml, create_saml))
        .routes(routes!(replace_saml, delete_saml))
}

/// The organization's OpenID Connect connections (Owners: `update` on the organization).
#[utoipa::path(get, path = "/v1/organization/{id}/oidc", tag = "sign-in",
    params(("id" = String, Path)), responses((status = 200, body = ObjectList<OidcConnection>)))]
async fn list_oidc(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    BaseUrl(base): BaseUrl,
) -> Reply<ObjectList<OidcConnection>> {
    super::this_org(&p, &id)?;
    Ok(Json(s.services.list_oidc(&p, &base).await?.into()))
}

/// Adds an OpenID Connect connection (Owners). The issuer's discovery document is read
/// now: a provider that cannot be reached, or names another issuer, is a 400.
#[utoipa::path(post, path = "/v1/organization/{id}/oidc", tag = "sign-in",
    params(("id" = String, Path)), request_body = OidcConnectionRequest,
    responses((status = 200, body = OidcConnection)))]
async fn create_oidc(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    BaseUrl(base): BaseUrl,
    Checked(b): Checked<OidcConnectionRequest>,
) -> Reply<OidcConnection> {
    super::this_org(&p, &id)?;
    Ok(Json(s.services.create_oidc(&p, &base, &b).await?))
}

/// Replaces a connection's settings (Owners); without `client_secret` the stored one is
/// kept.
#[utoipa::path(put, path = "/v1/organization/{id}/oidc/{connection_id}", tag = "sign-in",
    params(("id" = String, Path), ("connection_id" = String, Path)),
    request_body = OidcConnectionRequest, responses((status = 200, body = OidcConnection)))]
async fn replace_oidc(
    State(s): State<AppState>,
    Authed(p): Authed,
    TwoIds(org, id): TwoIds,
    BaseUrl(base): BaseUrl,
    Checked(b): Checked<OidcConnectionRequest>,
) -> Reply<OidcConnection> {
    super::this_org(&p, &org)?;
    Ok(Json(s.services.replace_oidc(&p, &base, &id, &b).await?))
}

/// Removes a connection (Owners): sessions signed in through it end at once.
#[utoipa::path(delete, path = "/v1/organization/{id}/oidc/{connection_id}", tag = "sign-in",
    params(("id" = String, Path), ("connection_id" = String, Path)),
    responses((status = 200, body = Done)))]
async fn delete_oidc(
    State(s): State<AppState>,
    Authed(p): Authed,
    TwoIds(org, id): TwoIds,
) -> Reply<Done> {
    super::this_org(&p, &org)?;
    s.services.delete_oidc(&p, &id).await?;
    Ok(Json(Done { ok: true }))
}

/// The organization's SAML connections (Owners: `update` on the organization).
#[utoipa::path(get, path = "/v1/organization/{id}/saml", tag = "sign-in",
    params(("id" = String, Path)), responses((status = 200, body = ObjectList<SamlConnection>)))]
async fn list_saml(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    BaseUrl(base): BaseUrl,
) -> Reply<ObjectList<SamlConnection>> {
    super::this_org(&p, &id)?;
    Ok(Json(s.services.list_saml(&p, &base).await?.into()))
}

/// Adds a SAML connection (Owners). The IdP's metadata (inline or read from its URL now)
/// must hold a signing certificate and a single sign-on service with the HTTP-Redirect
/// binding; otherwise a 400. A build without the `saml` feature answers 400.
#[utoipa::path(post, path = "/v1/organization/{id}/saml", tag = "sign-in",
    params(("id" = String, Path)), request_body = SamlConnectionRequest,
    responses((status = 200, body = SamlConnection)))]
async fn create_saml(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    BaseUrl(base): BaseUrl,
    Checked(b): Checked<SamlConnectionRequest>,
) -> Reply<SamlConnection> {
    super::this_org(&p, &id)?;
    Ok(Json(s.services.create_saml(&p, &base, &b).await?))
}

/// Replaces a SAML connection's settings and metadata (Owners).
#[utoipa::path(put, path = "/v1/organization/{id}/saml/{connection_id}", tag = "sign-in",
    params(("id" = String, Path), ("connection_id" = String, Path)),
    request_body = SamlConnectionRequest, responses((status = 200, body = SamlConnection)))]
async fn replace_saml(
    State(s): State<AppState>,
    Authed(p): Authed,
    TwoIds(org, id): TwoIds,
    BaseUrl(base): BaseUrl,
    Checked(b): Checked<SamlConnectionRequest>,
) -> Reply<SamlConnection> {
    super::this_org(&p, &org)?;
    Ok(Json(s.services.replace_saml(&p, &base, &id, &b).await?))
}

/// Removes a SAML connection (Owners): sessions signed in through it end at once.
#[utoipa::path(delete, path = "/v1/organization/{id}/saml/{connection_id}", tag = "sign-in",
    params(("id" = String, Path), ("connection_id" = String, Path)),
    responses((status = 200, body = Done)))]
async fn delete_saml(
    State(s): State<AppState>,
    Authed(p): Authed,
    TwoIds(org, id): TwoIds,
) -> Reply<Done> {
    super::this_org(&p, &org)?;
    s.services.delete_saml(&p, &id).await?;
    Ok(Json(Done { ok: true }))
}
