//! The SDKs' own routes: login, `/logs3`, attachments, signed URLs, BTQL and the app-plane
//! registration routes of the JS SDK.

use super::reply;
use crate::extract::{Authed, BaseUrl, Checked, Id, Params};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::IntoResponse;
use holdfast_api::objects::{CreateObject, Project};
use holdfast_api::sdk::{
    AttachmentDownload, AttachmentQuery, AttachmentStatusRequest, AttachmentUploadRequest,
    AttachmentUploadResponse, BaseExperiment, BaseExperimentRequest, BtqlRequest, BtqlResponse,
    Comparison, ComparisonQuery, DatasetReply, DatasetSummary, DatasetSummaryQuery,
    ExperimentReply, GetExperiment, Health, IdQuery, LoginResponse, Logs3Request, Logs3Response,
    ObjectInfo, ObjectInfoRequest, OverflowRequest, OverflowResponse, Ping, ProjectReply,
    Readiness, RegisterDataset, RegisterExperiment, RegisterProject, Version,
};
use holdfast_core::object::ObjectType;
use holdfast_services::objects::{ListParams, object_json, project_json};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Reply<T = Value> = Result<Json<T>, ApiError>;

/// Routes open to anyone: health, version, and signed URLs (the signature is the grant).
pub fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(version))
        .routes(routes!(signed_put, signed_get))
}

/// The SDKs' routes that need a key.
pub fn authenticated() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ping))
        .routes(routes!(login))
        .routes(routes!(logs3))
        .routes(routes!(overflow))
        .routes(routes!(attachment_upload, attachment_download))
        .routes(routes!(attachment_status))
        .routes(routes!(btql))
        .routes(routes!(register_project))
        .routes(routes!(app_get_project))
        .routes(routes!(register_experiment))
        .routes(routes!(app_get_experiment))
        .routes(routes!(register_dataset))
        .routes(routes!(base_experiment))
        .routes(routes!(object_info))
        .routes(routes!(experiment_comparison))
        .routes(routes!(dataset_summary))
}

/// An authenticated liveness check (`state.user_info()` in the Python SDK).
#[utoipa::path(get, path = "/ping", tag = "sdk", responses((status = 200, body = Ping)))]
pub async fn ping(Authed(p): Authed) -> Json<Ping> {
    Json(Ping {
        id: p.user_id,
        org_id: p.org_id,
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: 200 when every check passes, else 503 with `error.code` `not_ready`; the body
/// names each check.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let (ready, mut body) = s.services.readiness().await;
    let status = if ready {
        axum::http::StatusCode::OK
    } else {
        if let Some(fields) = body.as_object_mut() {
            fields.insert(
                "error".into(),
                json!({"code": holdfast_api::ErrorCode::NotReady,
                       "message": "a readiness check failed"}),
            );
        }
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

#[utoipa::path(get, path = "/version", tag = "operations", security(()),
    responses((status = 200, body = Version)))]
pub async fn version(State(s): State<AppState>) -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION").into(),
        logs3_payload_max_bytes: s.services.limits.logs3_payload_max_bytes as u64,
    })
}

/// The SDK login: the caller's organization and where its API lives.
#[utoipa::path(post, path = "/api/apikey/login", tag = "sdk",
    responses((status = 200, body = LoginResponse)))]
pub async fn login(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
) -> Reply<LoginResponse> {
    Ok(Json(s.services.login(&p, &base).await?))
}

/// Writes rows to experiments, datasets and project logs, each row naming its object.
#[utoipa::path(post, path = "/logs3", tag = "sdk", request_body = Logs3Request,
    responses((status = 200, body = Logs3Response)))]
pub async fn logs3(
    State(s): State<AppState>,
    Authed(p): Authed,
    crate::extract::JsonBody(body): crate::extract::JsonBody,
) -> Reply<Logs3Response> {
    let r = s.services.logs3(&p, body).await?;
    Ok(Json(Logs3Response {
        ids: r.row_ids,
        xact_id: r.xact_id,
    }))
}

/// A signed URL to upload a batch too large for `/logs3` to.
#[utoipa::path(post, path = "/logs3/overflow", tag = "sdk", request_body = OverflowRequest,
    responses((status = 200, body = OverflowResponse)))]
pub async fn overflow(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Checked(body): Checked<OverflowRequest>,
) -> Reply<OverflowResponse> {
    reply(s.services.overflow_upload(&p, &body, &base).await?)
}

/// A signed URL to upload an attachment to.
#[utoipa::path(post, path = "/attachment", tag = "sdk", request_body = AttachmentUploadRequest,
    responses((status = 200, body = AttachmentUploadResponse)))]
pub async fn attachment_upload(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Checked(body): Checked<AttachmentUploadRequest>,
) -> Reply<AttachmentUploadResponse> {
    reply(s.services.attachment_upload(&p, &body, &base).await?)
}

#[utoipa::path(post, path = "/attachment/status", tag = "sdk",
    request_body = AttachmentStatusRequest, responses((status = 200, body = Object)))]
pub async fn attachment_status(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(body): Checked<AttachmentStatusRequest>,
) -> Reply {
    Ok(Json(s.services.attachment_status(&p, &body).await?))
}

/// A signed URL to download an attachment from, and its upload status: an uploaded one by
/// `key`, or an external one by `url` (only objects in the bucket configured for external
/// attachments, referenced by a row the caller may read; nothing else is fetched).
#[utoipa::path(get, path = "/attachment", tag = "sdk", params(AttachmentQuery),
    responses((status = 200, body = AttachmentDownload)))]
pub async fn attachment_download(
    State(s): State<AppState>,
    Authed(p): Authed,
    BaseUrl(base): BaseUrl,
    Params(q): Params<AttachmentQuery>,
) -> Reply<AttachmentDownload> {
    reply(s.services.attachment_download(&p, &q, &base).await?)
}

/// An upload to a signed URL: the token is checked before a byte of the body is read, and
/// the body is streamed to storage within the size the grant allows; each chunk must arrive
/// within `body_read_timeout` of the last.
#[utoipa::path(put, path = "/signed/{token}", tag = "sdk", security(()),
    params(("token" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = Object)))]
pub async fn signed_put(
    State(s): State<AppState>,
    Id(token): Id,
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

/// A download from a signed URL.
#[utoipa::path(get, path = "/signed/{token}", tag = "sdk", security(()),
    params(("token" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>)))]
pub async fn signed_get(
    State(s): State<AppState>,
    Id(token): Id,
    ConnectInfo(from): ConnectInfo<std::net::SocketAddr>,
) -> Result<impl IntoResponse, ApiError> {
    let from = Some(from.ip().to_string());
    let (content_type, pieces) = s.services.signed_download(&token, from.as_deref()).await?;
    Ok(download(content_type, pieces))
}

/// A download streamed from `pieces`, as an attachment that browsers do not render (it
/// comes from this origin).
pub(super) fn download(
    content_type: String,
    pieces: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
) -> impl IntoResponse {
    // Fused: the compression layer may poll the stream again after its end.
    let bytes = axum::body::Body::from_stream(futures::StreamExt::fuse(futures::stream::unfold(
        pieces,
        |mut pieces| async move {
            let piece = pieces.recv().await?;
            Some((piece.map_err(std::io::Error::other), pieces))
        },
    )));
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, "attachment".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        bytes,
    )
}

/// A structured BTQL query over one object's rows.
#[utoipa::path(post, path = "/btql", tag = "sdk", request_body = BtqlRequest,
    responses((status = 200, body = BtqlResponse)))]
pub async fn btql(
    State(s): State<AppState>,
    Authed(p): Authed,
    crate::extract::JsonBody(body): crate::extract::JsonBody,
) -> Reply<BtqlResponse> {
    // Checked against its wire type; the query itself is read by the BTQL parser.
    crate::extract::typed::<BtqlRequest>(&body)?;
    reply(s.services.btql(&p, &body).await?)
}

/// Finds a project by id or name; a missing name is created.
#[utoipa::path(post, path = "/api/project/register", tag = "sdk", request_body = RegisterProject,
    responses((status = 200, body = ProjectReply)))]
pub async fn register_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<RegisterProject>,
) -> Reply<ProjectReply> {
    let project = s
        .services
        .resolve_project(&p, b.project_id.as_deref(), b.project_name.as_deref(), true)
        .await?;
    Ok(Json(ProjectReply {
        project: project_json(&project),
    }))
}

#[utoipa::path(get, path = "/api/project", tag = "sdk", params(IdQuery),
    responses((status = 200, body = Project)))]
pub async fn app_get_project(
    State(s): State<AppState>,
    Authed(p): Authed,
    Params(q): Params<IdQuery>,
) -> Reply<Project> {
    Ok(Json(project_json(
        &s.services.get_project(&p, &q.id).await?,
    )))
}

/// The JS SDK's experiment registration, mapped onto the REST create.
#[utoipa::path(post, path = "/api/experiment/register", tag = "sdk",
    request_body = RegisterExperiment, responses((status = 200, body = ExperimentReply)))]
pub async fn register_experiment(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<RegisterExperiment>,
) -> Reply<ExperimentReply> {
    let project = s
        .services
        .resolve_project(
            &p,
            b.object.project_id.as_deref(),
            b.object.project_name.as_deref(),
            true,
        )
        .await?;
    let mut create = CreateObject {
        project_id: Some(project.id.clone()),
        project_name: None,
        name: b.experiment_name.or(b.object.name.clone()),
        ensure_new: Some(!b.update.unwrap_or(false)),
        ..b.object
    };
    if let Some(base_name) = &b.base_experiment {
        let params = ListParams {
            project_id: Some(project.id.clone()),
            name: Some(base_name.clone()),
            ..Default::default()
        };
        let base = s
            .services
            .list_objects(&p, ObjectType::Experiment, &params)
            .await?;
        let base = base.first().ok_or_else(|| {
            ApiError(holdfast_services::ServiceError::field(
                "base_experiment",
                format!("base experiment {base_name:?} not found"),
            ))
        })?;
        create.base_exp_id = Some(base.id.clone());
    }
    let experiment = s
        .services
        .create_object(&p, ObjectType::Experiment, &create)
        .await?;
    Ok(Json(ExperimentReply {
        project: project_json(&project),
        experiment: object_json(&experiment),
    }))
}

/// Experiments of a project, by name.
#[utoipa::path(post, path = "/api/experiment/get", tag = "sdk", request_body = GetExperiment,
    responses((status = 200, body = Vec<holdfast_api::objects::NamedObject>)))]
pub async fn app_get_experiment(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<GetExperiment>,
) -> Reply<Vec<holdfast_api::objects::NamedObject>> {
    let project = s
        .services
        .resolve_project(
            &p,
            b.project_id.as_deref(),
            b.project_name.as_deref(),
            false,
        )
        .await?;
    let params = ListParams {
        project_id: Some(project.id),
        name: b.experiment_name,
        ..Default::default()
    };
    let found = s
        .services
        .list_objects(&p, ObjectType::Experiment, &params)
        .await?;
    Ok(Json(found.iter().map(object_json).collect()))
}

#[utoipa::path(post, path = "/api/dataset/register", tag = "sdk", request_body = RegisterDataset,
    responses((status = 200, body = DatasetReply)))]
pub async fn register_dataset(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<RegisterDataset>,
) -> Reply<DatasetReply> {
    let project = s
        .services
        .resolve_project(
            &p,
            b.object.project_id.as_deref(),
            b.object.project_name.as_deref(),
            true,
        )
        .await?;
    let create = CreateObject {
        project_id: Some(project.id.clone()),
        project_name: None,
        name: Some(b.dataset_name),
        ..b.object
    };
    let dataset = s
        .services
        .create_object(&p, ObjectType::Dataset, &create)
        .await?;
    Ok(Json(DatasetReply {
        project: project_json(&project),
        dataset: object_json(&dataset),
    }))
}

/// The experiment an experiment compares with. The JS SDK needs 400 (not 404) when it has
/// none.
#[utoipa::path(post, path = "/api/base_experiment/get_id", tag = "sdk",
    request_body = BaseExperimentRequest, responses((status = 200, body = BaseExperiment)))]
pub async fn base_experiment(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<BaseExperimentRequest>,
) -> Reply<BaseExperiment> {
    let experiment = s
        .services
        .get_object(&p, ObjectType::Experiment, &b.id)
        .await?;
    match s
        .services
        .comparison_experiment(&p, &experiment, None)
        .await?
    {
        Some(base) => Ok(Json(BaseExperiment {
            base_exp_id: base.id,
            base_exp_name: base.name,
        })),
        None => Err(ApiError::bad("no base experiment")),
    }
}

/// Names, parents and the caller's permissions of experiments or datasets.
#[utoipa::path(post, path = "/api/self/get_object_info", tag = "sdk",
    request_body = ObjectInfoRequest, responses((status = 200, body = Vec<ObjectInfo>)))]
pub async fn object_info(
    State(s): State<AppState>,
    Authed(p): Authed,
    Checked(b): Checked<ObjectInfoRequest>,
) -> Reply<Vec<ObjectInfo>> {
    let kind = match b.object_type.as_str() {
        "experiment" => ObjectType::Experiment,
        "dataset" => ObjectType::Dataset,
        other => {
            return Err(ApiError(holdfast_services::ServiceError::field(
                "object_type",
                format!("unsupported object_type {other:?}"),
            )));
        }
    };
    if b.object_ids.len() > 1000 {
        return Err(ApiError(holdfast_services::ServiceError::field(
            "object_ids",
            "at most 1000 ids at once",
        )));
    }
    let mut out = Vec::new();
    for id in &b.object_ids {
        out.push(s.services.object_info(&p, kind, id).await?);
    }
    reply(Value::Array(out))
}

/// Scores and metrics of an experiment against its base.
#[utoipa::path(get, path = "/experiment-comparison2", tag = "sdk", params(ComparisonQuery),
    responses((status = 200, body = Comparison)))]
pub async fn experiment_comparison(
    State(s): State<AppState>,
    Authed(p): Authed,
    Params(q): Params<ComparisonQuery>,
) -> Reply<Comparison> {
    let experiment = s
        .services
        .get_object(&p, ObjectType::Experiment, &q.experiment_id)
        .await?;
    let base = s
        .services
        .comparison_experiment(&p, &experiment, q.base_experiment_id.as_deref())
        .await?;
    let (scores, metrics) = s.services.compare(&p, &experiment, base.as_ref()).await?;
    reply(json!({"scores": scores, "metrics": metrics}))
}

/// A dataset's record count (the JS SDK's `dataset.summarize()`).
#[utoipa::path(get, path = "/dataset-summary", tag = "sdk", params(DatasetSummaryQuery),
    responses((status = 200, body = DatasetSummary)))]
pub async fn dataset_summary(
    State(s): State<AppState>,
    Authed(p): Authed,
    Params(q): Params<DatasetSummaryQuery>,
) -> Reply<DatasetSummary> {
    Ok(Json(DatasetSummary {
        total_records: s.services.dataset_total_records(&p, &q.dataset_id).await?,
    }))
}
