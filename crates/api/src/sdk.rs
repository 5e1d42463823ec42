//! The SDKs' own routes: login, `/logs3`, attachments, BTQL, registration.

use crate::JsonObject;
use crate::objects::{CreateObject, NamedObject, Project};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// `/readyz`: each check by name, with `ok` and, when it failed, `error`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    #[schema(value_type = Object)]
    pub checks: JsonObject,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub other: JsonObject,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Version {
    pub version: String,
    /// Largest `/logs3` body the SDKs should send inline; larger batches go through
    /// `/logs3/overflow`.
    pub logs3_payload_max_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ping {
    pub id: String,
    pub org_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrgInfo {
    pub id: String,
    pub name: String,
    pub api_url: String,
    pub proxy_url: String,
    pub realtime_url: Option<String>,
    pub git_metadata: Option<Value>,
    pub is_universal_api: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    pub org_info: Vec<OrgInfo>,
}

/// `POST /logs3`: rows to write, or a reference to an uploaded overflow batch
/// (`{"type": "logs3_overflow", "key": ...}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Logs3Request {
    pub rows: Value,
    pub api_version: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Logs3Response {
    pub ids: Vec<String>,
    pub xact_id: String,
}

/// `POST /logs3/overflow`: asks for a signed URL to upload a large batch to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct OverflowRequest {
    /// The size of the batch to upload, in bytes.
    #[schema(minimum = 1)]
    pub size_bytes: u64,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OverflowResponse {
    pub method: String,
    #[serde(rename = "signedUrl")]
    pub signed_url: String,
    #[schema(value_type = Object)]
    pub headers: JsonObject,
    pub key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AttachmentUploadRequest {
    pub key: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub org_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttachmentUploadResponse {
    #[serde(rename = "signedUrl")]
    pub signed_url: String,
    #[schema(value_type = Object)]
    pub headers: JsonObject,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AttachmentStatusRequest {
    pub key: String,
    pub org_id: Option<String>,
    /// `{"upload_status": "done" | "error", "error_message": ...}`.
    #[schema(value_type = Object)]
    pub status: JsonObject,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttachmentQuery {
    /// An uploaded attachment's key (`braintrust_attachment`).
    pub key: Option<String>,
    /// An `external_attachment`'s URL: `s3://<bucket>/<object>` in the bucket configured for
    /// external attachments.
    pub url: Option<String>,
    pub org_id: Option<String>,
    /// The content type to serve the download with (an external object's reference names it).
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttachmentDownload {
    #[serde(rename = "downloadUrl")]
    pub download_url: String,
    pub status: Value,
}

/// `POST /btql`: a query in BTQL text or as parsed JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct BtqlRequest {
    pub query: Value,
    pub fmt: Option<String>,
    pub version: Option<Value>,
    /// With source `project_prompts`: list a prompt's versions instead of the prompt.
    pub audit_log: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BtqlResponse {
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<JsonObject>,
    pub cursor: Option<String>,
}

/// Names a project by id or by name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RegisterProject {
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub org_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectReply {
    pub project: Project,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IdQuery {
    pub id: String,
}

/// The JS SDK's experiment registration: the fields of [`CreateObject`] (the experiment is
/// named by `experiment_name`), and how to treat an existing one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RegisterExperiment {
    pub experiment_name: Option<String>,
    /// With `true`, an existing experiment of this name is returned rather than a new one
    /// made.
    pub update: Option<bool>,
    /// The name of the experiment to compare with.
    pub base_experiment: Option<String>,
    #[serde(flatten)]
    pub object: CreateObject,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExperimentReply {
    pub project: Project,
    pub experiment: NamedObject,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct GetExperiment {
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub experiment_name: Option<String>,
}

/// The JS SDK's dataset registration: the fields of [`CreateObject`], the dataset named by
/// `dataset_name`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RegisterDataset {
    pub dataset_name: String,
    #[serde(flatten)]
    pub object: CreateObject,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetReply {
    pub project: Project,
    pub dataset: NamedObject,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct BaseExperimentRequest {
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BaseExperiment {
    pub base_exp_id: String,
    pub base_exp_name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ObjectInfoRequest {
    /// `experiment` or `dataset`.
    pub object_type: String,
    pub object_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ObjectInfo {
    pub object_id: String,
    pub object_name: String,
    #[schema(value_type = Object)]
    pub parent_cols: JsonObject,
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ComparisonQuery {
    pub experiment_id: String,
    pub base_experiment_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Comparison {
    #[schema(value_type = Object)]
    pub scores: JsonObject,
    #[schema(value_type = Object)]
    pub metrics: JsonObject,
}

/// `GET /dataset-summary`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DatasetSummaryQuery {
    pub dataset_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetSummary {
    pub total_records: u64,
}
