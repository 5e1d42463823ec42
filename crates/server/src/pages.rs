//! The sign-in pages: the sign-in page (a password form and a button per identity provider),
//! the page that sets a password from an invite or reset link, the account page (who is
//! signed in, their sessions and API keys), sign-out, and the browser side of OpenID Connect.
//!
//! Pages are plain HTML with one stylesheet served by the binary: no script, so the
//! Content-Security-Policy allows none. Every form that changes something carries the
//! session's CSRF token, or (signing in, where there is no session yet) must come from this
//! server's own origin.

use crate::auth::{cookie, session_cookie};
use crate::extract::BaseUrl;
use crate::{ApiError, AppState};
use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use holdfast_services::ServiceError;
use holdfast_services::accounts::cookie_value;
use std::net::SocketAddr;

/// The longest form body a page takes.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// The policy of every page: its own stylesheet and forms, nothing else.
pub(crate) const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLE: &str = include_str!("pages/holdfast.css");
const SET_PASSWORD_JS: &str = include_str!("pages/set-password.js");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login_form))
        .route("/logout", axum::routing::post(logout_form))
        .route("/account", get(account_page))
        .route(
            "/auth/set-password",
            get(set_password_page).post(set_password_form),
        )
        .route("/auth/oidc/{id}/start", get(oidc_start))
        .route("/auth/oidc/callback", get(oidc_callback))
        .route("/auth/saml/{id}/start", get(saml_start))
        .route("/auth/saml/{id}/metadata", get(saml_metadata))
        .route("/auth/saml/{id}/acs", axum::routing::post(saml_acs))
        .route("/auth/saml/finish", get(saml_finish))
        .route("/static/holdfast.css", get(stylesheet))
        .route("/static/set-password.js", get(set_password_script))
}

use holdfast_services::saml::escape_markup as esc;

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Holdfast</title><link rel=\"stylesheet\" href=\"/static/holdfast.css\">\
         </head><body><main>{body}</main></body></html>",
        esc(title)
    );
    html_page(status, html)
}

/// An HTML page's answer: never cached, under [`PAGE_CSP`].
pub(crate) fn html_page(status: StatusCode, html: String) -> Response {
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    resp
}

pub(crate) fn redirect(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn set_cookie(resp: &mut Response, tls: bool, name: &str, value: &str, max_age: u64) {
    let secure = if tls { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The cookie that binds an OpenID Connect sign-in to the browser that started it.
fn binding_cookie(tls: bool) -> &'static str {
    if tls {
        "__Host-holdfast_oidc"
    } else {
        "holdfast_oidc"
    }
}

fn query(req_query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(req_query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Refuses (403) a form post that does not come from this server's own pages: `Sec-Fetch-Site:
/// same-origin` (which browsers send and scripts cannot forge), or, from a browser that
/// sends no such header, an `Origin` equal to this server's. (With `Referrer-Policy:
/// no-referrer` a browser's `Origin` on a form post is `null`, so it alone cannot tell.)
/// A client that sends neither is not a browser, and cannot carry a victim's cookies.
fn same_origin(headers: &HeaderMap, base: &str) -> Result<(), ApiError> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let same = match (header("sec-fetch-site"), header("origin")) {
        (Some(site), _) => site == "same-origin",
        (None, Some(origin)) => origin == base,
        (None, None) => true,
    };
    if same {
        Ok(())
    } else {
        Err(ApiError(ServiceError::Forbidden(
            "a form must be posted from this server's own page".into(),
        )))
    }
}

/// A form body: at most [`MAX_FORM_BYTES`], url-encoded.
async fn form(req: Request) -> Result<Vec<(String, String)>, ApiError> {
    form_of_at_most(req, MAX_FORM_BYTES).await
}

async fn form_of_at_most(req: Request, limit: usize) -> Result<Vec<(String, String)>, ApiError> {
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError(ServiceError::TooLarge(format!(
                "a form may be at most {limit} bytes"
            )))
        })?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// A file of the pages, served from the binary and cached for an hour.
pub(crate) fn static_file(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}

async fn stylesheet() -> Response {
    static_file(STYLE, "text/css; charset=utf-8")
}

/// Where a sign-in returns to: a page of the web UI named by `next`, else the account page.
/// Only paths under `/app` are followed, so the sign-in page cannot send anyone elsewhere.
fn after_sign_in(next: &str) -> &str {
    let under_app = next
        .strip_prefix("/app")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']));
    if under_app && next.bytes().all(|b| b.is_ascii_graphic()) && !next.contains('\\') {
        next
    } else {
        "/account"
    }
}

fn login_body(
    org: Option<&holdfast_services::sso::SignInOptions>,
    org_param: &str,
    email: &str,
    message: Option<&str>,
    next: &str,
) -> String {
    let mut out = String::from("<h1>Sign in to Holdfast</h1>");
    if let Some(m) = message {
        out.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)));
    }
    let password = org.is_none_or(|o| o.password);
    if let Some(o) = org {
        out.push_str(&format!(
            "<p>Organization: <strong>{}</strong></p>",
            esc(&o.org_name)
        ));
        if !o.providers.is_empty() {
            out.push_str("<ul class=\"providers\">");
            for (start, name) in &o.providers {
                out.push_str(&format!(
                    "<li><a class=\"button\" href=\"{}\">Sign in with {}</a></li>",
                    esc(start),
                    esc(name)
                ));
            }
            out.push_str("</ul>");
        }
    }
    if password {
        let org_field = match org {
            Some(o) => format!(
                "<input type=\"hidden\" name=\"org\" value=\"{}\">",
                esc(&o.org_name)
            ),
            None => format!(
                "<label for=\"org\">Organization</label>\
                 <input id=\"org\" name=\"org\" value=\"{}\" autocomplete=\"organization\">",
                esc(org_param)
            ),
        };
        let next = match after_sign_in(next) {
            "/account" => String::new(),
            to => format!(
                "<input type=\"hidden\" name=\"next\" value=\"{}\">",
                esc(to)
            ),
        };
        out.push_str(&format!(
            "<form method=\"post\" action=\"/login\">{org_field}{next}\
             <label for=\"email\">Email</label>\
             <input id=\"email\" name=\"email\" type=\"email\" required autocomplete=\"username\" value=\"{}\">\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" required autocomplete=\"current-password\">\
             <button type=\"submit\">Sign in</button></form>",
            esc(email)
        ));
    } else {
        out.push_str("<p>This organization signs in through its identity provider.</p>");
    }
    out
}

async fn login_page(State(s): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let org = query(req.uri().query(), "org").unwrap_or_default();
    let options = s.services.sign_in_options(Some(&org)).await?;
    let message = query(req.uri().query(), "error")
        .map(|_| "Signing in through the identity provider failed. Try again, or ask an Owner.");
    let notice = query(req.uri().query(), "password_set").map(|_| {
        "<p class=\"notice\" role=\"status\" id=\"notice\">Your password is set; sign in \
         with it.</p>"
    });
    Ok(page(
        StatusCode::OK,
        "Sign in",
        &format!(
            "{}{}",
            notice.unwrap_or_default(),
            login_body(
                options.as_ref(),
                &org,
                "",
                message,
                &query(req.uri().query(), "next").unwrap_or_default()
            )
        ),
    ))
}

async fn login_form(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    BaseUrl(base): BaseUrl,
    req: Request,
) -> Result<Response, ApiError> {
    same_origin(req.headers(), &base)?;
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let f = form(req).await?;
    let (org, email, password) = (field(&f, "org"), field(&f, "email"), field(&f, "password"));
    let from = from.ip().to_string();
    let result = s
        .services
        .password_login(
            email,
            password,
            (!org.is_empty()).then_some(org),
            Some(&from),
            agent.as_deref(),
        )
        .await;
    match result {
        Ok(made) => {
            let mut resp = redirect(after_sign_in(field(&f, "next")));
            set_cookie(
                &mut resp,
                s.tls,
                session_cookie(s.tls),
                cookie_value(&made),
                s.services.limits.session_max.as_secs(),
            );
            Ok(resp)
        }
        Err(e) => {
            let status = ApiError(e).into_response().status();
            let message = match status {
                StatusCode::TOO_MANY_REQUESTS => {
                    "Too many failed attempts; try again in 15 minutes."
                }
                StatusCode::FORBIDDEN => {
                    "This organization signs in through its identity provider."
                }
                StatusCode::SERVICE_UNAVAILABLE => "The server is busy; try again shortly.",
                _ => "Wrong email or password.",
            };
            let options = s.services.sign_in_options(Some(org)).await?;
            Ok(page(
                status,
                "Sign in",
                &login_body(
                    options.as_ref(),
                    org,
                    email,
                    Some(message),
                    field(&f, "next"),
                ),
            ))
        }
    }
}

/// The live session of a page request, if any.
async fn page_session(
    s: &AppState,
    headers: &HeaderMap,
) -> Option<(
    holdfast_services::Principal,
    holdfast_services::SessionRecord,
)> {
    let token = cookie(headers, session_cookie(s.tls))?;
    s.services.session_principal(token).await.ok()
}

async fn account_page(
    State(s): State<AppState>,
    BaseUrl(base): BaseUrl,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some((p, session)) = page_session(&s, &headers).await else {
        return Ok(redirect("/login"));
    };
    let me = s.services.get_user(&p, &p.user_id).await?;
    let org = s.services.organization(&p, &base).await?;
    let csrf = s.services.session_csrf_token(&session.id)?;
    let mut body = format!(
        "<h1>Your account</h1><p>Signed in as <strong id=\"who\">{}</strong> in \
         <strong id=\"org\">{}</strong> (by {}).</p>\
         <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
         <button type=\"submit\" id=\"sign-out\">Sign out</button></form>",
        esc(&me.email),
        esc(&org.name),
        esc(session.method.split(':').next().unwrap_or_default()),
        esc(&csrf),
    );
    body.push_str(
        "<h2>Sessions</h2><table id=\"sessions\"><thead><tr><th scope=\"col\">Started</th>\
         <th scope=\"col\">Last seen</th><th scope=\"col\">How</th><th scope=\"col\">From</th>\
         <th scope=\"col\"><span class=\"hidden\">Actions</span></th></tr></thead><tbody>",
    );
    for r in s.services.list_sessions(&p, None).await? {
        let action = if r.id == session.id {
            "this session".to_owned()
        } else {
            format!(
                "<form method=\"post\" action=\"/logout\">\
                 <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
                 <input type=\"hidden\" name=\"session_id\" value=\"{}\">\
                 <button type=\"submit\">End</button></form>",
                esc(&csrf),
                esc(&r.id)
            )
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            esc(&r.created),
            esc(&r.last_seen),
            esc(r.method.split(':').next().unwrap_or_default()),
            esc(r.from_addr.as_deref().unwrap_or("")),
        ));
    }
    body.push_str(
        "</tbody></table><h2>API keys</h2><table id=\"keys\"><thead><tr>\
         <th scope=\"col\">Name</th><th scope=\"col\">Key</th><th scope=\"col\">Created</th>\
         </tr></thead><tbody>",
    );
    for k in s.services.list_keys(&p, false).await? {
        if k.user_id != p.user_id || k.revoked_at.is_some() {
            continue;
        }
        body.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&k.name),
            esc(&k.preview_name),
            esc(&k.created),
        ));
    }
    body.push_str("</tbody></table>");
    Ok(page(StatusCode::OK, "Your account", &body))
}

/// Signs out (or, with `session_id`, ends another of the user's sessions). The form must
/// carry the session's CSRF token.
async fn logout_form(State(s): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let Some((p, session)) = page_session(&s, req.headers()).await else {
        return Ok(redirect("/login"));
    };
    let f = form(req).await?;
    let csrf = field(&f, "csrf_token");
    if !holdfast_services::Services::csrf_matches(&session, csrf) {
        return Err(ApiError(ServiceError::Forbidden(
            "the form did not carry this session's CSRF token".into(),
        )));
    }
    let target = match field(&f, "session_id") {
        "" => session.id.clone(),
        other => other.to_owned(),
    };
    s.services.revoke_session(&p, &target).await?;
    s.services
        .audit_session_end(&p, &target, target == session.id)
        .await;
    if target != session.id {
        return Ok(redirect("/account"));
    }
    let mut resp = redirect("/login");
    set_cookie(&mut resp, s.tls, session_cookie(s.tls), "", 0);
    Ok(resp)
}

fn set_password_body(message: Option<&str>, token: &str) -> String {
    let mut out = String::from("<h1>Set your password</h1>");
    if let Some(m) = message {
        out.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)));
    }
    out.push_str(&format!(
        "<p>Choose a password of 12 to 256 characters. The link works once.</p>\
         <form method=\"post\" action=\"/auth/set-password\">\
         <input type=\"hidden\" id=\"token\" name=\"token\" value=\"{}\">\
         <label for=\"password\">New password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" required minlength=\"12\" maxlength=\"256\" autocomplete=\"new-password\">\
         <label for=\"confirm\">Repeat it</label>\
         <input id=\"confirm\" name=\"confirm\" type=\"password\" required minlength=\"12\" maxlength=\"256\" autocomplete=\"new-password\">\
         <button type=\"submit\">Set password</button></form>\
         <script src=\"/static/set-password.js\"></script>",
        esc(token)
    ));
    out
}

/// The invite and reset page: the link's token travels in its fragment, which a small
/// same-origin script puts into the form.
async fn set_password_page() -> Response {
    page(
        StatusCode::OK,
        "Set your password",
        &set_password_body(None, ""),
    )
}

async fn set_password_form(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    BaseUrl(base): BaseUrl,
    req: Request,
) -> Result<Response, ApiError> {
    same_origin(req.headers(), &base)?;
    let f = form(req).await?;
    let (token, password) = (field(&f, "token"), field(&f, "password"));
    if password != field(&f, "confirm") {
        return Ok(page(
            StatusCode::BAD_REQUEST,
            "Set your password",
            &set_password_body(Some("The two passwords differ."), token),
        ));
    }
    let from = from.ip().to_string();
    match s.services.set_password(token, password, Some(&from)).await {
        Ok(()) => Ok(redirect("/login?password_set=1")),
        Err(e) => {
            let message = e.to_string();
            let status = ApiError(e).into_response().status();
            Ok(page(
                status,
                "Set your password",
                &set_password_body(Some(&message), token),
            ))
        }
    }
}

async fn set_password_script() -> Response {
    static_file(SET_PASSWORD_JS, "text/javascript; charset=utf-8")
}

async fn oidc_start(
    State(s): State<AppState>,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    connection_id(&id)?;
    let started = s.services.oidc_start(&base, &id).await?;
    Ok(to_provider(
        &s,
        &started.authorize_url,
        &started.browser_secret,
    ))
}

/// Off to the identity provider, with the cookie that binds the sign-in to this browser.
fn to_provider(s: &AppState, url: &str, browser_secret: &str) -> Response {
    let mut resp = redirect(url);
    set_cookie(
        &mut resp,
        s.tls,
        binding_cookie(s.tls),
        browser_secret,
        u64::try_from(holdfast_services::sso::LOGIN_TTL_SECS).unwrap_or(600),
    );
    resp
}

/// The client's address, and whether a refusal from it may be audited this minute (the
/// per-address limit keeps a flood of refusals out of the audit log; they are logged).
fn client(s: &AppState, from: SocketAddr) -> (String, bool) {
    let from = from.ip().to_string();
    let minute = s.services.clock.now().unix_timestamp() / 60;
    let audit = s.failure_limiter.admit(&from, minute);
    (from, audit)
}

async fn oidc_callback(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    BaseUrl(base): BaseUrl,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let q = uri.query();
    let (code, state, error) = (query(q, "code"), query(q, "state"), query(q, "error"));
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let (from, audit_refusal) = client(&s, from);
    let result = s
        .services
        .oidc_finish(
            &base,
            &holdfast_services::sso::OidcCallback {
                code: code.as_deref(),
                state: state.as_deref().unwrap_or_default(),
                error: error.as_deref(),
                browser_secret: cookie(&headers, binding_cookie(s.tls)),
                audit_refusal,
            },
            Some(&from),
            agent,
        )
        .await;
    let mut resp = provider_outcome(&s, result);
    set_cookie(&mut resp, s.tls, binding_cookie(s.tls), "", 0);
    Ok(resp)
}

/// The end of a sign-in through an identity provider: to the account page with a session
/// cookie, or a page saying it failed (the reason is in the log and the audit log only).
fn provider_outcome(
    s: &AppState,
    result: Result<holdfast_services::accounts::NewSession, ServiceError>,
) -> Response {
    match result {
        Ok(made) => {
            let mut resp = redirect("/account");
            set_cookie(
                &mut resp,
                s.tls,
                session_cookie(s.tls),
                cookie_value(&made),
                s.services.limits.session_max.as_secs(),
            );
            resp
        }
        Err(e) => refused_page(e),
    }
}

fn refused_page(e: ServiceError) -> Response {
    let status = ApiError(e).into_response().status();
    page(
        status,
        "Sign-in failed",
        "<h1>Sign-in failed</h1><p class=\"error\" role=\"alert\" id=\"refused\">Signing in \
         through the identity provider failed.</p><p><a href=\"/login\">Back to sign-in</a></p>",
    )
}

/// A connection id from a path: anything longer than an id is no connection.
fn connection_id(id: &str) -> Result<(), ApiError> {
    if id.len() > 64 {
        return Err(ApiError(ServiceError::NotFound(
            "sign-in connection".into(),
        )));
    }
    Ok(())
}

async fn saml_start(
    State(s): State<AppState>,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    connection_id(&id)?;
    let started = s.services.saml_start(&base, &id).await?;
    Ok(to_provider(
        &s,
        &started.redirect_url,
        &started.browser_secret,
    ))
}

async fn saml_metadata(
    State(s): State<AppState>,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    connection_id(&id)?;
    let xml = s.services.saml_sp_metadata(&base, &id).await?;
    let mut resp = xml.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/samlmetadata+xml"),
    );
    Ok(resp)
}

/// The assertion consumer service (HTTP-POST binding). The identity provider's page posts
/// here from its own origin, so this form needs no origin check: what it carries is verified
/// instead, and it signs nobody in by itself (see `holdfast_services::saml`).
async fn saml_acs(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    connection_id(&id)?;
    let form = form_of_at_most(req, holdfast_services::saml::MAX_RESPONSE_BYTES + 1024).await?;
    let (from, audit_refusal) = client(&s, from);
    let result = s
        .services
        .saml_acs(
            &base,
            &id,
            field(&form, "SAMLResponse"),
            field(&form, "RelayState"),
            Some(&from),
            audit_refusal,
        )
        .await;
    Ok(match result {
        Ok(token) => {
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("token", &token)
                .finish();
            redirect(&format!("/auth/saml/finish?{q}"))
        }
        Err(e) => refused_page(e),
    })
}

async fn saml_finish(
    State(s): State<AppState>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = query(uri.query(), "token").unwrap_or_default();
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let (from, audit_refusal) = client(&s, from);
    let result = s
        .services
        .saml_finish(
            &token,
            cookie(&headers, binding_cookie(s.tls)),
            Some(&from),
            agent,
            audit_refusal,
        )
        .await;
    let mut resp = provider_outcome(&s, result);
    set_cookie(&mut resp, s.tls, binding_cookie(s.tls), "", 0);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::after_sign_in;

    #[test]
    fn a_sign_in_returns_only_to_pages_of_the_ui() {
        for ok in ["/app", "/app/acme/p/x%20y/logs?oid=1", "/app?x=1"] {
            assert_eq!(after_sign_in(ok), ok);
        }
        for refused in [
            "",
            "//evil.test/app",
            "https://evil.test/app",
            "/apple",
            "/account/../app",
            "/app/\\evil",
            "/app/a b",
            "/app/\r\nSet-Cookie: x=1",
            "/login",
        ] {
            assert_eq!(after_sign_in(refused), "/account", "{refused:?}");
        }
    }
}
