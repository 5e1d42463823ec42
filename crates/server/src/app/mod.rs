//! The web UI under `/app`: server-rendered pages (maud templates, checked when compiled and
//! escaping every value) over the same services as the API. A page request is authenticated
//! by the same middleware as the API, so a browser session is just another principal: every
//! read is decided and audited as an API read is. Without a session a page answers with the
//! sign-in page, which returns to it.
//!
//! Every link the SDKs print opens here: `/app/{org}/p/{project}/experiments/{name}` (`Eval`),
//! `/app/{org}/p/{project}/logs?oid={row id}` (`span.link()`),
//! `/app/{org}/object?object_type=…&object_id=…&id=…` (`span.permalink()`), and the
//! `project_url`/`experiment_url` of the summarize endpoints.

mod admin;
mod datasets;
mod experiments;
pub(crate) use experiments::RowsKept;
mod keys;
mod logs;
mod prompts;
mod trace;
mod view;

use crate::extract::BaseUrl;
use crate::pages::{html_page, redirect, static_file};
use crate::{ApiError, AppState};
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use holdfast_core::authz::Permission;
use holdfast_core::object::ObjectType;
use holdfast_services::objects::ListParams;
use holdfast_services::{ObjectRecord, Principal, ProjectRecord, ServiceError};
use maud::{DOCTYPE, Markup, html};
use serde_json::{Value, json};

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/app", get(home))
        .route("/app/projects/{id}", get(project_by_id))
        .route("/app/experiments/{id}", get(experiment_by_id))
        .route("/app/datasets/{id}", get(dataset_by_id))
        .route("/app/{org}", get(projects))
        .route("/app/{org}/object", get(object_link))
        .route("/app/{org}/attachment", get(attachment))
        .route("/app/{org}/keys", get(keys::page))
        .route("/app/{org}/admin", get(admin::page))
        .route("/app/{org}/audit", get(admin::audit))
        .route("/app/{org}/p/{project}", get(project_home))
        .route("/app/{org}/p/{project}/logs", get(logs::page))
        .route("/app/{org}/p/{project}/experiments", get(experiments::list))
        .route(
            "/app/{org}/p/{project}/experiments/{name}",
            get(experiments::page),
        )
        .route("/app/{org}/p/{project}/datasets", get(datasets::list))
        .route("/app/{org}/p/{project}/prompts", get(prompts::list))
        .route("/app/{org}/p/{project}/prompts/{slug}", get(prompts::page))
        .route(
            "/app/{org}/p/{project}/datasets/{name}",
            get(datasets::page),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::auth::authenticate,
        ))
        .route_layer(axum::middleware::from_fn(to_sign_in))
}

/// The UI's stylesheet (and the router that serves it without a session): the fixed rules,
/// then the timeline's offsets and widths in whole percent (a page may not carry inline
/// styles under its Content-Security-Policy).
pub fn assets() -> Router<AppState> {
    Router::new()
        .route("/static/app.css", get(stylesheet))
        .route("/static/app.js", get(script))
}

async fn script() -> Response {
    static_file(include_str!("app.js"), "text/javascript; charset=utf-8")
}

static STYLESHEET: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut css = String::from(include_str!("app.css"));
    for d in 0..=24 {
        css.push_str(&format!(
            "ol.spans li.d{d} {{ padding-left: {:.1}rem; }}\n",
            f64::from(d) * 0.9
        ));
    }
    for p in 0..=100 {
        css.push_str(&format!(
            ".o{p} {{ left: {p}%; }} .w{p} {{ width: {p}%; }}\n"
        ));
    }
    css
});

async fn stylesheet() -> Response {
    static_file(&STYLESHEET, "text/css; charset=utf-8")
}

/// Sends a browser without a session (or with one that ended) to the sign-in page, which
/// returns here afterwards. A request with an API key is left to the API's answer.
async fn to_sign_in(req: Request, next: Next) -> Response {
    let back = req
        .uri()
        .path_and_query()
        .map_or("/app", |p| p.as_str())
        .to_owned();
    let has_key = req.headers().contains_key(header::AUTHORIZATION);
    let has_cookie = req.headers().contains_key(header::COOKIE);
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    if !has_key && !has_cookie && get {
        return sign_in(&back);
    }
    let resp = next.run(req).await;
    if resp.status() == StatusCode::UNAUTHORIZED && !has_key && get {
        return sign_in(&back);
    }
    resp
}

fn sign_in(back: &str) -> Response {
    let next: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", back)
        .finish();
    redirect(&format!("/login?{next}"))
}

/// One path segment, percent-encoded (names may hold spaces, slashes, anything).
pub(crate) fn path_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from pairs, dropping empty values.
pub(crate) fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        q.append_pair(k, v);
    }
    q.finish()
}

/// A failure shown as a page: the API's status for the error, its message, and a way back.
pub(crate) struct PageError(pub ServiceError);

impl From<ServiceError> for PageError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let message = self.0.to_string();
        let status = ApiError(self.0).into_response().status();
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            s if s.is_client_error() => "Cannot show this page",
            _ => "Something went wrong",
        };
        let body = html! {
            h1 { (title) }
            p.error role="alert" { (message) }
            p { a href="/app" { "Back to your projects" } }
        };
        document(status, title, None, body)
    }
}

pub(crate) type PageResult = Result<Response, PageError>;

/// Who is looking, in which organization.
pub(crate) struct Viewer {
    pub p: Principal,
    pub org: String,
    pub base: String,
    /// The session's CSRF token, which the page's script sends with the API calls its
    /// forms make (none for a request made with an API key).
    pub csrf: Option<String>,
}

/// The request's principal, which must belong to the organization the path names (404
/// otherwise: another organization's names are not confirmed).
pub(crate) async fn viewer(
    s: &AppState,
    authed: crate::extract::Authed,
    org: &str,
    base: String,
) -> Result<Viewer, PageError> {
    let p = authed.0;
    let mine = s.services.organization(&p, &base).await?;
    if mine.name != org {
        return Err(ServiceError::NotFound(format!("organization {org:?}")).into());
    }
    let csrf = p
        .key_id
        .strip_prefix("session:")
        .map(|id| s.services.session_csrf_token(id))
        .transpose()?;
    Ok(Viewer {
        p,
        org: mine.name,
        base,
        csrf,
    })
}

/// Where a page is: the project and which of its sections.
pub(crate) struct Place<'a> {
    pub project: &'a str,
    pub section: &'a str,
}

pub(crate) fn document(
    status: StatusCode,
    title: &str,
    nav: Option<(&Viewer, Option<Place<'_>>)>,
    body: Markup,
) -> Response {
    let csrf = nav.as_ref().and_then(|(v, _)| v.csrf.as_deref());
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Holdfast" }
                link rel="stylesheet" href="/static/holdfast.css";
                link rel="stylesheet" href="/static/app.css";
                @if let Some(token) = csrf { meta name="csrf-token" content=(token); }
                script src="/static/app.js" defer {}
            }
            body.app {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav aria-label="Main" {
                        a.brand href="/app" { "Holdfast" }
                        @if let Some((Viewer { org, .. }, place)) = &nav {
                            a href={ "/app/" (path_part(org)) } { (org) }
                            @if let Some(place) = place {
                                @let base = format!("/app/{}/p/{}", path_part(org), path_part(place.project));
                                span.sep aria-hidden="true" { "/" }
                                a href={ (base) "/logs" } { (place.project) }
                                @for (section, label) in [("logs", "Logs"), ("experiments", "Experiments"), ("datasets", "Datasets"), ("prompts", "Prompts")] {
                                    a.tab href={ (base) "/" (section) }
                                        aria-current=[(place.section == section).then_some("page")] { (label) }
                                }
                            }
                        }
                        @if let Some((Viewer { org, .. }, _)) = &nav {
                            a.end href={ "/app/" (path_part(org)) "/keys" } { "API keys" }
                            a href={ "/app/" (path_part(org)) "/admin" } { "Admin" }
                        }
                        a href="/account" { "Account" }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    };
    html_page(status, html.into_string())
}

/// The viewer and the project a project's page is about (404 when they may not read it).
pub(crate) async fn project_page(
    s: &AppState,
    authed: crate::extract::Authed,
    base: String,
    org: &str,
    project: &str,
) -> Result<(Viewer, ProjectRecord), PageError> {
    let v = viewer(s, authed, org, base).await?;
    let project = s
        .services
        .resolve_project(&v.p, None, Some(project), false)
        .await?;
    Ok((v, project))
}

/// The path of a section of a project's pages, or of one object in it.
pub(crate) fn project_path(v: &Viewer, project: &str, section: &str, name: Option<&str>) -> String {
    let mut out = format!(
        "/app/{}/p/{}/{section}",
        path_part(&v.org),
        path_part(project)
    );
    if let Some(n) = name {
        out.push('/');
        out.push_str(&path_part(n));
    }
    out
}

/// What a list of a project's objects (optionally of one name) asks for.
pub(crate) fn in_project(project_id: &str, name: Option<&str>) -> ListParams {
    ListParams {
        project_id: Some(project_id.to_owned()),
        name: name.map(str::to_owned),
        ..Default::default()
    }
}

/// A project's experiment or dataset by name.
pub(crate) async fn object_named(
    s: &AppState,
    v: &Viewer,
    kind: ObjectType,
    project_id: &str,
    name: &str,
) -> Result<ObjectRecord, PageError> {
    s.services
        .list_objects(&v.p, kind, &in_project(project_id, Some(name)))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ServiceError::NotFound(format!("{kind} {name:?}")).into())
}

/// The datasets of a project the viewer may add rows to (at most the first 100), as (id,
/// name): what "add to dataset" offers, and nothing when there are none.
pub(crate) async fn writable_datasets(
    s: &AppState,
    v: &Viewer,
    project_id: &str,
) -> Result<Vec<(String, String)>, ServiceError> {
    let params = ListParams {
        limit: Some(100),
        ..in_project(project_id, None)
    };
    let datasets = s
        .services
        .list_objects(&v.p, ObjectType::Dataset, &params)
        .await?;
    // One read of the viewer's policy for all of them, not one per dataset.
    let writable = s
        .services
        .permitted(&v.p, ObjectType::Dataset, &datasets, Permission::Update)
        .await?;
    Ok(datasets
        .into_iter()
        .zip(writable)
        .filter(|(_, w)| *w)
        .map(|(d, _)| (d.id, d.name))
        .collect())
}

/// Whether the viewer holds `permission` on an object (as the API would decide it).
pub(crate) async fn may(
    s: &AppState,
    v: &Viewer,
    kind: ObjectType,
    id: &str,
    permission: &str,
) -> Result<bool, ServiceError> {
    let info = s.services.object_info(&v.p, kind, id).await?;
    Ok(info
        .get("permissions")
        .and_then(Value::as_array)
        .is_some_and(|p| p.iter().any(|x| x == permission)))
}

/// Runs a structured query as the viewer; returns its rows and the next page's cursor.
pub(crate) async fn run_query(
    s: &AppState,
    v: &Viewer,
    query: Value,
) -> Result<(Vec<Value>, Option<String>), ServiceError> {
    let mut out = s.services.btql(&v.p, &json!({ "query": query })).await?;
    let cursor = out.get("cursor").and_then(Value::as_str).map(str::to_owned);
    let rows = match out.get_mut("data").map(Value::take) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    Ok((rows, cursor))
}

/// A query's source: `kind('id')` in `shape`.
pub(crate) fn source(kind: &str, id: &str, shape: &str) -> Value {
    json!({"op": "function", "name": {"op": "ident", "name": [kind]},
           "args": [{"op": "literal", "value": id}], "shape": shape})
}

/// `field = 'value'`.
pub(crate) fn equals(field: &str, value: &str) -> Value {
    json!({"op": "eq", "left": {"op": "ident", "name": [field]},
           "right": {"op": "literal", "value": value}})
}

/// One query parameter of a page.
pub(crate) fn param(req_query: Option<&str>, name: &str) -> String {
    form_urlencoded::parse(req_query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.replace('\0', ""))
        .unwrap_or_default()
}

async fn home(
    State(s): State<AppState>,
    authed: crate::extract::Authed,
    BaseUrl(base): BaseUrl,
) -> PageResult {
    let org = s.services.organization(&authed.0, &base).await?;
    Ok(redirect(&format!("/app/{}", path_part(&org.name))))
}

async fn projects(
    State(s): State<AppState>,
    authed: crate::extract::Authed,
    BaseUrl(base): BaseUrl,
    Path(org): Path<String>,
) -> PageResult {
    let v = viewer(&s, authed, &org, base).await?;
    let params = ListParams::default();
    let list = s.services.list_projects(&v.p, &params).await?;
    let body = html! {
        h1 { "Projects" }
        @if list.is_empty() {
            p { "No projects you may see yet. Log a trace or run an eval with an SDK to create one." }
        } @else {
            table #projects {
                thead { tr { th scope="col" { "Project" } th scope="col" { "Created" } th scope="col" { "Sections" } } }
                tbody {
                    @for project in &list {
                        @let base = format!("/app/{}/p/{}", path_part(&v.org), path_part(&project.name));
                        tr {
                            td { a href={ (base) "/logs" } { (project.name) } }
                            td { (view::time(&project.created)) }
                            td { a href={ (base) "/logs" } { "Logs" } " · " a href={ (base) "/experiments" } { "Experiments" } }
                        }
                    }
                }
            }
        }
    };
    Ok(document(StatusCode::OK, "Projects", Some((&v, None)), body))
}

async fn project_home(Path((org, project)): Path<(String, String)>) -> Response {
    redirect(&format!(
        "/app/{}/p/{}/logs",
        path_part(&org),
        path_part(&project)
    ))
}

/// The organization's name and a project's, for links by id.
async fn names(
    s: &AppState,
    p: &Principal,
    base: &str,
    project_id: &str,
) -> Result<(String, String), ServiceError> {
    let org = s.services.organization(p, base).await?;
    let project = s.services.get_project(p, project_id).await?;
    Ok((path_part(&org.name), path_part(&project.name)))
}

async fn project_by_id(
    State(s): State<AppState>,
    authed: crate::extract::Authed,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> PageResult {
    let (org, project) = names(&s, &authed.0, &base, &id).await?;
    Ok(redirect(&format!("/app/{org}/p/{project}/logs")))
}

async fn experiment_by_id(
    State(s): State<AppState>,
    authed: crate::extract::Authed,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> PageResult {
    object_by_id(&s, &authed.0, &base, ObjectType::Experiment, &id).await
}

async fn dataset_by_id(
    State(s): State<AppState>,
    authed: crate::extract::Authed,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> PageResult {
    object_by_id(&s, &authed.0, &base, ObjectType::Dataset, &id).await
}

/// The page of an experiment or a dataset named by id.
async fn object_by_id(
    s: &AppState,
    p: &Principal,
    base: &str,
    kind: ObjectType,
    id: &str,
) -> PageResult {
    let o = s.services.get_object(p, kind, id).await?;
    let (org, project) = names(s, p, base, &o.project_id).await?;
    let section = match kind {
        ObjectType::Dataset => "datasets",
        _ => "experiments",
    };
    Ok(redirect(&format!(
        "/app/{org}/p/{project}/{section}/{}",
        path_part(&o.name)
    )))
}

/// `span.permalink()` and `span.link()`: the page of the object with the row's trace open.
async fn object_link(
    State(s): State<AppState>,
    authed: crate::extract::Authed,
    BaseUrl(base): BaseUrl,
    Path(org): Path<String>,
    req: Request,
) -> PageResult {
    let v = viewer(&s, authed, &org, base).await?;
    let q = req.uri().query();
    let (kind, object_id, row) = (
        param(q, "object_type"),
        param(q, "object_id"),
        param(q, "id"),
    );
    let oid = query_string(&[("oid", &row)]);
    let sep = if oid.is_empty() { "" } else { "?" };
    match ObjectType::parse(&kind) {
        Some(ObjectType::ProjectLogs) => {
            let (org, project) = names(&s, &v.p, &v.base, &object_id).await?;
            Ok(redirect(&format!("/app/{org}/p/{project}/logs{sep}{oid}")))
        }
        Some(ObjectType::Experiment) => {
            let e = s
                .services
                .get_object(&v.p, ObjectType::Experiment, &object_id)
                .await?;
            let (org, project) = names(&s, &v.p, &v.base, &e.project_id).await?;
            Ok(redirect(&format!(
                "/app/{org}/p/{project}/experiments/{}{sep}{oid}",
                path_part(&e.name)
            )))
        }
        _ => Err(ServiceError::field(
            "object_type",
            "this link names an object type the UI cannot open (experiment or project_logs)",
        )
        .into()),
    }
}

/// An attachment a row references, through a signed download link of this server.
async fn attachment(
    State(s): State<AppState>,
    authed: crate::extract::Authed,
    BaseUrl(base): BaseUrl,
    Path(org): Path<String>,
    req: Request,
) -> PageResult {
    let v = viewer(&s, authed, &org, base).await?;
    let q = req.uri().query();
    let some = |name| Some(param(q, name)).filter(|x| !x.is_empty());
    let query = holdfast_api::sdk::AttachmentQuery {
        key: some("key"),
        url: some("url"),
        org_id: None,
        content_type: some("content_type"),
    };
    let out = s
        .services
        .attachment_download(&v.p, &query, &v.base)
        .await?;
    let url = out
        .get("downloadUrl")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The signed URL is this server's own; the page links stay same-origin.
    let local = url.strip_prefix(v.base.as_str()).unwrap_or(url);
    Ok(redirect(local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(path_part("Say Hi Bot"), "Say%20Hi%20Bot");
        assert_eq!(path_part("a/b?c#d"), "a%2Fb%3Fc%23d");
        assert_eq!(path_part("ünï"), "%C3%BCn%C3%AF");
        assert_eq!(query_string(&[("a", "x y"), ("b", "")]), "a=x+y");
    }
}
