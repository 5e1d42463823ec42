//! The REST API under `/v1`: projects, experiments, datasets, project logs and prompts.
//! Every success is 200 (the Python SDK treats 201 as a failure).

use crate::extract::{Authed, BaseUrl, Checked, CheckedOrEmpty, Id, Params};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use holdfast_api::ObjectList;
use holdfast_api::objects::{
    CreateObject, CreateProject, DatasetListQuery, ExperimentListQuery, InsertFunctions,
    InsertedFunctions, NamedObject, PatchObject, PatchProject, PatchPrompt, Project,
    ProjectListQuery, Prompt, PromptListQuery, PutPrompt, RestoreRequest, Restored,
    SummarizeDatasetQuery, SummarizeExperimentQuery, VersionQuery,
};
use holdfast_api::rows::{
    FeedbackRequest, FetchQuery, FetchRequest, FetchResponse, InsertRequest, InsertResponse,
};
use holdfast_core::object::{ObjectType, RowTarget};
use holdfast_services::objects::{ListParams, object_json, project_json};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Reply<T = Value> = Result<Json<T>, ApiError>;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, patch_project, delete_project))
        .routes(routes!(list_prompts, create_prompt, replace_prompt))
        .routes(routes!(get_prompt, patch_prompt, delete_prompt))
        .routes(routes!(insert_functions))
        .routes(routes!(summarize_experiment))
        .routes(routes!(summarize_dataset))
        .routes(routes!(experiment::list, experiment::create))
        .routes(routes!(
            experiment::get,
            experiment::patch,
            experiment::delete
        ))
        .routes(routes!(dataset::list, dataset::create))
        .routes(routes!(dataset::get, dataset::patch, dataset::delete))
        .routes(routes!(
            experiment_rows::fetch_post,
            experiment_rows::fetch_get
        ))
        .routes(routes!(experiment_rows::insert))
        .routes(routes!(experiment_rows::feedback))
        .routes(routes!(dataset_rows::fetch_post, dataset_rows::fetch_get))
        .routes(routes!(dataset_rows::insert))
        .routes(routes!(dataset_rows::feedback))
        .routes(routes!(logs_rows::fetch_post, logs_rows::fetch_get))
        .routes(routes!(logs_rows::insert))
        .routes(routes!(logs_rows::feedback))
        .routes(routes!(restore_project))
        .routes(routes!(restore_experiment))
        .routes(routes!(restore_dataset))
        .routes(routes!(restore_prompt))
        .routes(routes!(restore_project_logs))
}

/// Restores a deleted project within the grace period (`deletion_grace_secs`, one day by
/// default) after its deletion; `preview` changes nothing.
#[utoipa::path(post, path = "/v1/project/{id}/restore", tag = "projects",
    params(("id" = String, Path)), request_body = RestoreRequest,
    responses((status = 200, body = Restored)))]
async fn restore_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    CheckedOrEmpty(b): CheckedOrEmpty<RestoreRequest>,
) -> Reply<Restored> {
    Ok(Json(s.services.restore_project(&p, &id, b.preview).await?))
}

/// A restore route of an experiment, a dataset or a prompt.
macro_rules! restore_route {
    ($name:ident, $kind:expr, $path:literal, $tag:literal) => {
        /// Restores within the grace period a deleted experiment, dataset or prompt (its
        /// project must be live), or the rows of a live one (or of a project's logs) deleted
        /// by `_object_delete` or a retention policy; `preview` changes nothing.
        #[utoipa::path(post, path = $path, tag = $tag, params(("id" = String, Path)),
                    request_body = RestoreRequest, responses((status = 200, body = Restored)))]
        async fn $name(
            State(s): State<AppState>,
            Authed(p): Authed,
            Id(id): Id,
            CheckedOrEmpty(b): CheckedOrEmpty<RestoreRequest>,
        ) -> Reply<Restored> {
            Ok(Json(
                s.services.restore(&p, $kind, &id, &b).await?,
            ))
        }
    };
}
restore_route!(
    restore_experiment,
    ObjectType::Experiment,
    "/v1/experiment/{id}/restore",
    "experiments"
);
restore_route!(
    restore_dataset,
    ObjectType::Dataset,
    "/v1/dataset/{id}/restore",
    "datasets"
);
restore_route!(
    restore_project_logs,
    ObjectType::ProjectLogs,
    "/v1/project_logs/{id}/restore",
    "project logs"
);
restore_route!(
    restore_prompt,
    ObjectType::Prompt,
    "/v1/prompt/{id}/restore",
    "prompts"
);

/// `limit`, from the query string or (`in_body`) the body.
fn limit_in(limit: Option<i64>, in_body: bool) -> Result<Option<i64>, ApiError> {
    match limit {
        Some(n) if n < 1 => Err(ApiError(holdfast_services::ServiceError::InvalidField {
            field: "limit".into(),
            message: "`limit` must be a positive integer".into(),
            in_query: !in_body,
        })),
        other => Ok(other),
    }
}

fn limit(limit: Option<i64>) -> Result<Option<i64>, ApiError> {
    limit_in(limit, false)
}

// ---- projects ----

/// Lists the projects the caller may see.
#[utoipa::path(get, path = "/v1/project", tag = "projects", params(ProjectListQuery),
    responses((status = 200, body = ObjectList<Project>)))]
async fn list_projects(
    State(s): State<AppState>,
    Authed(p): Authed,
    Params(q): Params<ProjectListQuery>,
) -> Reply<ObjectList<Project>> {
    let params = ListParams {
        limit: limit(q.limit)?,
        starting_after: q.starting_after,
        name: q.project_name,
        org_name: q.org_name,
        ..Default::default()
    };
    let list = s.services.list_projects(&p, &params).await?;
    Ok(Json(
        list.iter().map(project_json).collect::<Vec<_>>().into(),
    ))
}

/// Creates a project, or returns the one of that name.
#[utoipa::path(post, path = "/v1/project", tag = "projects", request_body = CreateProject,
    responses((status = 200, body = Project)))]
async fn create_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<CreateProject>,
) -> Reply<Project> {
    Ok(Json(project_json(
        &s.services.create_project(&p, &b).await?,
    )))
}

#[utoipa::path(get, path = "/v1/project/{id}", tag = "projects",
    params(("id" = String, Path)), responses((status = 200, body = Project)))]
async fn get_project(State(s): State<AppState>, Authed(p): Authed, Id(id): Id) -> Reply<Project> {
    Ok(Json(project_json(&s.services.get_project(&p, &id).await?)))
}

#[utoipa::path(patch, path = "/v1/project/{id}", tag = "projects", params(("id" = String, Path)),
    request_body = PatchProject, responses((status = 200, body = Project)))]
async fn patch_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    Checked(b): Checked<PatchProject>,
) -> Reply<Project> {
    Ok(Json(project_json(
        &s.services.patch_project(&p, &id, &b).await?,
    )))
}

/// Deletes a project (soft: it and its objects are hidden at once, and can be restored
/// through `/v1/project/{id}/restore` during the grace period).
#[utoipa::path(delete, path = "/v1/project/{id}", tag = "projects",
    params(("id" = String, Path)), responses((status = 200, body = Project)))]
async fn delete_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
) -> Reply<Project> {
    Ok(Json(project_json(
        &s.services.delete_project(&p, &id).await?,
    )))
}

// ---- experiments and datasets ----

async fn list_objects(
    s: &AppState,
    p: &holdfast_services::Principal,
    kind: ObjectType,
    params: ListParams,
) -> Reply<ObjectList<NamedObject>> {
    let list = s.services.list_objects(p, kind, &params).await?;
    Ok(Json(
        list.iter().map(object_json).collect::<Vec<_>>().into(),
    ))
}

macro_rules! object_routes {
    ($module:ident, $kind:expr, $query:ident, $name_field:ident, $tag:literal,
     $collection:literal, $item:literal,
     $list_op:literal, $create_op:literal, $get_op:literal, $patch_op:literal,
     $delete_op:literal) => {
        mod $module {
            use super::*;

            #[utoipa::path(get, path = $collection, tag = $tag, operation_id = $list_op,
                params($query), responses((status = 200, body = ObjectList<NamedObject>)))]
            pub(super) async fn list(
                State(s): State<AppState>,
                Authed(p): Authed,
                Params(q): Params<$query>,
            ) -> Reply<ObjectList<NamedObject>> {
                let params = ListParams {
                    limit: limit(q.limit)?,
                    starting_after: q.starting_after,
                    name: q.$name_field,
                    project_id: q.project_id,
                    project_name: q.project_name,
                    org_name: q.org_name,
                };
                list_objects(&s, &p, $kind, params).await
            }

            #[utoipa::path(post, path = $collection, tag = $tag, operation_id = $create_op,
                request_body = CreateObject, responses((status = 200, body = NamedObject)))]
            pub(super) async fn create(
                State(s): State<AppState>,
                Authed(p): Authed,
                Checked(b): Checked<CreateObject>,
            ) -> Reply<NamedObject> {
                Ok(Json(object_json(
                    &s.services.create_object(&p, $kind, &b).await?,
                )))
            }

            #[utoipa::path(get, path = $item, tag = $tag, operation_id = $get_op,
                params(("id" = String, Path)), responses((status = 200, body = NamedObject)))]
            pub(super) async fn get(
                State(s): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
            ) -> Reply<NamedObject> {
                Ok(Json(object_json(&s.services.get_object(&p, $kind, &id).await?)))
            }

            #[utoipa::path(patch, path = $item, tag = $tag, operation_id = $patch_op,
                params(("id" = String, Path)), request_body = PatchObject,
                responses((status = 200, body = NamedObject)))]
            pub(super) async fn patch(
                State(s): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
                Checked(b): Checked<PatchObject>,
            ) -> Reply<NamedObject> {
                Ok(Json(object_json(
                    &s.services.patch_object(&p, $kind, &id, &b).await?,
                )))
            }

            #[utoipa::path(delete, path = $item, tag = $tag, operation_id = $delete_op,
                params(("id" = String, Path)), responses((status = 200, body = NamedObject)))]
            pub(super) async fn delete(
                State(s): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
            ) -> Reply<NamedObject> {
                Ok(Json(object_json(
                    &s.services.delete_object(&p, $kind, &id).await?,
                )))
            }
        }
    };
}

object_routes!(
    experiment,
    ObjectType::Experiment,
    ExperimentListQuery,
    experiment_name,
    "experiments",
    "/v1/experiment",
    "/v1/experiment/{id}",
    "list_experiments",
    "create_experiment",
    "get_experiment",
    "patch_experiment",
    "delete_experiment"
);
object_routes!(
    dataset,
    ObjectType::Dataset,
    DatasetListQuery,
    dataset_name,
    "datasets",
    "/v1/dataset",
    "/v1/dataset/{id}",
    "list_datasets",
    "create_dataset",
    "get_dataset",
    "patch_dataset",
    "delete_dataset"
);

// ---- rows ----

fn fetch_request(
    r: FetchRequest,
    in_body: bool,
) -> Result<holdfast_services::query::FetchRequest, ApiError> {
    let mut body = serde_json::Map::new();
    if let Some(f) = r.filter {
        body.insert("filter".into(), f);
    }
    let mut req = holdfast_services::query::FetchRequest::from_body(&Value::Object(body))?;
    req.limit = limit_in(r.limit, in_body)?;
    req.cursor = r.cursor;
    req.version = r.version;
    Ok(req)
}

async fn fetch(
    s: &AppState,
    p: &holdfast_services::Principal,
    kind: ObjectType,
    id: &str,
    r: FetchRequest,
    in_body: bool,
) -> Reply<FetchResponse> {
    let req = fetch_request(r, in_body)?;
    let (events, cursor) = s.services.fetch(p, kind, id, &req).await?;
    let events = events
        .into_iter()
        .filter_map(|e| match e {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect();
    Ok(Json(FetchResponse { events, cursor }))
}

macro_rules! row_routes {
    ($module:ident, $kind:expr, $tag:literal, $fetch:literal, $insert:literal,
     $feedback:literal, $fetch_op:literal, $fetch_get_op:literal, $insert_op:literal,
     $feedback_op:literal) => {
        mod $module {
            use super::*;

            /// Reads rows, newest first, a page at a time.
            #[utoipa::path(post, path = $fetch, tag = $tag, operation_id = $fetch_op,
                                params(("id" = String, Path)), request_body = FetchRequest,
                                responses((status = 200, body = FetchResponse)))]
            pub(super) async fn fetch_post(
                State(s): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
                CheckedOrEmpty(r): CheckedOrEmpty<FetchRequest>,
            ) -> Reply<FetchResponse> {
                fetch(&s, &p, $kind, &id, r, true).await
            }

            #[utoipa::path(get, path = $fetch, tag = $tag, operation_id = $fetch_get_op,
                                params(("id" = String, Path), FetchQuery),
                                responses((status = 200, body = FetchResponse)))]
            pub(super) async fn fetch_get(
                State(s): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
                Params(q): Params<FetchQuery>,
            ) -> Reply<FetchResponse> {
                let r = FetchRequest {
                    limit: q.limit,
                    cursor: q.cursor,
                    version: q.version,
                    filter: None,
                };
                fetch(&s, &p, $kind, &id, r, false).await
            }

            /// Writes rows; `_is_merge` rows merge into the stored row of the same id.
            #[utoipa::path(post, path = $insert, tag = $tag, operation_id = $insert_op,
                                params(("id" = String, Path)), request_body = InsertRequest,
                                responses((status = 200, body = InsertResponse)))]
            pub(super) async fn insert(
                State(s): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
                Checked(r): Checked<InsertRequest>,
            ) -> Reply<InsertResponse> {
                let target = RowTarget {
                    object_type: $kind,
                    object_id: id,
                };
                let events = r.events.into_iter().map(Value::Object).collect();
                let written = s.services.ingest(&p, events, Some(&target)).await?;
                Ok(Json(InsertResponse {
                    row_ids: written.row_ids,
                }))
            }

            /// Adds scores, expected values, tags, metadata or comments to rows.
            #[utoipa::path(post, path = $feedback, tag = $tag, operation_id = $feedback_op,
                                params(("id" = String, Path)), request_body = FeedbackRequest,
                                responses((status = 200, body = holdfast_api::StatusReply)))]
            pub(super) async fn feedback(
                State(s): State<AppState>,
                Authed(p): Authed,
                Id(id): Id,
                Checked(b): Checked<FeedbackRequest>,
            ) -> Reply<holdfast_api::StatusReply> {
                s.services.feedback(&p, $kind, &id, &b).await?;
                Ok(Json(holdfast_api::StatusReply::success()))
            }
        }
    };
}

row_routes!(
    experiment_rows,
    ObjectType::Experiment,
    "experiments",
    "/v1/experiment/{id}/fetch",
    "/v1/experiment/{id}/insert",
    "/v1/experiment/{id}/feedback",
    "fetch_experiment",
    "fetch_experiment_get",
    "insert_experiment",
    "feedback_experiment"
);
row_routes!(
    dataset_rows,
    ObjectType::Dataset,
    "datasets",
    "/v1/dataset/{id}/fetch",
    "/v1/dataset/{id}/insert",
    "/v1/dataset/{id}/feedback",
    "fetch_dataset",
    "fetch_dataset_get",
    "insert_dataset",
    "feedback_dataset"
);
row_routes!(
    logs_rows,
    ObjectType::ProjectLogs,
    "project logs",
    "/v1/project_logs/{id}/fetch",
    "/v1/project_logs/{id}/insert",
    "/v1/project_logs/{id}/feedback",
    "fetch_project_logs",
    "fetch_project_logs_get",
    "insert_project_logs",
    "feedback_project_logs"
);

// ---- summaries ----

/// An experiment's scores and metrics, compared with its base experiment.
#[utoipa::path(get, path = "/v1/experiment/{id}/summarize", tag = "experiments",
    params(("id" = String, Path), SummarizeExperimentQuery),
    responses((status = 200, body = Object)))]
async fn summarize_experiment(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Id(id): Id,
    Params(q): Params<SummarizeExperimentQuery>,
) -> Reply {
    Ok(Json(
        s.services
            .summarize_experiment(
                &p,
                &id,
                q.summarize_scores.unwrap_or(false),
                q.comparison_experiment_id.as_deref(),
                &base,
            )
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/dataset/{id}/summarize", tag = "datasets",
    params(("id" = String, Path), SummarizeDatasetQuery),
    responses((status = 200, body = Object)))]
async fn summarize_dataset(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Id(id): Id,
    Params(q): Params<SummarizeDatasetQuery>,
) -> Reply {
    Ok(Json(
        s.services
            .summarize_dataset(&p, &id, q.summarize_data.unwrap_or(false), &base)
            .await?,
    ))
}

// ---- prompts ----

#[utoipa::path(get, path = "/v1/prompt", tag = "prompts", params(PromptListQuery),
    responses((status = 200, body = ObjectList<Prompt>)))]
async fn list_prompts(
    State(s): State<AppState>,
    Authed(p): Authed,
    Params(q): Params<PromptListQuery>,
) -> Reply {
    let params = ListParams {
        limit: limit(q.limit)?,
        starting_after: q.starting_after,
        name: q.prompt_name,
        project_id: q.project_id,
        project_name: q.project_name,
        org_name: q.org_name,
    };
    let list = s
        .services
        .list_prompts(&p, &params, q.slug.as_deref(), q.version.as_deref())
        .await?;
    Ok(Json(serde_json::json!({ "objects": list })))
}

/// Creates a prompt, or returns the one with that slug unchanged.
#[utoipa::path(post, path = "/v1/prompt", tag = "prompts", request_body = PutPrompt,
    responses((status = 200, body = Prompt)))]
async fn create_prompt(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<PutPrompt>,
) -> Reply {
    Ok(Json(s.services.put_prompt(&p, &b, false).await?))
}

/// Creates a prompt, or replaces the one with that slug (a new version).
#[utoipa::path(put, path = "/v1/prompt", tag = "prompts", request_body = PutPrompt,
    responses((status = 200, body = Prompt)))]
async fn replace_prompt(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<PutPrompt>,
) -> Reply {
    Ok(Json(s.services.put_prompt(&p, &b, true).await?))
}

#[utoipa::path(get, path = "/v1/prompt/{id}", tag = "prompts",
    params(("id" = String, Path), VersionQuery), responses((status = 200, body = Prompt)))]
async fn get_prompt(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    Params(q): Params<VersionQuery>,
) -> Reply {
    Ok(Json(
        s.services.get_prompt(&p, &id, q.version.as_deref()).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/prompt/{id}", tag = "prompts", params(("id" = String, Path)),
    request_body = PatchPrompt, responses((status = 200, body = Prompt)))]
async fn patch_prompt(
    State(s): State<AppState>,
    Authed(p): Authed,
    Id(id): Id,
    Checked(b): Checked<PatchPrompt>,
) -> Reply {
    Ok(Json(s.services.patch_prompt(&p, &id, &b).await?))
}

#[utoipa::path(delete, path = "/v1/prompt/{id}", tag = "prompts",
    params(("id" = String, Path)), responses((status = 200, body = Prompt)))]
async fn delete_prompt(State(s): State<AppState>, Authed(p): Authed, Id(id): Id) -> Reply {
    Ok(Json(s.services.delete_prompt(&p, &id).await?))
}

/// Functions published from code (`project.publish()` in the SDKs): prompts, stored as
/// prompts with `if_exists` deciding what happens to an existing slug.
#[utoipa::path(post, path = "/insert-functions", tag = "prompts", request_body = InsertFunctions,
    responses((status = 200, body = InsertedFunctions)))]
async fn insert_functions(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<InsertFunctions>,
) -> Reply<InsertedFunctions> {
    Ok(Json(InsertedFunctions {
        functions: s.services.insert_functions(&p, &b).await?,
    }))
}
