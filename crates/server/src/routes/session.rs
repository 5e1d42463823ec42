//! Signing in with a password, setting a password through a link, signing out, and the
//! caller's browser sessions.

use crate::extract::{Authed, BaseUrl, Checked, Id, Params};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use holdfast_api::ObjectList;
use holdfast_api::accounts::{
    Done, PasswordLink, PasswordLinkRequest, PasswordSignIn, Session, SessionListQuery,
    SetPasswordRequest, SignInSettings, SignedIn,
};
use holdfast_api::secret::ShownOnce;
use holdfast_services::ServiceError;
use std::net::SocketAddr;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Reply<T> = Result<Json<T>, ApiError>;

/// Routes without a key: signing in and setting a password.
pub fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(set_password))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(logout))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(get_sign_in, put_sign_in))
        .routes(routes!(password_link))
}

/// The `Set-Cookie` value of a session: `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure`
/// (with the `__Host-` name) over TLS; `max_age` 0 removes it.
fn session_cookie(tls: bool, value: &str, max_age: u64) -> Result<HeaderValue, ApiError> {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        crate::auth::session_cookie(tls)
    ))
    .map_err(|e| ApiError(ServiceError::Internal(e.to_string())))
}

/// Signs in with a password: a new session (whatever session cookie came with the request),
/// its cookie, and its CSRF token. Refused alike for any wrong email, password or
/// organization (401); 429 after too many failures for the account or the address.
#[utoipa::path(post, path = "/auth/login", tag = "sign-in", security(()),
    request_body = PasswordSignIn, responses((status = 200, body = SignedIn)))]
async fn login(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Checked(b): Checked<PasswordSignIn>,
) -> Result<Response, ApiError> {
    let from = from.ip().to_string();
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let made = s
        .services
        .password_login(
            &b.email,
            b.password.expose(),
            b.org.as_deref(),
            Some(&from),
            agent,
        )
        .await?;
    let cookie = session_cookie(
        s.tls,
        holdfast_services::accounts::cookie_value(&made),
        s.services.limits.session_max.as_secs(),
    )?;
    let body = SignedIn {
        session_id: made.record.id.clone(),
        user_id: made.record.user_id.clone(),
        org_id: made.record.org_id.clone(),
        csrf_token: ShownOnce(made.csrf_token.clone()),
        expires: made.record.expires.clone(),
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Sets a password through a one-time invite or reset link (made by `holdfast user invite`);
/// the user's sessions end. A link used, expired or mistyped is a 400.
#[utoipa::path(post, path = "/auth/password", tag = "sign-in", security(()),
    request_body = SetPasswordRequest, responses((status = 200, body = Done)))]
async fn set_password(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Checked(b): Checked<SetPasswordRequest>,
) -> Reply<Done> {
    let from = from.ip().to_string();
    s.services
        .set_password(b.token.expose(), b.password.expose(), Some(&from))
        .await?;
    Ok(Json(Done { ok: true }))
}

/// The session of a request made with a session cookie.
fn session_of(p: &holdfast_services::Principal) -> Option<&str> {
    p.key_id.strip_prefix("session:")
}

/// Signs out: ends the session the request was made with and removes its cookie (400 for
/// a request made with an API key).
#[utoipa::path(post, path = "/auth/logout", tag = "sign-in",
    responses((status = 200, body = Done)))]
async fn logout(State(s): State<AppState>, Authed(p): Authed) -> Result<Response, ApiError> {
    let id = session_of(&p).ok_or_else(|| {
        ApiError(ServiceError::bad(
            "this request was not made with a browser session",
        ))
    })?;
    s.services.revoke_session(&p, id).await?;
    let mut resp = Json(Done { ok: true }).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(s.tls, "", 0)?);
    Ok(resp)
}

/// The caller's browser sessions that have not ended, newest first (at most 1000); with
/// `user_id`, another member's (Owners).
#[utoipa::path(get, path = "/v1/session", tag = "sign-in", params(SessionListQuery),
    responses((status = 200, body = ObjectList<Session>)))]
async fn list_sessions(
    State(s): State<AppState>,
    Authed(p): Authed,
    Params(q): Params<SessionListQuery>,
) -> Reply<ObjectList<Session>> {
    let current = session_of(&p).map(str::to_owned);
    let list = s.services.list_sessions(&p, q.user_id.as_deref()).await?;
    let objects: Vec<Session> = list
        .into_iter()
        .map(|r| Session {
            current: current.as_deref() == Some(r.id.as_str()),
            id: r.id,
            user_id: r.user_id,
            method: r.method,
            created: r.created,
            last_seen: r.last_seen,
            expires: r.expires,
            from_addr: r.from_addr,
            user_agent: r.user_agent,
        })
        .collect();
    Ok(Json(objects.into()))
}

/// Ends a session: one of the caller's own, or (for those who may remove members: Owners)
/// anyone's in the organization. It stops working at once.
#[utoipa::path(delete, path = "/v1/session/{id}", tag = "sign-in",
    params(("id" = String, Path)), responses((status = 200, body = Done)))]
async fn revoke_session(State(s): State<AppState>, Authed(p): Authed, Id(id): Id) -> Reply<Done> {
    s.services.revoke_session(&p, &id).await?;
    Ok(Json(Done { ok: true }))
}

/// How the organization's members may sign in.
#[utoipa::path(get, path = "/v1/organization/{id}/sign_in", tag = "sign-in",
    params(("id" = String, Path)), responses((status = 200, body = SignInSettings)))]
async fn get_sign_in(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
) -> Reply<SignInSettings> {
    super::this_org(&p, &id)?;
    Ok(Json(s.services.sign_in_settings(&p).await?))
}

/// Allows or forbids signing in with a password (Owners: `update` on the organization);
/// forbidding it ends the sessions signed in with one.
#[utoipa::path(put, path = "/v1/organization/{id}/sign_in", tag = "sign-in",
    params(("id" = String, Path)), request_body = SignInSettings,
    responses((status = 200, body = SignInSettings)))]
async fn put_sign_in(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    Checked(b): Checked<SignInSettings>,
) -> Reply<SignInSettings> {
    super::this_org(&p, &id)?;
    Ok(Json(s.services.set_sign_in_settings(&p, &b).await?))
}

/// A one-time link for a member to set a password (Owners: those who may remove members, and
/// may place members in each of the member's groups). An invite when the member has no
/// password; with `reset`, a reset link when they have one (setting it ends their sessions).
/// A member with grants of their own is refused (403).
#[utoipa::path(post, path = "/v1/organization/{id}/password_link", tag = "sign-in",
    params(("id" = String, Path)), request_body = PasswordLinkRequest,
    responses((status = 200, body = PasswordLink)))]
async fn password_link(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    BaseUrl(base): BaseUrl,
    Checked(b): Checked<PasswordLinkRequest>,
) -> Result<Response, ApiError> {
    super::this_org(&p, &id)?;
    let (token, expires) = s
        .services
        .password_link_for(&p, &b.user_id, b.reset)
        .await?;
    let body = PasswordLink {
        link: ShownOnce(format!("{base}/auth/set-password#token={token}")),
        expires,
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
