//! Automations: retention policies and scheduled exports of a project
//! (`/v1/project_automation`) and the organization's default policies (`/v1/org_automation`),
//! with their previews and runs; and exports started through the API (`/v1/export`).

use crate::extract::{Authed, BaseUrl, Checked, CheckedOrEmpty, Id, Params};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use holdfast_api::ObjectList;
use holdfast_api::objects::{
    AutomationRun, CreateOrgAutomation, CreateProjectAutomation, ExportJob, ExportListQuery,
    OrgAutomation, OrgAutomationListQuery, PatchAutomation, ProjectAutomation,
    ProjectAutomationListQuery, RetentionPreview, RetentionPreviewRequest, StartExport,
};
use holdfast_services::ServiceError;
use holdfast_services::retention::{Level, org_automation_json, project_automation_json, run_json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Reply<T> = Result<Json<T>, ApiError>;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_project_automations, create_project_automation))
        .routes(routes!(
            get_project_automation,
            patch_project_automation,
            delete_project_automation
        ))
        .routes(routes!(preview_project_automation))
        .routes(routes!(project_automation_runs))
        .routes(routes!(run_project_automation))
        .routes(routes!(list_org_automations, create_org_automation))
        .routes(routes!(
            get_org_automation,
            patch_org_automation,
            delete_org_automation
        ))
        .routes(routes!(preview_org_automation))
        .routes(routes!(list_exports, start_export))
        .routes(routes!(get_export))
}

/// Routes without a key: the signed export downloads.
pub fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(download_export))
}

/// Starts an export of the organization, or of one project, in the background (`create` on
/// `org_export`: Owners, or a grant); one at a time per organization (409 while one runs).
#[utoipa::path(post, path = "/v1/export", tag = "exports", request_body = StartExport,
    responses((status = 200, body = ExportJob)))]
async fn start_export(
    State(s): State<AppState>,
    Authed(p): Authed,
    CheckedOrEmpty(b): CheckedOrEmpty<StartExport>,
) -> Reply<ExportJob> {
    Ok(Json(s.services.start_api_export(&p, &b).await?))
}

/// The organization's exports started through the API, newest first (`read` on
/// `org_export`).
#[utoipa::path(get, path = "/v1/export", tag = "exports", params(ExportListQuery),
    responses((status = 200, body = ObjectList<ExportJob>)))]
async fn list_exports(
    State(s): State<AppState>,
    Authed(p): Authed,
    Params(q): Params<ExportListQuery>,
) -> Reply<ObjectList<ExportJob>> {
    let limit = list_limit(q.limit)?;
    Ok(Json(s.services.api_exports(&p, limit).await?.into()))
}

/// An export's state; once done, its files, each with a download link signed for a limited
/// time.
#[utoipa::path(get, path = "/v1/export/{id}", tag = "exports",
    params(("id" = String, Path)), responses((status = 200, body = ExportJob)))]
async fn get_export(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Id(id): Id,
) -> Reply<ExportJob> {
    Ok(Json(s.services.api_export(&p, &id, &base).await?))
}

/// One file of an export, opened (JSON Lines or Parquet), from a signed link.
#[utoipa::path(get, path = "/v1/export/download/{token}", tag = "exports", security(()),
    params(("token" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>)))]
async fn download_export(
    State(s): State<AppState>,
    Id(token): Id,
    axum::extract::ConnectInfo(from): axum::extract::ConnectInfo<std::net::SocketAddr>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let from = from.ip().to_string();
    let (content_type, pieces) = s.services.download_export_file(&token, Some(&from)).await?;
    Ok(super::sdk::download(content_type.to_owned(), pieces))
}

/// A list's `limit`: 1 to 1000, 100 when absent.
fn list_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(100),
        Some(n) if (1..=1000).contains(&n) => Ok(n),
        Some(_) => Err(ApiError(ServiceError::query_param(
            "limit",
            "`limit` must be 1 to 1000",
        ))),
    }
}

fn projects(
    list: Vec<holdfast_services::retention::AutomationRecord>,
) -> Reply<ObjectList<ProjectAutomation>> {
    let objects = list
        .iter()
        .map(project_automation_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(objects.into()))
}

/// Lists a project's automations (read on the project).
#[utoipa::path(get, path = "/v1/project_automation", tag = "automations",
    params(ProjectAutomationListQuery),
    responses((status = 200, body = ObjectList<ProjectAutomation>)))]
async fn list_project_automations(
    State(s): State<AppState>,
    Authed(p): Authed,
    Params(q): Params<ProjectAutomationListQuery>,
) -> Reply<ObjectList<ProjectAutomation>> {
    let limit = list_limit(q.limit)?;
    let project = q.project_id.as_deref().ok_or_else(|| {
        ApiError(ServiceError::query_param(
            "project_id",
            "`project_id` is required",
        ))
    })?;
    projects(
        s.services
            .list_automations(&p, Some(project), q.automation_name.as_deref(), limit)
            .await?,
    )
}

/// Creates a project's retention policy (`delete` on the project), or returns the one of
/// that name unchanged. A project has at most one policy per object type.
#[utoipa::path(post, path = "/v1/project_automation", tag = "automations",
    request_body = CreateProjectAutomation,
    responses((status = 200, body = ProjectAutomation)))]
async fn create_project_automation(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<CreateProjectAutomation>,
) -> Reply<ProjectAutomation> {
    let made = s.services.create_project_automation(&p, &b).await?;
    Ok(Json(project_automation_json(&made)?))
}

#[utoipa::path(get, path = "/v1/project_automation/{id}", tag = "automations",
    params(("id" = String, Path)), responses((status = 200, body = ProjectAutomation)))]
async fn get_project_automation(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
) -> Reply<ProjectAutomation> {
    let rec = s.services.get_automation(&p, Level::Project, &id).await?;
    Ok(Json(project_automation_json(&rec)?))
}

#[utoipa::path(patch, path = "/v1/project_automation/{id}", tag = "automations",
    params(("id" = String, Path)), request_body = PatchAutomation,
    responses((status = 200, body = ProjectAutomation)))]
async fn patch_project_automation(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    Checked(b): Checked<PatchAutomation>,
) -> Reply<ProjectAutomation> {
    let rec = s
        .services
        .patch_automation(&p, Level::Project, &id, &b)
        .await?;
    Ok(Json(project_automation_json(&rec)?))
}

#[utoipa::path(delete, path = "/v1/project_automation/{id}", tag = "automations",
    params(("id" = String, Path)), responses((status = 200, body = ProjectAutomation)))]
async fn delete_project_automation(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
) -> Reply<ProjectAutomation> {
    let rec = s
        .services
        .delete_automation(&p, Level::Project, &id)
        .await?;
    Ok(Json(project_automation_json(&rec)?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RunsQuery {
    /// At most this many (1 to 1000), newest first.
    limit: Option<i64>,
}

/// A scheduled export's runs, newest first: status, the transaction range each exported,
/// rows, where it went.
#[utoipa::path(get, path = "/v1/project_automation/{id}/runs", tag = "automations",
    params(("id" = String, Path), RunsQuery),
    responses((status = 200, body = ObjectList<AutomationRun>)))]
async fn project_automation_runs(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    Params(q): Params<RunsQuery>,
) -> Reply<ObjectList<AutomationRun>> {
    let limit = list_limit(q.limit)?;
    let runs = s.services.automation_runs(&p, &id, limit).await?;
    Ok(Json(runs.iter().map(run_json).collect::<Vec<_>>().into()))
}

/// Asks for a run of a scheduled export now (at the server's next purge run), whatever its
/// interval.
#[utoipa::path(post, path = "/v1/project_automation/{id}/run", tag = "automations",
    params(("id" = String, Path)),
    responses((status = 200, body = holdfast_api::StatusReply)))]
async fn run_project_automation(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
) -> Reply<holdfast_api::StatusReply> {
    s.services.request_automation_run(&p, &id).await?;
    Ok(Json(holdfast_api::StatusReply::success()))
}

/// What a project's retention policy would delete if it were saved now (changes nothing).
#[utoipa::path(post, path = "/v1/project_automation/preview", tag = "automations",
    request_body = RetentionPreviewRequest,
    responses((status = 200, body = RetentionPreview)))]
async fn preview_project_automation(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<RetentionPreviewRequest>,
) -> Reply<RetentionPreview> {
    Ok(Json(
        s.services.preview_retention(&p, Level::Project, &b).await?,
    ))
}

/// Lists the organization's automations: its default retention policies.
#[utoipa::path(get, path = "/v1/org_automation", tag = "automations",
    params(OrgAutomationListQuery),
    responses((status = 200, body = ObjectList<OrgAutomation>)))]
async fn list_org_automations(
    State(s): State<AppState>,
    Authed(p): Authed,
    Params(q): Params<OrgAutomationListQuery>,
) -> Reply<ObjectList<OrgAutomation>> {
    let limit = list_limit(q.limit)?;
    s.services.is_own_org(&p, q.org_name.as_deref()).await?;
    let list = s
        .services
        .list_automations(&p, None, q.automation_name.as_deref(), limit)
        .await?;
    let objects = list
        .iter()
        .map(org_automation_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(objects.into()))
}

/// Creates the organization's default retention policy for an object type (`update` on the
/// organization: Owners), or returns the one of that name unchanged. It applies to every
/// project, new ones included, without a policy of its own for that object type.
#[utoipa::path(post, path = "/v1/org_automation", tag = "automations",
    request_body = CreateOrgAutomation, responses((status = 200, body = OrgAutomation)))]
async fn create_org_automation(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<CreateOrgAutomation>,
) -> Reply<OrgAutomation> {
    let made = s.services.create_org_automation(&p, &b).await?;
    Ok(Json(org_automation_json(&made)?))
}

#[utoipa::path(get, path = "/v1/org_automation/{id}", tag = "automations",
    params(("id" = String, Path)), responses((status = 200, body = OrgAutomation)))]
async fn get_org_automation(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
) -> Reply<OrgAutomation> {
    let rec = s.services.get_automation(&p, Level::Org, &id).await?;
    Ok(Json(org_automation_json(&rec)?))
}

#[utoipa::path(patch, path = "/v1/org_automation/{id}", tag = "automations",
    params(("id" = String, Path)), request_body = PatchAutomation,
    responses((status = 200, body = OrgAutomation)))]
async fn patch_org_automation(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    Checked(b): Checked<PatchAutomation>,
) -> Reply<OrgAutomation> {
    let rec = s.services.patch_automation(&p, Level::Org, &id, &b).await?;
    Ok(Json(org_automation_json(&rec)?))
}

#[utoipa::path(delete, path = "/v1/org_automation/{id}", tag = "automations",
    params(("id" = String, Path)), responses((status = 200, body = OrgAutomation)))]
async fn delete_org_automation(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
) -> Reply<OrgAutomation> {
    let rec = s.services.delete_automation(&p, Level::Org, &id).await?;
    Ok(Json(org_automation_json(&rec)?))
}

/// What the organization's default policy would delete if it were saved now, in every live
/// project without a policy of its own for the object type (changes nothing).
#[utoipa::path(post, path = "/v1/org_automation/preview", tag = "automations",
    request_body = RetentionPreviewRequest,
    responses((status = 200, body = RetentionPreview)))]
async fn preview_org_automation(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<RetentionPreviewRequest>,
) -> Reply<RetentionPreview> {
    Ok(Json(
        s.services.preview_retention(&p, Level::Org, &b).await?,
    ))
}
