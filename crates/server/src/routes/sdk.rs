//! The SDKs' own routes: login, `/logs3`, attachments, signed URLs, BTQL and the app-plane
//! registration routes of the JS SDK.

use crate::extract::{Authed, BaseUrl, JsonBody};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use holdfast_core::object::ObjectType;
use holdfast_services::objects::{ListParams, object_json, opt_str, project_json};
use serde::Deserialize;
use serde_json::{Value, json};

type Reply = Result<Json<Value>, ApiError>;

/// An authenticated liveness check (`state.user_info()` in the Python SDK).
pub async fn ping(Authed(p): Authed) -> Json<Value> {
    Json(json!({"id": p.user_id, "org_id": p.org_id}))
}

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when every readiness check passes, else 503; the body names each check.
pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let (ready, body) = s.services.readiness().await;
    let status = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

pub async fn version(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "logs3_payload_max_bytes": s.services.limits.logs3_payload_max_bytes,
    }))
}

pub async fn login(State(s): State<AppState>, Authed(p): Authed, BaseUrl(base): BaseUrl) -> Reply {
    Ok(Json(s.services.login(&p, &base).await?))
}

pub async fn logs3(
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(body): JsonBody,
) -> Reply {
    let r = s.services.logs3(&p, body).await?;
    Ok(Json(json!({"ids": r.row_ids, "xact_id": r.xact_id})))
}

pub async fn overflow(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    JsonBody(body): JsonBody,
) -> Reply {
    Ok(Json(s.services.overflow_upload(&p, &body, &base).await?))
}

pub async fn attachment_upload(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    JsonBody(body): JsonBody,
) -> Reply {
    Ok(Json(s.services.attachment_upload(&p, &body, &base).await?))
}

pub async fn attachment_status(
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(body): JsonBody,
) -> Reply {
    Ok(Json(s.services.attachment_status(&p, &body).await?))
}

#[derive(Deserialize)]
pub struct AttachmentQuery {
    key: Option<String>,
    org_id: Option<String>,
}

pub async fn attachment_download(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Query(q): Query<AttachmentQuery>,
) -> Reply {
    let key = q
        .key
        .ok_or_else(|| ApiError::bad("query parameter `key` is required"))?;
    Ok(Json(
        s.services
            .attachment_download(&p, &key, q.org_id.as_deref(), &base)
            .await?,
    ))
}

/// An upload to a signed URL: the token is checked before a byte of the body is read, and
/// the body is streamed to storage within the size the grant allows; each chunk must arrive
/// within `body_read_timeout` of the last.
pub async fn signed_put(
    State(s): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(from): ConnectInfo<std::net::SocketAddr>,
    body: axum::body::Body,
) -> Reply {
    use futures::StreamExt;
    let grant = s.services.upload_grant(&token)?;
    let idle = s.services.limits.body_read_timeout;
    let chunks = futures::stream::unfold(body.into_data_stream(), move |mut body| async move {
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(chunk)) => Some((chunk.map_err(|e| e.to_string()), body)),
            Ok(None) => None,
            Err(_) => Some((
                Err(format!("no data arrived for {} s", idle.as_secs())),
                body,
            )),
        }
    });
    let from = Some(from.ip().to_string());
    s.services
        .signed_upload(&grant, Box::pin(chunks), from.as_deref())
        .await?;
    Ok(Json(json!({})))
}

pub async fn signed_get(
    State(s): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(from): ConnectInfo<std::net::SocketAddr>,
) -> Result<impl IntoResponse, ApiError> {
    let from = Some(from.ip().to_string());
    let (content_type, pieces) = s.services.signed_download(&token, from.as_deref()).await?;
    // Fused: the compression layer may poll the stream again after its end.
    let bytes = axum::body::Body::from_stream(futures::StreamExt::fuse(futures::stream::unfold(
        pieces,
        |mut pieces| async move {
            let piece = pieces.recv().await?;
            Some((piece.map_err(std::io::Error::other), pieces))
        },
    )));
    // Downloads come from this origin: never render them in a browser.
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, "attachment".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        bytes,
    ))
}

pub async fn btql(State(s): State<AppState>, Authed(p): Authed, JsonBody(body): JsonBody) -> Reply {
    Ok(Json(s.services.btql(&p, &body).await?))
}

fn as_object(body: &Value) -> Result<serde_json::Map<String, Value>, ApiError> {
    body.as_object()
        .cloned()
        .ok_or_else(|| ApiError::bad("request body must be a JSON object"))
}

fn field<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad("request body must be a JSON object"))?;
    Ok(opt_str(obj, name)?)
}

pub async fn register_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(body): JsonBody,
) -> Reply {
    let name = field(&body, "project_name")?;
    let project = s
        .services
        .resolve_project(&p, field(&body, "project_id")?, name, true)
        .await?;
    Ok(Json(json!({"project": project_json(&project)})))
}

#[derive(Deserialize)]
pub struct IdQuery {
    id: Option<String>,
}

pub async fn app_get_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    Query(q): Query<IdQuery>,
) -> Reply {
    let id =
        q.id.ok_or_else(|| ApiError::bad("query parameter `id` is required"))?;
    Ok(Json(project_json(&s.services.get_project(&p, &id).await?)))
}

/// The JS SDK's experiment registration, mapped onto the REST create.
pub async fn register_experiment(
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(body): JsonBody,
) -> Reply {
    let project = s
        .services
        .resolve_project(
            &p,
            field(&body, "project_id")?,
            field(&body, "project_name")?,
            true,
        )
        .await?;
    let mut create = as_object(&body)?;
    create.insert("project_id".into(), json!(project.id));
    if let Some(name) = field(&body, "experiment_name")? {
        create.insert("name".into(), json!(name));
    }
    let update = body.get("update").and_then(Value::as_bool).unwrap_or(false);
    create.insert("ensure_new".into(), json!(!update));
    if let Some(base_name) = field(&body, "base_experiment")? {
        let params = ListParams {
            project_id: Some(project.id.clone()),
            name: Some(base_name.to_owned()),
            ..Default::default()
        };
        let base = s
            .services
            .list_objects(&p, ObjectType::Experiment, &params)
            .await?;
        let base = base
            .first()
            .ok_or_else(|| ApiError::bad(format!("base experiment {base_name:?} not found")))?;
        create.insert("base_exp_id".into(), json!(base.id));
    }
    let experiment = s
        .services
        .create_object(&p, ObjectType::Experiment, &Value::Object(create))
        .await?;
    Ok(Json(
        json!({"project": project_json(&project), "experiment": object_json(&experiment)}),
    ))
}

pub async fn app_get_experiment(
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(body): JsonBody,
) -> Reply {
    let project = s
        .services
        .resolve_project(
            &p,
            field(&body, "project_id")?,
            field(&body, "project_name")?,
            false,
        )
        .await?;
    let params = ListParams {
        project_id: Some(project.id),
        name: field(&body, "experiment_name")?.map(str::to_owned),
        ..Default::default()
    };
    let found = s
        .services
        .list_objects(&p, ObjectType::Experiment, &params)
        .await?;
    Ok(Json(Value::Array(found.iter().map(object_json).collect())))
}

pub async fn register_dataset(
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(body): JsonBody,
) -> Reply {
    let project = s
        .services
        .resolve_project(
            &p,
            field(&body, "project_id")?,
            field(&body, "project_name")?,
            true,
        )
        .await?;
    let mut create = as_object(&body)?;
    create.insert("project_id".into(), json!(project.id));
    create.insert(
        "name".into(),
        body.get("dataset_name").cloned().unwrap_or(Value::Null),
    );
    let dataset = s
        .services
        .create_object(&p, ObjectType::Dataset, &Value::Object(create))
        .await?;
    Ok(Json(
        json!({"project": project_json(&project), "dataset": object_json(&dataset)}),
    ))
}

/// The JS SDK needs 400 (not 404) when an experiment has no base.
pub async fn base_experiment(
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(body): JsonBody,
) -> Reply {
    let id = field(&body, "id")?.ok_or_else(|| ApiError::bad("`id` is required"))?;
    let experiment = s
        .services
        .get_object(&p, ObjectType::Experiment, id)
        .await?;
    match s
        .services
        .comparison_experiment(&p, &experiment, None)
        .await?
    {
        Some(base) => Ok(Json(
            json!({"base_exp_id": base.id, "base_exp_name": base.name}),
        )),
        None => Err(ApiError::bad("no base experiment")),
    }
}

pub async fn object_info(
    State(s): State<AppState>,
    Authed(p): Authed,
    JsonBody(body): JsonBody,
) -> Reply {
    let kind = match field(&body, "object_type")? {
        Some("experiment") => ObjectType::Experiment,
        Some("dataset") => ObjectType::Dataset,
        other => return Err(ApiError::bad(format!("unsupported object_type {other:?}"))),
    };
    let ids = body
        .get("object_ids")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad("`object_ids` must be an array"))?;
    let mut out = Vec::new();
    for id in ids {
        let id = id
            .as_str()
            .ok_or_else(|| ApiError::bad("`object_ids` must hold strings"))?;
        out.push(s.services.object_info(&p, kind, id).await?);
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Deserialize)]
pub struct ComparisonQuery {
    experiment_id: Option<String>,
    base_experiment_id: Option<String>,
}

pub async fn experiment_comparison(
    State(s): State<AppState>,
    Authed(p): Authed,
    Query(q): Query<ComparisonQuery>,
) -> Reply {
    let id = q
        .experiment_id
        .ok_or_else(|| ApiError::bad("query parameter `experiment_id` is required"))?;
    let experiment = s
        .services
        .get_object(&p, ObjectType::Experiment, &id)
        .await?;
    let base = s
        .services
        .comparison_experiment(&p, &experiment, q.base_experiment_id.as_deref())
        .await?;
    let (scores, metrics) = s.services.compare(&p, &experiment, base.as_ref()).await?;
    Ok(Json(json!({"scores": scores, "metrics": metrics})))
}
