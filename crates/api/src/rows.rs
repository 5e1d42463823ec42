//! Rows of experiments, datasets and project logs: insert, fetch and feedback.

use crate::JsonObject;
use crate::secret::nullable;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/{object}/{id}/insert`: rows as the SDKs write them (`id`, `input`, `output`,
/// `expected`, `scores`, `metadata`, `tags`, `span_id`, `_is_merge`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InsertRequest {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<JsonObject>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InsertResponse {
    pub row_ids: Vec<String>,
}

/// `POST /v1/{object}/{id}/fetch`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct FetchRequest {
    /// At most this many rows (1 or more).
    #[schema(minimum = 1)]
    pub limit: Option<i64>,
    /// From the previous page's `cursor`.
    pub cursor: Option<String>,
    /// A transaction id: the rows as they were then.
    pub version: Option<String>,
    /// A filter expression (`{"op": "eq", "left": ..., "right": ...}`, `and`, `or`).
    pub filter: Option<Value>,
}

/// `GET /v1/{object}/{id}/fetch`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FetchQuery {
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FetchResponse {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<JsonObject>,
    /// Pass back for the next page; null on the last.
    pub cursor: Option<String>,
}

/// One piece of feedback on a row: the fields given are merged into it (`null` clears one);
/// a comment becomes a comment row.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct FeedbackItem {
    /// The row's id.
    pub id: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    pub scores: Option<Option<JsonObject>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<Object>)]
    pub expected: Option<Option<Value>>,
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
    pub comment: Option<String>,
    /// `external` (the default), `app` or `api`.
    pub source: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedbackRequest {
    pub feedback: Vec<FeedbackItem>,
}
