//! Projects, experiments, datasets and prompts.

use crate::JsonObject;
use crate::secret::nullable;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub created: String,
    pub deleted_at: Option<String>,
    pub user_id: Option<String>,
    pub description: Option<Value>,
    pub settings: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateProject {
    /// 1 to 1024 characters; an existing name returns that project.
    pub name: String,
    pub org_name: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<JsonObject>,
}

/// Changes to a project: absent fields stay as they are; `null` clears one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PatchProject {
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Option<JsonObject>>,
}

/// An experiment or a dataset. Experiments also carry `repo_info`, `commit`, `base_exp_id`,
/// `dataset_id`, `dataset_version`, `tags` and `public`; datasets carry `url_slug`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NamedObject {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub created: String,
    pub deleted_at: Option<String>,
    pub user_id: Option<String>,
    pub description: Option<Value>,
    pub metadata: Option<Value>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub info: JsonObject,
}

/// Creates an experiment (a new, unique name unless `ensure_new` is false) or gets or creates
/// a dataset by name. The project is named by id or by name (created when missing).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateObject {
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    /// Required for datasets; experiments get a generated name without one.
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
    /// Experiments only: with `false`, an existing experiment of this name is returned.
    pub ensure_new: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub repo_info: Option<JsonObject>,
    pub base_exp_id: Option<String>,
    pub dataset_id: Option<String>,
    pub dataset_version: Option<String>,
    pub public: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub parameters_id: Option<String>,
    pub parameters_version: Option<String>,
    pub commit: Option<String>,
}

/// Changes to an experiment or dataset: absent fields stay as they are; `null` clears one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PatchObject {
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<JsonObject>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    pub repo_info: Option<Option<JsonObject>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub base_exp_id: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub dataset_id: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub dataset_version: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<bool>)]
    pub public: Option<Option<bool>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Option<Option<Vec<String>>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub parameters_id: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub parameters_version: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub commit: Option<Option<String>>,
}

macro_rules! list_query {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident),* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            /// At most this many (1 to 1000).
            #[param(minimum = 1)]
            pub limit: Option<i64>,
            /// The id of the last object of the previous page.
            pub starting_after: Option<String>,
            pub org_name: Option<String>,
            $($(#[$fm])* pub $field: Option<String>,)*
        }
    };
}

list_query!(
    /// Filters and paging of `GET /v1/project`.
    ProjectListQuery { project_name }
);
list_query!(
    /// Filters and paging of `GET /v1/experiment`.
    ExperimentListQuery { experiment_name, project_id, project_name }
);
list_query!(
    /// Filters and paging of `GET /v1/dataset`.
    DatasetListQuery { dataset_name, project_id, project_name }
);
list_query!(
    /// Filters and paging of `GET /v1/prompt`.
    PromptListQuery {
        prompt_name, project_id, project_name, slug,
        /// A transaction id: the prompts as they were then.
        version
    }
);

/// `?version=`: an object as it was at a transaction id.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    pub version: Option<String>,
}

/// A stored prompt (or another function). Its fields are the ones it was stored with, plus
/// `id`, `_xact_id` and `created`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Prompt {
    pub id: String,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: JsonObject,
}

/// A prompt to store: `slug` names it within its project; the rest is kept as given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PutPrompt {
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub prompt_data: Option<JsonObject>,
    #[schema(value_type = Option<Object>)]
    pub function_data: Option<JsonObject>,
    pub tags: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
    pub function_type: Option<String>,
}

/// Changes to a prompt (a new version): the fields given replace the stored ones; `null`
/// clears one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PatchPrompt {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    pub prompt_data: Option<Option<JsonObject>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    pub function_data: Option<Option<JsonObject>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Option<Option<Vec<String>>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<JsonObject>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub function_type: Option<Option<String>>,
}

/// `GET /v1/experiment/{id}/summarize`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummarizeExperimentQuery {
    pub summarize_scores: Option<bool>,
    pub comparison_experiment_id: Option<String>,
}

/// `GET /v1/dataset/{id}/summarize`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummarizeDatasetQuery {
    pub summarize_data: Option<bool>,
}

/// `POST /insert-functions`: functions defined in code and published (`project.publish()`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct InsertFunctions {
    pub functions: Vec<FunctionDefinition>,
}

/// One function to store. Prompts (`function_data.type = "prompt"`) are stored as prompts;
/// other kinds (code bundles, parameters) are refused for now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct FunctionDefinition {
    pub project_id: String,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub function_type: Option<String>,
    /// `{"type": "prompt"}` for a prompt.
    #[schema(value_type = Object)]
    pub function_data: JsonObject,
    #[schema(value_type = Option<Object>)]
    pub prompt_data: Option<JsonObject>,
    /// `error` (the default), `replace` or `ignore`, when the slug exists in the project.
    pub if_exists: Option<String>,
    pub tags: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InsertedFunction {
    pub id: String,
    pub project_id: String,
    pub slug: String,
    /// The slug existed already (kept with `ignore`, replaced with `replace`).
    pub found_existing: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InsertedFunctions {
    pub functions: Vec<InsertedFunction>,
}

/// Restores a deleted project, experiment, dataset or prompt within the grace period after
/// its deletion; with `preview`, says what would be restored and changes nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RestoreRequest {
    #[serde(default)]
    pub preview: bool,
    /// Rows of a live dataset, experiment or project's logs: restore only these (at most
    /// 10,000) of its rows deleted within the grace period.
    pub row_ids: Option<Vec<String>>,
    /// Rows: restore only those deleted at or after this time (RFC 3339).
    pub deleted_after: Option<String>,
}

/// What a restore did (or, for a preview, would do).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Restored {
    pub object_type: String,
    pub id: String,
    pub name: String,
    /// When it was deleted.
    pub deleted_at: String,
    /// The end of the grace period: restoring is refused after it.
    pub restorable_until: String,
    /// False for a preview.
    pub restored: bool,
    /// For a restore of rows: how many (would) come back. `deleted_at` is then the oldest
    /// of their deletions, and `restorable_until` the end of its grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// For a restore of rows: more deleted rows remain than one request restores (10,000);
    /// repeat it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
}

/// What a retention policy applies to: a project's logs (rows by age), its experiments
/// (whole, by creation time) or its datasets' rows (by age).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetentionObjectType {
    ProjectLogs,
    Experiment,
    Dataset,
}

impl RetentionObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProjectLogs => "project_logs",
            Self::Experiment => "experiment",
            Self::Dataset => "dataset",
        }
    }
}

/// The kinds of automation Holdfast runs (today, retention policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AutomationEvent {
    Retention,
}

/// A retention policy: what is older than `retention_days` is deleted (restorable for the
/// deletion grace period, then purged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetentionConfig {
    pub event_type: AutomationEvent,
    pub object_type: RetentionObjectType,
    /// Whole days, 1 to 36500.
    pub retention_days: i64,
}

/// A project's automation: a retention policy, or a scheduled export of the project's logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event_type", rename_all = "snake_case")]
pub enum ProjectAutomationConfig {
    /// See [`RetentionConfig`].
    Retention {
        object_type: RetentionObjectType,
        /// Whole days, 1 to 36500.
        retention_days: i64,
    },
    /// Every `interval_seconds`, the project's log rows written or changed since the previous
    /// run (by transaction id) are exported, as a new export of their own.
    BtqlExport {
        export_definition: ExportDefinition,
        /// `local` (the server's exports folder) or the server's own bucket as
        /// `s3://<s3_bucket>/<s3_prefix>`; nothing else (the server writes only where its
        /// operator set it up).
        export_path: String,
        format: ExportFormat,
        /// 60 to 2678400 (31 days).
        interval_seconds: i64,
        /// Seal the files (the default); `false` writes them plain, for a warehouse to read
        /// (the bucket's server-side encryption still applies).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encrypt: Option<bool>,
    },
}

/// What a scheduled export exports: `log_spans`, every span of the project's logs; or
/// `btql_query`, the rows a BTQL query of the project's logs returns (spans or groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportDefinition {
    #[serde(rename = "type")]
    pub kind: ExportDefinitionType,
    /// The query of a `btql_query` export (BTQL or SQL text, at most 10,000 characters),
    /// reading `project_logs` of the automation's own project, without `limit` or `cursor`.
    /// Each run applies it to the rows written since the previous run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub btql_query: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportDefinitionType {
    LogSpans,
    BtqlQuery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Jsonl,
    Parquet,
}

impl From<RetentionConfig> for ProjectAutomationConfig {
    fn from(c: RetentionConfig) -> Self {
        Self::Retention {
            object_type: c.object_type,
            retention_days: c.retention_days,
        }
    }
}

impl ProjectAutomationConfig {
    /// The retention policy this is, if it is one.
    pub fn retention(&self) -> Option<RetentionConfig> {
        match self {
            Self::Retention {
                object_type,
                retention_days,
            } => Some(RetentionConfig {
                event_type: AutomationEvent::Retention,
                object_type: *object_type,
                retention_days: *retention_days,
            }),
            Self::BtqlExport { .. } => None,
        }
    }
}

/// Creates a project's automation, or returns the one of that name unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateProjectAutomation {
    pub project_id: String,
    /// 1 to 1024 characters.
    pub name: String,
    pub description: Option<String>,
    pub config: ProjectAutomationConfig,
}

/// One run of a scheduled export.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AutomationRun {
    pub run: i64,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub started: String,
    pub finished: Option<String>,
    /// The rows exported are those with a version after this transaction...
    pub from_xact: String,
    /// ... up to this one.
    pub to_xact: String,
    pub rows: Option<i64>,
    /// Where the export went (its folder or `s3://` prefix).
    pub location: Option<String>,
    pub export_id: Option<String>,
    pub error: Option<String>,
}

/// Creates an organization's automation (the default of every project without its own),
/// or returns the one of that name unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateOrgAutomation {
    /// 1 to 1024 characters.
    pub name: String,
    pub description: Option<String>,
    pub config: RetentionConfig,
    /// The caller's organization, if given.
    pub org_name: Option<String>,
}

/// Changes to an automation: absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct PatchAutomation {
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// An organization's automation takes a retention policy only.
    pub config: Option<ProjectAutomationConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectAutomation {
    pub id: String,
    pub project_id: String,
    pub user_id: Option<String>,
    pub created: String,
    pub name: String,
    pub description: Option<String>,
    pub config: ProjectAutomationConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrgAutomation {
    pub id: String,
    pub org_id: String,
    pub user_id: Option<String>,
    pub created: String,
    pub name: String,
    pub description: Option<String>,
    pub config: RetentionConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectAutomationListQuery {
    /// The project whose automations to list.
    pub project_id: Option<String>,
    pub automation_name: Option<String>,
    /// At most this many (1 to 1000).
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrgAutomationListQuery {
    pub automation_name: Option<String>,
    pub org_name: Option<String>,
    /// At most this many (1 to 1000).
    pub limit: Option<i64>,
}

/// What a retention policy would delete now, before it is saved: for a project's policy,
/// that project; for an organization's, every live project without its own policy for the
/// object type.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetentionPreviewRequest {
    /// A project's policy; absent for the organization's.
    pub project_id: Option<String>,
    pub config: RetentionConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetentionPreview {
    pub object_type: RetentionObjectType,
    pub retention_days: i64,
    /// What was created before this instant would be deleted.
    pub cutoff: String,
    /// Rows that would be deleted (for experiments, the rows of the experiments).
    pub rows: u64,
    /// Experiments that would be deleted (0 for logs and datasets).
    pub objects: u64,
    /// Datasets or experiments the caller may not read, whose rows are not counted.
    pub unreadable_objects: u64,
    /// The projects where something would be deleted.
    pub projects: Vec<RetentionPreviewProject>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetentionPreviewProject {
    pub project_id: String,
    pub name: String,
    pub rows: u64,
    pub objects: u64,
}

/// Starts an export of the organization, or of one project, in the background.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct StartExport {
    /// One project (by id); the whole organization when absent.
    pub project_id: Option<String>,
    /// Of the rows files: `jsonl` (the default) or `parquet`.
    pub format: Option<ExportFormat>,
}

/// An export started through the API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportJob {
    pub id: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    pub created: String,
    pub finished: Option<String>,
    pub project_id: Option<String>,
    pub format: String,
    pub rows: Option<i64>,
    pub error: Option<String>,
    /// When done: every file, each with a download link signed for a limited time.
    pub files: Vec<ExportJobFile>,
    /// When the links stop working (ask again for new ones).
    pub links_expire: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportJobFile {
    pub path: String,
    /// `projects`, `objects` or `rows`.
    pub contents: String,
    pub records: u64,
    /// Unauthenticated: whoever holds it until it expires may download the file (opened,
    /// JSON Lines or Parquet).
    pub url: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportListQuery {
    /// At most this many (1 to 1000), newest first.
    pub limit: Option<i64>,
}
