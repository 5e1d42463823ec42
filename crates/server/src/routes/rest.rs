//! The REST API under `/v1`: projects, experiments, datasets, project logs and prompts.
//! Every success is 200 (the Python SDK treats 201 as a failure).

use crate::extract::{Authed, BaseUrl, JsonBody, OptionalJson};
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use holdfast_core::object::{ObjectType, RowTarget};
use holdfast_services::objects::{ListParams, object_json, project_json};
use holdfast_services::query::FetchRequest;
use serde_json::{Value, json};
use std::collections::HashMap;

type Reply = Result<Json<Value>, ApiError>;
type Params = Query<HashMap<String, String>>;

fn list_params(q: &HashMap<String, String>, name_key: &str) -> Result<ListParams, ApiError> {
    let limit = match q.get("limit") {
        Some(l) => Some(
            l.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::bad("`limit` must be a positive integer"))?,
        ),
        None => None,
    };
    Ok(ListParams {
        limit,
        starting_after: q.get("starting_after").cloned(),
        name: q.get(name_key).cloned(),
        project_id: q.get("project_id").cloned(),
        project_name: q.get("project_name").cloned(),
        org_name: q.get("org_name").cloned(),
    })
}

fn objects(list: Vec<Value>) -> Json<Value> {
    Json(json!({ "objects": list }))
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v == "true" || v == "1")
}

pub fn router() -> Router<AppState> {
    let mut r = Router::new()
        .route("/v1/project", get(list_projects).post(create_project))
        .route(
            "/v1/project/{id}",
            get(get_project).patch(patch_project).delete(delete_project),
        )
        .route(
            "/v1/prompt",
            get(list_prompts).post(create_prompt).put(replace_prompt),
        )
        .route(
            "/v1/prompt/{id}",
            get(get_prompt).patch(patch_prompt).delete(delete_prompt),
        )
        .route("/v1/experiment/{id}/summarize", get(summarize_experiment))
        .route("/v1/dataset/{id}/summarize", get(summarize_dataset));
    for (kind, name) in [
        (ObjectType::Experiment, "experiment"),
        (ObjectType::Dataset, "dataset"),
    ] {
        r = r
            .route(
                &format!("/v1/{name}"),
                get(move |s, a, q| list_objects(kind, s, a, q))
                    .post(move |s, a, b| create_object(kind, s, a, b)),
            )
            .route(
                &format!("/v1/{name}/{{id}}"),
                get(move |s, a, p| get_object(kind, s, a, p))
                    .patch(move |s, a, p, b| patch_object(kind, s, a, p, b))
                    .delete(move |s, a, p| delete_object(kind, s, a, p)),
            );
    }
    for (kind, name) in [
        (ObjectType::Experiment, "experiment"),
        (ObjectType::Dataset, "dataset"),
        (ObjectType::ProjectLogs, "project_logs"),
    ] {
        r = r
            .route(
                &format!("/v1/{name}/{{id}}/fetch"),
                post(move |s, a, p, b| fetch_post(kind, s, a, p, b))
                    .get(move |s, a, p, q| fetch_get(kind, s, a, p, q)),
            )
            .route(
                &format!("/v1/{name}/{{id}}/insert"),
                post(move |s, a, p, b| insert(kind, s, a, p, b)),
            )
            .route(
                &format!("/v1/{name}/{{id}}/feedback"),
                post(move |s, a, p, b| feedback(kind, s, a, p, b)),
            );
    }
    r
}

// ---- projects ----

async fn list_projects(State(s): State<AppState>, Authed(p): Authed, Query(q): Params) -> Reply {
    let list = s
        .services
        .list_projects(&p, &list_params(&q, "project_name")?)
        .await?;
    Ok(objects(list.iter().map(project_json).collect()))
}

async fn create_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(project_json(
        &s.services.create_project(&p, &b).await?,
    )))
}

async fn get_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(project_json(&s.services.get_project(&p, &id).await?)))
}

async fn patch_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(project_json(
        &s.services.patch_project(&p, &id, &b).await?,
    )))
}

async fn delete_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(project_json(
        &s.services.delete_project(&p, &id).await?,
    )))
}

// ---- experiments and datasets ----

async fn list_objects(
    kind: ObjectType,
    State(s): State<AppState>,
    Authed(p): Authed,
    Query(q): Params,
) -> Reply {
    let name_key = format!("{kind}_name");
    let list = s
        .services
        .list_objects(&p, kind, &list_params(&q, &name_key)?)
        .await?;
    Ok(objects(list.iter().map(object_json).collect()))
}

async fn create_object(
    kind: ObjectType,
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(object_json(
        &s.services.create_object(&p, kind, &b).await?,
    )))
}

async fn get_object(
    kind: ObjectType,
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(object_json(
        &s.services.get_object(&p, kind, &id).await?,
    )))
}

async fn patch_object(
    kind: ObjectType,
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(object_json(
        &s.services.patch_object(&p, kind, &id, &b).await?,
    )))
}

async fn delete_object(
    kind: ObjectType,
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(object_json(
        &s.services.delete_object(&p, kind, &id).await?,
    )))
}

// ---- rows ----

async fn fetch_post(
    kind: ObjectType,
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    OptionalJson(b): OptionalJson,
) -> Reply {
    let (events, cursor) = s
        .services
        .fetch(&p, kind, &id, &FetchRequest::from_body(&b)?)
        .await?;
    Ok(Json(json!({"events": events, "cursor": cursor})))
}

async fn fetch_get(
    kind: ObjectType,
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    Query(q): Params,
) -> Reply {
    let limit = list_params(&q, "")?.limit;
    let body: serde_json::Map<String, Value> = q
        .into_iter()
        .filter(|(k, _)| ["cursor", "version"].contains(&k.as_str()))
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let mut req = FetchRequest::from_body(&Value::Object(body))?;
    req.limit = limit;
    let (events, cursor) = s.services.fetch(&p, kind, &id, &req).await?;
    Ok(Json(json!({"events": events, "cursor": cursor})))
}

async fn insert(
    kind: ObjectType,
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Reply {
    let events = match b.get("events") {
        Some(Value::Array(e)) => e.clone(),
        _ => return Err(ApiError::bad("`events` must be an array")),
    };
    let target = RowTarget {
        object_type: kind,
        object_id: id,
    };
    let r = s.services.ingest(&p, events, Some(&target)).await?;
    Ok(Json(json!({"row_ids": r.row_ids})))
}

async fn feedback(
    kind: ObjectType,
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Reply {
    s.services.feedback(&p, kind, &id, &b).await?;
    Ok(Json(json!({"status": "success"})))
}

async fn summarize_experiment(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    Query(q): Params,
) -> Reply {
    let comparison = q.get("comparison_experiment_id").map(String::as_str);
    Ok(Json(
        s.services
            .summarize_experiment(&p, &id, flag(&q, "summarize_scores"), comparison, &base)
            .await?,
    ))
}

async fn summarize_dataset(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    Query(q): Params,
) -> Reply {
    Ok(Json(
        s.services
            .summarize_dataset(&p, &id, flag(&q, "summarize_data"), &base)
            .await?,
    ))
}

// ---- prompts ----

async fn list_prompts(State(s): State<AppState>, Authed(p): Authed, Query(q): Params) -> Reply {
    let params = list_params(&q, "prompt_name")?;
    let list = s
        .services
        .list_prompts(
            &p,
            &params,
            q.get("slug").map(String::as_str),
            q.get("version").map(String::as_str),
        )
        .await?;
    Ok(objects(list))
}

async fn create_prompt(
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(s.services.put_prompt(&p, &b, false).await?))
}

async fn replace_prompt(
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(s.services.put_prompt(&p, &b, true).await?))
}

async fn get_prompt(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    Query(q): Params,
) -> Reply {
    Ok(Json(
        s.services
            .get_prompt(&p, &id, q.get("version").map(String::as_str))
            .await?,
    ))
}

async fn patch_prompt(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
    JsonBody(b): JsonBody,
) -> Reply {
    Ok(Json(s.services.patch_prompt(&p, &id, &b).await?))
}

async fn delete_prompt(
    State(s): State<AppState>,
    Authed(p): Authed,
    Path(id): Path<String>,
) -> Reply {
    Ok(Json(s.services.delete_prompt(&p, &id).await?))
}
