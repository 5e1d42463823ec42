//! Holdfast's wire types: the request and response bodies and query strings of every route,
//! shared by the HTTP layer, the web UI and MCP, with the OpenAPI schemas generated from them.
//!
//! Free-form row payloads (`input`, `output`, `metadata`, ...) stay JSON values. Unknown
//! fields in requests are ignored, as the SDKs add fields over time.

pub mod accounts;
pub mod admin;
pub mod error;
pub mod objects;
pub mod rows;
pub mod sdk;
pub mod secret;
pub mod sso;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use secret::{SecretValue, ShownOnce};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A page of a collection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ObjectList<T> {
    pub objects: Vec<T>,
}

impl<T> From<Vec<T>> for ObjectList<T> {
    fn from(objects: Vec<T>) -> Self {
        Self { objects }
    }
}

/// Any JSON object; its fields are described where it is used.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// `{"status": "success"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusReply {
    pub status: String,
}

impl StatusReply {
    pub fn success() -> Self {
        Self {
            status: "success".into(),
        }
    }
}
